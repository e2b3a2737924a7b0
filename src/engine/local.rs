//! In-process generation with a candle model and continuous batching: up to `batch_size`
//! sequences run together; a finished sequence leaves at once and the next waiting prompt's
//! prefill joins the following step. Each step is one packed forward pass (see
//! `model::decoder`), so there is no padding and each sequence keeps its own cache and positions.

use std::collections::VecDeque;

use candle_core::{DType, Tensor};

use super::{sampling, FinishReason, Truncate, GenOutput, GenRequest, Generator, LoglikOutput, LoglikRequest};
use crate::error::{Error, Result, TensorContext};
use crate::model::{LoadedModel, SeqCache, Segment};
use crate::rng::SplitMix64;

pub struct LocalEngine {
    model: LoadedModel,
    batch_size: usize,
}

struct Running {
    req: GenRequest,
    cache: SeqCache,
    /// Tokens to feed next step: the whole prompt first, then the last sampled token.
    pending: Vec<u32>,
    tokens_in: usize,
    tokens_dropped: usize,
    generated: Vec<u32>,
    max_new: usize,
    rng: SplitMix64,
}

impl LocalEngine {
    pub fn new(model: LoadedModel, batch_size: usize) -> Self {
        Self { model, batch_size: batch_size.max(1) }
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Cuts a prompt that leaves no room for `max_new_tokens` (at least one) to the last
    /// tokens that fit, keeping a leading BOS; returns how many tokens were dropped.
    fn truncate_left(&self, prompt: &mut Vec<u32>, max_new_tokens: usize) -> usize {
        let context = self.model.model.config().max_position_embeddings;
        let keep = context.saturating_sub(max_new_tokens.max(1)).max(1);
        if prompt.len() <= keep {
            return 0;
        }
        let bos = self.model.tokenizer.bos_id().filter(|b| prompt.first() == Some(b) && keep > 1);
        let dropped = prompt.len() - keep;
        let start = usize::from(bos.is_some());
        prompt.drain(start..start + dropped);
        dropped
    }

    fn admit(&self, req: GenRequest, mut prompt: Vec<u32>) -> Result<Running> {
        let context = self.model.model.config().max_position_embeddings;
        let tokens_dropped = match req.truncate {
            Truncate::Left => self.truncate_left(&mut prompt, req.params.max_new_tokens),
            Truncate::Error => 0,
        };
        if prompt.len() >= context {
            return Err(Error::Invalid(format!(
                "item \"{}\": prompt of {} tokens does not fit the model's context of {context} tokens; \
                 shorten the prompt template, use a model with a longer context, or pass \
                 --truncate left to keep the prompt's last tokens",
                req.id,
                prompt.len()
            )));
        }
        let max_new = req.params.max_new_tokens.min(context - prompt.len());
        Ok(Running {
            cache: self.model.model.new_cache(prompt.len() + max_new),
            tokens_in: prompt.len(),
            tokens_dropped,
            pending: prompt,
            generated: Vec::new(),
            max_new,
            rng: SplitMix64::new(req.seed),
            req,
        })
    }

    /// One packed forward pass over every running sequence; returns each one's next-token logits.
    fn step(&self, running: &mut [Running]) -> Result<Vec<Vec<f32>>> {
        let device = self.model.model.device();
        let segs: Vec<Segment> = running
            .iter()
            .map(|r| Segment { len: r.pending.len(), offset: r.cache.len() })
            .collect();
        let tokens: Vec<u32> = running.iter().flat_map(|r| r.pending.iter().copied()).collect();
        let n = tokens.len();
        let tokens = Tensor::from_vec(tokens, n, device).ctx("building the input batch")?;
        let mut caches: Vec<&mut SeqCache> = running.iter_mut().map(|r| &mut r.cache).collect();
        let hidden =
            self.model.model.forward(&tokens, &segs, Some(&mut caches)).ctx("forward pass")?;
        let mut last = Vec::with_capacity(segs.len());
        let mut end = 0u32;
        for s in &segs {
            end += s.len as u32;
            last.push(end - 1);
        }
        let last = Tensor::new(last.as_slice(), device).ctx("selecting last positions")?;
        let logits = self
            .model
            .model
            .logits(&hidden.index_select(&last, 0).ctx("selecting last positions")?)
            .and_then(|l| l.to_dtype(DType::F32))
            .and_then(|l| l.to_vec2::<f32>())
            .ctx("computing logits")?;
        Ok(logits)
    }

    /// Appends `token` to a sequence; returns why it finished, if it did, and its text so far.
    fn advance(&self, r: &mut Running, token: u32) -> Result<Option<(FinishReason, String)>> {
        let tok = &self.model.tokenizer;
        if tok.eos_ids().contains(&token) {
            return Ok(Some((FinishReason::Eos, tok.decode(&r.generated)?)));
        }
        r.generated.push(token);
        r.pending = vec![token];
        let text = tok.decode(&r.generated)?;
        if let Some(cut) = super::find_stop(&text, &r.req.params.stop) {
            return Ok(Some((FinishReason::Stop, text[..cut].to_string())));
        }
        if r.generated.len() >= r.max_new {
            return Ok(Some((FinishReason::Length, text)));
        }
        Ok(None)
    }
}

impl Generator for LocalEngine {
    fn generate(
        &mut self,
        requests: Vec<GenRequest>,
        on_done: &mut dyn FnMut(GenOutput) -> Result<()>,
    ) -> Result<()> {
        let mut encoded = requests
            .into_iter()
            .map(|req| Ok((self.model.tokenizer.encode(&req.prompt, req.add_special_tokens)?, req)))
            .collect::<Result<Vec<_>>>()?;
        // Longest prompts first keeps the batch full longest; results are keyed by index anyway.
        encoded.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.index.cmp(&b.1.index)));
        let mut waiting: VecDeque<_> = encoded.into();
        let mut running: Vec<Running> = Vec::new();

        while !waiting.is_empty() || !running.is_empty() {
            // Between steps: an interruption leaves every finished item already handed over.
            crate::interrupt::check()?;
            while running.len() < self.batch_size {
                let Some((prompt, req)) = waiting.pop_front() else { break };
                if req.params.max_new_tokens == 0 {
                    on_done(GenOutput {
                        index: req.index,
                        text: String::new(),
                        token_ids: Vec::new(),
                        tokens_in: prompt.len(),
                        tokens_out: 0,
                        tokens_dropped: 0,
                        finish_reason: FinishReason::Length,
                    })?;
                    continue;
                }
                running.push(self.admit(req, prompt)?);
            }
            if running.is_empty() {
                break;
            }
            let logits = self.step(&mut running)?;
            let mut still = Vec::with_capacity(running.len());
            for (mut r, row) in running.into_iter().zip(logits) {
                let token = sampling::sample(&row, &r.req.params, &mut r.rng);
                match self.advance(&mut r, token)? {
                    Some((finish_reason, text)) => on_done(GenOutput {
                        index: r.req.index,
                        text,
                        tokens_out: r.generated.len(),
                        token_ids: r.generated,
                        tokens_in: r.tokens_in,
                        tokens_dropped: r.tokens_dropped,
                        finish_reason,
                    })?,
                    None => still.push(r),
                }
            }
            running = still;
        }
        Ok(())
    }

    fn loglikelihood(
        &mut self,
        requests: Vec<LoglikRequest>,
        on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
    ) -> Result<()> {
        self.score_continuations(requests, on_done)
    }
}
