//! llama.cpp's tokenizer test corpus through `benchgen tokenize`: every case of every
//! `ggml-vocab-*.gguf` that has a `.gguf.inp`/`.gguf.out` pair must give exactly the ids
//! llama.cpp's `test-tokenizer-0` expects, tokenized as that test does (no BOS or other added
//! special tokens, special tokens' text not parsed). Vocabularies without cases must at least
//! load and tokenize.
//!
//! The corpus is llama.cpp's `models/` folder, named by `BENCHGEN_LLAMA_VOCAB_DIR` (`.ci/run`
//! fetches it); without it the test says so and passes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{ok, output_within};

const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

/// The corpus folder, or why there is none.
fn corpus_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("BENCHGEN_LLAMA_VOCAB_DIR").filter(|v| !v.is_empty()).ok_or(
        "BENCHGEN_LLAMA_VOCAB_DIR is not set (.ci/run sets it to llama.cpp's models/ folder)",
    )?;
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!("BENCHGEN_LLAMA_VOCAB_DIR={} is not a directory", dir.display()));
    }
    Ok(dir)
}

/// The cases of a `.inp` file, split as `test-tokenizer-0` splits them: at each separator line,
/// the text after the last separator being a case only when not empty.
fn cases(inp: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = inp;
    while !rest.is_empty() {
        match rest.find(SEPARATOR) {
            Some(at) => {
                out.push(rest[..at].to_string());
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => {
                out.push(rest.to_string());
                break;
            }
        }
    }
    out
}

/// The expected ids, one line per case.
fn expected(out: &str) -> Vec<Vec<u32>> {
    out.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().unwrap_or_else(|e| panic!("id {t:?}: {e}")))
                .collect()
        })
        .collect()
}

/// Runs `benchgen tokenize` once on `files`, returning each file's ids.
fn tokenize(vocab: &Path, files: &[PathBuf]) -> Vec<Vec<u32>> {
    let mut cmd = crate::common::benchgen_command();
    cmd.args(["tokenize", "--no-parse-special", "--json", "--model"]).arg(vocab);
    for f in files {
        cmd.arg("--file").arg(f);
    }
    let out = ok(&output_within(&mut cmd, Duration::from_secs(300)));
    out.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            serde_json::from_value(v["ids"].clone()).unwrap()
        })
        .collect()
}

/// Checks one vocabulary; returns the cases passed (`None`: it has none) and the failures.
fn check(vocab: &Path, work: &Path) -> (Option<usize>, Vec<String>) {
    let name = vocab.file_name().unwrap().to_string_lossy().into_owned();
    let inp = PathBuf::from(format!("{}.inp", vocab.display()));
    let out = PathBuf::from(format!("{}.out", vocab.display()));
    if !inp.is_file() || !out.is_file() {
        // No cases: it must load and tokenize all the same.
        let f = work.join(format!("{name}.txt"));
        std::fs::write(&f, "Hello world").unwrap();
        let ids = tokenize(vocab, &[f]);
        let failed = ids.len() != 1 || ids[0].is_empty();
        return (
            None,
            if failed { vec![format!("{name}: no ids for \"Hello world\"")] } else { vec![] },
        );
    }
    let cases = cases(&std::fs::read_to_string(&inp).unwrap());
    let wanted = expected(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(
        cases.len(),
        wanted.len(),
        "{name}: {} cases but {} expected lines",
        cases.len(),
        wanted.len()
    );
    let files: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let f = work.join(format!("{name}-{i}.txt"));
            std::fs::write(&f, text).unwrap();
            f
        })
        .collect();
    let got = tokenize(vocab, &files);
    assert_eq!(got.len(), cases.len(), "{name}: one result per case");
    let mut failures = Vec::new();
    for (i, ((text, want), got)) in cases.iter().zip(&wanted).zip(&got).enumerate() {
        if want != got {
            failures.push(format!(
                "{name} case {i} {text:?}:\n  expected {want:?}\n  got      {got:?}"
            ));
        }
    }
    (Some(cases.len() - failures.len()), failures)
}

#[test]
fn every_case_of_llama_cpps_vocab_corpus_matches() {
    let dir = match corpus_dir() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: llama.cpp tokenizer corpus test: {why}");
            return;
        }
    };
    let mut vocabs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("ggml-vocab-") && n.ends_with(".gguf")
        })
        .collect();
    vocabs.sort();
    assert!(!vocabs.is_empty(), "no ggml-vocab-*.gguf in {}", dir.display());

    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    // One process per vocabulary, as many at once as there are cores.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(vocabs.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(vocab) = vocabs.get(i) else { break };
                let r = check(vocab, work.path());
                results.lock().unwrap().push((vocab.clone(), r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut passed, mut with_cases, mut failures) = (0, 0, Vec::new());
    for (vocab, (n, f)) in &results {
        let name = vocab.file_name().unwrap().to_string_lossy();
        match n {
            Some(n) => {
                eprintln!("{name}: {n} cases passed, {} failed", f.len());
                passed += n;
                with_cases += 1;
            }
            None => eprintln!(
                "{name}: no cases; {}",
                if f.is_empty() { "loads and tokenizes" } else { "FAILED" }
            ),
        }
        failures.extend(f.iter().cloned());
    }
    eprintln!(
        "llama.cpp corpus: {passed} cases of {with_cases} vocabularies passed, {} vocabularies loaded without cases, {:.1}s",
        results.len() - with_cases,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} cases differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed > 0, "no cases in {}", dir.display());
}

#[test]
fn cases_split_as_test_tokenizer_0_splits_them() {
    assert_eq!(
        cases("a\n__ggml_vocab_test__\n\n__ggml_vocab_test__\n b\n\n__ggml_vocab_test__\n"),
        ["a", "", " b\n"]
    );
    assert_eq!(cases("x\n__ggml_vocab_test__\ny"), ["x", "y"]);
    assert_eq!(expected("1 2\n\n 3 \n"), vec![vec![1, 2], vec![], vec![3]]);
}
