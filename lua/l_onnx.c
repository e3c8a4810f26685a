/* av._onnx: ONNX model files as plain Lua tables (runtime/onnx/onnx_io.c does
 * the protobuf and the tensors; this file maps messages to tables).
 *
 *   local O = require("aviary")._onnx
 *   local m = O.read(path)                     -- or O.decode(bytes, {base_dir = dir, name = "..."})
 *   O.write(path, m)  -> path                  -- atomic (temporary name + rename)
 *   O.encode(m)       -> bytes
 *   O.ELEM            -> {FLOAT = 1, UINT8 = 2, ...}  (TensorProto.DataType)
 *
 * The table mirrors ModelProto with the field names of onnx.proto:
 *   {ir_version, producer_name, producer_version, domain, model_version, doc_string,
 *    opset_import = {{domain, version}}, metadata_props = {{key, value}},
 *    graph = {name, doc_string, node = {{op_type, name, domain, input, output, attribute}},
 *             initializer = {{name, tensor, elem_type}}, input/output/value_info = {{name, elem_type, shape}}}}
 * Attributes are {name, type = "INTS", ints = {...}} with one of f, i, s, t (a tensor), g (a graph),
 * floats, ints, strings, tensors, graphs. Shapes list integers, strings (dim_param) or false (unknown).
 * Read tensors are aviary tensors (FLOAT16/BFLOAT16 become float32, INT8/INT16/UINT16 int32, UINT32
 * int64, BOOL uint8); `elem_type` on an initializer (or a TENSOR/TENSORS attribute) gives the ONNX data
 * type it was stored as, and on write picks the type to store (default: the tensor's own). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "aviary/onnx.h"
#include "l_onnx.h"

#define LAV_ONNX_ARENA_MT "aviary.onnx.arena_guard"

/* ======================= writing: tables -> messages ======================= */

/* Messages live in an arena owned by a collectable guard, so an error raised
 * half-way through a table frees everything built so far. */
typedef struct {
    av_onnx_arena *a;
} wr_ctx;

static void *wr_alloc(lua_State *L, wr_ctx *w, size_t n) {
    void *p = av_onnx_arena_alloc(w->a, n);
    if (!p) lav_check_rc(L, -1);
    return p;
}

static const char *type_of(lua_State *L, int idx) {
    if (lav_is_tensor(L, idx)) return "a tensor";
    return luaL_typename(L, idx);
}

/* the string field `key` of the table at tbl, copied; NULL when nil and !required */
static char *get_str(lua_State *L, wr_ctx *w, int tbl, const char *key, bool required, const char *where) {
    lua_getfield(L, tbl, key);
    char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);
        s = av_onnx_arena_strndup(w->a, v, len);
        if (!s) lav_check_rc(L, -1);
    } else if (!lua_isnil(L, -1) || required) {
        lav_error(L, "%s.%s must be a string, got %s", where, key, type_of(L, -1));
    }
    lua_pop(L, 1);
    return s;
}

static lua_Integer to_int(lua_State *L, int idx, const char *where, const char *key) {
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok || lua_type(L, idx) != LUA_TNUMBER)
        lav_error(L, "%s.%s must be an integer, got %s", where, key,
                  lua_type(L, idx) == LUA_TNUMBER ? "a non-integral number" : type_of(L, idx));
    return v;
}

/* integer field; returns false when nil */
static bool get_int(lua_State *L, int tbl, const char *key, const char *where, lua_Integer *out) {
    lua_getfield(L, tbl, key);
    bool has = !lua_isnil(L, -1);
    if (has) *out = to_int(L, -1, where, key);
    lua_pop(L, 1);
    return has;
}

/* pushes the array field `key` (or nothing when nil, returning 0 and pushing nil) and returns its length */
static size_t get_array(lua_State *L, int tbl, const char *key, const char *where) {
    lua_getfield(L, tbl, key);
    if (lua_isnil(L, -1)) return 0;
    if (!lua_istable(L, -1)) lav_error(L, "%s.%s must be a table (array), got %s", where, key, type_of(L, -1));
    return (size_t)lua_rawlen(L, -1);
}

/* element i (1-based) of the array at arr must be a table; pushes it */
static int get_elem_table(lua_State *L, int arr, size_t i, const char *where, const char *key) {
    lua_rawgeti(L, arr, (lua_Integer)i);
    if (!lua_istable(L, -1))
        lav_error(L, "%s.%s[%d] must be a table, got %s", where, key, (int)i, type_of(L, -1));
    return lua_gettop(L);
}

static char **get_str_array(lua_State *L, wr_ctx *w, int tbl, const char *key, const char *where, size_t *n) {
    size_t len = get_array(L, tbl, key, where);
    int arr = lua_gettop(L);
    char **out = wr_alloc(L, w, (len ? len : 1) * sizeof *out);
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, arr, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            lav_error(L, "%s.%s[%d] must be a string, got %s", where, key, (int)i + 1, type_of(L, -1));
        size_t sl;
        const char *s = lua_tolstring(L, -1, &sl);
        out[i] = av_onnx_arena_strndup(w->a, s, sl);
        if (!out[i]) lav_check_rc(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *n = len;
    return out;
}

static Onnx__TensorProto *build_tensor(lua_State *L, wr_ctx *w, int idx, int elem_type, const char *where) {
    av_tensor *t = lav_to_tensor(L, idx);
    if (!t) lav_error(L, "%s must be a tensor, got %s", where, lav_is_tensor(L, idx) ? "a closed tensor" : type_of(L, idx));
    Onnx__TensorProto *tp = wr_alloc(L, w, sizeof *tp);
    *tp = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    if (av_onnx_tensor_from_av(tp, t, elem_type, w->a, where)) lav_check_rc(L, -1);
    return tp;
}

static int get_elem_type(lua_State *L, int tbl, const char *where) {
    lua_Integer e = 0;
    if (get_int(L, tbl, "elem_type", where, &e) && (e < 0 || e > INT_MAX))
        lav_error(L, "%s.elem_type %lld is not an ONNX data type", where, (long long)e);
    return (int)e;
}

static Onnx__GraphProto *build_graph(lua_State *L, wr_ctx *w, int tbl, const char *where, int depth);

static Onnx__AttributeProto *build_attribute(lua_State *L, wr_ctx *w, int tbl, const char *where, int depth) {
    Onnx__AttributeProto *a = wr_alloc(L, w, sizeof *a);
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = get_str(L, w, tbl, "name", true, where);
    a->ref_attr_name = get_str(L, w, tbl, "ref_attr_name", false, where);
    a->doc_string = get_str(L, w, tbl, "doc_string", false, where);
    int type = 0;
    lua_getfield(L, tbl, "type");
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        for (int k = 1; k < N_ATTR_TYPES; k++)
            if (!strcmp(s, attr_type_names[k])) type = k;
        if (!type) lav_error(L, "%s.type '%s' is not an attribute type (FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, "
                             "INTS, STRINGS, TENSORS, GRAPHS)", where, s);
    } else if (lua_isnil(L, -1)) {
        static const char *const fields[] = {"f", "i", "s", "t", "g", "floats", "ints", "strings", "tensors", "graphs"};
        for (int k = 0; k < 10 && !type; k++) {
            lua_getfield(L, tbl, fields[k]);
            if (!lua_isnil(L, -1)) type = k + 1;
            lua_pop(L, 1);
        }
        if (!type) lav_error(L, "%s has no type and no value (f, i, s, t, g, floats, ints, strings, tensors, graphs)", where);
    } else {
        lav_error(L, "%s.type must be a string such as \"INTS\", got %s", where, type_of(L, -1));
    }
    lua_pop(L, 1);
    a->has_type = 1;
    a->type = (Onnx__AttributeProto__AttributeType)type;
    char sub[400];
    switch (type) {
    case 1: {
        lua_getfield(L, tbl, "f");
        if (lua_type(L, -1) != LUA_TNUMBER) lav_error(L, "%s.f must be a number, got %s", where, type_of(L, -1));
        a->has_f = 1;
        a->f = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
        break;
    }
    case 2: {
        lua_Integer v = 0;
        if (!get_int(L, tbl, "i", where, &v)) lav_error(L, "%s.i must be an integer, got nil", where);
        a->has_i = 1;
        a->i = v;
        break;
    }
    case 3: {
        lua_getfield(L, tbl, "s");
        if (lua_type(L, -1) != LUA_TSTRING) lav_error(L, "%s.s must be a string, got %s", where, type_of(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        a->has_s = 1;
        a->s.len = len;
        a->s.data = (uint8_t *)av_onnx_arena_strndup(w->a, s, len);
        if (!a->s.data) lav_check_rc(L, -1);
        lua_pop(L, 1);
        break;
    }
    case 4: {
        int et = get_elem_type(L, tbl, where);
        lua_getfield(L, tbl, "t");
        snprintf(sub, sizeof sub, "%.300s.t", where);
        a->t = build_tensor(L, w, lua_gettop(L), et, sub);
        lua_pop(L, 1);
        break;
    }
    case 5:
        lua_getfield(L, tbl, "g");
        snprintf(sub, sizeof sub, "%.300s.g", where);
        if (!lua_istable(L, -1)) lav_error(L, "%s must be a graph table, got %s", sub, type_of(L, -1));
        a->g = build_graph(L, w, lua_gettop(L), sub, depth + 1);
        lua_pop(L, 1);
        break;
    case 6: {
        size_t n = get_array(L, tbl, "floats", where);
        int arr = lua_gettop(L);
        a->n_floats = n;
        a->floats = wr_alloc(L, w, (n ? n : 1) * sizeof *a->floats);
        for (size_t k = 0; k < n; k++) {
            lua_rawgeti(L, arr, (lua_Integer)k + 1);
            if (lua_type(L, -1) != LUA_TNUMBER)
                lav_error(L, "%s.floats[%d] must be a number, got %s", where, (int)k + 1, type_of(L, -1));
            a->floats[k] = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    }
    case 7: {
        size_t n = get_array(L, tbl, "ints", where);
        int arr = lua_gettop(L);
        a->n_ints = n;
        a->ints = wr_alloc(L, w, (n ? n : 1) * sizeof *a->ints);
        for (size_t k = 0; k < n; k++) {
            lua_rawgeti(L, arr, (lua_Integer)k + 1);
            snprintf(sub, sizeof sub, "ints[%d]", (int)k + 1);
            a->ints[k] = to_int(L, -1, where, sub);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    }
    case 8: {
        size_t n = get_array(L, tbl, "strings", where);
        int arr = lua_gettop(L);
        a->n_strings = n;
        a->strings = wr_alloc(L, w, (n ? n : 1) * sizeof *a->strings);
        for (size_t k = 0; k < n; k++) {
            lua_rawgeti(L, arr, (lua_Integer)k + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                lav_error(L, "%s.strings[%d] must be a string, got %s", where, (int)k + 1, type_of(L, -1));
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            a->strings[k].len = len;
            a->strings[k].data = (uint8_t *)av_onnx_arena_strndup(w->a, s, len);
            if (!a->strings[k].data) lav_check_rc(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    }
    case 9: {
        int et = get_elem_type(L, tbl, where);
        size_t n = get_array(L, tbl, "tensors", where);
        int arr = lua_gettop(L);
        a->n_tensors = n;
        a->tensors = wr_alloc(L, w, (n ? n : 1) * sizeof *a->tensors);
        for (size_t k = 0; k < n; k++) {
            lua_rawgeti(L, arr, (lua_Integer)k + 1);
            snprintf(sub, sizeof sub, "%.300s.tensors[%d]", where, (int)k + 1);
            a->tensors[k] = build_tensor(L, w, lua_gettop(L), et, sub);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    }
    case 10: {
        size_t n = get_array(L, tbl, "graphs", where);
        int arr = lua_gettop(L);
        a->n_graphs = n;
        a->graphs = wr_alloc(L, w, (n ? n : 1) * sizeof *a->graphs);
        for (size_t k = 0; k < n; k++) {
            snprintf(sub, sizeof sub, "%.300s.graphs", where);
            int gt = get_elem_table(L, arr, k + 1, where, "graphs");
            snprintf(sub, sizeof sub, "%.300s.graphs[%d]", where, (int)k + 1);
            a->graphs[k] = build_graph(L, w, gt, sub, depth + 1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    }
    default:
        lav_error(L, "%s.type %s cannot be written by aviary", where, attr_type_names[type]);
    }
    return a;
}

static Onnx__ValueInfoProto *build_value_info(lua_State *L, wr_ctx *w, int tbl, const char *where) {
    Onnx__ValueInfoProto *vi = wr_alloc(L, w, sizeof *vi);
    *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    vi->name = get_str(L, w, tbl, "name", true, where);
    vi->doc_string = get_str(L, w, tbl, "doc_string", false, where);
    lua_Integer et = 0;
    bool has_et = get_int(L, tbl, "elem_type", where, &et);
    lua_getfield(L, tbl, "shape");
    bool has_shape = !lua_isnil(L, -1);
    if (!has_et && !has_shape) {
        lua_pop(L, 1);
        return vi;
    }
    Onnx__TypeProto *tp = wr_alloc(L, w, sizeof *tp);
    *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    Onnx__TypeProto__Tensor *tt = wr_alloc(L, w, sizeof *tt);
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    if (has_et) {
        if (et < 0 || et > INT_MAX) lav_error(L, "%s.elem_type %lld is not an ONNX data type", where, (long long)et);
        tt->has_elem_type = 1;
        tt->elem_type = (int32_t)et;
    }
    if (has_shape) {
        int arr = lua_gettop(L);
        if (!lua_istable(L, arr)) lav_error(L, "%s.shape must be a table, got %s", where, type_of(L, arr));
        size_t n = (size_t)lua_rawlen(L, arr);
        Onnx__TensorShapeProto *sh = wr_alloc(L, w, sizeof *sh);
        *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
        sh->n_dim = n;
        sh->dim = wr_alloc(L, w, (n ? n : 1) * sizeof *sh->dim);
        for (size_t d = 0; d < n; d++) {
            Onnx__TensorShapeProto__Dimension *dim = wr_alloc(L, w, sizeof *dim);
            *dim = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
            lua_rawgeti(L, arr, (lua_Integer)d + 1);
            int lt = lua_type(L, -1);
            if (lt == LUA_TSTRING) {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                dim->dim_param = av_onnx_arena_strndup(w->a, s, len);
                if (!dim->dim_param) lav_check_rc(L, -1);
            } else if (lt == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
                dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE__NOT_SET;
            } else if (lt == LUA_TNUMBER) {
                char key[32];
                snprintf(key, sizeof key, "shape[%d]", (int)d + 1);
                lua_Integer v = to_int(L, -1, where, key);
                if (v < 0) lav_error(L, "%s.%s is %lld; dims must be >= 0 (or a name, or false)", where, key, (long long)v);
                dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                dim->dim_value = v;
            } else {
                lav_error(L, "%s.shape[%d] must be an integer, a string or false, got %s", where, (int)d + 1,
                          type_of(L, -1));
            }
            lua_pop(L, 1);
            sh->dim[d] = dim;
        }
        tt->shape = sh;
    }
    lua_pop(L, 1);
    return vi;
}

static Onnx__NodeProto *build_node(lua_State *L, wr_ctx *w, int tbl, const char *where, int depth) {
    Onnx__NodeProto *n = wr_alloc(L, w, sizeof *n);
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    n->op_type = get_str(L, w, tbl, "op_type", true, where);
    n->name = get_str(L, w, tbl, "name", false, where);
    n->domain = get_str(L, w, tbl, "domain", false, where);
    n->doc_string = get_str(L, w, tbl, "doc_string", false, where);
    n->input = get_str_array(L, w, tbl, "input", where, &n->n_input);
    n->output = get_str_array(L, w, tbl, "output", where, &n->n_output);
    size_t na = get_array(L, tbl, "attribute", where);
    int arr = lua_gettop(L);
    n->n_attribute = na;
    n->attribute = wr_alloc(L, w, (na ? na : 1) * sizeof *n->attribute);
    char sub[400];
    for (size_t k = 0; k < na; k++) {
        int at = get_elem_table(L, arr, k + 1, where, "attribute");
        snprintf(sub, sizeof sub, "%.300s.attribute[%d]", where, (int)k + 1);
        n->attribute[k] = build_attribute(L, w, at, sub, depth);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

static Onnx__ValueInfoProto **build_vi_list(lua_State *L, wr_ctx *w, int tbl, const char *key, const char *where,
                                            size_t *count) {
    size_t n = get_array(L, tbl, key, where);
    int arr = lua_gettop(L);
    Onnx__ValueInfoProto **out = wr_alloc(L, w, (n ? n : 1) * sizeof *out);
    char sub[400];
    for (size_t i = 0; i < n; i++) {
        int vt = get_elem_table(L, arr, i + 1, where, key);
        snprintf(sub, sizeof sub, "%.300s.%s[%d]", where, key, (int)i + 1);
        out[i] = build_value_info(L, w, vt, sub);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *count = n;
    return out;
}

static Onnx__GraphProto *build_graph(lua_State *L, wr_ctx *w, int tbl, const char *where, int depth) {
    if (depth > MAX_GRAPH_DEPTH) lav_error(L, "%s: subgraphs nest deeper than %d levels", where, MAX_GRAPH_DEPTH);
    luaL_checkstack(L, 12, "ONNX graph nesting");
    Onnx__GraphProto *g = wr_alloc(L, w, sizeof *g);
    *g = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    g->name = get_str(L, w, tbl, "name", false, where);
    g->doc_string = get_str(L, w, tbl, "doc_string", false, where);
    char sub[400];

    size_t nn = get_array(L, tbl, "node", where);
    int arr = lua_gettop(L);
    g->n_node = nn;
    g->node = wr_alloc(L, w, (nn ? nn : 1) * sizeof *g->node);
    for (size_t i = 0; i < nn; i++) {
        int nt = get_elem_table(L, arr, i + 1, where, "node");
        snprintf(sub, sizeof sub, "%.300s.node[%d]", where, (int)i + 1);
        g->node[i] = build_node(L, w, nt, sub, depth);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    size_t ni = get_array(L, tbl, "initializer", where);
    arr = lua_gettop(L);
    g->n_initializer = ni;
    g->initializer = wr_alloc(L, w, (ni ? ni : 1) * sizeof *g->initializer);
    for (size_t i = 0; i < ni; i++) {
        int it = get_elem_table(L, arr, i + 1, where, "initializer");
        snprintf(sub, sizeof sub, "%.300s.initializer[%d]", where, (int)i + 1);
        char *name = get_str(L, w, it, "name", true, sub);
        int et = get_elem_type(L, it, sub);
        char what[400];
        snprintf(what, sizeof what, "%.150s (initializer '%.200s').tensor", sub, name);
        lua_getfield(L, it, "tensor");
        g->initializer[i] = build_tensor(L, w, lua_gettop(L), et, what);
        g->initializer[i]->name = name;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    g->input = build_vi_list(L, w, tbl, "input", where, &g->n_input);
    g->output = build_vi_list(L, w, tbl, "output", where, &g->n_output);
    g->value_info = build_vi_list(L, w, tbl, "value_info", where, &g->n_value_info);
    return g;
}

static Onnx__ModelProto *build_model(lua_State *L, wr_ctx *w, int tbl) {
    const char *where = "model";
    Onnx__ModelProto *m = wr_alloc(L, w, sizeof *m);
    *m = (Onnx__ModelProto)ONNX__MODEL_PROTO__INIT;
    lua_Integer v = 8;
    get_int(L, tbl, "ir_version", where, &v);
    m->has_ir_version = 1;
    m->ir_version = v;
    m->producer_name = get_str(L, w, tbl, "producer_name", false, where);
    m->producer_version = get_str(L, w, tbl, "producer_version", false, where);
    m->domain = get_str(L, w, tbl, "domain", false, where);
    m->doc_string = get_str(L, w, tbl, "doc_string", false, where);
    if (get_int(L, tbl, "model_version", where, &v)) {
        m->has_model_version = 1;
        m->model_version = v;
    }
    char sub[200];
    size_t n = get_array(L, tbl, "opset_import", where);
    int arr = lua_gettop(L);
    m->n_opset_import = n;
    m->opset_import = wr_alloc(L, w, (n ? n : 1) * sizeof *m->opset_import);
    for (size_t i = 0; i < n; i++) {
        int ot = get_elem_table(L, arr, i + 1, where, "opset_import");
        snprintf(sub, sizeof sub, "model.opset_import[%d]", (int)i + 1);
        Onnx__OperatorSetIdProto *o = wr_alloc(L, w, sizeof *o);
        *o = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
        o->domain = get_str(L, w, ot, "domain", false, sub);
        if (!o->domain) o->domain = av_onnx_arena_strndup(w->a, "", 0);
        if (!get_int(L, ot, "version", sub, &v)) lav_error(L, "%s.version must be an integer, got nil", sub);
        o->has_version = 1;
        o->version = v;
        m->opset_import[i] = o;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    n = get_array(L, tbl, "metadata_props", where);
    arr = lua_gettop(L);
    m->n_metadata_props = n;
    m->metadata_props = wr_alloc(L, w, (n ? n : 1) * sizeof *m->metadata_props);
    for (size_t i = 0; i < n; i++) {
        int kt = get_elem_table(L, arr, i + 1, where, "metadata_props");
        snprintf(sub, sizeof sub, "model.metadata_props[%d]", (int)i + 1);
        Onnx__StringStringEntryProto *kv = wr_alloc(L, w, sizeof *kv);
        *kv = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        kv->key = get_str(L, w, kt, "key", true, sub);
        kv->value = get_str(L, w, kt, "value", true, sub);
        m->metadata_props[i] = kv;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, tbl, "graph");
    if (!lua_istable(L, -1)) lav_error(L, "model.graph must be a table, got %s", type_of(L, -1));
    m->graph = build_graph(L, w, lua_gettop(L), "model.graph", 0);
    lua_pop(L, 1);
    return m;
}

static int arena_guard_gc(lua_State *L) {
    av_onnx_arena **g = luaL_checkudata(L, 1, LAV_ONNX_ARENA_MT);
    av_onnx_arena_free(*g);
    *g = NULL;
    return 0;
}

static av_onnx_arena **new_arena_guard(lua_State *L) {
    av_onnx_arena **g = lua_newuserdatauv(L, sizeof *g, 0);
    *g = NULL;
    luaL_setmetatable(L, LAV_ONNX_ARENA_MT);
    *g = av_onnx_arena_new();
    if (!*g) lav_check_rc(L, -1);
    return g;
}

static int l_encode(lua_State *L) {
    if (!lua_istable(L, 1)) lav_error(L, "expected a model table as argument 1, got %s", type_of(L, 1));
    lav_no_args_after(L, 1);
    av_onnx_arena **g = new_arena_guard(L);
    wr_ctx w = {*g};
    Onnx__ModelProto *m = build_model(L, &w, 1);
    size_t n = 0;
    if (av_onnx_packed_size(m, &n)) lav_check_rc(L, -1);
    void *buf = lua_newuserdatauv(L, n ? n : 1, 0);
    av_onnx_pack(m, buf);
    lua_pushlstring(L, buf, n);
    av_onnx_arena_free(*g);
    *g = NULL;
    return 1;
}

static int l_write(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING)
        lav_error(L, "expected a file path (string) as argument 1, got %s", luaL_typename(L, 1));
    if (!lua_istable(L, 2)) lav_error(L, "expected a model table as argument 2, got %s", type_of(L, 2));
    lav_no_args_after(L, 2);
    const char *path = lua_tostring(L, 1);
    av_onnx_arena **g = new_arena_guard(L);
    wr_ctx w = {*g};
    Onnx__ModelProto *m = build_model(L, &w, 2);
    lav_check_rc(L, av_onnx_write(path, m));
    av_onnx_arena_free(*g);
    *g = NULL;
    lua_pushvalue(L, 1);
    return 1;
}

void lav_open_onnx(lua_State *L, int mod, int methods) {
    (void)methods;
    if (luaL_newmetatable(L, LAV_ONNX_ARENA_MT)) {
        lua_pushcfunction(L, arena_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"write", l_write}, {"encode", l_encode}, {NULL, NULL}};
    lua_newtable(L);
    int t = lua_gettop(L);
    lav_setfuncs(L, t, fns);
    lav_onnx_open_read(L, t);
    lua_newtable(L);
    for (int code = 1; av_onnx_elem_name(code); code++) {
        lua_pushinteger(L, code);
        lua_setfield(L, -2, av_onnx_elem_name(code));
    }
    lua_setfield(L, t, "ELEM");
    lua_setfield(L, mod, "_onnx");
}
