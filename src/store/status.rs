//! What a store follower knows, for `/readyz` and the metrics: a leaf the metrics read
//! without depending on the store itself.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// What the follower knows, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreStatus {
    pub(super) connected: AtomicBool,
    pub(super) revision: AtomicI64,
    pub(super) reconnects: AtomicU64,
}

// === impl StoreStatus ===

impl StoreStatus {
    /// Whether the follower is connected to the store now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The revision served (0: the store had none).
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// How many times the follower connected again after losing the store.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Records the revision now served.
    pub(crate) fn served(&self, revision: i64) {
        self.revision.store(revision, Ordering::Release);
    }
}
