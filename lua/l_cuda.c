/* Devices from Lua: x:cuda(), x:cpu(), x:device(), x:is_cuda(), and the
 * runtime controls behind av.cuda (lua/aviary/init.lua). Device names are
 * PyTorch's: 'cpu', 'cuda', 'cuda:1' (device indices are 0-based, as in
 * those names). */
#include <string.h>
#include "binding.h"
#include "aviary/cuda.h"

/* the device named by the string at idx; raises on a malformed name */
static av_device check_device_name(lua_State *L, int idx) {
    av_device d;
    if (av_device_parse(luaL_checkstring(L, idx), &d)) lav_error(L, "%s", av_last_error());
    return d;
}

/* raises unless device d can hold tensors, saying why not */
static void require_device(lua_State *L, av_device d) {
    if (d.type == AV_CPU) return;
    if (!av_cuda_compiled()) lav_error(L, "no CUDA in this build (rebuild with nvcc installed)");
    if (!av_cuda_is_available()) {
        /* the runtime's reason names the driver's answer */
        av_tensor *probe = av_empty_on(0, NULL, AV_F32, d);
        if (probe) av_release(probe);
        else {
            const char *msg = av_last_error();
            const char *p = strstr(msg, "no CUDA device");
            lav_error(L, "%s", p ? p : msg);
        }
    }
    int n = av_cuda_device_count();
    if (d.index >= n)
        lav_error(L, "no device cuda:%d on this machine (%d CUDA device%s)", d.index, n, n == 1 ? "" : "s");
}

/* x:cuda([index | 'cuda:N'] [, {non_blocking=}]) */
static int m_cuda(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    av_device d = {AV_CUDA, 0};
    bool non_blocking = false;
    int o = lua_istable(L, 2) ? 2 : lua_istable(L, 3) ? 3 : 0;
    if (o) {
        static const char *const keys[] = {"non_blocking", NULL};
        lav_check_keys(L, o, keys);
        non_blocking = lav_opt_bool(L, o, "non_blocking", false);
        if (o == 2) lua_remove(L, 2);
    }
    if (lua_type(L, 2) == LUA_TSTRING) d = check_device_name(L, 2);
    else if (!lua_isnoneornil(L, 2)) {
        lua_Integer i = luaL_checkinteger(L, 2);
        if (i < 0) lav_error(L, "device index must be >= 0 (as in 'cuda:0'), got %lld", (long long)i);
        d.index = (int)i;
    } else if (av_cuda_is_available()) {
        d.index = av_cuda_current_device();
    }
    require_device(L, d);
    return lav_push(L, non_blocking ? av_to_device_async(x, d) : av_to_device(x, d));
}

static int m_cpu(lua_State *L) {
    return lav_push(L, av_to_device(lav_check_tensor(L, 1), (av_device){AV_CPU, 0}));
}

static int m_is_cuda(lua_State *L) {
    lua_pushboolean(L, av_is_cuda(lav_check_tensor(L, 1)));
    return 1;
}

static int m_device(lua_State *L) {
    char buf[32];
    lua_pushstring(L, av_device_str(av_device_of(lav_check_tensor(L, 1)), buf, sizeof buf));
    return 1;
}

/* x:pin_memory(): a copy in page-locked memory (x itself when it is already there) */
static int m_pin_memory(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    if (av_is_cuda(x)) lav_error(L, "the tensor is on %s; only CPU tensors can be pinned", "the GPU");
    if (av_is_pinned(x)) return lav_push(L, av_retain(x));
    av_tensor *p = av_empty_pinned(x->ndim, x->shape, x->dtype);
    if (p && av_copy_(p, x)) {
        av_release(p);
        p = NULL;
    }
    return lav_push(L, p);
}

static int m_is_pinned(lua_State *L) {
    lua_pushboolean(L, av_is_pinned(lav_check_tensor(L, 1)));
    return 1;
}

/* x:to(device), x:to(dtype), x:to(device, dtype), x:to(other), x:to{device=, dtype=, non_blocking=};
 * a trailing {non_blocking = true} may follow the positional forms */
int lav_tensor_to(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    av_device dev = av_device_of(x);
    av_dtype dt = x->dtype;
    bool non_blocking = false;
    int top = lua_gettop(L);
    if (top < 2) lav_error(L, "expected a device ('cpu', 'cuda', 'cuda:N'), a dtype, a tensor or an options table");
    for (int i = 2; i <= top && i <= 4; i++) {
        av_tensor *other = lav_to_tensor(L, i);
        if (other) {
            dev = av_device_of(other);
            dt = other->dtype;
        } else if (lua_type(L, i) == LUA_TSTRING) {
            const char *s = lua_tostring(L, i);
            if (!strcmp(s, "cpu") || !strncmp(s, "cuda", 4)) dev = check_device_name(L, i);
            else dt = lav_check_dtype_name(L, i);
        } else if (lua_istable(L, i)) {
            static const char *const keys[] = {"dtype", "device", "non_blocking", NULL};
            lav_check_keys(L, i, keys);
            dt = lav_opt_dtype(L, i, dt);
            non_blocking = lav_opt_bool(L, i, "non_blocking", false);
            lua_getfield(L, i, "device");
            if (!lua_isnil(L, -1)) dev = check_device_name(L, lua_gettop(L));
            lua_pop(L, 1);
        } else if (!lua_isnil(L, i)) {
            lav_error(L, "argument %d: expected a device or dtype name, a tensor or a table, got %s", i,
                      luaL_typename(L, i));
        }
    }
    require_device(L, dev);
    /* convert on the GPU side: fewer bytes cross the bus when narrowing, and the GPU converts faster */
    av_tensor *r;
    if (dev.type == AV_CUDA) {
        av_tensor *moved = non_blocking ? av_to_device_async(x, dev) : av_to_device(x, dev);
        if (!moved) return lav_push(L, NULL);
        r = av_to_dtype(moved, dt);
        av_release(moved);
    } else {
        av_tensor *conv = av_to_dtype(x, dt);
        if (!conv) return lav_push(L, NULL);
        r = av_to_device(conv, dev);
        av_release(conv);
    }
    return lav_push(L, r);
}

/* ---- av.cuda ------------------------------------------------------------------------ */
/* runtime messages start with the operation's name ("memory_stats: ..."): name it as users call it */
static int cuda_fail(lua_State *L) { return luaL_error(L, "aviary.cuda.%s", av_last_error()); }

static int l_is_available(lua_State *L) {
    lua_pushboolean(L, av_cuda_is_available());
    return 1;
}
static int l_synchronize(lua_State *L) {
    if (av_cuda_is_available() && av_cuda_synchronize()) cuda_fail(L);
    return 0;
}
static int l_memory_stats(lua_State *L) {
    av_cuda_memory_stats s;
    if (av_cuda_memory_stats_get(&s)) cuda_fail(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)s.allocated);
    lua_setfield(L, -2, "allocated");
    lua_pushinteger(L, (lua_Integer)s.reserved);
    lua_setfield(L, -2, "reserved");
    lua_pushinteger(L, (lua_Integer)s.peak_allocated);
    lua_setfield(L, -2, "peak_allocated");
    lua_pushinteger(L, (lua_Integer)s.free_device);
    lua_setfield(L, -2, "free");
    lua_pushinteger(L, (lua_Integer)s.total_device);
    lua_setfield(L, -2, "total");
    return 1;
}
static int l_empty_cache(lua_State *L) {
    (void)L;
    av_cuda_empty_cache();
    return 0;
}
static int l_reset_peak(lua_State *L) {
    (void)L;
    av_cuda_reset_peak();
    return 0;
}
static int l_set_device(lua_State *L) {
    int idx;
    if (lua_type(L, 1) == LUA_TSTRING) {
        av_device d = check_device_name(L, 1);
        if (d.type != AV_CUDA)
            luaL_error(L, "aviary.cuda.set_device: expected a CUDA device ('cuda:N' or an index), got '%s'", lua_tostring(L, 1));
        idx = d.index;
    } else {
        idx = (int)luaL_checkinteger(L, 1);
    }
    if (av_cuda_set_device(idx)) cuda_fail(L);
    return 0;
}
static int l_current_device(lua_State *L) {
    lua_pushinteger(L, av_cuda_current_device());
    return 1;
}
/* av.cuda.benchmark(): the flag; av.cuda.benchmark(true/false): sets it */
static int l_cudnn_benchmark(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TBOOLEAN);
        av_cudnn_set_benchmark(lua_toboolean(L, 1));
    }
    lua_pushboolean(L, av_cudnn_get_benchmark());
    return 1;
}

void lav_open_cuda(lua_State *L, int mod, int methods) {
    static const luaL_Reg mod_fns[] = {
        {"_cuda_is_available", l_is_available}, {"_cuda_synchronize", l_synchronize},
        {"_cuda_memory_stats", l_memory_stats}, {"_cuda_empty_cache", l_empty_cache},
        {"_cuda_reset_peak_memory_stats", l_reset_peak}, {"_cuda_set_device", l_set_device},
        {"_cuda_current_device", l_current_device}, {"_cudnn_benchmark", l_cudnn_benchmark}, {NULL, NULL}};
    static const luaL_Reg meth[] = {{"cuda", m_cuda}, {"cpu", m_cpu}, {"is_cuda", m_is_cuda},
                                    {"device", m_device}, {"to", lav_tensor_to}, {"pin_memory", m_pin_memory},
                                    {"is_pinned", m_is_pinned}, {NULL, NULL}};
    lav_setfuncs(L, mod, mod_fns);
    lav_setfuncs(L, methods, meth);
}
