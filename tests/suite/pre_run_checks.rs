//! Mistakes are caught before a run folder exists, with messages that say the fix; `runs rm`
//! removes runs but not one still going; numeric flags are validated alike in every command.

use std::path::Path;

use crate::common::*;

/// The run folders under `runs/`.
fn runs(cwd: &Path) -> Vec<String> {
    match std::fs::read_dir(cwd.join("runs")) {
        Ok(entries) => {
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn typos_leave_no_failed_run_and_say_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for (args, says) in [
        (&["--model", "./no-such-model"][..], "no such file or folder"),
        (&["--model", "HuggingFaceTB/SmolLM2-135M"][..], "write hf:HuggingFaceTB/SmolLM2-135M"),
        (&["--limit", "0"][..], "--limit 0 leaves nothing to evaluate"),
    ] {
        let mut all = vec!["eval"];
        all.extend_from_slice(args);
        let out = benchgen(cwd, &all);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(runs(cwd), Vec::<String>::new(), "{args:?} left a run behind");
    }
    // generate says the same of a hub name written as a path.
    let out = benchgen(cwd, &["generate", "--model", "Org/Name", "--prompt", "x"]);
    assert!(stderr(&out).contains("write hf:Org/Name"), "{}", stderr(&out));
}

#[test]
fn a_runs_dir_that_is_a_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), "").unwrap();
    let out = benchgen(dir.path(), &["eval", "--limit", "1", "--runs-dir", "afile"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("runs directory afile: is not a folder; pass --runs-dir a folder"),
        "{err}"
    );
    assert!(err.matches("os error").count() <= 1, "{err}");
}

#[test]
fn a_library_errors_cause_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = benchgen(dir.path(), &["score", "--predictions", "missing.jsonl"]);
    let err = stderr(&out);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn batch_sizes_are_checked_alike_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [["eval", "--batch-size", "0"], ["generate", "--batch-size", "0"]] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--prompt", "x"][..if args[0] == "generate" { 2 } else { 0 }]);
        let out = benchgen(dir.path(), &all);
        assert!(!out.status.success(), "{all:?}");
        assert!(
            stderr(&out).contains("invalid value '0' for '--batch-size"),
            "{all:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn runs_rm_removes_runs_but_not_one_still_going() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let first = run_id(&ok(&benchgen(cwd, &["eval", "--limit", "2"])));
    let second = run_id(&ok(&benchgen(cwd, &["eval", "--limit", "2"])));
    // A process working on a run holds its lock; this test stands in for one.
    let lock = std::fs::File::open(cwd.join(format!("runs/{second}/.lock"))).unwrap();
    lock.try_lock().unwrap();
    let out = benchgen(cwd, &["runs", "rm", &first.to_string(), &second.to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("run {second} is still running")), "{}", stderr(&out));
    assert_eq!(runs(cwd), vec![second.to_string()]);
    drop(lock);
    ok(&benchgen(cwd, &["runs", "rm", &second.to_string()]));
    assert!(runs(cwd).is_empty());
    let out = benchgen(cwd, &["runs", "rm", "7"]);
    assert!(stderr(&out).contains("there is no run 7"), "{}", stderr(&out));
}
