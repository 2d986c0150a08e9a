//! The process's Prometheus metrics: one [`Metrics`] value in `Services`,
//! counted by the use cases (calls, enrichment, uploads, ingest time, active
//! versions) and the adapters (HTTP requests, SIP calls, RTP packets), and
//! rendered by the HTTP adapter in the Prometheus text format (0.0.4).
//!
//! Counting costs an atomic add on a series found under a read lock
//! (`prometheus_client`'s `Family`): no write lock on the hot path once a
//! series exists. What is only known by asking (job queue depth, the age of
//! each active version) is read when the metrics are rendered.
//!
//! Tenant labels are bounded: the first `tenant_label_cap` tenants seen get
//! their own series (their id), every later one counts under
//! `tenant="other"`, and so do its tables (`table="other"`), since a
//! tenant names its tables freely.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use callmeta_core::enrich::EnrichmentResult;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{CallSource, JobKind, TenantId};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label of tenants past the cap.
pub const OTHER: &str = "other";
/// How many tenants get labels of their own unless configured.
pub const DEFAULT_TENANT_LABEL_CAP: usize = 100;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub source: &'static str,
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnrichmentLabels {
    pub table: String,
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    pub channel: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub tenant: String,
    pub table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template (`/api/v1/calls/{unique_id}`), never the
    /// raw path; `unmatched` for a path no route takes.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    tenant_cap: AtomicUsize,
    /// The tenants that have labels of their own.
    labelled: RwLock<HashSet<String>>,
    /// The creation time of each table's active version, for its age.
    active: Mutex<HashMap<TableLabels, i64>>,
    /// Serialises renders (they set the read-on-demand gauges first).
    render: Mutex<()>,
    calls_created: Family<CallLabels, Counter>,
    enrichment_results: Family<EnrichmentLabels, Counter>,
    uploads: Family<UploadLabels, Counter>,
    ingest_duration: Histogram,
    active_version_age: Family<TableLabels, Gauge>,
    /// SIPREC calls answered and not yet ended.
    pub sip_calls_in_progress: Gauge,
    /// RTP packets taken from a call's peer.
    pub rtp_packets_received: Counter,
    /// RTP packets missing from the sequence numbers received.
    pub rtp_packets_lost: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    jobs: Family<JobLabels, Gauge>,
    webhook_deliveries: Family<DeliveryLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let calls_created = Family::<CallLabels, Counter>::default();
        registry.register(
            "callmeta_calls_created",
            "Calls created, by source and tenant",
            calls_created.clone(),
        );
        let enrichment_results = Family::<EnrichmentLabels, Counter>::default();
        registry.register(
            "callmeta_enrichment_results",
            "Enrichment results of created calls, by table and status",
            enrichment_results.clone(),
        );
        let uploads = Family::<UploadLabels, Counter>::default();
        registry.register(
            "callmeta_uploads",
            "Table uploads, by channel and outcome (activated, not_activated, rejected, unchanged, failed)",
            uploads.clone(),
        );
        let ingest_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "callmeta_ingest_duration_seconds",
            "Time to parse and index an uploaded table version",
            ingest_duration.clone(),
        );
        let active_version_age = Family::<TableLabels, Gauge>::default();
        registry.register(
            "callmeta_active_version_age_seconds",
            "Age of each table's active version (the oldest, for tenant=\"other\")",
            active_version_age.clone(),
        );
        let sip_calls_in_progress = Gauge::default();
        registry.register(
            "callmeta_sip_calls_in_progress",
            "SIPREC calls answered by this node and not yet ended",
            sip_calls_in_progress.clone(),
        );
        let rtp_packets_received = Counter::default();
        registry.register(
            "callmeta_rtp_packets_received",
            "RTP packets received from call peers",
            rtp_packets_received.clone(),
        );
        let rtp_packets_lost = Counter::default();
        registry.register(
            "callmeta_rtp_packets_lost",
            "RTP packets missing from the sequence numbers received",
            rtp_packets_lost.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "callmeta_http_requests",
            "HTTP requests, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "callmeta_http_request_duration_seconds",
            "HTTP request latency, by route template",
            http_duration.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "callmeta_jobs",
            "Background jobs in the queue (held or waiting), by kind",
            jobs.clone(),
        );
        let webhook_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "callmeta_webhook_deliveries",
            "Webhook delivery attempts made by this node, by outcome (delivered, retrying, given_up)",
            webhook_deliveries.clone(),
        );
        Metrics {
            registry,
            tenant_cap: AtomicUsize::new(DEFAULT_TENANT_LABEL_CAP),
            labelled: RwLock::default(),
            active: Mutex::default(),
            render: Mutex::default(),
            calls_created,
            enrichment_results,
            uploads,
            ingest_duration,
            active_version_age,
            sip_calls_in_progress,
            rtp_packets_received,
            rtp_packets_lost,
            http_requests,
            http_duration,
            jobs,
            webhook_deliveries,
        }
    }

    /// A webhook delivery attempt: `delivered`, `retrying` (failed, tried
    /// again later) or `given_up` (failed, its retries over).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }

    /// How many tenants get labels of their own (`[metrics] tenant_label_cap`).
    pub fn set_tenant_cap(&self, cap: usize) {
        self.tenant_cap.store(cap, Ordering::Relaxed);
    }

    /// The tenant's label: its id while within the cap, else `other`.
    pub fn tenant_label(&self, tenant: &TenantId) -> String {
        {
            let labelled = self.labelled.read().unwrap_or_else(|p| p.into_inner());
            if labelled.contains(&tenant.0) {
                return tenant.0.clone();
            }
            if labelled.len() >= self.tenant_cap.load(Ordering::Relaxed) {
                return OTHER.to_string();
            }
        }
        let mut labelled = self.labelled.write().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(&tenant.0) || labelled.len() < self.tenant_cap.load(Ordering::Relaxed) {
            labelled.insert(tenant.0.clone());
            tenant.0.clone()
        } else {
            OTHER.to_string()
        }
    }

    /// A table's label: its name, for a tenant within the cap.
    fn table_label(tenant_label: &str, table: &str) -> String {
        if tenant_label == OTHER {
            OTHER.to_string()
        } else {
            table.to_string()
        }
    }

    /// A call was created, with these enrichment results.
    pub fn call_created(&self, tenant: &TenantId, source: CallSource, results: &[EnrichmentResult]) {
        let tenant = self.tenant_label(tenant);
        for r in results {
            self.enrichment_results
                .get_or_create(&EnrichmentLabels {
                    table: Self::table_label(&tenant, &r.table),
                    status: r.status.as_str(),
                })
                .inc();
        }
        self.calls_created
            .get_or_create(&CallLabels {
                source: source.as_str(),
                tenant,
            })
            .inc();
    }

    pub fn upload(&self, channel: &'static str, outcome: &'static str) {
        self.uploads
            .get_or_create(&UploadLabels { channel, outcome })
            .inc();
    }

    pub fn ingest_took(&self, ms: i64) {
        self.ingest_duration.observe(ms.max(0) as f64 / 1000.0);
    }

    /// A table's active version, created at `created_ms`; `None`: none.
    pub fn active_version(&self, tenant: &TenantId, table: &str, created_ms: Option<i64>) {
        let tenant = self.tenant_label(tenant);
        let key = TableLabels {
            table: Self::table_label(&tenant, table),
            tenant,
        };
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        match created_ms {
            Some(at) if key.tenant == OTHER => {
                // The oldest of the unlabelled tenants' versions (an
                // approximation: a replaced one is not forgotten).
                let entry = active.entry(key).or_insert(at);
                *entry = (*entry).min(at);
            }
            Some(at) => {
                active.insert(key, at);
            }
            None if key.tenant != OTHER => {
                active.remove(&key);
            }
            None => {}
        }
    }

    /// An HTTP request answered: `route` is the matched template.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The metrics in the Prometheus text format ([`CONTENT_TYPE`]), with
    /// the gauges read on demand set from `now_ms` and the job queue depth
    /// `jobs` (`None`: unknown, the last values stay).
    pub fn render(&self, now_ms: i64, jobs: Option<&[(JobKind, u64)]>) -> String {
        let _one = self.render.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(jobs) = jobs {
            for kind in JobKind::ALL {
                let n = jobs.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
                self.jobs
                    .get_or_create(&JobLabels { kind: kind.as_str() })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.active_version_age.clear();
        {
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            for (labels, created_ms) in active.iter() {
                self.active_version_age
                    .get_or_create(labels)
                    .set((now_ms - created_ms).max(0) / 1000);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics");
        }
        out
    }
}

/// The process's metrics as text, the job queue depth read from the store
/// (left as last read if the store does not answer).
pub async fn render(services: &crate::usecases::Services) -> String {
    let jobs = match services.store.job_counts().await {
        Ok(jobs) => Some(jobs),
        Err(e) => {
            tracing::warn!(error = %e, "counting jobs for the metrics failed");
            None
        }
    };
    services.metrics.render(services.now_ms(), jobs.as_deref())
}
