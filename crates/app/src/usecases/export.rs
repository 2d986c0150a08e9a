//! Exporting calls: every call a list query matches, as CSV or NDJSON,
//! read page by page so that memory stays bounded however many match.
//!
//! CSV columns: `unique_id`, `timestamp`, `source`, `external_id`, then
//! every metadata key found on the tenant's calls (own and added, in byte
//! order), then `TABLE.status` per table. A cell that a spreadsheet would
//! read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) gets a leading `'`, as OWASP and Excel expect; these values come
//! from a CRM and from callers.

use std::collections::BTreeMap;
use std::sync::Arc;

use callmeta_core::enrich::{EnrichmentResult, Metadata};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::AppError;
use super::Services;
use super::calls::{check_query, format_timestamp};
use crate::store::{CallPage, CallQuery, CallRecord, Cursor, Store, StoreError, TenantId};

/// Calls read per page of an export.
pub const EXPORT_PAGE: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv { bom: bool },
    Ndjson,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv { .. } => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv { .. } => "csv",
            ExportFormat::Ndjson => "ndjson",
        }
    }
}

/// An export under way: its columns, and where the next page starts.
///
/// While one page is written out, the next is already being read (one
/// page ahead, no more: memory stays two pages), so that the store's reading
/// and the formatting use both cores.
pub struct Export {
    format: ExportFormat,
    query: CallQuery,
    keys: Vec<String>,
    tables: Vec<String>,
    started: bool,
    done: bool,
    calls_written: u64,
    /// The read of the page after the last one returned, under way.
    ahead: Option<JoinHandle<Result<CallPage, StoreError>>>,
}

impl Drop for Export {
    fn drop(&mut self) {
        // An export given up (its client went away) reads nothing more.
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}

/// Starts reading the page `query` names, on its own task.
fn read_ahead(
    store: Arc<dyn Store>,
    tenant: TenantId,
    query: CallQuery,
) -> JoinHandle<Result<CallPage, StoreError>> {
    tokio::spawn(async move { store.list_calls(&tenant, &query).await })
}

impl Export {
    /// Checks the query and reads the columns (a few index seeks).
    pub async fn start(
        services: &Services,
        tenant: &TenantId,
        query: &CallQuery,
        format: ExportFormat,
    ) -> Result<Export, AppError> {
        let query = CallQuery {
            limit: EXPORT_PAGE,
            offset: 0,
            uncounted: true,
            ..query.clone()
        };
        check_query(&query)?;
        let names = services.store.call_key_names(tenant).await?;
        let keys = names
            .iter()
            .filter_map(|n| n.strip_prefix("m:"))
            .map(str::to_string)
            .collect();
        let tables = names
            .iter()
            .filter_map(|n| n.strip_prefix("e:"))
            .map(str::to_string)
            .collect();
        Ok(Export {
            format,
            query,
            keys,
            tables,
            started: false,
            done: false,
            calls_written: 0,
            ahead: None,
        })
    }

    /// The next bytes of the file: the header first, then one page of
    /// calls at a time; `None` when every matching call was written.
    pub async fn next_chunk(
        &mut self,
        services: &Services,
        tenant: &TenantId,
    ) -> Result<Option<Vec<u8>>, AppError> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let ExportFormat::Csv { bom } = self.format {
                if bom {
                    out.extend_from_slice("\u{feff}".as_bytes());
                }
                let mut header: Vec<String> = ["unique_id", "timestamp", "source", "external_id"]
                    .into_iter()
                    .map(String::from)
                    .collect();
                header.extend(self.keys.iter().cloned());
                header.extend(self.tables.iter().map(|t| format!("{t}.status")));
                write_csv_record(&mut out, header.iter().map(String::as_str));
            }
            return Ok(Some(out));
        }
        if self.done {
            return Ok(None);
        }
        let page = match self.ahead.take() {
            Some(ahead) => ahead
                .await
                .map_err(|e| AppError::Unexpected(anyhow::anyhow!("reading a page of calls: {e}")))??,
            None => services.store.list_calls(tenant, &self.query).await?,
        };
        let CallPage {
            calls, next_cursor, ..
        } = page;
        match next_cursor {
            Some(cursor) => {
                self.query.cursor = Some(cursor);
                self.ahead = Some(read_ahead(
                    services.store.clone(),
                    tenant.clone(),
                    self.query.clone(),
                ));
            }
            None => self.done = true,
        }
        match self.format {
            ExportFormat::Csv { .. } => {
                // One writer (and its buffer) for the page, not per call.
                let mut writer = csv_writer(&mut out);
                for call in &calls {
                    self.csv_row(&mut writer, call);
                }
                // Writing to a Vec cannot fail.
                let _ = writer.flush();
            }
            ExportFormat::Ndjson => {
                for call in &calls {
                    ndjson_row(&mut out, call);
                }
            }
        }
        self.calls_written += calls.len() as u64;
        Ok(if calls.is_empty() && self.done {
            None
        } else {
            Some(out)
        })
    }

    /// A call's cells: a key's value is the call's own, else the first
    /// table's that added it (as `merged_metadata` has it, without building
    /// the map).
    fn csv_row(&self, writer: &mut csv::Writer<&mut Vec<u8>>, call: &CallRecord) {
        let timestamp = format_timestamp(call.timestamp_ms);
        let fixed = [
            call.unique_id.as_str(),
            timestamp.as_str(),
            call.source.as_str(),
            call.external_id.as_deref().unwrap_or(""),
        ];
        // Writing to a Vec cannot fail.
        for cell in fixed {
            let _ = writer.write_field(neutralize(cell).as_bytes());
        }
        for key in &self.keys {
            let value = call
                .metadata
                .get(key)
                .map(String::as_str)
                .or_else(|| call.enrichment.iter().find_map(|r| r.added.get(key)))
                .unwrap_or("");
            let _ = writer.write_field(neutralize(value).as_bytes());
        }
        for table in &self.tables {
            let status = call
                .enrichment
                .iter()
                .find(|r| &r.table == table)
                .map_or("", |r| r.status.as_str());
            let _ = writer.write_field(status.as_bytes());
        }
        let _ = writer.write_record(None::<&[u8]>);
    }

    /// How many calls the chunks returned so far hold.
    pub fn calls_written(&self) -> u64 {
        self.calls_written
    }

    /// The cursor after the last page written (for a caller that resumes).
    pub fn cursor(&self) -> Option<Cursor> {
        self.query.cursor
    }

    /// The file as a stream of chunks, one page at a time (what a response
    /// body holds is one page and what the socket has not taken); an error
    /// ends it, logged, so the client sees the file cut short.
    pub fn into_stream(
        self,
        services: std::sync::Arc<Services>,
        tenant: TenantId,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(Some(self), move |export| {
            let (services, tenant) = (services.clone(), tenant.clone());
            async move {
                let mut export = export?;
                match export.next_chunk(&services, &tenant).await {
                    Ok(Some(chunk)) => Some((Ok(bytes::Bytes::from(chunk)), Some(export))),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "an export stopped");
                        Some((Err(std::io::Error::other(e.to_string())), None))
                    }
                }
            }
        })
    }
}

/// A call's NDJSON line, borrowed from the record (no JSON tree built):
/// its members in the order a JSON object of the API has them.
#[derive(Serialize)]
struct Line<'a> {
    audio_state: &'static str,
    enrichment: &'a [EnrichmentResult],
    external_id: Option<&'a str>,
    /// Own keys, then what tables added (as `merged_metadata` has it).
    metadata: BTreeMap<&'a str, &'a str>,
    own_metadata: &'a Metadata,
    source: &'static str,
    timestamp: String,
    unique_id: &'a str,
}

fn ndjson_row(out: &mut Vec<u8>, call: &CallRecord) {
    let mut metadata: BTreeMap<&str, &str> = call
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for result in &call.enrichment {
        for (k, v) in &result.added {
            metadata.entry(k).or_insert(v);
        }
    }
    let line = Line {
        audio_state: super::calls::audio_state(call),
        enrichment: &call.enrichment,
        external_id: call.external_id.as_deref(),
        metadata,
        own_metadata: &call.metadata,
        source: call.source.as_str(),
        timestamp: format_timestamp(call.timestamp_ms),
        unique_id: &call.unique_id,
    };
    // Serialising plain data to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// A cell as a spreadsheet shows it, not as a formula it would run.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_writer(out: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out)
}

fn write_csv_record<'a>(out: &mut Vec<u8>, cells: impl IntoIterator<Item = impl AsRef<str> + 'a>) {
    let mut writer = csv_writer(out);
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(cells.into_iter().map(|c| c.as_ref().to_string()));
    let _ = writer.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralized_and_others_kept() {
        for (cell, shown) in [
            ("=1+2", "'=1+2"),
            ("+33123", "'+33123"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("plain", "plain"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(neutralize(cell), shown);
        }
    }

    #[test]
    fn csv_records_quote_what_needs_it() {
        let mut out = Vec::new();
        write_csv_record(&mut out, ["a,b", "say \"hi\"", "two\nlines", "x"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",x\r\n"
        );
    }
}
