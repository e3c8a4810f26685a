// 2-d pooling on CUDA with own kernels, one thread per output (forward) or
// per input element (the averaging backwards). cuDNN's pooling returns no
// argmax indices and its NaN and ceil-mode rules differ from PyTorch's; these
// kernels reproduce pool.c exactly: a NaN always wins (the last NaN's index is
// kept), the starting index is the first valid position, windows and divisors
// are PyTorch's. Inputs are made NCHW-contiguous; results are contiguous.
//
// The max-pool gradient scatters with atomic adds (overlapping windows may
// send several outputs to one input; the order of those few additions can
// vary between runs). The average gradients gather, so they are exact.
#include <math.h>
#include <string.h>
#include "cuda_lib.h"

namespace {
struct pgeom {
    int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, div;
    bool include_pad;
};
} // namespace

__device__ __forceinline__ int64_t dmin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t dmax(int64_t a, int64_t b) { return a > b ? a : b; }
template <typename A> __device__ __forceinline__ bool is_nan(A v) { return v != v; }

template <typename T>
__global__ void max_pool_kernel(const T *x, T *y, int64_t *idx, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, p = i / (g.OW * g.OH);
    const T *xp = x + p * g.H * g.W;
    int64_t ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
    int64_t ih1 = dmin(ih0 + (g.kh - 1) * g.dh + 1, g.H), iw1 = dmin(iw0 + (g.kw - 1) * g.dw + 1, g.W);
    while (ih0 < 0) ih0 += g.dh;
    while (iw0 < 0) iw0 += g.dw;
    A m = -INFINITY;
    int64_t mi = ih0 * g.W + iw0;
    for (int64_t ih = ih0; ih < ih1; ih += g.dh)
        for (int64_t iw = iw0; iw < iw1; iw += g.dw) {
            A v = av_load(xp + ih * g.W + iw);
            if (v > m || is_nan(v)) {
                m = v;
                mi = ih * g.W + iw;
            }
        }
    av_store(y + i, m);
    if (idx) idx[i] = mi;
}

// PyTorch's adaptive windows [floor(o*In/Out), ceil((o+1)*In/Out))
__device__ __forceinline__ int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ __forceinline__ int64_t ad_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

template <typename T>
__global__ void adaptive_max_kernel(const T *x, T *y, int64_t *idx, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, p = i / (g.OW * g.OH);
    const T *xp = x + p * g.H * g.W;
    int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
    int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
    A m = -INFINITY;
    int64_t mi = h0 * g.W + w0;
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
            A v = av_load(xp + ih * g.W + iw);
            if (v > m || is_nan(v)) {
                m = v;
                mi = ih * g.W + iw;
            }
        }
    av_store(y + i, m);
    if (idx) idx[i] = mi;
}

// the averaging window of output (oh, ow), as pool.c's ap_window
__device__ __forceinline__ bool ap_window(const pgeom &g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                                          int64_t *w0, int64_t *w1, int64_t *div) {
    int64_t ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
    int64_t ih1 = dmin(ih0 + g.kh, g.H + g.ph), iw1 = dmin(iw0 + g.kw, g.W + g.pw);
    int64_t pool = (ih1 - ih0) * (iw1 - iw0);
    ih0 = dmax(ih0, 0);
    iw0 = dmax(iw0, 0);
    ih1 = dmin(ih1, g.H);
    iw1 = dmin(iw1, g.W);
    *h0 = ih0; *h1 = ih1; *w0 = iw0; *w1 = iw1;
    if (ih0 >= ih1 || iw0 >= iw1) return false;
    *div = g.div ? g.div : (g.include_pad ? pool : (ih1 - ih0) * (iw1 - iw0));
    return true;
}

template <typename T> __global__ void avg_pool_kernel(const T *x, T *y, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, p = i / (g.OW * g.OH);
    int64_t h0, h1, w0, w1, div;
    if (!ap_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) {
        av_store(y + i, (A)0);
        return;
    }
    const T *xp = x + p * g.H * g.W;
    A s = 0;
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) s += av_load(xp + ih * g.W + iw);
    av_store(y + i, s / (A)div);
}

template <typename T> __global__ void avg_pool_bwd_kernel(const T *gy, T *gx, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t iw = i % g.W, ih = (i / g.W) % g.H, p = i / (g.W * g.H);
    const T *gp = gy + p * g.OH * g.OW;
    // outputs whose (padded) window can reach (ih, iw)
    int64_t lo_h = ih + g.ph - g.kh + 1, lo_w = iw + g.pw - g.kw + 1;
    int64_t oh0 = lo_h <= 0 ? 0 : (lo_h + g.sh - 1) / g.sh, ow0 = lo_w <= 0 ? 0 : (lo_w + g.sw - 1) / g.sw;
    int64_t oh1 = dmin((ih + g.ph) / g.sh, g.OH - 1), ow1 = dmin((iw + g.pw) / g.sw, g.OW - 1);
    A s = 0;
    for (int64_t oh = oh0; oh <= oh1; oh++)
        for (int64_t ow = ow0; ow <= ow1; ow++) {
            int64_t h0, h1, w0, w1, div;
            if (!ap_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) continue;
            if (ih < h0 || ih >= h1 || iw < w0 || iw >= w1) continue;
            s += av_load(gp + oh * g.OW + ow) / (A)div;
        }
    av_store(gx + i, s);
}

template <typename T> __global__ void adaptive_avg_kernel(const T *x, T *y, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, p = i / (g.OW * g.OH);
    int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
    int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
    const T *xp = x + p * g.H * g.W;
    A s = 0;
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) s += av_load(xp + ih * g.W + iw);
    av_store(y + i, s / (A)((h1 - h0) * (w1 - w0)));
}

template <typename T> __global__ void adaptive_avg_bwd_kernel(const T *gy, T *gx, pgeom g, int64_t total) {
    typedef typename av_acc<T>::type A;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t iw = i % g.W, ih = (i / g.W) % g.H, p = i / (g.W * g.H);
    const T *gp = gy + p * g.OH * g.OW;
    int64_t oh0 = dmax((ih * g.OH) / g.H - 1, 0), oh1 = dmin(((ih + 1) * g.OH + g.H - 1) / g.H + 1, g.OH);
    int64_t ow0 = dmax((iw * g.OW) / g.W - 1, 0), ow1 = dmin(((iw + 1) * g.OW + g.W - 1) / g.W + 1, g.OW);
    A s = 0;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
        if (ih < h0 || ih >= h1) continue;
        for (int64_t ow = ow0; ow < ow1; ow++) {
            int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
            if (iw < w0 || iw >= w1) continue;
            s += av_load(gp + oh * g.OW + ow) / (A)((h1 - h0) * (w1 - w0));
        }
    }
    av_store(gx + i, s);
}

template <typename T> __global__ void max_pool_bwd_kernel(const T *gy, const int64_t *idx, T *gx, int64_t HW,
                                                          int64_t OHW, int64_t total) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int64_t p = i / OHW, j = idx[i];
    if (j >= 0 && j < HW) atomicAdd(gx + p * HW + j, gy[i]);
}

// ---- host side --------------------------------------------------------------------------------
static pgeom to_pgeom(const av_cuda_pool_geom *g) {
    pgeom p = {g->H, g->W, g->OH, g->OW, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->divisor,
               g->count_include_pad};
    return p;
}

static av_tensor *new_out(const av_cuda_pool_geom *g, av_dtype dt, av_device dev) {
    int64_t s[4] = {g->N, g->C, g->OH, g->OW};
    return g->batched ? av_empty_on(4, s, dt, dev) : av_empty_on(3, s + 1, dt, dev);
}

enum { MAXP, AVGP, ADAVG, ADMAX };

static av_tensor *pool_forward(int kind, const char *fn, const av_tensor *x, const av_cuda_pool_geom *g,
                               av_tensor **indices) {
    if (indices) *indices = NULL;
    if (!av_cuda_float(x->dtype)) {
        av_fail("%s: expected a floating point input, got %s", fn, av_dtype_name(x->dtype));
        return NULL;
    }
    av_tensor *xc = av_contiguous(x);
    av_tensor *y = xc ? new_out(g, x->dtype, av_device_of(x)) : NULL;
    av_tensor *ix = (y && indices) ? new_out(g, AV_I64, av_device_of(x)) : NULL;
    if (!y || (indices && !ix)) goto fail;
    {
        int64_t total = av_numel(y);
        pgeom pg = to_pgeom(g);
        int64_t *ip = ix ? (int64_t *)av_data(ix) : NULL;
        cudaStream_t s = av_cuda_stream();
        unsigned nb = av_cuda_blocks(total, 256);
        if (total > 0) {
            AV_DISPATCH_FLOAT(x->dtype, T, {
                const T *xp = (const T *)av_data(xc);
                T *yp = (T *)av_data(y);
                if (kind == MAXP) max_pool_kernel<T><<<nb, 256, 0, s>>>(xp, yp, ip, pg, total);
                else if (kind == ADMAX) adaptive_max_kernel<T><<<nb, 256, 0, s>>>(xp, yp, ip, pg, total);
                else if (kind == AVGP) avg_pool_kernel<T><<<nb, 256, 0, s>>>(xp, yp, pg, total);
                else adaptive_avg_kernel<T><<<nb, 256, 0, s>>>(xp, yp, pg, total);
            });
            if (av_cuda_launch_failed(fn)) goto fail;
        }
    }
    av_release(xc);
    if (indices) *indices = ix;
    return y;
fail:
    av_release(xc);
    av_release(y);
    av_release(ix);
    return NULL;
}

extern "C" av_tensor *av_cuda_max_pool2d(const av_tensor *x, const av_cuda_pool_geom *g, av_tensor **indices) {
    return pool_forward(MAXP, "max_pool2d", x, g, indices);
}
extern "C" av_tensor *av_cuda_avg_pool2d(const av_tensor *x, const av_cuda_pool_geom *g) {
    return pool_forward(AVGP, "avg_pool2d", x, g, NULL);
}
extern "C" av_tensor *av_cuda_adaptive_avg_pool2d(const av_tensor *x, const av_cuda_pool_geom *g) {
    return pool_forward(ADAVG, "adaptive_avg_pool2d", x, g, NULL);
}
extern "C" av_tensor *av_cuda_adaptive_max_pool2d(const av_tensor *x, const av_cuda_pool_geom *g,
                                                  av_tensor **indices) {
    return pool_forward(ADMAX, "adaptive_max_pool2d", x, g, indices);
}

extern "C" av_tensor *av_cuda_max_pool2d_backward(const av_tensor *g, const av_tensor *idx, int ndim,
                                                  const int64_t *shape) {
    if (av_check_same_device("max_pool2d_backward", g, "grad_output", idx, "indices")) return NULL;
    int64_t HW = shape[ndim - 1] * shape[ndim - 2];
    int64_t OHW = idx->shape[idx->ndim - 1] * idx->shape[idx->ndim - 2];
    av_tensor *gc = av_contiguous(g), *ic = av_contiguous(idx);
    av_tensor *gx = (gc && ic) ? av_empty_on(ndim, shape, g->dtype, av_device_of(g)) : NULL;
    if (gx && av_numel(gx) > 0) {
        cudaStream_t s = av_cuda_stream();
        if (cudaMemsetAsync(av_data(gx), 0, (size_t)av_numel(gx) * av_dtype_size(gx->dtype), s) != cudaSuccess) {
            cudaGetLastError();
            av_fail("max_pool2d_backward: cudaMemsetAsync failed");
            av_release(gx);
            gx = NULL;
        } else {
            int64_t total = av_numel(gc);
            if (total > 0) {
                AV_DISPATCH_FLOAT(g->dtype, T, {
                    max_pool_bwd_kernel<T><<<av_cuda_blocks(total, 256), 256, 0, s>>>(
                        (const T *)av_data(gc), (const int64_t *)av_data(ic), (T *)av_data(gx), HW, OHW, total);
                });
                if (cudaPeekAtLastError() != cudaSuccess) {
                    cudaGetLastError();
                    av_fail("max_pool2d_backward: kernel launch failed");
                    av_release(gx);
                    gx = NULL;
                }
            }
        }
    }
    av_release(gc);
    av_release(ic);
    return gx;
}

static av_tensor *avg_backward(bool adaptive, const av_tensor *g, const av_pool2d_opts *o, int ndim,
                               const int64_t *shape) {
    pgeom pg;
    memset(&pg, 0, sizeof pg);
    pg.H = shape[ndim - 2];
    pg.W = shape[ndim - 1];
    pg.OH = g->shape[g->ndim - 2];
    pg.OW = g->shape[g->ndim - 1];
    if (o) {
        pg.kh = o->kernel[0]; pg.kw = o->kernel[1];
        pg.sh = o->stride[0]; pg.sw = o->stride[1];
        pg.ph = o->padding[0]; pg.pw = o->padding[1];
        pg.div = o->divisor_override;
        pg.include_pad = o->count_include_pad;
    }
    av_tensor *gc = av_contiguous(g);
    av_tensor *gx = gc ? av_empty_on(ndim, shape, g->dtype, av_device_of(g)) : NULL;
    int64_t total = gx ? av_numel(gx) : 0;
    if (gx && total > 0) {
        cudaStream_t s = av_cuda_stream();
        unsigned nb = av_cuda_blocks(total, 256);
        AV_DISPATCH_FLOAT(g->dtype, T, {
            if (adaptive) adaptive_avg_bwd_kernel<T><<<nb, 256, 0, s>>>((const T *)av_data(gc), (T *)av_data(gx), pg, total);
            else avg_pool_bwd_kernel<T><<<nb, 256, 0, s>>>((const T *)av_data(gc), (T *)av_data(gx), pg, total);
        });
        if (cudaPeekAtLastError() != cudaSuccess) {
            cudaGetLastError();
            av_fail("%s: kernel launch failed", adaptive ? "adaptive_avg_pool2d_backward" : "avg_pool2d_backward");
            av_release(gx);
            gx = NULL;
        }
    }
    av_release(gc);
    return gx;
}

extern "C" av_tensor *av_cuda_avg_pool2d_backward(const av_tensor *g, const av_pool2d_opts *o, int ndim,
                                                  const int64_t *shape) {
    return avg_backward(false, g, o, ndim, shape);
}
extern "C" av_tensor *av_cuda_adaptive_avg_pool2d_backward(const av_tensor *g, int ndim, const int64_t *shape) {
    return avg_backward(true, g, NULL, ndim, shape);
}
