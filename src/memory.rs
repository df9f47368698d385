//! The process's malloc settings, applied once at start before any thread exists.
//!
//! At 10,000 GPUs a refresh cycle and a container-list build each allocate tens of MB of
//! short-lived buffers (upstream answers of 5–8 MB, a 15 MB reply) from several threads.
//! With glibc's defaults those land in up to eight arenas per core, and every freed large
//! block raises the dynamic mmap threshold, so later large buffers come from the arenas and
//! their pages stay resident after being freed: the load driver's peak RSS was ~60 MB above
//! the heap actually in use. Two arenas and a fixed 1 MiB mmap threshold (large buffers are
//! mapped and unmapped, never cached in an arena) keep resident memory close to live memory.
//!
//! The `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` environment variables still win: glibc
//! reads them at start, and a setting named in the environment is left alone here.
//!
//! Below the mmap threshold, a cycle's hundreds of thousands of small label and sample
//! allocations leave free holes inside the arenas that glibc returns only from the top of a
//! heap. [`release_free_pages`] hands every whole free page back; the refresher calls it
//! before each cycle's build and the reply-build thread after a build, so the next peak
//! starts from live memory rather than from the last peak's holes.
//!
//! mimalloc (0.1.52) as the global allocator was tried instead: peak RSS 289–344 MB against
//! 200–235 MB with glibc tuned so, on the same 10,000-GPU run.

/// Arenas at most: the server's work runs on two to four busy threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: i32 = 2;
/// Allocations from this size up are mapped on their own and returned to the system on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Applies the settings above; a no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        if unset("MALLOC_ARENA_MAX") {
            // SAFETY: mallopt only changes allocator parameters; called from `main` before
            // any other thread is started, so no allocation races the change.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
    }
}

/// Returns the arenas' free whole pages to the system (glibc's `malloc_trim`); a no-op on
/// other C libraries. It walks the free lists of every arena holding each arena's lock:
/// 0.2–3 ms after a list build, 20–45 ms before a 10,000-GPU cycle, during which threads
/// allocating in that arena wait. So it runs off the request threads, at most once per
/// cycle and once a second after builds; at 10,000 GPUs it lowered the peak RSS of a manual
/// load (4 scrapers, 4 list clients) by about 15 MB.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim only releases memory the allocator holds free; it takes each
        // arena's lock and is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::debug!(elapsed = ?started.elapsed(), "free pages released");
    }
}
