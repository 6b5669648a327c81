//! One function per subcommand. Each returns a [`Status`]; I/O and usage errors are `Err`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use policy::{
    evaluate, sign_approval, Approval, Bundle, BundleError, EvalContext, HistoryEntry, Outcome,
    Policy,
};
use proto::intent::WithdrawalIntent;
use serde_json::json;

use crate::cli::{Cli, Command};
use crate::{keys, orders, render};

/// Exit code for usage and I/O errors.
pub const EXIT_USAGE: u8 = 2;

/// How a command ended when it ran to completion.
pub enum Status {
    /// 0: valid, allowed, verified.
    Ok,
    /// 1: invalid policy, denied withdrawal, bundle refused.
    Invalid,
    /// 3: the withdrawal is deferred (time-lock, cool-down or approvals).
    Deferred,
}

impl Status {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Status::Ok => 0,
            Status::Invalid => 1,
            Status::Deferred => 3,
        })
    }
}

pub fn run(cli: Cli) -> Result<Status> {
    match cli.command {
        Command::Check { file, json } => check(&file, json),
        Command::Hash { file, json } => hash(&file, json),
        Command::Sign {
            file,
            key,
            out,
            json,
        } => sign(&file, &key, out, json),
        Command::Verify {
            bundle,
            officers,
            threshold,
            installed_version,
            json,
        } => verify(&bundle, &officers, threshold, installed_version, json),
        Command::Eval {
            file,
            intent,
            history,
            approvals,
            now,
            first_seen,
            request_id,
            payload_hash,
            expires_at,
            frozen,
            json,
        } => {
            let now = now.map_or_else(unix_now, Ok)?;
            let ctx = EvalContext {
                now,
                request_id,
                payload_hash: payload_hash.unwrap_or([0; 32]),
                first_seen: first_seen.unwrap_or(now),
                frozen,
                request_expires_at: expires_at,
            };
            eval(
                &file,
                &intent,
                history.as_deref(),
                approvals.as_deref(),
                &ctx,
                json,
            )
        }
        Command::Keygen { out, json } => keygen(&out, json),
        Command::Pubkey { key } => {
            println!("{}", keys::read(&key)?.public_hex());
            Ok(Status::Ok)
        }
        Command::Approve {
            file,
            intent,
            sign_request,
            public_key,
            request_id,
            payload_hash,
            chain_code,
            account_index,
            key,
            expires_at,
            expires_in,
            out,
        } => {
            let account = chain_code.as_deref().zip(account_index);
            let (intent, request_id, payload_hash) = orders::approval_subject(
                intent.as_deref(),
                sign_request.as_deref(),
                (public_key.as_deref(), account),
                (request_id, payload_hash),
            )?;
            let expires_at = match (expires_at, expires_in) {
                (Some(at), _) => at,
                (None, Some(secs)) => unix_now()?.saturating_add(secs),
                (None, None) => anyhow::bail!("give `--expires-at` or `--expires-in`"),
            };
            let subject = policy::ApprovalSubject {
                request_id: &request_id,
                payload_hash: &payload_hash,
            };
            approve(&file, &intent, subject, &key, expires_at, out.as_deref())
        }
        Command::ReservesVerify {
            report,
            public_key,
            json,
        } => orders::reserves_verify(&report, public_key.as_deref(), json),
        Command::Veto { request_id, key } => orders::veto(&request_id, &key),
        Command::Freeze { key_id, epoch, key } => orders::freeze(&key_id, epoch, &key),
        Command::ReshareOrder { action } => crate::membership::run(action),
        Command::Unfreeze {
            key_id,
            epoch,
            key,
            out,
        } => orders::unfreeze(&key_id, epoch, &key, &out),
    }
}

fn unix_now() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = read(path)?;
    serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a valid {what}", path.display()))
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Loads a policy, printing diagnostics and returning `None` when it is invalid.
fn load(path: &Path, json: bool) -> Result<Option<(Policy, String)>> {
    let text = read(path)?;
    let name = path.display().to_string();
    match Policy::check(&text, &name) {
        Ok(p) => Ok(Some((p, text))),
        Err(errors) => {
            if json {
                print_json(&render::check_json(&name, None, &errors))?;
            } else {
                eprint!("{}", render::diagnostics(&name, &text, &errors));
            }
            Ok(None)
        }
    }
}

fn check(path: &Path, json: bool) -> Result<Status> {
    let Some((policy, text)) = load(path, json)? else {
        return Ok(Status::Invalid);
    };
    let name = path.display().to_string();
    if json {
        print_json(&render::check_json(&name, Some(&policy), &[]))?;
    } else {
        eprint!("{}", render::warnings(&name, &text, policy.warnings()));
        println!(
            "ok: `{name}` is a valid policy ({})",
            render::describe(&policy)
        );
        println!("hash: {}", policy.hash());
    }
    Ok(Status::Ok)
}

fn hash(path: &Path, json: bool) -> Result<Status> {
    let Some((policy, _)) = load(path, json)? else {
        return Ok(Status::Invalid);
    };
    if json {
        print_json(
            &json!({ "file": path.display().to_string(), "version": policy.version(), "hash": policy.hash().to_string() }),
        )?;
    } else {
        println!("{}", policy.hash());
    }
    Ok(Status::Ok)
}

fn default_bundle_path(file: &Path) -> PathBuf {
    file.with_extension("bundle.json")
}

fn sign(file: &Path, key: &Path, out: Option<PathBuf>, json: bool) -> Result<Status> {
    let key = keys::read(key)?;
    let is_bundle = file.extension().is_some_and(|e| e == "json");
    let (mut bundle, out) = if is_bundle {
        (
            load_bundle(file)?,
            out.unwrap_or_else(|| file.to_path_buf()),
        )
    } else {
        let Some((policy, text)) = load(file, false)? else {
            return Ok(Status::Invalid);
        };
        let out = out.unwrap_or_else(|| default_bundle_path(file));
        let bundle = if out.exists() {
            let existing = load_bundle(&out)?;
            let same = existing.policy().is_ok_and(|p| p.hash() == policy.hash());
            anyhow::ensure!(
                same,
                "bundle `{}` holds a different policy; choose another `--out`",
                out.display()
            );
            existing
        } else {
            Bundle::new(text)
        };
        (bundle, out)
    };
    let hash = match bundle.sign(key.expose_secret()) {
        Ok(h) => h,
        Err(e) => return bundle_refused(&bundle, &e, json),
    };
    fs::write(&out, bundle.to_json())
        .with_context(|| format!("cannot write bundle `{}`", out.display()))?;
    if json {
        print_json(
            &json!({ "bundle": out.display().to_string(), "hash": hash.to_string(), "officer": key.public_hex(), "signatures": bundle.signatures.len() }),
        )?;
    } else {
        println!("signed policy hash {hash} as officer {}", key.public_hex());
        println!(
            "bundle `{}` now has {} signature(s)",
            out.display(),
            bundle.signatures.len()
        );
    }
    Ok(Status::Ok)
}

fn load_bundle(path: &Path) -> Result<Bundle> {
    Bundle::from_json(&read(path)?)
        .with_context(|| format!("`{}` is not a policy bundle", path.display()))
}

fn bundle_refused(bundle: &Bundle, err: &BundleError, json: bool) -> Result<Status> {
    if json {
        print_json(&json!({ "valid": false, "error": err.to_string() }))?;
    } else if let BundleError::Policy(e) = err {
        eprint!("{}", e.render(&bundle.policy_toml));
    } else {
        eprintln!("error: {err}");
    }
    Ok(Status::Invalid)
}

fn verify(
    path: &Path,
    officers: &[String],
    threshold: usize,
    installed: Option<u64>,
    json: bool,
) -> Result<Status> {
    let pinned = keys::officers(officers)?;
    let bundle = match Bundle::from_json(&read(path)?) {
        Ok(b) => b,
        Err(e) => return bundle_refused(&Bundle::new(String::new()), &e, json),
    };
    let policy = match bundle.verify_upgrade(&pinned, threshold, installed) {
        Ok(p) => p,
        Err(e) => return bundle_refused(&bundle, &e, json),
    };
    let report = bundle.inspect(&pinned)?;
    if json {
        let signers: Vec<String> = report.valid.iter().map(hex::encode).collect();
        print_json(
            &json!({ "valid": true, "version": policy.version(), "hash": policy.hash().to_string(), "signers": signers, "threshold": threshold, "ignored_signatures": report.ignored }),
        )?;
    } else {
        println!(
            "ok: {} of {} pinned officers signed ({}, threshold {threshold})",
            report.valid.len(),
            pinned.len(),
            render::describe(&policy)
        );
        println!("hash: {}", policy.hash());
        if report.ignored > 0 {
            println!(
                "ignored {} signature(s) that are invalid or not from a pinned officer",
                report.ignored
            );
        }
    }
    Ok(Status::Ok)
}

fn eval(
    file: &Path,
    intent: &Path,
    history: Option<&Path>,
    approvals: Option<&Path>,
    ctx: &EvalContext,
    json: bool,
) -> Result<Status> {
    let Some((policy, _)) = load(file, json)? else {
        return Ok(Status::Invalid);
    };
    let intent: WithdrawalIntent = read_json(intent, "withdrawal intent")?;
    let history: Vec<HistoryEntry> = history.map_or(Ok(Vec::new()), |h| {
        read_json(h, "history (a JSON array of signed withdrawals)")
    })?;
    let approvals: Vec<Approval> = approvals.map_or(Ok(Vec::new()), |a| {
        read_json(a, "approval list (a JSON array)")
    })?;
    let decision = evaluate(&intent, &policy, &history, &approvals, ctx);
    if json {
        println!("{}", String::from_utf8(decision.to_json_bytes())?);
    } else {
        print!("{}", render::decision_table(&policy, &decision));
    }
    Ok(match decision.outcome {
        Outcome::Allow => Status::Ok,
        Outcome::Defer { .. } => Status::Deferred,
        Outcome::Deny { .. } => Status::Invalid,
    })
}

fn keygen(out: &Path, json: bool) -> Result<Status> {
    let key = keys::generate(out)?;
    if json {
        print_json(
            &json!({ "secret_key_file": out.display().to_string(), "public_key": key.public_hex() }),
        )?;
    } else {
        println!("{}", key.public_hex());
        eprintln!(
            "wrote the secret key to `{}` (mode 0600); the line above is the public key to pin",
            out.display()
        );
    }
    Ok(Status::Ok)
}

fn approve(
    file: &Path,
    intent: &WithdrawalIntent,
    subject: policy::ApprovalSubject<'_>,
    key: &Path,
    expires_at: u64,
    out: Option<&Path>,
) -> Result<Status> {
    let key = keys::read(key)?;
    let policy = if file.extension().is_some_and(|e| e == "json") {
        load_bundle(file)?.policy()?
    } else {
        let Some((policy, _)) = load(file, false)? else {
            return Ok(Status::Invalid);
        };
        policy
    };
    // The approver sees the call as every node will decode it, before signing.
    match policy::decoded_call(intent, &policy) {
        Some(call) => {
            for line in call.lines() {
                eprintln!("approving call: {line}");
            }
        }
        None if intent.kind == proto::intent::IntentKind::ContractCall => {
            eprintln!("approving a contract call that the policy does not name: every node will refuse it (`contract.unknown`)");
        }
        None => {}
    }
    let approval = sign_approval(
        key.expose_secret(),
        intent,
        subject,
        &policy.hash(),
        expires_at,
    );
    if let Some(out) = out {
        let mut all: Vec<Approval> = if out.exists() {
            read_json(out, "approval list (a JSON array)")?
        } else {
            Vec::new()
        };
        all.retain(|a| a.approver != approval.approver);
        all.push(approval.clone());
        fs::write(out, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    print_json(&approval)?;
    Ok(Status::Ok)
}
