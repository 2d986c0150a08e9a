//! The `callmeta` binary: parses the command line and wires things; the work
//! happens in the library.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use callmeta::config::{Config, FlagOverrides};
use callmeta::startup::{App, open_services};
use callmeta_app::clock::SystemClock;
use callmeta_app::usecases::{AppError, audit, siprec, tables, tenants, uploads, users};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "callmeta",
    version,
    about = "Calls enriched with the matching row of your CRM export"
)]
struct Cli {
    /// Configuration file (TOML); default ./callmeta.toml when present.
    #[arg(long, global = true, env = "CALLMETA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded default [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL [default: SQLite in the data dir].
    #[arg(long, global = true)]
    database: Option<String>,
    /// Blob storage URL [default: the data dir].
    #[arg(long, global = true)]
    blobs: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP API and web app (and the other listeners).
    Serve {
        /// HTTP listen address [default: 127.0.0.1:8080].
        #[arg(long)]
        http: Option<String>,
        /// FTP listen address [default: 127.0.0.1:2121].
        #[arg(long)]
        ftp: Option<String>,
        /// SFTP listen address [default: 127.0.0.1:2222].
        #[arg(long)]
        sftp: Option<String>,
        /// SIP listen address, UDP and TCP [default: 127.0.0.1:5060].
        #[arg(long)]
        sip: Option<String>,
        /// Tenant of SIPREC calls that name none.
        #[arg(long)]
        sip_default_tenant: Option<String>,
        /// Also serve GET /metrics on this address (a listener of its own).
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's users (each with its own login and role).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage reference tables.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
    /// Read a tenant's calls.
    Calls {
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Print the effective configuration as a commented example file.
    PrintConfig,
    /// Bring the database schema up to date, then exit (nodes also do it at start).
    Migrate,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its API token (shown once) as JSON.
    Create {
        slug: String,
        /// The tenant's FTP/SFTP and web password (at least 8 characters).
        #[arg(long, env = "CALLMETA_TENANT_PASSWORD")]
        password: String,
    },
    /// Let a tenant log in over SFTP with an SSH key (an OpenSSH `.pub` file;
    /// every key line in it is added).
    AddKey { slug: String, file: PathBuf },
    /// Register the SBCs that may send SIPREC calls for a tenant (by source
    /// address or CIDR network). A network registered for several tenants is
    /// a shared SBC: its calls select the tenant by the Request-URI user.
    SipSource {
        #[command(subcommand)]
        command: SipSourceCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user to a tenant; it logs in as NAME@TENANT (web app, FTP,
    /// SFTP) with its password.
    Create {
        slug: String,
        name: String,
        /// `admin`, `analyst` or `uploader`.
        #[arg(long)]
        role: String,
        /// Its password (at least 8 characters).
        #[arg(long, env = "CALLMETA_USER_PASSWORD")]
        password: String,
    },
    /// List a tenant's users (the tenant's own login, its slug, is its
    /// first admin and not listed).
    List { slug: String },
    /// Disable a user: it can no longer log in, and its web sessions end.
    Disable { slug: String, name: String },
    /// Enable a disabled user again.
    Enable { slug: String, name: String },
    /// Let a user log in over SFTP with an SSH key (an OpenSSH `.pub` file;
    /// every key line in it is added).
    AddKey {
        slug: String,
        name: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum SipSourceCommand {
    /// Register a network (`192.0.2.10`, `192.0.2.0/24`, `2001:db8::/32`).
    Add { slug: String, network: String },
    /// Remove a registered network.
    Remove { slug: String, network: String },
    /// List a tenant's registered networks.
    List { slug: String },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Import a CSV file as a new version of a table, with a progress bar.
    Import {
        tenant: String,
        table: String,
        file: PathBuf,
        /// Create the table with this key column if it does not exist yet.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
enum CallsCommand {
    /// Write every call matching the filters, newest first, as CSV or
    /// NDJSON (the API's `GET /api/v1/calls/export`).
    Export {
        tenant: String,
        /// `csv` or `ndjson`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Start the CSV with a UTF-8 byte order mark (for Excel).
        #[arg(long)]
        bom: bool,
        /// A filter as in the API's query string, e.g.
        /// `metadata.team_name=diamond`, `enrichment.crm=no_match`,
        /// `timestamp_from=2026-01-01T00:00:00Z`; repeat for several.
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filters: Vec<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    callmeta::memory::fix_mmap_threshold();
    let cli = Cli::parse();
    // Built before the runtime: the exporter's HTTP client blocks on a
    // thread of its own. Only a server exports its spans.
    let traces = if matches!(cli.command, Command::Serve { .. }) {
        match callmeta::telemetry::otlp_from_env() {
            Ok(provider) => provider,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli, traces.as_ref())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    drop(runtime);
    // Sends what is still queued.
    if let Some(provider) = traces
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: flushing the trace export: {e}");
    }
    code
}

async fn run(
    cli: Cli,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> anyhow::Result<std::process::ExitCode> {
    let mut flags = FlagOverrides {
        data_dir: cli.data_dir,
        database: cli.database,
        blobs: cli.blobs,
        ..Default::default()
    };
    if let Command::Serve {
        http,
        ftp,
        sftp,
        sip,
        sip_default_tenant,
        metrics,
    } = &cli.command
    {
        flags.metrics = metrics
            .clone()
            .map(|listen| callmeta::config::MetricsFlags { listen });
        flags.http = http.clone();
        flags.ftp = ftp.clone();
        flags.sftp = sftp.clone();
        flags.sip = sip.clone();
        flags.sip_default_tenant = sip_default_tenant.clone();
    }
    let config = Config::load(cli.config.as_deref(), flags).context("reading the configuration")?;
    init_tracing(&config, matches!(cli.command, Command::Serve { .. }), traces);
    match cli.command {
        Command::Serve { .. } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            let metrics = app
                .metrics_addr()
                .map(|a| format!(" metrics=http://{a}/metrics"))
                .unwrap_or_default();
            println!(
                "callmeta listening: http://{} ftp://{} sftp://{} sip:{}{metrics}",
                app.http_addr(),
                app.ftp_addr(),
                app.sftp_addr(),
                app.sip_addr()
            );
            app.run_until(shutdown_signal()).await?;
        }
        Command::PrintConfig => print!("{}", config.to_commented_toml()),
        Command::Migrate => {
            open_services(&config, Arc::new(SystemClock)).await?;
            println!("the database schema is up to date");
        }
        Command::Tenant {
            command: TenantCommand::Create { slug, password },
        } => {
            let services = open_services(&config, Arc::new(SystemClock)).await?;
            let created = tenants::create_tenant(&services, &slug, &password)
                .await
                .map_err(user_error)?;
            println!("{}", serde_json::to_string_pretty(&created)?);
        }
        Command::Tenant {
            command: TenantCommand::AddKey { slug, file },
        } => {
            let keys = read_public_keys(&file)?;
            let services = open_services(&config, Arc::new(SystemClock)).await?;
            for (key, comment) in &keys {
                users::add_public_key(&services, &slug, key, comment, &audit::Actor::cli())
                    .await
                    .map_err(user_error)?;
            }
            println!(
                "{}",
                serde_json::json!({"tenant": slug, "keys_added": keys.len()})
            );
        }
        Command::User { command } => {
            let services = open_services(&config, Arc::new(SystemClock)).await?;
            let cli = audit::Actor::cli();
            let out = match command {
                UserCommand::Create {
                    slug,
                    name,
                    role,
                    password,
                } => {
                    let tenant = tenants::tenant_by_slug(&services, &slug)
                        .await
                        .map_err(user_error)?;
                    let user = users::create_user(&services, &tenant, &name, &role, &password, &cli)
                        .await
                        .map_err(user_error)?;
                    serde_json::to_value(user)?
                }
                UserCommand::List { slug } => {
                    let tenant = tenants::tenant_by_slug(&services, &slug)
                        .await
                        .map_err(user_error)?;
                    serde_json::json!({
                        "tenant": slug,
                        "users": users::list_users(&services, &tenant).await.map_err(user_error)?,
                    })
                }
                UserCommand::Disable { slug, name } => {
                    set_disabled(&services, &slug, &name, true, &cli).await?
                }
                UserCommand::Enable { slug, name } => {
                    set_disabled(&services, &slug, &name, false, &cli).await?
                }
                UserCommand::AddKey { slug, name, file } => {
                    let keys = read_public_keys(&file)?;
                    let login = users::login_name(&slug, Some(&name));
                    for (key, comment) in &keys {
                        users::add_public_key(&services, &login, key, comment, &cli)
                            .await
                            .map_err(user_error)?;
                    }
                    serde_json::json!({"login": login, "keys_added": keys.len()})
                }
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Tenant {
            command: TenantCommand::SipSource { command },
        } => {
            let services = open_services(&config, Arc::new(SystemClock)).await?;
            let out = match command {
                SipSourceCommand::Add { slug, network } => {
                    let (network, added) = siprec::add_sip_source(&services, &slug, &network)
                        .await
                        .map_err(user_error)?;
                    serde_json::json!({"tenant": slug, "network": network, "added": added})
                }
                SipSourceCommand::Remove { slug, network } => {
                    let network = siprec::remove_sip_source(&services, &slug, &network)
                        .await
                        .map_err(user_error)?;
                    serde_json::json!({"tenant": slug, "network": network, "removed": true})
                }
                SipSourceCommand::List { slug } => {
                    let networks = siprec::list_sip_sources(&services, &slug)
                        .await
                        .map_err(user_error)?;
                    serde_json::json!({"tenant": slug, "networks": networks})
                }
            };
            println!("{out}");
        }
        Command::Calls {
            command:
                CallsCommand::Export {
                    tenant,
                    format,
                    bom,
                    filters,
                    output,
                },
        } => {
            export_calls(&config, &tenant, &format, bom, &filters, output.as_deref()).await?;
        }
        Command::Table {
            command:
                TableCommand::Import {
                    tenant,
                    table,
                    file,
                    key,
                },
        } => {
            return import(&config, &tenant, &table, &file, key.as_deref()).await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn export_calls(
    config: &Config,
    tenant: &str,
    format: &str,
    bom: bool,
    filters: &[String],
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use callmeta_app::usecases::calls;
    use callmeta_app::usecases::export::{Export, ExportFormat};
    use std::io::Write;
    let format = match format {
        "csv" => ExportFormat::Csv { bom },
        "ndjson" => ExportFormat::Ndjson,
        other => anyhow::bail!("--format must be csv or ndjson, not {other:?}"),
    };
    let mut pairs = Vec::new();
    for filter in filters {
        let Some((name, value)) = filter.split_once('=') else {
            anyhow::bail!("--filter must be NAME=VALUE, not {filter:?}");
        };
        pairs.push((name.to_string(), value.to_string()));
    }
    let query =
        calls::parse_call_query(&pairs).map_err(|e| anyhow::anyhow!("--filter {}: {e}", e.field()))?;
    let services = open_services(config, Arc::new(SystemClock)).await?;
    let tenant = tenants::tenant_by_slug(&services, tenant)
        .await
        .map_err(user_error)?;
    let mut export = Export::start(&services, &tenant.id, &query, format)
        .await
        .map_err(user_error)?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    while let Some(chunk) = export
        .next_chunk(&services, &tenant.id)
        .await
        .map_err(user_error)?
    {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(())
}

/// Every key line of an OpenSSH `.pub` file, checked: `(ALGORITHM BASE64,
/// comment)`.
fn read_public_keys(file: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let key = callmeta_filedrop::keys::parse_public_key_line(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        anyhow::bail!("{}: no public key in the file", file.display());
    }
    Ok(keys)
}

async fn set_disabled(
    services: &callmeta_app::usecases::Services,
    slug: &str,
    name: &str,
    disabled: bool,
    actor: &audit::Actor,
) -> anyhow::Result<serde_json::Value> {
    let tenant = tenants::tenant_by_slug(services, slug)
        .await
        .map_err(user_error)?;
    let change = users::UserChange {
        disabled: Some(disabled),
        ..Default::default()
    };
    let user = users::update_user(services, &tenant, name, change, actor)
        .await
        .map_err(user_error)?;
    Ok(serde_json::to_value(user)?)
}

fn user_error(e: AppError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn import(
    config: &Config,
    tenant: &str,
    table: &str,
    file: &std::path::Path,
    key: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let services = open_services(config, Arc::new(SystemClock)).await?;
    let tenant = tenants::tenant_by_slug(&services, tenant)
        .await
        .map_err(user_error)?;
    let name = tables::parse_table_name(table).map_err(user_error)?;
    let missing = match tables::require_table(&services, &tenant.id, &name).await {
        Ok(_) => false,
        Err(AppError::NotFound(_)) => true,
        Err(e) => return Err(user_error(e)),
    };
    if let Some(key) = key
        && missing
    {
        let options = callmeta_core::csv::TableOptions {
            key: callmeta_core::domain::ColumnName::parse(key)?,
            max_row_drop_pct: None,
            on_header_change: Default::default(),
            as_of: Default::default(),
            valid_from: None,
            valid_to: None,
            keys: None,
            match_mode: Default::default(),
            region: None,
            duplicates: Default::default(),
            bad_rows: Default::default(),
        };
        tables::configure_table(&services, &tenant.id, &name, options, &audit::Actor::cli())
            .await
            .map_err(user_error)?;
    }
    // The file is refused from its size before anything is read, and
    // copied into the spool as it is read (still refused past the limit).
    let upload = uploads::Received::from_file(&services, file)
        .await
        .map_err(user_error)?;
    let bar = indicatif::ProgressBar::new(upload.len());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} ingesting [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress_bar = bar.clone();
    let filename = file.file_name().map(|f| f.to_string_lossy().into_owned());
    let outcome = tables::upload_reference_table(
        &services,
        &tenant.id,
        &name,
        upload,
        tables::Channel::Cli,
        filename,
        Some(Box::new(move |done| progress_bar.set_position(done))),
        &audit::Actor::cli(),
    )
    .await
    .map_err(user_error)?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", outcome.version.report.to_text())?;
    if outcome.unchanged {
        writeln!(
            out,
            "unchanged: same content as the active version {}",
            outcome.version.id
        )?;
    } else if outcome.activated {
        writeln!(out, "version {} is now active", outcome.version.id)?;
    } else {
        writeln!(out, "rejected: the previous version stays active")?;
        return Ok(std::process::ExitCode::from(2));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Logs to standard error, filtered by `RUST_LOG` or `[log]`; with
/// `traces`, the same spans (and events) are exported over OTLP.
fn init_tracing(
    config: &Config,
    serving: bool,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if serving { config.log.as_str() } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(traces.map(callmeta::telemetry::layer))
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
