//! Rotary position embeddings: cos/sin tables for every position, gathered per token.

use candle_core::{DType, Device, Result, Tensor, D};

use super::config::{ModelConfig, RopeScaling};

pub(crate) struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

/// Inverse frequencies as transformers computes them (f32 powers), then scaled; divided by a
/// GGUF's `rope_freqs` factors as llama.cpp divides its angles.
pub(crate) fn inv_freq(cfg: &ModelConfig, scaling: RopeScaling) -> Vec<f32> {
    let dim = cfg.head_dim();
    let base = cfg.rope_theta() as f32;
    let plain = (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32));
    if let Some(factors) = &cfg.rope_freq_factors {
        return plain.zip(factors).map(|(f, d)| f / d).collect();
    }
    match scaling {
        RopeScaling::None => plain.collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 {
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

impl Rope {
    pub fn new(
        cfg: &ModelConfig,
        scaling: RopeScaling,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let inv = inv_freq(cfg, scaling);
        let half = inv.len();
        let positions = cfg.max_position_embeddings;
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.broadcast_mul(&inv)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }

    /// `x` is `[heads, N, head_dim]`; `cos`/`sin` are `[N, head_dim/2]` gathered by position.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor, differentiable: bool) -> Result<Tensor> {
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
        let plain = inv_freq(&cfg, RopeScaling::None);
        let scaled = inv_freq(
            &cfg,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 8192,
            },
        );
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
        assert!(plain.iter().zip(&scaled).all(|(p, s)| s <= p && *s >= p / 8.0));
    }
}
