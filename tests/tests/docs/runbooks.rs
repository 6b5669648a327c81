//! Runbooks that run: every `sh` block of every runbook listed in `docs/runbooks/README.md` is
//! executed, in order, on loopback, with the real binaries. A block fenced as `sh no-run` is shown
//! but not run, and the text just before it must say why ("Not run by the tests: …").
//!
//! One bash process runs each runbook (so a variable set in one block is seen by the next),
//! starting every block in the runbooks' common directory, which stands for the room where the
//! machines are: `guardian-1/`, `coordinator/`, … The only change made to a block is the ports:
//! each documented port is replaced by a free one (the table in [`PORTS`]). Processes a runbook
//! starts in the background (`nohup … &`) live until the test ends, so later runbooks use the
//! cluster the first one built; they are killed when the test ends, pass or fail.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Ports the runbooks use, each replaced by a free port in every block. The nodes' health ports
/// (9101–9103) are kept: runbooks compute them (`910$n`), and no other test binds them.
const PORTS: [u16; 2] = [8443, 8444];

/// A fenced block of a runbook.
#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    /// Whether the block is run (`sh`) or only shown (`sh no-run`).
    run: bool,
    text: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shell blocks of a runbook. Errors name the file and line: an unterminated fence, a
/// `no-run` block without its reason, a shell block in another dialect.
fn blocks(file: &str, md: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut lines = md.lines().enumerate();
    let mut before: Vec<&str> = Vec::new();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            before.push(line);
            continue;
        };
        let info = info.trim();
        let mut text = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        if !closed {
            return Err(format!("{file}:{}: unterminated code fence", i + 1));
        }
        let run = match info {
            "sh" => true,
            "sh no-run" => {
                let reason = before
                    .iter()
                    .rev()
                    .take(6)
                    .any(|l| l.contains("Not run by the tests"));
                if !reason {
                    return Err(format!(
                        "{file}:{}: a `sh no-run` block needs \"Not run by the tests: <why>\" just before it",
                        i + 1
                    ));
                }
                false
            }
            "bash" | "shell" | "console" => {
                return Err(format!(
                    "{file}:{}: fence shell blocks as `sh` (run) or `sh no-run`",
                    i + 1
                ))
            }
            _ => {
                before.clear();
                continue;
            }
        };
        before.clear();
        out.push(Block {
            line: i + 1,
            run,
            text,
        });
    }
    Ok(out)
}

/// The runbooks in the order `docs/runbooks/README.md` lists them (`1. [title](file.md)`).
fn runbook_order(index: &str) -> Vec<String> {
    index
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter_map(|l| {
            let start = l.find("](")? + 2;
            let end = start + l[start..].find(')')?;
            Some(l[start..end].to_string())
        })
        .filter(|f| f.ends_with(".md"))
        .collect()
}

/// Background processes of the runbooks: each runbook's bash runs in its own process group,
/// which its `nohup … &` children join. Dropping this kills every group.
struct Groups(Vec<u32>);

impl Drop for Groups {
    fn drop(&mut self) {
        for sig in ["-TERM", "-KILL"] {
            for g in &self.0 {
                let _ = Command::new("kill")
                    .args([sig, "--", &format!("-{g}")])
                    .status();
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// Wrapper scripts named like the shipped binaries, running the multi-call `devnet` build. The
/// node's is `fixture-node`: the real node CLI whose `init` takes TEST-ONLY committed primes, so
/// the three ceremonies' inits cost seconds, not minutes (fresh primes are the devnet test's).
fn bin_dir(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join(".bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["signer-node", "coordinator", "policy"] {
        let path = bin.join(name);
        let exec = match name {
            "signer-node" => format!("'{}'", env!("CARGO_BIN_EXE_fixture-node")),
            _ => format!("'{}' {name}", env!("CARGO_BIN_EXE_devnet")),
        };
        std::fs::write(&path, format!("#!/bin/sh\nexec {exec} \"$@\"\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_ports() -> Vec<(u16, u16)> {
    PORTS
        .iter()
        .map(|p| (*p, custody_tests::cluster::free_port().unwrap()))
        .collect()
}

/// Runs one runbook's blocks in one bash; returns how many blocks ran.
fn run(root: &Path, bin: &Path, ports: &[(u16, u16)], file: &str, groups: &mut Groups) -> usize {
    use std::os::unix::process::CommandExt;
    let md = std::fs::read_to_string(repo().join("docs/runbooks").join(file)).unwrap();
    let blocks = blocks(file, &md).unwrap_or_else(|e| panic!("{e}"));
    let mut script = String::from("set -euo pipefail\n");
    let mut ran = 0;
    for b in blocks.iter().filter(|b| b.run) {
        let mut text = b.text.clone();
        for (from, to) in ports {
            text = text.replace(&format!(":{from}"), &format!(":{to}"));
        }
        script.push_str(&format!(
            "cd \"$RUNBOOK_ROOT\"\necho '=== {file}:{}' >&2\n{text}\n",
            b.line
        ));
        ran += 1;
    }
    script.push_str("echo '=== end' >&2\n");
    let log = root.join(format!("{file}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("PATH", path)
        .env("RUNBOOK_ROOT", root)
        .env("REPO", repo())
        .env_remove(signer_node::cli::PASSPHRASE_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap();
    groups.0.push(child.id());
    let status = child.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success() && log_text.lines().any(|l| l.ends_with("=== end")),
        "runbook {file} failed ({status}); the last block started is the last `===` line:\n{}",
        tail(&log, 60)
    );
    // A block's last output may lack its newline (`curl` of a health check prints `ok`), so a
    // marker can follow it on the same line.
    let started = log_text.matches(&format!("=== {file}:")).count();
    assert_eq!(started, ran, "every block of {file} ran");
    ran
}

#[test]
fn fences_are_parsed_and_a_no_run_block_needs_its_reason() {
    let md = "intro\n```sh\necho a\n```\ntext\n```toml\nx = 1\n```\n\nNot run by the tests: it needs a HSM.\n\n```sh no-run\nhsm-tool\n```\n";
    let b = blocks("t.md", md).unwrap();
    assert_eq!(b.len(), 2);
    assert!(b[0].run && b[0].text == "echo a\n" && b[0].line == 2);
    assert!(!b[1].run);
    let err = blocks("t.md", "```sh no-run\nx\n```\n").unwrap_err();
    assert!(
        err.contains("t.md:1") && err.contains("Not run by the tests"),
        "{err}"
    );
    assert!(blocks("t.md", "```sh\nx\n")
        .unwrap_err()
        .contains("unterminated"));
    assert!(blocks("t.md", "```bash\nx\n```\n")
        .unwrap_err()
        .contains("`sh`"));
    assert_eq!(
        runbook_order("# x\n1. [A](a.md): a\n2. [B](b.md)\n- [not](c.md)\n"),
        ["a.md", "b.md"]
    );
}

/// Every runbook, as a newcomer would follow it: the first ceremony builds a 2-of-3 cluster on
/// separate processes and data directories (no devnet helper) and signs a transaction; the
/// others operate that cluster. The first signature is then checked independently.
#[test]
fn every_runbook_runs_as_written() {
    let index = std::fs::read_to_string(repo().join("docs/runbooks/README.md")).unwrap();
    let order = runbook_order(&index);
    assert_eq!(
        order.first().map(String::as_str),
        Some("first-ceremony.md"),
        "{order:?}"
    );
    // Every runbook in the folder is listed, so none escapes the test.
    let mut on_disk: Vec<String> = std::fs::read_dir(repo().join("docs/runbooks"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".md") && f != "README.md")
        .collect();
    on_disk.sort();
    let mut listed = order.clone();
    listed.sort();
    assert_eq!(
        listed, on_disk,
        "docs/runbooks/README.md lists every runbook"
    );

    let root = std::env::temp_dir().join(format!("custody-runbooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let bin = bin_dir(&root);
    let ports = free_ports();
    let mut groups = Groups(Vec::new());
    let mut total = 0;
    for file in &order {
        total += run(&root, &bin, &ports, file, &mut groups);
    }
    assert!(total >= 10, "only {total} blocks ran");
    check_first_signature(&root);
    drop(groups);
    let _ = std::fs::remove_dir_all(&root);
}

/// The first ceremony's signature, checked without the product: the signed transaction's
/// sender, recovered with alloy, is the key's address.
fn check_first_signature(root: &Path) {
    use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
    use alloy_eips::eip2718::Decodable2718;
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("exchange/first-result.json")).unwrap(),
    )
    .unwrap();
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("operator/key.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"], "signed", "{result}");
    let raw = hex::decode(
        result["signed_tx"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
    )
    .unwrap();
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    let signer = env.recover_signer().unwrap();
    assert_eq!(
        format!("{signer:#x}"),
        key["ethereum_address"].as_str().unwrap(),
        "the recovered sender is the key's address"
    );
}
