//! The enrichment rule: for each reference table, look the call's value of
//! the table's key up in the active version and add the row's other non-empty
//! cells, without ever overwriting the call's own metadata (SPEC §3).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::index::{KEY_PART_SEPARATOR, Lookup, RowRef, TableIndex};

/// A call's metadata: string keys to string values, sorted by key.
pub type Metadata = BTreeMap<String, String>;

/// One reference table as enrichment sees it.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'a> {
    pub table: &'a str,
    pub key_column: &'a str,
    pub version: Option<&'a str>,
    /// `None`: the table has no active version yet.
    pub index: Option<&'a TableIndex>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    Matched,
    NoMatch,
    /// The call has no value (or a blank one) for the table's key.
    KeyMissing,
    /// The key appears on several rows and the table's policy is `ambiguous`.
    Ambiguous,
    /// The table has no active version.
    NoVersion,
}

impl EnrichmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentStatus::Matched => "matched",
            EnrichmentStatus::NoMatch => "no_match",
            EnrichmentStatus::KeyMissing => "key_missing",
            EnrichmentStatus::Ambiguous => "ambiguous",
            EnrichmentStatus::NoVersion => "no_version",
        }
    }

    /// The status [`as_str`](Self::as_str) names.
    pub fn parse(s: &str) -> Option<Self> {
        [
            EnrichmentStatus::Matched,
            EnrichmentStatus::NoMatch,
            EnrichmentStatus::KeyMissing,
            EnrichmentStatus::Ambiguous,
            EnrichmentStatus::NoVersion,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// The columns a table added to a call: names to values, sorted by name,
/// read like a [`Metadata`] map and serialized as the same JSON object.
///
/// Why not a [`Metadata`]: a result's map of 20 columns cost 40 string
/// allocations (each name and each value), the map's nodes, and as many
/// frees when dropped, over half of a call's enrichment. Here the names
/// and values lie back to back in one string: a result's additions are two
/// allocations, whatever their number.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Added {
    text: String,
    /// Per entry, where its name ends and where its value ends in `text`;
    /// its name starts where the previous value ends. Names are strictly
    /// ascending, so equal maps are equal here.
    ends: Vec<(usize, usize)>,
}

impl Added {
    pub fn new() -> Added {
        Added::default()
    }

    fn with_capacity(bytes: usize, entries: usize) -> Added {
        Added {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(entries),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// `(name, value)` in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            added: self,
            front: 0,
            back: self.ends.len(),
        }
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(name, _)| name)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(_, value)| value)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (key, value) = self.entry(mid);
            match key.cmp(name) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(value),
            }
        }
        None
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The same entries as a [`Metadata`] map.
    pub fn to_metadata(&self) -> Metadata {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Appends an entry whose name comes after every name already in.
    fn push(&mut self, name: &str, value: impl FnOnce(&mut String)) {
        debug_assert!(self.keys().next_back().is_none_or(|last| last < name));
        self.text.push_str(name);
        let name_end = self.text.len();
        value(&mut self.text);
        self.ends.push((name_end, self.text.len()));
    }

    fn entry(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1].1,
        };
        let (name_end, value_end) = self.ends[i];
        (&self.text[start..name_end], &self.text[name_end..value_end])
    }
}

/// The entries of an [`Added`], in name order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    added: &'a Added,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        Some(self.added.entry(self.front - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(self.added.entry(self.back))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Added {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl From<Metadata> for Added {
    fn from(map: Metadata) -> Added {
        let bytes = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut added = Added::with_capacity(bytes, map.len());
        for (name, value) in &map {
            added.push(name, |text| text.push_str(value));
        }
        added
    }
}

/// As collecting into a [`Metadata`]: a repeated name keeps its last value.
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Added {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Added {
        let map: Metadata = iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Added::from(map)
    }
}

impl fmt::Debug for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Added {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Added {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Added, D::Error> {
        Metadata::deserialize(deserializer).map(Added::from)
    }
}

/// A table cell that was not added because the name was already taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Collision {
    pub key: String,
    pub kept_value: String,
    pub dropped_value: String,
    /// `None`: the call's own metadata; `Some(table)`: an earlier table.
    pub kept_from: Option<String>,
}

/// What one table did for one call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnrichmentResult {
    pub table: String,
    pub version: Option<String>,
    pub status: EnrichmentStatus,
    /// The key column (= the call's metadata key looked up).
    pub key: String,
    /// The call's raw value for the key.
    pub key_value: Option<String>,
    /// The value as compared (trimmed, folded or E.164).
    pub normalized_key: Option<String>,
    pub added: Added,
    #[serde(default)]
    pub collisions: Vec<Collision>,
    pub at_ms: i64,
    /// The columns of the key that matched (`["site", "extension"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<Vec<String>>,
    /// With compound or fallback keys: each key tried, in order, and what
    /// it gave (the first that matches wins, so the list stops there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_tried: Vec<KeyAttempt>,
    /// With `valid_from`/`valid_to`: the interval of the row used, as its
    /// cells say (empty: open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ValidInterval>,
    /// With `"as_of": "call_time"`: which version was chosen for the
    /// call's timestamp, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<AsOfChoice>,
}

/// How a table with `"as_of": "call_time"` chose the version a call was
/// enriched from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AsOfChoice {
    /// The call's timestamp the version was chosen for (epoch ms).
    pub call_ms: i64,
    pub reason: AsOfReason,
    /// When the chosen version became active (none: no version was active
    /// at the call's timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_ms: Option<i64>,
}

/// Why a table with `"as_of": "call_time"` gave a call the version (or no
/// version) it did.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AsOfReason {
    /// The version was the active one at the call's timestamp.
    ActiveAtCallTime,
    /// The call is older than the table's first activation: no version
    /// was active then (status `no_version`).
    BeforeFirstActivation,
    /// The version active at the call's timestamp was deleted since (by
    /// retention or erasure); status `no_version`, `version` names it.
    VersionRemoved,
    /// The version active at the call's timestamp could not be loaded
    /// (its original is unreadable); status `no_version`.
    VersionUnavailable,
}

impl AsOfReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AsOfReason::ActiveAtCallTime => "active_at_call_time",
            AsOfReason::BeforeFirstActivation => "before_first_activation",
            AsOfReason::VersionRemoved => "version_removed",
            AsOfReason::VersionUnavailable => "version_unavailable",
        }
    }
}

/// The validity of the row a call was enriched from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ValidInterval {
    pub valid_from: String,
    pub valid_to: String,
}

/// One key of a table with compound or fallback keys, tried for one call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyAttempt {
    /// The key's columns.
    pub key: Vec<String>,
    /// `matched`, `no_match`, `key_missing` (a column has no value on the
    /// call) or `ambiguous`.
    pub status: EnrichmentStatus,
    /// The call's values for the key's columns, when it has them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<String>>,
}

/// One result per table, in the given order. An earlier table's added keys
/// take precedence over a later table's, as the call's own keys do over all.
pub fn enrich(own: &Metadata, tables: &[TableView<'_>], at_ms: i64) -> Vec<EnrichmentResult> {
    enrich_at(own, tables, at_ms, at_ms)
}

/// [`enrich`] for a call that happened at `call_ms` (epoch milliseconds):
/// a table with `valid_from`/`valid_to` gives the row valid then.
pub fn enrich_at(
    own: &Metadata,
    tables: &[TableView<'_>],
    at_ms: i64,
    call_ms: i64,
) -> Vec<EnrichmentResult> {
    let mut results: Vec<EnrichmentResult> = Vec::with_capacity(tables.len());
    for view in tables {
        let result = enrich_one(own, view, &results, at_ms, call_ms);
        results.push(result);
    }
    results
}

fn enrich_one(
    own: &Metadata,
    view: &TableView<'_>,
    earlier: &[EnrichmentResult],
    at_ms: i64,
    call_ms: i64,
) -> EnrichmentResult {
    let key_value = own.get(view.key_column);
    let mut result = EnrichmentResult {
        table: view.table.to_string(),
        version: view.version.map(str::to_string),
        status: EnrichmentStatus::NoVersion,
        key: view.key_column.to_string(),
        key_value: key_value.cloned(),
        normalized_key: None,
        added: Added::new(),
        collisions: Vec::new(),
        at_ms,
        matched_by: None,
        keys_tried: Vec::new(),
        interval: None,
        as_of: None,
    };
    let Some(index) = view.index else {
        return result;
    };
    if index.has_alternates() {
        enrich_by_keys(own, index, earlier, call_ms, &mut result);
        return result;
    }
    let Some(raw) = key_value.filter(|v| !v.trim().is_empty()) else {
        result.status = EnrichmentStatus::KeyMissing;
        return result;
    };
    let Some(normalized) = index.matcher().normalize(raw) else {
        result.status = EnrichmentStatus::NoMatch;
        return result;
    };
    let lookup = index.lookup_normalized(&normalized);
    result.normalized_key = Some(normalized.into_owned());
    match lookup {
        Lookup::NotFound | Lookup::Unnormalizable => result.status = EnrichmentStatus::NoMatch,
        Lookup::Ambiguous { .. } => result.status = EnrichmentStatus::Ambiguous,
        Lookup::Found(row) => {
            result.status = EnrichmentStatus::Matched;
            result.matched_by = Some(vec![view.key_column.to_string()]);
            add_row(own, index, row, earlier, &[], &mut result);
        }
    }
    result
}

/// A table with compound or fallback keys: each key in order, until one
/// matches (or is ambiguous). `key`, `key_value` and `normalized_key` are
/// then the matching key's (the parts joined by `+`), else the first key's.
fn enrich_by_keys(
    own: &Metadata,
    index: &TableIndex,
    earlier: &[EnrichmentResult],
    call_ms: i64,
    result: &mut EnrichmentResult,
) {
    let names = index.columns();
    let label = |columns: &[usize]| {
        columns
            .iter()
            .map(|&c| names[c].as_str())
            .collect::<Vec<_>>()
            .join("+")
    };
    result.key = index.key_entries().first().map(|c| label(c)).unwrap_or_default();
    result.key_value = None;
    let mut lookup_key = String::new();
    let mut any_value = false;
    for (entry, columns) in index.key_entries().into_iter().enumerate() {
        let key: Vec<String> = columns.iter().map(|&c| names[c].clone()).collect();
        let values: Option<Vec<&String>> = key
            .iter()
            .map(|name| own.get(name).filter(|v| !v.trim().is_empty()))
            .collect();
        let Some(values) = values else {
            result.keys_tried.push(KeyAttempt {
                key,
                status: EnrichmentStatus::KeyMissing,
                value: None,
            });
            continue;
        };
        any_value = true;
        lookup_key.clear();
        let mut normalized = Vec::with_capacity(values.len());
        for (p, value) in values.iter().enumerate() {
            let Some(n) = index.matcher().normalize(value) else {
                break;
            };
            if p > 0 {
                lookup_key.push(KEY_PART_SEPARATOR);
            }
            crate::csv::push_key_part(&mut lookup_key, &n);
            normalized.push(n.into_owned());
        }
        let lookup = if normalized.len() == values.len() {
            index.lookup_entry(entry, &lookup_key, call_ms)
        } else {
            Lookup::Unnormalizable
        };
        let status = match lookup {
            Lookup::Found(_) => EnrichmentStatus::Matched,
            Lookup::Ambiguous { .. } => EnrichmentStatus::Ambiguous,
            Lookup::NotFound | Lookup::Unnormalizable => EnrichmentStatus::NoMatch,
        };
        let value: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if result.key_value.is_none() || status != EnrichmentStatus::NoMatch {
            result.key = key.join("+");
            result.key_value = Some(value.join("+"));
            result.normalized_key = (!normalized.is_empty()).then(|| normalized.join("+"));
        }
        result.keys_tried.push(KeyAttempt {
            key: key.clone(),
            status,
            value: Some(value),
        });
        match lookup {
            Lookup::Found(row) => {
                result.status = EnrichmentStatus::Matched;
                add_row(own, index, row, earlier, columns, result);
                result.interval = index
                    .validity_of(&row)
                    .map(|(valid_from, valid_to)| ValidInterval { valid_from, valid_to });
                result.matched_by = Some(key);
                return;
            }
            Lookup::Ambiguous { .. } => {
                result.status = EnrichmentStatus::Ambiguous;
                result.matched_by = Some(key);
                return;
            }
            Lookup::NotFound | Lookup::Unnormalizable => {}
        }
    }
    result.status = if any_value {
        EnrichmentStatus::NoMatch
    } else {
        EnrichmentStatus::KeyMissing
    };
}

/// Fills `added` and `collisions` from a matched row.
///
/// Columns whose name is taken (by the call's own metadata or an earlier
/// table's additions) are found by looking the taken names up in the
/// index, not by comparing every column to every taken name; the cells are
/// then read in one forward walk over the row, which is stored in
/// column-name order, straight into `added` (whose entries are in that
/// order too).
/// `exclude`: the columns of the key that matched (the call's own values),
/// which are not added.
fn add_row(
    own: &Metadata,
    index: &TableIndex,
    row: RowRef<'_>,
    earlier: &[EnrichmentResult],
    exclude: &[usize],
    result: &mut EnrichmentResult,
) {
    let excluded: Vec<usize> = exclude.iter().filter_map(|&c| index.slot_of_column(c)).collect();
    // (slot, kept value, kept from): usually empty, so no allocation.
    let mut taken: Vec<(usize, &str, Option<&str>)> = Vec::new();
    for (name, value) in own {
        if let Some(slot) = index.slot_by_name(name) {
            taken.push((slot, value, None));
        }
    }
    for earlier in earlier {
        for (name, value) in &earlier.added {
            if let Some(slot) = index.slot_by_name(name)
                && !taken.iter().any(|&(s, _, _)| s == slot)
            {
                taken.push((slot, value, Some(&earlier.table)));
            }
        }
    }
    taken.sort_unstable_by_key(|&(slot, _, _)| slot);

    let names = index.columns();
    let (name_bytes, slots) = index.name_bytes();
    let mut added = Added::with_capacity(name_bytes + row.text_bytes(), slots);
    let mut next_taken = taken.iter().peekable();
    for (slot, (column, cell)) in row.cell_parts_by_name().enumerate() {
        let taken_here = next_taken.next_if(|&&(s, _, _)| s == slot);
        if !excluded.is_empty() && excluded.contains(&slot) {
            continue;
        }
        let name = names[column].as_str();
        if let Some(&(_, kept, kept_from)) = taken_here {
            if !cell.is_empty() {
                result.collisions.push(Collision {
                    key: name.to_string(),
                    kept_value: kept.to_string(),
                    dropped_value: cell.to_string(),
                    kept_from: kept_from.map(str::to_string),
                });
            }
            continue;
        }
        if !cell.is_empty() {
            added.push(name, |text| cell.push_to(text));
        }
    }
    result.added = added;
}

/// The metadata a call shows: its own keys plus every result's added keys.
/// Own keys never change; `added` never holds a taken name, and if a stored
/// result did, the first value would stay.
pub fn merged_metadata(own: &Metadata, results: &[EnrichmentResult]) -> Metadata {
    let mut merged = own.clone();
    for result in results {
        for (k, v) in &result.added {
            if !merged.contains_key(k) {
                merged.insert(k.to_string(), v.to_string());
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_reads_and_serializes_as_a_map() {
        let map = Metadata::from([
            ("team".to_string(), "diamond".to_string()),
            ("city".to_string(), "Zürich".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        let added = Added::from(map.clone());
        assert_eq!(added.len(), 3);
        assert_eq!(
            added.iter().collect::<Vec<_>>(),
            [("city", "Zürich"), ("empty", ""), ("team", "diamond")]
        );
        assert_eq!(added.iter().next_back(), Some(("team", "diamond")));
        for name in ["city", "empty", "team"] {
            assert_eq!(added.get(name), map.get(name).map(String::as_str));
        }
        assert_eq!(
            (added.get("a"), added.get("dog"), added.get("zebra")),
            (None, None, None)
        );
        assert_eq!(added.to_metadata(), map);
        let json = serde_json::to_string(&added).unwrap();
        assert_eq!(json, serde_json::to_string(&map).unwrap());
        assert_eq!(serde_json::from_str::<Added>(&json).unwrap(), added);
        // A repeated name keeps its last value, as in a map.
        let repeated: Added = serde_json::from_str(r#"{"b":"1","a":"2","b":"3"}"#).unwrap();
        assert_eq!(format!("{repeated:?}"), r#"{"a": "2", "b": "3"}"#);
        assert_eq!(
            repeated,
            [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect()
        );
        assert!(Added::new().is_empty() && Added::new().get("").is_none());
    }
}
