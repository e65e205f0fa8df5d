//! `Printer`: tables or JSON on stdout, messages on stderr, progress bars for humans.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How a command talks to its user; built once from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Machine output: stdout carries only JSON.
    pub json: bool,
    /// Fewer messages on stderr.
    pub quiet: bool,
    /// Whether progress bars may be drawn.
    pub progress: bool,
}

impl Printer {
    /// A printer for the given flags; bars only when stderr is a terminal and `--json` is off.
    pub fn new(json: bool, quiet: bool, no_progress: bool) -> Printer {
        Printer {
            json,
            quiet,
            progress: !json && !no_progress && std::io::stderr().is_terminal(),
        }
    }

    /// A printer that draws nothing and prints no messages (tests, library callers).
    pub fn silent() -> Printer {
        Printer {
            json: false,
            quiet: true,
            progress: false,
        }
    }

    /// A message for people, on stderr (suppressed by `-q`).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A warning on stderr, always shown.
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }

    /// One JSON document (or one JSON line) on stdout.
    ///
    /// # Errors
    /// Serialisation or a closed stdout.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, value)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }

    /// A plain-text table on stdout, columns padded to their widest cell.
    ///
    /// # Errors
    /// A closed stdout.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(render_table(header, rows).as_bytes())?;
        Ok(())
    }

    /// A progress bar of `len` steps on stderr (hidden unless bars are enabled).
    pub fn bar(&self, len: u64, template: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Renders a table: header, a rule, rows; numbers right-aligned.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.trim_end_matches('%').parse::<f64>().is_ok();
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                if numeric(c) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    s += &(widths
        .iter()
        .map(|&w| "-".repeat(w))
        .collect::<Vec<_>>()
        .join("  ")
        + "\n");
    for row in rows {
        s += &line(row.iter().map(String::as_str).collect());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = render_table(
            &["arch", "acc"],
            &[
                vec!["0123".into(), "91.5".into()],
                vec!["3".into(), "7".into()],
            ],
        );
        assert_eq!(t, "arch  acc\n----  ----\n0123  91.5\n   3     7\n");
    }
}
