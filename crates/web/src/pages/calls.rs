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
use crate::session::{LoggedIn, encode};

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
}

impl Address {
    /// The address of `params`, or where to go instead: the filter form's
    /// key/value pair becomes a `metadata.KEY=VALUE` parameter, so that the
    /// address of every list can be shared.
    fn of(params: &[(String, String)]) -> Result<Address, Redirect> {
        let (mut fk, mut fv) = (String::new(), String::new());
        let mut canonical: Vec<(String, String)> = Vec::new();
        let mut page = None;
        for (k, v) in params {
            match k.as_str() {
                "fk" => fk = v.trim().to_string(),
                "fv" => fv = v.trim().to_string(),
                "page" => {
                    page.get_or_insert_with(|| v.clone());
                }
                "from" | "to" if !v.trim().is_empty() => canonical.push((k.clone(), v.trim().to_string())),
                k if k.starts_with("metadata.") && k.len() > "metadata.".len() => {
                    canonical.push((k.to_string(), v.clone()))
                }
                _ => {}
            }
        }
        if !fk.is_empty() {
            canonical.push((format!("metadata.{fk}"), fv));
            return Err(Redirect::to(&query_string(&canonical)));
        }
        Ok(Address { canonical, page })
    }

    /// The pairs the query is read from: the filters and the page.
    fn query_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.canonical.clone();
        if let Some(page) = &self.page {
            pairs.push(("page".into(), page.clone()));
        }
        pairs
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
    let (total, records) = match calls::list_calls(&state.services, &s.tenant, &query).await {
        Ok(page) => (page.count, page.calls),
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
    let first = if total == 0 { 0 } else { query.offset + 1 };
    let last = (query.offset + records.len() as u64).min(total);
    render(CallsPage {
        tenant: Some(s.tenant_slug.clone()),
        csrf: s.csrf.clone(),
        columns,
        rows,
        filters: address.filters(),
        from: address.value("from"),
        to: address.value("to"),
        total,
        first,
        last,
        prev_href: (page > 1).then(|| address.page_href(page - 1)),
        next_href: (last < total).then(|| address.page_href(page + 1)),
        has_tables: !tables.is_empty(),
        any_calls_at_all,
        self_href: if page > 1 {
            address.page_href(page)
        } else {
            query_string(&address.canonical)
        },
        live: page == 1,
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
