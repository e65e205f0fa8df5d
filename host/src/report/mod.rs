//! Reports: Pareto fronts as JSON, CSV and SVG, tables.

pub mod pareto;
pub mod plot;
