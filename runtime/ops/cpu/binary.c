/* Elementwise binary ops with NumPy broadcasting, and where(). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "aviary/ops.h"
#include "iter.h"
#include "../../autograd/grad.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

/* one strip kernel per (op, dtype); the three unit/zero-stride cases are
 * spelled out so the compiler vectorises the common layouts */
#define DEF_BIN(name, T, O, EXPR)                                                                \
    static void name(char **p, const int64_t *s, int64_t n, void *ctx) {                        \
        (void)ctx;                                                                               \
        O *o = (O *)p[0];                                                                        \
        const T *a = (const T *)p[1], *b = (const T *)p[2];                                      \
        int64_t so = s[0], sa = s[1], sb = s[2];                                                 \
        if (so == 1 && sa == 1 && sb == 1) {                                                     \
            for (int64_t i = 0; i < n; i++) { T x = a[i], y = b[i]; o[i] = (O)(EXPR); }          \
        } else if (so == 1 && sa == 1 && sb == 0) {                                              \
            T y = b[0];                                                                          \
            for (int64_t i = 0; i < n; i++) { T x = a[i]; o[i] = (O)(EXPR); }                    \
        } else if (so == 1 && sa == 0 && sb == 1) {                                              \
            T x = a[0];                                                                          \
            for (int64_t i = 0; i < n; i++) { T y = b[i]; o[i] = (O)(EXPR); }                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) { T x = a[i * sa], y = b[i * sb]; o[i * so] = (O)(EXPR); } \
        }                                                                                        \
    }

/* signed integer arithmetic wraps (two's complement) instead of being undefined */
#define WRAP(T, U, e) ((T)(U)(e))
#define DEF_ARITH_INT(OP, E64, E32, E8) \
    DEF_BIN(OP##_i64, int64_t, int64_t, E64) DEF_BIN(OP##_i32, int32_t, int32_t, E32) DEF_BIN(OP##_u8, uint8_t, uint8_t, E8)

DEF_BIN(add_f32, float, float, x + y)
DEF_BIN(add_f64, double, double, x + y)
DEF_ARITH_INT(add, (int64_t)((uint64_t)x + (uint64_t)y), (int32_t)((uint32_t)x + (uint32_t)y), x + y)
DEF_BIN(sub_f32, float, float, x - y)
DEF_BIN(sub_f64, double, double, x - y)
DEF_ARITH_INT(sub, (int64_t)((uint64_t)x - (uint64_t)y), (int32_t)((uint32_t)x - (uint32_t)y), x - y)
DEF_BIN(mul_f32, float, float, x * y)
DEF_BIN(mul_f64, double, double, x * y)
DEF_ARITH_INT(mul, (int64_t)((uint64_t)x * (uint64_t)y), (int32_t)((uint32_t)x * (uint32_t)y), x * y)
DEF_BIN(div_f32, float, float, x / y)
DEF_BIN(div_f64, double, double, x / y)

static inline int64_t ipow(int64_t x, int64_t y) {
    if (y < 0) return x == 1 ? 1 : (x == -1 ? (y & 1 ? -1 : 1) : 0);
    uint64_t r = 1, b = (uint64_t)x;
    while (y) {
        if (y & 1) r *= b;
        b *= b;
        y >>= 1;
    }
    return (int64_t)r;
}
/* x*x is exact and much faster than powf for the common square */
static inline float powf_(float x, float y) { return y == 2.0f ? x * x : powf(x, y); }
static inline double pow_(double x, double y) { return y == 2.0 ? x * x : pow(x, y); }
DEF_BIN(pow_f32, float, float, powf_(x, y))
DEF_BIN(pow_f64, double, double, pow_(x, y))
DEF_ARITH_INT(pow, ipow(x, y), (int32_t)ipow(x, y), (uint8_t)ipow(x, y))

/* NaN propagates, as in PyTorch's minimum/maximum */
#define FMIN(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (x) : (y))
#define FMAX(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) > (y) ? (x) : (y))
DEF_BIN(minimum_f32, float, float, FMIN(x, y))
DEF_BIN(minimum_f64, double, double, FMIN(x, y))
DEF_ARITH_INT(minimum, x < y ? x : y, x < y ? x : y, x < y ? x : y)
DEF_BIN(maximum_f32, float, float, FMAX(x, y))
DEF_BIN(maximum_f64, double, double, FMAX(x, y))
DEF_ARITH_INT(maximum, x > y ? x : y, x > y ? x : y, x > y ? x : y)

/* remainder takes the sign of the divisor (Python's %, torch.remainder) */
static inline float remf_(float x, float y) {
    float r = fmodf(x, y);
    return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
}
static inline double rem_(double x, double y) {
    double r = fmod(x, y);
    return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
}
/* integer remainder by 0 gives 0 rather than trapping the process */
static inline int64_t irem(int64_t x, int64_t y) {
    if (y == 0 || y == -1) return 0;
    int64_t r = x % y;
    return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
}
DEF_BIN(rem_f32, float, float, remf_(x, y))
DEF_BIN(rem_f64, double, double, rem_(x, y))
DEF_ARITH_INT(rem, irem(x, y), (int32_t)irem(x, y), (uint8_t)(y ? x % y : 0))
DEF_BIN(atan2_f32, float, float, atan2f(x, y))
DEF_BIN(atan2_f64, double, double, atan2(x, y))

#define DEF_CMP(OP, E)                                                                             \
    DEF_BIN(OP##_f32, float, uint8_t, E) DEF_BIN(OP##_f64, double, uint8_t, E)                    \
    DEF_BIN(OP##_i64, int64_t, uint8_t, E) DEF_BIN(OP##_i32, int32_t, uint8_t, E)                 \
    DEF_BIN(OP##_u8, uint8_t, uint8_t, E)
DEF_CMP(eq, x == y)
DEF_CMP(ne, x != y)
DEF_CMP(lt, x < y)
DEF_CMP(le, x <= y)
DEF_CMP(gt, x > y)
DEF_CMP(ge, x >= y)
DEF_CMP(land, (x != 0) && (y != 0))
DEF_CMP(lor, (x != 0) || (y != 0))
DEF_CMP(lxor, (x != 0) != (y != 0))

#define ROW(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64, [AV_I64] = OP##_i64, [AV_I32] = OP##_i32, [AV_U8] = OP##_u8}
#define ROWF(OP) {[AV_F32] = OP##_f32, [AV_F64] = OP##_f64}
static const av_strip_fn bin_kernels[AV_NBINOPS][AV_NDTYPES] = {
    [AV_OP_ADD] = ROW(add), [AV_OP_SUB] = ROW(sub), [AV_OP_MUL] = ROW(mul), [AV_OP_DIV] = ROWF(div),
    [AV_OP_POW] = ROW(pow), [AV_OP_MINIMUM] = ROW(minimum), [AV_OP_MAXIMUM] = ROW(maximum),
    [AV_OP_REM] = ROW(rem), [AV_OP_ATAN2] = ROWF(atan2),
    [AV_OP_EQ] = ROW(eq), [AV_OP_NE] = ROW(ne), [AV_OP_LT] = ROW(lt), [AV_OP_LE] = ROW(le),
    [AV_OP_GT] = ROW(gt), [AV_OP_GE] = ROW(ge), [AV_OP_LOGICAL_AND] = ROW(land),
    [AV_OP_LOGICAL_OR] = ROW(lor), [AV_OP_LOGICAL_XOR] = ROW(lxor),
};

static const char *binop_names[AV_NBINOPS] = {
    "add", "sub", "mul", "div", "pow", "minimum", "maximum", "remainder", "atan2",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"};
const char *av_binop_name(av_binop op) { return (unsigned)op < AV_NBINOPS ? binop_names[op] : "?"; }

static bool produces_bool(av_binop op) { return op >= AV_OP_EQ; }

/* the dtype an op computes in, given the promoted operand dtype */
static av_dtype compute_dtype(av_binop op, av_dtype dt) {
    if ((op == AV_OP_DIV || op == AV_OP_ATAN2) && !av_dtype_is_float(dt)) return AV_F32;
    return dt;
}

static int check_math_dtype(const char *fn, av_dtype dt) {
    if (dt == AV_F16 || dt == AV_BF16)
        return av_fail("%s: %s has no CPU arithmetic; convert with :float() first", fn, av_dtype_name(dt));
    return 0;
}

/* casts (or retains) t to dt */
static av_tensor *as_dtype(const av_tensor *t, av_dtype dt) { return av_to_dtype(t, dt); }

/* ---- the CUDA path: same checks and dtypes, the loop on the GPU ------------- */
/* the device of an op whose operands include a CUDA tensor: all on one
 * device, except 0-d CPU tensors (scalars), as PyTorch allows */
static int device_of_operands(const char *fn, int n, const av_tensor *const *ts, const char *const *names,
                              av_device *dev) {
    const av_tensor *first = NULL;
    int which = 0;
    for (int i = 0; i < n; i++)
        if (av_is_cuda(ts[i])) { first = ts[i]; which = i; break; }
    if (!first) { *dev = (av_device){AV_CPU, 0}; return 0; }
    for (int i = 0; i < n; i++) {
        if (i == which || av_is_cpu_scalar(ts[i])) continue;
        /* named in argument order, as the user wrote them */
        int rc = i < which ? av_check_same_device(fn, ts[i], names[i], first, names[which])
                           : av_check_same_device(fn, first, names[which], ts[i], names[i]);
        if (rc) return -1;
    }
    *dev = av_device_of(first);
    return 0;
}

static av_tensor *binary_cuda(av_binop op, const av_tensor *a, const av_tensor *b, av_dtype dt, int nd,
                              const int64_t *shape) {
    const char *fn = av_binop_name(op);
    const av_tensor *ts[2] = {a, b};
    static const char *const names[2] = {"input", "other"};
    av_device dev;
    if (device_of_operands(fn, 2, ts, names, &dev)) return NULL;
#ifdef AV_WITH_CUDA
    av_tensor *ca = as_dtype(a, dt), *cb = ca ? as_dtype(b, dt) : NULL;
    av_tensor *out = cb ? av_empty_on(nd, shape, produces_bool(op) ? AV_U8 : dt, dev) : NULL;
    if (out && av_cuda_binary(op, out, ca, cb)) {
        av_release(out);
        out = NULL;
    }
    av_release(ca);
    av_release(cb);
    return out;
#else
    (void)dt; (void)nd; (void)shape;
    av_fail("%s: no CUDA in this build", fn);
    return NULL;
#endif
}

static av_tensor *binary_impl(av_binop op, const av_tensor *a, const av_tensor *b, av_dtype dt) {
    const char *fn = av_binop_name(op);
    if ((unsigned)op >= AV_NBINOPS) { av_fail("unknown binary op %d", op); return NULL; }
    dt = compute_dtype(op, dt);
    bool cuda = av_is_cuda(a) || av_is_cuda(b);
    if (!cuda && check_math_dtype(fn, dt)) return NULL;
    int nd;
    int64_t shape[AV_MAX_DIMS];
    if (av_broadcast_shape(fn, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    if (cuda) return binary_cuda(op, a, b, dt, nd, shape);
    av_tensor *ca = as_dtype(a, dt), *cb = ca ? as_dtype(b, dt) : NULL;
    av_tensor *out = cb ? av_empty(nd, shape, produces_bool(op) ? AV_U8 : dt) : NULL;
    if (out) {
        av_iter it;
        const av_tensor *ops[3] = {out, ca, cb};
        av_iter_init(&it, nd, shape, 3, ops);
        av_iter_run(&it, bin_kernels[op][dt], NULL);
    }
    av_release(ca);
    av_release(cb);
    return out;
}

av_tensor *av_binary(av_binop op, const av_tensor *a, const av_tensor *b) {
    av_tensor *out = binary_impl(op, a, b, av_promote(a->dtype, b->dtype));
    return out ? av_ag_finish(out, av_ag_binary(op, out, a, b)) : NULL;
}

/* a Python-number operand keeps an integer tensor integral only when it is integral itself */
static av_dtype scalar_dtype(const av_tensor *a, double s) {
    if (av_dtype_is_float(a->dtype)) return a->dtype;
    return (s == floor(s) && fabs(s) < 9.2e18) ? a->dtype : AV_F32;
}

av_tensor *av_binary_scalar(av_binop op, const av_tensor *a, double s, bool reverse) {
    av_stack_scalar buf;
    av_dtype dt = scalar_dtype(a, s);
    av_tensor *st = av_stack_scalar_init(&buf, s, dt);
    av_tensor *out = reverse ? binary_impl(op, st, a, dt) : binary_impl(op, a, st, dt);
    return out ? av_ag_finish(out, av_ag_binary_scalar(op, out, a, s, reverse)) : NULL;
}

static int binary_inplace(av_binop op, av_tensor *a, const av_tensor *b, av_dtype dt) {
    const char *fn = av_binop_name(op);
    if ((unsigned)op >= AV_NBINOPS) return av_fail("unknown binary op %d", op);
    if (produces_bool(op)) return av_fail("%s_: comparison results are uint8; use the out-of-place form", fn);
    dt = compute_dtype(op, dt);
    if (dt != a->dtype)
        return av_fail("%s_: result type %s can't be cast to the in-place tensor's type %s", fn, av_dtype_name(dt),
                       av_dtype_name(a->dtype));
    bool cuda = av_is_cuda(a) || av_is_cuda(b);
    if (!cuda && check_math_dtype(fn, dt)) return -1;
    int nd;
    int64_t shape[AV_MAX_DIMS];
    if (av_broadcast_shape(fn, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return -1;
    char b1[96], b2[96];
    if (nd != a->ndim || memcmp(shape, a->shape, sizeof(int64_t) * nd))
        return av_fail("%s_: the operand of size %s does not broadcast to the in-place tensor's size %s", fn,
                       av_shape_str(b, b1, sizeof b1), av_shape_str(a, b2, sizeof b2));
    if (av_has_internal_overlap(a))
        return av_fail("%s_: the in-place tensor is expanded (several elements share memory); clone it first", fn);
    char name[32];
    snprintf(name, sizeof name, "%s_", fn);
    if (av_check_inplace(a, name)) return -1;
    if (cuda) {
        const av_tensor *ts[2] = {a, b};
        static const char *const names[2] = {"self", "other"};
        av_device dev;
        if (device_of_operands(name, 2, ts, names, &dev)) return -1;
        if (!av_is_cuda(a)) return av_fail("%s: the in-place tensor is on the CPU and the operand on %s; move one of them",
                                           name, "CUDA");
#ifdef AV_WITH_CUDA
        av_tensor *cb = as_dtype(b, dt);
        int rc = cb ? av_cuda_binary(op, a, a, cb) : -1;
        av_release(cb);
        if (!rc) av_bump_version(a);
        return rc;
#endif
    }
    av_tensor *cb = as_dtype(b, dt);
    if (!cb) return -1;
    av_iter it;
    const av_tensor *ops[3] = {a, a, cb};
    av_iter_init(&it, a->ndim, a->shape, 3, ops);
    av_iter_run(&it, bin_kernels[op][dt], NULL);
    av_release(cb);
    av_bump_version(a);
    return 0;
}

int av_binary_(av_binop op, av_tensor *a, const av_tensor *b) {
    return binary_inplace(op, a, b, av_promote(a->dtype, b->dtype));
}

int av_binary_scalar_(av_binop op, av_tensor *a, double s) {
    av_stack_scalar buf;
    av_dtype dt = scalar_dtype(a, s);
    return binary_inplace(op, a, av_stack_scalar_init(&buf, s, dt), dt);
}

/* ---- where ------------------------------------------------------------------ */
#define DEF_WHERE(name, T)                                                              \
    static void name(char **p, const int64_t *s, int64_t n, void *ctx) {                \
        (void)ctx;                                                                      \
        T *o = (T *)p[0];                                                               \
        const uint8_t *c = (const uint8_t *)p[1];                                       \
        const T *a = (const T *)p[2], *b = (const T *)p[3];                             \
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = c[i * s[1]] ? a[i * s[2]] : b[i * s[3]]; \
    }
DEF_WHERE(where_f32, float)
DEF_WHERE(where_f64, double)
DEF_WHERE(where_i64, int64_t)
DEF_WHERE(where_i32, int32_t)
DEF_WHERE(where_u8, uint8_t)
DEF_WHERE(where_h16, uint16_t)
static const av_strip_fn where_kernels[AV_NDTYPES] = {where_f32, where_f64, where_i64, where_i32,
                                                      where_u8,  where_h16, where_h16};

av_tensor *av_where(const av_tensor *cond, const av_tensor *a, const av_tensor *b) {
    int n1, n2;
    int64_t s1[AV_MAX_DIMS], s2[AV_MAX_DIMS];
    if (av_broadcast_shape("where", a->ndim, a->shape, b->ndim, b->shape, &n1, s1)) return NULL;
    if (av_broadcast_shape("where", cond->ndim, cond->shape, n1, s1, &n2, s2)) return NULL;
    av_dtype dt = av_promote(a->dtype, b->dtype);
    av_tensor *c = NULL, *ca = NULL, *cb = NULL, *out = NULL;
    if (av_is_cuda(cond) || av_is_cuda(a) || av_is_cuda(b)) {
        const av_tensor *ts[3] = {cond, a, b};
        static const char *const names[3] = {"condition", "input", "other"};
        av_device dev;
        if (device_of_operands("where", 3, ts, names, &dev)) return NULL;
#ifdef AV_WITH_CUDA
        if (cond->dtype == AV_U8) c = av_retain((av_tensor *)cond);
        else c = av_binary_scalar(AV_OP_NE, cond, 0, false);
        if (c && (ca = as_dtype(a, dt)) && (cb = as_dtype(b, dt)) && (out = av_empty_on(n2, s2, dt, dev)) &&
            av_cuda_where(out, c, ca, cb)) {
            av_release(out);
            out = NULL;
        }
        av_release(c);
        av_release(ca);
        av_release(cb);
        return out ? av_ag_finish(out, av_ag_where(out, cond, a, b)) : NULL;
#endif
    }
    if (cond->dtype == AV_U8) c = av_retain((av_tensor *)cond);
    else {
        av_stack_scalar zero;
        c = av_binary(AV_OP_NE, cond, av_stack_scalar_init(&zero, 0, cond->dtype));
    }
    if (c && (ca = as_dtype(a, dt)) && (cb = as_dtype(b, dt)) && (out = av_empty(n2, s2, dt))) {
        av_iter it;
        const av_tensor *ops[4] = {out, c, ca, cb};
        av_iter_init(&it, n2, s2, 4, ops);
        av_iter_run(&it, where_kernels[dt], NULL);
    }
    av_release(c);
    av_release(ca);
    av_release(cb);
    return out ? av_ag_finish(out, av_ag_where(out, cond, a, b)) : NULL;
}
