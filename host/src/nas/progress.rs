//! Per-generation progress of an architecture search: the hypervolume of the front after each
//! generation, the progress bar, and a `--json` progress line (or a plain line without the bar).

use indicatif::ProgressBar;
use serde_json::json;
use shiftnas_models::{Arch, Space};

use super::arch_problem::Constraints;
use crate::output::Printer;
use crate::search::Individual;
use crate::search::hypervolume::front_hypervolume;
use crate::search::observer::{GenerationSummary, Observer};

/// Receives each generation, logs its front's hypervolume and reports progress; clears the bar
/// when dropped (also on errors and Ctrl-C).
pub struct Progress<'p> {
    printer: &'p Printer,
    bar: ProgressBar,
    reference: [f64; 2],
    hypervolume: Vec<f64>,
}

impl<'p> Progress<'p> {
    /// Progress of a search of `generations` generations, continuing after `done` of them whose
    /// hypervolumes were `hypervolume`; hypervolumes are measured against `reference`.
    pub fn new(
        printer: &'p Printer,
        generations: usize,
        done: usize,
        reference: [f64; 2],
        hypervolume: Vec<f64>,
    ) -> Progress<'p> {
        let bar = printer.bar(
            generations as u64,
            "{bar:30} gen {pos}/{len} {msg} ETA {eta}",
        );
        bar.set_position(done as u64);
        Progress {
            printer,
            bar,
            reference,
            hypervolume,
        }
    }

    /// Hypervolume after each generation so far.
    pub fn hypervolume(&self) -> &[f64] {
        &self.hypervolume
    }

    /// Clears the bar; returns the hypervolumes.
    pub fn finish(mut self) -> Vec<f64> {
        self.bar.finish_and_clear();
        std::mem::take(&mut self.hypervolume)
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Observer<Arch> for Progress<'_> {
    fn on_generation(&mut self, s: &GenerationSummary, population: &[Individual<Arch>]) {
        let hv = front_hypervolume(population, &self.reference);
        self.hypervolume.push(hv);
        let best = s.best.first().copied().unwrap_or(f64::NAN);
        self.bar.set_position(s.generation as u64);
        self.bar.set_message(format!(
            "best error {best:.2} %  front {}  HV {hv:.2}",
            s.front_size
        ));
        let p = self.printer;
        if p.json {
            let _ = p.json(&json!({"type": "progress", "generation": s.generation, "evaluations": s.n_evals, "best_error": best, "front_size": s.front_size, "hypervolume": hv}));
        } else if !p.progress {
            p.note(format!(
                "generation {}  best error {best:.2} %  front {}  HV {hv:.3}",
                s.generation, s.front_size
            ));
        }
    }
}

/// The hypervolume reference point: (100 % error, the latency budget, or else 1.1 × the FLOPs
/// proxy latency (MFLOPs) of the widest arch, at least 1.1).
pub fn hv_reference(space: &Space, constraints: &Constraints) -> [f64; 2] {
    let widest = Arch::uniform(space.num_blocks(), (space.choices.len() - 1) as u8);
    let big = shiftnas_models::cost::arch_flops(space, &widest) as f64 / 1e6;
    let lat = constraints.latency_budget.unwrap_or(big.max(1.0) * 1.1);
    [100.0, lat]
}
