//! `/api/v1/tables`: table settings and CSV uploads.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use callmeta_core::csv::{AsOf, BadRowPolicy, DuplicatePolicy, HeaderChange, TableOptions};
use callmeta_core::domain::ColumnName;
use callmeta_core::matching::MatchMode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorItem};
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::AppState;
use callmeta_app::store::VersionRecord;
use callmeta_app::usecases::AppError;
use callmeta_app::usecases::calls::format_timestamp;
use callmeta_app::usecases::tables::{self as uc, Channel, TableDetails, UploadOutcome};
use callmeta_app::usecases::uploads;

/// A table's settings. Only `key` (or `keys`) is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableConfig {
    /// The key column (the call's metadata key of the same name).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::column_name, required = false)]
    pub key: Option<ColumnName>,
    /// Compound or fallback keys, tried in order; each entry is one column
    /// or several that must all match (`[["site","extension"],["agent_email"]]`).
    /// With `keys`, `key` may be left out (it is then the first column of
    /// the first entry).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::key_entries, required = false)]
    pub keys: Option<Vec<Vec<ColumnName>>>,
    #[serde(rename = "match", default)]
    #[schema(schema_with = crate::openapi::match_mode, required = false)]
    pub match_mode: MatchMode,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::region, required = false)]
    pub region: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::duplicates, required = false)]
    pub duplicates: DuplicatePolicy,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::bad_rows, required = false)]
    pub bad_rows: BadRowPolicy,
    /// The column of each row's start of validity (an ISO 8601 date or
    /// date-time, inclusive; empty: since always). With it or `valid_to`, a
    /// key may have several rows: a call gets the one valid at its timestamp.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::column_name, required = false)]
    pub valid_from: Option<ColumnName>,
    /// The column of each row's end of validity (exclusive; empty: for ever).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::column_name, required = false)]
    pub valid_to: Option<ColumnName>,
    /// Activation guard: an upload with more than this percentage of rows
    /// fewer than the active version is recorded, not activated (422).
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = 0, maximum = 100, required = false)]
    pub max_row_drop_pct: Option<f64>,
    /// Activation guard: `reject` records, without activating, an upload
    /// that lacks a column of the active version; `accept` (default).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::header_change, required = false)]
    pub on_header_change: HeaderChange,
    /// Which version enriches a call: `processing` (default), the one
    /// active when the call is processed; `call_time`, the one that was
    /// active at the call's timestamp (also on back-fill and SIPREC
    /// updates).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::as_of, required = false)]
    pub as_of: AsOf,
}

/// An optional setting that, when given, is not null (the document says
/// so: absent is the way to leave it out).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionView {
    pub id: String,
    pub table: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
    /// `http`, `cli`, `ftp`, `sftp` or `settings`.
    pub channel: String,
    pub filename: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    #[schema(schema_with = crate::openapi::version_state)]
    pub state: &'static str,
    /// The ingest report: encoding, delimiter, columns, counts, problems, duplicates.
    #[schema(value_type = Object)]
    pub report: callmeta_core::csv::Report,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TableView {
    pub name: String,
    pub key: String,
    /// Compound or fallback keys, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::key_entries, required = false)]
    pub keys: Option<Vec<Vec<String>>>,
    #[serde(rename = "match")]
    #[schema(schema_with = crate::openapi::match_mode)]
    pub match_mode: MatchMode,
    pub region: Option<String>,
    #[schema(schema_with = crate::openapi::duplicates)]
    pub duplicates: DuplicatePolicy,
    #[schema(schema_with = crate::openapi::bad_rows)]
    pub bad_rows: BadRowPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub valid_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub max_row_drop_pct: Option<f64>,
    #[schema(schema_with = crate::openapi::header_change)]
    pub on_header_change: HeaderChange,
    #[schema(schema_with = crate::openapi::as_of)]
    pub as_of: AsOf,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub updated: String,
    pub active_version: Option<VersionView>,
    /// Newest first, rejected uploads included.
    pub versions: Vec<VersionView>,
    /// The latest times a version became the active one (an upload, a
    /// settings change, an activation), newest first.
    pub activations: Vec<ActivationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActivationView {
    pub version: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub activated: String,
    /// How: `http`, `cli`, `ftp`, `sftp`, `web` or `settings`.
    pub channel: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UploadResponse {
    pub version: VersionView,
    /// The version became the active one.
    pub activated: bool,
    /// The content equals the active version (same sha256): no new version.
    pub unchanged: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RejectedUpload {
    pub errors: Vec<ErrorItem>,
    /// The rejected version, recorded with its report; absent when the
    /// request itself was invalid and nothing was ingested.
    #[schema(required = false)]
    pub version: VersionView,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TableList {
    pub count: usize,
    pub data: Vec<TableView>,
}

pub(crate) fn version_view(v: &VersionRecord, active: Option<&str>) -> VersionView {
    let state = if !v.accepted {
        "rejected"
    } else if active == Some(v.id.as_str()) {
        "active"
    } else {
        "inactive"
    };
    VersionView {
        id: v.id.clone(),
        table: v.table.to_string(),
        created: format_timestamp(v.created_ms),
        channel: v.channel.clone(),
        filename: v.filename.clone(),
        sha256: v.sha256.clone(),
        bytes: v.bytes,
        rows: v.rows,
        state,
        report: v.report.clone(),
    }
}

fn table_view(details: &TableDetails) -> TableView {
    let t = &details.table;
    let active = t.active_version.as_deref();
    TableView {
        name: t.name.to_string(),
        key: t.options.key.to_string(),
        keys: t.options.keys.as_ref().map(|keys| {
            keys.iter()
                .map(|entry| entry.iter().map(ToString::to_string).collect())
                .collect()
        }),
        match_mode: t.options.match_mode,
        region: t.options.region.clone(),
        duplicates: t.options.duplicates,
        bad_rows: t.options.bad_rows,
        valid_from: t.options.valid_from.as_ref().map(ToString::to_string),
        valid_to: t.options.valid_to.as_ref().map(ToString::to_string),
        max_row_drop_pct: t.options.max_row_drop_pct,
        on_header_change: t.options.on_header_change,
        as_of: t.options.as_of,
        created: format_timestamp(t.created_ms),
        updated: format_timestamp(t.updated_ms),
        active_version: details
            .versions
            .iter()
            .find(|v| Some(v.id.as_str()) == active)
            .map(|v| version_view(v, active)),
        versions: details.versions.iter().map(|v| version_view(v, active)).collect(),
        activations: details
            .activations
            .iter()
            .map(|a| ActivationView {
                version: a.version.clone(),
                activated: format_timestamp(a.activated_ms),
                channel: a.channel.clone(),
            })
            .collect(),
    }
}

/// Makes an accepted version the active one again (a rollback).
#[utoipa::path(post, path = "/api/v1/tables/{name}/versions/{id}/activate", tag = "tables",
    params(("name" = String, Path, description = "Table name"),
           ("id" = String, Path, description = "Version id")),
    responses(
        (status = 200, description = "The table, the version active", body = TableView),
        (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such table or version", body = ErrorBody),
        (status = 409, description = "The version was rejected: it cannot be activated", body = ErrorBody),
        (status = 503, description = "The ingest memory budget is taken; try again after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn activate_version(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Json<TableView>, ApiError> {
    let name = uc::parse_table_name(&name).map_err(|_| AppError::NotFound(format!("table {name:?}")))?;
    let details =
        uc::activate_version(&state.services, &tenant.id, &name, &id, Channel::Http, &actor).await?;
    Ok(Json(table_view(&details)))
}

fn upload_response(outcome: &UploadOutcome) -> Response {
    let version = version_view(
        &outcome.version,
        outcome.activated.then_some(outcome.version.id.as_str()),
    );
    let version = if outcome.unchanged {
        VersionView {
            state: "active",
            ..version
        }
    } else {
        version
    };
    if outcome.version.accepted
        && !outcome.activated
        && !outcome.unchanged
        && let Some(why) = &outcome.version.report.not_activated
    {
        let body = RejectedUpload {
            errors: vec![ErrorItem {
                id: "not_activated",
                title: "Upload recorded, not activated",
                detail: why.clone(),
                field: None,
            }],
            version,
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    if !outcome.version.accepted {
        let detail = outcome
            .version
            .report
            .error
            .clone()
            .unwrap_or_else(|| "the upload was rejected".into());
        let body = RejectedUpload {
            errors: vec![ErrorItem {
                id: "rejected",
                title: "Upload rejected",
                detail,
                field: None,
            }],
            version,
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    let status = if outcome.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        Json(UploadResponse {
            version,
            activated: outcome.activated,
            unchanged: outcome.unchanged,
        }),
    )
        .into_response()
}

/// Creates a table or changes its settings.
#[utoipa::path(put, path = "/api/v1/tables/{name}", tag = "tables",
    params(("name" = String, Path, description = "Table name, e.g. `crm`: 1 to 63 of a-z, 0-9, `-` and `_`, starting with a letter or a digit", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    request_body = TableConfig,
    responses(
        (status = 200, description = "The table", body = TableView, links(
            ("PutTableData" = (operation_id = "put_table_data", parameters(("name" = "$response.body#/name")))),
            ("GetTable" = (operation_id = "get_table", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
        (status = 422, description = "Invalid settings (`errors` only), or the active data does not ingest under them (with the rejected `version`)", body = RejectedUpload),
    ),
    security(("token" = [])))]
pub(crate) async fn put_table(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(config): ApiJson<TableConfig>,
) -> Result<Response, ApiError> {
    let name = uc::parse_table_name(&name)?;
    let (key, keys) = TableOptions::reconcile_keys(config.key, config.keys)
        .map_err(|e| AppError::invalid(e.field(), e.to_string()))?;
    let options = TableOptions {
        key,
        keys,
        match_mode: config.match_mode,
        region: config.region,
        duplicates: config.duplicates,
        bad_rows: config.bad_rows,
        valid_from: config.valid_from,
        valid_to: config.valid_to,
        max_row_drop_pct: config.max_row_drop_pct,
        on_header_change: config.on_header_change,
        as_of: config.as_of,
    };
    let (_, outcome) = uc::configure_table(&state.services, &tenant.id, &name, options, &actor).await?;
    if let Some(outcome) = outcome.filter(|o| !o.version.accepted) {
        return Ok(upload_response(&outcome));
    }
    let details = uc::table_details(&state.services, &tenant.id, &name).await?;
    Ok(Json(table_view(&details)).into_response())
}

/// A table's settings, active version and version history.
#[utoipa::path(get, path = "/api/v1/tables/{name}", tag = "tables",
    params(("name" = String, Path, description = "Table name")),
    responses((status = 200, body = TableView), (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_table(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TableView>, ApiError> {
    let name = uc::parse_table_name(&name).map_err(|_| AppError::NotFound(format!("table {name:?}")))?;
    let details = uc::table_details(&state.services, &tenant.id, &name).await?;
    Ok(Json(table_view(&details)))
}

/// Deletes a table: its settings, its versions and their stored originals,
/// its activation history, and its index from every node's memory. Calls
/// keep their results, which name the table and version they came from.
#[utoipa::path(delete, path = "/api/v1/tables/{name}", tag = "tables",
    params(("name" = String, Path, description = "Table name")),
    responses((status = 204, description = "Deleted"),
              (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, description = "No such table", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_table(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = uc::parse_table_name(&name).map_err(|_| AppError::NotFound(format!("table {name:?}")))?;
    callmeta_app::usecases::erasure::delete_table(&state.services, &tenant.id, &name, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every table of the tenant.
#[utoipa::path(get, path = "/api/v1/tables", tag = "tables",
    responses((status = 200, body = TableList), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_tables(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<TableList>, ApiError> {
    let tables = uc::list_tables(&state.services, &tenant.id).await?;
    let data: Vec<TableView> = tables.iter().map(table_view).collect();
    Ok(Json(TableList {
        count: data.len(),
        data,
    }))
}

/// Uploads a CSV export as a new version of the table. The version is active
/// when the response returns (201), or rejected with its report (422).
#[utoipa::path(put, path = "/api/v1/tables/{name}/data", tag = "tables",
    params(("name" = String, Path, description = "Table name"),
           ("X-Filename" = Option<String>, Header, description = "Original file name, kept with the version"),
           ("force" = Option<bool>, Query, description = "Activate the upload even if the table's activation guards (`max_row_drop_pct`, `on_header_change`) would hold it back"),
           ("mode" = Option<String>, Query, description = "`full` (default) or `delta`: rows with an `_op` column (`upsert`, `delete`) applied to the active version, making a new full version", pattern = "^(full|delta)$"),
           ("X-Upload-Mode" = Option<String>, Header, description = "`full` or `delta`, as the `mode` parameter")),
    request_body(content = String, content_type = "text/csv", description = "The CSV bytes, any supported encoding"),
    responses(
        (status = 201, description = "A new active version", body = UploadResponse),
        (status = 200, description = "Same content as the active version", body = UploadResponse),
        (status = 400, description = "The upload was interrupted", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such table: create it first with `PUT /api/v1/tables/{name}`", body = ErrorBody),
        (status = 413, description = "Over `[limits] max_file_bytes`; nothing is stored", body = ErrorBody),
        (status = 422, description = "Rejected, with the report; or accepted and recorded but held back by an activation guard (`errors[0].id` `not_activated`), or an invalid `force`", body = RejectedUpload),
        (status = 503, description = "The ingest memory budget is taken; try again after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn put_table_data(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = uc::parse_table_name(&name).map_err(|_| AppError::NotFound(format!("table {name:?}")))?;
    let mut guards = uc::Guards::Apply;
    let header_mode = headers
        .get("x-upload-mode")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let mut delta = false;
    for (param, value) in query
        .iter()
        .map(|(p, v)| (p.as_str(), v.clone()))
        .chain(header_mode.map(|v| ("mode", v)))
    {
        match param {
            "force" => {
                guards = match value.as_str() {
                    "true" | "1" => uc::Guards::Override,
                    "false" | "0" => uc::Guards::Apply,
                    _ => {
                        return Err(AppError::invalid(
                            "force",
                            format!("force must be true or false, not {value:?}"),
                        )
                        .into());
                    }
                };
            }
            "mode" => {
                delta = match value.trim().to_ascii_lowercase().as_str() {
                    "delta" => true,
                    "full" => delta,
                    _ => {
                        return Err(AppError::invalid(
                            "mode",
                            format!("mode must be full or delta, not {value:?}"),
                        )
                        .into());
                    }
                };
            }
            _ => {}
        }
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        uploads::check_declared_size(&state.services, n)?;
    }
    // Make sure the table exists before reading a large body.
    uc::require_table(&state.services, &tenant.id, &name).await?;
    let mut incoming = uploads::Incoming::start(&state.services).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the upload was interrupted: {e}")))?;
        incoming.write(&chunk).await?;
    }
    let upload = incoming.finish().await?;
    let filename = headers
        .get("x-filename")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let outcome = if delta {
        uc::upload_delta(
            &state.services,
            &tenant.id,
            &name,
            upload,
            Channel::Http,
            filename,
            guards,
            &actor,
        )
        .await?
    } else {
        uc::upload_reference_table_with(
            &state.services,
            &tenant.id,
            &name,
            upload,
            Channel::Http,
            filename,
            None,
            guards,
            &actor,
        )
        .await?
    };
    Ok(upload_response(&outcome))
}

use super::error::ErrorBody;
