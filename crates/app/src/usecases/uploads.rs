//! The policy every upload channel shares (HTTP API, web form, CLI, FTP,
//! SFTP), decided here once; adapters only turn its errors into their
//! protocol's replies.
//!
//! - **Size**: `[limits] max_file_bytes`, checked from a declared length
//!   ([`check_declared_size`]) and while the bytes arrive ([`Incoming::write`]),
//!   so an oversize upload is refused before anything is stored: no version,
//!   no blob, and its spool file is removed.
//! - **Memory per upload**: an upload is received into a private spool file
//!   (hashed on the way), never held whole in memory; the CSV parser reads
//!   that file in chunks ([`crate::spool`]) and keeps only those it is
//!   parsing. What an upload costs is its index.
//! - **Memory in total**: parsing an upload reserves 1.5x its size from the
//!   server-wide ingest budget (`[uploads] memory_budget_bytes`); an upload
//!   that does not fit waits up to `[uploads] budget_wait_ms`, then is refused
//!   as busy ([`AppError::Busy`], with a time to retry after). Protocols that
//!   can refuse before the bytes arrive ask [`admit`] first.
//! - **No sparse or out-of-order writes**: a write (FTP `REST` + `STOR`, an
//!   SFTP write) may start anywhere up to the file's current size, never past
//!   it ([`check_write_offset`]).
//! - **Rejected originals**: kept in blob storage for the uploader to read
//!   back, up to `[uploads] rejected_quota_bytes` per tenant; past it the
//!   oldest are removed (their version and report stay). See
//!   `tables::enforce_rejected_quota`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{AppError, Services, new_id};

/// `[uploads]` settings: the ingest memory budget and the rejected-upload quota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct UploadPolicy {
    /// Memory that all uploads being parsed may use together, in bytes;
    /// each takes 1.5x its size while it is parsed (0: no budget).
    pub memory_budget_bytes: u64,
    /// How long an upload waits for its share of the budget before it is
    /// refused as busy (HTTP 503 with Retry-After, an FTP/SFTP report).
    pub budget_wait_ms: u64,
    /// Bytes of rejected uploads' originals kept per tenant; past it the
    /// oldest rejected originals are deleted (their reports stay).
    pub rejected_quota_bytes: u64,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            memory_budget_bytes: 2 << 30,
            budget_wait_ms: 30_000,
            rejected_quota_bytes: 1 << 30,
        }
    }
}

/// What a refused-as-busy client is told to wait before trying again.
pub const RETRY_AFTER_SECS: u64 = 10;

const MIB: u64 = 1 << 20;

/// The server-wide ingest memory budget, counted in MiB.
pub struct IngestBudget {
    permits: Option<tokio::sync::Semaphore>,
    total_mib: u32,
}

/// A share of the ingest budget, given back when dropped.
pub struct BudgetShare<'a> {
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl IngestBudget {
    pub fn new(bytes: u64) -> Self {
        if bytes == 0 {
            return Self {
                permits: None,
                total_mib: 0,
            };
        }
        let total_mib = (bytes / MIB).clamp(1, u32::MAX as u64) as u32;
        Self {
            permits: Some(tokio::sync::Semaphore::new(total_mib as usize)),
            total_mib,
        }
    }

    /// The share an upload of `len` bytes needs: 1.5x, at least 1 MiB, at
    /// most the whole budget (a file larger than the budget runs alone).
    fn need_mib(&self, len: u64) -> u32 {
        let need = (len.saturating_add(len / 2)).div_ceil(MIB);
        need.clamp(1, self.total_mib as u64) as u32
    }

    /// Bytes of the budget not reserved now (`None`: no budget).
    pub fn available_bytes(&self) -> Option<u64> {
        self.permits.as_ref().map(|p| p.available_permits() as u64 * MIB)
    }

    async fn reserve(&self, len: u64, wait: Duration) -> Result<BudgetShare<'_>, AppError> {
        let Some(permits) = &self.permits else {
            return Ok(BudgetShare { _permit: None });
        };
        let need = self.need_mib(len);
        match tokio::time::timeout(wait, permits.acquire_many(need)).await {
            Ok(Ok(permit)) => Ok(BudgetShare {
                _permit: Some(permit),
            }),
            _ => Err(busy()),
        }
    }
}

fn busy() -> AppError {
    AppError::Busy {
        message: format!(
            "the server is ingesting as many uploads as its memory budget allows; \
             try again in {RETRY_AFTER_SECS} seconds"
        ),
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

/// Waits for the memory to parse an upload of `len` bytes, at most
/// `[uploads] budget_wait_ms`; the share is held until dropped.
#[tracing::instrument(skip_all, fields(bytes = len))]
pub async fn reserve_memory(services: &Services, len: u64) -> Result<BudgetShare<'_>, AppError> {
    let wait = Duration::from_millis(services.uploads.budget_wait_ms);
    services.ingest_budget.reserve(len, wait).await
}

/// For protocols that can refuse an upload before its bytes arrive (FTP,
/// SFTP): busy when the whole budget is taken right now.
pub fn admit(services: &Services) -> Result<(), AppError> {
    match services.ingest_budget.available_bytes() {
        Some(0) => Err(busy()),
        _ => Ok(()),
    }
}

fn too_large(limit: u64, size: Option<u64>) -> AppError {
    AppError::TooLarge(match size {
        Some(size) => format!("the upload is {size} bytes, over the limit of {limit} bytes"),
        None => format!("the upload is over the limit of {limit} bytes"),
    })
}

/// Refuses an upload whose declared length (`Content-Length`, a file's size)
/// is over `[limits] max_file_bytes`.
pub fn check_declared_size(services: &Services, size: u64) -> Result<(), AppError> {
    let limit = services.limits.max_file_bytes;
    if size > limit {
        return Err(too_large(limit, Some(size)));
    }
    Ok(())
}

/// A write of `len` bytes at `offset` into a file of `current` bytes: it may
/// overwrite or extend the file, never leave a hole, and never take the file
/// past `[limits] max_file_bytes`.
pub fn check_write(services: &Services, offset: u64, len: u64, current: u64) -> Result<(), AppError> {
    if offset > current {
        return Err(AppError::invalid(
            "offset",
            format!(
                "a write at byte {offset} would leave a hole: the file has {current} bytes, \
                 and writes may start at most at its end"
            ),
        ));
    }
    let limit = services.limits.max_file_bytes;
    if offset.saturating_add(len) > limit {
        return Err(too_large(limit, None));
    }
    Ok(())
}

/// Removes the spool files that a process stopped mid-upload left behind:
/// those not written for `idle` (a CLI import running meanwhile on the same
/// data dir keeps its own, which it is writing). Called at a server's start.
pub fn clean_spool(dir: &Path, idle: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= idle);
        if name.starts_with("upload-") && name.ends_with(".part") && stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %entry.path().display(), "removed an abandoned upload"),
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "removing an abandoned upload failed")
                }
            }
        }
    }
}

/// Removes its spool file when dropped, whatever happened to the upload.
#[derive(Debug)]
struct SpoolPath(PathBuf);

impl Drop for SpoolPath {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.0.display(), error = %e, "removing a spool file failed");
        }
    }
}

/// An upload being received into its spool file.
pub struct Incoming {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: SpoolPath,
    hasher: Sha256,
    len: u64,
    limit: u64,
}

/// An upload received whole: its spool file, size and SHA-256.
#[derive(Debug)]
pub struct Received {
    path: SpoolPath,
    len: u64,
    sha256: String,
}

fn spool_error(context: String) -> impl FnOnce(std::io::Error) -> AppError {
    move |e| AppError::Unexpected(anyhow::Error::new(e).context(context))
}

impl Incoming {
    /// Starts receiving an upload (of no more than `[limits] max_file_bytes`).
    pub async fn start(services: &Services) -> Result<Incoming, AppError> {
        Self::start_with_limit(services, services.limits.max_file_bytes).await
    }

    async fn start_with_limit(services: &Services, limit: u64) -> Result<Incoming, AppError> {
        let dir = &services.spool_dir;
        tokio::fs::create_dir_all(dir).await.map_err(spool_error(format!(
            "creating the spool directory {}",
            dir.display()
        )))?;
        let path = dir.join(format!("upload-{}.part", new_id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(spool_error(format!("creating {}", path.display())))?;
        Ok(Incoming {
            file: tokio::io::BufWriter::with_capacity(256 * 1024, file),
            path: SpoolPath(path),
            hasher: Sha256::new(),
            len: 0,
            limit,
        })
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the next bytes; refused (and nothing kept) once the upload
    /// passes the size limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AppError> {
        let len = self.len.saturating_add(chunk.len() as u64);
        if len > self.limit {
            return Err(too_large(self.limit, None));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(spool_error(format!("writing {}", self.path.0.display())))?;
        self.len = len;
        Ok(())
    }

    /// The upload is complete.
    pub async fn finish(mut self) -> Result<Received, AppError> {
        self.file
            .flush()
            .await
            .map_err(spool_error(format!("writing {}", self.path.0.display())))?;
        let sha256 = hex::encode(self.hasher.finalize());
        Ok(Received {
            path: self.path,
            len: self.len,
            sha256,
        })
    }
}

impl Received {
    /// Receives a local file (a CLI import, an FTP/SFTP upload in the drop
    /// tree): copied into the spool, so that what is parsed and stored cannot
    /// change under the parser when the client writes that file again.
    #[tracing::instrument(skip_all, fields(file = %source.display()))]
    pub async fn from_file(services: &Services, source: &Path) -> Result<Received, AppError> {
        let context = || format!("reading the upload {}", source.display());
        let mut file = tokio::fs::File::open(source)
            .await
            .map_err(spool_error(context()))?;
        let size = file.metadata().await.map_err(spool_error(context()))?.len();
        check_declared_size(services, size)?;
        let mut incoming = Incoming::start(services).await?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(spool_error(context()))?;
            if n == 0 {
                break;
            }
            incoming.write(&buf[..n]).await?;
        }
        incoming.finish().await
    }

    /// Bytes already in memory (a test, a benchmark): written to the spool
    /// and dropped, under the size limit.
    #[tracing::instrument(skip_all, fields(bytes = bytes.len()))]
    pub async fn from_bytes(services: &Services, bytes: Bytes) -> Result<Received, AppError> {
        check_declared_size(services, bytes.len() as u64)?;
        Self::from_stored(services, bytes).await
    }

    /// An original read back from blob storage, to be ingested again:
    /// written to the spool so it can be dropped before parsing. No size
    /// limit: it was accepted once.
    pub(crate) async fn from_stored(services: &Services, bytes: Bytes) -> Result<Received, AppError> {
        let mut incoming = Incoming::start_with_limit(services, u64::MAX).await?;
        incoming.write(&bytes).await?;
        drop(bytes);
        incoming.finish().await
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_shares() {
        let budget = IngestBudget::new(1 << 30);
        assert_eq!(budget.need_mib(0), 1);
        assert_eq!(budget.need_mib(100 * MIB), 150);
        assert_eq!(budget.need_mib(300 * MIB), 450);
        // Larger than the budget: all of it, so it runs alone.
        assert_eq!(budget.need_mib(4 << 30), 1024);
        assert_eq!(IngestBudget::new(0).available_bytes(), None);
    }

    #[test]
    fn only_abandoned_spool_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let abandoned = dir.path().join("upload-1.part");
        let other = dir.path().join("notes.txt");
        std::fs::write(&abandoned, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        clean_spool(dir.path(), Duration::from_secs(3600));
        assert!(abandoned.exists(), "a recent spool file is someone's upload");
        clean_spool(dir.path(), Duration::ZERO);
        assert!(!abandoned.exists());
        assert!(other.exists());
    }

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_wait() {
        let budget = IngestBudget::new(100 * MIB);
        let held = budget.reserve(60 * MIB, Duration::ZERO).await.unwrap();
        let refused = budget.reserve(10 * MIB, Duration::from_millis(10)).await;
        assert!(matches!(refused, Err(AppError::Busy { .. })));
        drop(held);
        assert!(budget.reserve(60 * MIB, Duration::ZERO).await.is_ok());
    }
}
