//! The FTP and FTPS (explicit TLS, `AUTH TLS`) server, on libunftp.
//!
//! Each tenant logs in with its slug and password, each of its users as
//! `NAME@TENANT` with its own, and is jailed in the tenant's
//! directory (libunftp's filesystem back-end opens the home directory as a
//! capability: no path, `..` or symlink reaches outside it). Our storage
//! wrapper enforces the upload policy (size limit, no `REST` past the end of
//! a file, the ingest budget) and the file-count limit, and tells the [`Dropbox`]
//! when a file is being written; libunftp's data events tell it when a
//! transfer completed (`STOR`/`APPE`) or a temporary name was renamed, and
//! the reply to the client's command is sent after the upload is processed.

use std::fmt::{self, Debug, Display};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use callmeta_app::store::Role;
use callmeta_app::usecases::connections::ConnectionCaps;
use callmeta_app::usecases::tables::Channel;
use callmeta_app::usecases::{AppError, audit, tenants, uploads, users};
use libunftp::ServerBuilder;
use libunftp::notification::{DataEvent, DataListener, EventMeta};
use libunftp::options::{FtpsRequired, PassiveHost};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use unftp_core::storage::{self, ErrorKind, Fileinfo, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

use crate::dropbox::Dropbox;
use crate::tree::{Destination, DropPath};
use crate::{FileDropSettings, count_files};

/// A logged-in tenant or user, jailed in the tenant's home directory.
#[derive(Debug, Clone)]
pub struct TenantUser {
    slug: String,
    /// `alice@acme`, or the slug for the tenant's own login.
    login: String,
    /// What its writes may be (an analyst's are refused with 550).
    role: Role,
    home: PathBuf,
    /// The address the session logged in from.
    source: Option<IpAddr>,
}

impl Display for TenantUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.login)
    }
}

impl UserDetail for TenantUser {
    fn home(&self) -> Option<&Path> {
        Some(&self.home)
    }
}

#[derive(Debug)]
struct PasswordCheck {
    dropbox: Arc<Dropbox>,
}

#[async_trait]
impl Authenticator for PasswordCheck {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or("");
        let services = self.dropbox.services();
        match tenants::log_in(services, username, password, creds.source_ip, audit::Channel::Ftp).await {
            // The principal carries the session's role and address to its
            // user (a login name has no `/`), whose uploads are then
            // checked and audited with them.
            Ok(identity) => Ok(Principal {
                username: format!(
                    "{}/{}/{}",
                    identity.login_name(),
                    identity.role.as_str(),
                    creds.source_ip
                ),
            }),
            Err(AppError::Unauthorized) => Err(AuthenticationError::BadPassword),
            Err(e @ AppError::Throttled { .. }) => Err(AuthenticationError::new(e.to_string())),
            Err(e) => Err(AuthenticationError::with_source(
                "the login could not be checked",
                e,
            )),
        }
    }
}

#[derive(Debug)]
struct Homes {
    dropbox: Arc<Dropbox>,
}

#[async_trait]
impl UserDetailProvider for Homes {
    type User = TenantUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<TenantUser, UserDetailError> {
        let mut parts = principal.username.splitn(3, '/');
        let login = parts.next().unwrap_or_default();
        // No role, no rights: a principal is always made with one.
        let role = parts.next().and_then(Role::parse);
        let source = parts.next().and_then(|s| s.parse().ok());
        let Some(role) = role else {
            return Err(UserDetailError::Generic(format!(
                "the login {login:?} carries no role"
            )));
        };
        let (_, slug) = users::parse_login(login);
        let tenant = tenants::tenant_by_slug(self.dropbox.services(), slug)
            .await
            .map_err(|e| UserDetailError::with_source("unknown tenant", e))?;
        let home = self
            .dropbox
            .home(&tenant)
            .await
            .map_err(|e| UserDetailError::with_source("preparing the home directory", e))?;
        Ok(TenantUser {
            slug: tenant.slug.as_str().to_string(),
            login: login.to_string(),
            role,
            home,
            source,
        })
    }
}

/// libunftp's filesystem back-end, with our limits and completion tracking.
#[derive(Debug)]
struct DropFs {
    /// `None` when the drop directory could not be opened: every command
    /// then fails with a local error instead of the session crashing.
    inner: Option<Filesystem>,
    dropbox: Arc<Dropbox>,
    max_file_bytes: u64,
    max_files: u64,
    /// Longest pause in an upload's data.
    idle: std::time::Duration,
}

impl DropFs {
    fn fs(&self) -> storage::Result<&Filesystem> {
        self.inner
            .as_ref()
            .ok_or_else(|| storage::Error::new(ErrorKind::LocalError, "the drop directory is not available"))
    }

    fn host_path<P: AsRef<Path>>(&self, user: &TenantUser, path: P) -> storage::Result<(DropPath, PathBuf)> {
        let text = path.as_ref().to_string_lossy();
        let parsed =
            DropPath::parse(&text).map_err(|e| storage::Error::new(ErrorKind::FileNameNotAllowedError, e))?;
        let file = self.dropbox.tree().file(&user.slug, &parsed);
        Ok((parsed, file))
    }

    /// 550 unless the login may write at `path`, as its role is now (a
    /// user disabled or given another role since it logged in is held to
    /// that at once).
    async fn may_write(&self, user: &TenantUser, path: &Path) -> storage::Result<DropPath> {
        let (parsed, _) = self.host_path(user, path)?;
        users::require(user.role, parsed.write_action()).map_err(refusal)?;
        users::require_now(self.dropbox.services(), &user.login, parsed.write_action())
            .await
            .map_err(refusal)?;
        Ok(parsed)
    }
}

#[async_trait]
impl StorageBackend<TenantUser> for DropFs {
    type Metadata = Meta;

    fn enter(&mut self, user: &TenantUser) -> std::io::Result<()> {
        match self.inner.as_mut() {
            Some(fs) => StorageBackend::<TenantUser>::enter(fs, user),
            None => Err(std::io::Error::other("the drop directory is not available")),
        }
    }

    fn supported_features(&self) -> u32 {
        match &self.inner {
            Some(fs) => StorageBackend::<TenantUser>::supported_features(fs),
            None => 0,
        }
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TenantUser,
        path: P,
    ) -> storage::Result<Meta> {
        self.fs()?.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TenantUser,
        path: P,
    ) -> storage::Result<Vec<Fileinfo<PathBuf, Meta>>> {
        let mut list = self.fs()?.list(user, path).await?;
        // Reports being written and other hidden working files stay hidden.
        list.retain(|f| {
            !f.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".") && n.ends_with(".writing"))
        });
        Ok(list)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TenantUser,
        path: P,
        start_pos: u64,
    ) -> storage::Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        self.fs()?.get(user, path, start_pos).await
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &TenantUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> storage::Result<u64> {
        let (_, file) = self.host_path(user, &path)?;
        let parsed = self.may_write(user, path.as_ref()).await?;
        let path = parsed.display();
        let current = tokio::fs::metadata(&file).await.ok().map(|m| m.len());
        if current.is_none() && count_files(&user.home).await >= self.max_files {
            return Err(storage::Error::new(
                ErrorKind::ExceededStorageAllocationError,
                format!(
                    "at most {} files per account: delete processed files first",
                    self.max_files
                ),
            ));
        }
        // REST past the end of the file would leave a hole of zeros.
        let services = self.dropbox.services();
        uploads::check_write(services, start_pos, 0, current.unwrap_or(0)).map_err(refusal)?;
        if !matches!(parsed.destination(), Destination::Calls) {
            uploads::admit(services).map_err(refusal)?;
        }
        self.dropbox.writing(&file);
        if let Some(source) = user.source {
            self.dropbox.written_from(&file, source);
        }
        let limit = self.max_file_bytes.saturating_sub(start_pos);
        let input = crate::IdleReader::new(input, self.idle).take(limit + 1);
        let result = self.fs()?.put(user, input, path, start_pos).await;
        match result {
            Ok(written) if written > limit => {
                self.dropbox.aborted(&file).await;
                Err(storage::Error::new(
                    ErrorKind::ExceededStorageAllocationError,
                    format!("files are limited to {} bytes", self.max_file_bytes),
                ))
            }
            Ok(written) => Ok(written),
            Err(e) => {
                self.dropbox.aborted(&file).await;
                Err(e)
            }
        }
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &TenantUser, path: P) -> storage::Result<()> {
        self.may_write(user, path.as_ref()).await?;
        self.fs()?.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &TenantUser, path: P) -> storage::Result<()> {
        let parsed = self.may_write(user, path.as_ref()).await?;
        if parsed.parts().len() > 1 {
            return Err(storage::Error::new(
                ErrorKind::PermissionDenied,
                "folders go at the root only: one per table",
            ));
        }
        self.fs()?.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TenantUser,
        from: P,
        to: P,
    ) -> storage::Result<()> {
        self.may_write(user, from.as_ref()).await?;
        self.may_write(user, to.as_ref()).await?;
        let target = self.host_path(user, &to).ok().map(|(_, file)| file);
        self.fs()?.rename(user, from, to).await?;
        if let (Some(file), Some(source)) = (target, user.source) {
            self.dropbox.written_from(&file, source);
        }
        Ok(())
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &TenantUser, path: P) -> storage::Result<()> {
        self.may_write(user, path.as_ref()).await?;
        self.fs()?.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &TenantUser, path: P) -> storage::Result<()> {
        self.fs()?.cwd(user, path).await
    }
}

/// An upload refused by the upload policy, as the FTP reply it calls for:
/// 552 (over the size limit), 452 (the ingest budget is taken), 550.
fn refusal(e: AppError) -> storage::Error {
    let kind = match &e {
        AppError::TooLarge(_) => ErrorKind::ExceededStorageAllocationError,
        AppError::Busy { .. } => ErrorKind::InsufficientStorageSpaceError,
        _ => ErrorKind::PermissionDenied,
    };
    tracing::info!(error = %e, "FTP upload refused");
    storage::Error::new(kind, e.to_string())
}

/// Processes an upload when its transfer completed, before the reply.
#[derive(Debug)]
struct Completions {
    dropbox: Arc<Dropbox>,
}

#[async_trait]
impl DataListener for Completions {
    async fn receive_data_event(&self, event: DataEvent, meta: EventMeta) {
        let path = match event {
            DataEvent::Put { path, .. } => path,
            DataEvent::Renamed { to, .. } => to,
            _ => return,
        };
        self.dropbox
            .completed(&meta.username, &path, Channel::Ftp, None)
            .await;
    }
}

/// A bound FTP listener, ready to serve.
pub struct FtpServer {
    listener: TcpListener,
    dropbox: Arc<Dropbox>,
    settings: FileDropSettings,
    tls: Option<(PathBuf, PathBuf)>,
}

impl FtpServer {
    /// Binds the control port (0 picks one). `tls` is the certificate and key
    /// (PEM files) for `AUTH TLS`.
    pub async fn bind(
        addr: &str,
        dropbox: Arc<Dropbox>,
        settings: FileDropSettings,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> std::io::Result<FtpServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(FtpServer {
            listener,
            dropbox,
            settings,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn server(&self) -> Result<libunftp::Server<DropFs, TenantUser>, libunftp::ServerError> {
        let dropbox = self.dropbox.clone();
        let root = dropbox.tree().root().to_path_buf();
        let max_file_bytes = dropbox.services().limits.max_file_bytes;
        let max_files = self.settings.max_files;
        let idle = std::time::Duration::from_secs(self.settings.idle_secs.max(1));
        let storage_dropbox = dropbox.clone();
        let mut builder = ServerBuilder::with_user_detail_provider(
            Box::new(move || DropFs {
                inner: Filesystem::new(root.clone())
                    .inspect_err(|e| tracing::error!(error = %e, "opening the drop directory failed"))
                    .ok(),
                dropbox: storage_dropbox.clone(),
                max_file_bytes,
                max_files,
                idle,
            }),
            Arc::new(Homes {
                dropbox: dropbox.clone(),
            }),
        )
        .authenticator(Arc::new(PasswordCheck {
            dropbox: dropbox.clone(),
        }))
        .greeting("callmeta FTP: log in as TENANT or USER@TENANT with your password")
        .notify_data(Completions { dropbox })
        .passive_ports(self.settings.passive_port_range())
        .idle_session_timeout(self.settings.idle_secs.max(1));
        if let Some(host) = &self.settings.passive_host {
            builder = match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => builder.passive_host(PassiveHost::Ip(ip)),
                Err(_) => builder.passive_host(PassiveHost::Dns(host.clone())),
            };
        }
        if let Some((cert, key)) = &self.tls {
            builder = builder.ftps(cert.clone(), key.clone());
            if self.settings.tls_required {
                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
            }
        }
        builder.build()
    }

    /// Serves until the task is dropped: every connection within the caps
    /// gets its own session; one over them is answered `421` and closed.
    pub async fn run(self) {
        let caps = ConnectionCaps::new(
            self.settings.max_connections,
            self.settings.max_connections_per_address,
        );
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an FTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match caps.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refused) => {
                    tracing::debug!(%peer, %refused, "FTP connection refused");
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let reply = format!("421 {refused}; try again later\r\n");
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                            stream.write_all(reply.as_bytes()).await?;
                            stream.shutdown().await
                        })
                        .await;
                    });
                    continue;
                }
            };
            match self.server() {
                Ok(server) => {
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = server.service(stream).await {
                            tracing::debug!(%peer, error = ?e, "FTP session ended with an error");
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "the FTP server cannot be configured"),
            }
        }
    }
}
