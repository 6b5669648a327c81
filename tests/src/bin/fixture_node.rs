//! `fixture-node`: the real `signer-node` command line for tests, except that `init` and
//! `primes` take the node's Paillier primes from the TEST-ONLY committed fixtures instead of
//! generating them (a minute of CPU per node). Node `node-N` gets the N-th fixture; any other id generates fresh
//! primes. The runbook test runs `signer-node` as this binary; the devnet test still generates
//! fresh primes through the shipped path. Never part of a deployment: the fixtures are public.

fn main() -> std::process::ExitCode {
    // Fixtures that do not load are an error, not a silent minute of fresh primes per node.
    let primes = match custody_tests::test_primes() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: the TEST-ONLY fixture primes: {e:?}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let pick = |id: &str| {
        let n: usize = id.strip_prefix("node-")?.parse().ok()?;
        primes.get(n.checked_sub(1)?).cloned()
    };
    let mut argv: Vec<String> = std::env::args().collect();
    if let Some(first) = argv.first_mut() {
        *first = "signer-node".into();
    }
    match signer_node::cli::main_with_primes(argv, &pick) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
