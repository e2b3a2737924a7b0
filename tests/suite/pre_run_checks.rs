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
        (&["--limit", "0"][..], "invalid value '0' for '--limit <LIMIT>'"),
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
fn numeric_flags_are_refused_alike_in_every_command_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let count = "expected a whole number, 1 or more";
    let whole = "expected a whole number, 0 or more";
    let negative = "negative numbers mean nothing here";
    let cases: &[(&[&str], &str, &str, &[&str])] = &[
        (&["eval"], "--batch-size", "0", &[count, "0 leaves nothing to do"]),
        (&["eval"], "--batch-size", "-4", &[count, negative]),
        (&["eval"], "--limit", "0", &[count, "0 leaves nothing to do"]),
        (&["eval"], "--limit", "-1", &[count, negative]),
        (&["eval"], "--limit", "2.5", &[count]),
        (&["eval"], "--seed", "-1", &[whole, negative]),
        (&["eval"], "--resume", "x", &[whole]),
        (&["generate", "--prompt", "x"], "--batch-size", "0", &[count]),
        (&["generate", "--prompt", "x"], "--max-new-tokens", "0", &[count]),
        (&["generate", "--prompt", "x"], "--seed", "-1", &[whole, negative]),
        (&["generate", "--prompt", "x"], "--temperature", "-0.5", &["0 is greedy"]),
        (&["generate", "--prompt", "x"], "--temperature", "nan", &["0 is greedy"]),
        (&["score", "--predictions", "p.jsonl"], "--limit", "0", &[count]),
        (&["score", "--predictions", "p.jsonl"], "--limit", "-3", &[count, negative]),
    ];
    for (command, flag, value, says) in cases {
        let mut args = command.to_vec();
        args.extend([*flag, *value]);
        let out = benchgen(cwd, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(&format!("invalid value '{value}' for '{flag} ")), "{args:?}: {err}");
        for s in *says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    }
    // Run ids are read the same way wherever they are given.
    for args in
        [&["runs", "show", "-1"][..], &["runs", "rm", "-1"], &["verify", "-1"], &["merge", "-1"]]
    {
        let err = stderr(&benchgen(cwd, args));
        assert!(err.contains("invalid value '-1'") && err.contains(negative), "{args:?}: {err}");
    }
    assert_eq!(runs(cwd), Vec::<String>::new(), "a refused flag left a run behind");
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

#[test]
fn a_default_phase_that_needs_the_hub_names_the_phase_that_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // gsm8k's test items under $BENCHGEN_DATA_DIR, its train split (the few-shot examples) not.
    let data = cwd.join("data");
    std::fs::create_dir_all(data.join("benchmarks/gsm8k")).unwrap();
    std::fs::write(
        data.join("benchmarks/gsm8k/test.jsonl"),
        "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n{\"question\": \"2+2?\", \"answer\": \"#### 4\"}\n",
    )
    .unwrap();
    let eval = |vars: &[(&str, &str)], extra: &[&str]| {
        // A closed local port as the hub: nothing reaches the network.
        let mut cmd =
            crate::common::hub_server::benchgen_on_hub("http://127.0.0.1:9", &cwd.join("hf"));
        cmd.args(["eval", "--env", "gsm8k", "--limit", "2"]).args(extra).current_dir(cwd);
        cmd.env("BENCHGEN_DATA_DIR", &data);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        output_within(&mut cmd, std::time::Duration::from_secs(120))
    };
    for (vars, why) in [
        (
            &[("HF_HUB_OFFLINE", "1")][..],
            "offline (--offline or HF_HUB_OFFLINE) and revision main is not fully cached",
        ),
        (&[][..], "cannot reach the hub at http://127.0.0.1:9"),
    ] {
        let out = eval(vars, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{vars:?}");
        for says in [
            "phase \"test\" needs the hub: its few-shot examples (phase \"train\") come from hf://datasets/openai/gsm8k",
            "benchmarks/gsm8k/train.jsonl is not in $BENCHGEN_DATA_DIR",
            why,
            "Offline, use --phase test-zeroshot (data from $BENCHGEN_DATA_DIR)",
        ] {
            assert!(err.contains(says), "{vars:?}: {says:?} not in {err}");
        }
        assert_eq!(err.matches("gsm8k@main").count(), 1, "said once: {err}");
        assert!(err.find("Offline, use") < err.find("From the hub"), "the fix comes first: {err}");
        assert_eq!(runs(cwd), Vec::<String>::new(), "{vars:?} left a run behind");
    }
    // The phase it names runs, offline.
    ok(&eval(&[("HF_HUB_OFFLINE", "1")], &["--phase", "test-zeroshot"]));
}
