//! Process-wide CPU settings under which candle trains fast on small machines.
//!
//! Call [`configure`] first thing in `main` (the `shiftnas` binary and the benchmark examples do).
//! Each setting was found with `perf` on a 2-core machine (docs/supernet.md, "Speed
//! (CPU)"); a variable the user has set is left alone.

/// mimalloc v3's `mi_option_purge_delay` (index in `mi_option_e`; `libmimalloc-sys` 0.1.49 names
/// no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Stack size of rayon's threads: the 8 MiB of a Linux main thread, since [`on_pool`] moves the
/// main work onto one of them (std's default for other threads is 2 MiB).
const MAIN_STACK: usize = 8 << 20;

/// Applies the settings:
///
/// - `RAYON_NUM_THREADS` set to candle's own thread count: candle 0.11 otherwise parses
///   `/proc/cpuinfo` in every CPU matmul. rayon's global pool is still built with every logical
///   CPU (the variable would shrink it on SMT machines), and with the main thread's stack size,
///   because [`on_pool`] runs the main work on one of its threads.
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
    // 0: rayon's default, the variable the user set.
    let mut pool_threads = 0;
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        pool_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    // Fails only when a global pool exists already, and then that pool stays.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(pool_threads)
        .stack_size(MAIN_STACK)
        .build_global();
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    // SAFETY: sets a global option of the allocator; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Runs `work` on a thread of rayon's global pool and returns its result.
///
/// Every custom op and gemm splits its work with rayon. Called from the main thread, each of
/// them hands its jobs to the pool and sleeps until they are done: a wake-up of the pool and of
/// the main thread per op, hundreds of times per training step. From a pool thread the op's jobs
/// go on that thread's own queue and the caller works on them itself (measured on 2 cores: a
/// training step 17 % faster, inference 6 %; docs/supernet.md, "Speed (CPU)").
/// `work` must not block waiting for other rayon jobs.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // From outside the pool, `scope` runs its body on a pool thread and blocks until it returns.
    rayon::scope(|_| work())
}
