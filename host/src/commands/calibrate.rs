//! `shiftnas calibrate`: runs [`crate::latency::calibrate::calibrate`] and prints its summary.

use anyhow::Result;
use shiftnas_calibration::predictor::Kind;
use shiftnas_calibration::stats::Report;

use super::{Context, ExitStatus};
use crate::cli::calibrate::CalibrateArgs;
use crate::latency::calibrate::{CalibrateOptions, Summary, calibrate};

/// Runs `shiftnas calibrate`.
pub fn run(args: CalibrateArgs, ctx: &Context) -> Result<ExitStatus> {
    let opts = CalibrateOptions {
        board: args.board,
        space: args.space,
        subnets: args.subnets,
        holdout: args.holdout,
        seed: args.seed,
        out: args.out,
        cache: args.cache,
        boards: args.boards,
        agent: args.agent,
        remeasure: args.remeasure,
        no_block_table: args.no_block_table,
    };
    let summary = calibrate(&opts, &ctx.printer)?;
    print_summary(&summary, ctx)?;
    Ok(ExitStatus::Success)
}

fn print_summary(s: &Summary, ctx: &Context) -> Result<()> {
    if ctx.printer.json {
        return ctx.printer.json(s);
    }
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let pct = |v: f64| format!("{:.1}", 100.0 * v);
    let metrics = |h: &Report| -> Vec<String> {
        vec![
            f(h.kendall_tau_b),
            f(h.spearman_rho),
            format!("{:.3}", h.rmse),
            format!("{:.2}", h.rmspe_pct),
            pct(h.within_5pct),
            pct(h.within_10pct),
            pct(h.within_15pct),
        ]
    };
    let names = [
        "Kendall tau-b",
        "Spearman rho",
        "RMSE (ms)",
        "RMSPE (%)",
        "within 5 % (%)",
        "within 10 % (%)",
        "within 15 % (%)",
    ];
    let lin = metrics(&s.linear.holdout);
    let lut = s.lut.as_ref().map(|l| metrics(&l.holdout));
    let base = metrics(&s.constant_baseline);
    let (flops, params) = (metrics(&s.flops_only), metrics(&s.params_only));
    let mark = |k: Kind, name: &str| {
        if k == s.chosen {
            format!("{name} (kept)")
        } else {
            name.to_string()
        }
    };
    let (h_lut, h_lin) = (mark(Kind::Lut, "block table"), mark(Kind::Linear, "ridge"));
    let mut rows = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let l = lut.as_ref().map_or("-".to_string(), |v| v[i].clone());
            vec![
                n.to_string(),
                l,
                lin[i].clone(),
                base[i].clone(),
                flops[i].clone(),
                params[i].clone(),
            ]
        })
        .collect::<Vec<_>>();
    if let Some(l) = &s.lut {
        rows.push(vec![
            "correction".into(),
            format!("{:.3}*sum {:+.3} ms", l.a, l.b),
            format!(
                "{}, lambda {}",
                serde_json::to_value(s.linear.features)?
                    .as_str()
                    .unwrap_or_default(),
                s.linear.lambda
            ),
            "median of train".into(),
            "a*FLOPs + b".into(),
            "a*params + b".into(),
        ]);
    }
    ctx.printer.table(
        &[
            "held-out",
            h_lut.as_str(),
            h_lin.as_str(),
            "constant",
            "FLOPs only",
            "params only",
        ],
        &rows,
    )?;
    let mut info = vec![
        vec!["predictor".into(), s.predictor.clone()],
        vec!["board".into(), s.board_fingerprint.clone()],
        vec![
            "subnets".into(),
            format!("{} train, {} held out", s.n_train, s.n_holdout),
        ],
        vec!["tau-b of FLOPs".into(), f(s.flops_tau_b)],
        vec!["tau-b of params".into(), f(s.params_tau_b)],
    ];
    if let Some(t) = &s.block_table {
        info.push(vec![
            "block table".into(),
            format!(
                "{} models, stem+head {:.3} ms, sums {:.3}-{:.3} ms",
                t.models, t.stem_head_ms, t.sum_range_ms.0, t.sum_range_ms.1
            ),
        ]);
    }
    let sec = &s.seconds;
    info.push(vec![
        "time (s)".into(),
        format!(
            "weights {:.1}, export {:.1}, measure {:.1}, fit {:.1}",
            sec.weights, sec.export, sec.measure, sec.fit
        ),
    ]);
    ctx.printer.table(&["", ""], &info)
}
