//! Runs an environment's scoring program (`[scoring.program]`) the way Codabench does: in a
//! scratch folder holding `program/`, `input/ref` (reference data), `input/res` (the unpacked
//! submission) and `output/`, under a time limit, reading back only `output/scores.json` or
//! `output/scores.txt`. Environments come from strangers, so the program runs only when the
//! user said so (`--allow-scoring-program`); it is not sandboxed beyond that.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::env::{Environment, Item, PhaseSpec};
use crate::error::{ArchiveError, Error, ProgramError, Result};
use crate::log::RunLog;
use crate::run::RunFile;
use crate::score::program::{parse_scores_json, parse_scores_txt, ProgramSpec, ScoresError};

/// The flag that lets a run execute an environment's scoring program.
pub const ALLOW_FLAG: &str = "--allow-scoring-program";

/// A scores file bigger than this is no scores file.
const MAX_SCORES_BYTES: u64 = 16 << 20;
/// The program's stdout and stderr are kept up to this size each (the end is what matters).
const MAX_LOG_BYTES: u64 = 4 << 20;
/// Lines of stderr quoted in the error of a failed program.
const TAIL_LINES: usize = 20;

/// Refuses an environment with a scoring program unless running it was allowed; called before a
/// run is created, so a refusal leaves nothing behind.
pub fn check_allowed(env: &Environment, allowed: bool) -> Result<()> {
    match &env.manifest.scoring.program {
        Some(program) if !allowed => Err(Error::env(
            &env.origin,
            format!(
                "it scores with its own program, `{}` (run in {}/ of the environment); that is code from the \
                 environment's authors, so benchgen runs it only when you pass {ALLOW_FLAG}",
                program.shown(),
                program.dir
            ),
        )),
        _ => Ok(()),
    }
}

/// What the program left behind.
pub(super) struct ProgramOutcome {
    pub scores: BTreeMap<String, f64>,
    /// Everything worth keeping about the run: command, exit, duration, stdout, stderr.
    pub log: String,
}

/// The program failed; `log` is still worth writing to the scoring output.
pub(super) struct ProgramFailure {
    pub error: Error,
    pub log: Option<String>,
}

// Boxed: the failure is rare and large, the success path should not carry its size.
impl From<Error> for Box<ProgramFailure> {
    fn from(error: Error) -> Self {
        Box::new(ProgramFailure { error, log: None })
    }
}

pub(super) struct ProgramRun<'a> {
    pub env: &'a Environment,
    pub phase: &'a PhaseSpec,
    pub spec: &'a ProgramSpec,
    pub items: &'a [Item],
    pub submission: &'a Path,
}

impl ProgramRun<'_> {
    pub fn run(
        &self,
        log: &mut RunLog,
    ) -> std::result::Result<ProgramOutcome, Box<ProgramFailure>> {
        let scratch = tempfile::Builder::new()
            .prefix("benchgen-scoring-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        // Canonical, so the paths handed to the program hold no symlinks (macOS's /var).
        let root =
            std::fs::canonicalize(scratch.path()).map_err(|e| Error::io(scratch.path(), e))?;
        let (program, input, output) =
            (root.join("program"), root.join("input"), root.join("output"));
        self.lay_out(&program, &input, &output)?;
        let argv = self.spec.argv(
            &program.to_string_lossy(),
            &input.to_string_lossy(),
            &output.to_string_lossy(),
        );
        log.line(format!("Running the environment's scoring program: {}", self.spec.shown()));

        let (stdout_path, stderr_path) = (root.join("stdout.txt"), root.join("stderr.txt"));
        let started = Instant::now();
        let ended = run_with_limit(&argv, &root, &stdout_path, &stderr_path, self.spec.timeout_s)?;
        let elapsed = started.elapsed().as_secs_f64();
        let stdout = read_tail(&stdout_path);
        let stderr = read_tail(&stderr_path);
        let exit = match &ended {
            Ended::Exited(status) => status.to_string(),
            Ended::TimedOut => format!("killed after timeout_s = {} s", self.spec.timeout_s),
            Ended::Interrupted => "killed: run interrupted".to_string(),
        };
        let text = format!(
            "scorer: program\ncommand: {}\nrun as: {}\nexit: {exit}\nduration: {elapsed:.2}s\n\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            self.spec.shown(),
            argv.join(" "),
        );
        for line in stdout.lines().chain(stderr.lines()) {
            log.line(format!("| {line}"));
        }
        let fail = |message: String| {
            Box::new(ProgramFailure {
                error: Error::env(&self.env.origin, message),
                log: Some(text.clone()),
            })
        };
        let shown = self.spec.shown();
        match ended {
            Ended::Interrupted => {
                return Err(Box::new(ProgramFailure { error: Error::Interrupted, log: Some(text.clone()) }))
            }
            Ended::TimedOut => {
                return Err(fail(format!(
                    "scoring program `{shown}` ran longer than [scoring.program] timeout_s = {} s and was killed",
                    self.spec.timeout_s
                )))
            }
            Ended::Exited(status) if !status.success() => {
                return Err(fail(format!(
                    "scoring program `{shown}` failed ({status}); the end of its stderr:\n{}",
                    tail(&stderr, TAIL_LINES)
                )))
            }
            Ended::Exited(_) => {}
        }
        let scores =
            read_scores(&output).map_err(|m| fail(format!("scoring program `{shown}`: {m}")))?;
        if !scores.contains_key(&self.spec.primary) {
            let keys: Vec<&str> = scores.keys().map(String::as_str).collect();
            return Err(fail(format!(
                "scoring program `{shown}` reported no \"{}\" ([scoring.program] primary); it reported: {}",
                self.spec.primary,
                keys.join(", ")
            )));
        }
        Ok(ProgramOutcome { scores, log: text })
    }

    /// `program/` (the environment's program folder), `input/ref` (reference.jsonl and the raw
    /// phase files), `input/res` (the submission's files) and an empty `output/`.
    fn lay_out(&self, program: &Path, input: &Path, output: &Path) -> Result<()> {
        for (name, bytes) in self.env.program_files()? {
            write_file(&program.join(&name), &bytes, true)?;
        }
        let reference = input.join("ref");
        std::fs::create_dir_all(&reference).map_err(|e| Error::io(&reference, e))?;
        let mut lines = String::new();
        for it in self.items {
            let mut line = json!({"id": it.id, "target": it.target, "targets": it.targets, "fields": it.fields});
            if !it.choices.is_empty() {
                line["choices"] = json!(it.choices);
                line["choice_labels"] = json!(it.choice_labels);
                line["target_index"] = json!(it.target_index);
            }
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        write_file(&reference.join("reference.jsonl"), lines.as_bytes(), false)?;
        for (name, bytes) in self.env.phase_data(self.phase)? {
            // reference.jsonl is benchgen's; a data file of that name keeps its contents apart.
            let name = if name == "reference.jsonl" { format!("data-{name}") } else { name };
            write_file(&reference.join(name), &bytes, false)?;
        }
        unpack_submission(self.submission, &input.join("res"))?;
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))
    }
}

fn write_file(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    // Archives and embedded files carry no permissions; a program may be run directly.
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

fn unpack_submission(zip_path: &Path, res: &Path) -> Result<()> {
    let file = std::fs::File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let unreadable = |e: zip::result::ZipError| Error::Submission {
        path: zip_path.to_path_buf(),
        source: ArchiveError::Zip(e),
    };
    let mut zip = zip::ZipArchive::new(file).map_err(unreadable)?;
    std::fs::create_dir_all(res).map_err(|e| Error::io(res, e))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(unreadable)?;
        let Some(rel) = entry.enclosed_name() else { continue };
        if entry.is_dir() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| Error::io(zip_path, e))?;
        write_file(&res.join(rel), &bytes, false)?;
    }
    Ok(())
}

enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Interrupted,
}

/// Runs `argv` in `cwd` (its own process group, no stdin, output to files so a chatty program
/// cannot block on a full pipe) and kills the whole group on timeout or Ctrl-C, and after it
/// exits, so nothing it started outlives it.
fn run_with_limit(
    argv: &[String],
    cwd: &Path,
    stdout: &Path,
    stderr: &Path,
    timeout_s: u64,
) -> Result<Ended> {
    let out = std::fs::File::create(stdout).map_err(|e| Error::io(stdout, e))?;
    let err = std::fs::File::create(stderr).map_err(|e| Error::io(stderr, e))?;
    let (program, args) = argv.split_first().ok_or(ProgramError::EmptyCommand)?;
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(out).stderr(err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .spawn()
        .map_err(|source| ProgramError::Start { program: program.clone(), source })?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ended::Exited(status),
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(Error::io(PathBuf::from(program), e));
            }
        }
        if crate::interrupt::requested() {
            break Ended::Interrupted;
        }
        if Instant::now() >= deadline {
            break Ended::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    kill_group(&mut child);
    Ok(ended)
}

fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads (made
        // with process_group(0)); it touches no memory of ours. ESRCH (group gone) is fine.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The end of a captured stream, as text.
fn read_tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_LOG_BYTES {
        use std::io::Seek;
        let _ = file.seek(std::io::SeekFrom::Start(len - MAX_LOG_BYTES));
    }
    let mut bytes = Vec::new();
    let _ = file.take(MAX_LOG_BYTES).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let shown = all[all.len().saturating_sub(lines)..].join("\n");
    if shown.is_empty() {
        "(stderr was empty)".into()
    } else {
        shown
    }
}

/// `output/scores.json`, else `output/scores.txt`; only regular files (a symlink could point
/// outside `output/`).
fn read_scores(output: &Path) -> std::result::Result<BTreeMap<String, f64>, ReadScoresError> {
    for (name, parse) in [
        (
            "scores.json",
            parse_scores_json
                as fn(&str, &str) -> std::result::Result<BTreeMap<String, f64>, ScoresError>,
        ),
        ("scores.txt", parse_scores_txt),
    ] {
        let path = output.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let shown = format!("output/{name}");
        if !meta.file_type().is_file() {
            return Err(ReadScoresError::NotAFile { file: shown });
        }
        if meta.len() > MAX_SCORES_BYTES {
            return Err(ReadScoresError::TooLarge { file: shown });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ReadScoresError::Read { file: shown.clone(), source })?;
        return Ok(parse(&shown, &text)?);
    }
    Err(ReadScoresError::NoScoresFile)
}

/// Why a scoring program's `output/` gives no scores; `file` is the name it is shown by.
#[derive(Debug, thiserror::Error)]
enum ReadScoresError {
    #[error("{file} is not a regular file")]
    NotAFile { file: String },
    #[error("{file} is larger than 16 MiB")]
    TooLarge { file: String },
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Scores(#[from] ScoresError),
    #[error(
        "it wrote neither output/scores.json nor output/scores.txt (its stdout and stderr are in {})",
        RunFile::ScoringLog.name()
    )]
    NoScoresFile,
}
