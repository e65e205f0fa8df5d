//! Human-readable tables for `bench` and `info` (without `--json`).

use std::fmt::Write as _;

use shiftnas_protocol::{BenchReport, BoardInfo};

use crate::affinity::format_cpu_list;

/// A few lines summarising a bench report.
pub fn bench_table(r: &BenchReport, model: &str) -> String {
    let mut s = String::new();
    let t = &r.summary;
    let cores = if r.cores.is_empty() {
        "not pinned".to_string()
    } else {
        format_cpu_list(&r.cores)
    };
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
