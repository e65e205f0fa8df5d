//! The SSH connection to a board over `ssh2`: connect, verify the host key against known_hosts,
//! authenticate with a key or ssh-agent, run short commands, write files over SFTP. Deploying and
//! starting the agent over such a connection is [`super::deploy`]'s job.
//!
//! Host keys are checked strictly by default: an unknown host is refused unless the board says
//! `host_key = "accept-new"` (which appends the key to known_hosts), and a changed key is always
//! refused with a message naming host, port, file and the fix. Passwords are never used.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, Session};

use super::board::base64;
use super::config::{BoardConfig, HostKeyPolicy};
use crate::paths::expand_tilde;

/// An authenticated SSH session to one board.
pub struct SshConn {
    /// The libssh2 session (shared by exec channels, SFTP and the agent's serve channel).
    pub session: Session,
    /// `user@host:port`, for messages.
    pub address: String,
    /// The board's name, for messages.
    pub board: String,
}

/// The name a host has in known_hosts: `host` on port 22, `[host]:port` otherwise (OpenSSH's
/// convention).
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

impl SshConn {
    /// Connects, verifies the host key and authenticates.
    ///
    /// # Errors
    /// Unreachable host, unknown or changed host key (with the fix), failed authentication.
    pub fn connect(cfg: &BoardConfig) -> Result<SshConn> {
        let host = cfg
            .host
            .as_deref()
            .ok_or_else(|| anyhow!("board {:?}: field `host` is missing", cfg.name))?;
        let user = cfg
            .user
            .as_deref()
            .ok_or_else(|| anyhow!("board {:?}: field `user` is missing", cfg.name))?;
        let address = cfg.address();
        let timeout = Duration::from_secs_f64(cfg.timeout_s.clamp(1.0, 600.0));
        let addr = (host, cfg.port)
            .to_socket_addrs()
            .with_context(|| format!("board {:?}: resolving {host}", cfg.name))?
            .next()
            .ok_or_else(|| anyhow!("board {:?}: {host} has no address", cfg.name))?;
        let connect_timeout = timeout.min(Duration::from_secs(15));
        let tcp = TcpStream::connect_timeout(&addr, connect_timeout).with_context(|| {
            format!(
                "board {:?}: connecting to {address}; is the board on and sshd running?",
                cfg.name
            )
        })?;
        tcp.set_nodelay(true).ok();
        let mut session = Session::new().context("creating an SSH session")?;
        session.set_tcp_stream(tcp);
        session.set_timeout(timeout.as_millis() as u32);
        session
            .handshake()
            .with_context(|| format!("board {:?}: SSH handshake with {address}", cfg.name))?;
        verify_host_key(&session, cfg, host)?;
        match &cfg.identity {
            Some(id) => {
                let id = expand_tilde(id);
                session
                    .userauth_pubkey_file(user, None, &id, None)
                    .with_context(|| {
                        format!(
                            "board {:?}: key authentication as {user} with {} failed; is its public \
                             key in the board's authorized_keys (and the key unencrypted or in ssh-agent)?",
                            cfg.name,
                            id.display()
                        )
                    })?;
            }
            None => session.userauth_agent(user).with_context(|| {
                format!(
                    "board {:?}: ssh-agent authentication as {user} failed; set `identity` to a key \
                     file or add the key with ssh-add",
                    cfg.name
                )
            })?,
        }
        if !session.authenticated() {
            bail!("board {:?}: authentication as {user} failed", cfg.name);
        }
        Ok(SshConn {
            session,
            address,
            board: cfg.name.clone(),
        })
    }

    /// Runs `cmd` through the remote shell; returns (exit status, stdout, stderr).
    ///
    /// Reads both streams to EOF before `wait_close()`, as libssh2 requires.
    ///
    /// # Errors
    /// Channel errors or a timeout.
    pub fn exec(&self, cmd: &str) -> Result<(i32, String, String)> {
        let ctx = || format!("board {:?}: running `{cmd}`", self.board);
        let mut ch = self.session.channel_session().with_context(ctx)?;
        ch.exec(cmd).with_context(ctx)?;
        let mut out = String::new();
        ch.read_to_string(&mut out).with_context(ctx)?;
        let mut err = String::new();
        ch.stderr().read_to_string(&mut err).with_context(ctx)?;
        ch.wait_close().with_context(ctx)?;
        Ok((ch.exit_status().with_context(ctx)?, out, err))
    }

    /// Runs `cmd` and fails unless it exits 0; returns stdout.
    ///
    /// # Errors
    /// Non-zero exit (with its stderr) or channel errors.
    pub fn exec_ok(&self, cmd: &str) -> Result<String> {
        let (code, out, err) = self.exec(cmd)?;
        if code != 0 {
            bail!(
                "board {:?}: `{cmd}` exited {code}: {}",
                self.board,
                err.trim()
            );
        }
        Ok(out)
    }

    /// Writes `bytes` to `remote` over SFTP (no rename; see `deploy` for atomic installs).
    ///
    /// # Errors
    /// SFTP errors, naming the remote path.
    pub fn upload(&self, bytes: &[u8], remote: &str) -> Result<()> {
        let ctx = || format!("board {:?}: uploading {remote} over SFTP", self.board);
        let sftp = self.session.sftp().with_context(ctx)?;
        let mut f = sftp.create(Path::new(remote)).with_context(ctx)?;
        f.write_all(bytes).with_context(ctx)?;
        f.flush().with_context(ctx)?;
        drop(f);
        Ok(())
    }
}

fn verify_host_key(session: &Session, cfg: &BoardConfig, host: &str) -> Result<()> {
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| anyhow!("board {:?}: the server sent no host key", cfg.name))?;
    let file = expand_tilde(&cfg.known_hosts_path());
    let mut kh = session.known_hosts().context("libssh2 known_hosts")?;
    if file.exists() {
        kh.read_file(&file, KnownHostFileKind::OpenSSH)
            .with_context(|| format!("board {:?}: reading {}", cfg.name, file.display()))?;
    }
    let name = known_hosts_name(host, cfg.port);
    match kh.check_port(host, cfg.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => bail!(
            "board {:?}: the host key of {host} port {} does NOT match the one in {} — the board \
             was reinstalled, or someone is in the middle. If you know why it changed, remove the old \
             key with `ssh-keygen -R '{name}' -f {}` and connect again (with host_key = \"accept-new\" \
             or after `ssh-keyscan -p {} {host} >> {}`)",
            cfg.name,
            cfg.port,
            file.display(),
            file.display(),
            cfg.port,
            file.display()
        ),
        CheckResult::NotFound if cfg.host_key == HostKeyPolicy::AcceptNew => {
            let line = format!("{name} {} {}\n", key_type_name(key_type), base64(key));
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .with_context(|| format!("board {:?}: opening {}", cfg.name, file.display()))?;
            f.write_all(line.as_bytes()).with_context(|| {
                format!("board {:?}: appending to {}", cfg.name, file.display())
            })?;
            Ok(())
        }
        CheckResult::NotFound => bail!(
            "board {:?}: {host} port {} is not in {} (strict host-key checking). Check the key \
             fingerprint with the board's owner, then add it with `ssh-keyscan -p {} {host} >> {}`, \
             or set host_key = \"accept-new\" for this board to trust it on first use",
            cfg.name,
            cfg.port,
            file.display(),
            cfg.port,
            file.display()
        ),
        CheckResult::Failure => bail!(
            "board {:?}: could not check the host key of {host} port {} against {}",
            cfg.name,
            cfg.port,
            file.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names() {
        assert_eq!(known_hosts_name("h", 22), "h");
        assert_eq!(known_hosts_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }
}
