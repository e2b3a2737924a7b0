//! AVX-512 microkernels for GGUF quantised weights (`quant.rs`): per k step the panel's 32 q
//! values are unpacked from their planes (nibbles widened by `vpmovzxbd`, each bit plane added
//! under a mask register), converted and turned into weights by one FMA with the sub-block's
//! `a` and `o` (exact, see `quant.rs`), once for every row of the block; each row then runs the
//! f32 kernels' FMA chain, so the bits are those of the f32 product on the dequantised W.

use std::arch::x86_64::*;

use super::avx512::finish;
use super::quant::{Format, QuantType, Rule, Sc};
use super::NR;

/// See `scalar::block`: `rows` (1..=MR) rows of packed x times one panel of type `ty` (`q`: its
/// k steps, `s`: its blocks' scale records).
///
/// # Safety
/// AVX-512F; `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
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
            && k.is_multiple_of(f.block)
            && q.len() >= k * f.step()
            && s.len() >= k / f.block * f.record()
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe { by_quant_type!(ty, by_type(rows, k, a, q, s, bias, c, ldc, cols)) }
}

/// `kern::<rows, T>`: T indexes [`QuantType::ALL`], so each type's shape is a constant.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn by_type<const T: usize>(
    rows: usize,
    k: usize,
    a: *const f32,
    q: *const u8,
    s: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    // SAFETY: forwarded from `block`.
    unsafe {
        match rows {
            1 => kern::<1, T>(k, a, q, s, bias, c, ldc, cols),
            2 => kern::<2, T>(k, a, q, s, bias, c, ldc, cols),
            3 => kern::<3, T>(k, a, q, s, bias, c, ldc, cols),
            4 => kern::<4, T>(k, a, q, s, bias, c, ldc, cols),
            5 => kern::<5, T>(k, a, q, s, bias, c, ldc, cols),
            6 => kern::<6, T>(k, a, q, s, bias, c, ldc, cols),
            7 => kern::<7, T>(k, a, q, s, bias, c, ldc, cols),
            8 => kern::<8, T>(k, a, q, s, bias, c, ldc, cols),
            9 => kern::<9, T>(k, a, q, s, bias, c, ldc, cols),
            10 => kern::<10, T>(k, a, q, s, bias, c, ldc, cols),
            11 => kern::<11, T>(k, a, q, s, bias, c, ldc, cols),
            12 => kern::<12, T>(k, a, q, s, bias, c, ldc, cols),
            r => unreachable!("row block of {r} > MR"),
        }
    }
}

/// 16 f16 values at `p` widened (exactly).
///
/// # Safety
/// Runs where the caller's code does: only from functions compiled for AVX-512F. (No
/// `target_feature` of its own, which would forbid `inline(always)`: the kernels call these
/// helpers once per block, cheap inline and costly as calls.)
#[inline(always)]
pub(super) unsafe fn halves(p: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}

/// 16 bytes at `p` as i32 lanes, signed or not.
///
/// # Safety
/// As [`halves`].
#[inline(always)]
unsafe fn bytes16(p: *const u8, signed: bool) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    if signed {
        _mm512_cvtepi8_epi32(v)
    } else {
        _mm512_cvtepu8_epi32(v)
    }
}

/// `a` and `o` (two vectors each: columns 0..16, 16..32) of sub-block `sub` of the record at
/// `rec`, lane for lane `quant::scale_offset`.
///
/// # Safety
/// As [`halves`].
#[inline(always)]
pub(super) unsafe fn scale_offset(
    f: &Format,
    rec: *const u8,
    sub: usize,
    d: &[__m512; 2],
    e: &[__m512; 2],
) -> ([__m512; 2], [__m512; 2]) {
    let mut a = *d;
    let mut o = [_mm512_setzero_ps(); 2];
    for h in 0..2 {
        // SAFETY: the record holds 32 sc (and m) bytes per sub-block.
        let (sc, m) = unsafe {
            match f.sc {
                Sc::None => (None, None),
                Sc::U8 => {
                    let m = f.mins.then(|| bytes16(rec.add(f.m_at(sub) + 16 * h), false));
                    (Some(bytes16(rec.add(f.sc_at(sub) + 16 * h), false)), m)
                }
                Sc::I8 => (Some(bytes16(rec.add(f.sc_at(sub) + 16 * h), true)), None),
                Sc::Nibbles => {
                    let v = bytes16(rec.add(f.sc_at(sub) + 16 * h), false);
                    (
                        Some(_mm512_and_si512(v, _mm512_set1_epi32(0x0F))),
                        Some(_mm512_srli_epi32(v, 4)),
                    )
                }
            }
        };
        if let Some(sc) = sc {
            a[h] = _mm512_mul_ps(d[h], _mm512_cvtepi32_ps(sc));
        }
        o[h] = match f.rule {
            Rule::Zero(_) => _mm512_setzero_ps(),
            Rule::Min => {
                let m = _mm512_cvtepi32_ps(m.unwrap_or(_mm512_setzero_si512()));
                // -(e·m) by flipping the sign bit, as the scalar negation does (signed zeros too).
                let em = _mm512_castps_si512(_mm512_mul_ps(e[h], m));
                _mm512_castsi512_ps(_mm512_xor_si512(em, _mm512_set1_epi32(i32::MIN)))
            }
            Rule::Offset => e[h],
        };
    }
    (a, o)
}

/// The 32 q values of the k step at `q` (columns 0..16, 16..32).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn unpack(f: &Format, q: *const u8) -> [__m512i; 2] {
    let mut v = [_mm512_setzero_si512(); 2];
    let mut planes = q;
    let mut first = 0;
    if f.nibble {
        // SAFETY: a k step holds 16 nibble bytes, then its bit planes.
        let b = unsafe { _mm_loadu_si128(q.cast()) };
        let low = _mm_set1_epi8(0x0F);
        v[0] = _mm512_cvtepu8_epi32(_mm_and_si128(b, low));
        v[1] = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), low));
        // SAFETY: as above.
        planes = unsafe { q.add(16) };
        first = 4;
    }
    for j in 0..f.planes {
        // SAFETY: as above: plane j is 4 bytes.
        let bits = unsafe { planes.add(4 * j).cast::<u32>().read_unaligned() };
        let add = _mm512_set1_epi32(1 << (first + j));
        v[0] = _mm512_mask_add_epi32(v[0], bits as u16, v[0], add);
        v[1] = _mm512_mask_add_epi32(v[1], (bits >> 16) as u16, v[1], add);
    }
    v
}

/// 16 weights from their q values, lane for lane `quant::weight`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn weights(f: &Format, q: __m512i, a: __m512, o: __m512) -> __m512 {
    match f.rule {
        Rule::Zero(z) => {
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(z as i32))), a)
        }
        Rule::Min | Rule::Offset => _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), a, o),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kern<const R: usize, const T: usize>(
    k: usize,
    a: *const f32,
    q: *const u8,
    s: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let f = QuantType::ALL[T].format();
    let (step, record) = (f.step(), f.record());
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut q) = (a, q);
    for b in 0..k / f.block {
        // SAFETY: `block` checked s holds a record per block, q a k step per k and a k·R
        // floats; the pointers advance by one k step (and R floats) per step.
        unsafe {
            let rec = s.add(b * record);
            let d = [halves(rec), halves(rec.add(32))];
            let e = if f.e {
                [halves(rec.add(2 * NR)), halves(rec.add(2 * NR + 32))]
            } else {
                [_mm512_setzero_ps(); 2]
            };
            for sub in 0..f.subs() {
                let (sa, so) = scale_offset(&f, rec, sub, &d, &e);
                for _ in 0..f.sub {
                    let qv = unpack(&f, q);
                    let (w0, w1) =
                        (weights(&f, qv[0], sa[0], so[0]), weights(&f, qv[1], sa[1], so[1]));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let xi = _mm512_set1_ps(*a.add(i));
                        row[0] = _mm512_fmadd_ps(xi, w0, row[0]);
                        row[1] = _mm512_fmadd_ps(xi, w1, row[1]);
                    }
                    a = a.add(R);
                    q = q.add(step);
                }
            }
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
