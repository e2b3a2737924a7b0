//! Per-item verdicts and their aggregation.

use serde::Serialize;

use super::config::{Metric, Primary};

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
}

/// Counts over a run; percentages are derived so they never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
}

impl Summary {
    /// Tallies a run.
    pub fn from_scores(scores: &[ItemScore]) -> Summary {
        let count = |f: fn(&ItemScore) -> bool| scores.iter().filter(|s| f(s)).count();
        Summary {
            total: scores.len(),
            correct: count(|s| s.correct),
            exact: count(|s| s.exact),
            answered: count(|s| s.answered),
            correct_norm: None,
        }
    }

    /// Percentage (0..=100) of items judged correct.
    pub fn accuracy(&self) -> f64 {
        self.percent(self.correct)
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
        if self.total == 0 {
            0.0
        } else {
            100.0 * n as f64 / self.total as f64
        }
    }
}

impl Metric {
    /// Whether a (non-empty) normalised answer matches the normalised target.
    pub(crate) fn matches(self, answer: &str, target: &str) -> bool {
        match self {
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

/// Parses "1,000", "$5", "-$3.50", "+2", "1e3". Only a plain numeric
/// alphabet is accepted so that "inf" or "NaN" never compare as numbers.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits: String = rest.strip_prefix('$').unwrap_or(rest).replace(',', "");
    let plain = digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
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
}
