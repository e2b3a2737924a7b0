//! Predictions as items finish: journaled at once (so a crash loses only what is in flight),
//! counted for the live log, and handed back in item order.

use std::path::Path;

use crate::env::Item;
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::run::{Journal, PredictionRecord};

pub(super) struct Finished<'l> {
    journal: Journal,
    done: Vec<Option<PredictionRecord>>,
    count: usize,
    log: &'l mut RunLog,
}

impl<'l> Finished<'l> {
    pub fn new(run_dir: &Path, items: usize, log: &'l mut RunLog) -> Result<Self> {
        let journal = Journal::create(&run_dir.join("predictions.jsonl"))?;
        Ok(Self { journal, done: vec![None; items], count: 0, log })
    }

    pub fn add(&mut self, index: usize, rec: PredictionRecord) -> Result<()> {
        self.journal.append(&rec)?;
        self.done[index] = Some(rec);
        self.count += 1;
        self.log.progress(self.count, self.done.len());
        Ok(())
    }

    /// Every item's prediction in item order; an item the engine never finished is an error.
    pub fn into_item_order(mut self, items: &[Item]) -> Result<Vec<PredictionRecord>> {
        self.journal.sync()?;
        self.done
            .into_iter()
            .zip(items)
            .map(|(r, it)| r.ok_or_else(|| Error::Invalid(format!("the engine returned nothing for item {}", it.id))))
            .collect()
    }
}
