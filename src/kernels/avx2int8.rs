//! AVX2 kernels for int8 products (`int8.rs`): `vpmaddubsw` multiplies a unit row's unsigned
//! quants with a broadcast quad of xq into i16 pairs and `vpmaddwd` by ones sums each column's
//! quad into its i32 lane, exactly: a pair is at most 2·q_max·127 (so 4-bit types sum a whole
//! unit in i16 before widening, 5-bit ones half a unit, Q6_K two quads), and Q8_0 (q up to 255
//! with its offset) goes through the sign trick (`|q - 128|` times `xq·sign(q - 128)`, at most
//! 2·128·127), so the integer sums are those of the VNNI kernels. With 16 registers the panel is
//! taken 8 columns at a time: up to four rows with their sums live (`kern`), larger blocks
//! streamed past a unit unpacked once (`kern_rows`).
//!
//! Where the CPU has AVX-VNNI (Intel's client cores from Alder Lake on, which lack AVX-512), the
//! same kernels are compiled a second time with `VNNI` (`block_vnni`): one 256-bit `vpdpbusd` per
//! quad and row adds the products into the i32 sums, in place of `vpmaddubsw`, the i16 adds and
//! `vpmaddwd`, and Q8_0 takes its stored `q + 128` as it is, its 128·Σxq subtracted after the
//! unit as the zero-point types' is. The integer sums are exact either way, so the bits are the
//! same.

use std::arch::x86_64::*;

use super::avx2quant::scale_offset8;
use super::int8::{pack_unit, scale_of, Kind, Quants, Shape, UNIT, XU};
use super::{NextPanel, MR, NR};

/// Blocks of up to this many rows keep their accumulators in registers, unpacking the quants
/// per group of quads (`kern`); larger blocks unpack a unit once and stream every row past it
/// (`kern_rows`).
const GROUP: usize = 4;
/// How many units ahead of the one being multiplied its weights are fetched.
const PREFETCH_UNITS: usize = 8;

/// Asks for the quants `PREFETCH_UNITS` units past `unit` (`ub` bytes each): the weights stream
/// from memory once per product, and fetching them ahead keeps the integer loop from waiting on
/// them. A prefetch past the panel's end is harmless. (AVX2 and AVX-512 kernels.)
#[inline(always)]
pub(super) fn prefetch_ahead(unit: *const u8, ub: usize) {
    let ahead = unit.wrapping_add(PREFETCH_UNITS * ub);
    for line in (0..ub).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
    }
}

/// See `avx512int8::block`; same contract.
///
/// # Safety
/// AVX2, FMA and F16C.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
    next_panel: bool,
) {
    // SAFETY: the features `block_body` needs, from the caller.
    unsafe { block_body::<false>(kind, rows, k, a, q, s, out, next_panel) }
}

/// [`block`] with AVX-VNNI's `vpdpbusd` for the integer sums: the same bits.
///
/// # Safety
/// AVX2, FMA, F16C and AVX-VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn block_vnni(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
    next_panel: bool,
) {
    // SAFETY: as for `block`, with avxvnni.
    unsafe { block_body::<true>(kind, rows, k, a, q, s, out, next_panel) }
}

/// `block`'s body, inlined into each of the two entry points with its target features.
///
/// # Safety
/// AVX2, FMA and F16C in the caller, and AVX-VNNI where `VNNI`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_body<const VNNI: bool>(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
    next_panel: bool,
) {
    let f = kind.format();
    assert!(
        rows <= MR
            && k.is_multiple_of(f.block)
            && a.len() >= k / UNIT * XU * rows
            && q.len() >= k / UNIT * kind.unit_bytes()
            && s.len() >= k / f.block * f.record()
    );
    // The four column passes of a one-block chunk bring the next panel's quants into L2.
    let (next, bytes, steps) = (q.as_ptr_range().end, q.len(), k / UNIT);
    let passes = if next_panel { rows.min(3).next_power_of_two() } else { 1 };
    let pf = |v: usize| NextPanel::for_pass(next, bytes, steps, v.min(passes - 1), passes);
    let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
    if rows > GROUP {
        let o = &mut out[..rows];
        for v in 0..NR / 8 {
            let pf = pf(v);
            // SAFETY (all arms): bounds asserted above; features from the caller.
            unsafe {
                match rows {
                    5 => by_int8_kind!(kind, K => kern_rows::<5, K, VNNI>(k, a, q, s, v, o, pf)),
                    6 => by_int8_kind!(kind, K => kern_rows::<6, K, VNNI>(k, a, q, s, v, o, pf)),
                    7 => by_int8_kind!(kind, K => kern_rows::<7, K, VNNI>(k, a, q, s, v, o, pf)),
                    8 => by_int8_kind!(kind, K => kern_rows::<8, K, VNNI>(k, a, q, s, v, o, pf)),
                    9 => by_int8_kind!(kind, K => kern_rows::<9, K, VNNI>(k, a, q, s, v, o, pf)),
                    10 => by_int8_kind!(kind, K => kern_rows::<10, K, VNNI>(k, a, q, s, v, o, pf)),
                    11 => by_int8_kind!(kind, K => kern_rows::<11, K, VNNI>(k, a, q, s, v, o, pf)),
                    _ => by_int8_kind!(kind, K => kern_rows::<12, K, VNNI>(k, a, q, s, v, o, pf)),
                }
            }
        }
        return;
    }
    let o = &mut out[..rows];
    // SAFETY (all arms): bounds asserted above; features from the caller.
    unsafe {
        match rows {
            1 => by_int8_kind!(kind, K => kern::<1, 4, K, VNNI>(k, a, q, s, 0, o, pf(0))),
            2 => {
                for v0 in [0, 2] {
                    let pf = pf(v0 / 2);
                    by_int8_kind!(kind, K => kern::<2, 2, K, VNNI>(k, a, q, s, v0, o, pf))
                }
            }
            r => {
                for v in 0..NR / 8 {
                    let pf = pf(v);
                    match r {
                        3 => by_int8_kind!(kind, K => kern::<3, 1, K, VNNI>(k, a, q, s, v, o, pf)),
                        _ => by_int8_kind!(kind, K => kern::<4, 1, K, VNNI>(k, a, q, s, v, o, pf)),
                    }
                }
            }
        }
    }
}

/// Bit t of each byte of `hb` moved to bit 4, the rest cleared (as `avx512int8::fifth_bit`).
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bit(hb: __m256i, t: usize) -> __m256i {
    let v = match t {
        0 => _mm256_slli_epi16(hb, 4),
        1 => _mm256_slli_epi16(hb, 3),
        2 => _mm256_slli_epi16(hb, 2),
        3 => _mm256_slli_epi16(hb, 1),
        4 => hb,
        5 => _mm256_srli_epi16(hb, 1),
        6 => _mm256_srli_epi16(hb, 2),
        _ => _mm256_srli_epi16(hb, 3),
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x10))
}

/// Group g's two quads (2g and 2g + 1) of a unit of nibbles, columns 8v..8v+8: the low and the
/// high nibbles, each with its fifth bit from `hb` (Q5_K, Q5_0, Q5_1) where given.
///
/// # Safety
/// A whole unit at `unit`; AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibble_quads(
    unit: *const u8,
    g: usize,
    v: usize,
    hb: Option<__m256i>,
) -> (__m256i, __m256i) {
    let low = _mm256_set1_epi8(0x0F);
    // SAFETY: group g lies in the unit (see `int8.rs` for the layouts).
    let w = unsafe { load(unit.add(g * 4 * NR), v) };
    let (lo, hi) = (_mm256_and_si256(w, low), _mm256_and_si256(_mm256_srli_epi16(w, 4), low));
    match hb {
        Some(hb) => (
            _mm256_or_si256(lo, fifth_bit(hb, 2 * g)),
            _mm256_or_si256(hi, fifth_bit(hb, 2 * g + 1)),
        ),
        None => (lo, hi),
    }
}

/// Quad T's q bytes (columns 8v..8v+8) in half `half` of a unit of Q6_K, Q2_K or Q3_K (as
/// `avx512int8::quad_weights`).
///
/// # Safety
/// A whole unit at `unit`; AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quad_weights<const T: usize>(
    quants: Quants,
    unit: *const u8,
    half: usize,
    v: usize,
) -> __m256i {
    let mask = |w: __m256i, m: i8| _mm256_and_si256(w, _mm256_set1_epi8(m));
    // SAFETY: the groups read lie in the unit (see `int8.rs` for the layouts).
    unsafe {
        if quants == Quants::Six {
            let base = unit.add(half * 3 * 4 * NR);
            let (n, hb) = (load(base.add(T / 2 * 4 * NR), v), load(base.add(8 * NR), v));
            let nib = if T.is_multiple_of(2) { n } else { _mm256_srli_epi16(n, 4) };
            // hb's bits 2T..2T+1 to bits 4..5.
            let top = match T {
                0 => _mm256_slli_epi16(hb, 4),
                1 => _mm256_slli_epi16(hb, 2),
                2 => hb,
                _ => _mm256_srli_epi16(hb, 2),
            };
            return _mm256_or_si256(mask(nib, 0x0F), mask(top, 0x30));
        }
        let g = load(unit.add(half * 4 * NR), v);
        let two = match T {
            0 => g,
            1 => _mm256_srli_epi16(g, 2),
            2 => _mm256_srli_epi16(g, 4),
            _ => _mm256_srli_epi16(g, 6),
        };
        let two = mask(two, 3);
        if quants != Quants::Three {
            return two;
        }
        // The third bit of quad 4·half + T to bit 2.
        let hb = load(unit.add(2 * 4 * NR), v);
        let hb = if half == 0 { hb } else { _mm256_srli_epi16(hb, 4) };
        let top = match T {
            0 => _mm256_slli_epi16(hb, 2),
            1 => _mm256_slli_epi16(hb, 1),
            2 => hb,
            _ => _mm256_srli_epi16(hb, 1),
        };
        _mm256_or_si256(two, mask(top, 4))
    }
}

/// The 32 bytes of columns 8v..8v+8 in a unit row at `p`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load(p: *const u8, v: usize) -> __m256i {
    // SAFETY: the caller guarantees a 128-byte unit row at p.
    unsafe { _mm256_loadu_si256(p.add(32 * v).cast()) }
}

/// Σ over each 4-byte lane of w·x: w unsigned (at most 63), x signed.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// `acc` plus Σ over each 4-byte lane of w·x, w unsigned and x signed, exactly: one `vpdpbusd`
/// with VNNI, else [`dot`] (w at most 63).
///
/// # Safety
/// AVX2, and AVX-VNNI where `VNNI`.
#[inline(always)]
unsafe fn dot_add<const VNNI: bool>(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_avx_epi32(acc, w, x)
    } else {
        _mm256_add_epi32(acc, dot(w, x))
    }
}

/// As [`dot`] for Q8_0's stored `q + 128`: Σ (q - 128)·x per lane.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_offset(w: __m256i, x: __m256i) -> __m256i {
    let signed = _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN));
    dot(_mm256_abs_epi8(signed), _mm256_sign_epi8(x, signed))
}

/// All R (1..=GROUP) rows of the block's packed x times columns 8v0..8(v0+VN) of the panel,
/// into those columns of `out`. VN > 1 takes several column vectors per pass over a unit: for
/// one or two rows that keeps independent chains in flight and reads each x broadcast once.
///
/// # Safety
/// As `block`, whose features the caller has (AVX-VNNI too where `VNNI`).
#[inline(always)]
unsafe fn kern<const R: usize, const VN: usize, const K: usize, const VNNI: bool>(
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    v0: usize,
    out: &mut [[f32; NR]],
    mut ahead: NextPanel,
) {
    let Shape { format: f, quants, zero: zero_point, record, unit_bytes: ub, per_block } =
        const { Shape::of(K) };
    let mut acc = [[_mm256_setzero_ps(); VN]; R];
    for u in 0..k / UNIT {
        ahead.step();
        for dv in 0..VN {
            let v = v0 + dv;
            // SAFETY: as in `avx512int8::kern`.
            unsafe {
                let x = |e: usize, i: usize| *a.add((u * R + i) * XU + e);
                let xb = |e: usize, i: usize| _mm256_set1_epi32(x(e, i) as i32);
                let rec = s.add(u / per_block * record);
                let unit = q.add(u * ub);
                // Weights a few units ahead, on the first of the four column passes (see
                // `avx512int8`).
                if v == 0 {
                    prefetch_ahead(unit, ub);
                }
                let mut t = [_mm256_setzero_ps(); R];
                match quants {
                    Quants::Bytes | Quants::Nibbles | Quants::Nibbles5 => {
                        // J = Σ (q - z)·xq for the zero-point types, I = Σ q·xq for the others.
                        let mut ia = [_mm256_setzero_si256(); R];
                        match quants {
                            Quants::Bytes => {
                                for quad in 0..8 {
                                    let w = load(unit.add(quad * 4 * NR), v);
                                    for (i, r) in ia.iter_mut().enumerate() {
                                        *r = if VNNI {
                                            dot_add::<VNNI>(*r, w, xb(quad, i))
                                        } else {
                                            _mm256_add_epi32(*r, dot_offset(w, xb(quad, i)))
                                        };
                                    }
                                }
                            }
                            // (VNNI: straight into the i32 sums, no i16 stage.)
                            _ if VNNI => {
                                let hb = (quants == Quants::Nibbles5)
                                    .then(|| load(unit.add(4 * 4 * NR), v));
                                for g in 0..4 {
                                    let (lo, hi) = nibble_quads(unit, g, v, hb);
                                    for (i, r) in ia.iter_mut().enumerate() {
                                        let r1 = dot_add::<VNNI>(*r, lo, xb(2 * g, i));
                                        *r = dot_add::<VNNI>(r1, hi, xb(2 * g + 1, i));
                                    }
                                }
                            }
                            Quants::Nibbles => {
                                // i16 sums over the whole unit: each `vpmaddubsw` lane is at most
                                // 2·15·127 = 3810, so eight of them stay below 2¹⁵.
                                let mut i16s = [_mm256_setzero_si256(); R];
                                for g in 0..4 {
                                    let (lo, hi) = nibble_quads(unit, g, v, None);
                                    for (i, r) in i16s.iter_mut().enumerate() {
                                        let pair = _mm256_add_epi16(
                                            _mm256_maddubs_epi16(lo, xb(2 * g, i)),
                                            _mm256_maddubs_epi16(hi, xb(2 * g + 1, i)),
                                        );
                                        *r = _mm256_add_epi16(*r, pair);
                                    }
                                }
                                for (r, s) in ia.iter_mut().zip(i16s) {
                                    *r = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
                                }
                            }
                            _ => {
                                // 5-bit q: a `vpmaddubsw` lane is at most 2·31·127 = 7874, so
                                // four of them (two groups) are summed in i16 before widening.
                                let hb = load(unit.add(4 * 4 * NR), v);
                                for two in 0..2 {
                                    let mut i16s = [_mm256_setzero_si256(); R];
                                    for g in 2 * two..2 * two + 2 {
                                        let (lo, hi) = nibble_quads(unit, g, v, Some(hb));
                                        for (i, r) in i16s.iter_mut().enumerate() {
                                            let pair = _mm256_add_epi16(
                                                _mm256_maddubs_epi16(lo, xb(2 * g, i)),
                                                _mm256_maddubs_epi16(hi, xb(2 * g + 1, i)),
                                            );
                                            *r = _mm256_add_epi16(*r, pair);
                                        }
                                    }
                                    for (r, s) in ia.iter_mut().zip(i16s) {
                                        *r = _mm256_add_epi32(
                                            *r,
                                            _mm256_madd_epi16(s, _mm256_set1_epi16(1)),
                                        );
                                    }
                                }
                            }
                        }
                        // (Scales once the integer loop is done: fewer registers live in it.)
                        let (sa, so) = scale_offset8(&f, rec, u % per_block, v);
                        for (i, (ti, r)) in t.iter_mut().zip(ia).enumerate() {
                            let sum = x(9, i) as i32 + x(10, i) as i32;
                            *ti = match zero_point {
                                // (Bytes' sign trick has subtracted its 128 already; VNNI
                                // summed q + 128.)
                                Some(z) if VNNI || quants != Quants::Bytes => _mm256_mul_ps(
                                    _mm256_cvtepi32_ps(_mm256_sub_epi32(
                                        r,
                                        _mm256_set1_epi32(z * sum),
                                    )),
                                    sa,
                                ),
                                Some(_) => _mm256_mul_ps(_mm256_cvtepi32_ps(r), sa),
                                None => _mm256_fmadd_ps(
                                    so,
                                    _mm256_set1_ps(sum as f32),
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(r), sa),
                                ),
                            };
                        }
                    }
                    Quants::Six | Quants::Two | Quants::Three => {
                        for sixteen in 0..2 {
                            // I = Σ q·xq over the half, quads summed in i16 two at a time (a lane is
                            // at most 2·63·127).
                            let mut ia = [_mm256_setzero_si256(); R];
                            let mut pair_of = |quad: usize, w0: __m256i, w1: __m256i| {
                                for (i, r) in ia.iter_mut().enumerate() {
                                    if VNNI {
                                        let r1 = dot_add::<VNNI>(*r, w0, xb(quad, i));
                                        *r = dot_add::<VNNI>(r1, w1, xb(quad + 1, i));
                                        continue;
                                    }
                                    let p = _mm256_add_epi16(
                                        _mm256_maddubs_epi16(w0, xb(quad, i)),
                                        _mm256_maddubs_epi16(w1, xb(quad + 1, i)),
                                    );
                                    *r = _mm256_add_epi32(
                                        *r,
                                        _mm256_madd_epi16(p, _mm256_set1_epi16(1)),
                                    );
                                }
                            };
                            pair_of(
                                4 * sixteen,
                                quad_weights::<0>(quants, unit, sixteen, v),
                                quad_weights::<1>(quants, unit, sixteen, v),
                            );
                            pair_of(
                                4 * sixteen + 2,
                                quad_weights::<2>(quants, unit, sixteen, v),
                                quad_weights::<3>(quants, unit, sixteen, v),
                            );
                            let (sa, so) = scale_offset8(&f, rec, 2 * (u % per_block) + sixteen, v);
                            for (i, (ti, r)) in t.iter_mut().zip(ia).enumerate() {
                                let sum = x(9 + sixteen, i) as i32;
                                *ti = match zero_point {
                                    // J = I - z·S; t = J₀·a₀, then fma(J₁, a₁, t).
                                    Some(z) => {
                                        let j = _mm256_cvtepi32_ps(_mm256_sub_epi32(
                                            r,
                                            _mm256_set1_epi32(z * sum),
                                        ));
                                        if sixteen == 0 {
                                            _mm256_mul_ps(j, sa)
                                        } else {
                                            _mm256_fmadd_ps(j, sa, *ti)
                                        }
                                    }
                                    // t = fma(o₀, S₀, I₀·a₀), then fma(o₁, S₁, fma(I₁, a₁, t)).
                                    None => {
                                        let i = _mm256_cvtepi32_ps(r);
                                        let t = if sixteen == 0 {
                                            _mm256_mul_ps(i, sa)
                                        } else {
                                            _mm256_fmadd_ps(i, sa, *ti)
                                        };
                                        _mm256_fmadd_ps(so, _mm256_set1_ps(sum as f32), t)
                                    }
                                };
                            }
                        }
                    }
                }
                for (i, (row, ti)) in acc.iter_mut().zip(t).enumerate() {
                    row[dv] = _mm256_fmadd_ps(ti, _mm256_set1_ps(f32::from_bits(x(8, i))), row[dv]);
                }
            }
        }
    }
    for (row, o) in acc.iter().zip(out.iter_mut()) {
        for (dv, r) in row.iter().enumerate() {
            // SAFETY: `o` holds NR = 32 floats; columns 8(v0 + dv).. take 8.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * (v0 + dv)), *r) };
        }
    }
}

/// All R (5..=MR) rows of the block times columns 8v..8v+8 of the panel, into those columns of
/// `out`: the unit's eight quad vectors are unpacked once, then each row takes its products and
/// float step in turn (as `avx512int8::kern_rows`). The integer sums and float steps are
/// `kern`'s, in its order, so the bits are the same.
///
/// # Safety
/// As `kern`, with `rows` = R.
#[inline(always)]
unsafe fn kern_rows<const R: usize, const K: usize, const VNNI: bool>(
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    v: usize,
    out: &mut [[f32; NR]],
    mut ahead: NextPanel,
) {
    let Shape { format: f, quants, zero: zero_point, record, unit_bytes: ub, per_block } =
        const { Shape::of(K) };
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for u in 0..k / UNIT {
        ahead.step();
        // SAFETY: as in `kern`.
        unsafe {
            let rec = s.add(u / per_block * record);
            let unit = q.add(u * ub);
            if v == 0 {
                prefetch_ahead(unit, ub);
            }
            // Quad j of the unit (k 4j..4j+4) for the 8 columns, as `kern` unpacks it.
            let w: [__m256i; 8] = match quants {
                Quants::Bytes => std::array::from_fn(|quad| load(unit.add(quad * 4 * NR), v)),
                Quants::Nibbles | Quants::Nibbles5 => {
                    let hb = (quants == Quants::Nibbles5).then(|| load(unit.add(4 * 4 * NR), v));
                    let mut w = [_mm256_setzero_si256(); 8];
                    for g in 0..4 {
                        (w[2 * g], w[2 * g + 1]) = nibble_quads(unit, g, v, hb);
                    }
                    w
                }
                Quants::Six | Quants::Two | Quants::Three => [
                    quad_weights::<0>(quants, unit, 0, v),
                    quad_weights::<1>(quants, unit, 0, v),
                    quad_weights::<2>(quants, unit, 0, v),
                    quad_weights::<3>(quants, unit, 0, v),
                    quad_weights::<0>(quants, unit, 1, v),
                    quad_weights::<1>(quants, unit, 1, v),
                    quad_weights::<2>(quants, unit, 1, v),
                    quad_weights::<3>(quants, unit, 1, v),
                ],
            };
            let halved = matches!(quants, Quants::Six | Quants::Two | Quants::Three);
            let sub = if halved { 2 * (u % per_block) } else { u % per_block };
            let (sa0, so0) = scale_offset8(&f, rec, sub, v);
            let (sa1, so1) = if halved { scale_offset8(&f, rec, sub + 1, v) } else { (sa0, so0) };
            for (i, acc) in acc.iter_mut().enumerate() {
                let xr = a.add((u * R + i) * XU);
                let xb = |e: usize| _mm256_set1_epi32(*xr.add(e) as i32);
                let pair = |j: usize| {
                    _mm256_add_epi16(
                        _mm256_maddubs_epi16(w[j], xb(j)),
                        _mm256_maddubs_epi16(w[j + 1], xb(j + 1)),
                    )
                };
                // With VNNI, the unit's i32 sums over quads `range`, the even and odd quads in
                // two chains: one would wait on `vpdpbusd`'s latency at every quad.
                let quads = |range: std::ops::Range<usize>| {
                    let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for j in range.step_by(2) {
                        even = dot_add::<VNNI>(even, w[j], xb(j));
                        odd = dot_add::<VNNI>(odd, w[j + 1], xb(j + 1));
                    }
                    _mm256_add_epi32(even, odd)
                };
                let t = match quants {
                    Quants::Bytes | Quants::Nibbles | Quants::Nibbles5 => {
                        let r = match quants {
                            _ if VNNI => quads(0..8),
                            Quants::Bytes => {
                                let mut r = _mm256_setzero_si256();
                                for (quad, w) in w.iter().enumerate() {
                                    r = _mm256_add_epi32(r, dot_offset(*w, xb(quad)));
                                }
                                r
                            }
                            // i16 over the whole unit (see `kern`).
                            Quants::Nibbles => {
                                let s = _mm256_add_epi16(
                                    _mm256_add_epi16(pair(0), pair(2)),
                                    _mm256_add_epi16(pair(4), pair(6)),
                                );
                                _mm256_madd_epi16(s, ones)
                            }
                            // i16 over half a unit.
                            _ => _mm256_add_epi32(
                                _mm256_madd_epi16(_mm256_add_epi16(pair(0), pair(2)), ones),
                                _mm256_madd_epi16(_mm256_add_epi16(pair(4), pair(6)), ones),
                            ),
                        };
                        let sum = *xr.add(9) as i32 + *xr.add(10) as i32;
                        match zero_point {
                            Some(z) if VNNI || quants != Quants::Bytes => _mm256_mul_ps(
                                _mm256_cvtepi32_ps(_mm256_sub_epi32(r, _mm256_set1_epi32(z * sum))),
                                sa0,
                            ),
                            Some(_) => _mm256_mul_ps(_mm256_cvtepi32_ps(r), sa0),
                            None => _mm256_fmadd_ps(
                                so0,
                                _mm256_set1_ps(sum as f32),
                                _mm256_mul_ps(_mm256_cvtepi32_ps(r), sa0),
                            ),
                        }
                    }
                    Quants::Six | Quants::Two | Quants::Three => {
                        let half = |h: usize| {
                            if VNNI {
                                return quads(4 * h..4 * h + 4);
                            }
                            _mm256_add_epi32(
                                _mm256_madd_epi16(pair(4 * h), ones),
                                _mm256_madd_epi16(pair(4 * h + 2), ones),
                            )
                        };
                        let (r0, r1) = (half(0), half(1));
                        let (s0, s1) = (*xr.add(9) as i32, *xr.add(10) as i32);
                        match zero_point {
                            Some(z) => {
                                let j = |r: __m256i, s: i32| {
                                    _mm256_cvtepi32_ps(_mm256_sub_epi32(
                                        r,
                                        _mm256_set1_epi32(z * s),
                                    ))
                                };
                                _mm256_fmadd_ps(j(r1, s1), sa1, _mm256_mul_ps(j(r0, s0), sa0))
                            }
                            None => {
                                let t = _mm256_fmadd_ps(
                                    so0,
                                    _mm256_set1_ps(s0 as f32),
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(r0), sa0),
                                );
                                let t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r1), sa1, t);
                                _mm256_fmadd_ps(so1, _mm256_set1_ps(s1 as f32), t)
                            }
                        }
                    }
                };
                *acc = _mm256_fmadd_ps(t, _mm256_set1_ps(f32::from_bits(*xr.add(8))), *acc);
            }
        }
    }
    for (r, o) in acc.iter().zip(out.iter_mut()) {
        // SAFETY: `o` holds NR = 32 floats; columns 8v.. take 8.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * v), *r) };
    }
}

/// `int8::pack_unit_rows` (see `avx512int8::pack_unit_rows`).
///
/// # Safety
/// AVX2; 32 readable floats at `x + i·stride` for each of the `dst.len() / XU` rows.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_unit_rows(x: *const f32, stride: usize, dst: &mut [u32]) {
    for (i, dst) in dst.chunks_exact_mut(XU).enumerate() {
        // SAFETY: the caller guarantees 32 floats at this row's x.
        let x = unsafe { x.add(i * stride) };
        // SAFETY: as above.
        let v: [__m256; 4] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(x.add(8 * j)) });
        let abs = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(i32::MAX));
        let m = _mm256_max_epu32(
            _mm256_max_epu32(abs(v[0]), abs(v[1])),
            _mm256_max_epu32(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
        let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
        let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
        let (d, id) = scale_of(f32::from_bits(_mm_cvtsi128_si32(m) as u32));
        if !d.is_finite() {
            // SAFETY: as above.
            pack_unit(unsafe { std::slice::from_raw_parts(x, UNIT) }, dst);
            continue;
        }
        let q = v.map(|v| {
            let r = _mm256_mul_ps(v, _mm256_set1_ps(id));
            let t = _mm256_cvttps_epi32(r);
            let frac = _mm256_sub_ps(r, _mm256_cvtepi32_ps(t));
            // Comparison masks are -1 where true.
            let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5)));
            let down = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(frac, _mm256_set1_ps(-0.5)));
            let q = _mm256_add_epi32(_mm256_sub_epi32(t, up), down);
            _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127))
        });
        let sum = |v: __m256i| {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
        };
        // Packing interleaves 4-byte groups across the two 128-bit lanes; the permute restores
        // k order: 32 bytes, the eight quads as little-endian u32s.
        let bytes =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: dst holds XU u32s, the first eight the quads.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), bytes) };
        dst[8] = d.to_bits();
        dst[9] = sum(_mm256_add_epi32(q[0], q[1])) as u32;
        dst[10] = sum(_mm256_add_epi32(q[2], q[3])) as u32;
    }
}
