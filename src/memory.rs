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
