//! `/api/v1/retention`: the tenant's retention policy, when it is next
//! applied and what its last run removed.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Auth};
use crate::AppState;
use callmeta_app::usecases::AppError;
use callmeta_app::usecases::calls::format_timestamp;
use callmeta_app::usecases::retention::{self as uc, PolicyRequest, PolicyStatus, RunReport};

/// A retention policy: how long what the tenant stores is kept. Each number
/// is optional: absent or null keeps forever. A `PUT` replaces the whole
/// policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionRequest {
    /// Days a call's audio is kept after the call's time; then the call
    /// keeps its metadata, says `audio_state: pruned`, and its audio URL
    /// answers 451.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::retention_days, required = false)]
    pub audio_days: Option<serde_json::Value>,
    /// Days a call is kept after its time; then it is erased (as by
    /// `DELETE /api/v1/calls/{unique_id}`).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::retention_days, required = false)]
    pub calls_days: Option<serde_json::Value>,
    /// Days a rejected upload's original is kept; its version and report stay.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::retention_days, required = false)]
    pub rejected_uploads_days: Option<serde_json::Value>,
    /// Versions kept per table, newest first; the active version is kept
    /// whatever its age or rank.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::retention_versions, required = false)]
    pub versions_kept: Option<serde_json::Value>,
}

/// What one application of the policy removed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetentionRunView {
    #[schema(schema_with = crate::openapi::date_time)]
    pub at: String,
    pub audio_pruned: u64,
    pub calls_erased: u64,
    pub rejected_originals_removed: u64,
    pub versions_removed: u64,
    /// Why the run stopped early (the rest waits for the next run), if it did.
    pub error: Option<String>,
}

/// The tenant's retention policy (every number null: none set, everything
/// kept), applied every hour.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetentionView {
    pub audio_days: Option<u32>,
    pub calls_days: Option<u32>,
    pub rejected_uploads_days: Option<u32>,
    pub versions_kept: Option<u32>,
    /// When the policy was last set; null if it never was.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub updated: Option<String>,
    /// When it is next applied; null without a policy or while it is applied.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub next_run: Option<String>,
    /// What its last application removed; null before the first.
    pub last_run: Option<RetentionRunView>,
}

fn run_view(r: RunReport) -> RetentionRunView {
    RetentionRunView {
        at: format_timestamp(r.at_ms),
        audio_pruned: r.audio_pruned,
        calls_erased: r.calls_erased,
        rejected_originals_removed: r.rejected_originals_removed,
        versions_removed: r.versions_removed,
        error: r.error,
    }
}

fn view(s: PolicyStatus) -> RetentionView {
    RetentionView {
        audio_days: s.policy.audio_days,
        calls_days: s.policy.calls_days,
        rejected_uploads_days: s.policy.rejected_uploads_days,
        versions_kept: s.policy.versions_kept,
        updated: s.set.then(|| format_timestamp(s.policy.updated_ms)),
        next_run: s.next_run_ms.map(format_timestamp),
        last_run: s.last_run.map(run_view),
    }
}

/// A number of the policy as sent: null, or an integer (`30` or `30.0`);
/// its bounds are the use case's.
fn number(field: &str, value: Option<serde_json::Value>) -> Result<Option<i64>, AppError> {
    let refuse = |shown: &str| {
        AppError::invalid(
            field,
            format!("{field} must be a whole number, or null to keep forever; not {shown}"),
        )
    };
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            // Past i64 (or 1e30): out of bounds whatever the bound.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(f as i64)),
            (None, Some(f)) if f.fract() == 0.0 => Ok(Some(if f > 0.0 { i64::MAX } else { i64::MIN })),
            _ => Err(refuse(&n.to_string())),
        },
        Some(other) => Err(refuse(&other.to_string())),
    }
}

/// The tenant's retention policy, when it is next applied and what its last
/// run removed.
#[utoipa::path(get, path = "/api/v1/retention", tag = "retention",
    responses((status = 200, body = RetentionView), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_retention(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<RetentionView>, ApiError> {
    Ok(Json(view(uc::policy_status(&state.services, &tenant.id).await?)))
}

/// Replaces the tenant's retention policy (a number absent or null keeps
/// forever). It is applied at once, then every hour, by one node.
#[utoipa::path(put, path = "/api/v1/retention", tag = "retention",
    request_body = RetentionRequest,
    responses((status = 200, body = RetentionView),
              (status = 400, description = "The body is not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
              (status = 422, description = "A number is not a whole number within its bounds, or a field is unknown; `field` names it", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn put_retention(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiJson(body): ApiJson<RetentionRequest>,
) -> Result<Json<RetentionView>, ApiError> {
    let request = PolicyRequest {
        audio_days: number("audio_days", body.audio_days)?,
        calls_days: number("calls_days", body.calls_days)?,
        rejected_uploads_days: number("rejected_uploads_days", body.rejected_uploads_days)?,
        versions_kept: number("versions_kept", body.versions_kept)?,
    };
    Ok(Json(view(
        uc::put_policy(&state.services, &tenant.id, request, &actor).await?,
    )))
}
