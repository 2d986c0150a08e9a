//! The daily export push: set the SFTP server or S3 bucket the previous
//! day's calls go to, push a day now, remove it, and read the runs.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::export_push::{
    self as uc, Destination, PushRequest, S3Destination, SftpDestination, format_offset,
};
use callmeta_app::usecases::{AppError, web_sessions};
use serde::Deserialize;

use super::{error_page, forbidden, render, when};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer, Who};

struct RunRow {
    day: String,
    file_name: String,
    status: String,
    ok: bool,
    calls: i64,
    bytes: i64,
    attempts: i64,
    updated: String,
    error: String,
}

/// The form's values: the stored settings (never their secrets), or what
/// was just sent.
#[derive(Default)]
struct FormValues {
    kind: String,
    host: String,
    port: String,
    username: String,
    directory: String,
    host_key: String,
    accept_any_host_key: bool,
    bucket: String,
    prefix: String,
    region: String,
    endpoint: String,
    access_key_id: String,
    format: String,
    utc_offset: String,
    hour: String,
}

#[derive(Template)]
#[template(path = "exports.html")]
struct ExportsPage {
    tenant: Option<Who>,
    csrf: String,
    set: bool,
    summary: String,
    next_run: String,
    form: FormValues,
    runs: Vec<RunRow>,
    notice: Option<String>,
    error: Option<String>,
}

async fn exports_page(
    state: &WebState,
    s: &web_sessions::WebSession,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let status = match uc::get_settings(&state.services, &s.tenant).await {
        Ok(status) => Some(status),
        Err(AppError::NotFound(_)) => None,
        Err(e) => return error_page(e),
    };
    let runs = match uc::runs(&state.services, &s.tenant).await {
        Ok(runs) => runs,
        Err(e) => return error_page(e),
    };
    let mut form = FormValues {
        kind: "sftp".into(),
        port: "22".into(),
        directory: ".".into(),
        region: "us-east-1".into(),
        format: "csv".into(),
        utc_offset: "+00:00".into(),
        hour: "1".into(),
        ..FormValues::default()
    };
    let (mut summary, mut next_run) = (String::new(), String::new());
    if let Some(status) = &status {
        summary = status.settings.destination.describe();
        next_run = status.next_run_ms.map(when).unwrap_or_default();
        form.format = status.settings.format.as_str().into();
        form.utc_offset = format_offset(status.settings.utc_offset_minutes);
        form.hour = status.settings.hour.to_string();
        match &status.settings.destination {
            Destination::Sftp(d) => {
                form.kind = "sftp".into();
                form.host = d.host.clone();
                form.port = d.port.to_string();
                form.username = d.username.clone();
                form.directory = d.directory.clone();
                form.host_key = d.host_key.clone().unwrap_or_default();
                form.accept_any_host_key = d.accept_any_host_key;
            }
            Destination::S3(d) => {
                form.kind = "s3".into();
                form.bucket = d.bucket.clone();
                form.prefix = d.prefix.clone();
                form.region = d.region.clone();
                form.endpoint = d.endpoint.clone().unwrap_or_default();
                form.access_key_id = d.access_key_id.clone();
            }
        }
    }
    let failed = error.is_some();
    let mut response = render(ExportsPage {
        tenant: Some(Who::of(s)),
        csrf: s.csrf.clone(),
        set: status.is_some(),
        summary,
        next_run,
        form,
        runs: runs
            .into_iter()
            .map(|r| RunRow {
                ok: r.status == "delivered",
                day: r.day,
                file_name: r.file_name,
                status: r.status,
                calls: r.calls,
                bytes: r.bytes,
                attempts: r.attempts,
                updated: when(r.updated_ms),
                error: r.error.unwrap_or_default(),
            })
            .collect(),
        notice,
        error,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct ExportsQuery {
    notice: Option<String>,
}

pub(crate) async fn exports(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(q): Query<ExportsQuery>,
) -> Response {
    // Notices come from our own redirects; only known ones are shown.
    let notice = match q.notice.as_deref() {
        Some("saved") => Some("Daily export saved.".to_string()),
        Some("removed") => Some("Daily export removed.".to_string()),
        Some("queued") => Some("Push recorded: its run shows below within a few seconds.".to_string()),
        _ => None,
    };
    exports_page(&state, &s, notice, None).await
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    host_key: String,
    #[serde(default)]
    accept_any_host_key: Option<String>,
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    utc_offset: String,
    #[serde(default)]
    hour: String,
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub(crate) async fn save_export(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Form(f): Form<ExportForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &f.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let destination = if f.kind == "s3" {
        Destination::S3(S3Destination {
            bucket: f.bucket.trim().into(),
            prefix: f.prefix.trim().into(),
            region: f.region.trim().into(),
            endpoint: non_empty(f.endpoint),
            access_key_id: f.access_key_id.trim().into(),
            secret_access_key: non_empty(f.secret_access_key),
        })
    } else {
        let Ok(port) = f.port.trim().parse::<u16>() else {
            let message = format!("port must be 1 to 65535, not {:?}", f.port);
            return exports_page(&state, &s, None, Some(message)).await;
        };
        Destination::Sftp(SftpDestination {
            host: f.host.trim().into(),
            port,
            username: f.username.trim().into(),
            password: (!f.password.is_empty()).then_some(f.password),
            private_key: non_empty(f.private_key),
            directory: f.directory.trim().into(),
            host_key: non_empty(f.host_key),
            accept_any_host_key: f.accept_any_host_key.is_some(),
        })
    };
    let hour = match f.hour.trim() {
        "" => None,
        h => match h.parse::<i64>() {
            Ok(h) => Some(h),
            Err(_) => {
                return exports_page(&state, &s, None, Some(format!("hour must be 0 to 23, not {h:?}")))
                    .await;
            }
        },
    };
    let request = PushRequest {
        destination,
        format: non_empty(f.format),
        utc_offset: non_empty(f.utc_offset),
        hour,
    };
    let actor = session::actor(&s, &peer);
    match uc::put_settings(&state.services, &s.tenant, request, &actor).await {
        Ok(_) => Redirect::to("/exports?notice=saved").into_response(),
        Err(e @ AppError::Invalid { .. }) => exports_page(&state, &s, None, Some(e.to_string())).await,
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    day: String,
}

pub(crate) async fn run_export(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Form(f): Form<RunForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &f.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let actor = session::actor(&s, &peer);
    let day = non_empty(f.day);
    match uc::run_day(&state.services, &s.tenant, day.as_deref(), &actor).await {
        Ok(_) => Redirect::to("/exports?notice=queued").into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_) | AppError::NotFound(_))) => {
            exports_page(&state, &s, None, Some(e.to_string())).await
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn remove_export(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &f.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let actor = session::actor(&s, &peer);
    match uc::delete_settings(&state.services, &s.tenant, &actor).await {
        Ok(()) | Err(AppError::NotFound(_)) => Redirect::to("/exports?notice=removed").into_response(),
        Err(e) => error_page(e),
    }
}
