//! A run on disk: its folder, record, prediction journal and submission archive.

mod dir;
pub mod journal;
pub mod memory;
pub mod record;
pub mod submission;

pub use dir::{RunDir, RunFile, RunsDir};
pub use journal::{Journal, PredictionRecord};
pub use record::{RunRecord, RunStatus};
