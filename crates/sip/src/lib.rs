//! The SIP adapter: a Session Recording Server (RFC 7866) on UDP and TCP.
//!
//! Parsing (SIP, multipart, SDP, recording metadata, RTP, G.711) is
//! `callmeta-siprec`'s, with no I/O; this crate owns the sockets, the
//! transactions and the dialogs, and calls the use cases:
//!
//! - INVITE: the tenant from the operator's SBC registrations (`403` when
//!   the source may not send calls for the tenant it would go to), the
//!   source's and tenant's admission (`503` with `Retry-After`), `100
//!   Trying`, the body (`400`/`415`/`488` when unusable, too many m-lines
//!   included), RTP ports (stream k on base + 2k), the call created durably
//!   and enriched, then `200 OK` with a `recvonly` answer from the address
//!   the INVITE arrived on, retransmitted over UDP until the ACK (RFC 3261
//!   timers); without an ACK in 64×T1 the dialog is released.
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

mod admission;
mod dialog;
mod recovery;
mod rtp;
mod transport;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callmeta_app::usecases::Services;
use serde::{Deserialize, Serialize};

pub use recovery::{finish_stale_recordings, recover_recordings};
use transport::{Reply, Transport, TransportLimits};

/// SIPREC settings (`[siprec]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SipSettings {
    /// UDP ports for RTP, `FIRST-LAST`; each call takes two per stream.
    pub rtp_ports: String,
    /// The address put in SDP answers (`o=`, `c=`) when the SBC must reach
    /// us through another address than the one it sent to (NAT). Unset:
    /// the local address each INVITE arrived on.
    pub media_address: Option<String>,
    /// The address (`HOST` or `HOST:PORT`) put in Contact headers when the
    /// SBC must reach us through another address (NAT). Unset: the local
    /// address each request arrived on, and the listener's port.
    pub advertised_address: Option<String>,
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
    /// RFC 3261 T1 in milliseconds: a `200 OK` is retransmitted from T1 on,
    /// and a dialog whose `200 OK` is not acknowledged within 64×T1 is
    /// ended.
    pub t1_ms: u64,
    /// A call with no RTP packet and no in-dialog request for this long is
    /// ended, with the audio received so far.
    pub rtp_timeout_secs: u64,
    /// No call lasts longer: it is ended with its audio at this age.
    pub max_call_secs: u64,
    /// Calls in progress at most from one source address.
    pub max_calls_per_source: usize,
    /// Calls in progress at most for one tenant (all its SBCs).
    pub max_calls_per_tenant: usize,
    /// New calls per second from one source address (bursts of twice as
    /// many); beyond it INVITEs get `503` with `Retry-After`.
    pub invites_per_sec_per_source: u32,
    /// New calls per second for one tenant (bursts of twice as many).
    pub invites_per_sec_per_tenant: u32,
    /// Media streams (m-lines) at most per call; real SBCs offer 2 to 4.
    pub max_streams: usize,
    /// SIP messages being handled at once (beyond it: `503`).
    pub max_in_flight: usize,
    /// Open SIP TCP connections at most, in total and per source address.
    pub max_tcp_connections: usize,
    pub max_tcp_connections_per_source: usize,
    /// A SIP TCP connection with no message under way is closed after this.
    pub tcp_idle_secs: u64,
    /// A SIP message over TCP must be complete this long after its first
    /// byte, or the connection is closed.
    pub tcp_message_secs: u64,
    /// Responses queued at most for a TCP peer that does not read them;
    /// beyond it the connection is closed.
    pub tcp_send_queue: usize,
}

impl Default for SipSettings {
    fn default() -> Self {
        Self {
            rtp_ports: "30000-39999".into(),
            media_address: None,
            advertised_address: None,
            default_region: None,
            answer_delay_ms: 0,
            audio_part_secs: None,
            t1_ms: 500,
            rtp_timeout_secs: 60,
            max_call_secs: 4 * 3600,
            max_calls_per_source: 1000,
            max_calls_per_tenant: 2000,
            invites_per_sec_per_source: 100,
            invites_per_sec_per_tenant: 200,
            max_streams: 4,
            max_in_flight: 1024,
            max_tcp_connections: 1024,
            max_tcp_connections_per_source: 64,
            tcp_idle_secs: 120,
            tcp_message_secs: 10,
            tcp_send_queue: 256,
        }
    }
}

impl SipSettings {
    fn admission_limits(&self) -> admission::AdmissionLimits {
        admission::AdmissionLimits {
            calls_per_source: self.max_calls_per_source,
            calls_per_tenant: self.max_calls_per_tenant,
            invites_per_sec_per_source: self.invites_per_sec_per_source,
            invites_per_sec_per_tenant: self.invites_per_sec_per_tenant,
        }
    }

    fn transport_limits(&self) -> TransportLimits {
        TransportLimits {
            max_in_flight: self.max_in_flight,
            max_tcp_connections: self.max_tcp_connections,
            max_tcp_connections_per_source: self.max_tcp_connections_per_source,
            tcp_idle: Duration::from_secs(self.tcp_idle_secs.max(1)),
            tcp_message: Duration::from_secs(self.tcp_message_secs.max(1)),
            tcp_send_queue: self.tcp_send_queue,
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
    /// Where we listen (its IP may be a wildcard).
    local_addr: SocketAddr,
}

impl Context {
    /// The IP a peer reaches us on for this request: the listener's own
    /// when it is bound to one, else the address the request arrived on.
    /// Never a wildcard.
    fn arrival_ip(&self, reply: &Reply) -> IpAddr {
        if self.local_addr.ip().is_unspecified() {
            reply.local_ip()
        } else {
            self.local_addr.ip().to_canonical()
        }
    }

    /// The Contact of our responses.
    fn contact(&self, reply: &Reply) -> String {
        let host = match self.settings.advertised_address.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => {
                if a.parse::<SocketAddr>().is_ok()
                    || (a.contains(':') && !a.contains("::") && a.parse::<IpAddr>().is_err())
                {
                    a.to_string()
                } else {
                    host_port(a, self.local_addr.port())
                }
            }
            _ => host_port(&self.arrival_ip(reply).to_string(), self.local_addr.port()),
        };
        format!("<sip:callmeta@{host};transport={}>", reply.transport())
    }

    /// The address in our SDP answers.
    fn sdp_address(&self, reply: &Reply) -> String {
        match self.settings.media_address.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => self.arrival_ip(reply).to_string(),
        }
    }

    /// Where a call's RTP sockets are bound: the address its INVITE arrived
    /// on; with a `media_address` (NAT), every address of the family, since
    /// the NAT may forward to any of ours.
    fn rtp_bind_ip(&self, reply: &Reply) -> IpAddr {
        let arrival = self.arrival_ip(reply);
        match self.settings.media_address.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => match arrival {
                IpAddr::V4(_) => IpAddr::from([0u8; 4]),
                IpAddr::V6(_) => IpAddr::from([0u16; 8]),
            },
            _ => arrival,
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
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
        let transport = Transport::bind(addr, settings.transport_limits()).await?;
        std::fs::create_dir_all(&recordings)?;
        let local_addr = transport.local_addr();
        Ok(SipServer {
            transport,
            context: Arc::new(Context {
                services,
                settings,
                default_tenant: default_tenant.filter(|t| !t.is_empty()),
                recordings,
                local_addr,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        self.run_until(std::future::pending(), Duration::ZERO).await;
    }

    /// Serves until `drain` completes; then refuses new calls (`503`), lets
    /// the calls under way end with their BYE for up to `grace`, and ends
    /// the rest with the audio received so far attached.
    pub async fn run_until(self, drain: impl std::future::Future<Output = ()>, grace: Duration) {
        let dialogs = dialog::Dialogs::new(self.context.clone());
        // Aborted when this future ends or is dropped.
        let serving = AbortOnDrop(tokio::spawn(self.transport.run(dialogs.clone())));
        let every = Duration::from_millis((self.context.settings.t1_ms.max(1) * 4).min(1000));
        let _sweeping = {
            let dialogs = dialogs.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    dialogs.sweep().await;
                }
            }))
        };
        drain.await;
        dialogs.drain();
        let deadline = tokio::time::Instant::now() + grace;
        while dialogs.active().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = dialogs.active().await;
        if left > 0 {
            tracing::info!(calls = left, "shutting down: ending the calls still under way");
            dialogs.finish_all().await;
        }
        drop(serving);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
