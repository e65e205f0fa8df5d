//! Boards: `boards.toml`, SSH and local boards, deployment and the measuring pool.

pub mod config;
pub mod deploy;
pub mod ssh;
