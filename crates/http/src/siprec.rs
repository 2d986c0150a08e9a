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
pub struct SiprecSettingsView {
    /// Flattened key → the name it is also given on the call, e.g.
    /// `{"participant_1_aor_user": "agent_id"}`.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// Networks of the tenant's SBCs, registered by the operator
    /// (`callmeta tenant sip-source add`): read only. A PUT may leave it out
    /// or send it back unchanged; any other value is refused (422).
    #[serde(default)]
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
pub async fn get_settings(
    State(state): State<AppState>,
    Auth(tenant): Auth,
) -> Result<Json<SiprecSettingsView>, ApiError> {
    Ok(Json(view(uc::settings(&state.services, &tenant.id).await?)))
}

/// Replaces the tenant's SIPREC settings. Calls that arrive afterwards get the
/// mapped keys (and are enriched with them).
#[utoipa::path(put, path = "/api/v1/siprec", tag = "siprec",
    request_body = SiprecSettingsView,
    responses((status = 200, body = SiprecSettingsView), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    ApiJson(body): ApiJson<SiprecSettingsView>,
) -> Result<Json<SiprecSettingsView>, ApiError> {
    let settings = SiprecSettings {
        mapping: body.mapping,
        source_addresses: body.source_addresses,
    };
    Ok(Json(view(
        uc::put_settings(&state.services, &tenant.id, settings).await?,
    )))
}
