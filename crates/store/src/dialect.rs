//! What differs between the two databases, and nothing else: each fragment
//! is spliced into a statement written once in `store` or `calls`.

use std::time::Duration;

use callmeta_app::store::StoreError;
use sqlx::postgres::PgListener;

use crate::error::db_error;

/// The notification channel of version activations.
pub(crate) const VERSIONS_CHANNEL: &str = "callmeta_versions";
/// The notification channel of API token deletions (the payload is the
/// token's id; a node drops its whole cache on any).
pub(crate) const TOKENS_CHANNEL: &str = "callmeta_tokens";

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

    /// Whether the store numbers calls itself, in list order (`seq` is
    /// the time in milliseconds times 2^20 plus a rank: SQLite, whose
    /// index of calls by key is kept in row id order); otherwise the
    /// database numbers them as they come (PostgreSQL's `BIGSERIAL`).
    pub(crate) fn numbers_calls_in_time_order(self) -> bool {
        self == Backend::Sqlite
    }

    /// A bound parameter holding JSON text, as the calls' `merged` column
    /// takes it (`jsonb` on PostgreSQL, text on SQLite).
    pub(crate) fn json_param(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => format!("${n}::jsonb"),
        }
    }

    /// The elements of the bound JSON array `$n` as rows of one column,
    /// `g.value`: many rows sent as one parameter, which both databases
    /// read in one pass (binding thousands of parameters costs more than
    /// the rows themselves).
    pub(crate) fn json_rows(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("json_each(${n}) AS g"),
            Backend::Postgres => format!("jsonb_array_elements(${n}::jsonb) AS g(value)"),
        }
    }

    /// Element `i` of a [`json_rows`](Self::json_rows) row that holds an
    /// integer.
    pub(crate) fn json_row_int(self, i: usize) -> String {
        match self {
            Backend::Sqlite => format!("g.value->>{i}"),
            Backend::Postgres => format!("(g.value->>{i})::bigint"),
        }
    }

    /// Element `i` of a [`json_rows`](Self::json_rows) row that holds JSON
    /// text, as the calls' `merged` column takes it.
    pub(crate) fn json_row_json(self, i: usize) -> String {
        match self {
            Backend::Sqlite => format!("g.value->>{i}"),
            Backend::Postgres => format!("(g.value->>{i})::jsonb"),
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

    /// The value of a call's (`c`) merged metadata for the key bound at
    /// `key`, or NULL.
    pub(crate) fn merged_value(self, key: &str) -> String {
        match self {
            // `->>` would read a key with dots or brackets as a path.
            Backend::Sqlite => format!("(SELECT j.value FROM json_each(c.merged) j WHERE j.key = {key})"),
            Backend::Postgres => format!("(c.merged ->> {key})"),
        }
    }

    /// Announces a change (an activation, a token deletion) to every
    /// listening node, inside the changing transaction: delivered when (and
    /// only if) it commits. Binds the channel, then the payload.
    pub(crate) fn notify(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_notify($1, $2)"),
        }
    }
}

/// What other nodes announce: each counter moves on a notification of its
/// channel.
#[derive(Clone)]
pub(crate) struct Changes {
    pub(crate) versions: tokio::sync::watch::Receiver<u64>,
    pub(crate) tokens: tokio::sync::watch::Receiver<u64>,
}

/// Forwards activations and token deletions announced by any node.
/// `PgListener` reconnects by itself after a lost connection; a change may be
/// missed meanwhile, which is why both counters also move then (a node
/// reloads its versions and drops its token cache), and why nodes keep
/// polling versions too.
pub(crate) async fn listen_for_changes(url: &str) -> Result<Changes, StoreError> {
    let doing = "listening for version activations and token deletions";
    let mut listener = PgListener::connect(url).await.map_err(|e| db_error(doing, e))?;
    listener
        .listen_all([VERSIONS_CHANNEL, TOKENS_CHANNEL])
        .await
        .map_err(|e| db_error(doing, e))?;
    let (versions_tx, versions) = tokio::sync::watch::channel(0u64);
    let (tokens_tx, tokens) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let channel = match listener.try_recv().await {
                Ok(Some(n)) => Some(n.channel().to_string()),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "{doing} failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
            };
            match channel.as_deref() {
                Some(TOKENS_CHANNEL) => tokens_tx.send_modify(|n| *n += 1),
                Some(VERSIONS_CHANNEL) => versions_tx.send_modify(|n| *n += 1),
                _ => {
                    versions_tx.send_modify(|n| *n += 1);
                    tokens_tx.send_modify(|n| *n += 1);
                }
            }
            if versions_tx.is_closed() && tokens_tx.is_closed() {
                return;
            }
        }
    });
    Ok(Changes { versions, tokens })
}
