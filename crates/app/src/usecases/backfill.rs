//! Back-fill: the explicit, reported re-enrichment of past calls from the
//! versions active now (or, for a table with `"as_of": "call_time"`, from
//! the version active at each call's timestamp, so a later upload changes
//! nothing there). A new upload never rewrites past calls by itself;
//! this does, when asked, and a dry run says what it would change first.
//!
//! A back-fill is recorded (the `backfills` table: what was asked, its
//! report) and runs as a job ([`super::jobs`]) leased to the node that took
//! the request. It walks the matching calls newest first, a page at a time;
//! after each page the job's progress (the last call done and the report so
//! far) is saved. If the node stops, another claims the job and goes on from
//! the last saved page ([`resume_stale`]); calls of an interrupted page that
//! were already changed count again, as unchanged.

use std::collections::BTreeMap;

use callmeta_core::enrich::EnrichmentResult;

use super::calls::enrich_call;
use super::jobs::{self, Held};
use super::{AppError, Services, new_id};
use crate::store::{BackfillRecord, CallQuery, JobKind, KeyFilter, StoreError, TenantId};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackfillReport {
    pub dry_run: bool,
    /// Calls looked at (those matching the filters).
    pub examined: u64,
    /// Calls whose enrichment changed (or would change, in a dry run).
    pub changed: u64,
    /// Per table, how many examined calls had each status before and after.
    pub before: BTreeMap<String, BTreeMap<String, u64>>,
    pub after: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The calls a back-fill covers (a call list's filters, without paging).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackfillFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `metadata.KEY=VALUE` filters of one value each (as recorded before
    /// there were other forms).
    #[serde(default)]
    pub metadata: Vec<(String, String)>,
    /// The other filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<KeyFilter>,
}

impl BackfillFilter {
    pub fn of(query: &CallQuery) -> Self {
        let mut metadata = Vec::new();
        let mut filters = Vec::new();
        for f in &query.filters {
            match f {
                KeyFilter::Equals { key, values } if values.len() == 1 => {
                    metadata.push((key.clone(), values[0].clone()))
                }
                other => filters.push(other.clone()),
            }
        }
        Self {
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            metadata,
            filters,
        }
    }

    /// The filters of the calls it covers, as a list query takes them.
    pub fn key_filters(&self) -> Vec<KeyFilter> {
        self.metadata
            .iter()
            .map(|(key, value)| KeyFilter::Equals {
                key: key.clone(),
                values: vec![value.clone()],
            })
            .chain(self.filters.iter().cloned())
            .collect()
    }
}

/// A back-fill and where it stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Backfill {
    pub id: String,
    pub created_ms: i64,
    /// When it finished; `None` while it runs.
    pub finished_ms: Option<i64>,
    pub filter: BackfillFilter,
    /// So far, or final.
    pub report: BackfillReport,
}

/// The progress a back-fill's job holds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The last call done, in list order.
    after: Option<(i64, String)>,
    report: BackfillReport,
}

const PAGE: u32 = 500;

/// Same outcome, ignoring when it was computed and from which version (a
/// later upload whose row for the call is the same changes nothing), and
/// `matched_by` when one side has none (a result stored before results
/// named the key).
fn same(a: &[EnrichmentResult], b: &[EnrichmentResult]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let matched_by = match (&x.matched_by, &y.matched_by) {
                (None, _) | (_, None) => y.matched_by.clone(),
                (Some(m), _) => Some(m.clone()),
            };
            EnrichmentResult {
                at_ms: y.at_ms,
                version: y.version.clone(),
                matched_by,
                // Provenance: a result chosen the same way from other
                // words (a table switched to `call_time`) is not a change.
                as_of: y.as_of.clone(),
                ..x.clone()
            } == *y
        })
}

fn count(into: &mut BTreeMap<String, BTreeMap<String, u64>>, results: &[EnrichmentResult]) {
    for r in results {
        *into
            .entry(r.table.clone())
            .or_default()
            .entry(r.status.as_str().to_string())
            .or_default() += 1;
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn from_record(record: BackfillRecord) -> Result<Backfill, AppError> {
    let corrupt =
        |e: serde_json::Error| AppError::Unexpected(anyhow::anyhow!("back-fill {}: {e}", record.id));
    Ok(Backfill {
        filter: serde_json::from_value(record.filter.clone()).map_err(corrupt)?,
        report: serde_json::from_value(record.report.clone()).map_err(corrupt)?,
        id: record.id,
        created_ms: record.created_ms,
        finished_ms: record.finished_ms,
    })
}

/// Re-enriches the tenant's calls matching `filter` (its limit and offset are
/// ignored) from the current snapshot of active versions; returns when done.
#[tracing::instrument(skip_all, fields(tenant = %tenant, backfill = tracing::field::Empty, dry_run = dry_run))]
pub async fn backfill(
    services: &Services,
    tenant: &TenantId,
    filter: &CallQuery,
    dry_run: bool,
    actor: &super::audit::Actor,
) -> Result<Backfill, AppError> {
    // Only its filters count: a back-fill walks every page.
    super::calls::check_query(&CallQuery {
        limit: 1,
        offset: 0,
        ..filter.clone()
    })?;
    let now = services.now_ms();
    let report = BackfillReport {
        dry_run,
        ..Default::default()
    };
    let record = BackfillRecord {
        id: new_id(),
        tenant: tenant.clone(),
        created_ms: now,
        updated_ms: now,
        finished_ms: None,
        dry_run,
        filter: to_json(&BackfillFilter::of(filter)),
        report: to_json(&report),
    };
    tracing::Span::current().record("backfill", record.id.as_str());
    services.store.insert_backfill(&record).await?;
    let detail = serde_json::json!({"dry_run": dry_run, "filter": &record.filter});
    let object = format!("backfills/{}", record.id);
    super::audit::record(
        services,
        tenant,
        actor,
        super::audit::actions::BACKFILL,
        object,
        detail,
    )
    .await;
    let progress = Progress { after: None, report };
    let held = jobs::start(
        services,
        JobKind::Backfill,
        &record.id,
        tenant,
        to_json(&progress),
    )
    .await?;
    run(services, from_record(record)?, tenant, progress, held).await
}

/// A back-fill of the tenant's.
#[tracing::instrument(skip_all, fields(tenant = %tenant, backfill = id))]
pub async fn get(services: &Services, tenant: &TenantId, id: &str) -> Result<Backfill, AppError> {
    match services.store.backfill(tenant, id).await {
        Ok(record) => from_record(record),
        Err(StoreError::NotFound) => Err(AppError::NotFound(format!("back-fill {id}"))),
        Err(e) => Err(e.into()),
    }
}

/// The tenant's latest back-fills, newest first.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list(services: &Services, tenant: &TenantId, limit: u32) -> Result<Vec<Backfill>, AppError> {
    services
        .store
        .backfills(tenant, limit)
        .await?
        .into_iter()
        .map(from_record)
        .collect()
}

/// Goes on with the back-fills whose node stopped, from their last saved
/// page; each is claimed by exactly one node. Returns how many finished.
#[tracing::instrument(skip_all)]
pub async fn resume_stale(services: &Services) -> Result<usize, AppError> {
    let mut finished = 0;
    while let Some((job, held)) = jobs::claim_stale(services, JobKind::Backfill).await? {
        let record = match services.store.backfill(&job.tenant, &job.id).await {
            Ok(record) => record,
            Err(StoreError::NotFound) => {
                tracing::warn!(job = %job.id, "a back-fill's job has no back-fill; dropped");
                jobs::done(services, held).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let progress: Progress = serde_json::from_value(job.payload.clone()).unwrap_or_else(|e| {
            tracing::warn!(job = %job.id, error = %e, "a back-fill's progress is unreadable; it starts over");
            Progress {
                after: None,
                report: BackfillReport {
                    dry_run: record.dry_run,
                    ..Default::default()
                },
            }
        });
        let backfill = from_record(record)?;
        tracing::info!(tenant = %job.tenant, backfill = %job.id, examined = progress.report.examined,
            attempts = job.attempts, "resuming a back-fill left by a node that stopped");
        run(services, backfill, &job.tenant, progress, held).await?;
        finished += 1;
    }
    Ok(finished)
}

/// Walks the calls after `progress`, saving it after each page.
#[tracing::instrument(skip_all, fields(tenant = %tenant, backfill = %backfill.id))]
async fn run(
    services: &Services,
    mut backfill: Backfill,
    tenant: &TenantId,
    mut progress: Progress,
    held: Held,
) -> Result<Backfill, AppError> {
    let dry_run = progress.report.dry_run;
    let mut query = CallQuery {
        limit: PAGE,
        offset: 0,
        from_ms: backfill.filter.from_ms,
        to_ms: backfill.filter.to_ms,
        filters: backfill.filter.key_filters(),
        after: progress.after.clone(),
        cursor: None,
        uncounted: true,
    };
    loop {
        let calls = services.store.list_calls(tenant, &query).await?.calls;
        let Some(last) = calls.last() else {
            break;
        };
        query.after = Some((last.timestamp_ms, last.unique_id.clone()));
        let report = &mut progress.report;
        for mut call in calls {
            report.examined += 1;
            let fresh = enrich_call(
                services,
                tenant,
                &call.metadata,
                services.now_ms(),
                call.timestamp_ms,
            )
            .await;
            count(&mut report.before, &call.enrichment);
            count(&mut report.after, &fresh);
            if same(&call.enrichment, &fresh) {
                continue;
            }
            report.changed += 1;
            if !dry_run {
                call.enrichment = fresh;
                call.updated_ms = services.now_ms();
                let events = super::webhooks::call_updated(services, tenant, &call).await?;
                services.store.update_call(tenant, &call, &events).await?;
                if !events.is_empty() {
                    super::webhooks::jobs_written(services);
                }
            }
        }
        progress.after = query.after.clone();
        jobs::checkpoint(services, &held, &to_json(&progress)).await?;
        save(services, tenant, &backfill, &progress.report, None).await?;
    }
    let finished = services.now_ms();
    save(services, tenant, &backfill, &progress.report, Some(finished)).await?;
    jobs::done(services, held).await?;
    backfill.report = progress.report;
    backfill.finished_ms = Some(finished);
    tracing::info!(tenant = %tenant, backfill = %backfill.id, dry_run, examined = backfill.report.examined,
        changed = backfill.report.changed, "back-fill");
    Ok(backfill)
}

async fn save(
    services: &Services,
    tenant: &TenantId,
    backfill: &Backfill,
    report: &BackfillReport,
    finished_ms: Option<i64>,
) -> Result<(), AppError> {
    let record = BackfillRecord {
        id: backfill.id.clone(),
        tenant: tenant.clone(),
        created_ms: backfill.created_ms,
        updated_ms: services.now_ms(),
        finished_ms,
        dry_run: report.dry_run,
        filter: to_json(&backfill.filter),
        report: to_json(report),
    };
    services.store.update_backfill(&record).await?;
    Ok(())
}
