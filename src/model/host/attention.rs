//! Attention of the host decoder: each sequence against its own KV cache (read in place: f32,
//! bf16 or int8), one task per sequence and group of query heads sharing a KV head (or per query
//! head when the batch is too small to keep the threads busy otherwise), so a sequence's numbers
//! never depend on its batch.

use std::borrow::Cow;
use std::sync::Arc;

use rayon::prelude::*;

use super::attn_kernels::{int_scores, scores, weighted_sum, QUAD, TILE};
use super::ops::{exp, hsum, Stored};
use crate::kernels::isa::Isa;
use crate::kernels::{int8_scale, round_i8};
use crate::model::decoder::Segment;

/// How a KV cache stores keys and values. bf16 halves the cache (what long few-shot prompts at
/// large batches are made of); attention then reads each stored value widened back to f32, so
/// its arithmetic is the f32 path's on the rounded keys and values, and a sequence's numbers
/// still depend on nothing but its own tokens. int8 quarters it: each position's keys (and
/// values) of one KV head are `d · q` with one f32 `d` and `head_dim` signed bytes, as llama.cpp's
/// `q8_0` cache does per 32 values; a position's quantization reads nothing but its own row.
/// Its scores are integer dot products with each query row quantized the same way (as llama.cpp
/// does against a `q8_0` cache), so a score's arithmetic is exact up to the scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    #[default]
    F32,
    Bf16,
    Int8,
}

impl KvDtype {
    /// Every `--kv-dtype` value, as [`KvDtype::name`] spells it.
    pub const NAMES: [&str; 3] = ["f32", "bf16", "int8"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Self::F32),
            "bf16" => Some(Self::Bf16),
            "int8" => Some(Self::Int8),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }

    /// Values a key of `dim` takes in a tile: int8 keys come in whole [`QUAD`]s (the padding
    /// zero).
    fn key_width(self, dim: usize) -> usize {
        match self {
            Self::Int8 => dim.next_multiple_of(QUAD),
            _ => dim,
        }
    }

    /// Bytes one position's keys (or values) of one KV head of `dim` values take.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Self::F32 => 4 * dim,
            Self::Bf16 => 2 * dim,
            Self::Int8 => dim + 4,
        }
    }
}

/// Stored values of one kind (keys or values) of one KV head.
#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    /// bf16 bits (f32 rounded to nearest even).
    Bf16(Vec<u16>),
    /// Position `p`'s values are `d[p] · q[..]`, with `d = max |x| / 127` and
    /// `q = round(x / d)` (the kernels' one [`int8_scale`] and [`round_i8`]).
    I8 {
        q: Vec<i8>,
        d: Vec<f32>,
    },
}

impl Rows {
    /// Empty, with room for `n` values of `positions` positions.
    fn with_capacity(dtype: KvDtype, n: usize, positions: usize) -> Self {
        match dtype {
            KvDtype::F32 => Rows::F32(Vec::with_capacity(n)),
            KvDtype::Bf16 => Rows::Bf16(Vec::with_capacity(n)),
            KvDtype::Int8 => {
                Rows::I8 { q: Vec::with_capacity(n), d: Vec::with_capacity(positions) }
            }
        }
    }

    fn dtype(&self) -> KvDtype {
        match self {
            Rows::F32(_) => KvDtype::F32,
            Rows::Bf16(_) => KvDtype::Bf16,
            Rows::I8 { .. } => KvDtype::Int8,
        }
    }

    /// Values held (zero slots of a last key tile included).
    fn len(&self) -> usize {
        match self {
            Rows::F32(r) => r.len(),
            Rows::Bf16(r) => r.len(),
            Rows::I8 { q, .. } => q.len(),
        }
    }

    /// Each position's scale (int8 only).
    fn scales(&self) -> Option<&[f32]> {
        match self {
            Rows::I8 { d, .. } => Some(d),
            _ => None,
        }
    }

    fn push(&mut self, x: &[f32]) {
        match self {
            Rows::F32(r) => r.extend_from_slice(x),
            Rows::Bf16(r) => r.extend(x.iter().map(|&v| crate::kernels::to_bf16(v))),
            Rows::I8 { q, d } => {
                let (scale, inv) = int8_scale(x);
                q.extend(x.iter().map(|&v| round_i8(v * inv)));
                d.push(scale);
            }
        }
    }

    /// Writes position `pos`'s `x` into the tiles (`[tile][x.len()][TILE]`; int8:
    /// `[tile][x.len() / QUAD][TILE][QUAD]`), starting a tile of zeros at each multiple of
    /// [`TILE`]; positions come in order.
    fn put_tiled(&mut self, x: &[f32], pos: usize) {
        let (w, lane) = (self.dtype().key_width(x.len()), pos % TILE);
        let base = pos / TILE * TILE * w;
        if lane == 0 {
            self.grow(base + TILE * w);
        }
        match self {
            Rows::F32(r) => {
                for (e, &v) in x.iter().enumerate() {
                    r[base + e * TILE + lane] = v;
                }
            }
            Rows::Bf16(r) => {
                for (e, &v) in x.iter().enumerate() {
                    r[base + e * TILE + lane] = crate::kernels::to_bf16(v);
                }
            }
            Rows::I8 { q, d } => {
                let (scale, inv) = int8_scale(x);
                for (e, &v) in x.iter().enumerate() {
                    q[base + (e / QUAD * TILE + lane) * QUAD + e % QUAD] = round_i8(v * inv);
                }
                d.push(scale);
            }
        }
    }

    /// Zero-extends to `n` values.
    fn grow(&mut self, n: usize) {
        match self {
            Rows::F32(r) => r.resize(n, 0.0),
            Rows::Bf16(r) => r.resize(n, 0),
            Rows::I8 { q, .. } => q.resize(n, 0),
        }
    }

    /// A copy with room for `cap` values of `positions` positions.
    fn copy_with_capacity(&self, cap: usize, positions: usize) -> Self {
        let mut out = Rows::with_capacity(self.dtype(), cap.max(self.len()), positions);
        match (&mut out, self) {
            (Rows::F32(o), Rows::F32(r)) => o.extend_from_slice(r),
            (Rows::Bf16(o), Rows::Bf16(r)) => o.extend_from_slice(r),
            (Rows::I8 { q: oq, d: od }, Rows::I8 { q, d }) => {
                oq.extend_from_slice(q);
                od.extend_from_slice(d);
            }
            _ => unreachable!("same dtype by construction"),
        }
        out
    }
}

/// How attention reads a cache's values in place: as f32, bf16 bits or int8.
trait InCache: Stored {
    fn slice(rows: &Rows) -> Option<&[Self]>;

    /// `out`: the scores of the query rows `qs` against the key `tiles`, times `scale` (see
    /// [`scores`]). `q8`, `q8_scale`: room for the rows quantized, where the keys are int8.
    #[inline(always)]
    fn tile_scores(
        isa: Isa,
        qs: &[&[f32]],
        tiles: &[&[Self]],
        scale: f32,
        q8: &mut Vec<i8>,
        q8_scale: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let _ = (q8, q8_scale);
        scores(isa, qs, tiles, scale, out);
    }
}

impl InCache for f32 {
    fn slice(rows: &Rows) -> Option<&[f32]> {
        match rows {
            Rows::F32(r) => Some(r),
            _ => None,
        }
    }
}

impl InCache for u16 {
    fn slice(rows: &Rows) -> Option<&[u16]> {
        match rows {
            Rows::Bf16(r) => Some(r),
            _ => None,
        }
    }
}

impl InCache for i8 {
    fn slice(rows: &Rows) -> Option<&[i8]> {
        match rows {
            Rows::I8 { q, .. } => Some(q),
            _ => None,
        }
    }

    /// Integer dot products: each query row quantized as the cache quantizes a key
    /// ([`int8_scale`], [`round_i8`]), its scale times `scale` one f32 product; the keys' own
    /// scales are the caller's.
    #[inline(always)]
    fn tile_scores(
        isa: Isa,
        qs: &[&[f32]],
        tiles: &[&[i8]],
        scale: f32,
        q8: &mut Vec<i8>,
        q8_scale: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let kw = qs.first().map_or(0, |q| q.len()).next_multiple_of(QUAD);
        q8.clear();
        q8.resize(qs.len() * kw, 0);
        q8_scale.clear();
        for (q, dst) in qs.iter().zip(q8.chunks_exact_mut(kw.max(1))) {
            let (dq, inv) = int8_scale(q);
            for (o, &v) in dst.iter_mut().zip(*q) {
                *o = round_i8(v * inv);
            }
            q8_scale.push(dq * scale);
        }
        int_scores(isa, q8, q8_scale, tiles, out);
    }
}

/// One layer's keys and values of one sequence, one store per KV head, so that attention's task
/// for a KV head reads two unbroken streams (keys, then values): interleaving the heads made those
/// reads runs of 2 KB and 128 bytes, which the hardware prefetchers follow at half the memory's
/// bandwidth or less, and a decode step at few-shot lengths is that read. Per head, values are
/// token-major, `[T][head_dim]`; keys are in tiles of [`TILE`] positions, `[T / TILE][head_dim]
/// [TILE]` (slots past the last position zero), so that attention's scores take one key per
/// vector lane (see `attn_kernels`). Growth is a plain `Vec` growth either way.
#[derive(Debug, Clone)]
pub struct LayerKv {
    k: Vec<Rows>,
    v: Vec<Rows>,
    /// Values per head and position.
    dim: usize,
}

impl LayerKv {
    /// Empty stores for `heads` KV heads of `dim` values, with room for `len` positions.
    fn with_capacity(dtype: KvDtype, heads: usize, dim: usize, len: usize) -> Self {
        let (kcap, vcap) = Self::capacities(dtype, dim, len);
        let store = |n: usize| (0..heads).map(|_| Rows::with_capacity(dtype, n, len)).collect();
        LayerKv { k: store(kcap), v: store(vcap), dim }
    }

    /// Values one head's (keys, values) store holds for `len` positions: keys fill whole tiles.
    fn capacities(dtype: KvDtype, dim: usize, len: usize) -> (usize, usize) {
        (len.next_multiple_of(TILE) * dtype.key_width(dim), len * dim)
    }

    fn dtype(&self) -> KvDtype {
        self.k.first().map_or(KvDtype::F32, Rows::dtype)
    }

    /// Positions held.
    fn len(&self) -> usize {
        self.v.first().map_or(0, |v| v.len() / self.dim.max(1))
    }

    /// Bytes of the keys and values held (not the zero slots of a last key tile, nor capacity).
    fn bytes(&self) -> usize {
        2 * self.v.len() * self.len() * self.dtype().row_bytes(self.dim)
    }

    /// A copy with room for `len` positions.
    fn copy_with_capacity(&self, len: usize) -> Self {
        let (kcap, vcap) = Self::capacities(self.dtype(), self.dim, len);
        LayerKv {
            k: self.k.iter().map(|k| k.copy_with_capacity(kcap, len)).collect(),
            v: self.v.iter().map(|v| v.copy_with_capacity(vcap, len)).collect(),
            dim: self.dim,
        }
    }

    /// Appends one position: `k` and `v` hold every KV head's `dim` values, head after head.
    pub(super) fn append(&mut self, k: &[f32], v: &[f32]) {
        let (d, pos) = (self.dim, self.len());
        debug_assert!(k.len() == self.k.len() * d && v.len() == self.v.len() * d);
        for ((ks, vs), (k, v)) in
            self.k.iter_mut().zip(&mut self.v).zip(k.chunks_exact(d).zip(v.chunks_exact(d)))
        {
            ks.put_tiled(k, pos);
            vs.push(v);
        }
    }
}

/// One sequence's KV cache, one [`LayerKv`] per layer, optionally after a read-only prefix
/// that other sequences share (the few-shot examples every prompt of a run starts with).
#[derive(Debug, Clone)]
pub struct HostCache {
    prefix: Option<Arc<HostCache>>,
    layers: Vec<LayerKv>,
}

impl HostCache {
    /// Room for `own_len` tokens of its own (it grows if exceeded) of `heads` KV heads of `dim`
    /// values, stored as `dtype`.
    pub fn new(layers: usize, heads: usize, dim: usize, own_len: usize, dtype: KvDtype) -> Self {
        let layer = || LayerKv::with_capacity(dtype, heads, dim, own_len);
        Self { prefix: None, layers: (0..layers).map(|_| layer()).collect() }
    }

    fn dtype(&self) -> KvDtype {
        self.layers.first().map_or(KvDtype::F32, LayerKv::dtype)
    }

    /// An empty cache that continues `prefix` without copying it, with room for `own_len` more.
    pub fn after(prefix: &Arc<HostCache>, own_len: usize) -> Self {
        let (heads, dim) = prefix.layers.first().map_or((0, 0), |l| (l.k.len(), l.dim));
        let mut c = Self::new(prefix.layers.len(), heads, dim, own_len, prefix.dtype());
        c.prefix = Some(prefix.flattened());
        c
    }

    /// A prefix to share: this cache itself when it has no prefix of its own, else a flat copy,
    /// so attention never reads through more than one level.
    fn flattened(self: &Arc<Self>) -> Arc<HostCache> {
        if self.prefix.is_none() {
            Arc::clone(self)
        } else {
            Arc::new(self.fork(self.len()))
        }
    }

    fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len())
    }

    fn own_len(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::len)
    }

    pub fn len(&self) -> usize {
        self.prefix_len() + self.own_len()
    }

    /// Bytes of the keys and values this cache stores itself (a shared prefix is its own
    /// cache's), counted as values (not the zero slots of a last key tile), not `Vec` capacity
    /// (memory reports).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerKv::bytes).sum()
    }

    /// An independent copy with room for `max_len` positions in all; a shared prefix stays shared.
    pub fn fork(&self, max_len: usize) -> HostCache {
        let own = max_len.max(self.len()).saturating_sub(self.prefix_len());
        let layers = self.layers.iter().map(|l| l.copy_with_capacity(own)).collect();
        HostCache { prefix: self.prefix.clone(), layers }
    }

    pub(super) fn layer_mut(&mut self, i: usize) -> &mut LayerKv {
        &mut self.layers[i]
    }

    /// Layer `i`'s keys and values, prefix included.
    pub(super) fn view(&self, i: usize) -> KvView<'_> {
        KvView {
            prefix: self.prefix.as_ref().map(|p| &p.layers[i]),
            prefix_len: self.prefix_len(),
            own: &self.layers[i],
        }
    }
}

/// One layer of one sequence's cache as attention reads it: the shared prefix's rows, then its own.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    prefix: Option<&'a LayerKv>,
    prefix_len: usize,
    own: &'a LayerKv,
}

impl<'a> KvView<'a> {
    fn dtype(&self) -> KvDtype {
        self.own.dtype()
    }

    /// The parts of the view that hold `positions`: (layer, its first position, the local
    /// range of `positions` in it).
    fn parts(
        &self,
        positions: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (&'a LayerKv, usize, std::ops::Range<usize>)> {
        let split = positions.end.min(self.prefix_len).max(positions.start);
        let parts = [
            (self.prefix, 0, positions.start..split),
            (Some(self.own), self.prefix_len, split..positions.end),
        ];
        parts.into_iter().filter_map(|(layer, base, range)| {
            let l = layer.filter(|_| !range.is_empty())?;
            Some((l, base, range.start - base..range.end - base))
        })
    }

    /// The key tiles of KV head `kh` (as stored: `[dim][TILE]`, int8 `[dim / QUAD][TILE][QUAD]`)
    /// that hold `positions`,
    /// each with its first position and how many of its slots hold keys.
    fn key_tiles<T: InCache>(
        &self,
        positions: std::ops::Range<usize>,
        kh: usize,
    ) -> Vec<KeyTile<'a, T>> {
        let mut out = Vec::with_capacity(positions.len().div_ceil(TILE) + 1);
        for (l, base, range) in self.parts(positions) {
            let Some(k) = T::slice(&l.k[kh]) else { continue };
            let (held, dim) = (l.len(), l.dtype().key_width(l.dim));
            for t in range.start / TILE..range.end.div_ceil(TILE) {
                let at = t * TILE * dim;
                out.push(KeyTile {
                    keys: &k[at..at + dim * TILE],
                    first: base + t * TILE,
                    held: (held - t * TILE).min(TILE),
                });
            }
        }
        out
    }

    /// An int8 cache's scales of KV head `kh` at `positions`: (keys', values'); None for another
    /// dtype.
    fn int8_scales(&self, positions: std::ops::Range<usize>, kh: usize) -> Option<Scales<'a>> {
        let mut out = Scales::default();
        for (l, _, range) in self.parts(positions) {
            let (k, v) = (&l.k[kh].scales()?[range.clone()], &l.v[kh].scales()?[range]);
            // Borrowed when one part holds them all (no shared prefix): they are read once.
            if out.k.is_empty() {
                (out.k, out.v) = (Cow::Borrowed(k), Cow::Borrowed(v));
            } else {
                out.k.to_mut().extend_from_slice(k);
                out.v.to_mut().extend_from_slice(v);
            }
        }
        Some(out)
    }

    /// KV head `kh`'s values of `positions`, each row a slice of the cache as stored.
    fn value_rows<T: InCache>(&self, positions: std::ops::Range<usize>, kh: usize) -> Vec<&'a [T]> {
        let mut vals = Vec::with_capacity(positions.len());
        for (l, _, range) in self.parts(positions) {
            let Some(v) = T::slice(&l.v[kh]) else { continue };
            vals.extend(v[range.start * l.dim..range.end * l.dim].chunks_exact(l.dim));
        }
        vals
    }
}

/// An int8 cache's per-position scales of a run of positions of one KV head.
#[derive(Default)]
struct Scales<'a> {
    k: Cow<'a, [f32]>,
    v: Cow<'a, [f32]>,
}

/// [`TILE`] consecutive positions' keys of one KV head, `[dim][TILE]` (int8: in quads).
struct KeyTile<'a, T> {
    keys: &'a [T],
    /// The position of slot 0.
    first: usize,
    /// Slots `0..held` hold keys (the rest are zero).
    held: usize,
}

/// Head layout of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
    /// Keys older than this many positions are invisible (Mistral, Gemma's sliding layers).
    pub window: Option<usize>,
    /// Scores are `q·k · scale`.
    pub scale: f32,
    /// Scores pass through `cap · tanh(s / cap)` before the softmax (Gemma 2).
    pub softcap: Option<f32>,
}

impl Heads {
    /// `1/√dim` scaling, no cap.
    pub fn new(q: usize, kv: usize, dim: usize, window: Option<usize>) -> Self {
        Heads { q, kv, dim, window, scale: 1.0 / (dim as f32).sqrt(), softcap: None }
    }
}

/// `out[t]` (`[q_heads * dim]` per token) = softmax(q·Kᵀ / √dim) V for every new token `t` of
/// every segment, causal, against `caches[s]`, which already hold the segment's own keys.
/// `q` holds token t's rotated queries (`q_heads * dim` values) at `t * q_stride`. Task order and grouping never change the arithmetic
/// of one (token, head), and neither does `isa`, the kernel family that runs (one this CPU runs).
pub fn attend(
    isa: Isa,
    q: &[f32],
    q_stride: usize,
    segs: &[Segment],
    caches: &[KvView],
    h: Heads,
    out: &mut [f32],
) {
    let qw = h.q * h.dim;
    let group = h.q / h.kv;
    let scale = h.scale;
    let mut starts = Vec::with_capacity(segs.len());
    let mut start = 0;
    for s in segs {
        starts.push(start);
        start += s.len;
    }
    // A task is some rows of one sequence and `per_task` query heads. A whole group of query
    // heads reading the same KV head fetches each key and value row once for all of them, so
    // groups are split into single heads only when there would be too few tasks to keep every
    // thread busy otherwise (a decode step of one or two sequences). Long segments (prefill) are
    // cut into chunks of rows, small enough that the threads share a causal prefill evenly.
    let want = 4 * rayon::current_num_threads();
    let rows: usize = segs.iter().map(|s| s.len).sum();
    let per_task = if segs.len() * h.kv >= want || rows * h.kv >= 16 * want { group } else { 1 };
    let chunk = (rows * h.kv / (2 * want)).max(16);
    let tasks: Vec<(usize, usize, usize)> = (0..segs.len())
        .flat_map(|s| {
            let heads = (0..h.q).step_by(per_task);
            heads.flat_map(move |head| (0..segs[s].len).step_by(chunk).map(move |r| (s, head, r)))
        })
        .collect();
    assert_eq!(out.len(), start * qw, "attend: out holds every new token's heads");
    let dst = OutRows(out.as_mut_ptr());
    let one = |&(s, head, r0): &(usize, usize, usize)| {
        let seg = segs[s];
        let first_row = starts[s] + r0;
        let job = Head {
            rows: &q[first_row * q_stride..],
            stride: q_stride,
            heads: head..head + per_task,
            kv: caches[s],
            kh: head / group,
            seg: Segment { len: (seg.len - r0).min(chunk), offset: seg.offset + r0 },
            dim: h.dim,
            window: h.window,
            scale,
            softcap: h.softcap,
            isa,
        };
        // SAFETY: `out` is exclusively borrowed for this call and holds `start` rows of `qw`; the
        // task writes its rows (from first_row on, inside its segment's), columns of its own
        // heads only.
        unsafe { job.run(dst.at(first_row * qw), qw) };
    };
    let work: usize = segs.iter().map(|s| s.len * (s.offset + s.len)).sum::<usize>() * h.q;
    if work * h.dim >= 1 << 16 {
        tasks.par_iter().for_each(one);
    } else {
        tasks.iter().for_each(one);
    }
}

/// `attend`'s output, written by its tasks in place: each task owns the columns of its heads
/// in its segment's rows, so no two tasks write the same element and nothing reads it meanwhile.
#[derive(Clone, Copy)]
struct OutRows(*mut f32);
// SAFETY: see the type's comment; the pointer is only copied between threads.
unsafe impl Send for OutRows {}

impl OutRows {
    /// # Safety
    /// `n` elements past the start stay inside the output.
    unsafe fn at(self, n: usize) -> *mut f32 {
        // SAFETY: as the caller promised.
        unsafe { self.0.add(n) }
    }
}
// SAFETY: as for Send.
unsafe impl Sync for OutRows {}

/// Per-thread buffers of attention's tasks, reused so that a decode step allocates nothing here.
#[derive(Default)]
struct Scratch {
    /// A block's scores, `[query row][tile][TILE]`.
    tile_scores: Vec<f32>,
    /// A block's query rows quantized to int8 (an int8 cache), in whole quads, and each row's
    /// scale times the scores' scale.
    q8: Vec<i8>,
    q8_scale: Vec<f32>,
    /// One row's probabilities, `[head][visible position]`.
    probs: Vec<f32>,
    out: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

/// One sequence and some of its query heads (all reading KV head `kh`) of [`attend`]: its new
/// tokens' queries against its cache.
struct Head<'a> {
    /// The segment's query rows, `stride` apart.
    rows: &'a [f32],
    stride: usize,
    heads: std::ops::Range<usize>,
    kv: KvView<'a>,
    /// Its KV head.
    kh: usize,
    seg: Segment,
    dim: usize,
    window: Option<usize>,
    scale: f32,
    softcap: Option<f32>,
    /// The kernel family, one this CPU runs.
    isa: Isa,
}

impl Head<'_> {
    /// The same arithmetic compiled for the kernel family in force, whose kernels it calls: IEEE
    /// operations in the same order (Rust never contracts a*b+c), so the bits do not depend on
    /// which copy runs.
    ///
    /// # Safety
    /// `res` is valid for writes of the segment's rows (`row_len` apart) at this task's heads'
    /// columns, which no one else reads or writes meanwhile.
    unsafe fn run(&self, res: *mut f32, row_len: usize) {
        match self.isa {
            // SAFETY: `isa` is a family this CPU runs (avx512f); `res` as the caller promised.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.run_avx512(res, row_len) },
            // SAFETY: as above, with avx2 and fma.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni => unsafe { self.run_avx2(res, row_len) },
            Isa::Scalar => self.body(OutRows(res), row_len, Isa::Scalar),
            // NEON is aarch64's baseline, so the portable body is already compiled for it.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => self.body(OutRows(res), row_len, Isa::Neon),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self, res: *mut f32, row_len: usize) {
        self.body(OutRows(res), row_len, Isa::Avx512);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, res: *mut f32, row_len: usize) {
        self.body(OutRows(res), row_len, self.isa);
    }

    /// `isa`: the family this copy is compiled for, whose kernels it calls (a constant once
    /// inlined, so each copy calls its own).
    #[inline(always)]
    fn body(&self, res: OutRows, row_len: usize, isa: Isa) {
        let first = self.window.map_or(0, |w| (self.seg.offset + 1).saturating_sub(w));
        let end = self.seg.offset + self.seg.len;
        // A cache and its prefix share a dtype (`HostCache::after`).
        match self.kv.dtype() {
            KvDtype::F32 => self.softmax_over::<f32>(first..end, None, isa, res, row_len),
            KvDtype::Bf16 => self.softmax_over::<u16>(first..end, None, isa, res, row_len),
            KvDtype::Int8 => {
                let scales = self.kv.int8_scales(first..end, self.kh);
                self.softmax_over::<i8>(first..end, scales.as_ref(), isa, res, row_len)
            }
        }
    }

    /// [`Self::softmax_rows`] over `positions` of a cache that stores `T`.
    #[inline(always)]
    fn softmax_over<T: InCache>(
        &self,
        positions: std::ops::Range<usize>,
        scales: Option<&Scales>,
        isa: Isa,
        res: OutRows,
        row_len: usize,
    ) {
        let tiles = self.kv.key_tiles::<T>(positions.clone(), self.kh);
        let vals = self.kv.value_rows::<T>(positions.clone(), self.kh);
        self.softmax_rows(positions.start, &tiles, &vals, scales, isa, res, row_len);
    }

    /// softmax(q·Kᵀ · scale) V for each query row and head of the task, with `tiles` the KV
    /// head's keys from position `first` on and `vals[j - first]` its value at position `j`.
    /// Rows go in blocks whose queries (all heads of each row) share every key tile; then each
    /// row's heads share every value row. `scales` (an int8 cache, from `first` on): a score is
    /// the integer dot product of the query row quantized to int8 ([`int8_scale`]) and the stored
    /// key, times the row's scale and the scores' (one f32 product), then times its key's scale;
    /// each probability is multiplied by its value's scale before the weighted sum.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the task's parts, all borrowed for one call
    fn softmax_rows<T: InCache>(
        &self,
        first: usize,
        tiles: &[KeyTile<T>],
        vals: &[&[T]],
        scales: Option<&Scales>,
        isa: Isa,
        res: OutRows,
        row_len: usize,
    ) {
        let (d, g) = (self.dim, self.heads.len());
        // Taken out of the thread's slot rather than used inside a `with` closure, which would
        // be compiled without this function's target features.
        let Scratch { mut tile_scores, mut q8, mut q8_scale, mut probs, mut out } =
            SCRATCH.with(|s| s.take());
        out.resize(g * d, 0f32);
        let keys: Vec<&[T]> = tiles.iter().map(|t| t.keys).collect();
        assert!(vals.iter().all(|v| v.len() == d), "attention: value rows of the head dim");
        let lo = |i: usize| self.window.map_or(0, |w| (self.seg.offset + i + 1).saturating_sub(w));
        let qrow =
            |i: usize, h: usize| &self.rows[i * self.stride + (self.heads.start + h) * d..][..d];
        // Up to 8 query vectors a block: what the kernels keep in registers at once.
        let block = (8 / g).max(1);
        let mut qs: Vec<&[f32]> = Vec::with_capacity(block * g);
        for i0 in (0..self.seg.len).step_by(block) {
            let i1 = (i0 + block).min(self.seg.len);
            // The tiles holding any position the block's rows see: lo(i0)..offset + i1.
            let t0 = tiles.partition_point(|t| t.first + t.held <= lo(i0));
            let t1 = tiles.partition_point(|t| t.first < self.seg.offset + i1);
            let (near, w) = (&tiles[t0..t1], (t1 - t0) * TILE);
            // Whole tiles but the last: positions run on unbroken through a row of scores (no
            // part of a shared prefix's last tile in between), so a head's are one slice.
            let unbroken = near.iter().rev().skip(1).all(|t| t.held == TILE);
            qs.clear();
            qs.extend((i0..i1).flat_map(|i| (0..g).map(move |h| (i, h))).map(|(i, h)| qrow(i, h)));
            tile_scores.clear();
            tile_scores.resize(qs.len() * w, 0f32);
            T::tile_scores(
                isa,
                &qs,
                &keys[t0..t1],
                self.scale,
                &mut q8,
                &mut q8_scale,
                &mut tile_scores,
            );
            for i in i0..i1 {
                let visible = lo(i)..self.seg.offset + i + 1;
                let n = visible.len();
                probs.clear();
                probs.resize(g * n, 0f32);
                for (h, p) in probs.chunks_mut(n).enumerate() {
                    let row = &tile_scores[((i - i0) * g + h) * w..][..w];
                    if unbroken {
                        p.copy_from_slice(&row[visible.start - near[0].first..][..n]);
                    } else {
                        for (t, tile) in near.iter().enumerate() {
                            let a = visible.start.max(tile.first);
                            let b = visible.end.min(tile.first + tile.held);
                            if a < b {
                                p[a - visible.start..b - visible.start].copy_from_slice(
                                    &row[t * TILE + a - tile.first..t * TILE + b - tile.first],
                                );
                            }
                        }
                    }
                    if let Some(s) = scales {
                        let ks = &s.k[visible.start - first..visible.end - first];
                        for (e, k) in p.iter_mut().zip(ks) {
                            *e *= k;
                        }
                    }
                    if let Some(cap) = self.softcap {
                        super::ops::softcap(p, cap);
                    }
                    // Plain loops, not `extend(map(..))`: a closure would be compiled apart from
                    // this function, without its target features (same operations, a third of
                    // the speed).
                    let sum = exp_in_place(p, lanes_max(p));
                    if let Some(s) = scales {
                        let vs = &s.v[visible.start - first..visible.end - first];
                        for (e, v) in p.iter_mut().zip(vs) {
                            *e = *e / sum * v;
                        }
                    } else {
                        for e in p.iter_mut() {
                            *e /= sum;
                        }
                    }
                }
                let v = &vals[visible.start - first..visible.end - first];
                // SAFETY: every value row holds d values (checked above).
                unsafe { weighted_sum(isa, &probs, v, &mut out, g) };
                for (h, o) in out.chunks(d).enumerate() {
                    // SAFETY: row i of the segment, this task's head h: inside `res` and this
                    // task's own (see `run`).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            o.as_ptr(),
                            res.at(i * row_len + (self.heads.start + h) * d),
                            d,
                        )
                    };
                }
            }
        }
        SCRATCH.with(|s| s.replace(Scratch { tile_scores, q8, q8_scale, probs, out }));
    }
}

/// `v[i] = e^(v[i] - max)` in place, and their sum: in 16 lanes as they are made, then the lanes
/// in a fixed tree, so the order depends on the length alone.
#[inline(always)]
fn exp_in_place(v: &mut [f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = v.chunks_exact_mut(16);
    for c in &mut chunks {
        for l in 0..16 {
            c[l] = exp(c[l] - max);
            acc[l] += c[l];
        }
    }
    for (a, t) in acc.iter_mut().zip(chunks.into_remainder()) {
        *t = exp(*t - max);
        *a += *t;
    }
    hsum(&acc)
}

/// The largest value (max is exact, so lane order does not matter).
#[inline(always)]
fn lanes_max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] = acc[l].max(c[l]);
        }
    }
    for (a, t) in acc.iter_mut().zip(tail) {
        *a = a.max(*t);
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(q: &[f32], k: &[f32], v: &[f32], len: usize, total: usize, h: Heads) -> Vec<f64> {
        let (qw, kvw) = (h.q * h.dim, h.kv * h.dim);
        let mut out = vec![0f64; len * qw];
        for i in 0..len {
            let pos = total - len + i;
            for head in 0..h.q {
                let kh = head / (h.q / h.kv);
                let visible: Vec<usize> =
                    (0..=pos).filter(|j| h.window.is_none_or(|w| pos - j < w)).collect();
                let s: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        (0..h.dim)
                            .map(|d| {
                                q[i * qw + head * h.dim + d] as f64
                                    * k[j * kvw + kh * h.dim + d] as f64
                            })
                            .sum::<f64>()
                            * h.scale as f64
                    })
                    .map(|s: f64| h.softcap.map_or(s, |c| (s / c as f64).tanh() * c as f64))
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for (&j, x) in visible.iter().zip(&s) {
                    for d in 0..h.dim {
                        out[i * qw + head * h.dim + d] +=
                            (x - m).exp() / z * v[j * kvw + kh * h.dim + d] as f64;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 1.5).collect()
    }

    #[test]
    fn matches_a_naive_softmax_attention_with_gqa_and_window() {
        let capped = Heads { scale: 0.3, softcap: Some(1.5), ..Heads::new(4, 2, 20, Some(5)) };
        for h in [Heads::new(4, 2, 20, None), Heads::new(4, 2, 20, Some(3)), capped] {
            let window = h.window;
            let (total, len) = (9, 4);
            let k = values(total * h.kv * h.dim, 1);
            let v = values(total * h.kv * h.dim, 2);
            let q = values(len * h.q * h.dim, 3);
            let cache = layer(&k, &v, h);
            let mut out = vec![0f32; len * h.q * h.dim];
            attend(
                Isa::detect(),
                &q,
                h.q * h.dim,
                &[Segment { len, offset: total - len }],
                &[view(&cache)],
                h,
                &mut out,
            );
            let want = naive(&q, &k, &v, len, total, h);
            for (o, w) in out.iter().zip(&want) {
                assert!((*o as f64 - w).abs() < 1e-5, "{o} vs {w} (window {window:?})");
            }
        }
    }

    #[test]
    fn a_sequence_gives_the_same_bits_alone_and_beside_others() {
        let h = Heads::new(2, 1, 16, None);
        let a = layer(&values(7 * 16, 4), &values(7 * 16, 5), h);
        let b = layer(&values(30 * 16, 6), &values(30 * 16, 7), h);
        let (qa, qb) = (values(2 * 32, 8), values(30 * 32, 9));
        let mut alone = vec![0f32; 2 * 32];
        attend(
            Isa::detect(),
            &qa,
            32,
            &[Segment { len: 2, offset: 5 }],
            &[view(&a)],
            h,
            &mut alone,
        );
        let both_q: Vec<f32> = qb.iter().chain(&qa).copied().collect();
        let mut both = vec![0f32; 32 * 32];
        attend(
            Isa::detect(),
            &both_q,
            32,
            &[Segment { len: 30, offset: 0 }, Segment { len: 2, offset: 5 }],
            &[view(&b), view(&a)],
            h,
            &mut both,
        );
        assert_eq!(alone, both[30 * 32..]);
    }

    /// A layer holding `h`'s KV heads from token-major keys and values.
    fn layer(k: &[f32], v: &[f32], h: Heads) -> LayerKv {
        let width = h.kv * h.dim;
        let mut l = LayerKv::with_capacity(KvDtype::F32, h.kv, h.dim, 0);
        for (k, v) in k.chunks(width).zip(v.chunks(width)) {
            l.append(k, v);
        }
        l
    }

    fn view(l: &LayerKv) -> KvView<'_> {
        KvView { prefix: None, prefix_len: 0, own: l }
    }

    #[test]
    fn a_bf16_cache_is_f32_attention_over_the_rounded_keys_and_values() {
        let round = |x: &[f32]| -> Vec<f32> {
            x.iter().map(|&v| crate::kernels::from_bf16(crate::kernels::to_bf16(v))).collect()
        };
        for window in [None, Some(4)] {
            let h = Heads::new(4, 2, 16, window);
            let (total, len) = (11, 3);
            let (k, v, q) = (values(total * 32, 13), values(total * 32, 14), values(len * 64, 15));
            let mut cache = HostCache::new(1, 2, 16, total, KvDtype::Bf16);
            for t in 0..total {
                cache.layer_mut(0).append(&k[t * 32..][..32], &v[t * 32..][..32]);
            }
            let seg = [Segment { len, offset: total - len }];
            let (mut got, mut want) = (vec![0f32; len * 64], vec![0f32; len * 64]);
            attend(Isa::detect(), &q, 64, &seg, &[cache.view(0)], h, &mut got);
            let rounded = layer(&round(&k), &round(&v), h);
            attend(Isa::detect(), &q, 64, &seg, &[view(&rounded)], h, &mut want);
            assert_eq!(got, want, "window {window:?}");
            let exact = layer(&k, &v, h);
            attend(Isa::detect(), &q, 64, &seg, &[view(&exact)], h, &mut want);
            assert_ne!(got, want, "the cache did round");
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 2e-2), "window {window:?}");
        }
        // A fork and a cache after a shared prefix keep the dtype and the values.
        let mut c = HostCache::new(1, 1, 16, 4, KvDtype::Bf16);
        c.layer_mut(0).append(&values(16, 1), &values(16, 2));
        let shared = Arc::new(c.fork(4));
        let after = HostCache::after(&shared, 2);
        assert_eq!((after.dtype(), after.len()), (KvDtype::Bf16, 1));
        let widen = |rows: Vec<&[u16]>| -> Vec<f32> {
            rows.concat().into_iter().map(crate::kernels::from_bf16).collect()
        };
        // Position 0's key: slot 0 of each dimension of the first tile.
        let key = |v: KvView| -> Vec<f32> {
            let t = v.key_tiles::<u16>(0..1, 0);
            assert_eq!((t.len(), t[0].first, t[0].held), (1, 0, 1));
            t[0].keys.iter().step_by(TILE).map(|&b| crate::kernels::from_bf16(b)).collect()
        };
        let (ak, av) = (key(after.view(0)), widen(after.view(0).value_rows::<u16>(0..1, 0)));
        let (ck, cv) = (key(c.view(0)), widen(c.view(0).value_rows::<u16>(0..1, 0)));
        assert_eq!((&ak, &av), (&ck, &cv));
        assert_eq!(ck, round(&values(16, 1)));
        assert_eq!(cv, round(&values(16, 2)));
    }

    /// llama.cpp's `q8_0` rounding of a row, written out: `d = max |x| / 127`, each value
    /// `x · (1 / d)` rounded half away from zero.
    fn q8_0_row(x: &[f32]) -> (Vec<f32>, f32) {
        let d = x.iter().fold(0f32, |m, e| m.max(e.abs())) / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        (x.iter().map(|&e| (e * inv).round()).collect(), d)
    }

    #[test]
    fn an_int8_cache_is_attention_over_its_dequantized_keys_values_and_queries() {
        // 18: a head dim off the quads of the integer scores (padded with zeros).
        for dim in [16, 18] {
            let h = Heads::new(4, 2, dim, None);
            let (total, len, kvw, qw) = (21, 3, 2 * dim, 4 * dim);
            let (mut k, v, mut q) =
                (values(total * kvw, 16), values(total * kvw, 17), values(len * qw, 18));
            // A zero key row has no scale to divide by; a tie rounds away from zero.
            k[5 * kvw..5 * kvw + dim].fill(0.0);
            k[6 * kvw..6 * kvw + dim].fill(0.0);
            k[6 * kvw..6 * kvw + 4].copy_from_slice(&[127.0, 0.5, 2.5, -2.5]);
            q[qw..qw + dim].fill(0.0);
            let mut cache = HostCache::new(1, 2, dim, total, KvDtype::Int8);
            for t in 0..total {
                cache.layer_mut(0).append(&k[t * kvw..][..kvw], &v[t * kvw..][..kvw]);
            }
            assert_eq!(cache.bytes(), total * 2 * 2 * (dim + 4));
            // What the cache holds, back in f32 and token-major, from its own bytes and scales:
            // llama.cpp's rounding of each row, bit for bit.
            let (mut dk, mut dv) = (vec![0f32; total * kvw], vec![0f32; total * kvw]);
            let kv = cache.view(0);
            for kh in 0..2 {
                let s = kv.int8_scales(0..total, kh).unwrap();
                for (t, tile) in kv.key_tiles::<i8>(0..total, kh).iter().enumerate() {
                    for l in 0..tile.held {
                        let pos = t * TILE + l;
                        let (want, d) = q8_0_row(&k[pos * kvw + kh * dim..][..dim]);
                        assert_eq!(s.k[pos], d);
                        for c in 0..dim {
                            let b = tile.keys[(c / QUAD * TILE + l) * QUAD + c % QUAD];
                            assert_eq!(b as f32, want[c], "key {pos}, head {kh}, dim {c}");
                            dk[pos * kvw + kh * dim + c] = b as f32 * s.k[pos];
                        }
                    }
                }
                for (pos, row) in kv.value_rows::<i8>(0..total, kh).iter().enumerate() {
                    let (want, d) = q8_0_row(&v[pos * kvw + kh * dim..][..dim]);
                    assert_eq!(s.v[pos], d);
                    for c in 0..dim {
                        assert_eq!(row[c] as f32, want[c], "value {pos}, head {kh}, dim {c}");
                        dv[pos * kvw + kh * dim + c] = row[c] as f32 * s.v[pos];
                    }
                }
            }
            // A scale of 1, and ties: away from zero, not to even.
            let tied = kv.key_tiles::<i8>(6..7, 0);
            assert_eq!(&tied[0].keys[6 * QUAD..][..QUAD], &[127, 1, 3, -3]);
            assert!(dk[5 * kvw..5 * kvw + dim].iter().all(|&e| e == 0.0));
            // The queries as the scores see them: each row and head quantized the same way.
            let dq: Vec<f32> = q
                .chunks(dim)
                .flat_map(|r| {
                    let (q, d) = q8_0_row(r);
                    q.into_iter().map(move |e| e * d)
                })
                .collect();
            let seg = [Segment { len, offset: total - len }];
            let (mut got, mut want) = (vec![0f32; len * qw], vec![0f32; len * qw]);
            attend(Isa::detect(), &q, qw, &seg, &[cache.view(0)], h, &mut got);
            let dequantized = layer(&dk, &dv, h);
            attend(Isa::detect(), &dq, qw, &seg, &[view(&dequantized)], h, &mut want);
            // The scales are applied after the integer sums rather than to each value: a few
            // roundings apart, no more.
            let close =
                |a: &[f32], b: &[f32], tol: f32| a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol);
            assert!(close(&got, &want, 1e-5), "dim {dim}: {got:?} vs {want:?}");
            attend(Isa::detect(), &q, qw, &seg, &[view(&dequantized)], h, &mut want);
            assert!(!close(&got, &want, 1e-5), "dim {dim}: the queries were quantized");
            attend(Isa::detect(), &q, qw, &seg, &[view(&layer(&k, &v, h))], h, &mut want);
            assert!(close(&got, &want, 3e-2), "dim {dim}: near the exact attention");
            // A fork and a cache after a shared prefix keep the bytes and the scales.
            let shared = Arc::new(cache.fork(total));
            let after = HostCache::after(&shared, 2);
            assert_eq!((after.dtype(), after.len()), (KvDtype::Int8, total));
            for kh in 0..2 {
                let (a, c) = (after.view(0), cache.view(0));
                assert_eq!(a.value_rows::<i8>(0..total, kh), c.value_rows::<i8>(0..total, kh));
                let keys = |v: KvView| -> Vec<Vec<i8>> {
                    v.key_tiles::<i8>(0..total, kh).iter().map(|t| t.keys.to_vec()).collect()
                };
                assert_eq!(keys(a), keys(c));
                let (sa, sc) =
                    (a.int8_scales(0..total, kh).unwrap(), c.int8_scales(0..total, kh).unwrap());
                assert_eq!((sa.k, sa.v), (sc.k, sc.v));
            }
        }
    }

    /// Attention over several sequences (a prefill, decode rows, a sliding window, a tail of
    /// keys past the last 16 and head dims off the 16 lanes) by every family this CPU runs:
    /// the same bits as the portable body.
    #[test]
    fn every_kernel_family_gives_the_portable_bits() {
        for dtype in [KvDtype::F32, KvDtype::Bf16, KvDtype::Int8] {
            for (dim, window) in [(64, None), (128, Some(37)), (16, None), (24, None), (18, None)] {
                let h = Heads::new(6, 2, dim, window);
                let (qw, kvw) = (h.q * dim, h.kv * dim);
                // Own tokens after a cache of `offset`: a 53-token prefill and single decode rows
                // at lengths with and without a tail of keys.
                let segs = [
                    Segment { len: 53, offset: 0 },
                    Segment { len: 1, offset: 95 },
                    Segment { len: 1, offset: 47 },
                    Segment { len: 2, offset: 17 },
                ];
                let caches: Vec<HostCache> = segs
                    .iter()
                    .enumerate()
                    .map(|(s, seg)| {
                        let total = seg.offset + seg.len;
                        let mut c = HostCache::new(1, h.kv, dim, total, dtype);
                        let (k, v) = (values(total * kvw, 20 + s), values(total * kvw, 30 + s));
                        for t in 0..total {
                            c.layer_mut(0).append(&k[t * kvw..][..kvw], &v[t * kvw..][..kvw]);
                        }
                        c
                    })
                    .collect();
                let views: Vec<KvView> = caches.iter().map(|c| c.view(0)).collect();
                let rows: usize = segs.iter().map(|s| s.len).sum();
                let q = values(rows * qw, 40 + dim);
                let run = |isa: Isa| {
                    let mut out = vec![f32::NAN; rows * qw];
                    attend(isa, &q, qw, &segs, &views, h, &mut out);
                    out.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                };
                let portable = run(Isa::Scalar);
                for &isa in Isa::ALL.iter().filter(|&&i| i != Isa::Scalar) {
                    if !isa.supported() {
                        eprintln!("skipped {}: this CPU lacks it", isa.name());
                        continue;
                    }
                    assert!(
                        run(isa) == portable,
                        "{isa:?}, {dtype:?} cache, dim {dim}, window {window:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_shared_prefix_reads_like_a_cache_of_its_own() {
        let h = Heads::new(2, 1, 16, None);
        let (k, v) = (values(9 * 16, 10), values(9 * 16, 11));
        let whole = layer(&k, &v, h);
        let prefix = layer(&k[..6 * 16], &v[..6 * 16], h);
        let own = layer(&k[6 * 16..], &v[6 * 16..], h);
        let split = KvView { prefix: Some(&prefix), prefix_len: 6, own: &own };
        let q = values(3 * 32, 12);
        let seg = [Segment { len: 3, offset: 6 }];
        let (mut a, mut b) = (vec![0f32; 3 * 32], vec![0f32; 3 * 32]);
        attend(Isa::detect(), &q, 32, &seg, &[view(&whole)], h, &mut a);
        attend(Isa::detect(), &q, 32, &seg, &[split], h, &mut b);
        assert_eq!(a, b);
    }
}
