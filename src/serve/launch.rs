//! Run Evaluation: starts `benchgen eval` as a child process of this executable.
//!
//! Why a process and not a thread calling `eval::run_eval`: a run started here must be the run
//! the command line makes, and several things in a run are per process. Its `run.json` records
//! the process's peak memory; Ctrl-C, the interruption flag and "the active run" are process-wide
//! (`crate::interrupt`), so two runs in one server would share them; and a model that panics or
//! runs out of memory would take the pages down with it. As a child, the run gets its Run ID, lock
//! and files from the same code as a concurrent CLI run, and the server learns the id at once from
//! the live log's `Run ID: N` line on the child's stdout; a child that ends before that line
//! (the checks `eval` makes before a run folder exists) hands its error message to the page.
//! Ctrl-C in the server's terminal reaches the children too (one process group), which then end
//! Interrupted and resumable, as `eval` does.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::error::LaunchError;
use crate::eval::RUN_ID_LINE;

/// How runs are started: the program and the flags of `serve` that `eval` takes too.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `benchgen` executable (the running one).
    pub program: PathBuf,
    pub models_file: Option<PathBuf>,
    pub offline: bool,
    pub allow_scoring_program: bool,
}

/// What the Evaluate tab asks for, checked against what it offered.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// An environment name (`--env NAME`).
    pub env: String,
    /// A model spec from the picker (`--model SPEC`).
    pub model: String,
    pub phase: String,
    pub limit: Option<usize>,
}

/// The most of the child's stderr kept for the message.
const STDERR_KEPT: usize = 4000;

enum Heard {
    RunId(u64),
    Exited(String),
}

impl Launcher {
    /// `benchgen eval` with `request`'s arguments, writing into `runs_dir`.
    fn command(&self, runs_dir: &Path, request: &EvalRequest) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("eval")
            .arg("--env")
            .arg(&request.env)
            .arg("--model")
            .arg(&request.model)
            .arg("--phase")
            .arg(&request.phase)
            .arg("--runs-dir")
            .arg(runs_dir);
        if let Some(limit) = request.limit {
            cmd.arg("--limit").arg(limit.to_string());
        }
        if let Some(file) = &self.models_file {
            cmd.arg("--models-file").arg(file);
        }
        if self.offline {
            cmd.arg("--offline");
        }
        if self.allow_scoring_program {
            cmd.arg("--allow-scoring-program");
        }
        cmd
    }

    /// Starts the run and returns its Run ID as soon as the run exists. Blocks until then.
    pub fn start(&self, runs_dir: &Path, request: &EvalRequest) -> Result<u64, LaunchError> {
        let mut child = self
            .command(runs_dir, request)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            // Read to the end: a child whose stdout pipe fills would stop. The run's log.txt
            // has every line, so they are not kept here.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(id) = line.strip_prefix(RUN_ID_LINE).and_then(|i| i.parse().ok()) {
                        let _ = tx.send(Heard::RunId(id));
                    }
                }
            });
        }
        let mut stderr = child.stderr.take();
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_string(&mut text);
            }
            // Waiting also reaps the child, whichever way it ends.
            let status = child.wait();
            let mut message = text.trim().to_string();
            if message.is_empty() {
                message = match status {
                    Ok(s) => format!("benchgen eval ended ({s}) before it made a run"),
                    Err(e) => format!("benchgen eval: {e}"),
                };
            }
            if message.len() > STDERR_KEPT {
                let mut cut = message.len() - STDERR_KEPT;
                while !message.is_char_boundary(cut) {
                    cut += 1;
                }
                message = format!("…{}", &message[cut..]);
            }
            let _ = tx.send(Heard::Exited(message));
        });
        match rx.recv() {
            Ok(Heard::RunId(id)) => Ok(id),
            Ok(Heard::Exited(message)) => Err(LaunchError::Refused { message }),
            Err(_) => Err(LaunchError::Refused { message: "benchgen eval said nothing".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_eval_with_the_requests_flags() {
        let launcher = Launcher {
            program: "/bin/benchgen".into(),
            models_file: Some("m.toml".into()),
            offline: true,
            allow_scoring_program: false,
        };
        let request = EvalRequest {
            env: "arithmetic".into(),
            model: "embedded".into(),
            phase: "test".into(),
            limit: Some(5),
        };
        let cmd = launcher.command(Path::new("/r"), &request);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "eval",
                "--env",
                "arithmetic",
                "--model",
                "embedded",
                "--phase",
                "test",
                "--runs-dir",
                "/r",
                "--limit",
                "5",
                "--models-file",
                "m.toml",
                "--offline"
            ]
        );
    }
}
