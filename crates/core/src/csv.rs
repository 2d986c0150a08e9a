//! From the bytes of a CRM export to a [`TableIndex`] and a [`Report`].
//!
//! One parser serves every caller ([`ingest`] and [`parse_records`]):
//!
//! 1. `with_text`: the encoding, from a byte-order mark or from whether the
//!    bytes are valid UTF-8 (checked once, record by record, as they parse);
//! 2. [`sniff`]: the delimiter, counted outside quotes on the header line;
//! 3. `Parser`: RFC 4180 records from the `csv` crate, reusing one record
//!    buffer, with cells trimmed, blank lines skipped and the markdown-like
//!    pipe-table form (outer pipes, `|---|` separator) unwrapped;
//! 4. [`ingest`]: checks each row against the header, the limits and the
//!    table options, and appends it to an `IndexBuilder`.
//!
//! Nothing here panics on any input: every failure becomes a [`CsvError`]
//! whose message names the line and the field.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ColumnName;
use crate::index::{IndexBuilder, OnDuplicate, Pushed, TableIndex};
use crate::matching::{MatchMode, Matcher, MatcherError};

/// What to do with rows whose key repeats an earlier row's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePolicy {
    /// Keep the first row of each key.
    #[default]
    First,
    /// Keep the last row of each key.
    Last,
    /// Refuse the upload.
    Reject,
    /// Accept the upload; a lookup of a duplicated key answers `ambiguous`.
    Ambiguous,
}

impl DuplicatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicatePolicy::First => "first",
            DuplicatePolicy::Last => "last",
            DuplicatePolicy::Reject => "reject",
            DuplicatePolicy::Ambiguous => "ambiguous",
        }
    }
}

/// What to do with a row that has a problem (field count, empty key, ...).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BadRowPolicy {
    /// Refuse the whole upload at the first bad row.
    #[default]
    Reject,
    /// Skip the row, count it and list it in the report.
    Skip,
}

/// A reference table's settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TableOptions {
    pub key: ColumnName,
    #[serde(rename = "match", default)]
    pub match_mode: MatchMode,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub duplicates: DuplicatePolicy,
    #[serde(default)]
    pub bad_rows: BadRowPolicy,
}

/// Resource limits on one upload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_columns: usize,
    pub max_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 30,
            max_columns: 1024,
            max_field_bytes: 1 << 20,
        }
    }
}

/// A row that was not accepted, by physical line (1-based, where it starts).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RowProblem {
    pub line: u64,
    pub reason: String,
}

/// What happened to an upload; the same for every channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    pub accepted: bool,
    /// When rejected: one sentence naming the line or field.
    pub error: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub encoding: Option<String>,
    /// `comma`, `semicolon`, `tab` or `pipe`.
    pub delimiter: Option<String>,
    /// The markdown-like pipe-table form was recognised.
    pub pipe_table: bool,
    pub columns: Vec<String>,
    pub key_column: String,
    /// Data rows seen (blank lines and a pipe-table separator are not rows).
    pub rows_read: u64,
    /// Rows without problems, duplicates included.
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// The first [`MAX_PROBLEMS`] problems.
    pub problems: Vec<RowProblem>,
    /// Distinct key values that appear on more than one row.
    pub duplicate_keys: u64,
    /// The first [`MAX_DUPLICATE_EXAMPLES`] of them.
    pub duplicate_examples: Vec<String>,
    /// Rows whose key repeats an earlier row's.
    #[serde(default)]
    pub duplicate_rows: u64,
    /// Distinct keys that can be looked up.
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub match_mode: MatchMode,
    #[serde(default)]
    pub duplicates_policy: DuplicatePolicy,
}

pub const MAX_PROBLEMS: usize = 100;
pub const MAX_DUPLICATE_EXAMPLES: usize = 10;

/// An accepted upload: the index to activate and its report.
#[derive(Debug)]
pub struct Ingested {
    pub index: TableIndex,
    pub report: Report,
}

/// Why a row was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowIssue {
    #[error("{found} fields, expected {expected} (the header has {expected} columns)")]
    FieldCount { found: usize, expected: usize },
    #[error("the key column {column:?} is empty")]
    EmptyKey { column: String },
    #[error("the {column:?} field is {bytes} bytes, over the {limit}-byte limit")]
    FieldTooLong {
        column: String,
        bytes: usize,
        limit: usize,
    },
    #[error("the key {value:?} is not a phone number{}", region_note(.region))]
    NotAPhoneNumber { value: String, region: Option<String> },
}

fn region_note(region: &Option<String>) -> String {
    match region {
        Some(region) => format!(" (default region {region})"),
        None => " (no default region: national numbers need one)".to_string(),
    }
}

/// Why an upload was refused (or, for [`parse_records`], not parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("file is {bytes} bytes, over the {limit}-byte limit")]
    FileTooLarge { bytes: u64, limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the file holds only blank lines: there is no header line")]
    NoHeader,
    #[error(
        "line {line}: the file contains a NUL byte; it looks like a binary file, or UTF-16 text \
         without a byte-order mark (save it as UTF-8 or as Excel \"Unicode text\")"
    )]
    Binary { line: u64 },
    #[error("the header has {columns} columns, over the limit of {limit}")]
    TooManyColumns { columns: usize, limit: usize },
    #[error("line {line}: column {column} of the header is {bytes} bytes, over the {limit}-byte limit")]
    HeaderFieldTooLong {
        line: u64,
        column: usize,
        bytes: usize,
        limit: usize,
    },
    #[error("line {line}: column {column} of the header has no name")]
    UnnamedColumn { line: u64, column: usize },
    #[error("the header names the column {name:?} twice (columns {first} and {second})")]
    DuplicateColumn {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("the key column {key:?} is not in the header (columns: {columns}){hint}")]
    MissingKeyColumn {
        key: String,
        columns: String,
        hint: String,
    },
    #[error("line {line}: {issue}")]
    Row { line: u64, issue: RowIssue },
    #[error(
        "line {line}: the key {key:?} is already on an earlier line, and the table's duplicates \
         policy is reject ({keys} {} duplicated)", if *.keys == 1 { "key is" } else { "keys are" }
    )]
    DuplicateKey { line: u64, key: String, keys: u64 },
    #[error("invalid table options: {0}")]
    Options(#[from] MatcherError),
    #[error("the table holds over 4 GiB of cell data, more than one version can index")]
    TooLarge,
    /// Only seen when a file with a UTF-8 byte-order mark is not UTF-8
    /// after all and its lossy decoding fails too, which cannot happen;
    /// without a mark, such a file is read as Windows-1252.
    #[error("line {line}: the file is not valid UTF-8")]
    NotUtf8 { line: u64 },
    #[error("line {line}: unreadable record ({detail})")]
    Unreadable { line: u64, detail: String },
    #[error(
        "line {line}: a quoted field starts here and its closing quote is missing, so the rest \
         of the file would be read as one cell (close the quote, or double a quote inside it: \"\")"
    )]
    UnclosedQuote { line: u64 },
}

/// The hex SHA-256 of an upload's bytes, as reported and compared to find an
/// upload equal to the active version.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Ingests an upload. `Err` carries the report of a rejected upload
/// (`accepted: false`, `error` set).
pub fn ingest(bytes: &[u8], options: &TableOptions, limits: &Limits) -> Result<Ingested, Box<Report>> {
    ingest_with_progress(bytes, options, limits, &mut |_| {})
}

/// [`ingest`], calling `progress` with the number of input bytes consumed so
/// far about every [`PROGRESS_STEP`] bytes, and once at the end.
pub fn ingest_with_progress(
    bytes: &[u8],
    options: &TableOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(u64),
) -> Result<Ingested, Box<Report>> {
    let sha256 = sha256_hex(bytes);
    match ingest_unhashed(bytes, options, limits, progress) {
        Ok(mut ingested) => {
            ingested.report.sha256 = sha256;
            Ok(ingested)
        }
        Err(mut report) => {
            report.sha256 = sha256;
            Err(report)
        }
    }
}

/// [`ingest_with_progress`] leaving `report.sha256` empty, for a caller that
/// hashes the bytes on another core meanwhile (while storing them, say) and
/// fills it in.
pub fn ingest_unhashed(
    bytes: &[u8],
    options: &TableOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(u64),
) -> Result<Ingested, Box<Report>> {
    let mut report = Report {
        accepted: false,
        error: None,
        sha256: String::new(),
        bytes: bytes.len() as u64,
        encoding: None,
        delimiter: None,
        pipe_table: false,
        columns: Vec::new(),
        key_column: options.key.as_str().to_string(),
        rows_read: 0,
        rows_accepted: 0,
        rows_rejected: 0,
        problems: Vec::new(),
        duplicate_keys: 0,
        duplicate_examples: Vec::new(),
        duplicate_rows: 0,
        keys: 0,
        match_mode: options.match_mode,
        duplicates_policy: options.duplicates,
    };
    // A file that turns out not to be UTF-8 is parsed a second time; its
    // progress must not go backwards.
    let mut reported = 0u64;
    let mut monotonic = |n: u64| {
        if n > reported {
            reported = n;
            progress(n);
        }
    };
    match build(bytes, options, limits, &mut monotonic, &mut report) {
        Ok(index) => {
            report.accepted = true;
            report.keys = index.len() as u64;
            monotonic(bytes.len() as u64);
            Ok(Ingested { index, report })
        }
        Err(error) => {
            report.error = Some(error.to_string());
            Err(Box::new(report))
        }
    }
}

/// How often [`ingest_with_progress`] reports.
pub const PROGRESS_STEP: u64 = 1 << 20;

fn build(
    bytes: &[u8],
    options: &TableOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(u64),
    report: &mut Report,
) -> Result<TableIndex, CsvError> {
    check_size(bytes, limits)?;
    let matcher = Matcher::new(options.match_mode, options.region.as_deref())?;
    with_text(bytes, |text, encoding| {
        reset(report);
        report.encoding = Some(encoding.to_string());
        build_text(bytes.len(), text, &matcher, options, limits, progress, report)
    })
}

/// Forgets what an attempt that turned out not to be UTF-8 had found.
fn reset(report: &mut Report) {
    report.columns.clear();
    report.rows_read = 0;
    report.rows_accepted = 0;
    report.rows_rejected = 0;
    report.problems.clear();
    report.duplicate_keys = 0;
    report.duplicate_examples.clear();
    report.duplicate_rows = 0;
}

fn build_text(
    input_len: usize,
    text: &[u8],
    matcher: &Matcher,
    options: &TableOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(u64),
    report: &mut Report,
) -> Result<TableIndex, CsvError> {
    let delimiter = sniff(text);
    report.delimiter = Some(delimiter.name().to_string());
    let mut parser = Parser::new(text, delimiter, limits)?;
    report.pipe_table = parser.pipe_table;
    report.columns = parser.header.clone();
    let key = options.key.as_str();
    let key_column = find_key_column(&parser.header, key)?;
    let header = parser.header.clone();

    let on_duplicate = match options.duplicates {
        DuplicatePolicy::First | DuplicatePolicy::Reject => OnDuplicate::KeepFirst,
        DuplicatePolicy::Last => OnDuplicate::KeepLast,
        DuplicatePolicy::Ambiguous => OnDuplicate::MarkAmbiguous,
    };
    let arena_capacity = match matcher.mode() {
        MatchMode::Exact => text.len(),
        _ => text.len() + text.len() / 4,
    };
    let mut builder = IndexBuilder::new(
        parser.header.clone(),
        key_column,
        matcher.clone(),
        on_duplicate,
        arena_capacity,
    );
    let mut lines = LineCounter::new(text);
    let columns = parser.header.len();
    // Scales positions in the decoded text back to input bytes for progress.
    let scale = input_len as f64 / text.len().max(1) as f64;
    let mut next_progress = PROGRESS_STEP;
    let mut first_duplicate: Option<(u64, String)> = None;
    let mut reserved = false;

    while let Some(row) = parser.next_row()? {
        report.rows_read += 1;
        let issue = check_row(&row, columns, key_column, &header, limits, matcher);
        let (issue, normalized) = match issue {
            Ok(normalized) => (None, Some(normalized)),
            Err(issue) => (Some(issue), None),
        };
        if let Some(issue) = issue {
            let offset = row.offset;
            let line = lines.line_at(offset);
            report.rows_rejected += 1;
            if report.problems.len() < MAX_PROBLEMS {
                report.problems.push(RowProblem {
                    line,
                    reason: issue.to_string(),
                });
            }
            if options.bad_rows == BadRowPolicy::Reject {
                return Err(CsvError::Row { line, issue });
            }
            continue;
        }
        let normalized = normalized.unwrap_or_default();
        let key_cell = row.get(key_column);
        let key: &str = if matcher.mode() == MatchMode::Exact {
            key_cell
        } else {
            &normalized
        };
        let pushed = builder
            .push(key, |c| row.get(c))
            .map_err(|_| CsvError::TooLarge)?;
        report.rows_accepted += 1;
        if let Pushed::Duplicate { first_of_key } = pushed {
            report.duplicate_rows += 1;
            if first_of_key {
                report.duplicate_keys += 1;
                if report.duplicate_examples.len() < MAX_DUPLICATE_EXAMPLES {
                    report.duplicate_examples.push(excerpt(key_cell));
                }
            }
            if first_duplicate.is_none() && options.duplicates == DuplicatePolicy::Reject {
                let offset = row.offset;
                first_duplicate = Some((lines.line_at(offset), excerpt(key_cell)));
            }
        }

        let offset = parser.offset();
        if !reserved && report.rows_read == 1024 {
            // Sizes the hash table once from the average row length so far.
            reserved = true;
            let per_row = (offset / 1024).max(1);
            let remaining = (text.len() as u64).saturating_sub(offset) / per_row;
            let rows = remaining + remaining / 16;
            let key_bytes = builder.key_bytes() / 1024 * rows as usize;
            builder.reserve(rows as usize, key_bytes);
        }
        if offset >= next_progress {
            progress(((offset as f64) * scale) as u64);
            next_progress = offset + PROGRESS_STEP;
        }
    }
    if let Some((line, key)) = first_duplicate {
        return Err(CsvError::DuplicateKey {
            line,
            key,
            keys: report.duplicate_keys,
        });
    }
    Ok(builder.finish())
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), CsvError> {
    let size = bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(CsvError::FileTooLarge {
            bytes: size,
            limit: limits.max_file_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(())
}

fn find_key_column(header: &[String], key: &str) -> Result<usize, CsvError> {
    if let Some(i) = header.iter().position(|c| c == key) {
        return Ok(i);
    }
    let shown: Vec<String> = header.iter().take(30).map(|c| excerpt(c)).collect();
    let mut columns = shown.join(", ");
    if header.len() > shown.len() {
        let _ = write!(columns, ", ... {} more", header.len() - shown.len());
    }
    let hint = match header.iter().find(|c| c.to_lowercase() == key.to_lowercase()) {
        Some(c) => format!(
            "; {:?} differs only in case, and names must match exactly",
            excerpt(c)
        ),
        None => String::new(),
    };
    Err(CsvError::MissingKeyColumn {
        key: key.to_string(),
        columns,
        hint,
    })
}

/// Checks one row; on success returns the normalised key when the mode needs
/// one (empty in `exact` mode, where the trimmed cell is the key).
fn check_row(
    row: &Row<'_>,
    columns: usize,
    key_column: usize,
    header: &[String],
    limits: &Limits,
    matcher: &Matcher,
) -> Result<String, RowIssue> {
    if row.len() != columns {
        return Err(RowIssue::FieldCount {
            found: row.len(),
            expected: columns,
        });
    }
    // No field can be over the limit when all of them together are not.
    if row.total_len() > limits.max_field_bytes
        && let Some((c, bytes)) = (0..columns)
            .map(|c| (c, row.raw_len(c)))
            .find(|&(_, bytes)| bytes > limits.max_field_bytes)
    {
        return Err(RowIssue::FieldTooLong {
            column: header[c].clone(),
            bytes,
            limit: limits.max_field_bytes,
        });
    }
    let key = row.get(key_column);
    if key.is_empty() {
        return Err(RowIssue::EmptyKey {
            column: header[key_column].clone(),
        });
    }
    match matcher.mode() {
        MatchMode::Exact => Ok(String::new()),
        _ => match matcher.normalize(key) {
            Some(normalized) => Ok(normalized.into_owned()),
            None => Err(RowIssue::NotAPhoneNumber {
                value: excerpt(key),
                region: matcher.region().map(str::to_string),
            }),
        },
    }
}

/// At most 80 characters of a value, for messages.
fn excerpt(value: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = value
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if value.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Parses a whole file into its header and rows with the same parser as
/// [`ingest`], without an index or table options: the trimmed header names
/// and the trimmed cells of every non-blank row. A row whose field count
/// differs from the header's, or a field over the limit, is an error.
pub fn parse_records(bytes: &[u8], limits: &Limits) -> Result<(Vec<String>, Vec<Vec<String>>), CsvError> {
    check_size(bytes, limits)?;
    with_text(bytes, |text, _| parse_text(text, limits))
}

fn parse_text(text: &[u8], limits: &Limits) -> Result<(Vec<String>, Vec<Vec<String>>), CsvError> {
    let mut parser = Parser::new(text, sniff(text), limits)?;
    let header = parser.header.clone();
    let mut lines = LineCounter::new(text);
    let mut rows = Vec::new();
    while let Some(row) = parser.next_row()? {
        let issue = if row.len() != header.len() {
            Some(RowIssue::FieldCount {
                found: row.len(),
                expected: header.len(),
            })
        } else {
            (0..row.len())
                .find(|&c| row.raw_len(c) > limits.max_field_bytes)
                .map(|c| RowIssue::FieldTooLong {
                    column: header[c].clone(),
                    bytes: row.raw_len(c),
                    limit: limits.max_field_bytes,
                })
        };
        if let Some(issue) = issue {
            let offset = row.offset;
            return Err(CsvError::Row {
                line: lines.line_at(offset),
                issue,
            });
        }
        rows.push((0..row.len()).map(|c| row.get(c).to_string()).collect());
    }
    Ok((header, rows))
}

/// Runs `parse` on the text of an upload with the name of its encoding.
///
/// A byte-order mark decides (UTF-16 is transcoded). Without one, text
/// whose code units are plainly UTF-16 (one zero byte in nearly every pair,
/// always on the same side) is transcoded too. Otherwise the bytes are
/// parsed as they are, on the bet that they are UTF-8: the parser checks
/// each record as it reads it (which, since every byte is either in a field
/// or an ASCII delimiter, quote or line break, checks the whole file once). If
/// the bet fails, the file is decoded as Windows-1252 (what Excel writes for
/// "CSV" on a Western-European Windows) and parsed again.
fn with_text<T>(
    bytes: &[u8],
    mut parse: impl FnMut(&[u8], &'static str) -> Result<T, CsvError>,
) -> Result<T, CsvError> {
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        let text = encoding_rs::UTF_16LE.decode_without_bom_handling(rest).0;
        return parse(text.as_bytes(), "UTF-16LE (BOM)");
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        let text = encoding_rs::UTF_16BE.decode_without_bom_handling(rest).0;
        return parse(text.as_bytes(), "UTF-16BE (BOM)");
    }
    let (rest, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    if !bom && let Some((encoding, name)) = bomless_utf16(bytes) {
        // A malformed sequence (a lone surrogate, an odd byte at the end)
        // means it was not UTF-16 after all.
        if let Some(text) = encoding.decode_without_bom_handling_and_without_replacement(bytes) {
            return parse(text.as_bytes(), name);
        }
    }
    check_binary(rest)?;
    let encoding = if bom { "UTF-8 (BOM)" } else { "UTF-8" };
    match parse(rest, encoding) {
        Err(CsvError::NotUtf8 { .. }) if bom => parse(String::from_utf8_lossy(rest).as_bytes(), encoding),
        Err(CsvError::NotUtf8 { .. }) => {
            let text = encoding_rs::WINDOWS_1252.decode_without_bom_handling(rest).0;
            parse(text.as_bytes(), "windows-1252")
        }
        other => other,
    }
}

/// The field separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
    Tab,
    Pipe,
}

impl Delimiter {
    const ALL: [Delimiter; 4] = [
        Delimiter::Comma,
        Delimiter::Semicolon,
        Delimiter::Tab,
        Delimiter::Pipe,
    ];

    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
            Delimiter::Pipe => b'|',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Delimiter::Comma => "comma",
            Delimiter::Semicolon => "semicolon",
            Delimiter::Tab => "tab",
            Delimiter::Pipe => "pipe",
        }
    }
}

/// The delimiter that occurs most often outside quotes on the header line
/// (the first non-blank line); ties and a one-column header give comma.
pub fn sniff(text: &[u8]) -> Delimiter {
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    let mut started = false;
    for &b in text {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\r' | b'\n' if !in_quotes => {
                if started {
                    break;
                }
            }
            _ if in_quotes => {}
            _ => {
                if let Some(i) = Delimiter::ALL.iter().position(|d| d.byte() == b) {
                    counts[i] += 1;
                }
            }
        }
        if !matches!(b, b'\r' | b'\n') {
            started = true;
        }
    }
    let mut best = Delimiter::Comma;
    let mut best_count = 0;
    for (d, &n) in Delimiter::ALL.iter().zip(&counts) {
        if n > best_count {
            best = *d;
            best_count = n;
        }
    }
    best
}

/// One data row, borrowed from the parser's record buffer.
struct Row<'r> {
    /// Where the reader was when the record began; blank lines and a line
    /// terminator may precede the record itself.
    offset: u64,
    /// The record's fields, back to back, checked as UTF-8.
    text: &'r str,
    record: &'r ::csv::ByteRecord,
    /// Index in `record` of the first cell (1 when a pipe-table row's leading
    /// pipe made an empty first field).
    first: usize,
    len: usize,
}

impl Row<'_> {
    fn len(&self) -> usize {
        self.len
    }

    /// The trimmed cell.
    fn get(&self, column: usize) -> &str {
        if column >= self.len {
            return "";
        }
        field(self.text, self.record, self.first + column)
            .map(trim)
            .unwrap_or("")
    }

    /// The length of all the record's fields together.
    fn total_len(&self) -> usize {
        self.text.len()
    }

    /// The cell's length as read (unquoted, untrimmed).
    fn raw_len(&self, column: usize) -> usize {
        if column >= self.len {
            return 0;
        }
        self.record.get(self.first + column).map_or(0, <[u8]>::len)
    }
}

/// A record's fields, back to back, checked as UTF-8 in one call (csv's
/// `StringRecord` checks field by field when a record is not ASCII). Each
/// field must also start on a character boundary, or two invalid halves on
/// either side of a delimiter would pass for one character.
fn record_text(record: &::csv::ByteRecord) -> Result<&str, CsvError> {
    let not_utf8 = || CsvError::NotUtf8 {
        line: record.position().map_or(0, |p| p.line()),
    };
    let bytes = record.as_slice();
    let text = std::str::from_utf8(bytes).map_err(|_| not_utf8())?;
    if !text.is_ascii() {
        let base = bytes.as_ptr() as usize;
        if !record
            .iter()
            .all(|f| text.is_char_boundary(f.as_ptr() as usize - base))
        {
            return Err(not_utf8());
        }
    }
    Ok(text)
}

/// Whether every field of a record is whitespace (a blank line).
fn is_blank(record: &::csv::ByteRecord) -> bool {
    let rest = record.as_slice().trim_ascii_start();
    match rest.first() {
        None => true,
        Some(&b) if b < 0x80 => false,
        // Unicode whitespace (a no-break space, say) is rare enough to check slowly.
        Some(_) => std::str::from_utf8(rest).is_ok_and(|t| t.trim().is_empty()),
    }
}

/// Field `i` of a record whose fields are `text` (see [`record_text`]).
fn field<'a>(text: &'a str, record: &::csv::ByteRecord, i: usize) -> Option<&'a str> {
    let f = record.get(i)?;
    let start = (f.as_ptr() as usize).checked_sub(record.as_slice().as_ptr() as usize)?;
    text.get(start..start + f.len())
}

/// How much of the start of a file is searched for a NUL byte.
const BINARY_SNIFF_BYTES: usize = 1 << 16;

/// `str::trim`, with a shortcut for the usual cell that starts and ends with
/// a visible ASCII character.
#[inline]
fn trim(cell: &str) -> &str {
    match (cell.as_bytes().first(), cell.as_bytes().last()) {
        (Some(&first), Some(&last)) if (0x21..0x7f).contains(&first) && (0x21..0x7f).contains(&last) => cell,
        _ => cell.trim(),
    }
}

/// UTF-16 without a byte-order mark, as some exports write it: a CSV is
/// mostly ASCII, so in nearly every 2-byte code unit one byte is zero, on the
/// same side throughout (the high byte: second in LE, first in BE). A unit
/// with both bytes zero (U+0000) rules it out.
fn bomless_utf16(bytes: &[u8]) -> Option<(&'static encoding_rs::Encoding, &'static str)> {
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES) & !1];
    let units = head.len() / 2;
    if units < 4 {
        return None;
    }
    let (mut first_zero, mut second_zero) = (0usize, 0usize);
    for unit in head.chunks_exact(2) {
        first_zero += usize::from(unit[0] == 0);
        second_zero += usize::from(unit[1] == 0);
    }
    let mostly = |n: usize| n * 4 >= units * 3;
    if first_zero == 0 && mostly(second_zero) {
        Some((encoding_rs::UTF_16LE, "UTF-16LE (no BOM)"))
    } else if second_zero == 0 && mostly(first_zero) {
        Some((encoding_rs::UTF_16BE, "UTF-16BE (no BOM)"))
    } else {
        None
    }
}

/// A NUL near the start means a binary file or BOM-less UTF-16; one further
/// on is just an odd byte in a cell.
fn check_binary(text: &[u8]) -> Result<(), CsvError> {
    let head = &text[..text.len().min(BINARY_SNIFF_BYTES)];
    match head.iter().position(|&b| b == 0) {
        Some(nul) => Err(CsvError::Binary {
            line: LineCounter::new(text).line_at(nul as u64),
        }),
        None => Ok(()),
    }
}

/// Records of a decoded text, after its header.
struct Parser<'t> {
    text: &'t [u8],
    reader: ::csv::Reader<&'t [u8]>,
    record: ::csv::ByteRecord,
    delimiter: Delimiter,
    pipe_table: bool,
    header: Vec<String>,
    /// The record in `record` was read ahead (to look for a pipe-table
    /// separator) and is the next row.
    replay: bool,
}

impl<'t> Parser<'t> {
    fn new(text: &'t [u8], delimiter: Delimiter, limits: &Limits) -> Result<Parser<'t>, CsvError> {
        check_binary(text)?;
        let reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter.byte())
            .buffer_capacity(1 << 16)
            .from_reader(text);
        let mut parser = Parser {
            text,
            reader,
            record: ::csv::ByteRecord::new(),
            delimiter,
            pipe_table: false,
            header: Vec::new(),
            replay: false,
        };
        parser.read_header(limits)?;
        Ok(parser)
    }

    fn read_header(&mut self, limits: &Limits) -> Result<(), CsvError> {
        let offset = loop {
            let offset = self.reader.position().byte();
            if !self.read()? {
                return Err(CsvError::NoHeader);
            }
            if !is_blank(&self.record) {
                break offset;
            }
        };
        let text = record_text(&self.record)?;
        let line = LineCounter::new(self.text).line_at(offset);
        let (first, mut len) = self.cells_of(offset);
        let outer_pipes = first == 1;
        if outer_pipes
            && len > 1
            && field(text, &self.record, first + len - 1).is_some_and(|f| f.trim().is_empty())
        {
            len -= 1;
        }
        if len > limits.max_columns {
            return Err(CsvError::TooManyColumns {
                columns: len,
                limit: limits.max_columns,
            });
        }
        let mut header = Vec::with_capacity(len);
        let mut seen = hashbrown::HashMap::with_capacity(len);
        for column in 0..len {
            let raw = field(text, &self.record, first + column).unwrap_or("");
            if raw.len() > limits.max_field_bytes {
                return Err(CsvError::HeaderFieldTooLong {
                    line,
                    column: column + 1,
                    bytes: raw.len(),
                    limit: limits.max_field_bytes,
                });
            }
            let name = raw.trim();
            if name.is_empty() {
                return Err(CsvError::UnnamedColumn {
                    line,
                    column: column + 1,
                });
            }
            if let Some(&earlier) = seen.get(name) {
                return Err(CsvError::DuplicateColumn {
                    name: excerpt(name),
                    first: earlier,
                    second: column + 1,
                });
            }
            seen.insert(name, column + 1);
            header.push(name.to_string());
        }
        drop(seen);
        let outer_pipes = outer_pipes && !header.is_empty();
        self.header = header;
        self.pipe_table = outer_pipes;

        // A markdown separator line (`|---|:---:|`) may follow a pipe header.
        if self.delimiter == Delimiter::Pipe {
            let offset = self.reader.position().byte();
            if self.read()? {
                let (first, len) = self.cells_of(offset);
                let text = record_text(&self.record)?;
                let cells = (first..first + len)
                    .filter_map(|i| field(text, &self.record, i))
                    .map(str::trim);
                let mut cells = cells.filter(|c| !c.is_empty()).peekable();
                let separator = cells.peek().is_some() && cells.all(is_alignment_cell);
                if separator {
                    self.pipe_table = true;
                } else {
                    self.replay = true;
                }
            }
        }
        Ok(())
    }

    fn read(&mut self) -> Result<bool, CsvError> {
        let start = self.reader.position().byte();
        let more = self.reader.read_byte_record(&mut self.record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                ::csv::ErrorKind::Utf8 { .. } => CsvError::NotUtf8 { line },
                _ => CsvError::Unreadable {
                    line,
                    detail: e.to_string(),
                },
            }
        })?;
        // The csv crate ends a quoted field that is still open at the end of
        // the input as if it were closed: only the record that reached the
        // end can have one, so only that record is read again.
        if more && self.reader.position().byte() >= self.text.len() as u64 {
            let rest = self.text.get(start as usize..).unwrap_or_default();
            if let Some(quote) = unclosed_quote(rest, self.delimiter.byte()) {
                return Err(CsvError::UnclosedQuote {
                    line: LineCounter::new(self.text).line_at(start + quote as u64),
                });
            }
        }
        Ok(more)
    }

    /// Where the cells of the current record begin in it, and how many there
    /// are, given the record's starting position.
    fn cells_of(&self, offset: u64) -> (usize, usize) {
        let len = self.record.len();
        if self.delimiter != Delimiter::Pipe {
            return (0, len);
        }
        let rest = self.text.get(offset as usize..).unwrap_or_default();
        let leading_pipe = rest.iter().find(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t')) == Some(&b'|');
        if leading_pipe && len > 0 {
            (1, len - 1)
        } else {
            (0, len)
        }
    }

    /// The next non-blank row, if any.
    fn next_row(&mut self) -> Result<Option<Row<'_>>, CsvError> {
        loop {
            let offset = self.reader.position().byte();
            if self.replay {
                self.replay = false;
            } else if !self.read()? {
                return Ok(None);
            }
            if is_blank(&self.record) {
                continue;
            }
            let text = record_text(&self.record)?;
            let offset = self.record.position().map_or(offset, |p| p.byte());
            let (first, mut len) = self.cells_of(offset);
            if self.pipe_table
                && len == self.header.len() + 1
                && field(text, &self.record, first + len - 1).is_some_and(|f| f.trim().is_empty())
            {
                len -= 1;
            }
            return Ok(Some(Row {
                offset,
                text,
                record: &self.record,
                first,
                len,
            }));
        }
    }

    /// How far the reader has got in the text.
    fn offset(&self) -> u64 {
        self.reader.position().byte()
    }
}

/// Where, in `text` (whole records), a quoted field opens that is not closed
/// by the end, by the `csv` crate's rules: a quote opens a quoted field only
/// as the field's first byte, a doubled quote inside it is one quote, and
/// after the closing quote the field goes on unquoted up to a delimiter or a
/// line break (CR or LF).
fn unclosed_quote(text: &[u8], delimiter: u8) -> Option<usize> {
    enum State {
        StartField,
        InField,
        Quoted(usize),
        QuoteInQuoted(usize),
    }
    let ends_field = |b: u8| b == delimiter || b == b'\r' || b == b'\n';
    let mut state = State::StartField;
    for (i, &b) in text.iter().enumerate() {
        state = match state {
            State::StartField if b == b'"' => State::Quoted(i),
            State::StartField | State::InField if ends_field(b) => State::StartField,
            State::StartField | State::InField => State::InField,
            State::Quoted(at) if b == b'"' => State::QuoteInQuoted(at),
            State::Quoted(at) => State::Quoted(at),
            State::QuoteInQuoted(at) if b == b'"' => State::Quoted(at),
            State::QuoteInQuoted(_) if ends_field(b) => State::StartField,
            State::QuoteInQuoted(_) => State::InField,
        };
    }
    match state {
        State::Quoted(at) => Some(at),
        _ => None,
    }
}

fn is_alignment_cell(cell: &str) -> bool {
    let inner = cell.strip_prefix(':').unwrap_or(cell);
    let inner = inner.strip_suffix(':').unwrap_or(inner);
    !inner.is_empty() && inner.bytes().all(|b| b == b'-')
}

/// Physical line numbers, counted lazily (only rows with a problem need one)
/// and incrementally: CRLF, LF and lone CR each end a line.
struct LineCounter<'t> {
    text: &'t [u8],
    pos: usize,
    line: u64,
    after_cr: bool,
}

impl<'t> LineCounter<'t> {
    fn new(text: &'t [u8]) -> Self {
        LineCounter {
            text,
            pos: 0,
            line: 1,
            after_cr: false,
        }
    }

    /// The line of the first byte at or after `offset` that is not a line
    /// terminator: a record's reader position may sit before blank lines.
    /// Offsets must not decrease between calls.
    fn line_at(&mut self, offset: u64) -> u64 {
        let target = (offset as usize).min(self.text.len());
        while self.pos < self.text.len()
            && (self.pos < target || matches!(self.text[self.pos], b'\r' | b'\n'))
        {
            match self.text[self.pos] {
                b'\n' => {
                    if !self.after_cr {
                        self.line += 1;
                    }
                    self.after_cr = false;
                }
                b'\r' => {
                    self.line += 1;
                    self.after_cr = true;
                }
                _ => self.after_cr = false,
            }
            self.pos += 1;
        }
        self.line
    }
}

impl Report {
    /// The report as a person reads it (written next to FTP/SFTP uploads).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.accepted {
            let _ = writeln!(
                out,
                "ACCEPTED: {} {}, {} {}",
                self.rows_accepted,
                plural(self.rows_accepted, "row", "rows"),
                self.keys,
                plural(self.keys, "key", "keys")
            );
        } else {
            let _ = writeln!(
                out,
                "REJECTED: {}",
                self.error.as_deref().unwrap_or("the upload was refused")
            );
        }
        out.push('\n');
        let field = |out: &mut String, name: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{:<12}{value}", format!("{name}:"));
        };
        field(&mut out, "size", &format_args!("{} bytes", self.bytes));
        if let Some(encoding) = &self.encoding {
            field(&mut out, "encoding", encoding);
        }
        if let Some(delimiter) = &self.delimiter {
            let form = if self.pipe_table { " (pipe table)" } else { "" };
            field(&mut out, "delimiter", &format_args!("{delimiter}{form}"));
        }
        if !self.columns.is_empty() {
            let columns: Vec<String> = self
                .columns
                .iter()
                .map(|c| {
                    if *c == self.key_column {
                        format!("{c} (key)")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            field(&mut out, "columns", &columns.join(", "));
        }
        field(
            &mut out,
            "key",
            &format_args!("{} (match: {})", self.key_column, self.match_mode.as_str()),
        );
        field(
            &mut out,
            "rows",
            &format_args!(
                "{} read, {} accepted, {} rejected",
                self.rows_read, self.rows_accepted, self.rows_rejected
            ),
        );
        if self.problems.is_empty() {
            field(&mut out, "problems", &"none");
        } else {
            let more = self.rows_rejected.saturating_sub(self.problems.len() as u64);
            let suffix = if more > 0 {
                format!(" (first {} listed)", self.problems.len())
            } else {
                String::new()
            };
            field(
                &mut out,
                "problems",
                &format_args!("{}{suffix}", self.rows_rejected),
            );
            for p in &self.problems {
                let _ = writeln!(out, "  line {}: {}", p.line, p.reason);
            }
        }
        if self.duplicate_keys == 0 {
            field(&mut out, "duplicates", &"none");
        } else {
            let kept = match self.duplicates_policy {
                DuplicatePolicy::First => "the first row of each key is used",
                DuplicatePolicy::Last => "the last row of each key is used",
                DuplicatePolicy::Reject => "duplicates are refused",
                DuplicatePolicy::Ambiguous => "lookups of these keys answer ambiguous",
            };
            field(
                &mut out,
                "duplicates",
                &format_args!(
                    "{} {} on {} extra {} (policy {}: {kept})",
                    self.duplicate_keys,
                    plural(self.duplicate_keys, "key", "keys"),
                    self.duplicate_rows,
                    plural(self.duplicate_rows, "row", "rows"),
                    self.duplicates_policy.as_str()
                ),
            );
            let _ = writeln!(out, "  e.g. {}", self.duplicate_examples.join(", "));
        }
        field(&mut out, "sha256", &self.sha256);
        out
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
