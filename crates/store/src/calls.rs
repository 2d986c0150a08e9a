//! Calls: the writer that commits concurrent creations together, and the
//! call-list query.
//!
//! Why a writer: a durable commit costs a flush of the database's log
//! (SQLite's `synchronous = FULL`, PostgreSQL's WAL), so one commit per call
//! caps creations at the flushes per second. All the calls that arrived
//! while the previous group was committing go into one multi-row INSERT,
//! one statement, one flush; each call is still answered only after the
//! commit that holds it.

use std::sync::Arc;

use callmeta_app::store::{
    COUNT_BOUND, CallPage, CallQuery, CallRecord, Cursor, Job, KeyFilter, StoreError, TenantId,
};
use sqlx::AnyPool;
use sqlx::{AssertSqlSafe, Row};

use crate::dialect::Backend;
use crate::error::{Context, db_error};
use crate::rows::{call_from_row, to_json};

/// The most calls in one statement.
const MAX_GROUP: usize = 512;

/// Calls one millisecond may hold, in the numbering of SQLite's calls.
const SEQ_PER_MS: i64 = 1 << 20;

/// The millisecond a call is numbered in: its time, within ±2^42 ms of
/// 1970 (±139 years; a call dated beyond is numbered at the bound).
fn seq_ms(ts: i64) -> i64 {
    ts.clamp(-(1 << 42), (1 << 42) - 1)
}

/// The first `seq` of a millisecond (SQLite's calls).
fn seq_start(ms: i64) -> i64 {
    seq_ms(ms) * SEQ_PER_MS
}

/// The columns a call is read back with (not `merged`, which only filters).
pub(crate) const CALL_COLUMNS: &str = "id, timestamp_ms, source, external_id, metadata, enrichment, audio_key, audio_pruned_ms, created_ms, \
     updated_ms";

/// [`CALL_COLUMNS`] of the calls named `c`.
const CALL_COLUMNS_OF_C: &str = "c.id AS id, c.timestamp_ms AS timestamp_ms, c.source AS source, \
    c.external_id AS external_id, c.metadata AS metadata, c.enrichment AS enrichment, \
    c.audio_key AS audio_key, c.audio_pruned_ms AS audio_pruned_ms, c.created_ms AS created_ms, \
    c.updated_ms AS updated_ms";

pub(crate) struct PendingCall {
    pub(crate) tenant: TenantId,
    pub(crate) call: CallRecord,
    /// Written in the same transaction, if the call is (its events).
    pub(crate) jobs: Vec<Job>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the writers; the sender is how `insert_call` hands them a call.
pub(crate) fn spawn_writer(pool: AnyPool, backend: Backend) -> tokio::sync::mpsc::Sender<PendingCall> {
    let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // SQLite has one writer at a time, so a second task would only wait for
    // the lock. PostgreSQL commits concurrent transactions in parallel:
    // while one group waits for its flush, the next is already sent.
    let writers = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    };
    for _ in 0..writers {
        tokio::spawn(write_calls(pool.clone(), backend, rx.clone()));
    }
    tx
}

async fn write_calls(
    pool: AnyPool,
    backend: Backend,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<PendingCall>>>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // Whoever holds the receiver takes everything waiting (up to a
        // group), then lets the next writer collect while it commits.
        if rx.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        match write_group(&pool, backend, &group).await {
            Ok(inserted) => {
                for pending in group.drain(..) {
                    let result = if inserted.contains(&pending.call.unique_id) {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict(format!(
                            "a call with external_id {:?} already exists",
                            pending.call.external_id.as_deref().unwrap_or("")
                        )))
                    };
                    let _ = pending.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, calls = group.len(), "committing a group of calls failed");
                for pending in group.drain(..) {
                    let _ = pending.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One statement for the group; a call that conflicts with a stored one
/// (its tenant's `external_id` taken, also by an earlier call of the same
/// group) is left out, not failed, so the others commit. Returns the ids
/// inserted.
async fn write_group(
    pool: &AnyPool,
    backend: Backend,
    group: &[PendingCall],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let doing = "committing calls";
    let mut tx = pool.begin_with(backend.begin_write()).await.doing(doing)?;
    // Where each call goes in list order, when the database does not
    // number calls itself: after the calls already stored in its
    // millisecond (one writer, in its write transaction: none can slip in).
    let mut seqs = Vec::new();
    if backend.numbers_calls_in_time_order() {
        let mut times: Vec<i64> = group.iter().map(|p| seq_ms(p.call.timestamp_ms)).collect();
        times.sort_unstable();
        times.dedup();
        let taken = sqlx::query(
            "SELECT g.value AS ts, (SELECT MAX(seq) FROM calls \
             WHERE seq >= g.value * 1048576 AND seq < (g.value + 1) * 1048576) AS m \
             FROM json_each($1) AS g",
        )
        .bind(serde_json::to_string(&times).unwrap_or_default())
        .fetch_all(&mut *tx)
        .await
        .doing(doing)?;
        let mut next = std::collections::HashMap::new();
        for row in &taken {
            let ts: i64 = row.try_get("ts").map_err(|e| db_error(doing, e))?;
            let max: Option<i64> = row.try_get("m").map_err(|e| db_error(doing, e))?;
            next.insert(ts, max.map_or_else(|| seq_start(ts), |m| m + 1));
        }
        for PendingCall { call, .. } in group {
            let ts = seq_ms(call.timestamp_ms);
            let seq = next
                .get_mut(&ts)
                .ok_or_else(|| StoreError::Failed(format!("{doing}: no place for {ts}")))?;
            if *seq >= seq_start(ts) + SEQ_PER_MS {
                return Err(StoreError::Failed(format!(
                    "{doing}: over {SEQ_PER_MS} calls at the millisecond {ts}"
                )));
            }
            seqs.push(*seq);
            *seq += 1;
        }
    }
    // The group travels as one JSON array of rows (one parameter), in the
    // columns' order below.
    let mut rows = Vec::with_capacity(group.len());
    for (i, PendingCall { tenant, call, .. }) in group.iter().enumerate() {
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        rows.push(serde_json::json!([
            call.unique_id,
            tenant.0,
            call.timestamp_ms,
            call.source.as_str(),
            call.external_id,
            to_json(&call.metadata),
            to_json(&call.enrichment),
            to_json(&merged),
            call.audio_key,
            call.created_ms,
            call.updated_ms,
            seqs.get(i),
        ]));
    }
    let text = |i| format!("g.value->>{i}");
    let (seq_column, seq_value) = if backend.numbers_calls_in_time_order() {
        ("seq, ", format!("{}, ", backend.json_row_int(11)))
    } else {
        ("", String::new())
    };
    let sql = format!(
        "INSERT INTO calls ({seq_column}id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment, \
         merged, audio_key, created_ms, updated_ms) \
         SELECT {seq_value}{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {} WHERE true \
         ON CONFLICT DO NOTHING RETURNING id",
        text(0),
        text(1),
        backend.json_row_int(2),
        text(3),
        text(4),
        text(5),
        text(6),
        backend.json_row_json(7),
        text(8),
        backend.json_row_int(9),
        backend.json_row_int(10),
        backend.json_rows(1),
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *tx)
        .await
        .doing(doing)?;
    let inserted = rows
        .iter()
        .map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| db_error("reading inserted ids", e))
        })
        .collect::<Result<std::collections::HashSet<String>, StoreError>>()?;
    // The events of the calls inserted (not of those left out), in the
    // same transaction and one statement for the group.
    let jobs: Vec<Job> = group
        .iter()
        .filter(|p| inserted.contains(&p.call.unique_id))
        .flat_map(|p| p.jobs.iter().cloned())
        .collect();
    crate::webhooks::insert_jobs_in(&mut tx, backend, &jobs).await?;
    tx.commit().await.doing(doing)?;
    Ok(inserted)
}

/// Values a statement binds, in order; each `push` returns its placeholder.
#[derive(Default)]
struct Binds(Vec<Bind>);

enum Bind {
    Text(String),
    Int(i64),
}

impl Binds {
    fn text(&mut self, value: impl Into<String>) -> String {
        self.0.push(Bind::Text(value.into()));
        format!("${}", self.0.len())
    }

    fn int(&mut self, value: i64) -> String {
        self.0.push(Bind::Int(value));
        format!("${}", self.0.len())
    }

    fn texts<'a>(&mut self, values: impl IntoIterator<Item = &'a String>) -> String {
        values
            .into_iter()
            .map(|v| self.text(v.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn query(&self, sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &self.0 {
            q = match b {
                Bind::Text(t) => q.bind(t.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// How much of a value `call_keys` holds (characters): an equality on a
/// value this long or longer, or a longer prefix, reads the calls themselves.
const INDEXED_CHARS: usize = 200;

/// How a page's calls are found: the index entries of one filter, in list
/// order (`d`), or the calls by time.
enum Drive {
    /// A range of `call_keys` (PostgreSQL), which answers the filter at
    /// `filter` (its position in the query).
    Keys {
        k: String,
        values: KeyValues,
        filter: usize,
    },
    /// A full-text query of `call_terms` that answers the filters
    /// `covered` (their positions in the query) together (SQLite).
    Terms {
        expr: String,
        covered: Vec<usize>,
    },
    Time,
}

enum KeyValues {
    Any(Vec<String>),
    Prefix(String),
}

impl Drive {
    /// The index entries a filter has, when every value it asks is indexed.
    fn of(position: usize, filter: &KeyFilter) -> Option<Drive> {
        let (k, values) = indexed(filter)?;
        Some(Drive::Keys {
            k,
            values,
            filter: position,
        })
    }

    /// In list order already (one value, or a few merged in order): no
    /// sort however many match.
    fn ordered(&self) -> bool {
        matches!(
            self,
            Drive::Keys {
                values: KeyValues::Any(_),
                ..
            }
        )
    }

    /// The entries as a relation `d` (`ts`, `seq`), and their conditions.
    /// Several values are one range each, merged in list order.
    fn entries(&self, b: &mut Binds, tenant: &str) -> (String, String) {
        match self {
            Drive::Time | Drive::Terms { .. } => (String::new(), String::new()),
            Drive::Keys { k, values, .. } => match values {
                KeyValues::Any(v) if v.len() > 1 => {
                    let k = b.text(k.clone());
                    let ranges: Vec<String> = v
                        .iter()
                        .map(|v| {
                            format!(
                                "SELECT ts, seq FROM call_keys WHERE tenant = {tenant} AND k = {k} AND v = {}",
                                b.text(v.clone())
                            )
                        })
                        .collect();
                    (format!("({}) AS d", ranges.join(" UNION ALL ")), "TRUE".into())
                }
                values => (
                    "call_keys d".into(),
                    format!(
                        "d.tenant = {tenant} AND d.k = {} AND {}",
                        b.text(k.clone()),
                        values.condition(b, "d.v")
                    ),
                ),
            },
        }
    }
}

impl KeyValues {
    /// The condition on an entry's value `v`.
    fn condition(&self, b: &mut Binds, v: &str) -> String {
        match self {
            KeyValues::Any(values) if values.len() == 1 => format!("{v} = {}", b.text(values[0].clone())),
            KeyValues::Any(values) => format!("{v} IN ({})", b.texts(values)),
            // Every string that starts with `p` sorts from `p` to `p`
            // followed by the highest code point.
            KeyValues::Prefix(p) => format!(
                "{v} >= {} AND {v} < {}",
                b.text(p.clone()),
                b.text(format!("{p}\u{10FFFF}"))
            ),
        }
    }
}

/// The `call_keys` entries (`k` and values) a filter matches, when every
/// value it asks is indexed.
fn indexed(filter: &KeyFilter) -> Option<(String, KeyValues)> {
    let whole = |v: &String| v.chars().count() < INDEXED_CHARS;
    let short = |v: &String| v.chars().count() <= INDEXED_CHARS;
    match filter {
        KeyFilter::Equals { key, values } if values.iter().all(whole) => {
            Some((format!("m:{key}"), KeyValues::Any(values.clone())))
        }
        KeyFilter::Prefix { key, prefix } if short(prefix) && !prefix.is_empty() => {
            Some((format!("m:{key}"), KeyValues::Prefix(prefix.clone())))
        }
        KeyFilter::Enrichment { table, statuses } => {
            Some((format!("e:{table}"), KeyValues::Any(statuses.clone())))
        }
        _ => None,
    }
}

/// The condition a filter puts on a call `c` (of tenant number `tenant`),
/// whose place in list order is (`ts`, `seq`). On PostgreSQL an indexed
/// filter is one lookup in `call_keys`, not a read of the call's JSON.
fn condition(
    backend: Backend,
    filter: &KeyFilter,
    b: &mut Binds,
    tenant: &str,
    (ts, seq): (&str, &str),
) -> String {
    if !backend.numbers_calls_in_time_order()
        && let Some((k, values)) = indexed(filter)
    {
        let k = b.text(k);
        return format!(
            "EXISTS (SELECT 1 FROM call_keys e WHERE e.tenant = {tenant} AND e.k = {k} AND {} \
             AND e.ts = {ts} AND e.seq = {seq})",
            values.condition(b, "e.v")
        );
    }
    match filter {
        KeyFilter::Equals { key, values } => {
            format!(
                "{} IN ({})",
                backend.merged_value(&b.text(key.clone())),
                b.texts(values)
            )
        }
        KeyFilter::Prefix { key, prefix } => {
            let p = b.text(prefix.clone());
            format!(
                "substr({}, 1, length({p})) = {p}",
                backend.merged_value(&b.text(key.clone()))
            )
        }
        KeyFilter::Missing { key, missing } => format!(
            "{} IS {}NULL",
            backend.merged_value(&b.text(key.clone())),
            if *missing { "" } else { "NOT " }
        ),
        KeyFilter::Enrichment { table, statuses } => format!(
            "EXISTS (SELECT 1 FROM json_each(c.enrichment) r WHERE r.value ->> 'table' = {} \
             AND r.value ->> 'status' IN ({}))",
            b.text(table.clone()),
            b.texts(statuses)
        ),
    }
}

/// A page of a tenant's calls, newest first, and their count up to
/// [`COUNT_BOUND`].
///
/// Each page is one index range: the entries of the filter that matches
/// fewest calls (counted up to the bound, a few milliseconds each), joined
/// to their calls, which the other filters then check; or, with no filter
/// an index can answer, the calls by time. A filter on one value is read in
/// list order and stops at the page's end, however many calls match.
pub(crate) async fn list(
    pool: &AnyPool,
    backend: Backend,
    tenant: &TenantId,
    query: &CallQuery,
) -> Result<CallPage, StoreError> {
    let drive = choose_drive(pool, backend, tenant, query).await?;
    let count = if query.uncounted {
        0
    } else {
        let m = Matching::new(backend, tenant, query, &drive, false, false);
        // When the terms answer every filter, their list alone is counted.
        let counted = match &drive {
            Drive::Terms { expr, covered } if covered.len() == query.filters.len() => {
                let mut b = Binds::default();
                let mut sql = format!("FROM call_terms WHERE call_terms MATCH {}", b.text(expr.clone()));
                if let Some(from) = query.from_ms {
                    sql.push_str(&format!(" AND rowid >= {}", b.int(seq_start(from))));
                }
                if let Some(to) = query.to_ms {
                    sql.push_str(&format!(
                        " AND rowid < {}",
                        b.int(seq_start(to.saturating_add(1)))
                    ));
                }
                (b, sql)
            }
            _ => (m.binds, m.sql),
        };
        counted
            .0
            .query(format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 {} LIMIT {}) AS m",
                counted.1,
                COUNT_BOUND + 1
            ))
            .fetch_one(pool)
            .await
            .doing("counting calls")?
            .try_get::<i64, _>("n")
            .map_err(|e| db_error("counting calls", e))?
            .max(0) as u64
    };
    let mut m = Matching::new(backend, tenant, query, &drive, true, false);
    let limit = m.binds.int(i64::from(query.limit) + 1);
    let offset = m.binds.int(query.offset.min(i64::MAX as u64) as i64);
    let sql = if m.entries_only {
        // The page's entries first (sorted, or merged in order, without
        // the calls), then its calls: the planner may otherwise join every
        // matching call before it sorts.
        format!(
            "SELECT {CALL_COLUMNS_OF_C}, c.seq AS seq FROM (SELECT d.ts AS ts, d.seq AS seq {} \
             ORDER BY {} LIMIT {limit} OFFSET {offset}) AS p CROSS JOIN calls c WHERE c.seq = p.seq \
             ORDER BY p.ts DESC, p.seq DESC",
            m.sql,
            m.order()
        )
    } else {
        format!(
            "SELECT {CALL_COLUMNS_OF_C}, c.seq AS seq {} ORDER BY {} LIMIT {limit} OFFSET {offset}",
            m.sql,
            m.order()
        )
    };
    let rows = m.binds.query(sql).fetch_all(pool).await.doing("listing calls")?;
    let more = rows.len() > query.limit as usize;
    let mut calls = Vec::with_capacity(rows.len());
    let mut next_cursor = None;
    for row in rows.iter().take(query.limit as usize) {
        let call = call_from_row(row)?;
        next_cursor = Some(Cursor {
            timestamp_ms: call.timestamp_ms,
            seq: row
                .try_get::<i64, _>("seq")
                .map_err(|e| db_error("listing calls", e))?,
        });
        calls.push(call);
    }
    Ok(CallPage {
        count: count.min(COUNT_BOUND),
        count_exact: query.uncounted || count <= COUNT_BOUND,
        calls,
        next_cursor: next_cursor.filter(|_| more),
    })
}

/// The values of `key` among the newest `sample` calls matching `query`,
/// with how many calls have each (`None`: calls without the key).
pub(crate) async fn facets(
    pool: &AnyPool,
    backend: Backend,
    tenant: &TenantId,
    query: &CallQuery,
    key: &str,
    sample: u32,
) -> Result<Vec<(Option<String>, u64)>, StoreError> {
    let drive = choose_drive(pool, backend, tenant, query).await?;
    let mut m = Matching::new(backend, tenant, query, &drive, true, true);
    let key = m.binds.text(key);
    let value = backend.merged_value(&key);
    let sample = m.binds.int(i64::from(sample));
    let rows = m
        .binds
        .query(format!(
            "SELECT v, COUNT(*) AS n FROM (SELECT {value} AS v {} ORDER BY {} LIMIT {sample}) AS s GROUP BY v",
            m.sql,
            m.order()
        ))
        .fetch_all(pool)
        .await
        .doing("counting a key's values")?;
    rows.iter()
        .map(|r| {
            let v = r
                .try_get::<Option<String>, _>("v")
                .map_err(|e| db_error("counting a key's values", e))?;
            let n = r
                .try_get::<i64, _>("n")
                .map_err(|e| db_error("counting a key's values", e))?;
            Ok((v, n.max(0) as u64))
        })
        .collect()
}

/// The metadata keys and the tables of a tenant's calls, in byte order:
/// one index seek per name (the entries are ordered by name first).
pub(crate) async fn key_names(
    pool: &AnyPool,
    backend: Backend,
    tenant: &TenantId,
) -> Result<Vec<String>, StoreError> {
    if backend.numbers_calls_in_time_order() {
        return term_names(pool, tenant).await;
    }
    let mut names = Vec::new();
    let mut last = String::new();
    loop {
        let next = sqlx::query(
            "SELECT k FROM call_keys WHERE tenant = (SELECT num FROM tenants WHERE id = $1) AND k > $2 \
             ORDER BY k LIMIT 1",
        )
        .bind(tenant.0.clone())
        .bind(last.clone())
        .fetch_optional(pool)
        .await
        .doing("reading the keys of calls")?;
        let Some(row) = next else { break };
        last = row
            .try_get::<String, _>("k")
            .map_err(|e| db_error("reading the keys of calls", e))?;
        names.push(last.clone());
        // Bounded: a tenant sending a new key with every call still gets
        // an answer.
        if names.len() >= MAX_KEY_NAMES {
            break;
        }
    }
    Ok(names)
}

/// The most names [`key_names`] reads.
const MAX_KEY_NAMES: usize = 2_000;

/// The `FROM ... WHERE ...` of the calls a query matches, and what it binds.
struct Matching {
    binds: Binds,
    sql: String,
    ts: &'static str,
    seq: &'static str,
    /// Reads index entries `d` only, not the calls `c`.
    entries_only: bool,
}

impl Matching {
    /// `paging`: with the cursor and `after` (a count leaves them out);
    /// `calls`: the calls `c` are joined even when the entries answer.
    fn new(
        backend: Backend,
        tenant: &TenantId,
        query: &CallQuery,
        drive: &Drive,
        paging: bool,
        calls: bool,
    ) -> Matching {
        let tenant_num = "(SELECT num FROM tenants WHERE id = $1)";
        let mut b = Binds::default();
        b.text(tenant.0.clone());
        let mut sql = String::new();
        // How the drive's rows are bounded by time, and after which call a
        // page starts.
        let mut covered: &[usize] = &[];
        let mut answered = None;
        let mut alone = false;
        let (ts, seq) = match drive {
            Drive::Time => {
                sql.push_str("FROM calls c WHERE c.tenant_id = $1");
                ("c.timestamp_ms", "c.seq")
            }
            Drive::Terms { expr, covered: c } => {
                covered = c;
                sql.push_str(&format!(
                    "FROM call_terms CROSS JOIN calls c WHERE call_terms MATCH {} \
                     AND c.seq = call_terms.rowid AND c.tenant_id = $1",
                    b.text(expr.clone())
                ));
                // The row id is the call's place in list order, time first.
                ("", "call_terms.rowid")
            }
            keys => {
                let (from, entries) = keys.entries(&mut b, tenant_num);
                // The entries alone when no other filter reads the call
                // itself.
                alone = !calls
                    && query.filters.iter().enumerate().all(|(i, f)| {
                        matches!(keys, Drive::Keys { filter, .. } if *filter == i) || indexed(f).is_some()
                    });
                if alone {
                    sql.push_str(&format!("FROM {from} WHERE {entries}"));
                } else {
                    sql.push_str(&format!(
                        "FROM {from} CROSS JOIN calls c WHERE {entries} AND c.seq = d.seq"
                    ));
                }
                if let Drive::Keys { filter, .. } = keys {
                    answered = Some(*filter);
                }
                ("d.ts", "d.seq")
            }
        };
        if ts.is_empty() {
            if let Some(from) = query.from_ms {
                sql.push_str(&format!(" AND {seq} >= {}", b.int(seq_start(from))));
            }
            if let Some(to) = query.to_ms {
                sql.push_str(&format!(
                    " AND {seq} < {}",
                    b.int(seq_start(to.saturating_add(1)))
                ));
            }
        } else {
            if let Some(from) = query.from_ms {
                sql.push_str(&format!(" AND {ts} >= {}", b.int(from)));
            }
            if let Some(to) = query.to_ms {
                sql.push_str(&format!(" AND {ts} <= {}", b.int(to)));
            }
        }
        let at = if ts.is_empty() {
            ("c.timestamp_ms", "c.seq")
        } else {
            (ts, seq)
        };
        for (i, filter) in query.filters.iter().enumerate() {
            if !covered.contains(&i) && answered != Some(i) {
                sql.push_str(&format!(
                    " AND {}",
                    condition(backend, filter, &mut b, tenant_num, at)
                ));
            }
        }
        if paging {
            let before = |b: &mut Binds, at_ts: i64, at_seq: String| {
                if ts.is_empty() {
                    format!(" AND {seq} < {at_seq}")
                } else {
                    format!(" AND ({ts}, {seq}) < ({}, {at_seq})", b.int(at_ts))
                }
            };
            if let Some(cursor) = query.cursor {
                let at = b.int(cursor.seq);
                let cond = before(&mut b, cursor.timestamp_ms, at);
                sql.push_str(&cond);
            }
            if let Some((after_ts, after_id)) = &query.after {
                // The call may be gone: then none of its millisecond follow.
                let at = format!("(SELECT seq FROM calls WHERE id = {})", b.text(after_id.clone()));
                let cond = before(&mut b, *after_ts, at);
                sql.push_str(&cond);
            }
        }
        Matching {
            binds: b,
            sql,
            ts,
            seq,
            entries_only: alone,
        }
    }

    /// List order: newest first.
    fn order(&self) -> String {
        if self.ts.is_empty() {
            format!("{} DESC", self.seq)
        } else {
            format!("{} DESC, {} DESC", self.ts, self.seq)
        }
    }
}

/// The index range with the fewest entries, counted up to the bound; one
/// in list order when all are over it; the calls by time when no filter
/// has entries.
async fn choose_drive(
    pool: &AnyPool,
    backend: Backend,
    tenant: &TenantId,
    query: &CallQuery,
) -> Result<Drive, StoreError> {
    if backend.numbers_calls_in_time_order() {
        return terms_drive(pool, tenant, query).await;
    }
    let mut best: Option<(u64, Drive)> = None;
    for drive in query
        .filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Drive::of(i, f))
    {
        let mut b = Binds::default();
        b.text(tenant.0.clone());
        let (from, mut sql) = drive.entries(&mut b, "(SELECT num FROM tenants WHERE id = $1)");
        if let Some(from) = query.from_ms {
            sql.push_str(&format!(" AND d.ts >= {}", b.int(from)));
        }
        if let Some(to) = query.to_ms {
            sql.push_str(&format!(" AND d.ts <= {}", b.int(to)));
        }
        let n = b
            .query(format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {from} WHERE {sql} LIMIT {}) AS m",
                COUNT_BOUND + 1
            ))
            .fetch_one(pool)
            .await
            .doing("choosing how to list calls")?
            .try_get::<i64, _>("n")
            .map_err(|e| db_error("choosing how to list calls", e))?
            .max(0) as u64;
        let better = match &best {
            None => true,
            Some((m, current)) => {
                if n <= COUNT_BOUND || *m <= COUNT_BOUND {
                    n < *m
                } else {
                    // All over the bound: one that needs no sort.
                    drive.ordered() && !current.ordered()
                }
            }
        };
        if better {
            best = Some((n, drive));
        }
    }
    Ok(match best {
        Some((n, drive)) if n <= COUNT_BOUND || drive.ordered() => drive,
        _ => Drive::Time,
    })
}

/// The full-text query of the filters `call_terms` can answer (all of
/// them, together: FTS5 intersects the terms' lists in row id order, so a
/// first page stops early however common each term is); the calls by time
/// when none can.
async fn terms_drive(pool: &AnyPool, tenant: &TenantId, query: &CallQuery) -> Result<Drive, StoreError> {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let whole = |v: &String| v.chars().count() < INDEXED_CHARS;
    let short = |v: &String| v.chars().count() <= INDEXED_CHARS;
    let mut positive = Vec::new();
    let mut negative = Vec::new();
    let mut covered = Vec::new();
    // Filled in once a filter needs it.
    let mut num: Option<i64> = None;
    for (i, filter) in query.filters.iter().enumerate() {
        let indexable = match filter {
            KeyFilter::Equals { values, .. } => values.iter().all(whole),
            KeyFilter::Prefix { prefix, .. } => short(prefix),
            KeyFilter::Missing { .. } | KeyFilter::Enrichment { .. } => true,
        };
        if !indexable {
            continue;
        }
        let t = match num {
            Some(n) => n,
            None => {
                let n = sqlx::query("SELECT num FROM tenants WHERE id = $1")
                    .bind(tenant.0.clone())
                    .fetch_optional(pool)
                    .await
                    .doing("choosing how to list calls")?
                    .map(|r| r.try_get::<i64, _>("num"))
                    .transpose()
                    .map_err(|e| db_error("choosing how to list calls", e))?;
                let Some(n) = n else { return Ok(Drive::Time) };
                num = Some(n);
                n
            }
        };
        let any = |terms: Vec<String>| format!("({})", terms.join(" OR "));
        match filter {
            KeyFilter::Equals { key, values } => positive.push(any(values
                .iter()
                .map(|v| format!("t{t}k{}v{}", hex(key), hex(v)))
                .collect())),
            KeyFilter::Prefix { key, prefix } => positive.push(format!("t{t}k{}v{}*", hex(key), hex(prefix))),
            KeyFilter::Enrichment { table, statuses } => positive.push(any(statuses
                .iter()
                .map(|s| format!("t{t}e{}s{}", hex(table), hex(s)))
                .collect())),
            KeyFilter::Missing { key, missing: false } => positive.push(format!("t{t}k{}v*", hex(key))),
            KeyFilter::Missing { key, missing: true } => negative.push(format!("t{t}k{}v*", hex(key))),
        }
        covered.push(i);
    }
    if positive.is_empty() {
        return Ok(Drive::Time);
    }
    // FTS5's NOT takes something from something: a missing key only
    // narrows a query that has a term.
    let mut expr = positive.join(" AND ");
    for n in negative {
        expr = format!("({expr}) NOT {n}");
    }
    Ok(Drive::Terms { expr, covered })
}

/// [`key_names`] from the terms of `call_terms` (SQLite): one seek in its
/// vocabulary per name, each skipping that name's values.
async fn term_names(pool: &AnyPool, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
    let doing = "reading the keys of calls";
    let num = sqlx::query("SELECT num FROM tenants WHERE id = $1")
        .bind(tenant.0.clone())
        .fetch_optional(pool)
        .await
        .doing(doing)?
        .map(|r| r.try_get::<i64, _>("num"))
        .transpose()
        .map_err(|e| db_error(doing, e))?;
    let Some(num) = num else { return Ok(Vec::new()) };
    let unhex = |h: &str| -> Option<String> {
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect();
        String::from_utf8(bytes?).ok()
    };
    let mut names = Vec::new();
    // Tables (`e`, their statuses after `s`), then keys (`k`, values after `v`).
    for (kind, name_prefix, value_mark, skip) in [("e", "e:", 's', 't'), ("k", "m:", 'v', 'w')] {
        let start = format!("t{num}{kind}");
        let end = format!("t{num}{}", (kind.as_bytes()[0] + 1) as char);
        let mut lower = start.clone();
        while names.len() < MAX_KEY_NAMES {
            let next = sqlx::query(
                "SELECT term FROM call_terms_vocab WHERE term > $1 AND term < $2 ORDER BY term LIMIT 1",
            )
            .bind(lower.clone())
            .bind(end.clone())
            .fetch_optional(pool)
            .await
            .doing(doing)?;
            let Some(row) = next else { break };
            let term: String = row.try_get("term").map_err(|e| db_error(doing, e))?;
            let Some(hex) = term
                .strip_prefix(&start)
                .and_then(|rest| rest.split(value_mark).next())
            else {
                break;
            };
            if let Some(name) = unhex(hex) {
                names.push(format!("{name_prefix}{name}"));
            }
            lower = format!("{start}{hex}{skip}");
        }
    }
    // The terms sort a name's hex followed by its mark (`nv...` after
    // `note`'s), not the names themselves.
    names.sort_unstable();
    Ok(names)
}
