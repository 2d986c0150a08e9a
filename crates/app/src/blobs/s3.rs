//! Blobs in an S3-compatible object store (`--blobs s3://bucket`), shared by
//! every node. Settings not given explicitly come from the usual `AWS_*`
//! environment (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...).

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{BlobError, BlobStore};

/// Explicit S3 settings; each `None` falls back to the environment.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (an S3 server on a private network).
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

pub struct S3Blobs {
    store: std::sync::Arc<AmazonS3>,
}

fn s3_error(context: String) -> impl FnOnce(object_store::Error) -> BlobError {
    move |e| BlobError::Io {
        context,
        source: std::io::Error::other(e),
    }
}

impl S3Blobs {
    /// `url` is `s3://bucket`.
    pub fn new(url: &str, settings: &S3Settings) -> Result<Self, BlobError> {
        let bucket = url
            .strip_prefix("s3://")
            .map(|b| b.trim_end_matches('/'))
            .filter(|b| !b.is_empty() && !b.contains('/'))
            .ok_or_else(|| BlobError::InvalidKey(format!("{url}: expected s3://bucket")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = settings.endpoint.as_deref().filter(|v| !v.is_empty()) {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = settings.region.as_deref().filter(|v| !v.is_empty()) {
            builder = builder.with_region(region);
        }
        if let Some(key) = settings.access_key_id.as_deref().filter(|v| !v.is_empty()) {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = settings.secret_access_key.as_deref().filter(|v| !v.is_empty()) {
            builder = builder.with_secret_access_key(secret);
        }
        if settings.allow_http {
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .build()
            .map_err(s3_error(format!("configuring S3 storage for {url}")))?;
        Ok(Self {
            store: std::sync::Arc::new(store),
        })
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        // A single PUT is atomic: readers see the whole object or none.
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map_err(s3_error(format!("writing blob {key}")))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, source: &std::path::Path) -> Result<(), BlobError> {
        // Small files in one PUT, larger ones as a multipart upload of 10 MiB
        // parts: the object appears whole when the upload completes, or not
        // at all.
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::open(source).await.map_err(|e| BlobError::Io {
            context: format!("reading {}", source.display()),
            source: e,
        })?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), Path::from(key));
        let copied = async {
            tokio::io::copy(&mut file, &mut writer).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            let _ = writer.abort().await;
            return Err(BlobError::Io {
                context: format!("writing blob {key}"),
                source: e,
            });
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        match self.store.get(&Path::from(key)).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(s3_error(format!("reading blob {key}"))),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(s3_error(format!("reading blob {key}"))(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(format!("removing blob {key}"))(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        use futures_util::{StreamExt, TryStreamExt};
        let locations = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(format!("removing blobs under {prefix}"))(e)),
            }
        }
        Ok(())
    }
}
