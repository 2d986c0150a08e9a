//! The HTTP adapter: the JSON API under `/api/v1` (and, later, the web app on
//! the same listener). Handlers parse requests, call a use case and render its
//! result; errors become replies only in `error`. Only [`router`] is public:
//! the server mounts it; everything else is the crate's own.
//!
//! - `extract`: token authentication, JSON bodies, path and query parameters.
//! - `tables`, `calls`, `siprec`, `webhooks`: the API handlers and their JSON views.
//! - `openapi`: the OpenAPI document, generated from the handlers' annotations.

mod calls;
mod error;
mod extract;
mod openapi;
mod siprec;
mod tables;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use callmeta_app::clock::Clock;
use callmeta_app::store::Tenant;
use callmeta_app::usecases::Services;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) services: Arc<Services>,
    pub(crate) token_cache: Arc<TokenCache>,
}

/// Recently authenticated tokens, keyed by their hash, so a busy client costs
/// one database read per token per minute rather than one per request.
/// Entries are dated on the application's clock.
pub(crate) struct TokenCache {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, (Tenant, i64)>>,
}

const TOKEN_TTL_MS: i64 = 60_000;

impl TokenCache {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, token: &str) -> Option<Tenant> {
        let key = callmeta_app::usecases::tenants::hash_token(token);
        let now = self.clock.now_ms();
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|(_, at)| now - at < TOKEN_TTL_MS)
            .map(|(t, _)| t.clone())
    }

    pub(crate) fn put(&self, token: &str, tenant: Tenant) {
        let key = callmeta_app::usecases::tenants::hash_token(token);
        let now = self.clock.now_ms();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| now - *at < TOKEN_TTL_MS);
        }
        map.insert(key, (tenant, now));
    }
}

pub fn router(services: Arc<Services>) -> Router {
    let state = AppState {
        token_cache: Arc::new(TokenCache::new(services.clock.clone())),
        services,
    };
    let api = Router::new()
        .route("/tables", get(tables::list_tables))
        .route("/tables/{name}", put(tables::put_table).get(tables::get_table))
        .route(
            "/tables/{name}/versions/{id}/activate",
            post(tables::activate_version),
        )
        .route(
            "/tables/{name}/data",
            // Uploads enforce their own, much larger, limit while streaming.
            put(tables::put_table_data).layer(DefaultBodyLimit::disable()),
        )
        .route("/calls", get(calls::list_calls).post(calls::create_call))
        .route("/calls/{unique_id}", get(calls::get_call))
        .route("/calls/{unique_id}/audio", get(calls::get_call_audio))
        .route("/backfill", post(calls::backfill))
        .route("/backfills", get(calls::list_backfills))
        .route("/backfills/{id}", get(calls::get_backfill))
        .route("/siprec", get(siprec::get_settings).put(siprec::put_settings))
        .route(
            "/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route("/webhooks/{id}", delete(webhooks::delete_webhook))
        .route("/webhooks/{id}/deliveries", get(webhooks::list_deliveries))
        .route("/openapi.json", get(openapi::openapi_json))
        .method_not_allowed_fallback(api_method_not_allowed)
        .fallback(api_not_found)
        .layer(DefaultBodyLimit::max(extract::MAX_JSON_BYTES));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health))
        .with_state(state)
}

/// 200 when the database and the blob storage both answer, else 503 saying which failed.
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let database = state.services.store.ping().await.err().map(|e| e.to_string());
    let blobs = state.services.blobs.ping().await.err().map(|e| e.to_string());
    let ok = database.is_none() && blobs.is_none();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "failing" },
        "database": database.unwrap_or_else(|| "ok".into()),
        "blobs": blobs.unwrap_or_else(|| "ok".into()),
    });
    let status = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn api_not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        format!("no API endpoint at {}", uri.path()),
    )
}

/// A known path with a method it does not take: 405 in our error shape (axum
/// adds the `Allow` header listing the methods it takes).
async fn api_method_not_allowed(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("{method} is not allowed on {}; see the Allow header", uri.path()),
    )
}
