//! `--device` and `--dtype` → candle's device and how the weights are held.

use candle_core::{DType, Device};

use crate::error::{Error, Result, SettingError};

/// `--device`: `cpu`, `cuda`, `cuda:N` or `metal`, checked for spelling when parsed and opened
/// (which needs the matching cargo feature) by [`DeviceSpec::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
    Metal,
}

impl DeviceSpec {
    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        let err = |m: &str| Error::Device { device: self.to_string(), message: m.to_string() };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Metal => {
                if cfg!(feature = "metal") {
                    Device::new_metal(0)
                        .map_err(|e| err(&format!("cannot open the Metal device: {e}")))
                } else {
                    Err(err("this benchgen was built without Metal support; rebuild with `--features metal` (macOS only)"))
                }
            }
            DeviceSpec::Cuda(ordinal) => {
                if cfg!(feature = "cuda") {
                    Device::new_cuda(ordinal)
                        .map_err(|e| err(&format!("cannot open CUDA device {ordinal}: {e}")))
                } else {
                    Err(err(
                        "this benchgen was built without CUDA support; rebuild with `--features cuda`",
                    ))
                }
            }
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let err = |m: &str| Error::Device { device: spec.to_string(), message: m.to_string() };
        match spec {
            "cpu" => Ok(DeviceSpec::Cpu),
            "metal" => Ok(DeviceSpec::Metal),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            s => match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| err("expected cuda or cuda:N with N a GPU number")),
                None => Err(err("unknown device; use cpu, cuda, cuda:N or metal")),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(0) => f.write_str("cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal => f.write_str("metal"),
        }
    }
}

/// Parses and opens `spec` (`cpu`, `cuda`, `cuda:N` or `metal`).
pub fn parse_device(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open()
}

/// Serde through `Display` and `FromStr`: run records spell a setting (a device, a dtype, a
/// shard) as the command line does, and read it back through the same parser.
macro_rules! serde_as_text {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;
serde_as_text!(DeviceSpec);
serde_as_text!(DtypeSpec);

/// `--dtype`: what the weights are asked to be held as; [`WeightType::for_model`] resolves
/// it for a device and a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtypeSpec {
    /// f32 on the CPU (a GGUF's types as stored), bf16 on GPUs, or a model alias' own dtype.
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
    Q8_0,
    Stored,
    StoredExact,
}

impl DtypeSpec {
    /// Every `--dtype` value, as [`DtypeSpec::name`] spells it.
    pub const NAMES: [&str; 7] = ["auto", "f32", "bf16", "f16", "q8_0", "stored", "stored-exact"];
    const ALL: [DtypeSpec; 7] = [
        DtypeSpec::Auto,
        DtypeSpec::F32,
        DtypeSpec::Bf16,
        DtypeSpec::F16,
        DtypeSpec::Q8_0,
        DtypeSpec::Stored,
        DtypeSpec::StoredExact,
    ];

    pub fn name(self) -> &'static str {
        let at = Self::ALL.iter().position(|d| *d == self).expect("ALL lists every variant");
        Self::NAMES[at]
    }
}

impl std::str::FromStr for DtypeSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let at = Self::NAMES
            .iter()
            .position(|n| *n == spec)
            .ok_or_else(|| SettingError::UnknownDtype { given: spec.to_string() })?;
        Ok(Self::ALL[at])
    }
}

impl std::fmt::Display for DtypeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the model's weights are held: a candle dtype, Q8_0 (llama.cpp's 8-bit blocks, on the
/// CPU host kernels only; read as f32 and quantised at load), or a GGUF file's types as stored
/// (CPU host kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Float(DType),
    Q8_0,
    /// A GGUF's quantised types as stored, products on int8-rounded activations (every type has
    /// integer kernels), as llama.cpp computes them.
    Stored,
    /// As stored, every product on f32 activations: bit for bit f32 on the dequantised weights.
    StoredExact,
}

impl WeightType {
    /// `--dtype` on `device`: `auto` is f32 on CPU (the numbers that match transformers to
    /// 1e-4; `bf16` halves the memory and runs faster on AVX-512 BF16 CPUs, `q8_0` quarters
    /// it) and bf16 on GPUs.
    pub fn parse(spec: DtypeSpec, device: &Device) -> Result<Self> {
        Ok(match spec {
            DtypeSpec::Auto => {
                WeightType::Float(if device.is_cpu() { DType::F32 } else { DType::BF16 })
            }
            DtypeSpec::F32 => WeightType::Float(DType::F32),
            DtypeSpec::Bf16 => WeightType::Float(DType::BF16),
            DtypeSpec::F16 => WeightType::Float(DType::F16),
            DtypeSpec::Q8_0 if device.is_cpu() => WeightType::Q8_0,
            DtypeSpec::Stored if device.is_cpu() => WeightType::Stored,
            DtypeSpec::StoredExact if device.is_cpu() => WeightType::StoredExact,
            DtypeSpec::Q8_0 | DtypeSpec::Stored | DtypeSpec::StoredExact => {
                let gpu = if device.is_metal() { "metal" } else { "cuda" };
                return Err(SettingError::DtypeNeedsCpu { dtype: spec.name(), gpu }.into());
            }
        })
    }

    /// `--dtype` for a model: `auto` on the CPU keeps a GGUF file's types as stored
    /// (`gguf`: whether the model is one); otherwise as [`WeightType::parse`].
    pub fn for_model(spec: DtypeSpec, device: &Device, gguf: bool) -> Result<Self> {
        if spec == DtypeSpec::Auto && gguf && device.is_cpu() {
            return Ok(WeightType::Stored);
        }
        Self::parse(spec, device)
    }

    /// The `--dtype` that asks for exactly this (run records keep it; resolving it again gives
    /// the same weights).
    pub fn spec(self) -> DtypeSpec {
        match self {
            WeightType::Float(DType::BF16) => DtypeSpec::Bf16,
            WeightType::Float(DType::F16) => DtypeSpec::F16,
            WeightType::Float(_) => DtypeSpec::F32,
            WeightType::Q8_0 => DtypeSpec::Q8_0,
            WeightType::Stored => DtypeSpec::Stored,
            WeightType::StoredExact => DtypeSpec::StoredExact,
        }
    }

    /// The `--dtype` spelling.
    pub fn name(self) -> &'static str {
        self.spec().name()
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
        let e = "cuda:x".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(e.contains("cuda:N with N a GPU number"), "{e}");
        for spelling in ["cpu", "cuda", "cuda:1", "metal"] {
            assert_eq!(spelling.parse::<DeviceSpec>().unwrap().to_string(), spelling);
        }
        assert_eq!("cuda:0".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        let cpu = &Device::Cpu;
        assert_eq!(WeightType::parse(DtypeSpec::Auto, cpu).unwrap(), WeightType::Float(DType::F32));
        let e = "int4".parse::<DtypeSpec>().unwrap_err().to_string();
        assert!(e.contains("q8_0"), "{e}");
        for name in DtypeSpec::NAMES {
            let spec: DtypeSpec = name.parse().unwrap();
            assert_eq!(spec.name(), name);
            let weights = WeightType::parse(spec, cpu).unwrap();
            // What a run records resolves to itself.
            assert_eq!(WeightType::parse(weights.spec(), cpu).unwrap(), weights);
            if spec != DtypeSpec::Auto {
                assert_eq!(weights.name(), name);
            }
        }
        assert_eq!(WeightType::Q8_0.load_dtype(), DType::F32);
        assert_eq!(WeightType::from(DType::BF16), WeightType::Float(DType::BF16));
        if let Ok(gpu) = parse_device("cuda") {
            let e = WeightType::parse(DtypeSpec::Q8_0, &gpu).unwrap_err().to_string();
            assert!(e.contains("runs on the CPU only"), "{e}");
        }
    }
}
