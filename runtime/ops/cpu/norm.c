/* Batch normalisation kernels (F.batch_norm), NCHW or (N, C).
 *
 * The input is seen as N x C planes of S = H*W (or any trailing dims)
 * contiguous elements. Training makes two passes: statistics, then
 * normalise. Statistics are gathered per channel by one thread (so results
 * do not depend on the thread count), as PyTorch does but with SIMD: the
 * mean, then the squared deviations from it (a channel's N*S values are
 * usually still in L2 for the second look). The backward pass has the same
 * shape: per-channel sums of g and g * (x - mean), then one fused pass for
 * the input gradient. (N, C) inputs (S == 1) are reduced down the columns in
 * double instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "aviary/ops.h"
#include "nn_kernels.h"
#include "iter.h"
#include "aviary/cuda.h"

#define CHUNK 2048
#define COLS 256 /* columns per block of the (N, C) kernels */

/* ---- per-channel sums ----------------------------------------------------------------------- */
/* Deviations are taken as (x - k) - d: k is a value of the element type
 * close to the mean (the channel's first value while the mean is being
 * found, then the mean rounded to the element type) and d the rest of the
 * mean, so x - k is exact for x near the mean and every sum carries errors
 * relative to the spread of x, not to |mean|. The sums run over a channel's
 * N planes with float SIMD accumulators that live across planes (small
 * planes cost no horizontal sums) and are flushed into a double total every
 * CHUNK elements. */
#define ACC_DECL(V, T) V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}; T r_ = 0; int64_t cnt_ = 0
#define ACC_FLUSH(HSUM, total)                                      \
    do {                                                            \
        total += (double)HSUM((a0 + a1) + (a2 + a3)) + (double)r_;  \
        a0 = a1 = a2 = a3 = (__typeof__(a0)){0};                    \
        r_ = 0;                                                     \
        cnt_ = 0;                                                   \
    } while (0)
/* runs EXPR(v) (v: a vector or a scalar of x's values at offset i) over channel c */
#define CHAN_LOOP(V, VL, HSUM, total, VEXPR, SEXPR)                                  \
    for (int64_t n = 0; n < N; n++) {                                                \
        const int64_t base = (n * C + c) * S;                                         \
        for (int64_t b = 0; b < S; b += CHUNK) {                                      \
            int64_t e = S - b < CHUNK ? S : b + CHUNK, i = b;                         \
            for (; i + 4 * VL <= e; i += 4 * VL) {                                    \
                a0 += VEXPR(base + i);                                                \
                a1 += VEXPR(base + i + VL);                                           \
                a2 += VEXPR(base + i + 2 * VL);                                       \
                a3 += VEXPR(base + i + 3 * VL);                                       \
            }                                                                         \
            for (; i + VL <= e; i += VL) a0 += VEXPR(base + i);                       \
            for (; i < e; i++) r_ += SEXPR(base + i);                                 \
            cnt_ += e - b;                                                            \
            if (cnt_ >= CHUNK) ACC_FLUSH(HSUM, total);                                \
        }                                                                             \
    }                                                                                 \
    ACC_FLUSH(HSUM, total)

#define DEF_CHAN(SFX, T, V, VL, HSUM)                                                            \
    /* sum over channel c of (x - k) */                                                          \
    static double chan_sum_##SFX(const T *x, int64_t N, int64_t C, int64_t S, int64_t c, T k) {  \
        double total = 0;                                                                        \
        ACC_DECL(V, T);                                                                          \
        CHAN_LOOP(V, VL, HSUM, total, VX_DEV, SX_DEV);                                           \
        return total;                                                                            \
    }                                                                                            \
    /* sum over channel c of ((x - k) - d)^2 */                                                  \
    static double chan_sq_##SFX(const T *x, int64_t N, int64_t C, int64_t S, int64_t c, T k, T d) { \
        double total = 0;                                                                        \
        ACC_DECL(V, T);                                                                          \
        CHAN_LOOP(V, VL, HSUM, total, VX_SQ, SX_SQ);                                             \
        return total;                                                                            \
    }                                                                                            \
    /* sums over channel c of g and of g * ((x - k) - d) */                                      \
    static void chan_g_##SFX(const T *g, const T *x, int64_t N, int64_t C, int64_t S, int64_t c, T k, T d, \
                             double *sg, double *sgx) {                                          \
        double total = 0;                                                                        \
        {                                                                                        \
            ACC_DECL(V, T);                                                                      \
            CHAN_LOOP(V, VL, HSUM, total, VG, SG);                                               \
        }                                                                                        \
        *sg = total;                                                                             \
        total = 0;                                                                               \
        {                                                                                        \
            ACC_DECL(V, T);                                                                      \
            CHAN_LOOP(V, VL, HSUM, total, VGX, SGX);                                             \
        }                                                                                        \
        *sgx = total;                                                                            \
    }
#define VX_DEV(o) (*(const __typeof__(a0) *)(x + (o)) - k)
#define SX_DEV(o) (x[o] - k)
#define VX_SQ(o) (((*(const __typeof__(a0) *)(x + (o)) - k) - d) * ((*(const __typeof__(a0) *)(x + (o)) - k) - d))
#define SX_SQ(o) (((x[o] - k) - d) * ((x[o] - k) - d))
#define VG(o) (*(const __typeof__(a0) *)(g + (o)))
#define SG(o) (g[o])
#define VGX(o) (*(const __typeof__(a0) *)(g + (o)) * ((*(const __typeof__(a0) *)(x + (o)) - k) - d))
#define SGX(o) (g[o] * ((x[o] - k) - d))

static inline float hsum8(av_v8f a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
static inline double hsum4(av_v4d a) { return (a[0] + a[1]) + (a[2] + a[3]); }
DEF_CHAN(f32, float, av_v8f, 8, hsum8)
DEF_CHAN(f64, double, av_v4d, 4, hsum4)

/* a thread's even share of the P planes, with the channel c of plane pl kept
 * by increment (no division per plane); opens a block closed by PLANES_END */
#define PLANES_BEGIN(P, C)                                                                       \
    {                                                                                            \
        const int64_t nth_ = omp_get_num_threads(), tid_ = omp_get_thread_num();                 \
        const int64_t p0_ = (P) * tid_ / nth_, p1_ = (P) * (tid_ + 1) / nth_;                     \
        int64_t c = (C) ? p0_ % (C) : 0;                                                         \
        for (int64_t pl = p0_; pl < p1_; pl++, c = (c + 1 == (C) ? 0 : c + 1)) {
#define PLANES_END \
        }          \
    }

/* ---- kernels over (N, C, S) with S > 1 ------------------------------------------------------- */
#define DEF_BN_KERNELS(SFX, T)                                                                               \
    /* two passes over each channel (the second mostly from cache): mean, then squared deviations */        \
    static void stats_##SFX(const T *x, int64_t N, int64_t C, int64_t S, double *mean, double *m2, int nt) { \
        const double M = (double)(N * S);                                                                    \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                              \
        for (int64_t c = 0; c < C; c++) {                                                                    \
            const T k0 = x[c * S];                                                                           \
            double mu = (double)k0 + chan_sum_##SFX(x, N, C, S, c, k0) / M;                                  \
            const T k = (T)mu, d = (T)(mu - (double)k);                                                      \
            mean[c] = mu;                                                                                    \
            m2[c] = chan_sq_##SFX(x, N, C, S, c, k, d);                                                      \
        }                                                                                                    \
    }                                                                                                        \
    /* y = (x - mean) * scale + shift, with (x - mean) taken as (x - m) - dm */                              \
    static void apply_##SFX(const T *x, T *y, int64_t N, int64_t C, int64_t S, const double *mean,           \
                            const double *scale, const double *shift, int nt) {                              \
        if (S == 1) { /* (N, C): rows */                                                                    \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                          \
            for (int64_t n = 0; n < N; n++)                                                                  \
                for (int64_t c = 0; c < C; c++) {                                                            \
                    const T m = (T)mean[c], dm = (T)(mean[c] - (double)m);                                   \
                    y[n * C + c] = ((x[n * C + c] - m) - dm) * (T)scale[c] + (T)shift[c];                    \
                }                                                                                            \
            return;                                                                                          \
        }                                                                                                    \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                                  \
        PLANES_BEGIN(N * C, C)                                                                               \
            const T m = (T)mean[c], dm = (T)(mean[c] - (double)m), k = (T)scale[c], b = (T)shift[c];         \
            const T *xp = x + pl * S;                                                                        \
            T *yp = y + pl * S;                                                                              \
            for (int64_t i = 0; i < S; i++) yp[i] = ((xp[i] - m) - dm) * k + b;                              \
        PLANES_END                                                                                           \
    }                                                                                                        \
    static void gstats_##SFX(const T *g, const T *x, int64_t N, int64_t C, int64_t S, const double *mean,    \
                             double *sg, double *sgx, int nt) {                                              \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                              \
        for (int64_t c = 0; c < C; c++) {                                                                    \
            const T m = (T)mean[c], dm = (T)(mean[c] - (double)m);                                           \
            chan_g_##SFX(g, x, N, C, S, c, m, dm, sg + c, sgx + c);                                          \
        }                                                                                                    \
    }                                                                                                        \
    /* gx = g * k + (x - mean) * q + r */                                                                    \
    static void gapply_##SFX(const T *g, const T *x, T *gx, int64_t N, int64_t C, int64_t S,                 \
                             const double *mean, const double *k, const double *q, const double *r, int nt) { \
        if (S == 1) { /* (N, C): rows */                                                                    \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                          \
            for (int64_t n = 0; n < N; n++)                                                                  \
                for (int64_t c = 0; c < C; c++) {                                                            \
                    const T m = (T)mean[c], dm = (T)(mean[c] - (double)m);                                   \
                    gx[n * C + c] = g[n * C + c] * (T)k[c] + (((x[n * C + c] - m) - dm) * (T)q[c] + (T)r[c]); \
                }                                                                                            \
            return;                                                                                          \
        }                                                                                                    \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                                  \
        PLANES_BEGIN(N * C, C)                                                                               \
            const T m = (T)mean[c], dm = (T)(mean[c] - (double)m), kk = (T)k[c], qq = (T)q[c], rr = (T)r[c]; \
            const T *gp = g + pl * S, *xp = x + pl * S;                                                      \
            T *op = gx + pl * S;                                                                             \
            if (qq == 0 && rr == 0)                                                                          \
                for (int64_t i = 0; i < S; i++) op[i] = gp[i] * kk;                                          \
            else                                                                                             \
                for (int64_t i = 0; i < S; i++) op[i] = gp[i] * kk + (((xp[i] - m) - dm) * qq + rr);         \
        PLANES_END                                                                                           \
    }                                                                                                        \
    /* (N, C): columns, double accumulators */                                                               \
    /* (N, C): down the columns in double, threads over blocks of COLS columns */                          \
    static void cstats_##SFX(const T *x, int64_t N, int64_t C, double *mean, double *m2, int nt) {           \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                              \
        for (int64_t c0 = 0; c0 < C; c0 += COLS) {                                                           \
            const int64_t c1 = C - c0 < COLS ? C : c0 + COLS;                                                \
            for (int64_t c = c0; c < c1; c++) mean[c] = m2[c] = 0;                                           \
            for (int64_t n = 0; n < N; n++)                                                                  \
                for (int64_t c = c0; c < c1; c++) mean[c] += (double)x[n * C + c];                           \
            for (int64_t c = c0; c < c1; c++) mean[c] /= (double)N;                                          \
            for (int64_t n = 0; n < N; n++)                                                                  \
                for (int64_t c = c0; c < c1; c++) {                                                          \
                    double d = (double)x[n * C + c] - mean[c];                                               \
                    m2[c] += d * d;                                                                          \
                }                                                                                            \
        }                                                                                                    \
    }                                                                                                        \
    static void cgstats_##SFX(const T *g, const T *x, int64_t N, int64_t C, const double *mean, double *sg,  \
                              double *sgx, int nt) {                                                         \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                              \
        for (int64_t c0 = 0; c0 < C; c0 += COLS) {                                                           \
            const int64_t c1 = C - c0 < COLS ? C : c0 + COLS;                                                \
            for (int64_t c = c0; c < c1; c++) sg[c] = sgx[c] = 0;                                            \
            for (int64_t n = 0; n < N; n++)                                                                  \
                for (int64_t c = c0; c < c1; c++) {                                                          \
                    double gv = (double)g[n * C + c];                                                        \
                    sg[c] += gv;                                                                             \
                    sgx[c] += gv * ((double)x[n * C + c] - mean[c]);                                         \
                }                                                                                            \
        }                                                                                                    \
    }
DEF_BN_KERNELS(f32, float)
DEF_BN_KERNELS(f64, double)

/* ---- argument checks --------------------------------------------------------------------- */
int64_t av_bn_channels(const av_tensor *x, const char *fn) {
    char b[96];
    if (!x) return av_fail("%s: expected an input tensor", fn);
    if (x->dtype != AV_F32 && x->dtype != AV_F64)
        return av_fail("%s: expected a float32 or float64 input, got %s", fn, av_dtype_name(x->dtype));
    if (x->ndim < 2)
        return av_fail("%s: expected an input of 2 or more dims (N, C, ...), got a %d-d tensor of size %s", fn,
                       x->ndim, av_shape_str(x, b, sizeof b));
    return x->shape[1];
}

static int check_param(const av_tensor *t, const char *what, const av_tensor *x, int64_t C) {
    char b[96];
    if (!t) return 0;
    /* CUDA inputs never get here (grad_nn.c sends them to cuDNN); a CUDA parameter with a CPU input is an error */
    if (av_check_same_device("batch_norm", x, "input", t, what)) return -1;
    if (t->dtype != AV_F32 && t->dtype != AV_F64)
        return av_fail("batch_norm: %s must be float32 or float64, got %s", what, av_dtype_name(t->dtype));
    if (av_numel(t) != C)
        return av_fail("batch_norm: %s has %lld entries, expected %lld (channels of input %s)", what,
                       (long long)av_numel(t), (long long)C, av_shape_str(x, b, sizeof b));
    return 0;
}

/* the C entries of t (any layout, float32/float64) as doubles */
static int read_vec(const av_tensor *t, double *out, int64_t C) {
    av_tensor *c = av_contiguous(t);
    if (!c) return -1;
    if (c->dtype == AV_F32) {
        const float *p = av_data(c);
        for (int64_t i = 0; i < C; i++) out[i] = p[i];
    } else {
        const double *p = av_data(c);
        for (int64_t i = 0; i < C; i++) out[i] = p[i];
    }
    av_release(c);
    return 0;
}

/* t = (1 - momentum) * t + momentum * v, in place */
static int update_running(av_tensor *t, const double *v, int64_t C, double momentum) {
    double *cur = malloc(sizeof(double) * (size_t)(C ? C : 1));
    av_tensor *tmp = av_empty(t->ndim, t->shape, t->dtype);
    int rc = -1;
    if (!cur || !tmp || read_vec(t, cur, C)) goto done;
    for (int64_t i = 0; i < C; i++) {
        double r = (1 - momentum) * cur[i] + momentum * v[i];
        if (tmp->dtype == AV_F32) ((float *)av_data(tmp))[i] = (float)r;
        else ((double *)av_data(tmp))[i] = r;
    }
    rc = av_copy_(t, tmp); /* bumps t's version */
done:
    if (rc && !cur) av_fail("out of memory");
    free(cur);
    av_release(tmp);
    return rc;
}

static int nthreads_for(int64_t work) {
    int nt = av_get_num_threads();
    return work < AV_NN_GRAIN ? 1 : nt;
}

/* ---- forward ------------------------------------------------------------------------------ */
av_tensor *av_batch_norm_raw(const av_tensor *x, av_tensor *rm, av_tensor *rv, const av_tensor *weight,
                             const av_tensor *bias, bool training, double momentum, double eps, double *mean,
                             double *invstd, double *w) {
    char b[96];
    int64_t C = av_bn_channels(x, "batch_norm");
    if (C < 0) return NULL;
    if (check_param(rm, "running_mean", x, C) || check_param(rv, "running_var", x, C) ||
        check_param(weight, "weight", x, C) || check_param(bias, "bias", x, C))
        return NULL;
    if (!training && (!rm || !rv)) {
        av_fail("batch_norm: running_mean and running_var are required in evaluation mode (training = false)");
        return NULL;
    }
    if (!isfinite(eps) || eps < 0) {
        av_fail("batch_norm: eps must be a non-negative number, got %g", eps);
        return NULL;
    }
    int64_t N = x->shape[0], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    int64_t M = N * S; /* values per channel */
    if (training && M <= 1) {
        av_fail("batch_norm: expected more than 1 value per channel when training, got input of size %s",
                av_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (training) {
        if (!isfinite(momentum)) {
            av_fail("batch_norm: momentum must be a finite number, got %g", momentum);
            return NULL;
        }
        for (int k = 0; k < 2; k++) {
            av_tensor *r = k ? rv : rm;
            if (r && av_has_internal_overlap(r)) {
                av_fail("batch_norm: %s is expanded (several entries share memory) and cannot be updated in place",
                        k ? "running_var" : "running_mean");
                return NULL;
            }
        }
    }
    av_tensor *xc = av_contiguous(x);
    av_tensor *y = xc ? av_empty(x->ndim, x->shape, x->dtype) : NULL;
    double *buf = malloc(sizeof(double) * (size_t)(3 * C + 1));
    if (!xc || !y || !buf) {
        if (!buf) av_fail("out of memory");
        goto fail;
    }
    double *m2 = buf, *scale = buf + C, *shift = buf + 2 * C;
    int nt = nthreads_for(N * C * S);
    if (weight) { if (read_vec(weight, w, C)) goto fail; }
    else for (int64_t c = 0; c < C; c++) w[c] = 1;
    if (bias) { if (read_vec(bias, shift, C)) goto fail; }
    else for (int64_t c = 0; c < C; c++) shift[c] = 0;
    if (training) {
        if (S == 1) {
            if (x->dtype == AV_F32) cstats_f32(av_data(xc), N, C, mean, m2, nt);
            else cstats_f64(av_data(xc), N, C, mean, m2, nt);
        } else {
            if (x->dtype == AV_F32) stats_f32(av_data(xc), N, C, S, mean, m2, nt);
            else stats_f64(av_data(xc), N, C, S, mean, m2, nt);
        }
        for (int64_t c = 0; c < C; c++) invstd[c] = 1.0 / sqrt(m2[c] / (double)M + eps);
    } else {
        if (read_vec(rm, mean, C) || read_vec(rv, m2, C)) goto fail;
        for (int64_t c = 0; c < C; c++) invstd[c] = 1.0 / sqrt(m2[c] + eps);
    }
    for (int64_t c = 0; c < C; c++) scale[c] = w[c] * invstd[c];
    if (N * C * S > 0) {
        if (x->dtype == AV_F32) apply_f32(av_data(xc), av_data(y), N, C, S, mean, scale, shift, nt);
        else apply_f64(av_data(xc), av_data(y), N, C, S, mean, scale, shift, nt);
    }
    if (training) {
        /* running_var takes the unbiased variance */
        for (int64_t c = 0; c < C; c++) m2[c] /= (double)(M - 1);
        if (rm && update_running(rm, mean, C, momentum)) goto fail;
        if (rv && update_running(rv, m2, C, momentum)) goto fail;
    }
    free(buf);
    av_release(xc);
    return y;
fail:
    free(buf);
    av_release(xc);
    av_release(y);
    return NULL;
}

/* ---- backward ----------------------------------------------------------------------------- */
int av_batch_norm_backward_raw(const av_tensor *x, const av_tensor *g, const double *mean, const double *invstd,
                               const double *w, bool training, bool want_gx, av_tensor **gx, double *sum_g,
                               double *sum_gxc) {
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    int64_t M = N * S;
    if (gx) *gx = NULL;
    bool stats = sum_g || (want_gx && training);
    av_tensor *xc = av_contiguous(x), *gc = g->dtype == x->dtype ? av_contiguous(g) : av_to_dtype(g, x->dtype);
    av_tensor *gcc = gc ? av_contiguous(gc) : NULL;
    double *buf = malloc(sizeof(double) * (size_t)(5 * C + 1));
    int rc = -1;
    if (!xc || !gcc || !buf) {
        if (!buf) av_fail("out of memory");
        goto done;
    }
    double *sg = sum_g ? sum_g : buf + 3 * C, *sgx = sum_gxc ? sum_gxc : buf + 4 * C;
    int nt = nthreads_for(N * C * S);
    if (stats) {
        if (M == 0) {
            for (int64_t c = 0; c < C; c++) sg[c] = sgx[c] = 0;
        } else if (S == 1) {
            if (x->dtype == AV_F32) cgstats_f32(av_data(gcc), av_data(xc), N, C, mean, sg, sgx, nt);
            else cgstats_f64(av_data(gcc), av_data(xc), N, C, mean, sg, sgx, nt);
        } else {
            if (x->dtype == AV_F32) gstats_f32(av_data(gcc), av_data(xc), N, C, S, mean, sg, sgx, nt);
            else gstats_f64(av_data(gcc), av_data(xc), N, C, S, mean, sg, sgx, nt);
        }
    }
    if (want_gx) {
        double *k = buf, *q = buf + C, *r = buf + 2 * C;
        for (int64_t c = 0; c < C; c++) {
            k[c] = w[c] * invstd[c];
            if (training) {
                /* gx = k * (g - mean(g) - xhat * mean(g * xhat)) */
                q[c] = -k[c] * sgx[c] * invstd[c] * invstd[c] / (double)M;
                r[c] = -k[c] * sg[c] / (double)M;
            } else {
                q[c] = r[c] = 0;
            }
        }
        *gx = av_empty(x->ndim, x->shape, x->dtype);
        if (!*gx) goto done;
        if (M > 0 && C > 0) {
            if (x->dtype == AV_F32) gapply_f32(av_data(gcc), av_data(xc), av_data(*gx), N, C, S, mean, k, q, r, nt);
            else gapply_f64(av_data(gcc), av_data(xc), av_data(*gx), N, C, S, mean, k, q, r, nt);
        }
    }
    rc = 0;
done:
    free(buf);
    av_release(xc);
    av_release(gc);
    av_release(gcc);
    return rc;
}
