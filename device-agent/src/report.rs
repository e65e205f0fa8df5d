//! Human-readable tables for `bench` (one model or a set) and `info` (without `--json`).

use std::fmt::Write as _;

use shiftnas_protocol::{BenchReport, BenchSetReport, BoardInfo, Bounds};

use crate::affinity::format_cpu_list;

/// A few lines summarising a bench report.
pub fn bench_table(r: &BenchReport, model: &str) -> String {
    let mut s = String::new();
    let t = &r.summary;
    let cores = cores_text(&r.cores);
    let _ = writeln!(
        s,
        "model    {model} (sha256 {})",
        &r.model_sha256[..r.model_sha256.len().min(16)]
    );
    let _ = writeln!(s, "input    {} {:?}", r.input_name, r.input_shape);
    let _ = writeln!(
        s,
        "backend  {}   threads {}   cores {cores}   spin {}",
        r.backend,
        r.threads,
        if r.spin { "on" } else { "off" }
    );
    let _ = writeln!(
        s,
        "runs     {} timed after {} warm-up",
        r.samples_ms.len(),
        r.warmup
    );
    let _ = writeln!(
        s,
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms"
    );
    let _ = writeln!(
        s,
        "{:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        t.p50_ms, t.p90_ms, t.p99_ms, t.mean_ms, t.std_ms, t.min_ms, t.max_ms
    );
    if let Some(n) = &r.npu_ms {
        let _ = writeln!(
            s,
            "{:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}   NPU only (RKNN_QUERY_PERF_RUN)",
            n.p50_ms, n.p90_ms, n.p99_ms, n.mean_ms, n.std_ms, n.min_ms, n.max_ms
        );
    }
    if r.throttled {
        let _ = writeln!(s, "THROTTLED: re-measure (see warnings)");
    }
    s
}

fn cores_text(cores: &[usize]) -> String {
    if cores.is_empty() {
        "not pinned".to_string()
    } else {
        format_cpu_list(cores)
    }
}

/// `low–high` of an interval, or `–` without one.
fn bounds_text(b: Option<Bounds>) -> (String, String) {
    match b {
        Some(b) => (format!("{:.3}", b.low), format!("{:.3}", b.high)),
        None => ("–".into(), "–".into()),
    }
}

/// A set report: the conditions, the reference, then one line per model (`names` in the set's
/// order) with its estimate, interval, ± and ratio to the reference.
pub fn set_table(r: &BenchSetReport, reference: &str, names: &[String]) -> String {
    let mut s = String::new();
    let spec = &r.spec;
    let _ = writeln!(
        s,
        "backend    {}   threads {}   cores {}   spin {}",
        r.backend,
        spec.threads,
        cores_text(&spec.cores),
        if spec.spin { "on" } else { "off" }
    );
    let _ = writeln!(
        s,
        "rounds     {} ({} runs per model each, after {} warm-up), {:.1} s of a {:.1} s budget; \
         stopped: {}",
        r.rounds_done,
        spec.runs_per_slice,
        spec.warmup,
        r.elapsed_seconds,
        spec.budget_seconds.unwrap_or(f64::NAN),
        r.stop
    );
    let _ = writeln!(
        s,
        "intervals  {:.0} % of the median of per-round ratios to the reference (asked ±{:.2} %)",
        spec.confidence * 100.0,
        spec.precision * 100.0
    );
    let spread = match r.reference.interval_ms {
        Some(b) => format!("{:.3}–{:.3} ms over rounds", b.low, b.high),
        None => "too few rounds for an interval".into(),
    };
    let _ = writeln!(
        s,
        "reference  {reference} (sha256 {}): {:.3} ms, {spread}",
        &r.reference.sha256[..r.reference.sha256.len().min(16)],
        r.reference.median_ms
    );
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(5);
    let _ = writeln!(
        s,
        "{:<width$} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "model", "ms", "low_ms", "high_ms", "±%", "ratio"
    );
    for (name, m) in names.iter().zip(&r.models) {
        let (lo, hi) = bounds_text(m.interval_ms);
        let pm = m
            .relative_half_width
            .map_or("–".to_string(), |w| format!("{:.2}", w * 100.0));
        let _ = writeln!(
            s,
            "{name:<width$} {:>10.3} {lo:>10} {hi:>10} {pm:>8} {:>8.4}",
            m.estimate_ms, m.ratio
        );
    }
    if r.throttled {
        let _ = writeln!(s, "THROTTLED: re-measure (see warnings)");
    }
    s
}

/// A few lines describing the board.
pub fn info_table(i: &BoardInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "cpu       {} ({})", i.cpu_model, i.arch);
    let big: Vec<usize> = i.big_cores();
    let _ = writeln!(
        s,
        "cores     {} (big: {})",
        i.cores.len(),
        format_cpu_list(&big)
    );
    let _ = writeln!(s, "kernel    {}", i.kernel);
    let gov = if i.governors.is_empty() {
        "(no cpufreq)".to_string()
    } else {
        i.governors.join(", ")
    };
    let _ = writeln!(s, "governors {gov}");
    match &i.backend_error {
        None => {
            let _ = writeln!(s, "backend   {}", i.backend);
        }
        Some(e) => {
            let _ = writeln!(s, "backend   none: {e}");
        }
    }
    let _ = writeln!(
        s,
        "agent     {} (protocol v{})",
        i.agent_version, i.protocol_version
    );
    let _ = writeln!(s, "key       {}", i.fingerprint());
    s
}

#[cfg(test)]
mod tests {
    use shiftnas_protocol::{
        Backend, BackendName, BenchSetSpec, SetEstimate, SetReference, SetStopReason,
        SystemSnapshot,
    };

    use super::*;

    #[test]
    fn set_table_names_each_model_and_marks_missing_intervals() {
        let est = |sha: &str, ms: f64, iv: Option<Bounds>| SetEstimate {
            sha256: sha.into(),
            estimate_ms: ms,
            ratio: ms / 2.0,
            ratio_interval: iv.map(|b| Bounds {
                low: b.low / 2.0,
                high: b.high / 2.0,
            }),
            interval_ms: iv,
            relative_half_width: iv.map(|b| (b.high - b.low) / (2.0 * ms)),
            npu_ms: None,
        };
        let r = BenchSetReport {
            models: vec![
                est(
                    "aa",
                    3.0,
                    Some(Bounds {
                        low: 2.97,
                        high: 3.03,
                    }),
                ),
                est("bb", 1.0, None),
            ],
            reference: SetReference {
                sha256: "0123456789abcdef0123".into(),
                median_ms: 2.0,
                interval_ms: None,
                npu_ms: None,
            },
            rounds_done: 4,
            stop: SetStopReason::Budget,
            elapsed_seconds: 2.5,
            spec: BenchSetSpec {
                budget_seconds: Some(2.0),
                ..BenchSetSpec::default()
            },
            rounds: Vec::new(),
            backend: Backend {
                name: BackendName::Ort,
                version: "1.23.2".into(),
            },
            before: SystemSnapshot::default(),
            after: SystemSnapshot::default(),
            throttled: false,
            warnings: Vec::new(),
        };
        let t = set_table(&r, "r.onnx", &["a.onnx".into(), "b.onnx".into()]);
        assert!(t.contains("stopped: budget"), "{t}");
        assert!(
            t.contains("r.onnx (sha256 0123456789abcdef): 2.000 ms, too few rounds"),
            "{t}"
        );
        let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        let words = |name: &str| -> Vec<String> {
            line(name).split_whitespace().map(String::from).collect()
        };
        assert_eq!(
            words("a.onnx"),
            ["a.onnx", "3.000", "2.970", "3.030", "1.00", "1.5000"]
        );
        assert_eq!(
            words("b.onnx"),
            ["b.onnx", "1.000", "–", "–", "–", "0.5000"]
        );
    }
}
