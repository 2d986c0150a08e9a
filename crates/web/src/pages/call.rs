//! One call: own and added metadata side by side, each table's result and
//! why, the recording.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::{audit, calls, erasure, web_sessions};
use serde::Deserialize;

use super::{Badge, error_page, forbidden, reason, render, short, status_badge, when};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer, Who, encode};

struct MetaRow {
    key: String,
    value: String,
    /// For added keys: the table and version it came from.
    origin: String,
}

struct ResultRow {
    table: String,
    badge: Badge,
    reason: String,
    version: String,
    added: usize,
    collisions: String,
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage {
    tenant: Option<Who>,
    csrf: String,
    unique_id: String,
    time: String,
    source: &'static str,
    external_id: String,
    own: Vec<MetaRow>,
    added: Vec<MetaRow>,
    results: Vec<ResultRow>,
    audio_href: Option<String>,
    /// Who downloaded the recording, newest first (the audit log).
    downloads: Vec<super::audit::EntryRow>,
    /// When the retention policy removed the recording, if it did.
    audio_pruned: Option<String>,
    delete_action: String,
}

pub(crate) async fn call(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(unique_id): Path<String>,
) -> Response {
    let c = match calls::get_call(&state.services, &s.tenant, &unique_id).await {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    let downloads = match audit::on_objects(
        &state.services,
        &s.tenant,
        audit::actions::AUDIO_DOWNLOAD,
        &calls::audio_object(&c.unique_id),
        100,
    )
    .await
    {
        Ok(entries) => entries.iter().map(super::audit::entry_row).collect(),
        Err(e) => return error_page(e),
    };
    let own = c
        .metadata
        .iter()
        .map(|(k, v)| MetaRow {
            key: k.clone(),
            value: v.clone(),
            origin: String::new(),
        })
        .collect();
    let mut added = Vec::new();
    for r in &c.enrichment {
        for (k, v) in &r.added {
            added.push(MetaRow {
                key: k.to_string(),
                value: v.to_string(),
                origin: format!("{} · {}", r.table, short(r.version.as_deref().unwrap_or("-"))),
            });
        }
    }
    let results = c
        .enrichment
        .iter()
        .map(|r| ResultRow {
            table: r.table.clone(),
            badge: status_badge(r),
            reason: reason(r),
            version: r.version.clone().unwrap_or_default(),
            added: r.added.len(),
            collisions: r
                .collisions
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    render(CallPage {
        tenant: Some(Who::of(&s)),
        csrf: s.csrf.clone(),
        time: when(c.timestamp_ms),
        source: c.source.as_str(),
        external_id: c.external_id.clone().unwrap_or_default(),
        own,
        added,
        results,
        downloads,
        audio_href: c
            .audio_key
            .as_ref()
            .map(|_| format!("/calls/{}/audio", encode(&c.unique_id))),
        audio_pruned: c.audio_pruned_ms.filter(|_| c.audio_key.is_none()).map(when),
        delete_action: format!("/calls/{}/delete", encode(&c.unique_id)),
        unique_id: c.unique_id,
    })
}

pub(crate) async fn call_audio(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(unique_id): Path<String>,
) -> Response {
    let actor = session::actor(&s, &peer);
    match calls::call_audio(&state.services, &s.tenant, &unique_id, &actor).await {
        Ok((bytes, content_type)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Erases the call (its metadata, audio and recording parts), as
/// `DELETE /api/v1/calls/{unique_id}` does, then shows the list.
pub(crate) async fn delete_call(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(unique_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let actor = session::actor(&s, &peer);
    match erasure::erase_call(&state.services, &s.tenant, &unique_id, &actor).await {
        Ok(()) => Redirect::to("/calls").into_response(),
        Err(e) => error_page(e),
    }
}
