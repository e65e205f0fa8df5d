//! Pool logic against scripted boards: exactly-once, retry elsewhere, quarantine, thermal gating.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
