/* The library-backed CUDA kernels (cuDNN, cuBLAS) and the nn kernels beside
 * them: convolution, batch norm, pooling, softmax, cross entropy / nll,
 * matrix products, fused optimizer updates and the mixed-precision helpers.
 *
 * The first half is a plain C ABI for the op entry points in
 * runtime/ops/cpu/ (conv.c, norm.c, ...) and runtime/autograd/grad_*.c, which call it only in
 * builds with AV_WITH_CUDA and only when an input lives on a CUDA device.
 * Unlike cuda_ops.h (whose kernels fill outputs allocated by the caller),
 * these functions check their own shapes and allocate their results on the
 * inputs' device, because the result layout (channels-last, cuDNN's saved
 * statistics) is theirs to choose. Each returns a new reference or 0, and
 * NULL / -1 with av_fail() set; failing cuDNN/cuBLAS calls are named.
 *
 * The second half (C++ / nvcc only) holds the handles and checks shared by
 * the .cu files. */
#ifndef AVIARY_CUDA_LIB_H
#define AVIARY_CUDA_LIB_H

#include "aviary/tensor.h"
#include "aviary/conv.h"
#include "aviary/nn_ops.h"
#include "aviary/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- precision switches (cudnn.cu) ------------------------------------------------ */
/* TF32 tensor-core math for float32 convolutions and matrix products (off by
 * default: float32 results then match the CPU to float32 rounding) */
void av_cuda_set_allow_tf32(bool on);
bool av_cuda_get_allow_tf32(void);
/* cuDNN's version as major*10000 + minor*100 + patch (0 without a GPU) */
long av_cudnn_version(void);

/* ---- convolution (conv.cu) --------------------------------------------------------- */
/* x N x C x H x W (NCHW-contiguous or channels-last), w Co x C/g x kh x kw,
 * b Co or NULL, all one float dtype on one device. The result has x's layout. */
av_tensor *av_cuda_conv2d(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a);
/* any of gx, gw, gb may be NULL (not wanted) */
int av_cuda_conv2d_backward(const av_tensor *gy, const av_tensor *x, const av_tensor *w, const av_conv2d_args *a,
                            av_tensor **gx, av_tensor **gw, av_tensor **gb);
/* the input gradient from the input's shape (x not needed), the weight gradient from the weight's */
av_tensor *av_cuda_conv2d_input_grad(const int64_t xshape[4], const av_tensor *w, const av_tensor *gy,
                                     const av_conv2d_args *a);
av_tensor *av_cuda_conv2d_weight_grad(const av_tensor *x, const int64_t wshape[4], const av_tensor *gy,
                                      const av_conv2d_args *a);

/* ---- batch norm (norm.cu) ---------------------------------------------------------- */
/* y = BN(x) over dim 1 of an (N, C, ...) input. weight/bias/running stats
 * (C entries, float32 for half inputs, x's dtype otherwise) may be NULL,
 * running stats being required in evaluation. *save_mean and *save_invstd
 * receive float32 (float64 for float64 x) C-vectors: the batch statistics in
 * training, the running mean and 1/sqrt(running_var + eps) otherwise. */
av_tensor *av_cuda_batch_norm(const av_tensor *x, av_tensor *running_mean, av_tensor *running_var,
                              const av_tensor *weight, const av_tensor *bias, bool training, double momentum,
                              double eps, av_tensor **save_mean, av_tensor **save_invstd);
/* gradients of the above: gx (x's shape and dtype), and gw, gb as C-vectors of
 * save_mean's dtype; each only when its pointer is not NULL */
int av_cuda_batch_norm_backward(const av_tensor *x, const av_tensor *gy, const av_tensor *weight,
                                const av_tensor *save_mean, const av_tensor *save_invstd, bool training,
                                double eps, av_tensor **gx, av_tensor **gw, av_tensor **gb);

/* ---- pooling (pool.cu); geometry already checked by pool.c -------------------------- */
typedef struct av_cuda_pool_geom {
    int64_t N, C, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    bool batched, count_include_pad;
    int64_t divisor; /* 0: none */
} av_cuda_pool_geom;
av_tensor *av_cuda_max_pool2d(const av_tensor *x, const av_cuda_pool_geom *g, av_tensor **indices);
av_tensor *av_cuda_avg_pool2d(const av_tensor *x, const av_cuda_pool_geom *g);
av_tensor *av_cuda_adaptive_avg_pool2d(const av_tensor *x, const av_cuda_pool_geom *g);
av_tensor *av_cuda_adaptive_max_pool2d(const av_tensor *x, const av_cuda_pool_geom *g, av_tensor **indices);
/* gradients: g has the output's shape, the result the input's (ndim, shape).
 * avg: o gives the window (kernel, stride, padding, divisor rules). */
av_tensor *av_cuda_max_pool2d_backward(const av_tensor *g, const av_tensor *idx, int ndim, const int64_t *shape);
av_tensor *av_cuda_avg_pool2d_backward(const av_tensor *g, const av_pool2d_opts *o, int ndim, const int64_t *shape);
av_tensor *av_cuda_adaptive_avg_pool2d_backward(const av_tensor *g, int ndim, const int64_t *shape);

/* ---- softmax (softmax.cu): dim already wrapped; results contiguous ------------------ */
av_tensor *av_cuda_softmax(const av_tensor *x, int dim, bool log);
av_tensor *av_cuda_softmax_backward(const av_tensor *g, const av_tensor *y, int dim, bool log);

/* ---- cross entropy / nll (loss.cu) ----------------------------------------------------
 * input [N, C, S] contiguous, target [N, S] int64 contiguous, weight [C] in
 * input's dtype or NULL; targets are range-checked on the device (the error
 * names the first bad one). The forward returns the loss (reduced: 0-d), the
 * log-sum-exp per position (fused) and the mean's denominator. */
int av_cuda_nll_forward(const av_tensor *input, const av_tensor *target, const av_tensor *weight, int64_t N,
                        int64_t C, int64_t S, int64_t ignore_index, int64_t base, int reduction,
                        double label_smoothing, bool fused, int out_ndim, const int64_t *out_shape, av_tensor **out,
                        av_tensor **lse, double *total_weight);
av_tensor *av_cuda_nll_backward(const av_tensor *input, const av_tensor *target, const av_tensor *weight, int64_t N,
                                int64_t C, int64_t S, int64_t ignore_index, int64_t base, int reduction,
                                double label_smoothing, bool fused, const av_tensor *g, const av_tensor *lse,
                                double total_weight);

/* ---- matrix products (gemm.cu) ----------------------------------------------------------
 * Row-major c[m, n] = alpha op(a) op(b) + beta c through cublasGemmEx; a, b
 * in dtype dt (f32, f64, f16, bf16), c in cdt (dt, or f32 for half inputs).
 * batch > 1 runs a strided batch (strides in elements). */
int av_cuda_gemm(av_dtype dt, av_dtype cdt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, int64_t stride_a, const void *b, int64_t ldb, int64_t stride_b,
                 double beta, void *c, int64_t ldc, int64_t stride_c, int64_t batch);
/* y2 [rows, out] = x2 [rows, in] w^T (+ b) */
av_tensor *av_cuda_linear(const av_tensor *x2, const av_tensor *w, const av_tensor *b);
int av_cuda_linear_backward(const av_tensor *g2, const av_tensor *x2, const av_tensor *w, bool want_b,
                            av_tensor **dx2, av_tensor **dw, av_tensor **db);
/* a [B, n, k] @ b [B, k, m] (any strides; copied when cuBLAS cannot read them) */
av_tensor *av_cuda_bmm(const av_tensor *a, const av_tensor *b);

/* ---- optimizers and mixed precision (optim.cu, amp.cu) --------------------------------- */
int av_cuda_sgd_step(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *buf,
                     const av_sgd_opts *o);
int av_cuda_adam_step(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *m, av_tensor *const *v,
                      av_tensor *const *vmax, const av_adam_opts *o);
/* g *= inv_scale for every tensor; *found_inf = any non-finite value (synchronises) */
int av_cuda_unscale(int n, av_tensor *const *g, double inv_scale, bool *found_inf);

#ifdef __cplusplus
}
#endif

/* ---- shared by the .cu files ---------------------------------------------------------- */
#ifdef __CUDACC__
#include <cudnn.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "cuda_common.h"

// returns -1 from the enclosing function with "call: CUDNN_STATUS_X at file:line"
#define AV_CUDNN_CHECK(call)                                                                          \
    do {                                                                                              \
        cudnnStatus_t av_st_ = (call);                                                                \
        if (av_st_ != CUDNN_STATUS_SUCCESS)                                                           \
            return av_fail("%s: %s at %s:%d", #call, cudnnGetErrorString(av_st_), __FILE__, __LINE__); \
    } while (0)
#define AV_CUBLAS_CHECK(call)                                                                         \
    do {                                                                                              \
        cublasStatus_t av_st_ = (call);                                                               \
        if (av_st_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return av_fail("%s: %s (%s) at %s:%d", #call, cublasGetStatusName(av_st_),                \
                           cublasGetStatusString(av_st_), __FILE__, __LINE__);                        \
    } while (0)
// a launch in a function returning a pointer: NULL with the error set
#define AV_LAUNCH_OR_NULL(name)                                                                       \
    do {                                                                                              \
        cudaError_t av_err_ = cudaPeekAtLastError();                                                  \
        if (av_err_ != cudaSuccess) {                                                                 \
            cudaGetLastError();                                                                       \
            av_fail("%s: launch failed: %s", name, cudaGetErrorString(av_err_));                      \
            return NULL;                                                                              \
        }                                                                                             \
    } while (0)

extern "C" {
// the current device's handles, created on first use and bound to av_cuda_stream();
// NULL with av_fail() set when the library cannot start (version mismatch, no GPU)
cudnnHandle_t av_cudnn_handle(void);
cublasHandle_t av_cublas_handle(void);
// f32/f64/f16/bf16 -> the cuDNN data type; -1 for anything else
int av_cudnn_dtype(av_dtype dt);
}
// the device of t as a device id (AV_CUDA tensors only)
static inline av_device av_cuda_dev(const av_tensor *t) { return t->storage->device; }

// float conversions for the kernels' templates
template <typename T> __device__ __forceinline__ float av_to_f(T v) { return (float)v; }
template <> __device__ __forceinline__ float av_to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float av_to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T av_from_f(float v) { return (T)v; }
template <> __device__ __forceinline__ __half av_from_f<__half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 av_from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
// the accumulation type: double for double, float otherwise
template <typename T> struct av_acc { typedef float type; };
template <> struct av_acc<double> { typedef double type; };
template <typename T> __device__ __forceinline__ typename av_acc<T>::type av_load(const T *p) {
    return (typename av_acc<T>::type)av_to_f(*p);
}
template <> __device__ __forceinline__ double av_load<double>(const double *p) { return *p; }
template <typename T> __device__ __forceinline__ void av_store(T *p, typename av_acc<T>::type v) {
    *p = av_from_f<T>((float)v);
}
template <> __device__ __forceinline__ void av_store<double>(double *p, double v) { *p = v; }

// block-wide reductions (blockDim.x a multiple of 32, at most 1024); every thread gets the result
template <typename A> __device__ __forceinline__ A av_warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ __forceinline__ A av_warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) {
        A u = __shfl_xor_sync(0xffffffffu, v, o);
        v = (u > v || u != u) ? u : v; // NaN propagates
    }
    return v;
}
template <typename A> __device__ __forceinline__ A av_block_sum(A v) {
    __shared__ A part[32];
    __syncthreads(); // part may still be read by a previous call
    v = av_warp_sum(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    A r = (threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : (A)0;
    return av_warp_sum(r);
}
template <typename A> __device__ __forceinline__ A av_block_max(A v) {
    __shared__ A part[32];
    __syncthreads();
    v = av_warp_max(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    A r = (threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : (A)-INFINITY;
    return av_warp_max(r);
}

// runs the statements with T the element type of dt (f32, f64, f16, bf16; callers check dt first)
#define AV_DISPATCH_FLOAT(dt, T, ...)                                   \
    switch (dt) {                                                       \
    case AV_F32: { typedef float T; __VA_ARGS__; } break;               \
    case AV_F64: { typedef double T; __VA_ARGS__; } break;              \
    case AV_F16: { typedef __half T; __VA_ARGS__; } break;              \
    case AV_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;      \
    default: break;                                                     \
    }
static inline bool av_cuda_float(av_dtype dt) { return dt == AV_F32 || dt == AV_F64 || dt == AV_F16 || dt == AV_BF16; }

// a 4-d tensor in dense channels-last (NHWC) memory that is not also plain NCHW-contiguous
static inline bool av_cuda_is_nhwc(const av_tensor *t) {
    if (t->ndim != 4 || av_is_contiguous(t)) return false;
    const int64_t C = t->shape[1], H = t->shape[2], W = t->shape[3];
    return t->stride[1] == 1 && t->stride[3] == C && t->stride[2] == W * C && t->stride[0] == H * W * C;
}

// t (4-d) in NCHW-contiguous (nhwc false) or dense NHWC memory: a new reference, t itself when
// it is already laid out so
static inline av_tensor *av_cuda_in_layout(const av_tensor *t, bool nhwc) {
    if (!nhwc) return av_contiguous(t);
    if (av_cuda_is_nhwc(t)) return av_retain((av_tensor *)t);
    static const int to_nhwc[4] = {0, 2, 3, 1}, back[4] = {0, 3, 1, 2};
    av_tensor *p = av_permute(t, to_nhwc);
    av_tensor *c = p ? av_contiguous(p) : NULL;
    av_release(p);
    av_tensor *r = c ? av_permute(c, back) : NULL;
    av_release(c);
    return r;
}
#endif

#endif
