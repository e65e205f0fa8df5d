//! Latency sources for the search: `flops`, `predictor:FILE`, `board:NAME[,NAME…]`.
