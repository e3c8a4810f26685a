/* av._onnx, reading: ONNX messages (runtime/onnx/onnx_io.c) to plain Lua tables; the table format is
 * described at the top of lua/l_onnx.c. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "aviary/onnx.h"
#include "l_onnx.h"

const char *const lav_onnx_attr_type_names[] = {
    "UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS",
    "STRINGS", "TENSORS", "GRAPHS", "SPARSE_TENSOR", "SPARSE_TENSORS", "TYPE_PROTO", "TYPE_PROTOS",
};

/* ======================= reading: messages -> tables ======================= */

typedef struct {
    const char *file, *base_dir;
} rd_ctx;

static void set_str(lua_State *L, int tbl, const char *key, const char *s) {
    lua_pushstring(L, s ? s : "");
    lua_setfield(L, tbl, key);
}

static void set_int(lua_State *L, int tbl, const char *key, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, tbl, key);
}

static void push_strings(lua_State *L, size_t n, char **s) {
    lua_createtable(L, n > INT_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, s[i] ? s[i] : "");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static void push_tensor(lua_State *L, const Onnx__TensorProto *tp, const rd_ctx *c, const char *what) {
    av_tensor *t = av_onnx_tensor_to_av(tp, c->file, c->base_dir, what);
    if (!t) lav_check_rc(L, -1);
    lav_push(L, t);
}

static void push_graph(lua_State *L, const Onnx__GraphProto *g, const rd_ctx *c, int depth);

static void push_value_info(lua_State *L, const Onnx__ValueInfoProto *vi, const rd_ctx *c, const char *kind) {
    lua_newtable(L);
    int t = lua_gettop(L);
    set_str(L, t, "name", vi->name);
    if (vi->doc_string && *vi->doc_string) set_str(L, t, "doc_string", vi->doc_string);
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) return;
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type) set_int(L, t, "elem_type", tt->elem_type);
    if (!tt->shape) return;
    const Onnx__TensorShapeProto *sh = tt->shape;
    lua_createtable(L, sh->n_dim > INT_MAX ? 0 : (int)sh->n_dim, 0);
    for (size_t d = 0; d < sh->n_dim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = sh->dim[d];
        if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dim->dim_value < 0)
                lav_error(L, "'%s': %s '%s' has a negative dim (%lld at position %d)", c->file, kind,
                          vi->name ? vi->name : "", (long long)dim->dim_value, (int)d + 1);
            lua_pushinteger(L, dim->dim_value);
        } else if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
            lua_pushstring(L, dim->dim_param ? dim->dim_param : "");
        } else {
            lua_pushboolean(L, 0);
        }
        lua_rawseti(L, -2, (lua_Integer)d + 1);
    }
    lua_setfield(L, t, "shape");
}

/* the type of an attribute written before IR version 2 had no type field */
static int infer_attr_type(const Onnx__AttributeProto *a) {
    if (a->has_f) return 1;
    if (a->has_i) return 2;
    if (a->has_s) return 3;
    if (a->t) return 4;
    if (a->g) return 5;
    if (a->n_floats) return 6;
    if (a->n_ints) return 7;
    if (a->n_strings) return 8;
    if (a->n_tensors) return 9;
    if (a->n_graphs) return 10;
    return 0;
}

static void push_attribute(lua_State *L, const Onnx__AttributeProto *a, const rd_ctx *c, const char *node,
                           int depth) {
    lua_newtable(L);
    int t = lua_gettop(L);
    const char *name = a->name ? a->name : "";
    set_str(L, t, "name", name);
    if (a->ref_attr_name && *a->ref_attr_name) set_str(L, t, "ref_attr_name", a->ref_attr_name);
    int type = a->has_type && a->type ? (int)a->type : infer_attr_type(a);
    if (type <= 0 || type >= N_ATTR_TYPES)
        lav_error(L, "'%s': attribute '%s' of %s has unknown type %d", c->file, name, node, type);
    set_str(L, t, "type", attr_type_names[type]);
    char what[320];
    snprintf(what, sizeof what, "attribute '%s' of %s", name, node);
    switch (type) {
    case 1: lua_pushnumber(L, a->f); lua_setfield(L, t, "f"); break;
    case 2: lua_pushinteger(L, a->i); lua_setfield(L, t, "i"); break;
    case 3:
        lua_pushlstring(L, a->s.data ? (const char *)a->s.data : "", a->s.len);
        lua_setfield(L, t, "s");
        break;
    case 4:
        if (!a->t) lav_error(L, "'%s': %s has type TENSOR but no tensor", c->file, what);
        push_tensor(L, a->t, c, what);
        lua_setfield(L, t, "t");
        if (a->t->has_data_type) set_int(L, t, "elem_type", a->t->data_type);
        break;
    case 5:
        if (!a->g) lav_error(L, "'%s': %s has type GRAPH but no graph", c->file, what);
        push_graph(L, a->g, c, depth + 1);
        lua_setfield(L, t, "g");
        break;
    case 6:
        lua_createtable(L, (int)a->n_floats, 0);
        for (size_t k = 0; k < a->n_floats; k++) {
            lua_pushnumber(L, a->floats[k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, t, "floats");
        break;
    case 7:
        lua_createtable(L, (int)a->n_ints, 0);
        for (size_t k = 0; k < a->n_ints; k++) {
            lua_pushinteger(L, a->ints[k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, t, "ints");
        break;
    case 8:
        lua_createtable(L, (int)a->n_strings, 0);
        for (size_t k = 0; k < a->n_strings; k++) {
            lua_pushlstring(L, a->strings[k].data ? (const char *)a->strings[k].data : "", a->strings[k].len);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, t, "strings");
        break;
    case 9:
        lua_createtable(L, (int)a->n_tensors, 0);
        for (size_t k = 0; k < a->n_tensors; k++) {
            char w[360];
            snprintf(w, sizeof w, "tensor %zu of %s", k + 1, what);
            push_tensor(L, a->tensors[k], c, w);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, t, "tensors");
        break;
    case 10:
        lua_createtable(L, (int)a->n_graphs, 0);
        for (size_t k = 0; k < a->n_graphs; k++) {
            push_graph(L, a->graphs[k], c, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, t, "graphs");
        break;
    default:
        lav_error(L, "'%s': %s has type %s, which aviary does not read", c->file, what, attr_type_names[type]);
    }
}

static void push_graph(lua_State *L, const Onnx__GraphProto *g, const rd_ctx *c, int depth) {
    if (depth > MAX_GRAPH_DEPTH) lav_error(L, "'%s': subgraphs nest deeper than %d levels", c->file, MAX_GRAPH_DEPTH);
    luaL_checkstack(L, 12, "ONNX graph nesting");
    if (!g) {
        lua_newtable(L);
        return;
    }
    if (g->n_sparse_initializer)
        lav_error(L, "'%s': graph '%s' has %zu sparse initializers, which aviary does not read", c->file,
                  g->name ? g->name : "", g->n_sparse_initializer);
    lua_newtable(L);
    int t = lua_gettop(L);
    set_str(L, t, "name", g->name);
    set_str(L, t, "doc_string", g->doc_string);

    lua_createtable(L, (int)g->n_node, 0);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        lua_createtable(L, 0, 7);
        int nt = lua_gettop(L);
        set_str(L, nt, "op_type", n->op_type);
        set_str(L, nt, "name", n->name);
        set_str(L, nt, "domain", n->domain);
        if (n->doc_string && *n->doc_string) set_str(L, nt, "doc_string", n->doc_string);
        push_strings(L, n->n_input, n->input);
        lua_setfield(L, nt, "input");
        push_strings(L, n->n_output, n->output);
        lua_setfield(L, nt, "output");
        char node[200];
        snprintf(node, sizeof node, "node %zu ('%.80s', %.60s)", i + 1, n->name ? n->name : "",
                 n->op_type ? n->op_type : "?");
        lua_createtable(L, (int)n->n_attribute, 0);
        for (size_t k = 0; k < n->n_attribute; k++) {
            push_attribute(L, n->attribute[k], c, node, depth);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, nt, "attribute");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, t, "node");

    lua_createtable(L, (int)g->n_initializer, 0);
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        const char *name = tp->name ? tp->name : "";
        char what[300];
        snprintf(what, sizeof what, "initializer '%.250s'", name);
        lua_createtable(L, 0, 3);
        set_str(L, lua_gettop(L), "name", name);
        if (tp->has_data_type) set_int(L, lua_gettop(L), "elem_type", tp->data_type);
        push_tensor(L, tp, c, what);
        lua_setfield(L, -2, "tensor");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, t, "initializer");

    struct {
        const char *key, *kind;
        size_t n;
        Onnx__ValueInfoProto **v;
    } lists[] = {{"input", "graph input", g->n_input, g->input},
                 {"output", "graph output", g->n_output, g->output},
                 {"value_info", "value_info", g->n_value_info, g->value_info}};
    for (int l = 0; l < 3; l++) {
        lua_createtable(L, (int)lists[l].n, 0);
        for (size_t i = 0; i < lists[l].n; i++) {
            push_value_info(L, lists[l].v[i], c, lists[l].kind);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, t, lists[l].key);
    }
}

static void push_model(lua_State *L, const Onnx__ModelProto *m, const rd_ctx *c) {
    lua_newtable(L);
    int t = lua_gettop(L);
    set_int(L, t, "ir_version", m->has_ir_version ? m->ir_version : 0);
    set_str(L, t, "producer_name", m->producer_name);
    set_str(L, t, "producer_version", m->producer_version);
    set_str(L, t, "domain", m->domain);
    set_int(L, t, "model_version", m->has_model_version ? m->model_version : 0);
    set_str(L, t, "doc_string", m->doc_string);
    lua_createtable(L, (int)m->n_opset_import, 0);
    for (size_t i = 0; i < m->n_opset_import; i++) {
        lua_createtable(L, 0, 2);
        set_str(L, lua_gettop(L), "domain", m->opset_import[i]->domain);
        set_int(L, lua_gettop(L), "version", m->opset_import[i]->has_version ? m->opset_import[i]->version : 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, t, "opset_import");
    lua_createtable(L, (int)m->n_metadata_props, 0);
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        lua_createtable(L, 0, 2);
        set_str(L, lua_gettop(L), "key", m->metadata_props[i]->key);
        set_str(L, lua_gettop(L), "value", m->metadata_props[i]->value);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, t, "metadata_props");
    push_graph(L, m->graph, c, 0);
    lua_setfield(L, t, "graph");
}

static int model_guard_gc(lua_State *L) {
    Onnx__ModelProto **g = luaL_checkudata(L, 1, LAV_ONNX_MODEL_MT);
    av_onnx_model_free(*g);
    *g = NULL;
    return 0;
}

/* pushes the model table built from m; m is freed by a guard even when a
 * tensor fails validation half-way */
static int finish_read(lua_State *L, Onnx__ModelProto **guard, const rd_ctx *c) {
    push_model(L, *guard, c);
    av_onnx_model_free(*guard);
    *guard = NULL;
    return 1;
}

static Onnx__ModelProto **new_model_guard(lua_State *L) {
    Onnx__ModelProto **g = lua_newuserdatauv(L, sizeof *g, 0);
    *g = NULL;
    luaL_setmetatable(L, LAV_ONNX_MODEL_MT);
    return g;
}

static int l_read(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING)
        lav_error(L, "expected a file path (string) as argument 1, got %s", luaL_typename(L, 1));
    const char *path = lua_tostring(L, 1);
    lav_no_args_after(L, 1);
    const char *slash = strrchr(path, '/');
    if (slash) lua_pushlstring(L, path, slash == path ? 1 : (size_t)(slash - path));
    else lua_pushliteral(L, ".");
    rd_ctx c = {path, lua_tostring(L, -1)};
    Onnx__ModelProto **g = new_model_guard(L);
    *g = av_onnx_read(path);
    if (!*g) lav_check_rc(L, -1);
    return finish_read(L, g, &c);
}

static int l_decode(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING)
        lav_error(L, "expected the model's bytes (string) as argument 1, got %s", luaL_typename(L, 1));
    size_t len;
    const char *bytes = lua_tolstring(L, 1, &len);
    int opts = lav_opts_at(L, 2);
    lav_no_args_after(L, 2);
    rd_ctx c = {"(bytes)", NULL};
    if (opts) {
        static const char *const allowed[] = {"base_dir", "name", NULL};
        lav_check_keys(L, opts, allowed);
        lua_getfield(L, opts, "base_dir");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                lav_error(L, "option base_dir must be a string, got %s", luaL_typename(L, -1));
            c.base_dir = lua_tostring(L, -1);
        }
        lua_getfield(L, opts, "name");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                lav_error(L, "option name must be a string, got %s", luaL_typename(L, -1));
            c.file = lua_tostring(L, -1);
        }
    }
    Onnx__ModelProto **g = new_model_guard(L);
    *g = av_onnx_decode(bytes, len, c.file);
    if (!*g) lav_check_rc(L, -1);
    return finish_read(L, g, &c);
}

void lav_onnx_open_read(lua_State *L, int t) {
    if (luaL_newmetatable(L, LAV_ONNX_MODEL_MT)) {
        lua_pushcfunction(L, model_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_read);
    lua_setfield(L, t, "read");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, t, "decode");
}
