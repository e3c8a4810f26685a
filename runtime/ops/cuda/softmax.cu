// softmax and log_softmax over one dim on CUDA, forward and backward, with
// own kernels over the input seen as outer x C x inner (C the softmax dim),
// as softmax.c does on the CPU. Rows (inner == 1, the classifier case) take
// one block each; otherwise each thread walks one column of C strided
// elements. Accumulation is in float (double for float64).
#include <math.h>
#include "cuda_lib.h"

template <typename A> __device__ __forceinline__ A exp_(A v) { return expf(v); }
template <> __device__ __forceinline__ double exp_<double>(double v) { return exp(v); }
template <typename A> __device__ __forceinline__ A log_(A v) { return logf(v); }
template <> __device__ __forceinline__ double log_<double>(double v) { return log(v); }

template <typename T> __global__ void softmax_rows(const T *x, T *y, int64_t C, bool lg) {
    typedef typename av_acc<T>::type A;
    const T *xr = x + blockIdx.x * C;
    T *yr = y + blockIdx.x * C;
    A m = -INFINITY;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        A v = av_load(xr + i);
        m = v > m ? v : m;
    }
    m = av_block_max(m);
    A s = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += exp_(av_load(xr + i) - m);
    s = av_block_sum(s);
    if (lg) {
        A c = m + log_(s);
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) av_store(yr + i, av_load(xr + i) - c);
    } else {
        A inv = (A)1 / s;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) av_store(yr + i, exp_(av_load(xr + i) - m) * inv);
    }
}

template <typename T>
__global__ void softmax_cols(const T *x, T *y, int64_t outer, int64_t C, int64_t inner, bool lg) {
    typedef typename av_acc<T>::type A;
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= outer * inner) return;
    int64_t o = k / inner, s0 = k - o * inner;
    const T *xc = x + o * C * inner + s0;
    T *yc = y + o * C * inner + s0;
    A m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; c++) {
        A v = av_load(xc + c * inner);
        m = v > m ? v : m;
    }
    for (int64_t c = 0; c < C; c++) s += exp_(av_load(xc + c * inner) - m);
    if (lg) {
        A z = m + log_(s);
        for (int64_t c = 0; c < C; c++) av_store(yc + c * inner, av_load(xc + c * inner) - z);
    } else {
        A inv = (A)1 / s;
        for (int64_t c = 0; c < C; c++) av_store(yc + c * inner, exp_(av_load(xc + c * inner) - m) * inv);
    }
}

// softmax: gx = y (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g)
template <typename T> __global__ void softmax_bwd_rows(const T *g, const T *y, T *gx, int64_t C, bool lg) {
    typedef typename av_acc<T>::type A;
    const int64_t off = blockIdx.x * C;
    A acc = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        acc += lg ? av_load(g + off + i) : av_load(g + off + i) * av_load(y + off + i);
    acc = av_block_sum(acc);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        A gv = av_load(g + off + i), yv = av_load(y + off + i);
        av_store(gx + off + i, lg ? gv - exp_(yv) * acc : yv * (gv - acc));
    }
}

template <typename T>
__global__ void softmax_bwd_cols(const T *g, const T *y, T *gx, int64_t outer, int64_t C, int64_t inner, bool lg) {
    typedef typename av_acc<T>::type A;
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= outer * inner) return;
    int64_t o = k / inner, s0 = k - o * inner, base = o * C * inner + s0;
    A acc = 0;
    for (int64_t c = 0; c < C; c++) {
        int64_t i = base + c * inner;
        acc += lg ? av_load(g + i) : av_load(g + i) * av_load(y + i);
    }
    for (int64_t c = 0; c < C; c++) {
        int64_t i = base + c * inner;
        A gv = av_load(g + i), yv = av_load(y + i);
        av_store(gx + i, lg ? gv - exp_(yv) * acc : yv * (gv - acc));
    }
}

static void split_dims(const av_tensor *t, int dim, int64_t *outer, int64_t *C, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    *C = t->ndim ? t->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

static int threads_for_row(int64_t C) { return C >= 1024 ? 512 : C >= 256 ? 256 : C > 64 ? 128 : 64; }

extern "C" av_tensor *av_cuda_softmax(const av_tensor *x, int dim, bool lg) {
    const char *fn = lg ? "log_softmax" : "softmax";
    if (!av_cuda_float(x->dtype)) {
        av_fail("%s: expected a floating point tensor, got %s", fn, av_dtype_name(x->dtype));
        return NULL;
    }
    av_tensor *xc = av_contiguous(x);
    av_tensor *y = xc ? av_empty_on(x->ndim, x->shape, x->dtype, av_device_of(x)) : NULL;
    if (!y) {
        av_release(xc);
        return NULL;
    }
    int64_t outer, C, inner;
    split_dims(x, dim, &outer, &C, &inner);
    if (outer * C * inner > 0) {
        cudaStream_t s = av_cuda_stream();
        AV_DISPATCH_FLOAT(x->dtype, T, {
            const T *xp = (const T *)av_data(xc);
            T *yp = (T *)av_data(y);
            if (inner == 1) softmax_rows<T><<<(unsigned)outer, threads_for_row(C), 0, s>>>(xp, yp, C, lg);
            else softmax_cols<T><<<av_cuda_blocks(outer * inner, 256), 256, 0, s>>>(xp, yp, outer, C, inner, lg);
        });
        if (av_cuda_launch_failed(fn)) {
            av_release(y);
            y = NULL;
        }
    }
    av_release(xc);
    return y;
}

extern "C" av_tensor *av_cuda_softmax_backward(const av_tensor *g, const av_tensor *y, int dim, bool lg) {
    const char *fn = lg ? "log_softmax_backward" : "softmax_backward";
    if (av_check_same_device(fn, g, "grad_output", y, "output")) return NULL;
    av_tensor *gc = g->dtype == y->dtype ? av_contiguous(g) : av_to_dtype(g, y->dtype);
    av_tensor *gcc = gc ? av_contiguous(gc) : NULL;
    av_tensor *yc = gcc ? av_contiguous(y) : NULL;
    av_tensor *gx = yc ? av_empty_on(y->ndim, y->shape, y->dtype, av_device_of(y)) : NULL;
    if (gx) {
        int64_t outer, C, inner;
        split_dims(y, dim, &outer, &C, &inner);
        if (outer * C * inner > 0) {
            cudaStream_t s = av_cuda_stream();
            AV_DISPATCH_FLOAT(y->dtype, T, {
                const T *gp = (const T *)av_data(gcc), *yp = (const T *)av_data(yc);
                T *op = (T *)av_data(gx);
                if (inner == 1) softmax_bwd_rows<T><<<(unsigned)outer, threads_for_row(C), 0, s>>>(gp, yp, op, C, lg);
                else
                    softmax_bwd_cols<T><<<av_cuda_blocks(outer * inner, 256), 256, 0, s>>>(gp, yp, op, outer, C, inner,
                                                                                          lg);
            });
            if (av_cuda_launch_failed(fn)) {
                av_release(gx);
                gx = NULL;
            }
        }
    }
    av_release(gc);
    av_release(gcc);
    av_release(yc);
    return gx;
}
