//! Boards: `boards.toml`, SSH and local boards, deployment and the measuring pool.
//!
//! `config` parses boards.toml; `board` holds `trait Board` and the agent session that
//! `ssh::SshBoard` and `local::LocalBoard` share; `deploy` uploads the agent when its hash
//! changed; `pool` measures many models on many boards; `scripted` is the test double.

pub mod board;
pub mod config;
pub mod deploy;
pub mod local;
pub mod pool;
pub mod scripted;
pub mod ssh;

pub use board::{AgentError, Board};
pub use config::{BoardConfig, BoardsFile};
pub use local::LocalBoard;
pub use pool::{Job, Measured, Pool, PoolEvent, PoolOptions};
pub use ssh::SshBoard;
