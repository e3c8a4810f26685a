/* Derivatives of view ops and of matrix products. */
#include <stdlib.h>
#include <string.h>
#include "aviary/cuda.h"
#include "grad.h"

static int record1(const char *name, av_backward_fn fn, av_tensor *out, const av_tensor *in, av_node **made) {
    *made = NULL;
    if (!av_should_record(1, &in)) return 0;
    av_node *n = av_node_new(name, fn, 1, &in, 1);
    if (!n) return av_fail("out of memory");
    n->ndim = in->ndim;
    memcpy(n->shape, in->shape, sizeof(int64_t) * in->ndim);
    n->dtype = in->dtype;
    *made = n;
    return 0;
}
static int attach(av_node *n, av_tensor *out) {
    if (!n) return 0;
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

/* view, reshape, squeeze, unsqueeze, flatten: reshape the gradient back */
static int view_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_reshape(gout[0], n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}
int av_ag_view(av_tensor *out, const av_tensor *in) {
    av_node *n;
    if (record1("ViewBackward", view_backward, out, in, &n)) return -1;
    return attach(n, out);
}

static int permute_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    int inv[AV_MAX_DIMS];
    for (int i = 0; i < n->ndim; i++) inv[n->iarg[i]] = i;
    gin[0] = av_permute(gout[0], inv);
    return gin[0] ? 0 : -1;
}
int av_ag_permute(av_tensor *out, const av_tensor *in, const int *dims) {
    av_node *n;
    if (record1("PermuteBackward", permute_backward, out, in, &n)) return -1;
    if (n)
        for (int i = 0; i < in->ndim; i++) n->iarg[i] = dims[i] < 0 ? dims[i] + in->ndim : dims[i];
    return attach(n, out);
}

/* narrow and select: the gradient lands in a zero tensor of the input's size */
static int slice_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    av_tensor *z = av_zeros_on(n->ndim, n->shape, gout[0]->dtype, av_device_of(gout[0]));
    if (!z) return -1;
    av_tensor *part = n->iarg[2] < 0 ? av_narrow(z, (int)n->iarg[0], n->iarg[1], -n->iarg[2] - 1)
                                     : av_select(z, (int)n->iarg[0], n->iarg[1]);
    int rc = part ? av_copy_(part, gout[0]) : -1;
    av_release(part);
    if (rc) { av_release(z); return -1; }
    gin[0] = z;
    return 0;
}
int av_ag_narrow(av_tensor *out, const av_tensor *in, int dim, int64_t start, int64_t length) {
    av_node *n;
    if (record1("NarrowBackward", slice_backward, out, in, &n)) return -1;
    if (n) { n->iarg[0] = dim; n->iarg[1] = start; n->iarg[2] = -length - 1; }
    return attach(n, out);
}
int av_ag_select(av_tensor *out, const av_tensor *in, int dim, int64_t index) {
    av_node *n;
    if (record1("SelectBackward", slice_backward, out, in, &n)) return -1;
    if (n) { n->iarg[0] = dim; n->iarg[1] = index; n->iarg[2] = 0; }
    return attach(n, out);
}

static int expand_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_sum_to(gout[0], n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}
int av_ag_expand(av_tensor *out, const av_tensor *in) {
    av_node *n;
    if (record1("ExpandBackward", expand_backward, out, in, &n)) return -1;
    return attach(n, out);
}

/* ---- matrix products ------------------------------------------------------------ */
static av_tensor *tr(const av_tensor *t) { return av_transpose(t, -2, -1); }
static av_tensor *mm_t(const av_tensor *a, const av_tensor *b, bool ta, bool tb, bool batched) {
    av_tensor *x = ta ? tr(a) : av_retain((av_tensor *)a), *y = tb ? tr(b) : av_retain((av_tensor *)b);
    av_tensor *r = (x && y) ? (batched ? av_bmm(x, y) : av_mm(x, y)) : NULL;
    av_release(x);
    av_release(y);
    return r;
}

/* C = A B: dA = dC B^T, dB = A^T dC (mm, bmm); addmm scales by alpha and beta */
static int mm_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *a = av_node_saved(n, 0), *b = av_node_saved(n, 1);
    if (!a || !b) return -1;
    bool batched = n->iarg[0];
    int off = n->n_next == 3 ? 1 : 0; /* addmm: input 0 is the bias */
    double alpha = n->n_next == 3 ? n->darg[1] : 1;
    av_tensor *g = alpha == 1 ? av_retain((av_tensor *)gout[0]) : ag_muls(gout[0], alpha);
    if (!g) return -1;
    if (off && n->next[0].node) {
        av_tensor *gb = n->darg[0] == 1 ? av_retain((av_tensor *)gout[0]) : ag_muls(gout[0], n->darg[0]);
        gin[0] = gb ? av_sum_to(gb, n->ndim, n->shape) : NULL;
        av_release(gb);
        if (!gin[0]) { av_release(g); return -1; }
    }
    if (n->next[off].node && !(gin[off] = mm_t(g, b, false, true, batched))) { av_release(g); return -1; }
    if (n->next[off + 1].node && !(gin[off + 1] = mm_t(a, g, true, false, batched))) { av_release(g); return -1; }
    av_release(g);
    return 0;
}

int av_ag_mm(av_tensor *out, const av_tensor *a, const av_tensor *b, bool batched) {
    const av_tensor *ins[2] = {a, b};
    if (!av_should_record(2, ins) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new(batched ? "BmmBackward" : "MmBackward", mm_backward, 2, ins, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = batched;
    av_tensor *da = av_detach(a), *db = av_detach(b);
    av_node_save(n, da);
    av_node_save(n, db);
    av_release(da);
    av_release(db);
    return attach(n, out);
}

int av_ag_addmm(av_tensor *out, const av_tensor *c, const av_tensor *a, const av_tensor *b, double beta, double alpha) {
    const av_tensor *ins[3] = {c, a, b};
    if (!av_should_record(3, ins) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new("AddmmBackward", mm_backward, 3, ins, 1);
    if (!n) return av_fail("out of memory");
    n->darg[0] = beta;
    n->darg[1] = alpha;
    n->ndim = c->ndim;
    memcpy(n->shape, c->shape, sizeof(int64_t) * c->ndim);
    av_tensor *da = av_detach(a), *db = av_detach(b);
    av_node_save(n, da);
    av_node_save(n, db);
    av_release(da);
    av_release(db);
    return attach(n, out);
}
