//! Runs cggmp24 protocols over envelopes. The protocol future is CPU-bound and blocks between
//! awaits, so callers run it on a blocking thread with `futures::executor::block_on`.

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use cggmp24::{security_level::SecurityLevel128, supported_curves::Secp256k1, ExecutionId};
use futures::{Sink, Stream, StreamExt};
use proto::wire::NodeFrame;
use rand_core::SeedableRng;
use round_based::{Incoming, MessageDestination, MessageType, MpcParty, Outgoing};
use serde::{de::DeserializeOwned, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::envelope::SessionCrypto;

/// The curve.
pub type E = Secp256k1;
/// Security level.
pub type L = SecurityLevel128;
/// A complete key share.
pub type KeyShare = cggmp24::KeyShare<E, L>;
/// A key share awaiting aux info.
pub type IncompleteKeyShare = cggmp24::IncompleteKeyShare<E>;
/// Aux info.
pub type AuxInfo = cggmp24::key_share::AuxInfo<L>;
/// Paillier primes.
pub type Primes = cggmp24::PregeneratedPrimes<L>;

/// A verified, decrypted message from a peer. Point-to-point plaintext can carry secret shares
/// (keygen VSS shares), so `Debug` shows only the header.
pub struct RawIncoming {
    /// Sender index.
    pub from: u16,
    /// Broadcast or point-to-point.
    pub broadcast: bool,
    /// Sender's sequence number.
    pub seq: u32,
    /// Plaintext (CBOR of the protocol message).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for RawIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawIncoming(from={}, seq={}, broadcast={}, [{} bytes REDACTED])",
            self.from,
            self.seq,
            self.broadcast,
            self.bytes.len()
        )
    }
}

/// Errors surfaced by the delivery layer to the protocol.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A peer sent bytes that are not a protocol message.
    #[error("party {0} sent a message that does not decode")]
    Decode(u16),
    /// Our own message failed to serialise or seal.
    #[error("could not seal an outgoing message")]
    Seal,
    /// The link to the coordinator is gone.
    #[error("connection to the coordinator closed")]
    Closed,
    /// A round's deadline passed; [`RoundWatch::stalled`] names who did not deliver.
    #[error("round deadline passed")]
    Deadline,
}

/// Party indices in whose name the relay delivered an envelope that failed its sender's
/// signature or its encryption (shared by the delivery layer and the round deadline).
pub type Forged = Arc<std::sync::Mutex<std::collections::BTreeSet<u16>>>;

/// Locks a mutex, taking over a poisoned one.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The deadline of every protocol round: waiting longer than `timeout` for the next message
/// ends the run, and records which parties had not delivered.
#[derive(Clone)]
pub struct RoundWatch {
    /// How long the protocol may wait for one message.
    pub timeout: std::time::Duration,
    /// Session parties, by index.
    pub parties: Vec<String>,
    /// This node's index.
    pub me: u16,
    /// Set when the deadline passed: the parties that had not delivered.
    pub stalled: Arc<std::sync::Mutex<Option<Vec<String>>>>,
    /// Parties in whose name the relay delivered envelopes that failed their checks.
    pub forged: Forged,
    /// The runtime whose timers the blocking protocol thread uses.
    pub handle: tokio::runtime::Handle,
}

impl RoundWatch {
    /// The parties that delivered fewer messages than the most prompt peer; when all delivered
    /// equally, every peer (the round's messages are all missing). Protocols are symmetric:
    /// in each round every party sends this node the same number of messages.
    fn laggards(&self, counts: &[u32]) -> Vec<String> {
        let peers = || (0..self.parties.len()).filter(|j| *j != self.me as usize);
        let max = peers().map(|j| counts[j]).max().unwrap_or(0);
        let behind: Vec<usize> = peers().filter(|j| counts[*j] < max).collect();
        let chosen: Vec<usize> = match behind.is_empty() {
            true => peers().collect(),
            false => behind,
        };
        chosen
            .into_iter()
            .map(|j| self.parties[j].clone())
            .collect()
    }

    /// Who stalled the run, if its deadline passed.
    pub fn stalled(&self) -> Option<Vec<String>> {
        lock(&self.stalled).clone()
    }

    /// The failure of a run whose round deadline passed: `session.timeout` naming the parties
    /// that did not deliver, unless every one of them is a party in whose name the relay
    /// delivered envelopes that failed their checks. Then the relay is at fault, not them
    /// (each party signs its own envelopes): `session.relay_tampered`, naming no party.
    pub fn deadline_failure(&self) -> Option<proto::wire::SessionFailure> {
        let late = self.stalled()?;
        let forged: Vec<String> = lock(&self.forged)
            .iter()
            .filter_map(|j| self.parties.get(usize::from(*j)).cloned())
            .collect();
        if !forged.is_empty() && late.iter().all(|p| forged.contains(p)) {
            return Some(crate::session::fail(
                "session.relay_tampered",
                format!(
                    "the relay delivered envelopes in the name of {} that failed their signature or encryption, and nothing valid from them within {:?}: the relay altered or forged them; {} not blamed",
                    forged.join(", "),
                    self.timeout,
                    if forged.len() == 1 { "that party is" } else { "those parties are" }
                ),
            ));
        }
        let mut f = crate::session::fail(
            "session.timeout",
            format!(
                "round deadline of {:?} passed without a message from {}",
                self.timeout,
                late.join(", ")
            ),
        );
        f.blame = late;
        Some(f)
    }
}

/// Outgoing half: seals each message and queues it for the coordinator link.
pub struct OutSink<M> {
    crypto: Arc<SessionCrypto>,
    frames: mpsc::UnboundedSender<NodeFrame>,
    seq: u32,
    hook: Option<OutgoingHook>,
    _m: PhantomData<fn(M)>,
}

/// Rewrites this node's own protocol messages before they are sealed, and may return a second,
/// different version of the message, sealed and sent under the same sequence number (an
/// equivocating sender). Only adversarial tests set it (a test binary playing a compromised
/// guardian); the `signer-node` binary never does.
pub type OutgoingHook = Arc<dyn Fn(&mut Vec<u8>) -> Option<Vec<u8>> + Send + Sync>;

impl<M> OutSink<M> {
    /// `first_seq` is the next sequence number (0 is taken by the join message).
    pub fn new(
        crypto: Arc<SessionCrypto>,
        frames: mpsc::UnboundedSender<NodeFrame>,
        first_seq: u32,
    ) -> Self {
        Self {
            crypto,
            frames,
            seq: first_seq,
            hook: None,
            _m: PhantomData,
        }
    }

    /// Installs an [`OutgoingHook`].
    pub fn with_hook(mut self, hook: Option<OutgoingHook>) -> Self {
        self.hook = hook;
        self
    }
}

impl<M> Unpin for OutSink<M> {}

impl<M: Serialize> Sink<Outgoing<M>> for OutSink<M> {
    type Error = DeliveryError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing<M>) -> Result<(), Self::Error> {
        let mut bytes = Vec::new();
        ciborium::into_writer(&item.msg, &mut bytes).map_err(|_| DeliveryError::Seal)?;
        let twin = self.hook.as_ref().and_then(|hook| hook(&mut bytes));
        let to = match item.recipient {
            MessageDestination::AllParties => None,
            MessageDestination::OneParty(j) => Some(j),
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        for bytes in std::iter::once(bytes).chain(twin) {
            let env = self
                .crypto
                .seal(to, seq, &bytes)
                .ok_or(DeliveryError::Seal)?;
            self.frames
                .send(NodeFrame::Envelope(env))
                .map_err(|_| DeliveryError::Closed)?;
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

type InStream<M> = Pin<Box<dyn Stream<Item = Result<Incoming<M>, DeliveryError>> + Send>>;

/// Incoming half: `early` messages (received during the join phase) first, then the channel.
/// When the session is aborted the channel closes and the protocol ends with an error.
pub fn incoming<M: DeserializeOwned + Send + 'static>(
    early: Vec<RawIncoming>,
    rx: mpsc::Receiver<RawIncoming>,
    watch: RoundWatch,
) -> InStream<M> {
    let mut counts = vec![0u32; watch.parties.len()];
    for m in &early {
        if let Some(c) = counts.get_mut(m.from as usize) {
            *c += 1;
        }
    }
    let state = (rx, counts, watch);
    let rest = futures::stream::unfold(state, |(mut rx, mut counts, watch)| async move {
        let next = {
            let _rt = watch.handle.enter();
            tokio::time::timeout(watch.timeout, rx.recv())
        };
        match next.await {
            Ok(Some(m)) => {
                if let Some(c) = counts.get_mut(m.from as usize) {
                    *c += 1;
                }
                Some((Ok(m), (rx, counts, watch)))
            }
            Ok(None) => None,
            Err(_) => {
                let late = watch.laggards(&counts);
                *watch.stalled.lock().unwrap_or_else(|p| p.into_inner()) = Some(late);
                Some((Err(DeliveryError::Deadline), (rx, counts, watch)))
            }
        }
    });
    let early = futures::stream::iter(early.into_iter().map(Ok));
    let mut id = 0u64;
    Box::pin(early.chain(rest).map(move |raw| {
        let raw = raw?;
        id += 1;
        let msg: M = ciborium::from_reader(raw.bytes.as_slice())
            .map_err(|_| DeliveryError::Decode(raw.from))?;
        Ok(Incoming {
            id,
            sender: raw.from,
            msg_type: if raw.broadcast {
                MessageType::Broadcast
            } else {
                MessageType::P2P
            },
            msg,
        })
    }))
}

/// A fresh ChaCha20 CSPRNG seeded once from the OS.
pub fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::from_rng(rand_core::OsRng)
        .unwrap_or_else(|_| rand_chacha::ChaCha20Rng::from_entropy())
}

/// Everything a protocol run needs.
pub struct Channels<M> {
    /// Incoming messages.
    pub incoming: InStream<M>,
    /// Outgoing messages.
    pub outgoing: OutSink<M>,
}

fn party<M: Serialize>(ch: Channels<M>) -> MpcParty<M, (InStream<M>, OutSink<M>)> {
    MpcParty::connected((ch.incoming, ch.outgoing))
}

/// Distributed key generation, HD-enabled.
pub fn keygen(
    eid: &[u8; 32],
    i: u16,
    n: u16,
    t: u16,
    ch: Channels<cggmp24::keygen::ThresholdMsg<E, L, Sha256>>,
) -> Result<IncompleteKeyShare, String> {
    let mut rng = rng();
    futures::executor::block_on(
        cggmp24::keygen::<E>(ExecutionId::new(eid), i, n)
            .set_threshold(t)
            .hd_wallet(true)
            .start(&mut rng, party(ch)),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Aux-info generation for a group.
pub fn aux_info(
    eid: &[u8; 32],
    i: u16,
    n: u16,
    primes: Primes,
    ch: Channels<cggmp24::key_refresh::msg::Msg<Sha256, L>>,
) -> Result<AuxInfo, String> {
    let mut rng = rng();
    futures::executor::block_on(
        cggmp24::aux_info_gen(ExecutionId::new(eid), i, n, primes).start(&mut rng, party(ch)),
    )
    .map_err(|e| format!("{e:?}"))
}

/// The bigint backend this build computes with.
#[cfg(feature = "gmp")]
pub const BACKEND: &str = "rug (GMP)";
/// The bigint backend this build computes with.
#[cfg(not(feature = "gmp"))]
pub const BACKEND: &str = "num-bigint";

// With both, cggmp24 silently uses num-bigint: refuse the ambiguous build.
#[cfg(all(feature = "gmp", feature = "num-bigint"))]
compile_error!("choose one bigint backend: build with `--no-default-features --features gmp`");

/// Full interactive signing of data whose preimage this node computed itself.
pub fn sign(
    eid: &[u8; 32],
    i: u16,
    keygen_indexes: &[u16],
    share: &KeyShare,
    data: cggmp24::DataToSign<E>,
    path: &[u32],
    ch: Channels<cggmp24::signing::msg::Msg<E, Sha256>>,
) -> Result<[u8; 64], String> {
    let mut rng = rng();
    let mut builder = cggmp24::signing(ExecutionId::new(eid), i, keygen_indexes, share);
    if !path.is_empty() {
        // A segregated account's key m/a/i: non-hardened SLIP-10 (= BIP-32 for secp256k1)
        // public derivation, applied by every party as an additive shift. Full signing only:
        // `presign` never takes a path.
        builder = builder
            .set_derivation_path(path.iter().copied())
            .map_err(|e| format!("derivation path refused: {e:?}"))?;
    }
    let sig = futures::executor::block_on(builder.sign(&mut rng, party(ch), &data))
        .map_err(|e| format!("{e:?}"))?
        .normalize_s();
    let mut out = [0u8; 64];
    sig.write_to_slice(&mut out);
    Ok(out)
}

/// A presignature and its public data: the interactive part of signing, done ahead of time.
/// Never with an HD derivation path (cggmp24 forbids HD derivation with presignatures).
pub fn presign(
    eid: &[u8; 32],
    i: u16,
    keygen_indexes: &[u16],
    share: &KeyShare,
    ch: Channels<cggmp24::signing::msg::Msg<E, Sha256>>,
) -> Result<Presig, String> {
    let mut rng = rng();
    futures::executor::block_on(
        cggmp24::signing(ExecutionId::new(eid), i, keygen_indexes, share)
            .generate_presignature(&mut rng, party(ch)),
    )
    .map_err(|e| format!("{e:?}"))
}

/// A presignature (secret; its scalars zeroize on drop) and its public data.
pub type Presig = (
    cggmp24::signing::Presignature<E>,
    cggmp24::signing::PresignaturePublicData<E>,
);

/// What a failed protocol run means, from the library's error `Debug` text (cggmp24 has no
/// accessor for culprits): `(code, blamed party indices)`. An invalid combined signature is
/// `signature.invalid`; aborts that name a `faulty_party` blame those parties.
pub fn classify_failure(debug: &str) -> (&'static str, Vec<u16>) {
    if debug.contains("SignatureInvalid") {
        return ("signature.invalid", Vec::new());
    }
    if debug.contains("NotReliable") {
        // The echo round found that the parties hold different round-1 broadcasts. Every
        // broadcast is signed by its sender, so one sender signed two versions and the relay
        // showed each to different parties; the parties whose echo differs are not the culprit
        // (a party that got the other version is honest), so nobody is named.
        return ("session.broadcast_mismatch", Vec::new());
    }
    let mut culprits: Vec<u16> = debug
        .match_indices("faulty_party:")
        .filter_map(|(at, tag)| {
            let rest = debug[at + tag.len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    culprits.sort_unstable();
    culprits.dedup();
    ("session.protocol", culprits)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn culprits_are_read_from_the_debug_text() {
        let text = "SigningError(Aborted(EncProofOfK([(AbortBlame { faulty_party: 2, data_message: 4, proof_message: 5 }, InvalidProof), (AbortBlame { faulty_party: 0, data_message: 1, proof_message: 1 }, X), (AbortBlame { faulty_party: 2, data_message: 7, proof_message: 8 }, Y)])))";
        assert_eq!(classify_failure(text), ("session.protocol", vec![0, 2]));
        let bad = "SigningError(Aborted(SignatureInvalid))";
        assert_eq!(classify_failure(bad), ("signature.invalid", vec![]));
        assert_eq!(classify_failure("IoError(x)"), ("session.protocol", vec![]));
        let echo = "SigningError(Aborted(Round1aNotReliable([AbortBlame { faulty_party: 2, data_message: 4, proof_message: 4 }])))";
        assert_eq!(
            classify_failure(echo),
            ("session.broadcast_mismatch", vec![])
        );
    }

    #[test]
    fn laggards_are_the_peers_with_fewer_messages() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let w = RoundWatch {
            timeout: std::time::Duration::from_secs(1),
            parties: vec!["a".into(), "b".into(), "c".into()],
            me: 0,
            stalled: Default::default(),
            forged: Default::default(),
            handle: rt.handle().clone(),
        };
        assert_eq!(w.laggards(&[0, 3, 2]), vec!["c".to_string()]);
        assert_eq!(
            w.laggards(&[5, 2, 2]),
            vec!["b".to_string(), "c".to_string()]
        );
        assert!(w.deadline_failure().is_none(), "no deadline passed");
        *lock(&w.stalled) = Some(vec!["c".into()]);
        let f = w.deadline_failure().expect("the deadline passed");
        assert_eq!(
            (f.code.as_str(), f.blame.clone()),
            ("session.timeout", vec!["c".to_string()])
        );
        lock(&w.forged).insert(1);
        let f = w.deadline_failure().expect("the deadline passed");
        assert_eq!(
            f.code, "session.timeout",
            "b's forged envelopes do not excuse c: {f:?}"
        );
        lock(&w.forged).insert(2);
        let f = w.deadline_failure().expect("the deadline passed");
        assert_eq!(
            (f.code.as_str(), f.blame.len()),
            ("session.relay_tampered", 0),
            "{f:?}"
        );
    }
}
