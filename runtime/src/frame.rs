//! Node ↔ coordinator frames on a socket: each a big-endian `u32` length, then the CBOR of one
//! frame (the pure parts, [`proto::wire::encode`], [`proto::wire::decode`] and
//! [`proto::wire::frame_len`], are in `proto`).

use proto::wire::{decode, encode, frame_len, FrameError};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one length-prefixed frame, refusing oversized lengths before allocating.
pub async fn read_frame<R, T>(r: &mut R) -> Result<T, FrameError>
where
    R: tokio::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let len = frame_len(r.read_u32().await?)?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    decode(&buf)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<W, T>(w: &mut W, frame: &T) -> Result<(), FrameError>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode(frame)?;
    w.write_u32(bytes.len() as u32).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proto::wire::{CoordFrame, Envelope};

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_allocation() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let env = Envelope {
                session_id: [3; 32],
                from: 1,
                to: Some(2),
                seq: 9,
                payload: vec![7u8; 300_000],
                signature: vec![4; 64],
            };
            let mut wire = Vec::new();
            write_frame(&mut wire, &CoordFrame::Envelope(env.clone()))
                .await
                .unwrap();
            let back: CoordFrame = read_frame(&mut wire.as_slice()).await.unwrap();
            assert_eq!(back, CoordFrame::Envelope(env));
            let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
            let err = read_frame::<_, CoordFrame>(&mut huge).await.unwrap_err();
            assert!(matches!(err, FrameError::TooLarge(_)));
            let mut garbage: &[u8] = &[0, 0, 0, 2, 0xff, 0x00];
            let err = read_frame::<_, CoordFrame>(&mut garbage).await.unwrap_err();
            assert!(matches!(err, FrameError::Malformed(_)));
        });
    }
}
