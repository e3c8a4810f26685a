/* 2-d convolution on the CPU: argument checks, the geometry of a call and the
 * choice of kernel family (conv_im2col.c, conv_direct.c, conv_dnnl.c). The
 * public av_conv2d (with graph recording) is in runtime/autograd/grad_conv.c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "conv_impl.h"
#include "aviary/ops.h"
#include "../../autograd/grad.h"
#ifdef AV_WITH_CUDA
#include "aviary/cuda.h"
#include "../cuda/cuda_lib.h"

/* any CUDA operand sends the call to cuDNN (runtime/ops/cuda/conv.cu) */
static bool conv_on_cuda(const av_tensor *a, const av_tensor *b, const av_tensor *c) {
    return av_is_cuda(a) || av_is_cuda(b) || av_is_cuda(c);
}
#endif

static const char *pair_str(const int64_t v[2], char *buf, size_t n) {
    snprintf(buf, n, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
    return buf;
}

static int check_args(const char *fn, const av_conv2d_args *a) {
    char b[64];
    if (a->stride[0] < 1 || a->stride[1] < 1)
        return av_fail("%s: stride must be positive, got %s", fn, pair_str(a->stride, b, sizeof b));
    if (a->dilation[0] < 1 || a->dilation[1] < 1)
        return av_fail("%s: dilation must be positive, got %s", fn, pair_str(a->dilation, b, sizeof b));
    if (a->pad_begin[0] < 0 || a->pad_begin[1] < 0)
        return av_fail("%s: padding must be non-negative, got %s", fn, pair_str(a->pad_begin, b, sizeof b));
    if (a->pad_end[0] < 0 || a->pad_end[1] < 0)
        return av_fail("%s: padding must be non-negative, got %s at the end", fn, pair_str(a->pad_end, b, sizeof b));
    if (a->groups < 1) return av_fail("%s: groups must be positive, got %lld", fn, (long long)a->groups);
    return 0;
}

/* the geometry from an input shape and a weight shape (both 4-d), checked */
static int make_geom(const char *fn, av_dtype dt, const int64_t *xs, const int64_t *ws, const av_conv2d_args *a,
                     conv_geom *g) {
    char b1[64], b2[64];
    if (check_args(fn, a)) return -1;
    memset(g, 0, sizeof *g);
    g->dt = dt;
    g->N = xs[0]; g->C = xs[1]; g->H = xs[2]; g->W = xs[3];
    g->Co = ws[0]; g->kh = ws[2]; g->kw = ws[3];
    g->G = a->groups;
    g->sh = a->stride[0]; g->sw = a->stride[1];
    g->ph = a->pad_begin[0]; g->pw = a->pad_begin[1];
    g->pbh = a->pad_end[0]; g->pbw = a->pad_end[1];
    g->dh = a->dilation[0]; g->dw = a->dilation[1];
    if (g->C % g->G)
        return av_fail("%s: input channels (%lld, input of size %s) must be divisible by groups (%lld)", fn,
                       (long long)g->C, av_shape_str_raw(4, xs, b1, sizeof b1), (long long)g->G);
    if (g->Co % g->G)
        return av_fail("%s: output channels (%lld, weight of size %s) must be divisible by groups (%lld)", fn,
                       (long long)g->Co, av_shape_str_raw(4, ws, b1, sizeof b1), (long long)g->G);
    if (ws[1] * g->G != g->C)
        return av_fail("%s: weight of size %s with groups=%lld expects input with %lld channels, but input of size %s "
                       "has %lld channels",
                       fn, av_shape_str_raw(4, ws, b1, sizeof b1), (long long)g->G, (long long)(ws[1] * g->G),
                       av_shape_str_raw(4, xs, b2, sizeof b2), (long long)g->C);
    if (g->kh < 1 || g->kw < 1)
        return av_fail("%s: weight of size %s has an empty kernel", fn, av_shape_str_raw(4, ws, b1, sizeof b1));
    const int64_t ekh = g->dh * (g->kh - 1) + 1, ekw = g->dw * (g->kw - 1) + 1;
    const int64_t Hp = g->H + g->ph + g->pbh, Wp = g->W + g->pw + g->pbw;
    if (ekh > Hp || ekw > Wp)
        return av_fail("%s: kernel size %lldx%lld (dilated) is larger than the padded input %lldx%lld", fn,
                       (long long)ekh, (long long)ekw, (long long)Hp, (long long)Wp);
    g->Ho = (Hp - ekh) / g->sh + 1;
    g->Wo = (Wp - ekw) / g->sw + 1;
    g->Cig = g->C / g->G;
    g->Cog = g->Co / g->G;
    g->K = g->Cig * g->kh * g->kw;
    g->P = g->Ho * g->Wo;
    g->HW = g->H * g->W;
    return 0;
}

static int check_float(const char *fn, const char *what, const av_tensor *t, av_dtype want) {
    if (t->storage->device.type != AV_CPU)
        return av_fail("%s: %s is on a CUDA device; the CPU convolution needs CPU tensors", fn, what);
    if (t->dtype != AV_F32 && t->dtype != AV_F64)
        return av_fail("%s: expected a float32 or float64 %s, got %s", fn, what, av_dtype_name(t->dtype));
    if (t->dtype != want)
        return av_fail("%s: %s has dtype %s but the input has dtype %s", fn, what, av_dtype_name(t->dtype),
                       av_dtype_name(want));
    return 0;
}

static int check_weight_dims(const char *fn, const av_tensor *w) {
    char b[64];
    if (w->ndim != 4)
        return av_fail("%s: expected a 4-d weight (out_channels x in_channels/groups x kh x kw), got size %s", fn,
                       av_shape_str(w, b, sizeof b));
    return 0;
}

static int check_bias(const char *fn, const av_tensor *b, const conv_geom *g) {
    char s[64];
    if (!b) return 0;
    if (check_float(fn, "bias", b, g->dt)) return -1;
    if (b->ndim != 1 || b->shape[0] != g->Co)
        return av_fail("%s: bias of size %s does not match the %lld output channels of the weight", fn,
                       av_shape_str(b, s, sizeof s), (long long)g->Co);
    return 0;
}

static bool use_depthwise(const conv_geom *g) { return g->Cig == 1 && g->G > 1; }

/* ---- choosing a kernel family ----------------------------------------------------------------
 * With oneDNN in the build, the first call of each shape (per direction and
 * thread count) times both families and keeps the faster, as cuDNN's
 * benchmark mode does; small problems skip the trial and use im2col (or,
 * for depthwise convolutions, the direct loops of conv_direct.c).
 * av_conv2d_set_algorithm forces one family. */
enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_WEIGHT };
enum { PICK_IM2COL = 1, PICK_DNNL = 2 };

static int algorithm = -1; /* AV_CONV_AUTO, ... ; -1: not read from the environment yet */

static int algorithm_now(void) {
    if (algorithm < 0) {
        const char *e = getenv("AVIARY_CONV_ALGO");
        algorithm = !e                      ? AV_CONV_AUTO
                    : !strcmp(e, "im2col") ? AV_CONV_IM2COL
                    : !strcmp(e, "onednn") ? AV_CONV_ONEDNN
                                           : AV_CONV_AUTO;
    }
    return algorithm;
}

int av_conv2d_set_algorithm(const char *name) {
    if (!strcmp(name, "auto")) algorithm = AV_CONV_AUTO;
    else if (!strcmp(name, "im2col")) algorithm = AV_CONV_IM2COL;
    else if (!strcmp(name, "onednn")) {
#ifndef AV_WITH_DNNL
        return av_fail("conv2d: this build has no oneDNN (algorithms: auto, im2col)");
#endif
        algorithm = AV_CONV_ONEDNN;
    } else {
        return av_fail("conv2d: unknown algorithm '%s' (expected auto, im2col or onednn)", name);
    }
    return 0;
}

const char *av_conv2d_get_algorithm(void) {
    int a = algorithm_now();
    return a == AV_CONV_IM2COL ? "im2col" : a == AV_CONV_ONEDNN ? "onednn" : "auto";
}

#ifdef AV_WITH_DNNL
typedef struct {
    conv_geom g;
    int dir, threads;
    bool bias;
    int pick;
} choice;
#define CHOICES 1024
static choice choices[CHOICES];
static int nchoices;
static pthread_mutex_t choice_lock = PTHREAD_MUTEX_INITIALIZER;

static int find_choice(const conv_geom *g, int dir, bool bias) {
    int t = av_get_num_threads(), pick = 0;
    pthread_mutex_lock(&choice_lock);
    for (int i = 0; i < nchoices; i++)
        if (choices[i].dir == dir && choices[i].bias == bias && choices[i].threads == t &&
            !memcmp(&choices[i].g, g, sizeof *g)) { pick = choices[i].pick; break; }
    pthread_mutex_unlock(&choice_lock);
    return pick;
}

static void keep_choice(const conv_geom *g, int dir, bool bias, int pick) {
    pthread_mutex_lock(&choice_lock);
    choice *c = &choices[nchoices < CHOICES ? nchoices++ : (int)(g->N * 31 + g->C * 7 + g->H) % CHOICES];
    *c = (choice){*g, dir, av_get_num_threads(), bias, pick};
    pthread_mutex_unlock(&choice_lock);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef int (*conv_call)(int pick, const conv_geom *g, const void *a, const void *b, const void *c, void *out,
                         void *out2);

/* runs call with the family chosen for this shape, choosing on first sight */
static int dispatch(const conv_geom *g, int dir, bool bias, conv_call call, const void *a, const void *b,
                    const void *c, void *out, void *out2) {
    int mode = algorithm_now();
    if (g->dt != AV_F32 || mode == AV_CONV_IM2COL) return call(PICK_IM2COL, g, a, b, c, out, out2);
    /* oneDNN declines a shape (1) or fails to run it (-1, say out of memory
     * for its blocked copies): im2col takes over */
    if (mode == AV_CONV_ONEDNN) {
        int rc = call(PICK_DNNL, g, a, b, c, out, out2);
        return rc == 0 ? 0 : call(PICK_IM2COL, g, a, b, c, out, out2);
    }
    /* arithmetic, plus memory traffic for the depthwise kind that has little of it */
    double work = 2.0 * (double)g->N * (double)g->P * (double)g->K * (double)g->Co +
                  32.0 * (double)g->N * (double)(g->C * g->HW + g->Co * g->P);
    if (work < 2e7) return call(PICK_IM2COL, g, a, b, c, out, out2);
    int pick = find_choice(g, dir, bias);
    if (pick) return call(pick, g, a, b, c, out, out2);
    /* trial: oneDNN once untimed (it builds its primitive), then each three
     * times, alternating; the best time of each counts (other processes
     * sharing the cores only ever make a run slower) */
    int rc = call(PICK_DNNL, g, a, b, c, out, out2);
    if (rc != 0) {
        keep_choice(g, dir, bias, PICK_IM2COL);
        return call(PICK_IM2COL, g, a, b, c, out, out2);
    }
    double best[3] = {0, 1e30, 1e30};
    for (int round = 0; round < 3; round++)
        for (int p = PICK_IM2COL; p <= PICK_DNNL; p++) {
            double t0 = now();
            if ((rc = call(p, g, a, b, c, out, out2))) {
                if (p != PICK_DNNL) return rc;
                keep_choice(g, dir, bias, PICK_IM2COL);
                return call(PICK_IM2COL, g, a, b, c, out, out2);
            }
            double t = now() - t0;
            if (t < best[p]) best[p] = t;
        }
    keep_choice(g, dir, bias, best[PICK_DNNL] < best[PICK_IM2COL] ? PICK_DNNL : PICK_IM2COL);
    return 0; /* the outputs of the last run stand */
}
#endif

/* PICK_IM2COL means the GEMM-free direct loops for depthwise convolutions */
static int call_forward(int pick, const conv_geom *g, const void *x, const void *w, const void *b, void *y,
                        void *unused) {
    (void)unused;
#ifdef AV_WITH_DNNL
    if (pick == PICK_DNNL) return conv_dnnl_forward(g, x, w, b, y);
#endif
    (void)pick;
    if (use_depthwise(g)) return conv_depthwise_forward(g, x, w, b, y);
    return conv_im2col_forward(g, x, w, b, y);
}
static int call_backward_data(int pick, const conv_geom *g, const void *gy, const void *w, const void *unused,
                              void *gx, void *unused2) {
    (void)unused; (void)unused2;
#ifdef AV_WITH_DNNL
    if (pick == PICK_DNNL) return conv_dnnl_backward_data(g, gy, w, gx);
#endif
    (void)pick;
    if (use_depthwise(g)) return conv_depthwise_backward_data(g, gy, w, gx);
    return conv_im2col_backward_data(g, gy, w, gx);
}
static int call_backward_weight(int pick, const conv_geom *g, const void *gy, const void *x, const void *unused,
                                void *gw, void *gb) {
    (void)unused;
#ifdef AV_WITH_DNNL
    if (pick == PICK_DNNL) return conv_dnnl_backward_weight(g, gy, x, gw, gb);
#endif
    (void)pick;
    if (gb) conv_backward_bias(g, gy, gb);
    if (use_depthwise(g)) return conv_depthwise_backward_weight(g, gy, x, gw);
    return conv_im2col_backward_weight(g, gy, x, gw);
}

static int run_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y) {
#ifdef AV_WITH_DNNL
    return dispatch(g, DIR_FWD, b != NULL, call_forward, x, w, b, y, NULL);
#else
    return call_forward(PICK_IM2COL, g, x, w, b, y, NULL);
#endif
}
static int run_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx) {
#ifdef AV_WITH_DNNL
    return dispatch(g, DIR_BWD_DATA, false, call_backward_data, gy, w, NULL, gx, NULL);
#else
    return call_backward_data(PICK_IM2COL, g, gy, w, NULL, gx, NULL);
#endif
}
static int run_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw, void *gb) {
#ifdef AV_WITH_DNNL
    return dispatch(g, DIR_BWD_WEIGHT, gb != NULL, call_backward_weight, gy, x, NULL, gw, gb);
#else
    return call_backward_weight(PICK_IM2COL, g, gy, x, NULL, gw, gb);
#endif
}

/* ---- forward without recording ------------------------------------------------------------ */
av_tensor *av_conv2d_raw(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a) {
    const char *fn = "conv2d";
    char s[64];
#ifdef AV_WITH_CUDA
    if (conv_on_cuda(x, w, b)) return av_cuda_conv2d(x, w, b, a);
#endif
    if (check_float(fn, "input", x, x->dtype == AV_F64 ? AV_F64 : AV_F32)) return NULL;
    if (x->ndim != 4) {
        av_fail("%s: expected a 3-d (unbatched) or 4-d (batched) input, got size %s", fn, av_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (check_weight_dims(fn, w) || check_float(fn, "weight", w, x->dtype)) return NULL;
    conv_geom g;
    if (make_geom(fn, x->dtype, x->shape, w->shape, a, &g) || check_bias(fn, b, &g)) return NULL;
    int64_t ys[4] = {g.N, g.Co, g.Ho, g.Wo};
    av_tensor *y = av_empty(4, ys, x->dtype);
    if (!y) return NULL;
    if (av_numel(y) == 0) return y;
    if (g.K == 0) { /* no input channels: the output is the bias */
        av_release(y);
        y = av_zeros(4, ys, x->dtype);
        if (y && b) {
            av_tensor *bv = av_view(b, 3, (int64_t[]){g.Co, 1, 1});
            int rc = bv ? av_binary_(AV_OP_ADD, y, bv) : -1;
            av_release(bv);
            if (rc) { av_release(y); return NULL; }
        }
        return y;
    }
    av_tensor *xc = av_contiguous(x), *wc = av_contiguous(w), *bc = b ? av_contiguous(b) : NULL;
    int rc = (!xc || !wc || (b && !bc)) ? -1 : run_forward(&g, av_data(xc), av_data(wc), bc ? av_data(bc) : NULL, av_data(y));
    av_release(xc);
    av_release(wc);
    av_release(bc);
    if (rc) { av_release(y); return NULL; }
    return y;
}

/* ---- gradients ------------------------------------------------------------------------------- */
static int check_gy(const char *fn, const av_tensor *gy, const conv_geom *g) {
    char s[64], e[64];
    int64_t ys[4] = {g->N, g->Co, g->Ho, g->Wo};
    if (check_float(fn, "grad_output", gy, g->dt)) return -1;
    if (gy->ndim != 4 || memcmp(gy->shape, ys, sizeof ys))
        return av_fail("%s: grad_output of size %s, expected %s", fn, av_shape_str(gy, s, sizeof s),
                       av_shape_str_raw(4, ys, e, sizeof e));
    return 0;
}

/* the gradients of one geometry: any of the three outputs may be NULL */
static int grads(const conv_geom *g, const av_tensor *gy, const av_tensor *x, const av_tensor *w, av_tensor **gx,
                 av_tensor **gw, av_tensor **gb) {
    int64_t xs[4] = {g->N, g->C, g->H, g->W}, wsz[4] = {g->Co, g->Cig, g->kh, g->kw};
    av_tensor *X = NULL, *Wt = NULL, *B = NULL;
    bool empty = g->N == 0 || g->P == 0 || g->K == 0 || g->Co == 0;
    if (gx) { if (!(X = empty ? av_zeros(4, xs, g->dt) : av_empty(4, xs, g->dt))) goto fail; }
    if (gw) { if (!(Wt = empty ? av_zeros(4, wsz, g->dt) : av_empty(4, wsz, g->dt))) goto fail; }
    if (gb) { if (!(B = empty ? av_zeros(1, &g->Co, g->dt) : av_empty(1, &g->Co, g->dt))) goto fail; }
    if (!empty) {
        av_tensor *gyc = av_contiguous(gy), *xc = NULL, *wc = NULL;
        int rc = gyc ? 0 : -1;
        if (!rc && X) rc = (wc = av_contiguous(w)) ? run_backward_data(g, av_data(gyc), av_data(wc), av_data(X)) : -1;
        if (!rc && (Wt || B)) {
            if (Wt) rc = (xc = av_contiguous(x)) ? 0 : -1;
            if (!rc)
                rc = Wt ? run_backward_weight(g, av_data(gyc), av_data(xc), av_data(Wt), B ? av_data(B) : NULL)
                        : (conv_backward_bias(g, av_data(gyc), av_data(B)), 0);
        }
        av_release(gyc);
        av_release(xc);
        av_release(wc);
        if (rc) goto fail;
    } else if (B && g->N > 0 && g->P > 0) {
        /* no input channels: the bias gradient is still the sum of gy */
        av_tensor *gyc = av_contiguous(gy);
        if (!gyc) goto fail;
        conv_backward_bias(g, av_data(gyc), av_data(B));
        av_release(gyc);
    }
    if (gx) *gx = X;
    if (gw) *gw = Wt;
    if (gb) *gb = B;
    return 0;
fail:
    av_release(X);
    av_release(Wt);
    av_release(B);
    return -1;
}

int av_conv2d_backward(const av_tensor *gy, const av_tensor *x, const av_tensor *w, const av_conv2d_args *a,
                       av_tensor **gx, av_tensor **gw, av_tensor **gb) {
    const char *fn = "conv2d_backward";
    char s[64];
#ifdef AV_WITH_CUDA
    if (conv_on_cuda(gy, x, w)) return av_cuda_conv2d_backward(gy, x, w, a, gx, gw, gb);
#endif
    if (check_float(fn, "input", x, x->dtype == AV_F64 ? AV_F64 : AV_F32)) return -1;
    if (x->ndim != 4) return av_fail("%s: expected a 4-d input, got size %s", fn, av_shape_str(x, s, sizeof s));
    if (check_weight_dims(fn, w) || check_float(fn, "weight", w, x->dtype)) return -1;
    conv_geom g;
    if (make_geom(fn, x->dtype, x->shape, w->shape, a, &g) || check_gy(fn, gy, &g)) return -1;
    return grads(&g, gy, x, w, gx, gw, gb);
}

av_tensor *av_conv2d_input_grad(int ndim, const int64_t *input_shape, const av_tensor *w, const av_tensor *gy,
                                const av_conv2d_args *a) {
    const char *fn = "conv2d_input";
    if (ndim != 4) { av_fail("%s: expected a 4-d input size, got %d sizes", fn, ndim); return NULL; }
#ifdef AV_WITH_CUDA
    if (conv_on_cuda(w, gy, NULL)) return av_cuda_conv2d_input_grad(input_shape, w, gy, a);
#endif
    if (check_weight_dims(fn, w) || check_float(fn, "weight", w, w->dtype == AV_F64 ? AV_F64 : AV_F32)) return NULL;
    conv_geom g;
    av_tensor *gx = NULL;
    if (make_geom(fn, w->dtype, input_shape, w->shape, a, &g) || check_gy(fn, gy, &g)) return NULL;
    return grads(&g, gy, NULL, w, &gx, NULL, NULL) ? NULL : gx;
}

av_tensor *av_conv2d_weight_grad(const av_tensor *x, int ndim, const int64_t *weight_shape, const av_tensor *gy,
                                 const av_conv2d_args *a) {
    const char *fn = "conv2d_weight";
    char s[64];
#ifdef AV_WITH_CUDA
    if (ndim == 4 && conv_on_cuda(x, gy, NULL)) return av_cuda_conv2d_weight_grad(x, weight_shape, gy, a);
#endif
    if (check_float(fn, "input", x, x->dtype == AV_F64 ? AV_F64 : AV_F32)) return NULL;
    if (x->ndim != 4) { av_fail("%s: expected a 4-d input, got size %s", fn, av_shape_str(x, s, sizeof s)); return NULL; }
    if (ndim != 4) { av_fail("%s: expected a 4-d weight size, got %d sizes", fn, ndim); return NULL; }
    conv_geom g;
    av_tensor *gw = NULL;
    if (make_geom(fn, x->dtype, x->shape, weight_shape, a, &g) || check_gy(fn, gy, &g)) return NULL;
    return grads(&g, gy, x, NULL, NULL, &gw, NULL) ? NULL : gw;
}

int av_conv2d_same_padding(const av_tensor *w, av_conv2d_args *a) {
    char s[64];
    if (w->ndim != 4)
        return av_fail("conv2d: expected a 4-d weight (out_channels x in_channels/groups x kh x kw), got size %s",
                       av_shape_str(w, s, sizeof s));
    if (a->stride[0] != 1 || a->stride[1] != 1)
        return av_fail("conv2d: padding='same' is not supported for strided convolutions (stride %s)",
                       pair_str(a->stride, s, sizeof s));
    for (int d = 0; d < 2; d++) {
        int64_t total = a->dilation[d] * (w->shape[2 + d] - 1);
        if (total < 0) total = 0;
        a->pad_begin[d] = total / 2;
        a->pad_end[d] = total - total / 2;
    }
    return 0;
}
