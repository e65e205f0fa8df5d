//! Boards: `boards.toml`, SSH and local boards, deployment and the measuring pool.
//!
//! `config` parses boards.toml; `board` holds `trait Board` and the agent session and
//! `AgentBoard` that `ssh::SshBoard` and `local::LocalBoard` are made of; `deploy` uploads the agent when its hash
//! changed; `pool` measures many models on many boards; `scripted` is the test double.

pub mod board;
pub mod cached;
pub mod config;
pub mod deploy;
pub mod local;
pub mod pool;
pub mod scripted;
pub mod source;
pub mod ssh;

pub use board::{AgentError, Board};
pub use config::{BoardConfig, BoardsFile};
pub use local::LocalBoard;
pub use pool::{Job, Measured, Pool, PoolEvent, PoolOptions};
pub use source::BoardSource;
pub use ssh::SshBoard;

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
