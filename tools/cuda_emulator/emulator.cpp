// A CUDA driver that runs on the CPU, for testing benchgen's CUDA step without a GPU.
//
// Built as libcuda.so.1 (tools/cuda_emulator/build.sh) and put first on LD_LIBRARY_PATH, it is
// what cudarc loads for "the driver": the step in src/model/gpu/cuda.rs then runs unchanged —
// NVRTC compiles kernels.cu to a cubin as on a GPU machine, buffers are allocated and copied,
// graphs captured and replayed — while this library runs each launch with the same kernels,
// compiled here by g++ from the same kernels.cu (`#include`d below), one block at a time with
// every CUDA thread of the block a fiber: `__syncthreads` and warp shuffles are barriers between
// fibers, so kernels that depend on the order threads run in, or that diverge at a barrier,
// show it. With -ffp-contract=off each float operation rounds as it does on the device with
// --fmad=false, so a correct kernel gives its CPU reference's bits here too.
//
// It is meant to catch what a GPU would and the CPU references cannot:
// - work is deferred: nothing enqueued on a stream runs until the host synchronises (a stream,
//   an event, a pageable copy back), so a host that reads results without waiting, or rewrites
//   pinned memory a queued copy still has to read, sees stale data;
// - every device allocation ends at a guard page and starts filled with 0xff (f32 NaN), so reads
//   past a buffer fault (reported with the kernel, block and thread) and reads of memory never
//   written show up as NaN;
// - a kernel that leaves threads waiting at a barrier others never reach, or shuffles in a
//   partial warp, fails the launch (a sticky error, as on a device);
// - a stream capture takes kernels, memsets and device-to-device copies only: host copies,
//   allocations, synchronisation and events inside a capture are errors, as they are (or would
//   silently not be replayed) on a device;
// - vector loads (float4, uint4) are checked for 16-byte alignment (UBSan).
// It is not a model of the GPU's memory or timing, and implements only the driver calls cudarc
// makes for benchgen.

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// ---- the CUDA C++ that kernels.cu uses ------------------------------------------------------

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

static thread_local uint3 threadIdx, blockIdx;
static thread_local dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
// Shared by the fibers of a block (one OS thread runs them all), never by two launches at once.
#define __shared__ static thread_local
#define __launch_bounds__(threads)

static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}

// CUDA's integer min and max (device functions there, so kernels.cu calls them unqualified).
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

static void emu_syncthreads();
static void emu_fail(const char* what);
static uint64_t emu_exchange(uint64_t bits, int lane_mask);
#define __syncthreads() emu_syncthreads()

template <typename T>
static T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "a shuffle of at most 8 bytes");
    if (mask != 0xffffffffu) emu_fail("__shfl_xor_sync with a partial mask");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = emu_exchange(bits, lane_mask);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

// Tensor-core products: kernels.cu calls this in place of its mma.sync asm here.
#define BENCHGEN_CUDA_EMULATOR 1
static void emu_mma_bf16_16816(float* d, const unsigned int* a, const unsigned int* b);

#include "kernels.cu"

// ---- fibers: every thread of a block ----------------------------------------------------------

extern "C" void emu_switch(void** save, void* to);
// Saves the callee-saved registers on the current stack, stores its pointer in *save, moves
// to `to` and restores what was saved there.
__asm__(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

enum FiberState { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct Fiber {
    void* sp;
    FiberState state;
};

struct KernelInfo {
    const char* name;
    // Its __launch_bounds__, 0 without.
    unsigned bound;
    // Each parameter's size and where it sits in a launch's packed copy of them.
    std::vector<size_t> sizes, offsets;
    size_t total;
    std::function<void(const char*)> invoke;
};

const size_t STACK = 256 * 1024;

struct Block {
    const KernelInfo* kernel = nullptr;
    const char* params = nullptr;
    std::vector<Fiber> fibers;
    std::vector<char*> stacks;
    std::vector<uint64_t> lane_bits;
    // Each thread's mma.sync operands: A's four registers, then B's two.
    std::vector<uint32_t> mma_regs;
    std::vector<int> warp_live, warp_arrived;
    int n = 0, live = 0, arrived = 0, current = -1;
    bool reverse = false;
    // Where the scheduler's scan goes on after a release (an index in its order), or -1.
    int restart = -1;
    void* scheduler = nullptr;
    std::string failure;
};

static thread_local Block* B = nullptr;

static void fiber_yield() {
    Fiber& f = B->fibers[B->current];
    emu_switch(&f.sp, B->scheduler);
}

// After a release the scheduler goes back to the first thread (in its order) that it freed, so
// the earliest warp runs on as far as it can before the others move: the most skewed schedule,
// where a warp that overwrites shared memory others have yet to read shows it.
static void release_block(Block& b) {
    for (auto& f : b.fibers)
        if (f.state == AT_BLOCK_BARRIER) f.state = READY;
    b.arrived = 0;
    b.restart = 0;
}

static void release_warp(Block& b, int w) {
    int end = std::min(b.n, (w + 1) * 32);
    for (int t = w * 32; t < end; t++)
        if (b.fibers[t].state == AT_WARP_BARRIER) b.fibers[t].state = READY;
    b.warp_arrived[w] = 0;
    int first = b.reverse ? b.n - end : w * 32;
    if (b.restart < 0 || first < b.restart) b.restart = first;
}

static void emu_fail(const char* what) {
    Block& b = *B;
    if (b.failure.empty()) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s (kernel %s, block (%u,%u,%u), thread %d)", what,
                 b.kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, b.current);
        b.failure = msg;
    }
    // Never resumed: the scheduler sees the failure and abandons the block.
    b.fibers[b.current].state = DONE;
    for (;;) fiber_yield();
}

static void emu_syncthreads() {
    Block& b = *B;
    b.arrived++;
    if (b.arrived == b.live) {
        release_block(b);
        return;
    }
    b.fibers[b.current].state = AT_BLOCK_BARRIER;
    fiber_yield();
}

static void warp_barrier() {
    Block& b = *B;
    int w = b.current >> 5;
    b.warp_arrived[w]++;
    if (b.warp_arrived[w] == b.warp_live[w]) {
        release_warp(b, w);
        return;
    }
    b.fibers[b.current].state = AT_WARP_BARRIER;
    fiber_yield();
}

static uint64_t emu_exchange(uint64_t bits, int lane_mask) {
    Block& b = *B;
    int t = b.current, w = t >> 5;
    if (b.warp_live[w] != 32) emu_fail("a warp shuffle in a warp that is not whole");
    b.lane_bits[t] = bits;
    warp_barrier();
    uint64_t got = b.lane_bits[(w << 5) | ((t & 31) ^ (lane_mask & 31))];
    warp_barrier();
    return got;
}

static float bf16_value(uint32_t reg, int high) {
    uint32_t bits = (high ? reg >> 16 : reg & 0xffffu) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, D = A·B + C with C = D, collective over
// the warp, with the PTX ISA's fragment layouts (lane = 4·group + t; see gemm_bf16 in
// kernels.cu): every lane hands in its registers, then computes its own four outputs from
// everyone's. A device adds a chunk's 16 products its own way; here they go one at a time in k
// order, each addition rounded (what reference.rs's gemm_mma_dot does).
static void emu_mma_bf16_16816(float* d, const unsigned int* a, const unsigned int* b) {
    Block& bl = *B;
    int t = bl.current, w = t >> 5, lane = t & 31;
    if (bl.warp_live[w] != 32) emu_fail("mma.sync in a warp that is not whole");
    uint32_t* mine = &bl.mma_regs[(size_t)t * 6];
    for (int i = 0; i < 4; i++) mine[i] = a[i];
    mine[4] = b[0];
    mine[5] = b[1];
    warp_barrier();
    const uint32_t* warp = &bl.mma_regs[(size_t)(w << 5) * 6];
    // A[row][col]: lane 4·(row mod 8) + (col mod 8)/2, register (col >= 8 ? 2 : 0) + (row >= 8).
    auto A = [&](int row, int col) {
        int from = (row & 7) * 4 + ((col & 7) >> 1);
        return bf16_value(warp[from * 6 + (col >= 8 ? 2 : 0) + (row >= 8 ? 1 : 0)], col & 1);
    };
    // B[kk][col]: lane 4·col + (kk mod 8)/2, register kk >= 8.
    auto Bm = [&](int kk, int col) {
        int from = col * 4 + ((kk & 7) >> 1);
        return bf16_value(warp[from * 6 + 4 + (kk >= 8 ? 1 : 0)], kk & 1);
    };
    int g = lane >> 2, tg = lane & 3;
    float out[4];
    for (int i = 0; i < 4; i++) {
        int row = i < 2 ? g : g + 8, col = 2 * tg + (i & 1);
        float acc = d[i];
        for (int kk = 0; kk < 16; kk++) acc = fmaf(A(row, kk), Bm(kk, col), acc);
        out[i] = acc;
    }
    // Every lane has read the others' registers before any hands in new ones.
    warp_barrier();
    for (int i = 0; i < 4; i++) d[i] = out[i];
}

static void fiber_main() {
    Block& b = *B;
    b.kernel->invoke(b.params);
    Fiber& f = b.fibers[b.current];
    f.state = DONE;
    b.live--;
    int w = b.current >> 5;
    b.warp_live[w]--;
    if (b.arrived > 0 && b.arrived == b.live) release_block(b);
    if (b.warp_arrived[w] > 0 && b.warp_arrived[w] == b.warp_live[w]) release_warp(b, w);
    for (;;) fiber_yield();
}

// Runs one block to the end; false (and `b.failure`) when it failed. Each thread runs until it
// waits, lowest thread first or (`reverse`) highest first, so a kernel that reads what another
// thread writes without a barrier between them gets the other value in one of the two orders.
static bool run_block(Block& b, unsigned threads, bool reverse) {
    b.n = (int)threads;
    b.live = b.n;
    b.arrived = 0;
    b.fibers.assign(b.n, Fiber{nullptr, READY});
    b.lane_bits.assign(b.n, 0);
    b.mma_regs.assign((size_t)b.n * 6, 0);
    int warps = (b.n + 31) / 32;
    b.warp_live.assign(warps, 0);
    b.warp_arrived.assign(warps, 0);
    for (int t = 0; t < b.n; t++) b.warp_live[t >> 5]++;
    while ((int)b.stacks.size() < b.n) {
        // A guard page below each stack: an overflow faults instead of corrupting a neighbour.
        char* s = (char*)mmap(nullptr, STACK + 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s == MAP_FAILED) {
            b.failure = "no memory for the block's fibers";
            return false;
        }
        mprotect(s, 4096, PROT_NONE);
        b.stacks.push_back(s + 4096);
    }
    for (int t = 0; t < b.n; t++) {
        // The frame emu_switch pops: six registers, then fiber_main as the return address,
        // with the stack aligned as at a function's entry.
        uintptr_t top = ((uintptr_t)b.stacks[t] + STACK) & ~(uintptr_t)15;
        void** sp = (void**)top;
        *--sp = nullptr;
        *--sp = (void*)&fiber_main;
        for (int i = 0; i < 6; i++) *--sp = nullptr;
        b.fibers[t].sp = sp;
    }
    unsigned bx = blockDim.x, by = blockDim.y;
    b.reverse = reverse;
    b.restart = -1;
    int i = 0;
    for (;;) {
        if (b.live == 0) return true;
        int t = -1;
        for (int k = 0; k < b.n; k++) {
            int at = (i + k) % b.n;
            int candidate = reverse ? b.n - 1 - at : at;
            if (b.fibers[candidate].state == READY) {
                t = candidate;
                i = at;
                break;
            }
        }
        if (t < 0) {
            int waiting = 0;
            for (auto& f : b.fibers) waiting += f.state == AT_BLOCK_BARRIER;
            char msg[512];
            snprintf(msg, sizeof msg,
                     "threads wait at a barrier that the others never reach: %d of %d live "
                     "threads at __syncthreads, the rest in warp shuffles (kernel %s, block "
                     "(%u,%u,%u))",
                     waiting, b.live, b.kernel->name, blockIdx.x, blockIdx.y, blockIdx.z);
            b.failure = msg;
            return false;
        }
        b.current = t;
        threadIdx = uint3{t % bx, (t / bx) % by, t / (bx * by)};
        emu_switch(&b.scheduler, b.fibers[t].sp);
        if (!b.failure.empty()) return false;
        if (b.restart >= 0) {
            i = b.restart;
            b.restart = -1;
        } else {
            i = (i + 1) % b.n;
        }
    }
}

// ---- the kernels, by name ------------------------------------------------------------------

template <typename T>
static T load_param(const char* p) {
    T v;
    memcpy(&v, p, sizeof(T));
    return v;
}

template <typename... A, size_t... I>
static void call_kernel(void (*f)(A...), const char* p, const size_t* offsets,
                        std::index_sequence<I...>) {
    f(load_param<A>(p + offsets[I])...);
}

template <typename... A>
static KernelInfo kernel_info(const char* name, unsigned bound, void (*f)(A...)) {
    KernelInfo k;
    k.name = name;
    k.bound = bound;
    k.sizes = {sizeof(A)...};
    size_t at = 0;
    for (size_t s : k.sizes) {
        k.offsets.push_back(at);
        at += s;
    }
    k.total = at;
    k.invoke = [f, offsets = k.offsets](const char* p) {
        call_kernel(f, p, offsets.data(), std::index_sequence_for<A...>{});
    };
    return k;
}

static std::map<std::string, KernelInfo>& kernels() {
    static std::map<std::string, KernelInfo> all = [] {
        std::map<std::string, KernelInfo> m;
#define KERNEL(name, bound) m.emplace(#name, kernel_info(#name, bound, name));
#include "kernel_list.inc"
#undef KERNEL
        return m;
    }();
    return all;
}

// ---- the driver: memory, streams, events, graphs ----------------------------------------------

typedef int CUresult;
enum : int {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    NOT_READY = 600,
    LAUNCH_FAILED = 719,
    NOT_SUPPORTED = 801,
    CAPTURE_UNSUPPORTED = 900,
    CAPTURE_INVALIDATED = 901,
};

struct Event;

struct Op {
    enum Kind { KERNEL, COPY, SET, EVENT, FREE } kind;
    const KernelInfo* kernel = nullptr;
    dim3 grid{}, block{};
    std::vector<char> data;  // kernel parameters, or a pageable copy's bytes taken at enqueue
    char* dst = nullptr;
    const char* src = nullptr;
    size_t n = 0;
    unsigned char value = 0;
    uint64_t seq = 0;
};

struct Graph {
    std::vector<Op> ops;
};

struct Stream {
    Graph* capture = nullptr;
    bool invalidated = false;
};

struct Event {
    uint64_t seq = 0;  // the op that marks it; 0: never recorded
};

struct Alloc {
    char* base;
    size_t mapped;
    size_t size;
};

static std::mutex M;
static std::deque<Op> queue_;
static uint64_t next_seq = 1, done_seq = 0;
static std::map<uintptr_t, Alloc> device_;  // by start
static std::map<uintptr_t, size_t> pinned_;
static size_t allocated = 0;
static CUresult sticky = SUCCESS;
static std::string sticky_message;
static thread_local void* current_ctx = nullptr;
static Stream default_stream;
static const size_t TOTAL = (size_t)141 << 30;

static void report(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static Stream* stream_of(void* s) { return s ? (Stream*)s : &default_stream; }

// The allocation holding [p, p + n), or null.
static const Alloc* device_range(uintptr_t p, size_t n) {
    auto it = device_.upper_bound(p);
    if (it == device_.begin()) return nullptr;
    --it;
    if (p + n > it->first + it->second.size) return nullptr;
    return &it->second;
}

static bool is_pinned(const void* h, size_t n) {
    uintptr_t p = (uintptr_t)h;
    auto it = pinned_.upper_bound(p);
    if (it == pinned_.begin()) return false;
    --it;
    return p + n <= it->first + it->second;
}

// What the fault handler reports: the kernel running now.
static thread_local const KernelInfo* running = nullptr;
static struct sigaction previous_segv;

static void on_segv(int sig, siginfo_t* info, void* uc) {
    if (running) {
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "cuda emulator: invalid memory access at %p in kernel %s, block "
                         "(%u,%u,%u), thread (%u,%u,%u): past the end of a device buffer, or a "
                         "pointer that is not one\n",
                         info->si_addr, running->name, blockIdx.x, blockIdx.y, blockIdx.z,
                         threadIdx.x, threadIdx.y, threadIdx.z);
        if (write(2, msg, n) < 0) _exit(98);
        _exit(98);
    }
    if (previous_segv.sa_flags & SA_SIGINFO) {
        previous_segv.sa_sigaction(sig, info, uc);
    } else {
        signal(sig, previous_segv.sa_handler);
    }
}

static void install_fault_handler() {
    static bool done = false;
    if (done) return;
    done = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &previous_segv);
}

static thread_local Block* block_slot = nullptr;

static CUresult run_kernel(const Op& op) {
    if (!block_slot) block_slot = new Block();
    Block& b = *block_slot;
    b.kernel = op.kernel;
    b.params = op.data.data();
    b.failure.clear();
    B = &b;
    running = op.kernel;
    blockDim = op.block;
    gridDim = op.grid;
    unsigned threads = op.block.x * op.block.y * op.block.z;
    // The fault handler runs on an alternate stack (a fiber's may be what overflowed); each OS
    // thread that runs kernels needs its own.
    stack_t alt;
    if (sigaltstack(nullptr, &alt) == 0 && (alt.ss_flags & SS_DISABLE)) {
        alt.ss_sp = malloc(1 << 16);
        alt.ss_size = 1 << 16;
        alt.ss_flags = 0;
        sigaltstack(&alt, nullptr);
    }
    bool ok = true;
    // Both orders for every kernel: alternate by block, and by launch for one-block grids.
    static unsigned long long launches = 0;
    unsigned long long parity = launches++;
    for (unsigned z = 0; ok && z < op.grid.z; z++)
        for (unsigned y = 0; ok && y < op.grid.y; y++)
            for (unsigned x = 0; ok && x < op.grid.x; x++) {
                blockIdx = uint3{x, y, z};
                ok = run_block(b, threads, ((parity + x + y + z) & 1) != 0);
            }
    running = nullptr;
    B = nullptr;
    if (!ok) {
        // Fibers left mid-kernel are abandoned with their stacks; a fresh Block next time.
        report("launch failed: %s", b.failure.c_str());
        sticky_message = b.failure;
        block_slot = nullptr;
        return LAUNCH_FAILED;
    }
    return SUCCESS;
}

static void free_device(uintptr_t p) {
    auto it = device_.find(p);
    if (it == device_.end()) return;
    allocated -= it->second.size;
    munmap(it->second.base, it->second.mapped);
    device_.erase(it);
}

static void execute(Op& op) {
    if (sticky != SUCCESS) return;
    switch (op.kind) {
        case Op::KERNEL:
            sticky = run_kernel(op);
            break;
        case Op::COPY:
            memcpy(op.dst, op.data.empty() ? op.src : op.data.data(), op.n);
            break;
        case Op::SET:
            memset(op.dst, op.value, op.n);
            break;
        case Op::EVENT:
            break;
        case Op::FREE:
            free_device((uintptr_t)op.dst);
            break;
    }
}

static void run_until(uint64_t seq) {
    while (!queue_.empty() && queue_.front().seq <= seq) {
        Op op = std::move(queue_.front());
        queue_.pop_front();
        execute(op);
        done_seq = op.seq;
    }
}

static void run_all() { run_until(~0ull); }

// Enqueues `op` on `s` (or records it in the stream's capture); its sequence number.
static uint64_t enqueue(Stream* s, Op op) {
    op.seq = next_seq++;
    if (s->capture) {
        s->capture->ops.push_back(std::move(op));
    } else {
        queue_.push_back(std::move(op));
    }
    return next_seq - 1;
}

// An operation a capture cannot take: the capture is invalidated, as on a device.
static CUresult not_in_capture(Stream* s, const char* what) {
    report("%s inside a stream capture (a CUDA graph here holds kernels, memsets and "
           "device-to-device copies only)",
           what);
    s->invalidated = true;
    return CAPTURE_UNSUPPORTED;
}

#define API extern "C" __attribute__((visibility("default"))) CUresult
#define LOCK std::lock_guard<std::mutex> lock(M)
#define STICKY \
    if (sticky != SUCCESS) return sticky

API cuInit(unsigned) {
    LOCK;
    install_fault_handler();
    return SUCCESS;
}

API cuDriverGetVersion(int* v) {
    *v = 13000;
    return SUCCESS;
}

API cuDeviceGetCount(int* n) {
    *n = 1;
    return SUCCESS;
}

API cuDeviceGet(int* dev, int ordinal) {
    if (ordinal != 0) return INVALID_DEVICE;
    *dev = 0;
    return SUCCESS;
}

API cuDeviceGetAttribute(int* v, int attribute, int) {
    switch (attribute) {
        case 75: *v = 9; break;    // compute capability major (sm_90, an H200's)
        case 76: *v = 0; break;    // minor
        case 115: *v = 1; break;   // memory pools: allocations are stream-ordered
        case 1: *v = 1024; break;  // max threads per block
        case 2: *v = 1024; break;  // max block dim x
        case 5: *v = 2147483647; break;  // max grid dim x
        case 6: case 7: *v = 65535; break;
        case 16: *v = 132; break;  // multiprocessors
        default: *v = 0;
    }
    return SUCCESS;
}

API cuDeviceGetName(char* name, int len, int) {
    snprintf(name, len, "benchgen CUDA emulator (CPU)");
    return SUCCESS;
}

API cuDeviceTotalMem_v2(size_t* bytes, int) {
    *bytes = TOTAL;
    return SUCCESS;
}

API cuDevicePrimaryCtxRetain(void** ctx, int) {
    static int primary;
    *ctx = &primary;
    return SUCCESS;
}

API cuDevicePrimaryCtxRelease_v2(int) { return SUCCESS; }

API cuCtxSetCurrent(void* ctx) {
    current_ctx = ctx;
    return SUCCESS;
}

API cuCtxGetCurrent(void** ctx) {
    *ctx = current_ctx;
    return SUCCESS;
}

API cuCtxSynchronize() {
    LOCK;
    run_all();
    return sticky;
}

API cuGetErrorName(CUresult e, const char** s) {
    switch (e) {
        case SUCCESS: *s = "CUDA_SUCCESS"; break;
        case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
        case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
        case NOT_READY: *s = "CUDA_ERROR_NOT_READY"; break;
        case LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
        case CAPTURE_UNSUPPORTED: *s = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
        case CAPTURE_INVALIDATED: *s = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; break;
        default: *s = "CUDA_ERROR_UNKNOWN";
    }
    return SUCCESS;
}

API cuGetErrorString(CUresult e, const char** s) {
    if (e == LAUNCH_FAILED && !sticky_message.empty()) {
        *s = sticky_message.c_str();
        return SUCCESS;
    }
    return cuGetErrorName(e, s);
}

// ---- memory

static CUresult device_alloc(uint64_t* out, size_t n) {
    // Rounded to 16 bytes (the widest load a kernel makes) and placed to end at a guard page.
    size_t size = (n + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    size_t pages = (size + 4095) / 4096;
    size_t mapped = (pages + 1) * 4096;
    char* base = (char*)mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return OUT_OF_MEMORY;
    mprotect(base + pages * 4096, 4096, PROT_NONE);
    char* p = base + pages * 4096 - size;
    // Never-written device memory reads as NaN (0xff bytes), not as zeros.
    memset(p, 0xff, size);
    device_[(uintptr_t)p] = Alloc{base, mapped, size};
    allocated += size;
    *out = (uint64_t)(uintptr_t)p;
    return SUCCESS;
}

API cuMemAlloc_v2(uint64_t* p, size_t n) {
    LOCK;
    STICKY;
    return device_alloc(p, n);
}

API cuMemAllocAsync(uint64_t* p, size_t n, void* s) {
    LOCK;
    STICKY;
    if (stream_of(s)->capture) return not_in_capture(stream_of(s), "an allocation");
    return device_alloc(p, n);
}

API cuMemFree_v2(uint64_t p) {
    LOCK;
    run_all();
    free_device((uintptr_t)p);
    return SUCCESS;
}

API cuMemFreeAsync(uint64_t p, void* s) {
    LOCK;
    if (stream_of(s)->capture) return not_in_capture(stream_of(s), "a free");
    Op op;
    op.kind = Op::FREE;
    op.dst = (char*)(uintptr_t)p;
    enqueue(stream_of(s), std::move(op));
    return SUCCESS;
}

API cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    LOCK;
    *total = TOTAL;
    *free_bytes = TOTAL - allocated;
    return SUCCESS;
}

API cuMemHostAlloc(void** p, size_t n, unsigned) {
    LOCK;
    size_t size = (n + 4095) & ~(size_t)4095;
    if (size == 0) size = 4096;
    void* h = aligned_alloc(4096, size);
    if (!h) return OUT_OF_MEMORY;
    memset(h, 0xab, size);
    pinned_[(uintptr_t)h] = n;
    *p = h;
    return SUCCESS;
}

API cuMemFreeHost(void* p) {
    LOCK;
    run_all();
    pinned_.erase((uintptr_t)p);
    free(p);
    return SUCCESS;
}

static CUresult check_device(uint64_t p, size_t n, const char* what) {
    if (!device_range((uintptr_t)p, n)) {
        report("%s of %zu bytes at device address 0x%llx: not inside one allocation", what, n,
               (unsigned long long)p);
        return INVALID_VALUE;
    }
    return SUCCESS;
}

API cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, void* s) {
    LOCK;
    STICKY;
    Stream* st = stream_of(s);
    if (st->capture) return not_in_capture(st, "a host-to-device copy");
    if (CUresult e = check_device(dst, n, "a host-to-device copy")) return e;
    Op op;
    op.kind = Op::COPY;
    op.dst = (char*)(uintptr_t)dst;
    op.n = n;
    // A device reads pinned memory when the copy runs; pageable memory is staged at once.
    if (is_pinned(src, n)) {
        op.src = (const char*)src;
    } else {
        op.data.assign((const char*)src, (const char*)src + n);
    }
    enqueue(st, std::move(op));
    return SUCCESS;
}

API cuMemcpyDtoHAsync_v2(void* dst, uint64_t src, size_t n, void* s) {
    LOCK;
    STICKY;
    Stream* st = stream_of(s);
    if (st->capture) return not_in_capture(st, "a device-to-host copy");
    if (CUresult e = check_device(src, n, "a device-to-host copy")) return e;
    Op op;
    op.kind = Op::COPY;
    op.dst = (char*)dst;
    op.src = (const char*)(uintptr_t)src;
    op.n = n;
    uint64_t seq = enqueue(st, std::move(op));
    // Into pageable memory the copy is done when the call returns.
    if (!is_pinned(dst, n)) run_until(seq);
    return sticky;
}

API cuMemcpyHtoD_v2(uint64_t dst, const void* src, size_t n) {
    LOCK;
    STICKY;
    if (CUresult e = check_device(dst, n, "a host-to-device copy")) return e;
    run_all();
    memcpy((void*)(uintptr_t)dst, src, n);
    return sticky;
}

API cuMemcpyDtoH_v2(void* dst, uint64_t src, size_t n) {
    LOCK;
    STICKY;
    if (CUresult e = check_device(src, n, "a device-to-host copy")) return e;
    run_all();
    if (sticky == SUCCESS) memcpy(dst, (const void*)(uintptr_t)src, n);
    return sticky;
}

API cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void* s) {
    LOCK;
    STICKY;
    if (CUresult e = check_device(dst, n, "a device-to-device copy")) return e;
    if (CUresult e = check_device(src, n, "a device-to-device copy")) return e;
    Op op;
    op.kind = Op::COPY;
    op.dst = (char*)(uintptr_t)dst;
    op.src = (const char*)(uintptr_t)src;
    op.n = n;
    enqueue(stream_of(s), std::move(op));
    return SUCCESS;
}

API cuMemsetD8Async(uint64_t dst, unsigned char v, size_t n, void* s) {
    LOCK;
    STICKY;
    if (CUresult e = check_device(dst, n, "a memset")) return e;
    Op op;
    op.kind = Op::SET;
    op.dst = (char*)(uintptr_t)dst;
    op.n = n;
    op.value = v;
    enqueue(stream_of(s), std::move(op));
    return SUCCESS;
}

API cuMemsetD8_v2(uint64_t dst, unsigned char v, size_t n) {
    LOCK;
    STICKY;
    if (CUresult e = check_device(dst, n, "a memset")) return e;
    run_all();
    memset((void*)(uintptr_t)dst, v, n);
    return sticky;
}

// ---- modules and launches

struct Module {
    int unused;
};

API cuModuleLoadData(void** module, const void* image) {
    // NVRTC's cubin (an ELF image), not PTX text: what the step loads on a device.
    if (memcmp(image, "\x7f" "ELF", 4) != 0) {
        report("cuModuleLoadData: the image is not a cubin (ELF)");
        return INVALID_IMAGE;
    }
    *module = new Module();
    return SUCCESS;
}

API cuModuleUnload(void* module) {
    delete (Module*)module;
    return SUCCESS;
}

API cuModuleGetFunction(void** f, void*, const char* name) {
    auto it = kernels().find(name);
    if (it == kernels().end()) {
        report("no kernel named %s", name);
        return NOT_FOUND;
    }
    *f = &it->second;
    return SUCCESS;
}

API cuFuncGetAttribute(int* v, int, void*) {
    *v = 0;
    return SUCCESS;
}

API cuFuncSetAttribute(void*, int, int) { return SUCCESS; }

API cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void* s, void** params, void** extra) {
    LOCK;
    STICKY;
    const KernelInfo* k = (const KernelInfo*)f;
    if (!params || extra) {
        report("cuLaunchKernel of %s: parameters must be passed as kernelParams", k->name);
        return INVALID_VALUE;
    }
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (threads == 0 || threads > 1024 || gx == 0 || gy == 0 || gz == 0 || gy > 65535 ||
        gz > 65535 || bz > 64 || shared > 48 * 1024) {
        report("cuLaunchKernel of %s: grid (%u,%u,%u), block (%u,%u,%u), %u bytes of shared "
               "memory is not a valid launch",
               k->name, gx, gy, gz, bx, by, bz, shared);
        return INVALID_VALUE;
    }
    // A device fits any kernel's registers into a block of up to 256 threads (255 a thread at
    // most); beyond that only a kernel compiled for the block size (__launch_bounds__) is sure to.
    if (threads > (k->bound ? k->bound : 256)) {
        report("cuLaunchKernel of %s: %llu threads a block, more than its __launch_bounds__ "
               "(%u; 256 without): a device may not have the registers for them",
               k->name, threads, k->bound);
        return INVALID_VALUE;
    }
    Op op;
    op.kind = Op::KERNEL;
    op.kernel = k;
    op.grid = dim3{gx, gy, gz};
    op.block = dim3{bx, by, bz};
    op.data.resize(k->total);
    for (size_t i = 0; i < k->sizes.size(); i++)
        memcpy(op.data.data() + k->offsets[i], params[i], k->sizes[i]);
    enqueue(stream_of(s), std::move(op));
    return SUCCESS;
}

// ---- streams, events, graphs

API cuStreamCreate(void** s, unsigned) {
    *s = new Stream();
    return SUCCESS;
}

API cuStreamCreateWithPriority(void** s, unsigned, int) {
    *s = new Stream();
    return SUCCESS;
}

API cuStreamDestroy_v2(void* s) {
    LOCK;
    run_all();
    delete (Stream*)s;
    return SUCCESS;
}

API cuStreamSynchronize(void* s) {
    LOCK;
    Stream* st = stream_of(s);
    if (st->capture) return not_in_capture(st, "a stream synchronisation");
    run_all();
    return sticky;
}

// A query that finds work pending runs one operation before it answers, so a host that polls
// until done gets there (as on a device, where the work goes on meanwhile), one query at a time.
static bool progress_one() {
    if (queue_.empty()) return false;
    run_until(queue_.front().seq);
    return true;
}

API cuStreamQuery(void* s) {
    LOCK;
    return progress_one() ? NOT_READY : sticky;
}

// One queue runs every stream's work in the order it was enqueued, which keeps each stream's
// order and every event's: a wait has nothing more to do.
API cuStreamWaitEvent(void* s, void*, unsigned) {
    LOCK;
    if (stream_of(s)->capture) return not_in_capture(stream_of(s), "an event wait");
    return SUCCESS;
}

API cuStreamBeginCapture_v2(void* s, int) {
    LOCK;
    STICKY;
    Stream* st = stream_of(s);
    if (st->capture) return INVALID_VALUE;
    st->capture = new Graph();
    st->invalidated = false;
    return SUCCESS;
}

API cuStreamEndCapture(void* s, void** graph) {
    LOCK;
    Stream* st = stream_of(s);
    if (!st->capture) return INVALID_VALUE;
    Graph* g = st->capture;
    st->capture = nullptr;
    if (st->invalidated) {
        delete g;
        *graph = nullptr;
        return CAPTURE_INVALIDATED;
    }
    *graph = g;
    return SUCCESS;
}

API cuStreamIsCapturing(void* s, int* status) {
    LOCK;
    Stream* st = stream_of(s);
    *status = st->capture ? (st->invalidated ? 2 : 1) : 0;
    return SUCCESS;
}

API cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    *exec = new Graph(*(Graph*)graph);
    return SUCCESS;
}

API cuGraphLaunch(void* exec, void* s) {
    LOCK;
    STICKY;
    Stream* st = stream_of(s);
    if (st->capture) return not_in_capture(st, "a graph launch");
    for (const Op& op : ((Graph*)exec)->ops) enqueue(st, op);
    return SUCCESS;
}

API cuGraphUpload(void*, void*) { return SUCCESS; }

API cuGraphExecDestroy(void* exec) {
    delete (Graph*)exec;
    return SUCCESS;
}

API cuGraphDestroy(void* graph) {
    delete (Graph*)graph;
    return SUCCESS;
}

API cuEventCreate(void** e, unsigned) {
    *e = new Event();
    return SUCCESS;
}

API cuEventDestroy_v2(void* e) {
    delete (Event*)e;
    return SUCCESS;
}

API cuEventRecord(void* e, void* s) {
    LOCK;
    STICKY;
    Stream* st = stream_of(s);
    if (st->capture) return not_in_capture(st, "an event record");
    Op op;
    op.kind = Op::EVENT;
    ((Event*)e)->seq = enqueue(st, std::move(op));
    return SUCCESS;
}

API cuEventSynchronize(void* e) {
    LOCK;
    run_until(((Event*)e)->seq);
    return sticky;
}

API cuEventQuery(void* e) {
    LOCK;
    if (((Event*)e)->seq <= done_seq) return sticky;
    progress_one();
    return NOT_READY;
}

// NVRTC and the CUDA runtime probe the driver's private tables; they do without.
API cuGetExportTable(const void**, const void*) { return NOT_SUPPORTED; }

// Every other driver function: bound by a binary at start, an error if ever called.
#define UNEMULATED(name)                                              \
    API name() {                                                      \
        report(#name " is not emulated (tools/cuda_emulator/emulator.cpp)"); \
        return NOT_SUPPORTED;                                          \
    }
#include "unemulated.inc"
#undef UNEMULATED

API cuEventElapsedTime(float* ms, void*, void*) {
    *ms = 0.0f;
    return SUCCESS;
}
