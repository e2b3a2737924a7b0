//! The runs directory (one folder per run, named by its integer Run ID) and a run's folder: the
//! one place that names a run's files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;

use super::record::{RunRecord, RunStatus};

/// A file a run may hold, in the order `runs show` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunFile {
    /// `run.json`: status, settings, model and environment identity, memory, score.
    Record,
    /// The live log as it was printed.
    Log,
    /// The prediction journal, one JSON line per finished item (the Prediction Output).
    Journal,
    /// The Submission archive: the journal and `metadata.json`.
    Submission,
    /// The Scoring Output's scores.
    Scores,
    /// The Scoring Output's log, written when an environment's scoring program ran.
    ScoringLog,
    /// The Score Breakdown.
    Breakdown,
    /// Detailed Results, JSON and HTML.
    DetailedJson,
    DetailedHtml,
    /// The generated fine-tune dataset, when the environment asks for one.
    Finetune,
}

impl RunFile {
    pub const ALL: [RunFile; 10] = [
        RunFile::Record,
        RunFile::Log,
        RunFile::Journal,
        RunFile::Submission,
        RunFile::Scores,
        RunFile::ScoringLog,
        RunFile::Breakdown,
        RunFile::DetailedJson,
        RunFile::DetailedHtml,
        RunFile::Finetune,
    ];

    /// The file's path inside the run's folder.
    pub const fn name(self) -> &'static str {
        match self {
            RunFile::Record => "run.json",
            RunFile::Log => "log.txt",
            RunFile::Journal => "predictions.jsonl",
            RunFile::Submission => "submission.zip",
            RunFile::Scores => "scoring_output/scores.json",
            RunFile::ScoringLog => "scoring_output/scoring.log",
            RunFile::Breakdown => "score_breakdown.json",
            RunFile::DetailedJson => "detailed_results.json",
            RunFile::DetailedHtml => "detailed_results.html",
            RunFile::Finetune => "finetune.jsonl",
        }
    }

    /// What the platform's Files panel calls it.
    pub const fn label(self) -> &'static str {
        match self {
            RunFile::Record => "Run record",
            RunFile::Log => "Log",
            RunFile::Journal => "Prediction Output",
            RunFile::Submission => "Submission File",
            RunFile::Scores => "Scoring Output",
            RunFile::ScoringLog => "Scoring Output (log)",
            RunFile::Breakdown => "Score Breakdown",
            RunFile::DetailedJson => "Detailed Results (JSON)",
            RunFile::DetailedHtml => "Detailed Results (HTML)",
            RunFile::Finetune => "Generated dataset",
        }
    }
}

/// One run's folder. Every file name of a run is spelled in [`RunFile::name`] and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `file` is (or would be).
    pub fn file(&self, file: RunFile) -> PathBuf {
        self.path.join(file.name())
    }

    /// The lock a process holds while it works on the run (see `eval::lifecycle`).
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(".lock")
    }

    /// Whether a process is working on the run now: one holds its lock for as long as it does,
    /// and the OS drops the lock when that process ends, SIGKILL included, so a run recorded as
    /// Running that nobody holds was killed or crashed. Asked by taking the lock shared for a
    /// moment: a `--resume` started in that moment is refused as if the run were still going.
    pub fn is_worked_on(&self) -> bool {
        let Ok(file) = std::fs::File::open(self.lock_file()) else { return false };
        matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// Whether `rec` (this run's record) says Running while no process works on it: the run was
    /// killed or crashed, and only `--resume` takes it up again.
    pub fn stopped(&self, rec: &RunRecord) -> bool {
        rec.status == RunStatus::Running && !self.is_worked_on()
    }

    /// The status as run lists show it: the record's, or `Stopped` for a run [`Self::stopped`].
    pub fn status_label(&self, rec: &RunRecord) -> String {
        if self.stopped(rec) {
            "Stopped".into()
        } else {
            rec.status.to_string()
        }
    }

    /// The Scoring Output's folder.
    pub fn scoring_output(&self) -> PathBuf {
        self.file(RunFile::Scores).parent().map_or_else(|| self.path.clone(), Path::to_path_buf)
    }

    pub fn read_record(&self) -> Result<RunRecord> {
        RunRecord::read(&self.file(RunFile::Record))
    }

    /// Replaces `run.json` atomically.
    pub fn write_record(&self, record: &RunRecord) -> Result<()> {
        write_json_atomic(&self.file(RunFile::Record), record)
    }

    /// The Score Breakdown, or None before the run has one. (Generic so that this low stage
    /// need not know the report's type.)
    pub fn read_breakdown<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.file(RunFile::Breakdown);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map(Some).map_err(|source| Error::Json { path, source })
    }

    /// The files this run holds now, in [`RunFile::ALL`]'s order.
    pub fn present(&self) -> Vec<RunFile> {
        RunFile::ALL.into_iter().filter(|&f| self.file(f).is_file()).collect()
    }
}

pub struct RunsDir {
    root: PathBuf,
}

impl RunsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Run `id`'s folder (which may not exist).
    pub fn run(&self, id: u64) -> RunDir {
        RunDir::new(self.root.join(id.to_string()))
    }

    /// Existing Run IDs, ascending. Folders that are not plain integers are ignored.
    pub fn ids(&self) -> Result<Vec<u64>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Takes the next free Run ID by creating its folder. `create_dir` fails if the folder
    /// exists, atomically, so two processes racing here never get the same id.
    pub fn allocate(&self) -> Result<(u64, RunDir)> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::Runs {
            path: self.root.clone(),
            message: if self.root.exists() && !self.root.is_dir() {
                "is not a folder; pass --runs-dir a folder (it is created when missing)".into()
            } else {
                format!("cannot be created ({e}); pass --runs-dir a folder you can write to")
            },
        })?;
        let mut next = self.ids()?.last().map_or(1, |last| last + 1);
        for _ in 0..10_000 {
            let run = self.run(next);
            match std::fs::create_dir(run.path()) {
                Ok(()) => return Ok((next, run)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(Error::io(run.path(), e)),
            }
        }
        Err(Error::Runs { path: self.root.clone(), message: "could not allocate a Run ID".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_threads_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let runs = RunsDir::new(dir.path().join("runs"));
        assert_eq!(runs.allocate().unwrap().0, 1);
        std::fs::create_dir(dir.path().join("runs/not-a-run")).unwrap();
        assert_eq!(runs.allocate().unwrap().0, 2);
        let root = runs.root().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || RunsDir::new(root).allocate().unwrap().0)
            })
            .collect();
        let mut got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (3..=10).collect::<Vec<_>>());
    }

    #[test]
    fn a_run_dir_names_each_file_once_and_lists_what_exists() {
        let names: std::collections::HashSet<_> = RunFile::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), RunFile::ALL.len());
        let dir = tempfile::tempdir().unwrap();
        let (_, run) = RunsDir::new(dir.path()).allocate().unwrap();
        assert_eq!(run.present(), vec![]);
        assert_eq!(run.read_breakdown::<serde_json::Value>().unwrap(), None);
        std::fs::create_dir(run.scoring_output()).unwrap();
        for f in [RunFile::Scores, RunFile::Log, RunFile::Breakdown] {
            std::fs::write(run.file(f), "{}").unwrap();
        }
        assert_eq!(run.present(), vec![RunFile::Log, RunFile::Scores, RunFile::Breakdown]);
        assert_eq!(run.read_breakdown::<serde_json::Value>().unwrap(), Some(serde_json::json!({})));
        std::fs::write(run.file(RunFile::Breakdown), "{").unwrap();
        let e = run.read_breakdown::<serde_json::Value>().unwrap_err().to_string();
        assert!(e.contains("score_breakdown.json"), "{e}");
    }
}
