//! The pages: each handler calls the use cases with the session's tenant and
//! renders a template of plain, already formatted strings.

use askama::Template;
use axum::Form;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Extension;
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use callmeta_app::store::{CallQuery, CallRecord, VersionRecord};
use callmeta_app::usecases::tables::{self, Channel, TableDetails};
use callmeta_app::usecases::{AppError, calls, uploads, web_sessions};
use callmeta_core::csv::TableOptions;
use callmeta_core::enrich::{EnrichmentResult, EnrichmentStatus, merged_metadata};
use serde::Deserialize;

use crate::WebState;
use crate::session::{self, LoggedIn, encode};

const PAGE_SIZE: u32 = 50;

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
    tenant: Option<String>,
    csrf: String,
    title: String,
    detail: String,
}

pub(crate) fn error_page(e: AppError) -> Response {
    let (status, title) = match &e {
        AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        AppError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input"),
        AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "Not logged in"),
        AppError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
        AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
        AppError::OverLimit { .. } => (StatusCode::BAD_REQUEST, "Too much asked at once"),
        AppError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts"),
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

// ---------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    tenant: Option<String>,
    csrf: String,
    next: String,
    error: Option<String>,
    slug: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only a path of this site is a place to go back to: it starts with one
/// `/` not followed by `/` or `\`, and holds only visible ASCII other than
/// `\`. Browsers drop tabs and line breaks from a URL and read `\` as `/`,
/// so `/<TAB>/host` or `/\host` would lead to another site.
fn safe_next(next: Option<&str>) -> String {
    let is_path = |n: &str| {
        let bytes = n.as_bytes();
        bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(n) if is_path(n) => n.to_string(),
        _ => "/calls".to_string(),
    }
}

pub async fn login_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(token) = session::token(&headers)
        && web_sessions::current(&state.services, &token).await.is_ok()
    {
        return Redirect::to(&next).into_response();
    }
    render(LoginPage {
        tenant: None,
        csrf: String::new(),
        next,
        error: None,
        slug: String::new(),
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    tenant: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// Whether a request was posted from another site: browsers send `Origin`
/// with every POST, and it must name this host (as the client reached it,
/// or as a proxy in front says it did).
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false; // not a browser, or a browser sending no Origin
    };
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    let ours = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    !matches!(origin_host, Some(h) if Some(h) == ours("host") || Some(h) == ours("x-forwarded-host"))
}

/// A login form posted from another site is refused: it would sign the
/// visitor in to an account of the other site's choosing (login CSRF).
pub async fn login(
    State(state): State<WebState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            Html("Log in from callmeta's own login page.".to_string()),
        )
            .into_response();
    }
    let next = safe_next(form.next.as_deref());
    let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
    let lifetime = web_sessions::Lifetime {
        absolute_ms: ms(state.settings.session_secs),
        idle_ms: ms(state.settings.idle_secs),
    };
    // The address the connection came from (a proxy's, behind one).
    let from = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    match web_sessions::login(&state.services, &form.tenant, &form.password, from, lifetime).await {
        Ok((token, _)) => {
            let cookie =
                session::set_cookie(&token, state.settings.session_secs, state.settings.secure_cookie);
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(AppError::Unauthorized) => {
            let mut response = render(LoginPage {
                tenant: None,
                csrf: String::new(),
                next,
                error: Some("Unknown tenant or wrong password.".into()),
                slug: form.tenant,
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        Err(AppError::Throttled { retry_after_secs }) => {
            let mut response = render(LoginPage {
                tenant: None,
                csrf: String::new(),
                next,
                error: Some(format!(
                    "Too many failed logins for this tenant from your address: try again in {retry_after_secs} s."
                )),
                slug: form.tenant,
            });
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    if let Some(token) = session::token(&headers)
        && let Err(e) = web_sessions::logout(&state.services, &token).await
    {
        return error_page(e);
    }
    ([(header::SET_COOKIE, session::clear_cookie())], Redirect::to("/")).into_response()
}

// ---------------------------------------------------------------- calls

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

struct CallRow {
    unique_id: String,
    time: String,
    source: &'static str,
    cells: Vec<String>,
    added: String,
    badges: Vec<Badge>,
}

struct Filter {
    key: String,
    value: String,
    remove_href: String,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    tenant: Option<String>,
    csrf: String,
    columns: Vec<String>,
    rows: Vec<CallRow>,
    filters: Vec<Filter>,
    from: String,
    to: String,
    total: u64,
    first: u64,
    last: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
    has_tables: bool,
    any_calls_at_all: bool,
    /// This list's own address, for a refresh in place.
    self_href: String,
    /// The first page refreshes itself (htmx), to show calls as they come.
    live: bool,
}

/// `2026-01-30T12:34` (a `datetime-local` value, read as UTC) or RFC 3339.
fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    match t.len() {
        16 => calls::parse_timestamp(&format!("{t}:00Z")),
        19 => calls::parse_timestamp(&format!("{t}Z")),
        _ => calls::parse_timestamp(t),
    }
}

fn query_string(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if parts.is_empty() {
        "/calls".to_string()
    } else {
        format!("/calls?{}", parts.join("&"))
    }
}

pub async fn calls(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    // The filter form's key/value pair becomes a `metadata.KEY=VALUE`
    // parameter, so that the address of every list can be shared.
    let (mut fk, mut fv) = (String::new(), String::new());
    let mut canonical: Vec<(String, String)> = Vec::new();
    for (k, v) in &params {
        match k.as_str() {
            "fk" => fk = v.trim().to_string(),
            "fv" => fv = v.trim().to_string(),
            "from" | "to" if !v.trim().is_empty() => canonical.push((k.clone(), v.trim().to_string())),
            k if k.starts_with("metadata.") && k.len() > "metadata.".len() => {
                canonical.push((k.to_string(), v.clone()))
            }
            _ => {}
        }
    }
    if !fk.is_empty() {
        canonical.push((format!("metadata.{fk}"), fv));
        return Redirect::to(&query_string(&canonical)).into_response();
    }
    let page: u64 = params
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let value = |name: &str| {
        canonical
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (from, to) = (value("from"), value("to"));
    let query = CallQuery {
        limit: PAGE_SIZE,
        // The use case refuses pages past its bound on offsets.
        offset: (page - 1).saturating_mul(u64::from(PAGE_SIZE)),
        from_ms: parse_time(&from),
        to_ms: parse_time(&to),
        metadata: canonical
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("metadata.").map(|k| (k.to_string(), v.clone())))
            .collect(),
        ..CallQuery::default()
    };
    let (total, records) = match calls::list_calls(&state.services, &s.tenant, &query).await {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let tables = match tables::list_tables(&state.services, &s.tenant).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let any_calls_at_all = if total == 0 && !query.metadata.is_empty() {
        let everything = CallQuery {
            limit: 1,
            ..Default::default()
        };
        calls::list_calls(&state.services, &s.tenant, &everything)
            .await
            .map(|(n, _)| n > 0)
            .unwrap_or(true)
    } else {
        total > 0
    };
    // Columns: the product keys, then each table's key column.
    let mut columns: Vec<String> = vec!["phonenumber".into()];
    for t in &tables {
        let key = t.table.options.key.as_str().to_string();
        if !columns.contains(&key) {
            columns.push(key);
        }
    }
    let rows = records.iter().map(|c| call_row(c, &columns)).collect();
    let filters = canonical
        .iter()
        .enumerate()
        .filter_map(|(i, (k, v))| {
            let key = k.strip_prefix("metadata.")?;
            let rest: Vec<(String, String)> = canonical
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p.clone())
                .collect();
            Some(Filter {
                key: key.to_string(),
                value: v.clone(),
                remove_href: query_string(&rest),
            })
        })
        .collect();
    let link = |p: u64| {
        let mut pairs = canonical.clone();
        pairs.push(("page".into(), p.to_string()));
        query_string(&pairs)
    };
    let first = if total == 0 { 0 } else { query.offset + 1 };
    let last = (query.offset + records.len() as u64).min(total);
    render(CallsPage {
        tenant: Some(s.tenant_slug.clone()),
        csrf: s.csrf.clone(),
        columns,
        rows,
        filters,
        from,
        to,
        total,
        first,
        last,
        prev_href: (page > 1).then(|| link(page - 1)),
        next_href: (last < total).then(|| link(page + 1)),
        has_tables: !tables.is_empty(),
        any_calls_at_all,
        self_href: if page > 1 {
            link(page)
        } else {
            query_string(&canonical)
        },
        live: page == 1,
    })
}

fn call_row(c: &CallRecord, columns: &[String]) -> CallRow {
    let merged = merged_metadata(&c.metadata, &c.enrichment);
    let added: Vec<String> = c
        .enrichment
        .iter()
        .flat_map(|r| r.added.iter())
        .filter(|(k, _)| !columns.contains(k))
        .take(4)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    CallRow {
        unique_id: c.unique_id.clone(),
        time: when(c.timestamp_ms),
        source: c.source.as_str(),
        cells: columns
            .iter()
            .map(|k| merged.get(k).cloned().unwrap_or_default())
            .collect(),
        added: added.join(" · "),
        badges: c.enrichment.iter().map(status_badge).collect(),
    }
}

// ---------------------------------------------------------------- one call

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
    tenant: Option<String>,
    csrf: String,
    unique_id: String,
    time: String,
    source: &'static str,
    external_id: String,
    own: Vec<MetaRow>,
    added: Vec<MetaRow>,
    results: Vec<ResultRow>,
    audio_href: Option<String>,
}

pub async fn call(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(unique_id): Path<String>,
) -> Response {
    let c = match calls::get_call(&state.services, &s.tenant, &unique_id).await {
        Ok(c) => c,
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
                key: k.clone(),
                value: v.clone(),
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
        tenant: Some(s.tenant_slug.clone()),
        csrf: s.csrf.clone(),
        time: when(c.timestamp_ms),
        source: c.source.as_str(),
        external_id: c.external_id.clone().unwrap_or_default(),
        own,
        added,
        results,
        audio_href: c
            .audio_key
            .as_ref()
            .map(|_| format!("/calls/{}/audio", encode(&c.unique_id))),
        unique_id: c.unique_id,
    })
}

pub async fn call_audio(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(unique_id): Path<String>,
) -> Response {
    match calls::call_audio(&state.services, &s.tenant, &unique_id).await {
        Ok((bytes, content_type)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(e) => error_page(e),
    }
}

/// `2026-01-30 12:34:56` (UTC, to the second).
fn when(ms: i64) -> String {
    calls::format_timestamp(ms)
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

fn short(id: &str) -> String {
    // Version ids are UUIDv7: the last part tells them apart at a glance.
    id.rsplit('-').next().unwrap_or(id).chars().take(12).collect()
}

// ---------------------------------------------------------------- tables

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
}

struct TableView {
    name: String,
    key: String,
    match_mode: String,
    region: String,
    duplicates: String,
    bad_rows: String,
    active: Option<VersionRow>,
    columns: String,
    match_rate: String,
    versions: Vec<VersionRow>,
}

#[derive(Template)]
#[template(path = "tables.html")]
struct TablesPage {
    tenant: Option<String>,
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

fn version_row(v: &VersionRecord, active: Option<&str>) -> VersionRow {
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
        key: o.key.as_str().to_string(),
        match_mode: enum_name(&o.match_mode),
        region: o.region.clone().unwrap_or_default(),
        duplicates: enum_name(&o.duplicates),
        bad_rows: enum_name(&o.bad_rows),
        active: active.map(|v| version_row(v, active_id)),
        columns: active.map(|v| v.report.columns.join(", ")).unwrap_or_default(),
        match_rate,
        versions: d.versions.iter().map(|v| version_row(v, active_id)).collect(),
    })
}

async fn tables_page(
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
        tenant: Some(s.tenant_slug.clone()),
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
pub struct TablesQuery {
    notice: Option<String>,
}

pub async fn tables(
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
        _ => None,
    };
    tables_page(&state, &s, notice, None).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
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
}

fn options_from(form: &SettingsForm) -> Result<TableOptions, AppError> {
    let mut json = serde_json::Map::new();
    json.insert("key".into(), form.key.trim().into());
    for (name, value) in [
        ("match", &form.match_mode),
        ("duplicates", &form.duplicates),
        ("bad_rows", &form.bad_rows),
        ("region", &form.region),
    ] {
        if !value.trim().is_empty() {
            json.insert(name.into(), value.trim().into());
        }
    }
    serde_json::from_value(serde_json::Value::Object(json))
        .map_err(|e| AppError::invalid("settings", format!("invalid table settings: {e}")))
}

async fn save_settings(
    state: &WebState,
    s: &web_sessions::WebSession,
    name: &str,
    form: &SettingsForm,
) -> Response {
    let result = async {
        let name = tables::parse_table_name(name)?;
        let options = options_from(form)?;
        tables::configure_table(&state.services, &s.tenant, &name, options).await
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

pub async fn create_table(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Form(form): Form<SettingsForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let name = form.name.clone().unwrap_or_default();
    save_settings(&state, &s, name.trim(), &form).await
}

pub async fn table_settings(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(name): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    save_settings(&state, &s, &name, &form).await
}

/// The form's upload: the file is streamed into the upload policy's spool
/// (refused with 413 as soon as it passes `[limits] max_file_bytes`, from its
/// declared length or while it arrives, before anything is stored).
pub async fn upload(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Path(name): Path<String>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && let Err(e) = uploads::check_declared_size(&state.services, n.saturating_sub(crate::FORM_OVERHEAD))
    {
        return upload_refused(&state, &s, e).await;
    }
    let mut csrf = String::new();
    let mut file: Option<(Option<String>, uploads::Received)> = None;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let limit = state.services.limits.max_file_bytes;
                let e = AppError::TooLarge(format!("the upload is over the limit of {limit} bytes"));
                return upload_refused(&state, &s, e).await;
            }
            Err(e) => {
                return tables_page(
                    &state,
                    &s,
                    None,
                    Some(format!("The upload could not be read: {e}")),
                )
                .await;
            }
        };
        let field_name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        if field_name == "file" {
            let mut incoming = match uploads::Incoming::start(&state.services).await {
                Ok(i) => i,
                Err(e) => return error_page(e),
            };
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = incoming.write(&chunk).await {
                            return upload_refused(&state, &s, e).await;
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        let limit = state.services.limits.max_file_bytes;
                        let e = AppError::TooLarge(format!("the upload is over the limit of {limit} bytes"));
                        return upload_refused(&state, &s, e).await;
                    }
                    Err(e) => {
                        return tables_page(&state, &s, None, Some(format!("The upload was cut off: {e}")))
                            .await;
                    }
                }
            }
            match incoming.finish().await {
                Ok(received) => file = Some((filename, received)),
                Err(e) => return error_page(e),
            }
        } else {
            match field.bytes().await {
                Ok(bytes) if field_name == "csrf" => {
                    csrf = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned()
                }
                Ok(_) => {}
                Err(e) => {
                    return tables_page(&state, &s, None, Some(format!("The upload was cut off: {e}"))).await;
                }
            }
        }
    }
    if !web_sessions::csrf_matches(&s, &csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let Some((filename, upload)) = file.filter(|(_, u)| !u.is_empty()) else {
        return tables_page(&state, &s, None, Some("Choose a CSV file to upload.".into())).await;
    };
    let table = match tables::parse_table_name(&name) {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    match tables::upload_reference_table(
        &state.services,
        &s.tenant,
        &table,
        upload,
        Channel::Web,
        filename,
        None,
    )
    .await
    {
        Ok(outcome) if outcome.unchanged => Redirect::to("/tables?notice=unchanged").into_response(),
        Ok(outcome) if outcome.activated => Redirect::to("/tables?notice=uploaded").into_response(),
        Ok(outcome) => {
            let why = outcome.version.report.error.clone().unwrap_or_default();
            tables_page(
                &state,
                &s,
                None,
                Some(format!(
                    "The upload was rejected; the previous version stays active. {why}"
                )),
            )
            .await
        }
        Err(e @ (AppError::Invalid { .. } | AppError::NotFound(_))) => {
            tables_page(&state, &s, None, Some(e.to_string())).await
        }
        Err(e @ (AppError::TooLarge(_) | AppError::Busy { .. })) => upload_refused(&state, &s, e).await,
        Err(e) => error_page(e),
    }
}

/// The tables page with why an upload was refused, under the status the
/// refusal calls for: 413 (too large) or 503 with `Retry-After` (busy).
async fn upload_refused(state: &WebState, s: &web_sessions::WebSession, e: AppError) -> Response {
    let (status, retry_after) = match &e {
        AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
        AppError::Busy { retry_after_secs, .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after_secs)),
        _ => return error_page(e),
    };
    let mut response = tables_page(state, s, None, Some(format!("The upload was refused: {e}"))).await;
    *response.status_mut() = status;
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    response
}
