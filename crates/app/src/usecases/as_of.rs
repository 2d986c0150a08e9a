//! `"as_of": "call_time"`: a call enriched from the version of each such
//! table that was active at the call's timestamp, not the one active now.
//!
//! Which version that was is the store's to say (`Store::activation_at`:
//! the table's last activation at or before the timestamp), so every node
//! agrees, whichever wrote the activation. The active version is already
//! in memory; an earlier one is loaded on demand from its stored original,
//! through the same ingest as an upload, into [`PastVersions`]: a few
//! versions per tenant, shared by every call that needs them.
//!
//! The `processing` path does none of this: a tenant without a
//! `call_time` table is enriched from its snapshot alone, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use callmeta_core::csv::{AsOf, TableOptions};
use callmeta_core::domain::{ColumnName, TableName};
use callmeta_core::enrich::{self, AsOfChoice, AsOfReason, EnrichmentResult, Metadata, TableView};
use callmeta_core::index::TableIndex;

use super::active_tables::{LoadedTable, TenantTables};
use super::uploads::Received;
use super::{AppError, Services, tables};
use crate::blobs::BlobError;
use crate::store::{StoreError, TenantId};

/// Versions other than the active ones kept in memory, per tenant. A
/// tenant's calls usually fall after its last activation or just before
/// it; a back-fill over a year of monthly uploads walks the calls in time
/// order, so each version is loaded once, and four cover a table or two
/// moving over a boundary. More would only hold memory: an index can be
/// as large as the active one.
pub const PAST_VERSIONS_PER_TENANT: usize = 4;

/// A version that is not (or no longer) active, as a call at its time
/// needs it.
#[derive(Debug)]
pub struct PastVersion {
    /// The options it was ingested under (its key may differ from today's).
    pub options: TableOptions,
    pub index: Arc<TableIndex>,
}

struct Entry {
    table: TableName,
    version: String,
    /// Filled by the first call that needs the version; the others wait
    /// for it instead of loading it a second time.
    cell: Arc<tokio::sync::OnceCell<Arc<PastVersion>>>,
}

/// The per-tenant cache of past versions, least recently used first.
#[derive(Default)]
pub struct PastVersions {
    by_tenant: Mutex<HashMap<TenantId, Vec<Entry>>>,
}

impl PastVersions {
    /// The version's cell, made most recently used (created, and the least
    /// recently used dropped past the bound, if absent).
    fn cell(
        &self,
        tenant: &TenantId,
        table: &TableName,
        version: &str,
    ) -> Arc<tokio::sync::OnceCell<Arc<PastVersion>>> {
        let mut map = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
        let entries = map.entry(tenant.clone()).or_default();
        let entry = match entries.iter().position(|e| e.version == version) {
            Some(i) => entries.remove(i),
            None => Entry {
                table: table.clone(),
                version: version.to_string(),
                cell: Arc::default(),
            },
        };
        let cell = entry.cell.clone();
        entries.push(entry);
        if entries.len() > PAST_VERSIONS_PER_TENANT {
            // Calls still using an evicted version hold their own `Arc`.
            entries.remove(0);
        }
        cell
    }

    /// Drops a deleted table's versions.
    pub(crate) fn forget_table(&self, tenant: &TenantId, table: &TableName) {
        let mut map = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entries) = map.get_mut(tenant) {
            entries.retain(|e| &e.table != table);
        }
    }
}

/// Why a past version could not be had.
enum Unloaded {
    /// Its record or its original is gone (retention, erasure).
    Removed,
    Failed(AppError),
}

/// The version a table gives one call, chosen for its timestamp.
struct Chosen {
    key: ColumnName,
    version: Option<String>,
    index: Option<Arc<TableIndex>>,
    as_of: Option<AsOfChoice>,
}

/// Whether any of the tenant's tables picks versions by call time.
pub(crate) fn any_call_time(snapshot: &TenantTables) -> bool {
    snapshot.tables.iter().any(|t| t.options.as_of == AsOf::CallTime)
}

/// Enriches metadata from `snapshot`, each `call_time` table from the
/// version active at `call_ms`; its results say which and why.
pub(crate) async fn enrich_as_of(
    services: &Services,
    tenant: &TenantId,
    snapshot: &TenantTables,
    metadata: &Metadata,
    at_ms: i64,
    call_ms: i64,
) -> Vec<EnrichmentResult> {
    let mut chosen = Vec::with_capacity(snapshot.tables.len());
    for table in &snapshot.tables {
        chosen.push(match table.options.as_of {
            AsOf::Processing => Chosen {
                key: table.options.key.clone(),
                version: table.version.clone(),
                index: table.index.clone(),
                as_of: None,
            },
            AsOf::CallTime => choose(services, tenant, table, call_ms).await,
        });
    }
    let views: Vec<TableView<'_>> = snapshot
        .tables
        .iter()
        .zip(&chosen)
        .map(|(t, c)| TableView {
            table: t.name.as_str(),
            key_column: c.key.as_str(),
            version: c.version.as_deref(),
            index: c.index.as_deref(),
        })
        .collect();
    let mut results = enrich::enrich_at(metadata, &views, at_ms, call_ms);
    for (result, c) in results.iter_mut().zip(chosen) {
        result.as_of = c.as_of;
    }
    results
}

/// The version of a `call_time` table for a call at `call_ms`.
async fn choose(services: &Services, tenant: &TenantId, table: &LoadedTable, call_ms: i64) -> Chosen {
    let mut chosen = Chosen {
        key: table.options.key.clone(),
        version: None,
        index: None,
        as_of: None,
    };
    let choice = |reason, activated_ms| {
        Some(AsOfChoice {
            call_ms,
            reason,
            activated_ms,
        })
    };
    let (activation, kept) = match services.store.activation_at(tenant, &table.name, call_ms).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            chosen.as_of = choice(AsOfReason::BeforeFirstActivation, None);
            return chosen;
        }
        Err(e) => {
            tracing::error!(tenant = %tenant, table = %table.name, error = %e,
                "could not read which version was active at the call's time");
            chosen.as_of = choice(AsOfReason::VersionUnavailable, None);
            return chosen;
        }
    };
    chosen.version = Some(activation.version.clone());
    let activated = Some(activation.activated_ms);
    if table.version.as_deref() == Some(activation.version.as_str()) {
        chosen.index = table.index.clone();
        chosen.as_of = choice(AsOfReason::ActiveAtCallTime, activated);
        return chosen;
    }
    if !kept {
        chosen.as_of = choice(AsOfReason::VersionRemoved, activated);
        return chosen;
    }
    let cell = services
        .tables
        .past
        .cell(tenant, &table.name, &activation.version);
    let loaded = cell
        .get_or_try_init(|| load(services, tenant, &activation.version))
        .await
        .cloned();
    match loaded {
        Ok(past) => {
            chosen.key = past.options.key.clone();
            chosen.index = Some(past.index.clone());
            chosen.as_of = choice(AsOfReason::ActiveAtCallTime, activated);
        }
        Err(Unloaded::Removed) => chosen.as_of = choice(AsOfReason::VersionRemoved, activated),
        Err(Unloaded::Failed(e)) => {
            tracing::error!(tenant = %tenant, table = %table.name, version = %activation.version,
                error = %e, "could not load the version active at the call's time");
            chosen.as_of = choice(AsOfReason::VersionUnavailable, activated);
        }
    }
    chosen
}

/// A past version's index, from its stored original under its own
/// options, as the active version is loaded at start.
#[tracing::instrument(skip_all, fields(tenant = %tenant, version = version_id))]
async fn load(
    services: &Services,
    tenant: &TenantId,
    version_id: &str,
) -> Result<Arc<PastVersion>, Unloaded> {
    let version = match services.store.version(tenant, version_id).await {
        Ok(v) => v,
        Err(StoreError::NotFound) => return Err(Unloaded::Removed),
        Err(e) => return Err(Unloaded::Failed(e.into())),
    };
    if version.blob_key.is_empty() {
        return Err(Unloaded::Removed);
    }
    let bytes = match services.blobs.get(&version.blob_key).await {
        Ok(bytes) => bytes,
        Err(BlobError::NotFound(_)) => return Err(Unloaded::Removed),
        Err(e) => return Err(Unloaded::Failed(e.into())),
    };
    let upload = Received::from_stored(services, bytes)
        .await
        .map_err(Unloaded::Failed)?;
    let (index, report) = tables::ingest(services, &version.options, Arc::new(upload), None)
        .await
        .map_err(Unloaded::Failed)?;
    let index = index.ok_or_else(|| {
        Unloaded::Failed(AppError::Unexpected(anyhow::anyhow!(
            "stored version {version_id} no longer ingests: {}",
            report.error.as_deref().unwrap_or("rejected")
        )))
    })?;
    tracing::info!(
        rows = version.rows,
        "a past version is loaded for calls at its time"
    );
    Ok(Arc::new(PastVersion {
        options: version.options,
        index,
    }))
}
