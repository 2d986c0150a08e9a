//! The daily export push: a file of the previous day's calls (the columns
//! of `export`) pushed to the tenant's SFTP server or S3 bucket.
//!
//! A tenant with settings has one job of kind `export_schedule` (its id
//! [`schedule_job_id`]). While no node runs it, its lease holds the time of
//! its next run (`hour`:00 in the tenant's UTC offset); the node that claims
//! it records the push of the day before ([`request_day`]) and hands it back
//! for the next day. Each day's push is a job of kind `export_push` (id
//! [`day_job_id`]: one per tenant and day, so asking again for a day
//! replaces its job instead of adding one), due at once; a push asked for
//! on request ([`run_day`]) is the same job.
//!
//! The adapter that talks SFTP or S3 (`callmeta-push`) claims due pushes
//! ([`claim_due`]), writes the file under its final name (`calls-DAY.csv`:
//! a day pushed again overwrites it; over SFTP through a temporary name and
//! a rename, so that the customer never reads half a file) and reports the
//! outcome ([`finish`]). A failure is retried with the webhooks' backoff and
//! jitter until `retry_for_secs` after the push was asked for; each attempt
//! is written to the day's row of `export_runs`, which the tenant reads.
//! A node that stops mid-push leaves its job's lease to run out: another
//! node claims it and pushes the day again.
//!
//! Destinations are refused, as webhooks are, when they are loopback,
//! private or link-local addresses unless `[webhooks] allow_private`; a
//! name is checked again when the adapter resolves it.

use serde::{Deserialize, Serialize};
use time::{Date, Duration as Days, OffsetDateTime, Time, UtcOffset};

use super::audit::{self, Actor, actions};
use super::export::ExportFormat;
use super::jobs::{self, Held};
use super::webhooks::{backoff_ms, refused_address};
use super::{AppError, Services};
use crate::store::{CallQuery, ExportPushRecord, ExportRun, Job, JobKind, StoreError, TenantId};

/// Runs listed at most.
pub const MAX_LISTED_RUNS: u32 = 100;
/// The longest a host, user name, directory, bucket or prefix may be.
pub const MAX_NAME_CHARS: usize = 1024;
/// The longest a password or private key may be.
pub const MAX_SECRET_CHARS: usize = 16_384;
const DAY_MS: i64 = 86_400_000;

/// The id of a tenant's schedule job.
pub fn schedule_job_id(tenant: &TenantId) -> String {
    format!("export-schedule-{tenant}")
}

/// The id of a tenant's push of one day.
pub fn day_job_id(tenant: &TenantId, day: &str) -> String {
    format!("export-{tenant}-{day}")
}

/// Where the file goes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Sftp(SftpDestination),
    S3(S3Destination),
}

/// An SFTP server: password or private key (OpenSSH or PEM, unencrypted)
/// authentication; its host key pinned by fingerprint, or any accepted on
/// the tenant's explicit say.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SftpDestination {
    pub host: String,
    pub port: u16,
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    /// Where the file is written (relative to the login directory unless
    /// it starts with `/`).
    pub directory: String,
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    #[serde(default)]
    pub host_key: Option<String>,
    #[serde(default)]
    pub accept_any_host_key: bool,
}

/// An S3 bucket (AWS, or an S3-compatible server at `endpoint`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Destination {
    pub bucket: String,
    /// Put before the file name (a `/` is added if it lacks one).
    pub prefix: String,
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for SftpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpDestination")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("private_key", &self.private_key.as_ref().map(|_| "<redacted>"))
            .field("directory", &self.directory)
            .field("host_key", &self.host_key)
            .field("accept_any_host_key", &self.accept_any_host_key)
            .finish()
    }
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Sftp(d) => d.fmt(f),
            Destination::S3(d) => d.fmt(f),
        }
    }
}

impl Destination {
    /// Where it goes, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Destination::Sftp(d) => format!(
                "sftp://{}@{}:{}/{}",
                d.username,
                d.host,
                d.port,
                d.directory.trim_start_matches('/')
            ),
            Destination::S3(d) => format!("s3://{}/{}", d.bucket, d.prefix),
        }
    }

    /// The same destination without its secrets (for views and the audit log).
    pub fn without_secrets(&self) -> Destination {
        match self {
            Destination::Sftp(d) => Destination::Sftp(SftpDestination {
                password: None,
                private_key: None,
                ..d.clone()
            }),
            Destination::S3(d) => Destination::S3(S3Destination {
                secret_access_key: None,
                ..d.clone()
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushFormat {
    Csv,
    Ndjson,
}

impl PushFormat {
    pub fn parse(s: &str) -> Option<PushFormat> {
        match s {
            "csv" => Some(PushFormat::Csv),
            "ndjson" => Some(PushFormat::Ndjson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PushFormat::Csv => "csv",
            PushFormat::Ndjson => "ndjson",
        }
    }

    pub fn export_format(self) -> ExportFormat {
        match self {
            PushFormat::Csv => ExportFormat::Csv { bom: false },
            PushFormat::Ndjson => ExportFormat::Ndjson,
        }
    }
}

/// A tenant's daily export push, as stored (secrets included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushSettings {
    pub destination: Destination,
    pub format: PushFormat,
    /// The tenant's days are in this offset from UTC (a fixed offset: a
    /// zone with daylight saving time sets the one it wants).
    pub utc_offset_minutes: i32,
    /// The hour (0 to 23, in that offset) the previous day's file is pushed.
    pub hour: u8,
}

/// What a tenant asks for; secrets left out keep the stored ones when the
/// destination is the same server and user (or bucket and key id).
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub destination: Destination,
    pub format: Option<String>,
    /// `+HH:MM`, `-HH:MM` or `Z`.
    pub utc_offset: Option<String>,
    pub hour: Option<i64>,
}

/// A tenant's settings (without secrets) and schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct PushStatus {
    pub settings: PushSettings,
    /// How the SFTP login is made (`password` or `private_key`).
    pub sftp_auth: Option<&'static str>,
    pub updated_ms: i64,
    /// When the next scheduled push is recorded; `None` while a node does it.
    pub next_run_ms: Option<i64>,
}

fn too_long(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn required(field: &str, value: &str) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid(field, format!("{field} must not be empty")));
    }
    too_long(field, value, MAX_NAME_CHARS)
}

/// A host written as an address (or `localhost`) must not be an internal
/// one unless allowed; a name is checked when it is resolved.
fn check_host(field: &str, host: &str, allow_private: bool) -> Result<(), AppError> {
    required(field, host)?;
    if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(AppError::invalid(
            field,
            format!("{field} must be a host name or address"),
        ));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let refused = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => refused_address(ip, allow_private),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                refused_address(std::net::Ipv4Addr::LOCALHOST.into(), allow_private)
            } else {
                None
            }
        }
    };
    match refused {
        Some(why) => Err(AppError::invalid(field, why.replace("webhooks are", "files are"))),
        None => Ok(()),
    }
}

/// `SHA256:` and 43 base64 characters (padding dropped), as OpenSSH prints.
fn check_fingerprint(text: &str) -> Result<String, AppError> {
    let field = "destination.sftp.host_key";
    let fp = text.trim().trim_end_matches('=');
    let ok = fp.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    });
    if !ok {
        return Err(AppError::invalid(
            field,
            "host_key must be the server's SHA256 fingerprint as `ssh-keyscan HOST | ssh-keygen -lf -` prints it \
             (SHA256: and 43 base64 characters)",
        ));
    }
    Ok(fp.to_string())
}

/// `+HH:MM`, `-HH:MM`, `Z` (or `+00:00`): minutes east of UTC.
pub fn parse_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 || (h == 14 && m > 0) {
        return None;
    }
    Some(sign * (h * 60 + m))
}

pub fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

fn offset(minutes: i32) -> UtcOffset {
    UtcOffset::from_whole_seconds(minutes * 60).unwrap_or(UtcOffset::UTC)
}

fn local(ms: i64, minutes: i32) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset(minutes))
}

fn day_start_ms(day: Date, minutes: i32) -> i64 {
    day.midnight().assume_offset(offset(minutes)).unix_timestamp() * 1000
}

/// A day as `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(
        text.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn format_day(day: Date) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day())
}

/// The first and last millisecond of a day in the offset (the call list's
/// `timestamp_to` is inclusive).
pub fn day_bounds(day: Date, minutes: i32) -> (i64, i64) {
    let start = day_start_ms(day, minutes);
    (start, start + DAY_MS - 1)
}

/// The day before the one `now_ms` falls on, in the offset.
pub fn previous_day(now_ms: i64, minutes: i32) -> Date {
    let today = local(now_ms, minutes).date();
    today.previous_day().unwrap_or(today)
}

/// The next `hour`:00 in the offset strictly after `now_ms`.
pub fn next_run_ms(now_ms: i64, minutes: i32, hour: u8) -> i64 {
    let now = local(now_ms, minutes);
    let at = Time::from_hms(hour.min(23), 0, 0).unwrap_or(Time::MIDNIGHT);
    let mut candidate = now.date().with_time(at).assume_offset(offset(minutes));
    if candidate.unix_timestamp() * 1000 <= now_ms {
        candidate += Days::days(1);
    }
    candidate.unix_timestamp() * 1000
}

/// The file a day's push writes.
pub fn file_name(day: &str, format: PushFormat) -> String {
    format!("calls-{day}.{}", format.as_str())
}

/// Checks a request against the stored settings (for secrets left out).
fn check(
    request: PushRequest,
    stored: Option<&PushSettings>,
    allow_private: bool,
) -> Result<PushSettings, AppError> {
    let format = match request.format.as_deref() {
        None => PushFormat::Csv,
        Some(f) => PushFormat::parse(f)
            .ok_or_else(|| AppError::invalid("format", format!("format must be csv or ndjson, not {f:?}")))?,
    };
    let utc_offset_minutes = match request.utc_offset.as_deref() {
        None => 0,
        Some(text) => parse_offset(text).ok_or_else(|| {
            AppError::invalid(
                "utc_offset",
                format!("utc_offset must be +HH:MM or -HH:MM (from -14:00 to +14:00) or Z, not {text:?}"),
            )
        })?,
    };
    let hour = match request.hour {
        None => 1,
        Some(h) if (0..=23).contains(&h) => h as u8,
        Some(h) => {
            return Err(AppError::invalid(
                "hour",
                format!("hour must be 0 to 23, not {h}"),
            ));
        }
    };
    let destination = match request.destination {
        Destination::Sftp(mut d) => {
            check_host("destination.sftp.host", &d.host, allow_private)?;
            if d.port == 0 {
                return Err(AppError::invalid(
                    "destination.sftp.port",
                    "port must be 1 to 65535",
                ));
            }
            required("destination.sftp.username", &d.username)?;
            if d.directory.contains('\0') {
                return Err(AppError::invalid(
                    "destination.sftp.directory",
                    "directory must not hold NUL",
                ));
            }
            too_long("destination.sftp.directory", &d.directory, MAX_NAME_CHARS)?;
            if d.directory.trim().is_empty() {
                d.directory = ".".into();
            }
            d.host_key = d.host_key.as_deref().map(check_fingerprint).transpose()?;
            if d.host_key.is_none() && !d.accept_any_host_key {
                return Err(AppError::invalid(
                    "destination.sftp.host_key",
                    "pin the server's host key (host_key: its SHA256 fingerprint, as \
                     `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` prints it), or set accept_any_host_key \
                     to true to accept whatever key the server shows",
                ));
            }
            if d.password.is_some() && d.private_key.is_some() {
                return Err(AppError::invalid(
                    "destination.sftp.password",
                    "give a password or a private_key, not both",
                ));
            }
            if d.password.is_none() && d.private_key.is_none() {
                match stored.map(|s| &s.destination) {
                    Some(Destination::Sftp(old))
                        if old.host == d.host && old.port == d.port && old.username == d.username =>
                    {
                        d.password = old.password.clone();
                        d.private_key = old.private_key.clone();
                    }
                    _ => {
                        return Err(AppError::invalid(
                            "destination.sftp.password",
                            "a password or a private_key is needed (they are kept only for the same host, port and username)",
                        ));
                    }
                }
            }
            if let Some(p) = &d.password {
                if p.is_empty() {
                    return Err(AppError::invalid(
                        "destination.sftp.password",
                        "password must not be empty",
                    ));
                }
                too_long("destination.sftp.password", p, MAX_SECRET_CHARS)?;
            }
            if let Some(k) = &d.private_key {
                too_long("destination.sftp.private_key", k, MAX_SECRET_CHARS)?;
                if !k.trim_start().starts_with("-----BEGIN ") {
                    return Err(AppError::invalid(
                        "destination.sftp.private_key",
                        "private_key must be an unencrypted key in OpenSSH or PEM form (-----BEGIN ...)",
                    ));
                }
            }
            Destination::Sftp(d)
        }
        Destination::S3(mut d) => {
            required("destination.s3.bucket", &d.bucket)?;
            if d.bucket.contains('/') || d.bucket.chars().any(char::is_whitespace) {
                return Err(AppError::invalid(
                    "destination.s3.bucket",
                    "bucket must be a bucket name",
                ));
            }
            too_long("destination.s3.prefix", &d.prefix, MAX_NAME_CHARS)?;
            d.prefix = d.prefix.trim_start_matches('/').to_string();
            if !d.prefix.is_empty() && !d.prefix.ends_with('/') {
                d.prefix.push('/');
            }
            if d.region.trim().is_empty() {
                d.region = "us-east-1".into();
            }
            too_long("destination.s3.region", &d.region, 64)?;
            if let Some(endpoint) = &d.endpoint {
                let url = super::webhooks::check_url(endpoint, allow_private).map_err(|e| match e {
                    AppError::Invalid { message, .. } => AppError::invalid(
                        "destination.s3.endpoint",
                        message
                            .replace("url ", "endpoint ")
                            .replace("webhooks are not delivered", "files are not pushed"),
                    ),
                    other => other,
                })?;
                d.endpoint = Some(url.as_str().trim_end_matches('/').to_string());
            }
            required("destination.s3.access_key_id", &d.access_key_id)?;
            match &d.secret_access_key {
                Some(s) => {
                    if s.is_empty() {
                        return Err(AppError::invalid(
                            "destination.s3.secret_access_key",
                            "secret_access_key must not be empty",
                        ));
                    }
                    too_long("destination.s3.secret_access_key", s, MAX_SECRET_CHARS)?;
                }
                None => match stored.map(|s| &s.destination) {
                    Some(Destination::S3(old))
                        if old.bucket == d.bucket && old.access_key_id == d.access_key_id =>
                    {
                        d.secret_access_key = old.secret_access_key.clone();
                    }
                    _ => {
                        return Err(AppError::invalid(
                            "destination.s3.secret_access_key",
                            "secret_access_key is needed (it is kept only for the same bucket and access_key_id)",
                        ));
                    }
                },
            }
            Destination::S3(d)
        }
    };
    Ok(PushSettings {
        destination,
        format,
        utc_offset_minutes,
        hour,
    })
}

async fn stored(services: &Services, tenant: &TenantId) -> Result<Option<(PushSettings, i64)>, AppError> {
    let Some(record) = services.store.export_push_settings(tenant).await? else {
        return Ok(None);
    };
    let settings: PushSettings = serde_json::from_value(record.settings)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("stored export push settings unreadable: {e}")))?;
    Ok(Some((settings, record.updated_ms)))
}

/// Sets (or replaces) the tenant's daily export push; its next scheduled
/// run is the next `hour`:00.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn put_settings(
    services: &Services,
    tenant: &TenantId,
    request: PushRequest,
    actor: &Actor,
) -> Result<PushStatus, AppError> {
    let allow_private = services.webhooks.settings().allow_private;
    let old = stored(services, tenant).await?;
    let settings = check(request, old.as_ref().map(|(s, _)| s), allow_private)?;
    let now = services.now_ms();
    let record = ExportPushRecord {
        tenant: tenant.clone(),
        settings: serde_json::to_value(&settings)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("export push settings: {e}")))?,
        updated_ms: now,
    };
    services.store.put_export_push_settings(&record).await?;
    let job = Job {
        id: schedule_job_id(tenant),
        kind: JobKind::ExportSchedule,
        tenant: tenant.clone(),
        created_ms: now,
        payload: serde_json::json!({}),
        owner: String::new(),
        lease_until_ms: next_run_ms(now, settings.utc_offset_minutes, settings.hour),
        attempts: 0,
    };
    services.store.upsert_job(&job).await?;
    tracing::info!(destination = %settings.destination.describe(), "daily export push set");
    audit::record(
        services,
        tenant,
        actor,
        actions::EXPORT_SETTINGS,
        "exports/daily",
        serde_json::json!({
            "destination": settings.destination.describe(),
            "format": settings.format.as_str(),
            "utc_offset": format_offset(settings.utc_offset_minutes),
            "hour": settings.hour,
        }),
    )
    .await;
    get_settings(services, tenant).await
}

/// The tenant's settings (secrets removed) and when the next scheduled push
/// is recorded; `NotFound` if it set none.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn get_settings(services: &Services, tenant: &TenantId) -> Result<PushStatus, AppError> {
    let Some((settings, updated_ms)) = stored(services, tenant).await? else {
        return Err(AppError::NotFound("daily export push settings".into()));
    };
    let next_run_ms = services
        .store
        .job(&schedule_job_id(tenant))
        .await?
        .filter(|job| job.owner.is_empty())
        .map(|job| job.lease_until_ms);
    let sftp_auth = match &settings.destination {
        Destination::Sftp(d) if d.private_key.is_some() => Some("private_key"),
        Destination::Sftp(_) => Some("password"),
        Destination::S3(_) => None,
    };
    Ok(PushStatus {
        sftp_auth,
        settings: PushSettings {
            destination: settings.destination.without_secrets(),
            ..settings
        },
        updated_ms,
        next_run_ms,
    })
}

/// Removes the tenant's daily export push with its schedule and pending
/// pushes (one under way may finish); its runs stay listed.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn delete_settings(services: &Services, tenant: &TenantId, actor: &Actor) -> Result<(), AppError> {
    if !services.store.delete_export_push(tenant).await? {
        return Err(AppError::NotFound("daily export push settings".into()));
    }
    tracing::info!("daily export push removed");
    audit::record(
        services,
        tenant,
        actor,
        actions::EXPORT_SETTINGS,
        "exports/daily",
        serde_json::json!({"removed": true}),
    )
    .await;
    Ok(())
}

/// The tenant's runs, latest day first.
pub async fn runs(services: &Services, tenant: &TenantId) -> Result<Vec<ExportRun>, AppError> {
    Ok(services.store.export_runs(tenant, MAX_LISTED_RUNS).await?)
}

/// What a push job holds between attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DayPayload {
    day: String,
    /// When the push was asked for: retries stop `retry_for_secs` after it.
    first_ms: i64,
    /// Attempts finished so far.
    #[serde(default)]
    attempts: i64,
}

/// Records the push of `day` (a new job, or the day's job made due again,
/// its attempts counted anew) and its run as `pending`; `Conflict` if a
/// node is pushing that day right now.
async fn request_day(
    services: &Services,
    tenant: &TenantId,
    settings: &PushSettings,
    day: Date,
) -> Result<ExportRun, AppError> {
    let now = services.now_ms();
    let day = format_day(day);
    let job = Job {
        id: day_job_id(tenant, &day),
        kind: JobKind::ExportPush,
        tenant: tenant.clone(),
        created_ms: now,
        payload: serde_json::to_value(DayPayload {
            day: day.clone(),
            first_ms: now,
            attempts: 0,
        })
        .unwrap_or_default(),
        owner: String::new(),
        // Due now: a lease that already ran out.
        lease_until_ms: now - 1,
        attempts: 0,
    };
    if !services.store.upsert_job(&job).await? {
        return Err(AppError::Conflict(format!(
            "the export of {day} is being pushed right now; ask again once it is done"
        )));
    }
    let run = ExportRun {
        tenant: tenant.clone(),
        day: day.clone(),
        file_name: file_name(&day, settings.format),
        destination: settings.destination.describe(),
        status: "pending".into(),
        calls: 0,
        bytes: 0,
        attempts: 0,
        error: None,
        requested_ms: now,
        updated_ms: now,
        next_attempt_ms: Some(now),
    };
    services.store.put_export_run(&run).await?;
    services.webhooks.push_requested.notify_one();
    Ok(run)
}

/// Pushes one day now (again, if it was pushed before: the file is
/// overwritten), by default the previous day; the day must be over in the
/// tenant's offset.
#[tracing::instrument(skip_all, fields(tenant = %tenant, day = ?day))]
pub async fn run_day(
    services: &Services,
    tenant: &TenantId,
    day: Option<&str>,
    actor: &Actor,
) -> Result<ExportRun, AppError> {
    let Some((settings, _)) = stored(services, tenant).await? else {
        return Err(AppError::NotFound("daily export push settings".into()));
    };
    let date = match day {
        None => previous_day(services.now_ms(), settings.utc_offset_minutes),
        Some(day) => parse_day(day).ok_or_else(|| {
            AppError::invalid("day", format!("day must be a date as YYYY-MM-DD, not {day:?}"))
        })?,
    };
    let day = format_day(date);
    let (_, last) = day_bounds(date, settings.utc_offset_minutes);
    if last >= services.now_ms() {
        return Err(AppError::invalid(
            "day",
            format!(
                "{day} is not over yet (in UTC offset {}); only past days are pushed",
                format_offset(settings.utc_offset_minutes)
            ),
        ));
    }
    let run = request_day(services, tenant, &settings, date).await?;
    audit::record(
        services,
        tenant,
        actor,
        actions::EXPORT_RUN,
        format!("exports/daily/runs/{}", run.day),
        serde_json::json!({"destination": run.destination, "file": run.file_name}),
    )
    .await;
    Ok(run)
}

/// Records the previous day's push for each tenant whose scheduled run is
/// due, and schedules the next.
async fn schedule_due(services: &Services) -> Result<(), AppError> {
    loop {
        let claimed = jobs::claim_stale_batch(services, JobKind::ExportSchedule, 8).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        for (job, held) in claimed {
            let Some((settings, _)) = stored(services, &job.tenant).await? else {
                jobs::done(services, held).await?;
                continue;
            };
            let now = services.now_ms();
            let day = previous_day(now, settings.utc_offset_minutes);
            match request_day(services, &job.tenant, &settings, day).await {
                Ok(run) => tracing::info!(tenant = %job.tenant, day = %run.day, "daily export push recorded"),
                Err(AppError::Conflict(_)) => {}
                Err(e) => {
                    // The schedule is claimed again once its lease runs out.
                    tracing::warn!(tenant = %job.tenant, error = %e, "recording the daily export push failed");
                    continue;
                }
            }
            let next = next_run_ms(now, settings.utc_offset_minutes, settings.hour);
            drop(held);
            match services
                .store
                .reschedule_job(&job.id, &services.node, &job.payload, next)
                .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A push this node is making.
pub struct DuePush {
    pub tenant: TenantId,
    pub day: String,
    pub file_name: String,
    pub format: PushFormat,
    /// The day's first and last millisecond.
    pub from_ms: i64,
    pub to_ms: i64,
    /// With its secrets.
    pub destination: Destination,
    /// 1 for the first attempt.
    pub attempt: i64,
    job_id: String,
    payload: DayPayload,
    requested_ms: i64,
    held: Held,
}

impl std::fmt::Debug for DuePush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuePush")
            .field("tenant", &self.tenant)
            .field("day", &self.day)
            .field("destination", &self.destination.describe())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl DuePush {
    /// The calls of the day, as the export reads them.
    pub fn query(&self) -> CallQuery {
        CallQuery {
            from_ms: Some(self.from_ms),
            to_ms: Some(self.to_ms),
            ..CallQuery::default()
        }
    }
}

/// Claims up to `limit` due pushes (of any tenant), first recording the
/// scheduled ones that are due; each claimed run is marked `running`.
pub async fn claim_due(services: &Services, limit: u32) -> Result<Vec<DuePush>, AppError> {
    schedule_due(services).await?;
    let claimed = jobs::claim_stale_batch(services, JobKind::ExportPush, limit.max(1)).await?;
    let mut due = Vec::with_capacity(claimed.len());
    for (job, held) in claimed {
        let payload: DayPayload = match serde_json::from_value(job.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "an export push cannot be read; dropped");
                jobs::done(services, held).await?;
                continue;
            }
        };
        let (Some((settings, _)), Some(date)) =
            (stored(services, &job.tenant).await?, parse_day(&payload.day))
        else {
            jobs::done(services, held).await?;
            continue;
        };
        let (from_ms, to_ms) = day_bounds(date, settings.utc_offset_minutes);
        let attempt = payload.attempts + 1;
        let now = services.now_ms();
        let requested_ms = services
            .store
            .export_run(&job.tenant, &payload.day)
            .await?
            .map_or(payload.first_ms, |r| r.requested_ms);
        let run = ExportRun {
            tenant: job.tenant.clone(),
            day: payload.day.clone(),
            file_name: file_name(&payload.day, settings.format),
            destination: settings.destination.describe(),
            status: "running".into(),
            calls: 0,
            bytes: 0,
            attempts: attempt,
            error: None,
            requested_ms,
            updated_ms: now,
            next_attempt_ms: None,
        };
        services.store.put_export_run(&run).await?;
        due.push(DuePush {
            tenant: job.tenant,
            day: payload.day.clone(),
            file_name: run.file_name,
            format: settings.format,
            from_ms,
            to_ms,
            destination: settings.destination,
            attempt,
            job_id: job.id,
            payload,
            requested_ms,
            held,
        });
    }
    Ok(due)
}

/// What one attempt gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub calls: u64,
    pub bytes: u64,
    /// Why the file is not at its destination, if it is not.
    pub error: Option<String>,
}

/// Records an attempt on the day's run, then forgets the push (delivered,
/// or retried for long enough) or gives it back, due after a backoff.
#[tracing::instrument(skip_all, fields(tenant = %due.tenant, day = %due.day, attempt = due.attempt))]
pub async fn finish(services: &Services, due: DuePush, outcome: PushOutcome) -> Result<(), AppError> {
    let settings = services.webhooks.settings();
    let now = services.now_ms();
    let mut run = ExportRun {
        tenant: due.tenant.clone(),
        day: due.day.clone(),
        file_name: due.file_name.clone(),
        destination: due.destination.describe(),
        status: "delivered".into(),
        calls: outcome.calls as i64,
        bytes: outcome.bytes as i64,
        attempts: due.attempt,
        error: outcome.error.clone(),
        requested_ms: due.requested_ms,
        updated_ms: now,
        next_attempt_ms: None,
    };
    let Some(error) = outcome.error else {
        tracing::info!(calls = outcome.calls, bytes = outcome.bytes, file = %due.file_name, "export pushed");
        services.store.put_export_run(&run).await?;
        return jobs::done(services, due.held).await;
    };
    let at = now + backoff_ms(&settings, due.attempt);
    let until = due.payload.first_ms + settings.retry_for_secs as i64 * 1000;
    if at > until {
        tracing::warn!(error = %error, "export push given up");
        run.status = "failed".into();
        run.error = Some(format!(
            "{error}; no further attempt: retried for {} s after it was asked for",
            settings.retry_for_secs
        ));
        services.store.put_export_run(&run).await?;
        return jobs::done(services, due.held).await;
    }
    tracing::info!(error = %error, retry_in_ms = at - now, "export push failed; will retry");
    run.status = "retrying".into();
    run.next_attempt_ms = Some(at);
    services.store.put_export_run(&run).await?;
    let payload = serde_json::to_value(DayPayload {
        attempts: due.attempt,
        ..due.payload
    })
    .unwrap_or_default();
    // Released first, so the lease renewer no longer extends it.
    drop(due.held);
    match services
        .store
        .reschedule_job(&due.job_id, &services.node, &payload, at)
        .await
    {
        // Removed meanwhile (the settings deleted, the day asked for again).
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_30_2026_UTC: i64 = 1_795_996_800_000;

    #[test]
    fn offsets_are_read_and_written() {
        for (text, minutes) in [
            ("Z", 0),
            ("+00:00", 0),
            ("+02:00", 120),
            ("-05:30", -330),
            ("+14:00", 840),
        ] {
            assert_eq!(parse_offset(text), Some(minutes), "{text}");
        }
        for bad in ["2", "+2:00", "+15:00", "+01:60", "CET", ""] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert_eq!(format_offset(-330), "-05:30");
        assert_eq!(format_offset(60), "+01:00");
    }

    #[test]
    fn days_and_runs_follow_the_offset() {
        let day = parse_day("2026-11-30").unwrap();
        assert_eq!(
            day_bounds(day, 0),
            (NOV_30_2026_UTC, NOV_30_2026_UTC + DAY_MS - 1)
        );
        // In +01:00 the day starts an hour earlier in UTC.
        assert_eq!(day_bounds(day, 60).0, NOV_30_2026_UTC - 3_600_000);
        // 2026-12-01 00:30 UTC is still 2026-11-30 in -01:00.
        let t = NOV_30_2026_UTC + DAY_MS + 1_800_000;
        assert_eq!(format_day(previous_day(t, 0)), "2026-11-30");
        assert_eq!(format_day(previous_day(t, -60)), "2026-11-29");
        // The next 01:00 UTC after 00:30 is the same day's; after 01:00, the next day's.
        assert_eq!(next_run_ms(t, 0, 1), NOV_30_2026_UTC + DAY_MS + 3_600_000);
        assert_eq!(
            next_run_ms(NOV_30_2026_UTC + DAY_MS + 3_600_000, 0, 1),
            NOV_30_2026_UTC + 2 * DAY_MS + 3_600_000
        );
        assert_eq!(file_name("2026-11-30", PushFormat::Csv), "calls-2026-11-30.csv");
    }
}
