//! `benchgen merge`: the shards of one evaluation (`eval --shard K/N`), run on any number of
//! machines, made into one ordinary run. An item's output does not depend on its batch-mates,
//! so the merged run's predictions, scores and reports are those of the run done whole.

use std::collections::BTreeMap;

use super::lifecycle::{environment_info, open_env, ActiveRun, Took};
use super::scoring::Scoring;
use super::{submission_metadata, EvalOutcome, Invocation};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::run::journal::read_predictions_file;
use crate::run::record::ShardRun;
use crate::run::submission::{read_submission, write_submission};
use crate::run::{Journal, PredictionRecord, RunDir, RunFile, RunRecord, RunStatus, RunsDir};
use crate::settings::{Settings, Shard};

/// Which runs to merge.
#[derive(Debug, Clone)]
pub enum MergeSelection {
    /// These runs, every one a shard of the same evaluation.
    Runs(Vec<u64>),
    /// The Completed runs of this `--group` in the runs directory. A shard that also has
    /// Failed or Interrupted runs (a requeued task) counts by its Completed one.
    Group(String),
}

/// A shard run as found.
struct Found {
    dir: RunDir,
    record: RunRecord,
    settings: Settings,
    shard: Shard,
}

fn refuse(message: String) -> Error {
    Error::Merge { reason: message }
}

pub fn merge_runs(
    selection: &MergeSelection,
    how: &Invocation,
    log: &mut RunLog,
) -> Result<EvalOutcome> {
    let runs = RunsDir::new(&how.runs_dir);
    let shards = match selection {
        MergeSelection::Runs(ids) => {
            ids.iter().map(|&id| found(&runs, id)).collect::<Result<_>>()?
        }
        MergeSelection::Group(group) => of_group(&runs, group)?,
    };
    let first = check(&shards)?;
    let settings = Settings { shard: None, ..first.settings.clone() };

    // The span of the evaluation: from the first shard's start to the last one's end.
    let start = shards.iter().filter_map(|s| wall(&s.record.created)).min();
    let end = shards.iter().filter_map(|s| s.record.finished.as_deref().and_then(wall)).max();
    let took = match (start, end) {
        (Some(a), Some(b)) => Took::Fixed((b - a).to_std().unwrap_or_default().as_secs_f64()),
        _ => Took::Fixed(0.0),
    };

    let env = open_env(settings.env.as_deref().map(std::path::Path::new), &how.env_sources)?;
    let phase = env.phase(settings.phase.as_deref())?.clone();
    super::program::check_allowed(&env, how.allow_scoring_program)?;
    let mut record = RunRecord::new(
        first.record.model.clone(),
        environment_info(&env, &phase.name),
        Some(settings.clone()),
    );
    record.shards = shards
        .iter()
        .map(|s| ShardRun {
            run_id: s.record.run_id,
            shard: s.shard,
            created: s.record.created.clone(),
            duration_s: s.record.duration_s,
            machine: s.record.machine.clone(),
        })
        .collect();
    let mut run = ActiveRun::start(&how.runs_dir, record, log)?;
    let result = (|| {
        let mut items = env.load_items(&phase)?;
        if let Some(limit) = settings.limit {
            items.truncate(limit);
        }
        let content = env.content_sha256(&phase)?;
        if first.record.environment.content_sha256.as_deref() != Some(content.as_str()) {
            return Err(Error::env(
                &env.origin,
                format!(
                    "its manifest or data changed since the shards ran (content sha256 {}, now {content})",
                    first.record.environment.content_sha256.as_deref().unwrap_or("unrecorded")
                ),
            ));
        }
        run.record.environment.content_sha256 = Some(content);
        run.record.items = Some(items.len());
        log.line(format!("Merging {} shard(s) of group \"{}\"", shards.len(), group_of(&settings)));
        let predictions = in_item_order(&shards, &items)?;
        let mut journal = Journal::create(&run.dir.file(RunFile::Journal))?;
        for p in &predictions {
            journal.append(p)?;
        }
        journal.sync()?;
        let submission = run.dir.file(RunFile::Submission);
        write_submission(
            &submission,
            &predictions,
            &submission_metadata(&run.record, predictions.len()),
        )?;
        run.record.submission = Some(RunFile::Submission.name().into());
        log.line("Scoring submission");
        let scoring = Scoring {
            env: &env,
            phase: &phase,
            run_dir: &run.dir,
            allow_program: how.allow_scoring_program,
        };
        scoring.score_and_report(&run.record, &items, &predictions, took, log)
    })();
    run.finish(result, log, took)
}

fn group_of(settings: &Settings) -> &str {
    settings.group.as_deref().unwrap_or_default()
}

fn wall(rfc3339: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// Run `id`, which must be a shard.
fn found(runs: &RunsDir, id: u64) -> Result<Found> {
    let dir = runs.run(id);
    if !dir.file(RunFile::Record).is_file() {
        return Err(refuse(format!(
            "there is no run {id} in {} (`benchgen runs list` shows the runs)",
            runs.root().display()
        )));
    }
    let record = dir.read_record()?;
    let Some((settings, shard)) = record.settings.clone().and_then(|s| s.shard.map(|k| (s, k)))
    else {
        return Err(refuse(format!("run {id} is not a shard (it ran without --shard)")));
    };
    Ok(Found { dir, record, settings, shard })
}

/// The runs of `group`: per shard its Completed run, else its latest run (which `check`
/// then refuses, naming its status). A shard completed more than once (Slurm requeues a task
/// whose node failed, and the task may have finished) counts once when its runs predicted the
/// same; runs that differ are refused.
fn of_group(runs: &RunsDir, group: &str) -> Result<Vec<Found>> {
    let mut by_shard: BTreeMap<(usize, usize), Vec<Found>> = BTreeMap::new();
    for id in runs.ids()? {
        let Ok(f) = found(runs, id) else { continue };
        if f.settings.group.as_deref() == Some(group) {
            by_shard.entry((f.shard.count, f.shard.index)).or_default().push(f);
        }
    }
    if by_shard.is_empty() {
        return Err(refuse(format!(
            "no run of group \"{group}\" in {} (`benchgen runs list` shows the runs; `eval --shard` prints its group)",
            runs.root().display()
        )));
    }
    let mut shards = Vec::new();
    for (_, mut tries) in by_shard {
        let completed: Vec<usize> =
            (0..tries.len()).filter(|&i| tries[i].record.status == RunStatus::Completed).collect();
        let Some(&keep) = completed.first() else {
            shards.push(tries.pop().expect("at least one run per shard"));
            continue;
        };
        let predicted = |f: &Found| read_submission(&f.dir.file(RunFile::Submission));
        let kept = predicted(&tries[keep])?;
        for &other in &completed[1..] {
            if predicted(&tries[other])? != kept {
                return Err(refuse(format!(
                    "shard {} of group \"{group}\" completed twice with different predictions (runs {} and {}); name the runs to merge, one per shard",
                    tries[keep].shard, tries[keep].record.run_id, tries[other].record.run_id
                )));
            }
        }
        shards.push(tries.swap_remove(keep));
    }
    shards.sort_by_key(|s| (s.shard.index, s.record.run_id));
    Ok(shards)
}

/// The shards belong together and cover every item once; returns the first.
fn check(shards: &[Found]) -> Result<&Found> {
    let first = shards.first().ok_or_else(|| refuse("no runs given".into()))?;
    for s in shards {
        let id = s.record.run_id;
        if s.record.status != RunStatus::Completed {
            return Err(refuse(format!(
                "run {id} (shard {}) is {}, not Completed: resume it with `benchgen eval --resume {id}` or run the shard again",
                s.shard, s.record.status
            )));
        }
        // The group last: a default one differs because another setting does, which says more.
        let [batch, kv] = Settings::THROUGHPUT_ONLY;
        let differs = first
            .settings
            .first_difference(&s.settings, &["shard", batch, kv, "group"])
            .or_else(|| first.settings.first_difference(&s.settings, &["shard", batch, kv]));
        if let Some(d) = differs {
            return Err(refuse(format!(
                "runs {} and {id} are not shards of one evaluation: {} is {} in run {} but {} in run {id}",
                first.record.run_id,
                d.flag(),
                d.ours,
                first.record.run_id,
                d.theirs
            )));
        }
        if s.shard.count != first.shard.count {
            return Err(refuse(format!(
                "run {} is shard {} but run {id} is shard {}: the shards of one evaluation share N",
                first.record.run_id, first.shard, s.shard
            )));
        }
        if s.record.environment.content_sha256 != first.record.environment.content_sha256 {
            return Err(refuse(format!(
                "runs {} and {id} read different environment data (content sha256 {:?} and {:?})",
                first.record.run_id,
                first.record.environment.content_sha256,
                s.record.environment.content_sha256
            )));
        }
        if s.record.model.files != first.record.model.files {
            return Err(refuse(format!(
                "runs {} and {id} loaded different model files (sha256 {:?} and {:?})",
                first.record.run_id, first.record.model.files, s.record.model.files
            )));
        }
    }
    let count = first.shard.count;
    let mut holders: Vec<Vec<u64>> = vec![Vec::new(); count];
    for s in shards {
        holders[s.shard.index].push(s.record.run_id);
    }
    if let Some((k, ids)) = holders.iter().enumerate().find(|(_, ids)| ids.len() > 1) {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        return Err(refuse(format!(
            "shard {k}/{count} is there twice (runs {}): name the runs to merge, one per shard",
            ids.join(" and ")
        )));
    }
    let missing: Vec<String> =
        (0..count).filter(|&k| holders[k].is_empty()).map(|k| format!("{k}/{count}")).collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "missing shard(s) {} of group \"{}\": run them with `benchgen eval --shard K/N --group {}` (and the same settings)",
            missing.join(", "),
            group_of(&first.settings),
            group_of(&first.settings)
        )));
    }
    Ok(first)
}

/// Every item's prediction, from the shard that holds it, in the phase's order.
fn in_item_order(shards: &[Found], items: &[crate::env::Item]) -> Result<Vec<PredictionRecord>> {
    let mut by_id: BTreeMap<String, PredictionRecord> = BTreeMap::new();
    let mut holder: BTreeMap<usize, &Found> = BTreeMap::new();
    for s in shards {
        holder.insert(s.shard.index, s);
        // The journal holds every prediction; the first of a repeated id is the one kept, as
        // a resumed run keeps it.
        for p in read_predictions_file(&s.dir.file(RunFile::Journal))? {
            by_id.entry(p.id.clone()).or_insert(p);
        }
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            by_id.remove(&item.id).ok_or_else(|| {
                let s = holder[&(i % shards[0].shard.count)];
                refuse(format!(
                    "run {} (shard {}) has no prediction for item \"{}\" in {}",
                    s.record.run_id,
                    s.shard,
                    item.id,
                    s.dir.file(RunFile::Journal).display()
                ))
            })
        })
        .collect()
}
