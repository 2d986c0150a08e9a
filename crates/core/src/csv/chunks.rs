//! An upload parsed in chunks, on several threads, with exactly the result of
//! one pass from the first byte to the last.
//!
//! - **Reading**: the bytes come from a [`Source`] in chunks of about
//!   [`Parallelism::chunk_bytes`], each cut just after a line break (in the
//!   encoding's code units), so no chunk ends inside a CRLF or a character.
//!   Only the chunks being parsed or waiting to be merged are in memory,
//!   never the whole file.
//! - **Parsing** (any thread): each chunk is decoded to UTF-8 and parsed as if
//!   a record started at its first byte; its rows are checked, their keys
//!   normalised and hashed, and their cells encoded the way the index stores
//!   them (a [`Unit`]).
//! - **Merging** (the calling thread, in file order): a chunk's rows go into
//!   the index one by one, so duplicates, the report's counts, examples and
//!   line numbers are exactly those of a single pass. A line break that was
//!   inside a quoted field is the one thing a chunk cannot know about its
//!   start: the chunk before it then ends inside a record
//!   ([`UnitEnd::Partial`]), so that record and the next chunk are parsed
//!   again from where the record starts, and the speculative parse is thrown
//!   away.
//! - **Encodings**: a bet on UTF-8 (or on BOM-less UTF-16) that fails in some
//!   chunk starts the whole parse over in the next candidate encoding, as a
//!   single pass would have to.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use hashbrown::DefaultHashBuilder;

use super::{
    BadRowPolicy, CsvError, Delimiter, DuplicatePolicy, KEY_SEPARATOR, Limits, LineCounter,
    MAX_DUPLICATE_EXAMPLES, MAX_PROBLEMS, Report, RowProblem, TableOptions, Validity, check_binary_at,
    check_row, check_row_keys, excerpt, find_key_column, is_alignment_cell, sniff_line, trim, unclosed_quote,
};
use crate::domain::ColumnName;
use crate::index::{Coding, IndexBuilder, KEY_PART_SEPARATOR, OnDuplicate, Pushed, RowLayout, TableIndex};
use crate::matching::{MatchMode, Matcher};
use crate::validity::Interval;

/// Where an upload's bytes come from. The core does no I/O: a caller hands
/// it a file through this (or bytes already in memory, `&[u8]`).
pub trait Source: Sync {
    /// The size, in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads bytes from `offset` into `buf`; returns how many (0 only at
    /// the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(<[u8]>::len(self));
        let rest = &self[start..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// How an ingest uses the machine: threads that parse, and the size of the
/// chunks they take (what is in memory at once is a few chunks per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub threads: usize,
    pub chunk_bytes: usize,
}

impl Default for Parallelism {
    /// Every core (up to 8), chunks of 1 MiB.
    fn default() -> Self {
        Parallelism {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            chunk_bytes: 1 << 20,
        }
    }
}

/// How far past the chunk being merged the threads may read ahead: bounds
/// the chunks in memory.
const AHEAD_PER_THREAD: usize = 2;

/// Bytes read at a time while looking for a chunk's closing line break.
const READ_STEP: usize = 1 << 16;

/// How much of the start of the text is searched for a NUL byte.
pub(super) const BINARY_SNIFF_BYTES: usize = 1 << 16;

/// How the bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoding {
    /// As they are, on the bet that they are UTF-8: a record that is not
    /// fails the attempt.
    Utf8,
    /// UTF-8 after a byte-order mark, invalid sequences replaced.
    Utf8Lossy,
    Windows1252,
    /// UTF-16; `strict` (no byte-order mark): a malformed sequence fails the
    /// attempt.
    Utf16 {
        big_endian: bool,
        strict: bool,
    },
}

/// One way of reading the file: its decoding, the byte-order mark skipped,
/// the name reported.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt {
    pub decoding: Decoding,
    pub skip: u64,
    pub name: &'static str,
}

impl Decoding {
    fn utf16(self) -> Option<bool> {
        match self {
            Decoding::Utf16 { big_endian, .. } => Some(big_endian),
            _ => None,
        }
    }

    /// The text of one chunk (cut on a line break, so never inside a
    /// character), or `None` when strict UTF-16 is malformed.
    pub(super) fn decode(self, raw: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Decoding::Utf8 => Some(raw),
            Decoding::Utf8Lossy => Some(match String::from_utf8(raw) {
                Ok(text) => text.into_bytes(),
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned().into_bytes(),
            }),
            Decoding::Windows1252 if raw.is_ascii() => Some(raw),
            Decoding::Windows1252 => Some(
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(&raw)
                    .0
                    .into_owned()
                    .into_bytes(),
            ),
            Decoding::Utf16 { big_endian, strict } => {
                let encoding = if big_endian {
                    encoding_rs::UTF_16BE
                } else {
                    encoding_rs::UTF_16LE
                };
                if strict {
                    encoding
                        .decode_without_bom_handling_and_without_replacement(&raw)
                        .map(|t| t.into_owned().into_bytes())
                } else {
                    Some(
                        encoding
                            .decode_without_bom_handling(&raw)
                            .0
                            .into_owned()
                            .into_bytes(),
                    )
                }
            }
        }
    }
}

/// Where the next chunk may end in `buf`: just after a LF, or after a CR
/// not followed by LF, at or after `from`. `Err(resume)`: none yet, look
/// again from `resume` once more bytes are in.
fn find_cut(buf: &[u8], from: usize, utf16: Option<bool>) -> Result<usize, usize> {
    match utf16 {
        None => {
            let mut i = from;
            if let Some(found) = buf[i.min(buf.len())..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            {
                i += found;
                if buf[i] == b'\n' {
                    return Ok(i + 1);
                }
                match buf.get(i + 1) {
                    None => return Err(i),
                    Some(b'\n') => return Ok(i + 2),
                    Some(_) => return Ok(i + 1),
                }
            }
            Err(buf.len().max(from))
        }
        Some(big_endian) => {
            let unit = |i: usize| -> Option<u16> {
                let pair = [*buf.get(i)?, *buf.get(i + 1)?];
                Some(if big_endian {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                })
            };
            let mut i = from + (from & 1);
            while let Some(u) = unit(i) {
                if u == 0x0A {
                    return Ok(i + 2);
                }
                if u == 0x0D {
                    match unit(i + 2) {
                        None => return Err(i),
                        Some(0x0A) => return Ok(i + 4),
                        Some(_) => return Ok(i + 2),
                    }
                }
                i += 2;
            }
            Err(i)
        }
    }
}

/// A chunk of the file's bytes, in file order.
pub(super) struct RawChunk {
    pub index: usize,
    pub raw: Vec<u8>,
    /// Offset in the file just past the chunk.
    pub end: u64,
    pub last: bool,
}

/// Reads the file chunk after chunk.
pub(super) struct Cursor {
    /// Offset in the file of `carry`'s first byte.
    offset: u64,
    /// Bytes read past the previous chunk's cut.
    carry: Vec<u8>,
    /// The index of the next chunk.
    pub next: usize,
    pub done: bool,
    chunk_bytes: usize,
    utf16: Option<bool>,
}

impl Cursor {
    pub(super) fn new(attempt: &Attempt, chunk_bytes: usize) -> Cursor {
        let utf16 = attempt.decoding.utf16();
        Cursor {
            offset: attempt.skip,
            carry: Vec::new(),
            next: 0,
            done: false,
            // Even, so that UTF-16 chunks stay aligned on code units.
            chunk_bytes: (chunk_bytes.max(2) + 1) & !1,
            utf16,
        }
    }

    pub(super) fn take(&mut self, source: &dyn Source) -> std::io::Result<Option<RawChunk>> {
        if self.done {
            return Ok(None);
        }
        let total = source.len();
        let start = self.offset;
        let mut buf = std::mem::take(&mut self.carry);
        let want = self.chunk_bytes;
        fill(source, start, &mut buf, want)?;
        let mut scan = want.saturating_sub(1).min(buf.len());
        if self.utf16.is_some() {
            scan &= !1;
        }
        let cut = loop {
            let have_all = start + buf.len() as u64 >= total;
            if buf.len() >= want || have_all {
                match find_cut(&buf, scan, self.utf16) {
                    Ok(cut) => break cut,
                    Err(resume) => scan = resume,
                }
            }
            if have_all {
                break buf.len();
            }
            let more = buf.len() + READ_STEP;
            fill(source, start, &mut buf, more)?;
        };
        self.carry = buf.split_off(cut);
        self.offset = start + cut as u64;
        let last = self.offset >= total && self.carry.is_empty();
        self.done = last;
        let index = self.next;
        self.next += 1;
        Ok(Some(RawChunk {
            index,
            raw: buf,
            end: self.offset,
            last,
        }))
    }
}

/// Reads from `start + buf.len()` until `buf` holds `want` bytes or the
/// source ends.
fn fill(source: &dyn Source, start: u64, buf: &mut Vec<u8>, want: usize) -> std::io::Result<()> {
    let left = source.len().saturating_sub(start);
    let want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
    while buf.len() < want {
        let have = buf.len();
        buf.resize(want, 0);
        let n = source.read_at(start + have as u64, &mut buf[have..])?;
        buf.truncate(have + n);
        if n == 0 {
            if start + (buf.len() as u64) < source.len() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upload ended before its announced size",
                ));
            }
            break;
        }
    }
    Ok(())
}

/// RFC 4180 records, read one at a time with csv-core (the `csv` crate's
/// engine) into reused buffers: a record's unquoted fields back to back,
/// and where each ends.
pub(super) struct Records {
    core: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
    nends: usize,
    /// Nothing read yet, and this is not the start of the file: csv-core
    /// would drop a UTF-8 byte-order mark at its first input, so the first
    /// byte is fed alone.
    guard: bool,
}

/// What [`Records::read`] found.
pub(super) enum Read {
    /// A record that starts at (or after line breaks from) `start`.
    Record { start: usize },
    /// The text ended inside a record that starts at `start`.
    Partial { start: usize },
    /// The text ended between records.
    End,
}

impl Records {
    pub(super) fn new(delimiter: Delimiter, file_start: bool) -> Records {
        Records {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter.byte()).build(),
            fields: vec![0; 1024],
            ends: vec![0; 64],
            len: 0,
            nends: 0,
            guard: !file_start,
        }
    }

    /// Reads the next record of `text` from `*pos`. `last`: the text ends
    /// the file (otherwise the end of `text` may be inside a record).
    pub(super) fn read(&mut self, text: &[u8], pos: &mut usize, last: bool) -> Read {
        use csv_core::ReadRecordResult as R;
        let start = *pos;
        let (mut out, mut end) = (0usize, 0usize);
        loop {
            let mut input = &text[*pos..];
            if input.is_empty() && !last {
                return if out > 0 || end > 0 {
                    Read::Partial { start }
                } else {
                    Read::End
                };
            }
            if self.guard && !input.is_empty() {
                self.guard = false;
                input = &input[..1];
            }
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.fields[out..], &mut self.ends[end..]);
            *pos += nin;
            out += nout;
            end += nend;
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let len = self.fields.len() * 2;
                    self.fields.resize(len, 0);
                }
                R::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                R::Record => {
                    self.len = out;
                    self.nends = end;
                    return Read::Record { start };
                }
                R::End => return Read::End,
            }
        }
    }

    /// The last record's fields, back to back.
    pub(super) fn fields(&self) -> &[u8] {
        &self.fields[..self.len]
    }

    /// Where each of the last record's fields ends in [`Self::fields`].
    pub(super) fn ends(&self) -> &[usize] {
        &self.ends[..self.nends]
    }
}

/// A record's fields, checked as UTF-8 in one call. Each field must also
/// start on a character boundary, or two invalid halves on either side of a
/// delimiter would pass for one character.
pub(super) fn record_text<'r>(fields: &'r [u8], ends: &[usize]) -> Option<&'r str> {
    let text = std::str::from_utf8(fields).ok()?;
    if !text.is_ascii() && !ends.iter().all(|&e| text.is_char_boundary(e)) {
        return None;
    }
    Some(text)
}

/// Whether every field of a record is whitespace (a blank line).
pub(super) fn is_blank(fields: &[u8]) -> bool {
    let rest = fields.trim_ascii_start();
    match rest.first() {
        None => true,
        Some(&b) if b < 0x80 => false,
        // Unicode whitespace (a no-break space, say) is rare enough to check slowly.
        Some(_) => std::str::from_utf8(rest).is_ok_and(|t| t.trim().is_empty()),
    }
}

/// One data row, borrowed from the record buffers.
pub(super) struct Row<'r> {
    /// Where the record's read began in its text (line breaks may precede
    /// the record itself).
    pub offset: usize,
    /// The record's fields, back to back, checked as UTF-8.
    pub text: &'r str,
    pub ends: &'r [usize],
    /// Index of the first cell (1 when a pipe-table row's leading pipe made
    /// an empty first field).
    pub first: usize,
    pub len: usize,
}

impl<'r> Row<'r> {
    pub fn len(&self) -> usize {
        self.len
    }

    fn field(&self, i: usize) -> Option<&'r str> {
        field(self.text, self.ends, i)
    }

    /// The trimmed cell.
    pub fn get(&self, column: usize) -> &'r str {
        if column >= self.len {
            return "";
        }
        self.field(self.first + column).map(trim).unwrap_or("")
    }

    /// The length of all the record's fields together.
    pub fn total_len(&self) -> usize {
        self.text.len()
    }

    /// The cell's length as read (unquoted, untrimmed).
    pub fn raw_len(&self, column: usize) -> usize {
        if column >= self.len {
            return 0;
        }
        self.field(self.first + column).map_or(0, str::len)
    }
}

/// Field `i` of a record.
pub(super) fn field<'a>(text: &'a str, ends: &[usize], i: usize) -> Option<&'a str> {
    let end = *ends.get(i)?;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    text.get(start..end)
}

/// What a text's header says, once read.
#[derive(Debug, Clone)]
pub(super) struct Header {
    pub delimiter: Delimiter,
    pub pipe_table: bool,
    pub names: Vec<String>,
    /// The header line ended with a delimiter: its last field, unnamed and
    /// empty, is not a column, and neither is the same field on a data row.
    pub trailing_delimiter: bool,
}

/// Why reading stopped before the end of a text.
#[derive(Debug)]
pub(super) enum Stop {
    /// The bet on the encoding failed: start over in the next one.
    NotUtf8,
    /// A fatal error; its line numbers count from the text's first line.
    Error(CsvError),
}

/// The data rows of one text, as a single pass reads them.
pub(super) struct RowReader<'t> {
    text: &'t [u8],
    pos: usize,
    last: bool,
    records: Records,
    header: &'t Header,
    lines: LineCounter<'t>,
}

pub(super) enum Next<'r> {
    Row(Row<'r>),
    /// The text ended: cleanly, or inside a record starting at `partial`.
    End {
        partial: Option<usize>,
    },
}

impl<'t> RowReader<'t> {
    /// `start`: where a record starts in `text`; `last`: the text ends the
    /// file.
    pub(super) fn new(text: &'t [u8], start: usize, last: bool, header: &'t Header) -> Self {
        RowReader {
            text,
            pos: start,
            last,
            records: Records::new(header.delimiter, false),
            header,
            lines: LineCounter::new(text),
        }
    }

    /// The line (from the text's first, 1) of a record read from `offset`.
    /// Offsets must not decrease between calls.
    pub(super) fn line_at(&mut self, offset: usize) -> u64 {
        self.lines.line_at(offset as u64)
    }

    pub(super) fn next_row(&mut self) -> Result<Next<'_>, Stop> {
        let delimiter = self.header.delimiter;
        loop {
            let start = match self.records.read(self.text, &mut self.pos, self.last) {
                Read::End => return Ok(Next::End { partial: None }),
                Read::Partial { start } => {
                    return Ok(Next::End {
                        partial: Some(skip_breaks(self.text, start)),
                    });
                }
                Read::Record { start } => start,
            };
            check_unclosed(self.text, start, self.pos, self.last, delimiter, &mut self.lines)?;
            if is_blank(self.records.fields()) {
                continue;
            }
            let fields = &self.records.fields[..self.records.len];
            let ends = &self.records.ends[..self.records.nends];
            let text = record_text(fields, ends).ok_or(Stop::NotUtf8)?;
            let (first, mut len) = cells_of(self.text, start, ends.len(), delimiter);
            // A row may end with a delimiter (a pipe table's closing pipe,
            // or an export that ends every line with one) whatever the
            // header did: an empty field past the last column is dropped.
            if (delimiter == Delimiter::Pipe || self.header.trailing_delimiter)
                && len == self.header.names.len() + 1
                && field(text, ends, first + len - 1).is_some_and(|f| f.trim().is_empty())
            {
                len -= 1;
            }
            return Ok(Next::Row(Row {
                offset: start,
                text,
                ends,
                first,
                len,
            }));
        }
    }
}

/// The first byte at or after `pos` that is not a line break: where a
/// record read from `pos` really starts, and a place a parse can start
/// from without splitting a CRLF.
fn skip_breaks(text: &[u8], mut pos: usize) -> usize {
    while matches!(text.get(pos), Some(b'\r' | b'\n')) {
        pos += 1;
    }
    pos
}

/// csv-core ends a quoted field that is still open at the end of the input
/// as if it were closed: only the record that reached the end of the file
/// can have one, so only that record is read again.
fn check_unclosed(
    text: &[u8],
    start: usize,
    pos: usize,
    last: bool,
    delimiter: Delimiter,
    lines: &mut LineCounter<'_>,
) -> Result<(), Stop> {
    if last
        && pos >= text.len()
        && let Some(quote) = unclosed_quote(&text[start..], delimiter.byte())
    {
        return Err(Stop::Error(CsvError::UnclosedQuote {
            line: lines.line_at((start + quote) as u64),
        }));
    }
    Ok(())
}

/// Where the cells of a record begin in it, and how many there are: a pipe
/// table's leading pipe makes an empty first field that is not a cell.
fn cells_of(text: &[u8], start: usize, fields: usize, delimiter: Delimiter) -> (usize, usize) {
    if delimiter != Delimiter::Pipe {
        return (0, fields);
    }
    let rest = text.get(start..).unwrap_or_default();
    let leading_pipe = rest.iter().find(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t')) == Some(&b'|');
    if leading_pipe && fields > 0 {
        (1, fields - 1)
    } else {
        (0, fields)
    }
}

/// What reading a header needs.
pub(super) enum HeaderRead {
    /// The header, and where the data rows start.
    Done(Header, usize),
    /// The text ended inside the header (or the line after it, for a pipe
    /// table): more text is needed.
    NeedMore,
}

/// Reads the header (the first non-blank record) from the start of the
/// file's text, and for a pipe table the markdown separator line after it.
pub(super) fn read_header(text: &[u8], last: bool, limits: &Limits) -> Result<HeaderRead, Stop> {
    let (delimiter, complete) = sniff_line(text);
    if !complete && !last {
        return Ok(HeaderRead::NeedMore);
    }
    let mut lines = LineCounter::new(text);
    let mut records = Records::new(delimiter, true);
    let mut pos = 0;
    let offset = loop {
        match records.read(text, &mut pos, last) {
            Read::End if last => return Err(Stop::Error(CsvError::NoHeader)),
            Read::End | Read::Partial { .. } => return Ok(HeaderRead::NeedMore),
            Read::Record { start } => {
                check_unclosed(text, start, pos, last, delimiter, &mut lines)?;
                if !is_blank(records.fields()) {
                    break start;
                }
            }
        }
    };
    let (fields, ends) = (records.fields(), records.ends());
    let record = record_text(fields, ends).ok_or(Stop::NotUtf8)?;
    let line = lines.line_at(offset as u64);
    let (first, mut len) = cells_of(text, offset, ends.len(), delimiter);
    let outer_pipes = first == 1;
    // A header that ends with a delimiter (a pipe table's closing pipe with
    // or without the opening one, or an export that ends every line with a
    // delimiter) has an unnamed empty last field: that is not a column.
    let trailing_delimiter =
        len > 1 && field(record, ends, first + len - 1).is_some_and(|f| f.trim().is_empty());
    if trailing_delimiter {
        len -= 1;
    }
    let error = |e| Err(Stop::Error(e));
    if len > limits.max_columns {
        return error(CsvError::TooManyColumns {
            columns: len,
            limit: limits.max_columns,
        });
    }
    let mut names = Vec::with_capacity(len);
    let mut seen = hashbrown::HashMap::with_capacity(len);
    for column in 0..len {
        let raw = field(record, ends, first + column).unwrap_or("");
        if raw.len() > limits.max_field_bytes {
            return error(CsvError::HeaderFieldTooLong {
                line,
                column: column + 1,
                bytes: raw.len(),
                limit: limits.max_field_bytes,
            });
        }
        let name = raw.trim();
        if name.is_empty() {
            return error(CsvError::UnnamedColumn {
                line,
                column: column + 1,
            });
        }
        if let Some(&earlier) = seen.get(name) {
            return error(CsvError::DuplicateColumn {
                name: excerpt(name),
                first: earlier,
                second: column + 1,
            });
        }
        seen.insert(name, column + 1);
        names.push(name.to_string());
    }
    drop(seen);
    let mut header = Header {
        delimiter,
        pipe_table: (outer_pipes || (trailing_delimiter && delimiter == Delimiter::Pipe))
            && !names.is_empty(),
        names,
        trailing_delimiter,
    };
    let mut data = pos;
    // A markdown separator line (`|---|:---:|`) may follow a pipe header.
    if delimiter == Delimiter::Pipe {
        match records.read(text, &mut pos, last) {
            Read::Partial { .. } => return Ok(HeaderRead::NeedMore),
            Read::End if !last => return Ok(HeaderRead::NeedMore),
            Read::End => {}
            Read::Record { start } => {
                check_unclosed(text, start, pos, last, delimiter, &mut lines)?;
                let (fields, ends) = (records.fields(), records.ends());
                let record = record_text(fields, ends).ok_or(Stop::NotUtf8)?;
                let (first, len) = cells_of(text, start, ends.len(), delimiter);
                let cells = (first..first + len)
                    .filter_map(|i| field(record, ends, i))
                    .map(str::trim);
                let mut cells = cells.filter(|c| !c.is_empty()).peekable();
                if cells.peek().is_some() && cells.all(is_alignment_cell) {
                    header.pipe_table = true;
                    data = pos;
                }
            }
        }
    }
    Ok(HeaderRead::Done(header, data))
}

/// What a table's ingest needs on every thread.
pub(super) struct Context<'a> {
    pub header: Header,
    pub key_column: usize,
    /// Compound or fallback keys: each key's column indices. The rows are
    /// then indexed under a row number, and each key in its own map.
    pub alternates: Option<Vec<Vec<usize>>>,
    /// The `valid_from` and `valid_to` columns (with `alternates` only).
    pub validity: Validity,
    pub options: &'a TableOptions,
    pub limits: &'a Limits,
    pub matcher: &'a Matcher,
    pub layout: RowLayout,
    pub hasher: &'a DefaultHashBuilder,
    /// [`IndexBuilder::bucket_mask`], once the table is sized: each unit's
    /// rows are sorted by bucket where they are parsed.
    pub buckets: AtomicU64,
    /// How the index stores each column, chosen from the first chunk's rows.
    pub codings: OnceLock<Vec<Coding>>,
}

/// An accepted row of a [`Unit`], its cells encoded in `Unit::rows`.
struct Entry {
    hash: u64,
    key: (u32, u32),
    row: (u32, u32),
    /// With compound or fallback keys: the row's keys in `Unit::tuples`.
    tuples: (u32, u32),
    /// When the row is valid (always, without `valid_from`/`valid_to`).
    interval: Interval,
    /// Where its record's read began in the unit's text.
    offset: usize,
}

/// How a unit's text ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitEnd {
    /// Between records.
    Clean,
    /// Inside the record that starts at this offset.
    Partial(usize),
    /// At the end of the file.
    Eof,
}

/// One text parsed: its rows, ready to be merged into the index in order.
pub(super) struct Unit {
    /// False when the chunk did not decode (strict UTF-16): the attempt fails.
    decoded: bool,
    text: Vec<u8>,
    rows: String,
    keys: Vec<u8>,
    /// With compound or fallback keys: each row's keys, in key order,
    /// separated by [`KEY_SEPARATOR`] (an empty one: a column is empty).
    tuples: String,
    entries: Vec<Entry>,
    rows_read: u64,
    rows_rejected: u64,
    /// Problems (lines from the text's first), at most [`MAX_PROBLEMS`].
    problems: Vec<RowProblem>,
    stop: Option<Stop>,
    end: UnitEnd,
    /// Offset in the file past this text, for progress.
    raw_end: u64,
    /// Line breaks in the text, or before the partial record at its end.
    lines: u64,
}

/// Parses a text from `start` (where a record starts, or is taken to).
pub(super) fn parse_unit(ctx: &Context<'_>, text: Vec<u8>, start: usize, last: bool, raw_end: u64) -> Unit {
    let mut unit = Unit {
        decoded: true,
        text: Vec::new(),
        rows: String::with_capacity(text.len()),
        keys: Vec::new(),
        tuples: String::new(),
        entries: Vec::new(),
        rows_read: 0,
        rows_rejected: 0,
        problems: Vec::new(),
        stop: None,
        end: UnitEnd::Clean,
        raw_end,
        lines: 0,
    };
    let columns = ctx.header.names.len();
    let mut reader = RowReader::new(&text, start, last, &ctx.header);
    loop {
        let row = match reader.next_row() {
            Err(stop) => {
                unit.stop = Some(stop);
                break;
            }
            Ok(Next::End { partial }) => {
                unit.end = match partial {
                    Some(at) => UnitEnd::Partial(at),
                    None if last => UnitEnd::Eof,
                    None => UnitEnd::Clean,
                };
                break;
            }
            Ok(Next::Row(row)) => row,
        };
        unit.rows_read += 1;
        let mut row_interval = Interval::ALWAYS;
        let checked = match &ctx.alternates {
            None => check_row(
                &row,
                columns,
                ctx.key_column,
                &ctx.header.names,
                ctx.limits,
                ctx.matcher,
            ),
            Some(entries) => check_row_keys(
                &row,
                columns,
                entries,
                ctx.validity,
                &ctx.header.names,
                ctx.limits,
                ctx.matcher,
            )
            .map(|(tuples, interval)| {
                row_interval = interval;
                tuples
            }),
        };
        let normalized = match checked {
            Ok(normalized) => normalized,
            Err(issue) => {
                let offset = row.offset;
                let line = reader.line_at(offset);
                unit.rows_rejected += 1;
                if unit.problems.len() < MAX_PROBLEMS {
                    unit.problems.push(RowProblem {
                        line,
                        reason: issue.to_string(),
                    });
                }
                if ctx.options.bad_rows == BadRowPolicy::Reject {
                    unit.stop = Some(Stop::Error(CsvError::Row { line, issue }));
                    break;
                }
                continue;
            }
        };
        let ordinal;
        let key: &str = if ctx.alternates.is_some() {
            // A row number unique in the file (the unit's end is unique per
            // unit): the keys are in `tuples`, `normalized` here.
            ordinal = format!("{:x}.{:x}", raw_end, row.offset);
            &ordinal
        } else if ctx.matcher.mode() == MatchMode::Exact {
            row.get(ctx.key_column)
        } else {
            &normalized
        };
        let Ok(tuples_at) = u32::try_from(unit.tuples.len()) else {
            unit.stop = Some(Stop::Error(CsvError::TooLarge));
            break;
        };
        if ctx.alternates.is_some() {
            unit.tuples.push_str(&normalized);
        }
        let (Ok(key_at), Ok(row_at)) = (u32::try_from(unit.keys.len()), u32::try_from(unit.rows.len()))
        else {
            unit.stop = Some(Stop::Error(CsvError::TooLarge));
            break;
        };
        unit.keys.extend_from_slice(key.as_bytes());
        let codings = ctx.codings.get().map_or(&[][..], Vec::as_slice);
        ctx.layout.encode(&mut unit.rows, codings, |c| row.get(c));
        let span = |at: u32, end: usize| (at, u32::try_from(end).unwrap_or(u32::MAX) - at);
        unit.entries.push(Entry {
            hash: ctx.hasher.hash_one(key.as_bytes()),
            key: span(key_at, unit.keys.len()),
            row: span(row_at, unit.rows.len()),
            tuples: span(tuples_at, unit.tuples.len()),
            interval: row_interval,
            offset: row.offset,
        });
    }
    drop(reader);
    // In the order of their buckets in the hash table, so that the merge
    // walks the table forwards instead of missing the cache at every row;
    // rows with the same key (hence the same hash) keep their file order
    // (their offsets), so duplicates resolve as in file order. An unstable
    // sort with that tie-break orders as a stable one would, and moves
    // these large entries less.
    // With compound or fallback keys the keys' maps are filled in file
    // order instead, which duplicates need.
    if ctx.alternates.is_none() {
        let mask = ctx.buckets.load(Ordering::Relaxed);
        unit.entries.sort_unstable_by_key(|e| (e.hash & mask, e.offset));
    }
    unit.lines = match unit.end {
        UnitEnd::Partial(at) => count_lines(&text[..at]),
        _ => count_lines(&text),
    };
    unit.text = text;
    unit
}

/// Line breaks in a text (CRLF, LF and lone CR each end a line).
fn count_lines(text: &[u8]) -> u64 {
    let (mut lf, mut cr) = (0usize, 0usize);
    // Byte-wide counters over blocks short enough not to overflow: the
    // compiler vectorises this into wide compares.
    for block in text.chunks(255) {
        let (mut l, mut c) = (0u8, 0u8);
        for &b in block {
            l += u8::from(b == b'\n');
            c += u8::from(b == b'\r');
        }
        lf += usize::from(l);
        cr += usize::from(c);
    }
    let crlf = if cr == 0 {
        0
    } else {
        text.windows(2).filter(|w| w == b"\r\n").count()
    };
    (lf + cr - crlf) as u64
}

/// Why an attempt did not produce a result.
pub(super) enum Failed {
    /// Try the next encoding.
    Encoding,
    Csv(CsvError),
    Read(std::io::Error),
}

impl From<CsvError> for Failed {
    fn from(e: CsvError) -> Self {
        Failed::Csv(e)
    }
}

/// The merge, on the calling thread: units in file order into the index
/// and the report.
struct Merge<'a, 'r> {
    ctx: &'a Context<'a>,
    builder: IndexBuilder,
    report: &'r mut Report,
    /// The line of the next unit's first byte.
    line: u64,
    /// The end of the previous unit, from where a record starts that it
    /// could not finish, and that text's first line.
    carry: Option<(Vec<u8>, u64)>,
    first_duplicate: Option<(u64, String)>,
    /// With intervals: the line of each row (by its entry in the index), to
    /// name both lines of an overlap.
    row_lines: hashbrown::HashMap<u32, u64>,
    /// The first overlap under the `reject` policy: line, earlier line, key.
    first_overlap: Option<(u64, u64, String)>,
    reserved: bool,
    total: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Merge<'_, '_> {
    /// Merges the next unit; `true` at the end of the file.
    fn merge(&mut self, unit: Unit, last: bool) -> Result<bool, Failed> {
        if !unit.decoded {
            return Err(Failed::Encoding);
        }
        match self.carry.take() {
            None => {
                let line = self.line;
                self.apply(unit, line)
            }
            Some((mut text, line)) => {
                // The unit was parsed from a start inside a quoted field:
                // parse it again, from where that record starts.
                text.extend_from_slice(&unit.text);
                let redo = parse_unit(self.ctx, text, 0, last, unit.raw_end);
                drop(unit);
                self.apply(redo, line)
            }
        }
    }

    fn apply(&mut self, mut unit: Unit, line: u64) -> Result<bool, Failed> {
        if let Some(Stop::NotUtf8) = unit.stop {
            return Err(Failed::Encoding);
        }
        let on_line = |relative: u64| line + relative - 1;
        let report = &mut *self.report;
        // Duplicates found, by position in the file, for the report.
        // (offset, first time the key repeats, the key as reported when it
        // is not the key cell).
        let mut repeated: Vec<(usize, bool, Option<String>)> = Vec::new();
        let intervals = self.ctx.validity != (None, None);
        let mut entry_lines = LineCounter::new(&unit.text);
        for entry in &unit.entries {
            let key = slice(&unit.keys, entry.key);
            let row = unit.rows.get(span(entry.row)).unwrap_or_default();
            let k = u32::try_from(self.builder.key_bytes()).map_err(|_| CsvError::TooLarge)?;
            let pushed = self
                .builder
                .push_encoded(entry.hash, key, row)
                .map_err(|_| CsvError::TooLarge)?;
            if let Pushed::Duplicate { first_of_key } = pushed {
                repeated.push((entry.offset, first_of_key, None));
            }
            let Some(entries) = &self.ctx.alternates else {
                continue;
            };
            // Entries are in file order here (see `parse_unit`).
            let this_line = if intervals {
                let at = on_line(entry_lines.line_at(entry.offset as u64));
                self.row_lines.insert(k, at);
                at
            } else {
                0
            };
            let tuples = unit.tuples.get(span(entry.tuples)).unwrap_or_default();
            for (j, tuple) in tuples.split(KEY_SEPARATOR).enumerate() {
                if tuple.is_empty() {
                    continue;
                }
                if let Some((first_of_key, earlier)) =
                    self.builder.push_alternate(j, tuple, k, entry.interval)
                {
                    let names = &self.ctx.header.names;
                    let label = format!(
                        "{}={}",
                        entries[j]
                            .iter()
                            .map(|&c| names[c].as_str())
                            .collect::<Vec<_>>()
                            .join("+"),
                        tuple.replace(KEY_PART_SEPARATOR, "+")
                    );
                    if intervals
                        && self.first_overlap.is_none()
                        && self.ctx.options.duplicates == DuplicatePolicy::Reject
                    {
                        let earlier_line = self.row_lines.get(&earlier).copied().unwrap_or(0);
                        self.first_overlap = Some((this_line, earlier_line, excerpt(&label)));
                    }
                    repeated.push((entry.offset, first_of_key, Some(label)));
                }
            }
        }
        report.rows_accepted += unit.entries.len() as u64;
        if !repeated.is_empty() {
            repeated.sort_unstable();
            unit.entries.sort_unstable_by_key(|e| e.offset);
            let mut lines = LineCounter::new(&unit.text);
            for (offset, first_of_key, label) in repeated {
                let Ok(i) = unit.entries.binary_search_by_key(&offset, |e| e.offset) else {
                    continue;
                };
                let entry = &unit.entries[i];
                let row = unit.rows.get(span(entry.row)).unwrap_or_default();
                let key_cell = || {
                    if let Some(label) = &label {
                        return excerpt(label);
                    }
                    let cell = match self.ctx.layout.raw_key(row) {
                        Some(cell) => cell,
                        None => std::str::from_utf8(slice(&unit.keys, entry.key)).unwrap_or_default(),
                    };
                    excerpt(cell)
                };
                report.duplicate_rows += 1;
                if first_of_key {
                    report.duplicate_keys += 1;
                    if report.duplicate_examples.len() < MAX_DUPLICATE_EXAMPLES {
                        report.duplicate_examples.push(key_cell());
                    }
                }
                if self.first_duplicate.is_none() && self.ctx.options.duplicates == DuplicatePolicy::Reject {
                    let at = on_line(lines.line_at(offset as u64));
                    self.first_duplicate = Some((at, key_cell()));
                }
            }
        }
        report.rows_read += unit.rows_read;
        report.rows_rejected += unit.rows_rejected;
        for mut problem in unit.problems.drain(..) {
            if report.problems.len() >= MAX_PROBLEMS {
                break;
            }
            problem.line = on_line(problem.line);
            report.problems.push(problem);
        }
        if !self.reserved && report.rows_accepted >= 1024 {
            // Sizes the hash table once from the average row so far.
            self.reserved = true;
            let done = unit.raw_end.max(1);
            let per_row = (done / report.rows_accepted).max(1);
            let rows = (self.total.saturating_sub(done) / per_row) as usize;
            let rows = rows + rows / 16;
            let key_bytes = self.builder.key_bytes() / report.rows_accepted as usize * rows;
            self.builder.reserve(rows, key_bytes);
            self.ctx
                .buckets
                .store(self.builder.bucket_mask(), Ordering::Relaxed);
        }
        match unit.stop.take() {
            Some(Stop::Error(CsvError::Row { line, issue })) => {
                return Err(CsvError::Row {
                    line: on_line(line),
                    issue,
                }
                .into());
            }
            Some(Stop::Error(CsvError::UnclosedQuote { line })) => {
                return Err(CsvError::UnclosedQuote { line: on_line(line) }.into());
            }
            Some(Stop::Error(e)) => return Err(e.into()),
            Some(Stop::NotUtf8) => return Err(Failed::Encoding),
            None => {}
        }
        (self.progress)(unit.raw_end);
        match unit.end {
            UnitEnd::Eof => return Ok(true),
            UnitEnd::Clean => self.line = line + unit.lines,
            UnitEnd::Partial(at) => {
                let mut text = unit.text;
                text.drain(..at);
                self.carry = Some((text, line + unit.lines));
            }
        }
        Ok(false)
    }
}

fn span((at, len): (u32, u32)) -> std::ops::Range<usize> {
    at as usize..at as usize + len as usize
}

fn slice(bytes: &[u8], at: (u32, u32)) -> &[u8] {
    bytes.get(span(at)).unwrap_or_default()
}

/// The chunks not yet merged, shared by the threads.
struct Shared {
    cursor: Cursor,
    parsed: BTreeMap<usize, (Unit, bool)>,
    /// The index of the next chunk to merge.
    merging: usize,
    stop: bool,
    error: Option<std::io::Error>,
}

/// One attempt at the whole file, in one encoding: the index, or why not.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    source: &dyn Source,
    attempt: &Attempt,
    options: &TableOptions,
    limits: &Limits,
    matcher: &Matcher,
    parallelism: Parallelism,
    progress: &mut dyn FnMut(u64),
    report: &mut Report,
) -> Result<TableIndex, Failed> {
    let decoding = attempt.decoding;
    let mut cursor = Cursor::new(attempt, parallelism.chunk_bytes);
    let mut text = Vec::new();
    let mut last = false;
    let mut raw_end = 0;
    let take = |cursor: &mut Cursor, text: &mut Vec<u8>| -> Result<(bool, u64), Failed> {
        let chunk = cursor.take(source).map_err(Failed::Read)?;
        let Some(chunk) = chunk else {
            return Ok((true, source.len()));
        };
        let decoded = decoding.decode(chunk.raw).ok_or(Failed::Encoding)?;
        text.extend_from_slice(&decoded);
        Ok((chunk.last, chunk.end))
    };
    // Enough text to look for a NUL near the start (a binary file, or
    // BOM-less UTF-16) and to sniff the delimiter on the whole header line.
    while !last && (text.len() < BINARY_SNIFF_BYTES || !sniff_line(&text).1) {
        (last, raw_end) = take(&mut cursor, &mut text)?;
    }
    // Transcoded text is reported before it is checked; bytes read as they
    // are, once they pass.
    let mut described = false;
    let mut describe = |report: &mut Report| {
        if !described {
            described = true;
            report.encoding = Some(attempt.name.to_string());
            report.delimiter = Some(sniff_line(&text).0.name().to_string());
        }
    };
    if decoding.utf16().is_some() {
        describe(report);
    }
    check_binary_at(&text)?;
    describe(report);
    let (header, data) = loop {
        match read_header(&text, last, limits) {
            Ok(HeaderRead::Done(header, data)) => break (header, data),
            Ok(HeaderRead::NeedMore) => (last, raw_end) = take(&mut cursor, &mut text)?,
            Err(Stop::NotUtf8) => return Err(Failed::Encoding),
            Err(Stop::Error(e)) => return Err(e.into()),
        }
    };
    report.pipe_table = header.pipe_table;
    report.columns = header.names.clone();
    let (key_column, alternates) = match &options.keys {
        None => (find_key_column(&header.names, options.key.as_str())?, None),
        Some(keys) => {
            let mut entries = Vec::with_capacity(keys.len());
            for entry in keys {
                let columns = entry
                    .iter()
                    .map(|c| find_key_column(&header.names, c.as_str()))
                    .collect::<Result<Vec<_>, _>>()?;
                entries.push(columns);
            }
            // No column is the key column: every column is stored in the row.
            (header.names.len(), Some(entries))
        }
    };
    // Intervals need the rows of a key apart: the same structure as
    // compound keys, with the key column as the one key.
    let (key_column, alternates) = match alternates {
        None if options.has_intervals() => (header.names.len(), Some(vec![vec![key_column]])),
        other => (key_column, other),
    };
    let interval_column =
        |option: &'static str, column: &Option<ColumnName>| -> Result<Option<usize>, CsvError> {
            let Some(column) = column else {
                return Ok(None);
            };
            match header.names.iter().position(|c| c == column.as_str()) {
                Some(i) => Ok(Some(i)),
                None => Err(CsvError::MissingIntervalColumn {
                    option,
                    column: column.to_string(),
                    columns: header
                        .names
                        .iter()
                        .map(|c| excerpt(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        };
    let validity = (
        interval_column("valid_from", &options.valid_from)?,
        interval_column("valid_to", &options.valid_to)?,
    );
    let on_duplicate = match options.duplicates {
        DuplicatePolicy::First | DuplicatePolicy::Reject => OnDuplicate::KeepFirst,
        DuplicatePolicy::Last => OnDuplicate::KeepLast,
        DuplicatePolicy::Ambiguous => OnDuplicate::MarkAmbiguous,
    };
    let total = source.len();
    let capacity = match matcher.mode() {
        MatchMode::Exact => total,
        _ => total + total / 4,
    };
    let mut builder = IndexBuilder::new(
        header.names.clone(),
        key_column,
        matcher.clone(),
        on_duplicate,
        usize::try_from(capacity).unwrap_or(usize::MAX),
    );
    if let Some(entries) = &alternates {
        builder.set_alternates(
            entries.clone(),
            validity,
            options.duplicates == DuplicatePolicy::Ambiguous,
        );
    }
    let hasher = builder.hasher().clone();
    let ctx = Context {
        header,
        key_column,
        alternates,
        validity,
        options,
        limits,
        matcher,
        layout: builder.layout(),
        hasher: &hasher,
        buckets: AtomicU64::new(0),
        codings: OnceLock::new(),
    };
    let mut merge = Merge {
        ctx: &ctx,
        builder,
        report,
        line: 1,
        carry: None,
        first_duplicate: None,
        row_lines: hashbrown::HashMap::new(),
        first_overlap: None,
        reserved: false,
        total,
        progress,
    };
    let first = parse_unit(&ctx, text, data, last, raw_end);
    let codings = Coding::choose(
        &ctx.layout,
        first.entries.iter().filter_map(|e| first.rows.get(span(e.row))),
    );
    merge.builder.set_codings(codings.clone());
    let _ = ctx.codings.set(codings);
    if !merge.merge(first, last)? {
        let threads = parallelism.threads.max(1);
        let shared = Mutex::new(Shared {
            merging: cursor.next,
            cursor,
            parsed: BTreeMap::new(),
            stop: false,
            error: None,
        });
        let wake = Condvar::new();
        let ahead = threads * AHEAD_PER_THREAD;
        let parse = |chunk: RawChunk| match decoding.decode(chunk.raw) {
            Some(text) => (parse_unit(&ctx, text, 0, chunk.last, chunk.end), chunk.last),
            None => (malformed(chunk.end), chunk.last),
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(|| work(source, &shared, &wake, ahead, &parse));
            }
            let result = merge_all(source, &shared, &wake, ahead, &parse, &mut merge);
            let mut state = lock(&shared);
            state.stop = true;
            wake.notify_all();
            result
        })?;
    }
    if let Some((line, earlier, key)) = merge.first_overlap {
        return Err(CsvError::OverlappingIntervals { line, earlier, key }.into());
    }
    if let Some((line, key)) = merge.first_duplicate {
        return Err(CsvError::DuplicateKey {
            line,
            key,
            keys: merge.report.duplicate_keys,
        }
        .into());
    }
    Ok(merge.builder.finish())
}

fn malformed(raw_end: u64) -> Unit {
    Unit {
        decoded: false,
        text: Vec::new(),
        rows: String::new(),
        keys: Vec::new(),
        tuples: String::new(),
        entries: Vec::new(),
        rows_read: 0,
        rows_rejected: 0,
        problems: Vec::new(),
        stop: Some(Stop::NotUtf8),
        end: UnitEnd::Clean,
        raw_end,
        lines: 0,
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the next chunk if the threads are not too far ahead of the merge.
fn take_chunk(state: &mut Shared, source: &dyn Source, ahead: usize) -> Option<RawChunk> {
    if state.stop || state.cursor.done || state.cursor.next >= state.merging + ahead {
        return None;
    }
    match state.cursor.take(source) {
        Ok(chunk) => chunk,
        Err(e) => {
            state.error = Some(e);
            state.stop = true;
            None
        }
    }
}

/// A parsing thread: chunks in, units out, until the file is read or the
/// merge stops.
fn work(
    source: &dyn Source,
    shared: &Mutex<Shared>,
    wake: &Condvar,
    ahead: usize,
    parse: &(dyn Fn(RawChunk) -> (Unit, bool) + Sync),
) {
    let mut state = lock(shared);
    loop {
        if state.stop || state.cursor.done {
            return;
        }
        let Some(chunk) = take_chunk(&mut state, source, ahead) else {
            if state.stop {
                wake.notify_all();
                return;
            }
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        drop(state);
        let index = chunk.index;
        let unit = parse(chunk);
        state = lock(shared);
        state.parsed.insert(index, unit);
        wake.notify_all();
    }
}

/// The calling thread: merges the units in order, and parses chunks itself
/// while the next unit to merge is not ready.
fn merge_all(
    source: &dyn Source,
    shared: &Mutex<Shared>,
    wake: &Condvar,
    ahead: usize,
    parse: &(dyn Fn(RawChunk) -> (Unit, bool) + Sync),
    merge: &mut Merge<'_, '_>,
) -> Result<(), Failed> {
    let mut state = lock(shared);
    loop {
        if let Some(e) = state.error.take() {
            return Err(Failed::Read(e));
        }
        let next = state.merging;
        if let Some((unit, last)) = state.parsed.remove(&next) {
            state.merging += 1;
            wake.notify_all();
            drop(state);
            if merge.merge(unit, last)? {
                return Ok(());
            }
            state = lock(shared);
            continue;
        }
        if state.cursor.done && state.cursor.next == next {
            // Every chunk merged: the file ended on a chunk merged earlier.
            return Ok(());
        }
        match take_chunk(&mut state, source, ahead) {
            Some(chunk) => {
                drop(state);
                let index = chunk.index;
                let unit = parse(chunk);
                state = lock(shared);
                state.parsed.insert(index, unit);
            }
            None => {
                if let Some(e) = state.error.take() {
                    return Err(Failed::Read(e));
                }
                state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}
