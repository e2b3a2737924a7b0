//! Rotary position embeddings: cos/sin tables for every position, gathered per token.

use candle_core::{DType, Device, Result, Tensor, D};

use super::config::{ModelConfig, RopeScaling};
use super::family::RopeTable;

pub(crate) struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

/// Inverse frequencies of the `dim` rotating dimensions of a head as transformers computes them
/// (f32 powers), then scaled; divided by a GGUF's `rope_freqs` factors as llama.cpp divides its
/// angles.
pub(crate) fn inv_freq(cfg: &ModelConfig, dim: usize, table: &RopeTable) -> Vec<f32> {
    let base = table.theta as f32;
    let plain = (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32));
    if let Some(factors) = &cfg.rope_freq_factors {
        return plain.zip(factors).map(|(f, d)| f / d).collect();
    }
    match &table.scaling {
        RopeScaling::None => plain.collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / *factor as f32).collect(),
        // transformers: 1 / (ext_factor · base^(i/dim)), the product in f32.
        RopeScaling::LongRope { short_factor, .. } => (0..dim)
            .step_by(2)
            .zip(short_factor)
            .map(|(i, &ext)| 1.0 / (ext as f32 * base.powf(i as f32 / dim as f32)))
            .collect(),
        &RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_positions,
        } => {
            let (factor, low, high) =
                (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
            let old = original_max_positions as f32;
            let (low_wavelen, high_wavelen) = (old / low, old / high);
            plain
                .map(|f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// What cos and sin are multiplied by (longrope's attention factor; 1 otherwise).
pub(crate) fn attention_factor(table: &RopeTable) -> f32 {
    match table.scaling {
        RopeScaling::LongRope { attention_factor, .. } => attention_factor as f32,
        _ => 1.0,
    }
}

impl Rope {
    /// cos/sin rows `[positions, dim / 2]` of one table, for the first `dim` dimensions of a head.
    pub fn new(
        cfg: &ModelConfig,
        dim: usize,
        table: &RopeTable,
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let inv = inv_freq(cfg, dim, table);
        let half = inv.len();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.broadcast_mul(&inv)?;
        // A factor of 1 (all but longrope) leaves the values exact.
        let f = attention_factor(table) as f64;
        let (cos, sin) = ((freqs.cos()? * f)?, (freqs.sin()? * f)?);
        Ok(Self { cos: cos.to_dtype(dtype)?, sin: sin.to_dtype(dtype)? })
    }

    /// `x` is `[heads, N, head_dim]`; `cos`/`sin` are `[N, rotary/2]` gathered by position; the
    /// first `rotary` dimensions of each head rotate, the rest pass through.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor, differentiable: bool) -> Result<Tensor> {
        let rotary = 2 * cos.dim(D::Minus1)?;
        let head_dim = x.dim(D::Minus1)?;
        if rotary < head_dim {
            let rotated = Self::apply(&x.narrow(D::Minus1, 0, rotary)?, cos, sin, differentiable)?;
            let rest = x.narrow(D::Minus1, rotary, head_dim - rotary)?;
            return Tensor::cat(&[&rotated, &rest], D::Minus1);
        }
        if differentiable {
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(0)?;
            let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(0)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        } else {
            candle_nn::rotary_emb::rope(&x.unsqueeze(0)?.contiguous()?, cos, sin)?.squeeze(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let cfg: ModelConfig = serde_json::from_value(serde_json::json!({"hidden_size": 256, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 8, "rope_theta": 500000.0})).unwrap();
        let table = |scaling| RopeTable { theta: 500000.0, scaling };
        let plain = inv_freq(&cfg, 128, &table(RopeScaling::None));
        let scaled = inv_freq(
            &cfg,
            128,
            &table(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 8192,
            }),
        );
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
        assert!(plain.iter().zip(&scaled).all(|(p, s)| s <= p && *s >= p / 8.0));
    }
}
