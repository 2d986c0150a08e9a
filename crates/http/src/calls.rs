//! `/api/v1/calls`: create, read and list calls.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callmeta_core::enrich::{EnrichmentResult, EnrichmentStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::AppState;
use callmeta_app::store::{CallRecord, CallSource};
use callmeta_app::usecases::backfill::{self as backfills, Backfill};
use callmeta_app::usecases::calls::{self as uc, NewCall, format_timestamp, parse_timestamp};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCall {
    /// The call's own metadata: string keys to string values (numbers and
    /// booleans are accepted and kept as their text, numbers exactly as
    /// written).
    #[schema(schema_with = crate::openapi::call_metadata_in)]
    pub metadata: BTreeMap<String, Box<serde_json::value::RawValue>>,
    /// When the call happened (RFC 3339); defaults to `metadata.datetime`, then to now.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_date_time, required = false)]
    pub timestamp: Option<String>,
    /// Your id for the call (1 to 256 characters); a repeated
    /// `external_id` returns the existing call.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_external_id, required = false)]
    pub external_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CollisionView {
    pub key: String,
    pub kept_value: String,
    pub dropped_value: String,
    /// `null` when the call's own value was kept, else the table whose value was kept.
    pub kept_from: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnrichmentView {
    #[schema(schema_with = crate::openapi::enrichment_status)]
    pub status: EnrichmentStatus,
    pub table: String,
    pub version: Option<String>,
    /// The key column (= the call's metadata key looked up).
    pub key: String,
    pub key_value: Option<String>,
    pub normalized_key: Option<String>,
    pub added: BTreeMap<String, String>,
    pub collisions: Vec<CollisionView>,
    #[schema(schema_with = crate::openapi::date_time)]
    pub at: String,
    /// The columns of the key that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub matched_by: Option<Vec<String>>,
    /// With compound or fallback keys: each key tried, in order, and its outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>, required = false)]
    pub keys_tried: Vec<callmeta_core::enrich::KeyAttempt>,
    /// With `valid_from`/`valid_to`: the validity of the row used
    /// (`{"valid_from", "valid_to"}`, as its cells say; empty: open).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, required = false)]
    pub interval: Option<callmeta_core::enrich::ValidInterval>,
    /// With `"as_of": "call_time"`: which version was chosen for the
    /// call's timestamp and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub as_of: Option<AsOfView>,
}

/// How a `call_time` table chose its version for a call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AsOfView {
    /// The call's timestamp the version was chosen for.
    #[schema(schema_with = crate::openapi::date_time)]
    pub call_time: String,
    #[schema(schema_with = crate::openapi::as_of_reason)]
    pub reason: &'static str,
    /// When the chosen version (`version`) became the active one; absent
    /// when no version was active at the call's timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::date_time, required = false)]
    pub activated: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallView {
    pub unique_id: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub timestamp: String,
    #[schema(schema_with = crate::openapi::call_source)]
    pub source: &'static str,
    pub external_id: Option<String>,
    /// The call's own keys plus the added ones (own values win on a collision).
    pub metadata: BTreeMap<String, String>,
    /// The call's own keys only.
    pub own_metadata: BTreeMap<String, String>,
    /// One result per reference table.
    pub enrichment: Vec<EnrichmentView>,
    #[schema(schema_with = crate::openapi::audio_state)]
    pub audio_state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallList {
    /// How many calls match the filters (all pages), counted up to 10,000.
    pub count: u64,
    /// `false` when more calls match than `count` says.
    pub count_exact: bool,
    /// The `cursor` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub data: Vec<CallView>,
}

fn enrichment_view(r: &EnrichmentResult) -> EnrichmentView {
    EnrichmentView {
        status: r.status,
        table: r.table.clone(),
        version: r.version.clone(),
        key: r.key.clone(),
        key_value: r.key_value.clone(),
        normalized_key: r.normalized_key.clone(),
        added: r.added.to_metadata(),
        collisions: r
            .collisions
            .iter()
            .map(|c| CollisionView {
                key: c.key.clone(),
                kept_value: c.kept_value.clone(),
                dropped_value: c.dropped_value.clone(),
                kept_from: c.kept_from.clone(),
            })
            .collect(),
        at: format_timestamp(r.at_ms),
        matched_by: r.matched_by.clone(),
        keys_tried: r.keys_tried.clone(),
        interval: r.interval.clone(),
        as_of: r.as_of.as_ref().map(|a| AsOfView {
            call_time: format_timestamp(a.call_ms),
            reason: a.reason.as_str(),
            activated: a.activated_ms.map(format_timestamp),
        }),
    }
}

pub(crate) fn call_view(c: &CallRecord) -> CallView {
    CallView {
        unique_id: c.unique_id.clone(),
        timestamp: format_timestamp(c.timestamp_ms),
        source: c.source.as_str(),
        external_id: c.external_id.clone(),
        metadata: callmeta_core::enrich::merged_metadata(&c.metadata, &c.enrichment),
        own_metadata: c.metadata.clone(),
        enrichment: c.enrichment.iter().map(enrichment_view).collect(),
        audio_state: uc::audio_state(c),
    }
}

/// Creates a call, stores it durably and enriches it from every table.
#[utoipa::path(post, path = "/api/v1/calls", tag = "calls", request_body = CreateCall,
    responses(
        (status = 201, description = "The call, enriched", body = CallView, links(
            ("GetCall" = (operation_id = "get_call", parameters(("unique_id" = "$response.body#/unique_id")))),
            ("GetCallAudio" = (operation_id = "get_call_audio", parameters(("unique_id" = "$response.body#/unique_id")))),
        )),
        (status = 200, description = "A call with this external_id already existed", body = CallView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn create_call(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiJson(body): ApiJson<CreateCall>,
) -> Result<Response, ApiError> {
    let metadata = callmeta_core::call_metadata::from_json(body.metadata)?;
    let timestamp_ms = match &body.timestamp {
        None => None,
        Some(t) => Some(parse_timestamp(t).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid value",
                format!("timestamp {t:?} is not an RFC 3339 date-time such as 2026-01-30T12:34:56Z"),
            )
            .with_field("timestamp")
        })?),
    };
    let (call, created) = uc::create_call(
        &state.services,
        &tenant.id,
        NewCall {
            metadata,
            timestamp_ms,
            external_id: body.external_id,
            source: CallSource::Api,
            audio: None,
        },
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(call_view(&call))).into_response())
}

/// One call with its own and added metadata and its enrichment results.
#[utoipa::path(get, path = "/api/v1/calls/{unique_id}", tag = "calls",
    params(("unique_id" = String, Path)),
    responses((status = 200, body = CallView), (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_call(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiPath(unique_id): ApiPath<String>,
) -> Result<Json<CallView>, ApiError> {
    let call = uc::get_call(&state.services, &tenant.id, &unique_id).await?;
    Ok(Json(call_view(&call)))
}

/// Erases a call: its metadata, enrichment and index entries, its audio and
/// any recording parts in blob storage, and its recording job.
#[utoipa::path(delete, path = "/api/v1/calls/{unique_id}", tag = "calls",
    params(("unique_id" = String, Path)),
    responses((status = 204, description = "Erased"),
              (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, description = "No such call", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_call(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(unique_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    callmeta_app::usecases::erasure::erase_call(&state.services, &tenant.id, &unique_id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The call's recording (WAV).
#[utoipa::path(get, path = "/api/v1/calls/{unique_id}/audio", tag = "calls",
    params(("unique_id" = String, Path)),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>), (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, description = "No such call, or it has no recording", body = ErrorBody),
              (status = 451, description = "The recording was removed by the tenant's retention policy (`audio_state: pruned`); `detail` says when", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_call_audio(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(unique_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (bytes, content_type) = uc::call_audio(&state.services, &tenant.id, &unique_id, &actor).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// Calls, newest first, filtered by time and by any metadata key (own or added).
#[utoipa::path(get, path = "/api/v1/calls", tag = "calls",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 50, at most 1000"),
        ("offset" = Option<u64>, Query, minimum = 0, maximum = 100000, description = "Calls to skip, at most 100000"),
        ("timestamp_from" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("timestamp_to" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,15}_-?[0-9]{1,18}$", description = "A previous page's `next_cursor`: the page after it"),
        ("metadata.KEY" = Option<String>, Query, description = "Only calls whose metadata KEY (own or added) equals this value; the key repeated: any of its values; at most 20 values per query, each up to 1024 bytes"),
        ("metadata.KEY.prefix" = Option<String>, Query, description = "Only calls whose metadata KEY starts with this value"),
        ("metadata.KEY.missing" = Option<bool>, Query, description = "`true`: only calls without the key; `false`: only calls with it"),
        ("enrichment.TABLE" = Option<StatusParam>, Query, description = "Only calls whose result for TABLE has this status (matched, no_match, key_missing, ambiguous, no_version); repeated: any of them"),
    ),
    responses((status = 200, body = CallList),
              (status = 400, description = "A parameter is invalid or unknown; `field` names it", body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_calls(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiQuery(params): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<CallList>, ApiError> {
    let query = uc::parse_call_query(&params)?;
    let page = uc::list_calls(&state.services, &tenant.id, &query).await?;
    Ok(Json(CallList {
        count: page.count,
        count_exact: page.count_exact,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        data: page.calls.iter().map(call_view).collect(),
    }))
}

/// A result's status, as a filter names it (`enrichment.TABLE=STATUS`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
pub(crate) enum StatusParam {
    Matched,
    NoMatch,
    KeyMissing,
    Ambiguous,
    NoVersion,
}

/// An export's format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
pub(crate) enum ExportFormatParam {
    Csv,
    Ndjson,
}

/// The parameters a facet or export request adds to a list query's, taken
/// out before the list query is read.
fn take_params(params: &mut Vec<(String, String)>, names: &[&str]) -> BTreeMap<String, String> {
    let mut taken = BTreeMap::new();
    params.retain(|(k, v)| {
        if names.contains(&k.as_str()) {
            taken.insert(k.clone(), v.clone());
            false
        } else {
            true
        }
    });
    taken
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FacetsView {
    /// The key counted.
    pub key: String,
    /// The most common values first.
    pub values: Vec<FacetValueView>,
    /// Calls counted that have no value for the key.
    pub missing: u64,
    /// Calls counted: every matching call when `exact`, else the newest 20,000.
    pub calls: u64,
    pub exact: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FacetValueView {
    pub value: String,
    pub count: u64,
}

/// The most common values of one key (own or added) among the calls the
/// filters match, counted over the newest 20,000 of them.
#[utoipa::path(get, path = "/api/v1/calls/facets", tag = "calls",
    params(
        ("key" = String, Query, min_length = 1, max_length = 256, description = "The metadata key to count (own or added)"),
        ("top" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Values to return, default 20"),
        ("timestamp_from" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("timestamp_to" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("metadata.KEY" = Option<String>, Query, description = "As for the call list"),
        ("metadata.KEY.prefix" = Option<String>, Query, description = "As for the call list"),
        ("metadata.KEY.missing" = Option<bool>, Query, description = "As for the call list"),
        ("enrichment.TABLE" = Option<StatusParam>, Query, description = "As for the call list"),
    ),
    responses((status = 200, body = FacetsView),
              (status = 400, description = "A parameter is invalid or unknown; `field` names it", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 422, description = "`key` or `top` is out of bounds", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn call_facets(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiQuery(mut params): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<FacetsView>, ApiError> {
    let taken = take_params(&mut params, &["key", "top"]);
    let key = taken.get("key").cloned().unwrap_or_default();
    let top = match taken.get("top") {
        None => uc::DEFAULT_FACET_TOP,
        Some(t) => t.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!("top must be an integer from 1 to 100, not {t:?}"))
                .with_field("top")
        })?,
    };
    let query = uc::parse_call_query(&params)?;
    let facets = uc::call_facets(&state.services, &tenant.id, &query, &key, top).await?;
    Ok(Json(FacetsView {
        key: facets.key,
        values: facets
            .values
            .into_iter()
            .map(|v| FacetValueView {
                value: v.value,
                count: v.count,
            })
            .collect(),
        missing: facets.missing,
        calls: facets.calls,
        exact: facets.exact,
    }))
}

/// Every call the filters match, newest first, streamed as CSV (own and
/// added keys as columns, a `TABLE.status` column per table; cells that
/// start with `= + - @` are prefixed with `'`) or NDJSON (one call per line,
/// as `GET /api/v1/calls/{unique_id}` shows it).
#[utoipa::path(get, path = "/api/v1/calls/export", tag = "calls",
    params(
        ("format" = Option<ExportFormatParam>, Query, description = "`csv` (default) or `ndjson`"),
        ("bom" = Option<bool>, Query, description = "CSV only: start with a UTF-8 byte order mark (for Excel)"),
        ("timestamp_from" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("timestamp_to" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("metadata.KEY" = Option<String>, Query, description = "As for the call list"),
        ("metadata.KEY.prefix" = Option<String>, Query, description = "As for the call list"),
        ("metadata.KEY.missing" = Option<bool>, Query, description = "As for the call list"),
        ("enrichment.TABLE" = Option<StatusParam>, Query, description = "As for the call list"),
    ),
    responses((status = 200, description = "The calls, streamed", content((String = "text/csv"), (String = "application/x-ndjson"))),
              (status = 400, description = "A parameter is invalid or unknown; `field` names it", body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn export_calls(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiQuery(mut params): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    use callmeta_app::usecases::export::{Export, ExportFormat};
    let taken = take_params(&mut params, &["format", "bom"]);
    let bom = match taken.get("bom").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(
                ApiError::bad_request(format!("bom must be true or false, not {other:?}")).with_field("bom"),
            );
        }
    };
    let format = match taken.get("format").map(String::as_str) {
        None | Some("csv") => ExportFormat::Csv { bom },
        Some("ndjson") => ExportFormat::Ndjson,
        Some(other) => {
            return Err(
                ApiError::bad_request(format!("format must be csv or ndjson, not {other:?}"))
                    .with_field("format"),
            );
        }
    };
    let query = uc::parse_call_query(&params)?;
    let export = Export::start(&state.services, &tenant.id, &query, format).await?;
    let body = export.into_stream(state.services.clone(), tenant.id.clone());
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.content_type().to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"calls.{}\"", format.extension()),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillRequest {
    /// Report what would change without changing anything (default `true`).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Only calls from this time on (RFC 3339).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_date_time, required = false)]
    pub timestamp_from: Option<String>,
    /// Only calls up to this time (RFC 3339).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_date_time, required = false)]
    pub timestamp_to: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::metadata_filter, required = false)]
    pub metadata: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackfillView {
    /// Its id, for `GET /api/v1/backfills/{id}`.
    pub id: String,
    #[schema(schema_with = crate::openapi::backfill_state)]
    pub state: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created_at: String,
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub finished_at: Option<String>,
    pub dry_run: bool,
    pub examined: u64,
    pub changed: u64,
    /// Per table, per status: how many examined calls had it before.
    #[schema(value_type = Object)]
    pub before: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per table, per status: how many have it after (or would, in a dry run).
    #[schema(value_type = Object)]
    pub after: BTreeMap<String, BTreeMap<String, u64>>,
}

impl From<Backfill> for BackfillView {
    fn from(b: Backfill) -> Self {
        Self {
            id: b.id,
            state: if b.finished_ms.is_some() {
                "finished"
            } else {
                "running"
            }
            .into(),
            created_at: format_timestamp(b.created_ms),
            finished_at: b.finished_ms.map(format_timestamp),
            dry_run: b.report.dry_run,
            examined: b.report.examined,
            changed: b.report.changed,
            before: b.report.before,
            after: b.report.after,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackfillList {
    pub data: Vec<BackfillView>,
}

/// Re-enriches past calls from the versions active now. A dry run (the
/// default) reports what would change; `"dry_run": false` changes it. The
/// answer comes when it has finished; it is recorded as it goes, and if the
/// node serving the request stops, another node finishes it
/// (`GET /api/v1/backfills` shows it). An `analyst` may preview (dry run);
/// changing calls takes an `admin`.
#[utoipa::path(post, path = "/api/v1/backfill", tag = "calls", request_body = BackfillRequest,
    responses((status = 200, body = BackfillView),
              (status = 400, description = "The body is not JSON, or a filter is invalid; `field` names it", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
              (status = 422, description = "A field has the wrong type", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn backfill(
    State(state): State<AppState>,
    Auth { tenant, actor, role }: Auth,
    ApiJson(body): ApiJson<BackfillRequest>,
) -> Result<Json<BackfillView>, ApiError> {
    // Any role that may preview may ask; changing calls takes more.
    if !body.dry_run {
        callmeta_app::usecases::users::require(
            role,
            callmeta_app::usecases::tokens::Action::ConfigureTables,
        )?;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(from) = body.timestamp_from {
        params.push(("timestamp_from".into(), from));
    }
    if let Some(to) = body.timestamp_to {
        params.push(("timestamp_to".into(), to));
    }
    for (k, v) in body.metadata {
        params.push((format!("metadata.{k}"), v));
    }
    let query = uc::parse_call_query(&params)?;
    let done = backfills::backfill(&state.services, &tenant.id, &query, body.dry_run, &actor).await?;
    Ok(Json(done.into()))
}

/// The latest back-fills (50), newest first, running or finished.
#[utoipa::path(get, path = "/api/v1/backfills", tag = "calls",
    responses((status = 200, body = BackfillList), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_backfills(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<BackfillList>, ApiError> {
    let data = backfills::list(&state.services, &tenant.id, 50).await?;
    Ok(Json(BackfillList {
        data: data.into_iter().map(BackfillView::from).collect(),
    }))
}

/// One back-fill: its report so far, or final.
#[utoipa::path(get, path = "/api/v1/backfills/{id}", tag = "calls",
    params(("id" = String, Path, description = "The back-fill's id")),
    responses((status = 200, body = BackfillView), (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_backfill(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BackfillView>, ApiError> {
    Ok(Json(
        backfills::get(&state.services, &tenant.id, &id).await?.into(),
    ))
}
