/* Random numbers from a counter-based generator (Philox-4x32-10): element i of
 * a call draws from counter (offset + i), so values do not depend on how many
 * threads fill the tensor, and one seed reproduces a whole run. */
#include <math.h>
#include <omp.h>
#include "aviary/tensor.h"
#include "aviary/philox.h"
#include "aviary/backend.h"
#include "../ops/cpu/iter.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../ops/cuda/cuda_ops.h"
#endif

static uint64_t g_seed = 67280421310721ULL;
static uint64_t g_offset = 0; /* counters consumed so far */

void av_manual_seed(uint64_t seed) { g_seed = seed; g_offset = 0; }
uint64_t av_initial_seed(void) { return g_seed; }

/* The whole generator state is (seed, offset): 16 bytes, each u64 little-endian. */
#define AV_RNG_STATE_BYTES 16

av_tensor *av_get_rng_state(void) {
    uint8_t b[AV_RNG_STATE_BYTES];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(g_seed >> (8 * i));
        b[8 + i] = (uint8_t)(g_offset >> (8 * i));
    }
    int64_t n = AV_RNG_STATE_BYTES;
    return av_from_data(1, &n, AV_U8, b);
}

int av_set_rng_state(const av_tensor *t) {
    if (!t) return av_fail("set_rng_state: expected a tensor, got NULL");
    if (t->dtype != AV_U8)
        return av_fail("set_rng_state: expected a uint8 tensor of %d elements (from get_rng_state), got dtype %s",
                       AV_RNG_STATE_BYTES, av_dtype_name(t->dtype));
    if (av_numel(t) != AV_RNG_STATE_BYTES)
        return av_fail("set_rng_state: expected a uint8 tensor of %d elements (from get_rng_state), got %lld elements",
                       AV_RNG_STATE_BYTES, (long long)av_numel(t));
    if (t->storage->device.type != AV_CPU)
        return av_fail("set_rng_state: expected a CPU tensor");
    av_tensor *c = av_contiguous(t);
    if (!c) return -1;
    const uint8_t *b = (const uint8_t *)av_data(c);
    uint64_t seed = 0, offset = 0;
    for (int i = 0; i < 8; i++) {
        seed |= (uint64_t)b[i] << (8 * i);
        offset |= (uint64_t)b[8 + i] << (8 * i);
    }
    av_release(c);
    g_seed = seed;
    g_offset = offset;
    return 0;
}

/* one Philox block for a 64-bit counter under the 64-bit seed */
static inline void philox(uint64_t counter, uint64_t key, uint32_t out[4]) {
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    const uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    av_philox4x32(k, c, out);
}

/* uniform double in [0,1) with 53 random bits */
static inline double u01(uint32_t a, uint32_t b) {
    return (double)(((uint64_t)a << 21) ^ (b >> 11)) * 0x1.0p-53;
}

typedef enum { DIST_UNIFORM, DIST_NORMAL, DIST_INT } dist_kind;
typedef struct { dist_kind kind; double a, b; int64_t lo, span; } dist;

static double draw(const dist *d, uint64_t counter) {
    uint32_t r[4];
    philox(counter, g_seed, r);
    switch (d->kind) {
    case DIST_UNIFORM: return d->a + (d->b - d->a) * u01(r[0], r[1]);
    case DIST_NORMAL: {
        double u1 = u01(r[0], r[1]), u2 = u01(r[2], r[3]);
        return d->a + d->b * sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
    }
    case DIST_INT: {
        uint64_t x = ((uint64_t)r[0] << 32) | r[1];
        return (double)(d->lo + (int64_t)(x % (uint64_t)d->span));
    }
    }
    return 0;
}

/* Uniform and normal values come in pairs: logical element i (row-major)
 * is component i % 2 of the pair drawn from counter (base + i / 2); one
 * Philox block gives both uniforms of a pair, and Box-Muller's cosine and
 * sine give both normals. Layout and thread count do not change a value. */
static inline void draw_pair(const dist *d, uint64_t counter, double out[2]) {
    uint32_t r[4];
    philox(counter, g_seed, r);
    double u1 = u01(r[0], r[1]), u2 = u01(r[2], r[3]);
    if (d->kind == DIST_UNIFORM) {
        out[0] = d->a + (d->b - d->a) * u1;
        out[1] = d->a + (d->b - d->a) * u2;
    } else {
        double rad = d->b * sqrt(-2.0 * log(1.0 - u1)), s, c;
        sincos(6.283185307179586 * u2, &s, &c);
        out[0] = d->a + rad * c;
        out[1] = d->a + rad * s;
    }
}

/* uniform samples stay below `to` after rounding to T, as PyTorch's [from, to) */
#define AV_RNG_PAIR_LOOP(T, NEXTDOWN)                                            \
    do {                                                                         \
        T *p = (T *)t->storage->data + t->offset;                                \
        const T hi = (T)d->b, below = NEXTDOWN(hi, (T)d->a);                     \
        const bool cap = d->kind == DIST_UNIFORM && d->b > d->a;                 \
        int64_t npairs = (n + 1) / 2;                                            \
        _Pragma("omp parallel for if (n > AV_PARALLEL_GRAIN) schedule(static)") \
        for (int64_t j = 0; j < npairs; j++) {                                   \
            double v[2];                                                         \
            draw_pair(d, base + (uint64_t)j, v);                                 \
            T v0 = (T)v[0], v1 = (T)v[1];                                        \
            if (cap && v0 >= hi) v0 = below;                                     \
            if (cap && v1 >= hi) v1 = below;                                     \
            p[2 * j] = v0;                                                       \
            if (2 * j + 1 < n) p[2 * j + 1] = v1;                                \
        }                                                                        \
    } while (0)

static int fill_dist(av_tensor *t, const dist *d);

/* a device tensor draws the same stream: floats on the GPU into a contiguous
 * buffer, integers on the host (randint is for labels and indices, small) */
static int fill_dist_cuda(av_tensor *t, const dist *d) {
    av_tensor *c = av_is_contiguous(t) ? av_retain(t) : av_empty_like_on(t);
    if (!c) return -1;
    int rc;
    if (d->kind == DIST_INT) {
        av_tensor *h = av_empty(t->ndim, t->shape, t->dtype);
        rc = h ? fill_dist(h, d) : -1;
        if (!rc) rc = av_copy_(c, h);
        av_release(h);
    } else {
        if (t->dtype != AV_F32 && t->dtype != AV_F64 && t->dtype != AV_F16 && t->dtype != AV_BF16) {
            av_release(c);
            return av_fail("%s: expected a floating point tensor, got %s", d->kind == DIST_NORMAL ? "normal_" : "uniform_",
                           av_dtype_name(t->dtype));
        }
        uint64_t base = g_offset;
        g_offset += (uint64_t)av_numel(t);
#ifdef AV_WITH_CUDA
        rc = av_cuda_random_fill(c, d->kind == DIST_NORMAL ? 1 : 0, d->a, d->b, g_seed, base);
#else
        (void)base;
        rc = av_fail("random: no CUDA in this build");
#endif
    }
    if (!rc && c != t) rc = av_copy_(t, c);
    av_release(c);
    return rc;
}

/* fills t (any layout) element by element in row-major order */
static int fill_dist(av_tensor *t, const dist *d) {
    if (av_is_cuda(t)) {
        for (int k = 0; k < t->ndim; k++)
            if (t->stride[k] == 0 && t->shape[k] > 1)
                return av_fail("%s: the tensor is expanded (several elements share memory); fill a contiguous copy",
                               d->kind == DIST_NORMAL ? "normal_" : "uniform_");
        return fill_dist_cuda(t, d);
    }
    const char *fn = d->kind == DIST_NORMAL ? "normal_" : "uniform_";
    if (d->kind != DIST_INT && t->dtype != AV_F32 && t->dtype != AV_F64 && t->dtype != AV_F16 && t->dtype != AV_BF16)
        return av_fail("%s: expected a floating point tensor, got %s", fn, av_dtype_name(t->dtype));
    for (int k = 0; k < t->ndim; k++)
        if (t->stride[k] == 0 && t->shape[k] > 1)
            return av_fail("%s: the tensor is expanded (several elements share memory); fill a contiguous copy", fn);
    int64_t n = av_numel(t);
    uint64_t base = g_offset;
    g_offset += (uint64_t)n;
    size_t es = av_dtype_size(t->dtype);
    char *p0 = (char *)t->storage->data;
    bool contig = av_is_contiguous(t);
    bool paired = d->kind != DIST_INT;
    if (paired && contig && t->dtype == AV_F32) { AV_RNG_PAIR_LOOP(float, nextafterf); return 0; }
    if (paired && contig && t->dtype == AV_F64) { AV_RNG_PAIR_LOOP(double, nextafter); return 0; }
#pragma omp parallel for if (n > AV_PARALLEL_GRAIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int64_t off = t->offset;
        if (contig) off += i;
        else {
            int64_t rem = i;
            for (int k = t->ndim - 1; k >= 0; k--) {
                off += (rem % t->shape[k]) * t->stride[k];
                rem /= t->shape[k];
            }
        }
        double v;
        if (paired) {
            double pr[2];
            draw_pair(d, base + (uint64_t)(i / 2), pr);
            v = pr[i & 1];
        } else {
            v = draw(d, base + (uint64_t)i);
        }
        av_store_elem(t->dtype, p0 + off * es, v);
    }
    return 0;
}

int av_uniform_(av_tensor *t, double lo, double hi) {
    if (!(lo <= hi)) return av_fail("uniform_: expected low <= high, got %g and %g", lo, hi);
    dist d = {DIST_UNIFORM, lo, hi, 0, 0};
    return fill_dist(t, &d);
}

int av_normal_(av_tensor *t, double mean, double std) {
    if (!(std >= 0)) return av_fail("normal_: expected std >= 0, got %g", std);
    dist d = {DIST_NORMAL, mean, std, 0, 0};
    return fill_dist(t, &d);
}

static av_tensor *float_only(const char *fn, int ndim, const int64_t *shape, av_dtype dt) {
    if (!av_dtype_is_float(dt)) {
        av_fail("%s: dtype %s is not a floating point type", fn, av_dtype_name(dt));
        return NULL;
    }
    return av_empty(ndim, shape, dt);
}

av_tensor *av_rand(int ndim, const int64_t *shape, av_dtype dt) {
    av_tensor *t = float_only("rand", ndim, shape, dt);
    if (t) av_uniform_(t, 0, 1);
    return t;
}

av_tensor *av_randn(int ndim, const int64_t *shape, av_dtype dt) {
    av_tensor *t = float_only("randn", ndim, shape, dt);
    if (t) av_normal_(t, 0, 1);
    return t;
}

av_tensor *av_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, av_dtype dt) {
    if (high <= low) {
        av_fail("randint: expected low < high, got low=%lld high=%lld", (long long)low, (long long)high);
        return NULL;
    }
    av_tensor *t = av_empty(ndim, shape, dt);
    if (!t) return NULL;
    dist d = {DIST_INT, 0, 0, low, high - low};
    fill_dist(t, &d);
    return t;
}

av_tensor *av_randperm(int64_t n, av_dtype dt) {
    if (n < 0) { av_fail("randperm: n must be non-negative, got %lld", (long long)n); return NULL; }
    av_tensor *t = av_empty(1, &n, AV_I64);
    if (!t) return NULL;
    int64_t *p = av_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    /* Fisher-Yates with one counter per swap */
    uint64_t base = g_offset;
    g_offset += (uint64_t)n;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t r[4];
        philox(base + (uint64_t)i, g_seed, r);
        int64_t j = (int64_t)((((uint64_t)r[0] << 32) | r[1]) % (uint64_t)(i + 1));
        int64_t tmp = p[i]; p[i] = p[j]; p[j] = tmp;
    }
    if (dt == AV_I64) return t;
    av_tensor *c = av_to_dtype(t, dt);
    av_release(t);
    return c;
}
