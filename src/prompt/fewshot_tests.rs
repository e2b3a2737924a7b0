//! An environment with `sampler = "lm_eval"` builds prompts holding the examples Python's replay
//! of lm-eval picks (fixtures/pyrandom, tools/pyrandom_goldens.py), and a `--limit`-like prefix
//! of the items gets the same examples as the full run.

use std::path::Path;

use super::{fewshot, PromptBuilder};
use crate::env::{EnvSources, Environment};

const MANIFEST: &str = r#"name = "lm-eval-sampler"

[[phases]]
name = "test"
data = "test.jsonl"

[[phases]]
name = "train"
data = "train.jsonl"

[fields]
input = "question"
target = "answer"

[prompt]
template = "Q: {{ question }}\nA:"
chat = false

[fewshot]
phase = "train"
n = 2
sampler = "lm_eval"
"#;

fn write_env(dir: &Path, train: usize, test: usize) {
    let lines = |prefix: &str, count: usize| -> String {
        (0..count).map(|i| format!("{{\"question\": \"{prefix} question {i}\", \"answer\": \"{prefix} answer {i}\"}}\n")).collect()
    };
    std::fs::write(dir.join("environment.toml"), MANIFEST).unwrap();
    std::fs::write(dir.join("train.jsonl"), lines("train", train)).unwrap();
    std::fs::write(dir.join("test.jsonl"), lines("test", test)).unwrap();
}

/// The pool indices Python gave each document in the named golden case.
fn golden(name: &str) -> Vec<Vec<usize>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pyrandom/goldens.json");
    let goldens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = goldens["lm_eval"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    // The environment above is what the case assumes: seed 1234 (the default), 2-shot, 30 in the pool.
    assert_eq!(
        (case["seed"].as_u64(), case["n"].as_u64(), case["pool"].as_u64()),
        (Some(1234), Some(2), Some(30))
    );
    case["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ex| ex.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect())
        .collect()
}

/// Every item's prompt, built the way `eval` builds them: positions are the items' places in
/// the list given, a prefix of the phase's items.
fn prompts(env: &Environment, phase: &str, limit: Option<usize>) -> Vec<String> {
    let phase = env.phase(Some(phase)).unwrap();
    let mut items = env.load_items(phase).unwrap();
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    let builder = PromptBuilder::new(&env.manifest.prompt, &env.origin)
        .unwrap()
        .with_fewshot(fewshot::for_phase(env, phase).unwrap())
        .unwrap();
    items.iter().enumerate().map(|(i, it)| builder.render(i, it, None).unwrap().text).collect()
}

fn expected(examples: &[usize], prefix: &str, item: usize) -> String {
    let shots: String = examples
        .iter()
        .map(|e| format!("Q: train question {e}\nA: train answer {e}\n\n"))
        .collect();
    format!("{shots}Q: {prefix} question {item}\nA:")
}

#[test]
fn lm_eval_prompts_hold_pythons_examples_in_full_runs_and_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), 30, 10);
    let env = Environment::open(dir.path(), &EnvSources::default()).unwrap();

    let want = golden("other_split_set_branch");
    let full = prompts(&env, "test", None);
    assert_eq!(full.len(), want.len());
    for (i, p) in full.iter().enumerate() {
        assert_eq!(*p, expected(&want[i], "test", i), "test item {i}");
    }
    for limit in [1, 4] {
        assert_eq!(prompts(&env, "test", Some(limit)), full[..limit], "--limit {limit}");
    }

    // The few-shot phase evaluated itself: n + 1 drawn, the item dropped.
    let want = golden("same_split_set_branch");
    let full = prompts(&env, "train", None);
    for (i, p) in full.iter().enumerate() {
        assert_eq!(*p, expected(&want[i], "train", i), "train item {i}");
        assert!(!want[i].contains(&i), "train item {i} is its own example");
    }
    assert_eq!(prompts(&env, "train", Some(3)), full[..3]);
}
