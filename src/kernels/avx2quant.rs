//! AVX2+FMA kernels for GGUF quantised weights (`quant.rs`). With 16 vector registers the
//! panel's 32 columns take four; so, as the portable kernel does, each sub-block's weights are
//! first made into a tile (q unpacked from its planes, one FMA with the sub-block's `a` and `o`:
//! exact) and every group of up to three rows then runs its FMA chains over the tile, carrying
//! its accumulators from one sub-block to the next. The order per element is the f32 kernels'
//! chain over k, so the bits are those of the f32 product on the dequantised W.

use std::arch::x86_64::*;

use super::quant::{Format, QuantType, Rule, Sc};
use super::{MR, NR};

/// Vectors per panel row.
const V: usize = NR / 8;
/// Rows whose accumulators stay in registers over a tile.
const GROUP: usize = 3;

/// See `avx512quant::block`; same contract.
///
/// # Safety
/// AVX2, FMA and F16C; `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block(
    ty: QuantType,
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
    let f = ty.format();
    assert!(
        a.len() >= k * rows
            && rows <= MR
            && k.is_multiple_of(f.block)
            && q.len() >= k * f.step()
            && s.len() >= k / f.block * f.record()
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    // SAFETY (all arms): bounds asserted above; features forwarded from the caller.
    let acc = unsafe { by_quant_type!(ty, run(rows, k, a, q, s)) };
    // SAFETY: forwarded from the caller.
    unsafe { super::store_rows(&acc[..rows], bias, c, ldc, cols) };
}

/// 8 f16 values at `p` widened (exactly).
///
/// # Safety
/// Runs where the caller's code does: only from functions compiled for AVX2 and F16C. (No
/// `target_feature` of its own, which would forbid `inline(always)`: the kernels call these
/// helpers once per block, cheap inline and costly as calls.)
#[inline(always)]
unsafe fn halves(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// 8 bytes at `p` as i32 lanes, signed or not.
///
/// # Safety
/// As [`halves`].
#[inline(always)]
unsafe fn bytes8(p: *const u8, signed: bool) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes.
    let v = unsafe { _mm_loadl_epi64(p.cast()) };
    if signed {
        _mm256_cvtepi8_epi32(v)
    } else {
        _mm256_cvtepu8_epi32(v)
    }
}

/// `a` and `o` of sub-block `sub` of the record at `rec`, 8 columns a vector, lane for lane
/// `quant::scale_offset`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scale_offset(
    f: &Format,
    rec: *const u8,
    sub: usize,
) -> ([__m256; V], [__m256; V]) {
    let mut a = [_mm256_setzero_ps(); V];
    let mut o = [_mm256_setzero_ps(); V];
    for v in 0..V {
        // SAFETY: forwarded from the caller.
        (a[v], o[v]) = unsafe { scale_offset8(f, rec, sub, v) };
    }
    (a, o)
}

/// [`scale_offset`] of columns 8v..8v+8 alone.
///
/// # Safety
/// As [`halves`].
#[inline(always)]
pub(super) unsafe fn scale_offset8(
    f: &Format,
    rec: *const u8,
    sub: usize,
    v: usize,
) -> (__m256, __m256) {
    // SAFETY: the record holds 32 d (and e) halves and 32 sc (and m) bytes per sub-block.
    unsafe {
        let d = halves(rec.add(16 * v));
        let e = if f.e { halves(rec.add(2 * NR + 16 * v)) } else { _mm256_setzero_ps() };
        let (sc, m) = match f.sc {
            Sc::None => (None, None),
            Sc::U8 => {
                let m = f.mins.then(|| bytes8(rec.add(f.m_at(sub) + 8 * v), false));
                (Some(bytes8(rec.add(f.sc_at(sub) + 8 * v), false)), m)
            }
            Sc::I8 => (Some(bytes8(rec.add(f.sc_at(sub) + 8 * v), true)), None),
            Sc::Nibbles => {
                let b = bytes8(rec.add(f.sc_at(sub) + 8 * v), false);
                (Some(_mm256_and_si256(b, _mm256_set1_epi32(0x0F))), Some(_mm256_srli_epi32(b, 4)))
            }
        };
        let a = match sc {
            Some(sc) => _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc)),
            None => d,
        };
        let o = match f.rule {
            Rule::Zero(_) => _mm256_setzero_ps(),
            Rule::Min => {
                let em = _mm256_mul_ps(e, _mm256_cvtepi32_ps(m.unwrap_or(_mm256_setzero_si256())));
                // -(e·m) by flipping the sign bit, as the scalar negation does.
                _mm256_xor_ps(em, _mm256_set1_ps(-0.0))
            }
            Rule::Offset => e,
        };
        (a, o)
    }
}

/// The 32 q values of the k step at `q`, 8 columns a vector. They are assembled a byte per
/// column in one register (each bit plane's 4 bytes spread to the 32 byte lanes by a shuffle,
/// tested against each lane's bit), then widened.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack(f: &Format, q: *const u8) -> [__m256i; V] {
    let mut v = _mm256_setzero_si256();
    let mut planes = q;
    let mut first = 0;
    if f.nibble {
        // SAFETY: a k step holds 16 nibble bytes, then its bit planes.
        let b = unsafe { _mm_loadu_si128(q.cast()) };
        let mask = _mm_set1_epi8(0x0F);
        v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), mask), _mm_and_si128(b, mask));
        // SAFETY: as above.
        planes = unsafe { q.add(16) };
        first = 4;
    }
    if f.planes > 0 {
        // Byte lane c takes plane byte c / 8 (shuffles stay within 128-bit halves, and the
        // broadcast puts the 4 bytes in both).
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        for j in 0..f.planes {
            // SAFETY: as above: plane j is 4 bytes.
            let bits = unsafe { planes.add(4 * j).cast::<i32>().read_unaligned() };
            let lanes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits), spread);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(lanes, bit), bit);
            v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(1 << (first + j))));
        }
    }
    let (low, high) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    [
        _mm256_cvtepu8_epi32(low),
        _mm256_cvtepu8_epi32(_mm_srli_si128(low, 8)),
        _mm256_cvtepu8_epi32(high),
        _mm256_cvtepu8_epi32(_mm_srli_si128(high, 8)),
    ]
}

/// Rows i0..i0+G: their FMA chains over the tile's `len` k steps (`x` holds those steps' rows,
/// `rows` apart), accumulators in registers throughout.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group<const G: usize>(
    acc: &mut [[__m256; V]],
    tile: &[[__m256; V]],
    x: &[f32],
    rows: usize,
    i0: usize,
) {
    let mut r = [[_mm256_setzero_ps(); V]; G];
    r.copy_from_slice(&acc[i0..i0 + G]);
    for (t, w) in tile.iter().enumerate() {
        for (i, ri) in r.iter_mut().enumerate() {
            let xi = _mm256_set1_ps(x[t * rows + i0 + i]);
            for v in 0..V {
                ri[v] = _mm256_fmadd_ps(xi, w[v], ri[v]);
            }
        }
    }
    acc[i0..i0 + G].copy_from_slice(&r);
}

/// Every row's accumulators (row-major, NR columns) after the whole FMA chain over k.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<const T: usize>(
    rows: usize,
    k: usize,
    a: &[f32],
    q: &[u8],
    s: &[u8],
) -> [[f32; NR]; MR] {
    let f = QuantType::ALL[T].format();
    let (step, record) = (f.step(), f.record());
    let mut acc = [[_mm256_setzero_ps(); V]; MR];
    let mut tile = [[_mm256_setzero_ps(); V]; 32];
    for b in 0..k / f.block {
        // SAFETY: `block` checked s holds a record per block.
        let rec = unsafe { s.as_ptr().add(b * record) };
        for sub in 0..f.subs() {
            let k0 = b * f.block + sub * f.sub;
            // SAFETY: as above; q holds a k step per k.
            unsafe {
                let (sa, so) = scale_offset(&f, rec, sub);
                for (t, w) in tile[..f.sub].iter_mut().enumerate() {
                    let qv = unpack(&f, q.as_ptr().add((k0 + t) * step));
                    for v in 0..V {
                        w[v] = match f.rule {
                            Rule::Zero(z) => {
                                let q = _mm256_sub_epi32(qv[v], _mm256_set1_epi32(z as i32));
                                _mm256_mul_ps(_mm256_cvtepi32_ps(q), sa[v])
                            }
                            Rule::Min | Rule::Offset => {
                                _mm256_fmadd_ps(_mm256_cvtepi32_ps(qv[v]), sa[v], so[v])
                            }
                        };
                    }
                }
            }
            let x = &a[k0 * rows..(k0 + f.sub) * rows];
            let mut i0 = 0;
            while i0 < rows {
                let g = (rows - i0).min(GROUP);
                // SAFETY: features forwarded from `block`.
                unsafe {
                    match g {
                        1 => group::<1>(&mut acc, &tile[..f.sub], x, rows, i0),
                        2 => group::<2>(&mut acc, &tile[..f.sub], x, rows, i0),
                        _ => group::<3>(&mut acc, &tile[..f.sub], x, rows, i0),
                    }
                }
                i0 += g;
            }
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, r) in out.iter_mut().zip(&acc).take(rows) {
        for (v, &rv) in r.iter().enumerate() {
            // SAFETY: each row of `out` holds V·8 floats.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * v), rv) };
        }
    }
    out
}
