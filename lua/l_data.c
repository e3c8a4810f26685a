/* The data pipeline's binding: av._data (used by lua/aviary/data.lua).
 *
 *   _data.loader(paths, targets, transforms, opts) -> Loader
 *       paths: list of strings; targets: list of integers (kept as given);
 *       transforms: list of tables {kind = "Resize", size = 256, ...} (the fields of
 *       av_transform, see runtime/include/aviary/data.h); opts: batch_size, shuffle,
 *       drop_last, num_workers, prefetch, seed, on_error ('skip' | 'error'),
 *       max_pixels, dct_scaling
 *   Loader:start_epoch(epoch)   reshuffles and restarts the workers
 *   Loader:next() -> input, target, indices (1-based), skipped (1-based) | nil at the end
 *   Loader:len(), Loader:close()
 *   _data.order(n, epoch, seed, shuffle) -> the loader's 1-based sample order of an epoch
 *   _data.check(transforms) -> true, or raises naming the bad transform
 *   _data.run_file(path, transforms, {seed=, epoch=, index=, max_pixels=, dct_scaling=}) -> tensor
 *   _data.rrc_params(width, height, n, seed [, {scale = {lo, hi}, ratio = {lo, hi}}])
 *       -> int64 n x 4 (top, left, height, width), the params of samples 0..n-1
 *   _data.functional(path, op, params) -> float32 3 x H x W in [0, 1], the decoded image
 *       after one fixed-parameter op: 'rotate' {angle, fill}, 'perspective' {start, end, fill},
 *       'brightness' | 'contrast' | 'saturation' | 'hue' {factor}, 'hflip', 'none' */
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/cuda.h"
#include "aviary/data.h"
#include "aviary/image.h"

#define LOADER_MT "aviary.data.Loader"

typedef struct {
    av_loader *l;
} loader_box;

static int data_error(lua_State *L, const char *fn, const char *msg) {
    return luaL_error(L, "aviary.data.%s: %s", fn, msg);
}

static double field_num(lua_State *L, int t, const char *k, double def) {
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* reads up to n numbers of the list t.k into out (a number fills all of them) */
static void field_list(lua_State *L, int t, const char *k, double *out, int n) {
    lua_getfield(L, t, k);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        for (int i = 0; i < n; i++) out[i] = lua_tonumber(L, -1);
    } else if (lua_istable(L, -1)) {
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (lua_isnumber(L, -1)) out[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static int read_transforms(lua_State *L, int idx, av_transform **out) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)luaL_len(L, idx);
    av_transform *tf = lua_newuserdatauv(L, sizeof(av_transform) * (size_t)(n ? n : 1), 0); /* GC-owned */
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t)) luaL_error(L, "aviary.data: transform %d is not a table", i + 1);
        lua_getfield(L, t, "kind");
        const char *kn = lua_tostring(L, -1);
        int kind = kn ? av_transform_kind_from_name(kn) : -1;
        if (kind < 0) luaL_error(L, "aviary.data: transform %d: unknown kind '%s'", i + 1, kn ? kn : "?");
        lua_pop(L, 1);
        av_transform *x = &tf[i];
        av_transform_defaults(x, kind);
        x->size = (int)field_num(L, t, "size", 0);
        x->max_size = (int)field_num(L, t, "max_size", 0);
        x->h = (int)field_num(L, t, "h", 0);
        x->w = (int)field_num(L, t, "w", 0);
        lua_getfield(L, t, "interp");
        const char *ip = lua_tostring(L, -1);
        if (ip) {
            if (!strcmp(ip, "bilinear")) x->interp = AV_INTERP_BILINEAR;
            else if (!strcmp(ip, "bicubic")) x->interp = AV_INTERP_BICUBIC;
            else if (!strcmp(ip, "nearest")) x->interp = AV_INTERP_NEAREST;
            else luaL_error(L, "aviary.data: transform %d: unknown interpolation '%s'", i + 1, ip);
        }
        lua_pop(L, 1);
        x->p = field_num(L, t, "p", x->p);
        field_list(L, t, "scale", x->scale, 2);
        field_list(L, t, "ratio", x->ratio, 2);
        field_list(L, t, "degrees", x->degrees, 2);
        field_list(L, t, "fill", x->fill, 3);
        x->distortion = field_num(L, t, "distortion", x->distortion);
        field_list(L, t, "brightness", x->brightness, 2);
        field_list(L, t, "contrast", x->contrast, 2);
        field_list(L, t, "saturation", x->saturation, 2);
        field_list(L, t, "hue", x->hue, 2);
        double mean[3] = {x->mean[0], x->mean[1], x->mean[2]}, std[3] = {x->std[0], x->std[1], x->std[2]};
        field_list(L, t, "mean", mean, 3);
        field_list(L, t, "std", std, 3);
        for (int c = 0; c < 3; c++) {
            x->mean[c] = (float)mean[c];
            x->std[c] = (float)std[c];
        }
        x->value = field_num(L, t, "value", 0);
        lua_pop(L, 1);
    }
    if (av_transforms_check(tf, n) < 0) luaL_error(L, "aviary.data: %s", av_last_error());
    *out = tf;
    return n; /* the userdata stays on the stack */
}

static loader_box *check_loader(lua_State *L, int idx) {
    loader_box *b = luaL_checkudata(L, idx, LOADER_MT);
    if (!b->l) luaL_error(L, "aviary.data.Loader: the loader is closed");
    return b;
}

static int l_loader(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t n = (int64_t)luaL_len(L, 1);
    if ((int64_t)luaL_len(L, 2) != n) return data_error(L, "loader", "paths and targets differ in length");
    av_transform *tf;
    int ntf = read_transforms(L, 3, &tf);
    int o = lua_istable(L, 4) ? 4 : 0;
    av_loader_opts opts = {0};
    opts.batch_size = o ? (int)field_num(L, o, "batch_size", 1) : 1;
    opts.num_workers = o ? (int)field_num(L, o, "num_workers", 0) : 0;
    opts.prefetch = o ? (int)field_num(L, o, "prefetch", 2) : 2;
    opts.seed = o ? (uint64_t)(int64_t)field_num(L, o, "seed", 0) : 0;
    opts.sample.max_pixels = o ? (int64_t)field_num(L, o, "max_pixels", 0) : 0;
    opts.sample.dct_scaling = 1;
    if (o) {
        lua_getfield(L, o, "shuffle");
        opts.shuffle = lua_toboolean(L, -1);
        lua_getfield(L, o, "drop_last");
        opts.drop_last = lua_toboolean(L, -1);
        lua_getfield(L, o, "dct_scaling");
        if (!lua_isnil(L, -1)) opts.sample.dct_scaling = lua_toboolean(L, -1);
        lua_getfield(L, o, "on_error");
        const char *oe = lua_tostring(L, -1);
        if (oe && !strcmp(oe, "error")) opts.on_error = AV_ON_ERROR_RAISE;
        else if (oe && strcmp(oe, "skip")) return data_error(L, "loader", "on_error must be 'skip' or 'error'");
        lua_pop(L, 4);
    }
    const char **paths = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
    int64_t *targets = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(n ? n : 1), 0);
    for (int64_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) return data_error(L, "loader", "paths must be strings");
        paths[i] = lua_tostring(L, -1); /* anchored by the paths table */
        lua_pop(L, 1);
        lua_rawgeti(L, 2, i + 1);
        if (!lua_isinteger(L, -1)) return data_error(L, "loader", "targets must be integers");
        targets[i] = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    loader_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->l = NULL;
    luaL_setmetatable(L, LOADER_MT);
    b->l = av_loader_new(paths, targets, n, tf, ntf, &opts);
    if (!b->l) return data_error(L, "loader", av_last_error());
    if (o) {
        lua_getfield(L, o, "pin_memory");
        av_loader_set_pin_memory(b->l, lua_toboolean(L, -1));
        lua_pop(L, 1);
    }
    return 1;
}

static int m_start_epoch(lua_State *L) {
    loader_box *b = check_loader(L, 1);
    av_loader_start_epoch(b->l, (int64_t)luaL_checkinteger(L, 2));
    return 0;
}

static int m_next(lua_State *L) {
    loader_box *b = check_loader(L, 1);
    av_batch batch;
    int rc = av_loader_next(b->l, &batch);
    if (rc < 0) return luaL_error(L, "aviary.data.DataLoader: %s", av_last_error());
    if (rc == 0) return 0;
    av_tensor *in = batch.input, *tg = batch.target;
    batch.input = batch.target = NULL;
    lua_createtable(L, batch.n, 0);
    for (int i = 0; i < batch.n; i++) {
        lua_pushinteger(L, batch.index[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_createtable(L, batch.skipped, 0);
    for (int i = 0; i < batch.skipped; i++) {
        lua_pushinteger(L, batch.skipped_index[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    av_batch_clear(&batch);
    int base = lua_gettop(L);
    lav_push(L, in);
    lav_push(L, tg);
    lua_pushvalue(L, base - 1);
    lua_pushvalue(L, base);
    return 4;
}

static int m_len(lua_State *L) {
    lua_pushinteger(L, av_loader_len(check_loader(L, 1)->l));
    return 1;
}

static void push_order(lua_State *L, int64_t n, uint64_t seed, int64_t epoch, int shuffle) {
    int64_t *o = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(n ? n : 1), 0);
    av_sample_order(n, seed, epoch, shuffle, o);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, o[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
}

/* _data.order(n, epoch, seed, shuffle) -> the 1-based sample order of an epoch */
static int l_order(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1), epoch = luaL_checkinteger(L, 2);
    if (n < 0) return data_error(L, "order", "n must be >= 0");
    push_order(L, n, (uint64_t)luaL_optinteger(L, 3, 0), epoch, lua_toboolean(L, 4));
    return 1;
}

static int m_close(lua_State *L) {
    loader_box *b = luaL_checkudata(L, 1, LOADER_MT);
    av_loader_free(b->l);
    b->l = NULL;
    return 0;
}

static int l_run_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    av_transform *tf;
    int ntf = read_transforms(L, 2, &tf);
    int o = lua_istable(L, 3) ? 3 : 0;
    av_sample_opts so = {0};
    so.dct_scaling = 1;
    uint64_t seed = 0, epoch = 0, index = 0;
    if (o) {
        seed = (uint64_t)(int64_t)field_num(L, o, "seed", 0);
        epoch = (uint64_t)(int64_t)field_num(L, o, "epoch", 0);
        index = (uint64_t)(int64_t)field_num(L, o, "index", 0);
        so.max_pixels = (int64_t)field_num(L, o, "max_pixels", 0);
        lua_getfield(L, o, "dct_scaling");
        if (!lua_isnil(L, -1)) so.dct_scaling = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    av_tensor *t = av_transforms_run_file(tf, ntf, path, &so, seed, epoch, index);
    if (!t) return luaL_error(L, "aviary.data: %s", av_last_error());
    return lav_push(L, t);
}

static int l_check(lua_State *L) {
    av_transform *tf;
    read_transforms(L, 1, &tf);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_rrc_params(lua_State *L) {
    int w = (int)luaL_checkinteger(L, 1), h = (int)luaL_checkinteger(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3);
    uint64_t seed = (uint64_t)luaL_optinteger(L, 4, 0);
    double scale[2] = {0.08, 1.0}, ratio[2] = {3.0 / 4.0, 4.0 / 3.0};
    if (lua_istable(L, 5)) {
        field_list(L, 5, "scale", scale, 2);
        field_list(L, 5, "ratio", ratio, 2);
    }
    if (w <= 0 || h <= 0 || n < 0) return data_error(L, "rrc_params", "bad size");
    int64_t shape[2] = {n, 4};
    av_tensor *t = av_empty(2, shape, AV_I64);
    if (!t) return data_error(L, "rrc_params", av_last_error());
    int64_t *d = av_data(t);
    for (lua_Integer i = 0; i < n; i++) {
        av_sample_rng r;
        av_sample_rng_init(&r, seed, 0, (uint64_t)i);
        int top, left, ch, cw;
        av_rrc_params(&r, w, h, scale, ratio, &top, &left, &ch, &cw);
        d[4 * i] = top;
        d[4 * i + 1] = left;
        d[4 * i + 2] = ch;
        d[4 * i + 3] = cw;
    }
    return lav_push(L, t);
}

static int l_functional(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *op = luaL_checkstring(L, 2);
    int p = lua_istable(L, 3) ? 3 : 0;
    av_decode_opts d = {0};
    d.want_channels = 3;
    av_image *im = av_image_load(path, &d);
    if (!im) return data_error(L, "functional", av_last_error());
    av_image *o = NULL;
    double fill[3] = {0, 0, 0};
    if (p) field_list(L, p, "fill", fill, 3);
    if (!strcmp(op, "rotate")) {
        o = av_image_rotate(im, p ? field_num(L, p, "angle", 0) : 0, fill);
    } else if (!strcmp(op, "perspective")) {
        double s[8] = {0}, e[8] = {0};
        if (p) {
            field_list(L, p, "start", s, 8);
            field_list(L, p, "end", e, 8);
        }
        o = av_image_perspective(im, s, e, fill);
    } else if (!strcmp(op, "hflip")) {
        o = av_image_hflip(im);
    } else if (!strcmp(op, "none")) {
        o = im;
        im = NULL;
    } else {
        static const char *const adj[] = {"brightness", "contrast", "saturation", "hue", NULL};
        int which = -1;
        for (int i = 0; adj[i]; i++)
            if (!strcmp(op, adj[i])) which = i;
        if (which < 0) {
            av_image_free(im);
            return data_error(L, "functional", "unknown op");
        }
        if (av_image_adjust(im, which, p ? field_num(L, p, "factor", 1) : 1) == 0) {
            o = im;
            im = NULL;
        }
    }
    av_image_free(im);
    if (!o) return data_error(L, "functional", av_last_error());
    av_tensor *t = av_image_to_tensor(o, NULL, NULL);
    av_image_free(o);
    if (!t) return data_error(L, "functional", av_last_error());
    return lav_push(L, t);
}

void lav_open_data(lua_State *L, int mod, int methods) {
    (void)methods;
    if (luaL_newmetatable(L, LOADER_MT)) {
        static const luaL_Reg meta[] = {{"__gc", m_close}, {"__close", m_close}, {NULL, NULL}};
        luaL_setfuncs(L, meta, 0);
        static const luaL_Reg m[] = {{"start_epoch", m_start_epoch}, {"next", m_next}, {"len", m_len},
                                     {"close", m_close},             {NULL, NULL}};
        lua_newtable(L);
        luaL_setfuncs(L, m, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"loader", l_loader},         {"run_file", l_run_file},
                                   {"rrc_params", l_rrc_params}, {"functional", l_functional},
                                   {"check", l_check},
                                   {"order", l_order},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, mod, "_data");
}
