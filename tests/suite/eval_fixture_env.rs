//! `benchgen eval --env DIR|ZIP` on a second environment with awkward items.

use std::io::Write;
use std::path::Path;

use crate::common::*;
use serde_json::Value;

fn mixed_env() -> std::path::PathBuf {
    repo().join("fixtures/envs/mixed")
}

fn zip_dir(src: &Path, dest: &Path, prefix: &str) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dest).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for rel in ["environment.toml", "README.md", "data/dev.jsonl", "data/small.json"] {
        zip.start_file(format!("{prefix}{rel}"), opts).unwrap();
        zip.write_all(&std::fs::read(src.join(rel)).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn second_environment_ids_escaping_and_no_finetune() {
    let dir = tempfile::tempdir().unwrap();
    let env = mixed_env();
    let out =
        ok(&benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--batch-size", "5"]));
    assert!(out.contains("Environment: mixed-fixture v0.2.0 (phase dev)"), "{out}");
    let run = dir.path().join("runs/1");

    let items = read_jsonl(&env.join("data/dev.jsonl"));
    let detailed = read_json(&run.join("detailed_results.json"));
    let records = detailed["items"].as_array().unwrap();
    // No id field: ids are the 0-based line indices, in every file.
    let want: Vec<String> = (0..items.len()).map(|i| i.to_string()).collect();
    assert_eq!(records.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(), want);
    let mut journal_ids: Vec<String> = read_jsonl(&run.join("predictions.jsonl"))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    journal_ids.sort_by_key(|s| s.parse::<usize>().unwrap());
    assert_eq!(journal_ids, want);

    // Exact metric after strip+lowercase; the Overall Score is exact match here.
    let mut correct = 0;
    let mut exact = 0;
    for (r, it) in records.iter().zip(&items) {
        let pred = r["prediction"].as_str().unwrap();
        let target = it["answer"].as_str().unwrap();
        let is_correct = pred.trim().to_lowercase() == target.to_lowercase();
        assert_eq!(r["correct"].as_bool().unwrap(), is_correct, "{r}");
        assert_eq!(r["exact"].as_bool().unwrap(), pred.trim() == target, "{r}");
        correct += usize::from(is_correct);
        exact += usize::from(pred.trim() == target);
    }
    let b = read_json(&run.join("score_breakdown.json"));
    assert_eq!(b["correct"], correct);
    assert_eq!(b["exact"], exact);
    assert_eq!(b["primary"], "exact_match");
    assert_eq!(b["overall_score"], b["exact_match"]);

    // Item text with markup is never live in the HTML: it reaches the page's script as JSON
    // that no text can break out of, unchanged.
    let html = std::fs::read_to_string(run.join("detailed_results.html")).unwrap();
    assert!(!html.contains("<script>alert") && !html.contains("<b>bold"), "raw markup in HTML");
    let shown = page_data(&html).to_string();
    assert!(shown.contains("<script>alert('pwned')</script>"), "{shown}");
    assert!(shown.contains("<b>bold</b>") && shown.contains("x & y") && shown.contains("東京"));

    assert!(!run.join("finetune.jsonl").exists(), "no [finetune] section, no fine-tune set");
    let show = benchgen(dir.path(), &["runs", "show", "1", "--finetune"]);
    assert!(!show.status.success());
    assert!(stderr(&show).contains("no [finetune] section"), "{}", stderr(&show));
}

#[test]
fn zipped_environment_and_phase_selection() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("mixed.zip");
    // A zip of the folder itself (entries under "mixed/") is read as rooted there.
    zip_dir(&mixed_env(), &zip_path, "mixed/");
    let out = ok(&benchgen(
        dir.path(),
        &["eval", "--env", zip_path.to_str().unwrap(), "--phase", "small"],
    ));
    assert!(out.contains("(phase small)"), "{out}");
    let detailed = read_json(&dir.path().join("runs/1/detailed_results.json"));
    let records = detailed["items"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    // JSON numbers as targets are compared as their text.
    assert_eq!(records[0]["target"], "2");

    let bad =
        benchgen(dir.path(), &["eval", "--env", zip_path.to_str().unwrap(), "--phase", "nope"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("no phase \"nope\"; phases: dev, small"), "{}", stderr(&bad));
}

#[test]
fn chat_true_renders_prompts_through_the_models_template() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&mixed_env(), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let manifest = manifest.replace("chat = false", "chat = true\nsystem = \"Be brief.\"");
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    let model = dir.path().join("model");
    copy_dir(&repo().join("fixtures/embedded/model"), &model);
    std::fs::write(
        model.join("chat_template.jinja"),
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    )
    .unwrap();
    let args = [
        "eval",
        "--env",
        env.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--phase",
        "small",
    ];
    let out = ok(&benchgen(dir.path(), &args));
    assert!(out.contains("Applying the model's chat template"), "{out}");
    let preds = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    let prompts: Vec<&str> = preds.iter().map(|p| p["prompt"].as_str().unwrap()).collect();
    assert!(prompts.contains(&"<system>Be brief.</s><user>1+1=</s><assistant>"), "{prompts:?}");

    // chat = true with a model that has no template is refused, naming the model.
    let o = benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no chat template"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_fail_clearly_without_a_completed_run() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&mixed_env(), &env);
    let runs_dir = dir.path().join("runs");
    let eval = |extra: &[&str]| {
        let mut args =
            vec!["eval", "--env", env.to_str().unwrap(), "--runs-dir", runs_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        benchgen(dir.path(), &args)
    };
    let completed = || {
        std::fs::read_dir(&runs_dir)
            .map(|rd| {
                rd.filter(|e| {
                    let p = e.as_ref().unwrap().path().join("run.json");
                    p.is_file() && read_json(&p)["status"] == "Completed"
                })
                .count()
            })
            .unwrap_or(0)
    };

    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    std::fs::write(
        env.join("environment.toml"),
        manifest.replace("metric = \"exact\"", "metric = \"fuzzy\""),
    )
    .unwrap();
    let o = eval(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("environment.toml") && e.contains("fuzzy") && e.contains("numeric"), "{e}");

    std::fs::write(
        env.join("environment.toml"),
        manifest.replace("{{ question }}", "{{ questoin }}"),
    )
    .unwrap();
    let o = eval(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("undefined"), "{}", stderr(&o));
    // That failure happened inside a run: it is recorded as Failed, with the error.
    let failed: Vec<Value> = std::fs::read_dir(&runs_dir)
        .unwrap()
        .map(|e| read_json(&e.unwrap().path().join("run.json")))
        .collect();
    assert!(failed
        .iter()
        .all(|r| r["status"] == "Failed" && r["error"].as_str().unwrap().contains("undefined")));

    std::fs::write(env.join("environment.toml"), &manifest).unwrap();
    std::fs::write(
        env.join("data/dev.jsonl"),
        "{\"question\": \"1+1=\", \"answer\": \"2\"}\nnot json\n",
    )
    .unwrap();
    let o = eval(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("data/dev.jsonl: line 2: not valid JSON"), "{}", stderr(&o));

    std::fs::copy(mixed_env().join("data/dev.jsonl"), env.join("data/dev.jsonl")).unwrap();
    let o = eval(&["--model", dir.path().join("no-such-model").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-model"), "{}", stderr(&o));

    let o = benchgen(dir.path(), &["eval", "--env", dir.path().join("missing").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such file, directory or environment name"), "{}", stderr(&o));

    if !cfg!(feature = "cuda") {
        let o = eval(&["--device", "cuda:0"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    }

    assert_eq!(completed(), 0);
}
