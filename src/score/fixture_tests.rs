//! Tricky cases kept as data in `fixtures/scoring/` (written by hand, in the shapes of the real
//! data sets), run through the same `Scorer` an environment compiles.

use serde_json::Value;

use super::extract::strip_think;
use super::label::choice_label;
use super::{Metric, Normalizer, ScoringConfig};

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

#[test]
fn choice_labels() {
    let cases = lines(include_str!("../../fixtures/scoring/choice.jsonl"));
    assert!(cases.len() >= 20);
    let scorer = ScoringConfig { metric: Metric::Choice, ..ScoringConfig::default() }
        .compile()
        .expect("valid");
    for c in &cases {
        let response = c["response"].as_str().expect("response");
        let label = c["label"].as_str();
        assert_eq!(choice_label(response), label, "{response:?}");
        // Through the scorer: right against its label (given as letter and as index), and
        // unanswered when no label is found.
        let s = scorer.score_one(response, label.unwrap_or("Z"));
        assert_eq!((s.answered, s.correct), (label.is_some(), label.is_some()), "{response:?}");
        assert_eq!(s.extracted.as_deref(), label, "{response:?}");
        if let Some(l) = label {
            let index = (l.as_bytes()[0] - b'A').to_string();
            assert!(scorer.score_one(response, &index).correct, "{response:?} vs index {index}");
            let other = if l == "A" { "B" } else { "A" };
            assert!(!scorer.score_one(response, other).correct, "{response:?} vs {other}");
        }
    }
}

#[test]
fn f1_over_references() {
    let scorer = ScoringConfig {
        metric: Metric::F1,
        normalize: vec![Normalizer::Strip],
        report: vec![Metric::Exact],
        ..ScoringConfig::default()
    }
    .compile()
    .expect("valid");
    for c in lines(include_str!("../../fixtures/scoring/f1.jsonl")) {
        let prediction = c["prediction"].as_str().expect("prediction");
        let answers: Vec<&str> =
            c["answers"].as_array().expect("answers").iter().filter_map(Value::as_str).collect();
        let want = c["f1"].as_f64().expect("f1");
        let s = scorer.score_refs(prediction, &answers);
        assert!((s.credit - want).abs() < 1e-12, "{prediction:?}: {} != {want}", s.credit);
        assert_eq!(s.correct, want == 1.0, "{prediction:?}");
    }
}

#[test]
fn math_answers() {
    let text = include_str!("../../environments/math500/environment.toml");
    let manifest = crate::env::Manifest::parse(text).expect("math500 manifest");
    let scorer = manifest.scoring.compile().expect("valid");
    for c in lines(include_str!("../../fixtures/scoring/math.jsonl")) {
        let response = c["response"].as_str().expect("response");
        let s = scorer.score_one(response, c["answer"].as_str().expect("answer"));
        assert_eq!(
            s.correct,
            c["correct"].as_bool().expect("correct"),
            "{response:?} → {:?} vs {:?}",
            s.extracted,
            s.target
        );
    }
}

#[test]
fn think_blocks() {
    for c in lines(include_str!("../../fixtures/scoring/think.jsonl")) {
        let response = c["response"].as_str().expect("response");
        assert_eq!(
            strip_think(response),
            c["stripped"].as_str().expect("stripped"),
            "{response:?}"
        );
    }
    let on =
        ScoringConfig { strip_think: true, ..ScoringConfig::default() }.compile().expect("valid");
    let off = ScoringConfig::default().compile().expect("valid");
    assert!(on.score_one("<think>Lyon?</think>\nParis", "Paris").correct);
    assert!(!off.score_one("<think>Lyon?</think>\nParis", "Paris").correct);
    let s = on.score_one("<think>Paris, surely", "Paris");
    assert!(!s.answered && s.extracted.is_none());
}

#[test]
fn multi_reference_exact_and_contains() {
    let squad = ScoringConfig { normalize: vec![Normalizer::Squad], ..ScoringConfig::default() }
        .compile()
        .expect("valid");
    let s = squad.score_refs("the Cotswolds.", &["Cotswold Hills", "Cotswolds"]);
    assert!(s.correct && !s.exact);
    assert_eq!(s.target, "cotswolds", "the matching reference is shown");
    let s = squad.score_refs("Cotswolds", &["Cotswold Hills", "Cotswolds"]);
    assert!(s.exact, "raw equality with any reference");
    let s = squad.score_refs("Malvern Hills", &["Cotswold Hills", "Cotswolds"]);
    assert!(!s.correct && s.answered);
    assert_eq!(s.target, "cotswold hills", "no match: the first reference is shown");
    let contains = ScoringConfig { metric: Metric::Contains, ..ScoringConfig::default() }
        .compile()
        .expect("valid");
    assert!(contains.score_refs("It was Sam Clemens", &["Mark Twain", "Sam Clemens"]).correct);
    let numeric = ScoringConfig { metric: Metric::Numeric, ..ScoringConfig::default() }
        .compile()
        .expect("valid");
    assert!(numeric.score_refs("1,000", &["10", "1000.0"]).correct);
}

#[test]
fn regex_tables_select_group_and_match() {
    let cfg: ScoringConfig = toml::from_str(
        r#"
        extract = [{ regex = "(?:x|y)=(\\d+)", select = "last" },
                   { regex = "n(\\d)(\\d)", group = 2 },
                   { regex = "z(\\d)", group = 0, select = "first" }]
        "#,
    )
    .expect("valid");
    let scorer = cfg.compile().expect("valid");
    assert_eq!(scorer.score_one("x=1, y=2, x=3", "3").extracted.as_deref(), Some("3"));
    assert_eq!(scorer.score_one("n12 n34", "2").extracted.as_deref(), Some("2"));
    assert_eq!(scorer.score_one("z7 z8", "z7").extracted.as_deref(), Some("z7"));
    assert_eq!(scorer.score_one("nothing", "z7").extracted, None);
}
