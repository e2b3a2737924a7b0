//! Which instruction set the CPU kernels use: the best the CPU has, or the one `BENCHGEN_ISA`
//! names (`avx512`, `avxvnni`, `avx2`, `scalar` on x86-64; `neon`, `scalar` on aarch64), so that
//! every path can be run and measured on one machine. A path the CPU lacks is refused, never
//! emulated.
//!
//! The choice is process-wide and read by every kernel family (matrix products, attention,
//! element-wise ops), so one setting moves them all together. Paths that are specified to give
//! the same bits (all f32 and quantised products, attention, the element-wise ops) do so
//! whichever runs (`tests/isa_equivalence.rs` compares a decoder's logits on every family).

use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable whose value the binary, benches and examples hand to
/// [`select_named`].
pub const ENV_VAR: &str = "BENCHGEN_ISA";

/// A kernel family. The derive order is from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 with AVX2 and FMA (and F16C, which every such CPU has).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The AVX2 family with AVX-VNNI's 256-bit `vpdpbusd` for int8 products: Intel's client
    /// cores from Alder Lake on, which have no AVX-512. Everything else runs the AVX2 kernels.
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// x86-64 with AVX-512F (products on bf16 weights use AVX-512 BF16 or an emulation of it,
    /// by rows and CPU: `bf16::Bf16Kernel::for_family`).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// aarch64 with NEON, which every aarch64 CPU has (int8 products use `sdot` where the CPU
    /// has the dot-product extension, as every Apple-silicon and Graviton 2+ CPU does).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsaError {
    #[error("{ENV_VAR}={given:?} is not an instruction set benchgen knows; use one of: {known}")]
    Unknown { given: String, known: String },
    #[error("{ENV_VAR}={given}: this CPU lacks {missing}; it runs {available} (unset {ENV_VAR} for the best)")]
    Unsupported { given: String, missing: &'static str, available: String },
}

impl Isa {
    /// Every family this build has, least capable first.
    pub const ALL: &'static [Isa] = &[
        Isa::Scalar,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => "avxvnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
        }
    }

    /// The CPU features this family needs, as `is_x86_feature_detected!` names them.
    fn features(self) -> &'static [&'static str] {
        match self {
            Isa::Scalar => &[],
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => &["avx2", "fma", "f16c"],
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => &["avx2", "fma", "f16c", "avxvnni"],
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => &["avx512f"],
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => &["neon"],
        }
    }

    /// The first feature of this family the CPU lacks, if any.
    fn missing(self) -> Option<&'static str> {
        self.features().iter().copied().find(|f| !cpu_has(f))
    }

    /// Whether this CPU runs this family.
    pub fn supported(self) -> bool {
        self.missing().is_none()
    }

    /// The most capable family this CPU runs.
    pub fn detect() -> Isa {
        Isa::ALL.iter().rev().copied().find(|i| i.supported()).unwrap_or(Isa::Scalar)
    }

    /// The family named `name`, if this CPU runs it.
    pub fn parse_supported(name: &str) -> Result<Isa, IsaError> {
        let isa = Isa::ALL
            .iter()
            .copied()
            .find(|i| i.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| IsaError::Unknown {
            given: name.to_string(),
            known: Isa::ALL.iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
        })?;
        match isa.missing() {
            None => Ok(isa),
            Some(missing) => Err(IsaError::Unsupported {
                given: isa.name().to_string(),
                missing,
                available: Isa::ALL
                    .iter()
                    .filter(|i| i.supported())
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn code(self) -> u8 {
        Isa::ALL.iter().position(|&i| i == self).map_or(0, |p| p as u8 + 1)
    }
}

fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "f16c" => std::arch::is_x86_feature_detected!("f16c"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512bf16" => std::arch::is_x86_feature_detected!("avx512bf16"),
            "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
            "avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
            "avxvnni" => std::arch::is_x86_feature_detected!("avxvnni"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match feature {
            "neon" => std::arch::is_aarch64_feature_detected!("neon"),
            "dotprod" => std::arch::is_aarch64_feature_detected!("dotprod"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = feature;
        false
    }
}

/// 0: not chosen yet (detect on first use); else `Isa::code`.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The family the kernels use: the one [`select`]ed, else the CPU's best.
pub fn current() -> Isa {
    let code = SELECTED.load(Ordering::Relaxed);
    if code == 0 {
        let isa = Isa::detect();
        SELECTED.store(isa.code(), Ordering::Relaxed);
        return isa;
    }
    Isa::ALL[code as usize - 1]
}

/// Makes `isa` the family for matrices packed and ops run from now on. Refuses one the CPU
/// lacks. Matrices already packed keep the family they were packed for.
pub fn select(isa: Isa) -> Result<(), IsaError> {
    Isa::parse_supported(isa.name())?;
    SELECTED.store(isa.code(), Ordering::Relaxed);
    Ok(())
}

/// Selects the family `name` names (the value of `BENCHGEN_ISA`, which the binary, benches and
/// examples read once at start and pass here), when it is set to something; else keeps the one
/// in force. Returns the family in force.
pub fn select_named(name: Option<&str>) -> Result<Isa, IsaError> {
    if let Some(name) = name.filter(|v| !v.trim().is_empty()) {
        select(Isa::parse_supported(name)?)?;
    }
    Ok(current())
}

/// Whether the CPU has AVX-512 BF16 (with AVX-512F), whatever family is in force.
pub fn cpu_has_avx512_bf16() -> bool {
    cpu_has("avx512f") && cpu_has("avx512bf16")
}

/// Whether AVX-512 BF16's `vdpbf16ps` (32 multiply-adds) outruns two 16-lane FMAs on this CPU,
/// as on AMD's Zen 4 and 5. Intel's cores issue it well under once a cycle (an Emerald Rapids
/// Xeon: 170 GFLOP/s on a product that f32 FMAs run at 270), so there the FMA emulation runs
/// blocks of many rows, with the same bits.
pub fn vdpbf16ps_outruns_fma() -> bool {
    // Asked once: every bf16 product asks, and CPUID traps to the hypervisor in a VM.
    static OUTRUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OUTRUNS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let id = std::arch::x86_64::__cpuid(0);
            // "GenuineIntel" in EBX, EDX, ECX.
            !(id.ebx == 0x756e_6547 && id.edx == 0x4965_6e69 && id.ecx == 0x6c65_746e)
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Whether the CPU has NEON's dot-product extension (`sdot`), which int8 products use in the
/// NEON family.
pub fn cpu_has_neon_dotprod() -> bool {
    cpu_has("neon") && cpu_has("dotprod")
}

/// Whether the CPU has AVX-512 VNNI (with AVX-512F and BW), which int8 products use in the
/// AVX-512 family.
pub fn cpu_has_avx512_vnni() -> bool {
    cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512vnni")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for &isa in Isa::ALL.iter().filter(|i| i.supported()) {
            assert_eq!(Isa::parse_supported(isa.name()), Ok(isa));
            assert_eq!(Isa::parse_supported(&isa.name().to_uppercase()), Ok(isa));
        }
        let e = Isa::parse_supported("sse9").unwrap_err();
        assert!(matches!(e, IsaError::Unknown { .. }));
        assert!(e.to_string().contains("scalar"), "{e}");
    }

    #[test]
    fn detection_picks_a_supported_family_and_nothing_better_is_supported() {
        let best = Isa::detect();
        assert!(best.supported());
        assert!(Isa::ALL.iter().all(|&i| i <= best || !i.supported()));
        assert!(Isa::Scalar.supported());
    }

    #[test]
    fn a_family_the_cpu_lacks_is_refused_naming_the_feature() {
        for &isa in Isa::ALL.iter().filter(|i| !i.supported()) {
            let e = Isa::parse_supported(isa.name()).unwrap_err();
            assert!(matches!(e, IsaError::Unsupported { .. }), "{e}");
            assert!(e.to_string().contains("lacks"), "{e}");
        }
    }
}
