/* Activation kernels (leaky_relu, elu, gelu, silu, hardswish, hardsigmoid,
 * relu6, softplus) and dropout. Forward and backward are each one strided
 * pass (strip functions over av_iter, threaded above AV_PARALLEL_GRAIN).
 * Formulas, branch conditions and NaN behaviour follow PyTorch's CPU
 * kernels. */
#include <math.h>
#include <string.h>
#include "aviary/ops.h"
#include "nn_kernels.h"
#include "iter.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

typedef struct { double a, b; } act_ctx;

/* one expression for float and double */
#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define EXPM1(x) _Generic((x), float: expm1f, default: expm1)(x)
#define LOG1P(x) _Generic((x), float: log1pf, default: log1p)(x)
#define ERF(x) _Generic((x), float: erff, default: erf)(x)
#define TANH(x) _Generic((x), float: tanhf, default: tanh)(x)

#define K_SQRT1_2 0.70710678118654752440    /* 1/sqrt(2) */
#define K_1_SQRT2PI 0.39894228040143267794  /* 1/sqrt(2 pi) */
#define K_SQRT_2_PI 0.79788456080286535588  /* sqrt(2/pi) */
#define K_KAPPA 0.044715

#define DEF_FWD_T(FN, T, EXPR)                                                              \
    static void FN(char **p, const int64_t *s, int64_t n, void *vctx) {                     \
        const act_ctx *c_ = vctx;                                                           \
        const T a = (T)c_->a, b = (T)c_->b;                                                 \
        (void)a; (void)b;                                                                   \
        T *o = (T *)p[0];                                                                   \
        const T *xp = (const T *)p[1];                                                      \
        if (s[0] == 1 && s[1] == 1)                                                         \
            for (int64_t i = 0; i < n; i++) { const T x = xp[i]; o[i] = (EXPR); }           \
        else                                                                                \
            for (int64_t i = 0; i < n; i++) { const T x = xp[i * s[1]]; o[i * s[0]] = (EXPR); } \
    }
#define DEF_BWD_T(FN, T, EXPR)                                                              \
    static void FN(char **p, const int64_t *s, int64_t n, void *vctx) {                     \
        const act_ctx *c_ = vctx;                                                           \
        const T a = (T)c_->a, b = (T)c_->b;                                                 \
        (void)a; (void)b;                                                                   \
        T *o = (T *)p[0];                                                                   \
        const T *gp = (const T *)p[1], *xp = (const T *)p[2];                               \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1)                                            \
            for (int64_t i = 0; i < n; i++) { const T g = gp[i], x = xp[i]; o[i] = (EXPR); } \
        else                                                                                \
            for (int64_t i = 0; i < n; i++) {                                               \
                const T g = gp[i * s[1]], x = xp[i * s[2]];                                 \
                o[i * s[0]] = (EXPR);                                                       \
            }                                                                               \
    }
#define DEF_ACT(NAME, FWD, BWD)                                                             \
    DEF_FWD_T(NAME##_fwd_f32, float, FWD) DEF_FWD_T(NAME##_fwd_f64, double, FWD)            \
    DEF_BWD_T(NAME##_bwd_f32, float, BWD) DEF_BWD_T(NAME##_bwd_f64, double, BWD)

/* clamp to [0, 6] keeping NaN */
#define CLAMP06(v) ((v) < 0 ? (__typeof__(v))0 : ((v) > 6 ? (__typeof__(v))6 : (v)))
#define T_(v) ((__typeof__(x))(v))

DEF_ACT(leaky, x > 0 ? x : x * a, x > 0 ? g : g * a)
DEF_ACT(elu, x <= 0 ? a * EXPM1(x) : x, x <= 0 ? g * a * EXP(x) : g)
DEF_ACT(gelu, T_(0.5) * x * (T_(1) + ERF(x * T_(K_SQRT1_2))),
        g * (T_(0.5) * (T_(1) + ERF(x * T_(K_SQRT1_2))) + x * T_(K_1_SQRT2PI) * EXP(T_(-0.5) * x * x)))
DEF_ACT(gelu_tanh, T_(0.5) * x * (T_(1) + TANH(T_(K_SQRT_2_PI) * (x + T_(K_KAPPA) * x * x * x))),
        g * ({
            const __typeof__(x) t_ = TANH(T_(K_SQRT_2_PI) * (x + T_(K_KAPPA) * x * x * x));
            T_(0.5) * (T_(1) + t_) +
                T_(0.5) * x * (T_(1) - t_ * t_) * T_(K_SQRT_2_PI) * (T_(1) + T_(3 * K_KAPPA) * x * x);
        }))
DEF_ACT(silu, x / (T_(1) + EXP(-x)), ({
            const __typeof__(x) s_ = T_(1) / (T_(1) + EXP(-x));
            g * s_ * (T_(1) + x * (T_(1) - s_));
        }))
DEF_ACT(hardswish, x * CLAMP06(x + T_(3)) / T_(6),
        x < T_(-3) ? T_(0) : (x <= T_(3) ? g * (x / T_(3) + T_(0.5)) : g))
DEF_ACT(hardsigmoid, CLAMP06(x + T_(3)) / T_(6), (x > T_(-3) && x < T_(3)) ? g / T_(6) : T_(0))
DEF_ACT(relu6, CLAMP06(x), (x <= 0 || x >= 6) ? T_(0) : g)
DEF_ACT(softplus, x * a > b ? x : LOG1P(EXP(x * a)) / a, ({
            const __typeof__(x) z_ = EXP(x * a);
            x * a > b ? g : g * z_ / (z_ + T_(1));
        }))

typedef struct { av_strip_fn fwd[2], bwd[2]; const char *name; } act_entry;
#define ENTRY(K, NAME) {{K##_fwd_f32, K##_fwd_f64}, {K##_bwd_f32, K##_bwd_f64}, NAME}
static const act_entry acts[AV_NACTS] = {
    [AV_ACT_LEAKY_RELU] = ENTRY(leaky, "leaky_relu"), [AV_ACT_ELU] = ENTRY(elu, "elu"),
    [AV_ACT_GELU] = ENTRY(gelu, "gelu"), [AV_ACT_GELU_TANH] = ENTRY(gelu_tanh, "gelu"),
    [AV_ACT_SILU] = ENTRY(silu, "silu"), [AV_ACT_HARDSWISH] = ENTRY(hardswish, "hardswish"),
    [AV_ACT_HARDSIGMOID] = ENTRY(hardsigmoid, "hardsigmoid"), [AV_ACT_RELU6] = ENTRY(relu6, "relu6"),
    [AV_ACT_SOFTPLUS] = ENTRY(softplus, "softplus"),
};

const char *av_act_name(av_act act) { return (unsigned)act < AV_NACTS ? acts[act].name : "activation"; }

static int check_float(const av_tensor *x, const char *fn) {
    if (!x) return av_fail("%s: expected a tensor", fn);
    if (av_is_cuda(x) && av_dtype_is_float(x->dtype)) return 0; /* the GPU computes half types too */
    if (x->dtype != AV_F32 && x->dtype != AV_F64)
        return av_fail("%s: expected a float32 or float64 tensor, got %s%s", fn, av_dtype_name(x->dtype),
                       (x->dtype == AV_F16 || x->dtype == AV_BF16) ? " (convert with :float() first)" : "");
    return 0;
}

av_tensor *av_activation_raw(av_act act, const av_tensor *x, double a, double b) {
    if ((unsigned)act >= AV_NACTS) { av_fail("activation: unknown activation %d", (int)act); return NULL; }
    const char *fn = acts[act].name;
    if (check_float(x, fn)) return NULL;
    if (act == AV_ACT_SOFTPLUS && a == 0) { av_fail("softplus: beta must not be 0"); return NULL; }
    av_tensor *out = av_empty_like_on(x);
    if (!out) return NULL;
    if (av_numel(out) == 0) return out;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        if (av_cuda_activation(act, out, x, a, b)) { av_release(out); return NULL; }
        return out;
    }
#endif
    act_ctx ctx = {a, b};
    av_iter it;
    const av_tensor *ops[2] = {out, x};
    av_iter_init(&it, x->ndim, x->shape, 2, ops);
    av_iter_run(&it, acts[act].fwd[x->dtype == AV_F64], &ctx);
    return out;
}

av_tensor *av_activation_backward_raw(av_act act, const av_tensor *g, const av_tensor *x, double a, double b) {
    if (av_check_same_device(av_act_name(act), g, "grad", x, "input")) return NULL;
    av_tensor *gc = g->dtype == x->dtype ? av_retain((av_tensor *)g) : av_to_dtype(g, x->dtype);
    av_tensor *out = gc ? av_empty_like_on(x) : NULL;
    if (!out) { av_release(gc); return NULL; }
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x)) {
        if (av_numel(out) > 0 && av_cuda_activation_backward(act, out, gc, x, a, b)) { av_release(out); out = NULL; }
        av_release(gc);
        return out;
    }
#endif
    if (av_numel(out) > 0) {
        act_ctx ctx = {a, b};
        av_iter it;
        const av_tensor *ops[3] = {out, gc, x};
        av_iter_init(&it, x->ndim, x->shape, 3, ops);
        av_iter_run(&it, acts[act].bwd[x->dtype == AV_F64], &ctx);
    }
    av_release(gc);
    return out;
}

/* ---- relu gradient ------------------------------------------------------------------------ */
/* g where out > 0, else 0 (PyTorch's threshold_backward: out <= 0 gives 0, so a NaN output passes g) */
#define DEF_RELU_BWD(FN, T)                                                                 \
    static void FN(char **p, const int64_t *s, int64_t n, void *ctx) {                      \
        (void)ctx;                                                                          \
        T *o = (T *)p[0];                                                                   \
        const T *gp = (const T *)p[1], *yp = (const T *)p[2];                               \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1)                                            \
            for (int64_t i = 0; i < n; i++) o[i] = yp[i] <= 0 ? (T)0 : gp[i];               \
        else                                                                                \
            for (int64_t i = 0; i < n; i++) o[i * s[0]] = yp[i * s[2]] <= 0 ? (T)0 : gp[i * s[1]]; \
    }
DEF_RELU_BWD(relu_bwd_f32, float)
DEF_RELU_BWD(relu_bwd_f64, double)

av_tensor *av_relu_backward(const av_tensor *g, const av_tensor *out) {
    if (check_float(out, "relu_backward")) return NULL;
    char b1[96], b2[96];
    if (g->ndim != out->ndim || memcmp(g->shape, out->shape, sizeof(int64_t) * (size_t)g->ndim)) {
        av_fail("relu_backward: gradient of size %s for an output of size %s", av_shape_str(g, b1, sizeof b1),
                av_shape_str(out, b2, sizeof b2));
        return NULL;
    }
    if (av_check_same_device("relu_backward", g, "grad", out, "output")) return NULL;
    av_tensor *gc = g->dtype == out->dtype ? av_retain((av_tensor *)g) : av_to_dtype(g, out->dtype);
    av_tensor *r = gc ? av_empty_like_on(out) : NULL;
#ifdef AV_WITH_CUDA
    if (r && av_is_cuda(out)) {
        if (av_numel(r) > 0 && av_cuda_relu_backward(r, gc, out)) { av_release(r); r = NULL; }
        av_release(gc);
        return r;
    }
#endif
    if (r && av_numel(r) > 0) {
        av_iter it;
        const av_tensor *ops[3] = {r, gc, out};
        av_iter_init(&it, out->ndim, out->shape, 3, ops);
        av_iter_run(&it, out->dtype == AV_F32 ? relu_bwd_f32 : relu_bwd_f64, NULL);
    }
    av_release(gc);
    return r;
}

/* ---- dropout ---------------------------------------------------------------------------- */
typedef struct { double keep, scale; } drop_ctx;
#define DEF_DROP(FN, T)                                                                     \
    /* p[0]: mask (uniforms in, scaled mask out), contiguous */                             \
    static void FN(char **p, const int64_t *s, int64_t n, void *vctx) {                     \
        const drop_ctx *c = vctx;                                                           \
        const T keep = (T)c->keep, scale = (T)c->scale;                                     \
        T *m = (T *)p[0];                                                                   \
        for (int64_t i = 0; i < n; i++) m[i * s[0]] = m[i * s[0]] < keep ? scale : (T)0;    \
    }
DEF_DROP(drop_mask_f32, float)
DEF_DROP(drop_mask_f64, double)

av_tensor *av_dropout_raw(const av_tensor *x, double p, av_tensor **mask) {
    *mask = NULL;
    if (check_float(x, "dropout")) return NULL;
    if (!(p >= 0 && p <= 1)) {
        av_fail("dropout: probability has to be between 0 and 1, got %g", p);
        return NULL;
    }
    av_tensor *m;
    if (av_is_cuda(x)) {
        /* the same uniforms as on the CPU, drawn on the device */
        m = av_empty_like_on(x);
        if (m && p == 1 && av_fill_(m, 0)) { av_release(m); m = NULL; }
        if (m && p < 1 && av_uniform_(m, 0, 1)) { av_release(m); m = NULL; }
#ifdef AV_WITH_CUDA
        if (m && p < 1 && av_numel(m) > 0 && av_cuda_dropout_mask(m, 1 - p, 1 / (1 - p))) { av_release(m); m = NULL; }
#endif
    } else if (p == 1) {
        m = av_zeros(x->ndim, x->shape, x->dtype);
    } else {
        m = av_rand(x->ndim, x->shape, x->dtype);
        if (m && av_numel(m) > 0) {
            /* keep with probability 1 - p: u < 1 - p, as bernoulli_(1 - p) */
            drop_ctx c = {1 - p, 1 / (1 - p)};
            av_iter it;
            const av_tensor *ops[1] = {m};
            av_iter_init(&it, m->ndim, m->shape, 1, ops);
            av_iter_run(&it, x->dtype == AV_F32 ? drop_mask_f32 : drop_mask_f64, &c);
        }
    }
    if (!m) return NULL;
    av_tensor *out = av_binary(AV_OP_MUL, x, m);
    if (!out) { av_release(m); return NULL; }
    *mask = m;
    return out;
}
