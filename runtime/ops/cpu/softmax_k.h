/* Private: the row and column building blocks of softmax, log_softmax and the
 * fused cross-entropy (runtime/ops/cpu/softmax.c, loss.c). Rows are
 * contiguous runs of n elements; reductions keep SMK_L independent lanes so
 * that the compiler vectorises them without reassociation flags. */
#ifndef AVIARY_CPU_SOFTMAX_K_H
#define AVIARY_CPU_SOFTMAX_K_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fast_math.h"

#define SMK_L 16

/* the shared vectorisable expf (fast_math.h) */
static inline float smk_expf(float x) { return av_fast_expf(x); }
static inline double smk_exp(double x) { return exp(x); }

/* max ignores NaN (a NaN row still ends NaN through the sum of exps) */
#define SMK_DEFINE(T, S, EXPF, LOGF)                                                           \
    static inline T smk_max_##S(const T *x, int64_t n) {                                       \
        T m[SMK_L];                                                                            \
        for (int j = 0; j < SMK_L; j++) m[j] = -INFINITY;                                      \
        int64_t i = 0;                                                                         \
        for (; i + SMK_L <= n; i += SMK_L)                                                     \
            for (int j = 0; j < SMK_L; j++) {                                                  \
                T v = x[i + j];                                                                \
                m[j] = v > m[j] ? v : m[j];                                                    \
            }                                                                                  \
        T r = -INFINITY;                                                                       \
        for (int j = 0; j < SMK_L; j++) r = m[j] > r ? m[j] : r;                               \
        for (; i < n; i++) r = x[i] > r ? x[i] : r;                                            \
        return r;                                                                              \
    }                                                                                          \
    static inline T smk_sum_##S(const T *x, int64_t n) {                                       \
        T s[SMK_L];                                                                            \
        for (int j = 0; j < SMK_L; j++) s[j] = 0;                                              \
        int64_t i = 0;                                                                         \
        for (; i + SMK_L <= n; i += SMK_L)                                                     \
            for (int j = 0; j < SMK_L; j++) s[j] += x[i + j];                                  \
        T r = 0;                                                                               \
        for (; i < n; i++) r += x[i];                                                          \
        for (int j = 0; j < SMK_L; j++) r += s[j];                                             \
        return r;                                                                              \
    }                                                                                          \
    static inline T smk_dot_##S(const T *x, const T *y, int64_t n) {                           \
        T s[SMK_L];                                                                            \
        for (int j = 0; j < SMK_L; j++) s[j] = 0;                                              \
        int64_t i = 0;                                                                         \
        for (; i + SMK_L <= n; i += SMK_L)                                                     \
            for (int j = 0; j < SMK_L; j++) s[j] += x[i + j] * y[i + j];                       \
        T r = 0;                                                                               \
        for (; i < n; i++) r += x[i] * y[i];                                                   \
        for (int j = 0; j < SMK_L; j++) r += s[j];                                             \
        return r;                                                                              \
    }                                                                                          \
    /* y = exp(x - m) */                                                                       \
    static inline void smk_exp_shift_##S(const T *restrict x, T *restrict y, int64_t n, T m) { \
        for (int64_t i = 0; i < n; i++) y[i] = EXPF(x[i] - m);                                 \
    }                                                                                          \
    /* max + log(sum(exp(x - max))), as log_softmax computes it (inf gives NaN) */                         \
    static inline T smk_lse_##S(const T *x, T *tmp, int64_t n) {                               \
        T m = smk_max_##S(x, n);                                                               \
        smk_exp_shift_##S(x, tmp, n, m);                                                       \
        return m + LOGF(smk_sum_##S(tmp, n));                                                  \
    }

SMK_DEFINE(float, f32, smk_expf, logf)
SMK_DEFINE(double, f64, smk_exp, log)

/* exp(x - m) stored in y; returns the sum (generic form) */
#define SMK_DEFINE_SUMS(T, S, EXPF)                                                              \
    static inline T smk_exp_shift_sum_generic_##S(const T *restrict x, T *restrict y, int64_t n, T m) { \
        smk_exp_shift_##S(x, y, n, m);                                                          \
        return smk_sum_##S(y, n);                                                               \
    }                                                                                           \
    static inline T smk_sumexp_generic_##S(const T *x, int64_t n, T m) {                         \
        T s[SMK_L];                                                                             \
        for (int j = 0; j < SMK_L; j++) s[j] = 0;                                               \
        int64_t i = 0;                                                                          \
        for (; i + SMK_L <= n; i += SMK_L)                                                      \
            for (int j = 0; j < SMK_L; j++) s[j] += EXPF(x[i + j] - m);                         \
        T r = 0;                                                                                \
        for (; i < n; i++) r += EXPF(x[i] - m);                                                 \
        for (int j = 0; j < SMK_L; j++) r += s[j];                                              \
        return r;                                                                               \
    }
SMK_DEFINE_SUMS(float, f32, smk_expf)
SMK_DEFINE_SUMS(double, f64, smk_exp)

static inline double smk_exp_shift_sum_f64(const double *restrict x, double *restrict y, int64_t n, double m) {
    return smk_exp_shift_sum_generic_f64(x, y, n, m);
}
static inline double smk_sumexp_f64(const double *x, int64_t n, double m) { return smk_sumexp_generic_f64(x, n, m); }

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* exp on 8 lanes for the arguments softmax produces (x - max <= 0): the
 * polynomial of smk_expf with one scaling factor; results below FLT_MIN
 * (x < -87.34) flush to 0, x > 88.7 saturates at 3.4e38 instead of inf, NaN
 * propagates. Every caller passes x - max or a log-probability. */
static inline __m256 smk_exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.7f), _mm256_max_ps(lo, x)); /* NaN stays NaN */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(res, _mm256_cmp_ps(x, lo, _CMP_NLT_UQ)); /* x < lo -> 0 (also -inf) */
}
static inline float smk_hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}
static inline float smk_hmax8(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}
/* max ignoring NaN: maxps returns its second operand when either is NaN */
static inline float smk_max_fast_f32(const float *x, int64_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), m3);
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    float r = smk_hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}
static inline float smk_exp_shift_sum_f32(const float *restrict x, float *restrict y, int64_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        __m256 e1 = smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e0 = smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e0);
        s0 = _mm256_add_ps(s0, e0);
    }
    float r = smk_hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) { y[i] = smk_expf(x[i] - m); r += y[i]; }
    return r;
}
static inline float smk_sumexp_f32(const float *x, int64_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_add_ps(s0, smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        s1 = _mm256_add_ps(s1, smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm)));
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    float r = smk_hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) r += smk_expf(x[i] - m);
    return r;
}
/* y = exp(x - m) */
static inline void smk_exp_shift_fast_f32(const float *restrict x, float *restrict y, int64_t n, float m) {
    __m256 vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, smk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    for (; i < n; i++) y[i] = smk_expf(x[i] - m);
}
#define smk_max_f32 smk_max_fast_f32
#define smk_exp_shift_f32 smk_exp_shift_fast_f32
#else
static inline float smk_exp_shift_sum_f32(const float *restrict x, float *restrict y, int64_t n, float m) {
    return smk_exp_shift_sum_generic_f32(x, y, n, m);
}
static inline float smk_sumexp_f32(const float *x, int64_t n, float m) { return smk_sumexp_generic_f32(x, n, m); }
#endif

/* max + log(sum(exp(x - max))), as log_softmax computes it (inf gives NaN) */
static inline float smk_lse2_f32(const float *x, int64_t n) {
    float m = smk_max_f32(x, n);
    return m + logf(smk_sumexp_f32(x, n, m));
}
static inline double smk_lse2_f64(const double *x, int64_t n) {
    double m = smk_max_f64(x, n);
    return m + log(smk_sumexp_f64(x, n, m));
}

#endif
