//! A day's file to an SFTP server: connect to an allowed address, check
//! the host key, log in, write a temporary file, rename it over the final
//! name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callmeta_app::usecases::Services;
use callmeta_app::usecases::export_push::{DuePush, SftpDestination};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use crate::{Pages, Written, resolve};

/// The most one SFTP write request carries (OpenSSH takes up to 256 KiB;
/// every server takes 32 KiB).
const WRITE_BYTES: usize = 32 * 1024;
/// Connecting, the SSH handshake and login, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The OpenSSH extension that renames over an existing file atomically.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// Checks the server's host key against the pin (or accepts any, when the
/// tenant said so), and keeps the fingerprint it saw for the error.
struct HostKeyCheck {
    pinned: Option<String>,
    accept_any: bool,
    seen: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let fingerprint = fingerprint.trim_end_matches('=').to_string();
        let ok = self.accept_any || self.pinned.as_deref() == Some(fingerprint.as_str());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint);
        }
        Ok(ok)
    }
}

fn join(directory: &str, name: &str) -> String {
    let dir = directory.trim_end_matches('/');
    if dir.is_empty() && directory.starts_with('/') {
        format!("/{name}")
    } else if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Writes the day's file; the error says which step failed.
pub(crate) async fn push(
    services: &Services,
    due: &DuePush,
    d: &SftpDestination,
    written: &mut Written,
) -> Result<(), String> {
    let allow_private = services.webhooks.settings().allow_private;
    let addrs = resolve(&d.host, d.port, allow_private).await?;
    let where_ = format!("{}:{}", d.host, d.port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| {
            format!(
                "connecting to {where_}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("connecting to {where_}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let config = russh::client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let seen = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        pinned: d.host_key.clone(),
        accept_any: d.accept_any_host_key,
        seen: seen.clone(),
    };
    let handshake = tokio::time::timeout(
        CONNECT_TIMEOUT,
        russh::client::connect_stream(Arc::new(config), tcp, check),
    )
    .await
    .map_err(|_| {
        format!(
            "SSH handshake with {where_}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )
    })?;
    let mut session = match handshake {
        Ok(session) => session,
        Err(russh::Error::UnknownKey) => {
            let shown = seen.lock().ok().and_then(|s| s.clone()).unwrap_or_default();
            return Err(format!(
                "the host key of {where_} ({shown}) is not the pinned one ({}): not connected",
                d.host_key.as_deref().unwrap_or("none")
            ));
        }
        Err(e) => return Err(format!("SSH handshake with {where_}: {e}")),
    };
    let login = async {
        if let Some(password) = &d.password {
            session.authenticate_password(&d.username, password).await
        } else if let Some(pem) = &d.private_key {
            let key = russh::keys::decode_secret_key(pem, None).map_err(|e| {
                russh::Error::from(std::io::Error::other(format!(
                    "the private key cannot be read: {e}"
                )))
            })?;
            let hash = session.best_supported_rsa_hash().await?.flatten();
            session
                .authenticate_publickey(&d.username, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
        } else {
            Err(russh::Error::from(std::io::Error::other(
                "no password or private key is set",
            )))
        }
    };
    let authenticated = tokio::time::timeout(CONNECT_TIMEOUT, login)
        .await
        .map_err(|_| {
            format!(
                "logging in to {where_}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("logging in to {where_} as {}: {e}", d.username))?;
    if !authenticated.success() {
        return Err(format!(
            "logging in to {where_} as {}: the server refused the {}",
            d.username,
            if d.password.is_some() { "password" } else { "key" }
        ));
    }
    let result = write_file(services, due, d, &session, written).await;
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    result
}

async fn write_file(
    services: &Services,
    due: &DuePush,
    d: &SftpDestination,
    session: &russh::client::Handle<HostKeyCheck>,
    written: &mut Written,
) -> Result<(), String> {
    let channel = session
        .channel_open_session()
        .await
        .map_err(|e| format!("opening an SSH session channel: {e}"))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| format!("starting SFTP: {e}"))?;
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(60);
    let version = sftp.init().await.map_err(|e| format!("starting SFTP: {e}"))?;
    let posix_rename = version.extensions.get(POSIX_RENAME).is_some_and(|v| v == "1");
    let final_path = join(&d.directory, &due.file_name);
    let temp_path = join(&d.directory, &format!(".{}.part", due.file_name));
    let handle = sftp
        .open(
            temp_path.clone(),
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await
        .map_err(|e| format!("creating {temp_path}: {e}"))?
        .handle;
    let copied = async {
        let mut pages = Pages::start(services, due).await?;
        let mut offset = 0u64;
        while let Some(chunk) = pages.next(services, due).await? {
            for piece in chunk.chunks(WRITE_BYTES) {
                sftp.write(handle.clone(), offset, piece.to_vec())
                    .await
                    .map_err(|e| format!("writing {temp_path}: {e}"))?;
                offset += piece.len() as u64;
            }
            pages.written(chunk.len(), written);
        }
        sftp.close(handle.clone())
            .await
            .map_err(|e| format!("closing {temp_path}: {e}"))?;
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = copied {
        let _ = sftp.close(handle).await;
        let _ = sftp.remove(temp_path).await;
        return Err(e);
    }
    let renamed = if posix_rename {
        let mut data = Vec::with_capacity(8 + temp_path.len() + final_path.len());
        for s in [&temp_path, &final_path] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        match sftp.extended(POSIX_RENAME, data).await {
            Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
            Ok(Packet::Status(s)) => Err(format!("{:?}: {}", s.status_code, s.error_message)),
            Ok(_) => Err("unexpected answer".to_string()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        // SFTP's own rename refuses to replace a file: the old one goes first.
        let _ = sftp.remove(final_path.clone()).await;
        sftp.rename(temp_path.clone(), final_path.clone())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    if let Err(e) = renamed {
        let _ = sftp.remove(temp_path.clone()).await;
        return Err(format!("renaming {temp_path} to {final_path}: {e}"));
    }
    let _ = sftp.close_session();
    Ok(())
}
