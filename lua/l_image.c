/* av._image: the C side of aviary.image (lua/aviary/image.lua checks and documents).
 *
 * Lua-side images are uint8 tensors C x H x W (torchvision.io's layout); the
 * runtime's av_image is interleaved H x W x C, so every call converts at the
 * boundary. Pixel coordinates (crop's top/left) are 0-based offsets, as in
 * torchvision.transforms.functional.crop. Every argument is read before any
 * C image exists, so a Lua error cannot leak one. */
#include <string.h>
#include "binding.h"
#include "aviary/image.h"

/* raises "image.<fn>: <runtime message>" */
static int fail(lua_State *L, const char *fn) { return luaL_error(L, "image.%s: %s", fn, av_last_error()); }

static av_decode_opts read_decode_opts(lua_State *L, int idx, const char *fn) {
    av_decode_opts o = {0, 0, 0, 3};
    int t = lav_opts_at(L, idx);
    if (!t) return o;
    static const char *const keys[] = {"max_pixels", "min_size", "channels", NULL};
    lav_check_keys(L, t, keys);
    double mp = lav_opt_number(L, t, "max_pixels", 0);
    if (mp < 0) luaL_error(L, "image.%s: max_pixels must be >= 0", fn);
    o.max_pixels = (int64_t)mp;
    lua_getfield(L, t, "min_size");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) luaL_error(L, "image.%s: min_size must be a table {w, h}", fn);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (!lua_isinteger(L, -2) || !lua_isinteger(L, -1) || lua_tointeger(L, -2) < 0 || lua_tointeger(L, -1) < 0)
            luaL_error(L, "image.%s: min_size must be {w, h} with non-negative integers", fn);
        o.min_w = (int)lua_tointeger(L, -2);
        o.min_h = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    double ch = lav_opt_number(L, t, "channels", 3);
    if (ch != 0 && ch != 1 && ch != 3 && ch != 4) luaL_error(L, "image.%s: channels must be 0, 1, 3 or 4", fn);
    o.want_channels = (int)ch;
    return o;
}

/* pushes im as a uint8 C x H x W tensor and frees it */
static int push_image(lua_State *L, av_image *im, const char *fn) {
    if (!im) return fail(L, fn);
    av_tensor *t = av_image_to_u8_tensor(im);
    av_image_free(im);
    if (!t) return fail(L, fn);
    return lav_push(L, t);
}

/* checks argument idx is a CPU image tensor (uint8 C x H x W or H x W; float in [0, 1] when allow_float) */
static av_tensor *check_image_tensor(lua_State *L, int idx, const char *fn, int allow_float) {
    av_tensor *t = lav_to_tensor(L, idx);
    if (!t) luaL_error(L, "image.%s: expected an image tensor (uint8 C x H x W) as argument %d, got %s", fn, idx,
                       luaL_typename(L, idx));
    char b[64];
    if (t->dtype != AV_U8 && !(allow_float && (t->dtype == AV_F32 || t->dtype == AV_F64)))
        luaL_error(L, "image.%s: expected a uint8 image tensor%s, got %s", fn, allow_float ? " (or float in [0, 1])" : "",
                   av_dtype_name(t->dtype));
    if (t->storage->device.type != AV_CPU) luaL_error(L, "image.%s: the image tensor must be on the CPU", fn);
    if (!((t->ndim == 3 && (t->shape[0] == 1 || t->shape[0] == 3 || t->shape[0] == 4) && t->shape[1] > 0 &&
           t->shape[2] > 0) ||
          (t->ndim == 2 && t->shape[0] > 0 && t->shape[1] > 0)))
        luaL_error(L, "image.%s: expected an image tensor C x H x W with C = 1, 3 or 4, got %s", fn,
                   av_shape_str(t, b, sizeof b));
    return t;
}

static int check_int(lua_State *L, int idx, const char *fn, const char *what, int minv) {
    if (!lua_isinteger(L, idx)) {
        if (lua_isnumber(L, idx)) {
            lua_Number v = lua_tonumber(L, idx);
            if (v == (lua_Number)(lua_Integer)v) return (int)v;
        }
        luaL_error(L, "image.%s: %s (argument %d) must be an integer, got %s", fn, what, idx, luaL_typename(L, idx));
    }
    lua_Integer v = lua_tointeger(L, idx);
    if (v < minv || v > (1 << 30)) luaL_error(L, "image.%s: %s (argument %d) must be >= %d, got %d", fn, what, idx, minv, (int)v);
    return (int)v;
}

static av_interp read_interp(lua_State *L, int idx, const char *fn) {
    int t = lav_opts_at(L, idx);
    if (!t) return AV_INTERP_BILINEAR;
    static const char *const keys[] = {"interpolation", NULL};
    lav_check_keys(L, t, keys);
    lua_getfield(L, t, "interpolation");
    av_interp r = AV_INTERP_BILINEAR;
    if (!lua_isnil(L, -1)) {
        const char *s = lua_tostring(L, -1);
        if (s && !strcmp(s, "bilinear")) r = AV_INTERP_BILINEAR;
        else if (s && !strcmp(s, "bicubic")) r = AV_INTERP_BICUBIC;
        else if (s && !strcmp(s, "nearest")) r = AV_INTERP_NEAREST;
        else luaL_error(L, "image.%s: interpolation must be 'bilinear', 'bicubic' or 'nearest', got %s", fn,
                        s ? s : luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return r;
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    av_decode_opts o = read_decode_opts(L, 2, "load");
    return push_image(L, av_image_load(path, &o), "load");
}

static int l_decode(lua_State *L) {
    size_t n;
    const char *b = luaL_checklstring(L, 1, &n);
    av_decode_opts o = read_decode_opts(L, 2, "decode");
    const char *name = "<bytes>";
    return push_image(L, av_image_decode((const uint8_t *)b, n, &o, name), "decode");
}

static int l_probe(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int w, h, c;
    if (av_image_probe(path, &w, &h, &c) != 0) return fail(L, "probe");
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    lua_pushinteger(L, c);
    return 3;
}

static int l_save(lua_State *L) {
    av_tensor *t = check_image_tensor(L, 1, "save", 1);
    const char *path = luaL_checkstring(L, 2);
    int quality = 90;
    int o = lav_opts_at(L, 3);
    if (o) {
        static const char *const keys[] = {"quality", NULL};
        lav_check_keys(L, o, keys);
        double q = lav_opt_number(L, o, "quality", 90);
        if (q < 1 || q > 100 || q != (int)q) luaL_error(L, "image.save: quality must be an integer 1..100");
        quality = (int)q;
    }
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, "save");
    int rc = av_image_save(im, path, quality);
    av_image_free(im);
    if (rc != 0) return fail(L, "save");
    return 0;
}

static int l_resize(lua_State *L) {
    av_tensor *t = check_image_tensor(L, 1, "resize", 0);
    int h = check_int(L, 2, "resize", "height", 1), w = check_int(L, 3, "resize", "width", 1);
    av_interp ip = read_interp(L, 4, "resize");
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, "resize");
    av_image *r = av_image_resize(im, w, h, ip);
    av_image_free(im);
    return push_image(L, r, "resize");
}

static int l_crop(lua_State *L) {
    av_tensor *t = check_image_tensor(L, 1, "crop", 0);
    int top = check_int(L, 2, "crop", "top", -(1 << 30)), left = check_int(L, 3, "crop", "left", -(1 << 30));
    int h = check_int(L, 4, "crop", "height", 1), w = check_int(L, 5, "crop", "width", 1);
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, "crop");
    av_image *r = av_image_crop(im, left, top, w, h);
    av_image_free(im);
    return push_image(L, r, "crop");
}

static double check_num(lua_State *L, int idx, const char *fn, const char *what) {
    if (!lua_isnumber(L, idx)) luaL_error(L, "image.%s: %s (argument %d) must be a number, got %s", fn, what, idx, luaL_typename(L, idx));
    return lua_tonumber(L, idx);
}

/* resized_crop(t, top, left, h, w, out_h, out_w [, opts]): the box may be fractional */
static int l_resized_crop(lua_State *L) {
    av_tensor *t = check_image_tensor(L, 1, "resized_crop", 0);
    double top = check_num(L, 2, "resized_crop", "top"), left = check_num(L, 3, "resized_crop", "left");
    double h = check_num(L, 4, "resized_crop", "height"), w = check_num(L, 5, "resized_crop", "width");
    if (!(h > 0) || !(w > 0)) luaL_error(L, "image.resized_crop: the box height and width must be positive");
    int oh = check_int(L, 6, "resized_crop", "output height", 1), ow = check_int(L, 7, "resized_crop", "output width", 1);
    av_interp ip = read_interp(L, 8, "resized_crop");
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, "resized_crop");
    av_image *r = av_image_resized_crop(im, left, top, w, h, ow, oh, ip);
    av_image_free(im);
    return push_image(L, r, "resized_crop");
}

static int flip(lua_State *L, const char *fn, av_image *(*f)(const av_image *)) {
    av_tensor *t = check_image_tensor(L, 1, fn, 0);
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, fn);
    av_image *r = f(im);
    av_image_free(im);
    return push_image(L, r, fn);
}
static int l_hflip(lua_State *L) { return flip(L, "hflip", av_image_hflip); }
static int l_vflip(lua_State *L) { return flip(L, "vflip", av_image_vflip); }

static int read_floats(lua_State *L, int tbl, const char *key, float *out, int n) {
    lua_getfield(L, tbl, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "image.to_float: %s must be a table of numbers", key);
    int len = (int)lua_rawlen(L, -1);
    if (len != n) luaL_error(L, "image.to_float: %s needs %d values (one per channel), got %d", key, n, len);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "image.to_float: %s[%d] must be a number", key, i + 1);
        out[i] = (float)lua_tonumber(L, -1);
        if (!strcmp(key, "std") && out[i] == 0.f) luaL_error(L, "image.to_float: std[%d] is 0", i + 1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

static int l_to_float(lua_State *L) {
    av_tensor *t = check_image_tensor(L, 1, "to_float", 0);
    int C = t->ndim == 2 ? 1 : (int)t->shape[0];
    float mean[4] = {0, 0, 0, 0}, std[4] = {1, 1, 1, 1};
    int o = lav_opts_at(L, 2), hm = 0, hs = 0;
    if (o) {
        static const char *const keys[] = {"mean", "std", NULL};
        lav_check_keys(L, o, keys);
        hm = read_floats(L, o, "mean", mean, C);
        hs = read_floats(L, o, "std", std, C);
    }
    av_image *im = av_image_from_tensor(t, 1);
    if (!im) return fail(L, "to_float");
    av_tensor *r = av_image_to_tensor(im, hm ? mean : NULL, hs ? std : NULL);
    av_image_free(im);
    if (!r) return fail(L, "to_float");
    if (t->ndim == 2) { /* keep a gray H x W input's shape */
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        av_tensor *v = av_view(r, 2, shape);
        av_release(r);
        if (!v) return fail(L, "to_float");
        r = v;
    }
    return lav_push(L, r);
}

void lav_open_image(lua_State *L, int mod, int methods) {
    (void)methods;
    static const luaL_Reg fns[] = {
        {"load", l_load},   {"decode", l_decode}, {"probe", l_probe},   {"save", l_save},
        {"resize", l_resize}, {"crop", l_crop},   {"resized_crop", l_resized_crop},
        {"hflip", l_hflip}, {"vflip", l_vflip},   {"to_float", l_to_float}, {NULL, NULL}};
    lua_newtable(L);
    int tbl = lua_gettop(L);
    lav_setfuncs(L, tbl, fns);
    lua_setfield(L, mod, "_image");
}
