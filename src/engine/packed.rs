//! Generation and multiple-choice scoring through a packed step ([`PackedStep`]: the CUDA step,
//! or its CPU reference). Generation is planned by [`Scheduler`]: every step is one launch
//! sequence for all running sequences, the sampled tokens feed the next step where they were
//! sampled, and the host reads each step's tokens while the next one runs, so it learns of an
//! EOS or a stop string one step late (that sequence's row in the step already launched is
//! dropped). Scoring packs each request's tokens into steps that end in log-probabilities. The
//! [`LocalEngine`] this wraps holds the tokenizer and the model's context.

use std::collections::{HashMap, VecDeque};

use super::local::truncate_left;
use super::loglik::{self, Scored, TokenScore};
use super::{
    FinishReason, GenOutput, GenRequest, Generator, LocalEngine, LoglikOutput, LoglikRequest,
};
use candle_core::Device;

use crate::device::WeightType;
use crate::engine::Truncate;
use crate::error::{Error, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::gpu::reference::{RowAt, SampleParams};
use crate::model::gpu::schedule::{Input, Scheduler};
use crate::model::gpu::step::{DeviceRow, Feed, PackedStep};

/// Makes the packed step with room for sequences of the given length (prompt and new tokens).
pub type StepFactory = Box<dyn FnMut(usize) -> Result<Box<dyn PackedStep>>>;

pub struct PackedEngine {
    local: LocalEngine,
    make: StepFactory,
    /// The step, made by the first call that needed one and again when a call needs longer
    /// sequences than it holds (its KV cache is allocated once, for every slot).
    step: Option<Box<dyn PackedStep>>,
}

/// A request as it runs: what the output needs besides the tokens.
struct Job {
    req: GenRequest,
    tokens_in: usize,
    tokens_dropped: usize,
    max_new: usize,
}

impl PackedEngine {
    /// Generation by the steps `make` makes; the tokenizer, the context and multiple-choice
    /// scoring from `local`.
    pub fn new(local: LocalEngine, make: StepFactory) -> Self {
        PackedEngine { local, make, step: None }
    }

    /// The step, taken out of `self` while it runs (put it back after; an error drops it and
    /// the next call makes another): made (again) unless its slots hold `len` positions.
    fn step_for(&mut self, len: usize) -> Result<Box<dyn PackedStep>> {
        let context = self.local.model().decoder.context();
        match self.step.take() {
            Some(step) if step.shape().1 >= len => Ok(step),
            // Room in steps of 256 positions, so a run of similar prompts makes one step.
            _ => (self.make)(len.next_multiple_of(256).min(context).max(len)),
        }
    }

    fn params(job: &Job, draw: usize) -> SampleParams {
        let p = &job.req.params;
        SampleParams {
            temperature: p.temperature as f32,
            top_k: p.top_k.filter(|&k| k > 0).unwrap_or(0),
            top_p: p.top_p.filter(|&p| p < 1.0).unwrap_or(1.0),
            seed: job.req.seed,
            draw: draw as u64,
        }
    }

    /// A finished sequence's output: its tokens up to the one that ended it (an EOS is not
    /// part of the text or the ids; a stop string is cut from the text).
    fn output(&self, job: Job, mut tokens: Vec<u32>) -> Result<GenOutput> {
        let tok = &self.local.model().tokenizer;
        let eos = tokens.last().is_some_and(|t| tok.eos_ids().contains(t));
        if eos {
            tokens.pop();
        }
        let mut text = tok.decode(&tokens)?;
        let finish_reason = if eos {
            FinishReason::Eos
        } else if let Some(cut) = super::find_stop(&text, &job.req.params.stop) {
            text.truncate(cut);
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        Ok(GenOutput {
            index: job.req.index,
            text,
            tokens_out: tokens.len(),
            token_ids: tokens,
            tokens_in: job.tokens_in,
            tokens_dropped: job.tokens_dropped,
            finish_reason,
        })
    }

    /// Launches `sched`'s steps on `dev` until every sequence has finished and been handed to
    /// `on_done`.
    fn run(
        &self,
        sched: &mut Scheduler,
        dev: &mut dyn PackedStep,
        jobs: &mut HashMap<usize, Job>,
        on_done: &mut dyn FnMut(GenOutput) -> Result<()>,
    ) -> Result<()> {
        // Each launched step's sampling sequences, in its samples' order, until read.
        let mut in_flight: VecDeque<(usize, Vec<usize>)> = VecDeque::new();
        loop {
            crate::interrupt::check()?;
            let rows = sched.plan();
            if !rows.is_empty() {
                let device_rows: Vec<DeviceRow> = rows
                    .iter()
                    .map(|r| DeviceRow {
                        feed: match r.input {
                            Input::Prompt(t) => Feed::Token(t),
                            Input::Sampled => Feed::Sampled,
                        },
                        at: RowAt { slot: r.slot, pos: r.pos },
                    })
                    .collect();
                let samples: Vec<(usize, SampleParams)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.samples)
                    .map(|(i, r)| (i, Self::params(&jobs[&r.seq], r.draw)))
                    .collect();
                dev.enqueue(&device_rows, &samples)?;
                let seqs = rows.iter().filter(|r| r.samples).map(|r| r.seq).collect();
                in_flight.push_back((sched.planned_steps() - 1, seqs));
            }
            // Read a step while the next one runs (or the last one, when nothing is left to
            // launch).
            if in_flight.len() > 1 || (rows.is_empty() && !in_flight.is_empty()) {
                let (step, seqs) = in_flight.pop_front().expect("a step in flight");
                let tokens = dev.tokens()?;
                let sampled: Vec<(usize, u32)> = seqs.into_iter().zip(tokens).collect();
                let tok = &self.local.model().tokenizer;
                sched.read(step, &sampled, |seq, tokens| {
                    let job = &jobs[&seq];
                    tokens.last().is_some_and(|t| tok.eos_ids().contains(t))
                        || super::stop_in_tail(tok, tokens, &job.req.params.stop).unwrap_or(false)
                        || tokens.len() >= job.max_new
                });
                for (id, tokens) in sched.take_finished() {
                    let job = jobs.remove(&id).expect("a job for every sequence");
                    on_done(self.output(job, tokens)?)?;
                }
            } else if rows.is_empty() {
                if sched.is_done() {
                    return Ok(());
                }
                return Err(Error::Model {
                    origin: "the packed step's scheduler".into(),
                    message: "planned nothing with sequences left and no step in flight".into(),
                });
            }
        }
    }
}

impl Generator for PackedEngine {
    fn generate(
        &mut self,
        requests: Vec<GenRequest>,
        on_done: &mut dyn FnMut(GenOutput) -> Result<()>,
    ) -> Result<()> {
        let context = self.local.model().decoder.context();
        let mut jobs: HashMap<usize, Job> = HashMap::new();
        let mut prompts = Vec::new();
        let tok = &self.local.model().tokenizer;
        for (id, req) in requests.into_iter().enumerate() {
            let mut prompt = tok.encode(&req.prompt, req.add_special_tokens)?;
            if req.params.max_new_tokens == 0 {
                on_done(GenOutput::nothing(req.index, prompt.len()))?;
                continue;
            }
            let tokens_dropped = match req.truncate {
                Truncate::Left => {
                    truncate_left(&mut prompt, context, req.params.max_new_tokens, tok.bos_id())
                }
                Truncate::Error => 0,
            };
            if prompt.is_empty() {
                return Err(Error::Model {
                    origin: format!("for item {}", req.id),
                    message: "its prompt has no tokens (and the tokenizer adds no BOS)".into(),
                });
            }
            if prompt.len() >= context {
                return Err(Error::PromptTooLong { item: req.id, tokens: prompt.len(), context });
            }
            let max_new = req.params.max_new_tokens.min(context - prompt.len());
            let tokens_in = prompt.len();
            prompts.push((id, prompt, max_new));
            jobs.insert(id, Job { req, tokens_in, tokens_dropped, max_new });
        }
        let Some(longest) = prompts.iter().map(|(_, p, n)| p.len() + n).max() else {
            return Ok(());
        };
        let mut dev = self.step_for(longest)?;
        let (slots, _, step_rows) = dev.shape();
        let mut sched = Scheduler::new(slots, step_rows.max(slots));
        for (id, prompt, max_new) in prompts {
            sched.add(id, prompt, max_new);
        }
        let result = self.run(&mut sched, dev.as_mut(), &mut jobs, on_done);
        self.step = Some(dev);
        result
    }

    /// Each request's tokens as rows in a cache slot of its own, packed into scoring steps
    /// (a long one over several, continuing its slot); every row is computed from its own
    /// sequence alone, so a score does not depend on what shares its step.
    fn loglikelihood(
        &mut self,
        requests: Vec<LoglikRequest>,
        on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
    ) -> Result<()> {
        let model = self.local.model();
        let items = loglik::prepare(&model.tokenizer, model.decoder.context(), requests)?;
        let Some(longest) = items.iter().map(|(s, _)| s.tokens.len()).max() else {
            return Ok(());
        };
        let mut dev = self.step_for(longest)?;
        let result = score_items(dev.as_mut(), &items, on_done);
        self.step = Some(dev);
        result
    }

    /// The step's weights and KV cache (allocated once, for every slot), where it keeps them.
    fn device_memory(&self) -> Option<crate::run::memory::DeviceMemory> {
        self.step.as_ref().map(|s| {
            let m = s.memory();
            crate::run::memory::DeviceMemory {
                weights_bytes: m.weights as u64,
                kv_cache_bytes: m.kv_cache as u64,
                scratch_bytes: m.scratch as u64,
                in_use_bytes: m.device_used as u64,
            }
        })
    }
}

/// The engine for a model on `device`: on a CUDA device (a `--features cuda` build), generation
/// and scoring through the packed CUDA step where it applies — a Llama-style safetensors checkpoint with
/// f32, bf16 or f16 weights, and `BENCHGEN_CUDA_STEP` not `0` — with `slots` sequences at once;
/// otherwise `local` alone. The message says which, for the run's log (None on the CPU).
pub fn for_device(
    local: LocalEngine,
    ckpt: &Checkpoint,
    device: &Device,
    weights: WeightType,
    slots: usize,
) -> (Box<dyn Generator>, Option<String>) {
    if !device.is_cuda() {
        return (Box::new(local), None);
    }
    match cuda_factory(ckpt, device, weights, slots) {
        Ok(make) => (
            Box::new(PackedEngine::new(local, make)),
            Some(format!(
                "Running the packed CUDA step: one launch sequence a step for up to {slots} \
                 sequences, CUDA graphs for decode steps (BENCHGEN_CUDA_STEP=0 runs candle's path)"
            )),
        ),
        Err(why) => (
            Box::new(local),
            Some(format!("Running candle's CUDA path: the packed CUDA step {why}")),
        ),
    }
}

#[cfg(feature = "cuda")]
fn cuda_factory(
    ckpt: &Checkpoint,
    device: &Device,
    weights: WeightType,
    slots: usize,
) -> std::result::Result<StepFactory, String> {
    use crate::model::gpu::cuda::CudaStep;
    use crate::model::gpu::step::StepModel;
    if std::env::var("BENCHGEN_CUDA_STEP").is_ok_and(|v| v == "0") {
        return Err("is turned off (BENCHGEN_CUDA_STEP=0)".into());
    }
    let WeightType::Float(dtype) = weights else {
        return Err(format!("takes f32, bf16 or f16 weights, not {}", weights.name()));
    };
    let candle_core::DeviceLocation::Cuda { gpu_id } = device.location() else {
        return Err("runs on CUDA devices".into());
    };
    let (cfg, vb) = ckpt.step_tensors(dtype).map_err(|e| format!("cannot read the model: {e}"))?;
    StepModel::new(&cfg, 1).map_err(|e| format!("cannot run it: {e}"))?;
    Ok(Box::new(move |len| {
        let step =
            CudaStep::new(&cfg, &vb, slots, len, STEP_ROWS.max(slots), gpu_id).map_err(|e| {
                Error::Device {
                    device: format!("cuda:{gpu_id}"),
                    message: format!(
                        "the packed CUDA step could not start ({e}); BENCHGEN_CUDA_STEP=0 runs \
                     candle's path instead"
                    ),
                }
            })?;
        Ok(Box::new(step) as Box<dyn PackedStep>)
    }))
}

#[cfg(not(feature = "cuda"))]
fn cuda_factory(
    _: &Checkpoint,
    _: &Device,
    _: WeightType,
    _: usize,
) -> std::result::Result<StepFactory, String> {
    Err("needs a build with --features cuda".into())
}

/// Rows a packed step takes at most: every decoding sequence and prompt chunks besides.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const STEP_ROWS: usize = 2048;

/// Scores `items` through `dev`'s scoring steps (see [`PackedEngine`]'s `loglikelihood`): each
/// step takes rows from the items in slots, in order, while its rows, its targets (a row per
/// slot) and its slots last; an item leaves its slot once all its rows have run.
fn score_items(
    dev: &mut dyn PackedStep,
    items: &[(Scored, Vec<u32>)],
    on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
) -> Result<()> {
    let (slots, _, step_rows) = dev.shape();
    // (item, slot, next position, its token scores so far)
    let mut active: Vec<(usize, usize, usize, Vec<TokenScore>)> = Vec::new();
    let mut free: Vec<usize> = (0..slots).rev().collect();
    let mut next = 0;
    while next < items.len() || !active.is_empty() {
        crate::interrupt::check()?;
        while let (Some(&slot), true) = (free.last(), next < items.len()) {
            free.pop();
            active.push((next, slot, 0, Vec::new()));
            next += 1;
        }
        let (mut rows, mut targets, mut owners) = (Vec::new(), Vec::new(), Vec::new());
        for (a, (item, slot, pos, _)) in active.iter_mut().enumerate() {
            let (s, cont) = &items[*item];
            while *pos < s.tokens.len() && rows.len() < step_rows {
                // Row p predicts continuation token p - (ctx_len - 1), once the context is in.
                let target = (*pos + 1).checked_sub(s.ctx_len).map(|j| cont[j]);
                if target.is_some() && targets.len() == slots {
                    break;
                }
                let at = RowAt { slot: *slot, pos: *pos };
                rows.push(DeviceRow { feed: Feed::Token(s.tokens[*pos]), at });
                if let Some(t) = target {
                    targets.push((rows.len() - 1, t));
                    owners.push(a);
                }
                *pos += 1;
            }
        }
        let scores = dev.score(&rows, &targets)?;
        for (&a, (logprob, greedy)) in owners.iter().zip(scores) {
            active[a].3.push(TokenScore { logprob, greedy });
        }
        let mut still = Vec::with_capacity(active.len());
        for (item, slot, pos, scores) in active {
            let (s, cont) = &items[item];
            if pos < s.tokens.len() {
                still.push((item, slot, pos, scores));
                continue;
            }
            free.push(slot);
            on_done(loglik::tally(s, cont, scores.into_iter())?)?;
        }
        active = still;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::device::WeightType;
    use crate::engine::GenParams;
    use crate::model::embedded::model_checkpoint;
    use crate::model::gpu::step::ReferenceStep;
    use crate::model::{KvDtype, LoadedModel};

    fn request(index: usize, prompt: &str, params: GenParams, seed: u64) -> GenRequest {
        GenRequest {
            index,
            id: format!("item-{index}"),
            prompt: prompt.to_string(),
            add_special_tokens: true,
            params,
            seed,
            truncate: Truncate::Error,
            messages: None,
        }
    }

    fn params(max_new: usize, stop: &[&str], temperature: f64) -> GenParams {
        GenParams {
            max_new_tokens: max_new,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            temperature,
            top_k: (temperature > 0.0).then_some(20),
            top_p: (temperature > 0.0).then_some(0.95),
        }
    }

    fn requests() -> Vec<GenRequest> {
        let prompts = ["33-3=", "6+70=", "92+58=", "8-8=", "1+1=1+1=1+1=", "70+", "5", "99-98="];
        let mut out: Vec<GenRequest> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| match i % 4 {
                0 => request(i, p, params(12, &["\n"], 0.0), 0),
                1 => request(i, p, params(20, &["0013"], 1.3), 40 + i as u64),
                2 => request(i, p, params(3, &["4"], 0.0), 0),
                _ => request(i, p, params(16, &["\n"], 0.9), 40 + i as u64),
            })
            .collect();
        out.push(request(prompts.len(), "7+7=", params(0, &[], 0.0), 0));
        out
    }

    fn run(engine: &mut dyn Generator) -> Vec<GenOutput> {
        let mut out = Vec::new();
        engine
            .generate(requests(), &mut |o| {
                out.push(o);
                Ok(())
            })
            .unwrap();
        out.sort_by_key(|o| o.index);
        out
    }

    fn local(batch: usize) -> LocalEngine {
        let model = LoadedModel::load_for_inference(
            &model_checkpoint(),
            &Device::Cpu,
            WeightType::Float(DType::F32),
            KvDtype::Bf16,
        )
        .unwrap();
        LocalEngine::new(model, batch)
    }

    /// The step the engine runs in these tests, with 3 slots: the CUDA executor where
    /// `BENCHGEN_TEST_DEVICE` names a CUDA device (a GPU, or `tools/cuda_emulator`'s CPU
    /// driver), else its CPU reference.
    fn test_step(
        cfg: &crate::model::ModelConfig,
        vb: &dyn crate::model::gpu::step::StepTensors,
        len: usize,
    ) -> Result<Box<dyn PackedStep>> {
        #[cfg(feature = "cuda")]
        if let Some(ordinal) = crate::model::gpu::test_cuda_ordinal() {
            let step = crate::model::gpu::cuda::CudaStep::new(cfg, vb, 3, len, 64, ordinal)?;
            return Ok(Box::new(step));
        }
        Ok(Box::new(ReferenceStep::new(cfg, vb, 3, len)?))
    }

    fn step_factory() -> StepFactory {
        let (cfg, vb) = model_checkpoint().step_tensors(DType::F32).unwrap();
        Box::new(move |len| test_step(&cfg, &vb, len))
    }

    /// Multiple choice through the packed engine's scoring steps (3 slots, so a continuation
    /// of more than 3 tokens spans steps, continuing its slot) scores what the local engine
    /// scores: log-probabilities within the rounding of the step's summation orders, the same
    /// greedy flags, token counts and truncation.
    #[test]
    fn the_packed_engine_scores_what_the_local_engine_does() {
        let mut requests = Vec::new();
        for (q, (context, options)) in [
            ("33-3=", &["30", "31", "3", "300"][..]),
            ("92+58=", &["150", "148", "1 5 0"][..]),
            ("1+1=", &["2"][..]),
            ("", &["7+7=14"][..]),
            ("8-8=", &["0000000", "0"][..]),
        ]
        .into_iter()
        .enumerate()
        {
            for o in options {
                requests.push(LoglikRequest {
                    index: requests.len(),
                    context: context.to_string(),
                    continuation: o.to_string(),
                    truncate: if q == 0 { Truncate::Left } else { Truncate::Error },
                });
            }
        }
        let score = |engine: &mut dyn Generator| {
            let mut out = Vec::new();
            engine
                .loglikelihood(requests.clone(), &mut |o| {
                    out.push(o);
                    Ok(())
                })
                .unwrap();
            out.sort_by_key(|o| o.index);
            out
        };
        let want = score(&mut local(4));
        let got = score(&mut PackedEngine::new(local(4), step_factory()));
        assert_eq!(got.len(), requests.len());
        let mut greedy = 0;
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.logprob - w.logprob).abs() < 1e-3 * (1.0 + w.logprob.abs()),
                "{g:?} vs {w:?}"
            );
            assert_eq!(
                (g.is_greedy, g.context_tokens, g.continuation_tokens, g.context_dropped),
                (w.is_greedy, w.context_tokens, w.continuation_tokens, w.context_dropped),
                "item {}",
                w.index
            );
            greedy += usize::from(w.is_greedy);
        }
        assert!(greedy > 0 && greedy < got.len(), "greedy and not: {want:?}");
        assert!(got.iter().any(|o| o.continuation_tokens > 3), "a continuation spans steps");
    }

    /// The packed engine over the step's CPU reference (3 cache slots for 9 requests, tokens
    /// read one step late) gives the local engine's outputs with a bf16 KV cache, item for
    /// item: greedy and seeded sampling, stop strings, EOS, token budgets and a request for no
    /// tokens; the embedded model is trained, so its tokens are clear of rounding.
    #[test]
    fn the_packed_engine_generates_what_the_local_engine_does() {
        let want = run(&mut local(3));
        let (cfg, vb) = model_checkpoint().step_tensors(DType::F32).unwrap();
        let mut lens = Vec::new();
        let make: StepFactory = Box::new(move |len| {
            lens.push(len);
            assert_eq!(lens.len(), 1, "one step for one call");
            test_step(&cfg, &vb, len)
        });
        let got = run(&mut PackedEngine::new(local(3), make));
        assert_eq!(got.len(), want.len());
        let mut reasons = std::collections::HashSet::new();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (&g.text, &g.token_ids, g.finish_reason, g.tokens_in, g.tokens_out),
                (&w.text, &w.token_ids, w.finish_reason, w.tokens_in, w.tokens_out),
                "item {}",
                w.index
            );
            reasons.insert(format!("{:?}", w.finish_reason));
        }
        assert_eq!(reasons.len(), 3, "the requests should end in every way: {reasons:?}");
        let sampled_long = got.iter().filter(|o| o.index % 4 == 1 && o.tokens_out > 3).count();
        assert!(sampled_long > 0, "a sampled request should run for several draws: {got:?}");
    }
}
