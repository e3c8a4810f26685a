/* Reduction strip kernels (see reduce.h for the calling convention).
 *
 * Each kernel handles three layouts of its n outputs:
 *  - rows (rs == 1): each output folds a contiguous run; float sums and
 *    max/min use explicit vectors with several accumulators because the
 *    compiler may not reassociate float reductions on its own;
 *  - columns (the outputs are adjacent in the input, sx == 1): whole input
 *    rows are folded into an accumulator array, which vectorises over the
 *    outputs and reads memory in long contiguous runs;
 *  - anything else: one strided loop per output.
 * Float sums go through float partials of bounded length into a double
 * total, so a 16M-element f32 sum stays within ~1e-7 relative, like
 * PyTorch's cascade sum, at the speed of a plain float loop. */
#include <math.h>
#include <stdbool.h>
#include "reduce.h"

typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4), may_alias));
typedef double v4d __attribute__((vector_size(32), aligned(8), may_alias));
typedef int64_t v4l __attribute__((vector_size(32), aligned(8), may_alias));

#define ROW_BLOCK 2048 /* row elements summed in float lanes before the double total */
#define COL_W 512      /* outputs folded together in column layout (accumulators stay in L1) */
#define COL_FLUSH 64   /* input rows folded in float before the double total */
#define MIN_(a, b) ((a) < (b) ? (a) : (b))

/* ---- float sums --------------------------------------------------------- */
static float row_sum_f32(const float *x, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += ROW_BLOCK) {
        int64_t e = MIN_(n, b + ROW_BLOCK), i = b;
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (; i + 32 <= e; i += 32) {
            a0 += *(const v8f *)(x + i);
            a1 += *(const v8f *)(x + i + 8);
            a2 += *(const v8f *)(x + i + 16);
            a3 += *(const v8f *)(x + i + 24);
        }
        v8f a = (a0 + a1) + (a2 + a3);
        float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        for (; i < e; i++) s += x[i];
        total += s;
    }
    return (float)total;
}

static double row_sum_f64(const double *x, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += ROW_BLOCK) {
        int64_t e = MIN_(n, b + ROW_BLOCK), i = b;
        v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (; i + 16 <= e; i += 16) {
            a0 += *(const v4d *)(x + i);
            a1 += *(const v4d *)(x + i + 4);
            a2 += *(const v4d *)(x + i + 8);
            a3 += *(const v4d *)(x + i + 12);
        }
        v4d a = (a0 + a1) + (a2 + a3);
        double s = (a[0] + a[1]) + (a[2] + a[3]);
        for (; i < e; i++) s += x[i];
        total += s;
    }
    return total;
}

/* column layout: four input rows per pass halve the accumulator traffic */
#define DEF_COL_SUM(name, T, A)                                                              \
    static void name(const T *x, int64_t rs, int64_t R, int64_t n, T *o, int64_t so) {      \
        T acc[COL_W];                                                                        \
        A tot[COL_W];                                                                        \
        for (int64_t j0 = 0; j0 < n; j0 += COL_W) {                                          \
            int64_t w = MIN_(COL_W, n - j0);                                                 \
            for (int64_t j = 0; j < w; j++) tot[j] = 0;                                      \
            for (int64_t r0 = 0; r0 < R; r0 += COL_FLUSH) {                                  \
                int64_t r1 = MIN_(R, r0 + COL_FLUSH), r = r0;                                \
                for (int64_t j = 0; j < w; j++) acc[j] = 0;                                  \
                for (; r + 4 <= r1; r += 4) {                                                \
                    const T *a = x + r * rs + j0, *b = a + rs, *c = b + rs, *d = c + rs;     \
                    for (int64_t j = 0; j < w; j++) acc[j] += (a[j] + b[j]) + (c[j] + d[j]); \
                }                                                                            \
                for (; r < r1; r++) {                                                        \
                    const T *a = x + r * rs + j0;                                            \
                    for (int64_t j = 0; j < w; j++) acc[j] += a[j];                          \
                }                                                                            \
                for (int64_t j = 0; j < w; j++) tot[j] += acc[j];                            \
            }                                                                                \
            for (int64_t j = 0; j < w; j++) o[(j0 + j) * so] = (T)tot[j];                    \
        }                                                                                    \
    }
DEF_COL_SUM(col_sum_f32, float, double)
DEF_COL_SUM(col_sum_f64, double, double)

#define DEF_SUM_FLOAT(name, T, ROWFN, COLFN)                                  \
    static void name(char **p, const int64_t *s, int64_t n, void *vc) {       \
        const av_red_ctx *c = vc;                                             \
        T *o = (T *)p[0];                                                     \
        const T *x = (const T *)p[1];                                         \
        int64_t R = c->R, rs = c->rs;                                         \
        if (rs == 1) {                                                        \
            for (int64_t i = 0; i < n; i++) o[i * s[0]] = (T)ROWFN(x + i * s[1], R); \
        } else if (s[1] == 1 && n > 1) {                                      \
            COLFN(x, rs, R, n, o, s[0]);                                      \
        } else {                                                              \
            for (int64_t i = 0; i < n; i++) {                                 \
                const T *r = x + i * s[1];                                    \
                double a = 0;                                                 \
                for (int64_t k = 0; k < R; k++) a += r[k * rs];               \
                o[i * s[0]] = (T)a;                                           \
            }                                                                 \
        }                                                                     \
    }
DEF_SUM_FLOAT(sum_f32, float, row_sum_f32, col_sum_f32)
DEF_SUM_FLOAT(sum_f64, double, row_sum_f64, col_sum_f64)

/* ---- float max / min: NaN wins, as in PyTorch ------------------------------ */
/* lane-wise select without the C ternary, which GCC lacks for vectors in C */
#define VSEL(VI, V, m, a, b) ((V)(((m) & (VI)(a)) | (~(m) & (VI)(b))))
#define GT(a, b) ((a) > (b))
#define LT(a, b) ((a) < (b))
#define DEF_ROW_EXT(name, T, V, VI, L, CMP)                                              \
    static T name(const T *x, int64_t n) {                                              \
        T m = x[0];                                                                     \
        bool nan = false;                                                               \
        int64_t i = 0;                                                                  \
        if (n >= 4 * L) {                                                               \
            V m0 = *(const V *)x, m1 = *(const V *)(x + L);                             \
            VI bad = (m0 != m0) | (m1 != m1);                                           \
            for (i = 2 * L; i + 2 * L <= n; i += 2 * L) {                               \
                V a = *(const V *)(x + i), b = *(const V *)(x + i + L);                 \
                VI ga = CMP(a, m0), gb = CMP(b, m1);                                    \
                m0 = VSEL(VI, V, ga, a, m0);                                            \
                m1 = VSEL(VI, V, gb, b, m1);                                            \
                bad |= (a != a) | (b != b);                                             \
            }                                                                           \
            VI g = CMP(m1, m0);                                                         \
            m0 = VSEL(VI, V, g, m1, m0);                                                \
            m = m0[0];                                                                  \
            for (int l = 0; l < L; l++) {                                               \
                if (CMP(m0[l], m)) m = m0[l];                                           \
                nan |= bad[l] != 0;                                                     \
            }                                                                           \
        }                                                                               \
        for (; i < n; i++) {                                                            \
            T v = x[i];                                                                 \
            if (CMP(v, m)) m = v;                                                       \
            nan |= v != v;                                                              \
        }                                                                               \
        if (nan)                                                                        \
            for (i = 0; i < n; i++)                                                     \
                if (x[i] != x[i]) return x[i];                                          \
        return m;                                                                       \
    }
DEF_ROW_EXT(row_max_f32, float, v8f, v8i, 8, GT)
DEF_ROW_EXT(row_min_f32, float, v8f, v8i, 8, LT)
DEF_ROW_EXT(row_max_f64, double, v4d, v4l, 4, GT)
DEF_ROW_EXT(row_min_f64, double, v4d, v4l, 4, LT)

/* ---- generic kernels ------------------------------------------------------
 * STEP folds input v into accumulator a; FIN turns a into the output. ROWFN
 * computes one contiguous row's accumulator (a vector routine or row_generic). */
#define DEF_RED(name, T, O, A, INIT, STEP, FIN, ROWFN)                                   \
    static inline A name##_row(const T *x, int64_t R) {                                  \
        A a = INIT;                                                                      \
        for (int64_t r = 0; r < R; r++) { T v = x[r]; STEP; }                            \
        return a;                                                                        \
    }                                                                                    \
    static void name(char **p, const int64_t *s, int64_t n, void *vc) {                 \
        const av_red_ctx *c = vc;                                                        \
        O *o = (O *)p[0];                                                                \
        const T *x = (const T *)p[1];                                                    \
        int64_t so = s[0], sx = s[1], R = c->R, rs = c->rs;                              \
        if (rs == 1) {                                                                   \
            for (int64_t i = 0; i < n; i++) { A a = ROWFN(x + i * sx, R); o[i * so] = (O)(FIN); } \
        } else if (sx == 1 && n > 1) {                                                   \
            A acc[COL_W];                                                                \
            for (int64_t j0 = 0; j0 < n; j0 += COL_W) {                                  \
                int64_t w = MIN_(COL_W, n - j0);                                         \
                for (int64_t j = 0; j < w; j++) acc[j] = INIT;                           \
                for (int64_t r = 0; r < R; r++) {                                        \
                    const T *row = x + r * rs + j0;                                      \
                    for (int64_t j = 0; j < w; j++) { A a = acc[j]; T v = row[j]; STEP; acc[j] = a; } \
                }                                                                        \
                for (int64_t j = 0; j < w; j++) { A a = acc[j]; o[(j0 + j) * so] = (O)(FIN); } \
            }                                                                            \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T *row = x + i * sx;                                               \
                A a = INIT;                                                              \
                for (int64_t r = 0; r < R; r++) { T v = row[r * rs]; STEP; }             \
                o[i * so] = (O)(FIN);                                                    \
            }                                                                            \
        }                                                                                \
    }

/* integer sums and products wrap in two's complement, like PyTorch */
#define INT_SUM(sfx, T) DEF_RED(sum_##sfx, T, int64_t, uint64_t, 0, a += (uint64_t)(int64_t)v, (int64_t)a, sum_##sfx##_row)
#define INT_PROD(sfx, T) DEF_RED(prod_##sfx, T, int64_t, uint64_t, 1, a *= (uint64_t)(int64_t)v, (int64_t)a, prod_##sfx##_row)
INT_SUM(i64, int64_t)
INT_SUM(i32, int32_t)
INT_SUM(u8, uint8_t)
INT_PROD(i64, int64_t)
INT_PROD(i32, int32_t)
INT_PROD(u8, uint8_t)
DEF_RED(prod_f32, float, float, float, 1, a *= v, a, prod_f32_row)
DEF_RED(prod_f64, double, double, double, 1, a *= v, a, prod_f64_row)

/* max/min start from the first element: R >= 1 is checked by the caller. The
 * step keeps a NaN accumulator and adopts a NaN input. */
#define FEXT_STEP(CMP) a = (CMP(v, a) || v != v) ? v : a
/* INIT must not depend on the output index in column layout, so float
 * max/min start from ±inf there; a row of -inf still gives -inf. */
DEF_RED(max_f32, float, float, float, -INFINITY, FEXT_STEP(GT), a, row_max_f32)
DEF_RED(min_f32, float, float, float, INFINITY, FEXT_STEP(LT), a, row_min_f32)
DEF_RED(max_f64, double, double, double, -INFINITY, FEXT_STEP(GT), a, row_max_f64)
DEF_RED(min_f64, double, double, double, INFINITY, FEXT_STEP(LT), a, row_min_f64)
#define INT_EXT(sfx, T, LO, HI)                                                   \
    DEF_RED(max_##sfx, T, T, T, LO, a = v > a ? v : a, a, max_##sfx##_row)       \
    DEF_RED(min_##sfx, T, T, T, HI, a = v < a ? v : a, a, min_##sfx##_row)
INT_EXT(i64, int64_t, INT64_MIN, INT64_MAX)
INT_EXT(i32, int32_t, INT32_MIN, INT32_MAX)
INT_EXT(u8, uint8_t, 0, UINT8_MAX)

#define BOOL_RED(sfx, T)                                                               \
    DEF_RED(all_##sfx, T, uint8_t, uint8_t, 1, a &= (v != 0), a, all_##sfx##_row)      \
    DEF_RED(any_##sfx, T, uint8_t, uint8_t, 0, a |= (v != 0), a, any_##sfx##_row)
BOOL_RED(f32, float)
BOOL_RED(f64, double)
BOOL_RED(i64, int64_t)
BOOL_RED(i32, int32_t)
BOOL_RED(u8, uint8_t)

/* ---- argmax / argmin ------------------------------------------------------
 * The first occurrence wins ties (strict comparison); the first NaN wins
 * over everything, and nothing replaces a NaN. */
#define ARG_BETTER(CMP, v, a) (CMP(v, a) || ((v) != (v) && (a) == (a)))
#define DEF_ARG(name, T, CMP)                                                            \
    static void name(char **p, const int64_t *s, int64_t n, void *vc) {                 \
        const av_red_ctx *c = vc;                                                        \
        T *o = (T *)p[0];                                                                \
        const T *x = (const T *)p[1];                                                    \
        int64_t *ix = (int64_t *)p[2];                                                   \
        int64_t so = s[0], sx = s[1], si = s[2], R = c->R, rs = c->rs;                   \
        if (sx == 1 && rs != 1 && n > 1) {                                               \
            T acc[COL_W];                                                                \
            int64_t at[COL_W];                                                           \
            for (int64_t j0 = 0; j0 < n; j0 += COL_W) {                                  \
                int64_t w = MIN_(COL_W, n - j0);                                         \
                for (int64_t j = 0; j < w; j++) { acc[j] = x[j0 + j]; at[j] = 0; }      \
                for (int64_t r = 1; r < R; r++) {                                        \
                    const T *row = x + r * rs + j0;                                      \
                    for (int64_t j = 0; j < w; j++) {                                    \
                        T v = row[j], a = acc[j];                                        \
                        bool b = ARG_BETTER(CMP, v, a);                                  \
                        acc[j] = b ? v : a;                                              \
                        at[j] = b ? r : at[j];                                           \
                    }                                                                    \
                }                                                                        \
                for (int64_t j = 0; j < w; j++) { o[(j0 + j) * so] = acc[j]; ix[(j0 + j) * si] = at[j]; } \
            }                                                                            \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T *row = x + i * sx;                                               \
                T a = row[0];                                                            \
                int64_t k = 0;                                                           \
                for (int64_t r = 1; r < R; r++) {                                        \
                    T v = row[r * rs];                                                   \
                    if (ARG_BETTER(CMP, v, a)) { a = v; k = r; }                         \
                }                                                                        \
                o[i * so] = a;                                                           \
                ix[i * si] = k;                                                          \
            }                                                                            \
        }                                                                                \
    }
#define ARGS(sfx, T) DEF_ARG(argmax_##sfx, T, GT) DEF_ARG(argmin_##sfx, T, LT)
ARGS(f32, float)
ARGS(f64, double)
ARGS(i64, int64_t)
ARGS(i32, int32_t)
ARGS(u8, uint8_t)

/* ---- squared deviations (var / std) ---------------------------------------- */
#define DEF_SQDEV(name, T)                                                               \
    static void name(char **p, const int64_t *s, int64_t n, void *vc) {                 \
        const av_red_ctx *c = vc;                                                        \
        T *o = (T *)p[0];                                                                \
        const T *x = (const T *)p[1], *mu = (const T *)p[2];                             \
        int64_t so = s[0], sx = s[1], sm = s[2], R = c->R, rs = c->rs;                   \
        if (sx == 1 && rs != 1 && n > 1) {                                               \
            double acc[COL_W];                                                           \
            T m[COL_W];                                                                  \
            for (int64_t j0 = 0; j0 < n; j0 += COL_W) {                                  \
                int64_t w = MIN_(COL_W, n - j0);                                         \
                for (int64_t j = 0; j < w; j++) { acc[j] = 0; m[j] = mu[(j0 + j) * sm]; } \
                for (int64_t r = 0; r < R; r++) {                                        \
                    const T *row = x + r * rs + j0;                                      \
                    for (int64_t j = 0; j < w; j++) { T d = row[j] - m[j]; acc[j] += d * d; } \
                }                                                                        \
                for (int64_t j = 0; j < w; j++) o[(j0 + j) * so] = (T)acc[j];            \
            }                                                                            \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T *row = x + i * sx;                                               \
                T m = mu[i * sm];                                                        \
                double total = 0;                                                        \
                for (int64_t b = 0; b < R; b += ROW_BLOCK) {                             \
                    int64_t e = MIN_(R, b + ROW_BLOCK);                                  \
                    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                    \
                    int64_t r = b;                                                       \
                    for (; r + 4 <= e; r += 4) {                                         \
                        T d0 = row[r * rs] - m, d1 = row[(r + 1) * rs] - m;              \
                        T d2 = row[(r + 2) * rs] - m, d3 = row[(r + 3) * rs] - m;        \
                        a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3;      \
                    }                                                                    \
                    for (; r < e; r++) { T d = row[r * rs] - m; a0 += d * d; }          \
                    total += (double)((a0 + a1) + (a2 + a3));                            \
                }                                                                        \
                o[i * so] = (T)total;                                                    \
            }                                                                            \
        }                                                                                \
    }
DEF_SQDEV(sqdev_f32, float)
DEF_SQDEV(sqdev_f64, double)

#define ROW5(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64, [AV_I64] = OP##_i64, [AV_I32] = OP##_i32, [AV_U8] = OP##_u8}
const av_strip_fn av_red_kernels[AV_RED_ANY + 1][AV_NDTYPES] = {
    [AV_RED_SUM] = ROW5(sum), [AV_RED_PROD] = ROW5(prod), [AV_RED_MAX] = ROW5(max), [AV_RED_MIN] = ROW5(min),
    [AV_RED_ARGMAX] = ROW5(argmax), [AV_RED_ARGMIN] = ROW5(argmin), [AV_RED_ALL] = ROW5(all),
    [AV_RED_ANY] = ROW5(any),
};
const av_strip_fn av_red_sqdev_kernels[AV_NDTYPES] = {[AV_F32] = sqdev_f32, [AV_F64] = sqdev_f64};
