//! Plain-file snapshots: run the `policy` binary and compare its output with a committed file
//! in this package's `tests/snapshots/`. Set `UPDATE_SNAPSHOTS=1` to rewrite them, then review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `policy` library's directory (this package's parent), where the example and broken
/// policies live; commands run here so that paths in the output are relative.
pub fn crate_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `policy ARGS` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_policy"))
        .args(args)
        .current_dir(crate_dir())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// Runs a command and renders it as a transcript.
pub fn transcript(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    format!(
        "$ policy {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    )
}

/// Compares `actual` with `tests/snapshots/<name>.txt`.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "snapshot {name} differs (run with UPDATE_SNAPSHOTS=1 and review)\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}
