//! Background work that must outlive the node doing it: an upload being
//! ingested, a SIPREC call being recorded, a back-fill. Each is a row of the
//! store's `jobs` table, leased to one node. While a node works on a job it
//! holds it ([`Held`]); one task per node renews the leases of everything it
//! holds in one statement every third of the lease. When the work is done its
//! row is deleted. A job whose lease ran out was left by a node that stopped
//! (or by work that was abandoned, its `Held` dropped): every node looks for
//! such jobs ([`claim_stale`]) and exactly one gets each and finishes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{AppError, Services};
use crate::clock::Clock;
use crate::store::{Job, JobKind, Store, StoreError, TenantId};

/// The jobs this node works on, whose leases it renews.
#[derive(Default)]
pub struct Leases {
    /// Job id → how many holders (a job is normally held once).
    held: Mutex<HashMap<String, usize>>,
    renewer_started: AtomicBool,
}

impl Leases {
    fn ids(&self) -> Vec<String> {
        self.held
            .lock()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// This node works on a job: its lease is renewed until this is dropped.
/// Dropping it does not delete the job; [`done`] does.
#[must_use = "the lease is renewed only while this is held"]
pub struct Held {
    leases: Arc<Leases>,
    id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = self.leases.held.lock()
            && let Some(n) = held.get_mut(&self.id)
        {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.id);
            }
        }
    }
}

fn hold(services: &Services, id: &str) -> Held {
    if let Ok(mut held) = services.leases.held.lock() {
        *held.entry(id.to_string()).or_insert(0) += 1;
    }
    if !services.leases.renewer_started.swap(true, Ordering::SeqCst) {
        tokio::spawn(renew(
            services.store.clone(),
            services.node.clone(),
            services.job_lease_ms,
            Arc::downgrade(&services.leases),
            services.clock.clone(),
        ));
    }
    Held {
        leases: services.leases.clone(),
        id: id.to_string(),
    }
}

/// Renews the leases of the jobs held, every third of the lease, until the
/// services are gone.
async fn renew(
    store: Arc<dyn Store>,
    node: String,
    lease_ms: u64,
    leases: Weak<Leases>,
    clock: Arc<dyn Clock>,
) {
    let every = std::time::Duration::from_millis((lease_ms / 3).max(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(leases) = leases.upgrade() else {
            return;
        };
        let ids = leases.ids();
        drop(leases);
        if ids.is_empty() {
            continue;
        }
        match store
            .renew_jobs(&node, &ids, clock.now_ms() + lease_ms as i64)
            .await
        {
            Ok(n) if n < ids.len() as u64 => {
                tracing::warn!(
                    held = ids.len(),
                    renewed = n,
                    "some jobs this node works on were taken over by another node"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, jobs = ids.len(), "renewing job leases failed; retrying"),
        }
    }
}

/// Records new work, leased to this node and held.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job = id, kind = kind.as_str()))]
pub async fn start(
    services: &Services,
    kind: JobKind,
    id: &str,
    tenant: &TenantId,
    payload: serde_json::Value,
) -> Result<Held, AppError> {
    let now = services.now_ms();
    let job = Job {
        id: id.to_string(),
        kind,
        tenant: tenant.clone(),
        created_ms: now,
        payload,
        owner: services.node.clone(),
        lease_until_ms: now + services.job_lease_ms as i64,
        attempts: 0,
    };
    // Held before it is written: the renewer never misses a written job.
    let held = hold(services, id);
    services.store.insert_job(&job).await?;
    Ok(held)
}

/// Claims the oldest job of `kind` that a stopped node left, if any.
#[tracing::instrument(skip_all, fields(kind = kind.as_str()))]
pub async fn claim_stale(services: &Services, kind: JobKind) -> Result<Option<(Job, Held)>, AppError> {
    let now = services.now_ms();
    let job = services
        .store
        .claim_stale_job(kind, &services.node, now, now + services.job_lease_ms as i64)
        .await?;
    Ok(job.map(|job| {
        let held = hold(services, &job.id);
        (job, held)
    }))
}

/// Claims up to `limit` of the oldest jobs of `kind` whose lease ran out
/// (a batch of due webhook deliveries), in one statement.
#[tracing::instrument(skip_all, fields(kind = kind.as_str()))]
pub async fn claim_stale_batch(
    services: &Services,
    kind: JobKind,
    limit: u32,
) -> Result<Vec<(Job, Held)>, AppError> {
    let now = services.now_ms();
    let jobs = services
        .store
        .claim_stale_jobs(
            kind,
            &services.node,
            now,
            now + services.job_lease_ms as i64,
            limit,
        )
        .await?;
    Ok(jobs
        .into_iter()
        .map(|job| {
            let held = hold(services, &job.id);
            (job, held)
        })
        .collect())
}

/// Claims one job if this node's name already holds it (it was this node
/// before a restart) or its lease ran out; `None` if it is finished or
/// another node works on it.
#[tracing::instrument(skip_all, fields(job = id))]
pub async fn take(services: &Services, id: &str) -> Result<Option<(Job, Held)>, AppError> {
    let now = services.now_ms();
    let job = services
        .store
        .take_job(id, &services.node, now, now + services.job_lease_ms as i64)
        .await?;
    Ok(job.map(|job| {
        let held = hold(services, &job.id);
        (job, held)
    }))
}

/// Records the progress of work done in steps; `Conflict` if another node
/// took the job over meanwhile (this node's lease had run out).
#[tracing::instrument(skip_all, fields(job = %held.id))]
pub async fn checkpoint(
    services: &Services,
    held: &Held,
    payload: &serde_json::Value,
) -> Result<(), AppError> {
    match services.store.update_job(&held.id, &services.node, payload).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(AppError::Conflict(format!(
            "job {} was taken over by another node",
            held.id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The work is done (or given up): the job is forgotten.
#[tracing::instrument(skip_all, fields(job = %held.id))]
pub async fn done(services: &Services, held: Held) -> Result<(), AppError> {
    services.store.delete_job(&held.id).await?;
    Ok(())
}
