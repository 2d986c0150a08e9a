//! Back-fill: the explicit, reported re-enrichment of past calls from the
//! versions active now. A new upload never rewrites past calls by itself;
//! this does, when asked, and a dry run says what it would change first.

use std::collections::BTreeMap;

use callmeta_core::enrich::EnrichmentResult;

use super::calls::enrich_now;
use super::{AppError, Services, now_ms};
use crate::store::{CallQuery, TenantId};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
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

const PAGE: u32 = 500;

/// Same outcome, ignoring when it was computed.
fn same(a: &[EnrichmentResult], b: &[EnrichmentResult]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            EnrichmentResult {
                at_ms: y.at_ms,
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

/// Re-enriches the tenant's calls matching `filter` (its limit and offset are
/// ignored) from the current snapshot of active versions.
pub async fn backfill(
    services: &Services,
    tenant: &TenantId,
    filter: &CallQuery,
    dry_run: bool,
) -> Result<BackfillReport, AppError> {
    let mut report = BackfillReport {
        dry_run,
        ..Default::default()
    };
    let mut query = CallQuery {
        limit: PAGE,
        offset: 0,
        ..filter.clone()
    };
    // The ids first: updating a call can move it in or out of a metadata
    // filter, which would shift the pages under a walk that updates as it goes.
    let mut ids = Vec::new();
    loop {
        let (_, calls) = services.store.list_calls(tenant, &query).await?;
        if calls.is_empty() {
            break;
        }
        query.offset += calls.len() as u64;
        ids.extend(calls.into_iter().map(|c| c.unique_id));
    }
    for id in ids {
        let mut call = match services.store.call(tenant, &id).await {
            Ok(call) => call,
            Err(crate::store::StoreError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        };
        report.examined += 1;
        let fresh = enrich_now(services, tenant, &call.metadata, now_ms());
        count(&mut report.before, &call.enrichment);
        count(&mut report.after, &fresh);
        if same(&call.enrichment, &fresh) {
            continue;
        }
        report.changed += 1;
        if !dry_run {
            call.enrichment = fresh;
            call.updated_ms = now_ms();
            services.store.update_call(tenant, &call).await?;
        }
    }
    tracing::info!(tenant = %tenant, dry_run, examined = report.examined, changed = report.changed, "back-fill");
    Ok(report)
}
