/* Matrix products from Lua. */
#include "binding.h"

static int f_mm(lua_State *L) { return lav_push(L, av_mm(lav_check_tensor(L, 1), lav_check_tensor(L, 2))); }
static int f_bmm(lua_State *L) { return lav_push(L, av_bmm(lav_check_tensor(L, 1), lav_check_tensor(L, 2))); }
static int f_matmul(lua_State *L) { return lav_push(L, av_matmul(lav_check_tensor(L, 1), lav_check_tensor(L, 2))); }
static int f_dot(lua_State *L) { return lav_push(L, av_dot(lav_check_tensor(L, 1), lav_check_tensor(L, 2))); }
/* addmm(c, a, b, {beta=1, alpha=1}) */
static int f_addmm(lua_State *L) {
    av_tensor *c = lav_check_tensor(L, 1), *a = lav_check_tensor(L, 2), *b = lav_check_tensor(L, 3);
    int o = lav_opts(L, 4);
    return lav_push(L, av_addmm(c, a, b, lav_opt_number(L, o, "beta", 1), lav_opt_number(L, o, "alpha", 1)));
}
/* mv as matmul of a matrix and a vector */
static int f_mv(lua_State *L) {
    av_tensor *a = lav_check_tensor(L, 1), *v = lav_check_tensor(L, 2);
    if (a->ndim != 2 || v->ndim != 1) lav_error(L, "expected a 2-d matrix and a 1-d vector");
    return lav_push(L, av_matmul(a, v));
}

void lav_open_linalg(lua_State *L, int mod, int methods) {
    static const luaL_Reg both[] = {{"mm", f_mm}, {"bmm", f_bmm}, {"matmul", f_matmul}, {"dot", f_dot},
                                    {"addmm", f_addmm}, {"mv", f_mv}, {NULL, NULL}};
    lav_setfuncs2(L, mod, methods, both);
}
