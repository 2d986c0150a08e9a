//! The reference tables: settings, active version, match rate, history
//! with reports.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::store::VersionRecord;
use std::collections::HashMap;

use callmeta_app::usecases::audit::{self, actions};
use callmeta_app::usecases::tables::{self, TableDetails};
use callmeta_app::usecases::{AppError, web_sessions};
use serde::Deserialize;

use super::{error_page, render, short, when};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer, Who};

struct VersionRow {
    id: String,
    short: String,
    time: String,
    channel: String,
    filename: String,
    state: &'static str,
    rows: u64,
    summary: String,
    report: String,
    /// Who uploaded it, from where, through which channel (the audit log).
    uploaded_by: String,
}

struct TableView {
    name: String,
    key: String,
    match_mode: String,
    region: String,
    duplicates: String,
    bad_rows: String,
    valid_from: String,
    valid_to: String,
    max_row_drop_pct: String,
    on_header_change: String,
    as_of: String,
    active: Option<VersionRow>,
    columns: String,
    match_rate: String,
    versions: Vec<VersionRow>,
}

#[derive(Template)]
#[template(path = "tables.html")]
struct TablesPage {
    tenant: Option<Who>,
    csrf: String,
    tables: Vec<TableView>,
    notice: Option<String>,
    error: Option<String>,
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Who uploaded each version of a table, from its audit entries: "name
/// (channel, address)". A settings change's version is its settings
/// change's; an identical upload made no version and is left out.
async fn uploaders(
    state: &WebState,
    s: &web_sessions::WebSession,
    table: &callmeta_core::domain::TableName,
) -> Result<HashMap<String, String>, AppError> {
    let prefix = format!("{}/versions/", tables::table_object(table));
    let mut by_version = HashMap::new();
    for action in [actions::TABLE_UPLOAD, actions::TABLE_ACTIVATE] {
        let entries = audit::on_objects(&state.services, &s.tenant, action, &prefix, 1000).await?;
        for e in entries.iter().rev() {
            if e.detail.get("unchanged").is_some() || e.detail.get("rollback") == Some(&true.into()) {
                continue;
            }
            let Some(id) = e.object.strip_prefix(&prefix) else {
                continue;
            };
            let from = match &e.source {
                Some(source) => format!("{}, {source}", e.channel),
                None => e.channel.clone(),
            };
            by_version
                .entry(id.to_string())
                .or_insert_with(|| format!("{} ({from})", e.actor));
        }
    }
    Ok(by_version)
}

fn version_row(v: &VersionRecord, active: Option<&str>, uploaders: &HashMap<String, String>) -> VersionRow {
    let r = &v.report;
    let state = if Some(v.id.as_str()) == active {
        "active"
    } else if v.accepted {
        "replaced"
    } else {
        "rejected"
    };
    let summary = match &r.error {
        Some(e) => e.clone(),
        None => {
            let mut s = format!(
                "{} rows, {} columns, {}",
                r.rows_accepted,
                r.columns.len(),
                r.encoding.as_deref().unwrap_or("utf-8")
            );
            if let Some(d) = &r.delimiter {
                s.push_str(&format!(", {d}-separated"));
            }
            if r.rows_rejected > 0 {
                s.push_str(&format!(", {} rows skipped", r.rows_rejected));
            }
            if r.duplicate_keys > 0 {
                s.push_str(&format!(", {} duplicate keys", r.duplicate_keys));
            }
            s
        }
    };
    VersionRow {
        id: v.id.clone(),
        short: short(&v.id),
        time: when(v.created_ms),
        channel: v.channel.clone(),
        filename: v.filename.clone().unwrap_or_default(),
        state,
        rows: v.rows,
        summary,
        report: serde_json::to_string_pretty(r).unwrap_or_default(),
        uploaded_by: uploaders.get(&v.id).cloned().unwrap_or_default(),
    }
}

async fn table_view(
    state: &WebState,
    s: &web_sessions::WebSession,
    d: &TableDetails,
) -> Result<TableView, AppError> {
    let o = &d.table.options;
    let active_id = d.table.active_version.as_deref();
    let active = d.versions.iter().find(|v| Some(v.id.as_str()) == active_id);
    let uploaders = uploaders(state, s, &d.table.name).await?;
    let match_rate = match active {
        Some(v) => {
            let (results, matched) =
                tables::match_counts(&state.services, &s.tenant, &d.table.name, &v.id).await?;
            if results == 0 {
                "no calls enriched from this version yet".to_string()
            } else {
                format!(
                    "{:.1}% of {results} calls matched since it became active",
                    matched as f64 * 100.0 / results as f64
                )
            }
        }
        None => String::new(),
    };
    Ok(TableView {
        name: d.table.name.to_string(),
        key: o.keys_label(),
        match_mode: enum_name(&o.match_mode),
        region: o.region.clone().unwrap_or_default(),
        duplicates: enum_name(&o.duplicates),
        bad_rows: enum_name(&o.bad_rows),
        valid_from: o.valid_from.as_ref().map(ToString::to_string).unwrap_or_default(),
        valid_to: o.valid_to.as_ref().map(ToString::to_string).unwrap_or_default(),
        max_row_drop_pct: o.max_row_drop_pct.map(|p| p.to_string()).unwrap_or_default(),
        on_header_change: o.on_header_change.as_str().to_string(),
        as_of: o.as_of.as_str().to_string(),
        active: active.map(|v| version_row(v, active_id, &uploaders)),
        columns: active.map(|v| v.report.columns.join(", ")).unwrap_or_default(),
        match_rate,
        versions: d
            .versions
            .iter()
            .map(|v| version_row(v, active_id, &uploaders))
            .collect(),
    })
}

pub(super) async fn tables_page(
    state: &WebState,
    s: &web_sessions::WebSession,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let details = match tables::list_tables(&state.services, &s.tenant).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let mut views = Vec::new();
    for d in &details {
        match table_view(state, s, d).await {
            Ok(v) => views.push(v),
            Err(e) => return error_page(e),
        }
    }
    let failed = error.is_some();
    let mut response = render(TablesPage {
        tenant: Some(Who::of(s)),
        csrf: s.csrf.clone(),
        tables: views,
        notice,
        error,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct TablesQuery {
    notice: Option<String>,
}

pub(crate) async fn tables(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(q): Query<TablesQuery>,
) -> Response {
    // Notices come from our own redirects; only known ones are shown.
    let notice = match q.notice.as_deref() {
        Some("uploaded") => Some("Upload processed: the new version is active.".to_string()),
        Some("unchanged") => {
            Some("The upload is identical to the active version: nothing changed.".to_string())
        }
        Some("saved") => Some("Settings saved.".to_string()),
        Some("activated") => Some("Version activated.".to_string()),
        _ => None,
    };
    tables_page(&state, &s, notice, None).await
}

#[derive(Deserialize)]
pub(crate) struct ActivateForm {
    #[serde(default)]
    csrf: String,
}

/// The version list's "Activate" button: a rollback (or roll forward).
pub(crate) async fn activate(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<ActivateForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return super::forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let result = async {
        let name = tables::parse_table_name(&name)?;
        let actor = session::actor(&s, &peer);
        tables::activate_version(
            &state.services,
            &s.tenant,
            &name,
            &id,
            tables::Channel::Web,
            &actor,
        )
        .await
    }
    .await;
    match result {
        Ok(_) => Redirect::to("/tables?notice=activated").into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            tables_page(&state, &s, None, Some(e.to_string())).await
        }
        Err(e) => error_page(e),
    }
}
