//! Admission: who may send a request to the upstream now, who waits, and who is refused.
//!
//! `prometheus.max_concurrency` (N) bounds the requests in flight in total. Within it each
//! [`Lane`] has a cap of N − R, where R = max(1, N/4) is kept back for the *other* lane
//! (N = 8: each lane up to 6, total 8). A flood of pass-through chart queries therefore
//! always leaves R slots for the refresher's cycle, and a long cycle always leaves R for the
//! frontend, while either lane can use most of the capacity when the other is idle. With
//! N = 1 there is nothing to split: both lanes share the single slot.
//!
//! Callers that cannot start at once wait in FIFO order (tokio's fair semaphores); at most
//! `prometheus.max_queue` wait at a time, and the next one is refused with
//! [`QueryError::Overloaded`] immediately rather than growing an unbounded backlog.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Lane, QueryError};

/// The per-lane and total caps derived from `max_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneCapacity {
    pub interactive: usize,
    pub refresh: usize,
    pub total: usize,
}

/// The split documented at the top of this module.
pub fn lane_capacity(max_concurrency: usize) -> LaneCapacity {
    let total = max_concurrency.max(1);
    let reserve = if total >= 2 { (total / 4).max(1) } else { 0 };
    LaneCapacity {
        interactive: total - reserve,
        refresh: total - reserve,
        total,
    }
}

/// The gates. Lives in the actor; only touched from the actor's thread, hence `Rc<Cell>`
/// for the queue length.
pub(super) struct Admission {
    interactive: Arc<Semaphore>,
    refresh: Arc<Semaphore>,
    total: Arc<Semaphore>,
    waiting: Rc<Cell<usize>>,
    max_queue: usize,
}

/// The right to send one request; dropping it frees the slot.
pub(super) struct Permit {
    _lane: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// A caller admitted to the queue (or straight through). Counts as waiting until it holds
/// a [`Permit`] or is dropped (deadline passed while waiting).
pub(super) struct Ticket {
    lane: Arc<Semaphore>,
    total: Arc<Semaphore>,
    ready: Option<Permit>,
    waiting: Option<Rc<Cell<usize>>>,
}

impl Admission {
    pub(super) fn new(max_concurrency: usize, max_queue: usize) -> Self {
        let capacity = lane_capacity(max_concurrency);
        Self {
            interactive: Arc::new(Semaphore::new(capacity.interactive)),
            refresh: Arc::new(Semaphore::new(capacity.refresh)),
            total: Arc::new(Semaphore::new(capacity.total)),
            waiting: Rc::new(Cell::new(0)),
            max_queue,
        }
    }

    /// Takes free slots at once when there are some (tokio's `try_acquire` never jumps
    /// ahead of queued waiters); otherwise queues the caller, or refuses it (`None`) when
    /// `max_queue` callers already wait.
    pub(super) fn enter(&self, lane: Lane) -> Option<Ticket> {
        let lane = match lane {
            Lane::Interactive => Arc::clone(&self.interactive),
            Lane::Refresh => Arc::clone(&self.refresh),
        };
        let total = Arc::clone(&self.total);
        let immediate = Arc::clone(&lane).try_acquire_owned().ok().and_then(|l| {
            Arc::clone(&total).try_acquire_owned().ok().map(|t| Permit {
                _lane: l,
                _total: t,
            })
        });
        if let Some(permit) = immediate {
            return Some(Ticket {
                lane,
                total,
                ready: Some(permit),
                waiting: None,
            });
        }
        if self.waiting.get() >= self.max_queue {
            return None;
        }
        self.waiting.set(self.waiting.get() + 1);
        Some(Ticket {
            lane,
            total,
            ready: None,
            waiting: Some(Rc::clone(&self.waiting)),
        })
    }

    /// Callers currently waiting for a slot.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.get()
    }
}

impl Ticket {
    /// Waits for a slot: the lane's first, then the total's (always in that order, so two
    /// waiters can never hold what the other needs).
    pub(super) async fn admit(mut self) -> Result<Permit, QueryError> {
        if let Some(permit) = self.ready.take() {
            return Ok(permit);
        }
        // The semaphores are never closed; `Overloaded` is only a type-correct fallback.
        let lane = Arc::clone(&self.lane)
            .acquire_owned()
            .await
            .map_err(|_| QueryError::Overloaded)?;
        let total = Arc::clone(&self.total)
            .acquire_owned()
            .await
            .map_err(|_| QueryError::Overloaded)?;
        self.leave_queue();
        Ok(Permit {
            _lane: lane,
            _total: total,
        })
    }

    fn leave_queue(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            waiting.set(waiting.get().saturating_sub(1));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.leave_queue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_split_capacity_keeping_a_reserve_for_each_other() {
        let table = [
            (1, (1, 1)),
            (2, (1, 1)),
            (3, (2, 2)),
            (4, (3, 3)),
            (8, (6, 6)),
            (16, (12, 12)),
        ];
        for (n, (interactive, refresh)) in table {
            let c = lane_capacity(n);
            assert_eq!(
                (c.interactive, c.refresh, c.total),
                (interactive, refresh, n)
            );
            if n >= 2 {
                // Whatever one lane holds, the other can still start a request.
                assert!(c.interactive < c.total && c.refresh < c.total);
            }
        }
    }

    #[actix_rt::test]
    async fn refuses_beyond_the_queue_and_frees_on_drop() {
        let admission = Admission::new(1, 2);
        let first = admission.enter(Lane::Interactive).unwrap();
        let held = first.admit().await.unwrap();
        let a = admission.enter(Lane::Interactive).unwrap();
        let _b = admission.enter(Lane::Refresh).unwrap();
        assert_eq!(admission.waiting(), 2);
        assert!(admission.enter(Lane::Interactive).is_none());
        drop(a);
        assert_eq!(admission.waiting(), 1);
        let c = admission.enter(Lane::Interactive).unwrap();
        drop(held);
        // The freed slot goes to the oldest waiter; `c` still waits.
        assert_eq!(admission.waiting(), 2);
        drop(c);
    }

    #[actix_rt::test]
    async fn interactive_flood_leaves_the_refresh_reserve() {
        let admission = Admission::new(4, 100);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                admission
                    .enter(Lane::Interactive)
                    .unwrap()
                    .admit()
                    .await
                    .unwrap(),
            );
        }
        let blocked = admission.enter(Lane::Interactive).unwrap();
        assert!(
            blocked.ready.is_none(),
            "interactive lane is full at 3 of 4"
        );
        let refresh = admission.enter(Lane::Refresh).unwrap();
        assert!(
            refresh.ready.is_some(),
            "refresh gets the reserved slot at once"
        );
    }
}
