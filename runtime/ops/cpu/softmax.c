/* softmax and log_softmax over one dim, forward and backward, as fused
 * kernels: the input is seen as outer x C x inner (C the softmax dim). With
 * inner == 1 each row is reduced with vectorised lanes; otherwise slabs of up
 * to COLW columns are processed with the class loop outside, so every inner
 * loop is unit-stride. Rows and slabs are split across OpenMP threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/loss.h"
#include "aviary/ops.h"
#include "iter.h"
#include "softmax_k.h"
#include "../../autograd/grad_loss.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_lib.h"
#endif

#define COLW 256

static int threads_for(int64_t work) {
    int nt = work >= AV_PARALLEL_GRAIN ? av_get_num_threads() : 1;
    return nt < 1 ? 1 : nt;
}

#define SOFTMAX_KERNELS(T, S, EXPF, LOGF)                                                            \
    static void fwd_##S(const T *x, T *y, int64_t outer, int64_t C, int64_t inner, bool lg) {       \
        int nt = threads_for(outer * C * inner);                                                     \
        if (inner == 1) {                                                                            \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                 \
            for (int64_t r = 0; r < outer; r++) {                                                    \
                const T *xr = x + r * C;                                                             \
                T *yr = y + r * C;                                                                   \
                T m = smk_max_##S(xr, C);                                                            \
                if (lg) {                                                                            \
                    T c = m + LOGF(smk_sumexp_##S(xr, C, m));                                        \
                    for (int64_t i = 0; i < C; i++) yr[i] = xr[i] - c;                               \
                } else {                                                                             \
                    T inv = (T)1 / smk_exp_shift_sum_##S(xr, yr, C, m);                              \
                    for (int64_t i = 0; i < C; i++) yr[i] *= inv;                                    \
                }                                                                                    \
            }                                                                                        \
            return;                                                                                  \
        }                                                                                            \
        int64_t nch = (inner + COLW - 1) / COLW, tasks = outer * nch;                                \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                     \
        for (int64_t k = 0; k < tasks; k++) {                                                        \
            int64_t o = k / nch, s0 = (k % nch) * COLW, w = inner - s0 < COLW ? inner - s0 : COLW;  \
            const T *xs = x + o * C * inner + s0;                                                    \
            T *ys = y + o * C * inner + s0;                                                          \
            T m[COLW], sum[COLW];                                                                    \
            for (int64_t s = 0; s < w; s++) { m[s] = -INFINITY; sum[s] = 0; }                        \
            for (int64_t c = 0; c < C; c++)                                                          \
                for (int64_t s = 0; s < w; s++) {                                                    \
                    T v = xs[c * inner + s];                                                         \
                    m[s] = v > m[s] ? v : m[s];                                                      \
                }                                                                                    \
            for (int64_t c = 0; c < C; c++)                                                          \
                for (int64_t s = 0; s < w; s++) {                                                    \
                    T e = EXPF(xs[c * inner + s] - m[s]);                                            \
                    ys[c * inner + s] = e;                                                           \
                    sum[s] += e;                                                                     \
                }                                                                                    \
            if (lg) {                                                                                \
                for (int64_t s = 0; s < w; s++) m[s] += LOGF(sum[s]);                                \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++) ys[c * inner + s] = xs[c * inner + s] - m[s];    \
            } else {                                                                                 \
                for (int64_t s = 0; s < w; s++) sum[s] = (T)1 / sum[s];                              \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++) ys[c * inner + s] *= sum[s];                     \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    /* softmax: gx = y (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g) */                       \
    static void bwd_##S(const T *g, const T *y, T *gx, int64_t outer, int64_t C, int64_t inner,      \
                        bool lg) {                                                                   \
        int nt = threads_for(outer * C * inner);                                                     \
        if (inner == 1) {                                                                            \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                 \
            for (int64_t r = 0; r < outer; r++) {                                                    \
                const T *gr = g + r * C, *yr = y + r * C;                                            \
                T *o = gx + r * C;                                                                   \
                if (lg) {                                                                            \
                    T sg = smk_sum_##S(gr, C);                                                       \
                    smk_exp_shift_##S(yr, o, C, 0);                                                  \
                    for (int64_t i = 0; i < C; i++) o[i] = gr[i] - o[i] * sg;                        \
                } else {                                                                             \
                    T d = smk_dot_##S(gr, yr, C);                                                    \
                    for (int64_t i = 0; i < C; i++) o[i] = yr[i] * (gr[i] - d);                      \
                }                                                                                    \
            }                                                                                        \
            return;                                                                                  \
        }                                                                                            \
        int64_t nch = (inner + COLW - 1) / COLW, tasks = outer * nch;                                \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                     \
        for (int64_t k = 0; k < tasks; k++) {                                                        \
            int64_t o = k / nch, s0 = (k % nch) * COLW, w = inner - s0 < COLW ? inner - s0 : COLW;  \
            int64_t base = o * C * inner + s0;                                                       \
            const T *gs = g + base, *ys = y + base;                                                  \
            T *os = gx + base;                                                                       \
            T acc[COLW];                                                                             \
            for (int64_t s = 0; s < w; s++) acc[s] = 0;                                              \
            if (lg) {                                                                                \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++) acc[s] += gs[c * inner + s];                     \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++)                                                  \
                        os[c * inner + s] = gs[c * inner + s] - EXPF(ys[c * inner + s]) * acc[s];    \
            } else {                                                                                 \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++) acc[s] += gs[c * inner + s] * ys[c * inner + s]; \
                for (int64_t c = 0; c < C; c++)                                                      \
                    for (int64_t s = 0; s < w; s++)                                                  \
                        os[c * inner + s] = ys[c * inner + s] * (gs[c * inner + s] - acc[s]);        \
            }                                                                                        \
        }                                                                                            \
    }

SOFTMAX_KERNELS(float, f32, smk_expf, logf)
SOFTMAX_KERNELS(double, f64, smk_exp, log)

static void split_dims(const av_tensor *t, int dim, int64_t *outer, int64_t *C, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    *C = t->ndim ? t->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

av_tensor *av_softmax_raw(const av_tensor *x, int dim, bool lg) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) return av_cuda_softmax(x, dim, lg);
#endif
    av_tensor *xc = av_contiguous(x);
    if (!xc) return NULL;
    av_tensor *y = av_empty(x->ndim, x->shape, x->dtype);
    if (!y) { av_release(xc); return NULL; }
    int64_t outer, C, inner;
    split_dims(x, dim, &outer, &C, &inner);
    if (outer * C * inner > 0) {
        if (x->dtype == AV_F32) fwd_f32(av_data(xc), av_data(y), outer, C, inner, lg);
        else fwd_f64(av_data(xc), av_data(y), outer, C, inner, lg);
    }
    av_release(xc);
    return y;
}

av_tensor *av_softmax_backward_raw(const av_tensor *g, const av_tensor *y, int dim, bool lg) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(g) || av_is_cuda(y)) return av_cuda_softmax_backward(g, y, dim, lg);
#endif
    av_tensor *gc = g->dtype == y->dtype ? av_contiguous(g) : av_to_dtype(g, y->dtype);
    av_tensor *yc = gc ? av_contiguous(y) : NULL;
    av_tensor *gcc = yc ? av_contiguous(gc) : NULL;
    av_tensor *gx = gcc ? av_empty(y->ndim, y->shape, y->dtype) : NULL;
    if (gx) {
        int64_t outer, C, inner;
        split_dims(y, dim, &outer, &C, &inner);
        if (outer * C * inner > 0) {
            if (y->dtype == AV_F32) bwd_f32(av_data(gcc), av_data(yc), av_data(gx), outer, C, inner, lg);
            else bwd_f64(av_data(gcc), av_data(yc), av_data(gx), outer, C, inner, lg);
        }
    }
    av_release(gc);
    av_release(yc);
    av_release(gcc);
    return gx;
}

static av_tensor *softmax_common(const av_tensor *x, int dim, int dtype, bool lg) {
    const char *fn = lg ? "log_softmax" : "softmax";
    if (!x) { av_fail("%s: input is NULL", fn); return NULL; }
    if (dtype >= 0) {
        if (dtype != AV_F32 && dtype != AV_F64) {
            av_fail("%s: dtype must be float32 or float64, got %s", fn,
                    dtype < AV_NDTYPES ? av_dtype_name((av_dtype)dtype) : "an unknown dtype");
            return NULL;
        }
        av_tensor *xc = av_to_dtype(x, (av_dtype)dtype); /* differentiable */
        av_tensor *r = xc ? softmax_common(xc, dim, -1, lg) : NULL;
        av_release(xc);
        return r;
    }
    /* half types have CUDA kernels (runtime/ops/cuda/softmax.cu) */
    if (x->dtype != AV_F32 && x->dtype != AV_F64 && !(av_is_cuda(x) && av_dtype_is_float(x->dtype))) {
        av_fail("%s: expected a float32 or float64 tensor, got %s (pass {dtype = 'float32'} to convert)", fn,
                av_dtype_name(x->dtype));
        return NULL;
    }
    int n = x->ndim ? x->ndim : 1;
    if (dim < -n || dim >= n) {
        av_fail("%s: dimension %d out of range for a %d-d tensor (expected 1..%d or -%d..-1)", fn,
                dim >= 0 ? dim + 1 : dim, x->ndim, n, n);
        return NULL;
    }
    if (dim < 0) dim += n;
    av_tensor *out;
    NO_GRAD(out = av_softmax_raw(x, x->ndim ? dim : 0, lg));
    if (!out) return NULL;
    return av_ag_finish(out, av_ag_softmax(out, x, x->ndim ? dim : 0, lg));
}

av_tensor *av_softmax(const av_tensor *x, int dim, int dtype) { return softmax_common(x, dim, dtype, false); }
av_tensor *av_log_softmax(const av_tensor *x, int dim, int dtype) { return softmax_common(x, dim, dtype, true); }
