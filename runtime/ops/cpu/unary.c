/* Elementwise unary ops and clamp. */
#include <math.h>
#include <string.h>
#include <stdio.h>
#include "aviary/ops.h"
#include "iter.h"
#include "fast_math.h"
#include "../../autograd/grad.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

#define DEF_UN(name, T, O, EXPR)                                                  \
    static void name(char **p, const int64_t *s, int64_t n, void *ctx) {          \
        (void)ctx;                                                                \
        O *o = (O *)p[0];                                                         \
        const T *a = (const T *)p[1];                                             \
        if (s[0] == 1 && s[1] == 1)                                               \
            for (int64_t i = 0; i < n; i++) { T x = a[i]; o[i] = (O)(EXPR); }     \
        else                                                                      \
            for (int64_t i = 0; i < n; i++) { T x = a[i * s[1]]; o[i * s[0]] = (O)(EXPR); } \
    }
/* float-only ops: integer inputs are promoted to float32 first */
#define DEF_UNF(OP, EF, ED) DEF_UN(OP##_f32, float, float, EF) DEF_UN(OP##_f64, double, double, ED)
#define DEF_UNI(OP, E64, E32, E8) \
    DEF_UN(OP##_i64, int64_t, int64_t, E64) DEF_UN(OP##_i32, int32_t, int32_t, E32) DEF_UN(OP##_u8, uint8_t, uint8_t, E8)
#define DEF_UNB(OP, E) \
    DEF_UN(OP##_f32, float, uint8_t, E) DEF_UN(OP##_f64, double, uint8_t, E) DEF_UN(OP##_i64, int64_t, uint8_t, E) \
    DEF_UN(OP##_i32, int32_t, uint8_t, E) DEF_UN(OP##_u8, uint8_t, uint8_t, E)

DEF_UNF(neg, -x, -x)
DEF_UNI(neg, (int64_t)(0 - (uint64_t)x), (int32_t)(0 - (uint32_t)x), (uint8_t)(0 - x))
DEF_UNF(exp, av_fast_expf(x), exp(x))
DEF_UNF(log, logf(x), log(x))
DEF_UNF(sqrt, sqrtf(x), sqrt(x))
DEF_UNF(rsqrt, 1.0f / sqrtf(x), 1.0 / sqrt(x))
DEF_UNF(abs, fabsf(x), fabs(x))
DEF_UNI(abs, x < 0 ? (int64_t)(0 - (uint64_t)x) : x, x < 0 ? (int32_t)(0 - (uint32_t)x) : x, x)
DEF_UNF(sign, (float)((x > 0) - (x < 0)) + (x != x ? x : 0), (double)((x > 0) - (x < 0)) + (x != x ? x : 0))
DEF_UNI(sign, (x > 0) - (x < 0), (x > 0) - (x < 0), x > 0)
DEF_UNF(floor, floorf(x), floor(x))
DEF_UNF(ceil, ceilf(x), ceil(x))
DEF_UNF(round, nearbyintf(x), nearbyint(x)) /* half to even, like torch.round */
DEF_UNF(trunc, truncf(x), trunc(x))
DEF_UNI(ident, x, x, x)
DEF_UNF(reciprocal, 1.0f / x, 1.0 / x)
DEF_UNF(square, x * x, x * x)
DEF_UNI(square, (int64_t)((uint64_t)x * (uint64_t)x), (int32_t)((uint32_t)x * (uint32_t)x), (uint8_t)(x * x))
DEF_UNF(sin, sinf(x), sin(x))
DEF_UNF(cos, cosf(x), cos(x))
DEF_UNF(tan, tanf(x), tan(x))
DEF_UNF(log2, log2f(x), log2(x))
DEF_UNF(log10, log10f(x), log10(x))
DEF_UNF(log1p, log1pf(x), log1p(x))
DEF_UNF(expm1, expm1f(x), expm1(x))
DEF_UNF(exp2, exp2f(x), exp2(x))
DEF_UNF(sigmoid, 1.0f / (1.0f + av_fast_expf(-x)), 1.0 / (1.0 + exp(-x)))
DEF_UNF(tanh, tanhf(x), tanh(x))
DEF_UNF(relu, x > 0 ? x : (x != x ? x : 0), x > 0 ? x : (x != x ? x : 0))
DEF_UNI(relu, x > 0 ? x : 0, x > 0 ? x : 0, x)
DEF_UNF(erf, erff(x), erf(x))
DEF_UNB(lnot, x == 0)
DEF_UNB(isnan, x != x)
DEF_UNB(isinf, (x - x) != (x - x) && x == x)
DEF_UNB(isfinite, (x - x) == (x - x))

#define ROWF(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64}
#define ROW(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64, [AV_I64] = OP##_i64, [AV_I32] = OP##_i32, [AV_U8] = OP##_u8}
#define ROWR(OPF) {[AV_F32] = OPF##_f32, [AV_F64] = OPF##_f64, [AV_I64] = ident_i64, [AV_I32] = ident_i32, [AV_U8] = ident_u8}
static const av_strip_fn un_kernels[AV_NUNOPS][AV_NDTYPES] = {
    [AV_OP_NEG] = ROW(neg), [AV_OP_EXP] = ROWF(exp), [AV_OP_LOG] = ROWF(log), [AV_OP_SQRT] = ROWF(sqrt),
    [AV_OP_RSQRT] = ROWF(rsqrt), [AV_OP_ABS] = ROW(abs), [AV_OP_SIGN] = ROW(sign),
    [AV_OP_FLOOR] = ROWR(floor), [AV_OP_CEIL] = ROWR(ceil), [AV_OP_ROUND] = ROWR(round),
    [AV_OP_TRUNC] = ROWR(trunc), [AV_OP_RECIPROCAL] = ROWF(reciprocal), [AV_OP_SQUARE] = ROW(square),
    [AV_OP_SIN] = ROWF(sin), [AV_OP_COS] = ROWF(cos), [AV_OP_TAN] = ROWF(tan), [AV_OP_LOG2] = ROWF(log2),
    [AV_OP_LOG10] = ROWF(log10), [AV_OP_LOG1P] = ROWF(log1p), [AV_OP_EXPM1] = ROWF(expm1),
    [AV_OP_EXP2] = ROWF(exp2), [AV_OP_SIGMOID] = ROWF(sigmoid), [AV_OP_TANH] = ROWF(tanh),
    [AV_OP_RELU] = ROW(relu), [AV_OP_ERF] = ROWF(erf), [AV_OP_LOGICAL_NOT] = ROW(lnot),
    [AV_OP_ISNAN] = ROW(isnan), [AV_OP_ISINF] = ROW(isinf), [AV_OP_ISFINITE] = ROW(isfinite),
};

static const char *unop_names[AV_NUNOPS] = {
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "sign", "floor", "ceil", "round", "trunc", "reciprocal",
    "square", "sin", "cos", "tan", "log2", "log10", "log1p", "expm1", "exp2", "sigmoid", "tanh", "relu",
    "erf", "logical_not", "isnan", "isinf", "isfinite"};
const char *av_unop_name(av_unop op) { return (unsigned)op < AV_NUNOPS ? unop_names[op] : "?"; }

static bool bool_result(av_unop op) { return op >= AV_OP_LOGICAL_NOT; }

/* the GPU computes half types directly (in float registers) */
static int prepare(const char *fn, av_unop op, const av_tensor *a, av_dtype *compute) {
    av_dtype in = a->dtype;
    if ((unsigned)op >= AV_NUNOPS) return av_fail("unknown unary op %d", op);
    if ((in == AV_F16 || in == AV_BF16) && av_is_cuda(a)) {
        *compute = in;
        return 0;
    }
    if (in == AV_F16 || in == AV_BF16)
        return av_fail("%s: %s has no CPU arithmetic; convert with :float() first", fn, av_dtype_name(in));
    *compute = (!un_kernels[op][in]) ? AV_F32 : in;
    return 0;
}

static int run_cuda(av_unop op, av_tensor *out, const av_tensor *a) {
#ifdef AV_WITH_CUDA
    return av_cuda_unary(op, out, a);
#else
    (void)op; (void)out; (void)a;
    return av_fail("no CUDA in this build");
#endif
}

av_tensor *av_unary(av_unop op, const av_tensor *a) {
    av_dtype dt = a->dtype;
    if (prepare(av_unop_name(op), op, a, &dt)) return NULL;
    av_tensor *ca = av_to_dtype(a, dt);
    if (!ca) return NULL;
    av_tensor *out = av_empty_on(a->ndim, a->shape, bool_result(op) ? AV_U8 : dt, av_device_of(a));
    if (out && av_is_cuda(a)) {
        if (run_cuda(op, out, ca)) {
            av_release(out);
            out = NULL;
        }
    } else if (out) {
        av_iter it;
        const av_tensor *ops[2] = {out, ca};
        av_iter_init(&it, a->ndim, a->shape, 2, ops);
        av_iter_run(&it, un_kernels[op][dt], NULL);
    }
    av_release(ca);
    return out ? av_ag_finish(out, av_ag_unary(op, out, a)) : NULL;
}

int av_unary_(av_unop op, av_tensor *a) {
    av_dtype dt = a->dtype;
    const char *fn = av_unop_name(op);
    if (prepare(fn, op, a, &dt)) return -1;
    if (dt != a->dtype || bool_result(op))
        return av_fail("%s_: the result type %s can't be stored in the in-place tensor's type %s", fn,
                       av_dtype_name(bool_result(op) ? AV_U8 : dt), av_dtype_name(a->dtype));
    if (av_has_internal_overlap(a))
        return av_fail("%s_: the in-place tensor is expanded (several elements share memory); clone it first", fn);
    char name[32];
    snprintf(name, sizeof name, "%s_", fn);
    if (av_check_inplace(a, name)) return -1;
    if (av_is_cuda(a)) {
        if (run_cuda(op, a, a)) return -1;
        av_bump_version(a);
        return 0;
    }
    av_iter it;
    const av_tensor *ops[2] = {a, a};
    av_iter_init(&it, a->ndim, a->shape, 2, ops);
    av_iter_run(&it, un_kernels[op][dt], NULL);
    av_bump_version(a);
    return 0;
}

/* ---- clamp -------------------------------------------------------------------- */
typedef struct { double lo, hi; } clamp_ctx;
#define DEF_CLAMP(name, T)                                                          \
    static void name(char **p, const int64_t *s, int64_t n, void *vctx) {           \
        const clamp_ctx *c = vctx;                                                  \
        T *o = (T *)p[0];                                                           \
        const T *a = (const T *)p[1];                                               \
        bool has_lo = !isnan(c->lo), has_hi = !isnan(c->hi);                        \
        T lo = has_lo ? (T)c->lo : 0, hi = has_hi ? (T)c->hi : 0;                   \
        for (int64_t i = 0; i < n; i++) {                                           \
            T x = a[i * s[1]];                                                      \
            if (has_lo && x < lo) x = lo;                                           \
            if (has_hi && x > hi) x = hi;                                           \
            o[i * s[0]] = x;                                                        \
        }                                                                           \
    }
DEF_CLAMP(clamp_f32, float)
DEF_CLAMP(clamp_f64, double)
DEF_CLAMP(clamp_i64, int64_t)
DEF_CLAMP(clamp_i32, int32_t)
DEF_CLAMP(clamp_u8, uint8_t)
static const av_strip_fn clamp_kernels[AV_NDTYPES] = {clamp_f32, clamp_f64, clamp_i64, clamp_i32, clamp_u8};

static int clamp_run_cuda(av_tensor *out, const av_tensor *a, double lo, double hi) {
#ifdef AV_WITH_CUDA
    return av_cuda_clamp(out, a, lo, hi);
#else
    (void)out; (void)a; (void)lo; (void)hi;
    return av_fail("no CUDA in this build");
#endif
}

static int clamp_check(const av_tensor *a, double lo, double hi) {
    if ((a->dtype == AV_F16 || a->dtype == AV_BF16) && !av_is_cuda(a)) return av_fail("clamp: no CPU arithmetic for %s", av_dtype_name(a->dtype));
    if (isnan(lo) && isnan(hi)) return av_fail("clamp: at least one of min and max must be given");
    return 0;
}

av_tensor *av_clamp(const av_tensor *a, double lo, double hi) {
    if (clamp_check(a, lo, hi)) return NULL;
    av_tensor *out = av_empty_like_on(a);
    if (!out) return NULL;
    if (av_is_cuda(a)) {
        if (clamp_run_cuda(out, a, lo, hi)) {
            av_release(out);
            return NULL;
        }
        return av_ag_finish(out, av_ag_clamp(out, a, lo, hi));
    }
    clamp_ctx c = {lo, hi};
    av_iter it;
    const av_tensor *ops[2] = {out, a};
    av_iter_init(&it, a->ndim, a->shape, 2, ops);
    av_iter_run(&it, clamp_kernels[a->dtype], &c);
    return av_ag_finish(out, av_ag_clamp(out, a, lo, hi));
}

int av_clamp_(av_tensor *a, double lo, double hi) {
    if (clamp_check(a, lo, hi)) return -1;
    if (av_has_internal_overlap(a)) return av_fail("clamp_: the in-place tensor is expanded; clone it first");
    if (av_check_inplace(a, "clamp_")) return -1;
    av_bump_version(a);
    if (av_is_cuda(a)) return clamp_run_cuda(a, a, lo, hi);
    clamp_ctx c = {lo, hi};
    av_iter it;
    const av_tensor *ops[2] = {a, a};
    av_iter_init(&it, a->ndim, a->shape, 2, ops);
    av_iter_run(&it, clamp_kernels[a->dtype], &c);
    return 0;
}
