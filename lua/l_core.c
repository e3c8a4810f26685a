/* Binding core: the tensor userdata, argument helpers, the module entry point. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "binding.h"
#include "aviary/cuda.h"

/* ---- names and errors ------------------------------------------------------- */
static _Thread_local char fname_buf[128];

const char *lav_fname(lua_State *L) {
    lua_Debug ar;
    if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "n", &ar) || !ar.name) return "aviary";
    if (ar.namewhat && !strcmp(ar.namewhat, "method")) snprintf(fname_buf, sizeof fname_buf, "Tensor:%s", ar.name);
    else if (ar.namewhat && !strcmp(ar.namewhat, "metamethod")) snprintf(fname_buf, sizeof fname_buf, "Tensor.__%s", ar.name);
    else snprintf(fname_buf, sizeof fname_buf, "aviary.%s", ar.name);
    return fname_buf;
}

/* the message of a runtime failure, prefixed with the Lua-visible name unless
 * the runtime already named the op the same way */
static int raise_runtime(lua_State *L) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", av_last_error());
    const char *fn = lav_fname(L);
    if (!strncmp(fn, "Tensor.__", 9)) return luaL_error(L, "aviary.%s", msg); /* operators: the op names itself */
    const char *sep = strpbrk(fn, ".:");
    const char *bare = sep ? sep + 1 : fn;
    size_t n = strlen(bare);
    if (!strncmp(msg, bare, n) && (msg[n] == ':' || (msg[n] == '_' && msg[n + 1] == ':'))) {
        char ns[64];
        snprintf(ns, sizeof ns, "%.*s", (int)(bare - fn), fn);
        return luaL_error(L, "%s%s", ns, msg);
    }
    return luaL_error(L, "%s: %s", fn, msg);
}

int lav_error(lua_State *L, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s: %s", lav_fname(L), buf);
}

void lav_check_rc(lua_State *L, int rc) {
    if (rc) raise_runtime(L);
}

/* ---- userdata ----------------------------------------------------------------- */
av_tensor *lav_to_tensor(lua_State *L, int idx) {
    lav_box *b = luaL_testudata(L, idx, LAV_TENSOR_MT);
    return b ? b->t : NULL;
}

bool lav_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, LAV_TENSOR_MT) != NULL; }

av_tensor *lav_check_tensor(lua_State *L, int idx) {
    lav_box *b = luaL_testudata(L, idx, LAV_TENSOR_MT);
    if (!b) {
        lav_error(L, "expected a tensor as argument %d, got %s", idx, luaL_typename(L, idx));
        return NULL;
    }
    if (!b->t) lav_error(L, "argument %d is a tensor that has been closed", idx);
    return b->t;
}

/* Lua's GC only sees the small userdata; tensor memory lives outside it. A
 * full collection runs when live tensor bytes double since the last one, so
 * garbage tensors in a long loop are reclaimed (Torch7 did the same). */
static size_t gc_threshold = (size_t)256 << 20;
static void gc_pressure(lua_State *L) {
    /* device tensors count too: GPU memory is the scarcer of the two */
    size_t live = av_live_bytes() + av_cuda_live_bytes();
    if (live <= gc_threshold) return;
    lua_gc(L, LUA_GCCOLLECT);
    live = av_live_bytes() + av_cuda_live_bytes();
    gc_threshold = live * 2 > ((size_t)256 << 20) ? live * 2 : ((size_t)256 << 20);
}

int lav_push(lua_State *L, av_tensor *t) {
    if (!t) return raise_runtime(L);
    /* box first, in a safe empty state, so a memory error cannot leak t */
    lav_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->t = NULL;
    luaL_setmetatable(L, LAV_TENSOR_MT);
    b->t = t;
    if (t->storage->nbytes >= 65536) {
        /* a fresh block counts as Lua allocation of the same size, so the
         * collector keeps pace with tensor memory and dead tensors go soon */
        if (t->storage->refcount == 1) lua_gc(L, LUA_GCSTEP, (int)(t->storage->nbytes >> 10));
        gc_pressure(L);
    }
    return 1;
}

static int t_gc(lua_State *L) {
    lav_box *b = luaL_checkudata(L, 1, LAV_TENSOR_MT);
    av_release(b->t);
    b->t = NULL;
    return 0;
}

/* ---- argument helpers ----------------------------------------------------------- */
int lav_check_dim(lua_State *L, int arg, int ndim) {
    if (!lua_isinteger(L, arg))
        return lav_error(L, "expected an integer dimension as argument %d, got %s", arg,
                         lua_isnumber(L, arg) ? "a non-integer number" : luaL_typename(L, arg));
    lua_Integer d = lua_tointeger(L, arg);
    int n = ndim > 0 ? ndim : 1;
    if (d == 0) return lav_error(L, "dimension 0 is invalid: dimensions are 1-based (1..%d, or negative from the end)", n);
    if (d > n || d < -n) return lav_error(L, "dimension %lld out of range for a %d-d tensor (expected 1..%d or -%d..-1)",
                                          (long long)d, ndim, n, n);
    return d > 0 ? (int)d - 1 : (int)(n + d);
}

static int64_t check_size(lua_State *L, int arg, lua_Integer v, bool allow_neg1) {
    if (allow_neg1 && v == -1) return -1;
    if (v < 0) lav_error(L, "size %lld in argument %d must be non-negative", (long long)v, arg);
    return (int64_t)v;
}

static int check_shape(lua_State *L, int first, int64_t *shape, bool neg) {
    int n = 0;
    if (lua_istable(L, first) && !lav_is_tensor(L, first)) {
        lua_Integer len = luaL_len(L, first);
        if (len > AV_MAX_DIMS) lav_error(L, "at most %d dimensions are supported, got %lld", AV_MAX_DIMS, (long long)len);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_geti(L, first, i);
            if (!lua_isinteger(L, -1))
                lav_error(L, "size table entry %lld must be an integer, got %s", (long long)i,
                          lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
            shape[n++] = check_size(L, first, lua_tointeger(L, -1), neg);
            lua_pop(L, 1);
        }
        return n;
    }
    for (int i = first; lua_type(L, i) == LUA_TNUMBER; i++) {
        if (n == AV_MAX_DIMS) lav_error(L, "at most %d dimensions are supported", AV_MAX_DIMS);
        if (!lua_isinteger(L, i)) lav_error(L, "size argument %d must be an integer, got %g", i, lua_tonumber(L, i));
        shape[n++] = check_size(L, i, lua_tointeger(L, i), neg);
    }
    return n;
}

int lav_check_shape(lua_State *L, int first, int64_t *shape) { return check_shape(L, first, shape, false); }
int lav_check_shape_signed(lua_State *L, int first, int64_t *shape) { return check_shape(L, first, shape, true); }

av_dtype lav_check_dtype_name(lua_State *L, int idx) {
    const char *s = lua_tostring(L, idx);
    if (lua_type(L, idx) != LUA_TSTRING)
        lav_error(L, "expected a dtype name (e.g. 'float32') as argument %d, got %s", idx, luaL_typename(L, idx));
    int d = av_dtype_from_name(s);
    if (d < 0) lav_error(L, "unknown dtype '%s' (expected float32, float64, int64, int32, uint8, float16 or bfloat16)", s);
    return (av_dtype)d;
}

int lav_opts(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    return (lua_type(L, idx) == LUA_TTABLE && !lav_is_tensor(L, idx)) ? idx : 0;
}

av_dtype lav_opt_dtype(lua_State *L, int tbl, av_dtype def) {
    if (!tbl) return def;
    lua_getfield(L, tbl, "dtype");
    av_dtype d = def;
    if (!lua_isnil(L, -1)) d = lav_check_dtype_name(L, lua_gettop(L));
    lua_pop(L, 1);
    return d;
}

bool lav_opt_bool(lua_State *L, int tbl, const char *key, bool def) {
    if (!tbl) return def;
    lua_getfield(L, tbl, key);
    bool v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) lav_error(L, "option '%s' must be a boolean, got %s", key, luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

double lav_opt_number(lua_State *L, int tbl, const char *key, double def) {
    if (!tbl) return def;
    lua_getfield(L, tbl, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) lav_error(L, "option '%s' must be a number, got %s", key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

av_tensor *lav_check_index(lua_State *L, int idx) {
    av_tensor *t = lav_to_tensor(L, idx), *r;
    if (t) {
        if (t->dtype != AV_I64 && t->dtype != AV_I32 && t->dtype != AV_U8)
            lav_error(L, "index tensor (argument %d) must be an integer tensor, got %s", idx, av_dtype_name(t->dtype));
        /* widen first: a uint8 index of 0 must become -1, not wrap to 255 */
        av_tensor *w = av_to_dtype(t, AV_I64);
        r = w ? av_binary_scalar(AV_OP_SUB, w, 1, false) : NULL;
        av_release(w);
        if (!r) raise_runtime(L);
        return r;
    }
    if (!lua_istable(L, idx))
        lav_error(L, "expected an index tensor or a table of integers as argument %d, got %s", idx, luaL_typename(L, idx));
    int64_t n = (int64_t)luaL_len(L, idx);
    r = av_empty(1, &n, AV_I64);
    if (!r) raise_runtime(L);
    int64_t *p = av_data(r);
    for (int64_t i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        if (!lua_isinteger(L, -1)) {
            av_release(r);
            lav_error(L, "index table entry %lld must be an integer", (long long)i + 1);
        }
        p[i] = lua_tointeger(L, -1) - 1;
        lua_pop(L, 1);
    }
    return r;
}

void lav_check_keys(lua_State *L, int tbl, const char *const *allowed) {
    if (!tbl) return;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            lav_error(L, "options table has a non-string key (%s); options are named, e.g. {stride = 2}",
                      luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(k, allowed[i]);
        if (!ok) {
            char list[256] = "";
            for (int i = 0; allowed[i]; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, allowed[i], sizeof list - strlen(list) - 1);
            }
            lav_error(L, "unknown option '%s' (options: %s)", k, list);
        }
    }
}

int lav_opts_at(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return 0;
    int t = lav_opts(L, idx);
    if (!t) lav_error(L, "expected an options table as argument %d, got %s", idx, luaL_typename(L, idx));
    return t;
}

void lav_no_args_after(lua_State *L, int last) {
    for (int i = last + 1, top = lua_gettop(L); i <= top; i++)
        if (!lua_isnil(L, i)) lav_error(L, "unexpected argument %d (%s)", i, luaL_typename(L, i));
}

void lav_setfuncs(lua_State *L, int tbl, const luaL_Reg *regs) {
    for (; regs->name; regs++) {
        lua_pushcfunction(L, regs->func);
        lua_setfield(L, tbl, regs->name);
    }
}

void lav_setfuncs2(lua_State *L, int mod, int methods, const luaL_Reg *regs) {
    lav_setfuncs(L, mod, regs);
    lav_setfuncs(L, methods, regs);
}

/* ---- module ----------------------------------------------------------------------- */
int lav_index(lua_State *L);
int lav_newindex(lua_State *L);
int lav_len(lua_State *L);
void lav_open_arith_meta(lua_State *L, int mt);

/* files other engineers add are linked in when present */
__attribute__((weak)) void lav_open_reduce(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_index(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_io(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_linalg(lua_State *L, int mod, int methods);
/* step 2's CNN operators, one binding file per family */
__attribute__((weak)) void lav_open_conv(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_nn(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_loss(lua_State *L, int mod, int methods);
/* step 4's images, drawing and data loading */
__attribute__((weak)) void lav_open_image(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_draw(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_data(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_optim(lua_State *L, int mod, int methods);
/* step 6's plotting surface (cairo) and manifold learning (PCA, t-SNE) */
__attribute__((weak)) void lav_open_plot(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_manifold(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_onnx(lua_State *L, int mod, int methods);
__attribute__((weak)) void lav_open_infer(lua_State *L, int mod, int methods); /* lua/l_infer.c */
void lav_open_cuda(lua_State *L, int mod, int methods); /* lua/l_cuda.c */

/* out of GPU memory: collect Lua's garbage tensors, then the allocator retries.
 * Only on the thread running the Lua state that loaded the module. */
static lua_State *oom_state;
static pthread_t oom_thread;
static void oom_collect(void) {
    if (oom_state && pthread_equal(pthread_self(), oom_thread)) lua_gc(oom_state, LUA_GCCOLLECT);
}

int luaopen_aviary_core(lua_State *L) {
    if (!oom_state) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD); /* outlives any coroutine that required us */
        oom_state = lua_tothread(L, -1);
        lua_pop(L, 1);
        oom_thread = pthread_self();
        av_cuda_set_oom_hook(oom_collect);
    }
    lua_newtable(L); /* module */
    int mod = lua_gettop(L);
    lua_newtable(L); /* methods */
    int methods = lua_gettop(L);
    luaL_newmetatable(L, LAV_TENSOR_MT);
    int mt = lua_gettop(L);
    lua_pushcfunction(L, t_gc);
    lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, t_gc);
    lua_setfield(L, mt, "__close");
    lua_pushcfunction(L, lav_tostring);
    lua_setfield(L, mt, "__tostring");
    lua_pushcfunction(L, lav_len);
    lua_setfield(L, mt, "__len");
    /* __index is a closure over the methods table: methods first, then x[i] */
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, lav_index, 1);
    lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, lav_newindex);
    lua_setfield(L, mt, "__newindex");
    lua_pushliteral(L, "aviary.Tensor");
    lua_setfield(L, mt, "__name");
    lav_open_arith_meta(L, mt);

    lav_open_tensor(L, mod, methods);
    lav_open_math(L, mod, methods);
    lav_open_autograd(L, mod, methods);
    if (lav_open_reduce) lav_open_reduce(L, mod, methods);
    if (lav_open_index) lav_open_index(L, mod, methods);
    if (lav_open_io) lav_open_io(L, mod, methods);
    if (lav_open_linalg) lav_open_linalg(L, mod, methods);
    if (lav_open_conv) lav_open_conv(L, mod, methods);
    if (lav_open_nn) lav_open_nn(L, mod, methods);
    if (lav_open_loss) lav_open_loss(L, mod, methods);
    if (lav_open_image) lav_open_image(L, mod, methods);
    if (lav_open_draw) lav_open_draw(L, mod, methods);
    if (lav_open_data) lav_open_data(L, mod, methods);
    if (lav_open_optim) lav_open_optim(L, mod, methods);
    if (lav_open_plot) lav_open_plot(L, mod, methods);
    if (lav_open_manifold) lav_open_manifold(L, mod, methods);
    if (lav_open_onnx) lav_open_onnx(L, mod, methods);
    if (lav_open_infer) lav_open_infer(L, mod, methods);
    lav_open_cuda(L, mod, methods); /* last: its Tensor:to knows devices as well as dtypes */

    lua_pushvalue(L, methods);
    lua_setfield(L, mod, "Tensor"); /* the methods table, for extension in Lua */
    lua_pushvalue(L, mt);
    lua_setfield(L, mod, "_metatable");
    lua_settop(L, mod);
    return 1;
}
