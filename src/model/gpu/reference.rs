//! CPU references of `kernels.cu`: each function computes what its kernel computes, operation
//! for operation and in the same order, for a launch with `threads` threads a block (a
//! multiple of 32): thread t's strided partial, then the warp butterflies and the block's tree
//! as the kernel does them. The GPU must give these bits.

use crate::kernels::{from_bf16, to_bf16};
use crate::model::host::exp;

/// One warp's butterfly sum (`warp_sum`): after the step with offset o, lane i holds
/// v[i] + v[i ^ o]; returns what every lane ends with.
fn warp_sum(v: &[f32; 32]) -> f32 {
    let mut lanes = *v;
    for o in [16, 8, 4, 2, 1] {
        let before = lanes;
        for (i, l) in lanes.iter_mut().enumerate() {
            *l = before[i] + before[i ^ o];
        }
    }
    lanes[0]
}

/// `block_sum` over each thread's partial (`partials.len()` = threads, a multiple of 32).
pub fn block_sum(partials: &[f32]) -> f32 {
    assert!(partials.len().is_multiple_of(32) && partials.len() <= 1024);
    let mut warps = [0f32; 32];
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

/// `decode_attention` for one row: each q head of `qkv` against positions `0..=at.pos` of its
/// slot's cache, into `out` (`[q heads][head_dim]`).
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
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

/// `argmax_rows` for one row: the first index of the largest value; NaNs never win; 0 when
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
