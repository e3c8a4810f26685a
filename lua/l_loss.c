/* Linear layers, softmax, losses, interpolation and padding from Lua, named
 * and parameterised as torch.nn.functional with options in a trailing table:
 *   av.linear(x, w [, b])
 *   av.softmax(x, dim [, {dtype=}])         x:softmax(dim), x:log_softmax(dim)
 *   av.cross_entropy(x, t [, {weight=, ignore_index=-100, reduction='mean', label_smoothing=0}])
 *   av.nll_loss(x, t [, {weight=, ignore_index=-100, reduction='mean'}])
 *   av.binary_cross_entropy_with_logits(x, t [, {weight=, pos_weight=, reduction=}])
 *   av.mse_loss(x, t [, {reduction=}]), av.l1_loss(x, t [, {reduction=}])
 *   av.interpolate(x, {size=, scale_factor=, mode='nearest', align_corners=, recompute_scale_factor=})
 *   av.pad(x, {left, right, top, bottom, ...} [, {mode='constant', value=0}])
 * Class targets are 1-based (1..C); ignore_index is compared with them as given. */
#include <string.h>
#include "binding.h"
#include "aviary/loss.h"


/* the tensor in field `key` of tbl, or NULL when absent */
static av_tensor *opt_tensor(lua_State *L, int tbl, const char *key) {
    if (!tbl) return NULL;
    lua_getfield(L, tbl, key);
    av_tensor *t = NULL;
    if (!lua_isnil(L, -1)) {
        t = lav_to_tensor(L, -1);
        if (!t) lav_error(L, "option '%s' must be a tensor, got %s", key, luaL_typename(L, -1));
    }
    lua_pop(L, 1); /* the options table keeps the tensor alive */
    return t;
}

static av_reduction opt_reduction(lua_State *L, int tbl) {
    if (!tbl) return AV_REDUCTION_MEAN;
    lua_getfield(L, tbl, "reduction");
    av_reduction r = AV_REDUCTION_MEAN;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            lav_error(L, "option 'reduction' must be 'mean', 'sum' or 'none', got %s", luaL_typename(L, -1));
        int v = av_reduction_from_name(lua_tostring(L, -1));
        if (v < 0) lav_error(L, "option 'reduction' must be 'mean', 'sum' or 'none', got '%s'", lua_tostring(L, -1));
        r = (av_reduction)v;
    }
    lua_pop(L, 1);
    return r;
}

static lua_Integer opt_integer(lua_State *L, int tbl, const char *key, lua_Integer def) {
    if (!tbl) return def;
    lua_getfield(L, tbl, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1))
            lav_error(L, "option '%s' must be an integer, got %s", key,
                      lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
        v = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int tbl, const char *key, const char *def) {
    if (!tbl) return def;
    lua_getfield(L, tbl, key);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) lav_error(L, "option '%s' must be a string, got %s", key, luaL_typename(L, -1));
        v = lua_tostring(L, -1); /* stays alive in the options table */
    }
    lua_pop(L, 1);
    return v;
}

/* the options table at idx (or none there); anything else is an error */
static int trailing_opts(lua_State *L, int idx, const char *what) {
    if (lua_isnoneornil(L, idx)) {
        for (int i = idx + 1; i <= lua_gettop(L); i++)
            if (!lua_isnil(L, i)) lav_error(L, "unexpected argument %d (%s)", i, luaL_typename(L, i));
        return 0;
    }
    int o = lav_opts(L, idx);
    if (!o) lav_error(L, "argument %d must be an options table (%s), got %s", idx, what, luaL_typename(L, idx));
    for (int i = idx + 1; i <= lua_gettop(L); i++)
        if (!lua_isnil(L, i)) lav_error(L, "unexpected argument %d (%s)", i, luaL_typename(L, i));
    return o;
}

/* ---- linear -------------------------------------------------------------------------- */
static int f_linear(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *w = lav_check_tensor(L, 2), *b = NULL;
    if (!lua_isnoneornil(L, 3)) b = lav_check_tensor(L, 3);
    for (int i = 4; i <= lua_gettop(L); i++)
        if (!lua_isnil(L, i)) lav_error(L, "unexpected argument %d (%s): expected linear(x, weight [, bias])", i,
                                        luaL_typename(L, i));
    return lav_push(L, av_linear(x, w, b));
}

/* ---- softmax, log_softmax ------------------------------------------------------------------ */
static int softmax_common(lua_State *L, bool lg) {
    av_tensor *x = lav_check_tensor(L, 1);
    int opts = 0, dim;
    bool has_dim = false;
    if (lua_isinteger(L, 2)) {
        dim = lav_check_dim(L, 2, x->ndim);
        has_dim = true;
        opts = trailing_opts(L, 3, "dtype");
    } else if (lua_type(L, 2) == LUA_TNUMBER) {
        return lav_error(L, "argument 2: a dimension must be an integer, got %g", lua_tonumber(L, 2));
    } else {
        opts = trailing_opts(L, 2, "dim, dtype");
    }
    static const char *const keys[] = {"dim", "dtype", NULL};
    lav_check_keys(L, opts, keys);
    if (opts) {
        lua_getfield(L, opts, "dim");
        if (!lua_isnil(L, -1)) {
            if (has_dim) lav_error(L, "dim given both as argument 2 and as option 'dim'");
            dim = lav_check_dim(L, lua_gettop(L), x->ndim);
            has_dim = true;
        }
        lua_pop(L, 1);
    }
    if (!has_dim) return lav_error(L, "a dim is required, e.g. %s(x, 2) for the rows of a matrix", lg ? "log_softmax" : "softmax");
    int dt = -1;
    if (opts) {
        lua_getfield(L, opts, "dtype");
        if (!lua_isnil(L, -1)) dt = (int)lav_check_dtype_name(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    return lav_push(L, lg ? av_log_softmax(x, dim, dt) : av_softmax(x, dim, dt));
}
static int f_softmax(lua_State *L) { return softmax_common(L, false); }
static int f_log_softmax(lua_State *L) { return softmax_common(L, true); }

/* ---- class-index losses ------------------------------------------------------------------------ */
static int nll_common(lua_State *L, bool fused) {
    av_tensor *x = lav_check_tensor(L, 1), *t = lav_check_tensor(L, 2);
    int o = trailing_opts(L, 3, fused ? "weight, ignore_index, reduction, label_smoothing" : "weight, ignore_index, reduction");
    static const char *const ce_keys[] = {"weight", "ignore_index", "reduction", "label_smoothing", NULL};
    static const char *const nll_keys[] = {"weight", "ignore_index", "reduction", NULL};
    lav_check_keys(L, o, fused ? ce_keys : nll_keys);
    av_tensor *w = opt_tensor(L, o, "weight");
    lua_Integer ignore = opt_integer(L, o, "ignore_index", -100);
    av_reduction red = opt_reduction(L, o);
    if (fused) {
        double ls = lav_opt_number(L, o, "label_smoothing", 0);
        return lav_push(L, av_cross_entropy(x, t, w, ignore, red, ls, 1));
    }
    return lav_push(L, av_nll_loss(x, t, w, ignore, red, 1));
}
static int f_cross_entropy(lua_State *L) { return nll_common(L, true); }
static int f_nll_loss(lua_State *L) { return nll_common(L, false); }

static int f_bce_logits(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *t = lav_check_tensor(L, 2);
    int o = trailing_opts(L, 3, "weight, pos_weight, reduction");
    static const char *const keys[] = {"weight", "pos_weight", "reduction", NULL};
    lav_check_keys(L, o, keys);
    av_tensor *w = opt_tensor(L, o, "weight"), *pw = opt_tensor(L, o, "pos_weight");
    return lav_push(L, av_binary_cross_entropy_with_logits(x, t, w, pw, opt_reduction(L, o)));
}

static int pointwise(lua_State *L, bool mse) {
    av_tensor *x = lav_check_tensor(L, 1), *t = lav_check_tensor(L, 2);
    int o = trailing_opts(L, 3, "reduction");
    static const char *const keys[] = {"reduction", NULL};
    lav_check_keys(L, o, keys);
    av_reduction r = opt_reduction(L, o);
    return lav_push(L, mse ? av_mse_loss(x, t, r) : av_l1_loss(x, t, r));
}
static int f_mse_loss(lua_State *L) { return pointwise(L, true); }
static int f_l1_loss(lua_State *L) { return pointwise(L, false); }

/* ---- interpolate ------------------------------------------------------------------------------- */
/* an integer, or a table of 1 or 2 integers, at stack index idx (name for messages) */
static int read_ints(lua_State *L, int idx, const char *name, int64_t *v) {
    if (lua_isinteger(L, idx)) { v[0] = lua_tointeger(L, idx); return 1; }
    if (!lua_istable(L, idx) || lav_is_tensor(L, idx))
        return lav_error(L, "'%s' must be an integer or a table of integers, got %s", name, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    if (n < 1 || n > 2) return lav_error(L, "'%s' must have 1 or 2 entries, got %lld", name, (long long)n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (!lua_isinteger(L, -1))
            lav_error(L, "'%s' entry %lld must be an integer, got %s", name, (long long)i,
                      lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
        v[i - 1] = lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    return (int)n;
}
static int read_nums(lua_State *L, int idx, const char *name, double *v) {
    if (lua_type(L, idx) == LUA_TNUMBER) { v[0] = lua_tonumber(L, idx); return 1; }
    if (!lua_istable(L, idx) || lav_is_tensor(L, idx))
        return lav_error(L, "'%s' must be a number or a table of numbers, got %s", name, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    if (n < 1 || n > 2) return lav_error(L, "'%s' must have 1 or 2 entries, got %lld", name, (long long)n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (lua_type(L, -1) != LUA_TNUMBER)
            lav_error(L, "'%s' entry %lld must be a number, got %s", name, (long long)i, luaL_typename(L, -1));
        v[i - 1] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return (int)n;
}

static int f_interpolate(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t size[2];
    double scale[2];
    int nsize = 0, nscale = 0, o;
    /* interpolate(x, size [, opts]) or interpolate(x, opts) */
    if (lua_isinteger(L, 2) || (lua_istable(L, 2) && !lav_is_tensor(L, 2) && lua_rawlen(L, 2) > 0)) {
        nsize = read_ints(L, 2, "size", size);
        o = trailing_opts(L, 3, "scale_factor, mode, align_corners, recompute_scale_factor");
    } else {
        if (lua_type(L, 2) == LUA_TNUMBER) return lav_error(L, "argument 2: size must be an integer, got %g", lua_tonumber(L, 2));
        o = trailing_opts(L, 2, "size, scale_factor, mode, align_corners, recompute_scale_factor");
    }
    static const char *const keys[] = {"size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", NULL};
    lav_check_keys(L, o, keys);
    if (o) {
        lua_getfield(L, o, "size");
        if (!lua_isnil(L, -1)) {
            if (nsize) lav_error(L, "size given both as argument 2 and as option 'size'");
            nsize = read_ints(L, lua_gettop(L), "size", size);
        }
        lua_pop(L, 1);
        lua_getfield(L, o, "scale_factor");
        if (!lua_isnil(L, -1)) nscale = read_nums(L, lua_gettop(L), "scale_factor", scale);
        lua_pop(L, 1);
    }
    const char *mode = opt_string(L, o, "mode", "nearest");
    int ac = -1, rsf = -1;
    if (o) {
        lua_getfield(L, o, "align_corners");
        if (!lua_isnil(L, -1)) {
            if (!lua_isboolean(L, -1)) lav_error(L, "option 'align_corners' must be a boolean, got %s", luaL_typename(L, -1));
            ac = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
        lua_getfield(L, o, "recompute_scale_factor");
        if (!lua_isnil(L, -1)) {
            if (!lua_isboolean(L, -1))
                lav_error(L, "option 'recompute_scale_factor' must be a boolean, got %s", luaL_typename(L, -1));
            rsf = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
    }
    return lav_push(L, av_interpolate(x, nsize, size, nscale, scale, mode, ac, rsf));
}

/* ---- pad ----------------------------------------------------------------------------------------- */
static int f_pad(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (!lua_istable(L, 2) || lav_is_tensor(L, 2))
        return lav_error(L, "argument 2 must be a table of paddings {left, right [, top, bottom, ...]}, got %s",
                         luaL_typename(L, 2));
    lua_Integer n = luaL_len(L, 2);
    if (n > 2 * AV_MAX_DIMS) return lav_error(L, "the padding table has %lld entries; at most %d are possible", (long long)n, 2 * AV_MAX_DIMS);
    int64_t pad[2 * AV_MAX_DIMS];
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        if (!lua_isinteger(L, -1))
            lav_error(L, "padding entry %lld must be an integer, got %s", (long long)i,
                      lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
        pad[i - 1] = lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    const char *mode = "constant";
    double value = 0;
    int o = 0;
    if (lua_type(L, 3) == LUA_TSTRING) { /* pad(x, p, mode [, value]) as F.pad's positional form */
        mode = lua_tostring(L, 3);
        if (!lua_isnoneornil(L, 4)) value = luaL_checknumber(L, 4);
        for (int i = 5; i <= lua_gettop(L); i++)
            if (!lua_isnil(L, i)) lav_error(L, "unexpected argument %d (%s)", i, luaL_typename(L, i));
    } else {
        o = trailing_opts(L, 3, "mode, value");
        static const char *const keys[] = {"mode", "value", NULL};
        lav_check_keys(L, o, keys);
        mode = opt_string(L, o, "mode", "constant");
        value = lav_opt_number(L, o, "value", 0);
    }
    return lav_push(L, av_pad(x, (int)n, pad, mode, value));
}

void lav_open_loss(lua_State *L, int mod, int methods) {
    static const luaL_Reg both[] = {{"softmax", f_softmax}, {"log_softmax", f_log_softmax}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"linear", f_linear},
                                   {"cross_entropy", f_cross_entropy},
                                   {"nll_loss", f_nll_loss},
                                   {"binary_cross_entropy_with_logits", f_bce_logits},
                                   {"mse_loss", f_mse_loss},
                                   {"l1_loss", f_l1_loss},
                                   {"interpolate", f_interpolate},
                                   {"pad", f_pad},
                                   {NULL, NULL}};
    lav_setfuncs2(L, mod, methods, both);
    lav_setfuncs(L, mod, fns);
}
