/* Elementwise math from Lua: functions, methods, in-place forms, metamethods. */
#include <math.h>
#include <string.h>
#include "binding.h"

/* a op b where either side may be a Lua number */
static int push_binary(lua_State *L, av_binop op, int ia, int ib) {
    av_tensor *a = lav_to_tensor(L, ia), *b = lav_to_tensor(L, ib);
    if (a && b) return lav_push(L, av_binary(op, a, b));
    if (a && lua_type(L, ib) == LUA_TNUMBER) return lav_push(L, av_binary_scalar(op, a, lua_tonumber(L, ib), false));
    if (b && lua_type(L, ia) == LUA_TNUMBER) return lav_push(L, av_binary_scalar(op, b, lua_tonumber(L, ia), true));
    if (a && lua_isboolean(L, ib)) return lav_push(L, av_binary_scalar(op, a, lua_toboolean(L, ib), false));
    if (!a && !b) lav_check_tensor(L, ia); /* raises the usual message */
    return lav_error(L, "expected a tensor or a number as argument %d, got %s", a ? ib : ia, luaL_typename(L, a ? ib : ia));
}

static int inplace_binary(lua_State *L, av_binop op) {
    av_tensor *a = lav_check_tensor(L, 1), *b = lav_to_tensor(L, 2);
    int rc;
    if (b) rc = av_binary_(op, a, b);
    else if (lua_type(L, 2) == LUA_TNUMBER) rc = av_binary_scalar_(op, a, lua_tonumber(L, 2));
    else return lav_error(L, "expected a tensor or a number as argument 2, got %s", luaL_typename(L, 2));
    lav_check_rc(L, rc);
    lua_settop(L, 1);
    return 1;
}

/* add/sub take PyTorch's alpha: x:add(y, {alpha=2}) = x + 2*y */
static int alpha_binary(lua_State *L, av_binop op) {
    int o = lav_opts(L, 3);
    double alpha = lav_opt_number(L, o, "alpha", 1);
    if (alpha == 1) return push_binary(L, op, 1, 2);
    av_tensor *b = lav_to_tensor(L, 2);
    if (!b) {
        lua_pushnumber(L, luaL_checknumber(L, 2) * alpha);
        lua_replace(L, 2);
        return push_binary(L, op, 1, 2);
    }
    lav_push(L, av_binary_scalar(AV_OP_MUL, b, alpha, false));
    lua_replace(L, 2);
    return push_binary(L, op, 1, 2);
}
static int f_add(lua_State *L) { return alpha_binary(L, AV_OP_ADD); }
static int f_sub(lua_State *L) { return alpha_binary(L, AV_OP_SUB); }

#define BIN(name, op) static int name(lua_State *L) { return push_binary(L, op, 1, 2); }
BIN(f_mul, AV_OP_MUL)
BIN(f_div, AV_OP_DIV)
BIN(f_pow, AV_OP_POW)
BIN(f_maximum, AV_OP_MAXIMUM)
BIN(f_minimum, AV_OP_MINIMUM)
BIN(f_remainder, AV_OP_REM)
BIN(f_atan2, AV_OP_ATAN2)
BIN(f_eq, AV_OP_EQ)
BIN(f_ne, AV_OP_NE)
BIN(f_lt, AV_OP_LT)
BIN(f_le, AV_OP_LE)
BIN(f_gt, AV_OP_GT)
BIN(f_ge, AV_OP_GE)
BIN(f_logical_and, AV_OP_LOGICAL_AND)
BIN(f_logical_or, AV_OP_LOGICAL_OR)
BIN(f_logical_xor, AV_OP_LOGICAL_XOR)

#define BIN_(name, op) static int name(lua_State *L) { return inplace_binary(L, op); }
BIN_(m_add_, AV_OP_ADD)
BIN_(m_sub_, AV_OP_SUB)
BIN_(m_mul_, AV_OP_MUL)
BIN_(m_div_, AV_OP_DIV)
BIN_(m_pow_, AV_OP_POW)
BIN_(m_maximum_, AV_OP_MAXIMUM)
BIN_(m_minimum_, AV_OP_MINIMUM)
BIN_(m_remainder_, AV_OP_REM)

#define UN(name, op)                                                                     \
    static int f_##name(lua_State *L) { return lav_push(L, av_unary(op, lav_check_tensor(L, 1))); } \
    static int m_##name##_(lua_State *L) {                                               \
        lav_check_rc(L, av_unary_(op, lav_check_tensor(L, 1)));                          \
        lua_settop(L, 1);                                                                \
        return 1;                                                                        \
    }
UN(neg, AV_OP_NEG)
UN(exp, AV_OP_EXP)
UN(log, AV_OP_LOG)
UN(sqrt, AV_OP_SQRT)
UN(rsqrt, AV_OP_RSQRT)
UN(abs, AV_OP_ABS)
UN(sign, AV_OP_SIGN)
UN(floor, AV_OP_FLOOR)
UN(ceil, AV_OP_CEIL)
UN(round, AV_OP_ROUND)
UN(trunc, AV_OP_TRUNC)
UN(reciprocal, AV_OP_RECIPROCAL)
UN(square, AV_OP_SQUARE)
UN(sin, AV_OP_SIN)
UN(cos, AV_OP_COS)
UN(tan, AV_OP_TAN)
UN(log2, AV_OP_LOG2)
UN(log10, AV_OP_LOG10)
UN(log1p, AV_OP_LOG1P)
UN(expm1, AV_OP_EXPM1)
UN(exp2, AV_OP_EXP2)
UN(sigmoid, AV_OP_SIGMOID)
UN(tanh, AV_OP_TANH)
UN(relu, AV_OP_RELU)
UN(erf, AV_OP_ERF)
UN(logical_not, AV_OP_LOGICAL_NOT)
static int f_isnan(lua_State *L) { return lav_push(L, av_unary(AV_OP_ISNAN, lav_check_tensor(L, 1))); }
static int f_isinf(lua_State *L) { return lav_push(L, av_unary(AV_OP_ISINF, lav_check_tensor(L, 1))); }
static int f_isfinite(lua_State *L) { return lav_push(L, av_unary(AV_OP_ISFINITE, lav_check_tensor(L, 1))); }

/* clamp(x, min, max) with nil for no bound, or clamp(x, {min=, max=}) */
static void clamp_bounds(lua_State *L, double *lo, double *hi) {
    int o = lav_opts(L, 2);
    if (o) {
        *lo = lav_opt_number(L, o, "min", NAN);
        *hi = lav_opt_number(L, o, "max", NAN);
        return;
    }
    *lo = lua_isnoneornil(L, 2) ? NAN : luaL_checknumber(L, 2);
    *hi = lua_isnoneornil(L, 3) ? NAN : luaL_checknumber(L, 3);
}
static int f_clamp(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    return lav_push(L, av_clamp(x, lo, hi));
}
static int m_clamp_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    lav_check_rc(L, av_clamp_(x, lo, hi));
    lua_settop(L, 1);
    return 1;
}

/* operand that may be a number: turned into a 0-d tensor matching other's type */
static av_tensor *operand(lua_State *L, int idx, const av_tensor *other) {
    av_tensor *t = lav_to_tensor(L, idx);
    if (t) return av_retain(t);
    if (lua_type(L, idx) != LUA_TNUMBER)
        lav_error(L, "expected a tensor or a number as argument %d, got %s", idx, luaL_typename(L, idx));
    double v = lua_tonumber(L, idx);
    av_dtype dt = other ? other->dtype : (lua_isinteger(L, idx) ? AV_I64 : AV_F32);
    if (!av_dtype_is_float(dt) && !lua_isinteger(L, idx)) dt = AV_F32;
    return av_scalar_tensor(v, dt);
}
static int f_where(lua_State *L) {
    av_tensor *c = lav_check_tensor(L, 1);
    for (int i = 2; i <= 3; i++) /* check both before allocating either */
        if (!lav_is_tensor(L, i) && lua_type(L, i) != LUA_TNUMBER)
            lav_error(L, "expected a tensor or a number as argument %d, got %s", i, luaL_typename(L, i));
    av_tensor *ta = lav_to_tensor(L, 2), *tb = lav_to_tensor(L, 3);
    av_tensor *a = operand(L, 2, tb), *b = NULL;
    if (!a) return lav_push(L, NULL);
    b = operand(L, 3, ta ? ta : a);
    if (!b) { av_release(a); return lav_push(L, NULL); }
    av_tensor *r = av_where(c, a, b);
    av_release(a);
    av_release(b);
    return lav_push(L, r);
}

/* ---- metamethods --------------------------------------------------------------- */
static int mm_add(lua_State *L) { return push_binary(L, AV_OP_ADD, 1, 2); }
static int mm_sub(lua_State *L) { return push_binary(L, AV_OP_SUB, 1, 2); }
static int mm_mul(lua_State *L) { return push_binary(L, AV_OP_MUL, 1, 2); }
static int mm_div(lua_State *L) { return push_binary(L, AV_OP_DIV, 1, 2); }
static int mm_pow(lua_State *L) { return push_binary(L, AV_OP_POW, 1, 2); }
static int mm_mod(lua_State *L) { return push_binary(L, AV_OP_REM, 1, 2); }
static int mm_unm(lua_State *L) { return lav_push(L, av_unary(AV_OP_NEG, lav_check_tensor(L, 1))); }

void lav_open_arith_meta(lua_State *L, int mt) {
    static const luaL_Reg meta[] = {{"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul}, {"__div", mm_div},
                                    {"__pow", mm_pow}, {"__mod", mm_mod}, {"__unm", mm_unm}, {NULL, NULL}};
    lav_setfuncs(L, mt, meta);
}

void lav_open_math(lua_State *L, int mod, int methods) {
    static const luaL_Reg both[] = {
        {"add", f_add}, {"sub", f_sub}, {"mul", f_mul}, {"div", f_div}, {"pow", f_pow},
        {"maximum", f_maximum}, {"minimum", f_minimum}, {"remainder", f_remainder}, {"atan2", f_atan2},
        {"eq", f_eq}, {"ne", f_ne}, {"lt", f_lt}, {"le", f_le}, {"gt", f_gt}, {"ge", f_ge},
        {"logical_and", f_logical_and}, {"logical_or", f_logical_or}, {"logical_xor", f_logical_xor},
        {"neg", f_neg}, {"exp", f_exp}, {"log", f_log}, {"sqrt", f_sqrt}, {"rsqrt", f_rsqrt}, {"abs", f_abs},
        {"sign", f_sign}, {"floor", f_floor}, {"ceil", f_ceil}, {"round", f_round}, {"trunc", f_trunc},
        {"reciprocal", f_reciprocal}, {"square", f_square}, {"sin", f_sin}, {"cos", f_cos}, {"tan", f_tan},
        {"log2", f_log2}, {"log10", f_log10}, {"log1p", f_log1p}, {"expm1", f_expm1}, {"exp2", f_exp2},
        {"sigmoid", f_sigmoid}, {"tanh", f_tanh}, {"relu", f_relu}, {"erf", f_erf},
        {"logical_not", f_logical_not}, {"isnan", f_isnan}, {"isinf", f_isinf}, {"isfinite", f_isfinite},
        {"clamp", f_clamp}, {"clip", f_clamp}, {"where", f_where}, {NULL, NULL}};
    static const luaL_Reg meth[] = {
        {"add_", m_add_}, {"sub_", m_sub_}, {"mul_", m_mul_}, {"div_", m_div_}, {"pow_", m_pow_},
        {"maximum_", m_maximum_}, {"minimum_", m_minimum_}, {"remainder_", m_remainder_},
        {"neg_", m_neg_}, {"exp_", m_exp_}, {"log_", m_log_}, {"sqrt_", m_sqrt_}, {"rsqrt_", m_rsqrt_},
        {"abs_", m_abs_}, {"sign_", m_sign_}, {"floor_", m_floor_}, {"ceil_", m_ceil_}, {"round_", m_round_},
        {"trunc_", m_trunc_}, {"reciprocal_", m_reciprocal_}, {"square_", m_square_}, {"sin_", m_sin_},
        {"cos_", m_cos_}, {"tan_", m_tan_}, {"log2_", m_log2_}, {"log10_", m_log10_}, {"log1p_", m_log1p_},
        {"expm1_", m_expm1_}, {"exp2_", m_exp2_}, {"sigmoid_", m_sigmoid_}, {"tanh_", m_tanh_},
        {"relu_", m_relu_}, {"erf_", m_erf_}, {"logical_not_", m_logical_not_}, {"clamp_", m_clamp_},
        {NULL, NULL}};
    lav_setfuncs2(L, mod, methods, both);
    lav_setfuncs(L, methods, meth);
}
