/* nn operators from Lua, named and parameterised as torch.nn.functional with
 * options in a trailing table:
 *   av.batch_norm(x, running_mean, running_var, weight, bias, {training=, momentum=, eps=})
 *   av.leaky_relu(x, {negative_slope=}) elu gelu silu hardswish hardsigmoid relu6 softplus
 *   av.max_pool2d(x, kernel_size, {stride=, padding=, dilation=, ceil_mode=, return_indices=})
 *   av.avg_pool2d(x, kernel_size, {stride=, padding=, ceil_mode=, count_include_pad=, divisor_override=})
 *   av.adaptive_avg_pool2d(x, output_size), av.adaptive_max_pool2d(x, output_size, {return_indices=})
 *   av.dropout(x, {p=0.5, training=true})
 * Sizes are an integer or a pair {h, w}. Pooling indices are 1-based. */
#include <math.h>
#include <string.h>
#include "binding.h"
#include "aviary/nn_ops.h"


static void reject_inplace(lua_State *L, int tbl) {
    if (lav_opt_bool(L, tbl, "inplace", false))
        lav_error(L, "inplace = true is not supported; use the returned tensor");
}

static int64_t check_int(lua_State *L, int idx, const char *what) {
    if (!lua_isinteger(L, idx)) {
        if (lua_type(L, idx) == LUA_TNUMBER) {
            lua_Number v = lua_tonumber(L, idx);
            if (v == floor(v) && fabs(v) < 9e15) return (int64_t)v;
            lav_error(L, "%s must be an integer, got %g", what, v);
        }
        lav_error(L, "%s must be an integer or a pair {h, w}, got %s", what, luaL_typename(L, idx));
    }
    return (int64_t)lua_tointeger(L, idx);
}

/* an integer or a table of two integers at idx -> out[0..1] */
static void check_pair(lua_State *L, int idx, const char *what, int64_t *out) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE && !lav_is_tensor(L, idx)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n != 2 && n != 1)
            lav_error(L, "%s must be an integer or a pair {h, w}, got a table of %lld entries", what, (long long)n);
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, idx, n == 1 ? 1 : i + 1);
            out[i] = check_int(L, -1, what);
            lua_pop(L, 1);
        }
        return;
    }
    out[0] = out[1] = check_int(L, idx, what);
}

/* an optional pair option: returns false (out untouched) when absent */
static bool opt_pair(lua_State *L, int tbl, const char *key, int64_t *out) {
    if (!tbl) return false;
    lua_getfield(L, tbl, key);
    bool has = !lua_isnil(L, -1);
    if (has) {
        char what[64];
        snprintf(what, sizeof what, "option '%s'", key);
        check_pair(L, -1, what, out);
    }
    lua_pop(L, 1);
    return has;
}

static int push_indices(lua_State *L, av_tensor *idx) {
    av_tensor *one = idx ? av_binary_scalar(AV_OP_ADD, idx, 1, false) : NULL;
    av_release(idx);
    return lav_push(L, one);
}

/* ---- batch_norm ------------------------------------------------------------------------------- */
static int l_batch_norm(lua_State *L) {
    static const char *const keys[] = {"training", "momentum", "eps", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    av_tensor *p[4] = {NULL, NULL, NULL, NULL}; /* running_mean, running_var, weight, bias */
    static const char *const names[4] = {"running_mean", "running_var", "weight", "bias"};
    int o = 0, i = 2;
    for (; i <= 6; i++) {
        if (lav_is_tensor(L, i)) {
            if (i == 6) lav_error(L, "argument 6 must be the options table, got a tensor");
            p[i - 2] = lav_check_tensor(L, i);
        } else if ((o = lav_opts(L, i)) != 0) {
            break;
        } else if (!lua_isnoneornil(L, i)) {
            if (i == 6) lav_error(L, "expected an options table as argument 6, got %s", luaL_typename(L, i));
            lav_error(L, "%s (argument %d) must be a tensor or nil, got %s", names[i - 2], i, luaL_typename(L, i));
        }
    }
    lav_no_args_after(L, o ? i : 6);
    lav_check_keys(L, o, keys);
    bool training = lav_opt_bool(L, o, "training", false);
    double momentum = lav_opt_number(L, o, "momentum", 0.1);
    double eps = lav_opt_number(L, o, "eps", 1e-5);
    return lav_push(L, av_batch_norm(x, p[0], p[1], p[2], p[3], training, momentum, eps));
}

/* ---- activations ------------------------------------------------------------------------------- */
/* act(x [, number | opts]): `key` names the number option (NULL: none) */
static int activation(lua_State *L, av_act act, const char *key, double def, const char *key2, double def2) {
    av_tensor *x = lav_check_tensor(L, 1);
    double a = def, b = def2;
    int o = 0, last = 1;
    if (key && lua_type(L, 2) == LUA_TNUMBER) {
        a = lua_tonumber(L, 2);
        last = 2;
        if (key2 && lua_type(L, 3) == LUA_TNUMBER) { b = lua_tonumber(L, 3); last = 3; }
    }
    o = lav_opts_at(L, last + 1);
    if (o) last++;
    lav_no_args_after(L, last);
    const char *keys[4] = {"inplace", key, key2, NULL};
    lav_check_keys(L, o, keys);
    reject_inplace(L, o);
    if (key) a = lav_opt_number(L, o, key, a);
    if (key2) b = lav_opt_number(L, o, key2, b);
    return lav_push(L, av_activation(act, x, a, b));
}
static int l_leaky_relu(lua_State *L) { return activation(L, AV_ACT_LEAKY_RELU, "negative_slope", 0.01, NULL, 0); }
static int l_elu(lua_State *L) { return activation(L, AV_ACT_ELU, "alpha", 1.0, NULL, 0); }
static int l_silu(lua_State *L) { return activation(L, AV_ACT_SILU, NULL, 0, NULL, 0); }
static int l_hardswish(lua_State *L) { return activation(L, AV_ACT_HARDSWISH, NULL, 0, NULL, 0); }
static int l_hardsigmoid(lua_State *L) { return activation(L, AV_ACT_HARDSIGMOID, NULL, 0, NULL, 0); }
static int l_relu6(lua_State *L) { return activation(L, AV_ACT_RELU6, NULL, 0, NULL, 0); }
static int l_softplus(lua_State *L) { return activation(L, AV_ACT_SOFTPLUS, "beta", 1.0, "threshold", 20.0); }

/* gelu(x [, 'none' | 'tanh' | {approximate=}]) */
static int l_gelu(lua_State *L) {
    static const char *const keys[] = {"approximate", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    char mode[16] = "none";
    int last = 1, o = 0;
    if (lua_type(L, 2) == LUA_TSTRING) {
        snprintf(mode, sizeof mode, "%s", lua_tostring(L, 2));
        last = 2;
    } else if ((o = lav_opts_at(L, 2)) != 0) {
        last = 2;
        lav_check_keys(L, o, keys);
        lua_getfield(L, o, "approximate");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                lav_error(L, "option 'approximate' must be 'none' or 'tanh', got %s", luaL_typename(L, -1));
            snprintf(mode, sizeof mode, "%s", lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    lav_no_args_after(L, last);
    bool tanh_mode = !strcmp(mode, "tanh");
    if (!tanh_mode && strcmp(mode, "none"))
        return lav_error(L, "approximate must be 'none' or 'tanh', got '%s'", mode);
    return lav_push(L, av_gelu(x, tanh_mode));
}

/* ---- pooling -------------------------------------------------------------------------------- */
static int push_pool_result(lua_State *L, av_tensor *out, av_tensor *idx, bool return_indices) {
    if (!out) return lav_push(L, NULL);
    lav_push(L, out);
    if (!return_indices) return 1;
    return push_indices(L, idx) + 1;
}

static int l_max_pool2d(lua_State *L) {
    static const char *const keys[] = {"stride", "padding", "dilation", "ceil_mode", "return_indices", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return lav_error(L, "missing kernel_size (argument 2): an integer or a pair {h, w}");
    int64_t k[2];
    check_pair(L, 2, "kernel_size", k);
    int o = lav_opts_at(L, 3);
    lav_no_args_after(L, 3);
    lav_check_keys(L, o, keys);
    av_pool2d_opts po;
    av_pool2d_opts_init(&po, k[0], k[1]);
    opt_pair(L, o, "stride", po.stride);
    opt_pair(L, o, "padding", po.padding);
    opt_pair(L, o, "dilation", po.dilation);
    po.ceil_mode = lav_opt_bool(L, o, "ceil_mode", false);
    bool ri = lav_opt_bool(L, o, "return_indices", false);
    av_tensor *idx = NULL;
    av_tensor *out = av_max_pool2d(x, &po, ri ? &idx : NULL);
    return push_pool_result(L, out, idx, ri);
}

static int l_avg_pool2d(lua_State *L) {
    static const char *const keys[] = {"stride", "padding", "ceil_mode", "count_include_pad", "divisor_override", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return lav_error(L, "missing kernel_size (argument 2): an integer or a pair {h, w}");
    int64_t k[2];
    check_pair(L, 2, "kernel_size", k);
    int o = lav_opts_at(L, 3);
    lav_no_args_after(L, 3);
    lav_check_keys(L, o, keys);
    av_pool2d_opts po;
    av_pool2d_opts_init(&po, k[0], k[1]);
    opt_pair(L, o, "stride", po.stride);
    opt_pair(L, o, "padding", po.padding);
    po.ceil_mode = lav_opt_bool(L, o, "ceil_mode", false);
    po.count_include_pad = lav_opt_bool(L, o, "count_include_pad", true);
    if (o) {
        lua_getfield(L, o, "divisor_override");
        if (!lua_isnil(L, -1)) {
            int64_t dv = check_int(L, -1, "option 'divisor_override'");
            if (dv <= 0) lav_error(L, "divisor_override must be a positive integer, got %lld", (long long)dv);
            po.divisor_override = dv;
        }
        lua_pop(L, 1);
    }
    return lav_push(L, av_avg_pool2d(x, &po));
}

static void output_size(lua_State *L, int64_t *os) {
    if (lua_isnoneornil(L, 2)) lav_error(L, "missing output_size (argument 2): an integer or a pair {h, w}");
    check_pair(L, 2, "output_size", os);
}

static int l_adaptive_avg_pool2d(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t os[2];
    output_size(L, os);
    lav_no_args_after(L, 2);
    return lav_push(L, av_adaptive_avg_pool2d(x, os[0], os[1]));
}

static int l_adaptive_max_pool2d(lua_State *L) {
    static const char *const keys[] = {"return_indices", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t os[2];
    output_size(L, os);
    int o = lav_opts_at(L, 3);
    lav_no_args_after(L, 3);
    lav_check_keys(L, o, keys);
    bool ri = lav_opt_bool(L, o, "return_indices", false);
    av_tensor *idx = NULL;
    av_tensor *out = av_adaptive_max_pool2d(x, os[0], os[1], ri ? &idx : NULL);
    return push_pool_result(L, out, idx, ri);
}

/* ---- dropout ---------------------------------------------------------------------------------- */
/* dropout(x [, p] [, {p=0.5, training=true}]) */
static int l_dropout(lua_State *L) {
    static const char *const keys[] = {"p", "training", "inplace", NULL};
    av_tensor *x = lav_check_tensor(L, 1);
    double p = 0.5;
    int last = 1;
    if (lua_type(L, 2) == LUA_TNUMBER) { p = lua_tonumber(L, 2); last = 2; }
    int o = lav_opts_at(L, last + 1);
    if (o) last++;
    lav_no_args_after(L, last);
    lav_check_keys(L, o, keys);
    reject_inplace(L, o);
    p = lav_opt_number(L, o, "p", p);
    bool training = lav_opt_bool(L, o, "training", true);
    if (!(p >= 0 && p <= 1)) return lav_error(L, "dropout probability has to be between 0 and 1, got %g", p);
    if (!training || p == 0 || av_numel(x) == 0) { /* the input itself, as PyTorch returns it */
        lua_pushvalue(L, 1);
        return 1;
    }
    return lav_push(L, av_dropout(x, p, training));
}

void lav_open_nn(lua_State *L, int mod, int methods) {
    (void)methods;
    static const luaL_Reg fns[] = {
        {"batch_norm", l_batch_norm}, {"leaky_relu", l_leaky_relu}, {"elu", l_elu}, {"gelu", l_gelu},
        {"silu", l_silu}, {"hardswish", l_hardswish}, {"hardsigmoid", l_hardsigmoid}, {"relu6", l_relu6},
        {"softplus", l_softplus}, {"max_pool2d", l_max_pool2d}, {"avg_pool2d", l_avg_pool2d},
        {"adaptive_avg_pool2d", l_adaptive_avg_pool2d}, {"adaptive_max_pool2d", l_adaptive_max_pool2d},
        {"dropout", l_dropout}, {NULL, NULL}};
    lav_setfuncs(L, mod, fns);
}
