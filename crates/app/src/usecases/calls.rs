//! Calls: creation (durable, then enriched from the tenant's snapshot of
//! active versions), reading and listing.

use callmeta_core::enrich::{self, EnrichmentResult, Metadata, TableView};

use super::{AppError, Services, new_id};
use crate::store::{CallPage, CallQuery, CallRecord, CallSource, Cursor, KeyFilter, StoreError, TenantId};

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

/// Enriches metadata from one snapshot of the tenant's tables: every
/// table, one version each, all from the same snapshot. `call_ms`, the
/// call's timestamp, picks the row of a table whose rows have validity
/// intervals.
fn enrich_snapshot(
    snapshot: &super::active_tables::TenantTables,
    metadata: &Metadata,
    at_ms: i64,
    call_ms: i64,
) -> Vec<EnrichmentResult> {
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
    enrich::enrich_at(metadata, &views, at_ms, call_ms)
}

/// Enriches a call's metadata from the tenant's current snapshot of
/// active versions, except that a table with `"as_of": "call_time"` uses
/// the version that was active at `call_ms` (loaded if it is no longer
/// the active one). For a tenant without such a table this is the
/// snapshot alone, with no store access.
pub async fn enrich_call(
    services: &Services,
    tenant: &TenantId,
    metadata: &Metadata,
    at_ms: i64,
    call_ms: i64,
) -> Vec<EnrichmentResult> {
    let snapshot = services.tables.snapshot(tenant);
    if !super::as_of::any_call_time(&snapshot) {
        return enrich_snapshot(&snapshot, metadata, at_ms, call_ms);
    }
    super::as_of::enrich_as_of(services, tenant, &snapshot, metadata, at_ms, call_ms).await
}

/// Calls in one page when a query does not say (`limit`).
pub const DEFAULT_LIMIT: u32 = 50;

/// Why a call list query could not be read: the one message the API
/// (400, `field` naming the parameter) and the web app (its error page)
/// show alike. The bounds of a readable query are [`check_query`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallQueryError {
    #[error("limit must be an integer from 1 to {MAX_LIMIT}, not {0:?}")]
    Limit(String),
    #[error("offset must be an integer from 0 to {max}, not {0:?}", max = i64::MAX)]
    Offset(String),
    #[error("page must be an integer from 1, not {0:?}")]
    Page(String),
    #[error("give offset or page, not both")]
    OffsetAndPage,
    /// `name`: the parameter as given (`timestamp_from`, `from`, ...).
    #[error("{name} must be RFC 3339, e.g. 2026-01-30T12:34:56Z, not {value:?}")]
    Timestamp { name: String, value: String },
    #[error(
        "unknown parameter {0:?}; expected limit, offset, page, cursor, timestamp_from, timestamp_to, from, to, \
         metadata.KEY, metadata.KEY.prefix, metadata.KEY.missing or enrichment.TABLE"
    )]
    Unknown(String),
    #[error("cursor must be a previous page's next_cursor, not {0:?}")]
    Cursor(String),
    /// `name`: the parameter as given.
    #[error("{name} must be true or false, not {value:?}")]
    Flag { name: String, value: String },
    /// `name`: the parameter as given.
    #[error("{name} must be one of matched, no_match, key_missing, ambiguous, no_version, not {value:?}")]
    Status { name: String, value: String },
}

impl CallQueryError {
    /// The parameter concerned.
    pub fn field(&self) -> &str {
        match self {
            CallQueryError::Limit(_) => "limit",
            CallQueryError::Offset(_) => "offset",
            CallQueryError::Page(_) | CallQueryError::OffsetAndPage => "page",
            CallQueryError::Timestamp { name, .. } => name,
            CallQueryError::Unknown(name) => name,
            CallQueryError::Cursor(_) => "cursor",
            CallQueryError::Flag { name, .. } | CallQueryError::Status { name, .. } => name,
        }
    }
}

/// Reads a call list query from its name/value pairs (a query string), the
/// same on every channel:
///
/// - `limit` (default [`DEFAULT_LIMIT`]) and `offset`, or `page` (from 1:
///   `offset` is `(page - 1) * limit`);
/// - `timestamp_from`, `timestamp_to`: RFC 3339, inclusive; `from` and `to`
///   are the same, and also take a form's `datetime-local` value
///   (`2026-01-30T12:34`, read as UTC);
/// - `metadata.KEY=VALUE` (a key repeated: any of its values),
///   `metadata.KEY.prefix=VALUE`, `metadata.KEY.missing=true|false`,
///   `enrichment.TABLE=STATUS` (repeated: any of);
/// - `cursor`: a previous page's `next_cursor`.
///
/// Only the syntax is checked here; [`list_calls`] checks the bounds.
pub fn parse_call_query(pairs: &[(String, String)]) -> Result<CallQuery, CallQueryError> {
    let mut query = CallQuery {
        limit: DEFAULT_LIMIT,
        ..CallQuery::default()
    };
    let mut offset = None;
    let mut page = None;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .map_err(|_| CallQueryError::Limit(value.clone()))?;
            }
            // Bounded as the API's document says (int64), which is all a
            // store can skip.
            "offset" => {
                offset = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n <= i64::MAX as u64)
                        .ok_or_else(|| CallQueryError::Offset(value.clone()))?,
                );
            }
            "page" => {
                page = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| CallQueryError::Page(value.clone()))?,
                );
            }
            "timestamp_from" | "from" => query.from_ms = Some(query_time(name, value)?),
            "timestamp_to" | "to" => query.to_ms = Some(query_time(name, value)?),
            "cursor" => {
                query.cursor = Some(
                    value
                        .parse::<Cursor>()
                        .map_err(|_| CallQueryError::Cursor(value.clone()))?,
                )
            }
            other => add_filter(&mut query.filters, other, value)?,
        }
    }
    query.offset = match (offset, page) {
        (Some(_), Some(_)) => return Err(CallQueryError::OffsetAndPage),
        (Some(offset), None) => offset,
        // Saturates: a page past the bound on offsets is refused by it.
        (None, Some(page)) => (page - 1).saturating_mul(u64::from(query.limit)),
        (None, None) => 0,
    };
    Ok(query)
}

/// Adds the filter a `metadata.*` or `enrichment.*` parameter gives; a key
/// or table repeated with `=` means any of the values.
fn add_filter(filters: &mut Vec<KeyFilter>, name: &str, value: &str) -> Result<(), CallQueryError> {
    let unknown = || CallQueryError::Unknown(name.to_string());
    if let Some(table) = name.strip_prefix("enrichment.") {
        if table.is_empty() {
            return Err(unknown());
        }
        if callmeta_core::enrich::EnrichmentStatus::parse(value).is_none() {
            return Err(CallQueryError::Status {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
        for f in filters.iter_mut() {
            if let KeyFilter::Enrichment { table: t, statuses } = f
                && t == table
            {
                statuses.push(value.to_string());
                return Ok(());
            }
        }
        filters.push(KeyFilter::Enrichment {
            table: table.to_string(),
            statuses: vec![value.to_string()],
        });
        return Ok(());
    }
    let Some(rest) = name.strip_prefix("metadata.") else {
        return Err(unknown());
    };
    if let Some(key) = rest.strip_suffix(".prefix").filter(|k| !k.is_empty()) {
        filters.push(KeyFilter::Prefix {
            key: key.to_string(),
            prefix: value.to_string(),
        });
    } else if let Some(key) = rest.strip_suffix(".missing").filter(|k| !k.is_empty()) {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(CallQueryError::Flag {
                    name: name.to_string(),
                    value: value.to_string(),
                });
            }
        };
        filters.push(KeyFilter::Missing {
            key: key.to_string(),
            missing,
        });
    } else if rest.is_empty() {
        return Err(unknown());
    } else {
        for f in filters.iter_mut() {
            if let KeyFilter::Equals { key, values } = f
                && key == rest
            {
                values.push(value.to_string());
                return Ok(());
            }
        }
        filters.push(KeyFilter::Equals {
            key: rest.to_string(),
            values: vec![value.to_string()],
        });
    }
    Ok(())
}

/// A query's time: RFC 3339; `from` and `to` also take a `datetime-local`
/// value (`YYYY-MM-DDTHH:MM[:SS]`, no zone: UTC).
fn query_time(name: &str, value: &str) -> Result<i64, CallQueryError> {
    let text = value.trim();
    let local_form = matches!(name, "from" | "to");
    let parsed = match text.len() {
        16 if local_form => parse_timestamp(&format!("{text}:00Z")),
        19 if local_form => parse_timestamp(&format!("{text}Z")),
        _ => parse_timestamp(text),
    };
    parsed.ok_or_else(|| CallQueryError::Timestamp {
        name: name.to_string(),
        value: value.to_string(),
    })
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
    let conditions: usize = query
        .filters
        .iter()
        .map(|f| match f {
            KeyFilter::Equals { values, .. } => values.len(),
            KeyFilter::Enrichment { statuses, .. } => statuses.len(),
            KeyFilter::Prefix { .. } | KeyFilter::Missing { .. } => 1,
        })
        .sum();
    if conditions > MAX_FILTERS {
        return Err(AppError::over_limit(
            "metadata",
            format!("{conditions} filter values, over the limit of {MAX_FILTERS} per query"),
        ));
    }
    for filter in &query.filters {
        let (key, values): (&str, Vec<&str>) = match filter {
            KeyFilter::Equals { key, values } => (key, values.iter().map(String::as_str).collect()),
            KeyFilter::Prefix { key, prefix } => (key, vec![prefix.as_str()]),
            KeyFilter::Missing { key, .. } => (key, Vec::new()),
            KeyFilter::Enrichment { table, statuses } => {
                (table, statuses.iter().map(String::as_str).collect())
            }
        };
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(AppError::over_limit(
                "metadata",
                format!(
                    "a filter's key is {} characters, over the limit of {MAX_KEY_CHARS}",
                    key.chars().count()
                ),
            ));
        }
        for value in values {
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
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = tracing::field::Empty))]
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
    let now = services.now_ms();
    let timestamp_ms = new
        .timestamp_ms
        .or_else(|| new.metadata.get("datetime").and_then(|d| parse_timestamp(d)))
        .unwrap_or(now);
    let enrichment = enrich_call(services, tenant, &new.metadata, now, timestamp_ms).await;
    let unique_id = new_id();
    tracing::Span::current().record("call_id", unique_id.as_str());
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
        audio_pruned_ms: None,
        created_ms: now,
        updated_ms: now,
    };
    // The event commits with the call (the outbox), or neither does.
    let events = super::webhooks::call_created(services, tenant, &call).await?;
    match services.store.insert_call(tenant, &call, &events).await {
        Ok(()) => {
            services
                .metrics
                .call_created(tenant, call.source, &call.enrichment);
            if !events.is_empty() {
                super::webhooks::jobs_written(services);
            }
            Ok((call, true))
        }
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

#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
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
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
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
    let now = services.now_ms();
    call.enrichment = enrich_call(services, tenant, &metadata, now, call.timestamp_ms).await;
    call.metadata = metadata;
    call.updated_ms = now;
    let events = super::webhooks::call_updated(services, tenant, &call).await?;
    services.store.update_call(tenant, &call, &events).await?;
    if !events.is_empty() {
        super::webhooks::jobs_written(services);
    }
    Ok(call)
}

/// Stores a call's recording (the end of a SIPREC call, or what was
/// received before a crash) and links it to the call.
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
pub async fn attach_audio(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    audio: NewAudio,
) -> Result<CallRecord, AppError> {
    let mut call = get_call(services, tenant, unique_id).await?;
    // Audio the retention policy removed does not come back (a recording
    // file left on a node's disk, attached after a restart).
    if call.audio_pruned_ms.is_some() {
        return Err(AppError::Pruned(format!(
            "the audio of call {unique_id} was removed by the tenant's retention policy; none is attached again"
        )));
    }
    let key = store_audio(services, tenant, unique_id, audio).await?;
    call.audio_key = Some(key);
    call.updated_ms = services.now_ms();
    let events = super::webhooks::audio_available(services, tenant, &call).await?;
    services.store.update_call(tenant, &call, &events).await?;
    if !events.is_empty() {
        super::webhooks::jobs_written(services);
    }
    Ok(call)
}

/// Whether a call's recording can be had: `available`, `pruned` (removed
/// by the tenant's retention policy; the call keeps its metadata) or
/// `missing` (none was received), as every channel shows it.
pub fn audio_state(call: &CallRecord) -> &'static str {
    match (&call.audio_key, call.audio_pruned_ms) {
        (Some(_), _) => "available",
        (None, Some(_)) => "pruned",
        (None, None) => "missing",
    }
}

/// A call's recording and its content type; `NotFound` when it has none,
/// `Pruned` when the retention policy removed it. The download is
/// written to the audit log before the audio is read, and refused if it
/// cannot be: no recording leaves unlisted.
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
pub async fn call_audio(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    actor: &super::audit::Actor,
) -> Result<(bytes::Bytes, &'static str), AppError> {
    let call = get_call(services, tenant, unique_id).await?;
    let Some(key) = call.audio_key else {
        if let Some(at_ms) = call.audio_pruned_ms {
            return Err(AppError::Pruned(format!(
                "the audio of call {unique_id} was removed by the tenant's retention policy on {}",
                format_timestamp(at_ms)
            )));
        }
        return Err(AppError::NotFound(format!("audio of call {unique_id}")));
    };
    super::audit::try_record(
        services,
        tenant,
        actor,
        super::audit::actions::AUDIO_DOWNLOAD,
        audio_object(unique_id),
        serde_json::json!({}),
    )
    .await?;
    let bytes = services.blobs.get(&key).await?;
    Ok((bytes, audio_content_type(&key)))
}

/// The audit object of a call's recording.
pub fn audio_object(unique_id: &str) -> String {
    format!("calls/{unique_id}/audio")
}

/// A page of the calls matching `query`, newest first, and how many match
/// (up to a bound); a query beyond the bounds ([`check_query`]) is refused
/// before it reaches the store.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list_calls(
    services: &Services,
    tenant: &TenantId,
    query: &CallQuery,
) -> Result<CallPage, AppError> {
    check_query(query)?;
    Ok(services.store.list_calls(tenant, query).await?)
}

/// Facets are counted over this many of the newest matching calls at most.
pub const FACET_SAMPLE: u32 = 20_000;
/// Values a facet shows when not told (`top`), and the most it shows.
pub const DEFAULT_FACET_TOP: u32 = 20;
pub const MAX_FACET_TOP: u32 = 100;

/// The most common values of one key among the calls a query matches.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Facets {
    pub key: String,
    /// Most common first (ties in byte order).
    pub values: Vec<FacetValue>,
    /// Calls counted without the key.
    pub missing: u64,
    /// Calls counted: all matching ones when `exact`, else the newest
    /// [`FACET_SAMPLE`].
    pub calls: u64,
    pub exact: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

/// The `top` most common values of `key` (own or added) among the calls
/// `query` matches (its page ignored), counted over the newest
/// [`FACET_SAMPLE`] of them.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn call_facets(
    services: &Services,
    tenant: &TenantId,
    query: &CallQuery,
    key: &str,
    top: u32,
) -> Result<Facets, AppError> {
    check_query(&CallQuery {
        limit: 1,
        offset: 0,
        ..query.clone()
    })?;
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(AppError::invalid(
            "key",
            format!("key must be 1 to {MAX_KEY_CHARS} characters"),
        ));
    }
    if !(1..=MAX_FACET_TOP).contains(&top) {
        return Err(AppError::invalid(
            "top",
            format!("top must be from 1 to {MAX_FACET_TOP}, not {top}"),
        ));
    }
    let query = CallQuery {
        cursor: None,
        after: None,
        offset: 0,
        ..query.clone()
    };
    let counted = services
        .store
        .call_facets(tenant, &query, key, FACET_SAMPLE)
        .await?;
    let calls: u64 = counted.iter().map(|(_, n)| n).sum();
    let missing = counted.iter().filter(|(v, _)| v.is_none()).map(|(_, n)| n).sum();
    let mut values: Vec<FacetValue> = counted
        .into_iter()
        .filter_map(|(v, count)| v.map(|value| FacetValue { value, count }))
        .collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(top as usize);
    Ok(Facets {
        key: key.to_string(),
        values,
        missing,
        calls,
        exact: calls < u64::from(FACET_SAMPLE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query read from `query` (`name=value&...`, no escapes), shown as
    /// its fields, or the error and the field it names.
    fn check(query: &str, expected: &str) {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let actual = match parse_call_query(&pairs) {
            Ok(q) => format!(
                "limit={} offset={} from={:?} to={:?} metadata={:?}",
                q.limit,
                q.offset,
                q.from_ms,
                q.to_ms,
                q.filters
                    .iter()
                    .map(|f| match f {
                        KeyFilter::Equals { key, values } => format!("{key}={}", values.join("|")),
                        KeyFilter::Prefix { key, prefix } => format!("{key}^={prefix}"),
                        KeyFilter::Missing { key, missing } => format!("{key}?={missing}"),
                        KeyFilter::Enrichment { table, statuses } =>
                            format!("@{table}={}", statuses.join("|")),
                    })
                    .collect::<Vec<_>>()
            ),
            Err(e) => format!("{}: {e}", e.field()),
        };
        assert_eq!(actual, expected, "{query}");
    }

    #[test]
    fn call_queries() {
        check("", "limit=50 offset=0 from=None to=None metadata=[]");
        check(
            "limit=2&offset=1&metadata.team_name=diamond&metadata.agent_id=alice",
            r#"limit=2 offset=1 from=None to=None metadata=["team_name=diamond", "agent_id=alice"]"#,
        );
        check(
            "metadata.team_name=diamond&enrichment.crm=no_match&metadata.team_name=ruby&metadata.site.prefix=par\
             &metadata.email.missing=true&enrichment.crm=key_missing",
            r#"limit=50 offset=0 from=None to=None metadata=["team_name=diamond|ruby", "@crm=no_match|key_missing", "site^=par", "email?=true"]"#,
        );
        check(
            "metadata.email.missing=yes",
            "metadata.email.missing: metadata.email.missing must be true or false, not \"yes\"",
        );
        check(
            "enrichment.crm=found",
            "enrichment.crm: enrichment.crm must be one of matched, no_match, key_missing, ambiguous, no_version, not \"found\"",
        );
        check(
            "cursor=12_x",
            "cursor: cursor must be a previous page's next_cursor, not \"12_x\"",
        );
        check("page=3", "limit=50 offset=100 from=None to=None metadata=[]");
        check(
            "page=2&limit=10",
            "limit=10 offset=10 from=None to=None metadata=[]",
        );
        check(
            "page=18446744073709551615",
            "limit=50 offset=18446744073709551615 from=None to=None metadata=[]",
        );
        check(
            "timestamp_from=2026-01-30T12:00:01Z&timestamp_to=2026-01-30T13:00:00%2B01:00",
            "timestamp_to: timestamp_to must be RFC 3339, e.g. 2026-01-30T12:34:56Z, not \"2026-01-30T13:00:00%2B01:00\"",
        );
        check(
            "timestamp_from=2026-01-30T12:00:01Z&timestamp_to=2026-01-30T13:00:00+01:00",
            "limit=50 offset=0 from=Some(1769774401000) to=Some(1769774400000) metadata=[]",
        );
        // A form's datetime-local values, read as UTC, on `from` and `to` only.
        check(
            "from=2026-01-30T11:30&to=2026-01-30T12:10:05",
            "limit=50 offset=0 from=Some(1769772600000) to=Some(1769775005000) metadata=[]",
        );
        check(
            "timestamp_from=2026-01-30T11:30",
            "timestamp_from: timestamp_from must be RFC 3339, e.g. 2026-01-30T12:34:56Z, not \"2026-01-30T11:30\"",
        );
        check(
            "limit=-1",
            "limit: limit must be an integer from 1 to 1000, not \"-1\"",
        );
        check(
            "offset=9223372036854775808",
            "offset: offset must be an integer from 0 to 9223372036854775807, not \"9223372036854775808\"",
        );
        check("page=0", "page: page must be an integer from 1, not \"0\"");
        check("page=2&offset=3", "page: give offset or page, not both");
        check(
            "colour=red",
            "colour: unknown parameter \"colour\"; expected limit, offset, page, cursor, timestamp_from, timestamp_to, from, to, \
             metadata.KEY, metadata.KEY.prefix, metadata.KEY.missing or enrichment.TABLE",
        );
        check(
            "metadata.=x",
            "metadata.: unknown parameter \"metadata.\"; expected limit, offset, page, cursor, timestamp_from, timestamp_to, from, to, \
             metadata.KEY, metadata.KEY.prefix, metadata.KEY.missing or enrichment.TABLE",
        );
    }
}
