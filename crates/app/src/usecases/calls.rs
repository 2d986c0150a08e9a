//! Calls: creation (durable, then enriched from the tenant's snapshot of
//! active versions), reading and listing.

use callmeta_core::enrich::{self, EnrichmentResult, Metadata, TableView};

use super::{AppError, Services, new_id, now_ms};
use crate::store::{CallQuery, CallRecord, CallSource, StoreError, TenantId};

pub struct NewCall {
    pub metadata: Metadata,
    pub timestamp_ms: Option<i64>,
    pub external_id: Option<String>,
    pub source: CallSource,
    /// The recording, stored in blob storage before the call is recorded.
    pub audio: Option<NewAudio>,
}

/// A recording that arrives with a call (FTP/SFTP drop, API).
pub struct NewAudio {
    pub bytes: bytes::Bytes,
    /// The file extension it is stored and served under (`wav`, `mp3`, ...).
    pub extension: String,
}

/// The content type a recording is served with, from its stored name.
pub fn audio_content_type(key: &str) -> &'static str {
    match key.rsplit('.').next().map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "opus") => "audio/ogg",
        Some("flac") => "audio/flac",
        Some("m4a" | "mp4") => "audio/mp4",
        _ => "audio/wav",
    }
}

// The documented bounds of a call and of a call query (README, "Limits"),
// the same on every channel.

/// Keys of a call's own metadata.
pub const MAX_METADATA_KEYS: usize = 1000;
// Lengths of keys and values are in characters, as the API's JSON Schema
// counts them, so the document can state them exactly.
/// A metadata key, and the key of a filter.
pub const MAX_KEY_CHARS: usize = 256;
/// A metadata value.
pub const MAX_VALUE_CHARS: usize = 64 * 1024;
/// A call's `external_id`.
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;
/// `metadata.KEY=VALUE` filters in one query: each costs a join or a
/// containment test, so a query of hundreds would hold a core for seconds.
pub const MAX_FILTERS: usize = 20;
/// The value of a filter.
pub const MAX_FILTER_VALUE_BYTES: usize = 1024;
/// Calls in one page.
pub const MAX_LIMIT: u32 = 1000;
/// Calls skipped before a page: the database walks every one of them, so
/// deeper pages need narrower filters or a time range instead.
pub const MAX_OFFSET: u64 = 100_000;

/// Enriches metadata from the tenant's current snapshot: every table, one
/// version each, all from the same snapshot.
pub fn enrich_now(
    services: &Services,
    tenant: &TenantId,
    metadata: &Metadata,
    at_ms: i64,
) -> Vec<EnrichmentResult> {
    let snapshot = services.tables.snapshot(tenant);
    let views: Vec<TableView<'_>> = snapshot
        .tables
        .iter()
        .map(|t| TableView {
            table: t.name.as_str(),
            key_column: t.options.key.as_str(),
            version: t.version.as_deref(),
            index: t.index.as_deref(),
        })
        .collect();
    enrich::enrich(metadata, &views, at_ms)
}

/// Checks a list query against the bounds; `OverLimit` names the parameter.
pub fn check_query(query: &CallQuery) -> Result<(), AppError> {
    if !(1..=MAX_LIMIT).contains(&query.limit) {
        return Err(AppError::over_limit(
            "limit",
            format!("limit must be from 1 to {MAX_LIMIT}, not {}", query.limit),
        ));
    }
    if query.offset > MAX_OFFSET {
        return Err(AppError::over_limit(
            "offset",
            format!(
                "offset {} is over the limit of {MAX_OFFSET}: narrow the filters or the time range instead",
                query.offset
            ),
        ));
    }
    if query.metadata.len() > MAX_FILTERS {
        return Err(AppError::over_limit(
            "metadata",
            format!(
                "{} metadata filters, over the limit of {MAX_FILTERS} per query",
                query.metadata.len()
            ),
        ));
    }
    for (key, value) in &query.metadata {
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(AppError::over_limit(
                "metadata",
                format!(
                    "a filter's key is {} characters, over the limit of {MAX_KEY_CHARS}",
                    key.chars().count()
                ),
            ));
        }
        if value.len() > MAX_FILTER_VALUE_BYTES {
            return Err(AppError::over_limit(
                format!("metadata.{key}"),
                format!(
                    "the filter's value is {} bytes, over the limit of {MAX_FILTER_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

fn validate(metadata: &Metadata) -> Result<(), AppError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(AppError::invalid(
            "metadata",
            format!("{} keys, over the limit of {MAX_METADATA_KEYS}", metadata.len()),
        ));
    }
    for (k, v) in metadata {
        if k.trim().is_empty() || k.chars().count() > MAX_KEY_CHARS {
            return Err(AppError::invalid(
                "metadata",
                format!("key {k:?} must be 1 to {MAX_KEY_CHARS} characters and not blank"),
            ));
        }
        // Bytes bound characters from above: count only when it may matter.
        let chars = if v.len() > MAX_VALUE_CHARS {
            v.chars().count()
        } else {
            v.len()
        };
        if chars > MAX_VALUE_CHARS {
            return Err(AppError::invalid(
                format!("metadata.{k}"),
                format!("value is {chars} characters, over the limit of {MAX_VALUE_CHARS}"),
            ));
        }
    }
    Ok(())
}

/// Parses an ISO 8601 / RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub fn format_timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Creates a call: stored durably (with its enrichment) before this returns.
/// A repeated `external_id` returns the existing call (`false`) instead of a
/// duplicate, so a client may retry safely.
pub async fn create_call(
    services: &Services,
    tenant: &TenantId,
    new: NewCall,
) -> Result<(CallRecord, bool), AppError> {
    validate(&new.metadata)?;
    if let Some(ext) = &new.external_id
        && (ext.trim().is_empty() || ext.chars().count() > MAX_EXTERNAL_ID_CHARS)
    {
        return Err(AppError::invalid(
            "external_id",
            format!(
                "external_id must be 1 to {MAX_EXTERNAL_ID_CHARS} characters and not blank, not {} characters",
                ext.chars().count()
            ),
        ));
    }
    if let Some(ext) = &new.external_id {
        match services.store.call_by_external_id(tenant, ext).await {
            Ok(existing) => return Ok((existing, false)),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let now = now_ms();
    let timestamp_ms = new
        .timestamp_ms
        .or_else(|| new.metadata.get("datetime").and_then(|d| parse_timestamp(d)))
        .unwrap_or(now);
    let enrichment = enrich_now(services, tenant, &new.metadata, now);
    let unique_id = new_id();
    let audio_key = match new.audio {
        Some(audio) => Some(store_audio(services, tenant, &unique_id, audio).await?),
        None => None,
    };
    let call = CallRecord {
        unique_id,
        timestamp_ms,
        source: new.source,
        external_id: new.external_id,
        metadata: new.metadata,
        enrichment,
        audio_key,
        created_ms: now,
        updated_ms: now,
    };
    match services.store.insert_call(tenant, &call).await {
        Ok(()) => Ok((call, true)),
        // Lost a race with a retry of the same external_id: answer with the winner.
        Err(StoreError::Conflict(_)) if call.external_id.is_some() => {
            let existing = services
                .store
                .call_by_external_id(tenant, call.external_id.as_deref().unwrap_or(""))
                .await?;
            Ok((existing, false))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get_call(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
) -> Result<CallRecord, AppError> {
    services.store.call(tenant, unique_id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::NotFound(format!("call {unique_id}")),
        other => other.into(),
    })
}

async fn store_audio(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    audio: NewAudio,
) -> Result<String, AppError> {
    let extension: String = audio
        .extension
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let extension = if extension.is_empty() {
        "wav".to_string()
    } else {
        extension
    };
    let key = format!("tenants/{tenant}/calls/{unique_id}.{extension}");
    services.blobs.put(&key, audio.bytes).await?;
    Ok(key)
}

/// Replaces a call's own metadata (a SIPREC re-INVITE or UPDATE brought a
/// new snapshot) and enriches it again from the versions active now; the
/// new results replace the old ones, as the metadata they were computed from
/// did.
pub async fn update_call_metadata(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    metadata: Metadata,
) -> Result<CallRecord, AppError> {
    validate(&metadata)?;
    let mut call = get_call(services, tenant, unique_id).await?;
    if call.metadata == metadata {
        return Ok(call);
    }
    let now = now_ms();
    call.enrichment = enrich_now(services, tenant, &metadata, now);
    call.metadata = metadata;
    call.updated_ms = now;
    services.store.update_call(tenant, &call).await?;
    Ok(call)
}

/// Stores a call's recording (the end of a SIPREC call, or what was
/// received before a crash) and links it to the call.
pub async fn attach_audio(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    audio: NewAudio,
) -> Result<CallRecord, AppError> {
    let mut call = get_call(services, tenant, unique_id).await?;
    let key = store_audio(services, tenant, unique_id, audio).await?;
    call.audio_key = Some(key);
    call.updated_ms = now_ms();
    services.store.update_call(tenant, &call).await?;
    Ok(call)
}

/// A call's recording and its content type; `NotFound` when it has none.
pub async fn call_audio(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
) -> Result<(bytes::Bytes, &'static str), AppError> {
    let call = get_call(services, tenant, unique_id).await?;
    let Some(key) = call.audio_key else {
        return Err(AppError::NotFound(format!("audio of call {unique_id}")));
    };
    let bytes = services.blobs.get(&key).await?;
    Ok((bytes, audio_content_type(&key)))
}

/// The calls matching `query`, newest first, and how many match; a query
/// beyond the bounds ([`check_query`]) is refused before it reaches the store.
pub async fn list_calls(
    services: &Services,
    tenant: &TenantId,
    query: &CallQuery,
) -> Result<(u64, Vec<CallRecord>), AppError> {
    check_query(query)?;
    Ok(services.store.list_calls(tenant, query).await?)
}
