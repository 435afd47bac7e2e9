//! Wall-clock time, injectable so that `exp`/`nbf`/`iat` checks can be tested.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current Unix time in seconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// A clock that always answers the same second (for tests and `explain --at`).
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub u64);

/// The clock type the pipeline holds.
pub type SharedClock = Arc<dyn Clock>;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        // A clock before 1970 is a broken host; treating it as the epoch makes every token
        // look unexpired-but-issued-in-the-future, which the `iat` check then rejects.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl Clock for FixedClock {
    fn now_unix(&self) -> u64 {
        self.0
    }
}
