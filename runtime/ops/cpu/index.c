/* Joining and indexing: cat, stack, index_select, gather, scatter,
 * masked_fill, masked_select, nonzero.
 *
 * Most of these ops only move elements, so their kernels are written per
 * element size rather than per dtype: f16 and bf16 move as uint16_t and need
 * no arithmetic. Only scatter's reductions and nonzero's test look at values.
 * Index operands are validated in a pre-pass so kernels never touch memory
 * outside their inputs, and so errors are deterministic whatever the thread
 * count. Messages show dims and index values 1-based, as users of the Lua
 * layer typed them (the binding passes value-1 down). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "aviary/ops.h"
#include "aviary/autograd.h"
#include "iter.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

/* ---- small helpers ----------------------------------------------------- */

static int wrap_dim(const char *fn, int dim, int ndim) {
    int n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n)
        return av_fail("%s: dimension %d out of range for a %d-d tensor (expected %d..%d, or negative from the end)",
                       fn, dim >= 0 ? dim + 1 : dim, ndim, 1, n);
    return dim < 0 ? dim + n : dim;
}

/* threads worth using for `work` elements: 1 below the grain */
static int threads_for(int64_t work) {
    int nt = av_get_num_threads();
    if (nt <= 1 || work < AV_PARALLEL_GRAIN) return 1;
    int64_t most = work / (AV_PARALLEL_GRAIN / 2);
    return most < nt ? (int)most : nt;
}

static int check_index_dtype(const char *fn, const av_tensor *index) {
    if (!index) return av_fail("%s: index is NULL", fn);
    if (index->dtype != AV_I64 && index->dtype != AV_I32)
        return av_fail("%s: index must be an int64 or int32 tensor, got %s", fn, av_dtype_name(index->dtype));
    return 0;
}

static int check_mask_dtype(const char *fn, const av_tensor *mask) {
    if (!mask) return av_fail("%s: mask is NULL", fn);
    if (mask->dtype != AV_U8)
        return av_fail("%s: mask must be a uint8 tensor (0 or 1), got %s", fn, av_dtype_name(mask->dtype));
    return 0;
}

/* a 1-element 1-d header over a 0-d tensor, so kernels can treat both alike */
static const av_tensor *as_1d(av_tensor *hdr, const av_tensor *t) {
    if (t->ndim > 0) return t;
    *hdr = *t;
    hdr->ndim = 1;
    hdr->shape[0] = 1;
    hdr->stride[0] = 1;
    return hdr;
}

/* the C tensor for a Lua argument may alias the output's memory (x:scatter_(1, i, x));
 * reading a private copy keeps the result independent of iteration order */
static av_tensor *unaliased(const av_tensor *t, const av_tensor *dst) {
    if (t->storage == dst->storage) return av_clone(t);
    return av_retain((av_tensor *)t);
}

static bool same_shape(int na, const int64_t *a, int nb, const int64_t *b) {
    return na == nb && (na == 0 || !memcmp(a, b, sizeof(int64_t) * (size_t)na));
}

/* ---- element moves by size -------------------------------------------- */

#define DEF_MOVE(name, T)                                                          \
    static void name(char **p, const int64_t *s, int64_t n, void *ctx) {           \
        (void)ctx;                                                                 \
        T *o = (T *)p[0];                                                          \
        const T *a = (const T *)p[1];                                              \
        if (s[0] == 1 && s[1] == 1) memcpy(o, a, (size_t)n * sizeof(T));           \
        else for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];            \
    }
DEF_MOVE(move1, uint8_t)
DEF_MOVE(move2, uint16_t)
DEF_MOVE(move4, uint32_t)
DEF_MOVE(move8, uint64_t)

static int size_slot(size_t es) { return es == 1 ? 0 : es == 2 ? 1 : es == 4 ? 2 : 3; }
static const av_strip_fn move_kernels[4] = {move1, move2, move4, move8};

/* dst <- src, same element size, src broadcast to dst's shape */
static void move_elems(av_tensor *dst, const av_tensor *src) {
    if (av_numel(dst) == 0) return;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(dst)) {
        av_cuda_copy(dst, src);
        return;
    }
#endif
    av_iter it;
    const av_tensor *ops[2] = {dst, src};
    av_iter_init(&it, dst->ndim, dst->shape, 2, ops);
    av_iter_run(&it, move_kernels[size_slot(av_dtype_size(dst->dtype))], NULL);
}

/* nrows rows of rowbytes each, from a packed source into a destination with pitch dpitch */
static void copy_rows(char *dst, int64_t dpitch, const char *src, int64_t rowbytes, int64_t nrows, size_t es) {
    int nt = threads_for(rowbytes * nrows / (int64_t)es);
    if (nt <= 1) {
        for (int64_t r = 0; r < nrows; r++) memcpy(dst + r * dpitch, src + r * rowbytes, (size_t)rowbytes);
    } else if (nrows >= nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < nrows; r++) memcpy(dst + r * dpitch, src + r * rowbytes, (size_t)rowbytes);
    } else {
        /* few long rows: split each row across the threads in cache-line multiples */
        int64_t piece = ((rowbytes + nt - 1) / nt + 63) & ~(int64_t)63;
        for (int64_t r = 0; r < nrows; r++) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int k = 0; k < nt; k++) {
                int64_t b = piece * k, e = b + piece < rowbytes ? b + piece : rowbytes;
                if (b < e) memcpy(dst + r * dpitch + b, src + r * rowbytes + b, (size_t)(e - b));
            }
        }
    }
}

/* ---- index validation ---------------------------------------------------- */

typedef struct {
    av_dtype dt;
    int64_t size;
    bool bad;
    int64_t bad_value;
} range_ctx;

static void range_strip(char **p, const int64_t *s, int64_t n, void *vctx) {
    range_ctx *c = vctx;
    if (c->bad) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = c->dt == AV_I64 ? ((const int64_t *)p[0])[i * s[0]] : ((const int32_t *)p[0])[i * s[0]];
        if (v < 0 || v >= c->size) {
            c->bad = true;
            c->bad_value = v;
            return;
        }
    }
}

/* every index value must lie in [0, size); the first one that doesn't is named */
static int check_range(const char *fn, const av_tensor *index, int64_t size, int dim) {
    if (av_numel(index) == 0) return 0;
    if (av_is_cuda(index)) {
        /* validated on the host: a bad index must fail here, not fault in a kernel */
        av_tensor *h = av_to_device(index, (av_device){AV_CPU, 0});
        int rc = h ? check_range(fn, h, size, dim) : -1;
        av_release(h);
        return rc;
    }
    range_ctx c = {index->dtype, size, false, 0};
    av_iter it;
    const av_tensor *ops[1] = {index};
    av_iter_init(&it, index->ndim, index->shape, 1, ops);
    av_iter_run_serial(&it, range_strip, &c);
    if (c.bad)
        return av_fail("%s: index %lld is out of range for dimension %d of size %lld (indices are 1..%lld)", fn,
                       (long long)c.bad_value + 1, dim + 1, (long long)size, (long long)size);
    return 0;
}

static int64_t index_at(const av_tensor *index, int64_t j) {
    int64_t off = index->ndim ? j * index->stride[0] : 0;
    return index->dtype == AV_I64 ? ((const int64_t *)av_data(index))[off] : ((const int32_t *)av_data(index))[off];
}

/* ---- cat and stack ------------------------------------------------------- */

/* PyTorch still accepts a 1-d tensor of size 0 anywhere in a cat list */
static bool legacy_empty(const av_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

static av_tensor *cat_impl(const char *fn, int n, const av_tensor *const *ts, int dim) {
    if (n <= 0 || !ts) { av_fail("%s: expected a non-empty list of tensors", fn); return NULL; }
    int ref = -1;
    av_dtype dt = AV_U8;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) { av_fail("%s: tensor %d is NULL", fn, i + 1); return NULL; }
        dt = i ? av_promote(dt, ts[i]->dtype) : ts[i]->dtype;
        if (legacy_empty(ts[i])) continue;
        if (ts[i]->ndim == 0) {
            av_fail("%s: tensor %d is 0-d (a scalar) and cannot be concatenated; unsqueeze it first", fn, i + 1);
            return NULL;
        }
        if (ref < 0) ref = i;
    }
    if (ref < 0) {
        if (wrap_dim(fn, dim, 1) < 0) return NULL;
        const int64_t zero = 0;
        return av_empty(1, &zero, dt);
    }
    const av_tensor *r = ts[ref];
    av_device dev = av_device_of(r);
    for (int i = 0; i < n; i++)
        if (av_is_cuda(ts[i])) { dev = av_device_of(ts[i]); break; }
    for (int i = 0; i < n; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "tensor %d", i + 1);
        if (dev.type == AV_CUDA && !legacy_empty(ts[i]) && av_check_same_device(fn, ts[ref], "tensor 1", ts[i], nm))
            return NULL;
    }
    if ((dim = wrap_dim(fn, dim, r->ndim)) < 0) return NULL;
    int64_t shape[AV_MAX_DIMS];
    memcpy(shape, r->shape, sizeof shape);
    shape[dim] = 0;
    char b1[96], b2[96];
    for (int i = 0; i < n; i++) {
        const av_tensor *t = ts[i];
        if (legacy_empty(t)) continue;
        if (t->ndim != r->ndim) {
            av_fail("%s: tensor %d of size %s has %d dimensions but tensor %d of size %s has %d; all need the same number",
                    fn, i + 1, av_shape_str(t, b1, sizeof b1), t->ndim, ref + 1, av_shape_str(r, b2, sizeof b2), r->ndim);
            return NULL;
        }
        for (int d = 0; d < r->ndim; d++)
            if (d != dim && t->shape[d] != r->shape[d]) {
                av_fail("%s: sizes must match except in dimension %d, but tensor %d has size %s and tensor %d has size %s",
                        fn, dim + 1, ref + 1, av_shape_str(r, b1, sizeof b1), i + 1, av_shape_str(t, b2, sizeof b2));
                return NULL;
            }
        shape[dim] += t->shape[dim];
    }
    av_tensor *out = av_empty_on(r->ndim, shape, dt, dev);
    if (!out || av_numel(out) == 0) return out;
    if (dev.type == AV_CUDA) {
        /* each piece is one strided copy into its slab of the output */
        int64_t pos = 0;
        for (int i = 0; i < n; i++) {
            const av_tensor *t = ts[i];
            if (legacy_empty(t)) continue;
            av_tensor slab = *out;
            slab.shape[dim] = t->shape[dim];
            slab.offset += pos * out->stride[dim];
            if (t->shape[dim] > 0 && av_copy_(&slab, t)) { av_release(out); return NULL; }
            pos += t->shape[dim];
        }
        return out;
    }
    size_t es = av_dtype_size(dt);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= shape[d];
    for (int d = dim + 1; d < r->ndim; d++) inner *= shape[d];
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const av_tensor *t = ts[i];
        if (legacy_empty(t)) continue;
        int64_t len = t->shape[dim];
        if (len > 0 && t->dtype == dt && av_is_contiguous(t)) {
            /* one packed block per outer index lands at stride shape[dim]*inner */
            char *dst = (char *)av_data(out) + pos * inner * (int64_t)es;
            copy_rows(dst, shape[dim] * inner * (int64_t)es, av_data(t), len * inner * (int64_t)es, outer, es);
        } else if (len > 0) {
            av_tensor slab = *out;
            slab.shape[dim] = len;
            slab.offset += pos * out->stride[dim];
            if (t->dtype == dt) move_elems(&slab, t);
            else if (av_copy_(&slab, t)) { av_release(out); return NULL; }
        }
        pos += len;
    }
    return out;
}

av_tensor *av_cat_raw(int n, av_tensor *const *ts, int dim) {
    return cat_impl("cat", n, (const av_tensor *const *)ts, dim);
}

av_tensor *av_stack_raw(int n, av_tensor *const *ts, int dim) {
    const char *fn = "stack";
    if (n <= 0 || !ts) { av_fail("%s: expected a non-empty list of tensors", fn); return NULL; }
    for (int i = 0; i < n; i++)
        if (!ts[i]) { av_fail("%s: tensor %d is NULL", fn, i + 1); return NULL; }
    const av_tensor *r = ts[0];
    if (r->ndim >= AV_MAX_DIMS) { av_fail("%s: stacking %d-d tensors would exceed %d dimensions", fn, r->ndim, AV_MAX_DIMS); return NULL; }
    if ((dim = wrap_dim(fn, dim, r->ndim + 1)) < 0) return NULL;
    char b1[96], b2[96];
    for (int i = 1; i < n; i++)
        if (!same_shape(ts[i]->ndim, ts[i]->shape, r->ndim, r->shape)) {
            av_fail("%s: all tensors need the same size, but tensor 1 has size %s and tensor %d has size %s", fn,
                    av_shape_str(r, b1, sizeof b1), i + 1, av_shape_str(ts[i], b2, sizeof b2));
            return NULL;
        }
    /* headers with a size-1 dim inserted at `dim`; cat does the rest */
    av_tensor *views = malloc(sizeof(av_tensor) * (size_t)n);
    const av_tensor **ptrs = malloc(sizeof(av_tensor *) * (size_t)n);
    if (!views || !ptrs) {
        free(views), free(ptrs);
        av_fail("%s: out of memory", fn);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const av_tensor *t = ts[i];
        av_tensor *v = &views[i];
        *v = *t;
        v->ndim = t->ndim + 1;
        for (int d = 0, s = 0; d < v->ndim; d++) {
            if (d == dim) {
                v->shape[d] = 1;
                v->stride[d] = 1;
            } else {
                v->shape[d] = t->shape[s];
                v->stride[d] = t->stride[s];
                s++;
            }
        }
        ptrs[i] = v;
    }
    av_tensor *out = cat_impl(fn, n, ptrs, dim);
    free(views);
    free(ptrs);
    return out;
}

/* ---- index_select and gather ------------------------------------------ */

/* p[0] output, p[1] index, p[2] source restrided with stride 0 along the indexed dim */
typedef struct { int64_t stride; } take_ctx;

#define DEF_TAKE(name, T, I)                                                        \
    static void name(char **p, const int64_t *s, int64_t n, void *vctx) {          \
        int64_t sd = ((const take_ctx *)vctx)->stride;                             \
        T *o = (T *)p[0];                                                           \
        const I *ix = (const I *)p[1];                                              \
        const T *a = (const T *)p[2];                                               \
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[2] + (int64_t)ix[i * s[1]] * sd]; \
    }
DEF_TAKE(take1_i64, uint8_t, int64_t)
DEF_TAKE(take2_i64, uint16_t, int64_t)
DEF_TAKE(take4_i64, uint32_t, int64_t)
DEF_TAKE(take8_i64, uint64_t, int64_t)
DEF_TAKE(take1_i32, uint8_t, int32_t)
DEF_TAKE(take2_i32, uint16_t, int32_t)
DEF_TAKE(take4_i32, uint32_t, int32_t)
DEF_TAKE(take8_i32, uint64_t, int32_t)
static const av_strip_fn take_kernels[2][4] = {{take1_i64, take2_i64, take4_i64, take8_i64},
                                               {take1_i32, take2_i32, take4_i32, take8_i32}};

/* out[.., j, ..] = src[.., index[j], ..] where `index` already has out's shape */
static void run_take(av_tensor *out, const av_tensor *index, const av_tensor *src, int dim) {
    av_tensor sr = *src;
    memcpy(sr.shape, out->shape, sizeof sr.shape);
    sr.stride[dim] = 0;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(out)) {
        av_cuda_take(out, index, &sr, src->stride[dim]);
        return;
    }
#endif
    take_ctx c = {src->stride[dim]};
    av_iter it;
    const av_tensor *ops[3] = {out, index, &sr};
    av_iter_init(&it, out->ndim, out->shape, 3, ops);
    av_iter_run(&it, take_kernels[index->dtype == AV_I32][size_slot(av_dtype_size(src->dtype))], &c);
}

av_tensor *av_index_select_raw(const av_tensor *t, int dim, const av_tensor *index) {
    const char *fn = "index_select";
    char b1[96];
    if (check_index_dtype(fn, index) || av_check_same_device(fn, t, "input", index, "index")) return NULL;
    if (index->ndim > 1) { av_fail("%s: index must be 1-d, got size %s", fn, av_shape_str(index, b1, sizeof b1)); return NULL; }
    if ((dim = wrap_dim(fn, dim, t->ndim)) < 0) return NULL;
    int64_t k = av_numel(index);
    if (t->ndim == 0) {
        if (k != 1) { av_fail("%s: a 0-d input takes exactly one index, got %lld", fn, (long long)k); return NULL; }
        return check_range(fn, index, 1, 0) ? NULL : av_clone(t);
    }
    if (check_range(fn, index, t->shape[dim], dim)) return NULL;
    int64_t shape[AV_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[dim] = k;
    av_tensor *out = av_empty_on(t->ndim, shape, t->dtype, av_device_of(t));
    if (!out || av_numel(out) == 0) return out;
    size_t es = av_dtype_size(t->dtype);
    if (dim == 0 && av_is_contiguous(t) && !av_is_cuda(t)) {
        /* whole rows: one memcpy each */
        int64_t row = av_numel(out) / k * (int64_t)es;
        char *o = av_data(out);
        const char *a = av_data(t);
        int nt = threads_for(av_numel(out));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t j = 0; j < k; j++) memcpy(o + j * row, a + index_at(index, j) * row, (size_t)row);
        return out;
    }
    /* the 1-d index laid along `dim` of the output, broadcast everywhere else */
    av_tensor ir = *index;
    ir.ndim = out->ndim;
    memcpy(ir.shape, out->shape, sizeof ir.shape);
    memset(ir.stride, 0, sizeof ir.stride);
    ir.stride[dim] = index->ndim ? index->stride[0] : 0;
    run_take(out, &ir, t, dim);
    return out;
}

/* PyTorch's shape rules shared by gather and scatter: index has the same
 * number of dims as `other`, and is no larger in any dim except `free_dim`
 * (-1: none) */
static int check_fits(const char *fn, const av_tensor *index, const av_tensor *other, const char *what, int free_dim) {
    char b1[96], b2[96];
    if (index->ndim != other->ndim)
        return av_fail("%s: index of size %s has %d dimensions but %s of size %s has %d; they must match", fn,
                       av_shape_str(index, b1, sizeof b1), index->ndim, what, av_shape_str(other, b2, sizeof b2),
                       other->ndim);
    for (int d = 0; d < index->ndim; d++)
        if (d != free_dim && index->shape[d] > other->shape[d]) {
            if (free_dim >= 0)
                return av_fail("%s: index of size %s is larger than %s of size %s in dimension %d (only dimension %d may be larger)",
                               fn, av_shape_str(index, b1, sizeof b1), what, av_shape_str(other, b2, sizeof b2), d + 1,
                               free_dim + 1);
            return av_fail("%s: index of size %s is larger than %s of size %s in dimension %d", fn,
                           av_shape_str(index, b1, sizeof b1), what, av_shape_str(other, b2, sizeof b2), d + 1);
        }
    return 0;
}

av_tensor *av_gather_raw(const av_tensor *t, int dim, const av_tensor *index) {
    const char *fn = "gather";
    if (check_index_dtype(fn, index) || av_check_same_device(fn, t, "input", index, "index")) return NULL;
    if ((dim = wrap_dim(fn, dim, t->ndim)) < 0) return NULL;
    av_tensor th, ih;
    const av_tensor *T = as_1d(&th, t), *I = as_1d(&ih, index);
    if (check_fits(fn, I, T, "the input", dim)) return NULL;
    if (check_range(fn, index, T->shape[dim], dim)) return NULL;
    av_tensor *out = av_empty_on(index->ndim, index->shape, t->dtype, av_device_of(t));
    if (!out || av_numel(out) == 0) return out;
    av_tensor oh;
    run_take((av_tensor *)as_1d(&oh, out), I, T, dim);
    return out;
}

/* ---- scatter --------------------------------------------------------------- */

typedef enum { SCAT_SET, SCAT_ADD, SCAT_MUL } scatter_mode;
typedef struct { int64_t stride; av_dtype dt; scatter_mode mode; } scatter_ctx;

/* p[0] self restrided with stride 0 along dim, p[1] index, p[2] src */
#define DEF_SCATTER(name, T, I, COMBINE)                                            \
    static void name(char **p, const int64_t *s, int64_t n, void *vctx) {          \
        int64_t sd = ((const scatter_ctx *)vctx)->stride;                          \
        T *o = (T *)p[0];                                                           \
        const I *ix = (const I *)p[1];                                              \
        const T *a = (const T *)p[2];                                               \
        for (int64_t i = 0; i < n; i++) {                                           \
            T *d = o + i * s[0] + (int64_t)ix[i * s[1]] * sd;                       \
            T x = *d, y = a[i * s[2]];                                              \
            (void)x;                                                                \
            *d = (T)(COMBINE);                                                      \
        }                                                                           \
    }
#define DEF_SCATTER_I(SUF, I)                                                                          \
    DEF_SCATTER(set1_##SUF, uint8_t, I, y) DEF_SCATTER(set2_##SUF, uint16_t, I, y)                     \
    DEF_SCATTER(set4_##SUF, uint32_t, I, y) DEF_SCATTER(set8_##SUF, uint64_t, I, y)                    \
    DEF_SCATTER(add_f32_##SUF, float, I, x + y) DEF_SCATTER(add_f64_##SUF, double, I, x + y)           \
    DEF_SCATTER(add_i64_##SUF, int64_t, I, (uint64_t)x + (uint64_t)y)                                  \
    DEF_SCATTER(add_i32_##SUF, int32_t, I, (uint32_t)x + (uint32_t)y)                                  \
    DEF_SCATTER(add_u8_##SUF, uint8_t, I, x + y)                                                       \
    DEF_SCATTER(mul_f32_##SUF, float, I, x * y) DEF_SCATTER(mul_f64_##SUF, double, I, x * y)           \
    DEF_SCATTER(mul_i64_##SUF, int64_t, I, (uint64_t)x * (uint64_t)y)                                  \
    DEF_SCATTER(mul_i32_##SUF, int32_t, I, (uint32_t)x * (uint32_t)y)                                  \
    DEF_SCATTER(mul_u8_##SUF, uint8_t, I, (unsigned)x * (unsigned)y)
DEF_SCATTER_I(i64, int64_t)
DEF_SCATTER_I(i32, int32_t)

/* half types have no CPU arithmetic: their reductions go through double */
#define DEF_SCATTER_HALF(name, I)                                                   \
    static void name(char **p, const int64_t *s, int64_t n, void *vctx) {          \
        const scatter_ctx *c = vctx;                                                \
        uint16_t *o = (uint16_t *)p[0];                                             \
        const I *ix = (const I *)p[1];                                              \
        const uint16_t *a = (const uint16_t *)p[2];                                 \
        for (int64_t i = 0; i < n; i++) {                                           \
            uint16_t *d = o + i * s[0] + (int64_t)ix[i * s[1]] * c->stride;         \
            double x = av_load_elem(c->dt, d), y = av_load_elem(c->dt, a + i * s[2]); \
            av_store_elem(c->dt, d, c->mode == SCAT_ADD ? x + y : x * y);           \
        }                                                                           \
    }
DEF_SCATTER_HALF(half_i64, int64_t)
DEF_SCATTER_HALF(half_i32, int32_t)

#define SCAT_ROW(OP, SUF) {[AV_F32] = OP##_f32_##SUF, [AV_F64] = OP##_f64_##SUF, [AV_I64] = OP##_i64_##SUF, \
                           [AV_I32] = OP##_i32_##SUF, [AV_U8] = OP##_u8_##SUF, [AV_F16] = half_##SUF, [AV_BF16] = half_##SUF}
static const av_strip_fn scatter_set[2][4] = {{set1_i64, set2_i64, set4_i64, set8_i64},
                                              {set1_i32, set2_i32, set4_i32, set8_i32}};
static const av_strip_fn scatter_add[2][AV_NDTYPES] = {SCAT_ROW(add, i64), SCAT_ROW(add, i32)};
static const av_strip_fn scatter_mul[2][AV_NDTYPES] = {SCAT_ROW(mul, i64), SCAT_ROW(mul, i32)};

static int scatter_impl(const char *fn, av_tensor *t, int dim, const av_tensor *index, const av_tensor *src,
                        const char *reduce) {
    scatter_mode mode;
    if (!reduce) mode = SCAT_SET;
    else if (!strcmp(reduce, "add")) mode = SCAT_ADD;
    else if (!strcmp(reduce, "multiply")) mode = SCAT_MUL;
    else return av_fail("%s: reduce must be \"add\" or \"multiply\", got \"%s\"", fn, reduce);
    if (check_index_dtype(fn, index)) return -1;
    if (!src) return av_fail("%s: src is NULL", fn);
    if (av_check_same_device(fn, t, "self", index, "index") || av_check_same_device(fn, t, "self", src, "src"))
        return -1;
    if (src->dtype != t->dtype)
        return av_fail("%s: src has dtype %s but the tensor scattered into has dtype %s; convert one of them", fn,
                       av_dtype_name(src->dtype), av_dtype_name(t->dtype));
    if ((dim = wrap_dim(fn, dim, t->ndim)) < 0) return -1;
    av_tensor th, ih, sh;
    const av_tensor *T = as_1d(&th, t), *I = as_1d(&ih, index), *S = as_1d(&sh, src);
    if (check_fits(fn, I, T, "self", dim) || check_fits(fn, I, S, "src", -1)) return -1;
    if (av_has_internal_overlap(t))
        return av_fail("%s: the tensor scattered into is expanded (several elements share memory); clone it first", fn);
    if (check_range(fn, index, T->shape[dim], dim) || av_check_inplace(t, fn)) return -1;
    if (av_numel(index) == 0) return 0;
    av_tensor *ci = unaliased(I, t), *cs = ci ? unaliased(S, t) : NULL;
    if (!cs) { av_release(ci); return -1; }
    av_tensor tr = *T;
    memcpy(tr.shape, I->shape, sizeof tr.shape);
    tr.stride[dim] = 0;
    if (av_is_cuda(t)) {
        int rc = -1;
#ifdef AV_WITH_CUDA
        rc = av_cuda_scatter(&tr, ci, cs, T->stride[dim], mode == SCAT_SET ? 0 : mode == SCAT_ADD ? 1 : 2);
#endif
        av_release(ci);
        av_release(cs);
        if (!rc) av_bump_version(t);
        return rc;
    }
    scatter_ctx c = {T->stride[dim], t->dtype, mode};
    int it32 = index->dtype == AV_I32;
    av_strip_fn fnk = mode == SCAT_SET ? scatter_set[it32][size_slot(av_dtype_size(t->dtype))]
                    : mode == SCAT_ADD ? scatter_add[it32][t->dtype] : scatter_mul[it32][t->dtype];
    av_iter it;
    const av_tensor *ops[3] = {&tr, ci, cs};
    av_iter_init(&it, I->ndim, I->shape, 3, ops);
    /* serial: repeated indices make several elements land on one, in a defined order */
    av_iter_run_serial(&it, fnk, &c);
    av_release(ci);
    av_release(cs);
    av_bump_version(t);
    return 0;
}

int av_scatter_(av_tensor *t, int dim, const av_tensor *index, const av_tensor *src, const char *reduce) {
    return scatter_impl("scatter_", t, dim, index, src, reduce);
}

/* the out-of-place forms fill a fresh tensor and record no autograd history */
av_tensor *av_scatter_raw(const av_tensor *t, int dim, const av_tensor *index, const av_tensor *src, const char *reduce) {
    av_tensor *out = av_empty_like_on(t);
    if (out) move_elems(out, t);
    if (out && scatter_impl("scatter", out, dim, index, src, reduce)) {
        av_release(out);
        return NULL;
    }
    return out;
}

/* ---- masked_fill --------------------------------------------------------------- */

typedef union { uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; double f64; } elem_bits;

#define DEF_MFILL(name, T, FIELD)                                                   \
    static void name(char **p, const int64_t *s, int64_t n, void *vctx) {          \
        T v = ((const elem_bits *)vctx)->FIELD;                                     \
        T *o = (T *)p[0];                                                           \
        const uint8_t *m = (const uint8_t *)p[1];                                   \
        for (int64_t i = 0; i < n; i++)                                             \
            if (m[i * s[1]]) o[i * s[0]] = v;                                       \
    }
DEF_MFILL(mfill1, uint8_t, u8)
DEF_MFILL(mfill2, uint16_t, u16)
DEF_MFILL(mfill4, uint32_t, u32)
DEF_MFILL(mfill8, uint64_t, u64)
static const av_strip_fn mfill_kernels[4] = {mfill1, mfill2, mfill4, mfill8};

static int masked_fill_impl(const char *fn, av_tensor *t, const av_tensor *mask, double value) {
    if (check_mask_dtype(fn, mask) || av_check_same_device(fn, t, "self", mask, "mask")) return -1;
    int nd;
    int64_t shape[AV_MAX_DIMS];
    char b1[96], b2[96];
    if (av_broadcast_shape(fn, t->ndim, t->shape, mask->ndim, mask->shape, &nd, shape)) return -1;
    if (!same_shape(nd, shape, t->ndim, t->shape))
        return av_fail("%s: mask of size %s does not broadcast to the tensor's size %s", fn,
                       av_shape_str(mask, b1, sizeof b1), av_shape_str(t, b2, sizeof b2));
    if (av_has_internal_overlap(t))
        return av_fail("%s: the tensor is expanded (several elements share memory); clone it first", fn);
    if (av_check_inplace(t, fn)) return -1;
    if (av_numel(t) == 0) return 0;
    av_tensor *m = unaliased(mask, t);
    if (!m) return -1;
    if (av_is_cuda(t)) {
        int rc = -1;
#ifdef AV_WITH_CUDA
        rc = av_cuda_masked_fill(t, m, value);
#endif
        av_release(m);
        if (!rc) av_bump_version(t);
        return rc;
    }
    elem_bits v = {0};
    av_store_elem(t->dtype, &v, value);
    av_iter it;
    const av_tensor *ops[2] = {t, m};
    av_iter_init(&it, t->ndim, t->shape, 2, ops);
    av_iter_run(&it, mfill_kernels[size_slot(av_dtype_size(t->dtype))], &v);
    av_release(m);
    av_bump_version(t);
    return 0;
}

int av_masked_fill_(av_tensor *t, const av_tensor *mask, double value) {
    return masked_fill_impl("masked_fill_", t, mask, value);
}

av_tensor *av_masked_fill_raw(const av_tensor *t, const av_tensor *mask, double value) {
    const char *fn = "masked_fill";
    if (check_mask_dtype(fn, mask)) return NULL;
    int nd;
    int64_t shape[AV_MAX_DIMS];
    if (av_broadcast_shape(fn, t->ndim, t->shape, mask->ndim, mask->shape, &nd, shape)) return NULL;
    av_tensor *out = av_empty_on(nd, shape, t->dtype, av_device_of(t));
    if (!out) return NULL;
    move_elems(out, t);
    if (masked_fill_impl(fn, out, mask, value)) {
        av_release(out);
        return NULL;
    }
    return out;
}

/* ---- masked_select and nonzero: stream compaction -------------------------- */

/* a row-major position in a broadcast shape, with the element offset of up
 * to two operands kept current as it advances */
typedef struct {
    int nd;
    int64_t shape[AV_MAX_DIMS], idx[AV_MAX_DIMS];
    int64_t stride[2][AV_MAX_DIMS];
    int64_t off[2];
} walker;

static void walker_init(walker *w, int nd, const int64_t *shape, const av_tensor *const *ops, int nops,
                        int64_t start) {
    memset(w, 0, sizeof *w);
    w->nd = nd;
    for (int d = nd - 1; d >= 0; d--) {
        w->shape[d] = shape[d];
        for (int k = 0; k < nops; k++) {
            const av_tensor *t = ops[k];
            int j = d - (nd - t->ndim);
            w->stride[k][d] = (j < 0 || t->shape[j] == 1) ? 0 : t->stride[j];
        }
        w->idx[d] = shape[d] ? start % shape[d] : 0;
        start = shape[d] ? start / shape[d] : 0;
        for (int k = 0; k < nops; k++) w->off[k] += w->idx[d] * w->stride[k][d];
    }
}

static inline void walker_next(walker *w) {
    for (int d = w->nd - 1; d >= 0; d--) {
        w->off[0] += w->stride[0][d];
        w->off[1] += w->stride[1][d];
        if (++w->idx[d] < w->shape[d]) return;
        w->off[0] -= w->stride[0][d] * w->shape[d];
        w->off[1] -= w->stride[1][d] * w->shape[d];
        w->idx[d] = 0;
    }
}

/* masked_select: ops {data, mask}, output elements of data's size.
 * nonzero: ops {data}, output rows of nd int64 coordinates. */
typedef struct {
    int nd;
    int64_t shape[AV_MAX_DIMS];
    const av_tensor *ops[2];
    int nops;
    bool is_select;
    const char *key;  /* the operand whose nonzero elements are kept */
    av_dtype key_dt;
    int64_t key_es;
    char *out;
} compact_job;

static inline bool elem_nonzero(av_dtype dt, const char *p) {
    switch (dt) {
    case AV_F32: return *(const float *)p != 0;
    case AV_F64: return *(const double *)p != 0;
    case AV_I64: return *(const int64_t *)p != 0;
    case AV_I32: return *(const int32_t *)p != 0;
    case AV_U8: return *p != 0;
    default: return (*(const uint16_t *)p & 0x7fff) != 0; /* f16/bf16: anything but +-0 */
    }
}

static inline bool compact_hit(const compact_job *j, const walker *w) {
    return elem_nonzero(j->key_dt, j->key + w->off[j->is_select] * j->key_es);
}

static int64_t compact_count(const compact_job *j, int64_t b, int64_t e) {
    walker w;
    walker_init(&w, j->nd, j->shape, j->ops, j->nops, b);
    int64_t c = 0;
    for (int64_t i = b; i < e; i++, walker_next(&w)) c += compact_hit(j, &w);
    return c;
}

static void compact_emit(const compact_job *j, int64_t b, int64_t e, int64_t pos) {
    walker w;
    walker_init(&w, j->nd, j->shape, j->ops, j->nops, b);
    const av_tensor *data = j->ops[0];
    size_t es = av_dtype_size(data->dtype);
    const char *src = av_data(data);
    for (int64_t i = b; i < e; i++, walker_next(&w)) {
        if (!compact_hit(j, &w)) continue;
        if (j->is_select) {
            memcpy(j->out + pos * (int64_t)es, src + w.off[0] * (int64_t)es, es);
        } else {
            int64_t *row = (int64_t *)j->out + pos * j->nd;
            for (int d = 0; d < j->nd; d++) row[d] = w.idx[d];
        }
        pos++;
    }
}

/* counts per chunk, then the output (allocated by make_out from the total),
 * then each chunk writes from its prefix offset: the order is row-major
 * whatever the thread count */
static av_tensor *compact_run(compact_job *j, av_tensor *(*make_out)(const compact_job *, int64_t)) {
    int64_t numel = 1;
    for (int d = 0; d < j->nd; d++) numel *= j->shape[d];
    const av_tensor *key = j->ops[j->is_select];
    j->key_dt = key->dtype;
    j->key_es = (int64_t)av_dtype_size(key->dtype);
    j->key = numel ? av_data(key) : NULL;
    int nc = threads_for(numel);
    int64_t counts[256], starts[257];
    if (nc > 256) nc = 256;
    int64_t per = (numel + nc - 1) / nc;
#pragma omp parallel for num_threads(nc) schedule(static, 1) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        int64_t b = per * c < numel ? per * c : numel, e = b + per < numel ? b + per : numel;
        counts[c] = compact_count(j, b, e);
    }
    starts[0] = 0;
    for (int c = 0; c < nc; c++) starts[c + 1] = starts[c] + counts[c];
    av_tensor *out = make_out(j, starts[nc]);
    if (!out || starts[nc] == 0) return out;
    j->out = av_data(out);
#pragma omp parallel for num_threads(nc) schedule(static, 1) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        int64_t b = per * c < numel ? per * c : numel, e = b + per < numel ? b + per : numel;
        if (counts[c]) compact_emit(j, b, e, starts[c]);
    }
    return out;
}

static av_tensor *make_selected(const compact_job *j, int64_t n) { return av_empty(1, &n, j->ops[0]->dtype); }
static av_tensor *make_coords(const compact_job *j, int64_t n) {
    const int64_t shape[2] = {n, j->nd};
    return av_empty(2, shape, AV_I64);
}

/* compaction has a data-dependent size: device tensors go through the host
 * (PyTorch synchronises here too) and the result returns to the device */
static av_tensor *via_host(av_tensor *(*fn)(const av_tensor *, const av_tensor *), const av_tensor *a,
                           const av_tensor *b) {
    const av_device cpu = {AV_CPU, 0};
    av_tensor *ha = av_to_device(a, cpu), *hb = b && ha ? av_to_device(b, cpu) : NULL;
    av_tensor *hr = ha && (!b || hb) ? fn(ha, hb) : NULL;
    av_tensor *r = hr ? av_to_device(hr, av_device_of(a)) : NULL;
    av_release(ha);
    av_release(hb);
    av_release(hr);
    return r;
}
static av_tensor *nonzero2(const av_tensor *t, const av_tensor *unused) {
    (void)unused;
    return av_nonzero(t);
}

av_tensor *av_masked_select_raw(const av_tensor *t, const av_tensor *mask) {
    const char *fn = "masked_select";
    if (check_mask_dtype(fn, mask)) return NULL;
    if (av_is_cuda(t) || av_is_cuda(mask)) {
        if (av_check_same_device(fn, t, "input", mask, "mask")) return NULL;
        return via_host(av_masked_select_raw, t, mask);
    }
    compact_job j = {0};
    if (av_broadcast_shape(fn, t->ndim, t->shape, mask->ndim, mask->shape, &j.nd, j.shape)) return NULL;
    j.ops[0] = t;
    j.ops[1] = mask;
    j.nops = 2;
    j.is_select = true;
    return compact_run(&j, make_selected);
}

av_tensor *av_nonzero(const av_tensor *t) {
    if (av_is_cuda(t)) return via_host(nonzero2, t, NULL);
    compact_job j = {0};
    j.nd = t->ndim;
    memcpy(j.shape, t->shape, sizeof j.shape);
    j.ops[0] = t;
    j.nops = 1;
    return compact_run(&j, make_coords);
}
