//! `policy reshare-order`: draft a membership order (refresh or reshare) and co-sign it as an
//! officer. The nodes check the same order against their own pinned officers.

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{bail, Context, Result};
use ed25519_dalek::Signer;
use proto::{
    authz::OfficerSignature,
    lifecycle::{GuardianIdentity, MembershipKind, MembershipOrder, SignedMembershipOrder},
};

use crate::cli::ReshareAction;
use crate::commands::{print_json, read_json, Status};
use crate::keys;

/// A node's public identity file (`identity.json` in its data directory).
#[derive(serde::Deserialize)]
struct IdentityFile {
    node_id: String,
    sign_key: String,
    dh_key: String,
}

/// Runs one `reshare-order` action.
pub fn run(action: ReshareAction) -> Result<Status> {
    match action {
        ReshareAction::Draft {
            key_id,
            epoch,
            kind,
            old,
            new,
            threshold,
            identity,
            expires_in,
            out,
        } => {
            let mut identities = BTreeMap::new();
            for path in &identity {
                let id: IdentityFile = read_json(path, "node identity")?;
                identities.insert(
                    id.node_id,
                    GuardianIdentity {
                        sign_key: id.sign_key.to_ascii_lowercase(),
                        dh_key: id.dh_key.to_ascii_lowercase(),
                    },
                );
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_secs();
            let order = MembershipOrder {
                key_id,
                epoch,
                kind: match kind.as_str() {
                    "refresh" => MembershipKind::Refresh,
                    _ => MembershipKind::Reshare,
                },
                new_set: if new.is_empty() { old.clone() } else { new },
                old_set: old,
                new_threshold: threshold,
                identities,
                not_after: now.saturating_add(expires_in),
                scheduled: false,
            };
            if let Err(e) = order.check_shape() {
                bail!("{} ({})", e, e.code());
            }
            let body = SignedMembershipOrder {
                order,
                signatures: vec![],
            };
            write_new(&out, &body)?;
            print_json(&body)?;
            Ok(Status::Ok)
        }
        ReshareAction::Sign { order, key } => sign(&order, &key),
    }
}

fn write_new(path: &Path, body: &SignedMembershipOrder) -> Result<()> {
    if path.exists() {
        bail!("`{}` exists; refusing to overwrite it", path.display());
    }
    fs::write(path, serde_json::to_string_pretty(body)? + "\n")
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn sign(path: &Path, key: &Path) -> Result<Status> {
    let mut body: SignedMembershipOrder = read_json(path, "membership order")?;
    if let Err(e) = body.order.check_shape() {
        bail!("{} ({})", e, e.code());
    }
    let o = &body.order;
    eprintln!(
        "signing: {:?} of key `{}` from epoch {}: {:?} -> {:?}, threshold {}, void at {}",
        o.kind, o.key_id, o.epoch, o.old_set, o.new_set, o.new_threshold, o.not_after
    );
    let key = keys::read(key)?;
    let me = key.expose_secret().verifying_key().to_bytes();
    let sig = key.expose_secret().sign(&o.digest());
    body.signatures.retain(|s| s.officer != me);
    body.signatures.push(OfficerSignature {
        officer: me,
        signature: sig.to_bytes(),
    });
    fs::write(path, serde_json::to_string_pretty(&body)? + "\n")
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    print_json(&body)?;
    Ok(Status::Ok)
}
