//! Cooperative interruption. The binary's Ctrl-C / SIGTERM handler sets the flag; the engine
//! and the prediction journal check it between steps, so an interrupted run stops scheduling
//! work, keeps every finished item journaled and ends as `Interrupted` (resumable), never
//! mid-write. A process-wide flag because a signal is process-wide.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks the running evaluation to stop at its next check.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Error::Interrupted)` once an interruption was requested.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
