//! What differs between the two databases, and nothing else: each fragment
//! is spliced into a statement written once in `store` or `calls`.

use std::time::Duration;

use callmeta_app::store::StoreError;
use sqlx::postgres::PgListener;

use crate::error::db_error;

/// The notification channel of version activations.
pub(crate) const VERSIONS_CHANNEL: &str = "callmeta_versions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Starts a transaction that will write. SQLite takes its one write
    /// lock at once, so two writers never both read and then fail to
    /// upgrade (which SQLite answers with `SQLITE_BUSY` at commit).
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Starts a transaction whose reads all see one snapshot. SQLite in
    /// WAL mode gives every read transaction a snapshot; PostgreSQL's
    /// default (read committed) takes one per statement.
    pub(crate) fn begin_snapshot(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// A bound parameter holding JSON text, as the calls' `merged` column
    /// takes it (`jsonb` on PostgreSQL, text on SQLite).
    pub(crate) fn json_param(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => format!("${n}::jsonb"),
        }
    }

    /// The strings of a bound JSON array, as a subquery for `IN (...)`.
    pub(crate) fn json_array_strings(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Backend::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
        }
    }

    /// The text of member `key` of a JSON object stored as text in `column`
    /// (`key` is the caller's constant, never input).
    pub(crate) fn json_member(self, column: &str, key: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Backend::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    /// Locks the selected row for the claiming transaction and skips rows
    /// other nodes are claiming; SQLite has one writer, so nothing to add.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// `(results, matched)` of the calls enriched from one version: the
    /// enrichment column is a JSON array of results.
    pub(crate) fn version_match_counts(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS results, \
                 COALESCE(SUM(json_extract(e.value, '$.status') = 'matched'), 0) AS matched \
                 FROM calls c, json_each(c.enrichment) e \
                 WHERE c.tenant_id = $1 AND json_extract(e.value, '$.table') = $2 \
                 AND json_extract(e.value, '$.version') = $3"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) AS results, \
                 COUNT(*) FILTER (WHERE e->>'status' = 'matched') AS matched \
                 FROM calls c, jsonb_array_elements(c.enrichment::jsonb) e \
                 WHERE c.tenant_id = $1 AND e->>'table' = $2 AND e->>'version' = $3"
            }
        }
    }

    /// Filters on the merged metadata (own and added keys), each value
    /// bound: `pairs` is how many `(key, value)` pairs follow parameter
    /// `first`. Returns the SQL and the parameters it binds, in order.
    pub(crate) fn metadata_filter(self, pairs: &[(String, String)], first: usize) -> (String, Vec<String>) {
        match self {
            Backend::Sqlite => {
                let mut sql = String::new();
                let mut binds = Vec::with_capacity(pairs.len() * 2);
                for (i, (k, v)) in pairs.iter().enumerate() {
                    let n = first + 2 * i;
                    sql.push_str(&format!(
                        " AND EXISTS (SELECT 1 FROM json_each(calls.merged) j WHERE j.key = ${n} AND j.value = ${})",
                        n + 1
                    ));
                    binds.push(k.clone());
                    binds.push(v.clone());
                }
                (sql, binds)
            }
            Backend::Postgres => {
                // All filters become one containment test on the
                // GIN-indexed jsonb.
                let object: serde_json::Map<String, serde_json::Value> = pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                (
                    format!(" AND merged @> ${first}::jsonb"),
                    vec![serde_json::Value::Object(object).to_string()],
                )
            }
        }
    }

    /// Announces an activation to every listening node, inside the
    /// activating transaction: delivered when (and only if) it commits.
    pub(crate) fn notify_activation(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_notify($1, $2)"),
        }
    }
}

/// Forwards activations announced by any node. `PgListener` reconnects by
/// itself after a lost connection; a change may be missed meanwhile, which
/// is why it also bumps the counter then, and why nodes keep polling too.
pub(crate) async fn listen_for_versions(url: &str) -> Result<tokio::sync::watch::Receiver<u64>, StoreError> {
    let mut listener = PgListener::connect(url)
        .await
        .map_err(|e| db_error("listening for version activations", e))?;
    listener
        .listen(VERSIONS_CHANNEL)
        .await
        .map_err(|e| db_error("listening for version activations", e))?;
    let (tx, changes) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            if let Err(e) = listener.try_recv().await {
                tracing::warn!(error = %e, "listening for version activations failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tx.send_modify(|n| *n += 1);
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(changes)
}
