//! A linear layer as the decoder holds it: layers stacked along their outputs (q/k/v,
//! gate/up) packed as one matrix, or, when a GGUF stores the parts in different types (Q4_K_M
//! files keep v in Q6_K on some layers and q/k in Q4_K), one matrix per part writing its own
//! columns of the output. Each output element is one part's product either way, so the bits do
//! not depend on which.

use crate::kernels::PackedMatrix;

pub(super) enum Linear {
    One(PackedMatrix),
    Parts(Vec<PackedMatrix>),
}

impl Linear {
    /// Output columns.
    pub fn n(&self) -> usize {
        match self {
            Linear::One(m) => m.n(),
            Linear::Parts(parts) => parts.iter().map(|m| m.n()).sum(),
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Linear::One(m) => m.bytes(),
            Linear::Parts(parts) => parts.iter().map(|m| m.bytes()).sum(),
        }
    }

    /// `out[m, n] = x[m, k] · Wᵀ + bias`, as [`PackedMatrix::matmul`].
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        match self {
            Linear::One(w) => w.matmul(x, m, out),
            Linear::Parts(parts) => {
                let n = self.n();
                assert_eq!(out.len(), m * n, "Linear::matmul: out.len() != m * n");
                let mut col = 0;
                for w in parts {
                    w.matmul_at(x, m, &mut out[col..], n);
                    col += w.n();
                }
            }
        }
    }

    /// Weight row `r` (an embedding lookup through a tied LM head).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        match self {
            Linear::One(w) => w.row(r, out),
            Linear::Parts(parts) => {
                let mut r = r;
                for w in parts {
                    if r < w.n() {
                        return w.row(r, out);
                    }
                    r -= w.n();
                }
                panic!("Linear::row: row out of range");
            }
        }
    }
}
