//! UDP and TCP on one port: datagrams are messages; TCP streams are framed
//! by Content-Length (with CRLF keep-alives). Every message goes to the
//! dialogs with a [`Reply`] that sends back the way it came and knows the
//! local address the message arrived on.
//!
//! Bounds, so that one peer cannot hold what others need: messages handled
//! at once (beyond it a request gets `503`), TCP connections in total and
//! per source address, a TCP connection's idle time and the time a started
//! message may take to complete, and a bounded send queue per connection
//! (a peer that does not read its responses is disconnected).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use callmeta_app::usecases::connections::ConnectionCaps;
use callmeta_siprec::sip::{self, Framing, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::dialog::Dialogs;

/// Where a response goes, and where the request came in.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    Udp {
        socket: Arc<Udp>,
        to: SocketAddr,
        /// The local address the datagram was sent to.
        local: IpAddr,
    },
    Tcp {
        tx: mpsc::Sender<Vec<u8>>,
        peer: SocketAddr,
        /// The accepted socket's local address.
        local: SocketAddr,
        /// Identifies the connection (in-dialog requests may come on it).
        connection: u64,
        /// Notified when the peer does not read: the connection is closed.
        stalled: Arc<Notify>,
    },
}

impl Reply {
    pub(crate) async fn send(&self, bytes: &[u8]) {
        match self {
            Reply::Udp { socket, to, local } => {
                if let Err(e) = socket.send(bytes, *to, *local).await {
                    tracing::debug!(%to, error = %e, "sending a SIP datagram failed");
                }
            }
            Reply::Tcp {
                tx, peer, stalled, ..
            } => {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(bytes.to_vec()) {
                    tracing::info!(%peer, "a SIP TCP peer does not read its responses; disconnecting it");
                    stalled.notify_one();
                }
            }
        }
    }

    pub(crate) fn is_udp(&self) -> bool {
        matches!(self, Reply::Udp { .. })
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        match self {
            Reply::Udp { to, .. } => *to,
            Reply::Tcp { peer, .. } => *peer,
        }
    }

    /// The local address the request arrived on (IPv4-mapped addresses as
    /// IPv4).
    pub(crate) fn local_ip(&self) -> IpAddr {
        match self {
            Reply::Udp { local, .. } => local.to_canonical(),
            Reply::Tcp { local, .. } => local.ip().to_canonical(),
        }
    }

    /// The TCP connection the request came on.
    pub(crate) fn connection(&self) -> Option<u64> {
        match self {
            Reply::Udp { .. } => None,
            Reply::Tcp { connection, .. } => Some(*connection),
        }
    }

    /// The transport name for Via/Contact.
    pub(crate) fn transport(&self) -> &'static str {
        if self.is_udp() { "udp" } else { "tcp" }
    }
}

/// The UDP socket. Bound to a wildcard address, it asks the kernel for each
/// datagram's destination address (`IP_PKTINFO` / `IPV6_RECVPKTINFO`) and
/// sends each response from the address its request was sent to.
#[derive(Debug)]
pub(crate) struct Udp {
    socket: UdpSocket,
    /// The bound address, when it is not a wildcard.
    fixed: Option<IpAddr>,
}

impl Udp {
    fn new(socket: UdpSocket) -> std::io::Result<Udp> {
        let local = socket.local_addr()?;
        let fixed = (!local.ip().is_unspecified()).then_some(local.ip());
        if fixed.is_none() {
            use nix::sys::socket::{setsockopt, sockopt};
            match local {
                SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4PacketInfo, &true),
                SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true),
            }
            .map_err(std::io::Error::from)?;
        }
        Ok(Udp { socket, fixed })
    }

    /// One datagram: its length, its source and the local address it was
    /// sent to.
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, IpAddr)> {
        if let Some(local) = self.fixed {
            let (n, from) = self.socket.recv_from(buf).await?;
            return Ok((n, from, local));
        }
        let bound = self.socket.local_addr()?.ip();
        self.socket
            .async_io(Interest::READABLE, || {
                recv_with_destination(&self.socket, buf, bound)
            })
            .await
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr, from: IpAddr) -> std::io::Result<usize> {
        // An IPv4 peer of a dual-stack socket goes through the IPv4 stack,
        // which does not take an IPv6 source: the route picks it.
        let mapped = matches!(to.ip(), IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some());
        if self.fixed.is_some() || from.is_unspecified() || mapped {
            return self.socket.send_to(bytes, to).await;
        }
        self.socket
            .async_io(Interest::WRITABLE, || send_from(&self.socket, bytes, to, from))
            .await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
    bound: IpAddr,
) -> std::io::Result<(usize, SocketAddr, IpAddr)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let mut local = bound;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    local = IpAddr::from(u32::from_be(info.ipi_addr.s_addr).to_be_bytes());
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    local = IpAddr::from(info.ipi6_addr.s6_addr);
                }
                _ => {}
            }
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                })
        })
        .ok_or_else(|| std::io::Error::other("a datagram without a source address"))?;
    Ok((msg.bytes, from, local))
}

fn send_from(socket: &UdpSocket, bytes: &[u8], to: SocketAddr, from: IpAddr) -> std::io::Result<usize> {
    use nix::libc;
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    let iov = [std::io::IoSlice::new(bytes)];
    let dest = SockaddrStorage::from(to);
    let sent = match from {
        IpAddr::V4(ip) if to.is_ipv4() => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&dest),
            )
        }
        IpAddr::V6(ip) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: ip.octets() },
                ipi6_ifindex: 0,
            };
            sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&dest),
            )
        }
        IpAddr::V4(_) => sendmsg(socket.as_raw_fd(), &iov, &[], MsgFlags::empty(), Some(&dest)),
    };
    sent.map_err(std::io::Error::from)
}

/// What the listener bounds (from `[siprec]`).
#[derive(Debug, Clone)]
pub(crate) struct TransportLimits {
    /// Messages being handled at once, over both transports.
    pub max_in_flight: usize,
    pub max_tcp_connections: usize,
    pub max_tcp_connections_per_source: usize,
    /// A TCP connection with no message under way is closed after this.
    pub tcp_idle: Duration,
    /// A message whose first byte arrived must be complete within this.
    pub tcp_message: Duration,
    /// Responses queued per TCP connection before the peer is cut off.
    pub tcp_send_queue: usize,
}

pub(crate) struct Transport {
    udp: Arc<Udp>,
    tcp: TcpListener,
    limits: TransportLimits,
}

/// Largest SIP datagram accepted (bigger ones come over TCP).
const MAX_DATAGRAM: usize = 65_535;

impl Transport {
    pub(crate) async fn bind(addr: &str, limits: TransportLimits) -> std::io::Result<Transport> {
        // Port 0: find a port free for both UDP and TCP.
        let mut last_error = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(addr).await?;
            let local = udp.local_addr()?;
            match TcpListener::bind(local).await {
                Ok(tcp) => {
                    return Ok(Transport {
                        udp: Arc::new(Udp::new(udp)?),
                        tcp,
                        limits,
                    });
                }
                Err(e) => last_error = Some(e),
            }
            if !addr.ends_with(":0") {
                break;
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no free SIP port")))
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub(crate) async fn run(self, dialogs: Arc<Dialogs>) {
        let in_flight = Arc::new(Semaphore::new(self.limits.max_in_flight.max(1)));
        let udp = self.udp.clone();
        let udp_dialogs = dialogs.clone();
        let udp_in_flight = in_flight.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (n, from, local) = match udp.recv(&mut buf).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "SIP UDP receive failed");
                        continue;
                    }
                };
                let datagram = &buf[..n];
                if datagram.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                    continue; // keep-alive
                }
                let reply = Reply::Udp {
                    socket: udp.clone(),
                    to: from,
                    local,
                };
                dispatch(&udp_dialogs, &udp_in_flight, datagram, reply);
            }
        });
        // The same connection caps as the HTTP, FTP and SFTP listeners.
        let connections = ConnectionCaps::new(
            self.limits.max_tcp_connections,
            self.limits.max_tcp_connections_per_source,
        );
        let mut next_connection = 0u64;
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    let slot = match connections.admit(peer.ip().to_canonical()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            tracing::info!(%peer, %refused, "SIP TCP connection refused");
                            drop(stream);
                            continue;
                        }
                    };
                    next_connection += 1;
                    let connection = Connection {
                        id: next_connection,
                        peer,
                        dialogs: dialogs.clone(),
                        in_flight: in_flight.clone(),
                        limits: self.limits.clone(),
                    };
                    tokio::spawn(async move {
                        connection.serve(stream).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a SIP TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if udp_task.is_finished() {
                break;
            }
        }
    }
}

fn dispatch(dialogs: &Arc<Dialogs>, in_flight: &Arc<Semaphore>, bytes: &[u8], reply: Reply) {
    match Message::parse(bytes) {
        Ok(message) => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                // Overloaded: a request is told to come back; the rest is dropped.
                if message.method().is_some_and(|m| *m != sip::Method::Ack) {
                    let response = message
                        .response(503)
                        .header("Retry-After", "1")
                        .header("Warning", "399 callmeta \"overloaded\"")
                        .build();
                    tokio::spawn(async move { reply.send(&response).await });
                }
                return;
            };
            // Every log line of the request's handling says whose it is.
            let span = tracing::info_span!(
                "sip",
                method = %message.method().map(|m| m.as_str()).unwrap_or("response"),
                call_id = message.call_id().unwrap_or(""),
                peer = %reply.peer(),
                tenant = tracing::field::Empty,
            );
            let dialogs = dialogs.clone();
            tokio::spawn(
                async move {
                    dialogs.handle(message, reply).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        Err(e) => {
            // Without a parsable request there is no Via to answer to; a
            // parsable start line with bad headers still gets its 400.
            tracing::info!(peer = %reply.peer(), error = %e, "malformed SIP message");
            if let Some(response) = bare_error_response(bytes, e.status(), &e.to_string()) {
                tokio::spawn(async move { reply.send(&response).await });
            }
        }
    }
}

/// A 4xx for a request whose headers could not all be parsed: built from
/// the lines that can be read (Via, From, To, Call-ID, CSeq), as RFC 3261
/// §8.2 asks, when they are there.
fn bare_error_response(bytes: &[u8], status: u16, why: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(16 * 1024)]);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    if first.starts_with("SIP/") || !first.contains("SIP/2.0") {
        return None;
    }
    let mut out = format!("SIP/2.0 {status} {}\r\n", sip::reason_phrase(status));
    let mut has_via = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let name = sip::canonical_name(name.trim());
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            has_via |= name.eq_ignore_ascii_case("Via");
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !has_via {
        return None;
    }
    let why: String = why.chars().filter(|c| !c.is_control()).take(200).collect();
    out.push_str(&format!(
        "Warning: 399 callmeta \"{}\"\r\nContent-Length: 0\r\n\r\n",
        why.replace('"', "'")
    ));
    Some(out.into_bytes())
}

/// One accepted TCP connection.
struct Connection {
    id: u64,
    peer: SocketAddr,
    dialogs: Arc<Dialogs>,
    in_flight: Arc<Semaphore>,
    limits: TransportLimits,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let peer = self.peer;
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Vec<u8>>(self.limits.tcp_send_queue.max(1));
        let stalled = Arc::new(Notify::new());
        let writer = tokio::spawn(write_queued(write, rx, self.limits.tcp_idle, stalled.clone()));
        let reply = Reply::Tcp {
            tx: tx.clone(),
            peer,
            local,
            connection: self.id,
            stalled: stalled.clone(),
        };
        let limits = sip::Limits::default();
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16 * 1024];
        // When the message under way started (its first byte arrived).
        let mut message_started: Option<Instant> = None;
        let mut idle_since = Instant::now();
        loop {
            if !self.dispatch_buffered(&mut buf, &limits, &reply).await {
                break;
            }
            let now = Instant::now();
            if buf.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                message_started = None;
            } else if message_started.is_none() {
                message_started = Some(now);
            }
            let deadline = match message_started {
                Some(started) => started + self.limits.tcp_message,
                None => idle_since + self.limits.tcp_idle,
            };
            tokio::select! {
                read = read.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        idle_since = Instant::now();
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if message_started.is_some() {
                        tracing::info!(%peer, "a SIP TCP message was not completed in time; closing the connection");
                    } else {
                        tracing::debug!(%peer, "closing an idle SIP TCP connection");
                    }
                    break;
                }
                _ = stalled.notified() => break,
            }
        }
        drop(reply);
        drop(tx);
        // Responses already queued get a moment to leave; then the
        // connection is closed, even if a dialog still holds its sender.
        let abort = writer.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), writer)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Dispatches every whole message at the front of `buf` and answers
    /// keep-alives; false when the stream cannot be framed (it cannot be
    /// resynchronised: answered if possible, to be closed).
    async fn dispatch_buffered(&self, buf: &mut Vec<u8>, limits: &sip::Limits, reply: &Reply) -> bool {
        loop {
            match sip::frame_length(buf, limits) {
                Ok(Framing::Complete(n)) => {
                    let message: Vec<u8> = buf.drain(..n).collect();
                    dispatch(&self.dialogs, &self.in_flight, &message, reply.clone());
                }
                Ok(Framing::KeepAlive(n)) => {
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        reply.send(b"\r\n").await;
                    }
                    buf.drain(..n);
                }
                Ok(Framing::NeedMore) => return true,
                Err(e) => {
                    tracing::info!(peer = %self.peer, error = %e, "unframeable SIP stream; closing it");
                    if let Some(response) = bare_error_response(buf, e.status(), &e.to_string()) {
                        reply.send(&response).await;
                    }
                    return false;
                }
            }
        }
    }
}

/// Writes a connection's queued responses; a peer that leaves one unread
/// for `timeout` is `stalled`, and the connection is closed.
async fn write_queued(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
    stalled: Arc<Notify>,
) {
    while let Some(bytes) = rx.recv().await {
        match tokio::time::timeout(timeout, write.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                stalled.notify_one();
                break;
            }
        }
    }
}
