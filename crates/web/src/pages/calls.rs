//! The list of calls: newest first, filtered by metadata and time, each
//! filter part of the page's address so that a list can be shared.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::store::{CallQuery, CallRecord};
use callmeta_app::usecases::{calls, tables, web_sessions};
use callmeta_core::enrich::merged_metadata;

use super::{Badge, error_page, invalid_query, render, status_badge, when};
use crate::WebState;
use crate::session::{LoggedIn, Who, encode};

struct CallRow {
    unique_id: String,
    time: String,
    source: &'static str,
    cells: Vec<String>,
    added: String,
    badges: Vec<Badge>,
}

struct Filter {
    /// The parameter, as the address has it.
    param: String,
    key: String,
    /// How it compares, as a person reads it.
    op: &'static str,
    value: String,
    /// The parameter's value.
    raw: String,
    remove_href: String,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    tenant: Option<Who>,
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
    /// The tables, for the enrichment status filter.
    table_names: Vec<String>,
    /// This list as a CSV file.
    export_href: String,
    /// The most common values of one key among the matching calls.
    facets: Option<FacetBox>,
    /// `false` when more calls match than `total` says.
    total_exact: bool,
}

struct FacetBox {
    key: String,
    /// Value, count, the list filtered by it.
    values: Vec<(String, u64, String)>,
    missing: u64,
    exact: bool,
    calls: u64,
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

/// The list's address as the page shows and shares it: `from`, `to` and
/// `metadata.KEY=VALUE` in the order given (empty times and the page's own
/// controls left out), and the page number asked for, if any.
struct Address {
    canonical: Vec<(String, String)>,
    page: Option<String>,
    cursor: Option<String>,
}

impl Address {
    /// The address of `params`, or where to go instead: the filter form's
    /// key/value pair becomes a `metadata.KEY=VALUE` parameter, so that the
    /// address of every list can be shared.
    fn of(params: &[(String, String)]) -> Result<Address, Redirect> {
        // The form's rows: a key, how it is compared, a value.
        let (mut fk, mut fop, mut fv) = (Vec::new(), Vec::new(), Vec::new());
        let mut canonical: Vec<(String, String)> = Vec::new();
        let mut page = None;
        let mut cursor = None;
        let mut facet = None;
        let mut status = None;
        for (k, v) in params {
            match k.as_str() {
                "fk" => fk.push(v.trim().to_string()),
                "fop" => fop.push(v.trim().to_string()),
                "fv" => fv.push(v.trim().to_string()),
                "fstatus" => status = Some(v.trim().to_string()),
                "page" => {
                    page.get_or_insert_with(|| v.clone());
                }
                "cursor" => {
                    cursor.get_or_insert_with(|| v.clone());
                }
                "facet" if !v.trim().is_empty() => facet = Some(v.trim().to_string()),
                "from" | "to" if !v.trim().is_empty() => canonical.push((k.clone(), v.trim().to_string())),
                k if (k.starts_with("metadata.") && k.len() > "metadata.".len())
                    || (k.starts_with("enrichment.") && k.len() > "enrichment.".len()) =>
                {
                    canonical.push((k.to_string(), v.clone()))
                }
                _ => {}
            }
        }
        let mut redirect = false;
        for (i, key) in fk.iter().enumerate() {
            if key.is_empty() {
                continue;
            }
            let value = fv.get(i).cloned().unwrap_or_default();
            let pair = match fop.get(i).map(String::as_str) {
                Some("prefix") => (format!("metadata.{key}.prefix"), value),
                Some("missing") => (format!("metadata.{key}.missing"), "true".to_string()),
                Some("present") => (format!("metadata.{key}.missing"), "false".to_string()),
                _ => (format!("metadata.{key}"), value),
            };
            canonical.push(pair);
            redirect = true;
        }
        // `TABLE=STATUS` from the status select.
        if let Some((table, status)) = status.as_deref().and_then(|s| s.split_once('=')) {
            canonical.push((format!("enrichment.{table}"), status.to_string()));
            redirect = true;
        }
        if let Some(facet) = &facet {
            canonical.push(("facet".into(), facet.clone()));
        }
        if redirect {
            return Err(Redirect::to(&query_string(&canonical)));
        }
        Ok(Address {
            canonical,
            page,
            cursor,
        })
    }

    /// The pairs the query is read from: the filters and the page.
    fn query_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .canonical
            .iter()
            .filter(|(k, _)| k != "facet")
            .cloned()
            .collect();
        if let Some(page) = &self.page {
            pairs.push(("page".into(), page.clone()));
        }
        if let Some(cursor) = &self.cursor {
            pairs.push(("cursor".into(), cursor.clone()));
        }
        pairs
    }

    /// The filters alone, as the export takes them.
    fn filter_pairs(&self) -> Vec<(String, String)> {
        self.canonical
            .iter()
            .filter(|(k, _)| k != "facet")
            .cloned()
            .collect()
    }

    /// The address of the page after `cursor`.
    fn cursor_href(&self, cursor: &str) -> String {
        let mut pairs = self.canonical.clone();
        pairs.push(("cursor".into(), cursor.to_string()));
        query_string(&pairs)
    }

    fn value(&self, name: &str) -> String {
        self.canonical
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The address of page `page` of this list.
    fn page_href(&self, page: u64) -> String {
        let mut pairs = self.canonical.clone();
        pairs.push(("page".into(), page.to_string()));
        query_string(&pairs)
    }

    /// One chip per metadata filter, each with the address without it.
    fn filters(&self) -> Vec<Filter> {
        let canonical = &self.canonical;
        canonical
            .iter()
            .enumerate()
            .filter_map(|(i, (k, v))| {
                let (key, op, value) = match k.strip_prefix("metadata.") {
                    Some(key) => match (key.strip_suffix(".prefix"), key.strip_suffix(".missing")) {
                        (Some(key), _) => (key.to_string(), "starts with", v.clone()),
                        (_, Some(key)) if v == "true" => (key.to_string(), "is missing", String::new()),
                        (_, Some(key)) => (key.to_string(), "is present", String::new()),
                        _ => (key.to_string(), "=", v.clone()),
                    },
                    None => (
                        format!("result of {}", k.strip_prefix("enrichment.")?),
                        "=",
                        v.clone(),
                    ),
                };
                let rest: Vec<(String, String)> = canonical
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p.clone())
                    .collect();
                Some(Filter {
                    param: k.clone(),
                    key,
                    op,
                    value,
                    raw: v.clone(),
                    remove_href: query_string(&rest),
                })
            })
            .collect()
    }
}

/// The query is read by the calls use case, as the API's is; its bounds
/// are checked there too.
pub(crate) async fn calls(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let address = match Address::of(&params) {
        Ok(address) => address,
        Err(redirect) => return redirect.into_response(),
    };
    let query = match calls::parse_call_query(&address.query_pairs()) {
        Ok(query) => query,
        Err(e) => return invalid_query(&e),
    };
    let (total, total_exact, records, next_cursor) =
        match calls::list_calls(&state.services, &s.tenant, &query).await {
            Ok(page) => (page.count, page.count_exact, page.calls, page.next_cursor),
            Err(e) => return error_page(e),
        };
    let tables = match tables::list_tables(&state.services, &s.tenant).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let any_calls_at_all = total > 0 || (!query.filters.is_empty() && any_calls(&state, &s).await);
    // Columns: the product keys, then each table's key column.
    let mut columns: Vec<String> = vec!["phonenumber".into()];
    for t in &tables {
        let key = t.table.options.key.as_str().to_string();
        if !columns.contains(&key) {
            columns.push(key);
        }
    }
    let rows = records.iter().map(|c| call_row(c, &columns)).collect();
    let page = query.offset / u64::from(query.limit.max(1)) + 1;
    let first = if total == 0 || address.cursor.is_some() {
        0
    } else {
        query.offset + 1
    };
    let last = (query.offset + records.len() as u64).min(total);
    let facet_key = address
        .canonical
        .iter()
        .find(|(k, _)| k == "facet")
        .map(|(_, v)| v.clone())
        .or_else(|| columns.get(1).cloned());
    let facets = match facet_key {
        Some(key) if !records.is_empty() => {
            match calls::call_facets(&state.services, &s.tenant, &query, &key, 10).await {
                Ok(f) => Some(FacetBox {
                    values: f
                        .values
                        .into_iter()
                        .map(|v| {
                            let mut pairs = address.canonical.clone();
                            pairs.push((format!("metadata.{key}"), v.value.clone()));
                            (v.value, v.count, query_string(&pairs))
                        })
                        .collect(),
                    key,
                    missing: f.missing,
                    exact: f.exact,
                    calls: f.calls,
                }),
                Err(e) => return error_page(e),
            }
        }
        _ => None,
    };
    let export_pairs = address.filter_pairs();
    let export_href = match query_string(&export_pairs).strip_prefix("/calls") {
        Some(rest) => format!("/calls/export{rest}"),
        None => "/calls/export".to_string(),
    };
    render(CallsPage {
        tenant: Some(Who::of(&s)),
        csrf: s.csrf.clone(),
        columns,
        rows,
        filters: address.filters(),
        from: address.value("from"),
        to: address.value("to"),
        total,
        first,
        last,
        prev_href: if address.cursor.is_some() {
            Some(query_string(&address.canonical))
        } else {
            (page > 1).then(|| address.page_href(page - 1))
        },
        next_href: next_cursor.map(|c| address.cursor_href(&c.to_string())),
        has_tables: !tables.is_empty(),
        any_calls_at_all,
        self_href: if page > 1 {
            address.page_href(page)
        } else {
            query_string(&address.canonical)
        },
        live: page == 1 && address.cursor.is_none(),
        table_names: tables.iter().map(|t| t.table.name.as_str().to_string()).collect(),
        export_href,
        facets,
        total_exact,
    })
}

/// Whether the tenant has any call at all (a filtered list is empty): the
/// page then says that no call matches rather than that none came yet.
async fn any_calls(state: &WebState, s: &web_sessions::WebSession) -> bool {
    let everything = CallQuery {
        limit: 1,
        ..Default::default()
    };
    calls::list_calls(&state.services, &s.tenant, &everything)
        .await
        .map(|page| !page.calls.is_empty())
        .unwrap_or(true)
}

fn call_row(c: &CallRecord, columns: &[String]) -> CallRow {
    let merged = merged_metadata(&c.metadata, &c.enrichment);
    let added: Vec<String> = c
        .enrichment
        .iter()
        .flat_map(|r| r.added.iter())
        .filter(|(k, _)| !columns.iter().any(|c| c == k))
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

/// The list as a file: every call its filters match (not one page), as CSV
/// for a spreadsheet (with a byte order mark, for Excel) or, with
/// `format=ndjson`, one JSON call per line. Streamed page by page.
pub(crate) async fn export(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    use callmeta_app::usecases::export::{Export, ExportFormat};
    let format = match params
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        Some("ndjson") => ExportFormat::Ndjson,
        _ => ExportFormat::Csv { bom: true },
    };
    let address = match Address::of(&params) {
        Ok(address) => address,
        Err(redirect) => return redirect.into_response(),
    };
    let query = match calls::parse_call_query(&address.filter_pairs()) {
        Ok(query) => query,
        Err(e) => return invalid_query(&e),
    };
    let export = match Export::start(&state.services, &s.tenant, &query, format).await {
        Ok(export) => export,
        Err(e) => return error_page(e),
    };
    let body = export.into_stream(state.services.clone(), s.tenant.clone());
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.content_type().to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"calls.{}\"", format.extension()),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}
