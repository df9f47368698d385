//! Readiness of the process: which state sources (the Kubernetes watchers) have synced, which
//! have been failing for too long, and whether we are shutting down.
//!
//! `/readyz` reads this on every probe. The board is a fixed set of sources registered at
//! start, each a pair of atomics written only by the part that owns that source, so a probe
//! never waits for an actor and no lock is shared with the actors.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One state source `/readyz` waits for.
#[derive(Debug)]
struct Source {
    name: &'static str,
    synced: AtomicBool,
    /// Milliseconds since `ReadinessBoard::origin` when the current failure streak began,
    /// plus one (0 = not failing).
    failing_since: AtomicU64,
}

/// Shared by the sources (writers) and the `/readyz` handler (reader).
#[derive(Debug)]
pub struct ReadinessBoard {
    sources: Vec<Source>,
    origin: Instant,
    /// A source failing for longer than this is reported; shorter outages are ridden out on
    /// the last known state.
    unready_after: Duration,
    shutting_down: AtomicBool,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Names of the sources not yet synced or failing for too long, or `shutdown`.
    Waiting(Vec<&'static str>),
}

impl ReadinessBoard {
    pub fn new(names: &[&'static str], unready_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            sources: names
                .iter()
                .map(|name| Source {
                    name,
                    synced: AtomicBool::new(false),
                    failing_since: AtomicU64::new(0),
                })
                .collect(),
            origin: Instant::now(),
            unready_after,
            shutting_down: AtomicBool::new(false),
        })
    }

    fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The source completed its initial sync (or recovered); clears any failure streak.
    pub fn mark_synced(&self, name: &str) {
        if let Some(source) = self.source(name) {
            source.synced.store(true, Ordering::Release);
            source.failing_since.store(0, Ordering::Release);
        }
    }

    /// The source failed; starts a failure streak unless one is already running. Returns
    /// true when this call started the streak (the caller logs the state change once).
    pub fn mark_failing(&self, name: &str) -> bool {
        let Some(source) = self.source(name) else {
            return false;
        };
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        source
            .failing_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The source works again (without necessarily re-syncing yet). Returns true when a
    /// failure streak ended.
    pub fn mark_recovered(&self, name: &str) -> bool {
        self.source(name)
            .map(|s| s.failing_since.swap(0, Ordering::AcqRel) != 0)
            .unwrap_or(false)
    }

    /// From now on `/readyz` reports not ready, so the Service stops sending us traffic
    /// while in-flight requests finish.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn check(&self) -> Readiness {
        if self.is_shutting_down() {
            return Readiness::Waiting(vec!["shutdown"]);
        }
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let limit = self.unready_after.as_millis() as u64;
        let waiting: Vec<&'static str> = self
            .sources
            .iter()
            .filter(|s| {
                let since = s.failing_since.load(Ordering::Acquire);
                !s.synced.load(Ordering::Acquire) || (since != 0 && now - since >= limit)
            })
            .map(|s| s.name)
            .collect();
        if waiting.is_empty() {
            Readiness::Ready
        } else {
            Readiness::Waiting(waiting)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_every_source_then_turns_ready() {
        let board = ReadinessBoard::new(&["nodes", "pods"], Duration::from_secs(300));
        assert_eq!(board.check(), Readiness::Waiting(vec!["nodes", "pods"]));
        board.mark_synced("nodes");
        assert_eq!(board.check(), Readiness::Waiting(vec!["pods"]));
        board.mark_synced("pods");
        assert_eq!(board.check(), Readiness::Ready);
    }

    #[test]
    fn short_failures_keep_ready_long_ones_do_not() {
        let board = ReadinessBoard::new(&["nodes"], Duration::ZERO);
        board.mark_synced("nodes");
        assert!(board.mark_failing("nodes"));
        assert!(!board.mark_failing("nodes"), "a streak starts once");
        assert_eq!(board.check(), Readiness::Waiting(vec!["nodes"]));
        assert!(board.mark_recovered("nodes"));
        assert_eq!(board.check(), Readiness::Ready);

        let patient = ReadinessBoard::new(&["nodes"], Duration::from_secs(300));
        patient.mark_synced("nodes");
        patient.mark_failing("nodes");
        assert_eq!(patient.check(), Readiness::Ready);
    }

    #[test]
    fn shutdown_wins_over_everything() {
        let board = ReadinessBoard::new(&["nodes"], Duration::from_secs(300));
        board.mark_synced("nodes");
        board.begin_shutdown();
        assert_eq!(board.check(), Readiness::Waiting(vec!["shutdown"]));
    }
}
