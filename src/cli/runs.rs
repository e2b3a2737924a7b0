use std::path::Path;

use anyhow::{bail, Context};
use benchgen::report::ScoreBreakdown;
use benchgen::run::{RunFile, RunsDir};

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn list(runs_dir: &Path, env: Option<&str>) -> anyhow::Result<()> {
    let runs = RunsDir::new(runs_dir);
    let ids = runs.ids()?;
    outln!(
        "{:>5}  {:<11}  {:<32}  {:<20}  {:>23}  {:<20}  {:>13}",
        "ID",
        "Status",
        "Model",
        "Environment",
        "Items",
        "Created",
        "Overall Score"
    )?;
    for id in ids {
        // A folder without a readable record (being created, or damaged) is listed as such.
        let run = runs.run(id);
        let Ok(rec) = run.read_record() else {
            if env.is_none() {
                outln!("{id:>5}  {:<11}", "Unreadable")?;
            }
            continue;
        };
        if env.is_some_and(|e| e != rec.environment.name) {
            continue;
        }
        let score = rec.overall_score.map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        outln!(
            "{:>5}  {:<11}  {:<32}  {:<20}  {:>23}  {:<20}  {:>13}",
            id,
            run.status_label(&rec),
            truncate(&rec.model.spec, 32),
            truncate(&rec.environment.name, 20),
            rec.items_label(),
            rec.created,
            score
        )?;
    }
    Ok(())
}

pub fn show(runs_dir: &Path, run_id: u64, finetune: bool) -> anyhow::Result<()> {
    let run = RunsDir::new(runs_dir).run(run_id);
    if !run.path().is_dir() {
        bail!("no run {run_id} in {} (see `benchgen runs list`)", runs_dir.display());
    }
    if finetune {
        let path = run.file(RunFile::Finetune);
        if !path.is_file() {
            bail!(
                "run {run_id} has no fine-tune dataset: its environment has no [finetune] section"
            );
        }
        out!(
            "{}",
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
        )?;
        return Ok(());
    }
    let rec = run.read_record()?;
    outln!("Run ID:       {}", rec.run_id)?;
    if run.stopped(&rec) {
        outln!(
            "Status:       {} (no process is working on it: it was killed or crashed)",
            rec.status
        )?;
        outln!("Resume with:  {}", benchgen::eval::resume_command(run.path(), rec.run_id))?;
    } else {
        outln!("Status:       {}", rec.status)?;
    }
    outln!("Model:        {}", rec.model.spec)?;
    outln!(
        "Environment:  {} v{} (phase {})",
        rec.environment.name,
        rec.environment.version,
        rec.environment.phase
    )?;
    outln!("Items:        {}", rec.items_label())?;
    outln!("Created:      {}", rec.created)?;
    if let Some(d) = rec.duration_s {
        outln!("Duration:     {d:.2}s")?;
    }
    if let Some(m) = &rec.memory {
        outln!("Memory:       {}", m.summary())?;
    }
    if let Some(e) = &rec.error {
        outln!("Error:        {e}")?;
    }
    if let Some(c) = &rec.resume_command {
        outln!("Resume with:  {c}")?;
    }
    if let Some(b) = run.read_breakdown::<ScoreBreakdown>()? {
        outln!("\n{}", b.accuracy_line())?;
        out!("{}", b.table())?;
    }
    outln!("\nFiles:")?;
    for file in run.present() {
        outln!("  {}", run.file(file).display())?;
    }
    Ok(())
}

pub fn remove(runs_dir: &Path, ids: &[u64]) -> anyhow::Result<()> {
    for &id in ids {
        benchgen::eval::remove_run(runs_dir, id)?;
        outln!("removed run {id}")?;
    }
    Ok(())
}
