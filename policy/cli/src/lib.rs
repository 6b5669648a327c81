//! `policy`: lint, hash, sign, verify and dry-run withdrawal policies.
//!
//! Exit codes: 0 ok or allow; 1 invalid, denied or not enough signatures; 2 usage or I/O
//! error; 3 deferred (retry later).
//!
//! The binary is a thin `main` over [`main_with`]; the clap [`cli::Cli`] is public so that the
//! command reference (`docs/cli.md`) is generated from it.

pub mod cli;
mod commands;
mod keys;
mod membership;
mod orders;
mod render;

use std::{ffi::OsString, process::ExitCode};

use clap::Parser;

/// Runs `policy` with these arguments (the first is the program name) and returns its exit
/// code: clap's own for usage errors and `--help`, else the command's.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // Prints help or the usage error itself, on the stream clap chooses.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(commands::EXIT_USAGE));
        }
    };
    match commands::run(cli) {
        Ok(status) => status.exit_code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::EXIT_USAGE)
        }
    }
}
