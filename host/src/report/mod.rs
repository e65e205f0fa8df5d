//! Reports: Pareto fronts as JSON, CSV and SVG, tables.

pub mod plot;
