//! A day's file to an S3 bucket: one object under the final key, streamed
//! through a buffered multipart writer.

use std::sync::Arc;
use std::time::Duration;

use callmeta_app::usecases::Services;
use callmeta_app::usecases::export_push::{DuePush, S3Destination};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ClientOptions, RetryConfig};
use tokio::io::AsyncWriteExt;

use crate::{Pages, Written, resolve};

/// Writes the day's object; the error says which step failed.
pub(crate) async fn push(
    services: &Services,
    due: &DuePush,
    d: &S3Destination,
    written: &mut Written,
) -> Result<(), String> {
    let allow_private = services.webhooks.settings().allow_private;
    // Not from the environment: the operator's own credentials and
    // endpoint must never serve a tenant's destination.
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&d.bucket)
        .with_region(&d.region)
        .with_access_key_id(&d.access_key_id)
        .with_secret_access_key(d.secret_access_key.as_deref().unwrap_or_default())
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_timeout(Duration::from_secs(120))
                .with_connect_timeout(Duration::from_secs(20)),
        );
    if let Some(endpoint) = d.endpoint.as_deref() {
        let url = url::Url::parse(endpoint).map_err(|e| format!("endpoint {endpoint}: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        resolve(host, port, allow_private).await?;
        builder = builder.with_endpoint(endpoint);
        if url.scheme() == "http" {
            builder = builder.with_allow_http(true);
        }
    } else {
        let host = format!("s3.{}.amazonaws.com", d.region);
        resolve(&host, 443, allow_private).await?;
    }
    let store = builder
        .build()
        .map_err(|e| format!("configuring S3 for bucket {}: {e}", d.bucket))?;
    let key = format!("{}{}", d.prefix, due.file_name);
    let mut writer = BufWriter::new(Arc::new(store), Path::from(key.as_str()));
    let copied = async {
        let mut pages = Pages::start(services, due).await?;
        while let Some(chunk) = pages.next(services, due).await? {
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| format!("writing s3://{}/{key}: {e}", d.bucket))?;
            pages.written(chunk.len(), written);
        }
        writer
            .shutdown()
            .await
            .map_err(|e| format!("writing s3://{}/{key}: {e}", d.bucket))
    }
    .await;
    if copied.is_err() {
        let _ = writer.abort().await;
    }
    copied
}
