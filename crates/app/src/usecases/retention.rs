//! A tenant's retention policy and the job that applies it.
//!
//! The policy says how long what the tenant stores is kept: a call's audio
//! (`audio_days`, counted from the call's time; the call keeps its metadata
//! and says its audio was pruned), the call itself (`calls_days`; erased as
//! on request), a rejected upload's original (`rejected_uploads_days`,
//! from the upload) and how many versions of each table (`versions_kept`,
//! newest first; the active version is always kept, whatever its age or
//! rank). Each is optional: absent keeps forever.
//!
//! A tenant with a policy has one job of kind `retention` (its id
//! [`job_id`]). While no node runs it, its lease holds the time of its next
//! run; every node claims due ones ([`run_due`]), and exactly one gets each.
//! A run applies the policy as of the clock's now, then hands the job back
//! for [`RUN_EVERY_MS`] later with what it removed, which the policy's view
//! shows. Setting a policy makes its job due at once.
//!
//! What is removed goes in the order that never leaves a record pointing at
//! nothing a reader needs: a call's audio blob before its record says
//! `pruned` (a failure leaves the call as it was, for the next run); a
//! version's record before its original (the statement refuses the active
//! version, so an original is removed only once nothing can load it).

use serde::{Deserialize, Serialize};

use super::{AppError, Services, erasure, jobs};
use crate::store::{Job, JobKind, RetentionPolicy, TenantId};

/// How often a tenant's policy is applied.
pub const RUN_EVERY_MS: i64 = 3_600_000;
/// After a run that failed (the store or blob storage did not answer), the
/// next attempt.
const RETRY_AFTER_MS: i64 = 300_000;
const DAY_MS: i64 = 86_400_000;
/// Calls read and removed per statement.
const BATCH: u32 = 500;
/// The bounds of a policy's numbers: days up to 100 years, versions up to
/// this many per table.
pub const MAX_DAYS: u32 = 36_500;
pub const MAX_VERSIONS_KEPT: u32 = 100_000;

/// The id of a tenant's retention job.
pub fn job_id(tenant: &TenantId) -> String {
    format!("retention-{tenant}")
}

/// A policy as asked for: each number optional (keep forever), checked by
/// [`put_policy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    pub audio_days: Option<i64>,
    pub calls_days: Option<i64>,
    pub rejected_uploads_days: Option<i64>,
    pub versions_kept: Option<i64>,
}

/// What one run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// When it ran (the clock's now).
    pub at_ms: i64,
    pub audio_pruned: u64,
    pub calls_erased: u64,
    pub rejected_originals_removed: u64,
    pub versions_removed: u64,
    /// Why the run stopped early, if it did (the rest waits for the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the job's payload holds between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Payload {
    #[serde(default)]
    last_run: Option<RunReport>,
}

/// A tenant's policy with its job's schedule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyStatus {
    /// The policy (all `None` and `updated_ms` 0 when the tenant set none).
    pub policy: RetentionPolicy,
    pub set: bool,
    /// When the policy is next applied; `None` while a node applies it (or
    /// without a policy).
    pub next_run_ms: Option<i64>,
    pub last_run: Option<RunReport>,
}

fn check(field: &str, value: Option<i64>, max: u32, unit: &str) -> Result<Option<u32>, AppError> {
    match value {
        None => Ok(None),
        Some(n) if (1..=i64::from(max)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(AppError::invalid(
            field,
            format!(
                "{field} must be a whole number of {unit} from 1 to {max}, or null to keep forever; not {n}"
            ),
        )),
    }
}

/// Replaces the tenant's policy (a number left out keeps forever) and makes
/// its job due at once.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn put_policy(
    services: &Services,
    tenant: &TenantId,
    request: PolicyRequest,
    actor: &super::audit::Actor,
) -> Result<PolicyStatus, AppError> {
    let now = services.now_ms();
    let policy = RetentionPolicy {
        audio_days: check("audio_days", request.audio_days, MAX_DAYS, "days")?,
        calls_days: check("calls_days", request.calls_days, MAX_DAYS, "days")?,
        rejected_uploads_days: check(
            "rejected_uploads_days",
            request.rejected_uploads_days,
            MAX_DAYS,
            "days",
        )?,
        versions_kept: check(
            "versions_kept",
            request.versions_kept,
            MAX_VERSIONS_KEPT,
            "versions",
        )?,
        updated_ms: now,
    };
    let job = Job {
        id: job_id(tenant),
        kind: JobKind::Retention,
        tenant: tenant.clone(),
        created_ms: now,
        payload: serde_json::to_value(Payload::default()).unwrap_or_default(),
        owner: String::new(),
        // Due now: a lease that already ran out.
        lease_until_ms: now - 1,
        attempts: 0,
    };
    services.store.put_retention_policy(tenant, &policy, &job).await?;
    tracing::info!(?policy, "retention policy set");
    let detail = serde_json::json!({
        "audio_days": policy.audio_days,
        "calls_days": policy.calls_days,
        "rejected_uploads_days": policy.rejected_uploads_days,
        "versions_kept": policy.versions_kept,
    });
    super::audit::record(
        services,
        tenant,
        actor,
        super::audit::actions::RETENTION_SETTINGS,
        "retention".to_string(),
        detail,
    )
    .await;
    policy_status(services, tenant).await
}

/// The tenant's policy, when it is next applied and what its last run removed.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn policy_status(services: &Services, tenant: &TenantId) -> Result<PolicyStatus, AppError> {
    let Some(policy) = services.store.retention_policy(tenant).await? else {
        return Ok(PolicyStatus::default());
    };
    let job = services.store.job(&job_id(tenant)).await?;
    let (next_run_ms, last_run) = match job {
        Some(job) => {
            let payload: Payload = serde_json::from_value(job.payload).unwrap_or_default();
            let next = job
                .owner
                .is_empty()
                .then_some(job.lease_until_ms.max(policy.updated_ms));
            (next, payload.last_run)
        }
        None => (None, None),
    };
    Ok(PolicyStatus {
        policy,
        set: true,
        next_run_ms,
        last_run,
    })
}

/// Applies the policies whose run is due (of every tenant), each on this
/// node only; returns how many ran.
#[tracing::instrument(skip_all)]
pub async fn run_due(services: &Services) -> Result<usize, AppError> {
    let mut ran = 0;
    loop {
        let claimed = jobs::claim_stale_batch(services, JobKind::Retention, 4).await?;
        if claimed.is_empty() {
            return Ok(ran);
        }
        for (job, held) in claimed {
            let Some(policy) = services.store.retention_policy(&job.tenant).await? else {
                jobs::done(services, held).await?;
                continue;
            };
            let report = apply(services, &job.tenant, &policy).await;
            if report.audio_pruned
                + report.calls_erased
                + report.rejected_originals_removed
                + report.versions_removed
                > 0
            {
                super::audit::record(
                    services,
                    &job.tenant,
                    &super::audit::Actor::system(),
                    super::audit::actions::RETENTION_RUN,
                    "retention".to_string(),
                    serde_json::to_value(&report).unwrap_or_default(),
                )
                .await;
            }
            let next = services.now_ms()
                + if report.error.is_some() {
                    RETRY_AFTER_MS
                } else {
                    RUN_EVERY_MS
                };
            let payload = serde_json::to_value(Payload {
                last_run: Some(report),
            })
            .unwrap_or_default();
            // Released first, so the lease renewer no longer extends it.
            drop(held);
            services
                .store
                .reschedule_job(&job.id, &services.node, &payload, next)
                .await?;
            ran += 1;
        }
    }
}

/// Applies a policy as of now: what it removed, and why it stopped early if
/// it did.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn apply(services: &Services, tenant: &TenantId, policy: &RetentionPolicy) -> RunReport {
    let mut report = RunReport {
        at_ms: services.now_ms(),
        ..RunReport::default()
    };
    if let Err(e) = apply_into(services, tenant, policy, &mut report).await {
        tracing::warn!(error = %e, "applying the retention policy stopped; the next run goes on");
        report.error = Some(e.to_string());
    }
    tracing::info!(
        audio_pruned = report.audio_pruned,
        calls_erased = report.calls_erased,
        rejected_originals_removed = report.rejected_originals_removed,
        versions_removed = report.versions_removed,
        "retention policy applied"
    );
    report
}

fn cutoff(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days) * DAY_MS)
}

async fn apply_into(
    services: &Services,
    tenant: &TenantId,
    policy: &RetentionPolicy,
    report: &mut RunReport,
) -> Result<(), AppError> {
    let now = report.at_ms;
    // Calls first: a call erased needs no pruning of its audio.
    if let Some(days) = policy.calls_days {
        let before = cutoff(now, days);
        loop {
            let aged = services.store.aged_calls(tenant, before, false, BATCH).await?;
            for call in &aged {
                if erasure::erase_stored_call(
                    services,
                    tenant,
                    &call.unique_id,
                    call.audio_key.as_deref(),
                    &[],
                )
                .await?
                {
                    report.calls_erased += 1;
                }
            }
            if aged.len() < BATCH as usize {
                break;
            }
        }
    }
    if let Some(days) = policy.audio_days {
        let before = cutoff(now, days);
        loop {
            let aged = services.store.aged_calls(tenant, before, true, BATCH).await?;
            for call in &aged {
                if let Some(key) = &call.audio_key {
                    services.blobs.delete(key).await?;
                }
                services
                    .store
                    .mark_audio_pruned(tenant, &call.unique_id, now)
                    .await?;
                report.audio_pruned += 1;
            }
            if aged.len() < BATCH as usize {
                break;
            }
        }
    }
    if policy.rejected_uploads_days.is_none() && policy.versions_kept.is_none() {
        return Ok(());
    }
    let tables = services.store.tables_with_versions(tenant, None).await?;
    if let Some(days) = policy.rejected_uploads_days {
        let before = cutoff(now, days);
        for (_, versions) in &tables {
            for v in versions {
                if v.accepted || v.blob_key.is_empty() || v.created_ms >= before {
                    continue;
                }
                services.store.forget_original(tenant, &v.id).await?;
                services.blobs.delete(&v.blob_key).await?;
                report.rejected_originals_removed += 1;
            }
        }
    }
    if let Some(kept) = policy.versions_kept {
        for (table, versions) in &tables {
            // Newest first; the active version stays whatever its rank.
            for v in versions.iter().skip(kept as usize) {
                if table.active_version.as_deref() == Some(v.id.as_str()) {
                    continue;
                }
                if services.store.delete_version(tenant, &v.id).await? {
                    if !v.blob_key.is_empty() {
                        services.blobs.delete(&v.blob_key).await?;
                    }
                    report.versions_removed += 1;
                }
            }
        }
    }
    Ok(())
}
