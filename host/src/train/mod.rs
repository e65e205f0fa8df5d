//! Supernet training: uniform single-path sampling, SGD with momentum, BN calibration.
