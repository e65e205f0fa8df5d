//! The `board:NAME[,NAME…]` latency source: [`BoardSource`] exports each arch to ONNX, looks it
//! up in the latency cache and measures the misses on a pool of boards; [`open_pool`] builds that
//! pool from boards.toml and [`random_exporter`] the random-weight subnet export (weights do not
//! change latency, so none need be trained to measure).

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use shiftnas_models::onnx::{ExportOptions, PartBank};
use shiftnas_models::{Arch, Space};

use shiftnas_protocol::BenchSetSpec;

use super::cache::Cache;
use super::cached::{Protocol, measure_cached};
use super::{Estimate, LatencySource};
use crate::boards::config::{BoardConfig, BoardsFile};
use crate::boards::{Job, Pool, PoolOptions, open_board};
use crate::npu::{BoardConversion, Converter, Images};

/// Turns an arch into `.onnx` bytes (the subnet export; random weights are fine for latency).
pub type Exporter = Box<dyn Fn(&Space, &Arch) -> Result<Vec<u8>> + Send>;

/// The reference model of a space's interleaved measurements: every block takes the middle
/// choice (index ⌊(choices − 1)/2⌋, the 5×5 ShuffleNet block of `spos-cifar`), a mid-size subnet
/// whose time sits inside the range of the candidates it is compared with.
pub fn reference_arch(space: &Space) -> Arch {
    let middle = space.choices.len().saturating_sub(1) / 2;
    Arch::uniform(
        space.num_blocks(),
        u8::try_from(middle).expect("a space has fewer than 256 choices"),
    )
}

/// The reference job of `space`: [`reference_arch`] exported by `export` (the same random-weight
/// exporter as the candidates), with its input shape.
///
/// # Errors
/// When the export fails.
pub fn reference_job(space: &Space, export: &Exporter) -> Result<Job> {
    let arch = reference_arch(space);
    let bytes = export(space, &arch)
        .with_context(|| format!("exporting the reference subnet {arch} of {}", space.name))?;
    let mut job = Job::new(format!("reference {arch}"), bytes);
    job.input_shape = Some(input_shape(space));
    Ok(job)
}

/// The batch-1 input shape of a space as the cache keys it: `1x3x32x32`.
pub fn input_shape(space: &Space) -> String {
    format!("1x{}x{s}x{s}", space.input_channels, s = space.input_size)
}

/// Latencies measured on boards, through the cache, each batch as one interleaved set.
pub struct BoardSource {
    pool: Pool,
    cache: Cache,
    export: Exporter,
    remeasure: bool,
    spec: BenchSetSpec,
    /// The reference of the space measured last.
    reference: Option<(Space, Job)>,
}

impl BoardSource {
    /// A source over `pool`, storing in `cache`; `remeasure` ignores cached numbers.
    pub fn new(pool: Pool, cache: Cache, export: Exporter, remeasure: bool) -> BoardSource {
        let spec = crate::boards::pool::set_spec_for(pool.config());
        BoardSource {
            pool,
            cache,
            export,
            remeasure,
            spec,
            reference: None,
        }
    }

    /// The pool (events, fingerprint).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl LatencySource for BoardSource {
    fn describe(&self) -> String {
        format!("board:{}", self.pool.fingerprint())
    }

    fn estimates(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<Estimate>> {
        let shape = input_shape(space);
        if self.reference.as_ref().is_none_or(|(s, _)| s != space) {
            let job = reference_job(space, &self.export)?;
            self.reference = Some((space.clone(), job));
        }
        let reference = &self.reference.as_ref().expect("set just above").1;
        let mut jobs = Vec::with_capacity(archs.len());
        for a in archs {
            let bytes = (self.export)(space, a).with_context(|| format!("exporting arch {a}"))?;
            let mut j = Job::new(a.to_string(), bytes);
            j.input_shape = Some(shape.clone());
            jobs.push(j);
        }
        let protocol = Protocol::Set {
            reference,
            spec: &self.spec,
        };
        let l = measure_cached(
            &mut self.pool,
            &mut self.cache,
            &jobs,
            self.remeasure,
            protocol,
        )?;
        Ok(l.into_iter()
            .map(|l| Estimate {
                value: l.p50_ms,
                interval: l.interval,
            })
            .collect())
    }
}

/// An [`Exporter`] of random-weight subnets (batch 1), for search candidates and `board measure`:
/// each arch is spliced from one bank of random subnets per space ([`PartBank`], built on first
/// use, the same bank `calibrate` uses for its seed), so an export costs milliseconds instead of
/// a `Subnet::random` BN-statistics probe (~1 s per `spos-cifar` subnet on 2 cores), and the same
/// (space, arch, seed) gives the same model — and latency-cache entry — in all three commands.
pub fn random_exporter(seed: u64) -> Exporter {
    random_exporter_with(
        seed,
        ExportOptions {
            batch: Some(1),
            ..ExportOptions::default()
        },
    )
}

/// [`random_exporter`] with other export options.
fn random_exporter_with(seed: u64, options: ExportOptions) -> Exporter {
    let bank: Mutex<Option<PartBank>> = Mutex::new(None);
    Box::new(move |space, arch| {
        let mut bank = bank.lock().unwrap_or_else(|e| e.into_inner());
        if bank.as_ref().is_none_or(|b| b.space() != space) {
            *bank = Some(PartBank::random(space, seed)?);
        }
        let bank = bank.as_ref().expect("the bank was just built");
        Ok(bank.export_arch(arch, &options)?)
    })
}

/// Int8 calibration inputs of an NPU board's conversions: seeded random inputs, since latency
/// does not depend on the quantisation scales they set.
const NPU_CALIBRATION_INPUTS: usize = 16;

/// The exporter for the boards of a pool whose first board is `cfg`: [`random_exporter`] for
/// ONNX Runtime boards; for `runtime = "rknn"` the same subnets exported for the NPU
/// ([`crate::npu::export_options`]) and converted to `.rknn` in the board's `dtype`, int8
/// calibrated on the images `calibration` loads (a search's own data) or, without it, on
/// [`NPU_CALIBRATION_INPUTS`] seeded random inputs. A conversion that fails or puts an op on the
/// CPU fails that candidate, naming the arch and the op.
///
/// # Errors
/// An `rknn` board without rknn-toolkit2 (`source scripts/rknn-env`), or calibration images
/// that cannot be loaded.
pub fn board_exporter(
    cfg: &BoardConfig,
    seed: u64,
    calibration: Option<&super::open::NpuCalibration>,
) -> Result<Exporter> {
    let Some(dtype) = cfg.npu_dtype() else {
        return Ok(random_exporter(seed));
    };
    let converter = Converter::from_env().with_context(|| {
        format!(
            "board {:?} has runtime = \"rknn\": its candidates are converted to .rknn with \
             rknn-toolkit2",
            cfg.name
        )
    })?;
    let images = match calibration {
        Some(load) => Some((load.0)().context("loading int8 calibration images for the NPU")?),
        None => None,
    };
    let onnx = random_exporter_with(seed, crate::npu::export_options());
    Ok(Box::new(move |space, arch| {
        let bytes = onnx(space, arch)?;
        let [c, s] = [space.input_channels, space.input_size];
        let calibration = match &images {
            Some(i) if i.shape == [c, s, s] => i.clone(),
            _ => Images::random([c, s, s], NPU_CALIBRATION_INPUTS, seed),
        };
        let conversion = BoardConversion {
            converter: converter.clone(),
            dtype,
            calibration,
        };
        conversion.convert(&format!("arch {arch} of {}", space.name), &bytes)
    }))
}

/// Refuses `cfg` when it is an NPU board: `what` is not built for `.rknn` models yet.
///
/// # Errors
/// For `runtime = "rknn"`, naming the board and what to use instead.
pub fn ensure_onnx_board(cfg: &BoardConfig, what: &str) -> Result<()> {
    anyhow::ensure!(
        cfg.npu_dtype().is_none(),
        "board {:?} has runtime = \"rknn\": {what} does not measure NPU boards yet; measure its \
         candidates with `shiftnas board measure {} --arch ...` or search with --latency board:{}",
        cfg.name,
        cfg.name,
        cfg.name
    );
    Ok(())
}

/// Opens a pool over the named boards of `file` (`local` is built in). `agent` is the
/// `--agent` flag for the local board.
///
/// # Errors
/// Unknown board names, or boards of different fingerprints without `mix_boards`.
pub fn open_pool(
    file: &BoardsFile,
    names: &[String],
    agent: Option<&Path>,
    mix_boards: bool,
) -> Result<Pool> {
    let cfgs = file.select(names, agent.map(Into::into))?;
    if let Some(other) = cfgs.iter().find(|c| c.npu_dtype() != cfgs[0].npu_dtype()) {
        anyhow::bail!(
            "boards {:?} and {:?} measure different things (runtime {:?} vs {:?}, NPU dtype {:?} \
             vs {:?}): a pool's boards must share runtime and dtype; pass them in separate runs",
            cfgs[0].name,
            other.name,
            cfgs[0].runtime,
            other.runtime,
            cfgs[0].npu_dtype(),
            other.npu_dtype()
        );
    }
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

/// The test fixture of the board latency source, for this module's tests and the search's.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::boards::Board;

    /// A source over `board` alone (reconnecting after 5 ms), storing in the cache at `cache`;
    /// the exporter writes each arch's digits as the model bytes.
    pub(crate) fn one_board_source(
        board: Box<dyn Board>,
        cache: &Path,
        remeasure: bool,
    ) -> BoardSource {
        let opts = PoolOptions {
            reconnect_wait: Duration::from_millis(5),
            ..PoolOptions::default()
        };
        let export: Exporter = Box::new(|_, a: &Arch| Ok(a.to_string().into_bytes()));
        BoardSource::new(
            Pool::new(vec![board], opts).unwrap(),
            Cache::open(cache).unwrap(),
            export,
            remeasure,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::fixture::one_board_source;
    use super::*;
    use crate::boards::scripted::{ScriptedBoard, Step};

    type Log = Arc<Mutex<Vec<(String, String)>>>;

    /// A source over one scripted board whose reports have the input shape `1x3x8x8`.
    fn source(cache: &std::path::Path, log: &Log, remeasure: bool) -> BoardSource {
        let board =
            ScriptedBoard::new("rk1", "A76", vec![], Step::Ok(2.5)).with_log(Arc::clone(log));
        one_board_source(Box::new(board), cache, remeasure)
    }

    /// A second search over the same cache measures nothing; with `--remeasure` it measures
    /// every candidate again.
    #[test]
    fn a_second_search_is_served_from_the_cache_unless_remeasure() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("latency.sqlite");
        let space = Space {
            input_size: 8,
            input_channels: 3,
            ..Space::tiny()
        };
        let archs: Vec<Arch> = (0..4u8).map(|c| Arch::uniform(20, c)).collect();
        let log = Log::default();

        let mut first = source(&db, &log, false);
        assert_eq!(first.latencies(&space, &archs).unwrap(), vec![2.5; 4]);
        // The same arch twice in one batch, and again in a later batch: measured once.
        let twice = [archs[0].clone(), archs[0].clone()];
        assert_eq!(first.latencies(&space, &twice).unwrap(), vec![2.5; 2]);
        assert_eq!(log.lock().unwrap().len(), 4);
        drop(first);

        let mut second = source(&db, &log, false);
        assert_eq!(second.latencies(&space, &archs).unwrap(), vec![2.5; 4]);
        assert_eq!(log.lock().unwrap().len(), 4, "served from the cache");
        drop(second);

        let mut again = source(&db, &log, true);
        assert_eq!(again.latencies(&space, &archs).unwrap(), vec![2.5; 4]);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 8, "--remeasure measures every candidate again");
        for a in &archs {
            let sha = Job::new("x", a.to_string().into_bytes()).sha256;
            assert_eq!(log.iter().filter(|(_, s)| *s == sha).count(), 2, "{a}");
        }
    }

    /// Sets measured apart share the board's scale: after the board slows down by 30 %, a second
    /// search (with `--remeasure`) finds the same estimates as the first, whereas a new cache
    /// puts the slowed board's set on its own, slower scale.
    #[test]
    fn sets_measured_apart_share_the_first_sets_scale() {
        let tmp = tempfile::tempdir().unwrap();
        let space = Space {
            input_size: 8,
            input_channels: 3,
            ..Space::tiny()
        };
        let archs: Vec<Arch> = [0u8, 2, 3].iter().map(|&c| Arch::uniform(20, c)).collect();
        let board = |slowdown: f64| {
            let mut b = ScriptedBoard::new("rk1", "A76", vec![], Step::Ok(2.0));
            b.slowdowns = vec![slowdown].into();
            Box::new(b)
        };
        let (db, fresh_db) = (tmp.path().join("a.sqlite"), tmp.path().join("b.sqlite"));
        let values = |db: &Path, slowdown: f64| -> Vec<f64> {
            let mut src = one_board_source(board(slowdown), db, true);
            let got = src.latencies(&space, &archs).unwrap();
            let cache = Cache::open(db).unwrap();
            let k = super::super::cached::key_for(
                src.pool(),
                &Job::new("x", archs[0].to_string().into_bytes()),
                "1x3x8x8",
            );
            let report: serde_json::Value =
                serde_json::from_str(&cache.get(&k).unwrap().unwrap().report_json).unwrap();
            assert_eq!(report["reference"]["median_ms"], 1.0 * slowdown);
            got
        };
        assert_eq!(values(&db, 1.0), vec![2.0; 3]);
        assert_eq!(values(&db, 1.3), vec![2.0; 3], "on the first set's scale");
        let slowed = values(&fresh_db, 1.3);
        assert!(
            slowed.iter().all(|&v| (v - 2.6).abs() < 1e-12),
            "{slowed:?}"
        );
    }

    /// A cached interval comes back with its number; a fresh arch is measured as a set against
    /// the space's reference, and its interval and the reference's SHA-256 go to the cache.
    #[test]
    fn estimates_carry_their_interval_from_the_cache_and_from_a_set() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("latency.sqlite");
        let space = Space {
            input_size: 8,
            input_channels: 3,
            ..Space::tiny()
        };
        let (stored, fresh) = (Arch::uniform(20, 1), Arch::uniform(20, 2));
        let log = Log::default();
        let mut src = source(&db, &log, false);
        let job = Job::new("x", stored.to_string().into_bytes());
        let key = super::super::cached::key_for(src.pool(), &job, "1x3x8x8");
        let interval = crate::latency::Interval {
            low: 1.9,
            high: 2.1,
        };
        Cache::open(&db)
            .unwrap()
            .put_many(&[crate::latency::cache::NewEntry {
                interval: Some(interval),
                reference_sha256: Some("ref".into()),
                ..crate::latency::cache::NewEntry::single(key, 2.0, "{}")
            }])
            .unwrap();
        let got = src.estimates(&space, &[stored, fresh.clone()]).unwrap();
        // The scripted board reports ±0.5 % around 2.5 ms against a 1 ms reference.
        let fresh_interval = crate::latency::Interval {
            low: 2.5 * 0.995,
            high: 2.5 * 1.005,
        };
        assert_eq!(
            got[0],
            Estimate {
                value: 2.0,
                interval: Some(interval)
            }
        );
        assert_eq!(got[1].value, 2.5);
        let i = got[1].interval.expect("a set gives an interval");
        assert!(
            (i.low - fresh_interval.low).abs() < 1e-12
                && (i.high - fresh_interval.high).abs() < 1e-12
        );
        assert_eq!(
            log.lock().unwrap().len(),
            1,
            "only the fresh arch was measured"
        );
        let fresh_job = Job::new("x", fresh.to_string().into_bytes());
        let stored = Cache::open(&db)
            .unwrap()
            .get(&super::super::cached::key_for(
                src.pool(),
                &fresh_job,
                "1x3x8x8",
            ))
            .unwrap()
            .expect("the fresh arch is cached");
        assert_eq!(stored.interval, got[1].interval);
        let reference = Job::new("r", reference_arch(&space).to_string().into_bytes());
        assert_eq!(stored.reference_sha256, Some(reference.sha256));
        assert_eq!(
            reference_arch(&space).to_string(),
            Arch::uniform(20, 1).to_string()
        );
    }
}
