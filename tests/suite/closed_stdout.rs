//! A reader that stops early (`benchgen runs list | head -1`) ends a printing command quietly:
//! no panic, no error, exit status 0.

use std::process::Stdio;

use crate::common::*;

/// Runs `args` in `cwd` with stdout a pipe whose reader is gone before anything is written.
fn with_stdout_closed(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut child = benchgen_command()
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("benchgen starts");
    drop(child.stdout.take());
    child.wait_with_output().expect("benchgen ends")
}

#[test]
fn printing_commands_end_quietly_when_the_reader_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let id = run_id(&ok(&benchgen(cwd, &["eval", "--limit", "3"]))).to_string();
    for args in [
        &["runs", "list"][..],
        &["runs", "show", &id],
        &["leaderboard", "arithmetic", "--include-partial"],
        &["models", "list"],
        &["env", "list"],
        &["env", "show", "arithmetic"],
        &["tokenize", "--text", "1+1="],
        &["generate", "--prompt", "1+1=", "--max-new-tokens", "2"],
        &["score", "--predictions", "runs/1/predictions.jsonl", "--limit", "3"],
    ] {
        let out = with_stdout_closed(cwd, args);
        let err = stderr(&out);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}
