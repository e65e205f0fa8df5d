//! A search's final reports in its run dir: the front as `pareto.json` and `pareto.csv`, the
//! hypervolume per generation as `hypervolume.csv`, and the Pareto plot `pareto.svg` (every
//! archive evaluation, the final front highlighted).
//!
//! Where the latencies come with confidence intervals, each front member says whether latency
//! tells it apart from its neighbours on the front ([`latency_distinct`]), and the plot draws the
//! intervals as horizontal error bars.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::plot::{Labels, Point, scatter_svg_alt};
use crate::archive::ArchiveRecord;
use crate::npu::QuantAccuracy;
use crate::run_dir::write_atomic;

/// A front member as `pareto.json` writes it: the archive record's fields, `latency_distinct`
/// where it is known ([`latency_distinct`]), and its simulated NPU accuracy with
/// `--npu-accuracy`.
#[derive(Debug, Clone, Serialize)]
pub struct FrontMember<'a> {
    /// The record.
    #[serde(flatten)]
    pub record: &'a ArchiveRecord,
    /// Whether its latency interval is clear of its neighbours' (left out when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_distinct: Option<bool>,
    /// fp32 and simulated NPU top-1 on the same proxy images (left out without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npu_accuracy: Option<&'a QuantAccuracy>,
}

/// The members of `front` with their [`latency_distinct`] marks and, where `npu` is not empty,
/// their NPU accuracy (`npu[i]` belongs to `front[i]`), in the front's order.
pub fn front_members<'a>(
    front: &'a [ArchiveRecord],
    npu: &'a [QuantAccuracy],
) -> Vec<FrontMember<'a>> {
    front
        .iter()
        .zip(latency_distinct(front))
        .enumerate()
        .map(|(i, (record, latency_distinct))| FrontMember {
            record,
            latency_distinct,
            npu_accuracy: npu.get(i),
        })
        .collect()
}

/// For each member of `front` (in its order), whether latency tells it apart from its
/// neighbours, the members just faster and just slower than it: `Some(false)` when its interval
/// overlaps a neighbour's, `Some(true)` when it overlaps neither (a lone member has no
/// neighbour), `None` when it has no interval, or a neighbour without one leaves it open.
pub fn latency_distinct(front: &[ArchiveRecord]) -> Vec<Option<bool>> {
    let mut order: Vec<usize> = (0..front.len()).collect();
    order.sort_by(|&a, &b| front[a].latency.total_cmp(&front[b].latency));
    let mut out = vec![None; front.len()];
    for (k, &i) in order.iter().enumerate() {
        let Some(own) = front[i].latency_interval else {
            continue;
        };
        let neighbours = [k.checked_sub(1), Some(k + 1).filter(|&n| n < order.len())];
        let (mut overlaps, mut unknown) = (false, false);
        for n in neighbours.into_iter().flatten() {
            match front[order[n]].latency_interval {
                Some(other) => overlaps |= own.overlaps(&other),
                None => unknown = true,
            }
        }
        out[i] = if overlaps {
            Some(false)
        } else if unknown {
            None
        } else {
            Some(true)
        };
    }
    out
}

/// One line on what latency tells apart on `front`, for summaries: which members it separates
/// beyond their intervals and which it does not, or why there are no intervals.
pub fn latency_summary(front: &[ArchiveRecord]) -> String {
    if front.iter().all(|r| r.latency_interval.is_none()) {
        let source = front.first().map_or("", |r| r.latency_source.as_str());
        return if source.starts_with("board:") {
            "no intervals: latency measured by the single-model protocol".to_string()
        } else if source.is_empty() {
            "no intervals: the front is empty".to_string()
        } else {
            format!("no intervals: latency from {source}, computed rather than measured")
        };
    }
    let marks = latency_distinct(front);
    let list = |want: Option<bool>| -> Vec<String> {
        let mut rows: Vec<&ArchiveRecord> = front
            .iter()
            .zip(&marks)
            .filter(|(_, m)| **m == want)
            .map(|(r, _)| r)
            .collect();
        rows.sort_by(|a, b| a.latency.total_cmp(&b.latency));
        rows.iter().map(|r| r.arch.to_string()).collect()
    };
    let (apart, together, open) = (list(Some(true)), list(Some(false)), list(None));
    let mut s = format!(
        "latency tells {} of {} front members apart beyond their intervals",
        apart.len(),
        front.len()
    );
    if !apart.is_empty() {
        s += &format!(" ({})", apart.join(", "));
    }
    if !together.is_empty() {
        s += &format!("; within a neighbour's interval: {}", together.join(", "));
    }
    if !open.is_empty() {
        s += &format!("; no interval to compare with: {}", open.join(", "));
    }
    s
}

/// Writes `pareto.json`, `pareto.csv`, `hypervolume.csv` and `pareto.svg` into `dir`: the final
/// `front` (with `npu[i]`, the NPU accuracy of `front[i]`, when `npu` is not empty), the
/// `hypervolume` after each generation, and the plot of `archive` with the front highlighted,
/// latency in `unit`.
///
/// # Errors
/// I/O or drawing failures, naming the file.
pub fn write_search_reports(
    dir: &Path,
    front: &[ArchiveRecord],
    npu: &[QuantAccuracy],
    hypervolume: &[f64],
    archive: &[ArchiveRecord],
    unit: &str,
) -> Result<()> {
    write_atomic(
        &dir.join("pareto.json"),
        &serde_json::to_vec_pretty(&front_members(front, npu))?,
    )?;
    write_atomic(&dir.join("pareto.csv"), pareto_csv(front, npu).as_bytes())?;
    write_atomic(
        &dir.join("hypervolume.csv"),
        hypervolume_csv(hypervolume).as_bytes(),
    )?;
    let svg = pareto_svg(archive, front, npu, unit)?;
    write_atomic(&dir.join("pareto.svg"), svg.as_bytes())
}

/// `pareto.csv`: one row per front member; the interval's ends and `latency_distinct` are empty
/// where unknown, and the NPU columns (`npu_dtype`, `fp32_accuracy`, `npu_accuracy`,
/// `npu_drop_points`, `npu_images`) where `npu` has no entry for the member.
pub fn pareto_csv(front: &[ArchiveRecord], npu: &[QuantAccuracy]) -> String {
    let mut csv = String::from(
        "arch,error,latency,latency_source,flops,params,supernet_step,latency_low,latency_high,\
         latency_distinct,npu_dtype,fp32_accuracy,npu_accuracy,npu_drop_points,npu_images\n",
    );
    for (i, (r, distinct)) in front.iter().zip(latency_distinct(front)).enumerate() {
        let (low, high) = r
            .latency_interval
            .map_or((String::new(), String::new()), |i| {
                (i.low.to_string(), i.high.to_string())
            });
        let distinct = distinct.map_or(String::new(), |d| d.to_string());
        let quant = npu.get(i).map_or(",,,,".to_string(), |q| {
            format!(
                "{},{},{},{},{}",
                q.dtype,
                q.fp32_accuracy,
                q.npu_accuracy,
                q.drop_points(),
                q.images
            )
        });
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{low},{high},{distinct},{quant}\n",
            r.arch, r.error, r.latency, r.latency_source, r.flops, r.params, r.supernet_step
        ));
    }
    csv
}

/// `hypervolume.csv`: the hypervolume after each generation (generations count from 1).
pub fn hypervolume_csv(hypervolume: &[f64]) -> String {
    let mut csv = String::from("generation,hypervolume\n");
    for (i, h) in hypervolume.iter().enumerate() {
        csv.push_str(&format!("{},{h}\n", i + 1));
    }
    csv
}

/// SVG of error (%) against latency for `archive`, with `front` highlighted as a staircase and
/// its latency intervals as error bars.
///
/// # Errors
/// Drawing failures.
pub fn pareto_svg(
    archive: &[ArchiveRecord],
    front: &[ArchiveRecord],
    npu: &[QuantAccuracy],
    unit: &str,
) -> Result<String> {
    let mut pts: Vec<Point> = archive
        .iter()
        .map(|r| Point::new(r.latency, r.error * 100.0, false))
        .collect();
    pts.extend(front.iter().enumerate().map(|(i, r)| Point {
        x_interval: r.latency_interval.map(|i| (i.low, i.high)),
        y_alt: npu.get(i).map(|q| r.error * 100.0 + q.drop_points()),
        ..Point::new(r.latency, r.error * 100.0, true)
    }));
    let x = format!("latency ({unit})");
    let alt = npu.first().map(|q| {
        format!(
            "with the {} drop (NPU simulator, {} proxy images)",
            q.dtype, q.images
        )
    });
    scatter_svg_alt(
        &pts,
        &Labels {
            title: "Search: error vs latency",
            x: &x,
            y: "top-1 error (%)",
            highlight: "final front (re-scored)",
            rest: "evaluated",
        },
        false,
        alt.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use shiftnas_models::Arch;

    use super::*;
    use crate::latency::Interval;

    fn member(gene: u8, latency: f64, interval: Option<(f64, f64)>) -> ArchiveRecord {
        ArchiveRecord {
            generation: 2,
            arch: Arch::uniform(3, gene),
            error: 0.25,
            latency,
            latency_source: "board:rk1".into(),
            latency_interval: interval.map(|(low, high)| Interval { low, high }),
            flops: 1000,
            params: 20,
            supernet_step: 7,
        }
    }

    #[test]
    fn csv_rows_hand_written() {
        let r = ArchiveRecord {
            latency_source: "flops".into(),
            latency: 1.5,
            ..member(1, 0.0, None)
        };
        let arch = r.arch.to_string();
        assert_eq!(
            pareto_csv(&[r], &[]),
            format!(
                "arch,error,latency,latency_source,flops,params,supernet_step,latency_low,latency_high,latency_distinct,npu_dtype,fp32_accuracy,npu_accuracy,npu_drop_points,npu_images\n{arch},0.25,1.5,flops,1000,20,7,,,,,,,,\n"
            )
        );
        assert_eq!(
            hypervolume_csv(&[0.5, 2.0]),
            "generation,hypervolume\n1,0.5\n2,2\n"
        );
        let r = member(2, 1.5, Some((1.25, 1.75)));
        assert_eq!(
            pareto_csv(std::slice::from_ref(&r), &[])
                .lines()
                .nth(1)
                .unwrap(),
            "222,0.25,1.5,board:rk1,1000,20,7,1.25,1.75,true,,,,,"
        );
        assert_eq!(
            pareto_csv(&[r], &[quant()]).lines().nth(1).unwrap(),
            "222,0.25,1.5,board:rk1,1000,20,7,1.25,1.75,true,int8,0.75,0.72,3.0000000000000027,500"
        );
    }

    fn quant() -> QuantAccuracy {
        QuantAccuracy {
            dtype: crate::npu::Dtype::Int8,
            images: 500,
            calibration_images: 100,
            fp32_accuracy: 0.75,
            npu_accuracy: 0.72,
            agreement: 0.9,
            toolkit_version: "2.5.0".into(),
        }
    }

    #[test]
    fn npu_accuracy_sits_beside_each_front_member() {
        let front = [member(0, 1.0, None), member(1, 2.0, None)];
        let npu = [
            quant(),
            QuantAccuracy {
                npu_accuracy: 0.75,
                ..quant()
            },
        ];
        let json = serde_json::to_value(front_members(&front, &npu)).unwrap();
        assert_eq!(json[0]["npu_accuracy"]["npu_accuracy"], 0.72, "{json}");
        assert_eq!(json[1]["npu_accuracy"]["fp32_accuracy"], 0.75, "{json}");
        let svg = pareto_svg(&[], &front, &npu, "ms").unwrap();
        assert!(svg.contains("with the int8 drop (NPU simulator, 500 proxy images)"));
        // Two front markers, two hollow NPU markers, a legend circle for each of the three series.
        assert_eq!(svg.matches("<circle").count(), 7, "{svg}");
        assert_eq!(svg.matches("stroke=\"#1E50C8\"").count(), 3 + 2, "{svg}");
        let plain = pareto_svg(&[], &front, &[], "ms").unwrap();
        assert!(!plain.contains("NPU simulator"));
    }

    /// In latency order 1.0 [0.9, 1.1], 1.5 [1.45, 1.55], 1.58 [1.52, 1.6], 3.0 [2.9, 3.1]: the
    /// middle two overlap each other; the ends are clear of their one neighbour. Given out of
    /// order, the marks follow the front's order.
    #[test]
    fn overlapping_neighbours_are_not_told_apart() {
        let front = [
            member(3, 3.0, Some((2.9, 3.1))),
            member(1, 1.5, Some((1.45, 1.55))),
            member(0, 1.0, Some((0.9, 1.1))),
            member(2, 1.58, Some((1.52, 1.6))),
        ];
        assert_eq!(
            latency_distinct(&front),
            vec![Some(true), Some(false), Some(true), Some(false)]
        );
        let s = latency_summary(&front);
        assert_eq!(
            s,
            "latency tells 2 of 4 front members apart beyond their intervals (000, 333); \
             within a neighbour's interval: 111, 222"
        );
        // A neighbour without an interval leaves a clear member open (000), not an overlapping
        // one (222).
        let mixed = [
            member(0, 1.0, Some((0.9, 1.1))),
            member(1, 2.0, None),
            member(2, 3.0, Some((2.0, 3.1))),
            member(3, 3.05, Some((3.0, 3.1))),
        ];
        assert_eq!(
            latency_distinct(&mixed),
            vec![None, None, Some(false), Some(false)]
        );
        assert_eq!(
            latency_distinct(&[member(0, 1.0, Some((0.9, 1.1)))]),
            vec![Some(true)]
        );
        assert!(latency_summary(&mixed).ends_with("; no interval to compare with: 000, 111"));
    }

    #[test]
    fn without_intervals_the_summary_says_why_and_json_is_unchanged() {
        let front = [member(0, 1.0, None), member(1, 2.0, None)];
        assert_eq!(latency_distinct(&front), vec![None, None]);
        assert_eq!(
            latency_summary(&front),
            "no intervals: latency measured by the single-model protocol"
        );
        let flops = [ArchiveRecord {
            latency_source: "flops".into(),
            ..member(0, 1.0, None)
        }];
        assert!(latency_summary(&flops).starts_with("no intervals: latency from flops"));
        assert_eq!(
            serde_json::to_string_pretty(&front_members(&front, &[])).unwrap(),
            serde_json::to_string_pretty(&front).unwrap(),
            "pareto.json without intervals is the records as before"
        );
        let with = [member(0, 1.0, Some((0.9, 1.1)))];
        let json = serde_json::to_value(front_members(&with, &[])).unwrap();
        assert_eq!(json[0]["latency_distinct"], true, "{json}");
        assert_eq!(json[0]["latency_interval"]["high"], 1.1, "{json}");
    }

    #[test]
    fn the_plot_draws_the_front_intervals() {
        let front = [
            member(0, 1.0, Some((0.9, 1.1))),
            member(1, 2.0, Some((1.8, 2.2))),
        ];
        let archive = [member(2, 1.5, None)];
        let svg = pareto_svg(&archive, &front, &[], "ms").unwrap();
        assert!(
            svg.contains("latency interval"),
            "error bars and their legend"
        );
        let plain = pareto_svg(&archive, &[member(0, 1.0, None)], &[], "ms").unwrap();
        assert!(!plain.contains("latency interval"));
    }
}
