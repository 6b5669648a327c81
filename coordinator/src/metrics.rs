//! The Prometheus exposition, through `prometheus-client`. Each scrape reads the current state
//! (node reports, the store, the fault and pool counters) into metric families, registers them
//! as one collector and encodes them in the Prometheus text format 0.0.4, in a fixed order.
//!
//! Names, types, labels and values are those dashboards already use. The encoder adds a
//! `# HELP` line per family; it writes a counter's samples and `# TYPE` line under its name with
//! `_total` (every counter family here is named so), and escapes label values itself (`\\`,
//! `"`, line feed): values are given raw, with other control characters replaced ([`clean`]).

use std::collections::BTreeMap;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{error::DomainError, faults::MAX_LABEL_LEN, orchestrator::Orchestrator};

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// One series' labels: name and raw value (escaped by the encoder).
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric family of a scrape, its series in the order they are exposed.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    series: Vec<(Labels, u64)>,
}

impl Family {
    /// A gauge family.
    pub fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
            series: Vec::new(),
        }
    }

    /// A counter family; `name` is the exposed name and ends with `_total`.
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        debug_assert!(name.ends_with("_total"), "{name}");
        Self {
            name,
            help,
            kind: Kind::Counter,
            series: Vec::new(),
        }
    }

    /// Adds a series.
    pub fn push(&mut self, labels: Labels, value: u64) {
        self.series.push((labels, value));
    }

    /// With one unlabelled series.
    pub fn with(mut self, value: u64) -> Self {
        self.push(vec![], value);
        self
    }
}

/// The families of one scrape, as a `prometheus-client` collector.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let (name, metric_type) = match f.kind {
                Kind::Gauge => (f.name, MetricType::Gauge),
                // The encoder appends `_total` to a counter's name.
                Kind::Counter => (
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    MetricType::Counter,
                ),
            };
            let mut metric = encoder.encode_descriptor(name, f.help, None, metric_type)?;
            for (labels, value) in &f.series {
                let series = metric.encode_family(labels)?;
                match f.kind {
                    Kind::Gauge => ConstGauge::new(*value).encode(series)?,
                    Kind::Counter => ConstCounter::new(*value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// Encodes families in the Prometheus text format 0.0.4.
pub fn render(families: Vec<Family>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(families)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// A label value as given to the encoder: control characters other than line feed (which the
/// encoder escapes) replaced by `_`. Exposed, it reads as [`crate::faults::label`] of the value.
pub fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\n' => c,
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// [`clean`] of a value a node supplied, cut to [`MAX_LABEL_LEN`] characters first.
pub fn node_value(value: &str) -> String {
    let cut: String = value.chars().take(MAX_LABEL_LEN).collect();
    clean(&cut)
}

/// The whole exposition of `GET /metrics`.
pub fn scrape(orch: &Orchestrator) -> Result<String, DomainError> {
    let mut families = node_families(orch);
    families.push(request_family(orch)?);
    families.extend(orch.faults.families(&orch.store));
    families.extend(crate::pool::families(orch));
    families.push(
        Family::gauge(
            "custody_audit_records",
            "Records in the coordinator's audit log.",
        )
        .with(orch.control.audit.len()),
    );
    Ok(render(families))
}

/// What each node last reported.
fn node_families(orch: &Orchestrator) -> Vec<Family> {
    let connected = orch.registry.connected();
    let statuses = orch.control.statuses();
    let mut up = Family::gauge(
        "custody_node_connected",
        "Whether the node's link to the coordinator is up.",
    );
    let mut policy = Family::gauge(
        "custody_node_policy_version",
        "Version of the policy the node runs, labelled with its hash.",
    );
    let mut policy_error = Family::gauge(
        "custody_node_policy_error",
        "Whether the node refused the last policy bundle it was offered.",
    );
    let mut gaps = Family::gauge(
        "custody_node_ledger_gaps",
        "Origins whose ledger entries the node knows it is missing.",
    );
    for (n, s) in &statuses {
        up.push(vec![("node", clean(n))], u64::from(connected.contains(n)));
        if let Some(p) = &s.policy {
            policy.push(
                vec![("node", clean(n)), ("hash", node_value(&p.hash))],
                p.version,
            );
        }
        policy_error.push(
            vec![("node", clean(n))],
            u64::from(s.policy_error.is_some()),
        );
        gaps.push(vec![("node", clean(n))], s.ledger_gaps.len() as u64);
    }
    vec![up, policy, policy_error, gaps]
}

/// Sign requests per status.
fn request_family(orch: &Orchestrator) -> Result<Family, DomainError> {
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for r in orch.store.requests().map_err(DomainError::internal)? {
        let name = serde_json::to_value(r.view.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_status.entry(name).or_default() += 1;
    }
    let mut f = Family::gauge("custody_requests", "Sign requests per status.");
    for (s, c) in by_status {
        f.push(vec![("status", clean(&s))], c);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::faults::{label, node_label};

    /// The exposition without the encoder's `# HELP` lines, which the hand-written one lacked.
    fn without_help(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("# HELP "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The text is exactly what the hand-written exposition wrote: names (counters keep their
    /// `_total`), `# TYPE` lines, label order, escaping and values.
    #[test]
    fn exposition_is_the_hand_written_format() {
        let mut gauge = Family::gauge("custody_presig_available", "h");
        gauge.push(
            vec![("key", clean("k\"1")), ("subset", clean("node-1,node-2"))],
            3,
        );
        gauge.push(vec![("key", clean("k\\2\n\r"))], 0);
        let mut counter = Family::counter("custody_session_blame_total", "h");
        counter.push(
            vec![
                ("node", node_value("node-1")),
                ("code", node_value("session.timeout")),
            ],
            12,
        );
        let families = vec![
            gauge,
            Family::gauge("custody_node_ledger_gaps", "h"),
            counter,
            Family::counter("custody_presig_made_total", "h").with(7),
            Family::gauge("custody_audit_records", "h").with(u64::MAX),
        ];
        let text = render(families);
        assert!(
            text.contains("# HELP custody_session_blame_total h\n"),
            "{text}"
        );
        let expected = "# TYPE custody_presig_available gauge\n\
             custody_presig_available{key=\"k\\\"1\",subset=\"node-1,node-2\"} 3\n\
             custody_presig_available{key=\"k\\\\2\\n_\"} 0\n\
             # TYPE custody_node_ledger_gaps gauge\n\
             # TYPE custody_session_blame_total counter\n\
             custody_session_blame_total{node=\"node-1\",code=\"session.timeout\"} 12\n\
             # TYPE custody_presig_made_total counter\n\
             custody_presig_made_total 7\n\
             # TYPE custody_audit_records gauge\n\
             custody_audit_records 18446744073709551615\n";
        assert_eq!(without_help(&text), expected);
    }

    /// A value given raw reads exactly as the escaping `label` and `node_label` define.
    #[test]
    fn encoded_label_values_are_the_escaped_ones() {
        let long = "é\"\\\n\r\t".repeat(30);
        for raw in [
            "plain",
            "a\\b\"c\nd\re",
            "x\"} 1\n# \\",
            "\u{7f}\u{0}",
            long.as_str(),
        ] {
            let mut f = Family::gauge("g", "h");
            f.push(vec![("v", clean(raw)), ("n", node_value(raw))], 1);
            let text = render(vec![f]);
            let line = text.lines().find(|l| l.starts_with("g{")).unwrap();
            let expected = format!("g{{v=\"{}\",n=\"{}\"}} 1", label(raw), node_label(raw));
            assert_eq!(line, expected);
        }
    }
}
