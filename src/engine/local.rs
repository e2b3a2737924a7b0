//! In-process generation with a candle model and continuous batching: up to `batch_size`
//! sequences run together; a finished sequence leaves at once and the next waiting prompt's
//! prefill joins the following step. Each step is one packed forward pass (see
//! `model::decoder`), so there is no padding and each sequence keeps its own cache and positions.
//! Long prompts are fed in chunks, so one step's activations stay small, and a prefix that every
//! prompt of a call shares (few-shot examples) is computed once and its KV cache shared.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Tensor;

use super::{
    sampling, FinishReason, GenOutput, GenRequest, Generator, LoglikOutput, LoglikRequest, Truncate,
};
use crate::error::{Error, Result, TensorContext};
use crate::model::{LoadedModel, Segment, SeqCache, SharedCache};
use crate::rng::SplitMix64;

/// Most prompt tokens fed in one step. Prefill throughput is flat well below this, and a step's
/// activations (about 18 KB a token for a 135M model) are live beside every KV cache, so they
/// add to the run's peak: 512 rather than 1,024 took 6-9 MB off GSM8K's, at the same speed.
const STEP_TOKENS: usize = 512;
/// A prefix shared by every prompt is computed once when it is at least this long.
const MIN_SHARED_PREFIX: usize = 32;

pub struct LocalEngine {
    model: LoadedModel,
    batch_size: usize,
    /// See [`LocalEngine::with_kv_budget`].
    kv_budget: Option<usize>,
    /// See [`Generator::kv_cache_peak_bytes`]; atomic so `&self` passes can record it.
    kv_peak: AtomicUsize,
}

/// One step's next-token logits: a row for each sequence whose prompt is all in, in one buffer
/// that the run reuses (a step of 32 sequences with a 150k vocabulary is 19 MB of them).
struct StepLogits<'a> {
    values: &'a [f32],
    width: usize,
    /// Each running sequence's row, if it has one.
    rows: Vec<Option<usize>>,
}

impl StepLogits<'_> {
    fn row(&self, i: usize) -> Option<&[f32]> {
        let r = (*self.rows.get(i)?)?;
        self.values.get(r * self.width..(r + 1) * self.width)
    }
}

struct Running {
    req: GenRequest,
    cache: SeqCache,
    /// Tokens still to feed: the prompt (past a shared prefix) first, in chunks, then each
    /// sampled token.
    pending: Vec<u32>,
    tokens_in: usize,
    tokens_dropped: usize,
    generated: Vec<u32>,
    max_new: usize,
    rng: SplitMix64,
    /// Bytes the sequence's own cache can grow to (its prompt past a shared prefix plus
    /// `max_new`), counted against the KV budget while it runs.
    reserved: usize,
}

impl LocalEngine {
    pub fn new(model: LoadedModel, batch_size: usize) -> Self {
        Self { model, batch_size: batch_size.max(1), kv_budget: None, kv_peak: AtomicUsize::new(0) }
    }

    /// Bounds the bytes the running sequences' KV caches may reserve: a sequence joins the
    /// batch only when its whole cache (prompt and `max_new_tokens`) fits beside those of the
    /// sequences running and the shared prefix's, so the caches' memory stays under `bytes`
    /// whatever the batch size (a sequence too large for the budget alone runs by itself).
    /// Like the batch size it decides only what runs together, never an output.
    pub fn with_kv_budget(mut self, bytes: Option<u64>) -> Self {
        self.kv_budget = bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
        self
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Records `bytes` held by live KV caches now, for the peak.
    pub(super) fn note_kv_bytes(&self, bytes: usize) {
        self.kv_peak.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Bytes a shared prefix (once) and the caches continuing it hold now.
    pub(super) fn live_kv_bytes<'a>(
        shared: Option<&SharedCache>,
        caches: impl IntoIterator<Item = &'a SeqCache>,
    ) -> Result<usize> {
        let mut total = shared.map_or(Ok(0), SharedCache::bytes).ctx("measuring the KV cache")?;
        for c in caches {
            total += c.bytes().ctx("measuring the KV cache")?;
        }
        Ok(total)
    }

    /// [`truncate_left`] to this model's context.
    fn truncate_left(&self, prompt: &mut Vec<u32>, max_new_tokens: usize) -> usize {
        let (context, bos) = (self.model.decoder.context(), self.model.tokenizer.bos_id());
        truncate_left(prompt, context, max_new_tokens, bos)
    }

    fn admit(
        &self,
        req: GenRequest,
        mut prompt: Vec<u32>,
        shared: Option<&(Vec<u32>, SharedCache)>,
    ) -> Result<Running> {
        let context = self.model.decoder.context();
        let tokens_dropped = match req.truncate {
            Truncate::Left => self.truncate_left(&mut prompt, req.params.max_new_tokens),
            Truncate::Error => 0,
        };
        if prompt.len() >= context {
            return Err(Error::PromptTooLong { item: req.id, tokens: prompt.len(), context });
        }
        let max_new = req.params.max_new_tokens.min(context - prompt.len());
        let tokens_in = prompt.len();
        let (cache, pending) = match shared {
            Some((prefix, cache)) if prompt.len() > prefix.len() && prompt.starts_with(prefix) => {
                let own = prompt.split_off(prefix.len());
                (
                    cache
                        .continuation(tokens_in + max_new)
                        .ctx("sharing the prompts' common prefix")?,
                    own,
                )
            }
            _ => (self.model.decoder.new_cache(prompt.len() + max_new), prompt),
        };
        Ok(Running {
            cache,
            tokens_in,
            tokens_dropped,
            reserved: (pending.len() + max_new) * self.model.decoder.kv_bytes_per_token(),
            pending,
            generated: Vec::new(),
            max_new,
            rng: SplitMix64::new(req.seed),
            req,
        })
    }

    /// One packed forward pass: every decoding sequence's token and as much of the prompts still
    /// being fed as [`STEP_TOKENS`] allows. Returns the next-token logits of each sequence whose
    /// pending tokens are all in (None for one still mid-prompt), in `running`'s order.
    fn step<'a>(&self, running: &mut [Running], buf: &'a mut Vec<f32>) -> Result<StepLogits<'a>> {
        let decoding = running.iter().filter(|r| r.pending.len() == 1).count();
        let mut budget = STEP_TOKENS.saturating_sub(decoding).max(1);
        let feeds: Vec<usize> = running
            .iter()
            .map(|r| {
                if r.pending.len() == 1 {
                    return 1;
                }
                let take = r.pending.len().min(budget);
                budget -= take;
                take
            })
            .collect();
        let mut segs = Vec::new();
        let mut tokens = Vec::new();
        let mut caches: Vec<&mut SeqCache> = Vec::new();
        let mut done = Vec::new();
        for (r, &feed) in running.iter_mut().zip(&feeds).filter(|(_, &feed)| feed > 0) {
            segs.push(Segment { len: feed, offset: r.cache.len() });
            tokens.extend_from_slice(&r.pending[..feed]);
            done.push(feed == r.pending.len());
            caches.push(&mut r.cache);
        }
        self.forward_last(&segs, tokens, &mut caches, &done, buf)?;
        let mut next = 0;
        let mut rows = Vec::with_capacity(running.len());
        for (r, &feed) in running.iter_mut().zip(&feeds) {
            if feed == 0 {
                rows.push(None);
                continue;
            }
            let complete = feed == r.pending.len();
            r.pending.drain(..feed);
            rows.push(complete.then(|| {
                next += 1;
                next - 1
            }));
        }
        let values: &[f32] = if next == 0 { &[] } else { buf };
        let out = StepLogits { width: values.len().checked_div(next).unwrap_or(0), values, rows };
        Ok(out)
    }

    /// Runs one packed pass and puts the last position's logits of each segment marked `want`
    /// in `out`, row after row.
    fn forward_last(
        &self,
        segs: &[Segment],
        tokens: Vec<u32>,
        caches: &mut [&mut SeqCache],
        want: &[bool],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let device = self.model.decoder.device();
        let n = tokens.len();
        let tokens = Tensor::from_vec(tokens, n, device).ctx("building the input batch")?;
        let hidden = self.model.decoder.forward(&tokens, segs, Some(caches)).ctx("forward pass")?;
        let mut last = Vec::with_capacity(segs.len());
        let mut end = 0u32;
        for (s, &w) in segs.iter().zip(want) {
            end += s.len as u32;
            if w {
                last.push(end - 1);
            }
        }
        if last.is_empty() {
            out.clear();
            return Ok(());
        }
        let last = Tensor::new(last.as_slice(), device).ctx("selecting last positions")?;
        self.model
            .decoder
            .logits_f32_into(&hidden.index_select(&last, 0).ctx("selecting last positions")?, out)
            .ctx("computing logits")
    }

    /// The KV cache of the longest token prefix every prompt shares (each keeping at least one
    /// token of its own), fed in chunks; None when there is no such prefix worth sharing.
    fn shared_prefix(&self, prompts: &[&[u32]]) -> Result<Option<(Vec<u32>, SharedCache)>> {
        let (Some(first), true) = (prompts.first(), prompts.len() > 1) else { return Ok(None) };
        let shortest = prompts.iter().map(|p| p.len()).min().unwrap_or(0);
        let mut len = shortest.saturating_sub(1);
        for p in &prompts[1..] {
            len = len.min(first.iter().zip(p.iter()).take_while(|(a, b)| a == b).count());
        }
        if len < MIN_SHARED_PREFIX {
            return Ok(None);
        }
        let prefix = first[..len].to_vec();
        let mut cache = self.model.decoder.new_cache(len);
        for chunk in prefix.chunks(STEP_TOKENS) {
            crate::interrupt::check()?;
            let seg = [Segment { len: chunk.len(), offset: cache.len() }];
            self.forward_last(&seg, chunk.to_vec(), &mut [&mut cache], &[false], &mut Vec::new())?;
        }
        Ok(Some((prefix, cache.into_shared())))
    }

    /// Appends `token` to a sequence; returns why it finished, if it did, and its text so far.
    fn advance(&self, r: &mut Running, token: u32) -> Result<Option<(FinishReason, String)>> {
        let tok = &self.model.tokenizer;
        if tok.eos_ids().contains(&token) {
            return Ok(Some((FinishReason::Eos, tok.decode(&r.generated)?)));
        }
        r.generated.push(token);
        r.pending = vec![token];
        // The whole text is decoded only once the sequence ends: a step costs the same however
        // long the generation.
        if super::stop_in_tail(tok, &r.generated, &r.req.params.stop)? {
            let text = tok.decode(&r.generated)?;
            if let Some(cut) = super::find_stop(&text, &r.req.params.stop) {
                return Ok(Some((FinishReason::Stop, text[..cut].to_string())));
            }
        }
        if r.generated.len() >= r.max_new {
            return Ok(Some((FinishReason::Length, tok.decode(&r.generated)?)));
        }
        Ok(None)
    }
}

/// Cuts a prompt that leaves no room in `context` for `max_new_tokens` (at least one) to the
/// last tokens that fit, keeping a leading `bos`; returns how many tokens were dropped.
pub(super) fn truncate_left(
    prompt: &mut Vec<u32>,
    context: usize,
    max_new_tokens: usize,
    bos: Option<u32>,
) -> usize {
    let keep = context.saturating_sub(max_new_tokens.max(1)).max(1);
    if prompt.len() <= keep {
        return 0;
    }
    let bos = bos.filter(|b| prompt.first() == Some(b) && keep > 1);
    let dropped = prompt.len() - keep;
    let start = usize::from(bos.is_some());
    prompt.drain(start..start + dropped);
    dropped
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
        let prompts: Vec<&[u32]> = encoded
            .iter()
            .filter(|(_, r)| r.params.max_new_tokens > 0)
            .map(|(p, _)| p.as_slice())
            .collect();
        let shared = self.shared_prefix(&prompts)?;
        let mut waiting: VecDeque<_> = encoded.into();
        let mut running: Vec<Running> = Vec::new();
        let mut logits_buf = Vec::new();
        // Bytes reserved by the shared prefix and the running sequences, and a sequence
        // admitted but waiting for room in the budget (it keeps its place at the queue's head).
        let mut reserved = shared
            .as_ref()
            .map_or(0, |(prefix, _)| prefix.len() * self.model.decoder.kv_bytes_per_token());
        let mut held: Option<Running> = None;

        while !waiting.is_empty() || !running.is_empty() || held.is_some() {
            // Between steps: an interruption leaves every finished item already handed over.
            crate::interrupt::check()?;
            while running.len() < self.batch_size {
                let r = match held.take() {
                    Some(r) => r,
                    None => {
                        let Some((prompt, req)) = waiting.pop_front() else { break };
                        if req.params.max_new_tokens == 0 {
                            on_done(GenOutput::nothing(req.index, prompt.len()))?;
                            continue;
                        }
                        self.admit(req, prompt, shared.as_ref())?
                    }
                };
                let over = self.kv_budget.is_some_and(|b| reserved + r.reserved > b);
                if over && !running.is_empty() {
                    held = Some(r);
                    break;
                }
                reserved += r.reserved;
                running.push(r);
            }
            if running.is_empty() {
                break;
            }
            let logits = self.step(&mut running, &mut logits_buf)?;
            // Caches only grow within a step and shrink when sequences leave after it, so the
            // peak is at the end of some step.
            self.note_kv_bytes(Self::live_kv_bytes(
                shared.as_ref().map(|(_, c)| c),
                running.iter().map(|r| &r.cache),
            )?);
            let mut still = Vec::with_capacity(running.len());
            for (i, mut r) in running.into_iter().enumerate() {
                let Some(row) = logits.row(i) else {
                    still.push(r);
                    continue;
                };
                let token = sampling::sample(row, &r.req.params, &mut r.rng);
                match self.advance(&mut r, token)? {
                    Some((finish_reason, text)) => {
                        reserved -= r.reserved;
                        on_done(GenOutput {
                            index: r.req.index,
                            text,
                            tokens_out: r.generated.len(),
                            token_ids: r.generated,
                            tokens_in: r.tokens_in,
                            tokens_dropped: r.tokens_dropped,
                            finish_reason,
                        })?
                    }
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

    fn weights_bytes(&self) -> Option<usize> {
        self.model.decoder.weights_bytes()
    }

    fn kv_cache_peak_bytes(&self) -> Option<usize> {
        Some(self.kv_peak.load(Ordering::Relaxed))
    }
}
