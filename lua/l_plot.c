/* aviary._plot: a cairo drawing surface for the plotting library (lua/aviary/plot.lua),
 * over runtime/plot/surface.c.
 *
 *   local s = av._plot.new(w, h)
 *   s:set_source_rgba(r, g, b [, a]); s:move_to(x, y); s:line_to(x, y); s:stroke()
 *   s:select_font(bold, size) ; s:text_extents(str) -> width, height, x_bearing, y_bearing, x_advance
 *   s:paint_image(t, x, y, w, h [, "nearest" | "bilinear" [, alpha]])
 *   s:png() -> bytes ; s:save(path) ; s:tensor() -> uint8 3 x H x W
 *   av._plot.apply_colormap(t, table, vmin, vmax) -> uint8 3 x H x W (t: H x W numbers)
 *
 * Coordinates are pixels from the top-left corner (cairo's); colours are 0..1. */
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/surface.h"

#define LAV_SURFACE_MT "aviary.PlotSurface"

typedef struct {
    av_surface *s; /* NULL once closed */
} lav_surface;

__attribute__((noreturn, format(printf, 2, 3))) static int perror_(lua_State *L, const char *fmt, ...) {
    char buf[1024], name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) {
        if (ar.namewhat && !strcmp(ar.namewhat, "method")) snprintf(name, sizeof name, "PlotSurface:%s", ar.name);
        else snprintf(name, sizeof name, "aviary._plot.%s", ar.name);
    } else snprintf(name, sizeof name, "aviary._plot");
    luaL_error(L, "%s: %s", name, buf);
    abort();
}

static void check_rc(lua_State *L, int rc) {
    if (rc) perror_(L, "%s", av_last_error());
}

static av_surface *check_surface(lua_State *L, int idx) {
    lav_surface *u = luaL_testudata(L, idx, LAV_SURFACE_MT);
    if (!u) perror_(L, "expected a PlotSurface as argument %d, got %s", idx, luaL_typename(L, idx));
    if (!u->s) perror_(L, "argument %d is a PlotSurface that has been closed", idx);
    return u->s;
}

static double num(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        perror_(L, "%s (argument %d) must be a number, got %s", what, idx, luaL_typename(L, idx));
    return lua_tonumber(L, idx);
}

static int integer(lua_State *L, int idx, const char *what) {
    double v = num(L, idx, what);
    if (v != (double)(long long)v) perror_(L, "%s (argument %d) must be an integer, got %g", what, idx, v);
    return (int)v;
}

static int l_new(lua_State *L) {
    int w = integer(L, 1, "width"), h = integer(L, 2, "height");
    lav_surface *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, LAV_SURFACE_MT);
    u->s = av_surface_new(w, h);
    if (!u->s) check_rc(L, -1);
    return 1;
}

static int s_gc(lua_State *L) {
    lav_surface *u = luaL_checkudata(L, 1, LAV_SURFACE_MT);
    av_surface_free(u->s);
    u->s = NULL;
    return 0;
}

static int s_tostring(lua_State *L) {
    lav_surface *u = luaL_checkudata(L, 1, LAV_SURFACE_MT);
    if (!u->s) lua_pushstring(L, "PlotSurface (closed)");
    else {
        int w, h;
        av_surface_size(u->s, &w, &h);
        lua_pushfstring(L, "PlotSurface %dx%d", w, h);
    }
    return 1;
}

static int s_size(lua_State *L) {
    int w, h;
    av_surface_size(check_surface(L, 1), &w, &h);
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    return 2;
}

#define SELF_RETURN lua_settop(L, 1); return 1

static int s_move_to(lua_State *L) { av_surface_move_to(check_surface(L, 1), num(L, 2, "x"), num(L, 3, "y")); SELF_RETURN; }
static int s_line_to(lua_State *L) { av_surface_line_to(check_surface(L, 1), num(L, 2, "x"), num(L, 3, "y")); SELF_RETURN; }
static int s_rectangle(lua_State *L) {
    av_surface_rectangle(check_surface(L, 1), num(L, 2, "x"), num(L, 3, "y"), num(L, 4, "w"), num(L, 5, "h"));
    SELF_RETURN;
}
static int s_arc(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    double r = num(L, 4, "radius");
    if (!(r >= 0)) perror_(L, "radius must be non-negative, got %g", r);
    av_surface_arc(s, num(L, 2, "xc"), num(L, 3, "yc"), r, num(L, 5, "angle1"), num(L, 6, "angle2"));
    SELF_RETURN;
}
static int s_close_path(lua_State *L) { av_surface_close_path(check_surface(L, 1)); SELF_RETURN; }
static int s_new_path(lua_State *L) { av_surface_new_path(check_surface(L, 1)); SELF_RETURN; }
static int s_stroke(lua_State *L) { av_surface_stroke(check_surface(L, 1)); SELF_RETURN; }
static int s_stroke_preserve(lua_State *L) { av_surface_stroke_preserve(check_surface(L, 1)); SELF_RETURN; }
static int s_fill(lua_State *L) { av_surface_fill(check_surface(L, 1)); SELF_RETURN; }
static int s_fill_preserve(lua_State *L) { av_surface_fill_preserve(check_surface(L, 1)); SELF_RETURN; }
static int s_paint(lua_State *L) { av_surface_paint(check_surface(L, 1)); SELF_RETURN; }
static int s_save_state(lua_State *L) { av_surface_save(check_surface(L, 1)); SELF_RETURN; }
static int s_restore(lua_State *L) { av_surface_restore(check_surface(L, 1)); SELF_RETURN; }
static int s_clip(lua_State *L) { av_surface_clip(check_surface(L, 1)); SELF_RETURN; }
static int s_reset_clip(lua_State *L) { av_surface_reset_clip(check_surface(L, 1)); SELF_RETURN; }
static int s_translate(lua_State *L) { av_surface_translate(check_surface(L, 1), num(L, 2, "dx"), num(L, 3, "dy")); SELF_RETURN; }
static int s_rotate(lua_State *L) { av_surface_rotate(check_surface(L, 1), num(L, 2, "angle")); SELF_RETURN; }

static double unit(lua_State *L, int idx, const char *what, double def) {
    if (lua_isnoneornil(L, idx)) return def;
    double v = num(L, idx, what);
    if (!(v >= 0 && v <= 1)) perror_(L, "%s (argument %d) must be in [0, 1], got %g", what, idx, v);
    return v;
}

static int s_set_source_rgba(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    av_surface_set_rgba(s, unit(L, 2, "r", -1), unit(L, 3, "g", -1), unit(L, 4, "b", -1), unit(L, 5, "a", 1));
    SELF_RETURN;
}

static int s_set_line_width(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    double w = num(L, 2, "width");
    if (!(w >= 0)) perror_(L, "width must be non-negative, got %g", w);
    av_surface_set_line_width(s, w);
    SELF_RETURN;
}

/* s:set_dash({on, off, ...} [, offset]) ; nil or {} = solid */
static int s_set_dash(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    double d[16];
    int n = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TTABLE) perror_(L, "dashes (argument 2) must be a table of lengths, got %s", luaL_typename(L, 2));
        lua_Integer len = luaL_len(L, 2);
        if (len > 16) perror_(L, "at most 16 dash lengths, got %d", (int)len);
        for (int i = 0; i < len; i++) {
            lua_geti(L, 2, i + 1);
            if (lua_type(L, -1) != LUA_TNUMBER) perror_(L, "dash length %d is not a number", i + 1);
            d[n++] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    check_rc(L, av_surface_set_dash(s, d, n, lua_isnoneornil(L, 3) ? 0 : num(L, 3, "offset")));
    SELF_RETURN;
}

static int pick(lua_State *L, int idx, const char *const *names, const char *what) {
    const char *v = luaL_checkstring(L, idx);
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) return i;
    perror_(L, "unknown %s '%s' (valid: %s, %s, %s)", what, v, names[0], names[1], names[2]);
}

static int s_set_line_cap(lua_State *L) {
    static const char *const caps[] = {"butt", "round", "square", NULL};
    av_surface *s = check_surface(L, 1);
    av_surface_set_line_cap(s, pick(L, 2, caps, "line cap"));
    SELF_RETURN;
}

static int s_set_line_join(lua_State *L) {
    static const char *const joins[] = {"miter", "round", "bevel", NULL};
    av_surface *s = check_surface(L, 1);
    av_surface_set_line_join(s, pick(L, 2, joins, "line join"));
    SELF_RETURN;
}

static int s_set_antialias(lua_State *L) {
    av_surface_set_antialias(check_surface(L, 1), lua_toboolean(L, 2));
    SELF_RETURN;
}

/* s:select_font([bold = false [, size = 12]]): DejaVu Sans, normal or bold, size in pixels */
static int s_select_font(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    int bold = lua_toboolean(L, 2);
    double size = lua_isnoneornil(L, 3) ? 12 : num(L, 3, "size");
    if (!(size > 0)) perror_(L, "font size must be positive, got %g", size);
    av_surface_select_font(s, "DejaVu Sans", bold, size);
    SELF_RETURN;
}

static int s_set_font_size(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    double size = num(L, 2, "size");
    if (!(size > 0)) perror_(L, "font size must be positive, got %g", size);
    av_surface_set_font_size(s, size);
    SELF_RETURN;
}

static int s_text_extents(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    const char *t = luaL_checkstring(L, 2);
    double e[6];
    av_surface_text_extents(s, t, e);
    for (int i = 0; i < 5; i++) lua_pushnumber(L, e[i]);
    return 5;
}

static int s_show_text(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    av_surface_show_text(s, luaL_checkstring(L, 2));
    SELF_RETURN;
}

/* s:paint_image(t, x, y, w, h [, filter = "bilinear" [, alpha = 1]]):
 * t uint8 C x H x W (C = 1 or 3) or H x W, or float in [0, 1] */
static int s_paint_image(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    av_tensor *t = lav_check_tensor(L, 2);
    double x = num(L, 3, "x"), y = num(L, 4, "y"), w = num(L, 5, "w"), h = num(L, 6, "h");
    static const char *const filters[] = {"nearest", "bilinear", "linear", NULL};
    int bil = lua_isnoneornil(L, 7) ? 1 : pick(L, 7, filters, "filter") != 0;
    double alpha = unit(L, 8, "alpha", 1);
    if (t->storage->device.type != AV_CPU) perror_(L, "the image (argument 2) must be a CPU tensor");
    int c, ih, iw;
    if (t->ndim == 2) c = 1, ih = (int)t->shape[0], iw = (int)t->shape[1];
    else if (t->ndim == 3) c = (int)t->shape[0], ih = (int)t->shape[1], iw = (int)t->shape[2];
    else perror_(L, "the image (argument 2) must be C x H x W or H x W, got %d dims", t->ndim);
    if (c != 1 && c != 3) perror_(L, "the image (argument 2) must have 1 or 3 channels, got %d", c);
    if (t->dtype != AV_U8 && !av_dtype_is_float(t->dtype))
        perror_(L, "the image (argument 2) must be uint8 (0..255) or float (0..1), got %s", av_dtype_name(t->dtype));
    if (ih < 1 || iw < 1) perror_(L, "the image (argument 2) is empty");
    size_t n = (size_t)c * ih * iw;
    uint8_t *buf = lua_newuserdatauv(L, n, 0); /* freed by the GC, even on error */
    int off = t->ndim == 3 ? 1 : 0;
    int64_t sc = t->ndim == 3 ? t->stride[0] : 0, sy = t->stride[off], sx = t->stride[off + 1];
    size_t es = av_dtype_size(t->dtype);
    const char *base = av_data(t);
    for (int k = 0; k < c; k++)
        for (int yy = 0; yy < ih; yy++)
            for (int xx = 0; xx < iw; xx++) {
                const char *p = base + (k * sc + yy * sy + xx * sx) * (int64_t)es;
                uint8_t v;
                if (t->dtype == AV_U8) v = *(const uint8_t *)p;
                else {
                    double d = av_load_elem(t->dtype, p) * 255.0;
                    v = d <= 0 || d != d ? 0 : d >= 255 ? 255 : (uint8_t)(d + 0.5);
                }
                buf[((size_t)k * ih + yy) * iw + xx] = v;
            }
    check_rc(L, av_surface_paint_image(s, buf, c, ih, iw, x, y, w, h, bil, alpha));
    SELF_RETURN;
}

static int s_png(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    uint8_t *data;
    size_t n;
    check_rc(L, av_surface_png(s, &data, &n));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, (const char *)data, n); /* may raise on memory: data leaks then, as with any OOM */
    free(data);
    luaL_pushresult(&b);
    return 1;
}

static int s_save(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    const char *path = luaL_checkstring(L, 2);
    check_rc(L, av_surface_save_png(s, path));
    lua_settop(L, 2);
    return 1;
}

static int s_tensor(lua_State *L) {
    av_surface *s = check_surface(L, 1);
    int w, h;
    av_surface_size(s, &w, &h);
    int64_t shape[3] = {3, h, w};
    av_tensor *t = av_empty(3, shape, AV_U8);
    if (!t) check_rc(L, -1);
    if (av_surface_rgb(s, av_data(t))) {
        av_release(t);
        check_rc(L, -1);
    }
    return lav_push(L, t);
}

/* _plot.apply_colormap(t, table, vmin, vmax [, bad = {255, 255, 255}]) -> uint8 3 x H x W
 * t: H x W (or 1-d n: 3 x n) numbers; table: flat {r1, g1, b1, r2, ...} in 0..1 */
static int l_apply_colormap(lua_State *L) {
    av_tensor *t = lav_check_tensor(L, 1);
    if (t->storage->device.type != AV_CPU) perror_(L, "the values (argument 1) must be a CPU tensor");
    if (t->ndim != 2 && t->ndim != 1) perror_(L, "the values (argument 1) must be H x W (or 1-d), got %d dims", t->ndim);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer len = luaL_len(L, 2);
    if (len < 6 || len % 3) perror_(L, "the colour table (argument 2) must hold 3 x k >= 6 numbers, got %d", (int)len);
    double vmin = num(L, 3, "vmin"), vmax = num(L, 4, "vmax");
    uint8_t bad[3] = {255, 255, 255};
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        for (int k = 0; k < 3; k++) {
            lua_geti(L, 5, k + 1);
            double v = lua_tonumber(L, -1);
            bad[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            lua_pop(L, 1);
        }
    }
    float *tab = lua_newuserdatauv(L, sizeof(float) * (size_t)len, 0);
    for (lua_Integer i = 0; i < len; i++) {
        lua_geti(L, 2, i + 1);
        tab[i] = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    av_tensor *d = av_to_dtype(t, AV_F64);
    if (!d) check_rc(L, -1);
    av_tensor *c = av_contiguous(d);
    av_release(d);
    if (!c) check_rc(L, -1);
    int64_t h = t->ndim == 2 ? t->shape[0] : 1, w = t->shape[t->ndim - 1];
    int64_t shape[3] = {3, h, w};
    av_tensor *out = av_empty(t->ndim == 2 ? 3 : 2, t->ndim == 2 ? shape : (int64_t[]){3, w}, AV_U8);
    if (!out) {
        av_release(c);
        check_rc(L, -1);
    }
    int rc = av_apply_colormap(av_data(c), 1, h * w, 1, tab, (int)(len / 3), vmin, vmax, bad, av_data(out));
    av_release(c);
    if (rc) {
        av_release(out);
        check_rc(L, -1);
    }
    return lav_push(L, out);
}

static const luaL_Reg surface_methods[] = {
    {"move_to", s_move_to},
    {"line_to", s_line_to},
    {"rectangle", s_rectangle},
    {"arc", s_arc},
    {"close_path", s_close_path},
    {"new_path", s_new_path},
    {"stroke", s_stroke},
    {"stroke_preserve", s_stroke_preserve},
    {"fill", s_fill},
    {"fill_preserve", s_fill_preserve},
    {"paint", s_paint},
    {"set_source_rgba", s_set_source_rgba},
    {"set_line_width", s_set_line_width},
    {"set_dash", s_set_dash},
    {"set_line_cap", s_set_line_cap},
    {"set_line_join", s_set_line_join},
    {"set_antialias", s_set_antialias},
    {"save_state", s_save_state},
    {"restore", s_restore},
    {"translate", s_translate},
    {"rotate", s_rotate},
    {"clip", s_clip},
    {"reset_clip", s_reset_clip},
    {"select_font", s_select_font},
    {"set_font_size", s_set_font_size},
    {"text_extents", s_text_extents},
    {"show_text", s_show_text},
    {"paint_image", s_paint_image},
    {"png", s_png},
    {"save", s_save},
    {"tensor", s_tensor},
    {"size", s_size},
    {"close", s_gc},
    {NULL, NULL}};

static const luaL_Reg plot_funcs[] = {{"new", l_new}, {"apply_colormap", l_apply_colormap}, {NULL, NULL}};

void lav_open_plot(lua_State *L, int mod, int methods) {
    (void)methods;
    if (luaL_newmetatable(L, LAV_SURFACE_MT)) {
        int mt = lua_gettop(L);
        lua_newtable(L);
        lav_setfuncs(L, lua_gettop(L), surface_methods);
        lua_setfield(L, mt, "__index");
        lua_pushcfunction(L, s_gc);
        lua_setfield(L, mt, "__gc");
        lua_pushcfunction(L, s_gc);
        lua_setfield(L, mt, "__close");
        lua_pushcfunction(L, s_tostring);
        lua_setfield(L, mt, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    int t = lua_gettop(L);
    lav_setfuncs(L, t, plot_funcs);
    lua_setfield(L, mod, "_plot");
}
