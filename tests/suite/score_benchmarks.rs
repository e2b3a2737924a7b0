//! The triviaqa, math500 and truthfulqa-mc1 manifests through `benchgen score`: each shipped
//! manifest is run on a small hand-written file in the real data's format (reference answers
//! must score 100%; perturbed ones what is computed by hand below), and, when
//! `BENCHGEN_DATA_DIR` is set, on the real files.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{json, Value};

/// A copy of a shipped environment whose phase reads `fixture` instead of the shared data.
fn env_with_fixture(root: &Path, name: &str, fixture: &str) -> PathBuf {
    let env = root.join(name);
    std::fs::create_dir_all(env.join("data")).unwrap();
    let manifest =
        std::fs::read_to_string(repo().join("environments").join(name).join("environment.toml"))
            .unwrap();
    let ext = Path::new(fixture).extension().unwrap().to_str().unwrap();
    let (i, _) = manifest.match_indices("dataset = ").next().expect("a dataset line");
    let end = i + manifest[i..].find('\n').unwrap();
    let manifest = format!("{}data = \"data/items.{ext}\"{}", &manifest[..i], &manifest[end..]);
    // A hub `source` fallback goes too, with the table rewriting its rows: `data` stands alone.
    let mut in_source_fields = false;
    let manifest: String = manifest
        .lines()
        .filter(|l| {
            in_source_fields =
                (in_source_fields && !l.is_empty()) || *l == "[phases.source_fields]";
            !l.starts_with("source = ") && !in_source_fields
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    std::fs::copy(repo().join("environments").join(name).join("README.md"), env.join("README.md"))
        .unwrap();
    std::fs::copy(
        repo().join("fixtures/scoring").join(fixture),
        env.join("data").join(format!("items.{ext}")),
    )
    .unwrap();
    env
}

fn score(dir: &Path, env: &Path, preds: &[Value]) -> Value {
    let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("preds.jsonl"), text).unwrap();
    let out = ok(&benchgen(
        dir,
        &["score", "--env", env.to_str().unwrap(), "--predictions", "preds.jsonl", "--json"],
    ));
    serde_json::from_str(&out).unwrap()
}

/// The detailed results of the newest run.
fn last_details(dir: &Path) -> Vec<Value> {
    let run = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max_by_key(|p| p.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap());
    read_json(&run.unwrap().join("detailed_results.json"))["items"].as_array().unwrap().clone()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[test]
fn triviaqa_any_alias_counts_and_f1_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_fixture(dir.path(), "triviaqa", "triviaqa.jsonl");
    let items = read_jsonl(&repo().join("fixtures/scoring/triviaqa.jsonl"));
    let n = items.len() as f64;
    let reference: Vec<Value> = items
        .iter()
        .map(|i| json!({"id": i["id"], "prediction": i["golden_answers"][0]}))
        .collect();
    let b = score(dir.path(), &env, &reference);
    assert_eq!((b["accuracy"].as_f64(), b["exact_match"].as_f64()), (Some(100.0), Some(100.0)));
    assert!(close(&b["metrics"]["f1"], 100.0), "{b}");
    assert_eq!(b["primary"], "accuracy");

    let mut p = reference.clone();
    p[0]["prediction"] = json!(" samuel clemens."); // another alias, other case: right, not exact
    p[1]["prediction"] = json!("London"); // wrong: F1 0
    p[2]["prediction"] = json!("Cotswold"); // vs "Cotswold Hills": p 1, r 1/2, F1 2/3
    p[3]["prediction"] = json!("The planet Mars"); // third alias, verbatim: right and exact
    p.remove(4); // missing: unanswered
    let b = score(dir.path(), &env, &p);
    assert_eq!(b["correct"], 3, "{b}");
    assert_eq!(b["exact"], 2, "{b}");
    assert_eq!(b["answered"], 5);
    assert!(close(&b["accuracy"], 100.0 * 3.0 / n));
    assert!(
        close(&b["metrics"]["f1"], 100.0 * (1.0 + 0.0 + 2.0 / 3.0 + 1.0 + 0.0 + 1.0) / n),
        "{b}"
    );
    let details = last_details(dir.path());
    let missing = details.iter().find(|d| d["id"] == "tq_5").unwrap();
    assert_eq!(
        (missing["answered"].clone(), missing["extracted"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(details[0]["target"], "Mark Twain", "reports show the first reference");
    let run = dir.path().join("runs/2/scoring_output/scores.json");
    assert!(close(&read_json(&run)["f1"], 100.0 * (3.0 + 2.0 / 3.0) / n));
}

#[test]
fn math500_boxed_answers_after_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_fixture(dir.path(), "math500", "math500.jsonl");
    let items = read_jsonl(&repo().join("fixtures/scoring/math500.jsonl"));
    // The worked solutions spell answers differently from `answer` (\dfrac, ^\circ, \text{ inches},
    // 1,\!000, \left…\right); all must count.
    let reference: Vec<Value> =
        items.iter().map(|i| json!({"id": i["unique_id"], "prediction": i["solution"]})).collect();
    let b = score(dir.path(), &env, &reference);
    assert_eq!(b["accuracy"].as_f64(), Some(100.0), "{b}");
    assert_eq!(b["answer_rate"].as_f64(), Some(100.0));

    let mut p = reference.clone();
    p[0]["prediction"] = json!("<think>maybe \\boxed{2}</think>So \\boxed{\\tfrac{3}{2}}."); // right
    p[1]["prediction"] = json!("The point is (3, pi/2)."); // no box: unanswered
    p[2]["prediction"] = json!("\\boxed{45^\\circ}"); // wrong
    p[3]["prediction"] = json!("<think>It is \\boxed{10}, I think"); // unfinished thought: unanswered
    let b = score(dir.path(), &env, &p);
    assert_eq!((b["correct"].clone(), b["answered"].clone()), (json!(3), json!(4)), "{b}");
    let details = last_details(dir.path());
    assert_eq!(details[0]["extracted"], "\\frac{3}{2}");
    assert_eq!(details[1]["extracted"], Value::Null);
    assert_eq!(details[3]["extracted"], Value::Null);
}

#[test]
fn truthfulqa_mc1_options_and_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_fixture(dir.path(), "truthfulqa-mc1", "truthfulqa.csv");
    // Options per row, counted by hand from the CSV: best + incorrect ones (a trailing ';'
    // leaves no empty option).
    let options = [4, 3, 3];
    let logprobs = |best: bool, n: usize| -> Value {
        json!((0..n)
            .map(|i| if (i == 0) == best { -1.0 } else { -5.0 - i as f64 })
            .collect::<Vec<f64>>())
    };
    let reference: Vec<Value> = options
        .iter()
        .enumerate()
        .map(|(i, &n)| json!({"id": i.to_string(), "prediction": "", "choice_logprobs": logprobs(true, n)}))
        .collect();
    let b = score(dir.path(), &env, &reference);
    assert_eq!(b["accuracy"].as_f64(), Some(100.0), "{b}");
    let details = last_details(dir.path());
    assert_eq!(details[2]["target"], "No, wet hair does not cause or cure colds");

    let mut p = reference.clone();
    p[1]["choice_logprobs"] = logprobs(false, 3);
    let b = score(dir.path(), &env, &p);
    assert_eq!(b["correct"], 2);
    // A wrong number of options is refused: the CSV gives row 0 four.
    p[0]["choice_logprobs"] = logprobs(true, 3);
    std::fs::write(
        dir.path().join("preds.jsonl"),
        p.iter().map(|p| format!("{p}\n")).collect::<String>(),
    )
    .unwrap();
    let o = benchgen(
        dir.path(),
        &["score", "--env", env.to_str().unwrap(), "--predictions", "preds.jsonl"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("3 log-likelihoods for 4 choices"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn truthfulqa_prompt_is_the_six_shot_preamble() {
    let manifest =
        std::fs::read_to_string(repo().join("environments/truthfulqa-mc1/environment.toml"))
            .unwrap();
    let doc: toml::Value = toml::from_str(&manifest).unwrap();
    let template = doc["prompt"]["template"].as_str().unwrap();
    assert_eq!(template.matches("\n\nQ: ").count(), 6);
    assert!(template.starts_with("Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is 78 years.\n\n"));
    assert!(template.contains("Q: What is the square root of banana?\nA: I have no comment.\n\n"));
    assert!(template.ends_with("Barcelona, Spain.\n\nQ: {{ Question }}\nA:"));
}

#[test]
fn real_files_have_their_item_counts_and_references_score_fully() {
    let Some(data) = std::env::var_os("BENCHGEN_DATA_DIR") else {
        eprintln!("SKIPPED: BENCHGEN_DATA_DIR not set; the truthfulqa-mc1, triviaqa, math500 and mmlu-gen tests need ../shared/data");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, line) in [
        ("truthfulqa-mc1", "phase validation: 817 items, 0 problem(s)"),
        ("triviaqa", "phase test: 1000 items, 0 problem(s)"),
        ("math500", "phase test: 500 items, 0 problem(s)"),
        ("mmlu-gen", "phase test: 14042 items, 0 problem(s)"),
        ("mmlu-gen", "phase val: 1531 items, 0 problem(s)"),
        ("mmlu-gen", "phase dev: 285 items, 0 problem(s)"),
        ("arc-easy-gen", "phase test: 2376 items, 0 problem(s)"),
        ("arc-challenge-gen", "phase test: 1170 items, 0 problem(s)"),
    ] {
        let out = ok(&benchgen(dir.path(), &["env", "validate", name]));
        assert!(out.contains(line), "{name}: {out}");
    }
    let bench = Path::new(&data).join("benchmarks");
    let trivia = read_jsonl(&bench.join("triviaqa/test_subsample_1000.jsonl"));
    let last: Vec<Value> = trivia
        .iter()
        .map(|i| json!({"id": i["id"], "prediction": i["golden_answers"].as_array().unwrap().last().unwrap()}))
        .collect();
    let b = score_named(dir.path(), "triviaqa", &last);
    assert_eq!((b["accuracy"].as_f64(), b["total"].as_u64()), (Some(100.0), Some(1000)), "{b}");
    let math = read_jsonl(&bench.join("math500/test.jsonl"));
    let boxed: Vec<Value> = math
        .iter()
        .map(|i| json!({"id": i["unique_id"], "prediction": format!("So the answer is $\\boxed{{{}}}$.", i["answer"].as_str().unwrap())}))
        .collect();
    let b = score_named(dir.path(), "math500", &boxed);
    assert_eq!((b["accuracy"].as_f64(), b["total"].as_u64()), (Some(100.0), Some(500)), "{b}");
    // The worked solutions box the answer in their own spelling; all 500 must still agree.
    let solutions: Vec<Value> =
        math.iter().map(|i| json!({"id": i["unique_id"], "prediction": i["solution"]})).collect();
    let b = score_named(dir.path(), "math500", &solutions);
    assert_eq!(b["correct"], 500, "{b}");
    // mmlu-gen: every test item answered with its reference letter, as a model would write it.
    let mut letters = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(bench.join("mmlu/test")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let stem = f.file_stem().unwrap().to_str().unwrap().to_string();
        let mut rows = csv::ReaderBuilder::new().has_headers(false).from_path(&f).unwrap();
        for (i, r) in rows.records().enumerate() {
            letters.push(json!({"id": format!("{stem}/{i}"), "prediction": format!("The answer is ({}).", &r.unwrap()[5])}));
        }
    }
    let b = score_named(dir.path(), "mmlu-gen", &letters);
    assert_eq!((b["accuracy"].as_f64(), b["total"].as_u64()), (Some(100.0), Some(14042)), "{b}");
    // arc-*-gen: the letter of the reference option's position, numeric-labelled items included.
    for (name, file, total) in [
        ("arc-easy-gen", "ARC-Easy-Test.jsonl", 2376),
        ("arc-challenge-gen", "ARC-Challenge-Test.jsonl", 1170),
    ] {
        let items = read_jsonl(&bench.join("arc").join(file));
        let preds: Vec<Value> = items
            .iter()
            .filter(|i| i["question"]["choices"].as_array().unwrap().iter().any(|c| c["label"] == i["answerKey"]))
            .map(|i| {
                let pos = i["question"]["choices"].as_array().unwrap().iter().position(|c| c["label"] == i["answerKey"]).unwrap();
                json!({"id": i["id"], "prediction": format!("Answer: {}", char::from(b'A' + pos as u8))})
            })
            .collect();
        let b = score_named(dir.path(), name, &preds);
        assert_eq!(
            (b["accuracy"].as_f64(), b["total"].as_u64()),
            (Some(100.0), Some(total)),
            "{name}: {b}"
        );
    }
}

/// `benchgen ARGS` in `dir`, with `dir/data` as the data folder.
fn with_data(dir: &Path, args: &[&str]) -> std::process::Output {
    crate::common::benchgen_command()
        .args(args)
        .current_dir(dir)
        .env("BENCHGEN_DATA_DIR", dir.join("data"))
        .output()
        .unwrap()
}

fn score_named(dir: &Path, name: &str, preds: &[Value]) -> Value {
    let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("preds.jsonl"), text).unwrap();
    serde_json::from_str(&ok(&benchgen(
        dir,
        &["score", "--env", name, "--predictions", "preds.jsonl", "--json"],
    )))
    .unwrap()
}

#[test]
fn choice_metric_reads_letters_in_free_text() {
    let dir = tempfile::tempdir().unwrap();
    let env = repo().join("fixtures/envs/choice-gen");
    let items = read_jsonl(&env.join("data/test.jsonl"));
    // The letter of each target, whether given as a letter or as a 0-based index.
    let letter = |t: &Value| match t {
        Value::Number(n) => char::from(b'A' + n.as_u64().unwrap() as u8).to_string(),
        Value::String(s) if s.parse::<u8>().is_ok() => {
            char::from(b'A' + s.parse::<u8>().unwrap()).to_string()
        }
        Value::String(s) => s.clone(),
        _ => panic!("{t}"),
    };
    let reference: Vec<Value> =
        items.iter().map(|i| json!({"id": i["id"], "prediction": format!("The answer is ({}).", letter(&i["answer"]))})).collect();
    let b = score(dir.path(), &env, &reference);
    assert_eq!(b["accuracy"].as_f64(), Some(100.0), "{b}");

    let preds = [
        "**B**",                                    // q1 B: right
        "A whale is a mammal, so the answer is B.", // q2 A: the article is not a label; B is wrong
        "<think>Maybe (A)?</think>\nC. Jupiter",    // q3 C: right, the thought is ignored
        "Answer: D",                                // q4 index 3 = D: right
        "<think>It is (C) but let me check",        // q5: unfinished thought, unanswered
        "A",                                        // q6 A: right
    ];
    let p: Vec<Value> =
        items.iter().zip(preds).map(|(i, p)| json!({"id": i["id"], "prediction": p})).collect();
    let b = score(dir.path(), &env, &p);
    assert_eq!((b["correct"].clone(), b["answered"].clone()), (json!(4), json!(5)), "{b}");
    let details = last_details(dir.path());
    let extracted: Vec<Value> = details.iter().map(|d| d["extracted"].clone()).collect();
    assert_eq!(
        extracted,
        [json!("B"), json!("B"), json!("C"), json!("D"), Value::Null, json!("A")]
    );
}

#[test]
fn mistakes_in_the_new_options_name_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_fixture(dir.path(), "triviaqa", "triviaqa.jsonl");
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    for (extra, message) in [
        ("extract = [{ regex = \"(a)\", group = 2 }]", "has no group 2; it has 1 group(s)"),
        ("extract = [{ regex = \"(a)\", grp = 1 }]", "unknown field `grp`"),
        ("metric2 = \"f1\"", "metric2"),
    ] {
        std::fs::write(
            env.join("environment.toml"),
            manifest.replace("report = [\"f1\"]", &format!("report = [\"f1\"]\n{extra}")),
        )
        .unwrap();
        let o = benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]);
        assert!(!o.status.success(), "{extra}");
        let err = stderr(&o) + &stdout(&o);
        assert!(err.contains("environment.toml") && err.contains(message), "{extra}: {err}");
    }
    let split = manifest.replace(
        "target = \"golden_answers\"",
        "target = \"golden_answers\"\nchoices_split = \";\"",
    );
    std::fs::write(env.join("environment.toml"), split).unwrap();
    let o = benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]);
    let err = stderr(&o) + &stdout(&o);
    assert!(
        !o.status.success() && err.contains("choices_split needs choices to be a list of fields"),
        "{err}"
    );

    let list = ok(&benchgen(dir.path(), &["env", "list"]));
    for name in ["truthfulqa-mc1", "triviaqa", "math500"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{list}");
    }
}

#[test]
fn mmlu_gen_prompts_like_mmlu_and_reads_letters_from_free_text() {
    // A data folder laid out like shared/data, with two hand-written subjects.
    let dir = tempfile::tempdir().unwrap();
    let subjects = dir.path().join("data/benchmarks/mmlu/test");
    std::fs::create_dir_all(&subjects).unwrap();
    std::fs::write(
        subjects.join("astronomy_test.csv"),
        "Which planet is largest?,Mars,Jupiter,Venus,Earth,B\n\"What orbits the Earth, mostly?\",The Sun,Mars,The Moon,Pluto,C\n",
    )
    .unwrap();
    std::fs::write(
        subjects.join("high_school_physics_test.csv"),
        "What is the unit of force?,newton,joule,watt,pascal,A\n",
    )
    .unwrap();
    for split in ["val", "dev"] {
        let folder = dir.path().join("data/benchmarks/mmlu").join(split);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("astronomy_{split}.csv")),
            "Is the Sun a star?,yes,no,both,neither,A\n",
        )
        .unwrap();
    }
    let run = |args: &[&str]| with_data(dir.path(), args);
    let out = ok(&run(&["env", "validate", "mmlu-gen"]));
    assert!(out.contains("phase test: 3 items, 0 problem(s)"), "{out}");

    ok(&run(&["eval", "--env", "mmlu-gen"]));
    // The journal is in completion order; item order is the id order here.
    let mut preds = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    preds.sort_by_key(|p| p["id"].as_str().unwrap().to_string());
    let ids: Vec<&str> = preds.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["astronomy_test/0", "astronomy_test/1", "high_school_physics_test/0"]);
    assert_eq!(
        preds[1]["prompt"],
        "The following are multiple choice questions (with answers) about astronomy.\n\n\
         What orbits the Earth, mostly?\nA. The Sun\nB. Mars\nC. The Moon\nD. Pluto\nAnswer:"
    );
    assert_eq!(
        preds[2]["prompt"].as_str().unwrap().lines().next().unwrap(),
        "The following are multiple choice questions (with answers) about high school physics."
    );

    let answers = [
        ("astronomy_test/0", "**B**"),                                // right
        ("astronomy_test/1", "A moon orbits it: the answer is (C)."), // right; the article is no answer
        ("high_school_physics_test/0", "<think>joule? no</think> B"), // wrong letter
    ];
    let text: String =
        answers.iter().map(|(id, p)| format!("{}\n", json!({"id": id, "prediction": p}))).collect();
    std::fs::write(dir.path().join("preds.jsonl"), text).unwrap();
    let b: Value = serde_json::from_str(&ok(&run(&[
        "score",
        "--env",
        "mmlu-gen",
        "--predictions",
        "preds.jsonl",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        (b["correct"].clone(), b["answered"].clone(), b["total"].clone()),
        (json!(2), json!(3), json!(3)),
        "{b}"
    );
}

#[test]
fn arc_gen_letters_options_by_position_and_scores_by_position() {
    // Items in the official ARC JSONL format: letter labels, numeric labels ("1".."4", which
    // some real items use) and five options.
    let dir = tempfile::tempdir().unwrap();
    let arc = dir.path().join("data/benchmarks/arc");
    std::fs::create_dir_all(&arc).unwrap();
    let item = |id: &str, stem: &str, opts: &[(&str, &str)], key: &str| {
        let choices: Vec<Value> =
            opts.iter().map(|(l, t)| json!({"text": t, "label": l})).collect();
        format!(
            "{}\n",
            json!({"id": id, "question": {"stem": stem, "choices": choices}, "answerKey": key})
        )
    };
    let text = item(
        "q1",
        "Which is a mammal?",
        &[("A", "trout"), ("B", "whale"), ("C", "frog"), ("D", "crab")],
        "B",
    ) + &item(
        "q2",
        "All living and nonliving material is composed of",
        &[("1", "air"), ("2", "elements"), ("3", "water"), ("4", "soil")],
        "2",
    ) + &item(
        "q3",
        "Which is largest?",
        &[("A", "ant"), ("B", "cat"), ("C", "dog"), ("D", "horse"), ("E", "whale")],
        "E",
    );
    std::fs::write(arc.join("ARC-Easy-Test.jsonl"), text).unwrap();
    let run = |args: &[&str]| with_data(dir.path(), args);
    let out = ok(&run(&["env", "validate", "arc-easy-gen"]));
    assert!(out.contains("phase test: 3 items, 0 problem(s)"), "{out}");
    ok(&run(&["eval", "--env", "arc-easy-gen"]));
    let preds = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    let q2 = preds.iter().find(|p| p["id"] == "q2").unwrap();
    assert_eq!(q2["prompt"], "Question: All living and nonliving material is composed of\nA. air\nB. elements\nC. water\nD. soil\nAnswer:");
    let q3 = preds.iter().find(|p| p["id"] == "q3").unwrap();
    assert!(q3["prompt"].as_str().unwrap().contains("\nE. whale\nAnswer:"), "{}", q3["prompt"]);

    let answers = [
        ("q1", "**B**"),              // right
        ("q2", "The answer is (B)."), // right: "elements" is the second option, label "2"
        ("q3", "D. horse"),           // wrong: E
    ];
    let text: String =
        answers.iter().map(|(id, p)| format!("{}\n", json!({"id": id, "prediction": p}))).collect();
    std::fs::write(dir.path().join("preds.jsonl"), text).unwrap();
    let b: Value = serde_json::from_str(&ok(&run(&[
        "score",
        "--env",
        "arc-easy-gen",
        "--predictions",
        "preds.jsonl",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        (b["correct"].clone(), b["answered"].clone(), b["total"].clone()),
        (json!(2), json!(3), json!(3)),
        "{b}"
    );
    // Detailed results show the reference as the prompt lettered it.
    let targets: Vec<(String, String)> = last_details(dir.path())
        .iter()
        .map(|d| (d["id"].as_str().unwrap().into(), d["target"].as_str().unwrap().into()))
        .collect();
    assert!(
        targets.contains(&("q2".into(), "B".into()))
            && targets.contains(&("q3".into(), "E".into())),
        "{targets:?}"
    );
    // The label itself is not a letter: "2" is no answer.
    std::fs::write(
        dir.path().join("preds.jsonl"),
        format!("{}\n", json!({"id": "q2", "prediction": "2"})),
    )
    .unwrap();
    let b: Value = serde_json::from_str(&ok(&run(&[
        "score",
        "--env",
        "arc-easy-gen",
        "--predictions",
        "preds.jsonl",
        "--json",
    ])))
    .unwrap();
    assert_eq!(b["correct"], 0, "{b}");
}
