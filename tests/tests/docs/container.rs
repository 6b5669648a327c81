//! The container image and compose file, without a Docker engine (CI has none): the
//! `Dockerfile` ships every binary and owns its data directory before `USER`; the entrypoint
//! refuses an unwritable data directory with a clear message and `exec`s its command; and the
//! services of `docker-compose.yml`, started through the entrypoint in order as processes on
//! loopback, come up and sign the README's sample request with the key, token and CA the README's
//! "In containers" block reads (the block itself runs, with `curl`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use custody_tests::cluster::{free_port, Cluster, Layout, PrimeSource};
use proto::api::{KeyStatus, RequestStatus};

/// Every binary users run; the image must build and copy each.
const BINARIES: [&str; 4] = ["signer-node", "coordinator", "policy", "devnet"];
/// The image's user.
const UID: &str = "10001";
/// The entrypoint's variable naming the data directory (`ENV` in the Dockerfile).
const DATA_ENV: &str = "CUSTODY_DATA_DIR";
/// The compose file's ports inside the containers (the setup step's `--api-port`/`--node-port`).
const API_PORT: &str = "8443";
const NODE_PORT: &str = "8444";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo().join(file)).unwrap()
}

/// The Dockerfile's instructions (continuation lines joined), each as (keyword, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, rest) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// The final stage's instructions (after the last `FROM`).
fn final_stage(all: &[(String, String)]) -> Vec<(String, String)> {
    let last = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    all[last + 1..].to_vec()
}

/// The data directory: the Dockerfile's `ENV CUSTODY_DATA_DIR=…`.
fn data_dir(stage: &[(String, String)]) -> String {
    stage
        .iter()
        .filter(|(k, _)| k == "ENV")
        .find_map(|(_, v)| v.strip_prefix(&format!("{DATA_ENV}=")))
        .unwrap_or_else(|| panic!("the Dockerfile sets no {DATA_ENV}"))
        .to_string()
}

/// One service of docker-compose.yml, read line by line (no YAML parser in Cargo.lock): its
/// `command` (a one-line JSON-style list), `ports` items and the text of `depends_on`.
#[derive(Debug, Default)]
struct Service {
    name: String,
    command: Vec<String>,
    ports: Vec<String>,
    depends_on: String,
}

fn compose() -> Vec<Service> {
    let text = read("docker-compose.yml");
    let mut out: Vec<Service> = Vec::new();
    let mut in_services = false;
    let mut field = "";
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_services = t == "services:";
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 {
            let name = t.strip_suffix(':').unwrap().to_string();
            out.push(Service {
                name,
                ..Default::default()
            });
            continue;
        }
        let svc = out.last_mut().unwrap();
        if indent == 4 {
            let (k, v) = t.split_once(':').unwrap();
            field = match k {
                "ports" | "depends_on" => k,
                _ => "",
            };
            if k == "command" {
                svc.command = serde_json::from_str(v.trim()).unwrap();
            }
            if k == "depends_on" {
                svc.depends_on.push_str(v.trim());
            }
            continue;
        }
        match field {
            "ports" => svc
                .ports
                .push(t.trim_start_matches("- ").trim_matches('"').to_string()),
            "depends_on" => {
                svc.depends_on.push(' ');
                svc.depends_on.push_str(t);
            }
            _ => {}
        }
    }
    out
}

fn service<'a>(all: &'a [Service], name: &str) -> &'a Service {
    all.iter().find(|s| s.name == name).unwrap()
}

/// The value after `flag` in a command line.
fn arg<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv.iter().position(|a| a == flag).unwrap();
    &argv[i + 1]
}

#[test]
fn dockerfile_ships_every_binary_and_owns_its_data_dir_before_user() {
    let all = dockerfile();
    let stage = final_stage(&all);
    let build = all
        .iter()
        .find(|(k, v)| k == "RUN" && v.contains("cargo build"))
        .unwrap();
    let copy = stage
        .iter()
        .find(|(k, v)| k == "COPY" && v.starts_with("--from="))
        .unwrap();
    for bin in BINARIES {
        assert!(
            build.1.contains(&format!("--bin {bin} "))
                || build.1.ends_with(&format!("--bin {bin}")),
            "the build does not build `{bin}`: {}",
            build.1
        );
        assert!(
            copy.1.contains(&format!("/target/release/{bin} ")),
            "the image does not copy `{bin}`: {}",
            copy.1
        );
    }
    let data = data_dir(&stage);
    let user = stage.iter().position(|(k, _)| k == "USER").unwrap();
    assert!(
        stage[user].1 == UID || stage[user].1.starts_with(&format!("{UID}:")),
        "the image runs as `{}`, not uid {UID}",
        stage[user].1
    );
    let owns = stage[..user].iter().any(|(k, v)| {
        k == "RUN"
            && v.contains(&format!("useradd --system --uid {UID}"))
            && v.contains(&format!("mkdir -p {data}"))
            && v.contains(&format!("chown {UID}:{UID} {data}"))
    });
    assert!(
        owns,
        "no RUN before USER creates {data} owned by uid {UID} (a named volume would be root's)"
    );
    // The entrypoint is the repository's script, copied with its mode (executable in git).
    let entry = stage.iter().find(|(k, _)| k == "ENTRYPOINT").unwrap();
    let entry: Vec<String> = serde_json::from_str(&entry.1).unwrap();
    let copied = stage.iter().any(|(k, v)| {
        k == "COPY"
            && v.split_whitespace().collect::<Vec<_>>() == ["docker/entrypoint.sh", &entry[0]]
    });
    assert!(copied, "ENTRYPOINT {entry:?} is not docker/entrypoint.sh");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo().join("docker/entrypoint.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "docker/entrypoint.sh is not executable");
}

#[test]
fn compose_services_match_the_image_and_each_other() {
    let stage = final_stage(&dockerfile());
    let data = data_dir(&stage);
    let text = read("docker-compose.yml");
    assert!(
        text.contains(&format!("- devnet:{data}\n")),
        "the named volume is not mounted on {data}"
    );
    let all = compose();
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["setup", "coordinator", "node-1", "node-2", "node-3"]
    );
    let setup = &service(&all, "setup").command;
    assert_eq!(setup[0], "devnet");
    assert!(setup.contains(&"--prepare-only".to_string()));
    assert_eq!(arg(setup, "--dir"), data);
    assert_eq!(arg(setup, "--api-port"), API_PORT);
    assert_eq!(arg(setup, "--node-port"), NODE_PORT);
    // Nodes dial the coordinator by its service name (Docker's DNS), which its certificate carries.
    assert!(names.contains(&arg(setup, "--coordinator-host")));
    let coord = service(&all, "coordinator");
    assert_eq!(coord.ports, [format!("127.0.0.1:{API_PORT}:{API_PORT}")]);
    assert!(
        coord
            .depends_on
            .contains("setup: condition: service_completed_successfully"),
        "{}",
        coord.depends_on
    );
    for n in 1..=3 {
        let node = service(&all, &format!("node-{n}"));
        assert_eq!(node.command[0], "signer-node");
        assert_eq!(node.depends_on, "[coordinator]");
    }
}

/// Where the test stands in for the containers. One explicit substitution maps every container
/// name to this machine: the data directory (`/devnet`) is a temp dir, the ports 8443 and 8444
/// are free ones, and the coordinator's service name and `0.0.0.0` are loopback.
struct Host {
    /// The image's data directory, as written in the Dockerfile and compose file.
    container_data: String,
    data: PathBuf,
    api: u16,
    node: u16,
    bin: PathBuf,
}

impl Host {
    /// Shell text (the README's block): `:8443`, then each path that starts a word with
    /// `/devnet/` (not `…/v1/keys/devnet-key`; a temp path may hold digits, hence the order).
    fn text(&self, s: &str) -> String {
        s.replace(&format!(":{API_PORT}"), &format!(":{}", self.api))
            .replace(&format!(":{NODE_PORT}"), &format!(":{}", self.node))
            .replace(
                &format!(" {}/", self.container_data),
                &format!(" {}/", self.data.display()),
            )
    }

    /// A command line: port arguments, the data directory and paths in it, and the
    /// coordinator's host and bind address.
    fn argv(&self, argv: &[String]) -> Vec<String> {
        let data = self.data.display().to_string();
        let mut out: Vec<String> = argv
            .iter()
            .map(|a| match a.as_str() {
                API_PORT => self.api.to_string(),
                NODE_PORT => self.node.to_string(),
                a if a == self.container_data => data.clone(),
                a => match a.strip_prefix(&format!("{}/", self.container_data)) {
                    Some(rest) => format!("{data}/{rest}"),
                    None => a.to_string(),
                },
            })
            .collect();
        for flag in ["--coordinator-host", "--bind"] {
            if let Some(i) = out.iter().position(|a| a == flag) {
                out[i + 1] = "127.0.0.1".into();
            }
        }
        out
    }

    /// `entrypoint.sh ARGV…` as the image runs it: the binaries on PATH (wrappers around the
    /// multi-call `devnet`), the data directory as working directory.
    fn entry(&self, argv: &[String]) -> Command {
        let mut c = Command::new(repo().join("docker/entrypoint.sh"));
        let path = std::env::var("PATH").unwrap_or_default();
        c.args(self.argv(argv))
            .env("PATH", format!("{}:{path}", self.bin.display()))
            .env(DATA_ENV, &self.data)
            .env_remove(signer_node::cli::PASSPHRASE_ENV)
            .current_dir(&self.data);
        c
    }
}

/// `signer-node`, `coordinator` and `devnet` on PATH, as in the image's /usr/local/bin.
fn wrappers(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let exe = env!("CARGO_BIN_EXE_devnet");
    for (name, sub) in [
        ("signer-node", "signer-node "),
        ("coordinator", "coordinator "),
        ("devnet", ""),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, format!("#!/bin/sh\nexec '{exe}' {sub}\"$@\"\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("custody-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn euid() -> String {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn entrypoint_refuses_an_unwritable_data_dir_and_execs_its_command() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("entrypoint");
    let script = repo().join("docker/entrypoint.sh");
    let run = |data: &Path, wrap: &[&str], argv: &[&str]| {
        let mut c = match wrap.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&script);
                c
            }
            None => Command::new(&script),
        };
        c.args(argv).env(DATA_ENV, data).output().unwrap()
    };

    let missing = run(&root.join("missing"), &[], &["true"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));

    // A directory the image's user cannot write, like a root-owned bind mount. Root writes
    // anywhere, so as root the script runs as uid 10001, the image's user.
    let locked = root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let (uid, wrap): (String, Vec<&str>) = if euid() == "0" {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let setpriv = [
            "setpriv",
            "--reuid=10001",
            "--regid=10001",
            "--clear-groups",
        ];
        (UID.into(), setpriv.to_vec())
    } else {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        (euid(), Vec::new())
    };
    let out = run(&locked, &wrap, &["true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("is not writable by uid {uid}")),
        "{err}"
    );
    assert!(err.contains("chown -R 10001:10001"), "{err}");
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);

    // Writable: the command replaces the script (same process id), so in a container it is
    // PID 1 and receives SIGTERM itself; the write probe leaves nothing behind.
    let ok = root.join("ok");
    std::fs::create_dir(&ok).unwrap();
    let child = Command::new(&script)
        .args(["sh", "-c", "echo $$"])
        .env(DATA_ENV, &ok)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string());
    assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 0);
    assert_eq!(run(&ok, &[], &[]).status.code(), Some(2));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

/// The README's "In containers" block, to run here: `docker compose up` is what this test did
/// with the compose file's services, and `docker compose exec -T coordinator CMD` runs CMD on
/// this machine, whose data directory is the volume's.
fn readme_block(host: &Host) -> String {
    let readme = read("README.md");
    let section = readme
        .split_once("### In containers")
        .expect("README has no `### In containers` section")
        .1;
    let block = section
        .split_once("```sh\n")
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    assert!(block.contains("docker compose up"), "{block}");
    let block = block
        .lines()
        .map(|l| match l.starts_with("docker compose up") {
            true => ":",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("docker compose exec -T coordinator ", "");
    assert!(
        !block.contains("docker"),
        "a docker command the test cannot run: {block}"
    );
    host.text(&block)
}

#[test]
fn compose_services_as_processes_sign_the_readme_request() {
    let container_data = data_dir(&final_stage(&dockerfile()));
    let root = scratch("container");
    let host = Host {
        container_data,
        data: root.join("data"),
        api: free_port().unwrap(),
        node: free_port().unwrap(),
        bin: root.join("bin"),
    };
    std::fs::create_dir(&host.data).unwrap();
    wrappers(&host.bin);
    let services = compose();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_devnet"));
    let layout = || Layout::loopback(host.data.clone(), 3, exe.clone(), host.api, host.node);
    // TEST-ONLY committed primes, the devnet test's way: setup keeps a node it finds
    // initialised, so it skips 1-3 minutes of prime generation. No flag: the compose file
    // cannot ask for them, and `signer-node init` with fresh primes is the devnet test's.
    layout().init_nodes(3, PrimeSource::TestFixture).unwrap();

    let setup = host
        .entry(&service(&services, "setup").command)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "setup failed: {}{}",
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );
    let mut cluster = Cluster::attach(layout()).unwrap();
    cluster
        .start_coordinator_as(host.entry(&service(&services, "coordinator").command))
        .unwrap();
    for (i, id) in cluster.layout.nodes.clone().iter().enumerate() {
        cluster
            .start_node_as(i, host.entry(&service(&services, id).command))
            .unwrap();
    }

    let work = root.join("work");
    std::fs::create_dir(&work).unwrap();
    let block = readme_block(&host);
    let (out, err) = (work.join("stdout"), work.join("stderr"));
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(&block)
        .current_dir(&work)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // The key ceremony (DKG and aux info) takes 1-3 minutes on 2 busy cores.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(st) = sh.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = sh.kill();
            let _ = sh.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let why = format!("({status:?}):\n{block}\n{stdout}\n{stderr}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the README's block failed {why}"
    );
    // Its last command shows the sample request. On 2 busy cores the first signing can outlast
    // `wait_ms`, so `signing` is accepted here and the harness waits for `signed` below.
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().rfind(|l| !l.is_empty()).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the block's last answer is not JSON: {e} {why}"));
    assert_eq!(last["request_id"], "devnet-sample-1", "{why}");
    assert_eq!(last["key_id"], "devnet-key", "{why}");
    let shown = last["status"].as_str().unwrap_or_default();
    assert!(["signed", "signing"].contains(&shown), "{why}");
    let key = cluster
        .wait_key("devnet-key", Duration::from_secs(5))
        .unwrap();
    assert_eq!(key.status, KeyStatus::Ready);
    let r = cluster
        .wait_request("devnet-sample-1", Duration::from_secs(120))
        .unwrap();
    assert_eq!(r.status, RequestStatus::Signed);
    assert_eq!(r.key_id, "devnet-key");
    assert!(r.signed_tx.is_some_and(|t| t.starts_with("0x")));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}
