//! Per-item verdicts and their aggregation.

use serde::Serialize;

use super::config::{Metric, Primary};
use super::label::choice_label;
use super::normalize::squad;

/// The verdict on one (prediction, target) pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemScore {
    /// Normalised extracted answer; `None` means unanswered.
    pub extracted: Option<String>,
    /// Normalised target, after `target_extract`.
    pub target: String,
    /// Answered and judged equal by the configured metric.
    pub correct: bool,
    /// Raw trimmed response equals the (un-normalised) extracted target.
    pub exact: bool,
    /// An answer was extracted and is non-empty after normalisation.
    pub answered: bool,
    /// The metric's credit in [0, 1]: 0/1 for yes-no metrics, the F1 for
    /// `f1`; the best over the references.
    pub credit: f64,
    /// The credit of each `report` metric, in the order listed.
    pub extra: Vec<f64>,
    /// The verdict of each `[[scoring.variants]]` chain, in manifest order.
    pub variants: Vec<VariantScore>,
}

/// One scoring variant's verdict on an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantScore {
    /// Normalised answer that variant extracted; `None` means unanswered.
    pub extracted: Option<String>,
    pub correct: bool,
}

/// Counts over a run; percentages are derived so they never disagree.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Summary {
    /// Items scored.
    pub total: usize,
    /// Items with `correct`.
    pub correct: usize,
    /// Items with `exact`.
    pub exact: usize,
    /// Items with `answered`.
    pub answered: usize,
    /// Multiple choice only: items right by length-normalised log-likelihood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct_norm: Option<usize>,
    /// Sum of the items' credit when it can be fractional (`f1`); accuracy
    /// is then the mean credit rather than the share of `correct`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<f64>,
    /// `report` metrics: name and sum of credit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, f64)>,
    /// `[[scoring.variants]]`: name and number of items that variant judged correct.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<(String, usize)>,
}

impl Summary {
    /// Tallies a run.
    pub fn from_scores(scores: &[ItemScore]) -> Summary {
        Self::from_scores_with(scores, Metric::Exact, &[])
    }

    /// Tallies a run scored by `metric`, with `report` metrics named.
    pub fn from_scores_with(scores: &[ItemScore], metric: Metric, report: &[Metric]) -> Summary {
        let count = |f: fn(&ItemScore) -> bool| scores.iter().filter(|s| f(s)).count();
        let extra = report
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    m.name().to_owned(),
                    scores.iter().map(|s| s.extra.get(i).copied().unwrap_or(0.0)).sum::<f64>(),
                )
            })
            .collect();
        Summary {
            total: scores.len(),
            correct: count(|s| s.correct),
            exact: count(|s| s.exact),
            answered: count(|s| s.answered),
            correct_norm: None,
            credit: (metric == Metric::F1).then(|| scores.iter().map(|s| s.credit).sum::<f64>()),
            extra,
            variants: Vec::new(),
        }
    }

    /// Adds the tallies of the named `[[scoring.variants]]` (`Scorer::variant_names`).
    pub fn with_variants(mut self, scores: &[ItemScore], names: &[&str]) -> Summary {
        self.variants = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    scores.iter().filter(|s| s.variants.get(i).is_some_and(|v| v.correct)).count(),
                )
            })
            .collect();
        self
    }

    /// `[[scoring.variants]]` as (name, accuracy in percent).
    pub fn variant_percent(&self) -> Vec<(String, f64)> {
        self.variants.iter().map(|(n, c)| (n.clone(), self.percent(*c))).collect()
    }

    /// Percentage (0..=100) of items judged correct; for `f1`, the mean F1.
    pub fn accuracy(&self) -> f64 {
        match self.credit {
            Some(c) => self.percent_f(c),
            None => self.percent(self.correct),
        }
    }

    /// `report` metrics as (name, percent).
    pub fn extra_percent(&self) -> Vec<(String, f64)> {
        self.extra.iter().map(|(n, c)| (n.clone(), self.percent_f(*c))).collect()
    }

    /// Percentage (0..=100) of items whose raw response equals the target.
    pub fn exact_match(&self) -> f64 {
        self.percent(self.exact)
    }

    /// Percentage (0..=100) right by length-normalised log-likelihood (multiple choice only).
    pub fn acc_norm(&self) -> Option<f64> {
        self.correct_norm.map(|n| self.percent(n))
    }

    /// Percentage (0..=100) of items with an extractable answer.
    pub fn answer_rate(&self) -> f64 {
        self.percent(self.answered)
    }

    /// The percentage selected as the Overall Score.
    pub fn primary(&self, p: Primary) -> f64 {
        match p {
            Primary::Accuracy => self.accuracy(),
            Primary::ExactMatch => self.exact_match(),
            Primary::AnswerRate => self.answer_rate(),
            Primary::AccNorm => self.percent(self.correct_norm.unwrap_or(0)),
        }
    }

    // An empty run scores 0 rather than NaN so reports stay printable.
    fn percent(&self, n: usize) -> f64 {
        self.percent_f(n as f64)
    }

    fn percent_f(&self, n: f64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * n / self.total as f64
        }
    }
}

impl Metric {
    /// The name used in manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Numeric => "numeric",
            Self::Contains => "contains",
            Self::Choice => "choice",
            Self::F1 => "f1",
        }
    }

    /// Credit in [0, 1] of a (non-empty) normalised answer against one
    /// normalised target.
    pub(crate) fn credit(self, answer: &str, target: &str) -> f64 {
        match self {
            Self::F1 => token_f1(answer, target),
            _ => f64::from(u8::from(self.matches(answer, target))),
        }
    }

    /// Whether a (non-empty) normalised answer matches the normalised target.
    pub(crate) fn matches(self, answer: &str, target: &str) -> bool {
        match self {
            Self::Choice => {
                choice_label(answer).is_some_and(|a| target_label(target).is_some_and(|t| a == t))
            }
            Self::F1 => token_f1(answer, target) >= 1.0,
            Self::Exact => answer == target,
            Self::Numeric => match (parse_number(answer), parse_number(target)) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * 1f64.max(a.abs()).max(b.abs()),
                _ => answer == target,
            },
            // An empty target is a substring of everything; never credit it.
            Self::Contains => !target.is_empty() && answer.contains(target),
        }
    }
}

/// The option a target names: a 0-based index ("1" → "B") or a label as a
/// response would give it ("B", "(B)").
pub(crate) fn target_label(target: &str) -> Option<String> {
    match target.trim().parse::<usize>() {
        Ok(i) => super::option_letter(i).map(String::from),
        Err(_) => choice_label(target).map(str::to_owned),
    }
}

/// SQuAD token F1: both sides SQuAD-normalised and split on whitespace;
/// overlap counts shared tokens with multiplicity. Two empty sides agree (1),
/// one empty side scores 0, as in the SQuAD v2 script.
pub(crate) fn token_f1(answer: &str, target: &str) -> f64 {
    let (a, t) = (squad(answer), squad(target));
    let (a, t): (Vec<&str>, Vec<&str>) =
        (a.split_whitespace().collect(), t.split_whitespace().collect());
    if a.is_empty() || t.is_empty() {
        return f64::from(u8::from(a == t));
    }
    let mut left: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for w in &t {
        *left.entry(w).or_default() += 1;
    }
    let common = a
        .iter()
        .filter(|w| match left.get_mut(*w) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / a.len() as f64, common as f64 / t.len() as f64);
    2.0 * p * r / (p + r)
}

/// Parses "1,000", "$5", "-$3.50", "+2", "1e3". Only a plain numeric
/// alphabet is accepted so that "inf" or "NaN" never compare as numbers.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits: String = rest.strip_prefix('$').unwrap_or(rest).replace(',', "");
    let plain =
        digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if !plain || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v: f64 = digits.parse().ok()?;
    v.is_finite().then_some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_tolerates_formatting() {
        let m = Metric::Numeric;
        assert!(m.matches("1,000", "1000.0"));
        assert!(m.matches("$5", "5"));
        assert!(m.matches("$1,000.00", "1000"));
        assert!(m.matches("-$3.50", "-3.5"));
        assert!(m.matches("1e3", "1000"));
        assert!(m.matches("0.1", "0.10000000000000001"));
        assert!(!m.matches("1000.01", "1000"));
        assert!(!m.matches("-5", "5"));
    }

    #[test]
    fn numeric_tolerance_is_relative() {
        let m = Metric::Numeric;
        assert!(m.matches("1000000000", "1000000000.5"));
        assert!(!m.matches("1000000000", "1000000002"));
        assert!(!m.matches("0", "0.00001"));
    }

    #[test]
    fn numeric_falls_back_to_string_equality() {
        let m = Metric::Numeric;
        assert!(m.matches("seven", "seven"));
        assert!(!m.matches("seven", "7"));
        assert!(!m.matches("1.2.3", "1.2"));
        assert!(m.matches("inf", "inf"));
        assert!(!m.matches("inf", "infinity"));
    }

    #[test]
    fn parse_number_rejects_non_numbers() {
        assert_eq!(parse_number("$-5"), None);
        assert_eq!(parse_number("nan"), None);
        assert_eq!(parse_number("1e999"), None);
        assert_eq!(parse_number("5 apples"), None);
        assert_eq!(parse_number(" -1,234.5 "), Some(-1234.5));
    }

    #[test]
    fn exact_and_contains() {
        assert!(Metric::Exact.matches("paris", "paris"));
        assert!(!Metric::Exact.matches("paris.", "paris"));
        assert!(Metric::Contains.matches("the capital is paris.", "paris"));
        assert!(!Metric::Contains.matches("paris", "the capital is paris"));
        assert!(!Metric::Contains.matches("anything", ""));
    }

    fn item(correct: bool, exact: bool, answered: bool) -> ItemScore {
        ItemScore {
            extracted: None,
            target: String::new(),
            correct,
            exact,
            answered,
            credit: f64::from(u8::from(correct)),
            extra: Vec::new(),
            variants: Vec::new(),
        }
    }

    #[test]
    fn summary_percentages() {
        let scores = [
            item(true, true, true),
            item(true, false, true),
            item(false, false, true),
            item(false, false, false),
        ];
        let s = Summary::from_scores(&scores);
        assert_eq!(
            s,
            Summary {
                total: 4,
                correct: 2,
                exact: 1,
                answered: 3,
                correct_norm: None,
                credit: None,
                extra: Vec::new(),
                variants: Vec::new(),
            }
        );
        assert_eq!(s.accuracy(), 50.0);
        assert_eq!(s.exact_match(), 25.0);
        assert_eq!(s.answer_rate(), 75.0);
        assert_eq!(s.primary(Primary::Accuracy), 50.0);
        assert_eq!(s.primary(Primary::ExactMatch), 25.0);
        assert_eq!(s.primary(Primary::AnswerRate), 75.0);
        let json = serde_json::to_string(&s).expect("serialise");
        assert_eq!(json, r#"{"total":4,"correct":2,"exact":1,"answered":3}"#);
    }

    #[test]
    fn summary_of_nothing_is_zero_not_nan() {
        let s = Summary::from_scores(&[]);
        assert_eq!(s.total, 0);
        for p in [Primary::Accuracy, Primary::ExactMatch, Primary::AnswerRate] {
            assert_eq!(s.primary(p), 0.0);
        }
    }

    #[test]
    fn summary_thirds_are_not_rounded() {
        let s = Summary::from_scores(&[
            item(true, true, true),
            item(false, false, false),
            item(false, false, false),
        ]);
        assert!((s.accuracy() - 100.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn f1_is_squad_token_overlap() {
        assert_eq!(token_f1("The Cotswolds", "cotswolds"), 1.0);
        // 1 shared token of 2 predicted and 3 gold: p = 1/2, r = 1/3, F1 = 2/5.
        assert!(
            (token_f1("Mark Twain", "Samuel Langhorne Clemens Twain") - 2.0 * 0.5 * 0.25 / 0.75)
                .abs()
                < 1e-12
        );
        assert!((token_f1("Mark Twain", "Twain Samuel Clemens") - 0.4).abs() < 1e-12);
        // Multiplicity: "a a b" vs "a b b" (no articles) share two tokens: F1 = 2/3.
        assert!((token_f1("x x y", "x y y") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1("the", "a"), 1.0);
        assert_eq!(token_f1("paris", "the"), 0.0);
        assert_eq!(token_f1("lyon", "paris"), 0.0);
        assert!(
            Metric::F1.matches("Paris.", "paris") && !Metric::F1.matches("Paris France", "paris")
        );
        assert!((Metric::F1.credit("Paris France", "paris") - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn choice_compares_labels_and_indices() {
        let m = Metric::Choice;
        assert!(m.matches("**B**", "B"));
        assert!(m.matches("The answer is (B).", "1"));
        assert!(m.matches("A", "0"));
        assert!(!m.matches("A dog can swim.", "A"));
        assert!(!m.matches("B", "A"));
        assert_eq!(target_label("3"), Some("D".into()));
        assert_eq!(target_label("(C)"), Some("C".into()));
        assert_eq!(target_label("99"), None);
    }

    #[test]
    fn f1_accuracy_is_mean_credit() {
        let mut a = item(true, true, true);
        a.credit = 1.0;
        let mut b = item(false, false, true);
        b.credit = 0.4;
        b.extra = vec![1.0];
        let s = Summary::from_scores_with(&[a, b], Metric::F1, &[Metric::Exact]);
        assert!((s.accuracy() - 70.0).abs() < 1e-12);
        assert_eq!(s.correct, 1);
        assert_eq!(s.extra_percent(), vec![("exact".to_string(), 50.0)]);
    }
}
