//! The packed step on the CPU, as the CUDA backend runs it: every operation once for all rows
//! of the step (one launch each, counted in [`Launches`]), the kernels' references for the
//! custom operations and `gemm_*`'s order for the products. A step's rows are tokens of
//! any mix of sequences, each at its own (slot, position): all rows' keys and values are
//! written before any row attends, so a prompt's tokens can share one step (prefill) and
//! decoding rows join them (continuous batching).
//!
//! Llama-style decoders only (RMSNorm before attention and MLP, SiLU-gated MLP, one rope
//! table, no biases or q/k norms, full attention); others are refused at construction.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::reference::{self, Heads, RowAt, SampleParams};
use super::table::ATTENTION_MAX_DIM;
use crate::error::{Error, Result, TensorContext};
use crate::model::config::ModelConfig;
use crate::model::family::{Activation, Layout, Mlp, NormKind, QkNorm};
use crate::model::rope::inv_freq;

/// Threads a block the kernels are launched with (the references follow the same trees); also
/// the positions of a tile of `attention` (kernels.cu: `ATT_POS`).
pub const THREADS: usize = 128;

/// Threads a block of `sample_rows` (one block per sampled row, over the whole vocabulary).
pub const SAMPLE_THREADS: usize = 1024;

/// Launches enqueued, counted where each operation is issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launches(pub usize);

/// What a row feeds the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// A prompt token, from the host.
    Token(u32),
    /// The token the row's sequence sampled last, which is on the device.
    Sampled,
}

/// One row of a device step.
#[derive(Clone, Copy, Debug)]
pub struct DeviceRow {
    pub feed: Feed,
    pub at: RowAt,
}

/// Memory a step holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceMemory {
    pub weights: usize,
    pub kv_cache: usize,
    pub scratch: usize,
    /// In use on the device (by every context) once everything was allocated.
    pub device_used: usize,
}

/// What runs packed steps: the device ([`super::cuda::CudaStep`]) and the CPU reference
/// ([`ReferenceStep`]), with one protocol. A step's sampled tokens stay where the step ran
/// (a [`Feed::Sampled`] row of the next step reads its sequence's), and come back to the host
/// in order, at most two steps behind, through [`PackedStep::tokens`].
pub trait PackedStep {
    /// Cache slots (sequences at once), positions a slot holds, and rows a step takes at most.
    fn shape(&self) -> (usize, usize, usize);
    /// Enqueues one step: `rows`, and `samples` (row, its parameters) for the rows whose next
    /// token is sampled (a sequence at most once).
    fn enqueue(
        &mut self,
        rows: &[DeviceRow],
        samples: &[(usize, SampleParams)],
    ) -> Result<Launches>;
    /// The sampled tokens of the oldest step not yet read, in its `samples` order.
    fn tokens(&mut self) -> Result<Vec<u32>>;
    /// Runs one step for multiple-choice scoring and waits for it (no step may be unread):
    /// for each (row, token) of `targets`, log softmax of the row's logits at the token, and
    /// whether the token is the row's argmax. At most a row per slot is scored a step.
    fn score(&mut self, rows: &[DeviceRow], targets: &[(usize, u32)]) -> Result<Vec<(f64, bool)>>;
    /// The memory the step holds.
    fn memory(&self) -> DeviceMemory;
}

/// A layer's weights (see [`Part`]).
struct Layer {
    attn_norm: Vec<f32>,
    qkv: Vec<f32>,
    o: Vec<f32>,
    mlp_norm: Vec<f32>,
    gate_up: Vec<f32>,
    down: Vec<f32>,
}

/// A model's weights, rope tables and bf16 KV caches (`slots` sequences of `max_len`
/// positions each), and the step over them.
pub struct ReferenceStep {
    m: StepModel,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    lm_head: Vec<f32>,
    k_cache: Vec<Vec<u16>>,
    v_cache: Vec<Vec<u16>>,
    slots: usize,
    /// As on the device: each slot's last sampled token, and the steps' tokens not yet read.
    slot_token: Vec<u32>,
    unread: std::collections::VecDeque<Vec<u32>>,
    /// The matrices are bf16 (held here widened): their products are `gemm_bf16`'s, on
    /// tensor cores ([`reference::gemm_mma_dot`]), else `gemm_f32`'s.
    bf16: bool,
}

/// Whether a row lies outside a step's `slots` cache slots or `max_len` positions (both steps
/// refuse such a step).
pub fn rows_outside(rows: &[DeviceRow], slots: usize, max_len: usize) -> bool {
    rows.iter().any(|r| r.at.slot >= slots || r.at.pos >= max_len)
}

/// The checks both steps make of a scoring step: targets inside the step's rows and the
/// vocabulary, at most one per slot (the device's logits hold a row per slot), nothing unread.
pub fn check_scoring(
    rows: &[DeviceRow],
    targets: &[(usize, u32)],
    (slots, max_len, vocab): (usize, usize, usize),
    unread: bool,
) -> Result<()> {
    if unread {
        return Err(model_error("a scoring step while sampled tokens are unread".into()));
    }
    if rows.is_empty() || rows_outside(rows, slots, max_len) {
        return Err(model_error(format!(
            "a scoring step of {} rows outside the step's {slots} slots or {max_len} positions",
            rows.len()
        )));
    }
    if targets.len() > slots || targets.iter().any(|&(r, t)| r >= rows.len() || t as usize >= vocab)
    {
        return Err(model_error(format!(
            "a scoring step of {} targets over {} rows (at most {slots}, each a row of the step \
             and a token of the {vocab}-token vocabulary)",
            targets.len(),
            rows.len()
        )));
    }
    Ok(())
}

/// Rows a [`ReferenceStep`] takes a step through [`PackedStep`] (the device's buffers are
/// sized at construction; the reference has none, but keeps the engine's steps alike).
pub const REFERENCE_STEP_ROWS: usize = 512;

fn model_error(message: String) -> Error {
    Error::Model { origin: "for the packed step".to_string(), message }
}

fn unsupported(what: &str) -> Error {
    model_error(format!("the packed CUDA step runs Llama-style decoders only: {what}"))
}

/// A Llama-style model as the packed step sees it: its shapes and rope tables, checked at
/// construction (other architectures are refused with the reason), and where its tensors are.
pub struct StepModel {
    pub hidden: usize,
    pub inter: usize,
    pub vocab: usize,
    pub layers: usize,
    pub eps: f32,
    pub scale: f32,
    pub heads: Heads,
    /// `[max_len][half]` tables, as the host decoder's: f32 position × f32 inverse frequency.
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    tied: bool,
}

/// A layer's matrices as the step holds them, fused.
pub enum Part {
    AttnNorm,
    /// `[q | k | v]` rows, `[(q + 2 kv) · head_dim][hidden]`.
    Qkv,
    O,
    MlpNorm,
    /// `[gate | up]` rows, `[2 · inter][hidden]`.
    GateUp,
    Down,
}

impl StepModel {
    pub fn new(cfg: &ModelConfig, max_len: usize) -> Result<Self> {
        let layout = Layout::of(cfg).map_err(|e| model_error(e.to_string()))?;
        if layout.norm != NormKind::Rms
            || !layout.norms.before_attention
            || layout.norms.after_attention
            || layout.norms.after_mlp
            || layout.parallel_residual
        {
            return Err(unsupported("its norms are not Llama's"));
        }
        if layout.mlp != Mlp::Gated(Activation::Silu) || layout.moe.is_some() {
            return Err(unsupported("its MLP is not SiLU-gated and dense"));
        }
        if layout.qkv_bias || layout.o_bias || layout.mlp_bias || layout.qk_norm != QkNorm::None {
            return Err(unsupported("it has biases or q/k norms"));
        }
        if layout.ropes.len() != 1
            || layout.layers.iter().any(|l| l.window.is_some())
            || layout.embed_scale.is_some()
            || layout.attn_softcap.is_some()
            || layout.final_softcap.is_some()
            || layout.learned_positions
        {
            return Err(unsupported("it has windows, several rope tables or soft caps"));
        }
        let (dim, kv) = (cfg.head_dim(), cfg.num_kv_heads());
        if dim % 2 != 0 || dim > ATTENTION_MAX_DIM {
            let why = format!("its heads ({dim}) are odd or wider than {ATTENTION_MAX_DIM}");
            return Err(unsupported(&why));
        }
        let freqs = inv_freq(cfg, layout.rotary_dim, &layout.ropes[0]);
        let heads = Heads { q: cfg.num_attention_heads, kv, dim, half: freqs.len(), max_len };
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..max_len {
            for f in &freqs {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(StepModel {
            hidden: cfg.hidden_size,
            inter: cfg.intermediate_size,
            vocab: cfg.vocab_size,
            layers: cfg.num_hidden_layers,
            eps: cfg.rms_norm_eps as f32,
            scale: layout.attn_scale as f32,
            heads,
            cos,
            sin,
            tied: cfg.tie_word_embeddings,
        })
    }

    /// Layer `layer`'s `part`, from HF-named tensors (fused ones concatenated by rows).
    pub fn layer(&self, tensors: &dyn StepTensors, layer: usize, part: Part) -> Result<Tensor> {
        let p = |s: &str| format!("model.layers.{layer}.{s}.weight");
        let names = match part {
            Part::AttnNorm => vec![p("input_layernorm")],
            Part::Qkv => vec![p("self_attn.q_proj"), p("self_attn.k_proj"), p("self_attn.v_proj")],
            Part::O => vec![p("self_attn.o_proj")],
            Part::MlpNorm => vec![p("post_attention_layernorm")],
            Part::GateUp => vec![p("mlp.gate_proj"), p("mlp.up_proj")],
            Part::Down => vec![p("mlp.down_proj")],
        };
        let parts = names.iter().map(|n| tensor(tensors, n)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0).ctx(&names[0])
    }

    /// Whether the matrices are bf16: the device then runs its products on tensor cores
    /// (`gemm_bf16`, reference [`reference::gemm_mma_dot`]), else on CUDA cores (`gemm_f32`).
    pub fn bf16_matrices(&self, tensors: &dyn StepTensors) -> Result<bool> {
        let q = tensor(tensors, "model.layers.0.self_attn.q_proj.weight")?;
        Ok(q.dtype() == DType::BF16)
    }

    /// `model.embed_tokens.weight`, `model.norm.weight` or the LM head (the embedding when
    /// tied).
    pub fn embed(&self, tensors: &dyn StepTensors) -> Result<Tensor> {
        tensor(tensors, "model.embed_tokens.weight")
    }

    pub fn final_norm(&self, tensors: &dyn StepTensors) -> Result<Tensor> {
        tensor(tensors, "model.norm.weight")
    }

    pub fn lm_head(&self, tensors: &dyn StepTensors) -> Result<Tensor> {
        tensor(tensors, if self.tied { "model.embed_tokens.weight" } else { "lm_head.weight" })
    }
}

/// Where the step reads a model's tensors, by HF name (`model.layers.N.self_attn.q_proj.weight`,
/// …), one at a time.
pub trait StepTensors {
    fn tensor(&self, name: &str) -> Result<Tensor>;
}

impl StepTensors for HashMap<String, Tensor> {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        self.get(name).cloned().ok_or_else(|| model_error(format!("no tensor {name}")))
    }
}

/// A checkpoint's tensors as stored (their own dtype, on the builder's device).
impl StepTensors for VarBuilder<'_> {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        self.get_unchecked(name).map_err(|e| model_error(format!("tensor {name}: {e}")))
    }
}

fn tensor(tensors: &dyn StepTensors, name: &str) -> Result<Tensor> {
    tensors.tensor(name)
}

/// A tensor's values as f32, flat.
fn f32s(t: Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).ctx("a step weight")
}

impl ReferenceStep {
    /// From HF-named tensors (`model.layers.N.self_attn.q_proj.weight`, …).
    pub fn new(
        cfg: &ModelConfig,
        tensors: &dyn StepTensors,
        slots: usize,
        max_len: usize,
    ) -> Result<Self> {
        let m = StepModel::new(cfg, max_len)?;
        let bf16 = m.bf16_matrices(tensors)?;
        let layers = (0..m.layers)
            .map(|i| {
                Ok(Layer {
                    attn_norm: f32s(m.layer(tensors, i, Part::AttnNorm)?)?,
                    qkv: f32s(m.layer(tensors, i, Part::Qkv)?)?,
                    o: f32s(m.layer(tensors, i, Part::O)?)?,
                    mlp_norm: f32s(m.layer(tensors, i, Part::MlpNorm)?)?,
                    gate_up: f32s(m.layer(tensors, i, Part::GateUp)?)?,
                    down: f32s(m.layer(tensors, i, Part::Down)?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let cache = slots * m.heads.kv * max_len * m.heads.dim;
        Ok(Self {
            embed: f32s(m.embed(tensors)?)?,
            final_norm: f32s(m.final_norm(tensors)?)?,
            lm_head: f32s(m.lm_head(tensors)?)?,
            k_cache: vec![vec![0; cache]; m.layers],
            v_cache: vec![vec![0; cache]; m.layers],
            slots,
            slot_token: vec![0; slots],
            unread: Default::default(),
            layers,
            m,
            bf16,
        })
    }

    /// One step: row i is token `tokens[i]` of the sequence in slot `at[i].slot` at position
    /// `at[i].pos`. Returns every row's logits (`[rows][vocab]`), their greedy tokens, and the
    /// launches the step enqueued.
    pub fn step(&mut self, tokens: &[u32], at: &[RowAt]) -> (Vec<f32>, Vec<u32>, Launches) {
        let greedy = SampleParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, draw: 0 };
        let samples: Vec<(usize, SampleParams)> = (0..tokens.len()).map(|r| (r, greedy)).collect();
        self.step_sampled(tokens, at, &samples)
    }

    /// [`Self::step`] with the LM head and sampling only for the rows that sample: `samples`
    /// holds (row, its sampling parameters). Returns those rows' logits (`[samples][vocab]`),
    /// their tokens, and the launches.
    pub fn step_sampled(
        &mut self,
        tokens: &[u32],
        at: &[RowAt],
        samples: &[(usize, SampleParams)],
    ) -> (Vec<f32>, Vec<u32>, Launches) {
        let rows: Vec<usize> = samples.iter().map(|&(r, _)| r).collect();
        let (logits, mut launches) = self.forward(tokens, at, &rows);
        if !samples.is_empty() {
            launches.0 += 1;
        }
        let next = logits
            .chunks_exact(self.m.vocab)
            .zip(samples)
            .map(|(l, &(_, p))| reference::sample(l, p, SAMPLE_THREADS))
            .collect();
        (logits, next, launches)
    }

    /// A step up to the LM head, over `logit_rows` (their logits, `[logit_rows][vocab]`, and the
    /// launches so far).
    fn forward(
        &mut self,
        tokens: &[u32],
        at: &[RowAt],
        logit_rows: &[usize],
    ) -> (Vec<f32>, Launches) {
        assert_eq!(tokens.len(), at.len());
        let (rows, hs, heads) = (tokens.len(), self.m.hidden, self.m.heads);
        let mut launches = Launches(0);
        let mut launch = || launches.0 += 1;

        launch(); // embedding gather
        let mut residual: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.embed[t as usize * hs..][..hs].iter().copied())
            .collect();
        let mut normed = vec![0f32; rows * hs];
        let mut delta: Option<Vec<f32>> = None;
        // The device fuses each RMSNorm into the product that reads it, each residual add into
        // the product whose output it adds, and (bf16) SiLU·mul into the gate/up product
        // (`gemm_*`'s `nw` and `mode`): the same operations, in the same order, so only the
        // launches differ from this loop's steps.
        for (l, layer) in self.layers.iter().enumerate() {
            add_rms_norm(
                &mut residual,
                delta.as_deref(),
                &layer.attn_norm,
                &mut normed,
                self.m.eps,
            );
            launch();
            let mut qkv = gemm(&normed, &layer.qkv, hs, self.bf16);
            launch();
            let (kc, vc) = (&mut self.k_cache[l], &mut self.v_cache[l]);
            for (row, &a) in qkv.chunks_exact_mut(heads.qkv_width()).zip(at) {
                reference::rope_kv_write(row, &self.m.cos, &self.m.sin, a, heads, kc, vc);
            }
            launch();
            let mut attn = vec![0f32; rows * heads.q * heads.dim];
            for ((row, &a), out) in qkv
                .chunks_exact(heads.qkv_width())
                .zip(at)
                .zip(attn.chunks_exact_mut(heads.q * heads.dim))
            {
                reference::attention(row, kc, vc, a, heads, self.m.scale, out, THREADS);
            }
            launch();
            let o = gemm(&attn, &layer.o, heads.q * heads.dim, self.bf16);
            add_rms_norm(&mut residual, Some(&o), &layer.mlp_norm, &mut normed, self.m.eps);
            launch();
            let gu = gemm(&normed, &layer.gate_up, hs, self.bf16);
            // With bf16 weights the device applies SiLU·mul in the gate/up product.
            if !self.bf16 {
                launch();
            }
            let mut act = vec![0f32; rows * self.m.inter];
            for (g, o) in gu.chunks_exact(2 * self.m.inter).zip(act.chunks_exact_mut(self.m.inter))
            {
                reference::silu_mul(g, o);
            }
            launch();
            delta = Some(gemm(&act, &layer.down, self.m.inter, self.bf16));
        }
        add_rms_norm(&mut residual, delta.as_deref(), &self.final_norm, &mut normed, self.m.eps);
        // No LM head (nor sampling or scoring after it) in a step where no row samples.
        if logit_rows.is_empty() {
            return (Vec::new(), launches);
        }
        launch();
        let picked: Vec<f32> =
            logit_rows.iter().flat_map(|&r| normed[r * hs..][..hs].iter().copied()).collect();
        (gemm(&picked, &self.lm_head, hs, self.bf16), launches)
    }

    /// The rows' input tokens (a sampled row's from its slot, as the device's embedding reads
    /// it) and places.
    fn inputs(&self, rows: &[DeviceRow]) -> (Vec<u32>, Vec<RowAt>) {
        let tokens = rows
            .iter()
            .map(|r| match r.feed {
                Feed::Token(t) => t,
                Feed::Sampled => self.slot_token[r.at.slot],
            })
            .collect();
        (tokens, rows.iter().map(|r| r.at).collect())
    }
}

/// `add_rms_norm` over every row.
fn add_rms_norm(x: &mut [f32], delta: Option<&[f32]>, weight: &[f32], out: &mut [f32], eps: f32) {
    let hs = weight.len();
    for (r, (x, o)) in x.chunks_exact_mut(hs).zip(out.chunks_exact_mut(hs)).enumerate() {
        let d = delta.map(|d| &d[r * hs..][..hs]);
        reference::add_rms_norm(x, d, weight, o, eps, THREADS);
    }
}

/// `x` (`[rows][k]`) times `w`ᵀ (`w`: `[n][k]`), as `gemm_bf16` (`bf16`) or `gemm_f32`
/// computes each output.
fn gemm(x: &[f32], w: &[f32], k: usize, bf16: bool) -> Vec<f32> {
    let n = w.len() / k;
    let dot = if bf16 { reference::gemm_mma_dot } else { reference::gemm_dot };
    let mut out = Vec::with_capacity(x.len() / k * n);
    for xr in x.chunks_exact(k) {
        out.extend(w.chunks_exact(k).map(|wr| dot(xr, wr)));
    }
    out
}

impl PackedStep for ReferenceStep {
    fn shape(&self) -> (usize, usize, usize) {
        (self.slots, self.m.heads.max_len, REFERENCE_STEP_ROWS)
    }

    fn enqueue(
        &mut self,
        rows: &[DeviceRow],
        samples: &[(usize, SampleParams)],
    ) -> Result<Launches> {
        let bad = rows.is_empty()
            || rows.len() > REFERENCE_STEP_ROWS
            || rows_outside(rows, self.slots, self.m.heads.max_len)
            || samples.iter().any(|&(r, _)| r >= rows.len());
        if bad {
            return Err(model_error(format!(
                "a step of {} rows outside the step's {} slots, {} positions or {REFERENCE_STEP_ROWS} rows",
                rows.len(),
                self.slots,
                self.m.heads.max_len
            )));
        }
        if self.unread.len() == 2 {
            return Err(model_error("two steps' tokens are still unread".into()));
        }
        let (tokens, at) = self.inputs(rows);
        let (_, next, launches) = self.step_sampled(&tokens, &at, samples);
        for (&(r, _), &t) in samples.iter().zip(&next) {
            self.slot_token[rows[r].at.slot] = t;
        }
        self.unread.push_back(next);
        Ok(launches)
    }

    fn tokens(&mut self) -> Result<Vec<u32>> {
        self.unread.pop_front().ok_or_else(|| model_error("no step is waiting to be read".into()))
    }

    fn score(&mut self, rows: &[DeviceRow], targets: &[(usize, u32)]) -> Result<Vec<(f64, bool)>> {
        let shape = (self.slots, self.m.heads.max_len, self.m.vocab);
        check_scoring(rows, targets, shape, !self.unread.is_empty())?;
        if rows.len() > REFERENCE_STEP_ROWS {
            return Err(model_error(format!("a step of more than {REFERENCE_STEP_ROWS} rows")));
        }
        let (tokens, at) = self.inputs(rows);
        let logit_rows: Vec<usize> = targets.iter().map(|&(r, _)| r).collect();
        let (logits, _) = self.forward(&tokens, &at, &logit_rows);
        Ok(logits
            .chunks_exact(self.m.vocab)
            .zip(targets)
            .map(|(l, &(_, t))| reference::score(l, t, SAMPLE_THREADS))
            .collect())
    }

    fn memory(&self) -> DeviceMemory {
        let floats = |v: &[f32]| std::mem::size_of_val(v);
        let weights = floats(&self.embed)
            + floats(&self.final_norm)
            + floats(&self.lm_head)
            + self
                .layers
                .iter()
                .map(|l| {
                    floats(&l.attn_norm)
                        + floats(&l.qkv)
                        + floats(&l.o)
                        + floats(&l.mlp_norm)
                        + floats(&l.gate_up)
                        + floats(&l.down)
                })
                .sum::<usize>();
        let kv_cache = self.k_cache.iter().chain(&self.v_cache).map(|c| 2 * c.len()).sum();
        DeviceMemory { weights, kv_cache, scratch: 0, device_used: 0 }
    }
}
