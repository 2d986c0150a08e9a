//! Webhooks: add an endpoint, send it a test event, remove it, and read
//! its latest delivery attempts.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::webhooks::{self as uc, Event, NewEndpoint};
use callmeta_app::usecases::{AppError, web_sessions};
use serde::Deserialize;

use super::{error_page, forbidden, render, short, when};
use crate::WebState;
use crate::session::{LoggedIn, Who};

/// Attempts shown per endpoint.
const SHOWN_ATTEMPTS: usize = 20;

struct AttemptRow {
    time: String,
    event: String,
    event_id: String,
    attempt: i64,
    status: String,
    ok: bool,
    latency: String,
    error: String,
}

struct EndpointView {
    id: String,
    short: String,
    url: String,
    events: String,
    created: String,
    attempts: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    tenant: Option<Who>,
    csrf: String,
    endpoints: Vec<EndpointView>,
    events: Vec<&'static str>,
    notice: Option<String>,
    error: Option<String>,
}

async fn webhooks_page(
    state: &WebState,
    s: &web_sessions::WebSession,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let endpoints = match uc::list_endpoints(&state.services, &s.tenant).await {
        Ok(list) => list,
        Err(e) => return error_page(e),
    };
    let mut views = Vec::new();
    for e in endpoints {
        let attempts = match uc::deliveries(&state.services, &s.tenant, &e.id).await {
            Ok(a) => a,
            Err(e) => return error_page(e),
        };
        views.push(EndpointView {
            short: short(&e.id),
            id: e.id,
            url: e.url,
            events: e.events.join(", "),
            created: when(e.created_ms),
            attempts: attempts
                .into_iter()
                .take(SHOWN_ATTEMPTS)
                .map(|a| {
                    let ok = a.error.is_none();
                    AttemptRow {
                        time: when(a.attempted_ms),
                        event: a.event,
                        event_id: a.event_id,
                        attempt: a.attempt,
                        status: a.status_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                        ok,
                        latency: format!("{} ms", a.latency_ms),
                        error: a.error.unwrap_or_default(),
                    }
                })
                .collect(),
        });
    }
    let failed = error.is_some();
    let mut response = render(WebhooksPage {
        tenant: Some(Who::of(s)),
        csrf: s.csrf.clone(),
        endpoints: views,
        events: Event::SUBSCRIBABLE.map(Event::as_str).to_vec(),
        notice,
        error,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct WebhooksQuery {
    notice: Option<String>,
}

pub(crate) async fn webhooks(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(q): Query<WebhooksQuery>,
) -> Response {
    // Notices come from our own redirects; only known ones are shown.
    let notice = match q.notice.as_deref() {
        Some("added") => Some("Endpoint added.".to_string()),
        Some("removed") => Some("Endpoint removed.".to_string()),
        Some("sent") => Some("Test event sent: its attempt shows below within a few seconds.".to_string()),
        _ => None,
    };
    webhooks_page(&state, &s, notice, None).await
}

/// The add form: `url`, `secret`, `csrf` and one `events` pair per ticked box.
pub(crate) async fn add_webhook(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if !web_sessions::csrf_matches(&s, &field("csrf")) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let new = NewEndpoint {
        url: field("url"),
        secret: field("secret"),
        events: pairs
            .iter()
            .filter(|(k, _)| k == "events")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    match uc::create_endpoint(&state.services, &s.tenant, new).await {
        Ok(_) => Redirect::to("/webhooks?notice=added").into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::OverLimit { .. })) => {
            webhooks_page(&state, &s, None, Some(e.to_string())).await
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn test_webhook(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    match uc::send_test(&state.services, &s.tenant, &id).await {
        Ok(_) => Redirect::to("/webhooks?notice=sent").into_response(),
        Err(e @ AppError::OverLimit { .. }) => webhooks_page(&state, &s, None, Some(e.to_string())).await,
        Err(e) => error_page(e),
    }
}

pub(crate) async fn remove_webhook(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    match uc::delete_endpoint(&state.services, &s.tenant, &id).await {
        Ok(()) => Redirect::to("/webhooks?notice=removed").into_response(),
        Err(e) => error_page(e),
    }
}
