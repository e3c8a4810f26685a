/* Convolution through oneDNN (Debian's libdnnl), float32 only, in builds with
 * AV_WITH_DNNL. oneDNN's JIT kernels want blocked layouts (nChw8c on AVX2,
 * nChw16c on AVX-512): each call reorders the NCHW operands into the layouts
 * the primitive chose and the result back, as PyTorch does. Primitives and
 * reorders are created once per shape and kept (like cuDNN descriptors in
 * cudnn.torch); conv.c decides per shape whether this or im2col runs. */
#ifdef AV_WITH_DNNL
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include "conv_impl.h"

enum { DIR_FWD = 0, DIR_BWD_DATA = 1, DIR_BWD_WEIGHT = 2 };

/* one operand of a primitive: the user's plain layout, the primitive's, and
 * the reorder between them (NULL when they agree) */
typedef struct {
    dnnl_memory_desc_t user, prim;
    dnnl_primitive_t reorder;
    size_t bytes; /* of the primitive's layout */
} operand;

typedef struct {
    conv_geom g;
    int dir, threads; /* oneDNN sizes its work split when the primitive is made */
    bool bias;
    bool ok;
    dnnl_primitive_t prim;
    operand op[3]; /* fwd: src, weights, dst; bwd data: diff_src, weights, diff_dst;
                      bwd weight: src, diff_weights, diff_dst */
} entry;

#define CACHE_SIZE 256
static entry *cache[CACHE_SIZE];
static int cache_next;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool engine_ok;

static void init_engine(void) {
    engine_ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
                dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success;
}

static bool same_geom(const conv_geom *a, const conv_geom *b) { return !memcmp(a, b, sizeof *a); }

static void free_entry(entry *e) {
    if (!e) return;
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < 3; i++)
        if (e->op[i].reorder) dnnl_primitive_destroy(e->op[i].reorder);
    free(e);
}

/* the reorder for one operand: user -> prim for inputs, prim -> user for outputs */
static bool make_operand(operand *o, const dnnl_memory_desc_t *prim, bool output) {
    o->prim = *prim;
    o->bytes = dnnl_memory_desc_get_size(prim);
    o->reorder = NULL;
    if (dnnl_memory_desc_equal(&o->user, &o->prim)) return true;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = output ? &o->prim : &o->user, *to = output ? &o->user : &o->prim;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL) != dnnl_success) return false;
    bool ok = dnnl_primitive_create(&o->reorder, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    return ok;
}

static entry *build(const conv_geom *g, int dir, bool bias) {
    entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->g = *g;
    e->dir = dir;
    e->threads = av_get_num_threads();
    e->bias = bias;
    dnnl_dims_t xd = {g->N, g->C, g->H, g->W}, yd = {g->N, g->Co, g->Ho, g->Wo}, bd = {g->Co};
    dnnl_dims_t wd = {g->G, g->Cog, g->Cig, g->kh, g->kw}, wd4 = {g->Co, g->Cig, g->kh, g->kw};
    dnnl_dims_t st = {g->sh, g->sw}, dl = {g->dh - 1, g->dw - 1}, pl = {g->ph, g->pw}, pr = {g->pbh, g->pbw};
    const bool grouped = g->G > 1;
    dnnl_memory_desc_t x_any, w_any, y_any, b_md;
    dnnl_memory_desc_init_by_tag(&e->op[0].user, 4, xd, dnnl_f32, dnnl_nchw);
    if (grouped) dnnl_memory_desc_init_by_tag(&e->op[1].user, 5, wd, dnnl_f32, dnnl_goihw);
    else dnnl_memory_desc_init_by_tag(&e->op[1].user, 4, wd4, dnnl_f32, dnnl_oihw);
    dnnl_memory_desc_init_by_tag(&e->op[2].user, 4, yd, dnnl_f32, dnnl_nchw);
    dnnl_memory_desc_init_by_tag(&x_any, 4, xd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&w_any, grouped ? 5 : 4, grouped ? wd : wd4, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x);

    dnnl_convolution_desc_t fwd_d, d;
    dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
    bool ok = dnnl_dilated_convolution_forward_desc_init(&fwd_d, dnnl_forward_training, dnnl_convolution_direct, &x_any,
                                                         &w_any, bias ? &b_md : NULL, &y_any, st, dl, pl,
                                                         pr) == dnnl_success &&
              dnnl_primitive_desc_create(&fwd_pd, &fwd_d, NULL, engine, NULL) == dnnl_success;
    if (ok && dir == DIR_FWD) {
        pd = fwd_pd;
        fwd_pd = NULL;
    } else if (ok && dir == DIR_BWD_DATA) {
        ok = dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &x_any, &w_any, &y_any, st,
                                                              dl, pl, pr) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &d, NULL, engine, fwd_pd) == dnnl_success;
    } else if (ok) {
        ok = dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &x_any, &w_any,
                                                                 bias ? &b_md : NULL, &y_any, st, dl, pl,
                                                                 pr) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &d, NULL, engine, fwd_pd) == dnnl_success;
    }
    if (ok) {
        static const dnnl_query_t q[3][3] = {
            {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
            {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
            {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md}};
        /* outputs: dst (fwd), diff_src (bwd data), diff_weights (bwd weight) */
        static const bool out[3][3] = {{false, false, true}, {true, false, false}, {false, true, false}};
        for (int i = 0; i < 3 && ok; i++) {
            const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q[dir][i], 0);
            ok = md && make_operand(&e->op[i], md, out[dir][i]);
        }
        ok = ok && dnnl_primitive_create(&e->prim, pd) == dnnl_success;
    }
    if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    e->ok = ok;
    return e;
}

/* the cached entry for this call, built on first use */
static entry *lookup(const conv_geom *g, int dir, bool bias) {
    pthread_once(&once, init_engine);
    if (!engine_ok) return NULL;
    pthread_mutex_lock(&cache_lock);
    entry *e = NULL;
    int threads = av_get_num_threads();
    for (int i = 0; i < CACHE_SIZE && cache[i]; i++)
        if (cache[i]->dir == dir && cache[i]->bias == bias && cache[i]->threads == threads && same_geom(&cache[i]->g, g)) {
            e = cache[i];
            break;
        }
    if (!e && (e = build(g, dir, bias))) {
        free_entry(cache[cache_next]); /* round robin once full */
        cache[cache_next] = e;
        cache_next = (cache_next + 1) % CACHE_SIZE;
    }
    pthread_mutex_unlock(&cache_lock);
    return e && e->ok ? e : NULL;
}

static dnnl_memory_t wrap(const dnnl_memory_desc_t *md, const void *p) {
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, engine, (void *)p) != dnnl_success) return NULL;
    return m;
}

static bool exec_reorder(dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return dnnl_primitive_execute(r, stream, 2, args) == dnnl_success;
}

/* runs entry e: ptr[i] are the user's buffers of the three operands, extra the
 * bias (forward) or bias gradient (backward weight), or NULL */
static int run(entry *e, const int arg_ids[3], void *const ptr[3], int extra_id, void *extra) {
    static const bool out[3][3] = {{false, false, true}, {true, false, false}, {false, true, false}};
    dnnl_memory_t user[3] = {0}, prim[3] = {0}, bm = NULL;
    av_tensor *hold[3] = {0};
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++) {
        operand *o = &e->op[i];
        ok = (user[i] = wrap(&o->user, ptr[i])) != NULL;
        if (!ok) break;
        if (!o->reorder) { prim[i] = user[i]; continue; }
        int64_t n = (int64_t)((o->bytes + 3) / 4);
        ok = (hold[i] = av_empty(1, &n, AV_F32)) && (prim[i] = wrap(&o->prim, av_data(hold[i])));
        if (ok && !out[e->dir][i]) ok = exec_reorder(o->reorder, user[i], prim[i]);
    }
    if (ok && extra) {
        dnnl_memory_desc_t bmd;
        dnnl_memory_desc_init_by_tag(&bmd, 1, (dnnl_dims_t){e->g.Co}, dnnl_f32, dnnl_x);
        ok = (bm = wrap(&bmd, extra)) != NULL;
    }
    if (ok) {
        dnnl_exec_arg_t args[4];
        int na = 0;
        for (int i = 0; i < 3; i++) args[na++] = (dnnl_exec_arg_t){arg_ids[i], prim[i]};
        if (bm) args[na++] = (dnnl_exec_arg_t){extra_id, bm};
        ok = dnnl_primitive_execute(e->prim, stream, na, args) == dnnl_success;
    }
    for (int i = 0; i < 3 && ok; i++)
        if (e->op[i].reorder && out[e->dir][i]) ok = exec_reorder(e->op[i].reorder, prim[i], user[i]);
    if (ok) ok = dnnl_stream_wait(stream) == dnnl_success;
    for (int i = 0; i < 3; i++) {
        if (prim[i] && prim[i] != user[i]) dnnl_memory_destroy(prim[i]);
        if (user[i]) dnnl_memory_destroy(user[i]);
        av_release(hold[i]);
    }
    if (bm) dnnl_memory_destroy(bm);
    return ok ? 0 : av_fail("conv2d: oneDNN failed to run a convolution");
}

int conv_dnnl_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y) {
    if (g->dt != AV_F32) return 1;
    entry *e = lookup(g, DIR_FWD, b != NULL);
    if (!e) return 1;
    static const int ids[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    return run(e, ids, (void *const[]){(void *)x, (void *)w, y}, DNNL_ARG_BIAS, (void *)b);
}

int conv_dnnl_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx) {
    if (g->dt != AV_F32) return 1;
    entry *e = lookup(g, DIR_BWD_DATA, false);
    if (!e) return 1;
    static const int ids[3] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST};
    return run(e, ids, (void *const[]){gx, (void *)w, (void *)gy}, 0, NULL);
}

int conv_dnnl_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw, void *gb) {
    if (g->dt != AV_F32) return 1;
    entry *e = lookup(g, DIR_BWD_WEIGHT, gb != NULL);
    if (!e) return 1;
    static const int ids[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST};
    return run(e, ids, (void *const[]){(void *)x, gw, (void *)gy}, DNNL_ARG_DIFF_BIAS, gb);
}

#else
typedef int conv_dnnl_unused; /* ISO C wants a declaration in every file */
#endif
