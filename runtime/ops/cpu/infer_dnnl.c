/* Inference plans over oneDNN (see aviary/infer.h). The difference from
 * running the same layers one op at a time (conv_dnnl.c) is where the data
 * lives between layers: each value keeps the blocked layout its producer
 * chose, so a convolution reads its input as the previous one wrote it, and
 * batch norm, ReLU and the residual add cost no pass over memory of their own.
 * The plain NCHW layout appears only at the inputs and outputs. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/infer.h"

#ifdef AV_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>

enum { OP_INPUT, OP_CONV, OP_POOL, OP_ADD, OP_RELU, OP_CLIP };

typedef struct {
    int kind;
    int in[2];  /* conv: x, residual; add: a, b; others: x, -1 */
    bool relu;  /* conv and add: ReLU after */
    bool clip;  /* conv and add: clamp to [lo, hi] after (ReLU6); OP_CLIP: the bounds */
    float lo, hi;
    bool output;
    /* conv */
    av_tensor *w, *b;
    int64_t stride[2], pad_begin[2], pad_end[2], dilation[2], groups;
    /* pool */
    int pool_kind;
    bool ceil;
    int64_t kernel[2];
    /* made per instance (input shapes, thread count) */
    int64_t shape[4];            /* N C H W of this value */
    dnnl_memory_desc_t md;       /* this value's layout */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src_md[2]; /* what prim wants for in[0], in[1] */
    dnnl_primitive_t src_reorder[2]; /* value layout -> src_md, or NULL */
    av_tensor *w_prim;           /* conv weights in the primitive's layout */
    dnnl_primitive_t out_reorder; /* md -> plain NCHW for outputs, or NULL */
    dnnl_memory_desc_t plain;
} node;

struct av_plan {
    node *nodes;
    int n, cap;
    int ninputs, noutputs;
    /* the instance */
    bool built;
    int threads;
    int64_t in_shape[8][4];
    int *uses; /* consumers of each value, outputs counted once */
};

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool engine_ok;
static void init_engine(void) {
    engine_ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
                dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success;
}

bool av_plan_available(void) {
    pthread_once(&once, init_engine);
    return engine_ok;
}

av_plan *av_plan_new(void) {
    if (!av_plan_available()) {
        av_fail("inference plan: oneDNN could not start a CPU engine");
        return NULL;
    }
    av_plan *p = calloc(1, sizeof *p);
    if (!p) av_fail("inference plan: out of memory");
    return p;
}

static void drop_instance(av_plan *p) {
    for (int i = 0; i < p->n; i++) {
        node *d = &p->nodes[i];
        if (d->prim) dnnl_primitive_destroy(d->prim);
        for (int k = 0; k < 2; k++)
            if (d->src_reorder[k]) dnnl_primitive_destroy(d->src_reorder[k]);
        if (d->out_reorder) dnnl_primitive_destroy(d->out_reorder);
        av_release(d->w_prim);
        d->prim = d->src_reorder[0] = d->src_reorder[1] = d->out_reorder = NULL;
        d->w_prim = NULL;
    }
    p->built = false;
}

void av_plan_free(av_plan *p) {
    if (!p) return;
    drop_instance(p);
    for (int i = 0; i < p->n; i++) {
        av_release(p->nodes[i].w);
        av_release(p->nodes[i].b);
    }
    free(p->nodes);
    free(p->uses);
    free(p);
}

static node *add_node(av_plan *p, int kind) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        node *nn = realloc(p->nodes, (size_t)cap * sizeof *nn);
        if (!nn) { av_fail("inference plan: out of memory"); return NULL; }
        p->nodes = nn;
        p->cap = cap;
    }
    drop_instance(p);
    node *d = &p->nodes[p->n++];
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->in[0] = d->in[1] = -1;
    return d;
}

static int check_value(const av_plan *p, int v, const char *fn, const char *what) {
    if (v < 0 || v >= p->n) return av_fail("%s: %s is value %d, but the plan has values 0..%d", fn, what, v, p->n - 1);
    return 0;
}

int av_plan_input(av_plan *p) {
    if (p->ninputs == 8) return av_fail("inference plan: at most 8 inputs");
    if (!add_node(p, OP_INPUT)) return -1;
    p->ninputs++;
    return p->n - 1;
}

int av_plan_conv(av_plan *p, int x, const av_tensor *w, const av_tensor *b, const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2], const int64_t dilation[2], int64_t groups,
                 int residual, bool relu) {
    const char *fn = "inference plan: conv";
    char s[64];
    if (check_value(p, x, fn, "the input")) return -1;
    if (residual >= 0 && check_value(p, residual, fn, "the residual")) return -1;
    if (w->dtype != AV_F32 || w->ndim != 4)
        return av_fail("%s: expected a 4-d float32 weight, got %s %s", fn, av_dtype_name(w->dtype),
                       av_shape_str(w, s, sizeof s));
    if (groups < 1 || w->shape[0] % groups) return av_fail("%s: %lld groups do not divide %lld output channels", fn,
                                                           (long long)groups, (long long)w->shape[0]);
    if (b && (b->dtype != AV_F32 || b->ndim != 1 || b->shape[0] != w->shape[0]))
        return av_fail("%s: expected a float32 bias of %lld elements, got %s", fn, (long long)w->shape[0],
                       av_shape_str(b, s, sizeof s));
    for (int k = 0; k < 2; k++)
        if (stride[k] < 1 || dilation[k] < 1 || pad_begin[k] < 0 || pad_end[k] < 0)
            return av_fail("%s: stride and dilation must be >= 1 and padding >= 0", fn);
    av_tensor *wc = av_contiguous(w), *bc = b ? av_contiguous(b) : NULL;
    if (!wc || (b && !bc)) { av_release(wc); return -1; }
    node *d = add_node(p, OP_CONV);
    if (!d) { av_release(wc); av_release(bc); return -1; }
    d->in[0] = x;
    d->in[1] = residual;
    d->relu = relu;
    d->w = wc;
    d->b = bc;
    d->groups = groups;
    memcpy(d->stride, stride, sizeof d->stride);
    memcpy(d->pad_begin, pad_begin, sizeof d->pad_begin);
    memcpy(d->pad_end, pad_end, sizeof d->pad_end);
    memcpy(d->dilation, dilation, sizeof d->dilation);
    return p->n - 1;
}

int av_plan_pool(av_plan *p, int x, int kind, const int64_t kernel[2], const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2]) {
    const char *fn = "inference plan: pool";
    if (check_value(p, x, fn, "the input")) return -1;
    bool ceil = (kind & 4) != 0;
    kind &= ~4;
    if (kind < 0 || kind > 2) return av_fail("%s: kind must be 0 (max), 1 (average) or 2 (average with padding)", fn);
    bool global = kernel[0] == 0 && kernel[1] == 0;
    for (int k = 0; k < 2 && !global; k++)
        if (kernel[k] < 1 || stride[k] < 1 || pad_begin[k] < 0 || pad_end[k] < 0)
            return av_fail("%s: kernel and stride must be >= 1 and padding >= 0", fn);
    node *d = add_node(p, OP_POOL);
    if (!d) return -1;
    d->in[0] = x;
    d->pool_kind = kind;
    d->ceil = ceil;
    memcpy(d->kernel, kernel, sizeof d->kernel);
    if (!global) {
        memcpy(d->stride, stride, sizeof d->stride);
        memcpy(d->pad_begin, pad_begin, sizeof d->pad_begin);
        memcpy(d->pad_end, pad_end, sizeof d->pad_end);
    }
    return p->n - 1;
}

int av_plan_add(av_plan *p, int a, int b, bool relu) {
    if (check_value(p, a, "inference plan: add", "the first operand") ||
        check_value(p, b, "inference plan: add", "the second operand"))
        return -1;
    node *d = add_node(p, OP_ADD);
    if (!d) return -1;
    d->in[0] = a;
    d->in[1] = b;
    d->relu = relu;
    return p->n - 1;
}

int av_plan_relu(av_plan *p, int x) {
    if (check_value(p, x, "inference plan: relu", "the input")) return -1;
    node *d = add_node(p, OP_RELU);
    if (!d) return -1;
    d->in[0] = x;
    return p->n - 1;
}

int av_plan_clip(av_plan *p, int x, float lo, float hi) {
    if (check_value(p, x, "inference plan: clip", "the input")) return -1;
    if (!(lo <= hi)) return av_fail("inference plan: clip bounds must satisfy lo <= hi, got %g and %g", lo, hi);
    node *d = add_node(p, OP_CLIP);
    if (!d) return -1;
    d->in[0] = x;
    d->lo = lo;
    d->hi = hi;
    return p->n - 1;
}

int av_plan_fuse_clip(av_plan *p, int v, float lo, float hi) {
    if (check_value(p, v, "inference plan: fuse_clip", "the value")) return -1;
    node *d = &p->nodes[v];
    if (d->kind != OP_CONV && d->kind != OP_ADD)
        return av_fail("inference plan: fuse_clip needs a convolution or an add, value %d is neither", v);
    if (!(lo <= hi)) return av_fail("inference plan: clip bounds must satisfy lo <= hi, got %g and %g", lo, hi);
    drop_instance(p);
    d->clip = true;
    d->lo = lo;
    d->hi = hi;
    return 0;
}

int av_plan_output(av_plan *p, int x) {
    if (check_value(p, x, "inference plan: output", "the value")) return -1;
    if (!p->nodes[x].output) p->noutputs++;
    p->nodes[x].output = true;
    drop_instance(p);
    return 0;
}

int av_plan_num_outputs(const av_plan *p) { return p->noutputs; }

/* ---- building an instance for given input shapes -------------------------------------------- */

static bool reorder_prim(dnnl_primitive_t *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
    *r = NULL;
    if (dnnl_memory_desc_equal(from, to)) return true;
    dnnl_primitive_desc_t rpd;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL) != dnnl_success) return false;
    bool ok = dnnl_primitive_create(r, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    return ok;
}

static dnnl_memory_t wrap(const dnnl_memory_desc_t *md, const void *ptr) {
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, engine, (void *)ptr) != dnnl_success) return NULL;
    return m;
}

static av_tensor *buffer_for(const dnnl_memory_desc_t *md) {
    int64_t n = (int64_t)((dnnl_memory_desc_get_size(md) + 3) / 4);
    if (n < 1) n = 1;
    return av_empty(1, &n, AV_F32);
}

static bool exec2(dnnl_primitive_t prim, int a1, dnnl_memory_t m1, int a2, dnnl_memory_t m2) {
    dnnl_exec_arg_t args[2] = {{a1, m1}, {a2, m2}};
    return dnnl_primitive_execute(prim, stream, 2, args) == dnnl_success;
}

/* runs a reorder between two buffers */
static bool run_reorder(dnnl_primitive_t r, const dnnl_memory_desc_t *from_md, const void *from,
                        const dnnl_memory_desc_t *to_md, void *to) {
    dnnl_memory_t a = wrap(from_md, from), b = wrap(to_md, to);
    bool ok = a && b && exec2(r, DNNL_ARG_FROM, a, DNNL_ARG_TO, b);
    if (a) dnnl_memory_destroy(a);
    if (b) dnnl_memory_destroy(b);
    return ok;
}

static dnnl_primitive_attr_t post_ops_attr(bool sum, const node *d) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool relu = d->relu, clip = d->clip;
    if (!sum && !relu && !clip) return NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    if (dnnl_post_ops_create(&po) != dnnl_success) { dnnl_primitive_attr_destroy(attr); return NULL; }
    if (sum) dnnl_post_ops_append_sum(po, 1.0f);
    if (relu) dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (clip) dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, d->lo, d->hi);
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return attr;
}

/* the primitive of pd, and the layout of its output into d->md */
static int finish(node *d, dnnl_primitive_desc_t pd, const char *what) {
    const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    bool ok = dst && dnnl_primitive_create(&d->prim, pd) == dnnl_success;
    if (ok) d->md = *dst;
    dnnl_primitive_desc_destroy(pd);
    return ok ? 0 : av_fail("inference plan: oneDNN could not make the %s primitive", what);
}

static int build_conv(av_plan *p, node *d) {
    const node *x = &p->nodes[d->in[0]];
    const int64_t *xs = x->shape, *ws = d->w->shape;
    int64_t G = d->groups, Co = ws[0], Cig = ws[1], kh = ws[2], kw = ws[3];
    char s[64];
    if (xs[1] != Cig * G)
        return av_fail("inference plan: conv expects %lld input channels (weight %s, %lld groups), got %lld",
                       (long long)(Cig * G), av_shape_str(d->w, s, sizeof s), (long long)G, (long long)xs[1]);
    int64_t eh = d->dilation[0] * (kh - 1) + 1, ew = d->dilation[1] * (kw - 1) + 1;
    int64_t Ho = (xs[2] + d->pad_begin[0] + d->pad_end[0] - eh) / d->stride[0] + 1;
    int64_t Wo = (xs[3] + d->pad_begin[1] + d->pad_end[1] - ew) / d->stride[1] + 1;
    if (Ho < 1 || Wo < 1) return av_fail("inference plan: conv input %lldx%lld is smaller than the kernel",
                                         (long long)xs[2], (long long)xs[3]);
    int64_t ys[4] = {xs[0], Co, Ho, Wo};
    memcpy(d->shape, ys, sizeof ys);
    if (d->in[1] >= 0 && memcmp(p->nodes[d->in[1]].shape, ys, sizeof ys))
        return av_fail("inference plan: the residual's shape differs from the convolution's output");
    dnnl_dims_t xd = {xs[0], xs[1], xs[2], xs[3]}, yd = {ys[0], ys[1], ys[2], ys[3]}, bd = {Co};
    dnnl_dims_t wd5 = {G, Co / G, Cig, kh, kw}, wd4 = {Co, Cig, kh, kw};
    dnnl_dims_t st = {d->stride[0], d->stride[1]}, dl = {d->dilation[0] - 1, d->dilation[1] - 1};
    dnnl_dims_t pl = {d->pad_begin[0], d->pad_begin[1]}, pr = {d->pad_end[0], d->pad_end[1]};
    dnnl_memory_desc_t x_any, w_any, y_any, b_md, w_user;
    dnnl_memory_desc_init_by_tag(&x_any, 4, xd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x);
    if (G > 1) {
        dnnl_memory_desc_init_by_tag(&w_any, 5, wd5, dnnl_f32, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&w_user, 5, wd5, dnnl_f32, dnnl_goihw);
    } else {
        dnnl_memory_desc_init_by_tag(&w_any, 4, wd4, dnnl_f32, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&w_user, 4, wd4, dnnl_f32, dnnl_oihw);
    }
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = post_ops_attr(d->in[1] >= 0, d);
    bool ok = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &x_any,
                                                         &w_any, d->b ? &b_md : NULL, &y_any, st, dl, pl,
                                                         pr) == dnnl_success &&
              dnnl_primitive_desc_create(&pd, &cd, attr, engine, NULL) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return av_fail("inference plan: oneDNN has no convolution for input %lldx%lldx%lldx%lld, weight %s",
                            (long long)xs[0], (long long)xs[1], (long long)xs[2], (long long)xs[3],
                            av_shape_str(d->w, s, sizeof s));
    d->src_md[0] = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (finish(d, pd, "convolution")) return -1;
    if (!reorder_prim(&d->src_reorder[0], &x->md, &d->src_md[0]))
        return av_fail("inference plan: no reorder into the convolution's input layout");
    if (d->in[1] >= 0 && !reorder_prim(&d->src_reorder[1], &p->nodes[d->in[1]].md, &d->md))
        return av_fail("inference plan: no reorder of the residual into the convolution's output layout");
    /* the weights, once, in the layout the primitive chose */
    if (!(d->w_prim = buffer_for(&wmd))) return -1;
    dnnl_primitive_t wr;
    if (!reorder_prim(&wr, &w_user, &wmd)) return av_fail("inference plan: no reorder for the weights");
    if (!wr) {
        memcpy(av_data(d->w_prim), av_data(d->w), dnnl_memory_desc_get_size(&wmd));
    } else {
        ok = run_reorder(wr, &w_user, av_data(d->w), &wmd, av_data(d->w_prim));
        dnnl_primitive_destroy(wr);
        if (!ok) return av_fail("inference plan: reordering the weights failed");
    }
    d->src_md[1] = wmd; /* kept to wrap w_prim at run time */
    return 0;
}

static int build_pool(av_plan *p, node *d) {
    const node *x = &p->nodes[d->in[0]];
    const int64_t *xs = x->shape;
    int64_t k[2], st[2], pb[2], pe[2];
    if (d->kernel[0] == 0 && d->kernel[1] == 0) {
        k[0] = xs[2]; k[1] = xs[3]; st[0] = st[1] = 1; pb[0] = pb[1] = pe[0] = pe[1] = 0;
    } else {
        for (int i = 0; i < 2; i++) { k[i] = d->kernel[i]; st[i] = d->stride[i]; pb[i] = d->pad_begin[i]; pe[i] = d->pad_end[i]; }
    }
    int64_t rh = xs[2] + pb[0] + pe[0] - k[0], rw = xs[3] + pb[1] + pe[1] - k[1];
    if (rh < 0 || rw < 0) return av_fail("inference plan: pooling input %lldx%lld is smaller than the kernel",
                                         (long long)xs[2], (long long)xs[3]);
    int64_t Ho = (rh + (d->ceil ? st[0] - 1 : 0)) / st[0] + 1, Wo = (rw + (d->ceil ? st[1] - 1 : 0)) / st[1] + 1;
    /* ceil mode's extra window may start past the padded input: drop it as PyTorch does */
    if (d->ceil && (Ho - 1) * st[0] >= xs[2] + pb[0]) Ho--;
    if (d->ceil && (Wo - 1) * st[1] >= xs[3] + pb[1]) Wo--;
    pe[0] = (Ho - 1) * st[0] + k[0] - xs[2] - pb[0];
    pe[1] = (Wo - 1) * st[1] + k[1] - xs[3] - pb[1];
    if (pe[0] < 0) pe[0] = 0;
    if (pe[1] < 0) pe[1] = 0;
    int64_t ys[4] = {xs[0], xs[1], Ho, Wo};
    memcpy(d->shape, ys, sizeof ys);
    dnnl_dims_t yd = {ys[0], ys[1], ys[2], ys[3]}, kd = {k[0], k[1]}, sd = {st[0], st[1]}, dd = {0, 0};
    dnnl_dims_t pl = {pb[0], pb[1]}, pr = {pe[0], pe[1]};
    dnnl_memory_desc_t y_any;
    dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, dnnl_format_tag_any);
    static const dnnl_alg_kind_t algs[3] = {dnnl_pooling_max, dnnl_pooling_avg_exclude_padding,
                                            dnnl_pooling_avg_include_padding};
    dnnl_pooling_v2_desc_t pdsc;
    dnnl_primitive_desc_t pd = NULL;
    d->src_md[0] = x->md;
    if (dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, algs[d->pool_kind], &x->md, &y_any, sd, kd,
                                          dd, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &pdsc, NULL, engine, NULL) != dnnl_success)
        return av_fail("inference plan: oneDNN has no pooling for this shape");
    return finish(d, pd, "pooling");
}

static int build_add(av_plan *p, node *d) {
    const node *a = &p->nodes[d->in[0]], *b = &p->nodes[d->in[1]];
    if (memcmp(a->shape, b->shape, sizeof a->shape))
        return av_fail("inference plan: add of values of different shapes");
    memcpy(d->shape, a->shape, sizeof d->shape);
    d->src_md[0] = a->md;
    d->src_md[1] = a->md; /* b is brought into a's layout */
    if (!reorder_prim(&d->src_reorder[1], &b->md, &a->md)) return av_fail("inference plan: no reorder for add");
    dnnl_binary_desc_t bd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = post_ops_attr(false, d);
    bool ok = dnnl_binary_desc_init(&bd, dnnl_binary_add, &a->md, &a->md, &a->md) == dnnl_success &&
              dnnl_primitive_desc_create(&pd, &bd, attr, engine, NULL) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return av_fail("inference plan: oneDNN has no add for this layout");
    return finish(d, pd, "add");
}

static int build_relu(av_plan *p, node *d) {
    const node *x = &p->nodes[d->in[0]];
    memcpy(d->shape, x->shape, sizeof d->shape);
    d->src_md[0] = x->md;
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t pd = NULL;
    bool clip = d->kind == OP_CLIP;
    if (dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, clip ? dnnl_eltwise_clip : dnnl_eltwise_relu, &x->md,
                                       clip ? d->lo : 0.0f, clip ? d->hi : 0.0f) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&pd, &ed, NULL, engine, NULL) != dnnl_success)
        return av_fail("inference plan: oneDNN has no ReLU for this layout");
    return finish(d, pd, "ReLU");
}

static int build(av_plan *p, int nin, av_tensor *const *inputs) {
    drop_instance(p);
    free(p->uses);
    if (!(p->uses = calloc((size_t)p->n, sizeof *p->uses))) return av_fail("inference plan: out of memory");
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        node *d = &p->nodes[i];
        for (int j = 0; j < 2; j++)
            if (d->in[j] >= 0) p->uses[d->in[j]]++;
        if (d->output) p->uses[i]++;
        int rc = 0;
        switch (d->kind) {
        case OP_INPUT: {
            const av_tensor *t = inputs[k];
            memcpy(d->shape, t->shape, sizeof d->shape);
            memcpy(p->in_shape[k++], t->shape, sizeof d->shape);
            dnnl_dims_t dims = {t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
            dnnl_memory_desc_init_by_tag(&d->md, 4, dims, dnnl_f32, dnnl_nchw);
            break;
        }
        case OP_CONV: rc = build_conv(p, d); break;
        case OP_POOL: rc = build_pool(p, d); break;
        case OP_ADD: rc = build_add(p, d); break;
        default: rc = build_relu(p, d); break;
        }
        if (rc) { drop_instance(p); return -1; }
        if (d->output) {
            dnnl_dims_t dims = {d->shape[0], d->shape[1], d->shape[2], d->shape[3]};
            dnnl_memory_desc_init_by_tag(&d->plain, 4, dims, dnnl_f32, dnnl_nchw);
            if (!reorder_prim(&d->out_reorder, &d->md, &d->plain)) {
                drop_instance(p);
                return av_fail("inference plan: no reorder to NCHW for an output");
            }
        }
    }
    (void)nin;
    p->threads = av_get_num_threads();
    p->built = true;
    return 0;
}

/* ---- running ----------------------------------------------------------------------------------- */

/* a buffer for node d's output: value `steal`'s own when this is its last use and
 * the layouts agree (the op then runs in place), else a new one */
static av_tensor *dst_buffer(av_plan *p, av_tensor **val, int *left, node *d, int steal) {
    if (steal >= 0 && left[steal] == 1 && !p->nodes[steal].output &&
        dnnl_memory_desc_equal(&p->nodes[steal].md, &d->md) && p->nodes[steal].kind != OP_INPUT)
        return av_retain(val[steal]);
    return buffer_for(&d->md);
}

/* value v as primitive input i of node d: v's buffer, or a reordered copy in *tmp */
static dnnl_memory_t src_mem(av_plan *p, av_tensor **val, node *d, int i, av_tensor **tmp) {
    const node *v = &p->nodes[d->in[i]];
    if (!d->src_reorder[i]) return wrap(&v->md, av_data(val[d->in[i]]));
    if (!(*tmp = buffer_for(&d->src_md[i]))) return NULL;
    if (!run_reorder(d->src_reorder[i], &v->md, av_data(val[d->in[i]]), &d->src_md[i], av_data(*tmp))) return NULL;
    return wrap(&d->src_md[i], av_data(*tmp));
}

static int run_node(av_plan *p, av_tensor **val, int *left, int i) {
    node *d = &p->nodes[i];
    av_tensor *tmp[2] = {0}, *out = NULL;
    dnnl_memory_t m[5] = {0};
    bool ok = false;
    switch (d->kind) {
    case OP_CONV: {
        int r = d->in[1];
        if (r >= 0 && !d->src_reorder[1]) out = dst_buffer(p, val, left, d, r);
        else out = buffer_for(&d->md);
        if (!out) break;
        if (r >= 0 && av_data(out) != av_data(val[r])) {
            if (d->src_reorder[1]) {
                if (!run_reorder(d->src_reorder[1], &p->nodes[r].md, av_data(val[r]), &d->md, av_data(out))) break;
            } else {
                memcpy(av_data(out), av_data(val[r]), dnnl_memory_desc_get_size(&d->md));
            }
        }
        dnnl_memory_desc_t bmd;
        dnnl_memory_desc_init_by_tag(&bmd, 1, (dnnl_dims_t){d->w->shape[0]}, dnnl_f32, dnnl_x);
        if (!(m[0] = src_mem(p, val, d, 0, &tmp[0])) || !(m[1] = wrap(&d->src_md[1], av_data(d->w_prim))) ||
            !(m[2] = wrap(&d->md, av_data(out))) || (d->b && !(m[3] = wrap(&bmd, av_data(d->b)))))
            break;
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[2]},
                                   {DNNL_ARG_BIAS, m[3]}};
        ok = dnnl_primitive_execute(d->prim, stream, d->b ? 4 : 3, args) == dnnl_success;
        break;
    }
    case OP_POOL: {
        if (!(out = buffer_for(&d->md))) break;
        if (!(m[0] = wrap(&d->src_md[0], av_data(val[d->in[0]]))) || !(m[1] = wrap(&d->md, av_data(out)))) break;
        ok = exec2(d->prim, DNNL_ARG_SRC, m[0], DNNL_ARG_DST, m[1]);
        break;
    }
    case OP_ADD: {
        int a = d->in[0];
        if (!(out = dst_buffer(p, val, left, d, a))) break;
        if (!(m[0] = wrap(&d->md, av_data(val[a]))) || !(m[1] = src_mem(p, val, d, 1, &tmp[1])) ||
            !(m[2] = wrap(&d->md, av_data(out))))
            break;
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, m[0]}, {DNNL_ARG_SRC_1, m[1]}, {DNNL_ARG_DST, m[2]}};
        ok = dnnl_primitive_execute(d->prim, stream, 3, args) == dnnl_success;
        break;
    }
    case OP_CLIP:
    case OP_RELU: {
        if (!(out = dst_buffer(p, val, left, d, d->in[0]))) break;
        if (!(m[0] = wrap(&d->md, av_data(val[d->in[0]]))) || !(m[1] = wrap(&d->md, av_data(out)))) break;
        ok = exec2(d->prim, DNNL_ARG_SRC, m[0], DNNL_ARG_DST, m[1]);
        break;
    }
    }
    if (ok) ok = dnnl_stream_wait(stream) == dnnl_success;
    for (int k = 0; k < 5; k++)
        if (m[k]) dnnl_memory_destroy(m[k]);
    av_release(tmp[0]);
    av_release(tmp[1]);
    if (!ok) {
        av_release(out);
        return av_fail("inference plan: oneDNN failed to run value %d (out of memory?)", i);
    }
    val[i] = out;
    /* inputs whose last consumer this was give their memory back */
    for (int k = 0; k < 2; k++) {
        int v = d->in[k];
        if (v >= 0 && --left[v] == 0) { av_release(val[v]); val[v] = NULL; }
    }
    return 0;
}

int av_plan_run(av_plan *p, int nin, av_tensor *const *inputs, int nout, av_tensor **outputs) {
    char s[64];
    if (nin != p->ninputs) return av_fail("inference plan: expected %d inputs, got %d", p->ninputs, nin);
    if (nout != p->noutputs) return av_fail("inference plan: expected %d outputs, got %d", p->noutputs, nout);
    for (int i = 0; i < nin; i++) {
        const av_tensor *t = inputs[i];
        if (t->dtype != AV_F32 || t->ndim != 4 || t->storage->device.type != AV_CPU)
            return av_fail("inference plan: input %d must be a 4-d float32 CPU tensor (N x C x H x W), got %s %s", i + 1,
                           av_dtype_name(t->dtype), av_shape_str(t, s, sizeof s));
    }
    bool same = p->built && p->threads == av_get_num_threads();
    for (int i = 0; i < nin && same; i++) same = !memcmp(p->in_shape[i], inputs[i]->shape, sizeof p->in_shape[i]);
    if (!same && build(p, nin, inputs)) return -1;
    av_tensor **val = calloc((size_t)p->n, sizeof *val);
    int *left = malloc((size_t)p->n * sizeof *left);
    if (!val || !left) { free(val); free(left); return av_fail("inference plan: out of memory"); }
    memcpy(left, p->uses, (size_t)p->n * sizeof *left);
    int rc = 0, k = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        if (p->nodes[i].kind == OP_INPUT) {
            val[i] = av_contiguous(inputs[k++]);
            rc = val[i] ? 0 : -1;
        } else {
            rc = run_node(p, val, left, i);
        }
    }
    int j = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        node *d = &p->nodes[i];
        if (!d->output) continue;
        av_tensor *y = av_empty(4, d->shape, AV_F32);
        if (!y) { rc = -1; break; }
        if (d->out_reorder) {
            if (!run_reorder(d->out_reorder, &d->md, av_data(val[i]), &d->plain, av_data(y)) ||
                dnnl_stream_wait(stream) != dnnl_success) {
                av_release(y);
                rc = av_fail("inference plan: reordering an output failed");
                break;
            }
        } else {
            memcpy(av_data(y), av_data(val[i]), (size_t)av_numel(y) * 4);
        }
        outputs[j++] = y;
    }
    if (rc)
        for (int i = 0; i < j; i++) { av_release(outputs[i]); outputs[i] = NULL; }
    for (int i = 0; i < p->n; i++) av_release(val[i]);
    free(val);
    free(left);
    return rc;
}

#else /* no oneDNN in this build */

bool av_plan_available(void) { return false; }
av_plan *av_plan_new(void) {
    av_fail("inference plan: this build has no oneDNN (install libdnnl-dev and rebuild)");
    return NULL;
}
void av_plan_free(av_plan *p) { (void)p; }
int av_plan_input(av_plan *p) { (void)p; return av_fail("inference plan: no oneDNN"); }
int av_plan_conv(av_plan *p, int x, const av_tensor *w, const av_tensor *b, const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2], const int64_t dilation[2], int64_t groups,
                 int residual, bool relu) {
    (void)p; (void)x; (void)w; (void)b; (void)stride; (void)pad_begin; (void)pad_end; (void)dilation;
    (void)groups; (void)residual; (void)relu;
    return av_fail("inference plan: no oneDNN");
}
int av_plan_pool(av_plan *p, int x, int kind, const int64_t kernel[2], const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2]) {
    (void)p; (void)x; (void)kind; (void)kernel; (void)stride; (void)pad_begin; (void)pad_end;
    return av_fail("inference plan: no oneDNN");
}
int av_plan_add(av_plan *p, int a, int b, bool relu) { (void)p; (void)a; (void)b; (void)relu; return av_fail("inference plan: no oneDNN"); }
int av_plan_relu(av_plan *p, int x) { (void)p; (void)x; return av_fail("inference plan: no oneDNN"); }
int av_plan_clip(av_plan *p, int x, float lo, float hi) { (void)p; (void)x; (void)lo; (void)hi; return av_fail("inference plan: no oneDNN"); }
int av_plan_fuse_clip(av_plan *p, int v, float lo, float hi) { (void)p; (void)v; (void)lo; (void)hi; return av_fail("inference plan: no oneDNN"); }
int av_plan_output(av_plan *p, int x) { (void)p; (void)x; return av_fail("inference plan: no oneDNN"); }
int av_plan_num_outputs(const av_plan *p) { (void)p; return 0; }
int av_plan_run(av_plan *p, int nin, av_tensor *const *inputs, int nout, av_tensor **outputs) {
    (void)p; (void)nin; (void)inputs; (void)nout; (void)outputs;
    return av_fail("inference plan: no oneDNN");
}
#endif
