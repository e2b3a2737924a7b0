//! Scoring of model predictions against targets, driven by the manifest's
//! `[scoring]` table. Parse a [`ScoringConfig`], [`compile`] it once into a
//! [`Scorer`], score items, then aggregate with [`Summary`].
//!
//! [`compile`]: ScoringConfig::compile

pub mod choice;
mod config;
mod extract;
#[cfg(test)]
mod fixture_tests;
mod label;
mod math;
mod metric;
mod normalize;
pub mod program;

use rayon::prelude::*;

pub use config::{
    ExtractorSpec, Method, Metric, Normalizer, Primary, RegexSpec, ScoringConfig,
    ScoringConfigError, VariantSpec,
};
pub use extract::Select;
pub use metric::{ItemScore, Summary, VariantScore};

use extract::{first_hit, strip_think, Extractor};
use label::choice_label;
pub use label::option_letter;
use metric::target_label;
use normalize::{normalize_compiled as normalize, Step};

/// A compiled [`ScoringConfig`]: regexes are built once and shared across
/// threads, which is why it is `Send + Sync` and has no interior state.
#[derive(Debug)]
pub struct Scorer {
    metric: Metric,
    extract: Vec<Extractor>,
    target_extract: Vec<Extractor>,
    normalize: Vec<Step>,
    strip_think: bool,
    report: Vec<Metric>,
    /// `[[scoring.variants]]` by name, in manifest order.
    variants: Vec<(String, Scorer)>,
}

impl Scorer {
    /// Scores one raw prediction against one raw target.
    pub fn score_one(&self, prediction: &str, target: &str) -> ItemScore {
        self.score_refs(prediction, &[target])
    }

    /// Scores one raw prediction against several acceptable raw targets:
    /// every credit is the best over the references, and `target` shows the
    /// (first) best one.
    pub fn score_refs(&self, prediction: &str, targets: &[&str]) -> ItemScore {
        let targets = if targets.is_empty() { &[""][..] } else { targets };
        // A target that no pattern fits is taken whole: plain-answer datasets
        // can share a manifest with "#### n" style ones.
        let raw: Vec<&str> =
            targets.iter().map(|t| first_hit(&self.target_extract, t).unwrap_or(t)).collect();
        let norm: Vec<String> = raw.iter().map(|t| self.target_norm(t)).collect();
        let text = if self.strip_think { strip_think(prediction) } else { prediction.into() };
        let mut answer_raw = if self.extract.is_empty() {
            Some(text.trim())
        } else {
            first_hit(&self.extract, &text)
        };
        if self.metric == Metric::Choice {
            // The label rule runs on the raw span: normalisers could lowercase it.
            answer_raw = answer_raw.and_then(choice_label);
        }
        let extracted = answer_raw.map(|a| normalize(&self.normalize, a)).filter(|a| !a.is_empty());
        let best = |m: Metric| -> (usize, f64) {
            let Some(a) = extracted.as_deref() else { return (0, 0.0) };
            norm.iter().map(|t| m.credit(a, t)).enumerate().fold((0, 0.0), |b, (i, c)| {
                if c > b.1 {
                    (i, c)
                } else {
                    b
                }
            })
        };
        let (at, credit) = best(self.metric);
        let extra = self.report.iter().map(|&m| best(m).1).collect();
        let variants = self
            .variants
            .iter()
            .map(|(_, v)| {
                let s = v.score_refs(prediction, targets);
                VariantScore { extracted: s.extracted, correct: s.correct }
            })
            .collect();
        ItemScore {
            answered: extracted.is_some(),
            correct: credit >= 1.0,
            // Deliberately un-normalised: this is the strict "response is the
            // answer" figure, independent of extraction and normalisers.
            exact: raw.iter().any(|t| prediction.trim() == t.trim()),
            extracted,
            target: norm[at].clone(),
            credit,
            extra,
            variants,
        }
    }

    /// A normalised target; for `choice`, the option letter it names.
    fn target_norm(&self, raw: &str) -> String {
        let t = normalize(&self.normalize, raw);
        if self.metric == Metric::Choice {
            return target_label(&t).unwrap_or(t);
        }
        t
    }

    /// The metrics whose credit `ItemScore::extra` holds, in order.
    pub fn report(&self) -> &[Metric] {
        &self.report
    }

    /// The names of `[[scoring.variants]]`, in the order `ItemScore::variants` holds them.
    pub fn variant_names(&self) -> Vec<&str> {
        self.variants.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The metric `correct` and `credit` follow.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Scores `(prediction, raw targets)` pairs in parallel; the result is in
    /// input order.
    pub fn score_all(&self, items: &[(&str, Vec<&str>)]) -> Vec<ItemScore> {
        items.par_iter().map(|(p, t)| self.score_refs(p, t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GSM: &str = r"#### (\-?[0-9\.\,]+)";

    fn gsm8k() -> Scorer {
        ScoringConfig {
            metric: Metric::Numeric,
            extract: vec![GSM.into(), "last_number".into()],
            target_extract: vec![GSM.into()],
            normalize: vec![
                Normalizer::Strip,
                Normalizer::Lowercase,
                Normalizer::RemoveCommas,
                Normalizer::RemoveDollar,
            ],
            ..ScoringConfig::default()
        }
        .compile()
        .expect("valid config")
    }

    #[test]
    fn scorer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scorer>();
    }

    #[test]
    fn gsm8k_marker_with_commas_matches_plain_target() {
        let s = gsm8k().score_one("The answer is #### 1,234", "1234");
        assert_eq!(s.extracted.as_deref(), Some("1234"));
        assert_eq!(s.target, "1234");
        assert!(s.correct && s.answered);
        assert!(!s.exact);
    }

    #[test]
    fn gsm8k_target_is_extracted_from_rationale() {
        let target = "She pays 2 * $500 = $1,000.\n#### 1000";
        let s = gsm8k().score_one("So she pays $1,000.00 in total.", target);
        // No "####" in the prediction, so last_number takes over.
        assert_eq!(s.extracted.as_deref(), Some("1000.00"));
        assert_eq!(s.target, "1000");
        assert!(s.correct);
        let wrong = gsm8k().score_one("#### 999", target);
        assert!(wrong.answered && !wrong.correct);
    }

    #[test]
    fn negative_answers() {
        let s = gsm8k().score_one("It drops to -12 then #### -15", "#### -15");
        assert_eq!(s.extracted.as_deref(), Some("-15"));
        assert!(s.correct);
        assert!(!gsm8k().score_one("#### 15", "-15").correct);
    }

    #[test]
    fn nothing_extractable_is_unanswered() {
        let s = gsm8k().score_one("I cannot solve this.", "#### 4");
        assert_eq!(s.extracted, None);
        assert!(!s.answered && !s.correct && !s.exact);
        assert_eq!(s.target, "4");
    }

    #[test]
    fn answer_blank_after_normalising_is_unanswered() {
        let cfg = ScoringConfig {
            normalize: vec![Normalizer::RemovePunctuation],
            ..ScoringConfig::default()
        };
        let s = cfg.compile().expect("valid").score_one("?!", "");
        assert!(!s.answered && !s.correct);
        assert_eq!(s.extracted, None);
    }

    #[test]
    fn exact_is_raw_trimmed_equality_only() {
        let scorer = gsm8k();
        let hit = scorer.score_one("  1234\n", "#### 1234");
        assert!(hit.exact && hit.correct);
        // Normalisation makes these correct but they are not the raw target.
        for pred in ["1,234", "#### 1234", "$1234"] {
            let s = scorer.score_one(pred, "#### 1234");
            assert!(s.correct, "{pred} should be correct");
            assert!(!s.exact, "{pred} should not be exact");
        }
        let default = ScoringConfig::default().compile().expect("valid");
        assert!(default.score_one("Paris\n", "Paris").exact);
        assert!(!default.score_one("paris", "Paris").exact);
    }

    #[test]
    fn target_without_match_is_used_whole() {
        let s = gsm8k().score_one("#### 12", "12");
        assert_eq!(s.target, "12");
        assert!(s.correct);
    }

    #[test]
    fn default_config_is_exact_on_trimmed_prediction() {
        let scorer = ScoringConfig::default().compile().expect("valid");
        let s = scorer.score_one("  Paris \n", "Paris");
        assert_eq!(s.extracted.as_deref(), Some("Paris"));
        assert!(s.correct);
        assert!(!scorer.score_one("paris", "Paris").correct);
    }

    #[test]
    fn contains_searches_whole_prediction_when_no_extractors() {
        let scorer = ScoringConfig {
            metric: Metric::Contains,
            normalize: vec![Normalizer::Lowercase, Normalizer::Strip],
            ..ScoringConfig::default()
        }
        .compile()
        .expect("valid");
        assert!(scorer.score_one("I think it is PARIS, France.", "Paris").correct);
        assert!(!scorer.score_one("I think it is Lyon.", "Paris").correct);
    }

    #[test]
    fn contains_only_searches_the_extracted_span() {
        let scorer = ScoringConfig {
            metric: Metric::Contains,
            extract: vec![r"Answer: (.*)".into()],
            ..ScoringConfig::default()
        }
        .compile()
        .expect("valid");
        assert!(scorer.score_one("Paris? No.\nAnswer: Lyon", "Lyon").correct);
        assert!(!scorer.score_one("Paris? No.\nAnswer: Lyon", "Paris").correct);
    }

    #[test]
    fn score_all_preserves_order() {
        let preds: Vec<String> = (0..1000).map(|i| format!("so #### {}", i * 7)).collect();
        // Every third target is off by one so the verdicts form a pattern.
        let targets: Vec<String> =
            (0..1000).map(|i| (i * 7 + usize::from(i % 3 == 0)).to_string()).collect();
        let items: Vec<(&str, Vec<&str>)> =
            preds.iter().zip(&targets).map(|(p, t)| (p.as_str(), vec![t.as_str()])).collect();
        let scores = gsm8k().score_all(&items);
        assert_eq!(scores.len(), 1000);
        for (i, s) in scores.iter().enumerate() {
            assert_eq!(s.extracted.as_deref(), Some((i * 7).to_string().as_str()));
            assert_eq!(s.target, targets[i]);
            assert_eq!(s.correct, i % 3 != 0, "item {i}");
        }
        let sum = Summary::from_scores(&scores);
        assert_eq!((sum.total, sum.correct, sum.answered), (1000, 666, 1000));
    }
}
