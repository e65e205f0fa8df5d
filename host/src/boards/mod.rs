//! Boards: `boards.toml`, SSH and local boards, deployment and the measuring pool. Nothing here
//! knows about latency sources or the cache; [`crate::latency`] builds on this module.
//!
//! `config` parses boards.toml; `board` holds `trait Board` and the agent session and
//! `AgentBoard` that `deploy::SshBoard` and `local::LocalBoard` are made of; `ssh` is the SSH
//! connection (host keys, authentication, exec, SFTP); `deploy` checks the board's glibc
//! (`glibc`), uploads the agent when its hash changed and starts it; `pool` measures many models
//! on many boards; `scripted` is the test double (compiled only for tests).

pub mod board;
pub mod config;
pub mod deploy;
pub mod glibc;
pub mod local;
pub mod pool;
#[cfg(test)]
pub(crate) mod scripted;
pub mod ssh;

pub use board::{AgentError, Board};
pub use config::{BoardConfig, BoardsFile};
pub use deploy::SshBoard;
pub use local::LocalBoard;
pub use pool::{Job, Measured, Pool, PoolEvent, PoolOptions};

use std::path::Path;

use anyhow::Result;

/// Builds the board of a configuration (no connection yet). `local_agent` is the `--agent` flag.
///
/// # Errors
/// A local board whose agent cannot be found.
pub fn open_board(cfg: &BoardConfig, local_agent: Option<&Path>) -> Result<Box<dyn Board>> {
    Ok(match cfg.kind {
        config::BoardKind::Ssh => Box::new(SshBoard::new(cfg.clone())),
        config::BoardKind::Local => {
            let agent = local::find_local_agent(cfg.agent.as_deref().or(local_agent))?;
            Box::new(LocalBoard::new(cfg.clone(), agent))
        }
    })
}
