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

use callmeta_app::store::{CallQuery, CallRecord, StoreError, TenantId};
use sqlx::AnyPool;
use sqlx::{AssertSqlSafe, Row};

use crate::dialect::Backend;
use crate::error::{Context, db_error};
use crate::rows::{call_from_row, to_json};

/// The most calls in one statement (11 parameters each, well under both
/// databases' parameter limits).
const MAX_GROUP: usize = 512;

/// The columns a call is read back with (not `merged`, which only filters).
pub(crate) const CALL_COLUMNS: &str =
    "id, timestamp_ms, source, external_id, metadata, enrichment, audio_key, created_ms, updated_ms";

pub(crate) struct PendingCall {
    pub(crate) tenant: TenantId,
    pub(crate) call: CallRecord,
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
    const COLUMNS: usize = 11;
    let mut sql = String::with_capacity(64 + group.len() * 80);
    sql.push_str(
        "INSERT INTO calls (id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment, merged, \
         audio_key, created_ms, updated_ms) VALUES ",
    );
    for i in 0..group.len() {
        let n = i * COLUMNS;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, {}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7,
            backend.json_param(n + 8),
            n + 9,
            n + 10,
            n + 11
        ));
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
    // The text varies with the group's size: not worth a prepared
    // statement per size on every connection.
    let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
    for PendingCall { tenant, call, .. } in group {
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        // Borrowed from the group, which outlives the statement: the call
        // was copied once already, into the writer's queue.
        q = q
            .bind(&call.unique_id)
            .bind(&tenant.0)
            .bind(call.timestamp_ms)
            .bind(call.source.as_str())
            .bind(&call.external_id)
            .bind(to_json(&call.metadata))
            .bind(to_json(&call.enrichment))
            .bind(to_json(&merged))
            .bind(&call.audio_key)
            .bind(call.created_ms)
            .bind(call.updated_ms);
    }
    let rows = q.fetch_all(pool).await.doing("committing calls")?;
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| db_error("reading inserted ids", e))
        })
        .collect()
}

/// Newest first; the count is of all calls matching the filters (0 when
/// `uncounted`).
pub(crate) async fn list(
    pool: &AnyPool,
    backend: Backend,
    tenant: &TenantId,
    query: &CallQuery,
) -> Result<(u64, Vec<CallRecord>), StoreError> {
    // Two filters on one key can never both hold.
    let contradictory = query
        .metadata
        .iter()
        .any(|(k, v)| query.metadata.iter().any(|(k2, v2)| k == k2 && v != v2));
    if contradictory {
        return Ok((0, Vec::new()));
    }
    // The filter text is built from fixed fragments only; every value is bound.
    let mut filter = String::from("tenant_id = $1");
    let mut n = 1;
    if query.from_ms.is_some() {
        n += 1;
        filter.push_str(&format!(" AND timestamp_ms >= ${n}"));
    }
    if query.to_ms.is_some() {
        n += 1;
        filter.push_str(&format!(" AND timestamp_ms <= ${n}"));
    }
    let (metadata_sql, metadata_binds) = if query.metadata.is_empty() {
        (String::new(), Vec::new())
    } else {
        backend.metadata_filter(&query.metadata, n + 1)
    };
    n += metadata_binds.len();
    filter.push_str(&metadata_sql);
    if query.after.is_some() {
        filter.push_str(&format!(
            " AND (timestamp_ms < ${} OR (timestamp_ms = ${} AND id < ${}))",
            n + 1,
            n + 1,
            n + 2
        ));
        n += 2;
    }
    let bind_filter = |sql: String| {
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant.0.clone());
        if let Some(from) = query.from_ms {
            q = q.bind(from);
        }
        if let Some(to) = query.to_ms {
            q = q.bind(to);
        }
        for value in &metadata_binds {
            q = q.bind(value.clone());
        }
        if let Some((ts, id)) = &query.after {
            q = q.bind(*ts).bind(id.clone());
        }
        q
    };
    let count = if query.uncounted {
        0
    } else {
        bind_filter(format!("SELECT COUNT(*) AS n FROM calls WHERE {filter}"))
            .fetch_one(pool)
            .await
            .doing("counting calls")?
            .try_get::<i64, _>("n")
            .map_err(|e| db_error("counting calls", e))?
    };
    let rows = bind_filter(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE {filter} ORDER BY timestamp_ms DESC, id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    ))
    .bind(i64::from(query.limit))
    .bind(query.offset.min(i64::MAX as u64) as i64)
    .fetch_all(pool)
    .await
    .doing("listing calls")?;
    let calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok((count.max(0) as u64, calls))
}
