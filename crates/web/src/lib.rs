//! The web app: server-rendered pages for a tenant's supervisors and
//! integrator, on the same listener as the API.
//!
//! - `/`: log in (the tenant's slug, or a user's `NAME@TENANT`, and its
//!   password); `/logout`.
//! - `/calls`: the calls, newest first, filtered by any metadata key (own or
//!   added) and a time range, as a shareable URL (`?metadata.team_name=diamond`).
//! - `/calls/{unique_id}`: own and added metadata side by side, where each
//!   added key came from, each table's result and why it did not match, the
//!   recording.
//! - `/tables`: each table's settings, active version, match rate, history
//!   with reports, the upload form and the settings form.
//! - `/webhooks`: the tenant's webhook endpoints (add, send a test event,
//!   remove) and their latest delivery attempts.
//! - `/users`: the tenant's users, their logins and roles (add, disable,
//!   enable).
//! - `/audit`: the audit log (who, from where, through which channel, did
//!   what, on which object), filtered by actor, action and object.
//!
//! Every page checks the session's role first (`session::action`: a page a
//! role may not use answers 403); every page calls the use cases with the
//! session's tenant, never another;
//! every value is escaped by the templates (askama, HTML auto-escaping); every
//! POST carries the session's CSRF token; CSS and JS are compiled into the
//! binary (no CDN).

mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use callmeta_app::usecases::Services;

/// Web app settings (`[web]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WebSettings {
    /// How long a login lasts at most, in seconds, however busy.
    pub session_secs: u64,
    /// How long a login lasts without a request, in seconds.
    pub idle_secs: u64,
    /// Mark the session cookie `Secure` (set when served over HTTPS, e.g.
    /// behind a TLS-terminating proxy).
    pub secure_cookie: bool,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            session_secs: 12 * 3600,
            idle_secs: 2 * 3600,
            secure_cookie: false,
        }
    }
}

#[derive(Clone)]
pub(crate) struct WebState {
    pub(crate) services: Arc<Services>,
    pub(crate) settings: Arc<WebSettings>,
}

/// What a multipart form adds to its file (boundaries, the CSRF field,
/// part headers) at most, on top of `[limits] max_file_bytes`.
pub(crate) const FORM_OVERHEAD: u64 = 64 * 1024;

pub fn router(services: Arc<Services>, settings: WebSettings) -> Router {
    // The form's body is cut just past the upload limit; the upload policy
    // refuses the file itself as soon as it passes the limit.
    let max_form =
        usize::try_from(services.limits.max_file_bytes.saturating_add(FORM_OVERHEAD)).unwrap_or(usize::MAX);
    let state = WebState {
        services,
        settings: Arc::new(settings),
    };
    Router::new()
        .route("/", get(pages::login_page))
        .route("/login", post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/calls", get(pages::calls))
        .route("/calls/export", get(pages::export_calls))
        .route("/calls/{unique_id}", get(pages::call))
        .route("/calls/{unique_id}/audio", get(pages::call_audio))
        .route("/calls/{unique_id}/delete", post(pages::delete_call))
        .route("/tables", get(pages::tables).post(pages::create_table))
        .route(
            "/tables/{name}/upload",
            post(pages::upload).layer(DefaultBodyLimit::max(max_form)),
        )
        .route("/tables/{name}/settings", post(pages::table_settings))
        .route("/tables/{name}/versions/{id}/activate", post(pages::activate))
        .route("/webhooks", get(pages::webhooks).post(pages::add_webhook))
        .route("/webhooks/{id}/test", post(pages::test_webhook))
        .route("/webhooks/{id}/delete", post(pages::remove_webhook))
        .route("/exports", get(pages::exports).post(pages::save_export))
        .route("/exports/run", post(pages::run_export))
        .route("/exports/delete", post(pages::remove_export))
        .route("/audit", get(pages::audit))
        .route("/users", get(pages::users).post(pages::add_user))
        .route("/users/{name}/disable", post(pages::disable_user))
        .route("/users/{name}/enable", post(pages::enable_user))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/assets/htmx.min.js", get(htmx))
        .with_state(state)
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/app.js"),
    )
}

/// htmx 2.0.11 (`assets/htmx.min.js`, BSD Zero Clause licence in
/// `assets/htmx.LICENSE`), as published.
async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../assets/htmx.min.js"),
    )
}
