//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the views' `ToSchema` derives.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "callmeta", description = "Calls enriched with the matching row of the customer's CRM export."),
    paths(
        super::tables::list_tables,
        super::tables::get_table,
        super::tables::put_table,
        super::tables::put_table_data,
        super::calls::create_call,
        super::calls::list_calls,
        super::calls::get_call,
        super::calls::get_call_audio,
        super::calls::backfill,
        super::calls::list_backfills,
        super::calls::get_backfill,
        super::siprec::get_settings,
        super::siprec::put_settings,
    ),
    modifiers(&TokenAuth),
    tags((name = "tables", description = "Reference tables and their versions"),
         (name = "calls", description = "Calls and their enrichment"),
         (name = "siprec", description = "SIPREC key mapping and recording clients"))
)]
pub struct ApiDoc;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <api_token>` (or `Bearer <api_token>`)",
            ))),
        );
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
