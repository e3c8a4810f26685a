/* aviary._infer: inference plans (runtime/ops/cpu/infer_dnnl.c, aviary/infer.h).
 * The user module is lua/aviary/inference.lua, which builds a plan from a
 * model's graph; these functions take plain arguments and value numbers as the
 * runtime gives them:
 *
 *   available() -> bool
 *   new() -> plan
 *   plan:input() -> v
 *   plan:conv(x, w, b|nil, stride{h,w}, pad_begin{h,w}, pad_end{h,w}, dilation{h,w}, groups, residual|nil, relu) -> v
 *   plan:pool(x, kind (0 max, 1 avg, 2 avg incl. padding), kernel{h,w} ({0,0}: global), stride, pad_begin, pad_end) -> v
 *   plan:add(a, b, relu) -> v
 *   plan:relu(x) -> v
 *   plan:clip(x, lo, hi) -> v
 *   plan:fuse_clip(v, lo, hi)      (v made by conv or add)
 *   plan:output(v)
 *   plan:run(x1, x2, ...) -> y1, y2, ...   (plain NCHW float32 tensors) */
#include <stdlib.h>
#include "binding.h"
#include "aviary/infer.h"

#define PLAN_MT "aviary.InferencePlan"

typedef struct { av_plan *p; } plan_ud;

static av_plan *check_plan(lua_State *L) {
    plan_ud *u = luaL_checkudata(L, 1, PLAN_MT);
    if (!u->p) luaL_error(L, "inference plan: the plan was freed");
    return u->p;
}

static int check_value(lua_State *L, int idx) { return (int)luaL_checkinteger(L, idx); }

static void check_pair(lua_State *L, int idx, const char *what, int64_t out[2]) {
    luaL_checktype(L, idx, LUA_TTABLE);
    for (int k = 0; k < 2; k++) {
        lua_geti(L, idx, k + 1);
        if (!lua_isinteger(L, -1)) luaL_error(L, "inference plan: %s must be a pair of integers", what);
        out[k] = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
}

static int push_value(lua_State *L, int v) {
    if (v < 0) return luaL_error(L, "%s", av_last_error());
    lua_pushinteger(L, v);
    return 1;
}

static int i_available(lua_State *L) {
    lua_pushboolean(L, av_plan_available());
    return 1;
}

static int i_new(lua_State *L) {
    plan_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->p = NULL; /* safe to collect before the plan exists */
    luaL_setmetatable(L, PLAN_MT);
    if (!(u->p = av_plan_new())) return luaL_error(L, "%s", av_last_error());
    return 1;
}

static int i_gc(lua_State *L) {
    plan_ud *u = luaL_checkudata(L, 1, PLAN_MT);
    av_plan_free(u->p);
    u->p = NULL;
    return 0;
}

static int i_input(lua_State *L) { return push_value(L, av_plan_input(check_plan(L))); }

static int i_conv(lua_State *L) {
    av_plan *p = check_plan(L);
    int x = check_value(L, 2);
    av_tensor *w = lav_check_tensor(L, 3);
    av_tensor *b = lua_isnoneornil(L, 4) ? NULL : lav_check_tensor(L, 4);
    int64_t st[2], pb[2], pe[2], dl[2];
    check_pair(L, 5, "stride", st);
    check_pair(L, 6, "pad_begin", pb);
    check_pair(L, 7, "pad_end", pe);
    check_pair(L, 8, "dilation", dl);
    int64_t groups = luaL_checkinteger(L, 9);
    int residual = lua_isnoneornil(L, 10) ? -1 : check_value(L, 10);
    bool relu = lua_toboolean(L, 11);
    return push_value(L, av_plan_conv(p, x, w, b, st, pb, pe, dl, groups, residual, relu));
}

static int i_pool(lua_State *L) {
    av_plan *p = check_plan(L);
    int x = check_value(L, 2);
    int kind = (int)luaL_checkinteger(L, 3);
    int64_t k[2], st[2], pb[2], pe[2];
    check_pair(L, 4, "kernel", k);
    check_pair(L, 5, "stride", st);
    check_pair(L, 6, "pad_begin", pb);
    check_pair(L, 7, "pad_end", pe);
    return push_value(L, av_plan_pool(p, x, kind, k, st, pb, pe));
}

static int i_add(lua_State *L) {
    av_plan *p = check_plan(L);
    return push_value(L, av_plan_add(p, check_value(L, 2), check_value(L, 3), lua_toboolean(L, 4)));
}

static int i_relu(lua_State *L) { return push_value(L, av_plan_relu(check_plan(L), check_value(L, 2))); }

static int i_clip(lua_State *L) {
    av_plan *p = check_plan(L);
    return push_value(L, av_plan_clip(p, check_value(L, 2), (float)luaL_checknumber(L, 3), (float)luaL_checknumber(L, 4)));
}

static int i_fuse_clip(lua_State *L) {
    av_plan *p = check_plan(L);
    if (av_plan_fuse_clip(p, check_value(L, 2), (float)luaL_checknumber(L, 3), (float)luaL_checknumber(L, 4)))
        return luaL_error(L, "%s", av_last_error());
    return 0;
}

static int i_output(lua_State *L) {
    if (av_plan_output(check_plan(L), check_value(L, 2))) return luaL_error(L, "%s", av_last_error());
    return 0;
}

static int i_run(lua_State *L) {
    av_plan *p = check_plan(L);
    int nin = lua_gettop(L) - 1;
    if (nin < 1 || nin > 8) return luaL_error(L, "inference plan: run takes 1 to 8 input tensors, got %d", nin);
    av_tensor *ins[8];
    for (int i = 0; i < nin; i++) ins[i] = lav_check_tensor(L, i + 2);
    int nout = av_plan_num_outputs(p);
    av_tensor **outs = calloc((size_t)(nout > 0 ? nout : 1), sizeof *outs);
    if (!outs) return luaL_error(L, "inference plan: out of memory");
    if (av_plan_run(p, nin, ins, nout, outs)) {
        free(outs);
        return luaL_error(L, "%s", av_last_error());
    }
    luaL_checkstack(L, nout, "inference plan outputs");
    for (int j = 0; j < nout; j++) lav_push(L, outs[j]); /* takes the reference */
    free(outs);
    return nout;
}

static const luaL_Reg plan_methods[] = {
    {"input", i_input}, {"conv", i_conv}, {"pool", i_pool}, {"add", i_add},
    {"relu", i_relu},   {"clip", i_clip},     {"fuse_clip", i_fuse_clip}, {"output", i_output},
    {"run", i_run},     {NULL, NULL},
};

static const luaL_Reg infer_funcs[] = {{"available", i_available}, {"new", i_new}, {NULL, NULL}};

void lav_open_infer(lua_State *L, int mod, int methods) {
    (void)methods;
    if (luaL_newmetatable(L, PLAN_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, plan_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, i_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lav_setfuncs(L, lua_gettop(L), infer_funcs);
    lua_setfield(L, mod, "_infer");
}
