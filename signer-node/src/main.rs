//! `signer-node`: see `signer_node::cli`.

fn main() -> anyhow::Result<()> {
    signer_node::cli::main_with(std::env::args())
}
