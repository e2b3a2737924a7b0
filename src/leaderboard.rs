//! The Leaderboard tab: the best completed run of each model on an environment.
//!
//! Rows are keyed by what the model is, not how it was spelled: the sha256 of its files
//! (weights, config, tokenizer) when the run recorded them, else its hub commit with the
//! repository, else its origin; so `embedded` and `embedded:arithmetic-llama`, or `trained:/p`
//! and `/p`, are one row. Runs over part of a phase (`--limit` that cut items, or a shard) are
//! left out unless asked for, and then show their item count; `score` re-runs are labelled.

use serde::Serialize;

use crate::error::Result;
use crate::hash::sha256_hex;
use crate::report::ScoreBreakdown;
use crate::run::{RunRecord, RunStatus, RunsDir};

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The model as its best run named it (a re-scored run: where its predictions came from).
    pub model: String,
    /// What the row is keyed by (see the module's doc).
    pub identity: String,
    pub run_id: u64,
    pub created: String,
    /// Items the run scored.
    pub items: usize,
    /// The run covered only part of the phase (`--limit` cut items, or it was a shard).
    pub partial: bool,
    /// The run re-scored saved predictions (`benchgen score`) instead of running a model.
    pub rescored: bool,
    pub breakdown: ScoreBreakdown,
}

impl Entry {
    /// The model as a row names it: `(re-scored)` and `(partial)` runs say so.
    pub fn label(&self) -> String {
        let mut name = self.model.clone();
        if self.rescored {
            name.push_str(" (re-scored)");
        }
        if self.partial {
            name.push_str(" (partial)");
        }
        name
    }
}

/// What the leaderboard shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also runs over part of a phase.
    pub include_partial: bool,
}

/// Completed runs of `env_name`, best Overall Score per model (a full-phase run before any
/// partial one), best first. Ties keep the earlier run, so a leaderboard does not reshuffle
/// when a result is reproduced.
pub fn leaderboard(runs: &RunsDir, env_name: &str, options: Options) -> Result<Vec<Entry>> {
    let mut best: Vec<Entry> = Vec::new();
    for id in runs.ids()? {
        let run = runs.run(id);
        let Ok(rec) = run.read_record() else { continue };
        if rec.status != RunStatus::Completed || rec.environment.name != env_name {
            continue;
        }
        let Ok(Some(breakdown)) = run.read_breakdown::<ScoreBreakdown>() else { continue };
        let entry = Entry {
            model: shown_model(&rec),
            identity: identity(&rec),
            run_id: id,
            created: rec.created.clone(),
            items: rec.items.unwrap_or(breakdown.total),
            partial: partial(&rec),
            rescored: rec.settings.is_none(),
            breakdown,
        };
        if entry.partial && !options.include_partial {
            continue;
        }
        // A model's full-phase run stands for it over any partial one, whatever their scores.
        let rank = |e: &Entry| (!e.partial, e.breakdown.overall_score);
        match best.iter_mut().find(|e| e.identity == entry.identity) {
            Some(e) if rank(&entry).partial_cmp(&rank(e)) == Some(std::cmp::Ordering::Greater) => {
                *e = entry
            }
            Some(_) => {}
            None => best.push(entry),
        }
    }
    best.sort_by(|a, b| {
        b.breakdown
            .overall_score
            .total_cmp(&a.breakdown.overall_score)
            .then(a.run_id.cmp(&b.run_id))
    });
    Ok(best)
}

/// The model's name as the run recorded it, in one spelling: the recorded setting (the
/// embedded model as `embedded`, `trained:` dropped), else the spec as given.
fn shown_model(rec: &RunRecord) -> String {
    match &rec.settings {
        Some(s) => s.model.clone().unwrap_or_else(|| crate::settings::EMBEDDED_MODEL.to_string()),
        None => rec.model.spec.clone(),
    }
}

fn identity(rec: &RunRecord) -> String {
    let m = &rec.model;
    if rec.settings.is_none() {
        return format!("rescored:{}", m.spec);
    }
    if !m.files.is_empty() {
        let listed: String =
            m.files.iter().map(|(name, hash)| format!("{name}={hash}\n")).collect();
        return format!("files:{}", sha256_hex(listed.as_bytes()));
    }
    match &m.revision {
        Some(commit) => format!("{}@{commit}", m.origin),
        None => m.origin.clone(),
    }
}

/// A `--limit` that cut items (as many items as the limit: the phase may have had more), or a
/// shard. A phase of exactly the limit's size counts as cut, which errs on the side of caution.
fn partial(rec: &RunRecord) -> bool {
    let Some(s) = &rec.settings else { return false };
    let cut = matches!((s.limit, rec.items), (Some(limit), Some(items)) if items >= limit);
    cut || s.shard.is_some()
}
