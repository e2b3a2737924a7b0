//! A run's life on disk: allocated with its record and live log, then Completed with its score
//! or Failed with its error. Shared by `eval` and `score`.

use std::path::Path;
use std::time::Instant;

use super::EvalOutcome;
use crate::env::{EnvSources, Environment};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::report::ScoreBreakdown;
use crate::run::record::{now_rfc3339, EnvironmentInfo};
use crate::run::{RunDir, RunFile, RunRecord, RunStatus, RunsDir};

/// `--env` as given (found through `sources`), or the embedded default.
pub(super) fn open_env(spec: Option<&Path>, sources: &EnvSources) -> Result<Environment> {
    match spec {
        Some(p) => Environment::resolve(&p.to_string_lossy(), sources),
        None => Environment::embedded(),
    }
}

pub(super) fn environment_info(env: &Environment, phase: &str) -> EnvironmentInfo {
    EnvironmentInfo {
        name: env.manifest.name.clone(),
        version: env.manifest.version.clone(),
        origin: env.origin.clone(),
        phase: phase.to_string(),
        content_sha256: None,
    }
}

/// How the live log announces a new run's id, as soon as its folder exists: `Run ID: 7`.
/// (`benchgen serve` reads it from the `eval` process it starts.)
pub const RUN_ID_LINE: &str = "Run ID: ";

pub(super) struct ActiveRun {
    pub dir: RunDir,
    pub record: RunRecord,
    /// Held for as long as this process works on the run; see [`lock_run`].
    _lock: std::fs::File,
}

/// Locks the run folder's `.lock`, so a `--resume` of a run that another process is still
/// working on is refused rather than journaling every item twice. The OS releases the lock
/// when the process ends, even by SIGKILL, so a crashed run never stays locked.
fn lock_run(dir: &RunDir, run_id: u64) -> Result<std::fs::File> {
    let path = dir.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::RunLocked { run_id }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// `benchgen runs rm`: removes run `run_id`'s folder, unless a process is still working on it
/// (it holds the run's lock while it does).
pub fn remove_run(runs_dir: &Path, run_id: u64) -> Result<()> {
    let dir = RunsDir::new(runs_dir).run(run_id);
    if !dir.path().is_dir() {
        return Err(Error::Runs {
            path: runs_dir.to_path_buf(),
            message: format!("there is no run {run_id} (`benchgen runs list` shows the runs)"),
        });
    }
    let lock = lock_run(&dir, run_id).map_err(|e| match e {
        Error::RunLocked { .. } => Error::Runs {
            path: runs_dir.to_path_buf(),
            message: format!(
                "run {run_id} is still running in another process; stop it (Ctrl-C) before removing it"
            ),
        },
        other => other,
    })?;
    // Held while removing, so that no `--resume` takes the run up meanwhile.
    let removed = std::fs::remove_dir_all(dir.path()).map_err(|e| Error::io(dir.path(), e));
    drop(lock);
    removed
}

impl ActiveRun {
    /// Allocates the next Run ID, writes `run.json` (Running) and the log's header lines.
    pub fn start(runs_dir: &Path, mut record: RunRecord, log: &mut RunLog) -> Result<Self> {
        let (run_id, dir) = RunsDir::new(runs_dir).allocate()?;
        let lock = lock_run(&dir, run_id)?;
        record.run_id = run_id;
        dir.write_record(&record)?;
        log.attach_file(&dir.file(RunFile::Log))?;
        log.line(format!("Status: {}", record.status));
        log.line(format!("{RUN_ID_LINE}{run_id}"));
        log.line(format!("Model: {}", record.model.spec));
        let e = &record.environment;
        log.line(format!("Environment: {} v{} (phase {})", e.name, e.version, e.phase));
        log.line(format!("Created: {}", record.created));
        crate::interrupt::set_active_run(Some(dir.path().to_path_buf()));
        Ok(Self { dir, record, _lock: lock })
    }

    /// Takes an existing run up again (`--resume`): Running, its old ending cleared, the log
    /// continued below what it already holds.
    pub fn reopen(dir: RunDir, mut record: RunRecord, log: &mut RunLog) -> Result<Self> {
        let lock = lock_run(&dir, record.run_id)?;
        record.status = RunStatus::Running;
        record.finished = None;
        record.duration_s = None;
        record.error = None;
        record.resume_command = None;
        // This process measures its own, on its own machine.
        record.memory = None;
        record.machine = crate::run::record::host_name();
        dir.write_record(&record)?;
        log.continue_file(&dir.file(RunFile::Log))?;
        log.line(format!("Status: {} (resumed)", record.status));
        log.line(format!("{RUN_ID_LINE}{}", record.run_id));
        log.line(format!("Model: {}", record.model.spec));
        let e = &record.environment;
        log.line(format!("Environment: {} v{} (phase {})", e.name, e.version, e.phase));
        crate::interrupt::set_active_run(Some(dir.path().to_path_buf()));
        Ok(Self { dir, record, _lock: lock })
    }

    /// Records how the run ended; a failure keeps its error in `run.json` and is returned.
    pub fn finish(
        mut self,
        result: Result<ScoreBreakdown>,
        log: &mut RunLog,
        took: impl Into<Took>,
    ) -> Result<EvalOutcome> {
        // From here on this process records the ending itself.
        crate::interrupt::set_active_run(None);
        self.record.finished = Some(now_rfc3339());
        self.record.duration_s = Some(took.into().seconds());
        match result {
            Ok(breakdown) => {
                self.record.status = RunStatus::Completed;
                self.record.overall_score = Some(breakdown.overall_score);
                self.dir.write_record(&self.record)?;
                log.line(format!("Status: {}", self.record.status));
                Ok(EvalOutcome { run_id: self.record.run_id, run_dir: self.dir, breakdown })
            }
            Err(Error::Interrupted) => {
                let command = mark_interrupted(&mut self.record, self.dir.path());
                let _ = self.dir.write_record(&self.record);
                log.line(format!("Status: {} (resume with: {command})", self.record.status));
                Err(Error::Interrupted)
            }
            Err(e) => {
                self.record.status = RunStatus::Failed;
                self.record.error = Some(e.to_string());
                // The original error matters more than a failure to record it.
                let _ = self.dir.write_record(&self.record);
                log.line(format!("Status: {} ({e})", self.record.status));
                Err(e)
            }
        }
    }
}

/// How long a run took, as its records say: since this process started it, or a span fixed
/// beforehand (a merged run: its shards' first start to their last end).
#[derive(Debug, Clone, Copy)]
pub enum Took {
    Since(Instant),
    Fixed(f64),
}

impl Took {
    pub fn seconds(self) -> f64 {
        match self {
            Took::Since(start) => start.elapsed().as_secs_f64(),
            Took::Fixed(seconds) => seconds,
        }
    }
}

impl From<Instant> for Took {
    fn from(start: Instant) -> Self {
        Took::Since(start)
    }
}

/// For a second Ctrl-C, which exits without waiting for the run to wind down: marks the active
/// run Interrupted (with its resume command) in its `run.json`, as the first Ctrl-C would have.
/// The journal is append-only, so the run resumes all the same.
pub fn abandon_active_run() {
    let Some(dir) = crate::interrupt::active_run() else { return };
    let dir = RunDir::new(dir);
    let Ok(mut record) = dir.read_record() else { return };
    if record.status != RunStatus::Running {
        return;
    }
    record.finished = Some(now_rfc3339());
    mark_interrupted(&mut record, dir.path());
    let _ = dir.write_record(&record);
}

/// Interrupted, with the command that resumes it (which it returns).
fn mark_interrupted(record: &mut RunRecord, dir: &Path) -> String {
    record.status = RunStatus::Interrupted;
    let command = resume_command(dir, record.run_id);
    record.resume_command = Some(command.clone());
    command
}

/// `benchgen eval --resume ID --runs-dir DIR`, with the runs folder absolute so the command works
/// from anywhere, quoted for a POSIX shell when it needs to be.
pub fn resume_command(run_dir: &Path, run_id: u64) -> String {
    let runs = run_dir.parent().unwrap_or(Path::new("."));
    let runs = std::path::absolute(runs).unwrap_or_else(|_| runs.to_path_buf());
    let runs = runs.to_string_lossy();
    let safe = runs.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c));
    let quoted =
        if safe { runs.into_owned() } else { format!("'{}'", runs.replace('\'', "'\\''")) };
    format!("benchgen eval --resume {run_id} --runs-dir {quoted}")
}
