/* aviary._draw: drawing on canvases (runtime/image/draw.c), for the synthetic
 * dataset generator and for figures. The user module is lua/aviary/draw.lua.
 *
 *   local c = av._draw.canvas(w, h [, channels = 3 [, color]])
 *   local c = av._draw.from_tensor(t)       -- uint8 C x H x W (or H x W), or float in [0, 1]
 *   c:ellipse(cx, cy, rx, ry, angle, {r, g, b} [, alpha]) ... c:tensor() -> uint8 C x H x W
 *
 * A Canvas is a userdata owning an interleaved H x W x C av_image. Coordinates
 * are continuous and 0-based from the top-left corner of the image (pixel
 * column i covers [i, i+1)), as in PIL and cairo; see aviary/draw.h. Colours
 * are {r, g, b} tables of 0..255 or one number (gray); alpha is 0..1. */
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/draw.h"
#include "aviary/image.h"
#include "aviary/autograd.h"

#define LAV_CANVAS_MT "aviary.Canvas"

/* the codec is another file of the runtime; the canvas works without it */
#pragma weak av_image_save
#pragma weak av_image_load

typedef struct {
    av_image im; /* data owned (malloc), NULL once closed */
} lav_canvas;

/* the user-visible name of the running function, for errors */
__attribute__((noreturn, format(printf, 2, 3))) static int cerror(lua_State *L, const char *fmt, ...) {
    char buf[1024], name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) {
        if (ar.namewhat && !strcmp(ar.namewhat, "method")) snprintf(name, sizeof name, "Canvas:%s", ar.name);
        else snprintf(name, sizeof name, "aviary._draw.%s", ar.name);
    } else snprintf(name, sizeof name, "aviary._draw");
    luaL_error(L, "%s: %s", name, buf);
    abort(); /* luaL_error does not return */
}

static void check_rc(lua_State *L, int rc) {
    if (rc) cerror(L, "%s", av_last_error());
}

static lav_canvas *push_canvas(lua_State *L, int w, int h, int c) {
    if (w <= 0 || h <= 0 || w > 1 << 15 || h > 1 << 15) cerror(L, "canvas size must be in 1..32768, got %dx%d", w, h);
    if (c != 1 && c != 3 && c != 4) cerror(L, "channels must be 1, 3 or 4, got %d", c);
    lav_canvas *cv = lua_newuserdatauv(L, sizeof *cv, 0);
    memset(cv, 0, sizeof *cv);
    luaL_setmetatable(L, LAV_CANVAS_MT);
    cv->im.data = calloc((size_t)w * h * c, 1);
    if (!cv->im.data) cerror(L, "out of memory for a %dx%dx%d canvas", w, h, c);
    cv->im.w = w, cv->im.h = h, cv->im.c = c;
    return cv;
}

static av_image *check_canvas(lua_State *L, int idx) {
    lav_canvas *cv = luaL_testudata(L, idx, LAV_CANVAS_MT);
    if (!cv) cerror(L, "expected a Canvas as argument %d, got %s", idx, luaL_typename(L, idx));
    if (!cv->im.data) cerror(L, "argument %d is a Canvas that has been closed", idx);
    return &cv->im;
}

static int check_int(lua_State *L, int idx, const char *what) {
    if (!lua_isinteger(L, idx)) {
        if (lua_type(L, idx) == LUA_TNUMBER) {
            lua_Number v = lua_tonumber(L, idx);
            if (v == (lua_Number)(long long)v) return (int)v;
        }
        cerror(L, "%s (argument %d) must be an integer, got %s", what, idx, luaL_typename(L, idx));
    }
    return (int)lua_tointeger(L, idx);
}

static double check_num(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        cerror(L, "%s (argument %d) must be a number, got %s", what, idx, luaL_typename(L, idx));
    return lua_tonumber(L, idx);
}

static double opt_num(lua_State *L, int idx, const char *what, double def) {
    return lua_isnoneornil(L, idx) ? def : check_num(L, idx, what);
}

static uint8_t chan(lua_State *L, double v, int idx) {
    if (!(v >= 0 && v <= 255)) cerror(L, "colour (argument %d) components must be in 0..255, got %g", idx, v);
    return (uint8_t)(v + 0.5);
}

static av_rgb check_color(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        uint8_t g = chan(L, lua_tonumber(L, idx), idx);
        return (av_rgb){g, g, g};
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        cerror(L, "colour (argument %d) must be {r, g, b} (0..255) or a gray level, got %s", idx,
               luaL_typename(L, idx));
    double v[3];
    for (int k = 0; k < 3; k++) {
        lua_geti(L, idx, k + 1);
        if (lua_type(L, -1) != LUA_TNUMBER) cerror(L, "colour (argument %d) must be {r, g, b} with numbers 0..255", idx);
        v[k] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return (av_rgb){chan(L, v[0], idx), chan(L, v[1], idx), chan(L, v[2], idx)};
}

/* ---- construction and conversion ------------------------------------------------- */
static int l_canvas(lua_State *L) {
    int w = check_int(L, 1, "width"), h = check_int(L, 2, "height");
    int c = lua_isnoneornil(L, 3) ? 3 : check_int(L, 3, "channels");
    int fill = !lua_isnoneornil(L, 4);
    av_rgb col = fill ? check_color(L, 4) : (av_rgb){0, 0, 0};
    lua_settop(L, 3);
    lav_canvas *cv = push_canvas(L, w, h, c);
    if (fill) check_rc(L, av_draw_fill(&cv->im, col));
    return 1;
}

/* reads element (k, y, x) of a C x H x W tensor (or (y, x) of H x W) as 0..255 */
static int tensor_dims(lua_State *L, const av_tensor *t, int idx, int *c, int *h, int *w) {
    if (t->storage->device.type != AV_CPU) cerror(L, "argument %d must be a CPU tensor", idx);
    if (t->ndim == 2) *c = 1, *h = (int)t->shape[0], *w = (int)t->shape[1];
    else if (t->ndim == 3) *c = (int)t->shape[0], *h = (int)t->shape[1], *w = (int)t->shape[2];
    else cerror(L, "argument %d must be an image tensor C x H x W or H x W, got %d dims", idx, t->ndim);
    if (*c != 1 && *c != 3 && *c != 4) cerror(L, "argument %d must have 1, 3 or 4 channels, got %d", idx, *c);
    if (t->dtype != AV_U8 && !av_dtype_is_float(t->dtype))
        cerror(L, "argument %d must be a uint8 tensor (0..255) or a float tensor (0..1), got %s", idx,
               av_dtype_name(t->dtype));
    return t->ndim;
}

static void tensor_to_image(const av_tensor *t, av_image *im) {
    int off = t->ndim == 3 ? 1 : 0;
    int64_t sc = t->ndim == 3 ? t->stride[0] : 0, sy = t->stride[off], sx = t->stride[off + 1];
    size_t es = av_dtype_size(t->dtype);
    const char *base = av_data(t);
    for (int k = 0; k < im->c; k++)
        for (int y = 0; y < im->h; y++)
            for (int x = 0; x < im->w; x++) {
                const char *p = base + (k * sc + y * sy + x * sx) * (int64_t)es;
                uint8_t v;
                if (t->dtype == AV_U8) v = *(const uint8_t *)p;
                else {
                    double d = av_load_elem(t->dtype, p) * 255.0;
                    v = d <= 0 || d != d ? 0 : d >= 255 ? 255 : (uint8_t)(d + 0.5);
                }
                im->data[((size_t)y * im->w + x) * im->c + k] = v;
            }
}

static int l_from_tensor(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    int c, h, w;
    tensor_dims(L, t, 1, &c, &h, &w);
    lav_canvas *cv = push_canvas(L, w, h, c);
    tensor_to_image(t, &cv->im);
    return 1;
}

static int c_tensor(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    int64_t shape[3] = {im->c, im->h, im->w};
    av_tensor *t = av_empty(3, shape, AV_U8);
    if (!t) check_rc(L, -1);
    uint8_t *d = av_data(t);
    size_t plane = (size_t)im->w * im->h;
    for (int k = 0; k < im->c; k++)
        for (size_t q = 0; q < plane; q++) d[k * plane + q] = im->data[q * im->c + k];
    return lav_push(L, t);
}

/* c:write(t): copies the canvas into an existing uint8 tensor of the same size (in place) */
static int c_write(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    av_tensor *t = lav_check_tensor(L, 2);
    int c, h, w;
    tensor_dims(L, t, 2, &c, &h, &w);
    if (t->dtype != AV_U8) cerror(L, "argument 2 must be a uint8 tensor");
    if (c != im->c || h != im->h || w != im->w)
        cerror(L, "tensor is %dx%dx%d but the canvas is %dx%dx%d", c, h, w, im->c, im->h, im->w);
    int off = t->ndim == 3 ? 1 : 0;
    int64_t sc = t->ndim == 3 ? t->stride[0] : 0, sy = t->stride[off], sx = t->stride[off + 1];
    uint8_t *base = av_data(t);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) base[k * sc + y * sy + x * sx] = im->data[((size_t)y * w + x) * c + k];
    av_bump_version(t);
    lua_settop(L, 2);
    return 1;
}

static int c_clone(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    lav_canvas *cv = push_canvas(L, im->w, im->h, im->c);
    memcpy(cv->im.data, im->data, (size_t)im->w * im->h * im->c);
    return 1;
}

/* c:to_gray(): a new 1-channel canvas of the luma */
static int c_to_gray(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    lav_canvas *cv = push_canvas(L, im->w, im->h, 1);
    check_rc(L, av_draw_paste(&cv->im, im, 0, 0, 1.0));
    return 1;
}

static int c_size(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    lua_pushinteger(L, im->w);
    lua_pushinteger(L, im->h);
    lua_pushinteger(L, im->c);
    return 3;
}

static int c_save(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int q = lua_isnoneornil(L, 3) ? 90 : check_int(L, 3, "quality");
    if (!av_image_save) cerror(L, "this build has no image codec (runtime/image/codec.c)");
    check_rc(L, av_image_save(im, path, q));
    return 0;
}

static int c_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (!av_image_load) cerror(L, "this build has no image codec (runtime/image/codec.c)");
    av_decode_opts o;
    memset(&o, 0, sizeof o);
    o.want_channels = 0;
    av_image *src = av_image_load(path, &o);
    if (!src) check_rc(L, -1);
    lav_canvas *cv = lua_newuserdatauv(L, sizeof *cv, 0);
    memset(cv, 0, sizeof *cv);
    luaL_setmetatable(L, LAV_CANVAS_MT);
    cv->im.data = malloc((size_t)src->w * src->h * src->c);
    if (!cv->im.data) {
        av_image_free(src);
        cerror(L, "out of memory");
    }
    memcpy(cv->im.data, src->data, (size_t)src->w * src->h * src->c);
    cv->im.w = src->w, cv->im.h = src->h, cv->im.c = src->c;
    av_image_free(src);
    return 1;
}
#pragma weak av_image_free

static int c_gc(lua_State *L) {
    lav_canvas *cv = luaL_checkudata(L, 1, LAV_CANVAS_MT);
    free(cv->im.data);
    cv->im.data = NULL;
    return 0;
}

static int c_tostring(lua_State *L) {
    lav_canvas *cv = luaL_checkudata(L, 1, LAV_CANVAS_MT);
    if (!cv->im.data) lua_pushstring(L, "Canvas (closed)");
    else lua_pushfstring(L, "Canvas %dx%d, %d channel%s", cv->im.w, cv->im.h, cv->im.c, cv->im.c > 1 ? "s" : "");
    return 1;
}

/* ---- drawing ------------------------------------------------------------------------ */
static double alpha_at(lua_State *L, int idx) {
    double a = opt_num(L, idx, "alpha", 1.0);
    if (!(a >= 0 && a <= 1)) cerror(L, "alpha (argument %d) must be in [0, 1], got %g", idx, a);
    return a;
}

static int c_fill(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    check_rc(L, av_draw_fill(im, check_color(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int c_rect(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    check_rc(L, av_draw_rect(im, check_num(L, 2, "x"), check_num(L, 3, "y"), check_num(L, 4, "w"),
                             check_num(L, 5, "h"), check_color(L, 6), alpha_at(L, 7)));
    lua_settop(L, 1);
    return 1;
}

/* c:box(x, y, w, h, color [, width = 1 [, alpha]]) */
static int c_box(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    int width = lua_isnoneornil(L, 7) ? 1 : check_int(L, 7, "width");
    check_rc(L, av_draw_box(im, check_int(L, 2, "x"), check_int(L, 3, "y"), check_int(L, 4, "w"),
                            check_int(L, 5, "h"), width, check_color(L, 6), alpha_at(L, 8)));
    lua_settop(L, 1);
    return 1;
}

/* c:ellipse(cx, cy, rx, ry, angle, color [, alpha]) */
static int c_ellipse(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    check_rc(L, av_draw_ellipse(im, check_num(L, 2, "cx"), check_num(L, 3, "cy"), check_num(L, 4, "rx"),
                                check_num(L, 5, "ry"), opt_num(L, 6, "angle", 0), check_color(L, 7),
                                alpha_at(L, 8)));
    lua_settop(L, 1);
    return 1;
}

/* points: {x1, y1, x2, y2, ...} or {{x1, y1, ...}, {...}} (contours). Returns the
 * coordinates in a userdata scratch (freed by the GC) */
static double *read_points(lua_State *L, int idx, int **counts, int *ncont, int *npts) {
    if (lua_type(L, idx) != LUA_TTABLE) cerror(L, "points (argument %d) must be a table, got %s", idx, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    lua_geti(L, idx, 1);
    int nested = lua_type(L, -1) == LUA_TTABLE;
    lua_pop(L, 1);
    int nc = nested ? (int)n : 1;
    lua_Integer total = 0;
    for (int k = 0; k < nc; k++) {
        lua_Integer m = n;
        if (nested) {
            lua_geti(L, idx, k + 1);
            if (lua_type(L, -1) != LUA_TTABLE) cerror(L, "points (argument %d): contour %d is not a table", idx, k + 1);
            m = luaL_len(L, -1);
            lua_pop(L, 1);
        }
        if (m % 2) cerror(L, "points (argument %d): contour %d has an odd number of coordinates (%d)", idx, k + 1, (int)m);
        total += m;
    }
    int *cnt = lua_newuserdatauv(L, sizeof(int) * (size_t)(nc ? nc : 1), 0);
    double *xy = lua_newuserdatauv(L, sizeof(double) * (size_t)(total ? total : 1), 0);
    lua_Integer pos = 0;
    for (int k = 0; k < nc; k++) {
        int t = idx;
        if (nested) {
            lua_geti(L, idx, k + 1);
            t = lua_gettop(L);
        }
        lua_Integer m = luaL_len(L, t);
        for (lua_Integer i = 1; i <= m; i++) {
            lua_geti(L, t, i);
            if (lua_type(L, -1) != LUA_TNUMBER) cerror(L, "points (argument %d): coordinate %d is not a number", idx, (int)i);
            xy[pos++] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        cnt[k] = (int)(m / 2);
        if (nested) lua_pop(L, 1);
    }
    *counts = cnt, *ncont = nc, *npts = (int)(total / 2);
    return xy;
}

/* c:polygon(points, color [, alpha [, rule = "nonzero" | "evenodd"]]) */
static int c_polygon(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    av_rgb col = check_color(L, 3);
    double a = alpha_at(L, 4);
    const char *rule = luaL_optstring(L, 5, "nonzero");
    av_fill_rule r;
    if (!strcmp(rule, "nonzero")) r = AV_FILL_NONZERO;
    else if (!strcmp(rule, "evenodd")) r = AV_FILL_EVENODD;
    else return cerror(L, "rule must be \"nonzero\" or \"evenodd\", got \"%s\"", rule);
    int *counts, nc, np;
    double *xy = read_points(L, 2, &counts, &nc, &np);
    check_rc(L, av_draw_polygon(im, xy, counts, nc, r, col, a));
    lua_settop(L, 1);
    return 1;
}

/* c:line(points, width, color [, alpha]) */
static int c_line(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    double w = check_num(L, 3, "width");
    av_rgb col = check_color(L, 4);
    double a = alpha_at(L, 5);
    int *counts, nc, np;
    double *xy = read_points(L, 2, &counts, &nc, &np);
    if (nc != 1) cerror(L, "points (argument 2) must be one flat list {x1, y1, x2, y2, ...}");
    check_rc(L, av_draw_line(im, xy, np, w, col, a));
    lua_settop(L, 1);
    return 1;
}

/* c:gradient(x0, y0, x1, y1, color0, color1 [, alpha]) */
static int c_gradient(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    check_rc(L, av_draw_gradient(im, check_num(L, 2, "x0"), check_num(L, 3, "y0"), check_num(L, 4, "x1"),
                                 check_num(L, 5, "y1"), check_color(L, 6), check_color(L, 7), alpha_at(L, 8)));
    lua_settop(L, 1);
    return 1;
}

/* c:shade(x0, y0, x1, y1, gain0, gain1 [, {tr, tg, tb}]) */
static int c_shade(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    double tint[3], *tp = NULL;
    if (!lua_isnoneornil(L, 8)) {
        if (lua_type(L, 8) != LUA_TTABLE) cerror(L, "tint (argument 8) must be {r, g, b} factors, got %s", luaL_typename(L, 8));
        for (int k = 0; k < 3; k++) {
            lua_geti(L, 8, k + 1);
            if (lua_type(L, -1) != LUA_TNUMBER) cerror(L, "tint (argument 8) must be {r, g, b} factors");
            tint[k] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        tp = tint;
    }
    check_rc(L, av_draw_shade(im, check_num(L, 2, "x0"), check_num(L, 3, "y0"), check_num(L, 4, "x1"),
                              check_num(L, 5, "y1"), check_num(L, 6, "gain0"), check_num(L, 7, "gain1"), tp));
    lua_settop(L, 1);
    return 1;
}

/* c:noise(amplitude, seed [, mono = false]) */
static int c_noise(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    double amp = check_num(L, 2, "amplitude");
    lua_Integer seed = lua_isnoneornil(L, 3) ? 0 : check_int(L, 3, "seed");
    check_rc(L, av_draw_noise(im, amp, (uint64_t)seed, lua_toboolean(L, 4)));
    lua_settop(L, 1);
    return 1;
}

/* c:blur(sigma [, x, y, w, h]) */
static int c_blur(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    double s = check_num(L, 2, "sigma");
    int x = 0, y = 0, w = 0, h = 0;
    if (!lua_isnoneornil(L, 3)) {
        x = check_int(L, 3, "x"), y = check_int(L, 4, "y"), w = check_int(L, 5, "w"), h = check_int(L, 6, "h");
        if (w <= 0 || h <= 0) {
            lua_settop(L, 1);
            return 1;
        }
    }
    check_rc(L, av_draw_blur(im, s, x, y, w, h));
    lua_settop(L, 1);
    return 1;
}

static int c_grayscale(lua_State *L) {
    check_rc(L, av_draw_grayscale(check_canvas(L, 1)));
    lua_settop(L, 1);
    return 1;
}

/* c:paste(src, x, y [, alpha]): src a Canvas or an image tensor */
static int c_paste(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    int x = check_int(L, 3, "x"), y = check_int(L, 4, "y");
    double a = alpha_at(L, 5);
    if (lav_is_tensor(L, 2)) {
        av_tensor *t = lav_check_tensor(L, 2);
        int c, h, w;
        tensor_dims(L, t, 2, &c, &h, &w);
        lav_canvas *tmp = push_canvas(L, w, h, c);
        tensor_to_image(t, &tmp->im);
        check_rc(L, av_draw_paste(im, &tmp->im, x, y, a));
    } else {
        check_rc(L, av_draw_paste(im, check_canvas(L, 2), x, y, a));
    }
    lua_settop(L, 1);
    return 1;
}

/* c:text(x, y, str, color [, scale = 1 [, alpha]]) -> canvas, width, height */
static int c_text(lua_State *L) {
    av_image *im = check_canvas(L, 1);
    int x = check_int(L, 2, "x"), y = check_int(L, 3, "y");
    const char *s = luaL_checkstring(L, 4);
    av_rgb col = check_color(L, 5);
    int scale = lua_isnoneornil(L, 6) ? 1 : check_int(L, 6, "scale");
    check_rc(L, av_draw_text(im, x, y, s, scale, col, alpha_at(L, 7)));
    int w, h;
    av_draw_text_size(s, scale, &w, &h);
    lua_settop(L, 1);
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    return 3;
}

/* _draw.text_size(str [, scale]) -> w, h */
static int l_text_size(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    int scale = lua_isnoneornil(L, 2) ? 1 : check_int(L, 2, "scale");
    if (scale < 1) cerror(L, "scale must be at least 1, got %d", scale);
    int w, h;
    av_draw_text_size(s, scale, &w, &h);
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    return 2;
}

static const luaL_Reg canvas_methods[] = {
    {"fill", c_fill},       {"rect", c_rect},         {"box", c_box},         {"ellipse", c_ellipse},
    {"polygon", c_polygon}, {"line", c_line},         {"gradient", c_gradient}, {"shade", c_shade},
    {"noise", c_noise},     {"blur", c_blur},         {"grayscale", c_grayscale}, {"to_gray", c_to_gray},
    {"paste", c_paste},     {"text", c_text},         {"tensor", c_tensor},   {"write", c_write},
    {"clone", c_clone},     {"size", c_size},         {"save", c_save},       {"close", c_gc},
    {NULL, NULL}};

static const luaL_Reg draw_funcs[] = {
    {"canvas", l_canvas}, {"from_tensor", l_from_tensor}, {"load", c_load}, {"text_size", l_text_size}, {NULL, NULL}};

void lav_open_draw(lua_State *L, int mod, int methods) {
    (void)methods;
    if (luaL_newmetatable(L, LAV_CANVAS_MT)) {
        int mt = lua_gettop(L);
        lua_newtable(L);
        lav_setfuncs(L, lua_gettop(L), canvas_methods);
        lua_setfield(L, mt, "__index");
        lua_pushcfunction(L, c_gc);
        lua_setfield(L, mt, "__gc");
        lua_pushcfunction(L, c_gc);
        lua_setfield(L, mt, "__close");
        lua_pushcfunction(L, c_tostring);
        lua_setfield(L, mt, "__tostring");
        lua_pushstring(L, "aviary.Canvas");
        lua_setfield(L, mt, "__name");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    int t = lua_gettop(L);
    lav_setfuncs(L, t, draw_funcs);
    luaL_getmetatable(L, LAV_CANVAS_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, t, "Canvas"); /* the methods, for extension in Lua */
    lua_pop(L, 1);
    lua_setfield(L, mod, "_draw");
}
