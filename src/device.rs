//! `--device` and `--dtype` → candle's device and dtype.

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
                Some(n) => n.parse().map_err(|_| err("expected cuda or cuda:N with N a GPU number"))?,
            };
            if cfg!(feature = "cuda") {
                Device::new_cuda(ordinal).map_err(|e| err(&format!("cannot open CUDA device {ordinal}: {e}")))
            } else {
                Err(err("this benchgen was built without CUDA support; rebuild with `--features cuda`"))
            }
        }
        _ => Err(err("unknown device; use cpu, cuda, cuda:N or metal")),
    }
}

/// `auto` is f32 on CPU (the numbers that match transformers to 1e-4; `bf16` halves the memory and
/// runs faster on AVX-512 BF16 CPUs) and bf16 on GPUs.
pub fn parse_dtype(spec: &str, device: &Device) -> Result<DType> {
    match spec {
        "auto" => Ok(if device.is_cpu() { DType::F32 } else { DType::BF16 }),
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(Error::Invalid(format!("--dtype {other}: use auto, f32, bf16 or f16"))),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "other",
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
        assert_eq!(parse_dtype("auto", &Device::Cpu).unwrap(), DType::F32);
        assert!(parse_dtype("int4", &Device::Cpu).is_err());
    }
}
