//! Which paths a training step runs: SPOS uniform sampling (after a path warm-up), SPOS's
//! FLOPs-binned sampling, FairNAS strict fairness, GreedyNAS's multi-path sampling with a
//! candidate pool ([`super::greedy`]), or AttentiveNAS's best-up / worst-up ([`super::attentive`]).

use anyhow::{Result, bail};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::cost::block_cost;
use shiftnas_models::{Arch, Choice, Space};

use super::attentive::{AttentiveScore, Pick};
use super::greedy::{self, GreedyPool};

/// How paths are sampled each step (`--sampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// One uniformly random arch per step (SPOS).
    Uniform,
    /// SPOS's FLOPs-binned sampling: a uniformly chosen FLOPs bin, then a uniform arch inside it.
    FlopsBinned,
    /// FairNAS strict fairness: one path per choice, each choice of each block once per step.
    Fair,
    /// GreedyNAS: `--greedy-paths` candidates (uniform, or from the pool of good paths with a
    /// probability rising to 0.8), scored on a held-out batch; the `--greedy-keep` best train.
    Greedy,
    /// AttentiveNAS best-up: `--attentive-paths` candidates in one FLOPs bin; the one with the
    /// highest predicted accuracy (`--attentive-score`) trains.
    AttentiveBest,
    /// AttentiveNAS worst-up: as best-up, but the lowest predicted accuracy trains.
    AttentiveWorst,
}

impl Sampling {
    /// Whether the path warm-up applies (all but fair sampling).
    pub fn warms_up(self) -> bool {
        self != Sampling::Fair
    }
}

/// Settings of GreedyNAS and AttentiveNAS sampling; the other methods ignore them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MultiPath {
    /// GreedyNAS: candidate paths per step (the paper's m = 10).
    pub greedy_paths: usize,
    /// GreedyNAS: candidates trained per step, the lowest validation loss (the paper's k = 5).
    pub greedy_keep: usize,
    /// GreedyNAS: paths in the candidate pool (the paper's 1000).
    pub greedy_pool: usize,
    /// AttentiveNAS: candidate paths per step.
    pub attentive_paths: usize,
    /// AttentiveNAS: the accuracy predictor.
    pub attentive_score: AttentiveScore,
}

impl Default for MultiPath {
    fn default() -> Self {
        MultiPath {
            greedy_paths: 4,
            greedy_keep: 2,
            greedy_pool: 64,
            attentive_paths: 3,
            attentive_score: AttentiveScore::Loss,
        }
    }
}

impl MultiPath {
    /// Refuses sizes that cannot work, naming the flag.
    ///
    /// # Errors
    /// A zero size, or more paths kept than drawn.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--greedy-paths", self.greedy_paths),
            ("--greedy-keep", self.greedy_keep),
            ("--greedy-pool", self.greedy_pool),
            ("--attentive-paths", self.attentive_paths),
        ] {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if self.greedy_keep > self.greedy_paths {
            bail!(
                "--greedy-keep {} is more than --greedy-paths {}: a step cannot keep more paths than it draws",
                self.greedy_keep,
                self.greedy_paths
            );
        }
        Ok(())
    }
}

/// What one step does with its paths.
#[derive(Debug, Clone, PartialEq)]
pub enum StepPaths {
    /// Trains these (gradients summed, one update).
    Train(Vec<Arch>),
    /// GreedyNAS: score these on a held-out batch, then [`PathSampler::greedy_select`].
    Greedy(Vec<Arch>),
    /// AttentiveNAS: predict these paths' accuracies and train the one [`Pick`] names.
    Attentive(Vec<Arch>, Pick),
}

impl StepPaths {
    /// The archs trained or the candidates scored.
    pub fn archs(&self) -> &[Arch] {
        match self {
            StepPaths::Train(a) | StepPaths::Greedy(a) | StepPaths::Attentive(a, _) => a,
        }
    }
}

/// The paths of every step of a run: its sampling, warm-up, FLOPs bins and GreedyNAS pool.
#[derive(Debug, Clone)]
pub struct PathSampler {
    space: Space,
    sampling: Sampling,
    warmup: u64,
    steps: u64,
    bins: Option<FlopsBins>,
    multi: MultiPath,
    pool: Option<GreedyPool>,
}

impl PathSampler {
    /// A sampler for `space` in a run of `steps` steps; `warmup` applies to all but fair
    /// sampling, `multi` to GreedyNAS and AttentiveNAS.
    ///
    /// # Errors
    /// A warm-up with fair sampling, fewer than 1 FLOPs bin, bad `multi` sizes.
    pub fn new(
        space: &Space,
        sampling: Sampling,
        warmup: u64,
        bins: usize,
        multi: &MultiPath,
        steps: u64,
    ) -> Result<PathSampler> {
        if !sampling.warms_up() && warmup > 0 {
            bail!("--warmup-steps {warmup} does not apply to --sampling fair; set it to 0");
        }
        multi.check()?;
        let bins = match sampling {
            Sampling::FlopsBinned | Sampling::AttentiveBest | Sampling::AttentiveWorst => {
                Some(FlopsBins::new(space, bins)?)
            }
            _ => None,
        };
        Ok(PathSampler {
            space: space.clone(),
            sampling,
            warmup,
            steps,
            bins,
            multi: multi.clone(),
            pool: (sampling == Sampling::Greedy).then(|| GreedyPool::new(multi.greedy_pool)),
        })
    }

    /// The paths of step `step`: one, one per choice for fair sampling, or the candidates of
    /// GreedyNAS and AttentiveNAS (after the warm-up).
    pub fn paths(&self, step: u64, rng: &mut ChaCha8Rng) -> StepPaths {
        let space = &self.space;
        let (blocks, choices) = (space.num_blocks(), space.choices.len());
        if self.sampling == Sampling::Fair {
            return StepPaths::Train(fair_paths(blocks, choices, rng));
        }
        if step < self.warmup {
            return StepPaths::Train(vec![warmup_arch(step, self.warmup, space, rng)]);
        }
        match (&self.bins, &self.pool, self.sampling) {
            (Some(bins), _, Sampling::AttentiveBest | Sampling::AttentiveWorst) => {
                let bin = rng.random_range(0..bins.bins);
                let c = (0..self.multi.attentive_paths)
                    .map(|_| bins.sample_in(bin, rng))
                    .collect();
                let pick = match self.sampling {
                    Sampling::AttentiveBest => Pick::Best,
                    _ => Pick::Worst,
                };
                StepPaths::Attentive(c, pick)
            }
            (_, Some(pool), Sampling::Greedy) => {
                let q = greedy::exploit_prob(step, self.warmup, self.steps);
                let m = self.multi.greedy_paths;
                StepPaths::Greedy(greedy::candidates(pool, m, q, blocks, choices, rng))
            }
            (Some(bins), _, _) => StepPaths::Train(vec![bins.sample(rng)]),
            _ => StepPaths::Train(vec![Arch::random(blocks, choices, rng)]),
        }
    }

    /// GreedyNAS: the `--greedy-keep` candidates with the lowest `losses` (which the pool
    /// records, see [`greedy::select`]).
    ///
    /// # Panics
    /// When the sampling is not GreedyNAS.
    pub fn greedy_select(&mut self, candidates: &[Arch], losses: &[f64]) -> Vec<Arch> {
        let pool = self
            .pool
            .as_mut()
            .expect("greedy_select needs --sampling greedy");
        greedy::select(pool, candidates, losses, self.multi.greedy_keep)
    }

    /// The GreedyNAS candidate pool (`None` for other sampling).
    pub fn greedy_pool(&self) -> Option<&GreedyPool> {
        self.pool.as_ref()
    }

    /// Replaces the GreedyNAS pool with one read from a checkpoint.
    ///
    /// # Errors
    /// Not GreedyNAS sampling, or a pool of another capacity than `--greedy-pool`.
    pub fn set_greedy_pool(&mut self, pool: GreedyPool) -> Result<()> {
        match &mut self.pool {
            Some(p) if p.capacity == pool.capacity => {
                *p = pool;
                Ok(())
            }
            Some(p) => bail!(
                "the checkpoint's GreedyNAS pool holds up to {} paths but --greedy-pool is {}",
                pool.capacity,
                p.capacity
            ),
            None => bail!("a GreedyNAS pool given to --sampling {:?}", self.sampling),
        }
    }

    /// The multi-path settings.
    pub fn multi_path(&self) -> &MultiPath {
        &self.multi
    }

    /// The choices the rest of their kernel group inherits from before step `step`, when that
    /// step ends the warm-up ([`warmup_bases`]); empty otherwise.
    pub fn inherits_at(&self, step: u64) -> Vec<usize> {
        if self.warmup > 0 && step == self.warmup {
            warmup_bases(&self.space)
        } else {
            Vec::new()
        }
    }
}

/// SPOS's FLOPs-binned sampling: the space's FLOPs range `[all-cheapest, all-dearest]` cut into
/// equal bins; a step picks a bin uniformly, then draws uniform archs until one lands in it (at
/// most [`FlopsBins::TRIES`], then the closest one drawn: the outermost bins are rarely reachable
/// by chance). Uniform sampling alone concentrates on mid-range FLOPs; this spreads training over
/// the whole range.
#[derive(Debug, Clone)]
pub struct FlopsBins {
    /// `per_block[i][c]`: multiply-adds of block i with choice c.
    per_block: Vec<Vec<u64>>,
    lo: u64,
    hi: u64,
    /// Number of bins.
    pub bins: usize,
}

impl FlopsBins {
    /// Uniform draws per step before taking the closest.
    pub const TRIES: usize = 2000;

    /// The bins of `space`.
    ///
    /// # Errors
    /// `bins == 0`.
    pub fn new(space: &Space, bins: usize) -> Result<FlopsBins> {
        if bins == 0 {
            bail!("--flops-bins must be at least 1");
        }
        let per_block: Vec<Vec<u64>> = (0..space.num_blocks())
            .map(|i| {
                space
                    .choices
                    .iter()
                    .map(|&c| block_cost(space, i, c).flops)
                    .collect()
            })
            .collect();
        let sum = |pick: fn(&Vec<u64>) -> u64| per_block.iter().map(pick).sum::<u64>();
        let lo = sum(|v| v.iter().copied().min().unwrap_or(0));
        let hi = sum(|v| v.iter().copied().max().unwrap_or(0));
        Ok(FlopsBins {
            per_block,
            lo,
            hi,
            bins,
        })
    }

    /// Block FLOPs of `arch` (the fixed stem/last/classifier part left out: it shifts every arch
    /// alike).
    pub fn flops(&self, arch: &Arch) -> u64 {
        arch.genes()
            .iter()
            .zip(&self.per_block)
            .map(|(&g, v)| v[g as usize])
            .sum()
    }

    /// The bin `flops` falls in.
    pub fn bin_of(&self, flops: u64) -> usize {
        let span = (self.hi - self.lo).max(1) as f64;
        let x = (flops.saturating_sub(self.lo)) as f64 / span;
        ((x * self.bins as f64) as usize).min(self.bins - 1)
    }

    /// A uniform bin, then an arch in it (or the closest of [`FlopsBins::TRIES`] draws).
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Arch {
        let bin = rng.random_range(0..self.bins);
        self.sample_in(bin, rng)
    }

    /// An arch in `bin`, or the closest to its centre of [`FlopsBins::TRIES`] draws.
    pub fn sample_in(&self, bin: usize, rng: &mut ChaCha8Rng) -> Arch {
        let width = (self.hi - self.lo) as f64 / self.bins as f64;
        let centre = self.lo as f64 + (bin as f64 + 0.5) * width;
        let choices = self.per_block.first().map_or(1, Vec::len);
        let mut best: Option<(f64, Arch)> = None;
        for _ in 0..Self::TRIES {
            let arch = Arch::random(self.per_block.len(), choices, rng);
            let f = self.flops(&arch);
            if self.bin_of(f) == bin {
                return arch;
            }
            let d = (f as f64 - centre).abs();
            if best.as_ref().is_none_or(|(b, _)| d < *b) {
                best = Some((d, arch));
            }
        }
        best.map(|(_, a)| a).expect("TRIES > 0")
    }
}

/// Whether choices `a` and `b` differ only in kernel size, so one can inherit the other's
/// weights ([`Supernet::inherit_kernels`]): ShuffleNet k3/k5/k7, or MBConv choices of one expansion.
fn same_kernel_group(a: Choice, b: Choice) -> bool {
    a != Choice::Xception
        && b != Choice::Xception
        && a.family() == b.family()
        && a.expansion() == b.expansion()
}

/// The choices the path warm-up trains: the smallest kernel of each kernel group (ShuffleNet k3;
/// MBConv k3e3 and k3e6), in choice order. The first is the warm-up's main path.
pub fn warmup_bases(space: &Space) -> Vec<usize> {
    let choices = &space.choices;
    (0..choices.len())
        .filter(|&i| {
            let c = choices[i];
            c != Choice::Xception
                && !choices
                    .iter()
                    .any(|&o| same_kernel_group(o, c) && o.kernel() < c.kernel())
        })
        .collect()
}

/// The single path of step `step` during a path warm-up of `warmup` steps (uniform after it).
///
/// From step `warmup` on, every block draws its choice uniformly (SPOS). Before, each block runs
/// the main base choice ([`warmup_bases`], k3 or k3e3) except with probability
/// `step / warmup × x / n`, when it draws one of the choices outside the main base's kernel
/// group: Xception, or the other bases (k3e6), which stand for the x of the space's n choices
/// that the main base cannot pass its weights to. At step `warmup` the loop copies each base
/// into the larger kernels of its group ([`Supernet::inherit_kernels`]), so all choices enter
/// uniform sampling trained.
///
/// Why: plain uniform sampling from a fresh init barely learns for hundreds of steps in a
/// 20-block space — every step sees another of 4^20 random feature bases, so the shared layers
/// get no consistent signal (PyTorch does the same: `experiments/warmup_torch.py`).
pub fn warmup_arch(step: u64, warmup: u64, space: &Space, rng: &mut ChaCha8Rng) -> Arch {
    let (blocks, n) = (space.num_blocks(), space.choices.len());
    let bases = warmup_bases(space);
    let Some(&base) = bases.first().filter(|_| step < warmup) else {
        return Arch::random(blocks, n, rng);
    };
    let main = space.choices[base];
    let others: Vec<u8> = (0..n as u8)
        .filter(|&c| {
            let choice = space.choices[c as usize];
            choice == Choice::Xception || (c as usize != base && bases.contains(&(c as usize)))
        })
        .collect();
    let outside = space
        .choices
        .iter()
        .filter(|&&c| !same_kernel_group(c, main))
        .count();
    let p = step as f64 / warmup as f64 * outside as f64 / n as f64;
    let genes = (0..blocks)
        .map(|_| {
            if !others.is_empty() && rng.random_bool(p) {
                others[rng.random_range(0..others.len())]
            } else {
                base as u8
            }
        })
        .collect();
    Arch::new(genes)
}

/// FairNAS paths: `choices` archs such that each block uses every choice exactly once.
pub fn fair_paths(blocks: usize, choices: usize, rng: &mut ChaCha8Rng) -> Vec<Arch> {
    let perms: Vec<Vec<u8>> = (0..blocks)
        .map(|_| {
            let mut p: Vec<u8> = (0..choices as u8).collect();
            p.shuffle(rng);
            p
        })
        .collect();
    (0..choices)
        .map(|j| Arch::new(perms.iter().map(|p| p[j]).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// Bins of the tiny space: exact range, every reachable bin hit exactly, and a spread that
    /// uniform sampling does not have.
    #[test]
    fn flops_bins_cover_the_range_uniformly() {
        let space = Space::tiny();
        let bins = FlopsBins::new(&space, 10).unwrap();
        let all = |c: u8| bins.flops(&Arch::uniform(space.num_blocks(), c));
        // The range runs from the cheapest to the dearest choice of every block.
        let (lo, hi) = (0..space.num_blocks()).fold((0, 0), |(lo, hi), i| {
            let f: Vec<u64> = space
                .choices
                .iter()
                .map(|&c| block_cost(&space, i, c).flops)
                .collect();
            (lo + f.iter().min().unwrap(), hi + f.iter().max().unwrap())
        });
        assert_eq!((bins.lo, bins.hi), (lo, hi));
        assert!(all(0) >= lo && all(2) <= hi);
        assert_eq!(bins.bin_of(lo), 0);
        assert_eq!(bins.bin_of(hi), 9);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for bin in 2..8 {
            for _ in 0..20 {
                let a = bins.sample_in(bin, &mut rng);
                assert_eq!(bins.bin_of(bins.flops(&a)), bin, "{a}");
            }
        }
        // Uniform archs crowd the middle bins; binned sampling puts ~1/10 in each middle bin.
        let hist = |sample: &mut dyn FnMut(&mut ChaCha8Rng) -> Arch, rng: &mut ChaCha8Rng| {
            let mut h = [0usize; 10];
            for _ in 0..1000 {
                h[bins.bin_of(bins.flops(&sample(rng)))] += 1;
            }
            h
        };
        let binned = hist(&mut |r| bins.sample(r), &mut rng);
        let uniform = hist(&mut |r| Arch::random(20, 4, r), &mut rng);
        // Bins 2–6 are reached by rejection (~1/10 each); the unreachable outer bins fall back to
        // the closest arch drawn, which lands in their inner neighbours (seen: 1 and 7).
        for b in 2..7 {
            assert!((60..=140).contains(&binned[b]), "{binned:?}");
        }
        let outer = |h: &[usize; 10]| h[..3].iter().chain(&h[7..]).sum::<usize>();
        assert!(
            outer(&binned) > 2 * outer(&uniform),
            "{binned:?} vs {uniform:?}"
        );
        assert!(FlopsBins::new(&space, 0).is_err());
    }

    #[test]
    fn sampler_refuses_warmup_with_fair_and_inherits_once() {
        let space = Space::tiny();
        let mp = MultiPath::default();
        assert!(PathSampler::new(&space, Sampling::Fair, 5, 10, &mp, 20).is_err());
        let s = PathSampler::new(&space, Sampling::FlopsBinned, 5, 10, &mp, 20).unwrap();
        let hits: Vec<u64> = (0..10).filter(|&t| !s.inherits_at(t).is_empty()).collect();
        assert_eq!(hits, [5]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            s.paths(0, &mut rng),
            StepPaths::Train(vec![Arch::uniform(20, 0)])
        );
        let fair = PathSampler::new(&space, Sampling::Fair, 0, 10, &mp, 20).unwrap();
        assert_eq!(fair.paths(0, &mut rng).archs().len(), 4);
        assert!(fair.inherits_at(0).is_empty());
    }

    /// After the warm-up, AttentiveNAS draws its candidates inside one FLOPs bin and GreedyNAS
    /// draws `--greedy-paths` distinct ones; a pool of another capacity is refused.
    #[test]
    fn multi_path_candidates() {
        let space = Space::mbv2_tiny();
        let mp = MultiPath {
            attentive_paths: 6,
            ..MultiPath::default()
        };
        let bins = FlopsBins::new(&space, 10).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (sampling, want) in [
            (Sampling::AttentiveBest, Pick::Best),
            (Sampling::AttentiveWorst, Pick::Worst),
        ] {
            let s = PathSampler::new(&space, sampling, 2, 10, &mp, 20).unwrap();
            assert_eq!(s.paths(1, &mut rng).archs().len(), 1);
            for step in 2..12 {
                let StepPaths::Attentive(c, pick) = s.paths(step, &mut rng) else {
                    panic!("no candidates at step {step}");
                };
                assert_eq!((c.len(), pick), (6, want));
                let b: Vec<usize> = c.iter().map(|a| bins.bin_of(bins.flops(a))).collect();
                // Outer bins fall back to the closest draw, which may sit in the neighbour bin.
                assert!(
                    b.iter().max().unwrap() - b.iter().min().unwrap() <= 1,
                    "{b:?}"
                );
            }
        }
        let mut g = PathSampler::new(&space, Sampling::Greedy, 0, 10, &mp, 20).unwrap();
        let StepPaths::Greedy(c) = g.paths(0, &mut rng) else {
            panic!("greedy drew no candidates");
        };
        assert_eq!(c.len(), mp.greedy_paths);
        let kept = g.greedy_select(&c, &[0.4, 0.1, 0.3, 0.2]);
        assert_eq!(kept, [c[1].clone(), c[3].clone()]);
        assert_eq!(g.greedy_pool().unwrap().len(), 2);
        assert!(g.set_greedy_pool(GreedyPool::new(3)).is_err());
        assert!(g.set_greedy_pool(GreedyPool::new(mp.greedy_pool)).is_ok());
        let bad = MultiPath {
            greedy_keep: 5,
            ..MultiPath::default()
        };
        let e = PathSampler::new(&space, Sampling::Greedy, 0, 10, &bad, 20).unwrap_err();
        assert!(e.to_string().contains("--greedy-keep 5"), "{e}");
    }

    /// MobileNetV2: the warm-up trains k3e3 and ramps in k3e6 (the e6 group's base, standing for
    /// half the choices); both pass their weights to their group's larger kernels at its end.
    #[test]
    fn mobilenet_warmup_trains_a_base_of_each_expansion() {
        let space = Space::mbv2_tiny();
        let (k3e3, k3e6) = (
            space
                .choices
                .iter()
                .position(|&c| c == Choice::MbK3E3)
                .unwrap(),
            space
                .choices
                .iter()
                .position(|&c| c == Choice::MbK3E6)
                .unwrap(),
        );
        assert_eq!(warmup_bases(&space), [k3e3, k3e6]);
        assert_eq!(warmup_bases(&Space::tiny()), [0]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut n, mut e6) = (0usize, 0usize);
        for step in 0..100 {
            for &g in warmup_arch(step, 100, &space, &mut rng).genes() {
                assert!(g as usize == k3e3 || g as usize == k3e6, "{g}");
                n += 1;
                e6 += usize::from(g as usize == k3e6);
            }
        }
        // p ramps from 0 to 1/2: a quarter of all draws on average.
        let share = e6 as f64 / n as f64;
        assert!((0.2..0.3).contains(&share), "{share}");
        let s =
            PathSampler::new(&space, Sampling::Uniform, 10, 10, &MultiPath::default(), 20).unwrap();
        assert_eq!(s.inherits_at(10), [k3e3, k3e6]);
    }
}
