//! The CUDA decode step's own kernels, and their CPU references (issue 16's first part).
//!
//! The decode step the CUDA backend is built towards runs every operation once per layer for
//! the whole packed batch: cuBLAS products (fixed algorithm, no split-K) for q/k/v, o, gate/up,
//! down and the LM head, and the kernels of `kernels.cu` for what cuBLAS does not do — the
//! residual add fused with RMSNorm, RoPE fused with the KV-cache write, a ragged GQA decode
//! attention over each sequence's own cache, SiLU·mul and greedy sampling. So the launches a
//! step makes are a fixed number, whatever the batch size.
//!
//! `kernels.cu` is compiled at run time by NVRTC ([`SOURCE`], [`NVRTC_OPTIONS`]), so a CUDA
//! build needs no kernel build step of its own. Each kernel has a CPU reference in
//! [`reference`] that follows its arithmetic operation for operation (the same per-thread
//! order and the same reduction trees, given the launch's block size), so the GPU must give
//! the reference's bits; the references are tested here against the host path's operations
//! (`model::host`), which the transformers goldens test. `tools/nvrtc_check.py` compiles the
//! source with NVRTC on a machine without a GPU. [`step`] runs the whole packed step on the CPU
//! with the references, and [`schedule`] plans steps from results read one step late.

pub mod reference;
pub mod schedule;
pub mod step;

/// The kernels' CUDA C source.
pub const SOURCE: &str = include_str!("kernels.cu");

/// NVRTC options the kernels are written for (the architecture is added for the device):
/// `--fmad=false` keeps a product and a following add two roundings, as on the CPU; IEEE
/// division and square root are NVRTC's defaults, spelled out so no later default changes them.
pub const NVRTC_OPTIONS: &[&str] =
    &["--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false"];

/// The `extern "C"` kernels of [`SOURCE`], by name.
pub const KERNELS: &[&str] =
    &["add_rms_norm", "rope_kv_write", "decode_attention", "silu_mul", "argmax_rows"];

#[cfg(test)]
mod tests;
