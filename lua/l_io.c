/* aviary.save / aviary.load: safetensors files from Lua.
 *
 *   av.save(path, {name = tensor, ...} [, {key = "value" | number, ...}])
 *   local tensors, metadata, names = av.load(path)
 *
 * Names are written sorted so that saving the same table twice gives the same
 * bytes (Lua's table order is not stable). load also returns the names in
 * file order, which a table cannot keep. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/io.h"

#define LAV_FILE_GUARD_MT "aviary.io.file_guard"

typedef struct {
    const char *name;
    av_tensor *t;
} named_tensor;

typedef struct {
    const char *key, *value;
} meta_entry;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const meta_entry *)a)->key, ((const meta_entry *)b)->key);
}

static const char *check_path(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TSTRING)
        lav_error(L, "expected a file path (string) as argument %d, got %s", idx, luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

/* pushes a printable form of the key at idx, for error messages */
static const char *key_repr(lua_State *L, int idx) {
    lua_pushvalue(L, idx);
    return luaL_tolstring(L, -1, NULL);
}

static size_t count_entries(lua_State *L, int tbl) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* Scratch arrays live in userdata so a Lua error raised half-way (a bad
 * entry, a failed save) cannot leak them. */
static void *scratch(lua_State *L, size_t n, size_t size) {
    return lua_newuserdatauv(L, (n ? n : 1) * size, 0);
}

static named_tensor *collect_tensors(lua_State *L, int tbl, size_t *count) {
    size_t n = count_entries(L, tbl);
    named_tensor *out = scratch(L, n, sizeof *out);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        int key = lua_gettop(L) - 1, val = lua_gettop(L);
        /* a number key would be converted in place by lua_tostring, which
         * breaks lua_next; and an array of tensors has no names to save */
        if (lua_type(L, key) != LUA_TSTRING)
            lav_error(L, "tensor names must be strings, got %s key %s in argument 2", luaL_typename(L, key),
                      key_repr(L, key));
        const char *name = lua_tostring(L, key);
        if (!lav_is_tensor(L, val))
            lav_error(L, "value for '%s' in argument 2 must be a tensor, got %s", name, luaL_typename(L, val));
        av_tensor *t = lav_to_tensor(L, val);
        if (!t) lav_error(L, "tensor '%s' in argument 2 has been closed", name);
        out[i].name = name;
        out[i].t = t;
        i++;
        lua_pop(L, 1);
    }
    qsort(out, n, sizeof *out, cmp_named);
    *count = n;
    return out;
}

/* numbers become strings the way tostring() writes them; the converted
 * strings are kept alive in `anchor` until the file is written */
static meta_entry *collect_metadata(lua_State *L, int tbl, int anchor, size_t *count) {
    size_t n = count_entries(L, tbl);
    meta_entry *out = scratch(L, n, sizeof *out);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        int key = lua_gettop(L) - 1, val = lua_gettop(L);
        if (lua_type(L, key) != LUA_TSTRING)
            lav_error(L, "metadata keys must be strings, got %s key %s in argument 3", luaL_typename(L, key),
                      key_repr(L, key));
        out[i].key = lua_tostring(L, key);
        int vt = lua_type(L, val);
        if (vt == LUA_TSTRING) {
            out[i].value = lua_tostring(L, val);
        } else if (vt == LUA_TNUMBER) {
            out[i].value = luaL_tolstring(L, val, NULL);
            lua_rawseti(L, anchor, (lua_Integer)i + 1);
        } else {
            lav_error(L, "metadata value for key '%s' must be a string or a number, got %s", out[i].key,
                      luaL_typename(L, val));
        }
        i++;
        lua_pop(L, 1);
    }
    qsort(out, n, sizeof *out, cmp_meta);
    *count = n;
    return out;
}

static int l_save(lua_State *L) {
    const char *path = check_path(L, 1);
    if (!lua_istable(L, 2))
        lav_error(L, "expected a table of name -> tensor as argument 2, got %s",
                  lav_is_tensor(L, 2) ? "a tensor (wrap it: {name = tensor})" : luaL_typename(L, 2));
    bool has_meta = !lua_isnoneornil(L, 3);
    if (has_meta && !lua_istable(L, 3))
        lav_error(L, "expected a metadata table of string -> string as argument 3 (or nil), got %s",
                  luaL_typename(L, 3));
    lua_settop(L, 3);
    lua_newtable(L);
    int anchor = lua_gettop(L);

    size_t n = 0, nmeta = 0;
    named_tensor *entries = collect_tensors(L, 2, &n);
    meta_entry *meta = has_meta ? collect_metadata(L, 3, anchor, &nmeta) : NULL;
    if (n > INT_MAX || nmeta > INT_MAX) lav_error(L, "too many entries");

    const char **names = scratch(L, n, sizeof *names);
    av_tensor **tensors = scratch(L, n, sizeof *tensors);
    const char **keys = scratch(L, nmeta, sizeof *keys);
    const char **values = scratch(L, nmeta, sizeof *values);
    for (size_t i = 0; i < n; i++) {
        names[i] = entries[i].name;
        tensors[i] = entries[i].t;
    }
    for (size_t i = 0; i < nmeta; i++) {
        keys[i] = meta[i].key;
        values[i] = meta[i].value;
    }
    lav_check_rc(L, av_safetensors_save(path, (int)n, names, tensors, (int)nmeta, keys, values));
    return 0;
}

static int guard_gc(lua_State *L) {
    av_tensor_file **g = luaL_checkudata(L, 1, LAV_FILE_GUARD_MT);
    av_tensor_file_free(*g);
    *g = NULL;
    return 0;
}

static int l_load(lua_State *L) {
    const char *path = check_path(L, 1);
    /* the loaded file is owned by a collectable guard, so an error while
     * building the result tables still frees every tensor */
    av_tensor_file **guard = lua_newuserdatauv(L, sizeof *guard, 0);
    *guard = NULL;
    luaL_setmetatable(L, LAV_FILE_GUARD_MT);
    av_tensor_file *f = *guard = av_safetensors_load(path);
    if (!f) lav_check_rc(L, -1);

    lua_createtable(L, 0, f->count);
    int tensors = lua_gettop(L);
    lua_createtable(L, 0, f->meta_count);
    int meta = lua_gettop(L);
    lua_createtable(L, f->count, 0);
    int order = lua_gettop(L);
    for (int i = 0; i < f->count; i++) {
        lav_push(L, f->tensors[i]);
        f->tensors[i] = NULL; /* the Lua userdata owns it now */
        lua_setfield(L, tensors, f->names[i]);
        lua_pushstring(L, f->names[i]);
        lua_rawseti(L, order, i + 1);
    }
    for (int i = 0; i < f->meta_count; i++) {
        lua_pushstring(L, f->meta_values[i]);
        lua_setfield(L, meta, f->meta_keys[i]);
    }
    av_tensor_file_free(f);
    *guard = NULL;
    return 3;
}

void lav_open_io(lua_State *L, int mod, int methods) {
    if (luaL_newmetatable(L, LAV_FILE_GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"save", l_save}, {"load", l_load}, {NULL, NULL}};
    lav_setfuncs(L, mod, fns);
}
