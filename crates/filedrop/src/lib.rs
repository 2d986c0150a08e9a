//! The file-transfer adapter: FTP, FTPS (explicit TLS) and SFTP servers over
//! one per-tenant file tree. Customers' CRMs push their CSV exports here and
//! call recorders drop audio with metadata; both protocols hand every
//! completed upload to the same [`dropbox::Dropbox`], which calls the use cases
//! and writes a report next to the upload.
//!
//! - [`tree`]: the tenant's tree and the path checks that jail it.
//! - [`dropbox`]: what a completed upload means (table version, call drop).
//! - [`ftp`]: the FTP/FTPS server (libunftp).
//! - [`sftp`]: the SFTP server (russh + russh-sftp).
//! - [`keys`]: the server's TLS certificate and SSH host key, generated into
//!   the data dir on first start when none is configured.

pub mod dropbox;
pub mod ftp;
pub mod keys;
pub mod sftp;
pub mod tree;

use std::future::Future;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use serde::{Deserialize, Serialize};

/// Settings of the FTP and SFTP servers (`[transfer]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileDropSettings {
    /// Ports for passive-mode data connections, `FIRST-LAST`.
    pub passive_ports: String,
    /// The address put in passive replies (an IPv4 address or a host name),
    /// when clients reach the server through NAT or a load balancer; by
    /// default the address the client connected to.
    pub passive_host: Option<String>,
    /// PEM certificate chain and key for FTPS; without them a self-signed
    /// certificate is generated into the data dir.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse FTP logins and transfers without TLS.
    pub tls_required: bool,
    /// Files at most in one tenant's tree (reports included).
    pub max_files: u64,
    /// Seconds an FTP control connection or an SFTP session may stay idle,
    /// and an upload's data may pause, before it is closed.
    pub idle_secs: u64,
    /// Connections open at once on each of the FTP and SFTP listeners, in
    /// total and from one address (0: no cap).
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

impl Default for FileDropSettings {
    fn default() -> Self {
        Self {
            passive_ports: "49152-65535".into(),
            passive_host: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            max_files: 10_000,
            idle_secs: 300,
            max_connections: 512,
            max_connections_per_address: 32,
        }
    }
}

impl FileDropSettings {
    /// The passive port range; a malformed setting falls back to the default.
    pub fn passive_port_range(&self) -> RangeInclusive<u16> {
        parse_port_range(&self.passive_ports).unwrap_or(49152..=65535)
    }
}

/// Parses `FIRST-LAST` (or one port).
pub fn parse_port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let first: u16 = first.trim().parse().ok()?;
    let last: u16 = last.trim().parse().ok()?;
    (first > 0 && first <= last).then_some(first..=last)
}

/// A reader of an upload's data that fails when nothing arrives for `idle`:
/// a stalled data connection does not hold its session (and its file) open.
pub(crate) struct IdleReader<R> {
    inner: R,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> IdleReader<R> {
    pub(crate) fn new(inner: R, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(result)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {} s", this.idle.as_secs()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Counts the files in a tenant's tree (two levels: root and folders).
pub async fn count_files(home: &Path) -> u64 {
    let mut count = 0;
    let mut dirs = vec![(home.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            match entry.file_type().await {
                Ok(t) if t.is_dir() && depth < 2 => dirs.push((entry.path(), depth + 1)),
                Ok(t) if t.is_file() => count += 1,
                _ => {}
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50100"), Some(50000..=50100));
        assert_eq!(parse_port_range("50000"), Some(50000..=50000));
        assert_eq!(parse_port_range("50100-50000"), None);
        assert_eq!(parse_port_range("x"), None);
    }
}
