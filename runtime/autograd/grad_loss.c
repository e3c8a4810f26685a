/* Graph recording for the loss family: softmax / log_softmax, the fused
 * cross entropy and nll_loss, binary cross entropy with logits,
 * interpolation and padding. Each op records one node whose backward calls
 * the family's raw backward kernel. (linear, mse_loss and l1_loss are
 * composed of differentiable ops and record nothing here.) */
#include <stdlib.h>
#include <string.h>
#include "grad_loss.h"

static void keep_shape(av_node *n, const av_tensor *t) {
    n->ndim = t->ndim;
    memcpy(n->shape, t->shape, sizeof(int64_t) * t->ndim);
    n->dtype = t->dtype;
}

/* ---- linear --------------------------------------------------------------------------- */
static int linear_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x2 = av_node_saved(n, 0), *w = av_node_saved(n, 1);
    if (!x2 || !w) return -1;
    int64_t s2[2] = {x2->shape[0], w->shape[0]};
    av_tensor *g2 = av_reshape(gout[0], 2, s2);
    if (!g2) return -1;
    av_tensor *dx2 = NULL;
    int rc = av_linear_backward_raw(g2, x2, w, n->next[2].node != NULL, n->next[0].node ? &dx2 : NULL,
                                    n->next[1].node ? &gin[1] : NULL, n->next[2].node ? &gin[2] : NULL);
    av_release(g2);
    if (rc) return -1;
    if (dx2) {
        gin[0] = av_reshape(dx2, n->ndim, n->shape);
        av_release(dx2);
        if (!gin[0]) return -1;
    }
    return 0;
}

int av_ag_linear(av_tensor *out, const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_tensor *x2) {
    const av_tensor *ins[3] = {x, w, b};
    if (!av_should_record(3, ins)) return 0;
    av_node *n = av_node_new("LinearBackward", linear_backward, 3, ins, 1);
    if (!n) return av_fail("out of memory");
    keep_shape(n, x);
    av_node_save_detached(n, x2);
    av_node_save_detached(n, w);
    return av_node_finish(n, out);
}

/* ---- softmax, log_softmax ------------------------------------------------------------- */
static int softmax_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *y = av_node_saved(n, 0);
    if (!y) return -1;
    gin[0] = av_softmax_backward_raw(gout[0], y, (int)n->iarg[0], n->iarg[1] != 0);
    return gin[0] ? 0 : -1;
}

int av_ag_softmax(av_tensor *out, const av_tensor *x, int dim, bool log) {
    if (!av_should_record(1, &x)) return 0;
    av_node *n = av_node_new(log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, 1, &x, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = dim;
    n->iarg[1] = log;
    av_node_save_detached(n, out);
    return av_node_finish(n, out);
}

/* ---- cross entropy, nll_loss ----------------------------------------------------------------- */
enum { NLL_N, NLL_C, NLL_S, NLL_IGNORE, NLL_BASE, NLL_RED, NLL_FUSED, NLL_HASW };

static int nll_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    if (!n->next[0].node) return 0;
    const av_tensor *x = av_node_saved(n, 0), *t = av_node_saved(n, 1);
    const av_tensor *w = n->iarg[NLL_HASW] ? av_node_saved(n, 2) : NULL;
    const av_tensor *lse = n->iarg[NLL_FUSED] ? av_node_saved(n, 3) : NULL;
    if (!x || !t || (n->iarg[NLL_HASW] && !w) || (n->iarg[NLL_FUSED] && !lse)) return -1;
    av_nll_problem p = {0};
    p.input = x;
    p.target = t;
    p.weight = w;
    p.N = n->iarg[NLL_N];
    p.C = n->iarg[NLL_C];
    p.S = n->iarg[NLL_S];
    p.ignore_index = n->iarg[NLL_IGNORE];
    p.base = n->iarg[NLL_BASE];
    p.reduction = (av_reduction)n->iarg[NLL_RED];
    p.fused = n->iarg[NLL_FUSED] != 0;
    p.label_smoothing = n->darg[0];
    av_tensor *gx = av_nll_backward_raw(&p, gout[0], lse, n->darg[1]);
    if (!gx) return -1;
    /* the saved input is contiguous; give the gradient the original input's shape */
    if (gx->ndim != n->ndim || memcmp(gx->shape, n->shape, sizeof(int64_t) * n->ndim)) {
        av_tensor *r = av_reshape(gx, n->ndim, n->shape);
        av_release(gx);
        gx = r;
    }
    gin[0] = gx;
    return gx ? 0 : -1;
}

int av_ag_nll(av_tensor *out, const av_nll_problem *p, const av_tensor *input_orig, const av_tensor *lse,
              double total_weight) {
    if (!av_should_record(1, &input_orig)) return 0;
    av_node *n = av_node_new(p->fused ? "CrossEntropyLossBackward" : "NllLossBackward", nll_backward, 1, &input_orig, 1);
    if (!n) return av_fail("out of memory");
    keep_shape(n, input_orig);
    n->iarg[NLL_N] = p->N;
    n->iarg[NLL_C] = p->C;
    n->iarg[NLL_S] = p->S;
    n->iarg[NLL_IGNORE] = p->ignore_index;
    n->iarg[NLL_BASE] = p->base;
    n->iarg[NLL_RED] = p->reduction;
    n->iarg[NLL_FUSED] = p->fused;
    n->iarg[NLL_HASW] = p->weight != NULL;
    n->darg[0] = p->label_smoothing;
    n->darg[1] = total_weight;
    av_node_save_detached(n, p->input);
    av_node_save(n, p->target); /* never requires grad */
    av_node_save_detached(n, p->weight);
    av_node_save(n, lse);
    return av_node_finish(n, out);
}

/* ---- binary cross entropy with logits ---------------------------------------------------- */
/* dl/dx = lw sigmoid(x) - pw t, dl/dt = (pw - 1) softplus(-x) - x, with lw = 1 + (pw - 1) t
 * (without pos_weight: sigmoid(x) - t and -x) */
static int bce_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0), *t = av_node_saved(n, 1);
    const av_tensor *pw = n->iarg[0] ? av_node_saved(n, 2) : NULL;
    if (!x || !t || (n->iarg[0] && !pw)) return -1;
    const av_tensor *g = gout[0];
    int rc = -1;
    av_tensor *sig = NULL, *pwm1 = NULL, *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
    if (n->next[0].node) {
        if (!(sig = av_unary(AV_OP_SIGMOID, x))) goto done;
        if (pw) {
            if (!(pwm1 = av_binary_scalar(AV_OP_SUB, pw, 1, false))) goto done;
            if (!(a = ag_mul(pwm1, t)) || !(b = av_binary_scalar(AV_OP_ADD, a, 1, false))) goto done; /* lw */
            if (!(c = ag_mul(b, sig)) || !(d = ag_mul(pw, t)) || !(e = ag_sub(c, d))) goto done;
            if (!(gin[0] = ag_mul(g, e))) goto done;
        } else {
            if (!(e = ag_sub(sig, t)) || !(gin[0] = ag_mul(g, e))) goto done;
        }
    }
    av_release(a); av_release(b); av_release(c); av_release(d); av_release(e);
    a = b = c = d = e = NULL;
    if (n->next[1].node) {
        if (pw) {
            /* softplus(-x) = relu(-x) + log1p(exp(-|x|)) */
            if (!pwm1 && !(pwm1 = av_binary_scalar(AV_OP_SUB, pw, 1, false))) goto done;
            av_tensor *nx = ag_neg(x), *r = nx ? av_unary(AV_OP_RELU, nx) : NULL, *ax = av_unary(AV_OP_ABS, x);
            av_tensor *nax = ax ? ag_neg(ax) : NULL, *ex = nax ? av_unary(AV_OP_EXP, nax) : NULL;
            av_tensor *lp = ex ? av_unary(AV_OP_LOG1P, ex) : NULL, *sp = (r && lp) ? ag_add(r, lp) : NULL;
            a = sp ? ag_mul(pwm1, sp) : NULL;
            b = a ? ag_sub(a, x) : NULL;
            av_release(nx); av_release(r); av_release(ax); av_release(nax); av_release(ex); av_release(lp); av_release(sp);
            if (!b || !(gin[1] = ag_mul(g, b))) goto done;
        } else {
            if (!(a = ag_neg(x)) || !(gin[1] = ag_mul(g, a))) goto done;
        }
    }
    rc = 0;
done:
    av_release(sig); av_release(pwm1); av_release(a); av_release(b); av_release(c); av_release(d); av_release(e);
    return rc;
}

int av_ag_bce_logits(av_tensor *out, const av_tensor *x, const av_tensor *t, const av_tensor *pw) {
    const av_tensor *ins[2] = {x, t};
    if (!av_should_record(2, ins)) return 0;
    av_node *n = av_node_new("BinaryCrossEntropyWithLogitsBackward", bce_backward, 2, ins, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = pw != NULL;
    av_node_save_detached(n, x);
    av_node_save_detached(n, t);
    av_node_save_detached(n, pw);
    return av_node_finish(n, out);
}

/* ---- interpolate ---------------------------------------------------------------------------- */
static int interp_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_interp_backward_raw(gout[0], (const av_interp_params *)n->extra, n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}

int av_ag_interp(av_tensor *out, const av_tensor *x, const av_interp_params *p) {
    if (!av_should_record(1, &x)) return 0;
    av_interp_params *copy = malloc(sizeof *copy);
    if (!copy) return av_fail("out of memory");
    *copy = *p;
    av_node *n = av_node_new(p->linear ? "UpsampleBilinearBackward" : "UpsampleNearestBackward", interp_backward, 1,
                             &x, 1);
    if (!n) { free(copy); return av_fail("out of memory"); }
    n->extra = copy;
    keep_shape(n, x);
    return av_node_finish(n, out);
}

/* ---- pad ----------------------------------------------------------------------------------- */
static int pad_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_pad_backward_raw(gout[0], (const av_pad_params *)n->extra, n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}

int av_ag_pad(av_tensor *out, const av_tensor *x, const av_pad_params *p) {
    if (!av_should_record(1, &x)) return 0;
    av_pad_params *copy = malloc(sizeof *copy);
    if (!copy) return av_fail("out of memory");
    *copy = *p;
    static const char *names[] = {"ConstantPadBackward", "ReflectionPadBackward", "ReplicationPadBackward",
                                  "CircularPadBackward"};
    av_node *n = av_node_new(names[p->mode], pad_backward, 1, &x, 1);
    if (!n) { free(copy); return av_fail("out of memory"); }
    n->extra = copy;
    keep_shape(n, x);
    return av_node_finish(n, out);
}
