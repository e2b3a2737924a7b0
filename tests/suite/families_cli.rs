//! The pipeline does not know which family runs: each family's fixture checkpoint (made by
//! transformers, `tools/make_goldens.py`) is listed by `models list` and evaluated end to end by
//! the real binary, on a log-likelihood environment and a generation one.

use crate::common::*;

#[test]
fn every_family_is_listed_and_evaluated_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("ckpts");
    for name in FAMILY_FIXTURES {
        copy_dir(&repo().join("fixtures/models").join(name), &trained.join(name));
    }
    let listed = benchgen_command()
        .args(["models", "list", "--json"])
        .env("BENCHGEN_TRAINED_DIR", &trained)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&ok(&listed)).unwrap();
    let specs: Vec<&str> =
        json["trained"].as_array().unwrap().iter().map(|t| t["spec"].as_str().unwrap()).collect();
    for name in FAMILY_FIXTURES {
        assert!(specs.iter().any(|s| s.ends_with(name)), "{name} not listed: {specs:?}");
    }

    let env_dir = |e: &str| repo().join("fixtures/envs").join(e).display().to_string();
    let (choice, mixed) = (env_dir("choice"), env_dir("mixed"));
    let mut run = 0;
    for name in FAMILY_FIXTURES {
        let model = trained.join(name).display().to_string();
        for (env, items) in [(&choice, 30), (&mixed, 12)] {
            let out = ok(&benchgen(
                tmp.path(),
                &["eval", "--env", env, "--model", &model, "--batch-size", "4"],
            ));
            run += 1;
            assert!(out.contains(&format!("Processing: {items}/{items} (100%)")), "{name}: {out}");
            let dir = tmp.path().join(format!("runs/{run}"));
            let record = read_json(&dir.join("run.json"));
            assert_eq!(record["status"], "Completed", "{name} on {env}");
            assert!(record["model"]["parameters"].as_u64().unwrap() > 0, "{name}");
            assert_eq!(read_jsonl(&dir.join("predictions.jsonl")).len(), items, "{name}");
        }
    }
}
