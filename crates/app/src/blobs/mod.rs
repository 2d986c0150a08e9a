//! Large immutable objects (CSV originals, reports, audio) behind [`BlobStore`].
//! The default is a local directory; keys are relative paths made only by
//! callmeta (`tenants/{id}/tables/{table}/{version}.csv`), never by users.

pub mod s3;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the bytes durably under `key`, replacing nothing half-way: a
    /// reader sees the whole object or none.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError>;
    /// Stores the file at `source` under `key`, as [`BlobStore::put`] does
    /// bytes, without reading it into memory. `source` is a received upload
    /// that is never written again; it may be linked rather than copied.
    async fn put_file(&self, key: &str, source: &Path) -> Result<(), BlobError> {
        let bytes = tokio::fs::read(source)
            .await
            .map_err(io(format!("reading {}", source.display())))?;
        self.put(key, Bytes::from(bytes)).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, BlobError>;
    /// Removes one object; removing none is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Removes every object whose key is `prefix` followed by `/...`;
    /// removing none is not an error.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError>;
    /// Checks that the storage can be written and read back (health endpoint).
    async fn ping(&self) -> Result<(), BlobError> {
        let key = "health/ping";
        let marker = Bytes::from(crate::usecases::new_id());
        self.put(key, marker.clone()).await?;
        if self.get(key).await? != marker {
            return Err(BlobError::Io {
                context: "blob storage read back other bytes than written".into(),
                source: std::io::Error::other("mismatch"),
            });
        }
        Ok(())
    }
}

/// Blobs as files under one directory.
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        let valid = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !valid {
            return Err(BlobError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> BlobError {
    move |source| BlobError::Io { context, source }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| BlobError::Io {
                context: "writing blob".into(),
                source: std::io::Error::other(e),
            })?
    }

    async fn put_file(&self, key: &str, source: &Path) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let source = source.to_path_buf();
        tokio::task::spawn_blocking(move || link_atomically(&path, &source))
            .await
            .map_err(|e| BlobError::Io {
                context: "writing blob".into(),
                source: std::io::Error::other(e),
            })?
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(io(format!("reading blob {}", path.display()))(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing blob {}", path.display()))(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        let path = self.path(prefix)?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing blobs under {}", path.display()))(e)),
        }
    }
}

/// Write to a temporary name, fsync, rename, fsync the directory: a crash
/// leaves either the old state or the whole new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
    let mut file = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    file.write_all(bytes)
        .map_err(io(format!("writing {}", tmp.display())))?;
    file.sync_all()
        .map_err(io(format!("syncing {}", tmp.display())))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {} to {}", tmp.display(), path.display())))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// [`write_atomically`] for a file: hard-linked when on the same file
/// system (no copy), else copied; then synced and renamed into place.
fn link_atomically(path: &Path, source: &Path) -> Result<(), BlobError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
    if std::fs::hard_link(source, &tmp).is_err() {
        std::fs::copy(source, &tmp).map_err(io(format!(
            "copying {} to {}",
            source.display(),
            tmp.display()
        )))?;
    }
    let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
    if let Err(e) = synced {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(format!("syncing {}", tmp.display()))(e));
    }
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {} to {}", tmp.display(), path.display())))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delete_prefix_removes_the_keys_under_it_only() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path());
        for key in ["a/p/1", "a/p/2", "a/pq", "a/q/1"] {
            blobs.put(key, Bytes::from_static(b"x")).await.unwrap();
        }
        blobs.delete_prefix("a/p").await.unwrap();
        blobs.delete_prefix("a/none").await.unwrap();
        for (key, kept) in [
            ("a/p/1", false),
            ("a/p/2", false),
            ("a/pq", true),
            ("a/q/1", true),
        ] {
            assert_eq!(blobs.get(key).await.is_ok(), kept, "{key}");
        }
        assert!(matches!(
            blobs.delete_prefix("../x").await,
            Err(BlobError::InvalidKey(_))
        ));
    }
}
