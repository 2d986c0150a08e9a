//! The audit log: who did what, from where, on which object, newest first,
//! filtered by actor, action and object, by pages (a cursor in the URL).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use callmeta_app::store::AuditEntry;
use callmeta_app::usecases::audit::{self, actions};
use serde::Deserialize;

use super::{error_page, render, when};
use crate::WebState;
use crate::session::{LoggedIn, Who, encode};

/// An entry as a row of the page (also used by the tables and call pages).
pub(crate) struct EntryRow {
    pub(crate) time: String,
    pub(crate) actor: String,
    pub(crate) source: String,
    pub(crate) channel: String,
    pub(crate) action: String,
    pub(crate) object: String,
    pub(crate) detail: String,
}

pub(crate) fn entry_row(e: &AuditEntry) -> EntryRow {
    let detail = match &e.detail {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    };
    EntryRow {
        time: when(e.at_ms),
        actor: e.actor.clone(),
        source: e.source.clone().unwrap_or_default(),
        channel: e.channel.clone(),
        action: e.action.clone(),
        object: e.object.clone(),
        detail,
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    tenant: Option<Who>,
    csrf: String,
    actor: String,
    action: String,
    object: String,
    actions: Vec<&'static str>,
    rows: Vec<EntryRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object: String,
    cursor: Option<String>,
}

pub(crate) async fn audit(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(q): Query<AuditQuery>,
) -> Response {
    let (actor, action, object) = (q.actor.trim(), q.action.trim(), q.object.trim());
    let page = match audit::list(
        &state.services,
        &s.tenant,
        Some(100),
        q.cursor.as_deref(),
        Some(actor),
        Some(action),
        Some(object),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return error_page(e),
    };
    let filters = format!(
        "actor={}&action={}&object={}",
        encode(actor),
        encode(action),
        encode(object)
    );
    render(AuditPage {
        tenant: Some(Who::of(&s)),
        csrf: s.csrf.clone(),
        actor: actor.to_string(),
        action: action.to_string(),
        object: object.to_string(),
        actions: actions::ALL.to_vec(),
        rows: page.entries.iter().map(entry_row).collect(),
        first_href: q.cursor.as_ref().map(|_| format!("/audit?{filters}")),
        next_href: page.next.map(|n| format!("/audit?{filters}&cursor={n}")),
    })
}
