/* Mixed precision and the fused list updates from Lua, for aviary.amp and
 * aviary.optim. A separate entry point of the same library as aviary.core
 * (opened with package.loadlib by lua/aviary/amp.lua), so the core's
 * registration list stays as it is:
 *   set_autocast(dtype | nil, keep_low), get_autocast() -> dtype | nil, keep_low
 *   set_allow_tf32(bool), get_allow_tf32(), cudnn_version()
 *   sgd_step(params, grads, bufs | nil, lr, momentum, dampening, weight_decay, nesterov, maximize, first)
 *   adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs | nil, lr, beta1, beta2, eps,
 *             weight_decay, amsgrad, maximize, decoupled, step)
 *   unscale(grads, inv_scale) -> found_inf
 * Lists are Lua arrays of tensors of one length; one call is one launch per
 * 32 tensors on CUDA. */
#include <stdlib.h>
#include "binding.h"
#include "aviary/nn_ops.h"
#include "aviary/optim.h"
#ifdef AV_WITH_CUDA
#include "../runtime/ops/cuda/cuda_lib.h"
#endif

/* the tensors of the array at idx (n entries expected when n >= 0); a
 * userdata-owned buffer left on the stack keeps the array alive until return */
static av_tensor **check_list(lua_State *L, int idx, int *n, const char *what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    int len = (int)lua_rawlen(L, idx);
    if (*n >= 0 && len != *n) lav_error(L, "%s has %d entries, expected %d", what, len, *n);
    av_tensor **ts = lua_newuserdatauv(L, sizeof(av_tensor *) * (size_t)(len ? len : 1), 0);
    for (int i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        ts[i - 1] = lav_to_tensor(L, -1);
        if (!ts[i - 1]) lav_error(L, "%s[%d] is not a tensor", what, i);
        lua_pop(L, 1);
    }
    *n = len;
    return ts;
}

static int l_set_autocast(lua_State *L) {
    int dt = -1;
    if (!lua_isnoneornil(L, 1)) dt = lav_check_dtype_name(L, 1);
    lav_check_rc(L, av_autocast_set(dt, lua_toboolean(L, 2)));
    return 0;
}

static int l_get_autocast(lua_State *L) {
    bool keep = false;
    int dt = av_autocast_get(&keep);
    if (dt < 0) lua_pushnil(L);
    else lua_pushstring(L, av_dtype_name((av_dtype)dt));
    lua_pushboolean(L, keep);
    return 2;
}

static int l_set_allow_tf32(lua_State *L) {
#ifdef AV_WITH_CUDA
    av_cuda_set_allow_tf32(lua_toboolean(L, 1));
#endif
    return 0;
}

static int l_get_allow_tf32(lua_State *L) {
#ifdef AV_WITH_CUDA
    lua_pushboolean(L, av_cuda_get_allow_tf32());
#else
    lua_pushboolean(L, 0);
#endif
    return 1;
}

static int l_cudnn_version(lua_State *L) {
#ifdef AV_WITH_CUDA
    lua_pushinteger(L, av_cudnn_version());
#else
    lua_pushinteger(L, 0);
#endif
    return 1;
}

static int l_sgd_step(lua_State *L) {
    int n = -1;
    av_tensor **p = check_list(L, 1, &n, "params");
    av_tensor **g = check_list(L, 2, &n, "grads");
    av_tensor **b = lua_isnoneornil(L, 3) ? NULL : check_list(L, 3, &n, "momentum buffers");
    av_sgd_opts o = {
        .lr = luaL_checknumber(L, 4), .momentum = luaL_checknumber(L, 5), .dampening = luaL_checknumber(L, 6),
        .weight_decay = luaL_checknumber(L, 7), .nesterov = lua_toboolean(L, 8), .maximize = lua_toboolean(L, 9),
        .first = lua_toboolean(L, 10),
    };
    if (o.momentum != 0 && !b) return lav_error(L, "momentum buffers are required with momentum");
    lav_check_rc(L, av_sgd_step_multi_(n, p, g, b, &o));
    return 0;
}

static int l_adam_step(lua_State *L) {
    int n = -1;
    av_tensor **p = check_list(L, 1, &n, "params");
    av_tensor **g = check_list(L, 2, &n, "grads");
    av_tensor **m = check_list(L, 3, &n, "exp_avgs");
    av_tensor **v = check_list(L, 4, &n, "exp_avg_sqs");
    av_tensor **vm = lua_isnoneornil(L, 5) ? NULL : check_list(L, 5, &n, "max_exp_avg_sqs");
    av_adam_opts o = {
        .lr = luaL_checknumber(L, 6), .beta1 = luaL_checknumber(L, 7), .beta2 = luaL_checknumber(L, 8),
        .eps = luaL_checknumber(L, 9), .weight_decay = luaL_checknumber(L, 10), .amsgrad = lua_toboolean(L, 11),
        .maximize = lua_toboolean(L, 12), .decoupled = lua_toboolean(L, 13), .step = luaL_checkinteger(L, 14),
    };
    if (o.amsgrad && !vm) return lav_error(L, "max_exp_avg_sqs are required with amsgrad");
    lav_check_rc(L, av_adam_step_multi_(n, p, g, m, v, vm, &o));
    return 0;
}

static int l_unscale(lua_State *L) {
    int n = -1;
    av_tensor **g = check_list(L, 1, &n, "grads");
    bool found = false;
    lav_check_rc(L, av_amp_unscale_(n, g, luaL_checknumber(L, 2), &found));
    lua_pushboolean(L, found);
    return 1;
}

int luaopen_aviary_amp_core(lua_State *L);
int luaopen_aviary_amp_core(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"set_autocast", l_set_autocast},     {"get_autocast", l_get_autocast},
        {"set_allow_tf32", l_set_allow_tf32}, {"get_allow_tf32", l_get_allow_tf32},
        {"cudnn_version", l_cudnn_version},   {"sgd_step", l_sgd_step},
        {"adam_step", l_adam_step},           {"unscale", l_unscale},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
