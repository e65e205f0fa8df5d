//! The measuring pool: a thread per board, a queue that hands models to free boards, bounded
//! retries on another board, quarantine after repeated failures (with reconnects), and thermal
//! gating (a hot report is discarded, the board cools down, the model is measured again).
//!
//! Boards of different fingerprints (or thread/core settings) are never pooled for one objective
//! unless `mix_boards` is set: their numbers would not be comparable.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use shiftnas_protocol::{BenchReport, BoardInfo};

use super::board::{AgentError, Board, spec_for, too_hot};

/// How persistent the pool is.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Attempts per model over all boards before it fails.
    pub max_attempts: usize,
    /// Consecutive board failures before it is quarantined.
    pub quarantine_after: usize,
    /// Reconnect tries of a quarantined board before it is given up for this run.
    pub max_reconnects: usize,
    /// Wait before the first reconnect try (doubled after each failure).
    pub reconnect_wait: Duration,
    /// Re-measurements of a model after hot reports before the board counts as failed.
    pub thermal_retries: usize,
    /// Allow boards of different fingerprints in one pool.
    pub mix_boards: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_attempts: 3,
            quarantine_after: 2,
            max_reconnects: 3,
            reconnect_wait: Duration::from_secs(2),
            thermal_retries: 3,
            mix_boards: false,
        }
    }
}

/// One model to measure.
#[derive(Debug, Clone)]
pub struct Job {
    /// Display name (file name or arch).
    pub name: String,
    /// The `.onnx` bytes.
    pub model: Arc<Vec<u8>>,
    /// SHA-256 of `model`, hex.
    pub sha256: String,
    /// Input shape for the cache key (`1x3x32x32`), when known before measuring.
    pub input_shape: Option<String>,
}

impl Job {
    /// A job for `model`, hashing it.
    pub fn new(name: impl Into<String>, model: Vec<u8>) -> Job {
        Job {
            name: name.into(),
            sha256: super::deploy::sha256_hex(&model),
            model: Arc::new(model),
            input_shape: None,
        }
    }
}

/// A successful measurement: of one model ([`BenchReport`], [`Pool::measure`]) or of one part
/// of a set ([`BenchSetReport`], inside [`Pool::measure_set`]).
#[derive(Debug, Clone)]
pub struct Measured<R = BenchReport> {
    /// The board that measured it.
    pub board: String,
    /// That board's fingerprint.
    pub fingerprint: String,
    /// The agent's report.
    pub report: R,
    /// Attempts it took (1 = first try).
    pub attempts: usize,
}

/// What the pool hands a free board: one model, or one part of a set with the reference.
trait Unit: Sync {
    /// What the board returns.
    type Report: Send;
    /// The name in events and errors.
    fn name(&self) -> String;
    /// Loads and measures it on `board`, re-measuring after hot reports.
    fn run(
        &self,
        board: &mut dyn Board,
        opts: &PoolOptions,
        events: &Mutex<Vec<PoolEvent>>,
    ) -> Result<Self::Report>;
}

impl Unit for Job {
    type Report = BenchReport;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(
        &self,
        board: &mut dyn Board,
        opts: &PoolOptions,
        events: &Mutex<Vec<PoolEvent>>,
    ) -> Result<BenchReport> {
        board.load(&self.name, &self.model, &self.sha256)?;
        let spec = spec_for(board.config());
        measure_cool(board, opts, events, &self.name, |b| {
            let r = b.bench(&self.sha256, &spec)?;
            let hot = too_hot(&r, b.config().thermal_limit_c);
            Ok((r, hot))
        })
    }
}

/// What happened in the pool, in order (shown as warnings by the commands).
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// A board failed on a model; the model goes back to the queue.
    Failed {
        /// The board.
        board: String,
        /// The model.
        model: String,
        /// Why.
        reason: String,
    },
    /// A hot or throttled report was discarded.
    Hot {
        /// The board.
        board: String,
        /// Why.
        reason: String,
    },
    /// A board was taken out of the pool.
    Quarantined {
        /// The board.
        board: String,
        /// Why.
        reason: String,
    },
    /// A quarantined board reconnected and is back.
    Back {
        /// The board.
        board: String,
    },
}

impl std::fmt::Display for PoolEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolEvent::Failed {
                board,
                model,
                reason,
            } => {
                write!(
                    f,
                    "board {board:?} failed on {model}: {reason}; retrying elsewhere"
                )
            }
            PoolEvent::Hot { board, reason } => {
                write!(
                    f,
                    "board {board:?}: {reason}; discarded, cooling down and measuring again"
                )
            }
            PoolEvent::Quarantined { board, reason } => {
                write!(f, "board {board:?} quarantined: {reason}")
            }
            PoolEvent::Back { board } => write!(f, "board {board:?} reconnected and is back"),
        }
    }
}

/// Boards measuring one objective together.
pub struct Pool {
    boards: Vec<Box<dyn Board>>,
    up: Vec<bool>,
    infos: Vec<Option<BoardInfo>>,
    opts: PoolOptions,
    fingerprint: String,
    events: Arc<Mutex<Vec<PoolEvent>>>,
}

struct State<R> {
    queue: VecDeque<usize>,
    attempts: Vec<usize>,
    failed_on: Vec<Vec<usize>>,
    results: Vec<Option<Result<Measured<R>>>>,
    in_flight: usize,
    /// Boards that are up (not quarantined).
    live: Vec<bool>,
}

impl Pool {
    /// Connects every board and reads its info; boards that cannot be reached start quarantined.
    ///
    /// # Errors
    /// No board reachable, or boards of different fingerprints/settings without `mix_boards`.
    pub fn new(mut boards: Vec<Box<dyn Board>>, opts: PoolOptions) -> Result<Pool> {
        if boards.is_empty() {
            bail!("no boards given");
        }
        let mut infos = Vec::new();
        let mut up = Vec::new();
        let mut errors = Vec::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        for b in &mut boards {
            match b.info() {
                Ok(i) => {
                    infos.push(Some(i));
                    up.push(true);
                }
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    push_event(
                        &events,
                        PoolEvent::Quarantined {
                            board: b.name().to_string(),
                            reason: format!("{e:#}"),
                        },
                    );
                    infos.push(None);
                    up.push(false);
                }
            }
        }
        let known: Vec<(usize, &BoardInfo)> = infos
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.as_ref().map(|x| (i, x)))
            .collect();
        let Some(&(first, first_info)) = known.first() else {
            bail!("no board reachable: {}", errors.join("; "));
        };
        let settings = |i: usize| {
            let s = spec_for(boards[i].config());
            (s.threads, s.cores)
        };
        if !opts.mix_boards {
            for &(i, info) in &known[1..] {
                if info.fingerprint() != first_info.fingerprint() || settings(i) != settings(first)
                {
                    bail!(
                        "boards {:?} ({}, threads/cores {:?}) and {:?} ({}, threads/cores {:?}) differ: \
                         their latencies are not one objective; measure on one kind of board or pass --mix-boards",
                        boards[first].name(),
                        first_info.fingerprint(),
                        settings(first),
                        boards[i].name(),
                        info.fingerprint(),
                        settings(i)
                    );
                }
            }
        }
        let mut fps: Vec<String> = known.iter().map(|(_, i)| i.fingerprint()).collect();
        fps.dedup();
        let fingerprint = if fps.len() == 1 {
            fps.remove(0)
        } else {
            format!("mixed: {}", fps.join(" + "))
        };
        Ok(Pool {
            boards,
            up,
            infos,
            opts,
            fingerprint,
            events,
        })
    }

    /// The fingerprint the numbers belong to (`mixed: …` when `mix_boards` joined several).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The first board's configuration: its threads and cores hold for every board of the pool
    /// (checked in [`Pool::new`] unless boards are mixed).
    pub fn config(&self) -> &super::config::BoardConfig {
        self.boards[0].config()
    }

    /// The boards' names and infos (`None` for boards that were down at start).
    pub fn boards(&self) -> Vec<(String, Option<BoardInfo>)> {
        self.boards
            .iter()
            .zip(&self.infos)
            .map(|(b, i)| (b.name().to_string(), i.clone()))
            .collect()
    }

    /// Everything that went wrong so far, in order.
    pub fn events(&self) -> Vec<PoolEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Measures every job, each exactly once when all goes well, in parallel over the boards.
    ///
    /// Results are in job order; a job fails only when `max_attempts` were spent or no board is
    /// left.
    pub fn measure(&mut self, jobs: &[Job]) -> Vec<Result<Measured>> {
        self.run_units(jobs)
    }

    /// The boards that are up now (not quarantined).
    pub(crate) fn live_boards(&self) -> usize {
        self.up.iter().filter(|&&u| u).count()
    }

    /// Hands `units` to free boards until each is measured or has failed for good.
    fn run_units<U: Unit>(&mut self, units: &[U]) -> Vec<Result<Measured<U::Report>>> {
        let n = units.len();
        let state = Mutex::new(State {
            queue: (0..n).collect(),
            attempts: vec![0; n],
            failed_on: vec![Vec::new(); n],
            results: (0..n).map(|_| None).collect(),
            in_flight: 0,
            live: self.up.clone(),
        });
        let cv = Condvar::new();
        let opts = self.opts.clone();
        let events = &self.events;
        let pool_fp = self.fingerprint.as_str();
        std::thread::scope(|s| {
            for (bi, ((board, up), info)) in self
                .boards
                .iter_mut()
                .zip(self.up.iter_mut())
                .zip(self.infos.iter_mut())
                .enumerate()
            {
                let (state, cv, opts) = (&state, &cv, &opts);
                let w = Worker {
                    me: bi,
                    pool_fp,
                    units,
                    state,
                    cv,
                    opts,
                    events,
                };
                s.spawn(move || w.run(board.as_mut(), up, info));
            }
        });
        let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
        st.results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(anyhow!(
                        "{}: no board left to measure it (every board failed or was quarantined)",
                        units[i].name()
                    ))
                })
            })
            .collect()
    }
}

fn push_event(events: &Mutex<Vec<PoolEvent>>, e: PoolEvent) {
    if let Ok(mut v) = events.lock() {
        v.push(e);
    }
}

/// What a board's thread shares with the others.
struct Worker<'a, U: Unit> {
    me: usize,
    pool_fp: &'a str,
    units: &'a [U],
    state: &'a Mutex<State<U::Report>>,
    cv: &'a Condvar,
    opts: &'a PoolOptions,
    events: &'a Mutex<Vec<PoolEvent>>,
}

impl<U: Unit> Worker<'_, U> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<U::Report>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings a quarantined board back: reconnects, and checks the fingerprint of a board that
    /// was down at start (it must match the pool's unless boards may be mixed).
    fn come_back(&self, board: &mut dyn Board, info: &mut Option<BoardInfo>) -> Result<()> {
        board.reconnect()?;
        if info.is_none() {
            let i = board.info()?;
            if !self.opts.mix_boards && i.fingerprint() != self.pool_fp {
                bail!(
                    "its fingerprint {} is not the pool's {}",
                    i.fingerprint(),
                    self.pool_fp
                );
            }
            *info = Some(i);
        }
        Ok(())
    }

    /// One board's loop: take a job, measure it, report; quarantine and reconnect on failures.
    fn run(self, board: &mut dyn Board, up: &mut bool, info: &mut Option<BoardInfo>) {
        let me = self.me;
        let (jobs, opts, events, cv) = (self.units, self.opts, self.events, self.cv);
        let name = board.name().to_string();
        let mut consecutive = 0usize;
        let mut reconnects = 0usize;
        loop {
            if !*up {
                {
                    let st = self.lock();
                    if (st.queue.is_empty() && st.in_flight == 0)
                        || reconnects >= opts.max_reconnects
                    {
                        cv.notify_all();
                        return;
                    }
                }
                std::thread::sleep(opts.reconnect_wait * (1u32 << reconnects.min(6)));
                reconnects += 1;
                match self.come_back(board, info) {
                    Ok(()) => {
                        *up = true;
                        self.lock().live[me] = true;
                        consecutive = 0;
                        push_event(
                            events,
                            PoolEvent::Back {
                                board: name.clone(),
                            },
                        );
                    }
                    Err(e) if reconnects >= opts.max_reconnects => push_event(
                        events,
                        PoolEvent::Quarantined {
                            board: name.clone(),
                            reason: format!("given up after {reconnects} reconnect tries: {e:#}"),
                        },
                    ),
                    Err(_) => {}
                }
                continue;
            }
            // Take a job this board has not failed on, unless every other live board failed it too.
            let job = {
                let mut st = self.lock();
                loop {
                    if st.queue.is_empty() && st.in_flight == 0 {
                        cv.notify_all();
                        return;
                    }
                    let pick = st.queue.iter().position(|&j| {
                        !st.failed_on[j].contains(&me)
                            || st
                                .live
                                .iter()
                                .enumerate()
                                .all(|(b, &l)| !l || b == me || st.failed_on[j].contains(&b))
                    });
                    if let Some(p) = pick {
                        let j = st.queue.remove(p).expect("position is in range");
                        st.in_flight += 1;
                        break j;
                    }
                    st = cv
                        .wait_timeout(st, Duration::from_millis(50))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            };
            let outcome = jobs[job].run(board, opts, events);
            let mut st = self.lock();
            st.in_flight -= 1;
            match outcome {
                Ok(report) => {
                    consecutive = 0;
                    let attempts = st.attempts[job] + 1;
                    st.results[job] = Some(Ok(Measured {
                        board: name.clone(),
                        fingerprint: info
                            .as_ref()
                            .map(BoardInfo::fingerprint)
                            .unwrap_or_default(),
                        report,
                        attempts,
                    }));
                }
                Err(e) => {
                    let refused = e.downcast_ref::<AgentError>().is_some();
                    let reason = format!("{e:#}");
                    st.attempts[job] += 1;
                    st.failed_on[job].push(me);
                    push_event(
                        events,
                        PoolEvent::Failed {
                            board: name.clone(),
                            model: jobs[job].name(),
                            reason: reason.clone(),
                        },
                    );
                    if st.attempts[job] >= opts.max_attempts {
                        let n = st.attempts[job];
                        st.results[job] = Some(Err(
                            e.context(format!("{}: failed {n} times", jobs[job].name()))
                        ));
                    } else {
                        st.queue.push_front(job);
                    }
                    if !refused {
                        consecutive += 1;
                        // Reconnect now rather than with the next model: a board that is gone
                        // should cost only the model it had in flight.
                        drop(st);
                        let back = consecutive < opts.quarantine_after && board.reconnect().is_ok();
                        st = self.lock();
                        if !back {
                            *up = false;
                            st.live[me] = false;
                            reconnects = 0;
                            push_event(
                                events,
                                PoolEvent::Quarantined {
                                    board: name.clone(),
                                    reason: format!(
                                        "{consecutive} failures in a row, the last: {reason}"
                                    ),
                                },
                            );
                        }
                    }
                }
            }
            cv.notify_all();
        }
    }
}

/// Runs `bench` (one measurement and, when it must be discarded for heat, why) until a cool
/// report comes back, cooling the board down between tries.
fn measure_cool<R>(
    board: &mut dyn Board,
    opts: &PoolOptions,
    events: &Mutex<Vec<PoolEvent>>,
    what: &str,
    mut bench: impl FnMut(&mut dyn Board) -> Result<(R, Option<String>)>,
) -> Result<R> {
    let cool = Duration::from_secs_f64(board.config().cool_down_s);
    for _ in 0..=opts.thermal_retries {
        match bench(board)? {
            (report, None) => return Ok(report),
            (_, Some(reason)) => {
                push_event(
                    events,
                    PoolEvent::Hot {
                        board: board.name().to_string(),
                        reason,
                    },
                );
                std::thread::sleep(cool);
            }
        }
    }
    bail!(
        "board {:?} stayed too hot over {} measurements of {what}; improve its cooling or raise \
         thermal_limit_c",
        board.name(),
        opts.thermal_retries + 1,
    )
}

mod set;
pub use set::{SetMeasured, SetPart, set_spec_for};

#[cfg(test)]
mod tests;
