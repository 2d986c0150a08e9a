//! The SFTP server, on russh and russh-sftp, over the same tree as FTP.
//!
//! Tenants log in with their slug and password, their users as `NAME@TENANT`
//! with their own, or with a public key added by `callmeta tenant add-key`
//! (`callmeta user add-key` for a user's). An analyst's writes are refused
//! (permission denied). A file written over SFTP is complete when the
//! client closes its handle (`SSH_FXP_CLOSE`); a session that ends with a
//! file still open for writing was cut off, and the partial file is removed.
//! The close is answered after the upload is processed, so `sftp put`
//! returns once the version is recorded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callmeta_app::store::Role;
use callmeta_app::usecases::connections::ConnectionCaps;
use callmeta_app::usecases::tables::Channel;
use callmeta_app::usecases::users::{self, Identity};
use callmeta_app::usecases::{AppError, audit, tenants, uploads};
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel as SshChannel, ChannelId, MethodKind, MethodSet};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::dropbox::Dropbox;
use crate::tree::{Destination, DropPath};
use crate::{FileDropSettings, count_files};

/// A bound SFTP listener, ready to serve.
pub struct SftpServer {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
}

struct Shared {
    dropbox: Arc<Dropbox>,
    max_files: u64,
    caps: ConnectionCaps,
}

impl SftpServer {
    pub async fn bind(
        addr: &str,
        dropbox: Arc<Dropbox>,
        settings: &FileDropSettings,
        host_key: PrivateKey,
    ) -> std::io::Result<SftpServer> {
        let listener = TcpListener::bind(addr).await?;
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::Password);
        methods.push(MethodKind::PublicKey);
        let config = russh::server::Config {
            methods,
            keys: vec![host_key],
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(settings.idle_secs.max(1))),
            max_auth_attempts: 6,
            ..Default::default()
        };
        Ok(SftpServer {
            listener,
            config: Arc::new(config),
            shared: Arc::new(Shared {
                dropbox,
                max_files: settings.max_files,
                caps: ConnectionCaps::new(settings.max_connections, settings.max_connections_per_address),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an SFTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match self.shared.caps.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refused) => {
                    tracing::debug!(%peer, %refused, "SFTP connection refused");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = SshSession {
                shared: self.shared.clone(),
                peer: peer.ip(),
                tenant: None,
                channels: HashMap::new(),
            };
            let config = self.config.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(session) => {
                        if let Err(e) = session.await {
                            tracing::debug!(%peer, error = %e, "SFTP session ended with an error");
                        }
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "SFTP handshake failed"),
                }
            });
        }
    }
}

/// The logged-in tenant or user of one SSH connection.
#[derive(Clone)]
struct LoggedIn {
    slug: String,
    /// `alice@acme`, or the slug for the tenant's own login.
    login: String,
    /// What its writes may be (an analyst's are refused).
    role: Role,
    home: PathBuf,
    /// The address the session came from.
    peer: IpAddr,
}

struct SshSession {
    shared: Arc<Shared>,
    peer: IpAddr,
    tenant: Option<LoggedIn>,
    channels: HashMap<ChannelId, SshChannel<Msg>>,
}

impl SshSession {
    async fn logged_in(&mut self, identity: Identity) -> Result<Auth, anyhow::Error> {
        let home = self.shared.dropbox.home(&identity.tenant).await?;
        self.tenant = Some(LoggedIn {
            slug: identity.tenant.slug.as_str().to_string(),
            login: identity.login_name(),
            role: identity.role,
            home,
            peer: self.peer,
        });
        Ok(Auth::Accept)
    }

    fn logins(&self) -> &callmeta_app::usecases::logins::LoginThrottle {
        &self.shared.dropbox.services().logins
    }
}

impl russh::server::Handler for SshSession {
    type Error = anyhow::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        match tenants::log_in(
            self.shared.dropbox.services(),
            user,
            password,
            self.peer,
            audit::Channel::Sftp,
        )
        .await
        {
            Ok(identity) => self.logged_in(identity).await,
            Err(AppError::Unauthorized | AppError::Throttled { .. }) => Ok(Auth::reject()),
            Err(e) => Err(e.into()),
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.logins().check(user, self.peer).is_err() {
            return Ok(Auth::reject());
        }
        if self.key_known(user, offer.public_key).await.is_some() {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.logins().check(user, self.peer).is_ok()
            && let Some(identity) = self.key_known(user, key.public_key).await
        {
            self.logins().succeeded(user, self.peer);
            let services = self.shared.dropbox.services();
            let actor = audit::Actor::new(identity.login_name(), Some(self.peer), audit::Channel::Sftp);
            audit::key_login(services, &identity.tenant.id, &actor).await;
            return self.logged_in(identity).await;
        }
        tracing::info!(user, from = %self.peer, "SFTP key login failed");
        self.logins().failed(user, self.peer);
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: SshChannel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.tenant.is_some() {
            self.channels.insert(channel.id(), channel);
            reply.accept().await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(tenant), Some(channel)) = (self.tenant.clone(), self.channels.remove(&channel_id)) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        if name != "sftp" {
            session.channel_failure(channel_id)?;
            return Ok(());
        }
        session.channel_success(channel_id)?;
        let handler = SftpSession {
            shared: self.shared.clone(),
            tenant,
            handles: HashMap::new(),
            next_handle: 0,
        };
        russh_sftp::server::run(channel.into_stream(), handler).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}

impl SshSession {
    /// The login (`acme` or `alice@acme`) whose keys hold `key`, if it
    /// may log in.
    async fn key_known(&self, user: &str, key: &russh::keys::PublicKey) -> Option<Identity> {
        let offered = crate::keys::canonical_public_key(key)?;
        let services = self.shared.dropbox.services();
        match users::public_keys(services, user).await {
            Ok(Some((identity, keys))) if keys.contains(&offered) => Some(identity),
            _ => None,
        }
    }
}

enum Open {
    File {
        file: tokio::fs::File,
        path: DropPath,
        host: PathBuf,
        writing: bool,
        /// A write was refused (limit): the upload is discarded at close.
        failed: bool,
        /// The file's length: a write may start at most there (no holes).
        size: u64,
        append: bool,
    },
    Dir {
        host: PathBuf,
        listed: bool,
    },
}

struct SftpSession {
    shared: Arc<Shared>,
    tenant: LoggedIn,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

impl Drop for SftpSession {
    fn drop(&mut self) {
        // Files still open for writing when the session ends were cut off.
        for open in self.handles.values() {
            if let Open::File {
                host, writing: true, ..
            } = open
            {
                let dropbox = self.shared.dropbox.clone();
                let host = host.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { dropbox.aborted(&host).await });
                }
            }
        }
    }
}

fn status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

/// An upload refused by the upload policy (too large, a write that would
/// leave a hole, the ingest budget taken), as an SFTP failure status.
fn refusal(e: AppError) -> StatusReply {
    tracing::info!(error = %e, "SFTP write refused");
    StatusCode::Failure.with_message(e.to_string())
}

fn io_error(e: std::io::Error) -> StatusReply {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

impl SftpSession {
    fn resolve(&self, path: &str) -> Result<(DropPath, PathBuf), StatusReply> {
        let parsed =
            DropPath::parse(path).map_err(|e| StatusCode::PermissionDenied.with_message(e.to_string()))?;
        let host = self.shared.dropbox.tree().file(&self.tenant.slug, &parsed);
        Ok((parsed, host))
    }

    /// Refuses symbolic links anywhere below the home: nothing a client does
    /// creates one, and none may lead out of the tree.
    async fn no_symlinks(&self, path: &DropPath) -> Result<(), StatusReply> {
        let mut host = self.tenant.home.clone();
        for part in path.parts() {
            host.push(part);
            if let Ok(meta) = tokio::fs::symlink_metadata(&host).await
                && meta.file_type().is_symlink()
            {
                return Err(StatusCode::PermissionDenied.with_message("symbolic links are not followed"));
            }
        }
        Ok(())
    }

    /// Permission denied unless the login may write at `path`, as its role
    /// is now (a user disabled or given another role since it logged in is
    /// held to that at once).
    async fn may_write(&self, path: &DropPath) -> Result<(), StatusReply> {
        let action = path.write_action();
        let now = match users::require(self.tenant.role, action) {
            Ok(()) => users::require_now(self.shared.dropbox.services(), &self.tenant.login, action).await,
            Err(e) => Err(e),
        };
        now.map_err(|e| {
            tracing::info!(login = %self.tenant.login, error = %e, "SFTP write refused");
            match e {
                AppError::Forbidden(_) => StatusCode::PermissionDenied.with_message(e.to_string()),
                e => StatusCode::Failure.with_message(e.to_string()),
            }
        })
    }

    fn new_handle(&mut self, open: Open) -> String {
        self.next_handle += 1;
        let handle = format!("h{}", self.next_handle);
        self.handles.insert(handle.clone(), open);
        handle
    }
}

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let (parsed, _) = self.resolve(&path)?;
        Ok(Name {
            id,
            files: vec![File::dummy(parsed.display())],
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let (path, host) = self.resolve(&filename)?;
        self.no_symlinks(&path).await?;
        let writing = pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE);
        if path.parts().is_empty() {
            return Err(StatusCode::Failure.with_message("not a file"));
        }
        let file = if writing {
            self.may_write(&path).await?;
            let exists = tokio::fs::metadata(&host).await.is_ok();
            if !matches!(path.destination(), Destination::Calls) {
                uploads::admit(self.shared.dropbox.services()).map_err(refusal)?;
            }
            if !exists && count_files(&self.tenant.home).await >= self.shared.max_files {
                return Err(StatusCode::Failure.with_message(format!(
                    "at most {} files per account: delete processed files first",
                    self.shared.max_files
                )));
            }
            let mut options = tokio::fs::OpenOptions::new();
            options
                .write(true)
                .read(pflags.contains(OpenFlags::READ))
                .create(pflags.contains(OpenFlags::CREATE))
                .truncate(pflags.contains(OpenFlags::TRUNCATE))
                .append(pflags.contains(OpenFlags::APPEND));
            if pflags.contains(OpenFlags::EXCLUDE) {
                options.create_new(true);
            }
            let file = options.open(&host).await.map_err(io_error)?;
            self.shared.dropbox.writing(&host);
            file
        } else {
            tokio::fs::File::open(&host).await.map_err(io_error)?
        };
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let handle = self.new_handle(Open::File {
            file,
            path,
            host,
            writing,
            failed: false,
            size,
            append: pflags.contains(OpenFlags::APPEND),
        });
        Ok(Handle { id, handle })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let services = self.shared.dropbox.services().clone();
        let Some(Open::File {
            file,
            failed,
            size,
            append,
            ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(StatusCode::Failure.with_message("unknown handle"));
        };
        // An append goes to the end whatever the offset says.
        let offset = if *append { *size } else { offset };
        if let Err(e) = uploads::check_write(&services, offset, data.len() as u64, *size) {
            *failed = true;
            return Err(refusal(e));
        }
        let result = async {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            file.write_all(&data).await
        }
        .await;
        if let Err(e) = result {
            *failed = true;
            return Err(io_error(e));
        }
        *size = (*size).max(offset + data.len() as u64);
        Ok(status(id))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let Some(Open::File { file, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("unknown handle"));
        };
        let mut buf = vec![0; len.min(256 * 1024) as usize];
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_error)?;
        let n = file.read(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Err(StatusCode::Eof.into());
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        let Some(open) = self.handles.remove(&handle) else {
            return Err(StatusCode::Failure.with_message("unknown handle"));
        };
        if let Open::File {
            mut file,
            path,
            host,
            writing: true,
            failed,
            ..
        } = open
        {
            let flushed = file.flush().await.and(file.sync_all().await);
            drop(file);
            if failed || flushed.is_err() {
                self.shared.dropbox.aborted(&host).await;
                return Err(StatusCode::Failure.with_message("the upload failed and was discarded"));
            }
            self.shared
                .dropbox
                .completed(
                    &self.tenant.login,
                    &path.display(),
                    Channel::Sftp,
                    Some(self.tenant.peer),
                )
                .await;
        }
        Ok(status(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let (parsed, host) = self.resolve(&path)?;
        self.no_symlinks(&parsed).await?;
        let meta = tokio::fs::metadata(&host).await.map_err(io_error)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = match self.handles.get(&handle) {
            Some(Open::File { file, .. }) => file.metadata().await.map_err(io_error)?,
            Some(Open::Dir { host, .. }) => tokio::fs::metadata(host).await.map_err(io_error)?,
            None => return Err(StatusCode::Failure.with_message("unknown handle")),
        };
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // Times and permissions are the server's to keep; accepted and ignored
        // so `put -p` works.
        Ok(status(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Ok(status(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let (parsed, host) = self.resolve(&path)?;
        self.no_symlinks(&parsed).await?;
        let meta = tokio::fs::metadata(&host).await.map_err(io_error)?;
        if !meta.is_dir() {
            return Err(StatusCode::NoSuchFile.with_message("not a directory"));
        }
        let handle = self.new_handle(Open::Dir { host, listed: false });
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir { host, listed }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("unknown handle"));
        };
        if *listed {
            return Err(StatusCode::Eof.into());
        }
        *listed = true;
        let mut entries = tokio::fs::read_dir(&*host).await.map_err(io_error)?;
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.ends_with(".writing") {
                continue;
            }
            if let Ok(meta) = entry.metadata().await {
                files.push(File::new(name, FileAttributes::from(&meta)));
            }
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let (parsed, host) = self.resolve(&filename)?;
        self.may_write(&parsed).await?;
        self.no_symlinks(&parsed).await?;
        tokio::fs::remove_file(&host).await.map_err(io_error)?;
        Ok(status(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        let (parsed, host) = self.resolve(&path)?;
        self.may_write(&parsed).await?;
        if parsed.parts().len() != 1 {
            return Err(
                StatusCode::PermissionDenied.with_message("folders go at the root only: one per table")
            );
        }
        tokio::fs::create_dir(&host).await.map_err(io_error)?;
        Ok(status(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let (parsed, host) = self.resolve(&path)?;
        if parsed.parts().is_empty() {
            return Err(StatusCode::PermissionDenied.into());
        }
        self.may_write(&parsed).await?;
        self.no_symlinks(&parsed).await?;
        tokio::fs::remove_dir(&host).await.map_err(io_error)?;
        Ok(status(id))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        let (from, from_host) = self.resolve(&oldpath)?;
        let (to, to_host) = self.resolve(&newpath)?;
        self.may_write(&from).await?;
        self.may_write(&to).await?;
        self.no_symlinks(&from).await?;
        self.no_symlinks(&to).await?;
        if from.parts().is_empty() || to.parts().is_empty() {
            return Err(StatusCode::PermissionDenied.into());
        }
        tokio::fs::rename(&from_host, &to_host).await.map_err(io_error)?;
        if tokio::fs::metadata(&to_host).await.is_ok_and(|m| m.is_file()) {
            self.shared
                .dropbox
                .completed(
                    &self.tenant.login,
                    &to.display(),
                    Channel::Sftp,
                    Some(self.tenant.peer),
                )
                .await;
        }
        Ok(status(id))
    }

    async fn symlink(&mut self, _id: u32, _link: String, _target: String) -> Result<Status, Self::Error> {
        Err(StatusCode::PermissionDenied.with_message("symbolic links are not supported"))
    }
}
