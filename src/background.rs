//! [`BuildThread`]: a thread that builds what requests are later served from (list replies,
//! a refresh cycle's exposition), at a lower CPU priority than the threads serving requests.
//!
//! At 10,000 GPUs a container-list build is about a second of CPU (31,600 items through
//! serde and gzip). On the blocking pool it competed as an equal with the workers sending
//! replies, and under pod churn, when builds follow each other, the lists' p99 rose to
//! 180–230 ms. Built here at `nice` +10, a build yields the cores to the request threads and
//! takes what they leave; its staleness bound (`server.http.reply_max_staleness`) still
//! applies. The refresher builds and compresses each cycle's exposition on one too: requests
//! never wait for a build, they are served the last one published. A thread of its own,
//! because a thread's priority cannot be raised back without privileges, and the blocking
//! pool's threads serve other work too.

use std::sync::mpsc;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// How much lower than the request threads' priority builds run (`nice` increment).
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Hands work to the build thread; started on first use.
pub struct BuildThread {
    /// The thread's name, as `top -H` and profilers show it.
    name: &'static str,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl BuildThread {
    pub const fn new(name: &'static str) -> Self {
        BuildThread {
            name,
            jobs: Mutex::new(None),
        }
    }

    /// Runs `work` on the build thread and waits for its result without blocking the caller's
    /// thread. `None` when the thread cannot be started or went away.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        let sent = {
            let mut jobs = self
                .jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sender = match jobs.as_ref() {
                Some(sender) => sender.clone(),
                None => {
                    let sender = start(self.name)?;
                    *jobs = Some(sender.clone());
                    sender
                }
            };
            sender.send(job).is_ok()
        };
        if !sent {
            return None;
        }
        result.await.ok()
    }
}

/// Starts the thread: it lowers its own priority once, then runs jobs in order.
fn start(name: &str) -> Option<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_own_priority();
            let mut trimmed = std::time::Instant::now();
            for job in queue {
                job();
                // A build's transient buffers are free now; hand their pages back, at most
                // once a second however often builds run.
                if trimmed.elapsed() >= std::time::Duration::from_secs(1) {
                    crate::memory::release_free_pages();
                    trimmed = std::time::Instant::now();
                }
            }
        })
        .map_err(|error| tracing::error!(%error, thread = name, "cannot start a build thread"))
        .ok()?;
    Some(jobs)
}

fn lower_own_priority() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        // SAFETY: setpriority on this thread's own id; an error leaves the priority as is.
        let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
        if set != 0 {
            tracing::debug!("a build thread keeps the default priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn work_runs_on_one_lower_priority_thread_in_order() {
        static BUILDS: BuildThread = BuildThread::new("test-builder");
        let first = BUILDS.run(|| std::thread::current().name().map(str::to_string));
        assert_eq!(first.await.flatten().as_deref(), Some("test-builder"));
        let order = futures::future::join_all((0..20).map(|i| BUILDS.run(move || i))).await;
        assert_eq!(order, (0..20).map(Some).collect::<Vec<_>>());
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let nice = BUILDS
                .run(|| {
                    // SAFETY: as in `lower_own_priority`.
                    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                    unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
                })
                .await;
            // At least NICE: a process already nicer than that stays so.
            assert!(nice.is_some_and(|n| n >= NICE), "{nice:?}");
        }
    }
}
