// Strided elementwise iteration on the GPU: the same coalescing as the CPU
// iterator (runtime/ops/cpu/iter.c builds the shape and strides), then one
// thread per element of a grid-stride loop that turns its linear index into
// one offset per operand. Scalars (0-d CPU tensors) travel by value.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <string.h>
#include "cuda_common.h"
#include "cuda_ops.h"
extern "C" {
#include "../cpu/iter.h"
}

#define CU_MAX_ARGS AV_ITER_MAX_ARGS

struct cu_iter {
    int ndim, nargs;
    int64_t numel;
    int64_t shape[AV_MAX_DIMS];
    int64_t stride[CU_MAX_ARGS][AV_MAX_DIMS]; // elements; 0 where broadcast
    char *base[CU_MAX_ARGS];                  // NULL for a scalar operand
    uint64_t raw[CU_MAX_ARGS];                // a scalar operand's bytes
};

// builds the iteration of ops (ops[0] usually the output) over shape; a CPU
// operand must be 0-d and becomes a by-value scalar; sets the current device
// to the first CUDA operand's. -1 with av_fail on error.
static inline int cu_iter_init(cu_iter *ci, const char *fn, int ndim, const int64_t *shape, int nargs,
                               const av_tensor *const *ops) {
    av_iter it;
    av_iter_init(&it, ndim, shape, nargs, ops);
    memset(ci, 0, sizeof *ci);
    ci->ndim = it.ndim;
    ci->nargs = nargs;
    ci->numel = it.numel;
    memcpy(ci->shape, it.shape, sizeof it.shape);
    int dev = -1;
    for (int k = 0; k < nargs; k++) {
        memcpy(ci->stride[k], it.stride[k], sizeof it.stride[k]);
        if (ops[k]->storage->device.type == AV_CUDA) {
            ci->base[k] = it.base[k];
            if (dev < 0) dev = ops[k]->storage->device.index;
        } else {
            if (ops[k]->ndim != 0 || k == 0)
                return av_fail("%s: expected all tensors on one device, got a CPU tensor among CUDA tensors "
                               "(move it with :cuda())", fn);
            memcpy(&ci->raw[k], av_data(ops[k]), av_dtype_size(ops[k]->dtype));
            for (int d = 0; d < AV_MAX_DIMS; d++) ci->stride[k][d] = 0;
        }
    }
    return dev >= 0 ? av_cuda_device_guard(dev) : 0;
}

template <typename T> __device__ __forceinline__ T cu_ld(const cu_iter &it, int k, int64_t off) {
    if (it.base[k]) return reinterpret_cast<const T *>(it.base[k])[off];
    T v;
    memcpy(&v, &it.raw[k], sizeof(T));
    return v;
}
template <typename T> __device__ __forceinline__ void cu_st(const cu_iter &it, int k, int64_t off, T v) {
    reinterpret_cast<T *>(it.base[k])[off] = v;
}

template <int N, typename F> __global__ void cu_elementwise_kernel(cu_iter it, F f) {
    int64_t n = it.numel;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        int64_t off[N];
        if (it.ndim == 1) {
#pragma unroll
            for (int k = 0; k < N; k++) off[k] = i * it.stride[k][0];
        } else {
#pragma unroll
            for (int k = 0; k < N; k++) off[k] = 0;
            int64_t r = i;
            for (int d = it.ndim - 1; d >= 0; d--) {
                int64_t s = it.shape[d];
                int64_t q = r / s, c = r - q * s;
                r = q;
#pragma unroll
                for (int k = 0; k < N; k++) off[k] += c * it.stride[k][d];
            }
        }
        f(it, off);
    }
}

// runs f over the iteration on the current stream
template <int N, typename F> static inline int cu_launch(const cu_iter &it, F f, const char *name) {
    if (it.numel == 0) return 0;
    const int threads = 256;
    cu_elementwise_kernel<N, F><<<av_cuda_blocks(it.numel, threads), threads, 0, av_cuda_stream()>>>(it, f);
    cudaError_t e = cudaPeekAtLastError();
    if (e != cudaSuccess) {
        cudaGetLastError();
        return av_fail("%s: kernel launch failed: %s (%s)", name, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    return 0;
}

// ---- numeric conversions (half types go through float, as on the CPU) ------
template <typename T> struct cu_acc { typedef T type; };
template <> struct cu_acc<__half> { typedef float type; };
template <> struct cu_acc<__nv_bfloat16> { typedef float type; };

template <typename D> struct cu_cvt {
    template <typename S> __device__ static __forceinline__ D from(S s) { return static_cast<D>(s); }
    __device__ static __forceinline__ D from(__half s) { return static_cast<D>(__half2float(s)); }
    __device__ static __forceinline__ D from(__nv_bfloat16 s) { return static_cast<D>(__bfloat162float(s)); }
};
template <> struct cu_cvt<__half> {
    template <typename S> __device__ static __forceinline__ __half from(S s) { return __float2half_rn((float)s); }
    __device__ static __forceinline__ __half from(__half s) { return s; }
    __device__ static __forceinline__ __half from(__nv_bfloat16 s) { return __float2half_rn(__bfloat162float(s)); }
};
template <> struct cu_cvt<__nv_bfloat16> {
    template <typename S> __device__ static __forceinline__ __nv_bfloat16 from(S s) {
        return __float2bfloat16_rn((float)s);
    }
    __device__ static __forceinline__ __nv_bfloat16 from(__nv_bfloat16 s) { return s; }
    __device__ static __forceinline__ __nv_bfloat16 from(__half s) { return __float2bfloat16_rn(__half2float(s)); }
};
// uint8 from a float: through int so negative values wrap as on x86 instead of being undefined
template <> struct cu_cvt<uint8_t> {
    template <typename S> __device__ static __forceinline__ uint8_t from(S s) { return (uint8_t)(int64_t)s; }
    __device__ static __forceinline__ uint8_t from(uint8_t s) { return s; }
    __device__ static __forceinline__ uint8_t from(__half s) { return (uint8_t)(int64_t)__half2float(s); }
    __device__ static __forceinline__ uint8_t from(__nv_bfloat16 s) { return (uint8_t)(int64_t)__bfloat162float(s); }
};
template <typename D, typename S> __device__ __forceinline__ D cu_to(S s) { return cu_cvt<D>::from(s); }

// switch over a dtype binding T; unsupported dtypes fall to the default
#define CU_DISPATCH_CASE(DT, TYPE, ...) \
    case DT: {                          \
        typedef TYPE T;                 \
        __VA_ARGS__;                    \
        break;                          \
    }
#define CU_DISPATCH_ALL(dt, fail, ...)                             \
    switch (dt) {                                                  \
        CU_DISPATCH_CASE(AV_F32, float, __VA_ARGS__)               \
        CU_DISPATCH_CASE(AV_F64, double, __VA_ARGS__)              \
        CU_DISPATCH_CASE(AV_I64, int64_t, __VA_ARGS__)             \
        CU_DISPATCH_CASE(AV_I32, int32_t, __VA_ARGS__)             \
        CU_DISPATCH_CASE(AV_U8, uint8_t, __VA_ARGS__)              \
        CU_DISPATCH_CASE(AV_F16, __half, __VA_ARGS__)              \
        CU_DISPATCH_CASE(AV_BF16, __nv_bfloat16, __VA_ARGS__)      \
    default: fail;                                                 \
    }
#define CU_DISPATCH_FLOAT(dt, fail, ...)                           \
    switch (dt) {                                                  \
        CU_DISPATCH_CASE(AV_F32, float, __VA_ARGS__)               \
        CU_DISPATCH_CASE(AV_F64, double, __VA_ARGS__)              \
        CU_DISPATCH_CASE(AV_F16, __half, __VA_ARGS__)              \
        CU_DISPATCH_CASE(AV_BF16, __nv_bfloat16, __VA_ARGS__)      \
    default: fail;                                                 \
    }
