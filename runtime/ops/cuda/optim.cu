// Fused optimizer updates on CUDA: one launch per parameter group (chunks of
// LIST tensors), each tensor taking a row of blocks (blockIdx.y) that walk
// its elements. The arithmetic and its order are the CPU's (optim.c for SGD,
// aviary.optim's Adam/AdamW), in the parameters' precision, so a step on the
// GPU matches a step on the CPU to rounding.
#include <math.h>
#include <string.h>
#include "cuda_lib.h"
#include "aviary/autograd.h"

#define LIST 32 // tensors per launch: the argument block stays well under the 4 KiB kernel-parameter limit

namespace {
template <typename T> struct sgd_list {
    T *p[LIST];
    const T *g[LIST];
    T *buf[LIST];
    int64_t n[LIST];
};
template <typename T> struct adam_list {
    T *p[LIST];
    const T *g[LIST];
    T *m[LIST], *v[LIST], *vmax[LIST];
    int64_t n[LIST];
};
struct sgd_scalars {
    double lr, wd, mom, damp1;
    bool first, nesterov, maximize;
};
struct adam_scalars {
    double lr, beta1, beta2, eps, wd, decay, bc1, bc2_sqrt;
    bool amsgrad, maximize, decoupled;
};
} // namespace

template <typename T> __global__ void sgd_kernel(sgd_list<T> L, sgd_scalars s) {
    const int t = blockIdx.y;
    T *w = L.p[t], *b = L.buf[t];
    const T *g = L.g[t];
    const T lr = (T)s.lr, wd = (T)s.wd, mom = (T)s.mom, damp1 = (T)s.damp1;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < L.n[t]; i += (int64_t)gridDim.x * blockDim.x) {
        T d = s.maximize ? -g[i] : g[i];
        if (wd != 0) d = d + w[i] * wd;
        if (b) {
            T bi = s.first ? d : b[i] * mom + d * damp1;
            b[i] = bi;
            d = s.nesterov ? d + bi * mom : bi;
        }
        w[i] = w[i] - d * lr;
    }
}

template <typename T> __device__ __forceinline__ T sqrt_(T v) { return sqrtf(v); }
template <> __device__ __forceinline__ double sqrt_<double>(double v) { return sqrt(v); }

template <typename T> __global__ void adam_kernel(adam_list<T> L, adam_scalars s) {
    const int t = blockIdx.y;
    T *w = L.p[t], *m = L.m[t], *v = L.v[t], *vm = L.vmax[t];
    const T *g = L.g[t];
    const T beta1 = (T)s.beta1, beta2 = (T)s.beta2, one_b1 = (T)(1 - s.beta1), one_b2 = (T)(1 - s.beta2);
    const T wd = (T)s.wd, decay = (T)s.decay, eps = (T)s.eps, bc2s = (T)s.bc2_sqrt, step = (T)(s.lr / s.bc1);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < L.n[t]; i += (int64_t)gridDim.x * blockDim.x) {
        T gi = s.maximize ? -g[i] : g[i];
        T wi = w[i];
        if (s.decoupled) wi = wi * decay;
        else if (wd != 0) gi = gi + wi * wd;
        T mi = m[i] * beta1 + gi * one_b1;
        T vi = v[i] * beta2 + gi * gi * one_b2;
        m[i] = mi;
        v[i] = vi;
        T second = vi;
        if (s.amsgrad) {
            second = vm[i] > vi ? vm[i] : vi;
            vm[i] = second;
        }
        T denom = sqrt_(second) / bc2s + eps;
        w[i] = wi - mi / denom * step;
    }
}

// common checks: every tensor on one CUDA device, contiguous, p's dtype and size
static int check_same(const char *fn, const av_tensor *p, const av_tensor *q, const char *what) {
    if (!q) return av_fail("%s: %s is missing", fn, what);
    if (av_check_same_device(fn, p, "parameter", q, what)) return -1;
    if (q->dtype != p->dtype || av_numel(q) != av_numel(p) || !av_is_contiguous(q))
        return av_fail("%s: %s must be a contiguous %s tensor of %lld elements", fn, what, av_dtype_name(p->dtype),
                       (long long)av_numel(p));
    return 0;
}

static unsigned blocks_for(int64_t maxn) {
    int64_t b = (maxn + 1023) / 1024;
    return (unsigned)(b < 1 ? 1 : b > 1024 ? 1024 : b);
}

template <typename T>
static int sgd_run(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *buf, const av_sgd_opts *o) {
    sgd_scalars s = {o->lr, o->weight_decay, o->momentum, 1.0 - o->dampening, o->first, o->nesterov, o->maximize};
    for (int base = 0; base < n; base += LIST) {
        sgd_list<T> L;
        memset(&L, 0, sizeof L);
        int cnt = n - base < LIST ? n - base : LIST;
        int64_t maxn = 0;
        for (int i = 0; i < cnt; i++) {
            L.p[i] = (T *)av_data(p[base + i]);
            L.g[i] = (const T *)av_data(g[base + i]);
            L.buf[i] = o->momentum != 0 ? (T *)av_data(buf[base + i]) : NULL;
            L.n[i] = av_numel(p[base + i]);
            if (L.n[i] > maxn) maxn = L.n[i];
        }
        if (maxn == 0) continue;
        sgd_kernel<T><<<dim3(blocks_for(maxn), (unsigned)cnt), 256, 0, av_cuda_stream()>>>(L, s);
        AV_CUDA_LAUNCH_CHECK("sgd_step");
    }
    return 0;
}

extern "C" int av_cuda_sgd_step(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *buf,
                                const av_sgd_opts *o) {
    const char *fn = "sgd_step";
    for (int i = 0; i < n; i++) {
        if (p[i]->dtype != AV_F32 && p[i]->dtype != AV_F64)
            return av_fail("%s: expected float32 or float64 parameters, got %s", fn, av_dtype_name(p[i]->dtype));
        if (!av_is_contiguous(p[i])) return av_fail("%s: the parameter must be contiguous", fn);
        if (i > 0 && p[i]->dtype != p[0]->dtype) return av_fail("%s: the parameters of one group must share a dtype", fn);
        if (check_same(fn, p[i], g[i], "the gradient") ||
            (o->momentum != 0 && check_same(fn, p[i], buf[i], "the momentum buffer")))
            return -1;
    }
    if (n == 0) return 0;
    int rc = p[0]->dtype == AV_F32 ? sgd_run<float>(n, p, g, buf, o) : sgd_run<double>(n, p, g, buf, o);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        av_bump_version(p[i]);
        if (o->momentum != 0) av_bump_version(buf[i]);
    }
    return 0;
}

template <typename T>
static int adam_run(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *m, av_tensor *const *v,
                    av_tensor *const *vmax, const av_adam_opts *o) {
    adam_scalars s;
    s.lr = o->lr;
    s.beta1 = o->beta1;
    s.beta2 = o->beta2;
    s.eps = o->eps;
    s.wd = o->weight_decay;
    s.decay = 1 - o->lr * o->weight_decay;
    s.bc1 = 1 - pow(o->beta1, (double)o->step);
    s.bc2_sqrt = sqrt(1 - pow(o->beta2, (double)o->step));
    s.amsgrad = o->amsgrad;
    s.maximize = o->maximize;
    s.decoupled = o->decoupled;
    for (int base = 0; base < n; base += LIST) {
        adam_list<T> L;
        memset(&L, 0, sizeof L);
        int cnt = n - base < LIST ? n - base : LIST;
        int64_t maxn = 0;
        for (int i = 0; i < cnt; i++) {
            L.p[i] = (T *)av_data(p[base + i]);
            L.g[i] = (const T *)av_data(g[base + i]);
            L.m[i] = (T *)av_data(m[base + i]);
            L.v[i] = (T *)av_data(v[base + i]);
            L.vmax[i] = o->amsgrad ? (T *)av_data(vmax[base + i]) : NULL;
            L.n[i] = av_numel(p[base + i]);
            if (L.n[i] > maxn) maxn = L.n[i];
        }
        if (maxn == 0) continue;
        adam_kernel<T><<<dim3(blocks_for(maxn), (unsigned)cnt), 256, 0, av_cuda_stream()>>>(L, s);
        AV_CUDA_LAUNCH_CHECK("adam_step");
    }
    return 0;
}

extern "C" int av_cuda_adam_step(int n, av_tensor *const *p, av_tensor *const *g, av_tensor *const *m,
                                 av_tensor *const *v, av_tensor *const *vmax, const av_adam_opts *o) {
    const char *fn = "adam_step";
    if (o->step < 1) return av_fail("%s: step must be at least 1, got %lld", fn, (long long)o->step);
    for (int i = 0; i < n; i++) {
        if (p[i]->dtype != AV_F32 && p[i]->dtype != AV_F64)
            return av_fail("%s: expected float32 or float64 parameters, got %s", fn, av_dtype_name(p[i]->dtype));
        if (!av_is_contiguous(p[i])) return av_fail("%s: the parameter must be contiguous", fn);
        if (i > 0 && p[i]->dtype != p[0]->dtype) return av_fail("%s: the parameters of one group must share a dtype", fn);
        if (check_same(fn, p[i], g[i], "the gradient") || check_same(fn, p[i], m[i], "exp_avg") ||
            check_same(fn, p[i], v[i], "exp_avg_sq") || (o->amsgrad && check_same(fn, p[i], vmax[i], "max_exp_avg_sq")))
            return -1;
    }
    if (n == 0) return 0;
    int rc = p[0]->dtype == AV_F32 ? adam_run<float>(n, p, g, m, v, vmax, o) : adam_run<double>(n, p, g, m, v, vmax, o);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        av_bump_version(p[i]);
        av_bump_version(m[i]);
        av_bump_version(v[i]);
        if (o->amsgrad) av_bump_version(vmax[i]);
    }
    return 0;
}
