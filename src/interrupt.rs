//! Cooperative interruption. The binary's Ctrl-C / SIGTERM handler sets the flag; the engine
//! and the prediction journal check it between steps, so an interrupted run stops scheduling
//! work, keeps every finished item journaled and ends as `Interrupted` (resumable), never
//! mid-write. A process-wide flag because a signal is process-wide.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The folder of the run this process is working on, so that a second Ctrl-C, which exits at
/// once, can still record the run as Interrupted.
static ACTIVE_RUN: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Records (or, with `None`, forgets) the run this process works on.
pub fn set_active_run(dir: Option<PathBuf>) {
    if let Ok(mut active) = ACTIVE_RUN.lock() {
        *active = dir;
    }
}

/// The run this process works on, if any.
pub fn active_run() -> Option<PathBuf> {
    ACTIVE_RUN.lock().ok().and_then(|a| a.clone())
}

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
