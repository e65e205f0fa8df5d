//! Building the `board:NAME[,NAME…]` source: the pool of named boards and the random-weight
//! subnet exporter (weights do not change latency, so none need be trained to measure).

use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;
use shiftnas_models::onnx::{ExportOptions, PartBank};

use crate::boards::config::BoardsFile;
use crate::boards::source::Exporter;
use crate::boards::{Pool, PoolOptions, open_board};

/// An [`Exporter`] of random-weight subnets (batch 1), for search candidates and `board measure`:
/// each arch is spliced from one bank of random subnets per space ([`PartBank`], built on first
/// use, the same bank `calibrate` uses for its seed), so an export costs milliseconds instead of
/// a `Subnet::random` BN-statistics probe (~1 s per `spos-cifar` subnet on 2 cores), and the same
/// (space, arch, seed) gives the same model — and latency-cache entry — in all three commands.
pub fn random_exporter(seed: u64) -> Exporter {
    let bank: Mutex<Option<PartBank>> = Mutex::new(None);
    Box::new(move |space, arch| {
        let mut bank = bank.lock().unwrap_or_else(|e| e.into_inner());
        if bank.as_ref().is_none_or(|b| b.space() != space) {
            *bank = Some(PartBank::random(space, seed)?);
        }
        let bank = bank.as_ref().expect("the bank was just built");
        let batch_one = ExportOptions {
            batch: Some(1),
            ..ExportOptions::default()
        };
        Ok(bank.export_arch(arch, &batch_one)?)
    })
}

/// Opens a pool over the named boards of `boards_file` (`local` is built in; a missing file
/// means no configured boards). `agent` is the `--agent` flag for the local board.
///
/// # Errors
/// Unknown board names, an unreadable boards file, or boards of different fingerprints
/// without `mix_boards`.
pub fn open_pool(
    boards_file: &Path,
    names: &[String],
    agent: Option<&Path>,
    mix_boards: bool,
) -> Result<Pool> {
    let file = BoardsFile::load(boards_file)?;
    let cfgs = file.select(names, agent.map(Into::into))?;
    let boards = cfgs
        .iter()
        .map(|c| open_board(c, agent))
        .collect::<Result<Vec<_>>>()?;
    Pool::new(
        boards,
        PoolOptions {
            mix_boards,
            ..PoolOptions::default()
        },
    )
}
