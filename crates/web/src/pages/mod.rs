//! The pages: each handler calls the use cases with the session's tenant and
//! renders a template of plain, already formatted strings.
//!
//! - `login`: the login form, logging in and out.
//! - `calls`: the list of calls, its filters as a shareable address.
//! - `call`: one call, its enrichment and its recording.
//! - `tables`: the reference tables, their versions and reports.
//! - `settings`: creating a table and changing its settings.
//! - `upload`: a new version of a table from the upload form.
//! - `webhooks`: the tenant's webhook endpoints and their deliveries.
//! - `users`: the tenant's users (admins only).
//! - `exports`: the daily export push and its runs.
//! - `audit`: the audit log, and the rows of it other pages show (who
//!   uploaded a version, who downloaded a recording).
//!
//! Here: rendering with the security headers, the error page, and the
//! formatting the pages share.

mod audit;
mod call;
mod calls;
mod exports;
mod login;
mod settings;
mod tables;
mod upload;
mod users;
mod webhooks;

use crate::session::Who;
use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use callmeta_app::usecases::calls::CallQueryError;
use callmeta_app::usecases::{AppError, calls as calls_uc};
use callmeta_core::enrich::{EnrichmentResult, EnrichmentStatus};

pub(crate) use audit::audit;
pub(crate) use call::{call, call_audio, delete_call};
pub(crate) use calls::{calls, export as export_calls};
pub(crate) use exports::{exports, remove_export, run_export, save_export};
pub(crate) use login::{login, login_page, logout};
pub(crate) use settings::{create_table, table_settings};
pub(crate) use tables::{activate, tables};
pub(crate) use upload::upload;
pub(crate) use users::{add_user, disable_user, enable_user, users};
pub(crate) use webhooks::{add_webhook, remove_webhook, test_webhook, webhooks};

/// What a page may load and who may frame it: only this site's own assets,
/// no inline script, no framing (a second line of defence behind escaping).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => (
            [
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "same-origin"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    tenant: Option<Who>,
    csrf: String,
    title: String,
    detail: String,
}

pub(crate) fn error_page(e: AppError) -> Response {
    let (status, title) = match &e {
        AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        AppError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input"),
        AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "Not logged in"),
        AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        AppError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
        AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
        AppError::OverLimit { .. } => (StatusCode::BAD_REQUEST, "Too much asked at once"),
        AppError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts"),
        AppError::Pruned(_) => (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "Removed by retention"),
        AppError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
    };
    let detail = match &e {
        AppError::Unexpected(inner) => {
            tracing::error!(error = %inner, "web request failed");
            "The server could not complete this request; it has been logged.".to_string()
        }
        other => other.to_string(),
    };
    let mut response = render(ErrorPage {
        tenant: None,
        csrf: String::new(),
        title: title.into(),
        detail,
    });
    *response.status_mut() = status;
    response
}

/// A list query that could not be read: the calls use case's message.
fn invalid_query(e: &CallQueryError) -> Response {
    let mut response = render(ErrorPage {
        tenant: None,
        csrf: String::new(),
        title: "Invalid filter".into(),
        detail: e.to_string(),
    });
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

fn forbidden(detail: &str) -> Response {
    let mut response = render(ErrorPage {
        tenant: None,
        csrf: String::new(),
        title: "Form expired".into(),
        detail: detail.into(),
    });
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

struct Badge {
    class: &'static str,
    label: String,
    title: String,
}

fn status_badge(r: &EnrichmentResult) -> Badge {
    let (class, label) = match r.status {
        EnrichmentStatus::Matched => ("ok", "matched"),
        EnrichmentStatus::NoMatch => ("warn", "no match"),
        EnrichmentStatus::KeyMissing => ("muted", "no key"),
        EnrichmentStatus::Ambiguous => ("warn", "ambiguous"),
        EnrichmentStatus::NoVersion => ("muted", "no data"),
    };
    Badge {
        class,
        label: label.into(),
        title: format!("{}: {}", r.table, reason(r)),
    }
}

/// Why a table added what it added, or nothing, in a supervisor's words.
fn reason(r: &EnrichmentResult) -> String {
    let value = r.key_value.as_deref().unwrap_or("");
    let compared = match r.normalized_key.as_deref() {
        Some(n) if n != value => format!(" (compared as {n:?})"),
        _ => String::new(),
    };
    match r.status {
        EnrichmentStatus::Matched => format!("the row whose {} is {value:?}{compared}", r.key),
        EnrichmentStatus::NoMatch => format!("no row has {} = {value:?}{compared}", r.key),
        EnrichmentStatus::KeyMissing => format!("the call has no {} metadata", r.key),
        EnrichmentStatus::Ambiguous => format!(
            "several rows have {} = {value:?}{compared} and the table's duplicate policy leaves it ambiguous",
            r.key
        ),
        EnrichmentStatus::NoVersion => "the table had no active version yet".to_string(),
    }
}

/// `2026-01-30 12:34:56` (UTC, to the second).
fn when(ms: i64) -> String {
    calls_uc::format_timestamp(ms)
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

fn short(id: &str) -> String {
    // Version ids are UUIDv7: the last part tells them apart at a glance.
    id.rsplit('-').next().unwrap_or(id).chars().take(12).collect()
}
