//! `policy`: lint, hash, sign, verify and dry-run withdrawal policies.
//!
//! Exit codes: 0 ok or allow; 1 invalid, denied or not enough signatures; 2 usage or I/O
//! error; 3 deferred (retry later).

mod cli;
mod commands;
mod keys;
mod orders;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(status) => status.exit_code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::EXIT_USAGE)
        }
    }
}
