//! Ctrl-C for long work: the first SIGINT asks the running loop to stop at its next safe point
//! (training: right after writing a checkpoint; search: after the candidate in flight, with the
//! last finished generation's checkpoint on disk), the second one ends the process at once.
//!
//! Loops poll [`requested`] between steps and return [`Interrupted`] (training) or
//! [`SearchInterrupted`] (search) once their state is saved; the command turns that into exit
//! code 130 and a note on how to resume.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // Second Ctrl-C: the user means it. `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Routes SIGINT to [`requested`] (idempotent).
pub fn install() {
    // SAFETY: the handler only touches an atomic and calls `_exit`.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Whether Ctrl-C was pressed since the start.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a loop returns when it stopped for Ctrl-C after saving its state.
#[derive(Debug, thiserror::Error)]
#[error("interrupted after step {step}; the checkpoint is complete")]
pub struct Interrupted {
    /// Steps completed and saved.
    pub step: u64,
}

/// The error the search returns when it stopped for Ctrl-C. Generations up to `generation` are
/// in the checkpoint and the archive; the one in flight is dropped and runs again, identically,
/// on resume.
#[derive(Debug, thiserror::Error)]
pub struct SearchInterrupted {
    /// Generations completed and checkpointed (0: none yet).
    pub generation: usize,
    /// Every generation was done; the final front's re-score was cut short (resume redoes it).
    pub rescoring: bool,
}

impl SearchInterrupted {
    /// Stopped inside or before generation `generation + 1`.
    pub fn after(generation: usize) -> SearchInterrupted {
        SearchInterrupted {
            generation,
            rescoring: false,
        }
    }

    /// Stopped while re-scoring the final front, all `generations` done.
    pub fn in_rescore(generations: usize) -> SearchInterrupted {
        SearchInterrupted {
            generation: generations,
            rescoring: true,
        }
    }
}

impl std::fmt::Display for SearchInterrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            g if self.rescoring => write!(
                f,
                "interrupted while re-scoring the final front; all {g} generations are checkpointed and resuming re-scores it"
            ),
            0 => write!(
                f,
                "interrupted in generation 1, before the first checkpoint; resuming starts the search from the beginning"
            ),
            g => write!(
                f,
                "interrupted after generation {g}; its checkpoint is complete and generation {} runs again on resume",
                g + 1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SearchInterrupted;

    #[test]
    fn search_interruptions_say_what_resume_redoes() {
        let first = SearchInterrupted::after(0).to_string();
        assert!(first.contains("from the beginning"), "{first}");
        let mid = SearchInterrupted::after(3).to_string();
        assert!(mid.contains("after generation 3") && mid.contains("generation 4 runs again"));
        let end = SearchInterrupted::in_rescore(5).to_string();
        assert!(end.contains("re-scoring the final front") && end.contains("all 5 generations"));
    }
}
