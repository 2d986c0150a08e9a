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
use crate::store::{StoreError, TenantId};

/// Erases a call: its audio and any recording parts from blob storage, then
/// the call itself, its index entries, its job and the webhook deliveries
/// about it still waiting (one store transaction); then tells the
/// endpoints subscribed to `call.erased`. `NotFound` if the tenant has no
/// such call.
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
pub async fn erase_call(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    actor: &Actor,
) -> Result<(), AppError> {
    let call = calls::get_call(services, tenant, unique_id).await?;
    if erase_stored_call(services, tenant, &call.unique_id, call.audio_key.as_deref()).await? {
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
        // Recorded after the erasure, which dropped the deliveries about the
        // call still waiting; this one carries its id only.
        super::webhooks::call_erased(services, tenant, unique_id).await;
    }
    Ok(())
}

/// Erases a call known to the caller (a request, or retention): its blobs,
/// then its rows. False if the call was gone by the time its rows were
/// deleted.
pub(crate) async fn erase_stored_call(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
    audio_key: Option<&str>,
) -> Result<bool, AppError> {
    if let Some(key) = audio_key {
        services.blobs.delete(key).await?;
    }
    services
        .blobs
        .delete_prefix(&recordings::parts_prefix(tenant, unique_id))
        .await?;
    let erased = services.store.erase_call(tenant, unique_id).await?;
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
