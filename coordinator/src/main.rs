//! `coordinator`: see `coordinator::cli`.

fn main() -> anyhow::Result<()> {
    coordinator::cli::main_with(std::env::args())
}
