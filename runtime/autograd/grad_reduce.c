/* Reductions with graph recording: each public reduction runs the raw CPU
 * kernel with recording off and records one node for the whole op. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/cuda.h"
#include "grad.h"


static unsigned dims_mask(const av_tensor *t, int ndims, const int *dims) {
    if (ndims == 0) return t->ndim ? (1u << t->ndim) - 1 : 0;
    unsigned m = 0;
    for (int i = 0; i < ndims; i++) m |= 1u << (dims[i] < 0 ? dims[i] + t->ndim : dims[i]);
    return m;
}

/* g viewed with size-1 dims where the input was reduced (undoes keepdim=false) */
static av_tensor *keepdim_view(av_node *n, const av_tensor *g) {
    unsigned mask = (unsigned)n->iarg[1];
    int64_t s[AV_MAX_DIMS];
    for (int d = 0; d < n->ndim; d++) s[d] = (mask >> d & 1) ? 1 : n->shape[d];
    return av_reshape(g, n->ndim, s);
}
/* g broadcast back over the input's shape (a view, no copy) */
static av_tensor *spread(av_node *n, const av_tensor *g) {
    av_tensor *k = keepdim_view(n, g);
    av_tensor *e = k ? av_expand(k, n->ndim, n->shape) : NULL;
    av_release(k);
    return e;
}
static int64_t reduced_count(av_node *n) {
    int64_t c = 1;
    for (int d = 0; d < n->ndim; d++)
        if (n->iarg[1] >> d & 1) c *= n->shape[d];
    return c;
}

static av_node *new_node(const char *name, av_backward_fn fn, const av_tensor *t, unsigned mask, bool keepdim) {
    av_node *n = av_node_new(name, fn, 1, &t, 1);
    if (!n) return NULL;
    n->ndim = t->ndim;
    memcpy(n->shape, t->shape, sizeof(int64_t) * t->ndim);
    n->iarg[1] = mask;
    n->iarg[2] = keepdim;
    return n;
}
/* ---- sum, mean, prod, max, min --------------------------------------------------- */
static int reduce_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    av_redop op = (av_redop)n->iarg[0];
    av_tensor *g = spread(n, gout[0]);
    if (!g) return -1;
    if (op == AV_RED_SUM) { gin[0] = g; return 0; }
    if (op == AV_RED_MEAN) {
        gin[0] = ag_muls(g, 1.0 / (double)reduced_count(n));
        av_release(g);
        return gin[0] ? 0 : -1;
    }
    const av_tensor *x = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    if (!x || !out) { av_release(g); return -1; }
    av_tensor *o = spread(n, out), *r = NULL;
    if (!o) { av_release(g); return -1; }
    if (op == AV_RED_MAX || op == AV_RED_MIN) {
        /* ties share the gradient evenly, as PyTorch's max()/amax() do */
        av_tensor *eq = av_binary(AV_OP_EQ, x, o), *f = eq ? av_to_dtype(eq, x->dtype) : NULL;
        int dims[AV_MAX_DIMS], nd = 0;
        for (int d = 0; d < n->ndim; d++)
            if (n->iarg[1] >> d & 1) dims[nd++] = d;
        av_tensor *cnt = f ? av_reduce(AV_RED_SUM, f, nd, dims, true) : NULL;
        av_tensor *share = cnt ? ag_div(f, cnt) : NULL;
        r = share ? ag_mul(g, share) : NULL;
        av_release(eq); av_release(f); av_release(cnt); av_release(share);
    } else { /* prod: g * prod(others), exact with zeros */
        av_tensor *nz = av_binary_scalar(AV_OP_NE, x, 0, false);
        av_tensor *one = av_scalar_tensor(1, x->dtype), *zero = av_scalar_tensor(0, x->dtype);
        av_tensor *x1 = (nz && one) ? av_where(nz, x, one) : NULL;
        int dims[AV_MAX_DIMS], nd = 0;
        for (int d = 0; d < n->ndim; d++)
            if (n->iarg[1] >> d & 1) dims[nd++] = d;
        av_tensor *pnz = x1 ? av_reduce(AV_RED_PROD, x1, nd, dims, true) : NULL; /* product of non-zeros */
        av_tensor *isz = nz ? av_unary(AV_OP_LOGICAL_NOT, nz) : NULL;
        av_tensor *zf = isz ? av_to_dtype(isz, x->dtype) : NULL;
        av_tensor *nzero = zf ? av_reduce(AV_RED_SUM, zf, nd, dims, true) : NULL;
        av_tensor *q = (o && x1) ? ag_div(o, x1) : NULL;            /* out / x where x != 0 */
        av_tensor *one_zero = nzero ? av_binary_scalar(AV_OP_EQ, nzero, 1, false) : NULL;
        av_tensor *at_zero = (one_zero && pnz && zero) ? av_where(one_zero, pnz, zero) : NULL;
        av_tensor *d = (nz && q && at_zero) ? av_where(nz, q, at_zero) : NULL;
        r = d ? ag_mul(g, d) : NULL;
        av_release(nz); av_release(one); av_release(zero); av_release(x1); av_release(pnz); av_release(isz);
        av_release(zf); av_release(nzero); av_release(q); av_release(one_zero); av_release(at_zero); av_release(d);
    }
    av_release(o);
    av_release(g);
    gin[0] = r;
    return r ? 0 : -1;
}

av_tensor *av_reduce(av_redop op, const av_tensor *t, int ndims, const int *dims, bool keepdim) {
    av_tensor *out;
    NO_GRAD(out = av_reduce_raw(op, t, ndims, dims, keepdim));
    if (!out || !av_should_record(1, &t) || !av_dtype_is_float(out->dtype)) return out;
    static const char *names[] = {"SumBackward", "MeanBackward", "ProdBackward", "MaxBackward", "MinBackward"};
    if (op > AV_RED_MIN) return out;
    av_node *n = new_node(names[op], reduce_backward, t, dims_mask(t, ndims, dims), keepdim);
    if (n) n->iarg[0] = op;
    if (n && op >= AV_RED_PROD) {
        av_node_save_detached(n, t);
        av_node_save_detached(n, out);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

/* ---- max/min over a dim with indices ------------------------------------------------- */
/* the gradient goes to the position the indices name: one-hot along dim */
static int index_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *idx = av_node_saved(n, 0);
    if (!idx) return -1;
    int dim = (int)n->iarg[3];
    av_tensor *z = av_zeros_on(n->ndim, n->shape, gout[0]->dtype, av_device_of(gout[0]));
    av_tensor *ik = NULL, *gk = NULL;
    if (!z) return -1;
    if (n->iarg[2]) { ik = av_retain((av_tensor *)idx); gk = av_retain((av_tensor *)gout[0]); }
    else { ik = av_unsqueeze(idx, dim); gk = av_unsqueeze(gout[0], dim); }
    int rc = (ik && gk) ? av_scatter_(z, dim, ik, gk, NULL) : -1;
    av_release(ik);
    av_release(gk);
    if (rc) { av_release(z); return -1; }
    gin[0] = z;
    return 0;
}

/* records the values of max(dim)/sort/topk: the gradient goes through the indices */
static int record_indexed(const char *name, const av_tensor *t, unsigned mask, bool keepdim, int d, av_tensor **values,
                          av_tensor **indices) {
    av_node *n = new_node(name, index_backward, t, mask, keepdim);
    if (n) {
        n->iarg[3] = d;
        av_node_save(n, *indices);
    }
    if (av_node_finish(n, *values)) {
        av_release(*values);
        av_release(*indices);
        *values = *indices = NULL;
        return -1;
    }
    return 0;
}

int av_max_dim(const av_tensor *t, int dim, bool keepdim, bool is_min, av_tensor **values, av_tensor **indices) {
    int rc;
    NO_GRAD(rc = av_max_dim_raw(t, dim, keepdim, is_min, values, indices));
    if (rc || !av_should_record(1, &t) || !av_dtype_is_float(t->dtype) || t->ndim == 0) return rc;
    int d = dim < 0 ? dim + t->ndim : dim;
    return record_indexed(is_min ? "MinBackward" : "MaxBackward", t, 1u << d, keepdim, d, values, indices);
}

/* sort and topk values: the same scatter through the returned indices */
static int sort_like(const char *name, int rc, const av_tensor *t, int dim, av_tensor **values, av_tensor **indices) {
    if (rc || !av_should_record(1, &t) || !av_dtype_is_float(t->dtype)) return rc;
    int d = t->ndim ? (dim < 0 ? dim + t->ndim : dim) : 0;
    return record_indexed(name, t, 0, true, d, values, indices);
}
int av_sort(const av_tensor *t, int dim, bool descending, av_tensor **values, av_tensor **indices) {
    int rc;
    NO_GRAD(rc = av_sort_raw(t, dim, descending, values, indices));
    return sort_like("SortBackward", rc, t, dim, values, indices);
}
int av_topk(const av_tensor *t, int64_t k, int dim, bool largest, bool sorted, av_tensor **values,
            av_tensor **indices) {
    int rc;
    NO_GRAD(rc = av_topk_raw(t, k, dim, largest, sorted, values, indices));
    return sort_like("TopkBackward", rc, t, dim, values, indices);
}

/* ---- var, std, norm --------------------------------------------------------------------- */
static int var_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    if (!x || !out) return -1;
    int dims[AV_MAX_DIMS], nd = 0;
    for (int d = 0; d < n->ndim; d++)
        if (n->iarg[1] >> d & 1) dims[nd++] = d;
    double denom = (double)(reduced_count(n) - n->iarg[3]);
    av_tensor *mean = av_reduce(AV_RED_MEAN, x, nd, dims, true);
    av_tensor *dev = mean ? ag_sub(x, mean) : NULL;
    av_tensor *g = spread(n, gout[0]), *r = NULL;
    if (dev && g) {
        if (n->iarg[0] == 0) r = ag_mul_take(g, ag_muls(dev, 2.0 / denom)); /* var */
        else {                                                              /* std: dev / (denom * std) */
            av_tensor *o = spread(n, out), *q = o ? ag_div(dev, o) : NULL;
            r = q ? ag_mul_take(g, ag_muls(q, 1.0 / denom)) : NULL;
            av_release(o);
            av_release(q);
        }
    }
    av_release(mean); av_release(dev); av_release(g);
    gin[0] = r;
    return r ? 0 : -1;
}

static av_tensor *var_std(bool is_std, const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
    av_tensor *out;
    NO_GRAD(out = is_std ? av_std_raw(t, ndims, dims, correction, keepdim) : av_var_raw(t, ndims, dims, correction, keepdim));
    if (!out || !av_should_record(1, &t)) return out;
    av_node *n = new_node(is_std ? "StdBackward" : "VarBackward", var_backward, t, dims_mask(t, ndims, dims), keepdim);
    if (n) {
        n->iarg[0] = is_std;
        n->iarg[3] = correction;
        av_node_save_detached(n, t);
        av_node_save_detached(n, out);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}
av_tensor *av_var(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
    return var_std(false, t, ndims, dims, correction, keepdim);
}
av_tensor *av_std(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
    return var_std(true, t, ndims, dims, correction, keepdim);
}

static int norm_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    if (!x || !out) return -1;
    double p = n->darg[0];
    av_tensor *g = spread(n, gout[0]), *o = spread(n, out), *d = NULL;
    if (!g || !o) { av_release(g); av_release(o); return -1; }
    if (p == 0) d = ag_zeros_like(x);
    else if (p == 1) d = av_unary(AV_OP_SIGN, x);
    else if (isinf(p)) { /* the extreme |x| take the gradient, shared evenly, with x's sign */
        av_tensor *ax = av_unary(AV_OP_ABS, x), *eq = ax ? av_binary(AV_OP_EQ, ax, o) : NULL;
        av_tensor *f = eq ? av_to_dtype(eq, x->dtype) : NULL;
        int dims[AV_MAX_DIMS], nd = 0;
        for (int k = 0; k < n->ndim; k++)
            if (n->iarg[1] >> k & 1) dims[nd++] = k;
        av_tensor *cnt = f ? av_reduce(AV_RED_SUM, f, nd, dims, true) : NULL;
        av_tensor *sh = cnt ? ag_div(f, cnt) : NULL, *sg = av_unary(AV_OP_SIGN, x);
        d = (sh && sg) ? ag_mul(sh, sg) : NULL;
        av_release(ax); av_release(eq); av_release(f); av_release(cnt); av_release(sh); av_release(sg);
    } else { /* sign(x) |x|^(p-1) / norm^(p-1), 0 where the norm is 0 */
        av_tensor *ax = av_unary(AV_OP_ABS, x), *sg = av_unary(AV_OP_SIGN, x);
        av_tensor *num = ax ? (p == 2 ? av_retain(ax) : av_binary_scalar(AV_OP_POW, ax, p - 1, false)) : NULL;
        av_tensor *den = p == 2 ? av_retain(o) : av_binary_scalar(AV_OP_POW, o, p - 1, false);
        av_tensor *q = (num && den) ? ag_div(num, den) : NULL;
        av_tensor *nzm = av_binary_scalar(AV_OP_EQ, o, 0, false), *zero = av_scalar_tensor(0, x->dtype);
        av_tensor *qz = (q && nzm && zero) ? av_where(nzm, zero, q) : NULL;
        d = (qz && sg) ? ag_mul(qz, sg) : NULL;
        av_release(ax); av_release(sg); av_release(num); av_release(den); av_release(q); av_release(nzm);
        av_release(zero); av_release(qz);
    }
    gin[0] = d ? ag_mul(g, d) : NULL;
    av_release(d); av_release(g); av_release(o);
    return gin[0] ? 0 : -1;
}

av_tensor *av_norm(const av_tensor *t, double p, int ndims, const int *dims, bool keepdim) {
    av_tensor *out;
    NO_GRAD(out = av_norm_raw(t, p, ndims, dims, keepdim));
    if (!out || !av_should_record(1, &t)) return out;
    av_node *n = new_node("NormBackward", norm_backward, t, dims_mask(t, ndims, dims), keepdim);
    if (n) {
        n->darg[0] = p;
        av_node_save_detached(n, t);
        av_node_save_detached(n, out);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

/* ---- cumsum, cumprod ---------------------------------------------------------------------- */
/* reverse cumulative sum along dim: total - cumsum + self */
static av_tensor *rev_cumsum(const av_tensor *g, int dim) {
    av_tensor *c = av_cumsum(g, dim), *tot = av_reduce(AV_RED_SUM, g, 1, &dim, true);
    av_tensor *a = (c && tot) ? ag_sub(tot, c) : NULL, *r = a ? ag_add(a, g) : NULL;
    av_release(c); av_release(tot); av_release(a);
    return r;
}
static int cum_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    int dim = (int)n->iarg[3];
    if (n->iarg[0] == 0) { gin[0] = rev_cumsum(gout[0], dim); return gin[0] ? 0 : -1; }
    const av_tensor *x = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    if (!x || !out) return -1;
    /* d/dx_i sum_j g_j out_j = sum_{j>=i} g_j out_j / x_i (inputs without zeros) */
    av_tensor *go = ag_mul(gout[0], out), *rc = go ? rev_cumsum(go, dim) : NULL;
    gin[0] = rc ? ag_div(rc, x) : NULL;
    av_release(go); av_release(rc);
    return gin[0] ? 0 : -1;
}
static av_tensor *cum(bool prod, const av_tensor *t, int dim) {
    av_tensor *out;
    NO_GRAD(out = prod ? av_cumprod_raw(t, dim) : av_cumsum_raw(t, dim));
    if (!out || !av_should_record(1, &t) || !av_dtype_is_float(out->dtype)) return out;
    av_node *n = new_node(prod ? "CumprodBackward" : "CumsumBackward", cum_backward, t, 0, true);
    if (n) {
        n->iarg[0] = prod;
        n->iarg[3] = t->ndim ? (dim < 0 ? dim + t->ndim : dim) : 0;
        if (prod) { av_node_save_detached(n, t); av_node_save_detached(n, out); }
    }
    return av_ag_finish(out, av_node_finish(n, out));
}
av_tensor *av_cumsum(const av_tensor *t, int dim) { return cum(false, t, dim); }
av_tensor *av_cumprod(const av_tensor *t, int dim) { return cum(true, t, dim); }
