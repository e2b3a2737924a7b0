//! Multiple choice by log-likelihood: every option is scored as a continuation of the prompt,
//! the likeliest one is the prediction (`acc`), and per-character likelihood gives `acc_norm`.

use super::{Finished, Scoring, Stages};
use crate::engine::{FinishReason, Generator, LoglikRequest};
use crate::env::Item;
use crate::error::{Error, Result};
use crate::log::{RunLog, Work};
use crate::prompt::{Prompt, PromptBuilder};
use crate::report::{ChoiceRecord, DetailedRecord, OptionRecord};
use crate::run::PredictionRecord;
use crate::score::choice::{per_char, pick, score_pick};
use crate::score::Summary;

/// Option lengths in characters, without the separator before them (lm-evaluation-harness's
/// `acc_norm` divides by the length of the option text).
fn option_lengths(continuations: &[String]) -> Vec<usize> {
    continuations.iter().map(|c| c.trim_start().chars().count()).collect()
}

fn continuations(item: &Item, builder: &PromptBuilder) -> Result<Vec<String>> {
    (0..item.choices.len()).map(|i| builder.render_choice(item, i)).collect()
}

impl Stages<'_> {
    /// Scores every option of every item; journals an item once all its options are scored.
    pub(super) fn score_options(
        &self,
        engine: &mut dyn Generator,
        items: &[Item],
        prompts: &[Prompt],
        builder: &PromptBuilder,
        log: &mut RunLog,
    ) -> Result<Vec<PredictionRecord>> {
        let mut finished =
            Finished::new(self.run_dir, items, self.journaled, Work::Requests(0), log)?;
        let mut owner = Vec::new();
        let mut requests = Vec::new();
        for (i, (item, prompt)) in items.iter().zip(prompts).enumerate() {
            if finished.has(i) {
                continue;
            }
            for (c, continuation) in continuations(item, builder)?.into_iter().enumerate() {
                owner.push((i, c));
                requests.push(LoglikRequest {
                    index: requests.len(),
                    context: prompt.text.clone(),
                    continuation,
                    truncate: self.settings.truncate,
                });
            }
        }
        let mut logprobs: Vec<Vec<Option<f64>>> =
            items.iter().map(|it| vec![None; it.choices.len()]).collect();
        let mut context_tokens = vec![0; items.len()];
        let mut dropped = vec![0; items.len()];
        engine.loglikelihood(requests, &mut |out| {
            let (i, c) = owner[out.index];
            logprobs[i][c] = Some(out.logprob);
            context_tokens[i] = out.context_tokens;
            dropped[i] = dropped[i].max(out.context_dropped);
            if logprobs[i].iter().all(Option::is_some) {
                let lps: Vec<f64> = logprobs[i].iter().flatten().copied().collect();
                let best = pick(&lps, &vec![1; lps.len()]).map_or(0, |(raw, _)| raw);
                let rec = PredictionRecord {
                    id: items[i].id.clone(),
                    prompt: prompts[i].text.clone(),
                    prediction: items[i].choices[best].clone(),
                    tokens_in: context_tokens[i],
                    tokens_out: 0,
                    tokens_dropped: dropped[i],
                    finish_reason: Some(FinishReason::Loglikelihood),
                    choice_logprobs: Some(lps),
                };
                finished.add(i, rec)?;
            }
            Ok(())
        })?;
        finished.into_item_order(items)
    }
}

impl Scoring<'_> {
    /// `acc` and `acc_norm` from the submitted log-likelihoods.
    pub(super) fn score_multiple_choice(
        &self,
        items: &[Item],
        by_item: &[Option<&PredictionRecord>],
        builder: &PromptBuilder,
    ) -> Result<(Vec<DetailedRecord>, Summary)> {
        let mut scores = Vec::with_capacity(items.len());
        let mut records = Vec::with_capacity(items.len());
        for (item, p) in items.iter().zip(by_item) {
            let target =
                item.target_index.ok_or_else(|| Error::NoChoices { item: item.id.clone() })?;
            let lengths = option_lengths(&continuations(item, builder)?);
            let logprobs = match p.and_then(|p| p.choice_logprobs.as_deref()) {
                Some(lps) if lps.len() == item.choices.len() => Some(lps),
                Some(lps) => {
                    return Err(Error::ChoiceCount {
                        item: item.id.clone(),
                        logprobs: lps.len(),
                        choices: item.choices.len(),
                    })
                }
                None => None,
            };
            let picked = logprobs.and_then(|lps| pick(lps, &lengths));
            let score = score_pick(picked, target, &item.choice_labels, &item.choices[target]);
            records.push(DetailedRecord {
                id: item.id.clone(),
                prompt: p.map_or_else(String::new, |p| p.prompt.clone()),
                target: score.item.target.clone(),
                prediction: p.map_or_else(String::new, |p| p.prediction.clone()),
                extracted: score.item.extracted.clone(),
                correct: score.item.correct,
                exact: score.item.exact,
                answered: score.item.answered,
                choice: Some(choice_record(item, target, logprobs, &lengths, picked)),
                ..DetailedRecord::default()
            });
            scores.push(score);
        }
        Ok((records, Summary::from_choice_scores(&scores)))
    }
}

/// The options as the report shows them: each one's log-likelihood, raw and per character, and
/// both picks.
fn choice_record(
    item: &Item,
    target: usize,
    logprobs: Option<&[f64]>,
    lengths: &[usize],
    picked: Option<(usize, usize)>,
) -> ChoiceRecord {
    let options = item
        .choices
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let loglik = logprobs.and_then(|lps| lps.get(i).copied());
            OptionRecord {
                label: item.choice_labels.get(i).cloned().unwrap_or_default(),
                text: text.clone(),
                loglik,
                loglik_norm: loglik.map(|lp| per_char(lp, lengths.get(i).copied().unwrap_or(1))),
            }
        })
        .collect();
    ChoiceRecord {
        options,
        target,
        acc_pick: picked.map(|(raw, _)| raw),
        acc_norm_pick: picked.map(|(_, norm)| norm),
    }
}
