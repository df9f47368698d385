//! How both caches publish: a change makes the actor build its state anew, off to the side,
//! and swap it in whole as a new `Arc`; a burst of watch events costs one build per
//! coalescing delay, not one per event. [`Publisher`] is that coalescing, written once.
//!
//! The delay is [`PUBLISH_DELAY`], or [`COST_FACTOR`] times what the last publication took
//! when that is longer (at most [`MAX_PUBLISH_DELAY`]): at 10,000 GPUs a pod publication
//! (sorting 26,000 pods, every device's usage) costs tens of ms; with pods changing 20 times
//! a second and a fixed 100 ms, the pod cache's thread was 30–33 % busy, mostly publishing,
//! and every list reply was rebuilt ten times a second. So publishing takes at most about a
//! tenth of the thread however fast events come, and a small cluster still sees a change
//! within 100 ms.

use std::time::{Duration, Instant};

use actix::prelude::*;

/// Shortest wait before a change is published.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);
/// Longest: a change is never older than this (plus one publication) when it is shown.
pub const MAX_PUBLISH_DELAY: Duration = Duration::from_secs(1);
/// The wait is at least this many times the last publication's duration.
pub const COST_FACTOR: u32 = 10;

/// The wait before the next publication, after one that took `cost`.
pub fn publish_delay(cost: Duration) -> Duration {
    cost.saturating_mul(COST_FACTOR)
        .clamp(PUBLISH_DELAY, MAX_PUBLISH_DELAY)
}

/// Whether a change waits to be published, and whether a publication is scheduled.
#[derive(Debug, Default)]
pub struct Pending {
    dirty: bool,
    scheduled: bool,
    /// What the last publication took.
    last_cost: Duration,
}

/// An actor that publishes its state as a new immutable value.
pub trait Publisher: Actor<Context = Context<Self>> {
    /// The actor's [`Pending`] bookkeeping.
    fn pending(&mut self) -> &mut Pending;

    /// Builds the new value and swaps it in.
    fn publish(&mut self);

    /// A change, published after the coalescing delay together with every change until then.
    fn publish_soon(&mut self, ctx: &mut Context<Self>) {
        let pending = self.pending();
        pending.dirty = true;
        if !std::mem::replace(&mut pending.scheduled, true) {
            let delay = publish_delay(pending.last_cost);
            ctx.run_later(delay, |act, _| {
                let pending = act.pending();
                pending.scheduled = false;
                if std::mem::take(&mut pending.dirty) {
                    act.publish_timed();
                }
            });
        }
    }

    /// Published at once (a relist finished, or the next reader must see this change); a
    /// scheduled publication then finds nothing left to do.
    fn publish_now(&mut self) {
        self.pending().dirty = false;
        self.publish_timed();
    }

    /// [`Publisher::publish`], its duration kept for the next delay.
    fn publish_timed(&mut self) {
        let started = Instant::now();
        self.publish();
        self.pending().last_cost = started.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_cost_of_publishing_within_bounds() {
        assert_eq!(publish_delay(Duration::ZERO), PUBLISH_DELAY);
        assert_eq!(publish_delay(Duration::from_millis(3)), PUBLISH_DELAY);
        assert_eq!(
            publish_delay(Duration::from_millis(25)),
            Duration::from_millis(250)
        );
        assert_eq!(publish_delay(Duration::from_secs(5)), MAX_PUBLISH_DELAY);
        assert_eq!(publish_delay(Duration::MAX), MAX_PUBLISH_DELAY);
    }
}
