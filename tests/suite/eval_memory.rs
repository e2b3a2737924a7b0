//! `run.json`'s `memory` on the embedded model, checked against numbers worked out here from
//! the checkpoint's config and the run's journal.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

/// Output columns per packed panel: the host kernels pad each matrix's rows up to a multiple.
const NR: u64 = 32;

fn config() -> Value {
    read_json(&repo().join("fixtures/embedded/model/config.json"))
}

fn dim(cfg: &Value, key: &str) -> u64 {
    cfg[key].as_u64().unwrap_or_else(|| panic!("config.json {key}"))
}

/// f32 bytes of the embedded (tied, bias-free Llama) model as the host decoder holds it: each
/// linear layer's [n, k] with n padded to whole panels, plus the norms.
fn f32_weights_bytes(cfg: &Value) -> u64 {
    let (hs, is, layers) =
        (dim(cfg, "hidden_size"), dim(cfg, "intermediate_size"), dim(cfg, "num_hidden_layers"));
    let (h, kv, hd, vocab) = (
        dim(cfg, "num_attention_heads"),
        dim(cfg, "num_key_value_heads"),
        dim(cfg, "head_dim"),
        dim(cfg, "vocab_size"),
    );
    assert_eq!(cfg["tie_word_embeddings"], true);
    let linear = |n: u64, k: u64| n.div_ceil(NR) * NR * k * 4;
    let layer = linear(h * hd + 2 * kv * hd, hs)
        + linear(hs, h * hd)
        + linear(2 * is, hs)
        + linear(hs, is)
        + 2 * hs * 4;
    linear(vocab, hs) + layers * layer + hs * 4
}

/// Bytes one token takes in the KV cache at `value_bytes` a value.
/// Bytes of one token's keys and values when a head's position takes `row(head_dim)` bytes.
fn kv_bytes_per_token(cfg: &Value, row: impl Fn(u64) -> u64) -> u64 {
    dim(cfg, "num_hidden_layers") * 2 * dim(cfg, "num_key_value_heads") * row(dim(cfg, "head_dim"))
}

/// Tokens in an item's cache after its last step: the prompt and every sampled token but the
/// last, which is never fed. An EOS ends the text without being counted in tokens_out.
fn cached_tokens(pred: &Value) -> u64 {
    let (tin, tout) = (pred["tokens_in"].as_u64().unwrap(), pred["tokens_out"].as_u64().unwrap());
    let sampled = tout + u64::from(pred["finish_reason"] == "eos");
    tin + sampled - 1
}

fn memory(runs: &Path) -> Value {
    let rec = read_json(&runs.join("1/run.json"));
    assert_eq!(rec["status"], "Completed", "{rec}");
    rec["memory"].clone()
}

#[test]
fn run_json_reports_weights_kv_cache_and_peak_rss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let out = ok(&benchgen(dir.path(), &["eval", "--limit", "1", "--batch-size", "1"]));
    let runs = dir.path().join("runs");
    let mem = memory(&runs);
    let preds = read_jsonl(&runs.join("1/predictions.jsonl"));
    assert_eq!(preds.len(), 1);

    let weights = mem["weights_bytes"].as_u64().unwrap();
    assert_eq!(weights, f32_weights_bytes(&cfg), "{mem}");
    assert_eq!(
        mem["kv_cache_peak_bytes"].as_u64().unwrap(),
        cached_tokens(&preds[0]) * kv_bytes_per_token(&cfg, |d| d * 4),
        "{mem} {}",
        preds[0]
    );
    assert!(mem["peak_rss_bytes"].as_u64().unwrap() >= weights, "{mem}");
    assert!(
        out.contains("Memory: peak RSS ")
            && out.contains(" = weights 1.7 MB (")
            && out.contains("%) + KV cache (peak) "),
        "{out}"
    );

    let shown = ok(&benchgen(dir.path(), &["runs", "show", "1"]));
    assert!(
        shown.contains("Memory:       peak RSS ") && shown.contains("weights 1.7 MB"),
        "{shown}"
    );
}

#[test]
fn narrow_kv_caches_shrink_the_kv_peak() {
    let dir = tempfile::tempdir().unwrap();
    let runs = |kv: &str| dir.path().join(kv);
    for kv in ["f32", "bf16", "int8"] {
        let out = runs(kv);
        let args = ["eval", "--limit", "1", "--batch-size", "1", "--kv-dtype", kv, "--runs-dir"];
        let mut args = args.to_vec();
        args.push(out.to_str().unwrap());
        ok(&benchgen(dir.path(), &args));
        assert_eq!(
            read_json(&out.join("1/run.json"))["settings"]["kv_dtype"].as_str(),
            (kv != "f32").then_some(kv)
        );
    }
    // Same tokens every way (the item is the same; its journal says so).
    let tokens = |kv: &str| cached_tokens(&read_jsonl(&runs(kv).join("1/predictions.jsonl"))[0]);
    let n = tokens("f32");
    assert_eq!((tokens("bf16"), tokens("int8")), (n, n));
    let kv = |kv: &str| memory(&runs(kv))["kv_cache_peak_bytes"].as_u64().unwrap();
    let cfg = config();
    assert_eq!(kv("f32"), n * kv_bytes_per_token(&cfg, |d| 4 * d));
    assert_eq!(kv("bf16"), n * kv_bytes_per_token(&cfg, |d| 2 * d));
    // A byte a value and an f32 scale per head and position.
    assert_eq!(kv("int8"), n * kv_bytes_per_token(&cfg, |d| d + 4));
    let weights = |kv: &str| memory(&runs(kv))["weights_bytes"].clone();
    assert_eq!((weights("bf16"), weights("int8")), (weights("f32"), weights("f32")));
}

/// `--kv-budget`: recorded in run.json, the caches' peak stays under it, the predictions are
/// the unbounded run's; a size without a unit is refused before anything starts.
#[test]
fn a_kv_budget_bounds_the_kv_peak_without_changing_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let (free_runs, bounded_runs) = (dir.path().join("free"), dir.path().join("bounded"));
    let eval = |runs: &Path, extra: &[&str]| {
        let mut args = vec!["eval", "--limit", "12", "--batch-size", "8", "--runs-dir"];
        args.push(runs.to_str().unwrap());
        args.extend_from_slice(extra);
        ok(&benchgen(dir.path(), &args));
    };
    eval(&free_runs, &[]);
    let free = memory(&free_runs)["kv_cache_peak_bytes"].as_u64().unwrap();
    let budget = free / 3;
    eval(&bounded_runs, &["--kv-budget", &format!("{budget}B")]);
    let peak = memory(&bounded_runs)["kv_cache_peak_bytes"].as_u64().unwrap();
    assert!(peak <= budget && peak > 0, "peak {peak} with a budget of {budget} (unbounded {free})");
    let run = read_json(&bounded_runs.join("1/run.json"));
    assert_eq!(run["settings"]["kv_budget"].as_u64(), Some(budget), "{run}");
    let predictions = |runs: &Path| -> Vec<(Value, Value)> {
        let mut p: Vec<_> = read_jsonl(&runs.join("1/predictions.jsonl"))
            .into_iter()
            .map(|l| (l["id"].clone(), l["prediction"].clone()))
            .collect();
        p.sort_by_key(|(id, _)| id.to_string());
        p
    };
    assert_eq!(predictions(&free_runs), predictions(&bounded_runs));

    let out = benchgen(dir.path(), &["eval", "--kv-budget", "600", "--runs-dir", "elsewhere"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--kv-budget") && err.contains("give a unit"), "{err}");
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn resumed_run_reports_the_resuming_process() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let runs_arg = runs.to_str().unwrap();
    // The first four items: the fourth's cache is the largest.
    ok(&benchgen(
        dir.path(),
        &["eval", "--limit", "4", "--batch-size", "1", "--runs-dir", runs_arg],
    ));
    let journal = runs.join("1/predictions.jsonl");
    let preds = read_jsonl(&journal);
    assert_eq!(preds.len(), 4);
    let full = memory(&runs)["kv_cache_peak_bytes"].as_u64().unwrap();

    // Keep only the item with the most cached tokens, as if the run had been killed after it:
    // the resumed process then only ever holds the other items' caches.
    let biggest = (0..4).max_by_key(|&i| cached_tokens(&preds[i])).unwrap();
    assert_eq!(full, cached_tokens(&preds[biggest]) * kv_bytes_per_token(&config(), |d| d * 4));
    let kept = format!("{}\n", serde_json::to_string(&preds[biggest]).unwrap());
    std::fs::write(&journal, kept).unwrap();
    let mut rec = read_json(&runs.join("1/run.json"));
    rec["status"] = "Interrupted".into();
    std::fs::write(runs.join("1/run.json"), serde_json::to_string(&rec).unwrap()).unwrap();

    let out = ok(&benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", runs_arg]));
    assert!(
        out.contains("Status: Running (resumed)") && out.contains("Memory: peak RSS "),
        "{out}"
    );
    let mem = memory(&runs);
    let others = (0..4).filter(|&i| i != biggest).map(|i| cached_tokens(&preds[i])).max().unwrap();
    let resumed = mem["kv_cache_peak_bytes"].as_u64().unwrap();
    assert_eq!(resumed, others * kv_bytes_per_token(&config(), |d| d * 4), "{mem}");
    assert!(resumed < full, "the resumed process's peak is its own: {resumed} vs {full}");
    assert_eq!(mem["weights_bytes"].as_u64().unwrap(), f32_weights_bytes(&config()));
}

#[test]
fn multiple_choice_counts_the_context_once_and_each_options_own_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let env = repo().join("fixtures/envs/choice");
    ok(&benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--batch-size", "2"]));
    // The embedded tokenizer is bytes (no merges) with `<s>` one token, so the context
    // `<s>{question}` is 1 + its bytes and an option its bytes. A question's options continue
    // its context's cache, which is held once; each option longer than one token adds all but
    // its last token. One question is scored at a time, so the peak is the largest question's sum.
    let per_item = |it: &Value| {
        let ctx = 1 + it["question"].as_str().unwrap().len() as u64;
        let options =
            it["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().len() as u64);
        ctx + options.filter(|&n| n > 1).map(|n| n - 1).sum::<u64>()
    };
    let want = read_jsonl(&env.join("data/test.jsonl")).iter().map(per_item).max().unwrap();
    let mem = memory(&dir.path().join("runs"));
    assert_eq!(
        mem["kv_cache_peak_bytes"].as_u64().unwrap(),
        want * kv_bytes_per_token(&config(), |d| d * 4),
        "{mem}"
    );
    assert_eq!(mem["weights_bytes"].as_u64().unwrap(), f32_weights_bytes(&config()));
}

/// The peak is the run's own: a parent that had touched far more memory before spawning
/// benchgen (as `cargo run` or a Python harness has) does not count.
#[cfg(target_os = "linux")]
#[test]
fn peak_rss_is_the_runs_own_not_its_parents() {
    const PARENT: usize = 400 << 20;
    let parent: Vec<u8> = vec![7u8; PARENT];
    let dir = tempfile::tempdir().unwrap();
    ok(&benchgen(dir.path(), &["eval", "--limit", "1", "--batch-size", "1"]));
    assert_eq!(parent.iter().step_by(4096).map(|&b| b as usize).sum::<usize>(), 7 * PARENT / 4096);
    let peak = memory(&dir.path().join("runs"))["peak_rss_bytes"].as_u64().unwrap();
    // The embedded run itself peaks around 20 MB.
    assert!(peak < (PARENT / 4) as u64, "peak RSS {peak} bytes counts the parent's {PARENT}");
}
