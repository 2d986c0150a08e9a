//! The in-memory form of one version of a reference table: immutable once
//! built, shared by every call that is enriched while the version is active.
//!
//! Layout, chosen for resident size and for the number of cache misses per
//! lookup and per enrichment (not for ease of mutation: a version never
//! changes):
//!
//! - `keys`: the match keys, back to back, each as the 4-byte offset of its
//!   row in `rows`, a length prefix and the key's bytes. In `exact` mode the
//!   match key *is* the trimmed key cell, so it is stored here only.
//! - `table`: a `hashbrown::HashTable<u32>` of offsets into `keys`, hashed on
//!   the key's bytes. `table` and `keys` are small (a few bytes per row
//!   besides the key itself), so a lookup stays within them and does not
//!   touch the row data: for the benchmark export they fit in the CPU cache.
//! - `rows`: one `String` with every kept row's other cells, each a length
//!   prefix followed by the trimmed cell, in *column-name order*: the order in
//!   which enrichment emits them, so enriching a call is one forward walk
//!   over one place in memory. Outside `exact` mode the raw key cell follows.
//! - `codings`, per column, chosen from the first rows ([`Coding::choose`]):
//!   for a column with few distinct values (a team, a city, a language: most
//!   of a CRM export's columns), its values stored once, a cell then being
//!   the value's number; for the others, the prefix and the suffix that its
//!   values share (a mail domain, a country code, an id's letters), stored
//!   once, a cell then holding only what lies between. A value that does not
//!   fit is stored whole.
//!
//! Prefixes use 6 bits per byte plus a continuation bit (bit 6), so every
//! prefix byte is ASCII and `rows` stays valid UTF-8: cells are sliced out as
//! `&str` with no unsafe code and no second validation. A cell's prefix holds
//! its length, or its value's number (the low two bits tell which form), so a
//! cell under 16 bytes costs one byte instead of the delimiter it replaces,
//! and a dictionary cell one byte in all: the old and the new version of a
//! typical export fit together in less than the file's size. A cell that
//! lost its prefix and suffix is put back together when read ([`Cow`]).

use std::borrow::Cow;
use std::fmt;
use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::matching::{MatchMode, Matcher};
use crate::validity::Interval;

/// One immutable version of a reference table.
#[derive(Clone)]
pub struct TableIndex {
    columns: Vec<String>,
    key_column: usize,
    matcher: Matcher,
    keys: Vec<u8>,
    rows: String,
    /// By storage slot (see `by_name`); the default for a column stored whole.
    codings: Vec<Coding>,
    table: HashTable<u32>,
    /// Under the `ambiguous` duplicates policy: the key offset of a key that
    /// appears on several rows, and on how many.
    ambiguous: HashMap<u32, u32>,
    hasher: DefaultHashBuilder,
    /// Storage slot -> column index: the columns other than the key column,
    /// sorted by name.
    by_name: Vec<usize>,
    /// Column index -> storage slot; for the key column, the slot of the raw
    /// key cell (`by_name.len()`), which exists outside `exact` mode only.
    slot_of: Vec<usize>,
    /// Column name -> storage slot, for the columns in `by_name`.
    slot_by_name: HashMap<String, usize>,
    /// The bytes of the names of the columns in `by_name`, all together: what
    /// enrichment reserves for them.
    name_bytes: usize,
    /// Compound or fallback keys (`keys` in the table options): the rows
    /// are then in `table` under a row number, and found through these.
    alternates: Option<Box<Alternates>>,
    /// `prefix` and `phone_prefix` modes: how the longest-prefix lookup
    /// goes.
    prefixes: Option<PrefixSearch>,
}

/// How a prefix table finds the longest key that a value starts with.
#[derive(Clone, Debug)]
enum PrefixSearch {
    /// The distinct key lengths, longest first: one probe of `table` per
    /// length, for the value's prefix of that length, until one is found.
    /// A probe that misses usually reads only the table's control bytes,
    /// which stay in cache for a table of 100k ranges; a search in the
    /// sorted keys misses the cache at every step and on every `parent`
    /// followed. Chosen when there are few lengths (phone ranges have a
    /// dozen at most).
    ByLength(Vec<usize>),
    /// Keys of many lengths: a search in the sorted keys.
    Sorted(Box<Prefixes>),
}

/// Past this many distinct key lengths, a prefix table is searched sorted.
const MAX_PROBED_LENGTHS: usize = 16;

impl PrefixSearch {
    fn build(keys: &[u8], table: &HashTable<u32>) -> PrefixSearch {
        let mut lengths: Vec<usize> = table.iter().map(|&k| key_at(keys, k as usize).len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        if lengths.len() <= MAX_PROBED_LENGTHS {
            PrefixSearch::ByLength(lengths)
        } else {
            PrefixSearch::Sorted(Box::new(Prefixes::build(keys, table)))
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            PrefixSearch::ByLength(lengths) => lengths.capacity() * size_of::<usize>(),
            PrefixSearch::Sorted(prefixes) => prefixes.heap_bytes(),
        }
    }
}

/// The keys of a prefix table, sorted, for a longest-prefix lookup in
/// O(log n) without scanning: a binary search finds the greatest key not
/// after the value; the longest key that is a prefix of the value is that
/// key or one of its own prefixes (every key between a prefix of the value
/// and the value starts with that prefix), which `parent` links.
#[derive(Clone, Debug, Default)]
struct Prefixes {
    /// By key. A node holds what the search and the prefix tests need, in
    /// one cache line: for keys of up to 16 bytes (phone ranges, codes) a
    /// lookup never follows an offset into `keys`.
    nodes: Vec<PrefixNode>,
    /// Every [`STRIDE`]th node's head: a first search in these few (they
    /// stay in cache) narrows the search in `nodes` to one stride.
    tops: Vec<u128>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PrefixNode {
    /// The first 16 bytes of the key (zero-padded, big-endian).
    head: u128,
    /// The key's entry in `keys`.
    k: u32,
    /// The position of the longest other key that is a prefix of this one,
    /// or [`NO_PARENT`].
    parent: u32,
    /// The key's length, or [`LONG_KEY`] past 16 bytes (then compared in full).
    len: u8,
}

const NO_PARENT: u32 = u32::MAX;
const LONG_KEY: u8 = u8::MAX;
const HEAD: usize = 16;
const STRIDE: usize = 32;

/// The first 16 bytes of a key, zero-padded: ordered as the keys are (a key
/// holding a NUL byte would only cost a few more full comparisons, since
/// equal heads are compared in full).
#[inline]
fn head(key: &[u8]) -> u128 {
    let mut bytes = [0u8; HEAD];
    let n = key.len().min(HEAD);
    bytes[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(bytes)
}

impl Prefixes {
    fn build(keys: &[u8], table: &HashTable<u32>) -> Prefixes {
        let mut sorted: Vec<u32> = table.iter().copied().collect();
        sorted.sort_unstable_by(|&a, &b| key_at(keys, a as usize).cmp(key_at(keys, b as usize)));
        let mut nodes = Vec::with_capacity(sorted.len());
        // The chain of keys, each a prefix of the next, ending at the
        // previous key.
        let mut chain: Vec<u32> = Vec::new();
        for (i, &k) in sorted.iter().enumerate() {
            let key = key_at(keys, k as usize);
            while let Some(&top) = chain.last() {
                if key.starts_with(key_at(keys, sorted[top as usize] as usize)) {
                    break;
                }
                chain.pop();
            }
            nodes.push(PrefixNode {
                head: head(key),
                k,
                parent: chain.last().copied().unwrap_or(NO_PARENT),
                len: if key.len() <= HEAD {
                    key.len() as u8
                } else {
                    LONG_KEY
                },
            });
            chain.push(i as u32);
        }
        let tops = nodes.iter().step_by(STRIDE).map(|n| n.head).collect();
        Prefixes { nodes, tops }
    }

    /// The entry of the longest key that `value` starts with.
    #[inline]
    fn find(&self, keys: &[u8], value: &[u8]) -> Option<u32> {
        let h = head(value);
        let nodes = &self.nodes;
        // Keys whose head is below the value's come before it, those whose
        // head is above after it; only equal heads need the whole key.
        let t = self.tops.partition_point(|&x| x < h);
        let from = t.saturating_sub(1) * STRIDE;
        let to = (t * STRIDE + 1).min(nodes.len());
        let lo = from + nodes[from..to].partition_point(|n| n.head < h);
        // Keys sharing 16 bytes with the value: usually none or one.
        let equal = nodes[lo..].iter().take_while(|n| n.head == h).count();
        let within = match equal {
            0 => 0,
            _ => nodes[lo..lo + equal].partition_point(|n| key_at(keys, n.k as usize) <= value),
        };
        let mut i = (lo + within).checked_sub(1)?;
        loop {
            let node = nodes[i];
            let holds = match node.len {
                LONG_KEY => value.starts_with(key_at(keys, node.k as usize)),
                len => {
                    let len = usize::from(len);
                    // The first `len` bytes agree (a shift by 128, for an
                    // empty key, holds for every value).
                    len <= value.len()
                        && (node.head ^ h).checked_shr(8 * (HEAD - len) as u32).unwrap_or(0) == 0
                }
            };
            if holds {
                return Some(node.k);
            }
            match node.parent {
                NO_PARENT => return None,
                p => i = p as usize,
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<PrefixNode>() + self.tops.capacity() * 16
    }
}

/// The lookup structures of a table with compound or fallback keys.
///
/// Each key (one or several columns) has its own map from the key's
/// normalised cells, joined by [`KEY_PART_SEPARATOR`], to the row's entry
/// in `keys`. These maps hold an owned copy of each key, so such a table
/// costs some 60 bytes per row and key more than a single-key one: the
/// price of finding one stored row by several keys.
#[derive(Clone, Debug, Default)]
struct Alternates {
    keys: Vec<AlternateKey>,
    /// The duplicates policy is `ambiguous`.
    ambiguous: bool,
    /// The `valid_from` and `valid_to` columns, if any.
    validity: (Option<usize>, Option<usize>),
}

#[derive(Clone, Debug)]
struct AlternateKey {
    /// Column indices, in the order of the key.
    columns: Vec<usize>,
    /// While building: key -> its rows, by start of validity (one, without
    /// intervals), their intervals disjoint. Emptied by [`Runs::freeze`].
    building: HashMap<Box<str>, Vec<Slot>>,
    /// Once built: the same, laid out for lookups.
    runs: Runs,
}

/// The rows of every value of one alternate key, frozen for lookups.
///
/// A map from keys to vectors of rows costs a lookup four dependent cache
/// misses (the table's control bytes, its bucket, the key's bytes, the
/// rows); with 10 intervals per key the last one alone is most of a
/// lookup. Here each key's *run* lies in one place in `bytes`: the key's
/// length prefix and bytes, then the number `n` of its rows, then per row
/// a [`RUN_ROW`]-byte record: its start and end (`i64`), its key entry,
/// row offset and overlap count (`u32`), all little-endian. A lookup reads
/// every record of the run with no branch on what it reads: those reads do
/// not wait on each other, so the run's few cache lines arrive together,
/// and the key compared is next to them: a lookup costs about the table's
/// two misses and one into `bytes`.
///
/// A run starts at a multiple of [`RUN_ALIGN`] and `table` holds its
/// offset in those units, so that 32-bit entries address 32 GB.
#[derive(Clone, Debug, Default)]
struct Runs {
    bytes: RunBytes,
    table: HashTable<u32>,
    keys: usize,
}

const RUN_ALIGN: usize = 8;
/// The bytes of a row's record in a run: start, end, key entry, row
/// offset, rows.
const RUN_ROW: usize = 2 * 8 + 3 * 4;
/// Up to this many rows per key, every record is read (see [`Runs`]);
/// past it, the starts are searched.
const RUN_SCAN: usize = 16;
/// An open start or end, as stored in a run. Bounds are instants of the
/// years 0 to 9999 ([`crate::validity::parse_bound`]), far from both.
const OPEN_START: i64 = i64::MIN;
const OPEN_END: i64 = i64::MAX;

impl Runs {
    /// Lays the rows of `building` out in runs. Rows with an empty
    /// interval (never valid, so never found or overlapped) are left out.
    fn freeze(building: HashMap<Box<str>, Vec<Slot>>, hasher: &DefaultHashBuilder) -> Runs {
        let keys = building.len();
        let mut bytes = Vec::new();
        let mut table = HashTable::with_capacity(keys);
        for (key, mut slots) in building {
            slots.retain(|s| s.interval.overlaps(&s.interval));
            bytes.resize(bytes.len().next_multiple_of(RUN_ALIGN), 0);
            let unit = u32::try_from(bytes.len() / RUN_ALIGN)
                .expect("runs outgrow 32 GB only for files far above the size limit");
            write_len(&mut bytes, key.len());
            bytes.extend_from_slice(key.as_bytes());
            write_len(&mut bytes, slots.len());
            for s in &slots {
                bytes.extend_from_slice(&s.interval.from.unwrap_or(OPEN_START).to_le_bytes());
                bytes.extend_from_slice(&s.interval.to.unwrap_or(OPEN_END).to_le_bytes());
                for field in [s.k, s.row, s.rows] {
                    bytes.extend_from_slice(&field.to_le_bytes());
                }
            }
            table.insert_unique(hasher.hash_one(key.as_bytes()), unit, |&u| {
                hasher.hash_one(run_key(&bytes, u))
            });
        }
        bytes.shrink_to_fit();
        let bytes = RunBytes::from(bytes);
        Runs { bytes, table, keys }
    }

    /// The row of `key` valid at `t`: `(key entry, row offset, rows)`.
    #[inline]
    fn find(&self, hasher: &DefaultHashBuilder, key: &[u8], t: i64) -> Option<(u32, u32, u32)> {
        let bytes = &self.bytes;
        let &unit = self
            .table
            .find(hasher.hash_one(key), |&u| run_key(bytes, u) == key)?;
        let (len, data) = read_len(bytes, unit as usize * RUN_ALIGN);
        let (n, records) = read_len(bytes, data + len);
        // The rows are sorted by start and their intervals are disjoint and
        // not empty: only the last row starting at or before `t` can hold it.
        let start = |i: usize| read_i64(bytes, records + RUN_ROW * i);
        let at_or_before = if n <= RUN_SCAN {
            (0..n).map(|i| usize::from(start(i) <= t)).sum()
        } else {
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if start(mid) <= t {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let i = at_or_before.checked_sub(1)?;
        let record = records + RUN_ROW * i;
        let end = read_i64(bytes, record + 8);
        if end != OPEN_END && t >= end {
            return None;
        }
        Some((
            read_u32(bytes, record + 16),
            read_u32(bytes, record + 20),
            read_u32(bytes, record + 24),
        ))
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.len() + self.table.allocation_size()
    }
}

/// Runs' bytes, in huge pages where the system gives them on request.
///
/// A lookup's one read into a run is a random access into tens of
/// megabytes: with 4 KiB pages it misses the TLB as well as the cache, and
/// a page walk costs as much again (more in a virtual machine). An
/// anonymous map advised `MADV_HUGEPAGE` is backed by 2 MiB pages where the
/// kernel allows it (`transparent_hugepage` set to `madvise` or `always`);
/// elsewhere, or if the map cannot be made, the bytes stay in a `Vec`.
#[derive(Debug)]
enum RunBytes {
    Map(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Default for RunBytes {
    fn default() -> Self {
        RunBytes::Heap(Vec::new())
    }
}

/// Below this, huge pages would not pay for the map.
const HUGE_PAGE_MIN: usize = 4 << 20;

impl From<Vec<u8>> for RunBytes {
    fn from(v: Vec<u8>) -> Self {
        if v.len() < HUGE_PAGE_MIN {
            return RunBytes::Heap(v);
        }
        match memmap2::MmapMut::map_anon(v.len()) {
            Ok(mut map) => {
                // Advice only: without it the map works the same, in small pages.
                let _ = map.advise(memmap2::Advice::HugePage);
                map.copy_from_slice(&v);
                RunBytes::Map(map)
            }
            Err(_) => RunBytes::Heap(v),
        }
    }
}

impl Clone for RunBytes {
    fn clone(&self) -> Self {
        RunBytes::from(self.to_vec())
    }
}

impl std::ops::Deref for RunBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            RunBytes::Map(map) => map,
            RunBytes::Heap(v) => v,
        }
    }
}

/// The key of the run at `unit` (in [`RUN_ALIGN`]s).
#[inline]
fn run_key(bytes: &[u8], unit: u32) -> &[u8] {
    let (len, data) = read_len(bytes, unit as usize * RUN_ALIGN);
    bytes.get(data..data.saturating_add(len)).unwrap_or_default()
}

#[inline]
fn read_i64(bytes: &[u8], pos: usize) -> i64 {
    match bytes.get(pos..pos + 8) {
        Some(&[a, b, c, d, e, f, g, h]) => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    }
}

#[inline]
fn read_u32(bytes: &[u8], pos: usize) -> u32 {
    match bytes.get(pos..pos + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// A row of a key, valid over `interval`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    interval: Interval,
    /// The row's entry in `keys`.
    k: u32,
    /// The row's offset in `rows`, so that a lookup need not read it from
    /// `keys`.
    row: u32,
    /// Rows of the key whose interval overlapped this one's (1: none).
    rows: u32,
}

/// Joins the parts of a compound key (normalised cells cannot hold it: a
/// control character in a cell would have to match one in the call's value
/// at the same place).
pub const KEY_PART_SEPARATOR: char = '\u{1f}';

impl fmt::Debug for TableIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableIndex")
            .field("columns", &self.columns)
            .field("key_column", &self.key_column())
            .field("mode", &self.matcher.mode())
            .field("keys", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// The outcome of looking one value up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Found(RowRef<'a>),
    NotFound,
    /// The key appears on several rows and the table's policy is `ambiguous`.
    Ambiguous {
        rows: usize,
    },
    /// The value has no comparable form (blank, or not a phone number).
    Unnormalizable,
}

/// A cell as stored: whole (in `middle`), or the middle that lies between
/// its column's shared prefix and suffix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CellParts<'a> {
    prefix: &'a str,
    middle: &'a str,
    suffix: &'a str,
}

impl<'a> CellParts<'a> {
    fn whole(value: &'a str) -> CellParts<'a> {
        CellParts {
            prefix: "",
            middle: value,
            suffix: "",
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.prefix.len() + self.middle.len() + self.suffix.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push_to(&self, out: &mut String) {
        out.push_str(self.prefix);
        out.push_str(self.middle);
        out.push_str(self.suffix);
    }

    fn into_cow(self) -> Cow<'a, str> {
        if self.prefix.is_empty() && self.suffix.is_empty() {
            return Cow::Borrowed(self.middle);
        }
        let mut whole = String::with_capacity(self.len());
        self.push_to(&mut whole);
        Cow::Owned(whole)
    }
}

impl fmt::Display for CellParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.prefix, self.middle, self.suffix)
    }
}

/// A row of a [`TableIndex`]; cheap to copy.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    index: &'a TableIndex,
    /// Offset of the row's entry in `keys`.
    key: u32,
    /// Offset of the row's cells in `rows`.
    row: u32,
}

impl PartialEq for RowRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.index, other.index) && self.key == other.key && self.row == other.row
    }
}

impl Eq for RowRef<'_> {}

impl fmt::Debug for RowRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> RowRef<'a> {
    /// The trimmed cell of `column` (an index into [`TableIndex::columns`]);
    /// empty for a column index out of range.
    pub fn get(&self, column: usize) -> Cow<'a, str> {
        let index = self.index;
        if column >= index.columns.len() {
            return Cow::Borrowed("");
        }
        if column == index.key_column && index.matcher.mode() == MatchMode::Exact {
            return Cow::Borrowed(self.match_key());
        }
        let slot = index.slot_of[column];
        let mut pos = self.row as usize;
        for _ in 0..slot {
            pos = skip_slot(index.rows.as_bytes(), pos);
        }
        index.cell(slot, pos).0
    }

    /// `(column name, trimmed cell)` for every column, in header order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
        let index = self.index;
        let mut by_slot: Vec<Cow<'a, str>> = Vec::with_capacity(index.by_name.len() + 1);
        by_slot.extend(self.cells_by_name().map(|(_, value)| value));
        let raw_key = match index.matcher.mode() {
            MatchMode::Exact => Cow::Borrowed(self.match_key()),
            _ => self.raw_key_after(by_slot.len()),
        };
        by_slot.push(raw_key);
        index
            .columns
            .iter()
            .zip(&index.slot_of)
            .map(move |(name, &slot)| {
                let value = by_slot.get(slot).cloned().unwrap_or_default();
                (name.as_str(), value)
            })
    }

    /// The cells in header order.
    pub fn values(&self) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        self.iter().map(|(_, value)| value)
    }

    /// `(column index, trimmed cell)` for every column but the key column,
    /// sorted by column name: the cheapest way through a row.
    pub fn cells_by_name(&self) -> impl Iterator<Item = (usize, Cow<'a, str>)> + 'a {
        let index = self.index;
        let mut pos = self.row as usize;
        index.by_name.iter().enumerate().map(move |(slot, &column)| {
            let (value, next) = index.cell(slot, pos);
            pos = next;
            (column, value)
        })
    }

    /// [`Self::cells_by_name`] with each cell in its parts, which costs no
    /// allocation.
    pub(crate) fn cell_parts_by_name(&self) -> impl Iterator<Item = (usize, CellParts<'a>)> + 'a {
        let index = self.index;
        let mut pos = self.row as usize;
        index.by_name.iter().enumerate().map(move |(slot, &column)| {
            let (value, next) = index.cell_parts(slot, pos);
            pos = next;
            (column, value)
        })
    }

    /// The bytes of the cells of [`Self::cells_by_name`], all together.
    pub(crate) fn text_bytes(&self) -> usize {
        self.cell_parts_by_name().map(|(_, cell)| cell.len()).sum()
    }

    /// The key as compared: the trimmed key cell (`exact`) or its normalised form.
    pub fn match_key(&self) -> &'a str {
        let keys = &self.index.keys;
        std::str::from_utf8(key_at(keys, self.key as usize)).unwrap_or("")
    }

    fn raw_key_after(&self, slots: usize) -> Cow<'a, str> {
        let rows = self.index.rows.as_bytes();
        let mut pos = self.row as usize;
        for _ in 0..slots {
            pos = skip_slot(rows, pos);
        }
        self.index.cell(slots, pos).0
    }
}

impl TableIndex {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The key column; for a table with compound or fallback keys, the
    /// first column of the first key.
    pub fn key_column(&self) -> &str {
        match &self.alternates {
            Some(alt) => alt
                .keys
                .first()
                .and_then(|k| k.columns.first())
                .map_or("", |&c| self.columns[c].as_str()),
            None => &self.columns[self.key_column],
        }
    }

    /// The keys tried in order, as column indices: several for a table with
    /// compound or fallback keys, else the key column alone.
    pub fn key_entries(&self) -> Vec<&[usize]> {
        match &self.alternates {
            Some(alt) => alt.keys.iter().map(|k| k.columns.as_slice()).collect(),
            None => vec![std::slice::from_ref(&self.key_column)],
        }
    }

    /// Whether the table has compound or fallback keys.
    pub fn has_alternates(&self) -> bool {
        self.alternates.is_some()
    }

    /// Finds the row of key `entry` (an index into [`Self::key_entries`])
    /// from its normalised parts joined by [`KEY_PART_SEPARATOR`]: of the
    /// key's rows, the one valid at `at_ms` (epoch milliseconds).
    pub fn lookup_entry(&self, entry: usize, key: &str, at_ms: i64) -> Lookup<'_> {
        let Some(alt) = &self.alternates else {
            return if entry == 0 {
                self.lookup_normalized(key)
            } else {
                Lookup::NotFound
            };
        };
        let found = alt
            .keys
            .get(entry)
            .and_then(|k| k.runs.find(&self.hasher, key.as_bytes(), at_ms));
        match found {
            None => Lookup::NotFound,
            Some((_, _, rows)) if alt.ambiguous && rows > 1 => Lookup::Ambiguous { rows: rows as usize },
            Some((key, row, _)) => Lookup::Found(RowRef {
                index: self,
                key,
                row,
            }),
        }
    }

    /// The `valid_from` and `valid_to` cells of a row, when the table has
    /// intervals.
    pub fn validity_of(&self, row: &RowRef<'_>) -> Option<(String, String)> {
        let alt = self.alternates.as_ref()?;
        let cell = |c: Option<usize>| c.map(|c| row.get(c).into_owned()).unwrap_or_default();
        match alt.validity {
            (None, None) => None,
            (from, to) => Some((cell(from), cell(to))),
        }
    }

    /// Distinct keys of a table with compound or fallback keys, all keys
    /// together.
    pub fn alternate_keys(&self) -> usize {
        self.alternates
            .as_ref()
            .map_or(0, |alt| alt.keys.iter().map(|k| k.runs.keys).sum())
    }

    /// The position of the key column in [`Self::columns`].
    pub fn key_column_index(&self) -> usize {
        self.key_column
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The number of distinct keys that can be looked up.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Normalises `raw` with the table's matcher and finds its row.
    pub fn lookup(&self, raw: &str) -> Lookup<'_> {
        match self.matcher.normalize(raw) {
            None => Lookup::Unnormalizable,
            Some(key) => self.lookup_normalized(&key),
        }
    }

    /// Finds the row of an already normalised key.
    /// In `prefix` and `phone_prefix` modes, the row of the longest key
    /// that `key` starts with.
    pub fn lookup_normalized(&self, key: &str) -> Lookup<'_> {
        let key = key.as_bytes();
        let keys = &self.keys;
        let found = match &self.prefixes {
            Some(PrefixSearch::Sorted(prefixes)) => prefixes.find(keys, key),
            Some(PrefixSearch::ByLength(lengths)) => lengths.iter().find_map(|&len| {
                let prefix = key.get(..len)?;
                let hash = self.hasher.hash_one(prefix);
                self.table
                    .find(hash, |&k| key_at(keys, k as usize) == prefix)
                    .copied()
            }),
            None => {
                let hash = self.hasher.hash_one(key);
                self.table
                    .find(hash, |&k| key_at(keys, k as usize) == key)
                    .copied()
            }
        };
        match found {
            None => Lookup::NotFound,
            Some(k) => {
                if !self.ambiguous.is_empty()
                    && let Some(&rows) = self.ambiguous.get(&k)
                {
                    return Lookup::Ambiguous { rows: rows as usize };
                }
                Lookup::Found(self.row_ref(k))
            }
        }
    }

    /// Every row that can be looked up, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        self.table.iter().map(move |&k| self.row_ref(k))
    }

    /// Approximate resident size: keys, rows, the hash table and the names.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.rows.capacity()
            + self.codings.iter().map(Coding::heap_bytes).sum::<usize>()
            + self.table.allocation_size()
            + self.ambiguous.allocation_size()
            + self
                .columns
                .iter()
                .map(|c| c.capacity() + size_of::<String>())
                .sum::<usize>()
            + (self.by_name.capacity() + self.slot_of.capacity()) * size_of::<usize>()
            + self.slot_by_name.allocation_size()
            + self.prefixes.as_ref().map_or(0, |p| p.heap_bytes())
            + self
                .alternates
                .as_ref()
                .map_or(0, |alt| alt.keys.iter().map(|k| k.runs.heap_bytes()).sum())
    }

    /// The storage slot of a column other than the key column.
    pub(crate) fn slot_of_column(&self, column: usize) -> Option<usize> {
        self.slot_of
            .get(column)
            .copied()
            .filter(|&s| s < self.by_name.len())
    }

    /// The storage slot (position in [`RowRef::cells_by_name`]) of a column
    /// other than the key column.
    pub(crate) fn slot_by_name(&self, name: &str) -> Option<usize> {
        self.slot_by_name.get(name).copied()
    }

    /// The bytes of the names of the columns other than the key column,
    /// all together, and their number.
    pub(crate) fn name_bytes(&self) -> (usize, usize) {
        (self.name_bytes, self.by_name.len())
    }

    /// The cell of storage slot `slot` at `pos` in `rows`, and the position
    /// after it.
    #[inline]
    fn cell(&self, slot: usize, pos: usize) -> (Cow<'_, str>, usize) {
        let (parts, end) = self.cell_parts(slot, pos);
        (parts.into_cow(), end)
    }

    /// [`Self::cell`] in its parts, which costs no allocation.
    #[inline]
    fn cell_parts(&self, slot: usize, pos: usize) -> (CellParts<'_>, usize) {
        let (value, data) = read_len(self.rows.as_bytes(), pos);
        let coding = self.codings.get(slot);
        match value & KIND {
            DICTIONARY => {
                let value = coding.map_or("", |c| c.values.get(value >> 2));
                (CellParts::whole(value), data)
            }
            kind => {
                let end = data.saturating_add(value >> 2);
                let middle = self.rows.get(data..end).unwrap_or("");
                match coding {
                    Some(c) if kind == AFFIXED => (
                        CellParts {
                            prefix: &c.prefix,
                            middle,
                            suffix: &c.suffix,
                        },
                        end,
                    ),
                    _ => (CellParts::whole(middle), end),
                }
            }
        }
    }

    fn row_ref(&self, key: u32) -> RowRef<'_> {
        RowRef {
            index: self,
            key,
            row: row_offset(&self.keys, key as usize),
        }
    }
}

/// `value` without `prefix` and `suffix`, if it has both (not overlapping).
/// Affixes are short: comparing them byte by byte, without a branch per
/// byte, costs less than the calls to `memcmp` that `strip_prefix` and
/// `strip_suffix` make for every cell.
#[inline]
fn strip_affixes<'v>(value: &'v str, prefix: &str, suffix: &str) -> Option<&'v str> {
    let same = |a: &[u8], b: &[u8]| a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0;
    let bytes = value.as_bytes();
    let (p, s) = (prefix.len(), suffix.len());
    if bytes.len() < p + s
        || !same(&bytes[..p], prefix.as_bytes())
        || !same(&bytes[bytes.len() - s..], suffix.as_bytes())
    {
        return None;
    }
    // The affixes are whole UTF-8 strings that match at both ends, so the
    // cuts fall on character boundaries.
    value.get(p..bytes.len() - s)
}

/// Appends a length prefix: 6 bits per byte, bit 6 set on all but the last
/// byte, so every byte is below 0x80.
fn encode_len(mut len: usize, mut emit: impl FnMut(u8)) {
    loop {
        let low = (len & 0x3f) as u8;
        len >>= 6;
        if len == 0 {
            emit(low);
            return;
        }
        emit(low | 0x40);
    }
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    encode_len(len, |b| out.push(b));
}

/// Reads the length prefix at `pos`: `(length, position of the data)`.
#[inline]
fn read_len(bytes: &[u8], mut pos: usize) -> (usize, usize) {
    let mut len = 0usize;
    let mut shift = 0u32;
    while let Some(&b) = bytes.get(pos) {
        pos += 1;
        len |= ((b & 0x3f) as usize) << shift;
        if b & 0x40 == 0 {
            break;
        }
        shift += 6;
        if shift > 60 {
            break;
        }
    }
    (len, pos)
}

/// The position after the cell at `pos` in `rows`.
#[inline]
fn skip_slot(rows: &[u8], pos: usize) -> usize {
    let (value, data) = read_len(rows, pos);
    match value & KIND {
        DICTIONARY => data,
        _ => data.saturating_add(value >> 2),
    }
}

/// A cell stored whole, at `pos` in `rows`, and the position after it
/// (empty for a cell in another form).
fn whole_cell(rows: &str, pos: usize) -> (&str, usize) {
    let (value, data) = read_len(rows.as_bytes(), pos);
    match value & KIND {
        DICTIONARY => ("", data),
        kind => {
            let end = data.saturating_add(value >> 2);
            let cell = if kind == WHOLE {
                rows.get(data..end).unwrap_or("")
            } else {
                ""
            };
            (cell, end)
        }
    }
}

/// The low two bits of a cell's prefix: its form.
const KIND: usize = 0b11;
/// The cell's bytes follow; the rest of the prefix is their length.
const WHOLE: usize = 0;
/// The rest of the prefix is a number in the column's dictionary.
const DICTIONARY: usize = 1;
/// The bytes between the column's prefix and suffix follow.
const AFFIXED: usize = 2;

/// How one column's cells are stored: whole, as a number in its
/// dictionary, or without the prefix and suffix its values share.
#[derive(Clone, Debug, Default)]
pub(crate) struct Coding {
    values: Dictionary,
    prefix: String,
    suffix: String,
}

/// Prefixes and suffixes shorter than this are not worth a cell's check.
const MIN_AFFIX_BYTES: usize = 3;

impl Coding {
    fn heap_bytes(&self) -> usize {
        self.values.heap_bytes() + self.prefix.capacity() + self.suffix.capacity()
    }

    /// Appends a cell with its prefix.
    #[inline]
    fn encode(&self, rows: &mut String, value: &str) {
        if !self.values.is_empty()
            && let Some(id) = self.values.find(value)
        {
            encode_len(id << 2 | DICTIONARY, |b| rows.push(char::from(b)));
            return;
        }
        if !(self.prefix.is_empty() && self.suffix.is_empty())
            && let Some(middle) = strip_affixes(value, &self.prefix, &self.suffix)
        {
            encode_len(middle.len() << 2 | AFFIXED, |b| rows.push(char::from(b)));
            rows.push_str(middle);
            return;
        }
        encode_whole(rows, value);
    }

    /// How a table's columns are stored, by storage slot, from some of its
    /// first rows (encoded by [`RowLayout::encode`] with no codings): a
    /// dictionary when the values repeat a lot (at most one distinct value
    /// in 8 rows), numbered in order of appearance; otherwise the prefix and
    /// suffix that all the values share, when they are long enough.
    pub(crate) fn choose<'r>(layout: &RowLayout, rows: impl Iterator<Item = &'r str>) -> Vec<Coding> {
        let slots = layout.by_name.len();
        let mut seen: Vec<Option<HashMap<&'r str, ()>>> = (0..slots).map(|_| Some(HashMap::new())).collect();
        let mut order: Vec<Vec<&'r str>> = vec![Vec::new(); slots];
        let mut affixes: Vec<Option<(&'r str, &'r str)>> = vec![None; slots];
        let mut count = 0usize;
        for row in rows {
            count += 1;
            let mut pos = 0;
            for slot in 0..slots {
                let (value, next) = whole_cell(row, pos);
                pos = next;
                affixes[slot] = Some(match affixes[slot] {
                    None => (value, value),
                    Some((prefix, suffix)) => (common_prefix(prefix, value), common_suffix(suffix, value)),
                });
                let Some(distinct) = &mut seen[slot] else {
                    continue;
                };
                if value.len() > DICTIONARY_VALUE_BYTES {
                    // Stays in its row; the column's short values may repeat.
                    continue;
                }
                if distinct.len() >= DICTIONARY_VALUES {
                    seen[slot] = None;
                    continue;
                }
                if distinct.insert(value, ()).is_none() {
                    order[slot].push(value);
                }
            }
        }
        let mut codings = Vec::with_capacity(slots);
        for ((distinct, values), affix) in seen.into_iter().zip(order).zip(affixes) {
            let mut coding = Coding::default();
            match distinct {
                Some(d) if count >= 64 && d.len() * 8 <= count => {
                    coding.values = Dictionary::from_values(values)
                }
                _ if count >= 64 => {
                    let (prefix, suffix) = affix.unwrap_or_default();
                    if prefix.len() + suffix.len() >= MIN_AFFIX_BYTES {
                        coding.prefix = prefix.to_string();
                        coding.suffix = suffix.to_string();
                    }
                }
                _ => {}
            }
            codings.push(coding);
        }
        codings
    }
}

/// Appends a cell stored whole.
fn encode_whole(rows: &mut String, value: &str) {
    encode_len(value.len() << 2 | WHOLE, |b| rows.push(char::from(b)));
    rows.push_str(value);
}

/// The longest prefix of `a` that `b` starts with, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    &a[..n]
}

/// The longest suffix of `a` that `b` ends with, on a character boundary.
fn common_suffix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut start = a.len() - n;
    while !a.is_char_boundary(start) {
        start += 1;
    }
    &a[start..]
}

/// The values of one column, stored once and numbered.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dictionary {
    text: String,
    /// Where each value ends in `text`.
    ends: Vec<u32>,
    /// Open addressing: value number + 1 by [`Dictionary::slot`], 0 empty.
    table: Vec<u16>,
}

/// The most values one dictionary holds.
const DICTIONARY_VALUES: usize = 4096;
/// The longest value a dictionary holds.
const DICTIONARY_VALUE_BYTES: usize = 64;

impl Dictionary {
    fn get(&self, id: usize) -> &str {
        let start = match id {
            0 => 0,
            _ => self.ends.get(id - 1).map_or(0, |&e| e as usize),
        };
        let end = self.ends.get(id).map_or(start, |&e| e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4 + self.table.capacity() * 2
    }

    /// A cheap hash of a short value (its first 8 bytes, its last 8 and
    /// its length), so looking a cell up costs little next to parsing it.
    /// The last bytes count as much as the first: ids that share a prefix
    /// and a length (`agent00000123`) differ at their end, and hashing only
    /// their last byte put thousands of them on a few slots.
    #[inline]
    fn slot(&self, value: &[u8]) -> usize {
        let mut word = [0u8; 8];
        let head = value.len().min(8);
        word[..head].copy_from_slice(&value[..head]);
        let mut tail = [0u8; 8];
        tail[8 - head..].copy_from_slice(&value[value.len() - head..]);
        let h = (u64::from_le_bytes(word) ^ u64::from_le_bytes(tail).rotate_left(29) ^ value.len() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 40) as usize & (self.table.len() - 1)
    }

    /// The number of `value`, if it is in the dictionary.
    #[inline]
    fn find(&self, value: &str) -> Option<usize> {
        if self.table.is_empty() || value.len() > DICTIONARY_VALUE_BYTES {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut i = self.slot(value.as_bytes());
        loop {
            let id = *self.table.get(i)? as usize;
            if id == 0 {
                return None;
            }
            if self.get(id - 1) == value {
                return Some(id - 1);
            }
            i = (i + 1) & mask;
        }
    }

    fn from_values<'v>(values: impl IntoIterator<Item = &'v str>) -> Dictionary {
        let mut dictionary = Dictionary::default();
        let values: Vec<&str> = values.into_iter().collect();
        dictionary.table = vec![0; (values.len() * 4).next_power_of_two().max(16)];
        for (id, value) in values.into_iter().enumerate() {
            dictionary.text.push_str(value);
            dictionary.ends.push(dictionary.text.len() as u32);
            let mask = dictionary.table.len() - 1;
            let mut i = dictionary.slot(value.as_bytes());
            while dictionary.table[i] != 0 {
                i = (i + 1) & mask;
            }
            dictionary.table[i] = (id + 1) as u16;
        }
        dictionary
    }
}

/// The row offset stored at the start of a key entry.
#[inline]
fn row_offset(keys: &[u8], k: usize) -> u32 {
    match keys.get(k..k + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// The key bytes of the key entry at `k`.
#[inline]
fn key_at(keys: &[u8], k: usize) -> &[u8] {
    let (len, data) = read_len(keys, k + 4);
    keys.get(data..data.saturating_add(len)).unwrap_or_default()
}

/// What happened to a row handed to [`IndexBuilder::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    New,
    /// The key was already present; `first_of_key` is true the first time a
    /// given key repeats.
    Duplicate {
        first_of_key: bool,
    },
}

/// How duplicate keys are resolved while building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDuplicate {
    KeepFirst,
    KeepLast,
    MarkAmbiguous,
}

/// The data would outgrow the 32-bit offsets of the index.
#[derive(Debug)]
pub(crate) struct IndexFull;

/// Builds a [`TableIndex`] one row at a time.
pub(crate) struct IndexBuilder {
    index: TableIndex,
    on_duplicate: OnDuplicate,
    /// Keys already seen repeated (their key offsets), so a key repeated many
    /// times counts once.
    repeated: hashbrown::HashSet<u32>,
}

impl IndexBuilder {
    pub(crate) fn new(
        columns: Vec<String>,
        key_column: usize,
        matcher: Matcher,
        on_duplicate: OnDuplicate,
        rows_capacity: usize,
    ) -> IndexBuilder {
        let mut by_name: Vec<usize> = (0..columns.len()).filter(|&c| c != key_column).collect();
        by_name.sort_by(|&a, &b| columns[a].cmp(&columns[b]));
        let mut slot_of = vec![by_name.len(); columns.len()];
        for (slot, &column) in by_name.iter().enumerate() {
            slot_of[column] = slot;
        }
        let slot_by_name = by_name
            .iter()
            .enumerate()
            .map(|(slot, &c)| (columns[c].clone(), slot))
            .collect();
        let name_bytes = by_name.iter().map(|&c| columns[c].len()).sum();
        IndexBuilder {
            index: TableIndex {
                columns,
                key_column,
                matcher,
                keys: Vec::new(),
                rows: String::with_capacity(rows_capacity),
                codings: Vec::new(),
                table: HashTable::new(),
                ambiguous: HashMap::new(),
                hasher: DefaultHashBuilder::default(),
                by_name,
                slot_of,
                slot_by_name,
                name_bytes,
                alternates: None,
                prefixes: None,
            },
            on_duplicate,
            repeated: hashbrown::HashSet::new(),
        }
    }

    /// Makes room for `additional` more keys, so the table is not rehashed
    /// (each rehash re-reads every key) while a large file loads.
    pub(crate) fn reserve(&mut self, additional: usize, key_bytes: usize) {
        let index = &mut self.index;
        let (keys, hasher) = (&index.keys, &index.hasher);
        index
            .table
            .reserve(additional, |&k| hasher.hash_one(key_at(keys, k as usize)));
        index.keys.reserve(key_bytes);
    }

    /// The hash of a match key, as the table computes it (so that rows can be
    /// hashed where they are parsed, on any thread).
    pub(crate) fn hasher(&self) -> &DefaultHashBuilder {
        &self.index.hasher
    }

    /// How a row's cells are laid out, for [`RowLayout::encode`] on any thread.
    pub(crate) fn layout(&self) -> RowLayout {
        RowLayout {
            by_name: self.index.by_name.clone(),
            key_column: self.index.key_column,
            mode: self.index.matcher.mode(),
        }
    }

    /// Adds a row whose match key is `key` (hashed with [`Self::hasher`]),
    /// given as its cells already encoded by [`RowLayout::encode`]. The row's
    /// bytes are copied only if the row is kept.
    pub(crate) fn push_encoded(&mut self, hash: u64, key: &[u8], row: &str) -> Result<Pushed, IndexFull> {
        let TableIndex {
            keys,
            rows,
            table,
            hasher,
            ambiguous,
            ..
        } = &mut self.index;
        let entry = table.entry(
            hash,
            |&k| key_at(keys, k as usize) == key,
            |&k| hasher.hash_one(key_at(keys, k as usize)),
        );
        let append = |rows: &mut String| {
            let start = u32::try_from(rows.len()).map_err(|_| IndexFull)?;
            if rows.len() + row.len() > u32::MAX as usize {
                return Err(IndexFull);
            }
            rows.push_str(row);
            Ok(start)
        };
        match entry {
            Entry::Occupied(entry) => {
                let k = *entry.get();
                let first_of_key = self.repeated.insert(k);
                match self.on_duplicate {
                    OnDuplicate::KeepFirst => {}
                    OnDuplicate::MarkAmbiguous => *ambiguous.entry(k).or_insert(1) += 1,
                    OnDuplicate::KeepLast => {
                        let row = append(rows)?;
                        let k = k as usize;
                        if let Some(slot) = keys.get_mut(k..k + 4) {
                            slot.copy_from_slice(&row.to_le_bytes());
                        }
                    }
                }
                Ok(Pushed::Duplicate { first_of_key })
            }
            Entry::Vacant(entry) => {
                let k = u32::try_from(keys.len()).map_err(|_| IndexFull)?;
                let row = append(rows)?;
                keys.extend_from_slice(&row.to_le_bytes());
                write_len(keys, key.len());
                keys.extend_from_slice(key);
                entry.insert(k);
                Ok(Pushed::New)
            }
        }
    }

    /// Gives the table compound or fallback keys: `entries` holds each
    /// key's column indices. The rows are then pushed under unique row
    /// numbers, and each key through [`Self::push_alternate`].
    pub(crate) fn set_alternates(
        &mut self,
        entries: Vec<Vec<usize>>,
        validity: (Option<usize>, Option<usize>),
        ambiguous: bool,
    ) {
        self.index.alternates = Some(Box::new(Alternates {
            keys: entries
                .into_iter()
                .map(|columns| AlternateKey {
                    columns,
                    building: HashMap::new(),
                    runs: Runs::default(),
                })
                .collect(),
            ambiguous,
            validity,
        }));
    }

    /// Adds key `entry` of the row last pushed (at entry `k` of `keys`),
    /// valid over `interval`, under the duplicates policy: a row whose
    /// interval overlaps one of an earlier row of the same key is a
    /// duplicate. Returns, for a duplicate, whether it is the key's first
    /// and the earlier row's entry.
    pub(crate) fn push_alternate(
        &mut self,
        entry: usize,
        key: &str,
        k: u32,
        interval: Interval,
    ) -> Option<(bool, u32)> {
        let on_duplicate = self.on_duplicate;
        let row = row_offset(&self.index.keys, k as usize);
        let alt = self
            .index
            .alternates
            .as_mut()
            .and_then(|a| a.keys.get_mut(entry))?;
        let slots = alt.building.entry_ref(key).or_default();
        let new = Slot {
            interval,
            k,
            row,
            rows: 1,
        };
        let Some(i) = slots.iter().position(|s| s.interval.overlaps(&interval)) else {
            let at = slots.partition_point(|s| s.interval.start() <= interval.start());
            slots.insert(at, new);
            return None;
        };
        let earlier = slots[i];
        slots[i].rows = earlier.rows.saturating_add(1);
        if on_duplicate == OnDuplicate::KeepLast {
            // The later row wins over every row it overlaps.
            let rows = slots
                .iter()
                .filter(|s| s.interval.overlaps(&interval))
                .map(|s| s.rows)
                .max()
                .unwrap_or(1);
            slots.retain(|s| !s.interval.overlaps(&interval));
            let at = slots.partition_point(|s| s.interval.start() <= interval.start());
            slots.insert(at, Slot { rows, ..new });
        }
        Some((earlier.rows == 1, earlier.k))
    }

    /// Adds a row whose match key is `key` and whose trimmed cells are
    /// `cell(column)` for each column.
    #[cfg(test)]
    fn push<'c>(&mut self, key: &str, cell: impl Fn(usize) -> &'c str) -> Result<Pushed, IndexFull> {
        let mut row = String::new();
        self.layout().encode(&mut row, &self.index.codings, cell);
        let hash = self.index.hasher.hash_one(key.as_bytes());
        self.push_encoded(hash, key.as_bytes(), &row)
    }

    /// How the rows encoded from now on store their cells.
    pub(crate) fn set_codings(&mut self, codings: Vec<Coding>) {
        self.index.codings = codings;
    }

    /// The bits of a hash that pick its bucket in the table now: rows
    /// inserted in this order walk the table forwards.
    pub(crate) fn bucket_mask(&self) -> u64 {
        let capacity = self.index.table.capacity();
        // hashbrown keeps 1/8 of its buckets free.
        let buckets = (capacity / 7 * 8).max(1).next_power_of_two();
        buckets as u64 - 1
    }

    /// Bytes of key entries so far.
    pub(crate) fn key_bytes(&self) -> usize {
        self.index.keys.len()
    }

    pub(crate) fn finish(self) -> TableIndex {
        let mut index = self.index;
        // A realloc of a large block is a page remap, not a copy.
        index.rows.shrink_to_fit();
        index.keys.shrink_to_fit();
        let (keys, hasher) = (&index.keys, &index.hasher);
        index
            .table
            .shrink_to_fit(|&k| hasher.hash_one(key_at(keys, k as usize)));
        index.ambiguous.shrink_to_fit();
        if let Some(alt) = index.alternates.as_mut() {
            for key in &mut alt.keys {
                key.runs = Runs::freeze(std::mem::take(&mut key.building), &index.hasher);
            }
        }
        if index.matcher.mode().is_prefix() && index.alternates.is_none() {
            index.prefixes = Some(PrefixSearch::build(&index.keys, &index.table));
        }
        index
    }
}

/// Where each cell of a row goes in the index's row encoding: the cells
/// other than the key in column-name order and, outside `exact` mode, the
/// raw key cell last. Cheap to clone, so rows can be encoded where they are
/// parsed.
#[derive(Clone, Debug)]
pub(crate) struct RowLayout {
    by_name: Vec<usize>,
    key_column: usize,
    mode: MatchMode,
}

impl RowLayout {
    /// Appends a row's cells to `rows`, each with its prefix, in the form
    /// its column's coding picks (whole when there is none yet).
    #[inline]
    pub(crate) fn encode<'c>(&self, rows: &mut String, codings: &[Coding], cell: impl Fn(usize) -> &'c str) {
        for (slot, &column) in self.by_name.iter().enumerate() {
            match codings.get(slot) {
                Some(coding) => coding.encode(rows, cell(column)),
                None => encode_whole(rows, cell(column)),
            }
        }
        if self.mode != MatchMode::Exact {
            encode_whole(rows, cell(self.key_column));
        }
    }

    /// The raw key cell of a row encoded by [`Self::encode`], outside
    /// `exact` mode (in `exact` mode the match key is the cell).
    pub(crate) fn raw_key<'r>(&self, row: &'r str) -> Option<&'r str> {
        if self.mode == MatchMode::Exact {
            return None;
        }
        let mut pos = 0;
        for _ in 0..self.by_name.len() {
            pos = skip_slot(row.as_bytes(), pos);
        }
        Some(whole_cell(row, pos).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bytes_hold_what_they_were_given_in_a_map_or_on_the_heap() {
        for len in [0, 100, HUGE_PAGE_MIN + 12_345] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let runs = RunBytes::from(bytes.clone());
            assert_eq!(&*runs, &bytes[..]);
            assert_eq!(&*runs.clone(), &bytes[..]);
            assert_eq!(matches!(runs, RunBytes::Map(_)), len >= HUGE_PAGE_MIN);
        }
    }

    #[test]
    fn affixes_are_stripped_as_strip_prefix_and_strip_suffix_would() {
        let cases = [
            ("agent00123@example.com", "agent", "@example.com"),
            ("agent@example.com", "agent", "@example.com"),
            ("agen@example.com", "agent", "@example.com"),
            ("agent1@example.org", "agent", "@example.com"),
            ("ab", "ab", "b"),
            ("abb", "ab", "b"),
            ("Zürich-Ost", "Zü", "Ost"),
            ("Zürich-Ost", "Z", "-Ost"),
            ("é", "", "é"),
            ("", "", ""),
            ("x", "", ""),
        ];
        for (value, prefix, suffix) in cases {
            let expected = value
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix));
            assert_eq!(
                strip_affixes(value, prefix, suffix),
                expected,
                "{value:?} {prefix:?} {suffix:?}"
            );
        }
    }

    #[test]
    fn an_index_is_shared_between_threads() {
        fn shared<T: Send + Sync + Clone>() {}
        fn copied<T: Copy + Send + Sync>() {}
        shared::<TableIndex>();
        shared::<Matcher>();
        copied::<RowRef<'static>>();
        copied::<Lookup<'static>>();
    }

    #[test]
    fn length_prefixes_round_trip_and_stay_ascii() {
        for len in [0, 1, 63, 64, 65, 4095, 4096, 1 << 20, (1 << 30) + 7] {
            let mut s = Vec::new();
            write_len(&mut s, len);
            assert!(s.is_ascii());
            assert_eq!(read_len(&s, 0), (len, s.len()), "{len}");
        }
        assert_eq!(read_len(b"", 0), (0, 0));
    }

    fn build(mode: MatchMode, on_duplicate: OnDuplicate, rows: &[[&str; 3]]) -> TableIndex {
        let matcher = Matcher::new(mode, Some("FR")).unwrap();
        let columns = vec!["name".to_string(), "id".to_string(), "team".to_string()];
        let mut b = IndexBuilder::new(columns, 1, matcher.clone(), on_duplicate, 0);
        for row in rows {
            let key = matcher.normalize(row[1]).unwrap().into_owned();
            b.push(&key, |c| row[c]).unwrap();
        }
        b.finish()
    }

    #[test]
    fn rows_come_back_in_header_order_in_every_mode() {
        for mode in [MatchMode::Exact, MatchMode::CaseInsensitive] {
            let idx = build(
                mode,
                OnDuplicate::KeepFirst,
                &[["Alice", "A1", "red"], ["Bob", "b2", ""]],
            );
            let Lookup::Found(row) = idx.lookup("a1") else {
                assert_eq!(mode, MatchMode::Exact);
                assert_eq!(idx.lookup("a1"), Lookup::NotFound);
                continue;
            };
            assert_eq!(
                row.iter().map(|(k, v)| (k, v.into_owned())).collect::<Vec<_>>(),
                [
                    ("name", "Alice".to_string()),
                    ("id", "A1".into()),
                    ("team", "red".into())
                ]
            );
            assert_eq!(
                (&*row.get(0), &*row.get(1), &*row.get(2), &*row.get(3)),
                ("Alice", "A1", "red", "")
            );
            assert_eq!(row.match_key(), "a1");
        }
        let idx = build(MatchMode::Exact, OnDuplicate::KeepFirst, &[["Bob", "b2", ""]]);
        let Lookup::Found(row) = idx.lookup(" b2 ") else {
            panic!()
        };
        assert_eq!(row.values().collect::<Vec<_>>(), ["Bob", "b2", ""]);
        assert_eq!(idx.lookup(""), Lookup::Unnormalizable);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn both_prefix_searches_find_the_longest_key() {
        let ranges = [
            "1", "12", "1234", "13", "2", "23456", "234567", "3abc", "3abcdef", "é", "éa",
        ];
        let rows: Vec<[&str; 3]> = ranges.iter().map(|r| ["x", *r, *r]).collect();
        let mut idx = build(MatchMode::Prefix, OnDuplicate::KeepFirst, &rows);
        assert!(matches!(idx.prefixes, Some(PrefixSearch::ByLength(_))));
        let values = [
            "", "0", "1", "11", "12", "123", "1234", "12345", "13", "139", "2", "2345", "23456", "2345678",
            "3", "3abc", "3abcde", "3abcdefg", "4", "é", "éa", "éé", "e",
        ];
        let found = |idx: &TableIndex| -> Vec<String> {
            values
                .iter()
                .map(|v| match idx.lookup_normalized(v) {
                    Lookup::Found(row) => row.match_key().to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        let by_length = found(&idx);
        idx.prefixes = Some(PrefixSearch::Sorted(Box::new(Prefixes::build(
            &idx.keys, &idx.table,
        ))));
        assert_eq!(by_length, found(&idx));
        assert_eq!(
            by_length[..8],
            ["NotFound", "NotFound", "1", "1", "12", "12", "1234", "1234"]
        );
    }

    #[test]
    fn duplicates_follow_the_policy() {
        let rows = [["a", "k", "1"], ["b", "k", "2"], ["c", "k", "3"], ["d", "j", "4"]];
        let team = |idx: &TableIndex| match idx.lookup("k") {
            Lookup::Found(row) => row.get(2).to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(team(&build(MatchMode::Exact, OnDuplicate::KeepFirst, &rows)), "1");
        assert_eq!(team(&build(MatchMode::Exact, OnDuplicate::KeepLast, &rows)), "3");
        let amb = build(MatchMode::Exact, OnDuplicate::MarkAmbiguous, &rows);
        assert_eq!(team(&amb), "Ambiguous { rows: 3 }");
        assert!(matches!(amb.lookup("j"), Lookup::Found(_)));
        assert_eq!(amb.len(), 2);
    }
}
