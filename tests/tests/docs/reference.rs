//! The reference docs against the code.
//!
//! - `docs/cli.md` is generated from the clap definitions of every binary users run
//!   (`signer-node`, `coordinator`, `policy`, `devnet`), and every command and flag has help text.
//!   `UPDATE_DOCS=1 cargo test --release -p custody-tests --test docs` rewrites it.
//! - `docs/policy.md` names exactly the `policy` commands that take `--json`.
//! - `docs/config.md`'s tables give exactly the keys the config structs accept (per file and
//!   section), with their types, defaults and required-ness. The keys come from the structs
//!   themselves: a document built from the tables is parsed by the real deserializer (unknown
//!   keys refused) and the parsed config serialized back, so every field, `Option`s included,
//!   shows up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use clap::CommandFactory;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");

fn read_doc(name: &str) -> String {
    std::fs::read_to_string(format!("{DOCS}/{name}"))
        .unwrap_or_else(|e| panic!("cannot read docs/{name}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// docs/cli.md
// ---------------------------------------------------------------------------------------------

/// Every binary users run, as clap sees it.
fn binaries() -> Vec<clap::Command> {
    vec![
        signer_node::cli::Cli::command(),
        coordinator::cli::Cli::command(),
        custody_policy_cli::cli::Cli::command(),
        custody_tests::devnet_cli::Args::command(),
    ]
}

const CLI_PREAMBLE: &str = "\
# Command-line reference

<!-- Generated from the binaries' clap definitions by tests/tests/docs/reference.rs: do not edit.
     Regenerate with `UPDATE_DOCS=1 cargo test --release -p custody-tests --test docs`. -->

Every command and flag of the binaries users run, as `--help` shows them:
[`signer-node`](#signer-node) (a guardian's node), [`coordinator`](#coordinator) (the API and
relay), [`policy`](#policy) (officers', approvers' and guardians' tool) and
[`devnet`](#devnet) (a local cluster). Configuration files are in [`config.md`](config.md);
what the commands are for is in the README and [`policy.md`](policy.md).
";

/// The markdown of one binary: clap-markdown's document, one heading level down, so that the
/// binaries are the sections of one page (the binary's own text under its section heading).
fn binary_markdown(cmd: &clap::Command) -> String {
    let name = cmd.get_name().to_string();
    let options = clap_markdown::MarkdownOptions::new()
        .title(format!("`{name}`"))
        .show_table_of_contents(cmd.has_subcommands())
        .show_footer(false);
    let raw = clap_markdown::help_markdown_command_custom(cmd, &options);
    let root = format!("## `{name}`");
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with("This document contains the help content for") || line == root {
            continue;
        }
        // An empty default (`--reason`) reads better in words.
        let line = line.replace("Default value: ``", "Default value: empty");
        if line.starts_with('#') && !line.starts_with("######") {
            out.push('#');
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The whole of `docs/cli.md`.
fn cli_markdown() -> String {
    let mut out = String::from(CLI_PREAMBLE);
    for cmd in binaries() {
        out.push('\n');
        out.push_str(&binary_markdown(&cmd));
    }
    // One blank line between blocks, one newline at the end.
    let mut text = String::new();
    let mut blank = false;
    for line in out.lines() {
        if line.is_empty() {
            blank = true;
            continue;
        }
        if blank && !text.is_empty() {
            text.push('\n');
        }
        blank = false;
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `docs/cli.md` is what the binaries' clap definitions generate.
#[test]
fn cli_md_is_generated_from_the_binaries() {
    let path = format!("{DOCS}/cli.md");
    let generated = cli_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/cli.md differs from what the binaries' clap definitions generate (first at line \
             {}: committed {:?}, generated {:?}); update it with\n\n    \
             UPDATE_DOCS=1 cargo test --release -p custody-tests --test docs\n\nand commit the result",
            first + 1,
            committed.lines().nth(first),
            generated.lines().nth(first),
        );
    }
    for name in ["signer-node", "coordinator", "policy", "devnet"] {
        assert!(
            generated.contains(&format!("\n## `{name}`\n")),
            "a section per binary: {name}"
        );
    }
}

/// Commands and flags without help text, as `binary sub --flag` paths.
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() {
            let flag = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("<{id}>"),
            };
            out.push(format!("{path} {flag}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() {
            out.push(sub_path.clone());
        }
        undocumented(sub, &sub_path, out);
    }
}

/// Every command, subcommand, flag and argument of every binary says what it is for.
#[test]
fn every_command_and_flag_has_help_text() {
    let mut missing = Vec::new();
    for cmd in binaries() {
        if cmd.get_about().is_none() {
            missing.push(cmd.get_name().to_string());
        }
        undocumented(&cmd, cmd.get_name(), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "no help text (add a doc comment): {missing:#?}"
    );

    // The check itself finds a flag without a doc comment.
    let bare = clap::Command::new("x")
        .about("x")
        .subcommand(clap::Command::new("y").arg(clap::Arg::new("json").long("json")));
    let mut found = Vec::new();
    undocumented(&bare, "x", &mut found);
    assert_eq!(found, ["x y", "x y --json"]);
}

/// The backticked words of `text` from `marker` to the next full stop.
fn listed_after(text: &str, marker: &str) -> BTreeSet<String> {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("docs/policy.md no longer says {marker:?}"))
        + marker.len();
    let rest = &text[start..];
    let sentence = &rest[..rest
        .find(". ")
        .or_else(|| rest.find(".\n"))
        .unwrap_or(rest.len())];
    sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `docs/policy.md` names exactly the `policy` commands that accept `--json`, and the others.
#[test]
fn policy_md_names_the_commands_that_take_json() {
    let text = read_doc("policy.md").replace('\n', " ");
    let cmd = custody_policy_cli::cli::Cli::command();
    let (mut with, mut without) = (BTreeSet::new(), BTreeSet::new());
    for sub in cmd.get_subcommands() {
        let takes = sub.get_arguments().any(|a| a.get_long() == Some("json"));
        match takes {
            true => with.insert(sub.get_name().to_string()),
            false => without.insert(sub.get_name().to_string()),
        };
    }
    assert_eq!(
        listed_after(&text, "These commands take `--json`:"),
        with,
        "docs/policy.md's list of commands taking `--json`"
    );
    assert_eq!(
        listed_after(&text, "take no `--json`:"),
        without,
        "docs/policy.md's list of commands without `--json`"
    );
}

// ---------------------------------------------------------------------------------------------
// docs/config.md
// ---------------------------------------------------------------------------------------------

const TABLE_HEADER: &str = "| key | type | default | required | meaning |";

/// One row of a config table.
#[derive(Debug, Clone)]
struct Row {
    /// `""` for the top level, else the TOML table (`limits`, …).
    section: String,
    key: String,
    ty: String,
    default: String,
    required: bool,
}

impl Row {
    fn name(&self) -> String {
        match self.section.is_empty() {
            true => self.key.clone(),
            false => format!("[{}] {}", self.section, self.key),
        }
    }
}

/// The rows of `docs/config.md`'s tables under the `## ` heading that names `file`.
fn config_rows(text: &str, file: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_file = false;
    let mut section = String::new();
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("docs/config.md:{}", n + 1);
        if let Some(heading) = line.strip_prefix("## ") {
            in_file = heading.contains(file);
            section.clear();
            in_table = false;
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ").filter(|_| in_file) {
            let name = heading.trim().trim_matches('`');
            section = name
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or_else(|| panic!("{}: a subsection names its table, `[name]`", at()))
                .to_string();
            in_table = false;
            continue;
        }
        if line.starts_with("| key") {
            assert_eq!(line.trim(), TABLE_HEADER, "{}: tables are uniform", at());
            in_table = in_file;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cells.len() >= 7, "{}: five cells", at());
        let key = cells[1]
            .strip_prefix('`')
            .and_then(|k| k.strip_suffix('`'))
            .filter(|k| !k.contains(['`', ' ', ',']))
            .unwrap_or_else(|| panic!("{}: one `key` per row, found {:?}", at(), cells[1]));
        let required = match cells[4] {
            "yes" => true,
            "no" => false,
            other => panic!("{}: required is `yes` or `no`, found {other:?}", at()),
        };
        assert!(!cells[5].is_empty(), "{}: `{key}` has no meaning", at());
        rows.push(Row {
            section: section.clone(),
            key: key.to_string(),
            ty: cells[2].to_string(),
            default: cells[3].to_string(),
            required,
        });
    }
    rows
}

/// A value of the documented type.
fn sample(row: &Row) -> Value {
    match row.ty.as_str() {
        "string" | "path" => json!("x"),
        "integer" => json!(7),
        "bool" => json!(true),
        "array of strings" => json!(["x"]),
        "array of integers" => json!([7]),
        "array of scopes" => json!(["read"]),
        other => panic!("`{}`: unknown type {other:?}", row.name()),
    }
}

/// A document setting `rows` to values of their documented types.
fn document<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Value {
    let mut doc = serde_json::Map::new();
    for row in rows {
        let table = match row.section.is_empty() {
            true => &mut doc,
            false => doc
                .entry(row.section.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap(),
        };
        table.insert(row.key.clone(), sample(row));
    }
    Value::Object(doc)
}

/// The value at a row's place in a serialized config (`Null` when absent).
fn at<'a>(config: &'a Value, row: &Row) -> &'a Value {
    let table = match row.section.is_empty() {
        true => config,
        false => &config[&row.section],
    };
    &table[&row.key]
}

/// `(section, key)` of every key in a serialized config; a nested table is a section.
fn keys(config: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (key, value) in config.as_object().into_iter().flatten() {
        match value {
            Value::Object(table) => {
                out.extend(table.keys().map(|k| (key.clone(), k.clone())));
            }
            _ => {
                out.insert((String::new(), key.clone()));
            }
        }
    }
    out
}

/// Parses a document as TOML text with the config's own deserializer, and serializes the
/// result back (JSON, so that unset `Option`s show as `null`).
fn via_toml<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<Value, String> {
    let text = toml::to_string(&toml::Value::try_from(doc).unwrap()).unwrap();
    let config: T = toml::from_str(&text).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(config).unwrap())
}

/// The same for a JSON file.
fn via_json<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<Value, String> {
    let config: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(config).unwrap())
}

/// A documented default as a value: `` `30` ``, `` `"localhost"` ``, `` `[]` `` (TOML, prose
/// may follow), or `unset`.
fn documented_default(row: &Row) -> Value {
    if row.default == "unset" {
        return Value::Null;
    }
    let code = row
        .default
        .strip_prefix('`')
        .and_then(|d| d.split('`').next())
        .unwrap_or_else(|| {
            panic!(
                "`{}`: a default is `value` or unset, found {:?}",
                row.name(),
                row.default
            )
        });
    let parsed: toml::Table = toml::from_str(&format!("v = {code}")).unwrap_or_else(|e| {
        panic!(
            "`{}`: default {code:?} is not a TOML value: {e}",
            row.name()
        )
    });
    serde_json::to_value(&parsed["v"]).unwrap()
}

type Parse = fn(&Value) -> Result<Value, String>;

/// Every difference between a file's tables and its config struct.
fn config_problems(file: &str, rows: &[Row], parse: Parse) -> Vec<String> {
    let mut problems = Vec::new();
    let documented: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.section.clone(), r.key.clone()))
        .collect();
    if documented.len() != rows.len() {
        problems.push(format!("{file}: a key is documented twice"));
    }

    // Every documented key, with a value of its documented type, is accepted and read.
    let full = match parse(&document(rows)) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!(
                "{file}: the documented keys with values of their documented types do not \
                 parse: {e}"
            ));
            return problems;
        }
    };
    for row in rows {
        if *at(&full, row) != sample(row) {
            problems.push(format!(
                "{file}: `{}` documented as {} was read as {}",
                row.name(),
                row.ty,
                at(&full, row)
            ));
        }
    }

    // The required keys alone parse, and none of them can be left out.
    let required: Vec<&Row> = rows.iter().filter(|r| r.required).collect();
    let minimal = match parse(&document(required.iter().copied())) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!(
                "{file}: the keys documented as required are not enough: {e}"
            ));
            return problems;
        }
    };
    for row in &required {
        let without = required.iter().copied().filter(|r| r.name() != row.name());
        if parse(&document(without)).is_ok() {
            problems.push(format!(
                "{file}: `{}` is documented as required but may be left out",
                row.name()
            ));
        }
    }

    // The code's keys: a default config shows every field (unset ones as null); the populated
    // one adds fields skipped when unset.
    let code: BTreeSet<(String, String)> = keys(&minimal).union(&keys(&full)).cloned().collect();
    let name = |(section, key): &(String, String)| match section.is_empty() {
        true => key.clone(),
        false => format!("[{section}] {key}"),
    };
    for k in code.difference(&documented) {
        problems.push(format!(
            "{file}: `{}` is in the code but not documented",
            name(k)
        ));
    }
    for k in documented.difference(&code) {
        problems.push(format!(
            "{file}: `{}` is documented but not in the code",
            name(k)
        ));
    }

    // The documented defaults are the code's.
    for row in rows {
        if row.required {
            if row.default != "—" {
                problems.push(format!(
                    "{file}: `{}` is required, so its default is `—`",
                    row.name()
                ));
            }
            continue;
        }
        let expected = documented_default(row);
        if *at(&minimal, row) != expected {
            problems.push(format!(
                "{file}: `{}` defaults to {} in the code, {} in the docs",
                row.name(),
                at(&minimal, row),
                expected
            ));
        }
    }
    problems
}

fn assert_config_documented(heading: &str, parse: Parse) {
    let rows = config_rows(&read_doc("config.md"), heading);
    assert!(
        !rows.is_empty(),
        "docs/config.md has no table under {heading}"
    );
    let problems = config_problems(heading, &rows, parse);
    assert!(
        problems.is_empty(),
        "docs/config.md differs from the code:\n{}",
        problems.join("\n")
    );
}

#[test]
fn config_md_gives_every_node_toml_key() {
    assert_config_documented("`node.toml`", via_toml::<signer_node::config::NodeConfig>);
}

#[test]
fn config_md_gives_every_coordinator_toml_key() {
    assert_config_documented(
        "`coordinator.toml`",
        via_toml::<coordinator::config::CoordConfig>,
    );
}

#[test]
fn config_md_gives_every_credentials_file_key() {
    assert_config_documented(
        "Credentials file",
        via_json::<coordinator::auth::Credential>,
    );
}

/// The check finds each kind of difference: a key left out, a key the code lacks, a wrong default, a wrong type, a
/// required key documented as optional and an optional one documented as required.
#[test]
fn the_config_check_finds_each_kind_of_difference() {
    let rows = config_rows(&read_doc("config.md"), "`coordinator.toml`");
    let parse: Parse = via_toml::<coordinator::config::CoordConfig>;
    assert!(config_problems("c", &rows, parse).is_empty());
    let edit = |f: &dyn Fn(&mut Vec<Row>)| {
        let mut rows = rows.clone();
        f(&mut rows);
        config_problems("c", &rows, parse).join("\n")
    };
    let find = |rows: &mut Vec<Row>, section: &str, key: &str| {
        rows.iter()
            .position(|r| r.section == section && r.key == key)
            .unwrap()
    };
    let left_out = edit(&|r| {
        let i = find(r, "limits", "api_rate_per_sec");
        r.remove(i);
    });
    assert!(
        left_out.contains("`[limits] api_rate_per_sec` is in the code but not documented"),
        "{left_out}"
    );
    let invented = edit(&|r| {
        let mut extra = r[0].clone();
        extra.key = "api_colour".into();
        r.push(extra);
    });
    assert!(
        invented.contains("unknown field `api_colour`"),
        "{invented}"
    );
    let wrong_default = edit(&|r| {
        let i = find(r, "presign", "idle_ms");
        r[i].default = "`250`".into();
    });
    assert!(
        wrong_default.contains("`[presign] idle_ms` defaults to 200"),
        "{wrong_default}"
    );
    let wrong_type = edit(&|r| {
        let i = find(r, "", "api_allow_tls12");
        r[i].ty = "string".into();
    });
    assert!(wrong_type.contains("do not parse"), "{wrong_type}");
    let not_required = edit(&|r| {
        let i = find(r, "", "api_listen");
        r[i].required = false;
        r[i].default = "unset".into();
    });
    assert!(not_required.contains("are not enough"), "{not_required}");
    let required = edit(&|r| {
        let i = find(r, "", "credentials_file");
        r[i].required = true;
        r[i].default = "—".into();
    });
    assert!(
        required.contains("`credentials_file` is documented as required but may be left out"),
        "{required}"
    );
}
