// Batch normalisation on CUDA: training and evaluation forward and the
// training backward through cuDNN (spatial mode, NCHW or channels-last
// memory); the evaluation-mode backward (used by attribution methods on a
// frozen network), which cuDNN lacks, with own kernels.
//
// cuDNN keeps PyTorch's semantics: the batch statistics normalise with the
// biased variance, the running variance is updated with the unbiased one,
// r = (1 - momentum) r + momentum * batch_stat. The saved statistics are the
// batch mean and 1/sqrt(var + eps), in the parameters' type (float32 for
// half inputs).
#include <math.h>
#include <string.h>
#include "cuda_lib.h"
#include "aviary/autograd.h"

static av_tensor *empty_like_layout(const av_tensor *x, bool nhwc) {
    if (!nhwc) return av_empty_on(x->ndim, x->shape, x->dtype, av_device_of(x));
    int64_t m[4] = {x->shape[0], x->shape[2], x->shape[3], x->shape[1]};
    static const int back[4] = {0, 3, 1, 2};
    av_tensor *t = av_empty_on(4, m, x->dtype, av_device_of(x));
    av_tensor *r = t ? av_permute(t, back) : NULL;
    av_release(t);
    return r;
}

static int set_desc(cudnnTensorDescriptor_t d, const av_tensor *x, bool nhwc) {
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++) S *= x->shape[i];
    cudnnDataType_t dt = (cudnnDataType_t)av_cudnn_dtype(x->dtype);
    if (nhwc) {
        int64_t H = x->shape[2], W = x->shape[3];
        AV_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, dt, (int)N, (int)C, (int)H, (int)W, (int)(H * W * C), 1,
                                                    (int)(W * C), (int)C));
    } else {
        AV_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, dt, (int)N, (int)C, (int)S, 1, (int)(C * S), (int)S, 1, 1));
    }
    return 0;
}

namespace {
// the descriptors of one call, destroyed on scope exit
struct bn_desc {
    cudnnTensorDescriptor_t x = NULL, y = NULL, p = NULL;
    ~bn_desc() {
        if (x) cudnnDestroyTensorDescriptor(x);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (p) cudnnDestroyTensorDescriptor(p);
    }
};
} // namespace

template <typename T> __global__ void fill_kernel(T *p, int64_t n, T v) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) p[i] = v;
}

template <typename T> __global__ void invstd_kernel(const T *var, T *out, int64_t n, double eps) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = (T)(1.0 / sqrt((double)var[i] + eps));
}

// a C-vector of the parameter type holding v
static av_tensor *const_vec(int64_t C, av_dtype dt, av_device dev, double v) {
    av_tensor *t = av_empty_on(1, &C, dt, dev);
    if (!t || C == 0) return t;
    if (dt == AV_F64) fill_kernel<double><<<av_cuda_blocks(C, 256), 256, 0, av_cuda_stream()>>>((double *)av_data(t), C, v);
    else fill_kernel<float><<<av_cuda_blocks(C, 256), 256, 0, av_cuda_stream()>>>((float *)av_data(t), C, (float)v);
    AV_LAUNCH_OR_NULL("batch_norm (fill)");
    return t;
}

// t as a contiguous C-vector of dtype dt (a new reference), or an error naming what
static av_tensor *param_vec(const av_tensor *t, const char *what, int64_t C, av_dtype dt, const av_tensor *x) {
    char b[64];
    if (av_check_same_device("batch_norm", x, "input", t, what)) return NULL;
    if (av_numel(t) != C) {
        av_fail("batch_norm: %s has %lld entries, expected %lld (channels of input %s)", what, (long long)av_numel(t),
                (long long)C, av_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (!av_cuda_float(t->dtype)) {
        av_fail("batch_norm: %s must be a floating point tensor, got %s", what, av_dtype_name(t->dtype));
        return NULL;
    }
    av_tensor *c = av_to_dtype(t, dt);
    av_tensor *r = c ? av_contiguous(c) : NULL;
    av_release(c);
    return r;
}

extern "C" av_tensor *av_cuda_batch_norm(const av_tensor *x, av_tensor *rm, av_tensor *rv, const av_tensor *weight,
                                         const av_tensor *bias, bool training, double momentum, double eps,
                                         av_tensor **save_mean, av_tensor **save_invstd) {
    char b[64];
    *save_mean = *save_invstd = NULL;
    if (!av_cuda_float(x->dtype)) {
        av_fail("batch_norm: expected a floating point input, got %s", av_dtype_name(x->dtype));
        return NULL;
    }
    if (x->ndim < 2) {
        av_fail("batch_norm: expected an input of 2 or more dims (N, C, ...), got size %s", av_shape_str(x, b, sizeof b));
        return NULL;
    }
    const int64_t C = x->shape[1];
    int64_t M = x->shape[0];
    for (int d = 2; d < x->ndim; d++) M *= x->shape[d];
    if (!training && (!rm || !rv)) {
        av_fail("batch_norm: running_mean and running_var are required in evaluation mode (training = false)");
        return NULL;
    }
    if (training && M <= 1) {
        av_fail("batch_norm: expected more than 1 value per channel when training, got input of size %s",
                av_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (!(eps >= CUDNN_BN_MIN_EPSILON) || isinf(eps)) {
        av_fail("batch_norm: eps must be a non-negative number, got %g", eps);
        return NULL;
    }
    if (training && !isfinite(momentum)) {
        av_fail("batch_norm: momentum must be a finite number, got %g", momentum);
        return NULL;
    }
    const av_dtype pdt = x->dtype == AV_F64 ? AV_F64 : AV_F32;
    const av_device dev = av_device_of(x);
    for (int k = 0; k < 2; k++) {
        av_tensor *r = k ? rv : rm;
        if (!r) continue;
        if (av_check_same_device("batch_norm", x, "input", r, k ? "running_var" : "running_mean")) return NULL;
        if (r->dtype != pdt || !av_is_contiguous(r) || av_numel(r) != C) {
            av_fail("batch_norm: %s must be a contiguous %s tensor of %lld entries on the input's device, got %s",
                    k ? "running_var" : "running_mean", av_dtype_name(pdt), (long long)C, av_dtype_name(r->dtype));
            return NULL;
        }
    }
    cudnnHandle_t h = av_cudnn_handle();
    if (!h) return NULL;
    bool nhwc = av_cuda_is_nhwc(x);
    av_tensor *xc = av_cuda_in_layout(x, nhwc), *y = NULL, *w = NULL, *bb = NULL, *sm = NULL, *si = NULL;
    bn_desc d;
    const float f1 = 1, f0 = 0;
    const double d1 = 1, d0 = 0;
    const void *one = pdt == AV_F64 ? (const void *)&d1 : (const void *)&f1;
    const void *zero = pdt == AV_F64 ? (const void *)&d0 : (const void *)&f0;
    cudnnStatus_t st;
    if (!xc || !(y = empty_like_layout(x, nhwc))) goto fail;
    if (!(w = weight ? param_vec(weight, "weight", C, pdt, x) : const_vec(C, pdt, dev, 1))) goto fail;
    if (!(bb = bias ? param_vec(bias, "bias", C, pdt, x) : const_vec(C, pdt, dev, 0))) goto fail;
    if (!(sm = av_empty_on(1, &C, pdt, dev)) || !(si = av_empty_on(1, &C, pdt, dev))) goto fail;
    if (cudnnCreateTensorDescriptor(&d.x) || cudnnCreateTensorDescriptor(&d.p)) {
        av_fail("batch_norm: cudnnCreateTensorDescriptor failed");
        goto fail;
    }
    if (set_desc(d.x, xc, nhwc)) goto fail;
    if ((st = cudnnDeriveBNTensorDescriptor(d.p, d.x, CUDNN_BATCHNORM_SPATIAL)) != CUDNN_STATUS_SUCCESS) {
        av_fail("cudnnDeriveBNTensorDescriptor: %s", cudnnGetErrorString(st));
        goto fail;
    }
    if (av_numel(x) == 0) goto done;
    if (training) {
        st = cudnnBatchNormalizationForwardTraining(h, CUDNN_BATCHNORM_SPATIAL, one, zero, d.x, av_data(xc), d.x,
                                                    av_data(y), d.p, av_data(w), av_data(bb), momentum,
                                                    rm ? av_data(rm) : NULL, rv ? av_data(rv) : NULL, eps, av_data(sm),
                                                    av_data(si));
        if (st != CUDNN_STATUS_SUCCESS) {
            av_fail("cudnnBatchNormalizationForwardTraining: %s (input %s)", cudnnGetErrorString(st),
                    av_shape_str(x, b, sizeof b));
            goto fail;
        }
        if (rm) av_bump_version(rm);
        if (rv) av_bump_version(rv);
    } else {
        st = cudnnBatchNormalizationForwardInference(h, CUDNN_BATCHNORM_SPATIAL, one, zero, d.x, av_data(xc), d.x,
                                                     av_data(y), d.p, av_data(w), av_data(bb), av_data(rm),
                                                     av_data(rv), eps);
        if (st != CUDNN_STATUS_SUCCESS) {
            av_fail("cudnnBatchNormalizationForwardInference: %s (input %s)", cudnnGetErrorString(st),
                    av_shape_str(x, b, sizeof b));
            goto fail;
        }
        // copies, so that a later training step updating the running stats leaves this graph's intact
        size_t es = av_dtype_size(pdt);
        if (cudaMemcpyAsync(av_data(sm), av_data(rm), es * (size_t)C, cudaMemcpyDeviceToDevice, av_cuda_stream()) !=
            cudaSuccess) {
            cudaGetLastError();
            av_fail("batch_norm: copying the running mean failed");
            goto fail;
        }
        if (C > 0) {
            if (pdt == AV_F64)
                invstd_kernel<double><<<av_cuda_blocks(C, 256), 256, 0, av_cuda_stream()>>>(
                    (const double *)av_data(rv), (double *)av_data(si), C, eps);
            else
                invstd_kernel<float><<<av_cuda_blocks(C, 256), 256, 0, av_cuda_stream()>>>(
                    (const float *)av_data(rv), (float *)av_data(si), C, eps);
            AV_LAUNCH_OR_NULL("batch_norm (invstd)");
        }
    }
done:
    av_release(xc);
    av_release(w);
    av_release(bb);
    *save_mean = sm;
    *save_invstd = si;
    return y;
fail:
    av_release(xc);
    av_release(y);
    av_release(w);
    av_release(bb);
    av_release(sm);
    av_release(si);
    return NULL;
}

// ---- evaluation-mode backward: the statistics are constants ----------------------------------
// per channel c (one block): sg = sum(gy), sgx = sum(gy * (x - mean)); x, gy NCHW-contiguous as N x C x S
template <typename T, typename P>
__global__ void channel_sums_kernel(const T *x, const T *gy, const P *mean, int64_t N, int64_t C, int64_t S, P *sg,
                                    P *sgx) {
    typedef typename av_acc<T>::type A;
    const int64_t c = blockIdx.x;
    A a = 0, bsum = 0;
    const A m = (A)mean[c];
    for (int64_t i = threadIdx.x; i < N * S; i += blockDim.x) {
        int64_t n = i / S, s = i - n * S, o = (n * C + c) * S + s;
        A g = av_load(gy + o);
        a += g;
        bsum += g * (av_load(x + o) - m);
    }
    __shared__ A sa[256], sb[256];
    sa[threadIdx.x] = a;
    sb[threadIdx.x] = bsum;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            sa[threadIdx.x] += sa[threadIdx.x + k];
            sb[threadIdx.x] += sb[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        sg[c] = (P)sa[0];
        sgx[c] = (P)sb[0];
    }
}

// gx = gy * w * invstd (per channel)
template <typename T, typename P>
__global__ void eval_gx_kernel(const T *gy, const P *w, const P *invstd, T *gx, int64_t C, int64_t S, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t c = (i / S) % C;
    typedef typename av_acc<T>::type A;
    av_store(gx + i, av_load(gy + i) * (A)w[c] * (A)invstd[c]);
}

template <typename P> __global__ void scale_kernel(P *v, const P *s, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) v[i] *= s[i];
}

template <typename T, typename P>
static int eval_backward(const av_tensor *x, const av_tensor *gy, const av_tensor *w, const av_tensor *mean,
                         const av_tensor *invstd, av_tensor *gx, av_tensor *gw, av_tensor *gb) {
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    cudaStream_t s = av_cuda_stream();
    if (gx && av_numel(gx) > 0) {
        int64_t n = av_numel(gx);
        eval_gx_kernel<T, P><<<av_cuda_blocks(n, 256), 256, 0, s>>>((const T *)av_data(gy), (const P *)av_data(w),
                                                                     (const P *)av_data(invstd), (T *)av_data(gx), C, S,
                                                                     n);
        AV_CUDA_LAUNCH_CHECK("batch_norm_backward (input)");
    }
    if ((gw || gb) && C > 0) {
        av_tensor *sg = av_empty_on(1, &C, mean->dtype, av_device_of(x));
        av_tensor *sgx = sg ? av_empty_on(1, &C, mean->dtype, av_device_of(x)) : NULL;
        if (!sgx) {
            av_release(sg);
            return -1;
        }
        channel_sums_kernel<T, P><<<(unsigned)C, 256, 0, s>>>((const T *)av_data(x), (const T *)av_data(gy),
                                                              (const P *)av_data(mean), N, C, S, (P *)av_data(sg),
                                                              (P *)av_data(sgx));
        int rc = 0;
        if (cudaPeekAtLastError() != cudaSuccess) {
            cudaGetLastError();
            rc = av_fail("batch_norm_backward: channel sums launch failed");
        }
        if (!rc && gw) {
            scale_kernel<P><<<av_cuda_blocks(C, 256), 256, 0, s>>>((P *)av_data(sgx), (const P *)av_data(invstd), C);
            rc = av_copy_(gw, sgx);
        }
        if (!rc && gb) rc = av_copy_(gb, sg);
        av_release(sg);
        av_release(sgx);
        return rc;
    }
    return 0;
}

extern "C" int av_cuda_batch_norm_backward(const av_tensor *x, const av_tensor *gy, const av_tensor *weight,
                                           const av_tensor *save_mean, const av_tensor *save_invstd, bool training,
                                           double eps, av_tensor **gx, av_tensor **gw, av_tensor **gb) {
    if (gx) *gx = NULL;
    if (gw) *gw = NULL;
    if (gb) *gb = NULL;
    const int64_t C = x->shape[1];
    const av_dtype pdt = save_mean->dtype;
    const av_device dev = av_device_of(x);
    bool nhwc = training && av_cuda_is_nhwc(x);
    av_tensor *xc = av_cuda_in_layout(x, nhwc), *g = NULL, *gc = NULL, *w = NULL, *X = NULL, *Wp = NULL, *Bp = NULL;
    int rc = -1;
    if (!xc) goto done;
    gc = gy->dtype == x->dtype ? av_retain((av_tensor *)gy) : av_to_dtype(gy, x->dtype);
    if (!gc || !(g = av_cuda_in_layout(gc, nhwc))) goto done;
    if (!(w = weight ? param_vec(weight, "weight", C, pdt, x) : const_vec(C, pdt, dev, 1))) goto done;
    if (gx && !(X = empty_like_layout(x, nhwc))) goto done;
    if (!(Wp = av_zeros_on(1, &C, pdt, dev)) || !(Bp = av_zeros_on(1, &C, pdt, dev))) goto done;
    if (av_numel(x) > 0) {
        if (training) {
            cudnnHandle_t h = av_cudnn_handle();
            if (!h) goto done;
            bn_desc d;
            if (cudnnCreateTensorDescriptor(&d.x) || cudnnCreateTensorDescriptor(&d.p)) {
                av_fail("batch_norm_backward: cudnnCreateTensorDescriptor failed");
                goto done;
            }
            if (set_desc(d.x, xc, nhwc)) goto done;
            cudnnStatus_t st = cudnnDeriveBNTensorDescriptor(d.p, d.x, CUDNN_BATCHNORM_SPATIAL);
            const float f1 = 1, f0 = 0;
            const double d1 = 1, d0 = 0;
            const void *one = pdt == AV_F64 ? (const void *)&d1 : (const void *)&f1;
            const void *zero = pdt == AV_F64 ? (const void *)&d0 : (const void *)&f0;
            // cuDNN always writes dx: into a scratch tensor when it is not wanted
            av_tensor *scratch = X ? NULL : empty_like_layout(x, nhwc);
            if (!X && !scratch) goto done;
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnBatchNormalizationBackward(h, CUDNN_BATCHNORM_SPATIAL, one, zero, one, zero, d.x, av_data(xc),
                                                     d.x, av_data(g), d.x, av_data(X ? X : scratch), d.p, av_data(w),
                                                     av_data(Wp), av_data(Bp), eps, av_data(save_mean),
                                                     av_data(save_invstd));
            av_release(scratch);
            if (st != CUDNN_STATUS_SUCCESS) {
                av_fail("cudnnBatchNormalizationBackward: %s", cudnnGetErrorString(st));
                goto done;
            }
        } else {
            int r = -1;
            if (x->dtype == AV_F64)
                r = eval_backward<double, double>(xc, g, w, save_mean, save_invstd, X, Wp, Bp);
            else if (x->dtype == AV_F32)
                r = eval_backward<float, float>(xc, g, w, save_mean, save_invstd, X, Wp, Bp);
            else if (x->dtype == AV_F16)
                r = eval_backward<__half, float>(xc, g, w, save_mean, save_invstd, X, Wp, Bp);
            else
                r = eval_backward<__nv_bfloat16, float>(xc, g, w, save_mean, save_invstd, X, Wp, Bp);
            if (r) goto done;
        }
    }
    // the parameter gradients as C-vectors of the statistics' type (the caller shapes them)
    if (gw) {
        *gw = Wp;
        Wp = NULL;
    }
    if (gb) {
        *gb = Bp;
        Bp = NULL;
    }
    if (gx) {
        *gx = X;
        X = NULL;
    }
    rc = 0;
done:
    av_release(xc);
    av_release(gc);
    av_release(g);
    av_release(w);
    av_release(X);
    av_release(Wp);
    av_release(Bp);
    return rc;
}
