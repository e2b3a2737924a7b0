//! The packed step on a CUDA device: `kernels.cu` compiled by NVRTC for the device at start,
//! the weights, KV caches and every scratch buffer allocated once, and each step enqueued on
//! one stream as the fixed sequence of launches [`super::step::ReferenceStep`] counts, so the
//! device gives that reference's bits. Nothing in a step waits for the device: the step's row
//! table goes up through pinned memory, its sampled tokens stay on the device for the next
//! step's embedding ([`super::step::Feed::Sampled`]) and come back through pinned memory, read one step
//! later ([`CudaStep::tokens`]). A decode step (every row samples) replays a CUDA graph
//! captured once per row bucket (1, 2, 4, … rows), its spare rows padded with inert rows in a
//! slot of their own; other steps (prefill) are launched one kernel at a time.
//!
//! Buffers never move, so every kernel argument is a raw device address taken once; the
//! context's per-buffer event tracking is off (one stream orders everything), which is also
//! what lets a stream capture see nothing but the kernels.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaContext, CudaEvent, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr,
    DeviceRepr, LaunchConfig, PinnedHostSlice, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys, Ptx};
use candle_core::{DType, Tensor};

use super::reference::SampleParams;
use super::step::{
    check_scoring, rows_outside, DeviceMemory, DeviceRow, Launches, PackedStep, Part, StepModel,
    StepTensors, SAMPLE_THREADS, THREADS,
};
use super::table::{tile_rows, Array, Layout};
use super::{NVRTC_OPTIONS, SOURCE};
use crate::error::{Error, Result, TensorContext};
use crate::model::config::ModelConfig;

/// Rows a warp of `gemm_f32` computes at once (`GEMM_ROWS`), and warps a block of either
/// product: a block's fused RMSNorm sums as a `THREADS` block does (the reference's tree).
const GEMM_ROWS: usize = 8;
const GEMM_WARPS: usize = 4;
const _: () = assert!(32 * GEMM_WARPS == THREADS);
/// The tile of rows and columns a warp of `gemm_bf16` computes (`mma.m16n8k16`'s M and N).
const MMA_ROWS: usize = 16;
const MMA_COLS: usize = 8;
/// The output tile a block of `gemm_bf16_tiled` computes (kernels.cu: TILE_M, TILE_N), with
/// THREADS threads.
const TILE_M: usize = 64;
const TILE_N: usize = 64;

fn device_error(ordinal: usize, message: impl std::fmt::Display) -> Error {
    Error::Device { device: format!("cuda:{ordinal}"), message: message.to_string() }
}

struct Functions {
    embed_f32: CudaFunction,
    embed_bf16: CudaFunction,
    gemm_f32: CudaFunction,
    gemm_bf16: CudaFunction,
    gemm_bf16_tiled: CudaFunction,
    rope_kv_write: CudaFunction,
    attention: CudaFunction,
    silu_mul: CudaFunction,
    sample_rows: CudaFunction,
    score_rows: CudaFunction,
}

/// A matrix on the device as the model stores it: f32, or bf16 bits.
enum Matrix {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<u16>),
}

struct Layer {
    attn_norm: CudaSlice<f32>,
    qkv: Matrix,
    o: Matrix,
    mlp_norm: CudaSlice<f32>,
    /// bf16: gate and up rows interleaved (row 2j gate j, 2j+1 up j), so a lane of
    /// `gemm_bf16` holds both of a pair and applies SiLU·mul; f32: gate rows, then up rows.
    gate_up: Matrix,
    down: Matrix,
}

/// The per-step row table, one pinned staging copy and one device copy, every array at a
/// fixed offset (in 8-byte words) so kernel arguments can be taken once.
struct Table {
    rows: usize,
    host: [PinnedHostSlice<u64>; 2],
    device: CudaSlice<u64>,
    next: usize,
}

/// Whether a bf16 product of `rows` rows runs as `gemm_bf16_tiled` (a block per TILE_M × TILE_N
/// of the output, staged through shared memory: prefill, large batches) rather than
/// `gemm_bf16` (a warp per MMA_ROWS × MMA_COLS, operands straight from global memory: decode,
/// where the weights' reads want every warp there can be). Not tuned on a device yet; the bits
/// are the same either way.
fn tiled(rows: usize) -> bool {
    rows >= 128
}

/// What a product does with its output (the kernels' `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Out {
    Write = 0,
    /// Added to what is there: the residual connection.
    Add = 1,
    /// bf16 gate/up only: silu(gate) · up of each interleaved pair.
    SiluMul = 2,
}

/// What a step ends with after the LM head.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    Sample,
    Score,
}

/// The packed step on a CUDA device (see the module doc).
pub struct CudaStep {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    f: Functions,
    m: StepModel,
    embed: Matrix,
    layers: Vec<Layer>,
    final_norm: CudaSlice<f32>,
    lm_head: Matrix,
    cos: CudaSlice<f32>,
    sin: CudaSlice<f32>,
    k_cache: Vec<CudaSlice<u16>>,
    v_cache: Vec<CudaSlice<u16>>,
    /// Activations, `[max_rows][..]`.
    residual: CudaSlice<f32>,
    qkv: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    gate_up: CudaSlice<f32>,
    act: CudaSlice<f32>,
    scores: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    weights_f64: CudaSlice<f64>,
    /// The last token each slot's sequence sampled (the pad slot's included).
    slot_token: CudaSlice<u32>,
    sampled: CudaSlice<u32>,
    /// A scoring step's log-probabilities and greedy flags.
    logprob: CudaSlice<f64>,
    greedy: CudaSlice<u32>,
    table: Table,
    /// Sampled tokens on their way back, a step's in each (double-buffered), and how many.
    readback: [PinnedHostSlice<u32>; 2],
    /// Recorded after each readback copy, waited on before the host reads it. cudarc's own
    /// events on pinned memory are recorded only with several streams and event tracking on
    /// (neither here), so waiting on those would not wait for the copy.
    copied: [CudaEvent; 2],
    pending: std::collections::VecDeque<(usize, usize)>,
    slots: usize,
    max_rows: usize,
    /// Each decode bucket's graph and the kernels it holds.
    graphs: HashMap<usize, (CudaGraph, Launches)>,
    use_graphs: bool,
    memory: DeviceMemory,
    last_samples: usize,
}

fn upload<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    v: &[T],
    ordinal: usize,
) -> Result<CudaSlice<T>> {
    stream.clone_htod(v).map_err(|e| device_error(ordinal, e))
}

fn zeros<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    n: usize,
    ordinal: usize,
) -> Result<CudaSlice<T>> {
    stream.alloc_zeros(n.max(1)).map_err(|e| device_error(ordinal, e))
}

/// A device buffer's address (buffers never move, and event tracking is off, so the guard the
/// driver API hands back has nothing to do).
fn addr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _guard) = s.device_ptr(stream);
    p
}

impl Matrix {
    fn new(t: Tensor, bf16: bool, stream: &Arc<CudaStream>, ordinal: usize) -> Result<Self> {
        let t = t.flatten_all().ctx("a step weight")?;
        Ok(if bf16 {
            let v = t.to_dtype(DType::BF16).and_then(|t| t.to_vec1::<half::bf16>());
            let bits: Vec<u16> = v.ctx("a step weight")?.iter().map(|b| b.to_bits()).collect();
            Matrix::Bf16(upload(stream, &bits, ordinal)?)
        } else {
            let v = t.to_dtype(DType::F32).and_then(|t| t.to_vec1::<f32>()).ctx("a step weight")?;
            Matrix::F32(upload(stream, &v, ordinal)?)
        })
    }

    fn bytes(&self) -> usize {
        match self {
            Matrix::F32(s) => s.num_bytes(),
            Matrix::Bf16(s) => s.num_bytes(),
        }
    }

    fn addr(&self, stream: &CudaStream) -> u64 {
        match self {
            Matrix::F32(s) => addr(s, stream),
            Matrix::Bf16(s) => addr(s, stream),
        }
    }
}

/// A `[2n][k]` matrix's rows as n pairs: row 2j is row j, row 2j+1 is row n + j.
fn interleave_halves(t: Tensor) -> Result<Tensor> {
    let (rows, k) = t.dims2().ctx("the gate/up matrix")?;
    let halves = t.reshape((2, rows / 2, k)).and_then(|t| t.transpose(0, 1));
    halves.and_then(|t| t.contiguous()?.reshape((rows, k))).ctx("interleaving gate and up")
}

fn vector(t: Tensor, stream: &Arc<CudaStream>, ordinal: usize) -> Result<CudaSlice<f32>> {
    let v = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>());
    upload(stream, &v.ctx("a step norm")?, ordinal)
}

fn grid(x: usize, y: usize, threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaStep {
    /// From HF-named tensors (as [`super::step::ReferenceStep::new`]), on device `ordinal`:
    /// `slots` sequences of at most `max_len` positions, at most `max_rows` rows a step. The
    /// matrices stay bf16 when the model's are, else f32.
    pub fn new(
        cfg: &ModelConfig,
        tensors: &dyn StepTensors,
        slots: usize,
        max_len: usize,
        max_rows: usize,
        ordinal: usize,
    ) -> Result<Self> {
        let m = StepModel::new(cfg, max_len)?;
        let err = |e: &dyn std::fmt::Display| device_error(ordinal, e);
        let ctx = CudaContext::new(ordinal).map_err(|e| err(&e))?;
        // Before any buffer exists: buffers made from here on record no events (see the doc).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| err(&e))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| err(&e))?;
        let cubin = compile_cubin(&format!("sm_{major}{minor}"))
            .map_err(|e| err(&format!("compiling the step's kernels with NVRTC: {e}")))?;
        let module = ctx
            .load_module(Ptx::from_binary(cubin))
            .map_err(|e| err(&format!("loading the step's kernels: {e}")))?;
        let load = |name: &str| module.load_function(name).map_err(|e| err(&e));
        let f = Functions {
            embed_f32: load("embed_rows_f32")?,
            embed_bf16: load("embed_rows_bf16")?,
            gemm_f32: load("gemm_f32")?,
            gemm_bf16: load("gemm_bf16")?,
            gemm_bf16_tiled: load("gemm_bf16_tiled")?,
            rope_kv_write: load("rope_kv_write")?,
            attention: load("attention")?,
            silu_mul: load("silu_mul")?,
            sample_rows: load("sample_rows")?,
            score_rows: load("score_rows")?,
        };

        let bf16 = m.bf16_matrices(tensors)?;
        let matrix = |t: Tensor| Matrix::new(t, bf16, &stream, ordinal);
        let layers = (0..m.layers)
            .map(|i| {
                Ok(Layer {
                    attn_norm: vector(m.layer(tensors, i, Part::AttnNorm)?, &stream, ordinal)?,
                    qkv: matrix(m.layer(tensors, i, Part::Qkv)?)?,
                    o: matrix(m.layer(tensors, i, Part::O)?)?,
                    mlp_norm: vector(m.layer(tensors, i, Part::MlpNorm)?, &stream, ordinal)?,
                    gate_up: matrix(if bf16 {
                        interleave_halves(m.layer(tensors, i, Part::GateUp)?)?
                    } else {
                        m.layer(tensors, i, Part::GateUp)?
                    })?,
                    down: matrix(m.layer(tensors, i, Part::Down)?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = matrix(m.embed(tensors)?)?;
        let lm_head = matrix(m.lm_head(tensors)?)?;
        let final_norm = vector(m.final_norm(tensors)?, &stream, ordinal)?;
        let weights = embed.bytes()
            + lm_head.bytes()
            + final_norm.num_bytes()
            + layers
                .iter()
                .map(|l| {
                    l.attn_norm.num_bytes()
                        + l.qkv.bytes()
                        + l.o.bytes()
                        + l.mlp_norm.num_bytes()
                        + l.gate_up.bytes()
                        + l.down.bytes()
                })
                .sum::<usize>();

        // One slot more than asked for: padded rows write and read only there.
        let h = m.heads;
        let cache = (slots + 1) * h.kv * max_len * h.dim;
        let mut k_cache = Vec::new();
        let mut v_cache = Vec::new();
        for _ in 0..m.layers {
            k_cache.push(zeros::<u16>(&stream, cache, ordinal)?);
            v_cache.push(zeros::<u16>(&stream, cache, ordinal)?);
        }
        // A step samples each sequence at most once, and a padded decode step its bucket:
        // logits and sampling scratch for that many rows, everything else for `max_rows`.
        let samples_cap = slots.next_power_of_two();
        let r = max_rows.max(samples_cap);
        let words = Layout::new(r).words();
        let table = Table {
            rows: r,
            host: [pinned(&ctx, words, ordinal)?, pinned(&ctx, words, ordinal)?],
            device: zeros(&stream, words, ordinal)?,
            next: 0,
        };
        let mut step = CudaStep {
            cos: upload(&stream, &m.cos, ordinal)?,
            sin: upload(&stream, &m.sin, ordinal)?,
            residual: zeros(&stream, r * m.hidden, ordinal)?,
            qkv: zeros(&stream, r * h.qkv_width(), ordinal)?,
            attn: zeros(&stream, r * h.q * h.dim, ordinal)?,
            gate_up: zeros(&stream, r * 2 * m.inter, ordinal)?,
            act: zeros(&stream, r * m.inter, ordinal)?,
            scores: zeros(&stream, r * h.q * max_len, ordinal)?,
            logits: zeros(&stream, samples_cap * m.vocab, ordinal)?,
            weights_f64: zeros(&stream, samples_cap * m.vocab, ordinal)?,
            slot_token: zeros(&stream, slots + 1, ordinal)?,
            sampled: zeros(&stream, samples_cap, ordinal)?,
            logprob: zeros(&stream, samples_cap, ordinal)?,
            greedy: zeros(&stream, samples_cap, ordinal)?,
            readback: [pinned(&ctx, samples_cap, ordinal)?, pinned(&ctx, samples_cap, ordinal)?],
            copied: [event(&ctx, ordinal)?, event(&ctx, ordinal)?],
            pending: Default::default(),
            table,
            ordinal,
            f,
            embed,
            layers,
            final_norm,
            lm_head,
            k_cache,
            v_cache,
            slots,
            max_rows: r,
            graphs: HashMap::new(),
            use_graphs: std::env::var("BENCHGEN_CUDA_GRAPHS").map_or(true, |v| v != "0"),
            memory: DeviceMemory::default(),
            last_samples: 0,
            m,
            ctx,
            stream,
        };
        let scratch = [
            &step.residual,
            &step.qkv,
            &step.attn,
            &step.gate_up,
            &step.act,
            &step.scores,
            &step.logits,
        ]
        .iter()
        .map(|s| s.num_bytes())
        .sum::<usize>()
            + step.weights_f64.num_bytes()
            + step.table.device.num_bytes();
        let kv_cache = step.k_cache.iter().chain(&step.v_cache).map(|c| c.num_bytes()).sum();
        step.stream.synchronize().map_err(|e| err(&e))?;
        let (free, total) = step.ctx.mem_get_info().map_err(|e| err(&e))?;
        step.memory = DeviceMemory { weights, kv_cache, scratch, device_used: total - free };
        Ok(step)
    }

    /// The device's name, as its driver gives it.
    pub fn device_name(&self) -> Result<String> {
        self.ctx.name().map_err(|e| device_error(self.ordinal, e))
    }

    /// Whether decode steps replay CUDA graphs (the default; `BENCHGEN_CUDA_GRAPHS=0` turns
    /// them off) or launch kernel by kernel. The results are the same bits.
    pub fn set_graphs(&mut self, on: bool) {
        self.use_graphs = on;
    }

    /// The last step's logits of its sampled rows (`[samples][vocab]`); waits for the device.
    pub fn logits(&self) -> Result<Vec<f32>> {
        let n = self.last_samples * self.m.vocab;
        let v = self.stream.clone_dtoh(&self.logits.slice(..n.max(1)));
        let mut v = v.map_err(|e| device_error(self.ordinal, e))?;
        v.truncate(n);
        Ok(v)
    }

    /// Writes the row table (`rows` padded to `padded` with inert rows in the pad slot, and
    /// `samples` padded to `sampling` with greedy samples of those) and sends it up. Returns
    /// the number of attention tiles.
    fn write_table(
        &mut self,
        rows: &[DeviceRow],
        samples: &[(usize, SampleParams)],
        padded: usize,
        sampling: usize,
        targets: &[(usize, u32)],
    ) -> Result<usize> {
        let lay = Layout::new(self.table.rows);
        let buf = self.table.next;
        self.table.next ^= 1;
        let words =
            self.table.host[buf].as_mut_slice().map_err(|e| device_error(self.ordinal, e))?;
        let (pad, most) = (self.slots as u32, tile_rows(&self.m.heads));
        let tiles = lay.fill(words, rows, padded, samples, sampling, targets, pad, most);
        self.stream
            .memcpy_htod(&self.table.host[buf], &mut self.table.device)
            .map_err(|e| device_error(self.ordinal, e))?;
        Ok(tiles)
    }

    /// Replays (capturing it first) the graph of a `rows`-row decode step.
    fn replay(&mut self, rows: usize) -> Result<Launches> {
        if !self.graphs.contains_key(&rows) {
            let err = |e: &dyn std::fmt::Display| device_error(self.ordinal, e);
            self.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(|e| err(&e))?;
            // A graph's grid takes a tile per row, the most a step of its rows has (the
            // table's entries past its tiles are empty).
            let launched = self.launch_all(rows, rows, rows, Tail::Sample);
            // The capture ends whatever happened, or the stream stays unusable.
            let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
            let launched = launched?;
            let graph = graph
                .map_err(|e| device_error(self.ordinal, e))?
                .ok_or_else(|| device_error(self.ordinal, "the stream capture made no graph"))?;
            self.graphs.insert(rows, (graph, launched));
        }
        let (graph, launched) = &self.graphs[&rows];
        graph.launch().map_err(|e| device_error(self.ordinal, e))?;
        Ok(*launched)
    }

    /// Enqueues a product: out (+)= (RMSNorm(x) · nw if nw is not null, else x) · wᵀ for `rows`
    /// rows of x (row r is x's row xr[r] where xr is not null), w `[n][k]`, its output as `Out`
    /// says.
    #[allow(clippy::too_many_arguments)]
    fn launch_gemm(
        &self,
        x: u64,
        xr: u64,
        w: &Matrix,
        (out, mode): (u64, Out),
        nw: u64,
        rows: usize,
        (n, k): (usize, usize),
    ) -> Result<()> {
        let s = &*self.stream;
        // f32: a warp per column and GEMM_ROWS rows; bf16 (tensor cores): a warp per MMA_ROWS
        // rows and MMA_COLS columns, or a block per TILE_M rows and TILE_N columns.
        let (f, cfg) = match w {
            Matrix::F32(_) => (
                &self.f.gemm_f32,
                grid(n.div_ceil(GEMM_WARPS), rows.div_ceil(GEMM_ROWS), 32 * GEMM_WARPS),
            ),
            Matrix::Bf16(_) if tiled(rows) => {
                (&self.f.gemm_bf16_tiled, grid(n.div_ceil(TILE_N), rows.div_ceil(TILE_M), THREADS))
            }
            Matrix::Bf16(_) => (
                &self.f.gemm_bf16,
                grid(n.div_ceil(MMA_COLS * GEMM_WARPS), rows.div_ceil(MMA_ROWS), 32 * GEMM_WARPS),
            ),
        };
        let (wa, r, n_i, k_i) = (w.addr(s), rows as i32, n as i32, k as i32);
        let (eps, mode) = (self.m.eps, mode as i32);
        let mut b = s.launch_builder(f);
        b.arg(&x).arg(&xr).arg(&wa).arg(&out).arg(&r).arg(&n_i).arg(&k_i);
        b.arg(&nw).arg(&eps).arg(&mode);
        // Safety: the caller's buffers are as large as the kernel's contract asks for `rows`
        // rows, n and k; the scalars are the kernel's parameter types.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| device_error(self.ordinal, e))
    }

    /// Enqueues `attention` over `tiles` tiles: the rows' q/k/v, the layer's caches, the row
    /// table's positions, slots and tiles, the scores' scratch and the output.
    fn launch_attention(
        &self,
        (qkv, kc, vc): (u64, u64, u64),
        (pos, slot, tile_row, tile_len): (u64, u64, u64, u64),
        (scores, out): (u64, u64),
        tiles: usize,
    ) -> Result<()> {
        let h = self.m.heads;
        let (qh, kvh, dim, max_len) = (h.q as i32, h.kv as i32, h.dim as i32, h.max_len as i32);
        let mut b = self.stream.launch_builder(&self.f.attention);
        b.arg(&qkv).arg(&kc).arg(&vc).arg(&pos).arg(&slot).arg(&tile_row).arg(&tile_len);
        b.arg(&scores).arg(&out).arg(&qh).arg(&kvh).arg(&dim).arg(&max_len).arg(&self.m.scale);
        // Safety: the caller's buffers are as large as the kernel's contract asks for the step's
        // rows and tiles; the scalars are the kernel's parameter types.
        unsafe { b.launch(grid(tiles, h.kv, THREADS)) }
            .map(|_| ())
            .map_err(|e| device_error(self.ordinal, e))
    }

    /// Enqueues every kernel of a step of `rows` rows, `samples` of which sample, in `tiles`
    /// attention tiles.
    fn launch_all(
        &mut self,
        rows: usize,
        samples: usize,
        tiles: usize,
        tail: Tail,
    ) -> Result<Launches> {
        let s = &*self.stream;
        let lay = Layout::new(self.table.rows);
        let t = addr(&self.table.device, s);
        let at = |array: Array| t + lay.byte_offset(array);
        let (input, pos, slot, xrows) =
            (at(Array::Input), at(Array::Pos), at(Array::Slot), at(Array::LogitRow));
        let (temperature, top_k, top_p) =
            (at(Array::Temperature), at(Array::TopK), at(Array::TopP));
        let (seed, draw, sample_slot) = (at(Array::Seed), at(Array::Draw), at(Array::SampleSlot));
        let (tile_row, tile_len) = (at(Array::TileRow), at(Array::TileLen));
        let (m, h) = (&self.m, self.m.heads);
        let (residual, qkv) = (addr(&self.residual, s), addr(&self.qkv, s));
        let (attn, gu) = (addr(&self.attn, s), addr(&self.gate_up, s));
        let (act, scores, logits) =
            (addr(&self.act, s), addr(&self.scores, s), addr(&self.logits, s));
        let (wt, slot_token, sampled) =
            (addr(&self.weights_f64, s), addr(&self.slot_token, s), addr(&self.sampled, s));
        let (target, logprob, greedy) =
            (at(Array::Target), addr(&self.logprob, s), addr(&self.greedy, s));
        let (cos, sin) = (addr(&self.cos, s), addr(&self.sin, s));
        let null = 0u64;
        let (rows_i, hidden_i, inter_i) = (rows as i32, m.hidden as i32, m.inter as i32);
        let mut launches = Launches(0);
        let ord = self.ordinal;
        let run = |b: &mut candle_core::cuda_backend::cudarc::driver::LaunchArgs,
                   cfg,
                   n: &mut Launches| {
            n.0 += 1;
            // Safety: every argument is an address of a live buffer of the size the kernel's
            // contract asks for `rows` rows, or a scalar of the kernel's parameter type.
            unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| device_error(ord, e))
        };
        let gemm = |x: u64,
                    xr: u64,
                    w: &Matrix,
                    to: (u64, Out),
                    nw: u64,
                    r: i32,
                    shape: (usize, usize),
                    c: &mut Launches| {
            c.0 += 1;
            self.launch_gemm(x, xr, w, to, nw, r as usize, shape)
        };

        let table = self.embed.addr(s);
        let f = match self.embed {
            Matrix::F32(_) => &self.f.embed_f32,
            Matrix::Bf16(_) => &self.f.embed_bf16,
        };
        let mut b = s.launch_builder(f);
        b.arg(&table).arg(&input).arg(&slot).arg(&slot_token).arg(&residual).arg(&hidden_i);
        run(&mut b, grid(rows, 1, THREADS), &mut launches)?;
        let (qh, kvh, dim, half, max_len) =
            (h.q as i32, h.kv as i32, h.dim as i32, h.half as i32, h.max_len as i32);
        let c = &mut launches;
        for (l, layer) in self.layers.iter().enumerate() {
            let (attn_norm, mlp_norm) = (addr(&layer.attn_norm, s), addr(&layer.mlp_norm, s));
            let qkv_shape = (h.qkv_width(), m.hidden);
            gemm(residual, null, &layer.qkv, (qkv, Out::Write), attn_norm, rows_i, qkv_shape, c)?;
            let (kc, vc) = (addr(&self.k_cache[l], s), addr(&self.v_cache[l], s));
            let mut b = s.launch_builder(&self.f.rope_kv_write);
            b.arg(&qkv).arg(&cos).arg(&sin).arg(&pos).arg(&slot).arg(&kc).arg(&vc);
            b.arg(&qh).arg(&kvh).arg(&dim).arg(&half).arg(&max_len);
            run(&mut b, grid(rows, h.q + h.kv, 64), c)?;
            c.0 += 1;
            let table = (pos, slot, tile_row, tile_len);
            self.launch_attention((qkv, kc, vc), table, (scores, attn), tiles)?;
            let o_shape = (m.hidden, h.q * h.dim);
            gemm(attn, null, &layer.o, (residual, Out::Add), null, rows_i, o_shape, c)?;
            let gu_shape = (2 * m.inter, m.hidden);
            if let Matrix::Bf16(_) = layer.gate_up {
                // Interleaved gate/up rows (Layer::gate_up): SiLU·mul in the product.
                let to = (act, Out::SiluMul);
                gemm(residual, null, &layer.gate_up, to, mlp_norm, rows_i, gu_shape, c)?;
            } else {
                let to = (gu, Out::Write);
                gemm(residual, null, &layer.gate_up, to, mlp_norm, rows_i, gu_shape, c)?;
                let mut b = s.launch_builder(&self.f.silu_mul);
                b.arg(&gu).arg(&act).arg(&inter_i).arg(&rows_i);
                let cfg = grid((rows * m.inter).div_ceil(256).min(65_535), 1, 256);
                run(&mut b, cfg, c)?;
            }
            let down_shape = (m.hidden, m.inter);
            gemm(act, null, &layer.down, (residual, Out::Add), null, rows_i, down_shape, c)?;
        }
        // A step of prompt rows only (a long prompt's first chunks) has nothing to sample, and
        // a grid of no blocks is not a valid launch.
        if samples == 0 {
            return Ok(launches);
        }
        let ns = samples as i32;
        let (final_norm, head_shape) = (addr(&self.final_norm, s), (m.vocab, m.hidden));
        let to = (logits, Out::Write);
        gemm(residual, xrows, &self.lm_head, to, final_norm, ns, head_shape, c)?;
        let vocab = m.vocab as i32;
        if tail == Tail::Score {
            let mut b = s.launch_builder(&self.f.score_rows);
            b.arg(&logits).arg(&vocab).arg(&target).arg(&logprob).arg(&greedy);
            run(&mut b, grid(samples, 1, SAMPLE_THREADS), &mut launches)?;
            return Ok(launches);
        }
        let mut b = s.launch_builder(&self.f.sample_rows);
        b.arg(&logits).arg(&vocab).arg(&temperature).arg(&top_k).arg(&top_p).arg(&seed);
        b.arg(&draw).arg(&sample_slot).arg(&wt).arg(&slot_token).arg(&sampled);
        run(&mut b, grid(samples, 1, SAMPLE_THREADS), &mut launches)?;
        Ok(launches)
    }
}

impl PackedStep for CudaStep {
    fn shape(&self) -> (usize, usize, usize) {
        (self.slots, self.m.heads.max_len, self.max_rows)
    }

    /// Device memory held (see [`DeviceMemory`]).
    fn memory(&self) -> DeviceMemory {
        self.memory
    }

    /// Enqueues one step: `rows` (at most `max_rows`), and `samples` (row, parameters) for the
    /// rows whose next token is sampled (a sequence at most once). Returns at once; the
    /// sampled tokens are read with [`Self::tokens`], at most two steps behind.
    fn enqueue(
        &mut self,
        rows: &[DeviceRow],
        samples: &[(usize, SampleParams)],
    ) -> Result<Launches> {
        let n = rows.len();
        let bad_sample = samples.iter().any(|&(row, _)| row >= n);
        if n == 0 || n > self.max_rows || samples.len() > self.slots || bad_sample {
            return Err(device_error(
                self.ordinal,
                format!(
                    "a step of {n} rows and {} samples (at most {} rows, one sample for each of \
                     {} slots, each sample a row of the step)",
                    samples.len(),
                    self.max_rows,
                    self.slots
                ),
            ));
        }
        if self.pending.len() == 2 {
            return Err(device_error(self.ordinal, "two steps' tokens are still unread"));
        }
        if rows_outside(rows, self.slots, self.m.heads.max_len) {
            return Err(device_error(self.ordinal, "a row outside the cache's slots or positions"));
        }
        // A decode step (every row samples, in order) replays its bucket's graph, padded.
        let decode = samples.len() == n && samples.iter().enumerate().all(|(i, s)| s.0 == i);
        let launches = if decode && self.use_graphs {
            // n <= slots (one sample a sequence), so the bucket fits the sampling buffers.
            let bucket = n.next_power_of_two();
            self.write_table(rows, samples, bucket, bucket, &[])?;
            self.replay(bucket)?
        } else {
            let tiles = self.write_table(rows, samples, n, samples.len(), &[])?;
            self.launch_all(n, samples.len(), tiles, Tail::Sample)?
        };
        let buf = self.pending.back().map_or(0, |&(b, _)| 1 - b);
        let got = samples.len();
        let src = self.sampled.slice(..got.max(1));
        self.stream
            .memcpy_dtoh(&src, &mut self.readback[buf])
            .map_err(|e| device_error(self.ordinal, e))?;
        self.copied[buf].record(&self.stream).map_err(|e| device_error(self.ordinal, e))?;
        self.pending.push_back((buf, got));
        self.last_samples = got;
        Ok(launches)
    }

    /// The tokens of the oldest step not yet read, in its `samples` order (waits for that step
    /// only).
    fn score(&mut self, rows: &[DeviceRow], targets: &[(usize, u32)]) -> Result<Vec<(f64, bool)>> {
        let shape = (self.slots, self.m.heads.max_len, self.m.vocab);
        check_scoring(rows, targets, shape, !self.pending.is_empty())?;
        if rows.len() > self.max_rows {
            return Err(device_error(
                self.ordinal,
                format!("a step of more than {} rows", self.max_rows),
            ));
        }
        let n = targets.len();
        let tiles = self.write_table(rows, &[], rows.len(), 0, targets)?;
        self.launch_all(rows.len(), n, tiles, Tail::Score)?;
        let err = |e| device_error(self.ordinal, e);
        let logprob = self.stream.clone_dtoh(&self.logprob.slice(..n.max(1))).map_err(err)?;
        let greedy = self.stream.clone_dtoh(&self.greedy.slice(..n.max(1))).map_err(err)?;
        Ok(logprob.into_iter().zip(greedy).take(n).map(|(l, g)| (l, g != 0)).collect())
    }

    fn tokens(&mut self) -> Result<Vec<u32>> {
        let (buf, n) = self
            .pending
            .pop_front()
            .ok_or_else(|| device_error(self.ordinal, "no step is waiting to be read"))?;
        self.copied[buf].synchronize().map_err(|e| device_error(self.ordinal, e))?;
        let got = self.readback[buf].as_slice().map_err(|e| device_error(self.ordinal, e))?;
        Ok(got[..n].to_vec())
    }
}

/// `kernels.cu` compiled by NVRTC to machine code for `arch` (`sm_90`): a cubin, not PTX, so
/// that an NVRTC newer than the driver (CUDA's minor-version compatibility covers machine code,
/// while a driver refuses PTX of an ISA newer than its own) still gives kernels it loads.
fn compile_cubin(arch: &str) -> std::result::Result<Vec<u8>, String> {
    let src = std::ffi::CString::new(SOURCE).map_err(|e| e.to_string())?;
    let name = std::ffi::CString::new("kernels.cu").map_err(|e| e.to_string())?;
    let prog = nvrtc::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    let mut options: Vec<String> = NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    // Safety: `prog` is a live program until destroyed below, and the buffers are sized by
    // NVRTC's own size queries.
    let result = unsafe {
        match nvrtc::compile_program(prog, &options) {
            Err(e) => {
                let log = nvrtc::get_program_log(prog).unwrap_or_default();
                let log: Vec<u8> = log.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
                Err(format!("{e:?} ({}): {}", options.join(" "), String::from_utf8_lossy(&log)))
            }
            Ok(()) => {
                let mut size = 0usize;
                let cubin = nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size).result().and_then(|()| {
                    let mut cubin = vec![0u8; size];
                    nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _)
                        .result()
                        .map(|()| cubin)
                });
                cubin.map_err(|e| format!("{e:?}"))
            }
        }
    };
    // Safety: created above and not used after.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    result
}

/// An event without timing: waiting on it spins, which a step's few hundred microseconds want
/// rather than a sleep and a wake-up.
fn event(ctx: &Arc<CudaContext>, ordinal: usize) -> Result<CudaEvent> {
    ctx.new_event(None).map_err(|e| device_error(ordinal, e))
}

fn pinned<T: DeviceRepr>(
    ctx: &Arc<CudaContext>,
    n: usize,
    ordinal: usize,
) -> Result<PinnedHostSlice<T>> {
    // Plain page-locked memory (not write-combined): the host reads the tokens back from it.
    unsafe { ctx.alloc_pinned_with_flags::<T>(n.max(1), 0) }.map_err(|e| device_error(ordinal, e))
}

#[cfg(test)]
impl CudaStep {
    /// The `attention` kernel alone over a test's own queries (`qkv`: `[rows][q | k | v]`),
    /// caches (`[slot][kv head][max_len][head_dim]` bf16 bits, as many slots as the step's),
    /// rows and tiles (first row, rows): every row's output, `[rows][q heads · head_dim]`.
    pub(super) fn attention_alone(
        &self,
        qkv: &[f32],
        (k_cache, v_cache): (&[u16], &[u16]),
        (pos, slot): (&[i32], &[i32]),
        tiles: &[(u32, u32)],
    ) -> Result<Vec<f32>> {
        let (s, o, h) = (&self.stream, self.ordinal, self.m.heads);
        let rows = pos.len();
        let (tile_row, tile_len): (Vec<i32>, Vec<i32>) =
            tiles.iter().map(|&(r, n)| (r as i32, n as i32)).unzip();
        let qkv = upload(s, qkv, o)?;
        let (kc, vc) = (upload(s, k_cache, o)?, upload(s, v_cache, o)?);
        let (pos, slot) = (upload(s, pos, o)?, upload(s, slot, o)?);
        let (tile_row, tile_len) = (upload(s, &tile_row, o)?, upload(s, &tile_len, o)?);
        // Scratch as a step leaves it: anything (here NaN) where a row's scores are not.
        let scores = upload(s, &vec![f32::NAN; rows * h.q * h.max_len], o)?;
        let out = zeros::<f32>(s, rows * h.q * h.dim, o)?;
        self.launch_attention(
            (addr(&qkv, s), addr(&kc, s), addr(&vc, s)),
            (addr(&pos, s), addr(&slot, s), addr(&tile_row, s), addr(&tile_len, s)),
            (addr(&scores, s), addr(&out, s)),
            tiles.len(),
        )?;
        s.clone_dtoh(&out).map_err(|e| device_error(o, e))
    }

    /// A product alone (as a step launches it) over a test's own x (`[..][k]`; the product's
    /// row r is x's row `xrows[r]`, or r), weights `w` (`[n][k]`, bf16 on tensor cores when
    /// `bf16`), fused norm weight `nw`, and `out`'s prior contents (`Out::Add` adds to them):
    /// the output (`[rows][n]`, or `[rows][n / 2]` for `Out::SiluMul`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_alone(
        &self,
        x: &[f32],
        xrows: Option<&[i32]>,
        rows: usize,
        (w, bf16): (Tensor, bool),
        nw: Option<&[f32]>,
        (out, mode): (&[f32], Out),
        (n, k): (usize, usize),
    ) -> Result<Vec<f32>> {
        let (s, o) = (&self.stream, self.ordinal);
        let w = Matrix::new(w, bf16, s, o)?;
        let x = upload(s, x, o)?;
        let xrows = xrows.map(|r| upload(s, r, o)).transpose()?;
        let nw = nw.map(|v| upload(s, v, o)).transpose()?;
        let out = upload(s, out, o)?;
        let null = 0u64;
        let (xr, nw_a) =
            (xrows.as_ref().map_or(null, |b| addr(b, s)), nw.as_ref().map_or(null, |b| addr(b, s)));
        self.launch_gemm(addr(&x, s), xr, &w, (addr(&out, s), mode), nw_a, rows, (n, k))?;
        s.clone_dtoh(&out).map_err(|e| device_error(o, e))
    }

    pub(super) fn model(&self) -> &StepModel {
        &self.m
    }
}
