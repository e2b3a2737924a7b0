// benchgen's own CUDA kernels for the packed decode step (see mod.rs). NVRTC compiles this file
// at run time with `NVRTC_OPTIONS` (mod.rs), among them --fmad=false: no product is fused into a
// following add unless written as fmaf, so each operation rounds where the CPU references in
// reference.rs round, and the two give the same bits. Activations are f32; the KV cache holds
// bf16 bits (`unsigned short`), rounded as the CPU's `to_bf16` rounds.
//
// A kernel launched with more than 256 threads a block declares it with __launch_bounds__, so
// that ptxas keeps its registers within what such a block may use (65,536 a block; up to 256
// threads fit at any count, 255 being a thread's most): the CPU driver in tools/cuda_emulator
// refuses larger launches of a kernel that does not.
//
// Every kernel computes a row (one sequence's token) from that row's data alone, in an order
// fixed by the launch geometry the caller passes (never by the batch), so a row's results do
// not depend on its batch-mates or the batch size.

#define FULL_MASK 0xffffffffu
#define NO_INDEX 0x7fffffff
// NVRTC compiles without headers, so there is no INFINITY.
#define NEG_INF __int_as_float(0xff800000)

// ---- helpers -------------------------------------------------------------------------------

// The CPU's `to_bf16`: NaN quieted, values below the normal range flushed to a signed zero,
// otherwise round to nearest even.
__device__ __forceinline__ unsigned short to_bf16(float f) {
    unsigned int b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((b >> 16) | 0x40u);
    if ((b & 0x7f800000u) == 0u) return (unsigned short)((b >> 16) & 0x8000u);
    return (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float from_bf16(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// The host path's `exp` (model/host/ops.rs), operation for operation: Cephes' polynomial on
// x = n ln2 + r, 2^n built in the exponent bits. (`expf` differs from it in the last bits.)
__device__ __forceinline__ float exp_host(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.3f);
    float t = x * 1.44269504088896340736f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = (x - n * 0.6933594f) - n * -2.1219444e-4f;
    float p = ((((1.9875692e-4f * r + 1.3981999e-3f) * r + 8.333452e-3f) * r + 4.1665796e-2f) * r
               + 1.6666665e-1f) * r + 0.5f;
    float e = p * r * r + r + 1.0f;
    int ni = (int)__float_as_uint(t) - 0x4B400000;
    return e * __uint_as_float(((unsigned int)(ni + 127)) << 23);
}

// Butterfly over a warp: after the step with offset o, lane i holds v[i] + v[i ^ o]; every lane
// ends with the same sum (reference.rs: `warp_sum`). f32 for activations, f64 for the
// sampler's weights.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// The block's sum of each thread's `v`, in every thread: each warp's butterfly, the warp sums
// through shared memory (zero past the last warp), and the butterfly again. blockDim.x is a
// multiple of 32, at most 1024.
template <typename T>
__device__ T block_sum(T v, T* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? shared[lane] : (T)0);
}

__device__ float block_max(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? shared[lane] : NEG_INF);
}

// The block's largest (or, with `least`, smallest) 64-bit value, in every thread: exact in any
// order.
__device__ unsigned long long block_extreme_u64(unsigned long long v, bool least,
                                                unsigned long long* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long u = __shfl_xor_sync(FULL_MASK, v, o);
        v = least ? (u < v ? u : v) : (u > v ? u : v);
    }
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : (least ? ~0ull : 0ull);
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long u = __shfl_xor_sync(FULL_MASK, v, o);
        v = least ? (u < v ? u : v) : (u > v ? u : v);
    }
    return v;
}

__device__ __forceinline__ float widen(float w) { return w; }
__device__ __forceinline__ float widen(unsigned short w) { return from_bf16(w); }

// ---- kernels -------------------------------------------------------------------------------

// Rotary embedding and the KV-cache write for every row's q and k heads. qkv rows are
// [q heads | k heads | v heads] of head_dim each; grid (rows, q_heads + kv_heads), any block
// size. The first `half` dims of each head pair with the next `half` (Llama's rotate-half; the
// rest of a partially rotary head passes through), at the row's position `pos[row]` in the
// [positions][half] cos and sin tables. k heads (rotated) and v heads are then written as bf16
// to the caches, [slot][kv_head][max_len][head_dim], at the row's slot and position.
extern "C" __global__ void rope_kv_write(float* qkv, const float* cos_t, const float* sin_t,
                                         const int* pos, const int* slot,
                                         unsigned short* k_cache, unsigned short* v_cache,
                                         int q_heads, int kv_heads, int head_dim, int half,
                                         int max_len) {
    int row = blockIdx.x, head = blockIdx.y;
    size_t stride = (size_t)(q_heads + 2 * kv_heads) * head_dim;
    float* h = qkv + row * stride + (size_t)head * head_dim;
    int p = pos[row];
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float c = cos_t[(size_t)p * half + j], s = sin_t[(size_t)p * half + j];
        float x1 = h[j], x2 = h[j + half];
        h[j] = x1 * c - x2 * s;
        h[j + half] = x1 * s + x2 * c;
    }
    if (head < q_heads) return;
    __syncthreads();
    int kvh = head - q_heads;
    size_t at = (((size_t)slot[row] * kv_heads + kvh) * max_len + p) * head_dim;
    const float* v = qkv + row * stride + (size_t)(q_heads + kv_heads + kvh) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        k_cache[at + d] = to_bf16(h[d]);
        v_cache[at + d] = to_bf16(v[d]);
    }
}

// Attention, ragged and tiled: each row's q heads against its own sequence's cache, positions
// 0..=pos[row] of slot[row] (GQA: q head h reads kv head h / (q_heads / kv_heads)). A tile is
// tile_len[i] consecutive rows of one slot from row tile_row[i] (a prompt's rows in a prefill
// step; one row at decode); tiles of no rows do nothing. Grid (tiles, kv_heads), blockDim.x ==
// ATT_POS: a block takes its tile's rows and the q heads of one kv head (ATT_Q queries at a
// time), so each key and value it loads from the cache (ATT_POS positions at a time, through
// shared memory) serves every one of them, not one q head of one row.
//
// A query's arithmetic is the same whatever its tile, so a row's result does not depend on its
// batch-mates or on how a step's rows were cut into tiles (reference.rs: `attention`, with
// threads = ATT_POS): thread t scores positions t, t + ATT_POS, … (a dot product over head_dim
// in order, then * scale) into `scores` ([rows][q_heads][max_len] scratch); the block's max;
// e = exp(score - max) and their block sum z, each thread adding its own positions in order;
// then each value out[d] is the sum over positions in order of e * v[d], divided by z.
// out: [rows][q_heads * head_dim]. head_dim is even and at most ATT_MAX_DIM.
#define ATT_POS 128
#define ATT_Q 16
#define ATT_MAX_DIM 128
// A cache row of head_dim bf16 values as head_dim / 2 words, padded by one word so that the
// threads of a warp, each reading its own position's word w, hit 32 different banks.
#define ATT_STRIDE (ATT_MAX_DIM / 2 + 1)
// Outputs (query, dim) a thread of a block sums at most: ATT_Q queries of ATT_MAX_DIM values.
#define ATT_OUTS (ATT_Q * ATT_MAX_DIM / ATT_POS)

// Query qi of a tile from row r0, kv head kvh: row r0 + qi / group, q head kvh · group +
// qi % group, as an index into [rows][q_heads] (of the scores' and the output's rows).
__device__ __forceinline__ size_t att_query(int r0, int qi, int group, int kvh, int q_heads) {
    return (size_t)(r0 + qi / group) * q_heads + kvh * group + qi % group;
}

// Positions t0 .. t0 + n - 1 of one slot and kv head's cache into `tile` (word w of position
// p at p * stride + w), by consecutive threads taking consecutive words.
__device__ __forceinline__ void load_tile(unsigned* tile, const unsigned short* cache, int t0,
                                          int n, int words, int stride) {
    const unsigned* src = (const unsigned*)(cache + (size_t)t0 * (2 * words));
    for (int e = threadIdx.x; e < n * words; e += blockDim.x) {
        int p = e / words, w = e - p * words;
        tile[p * stride + w] = src[e];
    }
}

// (128: ATT_POS, spelled out for tools/cuda_emulator/build.sh, which reads the bound.)
extern "C" __global__ void __launch_bounds__(128) attention(const float* qkv,
        const unsigned short* k_cache, const unsigned short* v_cache, const int* pos,
        const int* slot, const int* tile_row, const int* tile_len, float* scores, float* out,
        int q_heads, int kv_heads, int head_dim, int max_len, float scale) {
    __shared__ unsigned tile[ATT_POS * ATT_STRIDE];
    // The chunk's queries ([ATT_Q][head_dim]) while scoring, then a tile of their e values
    // ([ATT_Q][ATT_POS]) while summing values.
    __shared__ float qe[ATT_Q * ATT_POS];
    __shared__ float shared[32];
    __shared__ float zs[ATT_Q];
    __shared__ int last_pos[ATT_Q];
    int n = tile_len[blockIdx.x];
    if (n == 0) return;
    int r0 = tile_row[blockIdx.x], kvh = blockIdx.y, group = q_heads / kv_heads;
    int words = head_dim / 2, stride = words + 1, tid = threadIdx.x;
    size_t width = (size_t)(q_heads + 2 * kv_heads) * head_dim;
    size_t base = ((size_t)slot[r0] * kv_heads + kvh) * max_len * head_dim;
    const unsigned short* kc = k_cache + base;
    const unsigned short* vc = v_cache + base;
    int queries = n * group;
    for (int q0 = 0; q0 < queries; q0 += ATT_Q) {
        int qn = min(ATT_Q, queries - q0);
        // Query i of the chunk is row r0 + (q0 + i) / group, q head kvh * group + (q0 + i) % group.
        __syncthreads();
        for (int e = tid; e < qn * head_dim; e += blockDim.x) {
            int i = e / head_dim, d = e - i * head_dim, qi = q0 + i;
            qe[e] = qkv[(size_t)(r0 + qi / group) * width
                        + (size_t)(kvh * group + qi % group) * head_dim + d];
        }
        int last = 0;
        if (tid < qn) last_pos[tid] = pos[r0 + (q0 + tid) / group];
        __syncthreads();
        for (int i = 0; i < qn; i++) last = max(last, last_pos[i]);
        float m[ATT_Q];
#pragma unroll
        for (int i = 0; i < ATT_Q; i++) m[i] = NEG_INF;
        for (int t0 = 0; t0 <= last; t0 += ATT_POS) {
            int np = min(ATT_POS, last + 1 - t0);
            __syncthreads();
            load_tile(tile, kc, t0, np, words, stride);
            __syncthreads();
            int t = t0 + tid;
            if (tid >= np) continue;
            float s[ATT_Q];
#pragma unroll
            for (int i = 0; i < ATT_Q; i++) s[i] = 0.0f;
            const unsigned* k = tile + tid * stride;
            for (int w = 0; w < words; w++) {
                unsigned kw = k[w];
                float k0 = from_bf16((unsigned short)(kw & 0xffffu));
                float k1 = from_bf16((unsigned short)(kw >> 16));
#pragma unroll
                for (int i = 0; i < ATT_Q; i++) {
                    if (i < qn) {
                        s[i] = s[i] + qe[i * head_dim + 2 * w] * k0;
                        s[i] = s[i] + qe[i * head_dim + 2 * w + 1] * k1;
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < ATT_Q; i++) {
                if (i < qn && t <= last_pos[i]) {
                    float v = s[i] * scale;
                    scores[att_query(r0, q0 + i, group, kvh, q_heads) * max_len + t] = v;
                    m[i] = fmaxf(m[i], v);
                }
            }
        }
        float z[ATT_Q];
#pragma unroll
        for (int i = 0; i < ATT_Q; i++) {
            z[i] = 0.0f;
            if (i < qn) m[i] = block_max(m[i], shared);
        }
        for (int t = tid; t <= last; t += ATT_POS) {
#pragma unroll
            for (int i = 0; i < ATT_Q; i++) {
                if (i < qn && t <= last_pos[i]) {
                    float* sc = scores + att_query(r0, q0 + i, group, kvh, q_heads) * max_len;
                    float e = exp_host(sc[t] - m[i]);
                    sc[t] = e;
                    z[i] = z[i] + e;
                }
            }
        }
#pragma unroll
        for (int i = 0; i < ATT_Q; i++) {
            if (i < qn) {
                float sum = block_sum(z[i], shared);
                if (tid == 0) zs[i] = sum;
            }
        }
        // Thread tid sums outputs o = tid + j * ATT_POS of the chunk: query o / head_dim,
        // dim o % head_dim.
        float acc[ATT_OUTS];
#pragma unroll
        for (int j = 0; j < ATT_OUTS; j++) acc[j] = 0.0f;
        for (int t0 = 0; t0 <= last; t0 += ATT_POS) {
            int np = min(ATT_POS, last + 1 - t0);
            __syncthreads();
            load_tile(tile, vc, t0, np, words, stride);
            // Past a query's own positions its scores are whatever the scratch held: the sums
            // below stop before them.
            for (int e = tid; e < qn * ATT_POS; e += blockDim.x) {
                int i = e / ATT_POS, p = e - i * ATT_POS;
                if (p < np)
                    qe[e] = scores[att_query(r0, q0 + i, group, kvh, q_heads) * max_len + t0 + p];
            }
            __syncthreads();
#pragma unroll
            for (int j = 0; j < ATT_OUTS; j++) {
                int o = tid + j * ATT_POS, i = o / head_dim, d = o - i * head_dim;
                if (i >= qn) continue;
                // Only the query's own positions: past them the cache may hold anything.
                int np_i = min(np, last_pos[i] + 1 - t0);
                const unsigned* vrow = tile + d / 2;
                const float* e = qe + i * ATT_POS;
                float a = acc[j];
                for (int p = 0; p < np_i; p++) {
                    unsigned vw = vrow[p * stride];
                    a = a + e[p] * from_bf16((unsigned short)(d & 1 ? vw >> 16 : vw & 0xffffu));
                }
                acc[j] = a;
            }
        }
#pragma unroll
        for (int j = 0; j < ATT_OUTS; j++) {
            int o = tid + j * ATT_POS, i = o / head_dim, d = o - i * head_dim;
            if (i >= qn) continue;
            out[att_query(r0, q0 + i, group, kvh, q_heads) * head_dim + d] = acc[j] / zs[i];
        }
    }
}

// out[r][i] = silu(gate) * up for rows gu[r] = [gate | up] of 2·inter: the host's
// `silu_mul`, operation for operation. Any grid (grid-stride loop).
__device__ __forceinline__ float silu_times(float x, float u) {
    return x / (1.0f + exp_host(-x)) * u;
}

extern "C" __global__ void silu_mul(const float* gu, float* out, int inter, int rows) {
    size_t n = (size_t)rows * inter;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / inter, c = i % inter;
        out[i] = silu_times(gu[r * 2 * inter + c], gu[r * 2 * inter + inter + c]);
    }
}

// Greedy sampling (sample_rows at temperature 0): the first index of the largest value; NaNs
// never win; 0 when every value is NaN.
__device__ __forceinline__ void better(float& best, int& idx, float v, int i) {
    if (v > best || (v == best && i < idx)) {
        best = v;
        idx = i;
    }
}

// The first index of the row's largest value, in every thread of the block.
__device__ unsigned int row_argmax(const float* l, int vocab) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ unsigned int result;
    float best = NEG_INF;
    int idx = NO_INDEX;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) better(best, idx, l[i], i);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        better(best, idx, __shfl_xor_sync(FULL_MASK, best, o), __shfl_xor_sync(FULL_MASK, idx, o));
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = idx;
    }
    __syncthreads();
    if (warp == 0) {
        best = lane < warps ? sv[lane] : NEG_INF;
        idx = lane < warps ? si[lane] : NO_INDEX;
        for (int o = 16; o > 0; o >>= 1)
            better(best, idx, __shfl_xor_sync(FULL_MASK, best, o),
                   __shfl_xor_sync(FULL_MASK, idx, o));
        if (lane == 0) result = idx == NO_INDEX ? 0u : (unsigned int)idx;
    }
    __syncthreads();
    return result;
}

// ---- embedding, products, sampling ---------------------------------------------------------

// A row's input token: input[row] when it is a prompt token (>= 0), else (-1) the token the
// row's sequence sampled last, which sampling left in slot_token[slot[row]] on the device.
// out[row] = the token's row of the table, widened to f32. Grid rows, any block size.
template <typename W>
__device__ void embed_rows_impl(const W* table, const int* input, const int* slot,
                                const unsigned int* slot_token, float* out, int hidden) {
    int row = blockIdx.x, t = input[row];
    unsigned int tok = t >= 0 ? (unsigned int)t : slot_token[slot[row]];
    const W* e = table + (size_t)tok * hidden;
    float* o = out + (size_t)row * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = widen(e[i]);
}

extern "C" __global__ void embed_rows_f32(const float* table, const int* input, const int* slot,
                                          const unsigned int* slot_token, float* out,
                                          int hidden) {
    embed_rows_impl(table, input, slot, slot_token, out, hidden);
}

extern "C" __global__ void embed_rows_bf16(const unsigned short* table, const int* input,
                                           const int* slot, const unsigned int* slot_token,
                                           float* out, int hidden) {
    embed_rows_impl(table, input, slot, slot_token, out, hidden);
}

// Row r of a product's input: x's row xrows[r], or row r without xrows (the LM head takes only
// the rows that sample).
__device__ __forceinline__ const float* x_row(const float* x, const int* xrows, int r, int k) {
    return x + (size_t)(xrows ? xrows[r] : r) * k;
}

// The products' fused RMSNorm: with `nw` (the norm's weight), x holds residual rows and the
// product's input is RMSNorm(x) · nw, each value x[j] * scale * nw[j], with the row's scale =
// 1 / sqrt(mean(x²) + eps), thread t summing the squares of elements t, t + blockDim.x, … in
// order and the block adding the threads' sums by block_sum's tree (reference.rs:
// `add_rms_norm`, with the products' block size): for all the block's rows at once, so two
// barriers whatever their number. The residual connection itself is the products' mode 1: a
// row's residual gets its delta added where the product that makes it writes it. The block's
// `count` rows' scales go to `scale`; `sums` holds count × (blockDim.x / 32) floats; every
// thread of the block calls this.
__device__ void row_scales(const float* x, const int* xrows, int r0, int count, int k,
                           float eps, float* scale, float* sums) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int r = 0; r < count; r++) {
        const float* row = x_row(x, xrows, r0 + r, k);
        float s = 0.0f;
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            float v = row[i];
            s = s + v * v;
        }
        s = warp_sum(s);
        if (lane == 0) sums[r * warps + warp] = s;
    }
    __syncthreads();
    for (int r = warp; r < count; r += warps) {
        float s = warp_sum(lane < warps ? sums[r * warps + lane] : 0.0f);
        if (lane == 0) scale[r] = 1.0f / sqrtf(s / (float)k + eps);
    }
    __syncthreads();
}

// A product's input value j of a row: x[j], or with the fused norm x[j] * scale * nw[j].
__device__ __forceinline__ float input_at(const float* row, int j, const float* nw, float scale) {
    return nw ? row[j] * scale * nw[j] : row[j];
}

// Rows a warp of `gemm_f32` computes at once, and k values a lane takes at a time.
#define GEMM_ROWS 8
#define GEMM_VEC 8

// w[j .. j+8] (zeros past k), as two aligned float4 loads where the row allows.
__device__ __forceinline__ void load_w(const float* w, int j, int k, float* v) {
    if (j + GEMM_VEC <= k && ((k & 3) == 0)) {
        float4 a = *(const float4*)(w + j), b = *(const float4*)(w + j + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
        for (int e = 0; e < GEMM_VEC; e++) v[e] = j + e < k ? w[j + e] : 0.0f;
    }
}

// f32 products on CUDA cores: out[r][c] = sum over j of x[xr][j] * w[c][j] for r < rows, c < n,
// where xr = xrows[r] (or r without xrows: the LM head takes only the rows that sample).
// x: [..][k] f32, w: [n][k] f32, out: [rows][n]. With `nw` the input is RMSNorm(x) · nw
// (row_scales); with `mode` 1 the product is added to out (out = out + sum: the residual
// connection), with 0 it is written. One warp per (column c, group of GEMM_ROWS rows): grid (ceil(n / warps a block),
// ceil(rows / GEMM_ROWS)), blockDim a multiple of 32. Lane l accumulates with fmaf, in order,
// j = 8l .. 8l+7, then 8l+256 .., …; the warp's butterfly adds the lanes. Every output is one
// sequence of roundings fixed by k alone: no split over k, whatever the rows. reference.rs:
// `gemm_dot`.
extern "C" __global__ void gemm_f32(const float* x, const int* xrows, const float* w, float* out,
                                    int rows, int n, int k, const float* nw, float eps,
                                    int mode) {
    __shared__ float sums[GEMM_ROWS * 32];
    __shared__ float scale[GEMM_ROWS];
    int lane = threadIdx.x & 31;
    int col = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int r0 = blockIdx.y * GEMM_ROWS;
    int count = rows - r0 < GEMM_ROWS ? rows - r0 : GEMM_ROWS;
    if (nw) row_scales(x, xrows, r0, count, k, eps, scale, sums);
    if (col >= n) return;
    const float* xs[GEMM_ROWS];
    // x_row's row choice written out: rows past `count` read row 0 (in bounds, never stored), and
    // routing this through x_row changed NVRTC's register allocation for this kernel, which has
    // not been timed on a GPU yet.
    for (int r = 0; r < GEMM_ROWS; r++) {
        int xr = r < count ? (xrows ? xrows[r0 + r] : r0 + r) : 0;
        xs[r] = x + (size_t)xr * k;
    }
    float acc[GEMM_ROWS];
    for (int r = 0; r < GEMM_ROWS; r++) acc[r] = 0.0f;
    const float* wc = w + (size_t)col * k;
    for (int j = lane * GEMM_VEC; j < k; j += 32 * GEMM_VEC) {
        float wv[GEMM_VEC];
        load_w(wc, j, k, wv);
        int m = k - j < GEMM_VEC ? k - j : GEMM_VEC;
        for (int r = 0; r < GEMM_ROWS; r++) {
            if (r < count) {
                float sc = nw ? scale[r] : 1.0f;
                for (int e = 0; e < m; e++)
                    acc[r] = fmaf(input_at(xs[r], j + e, nw, sc), wv[e], acc[r]);
            }
        }
    }
    for (int r = 0; r < GEMM_ROWS; r++) {
        float s = warp_sum(acc[r]);
        if (lane == 0 && r < count) {
            float* o = out + (size_t)(r0 + r) * n + col;
            *o = mode == 1 ? *o + s : s;
        }
    }
}

// bf16 products on tensor cores: out[r][c] = sum over j of bf16(x[xr][j]) * w[c][j], with x
// rounded to bf16 (the CPU's `to_bf16`, as the host path's bf16 products round it), w: [n][k]
// bf16 bits, out, xrows, nw and mode 0 and 1 as gemm_f32's; mode 2 is the gate/up product with
// SiLU·mul fused in: w's rows are gate and up interleaved (2j the gate's row j, 2j+1 the up's),
// and out ([rows][n / 2]) gets silu(gate) * up per pair, as silu_mul computes it (a lane holds
// both of a pair: C's columns 2t and 2t+1). Two kernels, one arithmetic: each output is one
// accumulator that mma.m16n8k16 adds k's chunks of 16 into, in order from 0 (k padded to a
// multiple of 16 with zeros, rows past `rows` and columns past n read as zero and are not
// written): no split over k, and a row's products do not involve its tile-mates', so its
// result does not depend on the batch, nor on which kernel the step's row count picks.
// reference.rs: `gemm_mma_dot`.
//
// gemm_bf16 (steps of a few rows: decode, where the weights' reads want every warp there can
// be): one warp per tile of 16 rows and 8 columns, its operands loaded straight from global
// memory; grid (ceil(n / (8 · warps a block)), ceil(rows / 16)), blockDim a multiple of 32.
//
// gemm_bf16_tiled (steps of many rows: prefill, large batches): a block of 4 warps per tile of
// TILE_M rows and TILE_N columns, staging TILE_K k values of x (converted once) and of w at a
// time in shared memory, each warp computing 32 × 32 of it from there, so each value loaded
// serves 64 rows or columns instead of 16 or 8; grid (ceil(n / TILE_N), ceil(rows / TILE_M)),
// blockDim 128.
__device__ __forceinline__ void mma_bf16_16816(float* d, const unsigned int* a,
                                               const unsigned int* b) {
#ifdef BENCHGEN_CUDA_EMULATOR
    emu_mma_bf16_16816(d, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two bf16 values of a row as one .bf16x2 register, the lower index in the low half: x's
// (input_at's) rounded (zero past k or without a row), w's as stored (zero past k or without a
// column).
__device__ __forceinline__ unsigned int x_pair(const float* row, int j, int k, const float* nw,
                                               float scale) {
    unsigned int lo = row && j < k ? to_bf16(input_at(row, j, nw, scale)) : 0u;
    unsigned int hi = row && j + 1 < k ? to_bf16(input_at(row, j + 1, nw, scale)) : 0u;
    return lo | (hi << 16);
}

__device__ __forceinline__ unsigned int w_pair(const unsigned short* row, int j, int k) {
    unsigned int lo = row && j < k ? row[j] : 0u;
    unsigned int hi = row && j + 1 < k ? row[j + 1] : 0u;
    return lo | (hi << 16);
}

// C's four values of a lane (rows r and r + 8, columns c and c + 1) to out, as `mode` says;
// rows from `end` and columns from n are not written.
__device__ __forceinline__ void mma_store(const float* acc, float* out, int r, int end, int c,
                                          int n, int mode) {
    for (int i = 0; i < 4; i += 2) {
        int row = i < 2 ? r : r + 8;
        if (row >= end) continue;
        if (mode == 2) {
            if (c + 1 < n) out[(size_t)row * (n / 2) + c / 2] = silu_times(acc[i], acc[i + 1]);
            continue;
        }
        for (int e = 0; e < 2; e++) {
            if (c + e < n) {
                float* o = out + (size_t)row * n + c + e;
                *o = mode == 1 ? *o + acc[i + e] : acc[i + e];
            }
        }
    }
}

extern "C" __global__ void gemm_bf16(const float* x, const int* xrows, const unsigned short* w,
                                     float* out, int rows, int n, int k, const float* nw,
                                     float eps, int mode) {
    __shared__ float sums[16 * 32];
    __shared__ float scale[16];
    // The PTX ISA's fragments of mma.m16n8k16 (bf16): lane = 4 · group + t. A (16 x 16, row
    // major): registers {row g, cols 2t, 2t+1}, {row g+8, same}, {row g, cols 2t+8, 2t+9},
    // {row g+8, same}. B (16 x 8): {k 2t, 2t+1 of column g}, {k 2t+8, 2t+9}. C/D (16 x 8):
    // row g, cols 2t, 2t+1, then row g+8, the same columns.
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int c0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * 8;
    int r0 = blockIdx.y * 16;
    int count = rows - r0 < 16 ? rows - r0 : 16;
    if (nw) row_scales(x, xrows, r0, count, k, eps, scale, sums);
    if (c0 >= n) return;  // the whole warp: mma.sync wants all 32 lanes
    const float* xa = 0;
    const float* xb = 0;
    if (g < count) xa = x_row(x, xrows, r0 + g, k);
    if (g + 8 < count) xb = x_row(x, xrows, r0 + g + 8, k);
    const unsigned short* wc = c0 + g < n ? w + (size_t)(c0 + g) * k : 0;
    float sa = nw && g < count ? scale[g] : 1.0f, sb = nw && g + 8 < count ? scale[g + 8] : 1.0f;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < k; k0 += 16) {
        int j = k0 + 2 * t;
        unsigned int a[4] = {x_pair(xa, j, k, nw, sa), x_pair(xb, j, k, nw, sb),
                             x_pair(xa, j + 8, k, nw, sa), x_pair(xb, j + 8, k, nw, sb)};
        unsigned int b[2] = {w_pair(wc, j, k), w_pair(wc, j + 8, k)};
        mma_bf16_16816(acc, a, b);
    }
    mma_store(acc, out, r0 + g, r0 + count, c0 + 2 * t, n, mode);
}

#define TILE_M 64
#define TILE_N 64
#define TILE_K 32
// A staged row of TILE_K bf16 values is TILE_K / 2 words, padded to TILE_WORDS so that the
// lanes of a warp reading fragments (rows or columns g, words t) hit 32 different banks.
#define TILE_WORDS 20

extern "C" __global__ void __launch_bounds__(128) gemm_bf16_tiled(const float* x,
        const int* xrows, const unsigned short* w, float* out, int rows, int n, int k,
        const float* nw, float eps, int mode) {
    __shared__ unsigned int xs[TILE_M * TILE_WORDS];
    __shared__ unsigned int ws[TILE_N * TILE_WORDS];
    __shared__ float sums[TILE_M * 4];
    __shared__ float scale[TILE_M];
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int r0 = blockIdx.y * TILE_M, c0 = blockIdx.x * TILE_N;
    int count = min(TILE_M, rows - r0), cols = min(TILE_N, n - c0);
    if (nw) row_scales(x, xrows, r0, count, k, eps, scale, sums);
    // Warp (wm, wn): the block's rows 32 wm .. (two m16 tiles), columns 32 wn .. (four n8).
    int wm = warp >> 1, wn = warp & 1;
    float acc[2][4][4];
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < 4; q++)
            for (int e = 0; e < 4; e++) acc[i][q][e] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += TILE_K) {
        __syncthreads();
        // Word p of a stage: row (or column) p / 16, its k pair k0 + 2 (p % 16).
        for (int p = tid; p < TILE_M * TILE_K / 2; p += blockDim.x) {
            int r = p >> 4, j = k0 + 2 * (p & 15);
            const float* row = r < count ? x_row(x, xrows, r0 + r, k) : 0;
            xs[r * TILE_WORDS + (p & 15)] = x_pair(row, j, k, nw, nw && r < count ? scale[r] : 1.0f);
        }
        for (int p = tid; p < TILE_N * TILE_K / 2; p += blockDim.x) {
            int c = p >> 4, j = k0 + 2 * (p & 15);
            ws[c * TILE_WORDS + (p & 15)] = w_pair(c < cols ? w + (size_t)(c0 + c) * k : 0, j, k);
        }
        __syncthreads();
        for (int ks = 0; ks < TILE_K && k0 + ks < k; ks += 16) {
            int wd = ks / 2 + t;
            unsigned int a[2][4], b[4][2];
            for (int i = 0; i < 2; i++) {
                const unsigned int* ra = xs + (wm * 32 + i * 16 + g) * TILE_WORDS + wd;
                a[i][0] = ra[0];
                a[i][1] = ra[8 * TILE_WORDS];
                a[i][2] = ra[4];
                a[i][3] = ra[8 * TILE_WORDS + 4];
            }
            for (int q = 0; q < 4; q++) {
                const unsigned int* rb = ws + (wn * 32 + q * 8 + g) * TILE_WORDS + wd;
                b[q][0] = rb[0];
                b[q][1] = rb[4];
            }
            for (int i = 0; i < 2; i++)
                for (int q = 0; q < 4; q++) mma_bf16_16816(acc[i][q], a[i], b[q]);
        }
    }
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < 4; q++)
            mma_store(acc[i][q], out, r0 + wm * 32 + i * 16 + g, r0 + count,
                      c0 + wn * 32 + q * 8 + 2 * t, n, mode);
}

// Seeded sampling, the CPU's (engine/sampling.rs) without its sort. Tokens are ranked by a
// 64-bit key, larger first: the logit's bits in IEEE total order above the complement of the
// index (so equal logits rank the lower index first, as the CPU's sort does). Each cut the CPU
// makes by walking the sorted order — top-k's k-th token, top-p's first token where the
// cumulative mass reaches p, the drawn token where it passes u · total — is the largest key T
// whose mass "at or above T" still meets the cut, found one key bit at a time, each bit one
// block reduction. Weights are the CPU's: exp(f64((logit - max) / t)), summed in f64 (by the
// block's tree, so a draw can differ from the CPU's only within rounding of a boundary).
__device__ __forceinline__ unsigned long long rank_key(float v, int i) {
    unsigned int b = __float_as_uint(v);
    unsigned int o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((unsigned long long)o << 32) | (unsigned long long)(0xffffffffu - (unsigned int)i);
}

// splitmix64's draw number `n` (0-based) from `seed`, as rng.rs's unit(): counter-based, so a
// sequence's n-th sampled token uses the same draw whatever the step it falls in.
__device__ __forceinline__ double unit_draw(unsigned long long seed, unsigned long long n) {
    unsigned long long z = seed + (n + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

// What a key-bit search sums over the row's tokens with key >= c (and >= floor): 0 a count,
// 1 the weight, 2 the weight / total.
__device__ double mass_at_or_above(const float* l, const double* wt, int vocab,
                                   unsigned long long c, unsigned long long floor, int what,
                                   double total, double* shared) {
    double s = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        unsigned long long key = rank_key(l[i], i);
        if (key >= c && key >= floor)
            s = s + (what == 0 ? 1.0 : what == 1 ? wt[i] : wt[i] / total);
    }
    return block_sum(s, shared);
}

// The largest key T with mass(T) >= cut (or > cut with `strict`); 0 when none.
__device__ unsigned long long key_search(const float* l, const double* wt, int vocab,
                                         unsigned long long floor, int what, double total,
                                         double cut, bool strict, double* shared) {
    unsigned long long t = 0;
    for (int b = 63; b >= 0; b--) {
        unsigned long long c = t | (1ull << b);
        double m = mass_at_or_above(l, wt, vocab, c, floor, what, total, shared);
        if (strict ? m > cut : m >= cut) t = c;
    }
    return t;
}

// One block per sampled row (rows given by the launch's grid). Row r's logits are logits[r],
// its parameters temperature[r] (greedy when <= 0), top_k[r] (0: off), top_p[r] (>= 1: off),
// seed[r] and draw[r] (the sequence's sampled-token count before this one). The token goes to
// out[r] and to slot_token[slot[r]], where the next step's embedding reads it. wt: [rows][vocab]
// f64 scratch.
extern "C" __global__ void __launch_bounds__(1024) sample_rows(const float* logits, int vocab, const float* temperature,
                                       const int* top_k, const double* top_p,
                                       const unsigned long long* seed, const int* draw,
                                       const int* slot, double* wt, unsigned int* slot_token,
                                       unsigned int* out) {
    __shared__ double shared[32];
    __shared__ unsigned long long shared_u[32];
    int r = blockIdx.x;
    const float* l = logits + (size_t)r * vocab;
    float t = temperature[r];
    unsigned int token;
    if (t <= 0.0f) {
        token = row_argmax(l, vocab);
    } else {
        double* w = wt + (size_t)r * vocab;
        unsigned long long floor = 0;
        if (top_k[r] > 0) floor = key_search(l, w, vocab, 0, 0, 0.0, (double)top_k[r], false, shared);
        unsigned long long top = 0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            unsigned long long key = rank_key(l[i], i);
            top = key > top ? key : top;
        }
        top = block_extreme_u64(top, false, shared_u);
        float max = l[0xffffffffu - (unsigned int)(top & 0xffffffffu)];
        double z = 0.0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            double e = 0.0;
            if (rank_key(l[i], i) >= floor) e = exp((double)((l[i] - max) / t));
            w[i] = e;
            z = z + e;
        }
        __syncthreads();
        double total = block_sum(z, shared);
        if (top_p[r] < 1.0) {
            // Never reached (rounding, p next to 1): the CPU keeps every candidate.
            unsigned long long cut = key_search(l, w, vocab, floor, 2, total, top_p[r], false, shared);
            if (cut > floor) floor = cut;
            total = mass_at_or_above(l, w, vocab, floor, floor, 1, 0.0, shared);
        }
        double target = unit_draw(seed[r], (unsigned long long)draw[r]) * total;
        unsigned long long pick = key_search(l, w, vocab, floor, 1, 0.0, target, true, shared);
        // No key passes the target only when rounding put it at the total: the CPU's walk then
        // ends on the last token kept.
        unsigned long long least = ~0ull;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            unsigned long long key = rank_key(l[i], i);
            if (key >= floor && key < least) least = key;
        }
        least = block_extreme_u64(least, true, shared_u);
        if (pick < least) pick = least;
        token = 0xffffffffu - (unsigned int)(pick & 0xffffffffu);
    }
    if (threadIdx.x == 0) {
        out[r] = token;
        slot_token[slot[r]] = token;
    }
}

// Multiple-choice scoring: one block per scored row r, log softmax(logits[r])[target[r]] in f64
// (the row's max exact; the sum of exp(v - max) over the vocabulary by the block's tree) into
// logprob[r], and whether the target is the row's first argmax into greedy[r].
extern "C" __global__ void __launch_bounds__(1024) score_rows(const float* logits, int vocab, const unsigned int* target,
                                      double* logprob, unsigned int* greedy) {
    __shared__ float shared_f[32];
    __shared__ double shared_d[32];
    const float* l = logits + (size_t)blockIdx.x * vocab;
    unsigned int best = row_argmax(l, vocab);
    float m = NEG_INF;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, l[i]);
    double max = (double)block_max(m, shared_f);
    double s = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) s = s + exp((double)l[i] - max);
    s = block_sum(s, shared_d);
    if (threadIdx.x == 0) {
        unsigned int t = target[blockIdx.x];
        logprob[blockIdx.x] = (double)l[t] - max - log(s);
        greedy[blockIdx.x] = best == t ? 1u : 0u;
    }
}
