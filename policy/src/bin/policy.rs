//! `policy`: lint, hash, sign, verify and dry-run withdrawal policies.
//!
//! Exit codes: 0 ok or allow; 1 invalid, denied or not enough signatures; 2 usage or I/O
//! error; 3 deferred (retry later).

#[path = "policy/cli.rs"]
mod cli;
#[path = "policy/commands.rs"]
mod commands;
#[path = "policy/keys.rs"]
mod keys;
#[path = "policy/orders.rs"]
mod orders;
#[path = "policy/render.rs"]
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
