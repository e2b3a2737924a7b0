//! Predictions as items finish: journaled at once (so a crash loses only what is in flight),
//! counted for the live log, and handed back in item order. A resumed run starts from the
//! predictions its journal already holds.

use std::collections::HashMap;

use crate::env::Item;
use crate::error::{Error, Result};
use crate::log::{Progress, RunLog, Work};
use crate::run::{Journal, PredictionRecord, RunDir, RunFile};

pub(super) struct Finished<'l> {
    journal: Journal,
    done: Vec<Option<PredictionRecord>>,
    count: usize,
    /// What the engine did for the items finished here, for the progress rates.
    work: Work,
    log: &'l mut RunLog,
}

impl<'l> Finished<'l> {
    /// `journaled`: predictions already in the journal (a resumed run); an id the items lack
    /// means the environment (or `--limit`) changed under the run, which is an error. `unit`:
    /// what the engine's work is counted in (`Work::Tokens(0)` or `Work::Requests(0)`).
    pub fn new(
        run_dir: &RunDir,
        items: &[Item],
        journaled: &[PredictionRecord],
        unit: Work,
        log: &'l mut RunLog,
    ) -> Result<Self> {
        let index: HashMap<&str, usize> =
            items.iter().enumerate().map(|(i, it)| (it.id.as_str(), i)).collect();
        let mut done = vec![None; items.len()];
        let mut count = 0;
        for rec in journaled {
            let i = *index.get(rec.id.as_str()).ok_or_else(|| Error::JournalUnknownItem {
                journal: run_dir.file(RunFile::Journal),
                id: rec.id.clone(),
            })?;
            // Only missing items are ever redone, so a repeated id cannot differ; keep the first.
            if done[i].is_none() {
                done[i] = Some(rec.clone());
                count += 1;
            }
        }
        let journal = Journal::create(&run_dir.file(RunFile::Journal))?;
        log.start_progress(count);
        Ok(Self { journal, done, count, work: unit, log })
    }

    /// Whether item `index` already has its prediction.
    pub fn has(&self, index: usize) -> bool {
        self.done[index].is_some()
    }

    pub fn add(&mut self, index: usize, rec: PredictionRecord) -> Result<()> {
        self.journal.append(&rec)?;
        let work = self.count_work(&rec);
        self.done[index] = Some(rec);
        self.count += 1;
        self.log.progress(Progress { done: self.count, total: self.done.len(), work });
        // Checked after journaling, so the item just finished is kept.
        if crate::interrupt::requested() {
            self.journal.sync()?;
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// The engine's work so far, with what it did for `rec`.
    fn count_work(&mut self, rec: &PredictionRecord) -> Work {
        self.work = match self.work {
            Work::Tokens(n) => Work::Tokens(n + rec.tokens_out),
            Work::Requests(n) => {
                Work::Requests(n + rec.choice_logprobs.as_ref().map_or(0, Vec::len))
            }
        };
        self.work
    }

    /// Every item's prediction in item order; an item the engine never finished is an error.
    pub fn into_item_order(mut self, items: &[Item]) -> Result<Vec<PredictionRecord>> {
        self.journal.sync()?;
        self.done
            .into_iter()
            .zip(items)
            .map(|(r, it)| r.ok_or_else(|| Error::EngineReturnedNothing { item: it.id.clone() }))
            .collect()
    }
}
