//! Pool logic against scripted boards: exactly-once, retry elsewhere, quarantine, thermal gating.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shiftnas_protocol::{BenchSetSpec, MAX_SET_MODELS};

use super::*;
use crate::boards::scripted::{ScriptedBoard, Step};

fn jobs(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| Job::new(format!("m{i}"), vec![i as u8; 10]))
        .collect()
}

fn fast() -> PoolOptions {
    PoolOptions {
        reconnect_wait: Duration::from_millis(5),
        ..PoolOptions::default()
    }
}

type Log = Arc<Mutex<Vec<(String, String)>>>;

fn board(name: &str, script: Vec<Step>, default: Step, log: &Log) -> Box<dyn Board> {
    Box::new(ScriptedBoard::new(name, "A76", script, default).with_log(Arc::clone(log)))
}

#[test]
fn two_boards_measure_each_model_exactly_once() {
    let log = Log::default();
    let mut pool = Pool::new(
        vec![
            board("a", vec![], Step::Ok(1.0), &log),
            board("b", vec![], Step::Ok(2.0), &log),
        ],
        fast(),
    )
    .unwrap();
    let js = jobs(20);
    let res = pool.measure(&js);
    assert!(
        res.iter()
            .all(|r| r.as_ref().is_ok_and(|m| m.attempts == 1))
    );
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 20, "{log:?}");
    for j in &js {
        assert_eq!(log.iter().filter(|(_, s)| *s == j.sha256).count(), 1);
    }
    assert!(pool.events().is_empty());
}

#[test]
fn a_lost_board_costs_only_its_in_flight_model() {
    let log = Log::default();
    // Board b dies on its third model and never comes back.
    let mut b = ScriptedBoard::new("b", "A76", vec![Step::Ok(2.0), Step::Ok(2.0)], Step::Fail)
        .with_log(Arc::clone(&log));
    b.reconnect_failures = 0;
    let mut pool = Pool::new(
        vec![board("a", vec![], Step::Ok(1.0), &log), Box::new(b)],
        fast(),
    )
    .unwrap();
    let res = pool.measure(&jobs(12));
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert_eq!(log.lock().unwrap().len(), 12);
    let ev = pool.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, PoolEvent::Quarantined { board, .. } if board == "b")),
        "{ev:?}"
    );
}

#[test]
fn quarantined_board_comes_back_after_reconnect() {
    let log = Log::default();
    let mut pool = Pool::new(
        vec![board(
            "solo",
            vec![Step::Fail, Step::Fail],
            Step::Ok(1.5),
            &log,
        )],
        fast(),
    )
    .unwrap();
    let res = pool.measure(&jobs(3));
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let ev = pool.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, PoolEvent::Quarantined { .. })),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(e, PoolEvent::Back { .. })),
        "{ev:?}"
    );
}

#[test]
fn attempts_are_bounded_and_refusals_do_not_quarantine() {
    let log = Log::default();
    let mut pool = Pool::new(vec![board("a", vec![], Step::Refuse, &log)], fast()).unwrap();
    let res = pool.measure(&jobs(2));
    for r in &res {
        let e = format!("{:#}", r.as_ref().unwrap_err());
        assert!(e.contains("failed 3 times") && e.contains("refused"), "{e}");
    }
    assert!(
        !pool
            .events()
            .iter()
            .any(|e| matches!(e, PoolEvent::Quarantined { .. }))
    );
}

#[test]
fn hot_reports_are_discarded_and_remeasured() {
    let log = Log::default();
    let mut pool = Pool::new(
        vec![board(
            "a",
            vec![Step::Hot(9.0, 85.0), Step::Hot(9.0, 81.0)],
            Step::Ok(1.0),
            &log,
        )],
        fast(),
    )
    .unwrap();
    let res = pool.measure(&jobs(1));
    let m = res[0].as_ref().unwrap();
    assert_eq!(m.report.summary.p50_ms, 1.0);
    assert_eq!(
        pool.events()
            .iter()
            .filter(|e| matches!(e, PoolEvent::Hot { .. }))
            .count(),
        2
    );
}

#[test]
fn a_board_that_stays_hot_fails_the_model() {
    let log = Log::default();
    let mut pool = Pool::new(vec![board("a", vec![], Step::Hot(9.0, 90.0), &log)], fast()).unwrap();
    let res = pool.measure(&jobs(1));
    let e = format!("{:#}", res[0].as_ref().unwrap_err());
    assert!(e.contains("too hot"), "{e}");
}

#[test]
fn different_fingerprints_are_not_pooled_unless_mixed() {
    let log = Log::default();
    let mk = || -> Vec<Box<dyn Board>> {
        vec![
            board("a", vec![], Step::Ok(1.0), &log),
            Box::new(ScriptedBoard::new("x", "A55", vec![], Step::Ok(3.0))),
        ]
    };
    let e = Pool::new(mk(), fast()).err().unwrap().to_string();
    assert!(e.contains("--mix-boards") && e.contains("A55"), "{e}");
    let p = Pool::new(
        mk(),
        PoolOptions {
            mix_boards: true,
            ..fast()
        },
    )
    .unwrap();
    assert!(p.fingerprint().starts_with("mixed:"));
}

#[test]
fn unreachable_boards_start_quarantined_and_all_down_is_an_error() {
    let log = Log::default();
    let mut dead = ScriptedBoard::new("dead", "A76", vec![], Step::Ok(1.0));
    dead.reconnect_failures = 100;
    let mut pool = Pool::new(
        vec![board("a", vec![], Step::Ok(1.0), &log), Box::new(dead)],
        fast(),
    )
    .unwrap();
    assert!(pool.measure(&jobs(4)).iter().all(Result::is_ok));
    let mut dead = ScriptedBoard::new("dead", "A76", vec![], Step::Ok(1.0));
    dead.reconnect_failures = 100;
    let e = Pool::new(vec![Box::new(dead)], fast())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no board reachable"), "{e}");
}

/// A set over two boards: each board measures one contiguous part with the reference, and the
/// estimates come back in the set's order, rescaled to the median of the parts' reference
/// medians (both 1 ms here, so the ratios themselves).
#[test]
fn a_set_is_split_over_the_boards_with_the_reference_on_each_and_rejoined_in_order() {
    let log = Log::default();
    // Board a times every model at 1× the reference, board b at 10×; each set takes 200 ms, so
    // neither board can take both parts before the other has started.
    let slow = |name: &str, ms: f64| -> Box<dyn Board> {
        let mut b =
            ScriptedBoard::new(name, "A76", vec![], Step::Ok(ms)).with_log(Arc::clone(&log));
        b.delay = Duration::from_millis(200);
        Box::new(b)
    };
    let (a, b) = (slow("a", 1.0), slow("b", 10.0));
    let mut pool = Pool::new(vec![a, b], fast()).unwrap();
    let js = jobs(5);
    let reference = Job::new("ref", vec![99; 10]);
    let res = pool.measure_set(&js, &reference, &BenchSetSpec::default(), None);
    let res: Vec<SetMeasured> = res.into_iter().map(Result::unwrap).collect();
    assert_eq!(res.len(), 5);
    for (m, j) in res.iter().zip(&js) {
        assert_eq!(m.estimate.sha256, j.sha256, "rejoined in job order");
        assert_eq!(m.report.reference.sha256, reference.sha256);
        assert_eq!(m.reference_sha256, reference.sha256);
        assert_eq!(m.scale_ms, 1.0);
    }
    // Parts are contiguous (3 + 2) and each went whole to one board.
    assert_eq!(res[0].board, res[1].board);
    assert_eq!(res[1].board, res[2].board);
    assert_eq!(res[3].board, res[4].board);
    assert_ne!(res[0].board, res[3].board, "both boards took a part");
    assert_eq!(res[0].report.models.len(), 3);
    assert_eq!(res[3].report.models.len(), 2);
    for m in &res {
        let want = if m.board == "a" { 1.0 } else { 10.0 };
        assert_eq!(m.estimate_ms, want, "the ratio of the part's own board");
        let i = m.interval_ms.unwrap();
        assert!((i.low - want * 0.995).abs() < 1e-12 && (i.high - want * 1.005).abs() < 1e-12);
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 5, "each model measured once: {log:?}");
}

/// More models than one bench-set may hold are split into several parts even on one board.
#[test]
fn a_set_larger_than_the_agent_holds_is_split_on_one_board() {
    let log = Log::default();
    let mut pool = Pool::new(vec![board("a", vec![], Step::Ok(2.0), &log)], fast()).unwrap();
    let js = jobs(MAX_SET_MODELS + 1);
    let reference = Job::new("ref", vec![255; 3]);
    let res = pool.measure_set(&js, &reference, &BenchSetSpec::default(), None);
    assert!(res.iter().all(Result::is_ok));
    let sizes: Vec<usize> = [0, MAX_SET_MODELS]
        .iter()
        .map(|&i| res[i].as_ref().unwrap().report.models.len())
        .collect();
    assert_eq!(sizes, [32, 32]);
    assert_eq!(res[5].as_ref().unwrap().estimate_ms, 2.0);
}

/// A part whose board fails is measured again on the other board.
#[test]
fn a_failed_part_is_measured_again_elsewhere() {
    let log = Log::default();
    let mut pool = Pool::new(
        vec![
            board("a", vec![], Step::Ok(1.0), &log),
            board("b", vec![], Step::Fail, &log),
        ],
        fast(),
    )
    .unwrap();
    let js = jobs(4);
    let res = pool.measure_set(
        &js,
        &Job::new("ref", vec![7]),
        &BenchSetSpec::default(),
        None,
    );
    assert!(
        res.iter().all(|r| r.as_ref().is_ok_and(|m| m.board == "a")),
        "{res:?}"
    );
    assert_eq!(log.lock().unwrap().len(), 4);
}
