//! `GET /api/v1/audit`: the tenant's audit log, newest first, by pages
//! (`cursor` / `next_cursor`), filtered by actor, action or object. Only an
//! `admin` token may read it.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Auth};
use crate::AppState;
use callmeta_app::store::AuditEntry;
use callmeta_app::usecases::audit as uc;
use callmeta_app::usecases::calls::format_timestamp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    limit: Option<u32>,
    cursor: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    object: Option<String>,
}

/// One entry: who, from where, through which channel, did what, on which
/// object, when.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntryView {
    /// The entry's number; entries are listed by it, newest first.
    pub id: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub time: String,
    /// An API token's name, a login name, `system` or `cli`.
    pub actor: String,
    /// The peer address of the request's connection; null when there was none.
    pub source: Option<String>,
    #[schema(schema_with = crate::openapi::audit_channel)]
    pub channel: String,
    #[schema(schema_with = crate::openapi::audit_action)]
    pub action: String,
    /// What it was done on, as a path: `tables/crm`,
    /// `tables/crm/versions/ID`, `calls/ID/audio`, `tokens/ID`, `siprec`,
    /// `backfills/ID`, `logins/NAME`.
    pub object: String,
    /// What else is known (an upload's file name, size and outcome, a
    /// token's name and role, a setting's new value, ...).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditList {
    /// The `cursor` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub data: Vec<AuditEntryView>,
}

pub(crate) fn view(e: AuditEntry) -> AuditEntryView {
    AuditEntryView {
        id: e.seq.to_string(),
        time: format_timestamp(e.at_ms),
        actor: e.actor,
        source: e.source,
        channel: e.channel,
        action: e.action,
        object: e.object,
        detail: e.detail,
    }
}

/// The tenant's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 50, at most 1000"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9]{1,18}$", description = "A previous page's `next_cursor`: the page after it"),
        ("actor" = Option<String>, Query, max_length = 256, description = "Only entries of this actor (a token's name, a login name, `system`, `cli`)"),
        ("action" = Option<String>, Query, max_length = 256, description = "Only entries of this action (`table.upload`, `login.failed`, ...)"),
        ("object" = Option<String>, Query, max_length = 256, description = "Only entries on objects whose path starts with this (`tables/crm/`, `calls/ID/audio`)"),
    ),
    responses((status = 200, body = AuditList),
              (status = 400, description = "A parameter is unknown, malformed or out of bounds", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, description = "Only an admin token may read the audit log", body = ErrorBody),
              (status = 422, description = "The cursor is not a previous page's", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    let page = uc::list(
        &state.services,
        &tenant.id,
        p.limit,
        p.cursor.as_deref(),
        p.actor.as_deref(),
        p.action.as_deref(),
        p.object.as_deref(),
    )
    .await?;
    Ok(Json(AuditList {
        next_cursor: page.next.map(|n| n.to_string()),
        data: page.entries.into_iter().map(view).collect(),
    }))
}
