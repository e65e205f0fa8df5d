//! Search: NSGA-II, SPOS evolution and random search, with Supernet Shifting.
