//! `shiftnas rank` end to end: a search run dir written here, retrained accuracies as CSV, the
//! figures checked against scipy.

use std::process::{Command, Output};

use shiftnas_tests::{TestDir, bin};

/// 12 archs (space `tiny`, 20 digits): retrained accuracy (%) and supernet error.
const ACC: [f64; 12] = [
    91.2, 90.5, 89.9, 92.3, 88.1, 90.5, 87.0, 93.1, 89.0, 91.8, 86.2, 90.0,
];
const ERR: [f64; 12] = [
    0.31, 0.33, 0.30, 0.28, 0.36, 0.34, 0.37, 0.29, 0.35, 0.28, 0.40, 0.32,
];
// python -c "from scipy.stats import kendalltau, spearmanr; a=[...ACC]; g=[-x for x in ERR];
//   print(kendalltau(g,a,variant='b').statistic, spearmanr(g,a).statistic)"
const SCIPY_TAU_ALL: f64 = 0.7384615384615385;
const SCIPY_RHO_ALL: f64 = 0.8842105263157896;
// python -c "from scipy.stats import kendalltau; print(kendalltau([-0.29,-0.28,-0.28,-0.31],
//   [93.1,92.3,91.8,91.2],variant='b').statistic)"   (the true top-4: archs 7, 3, 9, 0)
const SCIPY_TAU_TOP4: f64 = 0.18257418583505539;

/// Arch `i`: its index in the first two digits (base 4), then a fixed tail.
fn arch(i: usize) -> String {
    let tail: String = (0..18).map(|j| char::from(b'0' + (j % 4) as u8)).collect();
    format!("{}{}{tail}", i / 4, i % 4)
}

/// A run dir whose archive scores arch 3 twice (the latest, 0.28, counts) plus one arch
/// without a retrained accuracy, and a truth CSV with one arch the run never scored.
fn fixture(t: &TestDir) {
    let mut archive = String::new();
    let mut line = |a: &str, e: f64, step: u64| {
        archive += &format!(
            "{{\"generation\":1,\"arch\":\"{a}\",\"error\":{e},\"latency\":1.0,\"latency_source\":\"flops\",\"flops\":1,\"params\":1,\"supernet_step\":{step}}}\n"
        );
    };
    line(&arch(3), 0.5, 10);
    for (i, e) in ERR.iter().enumerate() {
        line(&arch(i), *e, 20);
    }
    line(&"3".repeat(20), 0.1, 20);
    t.write("run/archive.jsonl", archive);
    t.write("run/config.toml", "space = \"tiny\"\n");
    let mut truth = String::from("arch,accuracy\n");
    for (i, a) in ACC.iter().enumerate() {
        truth += &format!("{},{a}\n", arch(i));
    }
    truth += &format!("{},50\n", "2".repeat(20));
    t.write("truth.csv", truth);
}

fn rank(t: &TestDir, args: &[&str]) -> Output {
    Command::new(bin("shiftnas"))
        .current_dir(t.path())
        .args(["--no-progress", "rank"])
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rank failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"))
}

#[test]
fn rank_a_search_run_matches_scipy_and_hand_counts() {
    let t = TestDir::new();
    fixture(&t);
    let out = rank(
        &t,
        &[
            "--json",
            "--run",
            "run",
            "--truth",
            "truth.csv",
            "--top-k",
            "4",
        ],
    );
    let v = json(&out);
    assert_eq!((v["n"].as_u64(), v["k"].as_u64()), (Some(12), Some(4)));
    // Supernet top-4 {3, 9, 7, 2} vs true top-4 {7, 3, 9, 0}: 3 shared.
    assert_eq!(
        (v["overlap"].as_u64(), v["global"].as_f64()),
        (Some(3), Some(0.75))
    );
    let close = |k: &str, want: f64| {
        let got = v[k].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{k}: {got} vs scipy {want}");
    };
    close("tau_b", SCIPY_TAU_ALL);
    close("spearman_rho", SCIPY_RHO_ALL);
    close("local_tau_b", SCIPY_TAU_TOP4);
    assert_eq!(v["accuracy_unit"], "percent");
    assert_eq!(v["space"], "tiny");
    assert_eq!(v["true_top_k"][0]["arch"], arch(7).as_str());
    assert_eq!(v["true_top_k"][0]["supernet_rank"], 3);
    assert_eq!(v["no_score"][0], "2".repeat(20).as_str());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 of the 13 archs in truth.csv have no supernet score"),
        "{err}"
    );

    // The same scores as a CSV of supernet accuracies (higher is better) give the same figures.
    let mut csv = String::from("arch,accuracy\n");
    for (i, e) in ERR.iter().enumerate() {
        csv += &format!("{},{}\n", arch(i), 1.0 - e);
    }
    t.write("scores.csv", csv);
    let w = json(&rank(
        &t,
        &[
            "--json",
            "--archs",
            "scores.csv",
            "--truth",
            "truth.csv",
            "--top-k",
            "4",
        ],
    ));
    for k in ["overlap", "local_tau_b", "tau_b", "spearman_rho"] {
        assert_eq!(w[k], v[k], "{k}");
    }
    assert_eq!(w["space"], serde_json::Value::Null);

    // Human output: the figures table, then the true top-k with supernet ranks.
    let out = rank(&t, &["--run", "run", "--truth", "truth.csv"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("global") && text.contains("local tau-b") && text.contains("0.738"),
        "{text}"
    );
}

#[test]
fn rank_bad_inputs_exit_2_naming_file_and_line() {
    let t = TestDir::new();
    fixture(&t);
    t.write("bad.csv", format!("arch,accuracy\n{},9o.1\n", arch(0)));
    let out = rank(&t, &["--run", "run", "--truth", "bad.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv line 2, column 2: accuracy \"9o.1\" is not a number"),
        "{err}"
    );
    // 0.72 among percentages: 72 % or 0.72 %? Refused, naming both rows.
    t.write(
        "mixed.csv",
        format!("arch,accuracy\n{},91.2\n{},0.72\n", arch(0), arch(1)),
    );
    let out = rank(&t, &["--run", "run", "--truth", "mixed.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "mixed.csv line 3, column 2: accuracy 0.72 reads as a fraction, but line 2 has 91.2"
        ),
        "{err}"
    );
    let out = rank(
        &t,
        &["--run", "run", "--truth", "truth.csv", "--top-k", "13"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--top-k 13 must be between 1 and N = 12"),
        "{err}"
    );
}

#[test]
fn rank_paired_gives_scipys_paired_t_intervals() {
    let t = TestDir::new();
    t.write(
        "tau.csv",
        "seed,off,accumulate,immediate\n1,0.10,0.25,0.3\n2,-0.20,0.05,0\n3,0.05,0.10,0.2\n4,0.30,0.35,0.1\n5,0.00,0.20,0.4\n",
    );
    // python -c "from scipy import stats; off=[0.1,-0.2,0.05,0.3,0]; o=[...];
    //   print(stats.ttest_rel(o, off).confidence_interval(0.95))"
    let scipy = [
        ("accumulate", 0.028942195792088038, 0.2510578042079119),
        ("immediate", -0.12061439450014427, 0.4206143945001443),
    ];
    let out = json(&rank(&t, &["--json", "--paired", "tau.csv"]));
    assert_eq!(
        (out["unit"].as_str(), out["base"].as_str()),
        (Some("seed"), Some("off"))
    );
    // Each column's mean, by hand: off 0.25/5, accumulate 0.95/5, immediate 1.0/5.
    let means: Vec<(&str, f64)> = (out["means"].as_array().unwrap().iter())
        .map(|m| (m["setting"].as_str().unwrap(), m["mean"].as_f64().unwrap()))
        .collect();
    let hand = [("off", 0.05), ("accumulate", 0.19), ("immediate", 0.2)];
    assert_eq!(means.len(), 3);
    for ((name, m), (hname, h)) in means.iter().zip(hand) {
        assert!(
            *name == hname && (m - h).abs() < 1e-12,
            "{name} {m}, by hand {hname} {h}"
        );
    }
    let diffs = out["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2);
    for (d, (name, low, high)) in diffs.iter().zip(scipy) {
        assert_eq!(d["setting"], name);
        assert_eq!(d["n"], 5);
        let (l, h) = (d["low"].as_f64().unwrap(), d["high"].as_f64().unwrap());
        assert!(
            (l - low).abs() < 1e-9 && (h - high).abs() < 1e-9,
            "{name}: {l} {h}"
        );
    }
    let out = rank(&t, &["--paired", "tau.csv", "--truth", "truth.csv"]);
    assert_eq!(out.status.code(), Some(2));
}
