//! The predictor file: round trip, board check, and parse errors that name the field.

mod common;

use common::{Gen, Truth, provenance};
use serde_json::{Value, json};
use shiftnas_calibration::fit::{self, FitOptions};
use shiftnas_calibration::predictor::Kind;
use shiftnas_calibration::{Error, Predictor, PredictorFile};

fn fitted(with_table: bool) -> (PredictorFile, Truth, Gen) {
    let mut g = Gen::new(21);
    let truth = Truth::new(&mut g);
    let samples = truth.samples(&mut g, 60, 0.02, |x| 0.8 * x + 1.0);
    let table = with_table.then(|| truth.measured_table(&mut g, 0.01));
    let (file, _) = fit::calibrate(&samples, table, &FitOptions::default(), provenance()).unwrap();
    (file, truth, g)
}

fn parse_edited(file: &PredictorFile, edit: impl FnOnce(&mut Value)) -> Error {
    let mut v: Value = serde_json::from_str(&file.to_json()).unwrap();
    edit(&mut v);
    PredictorFile::from_json(&v.to_string()).unwrap_err()
}

#[test]
fn round_trip_keeps_predictions_for_both_kinds() {
    for with_table in [true, false] {
        let (file, truth, mut g) = fitted(with_table);
        if !with_table {
            assert_eq!(file.predictor.kind(), Kind::Linear);
        }
        let back = PredictorFile::from_json(&file.to_json()).unwrap();
        assert_eq!(back.board_fingerprint, file.board_fingerprint);
        assert_eq!(
            (back.threads, &back.cores, &back.space),
            (4, &vec![4, 5, 6, 7], &file.space)
        );
        assert_eq!(back.holdout.chosen, file.holdout.chosen);
        for (f, _) in truth.samples(&mut g, 30, 0.0, |x| x) {
            let (a, b) = (file.predict(&f), back.predict_checked(&f).unwrap());
            // serde_json may round the last digit of a coefficient: 1e-12 relative.
            assert!((a - b).abs() <= 1e-12 * a.abs(), "{a} vs {b}");
        }
    }
}

#[test]
fn lut_file_round_trips_when_chosen() {
    let (file, ..) = fitted(true);
    let json = file.to_json();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format_version"], json!(1));
    assert!(
        v["created_by"]
            .as_str()
            .unwrap()
            .starts_with("shiftnas-calibration ")
    );
    assert_eq!(
        v["predictor"]["kind"],
        json!(file.predictor.kind().to_string())
    );
    assert!(v["holdout"]["lut"]["holdout"]["rmspe_pct"].is_number());
    assert!(v["holdout"]["linear"]["holdout"]["rmspe_pct"].is_number());
}

#[test]
fn check_board_names_both_fingerprints_unless_forced() {
    let (file, ..) = fitted(false);
    file.check_board("rk3588/aarch64/ubuntu-22.04/performance", false)
        .unwrap();
    let e = file
        .check_board("rpi5/aarch64/debian-12/ondemand", false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rk3588/aarch64/ubuntu-22.04/performance")
            && e.contains("rpi5/aarch64/debian-12/ondemand"),
        "{e}"
    );
    file.check_board("rpi5/aarch64/debian-12/ondemand", true)
        .unwrap();
}

#[test]
fn parse_errors_name_the_field() {
    let (lut, ..) = fitted(true);
    let (lin, ..) = fitted(false);
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&PredictorFile, Edit, &str)> = vec![
        (
            &lin,
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("board_fingerprint");
            }),
            "field `board_fingerprint`: is missing",
        ),
        (
            &lin,
            Box::new(|v| v["threads"] = json!("four")),
            "field `threads`: invalid type",
        ),
        (
            &lin,
            Box::new(|v| v["format_version"] = json!(2)),
            "field `format_version`: is 2",
        ),
        (
            &lin,
            Box::new(|v| v["colour"] = json!(1)),
            "field `colour`: is not a known field",
        ),
        (
            &lin,
            Box::new(|v| v["predictor"]["kind"] = json!("mlp")),
            "unknown kind `mlp`",
        ),
        (
            &lin,
            Box::new(|v| v["predictor"]["coef"][3] = json!("x")),
            "field `predictor.coef`: invalid type",
        ),
        (
            &lin,
            Box::new(|v| {
                v["predictor"]["coef"].as_array_mut().unwrap().pop();
            }),
            "entries but feature set",
        ),
        (
            &lin,
            Box::new(|v| v["predictor"]["features"] = json!("cubic")),
            "field `predictor.features`: unknown variant `cubic`",
        ),
        (
            &lut,
            Box::new(
                |v| v["predictor"] = json!({"kind": "lut", "table": {"stem_head_ms": 1.0, "blocks": [[1.0, -2.0]]}, "a": 1.0, "b": 0.0}),
            ),
            "field `predictor.table.blocks[0][1]`: latency -2 ms is negative",
        ),
        (
            &lut,
            Box::new(|v| {
                v["predictor"].as_object_mut().unwrap().remove("a");
            }),
            "field `predictor.a`: is missing",
        ),
        (
            &lut,
            Box::new(|v| v["predictor"] = json!([1])),
            "field `predictor`: expected a JSON object",
        ),
    ];
    for (file, edit, want) in cases {
        let e = parse_edited(file, edit).to_string();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
    let e = PredictorFile::from_json("{ not json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn predict_checked_rejects_another_space() {
    let (file, truth, _) = fitted(true);
    let mut f = truth.features(&[0; 20]);
    file.predict_checked(&f).unwrap();
    f.choices.truncate(12);
    f.block_flops.truncate(12);
    f.stage_of_block.truncate(12);
    let e = file.predict_checked(&f).unwrap_err().to_string();
    assert!(e.contains("12 blocks"), "{e}");
}
