/* Fused optimizer updates from Lua, in a private table (av._optim) that
 * aviary.optim calls:
 *   av._optim.sgd_step(p, grad, buf | nil, lr, momentum, dampening, weight_decay, nesterov, maximize, first) */
#include "binding.h"
#include "aviary/optim.h"

static int l_sgd_step(lua_State *L) {
    av_tensor *p = lav_check_tensor(L, 1);
    av_tensor *g = lav_check_tensor(L, 2);
    av_tensor *buf = lua_isnoneornil(L, 3) ? NULL : lav_check_tensor(L, 3);
    av_sgd_opts o = {
        .lr = luaL_checknumber(L, 4), .momentum = luaL_checknumber(L, 5), .dampening = luaL_checknumber(L, 6),
        .weight_decay = luaL_checknumber(L, 7), .nesterov = lua_toboolean(L, 8), .maximize = lua_toboolean(L, 9),
        .first = lua_toboolean(L, 10),
    };
    lav_check_rc(L, av_sgd_step_(p, g, buf, &o));
    return 0;
}

void lav_open_optim(lua_State *L, int mod, int methods) {
    (void)methods;
    static const luaL_Reg fns[] = {{"sgd_step", l_sgd_step}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, mod, "_optim");
}
