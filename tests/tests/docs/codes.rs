//! Error codes, rule tags and routes: `docs/api.md`'s error table lists every code the sources
//! can put in an API answer or a request's `error`, and no other; its scope table lists every
//! route of the router with the scope it needs; `docs/policy.md`'s rule catalogue lists every
//! rule tag (the `policy.<tag>` codes).
//!
//! Codes are found in the sources as string literals `"<family>.<name>"` (outside `#[cfg(test)]`
//! items and comments) by the small lexer below: every such literal is a code of a family in
//! [`CODE_FAMILIES`] unless [`NOT_CODES`] lists it with the reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Source trees whose literals can reach the API (the coordinator, the nodes whose verdicts and
/// failures it relays, the wire types and decoders, and the shared runtime).
const SCANNED: [&str; 4] = [
    "coordinator/src",
    "signer-node/src",
    "proto/src",
    "runtime/src",
];

/// Families of error codes. A dotted literal of another family fails the test until it is
/// either a new family here (and its codes are documented) or listed in [`NOT_CODES`].
const CODE_FAMILIES: &[&str] = &[
    "account",
    "amount",
    "approvals",
    "audit",
    "auth",
    "ceremony",
    "chain",
    "coordinator",
    "freeze",
    "internal",
    "key",
    "ledger",
    "message",
    "node",
    "nodes",
    "policy",
    "presig",
    "presign",
    "psbt",
    "query",
    "rate",
    "request",
    "reserves",
    "reshare",
    "route",
    "session",
    "signature",
    "store",
    "threshold",
    "tx",
    "typed_data",
    "unfreeze",
    "veto",
];

/// Codes without a family (the scanner cannot tell them from other words, so they are named).
const BARE_CODES: &[&str] = &["internal", "veto"];

/// Dotted literals that are not error codes. Each must still occur in the sources (a stale
/// entry fails) and must not be in the error table.
const NOT_CODES: &[&str] = &[
    // File names and extensions.
    "audit.jsonl",
    "ca.key",
    "ca.pem",
    "coordinator.redb",
    "identity.json",
    "json.lock",
    "node.redb",
    // Audit-log event names (a record's `event`), not errors.
    "account.register",
    "approval.received",
    "auth.denied",
    "incident.key_locked",
    "incident.reported",
    "key.unlocked",
    "partial_signature.resent",
    "peer.reported",
    "policy.installed",
    "policy.pushed",
    "presign.depth",
    "request.evaluated",
    "request.received",
    "request.verdicts",
    "reserves.started",
    "session.blame",
    "session.failed",
    "reshare.activated",
    "reshare.activation_refused",
    "reshare.certified",
    "reshare.dealer_excluded",
    "reshare.failed",
    "reshare.node_activation",
    "reshare.ordered",
    "reshare.pending",
    "refresh.overdue",
    "refresh.scheduled",
    // `node.toml` keys named in configuration errors.
    "policy.guardians",
    "policy.officers",
    // Audit-log verification errors (`AuditError::code`): `signer-node audit verify`,
    // `signer-node check` and start-up refuse with them; the API never carries them.
    "audit.anchor",
    "audit.broken",
    "audit.diverged",
    "audit.io",
    "audit.truncated",
    // The outcome stored on a session record cut by a coordinator restart: its request
    // restarts with a fresh session, so the code never reaches an answer or a request.
    "coordinator.restarted",
];

/// The `where` column's vocabulary (see docs/api.md, *Errors*).
const WHERE: [&str; 7] = [
    "answer", "request", "key", "report", "order", "nodes", "ceremony",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- The literals --------------------------------------------------------------------------

/// The string literals of a Rust source (with their line numbers), outside comments and
/// outside the items that `#[cfg(test)]` marks, read with `proc-macro2`'s tokenizer.
fn literals(src: &str) -> Vec<(usize, String)> {
    let stream: proc_macro2::TokenStream = src
        .parse()
        .unwrap_or_else(|e| panic!("not Rust tokens: {e:?}"));
    let mut out = Vec::new();
    collect(stream, &mut out);
    out
}

fn collect(stream: proc_macro2::TokenStream, out: &mut Vec<(usize, String)>) {
    use proc_macro2::{Delimiter, TokenTree};
    // A `#[cfg(test)]` was seen and its item has not ended yet (its body or its `;`).
    let mut in_test_item = false;
    let mut tokens = stream.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = tokens.peek() {
                    let attr: String = g.stream().to_string().split_whitespace().collect();
                    in_test_item |= g.delimiter() == Delimiter::Bracket && attr == "cfg(test)";
                }
            }
            TokenTree::Punct(p) if p.as_char() == ';' => in_test_item = false,
            TokenTree::Group(g) if in_test_item => {
                in_test_item = g.delimiter() != Delimiter::Brace;
            }
            TokenTree::Group(g) => collect(g.stream(), out),
            TokenTree::Literal(l) if !in_test_item => {
                let line = l.span().start().line;
                match syn::Lit::new(l) {
                    syn::Lit::Str(s) => out.push((line, s.value())),
                    syn::Lit::ByteStr(b) => {
                        out.push((line, String::from_utf8_lossy(&b.value()).into_owned()))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Whether a literal reads `family.name[.more]` (lowercase ASCII words).
fn dotted(s: &str) -> bool {
    let word = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    s.contains('.') && s.split('.').all(word)
}

fn family(code: &str) -> &str {
    code.split('.').next().unwrap_or(code)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every string literal of the scanned sources → where it occurs (first place).
fn source_literals() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    for dir in SCANNED {
        rust_files(&workspace().join(dir), &mut files);
    }
    assert!(files.len() > 60, "{} source files", files.len());
    let mut out = BTreeMap::new();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let rel = f
            .strip_prefix(workspace())
            .unwrap_or(&f)
            .display()
            .to_string();
        for (line, lit) in literals(&src) {
            out.entry(lit).or_insert_with(|| format!("{rel}:{line}"));
        }
    }
    out
}

// ---- The docs ------------------------------------------------------------------------------

/// The text of the `## <title>` section of a Markdown file.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let head = format!("\n## {title}\n");
    let start = doc
        .find(&head)
        .unwrap_or_else(|| panic!("no section `{title}`"))
        + head.len();
    let end = doc[start..].find("\n## ").map_or(doc.len(), |e| start + e);
    &doc[start..end]
}

/// The cells of each row of the Markdown table whose header row starts with `| <first> |`.
fn table(text: &str, first: &str) -> Vec<Vec<String>> {
    let header = format!("| {first} |");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&header));
    assert!(lines.next().is_some(), "no table `{header}`");
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// A cell that is exactly one `code span`.
fn code_span(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

struct Row {
    status: Option<u16>,
    places: Vec<String>,
}

/// docs/api.md's error table: code → row.
fn documented_codes() -> BTreeMap<String, Row> {
    let doc = read("docs/api.md");
    let errors = section(&doc, "Errors");
    assert_eq!(
        errors.matches("\n| code |").count(),
        1,
        "docs/api.md's *Errors* has exactly one table of codes"
    );
    let mut out = BTreeMap::new();
    for cells in table(errors, "code") {
        assert_eq!(cells.len(), 4, "{cells:?}");
        let code = code_span(&cells[0]).unwrap_or_else(|| panic!("one code per row: {cells:?}"));
        let status = match cells[1].as_str() {
            "—" => None,
            s => Some(
                s.parse::<u16>()
                    .unwrap_or_else(|_| panic!("status of `{code}`: {s}")),
            ),
        };
        let places: Vec<String> = cells[2].split(", ").map(str::to_string).collect();
        for p in &places {
            assert!(WHERE.contains(&p.as_str()), "`{code}`: where `{p}`?");
        }
        assert_eq!(
            status.is_some(),
            places.iter().any(|p| p == "answer"),
            "`{code}`: a status exactly when it is an answer's"
        );
        if let Some(s) = status {
            assert!((400..600).contains(&s), "`{code}`: {s}");
        }
        assert!(!cells[3].is_empty(), "`{code}` has no meaning");
        let row = Row { status, places };
        assert!(
            out.insert(code.to_string(), row).is_none(),
            "`{code}` twice"
        );
    }
    out
}

// ---- The tests -----------------------------------------------------------------------------

/// The lexer finds literals where Rust has them, and only there.
#[test]
fn codes_lexer_reads_literals_outside_comments_and_tests() {
    let src = r####"
        // "comment.code"
        /* "block.code" /* "nested.code" */ "still.comment" */
        fn f<'a>(x: &'a str) -> char { let _ = ("one.code", r#"raw."code""#, b"bytes.code"); '"' }
        const Q: char = '\''; const B: char = '{';
        fn g() { fail("two.code", format!("{}", 1)); }
        #[cfg(test)]
        mod tests { fn t() { assert_eq!(code(), "test.code"); } }
        fn h() { let _ = "three.code"; }
    "####;
    let found: Vec<String> = literals(src).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        found,
        [
            "one.code",
            "raw.\"code\"",
            "bytes.code",
            "two.code",
            "{}",
            "three.code"
        ]
    );
    assert!(dotted("policy.scope.chain") && dotted("tx.erc20_non_canonical"));
    for not in ["1.5", "x", "e.g.", "A.b", "reserves.{key_id}", "a..b", ".a"] {
        assert!(!dotted(not), "{not}");
    }
}

/// Every code in the sources is in docs/api.md's error table, and every code there is in the
/// sources.
#[test]
fn codes_every_error_code_is_documented_and_every_documented_code_exists() {
    let literals = source_literals();
    let docs = documented_codes();
    let mut in_code: BTreeMap<&str, &str> = BTreeMap::new();
    let mut unknown_family = Vec::new();
    for (lit, place) in &literals {
        if !dotted(lit) || NOT_CODES.contains(&lit.as_str()) {
            continue;
        }
        match CODE_FAMILIES.contains(&family(lit)) {
            true => {
                in_code.insert(lit, place);
            }
            false => unknown_family.push(format!("`{lit}` ({place})")),
        }
    }
    assert!(
        unknown_family.is_empty(),
        "dotted literals of no code family: add the family to CODE_FAMILIES (and document the \
         codes) or the literal to NOT_CODES with the reason:\n{}",
        unknown_family.join("\n")
    );
    for bare in BARE_CODES {
        let place = literals
            .get(*bare)
            .unwrap_or_else(|| panic!("`{bare}` is in no source"));
        in_code.insert(bare, place);
    }
    assert!(
        in_code.len() > 80,
        "{} codes found: is the scan broken?",
        in_code.len()
    );

    let undocumented: Vec<String> = in_code
        .iter()
        .filter(|(c, _)| !docs.contains_key(**c))
        .map(|(c, p)| format!("`{c}` ({p})"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "codes in the sources missing from docs/api.md's error table:\n{}",
        undocumented.join("\n")
    );
    let families: Vec<&String> = docs.keys().filter(|c| c.contains('<')).collect();
    assert_eq!(
        families,
        ["policy.<tag>"],
        "the only family row is the policy's"
    );
    let phantom: Vec<&String> = docs
        .keys()
        .filter(|c| !c.contains('<') && !in_code.contains_key(c.as_str()))
        .collect();
    assert!(
        phantom.is_empty(),
        "codes in docs/api.md's error table that no source produces: {phantom:?}"
    );
    let stale: Vec<&&str> = NOT_CODES
        .iter()
        .filter(|n| !literals.contains_key(**n))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_CODES lists literals found in no source: {stale:?}"
    );
    for not in NOT_CODES {
        assert!(
            !docs.contains_key(*not),
            "`{not}` is in NOT_CODES and in the error table"
        );
    }
}

/// The statuses of the edge's own answers, and the codes that lock a key, are as documented.
#[test]
fn codes_documented_statuses_of_the_edge() {
    let docs = documented_codes();
    let expect = [
        ("auth.missing", 401),
        ("auth.invalid", 401),
        ("auth.scope", 403),
        ("rate.limited", 429),
        ("request.too_large", 413),
        ("route.not_found", 404),
        ("key.locked", 423),
        ("internal", 500),
    ];
    let row = |code: &str| {
        docs.get(code)
            .unwrap_or_else(|| panic!("`{code}` is not in docs/api.md's error table"))
    };
    for (code, status) in expect {
        assert_eq!(row(code).status, Some(status), "`{code}`");
    }
    // The codes that lock a key reach the request that caused the incident.
    for code in coordinator::faults::INCIDENT_CODES {
        assert!(row(code).places.iter().any(|p| p == "request"), "`{code}`");
    }
    for code in [
        "node.scope.chain",
        "node.scope.contract_call",
        "node.scope.message",
    ] {
        assert!(docs.contains_key(code), "`{code}`");
    }
}

/// docs/policy.md's rule catalogue has one heading per rule tag, and no other.
#[test]
fn codes_rule_catalogue_lists_every_rule_tag() {
    let doc = read("docs/policy.md");
    let documented: BTreeSet<&str> = section(&doc, "Rule catalogue")
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(code_span)
        .collect();
    let tags: BTreeSet<&str> = policy::tags::ALL.into_iter().collect();
    assert_eq!(documented, tags);
}

/// docs/api.md's scope table lists every route of the router under the scope it needs.
#[test]
fn codes_scope_table_lists_every_route_by_scope() {
    let doc = read("docs/api.md");
    let mut documented = BTreeSet::new();
    for cells in table(section(&doc, "Authentication"), "scope") {
        assert_eq!(cells.len(), 2, "{cells:?}");
        let scope = match cells[0].as_str() {
            "none" => None,
            s => Some(
                code_span(s)
                    .unwrap_or_else(|| panic!("scope `{s}`"))
                    .to_string(),
            ),
        };
        for route in cells[1].split(", ") {
            let route = code_span(route).unwrap_or_else(|| panic!("route `{route}`"));
            let (method, path) = route.split_once(' ').unwrap_or_else(|| panic!("`{route}`"));
            let new = documented.insert((method.to_string(), path.to_string(), scope.clone()));
            assert!(new, "`{route}` twice");
        }
    }
    let routed: BTreeSet<(String, String, Option<String>)> = coordinator::api::routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.scope.map(|s| s.as_str().to_string())))
        .collect();
    assert!(routed.len() >= 22, "{routed:?}");
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/api.md's scope table differs from the router\nrouted, not documented so: \
         {missing:?}\ndocumented, not routed so: {extra:?}"
    );
}
