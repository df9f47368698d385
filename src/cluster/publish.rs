//! How both caches publish: a change makes the actor build its state anew, off to the side,
//! and swap it in whole as a new `Arc`; a burst of watch events costs one build per
//! [`PUBLISH_DELAY`], not one per event. [`Publisher`] is that coalescing, written once.

use std::time::Duration;

use actix::prelude::*;

/// Longest a change waits before it is published.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);

/// Whether a change waits to be published, and whether a publication is scheduled.
#[derive(Debug, Default)]
pub struct Pending {
    dirty: bool,
    scheduled: bool,
}

/// An actor that publishes its state as a new immutable value.
pub trait Publisher: Actor<Context = Context<Self>> {
    /// The actor's [`Pending`] bookkeeping.
    fn pending(&mut self) -> &mut Pending;

    /// Builds the new value and swaps it in.
    fn publish(&mut self);

    /// A change, published within [`PUBLISH_DELAY`] together with every change until then.
    fn publish_soon(&mut self, ctx: &mut Context<Self>) {
        let pending = self.pending();
        pending.dirty = true;
        if !std::mem::replace(&mut pending.scheduled, true) {
            ctx.run_later(PUBLISH_DELAY, |act, _| {
                let pending = act.pending();
                pending.scheduled = false;
                if std::mem::take(&mut pending.dirty) {
                    act.publish();
                }
            });
        }
    }

    /// Published at once (a relist finished, or the next reader must see this change); a
    /// scheduled publication then finds nothing left to do.
    fn publish_now(&mut self) {
        self.pending().dirty = false;
        self.publish();
    }
}
