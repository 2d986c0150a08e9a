//! A tenant's SIPREC settings: which flattened metadata keys its calls also
//! get under another name; the networks of its recording clients (SBCs),
//! which the operator registers, are shown read-only.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Auth};
use crate::AppState;
use callmeta_app::usecases::siprec::{self as uc, SiprecSettings};

/// SIPREC settings of the tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiprecSettingsView {
    #[serde(default)]
    #[schema(schema_with = crate::openapi::siprec_mapping, required = false)]
    pub mapping: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::source_addresses, required = false)]
    pub source_addresses: Vec<String>,
}

fn view(s: SiprecSettings) -> SiprecSettingsView {
    SiprecSettingsView {
        mapping: s.mapping,
        source_addresses: s.source_addresses,
    }
}

/// The tenant's SIPREC settings.
#[utoipa::path(get, path = "/api/v1/siprec", tag = "siprec",
    responses((status = 200, body = SiprecSettingsView), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<SiprecSettingsView>, ApiError> {
    Ok(Json(view(uc::settings(&state.services, &tenant.id).await?)))
}

/// Replaces the tenant's SIPREC settings. Calls that arrive afterwards get the
/// mapped keys (and are enriched with them).
#[utoipa::path(put, path = "/api/v1/siprec", tag = "siprec",
    request_body = SiprecSettingsView,
    responses((status = 200, body = SiprecSettingsView),
              (status = 400, description = "The body is not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
              (status = 422, description = "A field is invalid (the SBC networks are the operator's); `field` names it", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiJson(body): ApiJson<SiprecSettingsView>,
) -> Result<Json<SiprecSettingsView>, ApiError> {
    let settings = SiprecSettings {
        mapping: body.mapping,
        source_addresses: body.source_addresses,
    };
    Ok(Json(view(
        uc::put_settings(&state.services, &tenant.id, settings, &actor).await?,
    )))
}
