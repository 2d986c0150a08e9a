//! The active versions held in memory, one immutable snapshot per tenant.
//!
//! A call takes its tenant's snapshot (`Arc<TenantTables>`) once and is
//! enriched entirely from it, so it never sees a mix of versions, whatever is
//! activated meanwhile. Activation builds the new index first, then swaps a
//! new snapshot in; the old one is freed when its last reader drops it.
//!
//! Every process also reconciles with the store on a timer ([`refresh`]), so a
//! version activated by another process (the CLI, another node) is picked up
//! within the refresh interval, and a restart reloads the active versions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use callmeta_core::csv::TableOptions;
use callmeta_core::domain::TableName;
use callmeta_core::index::TableIndex;

use super::uploads::Received;
use super::{AppError, Services, tables};
use crate::store::{TableState, TenantId};

#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub name: TableName,
    pub options: TableOptions,
    pub version: Option<String>,
    pub index: Option<Arc<TableIndex>>,
}

/// The tables of one tenant, sorted by name.
#[derive(Debug, Default)]
pub struct TenantTables {
    pub tables: Vec<LoadedTable>,
}

#[derive(Default)]
pub struct ActiveTables {
    by_tenant: RwLock<HashMap<TenantId, Arc<TenantTables>>>,
    /// Serialises installs and refreshes, so an older version read by a
    /// refresh can never be installed over a newer one.
    install: tokio::sync::Mutex<()>,
    /// Versions no longer active that calls at their time need
    /// (`"as_of": "call_time"`), a few per tenant.
    pub past: super::as_of::PastVersions,
}

impl ActiveTables {
    pub fn snapshot(&self, tenant: &TenantId) -> Arc<TenantTables> {
        let map = self.by_tenant.read().unwrap_or_else(|p| p.into_inner());
        map.get(tenant).cloned().unwrap_or_default()
    }

    fn put(&self, tenant: &TenantId, table: LoadedTable) {
        let mut map = self.by_tenant.write().unwrap_or_else(|p| p.into_inner());
        let mut tables = map.get(tenant).map(|t| t.tables.clone()).unwrap_or_default();
        match tables.binary_search_by(|t| t.name.cmp(&table.name)) {
            Ok(i) => tables[i] = table,
            Err(i) => tables.insert(i, table),
        }
        map.insert(tenant.clone(), Arc::new(TenantTables { tables }));
    }

    /// Drops a table from its tenant's snapshot (the table was deleted);
    /// calls enriched from an older snapshot finish with it.
    fn remove(&self, tenant: &TenantId, name: &TableName) -> bool {
        let mut map = self.by_tenant.write().unwrap_or_else(|p| p.into_inner());
        let Some(current) = map.get(tenant) else {
            return false;
        };
        if !current.tables.iter().any(|t| &t.name == name) {
            return false;
        }
        let tables = current
            .tables
            .iter()
            .filter(|t| &t.name != name)
            .cloned()
            .collect();
        map.insert(tenant.clone(), Arc::new(TenantTables { tables }));
        true
    }

    /// Every (tenant, table) held in memory.
    fn loaded_names(&self) -> Vec<(TenantId, TableName)> {
        let map = self.by_tenant.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .flat_map(|(tenant, t)| t.tables.iter().map(move |t| (tenant.clone(), t.name.clone())))
            .collect()
    }

    fn loaded_version(&self, tenant: &TenantId, name: &TableName) -> Option<(Option<String>, TableOptions)> {
        let snap = self.snapshot(tenant);
        snap.tables
            .iter()
            .find(|t| &t.name == name)
            .map(|t| (t.version.clone(), t.options.clone()))
    }

    pub fn total_heap_bytes(&self) -> usize {
        let map = self.by_tenant.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .flat_map(|t| t.tables.iter())
            .filter_map(|t| t.index.as_ref().map(|i| i.heap_bytes()))
            .sum()
    }
}

/// Held from before a version is recorded until it is installed: a refresh
/// (woken by the activation's own NOTIFY, or by its timer) waits, then finds
/// memory up to date, instead of loading the same version a second time and
/// holding up the install meanwhile.
pub async fn hold_installs(services: &Services) -> tokio::sync::MutexGuard<'_, ()> {
    services.tables.install.lock().await
}

/// Installs a version just activated by this process, unless the store says
/// another one became active since (then the next refresh installs that one).
/// `_held`: from [`hold_installs`], taken before the version was recorded.
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, version = version.unwrap_or_default()))]
pub async fn install(
    services: &Services,
    _held: &tokio::sync::MutexGuard<'_, ()>,
    tenant: &TenantId,
    name: &TableName,
    options: &TableOptions,
    version: Option<&str>,
    index: Option<Arc<TableIndex>>,
) -> Result<(), AppError> {
    let current = services.store.table(tenant, name).await?;
    if current.active_version.as_deref() != version {
        return Ok(());
    }
    let created_ms = match version {
        Some(id) => Some(services.store.version(tenant, id).await?.created_ms),
        None => None,
    };
    services.metrics.active_version(tenant, name.as_str(), created_ms);
    services.tables.put(
        tenant,
        LoadedTable {
            name: name.clone(),
            options: options.clone(),
            version: version.map(str::to_string),
            index,
        },
    );
    Ok(())
}

/// Drops a deleted table from this node's memory at once (the other nodes
/// drop it at their next refresh: at once on PostgreSQL, told by the
/// deletion's NOTIFY).
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name))]
pub async fn forget(services: &Services, tenant: &TenantId, name: &TableName) {
    let _guard = services.tables.install.lock().await;
    services.tables.remove(tenant, name);
    services.tables.past.forget_table(tenant, name);
    services.metrics.active_version(tenant, name.as_str(), None);
}

/// Brings the in-memory versions in line with the store: tables the store
/// no longer has are dropped, the others hold their active version.
/// Returns how many tables changed.
#[tracing::instrument(skip_all)]
pub async fn refresh(services: &Services) -> Result<usize, AppError> {
    let _guard = services.tables.install.lock().await;
    let states = services.store.table_states().await?;
    let mut changed = 0;
    let stored: std::collections::HashSet<(&TenantId, &TableName)> =
        states.iter().map(|s| (&s.tenant, &s.name)).collect();
    for (tenant, name) in services.tables.loaded_names() {
        if !stored.contains(&(&tenant, &name)) && services.tables.remove(&tenant, &name) {
            services.tables.past.forget_table(&tenant, &name);
            services.metrics.active_version(&tenant, name.as_str(), None);
            tracing::info!(tenant = %tenant, table = %name, "a deleted table is dropped from memory");
            changed += 1;
        }
    }
    for state in states {
        let loaded = services.tables.loaded_version(&state.tenant, &state.name);
        let up_to_date = matches!(&loaded, Some((v, o)) if *v == state.active_version && *o == state.options);
        if up_to_date {
            continue;
        }
        match load(services, &state).await {
            Ok((index, created_ms)) => {
                services
                    .metrics
                    .active_version(&state.tenant, state.name.as_str(), created_ms);
                services.tables.put(
                    &state.tenant,
                    LoadedTable {
                        name: state.name.clone(),
                        options: state.options.clone(),
                        version: state.active_version.clone(),
                        index,
                    },
                );
                changed += 1;
            }
            Err(e) => {
                tracing::error!(tenant = %state.tenant, table = %state.name,
                    version = state.active_version.as_deref().unwrap_or(""), error = %e,
                    "could not load the active version; keeping the previous one");
            }
        }
    }
    Ok(changed)
}

/// The active version's index and creation time (none without one).
async fn load(
    services: &Services,
    state: &TableState,
) -> Result<(Option<Arc<TableIndex>>, Option<i64>), AppError> {
    let Some(version_id) = &state.active_version else {
        return Ok((None, None));
    };
    let version = services.store.version(&state.tenant, version_id).await?;
    let bytes = services.blobs.get(&version.blob_key).await?;
    // Parsed from a spool file, like an upload, so the original's bytes are
    // not held next to the index being built.
    let upload = Received::from_stored(services, bytes).await?;
    let (index, report) = tables::ingest(services, &version.options, Arc::new(upload), None).await?;
    match index {
        Some(index) => Ok((Some(index), Some(version.created_ms))),
        None => Err(AppError::Unexpected(anyhow::anyhow!(
            "stored version {version_id} no longer ingests: {}",
            report.error.as_deref().unwrap_or("rejected")
        ))),
    }
}
