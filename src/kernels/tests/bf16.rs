//! bf16 weights: the emulation against `vdpbf16ps` itself, and every kernel family against the
//! definition (a chain of `dp_pair` steps) and so against each other, bit for bit.

use super::*;
use crate::kernels::bf16::{dp_pair, Bf16Kernel, SAFE_EXPONENT_SUM};

/// f32 bit patterns where rounding to bf16 is delicate: ties both ways, just below a tie, the
/// largest finite value (rounds to infinity), infinities, zeros, values below the normal range
/// and around its edge. (The x86 tests' inputs.)
#[cfg(target_arch = "x86_64")]
const ROUNDING_CASES: [u32; 16] = [
    0x3f80_8000,
    0x3f81_8000,
    0xbf81_8000,
    0x3f80_7fff,
    0x7f7f_ffff,
    0x7f80_0000,
    0xff80_0000,
    0x0000_0000,
    0x8000_0000,
    0x007f_ffff,
    0x007f_8000,
    0x8000_0001,
    0x0080_0000,
    0x0080_8000,
    0x0081_8000,
    0x0000_8000,
];

/// `n` xorshift32 bit patterns from `seed` (every exponent, NaNs among them).
#[cfg(target_arch = "x86_64")]
fn random_bits(seed: u32, n: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        })
        .collect()
}

/// Values rounded to bf16 and widened back: what the bf16 kernels multiply.
fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
}

/// Values `2p` and `2p+1` of `v` (zero past its end) as a bf16 pair, `2p` in the low half.
fn pair(v: &[f32], p: usize) -> u32 {
    to_bf16(v[2 * p]) as u32 | (v.get(2 * p + 1).map_or(0, |&h| to_bf16(h)) as u32) << 16
}

/// The product as defined (module doc of `kernels`): per element a chain of `dp_pair` steps over
/// the bf16 pairs from 0, then `+ bias`. Output bits.
fn definition(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let (xr, wr) = (&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
            let acc =
                (0..k.div_ceil(2)).fold(0f32, |acc, p| dp_pair(acc, pair(xr, p), pair(wr, p)));
            out.push(bias.map_or(acc, |b| acc + b[j]).to_bits());
        }
    }
    out
}

fn run(pm: &PackedMatrix, kernel: Kernel, x: &[f32], m: usize) -> Vec<u32> {
    let mut out = vec![f32::NAN; m * pm.n()];
    pm.matmul_with(kernel, x, m, &mut out);
    bits(&out)
}

#[test]
fn to_bf16_rounds_to_nearest_even() {
    let cases: &[(u32, u16)] = &[
        (0x3f80_0000, 0x3f80), // 1.0
        (0x3f80_8000, 0x3f80), // halfway, even below: down
        (0x3f81_8000, 0x3f82), // halfway, odd below: up
        (0x3f80_8001, 0x3f81), // just above halfway
        (0x3f80_7fff, 0x3f80), // just below halfway
        (0xbf81_8000, 0xbf82), // negative halfway, odd: away from zero
        (0x7f7f_ffff, 0x7f80), // f32::MAX rounds to inf
        (0x7f80_0000, 0x7f80), // inf
        (0xff80_0000, 0xff80), // -inf
        (0x0000_0000, 0x0000),
        (0x8000_0000, 0x8000),
        (0x007f_ffff, 0x0000), // denormal: flushed
        (0x8000_0001, 0x8000), // negative denormal: -0
        (0x0080_0000, 0x0080), // smallest normal
    ];
    for &(f, want) in cases {
        assert_eq!(to_bf16(f32::from_bits(f)), want, "{f:#010x}");
    }
    let nan = to_bf16(f32::from_bits(0x7f80_0001));
    assert!(f32::from_bits((nan as u32) << 16).is_nan(), "signalling NaN stays NaN: {nan:#06x}");
}

/// The scalar conversion used to pack x gives the bits of the hardware's `vcvtne2ps2bf16`.
#[cfg(target_arch = "x86_64")]
#[test]
fn to_bf16_matches_hardware() {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512bf16,avx512f")]
    fn hw(v: &[f32; 32]) -> [u16; 32] {
        // SAFETY: 16 floats read from each half of a 32-float array; the result is 32 bf16
        // (u16) values, the first 16 from the second operand.
        unsafe {
            let r =
                _mm512_cvtne2ps_pbh(_mm512_loadu_ps(v[16..].as_ptr()), _mm512_loadu_ps(v.as_ptr()));
            std::mem::transmute::<__m512bh, [u16; 32]>(r)
        }
    }
    if !std::arch::is_x86_feature_detected!("avx512bf16") {
        eprintln!("skipping bf16 test: this CPU has no AVX-512 BF16");
        return;
    }
    let mut vals: Vec<f32> = rand_vec(41, 32 * 200);
    vals.extend(ROUNDING_CASES.iter().map(|&b| f32::from_bits(b)));
    // Random bit patterns too (every exponent), NaNs excluded: their payload is not specified.
    vals.extend(random_bits(0x1234_5678, 32 * 100).into_iter().map(f32::from_bits));
    vals.retain(|v| !v.is_nan());
    vals.truncate(vals.len() / 32 * 32);
    for chunk in vals.chunks_exact(32) {
        let arr: [f32; 32] = chunk.try_into().unwrap();
        // SAFETY: avx512bf16 (and so avx512f) detected above.
        let got = unsafe { hw(&arr) };
        for (i, &v) in arr.iter().enumerate() {
            assert_eq!(to_bf16(v), got[i], "{:#010x}", v.to_bits());
        }
    }
}

/// `vdpbf16ps` results measured on a Sapphire Rapids class CPU, (acc, x, w) → result bits, that
/// pin down the emulation on every CPU: each is what only the right reading gives.
#[test]
fn dp_pair_reproduces_measured_vdpbf16ps_results() {
    let cases: &[(u32, u32, u32, u32, &str)] = &[
        // 1·2^-24 is lost against 4.9e15, then the even product cancels it: the odd one is first
        // (even first leaves 2^-24).
        (0x598f_8400, 0x3f80_735c, 0x3380_a5a7, 0x0000_0000, "odd product first"),
        (0xbfa0_8c00, 0xb49f_fb09, 0xc2be_8416, 0x37ec_0000, "odd product first"),
        // Two roundings, not one of the whole sum.
        (0x4500_616d, 0x4d77_cd77, 0x38ef_38ef, 0x4500_6170, "each product rounded in"),
        // -2^-126 + 2^-150 rounds (24 bits, unbounded exponent) to below 2^-126: flushed, though
        // IEEE's denormal rounding would give -2^-126.
        (0x8080_0000, 0x0000_1a00, 0x0000_1a00, 0x8000_0000, "tininess after rounding"),
        (0x0080_0000, 0x0000_1a00, 0x0000_9a00, 0x0000_0000, "tininess after rounding"),
        // 2^-126 - 2^-151 is a tie that goes to 2^-126 (even), and 2^-126 - 2^-152 rounds to it.
        (0x0080_0000, 0x0000_1980, 0x0000_9a00, 0x0080_0000, "tie to even at 2^-126"),
        (0x0080_0000, 0x0000_1980, 0x0000_9980, 0x0080_0000, "rounds up to 2^-126"),
        // A denormal accumulator is read as zero.
        (0x804b_d39e, 0x229f_9fdc, 0x2003_2086, 0x031b_8780, "denormal input read as zero"),
        // The first FMA's tiny result is flushed before the second.
        (0x807b_3ca9, 0x9e48_1e48, 0x9fbb_9fbb, 0x8000_0000, "intermediate flushed"),
    ];
    for &(acc, x, w, want, why) in cases {
        let got = dp_pair(f32::from_bits(acc), x, w).to_bits();
        assert_eq!(got, want, "{why}: acc={acc:#010x} x={x:#010x} w={w:#010x} gave {got:#010x}");
    }
}

/// xorshift64 for bit patterns.
#[cfg(target_arch = "x86_64")]
struct Bits(u64);

#[cfg(target_arch = "x86_64")]
impl Bits {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A bf16 value from one of several exponent ranges: any (inf, NaN and denormals too),
    /// moderate, tiny, huge, and where products cross f32's smallest normal.
    fn bf16(&mut self, mode: u64) -> u32 {
        let v = self.next();
        let exp = match mode % 5 {
            0 => (v >> 8) & 0xff,
            1 => 117 + (v >> 8) % 20,
            2 => (v >> 8) % 9,
            3 => 254 - (v >> 8) % 8,
            _ => 55 + (v >> 8) % 24,
        };
        ((v & 1) << 15 | exp << 7 | (v >> 1) & 0x7f) as u32
    }

    fn acc(&mut self, mode: u64) -> f32 {
        let v = self.next();
        let b = v as u32;
        match mode % 5 {
            0 => 0.0,
            1 => f32::from_bits(b),
            2 => f32::from_bits(b & 0x807f_ffff | (((v >> 32) % 6) as u32) << 23),
            3 => ((v % 2000) as f32 - 1000.0) / 7.0,
            _ => f32::from_bits(b & 0x80ff_ffff | (((v >> 40) % 40 + 100) as u32) << 23),
        }
    }
}

/// The emulation against the instruction, lane by lane, over every exponent range, denormals,
/// infinities and NaNs, forced cancellations and sums next to 2^-126 (NaN results compare as
/// NaN: their payloads are not specified).
#[cfg(target_arch = "x86_64")]
#[test]
fn dp_pair_matches_vdpbf16ps() {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512bf16,avx512f")]
    fn hw(acc: &[f32; 16], x: &[u32; 16], w: &[u32; 16]) -> [f32; 16] {
        // SAFETY: 16 lanes read from and written to 64-byte arrays; the `__m512i` → `__m512bh`
        // transmutes are bit casts between vectors of one size.
        unsafe {
            let (xv, wv) =
                (_mm512_loadu_si512(x.as_ptr().cast()), _mm512_loadu_si512(w.as_ptr().cast()));
            let r = _mm512_dpbf16_ps(
                _mm512_loadu_ps(acc.as_ptr()),
                std::mem::transmute::<__m512i, __m512bh>(xv),
                std::mem::transmute::<__m512i, __m512bh>(wv),
            );
            std::mem::transmute::<__m512, [f32; 16]>(r)
        }
    }
    if !isa::cpu_has_avx512_bf16() {
        eprintln!("skipping: this CPU has no AVX-512 BF16 to compare with");
        return;
    }
    let mut g = Bits(0x9e37_79b9_7f4a_7c15);
    let (mut acc, mut x, mut w) = ([0f32; 16], [0u32; 16], [0u32; 16]);
    for it in 0..100_000u64 {
        for l in 0..16 {
            let mode = it + l as u64;
            acc[l] = g.acc(it / 5 + l as u64);
            x[l] = g.bf16(mode) | g.bf16(mode / 2) << 16;
            w[l] = g.bf16(mode) | g.bf16(mode / 3) << 16;
            let (xe, we) = (x[l] & 0xffff, w[l] & 0xffff);
            let even = from_bf16(xe as u16) * from_bf16(we as u16);
            match (it % 3, l % 4) {
                (0, 0) => (x[l], w[l]) = (xe | (xe ^ 0x8000) << 16, we | we << 16),
                (0, 1) => acc[l] = -even,
                (0, 2) => acc[l] = -even * (1.0 + f32::EPSILON),
                (1, _) => {
                    // Accumulators within a few thousand ulps of ±2^-126 and products of the
                    // size that moves them across it.
                    let v = g.next();
                    acc[l] =
                        f32::from_bits((v as u32 & 0x8000_0fff) | (1 + (v >> 40) as u32 % 3) << 23);
                    let ex = 40 + (v >> 44) % 30;
                    let ew = (128 - ex) - (v >> 50) % 12;
                    x[l] = (x[l] & 0xffff_0000)
                        | ((v >> 20) & 0x8000 | ex << 7 | (v >> 33) & 0x7f) as u32;
                    w[l] = (w[l] & 0xffff_0000) | (ew << 7 | (v >> 27) & 0x7f) as u32;
                }
                _ => {}
            }
        }
        // SAFETY: AVX-512 BF16 and AVX-512F detected above.
        let got = unsafe { hw(&acc, &x, &w) };
        for l in 0..16 {
            let want = dp_pair(acc[l], x[l], w[l]);
            assert!(
                got[l].to_bits() == want.to_bits() || (got[l].is_nan() && want.is_nan()),
                "acc={:#010x} x={:#010x} w={:#010x}: vdpbf16ps {:#010x}, emulation {:#010x}",
                acc[l].to_bits(),
                x[l],
                w[l],
                got[l].to_bits(),
                want.to_bits()
            );
        }
    }
}

#[test]
fn the_choice_of_bf16_kernel_follows_the_cpu_and_the_rows() {
    for (bf16, fast, m) in [(false, false, 1), (true, true, 40), (true, false, 3)] {
        assert_eq!(Bf16Kernel::for_family(Kernel::Scalar, bf16, fast, m), Bf16Kernel::Scalar);
    }
    #[cfg(target_arch = "x86_64")]
    if Kernel::Avx2.supported() {
        let avx512 = |bf16, fast, m| Bf16Kernel::for_family(Kernel::Avx512, bf16, fast, m);
        for (bf16, fast) in [(false, false), (true, false), (true, true)] {
            assert_eq!(Bf16Kernel::for_family(Kernel::Avx2, bf16, fast, 40), Bf16Kernel::Avx2);
        }
        // Without the instruction (Skylake-X to Ice Lake): the emulation, in zmm for many rows.
        assert_eq!(avx512(false, false, 3), Bf16Kernel::Avx2);
        assert_eq!(avx512(false, false, 4), Bf16Kernel::Avx512);
        // Where it outruns the FMAs (AMD): always.
        assert_eq!(avx512(true, true, 1), Bf16Kernel::Avx512Bf16);
        assert_eq!(avx512(true, true, 2048), Bf16Kernel::Avx512Bf16);
        // Where it does not (Intel): the wide kernels for few rows, the FMAs for more.
        assert_eq!(avx512(true, false, 3), Bf16Kernel::Avx512Bf16);
        assert_eq!(avx512(true, false, 4), Bf16Kernel::Avx512);
    }
}

/// Every bf16 kernel this CPU runs, whichever the families would choose for the rows.
fn bf16_kernels() -> Vec<Bf16Kernel> {
    Bf16Kernel::ALL.iter().copied().filter(|k| k.supported()).collect()
}

fn run_bf16(pm: &PackedMatrix, bk: Bf16Kernel, x: &[f32], m: usize) -> Vec<u32> {
    let mut out = vec![f32::NAN; m * pm.n()];
    pm.matmul_bf16_with(bk, x, m, &mut out);
    bits(&out)
}

/// Every family (on AVX-512 BF16 CPUs `vdpbf16ps` itself) gives the definition's bits: the
/// same bf16 results on every CPU. Shapes cover odd k, panel tails, and m on every kernel
/// (1..=3: `vdpbf16ps`'s wide kernels; 4..=12 one block, on AVX2 in row groups of 1 to 4;
/// more several).
#[test]
fn bf16_families_give_the_definitions_bits() {
    for &(n, k) in &[(33, 577), (100, 64), (7, 31), (1, 1), (130, 40), (64, 2)] {
        let w = rand_vec(201 + k as u32, n * k);
        let b = rand_vec(202, n);
        for bias in [None, Some(b.as_slice())] {
            let pm = PackedMatrix::pack_bf16(&w, n, k, bias);
            for m in [1, 2, 3, 4, 5, 8, 11, 12, 13, 40] {
                let x = rand_vec(203 + m as u32, m * k);
                let want = definition(&x, &w, bias, m, n, k);
                for kernel in kernels() {
                    assert_eq!(
                        run(&pm, kernel, &x, m),
                        want,
                        "{kernel:?} n={n} k={k} m={m} bias={}",
                        bias.is_some()
                    );
                }
                for bk in bf16_kernels() {
                    assert_eq!(
                        run_bf16(&pm, bk, &x, m),
                        want,
                        "{bk:?} n={n} k={k} m={m} bias={}",
                        bias.is_some()
                    );
                }
            }
        }
    }
}

/// Values whose products and partial sums fall around 2^-126, where `vdpbf16ps` flushes: the
/// blocks run the exact kernel, and every family still gives the definition's bits, which a
/// plain FMA chain (no flushing) would not.
#[test]
fn bf16_families_flush_tiny_sums_as_vdpbf16ps() {
    let (n, k) = (40, 64);
    // 8 rows: one block (on AVX2 `halves`); 13: two (on AVX2 the slices).
    for m in [8, 13] {
        let scale = |v: Vec<f32>, s: f32| -> Vec<f32> { v.into_iter().map(|x| x * s).collect() };
        let w = scale(rand_vec(301, n * k), 2f32.powi(-20));
        let x = scale(rand_vec(302, m * k), 2f32.powi(-100));
        let (wr, xr) = (bf16_round(&w), bf16_round(&x));
        let min_exp = |v: &[f32]| {
            v.iter().filter(|x| **x != 0.0).map(|x| (x.to_bits() >> 23) & 0xff).min().unwrap()
        };
        assert!(
            min_exp(&wr) + min_exp(&xr) < SAFE_EXPONENT_SUM,
            "the data must take the exact kernel"
        );
        let want = definition(&x, &w, None, m, n, k);
        let plain: Vec<u32> = (0..m * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                (0..k.div_ceil(2))
                    .fold(0f32, |acc, p| {
                        let (xp, wp) = (pair(&xr[i * k..], p), pair(&wr[j * k..], p));
                        let hi = |v: u32| f32::from_bits(v & 0xffff_0000);
                        let lo = |v: u32| f32::from_bits(v << 16);
                        lo(xp).mul_add(lo(wp), hi(xp).mul_add(hi(wp), acc))
                    })
                    .to_bits()
            })
            .collect();
        let flushed = plain.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert!(flushed > 50, "only {flushed} of {} results depend on the flushing", m * n);
        let pm = PackedMatrix::pack_bf16(&w, n, k, None);
        for kernel in kernels() {
            assert_eq!(run(&pm, kernel, &x, m), want, "{kernel:?} m={m}");
        }
        for bk in bf16_kernels() {
            assert_eq!(run_bf16(&pm, bk, &x, m), want, "{bk:?} m={m}");
        }
    }
}

#[test]
fn bf16_matches_f64_reference() {
    let (ns, ks, ms) = ([1, 31, 33, 960], [7, 64, 577], [1, 3, 8, 13, 32, 100]);
    for (ni, &n) in ns.iter().enumerate() {
        for (ki, &k) in ks.iter().enumerate() {
            let w = rand_vec(51 + (ni * 3 + ki) as u32, n * k);
            let b = rand_vec(61 + ni as u32, n);
            let wr = bf16_round(&w);
            for with_bias in [false, true] {
                let bias = with_bias.then_some(b.as_slice());
                let pm = PackedMatrix::pack_bf16(&w, n, k, bias);
                assert!(pm.is_bf16());
                for &m in &ms {
                    let x = rand_vec(71 + m as u32, m * k);
                    let xr = bf16_round(&x);
                    let want = reference(&xr, &wr, bias, m, n, k);
                    // The pair products are exact in f32; only the k accumulations round.
                    let tol = 2.0 * k as f64 * f32::EPSILON as f64;
                    for kernel in kernels() {
                        let mut out = vec![f32::NAN; m * n];
                        pm.matmul_with(kernel, &x, m, &mut out);
                        for i in 0..m {
                            for j in 0..n {
                                let mag: f64 = (0..k)
                                    .map(|kk| (xr[i * k + kk] as f64 * wr[j * k + kk] as f64).abs())
                                    .sum::<f64>()
                                    + bias.map_or(0.0, |b| b[j].abs() as f64);
                                let (got, exp) = (out[i * n + j] as f64, want[i * n + j]);
                                assert!(
                                    (got - exp).abs() <= tol * mag.max(1e-30),
                                    "bf16 {kernel:?} n={n} k={k} m={m} bias={with_bias} [{i},{j}]: {got} vs {exp}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Batch invariance per family, with every seventh row scaled into the range where sums get
/// tiny: blocks holding such a row take the exact kernel and the others the fast one, so a row
/// runs on either depending on its neighbours, with the same bits.
#[test]
fn bf16_bitwise_batch_invariant() {
    let (n, k, m) = (1000, 577, 300);
    let pm = PackedMatrix::pack_bf16(&rand_vec(3, n * k), n, k, Some(&rand_vec(4, n)));
    let mut x = rand_vec(5, m * k);
    for row in x.chunks_exact_mut(k).step_by(7) {
        row.iter_mut().for_each(|v| *v *= 2f32.powi(-118));
    }
    for kernel in kernels() {
        assert_batch_invariant(&format!("bf16 {kernel:?}"), &x, m, n, k, |x, m| {
            run(&pm, kernel, x, m)
        });
    }
    for bk in bf16_kernels() {
        assert_batch_invariant(&format!("bf16 {bk:?}"), &x, m, n, k, |x, m| {
            run_bf16(&pm, bk, x, m)
        });
    }
}

#[test]
fn bf16_row_bytes_and_flag() {
    for &(n, k) in &[(1, 7), (33, 5), (70, 577), (40, 64)] {
        let w = rand_vec(81, n * k);
        let pm = PackedMatrix::pack_bf16(&w, n, k, None);
        assert!(pm.is_bf16() && !pm.is_f16() && !PackedMatrix::pack(&w, n, k, None).is_bf16());
        assert_eq!((pm.n(), pm.k()), (n, k));
        let wr = bf16_round(&w);
        let mut out = vec![0.0; k];
        for r in 0..n {
            pm.row(r, &mut out);
            assert_eq!(bits(&out), bits(&wr[r * k..(r + 1) * k]), "bf16 row {r}");
        }
    }
    // Two panels of ceil(k/2) pairs, 4 bytes each, a byte per panel (its smallest exponent),
    // plus the f32 bias: about half of f32.
    for k in [10, 11] {
        let (n, w, b) = (33, rand_vec(1, 33 * k), rand_vec(2, 33));
        let pm = PackedMatrix::pack_bf16(&w, n, k, Some(&b));
        assert_eq!(pm.bytes(), (2 * NR * k.div_ceil(2) + 2 * NR) * 4 + 2, "k={k}");
        let f32_bytes = PackedMatrix::pack(&w, n, k, Some(&b)).bytes();
        assert!(
            pm.bytes() * 2 <= f32_bytes + 2 * NR * 4 + 2 * NR * 4 + 4,
            "{} vs f32 {f32_bytes}",
            pm.bytes()
        );
    }
    // k = 0: just the bias.
    let pm = PackedMatrix::pack_bf16(&[], 3, 0, Some(&[1.0, -2.0, 3.5]));
    for kernel in kernels() {
        let mut out = vec![0.0; 6];
        pm.matmul_with(kernel, &[], 2, &mut out);
        assert_eq!(out, [1.0, -2.0, 3.5, 1.0, -2.0, 3.5], "{kernel:?}");
    }
}

#[test]
fn bf16_equals_f32_on_exact_data() {
    // Small integers are exact in bf16 and every partial sum here is exact in f32, so any
    // summation order gives the same bits: a layout or pairing mistake would not.
    let ints = |seed: u32, len: usize| -> Vec<f32> {
        rand_vec(seed, len).iter().map(|v| (v * 8.0).round()).collect()
    };
    for &(n, k) in &[(1, 7), (33, 577), (960, 64), (70, 1), (100, 13)] {
        let w = ints(91, n * k);
        let b = ints(92, n);
        for bias in [None, Some(b.as_slice())] {
            let p16 = PackedMatrix::pack_bf16(&w, n, k, bias);
            let p32 = PackedMatrix::pack(&w, n, k, bias);
            for m in [1, 2, 3, 4, 13, 40] {
                let x = ints(93 + m as u32, m * k);
                let mut want = vec![0.0; m * n];
                p32.matmul(&x, m, &mut want);
                for kernel in kernels() {
                    assert_eq!(
                        run(&p16, kernel, &x, m),
                        bits(&want),
                        "{kernel:?} n={n} k={k} m={m} bias={}",
                        bias.is_some()
                    );
                }
            }
        }
    }
}

/// The AVX2 packing of x (rounding eight values at a time) gives the portable packing's bits:
/// rounding ties both ways, NaNs, infinities, values below the normal range, zeros, and random
/// bit patterns of every exponent, at an odd k (a tail past the vectors) and several rows.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_x_packing_is_the_portable_one() {
    use crate::kernels::bf16::{Bf16Weights, EmuPath};
    if !Kernel::Avx2.supported() {
        eprintln!("skipping: this CPU has no AVX2");
        return;
    }
    let k = 37;
    // First a row of zeros (no exponent: 255), a row of small normal values and zeros, its
    // smallest exponent in the vector part; then the rounding cases, NaNs and the largest
    // negative finite value, and random bit patterns.
    let mut vals = [0.0, f32::from_bits(0x0180_0000), -0.0, f32::from_bits(0x0100_0000)].repeat(10);
    vals.truncate(k);
    vals.splice(0..0, [-0.0; 37]);
    let extra = [0xff7f_ffffu32, 0x7f80_0001, 0xffc0_0000];
    vals.extend(ROUNDING_CASES.iter().chain(&extra).map(|&b| f32::from_bits(b)));
    vals.extend(random_bits(0x9e37_79b9, 2000).into_iter().map(f32::from_bits));
    let rows = vals.len() / k;
    let x = &vals[..rows * k];
    let w = Bf16Weights::zeroed(NR, k);
    let pack = |kernel| {
        let path = EmuPath::new(&w, k, kernel);
        let mut block = vec![0f32; path.depth() * rows];
        path.pack_block(x, k, &mut block, rows);
        bits(&block)
    };
    assert_eq!(pack(Bf16Kernel::Avx2), pack(Bf16Kernel::Scalar));
}
