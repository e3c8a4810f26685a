/* 2-d pooling kernels: max_pool2d, avg_pool2d, adaptive_avg_pool2d,
 * adaptive_max_pool2d and their gradients, over (N, C, H, W) or (C, H, W).
 *
 * Every kernel is threaded over the N*C planes. Output sizes, window bounds,
 * divisors and the NaN rule (a NaN always wins; the last NaN's index is
 * kept) are PyTorch's.
 *
 * max_pool2d is vectorised over output columns: each plane is first split
 * into `stride` phase rows padded with -inf, phase r of row ih holding
 * x[ih][r + stride*j]. Column kw of the window of output ow then reads phase
 * ((kw*dil - pad) mod stride) at position ow + floor((kw*dil - pad) / stride):
 * one contiguous run for all the outputs of a row, so every window position
 * is a vector compare-and-blend over a whole output row. Padding never wins
 * (-inf is not > -inf) and the starting index is the first valid position,
 * as in PyTorch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "aviary/ops.h"
#include "nn_kernels.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_lib.h"
#endif

#define LIMIT_ (INT64_C(1) << 31)

static inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct {
    int64_t N, C, H, W, OH, OW, P; /* P = planes = N*C */
    bool batched;
} pdims;

static int nthreads_for(int64_t work) { return work < AV_NN_GRAIN ? 1 : av_get_num_threads(); }

/* input checks shared by every pooling op: dtype, rank, sizes */
static int check_input(const av_tensor *x, const char *fn, pdims *d) {
    char b[96];
    if (!x) return av_fail("%s: expected an input tensor", fn);
    /* the CUDA kernels (runtime/ops/cuda/pool.cu) take the half types too */
    if (x->dtype != AV_F32 && x->dtype != AV_F64 && !(av_is_cuda(x) && av_dtype_is_float(x->dtype)))
        return av_fail("%s: expected a float32 or float64 input, got %s", fn, av_dtype_name(x->dtype));
    if (x->ndim != 3 && x->ndim != 4)
        return av_fail("%s: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got a %d-d tensor of size %s", fn,
                       x->ndim, av_shape_str(x, b, sizeof b));
    d->batched = x->ndim == 4;
    d->N = d->batched ? x->shape[0] : 1;
    d->C = x->shape[x->ndim - 3];
    d->H = x->shape[x->ndim - 2];
    d->W = x->shape[x->ndim - 1];
    if (d->C == 0 || d->H == 0 || d->W == 0)
        return av_fail("%s: expected non-zero channels, height and width, got input of size %s", fn,
                       av_shape_str(x, b, sizeof b));
    d->P = d->N * d->C;
    return 0;
}

static av_tensor *new_out(const pdims *d, av_dtype dt) {
    int64_t s[4] = {d->N, d->C, d->OH, d->OW};
    return d->batched ? av_empty(4, s, dt) : av_empty(3, s + 1, dt);
}

static int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
    int64_t out = floor_div(in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
    /* the last window must start inside the input or the left padding */
    if (ceil_mode && (out - 1) * stride >= in + pad) out--;
    return out;
}

static int check_opts(const av_pool2d_opts *o, const char *fn, bool dilation) {
    if (!o) return av_fail("%s: missing options", fn);
    for (int i = 0; i < 2; i++) {
        const int64_t *v[4] = {o->kernel, o->stride, o->padding, o->dilation};
        static const char *names[4] = {"kernel size", "stride", "padding", "dilation"};
        for (int j = 0; j < 4; j++)
            if (v[j][i] >= LIMIT_)
                return av_fail("%s: %s %lldx%lld is too large", fn, names[j], (long long)v[j][0], (long long)v[j][1]);
        if (o->kernel[i] <= 0)
            return av_fail("%s: kernel size must be positive, got %lldx%lld", fn, (long long)o->kernel[0],
                           (long long)o->kernel[1]);
        if (o->stride[i] <= 0)
            return av_fail("%s: stride must be positive, got %lldx%lld", fn, (long long)o->stride[0],
                           (long long)o->stride[1]);
        if (o->dilation[i] <= 0)
            return av_fail("%s: dilation must be positive, got %lldx%lld", fn, (long long)o->dilation[0],
                           (long long)o->dilation[1]);
        if (o->padding[i] < 0)
            return av_fail("%s: padding must be non-negative, got %lldx%lld", fn, (long long)o->padding[0],
                           (long long)o->padding[1]);
        if (o->padding[i] > o->kernel[i] / 2)
            return av_fail("%s: padding %lldx%lld must be at most half the kernel size %lldx%lld", fn,
                           (long long)o->padding[0], (long long)o->padding[1], (long long)o->kernel[0],
                           (long long)o->kernel[1]);
    }
    if (!dilation && (o->dilation[0] != 1 || o->dilation[1] != 1))
        return av_fail("%s: dilation is not supported (got %lldx%lld)", fn, (long long)o->dilation[0],
                       (long long)o->dilation[1]);
    if (o->divisor_override < 0 || o->divisor_override >= LIMIT_)
        return av_fail("%s: divisor_override must be a positive integer, got %lld", fn, (long long)o->divisor_override);
    return 0;
}

/* output size of a (max or avg) pool with its error for a kernel larger than the padded input */
static int pool_geometry(const av_tensor *x, const av_pool2d_opts *o, const char *fn, pdims *d) {
    char b[96];
    d->OH = pool_out_size(d->H, o->kernel[0], o->padding[0], o->stride[0], o->dilation[0], o->ceil_mode);
    d->OW = pool_out_size(d->W, o->kernel[1], o->padding[1], o->stride[1], o->dilation[1], o->ceil_mode);
    if (d->OH < 1 || d->OW < 1) {
        bool dil = o->dilation[0] != 1 || o->dilation[1] != 1;
        char dl[64] = "";
        if (dil) snprintf(dl, sizeof dl, " with dilation %lldx%lld", (long long)o->dilation[0], (long long)o->dilation[1]);
        return av_fail("%s: kernel %lldx%lld%s is larger than the padded input %lldx%lld (input %s, padding "
                       "%lldx%lld): the output size would be %lldx%lld",
                       fn, (long long)o->kernel[0], (long long)o->kernel[1], dl, (long long)(d->H + 2 * o->padding[0]),
                       (long long)(d->W + 2 * o->padding[1]), av_shape_str(x, b, sizeof b), (long long)o->padding[0],
                       (long long)o->padding[1], (long long)d->OH, (long long)d->OW);
    }
    return 0;
}

#ifdef AV_WITH_CUDA
/* the checked geometry for the CUDA kernels (o NULL: an adaptive pool) */
static av_cuda_pool_geom cuda_geom(const pdims *d, const av_pool2d_opts *o) {
    av_cuda_pool_geom g = {d->N, d->C, d->H, d->W, d->OH, d->OW, 1, 1, 1, 1, 0, 0, 1, 1, d->batched, true, 0};
    if (o) {
        g.kh = o->kernel[0]; g.kw = o->kernel[1];
        g.sh = o->stride[0]; g.sw = o->stride[1];
        g.ph = o->padding[0]; g.pw = o->padding[1];
        g.dh = o->dilation[0]; g.dw = o->dilation[1];
        g.count_include_pad = o->count_include_pad;
        g.divisor = o->divisor_override;
    }
    return g;
}
#endif

void av_pool2d_opts_init(av_pool2d_opts *o, int64_t kh, int64_t kw) {
    memset(o, 0, sizeof *o);
    o->kernel[0] = o->stride[0] = kh;
    o->kernel[1] = o->stride[1] = kw;
    o->dilation[0] = o->dilation[1] = 1;
    o->count_include_pad = true;
}

/* ---- max_pool2d forward ---------------------------------------------------------------------- */
typedef struct {
    int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
    int64_t qmin, L; /* phase rows hold positions j = qmin .. qmin + L - 1 */
} mp_geom;

/* one plane: x (H*W) -> o (OH*OW), idx (OH*OW, may be NULL); buf, mx, ix: scratch; iw0[ow]: first valid column */
#define DEF_MAXPOOL(SFX, T, I)                                                                                  \
    static void maxpool_plane_##SFX(const mp_geom *g, const T *x, T *o, int64_t *idx, T *buf, T *mx, I *ix,    \
                                    const int64_t *iw0) {                                                      \
        const int64_t H = g->H, W = g->W, OW = g->OW, sw = g->sw, L = g->L, qmin = g->qmin;                     \
        for (int64_t ih = 0; ih < H; ih++)                                                                      \
            for (int64_t r = 0; r < sw; r++) {                                                                  \
                T *row = buf + (ih * sw + r) * L;                                                               \
                const T *xr = x + ih * W;                                                                       \
                for (int64_t jj = 0; jj < L; jj++) {                                                            \
                    int64_t col = sw * (jj + qmin) + r;                                                         \
                    row[jj] = (col >= 0 && col < W) ? xr[col] : (T)-INFINITY;                                   \
                }                                                                                               \
            }                                                                                                   \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                                \
            int64_t ih0 = oh * g->sh - g->ph, ih1 = min64(ih0 + (g->kh - 1) * g->dh + 1, H);                    \
            while (ih0 < 0) ih0 += g->dh;                                                                       \
            for (int64_t ow = 0; ow < OW; ow++) mx[ow] = (T)-INFINITY;                                          \
            if (idx)                                                                                            \
                for (int64_t ow = 0; ow < OW; ow++) ix[ow] = (I)(ih0 * W + iw0[ow]);                            \
            for (int64_t ih = ih0; ih < ih1; ih += g->dh)                                                       \
                for (int64_t k = 0; k < g->kw; k++) {                                                           \
                    int64_t off = k * g->dw - g->pw, q = floor_div(off, sw), r = off - q * sw;                  \
                    const T *src = buf + (ih * sw + r) * L + (q - qmin);                                        \
                    if (idx) {                                                                                  \
                        const I base = (I)(ih * W + off), step = (I)sw;                                         \
                        for (int64_t ow = 0; ow < OW; ow++) {                                                   \
                            T v = src[ow], m = mx[ow];                                                          \
                            bool take = (v > m) | (v != v);                                                     \
                            mx[ow] = take ? v : m;                                                              \
                            ix[ow] = take ? base + (I)ow * step : ix[ow];                                       \
                        }                                                                                       \
                    } else {                                                                                    \
                        for (int64_t ow = 0; ow < OW; ow++) {                                                   \
                            T v = src[ow], m = mx[ow];                                                          \
                            mx[ow] = ((v > m) | (v != v)) ? v : m;                                              \
                        }                                                                                       \
                    }                                                                                           \
                }                                                                                               \
            memcpy(o + oh * OW, mx, sizeof(T) * (size_t)OW);                                                    \
            if (idx)                                                                                            \
                for (int64_t ow = 0; ow < OW; ow++) idx[oh * OW + ow] = ix[ow];                                 \
        }                                                                                                       \
    }
DEF_MAXPOOL(f32, float, int32_t)
DEF_MAXPOOL(f64, double, int64_t)

/* PyTorch's loop, one window at a time: for strides so large that the phase
 * rows would be mostly unused */
#define DEF_MAXPOOL_SCALAR(SFX, T)                                                                           \
    static void maxpool_plane_scalar_##SFX(const mp_geom *g, const T *x, T *o, int64_t *idx) {              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                             \
            int64_t ih0 = oh * g->sh - g->ph, ih1 = min64(ih0 + (g->kh - 1) * g->dh + 1, g->H);              \
            while (ih0 < 0) ih0 += g->dh;                                                                    \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                                         \
                int64_t iw0 = ow * g->sw - g->pw, iw1 = min64(iw0 + (g->kw - 1) * g->dw + 1, g->W);          \
                while (iw0 < 0) iw0 += g->dw;                                                                \
                T m = (T)-INFINITY;                                                                          \
                int64_t mi = ih0 * g->W + iw0;                                                               \
                for (int64_t ih = ih0; ih < ih1; ih += g->dh)                                                \
                    for (int64_t iw = iw0; iw < iw1; iw += g->dw) {                                          \
                        T v = x[ih * g->W + iw];                                                             \
                        if ((v > m) | (v != v)) { m = v; mi = ih * g->W + iw; }                              \
                    }                                                                                        \
                o[oh * g->OW + ow] = m;                                                                      \
                if (idx) idx[oh * g->OW + ow] = mi;                                                          \
            }                                                                                                \
        }                                                                                                    \
    }
DEF_MAXPOOL_SCALAR(f32, float)
DEF_MAXPOOL_SCALAR(f64, double)

av_tensor *av_max_pool2d_raw(const av_tensor *x, const av_pool2d_opts *o, av_tensor **indices) {
    const char *fn = "max_pool2d";
    pdims d;
    if (indices) *indices = NULL;
    if (check_input(x, fn, &d) || check_opts(o, fn, true) || pool_geometry(x, o, fn, &d)) return NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        av_cuda_pool_geom cg = cuda_geom(&d, o);
        return av_cuda_max_pool2d(x, &cg, indices);
    }
#endif
    mp_geom g = {d.H, d.W, d.OH, d.OW, o->kernel[0], o->kernel[1], o->stride[0], o->stride[1],
                 o->padding[0], o->padding[1], o->dilation[0], o->dilation[1], 0, 0};
    g.qmin = floor_div(-g.pw, g.sw);
    g.L = d.OW + floor_div((g.kw - 1) * g.dw - g.pw, g.sw) - g.qmin;
    if (d.H * d.W >= LIMIT_) {
        av_fail("%s: planes of %lldx%lld are too large", fn, (long long)d.H, (long long)d.W);
        return NULL;
    }
    /* phase rows pay off unless the stride leaves most of them unused */
    bool phased = g.sw * g.L <= 4 * g.W + 64;
    av_tensor *xc = av_contiguous(x);
    av_tensor *out = xc ? new_out(&d, x->dtype) : NULL;
    av_tensor *ix = (out && indices) ? new_out(&d, AV_I64) : NULL;
    int64_t *iw0 = malloc(sizeof(int64_t) * (size_t)d.OW);
    if (!xc || !out || (indices && !ix) || !iw0) {
        if (!iw0) av_fail("out of memory");
        goto fail;
    }
    for (int64_t ow = 0; ow < d.OW; ow++) {
        int64_t c = ow * g.sw - g.pw;
        while (c < 0) c += g.dw;
        iw0[ow] = c;
    }
    bool f32 = x->dtype == AV_F32;
    size_t es = f32 ? sizeof(float) : sizeof(double), is = f32 ? sizeof(int32_t) : sizeof(int64_t);
    int nt = nthreads_for(d.P * d.OH * d.OW * g.kh * g.kw);
    int failed = 0;
    const char *xd = av_data(xc);
    char *od = av_data(out);
    int64_t *id = ix ? av_data(ix) : NULL;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t nbuf = phased ? (size_t)(g.H * g.sw * g.L) : 0;
        char *scratch = malloc(es * (nbuf + (size_t)d.OW) + is * (size_t)d.OW + 64);
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < d.P; p++) {
            if (!scratch) continue;
            char *bufp = scratch, *mxp = scratch + es * nbuf, *ixp = mxp + es * (size_t)d.OW;
            int64_t *ip = id ? id + p * d.OH * d.OW : NULL;
            if (!phased) {
                if (f32)
                    maxpool_plane_scalar_f32(&g, (const float *)xd + p * d.H * d.W, (float *)od + p * d.OH * d.OW, ip);
                else
                    maxpool_plane_scalar_f64(&g, (const double *)xd + p * d.H * d.W, (double *)od + p * d.OH * d.OW,
                                             ip);
            } else if (f32)
                maxpool_plane_f32(&g, (const float *)xd + p * d.H * d.W, (float *)od + p * d.OH * d.OW, ip,
                                  (float *)bufp, (float *)mxp, (int32_t *)ixp, iw0);
            else
                maxpool_plane_f64(&g, (const double *)xd + p * d.H * d.W, (double *)od + p * d.OH * d.OW, ip,
                                  (double *)bufp, (double *)mxp, (int64_t *)ixp, iw0);
        }
        free(scratch);
    }
    if (failed) {
        av_fail("out of memory");
        goto fail;
    }
    free(iw0);
    av_release(xc);
    if (indices) *indices = ix;
    return out;
fail:
    free(iw0);
    av_release(xc);
    av_release(out);
    av_release(ix);
    return NULL;
}

/* ---- max pool gradient (max_pool2d and adaptive_max_pool2d) ---------------------------------- */
#define DEF_SCATTER(SFX, T)                                                                      \
    static void scatter_##SFX(const T *g, const int64_t *idx, T *gx, int64_t P, int64_t HW,     \
                              int64_t OHW, int nt) {                                            \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                 \
        for (int64_t p = 0; p < P; p++) {                                                       \
            T *gp = gx + p * HW;                                                                \
            const T *go = g + p * OHW;                                                          \
            const int64_t *ip = idx + p * OHW;                                                  \
            memset(gp, 0, sizeof(T) * (size_t)HW);                                              \
            for (int64_t i = 0; i < OHW; i++) {                                                 \
                int64_t j = ip[i];                                                              \
                if (j >= 0 && j < HW) gp[j] += go[i];                                           \
            }                                                                                   \
        }                                                                                       \
    }
DEF_SCATTER(f32, float)
DEF_SCATTER(f64, double)

av_tensor *av_max_pool2d_backward_raw(const av_tensor *g, const av_tensor *idx, int ndim, const int64_t *shape) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(g) || av_is_cuda(idx)) return av_cuda_max_pool2d_backward(g, idx, ndim, shape);
#endif
    int64_t HW = shape[ndim - 1] * shape[ndim - 2], P = 1;
    for (int i = 0; i < ndim - 2; i++) P *= shape[i];
    int64_t OHW = idx->shape[idx->ndim - 1] * idx->shape[idx->ndim - 2];
    av_tensor *gc = av_contiguous(g), *ic = av_contiguous(idx);
    av_tensor *gx = (gc && ic) ? av_empty(ndim, shape, g->dtype) : NULL;
    if (gx && P * HW > 0) {
        int nt = nthreads_for(P * (HW + OHW));
        if (g->dtype == AV_F32) scatter_f32(av_data(gc), av_data(ic), av_data(gx), P, HW, OHW, nt);
        else scatter_f64(av_data(gc), av_data(ic), av_data(gx), P, HW, OHW, nt);
    }
    av_release(gc);
    av_release(ic);
    return gx;
}

/* ---- avg_pool2d --------------------------------------------------------------------------------- */
typedef struct {
    int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, div;
    bool include_pad;
} ap_geom;

/* window of output (oh, ow): clipped bounds and divisor; false when empty */
static inline bool ap_window(const ap_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0,
                             int64_t *w1, int64_t *div) {
    int64_t ih0 = oh * g->sh - g->ph, iw0 = ow * g->sw - g->pw;
    int64_t ih1 = min64(ih0 + g->kh, g->H + g->ph), iw1 = min64(iw0 + g->kw, g->W + g->pw);
    int64_t pool = (ih1 - ih0) * (iw1 - iw0);
    ih0 = max64(ih0, 0); iw0 = max64(iw0, 0);
    ih1 = min64(ih1, g->H); iw1 = min64(iw1, g->W);
    *h0 = ih0; *h1 = ih1; *w0 = iw0; *w1 = iw1;
    if (ih0 >= ih1 || iw0 >= iw1) return false;
    *div = g->div ? g->div : (g->include_pad ? pool : (ih1 - ih0) * (iw1 - iw0));
    return true;
}

#define DEF_AVGPOOL(SFX, T)                                                                                    \
    static void avgpool_##SFX(const ap_geom *g, const T *x, T *o, int64_t P, int nt) {                       \
        const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;                                                   \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                                \
        for (int64_t p = 0; p < P; p++) {                                                                      \
            const T *xp = x + p * HW;                                                                          \
            T *op = o + p * OHW;                                                                               \
            for (int64_t oh = 0; oh < g->OH; oh++)                                                             \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                       \
                    int64_t h0, h1, w0, w1, div;                                                               \
                    if (!ap_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) { op[oh * g->OW + ow] = 0; continue; } \
                    T s = 0;                                                                                   \
                    for (int64_t ih = h0; ih < h1; ih++)                                                       \
                        for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * g->W + iw];                          \
                    op[oh * g->OW + ow] = s / (T)div;                                                          \
                }                                                                                              \
        }                                                                                                      \
    }                                                                                                          \
    static void avgpool_bwd_##SFX(const ap_geom *g, const T *go, T *gx, int64_t P, int nt) {                  \
        const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;                                                   \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                                \
        for (int64_t p = 0; p < P; p++) {                                                                      \
            T *gp = gx + p * HW;                                                                               \
            const T *op = go + p * OHW;                                                                        \
            memset(gp, 0, sizeof(T) * (size_t)HW);                                                             \
            for (int64_t oh = 0; oh < g->OH; oh++)                                                             \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                       \
                    int64_t h0, h1, w0, w1, div;                                                               \
                    if (!ap_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) continue;                             \
                    T v = op[oh * g->OW + ow] / (T)div;                                                        \
                    for (int64_t ih = h0; ih < h1; ih++)                                                       \
                        for (int64_t iw = w0; iw < w1; iw++) gp[ih * g->W + iw] += v;                          \
                }                                                                                              \
        }                                                                                                      \
    }
DEF_AVGPOOL(f32, float)
DEF_AVGPOOL(f64, double)

static void ap_geom_of(const pdims *d, const av_pool2d_opts *o, ap_geom *g) {
    *g = (ap_geom){d->H, d->W, d->OH, d->OW, o->kernel[0], o->kernel[1], o->stride[0], o->stride[1],
                   o->padding[0], o->padding[1], o->divisor_override, o->count_include_pad};
}

av_tensor *av_avg_pool2d_raw(const av_tensor *x, const av_pool2d_opts *o) {
    const char *fn = "avg_pool2d";
    pdims d;
    if (check_input(x, fn, &d) || check_opts(o, fn, false) || pool_geometry(x, o, fn, &d)) return NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        av_cuda_pool_geom cg = cuda_geom(&d, o);
        return av_cuda_avg_pool2d(x, &cg);
    }
#endif
    ap_geom g;
    ap_geom_of(&d, o, &g);
    av_tensor *xc = av_contiguous(x);
    av_tensor *out = xc ? new_out(&d, x->dtype) : NULL;
    if (out && d.P > 0) {
        int nt = nthreads_for(d.P * d.OH * d.OW * g.kh * g.kw);
        if (x->dtype == AV_F32) avgpool_f32(&g, av_data(xc), av_data(out), d.P, nt);
        else avgpool_f64(&g, av_data(xc), av_data(out), d.P, nt);
    }
    av_release(xc);
    return out;
}

av_tensor *av_avg_pool2d_backward_raw(const av_tensor *gout, const av_pool2d_opts *o, int ndim, const int64_t *shape) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(gout)) return av_cuda_avg_pool2d_backward(gout, o, ndim, shape);
#endif
    pdims d = {1, shape[ndim - 3], shape[ndim - 2], shape[ndim - 1], 0, 0, 0, ndim == 4};
    d.N = ndim == 4 ? shape[0] : 1;
    d.P = d.N * d.C;
    d.OH = gout->shape[gout->ndim - 2];
    d.OW = gout->shape[gout->ndim - 1];
    ap_geom g;
    ap_geom_of(&d, o, &g);
    av_tensor *gc = av_contiguous(gout);
    av_tensor *gx = gc ? av_empty(ndim, shape, gout->dtype) : NULL;
    if (gx && d.P > 0) {
        int nt = nthreads_for(d.P * (d.H * d.W + d.OH * d.OW * g.kh * g.kw));
        if (gout->dtype == AV_F32) avgpool_bwd_f32(&g, av_data(gc), av_data(gx), d.P, nt);
        else avgpool_bwd_f64(&g, av_data(gc), av_data(gx), d.P, nt);
    }
    av_release(gc);
    return gx;
}

/* ---- adaptive pools ----------------------------------------------------------------------------- */
static inline int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
static inline int64_t ad_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

static int check_adaptive(const av_tensor *x, int64_t oh, int64_t ow, const char *fn, pdims *d) {
    if (check_input(x, fn, d)) return -1;
    if (oh <= 0 || ow <= 0)
        return av_fail("%s: output size must be positive, got %lldx%lld", fn, (long long)oh, (long long)ow);
    if (oh >= LIMIT_ || ow >= LIMIT_ || oh * ow >= LIMIT_)
        return av_fail("%s: output size %lldx%lld is too large", fn, (long long)oh, (long long)ow);
    d->OH = oh;
    d->OW = ow;
    return 0;
}

/* sum of a contiguous run, several float accumulators */
#define DEF_RUNSUM(SFX, T)                                                                \
    static inline T runsum_##SFX(const T *x, int64_t n) {                                 \
        T a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                                 \
        int64_t i = 0;                                                                    \
        for (; i + 4 <= n; i += 4) { a0 += x[i]; a1 += x[i + 1]; a2 += x[i + 2]; a3 += x[i + 3]; } \
        for (; i < n; i++) a0 += x[i];                                                    \
        return (a0 + a1) + (a2 + a3);                                                     \
    }
DEF_RUNSUM(f32, float)
DEF_RUNSUM(f64, double)

#define DEF_ADAPTIVE(SFX, T)                                                                                   \
    static void adavg_##SFX(const pdims *d, const T *x, T *o, int nt) {                                       \
        const int64_t H = d->H, W = d->W, OH = d->OH, OW = d->OW, HW = H * W;                                  \
        if (OH == 1 && OW == 1) {                                                                              \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                            \
            for (int64_t p = 0; p < d->P; p++) o[p] = runsum_##SFX(x + p * HW, HW) / (T)HW;                    \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                                \
        for (int64_t p = 0; p < d->P; p++) {                                                                   \
            const T *xp = x + p * HW;                                                                          \
            T *op = o + p * OH * OW;                                                                           \
            for (int64_t oh = 0; oh < OH; oh++) {                                                              \
                int64_t h0 = ad_start(oh, H, OH), h1 = ad_end(oh, H, OH);                                      \
                for (int64_t ow = 0; ow < OW; ow++) {                                                          \
                    int64_t w0 = ad_start(ow, W, OW), w1 = ad_end(ow, W, OW);                                  \
                    T s = 0;                                                                                   \
                    for (int64_t ih = h0; ih < h1; ih++) s += runsum_##SFX(xp + ih * W + w0, w1 - w0);         \
                    op[oh * OW + ow] = s / (T)((h1 - h0) * (w1 - w0));                                         \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    static void adavg_bwd_##SFX(const pdims *d, const T *g, T *gx, int nt) {                                  \
        const int64_t H = d->H, W = d->W, OH = d->OH, OW = d->OW, HW = H * W;                                  \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                                \
        for (int64_t p = 0; p < d->P; p++) {                                                                   \
            T *gp = gx + p * HW;                                                                               \
            const T *go = g + p * OH * OW;                                                                     \
            if (OH == 1 && OW == 1) {                                                                          \
                const T v = go[0] / (T)HW;                                                                     \
                for (int64_t i = 0; i < HW; i++) gp[i] = v;                                                    \
                continue;                                                                                      \
            }                                                                                                  \
            memset(gp, 0, sizeof(T) * (size_t)HW);                                                             \
            for (int64_t oh = 0; oh < OH; oh++) {                                                              \
                int64_t h0 = ad_start(oh, H, OH), h1 = ad_end(oh, H, OH);                                      \
                for (int64_t ow = 0; ow < OW; ow++) {                                                          \
                    int64_t w0 = ad_start(ow, W, OW), w1 = ad_end(ow, W, OW);                                  \
                    const T v = go[oh * OW + ow] / (T)((h1 - h0) * (w1 - w0));                                 \
                    for (int64_t ih = h0; ih < h1; ih++)                                                       \
                        for (int64_t iw = w0; iw < w1; iw++) gp[ih * W + iw] += v;                             \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    static void admax_##SFX(const pdims *d, const T *x, T *o, int64_t *idx, int nt) {                         \
        const int64_t H = d->H, W = d->W, OH = d->OH, OW = d->OW, HW = H * W;                                  \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                                \
        for (int64_t p = 0; p < d->P; p++) {                                                                   \
            const T *xp = x + p * HW;                                                                          \
            T *op = o + p * OH * OW;                                                                           \
            int64_t *ip = idx ? idx + p * OH * OW : NULL;                                                      \
            for (int64_t oh = 0; oh < OH; oh++) {                                                              \
                int64_t h0 = ad_start(oh, H, OH), h1 = ad_end(oh, H, OH);                                      \
                for (int64_t ow = 0; ow < OW; ow++) {                                                          \
                    int64_t w0 = ad_start(ow, W, OW), w1 = ad_end(ow, W, OW);                                  \
                    T m = (T)-INFINITY;                                                                        \
                    int64_t mi = h0 * W + w0;                                                                  \
                    for (int64_t ih = h0; ih < h1; ih++)                                                       \
                        for (int64_t iw = w0; iw < w1; iw++) {                                                 \
                            T v = xp[ih * W + iw];                                                             \
                            if ((v > m) | (v != v)) { m = v; mi = ih * W + iw; }                               \
                        }                                                                                      \
                    op[oh * OW + ow] = m;                                                                      \
                    if (ip) ip[oh * OW + ow] = mi;                                                             \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
DEF_ADAPTIVE(f32, float)
DEF_ADAPTIVE(f64, double)

av_tensor *av_adaptive_avg_pool2d_raw(const av_tensor *x, int64_t oh, int64_t ow) {
    pdims d;
    if (check_adaptive(x, oh, ow, "adaptive_avg_pool2d", &d)) return NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        av_cuda_pool_geom cg = cuda_geom(&d, NULL);
        return av_cuda_adaptive_avg_pool2d(x, &cg);
    }
#endif
    av_tensor *xc = av_contiguous(x);
    av_tensor *out = xc ? new_out(&d, x->dtype) : NULL;
    if (out && d.P > 0) {
        int64_t kh = (d.H + oh - 1) / oh + 1, kw = (d.W + ow - 1) / ow + 1;
        int nt = nthreads_for(d.P * (oh * ow * kh * kw));
        if (x->dtype == AV_F32) adavg_f32(&d, av_data(xc), av_data(out), nt);
        else adavg_f64(&d, av_data(xc), av_data(out), nt);
    }
    av_release(xc);
    return out;
}

av_tensor *av_adaptive_avg_pool2d_backward_raw(const av_tensor *g, int ndim, const int64_t *shape) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(g)) return av_cuda_adaptive_avg_pool2d_backward(g, ndim, shape);
#endif
    pdims d = {ndim == 4 ? shape[0] : 1, shape[ndim - 3], shape[ndim - 2], shape[ndim - 1],
               g->shape[g->ndim - 2], g->shape[g->ndim - 1], 0, ndim == 4};
    d.P = d.N * d.C;
    av_tensor *gc = av_contiguous(g);
    av_tensor *gx = gc ? av_empty(ndim, shape, g->dtype) : NULL;
    if (gx && d.P > 0) {
        int nt = nthreads_for(d.P * (d.H * d.W + d.OH * d.OW));
        if (g->dtype == AV_F32) adavg_bwd_f32(&d, av_data(gc), av_data(gx), nt);
        else adavg_bwd_f64(&d, av_data(gc), av_data(gx), nt);
    }
    av_release(gc);
    return gx;
}

av_tensor *av_adaptive_max_pool2d_raw(const av_tensor *x, int64_t oh, int64_t ow, av_tensor **indices) {
    pdims d;
    if (indices) *indices = NULL;
    if (check_adaptive(x, oh, ow, "adaptive_max_pool2d", &d)) return NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        av_cuda_pool_geom cg = cuda_geom(&d, NULL);
        return av_cuda_adaptive_max_pool2d(x, &cg, indices);
    }
#endif
    av_tensor *xc = av_contiguous(x);
    av_tensor *out = xc ? new_out(&d, x->dtype) : NULL;
    av_tensor *ix = (out && indices) ? new_out(&d, AV_I64) : NULL;
    if (!out || (indices && !ix)) {
        av_release(xc); av_release(out); av_release(ix);
        return NULL;
    }
    if (d.P > 0) {
        int64_t kh = (d.H + oh - 1) / oh + 1, kw = (d.W + ow - 1) / ow + 1;
        int nt = nthreads_for(d.P * (oh * ow * kh * kw));
        if (x->dtype == AV_F32) admax_f32(&d, av_data(xc), av_data(out), ix ? av_data(ix) : NULL, nt);
        else admax_f64(&d, av_data(xc), av_data(out), ix ? av_data(ix) : NULL, nt);
    }
    av_release(xc);
    if (indices) *indices = ix;
    return out;
}
