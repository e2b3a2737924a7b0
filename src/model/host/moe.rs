//! A mixture-of-experts MLP on the host kernels (Mixtral, Qwen-MoE, OLMoE): each token's router
//! picks its experts, each expert runs once over all the rows that picked it, and each row sums
//! its experts' outputs in ascending expert order. Rows are routed, computed and summed on their
//! own, so a token's output does not depend on what else is in the batch, bit for bit, as with
//! the dense MLP.

use super::linear::Linear;
use super::ops;
use crate::kernels::isa::Isa;
use crate::model::family::Moe;

/// One SwiGLU expert: `[gate | up]` packed as one matrix, and `down`.
pub(super) struct Expert {
    pub gate_up: Linear,
    pub down: Linear,
    pub inter: usize,
}

impl Expert {
    /// `out` (`rows × hidden`) = `down(silu(gate·x) · up·x)` of `x` (`rows × hidden`).
    fn run(&self, isa: Isa, x: &[f32], rows: usize, out: &mut [f32]) {
        let mut gu = vec![0f32; rows * 2 * self.inter];
        self.gate_up.matmul(x, rows, &mut gu);
        let mut act = vec![0f32; rows * self.inter];
        ops::silu_mul(isa, &gu, self.inter, &mut act);
        self.down.matmul(&act, rows, out);
    }

    fn bytes(&self) -> usize {
        self.gate_up.bytes() + self.down.bytes()
    }
}

pub(super) struct MoeFfn {
    /// `[experts, hidden]`: one logit per expert.
    pub router: Linear,
    pub experts: Vec<Expert>,
    /// Qwen2-MoE's always-on expert and its one-row gate.
    pub shared: Option<(Expert, Linear)>,
    pub moe: Moe,
}

impl MoeFfn {
    /// `out` (`rows × hidden`) = the mixture's output for each row of `x`.
    pub fn forward(&self, isa: Isa, x: &[f32], rows: usize, hidden: usize, out: &mut [f32]) {
        let n = self.experts.len();
        let mut logits = vec![0f32; rows * n];
        self.router.matmul(x, rows, &mut logits);
        let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
        for (r, l) in logits.chunks(n).enumerate() {
            for (e, w) in self.moe.route(l) {
                routed[e].push((r, w));
            }
        }
        out.fill(0.0);
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for (expert, rows_of) in self.experts.iter().zip(&routed) {
            if rows_of.is_empty() {
                continue;
            }
            input.clear();
            for &(r, _) in rows_of {
                input.extend_from_slice(&x[r * hidden..(r + 1) * hidden]);
            }
            output.resize(rows_of.len() * hidden, 0f32);
            expert.run(isa, &input, rows_of.len(), &mut output);
            // Experts in ascending order, so each row adds its terms in the same order always.
            for (&(r, w), y) in rows_of.iter().zip(output.chunks(hidden)) {
                for (o, v) in out[r * hidden..(r + 1) * hidden].iter_mut().zip(y) {
                    *o += v * w;
                }
            }
        }
        if let Some((expert, gate)) = &self.shared {
            let mut y = vec![0f32; rows * hidden];
            expert.run(isa, x, rows, &mut y);
            let mut g = vec![0f32; rows];
            gate.matmul(x, rows, &mut g);
            for ((o, y), g) in out.chunks_mut(hidden).zip(y.chunks(hidden)).zip(&g) {
                let s = 1.0 / (1.0 + (-g).exp());
                for (o, v) in o.iter_mut().zip(y) {
                    *o += s * v;
                }
            }
        }
    }

    pub fn bytes(&self) -> usize {
        let shared = self.shared.as_ref().map_or(0, |(e, g)| e.bytes() + g.bytes());
        self.router.bytes() + self.experts.iter().map(Expert::bytes).sum::<usize>() + shared
    }
}
