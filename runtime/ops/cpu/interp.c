/* interpolate: nearest and (bi)linear resampling of N x C x H x W (and
 * N x C x W) inputs with the coordinate rules of torch 1.13's
 * F.interpolate, forward and backward. A 3-d input is handled as a 4-d one
 * with H = 1. Source indices and weights are computed once per axis, in the
 * input's precision as ATen does (float for float32), then every N x C
 * plane is resampled independently (planes are split across threads). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/loss.h"
#include "aviary/ops.h"
#include "iter.h"
#include "../../autograd/grad_loss.h"
#include "aviary/cuda.h"

static int threads_for(int64_t work) {
    int nt = work >= AV_PARALLEL_GRAIN ? av_get_num_threads() : 1;
    return nt < 1 ? 1 : nt;
}

/* ATen's nearest_idx: exact copies for equal sizes and for doubling, else
 * floor(dst * scale) in float with scale = 1/scale_factor or in/out */
static void nearest_index(int64_t in, int64_t out, double scale_opt, int64_t *idx) {
    if (out == in) {
        for (int64_t o = 0; o < out; o++) idx[o] = o;
        return;
    }
    if (out == 2 * in) {
        for (int64_t o = 0; o < out; o++) idx[o] = o >> 1;
        return;
    }
    float scale = scale_opt > 0 ? (float)(1.0 / scale_opt) : (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        int64_t s = (int64_t)floorf((float)o * scale);
        idx[o] = s < in - 1 ? s : in - 1;
    }
}

/* ATen's area_pixel_compute_scale + compute_source_index_and_lambda, in
 * float (f32) or double */
static void linear_coeffs(bool f32, int64_t in, int64_t out, bool ac, double scale_opt, int64_t *i0, int64_t *i1,
                          double *l0, double *l1) {
    for (int64_t o = 0; o < out; o++) {
        if (out == in) {
            i0[o] = i1[o] = o;
            l0[o] = 1;
            l1[o] = 0;
            continue;
        }
        double src, lam;
        int64_t a;
        if (f32) {
            float scale = ac ? (out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f)
                             : (scale_opt > 0 ? (float)(1.0 / scale_opt) : (float)in / (float)out);
            float s = ac ? scale * (float)o : (float)((double)scale * ((double)o + 0.5) - 0.5);
            if (!ac && s < 0) s = 0;
            a = (int64_t)s;
            if (a > in - 1) a = in - 1;
            float l = s - (float)a;
            l = l < 0 ? 0 : (l > 1 ? 1 : l);
            src = s;
            lam = l;
            l0[o] = (double)(1.0f - l);
        } else {
            double scale = ac ? (out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0)
                              : (scale_opt > 0 ? 1.0 / scale_opt : (double)in / (double)out);
            double s = ac ? scale * (double)o : scale * ((double)o + 0.5) - 0.5;
            if (!ac && s < 0) s = 0;
            a = (int64_t)s;
            if (a > in - 1) a = in - 1;
            double l = s - (double)a;
            l = l < 0 ? 0 : (l > 1 ? 1 : l);
            src = s;
            lam = l;
            l0[o] = 1.0 - l;
        }
        (void)src;
        i0[o] = a;
        i1[o] = a + (a < in - 1 ? 1 : 0);
        l1[o] = lam;
    }
}

typedef struct {
    int64_t *ih0, *ih1, *iw0, *iw1;
    double *lh0, *lh1, *lw0, *lw1;
    void *mem;
} axes;

static int make_axes(const av_interp_params *p, bool f32, axes *a) {
    int64_t oh = p->out[0], ow = p->out[1];
    size_t n = (size_t)(oh + ow);
    a->mem = malloc(n * 2 * (sizeof(int64_t) + sizeof(double)) + 64);
    if (!a->mem) return av_fail("interpolate: out of memory");
    int64_t *ip = a->mem;
    double *dp = (double *)(ip + 2 * n);
    a->ih0 = ip; a->ih1 = ip + oh; a->iw0 = ip + 2 * oh; a->iw1 = ip + 2 * oh + ow;
    a->lh0 = dp; a->lh1 = dp + oh; a->lw0 = dp + 2 * oh; a->lw1 = dp + 2 * oh + ow;
    if (p->linear) {
        linear_coeffs(f32, p->in[0], oh, p->align_corners, p->scale[0], a->ih0, a->ih1, a->lh0, a->lh1);
        linear_coeffs(f32, p->in[1], ow, p->align_corners, p->scale[1], a->iw0, a->iw1, a->lw0, a->lw1);
    } else {
        nearest_index(p->in[0], oh, p->scale[0], a->ih0);
        nearest_index(p->in[1], ow, p->scale[1], a->iw0);
    }
    return 0;
}

#define LINEAR_KERNELS(T, S)                                                                        \
    static void lin_fwd_##S(const T *x, T *y, int64_t planes, const av_interp_params *p, const axes *a) { \
        int64_t IH = p->in[0], IW = p->in[1], OH = p->out[0], OW = p->out[1];                      \
        int nt = threads_for(planes * OH * OW * 4);                                                 \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                                   \
            const T *xp = x + pl * IH * IW;                                                         \
            T *yp = y + pl * OH * OW;                                                               \
            for (int64_t oh = 0; oh < OH; oh++) {                                                   \
                const T *r0 = xp + a->ih0[oh] * IW, *r1 = xp + a->ih1[oh] * IW;                     \
                T h0 = (T)a->lh0[oh], h1 = (T)a->lh1[oh];                                           \
                for (int64_t ow = 0; ow < OW; ow++) {                                               \
                    int64_t w0 = a->iw0[ow], w1 = a->iw1[ow];                                       \
                    T l0 = (T)a->lw0[ow], l1 = (T)a->lw1[ow];                                       \
                    yp[oh * OW + ow] = h0 * (l0 * r0[w0] + l1 * r0[w1]) + h1 * (l0 * r1[w0] + l1 * r1[w1]); \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    static void lin_bwd_##S(const T *g, T *gx, int64_t planes, const av_interp_params *p, const axes *a) { \
        int64_t IH = p->in[0], IW = p->in[1], OH = p->out[0], OW = p->out[1];                      \
        int nt = threads_for(planes * OH * OW * 4);                                                 \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                                   \
            T *xp = gx + pl * IH * IW;                                                              \
            const T *gp = g + pl * OH * OW;                                                         \
            memset(xp, 0, sizeof(T) * IH * IW);                                                     \
            for (int64_t oh = 0; oh < OH; oh++) {                                                   \
                T *r0 = xp + a->ih0[oh] * IW, *r1 = xp + a->ih1[oh] * IW;                           \
                T h0 = (T)a->lh0[oh], h1 = (T)a->lh1[oh];                                           \
                for (int64_t ow = 0; ow < OW; ow++) {                                               \
                    int64_t w0 = a->iw0[ow], w1 = a->iw1[ow];                                       \
                    T l0 = (T)a->lw0[ow], l1 = (T)a->lw1[ow], v = gp[oh * OW + ow];                 \
                    r0[w0] += h0 * l0 * v;                                                          \
                    r0[w1] += h0 * l1 * v;                                                          \
                    r1[w0] += h1 * l0 * v;                                                          \
                    r1[w1] += h1 * l1 * v;                                                          \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    static void near_bwd_##S(const T *g, T *gx, int64_t planes, const av_interp_params *p, const axes *a) { \
        int64_t IH = p->in[0], IW = p->in[1], OH = p->out[0], OW = p->out[1];                      \
        int nt = threads_for(planes * OH * OW);                                                     \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                                   \
            T *xp = gx + pl * IH * IW;                                                              \
            const T *gp = g + pl * OH * OW;                                                         \
            memset(xp, 0, sizeof(T) * IH * IW);                                                     \
            for (int64_t oh = 0; oh < OH; oh++) {                                                   \
                T *r = xp + a->ih0[oh] * IW;                                                        \
                for (int64_t ow = 0; ow < OW; ow++) r[a->iw0[ow]] += gp[oh * OW + ow];              \
            }                                                                                       \
        }                                                                                           \
    }

LINEAR_KERNELS(float, f32)
LINEAR_KERNELS(double, f64)

/* nearest forward copies elements of any dtype by size */
#define NEAR_FWD(U)                                                                                 \
    static void near_fwd_##U(const U *x, U *y, int64_t planes, const av_interp_params *p, const axes *a) { \
        int64_t IH = p->in[0], IW = p->in[1], OH = p->out[0], OW = p->out[1];                      \
        int nt = threads_for(planes * OH * OW);                                                     \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                    \
        for (int64_t pl = 0; pl < planes; pl++) {                                                   \
            const U *xp = x + pl * IH * IW;                                                         \
            U *yp = y + pl * OH * OW;                                                               \
            for (int64_t oh = 0; oh < OH; oh++) {                                                   \
                const U *r = xp + a->ih0[oh] * IW;                                                  \
                for (int64_t ow = 0; ow < OW; ow++) yp[oh * OW + ow] = r[a->iw0[ow]];               \
            }                                                                                       \
        }                                                                                           \
    }
NEAR_FWD(uint8_t)
NEAR_FWD(uint16_t)
NEAR_FWD(uint32_t)
NEAR_FWD(uint64_t)

static int64_t planes_of(int ndim, const int64_t *shape) { return shape[0] * shape[1]; (void)ndim; }

av_tensor *av_interp_raw(const av_tensor *x, const av_interp_params *p) {
    if (av_is_cuda(x)) { /* on the host for now: one copy each way */
        av_tensor *h = av_to_device(x, (av_device){AV_CPU, 0}), *r = h ? av_interp_raw(h, p) : NULL;
        av_tensor *d = r ? av_to_device(r, av_device_of(x)) : NULL;
        av_release(h);
        av_release(r);
        return d;
    }
    int64_t os[4];
    os[0] = x->shape[0];
    os[1] = x->shape[1];
    if (x->ndim == 4) { os[2] = p->out[0]; os[3] = p->out[1]; }
    else os[2] = p->out[1];
    av_tensor *y = av_empty(x->ndim, os, x->dtype);
    if (!y || av_numel(y) == 0) return y;
    av_tensor *xc = av_contiguous(x);
    axes a;
    if (!xc || make_axes(p, x->dtype == AV_F32, &a)) { av_release(xc); av_release(y); return NULL; }
    int64_t planes = planes_of(x->ndim, x->shape);
    if (p->linear) {
        if (x->dtype == AV_F32) lin_fwd_f32(av_data(xc), av_data(y), planes, p, &a);
        else lin_fwd_f64(av_data(xc), av_data(y), planes, p, &a);
    } else {
        switch (av_dtype_size(x->dtype)) {
        case 1: near_fwd_uint8_t(av_data(xc), av_data(y), planes, p, &a); break;
        case 2: near_fwd_uint16_t(av_data(xc), av_data(y), planes, p, &a); break;
        case 4: near_fwd_uint32_t(av_data(xc), av_data(y), planes, p, &a); break;
        default: near_fwd_uint64_t(av_data(xc), av_data(y), planes, p, &a); break;
        }
    }
    free(a.mem);
    av_release(xc);
    return y;
}

av_tensor *av_interp_backward_raw(const av_tensor *g, const av_interp_params *p, int ndim, const int64_t *in_shape) {
    if (av_is_cuda(g)) {
        av_tensor *h = av_to_device(g, (av_device){AV_CPU, 0});
        av_tensor *r = h ? av_interp_backward_raw(h, p, ndim, in_shape) : NULL;
        av_tensor *d = r ? av_to_device(r, av_device_of(g)) : NULL;
        av_release(h);
        av_release(r);
        return d;
    }
    av_tensor *gc = av_contiguous(g);
    if (!gc) return NULL;
    av_tensor *gx = av_empty(ndim, in_shape, g->dtype);
    axes a;
    if (!gx || make_axes(p, g->dtype == AV_F32, &a)) { av_release(gc); av_release(gx); return NULL; }
    int64_t planes = planes_of(ndim, in_shape);
    if (av_numel(gx) > 0) {
        if (p->linear) {
            if (g->dtype == AV_F32) lin_bwd_f32(av_data(gc), av_data(gx), planes, p, &a);
            else lin_bwd_f64(av_data(gc), av_data(gx), planes, p, &a);
        } else {
            if (g->dtype == AV_F32) near_bwd_f32(av_data(gc), av_data(gx), planes, p, &a);
            else near_bwd_f64(av_data(gc), av_data(gx), planes, p, &a);
        }
    }
    free(a.mem);
    av_release(gc);
    return gx;
}

av_tensor *av_interpolate(const av_tensor *x, int nsize, const int64_t *size, int nscale, const double *scale,
                          const char *mode, int align_corners, int recompute_scale_factor) {
    const char *fn = "interpolate";
    char b1[96];
    if (!x) { av_fail("%s: input is NULL", fn); return NULL; }
    if (!mode) mode = "nearest";
    bool linear;
    if (!strcmp(mode, "nearest")) linear = false;
    else if (!strcmp(mode, "bilinear") || !strcmp(mode, "linear")) linear = true;
    else {
        av_fail("%s: unknown mode '%s' (expected 'nearest', 'linear' or 'bilinear')", fn, mode);
        return NULL;
    }
    if (x->ndim != 3 && x->ndim != 4) {
        av_fail("%s: expected a 3-d (N x C x W) or 4-d (N x C x H x W) input, got size %s", fn,
                av_shape_str(x, b1, sizeof b1));
        return NULL;
    }
    if (linear && !strcmp(mode, "bilinear") && x->ndim != 4) {
        av_fail("%s: mode 'bilinear' needs a 4-d input (N x C x H x W), got size %s", fn, av_shape_str(x, b1, sizeof b1));
        return NULL;
    }
    if (linear && !strcmp(mode, "linear") && x->ndim != 3) {
        av_fail("%s: mode 'linear' needs a 3-d input (N x C x W), got size %s", fn, av_shape_str(x, b1, sizeof b1));
        return NULL;
    }
    if (!linear && align_corners >= 0) {
        av_fail("%s: align_corners can only be set with the linear modes ('linear', 'bilinear'), not with '%s'", fn, mode);
        return NULL;
    }
    if (linear && x->dtype != AV_F32 && x->dtype != AV_F64) {
        av_fail("%s: mode '%s' needs a float32 or float64 input, got %s", fn, mode, av_dtype_name(x->dtype));
        return NULL;
    }
    if (nsize > 0 && nscale > 0) { av_fail("%s: only one of size and scale_factor may be given", fn); return NULL; }
    if (nsize <= 0 && nscale <= 0) { av_fail("%s: either size or scale_factor must be given", fn); return NULL; }
    int nsp = x->ndim - 2;
    if ((nsize > 0 && nsize != 1 && nsize != nsp) || (nscale > 0 && nscale != 1 && nscale != nsp)) {
        av_fail("%s: %s has %d entries but the input has %d spatial dim%s (size %s)", fn, nsize > 0 ? "size" : "scale_factor",
                nsize > 0 ? nsize : nscale, nsp, nsp == 1 ? "" : "s", av_shape_str(x, b1, sizeof b1));
        return NULL;
    }
    av_interp_params p = {0};
    p.nsp = nsp;
    p.linear = linear;
    p.align_corners = align_corners > 0;
    p.in[0] = nsp == 2 ? x->shape[2] : 1;
    p.in[1] = x->shape[x->ndim - 1];
    p.out[0] = p.in[0];
    for (int i = 0; i < nsp; i++) {
        int k = nsp == 2 ? i : 1; /* slot: 0 = H, 1 = W */
        int64_t in = x->shape[2 + i], out;
        if (nsize > 0) {
            out = size[nsize == 1 ? 0 : i];
            if (out <= 0 || out > ((int64_t)1 << 40)) {
                av_fail("%s: output size %lld is invalid (must be positive)", fn, (long long)out);
                return NULL;
            }
        } else {
            double s = scale[nscale == 1 ? 0 : i];
            if (!(s > 0) || !isfinite(s)) {
                av_fail("%s: scale_factor must be positive and finite, got %g", fn, s);
                return NULL;
            }
            double o = floor((double)in * s);
            if (o > (double)((int64_t)1 << 40)) {
                av_fail("%s: scale_factor %g gives an output size that is too large", fn, s);
                return NULL;
            }
            out = (int64_t)o;
            if (recompute_scale_factor <= 0) p.scale[k] = s;
        }
        p.out[k] = out;
    }
    if (p.in[0] <= 0 || p.in[1] <= 0 || p.out[0] <= 0 || p.out[1] <= 0) {
        if (nsp == 2)
            av_fail("%s: input and output sizes should be greater than 0, got input (H: %lld, W: %lld) and output "
                    "(H: %lld, W: %lld)", fn, (long long)p.in[0], (long long)p.in[1], (long long)p.out[0],
                    (long long)p.out[1]);
        else
            av_fail("%s: input and output sizes should be greater than 0, got input (W: %lld) and output (W: %lld)", fn,
                    (long long)p.in[1], (long long)p.out[1]);
        return NULL;
    }
    av_tensor *out;
    NO_GRAD(out = av_interp_raw(x, &p));
    if (!out) return NULL;
    if (x->dtype != AV_F32 && x->dtype != AV_F64) return out; /* no gradient for other dtypes */
    return av_ag_finish(out, av_ag_interp(out, x, &p));
}
