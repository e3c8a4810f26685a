// 2-d convolution through cuDNN: forward, backward data, backward filter and
// the bias gradient, for float32 (TF32 optional), float64, float16 and
// bfloat16 (float accumulation), NCHW or channels-last (NHWC memory, NCHW
// logical shape, as PyTorch's channels_last).
//
// A plan per shape (dtype, layout, sizes, geometry, math mode) holds the
// tensor/filter/convolution descriptors and, per direction, the algorithm:
// the first of cudnnGet*Algorithm_v7's ranked list that fits the workspace
// cap, or, in benchmark mode (av_cudnn_set_benchmark), the fastest of
// cudnnFind*AlgorithmEx timed on the call's own buffers. Plans are never
// freed while in use; the table is a ring of PLANS entries.
//
// cuDNN pads symmetrically; asymmetric padding (padding='same' with an even
// kernel) runs with the larger padding on both sides and keeps the window
// positions it asked for, which is exact when the two paddings differ by a
// multiple of the stride (always for 'same', whose stride is 1).
#include <mutex>
#include <string.h>
#include "cuda_lib.h"

#define PLANS 512
static const size_t WORKSPACE_CAP = (size_t)1 << 30; // heuristic choices
static const size_t FIND_CAP = (size_t)512 << 20;    // benchmark-mode trials

enum { FWD = 0, BWD_DATA = 1, BWD_FILTER = 2 };

namespace {
struct plan_key {
    int dt, nhwc, tf32, bench, device;
    int64_t x[4], w[4];
    int pad[2], stride[2], dil[2], groups;
};
struct plan {
    plan_key key;
    bool used;
    int64_t y[4];
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    bool chosen[3];
    int algo[3];
    cudnnMathType_t math[3];
    size_t ws[3];
};
plan g_plans[PLANS];
int g_next;
std::mutex g_lock;
} // namespace

// ---- layouts ---------------------------------------------------------------------------------

// an uninitialised N x C x H x W tensor on dev in the given layout
static av_tensor *empty_layout(const int64_t s[4], av_dtype dt, av_device dev, bool nhwc) {
    if (!nhwc) return av_empty_on(4, s, dt, dev);
    int64_t m[4] = {s[0], s[2], s[3], s[1]};
    static const int back[4] = {0, 3, 1, 2};
    av_tensor *t = av_empty_on(4, m, dt, dev);
    av_tensor *r = t ? av_permute(t, back) : NULL;
    av_release(t);
    return r;
}

// ---- checks ----------------------------------------------------------------------------------
namespace {
struct geom {
    int64_t x[4], w[4], y[4]; // y: the caller's output size
    int64_t sym[2], off[2];    // cuDNN's symmetric padding and the first kept output row/column
    bool asym;
};
} // namespace

static int make_geom(const char *fn, const int64_t *xs, const int64_t *ws, const av_conv2d_args *a, geom *g) {
    char b1[64], b2[64];
    memcpy(g->x, xs, sizeof g->x);
    memcpy(g->w, ws, sizeof g->w);
    for (int d = 0; d < 2; d++) {
        if (a->stride[d] < 1 || a->dilation[d] < 1 || a->pad_begin[d] < 0 || a->pad_end[d] < 0)
            return av_fail("%s: stride and dilation must be positive and padding non-negative", fn);
    }
    if (a->groups < 1) return av_fail("%s: groups must be positive, got %lld", fn, (long long)a->groups);
    if (xs[1] % a->groups || ws[0] % a->groups || ws[1] * a->groups != xs[1])
        return av_fail("%s: weight of size %s with groups=%lld does not match input of size %s", fn,
                       av_shape_str_raw(4, ws, b1, sizeof b1), (long long)a->groups, av_shape_str_raw(4, xs, b2, sizeof b2));
    g->y[0] = xs[0];
    g->y[1] = ws[0];
    g->asym = false;
    for (int d = 0; d < 2; d++) {
        int64_t ek = a->dilation[d] * (ws[2 + d] - 1) + 1, padded = xs[2 + d] + a->pad_begin[d] + a->pad_end[d];
        if (ws[2 + d] < 1 || ek > padded)
            return av_fail("%s: kernel size %lldx%lld (dilated) is larger than the padded input (input %s)", fn,
                           (long long)ws[2], (long long)ws[3], av_shape_str_raw(4, xs, b1, sizeof b1));
        g->y[2 + d] = (padded - ek) / a->stride[d] + 1;
        g->sym[d] = a->pad_begin[d] > a->pad_end[d] ? a->pad_begin[d] : a->pad_end[d];
        int64_t shift = g->sym[d] - a->pad_begin[d];
        if (a->pad_begin[d] != a->pad_end[d]) {
            g->asym = true;
            if (shift % a->stride[d])
                return av_fail("%s: asymmetric padding (%lld before, %lld after) with stride %lld is not supported on "
                               "CUDA", fn, (long long)a->pad_begin[d], (long long)a->pad_end[d], (long long)a->stride[d]);
        }
        g->off[d] = shift / a->stride[d];
    }
    return 0;
}

static int check_tensors(const char *fn, const av_tensor *x, const av_tensor *w, const av_tensor *b) {
    char s[64];
    if (av_check_same_device(fn, x, "input", w, "weight") || (b && av_check_same_device(fn, x, "input", b, "bias")))
        return -1;
    if (!av_cuda_float(x->dtype))
        return av_fail("%s: expected a floating point input, got %s", fn, av_dtype_name(x->dtype));
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return av_fail("%s: input, weight and bias must share one dtype, got %s, %s%s%s", fn, av_dtype_name(x->dtype),
                       av_dtype_name(w->dtype), b ? " and " : "", b ? av_dtype_name(b->dtype) : "");
    if (x->ndim != 4) return av_fail("%s: expected a 4-d input, got size %s", fn, av_shape_str(x, s, sizeof s));
    if (w->ndim != 4)
        return av_fail("%s: expected a 4-d weight (out_channels x in_channels/groups x kh x kw), got size %s", fn,
                       av_shape_str(w, s, sizeof s));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return av_fail("%s: bias of size %s does not match the %lld output channels of the weight", fn,
                       av_shape_str(b, s, sizeof s), (long long)w->shape[0]);
    return 0;
}

// ---- plans -----------------------------------------------------------------------------------
static void destroy_plan(plan *p) {
    if (!p->used) return;
    cudnnDestroyTensorDescriptor(p->xd);
    cudnnDestroyTensorDescriptor(p->yd);
    cudnnDestroyTensorDescriptor(p->bd);
    cudnnDestroyFilterDescriptor(p->wd);
    cudnnDestroyConvolutionDescriptor(p->cd);
    p->used = false;
}

static int set_tensor(cudnnTensorDescriptor_t d, cudnnDataType_t dt, const int64_t *s, bool nhwc) {
    int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
    if (nhwc) AV_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, h * w * c, 1, w * c, c));
    else AV_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, c * h * w, h * w, w, 1));
    return 0;
}

static int init_plan(plan *p, const plan_key *k) {
    memset(p, 0, sizeof *p);
    p->key = *k;
    cudnnDataType_t dt = (cudnnDataType_t)k->dt;
    AV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->xd));
    AV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->yd));
    AV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bd));
    AV_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->wd));
    AV_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->cd));
    p->used = true;
    if (set_tensor(p->xd, dt, k->x, k->nhwc)) return -1;
    AV_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->wd, dt, k->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, (int)k->w[0],
                                              (int)k->w[1], (int)k->w[2], (int)k->w[3]));
    cudnnDataType_t compute = dt == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    AV_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->cd, k->pad[0], k->pad[1], k->stride[0], k->stride[1], k->dil[0],
                                                   k->dil[1], CUDNN_CROSS_CORRELATION, compute));
    AV_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->cd, k->groups));
    int n, c, h, w;
    AV_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &n, &c, &h, &w));
    p->y[0] = n; p->y[1] = c; p->y[2] = h; p->y[3] = w;
    if (set_tensor(p->yd, dt, p->y, k->nhwc)) return -1;
    AV_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, CUDNN_TENSOR_NCHW, dt, 1, c, 1, 1));
    return 0;
}

// the plan for this call (created on first sight); NULL with the error set
static plan *get_plan(const av_tensor *x, const geom *g, const av_conv2d_args *a, bool nhwc) {
    plan_key k;
    memset(&k, 0, sizeof k);
    k.dt = av_cudnn_dtype(x->dtype);
    k.nhwc = nhwc;
    k.tf32 = x->dtype == AV_F32 && av_cuda_get_allow_tf32();
    k.bench = av_cudnn_get_benchmark();
    k.device = av_cuda_dev(x).index;
    memcpy(k.x, g->x, sizeof k.x);
    memcpy(k.w, g->w, sizeof k.w);
    for (int d = 0; d < 2; d++) {
        k.pad[d] = (int)g->sym[d];
        k.stride[d] = (int)a->stride[d];
        k.dil[d] = (int)a->dilation[d];
    }
    k.groups = (int)a->groups;
    std::lock_guard<std::mutex> guard(g_lock);
    for (int i = 0; i < PLANS; i++)
        if (g_plans[i].used && !memcmp(&g_plans[i].key, &k, sizeof k)) return &g_plans[i];
    plan *p = &g_plans[g_next];
    g_next = (g_next + 1) % PLANS;
    destroy_plan(p);
    if (init_plan(p, &k)) {
        destroy_plan(p);
        return NULL;
    }
    return p;
}

// float32 without TF32 must not run on tensor cores (which would round the inputs to TF32)
static bool strict_fp32(const plan *p) { return p->key.dt == CUDNN_DATA_FLOAT && !p->key.tf32; }
static bool math_allowed(const plan *p, cudnnMathType_t m) {
    return !(strict_fp32(p) && (m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION));
}

static cudnnMathType_t requested_math(const plan *p) {
    if (p->key.dt == CUDNN_DATA_DOUBLE) return CUDNN_DEFAULT_MATH;
    if (p->key.dt == CUDNN_DATA_FLOAT && !p->key.tf32) return CUDNN_FMA_MATH;
    return CUDNN_TENSOR_OP_MATH;
}

// picks the first usable entry of a ranked perf list
template <typename Perf>
static int pick(plan *p, int dir, const Perf *perf, int n, size_t cap, const char *what) {
    for (int i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > cap || !math_allowed(p, perf[i].mathType))
            continue;
        p->algo[dir] = (int)perf[i].algo;
        // CUDNN_DEFAULT_MATH permits TF32 on Ampere and later: strict float32 runs as FMA math
        p->math[dir] = strict_fp32(p) ? CUDNN_FMA_MATH : perf[i].mathType;
        p->ws[dir] = perf[i].memory;
        p->chosen[dir] = true;
        return 0;
    }
    char s[64], s2[64];
    return av_fail("conv2d: cuDNN offers no %s algorithm for input %s, weight %s (dtype %d, %s)", what,
                   av_shape_str_raw(4, p->key.x, s, sizeof s), av_shape_str_raw(4, p->key.w, s2, sizeof s2),
                   p->key.dt, p->key.nhwc ? "channels-last" : "NCHW");
}

// the algorithm of one direction, chosen on first use; the buffers are the call's own
static int choose(cudnnHandle_t h, plan *p, int dir, const void *x, const void *w, void *y, const void *dy, void *dx,
                  void *dw) {
    if (p->chosen[dir]) return 0;
    AV_CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, requested_math(p)));
    int n = 0;
    if (dir == FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        if (p->key.bench) {
            void *ws = av_cuda_workspace(FIND_CAP);
            if (!ws) return -1;
            AV_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p->xd, x, p->wd, w, p->cd, p->yd, y,
                                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, ws, FIND_CAP));
            return pick(p, dir, perf, n, FIND_CAP, "forward");
        }
        AV_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, p->wd, p->cd, p->yd,
                                                              CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        return pick(p, dir, perf, n, WORKSPACE_CAP, "forward");
    }
    if (dir == BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        if (p->key.bench) {
            void *ws = av_cuda_workspace(FIND_CAP);
            if (!ws) return -1;
            AV_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p->wd, w, p->yd, dy, p->cd, p->xd, dx,
                                                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf,
                                                                       ws, FIND_CAP));
            return pick(p, dir, perf, n, FIND_CAP, "backward-data");
        }
        AV_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->wd, p->yd, p->cd, p->xd,
                                                                   CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        return pick(p, dir, perf, n, WORKSPACE_CAP, "backward-data");
    }
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    if (p->key.bench) {
        void *ws = av_cuda_workspace(FIND_CAP);
        if (!ws) return -1;
        AV_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p->xd, x, p->yd, dy, p->cd, p->wd, dw,
                                                                     CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf,
                                                                     ws, FIND_CAP));
        return pick(p, dir, perf, n, FIND_CAP, "backward-filter");
    }
    AV_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->xd, p->yd, p->cd, p->wd,
                                                                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    return pick(p, dir, perf, n, WORKSPACE_CAP, "backward-filter");
}

// alpha/beta constants in the type cuDNN reads for the data type
namespace {
struct scalars {
    float f1 = 1, f0 = 0;
    double d1 = 1, d0 = 0;
    const void *one(const plan *p) const { return p->key.dt == CUDNN_DATA_DOUBLE ? (const void *)&d1 : (const void *)&f1; }
    const void *zero(const plan *p) const { return p->key.dt == CUDNN_DATA_DOUBLE ? (const void *)&d0 : (const void *)&f0; }
};
} // namespace

// ---- one prepared call ------------------------------------------------------------------------
namespace {
struct conv_call {
    geom g;
    bool nhwc;
    plan *p;
    cudnnHandle_t h;
    av_tensor *xl, *wl; // x and w in the plan's layout (new refs, may be NULL when not needed)
};
} // namespace

static void call_free(conv_call *c) {
    av_release(c->xl);
    av_release(c->wl);
}

// sets up the call: layouts of x and w, the plan. xs is x's shape (x itself may be NULL).
static int prepare(const char *fn, conv_call *c, const av_tensor *x, const int64_t *xs, const av_tensor *w,
                   const int64_t *ws, const av_conv2d_args *a, av_dtype dt, bool nhwc) {
    memset(c, 0, sizeof *c);
    if (make_geom(fn, xs, ws, a, &c->g)) return -1;
    // asymmetric padding narrows outputs, which the channels-last descriptors cannot express: NCHW then
    c->nhwc = nhwc && !c->g.asym;
    if (!(c->h = av_cudnn_handle())) return -1;
    if (x && !(c->xl = av_cuda_in_layout(x, c->nhwc))) return -1;
    if (w && !(c->wl = av_cuda_in_layout(w, c->nhwc))) return -1;
    av_tensor probe;
    memset(&probe, 0, sizeof probe);
    probe.dtype = dt;
    probe.storage = (x ? x : w)->storage;
    if (!(c->p = get_plan(&probe, &c->g, a, c->nhwc))) return -1;
    return 0;
}

// dy in the plan's padded output geometry and layout (a zero border around gy for asymmetric padding)
static av_tensor *padded_gy(const conv_call *c, const av_tensor *gy) {
    if (!c->g.asym) return av_cuda_in_layout(gy, c->nhwc);
    av_tensor *full = av_zeros_on(4, c->p->y, gy->dtype, av_device_of(gy));
    av_tensor *n1 = full ? av_narrow(full, 2, c->g.off[0], c->g.y[2]) : NULL;
    av_tensor *n2 = n1 ? av_narrow(n1, 3, c->g.off[1], c->g.y[3]) : NULL;
    int rc = n2 ? av_copy_(n2, gy) : -1;
    av_release(n1);
    av_release(n2);
    if (rc) {
        av_release(full);
        return NULL;
    }
    return full;
}

static int check_gy(const char *fn, const conv_call *c, const av_tensor *gy, av_dtype dt) {
    char s[64], e[64];
    if (gy->ndim != 4 || memcmp(gy->shape, c->g.y, sizeof c->g.y) || gy->dtype != dt)
        return av_fail("%s: grad_output of size %s (%s), expected %s (%s)", fn, av_shape_str(gy, s, sizeof s),
                       av_dtype_name(gy->dtype), av_shape_str_raw(4, c->g.y, e, sizeof e), av_dtype_name(dt));
    return 0;
}

// ---- entry points -----------------------------------------------------------------------------
extern "C" av_tensor *av_cuda_conv2d(const av_tensor *x, const av_tensor *w, const av_tensor *b,
                                     const av_conv2d_args *a) {
    const char *fn = "conv2d";
    if (check_tensors(fn, x, w, b)) return NULL;
    conv_call c;
    scalars k;
    av_tensor *y = NULL, *full = NULL;
    if (prepare(fn, &c, x, x->shape, w, w->shape, a, x->dtype, av_cuda_is_nhwc(x))) goto fail;
    if (!(full = empty_layout(c.p->y, x->dtype, av_device_of(x), c.nhwc))) goto fail;
    if (av_numel(full) > 0) {
        if (choose(c.h, c.p, FWD, av_data(c.xl), av_data(c.wl), av_data(full), NULL, NULL, NULL)) goto fail;
        void *ws = c.p->ws[FWD] ? av_cuda_workspace(c.p->ws[FWD]) : NULL;
        if (c.p->ws[FWD] && !ws) goto fail;
        if (cudnnSetConvolutionMathType(c.p->cd, c.p->math[FWD]) != CUDNN_STATUS_SUCCESS) {
            av_fail("cudnnSetConvolutionMathType failed");
            goto fail;
        }
        cudnnStatus_t st = cudnnConvolutionForward(c.h, k.one(c.p), c.p->xd, av_data(c.xl), c.p->wd, av_data(c.wl),
                                                   c.p->cd, (cudnnConvolutionFwdAlgo_t)c.p->algo[FWD], ws,
                                                   c.p->ws[FWD], k.zero(c.p), c.p->yd, av_data(full));
        if (st != CUDNN_STATUS_SUCCESS) {
            av_fail("cudnnConvolutionForward: %s (algorithm %d)", cudnnGetErrorString(st), c.p->algo[FWD]);
            goto fail;
        }
        if (b) {
            av_tensor *bc = av_contiguous(b);
            if (!bc) goto fail;
            st = cudnnAddTensor(c.h, k.one(c.p), c.p->bd, av_data(bc), k.one(c.p), c.p->yd, av_data(full));
            av_release(bc);
            if (st != CUDNN_STATUS_SUCCESS) {
                av_fail("cudnnAddTensor (bias): %s", cudnnGetErrorString(st));
                goto fail;
            }
        }
    }
    if (c.g.asym) {
        av_tensor *n1 = av_narrow(full, 2, c.g.off[0], c.g.y[2]);
        av_tensor *n2 = n1 ? av_narrow(n1, 3, c.g.off[1], c.g.y[3]) : NULL;
        y = n2 ? av_contiguous(n2) : NULL;
        av_release(n1);
        av_release(n2);
        av_release(full);
        full = NULL;
        if (!y) goto fail;
    } else {
        y = full;
        full = NULL;
    }
    call_free(&c);
    return y;
fail:
    call_free(&c);
    av_release(full);
    return NULL;
}

// the gradients of one prepared call; want flags say which of gx, gw, gb to fill
static int run_backward(conv_call *c, const av_tensor *gy, av_dtype dt, av_device dev, av_tensor **gx,
                        av_tensor **gw, av_tensor **gb) {
    scalars k;
    av_tensor *dy = padded_gy(c, gy), *X = NULL, *Wt = NULL, *B = NULL;
    if (!dy) return -1;
    bool empty = av_numel(dy) == 0;
    if (gx && !(X = empty ? av_zeros_on(4, c->g.x, dt, dev) : empty_layout(c->g.x, dt, dev, c->nhwc))) goto fail;
    if (gw && !(Wt = empty ? av_zeros_on(4, c->g.w, dt, dev) : empty_layout(c->g.w, dt, dev, c->nhwc))) goto fail;
    if (gb && !(B = empty ? av_zeros_on(1, &c->g.w[0], dt, dev) : av_empty_on(1, &c->g.w[0], dt, dev))) goto fail;
    if (!empty) {
        cudnnStatus_t st;
        if (X) {
            if (choose(c->h, c->p, BWD_DATA, NULL, av_data(c->wl), NULL, av_data(dy), av_data(X), NULL)) goto fail;
            void *ws = c->p->ws[BWD_DATA] ? av_cuda_workspace(c->p->ws[BWD_DATA]) : NULL;
            if (c->p->ws[BWD_DATA] && !ws) goto fail;
            cudnnSetConvolutionMathType(c->p->cd, c->p->math[BWD_DATA]);
            st = cudnnConvolutionBackwardData(c->h, k.one(c->p), c->p->wd, av_data(c->wl), c->p->yd, av_data(dy),
                                              c->p->cd, (cudnnConvolutionBwdDataAlgo_t)c->p->algo[BWD_DATA], ws,
                                              c->p->ws[BWD_DATA], k.zero(c->p), c->p->xd, av_data(X));
            if (st != CUDNN_STATUS_SUCCESS) {
                av_fail("cudnnConvolutionBackwardData: %s (algorithm %d)", cudnnGetErrorString(st),
                        c->p->algo[BWD_DATA]);
                goto fail;
            }
        }
        if (Wt) {
            if (choose(c->h, c->p, BWD_FILTER, av_data(c->xl), NULL, NULL, av_data(dy), NULL, av_data(Wt))) goto fail;
            void *ws = c->p->ws[BWD_FILTER] ? av_cuda_workspace(c->p->ws[BWD_FILTER]) : NULL;
            if (c->p->ws[BWD_FILTER] && !ws) goto fail;
            cudnnSetConvolutionMathType(c->p->cd, c->p->math[BWD_FILTER]);
            st = cudnnConvolutionBackwardFilter(c->h, k.one(c->p), c->p->xd, av_data(c->xl), c->p->yd, av_data(dy),
                                                c->p->cd, (cudnnConvolutionBwdFilterAlgo_t)c->p->algo[BWD_FILTER], ws,
                                                c->p->ws[BWD_FILTER], k.zero(c->p), c->p->wd, av_data(Wt));
            if (st != CUDNN_STATUS_SUCCESS) {
                av_fail("cudnnConvolutionBackwardFilter: %s (algorithm %d)", cudnnGetErrorString(st),
                        c->p->algo[BWD_FILTER]);
                goto fail;
            }
        }
        if (B) {
            st = cudnnConvolutionBackwardBias(c->h, k.one(c->p), c->p->yd, av_data(dy), k.zero(c->p), c->p->bd,
                                              av_data(B));
            if (st != CUDNN_STATUS_SUCCESS) {
                av_fail("cudnnConvolutionBackwardBias: %s", cudnnGetErrorString(st));
                goto fail;
            }
        }
    }
    av_release(dy);
    if (Wt && c->nhwc) {
        // weight gradients go back to the parameter's NCHW layout: the optimizers' fused list
        // updates want contiguous gradients, and the copy is small next to the activations
        av_tensor *w2 = av_contiguous(Wt);
        av_release(Wt);
        if (!(Wt = w2)) {
            av_release(X);
            av_release(B);
            return -1;
        }
    }
    if (gx) *gx = X;
    if (gw) *gw = Wt;
    if (gb) *gb = B;
    return 0;
fail:
    av_release(dy);
    av_release(X);
    av_release(Wt);
    av_release(B);
    return -1;
}

extern "C" int av_cuda_conv2d_backward(const av_tensor *gy, const av_tensor *x, const av_tensor *w,
                                       const av_conv2d_args *a, av_tensor **gx, av_tensor **gw, av_tensor **gb) {
    const char *fn = "conv2d_backward";
    if (check_tensors(fn, x, w, NULL) || av_check_same_device(fn, x, "input", gy, "grad_output")) return -1;
    conv_call c;
    bool nhwc = av_cuda_is_nhwc(x);
    if (prepare(fn, &c, gw ? x : NULL, x->shape, gx ? w : NULL, w->shape, a, x->dtype, nhwc) ||
        check_gy(fn, &c, gy, x->dtype)) {
        call_free(&c);
        return -1;
    }
    int rc = run_backward(&c, gy, x->dtype, av_device_of(x), gx, gw, gb);
    call_free(&c);
    return rc;
}

extern "C" av_tensor *av_cuda_conv2d_input_grad(const int64_t xshape[4], const av_tensor *w, const av_tensor *gy,
                                                const av_conv2d_args *a) {
    const char *fn = "conv2d_input";
    if (check_tensors(fn, gy, w, NULL)) return NULL;
    conv_call c;
    av_tensor *gx = NULL;
    if (prepare(fn, &c, NULL, xshape, w, w->shape, a, w->dtype, false) || check_gy(fn, &c, gy, w->dtype) ||
        run_backward(&c, gy, w->dtype, av_device_of(w), &gx, NULL, NULL))
        gx = NULL;
    call_free(&c);
    return gx;
}

extern "C" av_tensor *av_cuda_conv2d_weight_grad(const av_tensor *x, const int64_t wshape[4], const av_tensor *gy,
                                                 const av_conv2d_args *a) {
    const char *fn = "conv2d_weight";
    if (av_check_same_device(fn, x, "input", gy, "grad_output")) return NULL;
    if (!av_cuda_float(x->dtype) || x->ndim != 4) {
        av_fail("%s: expected a 4-d floating point input", fn);
        return NULL;
    }
    conv_call c;
    av_tensor *gw = NULL;
    if (prepare(fn, &c, x, x->shape, NULL, wshape, a, x->dtype, false) || check_gy(fn, &c, gy, x->dtype) ||
        run_backward(&c, gy, x->dtype, av_device_of(x), NULL, &gw, NULL))
        gw = NULL;
    call_free(&c);
    return gw;
}
