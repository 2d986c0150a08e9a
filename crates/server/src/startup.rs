//! Wiring: open the store and blob storage, load the active versions, bind the
//! listeners. Production (`callmeta serve`) and the integration tests start
//! the application the same way: `App::build(config, clock)` then `run_until`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::config::Config;
use callmeta_app::blobs::s3::S3Blobs;
use callmeta_app::blobs::{BlobStore, LocalBlobs};
use callmeta_app::clock::Clock;
use callmeta_app::store::Store;
use callmeta_app::usecases::{Services, active_tables, backfill, retention, tables, uploads};
use callmeta_filedrop::dropbox::Dropbox;
use callmeta_filedrop::ftp::FtpServer;
use callmeta_filedrop::keys;
use callmeta_filedrop::sftp::SftpServer;
use callmeta_filedrop::tree::DropTree;
use callmeta_sip::SipServer;
use callmeta_store::SqlStore;

/// Opens the configured store and blob storage and loads the active versions;
/// every use case takes its time from `clock`.
pub async fn open_services(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Services>> {
    open_services_as(config, None, clock).await
}

/// This server's name in job leases, kept in `<data dir>/node` so that a
/// restarted server takes its own unfinished work back at once.
fn node_name(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let name = callmeta_app::usecases::new_id();
    std::fs::write(&path, format!("{name}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(name)
}

/// [`open_services`] with a name in job leases (`None`: a random one).
pub async fn open_services_as(
    config: &Config,
    node: Option<String>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Services>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = match config.database.as_deref().filter(|s| !s.is_empty()) {
        None => Arc::new(
            SqlStore::open_sqlite(&config.sqlite_path())
                .await
                .with_context(|| format!("opening {}", config.sqlite_path().display()))?,
        ),
        Some(url)
            if url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://") =>
        {
            Arc::new(
                callmeta_store::open(url)
                    .await
                    .with_context(|| format!("opening {}", crate::config::redact_url(url)))?,
            )
        }
        Some(url) => bail!(
            "unsupported database URL {}: expected sqlite:PATH or postgres://...",
            crate::config::redact_url(url)
        ),
    };
    let blobs: Arc<dyn BlobStore> = match config.blobs.as_deref().filter(|s| !s.is_empty()) {
        None => Arc::new(LocalBlobs::new(config.data_dir.join("blobs"))),
        Some(url) => match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => Arc::new(LocalBlobs::new(path)),
            _ if url.starts_with("s3://") => Arc::new(
                S3Blobs::new(url, &config.s3).with_context(|| format!("opening blob storage {url}"))?,
            ),
            _ => bail!("unsupported blob storage URL {url}: expected file:///absolute/path or s3://bucket"),
        },
    };
    let services = Services::for_node(
        store,
        blobs,
        config.limits.clone(),
        config.job_lease_ms,
        node,
        config.uploads.clone(),
        config.data_dir.join("spool"),
        clock,
    );
    services.logins.configure(config.logins.clone());
    services.metrics.set_tenant_cap(config.metrics.tenant_label_cap);
    services.webhooks.configure(config.webhooks.clone());
    let loaded = active_tables::refresh(&services)
        .await
        .context("loading the active versions")?;
    tracing::info!(tables = loaded, "active versions loaded");
    Ok(services)
}

pub struct App {
    pub services: Arc<Services>,
    http: TcpListener,
    http_addr: SocketAddr,
    /// `--metrics ADDR`: `/metrics` on a listener of its own.
    metrics: Option<(TcpListener, SocketAddr)>,
    ftp: FtpServer,
    ftp_addr: SocketAddr,
    sftp: SftpServer,
    sftp_addr: SocketAddr,
    sip: SipServer,
    sip_addr: SocketAddr,
    dropbox: Arc<Dropbox>,
    config: Config,
}

/// The FTP and SFTP servers over one drop tree in the data dir.
async fn bind_file_drop(
    config: &Config,
    services: &Arc<Services>,
) -> anyhow::Result<(FtpServer, SftpServer, Arc<Dropbox>)> {
    let tree = DropTree::new(config.data_dir.join("drop"));
    std::fs::create_dir_all(tree.root())
        .with_context(|| format!("creating the drop directory {}", tree.root().display()))?;
    let dropbox = Dropbox::new(services.clone(), tree);
    let settings = config.transfer.clone();
    let keys_dir = config.data_dir.join("keys");
    let configured = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) if !cert.as_os_str().is_empty() && !key.as_os_str().is_empty() => {
            Some((cert.as_path(), key.as_path()))
        }
        _ => None,
    };
    let mut names: Vec<String> = settings
        .passive_host
        .iter()
        .filter(|h| !h.is_empty())
        .cloned()
        .collect();
    if let Some(host) = config
        .ftp
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
    {
        names.push(host.to_string());
    }
    let tls = keys::tls_identity(configured, &keys_dir, &names).context("preparing the FTPS certificate")?;
    let host_key = keys::ssh_host_key(&keys_dir).context("preparing the SSH host key")?;
    let ftp = FtpServer::bind(&config.ftp, dropbox.clone(), settings.clone(), Some(tls))
        .await
        .with_context(|| format!("binding the FTP listener on {}", config.ftp))?;
    let sftp = SftpServer::bind(&config.sftp, dropbox.clone(), &settings, host_key)
        .await
        .with_context(|| format!("binding the SFTP listener on {}", config.sftp))?;
    Ok((ftp, sftp, dropbox))
}

impl App {
    /// Opens everything and binds the listeners (port 0 picks a free port).
    /// `clock` is the time of every use case: the system clock in a server,
    /// a clock the test moves in the tests.
    pub async fn build(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        let services = open_services_as(&config, Some(node_name(&config.data_dir)?), clock).await?;
        uploads::clean_spool(&services.spool_dir, Duration::from_secs(3600));
        // Audio parts serve another node: with SQLite there is none.
        if config.siprec.audio_part_secs.is_none() {
            config.siprec.audio_part_secs = Some(if config.is_postgres() { 5 } else { 0 });
        }
        let http = TcpListener::bind(&config.http)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
        let http_addr = http.local_addr()?;
        let metrics = match config.metrics.listen_addr() {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener on {addr}"))?;
                let bound = listener.local_addr()?;
                Some((listener, bound))
            }
            None => None,
        };
        let (ftp, sftp, dropbox) = bind_file_drop(&config, &services).await?;
        let ftp_addr = ftp.local_addr()?;
        let sftp_addr = sftp.local_addr()?;
        let sip = SipServer::bind(
            &config.sip,
            services.clone(),
            config.siprec.clone(),
            config.sip_default_tenant.clone(),
            config.data_dir.join("recordings"),
        )
        .await
        .with_context(|| format!("binding the SIP listener on {} (UDP and TCP)", config.sip))?;
        let sip_addr = sip.local_addr();
        Ok(App {
            services,
            http,
            http_addr,
            metrics,
            ftp,
            ftp_addr,
            sftp,
            sftp_addr,
            sip,
            sip_addr,
            dropbox,
            config,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address of the metrics' own listener, if `--metrics` asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    pub fn ftp_addr(&self) -> SocketAddr {
        self.ftp_addr
    }

    pub fn sftp_addr(&self) -> SocketAddr {
        self.sftp_addr
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Serves until `shutdown` completes, then drains: no new connections or
    /// calls are taken, HTTP requests, uploads and calls under way finish
    /// (uploads and calls within `shutdown_grace_secs`; calls still going
    /// then are ended with the audio received so far).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stopping, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stopping.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let interval = Duration::from_millis(self.config.refresh_interval_ms.max(50));
        let refresher = tokio::spawn(refresh_active_versions(self.services.clone(), interval));
        let ftp = tokio::spawn(self.ftp.run());
        let sftp = tokio::spawn(self.sftp.run());
        let sip = tokio::spawn(self.sip.run_until(stopped(stop.clone()), grace));
        let every = Duration::from_millis((self.config.job_lease_ms / 3).max(100));
        let jobs = tokio::spawn(finish_stale_work(
            self.services.clone(),
            self.config.data_dir.join("recordings"),
            every,
        ));
        // Back-fills run long: they go on in a loop of their own.
        let backfills = tokio::spawn(resume_backfills(self.services.clone(), every));
        let retention = tokio::spawn(apply_retention(self.services.clone(), every));
        let webhooks = tokio::spawn(callmeta_webhooks::run(self.services.clone()));
        let pushes = tokio::spawn(callmeta_push::run(self.services.clone()));
        tracing::info!(http = %self.http_addr, ftp = %self.ftp_addr, sftp = %self.sftp_addr, sip = %self.sip_addr, data_dir = %self.config.data_dir.display(), "callmeta serving");
        let mut router = callmeta_http::router(self.services.clone()).merge(callmeta_web::router(
            self.services.clone(),
            self.config.web.clone(),
        ));
        if self.config.metrics.enabled {
            router = router.merge(callmeta_http::metrics_router(self.services.clone()));
        }
        let router = callmeta_http::count_requests(router, self.services.clone());
        // The metrics' own listener: plain, no limits of the API's, stopped
        // with the rest.
        let metrics_server = self.metrics.map(|(listener, _)| {
            let router = callmeta_http::metrics_router(self.services.clone());
            let stop = stopped(stop.clone());
            tokio::spawn(async move {
                let served = axum::serve(listener, router).with_graceful_shutdown(stop).await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "serving the metrics failed");
                }
            })
        });
        let drain_transfers = {
            let dropbox = self.dropbox.clone();
            let stop = stopped(stop.clone());
            async move {
                stop.await;
                // No new FTP/SFTP connections; sessions under way go on.
                ftp.abort();
                sftp.abort();
                wait_for_uploads(&dropbox, grace).await;
            }
        };
        let (result, _, _) = tokio::join!(
            crate::http_server::serve(self.http, router, self.config.http_server.clone(), stopped(stop)),
            drain_transfers,
            sip
        );
        refresher.abort();
        if let Some(metrics) = metrics_server {
            metrics.abort();
        }
        jobs.abort();
        backfills.abort();
        retention.abort();
        webhooks.abort();
        pushes.abort();
        callmeta_app::usecases::audit::flush(&self.services, true).await;
        tracing::info!("callmeta stopped");
        result.context("serving HTTP")
    }
}

/// Reconciles the active versions with the store every `interval`, and at
/// once when the store announces a change (PostgreSQL `NOTIFY`).
async fn refresh_active_versions(services: Arc<Services>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = services.store.version_changes();
    loop {
        match changes.as_mut() {
            Some(changes) => tokio::select! {
                _ = tick.tick() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        tick.tick().await;
                    }
                }
            },
            None => {
                tick.tick().await;
            }
        }
        if let Err(e) = active_tables::refresh(&services).await {
            tracing::warn!(error = %e, "refreshing the active versions failed; retrying");
        }
    }
}

/// Work left half-done by a node that stopped (this one included): first
/// this node's own recordings, from its local files in `recordings`, then,
/// every `every`, each upload and recording whose lease ran out.
async fn finish_stale_work(services: Arc<Services>, recordings: PathBuf, every: Duration) {
    let n = callmeta_sip::recover_recordings(services.clone(), &recordings).await;
    if n > 0 {
        tracing::info!(
            recordings = n,
            "recordings of interrupted calls attached to their calls"
        );
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = tables::finish_stale_uploads(&services).await {
            tracing::warn!(error = %e, "finishing interrupted uploads failed; retrying");
        }
        if let Err(e) = callmeta_sip::finish_stale_recordings(&services).await {
            tracing::warn!(error = %e, "finishing interrupted recordings failed; retrying");
        }
        // The counts of failed logins past the audit log's bound, for each
        // minute that is over.
        callmeta_app::usecases::audit::flush(&services, false).await;
    }
}

/// Every `every`, resumes the back-fills whose lease ran out.
async fn resume_backfills(services: Arc<Services>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = backfill::resume_stale(&services).await {
            tracing::warn!(error = %e, "resuming interrupted back-fills failed; retrying");
        }
    }
}

/// Every `every`, applies the tenants' retention policies whose hourly run
/// is due (each on one node: the run is a leased job).
async fn apply_retention(services: Arc<Services>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = retention::run_due(&services).await {
            tracing::warn!(error = %e, "applying retention policies failed; retrying");
        }
    }
}

/// Waits, at most `grace`, for the FTP/SFTP uploads under way to be
/// processed.
async fn wait_for_uploads(dropbox: &Dropbox, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while dropbox.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if dropbox.in_flight() > 0 {
        tracing::warn!(
            uploads = dropbox.in_flight(),
            "shutting down with uploads still under way"
        );
    }
}
