//! Submission → scoring output → score breakdown → reports: the stages after the engine,
//! shared by `eval` and by `score` (re-scoring saved predictions without a model).

use super::lifecycle::Took;
use std::collections::HashMap;

use serde_json::json;

use crate::env::{Environment, Item, PhaseSpec};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::log::RunLog;
use crate::prompt::PromptBuilder;
use crate::report::{
    finetune::finetune_lines, html, DetailedRecord, DetailedResults, ScoreBreakdown, VariantRecord,
};
use crate::run::{PredictionRecord, RunDir, RunFile, RunRecord};
use crate::score::{ItemScore, Method, Metric, Summary};

use super::program::{check_allowed, ProgramFailure, ProgramRun};

pub(super) struct Scoring<'a> {
    pub env: &'a Environment,
    pub phase: &'a PhaseSpec,
    pub run_dir: &'a RunDir,
    /// `--allow-scoring-program`: checked again here so no path runs a program without it.
    pub allow_program: bool,
}

impl Scoring<'_> {
    /// Scores `submitted` against `items` and writes every report of the run.
    pub fn score_and_report(
        &self,
        record: &RunRecord,
        items: &[Item],
        submitted: &[PredictionRecord],
        took: impl Into<Took>,
        log: &mut RunLog,
    ) -> Result<ScoreBreakdown> {
        let by_item = join_predictions(items, submitted)?;
        let missing = by_item.iter().filter(|p| p.is_none()).count();
        if missing > 0 {
            log.line(format!("{missing} item(s) have no prediction and count as unanswered"));
        }
        let (records, summary) = if self.env.manifest.scoring.method == Method::Loglikelihood {
            let builder = PromptBuilder::new(&self.env.manifest.prompt, &self.env.origin)?;
            self.score_multiple_choice(items, &by_item, &builder)?
        } else {
            self.score(items, &by_item)?
        };
        let mut breakdown = ScoreBreakdown::new(&summary, self.env.manifest.scoring.primary, 0.0);
        match &self.env.manifest.scoring.program {
            // The program decides the scores; the built-in view above still gives the per-item
            // detailed results, accuracy, exact match and answer rate.
            Some(spec) => {
                check_allowed(self.env, self.allow_program)?;
                let submission = self.run_dir.file(RunFile::Submission);
                let run = ProgramRun {
                    env: self.env,
                    phase: self.phase,
                    spec,
                    items,
                    submission: &submission,
                };
                let outcome = match run.run(log) {
                    Ok(outcome) => outcome,
                    Err(failure) => {
                        let ProgramFailure { error, log: program_log } = *failure;
                        if let Some(text) = program_log {
                            // The error matters more than a failure to keep the program's log.
                            let _ = self.write_program_log(&text);
                        }
                        return Err(error);
                    }
                };
                self.write_program_log(&outcome.log)?;
                write_json_atomic(&self.run_dir.file(RunFile::Scores), &outcome.scores)?;
                breakdown = breakdown.with_program(&spec.primary, outcome.scores);
            }
            None => self.write_scoring_output(&summary, items.len(), submitted.len(), missing)?,
        }
        breakdown.duration_s = took.into().seconds();
        self.write_reports(record, &records, &breakdown)?;
        log.line(breakdown.accuracy_line());
        log.line(breakdown.table().trim_end());
        Ok(breakdown)
    }

    /// Scores generated predictions in parallel with the environment's extraction and metric.
    fn score(
        &self,
        items: &[Item],
        by_item: &[Option<&PredictionRecord>],
    ) -> Result<(Vec<DetailedRecord>, Summary)> {
        let scorer = self
            .env
            .manifest
            .scoring
            .compile()
            .map_err(|e| Error::env(&self.env.origin, e.to_string()))?;
        // An item with choices is shown with its options lettered by position (ARC's "1".."4"
        // labels included), so the choice metric compares against the right option's letter.
        let letters: Vec<Option<String>> = items
            .iter()
            .map(|it| {
                let i = it.target_index.filter(|_| scorer.metric() == Metric::Choice)?;
                crate::score::option_letter(i).map(String::from)
            })
            .collect();
        let pairs: Vec<(&str, Vec<&str>)> = items
            .iter()
            .zip(by_item)
            .zip(&letters)
            .map(|((it, p), letter)| {
                let targets = match letter {
                    Some(l) => vec![l.as_str()],
                    None => it.targets.iter().map(String::as_str).collect(),
                };
                (p.map_or("", |p| p.prediction.as_str()), targets)
            })
            .collect();
        let scores: Vec<ItemScore> = scorer.score_all(&pairs);
        let variant_names = scorer.variant_names();
        let report: Vec<&str> = scorer.report().iter().map(|m| m.name()).collect();
        let summary = Summary::from_scores_with(&scores, scorer.metric(), scorer.report())
            .with_variants(&scores, &variant_names);
        let records = items
            .iter()
            .zip(by_item)
            .zip(scores)
            .zip(letters)
            .map(|(((it, p), sc), letter)| DetailedRecord {
                id: it.id.clone(),
                prompt: p.map_or_else(String::new, |p| p.prompt.clone()),
                target: letter.unwrap_or_else(|| it.target.clone()),
                prediction: p.map_or_else(String::new, |p| p.prediction.clone()),
                extracted: sc.extracted,
                correct: sc.correct,
                exact: sc.exact,
                answered: sc.answered,
                variants: variant_records(&variant_names, sc.variants),
                choice: None,
                metrics: report.iter().map(|n| n.to_string()).zip(sc.extra).collect(),
            })
            .collect();
        Ok((records, summary))
    }

    /// `scoring_output/`: the scores and a log of how they were computed.
    fn write_scoring_output(
        &self,
        summary: &Summary,
        items: usize,
        predictions: usize,
        missing: usize,
    ) -> Result<()> {
        let scoring_dir = self.run_dir.scoring_output();
        std::fs::create_dir_all(&scoring_dir).map_err(|e| Error::io(&scoring_dir, e))?;
        let mut scores_json = json!({
            "accuracy": summary.accuracy(),
            "exact_match": summary.exact_match(),
            "answer_rate": summary.answer_rate(),
            "correct": summary.correct,
            "exact": summary.exact,
            "answered": summary.answered,
            "total": summary.total,
        });
        for (name, percent) in summary.extra_percent() {
            scores_json[name] = json!(percent);
        }
        if !summary.variants.is_empty() {
            scores_json["variants"] = variants_json(summary);
        }
        if let Some(acc_norm) = summary.acc_norm() {
            scores_json["acc_norm"] = json!(acc_norm);
            scores_json["correct_norm"] = json!(summary.correct_norm);
        }
        write_json_atomic(&self.run_dir.file(RunFile::Scores), &scores_json)?;
        let s = &self.env.manifest.scoring;
        let scoring_log = format!(
            "scorer: built-in\nmethod: {:?}\nmetric: {:?}\nextract: {:?}\nnormalize: {:?}\nstrip_think: {}\nreport: {:?}\nvariants: {:?}\n\
             items: {items}\npredictions: {predictions}\nmissing predictions: {missing}\ncorrect: {}\nexact: {}\nanswered: {}\n",
            s.method, s.metric, s.extract, s.normalize, s.strip_think, s.report, s.variants, summary.correct, summary.exact, summary.answered
        );
        write_atomic(&self.run_dir.file(RunFile::ScoringLog), scoring_log.as_bytes())
    }

    /// `scoring_output/scoring.log`: the Scoring Output log of a program (its stdout and stderr).
    fn write_program_log(&self, text: &str) -> Result<()> {
        let scoring_dir = self.run_dir.scoring_output();
        std::fs::create_dir_all(&scoring_dir).map_err(|e| Error::io(&scoring_dir, e))?;
        write_atomic(&self.run_dir.file(RunFile::ScoringLog), text.as_bytes())
    }

    fn write_reports(
        &self,
        record: &RunRecord,
        records: &[DetailedRecord],
        breakdown: &ScoreBreakdown,
    ) -> Result<()> {
        let dir = self.run_dir;
        write_json_atomic(&dir.file(RunFile::Breakdown), breakdown)?;
        let results = DetailedResults {
            run_id: record.run_id,
            environment: format!("{} v{}", record.environment.name, record.environment.version),
            model: record.model.spec.clone(),
            items: records.to_vec(),
        };
        write_json_atomic(&dir.file(RunFile::DetailedJson), &results)?;
        write_atomic(
            &dir.file(RunFile::DetailedHtml),
            html::render(&results, breakdown).as_bytes(),
        )?;
        if let Some(ft) = &self.env.manifest.finetune {
            let mut text = String::new();
            for line in finetune_lines(records, ft.include, ft.format) {
                text.push_str(&line.to_string());
                text.push('\n');
            }
            write_atomic(&dir.file(RunFile::Finetune), text.as_bytes())?;
        }
        Ok(())
    }
}

/// `[[scoring.variants]]` in `scores.json`: per name, its accuracy and count.
fn variants_json(summary: &Summary) -> serde_json::Value {
    let percent: HashMap<String, f64> = summary.variant_percent().into_iter().collect();
    summary
        .variants
        .iter()
        .map(|(name, correct)| {
            (
                name.clone(),
                json!({"accuracy": percent.get(name), "correct": correct, "total": summary.total}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn variant_records(names: &[&str], scores: Vec<crate::score::VariantScore>) -> Vec<VariantRecord> {
    names
        .iter()
        .zip(scores)
        .map(|(name, v)| VariantRecord {
            name: name.to_string(),
            extracted: v.extracted,
            correct: v.correct,
        })
        .collect()
}

/// Each item's prediction, by id; a prediction for an id the environment lacks is an error.
pub(super) fn join_predictions<'p>(
    items: &[Item],
    predictions: &'p [PredictionRecord],
) -> Result<Vec<Option<&'p PredictionRecord>>> {
    let known: HashMap<&str, usize> =
        items.iter().enumerate().map(|(i, it)| (it.id.as_str(), i)).collect();
    let mut by_item = vec![None; items.len()];
    for p in predictions {
        let i = known.get(p.id.as_str()).ok_or_else(|| Error::UnknownItem { id: p.id.clone() })?;
        by_item[*i] = Some(p);
    }
    Ok(by_item)
}
