/* Autograd from Lua: requires_grad, backward, grad, hooks, grad mode. */
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/autograd.h"

/* the state that is running backward: hooks call Lua on it */
static _Thread_local lua_State *running_L;

static int m_requires_grad_(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    lav_check_rc(L, av_requires_grad_(x, on));
    lua_settop(L, 1);
    return 1;
}

static int m_detach(lua_State *L) { return lav_push(L, av_detach(lav_check_tensor(L, 1))); }

static int m_retain_grad(lua_State *L) {
    lav_check_rc(L, av_retain_grad(lav_check_tensor(L, 1)));
    return 0;
}

/* x:backward([grad], {retain_graph=false}) */
static int m_backward(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    av_tensor *g = lav_to_tensor(L, 2);
    int o = lav_opts(L, g ? 3 : 2);
    if (!g && !o && !lua_isnoneornil(L, 2))
        lav_error(L, "expected a gradient tensor or an options table as argument 2, got %s", luaL_typename(L, 2));
    bool retain = lav_opt_bool(L, o, "retain_graph", false);
    lua_State *prev = running_L;
    running_L = L;
    int rc = av_backward(x, g, retain);
    running_L = prev;
    lav_check_rc(L, rc);
    return 0;
}

/* reads a tensor or a list of tensors into an array owned by a userdata left
 * on the stack, so an error raised later frees it with the rest */
static av_tensor **tensor_list(lua_State *L, int idx, int *n, const char *what) {
    idx = lua_absindex(L, idx);
    int len = lav_is_tensor(L, idx) ? 1 : -1;
    if (len < 0) {
        if (!lua_istable(L, idx)) lav_error(L, "expected a tensor or a list of tensors for %s, got %s", what, luaL_typename(L, idx));
        len = (int)luaL_len(L, idx);
    }
    av_tensor **v = lua_newuserdatauv(L, sizeof *v * (len ? len : 1), 0);
    if (lav_is_tensor(L, idx)) v[0] = lav_check_tensor(L, idx);
    else
        for (int i = 0; i < len; i++) {
            lua_geti(L, idx, i + 1);
            v[i] = lav_to_tensor(L, -1);
            if (!v[i]) lav_error(L, "%s[%d] is %s, expected a tensor", what, i + 1, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    *n = len;
    return v;
}

/* av.grad(outputs, inputs, {grad_outputs=, retain_graph=false, allow_unused=false}) -> {grads} */
static int f_grad(lua_State *L) {
    int n_out, n_in, n_g = 0;
    int o = lav_opts(L, 3);
    av_tensor **outs = tensor_list(L, 1, &n_out, "outputs");
    av_tensor **ins = tensor_list(L, 2, &n_in, "inputs");
    av_tensor **gouts = NULL;
    if (o) {
        lua_getfield(L, o, "grad_outputs");
        if (!lua_isnil(L, -1)) gouts = tensor_list(L, lua_gettop(L), &n_g, "grad_outputs");
    }
    bool retain = lav_opt_bool(L, o, "retain_graph", false), unused = lav_opt_bool(L, o, "allow_unused", false);
    if (gouts && n_g != n_out) return lav_error(L, "got %d grad_outputs for %d outputs", n_g, n_out);
    av_tensor **res = lua_newuserdatauv(L, sizeof *res * (n_in ? n_in : 1), 0);
    lua_State *prev = running_L;
    running_L = L;
    int rc = av_autograd_grad(n_out, outs, gouts, n_in, ins, retain, unused, res);
    running_L = prev;
    lav_check_rc(L, rc);
    lua_createtable(L, n_in, 0);
    for (int i = 0; i < n_in; i++) {
        if (res[i]) lav_push(L, res[i]);
        else lua_pushboolean(L, 0); /* unused input: false keeps the list dense */
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ---- hooks ---------------------------------------------------------------------- */
typedef struct { lua_State *main; int ref; } hook_ctx;

static int call_hook(void *vctx, const av_tensor *grad, av_tensor **replacement) {
    hook_ctx *c = vctx;
    lua_State *L = running_L ? running_L : c->main;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lav_push(L, av_retain((av_tensor *)grad));
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        av_fail("hook raised an error: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    av_tensor *r = lav_to_tensor(L, -1);
    if (r) *replacement = av_retain(r);
    else if (!lua_isnil(L, -1)) {
        av_fail("hook must return nil or a tensor, got %s", luaL_typename(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_settop(L, top);
    return 0;
}

static void free_hook(void *vctx) {
    hook_ctx *c = vctx;
    luaL_unref(c->main, LUA_REGISTRYINDEX, c->ref);
    free(c);
}

static int handle_remove(lua_State *L) {
    lua_getfield(L, 1, "_tensor");
    av_tensor *x = lav_to_tensor(L, -1);
    lua_getfield(L, 1, "_id");
    int id = (int)lua_tointeger(L, -1);
    if (x && id > 0) av_remove_hook(x, id);
    lua_pushinteger(L, 0);
    lua_setfield(L, 1, "_id");
    return 0;
}

/* x:register_hook(fn) -> handle with handle:remove() */
static int m_register_hook(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    hook_ctx *c = malloc(sizeof *c);
    if (!c) return lav_error(L, "out of memory");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int id = av_register_hook(x, call_hook, c, free_hook);
    if (id < 0) {
        free_hook(c);
        lav_check_rc(L, -1);
    }
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "_tensor");
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "_id");
    lua_pushcfunction(L, handle_remove);
    lua_setfield(L, -2, "remove");
    return 1;
}

/* ---- grad mode ---------------------------------------------------------------------- */
static int f_set_grad_enabled(lua_State *L) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    av_set_grad_enabled(lua_toboolean(L, 1));
    return 0;
}
static int f_is_grad_enabled(lua_State *L) {
    lua_pushboolean(L, av_grad_enabled());
    return 1;
}

/* properties read through x.name: requires_grad, grad, grad_fn, is_leaf */
int lav_autograd_property(lua_State *L, av_tensor *x, const char *k) {
    if (!strcmp(k, "requires_grad")) { lua_pushboolean(L, av_requires_grad(x)); return 1; }
    if (!strcmp(k, "is_leaf")) { lua_pushboolean(L, av_is_leaf(x)); return 1; }
    if (!strcmp(k, "grad_fn")) {
        const char *n = av_grad_fn_name(x);
        if (n) lua_pushstring(L, n); else lua_pushnil(L);
        return 1;
    }
    if (!strcmp(k, "grad")) {
        av_tensor *g = av_get_grad(x);
        if (g) lav_push(L, av_retain(g)); else lua_pushnil(L);
        return 1;
    }
    return 0;
}

/* x.grad = tensor | nil ; x.requires_grad = bool */
int lav_autograd_setproperty(lua_State *L, av_tensor *x, const char *k, int v) {
    if (!strcmp(k, "grad")) {
        av_tensor *g = lav_to_tensor(L, v);
        if (!g && !lua_isnil(L, v)) lav_error(L, "grad must be a tensor or nil, got %s", luaL_typename(L, v));
        lav_check_rc(L, av_set_grad(x, g));
        return 1;
    }
    if (!strcmp(k, "requires_grad")) {
        lav_check_rc(L, av_requires_grad_(x, lua_toboolean(L, v)));
        return 1;
    }
    return 0;
}

/* av._attr.set_relu_grad_mode(mode) -> previous mode; av._attr.get_relu_grad_mode() -> mode
 * (0 normal, 1 guided backpropagation, 2 deconvolution; for aviary.interpret) */
static int f_set_relu_grad_mode(lua_State *L) {
    int prev = av_set_relu_grad_mode((int)luaL_checkinteger(L, 1));
    lav_check_rc(L, prev < 0 ? -1 : 0);
    lua_pushinteger(L, prev);
    return 1;
}
static int f_get_relu_grad_mode(lua_State *L) {
    lua_pushinteger(L, av_get_relu_grad_mode());
    return 1;
}

void lav_open_autograd(lua_State *L, int mod, int methods) {
    static const luaL_Reg meth[] = {{"requires_grad_", m_requires_grad_}, {"detach", m_detach},
                                    {"retain_grad", m_retain_grad}, {"backward", m_backward},
                                    {"register_hook", m_register_hook}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"grad", f_grad}, {"set_grad_enabled", f_set_grad_enabled},
                                   {"is_grad_enabled", f_is_grad_enabled}, {"detach", m_detach}, {NULL, NULL}};
    lav_setfuncs(L, methods, meth);
    lav_setfuncs(L, mod, fns);
    static const luaL_Reg attr[] = {{"set_relu_grad_mode", f_set_relu_grad_mode},
                                    {"get_relu_grad_mode", f_get_relu_grad_mode}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, attr, 0);
    lua_setfield(L, mod, "_attr");
}
