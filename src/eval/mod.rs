//! `benchgen eval`: environment → items → prompts → engine → predictions journal → submission
//! archive → scorer → scoring output → score breakdown → reports. Each stage lives in its own
//! module; this file only wires them and keeps the run record honest (Failed with the error
//! when anything after the run's creation goes wrong).

mod choice;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::device::{dtype_name, parse_device, parse_dtype};
use crate::engine::{GenParams, GenRequest, Generator, LocalEngine};
use crate::env::{Environment, Item};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::log::RunLog;
use crate::model::{spec, LoadedModel};
use crate::prompt::{Prompt, PromptBuilder};
use crate::report::{finetune::finetune_lines, html, DetailedRecord, DetailedResults, ScoreBreakdown};
use crate::rng::SplitMix64;
use crate::run::record::{now_rfc3339, EnvironmentInfo, ModelInfo, Settings};
use crate::run::submission::{read_submission, write_submission};
use crate::run::{Journal, PredictionRecord, RunRecord, RunStatus, RunsDir};
use crate::score::{ItemScore, Method, Summary};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Environment directory or .zip; `None` → the embedded one.
    pub env: Option<PathBuf>,
    /// Model spec; `None` → the embedded one.
    pub model: Option<String>,
    pub phase: Option<String>,
    pub device: String,
    pub dtype: String,
    pub batch_size: usize,
    pub limit: Option<usize>,
    pub seed: u64,
    pub runs_dir: PathBuf,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            env: None,
            model: None,
            phase: None,
            device: "cpu".into(),
            dtype: "auto".into(),
            batch_size: 16,
            limit: None,
            seed: 0,
            runs_dir: PathBuf::from("runs"),
        }
    }
}

pub struct EvalOutcome {
    pub run_id: u64,
    pub run_dir: PathBuf,
    pub breakdown: ScoreBreakdown,
}

/// Runs a whole evaluation and returns where its files are.
pub fn run_eval(opts: &EvalOptions, log: &mut RunLog) -> Result<EvalOutcome> {
    let started = Instant::now();
    // Cheap checks first, so a typo does not leave a Failed run behind.
    let env = match &opts.env {
        Some(p) => Environment::open(p)?,
        None => Environment::embedded()?,
    };
    let phase = env.phase(opts.phase.as_deref())?.clone();
    let device = parse_device(&opts.device)?;
    let dtype = parse_dtype(&opts.dtype, &device)?;
    let model_spec = spec::describe(opts.model.as_deref());
    let gen = &env.manifest.generation;
    let params = GenParams {
        max_new_tokens: gen.max_new_tokens,
        stop: gen.stop.clone(),
        temperature: gen.temperature,
        top_k: gen.top_k,
        top_p: gen.top_p,
    };

    let runs = RunsDir::new(&opts.runs_dir);
    let (run_id, run_dir) = runs.allocate()?;
    let mut record = RunRecord {
        run_id,
        status: RunStatus::Running,
        model: ModelInfo { spec: model_spec.clone(), origin: model_spec.clone(), parameters: None },
        environment: EnvironmentInfo {
            name: env.manifest.name.clone(),
            version: env.manifest.version.clone(),
            origin: env.origin.clone(),
            phase: phase.name.clone(),
        },
        created: now_rfc3339(),
        finished: None,
        duration_s: None,
        submission: None,
        settings: Settings {
            device: opts.device.clone(),
            dtype: dtype_name(dtype).into(),
            batch_size: opts.batch_size,
            limit: opts.limit,
            seed: opts.seed,
            generation: params.clone(),
        },
        items: None,
        overall_score: None,
        error: None,
        benchgen_version: env!("CARGO_PKG_VERSION").into(),
    };
    let record_path = run_dir.join("run.json");
    write_json_atomic(&record_path, &record)?;
    log.attach_file(&run_dir.join("log.txt"))?;
    log.line(format!("Status: {}", record.status));
    log.line(format!("Run ID: {run_id}"));
    log.line(format!("Model: {model_spec}"));
    log.line(format!("Environment: {} v{} (phase {})", env.manifest.name, env.manifest.version, phase.name));
    log.line(format!("Created: {}", record.created));

    let ctx = Stages { env: &env, phase: &phase.name, opts, params, device, dtype, run_dir: &run_dir };
    match ctx.run(run_id, &mut record, log, started) {
        Ok(breakdown) => {
            record.status = RunStatus::Completed;
            record.overall_score = Some(breakdown.overall_score);
            finish(&record_path, &mut record, started)?;
            log.line(format!("Status: {}", record.status));
            Ok(EvalOutcome { run_id, run_dir, breakdown })
        }
        Err(e) => {
            record.status = RunStatus::Failed;
            record.error = Some(e.to_string());
            // The original error matters more than a failure to record it.
            let _ = finish(&record_path, &mut record, started);
            log.line(format!("Status: {} ({e})", record.status));
            Err(e)
        }
    }
}

/// Each item's prediction, by id; a prediction for an id the environment lacks is an error.
fn join_predictions<'p>(items: &[Item], predictions: &'p [PredictionRecord]) -> Result<Vec<Option<&'p PredictionRecord>>> {
    let known: HashMap<&str, usize> = items.iter().enumerate().map(|(i, it)| (it.id.as_str(), i)).collect();
    let mut by_item = vec![None; items.len()];
    for p in predictions {
        let i = known.get(p.id.as_str()).ok_or_else(|| {
            Error::Invalid(format!("submission has a prediction for unknown item id \"{}\"", p.id))
        })?;
        by_item[*i] = Some(p);
    }
    Ok(by_item)
}

fn finish(path: &Path, record: &mut RunRecord, started: Instant) -> Result<()> {
    record.finished = Some(now_rfc3339());
    record.duration_s = Some(started.elapsed().as_secs_f64());
    write_json_atomic(path, record)
}

struct Stages<'a> {
    env: &'a Environment,
    phase: &'a str,
    opts: &'a EvalOptions,
    params: GenParams,
    device: candle_core::Device,
    dtype: candle_core::DType,
    run_dir: &'a Path,
}

/// Item seeds depend on the run seed and the item id only, never on batch-mates or order.
fn item_seed(run_seed: u64, id: &str) -> u64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    SplitMix64::new(run_seed ^ h).next_u64()
}

impl Stages<'_> {
    fn run(&self, run_id: u64, record: &mut RunRecord, log: &mut RunLog, started: Instant) -> Result<ScoreBreakdown> {
        log.line(format!("Loading benchmark data: {} phase \"{}\"", self.env.manifest.name, self.phase));
        let phase = self.env.phase(Some(self.phase))?;
        let mut items = self.env.load_items(phase)?;
        if let Some(limit) = self.opts.limit {
            if limit == 0 {
                return Err(Error::Invalid("--limit 0 leaves nothing to evaluate".into()));
            }
            items.truncate(limit);
        }
        record.items = Some(items.len());
        log.line(format!("Loaded {} items", items.len()));
        let builder = PromptBuilder::new(&self.env.manifest.prompt, &self.env.origin)?;
        // Template errors surface before the (slower) model load.
        for it in &items {
            builder.render_body(it)?;
        }

        log.line(format!("Loading model: {}", record.model.spec));
        let checkpoint = spec::resolve(self.opts.model.as_deref())?;
        let model = LoadedModel::load(&checkpoint, &self.device, self.dtype)?;
        record.model.origin = model.origin.clone();
        record.model.parameters = Some(model.num_parameters);
        write_json_atomic(&self.run_dir.join("run.json"), record)?;
        log.line(format!(
            "Model loaded: {} parameters, device {}, dtype {}",
            model.num_parameters, self.opts.device, record.settings.dtype
        ));
        let chat = builder.chat_template(model.chat_template.as_ref(), &model.origin)?;
        if chat.is_some() {
            log.line("Applying the model's chat template");
        }
        let prompts = items.iter().map(|it| builder.render(it, chat)).collect::<Result<Vec<_>>>()?;

        let multiple_choice = self.env.manifest.scoring.method == Method::Loglikelihood;
        let predictions = if multiple_choice {
            self.score_options(model, &items, &prompts, &builder, log)?
        } else {
            self.generate(model, &items, &prompts, log)?
        };
        let submission = self.run_dir.join("submission.zip");
        let metadata = json!({
            "run_id": run_id,
            "model": record.model.spec,
            "environment": {"name": record.environment.name, "version": record.environment.version,
                            "phase": record.environment.phase},
            "created": record.created,
            "items": predictions.len(),
            "benchgen_version": record.benchgen_version,
        });
        write_submission(&submission, &predictions, &metadata)?;
        record.submission = Some("submission.zip".into());

        log.line("Scoring submission");
        let submitted = read_submission(&submission)?;
        let by_item = join_predictions(&items, &submitted)?;
        let (records, summary) = if multiple_choice {
            self.score_multiple_choice(&items, &by_item, &builder)?
        } else {
            self.score(&items, &by_item)?
        };
        self.write_scoring_output(&summary, items.len(), submitted.len(), &by_item)?;
        let breakdown =
            ScoreBreakdown::new(&summary, self.env.manifest.scoring.primary, started.elapsed().as_secs_f64());
        self.write_reports(run_id, record, &records, &breakdown)?;
        log.line(breakdown.accuracy_line());
        log.line(breakdown.table().trim_end());
        Ok(breakdown)
    }

    fn generate(
        &self,
        model: LoadedModel,
        items: &[Item],
        prompts: &[Prompt],
        log: &mut RunLog,
    ) -> Result<Vec<PredictionRecord>> {
        let requests = items
            .iter()
            .zip(prompts)
            .enumerate()
            .map(|(index, (item, prompt))| GenRequest {
                index,
                prompt: prompt.text.clone(),
                add_special_tokens: prompt.add_special_tokens,
                params: self.params.clone(),
                seed: item_seed(self.opts.seed, &item.id),
            })
            .collect();
        let mut engine = LocalEngine::new(model, self.opts.batch_size);
        let mut journal = Journal::create(&self.run_dir.join("predictions.jsonl"))?;
        let mut done: Vec<Option<PredictionRecord>> = vec![None; items.len()];
        let total = items.len();
        let mut finished = 0;
        engine.generate(requests, &mut |out| {
            let rec = PredictionRecord {
                id: items[out.index].id.clone(),
                prompt: prompts[out.index].text.clone(),
                prediction: out.text,
                tokens_in: out.tokens_in,
                tokens_out: out.token_ids.len(),
                finish_reason: out.finish_reason,
                choice_logprobs: None,
            };
            journal.append(&rec)?;
            done[out.index] = Some(rec);
            finished += 1;
            log.progress(finished, total);
            Ok(())
        })?;
        journal.sync()?;
        done.into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| Error::Invalid(format!("engine returned no output for item {}", items[i].id))))
            .collect()
    }

    /// Scores generated predictions in parallel with the environment's extraction and metric.
    fn score(&self, items: &[Item], by_item: &[Option<&PredictionRecord>]) -> Result<(Vec<DetailedRecord>, Summary)> {
        let scorer = self
            .env
            .manifest
            .scoring
            .compile()
            .map_err(|e| Error::env(&self.env.origin, e.to_string()))?;
        let pairs: Vec<(&str, &str)> = items
            .iter()
            .zip(by_item)
            .map(|(it, p)| (p.map_or("", |p| p.prediction.as_str()), it.target.as_str()))
            .collect();
        let scores: Vec<ItemScore> = scorer.score_all(&pairs);
        let summary = Summary::from_scores(&scores);
        let records = items
            .iter()
            .zip(by_item)
            .zip(scores)
            .map(|((it, p), sc)| DetailedRecord {
                id: it.id.clone(),
                prompt: p.map_or_else(String::new, |p| p.prompt.clone()),
                target: it.target.clone(),
                prediction: p.map_or_else(String::new, |p| p.prediction.clone()),
                extracted: sc.extracted,
                correct: sc.correct,
                exact: sc.exact,
                answered: sc.answered,
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
        by_item: &[Option<&PredictionRecord>],
    ) -> Result<()> {
        let missing = by_item.iter().filter(|p| p.is_none()).count();
        let scoring_dir = self.run_dir.join("scoring_output");
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
        if let Some(acc_norm) = summary.acc_norm() {
            scores_json["acc_norm"] = json!(acc_norm);
            scores_json["correct_norm"] = json!(summary.correct_norm);
        }
        write_json_atomic(&scoring_dir.join("scores.json"), &scores_json)?;
        let s = &self.env.manifest.scoring;
        let scoring_log = format!(
            "scorer: built-in\nmethod: {:?}\nmetric: {:?}\nextract: {:?}\nnormalize: {:?}\n\
             items: {items}\npredictions: {predictions}\nmissing predictions: {missing}\ncorrect: {}\nexact: {}\nanswered: {}\n",
            s.method, s.metric, s.extract, s.normalize, summary.correct, summary.exact, summary.answered
        );
        write_atomic(&scoring_dir.join("scoring.log"), scoring_log.as_bytes())
    }

    fn write_reports(
        &self,
        run_id: u64,
        record: &RunRecord,
        records: &[DetailedRecord],
        breakdown: &ScoreBreakdown,
    ) -> Result<()> {
        let dir = self.run_dir;
        write_json_atomic(&dir.join("score_breakdown.json"), breakdown)?;
        let results = DetailedResults {
            run_id,
            environment: format!("{} v{}", record.environment.name, record.environment.version),
            model: record.model.spec.clone(),
            items: records.to_vec(),
        };
        write_json_atomic(&dir.join("detailed_results.json"), &results)?;
        write_atomic(&dir.join("detailed_results.html"), html::render(&results, breakdown).as_bytes())?;
        if let Some(ft) = &self.env.manifest.finetune {
            let mut text = String::new();
            for line in finetune_lines(records, ft.include, ft.format) {
                text.push_str(&line.to_string());
                text.push('\n');
            }
            write_atomic(&dir.join("finetune.jsonl"), text.as_bytes())?;
        }
        Ok(())
    }
}
