//! Row 27 of the security matrix: 50 sign requests (200 with `CUSTODY_SOAK=1`) submitted at once, next to slow clients
//! (some trickle a whole request a few bytes at a time, others open connections and dribble
//! headers). Memory stays bounded, every request is signed, and none waits behind the others
//! for ever: sessions are admitted in arrival order with bounded parallelism.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use custody_tests::api::raw_https_trickle;
use proto::api::{RequestStatus, SignRequestView};
use serde_json::Value;

use crate::{common::exclusive, faults::transfer, signing::assert_valid_signature};

/// Resident memory of a process; an unreadable value is an error (0 would pass any bound).
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .filter(|kib| *kib > 0)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

#[test]
fn row_27_concurrent_requests_with_slow_clients_all_sign_in_bounded_memory() {
    let s = exclusive();
    let api_port = s.cluster.layout.api_port;
    let ca = s.cluster.layout.ca();
    let token = s.cluster.layout.token().unwrap();
    let client = s.cluster.api.with_token(Some(&token));
    let total = crate::common::rounds(50, 200);
    let bodies: Vec<Value> = (0..total)
        .map(|i| transfer("load", crate::common::KEY, 400_000 + i as u64))
        .collect();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Peak RSS (coordinator, largest node) and the number of samples taken.
    let peak = Arc::new(Mutex::new((0u64, 0u64, 0usize)));
    std::thread::scope(|scope| {
        // Memory sampler: every process is sampled every time, or the test fails.
        let pids: Vec<u32> = (0..3).filter_map(|i| s.cluster.node_pid(i)).collect();
        assert_eq!(pids.len(), 3, "every node runs");
        let coord = s.cluster.coordinator_pid().unwrap();
        let (stop2, peak2) = (stop.clone(), peak.clone());
        let sampler = scope.spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let mut node_max = 0;
                for p in &pids {
                    node_max = node_max.max(rss_kib(*p)?);
                }
                let coord_kib = rss_kib(coord)?;
                let mut p = peak2.lock().unwrap();
                p.0 = p.0.max(coord_kib);
                p.1 = p.1.max(node_max);
                p.2 += 1;
                drop(p);
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok::<(), String>(())
        });
        // Slow clients that never finish their headers: a byte per 400 ms would take them 36 s;
        // the coordinator's header timeout (10 s) cuts each off well before, with no answer or a
        // 4xx, never a 2xx: the connection is closed under it.
        let dribblers: Vec<_> = (0..10)
            .map(|_| {
                let ca = ca.clone();
                scope.spawn(move || {
                    let req = b"GET /v1/nodes HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                    let t0 = Instant::now();
                    let out = raw_https_trickle(api_port, &ca, req, 1, Duration::from_millis(400), Duration::from_secs(5));
                    (t0.elapsed(), out)
                })
            })
            .collect();
        // Slow clients that do submit: 10 of the 200 requests arrive 40 bytes per 100 ms.
        for body in bodies.iter().take(10) {
            let (ca, token) = (ca.clone(), token.clone());
            scope.spawn(move || {
                let json = body.to_string();
                let req = format!(
                    "POST /v1/sign-requests HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let answer = raw_https_trickle(api_port, &ca, req.as_bytes(), 40, Duration::from_millis(100), Duration::from_secs(30)).unwrap();
                assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
            });
        }
        // The others, from clients of 10 requests each, at once.
        for chunk in bodies[10..].chunks(10) {
            let client = client.with_token(Some(&token));
            scope.spawn(move || {
                for body in chunk {
                    let (st, v) = client.post("/v1/sign-requests", body).unwrap();
                    assert_eq!(st, 202, "{v}");
                }
            });
        }
        // One poller until all are final (one GET at a time, well under the rate limit).
        let mut pending: Vec<String> = bodies
            .iter()
            .map(|b| b["request_id"].as_str().unwrap().to_string())
            .collect();
        let mut latest = Duration::ZERO;
        let deadline = started + Duration::from_secs(900);
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} requests unfinished after 900 s",
                pending.len()
            );
            std::thread::sleep(Duration::from_secs(1));
            let mut still = Vec::new();
            for id in pending {
                let (st, v) = client.get(&format!("/v1/sign-requests/{id}")).unwrap();
                if st == 404 {
                    still.push(id); // a slow client's request not submitted yet
                    continue;
                }
                let r: SignRequestView = serde_json::from_value(v).unwrap();
                if r.status.is_final() {
                    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
                    assert_valid_signature(&s, &r);
                    latest = started.elapsed();
                } else {
                    still.push(id);
                }
            }
            pending = still;
        }
        stop.store(true, Ordering::SeqCst);
        sampler
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("memory not sampled: {e}"));
        for d in dribblers {
            let (took, out) = d.join().unwrap();
            assert!(
                took < Duration::from_secs(30),
                "a header dribbler was kept {took:?}"
            );
            match out {
                Ok(answer) => assert!(
                    answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
                    "an unfinished request was answered: {answer}"
                ),
                // The coordinator closed the connection while the client was still writing.
                Err(e) => {
                    let io = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
                    assert!(
                        matches!(
                            io,
                            Some(
                                std::io::ErrorKind::BrokenPipe
                                    | std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                            )
                        ),
                        "a header dribbler failed otherwise: {e:#}"
                    );
                }
            }
        }
        let (coord_kib, node_kib, samples) = *peak.lock().unwrap();
        // At least one sample per 10 s of the run (the sampler takes four a second).
        let want = (started.elapsed().as_secs() / 10).max(1) as usize;
        assert!(samples >= want, "only {samples} memory samples");
        eprintln!(
            "load: {total} requests signed in {:.1} s ({:.2}/s); peak RSS coordinator {} MiB, node {} MiB",
            latest.as_secs_f64(),
            total as f64 / latest.as_secs_f64(),
            coord_kib / 1024,
            node_kib / 1024
        );
        assert!(coord_kib < 256 * 1024, "coordinator RSS {coord_kib} KiB");
        assert!(node_kib < 512 * 1024, "node RSS {node_kib} KiB");
    });
}
