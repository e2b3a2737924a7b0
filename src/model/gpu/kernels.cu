// benchgen's own CUDA kernels for the packed decode step (see mod.rs). NVRTC compiles this file
// at run time with `NVRTC_OPTIONS` (mod.rs), among them --fmad=false: no product is fused into a
// following add unless written as fmaf, so each operation rounds where the CPU references in
// reference.rs round, and the two give the same bits. Activations are f32; the KV cache holds
// bf16 bits (`unsigned short`), rounded as the CPU's `to_bf16` rounds.
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
// ends with the same sum (reference.rs: `warp_sum`).
__device__ __forceinline__ float warp_sum(float v) {
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
__device__ float block_sum(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? shared[lane] : 0.0f);
}

__device__ float block_max(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? shared[lane] : NEG_INF);
}

// ---- kernels -------------------------------------------------------------------------------

// One block per row (gridDim.x = rows). With `delta`, first residual += delta (the residual
// connection, written back); then out = residual * (1 / sqrt(mean(residual²) + eps)) * weight.
// Thread t sums the squares of elements t, t + blockDim.x, … in order.
extern "C" __global__ void add_rms_norm(float* residual, const float* delta, const float* weight,
                                        float* out, int hidden, float eps) {
    __shared__ float shared[32];
    float* x = residual + (size_t)blockIdx.x * hidden;
    const float* d = delta ? delta + (size_t)blockIdx.x * hidden : 0;
    float* o = out + (size_t)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float v = x[i];
        if (d) {
            v = v + d[i];
            x[i] = v;
        }
        s = s + v * v;
    }
    s = block_sum(s, shared);
    float scale = 1.0f / sqrtf(s / (float)hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = x[i] * scale * weight[i];
}

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

// Decode attention, ragged: each row's q head against its own sequence's cache, positions
// 0..=pos[row] of slot[row] (GQA: q head h reads kv head h / (q_heads / kv_heads)). Grid
// (rows, q_heads), blockDim.x a multiple of 32. Thread t scores positions t, t + blockDim.x, …
// (a dot product over head_dim in order, then * scale) into `scores` ([rows][q_heads][max_len]
// scratch); the block's max; e = exp(score - max) and their block sum z; then thread t sums
// dims t, t + blockDim.x, … over positions in order and divides by z. out: [rows][q_heads *
// head_dim].
extern "C" __global__ void decode_attention(const float* qkv, const unsigned short* k_cache,
                                            const unsigned short* v_cache, const int* pos,
                                            const int* slot, float* scores, float* out,
                                            int q_heads, int kv_heads, int head_dim, int max_len,
                                            float scale) {
    __shared__ float shared[32];
    int row = blockIdx.x, head = blockIdx.y, kvh = head / (q_heads / kv_heads);
    int len = pos[row] + 1;
    const float* q = qkv + (size_t)row * (q_heads + 2 * kv_heads) * head_dim
                     + (size_t)head * head_dim;
    size_t base = ((size_t)slot[row] * kv_heads + kvh) * max_len * head_dim;
    float* sc = scores + ((size_t)row * q_heads + head) * max_len;
    float m = NEG_INF;
    for (int t = threadIdx.x; t < len; t += blockDim.x) {
        const unsigned short* k = k_cache + base + (size_t)t * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s = s + q[d] * from_bf16(k[d]);
        s = s * scale;
        sc[t] = s;
        m = fmaxf(m, s);
    }
    m = block_max(m, shared);
    float z = 0.0f;
    for (int t = threadIdx.x; t < len; t += blockDim.x) {
        float e = exp_host(sc[t] - m);
        sc[t] = e;
        z = z + e;
    }
    z = block_sum(z, shared);
    float* o = out + ((size_t)row * q_heads + head) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int t = 0; t < len; t++)
            acc = acc + sc[t] * from_bf16(v_cache[base + (size_t)t * head_dim + d]);
        o[d] = acc / z;
    }
}

// out[r][i] = silu(gate) * up for rows gu[r] = [gate | up] of 2·inter: the host's
// `silu_mul`, operation for operation. Any grid (grid-stride loop).
extern "C" __global__ void silu_mul(const float* gu, float* out, int inter, int rows) {
    size_t n = (size_t)rows * inter;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / inter, c = i % inter;
        float x = gu[r * 2 * inter + c], u = gu[r * 2 * inter + inter + c];
        out[i] = x / (1.0f + exp_host(-x)) * u;
    }
}

// Greedy sampling: per row (gridDim.x = rows, blockDim.x a multiple of 32) the first index of
// the largest value; NaNs never win; 0 when every value is NaN.
__device__ __forceinline__ void better(float& best, int& idx, float v, int i) {
    if (v > best || (v == best && i < idx)) {
        best = v;
        idx = i;
    }
}

extern "C" __global__ void argmax_rows(const float* logits, int vocab, unsigned int* out) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* l = logits + (size_t)blockIdx.x * vocab;
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
        if (lane == 0) out[blockIdx.x] = idx == NO_INDEX ? 0u : (unsigned int)idx;
    }
}
