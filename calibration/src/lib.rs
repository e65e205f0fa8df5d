//! Latency predictors fitted to board measurements, and the statistics that say how far to trust them.
#![deny(missing_docs)]
