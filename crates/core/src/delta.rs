//! Delta uploads: rows carrying an `_op` column (`upsert` or `delete`),
//! applied to the rows of the active version, give the rows of a new full
//! version, which is then ingested like any upload.
//!
//! Rows are matched by the table's first key (all its columns), normalised
//! as lookups are. A delete removes every row of its key; the first upsert
//! of a key replaces its rows (or adds it), and further upserts of the same
//! key in the same delta add rows (a table with validity intervals sends
//! every row of a key so).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::matching::Matcher;

/// The column that says what to do with a delta row.
pub const OP_COLUMN: &str = "_op";

/// What a delta did, for the report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaCounts {
    /// Keys added.
    pub inserted: u64,
    /// Keys whose rows were replaced.
    pub updated: u64,
    /// Keys removed.
    pub deleted: u64,
    /// Deletes of keys the active version does not have.
    pub unknown_deletes: u64,
}

/// Why a delta cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("a delta upload needs a {OP_COLUMN:?} column (upsert or delete); its columns are: {0}")]
    NoOpColumn(String),
    #[error("the delta has no key column {0:?}")]
    MissingKey(String),
    #[error("data row {row}: {OP_COLUMN} is {value:?}, expected upsert or delete")]
    BadOp { row: usize, value: String },
    #[error("data row {row}: the key is empty or cannot be read as the table's key")]
    BadKey { row: usize },
}

/// A table's header and rows (trimmed cells), as `csv::parse_records` reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Applies `delta` to `active`; the result has the active header, then the
/// delta's new columns.
pub fn apply(
    active: Records,
    delta: Records,
    key: &[String],
    matcher: &Matcher,
) -> Result<(Records, DeltaCounts), DeltaError> {
    let op = delta
        .header
        .iter()
        .position(|c| c == OP_COLUMN)
        .ok_or_else(|| DeltaError::NoOpColumn(delta.header.join(", ")))?;
    let mut header = active.header;
    for column in &delta.header {
        if column != OP_COLUMN && !header.contains(column) {
            header.push(column.clone());
        }
    }
    // Where each delta column goes in the result.
    let place: Vec<Option<usize>> = delta
        .header
        .iter()
        .map(|c| {
            if c == OP_COLUMN {
                None
            } else {
                header.iter().position(|h| h == c)
            }
        })
        .collect();
    let key_in = |cols: &[String]| -> Result<Vec<usize>, DeltaError> {
        key.iter()
            .map(|k| {
                cols.iter()
                    .position(|c| c == k)
                    .ok_or_else(|| DeltaError::MissingKey(k.clone()))
            })
            .collect()
    };
    let delta_key = key_in(&delta.header)?;
    let result_key = key_in(&header)?;
    let key_of = |row: &[String], at: &[usize]| -> Option<String> {
        let mut out = String::new();
        for (p, &c) in at.iter().enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            let n = matcher.normalize_cell(cell)?;
            if p > 0 {
                out.push('\u{1f}');
            }
            out.push_str(&n);
        }
        Some(out)
    };
    let width = header.len();
    let mut rows: Vec<Option<Vec<String>>> = active
        .rows
        .into_iter()
        .map(|mut r| {
            r.resize(width, String::new());
            Some(r)
        })
        .collect();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(k) = row.as_deref().and_then(|r| key_of(r, &result_key)) {
            by_key.entry(k).or_default().push(i);
        }
    }
    let mut counts = DeltaCounts::default();
    let mut upserted: HashSet<String> = HashSet::new();
    for (n, drow) in delta.rows.into_iter().enumerate() {
        let row_no = n + 1;
        let k = key_of(&drow, &delta_key).ok_or(DeltaError::BadKey { row: row_no })?;
        let value = drow
            .get(op)
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match value.as_str() {
            "delete" => match by_key.remove(&k) {
                Some(at) => {
                    for i in at {
                        rows[i] = None;
                    }
                    upserted.remove(&k);
                    counts.deleted += 1;
                }
                None => counts.unknown_deletes += 1,
            },
            "upsert" | "" => {
                let mut new = vec![String::new(); width];
                for (cell, place) in drow.into_iter().zip(&place) {
                    if let Some(c) = place {
                        new[*c] = cell;
                    }
                }
                if upserted.contains(&k) {
                    by_key.entry(k).or_default().push(rows.len());
                    rows.push(Some(new));
                    continue;
                }
                match by_key.get_mut(&k) {
                    Some(at) => {
                        for &i in at.iter() {
                            rows[i] = None;
                        }
                        let first = at[0];
                        rows[first] = Some(new);
                        *at = vec![first];
                        counts.updated += 1;
                    }
                    None => {
                        by_key.insert(k.clone(), vec![rows.len()]);
                        rows.push(Some(new));
                        counts.inserted += 1;
                    }
                }
                upserted.insert(k);
            }
            other => {
                return Err(DeltaError::BadOp {
                    row: row_no,
                    value: other.chars().take(40).collect(),
                });
            }
        }
    }
    let rows = rows.into_iter().flatten().collect();
    Ok((Records { header, rows }, counts))
}

/// The records as an RFC 4180 CSV (comma, CRLF), quoting the cells that
/// need it.
pub fn to_csv(records: &Records) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |cells: &[String]| {
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if cell.contains([',', '"', '\r', '\n']) || cell.is_empty() && cells.len() == 1 {
                out.push(b'"');
                out.extend_from_slice(cell.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            } else {
                out.extend_from_slice(cell.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    };
    line(&records.header);
    for row in &records.rows {
        line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::MatchMode;

    fn records(text: &[&[&str]]) -> Records {
        let mut rows: Vec<Vec<String>> = text
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        let header = rows.remove(0);
        Records { header, rows }
    }

    #[test]
    fn upserts_and_deletes_make_a_full_table() {
        let active = records(&[
            &["agent_id", "team"],
            &["alice", "diamond"],
            &["bob", "ruby"],
            &["cindy", "onyx"],
        ]);
        let delta = records(&[
            &["_op", "agent_id", "team", "city"],
            &["upsert", "bob", "topaz", "Lyon"],
            &["delete", "cindy", "", ""],
            &["delete", "zoe", "", ""],
            &["UPSERT", " dylan ", "saphire", "Paris"],
        ]);
        let m = Matcher::new(MatchMode::Exact, None).unwrap();
        let (full, counts) = apply(active, delta, &["agent_id".into()], &m).unwrap();
        assert_eq!(
            counts,
            DeltaCounts {
                inserted: 1,
                updated: 1,
                deleted: 1,
                unknown_deletes: 1
            }
        );
        assert_eq!(
            String::from_utf8(to_csv(&full)).unwrap(),
            "agent_id,team,city\r\nalice,diamond,\r\nbob,topaz,Lyon\r\n dylan ,saphire,Paris\r\n"
        );
    }

    #[test]
    fn keys_are_compared_normalised_and_errors_name_the_row() {
        let m = Matcher::new(MatchMode::CaseInsensitive, None).unwrap();
        let active = records(&[&["id", "v"], &["ALICE", "1"], &["alice", "2"]]);
        let delta = records(&[&["_op", "id"], &["delete", "Alice"]]);
        let (full, counts) = apply(active.clone(), delta, &["id".into()], &m).unwrap();
        assert_eq!((full.rows.len(), counts.deleted), (0, 1));
        let err = |delta: Records| {
            apply(active.clone(), delta, &["id".into()], &m)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(records(&[&["id"], &["x"]])),
            "a delta upload needs a \"_op\" column (upsert or delete); its columns are: id"
        );
        assert_eq!(
            err(records(&[&["_op", "id"], &["upsert", "x"], &["merge", "y"]])),
            "data row 2: _op is \"merge\", expected upsert or delete"
        );
        assert_eq!(
            err(records(&[&["_op", "v"], &["upsert", "x"]])),
            "the delta has no key column \"id\""
        );
        assert_eq!(
            err(records(&[&["_op", "id"], &["upsert", " "]])),
            "data row 1: the key is empty or cannot be read as the table's key"
        );
    }

    #[test]
    fn quoting_round_trips() {
        let r = records(&[&["a", "b"], &["x, y", "say \"hi\""], &["multi\nline", ""]]);
        assert_eq!(
            String::from_utf8(to_csv(&r)).unwrap(),
            "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",\r\n"
        );
    }
}
