//! The CUDA decode step's own kernels, and their CPU references (issue 16).
//!
//! The decode step the CUDA backend runs does every operation once per layer for the whole
//! packed batch, so the launches a step makes are a fixed number, whatever the batch size: the
//! embedding gather (prompt tokens from the host, sampled ones from the device), the products
//! (fused q/k/v and gate/up, o, down, and the LM head over the rows that sample), each RMSNorm
//! fused into the product that reads it and each residual add into the product whose output it
//! adds, RoPE fused with the KV-cache write, a ragged GQA attention over each sequence's own
//! cache (a block per tile of one sequence's rows and kv head), SiLU·mul (in the gate/up product with bf16 weights), and greedy or seeded
//! sampling: 1 + 7·layers + 2 launches (bf16: 1 + 6·layers + 2).
//!
//! `kernels.cu` is compiled at run time by NVRTC ([`SOURCE`], [`NVRTC_OPTIONS`]), so a CUDA
//! build needs no kernel build step of its own. Each kernel has a CPU reference in
//! [`reference`] that follows its arithmetic operation for operation (the same per-thread
//! order and the same reduction trees, given the launch's block size), so the GPU must give
//! the reference's bits (but for how a tensor core adds the 16 products of an `mma` chunk:
//! bf16 products agree to rounding). The products are benchgen's own kernels rather than
//! cuBLAS: cuBLAS picks its algorithm (and split-K) by the problem's shape, so a row's sums
//! would change with the batch, while `gemm_f32` (CUDA cores) and `gemm_bf16` (tensor cores)
//! compute every output in one order fixed by k, at every batch size. The references are
//! tested here against the host path's operations (`model::host`), which the transformers
//! goldens test, and the sampler against the CPU's. `tools/nvrtc_check.py` compiles the source
//! with NVRTC on a machine without a GPU, and `tools/cuda_emulator` runs them, and the CUDA
//! executor over them, on the CPU. [`step`] runs the whole packed step on the CPU with
//! the references, and [`schedule`] plans steps from results read one step late.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod reference;
pub mod schedule;
pub mod step;
pub mod table;

/// The kernels' CUDA C source.
pub const SOURCE: &str = include_str!("kernels.cu");

/// NVRTC options the kernels are written for (the architecture is added for the device):
/// `--fmad=false` keeps a product and a following add two roundings, as on the CPU; IEEE
/// division and square root are NVRTC's defaults, spelled out so no later default changes them.
pub const NVRTC_OPTIONS: &[&str] =
    &["--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false"];

/// The `extern "C"` kernels of [`SOURCE`], by name.
pub const KERNELS: &[&str] = &[
    "embed_rows_f32",
    "embed_rows_bf16",
    "gemm_f32",
    "gemm_bf16",
    "gemm_bf16_tiled",
    "rope_kv_write",
    "attention",
    "silu_mul",
    "sample_rows",
    "score_rows",
];

#[cfg(all(test, feature = "cuda"))]
mod cuda_tests;

/// The CUDA device the device tests run on: `BENCHGEN_TEST_DEVICE=cuda[:N]`, which
/// `tools/gpu_check.sh` sets on a GPU machine and, with the CPU driver of
/// `tools/cuda_emulator`, without one. `None` (the tests run on the CPU, or say they were
/// skipped) otherwise.
#[cfg(all(test, feature = "cuda"))]
pub(crate) fn test_cuda_ordinal() -> Option<usize> {
    match std::env::var("BENCHGEN_TEST_DEVICE") {
        Ok(d) if d == "cuda" => Some(0),
        Ok(d) if d.starts_with("cuda:") => {
            Some(d[5..].parse().unwrap_or_else(|e| panic!("BENCHGEN_TEST_DEVICE={d}: {e}")))
        }
        _ => None,
    }
}
#[cfg(test)]
mod tests;
