//! The Leaderboard tab: the best completed run of each model on an environment.

use serde::Serialize;

use crate::error::Result;
use crate::report::ScoreBreakdown;
use crate::run::{RunStatus, RunsDir};

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub model: String,
    pub run_id: u64,
    pub created: String,
    pub breakdown: ScoreBreakdown,
}

/// Completed runs of `env_name`, best Overall Score per model, best first. Ties keep the
/// earlier run, so a leaderboard does not reshuffle when a result is reproduced.
pub fn leaderboard(runs: &RunsDir, env_name: &str) -> Result<Vec<Entry>> {
    let mut best: Vec<Entry> = Vec::new();
    for id in runs.ids()? {
        let run = runs.run(id);
        let Ok(rec) = run.read_record() else { continue };
        if rec.status != RunStatus::Completed || rec.environment.name != env_name {
            continue;
        }
        let Ok(Some(breakdown)) = run.read_breakdown::<ScoreBreakdown>() else { continue };
        let entry = Entry {
            model: rec.model.spec.clone(),
            run_id: id,
            created: rec.created.clone(),
            breakdown,
        };
        match best.iter_mut().find(|e| e.model == entry.model) {
            Some(e) if entry.breakdown.overall_score > e.breakdown.overall_score => *e = entry,
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
