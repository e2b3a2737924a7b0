//! CPython's `random.Random`, bit for bit, as far as lm-evaluation-harness's few-shot sampler
//! uses it: integer seeding, `getrandbits`, `_randbelow` and `sample`. Python's generator is
//! MT19937 (Modules/_randommodule.c); `sample` and `_randbelow` are Lib/random.py's.
//! Checked against CPython's output in fixtures/pyrandom (tools/pyrandom_goldens.py).

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `random.Random(seed)` for a non-negative integer seed.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    // 624 state words say nothing useful in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom").field("index", &self.index).finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.Random(seed)`: CPython seeds from the integer's 32-bit words, least significant
    /// first (`random_seed`), with one zero word for 0.
    pub fn new(seed: u64) -> Self {
        let (lo, hi) = (seed as u32, (seed >> 32) as u32);
        if hi == 0 {
            Self::from_key(&[lo])
        } else {
            Self::from_key(&[lo, hi])
        }
    }

    /// MT19937's `init_by_array`, as CPython runs it. `key` must not be empty.
    fn from_key(key: &[u32]) -> Self {
        let mut r = Self::from_u32(19_650_218);
        let mt = &mut r.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] =
                (mt[i] ^ prev.wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        // The most significant bit set: the state is never all zeros.
        mt[0] = 0x8000_0000;
        r
    }

    /// MT19937's `init_genrand`.
    fn from_u32(s: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = s;
        for i in 1..N {
            mt[i] =
                1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { mt, index: N }
    }

    /// MT19937's `genrand_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let mag = |y: u32| if y & 1 == 1 { MATRIX_A } else { 0 };
        let mt = &mut self.mt;
        for kk in 0..N {
            let y = (mt[kk] & UPPER_MASK) | (mt[(kk + 1) % N] & LOWER_MASK);
            mt[kk] = mt[(kk + M) % N] ^ (y >> 1) ^ mag(y);
        }
        self.index = 0;
    }

    /// `getrandbits(k)` as little-endian 32-bit words: one generator word per 32 bits, least
    /// significant first, the last one shifted down to the bits left (CPython's word order on
    /// little-endian machines, which is what every lm-eval run uses).
    pub fn getrandbits_words(&mut self, k: usize) -> Vec<u32> {
        let mut words = Vec::with_capacity(k.div_ceil(32));
        let mut left = k;
        while left > 0 {
            let r = self.next_u32();
            words.push(if left < 32 { r >> (32 - left) } else { r });
            left = left.saturating_sub(32);
        }
        words
    }

    /// `getrandbits(k)` for `k <= 64`.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        debug_assert!(k <= 64);
        match k {
            0 => 0,
            1..=32 => u64::from(self.next_u32() >> (32 - k)),
            _ => {
                let w = self.getrandbits_words(k as usize);
                u64::from(w[0]) | (u64::from(w[1]) << 32)
            }
        }
    }

    /// `_randbelow_with_getrandbits(n)`: uniform in `0..n` by rejection on `n.bit_length()`
    /// bits. `n` must be positive, as Python requires.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let k = u64::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: `k` distinct indices below `n`, in selection order. `None` when
    /// `k > n` (Python's "Sample larger than population").
    pub fn sample(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        if n <= sample_setsize(k) {
            // Python's list branch: a pool whose tail fills each vacancy.
            let mut pool: Vec<usize> = (0..n).collect();
            Some(
                (0..k)
                    .map(|i| {
                        let j = self.randbelow((n - i) as u64) as usize;
                        let picked = pool[j];
                        pool[j] = pool[n - i - 1];
                        picked
                    })
                    .collect(),
            )
        } else {
            // Python's set branch: redraw whatever was drawn before.
            let mut selected = std::collections::HashSet::with_capacity(k);
            Some(
                (0..k)
                    .map(|_| loop {
                        let j = self.randbelow(n as u64) as usize;
                        if selected.insert(j) {
                            break j;
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// `sample`'s branch point: `21 + 4 ** ceil(log(3k, 4))` when `k > 5`, else 21. The power is
/// found with integers; 3k is never a power of 4, so the float logarithm Python takes cannot
/// land on the other side of an integer.
fn sample_setsize(k: usize) -> usize {
    if k <= 5 {
        return 21;
    }
    let target = k.saturating_mul(3);
    let mut power: usize = 1;
    while power < target {
        power = power.saturating_mul(4);
    }
    21usize.saturating_add(power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn goldens() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pyrandom/goldens.json");
        serde_json::from_str(
            &std::fs::read_to_string(path).expect("fixtures/pyrandom/goldens.json"),
        )
        .expect("JSON")
    }

    fn hex(v: &Value) -> u128 {
        let s = v.as_str().expect("hex string");
        u128::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
    }

    fn seed(v: &Value) -> u64 {
        u64::try_from(hex(v)).expect("seed fits u64")
    }

    #[test]
    fn getrandbits_matches_cpython() {
        for case in goldens()["getrandbits"].as_array().unwrap() {
            let mut r = PyRandom::new(seed(&case["seed"]));
            for (k, want) in
                case["bits"].as_array().unwrap().iter().zip(case["values"].as_array().unwrap())
            {
                let k = k.as_u64().unwrap() as usize;
                let got = r
                    .getrandbits_words(k)
                    .iter()
                    .rev()
                    .fold(0u128, |acc, &w| (acc << 32) | u128::from(w));
                assert_eq!(got, hex(want), "seed {} getrandbits({k})", case["seed"]);
            }
        }
    }

    #[test]
    fn getrandbits_up_to_64_agrees_with_the_word_form() {
        let (mut a, mut b) = (PyRandom::new(99), PyRandom::new(99));
        for k in [0, 1, 17, 32, 33, 63, 64] {
            let words = b.getrandbits_words(k as usize);
            let want = words.iter().rev().fold(0u64, |acc, &w| (acc << 32) | u64::from(w));
            assert_eq!(a.getrandbits(k), want, "k={k}");
        }
    }

    #[test]
    fn randbelow_matches_cpython() {
        for case in goldens()["randbelow"].as_array().unwrap() {
            let mut r = PyRandom::new(seed(&case["seed"]));
            for (n, want) in
                case["n"].as_array().unwrap().iter().zip(case["values"].as_array().unwrap())
            {
                let n = u64::try_from(hex(n)).unwrap();
                assert_eq!(
                    u128::from(r.randbelow(n)),
                    hex(want),
                    "seed {} randbelow({n})",
                    case["seed"]
                );
            }
        }
    }

    #[test]
    fn consecutive_samples_match_cpython_in_both_branches() {
        for case in goldens()["sample"].as_array().unwrap() {
            let mut r = PyRandom::new(seed(&case["seed"]));
            for call in case["calls"].as_array().unwrap() {
                let (n, k) = (hex(&call["n"]) as usize, call["k"].as_u64().unwrap() as usize);
                let want: Vec<u128> = call["sample"].as_array().unwrap().iter().map(hex).collect();
                let got: Vec<u128> =
                    r.sample(n, k).unwrap().into_iter().map(|x| x as u128).collect();
                assert_eq!(got, want, "seed {} sample(range({n}), {k})", case["seed"]);
            }
        }
    }

    #[test]
    fn setsize_is_pythons() {
        // 21 + 4 ** ceil(log(3k, 4)), computed by Python for these k.
        let want = [
            (1, 21),
            (5, 21),
            (6, 85),
            (21, 85),
            (22, 277),
            (50, 277),
            (85, 277),
            (86, 1045),
            (87, 1045),
        ];
        for (k, s) in want {
            assert_eq!(sample_setsize(k), s, "k={k}");
        }
    }

    #[test]
    fn a_sample_larger_than_the_population_is_refused() {
        assert_eq!(PyRandom::new(1).sample(3, 4), None);
        assert_eq!(PyRandom::new(1).sample(0, 0), Some(vec![]));
    }
}
