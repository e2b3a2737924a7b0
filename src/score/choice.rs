//! Multiple choice by log-likelihood: which option a model picks, raw and length-normalised
//! (lm-evaluation-harness's `acc` and `acc_norm`), and each item's verdict for the same
//! [`Summary`] generation tallies into.

use super::{ItemScore, Metric, Summary};

/// Index of the largest value; ties go to the first, as numpy's argmax does.
fn first_max(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// (pick by log-likelihood, pick by log-likelihood per character of the option). `lengths` are
/// the options' lengths in characters, without the space that separates them from the prompt.
pub fn pick(logprobs: &[f64], lengths: &[usize]) -> Option<(usize, usize)> {
    let raw = first_max(logprobs.iter().copied())?;
    let norm = first_max(logprobs.iter().zip(lengths).map(|(&lp, &n)| per_char(lp, n)))?;
    Some((raw, norm))
}

/// The value `acc_norm` compares: an option's log-likelihood per character of its text.
pub fn per_char(logprob: f64, length: usize) -> f64 {
    logprob / length.max(1) as f64
}

/// One multiple-choice item's verdict: `item` by the raw pick (`acc`; an unanswered item has
/// no pick), and whether the length-normalised pick is right (`acc_norm`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceScore {
    pub item: ItemScore,
    pub correct_norm: bool,
}

/// The verdict on `picked` (from [`pick`]) for an item whose right option is `target`; the
/// options' `labels` name the pick, `target_text` the right option.
pub fn score_pick(
    picked: Option<(usize, usize)>,
    target: usize,
    labels: &[String],
    target_text: &str,
) -> ChoiceScore {
    let correct = picked.is_some_and(|(raw, _)| raw == target);
    ChoiceScore {
        item: ItemScore {
            extracted: picked.and_then(|(raw, _)| labels.get(raw).cloned()),
            target: target_text.to_string(),
            correct,
            exact: correct,
            answered: picked.is_some(),
            credit: f64::from(u8::from(correct)),
            extra: Vec::new(),
            variants: Vec::new(),
        },
        correct_norm: picked.is_some_and(|(_, norm)| norm == target),
    }
}

impl Summary {
    /// Tallies a multiple-choice run: [`Summary::from_scores_with`] on the raw picks, with
    /// `correct_norm` counted beside.
    pub fn from_choice_scores(scores: &[ChoiceScore]) -> Summary {
        let items: Vec<ItemScore> = scores.iter().map(|s| s.item.clone()).collect();
        let mut summary = Summary::from_scores_with(&items, Metric::Choice, &[]);
        summary.correct_norm = Some(scores.iter().filter(|s| s.correct_norm).count());
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_summaries_count_acc_and_acc_norm_like_generation() {
        let labels: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let scores = [
            score_pick(Some((1, 1)), 1, &labels, "b"),
            score_pick(Some((1, 0)), 0, &labels, "a"),
            score_pick(Some((2, 1)), 1, &labels, "b"),
            score_pick(None, 2, &labels, "c"),
        ];
        assert_eq!(scores[0].item.extracted.as_deref(), Some("B"));
        assert_eq!(scores[3].item.extracted, None);
        let s = Summary::from_choice_scores(&scores);
        assert_eq!((s.total, s.correct, s.exact, s.answered), (4, 1, 1, 3));
        assert_eq!((s.correct_norm, s.credit), (Some(3), None));
    }

    #[test]
    fn normalisation_can_change_the_pick() {
        // Option 1 is likelier in total, option 0 per character.
        assert_eq!(pick(&[-6.0, -5.0], &[10, 4]), Some((1, 0)));
        assert_eq!(pick(&[-1.0, -1.0, -3.0], &[1, 1, 1]), Some((0, 0)));
        assert_eq!(pick(&[], &[]), None);
    }
}
