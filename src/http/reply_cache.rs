//! [`ReplyCache`]: serialized list replies kept per (route, request, snapshot generation), so
//! that identical requests arriving together or in quick succession cost one build.
//!
//! At 10,000 GPUs one unfiltered container list is 40,000 items, about 150 ms of a core to
//! build and serialize; the frontend's pages poll the same lists from every open browser. Each
//! entry is built once by whichever request comes first while the others wait for its bytes
//! (single flight), and is then served by reference until the snapshot changes or, for replies
//! that also carry metrics-store values, until `server.http.reply_cache_ttl` has passed.
//!
//! The cache belongs to the HTTP layer and holds only finished bytes: no actor shares it, and
//! its lock is held for map bookkeeping, never across a build.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// Entries kept at most, whatever their size: the frontend asks a handful of distinct lists.
const MAX_ENTRIES: usize = 256;
/// Bytes of finished replies kept at most (a 10,000-GPU container list is about 20 MB).
const MAX_BYTES: usize = 96 << 20;
/// Replies shorter than this are sent as they are: compressing them saves less than it costs.
const MIN_GZIP_BYTES: usize = 1024;

/// Which routes' replies may be reused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Built from the snapshot alone: valid for as long as the snapshot generation lasts.
    Snapshot,
    /// Also carries metrics-store values: valid for the snapshot generation and at most the
    /// configured time to live.
    WithUpstream,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReplyKey {
    route: &'static str,
    request: String,
}

/// One reply being built or built. The cell is filled once; waiters share it.
struct Slot {
    generation: u64,
    created: Instant,
    freshness: Freshness,
    body: OnceCell<Bytes>,
    /// The body gzipped, made once for the first client that accepts it; empty when
    /// compressing failed or saved nothing.
    gzip: OnceCell<Bytes>,
}

/// A kept reply's bytes as sent: gzipped when the client accepts it and the body is worth it.
#[derive(Debug, Clone)]
pub struct ReplyBody {
    pub bytes: Bytes,
    pub gzip: bool,
}

impl Slot {
    fn serves(&self, generation: u64, ttl: Duration, now: Instant) -> bool {
        self.generation == generation
            && match self.freshness {
                Freshness::Snapshot => true,
                Freshness::WithUpstream => now.saturating_duration_since(self.created) < ttl,
            }
    }

    fn size(&self) -> usize {
        self.body.get().map_or(0, Bytes::len) + self.gzip.get().map_or(0, Bytes::len)
    }
}

/// Finished list replies, shared by every worker of both listeners.
pub struct ReplyCache {
    ttl: Duration,
    max_bytes: usize,
    slots: Mutex<HashMap<ReplyKey, Arc<Slot>>>,
}

impl ReplyCache {
    /// `ttl` bounds the age of replies with metrics-store values; zero disables reuse of those.
    pub fn new(ttl: Duration) -> Self {
        Self::with_limit(ttl, MAX_BYTES)
    }

    fn with_limit(ttl: Duration, max_bytes: usize) -> Self {
        ReplyCache {
            ttl,
            max_bytes,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The reply of `route` for `request` (any text that is equal exactly when the decoded
    /// requests are) at snapshot `generation`: a kept one, the one another caller is building
    /// right now, or a new one from `build`. A failed build is not kept; the next caller
    /// builds again.
    pub async fn get_or_build<F, Fut>(
        &self,
        route: &'static str,
        request: String,
        generation: u64,
        freshness: Freshness,
        build: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        self.get_or_build_encoded(route, request, generation, freshness, false, build)
            .await
            .map(|reply| reply.bytes)
    }

    /// [`get_or_build`](Self::get_or_build), gzipped when `gzip` (the client accepts it).
    ///
    /// At 10,000 GPUs the unfiltered container list is 15 MB of JSON; 32 browsers polling it
    /// moved 490 MB per round over the network and took over a second each at the 99th
    /// percentile on loopback. Compressed once per kept reply (fast level, on the blocking
    /// pool), it is sent as a few hundred KB to every client that asks with gzip, as browsers
    /// do.
    pub async fn get_or_build_encoded<F, Fut>(
        &self,
        route: &'static str,
        request: String,
        generation: u64,
        freshness: Freshness,
        gzip: bool,
        build: F,
    ) -> Result<ReplyBody, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        if freshness == Freshness::WithUpstream && self.ttl.is_zero() {
            // Nothing is kept, so nothing would be compressed once: sent as built.
            let bytes = build().await?;
            return Ok(ReplyBody { bytes, gzip: false });
        }
        let key = ReplyKey { route, request };
        let slot = {
            let now = Instant::now();
            let mut slots = self.lock();
            match slots.get(&key) {
                Some(slot) if slot.serves(generation, self.ttl, now) => Arc::clone(slot),
                _ => {
                    let slot = Arc::new(Slot {
                        generation,
                        created: now,
                        freshness,
                        body: OnceCell::new(),
                        gzip: OnceCell::new(),
                    });
                    slots.insert(key, Arc::clone(&slot));
                    self.evict(&mut slots, generation, now);
                    slot
                }
            }
        };
        let plain = slot.body.get_or_try_init(build).await.cloned()?;
        if !gzip || plain.len() < MIN_GZIP_BYTES {
            return Ok(ReplyBody {
                bytes: plain,
                gzip: false,
            });
        }
        let mut compressed_here = false;
        let packed = slot
            .gzip
            .get_or_init(|| {
                compressed_here = true;
                let plain = plain.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        let packed = crate::metrics::exposition::gzip(&plain);
                        // Not smaller: not worth keeping or sending.
                        if packed.len() < plain.len() {
                            packed
                        } else {
                            Bytes::new()
                        }
                    })
                    .await
                    .unwrap_or_default()
                }
            })
            .await
            .clone();
        if compressed_here {
            // The kept bytes grew after the slot was counted: check the bounds again.
            let mut slots = self.lock();
            self.evict(&mut slots, generation, Instant::now());
        }
        Ok(if packed.is_empty() {
            ReplyBody {
                bytes: plain,
                gzip: false,
            }
        } else {
            ReplyBody {
                bytes: packed,
                gzip: true,
            }
        })
    }

    /// Drops what can no longer be served, then the oldest entries while over the bounds.
    /// Entries still being built count as empty; their number is bounded.
    fn evict(&self, slots: &mut HashMap<ReplyKey, Arc<Slot>>, generation: u64, now: Instant) {
        // Callers already building an evicted slot keep it alive until they finish.
        slots.retain(|_, slot| slot.serves(generation, self.ttl, now));
        let mut total: usize = slots.values().map(|s| s.size()).sum();
        while slots.len() > MAX_ENTRIES || total > self.max_bytes {
            let Some(oldest) = slots
                .iter()
                .min_by_key(|(_, slot)| slot.created)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(slot) = slots.remove(&oldest) {
                total = total.saturating_sub(slot.size());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ReplyKey, Arc<Slot>>> {
        // Only map bookkeeping happens under the lock; a panic there leaves a usable map.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn body(text: &str) -> Result<Bytes, ApiError> {
        Ok(Bytes::from(text.to_string()))
    }

    #[actix_rt::test]
    async fn concurrent_identical_requests_build_once() {
        let cache = ReplyCache::new(Duration::from_secs(60));
        let builds = AtomicUsize::new(0);
        let build = || async {
            builds.fetch_add(1, Ordering::SeqCst);
            actix_rt::task::yield_now().await;
            body("reply")
        };
        let requests = (0..32)
            .map(|_| cache.get_or_build("/v1/x", "{}".into(), 7, Freshness::Snapshot, build));
        let replies = futures::future::join_all(requests).await;
        assert!(replies
            .iter()
            .all(|r| r.as_deref().ok() == Some(&b"reply"[..])));
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn a_new_generation_or_another_request_builds_again() {
        let cache = ReplyCache::new(Duration::from_secs(60));
        let builds = AtomicUsize::new(0);
        let build = |text: &'static str| {
            let builds = &builds;
            move || async move {
                builds.fetch_add(1, Ordering::SeqCst);
                body(text)
            }
        };
        let a = cache.get_or_build("/v1/x", "{}".into(), 1, Freshness::Snapshot, build("a"));
        assert_eq!(a.await.unwrap(), "a");
        let again = cache.get_or_build("/v1/x", "{}".into(), 1, Freshness::Snapshot, build("z"));
        assert_eq!(again.await.unwrap(), "a");
        let other = cache.get_or_build("/v1/x", "{n}".into(), 1, Freshness::Snapshot, build("b"));
        assert_eq!(other.await.unwrap(), "b");
        let newer = cache.get_or_build("/v1/x", "{}".into(), 2, Freshness::Snapshot, build("c"));
        assert_eq!(newer.await.unwrap(), "c");
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        // The generation-1 reply of the other request cannot be served any more.
        assert_eq!(cache.len(), 1);
    }

    #[actix_rt::test]
    async fn upstream_replies_expire_and_zero_ttl_never_reuses() {
        let cache = ReplyCache::new(Duration::from_millis(30));
        let first =
            cache.get_or_build("/v1/g", "{}".into(), 1, Freshness::WithUpstream, || async {
                body("old")
            });
        assert_eq!(first.await.unwrap(), "old");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = cache
                .get_or_build("/v1/g", "{}".into(), 1, Freshness::WithUpstream, || async {
                    body("new")
                })
                .await
                .unwrap();
            if reply == "new" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the upstream reply never expired"
            );
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }

        let uncached = ReplyCache::new(Duration::ZERO);
        for text in ["one", "two"] {
            let reply = uncached
                .get_or_build("/v1/g", "{}".into(), 1, Freshness::WithUpstream, || async {
                    body(text)
                })
                .await
                .unwrap();
            assert_eq!(reply, text);
        }
    }

    #[actix_rt::test]
    async fn gzip_is_made_once_per_reply_and_only_for_bodies_worth_it() {
        use std::io::Read;
        let cache = ReplyCache::new(Duration::from_secs(60));
        let large = "{\"items\":[1,2,3]}".repeat(200);
        let builds = AtomicUsize::new(0);
        let build = || async {
            builds.fetch_add(1, Ordering::SeqCst);
            body(&large)
        };
        let mut packed = Vec::new();
        for _ in 0..3 {
            let reply = cache
                .get_or_build_encoded("/v1/x", "{}".into(), 1, Freshness::Snapshot, true, build)
                .await
                .unwrap();
            assert!(reply.gzip && reply.bytes.len() < large.len() / 10);
            packed.push(reply.bytes);
        }
        // The same kept bytes each time, not a new compression.
        assert!(packed.windows(2).all(|w| w[0].as_ptr() == w[1].as_ptr()));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&packed[0][..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, large);
        let plain = cache
            .get_or_build_encoded("/v1/x", "{}".into(), 1, Freshness::Snapshot, false, build)
            .await
            .unwrap();
        assert!(!plain.gzip && plain.bytes == large);
        assert_eq!(builds.load(Ordering::SeqCst), 1);

        let small = cache
            .get_or_build_encoded(
                "/v1/x",
                "{n}".into(),
                1,
                Freshness::Snapshot,
                true,
                || async { body("{}") },
            )
            .await
            .unwrap();
        assert!(!small.gzip && small.bytes == "{}");
    }

    #[actix_rt::test]
    async fn a_compressed_copy_counts_against_the_byte_bound() {
        // Hex digits at random: their gzip is a bit over half their size.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let digits: Vec<u8> = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"0123456789abcdef"[(state % 16) as usize]
            })
            .collect();
        let build = || {
            let digits = Bytes::from(digits.clone());
            || async move { Ok(digits) }
        };
        let cache = ReplyCache::with_limit(Duration::from_secs(60), 4500);
        for request in ["{a}", "{b}"] {
            let reply = cache
                .get_or_build_encoded(
                    "/v1/x",
                    request.into(),
                    1,
                    Freshness::Snapshot,
                    false,
                    build(),
                )
                .await
                .unwrap();
            assert!(!reply.gzip);
        }
        assert_eq!(cache.len(), 2);
        // 4,000 bytes kept; the gzip copy of one of them takes the total over 4,500.
        let reply = cache
            .get_or_build_encoded("/v1/x", "{b}".into(), 1, Freshness::Snapshot, true, build())
            .await
            .unwrap();
        assert!(reply.gzip && reply.bytes.len() > 500 && reply.bytes.len() < 2000);
        assert_eq!(cache.len(), 1, "the oldest entry makes room");
    }

    #[actix_rt::test]
    async fn a_failed_build_is_not_kept() {
        let cache = ReplyCache::new(Duration::from_secs(60));
        let failed = cache.get_or_build("/v1/x", "{}".into(), 1, Freshness::Snapshot, || async {
            Err(ApiError::Unavailable("store down"))
        });
        assert!(failed.await.is_err());
        let next = cache.get_or_build("/v1/x", "{}".into(), 1, Freshness::Snapshot, || async {
            body("ok")
        });
        assert_eq!(next.await.unwrap(), "ok");
    }

    #[actix_rt::test]
    async fn kept_bytes_stay_under_the_bound() {
        let cache = ReplyCache::with_limit(Duration::from_secs(60), 1_000);
        for n in 0..10 {
            let reply = cache
                .get_or_build("/v1/x", format!("{n}"), 1, Freshness::Snapshot, || async {
                    Ok(Bytes::from(vec![b'x'; 400]))
                })
                .await
                .unwrap();
            assert_eq!(reply.len(), 400);
        }
        let kept: usize = cache.lock().values().map(|s| s.size()).sum();
        assert!(kept <= 1_000 + 400, "kept {kept} bytes");
        assert!(cache.len() <= 3, "kept {} entries", cache.len());
    }
}
