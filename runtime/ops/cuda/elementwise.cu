// Elementwise binary and unary ops, clamp, where and the activations.
// CPU references: runtime/ops/cpu/{binary,unary,activation}.c, whose formulas,
// NaN behaviour and integer wrap-around these follow. Half types compute in
// float and round once on store.
#include <type_traits>
#include "cuda_iter.cuh"
#include "aviary/ops.h"
#include "aviary/nn_ops.h"

template <typename C> __device__ __forceinline__ C cu_fmin(C x, C y) { return x != x ? x : y != y ? y : x < y ? x : y; }
template <typename C> __device__ __forceinline__ C cu_fmax(C x, C y) { return x != x ? x : y != y ? y : x > y ? x : y; }

template <typename C> __device__ __forceinline__ C cu_ipow(C x, C y) {
    if constexpr (std::is_signed<C>::value)
        if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? (C)-1 : (C)1) : 0);
    uint64_t r = 1, b = (uint64_t)(int64_t)x;
    int64_t e = (int64_t)y;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (C)r;
}

// ---- binary -------------------------------------------------------------------
template <typename C> __device__ __forceinline__ C bin_arith(int op, C x, C y) {
    if constexpr (std::is_floating_point<C>::value) {
        switch (op) {
        case AV_OP_ADD: return x + y;
        case AV_OP_SUB: return x - y;
        case AV_OP_MUL: return x * y;
        case AV_OP_DIV: return x / y;
        case AV_OP_POW: return y == (C)2 ? x * x : pow(x, y);
        case AV_OP_MINIMUM: return cu_fmin(x, y);
        case AV_OP_MAXIMUM: return cu_fmax(x, y);
        case AV_OP_REM: {
            C r = fmod(x, y);
            return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
        }
        case AV_OP_ATAN2: return atan2(x, y);
        }
        return 0;
    } else {
        // two's complement wrap-around, as the CPU kernels
        switch (op) {
        case AV_OP_ADD: return (C)((uint64_t)x + (uint64_t)y);
        case AV_OP_SUB: return (C)((uint64_t)x - (uint64_t)y);
        case AV_OP_MUL: return (C)((uint64_t)x * (uint64_t)y);
        case AV_OP_POW: return cu_ipow(x, y);
        case AV_OP_MINIMUM: return x < y ? x : y;
        case AV_OP_MAXIMUM: return x > y ? x : y;
        case AV_OP_REM: {
            if constexpr (std::is_unsigned<C>::value) {
                return y ? (C)(x % y) : 0;
            } else {
                if (y == 0 || y == (C)-1) return 0;
                C r = x % y;
                return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
            }
        }
        }
        return 0;
    }
}

template <typename C> __device__ __forceinline__ bool bin_cmp(int op, C x, C y) {
    switch (op) {
    case AV_OP_EQ: return x == y;
    case AV_OP_NE: return x != y;
    case AV_OP_LT: return x < y;
    case AV_OP_LE: return x <= y;
    case AV_OP_GT: return x > y;
    case AV_OP_GE: return x >= y;
    case AV_OP_LOGICAL_AND: return (x != 0) && (y != 0);
    case AV_OP_LOGICAL_OR: return (x != 0) || (y != 0);
    case AV_OP_LOGICAL_XOR: return (x != 0) != (y != 0);
    }
    return false;
}

template <typename T> struct binary_op {
    int op;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        typedef typename cu_acc<T>::type C;
        C x = cu_to<C>(cu_ld<T>(it, 1, off[1])), y = cu_to<C>(cu_ld<T>(it, 2, off[2]));
        if (op >= AV_OP_EQ) cu_st<uint8_t>(it, 0, off[0], bin_cmp(op, x, y) ? 1 : 0);
        else cu_st<T>(it, 0, off[0], cu_to<T>(bin_arith(op, x, y)));
    }
};

extern "C" int av_cuda_binary(int op, av_tensor *out, const av_tensor *a, const av_tensor *b) {
    const char *fn = av_binop_name((av_binop)op);
    cu_iter it;
    const av_tensor *ops[3] = {out, a, b};
    if (cu_iter_init(&it, fn, out->ndim, out->shape, 3, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_ALL(a->dtype, return av_fail("%s: unknown dtype %d", fn, (int)a->dtype),
                    rc = cu_launch<3>(it, binary_op<T>{op}, fn));
    return rc;
}

// ---- unary ------------------------------------------------------------------------
template <typename C> __device__ __forceinline__ C un_math(int op, C x) {
    if constexpr (std::is_floating_point<C>::value) {
        switch (op) {
        case AV_OP_NEG: return -x;
        case AV_OP_EXP: return exp(x);
        case AV_OP_LOG: return log(x);
        case AV_OP_SQRT: return sqrt(x);
        case AV_OP_RSQRT: return (C)1 / sqrt(x);
        case AV_OP_ABS: return fabs(x);
        case AV_OP_SIGN: return (C)((x > 0) - (x < 0)) + (x != x ? x : (C)0);
        case AV_OP_FLOOR: return floor(x);
        case AV_OP_CEIL: return ceil(x);
        case AV_OP_ROUND: return rint(x); // half to even, like torch.round
        case AV_OP_TRUNC: return trunc(x);
        case AV_OP_RECIPROCAL: return (C)1 / x;
        case AV_OP_SQUARE: return x * x;
        case AV_OP_SIN: return sin(x);
        case AV_OP_COS: return cos(x);
        case AV_OP_TAN: return tan(x);
        case AV_OP_LOG2: return log2(x);
        case AV_OP_LOG10: return log10(x);
        case AV_OP_LOG1P: return log1p(x);
        case AV_OP_EXPM1: return expm1(x);
        case AV_OP_EXP2: return exp2(x);
        case AV_OP_SIGMOID: return (C)1 / ((C)1 + exp(-x));
        case AV_OP_TANH: return tanh(x);
        case AV_OP_RELU: return x > 0 ? x : (x != x ? x : (C)0);
        case AV_OP_ERF: return erf(x);
        }
        return 0;
    } else {
        // integer inputs reach only the ops the CPU has integer kernels for
        switch (op) {
        case AV_OP_NEG: return (C)(0 - (uint64_t)x);
        case AV_OP_ABS:
            if constexpr (std::is_signed<C>::value) return x < 0 ? (C)(0 - (uint64_t)x) : x;
            else return x;
        case AV_OP_SIGN:
            if constexpr (std::is_signed<C>::value) return (C)((x > 0) - (x < 0));
            else return (C)(x > 0);
        case AV_OP_SQUARE: return (C)((uint64_t)x * (uint64_t)x);
        case AV_OP_RELU: return x > 0 ? x : 0;
        default: return x; // floor, ceil, round, trunc
        }
    }
}

template <typename C> __device__ __forceinline__ bool un_pred(int op, C x) {
    switch (op) {
    case AV_OP_LOGICAL_NOT: return x == 0;
    case AV_OP_ISNAN: return x != x;
    case AV_OP_ISINF: return (x - x) != (x - x) && x == x;
    case AV_OP_ISFINITE: return (x - x) == (x - x);
    }
    return false;
}

template <typename T> struct unary_op {
    int op;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        typedef typename cu_acc<T>::type C;
        C x = cu_to<C>(cu_ld<T>(it, 1, off[1]));
        if (op >= AV_OP_LOGICAL_NOT) cu_st<uint8_t>(it, 0, off[0], un_pred(op, x) ? 1 : 0);
        else cu_st<T>(it, 0, off[0], cu_to<T>(un_math(op, x)));
    }
};

extern "C" int av_cuda_unary(int op, av_tensor *out, const av_tensor *a) {
    const char *fn = av_unop_name((av_unop)op);
    cu_iter it;
    const av_tensor *ops[2] = {out, a};
    if (cu_iter_init(&it, fn, out->ndim, out->shape, 2, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_ALL(a->dtype, return av_fail("%s: unknown dtype %d", fn, (int)a->dtype),
                    rc = cu_launch<2>(it, unary_op<T>{op}, fn));
    return rc;
}

// ---- clamp, where -------------------------------------------------------------------
template <typename T> struct clamp_op {
    typedef typename cu_acc<T>::type C;
    C lo, hi;
    bool has_lo, has_hi;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        C x = cu_to<C>(cu_ld<T>(it, 1, off[1]));
        if (has_lo && x < lo) x = lo;
        if (has_hi && x > hi) x = hi;
        cu_st<T>(it, 0, off[0], cu_to<T>(x));
    }
};

extern "C" int av_cuda_clamp(av_tensor *out, const av_tensor *a, double lo, double hi) {
    cu_iter it;
    const av_tensor *ops[2] = {out, a};
    if (cu_iter_init(&it, "clamp", out->ndim, out->shape, 2, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_ALL(a->dtype, return av_fail("clamp: unknown dtype %d", (int)a->dtype), {
        typedef typename cu_acc<T>::type C;
        clamp_op<T> f;
        f.has_lo = lo == lo;
        f.has_hi = hi == hi;
        f.lo = f.has_lo ? (C)lo : (C)0;
        f.hi = f.has_hi ? (C)hi : (C)0;
        rc = cu_launch<2>(it, f, "clamp");
    });
    return rc;
}

template <typename T> struct where_op {
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        cu_st<T>(it, 0, off[0], cu_ld<uint8_t>(it, 1, off[1]) ? cu_ld<T>(it, 2, off[2]) : cu_ld<T>(it, 3, off[3]));
    }
};

extern "C" int av_cuda_where(av_tensor *out, const av_tensor *cond, const av_tensor *a, const av_tensor *b) {
    cu_iter it;
    const av_tensor *ops[4] = {out, cond, a, b};
    if (cu_iter_init(&it, "where", out->ndim, out->shape, 4, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_ALL(out->dtype, return av_fail("where: unknown dtype %d", (int)out->dtype),
                    rc = cu_launch<4>(it, where_op<T>(), "where"));
    return rc;
}

// ---- activations ----------------------------------------------------------------------
#define K_SQRT1_2 0.70710678118654752440
#define K_1_SQRT2PI 0.39894228040143267794
#define K_SQRT_2_PI 0.79788456080286535588
#define K_KAPPA 0.044715

template <typename C> __device__ __forceinline__ C clamp06(C v) { return v < 0 ? (C)0 : (v > 6 ? (C)6 : v); }

template <typename C> __device__ __forceinline__ C act_fwd(int act, C x, C a, C b) {
    switch (act) {
    case AV_ACT_LEAKY_RELU: return x > 0 ? x : x * a;
    case AV_ACT_ELU: return x <= 0 ? a * expm1(x) : x;
    case AV_ACT_GELU: return (C)0.5 * x * ((C)1 + erf(x * (C)K_SQRT1_2));
    case AV_ACT_GELU_TANH: return (C)0.5 * x * ((C)1 + tanh((C)K_SQRT_2_PI * (x + (C)K_KAPPA * x * x * x)));
    case AV_ACT_SILU: return x / ((C)1 + exp(-x));
    case AV_ACT_HARDSWISH: return x * clamp06(x + (C)3) / (C)6;
    case AV_ACT_HARDSIGMOID: return clamp06(x + (C)3) / (C)6;
    case AV_ACT_RELU6: return clamp06(x);
    case AV_ACT_SOFTPLUS: return x * a > b ? x : log1p(exp(x * a)) / a;
    }
    return 0;
}

template <typename C> __device__ __forceinline__ C act_bwd(int act, C g, C x, C a, C b) {
    switch (act) {
    case AV_ACT_LEAKY_RELU: return x > 0 ? g : g * a;
    case AV_ACT_ELU: return x <= 0 ? g * a * exp(x) : g;
    case AV_ACT_GELU:
        return g * ((C)0.5 * ((C)1 + erf(x * (C)K_SQRT1_2)) + x * (C)K_1_SQRT2PI * exp((C)-0.5 * x * x));
    case AV_ACT_GELU_TANH: {
        C t = tanh((C)K_SQRT_2_PI * (x + (C)K_KAPPA * x * x * x));
        return g * ((C)0.5 * ((C)1 + t) +
                    (C)0.5 * x * ((C)1 - t * t) * (C)K_SQRT_2_PI * ((C)1 + (C)(3 * K_KAPPA) * x * x));
    }
    case AV_ACT_SILU: {
        C s = (C)1 / ((C)1 + exp(-x));
        return g * s * ((C)1 + x * ((C)1 - s));
    }
    case AV_ACT_HARDSWISH: return x < (C)-3 ? (C)0 : (x <= (C)3 ? g * (x / (C)3 + (C)0.5) : g);
    case AV_ACT_HARDSIGMOID: return (x > (C)-3 && x < (C)3) ? g / (C)6 : (C)0;
    case AV_ACT_RELU6: return (x <= 0 || x >= 6) ? (C)0 : g;
    case AV_ACT_SOFTPLUS: {
        C z = exp(x * a);
        return x * a > b ? g : g * z / (z + (C)1);
    }
    }
    return 0;
}

template <typename T> struct act_fwd_op {
    typedef typename cu_acc<T>::type C;
    int act;
    C a, b;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        cu_st<T>(it, 0, off[0], cu_to<T>(act_fwd<C>(act, cu_to<C>(cu_ld<T>(it, 1, off[1])), a, b)));
    }
};
template <typename T> struct act_bwd_op {
    typedef typename cu_acc<T>::type C;
    int act;
    C a, b;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        C g = cu_to<C>(cu_ld<T>(it, 1, off[1])), x = cu_to<C>(cu_ld<T>(it, 2, off[2]));
        cu_st<T>(it, 0, off[0], cu_to<T>(act_bwd<C>(act, g, x, a, b)));
    }
};

extern "C" int av_cuda_activation(int act, av_tensor *out, const av_tensor *x, double a, double b) {
    const char *fn = av_act_name((av_act)act);
    cu_iter it;
    const av_tensor *ops[2] = {out, x};
    if (cu_iter_init(&it, fn, out->ndim, out->shape, 2, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_FLOAT(x->dtype, return av_fail("%s: expected a floating point tensor", fn), {
        typedef typename cu_acc<T>::type C;
        rc = cu_launch<2>(it, act_fwd_op<T>{act, (C)a, (C)b}, fn);
    });
    return rc;
}

extern "C" int av_cuda_activation_backward(int act, av_tensor *out, const av_tensor *g, const av_tensor *x, double a,
                                           double b) {
    const char *fn = av_act_name((av_act)act);
    cu_iter it;
    const av_tensor *ops[3] = {out, g, x};
    if (cu_iter_init(&it, fn, out->ndim, out->shape, 3, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_FLOAT(x->dtype, return av_fail("%s: expected a floating point tensor", fn), {
        typedef typename cu_acc<T>::type C;
        rc = cu_launch<3>(it, act_bwd_op<T>{act, (C)a, (C)b}, fn);
    });
    return rc;
}

template <typename T> struct relu_bwd_op {
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        typedef typename cu_acc<T>::type C;
        C y = cu_to<C>(cu_ld<T>(it, 2, off[2]));
        cu_st<T>(it, 0, off[0], y <= 0 ? cu_to<T>((C)0) : cu_ld<T>(it, 1, off[1]));
    }
};

extern "C" int av_cuda_relu_backward(av_tensor *out, const av_tensor *g, const av_tensor *y) {
    cu_iter it;
    const av_tensor *ops[3] = {out, g, y};
    if (cu_iter_init(&it, "relu_backward", out->ndim, out->shape, 3, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_FLOAT(y->dtype, return av_fail("relu_backward: expected a floating point tensor"),
                      rc = cu_launch<3>(it, relu_bwd_op<T>(), "relu_backward"));
    return rc;
}

template <typename T> struct drop_op {
    typedef typename cu_acc<T>::type C;
    C keep, scale;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        C u = cu_to<C>(cu_ld<T>(it, 0, off[0]));
        cu_st<T>(it, 0, off[0], cu_to<T>(u < keep ? scale : (C)0));
    }
};

extern "C" int av_cuda_dropout_mask(av_tensor *m, double keep, double scale) {
    cu_iter it;
    const av_tensor *ops[1] = {m};
    if (cu_iter_init(&it, "dropout", m->ndim, m->shape, 1, ops)) return -1;
    int rc = -1;
    CU_DISPATCH_FLOAT(m->dtype, return av_fail("dropout: expected a floating point tensor"), {
        typedef typename cu_acc<T>::type C;
        rc = cu_launch<1>(it, drop_op<T>{(C)keep, (C)scale}, "dropout");
    });
    return rc;
}
