/* The nn operators with graph recording (aviary/nn_ops.h): each runs its raw
 * CPU kernel (runtime/ops/cpu/{norm,activation,pool}.c) with grad mode off
 * and records one node whose backward is again one fused kernel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "grad.h"
#include "aviary/nn_ops.h"
#include "../ops/cpu/nn_kernels.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../ops/cuda/cuda_lib.h"
#endif

/* grad mode off for the duration of a raw computation */
#define NO_GRAD(expr)                        \
    do {                                     \
        bool was_ = av_grad_enabled();       \
        av_set_grad_enabled(false);          \
        expr;                                \
        av_set_grad_enabled(was_);           \
    } while (0)

static void keep_shape(av_node *n, const av_tensor *t) {
    n->ndim = t->ndim;
    memcpy(n->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    n->dtype = t->dtype;
}

/* ---- batch norm ---------------------------------------------------------------------------- */
typedef struct {
    int64_t C;
    int wnd, bnd;
    int64_t wshape[AV_MAX_DIMS], bshape[AV_MAX_DIMS];
    av_dtype wdt, bdt;
    double data[]; /* mean[C], invstd[C], w[C] */
} bn_extra;

/* a tensor of the given shape and dtype holding v[0..C) (or v[c] * s[c] when s) */
static av_tensor *channel_tensor(int ndim, const int64_t *shape, av_dtype dt, const double *v, const double *s,
                                 int64_t C) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (!t) return NULL;
    for (int64_t c = 0; c < C; c++) {
        double x = s ? v[c] * s[c] : v[c];
        if (dt == AV_F32) ((float *)av_data(t))[c] = (float)x;
        else ((double *)av_data(t))[c] = x;
    }
    return t;
}

static int bn_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0);
    if (!x) return -1;
    bn_extra *e = n->extra;
    int64_t C = e->C;
    const double *mean = e->data, *invstd = e->data + C, *w = e->data + 2 * C;
    bool want_x = n->next[0].node, want_w = n->next[1].node, want_b = n->next[2].node;
    double *sums = NULL;
    if (want_w || want_b) {
        sums = malloc(sizeof(double) * (size_t)(2 * C + 1));
        if (!sums) return av_fail("out of memory");
    }
    av_tensor *gx = NULL;
    int rc = av_batch_norm_backward_raw(x, gout[0], mean, invstd, w, n->iarg[0] != 0, want_x, &gx,
                                        sums, sums ? sums + C : NULL);
    if (!rc) {
        gin[0] = gx;
        if (want_w && !(gin[1] = channel_tensor(e->wnd, e->wshape, e->wdt, sums + C, invstd, C))) rc = -1;
        if (want_b && !(gin[2] = channel_tensor(e->bnd, e->bshape, e->bdt, sums, NULL, C))) rc = -1;
    }
    free(sums);
    return rc;
}

#ifdef AV_WITH_CUDA
/* ---- batch norm on CUDA: cuDNN's saved statistics are device tensors, kept on the node ---------- */
typedef struct {
    int wnd, bnd;
    int64_t wshape[AV_MAX_DIMS], bshape[AV_MAX_DIMS];
    av_dtype wdt, bdt;
} bn_cuda_extra;

/* a C-vector gradient in a parameter's shape and dtype */
static av_tensor *param_grad(av_tensor *v, int nd, const int64_t *shape, av_dtype dt) {
    av_tensor *c = v ? av_to_dtype(v, dt) : NULL;
    av_tensor *r = c ? av_view(c, nd, shape) : NULL;
    av_release(c);
    return r;
}

/* saved: 0 input, 1 mean, 2 invstd, 3 weight (when given) */
static int bn_cuda_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0), *mean = av_node_saved(n, 1), *invstd = av_node_saved(n, 2);
    const av_tensor *w = n->iarg[1] ? av_node_saved(n, 3) : NULL;
    if (!x || !mean || !invstd || (n->iarg[1] && !w)) return -1;
    bn_cuda_extra *e = n->extra;
    bool want_x = n->next[0].node, want_w = n->next[1].node, want_b = n->next[2].node;
    av_tensor *gw = NULL, *gb = NULL;
    int rc = av_cuda_batch_norm_backward(x, gout[0], w, mean, invstd, n->iarg[0] != 0, n->darg[0],
                                         want_x ? &gin[0] : NULL, want_w ? &gw : NULL, want_b ? &gb : NULL);
    if (!rc && want_w && !(gin[1] = param_grad(gw, e->wnd, e->wshape, e->wdt))) rc = -1;
    if (!rc && want_b && !(gin[2] = param_grad(gb, e->bnd, e->bshape, e->bdt))) rc = -1;
    av_release(gw);
    av_release(gb);
    return rc;
}

static av_tensor *batch_norm_cuda(const av_tensor *input, av_tensor *rm, av_tensor *rv, const av_tensor *weight,
                                  const av_tensor *bias, bool training, double momentum, double eps) {
    av_tensor *out, *mean = NULL, *invstd = NULL;
    NO_GRAD(out = av_cuda_batch_norm(input, rm, rv, weight, bias, training, momentum, eps, &mean, &invstd));
    const av_tensor *ins[3] = {input, weight, bias};
    if (!out || !av_should_record(3, ins)) {
        av_release(mean);
        av_release(invstd);
        return out;
    }
    bn_cuda_extra *e = calloc(1, sizeof *e);
    av_node *n = e ? av_node_new(training ? "CudnnBatchNormBackward" : "BatchNormEvalBackward", bn_cuda_backward, 3,
                                 ins, 1)
                   : NULL;
    if (!n) {
        free(e);
        av_release(mean);
        av_release(invstd);
        av_release(out);
        av_fail("out of memory");
        return NULL;
    }
    if (weight) {
        e->wnd = weight->ndim; e->wdt = weight->dtype;
        memcpy(e->wshape, weight->shape, sizeof(int64_t) * (size_t)weight->ndim);
    }
    if (bias) {
        e->bnd = bias->ndim; e->bdt = bias->dtype;
        memcpy(e->bshape, bias->shape, sizeof(int64_t) * (size_t)bias->ndim);
    }
    n->extra = e;
    n->iarg[0] = training;
    n->iarg[1] = weight != NULL;
    n->darg[0] = eps;
    keep_shape(n, input);
    av_node_save_detached(n, input);
    av_node_save(n, mean);
    av_node_save(n, invstd);
    if (weight) av_node_save_detached(n, weight);
    av_release(mean);
    av_release(invstd);
    return av_ag_finish(out, av_node_finish(n, out));
}
#endif

av_tensor *av_batch_norm(const av_tensor *input, av_tensor *running_mean, av_tensor *running_var,
                         const av_tensor *weight, const av_tensor *bias, bool training, double momentum,
                         double eps) {
#ifdef AV_WITH_CUDA
    if (input && av_is_cuda(input))
        return batch_norm_cuda(input, running_mean, running_var, weight, bias, training, momentum, eps);
#endif
    int64_t C = av_bn_channels(input, "batch_norm");
    if (C < 0) return NULL;
    bn_extra *e = calloc(1, sizeof(bn_extra) + sizeof(double) * (size_t)(3 * C + 1));
    if (!e) { av_fail("out of memory"); return NULL; }
    e->C = C;
    av_tensor *out;
    NO_GRAD(out = av_batch_norm_raw(input, running_mean, running_var, weight, bias, training, momentum, eps, e->data,
                                    e->data + C, e->data + 2 * C));
    const av_tensor *ins[3] = {input, weight, bias};
    if (!out || !av_should_record(3, ins)) {
        free(e);
        return out;
    }
    if (weight) {
        e->wnd = weight->ndim; e->wdt = weight->dtype;
        memcpy(e->wshape, weight->shape, sizeof(int64_t) * (size_t)weight->ndim);
    }
    if (bias) {
        e->bnd = bias->ndim; e->bdt = bias->dtype;
        memcpy(e->bshape, bias->shape, sizeof(int64_t) * (size_t)bias->ndim);
    }
    av_node *n = av_node_new(training ? "NativeBatchNormBackward" : "BatchNormEvalBackward", bn_backward, 3, ins, 1);
    if (!n) { free(e); av_release(out); av_fail("out of memory"); return NULL; }
    n->extra = e;
    n->iarg[0] = training;
    keep_shape(n, input);
    av_node_save_detached(n, input);
    return av_ag_finish(out, av_node_finish(n, out));
}

/* ---- activations ----------------------------------------------------------------------------- */
static const char *act_node_names[AV_NACTS] = {
    [AV_ACT_LEAKY_RELU] = "LeakyReluBackward", [AV_ACT_ELU] = "EluBackward", [AV_ACT_GELU] = "GeluBackward",
    [AV_ACT_GELU_TANH] = "GeluBackward", [AV_ACT_SILU] = "SiluBackward", [AV_ACT_HARDSWISH] = "HardswishBackward",
    [AV_ACT_HARDSIGMOID] = "HardsigmoidBackward", [AV_ACT_RELU6] = "Relu6Backward",
    [AV_ACT_SOFTPLUS] = "SoftplusBackward",
};

static int act_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0);
    if (!x) return -1;
    gin[0] = av_activation_backward_raw((av_act)n->iarg[0], gout[0], x, n->darg[0], n->darg[1]);
    return gin[0] ? 0 : -1;
}

av_tensor *av_activation(av_act act, const av_tensor *x, double a, double b) {
    av_tensor *out;
    NO_GRAD(out = av_activation_raw(act, x, a, b));
    if (!out || !av_should_record(1, &x)) return out;
    av_node *n = av_node_new(act_node_names[act], act_backward, 1, &x, 1);
    if (n) {
        n->iarg[0] = act;
        n->darg[0] = a;
        n->darg[1] = b;
        av_node_save_detached(n, x);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

av_tensor *av_leaky_relu(const av_tensor *x, double slope) { return av_activation(AV_ACT_LEAKY_RELU, x, slope, 0); }
av_tensor *av_elu(const av_tensor *x, double alpha) { return av_activation(AV_ACT_ELU, x, alpha, 0); }
av_tensor *av_gelu(const av_tensor *x, bool tanh_approx) {
    return av_activation(tanh_approx ? AV_ACT_GELU_TANH : AV_ACT_GELU, x, 0, 0);
}
av_tensor *av_silu(const av_tensor *x) { return av_activation(AV_ACT_SILU, x, 0, 0); }
av_tensor *av_hardswish(const av_tensor *x) { return av_activation(AV_ACT_HARDSWISH, x, 0, 0); }
av_tensor *av_hardsigmoid(const av_tensor *x) { return av_activation(AV_ACT_HARDSIGMOID, x, 0, 0); }
av_tensor *av_relu6(const av_tensor *x) { return av_activation(AV_ACT_RELU6, x, 0, 0); }
av_tensor *av_softplus(const av_tensor *x, double beta, double threshold) {
    return av_activation(AV_ACT_SOFTPLUS, x, beta, threshold);
}

/* ---- pooling -------------------------------------------------------------------------------- */
/* max pools: the gradient goes to the saved argmax positions */
static int maxpool_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *idx = av_node_saved(n, 0);
    if (!idx) return -1;
    gin[0] = av_max_pool2d_backward_raw(gout[0], idx, n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}

static av_tensor *record_maxpool(const char *name, const av_tensor *x, av_tensor *out, av_tensor *idx,
                                 av_tensor **indices) {
    av_node *n = av_node_new(name, maxpool_backward, 1, &x, 1);
    if (n) {
        keep_shape(n, x);
        av_node_save(n, idx);
    }
    out = av_ag_finish(out, av_node_finish(n, out));
    if (!out || !indices) av_release(idx);
    else *indices = idx;
    return out;
}

av_tensor *av_max_pool2d(const av_tensor *x, const av_pool2d_opts *o, av_tensor **indices) {
    av_tensor *out, *idx = NULL;
    bool rec = x && av_should_record(1, &x);
    if (indices) *indices = NULL;
    NO_GRAD(out = av_max_pool2d_raw(x, o, (rec || indices) ? &idx : NULL));
    if (!out) return NULL;
    if (!rec || !av_dtype_is_float(out->dtype)) {
        if (indices) *indices = idx;
        return out;
    }
    return record_maxpool("MaxPool2DWithIndicesBackward", x, out, idx, indices);
}

av_tensor *av_adaptive_max_pool2d(const av_tensor *x, int64_t oh, int64_t ow, av_tensor **indices) {
    av_tensor *out, *idx = NULL;
    bool rec = x && av_should_record(1, &x);
    if (indices) *indices = NULL;
    NO_GRAD(out = av_adaptive_max_pool2d_raw(x, oh, ow, (rec || indices) ? &idx : NULL));
    if (!out) return NULL;
    if (!rec) {
        if (indices) *indices = idx;
        return out;
    }
    return record_maxpool("AdaptiveMaxPool2DBackward", x, out, idx, indices);
}

static int avgpool_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_avg_pool2d_backward_raw(gout[0], (const av_pool2d_opts *)n->extra, n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}

av_tensor *av_avg_pool2d(const av_tensor *x, const av_pool2d_opts *o) {
    av_tensor *out;
    NO_GRAD(out = av_avg_pool2d_raw(x, o));
    if (!out || !av_should_record(1, &x)) return out;
    av_pool2d_opts *copy = malloc(sizeof *copy);
    av_node *n = copy ? av_node_new("AvgPool2DBackward", avgpool_backward, 1, &x, 1) : NULL;
    if (n) {
        *copy = *o;
        n->extra = copy;
        keep_shape(n, x);
    } else {
        free(copy);
    }
    return av_ag_finish(out, av_node_finish(n, out));
}

static int adavg_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    gin[0] = av_adaptive_avg_pool2d_backward_raw(gout[0], n->ndim, n->shape);
    return gin[0] ? 0 : -1;
}

av_tensor *av_adaptive_avg_pool2d(const av_tensor *x, int64_t oh, int64_t ow) {
    av_tensor *out;
    NO_GRAD(out = av_adaptive_avg_pool2d_raw(x, oh, ow));
    if (!out || !av_should_record(1, &x)) return out;
    av_node *n = av_node_new("AdaptiveAvgPool2DBackward", adavg_backward, 1, &x, 1);
    if (n) keep_shape(n, x);
    return av_ag_finish(out, av_node_finish(n, out));
}

/* ---- dropout --------------------------------------------------------------------------------- */
static int dropout_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *m = av_node_saved(n, 0);
    if (!m) return -1;
    gin[0] = av_binary(AV_OP_MUL, gout[0], m);
    return gin[0] ? 0 : -1;
}

av_tensor *av_dropout(const av_tensor *x, double p, bool training) {
    if (!x) { av_fail("dropout: expected a tensor"); return NULL; }
    if (!(p >= 0 && p <= 1)) {
        av_fail("dropout: probability has to be between 0 and 1, got %g", p);
        return NULL;
    }
    if (!training || p == 0 || av_numel(x) == 0) return av_retain((av_tensor *)x);
    av_tensor *out, *mask = NULL;
    NO_GRAD(out = av_dropout_raw(x, p, &mask));
    if (!out || !av_should_record(1, &x)) {
        av_release(mask);
        return out;
    }
    av_node *n = av_node_new("DropoutBackward", dropout_backward, 1, &x, 1);
    if (n) av_node_save(n, mask);
    av_release(mask);
    return av_ag_finish(out, av_node_finish(n, out));
}
