//! Configuration: defaults < config file < `CALLMETA_*` environment < flags.

use std::path::{Path, PathBuf};

use callmeta_app::blobs::s3::S3Settings;
use callmeta_app::usecases::logins::LoginSettings;
use callmeta_app::usecases::uploads::UploadPolicy;
use callmeta_app::usecases::webhooks::WebhookSettings;
use callmeta_core::csv::Limits;
use callmeta_filedrop::FileDropSettings;
use callmeta_sip::SipSettings;
use callmeta_web::WebSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::http_server::HttpSettings;

#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Where the embedded store keeps its data (SQLite file and blobs).
    pub data_dir: PathBuf,
    /// HTTP listener (API and web app).
    pub http: String,
    /// FTP/FTPS listener.
    pub ftp: String,
    /// SFTP listener.
    pub sftp: String,
    /// SIP listener (UDP and TCP).
    pub sip: String,
    /// Tenant for SIPREC calls that name none.
    pub sip_default_tenant: Option<String>,
    /// Database URL; default: SQLite in the data dir.
    pub database: Option<String>,
    /// Blob storage URL; default: `blobs/` in the data dir.
    pub blobs: Option<String>,
    /// How often every node reconciles its in-memory versions with the store.
    pub refresh_interval_ms: u64,
    /// How long a node holds an upload it ingests without renewing its
    /// lease; past it, another node (or this one, restarted) finishes it.
    pub job_lease_ms: u64,
    /// At shutdown, how long uploads and calls under way may take to finish.
    pub shutdown_grace_secs: u64,
    /// Limits on CSV uploads.
    pub limits: Limits,
    /// The ingest memory budget and the quota of rejected originals.
    pub uploads: UploadPolicy,
    /// S3 settings for `blobs = "s3://bucket"` (unset ones come from `AWS_*`).
    pub s3: S3Settings,
    /// FTP, FTPS and SFTP settings (passive ports, TLS, limits).
    pub transfer: FileDropSettings,
    /// SIPREC settings (RTP ports, media address, phone region).
    pub siprec: SipSettings,
    /// Web app settings (session lifetime, cookie).
    pub web: WebSettings,
    /// Limits of the HTTP listener (timeouts, connection caps).
    pub http_server: HttpSettings,
    /// Failed-login throttling (web, FTP, SFTP).
    pub logins: LoginSettings,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: MetricsSettings,
    /// Webhook deliveries (destinations, bounds, retries).
    pub webhooks: WebhookSettings,
    /// Log filter (`tracing` syntax).
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            http: "127.0.0.1:8080".into(),
            ftp: "127.0.0.1:2121".into(),
            sftp: "127.0.0.1:2222".into(),
            sip: "127.0.0.1:5060".into(),
            sip_default_tenant: None,
            database: None,
            blobs: None,
            refresh_interval_ms: 1000,
            job_lease_ms: callmeta_app::usecases::DEFAULT_JOB_LEASE_MS,
            shutdown_grace_secs: 30,
            limits: Limits::default(),
            uploads: UploadPolicy::default(),
            s3: S3Settings::default(),
            transfer: FileDropSettings::default(),
            siprec: SipSettings::default(),
            web: WebSettings::default(),
            http_server: HttpSettings::default(),
            logins: LoginSettings::default(),
            metrics: MetricsSettings::default(),
            webhooks: WebhookSettings::default(),
            log: "info,libunftp=warn,sqlx=warn".into(),
        }
    }
}

/// `[metrics]`: `GET /metrics` in the Prometheus text format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MetricsSettings {
    /// Serve `/metrics` on the HTTP listener (no token); `false`: 404 there.
    pub enabled: bool,
    /// Also serve `/metrics` on a listener of its own (`--metrics ADDR`);
    /// empty: none.
    pub listen: Option<String>,
    /// How many tenants get labels of their own; later ones count under
    /// `tenant="other"`.
    pub tenant_label_cap: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            tenant_label_cap: callmeta_app::metrics::DEFAULT_TENANT_LABEL_CAP,
        }
    }
}

impl MetricsSettings {
    /// The address of the metrics' own listener, if one is asked for.
    pub fn listen_addr(&self) -> Option<&str> {
        self.listen.as_deref().map(str::trim).filter(|a| !a.is_empty())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("http", &self.http)
            .field("database", &self.database.as_deref().map(redact_url))
            .field("blobs", &self.blobs.as_deref().map(redact_url))
            .field("s3", &self.s3)
            .finish_non_exhaustive()
    }
}

/// Hides the password of a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// Overrides given on the command line (only the flags that were set).
#[derive(Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ftp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sftp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_default_tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsFlags>,
}

/// `--metrics ADDR`, as the `[metrics] listen` key it overrides.
#[derive(Serialize)]
pub struct MetricsFlags {
    pub listen: String,
}

impl Config {
    /// Layers the sources. `file` is the `--config` path; without it,
    /// `callmeta.toml` in the working directory is read when present.
    pub fn load(file: Option<&Path>, flags: FlagOverrides) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("callmeta.toml")),
        }
        figment
            .merge(
                Env::prefixed("CALLMETA_")
                    .split("__")
                    .ignore(&["config", "test_database_url"]),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("callmeta.db")
    }

    /// Whether the store is a PostgreSQL database (shared by several nodes).
    pub fn is_postgres(&self) -> bool {
        self.database
            .as_deref()
            .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    }

    /// A commented example configuration holding the effective values.
    pub fn to_commented_toml(&self) -> String {
        [
            self.general_section(),
            self.limits_section(),
            self.uploads_section(),
            self.s3_section(),
            self.transfer_section(),
            self.http_server_section(),
            self.logins_section(),
            self.webhooks_section(),
            siprec_section(&self.siprec),
            self.web_section(),
            self.metrics_section(),
        ]
        .join("\n")
    }

    /// The top-level settings: listeners, store, blobs, timers, log.
    fn general_section(&self) -> String {
        format!(
            r#"# callmeta configuration. Precedence: defaults < this file < CALLMETA_* environment < flags.
# Read from --config FILE (or CALLMETA_CONFIG), else ./callmeta.toml when present.

# Data directory of the embedded default (SQLite file and blobs).   env: CALLMETA_DATA_DIR
data_dir = {data_dir:?}
# HTTP listener: API under /api/v1 and the web app.                   env: CALLMETA_HTTP
http = {http:?}
# FTP/FTPS listener.                                                  env: CALLMETA_FTP
ftp = {ftp:?}
# SFTP listener.                                                      env: CALLMETA_SFTP
sftp = {sftp:?}
# SIP listener, UDP and TCP.                                          env: CALLMETA_SIP
sip = {sip:?}
# Tenant of calls from unregistered SBCs (empty: answer 403).            env: CALLMETA_SIP_DEFAULT_TENANT
sip_default_tenant = {sdt}
# Database URL (empty: SQLite in the data dir; or postgres://...).    env: CALLMETA_DATABASE
database = {database}
# Blob storage URL (empty: the data dir; file:///path or s3://bucket). env: CALLMETA_BLOBS
blobs = {blobs}
# How often (ms) the active versions are reconciled with the store.  env: CALLMETA_REFRESH_INTERVAL_MS
refresh_interval_ms = {refresh}
# Lease (ms) on an upload being ingested; a node that dies holding one
# has it finished by another node once it runs out.                 env: CALLMETA_JOB_LEASE_MS
job_lease_ms = {lease}
# At shutdown, seconds that uploads and calls under way may take to
# finish (calls still going then end with the audio so far).       env: CALLMETA_SHUTDOWN_GRACE_SECS
shutdown_grace_secs = {grace}
# Log filter.                                                         env: CALLMETA_LOG
log = {log:?}
"#,
            data_dir = self.data_dir.display().to_string(),
            http = self.http,
            ftp = self.ftp,
            sftp = self.sftp,
            sip = self.sip,
            sdt = opt(&self.sip_default_tenant),
            database = opt(&self.database),
            blobs = opt(&self.blobs),
            refresh = self.refresh_interval_ms,
            lease = self.job_lease_ms,
            grace = self.shutdown_grace_secs,
            log = self.log,
        )
    }

    /// `[limits]`: the bounds of one upload.
    fn limits_section(&self) -> String {
        format!(
            r#"[limits]
# Largest upload, in bytes, on every channel (API and web form: 413;
# FTP: 552; SFTP: a failure status; CLI: an error), refused while it
# arrives, before anything is stored.                                 env: CALLMETA_LIMITS__MAX_FILE_BYTES
max_file_bytes = {mfb}
# Most columns in a CSV.                                              env: CALLMETA_LIMITS__MAX_COLUMNS
max_columns = {mc}
# Longest CSV field, in bytes.                                        env: CALLMETA_LIMITS__MAX_FIELD_BYTES
max_field_bytes = {mfl}
"#,
            mfb = self.limits.max_file_bytes,
            mc = self.limits.max_columns,
            mfl = self.limits.max_field_bytes,
        )
    }

    /// `[uploads]`: the bounds of all uploads together.
    fn uploads_section(&self) -> String {
        format!(
            r#"[uploads]
# Memory all uploads being parsed may use together, in bytes; each
# takes 1.5x its size while parsed (0: no budget).                    env: CALLMETA_UPLOADS__MEMORY_BUDGET_BYTES
memory_budget_bytes = {umb}
# How long (ms) an upload waits for its share of that budget before it
# is refused as busy (API/web: 503 + Retry-After; FTP: 452 at STOR, or
# a report; SFTP: a failure status).                                 env: CALLMETA_UPLOADS__BUDGET_WAIT_MS
budget_wait_ms = {ubw}
# Bytes of rejected uploads' originals kept per tenant; past it the
# oldest are deleted from blob storage (versions and reports stay).   env: CALLMETA_UPLOADS__REJECTED_QUOTA_BYTES
rejected_quota_bytes = {urq}
"#,
            umb = self.uploads.memory_budget_bytes,
            ubw = self.uploads.budget_wait_ms,
            urq = self.uploads.rejected_quota_bytes,
        )
    }

    /// `[s3]`: the S3-compatible blob storage (its secret redacted).
    fn s3_section(&self) -> String {
        format!(
            r#"[s3]
# For blobs = "s3://bucket"; each unset value comes from the AWS_* environment.
# Endpoint of an S3-compatible server.                                env: CALLMETA_S3__ENDPOINT
endpoint = {s3e}
region = {s3r}                                                       # env: CALLMETA_S3__REGION
access_key_id = {s3k}                                                # env: CALLMETA_S3__ACCESS_KEY_ID
secret_access_key = {s3s}                                            # env: CALLMETA_S3__SECRET_ACCESS_KEY
# Allow a plain-HTTP endpoint.                                        env: CALLMETA_S3__ALLOW_HTTP
allow_http = {s3h}
"#,
            s3e = opt(&self.s3.endpoint),
            s3r = opt(&self.s3.region),
            s3k = opt(&self.s3.access_key_id),
            s3s = if self.s3.secret_access_key.is_some() {
                "\"***\""
            } else {
                "\"\""
            },
            s3h = self.s3.allow_http,
        )
    }

    /// `[transfer]`: FTP/FTPS and SFTP.
    fn transfer_section(&self) -> String {
        format!(
            r#"[transfer]
# FTP passive-mode data ports, FIRST-LAST.                            env: CALLMETA_TRANSFER__PASSIVE_PORTS
passive_ports = {pp:?}
# Address in passive replies, behind NAT (empty: the one dialled).   env: CALLMETA_TRANSFER__PASSIVE_HOST
passive_host = {ph}
# FTPS certificate chain and key, PEM (empty: a self-signed pair is
# generated into the data dir).                                       env: CALLMETA_TRANSFER__TLS_CERT, __TLS_KEY
tls_cert = {tc:?}
tls_key = {tk:?}
# Refuse FTP without TLS.                                             env: CALLMETA_TRANSFER__TLS_REQUIRED
tls_required = {tr}
# Files at most in one tenant's FTP/SFTP tree.                        env: CALLMETA_TRANSFER__MAX_FILES
max_files = {mf}
# Seconds an FTP control connection or an SFTP session may stay idle, and
# an upload may pause, before it is closed.                          env: CALLMETA_TRANSFER__IDLE_SECS
idle_secs = {tis}
# FTP and SFTP connections open at once, each: in total, and from one
# address (0: no cap).                                                env: CALLMETA_TRANSFER__MAX_CONNECTIONS
max_connections = {tmc}
max_connections_per_address = {tmca}                                 # env: CALLMETA_TRANSFER__MAX_CONNECTIONS_PER_ADDRESS
"#,
            pp = self.transfer.passive_ports,
            ph = opt(&self.transfer.passive_host),
            tc = self
                .transfer
                .tls_cert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            tk = self
                .transfer
                .tls_key
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            tr = self.transfer.tls_required,
            mf = self.transfer.max_files,
            tis = self.transfer.idle_secs,
            tmc = self.transfer.max_connections,
            tmca = self.transfer.max_connections_per_address,
        )
    }

    /// `[http_server]`: slow and idle HTTP clients, connection caps.
    fn http_server_section(&self) -> String {
        format!(
            r#"[http_server]
# Seconds to send a request's head, from the connection's start or the
# previous response (so also the longest a keep-alive connection idles). env: CALLMETA_HTTP_SERVER__HEADER_TIMEOUT_SECS
header_timeout_secs = {hht}
# Longest pause in a request body, in seconds; past that allowance the
# body must also average min_body_bytes_per_sec.                     env: CALLMETA_HTTP_SERVER__BODY_TIMEOUT_SECS
body_timeout_secs = {hbt}
min_body_bytes_per_sec = {hbr}                                      # env: CALLMETA_HTTP_SERVER__MIN_BODY_BYTES_PER_SEC
# Seconds a client may leave its response unread before it is cut.   env: CALLMETA_HTTP_SERVER__SEND_TIMEOUT_SECS
send_timeout_secs = {hst}
# Connections open at once: in total, and from one address (0: no cap;
# behind a load balancer that connects from one address, raise or 0 it). env: CALLMETA_HTTP_SERVER__MAX_CONNECTIONS
max_connections = {hmc}
max_connections_per_address = {hmca}                                # env: CALLMETA_HTTP_SERVER__MAX_CONNECTIONS_PER_ADDRESS
"#,
            hht = self.http_server.header_timeout_secs,
            hbt = self.http_server.body_timeout_secs,
            hbr = self.http_server.min_body_bytes_per_sec,
            hst = self.http_server.send_timeout_secs,
            hmc = self.http_server.max_connections,
            hmca = self.http_server.max_connections_per_address,
        )
    }

    /// `[logins]`: the login throttle.
    fn logins_section(&self) -> String {
        format!(
            r#"[logins]
# Web, FTP and SFTP logins, throttled per (user, source address): after
# max_failures failures the pair waits block_secs, doubled with each
# further failure up to max_block_secs; the same user from another
# address is not affected.                                            env: CALLMETA_LOGINS__MAX_FAILURES
max_failures = {lmf}
block_secs = {lbs}                                                   # env: CALLMETA_LOGINS__BLOCK_SECS
max_block_secs = {lmb}                                               # env: CALLMETA_LOGINS__MAX_BLOCK_SECS
# Failures from one address over all users before that address waits. env: CALLMETA_LOGINS__MAX_FAILURES_PER_ADDRESS
max_failures_per_address = {lmfa}
"#,
            lmf = self.logins.max_failures,
            lbs = self.logins.block_secs,
            lmb = self.logins.max_block_secs,
            lmfa = self.logins.max_failures_per_address,
        )
    }

    /// `[webhooks]`: webhook deliveries.
    fn webhooks_section(&self) -> String {
        let w = &self.webhooks;
        format!(
            r#"[webhooks]
# Deliver to loopback, private and link-local addresses (10/8,
# 192.168/16, 127/8, 169.254/16, fc00::/7, ...). Off: such a URL is
# refused, and so is a name resolving to such an address.            env: CALLMETA_WEBHOOKS__ALLOW_PRIVATE
allow_private = {ap}
# Endpoints per tenant, and deliveries a tenant may have pending
# (an event beyond it is not recorded, and its endpoints say so).    env: CALLMETA_WEBHOOKS__MAX_ENDPOINTS_PER_TENANT, ...
max_endpoints_per_tenant = {me}
max_pending_per_tenant = {mp}
# Seconds one attempt may take (connect, send, answer).              env: CALLMETA_WEBHOOKS__TIMEOUT_SECS
timeout_secs = {ts}
# A failed delivery is retried after first_retry_secs, doubled each
# time (with jitter) up to max_retry_secs, for retry_for_secs after
# the event.                                                         env: CALLMETA_WEBHOOKS__RETRY_FOR_SECS, ...
first_retry_secs = {fr}
max_retry_secs = {mr}
retry_for_secs = {rf}
# How often each node looks for due deliveries, in ms (events of
# the node itself are sent at once).                                 env: CALLMETA_WEBHOOKS__POLL_MS
poll_ms = {pm}
# Days delivery attempts are listed.                                 env: CALLMETA_WEBHOOKS__KEEP_ATTEMPTS_DAYS
keep_attempts_days = {ka}
"#,
            ap = w.allow_private,
            me = w.max_endpoints_per_tenant,
            mp = w.max_pending_per_tenant,
            ts = w.timeout_secs,
            fr = w.first_retry_secs,
            mr = w.max_retry_secs,
            rf = w.retry_for_secs,
            pm = w.poll_ms,
            ka = w.keep_attempts_days,
        )
    }

    /// `[web]`: web app sessions.
    fn web_section(&self) -> String {
        format!(
            r#"[web]
# How long a web app login lasts at most, in seconds.               env: CALLMETA_WEB__SESSION_SECS
session_secs = {ws}
# How long a web app login lasts without a request, in seconds.      env: CALLMETA_WEB__IDLE_SECS
idle_secs = {wi}
# Mark the session cookie Secure (served over HTTPS).                env: CALLMETA_WEB__SECURE_COOKIE
secure_cookie = {wsc}
"#,
            ws = self.web.session_secs,
            wi = self.web.idle_secs,
            wsc = self.web.secure_cookie,
        )
    }

    /// `[metrics]`: the Prometheus endpoint.
    fn metrics_section(&self) -> String {
        format!(
            r#"[metrics]
# Serve GET /metrics (Prometheus text format, no token) on the HTTP
# listener; false: 404 there.                                         env: CALLMETA_METRICS__ENABLED
enabled = {me}
# Also serve /metrics on a listener of its own (empty: none).          env: CALLMETA_METRICS__LISTEN
listen = {ml}                                                        # flag: --metrics ADDR
# Tenants labelled by their id; later ones count as tenant="other".   env: CALLMETA_METRICS__TENANT_LABEL_CAP
tenant_label_cap = {mc}
"#,
            me = self.metrics.enabled,
            ml = opt(&self.metrics.listen),
            mc = self.metrics.tenant_label_cap,
        )
    }
}

/// An optional text setting as a TOML string (`""` when unset), with any
/// password in a URL redacted.
fn opt(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{:?}", redact_url(v)),
        None => "\"\"".to_string(),
    }
}

/// The `[siprec]` part of [`Config::to_commented_toml`].
fn siprec_section(s: &SipSettings) -> String {
    let opt = |v: &Option<String>| format!("{:?}", v.as_deref().unwrap_or(""));
    let aps = match s.audio_part_secs {
        Some(secs) => format!("audio_part_secs = {secs}"),
        None => "# audio_part_secs = 5".to_string(),
    };
    format!(
        r#"[siprec]
# The SBCs that may send calls for a tenant are registered with
# `callmeta tenant sip-source add SLUG CIDR`.
# UDP ports for RTP, FIRST-LAST (two per recorded stream).            env: CALLMETA_SIPREC__RTP_PORTS
rtp_ports = {rtp:?}
# Address put in SDP answers (o=, c=), when the SBC reaches us
# through NAT (empty: the address each INVITE arrived on).           env: CALLMETA_SIPREC__MEDIA_ADDRESS
media_address = {ma}
# Address (HOST or HOST:PORT) put in Contact headers, behind NAT
# (empty: the address each request arrived on).                     env: CALLMETA_SIPREC__ADVERTISED_ADDRESS
advertised_address = {aa}
# Region for reading national numbers as E.164, e.g. "FR".           env: CALLMETA_SIPREC__DEFAULT_REGION
default_region = {dr}
# Wait before answering an INVITE, in ms (0: answer at once).       env: CALLMETA_SIPREC__ANSWER_DELAY_MS
answer_delay_ms = {ad}
# Store the audio received so far in blob storage every this many
# seconds, for another node to finish a call if this one stops
# (0: never; unset: 5 with PostgreSQL, 0 with SQLite).              env: CALLMETA_SIPREC__AUDIO_PART_SECS
{aps}
# RFC 3261 T1 (ms); a 200 OK not acknowledged within 64xT1 ends
# its dialog (the call is removed if no audio came).                env: CALLMETA_SIPREC__T1_MS
t1_ms = {t1}
# End a call after this many seconds without RTP or in-dialog
# request, and any call at max_call_secs (audio so far kept).       env: CALLMETA_SIPREC__RTP_TIMEOUT_SECS
rtp_timeout_secs = {rto}
max_call_secs = {mcs}                                                 # env: CALLMETA_SIPREC__MAX_CALL_SECS
# Calls in progress at most per source address and per tenant,
# and new calls per second (bursts of twice as many); beyond: 503.  env: CALLMETA_SIPREC__MAX_CALLS_PER_SOURCE, ...
max_calls_per_source = {mcps}
max_calls_per_tenant = {mcpt}
invites_per_sec_per_source = {ips}
invites_per_sec_per_tenant = {ipt}
# Media streams (m-lines) at most per call (beyond: 488).           env: CALLMETA_SIPREC__MAX_STREAMS
max_streams = {ms}
# SIP messages handled at once (beyond: 503).                        env: CALLMETA_SIPREC__MAX_IN_FLIGHT
max_in_flight = {mif}
# SIP over TCP: connections at most (in total, per source address),
# idle seconds before closing, seconds for a message to complete,
# responses queued for a peer that does not read before closing.   env: CALLMETA_SIPREC__MAX_TCP_CONNECTIONS, ...
max_tcp_connections = {mtc}
max_tcp_connections_per_source = {mtcs}
tcp_idle_secs = {tis}
tcp_message_secs = {tms}
tcp_send_queue = {tsq}
"#,
        rtp = s.rtp_ports,
        ma = opt(&s.media_address),
        aa = opt(&s.advertised_address),
        dr = opt(&s.default_region),
        ad = s.answer_delay_ms,
        t1 = s.t1_ms,
        rto = s.rtp_timeout_secs,
        mcs = s.max_call_secs,
        mcps = s.max_calls_per_source,
        mcpt = s.max_calls_per_tenant,
        ips = s.invites_per_sec_per_source,
        ipt = s.invites_per_sec_per_tenant,
        ms = s.max_streams,
        mif = s.max_in_flight,
        mtc = s.max_tcp_connections,
        mtcs = s.max_tcp_connections_per_source,
        tis = s.tcp_idle_secs,
        tms = s.tcp_message_secs,
        tsq = s.tcp_send_queue,
    )
}
