//! The export pusher, an adapter: it writes each day's export file to the
//! tenant's SFTP server or S3 bucket, as the use case
//! (`callmeta_app::usecases::export_push`) recorded it.
//!
//! [`run`] is the push loop of one node: it claims the pushes that are due
//! (one asked for on this node at once; a scheduled one, a retry or another
//! node's at its next poll), makes each on a task of its own (at most
//! [`MAX_IN_FLIGHT`] at once) and hands the outcome back to the use case,
//! which decides what comes next (done, retried after a backoff, given up).
//!
//! A file is streamed: the export is read a page at a time
//! (`export::Export::next_chunk`) and each page written out before the next
//! is read, so memory holds one page whatever the day's size.
//! - SFTP ([`sftp`]): written under a temporary name beginning with `.` in
//!   the same directory, then renamed over the final name
//!   (`posix-rename@openssh.com` when the server has it, which replaces
//!   atomically; else the old file is removed first), so that the customer
//!   never reads a partial file. The server's host key must match the
//!   pinned fingerprint unless the tenant accepted any.
//! - S3 ([`s3`]): one object under the final key; an object appears whole
//!   when its upload completes (a multipart upload past 10 MiB), or not.
//!
//! Every address a destination's name resolves to is checked against the
//! webhooks' destination rule before connecting (`refused_address`).

mod s3;
mod sftp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callmeta_app::usecases::Services;
use callmeta_app::usecases::export::Export;
use callmeta_app::usecases::export_push::{self, Destination, DuePush, PushOutcome};
use callmeta_app::usecases::webhooks::refused_address;

/// Pushes one node makes at once.
pub const MAX_IN_FLIGHT: usize = 4;

/// Makes due pushes until the task is dropped, which also drops the pushes
/// under way (their jobs go back to any node when their leases run out).
pub async fn run(services: Arc<Services>) {
    let poll = Duration::from_millis(services.webhooks.settings().poll_ms.max(10));
    let mut under_way = tokio::task::JoinSet::new();
    loop {
        while under_way.try_join_next().is_some() {}
        let free = MAX_IN_FLIGHT.saturating_sub(under_way.len());
        if free > 0 {
            match export_push::claim_due(&services, free as u32).await {
                Ok(due) => {
                    for due in due {
                        let services = services.clone();
                        under_way.spawn(async move {
                            let outcome = push(&services, &due).await;
                            if let Err(e) = export_push::finish(&services, due, outcome).await {
                                tracing::warn!(error = %e, "recording an export push's outcome failed");
                            }
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for due export pushes failed; retrying"),
            }
        }
        tokio::select! {
            _ = services.webhooks.push_requested() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One attempt: the day's file written to its destination.
pub async fn push(services: &Services, due: &DuePush) -> PushOutcome {
    let mut written = Written::default();
    let result = match &due.destination {
        Destination::Sftp(d) => sftp::push(services, due, d, &mut written).await,
        Destination::S3(d) => s3::push(services, due, d, &mut written).await,
    };
    PushOutcome {
        calls: written.calls,
        bytes: written.bytes,
        error: result.err().map(|e| e.chars().take(1000).collect()),
    }
}

/// What an attempt wrote.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub calls: u64,
    pub bytes: u64,
}

/// The day's export, read a page at a time: each page is written out
/// before the next is read.
pub(crate) struct Pages {
    export: Export,
}

impl Pages {
    pub(crate) async fn start(services: &Services, due: &DuePush) -> Result<Pages, String> {
        let export = Export::start(services, &due.tenant, &due.query(), due.format.export_format())
            .await
            .map_err(|e| format!("reading the day's calls: {e}"))?;
        Ok(Pages { export })
    }

    /// The next bytes of the file; `None` at its end.
    pub(crate) async fn next(
        &mut self,
        services: &Services,
        due: &DuePush,
    ) -> Result<Option<Vec<u8>>, String> {
        self.export
            .next_chunk(services, &due.tenant)
            .await
            .map_err(|e| format!("reading the day's calls: {e}"))
    }

    /// A page of `len` bytes was written out.
    pub(crate) fn written(&self, len: usize, written: &mut Written) {
        written.bytes += len as u64;
        written.calls = self.export.calls_written();
    }
}

/// The addresses of `host`, every one allowed by the destination rule.
pub(crate) async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| format!("resolving {host}: no answer within 10 s"))?
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    for a in &addrs {
        if let Some(why) = refused_address(a.ip(), allow_private) {
            return Err(format!(
                "{host} resolves to {}",
                why.replace("webhooks are not delivered", "files are not pushed")
            ));
        }
    }
    Ok(addrs)
}
