//! The `policy` binary: see the library, [`custody_policy_cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    custody_policy_cli::main_with(std::env::args_os())
}
