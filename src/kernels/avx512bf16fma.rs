//! AVX-512F kernel for bf16 weights by FMAs (the emulation of `vdpbf16ps`, see `bf16.rs`), for
//! row blocks of more than three rows on the CPUs where two FMA ports outrun `vdpbf16ps`: on
//! Intel's cores it does 32 multiply-adds an issue but issues well under once a cycle (an
//! Emerald Rapids Xeon ran a 576×576 product at m = 2048 at 170 GFLOP/s with it, 270 with f32
//! FMAs), where AMD's Zen 4 and 5 run it at twice the FMAs' rate. Each k-pair row of a panel is
//! loaded as u32 pairs and widened in registers, exactly, as `avx2bf16` does: the odd (high)
//! halves by masking off the low 16 bits, the even (low) ones by shifting them up; with 32
//! registers one widening serves all MR rows. x comes widened already (`bf16::EmuPath`),
//! `[2kp+1][rows]` f32.

use std::arch::x86_64::*;

use super::avx512::finish;
use super::{prefetch_panel_ahead, NR};

/// See `bf16::fast`; `rows` (1..=MR) rows of widened x times one bf16 panel (`w`: [kp][NR]).
///
/// # Safety
/// The CPU must support AVX-512F, no FMA of the product may come out tiny (the caller's
/// exponent check), and `c` must be valid for writes of `rows` rows of `cols` floats at stride
/// `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= 2 * kp * rows
            && w.len() >= kp * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe {
        let (a, w) = (a.as_ptr(), w.as_ptr());
        by_rows!(rows, kern(kp, a, w, bias, c, ldc, cols))
    }
}

/// R rows × one panel; `a` is the block's `[2kp+1][R]` widened x.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kern<const R: usize>(
    kp: usize,
    a: *const f32,
    w: *const u32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    for p in 0..kp {
        // SAFETY: `block` checked a has 2kp*R floats and w kp*NR u32s.
        unsafe {
            let row = w.add(p * NR);
            prefetch_panel_ahead(row);
            let (xo, xe) = (a.add((2 * p + 1) * R), a.add(2 * p * R));
            let (p0, p1) = (_mm512_loadu_si512(row.cast()), _mm512_loadu_si512(row.add(16).cast()));
            let odd = [
                _mm512_castsi512_ps(_mm512_and_si512(p0, high)),
                _mm512_castsi512_ps(_mm512_and_si512(p1, high)),
            ];
            let even = [
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(p0)),
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(p1)),
            ];
            for (i, acc) in acc.iter_mut().enumerate() {
                // The pair's odd product first, then its even one: `vdpbf16ps`'s order.
                let (o, e) = (_mm512_set1_ps(*xo.add(i)), _mm512_set1_ps(*xe.add(i)));
                for v in 0..2 {
                    acc[v] = _mm512_fmadd_ps(e, even[v], _mm512_fmadd_ps(o, odd[v], acc[v]));
                }
            }
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
