//! SVG plots (plotters): the Pareto front of a search and predicted-vs-measured latency.
//!
//! Renderers are pure: they take data and return the SVG text, so tests check them without files.
//! A front is drawn as the staircase it is (both objectives minimised): the boundary of the
//! region its points dominate, that region lightly shaded, and each member's latency interval,
//! where it has one, as a horizontal error bar.

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
    /// The horizontal value's interval (low, high), drawn as an error bar.
    pub x_interval: Option<(f64, f64)>,
    /// The same point's value under another measure (the error of its NPU model, say), drawn
    /// as a hollow marker joined to it by a vertical line.
    pub y_alt: Option<f64>,
}

impl Point {
    /// A point without an interval.
    pub fn new(x: f64, y: f64, highlight: bool) -> Point {
        Point {
            x,
            y,
            highlight,
            x_interval: None,
            y_alt: None,
        }
    }
}

/// The staircase of the region `front` dominates when both coordinates are minimised: for the
/// points sorted by x, the running minimum of y steps down at each point that improves on it
/// (points it leaves out are dominated). Starts at the first point's x on `top` and ends on
/// `right`: `(x₀, top), (x₀, y₀), (x₁, y₀), (x₁, y₁), …, (right, y_last)`. Empty for no points.
pub fn dominated_staircase(front: &[(f64, f64)], top: f64, right: f64) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = front.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut steps: Vec<(f64, f64)> = Vec::new();
    let mut best = f64::INFINITY;
    for (x, y) in pts {
        if y >= best {
            continue;
        }
        match steps.last() {
            None => steps.push((x, top)),
            Some(_) => steps.push((x, best)),
        }
        steps.push((x, y));
        best = y;
    }
    if best.is_finite() {
        steps.push((right, best));
    }
    steps
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
    scatter_svg_alt(points, labels, identity_line, None)
}

/// [`scatter_svg`], with each point's [`Point::y_alt`] drawn and named `alt` in the legend.
///
/// # Errors
/// When plotters fails to draw (it does not on valid numbers).
pub fn scatter_svg_alt(
    points: &[Point],
    labels: &Labels,
    identity_line: bool,
    alt: Option<&str>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let xs = points.iter().flat_map(|p| {
            let (lo, hi) = p.x_interval.unwrap_or((p.x, p.x));
            [p.x, lo, hi]
        });
        let (mut x0, mut x1) = padded_range(xs);
        let (mut y0, mut y1) = padded_range(
            points
                .iter()
                .flat_map(|p| std::iter::once(p.y).chain(p.y_alt)),
        );
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
        let red = RGBColor(200, 30, 30);
        let front: Vec<&Point> = points.iter().filter(|p| p.highlight).collect();
        if !identity_line && !front.is_empty() {
            let xy: Vec<(f64, f64)> = front.iter().map(|p| (p.x, p.y)).collect();
            let steps = dominated_staircase(&xy, y1, x1);
            let mut region = steps.clone();
            region.push((x1, y1));
            chart
                .draw_series(std::iter::once(Polygon::new(region, red.mix(0.08))))
                .map_err(|e| anyhow!("plot: {e}"))?;
            chart
                .draw_series(LineSeries::new(steps, red.mix(0.6)))
                .map_err(|e| anyhow!("plot: {e}"))?;
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
        let bars: Vec<(f64, f64, f64)> = points
            .iter()
            .filter_map(|p| p.x_interval.map(|(lo, hi)| (p.y, lo, hi)))
            .collect();
        if !bars.is_empty() {
            // A line from the interval's low end to its high end, with a short tick at each end.
            let bar_style = BLACK.mix(0.7).stroke_width(1);
            let ends = bars.iter().flat_map(|&(y, lo, hi)| {
                [lo, hi].map(|x| {
                    EmptyElement::at((x, y)) + PathElement::new([(0, -4), (0, 4)], bar_style)
                })
            });
            chart.draw_series(ends).map_err(|e| anyhow!("plot: {e}"))?;
            chart
                .draw_series(
                    bars.iter()
                        .map(|&(y, lo, hi)| PathElement::new([(lo, y), (hi, y)], bar_style)),
                )
                .map_err(|e| anyhow!("plot: {e}"))?
                .label("latency interval")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], bar_style));
        }
        let alts: Vec<(f64, f64, f64)> = points
            .iter()
            .filter_map(|p| p.y_alt.map(|alt| (p.x, p.y, alt)))
            .collect();
        if let (Some(name), false) = (alt, alts.is_empty()) {
            let blue = RGBColor(30, 80, 200);
            chart
                .draw_series(
                    alts.iter()
                        .map(|&(x, y, alt)| PathElement::new([(x, y), (x, alt)], blue.mix(0.6))),
                )
                .map_err(|e| anyhow!("plot: {e}"))?;
            chart
                .draw_series(
                    alts.iter()
                        .map(|&(x, _, alt)| Circle::new((x, alt), 5, blue.stroke_width(2))),
                )
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, blue.stroke_width(2)));
        }
        chart
            .draw_series(
                front
                    .iter()
                    .map(|p| Circle::new((p.x, p.y), 5, red.filled())),
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
            Point::new(1.0, 30.0, true),
            Point::new(2.0, 20.0, true),
            Point::new(2.5, 25.0, false),
        ];
        let svg = scatter_svg(&pts, &labels(), false).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        // Three data points plus one circle per legend entry.
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("latency (ms)") && svg.contains("Pareto front"));
    }

    #[test]
    fn identity_plot_and_empty_input_work() {
        let pts = [Point::new(1.0, 1.1, false), Point::new(2.0, 1.9, false)];
        let svg = scatter_svg(&pts, &labels(), true).unwrap();
        assert!(svg.contains("y = x"));
        assert!(
            scatter_svg(&[], &labels(), false)
                .unwrap()
                .starts_with("<svg")
        );
    }

    /// Hand-drawn: sorted by x, the staircase steps down at each point that improves on the best
    /// error so far and passes over the dominated (2.5, 25) and the tie (3, 13).
    #[test]
    fn the_staircase_is_the_dominated_region_boundary() {
        let front = [
            (3.0, 12.0),
            (1.0, 30.0),
            (2.5, 25.0),
            (2.0, 20.0),
            (3.0, 13.0),
        ];
        assert_eq!(
            dominated_staircase(&front, 40.0, 4.0),
            vec![
                (1.0, 40.0),
                (1.0, 30.0),
                (2.0, 30.0),
                (2.0, 20.0),
                (3.0, 20.0),
                (3.0, 12.0),
                (4.0, 12.0)
            ]
        );
        assert_eq!(
            dominated_staircase(&[(1.0, 5.0)], 9.0, 2.0),
            vec![(1.0, 9.0), (1.0, 5.0), (2.0, 5.0)]
        );
        assert!(dominated_staircase(&[], 1.0, 1.0).is_empty());
        // Every segment is horizontal or vertical: no diagonal wedges.
        let s = dominated_staircase(&front, 40.0, 4.0);
        assert!(s.windows(2).all(|w| w[0].0 == w[1].0 || w[0].1 == w[1].1));
    }

    /// Points with an interval get a horizontal error bar (a line with two end ticks each, and a
    /// legend entry), and the axis reaches the intervals' ends.
    #[test]
    fn intervals_are_drawn_as_horizontal_error_bars() {
        let mut pts = vec![
            Point::new(1.0, 30.0, true),
            Point::new(2.0, 20.0, true),
            Point::new(2.5, 25.0, false),
        ];
        let plain = scatter_svg(&pts, &labels(), false).unwrap();
        pts[0].x_interval = Some((0.9, 1.1));
        pts[1].x_interval = Some((1.7, 3.5));
        let svg = scatter_svg(&pts, &labels(), false).unwrap();
        assert!(svg.contains("latency interval"), "legend entry");
        assert!(!plain.contains("latency interval"));
        // Each error bar is three strokes (the line and its end ticks), and one in the legend.
        let bar = "opacity=\"0.7\" stroke=\"#000000\"";
        assert_eq!(svg.matches(bar).count(), 2 * 3 + 1);
        assert_eq!(plain.matches(bar).count(), 0);
        // Tick labels are text lines of their own; the y axis's are 20 and up.
        let labels_in = |s: &str, lo: f64, hi: f64| {
            s.lines()
                .filter_map(|l| l.trim().parse::<f64>().ok())
                .any(|v| (lo..hi).contains(&v))
        };
        assert!(labels_in(&svg, 3.3, 4.0), "x axis reaches 3.5");
        assert!(
            !labels_in(&plain, 3.3, 4.0),
            "x axis of the plain plot ends near 2.5"
        );
    }
}
