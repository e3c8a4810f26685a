// Reductions over any set of dims: sum, prod, max, min, argmax, argmin, all,
// any (mean, var, std and norm are built from these and elementwise ops by
// runtime/ops/cpu/reduce.c, the CPU reference, whose semantics these keep:
// NaN wins max/min, the first occurrence wins argmax/argmin ties and the
// first NaN wins over everything, float sums accumulate in double).
//
// The kept dims and the reduced dims of the input are each coalesced, then
// an output element's input offset and a reduced element's offset come from
// two small div/mod walks. One block folds one output when the reduced
// elements are adjacent in memory (or there are few outputs); one thread
// folds one output when the outputs are adjacent (column reductions), so
// that neighbouring threads read neighbouring addresses.
#include <type_traits>
#include "cuda_iter.cuh"
#include "aviary/ops.h"

struct red_geom {
    int nk, nr;                                 // kept / reduced dims after coalescing
    int64_t kshape[AV_MAX_DIMS], kstride[AV_MAX_DIMS];
    int64_t rshape[AV_MAX_DIMS], rstride[AV_MAX_DIMS];
    int64_t outer, R;
};

__device__ __forceinline__ int64_t geom_off(int n, const int64_t *shape, const int64_t *stride, int64_t i) {
    if (n == 1) return i * stride[0];
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        int64_t q = i / shape[d];
        off += (i - q * shape[d]) * stride[d];
        i = q;
    }
    return off;
}

template <typename T, int OP> struct red_op {
    typedef typename cu_acc<T>::type C;
    static constexpr bool is_sum = OP == AV_RED_SUM || OP == AV_RED_PROD;
    static constexpr bool is_bool = OP == AV_RED_ALL || OP == AV_RED_ANY;
    static constexpr bool is_arg = OP == AV_RED_ARGMAX || OP == AV_RED_ARGMIN;
    typedef typename std::conditional<
        is_sum, typename std::conditional<std::is_floating_point<C>::value, double, int64_t>::type,
        typename std::conditional<is_bool, int, C>::type>::type A;
    struct state {
        A v;
        int64_t i;
    };
    __device__ static state identity() {
        state s;
        s.i = -1;
        if constexpr (OP == AV_RED_SUM || OP == AV_RED_ANY) s.v = 0;
        else if constexpr (OP == AV_RED_PROD || OP == AV_RED_ALL) s.v = 1;
        else s.v = 0; // max/min/arg: empty until the first element (i < 0)
        return s;
    }
    // is b better than a (for max/min/arg): NaN first, then the comparison, then the lower index
    __device__ static bool better(A bv, int64_t bi, A av, int64_t ai) {
        if (ai < 0) return bi >= 0;
        if (bi < 0) return false;
        bool bn = bv != bv, an = av != av;
        if (bn || an) return bn && (!an || bi < ai);
        bool gt = (OP == AV_RED_MAX || OP == AV_RED_ARGMAX) ? bv > av : bv < av;
        return gt || (bv == av && bi < ai);
    }
    __device__ static void step(state &s, T x, int64_t r) {
        if constexpr (OP == AV_RED_SUM) s.v += (A)cu_to<C>(x);
        else if constexpr (OP == AV_RED_PROD) s.v *= (A)cu_to<C>(x);
        else if constexpr (OP == AV_RED_ALL) s.v &= cu_to<C>(x) != (C)0;
        else if constexpr (OP == AV_RED_ANY) s.v |= cu_to<C>(x) != (C)0;
        else {
            A v = cu_to<C>(x);
            if (better(v, r, s.v, s.i)) {
                s.v = v;
                s.i = r;
            }
        }
    }
    __device__ static void combine(state &a, const state &b) {
        if constexpr (OP == AV_RED_SUM) a.v += b.v;
        else if constexpr (OP == AV_RED_PROD) a.v *= b.v;
        else if constexpr (OP == AV_RED_ALL) a.v &= b.v;
        else if constexpr (OP == AV_RED_ANY) a.v |= b.v;
        else if (better(b.v, b.i, a.v, a.i)) a = b;
    }
    __device__ static void store(const state &s, void *out, int64_t *idx, int64_t o) {
        if constexpr (is_bool) reinterpret_cast<uint8_t *>(out)[o] = s.v ? 1 : 0;
        else if constexpr (is_sum && std::is_floating_point<C>::value) reinterpret_cast<T *>(out)[o] = cu_to<T>(s.v);
        else if constexpr (is_sum) reinterpret_cast<int64_t *>(out)[o] = s.v;
        else {
            reinterpret_cast<T *>(out)[o] = cu_to<T>(s.v);
            if (is_arg && idx) idx[o] = s.i;
        }
    }
};

#define RED_THREADS 256

template <typename T, int OP> __global__ void reduce_block_kernel(red_geom g, const T *in, void *out, int64_t *idx) {
    typedef red_op<T, OP> R;
    typedef typename R::state S;
    __shared__ S sh[RED_THREADS];
    for (int64_t o = blockIdx.x; o < g.outer; o += gridDim.x) {
        const T *base = in + geom_off(g.nk, g.kshape, g.kstride, o);
        S s = R::identity();
        for (int64_t r = threadIdx.x; r < g.R; r += blockDim.x) R::step(s, base[geom_off(g.nr, g.rshape, g.rstride, r)], r);
        sh[threadIdx.x] = s;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if ((int)threadIdx.x < w) {
                S a = sh[threadIdx.x];
                R::combine(a, sh[threadIdx.x + w]);
                sh[threadIdx.x] = a;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) R::store(sh[0], out, idx, o);
        __syncthreads();
    }
}

template <typename T, int OP> __global__ void reduce_thread_kernel(red_geom g, const T *in, void *out, int64_t *idx) {
    typedef red_op<T, OP> R;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < g.outer; o += step) {
        const T *base = in + geom_off(g.nk, g.kshape, g.kstride, o);
        typename R::state s = R::identity();
        for (int64_t r = 0; r < g.R; r++) R::step(s, base[geom_off(g.nr, g.rshape, g.rstride, r)], r);
        R::store(s, out, idx, o);
    }
}

// Few outputs over many elements (a loss, a norm): one block per output
// would leave most of the GPU idle, so each output's range is cut into
// chunks folded by separate blocks into partial states, then one thread per
// output folds its chunks in order (indices stay global, so argmax ties
// still go to the first occurrence).
template <typename T, int OP>
__global__ void reduce_partial_kernel(red_geom g, const T *in, typename red_op<T, OP>::state *part, int64_t chunk) {
    typedef red_op<T, OP> R;
    typedef typename R::state S;
    __shared__ S sh[RED_THREADS];
    int64_t o = blockIdx.x, c = blockIdx.y;
    const T *base = in + geom_off(g.nk, g.kshape, g.kstride, o);
    int64_t r0 = c * chunk, r1 = r0 + chunk < g.R ? r0 + chunk : g.R;
    S s = R::identity();
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) R::step(s, base[geom_off(g.nr, g.rshape, g.rstride, r)], r);
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            S a = sh[threadIdx.x];
            R::combine(a, sh[threadIdx.x + w]);
            sh[threadIdx.x] = a;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) part[o * gridDim.y + c] = sh[0];
}

template <typename T, int OP>
__global__ void reduce_final_kernel(int64_t outer, int64_t chunks, const typename red_op<T, OP>::state *part, void *out,
                                    int64_t *idx) {
    typedef red_op<T, OP> R;
    int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= outer) return;
    typename R::state s = R::identity();
    for (int64_t c = 0; c < chunks; c++) R::combine(s, part[o * chunks + c]);
    R::store(s, out, idx, o);
}

// merges neighbouring dims that continue each other (order kept)
static int coalesce(int n, int64_t *shape, int64_t *stride) {
    if (n == 0) {
        shape[0] = 1;
        stride[0] = 0;
        return 1;
    }
    int m = 0;
    for (int d = 1; d < n; d++) {
        if (stride[m] == stride[d] * shape[d]) {
            shape[m] *= shape[d];
            stride[m] = stride[d];
        } else {
            m++;
            shape[m] = shape[d];
            stride[m] = stride[d];
        }
    }
    return m + 1;
}

template <typename T, int OP> static int launch(const red_geom &g, const av_tensor *t, av_tensor *out, av_tensor *idx) {
    const T *in = reinterpret_cast<const T *>(av_data(t));
    int64_t *ip = idx ? reinterpret_cast<int64_t *>(av_data(idx)) : nullptr;
    cudaStream_t s = av_cuda_stream();
    // a thread per output when outputs are adjacent in memory or each folds only a few elements
    bool columns = g.outer >= 2048 && ((g.kstride[g.nk - 1] == 1 && g.rstride[g.nr - 1] != 1) || g.R <= 32);
    if (columns) {
        reduce_thread_kernel<T, OP><<<av_cuda_blocks(g.outer, 128), 128, 0, s>>>(g, in, av_data(out), ip);
    } else if (g.outer < 256 && g.R >= 65536) {
        typedef typename red_op<T, OP>::state S;
        int64_t chunks = 1024 / g.outer, most = g.R / 16384;
        if (chunks > most) chunks = most;
        if (chunks < 1) chunks = 1;
        int64_t chunk = (g.R + chunks - 1) / chunks;
        S *part = (S *)av_cuda_malloc(sizeof(S) * (size_t)(g.outer * chunks));
        if (!part) return -1;
        reduce_partial_kernel<T, OP><<<dim3((unsigned)g.outer, (unsigned)chunks), RED_THREADS, 0, s>>>(g, in, part, chunk);
        reduce_final_kernel<T, OP><<<av_cuda_blocks(g.outer, 64), 64, 0, s>>>(g.outer, chunks, part, av_data(out), ip);
        // the scratch goes back to the cache: the next user of the block is queued after these kernels
        av_cuda_free(part, sizeof(S) * (size_t)(g.outer * chunks));
    } else {
        int64_t blocks = g.outer < (1 << 20) ? g.outer : (1 << 20);
        int threads = 32; // a power of two no larger than needed (the tree reduction halves it)
        while (threads < RED_THREADS && threads < g.R) threads *= 2;
        reduce_block_kernel<T, OP><<<(unsigned)blocks, threads, 0, s>>>(g, in, av_data(out), ip);
    }
    AV_CUDA_LAUNCH_CHECK("reduce");
    return 0;
}

extern "C" int av_cuda_reduce(int op, const av_tensor *t, unsigned mask, av_tensor *out, av_tensor *idx) {
    if (av_cuda_device_guard(t->storage->device.index)) return -1;
    red_geom g;
    memset(&g, 0, sizeof g);
    g.outer = g.R = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        if (mask >> d & 1) {
            g.rshape[g.nr] = t->shape[d];
            g.rstride[g.nr++] = t->stride[d];
            g.R *= t->shape[d];
        } else {
            g.kshape[g.nk] = t->shape[d];
            g.kstride[g.nk++] = t->stride[d];
            g.outer *= t->shape[d];
        }
    }
    if (g.outer == 0) return 0;
    g.nk = coalesce(g.nk, g.kshape, g.kstride);
    g.nr = coalesce(g.nr, g.rshape, g.rstride);
    int rc = -1;
#define RED_CASE(OPV) \
    case OPV: rc = launch<T, OPV>(g, t, out, idx); break;
    CU_DISPATCH_ALL(t->dtype, return av_fail("reduce: unknown dtype %d", (int)t->dtype), {
        switch (op) {
            RED_CASE(AV_RED_SUM)
            RED_CASE(AV_RED_PROD)
            RED_CASE(AV_RED_MAX)
            RED_CASE(AV_RED_MIN)
            RED_CASE(AV_RED_ARGMAX)
            RED_CASE(AV_RED_ARGMIN)
            RED_CASE(AV_RED_ALL)
            RED_CASE(AV_RED_ANY)
        default: return av_fail("reduce: reduction %d has no CUDA kernel", op);
        }
    });
#undef RED_CASE
    return rc;
}
