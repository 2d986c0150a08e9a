//! The SIP adapter: a Session Recording Server (RFC 7866) on UDP and TCP.
//!
//! Parsing (SIP, multipart, SDP, recording metadata, RTP, G.711) is
//! `callmeta-siprec`'s, with no I/O; this crate owns the sockets, the
//! transactions and the dialogs, and calls the use cases:
//!
//! - INVITE: `100 Trying`, the tenant (Request-URI user, else the source
//!   address, else the default tenant, else `404`), the body (`400`/`415`/
//!   `488` when unusable), RTP ports (stream k on base + 2k), the call created
//!   durably and enriched, then `200 OK` with a `recvonly` answer,
//!   retransmitted over UDP until the ACK (RFC 3261 timers).
//! - re-INVITE and UPDATE: metadata snapshots merged (`partial` ones by id),
//!   the call's metadata replaced and enriched again; a new offer answered on
//!   the same ports.
//! - BYE: the recording finished and attached to the call. CANCEL before the
//!   answer: `487`. OPTIONS: `200` with Allow/Supported/Accept.
//!
//! Audio is written to `<data dir>/recordings/<tenant>/<call>.wav` as it
//! arrives (one second behind, for late packets), so a crash leaves the
//! audio received so far; [`recover_recordings`] attaches such files at the
//! next start. Each recording is also a job (the `recordings` use case):
//! with `audio_part_secs`, the audio is stored in blob storage in parts as it
//! comes, and [`finish_stale_recordings`], run on every node, attaches the
//! parts of a call whose node stopped.

mod dialog;
mod rtp;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use callmeta_app::usecases::Services;
use serde::{Deserialize, Serialize};

pub use dialog::{finish_stale_recordings, recover_recordings};
use transport::Transport;

/// SIPREC settings (`[siprec]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SipSettings {
    /// UDP ports for RTP, `FIRST-LAST`; each call takes two per stream.
    pub rtp_ports: String,
    /// The address put in SDP answers (`c=`), when the SBC must reach us
    /// through another address than the one it dialled.
    pub media_address: Option<String>,
    /// Region for reading national phone numbers as E.164 (e.g. `FR`).
    pub default_region: Option<String>,
    /// Wait this long before answering an INVITE (a ringing phase; lets an
    /// early CANCEL take effect). Default 0: answer at once.
    pub answer_delay_ms: u64,
    /// Every this many seconds, the audio received since is also stored in
    /// blob storage, from where another node finishes the recording if this
    /// one stops mid-call. 0: never (one node: the local file already
    /// survives a restart). Unset: 5 with PostgreSQL, 0 with SQLite.
    pub audio_part_secs: Option<u64>,
}

impl Default for SipSettings {
    fn default() -> Self {
        Self {
            rtp_ports: "30000-39999".into(),
            media_address: None,
            default_region: None,
            answer_delay_ms: 0,
            audio_part_secs: None,
        }
    }
}

/// Everything the listener needs, shared by its tasks.
pub(crate) struct Context {
    services: Arc<Services>,
    settings: SipSettings,
    default_tenant: Option<String>,
    /// `<data dir>/recordings`.
    recordings: PathBuf,
    /// Where we listen (Contact), and the address RTP sockets bind to.
    local_addr: SocketAddr,
    local_ip: std::net::IpAddr,
}

/// A bound SIP listener (UDP and TCP on the same port).
pub struct SipServer {
    transport: Transport,
    context: Arc<Context>,
}

impl SipServer {
    /// Binds UDP on `addr` (port 0 picks one) and TCP on the same port.
    /// Recordings in progress are written under `recordings`.
    pub async fn bind(
        addr: &str,
        services: Arc<Services>,
        settings: SipSettings,
        default_tenant: Option<String>,
        recordings: PathBuf,
    ) -> std::io::Result<SipServer> {
        let transport = Transport::bind(addr).await?;
        std::fs::create_dir_all(&recordings)?;
        let local_addr = transport.local_addr();
        let local_ip = if local_addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            local_addr.ip()
        };
        let local_ip = match settings.media_address.as_deref().map(str::parse) {
            Some(Ok(ip)) if local_addr.ip().is_unspecified() => ip,
            _ => local_ip,
        };
        let bind_ip = if local_addr.ip().is_unspecified() {
            local_addr.ip()
        } else {
            local_ip
        };
        Ok(SipServer {
            transport,
            context: Arc::new(Context {
                services,
                settings,
                default_tenant: default_tenant.filter(|t| !t.is_empty()),
                recordings,
                local_addr,
                local_ip: bind_ip,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        let dialogs = dialog::Dialogs::new(self.context.clone());
        self.transport.run(dialogs).await;
    }

    /// Serves until `drain` completes; then refuses new calls (`503`), lets
    /// the calls under way end with their BYE for up to `grace`, and ends
    /// the rest with the audio received so far attached.
    pub async fn run_until(self, drain: impl std::future::Future<Output = ()>, grace: std::time::Duration) {
        let dialogs = dialog::Dialogs::new(self.context.clone());
        let serving = tokio::spawn(self.transport.run(dialogs.clone()));
        drain.await;
        dialogs.drain();
        let deadline = tokio::time::Instant::now() + grace;
        while dialogs.active().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let left = dialogs.active().await;
        if left > 0 {
            tracing::info!(calls = left, "shutting down: ending the calls still under way");
            dialogs.finish_all().await;
        }
        serving.abort();
    }
}
