/* aviary._manifold: PCA, t-SNE and trustworthiness (runtime/ml/manifold.c).
 * The user module is lua/aviary/manifold.lua, which checks the option tables
 * and builds the PCA object; these functions take plain arguments:
 *
 *   pca_fit(X, k) -> components (k x D f64), mean (D f64), explained_variance (k f64),
 *                    singular_values (k f64), total_variance
 *   pca_transform(X, components, mean [, scale table]) -> N x k f32
 *   tsne(X, opts) -> Y (N x n_components f32), info {kl_divergence, n_iter, learning_rate, seconds, ...}
 *       opts: n_components, perplexity, early_exaggeration, learning_rate (number; nil: auto),
 *       n_iter, n_iter_without_progress, min_grad_norm, method ("barnes_hut" | "exact"), angle,
 *       init ("pca" | "random" | tensor), seed, verbose (bool), progress (function(iter, kl))
 *   conditional_p(X, perplexity [, k]) -> neighbors (N x k i64, 1-based), sqdist (N x k f64), P (N x k f64)
 *   trustworthiness(X, Y, k) -> number
 *
 * Errors are raised as "aviary.manifold.<name>: <message>". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "binding.h"
#include "aviary/manifold.h"

/* raises the message without a position: lua/aviary/manifold.lua re-raises it at the user's call */
__attribute__((noreturn, format(printf, 2, 3))) static void merr(lua_State *L, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_pushstring(L, buf);
    lua_error(L);
    abort(); /* lua_error does not return */
}

/* raises "aviary.manifold.<name>: msg", msg without the runtime's own "<fn>: " prefix */
static int raise_named(lua_State *L, const char *name, const char *msg) {
    const char *colon = strstr(msg, ": ");
    const char *body = msg;
    if (colon && colon - msg < 32 && !memchr(msg, ' ', (size_t)(colon - msg))) body = colon + 2;
    merr(L, "aviary.manifold.%s: %s", name, body);
}

static av_tensor *check_matrix_arg(lua_State *L, int idx, const char *name, const char *what) {
    av_tensor *t = lav_to_tensor(L, idx);
    if (!t)
        merr(L, "aviary.manifold.%s: %s (argument %d) must be a tensor, got %s", name, what, idx,
                   luaL_typename(L, idx));
    return t;
}

static int check_int_arg(lua_State *L, int idx, const char *name, const char *what) {
    if (!lua_isinteger(L, idx)) {
        if (lua_type(L, idx) == LUA_TNUMBER) {
            lua_Number v = lua_tonumber(L, idx);
            if (v == (lua_Number)(long long)v && v > -2147483648.0 && v < 2147483648.0) return (int)v;
        }
        merr(L, "aviary.manifold.%s: %s must be an integer, got %s", name, what, luaL_typename(L, idx));
    }
    lua_Integer v = lua_tointeger(L, idx);
    if (v < -2147483647 || v > 2147483647) merr(L, "aviary.manifold.%s: %s is out of range", name, what);
    return (int)v;
}

static void push_owned(lua_State *L, av_tensor *t, const char *name) {
    if (!t) raise_named(L, name, av_last_error());
    lav_push(L, t);
}

static int m_pca_fit(lua_State *L) {
    av_tensor *X = check_matrix_arg(L, 1, "pca", "X");
    int k = check_int_arg(L, 2, "pca", "n_components");
    av_tensor *c, *mu, *ev, *sv;
    double total = 0;
    if (av_pca_fit(X, k, &c, &mu, &ev, &sv, &total)) return raise_named(L, "pca", av_last_error());
    lav_push(L, c);
    lav_push(L, mu);
    lav_push(L, ev);
    lav_push(L, sv);
    lua_pushnumber(L, total);
    return 5;
}

static int m_pca_transform(lua_State *L) {
    const char *name = "PCA:transform";
    av_tensor *X = check_matrix_arg(L, 1, name, "X");
    av_tensor *c = check_matrix_arg(L, 2, name, "components");
    av_tensor *mu = check_matrix_arg(L, 3, name, "mean");
    double *scale = NULL;
    if (!lua_isnoneornil(L, 4)) {
        if (!lua_istable(L, 4)) merr(L, "aviary.manifold.%s: scale must be a table", name);
        lua_Integer k = luaL_len(L, 4);
        if (k != c->shape[0]) merr(L, "aviary.manifold.%s: scale must have %d entries", name, (int)c->shape[0]);
        scale = lua_newuserdatauv(L, sizeof(double) * (size_t)(k > 0 ? k : 1), 0); /* freed by the GC */
        for (lua_Integer j = 0; j < k; j++) {
            lua_geti(L, 4, j + 1);
            scale[j] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    push_owned(L, av_pca_transform(X, c, mu, scale), name);
    return 1;
}

/* the progress callback calls the Lua function at the registry reference */
typedef struct {
    lua_State *L;
    int fn_idx; /* absolute stack index of the function */
    int failed;
} progress_ctx;

static int progress_cb(void *ud, int iter, double kl) {
    progress_ctx *p = ud;
    lua_State *L = p->L;
    lua_pushvalue(L, p->fn_idx);
    lua_pushinteger(L, iter);
    lua_pushnumber(L, kl);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        p->failed = 1; /* the message stays on the stack */
        av_fail("progress callback failed");
        return 1;
    }
    return 0;
}

static double field_num(lua_State *L, int t, const char *k, double def, int *present) {
    lua_getfield(L, t, k);
    double v = def;
    if (present) *present = 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            merr(L, "aviary.manifold.tsne: option %s must be a number, got %s", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (present) *present = 1;
    }
    lua_pop(L, 1);
    return v;
}

static int m_tsne(lua_State *L) {
    av_tensor *X = check_matrix_arg(L, 1, "tsne", "X");
    av_tsne_opts o;
    av_tsne_opts_default(&o);
    int t = lua_istable(L, 2) ? 2 : 0;
    lua_settop(L, 2);
    progress_ctx pc = {L, 0, 0};
    if (t) {
        int present;
        o.n_components = (int)field_num(L, t, "n_components", o.n_components, NULL);
        o.perplexity = field_num(L, t, "perplexity", o.perplexity, NULL);
        o.early_exaggeration = field_num(L, t, "early_exaggeration", o.early_exaggeration, NULL);
        o.learning_rate = field_num(L, t, "learning_rate", 0, &present);
        if (present && !(o.learning_rate > 0))
            merr(L, "aviary.manifold.tsne: learning_rate must be a positive number or 'auto', got %g",
                       o.learning_rate);
        o.n_iter = (int)field_num(L, t, "n_iter", o.n_iter, NULL);
        o.n_iter_without_progress = (int)field_num(L, t, "n_iter_without_progress", o.n_iter_without_progress, NULL);
        o.min_grad_norm = field_num(L, t, "min_grad_norm", o.min_grad_norm, NULL);
        o.angle = field_num(L, t, "angle", o.angle, NULL);
        double seed = field_num(L, t, "seed", 0, NULL);
        o.seed = (uint64_t)(int64_t)seed;
        lua_getfield(L, t, "verbose");
        o.verbose = lua_toboolean(L, -1) ? 2 : 0;
        lua_pop(L, 1);
        lua_getfield(L, t, "method");
        if (!lua_isnil(L, -1)) {
            const char *m = lua_tostring(L, -1);
            if (m && !strcmp(m, "exact")) o.method = AV_TSNE_EXACT;
            else if (m && !strcmp(m, "barnes_hut")) o.method = AV_TSNE_BARNES_HUT;
            else merr(L, "aviary.manifold.tsne: method must be 'barnes_hut' or 'exact'");
        }
        lua_pop(L, 1);
        lua_getfield(L, t, "init");
        if (lav_is_tensor(L, -1)) o.init_Y = lav_to_tensor(L, -1); /* stays referenced by opts */
        else if (!lua_isnil(L, -1)) {
            const char *m = lua_tostring(L, -1);
            if (m && !strcmp(m, "pca")) o.init = AV_TSNE_INIT_PCA;
            else if (m && !strcmp(m, "random")) o.init = AV_TSNE_INIT_RANDOM;
            else merr(L, "aviary.manifold.tsne: init must be 'pca', 'random' or an N x n_components tensor");
        }
        lua_pop(L, 1);
        lua_getfield(L, t, "progress"); /* stays at index 3 */
        if (lua_isfunction(L, -1)) {
            pc.fn_idx = lua_gettop(L);
            o.progress = progress_cb;
            o.progress_ud = &pc;
        }
    }
    av_tsne_info info;
    memset(&info, 0, sizeof info);
    av_tensor *Y = av_tsne(X, &o, &info);
    if (!Y) {
        if (pc.failed) return lua_error(L); /* the callback's own error */
        return raise_named(L, "tsne", av_last_error());
    }
    lav_push(L, Y);
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, info.kl_divergence);
    lua_setfield(L, -2, "kl_divergence");
    lua_pushinteger(L, info.n_iter);
    lua_setfield(L, -2, "n_iter");
    lua_pushnumber(L, info.learning_rate);
    lua_setfield(L, -2, "learning_rate");
    lua_pushnumber(L, info.seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushnumber(L, info.seconds_affinities);
    lua_setfield(L, -2, "seconds_affinities");
    return 2;
}

static int m_conditional_p(lua_State *L) {
    av_tensor *X = check_matrix_arg(L, 1, "_joint_probabilities", "X");
    if (lua_type(L, 2) != LUA_TNUMBER)
        merr(L, "aviary.manifold._joint_probabilities: perplexity (argument 2) must be a number, got %s",
             luaL_typename(L, 2));
    double perp = lua_tonumber(L, 2);
    int k = lua_isnoneornil(L, 3) ? 0 : check_int_arg(L, 3, "_joint_probabilities", "k");
    av_tensor *nb, *sq, *P;
    if (av_tsne_conditional_p(X, perp, k, &nb, &sq, &P)) return raise_named(L, "_joint_probabilities", av_last_error());
    int64_t *p = av_data(nb), n = av_numel(nb);
    for (int64_t i = 0; i < n; i++) p[i] += 1; /* 1-based for Lua */
    lav_push(L, nb);
    lav_push(L, sq);
    lav_push(L, P);
    return 3;
}

static int m_trustworthiness(lua_State *L) {
    av_tensor *X = check_matrix_arg(L, 1, "trustworthiness", "X");
    av_tensor *Y = check_matrix_arg(L, 2, "trustworthiness", "Y");
    int k = lua_isnoneornil(L, 3) ? 5 : check_int_arg(L, 3, "trustworthiness", "n_neighbors");
    double tw = 0;
    if (av_trustworthiness(X, Y, k, &tw)) return raise_named(L, "trustworthiness", av_last_error());
    lua_pushnumber(L, tw);
    return 1;
}

static const luaL_Reg manifold_funcs[] = {
    {"pca_fit", m_pca_fit},
    {"pca_transform", m_pca_transform},
    {"tsne", m_tsne},
    {"conditional_p", m_conditional_p},
    {"trustworthiness", m_trustworthiness},
    {NULL, NULL},
};

void lav_open_manifold(lua_State *L, int mod, int methods) {
    (void)methods;
    lua_newtable(L);
    lav_setfuncs(L, lua_gettop(L), manifold_funcs);
    lua_setfield(L, mod, "_manifold");
}
