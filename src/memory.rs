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
//! The two large transients of the process are a refresh cycle's build (its decoded answers
//! and the state and exposition built beside the published ones, some 50 MB at 10,000 GPUs)
//! and a list reply's build (its rows and compressed body, up to 10 MB). A reply build that
//! starts while a cycle builds would add its peak to the cycle's, so it waits for the cycle
//! ([`LargeBuild`]). The cycle never waits for a reply build: reply builds run at a lower
//! priority (`http::builder`), and a cycle queued behind one would inherit its slowness.

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
/// other C libraries. Walks the free lists of every arena, a few milliseconds at 10,000
/// GPUs, so it runs off the request threads and at most once per cycle or build.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it takes each
    // arena's lock and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Held while a refresh cycle builds.
static CYCLE_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The order of the process's large builds: a reply build waits for a cycle's build, never the
/// other way round. Call these from blocking threads only (a refresh cycle's `spawn_blocking`,
/// the reply-build thread), never from an async task.
pub enum LargeBuild {}

impl LargeBuild {
    /// Runs a refresh cycle's build; reply builds that start meanwhile wait for it.
    pub fn cycle<T>(build: impl FnOnce() -> T) -> T {
        // A build that panicked leaves nothing behind that the next one relies on.
        let _cycle = CYCLE_BUILD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        build()
    }

    /// Runs a reply build once no cycle is building.
    pub fn reply<T>(build: impl FnOnce() -> T) -> T {
        drop(
            CYCLE_BUILD
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    #[test]
    fn a_reply_build_waits_for_the_cycle_building_and_a_cycle_not_for_replies() {
        let finished = Arc::new(AtomicBool::new(false));
        let (started, cycle_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let cycle = std::thread::spawn({
            let finished = Arc::clone(&finished);
            move || {
                LargeBuild::cycle(|| {
                    started.send(()).unwrap();
                    released.recv().unwrap();
                    finished.store(true, Ordering::SeqCst);
                })
            }
        });
        cycle_started.recv().unwrap();
        let (entering, reply_entering) = mpsc::channel();
        let reply = std::thread::spawn({
            let finished = Arc::clone(&finished);
            move || {
                entering.send(()).unwrap();
                LargeBuild::reply(|| finished.load(Ordering::SeqCst))
            }
        });
        reply_entering.recv().unwrap();
        release.send(()).unwrap();
        cycle.join().unwrap();
        assert!(
            reply.join().unwrap(),
            "the reply built before the cycle ended"
        );

        // A reply build in progress does not hold a cycle back.
        let (inside, reply_inside) = mpsc::channel();
        let (done, reply_done) = mpsc::channel::<()>();
        let reply = std::thread::spawn(move || {
            LargeBuild::reply(|| {
                inside.send(()).unwrap();
                reply_done.recv().unwrap();
            })
        });
        reply_inside.recv().unwrap();
        assert_eq!(LargeBuild::cycle(|| 7), 7);
        done.send(()).unwrap();
        reply.join().unwrap();
    }
}
