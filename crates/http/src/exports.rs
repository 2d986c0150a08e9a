//! `/api/v1/exports/daily`: the tenant's daily export push (a file of the
//! previous day's calls to its SFTP server or S3 bucket), its runs, and a
//! day pushed on request. Secrets are write-only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Auth};
use crate::AppState;
use callmeta_app::store::ExportRun;
use callmeta_app::usecases::calls::format_timestamp;
use callmeta_app::usecases::export_push::{
    self as uc, Destination, PushRequest, PushStatus, S3Destination, SftpDestination, format_offset,
};

/// An SFTP server. Give a `password` or a `private_key` (unencrypted,
/// OpenSSH or PEM form); both are write-only, and kept when left out if the
/// host, port and username are the same. Pin the server's host key
/// (`host_key`), or accept any with `accept_any_host_key: true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SftpBody {
    #[schema(min_length = 1, max_length = 1024)]
    pub host: String,
    /// 22 when left out.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535, required = false)]
    pub port: Option<u16>,
    #[schema(min_length = 1, max_length = 1024)]
    pub username: String,
    /// Write-only.
    #[serde(default)]
    #[schema(write_only, min_length = 1, max_length = 16384, required = false)]
    pub password: Option<String>,
    /// Write-only.
    #[serde(default)]
    #[schema(write_only, min_length = 1, max_length = 16384, required = false)]
    pub private_key: Option<String>,
    /// Where the file is written: relative to the login directory unless it
    /// starts with `/` (`.` when left out).
    #[serde(default)]
    #[schema(max_length = 1024, required = false)]
    pub directory: Option<String>,
    /// The server's host key fingerprint, as `ssh-keyscan -p PORT HOST |
    /// ssh-keygen -lf -` prints it (`SHA256:` and 43 base64 characters).
    #[serde(default)]
    #[schema(pattern = r"^SHA256:[A-Za-z0-9+/]{43}=?$", required = false)]
    pub host_key: Option<String>,
    /// Accept whatever host key the server shows (not recommended).
    #[serde(default)]
    #[schema(required = false)]
    pub accept_any_host_key: bool,
}

/// An S3 bucket, on AWS or on an S3-compatible server (`endpoint`). The
/// secret is write-only, and kept when left out if the bucket and key id
/// are the same.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct S3Body {
    #[schema(min_length = 1, max_length = 1024)]
    pub bucket: String,
    /// Put before the file name (a `/` is added if it lacks one).
    #[serde(default)]
    #[schema(max_length = 1024, required = false)]
    pub prefix: Option<String>,
    /// `us-east-1` when left out.
    #[serde(default)]
    #[schema(max_length = 64, required = false)]
    pub region: Option<String>,
    /// An S3-compatible server's URL (http or https).
    #[serde(default)]
    #[schema(max_length = 2048, required = false)]
    pub endpoint: Option<String>,
    #[schema(min_length = 1, max_length = 1024)]
    pub access_key_id: String,
    /// Write-only.
    #[serde(default)]
    #[schema(write_only, min_length = 1, max_length = 16384, required = false)]
    pub secret_access_key: Option<String>,
}

/// Where the file goes: exactly one of `sftp` and `s3`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DestinationBody {
    Sftp(SftpBody),
    S3(S3Body),
}

/// The daily export push. A `PUT` replaces it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutDailyExport {
    pub destination: DestinationBody,
    /// The file's format, as `GET /api/v1/calls/export` writes it (`csv`
    /// when left out).
    #[serde(default)]
    #[schema(required = false, pattern = "^(csv|ndjson)$")]
    pub format: Option<String>,
    /// The tenant's days are in this fixed offset from UTC: `+HH:MM`,
    /// `-HH:MM` or `Z` (`Z` when left out).
    #[serde(default)]
    #[schema(required = false, pattern = r"^(Z|[+-](0\d|1[0-4]):[0-5]\d)$")]
    pub utc_offset: Option<String>,
    /// The hour of the day (in that offset) the previous day's file is
    /// pushed (1 when left out).
    #[serde(default)]
    #[schema(required = false, minimum = 0, maximum = 23)]
    pub hour: Option<i64>,
}

/// An SFTP destination as shown (never its password or key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SftpView {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// `password` or `private_key`.
    pub auth: String,
    pub directory: String,
    pub host_key: Option<String>,
    pub accept_any_host_key: bool,
}

/// An S3 destination as shown (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct S3View {
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DestinationView {
    Sftp(SftpView),
    S3(S3View),
}

/// The daily export push, without its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DailyExportView {
    pub destination: DestinationView,
    /// `csv` or `ndjson`.
    pub format: String,
    pub utc_offset: String,
    pub hour: u8,
    #[schema(schema_with = crate::openapi::date_time)]
    pub updated: String,
    /// When the next scheduled push is recorded; null while a node does it.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub next_run: Option<String>,
}

/// One day's push: what its latest attempt gave.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExportRunView {
    /// `YYYY-MM-DD`, in the push's UTC offset.
    pub day: String,
    pub file_name: String,
    pub destination: String,
    /// `pending`, `running`, `retrying`, `delivered` or `failed`.
    pub status: String,
    pub calls: i64,
    pub bytes: i64,
    pub attempts: i64,
    /// Why the latest attempt failed, if it did.
    pub error: Option<String>,
    #[schema(schema_with = crate::openapi::date_time)]
    pub requested: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub updated: String,
    /// When it is tried again, while `pending` or `retrying`.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub next_attempt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExportRunList {
    /// The latest days first (at most 100).
    pub data: Vec<ExportRunView>,
}

/// `?day=YYYY-MM-DD`.
#[derive(Debug, Deserialize)]
pub(crate) struct RunQuery {
    pub day: Option<String>,
}

fn view(s: PushStatus) -> DailyExportView {
    let destination = match s.settings.destination {
        Destination::Sftp(d) => DestinationView::Sftp(SftpView {
            host: d.host,
            port: d.port,
            username: d.username,
            auth: s.sftp_auth.unwrap_or("password").to_string(),
            directory: d.directory,
            host_key: d.host_key,
            accept_any_host_key: d.accept_any_host_key,
        }),
        Destination::S3(d) => DestinationView::S3(S3View {
            bucket: d.bucket,
            prefix: d.prefix,
            region: d.region,
            endpoint: d.endpoint,
            access_key_id: d.access_key_id,
        }),
    };
    DailyExportView {
        destination,
        format: s.settings.format.as_str().to_string(),
        utc_offset: format_offset(s.settings.utc_offset_minutes),
        hour: s.settings.hour,
        updated: format_timestamp(s.updated_ms),
        next_run: s.next_run_ms.map(format_timestamp),
    }
}

fn run_view(r: ExportRun) -> ExportRunView {
    ExportRunView {
        day: r.day,
        file_name: r.file_name,
        destination: r.destination,
        status: r.status,
        calls: r.calls,
        bytes: r.bytes,
        attempts: r.attempts,
        error: r.error,
        requested: format_timestamp(r.requested_ms),
        updated: format_timestamp(r.updated_ms),
        next_attempt: r.next_attempt_ms.map(format_timestamp),
    }
}

/// The tenant's daily export push (without secrets) and its next run.
#[utoipa::path(get, path = "/api/v1/exports/daily", tag = "exports",
    responses((status = 200, body = DailyExportView),
              (status = 401, body = ErrorBody),
              (status = 404, description = "No daily export push is set", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_daily(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<DailyExportView>, ApiError> {
    Ok(Json(view(uc::get_settings(&state.services, &tenant.id).await?)))
}

/// Sets or replaces the daily export push: every day at `hour` (in
/// `utc_offset`), the previous day's calls, with the columns of
/// `GET /api/v1/calls/export`, are written to `calls-YYYY-MM-DD.csv` (or
/// `.ndjson`) at the destination, retried with backoff for 24 hours.
/// Loopback, private and link-local destinations are refused unless the
/// operator allows them.
#[utoipa::path(put, path = "/api/v1/exports/daily", tag = "exports",
    request_body = PutDailyExport,
    responses((status = 200, body = DailyExportView),
              (status = 400, description = "The body is not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
              (status = 422, description = "A field is invalid (refused destination, host key neither pinned nor accepted, missing secret, unknown field); `field` names it", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn put_daily(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiJson(body): ApiJson<PutDailyExport>,
) -> Result<Json<DailyExportView>, ApiError> {
    let destination = match body.destination {
        DestinationBody::Sftp(d) => Destination::Sftp(SftpDestination {
            host: d.host,
            port: d.port.unwrap_or(22),
            username: d.username,
            password: d.password,
            private_key: d.private_key,
            directory: d.directory.unwrap_or_default(),
            host_key: d.host_key,
            accept_any_host_key: d.accept_any_host_key,
        }),
        DestinationBody::S3(d) => Destination::S3(S3Destination {
            bucket: d.bucket,
            prefix: d.prefix.unwrap_or_default(),
            region: d.region.unwrap_or_default(),
            endpoint: d.endpoint,
            access_key_id: d.access_key_id,
            secret_access_key: d.secret_access_key,
        }),
    };
    let request = PushRequest {
        destination,
        format: body.format,
        utc_offset: body.utc_offset,
        hour: body.hour,
    };
    Ok(Json(view(
        uc::put_settings(&state.services, &tenant.id, request, &actor).await?,
    )))
}

/// Removes the daily export push, its schedule and its pending pushes; the
/// runs stay listed.
#[utoipa::path(delete, path = "/api/v1/exports/daily", tag = "exports",
    responses((status = 204, description = "Removed"),
              (status = 401, body = ErrorBody),
              (status = 404, description = "No daily export push is set", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_daily(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
) -> Result<StatusCode, ApiError> {
    uc::delete_settings(&state.services, &tenant.id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The pushes of each day, latest day first: file, calls, bytes, status,
/// attempts, the latest error.
#[utoipa::path(get, path = "/api/v1/exports/daily/runs", tag = "exports",
    responses((status = 200, body = ExportRunList), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<ExportRunList>, ApiError> {
    let runs = uc::runs(&state.services, &tenant.id).await?;
    Ok(Json(ExportRunList {
        data: runs.into_iter().map(run_view).collect(),
    }))
}

/// Pushes one day now (by default the previous day), again if it was
/// pushed before: the file is overwritten. Answers at once; the run shows
/// how it goes.
#[utoipa::path(post, path = "/api/v1/exports/daily/run", tag = "exports",
    params(("day" = Option<String>, Query, format = Date,
        description = "The day to push (`YYYY-MM-DD`, over in the push's UTC offset); the previous day when left out")),
    responses((status = 202, description = "The push is recorded and due now", body = ExportRunView),
              (status = 400, description = "The query does not decode", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, description = "No daily export push is set", body = ErrorBody),
              (status = 409, description = "That day is being pushed right now", body = ErrorBody),
              (status = 422, description = "The day is not a date, or is not over yet", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn run_now(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> Result<Response, ApiError> {
    let run = uc::run_day(&state.services, &tenant.id, query.day.as_deref(), &actor).await?;
    Ok((StatusCode::ACCEPTED, Json(run_view(run))).into_response())
}
