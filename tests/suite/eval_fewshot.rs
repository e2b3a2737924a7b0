//! `benchgen eval` with `[fewshot]`: the prompts recorded in predictions.jsonl hold exactly the
//! expected solved examples, in order, for the first_n, random and lm_eval samplers (lm_eval's
//! as Python's lm-eval draws them), without an item ever being its own example, unchanged by
//! `--limit`, as chat turns with a chat template; and the few-shot data is part of the run's
//! content hash.

use crate::common::openai_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

fn fixture() -> PathBuf {
    repo().join("fixtures/envs/fewshot")
}

/// A writable copy of the fixture environment with `from` replaced by `to` in its manifest.
fn variant(root: &Path, from: &str, to: &str) -> PathBuf {
    let env = root.join("env");
    copy_dir(&fixture(), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    assert!(manifest.contains(from), "{from}");
    std::fs::write(env.join("environment.toml"), manifest.replacen(from, to, 1)).unwrap();
    env
}

/// lm-eval's plain few-shot prompt, built by hand: "Question: q\nAnswer:" + " " + solution
/// per example, each followed by "\n\n", then the item's question.
fn expected_prompt(examples: &[&Value], item: &Value) -> String {
    let mut s = String::new();
    for ex in examples {
        s += &format!(
            "Question: {}\nAnswer: {}\n\n",
            ex["question"].as_str().unwrap(),
            ex["answer"].as_str().unwrap()
        );
    }
    s + &format!("Question: {}\nAnswer:", item["question"].as_str().unwrap())
}

/// Prompts of a run by item id.
fn prompts(run: &Path) -> BTreeMap<String, String> {
    read_jsonl(&run.join("predictions.jsonl"))
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["prompt"].as_str().unwrap().to_string()))
        .collect()
}

fn eval(dir: &Path, env: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec!["eval", "--env", env.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&benchgen(dir, &args));
    let n = std::fs::read_dir(dir.join("runs")).unwrap().count();
    dir.join("runs").join(n.to_string())
}

#[test]
fn first_n_examples_precede_every_item_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let env = fixture();
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let test = read_jsonl(&env.join("data/test.jsonl"));
    let run = eval(dir.path(), &env, &[]);
    let got = prompts(&run);
    assert_eq!(got.len(), test.len());
    for (i, item) in test.iter().enumerate() {
        assert_eq!(got[&i.to_string()], expected_prompt(&[&train[0], &train[1]], item), "item {i}");
    }
    // Both scoring chains are reported, per item and in total.
    let b = read_json(&run.join("score_breakdown.json"));
    assert!(b["variants"]["flexible-extract"].is_number(), "{b}");
    let detailed = read_json(&run.join("detailed_results.json"));
    for d in detailed["items"].as_array().unwrap() {
        assert_eq!(d["variants"][0]["name"], "flexible-extract", "{d}");
        assert!(d["variants"][0]["correct"].is_boolean(), "{d}");
    }
    let html = std::fs::read_to_string(run.join("detailed_results.html")).unwrap();
    let shown = page_data(&html);
    let verdicts = shown["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|it| it["variants"][0]["name"] == "flexible-extract");
    assert_eq!(verdicts.count(), 3, "one verdict per item");
    assert_eq!(shown["variants"][0], "flexible-extract", "the page filters by variant");
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    let line =
        format!("flexible-extract={:.2}%", b["variants"]["flexible-extract"].as_f64().unwrap());
    assert!(
        log.lines().any(|l| l.contains("accuracy=") && l.contains(&line)),
        "{line} not in:\n{log}"
    );
    assert!(log.contains("Few-shot: 2 example(s) per item from phase \"train\""), "{log}");

    // The zero-shot phase: the bare question.
    let run = eval(dir.path(), &env, &["--phase", "test-zeroshot"]);
    let got = prompts(&run);
    for (i, item) in test.iter().enumerate() {
        assert_eq!(got[&i.to_string()], expected_prompt(&[], item), "item {i}");
    }
}

#[test]
fn items_of_the_fewshot_phase_never_see_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let env = fixture();
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let got = prompts(&eval(dir.path(), &env, &["--phase", "train"]));
    // first_n over the train phase: the first two items other than the item itself.
    let want: [(usize, [usize; 2]); 4] = [(0, [1, 2]), (1, [0, 2]), (2, [0, 1]), (3, [0, 1])];
    for (i, [a, b]) in want {
        assert_eq!(
            got[&i.to_string()],
            expected_prompt(&[&train[a], &train[b]], &train[i]),
            "item {i}"
        );
    }
}

#[test]
fn random_examples_are_seeded_per_item_and_unchanged_by_limit() {
    let dir = tempfile::tempdir().unwrap();
    let env = variant(dir.path(), "sampler = \"first_n\"", "sampler = \"random\"");
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let test = read_jsonl(&env.join("data/test.jsonl"));
    let full = prompts(&eval(dir.path(), &env, &[]));
    let limited = prompts(&eval(dir.path(), &env, &["--limit", "1"]));
    assert_eq!(limited.len(), 1);
    assert_eq!(limited["0"], full["0"], "--limit changed item 0's examples");
    let again = prompts(&eval(dir.path(), &env, &[]));
    assert_eq!(again, full, "a second run drew other examples");
    // Every prompt is two distinct train examples and the item, as lm-eval joins them.
    let mut draws = Vec::new();
    for (i, item) in test.iter().enumerate() {
        let p = &full[&i.to_string()];
        let picked: Vec<usize> = (0..train.len())
            .filter(|&t| p.contains(train[t]["question"].as_str().unwrap()))
            .collect();
        assert_eq!(picked.len(), 2, "{p}");
        let (a, b) = (picked[0], picked[1]);
        let order = if p.find(train[a]["question"].as_str().unwrap())
            < p.find(train[b]["question"].as_str().unwrap())
        {
            [a, b]
        } else {
            [b, a]
        };
        assert_eq!(*p, expected_prompt(&[&train[order[0]], &train[order[1]]], item));
        draws.push(order);
    }
    // Another seed draws differently for at least one item (12 ordered pairs per item).
    let reseeded = variant(&dir.path().join("other"), "seed = 1234", "seed = 99");
    let manifest = std::fs::read_to_string(reseeded.join("environment.toml")).unwrap();
    std::fs::write(
        reseeded.join("environment.toml"),
        manifest.replacen("sampler = \"first_n\"", "sampler = \"random\"", 1),
    )
    .unwrap();
    let other = prompts(&eval(dir.path(), &reseeded, &[]));
    assert_ne!(other, full, "seed is ignored");
}

/// The train indices Python's replay of lm-eval gave each document in the named case of
/// fixtures/pyrandom/goldens.json (tools/pyrandom_goldens.py).
fn lm_eval_golden(name: &str) -> Vec<Vec<usize>> {
    let goldens = read_json(&repo().join("fixtures/pyrandom/goldens.json"));
    let case =
        goldens["lm_eval"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    let picks = case["examples"].as_array().unwrap();
    picks
        .iter()
        .map(|ex| ex.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect())
        .collect()
}

#[test]
fn lm_eval_examples_are_pythons_in_full_runs_and_under_limit() {
    let dir = tempfile::tempdir().unwrap();
    let env = variant(dir.path(), "sampler = \"first_n\"", "sampler = \"lm_eval\"");
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let test = read_jsonl(&env.join("data/test.jsonl"));
    let shots = |picks: &[usize]| -> Vec<&Value> { picks.iter().map(|&t| &train[t]).collect() };
    // The golden cases assume this fixture: seed 1234, 2-shot from 4 train items.
    let want = lm_eval_golden("other_split_small");
    let full = prompts(&eval(dir.path(), &env, &[]));
    assert_eq!(full.len(), test.len());
    for (i, item) in test.iter().enumerate() {
        assert_eq!(full[&i.to_string()], expected_prompt(&shots(&want[i]), item), "item {i}");
    }
    let run = eval(dir.path(), &env, &["--limit", "2"]);
    let limited = prompts(&run);
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|(id, p)| full[id] == *p), "--limit changed the examples");
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(log.contains("sampler lm_eval, seed 1234"), "{log}");

    // The train phase evaluated: n + 1 drawn, the item itself dropped.
    let want = lm_eval_golden("same_split_small");
    let full = prompts(&eval(dir.path(), &env, &["--phase", "train"]));
    for (i, item) in train.iter().enumerate() {
        assert_eq!(full[&i.to_string()], expected_prompt(&shots(&want[i]), item), "train item {i}");
    }
}

#[test]
fn chat_models_get_examples_as_alternating_turns() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("chat-model");
    copy_dir(&repo().join("fixtures/models/llama-9heads-tied"), &model);
    let config = model.join("tokenizer_config.json");
    let mut tc: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    tc["chat_template"] = Value::from(
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
    );
    std::fs::write(&config, tc.to_string()).unwrap();
    let env = fixture();
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let test = read_jsonl(&env.join("data/test.jsonl"));
    let run = eval(
        dir.path(),
        &env,
        &["--model", model.to_str().unwrap(), "--limit", "1", "--truncate", "left"],
    );
    let turn = |role: &str, text: &str| format!("<|{role}|>\n{text}</s>\n");
    let q = |it: &Value| format!("Question: {}\nAnswer:", it["question"].as_str().unwrap());
    let want = turn("user", &q(&train[0]))
        + &turn("assistant", train[0]["answer"].as_str().unwrap())
        + &turn("user", &q(&train[1]))
        + &turn("assistant", train[1]["answer"].as_str().unwrap())
        + &turn("user", &q(&test[0]))
        + "<|assistant|>\n";
    assert_eq!(prompts(&run)["0"], want);
}

#[test]
fn the_fewshot_data_is_part_of_the_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&fixture(), &env);
    let hash = |run: &Path| {
        read_json(&run.join("run.json"))["environment"]["content_sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = hash(&eval(dir.path(), &env, &["--limit", "1"]));
    let zero_before = hash(&eval(dir.path(), &env, &["--limit", "1", "--phase", "test-zeroshot"]));
    let train = env.join("data/train.jsonl");
    let text = std::fs::read_to_string(&train).unwrap();
    std::fs::write(&train, text.replacen("Tom has 3 apples", "Tom has 3 pears", 1)).unwrap();
    let after = hash(&eval(dir.path(), &env, &["--limit", "1"]));
    assert_ne!(before, after, "editing the few-shot phase's file must change the hash");
    // A phase that takes no examples does not depend on the few-shot file.
    assert_eq!(
        hash(&eval(dir.path(), &env, &["--limit", "1", "--phase", "test-zeroshot"])),
        zero_before
    );
}

#[test]
fn validate_renders_the_examples_and_eval_refuses_a_missing_fewshot_phase_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = variant(dir.path(), "seed = 1234", "seed = 1234\ntarget = \"{{ answr }}\"");
    let o = benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("phase test: 3 items, 3 problem(s)") && out.contains("[fewshot] target"),
        "{out}"
    );
    assert!(out.contains("phase test-zeroshot: 3 items, 0 problem(s)"), "{out}");

    let env2 = variant(
        &dir.path().join("b"),
        "data = \"data/train.jsonl\"",
        "data = \"data/missing.jsonl\"",
    );
    let o = benchgen(dir.path(), &["eval", "--env", env2.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("phase \"test\" takes its few-shot examples from phase \"train\"")
            && err.contains("missing.jsonl"),
        "{err}"
    );
    // The zero-shot phase does not need the few-shot file.
    assert!(ok(&benchgen(
        dir.path(),
        &["eval", "--env", env2.to_str().unwrap(), "--phase", "test-zeroshot"]
    ))
    .contains("Overall Score"));
}

#[test]
fn a_chat_server_gets_the_examples_as_turns() {
    let dir = tempfile::tempdir().unwrap();
    let env = variant(dir.path(), "chat = \"auto\"", "chat = true");
    let train = read_jsonl(&env.join("data/train.jsonl"));
    let test = read_jsonl(&env.join("data/test.jsonl"));
    let server = openai_server::OpenAiServer::start(openai_server::Behavior::default());
    let spec = format!("running:{}#test-model", server.url());
    ok(&benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--model", &spec]));
    let requests = server.requests();
    assert_eq!(requests.len(), test.len());
    let q = |it: &Value| {
        Value::from(format!("Question: {}\nAnswer:", it["question"].as_str().unwrap()))
    };
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        let m = r.body["messages"].as_array().unwrap();
        let turns: Vec<(&str, &Value)> =
            m.iter().map(|t| (t["role"].as_str().unwrap(), &t["content"])).collect();
        assert_eq!(turns.len(), 5, "{}", r.body);
        assert_eq!(
            turns[..4],
            [
                ("user", &q(&train[0])),
                ("assistant", &train[0]["answer"]),
                ("user", &q(&train[1])),
                ("assistant", &train[1]["answer"])
            ]
        );
        assert!(test.iter().any(|it| q(it) == *turns[4].1) && turns[4].0 == "user", "{}", r.body);
    }
}
