//! CPU references of `kernels.cu`: each function computes what its kernel computes, operation
//! for operation and in the same order, for a launch with `threads` threads a block (a
//! multiple of 32): thread t's strided partial, then the warp butterflies and the block's tree
//! as the kernel does them. The GPU must give these bits.

use std::ops::Add;

use crate::kernels::{from_bf16, to_bf16};
use crate::model::host::exp;
use crate::rng::SplitMix64;

/// One warp's butterfly sum (`warp_sum`): after the step with offset o, lane i
/// holds v[i] + v[i ^ o]; returns what every lane ends with.
fn warp_sum<T: Copy + Add<Output = T>>(v: &[T; 32]) -> T {
    let mut lanes = *v;
    for o in [16, 8, 4, 2, 1] {
        let before = lanes;
        for (i, l) in lanes.iter_mut().enumerate() {
            *l = before[i] + before[i ^ o];
        }
    }
    lanes[0]
}

/// `block_sum` (f32 or f64) over each thread's partial (`partials.len()` = threads,
/// a multiple of 32).
pub fn block_sum<T: Copy + Add<Output = T> + Default>(partials: &[T]) -> T {
    assert!(partials.len().is_multiple_of(32) && partials.len() <= 1024);
    let mut warps = [T::default(); 32];
    for (w, chunk) in partials.chunks_exact(32).enumerate() {
        warps[w] = warp_sum(chunk.try_into().expect("32 lanes"));
    }
    warp_sum(&warps)
}

/// `block_max`: the largest partial (max is exact in any order), NaNs ignored as `fmaxf` does.
fn block_max(partials: &[f32]) -> f32 {
    partials.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// `add_rms_norm` for one row: with `delta`, `x += delta` (written back); then
/// `out = x * (1 / sqrt(mean(x²) + eps)) * weight`.
pub fn add_rms_norm(
    x: &mut [f32],
    delta: Option<&[f32]>,
    weight: &[f32],
    out: &mut [f32],
    eps: f32,
    threads: usize,
) {
    let hidden = x.len();
    if let Some(d) = delta {
        for (v, d) in x.iter_mut().zip(d) {
            *v += d;
        }
    }
    let partials: Vec<f32> = (0..threads)
        .map(|t| (t..hidden).step_by(threads).fold(0f32, |s, i| s + x[i] * x[i]))
        .collect();
    let scale = 1.0 / (block_sum(&partials) / hidden as f32 + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x.iter()).zip(weight) {
        *o = v * scale * w;
    }
}

/// Where the kernels find a row's sequence: its cache slot and its position in it.
#[derive(Clone, Copy, Debug)]
pub struct RowAt {
    pub slot: usize,
    pub pos: usize,
}

/// The attention shape the kernels take.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
    /// Rotated pairs per head (`head_dim / 2` unless the rotary part is partial).
    pub half: usize,
    /// Positions per cache slot.
    pub max_len: usize,
}

impl Heads {
    /// Floats in a row of the packed q/k/v projection: `[q heads | k heads | v heads]`.
    pub fn qkv_width(&self) -> usize {
        (self.q + 2 * self.kv) * self.dim
    }

    /// Index of (slot, kv head, position) in a `[slot][kv_head][max_len][head_dim]` cache.
    pub fn cache_at(&self, slot: usize, kv_head: usize, pos: usize) -> usize {
        ((slot * self.kv + kv_head) * self.max_len + pos) * self.dim
    }
}

/// `rope_kv_write` for one row (`qkv`: its `[q | k | v]` projection, rotated in place), with
/// `cos`/`sin` the `[positions][half]` tables; k and v go to the bf16 caches.
pub fn rope_kv_write(
    qkv: &mut [f32],
    cos: &[f32],
    sin: &[f32],
    at: RowAt,
    heads: Heads,
    k_cache: &mut [u16],
    v_cache: &mut [u16],
) {
    let (dim, half) = (heads.dim, heads.half);
    let (c, s) = (&cos[at.pos * half..][..half], &sin[at.pos * half..][..half]);
    for head in qkv[..(heads.q + heads.kv) * dim].chunks_exact_mut(dim) {
        for j in 0..half {
            let (x1, x2) = (head[j], head[j + half]);
            head[j] = x1 * c[j] - x2 * s[j];
            head[j + half] = x1 * s[j] + x2 * c[j];
        }
    }
    for h in 0..heads.kv {
        let at_cache = heads.cache_at(at.slot, h, at.pos);
        let (k, v) =
            (&qkv[(heads.q + h) * dim..][..dim], &qkv[(heads.q + heads.kv + h) * dim..][..dim]);
        for d in 0..dim {
            k_cache[at_cache + d] = to_bf16(k[d]);
            v_cache[at_cache + d] = to_bf16(v[d]);
        }
    }
}

/// `attention` for one row: each q head of `qkv` against positions `0..=at.pos` of its slot's
/// cache, into `out` (`[q heads][head_dim]`), `threads` the kernel's positions a tile. The
/// kernel computes a query the same way whatever tile and queries share its block, so this is
/// its result for the row alone.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    qkv: &[f32],
    k_cache: &[u16],
    v_cache: &[u16],
    at: RowAt,
    heads: Heads,
    scale: f32,
    out: &mut [f32],
    threads: usize,
) {
    let (dim, len) = (heads.dim, at.pos + 1);
    for h in 0..heads.q {
        let q = &qkv[h * dim..][..dim];
        let base = heads.cache_at(at.slot, h / (heads.q / heads.kv), 0);
        let mut scores: Vec<f32> = (0..len)
            .map(|t| {
                let k = &k_cache[base + t * dim..][..dim];
                q.iter().zip(k).fold(0f32, |s, (&q, &k)| s + q * from_bf16(k)) * scale
            })
            .collect();
        let partials: Vec<f32> = (0..threads)
            .map(|t| (t..len).step_by(threads).fold(f32::NEG_INFINITY, |m, p| m.max(scores[p])))
            .collect();
        let m = block_max(&partials);
        for s in &mut scores {
            *s = exp(*s - m);
        }
        let partials: Vec<f32> = (0..threads)
            .map(|t| (t..len).step_by(threads).fold(0f32, |z, p| z + scores[p]))
            .collect();
        let z = block_sum(&partials);
        for (d, o) in out[h * dim..][..dim].iter_mut().enumerate() {
            let acc = (0..len)
                .fold(0f32, |acc, t| acc + scores[t] * from_bf16(v_cache[base + t * dim + d]));
            *o = acc / z;
        }
    }
}

/// `silu_mul` for one row `[gate | up]`.
pub fn silu_mul(gu: &[f32], out: &mut [f32]) {
    let (gate, up) = gu.split_at(out.len());
    for ((o, &x), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = x / (1.0 + exp(-x)) * u;
    }
}

/// `row_argmax` (`sample_rows` at temperature 0) for one row: the first index of the largest value; NaNs never win; 0 when
/// every value is NaN. (Order-free: the kernel's reductions keep the larger value and, on a
/// tie, the smaller index.)
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best: Option<(f32, usize)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(b, _)| v > b) {
            best = Some((v, i));
        }
    }
    best.map_or(0, |(_, i)| i as u32)
}

/// k values a lane of `gemm_*` takes at a time (`GEMM_VEC`).
const GEMM_VEC: usize = 8;

/// One output of `gemm_f32`: x · w (rows of one length k), lane l accumulating j = 8l .. 8l+7,
/// then 8l+256 .., in order with fused multiply-adds, then the warp's butterfly.
pub fn gemm_dot(x: &[f32], w: &[f32]) -> f32 {
    let k = x.len();
    assert_eq!(w.len(), k);
    let mut lanes = [0f32; 32];
    for (lane, acc) in lanes.iter_mut().enumerate() {
        for base in (lane * GEMM_VEC..k).step_by(32 * GEMM_VEC) {
            for j in base..(base + GEMM_VEC).min(k) {
                *acc = x[j].mul_add(w[j], *acc);
            }
        }
    }
    warp_sum(&lanes)
}

/// k values one tensor-core product (`mma.m16n8k16`) takes.
pub const MMA_K: usize = 16;

/// One output of `gemm_bf16`, which runs on tensor cores: x rounded to bf16 (as the host path's
/// bf16 products round it) times the bf16 row `w` (widened exactly), summed by `mma.m16n8k16`
/// over k in chunks of 16, in order, from 0, with k padded to a multiple of 16 with zeros. How
/// a tensor core adds a chunk's 16 exact products into its f32 accumulator is the hardware's
/// own; this reference (and `tools/cuda_emulator`) adds them one at a time in k order, each
/// addition rounded, so a device agrees with it to rounding, and the emulator bit for bit.
/// Either way a row's result depends on its own x alone: no split of k, whatever the batch.
pub fn gemm_mma_dot(x: &[f32], w: &[f32]) -> f32 {
    let k = x.len();
    assert_eq!(w.len(), k);
    let mut acc = 0f32;
    for j in 0..k.div_ceil(MMA_K) * MMA_K {
        let (a, b) = if j < k { (from_bf16(to_bf16(x[j])), w[j]) } else { (0.0, 0.0) };
        acc = a.mul_add(b, acc);
    }
    acc
}

/// `sample_rows`'s rank of token i with logit v: larger ranks first (the logit's bits in IEEE
/// total order, then the lower index).
fn rank_key(v: f32, i: usize) -> u64 {
    let b = v.to_bits();
    let o = if b & 0x8000_0000 != 0 { !b } else { b | 0x8000_0000 };
    (u64::from(o) << 32) | u64::from(u32::MAX - i as u32)
}

/// The sequence's draw number `n` (0-based): the (n+1)-th `unit()` of `SplitMix64::new(seed)`,
/// computed from the counter alone as `unit_draw` does.
pub fn unit_draw(seed: u64, n: u64) -> f64 {
    SplitMix64::new(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))).unit()
}

/// A row's sampling parameters, as `sample_rows` takes them.
#[derive(Clone, Copy, Debug)]
pub struct SampleParams {
    /// Greedy when `<= 0`.
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// `>= 1`: off.
    pub top_p: f64,
    pub seed: u64,
    /// The sequence's sampled tokens before this one.
    pub draw: u64,
}

/// What `mass_at_or_above` sums for the tokens ranked at or above a key.
#[derive(Clone, Copy)]
enum Mass {
    Count,
    Weight,
    Share(f64),
}

struct SampleRow<'a> {
    logits: &'a [f32],
    weights: Vec<f64>,
    threads: usize,
}

impl SampleRow<'_> {
    fn mass(&self, c: u64, floor: u64, what: Mass) -> f64 {
        let partials: Vec<f64> = (0..self.threads)
            .map(|t| {
                (t..self.logits.len()).step_by(self.threads).fold(0f64, |s, i| {
                    let key = rank_key(self.logits[i], i);
                    if key < c || key < floor {
                        return s;
                    }
                    s + match what {
                        Mass::Count => 1.0,
                        Mass::Weight => self.weights[i],
                        Mass::Share(total) => self.weights[i] / total,
                    }
                })
            })
            .collect();
        block_sum(&partials)
    }

    /// `key_search`: the largest key whose mass meets `cut` (passes it with `strict`); 0 when
    /// none does.
    fn search(&self, floor: u64, what: Mass, cut: f64, strict: bool) -> u64 {
        let mut t = 0u64;
        for b in (0..64).rev() {
            let c = t | (1 << b);
            let m = self.mass(c, floor, what);
            if if strict { m > cut } else { m >= cut } {
                t = c;
            }
        }
        t
    }
}

/// `sample_rows` for one row, with `threads` threads a block: greedy, or the CPU sampler's
/// top-k / top-p / temperature draw (`engine::sampling::sample`) found by key-bit searches
/// instead of a sort, with the weights summed by the block's tree.
pub fn sample(logits: &[f32], p: SampleParams, threads: usize) -> u32 {
    if p.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut row = SampleRow { logits, weights: vec![0.0; logits.len()], threads };
    let mut floor = 0;
    if p.top_k > 0 {
        floor = row.search(0, Mass::Count, p.top_k as f64, false);
    }
    let keys = logits.iter().enumerate().map(|(i, &v)| rank_key(v, i));
    let top = keys.clone().max().unwrap_or(0);
    let max = logits[(u32::MAX - top as u32) as usize];
    for (i, w) in row.weights.iter_mut().enumerate() {
        if rank_key(logits[i], i) >= floor {
            *w = (((logits[i] - max) / p.temperature) as f64).exp();
        }
    }
    let mut total = row.mass(0, floor, Mass::Weight);
    if p.top_p < 1.0 {
        let cut = row.search(floor, Mass::Share(total), p.top_p, false);
        floor = floor.max(cut);
        total = row.mass(floor, floor, Mass::Weight);
    }
    let target = unit_draw(p.seed, p.draw) * total;
    let least = keys.filter(|&k| k >= floor).min().unwrap_or(u64::MAX);
    let pick = row.search(floor, Mass::Weight, target, true).max(least);
    u32::MAX - pick as u32
}

/// `score_rows` for one row, with `threads` threads a block: log softmax(logits)[target] in f64
/// (the max exact, the sum of exp(v - max) by the block's tree), and whether `target` is the
/// first argmax.
pub fn score(logits: &[f32], target: u32, threads: usize) -> (f64, bool) {
    let max = f64::from(logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
    let partials: Vec<f64> = (0..threads)
        .map(|t| {
            (t..logits.len())
                .step_by(threads)
                .fold(0f64, |s, i| s + (f64::from(logits[i]) - max).exp())
        })
        .collect();
    let sum = block_sum(&partials);
    (f64::from(logits[target as usize]) - max - sum.ln(), argmax(logits) == target)
}
