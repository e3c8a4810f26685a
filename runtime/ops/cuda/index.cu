// index_select / gather (one "take" kernel), scatter and scatter_add,
// masked_fill. CPU reference: runtime/ops/cpu/index.c, which checks shapes and
// index ranges before calling these. Repeated indices in scatter (set) leave
// one of the candidates, as on CUDA in PyTorch; scatter_add adds atomically.
#include "cuda_iter.cuh"

template <typename E, typename I> struct take_op {
    int64_t sd;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        int64_t ix = (int64_t)cu_ld<I>(it, 1, off[1]);
        cu_st<E>(it, 0, off[0], reinterpret_cast<const E *>(it.base[2])[off[2] + ix * sd]);
    }
};

template <typename I> static int take_idx(const cu_iter &it, size_t es, int64_t sd) {
    switch (es) {
    case 1: return cu_launch<3>(it, take_op<uint8_t, I>{sd}, "take");
    case 2: return cu_launch<3>(it, take_op<uint16_t, I>{sd}, "take");
    case 4: return cu_launch<3>(it, take_op<uint32_t, I>{sd}, "take");
    default: return cu_launch<3>(it, take_op<uint64_t, I>{sd}, "take");
    }
}

extern "C" int av_cuda_take(av_tensor *out, const av_tensor *index, const av_tensor *src, int64_t sd) {
    cu_iter it;
    const av_tensor *ops[3] = {out, index, src};
    if (cu_iter_init(&it, "index", out->ndim, out->shape, 3, ops)) return -1;
    if (!it.base[2]) return av_fail("index: the source must be on the GPU");
    size_t es = av_dtype_size(src->dtype);
    return index->dtype == AV_I32 ? take_idx<int32_t>(it, es, sd) : take_idx<int64_t>(it, es, sd);
}

template <typename E, typename I> struct scatter_set_op {
    int64_t sd;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        int64_t ix = (int64_t)cu_ld<I>(it, 1, off[1]);
        reinterpret_cast<E *>(it.base[0])[off[0] + ix * sd] = cu_ld<E>(it, 2, off[2]);
    }
};

__device__ __forceinline__ void cu_atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void cu_atomic_add(double *p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void cu_atomic_add(int32_t *p, int32_t v) { atomicAdd(p, v); }
__device__ __forceinline__ void cu_atomic_add(int64_t *p, int64_t v) {
    atomicAdd(reinterpret_cast<unsigned long long *>(p), (unsigned long long)v); // wraps like the CPU
}
__device__ __forceinline__ void cu_atomic_add(__half *p, __half v) { atomicAdd(p, v); }
__device__ __forceinline__ void cu_atomic_add(__nv_bfloat16 *p, __nv_bfloat16 v) { atomicAdd(p, v); }

template <typename T, typename I> struct scatter_add_op {
    int64_t sd;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        int64_t ix = (int64_t)cu_ld<I>(it, 1, off[1]);
        cu_atomic_add(reinterpret_cast<T *>(it.base[0]) + off[0] + ix * sd, cu_ld<T>(it, 2, off[2]));
    }
};

template <typename I> static int scatter_idx(const cu_iter &it, av_dtype dt, int64_t sd, int mode) {
    if (mode == 0) {
        switch (av_dtype_size(dt)) {
        case 1: return cu_launch<3>(it, scatter_set_op<uint8_t, I>{sd}, "scatter");
        case 2: return cu_launch<3>(it, scatter_set_op<uint16_t, I>{sd}, "scatter");
        case 4: return cu_launch<3>(it, scatter_set_op<uint32_t, I>{sd}, "scatter");
        default: return cu_launch<3>(it, scatter_set_op<uint64_t, I>{sd}, "scatter");
        }
    }
    switch (dt) {
    case AV_F32: return cu_launch<3>(it, scatter_add_op<float, I>{sd}, "scatter_add");
    case AV_F64: return cu_launch<3>(it, scatter_add_op<double, I>{sd}, "scatter_add");
    case AV_I64: return cu_launch<3>(it, scatter_add_op<int64_t, I>{sd}, "scatter_add");
    case AV_I32: return cu_launch<3>(it, scatter_add_op<int32_t, I>{sd}, "scatter_add");
    case AV_F16: return cu_launch<3>(it, scatter_add_op<__half, I>{sd}, "scatter_add");
    case AV_BF16: return cu_launch<3>(it, scatter_add_op<__nv_bfloat16, I>{sd}, "scatter_add");
    default:
        return av_fail("scatter_add: %s is not supported on CUDA tensors (move it to the CPU with :cpu())",
                       av_dtype_name(dt));
    }
}

extern "C" int av_cuda_scatter(av_tensor *dst, const av_tensor *index, const av_tensor *src, int64_t sd, int mode) {
    if (mode != 0 && mode != 1)
        return av_fail("scatter: reduce=\"multiply\" is not supported on CUDA tensors (move it to the CPU with :cpu())");
    cu_iter it;
    const av_tensor *ops[3] = {dst, index, src};
    if (cu_iter_init(&it, "scatter", index->ndim, index->shape, 3, ops)) return -1;
    return index->dtype == AV_I32 ? scatter_idx<int32_t>(it, dst->dtype, sd, mode)
                                  : scatter_idx<int64_t>(it, dst->dtype, sd, mode);
}

template <typename E> struct mfill_op {
    E v;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        if (cu_ld<uint8_t>(it, 1, off[1])) cu_st<E>(it, 0, off[0], v);
    }
};

extern "C" int av_cuda_masked_fill(av_tensor *t, const av_tensor *mask, double value) {
    cu_iter it;
    const av_tensor *ops[2] = {t, mask};
    if (cu_iter_init(&it, "masked_fill", t->ndim, t->shape, 2, ops)) return -1;
    uint64_t raw = 0;
    av_store_elem(t->dtype, &raw, value);
    switch (av_dtype_size(t->dtype)) {
    case 1: return cu_launch<2>(it, mfill_op<uint8_t>{(uint8_t)raw}, "masked_fill");
    case 2: return cu_launch<2>(it, mfill_op<uint16_t>{(uint16_t)raw}, "masked_fill");
    case 4: return cu_launch<2>(it, mfill_op<uint32_t>{(uint32_t)raw}, "masked_fill");
    default: return cu_launch<2>(it, mfill_op<uint64_t>{raw}, "masked_fill");
    }
}
