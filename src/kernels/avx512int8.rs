//! AVX-512 VNNI kernels for int8 products (`int8.rs`): one `vpdpbusd` multiplies a 64-byte row
//! of a unit's quants (16 columns × one k-quad, unsigned) with a broadcast quad of xq (signed)
//! and adds the four products of each column into its i32 lane, exactly. Up to four rows run over
//! the whole panel with their sums live (`kern`); larger blocks unpack a unit once and stream
//! every row past it (`kern_rows`). The float steps per unit are `int8.rs`' own.

use std::arch::x86_64::*;

use super::avx2int8::prefetch_ahead;
use super::avx512quant::{halves, scale_offset};
use super::int8::{pack_unit, scale_of, Kind, Quants, Shape, UNIT, XU};
use super::{MR, NR};

/// `rows` (1..=MR) rows of packed x (`a`, `[depth][rows]`) times one panel (`q` its units, `s`
/// its scale records), before the bias.
///
/// # Safety
/// AVX-512F, AVX-512BW and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn block(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
) {
    let f = kind.format();
    assert!(
        rows <= MR
            && k.is_multiple_of(f.block)
            && a.len() >= k / UNIT * XU * rows
            && q.len() >= k / UNIT * kind.unit_bytes()
            && s.len() >= k / f.block * f.record()
    );
    let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
    let o = &mut out[..rows];
    // SAFETY (all arms): bounds asserted above; features from the caller.
    unsafe {
        match rows {
            1 => by_kind::<1>(kind, k, a, q, s, o),
            2 => by_kind::<2>(kind, k, a, q, s, o),
            3 => by_kind::<3>(kind, k, a, q, s, o),
            4 => by_kind::<4>(kind, k, a, q, s, o),
            r => {
                for h in 0..2 {
                    match r {
                        5 => by_kind_rows::<5>(kind, k, a, q, s, h, o),
                        6 => by_kind_rows::<6>(kind, k, a, q, s, h, o),
                        7 => by_kind_rows::<7>(kind, k, a, q, s, h, o),
                        8 => by_kind_rows::<8>(kind, k, a, q, s, h, o),
                        9 => by_kind_rows::<9>(kind, k, a, q, s, h, o),
                        10 => by_kind_rows::<10>(kind, k, a, q, s, h, o),
                        11 => by_kind_rows::<11>(kind, k, a, q, s, h, o),
                        _ => by_kind_rows::<12>(kind, k, a, q, s, h, o),
                    }
                }
            }
        }
    }
}

/// `kern_rows` for `kind`.
///
/// # Safety
/// As `kern_rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn by_kind_rows<const R: usize>(
    kind: Kind,
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    h: usize,
    o: &mut [[f32; NR]],
) {
    // SAFETY: forwarded from the caller.
    unsafe { by_int8_kind!(kind, K => kern_rows::<R, K>(k, a, q, s, h, o)) }
}

/// `kern` for `kind`.
///
/// # Safety
/// As `kern`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn by_kind<const R: usize>(
    kind: Kind,
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    o: &mut [[f32; NR]],
) {
    // SAFETY: forwarded from the caller.
    unsafe { by_int8_kind!(kind, K => kern::<R, K>(k, a, q, s, o)) }
}

/// Bit t of each byte of `hb` moved to bit 4, the rest cleared (16-bit shifts: what crosses a
/// byte boundary lands outside bit 4).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn fifth_bit(hb: __m512i, t: usize) -> __m512i {
    let v = match t {
        0 => _mm512_slli_epi16(hb, 4),
        1 => _mm512_slli_epi16(hb, 3),
        2 => _mm512_slli_epi16(hb, 2),
        3 => _mm512_slli_epi16(hb, 1),
        4 => hb,
        5 => _mm512_srli_epi16(hb, 1),
        6 => _mm512_srli_epi16(hb, 2),
        _ => _mm512_srli_epi16(hb, 3),
    };
    _mm512_and_si512(v, _mm512_set1_epi8(0x10))
}

/// Quad T's q bytes (vectors h0..h0+V) in half `half` (16 k) of a unit of a type with halves
/// (Q6_K, Q2_K, Q3_K; see `int8.rs` for the layouts). The quad is a constant so that every
/// shift is one (16-bit shifts: what crosses a byte boundary is masked off).
///
/// # Safety
/// A whole unit at `unit`; AVX-512F and BW.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quad_weights<const V: usize, const T: usize>(
    quants: Quants,
    unit: *const u8,
    half: usize,
    h0: usize,
) -> [__m512i; V] {
    let mask = |v: __m512i, m: i8| _mm512_and_si512(v, _mm512_set1_epi8(m));
    // SAFETY: the groups read lie in the unit (see the layouts).
    unsafe {
        if quants == Quants::Six {
            let base = unit.add(half * 3 * 4 * NR);
            let (n, hb) =
                (load::<V>(base.add(T / 2 * 4 * NR), h0), load::<V>(base.add(8 * NR), h0));
            return std::array::from_fn(|v| {
                let nib = if T.is_multiple_of(2) { n[v] } else { _mm512_srli_epi16(n[v], 4) };
                // hb's bits 2T..2T+1 to bits 4..5.
                let top = match T {
                    0 => _mm512_slli_epi16(hb[v], 4),
                    1 => _mm512_slli_epi16(hb[v], 2),
                    2 => hb[v],
                    _ => _mm512_srli_epi16(hb[v], 2),
                };
                _mm512_or_si512(mask(nib, 0x0F), mask(top, 0x30))
            });
        }
        let g = load::<V>(unit.add(half * 4 * NR), h0);
        let hb = (quants == Quants::Three).then(|| load::<V>(unit.add(2 * 4 * NR), h0));
        std::array::from_fn(|v| {
            let two = match T {
                0 => g[v],
                1 => _mm512_srli_epi16(g[v], 2),
                2 => _mm512_srli_epi16(g[v], 4),
                _ => _mm512_srli_epi16(g[v], 6),
            };
            let two = mask(two, 3);
            match hb {
                // The third bit of quad 4·half + T to bit 2.
                Some(hb) => {
                    let hb = if half == 0 { hb[v] } else { _mm512_srli_epi16(hb[v], 4) };
                    let top = match T {
                        0 => _mm512_slli_epi16(hb, 2),
                        1 => _mm512_slli_epi16(hb, 1),
                        2 => hb,
                        _ => _mm512_srli_epi16(hb, 1),
                    };
                    _mm512_or_si512(two, mask(top, 4))
                }
                None => two,
            }
        })
    }
}

/// V 64-byte vectors of a unit row from vector h0 (columns 16·h0..).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load<const V: usize>(p: *const u8, h0: usize) -> [__m512i; V] {
    // SAFETY: the caller guarantees a 128-byte unit row at p, and h0 + V <= 2.
    std::array::from_fn(|j| unsafe { _mm512_loadu_si512(p.add(64 * (h0 + j)).cast()) })
}

/// All R (1..=4) rows of the block's packed x times the whole panel (both 16-column vectors,
/// two independent chains a row), into `out`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kern<const R: usize, const K: usize>(
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    out: &mut [[f32; NR]],
) {
    const V: usize = 2;
    let Shape { format: f, quants, zero: zero_point, record, unit_bytes: ub, per_block } =
        const { Shape::of(K) };
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for u in 0..k / UNIT {
        // SAFETY: `block` checked a holds XU·R values per unit, q a unit's bytes per unit and
        // s a record per block.
        unsafe {
            let x = |e: usize, i: usize| *a.add((u * R + i) * XU + e);
            let xb = |e: usize, i: usize| _mm512_set1_epi32(x(e, i) as i32);
            let rec = s.add(u / per_block * record);
            let unit = q.add(u * ub);
            prefetch_ahead(unit, ub);
            let dx = |i: usize| _mm512_set1_ps(f32::from_bits(x(8, i)));
            match quants {
                Quants::Bytes | Quants::Nibbles | Quants::Nibbles5 => {
                    let mut ia = [[_mm512_setzero_si512(); V]; R];
                    if quants == Quants::Bytes {
                        for quad in 0..8 {
                            let w = load::<V>(unit.add(quad * 4 * NR), 0);
                            for (i, r) in ia.iter_mut().enumerate() {
                                let xv = xb(quad, i);
                                for v in 0..V {
                                    r[v] = _mm512_dpbusd_epi32(r[v], w[v], xv);
                                }
                            }
                        }
                    } else {
                        let hb = (quants == Quants::Nibbles5)
                            .then(|| load::<V>(unit.add(4 * 4 * NR), 0));
                        for g in 0..4 {
                            let w = load::<V>(unit.add(g * 4 * NR), 0);
                            let mut lo: [__m512i; V] =
                                std::array::from_fn(|v| _mm512_and_si512(w[v], low));
                            let mut hi: [__m512i; V] = std::array::from_fn(|v| {
                                _mm512_and_si512(_mm512_srli_epi16(w[v], 4), low)
                            });
                            if let Some(hb) = hb {
                                for v in 0..V {
                                    lo[v] = _mm512_or_si512(lo[v], fifth_bit(hb[v], 2 * g));
                                    hi[v] = _mm512_or_si512(hi[v], fifth_bit(hb[v], 2 * g + 1));
                                }
                            }
                            for (i, r) in ia.iter_mut().enumerate() {
                                let (x0, x1) = (xb(2 * g, i), xb(2 * g + 1, i));
                                for v in 0..V {
                                    r[v] = _mm512_dpbusd_epi32(r[v], lo[v], x0);
                                    r[v] = _mm512_dpbusd_epi32(r[v], hi[v], x1);
                                }
                            }
                        }
                    }
                    // (Scales once the integer loop is done: fewer registers live in it.)
                    let d = [halves(rec), halves(rec.add(32))];
                    let e = if f.e {
                        [halves(rec.add(2 * NR)), halves(rec.add(2 * NR + 32))]
                    } else {
                        [_mm512_setzero_ps(); 2]
                    };
                    let (sa, so) = scale_offset(&f, rec, u % per_block, &d, &e);
                    for (i, r) in ia.iter().enumerate() {
                        let sum = x(9, i) as i32 + x(10, i) as i32;
                        for v in 0..V {
                            let t = match zero_point {
                                Some(z) => _mm512_mul_ps(
                                    _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                        r[v],
                                        _mm512_set1_epi32(z * sum),
                                    )),
                                    sa[v],
                                ),
                                None => _mm512_fmadd_ps(
                                    so[v],
                                    _mm512_set1_ps(sum as f32),
                                    _mm512_mul_ps(_mm512_cvtepi32_ps(r[v]), sa[v]),
                                ),
                            };
                            acc[i][v] = _mm512_fmadd_ps(t, dx(i), acc[i][v]);
                        }
                    }
                }
                Quants::Six | Quants::Two | Quants::Three => {
                    // Both halves' sums before any float step: no partial term stays live
                    // across the integer loop.
                    let mut ia = [[[_mm512_setzero_si512(); V]; R]; 2];
                    for (half, ia) in ia.iter_mut().enumerate() {
                        let mut quad_of = |quad: usize, w: [__m512i; V]| {
                            for (i, r) in ia.iter_mut().enumerate() {
                                let xv = xb(4 * half + quad, i);
                                for v in 0..V {
                                    r[v] = _mm512_dpbusd_epi32(r[v], w[v], xv);
                                }
                            }
                        };
                        quad_of(0, quad_weights::<V, 0>(quants, unit, half, 0));
                        quad_of(1, quad_weights::<V, 1>(quants, unit, half, 0));
                        quad_of(2, quad_weights::<V, 2>(quants, unit, half, 0));
                        quad_of(3, quad_weights::<V, 3>(quants, unit, half, 0));
                    }
                    let d = [halves(rec), halves(rec.add(32))];
                    let e = if f.e {
                        [halves(rec.add(2 * NR)), halves(rec.add(2 * NR + 32))]
                    } else {
                        [_mm512_setzero_ps(); 2]
                    };
                    let sub = 2 * (u % per_block);
                    let (sa0, so0) = scale_offset(&f, rec, sub, &d, &e);
                    let (sa1, so1) = scale_offset(&f, rec, sub + 1, &d, &e);
                    for i in 0..R {
                        let sums = [x(9, i) as i32, x(10, i) as i32];
                        for v in 0..V {
                            let (sa0, sa1) = (sa0[v], sa1[v]);
                            let t = match zero_point {
                                Some(z) => {
                                    let j = |h: usize| {
                                        _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                            ia[h][i][v],
                                            _mm512_set1_epi32(z * sums[h]),
                                        ))
                                    };
                                    _mm512_fmadd_ps(j(1), sa1, _mm512_mul_ps(j(0), sa0))
                                }
                                None => {
                                    let s = |h: usize| _mm512_set1_ps(sums[h] as f32);
                                    let t0 = _mm512_fmadd_ps(
                                        so0[v],
                                        s(0),
                                        _mm512_mul_ps(_mm512_cvtepi32_ps(ia[0][i][v]), sa0),
                                    );
                                    let t1 =
                                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1][i][v]), sa1, t0);
                                    _mm512_fmadd_ps(so1[v], s(1), t1)
                                }
                            };
                            acc[i][v] = _mm512_fmadd_ps(t, dx(i), acc[i][v]);
                        }
                    }
                }
            }
        }
    }
    for (row, o) in acc.iter().zip(out.iter_mut()) {
        for (v, r) in row.iter().enumerate() {
            // SAFETY: `o` holds NR = 32 floats; vector v covers 16 of them.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * v), *r) };
        }
    }
}

/// All R (5..=MR) rows of the block's packed x times the panel's vector `h` (16 columns), into
/// those columns of `out`: the unit's eight quad vectors are unpacked once into registers, then
/// each row takes its eight `vpdpbusd` and its float step in turn, so one unpacking serves
/// every row of the block and only that row's integer sum is live. The float steps are `kern`'s,
/// in its order, so the bits are the same as `kern`'s (and the other families').
///
/// # Safety
/// As `kern`, with `rows` = R.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kern_rows<const R: usize, const K: usize>(
    k: usize,
    a: *const u32,
    q: *const u8,
    s: *const u8,
    h: usize,
    out: &mut [[f32; NR]],
) {
    let Shape { format: f, quants, zero: zero_point, record, unit_bytes: ub, per_block } =
        const { Shape::of(K) };
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    for u in 0..k / UNIT {
        // SAFETY: as in `kern`: `block` checked the lengths of a, q and s.
        unsafe {
            let rec = s.add(u / per_block * record);
            let unit = q.add(u * ub);
            if h == 0 {
                prefetch_ahead(unit, ub);
            }
            // Quad j of the unit (k 4j..4j+4) for the 16 columns, as `kern` unpacks it.
            let w: [__m512i; 8] = match quants {
                Quants::Bytes => {
                    std::array::from_fn(|quad| load::<1>(unit.add(quad * 4 * NR), h)[0])
                }
                Quants::Nibbles | Quants::Nibbles5 => {
                    let hb =
                        (quants == Quants::Nibbles5).then(|| load::<1>(unit.add(4 * 4 * NR), h)[0]);
                    let mut w = [_mm512_setzero_si512(); 8];
                    for g in 0..4 {
                        let v = load::<1>(unit.add(g * 4 * NR), h)[0];
                        let mut lo = _mm512_and_si512(v, low);
                        let mut hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                        if let Some(hb) = hb {
                            lo = _mm512_or_si512(lo, fifth_bit(hb, 2 * g));
                            hi = _mm512_or_si512(hi, fifth_bit(hb, 2 * g + 1));
                        }
                        w[2 * g] = lo;
                        w[2 * g + 1] = hi;
                    }
                    w
                }
                Quants::Six | Quants::Two | Quants::Three => {
                    let half = |hf: usize| {
                        [
                            quad_weights::<1, 0>(quants, unit, hf, h)[0],
                            quad_weights::<1, 1>(quants, unit, hf, h)[0],
                            quad_weights::<1, 2>(quants, unit, hf, h)[0],
                            quad_weights::<1, 3>(quants, unit, hf, h)[0],
                        ]
                    };
                    let (w0, w1) = (half(0), half(1));
                    std::array::from_fn(|j| if j < 4 { w0[j] } else { w1[j - 4] })
                }
            };
            let d = [halves(rec), halves(rec.add(32))];
            let e = if f.e {
                [halves(rec.add(2 * NR)), halves(rec.add(2 * NR + 32))]
            } else {
                [_mm512_setzero_ps(); 2]
            };
            let halved = matches!(quants, Quants::Six | Quants::Two | Quants::Three);
            let sub = if halved { 2 * (u % per_block) } else { u % per_block };
            let (sa0, so0) = scale_offset(&f, rec, sub, &d, &e);
            let (sa0, so0) = (sa0[h], so0[h]);
            let (sa1, so1) = if halved {
                let (sa1, so1) = scale_offset(&f, rec, sub + 1, &d, &e);
                (sa1[h], so1[h])
            } else {
                (sa0, so0)
            };
            for (i, acc) in acc.iter_mut().enumerate() {
                let xr = a.add((u * R + i) * XU);
                let xb = |e: usize| _mm512_set1_epi32(*xr.add(e) as i32);
                let dx = _mm512_set1_ps(f32::from_bits(*xr.add(8)));
                let t = if halved {
                    let mut ia = [_mm512_setzero_si512(); 2];
                    for (hf, ia) in ia.iter_mut().enumerate() {
                        for quad in 0..4 {
                            *ia = _mm512_dpbusd_epi32(*ia, w[4 * hf + quad], xb(4 * hf + quad));
                        }
                    }
                    let sums = [*xr.add(9) as i32, *xr.add(10) as i32];
                    match zero_point {
                        Some(z) => {
                            let j = |hf: usize| {
                                _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                    ia[hf],
                                    _mm512_set1_epi32(z * sums[hf]),
                                ))
                            };
                            _mm512_fmadd_ps(j(1), sa1, _mm512_mul_ps(j(0), sa0))
                        }
                        None => {
                            let s = |hf: usize| _mm512_set1_ps(sums[hf] as f32);
                            let t0 = _mm512_fmadd_ps(
                                so0,
                                s(0),
                                _mm512_mul_ps(_mm512_cvtepi32_ps(ia[0]), sa0),
                            );
                            let t1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1]), sa1, t0);
                            _mm512_fmadd_ps(so1, s(1), t1)
                        }
                    }
                } else {
                    let mut ia = _mm512_setzero_si512();
                    for (quad, w) in w.iter().enumerate() {
                        ia = _mm512_dpbusd_epi32(ia, *w, xb(quad));
                    }
                    let sum = *xr.add(9) as i32 + *xr.add(10) as i32;
                    match zero_point {
                        Some(z) => _mm512_mul_ps(
                            _mm512_cvtepi32_ps(_mm512_sub_epi32(ia, _mm512_set1_epi32(z * sum))),
                            sa0,
                        ),
                        None => _mm512_fmadd_ps(
                            so0,
                            _mm512_set1_ps(sum as f32),
                            _mm512_mul_ps(_mm512_cvtepi32_ps(ia), sa0),
                        ),
                    }
                };
                *acc = _mm512_fmadd_ps(t, dx, *acc);
            }
        }
    }
    for (r, o) in acc.iter().zip(out.iter_mut()) {
        // SAFETY: `o` holds NR = 32 floats; vector h covers 16 of them.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * h), *r) };
    }
}

/// `int8::pack_unit_rows`: one unit (32 floats) of each row, row i's at `x + i·stride`, into
/// its [`XU`] packed values at `dst[i·XU..]`: the largest |x| from the bits with the sign
/// cleared (`int8::amax`), the scale from it (`int8::scale_of`), then `x·id` truncated, plus or
/// minus one where the exact fraction reaches ±0.5, clamped to ±127, and each half's sum. A row
/// whose block is not finite goes to the portable `int8::pack_unit`.
///
/// # Safety
/// AVX-512F and BW; 32 readable floats at `x + i·stride` for each of the `dst.len() / XU` rows.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pack_unit_rows(x: *const f32, stride: usize, dst: &mut [u32]) {
    for (i, dst) in dst.chunks_exact_mut(XU).enumerate() {
        // SAFETY: the caller guarantees 32 floats at this row's x.
        let (x, v) = unsafe {
            let x = x.add(i * stride);
            (x, [_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16))])
        };
        let abs = |v: __m512| _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MAX));
        let amax = _mm512_reduce_max_epu32(_mm512_max_epu32(abs(v[0]), abs(v[1])));
        let (d, id) = scale_of(f32::from_bits(amax));
        if !d.is_finite() {
            // SAFETY: as above.
            pack_unit(unsafe { std::slice::from_raw_parts(x, UNIT) }, dst);
            continue;
        }
        let mut sums = [0i32; 2];
        for (h, &v) in v.iter().enumerate() {
            let r = _mm512_mul_ps(v, _mm512_set1_ps(id));
            let t = _mm512_cvttps_epi32(r);
            let frac = _mm512_sub_ps(r, _mm512_cvtepi32_ps(t));
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
            let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(frac, _mm512_set1_ps(-0.5));
            let one = _mm512_set1_epi32(1);
            let rounded_up = _mm512_mask_add_epi32(t, up, t, one);
            let q = _mm512_mask_sub_epi32(rounded_up, down, rounded_up, one);
            let q = _mm512_min_epi32(
                _mm512_max_epi32(q, _mm512_set1_epi32(-127)),
                _mm512_set1_epi32(127),
            );
            sums[h] = _mm512_reduce_add_epi32(q);
            // Sixteen bytes, k order, are four quads (little-endian u32s).
            // SAFETY: dst holds XU u32s; quads 4h..4h+4 are 16 bytes.
            unsafe {
                _mm_storeu_si128(dst.as_mut_ptr().add(4 * h).cast(), _mm512_cvtepi32_epi8(q))
            };
        }
        dst[8] = d.to_bits();
        dst[9] = sums[0] as u32;
        dst[10] = sums[1] as u32;
    }
}
