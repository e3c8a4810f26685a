/* Ops along one dim that keep its length: cumsum, cumprod, sort, topk.
 *
 * Each works line by line: an av_iter over the input's shape with the dim set
 * to 1 hands a kernel n lines at a time (see reduce.h), and the kernel walks
 * each line's L elements with the dim's strides. When the lines are adjacent
 * in memory (the dim is not the innermost one), scans run across lines so
 * they vectorise. */
#include <stdlib.h>
#include <string.h>
#include "reduce.h"
#include "aviary/cuda.h"

typedef struct {
    int64_t L;          /* line length */
    int64_t ds[3];      /* each operand's stride along the dim */
    int64_t k;          /* topk: how many to keep */
    bool desc;          /* sort order: largest first */
    volatile int oom;   /* set by a kernel that could not get scratch memory */
} line_ctx;

#define SCAN_W 256 /* lines scanned together when adjacent */
#define MIN_(a, b) ((a) < (b) ? (a) : (b))

/* ---- cumsum / cumprod ------------------------------------------------------
 * Floats accumulate in double and integers in wrapping 64-bit arithmetic,
 * as PyTorch does on the CPU. */
#define DEF_SCAN(name, T, O, A, INIT, OP)                                                    \
    static void name(char **p, const int64_t *s, int64_t n, void *vc) {                     \
        const line_ctx *c = vc;                                                              \
        O *o = (O *)p[0];                                                                    \
        const T *x = (const T *)p[1];                                                        \
        int64_t L = c->L, os = c->ds[0], xs = c->ds[1];                                      \
        if (s[0] == 1 && s[1] == 1 && n > 1) {                                               \
            A acc[SCAN_W];                                                                   \
            for (int64_t j0 = 0; j0 < n; j0 += SCAN_W) {                                     \
                int64_t w = MIN_(SCAN_W, n - j0);                                            \
                for (int64_t j = 0; j < w; j++) acc[j] = INIT;                               \
                for (int64_t r = 0; r < L; r++) {                                            \
                    const T *xr = x + r * xs + j0;                                           \
                    O *orow = o + r * os + j0;                                               \
                    for (int64_t j = 0; j < w; j++) { acc[j] = acc[j] OP (A)xr[j]; orow[j] = (O)acc[j]; } \
                }                                                                            \
            }                                                                                \
        } else {                                                                             \
            for (int64_t i = 0; i < n; i++) {                                                \
                const T *xl = x + i * s[1];                                                  \
                O *ol = o + i * s[0];                                                        \
                A a = INIT;                                                                  \
                for (int64_t r = 0; r < L; r++) { a = a OP (A)xl[r * xs]; ol[r * os] = (O)a; } \
            }                                                                                \
        }                                                                                    \
    }
#define SCANS(OPN, OP, INIT)                                                  \
    DEF_SCAN(OPN##_f32, float, float, double, INIT, OP)                       \
    DEF_SCAN(OPN##_f64, double, double, double, INIT, OP)                     \
    DEF_SCAN(OPN##_i64, int64_t, int64_t, uint64_t, INIT, OP)                 \
    DEF_SCAN(OPN##_i32, int32_t, int64_t, uint64_t, INIT, OP)                 \
    DEF_SCAN(OPN##_u8, uint8_t, int64_t, uint64_t, INIT, OP)
SCANS(cumsum, +, 0)
SCANS(cumprod, *, 1)

#define ROW5(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64, [AV_I64] = OP##_i64, [AV_I32] = OP##_i32, [AV_U8] = OP##_u8}
static const av_strip_fn cumsum_kernels[AV_NDTYPES] = ROW5(cumsum);
static const av_strip_fn cumprod_kernels[AV_NDTYPES] = ROW5(cumprod);

/* the iteration over t's lines along dim: operands are header copies with
 * the dim set to size 1; ctx gets each operand's stride along the dim */
static void run_lines(int nops, av_tensor *const *ops, int dim, av_strip_fn fn, line_ctx *c, int64_t cost) {
    av_tensor hdr[3];
    const av_tensor *hp[3];
    for (int k = 0; k < nops; k++) {
        hdr[k] = *ops[k];
        c->ds[k] = ops[k]->stride[dim];
        hdr[k].shape[dim] = 1;
        hp[k] = &hdr[k];
    }
    av_iter it;
    av_iter_init(&it, hdr[0].ndim, hdr[0].shape, nops, hp);
    av_red_run(&it, fn, c, cost);
}

/* a 0-d tensor as a 1-element line: the ops treat it as 1-d and the result is made 0-d again */
static av_tensor as_line(const av_tensor *t) {
    av_tensor one = *t;
    if (t->ndim == 0) {
        one.ndim = 1;
        one.shape[0] = one.stride[0] = 1;
    }
    return one;
}

/* sorting and scans of device tensors run on the host (no GPU kernels yet):
 * one copy each way, the results back on the input's device */
static av_tensor *to_cpu(const av_tensor *t) { return av_to_device(t, (av_device){AV_CPU, 0}); }
static int back_to(const av_tensor *like, av_tensor **a, av_tensor **b) {
    for (int k = 0; k < 2; k++) {
        av_tensor **p = k ? b : a;
        if (!p || !*p) continue;
        av_tensor *d = av_to_device(*p, av_device_of(like));
        av_release(*p);
        *p = d;
        if (!d) {
            if (k == 0 && b) { av_release(*b); *b = NULL; }
            return -1;
        }
    }
    return 0;
}

static av_tensor *scan(const char *fn, const av_strip_fn *kernels, const av_tensor *t, int dim) {
    if (av_is_cuda(t)) {
        av_tensor *h = to_cpu(t), *r = h ? scan(fn, kernels, h, dim) : NULL;
        av_release(h);
        if (r && back_to(t, &r, NULL)) return NULL;
        return r;
    }
    if (av_red_check_dtype(fn, t->dtype)) return NULL;
    int d = av_wrap_dim(dim, t->ndim, fn);
    if (d < 0) return NULL;
    av_tensor x = as_line(t);
    av_tensor *out = av_empty(x.ndim, x.shape, av_dtype_is_float(t->dtype) ? t->dtype : AV_I64);
    if (!out) return NULL;
    line_ctx c = {.L = x.shape[d]};
    av_tensor *ops[2] = {out, &x};
    run_lines(2, ops, d, kernels[t->dtype], &c, c.L);
    out->ndim = t->ndim;
    return out;
}

av_tensor *av_cumsum_raw(const av_tensor *t, int dim) { return scan("cumsum", cumsum_kernels, t, dim); }
av_tensor *av_cumprod_raw(const av_tensor *t, int dim) { return scan("cumprod", cumprod_kernels, t, dim); }

/* ---- sort and topk ------------------------------------------------------------
 * Stable: equal keys keep their input order in either direction. NaN sorts
 * as the largest value, as in PyTorch. */
#define SORT_RUN 16
#define DEF_SORT(sfx, T)                                                                     \
    static inline bool before_##sfx(T a, T b, bool desc) {                                   \
        return desc ? (a > b || (a != a && b == b)) : (a < b || (b != b && a == a));         \
    }                                                                                        \
    /* merge sort of keys k with their indices ix; tk, ti: scratch of n each */              \
    static void msort_##sfx(T *k, int64_t *ix, T *tk, int64_t *ti, int64_t n, bool desc) {   \
        for (int64_t b = 0; b < n; b += SORT_RUN) {                                          \
            int64_t e = MIN_(n, b + SORT_RUN);                                               \
            for (int64_t i = b + 1; i < e; i++) {                                            \
                T key = k[i];                                                                \
                int64_t id = ix[i], j = i;                                                   \
                for (; j > b && before_##sfx(key, k[j - 1], desc); j--) {                    \
                    k[j] = k[j - 1];                                                         \
                    ix[j] = ix[j - 1];                                                       \
                }                                                                            \
                k[j] = key;                                                                  \
                ix[j] = id;                                                                  \
            }                                                                                \
        }                                                                                    \
        T *sk = k, *dk = tk;                                                                 \
        int64_t *si = ix, *di = ti;                                                          \
        for (int64_t w = SORT_RUN; w < n; w *= 2) {                                          \
            for (int64_t lo = 0; lo < n; lo += 2 * w) {                                      \
                int64_t mid = MIN_(lo + w, n), hi = MIN_(lo + 2 * w, n), i = lo, j = mid;   \
                for (int64_t o = lo; o < hi; o++) {                                          \
                    /* the right run wins only when strictly before: stability */           \
                    bool right = j < hi && (i >= mid || before_##sfx(sk[j], sk[i], desc));   \
                    int64_t from = right ? j++ : i++;                                        \
                    dk[o] = sk[from];                                                        \
                    di[o] = si[from];                                                        \
                }                                                                            \
            }                                                                                \
            T *tkp = sk; sk = dk; dk = tkp;                                                  \
            int64_t *tip = si; si = di; di = tip;                                            \
        }                                                                                    \
        if (sk != k) {                                                                       \
            memcpy(k, sk, sizeof(T) * n);                                                    \
            memcpy(ix, si, sizeof(int64_t) * n);                                             \
        }                                                                                    \
    }                                                                                        \
    /* the first k of a line in sorted order, by insertion into a k-long list:                \
     * linear in L for the small k of classification metrics */                              \
    static void select_##sfx(const T *x, int64_t xs, int64_t L, int64_t kk, T *bk, int64_t *bi, bool desc) { \
        int64_t m = 0;                                                                       \
        for (int64_t r = 0; r < L; r++) {                                                    \
            T v = x[r * xs];                                                                 \
            if (m == kk && !before_##sfx(v, bk[m - 1], desc)) continue;                      \
            int64_t j = m < kk ? m++ : m - 1;                                                \
            for (; j > 0 && before_##sfx(v, bk[j - 1], desc); j--) {                         \
                bk[j] = bk[j - 1];                                                           \
                bi[j] = bi[j - 1];                                                           \
            }                                                                                \
            bk[j] = v;                                                                       \
            bi[j] = r;                                                                       \
        }                                                                                    \
    }                                                                                        \
    /* operands: values out, input, indices out; the outputs hold k per line */             \
    static void sort_##sfx(char **p, const int64_t *s, int64_t n, void *vc) {                \
        line_ctx *c = vc;                                                                    \
        int64_t L = c->L, kk = c->k, vs = c->ds[0], xs = c->ds[1], is = c->ds[2];            \
        bool small = kk <= 16 && kk < L;                                                     \
        int64_t cap = small ? kk : L;                                                        \
        T *keys = malloc(sizeof(T) * 2 * cap);                                               \
        int64_t *ids = malloc(sizeof(int64_t) * 2 * cap);                                    \
        if (!keys || !ids) {                                                                 \
            c->oom = 1;                                                                      \
            free(keys);                                                                      \
            free(ids);                                                                       \
            return;                                                                          \
        }                                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                    \
            const T *x = (const T *)p[1] + i * s[1];                                         \
            T *v = (T *)p[0] + i * s[0];                                                     \
            int64_t *ix = (int64_t *)p[2] + i * s[2];                                        \
            if (small) {                                                                     \
                select_##sfx(x, xs, L, kk, keys, ids, c->desc);                              \
            } else {                                                                         \
                for (int64_t r = 0; r < L; r++) { keys[r] = x[r * xs]; ids[r] = r; }          \
                msort_##sfx(keys, ids, keys + L, ids + L, L, c->desc);                       \
            }                                                                                \
            for (int64_t r = 0; r < kk; r++) { v[r * vs] = keys[r]; ix[r * is] = ids[r]; }   \
        }                                                                                    \
        free(keys);                                                                          \
        free(ids);                                                                           \
    }
DEF_SORT(f32, float)
DEF_SORT(f64, double)
DEF_SORT(i64, int64_t)
DEF_SORT(i32, int32_t)
DEF_SORT(u8, uint8_t)
static const av_strip_fn sort_kernels[AV_NDTYPES] = ROW5(sort);

/* sorts each line along dim and keeps its first k (k < 0: all) in fresh
 * values and indices */
static int sort_lines(const char *fn, const av_tensor *t, int dim, int64_t k, bool desc, av_tensor **values,
                      av_tensor **indices) {
    *values = *indices = NULL;
    if (av_red_check_dtype(fn, t->dtype)) return -1;
    int d = av_wrap_dim(dim, t->ndim, fn);
    if (d < 0) return -1;
    av_tensor x = as_line(t);
    int64_t L = x.shape[d];
    if (k < 0) k = L;
    if (k > L) {
        char b[96];
        return av_fail("%s: k = %lld is out of range for a dimension of size %lld (input of size %s)", fn,
                       (long long)k, (long long)L, av_shape_str(t, b, sizeof b));
    }
    int64_t shape[AV_MAX_DIMS];
    memcpy(shape, x.shape, sizeof(int64_t) * x.ndim);
    shape[d] = k;
    av_tensor *v = av_empty(x.ndim, shape, t->dtype);
    av_tensor *ix = v ? av_empty(x.ndim, shape, AV_I64) : NULL;
    if (!ix) {
        av_release(v);
        return -1;
    }
    line_ctx c = {.L = L, .k = k, .desc = desc};
    av_tensor *ops[3] = {v, &x, ix};
    int64_t lg = 1;
    while ((1LL << lg) < L) lg++;
    if (k > 0) run_lines(3, ops, d, sort_kernels[t->dtype], &c, L * lg);
    if (c.oom) {
        av_release(v);
        av_release(ix);
        return av_fail("%s: out of memory for a line of %lld elements", fn, (long long)L);
    }
    v->ndim = ix->ndim = t->ndim;
    *values = v;
    *indices = ix;
    return 0;
}

int av_sort_raw(const av_tensor *t, int dim, bool descending, av_tensor **values, av_tensor **indices) {
    if (av_is_cuda(t)) {
        av_tensor *h = to_cpu(t);
        int rc = h ? av_sort_raw(h, dim, descending, values, indices) : -1;
        av_release(h);
        return rc ? rc : back_to(t, values, indices);
    }
    return sort_lines("sort", t, dim, -1, descending, values, indices);
}

/* sorted is accepted for PyTorch's signature; the result is always sorted */
int av_topk_raw(const av_tensor *t, int64_t k, int dim, bool largest, bool sorted, av_tensor **values,
            av_tensor **indices) {
    (void)sorted;
    if (av_is_cuda(t)) {
        av_tensor *h = to_cpu(t);
        int rc = h ? av_topk_raw(h, k, dim, largest, sorted, values, indices) : -1;
        av_release(h);
        return rc ? rc : back_to(t, values, indices);
    }
    if (k < 0) return av_fail("topk: k = %lld must be non-negative", (long long)k);
    return sort_lines("topk", t, dim, k, largest, values, indices);
}
