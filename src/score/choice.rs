//! Multiple choice by log-likelihood: which option a model picks, raw and length-normalised
//! (lm-evaluation-harness's `acc` and `acc_norm`).

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
    let norm = first_max(logprobs.iter().zip(lengths).map(|(lp, &n)| lp / n.max(1) as f64))?;
    Some((raw, norm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_can_change_the_pick() {
        // Option 1 is likelier in total, option 0 per character.
        assert_eq!(pick(&[-6.0, -5.0], &[10, 4]), Some((1, 0)));
        assert_eq!(pick(&[-1.0, -1.0, -3.0], &[1, 1, 1]), Some((0, 0)));
        assert_eq!(pick(&[], &[]), None);
    }
}
