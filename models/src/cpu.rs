//! Process-wide CPU settings under which candle trains fast on small machines.
//!
//! Call [`configure`] first thing in `main` (the `shiftnas` binary and the benchmark examples do).
//! Each setting was found with `perf` on a 2-core machine (docs/benchmarks.md, "Supernet
//! training step"); a variable the user has set is left alone.

/// mimalloc v3's `mi_option_purge_delay` (index in `mi_option_e`; `libmimalloc-sys` 0.1.49 names
/// no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the settings:
///
/// - `RAYON_NUM_THREADS` set to candle's own thread count: candle 0.11 otherwise parses
///   `/proc/cpuinfo` in every CPU matmul. rayon's global pool is still built with every logical
///   CPU (the variable would shrink it on SMT machines).
/// - `CANDLE_NUM_THREADS=1`: candle's elementwise ops (gradient sums, broadcasts) then run on the
///   calling thread instead of candle's barrier pool, whose spinning waits competed with rayon's
///   workers for the cores (a quarter of a training step spent spinning on 2 cores). The heavy ops
///   (depthwise and 1×1 convs, BN) are our custom ops and run on rayon.
/// - mimalloc never returns freed pages to the OS: a training step frees and re-allocates the same
///   large activations, and re-faulting them cost about half of a step's CPU time.
///
/// # Safety
/// Sets environment variables: call it before any other thread exists.
pub unsafe fn configure() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Fails only when a global pool exists already, and then that pool stays.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(logical)
            .build_global();
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    // SAFETY: sets a global option of the allocator; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
