//! The servers' own keys, so FTPS and SFTP work out of the box: a
//! self-signed TLS certificate and an Ed25519 SSH host key, generated into
//! the data dir on first start and reused afterwards (clients that pinned
//! them keep trusting the server across restarts).

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, PrivateKey, PublicKey};

/// The certificate and key (PEM) for FTPS: the configured pair, or a
/// self-signed one in `dir` (created when missing).
pub fn tls_identity(
    configured: Option<(&Path, &Path)>,
    dir: &Path,
    names: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some((cert, key)) = configured {
        for file in [cert, key] {
            std::fs::metadata(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        }
        return Ok((cert.to_path_buf(), key.to_path_buf()));
    }
    let cert = dir.join("ftps-cert.pem");
    let key = dir.join("ftps-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)?;
    let mut names = names.to_vec();
    for default in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == default) {
            names.push(default.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed FTPS certificate");
    Ok((cert, key))
}

/// The SSH host key in `dir` (`ssh-host-ed25519`), created when missing.
pub fn ssh_host_key(dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = dir.join("ssh-host-ed25519");
    if path.exists() {
        return PrivateKey::read_openssh_file(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()));
    }
    std::fs::create_dir_all(dir)?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    let pem = key.to_openssh(russh::keys::ssh_key::LineEnding::LF)?;
    write_private(&path, pem.as_bytes())?;
    if let Ok(public) = key.public_key().to_openssh() {
        let _ = std::fs::write(dir.join("ssh-host-ed25519.pub"), format!("{public}\n"));
    }
    tracing::info!(key = %path.display(), "generated an SSH host key");
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// A line of a public key file that holds no OpenSSH public key.
#[derive(Debug, thiserror::Error)]
#[error("not an OpenSSH public key: {0}")]
pub struct KeyLineError(#[from] russh::keys::ssh_key::Error);

/// Checks one line of an OpenSSH public key file (`ALGORITHM BASE64
/// [COMMENT]`) and returns its canonical `ALGORITHM BASE64` form and comment.
pub fn parse_public_key_line(line: &str) -> Result<(String, String), KeyLineError> {
    let line = line.trim();
    let key = PublicKey::from_openssh(line)?;
    let comment = key.comment().to_string();
    let mut canonical = key.clone();
    canonical.set_comment("");
    let text = canonical.to_openssh()?.trim().to_string();
    Ok((text, comment))
}

/// The canonical `ALGORITHM BASE64` form of a key a client presents.
pub fn canonical_public_key(key: &PublicKey) -> Option<String> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh().ok().map(|t| t.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_lines() {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let line = format!("{} alice@laptop", key.public_key().to_openssh().unwrap());
        let (canonical, comment) = parse_public_key_line(&line).unwrap();
        assert!(canonical.starts_with("ssh-ed25519 "));
        assert!(!canonical.contains("alice"));
        assert_eq!(comment, "alice@laptop");
        assert_eq!(canonical_public_key(key.public_key()).unwrap(), canonical);
        assert!(parse_public_key_line("ssh-ed25519 AAAA-not-base64").is_err());
        assert!(parse_public_key_line("").is_err());
    }

    #[test]
    fn generated_keys_are_reused() {
        let dir = std::env::temp_dir().join(format!("callmeta-keys-{}", std::process::id()));
        let first = ssh_host_key(&dir).unwrap();
        let second = ssh_host_key(&dir).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        let (cert, key) = tls_identity(None, &dir, &[]).unwrap();
        let again = tls_identity(None, &dir, &[]).unwrap();
        assert_eq!((cert.clone(), key.clone()), again);
        assert!(
            std::fs::read_to_string(cert)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
