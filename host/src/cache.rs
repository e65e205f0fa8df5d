//! The SQLite latency cache, keyed by model SHA-256 × board fingerprint × threads × cores × input shape.
