//! Log-likelihood of continuations, for multiple-choice scoring: the summed log-probability of
//! the continuation's tokens given the context, and whether greedy decoding would have produced
//! exactly them. Token boundaries follow lm-evaluation-harness so scores are comparable.

use candle_core::Tensor;

use super::local::LocalEngine;
use super::sampling::argmax;
use super::Truncate;
use crate::error::{LoglikError, Result, TensorContext};
use crate::model::{Segment, SeqCache, TextTokenizer};

#[derive(Debug, Clone, Default)]
pub struct LoglikRequest {
    pub index: usize,
    pub context: String,
    pub continuation: String,
    /// Context and continuation longer than the model's context: refused, or the context cut
    /// from the left (as lm-evaluation-harness does).
    pub truncate: Truncate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoglikOutput {
    pub index: usize,
    /// Sum over the continuation's tokens of log p(token | everything before it).
    pub logprob: f64,
    /// Every continuation token is the argmax at its position.
    pub is_greedy: bool,
    pub context_tokens: usize,
    pub continuation_tokens: usize,
    /// Context tokens cut from the left to fit the model (`--truncate left`).
    pub context_dropped: usize,
}

/// Splits (context, continuation) into token ids as lm-evaluation-harness does: trailing
/// whitespace of the context moves to the continuation, the pair is encoded whole and the
/// continuation is what follows the context's own encoding; no special tokens, except that an
/// empty context becomes the BOS (else EOS) token so the first token has something to follow.
pub fn split_pair(
    tok: &TextTokenizer,
    context: &str,
    continuation: &str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end();
    let moved = &context[trimmed.len()..];
    let continuation = format!("{moved}{continuation}");
    let whole = tok.encode(&format!("{trimmed}{continuation}"), false)?;
    let ctx = if trimmed.is_empty() {
        let prefix = tok
            .bos_id()
            .or_else(|| tok.eos_ids().first().copied())
            .ok_or(LoglikError::NoBosOrEos)?;
        return Ok((vec![prefix], whole));
    } else {
        tok.encode(trimmed, false)?
    };
    let cont = whole.get(ctx.len()..).unwrap_or_default().to_vec();
    Ok((ctx, cont))
}

/// A request ready to score: its input tokens (context, then every continuation token but the
/// last: the last is only a target), how many are context, and what truncation cut.
pub(super) struct Scored {
    pub index: usize,
    pub ctx_len: usize,
    pub tokens: Vec<u32>,
    pub dropped: usize,
}

/// Tokenizes requests as lm-evaluation-harness does ([`split_pair`]) and cuts each to
/// `context_limit` (only context may go, as `truncate` allows): the requests with their
/// continuations' tokens.
pub(super) fn prepare(
    tok: &TextTokenizer,
    context_limit: usize,
    requests: Vec<LoglikRequest>,
) -> Result<Vec<(Scored, Vec<u32>)>> {
    let mut items = Vec::with_capacity(requests.len());
    for r in requests {
        let (ctx, cont) = split_pair(tok, &r.context, &r.continuation)?;
        if cont.is_empty() {
            return Err(LoglikError::EmptyContinuation { item: r.index }.into());
        }
        let mut tokens = ctx.clone();
        tokens.extend(&cont);
        // The last token is only a target, never an input.
        tokens.pop();
        let excess = tokens.len().saturating_sub(context_limit);
        // The continuation is what is scored: only context may go, and one token must stay.
        if excess > 0 && (r.truncate.is_error() || excess >= ctx.len()) {
            return Err(LoglikError::TooLong {
                item: r.index,
                tokens: tokens.len(),
                context: context_limit,
                truncate_hint: r.truncate.is_error(),
            }
            .into());
        }
        tokens.drain(..excess);
        items.push((
            Scored { index: r.index, ctx_len: ctx.len() - excess, tokens, dropped: excess },
            cont,
        ));
    }
    Ok(items)
}

impl LocalEngine {
    /// Scores every request, in packs of up to `batch_size` sequences per forward pass.
    pub(super) fn score_continuations(
        &mut self,
        requests: Vec<LoglikRequest>,
        on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
    ) -> Result<()> {
        let model = self.model();
        let items = prepare(&model.tokenizer, model.decoder.context(), requests)?;
        // Options of one question share their context: it is computed once and each option
        // continues from a copy of its KV cache. Each question is its own forward pass, so its
        // scores do not depend on which questions run beside it (a resumed run reproduces them
        // bit for bit). Contexts seen once are packed whole, as before.
        let mut by_context: std::collections::HashMap<Vec<u32>, Vec<(Scored, Vec<u32>)>> =
            Default::default();
        for item in items {
            by_context.entry(item.0.tokens[..item.0.ctx_len].to_vec()).or_default().push(item);
        }
        let (shared, single): (Vec<_>, Vec<_>) =
            by_context.into_values().partition(|g| g.len() > 1);
        let mut single: Vec<(Scored, Vec<u32>)> = single.into_iter().flatten().collect();
        // Longest first keeps packs similar in size; results carry their index.
        single.sort_by(|a, b| {
            b.0.tokens.len().cmp(&a.0.tokens.len()).then(a.0.index.cmp(&b.0.index))
        });
        for pack in single.chunks(self.batch_size()) {
            crate::interrupt::check()?;
            for out in self.score_pack(pack)? {
                on_done(out)?;
            }
        }
        let mut shared: Vec<Vec<(Scored, Vec<u32>)>> = shared;
        for g in &mut shared {
            g.sort_by_key(|(s, _)| s.index);
        }
        shared.sort_by_key(|g| g[0].0.index);
        for group in &shared {
            crate::interrupt::check()?;
            for out in self.score_shared(group)? {
                on_done(out)?;
            }
        }
        Ok(())
    }

    /// Scores continuations that share a context: the context in one pass (its last position
    /// predicts every option's first token), then every option's remaining tokens in one pass,
    /// each continuing the context's cache.
    fn score_shared(&self, group: &[(Scored, Vec<u32>)]) -> Result<Vec<LoglikOutput>> {
        let model = &self.model().decoder;
        let device = model.device();
        let ctx = &group[0].0.tokens[..group[0].0.ctx_len];
        let mut cache = model.new_cache(ctx.len());
        let tokens = Tensor::new(ctx, device).ctx("building the input batch")?;
        let hidden = model
            .forward(&tokens, &[Segment { len: ctx.len(), offset: 0 }], Some(&mut [&mut cache]))
            .ctx("forward pass")?;
        // The context's last position predicts every option's first token: one row of logits.
        let last = Tensor::new(&[ctx.len() as u32 - 1], device).ctx("selecting positions")?;
        let last = model
            .logits_f32(&hidden.index_select(&last, 0).ctx("selecting positions")?)
            .ctx("computing logits")?;
        let first = group
            .iter()
            .map(|(_, cont)| token_score(&last, cont[0]))
            .collect::<Result<Vec<_>>>()?;

        // Every option's tokens after its first, each continuing the context's cache, which the
        // host decoder reads in place (a copy per option was the context's keys and values again
        // for every option: 4 x 500 tokens of a 5-shot prompt is 90 MB with f32 caches).
        let cache = cache.into_shared();
        let mut forks = Vec::new();
        let mut segs = Vec::new();
        let mut flat: Vec<u32> = Vec::new();
        let mut targets: Vec<u32> = Vec::new();
        for (s, cont) in group {
            if cont.len() > 1 {
                forks.push(
                    cache
                        .continuation(s.ctx_len + cont.len())
                        .ctx("continuing the context's cache")?,
                );
                segs.push(Segment { len: cont.len() - 1, offset: s.ctx_len });
                flat.extend(&cont[..cont.len() - 1]);
                targets.extend(&cont[1..]);
            }
        }
        let rest_scores = if flat.is_empty() {
            Vec::new()
        } else {
            let n = flat.len();
            let tokens = Tensor::from_vec(flat, n, device).ctx("building the input batch")?;
            let mut refs: Vec<&mut SeqCache> = forks.iter_mut().collect();
            let hidden = model.forward(&tokens, &segs, Some(&mut refs)).ctx("forward pass")?;
            score_rows(model, &hidden, &(0..n as u32).collect::<Vec<_>>(), &targets)?
        };
        // The context's cache and every option's own tokens (a copy of the context too, on the
        // candle decoder), all full now.
        self.note_kv_bytes(Self::live_kv_bytes(Some(&cache), &forks)?);

        let mut rest = rest_scores.into_iter();
        group
            .iter()
            .zip(first)
            .map(|((s, cont), first)| {
                tally(s, cont, std::iter::once(first).chain(rest.by_ref().take(cont.len() - 1)))
            })
            .collect()
    }

    fn score_pack(&self, pack: &[(Scored, Vec<u32>)]) -> Result<Vec<LoglikOutput>> {
        let model = &self.model().decoder;
        let segs: Vec<Segment> =
            pack.iter().map(|(s, _)| Segment { len: s.tokens.len(), offset: 0 }).collect();
        let flat: Vec<u32> = pack.iter().flat_map(|(s, _)| s.tokens.iter().copied()).collect();
        let n = flat.len();
        let tokens = Tensor::from_vec(flat, n, model.device()).ctx("building the input batch")?;
        let hidden = model.forward(&tokens, &segs, None).ctx("forward pass")?;
        // Without caches of ours the pass still holds every token's keys and values at once.
        self.note_kv_bytes(n * model.kv_bytes_per_token());
        // Only the positions that predict continuation tokens go through the LM head.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut start = 0u32;
        for (s, cont) in pack {
            let first = start + s.ctx_len as u32 - 1;
            rows.extend(first..first + cont.len() as u32);
            targets.extend(cont);
            start += s.tokens.len() as u32;
        }
        let mut scores = score_rows(model, &hidden, &rows, &targets)?.into_iter();
        pack.iter().map(|(s, cont)| tally(s, cont, scores.by_ref().take(cont.len()))).collect()
    }
}

/// One continuation token's share of a score.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenScore {
    pub logprob: f64,
    pub greedy: bool,
}

/// A continuation's score from the scores of each of its tokens, in order.
pub(super) fn tally(
    s: &Scored,
    cont: &[u32],
    tokens: impl Iterator<Item = TokenScore>,
) -> Result<LoglikOutput> {
    let mut logprob = 0f64;
    let mut is_greedy = true;
    let mut seen = 0;
    for t in tokens {
        logprob += t.logprob;
        is_greedy &= t.greedy;
        seen += 1;
    }
    if seen != cont.len() {
        return Err(LoglikError::RowCount { item: s.index, rows: seen, tokens: cont.len() }.into());
    }
    Ok(LoglikOutput {
        index: s.index,
        logprob,
        is_greedy,
        context_tokens: s.ctx_len,
        continuation_tokens: cont.len(),
        context_dropped: s.dropped,
    })
}

/// Logits held at once while scoring, give or take [`LOGIT_ROWS`]. A pack's rows whole would
/// be rows × vocabulary floats: 640 continuation tokens of a 150k vocabulary are 390 MB.
const LOGIT_BYTES: usize = 4 << 20;
/// Fewest rows per pass through the LM head, which streams the whole head each time.
const LOGIT_ROWS: usize = 16;

/// The score of `targets[i]` at row `rows[i]` of `hidden`, through the LM head a bounded number
/// of rows at a time. Each row's logits depend on that row alone, so the chunking changes no bits.
fn score_rows(
    model: &crate::model::Decoder,
    hidden: &Tensor,
    rows: &[u32],
    targets: &[u32],
) -> Result<Vec<TokenScore>> {
    let vocab = model.config().vocab_size.max(1);
    score_rows_by(model, hidden, rows, targets, (LOGIT_BYTES / (vocab * 4)).max(LOGIT_ROWS))
}

fn score_rows_by(
    model: &crate::model::Decoder,
    hidden: &Tensor,
    rows: &[u32],
    targets: &[u32],
    chunk: usize,
) -> Result<Vec<TokenScore>> {
    let mut out = Vec::with_capacity(rows.len());
    for (rows, targets) in rows.chunks(chunk).zip(targets.chunks(chunk)) {
        let rows_t = Tensor::new(rows, model.device()).ctx("selecting positions")?;
        let logits = model
            .logits_f32(&hidden.index_select(&rows_t, 0).ctx("selecting positions")?)
            .ctx("computing logits")?;
        let width = logits.len() / rows.len();
        for (l, &target) in logits.chunks(width).zip(targets) {
            out.push(token_score(l, target)?);
        }
    }
    Ok(out)
}

/// The score of `target` under one row of logits.
fn token_score(logits: &[f32], target: u32) -> Result<TokenScore> {
    if target as usize >= logits.len() {
        return Err(
            LoglikError::TokenOutsideVocabulary { token: target, vocab: logits.len() }.into()
        );
    }
    Ok(TokenScore {
        logprob: log_softmax_at(logits, target as usize),
        greedy: argmax(logits) == target,
    })
}

/// log softmax(l)[i], accumulated in f64 so long vocabularies lose nothing to rounding.
fn log_softmax_at(l: &[f32], i: usize) -> f64 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = l.iter().map(|&v| (v as f64 - max).exp()).sum();
    l[i] as f64 - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Scores through the LM head a few rows at a time are those of all rows at once, bit for
    /// bit, and a token outside the vocabulary is an error rather than a panic.
    #[test]
    fn chunked_scores_are_the_scores_of_all_rows_at_once() {
        let cfg: crate::model::ModelConfig = serde_json::from_value(serde_json::json!({"hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 300}))
        .unwrap();
        let model =
            crate::model::random::random_decoder(&cfg, DType::F32, &Device::Cpu, 7).unwrap();
        let tokens: Vec<u32> = (0..11).map(|i| (i * 37 + 5) % 300).collect();
        let t = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap();
        let hidden = model.forward(&t, &[Segment { len: tokens.len(), offset: 0 }], None).unwrap();
        let all = model.logits(&hidden).unwrap().to_vec2::<f32>().unwrap();
        // Every row but the first, in a scrambled order, each predicting the token that follows it.
        let rows: Vec<u32> = vec![9, 2, 5, 0, 7, 3, 8, 1, 6, 4];
        let targets: Vec<u32> = rows.iter().map(|&r| tokens[r as usize + 1]).collect();
        let want: Vec<(f64, bool)> = rows
            .iter()
            .zip(&targets)
            .map(|(&r, &t)| {
                (log_softmax_at(&all[r as usize], t as usize), argmax(&all[r as usize]) == t)
            })
            .collect();
        for chunk in [1, 3, 4, 10, 64] {
            let got = score_rows_by(&model, &hidden, &rows, &targets, chunk).unwrap();
            let got: Vec<(f64, bool)> = got.iter().map(|s| (s.logprob, s.greedy)).collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.0.to_bits(), g.1), (w.0.to_bits(), w.1), "chunk {chunk}");
            }
        }
        let err = score_rows_by(&model, &hidden, &[0], &[300], 4).unwrap_err().to_string();
        assert!(err.contains("outside the model's vocabulary of 300"), "{err}");
    }

    #[test]
    fn log_softmax_matches_the_definition() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        for i in 0..3 {
            assert!((log_softmax_at(&l, i) - ((l[i] as f64).exp() / z).ln()).abs() < 1e-12);
        }
    }
}
