//! The shipped benchmark environments read either the official files under `$BENCHGEN_DATA_DIR`
//! or, without them, their `hf://datasets/…` source, whose rows are laid out differently and go
//! through the manifest's `source_fields`. Hand-written items in both layouts
//! (`tools/make_hub_layout_fixtures.py`): the hub copy, served by a fake hub on 127.0.0.1, must
//! give the embedded model the same prompts, options and references as the local copy, so the
//! same predictions and scores.

use crate::common::hub_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use hub_server::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    repo().join("fixtures/hub-layouts")
}

/// Every file of the fixture's copy of dataset `repo`, by its path in the repository.
fn hub_files(repo_name: &str) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = fixtures().join("hub").join(repo_name);
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// `benchgen eval` of a shipped environment with a fresh HF cache and the hub at `endpoint`,
/// reading the official files from `data_dir` when given; the run's detailed results.
fn eval(
    tmp: &Path,
    endpoint: &str,
    data_dir: Option<&Path>,
    env: &str,
    phase: &str,
) -> (Vec<Value>, Value) {
    let runs = tmp.join("runs");
    let mut cmd = benchgen_on_hub(endpoint, &tmp.join("hf"));
    // TruthfulQA's six-shot preamble is longer than the embedded model's 512 tokens.
    cmd.args([
        "eval",
        "--env",
        env,
        "--phase",
        phase,
        "--runs-dir",
        runs.to_str().unwrap(),
        "--json",
        "--truncate",
        "left",
    ])
    .current_dir(tmp);
    if let Some(d) = data_dir {
        cmd.env("BENCHGEN_DATA_DIR", d);
    }
    let out: Output = output_within(&mut cmd, Duration::from_secs(120));
    let breakdown: Value = serde_json::from_str(&ok(&out)).unwrap();
    let latest = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .unwrap();
    let details = read_json(&runs.join(latest.to_string()).join("detailed_results.json"));
    (details["items"].as_array().unwrap().clone(), breakdown)
}

/// What an item's prompt, reference and scoring were; its id too unless the two layouts name
/// items differently (MMLU's CSVs have no ids: `FILE/INDEX` there, the row index on the hub).
fn essence(items: &[Value], with_id: bool) -> Vec<Value> {
    items
        .iter()
        .map(|i| {
            let mut i = i.as_object().unwrap().clone();
            if !with_id {
                i.remove("id");
            }
            Value::Object(i)
        })
        .collect()
}

/// The hub copy of `repo_name` and the local copy give the same items and scores for each of
/// `phases` of `env`; `check` looks at the hub run's items.
fn same_from_hub_and_data_dir(
    env: &str,
    repo_name: &str,
    phases: &[&str],
    with_id: bool,
    check: impl Fn(&[Value]),
) {
    let server = HubServer::start(dataset(repo_name, hub_files(repo_name)));
    for phase in phases {
        let tmp = tempfile::tempdir().unwrap();
        let (hub, hub_score) = eval(tmp.path(), &server.url(), None, env, phase);
        assert!(!server.touched().is_empty(), "{env}/{phase}: nothing was downloaded");
        server.clear_log();
        let (local, local_score) =
            eval(tmp.path(), "http://127.0.0.1:9", Some(&fixtures().join("data")), env, phase);
        assert!(!hub.is_empty());
        assert_eq!(
            essence(&hub, with_id),
            essence(&local, with_id),
            "{env}/{phase}: hub and local items differ"
        );
        for key in ["accuracy", "exact_match", "answer_rate", "metrics"] {
            assert_eq!(hub_score[key], local_score[key], "{env}/{phase}: {key}");
        }
        check(&hub);
    }
}

fn field<'a>(item: &'a Value, key: &str) -> &'a str {
    item[key].as_str().unwrap_or_else(|| panic!("no {key} in {item}"))
}

#[test]
fn arc_from_allenai_ai2_arc_parquet() {
    for env in ["arc-easy", "arc-challenge"] {
        same_from_hub_and_data_dir(env, "allenai/ai2_arc", &["test"], true, |items| {
            assert_eq!(items.len(), 3);
            assert_eq!(
                field(&items[0], "prompt"),
                "Question: Which tool measures the mass of a rock?\nAnswer:"
            );
            // Numeric labels: "3" names the third option.
            assert_eq!(
                (field(&items[1], "id"), field(&items[1], "target")),
                ("NYSEDREGENTS_2001_4_12", "carbon dioxide")
            );
            assert_eq!(field(&items[2], "target"), "Mercury");
        });
    }
    same_from_hub_and_data_dir("arc-easy-gen", "allenai/ai2_arc", &["test"], true, |items| {
        assert_eq!(field(&items[2], "prompt"), "Question: Which planet is closest to the Sun?\nA. Venus\nB. Earth\nC. Mars\nD. Mercury\nE. Jupiter\nAnswer:");
    });
}

#[test]
fn mmlu_from_cais_mmlu_all_parquet() {
    same_from_hub_and_data_dir("mmlu", "cais/mmlu", &["test", "val", "dev"], false, |items| {
        assert_eq!(items.len(), 4);
        let p = field(&items[2], "prompt");
        assert!(p.starts_with("The following are multiple choice questions (with answers) about high school biology.\n\n"), "{p}");
        assert!(
            p.ends_with("\nA. Nucleus\nB. Ribosome\nC. Golgi body\nD. Mitochondrion\nAnswer:"),
            "{p}"
        );
        // The hub's answer index 3 is the letter D, so the reference is that option.
        assert_eq!(field(&items[2], "target"), "Mitochondrion");
    });
    same_from_hub_and_data_dir("mmlu-gen", "cais/mmlu", &["test"], false, |items| {
        assert_eq!(items.len(), 4)
    });
}

#[test]
fn truthfulqa_mc1_from_truthful_qa_multiple_choice_parquet() {
    same_from_hub_and_data_dir(
        "truthfulqa-mc1",
        "truthfulqa/truthful_qa",
        &["validation"],
        false,
        |items| {
            assert_eq!(items.len(), 2);
            assert!(field(&items[1], "prompt")
                .ends_with("Q: Can you catch a cold from being cold?\nA:"));
            assert_eq!(field(&items[1], "target"), "No, colds are caused by viruses");
        },
    );
}

#[test]
fn triviaqa_from_trivia_qa_rc_nocontext_parquet() {
    same_from_hub_and_data_dir("triviaqa", "mandarjoshi/trivia_qa", &["test"], true, |items| {
        assert_eq!(items.len(), 3);
        assert_eq!(
            (field(&items[1], "id"), field(&items[1], "prompt")),
            ("tc_2", "Question: Who wrote the play Hamlet?\nAnswer:")
        );
    });
}

#[test]
fn a_first_shard_reads_the_whole_sharded_table_with_row_ids_running_on() {
    let tmp = tempfile::tempdir().unwrap();
    let env = tmp.path().join("env");
    copy_dir(&repo().join("fixtures/embedded/env"), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let old = "[[phases]]\nname = \"test\"\ndata = \"data/test.jsonl\"\n";
    let phases = "[[phases]]\nname = \"sharded\"\nsource = \"hf://datasets/test-org/sharded/data/test-00000-of-00002.parquet\"\n\n\
                  [[phases]]\nname = \"local\"\ndata = \"data/first8.jsonl\"\n";
    // Without an id field an item's id is its row index, which must run on into the second shard.
    let manifest = manifest.replace(old, phases).replace("id = \"id\"\n", "");
    assert!(
        manifest.contains("sharded") && !manifest.contains("id = "),
        "the embedded manifest changed:\n{manifest}"
    );
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(env.join("data/test.jsonl"))
        .unwrap()
        .lines()
        .take(8)
        .map(str::to_string)
        .collect();
    std::fs::write(env.join("data/first8.jsonl"), lines.join("\n") + "\n").unwrap();

    let shards = hub_files("test-org/sharded");
    assert_eq!(shards.len(), 2);
    let server = HubServer::start(dataset("test-org/sharded", shards.clone()));
    let env = env.to_str().unwrap();
    let (sharded, _) = eval(tmp.path(), &server.url(), None, env, "sharded");
    assert_eq!(server.touched(), shards.keys().cloned().collect(), "both shards are read");
    let (local, _) = eval(tmp.path(), &server.url(), None, env, "local");
    assert_eq!(sharded.len(), 8);
    assert_eq!(field(&sharded[7], "id"), "7");
    assert_eq!(essence(&sharded, true), essence(&local, true));
}
