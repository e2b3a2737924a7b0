//! The Score Breakdown: Overall Score, accuracy, exact match, answer rate, duration.

use serde::{Deserialize, Serialize};

use crate::score::{Primary, Summary};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    /// The environment's primary metric, in percent.
    pub overall_score: f64,
    /// Which metric the Overall Score is.
    pub primary: String,
    pub accuracy: f64,
    pub exact_match: f64,
    pub answer_rate: f64,
    /// Multiple choice by log-likelihood: accuracy with length-normalised scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    /// `[scoring] report` metrics by name (e.g. `f1`), in percent (mean credit).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Every score an environment's scoring program reported, as it reported them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub program_scores: std::collections::BTreeMap<String, f64>,
    /// `[[scoring.variants]]` accuracies by name, in percent, next to `accuracy` (the main chain).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub variants: std::collections::BTreeMap<String, f64>,
    pub duration_s: f64,
    pub correct: usize,
    pub exact: usize,
    pub answered: usize,
    pub total: usize,
}

impl ScoreBreakdown {
    pub fn new(summary: &Summary, primary: Primary, duration_s: f64) -> Self {
        let primary_name = match primary {
            Primary::Accuracy => "accuracy",
            Primary::ExactMatch => "exact_match",
            Primary::AnswerRate => "answer_rate",
            Primary::AccNorm => "acc_norm",
        };
        Self {
            overall_score: summary.primary(primary),
            primary: primary_name.to_string(),
            accuracy: summary.accuracy(),
            exact_match: summary.exact_match(),
            answer_rate: summary.answer_rate(),
            acc_norm: summary.acc_norm(),
            metrics: summary.extra_percent().into_iter().collect(),
            program_scores: Default::default(),
            variants: summary.variant_percent().into_iter().collect(),
            duration_s,
            correct: summary.correct,
            exact: summary.exact,
            answered: summary.answered,
            total: summary.total,
        }
    }

    /// The Overall Score from a scoring program's `primary` key (fractions in [0, 1] shown as
    /// percentages), with all its scores kept.
    pub fn with_program(
        mut self,
        primary: &str,
        scores: std::collections::BTreeMap<String, f64>,
    ) -> Self {
        if let Some(x) = scores.get(primary) {
            self.overall_score = crate::score::program::as_percent(*x);
        }
        self.primary = primary.to_string();
        self.program_scores = scores;
        self
    }

    /// The platform's closing log line: `accuracy=26.00% correct=26/100`, then each scoring
    /// variant's accuracy (`flexible-extract=30.00%`).
    pub fn accuracy_line(&self) -> String {
        let mut line =
            format!("accuracy={:.2}% correct={}/{}", self.accuracy, self.correct, self.total);
        for (name, acc) in &self.variants {
            line.push_str(&format!(" {name}={acc:.2}%"));
        }
        line
    }

    /// The breakdown's rows, label and value, in the order the table and the web page show them.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![("Overall Score".to_string(), format!("{:.2}", self.overall_score))];
        rows.extend(
            self.program_scores.iter().map(|(k, v)| (format!("program: {k}"), format!("{v}"))),
        );
        rows.push(("Accuracy".into(), format!("{:.2}%", self.accuracy)));
        if let Some(a) = self.acc_norm {
            rows.push(("Acc Norm".into(), format!("{a:.2}%")));
        }
        rows.extend(self.metrics.iter().map(|(k, v)| (k.to_uppercase(), format!("{v:.2}%"))));
        rows.extend(self.variants.iter().map(|(k, v)| (k.clone(), format!("{v:.2}%"))));
        rows.extend([
            ("Exact Match".into(), format!("{:.2}%", self.exact_match)),
            ("Answer Rate".into(), format!("{:.2}%", self.answer_rate)),
            ("Duration".into(), format!("{:.2}s", self.duration_s)),
        ]);
        rows
    }

    /// A small aligned table for terminals and log files.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).max(14);
        let mut out = String::from("Score Breakdown\n");
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$} {v:>10}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_table_show_the_numbers() {
        let s = Summary {
            total: 100,
            correct: 26,
            exact: 20,
            answered: 90,
            correct_norm: None,
            ..Summary::default()
        };
        let b = ScoreBreakdown::new(&s, Primary::Accuracy, 1.5);
        assert_eq!(b.accuracy_line(), "accuracy=26.00% correct=26/100");
        assert_eq!(b.overall_score, 26.0);
        let t = b.table();
        assert!(
            t.contains("Exact Match")
                && t.contains("20.00%")
                && t.contains("90.00%")
                && t.contains("1.50s"),
            "{t}"
        );
        let b = ScoreBreakdown::new(&s, Primary::AnswerRate, 1.5);
        assert_eq!(b.overall_score, 90.0);
        assert_eq!(b.primary, "answer_rate");
    }

    #[test]
    fn variants_are_reported_next_to_accuracy() {
        let s = Summary {
            total: 4,
            correct: 1,
            variants: vec![("flexible-extract".into(), 3)],
            ..Summary::default()
        };
        let b = ScoreBreakdown::new(&s, Primary::Accuracy, 0.0);
        assert_eq!(b.overall_score, 25.0);
        assert_eq!(b.variants.get("flexible-extract"), Some(&75.0));
        assert_eq!(b.accuracy_line(), "accuracy=25.00% correct=1/4 flexible-extract=75.00%");
        assert!(b.table().contains("flexible-extract     75.00%"), "{}", b.table());
        let json = serde_json::to_value(&b).expect("serialises");
        assert_eq!(json["variants"]["flexible-extract"], 75.0);
    }
}
