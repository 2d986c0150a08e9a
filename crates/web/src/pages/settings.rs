//! Creating a table and changing its settings (the settings form).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::tables;
use callmeta_app::usecases::{AppError, web_sessions};
use callmeta_core::csv::TableOptions;
use serde::Deserialize;

use super::tables::tables_page;
use super::{error_page, forbidden};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer};

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: Option<String>,
    key: String,
    #[serde(rename = "match", default)]
    match_mode: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    duplicates: String,
    #[serde(default)]
    bad_rows: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_to: String,
    #[serde(default)]
    max_row_drop_pct: String,
    #[serde(default)]
    on_header_change: String,
    #[serde(default)]
    as_of: String,
}

fn options_from(form: &SettingsForm) -> Result<TableOptions, AppError> {
    let mut json = serde_json::Map::new();
    // `site+extension, agent_email`: compound keys (`+`), tried in order
    // (`,`); one column is the plain key.
    let entries: Vec<Vec<String>> = form
        .key
        .split(',')
        .map(|entry| entry.split('+').map(|c| c.trim().to_string()).collect())
        .collect();
    if entries.len() == 1 && entries[0].len() == 1 {
        json.insert("key".into(), form.key.trim().into());
    } else {
        json.insert("keys".into(), serde_json::json!(entries));
    }
    for (name, value) in [
        ("match", &form.match_mode),
        ("duplicates", &form.duplicates),
        ("bad_rows", &form.bad_rows),
        ("region", &form.region),
        ("valid_from", &form.valid_from),
        ("valid_to", &form.valid_to),
        ("on_header_change", &form.on_header_change),
        ("as_of", &form.as_of),
    ] {
        if !value.trim().is_empty() {
            json.insert(name.into(), value.trim().into());
        }
    }
    let pct = form.max_row_drop_pct.trim();
    if !pct.is_empty() {
        let value = pct
            .parse::<f64>()
            .map_err(|_| AppError::invalid("max_row_drop_pct", format!("{pct:?} is not a percentage")))?;
        json.insert("max_row_drop_pct".into(), serde_json::json!(value));
    }
    serde_json::from_value(serde_json::Value::Object(json))
        .map_err(|e| AppError::invalid("settings", format!("invalid table settings: {e}")))
}

async fn save_settings(
    state: &WebState,
    s: &web_sessions::WebSession,
    peer: &Peer,
    name: &str,
    form: &SettingsForm,
) -> Response {
    let result = async {
        let name = tables::parse_table_name(name)?;
        let options = options_from(form)?;
        tables::configure_table(
            &state.services,
            &s.tenant,
            &name,
            options,
            &session::actor(s, peer),
        )
        .await
    }
    .await;
    match result {
        Ok(_) => Redirect::to("/tables?notice=saved").into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_) | AppError::NotFound(_))) => {
            tables_page(state, s, None, Some(e.to_string())).await
        }
        Err(e) => error_page(e),
    }
}

pub(crate) async fn create_table(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Form(form): Form<SettingsForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let name = form.name.clone().unwrap_or_default();
    save_settings(&state, &s, &peer, name.trim(), &form).await
}

pub(crate) async fn table_settings(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(name): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    save_settings(&state, &s, &peer, &name, &form).await
}
