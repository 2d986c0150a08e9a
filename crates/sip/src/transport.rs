//! UDP and TCP on one port: datagrams are messages; TCP streams are framed
//! by Content-Length (with CRLF keep-alives). Every message goes to the
//! dialogs with a [`Reply`] that sends back the way it came.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callmeta_siprec::sip::{self, Framing, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::dialog::Dialogs;

/// Where a response goes.
#[derive(Clone, Debug)]
pub enum Reply {
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    Tcp {
        tx: mpsc::UnboundedSender<Vec<u8>>,
        peer: SocketAddr,
    },
}

impl Reply {
    pub async fn send(&self, bytes: &[u8]) {
        match self {
            Reply::Udp { socket, to } => {
                if let Err(e) = socket.send_to(bytes, to).await {
                    tracing::debug!(%to, error = %e, "sending a SIP datagram failed");
                }
            }
            Reply::Tcp { tx, .. } => {
                let _ = tx.send(bytes.to_vec());
            }
        }
    }

    pub fn is_udp(&self) -> bool {
        matches!(self, Reply::Udp { .. })
    }

    pub fn peer(&self) -> SocketAddr {
        match self {
            Reply::Udp { to, .. } => *to,
            Reply::Tcp { peer, .. } => *peer,
        }
    }

    /// The transport name for Via/Contact.
    pub fn transport(&self) -> &'static str {
        if self.is_udp() { "udp" } else { "tcp" }
    }
}

pub struct Transport {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

/// Largest SIP datagram accepted (bigger ones come over TCP).
const MAX_DATAGRAM: usize = 65_535;

impl Transport {
    pub async fn bind(addr: &str) -> std::io::Result<Transport> {
        // Port 0: find a port free for both UDP and TCP.
        let mut last_error = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(addr).await?;
            let local = udp.local_addr()?;
            match TcpListener::bind(local).await {
                Ok(tcp) => {
                    return Ok(Transport {
                        udp: Arc::new(udp),
                        tcp,
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

    pub fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub async fn run(self, dialogs: Arc<Dialogs>) {
        let udp = self.udp.clone();
        let udp_dialogs = dialogs.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (n, from) = match udp.recv_from(&mut buf).await {
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
                };
                dispatch(&udp_dialogs, datagram, reply);
            }
        });
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_tcp(stream, peer, dialogs.clone()));
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

fn dispatch(dialogs: &Arc<Dialogs>, bytes: &[u8], reply: Reply) {
    match Message::parse(bytes) {
        Ok(message) => {
            let dialogs = dialogs.clone();
            tokio::spawn(async move { dialogs.handle(message, reply).await });
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

async fn serve_tcp(stream: TcpStream, peer: SocketAddr, dialogs: Arc<Dialogs>) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let limits = sip::Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        loop {
            match sip::frame_length(&buf, &limits) {
                Ok(Framing::Complete(n)) => {
                    let message: Vec<u8> = buf.drain(..n).collect();
                    let reply = Reply::Tcp { tx: tx.clone(), peer };
                    dispatch(&dialogs, &message, reply);
                }
                Ok(Framing::KeepAlive(n)) => {
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = tx.send(b"\r\n".to_vec());
                    }
                    buf.drain(..n);
                }
                Ok(Framing::NeedMore) => break,
                Err(e) => {
                    // The stream cannot be resynchronised: answer if we can, close.
                    tracing::info!(%peer, error = %e, "unframeable SIP stream; closing it");
                    if let Some(response) = bare_error_response(&buf, e.status(), &e.to_string()) {
                        let _ = tx.send(response);
                    }
                    break 'conn;
                }
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
