/* Reductions: av_reduce (sum mean prod max min argmax argmin all any),
 * av_max_dim, var/std, norm.
 *
 * The reduced dims of the input are sorted by stride and merged wherever
 * they walk memory with a single stride, so most reductions, whatever the
 * layout (permuted, narrowed, expanded), become one step: for every output
 * element, fold R elements spaced rs apart (reduce_kernels.c). Reduced dims
 * that cannot be merged are reduced one group at a time, innermost first.
 * Threads split the outputs, or, when there are too few outputs to share
 * out, the reduced range, with partial results combined by a second step. */
#include <math.h>
#include <string.h>
#include <omp.h>
#include "reduce.h"
#include "aviary/backend.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

static const char *redop_names[] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "all", "any"};

/* the GPU reduces half types (accumulating in float/double); the CPU does not */
static int check_dtype_on(const char *fn, const av_tensor *t) {
    if (av_is_cuda(t) && (t->dtype == AV_F16 || t->dtype == AV_BF16)) return 0;
    return av_red_check_dtype(fn, t->dtype);
}

int av_red_check_dtype(const char *fn, av_dtype dt) {
    if (dt == AV_F16 || dt == AV_BF16)
        return av_fail("%s: %s has no CPU arithmetic; convert with :float() first", fn, av_dtype_name(dt));
    if ((unsigned)dt >= AV_NDTYPES) return av_fail("%s: unknown dtype %d", fn, (int)dt);
    return 0;
}

/* ---- running strips over output ranges ------------------------------------ */

void av_red_run(const av_iter *it, av_strip_fn fn, void *ctx, int64_t cost) {
    int64_t n = it->numel;
    int nt = av_get_num_threads();
    if (cost < 1) cost = 1;
    int64_t chunks = n * cost / (AV_PARALLEL_GRAIN / 2);
    if (chunks < nt) nt = (int)chunks;
    if (n < nt) nt = (int)n;
    if (nt <= 1 || n * cost < AV_PARALLEL_GRAIN) {
        av_iter_run_range(it, 0, n, fn, ctx);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), T = omp_get_num_threads();
        /* 16-element boundaries keep each thread's column blocks vector-aligned */
        int64_t per = ((n + T - 1) / T + 15) & ~(int64_t)15;
        int64_t b = per * tid, e = b + per < n ? b + per : n;
        av_iter_run_range(it, b, e, fn, ctx);
    }
}

/* ---- one reduction step ------------------------------------------------------ */
/* A set of reduced dims that walks memory as `size` elements `stride` apart. */
typedef struct {
    int64_t size, stride;
    unsigned dims; /* bit d set for each input dim it covers */
} red_group;

/* groups the size>1 dims of mask, sorted by stride (largest first), merging
 * neighbours that continue each other; returns the number of groups */
static int group_dims(const av_tensor *t, unsigned mask, red_group *g) {
    int n = 0;
    for (int d = 0; d < t->ndim; d++)
        if ((mask >> d & 1) && t->shape[d] != 1) {
            red_group x = {t->shape[d], t->stride[d], 1u << d};
            int i = n++;
            for (; i > 0 && g[i - 1].stride < x.stride; i--) g[i] = g[i - 1];
            g[i] = x;
        }
    if (n == 0) return 0;
    int m = 0;
    for (int i = 1; i < n; i++) {
        if (g[m].stride == g[i].stride * g[i].size) {
            g[m].size *= g[i].size;
            g[m].stride = g[i].stride;
            g[m].dims |= g[i].dims;
        } else {
            g[++m] = g[i];
        }
    }
    return m + 1;
}

static void run_iter(const av_tensor *out, const av_tensor *in, const av_tensor *extra, av_strip_fn fn,
                     av_red_ctx *ctx, bool parallel) {
    av_iter it;
    const av_tensor *ops[3] = {out, in, extra};
    av_iter_init(&it, out->ndim, out->shape, extra ? 3 : 2, ops);
    if (parallel) av_red_run(&it, fn, ctx, ctx->R);
    else av_iter_run_range(&it, 0, it.numel, fn, ctx);
}

static bool is_arg(av_redop op) { return op == AV_RED_ARGMAX || op == AV_RED_ARGMIN; }

/* Reduces group g of t into out (t's shape with g's dims set to 1,
 * contiguous) and, for arg ops, idx (same shape, i64). `in` is a header copy
 * of t with the reduced dims set to size 1. */
static int reduce_group(av_redop op, const av_tensor *t, red_group g, av_tensor *out, av_tensor *idx) {
    av_strip_fn fn = av_red_kernels[op][t->dtype];
    if (!fn) return av_fail("%s: not supported for %s", redop_names[op], av_dtype_name(t->dtype));
    av_tensor in = *t;
    for (int d = 0; d < t->ndim; d++)
        if (g.dims >> d & 1) in.shape[d] = 1;
    int64_t n = av_numel(out), R = g.size;
    int nt = av_get_num_threads();
    av_red_ctx ctx = {R, g.stride};
    if (nt <= 1 || n >= 4 * nt || R < 4 * nt || n * R < 2 * AV_PARALLEL_GRAIN) {
        run_iter(out, &in, idx, fn, &ctx, true);
        return 0;
    }
    /* too few outputs to share: each thread folds a slice of the reduced
     * range into its row of a [chunks, n] partial, then one step folds that */
    int64_t chunks = n * R / AV_PARALLEL_GRAIN;
    if (chunks > nt) chunks = nt;
    int64_t pshape[2] = {chunks, n};
    av_tensor *part = av_empty(2, pshape, out->dtype);
    av_tensor *pidx = part && idx ? av_empty(2, pshape, AV_I64) : NULL;
    if (!part || (idx && !pidx)) {
        av_release(part);
        return -1;
    }
    av_iter it;
    const av_tensor *ops[3] = {out, &in, idx};
    av_iter_init(&it, out->ndim, out->shape, idx ? 3 : 2, ops);
    size_t isz = av_dtype_size(t->dtype), osz = av_dtype_size(out->dtype);
#pragma omp parallel for num_threads((int)chunks)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t r0 = R * c / chunks, r1 = R * (c + 1) / chunks;
        av_iter itc = it; /* out is contiguous, so a partial row has its layout */
        itc.base[0] = (char *)av_data(part) + c * n * osz;
        itc.base[1] += r0 * g.stride * (int64_t)isz;
        if (idx) itc.base[2] = (char *)av_data(pidx) + c * n * 8;
        av_red_ctx cc = {r1 - r0, g.stride};
        av_iter_run_range(&itc, 0, n, fn, &cc);
    }
    /* the fold: out and part viewed as [1, n] and [chunks, n] */
    av_tensor ov = *out, iv = idx ? *idx : *out;
    ov.ndim = iv.ndim = 2;
    ov.shape[0] = iv.shape[0] = 1;
    ov.shape[1] = iv.shape[1] = n;
    ov.stride[0] = iv.stride[0] = n;
    ov.stride[1] = iv.stride[1] = 1;
    av_tensor pv = *part;
    pv.shape[0] = 1;
    av_red_ctx fc = {chunks, n};
    run_iter(&ov, &pv, idx ? &iv : NULL, av_red_kernels[op][part->dtype], &fc, false);
    if (idx) {
        /* the fold picked a chunk per output; map it to the index inside the whole range */
        int64_t *ix = av_data(idx);
        const int64_t *pi = av_data(pidx);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = ix[i];
            ix[i] = pi[c * n + i] + R * c / chunks;
        }
    }
    av_release(part);
    av_release(pidx);
    return 0;
}

/* ---- the driver ----------------------------------------------------------------- */
static av_dtype result_dtype(av_redop op, av_dtype dt) {
    switch (op) {
    case AV_RED_SUM:
    case AV_RED_PROD: return av_dtype_is_float(dt) ? dt : AV_I64;
    case AV_RED_ALL:
    case AV_RED_ANY: return AV_U8;
    default: return dt; /* arg ops: the values; indices are i64 */
    }
}

/* drops the dims in mask from a fresh contiguous tensor's header */
static void squeeze_mask(av_tensor *t, unsigned mask) {
    if (!t) return;
    int n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (!(mask >> d & 1)) t->shape[n++] = t->shape[d];
    t->ndim = n;
    av_contiguous_strides(n, t->shape, t->stride);
}

static double identity_of(av_redop op) {
    switch (op) {
    case AV_RED_PROD:
    case AV_RED_ALL: return 1;
    case AV_RED_MEAN: return NAN;
    default: return 0;
    }
}

/* Reduces t over the dims in mask (0 reduces nothing: one element per
 * output). MEAN arrives here as SUM; arg ops with at most one dim of size > 1.
 * Returns the values and, for arg ops, the indices in *idx_out. */
/* the end of a reduction into out (and idx for the arg ops): drops the reduced dims unless
 * keepdim, hands idx to idx_out or releases it; on rc != 0 releases both and gives NULL */
static av_tensor *finish_reduce(int rc, av_tensor *out, av_tensor *idx, unsigned mask, bool keepdim,
                                av_tensor **idx_out) {
    if (rc) {
        av_release(out);
        av_release(idx);
        return NULL;
    }
    if (!keepdim) {
        squeeze_mask(out, mask);
        squeeze_mask(idx, mask);
    }
    if (idx_out) *idx_out = idx;
    else av_release(idx);
    return out;
}

static av_tensor *reduce_mask(av_redop op, const av_tensor *t, unsigned mask, bool keepdim, av_tensor **idx_out) {
    const char *fn = redop_names[op];
    int64_t oshape[AV_MAX_DIMS], R = 1;
    for (int d = 0; d < t->ndim; d++) {
        oshape[d] = (mask >> d & 1) ? 1 : t->shape[d];
        if (mask >> d & 1) R *= t->shape[d];
    }
    av_dtype odt = result_dtype(op, t->dtype);
    if (R == 0) {
        if (op == AV_RED_MAX || op == AV_RED_MIN || is_arg(op)) {
            char b[96];
            av_fail("%s: cannot reduce over a zero-size dimension (input of size %s); the operation has no "
                    "identity", fn, av_shape_str(t, b, sizeof b));
            return NULL;
        }
        av_tensor *out = av_full_on(t->ndim, oshape, odt, identity_of(op), av_device_of(t));
        if (!keepdim) squeeze_mask(out, mask);
        return out;
    }
    if (av_is_cuda(t)) {
        av_tensor *out = av_empty_on(t->ndim, oshape, odt, av_device_of(t));
        av_tensor *idx = out && is_arg(op) ? av_empty_on(t->ndim, oshape, AV_I64, av_device_of(t)) : NULL;
        int rc = !out || (is_arg(op) && !idx) ? -1 : 0;
#ifdef AV_WITH_CUDA
        if (!rc) rc = av_cuda_reduce(op, t, mask, out, idx);
#endif
        return finish_reduce(rc, out, idx, mask, keepdim, idx_out);
    }
    red_group g[AV_MAX_DIMS];
    int ng = group_dims(t, mask, g);
    if (ng > 1) {
        /* innermost group first: it is usually the contiguous one */
        av_tensor *part = reduce_mask(op, t, g[ng - 1].dims, true, NULL);
        if (!part) return NULL;
        av_tensor *out = reduce_mask(op, part, mask & ~g[ng - 1].dims, true, NULL);
        av_release(part);
        if (!keepdim) squeeze_mask(out, mask);
        return out;
    }
    red_group one = ng ? g[0] : (red_group){1, 1, 0};
    av_tensor *out = av_empty(t->ndim, oshape, odt);
    av_tensor *idx = out && is_arg(op) ? av_empty(t->ndim, oshape, AV_I64) : NULL;
    int rc = !out || (is_arg(op) && !idx) || reduce_group(op, t, one, out, idx) ? -1 : 0;
    return finish_reduce(rc, out, idx, mask, keepdim, idx_out);
}

/* turns a dim list into a bit mask; ndims == 0 means every dim */
static int dims_mask(const char *fn, const av_tensor *t, int ndims, const int *dims, unsigned *mask) {
    *mask = 0;
    if (ndims < 0 || ndims > AV_MAX_DIMS) return av_fail("%s: %d dims given, at most %d allowed", fn, ndims, AV_MAX_DIMS);
    if (ndims == 0) {
        *mask = (1u << t->ndim) - 1;
        return 0;
    }
    for (int i = 0; i < ndims; i++) {
        int d = av_wrap_dim(dims[i], t->ndim, fn);
        if (d < 0) return -1;
        if (*mask >> d & 1) return av_fail("%s: dim %d (0-based) appears multiple times in the list of dims", fn, d);
        *mask |= 1u << d;
    }
    if (t->ndim == 0) *mask = 0; /* a 0-d tensor accepts dim 0 / -1 and reduces nothing */
    return 0;
}

static int check_float(const char *fn, const av_tensor *t, const char *what) {
    av_dtype dt = t->dtype;
    if (check_dtype_on(fn, t)) return -1;
    if (!av_dtype_is_float(dt))
        return av_fail("%s: %s; got %s", fn, what, av_dtype_name(dt));
    return 0;
}

/* arg ops over every dim index the flattened (row-major) tensor */
static av_tensor *arg_all(av_redop op, const av_tensor *t, bool keepdim) {
    av_tensor *c = av_contiguous(t);
    if (!c) return NULL;
    av_tensor flat = *c;
    flat.ndim = 1;
    flat.shape[0] = av_numel(c);
    flat.stride[0] = 1;
    av_tensor *idx = NULL, *val = reduce_mask(op, &flat, 1, false, &idx);
    av_release(c);
    av_release(val);
    if (idx && keepdim) {
        idx->ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) idx->shape[d] = idx->stride[d] = 1;
    }
    return idx;
}

av_tensor *av_reduce_raw(av_redop op, const av_tensor *t, int ndims, const int *dims, bool keepdim) {
    if ((unsigned)op > AV_RED_ANY) {
        av_fail("reduce: unknown reduction %d", (int)op);
        return NULL;
    }
    const char *fn = redop_names[op];
    unsigned mask;
    if (check_dtype_on(fn, t) || dims_mask(fn, t, ndims, dims, &mask)) return NULL;
    if (op == AV_RED_MEAN && !av_dtype_is_float(t->dtype)) {
        av_fail("mean: could not infer output dtype. Input dtype must be either a floating point or complex "
                "dtype. Got: %s", av_dtype_name(t->dtype));
        return NULL;
    }
    if (is_arg(op)) {
        if (ndims > 1) {
            av_fail("%s: reduces over one dim or all of them, got a list of %d dims", fn, ndims);
            return NULL;
        }
        if (ndims == 0 && t->ndim > 1) return arg_all(op, t, keepdim);
        av_tensor *idx = NULL, *val = reduce_mask(op, t, mask, keepdim, &idx);
        av_release(val);
        return idx;
    }
    if (op != AV_RED_MEAN) return reduce_mask(op, t, mask, keepdim, NULL);
    av_tensor *sum = reduce_mask(AV_RED_SUM, t, mask, keepdim, NULL);
    if (!sum) return NULL;
    int64_t count = 1;
    for (int d = 0; d < t->ndim; d++)
        if (mask >> d & 1) count *= t->shape[d];
    if (av_binary_scalar_(AV_OP_DIV, sum, (double)count)) {
        av_release(sum);
        return NULL;
    }
    return sum;
}

int av_max_dim_raw(const av_tensor *t, int dim, bool keepdim, bool is_min, av_tensor **values, av_tensor **indices) {
    const char *fn = is_min ? "min" : "max";
    *values = *indices = NULL;
    if (check_dtype_on(fn, t)) return -1;
    int d = av_wrap_dim(dim, t->ndim, fn);
    if (d < 0) return -1;
    unsigned mask = t->ndim ? 1u << d : 0;
    av_tensor *idx = NULL;
    av_tensor *val = reduce_mask(is_min ? AV_RED_ARGMIN : AV_RED_ARGMAX, t, mask, keepdim, &idx);
    if (!val) return -1;
    *values = val;
    *indices = idx;
    return 0;
}

/* ---- var / std ------------------------------------------------------------------- */
static av_tensor *var_impl(const char *fn, const av_tensor *t, int ndims, const int *dims, int64_t correction,
                           bool keepdim) {
    unsigned mask;
    if (check_float(fn, t, "std and var only support floating point dtypes") ||
        dims_mask(fn, t, ndims, dims, &mask))
        return NULL;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (mask >> d & 1) n *= t->shape[d];
    av_tensor *mean = av_reduce(AV_RED_MEAN, t, ndims, dims, true);
    if (!mean) return NULL;
    red_group g[AV_MAX_DIMS];
    int ng = n ? group_dims(t, mask, g) : 0;
    av_tensor *ss = NULL;
    if (ng <= 1 && n && !av_is_cuda(t)) {
        red_group one = ng ? g[0] : (red_group){1, 1, 0};
        ss = av_empty(mean->ndim, mean->shape, t->dtype);
        if (ss) {
            av_tensor in = *t;
            for (int d = 0; d < t->ndim; d++)
                if (one.dims >> d & 1) in.shape[d] = 1;
            av_red_ctx ctx = {one.size, one.stride};
            run_iter(ss, &in, mean, av_red_sqdev_kernels[t->dtype], &ctx, true);
        }
        if (ss && !keepdim) squeeze_mask(ss, mask);
    } else {
        /* dims that don't merge: centre, square and sum with the general ops */
        av_tensor *dev = av_binary(AV_OP_SUB, t, mean);
        if (dev && !av_binary_(AV_OP_MUL, dev, dev)) ss = reduce_mask(AV_RED_SUM, dev, mask, keepdim, NULL);
        av_release(dev);
    }
    av_release(mean);
    /* PyTorch divides by max(0, N - correction): N <= correction gives inf or nan */
    double div = (double)(n - correction > 0 ? n - correction : 0);
    if (ss && av_binary_scalar_(AV_OP_DIV, ss, div)) {
        av_release(ss);
        return NULL;
    }
    return ss;
}

av_tensor *av_var_raw(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
    return var_impl("var", t, ndims, dims, correction, keepdim);
}

av_tensor *av_std_raw(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
    av_tensor *v = var_impl("std", t, ndims, dims, correction, keepdim);
    if (v && av_unary_(AV_OP_SQRT, v)) {
        av_release(v);
        return NULL;
    }
    return v;
}

/* ---- norm --------------------------------------------------------------------------- */
av_tensor *av_norm_raw(const av_tensor *t, double p, int ndims, const int *dims, bool keepdim) {
    unsigned mask;
    if (check_float("norm", t, "input dtype should be floating point") ||
        dims_mask("norm", t, ndims, dims, &mask))
        return NULL;
    if (isnan(p)) {
        av_fail("norm: the order p must be a number, got nan");
        return NULL;
    }
    av_tensor *a, *r = NULL;
    if (p == 0) {
        /* "0-norm": how many elements are non-zero, in the input's dtype */
        av_stack_scalar zero;
        a = av_binary(AV_OP_NE, t, av_stack_scalar_init(&zero, 0, t->dtype));
        av_tensor *cnt = a ? reduce_mask(AV_RED_SUM, a, mask, keepdim, NULL) : NULL;
        r = cnt ? av_to_dtype(cnt, t->dtype) : NULL;
        av_release(cnt);
        av_release(a);
        return r;
    }
    if (p == 2) {
        a = av_unary(AV_OP_SQUARE, t);
    } else {
        a = av_unary(AV_OP_ABS, t);
        if (a && isfinite(p) && p != 1 && av_binary_scalar_(AV_OP_POW, a, p)) {
            av_release(a);
            return NULL;
        }
    }
    if (!a) return NULL;
    if (isinf(p)) {
        r = reduce_mask(p > 0 ? AV_RED_MAX : AV_RED_MIN, a, mask, keepdim, NULL);
        if (!r) av_fail("norm: cannot compute the %s norm of an empty tensor: the operation has no identity",
                        p > 0 ? "inf" : "-inf");
    } else {
        r = reduce_mask(AV_RED_SUM, a, mask, keepdim, NULL);
        int rc = 0;
        if (r && p == 2) rc = av_unary_(AV_OP_SQRT, r);
        else if (r && p != 1) rc = av_binary_scalar_(AV_OP_POW, r, 1.0 / p);
        if (rc) {
            av_release(r);
            r = NULL;
        }
    }
    av_release(a);
    return r;
}
