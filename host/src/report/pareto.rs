//! The Pareto plot of a search: every archive evaluation, the final front highlighted.

use anyhow::Result;

use super::plot::{Labels, Point, scatter_svg};
use crate::archive::ArchiveRecord;

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
