//! GGUF's quantised weight types held as stored: Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32 along k)
//! and the k-quants Q2_K–Q6_K (super-blocks of 256 with sub-block scales). Q8_0 has its own
//! packing (`q8.rs`), which a GGUF's Q8_0 blocks fill directly.
//!
//! Every type's weight is `w = q·a + o` (`o = -dmin·m` or `m`) or `w = (q - z)·a` for an
//! unsigned integer `q` and a scale `a` (`a = d·sc`) and offset per column and sub-block (see
//! [`Rule`]), which is bit for bit the value llama.cpp's and candle's `dequantize_row_*` give,
//! signed zeros included: `q·a` is exact in f32 for every type with an offset (at most 24
//! significant bits), so one FMA rounds exactly where their multiply-then-add does, and the
//! zero-point types multiply `q - z` as they do. The kernels make each weight that way in registers and run the
//! f32 kernels' one FMA chain over k, so a product on these weights is bit for bit the f32
//! product on the dequantised W, on every instruction set, batch invariant as the f32 one is.
//!
//! Layout per panel of [`NR`] columns (rows of W), so memory stays the file's size (within a
//! few percent: scales are unpacked to a byte each):
//! - quants `[panel][k][step]`, a k step holding the panel's 32 values as planes: a nibble
//!   plane (16 bytes: column j's low 4 bits in byte j's low half, column j+16's in its high half)
//!   when the type has 4 or more bits, then one bit plane per further bit (a u32, bit c for
//!   column c) — 2 bits are two bit planes, 3 three, 5 a nibble and one, 6 a nibble and two;
//! - scales `[panel][block][record]`: `d` (f16 × 32), `e` (f16 × 32, the second block scale,
//!   when the type has one), then per sub-block a byte × 32 of `sc` and, when the type has
//!   separate mins, a byte × 32 of `m`.

use half::f16;

use super::{GgufType, Kernel, Line, Packed, PackedMatrix, Path, MR, NR};

/// The GGUF types held as stored (besides Q8_0).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// How `a` and `o` come from a block's scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
    /// `w = (q - z)·a`, `a = d·sc` (sc = 1 without sub-block scales).
    Zero(u8),
    /// `w = q·a - e·m`, `a = d·sc`.
    Min,
    /// `w = q·d + e`.
    Offset,
}

/// How a sub-block's `sc` (and `m`) bytes are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sc {
    /// No sub-block scale: `a = d`.
    None,
    /// Unsigned byte; with [`Format::mins`], `m` is a second byte.
    U8,
    /// Signed byte.
    I8,
    /// One byte, `sc` in the low nibble and `m` in the high one (Q2_K).
    Nibbles,
}

/// One type's shape.
#[derive(Clone, Copy, Debug)]
pub(super) struct Format {
    /// k values per GGUF block, and bytes per block in the file.
    pub block: usize,
    pub block_bytes: usize,
    /// k values sharing one `a` and `o`.
    pub sub: usize,
    /// Whether q has a nibble plane, and how many bit planes follow.
    pub nibble: bool,
    pub planes: usize,
    /// Whether blocks have a second f16 (`dmin` or `m`).
    pub e: bool,
    pub sc: Sc,
    /// Whether sub-blocks have a separate `m` byte.
    pub mins: bool,
    pub rule: Rule,
}

impl Format {
    pub const fn subs(&self) -> usize {
        self.block / self.sub
    }

    /// Bytes of one k step of a panel.
    pub const fn step(&self) -> usize {
        if self.nibble {
            16 + 4 * self.planes
        } else {
            4 * self.planes
        }
    }

    /// Bytes of one block's scale record of a panel.
    pub const fn record(&self) -> usize {
        let halves = if self.e { 2 } else { 1 };
        let bytes = match self.sc {
            Sc::None => 0,
            _ => self.subs() * if self.mins { 2 } else { 1 },
        };
        NR * (2 * halves + bytes)
    }

    /// Offset in a record of sub-block `s`'s `sc` bytes (its `m` bytes follow all `sc` bytes).
    pub const fn sc_at(&self, s: usize) -> usize {
        NR * (if self.e { 4 } else { 2 } + s)
    }

    pub const fn m_at(&self, s: usize) -> usize {
        self.sc_at(self.subs() + s)
    }
}

#[allow(clippy::too_many_arguments)]
const fn fmt(
    block: usize,
    block_bytes: usize,
    sub: usize,
    nibble: bool,
    planes: usize,
    e: bool,
    sc: Sc,
    mins: bool,
    rule: Rule,
) -> Format {
    Format { block, block_bytes, sub, nibble, planes, e, sc, mins, rule }
}

impl QuantType {
    pub const ALL: [QuantType; 9] = [
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q2_K,
        QuantType::Q3_K,
        QuantType::Q4_K,
        QuantType::Q5_K,
        QuantType::Q6_K,
    ];

    pub(super) const fn format(self) -> Format {
        match self {
            QuantType::Q4_0 => fmt(32, 18, 32, true, 0, false, Sc::None, false, Rule::Zero(8)),
            QuantType::Q4_1 => fmt(32, 20, 32, true, 0, true, Sc::None, false, Rule::Offset),
            QuantType::Q5_0 => fmt(32, 22, 32, true, 1, false, Sc::None, false, Rule::Zero(16)),
            QuantType::Q5_1 => fmt(32, 24, 32, true, 1, true, Sc::None, false, Rule::Offset),
            QuantType::Q2_K => fmt(256, 84, 16, false, 2, true, Sc::Nibbles, false, Rule::Min),
            QuantType::Q3_K => fmt(256, 110, 16, false, 3, false, Sc::I8, false, Rule::Zero(4)),
            QuantType::Q4_K => fmt(256, 144, 32, true, 0, true, Sc::U8, true, Rule::Min),
            QuantType::Q5_K => fmt(256, 176, 32, true, 1, true, Sc::U8, true, Rule::Min),
            QuantType::Q6_K => fmt(256, 210, 16, true, 2, false, Sc::I8, false, Rule::Zero(32)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q5_0 => "q5_0",
            QuantType::Q5_1 => "q5_1",
            QuantType::Q2_K => "q2_K",
            QuantType::Q3_K => "q3_K",
            QuantType::Q4_K => "q4_K",
            QuantType::Q5_K => "q5_K",
            QuantType::Q6_K => "q6_K",
        }
    }

    /// k values per GGUF block.
    pub fn block_len(self) -> usize {
        self.format().block
    }

    /// GGUF bytes of one row of k values (k a multiple of [`Self::block_len`]).
    pub fn row_bytes(self, k: usize) -> usize {
        let f = self.format();
        k / f.block * f.block_bytes
    }
}

/// One GGUF block taken apart: its q values in k order and its scales as the record holds them.
pub(super) struct Block {
    pub q: [u8; 256],
    pub d: u16,
    pub e: u16,
    pub sc: [u8; 16],
    pub m: [u8; 16],
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// `(sc, m)` of sub-block `j` of a Q4_K/Q5_K block's 12 packed 6-bit scale bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q3_K's 16 6-bit scales from their 12 packed bytes.
fn scales_q3k(s: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = low | (high << 4);
    }
    out
}

/// Takes one GGUF block of type `t` apart (layouts as ggml's `block_*` structs).
pub(super) fn decode(t: QuantType, b: &[u8]) -> Block {
    let mut out = Block { q: [0; 256], d: 0, e: 0, sc: [0; 16], m: [0; 16] };
    let nibbles = |q: &mut [u8], qs: &[u8]| {
        for (j, &v) in qs.iter().enumerate() {
            q[j] = v & 0x0F;
            q[j + qs.len()] = v >> 4;
        }
    };
    match t {
        QuantType::Q4_0 => {
            out.d = le16(b, 0);
            nibbles(&mut out.q, &b[2..18]);
        }
        QuantType::Q4_1 => {
            (out.d, out.e) = (le16(b, 0), le16(b, 2));
            nibbles(&mut out.q, &b[4..20]);
        }
        QuantType::Q5_0 | QuantType::Q5_1 => {
            let at = if t == QuantType::Q5_0 { 2 } else { 4 };
            out.d = le16(b, 0);
            if t == QuantType::Q5_1 {
                out.e = le16(b, 2);
            }
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            nibbles(&mut out.q, &b[at + 4..at + 20]);
            for (j, q) in out.q[..32].iter_mut().enumerate() {
                *q |= (((qh >> j) & 1) as u8) << 4;
            }
        }
        QuantType::Q2_K => {
            let (scales, qs) = (&b[0..16], &b[16..80]);
            (out.d, out.e) = (le16(b, 80), le16(b, 82));
            out.sc.copy_from_slice(scales);
            for (e, q) in out.q.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                *q = (qs[32 * n + l] >> (2 * j)) & 3;
            }
        }
        QuantType::Q3_K => {
            let (hmask, qs) = (&b[0..32], &b[32..96]);
            out.d = le16(b, 108);
            for (o, s) in out.sc.iter_mut().zip(scales_q3k(&b[96..108])) {
                *o = (s as i8 - 32) as u8;
            }
            for (e, q) in out.q.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                let high = (hmask[l] >> (4 * n + j)) & 1;
                *q = ((qs[32 * n + l] >> (2 * j)) & 3) | (high << 2);
            }
        }
        QuantType::Q4_K | QuantType::Q5_K => {
            (out.d, out.e) = (le16(b, 0), le16(b, 2));
            let scales = &b[4..16];
            for j in 0..8 {
                (out.sc[j], out.m[j]) = scale_min_k4(j, scales);
            }
            let (qh, qs) = if t == QuantType::Q4_K {
                (None, &b[16..144])
            } else {
                (Some(&b[16..48]), &b[48..176])
            };
            for (e, q) in out.q.iter_mut().enumerate() {
                let (c, half, l) = (e / 64, (e % 64) / 32, e % 32);
                let v = qs[32 * c + l];
                *q = if half == 0 { v & 0x0F } else { v >> 4 };
                if let Some(qh) = qh {
                    *q |= ((qh[l] >> (2 * c + half)) & 1) << 4;
                }
            }
        }
        QuantType::Q6_K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            out.d = le16(b, 208);
            out.sc.copy_from_slice(scales);
            for (e, q) in out.q.iter_mut().enumerate() {
                let (n, r) = (e / 128, e % 128);
                let (quarter, l) = (r / 32, r % 32);
                let low = ql[64 * n + 32 * (quarter % 2) + l];
                let low = if quarter < 2 { low & 0x0F } else { low >> 4 };
                let high = (qh[32 * n + l] >> (2 * quarter)) & 3;
                *q = low | (high << 4);
            }
        }
    }
    out
}

/// Packed weights of one [`QuantType`]; see the module comment.
pub(super) struct QuantWeights {
    pub ty: QuantType,
    q: Vec<Line>,
    scales: Vec<Line>,
}

impl QuantWeights {
    /// All zeros for W of [n, k] (k a multiple of the block length).
    pub(super) fn zeroed(ty: QuantType, n: usize, k: usize) -> Self {
        let f = ty.format();
        let panels = n.div_ceil(NR);
        QuantWeights {
            ty,
            q: Line::zeroed((panels * k * f.step()).div_ceil(64)),
            scales: Line::zeroed((panels * (k / f.block) * f.record()).div_ceil(64)),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.q.as_slice()) + std::mem::size_of_val(self.scales.as_slice())
    }

    fn quants(&self) -> &[u8] {
        bytes(&self.q)
    }

    fn records(&self) -> &[u8] {
        bytes(&self.scales)
    }
}

pub(super) fn bytes(data: &[Line]) -> &[u8] {
    // SAFETY: `Line` is 64 plain bytes (`repr(C)` around `[f32; 16]`, no padding); u8 has
    // alignment 1 and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 64) }
}

pub(super) fn bytes_mut(data: &mut [Line]) -> &mut [u8] {
    // SAFETY: as for `bytes`; any bytes written are valid f32 bit patterns too.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), data.len() * 64) }
}

/// Writes rows `first..` of W, given as their GGUF bytes (`k / block` blocks a row), into their
/// columns of their panels, whose bits must still be zero (they are ORed in). Rows of one panel
/// share bytes (a nibble byte holds two columns, a bit plane 32), so threads take whole panels.
pub(super) fn put_rows(w: &mut QuantWeights, k: usize, first: usize, raw: &[u8]) {
    use rayon::prelude::*;
    let (ty, f) = (w.ty, w.ty.format());
    let row_bytes = ty.row_bytes(k);
    let rows = raw.len() / row_bytes;
    let panels = (first / NR)..(first + rows).div_ceil(NR);
    let jobs: Vec<_> = bytes_mut(&mut w.q)
        .chunks_mut(k * f.step())
        .zip(bytes_mut(&mut w.scales).chunks_mut(k / f.block * f.record()))
        .enumerate()
        .skip(panels.start)
        .take(panels.len())
        .collect();
    jobs.into_par_iter().for_each(|(p, (q, s))| {
        let rows = (p * NR).max(first)..((p + 1) * NR).min(first + rows);
        let raws: Vec<(usize, &[u8])> = rows
            .map(|r| (r % NR, &raw[(r - first) * row_bytes..(r - first + 1) * row_bytes]))
            .collect();
        put_panel(ty, &raws, q, s);
    });
}

/// Rows `raws` (column in the panel, GGUF bytes) into one panel's quants `q` and scale
/// records `s`, a block at a time: the block's q values of every column first, then each k
/// step's planes built whole. Columns not in `raws` contribute zero bits (ORed in), so a panel
/// may be filled by several calls.
fn put_panel(ty: QuantType, raws: &[(usize, &[u8])], q: &mut [u8], s: &mut [u8]) {
    let f = ty.format();
    let (step, record) = (f.step(), f.record());
    let blocks = raws.first().map_or(0, |(_, r)| r.len() / f.block_bytes);
    let mut vals = [[0u8; 256]; NR];
    for b in 0..blocks {
        let rec = &mut s[b * record..(b + 1) * record];
        for &(c, raw) in raws {
            let blk = decode(ty, &raw[b * f.block_bytes..(b + 1) * f.block_bytes]);
            vals[c] = blk.q;
            put_record(&f, rec, c, &blk);
        }
        for (i, at) in (0..f.block).map(|i| (i, (b * f.block + i) * step)) {
            let mut planes = at;
            let mut shift = 0;
            if f.nibble {
                for j in 0..16 {
                    q[at + j] |= (vals[j][i] & 0x0F) | (vals[j + 16][i] << 4);
                }
                planes += 16;
                shift = 4;
            }
            for j in 0..f.planes {
                let mut word = 0u32;
                for (c, v) in vals.iter().enumerate() {
                    word |= (((v[i] >> (shift + j)) & 1) as u32) << c;
                }
                for (o, w) in
                    q[planes + 4 * j..planes + 4 * j + 4].iter_mut().zip(word.to_le_bytes())
                {
                    *o |= w;
                }
            }
        }
        for &(c, _) in raws {
            vals[c] = [0; 256];
        }
    }
}

/// Column `c`'s scales of block `blk` into its block's scale record `rec`.
pub(super) fn put_record(f: &Format, rec: &mut [u8], c: usize, blk: &Block) {
    rec[2 * c..2 * c + 2].copy_from_slice(&blk.d.to_le_bytes());
    if f.e {
        rec[2 * NR + 2 * c..2 * NR + 2 * c + 2].copy_from_slice(&blk.e.to_le_bytes());
    }
    if f.sc != Sc::None {
        for sub in 0..f.subs() {
            rec[f.sc_at(sub) + c] = blk.sc[sub];
            if f.mins {
                rec[f.m_at(sub) + c] = blk.m[sub];
            }
        }
    }
}

/// `(a, o)` of column `c` in sub-block `sub` of a block's scale record: the one place the
/// [`Rule`]s are spelled out; the SIMD kernels compute the same products lane-wise.
#[inline(always)]
pub(super) fn scale_offset(f: &Format, rec: &[u8], sub: usize, c: usize) -> (f32, f32) {
    let d = f16::from_bits(le16(rec, 2 * c)).to_f32();
    let e = if f.e { f16::from_bits(le16(rec, 2 * NR + 2 * c)).to_f32() } else { 0.0 };
    let byte = if f.sc == Sc::None { 0 } else { rec[f.sc_at(sub) + c] };
    let (sc, m) = match f.sc {
        Sc::None => (1.0, 0.0),
        Sc::U8 => (byte as f32, if f.mins { rec[f.m_at(sub) + c] as f32 } else { 0.0 }),
        Sc::I8 => (byte as i8 as f32, 0.0),
        Sc::Nibbles => ((byte & 0x0F) as f32, (byte >> 4) as f32),
    };
    match f.rule {
        Rule::Zero(_) => (d * sc, 0.0),
        Rule::Min => (d * sc, -(e * m)),
        Rule::Offset => (d, e),
    }
}

/// The weight of q under `f`'s rule with its sub-block's `(a, o)` from [`scale_offset`].
#[inline(always)]
pub(super) fn weight(f: &Format, q: u32, (a, o): (f32, f32)) -> f32 {
    match f.rule {
        Rule::Zero(z) => (q as i32 - z as i32) as f32 * a,
        Rule::Min | Rule::Offset => (q as f32).mul_add(a, o),
    }
}

/// q of column `c` at the k step starting at `at`.
#[inline(always)]
fn q_at(f: &Format, quants: &[u8], at: usize, c: usize) -> u32 {
    let mut q = 0u32;
    let mut planes = at;
    if f.nibble {
        q = ((quants[at + c % 16] >> (4 * (c / 16))) & 0x0F) as u32;
        planes += 16;
    }
    let first = if f.nibble { 4 } else { 0 };
    for j in 0..f.planes {
        q |= (((quants[planes + 4 * j + c / 8] >> (c % 8)) & 1) as u32) << (first + j);
    }
    q
}

/// Dequantised row `r` (see [`PackedMatrix::row`]): the values the products use.
pub(super) fn row(w: &QuantWeights, k: usize, r: usize, out: &mut [f32]) {
    let f = w.ty.format();
    let (p, c) = (r / NR, r % NR);
    let (step, record, blocks) = (f.step(), f.record(), k / f.block);
    let q = &w.quants()[p * k * step..];
    let s = &w.records()[p * blocks * record..];
    for (kk, o) in out.iter_mut().enumerate() {
        let (b, sub) = (kk / f.block, (kk % f.block) / f.sub);
        let ao = scale_offset(&f, &s[b * record..(b + 1) * record], sub, c);
        *o = weight(&f, q_at(&f, q, kk * step, c), ao);
    }
}

impl PackedMatrix {
    /// The GGUF type the weights are held in, if one of [`QuantType`].
    pub fn quant_type(&self) -> Option<QuantType> {
        match &self.data {
            Packed::Quant(w) => Some(w.ty),
            _ => None,
        }
    }

    /// The GGUF type, when the weights are held for int8 products (`int8.rs`).
    pub fn int8_type(&self) -> Option<GgufType> {
        match &self.data {
            Packed::Int8(w) => Some(w.kind.gguf()),
            _ => None,
        }
    }
}

/// Quantised weights in the shared driver, run by `kernel`. x is packed as for f32 weights.
#[derive(Clone, Copy)]
pub(super) struct QuantPath<'a> {
    f: Format,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels only
    ty: QuantType,
    q: &'a [u8],
    s: &'a [u8],
    k: usize,
    kernel: Kernel,
}

impl<'a> QuantPath<'a> {
    pub(super) fn new(w: &'a QuantWeights, k: usize, kernel: Kernel) -> Self {
        QuantPath { f: w.ty.format(), ty: w.ty, q: w.quants(), s: w.records(), k, kernel }
    }

    /// Panel p's quants and scale records.
    fn panel(&self, p: usize) -> (&'a [u8], &'a [u8]) {
        let (qn, sn) = (self.k * self.f.step(), self.k / self.f.block * self.f.record());
        (&self.q[p * qn..(p + 1) * qn], &self.s[p * sn..(p + 1) * sn])
    }
}

impl Path for QuantPath<'_> {
    type X = f32;
    // Fewer weight bytes per multiply-add than Q8_0: as much work to pay for a fork/join.
    const PAR_MIN_WORK: usize = 2 * super::PAR_MIN_WORK;

    fn depth(&self) -> usize {
        self.k
    }

    fn pack_block(&self, src: &[f32], k: usize, block: &mut [f32], rows: usize) {
        super::pack_f32_block(src, k, block, rows);
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        super::with_cached(&super::XBUF, f)
    }

    fn wide_max(&self, _rows: usize) -> usize {
        0
    }

    unsafe fn wide(
        &self,
        _: usize,
        _: usize,
        _: usize,
        _: &[f32],
        _: Option<&[f32]>,
        _: *mut f32,
        _: usize,
        _: usize,
    ) {
        unreachable!("`wide_max` is 0 for quantised weights");
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        rows: usize,
        p: usize,
        a: &[f32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        _alone: bool,
    ) {
        let (q, s) = self.panel(p);
        let k = self.k;
        assert!(
            a.len() >= k * rows && rows <= MR && cols <= NR && bias.is_none_or(|b| b.len() >= NR)
        );
        match self.kernel {
            // SAFETY: `c` is forwarded from the caller.
            Kernel::Scalar => unsafe {
                block_scalar(&self.f, rows, k, a, q, s, bias, c, ldc, cols)
            },
            // SAFETY: Avx2 is only chosen where avx2, fma and f16c are; `c` as for Scalar.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni => unsafe {
                super::avx2quant::block(self.ty, rows, k, a, q, s, bias, c, ldc, cols)
            },
            // SAFETY: as for Avx2, with avx512f.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe {
                super::avx512quant::block(self.ty, rows, k, a, q, s, bias, c, ldc, cols)
            },
            // SAFETY: NEON is aarch64's baseline; `c` as for Scalar.
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe {
                super::neonquant::block(self.ty, rows, k, a, q, s, bias, c, ldc, cols)
            },
        }
    }
}

/// The portable kernel, and the reference order for the SIMD ones: each sub-block's weights are
/// dequantised into a tile, then every row's FMA chain runs over it.
///
/// # Safety
/// `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn block_scalar(
    f: &Format,
    rows: usize,
    k: usize,
    a: &[f32],
    q: &[u8],
    s: &[u8],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[0.0f32; NR]; MR];
    let mut tile = [[0.0f32; NR]; 32];
    let (step, record) = (f.step(), f.record());
    for (b, rec) in s.chunks_exact(record).take(k / f.block).enumerate() {
        for sub in 0..f.subs() {
            let mut ao = [(0.0f32, 0.0f32); NR];
            for (col, v) in ao.iter_mut().enumerate() {
                *v = scale_offset(f, rec, sub, col);
            }
            let k0 = b * f.block + sub * f.sub;
            for (t, row) in tile[..f.sub].iter_mut().enumerate() {
                for (col, w) in row.iter_mut().enumerate() {
                    *w = weight(f, q_at(f, q, (k0 + t) * step, col), ao[col]);
                }
            }
            for (t, wk) in tile[..f.sub].iter().enumerate() {
                let xa = &a[(k0 + t) * rows..(k0 + t + 1) * rows];
                for (i, &xi) in xa.iter().enumerate() {
                    for j in 0..NR {
                        acc[i][j] = xi.mul_add(wk[j], acc[i][j]);
                    }
                }
            }
        }
    }
    for (i, row) in acc[..rows].iter_mut().enumerate() {
        if let Some(b) = bias {
            for j in 0..NR {
                row[j] += b[j];
            }
        }
        // SAFETY: the caller guarantees each row's `cols` floats are writable at stride ldc.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        dst.copy_from_slice(&row[..cols]);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    pub(in crate::kernels) fn ggml(t: QuantType) -> GgmlDType {
        match t {
            QuantType::Q4_0 => GgmlDType::Q4_0,
            QuantType::Q4_1 => GgmlDType::Q4_1,
            QuantType::Q5_0 => GgmlDType::Q5_0,
            QuantType::Q5_1 => GgmlDType::Q5_1,
            QuantType::Q2_K => GgmlDType::Q2K,
            QuantType::Q3_K => GgmlDType::Q3K,
            QuantType::Q4_K => GgmlDType::Q4K,
            QuantType::Q5_K => GgmlDType::Q5K,
            QuantType::Q6_K => GgmlDType::Q6K,
        }
    }

    /// W ([n, k]) quantised by candle to `t`: its GGUF bytes and candle's dequantisation.
    pub(in crate::kernels) fn quantised(
        t: QuantType,
        n: usize,
        k: usize,
        seed: u64,
    ) -> (Vec<u8>, Vec<f32>) {
        let w = super::super::tests::rand_vec(seed as u32, n * k);
        let tensor = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&tensor, ggml(t)).unwrap();
        let raw = qt.data().unwrap().to_vec();
        let deq =
            qt.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(raw.len(), n * t.row_bytes(k));
        (raw, deq)
    }

    #[test]
    fn held_rows_dequantise_to_candles_values_bit_for_bit() {
        for t in QuantType::ALL {
            let (n, k) = (37, 512);
            let (raw, deq) = quantised(t, n, k, 7);
            let m = PackedMatrix::pack_quant(t, &raw, n, k, None);
            let mut row = vec![0.0; k];
            for r in 0..n {
                m.row(r, &mut row);
                let want = &deq[r * k..(r + 1) * k];
                let diff = row.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(
                    diff.is_none(),
                    "{}: row {r} differs from candle's dequantisation at {diff:?}: {:?} vs {:?}",
                    t.name(),
                    &row[..8],
                    &want[..8]
                );
            }
        }
    }

    #[test]
    fn memory_is_the_files_within_a_few_percent() {
        for t in QuantType::ALL {
            let (n, k) = (256, 1024);
            let (raw, _) = quantised(t, n, k, 3);
            let m = PackedMatrix::pack_quant(t, &raw, n, k, None);
            let ratio = m.bytes() as f64 / raw.len() as f64;
            assert!(
                (0.99..1.25).contains(&ratio),
                "{}: {} bytes held for {} in the file",
                t.name(),
                m.bytes(),
                raw.len()
            );
        }
    }
}
