//! A search's final reports in its run dir: the front as `pareto.json` and `pareto.csv`, the
//! hypervolume per generation as `hypervolume.csv`, and the Pareto plot `pareto.svg` (every
//! archive evaluation, the final front highlighted).

use std::path::Path;

use anyhow::Result;

use super::plot::{Labels, Point, scatter_svg};
use crate::archive::ArchiveRecord;
use crate::run_dir::write_atomic;

/// Writes `pareto.json`, `pareto.csv`, `hypervolume.csv` and `pareto.svg` into `dir`: the final
/// `front`, the `hypervolume` after each generation, and the plot of `archive` with the front
/// highlighted, latency in `unit`.
///
/// # Errors
/// I/O or drawing failures, naming the file.
pub fn write_search_reports(
    dir: &Path,
    front: &[ArchiveRecord],
    hypervolume: &[f64],
    archive: &[ArchiveRecord],
    unit: &str,
) -> Result<()> {
    write_atomic(&dir.join("pareto.json"), &serde_json::to_vec_pretty(front)?)?;
    write_atomic(&dir.join("pareto.csv"), pareto_csv(front).as_bytes())?;
    write_atomic(
        &dir.join("hypervolume.csv"),
        hypervolume_csv(hypervolume).as_bytes(),
    )?;
    let svg = pareto_svg(archive, front, unit)?;
    write_atomic(&dir.join("pareto.svg"), svg.as_bytes())
}

/// `pareto.csv`: one row per front member.
pub fn pareto_csv(front: &[ArchiveRecord]) -> String {
    let mut csv = String::from("arch,error,latency,latency_source,flops,params,supernet_step\n");
    for r in front {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
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

/// SVG of error (%) against latency for `archive`, with `front` highlighted.
///
/// # Errors
/// Drawing failures.
pub fn pareto_svg(
    archive: &[ArchiveRecord],
    front: &[ArchiveRecord],
    unit: &str,
) -> Result<String> {
    let mut pts: Vec<Point> = archive
        .iter()
        .map(|r| Point {
            x: r.latency,
            y: r.error * 100.0,
            highlight: false,
        })
        .collect();
    pts.extend(front.iter().map(|r| Point {
        x: r.latency,
        y: r.error * 100.0,
        highlight: true,
    }));
    let x = format!("latency ({unit})");
    scatter_svg(
        &pts,
        &Labels {
            title: "Search: error vs latency",
            x: &x,
            y: "top-1 error (%)",
            highlight: "final front (re-scored)",
            rest: "evaluated",
        },
        false,
    )
}

#[cfg(test)]
mod tests {
    use shiftnas_models::Arch;

    use super::*;

    #[test]
    fn csv_rows_hand_written() {
        let r = ArchiveRecord {
            generation: 2,
            arch: Arch::uniform(3, 1),
            error: 0.25,
            latency: 1.5,
            latency_source: "flops".into(),
            flops: 1000,
            params: 20,
            supernet_step: 7,
        };
        let arch = r.arch.to_string();
        assert_eq!(
            pareto_csv(&[r]),
            format!(
                "arch,error,latency,latency_source,flops,params,supernet_step\n{arch},0.25,1.5,flops,1000,20,7\n"
            )
        );
        assert_eq!(
            hypervolume_csv(&[0.5, 2.0]),
            "generation,hypervolume\n1,0.5\n2,2\n"
        );
    }
}
