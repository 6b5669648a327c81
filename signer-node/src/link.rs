//! The node's only network connection: it dials OUT to the coordinator over mutual TLS 1.3,
//! and redials with backoff when the link drops. Guardians never open an inbound port.

use std::{sync::Arc, time::Duration};

use proto::wire::{CoordFrame, NodeFrame, PROTOCOL_VERSION};
use rustls::pki_types::ServerName;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::TlsConnector;

use crate::session::NodeCore;

/// Where and how to connect.
pub struct LinkConfig {
    /// `host:port`.
    pub addr: String,
    /// Expected server name.
    pub server_name: ServerName<'static>,
    /// rustls client config (TLS 1.3, client cert).
    pub tls: Arc<rustls::ClientConfig>,
}

/// Keeps the link up; after a drop it redials with exponential backoff (200 ms doubling to
/// 5 s, reset once a link was up). Runs until its task is aborted.
pub async fn maintain(
    core: Arc<NodeCore>,
    cfg: LinkConfig,
    mut frames: mpsc::UnboundedReceiver<NodeFrame>,
    connected: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = connect_once(&core, &cfg, &mut frames, &connected).await;
        if connected.swap(false, std::sync::atomic::Ordering::SeqCst) {
            // The link was up: start the backoff again from its shortest delay. Sessions relayed
            // by that coordinator cannot finish any more (every message goes through it); end
            // them now, so a restarted coordinator can sign their requests again at once.
            backoff = Duration::from_millis(200);
            core.abort_sessions("coordinator link lost");
        }
        match result {
            Ok(()) => tracing::warn!("coordinator closed the link; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, "coordinator link failed; retrying in {backoff:?}")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect_once(
    core: &Arc<NodeCore>,
    cfg: &LinkConfig,
    frames: &mut mpsc::UnboundedReceiver<NodeFrame>,
    connected: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&cfg.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(cfg.tls.clone())
        .connect(cfg.server_name.clone(), tcp)
        .await?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    runtime::frame::write_frame(
        &mut wr,
        &NodeFrame::Hello {
            node_id: core.identity.node_id.clone(),
            version: PROTOCOL_VERSION,
        },
    )
    .await?;
    match runtime::frame::read_frame::<_, CoordFrame>(&mut rd).await? {
        CoordFrame::Welcome => {}
        other => anyhow::bail!("expected welcome, got {other:?}"),
    }
    tracing::info!(addr = %cfg.addr, "connected to coordinator");
    connected.store(true, std::sync::atomic::Ordering::SeqCst);
    core.on_connected();
    let reader = async {
        loop {
            let frame: CoordFrame = runtime::frame::read_frame(&mut rd).await?;
            core.on_frame(frame).await;
        }
    };
    let writer = async {
        while let Some(f) = frames.recv().await {
            runtime::frame::write_frame(&mut wr, &f).await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = reader => r,
        r = writer => r,
    }
}
