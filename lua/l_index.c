/* Joining and indexing from Lua: cat, stack, index_select, gather, scatter,
 * scatter_, masked_fill, masked_fill_, masked_select, nonzero.
 *
 * Dims and indices are 1-based here. Index arguments are int64/int32 tensors
 * or Lua tables of integers (nested for gather/scatter); they are converted
 * to 0-based int64 tensors for the runtime, and nonzero's result back to
 * 1-based. Every tensor made along the way is pushed on the Lua stack at
 * once, so a Lua error anywhere after it leaks nothing. */
#include <string.h>
#include "binding.h"
#include "aviary/cuda.h"

/* registry key of av.tensor, used to read nested index tables */
#define TENSOR_CTOR_KEY "aviary.index.tensor"

/* pushes the 0-based int64 form of the index argument at arg; returns it */
static av_tensor *push_index_here(lua_State *L, int arg);
/* a Lua table of indices is made on the device of `like` (a tensor index must already be there) */
static av_tensor *push_index(lua_State *L, int arg, const av_tensor *like) {
    av_tensor *ix = push_index_here(L, arg);
    if (!lav_is_tensor(L, arg) && av_is_cuda(like)) {
        lav_push(L, av_to_device(ix, av_device_of(like)));
        lua_remove(L, -2);
        ix = lav_to_tensor(L, -1);
    }
    return ix;
}
static av_tensor *push_index_here(lua_State *L, int arg) {
    if (lua_istable(L, arg) && !lav_is_tensor(L, arg)) {
        lua_geti(L, arg, 1);
        bool nested = lua_istable(L, -1);
        lua_pop(L, 1);
        if (nested) {
            /* a nested table of 1-based integers: av.tensor reads it, then as a tensor index */
            lua_getfield(L, LUA_REGISTRYINDEX, TENSOR_CTOR_KEY);
            lua_pushvalue(L, arg);
            lua_createtable(L, 0, 1);
            lua_pushliteral(L, "int64");
            lua_setfield(L, -2, "dtype");
            lua_call(L, 2, 1);
            av_tensor *t = lav_to_tensor(L, -1);
            if (!t) lav_error(L, "index table (argument %d) could not be read as a tensor", arg);
            int at = lua_gettop(L);
            lav_push(L, lav_check_index(L, at));
            lua_remove(L, at);
            return lav_to_tensor(L, -1);
        }
    }
    lav_push(L, lav_check_index(L, arg));
    return lav_to_tensor(L, -1);
}

/* dim argument at arg (1-based, negative from the end), default def (1-based) when absent */
static int opt_dim(lua_State *L, int arg, int ndim, int def) {
    if (lua_isnoneornil(L, arg)) {
        lua_pushinteger(L, def);
        lua_replace(L, arg);
    }
    return lav_check_dim(L, arg, ndim);
}

static void no_more_args(lua_State *L, int first) {
    if (lua_gettop(L) >= first && !lua_isnil(L, lua_gettop(L)))
        lav_error(L, "too many arguments: expected at most %d, got %d", first - 1, lua_gettop(L));
}

/* reads the list of tensors at arg into a userdata array pushed on the stack */
static av_tensor **check_list(lua_State *L, int arg, int *n) {
    if (!lua_istable(L, arg) || lav_is_tensor(L, arg))
        lav_error(L, "expected a list of tensors as argument %d, got %s", arg,
                  lav_is_tensor(L, arg) ? "a tensor" : luaL_typename(L, arg));
    lua_Integer len = luaL_len(L, arg);
    if (len < 1) lav_error(L, "expected a non-empty list of tensors as argument %d", arg);
    if (len > 1 << 24) lav_error(L, "the list in argument %d has %lld entries; at most %d are supported", arg, (long long)len, 1 << 24);
    av_tensor **ts = lua_newuserdatauv(L, sizeof(av_tensor *) * (size_t)len, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, arg, i);
        ts[i - 1] = lav_to_tensor(L, -1);
        if (!ts[i - 1])
            lav_error(L, "entry %lld of the list in argument %d is not a tensor (got %s)", (long long)i, arg,
                      lav_is_tensor(L, -1) ? "a closed tensor" : luaL_typename(L, -1));
        lua_pop(L, 1); /* the list keeps the tensor alive */
    }
    *n = (int)len;
    return ts;
}

/* the dims cat checks a dim against: those of the first tensor that is not a
 * legacy empty 1-d tensor (which cat skips) */
static int cat_ndim(av_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++)
        if (!(ts[i]->ndim == 1 && ts[i]->shape[0] == 0)) return ts[i]->ndim;
    return 1;
}

/* av.cat({a, b, ...} [, dim=1]) and x:cat(other_or_list [, dim=1]) */
static int l_cat(lua_State *L) {
    bool method = lav_is_tensor(L, 1);
    int darg = method ? 3 : 2;
    no_more_args(L, darg + 1);
    lua_settop(L, darg);
    int n;
    av_tensor **ts;
    if (!method) {
        ts = check_list(L, 1, &n);
    } else if (lav_is_tensor(L, 2)) {
        ts = lua_newuserdatauv(L, sizeof(av_tensor *) * 2, 0);
        ts[0] = lav_check_tensor(L, 1);
        ts[1] = lav_check_tensor(L, 2);
        n = 2;
    } else {
        if (!lua_istable(L, 2))
            lav_error(L, "expected a tensor or a list of tensors to join as argument 2, got %s", luaL_typename(L, 2));
        int m;
        av_tensor **rest = check_list(L, 2, &m);
        ts = lua_newuserdatauv(L, sizeof(av_tensor *) * ((size_t)m + 1), 0);
        ts[0] = lav_check_tensor(L, 1);
        memcpy(ts + 1, rest, sizeof(av_tensor *) * (size_t)m);
        n = m + 1;
    }
    int dim = opt_dim(L, darg, cat_ndim(ts, n), 1);
    return lav_push(L, av_cat(n, ts, dim));
}

/* av.stack({a, b, ...} [, dim=1]) */
static int l_stack(lua_State *L) {
    no_more_args(L, 3);
    lua_settop(L, 2);
    int n;
    av_tensor **ts = check_list(L, 1, &n);
    int dim = opt_dim(L, 2, ts[0]->ndim + 1, 1);
    return lav_push(L, av_stack(n, ts, dim));
}

/* av.index_select(x, dim, index) */
static int l_index_select(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int dim = lav_check_dim(L, 2, x->ndim);
    no_more_args(L, 4);
    av_tensor *ix = push_index(L, 3, x);
    return lav_push(L, av_index_select(x, dim, ix));
}

/* av.gather(x, dim, index) */
static int l_gather(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int dim = lav_check_dim(L, 2, x->ndim);
    no_more_args(L, 4);
    av_tensor *ix = push_index(L, 3, x);
    return lav_push(L, av_gather(x, dim, ix));
}

/* reduce from argument arg: nil, a string, or an options table {reduce=} */
static const char *check_reduce(lua_State *L, int arg) {
    int t = lav_opts(L, arg);
    if (t) {
        lua_getfield(L, t, "reduce");
        lua_replace(L, arg);
    }
    if (lua_isnil(L, arg)) return NULL;
    if (lua_type(L, arg) != LUA_TSTRING)
        lav_error(L, "reduce must be 'add' or 'multiply', got %s", luaL_typename(L, arg));
    return lua_tostring(L, arg);
}

/* shared by scatter and scatter_: (x, dim, index, src_or_value [, {reduce=}]) */
static int scatter_common(lua_State *L, bool inplace) {
    av_tensor *x = lav_check_tensor(L, 1);
    int dim = lav_check_dim(L, 2, x->ndim);
    no_more_args(L, 6);
    lua_settop(L, 5);
    const char *reduce = check_reduce(L, 5);
    av_tensor *ix = push_index(L, 3, x);
    av_tensor *src = lav_to_tensor(L, 4);
    if (!src) {
        /* a number is scattered as a tensor of that value shaped like the index */
        if (lua_type(L, 4) != LUA_TNUMBER && !lua_isboolean(L, 4))
            return lav_error(L, "expected a source tensor or a number as argument 4, got %s", luaL_typename(L, 4));
        double v = lua_isboolean(L, 4) ? lua_toboolean(L, 4) : lua_tonumber(L, 4);
        lav_push(L, av_full_on(ix->ndim, ix->shape, x->dtype, v, av_device_of(x)));
        src = lav_to_tensor(L, -1);
    }
    if (inplace) {
        lav_check_rc(L, av_scatter_(x, dim, ix, src, reduce));
        lua_settop(L, 1);
        return 1;
    }
    return lav_push(L, av_scatter(x, dim, ix, src, reduce));
}
static int l_scatter(lua_State *L) { return scatter_common(L, false); }
static int l_scatter_(lua_State *L) { return scatter_common(L, true); }

static double check_fill_value(lua_State *L, int arg) {
    if (lua_type(L, arg) == LUA_TNUMBER) return lua_tonumber(L, arg);
    if (lua_isboolean(L, arg)) return lua_toboolean(L, arg);
    av_tensor *t = lav_to_tensor(L, arg);
    double v;
    if (t && av_numel(t) == 1 && av_item(t, &v) == 0) return v;
    if (t) {
        char b[64];
        lav_error(L, "the fill value (argument %d) must be a number or a one-element tensor, got a tensor of size %s",
                  arg, av_shape_str(t, b, sizeof b));
    }
    lav_error(L, "expected a number as the fill value (argument %d), got %s", arg, luaL_typename(L, arg));
    return 0;
}

/* av.masked_fill(x, mask, value) */
static int l_masked_fill(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *m = lav_check_tensor(L, 2);
    double v = check_fill_value(L, 3);
    no_more_args(L, 4);
    return lav_push(L, av_masked_fill(x, m, v));
}

/* x:masked_fill_(mask, value) -> x */
static int l_masked_fill_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *m = lav_check_tensor(L, 2);
    double v = check_fill_value(L, 3);
    no_more_args(L, 4);
    lav_check_rc(L, av_masked_fill_(x, m, v));
    lua_settop(L, 1);
    return 1;
}

/* av.masked_select(x, mask) */
static int l_masked_select(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *m = lav_check_tensor(L, 2);
    no_more_args(L, 3);
    return lav_push(L, av_masked_select(x, m));
}

/* av.nonzero(x) -> n x ndim int64 of 1-based indices */
static int l_nonzero(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    no_more_args(L, 2);
    lav_push(L, av_nonzero(x));
    av_tensor *nz = lav_to_tensor(L, -1);
    lav_check_rc(L, av_binary_scalar_(AV_OP_ADD, nz, 1));
    return 1;
}

void lav_open_index(lua_State *L, int mod, int methods) {
    lua_getfield(L, mod, "tensor");
    lua_setfield(L, LUA_REGISTRYINDEX, TENSOR_CTOR_KEY);
    static const luaL_Reg both[] = {
        {"cat", l_cat}, {"index_select", l_index_select}, {"gather", l_gather}, {"scatter", l_scatter},
        {"masked_fill", l_masked_fill}, {"masked_select", l_masked_select}, {"nonzero", l_nonzero},
        {NULL, NULL}};
    static const luaL_Reg mod_only[] = {{"stack", l_stack}, {NULL, NULL}};
    static const luaL_Reg methods_only[] = {{"scatter_", l_scatter_}, {"masked_fill_", l_masked_fill_}, {NULL, NULL}};
    lav_setfuncs2(L, mod, methods, both);
    lav_setfuncs(L, mod, mod_only);
    lav_setfuncs(L, methods, methods_only);
}
