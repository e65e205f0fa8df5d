//! Boards: `boards.toml`, SSH and local boards, deployment and the measuring pool.
