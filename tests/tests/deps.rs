//! The dependency rule, checked on the resolved graph so that it cannot rot: `proto` and the
//! `policy` library do no I/O (no async runtime, sockets, TLS, HTTP, database, CLI parser or log
//! subscriber in their normal dependencies), and the coordinator links nothing that can read a
//! key share.
//!
//! Reads `cargo metadata` for the workspace and walks only normal dependencies (not dev, not
//! build). A failure names the path that leads to each forbidden crate, e.g.
//! `custody-proto -> foo -> tokio`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::Command;

use serde_json::Value;

/// What the pure floors (`proto`, the `policy` library) must not pull in.
const IO_CRATES: &[&str] = &[
    "tokio",
    "rustls",
    "hyper",
    "axum",
    "redb",
    "clap",
    "tracing-subscriber",
    "tokio-rustls",
    "mio",
    // The daemons' plumbing crate itself.
    "custody-runtime",
];

/// What the coordinator must not link: the MPC engine and the node, which read key shares.
const SHARE_READERS: &[&str] = &[
    "cggmp24",
    "cggmp24-keygen",
    "key-share",
    "paillier-zk",
    "signer-node",
];

/// The workspace's resolved normal-dependency graph: package names and edges by package id.
struct Graph {
    names: HashMap<String, String>,
    edges: HashMap<String, Vec<String>>,
    members: Vec<String>,
}

impl Graph {
    fn load() -> Graph {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let out = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(manifest)
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
        let id = |v: &Value| v.as_str().expect("an id is a string").to_owned();
        let names = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (id(&p["id"]), id(&p["name"])))
            .collect();
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(id)
            .collect();
        let nodes = meta["resolve"]["nodes"].as_array().expect("resolve.nodes");
        let edges = nodes
            .iter()
            .map(|n| (id(&n["id"]), normal_deps(n).map(id).collect()))
            .collect();
        Graph {
            names,
            edges,
            members,
        }
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    /// The id of the workspace member named `name`.
    fn member(&self, name: &str) -> &str {
        self.members
            .iter()
            .find(|id| self.name(id) == name)
            .unwrap_or_else(|| panic!("no workspace member named `{name}`"))
    }

    /// Every forbidden crate reachable from `root` through normal dependencies, each with the
    /// shortest path that leads to it (`root -> a -> b -> forbidden`).
    fn forbidden_paths(&self, root: &str, forbidden: &[&str]) -> BTreeMap<String, String> {
        let root = self.member(root).to_owned();
        let mut parent: HashMap<String, Option<String>> = HashMap::from([(root.clone(), None)]);
        let mut queue = VecDeque::from([root]);
        let mut found = BTreeMap::new();
        while let Some(id) = queue.pop_front() {
            if forbidden.contains(&self.name(&id)) {
                found.insert(self.name(&id).to_owned(), self.path_to(&id, &parent));
            }
            for dep in self.edges.get(&id).into_iter().flatten() {
                if !parent.contains_key(dep) {
                    parent.insert(dep.clone(), Some(id.clone()));
                    queue.push_back(dep.clone());
                }
            }
        }
        found
    }

    fn path_to(&self, id: &str, parent: &HashMap<String, Option<String>>) -> String {
        let mut names = vec![self.name(id).to_owned()];
        let mut at = id.to_owned();
        while let Some(Some(p)) = parent.get(&at) {
            names.push(self.name(p).to_owned());
            at.clone_from(p);
        }
        names.reverse();
        names.join(" -> ")
    }

    fn assert_free_of(&self, root: &str, forbidden: &[&str]) {
        let found = self.forbidden_paths(root, forbidden);
        assert!(
            found.is_empty(),
            "`{root}` depends (normal dependencies) on forbidden crates:\n  {}",
            found.into_values().collect::<Vec<_>>().join("\n  ")
        );
    }
}

/// The ids of a resolve node's dependencies that are normal (not only dev or build) on some
/// platform.
fn normal_deps(node: &Value) -> impl Iterator<Item = &Value> {
    let deps = node["deps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    deps.iter()
        .filter(|d| {
            let kinds = d["dep_kinds"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            kinds.iter().any(|k| k["kind"].is_null())
        })
        .map(|d| &d["pkg"])
}

#[test]
fn proto_does_no_io() {
    Graph::load().assert_free_of("custody-proto", IO_CRATES);
}

/// The engine officers audit: its CLI is its own package (`policy/cli`), so the library's
/// tree is the engine's alone.
#[test]
fn policy_library_does_no_io() {
    Graph::load().assert_free_of("custody-policy", IO_CRATES);
}

#[test]
fn coordinator_links_nothing_that_reads_a_key_share() {
    Graph::load().assert_free_of("coordinator", SHARE_READERS);
}

#[test]
fn the_walk_finds_what_is_there() {
    // Guards the checks above against passing vacuously (a renamed package, an empty graph).
    let graph = Graph::load();
    let found = graph.forbidden_paths("signer-node", &["tokio", "cggmp24"]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found["tokio"], "signer-node -> tokio");
    let found = graph.forbidden_paths("coordinator", &["custody-proto", "custody-runtime"]);
    assert_eq!(found.len(), 2, "{found:?}");
}
