//! `--device` and `--dtype` → candle's device and how the weights are held.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// `cpu`, `cuda`, `cuda:N` or `metal`. GPU devices need the matching cargo feature.
pub fn parse_device(spec: &str) -> Result<Device> {
    let err = |m: &str| Error::Device { device: spec.to_string(), message: m.to_string() };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "metal" => {
            if cfg!(feature = "metal") {
                Device::new_metal(0).map_err(|e| err(&format!("cannot open the Metal device: {e}")))
            } else {
                Err(err("this benchgen was built without Metal support; rebuild with `--features metal` (macOS only)"))
            }
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => {
                    n.parse().map_err(|_| err("expected cuda or cuda:N with N a GPU number"))?
                }
            };
            if cfg!(feature = "cuda") {
                Device::new_cuda(ordinal)
                    .map_err(|e| err(&format!("cannot open CUDA device {ordinal}: {e}")))
            } else {
                Err(err(
                    "this benchgen was built without CUDA support; rebuild with `--features cuda`",
                ))
            }
        }
        _ => Err(err("unknown device; use cpu, cuda, cuda:N or metal")),
    }
}

/// How the model's weights are held: a candle dtype, Q8_0 (llama.cpp's 8-bit blocks, on the
/// CPU host kernels only; read as f32 and quantised at load), or a GGUF file's types as stored
/// (CPU host kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Float(DType),
    Q8_0,
    /// A GGUF's quantised types as stored, products on int8-rounded activations where the type
    /// has integer kernels (every one but Q2_K and Q3_K), as llama.cpp computes them.
    Stored,
    /// As stored, every product on f32 activations: bit for bit f32 on the dequantised weights.
    StoredExact,
}

impl WeightType {
    /// Every `--dtype` [`WeightType::parse`] takes.
    pub const SPECS: [&str; 7] = ["auto", "f32", "bf16", "f16", "q8_0", "stored", "stored-exact"];

    /// `--dtype`: `auto` is f32 on CPU (the numbers that match transformers to 1e-4; `bf16` halves
    /// the memory and runs faster on AVX-512 BF16 CPUs, `q8_0` quarters it) and bf16 on GPUs.
    pub fn parse(spec: &str, device: &Device) -> Result<Self> {
        Ok(match spec {
            "auto" => WeightType::Float(if device.is_cpu() { DType::F32 } else { DType::BF16 }),
            "f32" => WeightType::Float(DType::F32),
            "bf16" => WeightType::Float(DType::BF16),
            "f16" => WeightType::Float(DType::F16),
            "q8_0" if device.is_cpu() => WeightType::Q8_0,
            "stored" if device.is_cpu() => WeightType::Stored,
            "stored-exact" if device.is_cpu() => WeightType::StoredExact,
            "q8_0" | "stored" | "stored-exact" => {
                let gpu = if device.is_metal() { "metal" } else { "cuda" };
                return Err(Error::Invalid(format!(
                    "--dtype {spec} runs on the CPU only; use bf16 or f16 on {gpu}"
                )));
            }
            other => {
                return Err(Error::Invalid(format!(
                    "--dtype {other}: use auto, f32, bf16, f16, q8_0, stored or stored-exact"
                )))
            }
        })
    }

    /// `--dtype` for a model: `auto` on the CPU keeps a GGUF file's types as stored
    /// (`gguf`: whether the model is one); otherwise as [`WeightType::parse`].
    pub fn for_model(spec: &str, device: &Device, gguf: bool) -> Result<Self> {
        if spec == "auto" && gguf && device.is_cpu() {
            return Ok(WeightType::Stored);
        }
        Self::parse(spec, device)
    }

    /// The `--dtype` spelling (run records keep it).
    pub fn name(self) -> &'static str {
        match self {
            WeightType::Float(DType::F32) => "f32",
            WeightType::Float(DType::BF16) => "bf16",
            WeightType::Float(DType::F16) => "f16",
            WeightType::Float(_) => "other",
            WeightType::Q8_0 => "q8_0",
            WeightType::Stored => "stored",
            WeightType::StoredExact => "stored-exact",
        }
    }

    /// The dtype checkpoints are read in: Q8_0 quantises from f32.
    pub fn load_dtype(self) -> DType {
        match self {
            WeightType::Float(d) => d,
            WeightType::Q8_0 | WeightType::Stored | WeightType::StoredExact => DType::F32,
        }
    }
}

impl From<DType> for WeightType {
    fn from(d: DType) -> Self {
        WeightType::Float(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_dtypes() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown device"), "{e}");
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        let cpu = &Device::Cpu;
        assert_eq!(WeightType::parse("auto", cpu).unwrap(), WeightType::Float(DType::F32));
        let e = WeightType::parse("int4", cpu).unwrap_err().to_string();
        assert!(e.contains("q8_0"), "{e}");
        for name in ["f32", "bf16", "f16", "q8_0"] {
            assert_eq!(WeightType::parse(name, cpu).unwrap().name(), name);
        }
        assert_eq!(WeightType::Q8_0.load_dtype(), DType::F32);
        assert_eq!(WeightType::from(DType::BF16), WeightType::Float(DType::BF16));
        if let Ok(gpu) = parse_device("cuda") {
            let e = WeightType::parse("q8_0", &gpu).unwrap_err().to_string();
            assert!(e.contains("runs on the CPU only"), "{e}");
        }
    }
}
