/* Direct convolution for one input channel per group (depthwise, as in
 * MobileNet, with any channel multiplier): a GEMM per group would have one
 * row, so these loop over planes instead, one (image, channel) plane per
 * OpenMP iteration. The valid output ranges of every kernel tap (where the
 * tap reads inside the input) are worked out once per call, so the loops
 * over a plane carry no bounds tests. */
#include <stdlib.h>
#include <string.h>
#include "conv_impl.h"

typedef struct {
    int64_t k;              /* ki*kw + kj */
    int64_t oh0, oh1;       /* output rows whose input row is inside */
    int64_t ow0, ow1;       /* output columns whose input column is inside */
    int64_t row, col;       /* input row = oh*sh + row, column = ow*sw + col */
} tap;

/* first o >= 0 with o*s + off >= 0, and first o with o*s + off >= n (both clamped to [0, m]) */
static void valid_range(int64_t off, int64_t s, int64_t n, int64_t m, int64_t *lo, int64_t *hi) {
    *lo = off >= 0 ? 0 : (-off + s - 1) / s;
    *hi = n - off <= 0 ? 0 : (n - off + s - 1) / s;
    if (*hi > m) *hi = m;
    if (*lo > *hi) *lo = *hi;
}

/* the taps with some valid output, into t (kh*kw entries); returns how many */
static int64_t make_taps(const conv_geom *g, tap *t) {
    int64_t n = 0;
    for (int64_t ki = 0; ki < g->kh; ki++)
        for (int64_t kj = 0; kj < g->kw; kj++) {
            tap a = {.k = ki * g->kw + kj, .row = ki * g->dh - g->ph, .col = kj * g->dw - g->pw};
            valid_range(a.row, g->sh, g->H, g->Ho, &a.oh0, &a.oh1);
            valid_range(a.col, g->sw, g->W, g->Wo, &a.ow0, &a.ow1);
            if (a.oh1 > a.oh0 && a.ow1 > a.ow0) t[n++] = a;
        }
    return n;
}

static int plane_threads(const conv_geom *g) {
    return (double)g->N * g->Co * g->P * g->kh * g->kw > 65536 ? av_get_num_threads() : 1;
}

#define DEFINE_DEPTHWISE(T, S)                                                                          \
    static void fwd_##S(const conv_geom *g, const tap *taps, int64_t nt, const T *x, const T *w, const T *b, T *y) { \
        const int64_t KK = g->kh * g->kw, W = g->W, Wo = g->Wo, sh = g->sh, sw = g->sw;                 \
        _Pragma("omp parallel for num_threads(plane_threads(g)) schedule(static)")                      \
        for (int64_t i = 0; i < g->N * g->Co; i++) {                                                    \
            const int64_t n = i / g->Co, oc = i % g->Co;                                                \
            const T *xp = x + (n * g->C + oc / g->Cog) * g->HW, *wk = w + oc * KK;                      \
            T *yp = y + i * g->P;                                                                       \
            const T bv = b ? b[oc] : 0;                                                                 \
            for (int64_t p = 0; p < g->P; p++) yp[p] = bv;                                              \
            for (int64_t t = 0; t < nt; t++) {                                                          \
                const tap a = taps[t];                                                                  \
                const T wv = wk[a.k];                                                                   \
                for (int64_t oh = a.oh0; oh < a.oh1; oh++) {                                            \
                    const T *s = xp + (oh * sh + a.row) * W + a.col;                                    \
                    T *d = yp + oh * Wo;                                                                \
                    if (sw == 1)                                                                        \
                        for (int64_t o = a.ow0; o < a.ow1; o++) d[o] += wv * s[o];                      \
                    else                                                                                \
                        for (int64_t o = a.ow0; o < a.ow1; o++) d[o] += wv * s[o * sw];                 \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    static void bwd_data_##S(const conv_geom *g, const tap *taps, int64_t nt, const T *gy, const T *w, T *gx) { \
        const int64_t KK = g->kh * g->kw, W = g->W, Wo = g->Wo, sh = g->sh, sw = g->sw;                 \
        _Pragma("omp parallel for num_threads(plane_threads(g)) schedule(static)")                      \
        for (int64_t i = 0; i < g->N * g->C; i++) {                                                     \
            const int64_t n = i / g->C, c = i % g->C;                                                   \
            T *dp = gx + i * g->HW;                                                                     \
            memset(dp, 0, sizeof(T) * (size_t)g->HW);                                                   \
            for (int64_t j = 0; j < g->Cog; j++) {                                                      \
                const int64_t oc = c * g->Cog + j;                                                      \
                const T *gp = gy + (n * g->Co + oc) * g->P, *wk = w + oc * KK;                          \
                for (int64_t t = 0; t < nt; t++) {                                                      \
                    const tap a = taps[t];                                                              \
                    const T wv = wk[a.k];                                                               \
                    for (int64_t oh = a.oh0; oh < a.oh1; oh++) {                                        \
                        T *d = dp + (oh * sh + a.row) * W + a.col;                                      \
                        const T *s = gp + oh * Wo;                                                      \
                        if (sw == 1)                                                                    \
                            for (int64_t o = a.ow0; o < a.ow1; o++) d[o] += wv * s[o];                  \
                        else                                                                            \
                            for (int64_t o = a.ow0; o < a.ow1; o++) d[o * sw] += wv * s[o];             \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    /* per tap, products are first summed along output rows into acc[o] (a loop \
     * the compiler vectorises, unlike a scalar sum), then across acc */                                \
    static void bwd_weight_##S(const conv_geom *g, const tap *taps, int64_t nt, const T *gy, const T *x, T *gw) { \
        const int64_t KK = g->kh * g->kw, W = g->W, Wo = g->Wo, sh = g->sh, sw = g->sw;                 \
        _Pragma("omp parallel num_threads(plane_threads(g))") {                                         \
            T *acc = malloc(sizeof(T) * (size_t)(Wo > 0 ? Wo : 1));                                     \
            _Pragma("omp for schedule(static)")                                                         \
            for (int64_t oc = 0; oc < g->Co; oc++) {                                                    \
                const int64_t c = oc / g->Cog;                                                          \
                for (int64_t k = 0; k < KK; k++) gw[oc * KK + k] = 0;                                   \
                if (!acc) continue;                                                                     \
                for (int64_t t = 0; t < nt; t++) {                                                      \
                    const tap a = taps[t];                                                              \
                    for (int64_t o = a.ow0; o < a.ow1; o++) acc[o] = 0;                                 \
                    for (int64_t n = 0; n < g->N; n++) {                                                \
                        const T *xp = x + (n * g->C + c) * g->HW, *gp = gy + (n * g->Co + oc) * g->P;   \
                        for (int64_t oh = a.oh0; oh < a.oh1; oh++) {                                    \
                            const T *s = xp + (oh * sh + a.row) * W + a.col, *d = gp + oh * Wo;         \
                            if (sw == 1)                                                                \
                                for (int64_t o = a.ow0; o < a.ow1; o++) acc[o] += d[o] * s[o];          \
                            else                                                                        \
                                for (int64_t o = a.ow0; o < a.ow1; o++) acc[o] += d[o] * s[o * sw];     \
                        }                                                                               \
                    }                                                                                   \
                    double total = 0;                                                                   \
                    for (int64_t o = a.ow0; o < a.ow1; o++) total += acc[o];                            \
                    gw[oc * KK + a.k] = (T)total;                                                       \
                }                                                                                       \
            }                                                                                           \
            free(acc);                                                                                  \
        }                                                                                               \
    }

DEFINE_DEPTHWISE(float, f)
DEFINE_DEPTHWISE(double, d)

/* the taps of a call: on the stack for the usual small kernels */
#define WITH_TAPS(g, body)                                                                  \
    do {                                                                                    \
        tap small_[49];                                                                     \
        const int64_t kk_ = (g)->kh * (g)->kw;                                              \
        tap *taps = kk_ <= 49 ? small_ : malloc(sizeof(tap) * (size_t)kk_);                 \
        if (!taps) return av_fail("conv2d: out of memory");                                 \
        const int64_t ntaps = make_taps(g, taps);                                           \
        body;                                                                               \
        if (taps != small_) free(taps);                                                     \
    } while (0)

int conv_depthwise_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y) {
    WITH_TAPS(g, {
        if (g->dt == AV_F64) fwd_d(g, taps, ntaps, x, w, b, y);
        else fwd_f(g, taps, ntaps, x, w, b, y);
    });
    return 0;
}
int conv_depthwise_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx) {
    WITH_TAPS(g, {
        if (g->dt == AV_F64) bwd_data_d(g, taps, ntaps, gy, w, gx);
        else bwd_data_f(g, taps, ntaps, gy, w, gx);
    });
    return 0;
}
int conv_depthwise_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw) {
    WITH_TAPS(g, {
        if (g->dt == AV_F64) bwd_weight_d(g, taps, ntaps, gy, x, gw);
        else bwd_weight_f(g, taps, ntaps, gy, x, gw);
    });
    return 0;
}
