//! SVG plots (plotters): the Pareto front of a search and predicted-vs-measured latency.
//!
//! Renderers are pure: they take data and return the SVG text, so tests check them without files.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One point of a scatter plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Horizontal value.
    pub x: f64,
    /// Vertical value.
    pub y: f64,
    /// Drawn highlighted (the Pareto front, say).
    pub highlight: bool,
}

/// Axis titles and the plot title.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Horizontal axis.
    pub x: &'a str,
    /// Vertical axis.
    pub y: &'a str,
    /// Legend entry of highlighted points.
    pub highlight: &'a str,
    /// Legend entry of the other points.
    pub rest: &'a str,
}

const SIZE: (u32, u32) = (800, 560);

fn padded_range(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad, hi + pad)
}

/// A scatter plot with highlighted points joined by a step line (a front), as SVG text.
///
/// With `identity_line` the y = x diagonal is drawn too (predicted vs measured).
///
/// # Errors
/// When plotters fails to draw (it does not on valid numbers).
pub fn scatter_svg(points: &[Point], labels: &Labels, identity_line: bool) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let (mut x0, mut x1) = padded_range(points.iter().map(|p| p.x));
        let (mut y0, mut y1) = padded_range(points.iter().map(|p| p.y));
        if identity_line {
            (x0, x1) = (x0.min(y0), x1.max(y1));
            (y0, y1) = (x0, x1);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption(labels.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .x_desc(labels.x)
            .y_desc(labels.y)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        if identity_line {
            chart
                .draw_series(LineSeries::new([(x0, x0), (x1, x1)], BLACK.mix(0.5)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label("y = x")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
        }
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| !p.highlight)
                    .map(|p| Circle::new((p.x, p.y), 3, grey.filled())),
            )
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(labels.rest)
            .legend(move |(x, y)| Circle::new((x + 8, y), 3, grey.filled()));
        let mut front: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.highlight)
            .map(|p| (p.x, p.y))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let red = RGBColor(200, 30, 30);
        if !identity_line && front.len() > 1 {
            let steps: Vec<(f64, f64)> = front
                .windows(2)
                .flat_map(|w| [w[0], (w[1].0, w[0].1)])
                .chain(front.last().copied())
                .collect();
            chart
                .draw_series(LineSeries::new(steps, red.mix(0.6)))
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        chart
            .draw_series(
                front
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, red.filled())),
            )
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(labels.highlight)
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, red.filled()));
        chart
            .configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels<'static> {
        Labels {
            title: "front",
            x: "latency (ms)",
            y: "error (%)",
            highlight: "Pareto front",
            rest: "evaluated",
        }
    }

    #[test]
    fn draws_every_point_and_the_labels() {
        let pts = [
            Point {
                x: 1.0,
                y: 30.0,
                highlight: true,
            },
            Point {
                x: 2.0,
                y: 20.0,
                highlight: true,
            },
            Point {
                x: 2.5,
                y: 25.0,
                highlight: false,
            },
        ];
        let svg = scatter_svg(&pts, &labels(), false).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        // Three data points plus one circle per legend entry.
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("latency (ms)") && svg.contains("Pareto front"));
    }

    #[test]
    fn identity_plot_and_empty_input_work() {
        let pts = [
            Point {
                x: 1.0,
                y: 1.1,
                highlight: false,
            },
            Point {
                x: 2.0,
                y: 1.9,
                highlight: false,
            },
        ];
        let svg = scatter_svg(&pts, &labels(), true).unwrap();
        assert!(svg.contains("y = x"));
        assert!(
            scatter_svg(&[], &labels(), false)
                .unwrap()
                .starts_with("<svg")
        );
    }
}
