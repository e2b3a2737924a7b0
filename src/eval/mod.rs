//! `benchgen eval`: environment → items → prompts → engine → predictions journal → submission
//! archive → scorer → scoring output → score breakdown → reports. Each stage lives in its own
//! module; this file only wires them and keeps the run record honest (Failed with the error
//! when anything after the run's creation goes wrong).

mod choice;
mod engines;
mod finished;
mod lifecycle;
mod merge;
mod program;
mod rescore;
mod resume;
mod scoring;
mod verify;

use engines::Prepared;
use finished::Finished;
pub use lifecycle::{abandon_active_run, remove_run, resume_command, RUN_ID_LINE};
use lifecycle::{environment_info, open_env, ActiveRun};
pub use merge::{merge_runs, MergeSelection};
pub use program::ALLOW_FLAG;
pub use rescore::{run_score, SavedPredictions, ScoreOptions};
pub use resume::resume_eval;
use scoring::Scoring;
pub use verify::{verify_run, Difference, VerifyReport};

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::device::{DtypeSpec, WeightType};
use crate::engine::sampling;
use crate::engine::{GenParams, GenRequest, Generator};
use crate::env::{EnvSources, Environment, Item};
use crate::error::{Error, Result, SettingError};
use crate::log::{RunLog, Work};
use crate::model::chat::Message;
use crate::model::spec::{self, SourceOptions};
use crate::prompt::{Prompt, PromptBuilder};
use crate::report::ScoreBreakdown;
use crate::run::memory::Memory;
use crate::run::record::ModelInfo;
use crate::run::submission::{read_submission, write_submission};
use crate::run::{PredictionRecord, RunDir, RunFile, RunRecord};
use crate::score::Method;
use crate::settings::Settings;

/// How this invocation runs an evaluation, as opposed to what it evaluates ([`Settings`]):
/// none of it is part of the run's identity.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub runs_dir: PathBuf,
    /// Offline mode, the models registry, the hub and servers.
    pub sources: SourceOptions,
    /// Where environments named by name and hub datasets are found.
    pub env_sources: EnvSources,
    /// `--allow-scoring-program`: run the environment's own scoring program, if it has one.
    /// Not recorded with the run: resuming or verifying must be allowed again.
    pub allow_scoring_program: bool,
}

/// `metadata.json` of a run's submission archive.
fn submission_metadata(record: &RunRecord, items: usize) -> serde_json::Value {
    json!({
        "run_id": record.run_id,
        "model": record.model.spec,
        "environment": {"name": record.environment.name, "version": record.environment.version,
                        "phase": record.environment.phase},
        "created": record.created,
        "items": items,
        "limit": record.settings.as_ref().and_then(|s| s.limit),
        "shard": record.settings.as_ref().and_then(|s| s.shard),
        "benchgen_version": record.benchgen_version,
    })
}

/// Where runs go when `--runs-dir` is left out.
pub const RUNS_DIR: &str = "runs";

pub struct EvalOutcome {
    pub run_id: u64,
    pub run_dir: RunDir,
    pub breakdown: ScoreBreakdown,
}

/// Runs a whole evaluation with `settings` (as given: unresolved, paths as typed) and returns
/// where its files are.
pub fn run_eval(settings: &Settings, how: &Invocation, log: &mut RunLog) -> Result<EvalOutcome> {
    let started = Instant::now();
    // Cheap checks first, so a typo does not leave a Failed run behind.
    let plan = Plan::new(settings, how)?;
    let model_spec = spec::describe(settings.model.as_deref());
    let model = ModelInfo {
        spec: model_spec.clone(),
        origin: model_spec,
        parameters: None,
        revision: None,
        files: Default::default(),
    };
    let record = RunRecord::new(
        model,
        environment_info(&plan.env, plan.phase()),
        Some(plan.settings.clone()),
    );
    let run = ActiveRun::start(&how.runs_dir, record, log)?;
    plan.execute(run, &[], log, started)
}

/// An eval's inputs, checked and resolved: what a new run starts from and a resumed run must
/// reproduce.
struct Plan {
    /// The model as given (a resumed run's as recorded): what is resolved and loaded.
    model: Option<String>,
    how: Invocation,
    env: Environment,
    device: candle_core::Device,
    weights: WeightType,
    params: GenParams,
    /// Resolved, as the run records them.
    settings: Settings,
}

impl Plan {
    fn new(given: &Settings, how: &Invocation) -> Result<Self> {
        let env = open_env(given.env.as_deref().map(Path::new), &how.env_sources)?
            .offline(how.sources.offline);
        let phase = env.phase(given.phase.as_deref())?.name.clone();
        program::check_allowed(&env, how.allow_scoring_program)?;
        // Data that cannot be read (a hub that is off or unreachable) fails here, before the
        // run folder, instead of as a Failed run.
        env.check_readable(env.phase(Some(&phase))?)?;
        let device = given.device.open()?;
        let model = spec::preflight(given.model.as_deref(), &how.sources)?;
        let dtype = match (&model.defaults.dtype, given.dtype) {
            (Some(d), DtypeSpec::Auto) => d.parse()?,
            (_, dtype) => dtype,
        };
        if given.limit == Some(0) {
            return Err(SettingError::ZeroLimit.into());
        }
        let weights = WeightType::for_model(dtype, &device, model.gguf)?;
        let gen = &env.manifest.generation;
        let mut params = GenParams {
            max_new_tokens: gen.max_new_tokens,
            stop: gen.stop.clone(),
            temperature: gen.temperature,
            top_k: gen.top_k,
            top_p: gen.top_p,
        };
        model.defaults.generation.apply(&mut params);
        let mut settings = Settings {
            phase: Some(phase),
            dtype: weights.spec(),
            generation: Some(params.clone()),
            ..given.clone().normalized()
        };
        if settings.shard.is_some() && settings.group.is_none() {
            settings.group = Some(settings.default_group(&env.manifest.name));
        }
        Ok(Self {
            model: given.model.clone(),
            how: how.clone(),
            env,
            device,
            weights,
            params,
            settings,
        })
    }

    /// The phase the run evaluates.
    fn phase(&self) -> &str {
        self.settings.phase.as_deref().expect("a planned run has its phase")
    }

    /// Runs the stages for every item not in `journaled` and records how the run ended.
    fn execute(
        &self,
        mut run: ActiveRun,
        journaled: &[PredictionRecord],
        log: &mut RunLog,
        started: Instant,
    ) -> Result<EvalOutcome> {
        let stages = Stages {
            env: &self.env,
            phase: self.phase(),
            settings: &self.settings,
            model: self.model.as_deref(),
            how: &self.how,
            params: self.params.clone(),
            device: self.device.clone(),
            weights: self.weights,
            run_dir: &run.dir,
            journaled,
        };
        let result = stages.run(&mut run.record, log, started);
        run.finish(result, log, started)
    }
}

struct Stages<'a> {
    env: &'a Environment,
    phase: &'a str,
    /// Resolved, as recorded.
    settings: &'a Settings,
    /// The model as given, which is what is resolved and loaded.
    model: Option<&'a str>,
    how: &'a Invocation,
    params: GenParams,
    device: candle_core::Device,
    weights: WeightType,
    run_dir: &'a RunDir,
    /// Predictions a resumed run already has; their items are not run again.
    journaled: &'a [PredictionRecord],
}

impl Stages<'_> {
    fn run(
        &self,
        record: &mut RunRecord,
        log: &mut RunLog,
        started: Instant,
    ) -> Result<ScoreBreakdown> {
        log.line(format!(
            "Loading benchmark data: {} phase \"{}\"",
            self.env.manifest.name, self.phase
        ));
        let phase = self.env.phase(Some(self.phase))?;
        let mut items = self.env.load_items(phase)?;
        for source in self.env.fetched_sources() {
            log.line(format!("Data source: {source}"));
        }
        if let Some(limit) = self.settings.limit {
            items.truncate(limit);
        }
        // Positions in the phase's order: few-shot examples are drawn by position, so a shard's
        // item gets the prompt it gets in the whole run.
        let mut positions: Vec<usize> = (0..items.len()).collect();
        if let Some(shard) = self.settings.shard {
            positions = shard.select(positions);
            items = shard.select(items);
            log.line(format!(
                "Shard {shard} of group \"{}\": {} of the items",
                self.settings.group.as_deref().unwrap_or_default(),
                items.len()
            ));
        }
        record.items = Some(items.len());
        log.line(format!("Loaded {} items", items.len()));
        // Before the content hash, which reads the same files, for the clearer message.
        let fewshot = crate::prompt::fewshot::for_phase(self.env, phase)?;
        let content = self.env.content_sha256(phase)?;
        // A resumed run must continue on exactly what it started with.
        if let Some(recorded) = &record.environment.content_sha256 {
            if *recorded != content {
                return Err(Error::env(
                    &self.env.origin,
                    format!("its manifest or data changed since run {} started (content sha256 {recorded}, now {content})", record.run_id),
                ));
            }
        }
        record.environment.content_sha256 = Some(content);
        if let Some(f) = &fewshot {
            log.line(format!(
                "Few-shot: {} example(s) per item from phase \"{}\" ({} items, sampler {}, seed {})",
                f.n, f.spec.phase, f.pool.len(), f.spec.sampler.name(), f.spec.seed
            ));
        }
        let builder = PromptBuilder::new(&self.env.manifest.prompt, &self.env.origin)?
            .with_fewshot(fewshot)?;
        // Template errors surface before the (slower) model load.
        for (&position, it) in positions.iter().zip(&items) {
            builder.render_text(position, it)?;
        }

        log.line(format!("Loading model: {}", record.model.spec));
        let resolved = spec::resolve_source(self.model, &self.how.sources)?;
        if let Some(commit) = &resolved.revision {
            log.line(format!("Model revision: {commit}"));
        }
        record.model.revision = resolved.revision.clone();
        let Prepared { mut engine, prompts, messages } =
            self.prepare_engine(resolved.source, record, &builder, &items, &positions, log)?;

        let predictions = if self.multiple_choice() {
            self.score_options(engine.as_mut(), &items, &prompts, &builder, log)?
        } else {
            self.generate(engine.as_mut(), &items, &prompts, messages.as_deref(), log)?
        };
        // Every prediction is journaled: an interruption now still leaves a resumable run.
        crate::interrupt::check()?;
        let submission = self.run_dir.file(RunFile::Submission);
        write_submission(
            &submission,
            &predictions,
            &submission_metadata(record, predictions.len()),
        )?;
        record.submission = Some(RunFile::Submission.name().into());

        log.line("Scoring submission");
        let submitted = read_submission(&submission)?;
        let scoring = Scoring {
            env: self.env,
            phase,
            run_dir: self.run_dir,
            allow_program: self.how.allow_scoring_program,
        };
        let breakdown = scoring.score_and_report(record, &items, &submitted, started, log)?;
        let mut memory = Memory::now(engine.weights_bytes(), engine.kv_cache_peak_bytes());
        memory.device = engine.device_memory();
        log.line(format!("Memory: {}", memory.summary()));
        record.memory = Some(memory);
        Ok(breakdown)
    }

    fn multiple_choice(&self) -> bool {
        self.env.manifest.scoring.method == Method::Loglikelihood
    }

    fn generate(
        &self,
        engine: &mut dyn Generator,
        items: &[Item],
        prompts: &[Prompt],
        messages: Option<&[Vec<Message>]>,
        log: &mut RunLog,
    ) -> Result<Vec<PredictionRecord>> {
        let mut finished =
            Finished::new(self.run_dir, items, self.journaled, Work::Tokens(0), log)?;
        let requests = items
            .iter()
            .zip(prompts)
            .enumerate()
            .filter(|(index, _)| !finished.has(*index))
            .map(|(index, (item, prompt))| GenRequest {
                index,
                id: item.id.clone(),
                prompt: prompt.text.clone(),
                add_special_tokens: prompt.add_special_tokens,
                params: self.params.clone(),
                seed: sampling::item_seed(self.settings.seed, &item.id),
                truncate: self.settings.truncate,
                messages: messages.map(|m| m[index].clone()),
            })
            .collect();
        let started = Instant::now();
        let (mut run, mut tokens_in, mut tokens_out) = (0usize, 0usize, 0usize);
        engine.generate(requests, &mut |out| {
            run += 1;
            tokens_in += out.tokens_in;
            tokens_out += out.tokens_out;
            let rec = PredictionRecord {
                id: items[out.index].id.clone(),
                prompt: prompts[out.index].text.clone(),
                prediction: out.text,
                tokens_in: out.tokens_in,
                tokens_out: out.tokens_out,
                tokens_dropped: out.tokens_dropped,
                finish_reason: Some(out.finish_reason),
                choice_logprobs: None,
            };
            finished.add(out.index, rec)
        })?;
        let predictions = finished.into_item_order(items)?;
        if run > 0 {
            let secs = started.elapsed().as_secs_f64();
            log.line(format!(
                "Generated {tokens_out} tokens for {run} items in {secs:.1} s: {:.1} tokens/s ({tokens_in} prompt tokens)",
                tokens_out as f64 / secs.max(1e-9)
            ));
        }
        Ok(predictions)
    }
}
