//! `benchgen env list|show|validate` and `benchgen leaderboard`, run as a user would.

use crate::common::*;

fn benchgen_with_envs(
    cwd: &std::path::Path,
    envs: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    crate::common::benchgen_command()
        .args(args)
        .current_dir(cwd)
        .env("BENCHGEN_ENVS", envs)
        .output()
        .unwrap()
}

#[test]
fn environments_by_name_from_benchgen_envs_and_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let envs = dir.path().join("envs");
    copy_dir(&repo().join("fixtures/envs/mixed"), &envs.join("mine"));
    let list = ok(&benchgen_with_envs(dir.path(), &envs, &["env", "list"]));
    for name in ["arithmetic", "arc-easy", "arc-challenge", "mine"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{list}");
    }
    let out =
        ok(&benchgen_with_envs(dir.path(), &envs, &["eval", "--env", "mine", "--phase", "small"]));
    assert!(out.contains("Environment: mixed-fixture"), "{out}");
    let o = benchgen(dir.path(), &["eval", "--env", "nonesuch"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("known environments: arithmetic, arc-easy, arc-challenge"),
        "{}",
        stderr(&o)
    );

    let show = ok(&benchgen(dir.path(), &["env", "show", "arithmetic"]));
    assert!(show.contains("Overview") && show.contains("100 held-out problems"), "{show}");
    assert!(show.contains("test (default): data/test.jsonl — 100 items"), "{show}");
}

#[test]
fn validate_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&repo().join("fixtures/envs/mixed"), &env);
    let ok_out = ok(&benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]));
    assert!(
        ok_out.contains("phase dev: 12 items, 0 problem(s)") && ok_out.contains("OK"),
        "{ok_out}"
    );

    let data = "{\"question\": \"1+1=\", \"answer\": \"2\"}\nnot json\n{\"question\": \"2+2=\"}\n{\"answer\": \"4\"}\n";
    std::fs::write(env.join("data/dev.jsonl"), data).unwrap();
    let o = benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("phase dev: 2 items, 3 problem(s)"), "{out}");
    assert!(out.contains("dev.jsonl: line 2: not valid JSON"), "{out}");
    assert!(out.contains("dev.jsonl: line 3: missing target field \"answer\""), "{out}");
    // Line 4 has its target but no question: its prompt cannot render. Its id is its line index.
    assert!(out.contains("item 3: cannot render environment.toml [prompt] template"), "{out}");
    assert!(out.contains("the item has no field question"), "{out}");
    assert!(stderr(&o).contains("problem(s)"), "{}", stderr(&o));

    // Data that was read but of which no item parses still has its prompt template checked.
    std::fs::write(env.join("data/dev.jsonl"), "not json\n").unwrap();
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let broken = manifest.replace("template = \"{{ question }}\"", "template = \"{{ question \"");
    assert_ne!(broken, manifest);
    std::fs::write(env.join("environment.toml"), broken).unwrap();
    let out = stdout(&benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]));
    assert!(out.contains("phase dev: 0 items, 2 problem(s)"), "{out}");
    assert!(out.contains("dev.jsonl: line 1: not valid JSON"), "{out}");
    assert!(out.contains("[prompt] template"), "{out}");
}

/// A leaderboard row's columns counted from the right (a model's label may hold spaces):
/// overall score, run id.
fn score_and_run(row: &str) -> (String, String) {
    let cols: Vec<&str> = row.split_whitespace().collect();
    let n = cols.len();
    (cols[n - 7].to_string(), cols[n - 2].to_string())
}

#[test]
fn leaderboard_ranks_the_best_run_of_each_model() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    copy_dir(&repo().join("fixtures/models/llama-9heads-tied"), &other);
    ok(&benchgen(dir.path(), &["eval", "--limit", "10"]));
    ok(&benchgen(dir.path(), &["eval", "--limit", "50"]));
    ok(&benchgen(dir.path(), &["eval", "--limit", "30", "--model", other.to_str().unwrap()]));
    let score = |id: u32| {
        read_json(&dir.path().join(format!("runs/{id}/score_breakdown.json")))["overall_score"]
            .as_f64()
            .unwrap()
    };
    let best_embedded = if score(2) > score(1) { 2 } else { 1 };
    let out = ok(&benchgen(dir.path(), &["leaderboard", "arithmetic", "--include-partial"]));
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "one row per model:\n{out}");
    let mut expected = vec![(score(best_embedded), best_embedded), (score(3), 3)];
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (row, (s, id)) in rows.iter().zip(&expected) {
        assert_eq!(score_and_run(row), (format!("{s:.2}"), id.to_string()), "{row}");
        assert!(row.contains("(partial)"), "{row}");
    }
}

/// Rows are models, not spellings of them; runs over part of a phase are left out unless asked
/// for, and never stand for a model that has a full run; re-scored runs say so.
#[test]
fn the_leaderboard_is_keyed_by_the_model_and_shows_full_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let copy = cwd.join("copy");
    copy_dir(&repo().join("fixtures/embedded/model"), &copy);
    let copy = copy.to_str().unwrap();
    ok(&benchgen(cwd, &["eval", "--limit", "3"])); // 1: partial, scores high on 3 items
    ok(&benchgen(cwd, &["eval"])); // 2: the full run
    ok(&benchgen(cwd, &["eval", "--model", "embedded:arithmetic-llama"])); // 3: same model
    ok(&benchgen(cwd, &["eval", "--model", &format!("trained:{copy}")])); // 4: same files
    ok(&benchgen(cwd, &["score", "--submission", "runs/2/submission.zip"])); // 5: re-scored
    let out = ok(&benchgen(cwd, &["leaderboard", "arithmetic"]));
    let rows: Vec<&str> =
        out.lines().skip(1).filter(|l| !l.trim_start().starts_with('(')).collect();
    assert_eq!(rows.len(), 2, "the model once, the re-scored run once:\n{out}");
    assert!(out.contains(" ITEMS "), "{out}");
    let model_row = rows.iter().find(|r| !r.contains("re-scored")).unwrap();
    assert_eq!(score_and_run(model_row).1, "2", "the earliest full run: {out}");
    assert!(model_row.contains(" 100 "), "its item count: {model_row}");
    assert!(rows.iter().any(|r| r.contains("(re-scored)") && score_and_run(r).1 == "5"), "{out}");
    assert!(!out.contains("(partial)"), "{out}");
    // Asked for, partial runs show, labelled, but the model's row is still its full run.
    let out = ok(&benchgen(cwd, &["leaderboard", "arithmetic", "--include-partial"]));
    let model_row = out.lines().find(|l| l.contains("embedded")).unwrap();
    assert_eq!(score_and_run(model_row).1, "2", "{out}");
}
