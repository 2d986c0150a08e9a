//! Erasure on request: a call with its audio, its recording's parts and its
//! job; a table with its versions, their originals and its place in every
//! node's memory.
//!
//! Blob storage is emptied before the store forgets what pointed at it: if
//! removing a blob fails, the request fails with the call (or table) still
//! there, and asking again finishes the work. The other order could leave
//! blobs nothing names any more, which no retry would find.

use callmeta_core::domain::TableName;

use super::audit::{self, Actor, actions};
use super::{AppError, Services, active_tables, calls, recordings, tables};
use crate::store::{Job, StoreError, TenantId};

/// Erases a call: its audio and any recording parts from blob storage, then
/// the call itself, its index entries, its job and the webhook deliveries
/// about it still waiting, with the `call.erased` deliveries to the
/// endpoints subscribed to it (one store transaction: the erasure and its
/// event commit together). `NotFound` if the tenant has no such call.
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
pub async fn erase_call(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    actor: &Actor,
) -> Result<(), AppError> {
    let call = calls::get_call(services, tenant, unique_id).await?;
    let event = super::webhooks::call_erased(services, tenant, &call.unique_id).await?;
    let audio = call.audio_key.as_deref();
    if erase_stored_call(services, tenant, &call.unique_id, audio, &event).await? {
        if !event.is_empty() {
            super::webhooks::jobs_written(services);
        }
        let detail = serde_json::json!({"had_audio": call.audio_key.is_some()});
        audit::record(
            services,
            tenant,
            actor,
            actions::CALL_ERASE,
            format!("calls/{unique_id}"),
            detail,
        )
        .await;
    }
    Ok(())
}

/// Erases a call known to the caller (a request, or retention): its blobs,
/// then its rows, with the event jobs `jobs` in the same transaction. False
/// (and no job written) if the call was gone by the time its rows were
/// deleted.
pub(crate) async fn erase_stored_call(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    audio_key: Option<&str>,
    jobs: &[Job],
) -> Result<bool, AppError> {
    if let Some(key) = audio_key {
        services.blobs.delete(key).await?;
    }
    services
        .blobs
        .delete_prefix(&recordings::parts_prefix(tenant, unique_id))
        .await?;
    let erased = services.store.erase_call(tenant, unique_id, jobs).await?;
    if erased {
        tracing::info!("call erased");
    }
    Ok(erased)
}

/// Deletes a table: the originals of its versions from blob storage, then
/// the table, its versions, its activations and its pending uploads (one
/// store transaction, announced to the other nodes), then its index from
/// this node's memory. Calls keep their results, which name the table and
/// version they came from. `NotFound` if the tenant has no such table.
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name))]
pub async fn delete_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    actor: &Actor,
) -> Result<(), AppError> {
    let not_found = || AppError::NotFound(format!("table {name}"));
    match services.store.table(tenant, name).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    }
    services
        .blobs
        .delete_prefix(&tables::originals_prefix(tenant, name))
        .await?;
    match services.store.delete_table(tenant, name).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    }
    active_tables::forget(services, tenant, name).await;
    audit::record(
        services,
        tenant,
        actor,
        actions::TABLE_DELETE,
        format!("tables/{name}"),
        serde_json::json!({}),
    )
    .await;
    tracing::info!("table deleted");
    Ok(())
}
