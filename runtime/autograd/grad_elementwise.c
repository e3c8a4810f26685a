/* Derivatives of elementwise ops. Saved outputs are detached aliases, so a
 * node never holds a reference to a tensor whose grad_fn is that node. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "grad.h"
#include "aviary/nn_ops.h"
#include "aviary/cuda.h"

/* ---- helpers ------------------------------------------------------------- */
av_tensor *ag_mul(const av_tensor *a, const av_tensor *b) { return av_binary(AV_OP_MUL, a, b); }
av_tensor *ag_muls(const av_tensor *a, double s) { return av_binary_scalar(AV_OP_MUL, a, s, false); }
av_tensor *ag_div(const av_tensor *a, const av_tensor *b) { return av_binary(AV_OP_DIV, a, b); }
av_tensor *ag_add(const av_tensor *a, const av_tensor *b) { return av_binary(AV_OP_ADD, a, b); }
av_tensor *ag_sub(const av_tensor *a, const av_tensor *b) { return av_binary(AV_OP_SUB, a, b); }
av_tensor *ag_neg(const av_tensor *a) { return av_unary(AV_OP_NEG, a); }
av_tensor *ag_mul_take(const av_tensor *g, av_tensor *f) {
    if (!f) return NULL;
    av_tensor *r = ag_mul(g, f);
    av_release(f);
    return r;
}
av_tensor *ag_zeros_like(const av_tensor *t) { return av_zeros_on(t->ndim, t->shape, t->dtype, av_device_of(t)); }

av_tensor *av_ag_finish(av_tensor *out, int rc) {
    if (rc) { av_release(out); return NULL; }
    return out;
}

/* gradient of an input of `shape`, undoing broadcasting, in the input's dtype */
static av_tensor *reduce_to(av_node *n, int which, av_tensor *g) {
    if (!g) return NULL;
    const int64_t *shape = (const int64_t *)n->extra + which * (AV_MAX_DIMS + 1) + 1;
    int ndim = (int)((const int64_t *)n->extra)[which * (AV_MAX_DIMS + 1)];
    av_tensor *r = av_sum_to(g, ndim, shape);
    av_release(g);
    return r;
}

/* remembers the shapes of up to two inputs in n->extra */
static int save_shapes(av_node *n, const av_tensor *a, const av_tensor *b) {
    int64_t *e = calloc(2 * (AV_MAX_DIMS + 1), sizeof *e);
    if (!e) return av_fail("out of memory");
    e[0] = a->ndim;
    memcpy(e + 1, a->shape, sizeof(int64_t) * a->ndim);
    if (b) {
        e[AV_MAX_DIMS + 1] = b->ndim;
        memcpy(e + AV_MAX_DIMS + 2, b->shape, sizeof(int64_t) * b->ndim);
    }
    n->extra = e;
    return 0;
}

/* ---- binary tensor-tensor -------------------------------------------------- */
static int binary_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *g = gout[0];
    const av_tensor *a = av_node_saved(n, 0), *b = av_node_saved(n, 1);
    if (n->n_saved >= 2 && ((n->saved[0] && !a) || (n->saved[1] && !b))) return -1;
    bool need_a = n->next[0].node != NULL, need_b = n->next[1].node != NULL;
    av_tensor *ga = NULL, *gb = NULL;
    switch ((av_binop)n->iarg[0]) {
    case AV_OP_ADD:
        if (need_a) ga = av_retain((av_tensor *)g);
        if (need_b) gb = n->darg[0] == 1 ? av_retain((av_tensor *)g) : ag_muls(g, n->darg[0]);
        break;
    case AV_OP_SUB:
        if (need_a) ga = av_retain((av_tensor *)g);
        if (need_b) gb = ag_neg(g);
        break;
    case AV_OP_MUL:
        if (need_a) ga = ag_mul(g, b);
        if (need_b) gb = ag_mul(g, a);
        break;
    case AV_OP_DIV:
        if (need_a) ga = ag_div(g, b);
        if (need_b) { /* -g * a / b^2 */
            av_tensor *q = ag_div(a, b);
            av_tensor *q2 = q ? ag_div(q, b) : NULL;
            av_release(q);
            gb = q2 ? ag_neg(q2) : NULL;
            av_release(q2);
            if (gb) { av_tensor *t = ag_mul(gb, g); av_release(gb); gb = t; }
        }
        break;
    case AV_OP_POW: {
        const av_tensor *out = av_node_saved(n, 2);
        if (need_a) { /* g * b * a^(b-1) */
            av_tensor *bm1 = av_binary_scalar(AV_OP_SUB, b, 1, false);
            av_tensor *p = bm1 ? av_binary(AV_OP_POW, a, bm1) : NULL;
            av_release(bm1);
            ga = p ? ag_mul_take(g, ag_mul(p, b)) : NULL;
            av_release(p);
        }
        if (need_b) { /* g * out * log(a), 0 where a == 0 and b >= 0 as PyTorch */
            av_tensor *la = av_unary(AV_OP_LOG, a);
            av_tensor *t = la ? ag_mul(out, la) : NULL;
            av_release(la);
            av_tensor *z = av_binary_scalar(AV_OP_EQ, a, 0, false);
            av_tensor *bz = av_binary_scalar(AV_OP_GE, b, 0, false);
            av_tensor *mask = (z && bz) ? av_binary(AV_OP_LOGICAL_AND, z, bz) : NULL;
            av_tensor *zero = av_scalar_tensor(0, g->dtype);
            av_tensor *fixed = (t && mask && zero) ? av_where(mask, zero, t) : NULL;
            av_release(t); av_release(z); av_release(bz); av_release(mask); av_release(zero);
            gb = ag_mul_take(g, fixed);
        }
        break;
    }
    case AV_OP_MINIMUM:
    case AV_OP_MAXIMUM: {
        /* the larger (smaller) input takes the gradient; ties split it in half */
        av_binop win = n->iarg[0] == AV_OP_MAXIMUM ? AV_OP_GT : AV_OP_LT;
        av_tensor *wa = av_binary(win, a, b), *eq = av_binary(AV_OP_EQ, a, b);
        av_tensor *fa = wa ? av_to_dtype(wa, g->dtype) : NULL, *fe = eq ? av_to_dtype(eq, g->dtype) : NULL;
        av_tensor *half = fe ? ag_muls(fe, 0.5) : NULL;
        av_tensor *sa = (fa && half) ? ag_add(fa, half) : NULL; /* share of a */
        if (need_a && sa) ga = ag_mul(g, sa);
        if (need_b && sa) {
            av_tensor *sb = av_binary_scalar(AV_OP_SUB, sa, 1, true);
            gb = ag_mul_take(g, sb);
        }
        av_release(wa); av_release(eq); av_release(fa); av_release(fe); av_release(half); av_release(sa);
        break;
    }
    case AV_OP_REM: /* a - floor(a/b)*b */
        if (need_a) ga = av_retain((av_tensor *)g);
        if (need_b) {
            av_tensor *q = ag_div(a, b), *f = q ? av_unary(AV_OP_FLOOR, q) : NULL;
            av_release(q);
            av_tensor *m = f ? ag_mul(g, f) : NULL;
            av_release(f);
            gb = m ? ag_neg(m) : NULL;
            av_release(m);
        }
        break;
    case AV_OP_ATAN2: { /* d/da = b/(a^2+b^2), d/db = -a/(a^2+b^2) */
        av_tensor *a2 = ag_mul(a, a), *b2 = ag_mul(b, b), *den = (a2 && b2) ? ag_add(a2, b2) : NULL;
        av_tensor *gd = den ? ag_div(g, den) : NULL;
        av_release(a2); av_release(b2); av_release(den);
        if (need_a && gd) ga = ag_mul(gd, b);
        if (need_b && gd) gb = ag_mul_take(gd, ag_neg(a));
        av_release(gd);
        break;
    }
    default:
        return av_fail("no gradient for %s", av_binop_name((av_binop)n->iarg[0]));
    }
    gin[0] = need_a ? reduce_to(n, 0, ga) : NULL;
    gin[1] = need_b ? reduce_to(n, 1, gb) : NULL;
    if ((need_a && !gin[0]) || (need_b && !gin[1])) { av_release(gin[0]); av_release(gin[1]); gin[0] = gin[1] = NULL; return -1; }
    return 0;
}

static const char *binary_names[AV_NBINOPS] = {
    [AV_OP_ADD] = "AddBackward", [AV_OP_SUB] = "SubBackward", [AV_OP_MUL] = "MulBackward",
    [AV_OP_DIV] = "DivBackward", [AV_OP_POW] = "PowBackward", [AV_OP_MINIMUM] = "MinimumBackward",
    [AV_OP_MAXIMUM] = "MaximumBackward", [AV_OP_REM] = "RemainderBackward", [AV_OP_ATAN2] = "Atan2Backward"};

int av_ag_binary(av_binop op, av_tensor *out, const av_tensor *a, const av_tensor *b) {
    const av_tensor *ins[2] = {a, b};
    if (!av_should_record(2, ins) || !av_dtype_is_float(out->dtype)) return 0;
    if (!binary_names[op]) return 0; /* comparisons: no gradient */
    av_node *n = av_node_new(binary_names[op], binary_backward, 2, ins, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = op;
    n->darg[0] = 1;
    int rc = save_shapes(n, a, b);
    bool keep = op != AV_OP_ADD && op != AV_OP_SUB;
    av_node_save_detached(n, keep ? a : NULL);
    av_node_save_detached(n, keep ? b : NULL);
    if (op == AV_OP_POW) av_node_save_detached(n, out);
    if (!rc) rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

/* ---- tensor (op) scalar ---------------------------------------------------------- */
static int scalar_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *g = gout[0], *a = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    double s = n->darg[0];
    bool rev = n->iarg[1];
    av_tensor *r = NULL;
    switch ((av_binop)n->iarg[0]) {
    case AV_OP_ADD: r = av_retain((av_tensor *)g); break;
    case AV_OP_SUB: r = rev ? ag_neg(g) : av_retain((av_tensor *)g); break;
    case AV_OP_MUL: r = ag_muls(g, s); break;
    case AV_OP_DIV:
        if (!rev) r = ag_muls(g, 1 / s);
        else { /* s / a: -g * s / a^2 = -g * out / a */
            av_tensor *q = ag_div(out, a);
            r = q ? ag_mul_take(g, ag_muls(q, -1)) : NULL;
            av_release(q);
        }
        break;
    case AV_OP_POW:
        if (!rev) { /* a^s: g * s * a^(s-1) */
            av_tensor *p = s == 2 ? av_retain((av_tensor *)a) : av_binary_scalar(AV_OP_POW, a, s - 1, false);
            r = p ? ag_mul_take(g, ag_muls(p, s)) : NULL;
            av_release(p);
        } else { /* s^a: g * out * log(s) */
            r = ag_mul_take(g, ag_muls(out, log(s)));
        }
        break;
    case AV_OP_MINIMUM:
    case AV_OP_MAXIMUM: {
        av_tensor *w = av_binary_scalar(n->iarg[0] == AV_OP_MAXIMUM ? AV_OP_GT : AV_OP_LT, a, s, false);
        av_tensor *e = av_binary_scalar(AV_OP_EQ, a, s, false);
        av_tensor *fw = w ? av_to_dtype(w, g->dtype) : NULL, *fe = e ? av_to_dtype(e, g->dtype) : NULL;
        av_tensor *h = fe ? ag_muls(fe, 0.5) : NULL, *share = (fw && h) ? ag_add(fw, h) : NULL;
        r = share ? ag_mul(g, share) : NULL;
        av_release(w); av_release(e); av_release(fw); av_release(fe); av_release(h); av_release(share);
        break;
    }
    case AV_OP_REM:
        if (!rev) r = av_retain((av_tensor *)g);
        else { /* s - floor(s/a)*a: d/da = -floor(s/a) */
            av_tensor *q = av_binary_scalar(AV_OP_DIV, a, s, true), *f = q ? av_unary(AV_OP_FLOOR, q) : NULL;
            av_release(q);
            r = f ? ag_mul_take(g, ag_neg(f)) : NULL;
            av_release(f);
        }
        break;
    case AV_OP_ATAN2: { /* atan2(a, s) or atan2(s, a) */
        av_tensor *a2 = ag_mul(a, a), *den = a2 ? av_binary_scalar(AV_OP_ADD, a2, s * s, false) : NULL;
        av_release(a2);
        if (!den) break;
        if (!rev) r = ag_mul_take(g, av_binary_scalar(AV_OP_DIV, den, s, true));
        else r = ag_mul_take(g, av_binary_scalar(AV_OP_DIV, den, -s, true));
        av_release(den);
        break;
    }
    default: return av_fail("no gradient for %s", av_binop_name((av_binop)n->iarg[0]));
    }
    gin[0] = r;
    return r ? 0 : -1;
}

int av_ag_binary_scalar(av_binop op, av_tensor *out, const av_tensor *a, double s, bool reverse) {
    if (!av_should_record(1, &a) || !av_dtype_is_float(out->dtype) || !binary_names[op]) return 0;
    av_node *n = av_node_new(binary_names[op], scalar_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = op;
    n->iarg[1] = reverse;
    n->darg[0] = s;
    av_node_save_detached(n, a);
    av_node_save_detached(n, out);
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

/* ---- unary ---------------------------------------------------------------------- */
/* ReLU gradient mode: 0 normal, 1 guided backpropagation, 2 deconvolution */
static int relu_grad_mode = 0;
int av_set_relu_grad_mode(int mode) {
    if (mode < 0 || mode > 2) return av_fail("relu gradient mode must be 0, 1 or 2, got %d", mode);
    int prev = relu_grad_mode;
    relu_grad_mode = mode;
    return prev;
}
int av_get_relu_grad_mode(void) { return relu_grad_mode; }

static int unary_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *g = gout[0], *a = av_node_saved(n, 0), *out = av_node_saved(n, 1);
    if ((n->saved[0] && !a) || (n->saved[1] && !out)) return -1;
    av_tensor *r = NULL;
    switch ((av_unop)n->iarg[0]) {
    case AV_OP_NEG: r = ag_neg(g); break;
    case AV_OP_EXP: r = ag_mul(g, out); break;
    case AV_OP_LOG: r = ag_div(g, a); break;
    case AV_OP_SQRT: r = ag_mul_take(g, av_binary_scalar(AV_OP_DIV, out, 0.5, true)); break; /* 0.5/out */
    case AV_OP_RSQRT: { /* -0.5 * out^3 */
        av_tensor *o3 = av_binary_scalar(AV_OP_POW, out, 3, false);
        r = o3 ? ag_mul_take(g, ag_muls(o3, -0.5)) : NULL;
        av_release(o3);
        break;
    }
    case AV_OP_ABS: r = ag_mul_take(g, av_unary(AV_OP_SIGN, a)); break;
    case AV_OP_SIGN: case AV_OP_FLOOR: case AV_OP_CEIL: case AV_OP_ROUND: case AV_OP_TRUNC:
        r = ag_zeros_like(g);
        break;
    case AV_OP_RECIPROCAL: { /* -out^2 */
        av_tensor *o2 = ag_mul(out, out);
        r = o2 ? ag_mul_take(g, ag_neg(o2)) : NULL;
        av_release(o2);
        break;
    }
    case AV_OP_SQUARE: r = ag_mul_take(g, ag_muls(a, 2)); break;
    case AV_OP_SIN: r = ag_mul_take(g, av_unary(AV_OP_COS, a)); break;
    case AV_OP_COS: {
        av_tensor *s = av_unary(AV_OP_SIN, a);
        r = s ? ag_mul_take(g, ag_neg(s)) : NULL;
        av_release(s);
        break;
    }
    case AV_OP_TAN: { /* 1 + out^2 */
        av_tensor *o2 = ag_mul(out, out);
        r = o2 ? ag_mul_take(g, av_binary_scalar(AV_OP_ADD, o2, 1, false)) : NULL;
        av_release(o2);
        break;
    }
    case AV_OP_LOG2: r = ag_mul_take(g, av_binary_scalar(AV_OP_DIV, a, 1 / M_LN2, true)); break;
    case AV_OP_LOG10: r = ag_mul_take(g, av_binary_scalar(AV_OP_DIV, a, 1 / M_LN10, true)); break;
    case AV_OP_LOG1P: {
        av_tensor *a1 = av_binary_scalar(AV_OP_ADD, a, 1, false);
        r = a1 ? ag_div(g, a1) : NULL;
        av_release(a1);
        break;
    }
    case AV_OP_EXPM1: r = ag_mul_take(g, av_binary_scalar(AV_OP_ADD, out, 1, false)); break;
    case AV_OP_EXP2: r = ag_mul_take(g, ag_muls(out, M_LN2)); break;
    case AV_OP_SIGMOID: { /* out * (1 - out) */
        av_tensor *om = av_binary_scalar(AV_OP_SUB, out, 1, true);
        r = om ? ag_mul_take(g, ag_mul(out, om)) : NULL;
        av_release(om);
        break;
    }
    case AV_OP_TANH: { /* 1 - out^2 */
        av_tensor *o2 = ag_mul(out, out);
        r = o2 ? ag_mul_take(g, av_binary_scalar(AV_OP_SUB, o2, 1, true)) : NULL;
        av_release(o2);
        break;
    }
    case AV_OP_RELU:
        if (relu_grad_mode == 0) {
            r = av_relu_backward(g, out); /* one pass, NaN passes like PyTorch */
        } else { /* guided: relu(g) * (out > 0); deconvolution: relu(g) */
            av_tensor *gp = av_unary(AV_OP_RELU, g);
            if (gp && relu_grad_mode == 1) {
                r = av_relu_backward(gp, out);
                av_release(gp);
            } else r = gp;
        }
        break;
    case AV_OP_ERF: { /* 2/sqrt(pi) * exp(-a^2) */
        av_tensor *a2 = ag_mul(a, a), *na2 = a2 ? ag_neg(a2) : NULL, *e = na2 ? av_unary(AV_OP_EXP, na2) : NULL;
        av_release(a2);
        av_release(na2);
        r = e ? ag_mul_take(g, ag_muls(e, 1.1283791670955126)) : NULL;
        av_release(e);
        break;
    }
    default: return av_fail("no gradient for %s", av_unop_name((av_unop)n->iarg[0]));
    }
    gin[0] = r;
    return r ? 0 : -1;
}

static const char *unary_names[AV_NUNOPS] = {
    [AV_OP_NEG] = "NegBackward", [AV_OP_EXP] = "ExpBackward", [AV_OP_LOG] = "LogBackward",
    [AV_OP_SQRT] = "SqrtBackward", [AV_OP_RSQRT] = "RsqrtBackward", [AV_OP_ABS] = "AbsBackward",
    [AV_OP_SIGN] = "SignBackward", [AV_OP_FLOOR] = "FloorBackward", [AV_OP_CEIL] = "CeilBackward",
    [AV_OP_ROUND] = "RoundBackward", [AV_OP_TRUNC] = "TruncBackward", [AV_OP_RECIPROCAL] = "ReciprocalBackward",
    [AV_OP_SQUARE] = "SquareBackward", [AV_OP_SIN] = "SinBackward", [AV_OP_COS] = "CosBackward",
    [AV_OP_TAN] = "TanBackward", [AV_OP_LOG2] = "Log2Backward", [AV_OP_LOG10] = "Log10Backward",
    [AV_OP_LOG1P] = "Log1pBackward", [AV_OP_EXPM1] = "Expm1Backward", [AV_OP_EXP2] = "Exp2Backward",
    [AV_OP_SIGMOID] = "SigmoidBackward", [AV_OP_TANH] = "TanhBackward", [AV_OP_RELU] = "ReluBackward",
    [AV_OP_ERF] = "ErfBackward"};

/* what each backward reads: the input, the output, or neither (saving only
 * what is needed keeps a network's saved activations to one copy per op) */
static bool needs_input(av_unop op) {
    switch (op) {
    case AV_OP_LOG: case AV_OP_ABS: case AV_OP_SQUARE: case AV_OP_SIN: case AV_OP_COS: case AV_OP_LOG2:
    case AV_OP_LOG10: case AV_OP_LOG1P: case AV_OP_ERF:
        return true;
    default: return false;
    }
}
static bool needs_output(av_unop op) {
    switch (op) {
    case AV_OP_EXP: case AV_OP_SQRT: case AV_OP_RSQRT: case AV_OP_RECIPROCAL: case AV_OP_TAN: case AV_OP_EXPM1:
    case AV_OP_EXP2: case AV_OP_SIGMOID: case AV_OP_TANH: case AV_OP_RELU:
        return true;
    default: return false;
    }
}

int av_ag_unary(av_unop op, av_tensor *out, const av_tensor *a) {
    if (!av_should_record(1, &a) || !av_dtype_is_float(out->dtype) || !unary_names[op]) return 0;
    av_node *n = av_node_new(unary_names[op], unary_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = op;
    av_node_save_detached(n, needs_input(op) ? a : NULL);
    av_node_save_detached(n, needs_output(op) ? out : NULL);
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

/* ---- clamp, where, conversions ------------------------------------------------------ */
static int clamp_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *a = av_node_saved(n, 0);
    if (!a) return -1;
    double lo = n->darg[0], hi = n->darg[1];
    /* gradient passes where lo <= a <= hi (PyTorch's convention at the bounds) */
    av_tensor *keep = av_full_on(a->ndim, a->shape, AV_U8, 1, av_device_of(a));
    if (keep && !isnan(lo)) {
        av_tensor *m = av_binary_scalar(AV_OP_GE, a, lo, false), *k2 = m ? av_binary(AV_OP_LOGICAL_AND, keep, m) : NULL;
        av_release(m); av_release(keep); keep = k2;
    }
    if (keep && !isnan(hi)) {
        av_tensor *m = av_binary_scalar(AV_OP_LE, a, hi, false), *k2 = m ? av_binary(AV_OP_LOGICAL_AND, keep, m) : NULL;
        av_release(m); av_release(keep); keep = k2;
    }
    gin[0] = keep ? ag_mul_take(gout[0], av_to_dtype(keep, gout[0]->dtype)) : NULL;
    av_release(keep);
    return gin[0] ? 0 : -1;
}

int av_ag_clamp(av_tensor *out, const av_tensor *a, double lo, double hi) {
    if (!av_should_record(1, &a) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new("ClampBackward", clamp_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    n->darg[0] = lo;
    n->darg[1] = hi;
    av_node_save_detached(n, a);
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

static int where_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *c = av_node_saved(n, 0), *g = gout[0];
    if (!c) return -1;
    av_tensor *zero = av_scalar_tensor(0, g->dtype);
    if (!zero) return -1;
    if (n->next[1].node) gin[1] = reduce_to(n, 0, av_where(c, g, zero));
    if (n->next[2].node) gin[2] = reduce_to(n, 1, av_where(c, zero, g));
    av_release(zero);
    return ((n->next[1].node && !gin[1]) || (n->next[2].node && !gin[2])) ? -1 : 0;
}

int av_ag_where(av_tensor *out, const av_tensor *cond, const av_tensor *a, const av_tensor *b) {
    const av_tensor *ins[3] = {cond, a, b};
    if (!av_should_record(3, ins) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new("WhereBackward", where_backward, 3, ins, 1);
    if (!n) return av_fail("out of memory");
    int rc = save_shapes(n, a, b);
    av_node_save_detached(n, cond);
    if (!rc) rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

static int to_dtype_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_to_dtype(gout[0], n->dtype);
    return gin[0] ? 0 : -1;
}

int av_ag_to_dtype(av_tensor *out, const av_tensor *a) {
    if (!av_should_record(1, &a) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new("ToCopyBackward", to_dtype_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    n->dtype = a->dtype;
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

static int clone_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_retain((av_tensor *)gout[0]);
    return 0;
}

int av_ag_clone(av_tensor *out, const av_tensor *a) {
    if (!av_should_record(1, &a)) return 0;
    av_node *n = av_node_new("CloneBackward", clone_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

/* the gradient goes back to the device the input came from */
static int to_device_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    av_device d = {(av_device_type)n->iarg[0], (int)n->iarg[1]};
    gin[0] = av_to_device(gout[0], d);
    return gin[0] ? 0 : -1;
}

int av_ag_to_device(av_tensor *out, const av_tensor *a) {
    if (!av_should_record(1, &a) || !av_dtype_is_float(out->dtype)) return 0;
    av_node *n = av_node_new("ToCopyBackward", to_device_backward, 1, &a, 1);
    if (!n) return av_fail("out of memory");
    n->iarg[0] = a->storage->device.type;
    n->iarg[1] = a->storage->device.index;
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}
