/* Reductions from Lua: sum mean prod max min argmax argmin all any amax amin
 * var std norm logsumexp cumsum cumprod sort topk, as module functions and
 * Tensor methods. Dims are 1-based (negative from the end); returned indices
 * are 1-based. The reducing ops share one argument shape:
 *   x:op([dims [, keepdim | opts]])   dims: an integer or a table of them,
 *   opts: {dim=, keepdim=} (plus correction/unbiased for var and std). */
#include <math.h>
#include <string.h>
#include "binding.h"
#include "aviary/autograd.h"

typedef struct {
    int dims[AV_MAX_DIMS];
    int ndims;     /* 0: every dim */
    bool has_dims; /* a dim argument was given (max/min/argmax tell the forms apart by it) */
    bool keepdim;
    int opts;      /* absolute index of the options table, or 0 */
} red_args;

/* 1-based Lua dim v -> 0-based; `where` names the argument in messages */
static int lua_dim(lua_State *L, lua_Integer v, int ndim, const char *where) {
    int n = ndim > 0 ? ndim : 1;
    if (v == 0) return lav_error(L, "%s: dimension 0 is invalid: dimensions are 1-based (1..%d, or negative from the end)", where, n);
    if (v > n || v < -n)
        return lav_error(L, "%s: dimension %lld out of range for a %d-d tensor (expected 1..%d or -%d..-1)", where,
                         (long long)v, ndim, n, n);
    return v > 0 ? (int)v - 1 : (int)(n + v);
}

/* reads dims from the integer or table at idx */
static void read_dims(lua_State *L, int idx, const av_tensor *t, red_args *a) {
    char where[48];
    a->has_dims = true;
    if (lua_isinteger(L, idx)) {
        snprintf(where, sizeof where, "argument %d", idx);
        a->dims[0] = lua_dim(L, lua_tointeger(L, idx), t->ndim, where);
        a->ndims = 1;
        return;
    }
    lua_Integer n = luaL_len(L, idx);
    if (n > AV_MAX_DIMS) lav_error(L, "argument %d lists %lld dims; a tensor has at most %d", idx, (long long)n, AV_MAX_DIMS);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (!lua_isinteger(L, -1))
            lav_error(L, "argument %d: dim entry %lld must be an integer, got %s", idx, (long long)i,
                      lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
        snprintf(where, sizeof where, "argument %d, entry %lld", idx, (long long)i);
        a->dims[i - 1] = lua_dim(L, lua_tointeger(L, -1), t->ndim, where);
        for (lua_Integer j = 1; j < i; j++)
            if (a->dims[j - 1] == a->dims[i - 1])
                lav_error(L, "argument %d: dim %d appears multiple times in the list of dims", idx, a->dims[i - 1] + 1);
        lua_pop(L, 1);
    }
    a->ndims = (int)n;
}

/* a table of dims (or an empty table) rather than an options table */
static bool is_dims_table(lua_State *L, int idx) {
    if (!lua_istable(L, idx) || lav_is_tensor(L, idx)) return false;
    if (lua_rawlen(L, idx) > 0) return true;
    lua_pushnil(L);
    if (lua_next(L, idx)) {
        lua_pop(L, 2);
        return false;
    }
    return true;
}

/* parses [dims] [keepdim] [opts] from argument `first` on; returns the index after them */
static int parse_red(lua_State *L, const av_tensor *t, int first, red_args *a) {
    memset(a, 0, sizeof *a);
    int i = first;
    if (lua_isinteger(L, i) || is_dims_table(L, i)) read_dims(L, i++, t, a);
    else if (lua_type(L, i) == LUA_TNUMBER) lav_error(L, "argument %d: a dimension must be an integer, got %g", i, lua_tonumber(L, i));
    else if (lua_isnil(L, i) && !lua_isnone(L, i)) i++; /* nil: every dim */
    if (lua_isboolean(L, i)) a->keepdim = lua_toboolean(L, i++);
    if ((a->opts = lav_opts(L, i)) != 0) i++;
    if (a->opts) {
        lua_getfield(L, a->opts, "dim");
        if (!lua_isnil(L, -1)) {
            if (a->has_dims) lav_error(L, "dims given both as an argument and as option 'dim'");
            if (!lua_isinteger(L, -1) && !is_dims_table(L, -1))
                lav_error(L, "option 'dim' must be an integer or a table of integers, got %s", luaL_typename(L, -1));
            read_dims(L, lua_gettop(L), t, a);
        }
        lua_pop(L, 1);
        a->keepdim = lav_opt_bool(L, a->opts, "keepdim", a->keepdim);
    }
    return i;
}

static void no_more_args(lua_State *L, int i) {
    for (int top = lua_gettop(L); i <= top; i++)
        if (!lua_isnil(L, i))
            lav_error(L, "unexpected argument %d (%s): expected [dims [, keepdim]] or an options table", i,
                      luaL_typename(L, i));
}

/* 0-based indices -> a new 1-based tensor (the 0-based one may be saved for backward) */
static int push_indices(lua_State *L, av_tensor *idx) {
    av_tensor *one = idx ? av_binary_scalar(AV_OP_ADD, idx, 1, false) : NULL;
    av_release(idx);
    return lav_push(L, one);
}

static int reduce_op(lua_State *L, av_redop op) {
    av_tensor *t = lav_check_tensor(L, 1);
    red_args a;
    no_more_args(L, parse_red(L, t, 2, &a));
    return lav_push(L, av_reduce(op, t, a.ndims, a.dims, a.keepdim));
}
static int l_sum(lua_State *L) { return reduce_op(L, AV_RED_SUM); }
static int l_mean(lua_State *L) { return reduce_op(L, AV_RED_MEAN); }
static int l_prod(lua_State *L) { return reduce_op(L, AV_RED_PROD); }
static int l_all(lua_State *L) { return reduce_op(L, AV_RED_ALL); }
static int l_any(lua_State *L) { return reduce_op(L, AV_RED_ANY); }
static int l_amax(lua_State *L) { return reduce_op(L, AV_RED_MAX); }
static int l_amin(lua_State *L) { return reduce_op(L, AV_RED_MIN); }

/* x:max() -> 0-d; x:max(dim [, keepdim]) -> values, indices; x:max(y) -> elementwise maximum */
static int max_min(lua_State *L, bool is_min) {
    av_tensor *t = lav_check_tensor(L, 1);
    av_tensor *other = lav_to_tensor(L, 2);
    if (other) {
        no_more_args(L, 3);
        return lav_push(L, av_binary(is_min ? AV_OP_MINIMUM : AV_OP_MAXIMUM, t, other));
    }
    red_args a;
    no_more_args(L, parse_red(L, t, 2, &a));
    if (!a.has_dims) return lav_push(L, av_reduce(is_min ? AV_RED_MIN : AV_RED_MAX, t, 0, NULL, a.keepdim));
    if (a.ndims != 1)
        return lav_error(L, "takes one dim (and returns values, indices); use %s for several dims",
                         is_min ? "amin" : "amax");
    av_tensor *v, *i;
    lav_check_rc(L, av_max_dim(t, a.dims[0], a.keepdim, is_min, &v, &i));
    lav_push(L, v);
    return push_indices(L, i) + 1;
}
static int l_max(lua_State *L) { return max_min(L, false); }
static int l_min(lua_State *L) { return max_min(L, true); }

static int arg_op(lua_State *L, av_redop op) {
    av_tensor *t = lav_check_tensor(L, 1);
    red_args a;
    no_more_args(L, parse_red(L, t, 2, &a));
    if (a.ndims > 1) return lav_error(L, "takes one dim or none (the index into the flattened tensor), got %d", a.ndims);
    return push_indices(L, av_reduce(op, t, a.ndims, a.dims, a.keepdim));
}
static int l_argmax(lua_State *L) { return arg_op(L, AV_RED_ARGMAX); }
static int l_argmin(lua_State *L) { return arg_op(L, AV_RED_ARGMIN); }

/* x:var([dims] [, unbiased [, keepdim]] [, {correction=, unbiased=, keepdim=}]) */
static int var_std(lua_State *L, bool is_std) {
    av_tensor *t = lav_check_tensor(L, 1);
    red_args a;
    memset(&a, 0, sizeof a);
    int i = 2;
    if (lua_isinteger(L, i) || is_dims_table(L, i)) read_dims(L, i++, t, &a);
    else if (lua_type(L, i) == LUA_TNUMBER) lav_error(L, "argument %d: a dimension must be an integer, got %g", i, lua_tonumber(L, i));
    else if (lua_isnil(L, i) && !lua_isnone(L, i)) i++;
    lua_Integer correction = 1;
    if (lua_isboolean(L, i)) correction = lua_toboolean(L, i++) ? 1 : 0; /* PyTorch's positional unbiased */
    if (lua_isboolean(L, i)) a.keepdim = lua_toboolean(L, i++);
    int o = lav_opts(L, i);
    if (o) {
        i++;
        lua_getfield(L, o, "dim");
        if (!lua_isnil(L, -1)) {
            if (a.has_dims) lav_error(L, "dims given both as an argument and as option 'dim'");
            if (!lua_isinteger(L, -1) && !is_dims_table(L, -1))
                lav_error(L, "option 'dim' must be an integer or a table of integers, got %s", luaL_typename(L, -1));
            read_dims(L, lua_gettop(L), t, &a);
        }
        lua_pop(L, 1);
        a.keepdim = lav_opt_bool(L, o, "keepdim", a.keepdim);
        correction = lav_opt_bool(L, o, "unbiased", correction != 0) ? 1 : 0;
        lua_getfield(L, o, "correction");
        if (!lua_isnil(L, -1)) {
            if (!lua_isinteger(L, -1)) lav_error(L, "option 'correction' must be an integer, got %s", luaL_typename(L, -1));
            correction = lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
    }
    no_more_args(L, i);
    return lav_push(L, (is_std ? av_std : av_var)(t, a.ndims, a.dims, (int64_t)correction, a.keepdim));
}
static int l_var(lua_State *L) { return var_std(L, false); }
static int l_std(lua_State *L) { return var_std(L, true); }

/* x:norm([p=2 [, dims [, keepdim]]]); p may be a number, "fro", "inf" or "-inf" */
static int l_norm(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    double p = 2;
    int i = 2;
    if (lua_type(L, i) == LUA_TNUMBER) {
        p = lua_tonumber(L, i++);
    } else if (lua_type(L, i) == LUA_TSTRING) {
        const char *s = lua_tostring(L, i++);
        if (!strcmp(s, "fro")) p = 2;
        else if (!strcmp(s, "inf")) p = INFINITY;
        else if (!strcmp(s, "-inf")) p = -INFINITY;
        else return lav_error(L, "unknown norm '%s' (expected a number, 'fro', 'inf' or '-inf')", s);
    } else if (lua_isnil(L, i) && !lua_isnone(L, i)) {
        i++;
    }
    red_args a;
    no_more_args(L, parse_red(L, t, i, &a));
    if (a.opts) p = lav_opt_number(L, a.opts, "p", p);
    return lav_push(L, av_norm(t, p, a.ndims, a.dims, a.keepdim));
}

/* log(sum(exp(x))) = m + log(sum(exp(x - m))) with m the max, so nothing
 * overflows; an infinite m is replaced by 0 so all -inf gives -inf, not nan */
static av_tensor *logsumexp(const av_tensor *x, red_args *a) {
    av_tensor *f = av_dtype_is_float(x->dtype) ? av_retain((av_tensor *)x) : av_to_dtype(x, AV_F32);
    if (!f) return NULL;
    av_tensor *m = av_reduce(AV_RED_MAX, f, a->ndims, a->dims, true), *r = NULL;
    av_tensor *inf = m ? av_unary(AV_OP_ISINF, m) : NULL;
    av_tensor *zero = inf ? av_scalar_tensor(0, m->dtype) : NULL;
    av_tensor *mf = zero ? av_where(inf, zero, m) : NULL;
    av_release(zero);
    av_release(m);
    m = mf;
    if (m) {
        /* out of place throughout, so the composite is differentiable; the
         * shift m is a constant for the gradient (its terms cancel) */
        av_tensor *md = av_detach(m);
        av_tensor *d = md ? av_binary(AV_OP_SUB, f, md) : NULL, *e = d ? av_unary(AV_OP_EXP, d) : NULL;
        av_tensor *s = e ? av_reduce(AV_RED_SUM, e, a->ndims, a->dims, true) : NULL;
        av_tensor *l = s ? av_unary(AV_OP_LOG, s) : NULL;
        r = l ? av_binary(AV_OP_ADD, l, md) : NULL;
        av_release(md); av_release(d); av_release(e); av_release(s); av_release(l);
    }
    if (r && !a->keepdim) {
        /* the keepdim result viewed without the reduced dims (a sum over size-1 dims) */
        av_tensor *s = av_reduce(AV_RED_SUM, r, a->ndims, a->dims, false);
        av_release(r);
        r = s;
    }
    av_release(inf);
    av_release(m);
    av_release(f);
    return r;
}

static int l_logsumexp(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    red_args a;
    no_more_args(L, parse_red(L, t, 2, &a));
    if (t->dtype == AV_F16 || t->dtype == AV_BF16)
        return lav_error(L, "%s has no CPU arithmetic; convert with :float() first", av_dtype_name(t->dtype));
    return lav_push(L, logsumexp(t, &a));
}

static int scan_op(lua_State *L, bool prod) {
    av_tensor *t = lav_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return lav_error(L, "expected the dimension to scan along as argument 2");
    int d = lav_check_dim(L, 2, t->ndim);
    no_more_args(L, 3);
    return lav_push(L, prod ? av_cumprod(t, d) : av_cumsum(t, d));
}
static int l_cumsum(lua_State *L) { return scan_op(L, false); }
static int l_cumprod(lua_State *L) { return scan_op(L, true); }

/* Positional optionals read left to right: nil stands for "default", and
 * an options table may follow them. */
static int opt_dim_arg(lua_State *L, int *i, const av_tensor *t) {
    if (lua_isinteger(L, *i)) return lav_check_dim(L, (*i)++, t->ndim);
    if (lua_isnil(L, *i) && !lua_isnone(L, *i)) (*i)++;
    else if (!lua_isnone(L, *i) && !lav_opts(L, *i))
        lav_error(L, "argument %d: expected an integer dimension, got %s", *i,
                  lua_isnumber(L, *i) ? "a non-integer number" : luaL_typename(L, *i));
    return -1; /* the last dim, as in PyTorch */
}

static bool opt_bool_arg(lua_State *L, int *i, bool def) {
    if (lua_isboolean(L, *i)) return lua_toboolean(L, (*i)++);
    if (lua_isnil(L, *i) && !lua_isnone(L, *i)) (*i)++;
    else if (!lua_isnone(L, *i) && !lav_opts(L, *i))
        lav_error(L, "argument %d must be a boolean, got %s", *i, luaL_typename(L, *i));
    return def;
}

/* options {dim=, ...} at *i, if there; returns its index or 0 */
static int opt_table(lua_State *L, int *i, const av_tensor *t, int *dim) {
    int o = lav_opts(L, *i);
    if (!o) return 0;
    (*i)++;
    lua_getfield(L, o, "dim");
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1)) lav_error(L, "option 'dim' must be an integer, got %s", luaL_typename(L, -1));
        *dim = lua_dim(L, lua_tointeger(L, -1), t->ndim, "option 'dim'");
    }
    lua_pop(L, 1);
    return o;
}

/* x:sort([dim=-1 [, descending=false]] [, {dim=, descending=, stable=}]) */
static int l_sort(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    int i = 2;
    int d = opt_dim_arg(L, &i, t);
    bool desc = opt_bool_arg(L, &i, false);
    int o = opt_table(L, &i, t, &d);
    desc = lav_opt_bool(L, o, "descending", desc);
    lav_opt_bool(L, o, "stable", true); /* always stable; read to type-check it */
    no_more_args(L, i);
    av_tensor *v, *ix;
    lav_check_rc(L, av_sort(t, d, desc, &v, &ix));
    lav_push(L, v);
    return push_indices(L, ix) + 1;
}

/* x:topk(k [, dim=-1 [, largest=true [, sorted=true]]] [, {dim=, largest=, sorted=}]) */
static int l_topk(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    if (!lua_isinteger(L, 2))
        return lav_error(L, "expected an integer k as argument 2, got %s",
                         lua_isnumber(L, 2) ? "a non-integer number" : luaL_typename(L, 2));
    lua_Integer k = lua_tointeger(L, 2);
    int i = 3;
    int d = opt_dim_arg(L, &i, t);
    bool largest = opt_bool_arg(L, &i, true);
    bool sorted = opt_bool_arg(L, &i, true);
    int o = opt_table(L, &i, t, &d);
    largest = lav_opt_bool(L, o, "largest", largest);
    sorted = lav_opt_bool(L, o, "sorted", sorted);
    no_more_args(L, i);
    if (k < 0 || k > INT64_MAX / 2) return lav_error(L, "k = %lld must be non-negative", (long long)k);
    av_tensor *v, *ix;
    lav_check_rc(L, av_topk(t, (int64_t)k, d, largest, sorted, &v, &ix));
    lav_push(L, v);
    return push_indices(L, ix) + 1;
}

void lav_open_reduce(lua_State *L, int mod, int methods) {
    static const luaL_Reg both[] = {
        {"sum", l_sum}, {"mean", l_mean}, {"prod", l_prod}, {"max", l_max}, {"min", l_min},
        {"amax", l_amax}, {"amin", l_amin}, {"argmax", l_argmax}, {"argmin", l_argmin}, {"all", l_all},
        {"any", l_any}, {"var", l_var}, {"std", l_std}, {"norm", l_norm}, {"logsumexp", l_logsumexp},
        {"cumsum", l_cumsum}, {"cumprod", l_cumprod}, {"sort", l_sort}, {"topk", l_topk}, {NULL, NULL}};
    lav_setfuncs2(L, mod, methods, both);
}
