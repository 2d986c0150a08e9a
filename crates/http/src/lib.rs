//! The HTTP adapter: the JSON API under `/api/v1` (and, later, the web app on
//! the same listener). Handlers parse requests, call a use case and render its
//! result; errors become replies only in `error`. Only [`router`],
//! [`metrics_router`] and [`count_requests`] are public: the server mounts
//! them; everything else is the crate's own.
//!
//! - `extract`: token authentication (and the action each route is, for
//!   the token's role), JSON bodies, path and query parameters.
//! - `tables`, `calls`, `siprec`, `tokens`, `webhooks`, `audit`,
//!   `retention`, `exports`: the API handlers and their JSON views.
//! - `openapi`: the OpenAPI document, generated from the handlers' annotations.
//! - `metrics`: `GET /metrics` and the layer counting every request.

mod audit;
mod calls;
mod error;
mod exports;
mod extract;
mod metrics;
mod openapi;
mod retention;
mod siprec;
mod tables;
mod tokens;
mod users;
mod webhooks;

pub use metrics::{count_requests, metrics_router};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};

use callmeta_app::usecases::Services;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) services: Arc<Services>,
}

pub fn router(services: Arc<Services>) -> Router {
    let state = AppState { services };
    let api = Router::new()
        .route("/tables", get(tables::list_tables))
        .route(
            "/tables/{name}",
            put(tables::put_table)
                .get(tables::get_table)
                .delete(tables::delete_table),
        )
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
        .route("/calls/facets", get(calls::call_facets))
        .route("/calls/export", get(calls::export_calls))
        .route(
            "/calls/{unique_id}",
            get(calls::get_call).delete(calls::delete_call),
        )
        .route("/calls/{unique_id}/audio", get(calls::get_call_audio))
        .route("/backfill", post(calls::backfill))
        .route("/backfills", get(calls::list_backfills))
        .route("/backfills/{id}", get(calls::get_backfill))
        .route("/siprec", get(siprec::get_settings).put(siprec::put_settings))
        .route(
            "/retention",
            get(retention::get_retention).put(retention::put_retention),
        )
        .route("/tokens", get(tokens::list_tokens).post(tokens::create_token))
        .route("/tokens/{id}", delete(tokens::delete_token))
        .route("/users", get(users::list_users).post(users::create_user))
        .route("/users/{name}", patch(users::change_user))
        .route(
            "/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route("/webhooks/{id}", delete(webhooks::delete_webhook))
        .route("/webhooks/{id}/deliveries", get(webhooks::list_deliveries))
        .route("/audit", get(audit::list_audit))
        .route(
            "/exports/daily",
            get(exports::get_daily)
                .put(exports::put_daily)
                .delete(exports::delete_daily),
        )
        .route("/exports/daily/runs", get(exports::list_runs))
        .route("/exports/daily/run", post(exports::run_now))
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
