//! `bench`: the custody signer against the cggmp24 library baseline, in one run on one machine.
//!
//! Measures (see the README's table): the library's in-process full signing and presigning for
//! 2-of-3 and 3-of-5 and its presign rate on these cores; the system's cold signing (no
//! presignature ready) through the REST API over TLS for the same (t, n); warm signing from a
//! filled pool at several client concurrencies; sustained throughput with the pool drained;
//! a 2-of-3 key ceremony with fresh primes; and Paillier safe-prime generation with a seeded
//! ChaCha20 against the OS RNG. Writes `bench-results.md` and two SVG plots to `--out`.

mod library;
mod plot;
mod policy_cost;
mod system;

use std::time::{Duration, Instant};

use clap::Parser;
use custody_tests::cluster::PrimeSource;

#[derive(Parser)]
struct Args {
    /// Sequential runs for library and cold latencies.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Client concurrencies for warm signing.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Warm requests per concurrency.
    #[arg(long, default_value_t = 32)]
    warm: usize,
    /// Requests for the sustained (drained pool) measure.
    #[arg(long, default_value_t = 16)]
    sustained: usize,
    /// Skip the 3-of-5 system run (a 5-node cluster).
    #[arg(long)]
    skip_five: bool,
    /// Skip the ceremony with fresh primes (minutes of prime generation).
    #[arg(long)]
    skip_fresh: bool,
    /// Safe primes per RNG in the prime-generation comparison (0 skips it).
    #[arg(long, default_value_t = 6)]
    primes: usize,
    /// Skip the library baseline (for quick system runs; ratios are then not computed).
    #[arg(long)]
    skip_library: bool,
    /// Only the key ceremony, refresh and reshare rows of 2-of-3 and 3-of-5 clusters (no
    /// library baseline, signing loads or plots).
    #[arg(long)]
    lifecycle_only: bool,
    /// Only the cost of decoding and judging one request on a node (transfer, contract call,
    /// allowance), without clusters.
    #[arg(long)]
    policy_only: bool,
    /// Where to write the results and plots.
    #[arg(long, default_value = "docs/bench")]
    out: std::path::PathBuf,
}

/// One row of the results table.
pub struct Row {
    pub measure: String,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub extra: String,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("signer-node") => return signer_node::cli::main_with(argv[1..].to_vec()),
        Some("coordinator") => return coordinator::cli::main_with(argv[1..].to_vec()),
        _ => {}
    }
    let args = Args::parse();
    let mut rows = Vec::new();
    let mut plot = plot::Data::default();
    if args.policy_only {
        policy_cost::rows(&mut rows)?;
        println!("{}", render(&rows));
        return Ok(());
    }
    if args.lifecycle_only {
        for (n, t) in [(3, 2), (5, 3)] {
            eprintln!("system: {n}-node cluster, {t}-of-{n} key (test-only primes) ...");
            let (c, ceremony) =
                system::cluster(&format!("life{t}{n}"), n, t, PrimeSource::TestFixture)?;
            rows.push(ceremony_row(n, t, ceremony));
            system::lifecycle(&c, n, t, ceremony, &mut rows)?;
        }
        let table = render(&rows);
        println!("{table}");
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("bench-lifecycle.md"), &table)?;
        return Ok(());
    }
    let base = match args.skip_library {
        true => Baseline {
            full23: Duration::ZERO,
            full35: Duration::ZERO,
            rate23: f64::NAN,
        },
        false => library_part(&args, &mut rows, &mut plot)?,
    };
    system_part(&args, &base, &mut rows, &mut plot)?;
    if !args.skip_five {
        ceremony_and_cold(&args, &mut rows, &mut plot, 5, 3, base.full35)?;
    }
    if !args.skip_fresh {
        eprintln!("ceremony with fresh primes (3 nodes generate Paillier primes) ...");
        let (c, took) = system::cluster("fresh", 3, 2, PrimeSource::Fresh)?;
        drop(c);
        rows.push(row(
            "2-of-3 key ceremony, fresh primes (init + DKG + aux info)",
            None,
            None,
            format!("{:.1} s", took.as_secs_f64()),
        ));
    }
    policy_cost::rows(&mut rows)?;
    let commit = redb_commit()?;
    rows.push(row(
        "one durable redb commit on this disk (the warm path makes about 12)",
        Some(pct(&commit, 0.5)),
        Some(pct(&commit, 0.99)),
        String::new(),
    ));
    if args.primes > 0 {
        primes_part(args.primes, &mut rows);
    }
    let table = render(&rows);
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("bench-results.md"), &table)?;
    plot::write(&plot, &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Library figures the system is compared with.
struct Baseline {
    full23: Duration,
    full35: Duration,
    rate23: f64,
}

fn library_part(
    args: &Args,
    rows: &mut Vec<Row>,
    plot: &mut plot::Data,
) -> anyhow::Result<Baseline> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!("library: in-process keys 2-of-3 and 3-of-5 (test-only primes) ...");
    let k23 = rt.block_on(library::keys(3, 2))?;
    let k35 = rt.block_on(library::keys(5, 3))?;
    let (f23, p23) = library::latencies(&rt, &k23, args.runs)?;
    let (f35, p35) = library::latencies(&rt, &k35, args.runs)?;
    let rate23 = library::presign_rate(&rt, &k23, 8, 2)?;
    let us = library::issue_and_combine(&rt, &k23)?;
    for (name, v) in [
        ("library full signing 2-of-3", &f23),
        ("library presigning 2-of-3", &p23),
        ("library full signing 3-of-5", &f35),
        ("library presigning 3-of-5", &p35),
    ] {
        rows.push(row(
            name,
            Some(pct(v, 0.5)),
            Some(pct(v, 0.99)),
            "1.00".into(),
        ));
    }
    rows.push(row(
        "library presign rate 2-of-3, 2 at once",
        None,
        None,
        format!("{rate23:.2} presignatures/s"),
    ));
    rows.push(row(
        "library issue 2 partials + combine + verify",
        None,
        None,
        format!("{us:.0} µs"),
    ));
    plot.latency.push((
        "library full 2-of-3".into(),
        pct(&f23, 0.5),
        pct(&f23, 0.99),
    ));
    Ok(Baseline {
        full23: pct(&f23, 0.5),
        full35: pct(&f35, 0.5),
        rate23,
    })
}

fn system_part(
    args: &Args,
    base: &Baseline,
    rows: &mut Vec<Row>,
    plot: &mut plot::Data,
) -> anyhow::Result<()> {
    let c = ceremony_and_cold(args, rows, plot, 3, 2, base.full23)?;
    let acct = system::account_latencies(&c, "bench-account", args.runs)?;
    rows.push(row(
        "account (m/a/0) REST sign 2-of-3 (always full signing)",
        Some(pct(&acct, 0.5)),
        Some(pct(&acct, 0.99)),
        ratio(pct(&acct, 0.5), base.full23),
    ));
    plot.latency
        .push(("account 2-of-3".into(), pct(&acct, 0.5), pct(&acct, 0.99)));
    let (lat, _, wall) = system::load(&c, "sustained", args.sustained, 4)?;
    let rate = lat.len() as f64 / wall.as_secs_f64();
    rows.push(row(
        "sustained, pool drained, 4 clients",
        Some(pct(&lat, 0.5)),
        Some(pct(&lat, 0.99)),
        format!(
            "{rate:.2} sig/s = {:.0}% of library presign rate",
            100.0 * rate / base.rate23
        ),
    ));
    plot.throughput.push(("drained".into(), 4, rate));
    let need = (args.warm * args.concurrency.len()).div_ceil(3) as u32 + 1;
    eprintln!("system: filling the pool to {need} per subset ...");
    let (held, fill) = system::fill_pool(&c, need, Duration::from_secs(1800))?;
    rows.push(row(
        "pool refill (system, idle)",
        None,
        None,
        format!(
            "{held} presignatures in {:.0} s = {:.2}/s",
            fill.as_secs_f64(),
            held as f64 / fill.as_secs_f64().max(1e-9)
        ),
    ));
    system::stop_refill(&c)?;
    for &cc in &args.concurrency {
        eprintln!("system: warm, {cc} clients ...");
        let (lat, warm, wall) = system::load(&c, &format!("warm{cc}"), args.warm, cc)?;
        let tput = lat.len() as f64 / wall.as_secs_f64();
        rows.push(row(
            &format!("warm REST sign 2-of-3, {cc} clients"),
            Some(pct(&lat, 0.5)),
            Some(pct(&lat, 0.99)),
            format!("{tput:.1} sig/s; {warm}/{} from presignatures", lat.len()),
        ));
        plot.latency.push((
            format!("warm, {cc} clients"),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
        ));
        plot.throughput.push(("warm".into(), cc, tput));
    }
    plot.library_rate = base.rate23;
    Ok(())
}

/// A cluster of n nodes with a t-of-n key: its ceremony time and cold signing latency.
fn ceremony_and_cold(
    args: &Args,
    rows: &mut Vec<Row>,
    plot: &mut plot::Data,
    n: usize,
    t: u16,
    library_full: Duration,
) -> anyhow::Result<custody_tests::cluster::Cluster> {
    eprintln!("system: {n}-node cluster, {t}-of-{n} key (test-only primes) ...");
    let (c, ceremony) = system::cluster(&format!("{t}{n}"), n, t, PrimeSource::TestFixture)?;
    rows.push(ceremony_row(n, t, ceremony));
    let (cold, _, _) = system::load(&c, &format!("cold{n}"), args.runs, 1)?;
    let name = format!("cold {t}-of-{n}");
    rows.push(row(
        &format!("{name} REST sign (no presignature)"),
        Some(pct(&cold, 0.5)),
        Some(pct(&cold, 0.99)),
        ratio(pct(&cold, 0.5), library_full),
    ));
    plot.latency.push((name, pct(&cold, 0.5), pct(&cold, 0.99)));
    system::lifecycle(&c, n, t, ceremony, rows)?;
    Ok(c)
}

fn ceremony_row(n: usize, t: u16, ceremony: Duration) -> Row {
    row(
        &format!("{t}-of-{n} key ceremony via API (test-only primes)"),
        None,
        None,
        format!("{:.1} s", ceremony.as_secs_f64()),
    )
}

fn primes_part(n: usize, rows: &mut Vec<Row>) {
    use cggmp24::backend::Integer;
    const BITS: u32 = 768;
    eprintln!("safe primes: {n} × {BITS} bits with ChaCha20 and with the OS RNG ...");
    let t = Instant::now();
    let mut rng = signer_node::mpc::rng();
    for _ in 0..n {
        let _ = Integer::generate_safe_prime(&mut rng, BITS);
    }
    let chacha = t.elapsed() / n as u32;
    let t = Instant::now();
    for _ in 0..n {
        let _ = Integer::generate_safe_prime(&mut rand_core::OsRng, BITS);
    }
    let os = t.elapsed() / n as u32;
    rows.push(row(
        &format!("safe prime {BITS} bits, seeded ChaCha20 (mean of {n})"),
        None,
        None,
        format!("{:.2} s", chacha.as_secs_f64()),
    ));
    rows.push(row(
        &format!("safe prime {BITS} bits, OS RNG per candidate (mean of {n})"),
        None,
        None,
        format!(
            "{:.2} s ({:.2}× ChaCha20)",
            os.as_secs_f64(),
            os.as_secs_f64() / chacha.as_secs_f64().max(1e-9)
        ),
    ));
}

/// Latencies of 200 small durable redb commits (the unit of work on the warm path).
fn redb_commit() -> anyhow::Result<Vec<Duration>> {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let path = std::env::temp_dir().join(format!("custody-bench-redb-{}", std::process::id()));
    let db = redb::Database::create(&path)?;
    let mut out = Vec::new();
    for k in 0..200u64 {
        let t = Instant::now();
        let tx = db.begin_write()?;
        tx.open_table(T)?.insert(k, [7u8; 300].as_slice())?;
        tx.commit()?;
        out.push(t.elapsed());
    }
    drop(db);
    let _ = std::fs::remove_file(&path);
    Ok(out)
}

fn row(measure: &str, p50: Option<Duration>, p99: Option<Duration>, extra: String) -> Row {
    Row {
        measure: measure.to_string(),
        p50,
        p99,
        extra,
    }
}

fn ratio(sys: Duration, lib: Duration) -> String {
    format!(
        "{:.2}× library full signing",
        sys.as_secs_f64() / lib.as_secs_f64().max(1e-9)
    )
}

/// The `p` quantile (nearest rank).
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s.get(i).copied().unwrap_or_default()
}

fn render(rows: &[Row]) -> String {
    let ms = |d: Option<Duration>| match d {
        Some(d) if d < Duration::from_millis(100) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        None => String::new(),
    };
    let mut out = format!(
        "| measure ({} backend) | p50 | p99 | ratio / throughput |\n|---|---|---|---|\n",
        signer_node::mpc::BACKEND
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.measure,
            ms(r.p50),
            ms(r.p99),
            r.extra
        ));
    }
    out
}
