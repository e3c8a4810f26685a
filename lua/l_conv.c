/* Convolution from Lua, as torch.nn.functional.conv2d and torch.nn.grad:
 *   av.conv2d(input, weight [, bias] [, {stride=1, padding=0, dilation=1, groups=1}])
 *   av.conv2d_input(input_size, weight, grad_output [, opts])   -> gradient of the input
 *   av.conv2d_weight(input, weight_size, grad_output [, opts])  -> gradient of the weight
 * stride, padding and dilation are an integer or a pair {h, w}; padding may
 * also be 'same' (stride 1; the odd extra row/column goes at the end, as in
 * PyTorch) or 'valid' (0). The input is N x C x H x W, or C x H x W
 * (unbatched: the result is 3-d too). conv2d_input and conv2d_weight are not
 * recorded by autograd.
 *   av.conv2d_algorithm([name]) -> the CPU algorithm before the call; name sets it:
 *   'auto' (time both on the first call of a shape), 'im2col' or 'onednn'. */
#include <string.h>
#include "binding.h"
#include "aviary/conv.h"

static const char *const conv_keys[] = {"stride", "padding", "dilation", "groups", NULL};

/* the value at the top of the stack as an integer or a pair {h, w} (pops it) */
static void read_pair(lua_State *L, const char *key, int64_t v[2]) {
    int top = lua_gettop(L);
    if (lua_isinteger(L, top)) {
        v[0] = v[1] = lua_tointeger(L, top);
    } else if (lua_istable(L, top) && !lav_is_tensor(L, top) && luaL_len(L, top) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_geti(L, top, i + 1);
            if (!lua_isinteger(L, -1))
                lav_error(L, "option '%s': entry %d must be an integer, got %s", key, i + 1,
                          lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
            v[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    } else {
        lav_error(L, "option '%s' must be an integer or a table of 2 integers {h, w}, got %s", key,
                  lua_isnumber(L, top) ? "a non-integer number" : luaL_typename(L, top));
    }
    lua_pop(L, 1);
}

/* reads the options table at tbl (0: none) into a; the kernel size is needed for padding='same' */
static void read_args(lua_State *L, int tbl, int64_t wk_h, int64_t wk_w, av_conv2d_args *a) {
    *a = (av_conv2d_args){{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    if (!tbl) return;
    lav_check_keys(L, tbl, conv_keys);
    lua_getfield(L, tbl, "stride");
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else read_pair(L, "stride", a->stride);
    lua_getfield(L, tbl, "dilation");
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else read_pair(L, "dilation", a->dilation);
    lua_getfield(L, tbl, "groups");
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1))
            lav_error(L, "option 'groups' must be an integer, got %s",
                      lua_isnumber(L, -1) ? "a non-integer number" : luaL_typename(L, -1));
        a->groups = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, tbl, "padding");
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (!strcmp(s, "same")) {
            if (a->stride[0] != 1 || a->stride[1] != 1)
                lav_error(L, "padding='same' is not supported for strided convolutions (stride {%lld, %lld})",
                          (long long)a->stride[0], (long long)a->stride[1]);
            const int64_t k[2] = {wk_h, wk_w};
            for (int d = 0; d < 2; d++) {
                int64_t total = a->dilation[d] * (k[d] - 1);
                if (total < 0) total = 0;
                a->pad_begin[d] = total / 2;
                a->pad_end[d] = total - total / 2;
            }
        } else if (strcmp(s, "valid")) {
            lav_error(L, "option 'padding' must be an integer, a table of 2 integers, 'same' or 'valid', got '%s'", s);
        }
        lua_pop(L, 1);
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
    } else {
        read_pair(L, "padding", a->pad_begin);
        a->pad_end[0] = a->pad_begin[0];
        a->pad_end[1] = a->pad_begin[1];
    }
}

/* kernel sizes of a weight for 'same' (0 when it is not 4-d: the C check reports that) */
static void kernel_of(const av_tensor *w, int64_t *kh, int64_t *kw) {
    *kh = w->ndim == 4 ? w->shape[2] : 1;
    *kw = w->ndim == 4 ? w->shape[3] : 1;
}

static int f_conv2d(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1), *w = lav_check_tensor(L, 2), *b = NULL;
    int o;
    if (lav_is_tensor(L, 3)) {
        b = lav_check_tensor(L, 3);
        o = lav_opts_at(L, 4);
        lav_no_args_after(L, 4);
    } else if (lua_isnoneornil(L, 3)) {
        o = lav_opts_at(L, 4);
        lav_no_args_after(L, 4);
    } else if (lua_istable(L, 3)) { /* conv2d(x, w, {stride = 2}): no bias */
        o = lav_opts_at(L, 3);
        lav_no_args_after(L, 3);
    } else {
        return lav_error(L, "expected a bias tensor, nil or an options table as argument 3, got %s",
                         luaL_typename(L, 3));
    }
    int64_t kh, kw;
    kernel_of(w, &kh, &kw);
    av_conv2d_args a;
    read_args(L, o, kh, kw, &a);
    return lav_push(L, av_conv2d_ex(x, w, b, &a));
}

static int read_size(lua_State *L, int idx, int64_t *shape) {
    if (!lua_istable(L, idx) || lav_is_tensor(L, idx))
        lav_error(L, "expected a size table as argument %d, got %s", idx, luaL_typename(L, idx));
    return lav_check_shape(L, idx, shape);
}

static int f_conv2d_input(lua_State *L) {
    int64_t s[AV_MAX_DIMS];
    int n = read_size(L, 1, s);
    av_tensor *w = lav_check_tensor(L, 2), *gy = lav_check_tensor(L, 3);
    int o = lav_opts_at(L, 4);
    lav_no_args_after(L, 4);
    int64_t kh, kw;
    kernel_of(w, &kh, &kw);
    av_conv2d_args a;
    read_args(L, o, kh, kw, &a);
    return lav_push(L, av_conv2d_input_grad(n, s, w, gy, &a));
}

static int f_conv2d_weight(lua_State *L) {
    av_tensor *x = lav_check_tensor(L, 1);
    int64_t s[AV_MAX_DIMS];
    int n = read_size(L, 2, s);
    av_tensor *gy = lav_check_tensor(L, 3);
    int o = lav_opts_at(L, 4);
    lav_no_args_after(L, 4);
    av_conv2d_args a;
    read_args(L, o, n == 4 ? s[2] : 1, n == 4 ? s[3] : 1, &a);
    return lav_push(L, av_conv2d_weight_grad(x, n, s, gy, &a));
}

/* av.conv2d_algorithm([name]) -> the algorithm in effect before the call */
static int f_conv2d_algorithm(lua_State *L) {
    const char *before = av_conv2d_get_algorithm();
    if (!lua_isnoneornil(L, 1)) {
        if (lua_type(L, 1) != LUA_TSTRING)
            return lav_error(L, "expected an algorithm name ('auto', 'im2col' or 'onednn'), got %s", luaL_typename(L, 1));
        lav_check_rc(L, av_conv2d_set_algorithm(lua_tostring(L, 1)));
    }
    lua_pushstring(L, before);
    return 1;
}

void lav_open_conv(lua_State *L, int mod, int methods) {
    (void)methods;
    static const luaL_Reg fns[] = {{"conv2d", f_conv2d}, {"conv2d_input", f_conv2d_input},
                                   {"conv2d_weight", f_conv2d_weight},
                                   {"conv2d_algorithm", f_conv2d_algorithm}, {NULL, NULL}};
    lav_setfuncs(L, mod, fns);
}
