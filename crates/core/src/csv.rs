//! From the bytes of a CRM export to a [`TableIndex`] and a [`Report`].
//!
//! One parser serves every caller ([`ingest`], [`ingest_from`] and
//! [`parse_records`]):
//!
//! 1. the encoding, from a byte-order mark or from whether the bytes are
//!    valid UTF-8 (checked once, record by record, as they parse);
//! 2. [`sniff`]: the delimiter, counted outside quotes on the header line;
//! 3. RFC 4180 records from `csv-core` (the `csv` crate's engine), with
//!    cells trimmed, blank lines skipped and the markdown-like pipe-table
//!    form (outer pipes, `|---|` separator) unwrapped;
//! 4. each row checked against the header, the limits and the table
//!    options, and added to an `IndexBuilder`.
//!
//! [`chunks`] runs steps 3 and 4 on chunks of the file, on every core, with
//! the result of a single pass, and reads the file through a [`Source`] so
//! that it never needs to be in memory whole.
//!
//! Nothing here panics on any input: every failure becomes a [`CsvError`]
//! whose message names the line and the field.

mod chunks;

pub use chunks::{Parallelism, Source};

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ColumnName;
use crate::index::{KEY_PART_SEPARATOR, TableIndex};
use crate::matching::{MatchMode, Matcher, MatcherError};
use crate::validity::Interval;
use chunks::{Attempt, Decoding, Failed, HeaderRead, Next, Row, RowReader, Stop};

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
///
/// The key is `key` (one column) or `keys`: entries tried in order, each one
/// column or several that must all match (a compound key). `keys` holding
/// one single-column entry is the same as `key`, and is stored as `key`
/// alone; otherwise `key` is the first column of the first entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(try_from = "OptionsJson")]
pub struct TableOptions {
    pub key: ColumnName,
    /// Compound or fallback keys; `None` for a table with the one key `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyEntries>,
    #[serde(rename = "match", default)]
    pub match_mode: MatchMode,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub duplicates: DuplicatePolicy,
    #[serde(default)]
    pub bad_rows: BadRowPolicy,
    /// Rows valid from this column's date or date-time (inclusive; empty:
    /// since always): a key may then have several rows, and a call gets the
    /// one whose interval holds its timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<ColumnName>,
    /// Rows valid until this column's date or date-time (exclusive; empty:
    /// for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<ColumnName>,
    /// Activation guard: a full upload with more than this percentage of
    /// rows fewer than the active version is recorded, not activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_row_drop_pct: Option<f64>,
    /// Activation guard: `reject` records, without activating, an upload
    /// that lacks a column of the active version.
    #[serde(default, skip_serializing_if = "HeaderChange::is_accept")]
    pub on_header_change: HeaderChange,
    /// Which version enriches a call: the one active when it is processed
    /// (the default) or the one that was active at its timestamp.
    #[serde(default, skip_serializing_if = "AsOf::is_processing")]
    pub as_of: AsOf,
}

/// Which version of a table enriches a call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AsOf {
    /// The version active when the call is processed (created, updated,
    /// back-filled).
    #[default]
    Processing,
    /// The version that was active at the call's timestamp.
    CallTime,
}

impl AsOf {
    pub fn as_str(self) -> &'static str {
        match self {
            AsOf::Processing => "processing",
            AsOf::CallTime => "call_time",
        }
    }

    fn is_processing(&self) -> bool {
        *self == AsOf::Processing
    }
}

/// What an upload whose header lost a column of the active version does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeaderChange {
    /// It is activated (the default).
    #[default]
    Accept,
    /// It is recorded, not activated.
    Reject,
}

impl HeaderChange {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderChange::Accept => "accept",
            HeaderChange::Reject => "reject",
        }
    }

    fn is_accept(&self) -> bool {
        *self == HeaderChange::Accept
    }
}

/// Keys tried in order, each one column or several that must all match.
pub type KeyEntries = Vec<Vec<ColumnName>>;

/// At most this many key entries, each of at most this many columns.
pub const MAX_KEYS: usize = 8;

/// [`TableOptions`] as written, before `key` and `keys` are reconciled.
#[derive(Deserialize)]
struct OptionsJson {
    #[serde(default)]
    key: Option<ColumnName>,
    #[serde(default)]
    keys: Option<Vec<Vec<ColumnName>>>,
    #[serde(rename = "match", default)]
    match_mode: MatchMode,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    duplicates: DuplicatePolicy,
    #[serde(default)]
    bad_rows: BadRowPolicy,
    #[serde(default)]
    valid_from: Option<ColumnName>,
    #[serde(default)]
    valid_to: Option<ColumnName>,
    #[serde(default)]
    max_row_drop_pct: Option<f64>,
    #[serde(default)]
    on_header_change: HeaderChange,
    #[serde(default)]
    as_of: AsOf,
}

/// Why `key` and `keys` do not make a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("give the key column as \"key\" or the keys as \"keys\"")]
    NoKey,
    #[error("\"keys\" must hold 1 to {MAX_KEYS} keys, each a list of 1 to {MAX_KEYS} column names")]
    Count,
    #[error("key {entry} of \"keys\" names the column {column:?} twice")]
    RepeatedColumn { entry: usize, column: String },
    #[error("keys {first} and {second} of \"keys\" are the same")]
    RepeatedKey { first: usize, second: usize },
    #[error(
        "\"key\" ({key:?}) must be the first column of the first entry of \"keys\" ({first:?}), or be left out"
    )]
    Disagree { key: String, first: String },
    #[error("\"valid_from\" and \"valid_to\" must name two different columns, not {0:?} twice")]
    SameBounds(String),
    #[error(
        "\"match\": \"{0}\" finds one row by the longest prefix of one column: it takes neither compound or fallback \"keys\" nor \"valid_from\"/\"valid_to\""
    )]
    PrefixWith(&'static str),
    #[error("\"max_row_drop_pct\" must be a percentage from 0 to 100")]
    RowDrop,
}

impl KeysError {
    /// The option at fault.
    pub fn field(&self) -> &'static str {
        match self {
            KeysError::NoKey => "key",
            KeysError::SameBounds(_) => "valid_to",
            KeysError::PrefixWith(_) => "match",
            KeysError::RowDrop => "max_row_drop_pct",
            _ => "keys",
        }
    }
}

impl TryFrom<OptionsJson> for TableOptions {
    type Error = KeysError;

    fn try_from(json: OptionsJson) -> Result<Self, KeysError> {
        let (key, keys) = TableOptions::reconcile_keys(json.key, json.keys)?;
        let options = TableOptions {
            key,
            keys,
            match_mode: json.match_mode,
            region: json.region,
            duplicates: json.duplicates,
            bad_rows: json.bad_rows,
            valid_from: json.valid_from,
            valid_to: json.valid_to,
            max_row_drop_pct: json.max_row_drop_pct,
            on_header_change: json.on_header_change,
            as_of: json.as_of,
        };
        options.check()?;
        Ok(options)
    }
}

impl TableOptions {
    /// The key column and the compound/fallback keys from `key` and `keys`
    /// as a client gives them: `keys` holding the one column `key` becomes
    /// `key` alone.
    pub fn reconcile_keys(
        key: Option<ColumnName>,
        keys: Option<Vec<Vec<ColumnName>>>,
    ) -> Result<(ColumnName, Option<KeyEntries>), KeysError> {
        let Some(keys) = keys else {
            return key.map(|k| (k, None)).ok_or(KeysError::NoKey);
        };
        if keys.is_empty() || keys.len() > MAX_KEYS || keys.iter().any(|e| e.is_empty() || e.len() > MAX_KEYS)
        {
            return Err(KeysError::Count);
        }
        for (i, entry) in keys.iter().enumerate() {
            for (j, column) in entry.iter().enumerate() {
                if entry[..j].contains(column) {
                    return Err(KeysError::RepeatedColumn {
                        entry: i + 1,
                        column: column.to_string(),
                    });
                }
            }
            let mut sorted: Vec<&str> = entry.iter().map(ColumnName::as_str).collect();
            sorted.sort_unstable();
            for (earlier, other) in keys[..i].iter().enumerate() {
                let mut theirs: Vec<&str> = other.iter().map(ColumnName::as_str).collect();
                theirs.sort_unstable();
                if theirs == sorted {
                    return Err(KeysError::RepeatedKey {
                        first: earlier + 1,
                        second: i + 1,
                    });
                }
            }
        }
        let first = keys[0][0].clone();
        if let Some(key) = key
            && key != first
        {
            return Err(KeysError::Disagree {
                key: key.to_string(),
                first: first.to_string(),
            });
        }
        if keys.len() == 1 && keys[0].len() == 1 {
            return Ok((first, None));
        }
        Ok((first, Some(keys)))
    }

    /// The combinations of options that cannot work together.
    pub fn check(&self) -> Result<(), KeysError> {
        if let Some(pct) = self.max_row_drop_pct
            && !(0.0..=100.0).contains(&pct)
        {
            return Err(KeysError::RowDrop);
        }
        if let (Some(from), Some(to)) = (&self.valid_from, &self.valid_to)
            && from == to
        {
            return Err(KeysError::SameBounds(from.to_string()));
        }
        if self.match_mode.is_prefix() && (self.keys.is_some() || self.has_intervals()) {
            return Err(KeysError::PrefixWith(self.match_mode.as_str()));
        }
        Ok(())
    }

    /// Rows carry validity intervals (`valid_from` and/or `valid_to`).
    pub fn has_intervals(&self) -> bool {
        self.valid_from.is_some() || self.valid_to.is_some()
    }

    /// The keys tried in order: `keys`, or `key` alone.
    pub fn key_entries(&self) -> Vec<Vec<ColumnName>> {
        match &self.keys {
            Some(keys) => keys.clone(),
            None => vec![vec![self.key.clone()]],
        }
    }

    /// The keys as a person reads them: `site+extension, agent_email`.
    pub fn keys_label(&self) -> String {
        self.key_entries()
            .iter()
            .map(|entry| entry.iter().map(ColumnName::as_str).collect::<Vec<_>>().join("+"))
            .collect::<Vec<_>>()
            .join(", ")
    }
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
    /// Compound or fallback keys, as configured (empty for one key column).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<Vec<String>>,
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
    /// An accepted upload that an activation guard held back: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_activated: Option<String>,
    /// A delta upload: what it changed in the active version's rows (the
    /// rest of the report is the resulting full version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::delta::DeltaCounts>,
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
    #[error("no key is complete (keys: {keys}): each has an empty column")]
    NoCompleteKey { keys: String },
    #[error("the {column:?} field: {detail}")]
    BadBound { column: String, detail: String },
    #[error("the interval is empty: {from:?} is not before {to:?}")]
    EmptyInterval { from: String, to: String },
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
    #[error("the {option} column {column:?} is not in the header (columns: {columns})")]
    MissingIntervalColumn {
        option: &'static str,
        column: String,
        columns: String,
    },
    #[error(
        "line {line}: the key {key:?} has a row valid over an interval that overlaps the one of line {earlier}, \
         and the table's duplicates policy is reject"
    )]
    OverlappingIntervals { line: u64, earlier: u64, key: String },
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
/// far after each chunk (about every [`PROGRESS_STEP`] bytes), and once at
/// the end.
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
    match ingest_from(&bytes, options, limits, Parallelism::default(), progress) {
        Ok(result) => result,
        // Reading bytes in memory cannot fail.
        Err(e) => {
            let mut report = new_report(bytes.len() as u64, options);
            report.error = Some(e.to_string());
            Err(Box::new(report))
        }
    }
}

/// Ingests an upload read from `source` in chunks, parsed on
/// `parallelism.threads` threads, leaving `report.sha256` empty (the caller
/// hashes the bytes as they arrive). `progress` is called with the number
/// of input bytes consumed so far about every chunk, and once at the end.
///
/// The outer `Err`: `source` could not be read. The inner one carries the
/// report of a rejected upload (`accepted: false`, `error` set).
pub fn ingest_from(
    source: &dyn Source,
    options: &TableOptions,
    limits: &Limits,
    parallelism: Parallelism,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Result<Ingested, Box<Report>>> {
    let mut report = new_report(source.len(), options);
    // A file that turns out not to be UTF-8 is parsed a second time; its
    // progress must not go backwards.
    let mut reported = 0u64;
    let mut monotonic = |n: u64| {
        if n > reported {
            reported = n;
            progress(n);
        }
    };
    match build(source, options, limits, parallelism, &mut monotonic, &mut report) {
        Ok(index) => {
            report.accepted = true;
            report.keys = if index.has_alternates() {
                index.alternate_keys()
            } else {
                index.len()
            } as u64;
            monotonic(source.len());
            Ok(Ok(Ingested { index, report }))
        }
        Err(Failed::Read(e)) => Err(e),
        Err(Failed::Csv(error)) => {
            report.error = Some(error.to_string());
            Ok(Err(Box::new(report)))
        }
        Err(Failed::Encoding) => {
            report.error = Some(CsvError::NotUtf8 { line: 1 }.to_string());
            Ok(Err(Box::new(report)))
        }
    }
}

fn new_report(bytes: u64, options: &TableOptions) -> Report {
    Report {
        accepted: false,
        error: None,
        sha256: String::new(),
        bytes,
        encoding: None,
        delimiter: None,
        pipe_table: false,
        columns: Vec::new(),
        key_column: options.key.as_str().to_string(),
        key_columns: options.keys.as_ref().map_or_else(Vec::new, |keys| {
            keys.iter()
                .map(|entry| entry.iter().map(|c| c.as_str().to_string()).collect())
                .collect()
        }),
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
        not_activated: None,
        delta: None,
    }
}

/// About how often [`ingest_with_progress`] reports: the default chunk size.
pub const PROGRESS_STEP: u64 = 1 << 20;

fn build(
    source: &dyn Source,
    options: &TableOptions,
    limits: &Limits,
    parallelism: Parallelism,
    progress: &mut dyn FnMut(u64),
    report: &mut Report,
) -> Result<TableIndex, Failed> {
    check_size(source.len(), limits)?;
    let matcher = Matcher::new(options.match_mode, options.region.as_deref()).map_err(CsvError::from)?;
    let mut head = vec![0; BINARY_SNIFF_BYTES.min(source.len() as usize)];
    let n = source.read_at(0, &mut head).map_err(Failed::Read)?;
    head.truncate(n);
    let mut attempts = attempts(&head).into_iter().peekable();
    while let Some(attempt) = attempts.next() {
        if let Decoding::Utf16 { strict: true, .. } = attempt.decoding
            && !utf16_whole(source, &attempt).map_err(Failed::Read)?
        {
            // Malformed somewhere: it was not UTF-16 after all.
            continue;
        }
        reset(report);
        match chunks::run(
            source,
            &attempt,
            options,
            limits,
            &matcher,
            parallelism,
            progress,
            report,
        ) {
            Err(Failed::Encoding) if attempts.peek().is_some() => continue,
            other => return other,
        }
    }
    Err(Failed::Encoding)
}

/// The ways to read a file, in order, from its first bytes.
///
/// A byte-order mark decides (UTF-16 is transcoded). Without one, text
/// whose code units are plainly UTF-16 (one zero byte in nearly every pair,
/// always on the same side) is transcoded too, if it decodes. Otherwise the
/// bytes are parsed as they are, on the bet that they are UTF-8: the parser
/// checks each record as it reads it (which, since every byte is either in
/// a field or an ASCII delimiter, quote or line break, checks the whole file
/// once). If the bet fails, the file is decoded as Windows-1252 (what Excel
/// writes for "CSV" on a Western-European Windows) and parsed again.
fn attempts(head: &[u8]) -> Vec<Attempt> {
    let attempt = |decoding, skip, name| Attempt { decoding, skip, name };
    let utf16 = |big_endian, strict| Decoding::Utf16 { big_endian, strict };
    if head.starts_with(b"\xFF\xFE") {
        return vec![attempt(utf16(false, false), 2, "UTF-16LE (BOM)")];
    }
    if head.starts_with(b"\xFE\xFF") {
        return vec![attempt(utf16(true, false), 2, "UTF-16BE (BOM)")];
    }
    if head.starts_with(b"\xEF\xBB\xBF") {
        return vec![
            attempt(Decoding::Utf8, 3, "UTF-8 (BOM)"),
            attempt(Decoding::Utf8Lossy, 3, "UTF-8 (BOM)"),
        ];
    }
    let mut attempts = Vec::new();
    if let Some((big_endian, name)) = bomless_utf16(head) {
        attempts.push(attempt(utf16(big_endian, true), 0, name));
    }
    attempts.push(attempt(Decoding::Utf8, 0, "UTF-8"));
    attempts.push(attempt(Decoding::Windows1252, 0, "windows-1252"));
    attempts
}

/// Whether the whole file decodes as UTF-16 without a malformed sequence (a
/// lone surrogate, an odd byte at the end), read in chunks.
fn utf16_whole(source: &dyn Source, attempt: &Attempt) -> std::io::Result<bool> {
    let encoding = match attempt.decoding {
        Decoding::Utf16 { big_endian: true, .. } => encoding_rs::UTF_16BE,
        _ => encoding_rs::UTF_16LE,
    };
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut raw = vec![0u8; 1 << 20];
    let mut out = vec![0u8; 3 << 20];
    let mut offset = attempt.skip;
    loop {
        let n = source.read_at(offset, &mut raw)?;
        offset += n as u64;
        let last = n == 0;
        let mut input = &raw[..n];
        loop {
            let (result, read, _) = decoder.decode_to_utf8_without_replacement(input, &mut out, last);
            input = &input[read..];
            match result {
                encoding_rs::DecoderResult::InputEmpty => break,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(..) => return Ok(false),
            }
        }
        if last {
            return Ok(true);
        }
    }
}

/// Forgets what an attempt that turned out not to be UTF-8 had found.
fn reset(report: &mut Report) {
    report.columns.clear();
    report.encoding = None;
    report.delimiter = None;
    report.pipe_table = false;
    report.rows_read = 0;
    report.rows_accepted = 0;
    report.rows_rejected = 0;
    report.problems.clear();
    report.duplicate_keys = 0;
    report.duplicate_examples.clear();
    report.duplicate_rows = 0;
}

fn check_size(size: u64, limits: &Limits) -> Result<(), CsvError> {
    if size > limits.max_file_bytes {
        return Err(CsvError::FileTooLarge {
            bytes: size,
            limit: limits.max_file_bytes,
        });
    }
    if size == 0 {
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
    check_shape(row, columns, header, limits)?;
    let key = row.get(key_column);
    if key.is_empty() {
        return Err(RowIssue::EmptyKey {
            column: header[key_column].clone(),
        });
    }
    match matcher.mode() {
        MatchMode::Exact => Ok(String::new()),
        _ => match matcher.normalize_cell(key) {
            Some(normalized) => Ok(normalized.into_owned()),
            None => Err(RowIssue::NotAPhoneNumber {
                value: excerpt(key),
                region: matcher.region().map(str::to_string),
            }),
        },
    }
}

/// The field count and the field size limit.
#[inline]
fn check_shape(row: &Row<'_>, columns: usize, header: &[String], limits: &Limits) -> Result<(), RowIssue> {
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
    Ok(())
}

/// Separates the keys of a row with compound or fallback keys while it is
/// parsed (the parts of one key are joined by [`KEY_PART_SEPARATOR`]).
pub(crate) const KEY_SEPARATOR: char = '\u{1e}';

/// Appends a normalised key part, its separators made spaces so that it
/// cannot split (the call's value goes through the same function).
pub(crate) fn push_key_part(out: &mut String, part: &str) {
    if part.contains([KEY_SEPARATOR, KEY_PART_SEPARATOR]) {
        out.extend(part.chars().map(|c| {
            if c == KEY_SEPARATOR || c == KEY_PART_SEPARATOR {
                ' '
            } else {
                c
            }
        }));
    } else {
        out.push_str(part);
    }
}

/// [`check_row`] for a table with compound or fallback keys: returns each
/// key's normalised parts (joined by [`KEY_PART_SEPARATOR`]; empty when one
/// of its columns is empty), the keys separated by [`KEY_SEPARATOR`]. A row
/// needs one complete key.
fn check_row_keys(
    row: &Row<'_>,
    columns: usize,
    entries: &[Vec<usize>],
    validity: Validity,
    header: &[String],
    limits: &Limits,
    matcher: &Matcher,
) -> Result<(String, Interval), RowIssue> {
    check_shape(row, columns, header, limits)?;
    let bound = |column: Option<usize>| -> Result<Option<i64>, RowIssue> {
        let Some(c) = column else {
            return Ok(None);
        };
        crate::validity::parse_bound(row.get(c)).map_err(|e| RowIssue::BadBound {
            column: header[c].clone(),
            detail: e.to_string(),
        })
    };
    let interval = Interval {
        from: bound(validity.0)?,
        to: bound(validity.1)?,
    };
    if let (Some(from), Some(to)) = (interval.from, interval.to)
        && from >= to
    {
        let cell = |c: Option<usize>| c.map(|c| excerpt(row.get(c))).unwrap_or_default();
        return Err(RowIssue::EmptyInterval {
            from: cell(validity.0),
            to: cell(validity.1),
        });
    }
    let mut out = String::new();
    let mut complete = false;
    for (j, entry) in entries.iter().enumerate() {
        if j > 0 {
            out.push(KEY_SEPARATOR);
        }
        let start = out.len();
        for (p, &column) in entry.iter().enumerate() {
            let cell = row.get(column);
            if cell.is_empty() {
                out.truncate(start);
                break;
            }
            let Some(normalized) = matcher.normalize_cell(cell) else {
                return Err(RowIssue::NotAPhoneNumber {
                    value: excerpt(cell),
                    region: matcher.region().map(str::to_string),
                });
            };
            if p > 0 {
                out.push(KEY_PART_SEPARATOR);
            }
            push_key_part(&mut out, &normalized);
            if p + 1 == entry.len() {
                complete = true;
            }
        }
    }
    if !complete {
        let keys: Vec<String> = entries
            .iter()
            .map(|entry| {
                entry
                    .iter()
                    .map(|&c| header[c].as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        return Err(RowIssue::NoCompleteKey {
            keys: keys.join(", "),
        });
    }
    Ok((out, interval))
}

/// The columns of `valid_from` and `valid_to`, when configured.
pub(crate) type Validity = (Option<usize>, Option<usize>);

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
    check_size(bytes.len() as u64, limits)?;
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    let mut attempts = attempts(head).into_iter().peekable();
    while let Some(attempt) = attempts.next() {
        let rest = bytes.get(attempt.skip as usize..).unwrap_or_default();
        let Some(text) = attempt.decoding.decode(rest.to_vec()) else {
            continue;
        };
        match parse_text(&text, limits) {
            Err(Stop::NotUtf8) if attempts.peek().is_some() => continue,
            Err(Stop::NotUtf8) => return Err(CsvError::NotUtf8 { line: 1 }),
            Err(Stop::Error(e)) => return Err(e),
            Ok(parsed) => return Ok(parsed),
        }
    }
    Err(CsvError::NotUtf8 { line: 1 })
}

fn parse_text(text: &[u8], limits: &Limits) -> Result<(Vec<String>, Vec<Vec<String>>), Stop> {
    check_binary_at(text).map_err(Stop::Error)?;
    let HeaderRead::Done(header, data) = chunks::read_header(text, true, limits)? else {
        return Err(Stop::Error(CsvError::NoHeader));
    };
    let columns = header.names.len();
    let mut reader = RowReader::new(text, data, true, &header);
    let mut rows = Vec::new();
    loop {
        let row = match reader.next_row()? {
            Next::End { .. } => break,
            Next::Row(row) => row,
        };
        let issue = if row.len() != columns {
            Some(RowIssue::FieldCount {
                found: row.len(),
                expected: columns,
            })
        } else {
            (0..row.len())
                .find(|&c| row.raw_len(c) > limits.max_field_bytes)
                .map(|c| RowIssue::FieldTooLong {
                    column: header.names[c].clone(),
                    bytes: row.raw_len(c),
                    limit: limits.max_field_bytes,
                })
        };
        let cells: Vec<String> = (0..row.len()).map(|c| row.get(c).to_string()).collect();
        if let Some(issue) = issue {
            let offset = row.offset;
            return Err(Stop::Error(CsvError::Row {
                line: reader.line_at(offset),
                issue,
            }));
        }
        rows.push(cells);
    }
    Ok((header.names.clone(), rows))
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
    sniff_line(text).0
}

/// [`sniff`], and whether the header line ended within `text`.
fn sniff_line(text: &[u8]) -> (Delimiter, bool) {
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    let mut started = false;
    let mut complete = false;
    for &b in text {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\r' | b'\n' if !in_quotes => {
                if started {
                    complete = true;
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
    (best, complete)
}

use chunks::BINARY_SNIFF_BYTES;

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
fn bomless_utf16(bytes: &[u8]) -> Option<(bool, &'static str)> {
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
        Some((false, "UTF-16LE (no BOM)"))
    } else if second_zero == 0 && mostly(first_zero) {
        Some((true, "UTF-16BE (no BOM)"))
    } else {
        None
    }
}

/// A NUL near the start means a binary file or BOM-less UTF-16; one further
/// on is just an odd byte in a cell.
fn check_binary_at(text: &[u8]) -> Result<(), CsvError> {
    let head = &text[..text.len().min(BINARY_SNIFF_BYTES)];
    match head.iter().position(|&b| b == 0) {
        Some(nul) => Err(CsvError::Binary {
            line: LineCounter::new(text).line_at(nul as u64),
        }),
        None => Ok(()),
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
        if let Some(why) = &self.not_activated {
            let _ = writeln!(out, "NOT ACTIVATED: {why}");
        }
        out.push('\n');
        let field = |out: &mut String, name: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{:<12}{value}", format!("{name}:"));
        };
        if let Some(d) = &self.delta {
            field(
                &mut out,
                "delta",
                &format_args!(
                    "{} inserted, {} updated, {} deleted, {} unknown {}",
                    d.inserted,
                    d.updated,
                    d.deleted,
                    d.unknown_deletes,
                    plural(d.unknown_deletes, "delete", "deletes")
                ),
            );
        }
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
                    let in_a_key = self.key_columns.iter().any(|entry| entry.contains(c));
                    if *c == self.key_column || in_a_key {
                        format!("{c} (key)")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            field(&mut out, "columns", &columns.join(", "));
        }
        if self.key_columns.is_empty() {
            field(
                &mut out,
                "key",
                &format_args!("{} (match: {})", self.key_column, self.match_mode.as_str()),
            );
        } else {
            let keys: Vec<String> = self.key_columns.iter().map(|entry| entry.join("+")).collect();
            field(
                &mut out,
                "keys",
                &format_args!("{} (match: {})", keys.join(", "), self.match_mode.as_str()),
            );
        }
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
