/* Tensor creation, views, conversions and element access from Lua. */
#include <math.h>
#include <string.h>
#include <time.h>
#include "binding.h"
#include "aviary/cuda.h"
#include "aviary/autograd.h"

/* ---- creation ----------------------------------------------------------------- */
/* pushes a new tensor and applies the creation option requires_grad=true */
static int push_created(lua_State *L, av_tensor *t, int opts) {
    lav_push(L, t);
    if (opts) {
        /* {device='cuda'}: made on the host, then moved (the values, random ones included, are the same) */
        lua_getfield(L, opts, "device");
        if (!lua_isnil(L, -1)) {
            av_device d;
            if (lua_type(L, -1) != LUA_TSTRING || av_device_parse(lua_tostring(L, -1), &d))
                lav_error(L, "option 'device' must be 'cpu', 'cuda' or 'cuda:N', got %s",
                          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
            lua_pop(L, 1);
            lav_push(L, av_to_device(t, d));
            lua_remove(L, -2);
            t = lav_to_tensor(L, -1);
        } else {
            lua_pop(L, 1);
        }
    }
    if (opts && lav_opt_bool(L, opts, "requires_grad", false)) lav_check_rc(L, av_requires_grad_(t, true));
    return 1;
}
/* shape varargs (or a table) followed by an optional options table */
static int shape_and_opts(lua_State *L, int first, int64_t *shape, int *tbl) {
    int n = lav_check_shape(L, first, shape);
    int next = (lua_istable(L, first) && !lav_is_tensor(L, first)) ? first + 1 : first + n;
    *tbl = lav_opts(L, next);
    if (!*tbl && !lua_isnoneornil(L, next))
        lav_error(L, "expected sizes then an optional options table, got %s as argument %d", luaL_typename(L, next), next);
    return n;
}

static int l_empty(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int o, n = shape_and_opts(L, 1, s, &o);
    return push_created(L, av_empty(n, s, lav_opt_dtype(L, o, AV_F32)), o);
}
static int l_zeros(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int o, n = shape_and_opts(L, 1, s, &o);
    return push_created(L, av_zeros(n, s, lav_opt_dtype(L, o, AV_F32)), o);
}
static int l_ones(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int o, n = shape_and_opts(L, 1, s, &o);
    return push_created(L, av_full(n, s, lav_opt_dtype(L, o, AV_F32), 1), o);
}
static int l_rand(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int o, n = shape_and_opts(L, 1, s, &o);
    return push_created(L, av_rand(n, s, lav_opt_dtype(L, o, AV_F32)), o);
}
static int l_randn(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int o, n = shape_and_opts(L, 1, s, &o);
    return push_created(L, av_randn(n, s, lav_opt_dtype(L, o, AV_F32)), o);
}
/* full({2,3}, value, opts): the shape must be a table since the value is a number too */
static int l_full(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    if (!lua_istable(L, 1)) lav_error(L, "expected a size table as argument 1 (e.g. av.full({2,3}, 7)), got %s", luaL_typename(L, 1));
    int n = lav_check_shape(L, 1, s);
    double v = luaL_checknumber(L, 2);
    int o = lav_opts(L, 3);
    av_dtype def = (lua_isinteger(L, 2)) ? AV_I64 : AV_F32;
    return push_created(L, av_full(n, s, lav_opt_dtype(L, o, def), v), o);
}
/* randint(high, size) or randint(low, high, size) */
static int l_randint(lua_State *L) {
    lua_Integer lo = 0, hi;
    int at;
    if (lua_isinteger(L, 2) && (lua_istable(L, 3))) { lo = luaL_checkinteger(L, 1); hi = luaL_checkinteger(L, 2); at = 3; }
    else { hi = luaL_checkinteger(L, 1); at = 2; }
    int64_t s[AV_MAX_DIMS];
    if (!lua_istable(L, at)) lav_error(L, "expected a size table as argument %d (e.g. av.randint(0, 10, {3,4}))", at);
    int n = lav_check_shape(L, at, s);
    return lav_push(L, av_randint(lo, hi, n, s, lav_opt_dtype(L, lav_opts(L, at + 1), AV_I64)));
}
static int l_randperm(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    return lav_push(L, av_randperm(n, lav_opt_dtype(L, lav_opts(L, 2), AV_I64)));
}
/* arange(end) / arange(start, end[, step]); integers give int64 like PyTorch */
static int l_arange(lua_State *L) {
    int nnum = 0;
    while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
    if (nnum == 0) lav_error(L, "expected arange(end), arange(start, end) or arange(start, end, step)");
    double a = 0, b, st = 1;
    bool all_int = true;
    for (int i = 1; i <= nnum; i++) all_int = all_int && lua_isinteger(L, i);
    if (nnum == 1) b = lua_tonumber(L, 1);
    else { a = lua_tonumber(L, 1); b = lua_tonumber(L, 2); if (nnum == 3) st = lua_tonumber(L, 3); }
    return lav_push(L, av_arange(a, b, st, lav_opt_dtype(L, lav_opts(L, nnum + 1), all_int ? AV_I64 : AV_F32)));
}
static int l_linspace(lua_State *L) {
    double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3);
    return lav_push(L, av_linspace(a, b, n, lav_opt_dtype(L, lav_opts(L, 4), AV_F32)));
}
static int l_eye(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : n;
    if (n < 0 || m < 0) lav_error(L, "sizes must be non-negative, got %lld and %lld", (long long)n, (long long)m);
    return lav_push(L, av_eye(n, m, lav_opt_dtype(L, lav_opts(L, lua_isinteger(L, 2) ? 3 : 2), AV_F32)));
}

/* av.tensor(nested table | number, {dtype=}): integers only -> int64, else float32 */
typedef struct { int ndim; int64_t shape[AV_MAX_DIMS]; bool all_int, any_bool; int64_t count; } nest_info;
static void nest_scan(lua_State *L, int idx, int depth, nest_info *ni) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (depth != ni->ndim) lav_error(L, "nested table is ragged: a number at depth %d, expected depth %d", depth + 1, ni->ndim + 1);
        if (!lua_isinteger(L, idx)) ni->all_int = false;
        ni->count++;
        return;
    }
    if (lua_type(L, idx) == LUA_TBOOLEAN) { ni->any_bool = true; ni->count++; return; }
    if (!lua_istable(L, idx)) lav_error(L, "expected numbers in nested tables, got %s", luaL_typename(L, idx));
    int64_t n = (int64_t)luaL_len(L, idx);
    if (depth >= AV_MAX_DIMS) lav_error(L, "nesting deeper than %d", AV_MAX_DIMS);
    if (depth == ni->ndim) {
        /* first visit at this depth fixes the size, if the first leaf hasn't been seen yet */
        if (ni->count > 0) lav_error(L, "nested table is ragged at depth %d", depth + 1);
        ni->shape[depth] = n;
        ni->ndim = depth + 1;
        if (n == 0) return;
    } else if (ni->shape[depth] != n) {
        lav_error(L, "nested table is ragged: a list of %lld at depth %d, expected %lld", (long long)n, depth + 1,
                  (long long)ni->shape[depth]);
    }
    for (int64_t i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        nest_scan(L, lua_gettop(L), depth + 1, ni);
        lua_pop(L, 1);
    }
}
static void nest_fill(lua_State *L, int idx, av_tensor *t, int64_t *pos) {
    if (!lua_istable(L, idx)) {
        double v = lua_isboolean(L, idx) ? lua_toboolean(L, idx) : lua_tonumber(L, idx);
        av_store_elem(t->dtype, (char *)av_data(t) + (*pos)++ * av_dtype_size(t->dtype), v);
        return;
    }
    int64_t n = (int64_t)luaL_len(L, idx);
    for (int64_t i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        nest_fill(L, lua_gettop(L), t, pos);
        lua_pop(L, 1);
    }
}
/* av.tensor(t) copies data without history, like torch.tensor(t) */
static av_tensor *av_detach_clone(const av_tensor *t) {
    av_tensor *d = av_detach(t), *c = d ? av_clone(d) : NULL;
    av_release(d);
    return c;
}
static int l_tensor(lua_State *L) {
    int o = lav_opts(L, 2);
    av_tensor *src = lav_to_tensor(L, 1);
    if (src) {
        av_dtype d = lav_opt_dtype(L, o, src->dtype);
        return push_created(L, d == src->dtype ? av_detach_clone(src) : av_to_dtype(src, d), o);
    }
    if (lua_type(L, 1) == LUA_TNUMBER) {
        av_dtype d = lav_opt_dtype(L, o, lua_isinteger(L, 1) ? AV_I64 : AV_F32);
        return push_created(L, av_scalar_tensor(lua_tonumber(L, 1), d), o);
    }
    if (!lua_istable(L, 1)) lav_error(L, "expected a nested table of numbers as argument 1, got %s", luaL_typename(L, 1));
    nest_info ni = {0, {0}, true, false, 0};
    nest_scan(L, 1, 0, &ni);
    av_tensor *t = av_empty(ni.ndim, ni.shape, lav_opt_dtype(L, o, ni.any_bool ? AV_U8 : ni.all_int ? AV_I64 : AV_F32));
    if (!t) return lav_push(L, NULL);
    lav_push(L, t);
    int64_t pos = 0;
    nest_fill(L, 1, t, &pos);
    if (o && lav_opt_bool(L, o, "requires_grad", false)) lav_check_rc(L, av_requires_grad_(t, true));
    return 1;
}

#define LIKE_FN(name, expr)                                                      \
    static int name(lua_State *L) {                                              \
        av_tensor *x = lav_check_tensor(L, 1);                                   \
        av_dtype dt = lav_opt_dtype(L, lav_opts(L, 2), x->dtype);                \
        (void)dt;                                                                \
        return lav_push(L, expr);                                                \
    }
/* the *_like functions make their result on x's device */
static av_tensor *on_device_of(const av_tensor *x, av_tensor *t) {
    if (!t || !av_is_cuda(x)) return t;
    av_tensor *r = av_to_device(t, av_device_of(x));
    av_release(t);
    return r;
}
LIKE_FN(l_zeros_like, av_zeros_on(x->ndim, x->shape, dt, av_device_of(x)))
LIKE_FN(l_ones_like, av_full_on(x->ndim, x->shape, dt, 1, av_device_of(x)))
LIKE_FN(l_empty_like, av_empty_on(x->ndim, x->shape, dt, av_device_of(x)))
LIKE_FN(l_rand_like, on_device_of(x, av_rand(x->ndim, x->shape, dt)))
LIKE_FN(l_randn_like, on_device_of(x, av_randn(x->ndim, x->shape, dt)))
static int l_full_like(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    double v = luaL_checknumber(L, 2);
    return lav_push(L, av_full_on(x->ndim, x->shape, lav_opt_dtype(L, lav_opts(L, 3), x->dtype), v, av_device_of(x)));
}

static int l_manual_seed(lua_State *L) {
    lua_Integer s = luaL_checkinteger(L, 1);
    av_manual_seed((uint64_t)s);
    return 0;
}
static int l_initial_seed(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)av_initial_seed());
    return 1;
}
static int l_get_rng_state(lua_State *L) {
    return lav_push(L, av_get_rng_state());
}
static int l_set_rng_state(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    lav_check_rc(L, av_set_rng_state(t));
    return 0;
}
static int l_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1) lav_error(L, "thread count must be >= 1, got %lld", (long long)n);
    av_set_num_threads((int)n);
    return 0;
}
static int l_get_num_threads(lua_State *L) {
    lua_pushinteger(L, av_get_num_threads());
    return 1;
}
/* wall-clock seconds from a monotonic clock, for timing (os.clock is CPU time) */
static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}
static int l_cuda_device_count(lua_State *L) {
    lua_pushinteger(L, av_cuda_device_count());
    return 1;
}
static int l_cuda_compiled(lua_State *L) {
    lua_pushboolean(L, av_cuda_compiled());
    return 1;
}
static int l_is_tensor(lua_State *L) {
    lua_pushboolean(L, lav_is_tensor(L, 1));
    return 1;
}

/* ---- metadata --------------------------------------------------------------------- */
static int m_size(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        if (x->ndim == 0) lav_error(L, "a 0-d tensor has no dimensions");
        lua_pushinteger(L, x->shape[lav_check_dim(L, 2, x->ndim)]);
        return 1;
    }
    lua_createtable(L, x->ndim, 0);
    for (int i = 0; i < x->ndim; i++) {
        lua_pushinteger(L, x->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
static int m_stride(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_pushinteger(L, x->stride[lav_check_dim(L, 2, x->ndim)]);
        return 1;
    }
    lua_createtable(L, x->ndim, 0);
    for (int i = 0; i < x->ndim; i++) {
        lua_pushinteger(L, x->stride[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
static int m_dim(lua_State *L) { lua_pushinteger(L, lav_check_tensor(L, 1)->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, av_numel(lav_check_tensor(L, 1))); return 1; }
static int m_dtype(lua_State *L) { lua_pushstring(L, av_dtype_name(lav_check_tensor(L, 1)->dtype)); return 1; }
static int m_type(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_pushfstring(L, "aviary.%s", av_dtype_tensor_name(x->dtype));
        return 1;
    }
    return lav_push(L, av_to_dtype(x, lav_check_dtype_name(L, 2)));
}
static int m_is_contiguous(lua_State *L) { lua_pushboolean(L, av_is_contiguous(lav_check_tensor(L, 1))); return 1; }
static int m_storage_offset(lua_State *L) { lua_pushinteger(L, lav_check_tensor(L, 1)->offset); return 1; }

static void push_number(lua_State *L, av_dtype dt, double v) {
    if (av_dtype_is_float(dt)) lua_pushnumber(L, v);
    else lua_pushinteger(L, (lua_Integer)v);
}
static int m_item(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    double v;
    lav_check_rc(L, av_item(x, &v));
    push_number(L, x->dtype, v);
    return 1;
}
static void tolist_rec(lua_State *L, av_tensor *x, int d, int64_t *idx) {
    if (d == x->ndim) { push_number(L, x->dtype, av_get(x, idx)); return; }
    lua_createtable(L, (int)x->shape[d], 0);
    for (int64_t i = 0; i < x->shape[d]; i++) {
        idx[d] = i;
        tolist_rec(L, x, d + 1, idx);
        lua_rawseti(L, -2, i + 1);
    }
}
static int m_tolist(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t idx[AV_MAX_DIMS] = {0};
    luaL_checkstack(L, x->ndim + 4, "tolist");
    if (x->storage->device.type != AV_CPU) {
        /* one copy to the host rather than a round trip per element; boxed so an error cannot leak it */
        lav_push(L, av_to_device(x, (av_device){AV_CPU, 0}));
        tolist_rec(L, lav_to_tensor(L, -1), 0, idx);
        lua_remove(L, -2);
        return 1;
    }
    tolist_rec(L, x, 0, idx);
    return 1;
}

/* ---- conversions ------------------------------------------------------------------ */
#define CONVERT(name, dt) static int name(lua_State *L) { return lav_push(L, av_to_dtype(lav_check_tensor(L, 1), dt)); }
CONVERT(m_float, AV_F32)
CONVERT(m_double, AV_F64)
CONVERT(m_long, AV_I64)
CONVERT(m_int, AV_I32)
CONVERT(m_byte, AV_U8)
CONVERT(m_half, AV_F16)
CONVERT(m_bfloat16, AV_BF16)
/* x:to(...) lives in l_cuda.c: it moves between devices as well as dtypes */
int lav_tensor_to(lua_State *L);
static int m_clone(lua_State *L) { return lav_push(L, av_clone(lav_check_tensor(L, 1))); }
static int m_contiguous(lua_State *L) { return lav_push(L, av_contiguous(lav_check_tensor(L, 1))); }
static int m_copy_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    lav_check_rc(L, av_copy_(x, lav_check_tensor(L, 2)));
    lua_settop(L, 1);
    return 1;
}
static int m_fill_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    lav_check_rc(L, av_fill_(x, luaL_checknumber(L, 2)));
    lua_settop(L, 1);
    return 1;
}
static int m_zero_(lua_State *L) {
    lav_check_rc(L, av_fill_(lav_check_tensor(L, 1), 0));
    lua_settop(L, 1);
    return 1;
}
static int m_uniform_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    lav_check_rc(L, av_uniform_(x, luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1)));
    lua_settop(L, 1);
    return 1;
}
static int m_normal_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    lav_check_rc(L, av_normal_(x, luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1)));
    lua_settop(L, 1);
    return 1;
}

/* ---- views ------------------------------------------------------------------------ */
static int m_view(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    av_tensor *o = lav_to_tensor(L, 2);
    if (o) return lav_push(L, av_view(x, o->ndim, o->shape));
    int64_t s[AV_MAX_DIMS];
    int n = lav_check_shape_signed(L, 2, s);
    return lav_push(L, av_view(x, n, s));
}
static int m_reshape(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t s[AV_MAX_DIMS];
    int n = lav_check_shape_signed(L, 2, s);
    return lav_push(L, av_reshape(x, n, s));
}
static int m_view_as(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *o = lav_check_tensor(L, 2);
    return lav_push(L, av_view(x, o->ndim, o->shape));
}
static int m_permute(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int dims[AV_MAX_DIMS], n = 0;
    if (lua_istable(L, 2)) {
        int len = (int)luaL_len(L, 2);
        if (len != x->ndim) lav_error(L, "expected %d dims for a %d-d tensor, got %d", x->ndim, x->ndim, len);
        for (int i = 0; i < len; i++) {
            lua_geti(L, 2, i + 1);
            dims[n++] = lav_check_dim(L, lua_gettop(L), x->ndim);
            lua_pop(L, 1);
        }
    } else {
        int top = lua_gettop(L);
        if (top - 1 != x->ndim) lav_error(L, "expected %d dims for a %d-d tensor, got %d", x->ndim, x->ndim, top - 1);
        for (int i = 2; i <= top; i++) dims[n++] = lav_check_dim(L, i, x->ndim);
    }
    return lav_push(L, av_permute(x, dims));
}
static int m_transpose(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int a = lav_check_dim(L, 2, x->ndim), b = lav_check_dim(L, 3, x->ndim);
    return lav_push(L, av_transpose(x, a, b));
}
static int m_t(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (x->ndim > 2) lav_error(L, "expects a tensor with <= 2 dimensions, got %d-d; use transpose(d1, d2)", x->ndim);
    if (x->ndim < 2) return lav_push(L, av_retain(x));
    return lav_push(L, av_transpose(x, 0, 1));
}
static int m_narrow(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int d = lav_check_dim(L, 2, x->ndim);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    if (start < 0) start += x->shape[d] + 1;
    if (start < 1) lav_error(L, "start index %lld is invalid: indices are 1-based", (long long)start);
    return lav_push(L, av_narrow(x, d, start - 1, len));
}
static int64_t check_index(lua_State *L, lua_Integer i, int64_t size, int dim) {
    int64_t j = i > 0 ? i - 1 : size + i;
    if (i == 0 || j < 0 || j >= size)
        lav_error(L, "index %lld is out of range for dimension %d of size %lld (indices are 1-based)", (long long)i,
                  dim + 1, (long long)size);
    return j;
}
static int m_select(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (x->ndim == 0) lav_error(L, "cannot select from a 0-d tensor");
    int d = lav_check_dim(L, 2, x->ndim);
    return lav_push(L, av_select(x, d, check_index(L, luaL_checkinteger(L, 3), x->shape[d], d)));
}
static int m_expand(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    av_tensor *o = lav_to_tensor(L, 2);
    if (o) return lav_push(L, av_expand(x, o->ndim, o->shape));
    int64_t s[AV_MAX_DIMS];
    int n = lav_check_shape_signed(L, 2, s);
    return lav_push(L, av_expand(x, n, s));
}
static int m_expand_as(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *o = lav_check_tensor(L, 2);
    return lav_push(L, av_expand(x, o->ndim, o->shape));
}
static int m_squeeze(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return lav_push(L, av_squeeze(x, AV_ALL_DIMS));
    return lav_push(L, av_squeeze(x, lav_check_dim(L, 2, x->ndim)));
}
static int m_unsqueeze(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    return lav_push(L, av_unsqueeze(x, lav_check_dim(L, 2, x->ndim + 1)));
}
static int m_flatten(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int a = lua_isnoneornil(L, 2) ? 0 : lav_check_dim(L, 2, x->ndim);
    int b = lua_isnoneornil(L, 3) ? (x->ndim ? x->ndim - 1 : 0) : lav_check_dim(L, 3, x->ndim);
    return lav_push(L, av_flatten(x, a, b));
}

/* ---- x[i], x[i] = v, #x -------------------------------------------------------------- */
/* applies one index key to x: an integer selects along dim 0; a table indexes
 * several dims Torch7-style: an integer selects, {a,b} narrows to a..b
 * (inclusive, 1-based, negatives from the end), {} keeps the dim */
static av_tensor *apply_key(lua_State *L, av_tensor *x, int key) {
    if (lua_isinteger(L, key)) {
        if (x->ndim == 0) lav_error(L, "cannot index a 0-d tensor; use x:item()");
        return av_select(x, 0, check_index(L, lua_tointeger(L, key), x->shape[0], 0));
    }
    if (!lua_istable(L, key)) lav_error(L, "tensor index must be an integer or a table, got %s", luaL_typename(L, key));
    int n = (int)luaL_len(L, key);
    if (n > x->ndim) lav_error(L, "too many indices (%d) for a %d-d tensor", n, x->ndim);
    av_tensor *cur = av_retain(x);
    int d = 0;
    for (int i = 1; i <= n; i++) {
        lua_geti(L, key, i);
        av_tensor *next = NULL;
        if (lua_isinteger(L, -1)) {
            lua_Integer v = lua_tointeger(L, -1);
            int64_t j = v > 0 ? v - 1 : cur->shape[d] + v;
            if (v == 0 || j < 0 || j >= cur->shape[d]) {
                int64_t size = cur->shape[d];
                av_release(cur);
                lav_error(L, "index %lld is out of range for dimension %d of size %lld (indices are 1-based)",
                          (long long)v, i, (long long)size);
            }
            next = av_select(cur, d, j);
        } else if (lua_istable(L, -1)) {
            int m = (int)luaL_len(L, -1);
            int64_t size = cur->shape[d], a = 1, b = size;
            if (m >= 1) { lua_geti(L, -1, 1); a = lua_tointeger(L, -1); lua_pop(L, 1); }
            if (m >= 2) { lua_geti(L, -1, 2); b = lua_tointeger(L, -1); lua_pop(L, 1); }
            else if (m == 1) b = a;
            if (a < 0) a += size + 1;
            if (b < 0) b += size + 1;
            if (a < 1 || b > size || b < a - 1) {
                av_release(cur);
                lav_error(L, "range {%lld, %lld} is out of bounds for dimension %d of size %lld", (long long)a,
                          (long long)b, d + 1, (long long)size);
            }
            next = av_narrow(cur, d, a - 1, b - a + 1);
            d++;
        } else {
            av_release(cur);
            lav_error(L, "index entries must be integers or {first, last} tables, got %s", luaL_typename(L, -1));
        }
        lua_pop(L, 1);
        av_release(cur);
        cur = next;
        if (!cur) lav_push(L, NULL);
    }
    return cur;
}

int lav_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        const char *k = lua_tostring(L, 2);
        if (!strcmp(k, "shape")) { lua_settop(L, 1); return m_size(L); }
        if (!strcmp(k, "ndim")) { lua_settop(L, 1); return m_dim(L); }
        av_tensor *x = lav_to_tensor(L, 1);
        if (x && lav_autograd_property(L, x, k)) return 1;
        lua_pushnil(L);
        return 1;
    }
    av_tensor *x = lav_check_tensor(L, 1);
    av_tensor *r = apply_key(L, x, 2);
    if (r && r->ndim == 0) {
        double v;
        av_item(r, &v);
        av_release(r);
        push_number(L, x->dtype, v);
        return 1;
    }
    return lav_push(L, r);
}

int lav_newindex(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        if (lav_autograd_setproperty(L, x, lua_tostring(L, 2), 3)) return 0;
        lav_error(L, "cannot set field '%s' on a tensor", lua_tostring(L, 2));
    }
    av_tensor *r = apply_key(L, x, 2);
    if (!r) return lav_push(L, NULL);
    int rc;
    av_tensor *v = lav_to_tensor(L, 3);
    if (v) rc = av_copy_(r, v);
    else if (lua_type(L, 3) == LUA_TNUMBER) rc = av_fill_(r, lua_tonumber(L, 3));
    else if (lua_isboolean(L, 3)) rc = av_fill_(r, lua_toboolean(L, 3));
    else {
        av_release(r);
        return lav_error(L, "can only assign a number or a tensor to a tensor element, got %s", luaL_typename(L, 3));
    }
    av_release(r);
    lav_check_rc(L, rc);
    return 0;
}

int lav_len(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (x->ndim == 0) lav_error(L, "len() of a 0-d tensor");
    lua_pushinteger(L, x->shape[0]);
    return 1;
}

void lav_open_tensor(lua_State *L, int mod, int methods) {
    static const luaL_Reg mod_fns[] = {
        {"tensor", l_tensor}, {"empty", l_empty}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
        {"rand", l_rand}, {"randn", l_randn}, {"randint", l_randint}, {"randperm", l_randperm},
        {"arange", l_arange}, {"linspace", l_linspace}, {"eye", l_eye},
        {"zeros_like", l_zeros_like}, {"ones_like", l_ones_like}, {"empty_like", l_empty_like},
        {"rand_like", l_rand_like}, {"randn_like", l_randn_like}, {"full_like", l_full_like},
        {"manual_seed", l_manual_seed}, {"initial_seed", l_initial_seed},
        {"get_rng_state", l_get_rng_state}, {"set_rng_state", l_set_rng_state},
        {"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads},
        {"is_tensor", l_is_tensor}, {"clock", l_clock},
        {"_cuda_device_count", l_cuda_device_count}, {"_cuda_compiled", l_cuda_compiled}, {NULL, NULL}};
    static const luaL_Reg both[] = {
        {"view", m_view}, {"reshape", m_reshape}, {"permute", m_permute}, {"transpose", m_transpose},
        {"t", m_t}, {"narrow", m_narrow}, {"select", m_select}, {"expand", m_expand}, {"squeeze", m_squeeze},
        {"unsqueeze", m_unsqueeze}, {"flatten", m_flatten}, {"clone", m_clone}, {"contiguous", m_contiguous},
        {"numel", m_numel}, {NULL, NULL}};
    static const luaL_Reg meth[] = {
        {"size", m_size}, {"stride", m_stride}, {"dim", m_dim}, {"ndimension", m_dim}, {"nelement", m_numel},
        {"dtype", m_dtype}, {"type", m_type}, {"is_contiguous", m_is_contiguous},
        {"storage_offset", m_storage_offset}, {"item", m_item}, {"tolist", m_tolist},
        {"float", m_float}, {"double", m_double}, {"long", m_long}, {"int", m_int}, {"byte", m_byte},
        {"half", m_half}, {"bfloat16", m_bfloat16}, {"to", lav_tensor_to}, {"copy_", m_copy_}, {"fill_", m_fill_},
        {"zero_", m_zero_}, {"uniform_", m_uniform_}, {"normal_", m_normal_}, {"view_as", m_view_as},
        {"expand_as", m_expand_as}, {NULL, NULL}};
    lav_setfuncs(L, mod, mod_fns);
    lav_setfuncs2(L, mod, methods, both);
    lav_setfuncs(L, methods, meth);
}
