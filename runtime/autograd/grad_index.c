/* Joining and indexing with graph recording. */
#include <stdlib.h>
#include <string.h>
#include "aviary/cuda.h"
#include "grad.h"
#include "../ops/cpu/iter.h"


static void set_shape(av_node *n, const av_tensor *t) {
    n->ndim = t->ndim;
    memcpy(n->shape, t->shape, sizeof(int64_t) * t->ndim);
    n->dtype = t->dtype;
}
/* ---- cat and stack ------------------------------------------------------------ */
/* iarg[0] = dim, iarg[1] = stack?; extra = sizes along dim of each input */
static int cat_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const int64_t *sizes = n->extra;
    int dim = (int)n->iarg[0];
    int64_t pos = 0;
    for (int i = 0; i < n->n_next; i++) {
        if (n->next[i].node) {
            gin[i] = n->iarg[1] ? av_select(gout[0], dim, i) : av_narrow(gout[0], dim, pos, sizes[i]);
            if (!gin[i]) return -1;
        }
        pos += n->iarg[1] ? 1 : sizes[i];
    }
    return 0;
}

static av_tensor *join(bool stack, int n, av_tensor *const *ts, int dim) {
    av_tensor *out;
    NO_GRAD(out = stack ? av_stack_raw(n, ts, dim) : av_cat_raw(n, ts, dim));
    if (!out || !av_should_record(n, (const av_tensor *const *)ts) || !av_dtype_is_float(out->dtype)) return out;
    av_node *node = av_node_new(stack ? "StackBackward" : "CatBackward", cat_backward, n, (const av_tensor *const *)ts, 1);
    int64_t *sizes = calloc(n, sizeof *sizes);
    if (!node || !sizes) { free(sizes); if (node) av_node_release(node); av_release(out); av_fail("out of memory"); return NULL; }
    int d = dim < 0 ? dim + (stack ? ts[0]->ndim + 1 : ts[0]->ndim) : dim;
    for (int i = 0; i < n; i++) sizes[i] = (!stack && ts[i]->ndim > d) ? ts[i]->shape[d] : (stack ? 1 : 0);
    node->iarg[0] = d;
    node->iarg[1] = stack;
    node->extra = sizes;
    return av_ag_finish(out, av_node_finish(node, out));
}
av_tensor *av_cat(int n, av_tensor *const *ts, int dim) { return join(false, n, ts, dim); }
av_tensor *av_stack(int n, av_tensor *const *ts, int dim) { return join(true, n, ts, dim); }

/* ---- index_select and gather: scatter-add back ------------------------------------- */
/* iarg[0] = dim, iarg[1] = 1 for index_select (1-d index along dim) */
static int gather_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *idx = av_node_saved(n, 0);
    if (!idx) return -1;
    int dim = (int)n->iarg[0];
    av_tensor *z = av_zeros_on(n->ndim, n->shape, gout[0]->dtype, av_device_of(gout[0])), *ix = NULL;
    if (!z) return -1;
    if (n->iarg[1] && n->ndim > 0) { /* a 1-d index spread over the gradient's shape */
        int64_t s[AV_MAX_DIMS];
        for (int d = 0; d < n->ndim; d++) s[d] = d == dim ? idx->shape[0] : 1;
        av_tensor *v = av_reshape(idx, n->ndim, s);
        ix = v ? av_expand(v, gout[0]->ndim, gout[0]->shape) : NULL;
        av_release(v);
    } else ix = av_retain((av_tensor *)idx);
    int rc = ix ? av_scatter_(z, dim, ix, gout[0], "add") : -1;
    av_release(ix);
    if (rc) { av_release(z); return -1; }
    gin[0] = z;
    return 0;
}

static av_tensor *gather_like(bool select, const av_tensor *t, int dim, const av_tensor *index) {
    av_tensor *out;
    NO_GRAD(out = select ? av_index_select_raw(t, dim, index) : av_gather_raw(t, dim, index));
    if (!out || !av_should_record(1, &t) || !av_dtype_is_float(out->dtype)) return out;
    av_node *n = av_node_new(select ? "IndexSelectBackward" : "GatherBackward", gather_backward, 1, &t, 1);
    if (n) {
        set_shape(n, t);
        n->iarg[0] = t->ndim ? (dim < 0 ? dim + t->ndim : dim) : 0;
        n->iarg[1] = select;
        av_tensor *ix = av_to_dtype(index, AV_I64); /* scatter wants int64 */
        av_node_save(n, ix);
        av_release(ix);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}
av_tensor *av_index_select(const av_tensor *t, int dim, const av_tensor *index) { return gather_like(true, t, dim, index); }
av_tensor *av_gather(const av_tensor *t, int dim, const av_tensor *index) { return gather_like(false, t, dim, index); }

/* ---- scatter ------------------------------------------------------------------------- */
/* self's gradient is g with the overwritten places zeroed; src's is g gathered */
static int scatter_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *idx = av_node_saved(n, 0);
    if (!idx) return -1;
    if (n->iarg[1] == 2) return av_fail("scatter with reduce='multiply' is not differentiable");
    int dim = (int)n->iarg[0];
    if (n->next[0].node) {
        if (n->iarg[1] == 1) gin[0] = av_retain((av_tensor *)gout[0]); /* add: self passes through */
        else {
            av_tensor *zero = av_zeros_on(idx->ndim, idx->shape, gout[0]->dtype, av_device_of(gout[0]));
            gin[0] = zero ? av_scatter_raw(gout[0], dim, idx, zero, NULL) : NULL;
            av_release(zero);
        }
        if (!gin[0]) return -1;
    }
    if (n->next[1].node) {
        av_tensor *gg = av_gather(gout[0], dim, idx);
        /* src may be larger than index: its unused part gets zero */
        if (gg && (gg->ndim != n->ndim || memcmp(gg->shape, n->shape, sizeof(int64_t) * n->ndim))) {
            av_tensor *z = av_zeros_on(n->ndim, n->shape, gg->dtype, av_device_of(gg)), *part = z;
            av_retain(part);
            for (int d = 0; d < n->ndim && part; d++) {
                av_tensor *p2 = av_narrow(part, d, 0, gg->shape[d]);
                av_release(part);
                part = p2;
            }
            int rc = part ? av_copy_(part, gg) : -1;
            av_release(part);
            av_release(gg);
            gg = rc ? (av_release(z), NULL) : z;
        }
        gin[1] = gg;
        if (!gin[1]) return -1;
    }
    return 0;
}

av_tensor *av_scatter(const av_tensor *t, int dim, const av_tensor *index, const av_tensor *src, const char *reduce) {
    av_tensor *out;
    NO_GRAD(out = av_scatter_raw(t, dim, index, src, reduce));
    const av_tensor *ins[2] = {t, src};
    if (!out || !av_should_record(2, ins) || !av_dtype_is_float(out->dtype)) return out;
    av_node *n = av_node_new("ScatterBackward", scatter_backward, 2, ins, 1);
    if (n) {
        set_shape(n, src);
        n->iarg[0] = t->ndim ? (dim < 0 ? dim + t->ndim : dim) : 0;
        n->iarg[1] = !reduce ? 0 : !strcmp(reduce, "add") ? 1 : 2;
        av_tensor *ix = av_to_dtype(index, AV_I64);
        av_node_save(n, ix);
        av_release(ix);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

/* ---- masked_fill, masked_select ---------------------------------------------------------- */
static int masked_fill_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *mask = av_node_saved(n, 0);
    if (!mask) return -1;
    av_tensor *g = av_masked_fill(gout[0], mask, 0);
    gin[0] = g ? av_sum_to(g, n->ndim, n->shape) : NULL;
    av_release(g);
    return gin[0] ? 0 : -1;
}

av_tensor *av_masked_fill(const av_tensor *t, const av_tensor *mask, double value) {
    av_tensor *out;
    NO_GRAD(out = av_masked_fill_raw(t, mask, value));
    if (!out || !av_should_record(1, &t) || !av_dtype_is_float(out->dtype)) return out;
    av_node *n = av_node_new("MaskedFillBackward", masked_fill_backward, 1, &t, 1);
    if (n) {
        set_shape(n, t);
        av_node_save_detached(n, mask);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

/* the selected gradient values go back to the masked places, in order */
static int masked_select_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *mask = av_node_saved(n, 0);
    if (!mask) return -1;
    int64_t total = av_numel(mask);
    av_tensor *mflat = av_reshape(mask, 1, &total);
    av_tensor *nz = mflat ? av_nonzero(mflat) : NULL;           /* [k, 1] positions */
    av_tensor *pos = nz ? av_reshape(nz, 1, (int64_t[]){nz->shape[0]}) : NULL;
    av_tensor *z = av_zeros_on(1, &total, gout[0]->dtype, av_device_of(gout[0]));
    int rc = (pos && z) ? av_scatter_(z, 0, pos, gout[0], NULL) : -1;
    av_tensor *full = rc ? NULL : av_reshape(z, mask->ndim, mask->shape);
    gin[0] = full ? av_sum_to(full, n->ndim, n->shape) : NULL;
    av_release(mflat); av_release(nz); av_release(pos); av_release(z); av_release(full);
    return gin[0] ? 0 : -1;
}

av_tensor *av_masked_select(const av_tensor *t, const av_tensor *mask) {
    av_tensor *out;
    NO_GRAD(out = av_masked_select_raw(t, mask));
    if (!out || !av_should_record(1, &t) || !av_dtype_is_float(out->dtype)) return out;
    av_node *n = av_node_new("MaskedSelectBackward", masked_select_backward, 1, &t, 1);
    if (n) {
        set_shape(n, t);
        /* the mask broadcast to the result's full shape, as a u8 copy */
        int nd;
        int64_t s[AV_MAX_DIMS];
        av_tensor *m = NULL;
        if (!av_broadcast_shape("masked_select", t->ndim, t->shape, mask->ndim, mask->shape, &nd, s)) {
            av_tensor *e = av_expand(mask, nd, s), *c = e ? av_clone(e) : NULL;
            m = c ? av_to_dtype(c, AV_U8) : NULL;
            av_release(e);
            av_release(c);
        }
        av_node_save(n, m);
        av_release(m);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}
