//! Membership orders for tests, the bench and the devnet walkthrough: drafted from a key's
//! current state, signed with the cluster's TEST-ONLY officer keys, posted to the API and
//! followed until the ceremony ends.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::Signer;
use proto::{
    api::{CeremonyPhase, KeyInfo},
    authz::OfficerSignature,
    lifecycle::{GuardianIdentity, MembershipKind, MembershipOrder, SignedMembershipOrder},
};

use crate::{cluster::Cluster, governance::Governance};

/// An order for `k`'s current epoch and guardians, valid for an hour.
pub fn order(k: &KeyInfo, kind: MembershipKind, new_set: &[&str], t: u16) -> MembershipOrder {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    MembershipOrder {
        key_id: k.key_id.clone(),
        epoch: k.epoch,
        kind,
        old_set: k.nodes.clone(),
        new_set: new_set.iter().map(|n| n.to_string()).collect(),
        new_threshold: t,
        identities: Default::default(),
        not_after: now + 3600,
        scheduled: false,
    }
}

/// Adds a new guardian's identity, read from its `identity.json`, to the order.
pub fn add_identity(c: &Cluster, o: &mut MembershipOrder, node: &str) -> anyhow::Result<()> {
    let path = c.layout.dir.join(node).join("identity.json");
    let id: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
    )?;
    let field = |name: &str| {
        id[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{} has no `{name}`", path.display()))
    };
    o.identities.insert(
        node.into(),
        GuardianIdentity {
            sign_key: field("sign_key")?,
            dh_key: field("dh_key")?,
        },
    );
    Ok(())
}

/// The order signed by the named officers of the cluster's governance.
pub fn signed(
    c: &Cluster,
    order: MembershipOrder,
    officers: &[&str],
) -> anyhow::Result<SignedMembershipOrder> {
    let gov = Governance::at(&c.layout.dir);
    let d = order.digest();
    let signatures = officers
        .iter()
        .map(|name| {
            let k = gov.key(name)?;
            Ok(OfficerSignature {
                officer: k.verifying_key().to_bytes(),
                signature: k.sign(&d).to_bytes(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(SignedMembershipOrder { order, signatures })
}

/// Posts the order to `/v1/keys/{id}/{route}` (`refresh` or `reshare`) and waits until its
/// ceremony is active or failed; returns the key then.
pub fn run(
    c: &Cluster,
    route: &str,
    body: &SignedMembershipOrder,
    timeout: Duration,
) -> anyhow::Result<KeyInfo> {
    let key = &body.order.key_id;
    let (st, v) = c
        .api
        .post(&format!("/v1/keys/{key}/{route}"), &serde_json::json!(body))?;
    if st != 202 {
        bail!("{route} refused: {st} {v}");
    }
    let deadline = Instant::now() + timeout;
    loop {
        let (_, v) = c.api.get(&format!("/v1/keys/{key}"))?;
        let k: KeyInfo = serde_json::from_value(v)?;
        let phase = k.ceremony.as_ref().map(|c| c.phase);
        if matches!(phase, Some(CeremonyPhase::Active | CeremonyPhase::Failed)) {
            return Ok(k);
        }
        if Instant::now() > deadline {
            bail!("the ceremony is still running after {timeout:?}: {k:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
