//! The in-memory form of one version of a reference table: immutable once
//! built, shared by every call that is enriched while the version is active.
//!
//! Layout, chosen for resident size and for the number of cache misses per
//! lookup (not for ease of mutation; a version never changes):
//!
//! - `arena`: one `String` holding every kept row back to back. A row is a
//!   sequence of *slots*, each a length prefix followed by the cell's bytes.
//!   Slot 0 is the match key; the other slots are the columns in order. In
//!   `exact` mode the match key *is* the trimmed key cell, so the key column is
//!   not stored a second time (the remaining slots skip it); in the other
//!   modes slot 0 holds the normalised key and every column follows.
//! - `table`: a `hashbrown::HashTable<u32>` of row start offsets in the arena,
//!   hashed on the match key. A hit touches the control bytes, the bucket and
//!   then one place in the arena where the key and the row's cells sit together.
//!
//! Length prefixes use 6 bits per byte plus a continuation bit (bit 6), so
//! every prefix byte is ASCII and the arena stays valid UTF-8: cells are
//! sliced out as `&str` with no unsafe code and no second validation. Cells
//! under 64 bytes cost one prefix byte, which is less than the delimiter they
//! replace; the whole index is close to the size of the CSV file.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::matching::{MatchMode, Matcher};

/// One immutable version of a reference table.
#[derive(Clone)]
pub struct TableIndex {
    columns: Vec<String>,
    key_column: usize,
    matcher: Matcher,
    arena: String,
    table: HashTable<u32>,
    /// Under the `ambiguous` duplicates policy: first row offset of a key that
    /// appears on several rows, and on how many.
    ambiguous: HashMap<u32, u32>,
    hasher: DefaultHashBuilder,
    /// Column indices sorted by column name, without the key column: the order
    /// in which enrichment emits added metadata.
    by_name: Vec<usize>,
}

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

/// A row of a [`TableIndex`]; cheap to copy.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    index: &'a TableIndex,
    start: u32,
}

impl PartialEq for RowRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.index, other.index) && self.start == other.start
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
    pub fn get(&self, column: usize) -> &'a str {
        let index = self.index;
        if column >= index.columns.len() {
            return "";
        }
        if column == index.key_column && index.matcher.mode() == MatchMode::Exact {
            return index.slot(self.start as usize).0;
        }
        let mut pos = index.skip_slot(self.start as usize);
        let target = index.storage_slot(column);
        for _ in 1..target {
            pos = index.skip_slot(pos);
        }
        index.slot(pos).0
    }

    /// `(column name, trimmed cell)` for every column, in header order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let index = self.index;
        let (key, after_key) = index.slot(self.start as usize);
        let exact = index.matcher.mode() == MatchMode::Exact;
        let mut pos = after_key;
        index.columns.iter().enumerate().map(move |(column, name)| {
            if exact && column == index.key_column {
                return (name.as_str(), key);
            }
            let (value, next) = index.slot(pos);
            pos = next;
            (name.as_str(), value)
        })
    }

    /// The cells in header order.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().map(|(_, value)| value)
    }

    /// The key as compared: the trimmed key cell (`exact`) or its normalised form.
    pub fn match_key(&self) -> &'a str {
        self.index.slot(self.start as usize).0
    }
}

impl TableIndex {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn key_column(&self) -> &str {
        &self.columns[self.key_column]
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
    pub fn lookup_normalized(&self, key: &str) -> Lookup<'_> {
        let hash = self.hasher.hash_one(key);
        match self
            .table
            .find(hash, |&start| self.slot(start as usize).0 == key)
        {
            None => Lookup::NotFound,
            Some(&start) => {
                if !self.ambiguous.is_empty()
                    && let Some(&rows) = self.ambiguous.get(&start)
                {
                    return Lookup::Ambiguous {
                        rows: rows as usize,
                    };
                }
                Lookup::Found(RowRef { index: self, start })
            }
        }
    }

    /// Every row that can be looked up, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        self.table
            .iter()
            .map(move |&start| RowRef { index: self, start })
    }

    /// Approximate resident size: the arena, the hash table and the names.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.table.allocation_size()
            + self.ambiguous.allocation_size()
            + self
                .columns
                .iter()
                .map(|c| c.capacity() + size_of::<String>())
                .sum::<usize>()
            + self.by_name.capacity() * size_of::<usize>()
    }

    pub(crate) fn columns_by_name(&self) -> &[usize] {
        &self.by_name
    }

    /// The slot where `column` is stored (slot 0 is the match key).
    fn storage_slot(&self, column: usize) -> usize {
        match self.matcher.mode() {
            MatchMode::Exact if column == self.key_column => 0,
            MatchMode::Exact if column > self.key_column => column,
            _ => column + 1,
        }
    }

    /// The slot starting at `pos`, and the position after it.
    fn slot(&self, pos: usize) -> (&str, usize) {
        let (len, data) = read_len(self.arena.as_bytes(), pos);
        let end = data + len;
        (self.arena.get(data..end).unwrap_or(""), end)
    }

    fn skip_slot(&self, pos: usize) -> usize {
        let (len, data) = read_len(self.arena.as_bytes(), pos);
        data + len
    }
}

/// Appends a length prefix: 6 bits per byte, bit 6 set on all but the last
/// byte, so every byte is below 0x80.
fn write_len(arena: &mut String, mut len: usize) {
    loop {
        let low = (len & 0x3f) as u8;
        len >>= 6;
        if len == 0 {
            arena.push(low as char);
            return;
        }
        arena.push((low | 0x40) as char);
    }
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

/// What happened to a row handed to [`IndexBuilder::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    New,
    /// The key was already present; `kept` says whether this row is now the
    /// one looked up (`last` policy).
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

/// The arena would outgrow the 32-bit offsets of the hash table.
#[derive(Debug)]
pub(crate) struct ArenaFull;

/// Builds a [`TableIndex`] one row at a time.
pub(crate) struct IndexBuilder {
    index: TableIndex,
    on_duplicate: OnDuplicate,
    /// Keys already reported as duplicated (offset of the kept row), so a key
    /// repeated many times counts once in `duplicate_keys`.
    seen_duplicate: hashbrown::HashSet<u32>,
}

impl IndexBuilder {
    pub(crate) fn new(
        columns: Vec<String>,
        key_column: usize,
        matcher: Matcher,
        on_duplicate: OnDuplicate,
        arena_capacity: usize,
    ) -> IndexBuilder {
        let mut by_name: Vec<usize> = (0..columns.len()).filter(|&c| c != key_column).collect();
        by_name.sort_by(|&a, &b| columns[a].cmp(&columns[b]));
        IndexBuilder {
            index: TableIndex {
                columns,
                key_column,
                matcher,
                arena: String::with_capacity(arena_capacity),
                table: HashTable::new(),
                ambiguous: HashMap::new(),
                hasher: DefaultHashBuilder::default(),
                by_name,
            },
            on_duplicate,
            seen_duplicate: hashbrown::HashSet::new(),
        }
    }

    /// Makes room for `additional` more keys, so the table is not rehashed
    /// (each rehash re-reads every key from the arena) while a large file loads.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let index = &mut self.index;
        let (arena, hasher) = (&index.arena, &index.hasher);
        index.table.reserve(additional, |&start| {
            hasher.hash_one(slot_at(arena, start as usize))
        });
    }

    /// Adds a row whose cells (trimmed, in header order) are `cells` and whose
    /// match key is `key`.
    pub(crate) fn push<'c>(
        &mut self,
        key: &str,
        cells: impl Iterator<Item = &'c str> + Clone,
    ) -> Result<Pushed, ArenaFull> {
        let index = &mut self.index;
        let hash = index.hasher.hash_one(key);
        let arena = &index.arena;
        let found = index
            .table
            .find(hash, |&start| slot_at(arena, start as usize) == key)
            .copied();
        if let Some(existing) = found {
            let first_of_key = self.seen_duplicate.insert(existing);
            match self.on_duplicate {
                OnDuplicate::KeepFirst => {}
                OnDuplicate::MarkAmbiguous => {
                    *self.index.ambiguous.entry(existing).or_insert(1) += 1;
                }
                OnDuplicate::KeepLast => {
                    let start = self.append(key, cells)?;
                    let arena = &self.index.arena;
                    if let Some(slot) = self
                        .index
                        .table
                        .find_mut(hash, |&s| slot_at(arena, s as usize) == key)
                    {
                        *slot = start;
                    }
                    // Later duplicates find the row under its new offset.
                    self.seen_duplicate.insert(start);
                }
            }
            return Ok(Pushed::Duplicate { first_of_key });
        }
        let start = self.append(key, cells)?;
        let (arena, hasher) = (&self.index.arena, &self.index.hasher);
        self.index.table.insert_unique(hash, start, |&s| {
            hasher.hash_one(slot_at(arena, s as usize))
        });
        Ok(Pushed::New)
    }

    fn append<'c>(
        &mut self,
        key: &str,
        cells: impl Iterator<Item = &'c str>,
    ) -> Result<u32, ArenaFull> {
        let index = &mut self.index;
        let start = index.arena.len();
        let start32 = u32::try_from(start).map_err(|_| ArenaFull)?;
        let skip_key = index.matcher.mode() == MatchMode::Exact;
        write_len(&mut index.arena, key.len());
        index.arena.push_str(key);
        for (column, cell) in cells.enumerate() {
            if skip_key && column == index.key_column {
                continue;
            }
            write_len(&mut index.arena, cell.len());
            index.arena.push_str(cell);
        }
        if index.arena.len() > u32::MAX as usize {
            index.arena.truncate(start);
            return Err(ArenaFull);
        }
        Ok(start32)
    }

    pub(crate) fn finish(self) -> TableIndex {
        let mut index = self.index;
        // A realloc of a large block is a page remap, not a copy.
        index.arena.shrink_to_fit();
        let (arena, hasher) = (&index.arena, &index.hasher);
        index
            .table
            .shrink_to_fit(|&s| hasher.hash_one(slot_at(arena, s as usize)));
        index.ambiguous.shrink_to_fit();
        index
    }
}

fn slot_at(arena: &str, pos: usize) -> &str {
    let (len, data) = read_len(arena.as_bytes(), pos);
    arena.get(data..data + len).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_round_trip_and_stay_ascii() {
        for len in [0, 1, 63, 64, 65, 4095, 4096, 1 << 20, (1 << 30) + 7] {
            let mut s = String::new();
            write_len(&mut s, len);
            assert!(s.is_ascii());
            assert_eq!(read_len(s.as_bytes(), 0), (len, s.len()), "{len}");
        }
        assert_eq!(read_len(b"", 0), (0, 0));
    }

    fn build(mode: MatchMode, on_duplicate: OnDuplicate, rows: &[[&str; 3]]) -> TableIndex {
        let matcher = Matcher::new(mode, Some("FR")).unwrap();
        let columns = vec!["name".to_string(), "id".to_string(), "team".to_string()];
        let mut b = IndexBuilder::new(columns, 1, matcher.clone(), on_duplicate, 0);
        for row in rows {
            let key = matcher.normalize(row[1]).unwrap().into_owned();
            b.push(&key, row.iter().copied()).unwrap();
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
                row.iter().collect::<Vec<_>>(),
                [("name", "Alice"), ("id", "A1"), ("team", "red")]
            );
            assert_eq!(
                (row.get(0), row.get(1), row.get(2), row.get(3)),
                ("Alice", "A1", "red", "")
            );
            assert_eq!(row.match_key(), "a1");
        }
        let idx = build(
            MatchMode::Exact,
            OnDuplicate::KeepFirst,
            &[["Bob", "b2", ""]],
        );
        let Lookup::Found(row) = idx.lookup(" b2 ") else {
            panic!()
        };
        assert_eq!(row.values().collect::<Vec<_>>(), ["Bob", "b2", ""]);
        assert_eq!(idx.lookup(""), Lookup::Unnormalizable);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn duplicates_follow_the_policy() {
        let rows = [
            ["a", "k", "1"],
            ["b", "k", "2"],
            ["c", "k", "3"],
            ["d", "j", "4"],
        ];
        let team = |idx: &TableIndex| match idx.lookup("k") {
            Lookup::Found(row) => row.get(2).to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(
            team(&build(MatchMode::Exact, OnDuplicate::KeepFirst, &rows)),
            "1"
        );
        assert_eq!(
            team(&build(MatchMode::Exact, OnDuplicate::KeepLast, &rows)),
            "3"
        );
        let amb = build(MatchMode::Exact, OnDuplicate::MarkAmbiguous, &rows);
        assert_eq!(team(&amb), "Ambiguous { rows: 3 }");
        assert!(matches!(amb.lookup("j"), Lookup::Found(_)));
        assert_eq!(amb.len(), 2);
    }
}
