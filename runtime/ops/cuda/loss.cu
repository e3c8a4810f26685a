// Cross entropy and nll_loss on CUDA with own kernels, with the CPU kernels'
// arithmetic (loss.c): class weights, ignore_index, label smoothing, index
// base, reductions none / mean / sum, inputs [N, C] or [N, C, S].
//
// One block per position (row) reduces over the C classes. Targets are
// range-checked on the device; the first bad one is reported after the
// forward's one synchronisation, which also brings back the mean's
// denominator (the total weight of the non-ignored targets) that the
// backward and the autograd node take as a number, as on the CPU.
#include <math.h>
#include "cuda_lib.h"
#include "aviary/loss.h"

template <typename A> __device__ __forceinline__ A exp_(A v) { return expf(v); }
template <> __device__ __forceinline__ double exp_<double>(double v) { return exp(v); }
template <typename A> __device__ __forceinline__ A log_(A v) { return logf(v); }
template <> __device__ __forceinline__ double log_<double>(double v) { return log(v); }

namespace {
struct nll_args {
    int64_t N, C, S, ignore_index, base;
    double eps; // label smoothing (fused only)
    bool fused;
};
// results brought back to the host after the forward
struct nll_sums {
    double loss, weight;
    unsigned long long bad; // 1 + the first out-of-range target's position, 0 when none
    long long bad_value;
};
} // namespace

// position pos = n * S + s: element (n, c, s) at (n * C + c) * S + s
template <typename T>
__global__ void nll_fwd_kernel(const T *x, const int64_t *tg, const T *w, nll_args a, T *lossv, T *lse,
                               double *lossd, double *wd, nll_sums *sums) {
    typedef typename av_acc<T>::type A;
    const int64_t pos = blockIdx.x, n = pos / a.S, s = pos - n * a.S;
    const T *xr = x + n * a.C * a.S + s;
    const int64_t t = tg[pos];
    const A eps = (A)a.eps;
    A l = 0, wt = 0;
    A z = 0;
    if (a.fused) {
        A m = -INFINITY;
        for (int64_t c = threadIdx.x; c < a.C; c += blockDim.x) {
            A v = av_load(xr + c * a.S);
            m = v > m ? v : m;
        }
        m = av_block_max(m);
        A se = 0;
        for (int64_t c = threadIdx.x; c < a.C; c += blockDim.x) se += exp_(av_load(xr + c * a.S) - m);
        se = av_block_sum(se);
        z = m + log_(se);
        if (threadIdx.x == 0) av_store(lse + pos, z);
    }
    bool valid = t != a.ignore_index;
    if (valid && (t < a.base || t - a.base >= a.C)) {
        if (threadIdx.x == 0 && atomicCAS(&sums->bad, 0ull, (unsigned long long)pos + 1) == 0ull)
            sums->bad_value = (long long)t;
        valid = false;
    }
    if (valid) {
        const int64_t c = t - a.base;
        wt = w ? av_load(w + c) : (A)1;
        if (a.fused) {
            l = ((A)1 - eps) * wt * (z - av_load(xr + c * a.S));
            if (eps > 0) {
                A sx = 0, ws = 0;
                for (int64_t j = threadIdx.x; j < a.C; j += blockDim.x) {
                    A wj = w ? av_load(w + j) : (A)1;
                    sx += wj * av_load(xr + j * a.S);
                    ws += wj;
                }
                sx = av_block_sum(sx);
                ws = av_block_sum(ws);
                l += eps / (A)a.C * (ws * z - sx);
            }
        } else {
            l = -wt * av_load(xr + c * a.S);
        }
    }
    if (threadIdx.x == 0) {
        if (lossv) av_store(lossv + pos, l);
        lossd[pos] = (double)l;
        wd[pos] = (double)wt;
    }
}

// one block: the sums of the per-position losses and weights, and the reduced loss
template <typename T>
__global__ void nll_reduce_kernel(const double *lossd, const double *wd, int64_t npos, int reduction, T *out,
                                  nll_sums *sums) {
    double l = 0, w = 0;
    for (int64_t i = threadIdx.x; i < npos; i += blockDim.x) {
        l += lossd[i];
        w += wd[i];
    }
    l = av_block_sum(l);
    w = av_block_sum(w);
    if (threadIdx.x == 0) {
        sums->loss = l;
        sums->weight = w;
        // all targets ignored: 0/0 = NaN, as PyTorch
        if (out) av_store(out, (typename av_acc<T>::type)(reduction == AV_REDUCTION_MEAN ? l / w : l));
    }
}

// gx = p (a + b W) - a [c == t] - b w_c with a = g (1-eps) w_t, b = g eps / C (fused); gx = -g w_t [c == t] (nll)
template <typename T>
__global__ void nll_bwd_kernel(const T *x, const int64_t *tg, const T *w, const T *lse, const T *g, bool per_pos,
                               double scale, nll_args a, T *gx) {
    typedef typename av_acc<T>::type A;
    const int64_t pos = blockIdx.x, n = pos / a.S, s = pos - n * a.S;
    const int64_t base = n * a.C * a.S + s;
    const int64_t t = tg[pos];
    if (t == a.ignore_index) {
        for (int64_t c = threadIdx.x; c < a.C; c += blockDim.x) av_store(gx + base + c * a.S, (A)0);
        return;
    }
    const A gi = (A)((double)av_load(g + (per_pos ? pos : 0)) * scale);
    const int64_t tc = t - a.base;
    const A wt = w ? av_load(w + tc) : (A)1;
    if (!a.fused) {
        for (int64_t c = threadIdx.x; c < a.C; c += blockDim.x)
            av_store(gx + base + c * a.S, c == tc ? -gi * wt : (A)0);
        return;
    }
    const A eps = (A)a.eps;
    A Wsum = (A)a.C;
    if (eps > 0 && w) {
        A ws = 0;
        for (int64_t j = threadIdx.x; j < a.C; j += blockDim.x) ws += av_load(w + j);
        Wsum = av_block_sum(ws);
    }
    const A aa = gi * ((A)1 - eps) * wt, bb = gi * eps / (A)a.C, AA = aa + bb * Wsum;
    const A z = av_load(lse + pos);
    for (int64_t c = threadIdx.x; c < a.C; c += blockDim.x) {
        A v = exp_(av_load(x + base + c * a.S) - z) * AA;
        if (eps > 0) v -= bb * (w ? av_load(w + c) : (A)1);
        if (c == tc) v -= aa;
        av_store(gx + base + c * a.S, v);
    }
}

static int threads_for(int64_t C) { return C >= 512 ? 256 : C > 64 ? 128 : 64; }

extern "C" int av_cuda_nll_forward(const av_tensor *input, const av_tensor *target, const av_tensor *weight, int64_t N,
                                   int64_t C, int64_t S, int64_t ignore_index, int64_t base, int reduction,
                                   double label_smoothing, bool fused, int out_ndim, const int64_t *out_shape,
                                   av_tensor **out, av_tensor **lse, double *total_weight) {
    const char *fn = fused ? "cross_entropy" : "nll_loss";
    *out = *lse = NULL;
    if (!av_cuda_float(input->dtype)) return av_fail("%s: expected a floating point input", fn);
    const av_device dev = av_device_of(input);
    const int64_t npos = N * S;
    av_tensor *lossv = NULL, *z = NULL, *scratch = NULL, *sums_t = NULL;
    nll_args a = {N, C, S, ignore_index, base, fused ? label_smoothing : 0, fused};
    nll_sums host = {0, 0, 0, 0};
    cudaStream_t st = av_cuda_stream();
    // per-position losses and weights in double, then the nll_sums record, in one scratch buffer
    int64_t nscratch = 2 * npos + 4;
    lossv = av_empty_on(reduction == AV_REDUCTION_NONE ? out_ndim : 0, out_shape, input->dtype, dev);
    if (!lossv) goto fail;
    if (fused && !(z = av_empty_on(1, &npos, input->dtype, dev))) goto fail;
    if (!(scratch = av_empty_on(1, &nscratch, AV_F64, dev))) goto fail;
    {
        double *lossd = (double *)av_data(scratch), *wd = lossd + npos;
        nll_sums *sums = (nll_sums *)(wd + npos);
        if (cudaMemsetAsync(sums, 0, sizeof(nll_sums), st) != cudaSuccess) {
            cudaGetLastError();
            av_fail("%s: cudaMemsetAsync failed", fn);
            goto fail;
        }
        AV_DISPATCH_FLOAT(input->dtype, T, {
            if (npos > 0 && C > 0)
                nll_fwd_kernel<T><<<(unsigned)npos, threads_for(C), 0, st>>>(
                    (const T *)av_data(input), (const int64_t *)av_data(target),
                    weight ? (const T *)av_data(weight) : NULL, a,
                    reduction == AV_REDUCTION_NONE ? (T *)av_data(lossv) : NULL, z ? (T *)av_data(z) : NULL, lossd, wd,
                    sums);
            nll_reduce_kernel<T><<<1, 512, 0, st>>>(lossd, wd, npos, reduction,
                                                    reduction == AV_REDUCTION_NONE ? NULL : (T *)av_data(lossv), sums);
        });
        if (av_cuda_launch_failed(fn)) goto fail;
        cudaError_t e = cudaMemcpyAsync(&host, sums, sizeof host, cudaMemcpyDeviceToHost, st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st);
        if (e != cudaSuccess) {
            cudaGetLastError();
            av_fail("%s: %s", fn, cudaGetErrorString(e));
            goto fail;
        }
    }
    if (host.bad) {
        if (C > 0)
            av_fail("%s: target %lld is out of range for %lld classes (expected %lld..%lld, or ignore_index %lld)", fn,
                    (long long)host.bad_value, (long long)C, (long long)base, (long long)(base + C - 1),
                    (long long)ignore_index);
        else
            av_fail("%s: target %lld is out of range: the input has 0 classes", fn, (long long)host.bad_value);
        goto fail;
    }
    av_release(scratch);
    av_release(sums_t);
    *total_weight = host.weight;
    *out = lossv;
    *lse = z;
    return 0;
fail:
    av_release(lossv);
    av_release(z);
    av_release(scratch);
    av_release(sums_t);
    return -1;
}

extern "C" av_tensor *av_cuda_nll_backward(const av_tensor *input, const av_tensor *target, const av_tensor *weight,
                                           int64_t N, int64_t C, int64_t S, int64_t ignore_index, int64_t base,
                                           int reduction, double label_smoothing, bool fused, const av_tensor *g,
                                           const av_tensor *lse, double total_weight) {
    const char *fn = fused ? "cross_entropy_backward" : "nll_loss_backward";
    if (av_check_same_device(fn, input, "input", g, "grad_output")) return NULL;
    av_tensor *gc = g->dtype == input->dtype ? av_contiguous(g) : av_to_dtype(g, input->dtype);
    av_tensor *gcc = gc ? av_contiguous(gc) : NULL;
    av_release(gc);
    if (!gcc) return NULL;
    av_tensor *gx = av_empty_on(input->ndim, input->shape, input->dtype, av_device_of(input));
    if (!gx) {
        av_release(gcc);
        return NULL;
    }
    nll_args a = {N, C, S, ignore_index, base, fused ? label_smoothing : 0, fused};
    double scale = reduction == AV_REDUCTION_MEAN ? 1.0 / total_weight : 1.0;
    bool per_pos = reduction == AV_REDUCTION_NONE;
    int64_t npos = N * S;
    if (npos > 0 && C > 0) {
        cudaStream_t st = av_cuda_stream();
        AV_DISPATCH_FLOAT(input->dtype, T, {
            nll_bwd_kernel<T><<<(unsigned)npos, threads_for(C), 0, st>>>(
                (const T *)av_data(input), (const int64_t *)av_data(target), weight ? (const T *)av_data(weight) : NULL,
                lse ? (const T *)av_data(lse) : NULL, (const T *)av_data(gcc), per_pos, scale, a, (T *)av_data(gx));
        });
        if (av_cuda_launch_failed(fn)) {
            av_release(gx);
            gx = NULL;
        }
    }
    av_release(gcc);
    return gx;
}
