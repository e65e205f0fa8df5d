//! `shiftnas cache`: stats, export and prune of the SQLite latency cache.

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::cli::cache::{CacheArgs, CacheCommand};
use crate::latency::cache::{Cache, CacheStats, default_path, to_csv};

/// Runs `shiftnas cache`. A missing cache file is reported, never created.
pub fn run(args: CacheArgs, ctx: &Context) -> Result<ExitStatus> {
    let path = args.cache.unwrap_or_else(default_path);
    let p = &ctx.printer;
    let Some(mut cache) = Cache::open_existing(&path)? else {
        p.warn(format!(
            "there is no latency cache at {} (it is made by the first measurement there)",
            path.display()
        ));
        match args.command {
            CacheCommand::Stats if p.json => p.json(&CacheStats {
                path,
                entries: 0,
                boards: Vec::new(),
            })?,
            CacheCommand::Prune { .. } if p.json => {
                p.json(&serde_json::json!({ "deleted": 0 }))?;
            }
            _ => {}
        }
        return Ok(ExitStatus::Success);
    };
    match args.command {
        CacheCommand::Stats => {
            let s = cache.stats()?;
            if p.json {
                p.json(&s)?;
            } else {
                p.note(format!("{}: {} entries", s.path.display(), s.entries));
                let rows: Vec<Vec<String>> = s
                    .boards
                    .iter()
                    .map(|b| {
                        vec![
                            b.board_fingerprint.clone(),
                            b.entries.to_string(),
                            b.oldest.to_string(),
                            b.newest.to_string(),
                        ]
                    })
                    .collect();
                p.table(
                    &[
                        "board fingerprint",
                        "entries",
                        "oldest (unix s)",
                        "newest (unix s)",
                    ],
                    &rows,
                )?;
            }
        }
        CacheCommand::Export { csv } => {
            let entries = cache.entries()?;
            if csv {
                use std::io::Write;
                std::io::stdout()
                    .lock()
                    .write_all(to_csv(&entries).as_bytes())?;
            } else {
                for e in &entries {
                    p.json(e)?;
                }
            }
        }
        CacheCommand::Prune { older_than, board } => {
            let n = cache.prune(older_than, board.as_deref())?;
            if p.json {
                p.json(&serde_json::json!({ "deleted": n }))?;
            } else {
                p.note(format!("deleted {n} entries from {}", path.display()));
            }
        }
    }
    Ok(ExitStatus::Success)
}
