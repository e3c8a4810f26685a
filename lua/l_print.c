/* Tensor printing in Torch7's layout: rows of right-aligned values, 2-d slices
 * of higher-dim tensors headed "(i,j,.,.) =", a footer naming type and size.
 * Large tensors (over 1000 elements) show the first and last 3 entries of
 * each dimension with "..." between, as PyTorch does. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "binding.h"
#include "aviary/cuda.h"

#define EDGE 3
#define SUMMARY_THRESHOLD 1000
#define LINE_WIDTH 80

typedef struct {
    const av_tensor *t;
    bool summarize, is_float;
    enum { FMT_INT, FMT_FIXED, FMT_SCI } fmt;
    int width;
} printer;

static bool shown(const printer *p, int d, int64_t i) {
    return !p->summarize || p->t->shape[d] <= 2 * EDGE || i < EDGE || i >= p->t->shape[d] - EDGE;
}

static int format_value(const printer *p, double v, char *buf, size_t n) {
    if (!p->is_float) return snprintf(buf, n, "%lld", (long long)v);
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
    switch (p->fmt) {
    case FMT_INT: return snprintf(buf, n, "%.0f", v);
    case FMT_FIXED: return snprintf(buf, n, "%.4f", v);
    default: return snprintf(buf, n, "%.4e", v);
    }
}

/* visits every displayed element to choose a format and a common width */
static void scan(printer *p, int d, int64_t *idx, double *maxa, double *mina, bool *all_int) {
    const av_tensor *t = p->t;
    if (d == t->ndim) {
        double v = av_get(t, idx);
        if (!isfinite(v)) return;
        double a = fabs(v);
        if (a > *maxa) *maxa = a;
        if (a > 0 && a < *mina) *mina = a;
        if (v != floor(v)) *all_int = false;
        return;
    }
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (!shown(p, d, i)) continue;
        idx[d] = i;
        scan(p, d + 1, idx, maxa, mina, all_int);
    }
}

static void measure(printer *p, int d, int64_t *idx) {
    const av_tensor *t = p->t;
    if (d == t->ndim) {
        char b[64];
        int w = format_value(p, av_get(t, idx), b, sizeof b);
        if (w > p->width) p->width = w;
        return;
    }
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (!shown(p, d, i)) continue;
        idx[d] = i;
        measure(p, d + 1, idx);
    }
}

static void add_value(luaL_Buffer *B, const printer *p, const int64_t *idx) {
    char b[64];
    format_value(p, av_get(p->t, idx), b, sizeof b);
    char out[96];
    snprintf(out, sizeof out, "%*s", p->width, b);
    luaL_addstring(B, out);
}

/* one row along the last dim: values separated by a space; wraps long rows */
static void add_row(luaL_Buffer *B, const printer *p, int64_t *idx) {
    int d = p->t->ndim - 1;
    int64_t n = p->t->shape[d];
    int col = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!shown(p, d, i)) {
            if (i == EDGE) { luaL_addstring(B, " ..."); col += 4; }
            continue;
        }
        if (col + p->width + 1 > LINE_WIDTH && col > 0) { luaL_addstring(B, "\n"); col = 0; }
        idx[d] = i;
        luaL_addchar(B, ' ');
        add_value(B, p, idx);
        col += p->width + 1;
    }
}

static void add_matrix(luaL_Buffer *B, const printer *p, int64_t *idx) {
    int d = p->t->ndim - 2;
    for (int64_t i = 0; i < p->t->shape[d]; i++) {
        if (!shown(p, d, i)) {
            if (i == EDGE) luaL_addstring(B, " ...\n");
            continue;
        }
        idx[d] = i;
        add_row(B, p, idx);
        luaL_addchar(B, '\n');
    }
}

static void add_slices(luaL_Buffer *B, const printer *p, int d, int64_t *idx) {
    const av_tensor *t = p->t;
    if (d == t->ndim - 2) {
        char head[160];
        int n = snprintf(head, sizeof head, "(");
        for (int k = 0; k < d && n < (int)sizeof head - 16; k++) n += snprintf(head + n, sizeof head - n, "%lld,", (long long)idx[k] + 1);
        snprintf(head + n, sizeof head - n, ".,.) = \n");
        luaL_addstring(B, head);
        add_matrix(B, p, idx);
        luaL_addchar(B, '\n');
        return;
    }
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (!shown(p, d, i)) {
            if (i == EDGE) luaL_addstring(B, "...\n\n");
            continue;
        }
        idx[d] = i;
        add_slices(B, p, d + 1, idx);
    }
}

int lav_tostring(lua_State *L) {
    lav_box *b = luaL_checkudata(L, 1, LAV_TENSOR_MT);
    if (!b->t) { lua_pushliteral(L, "[aviary.Tensor (closed)]"); return 1; }
    const av_tensor *t = b->t;
    /* a device tensor prints from one host copy (element reads would each be a round trip) */
    av_tensor *host = NULL;
    char devname[32] = "";
    if (av_is_cuda(t)) {
        host = av_to_device(t, (av_device){AV_CPU, 0});
        if (!host) return luaL_error(L, "Tensor.__tostring: %s", av_last_error());
        snprintf(devname, sizeof devname, ", device='%s'", av_device_str(av_device_of(t), (char[16]){0}, 16));
        t = host;
    }
    printer p = {t, av_numel(t) > SUMMARY_THRESHOLD, av_dtype_is_float(t->dtype), FMT_INT, 1};
    int64_t idx[AV_MAX_DIMS] = {0};
    luaL_Buffer B;
    luaL_buffinit(L, &B);
    char size[128];
    int64_t numel = av_numel(t);
    if (numel > 0) {
        double maxa = 0, mina = INFINITY;
        bool all_int = true;
        scan(&p, 0, idx, &maxa, &mina, &all_int);
        if (p.is_float) {
            if (all_int && maxa < 1e9) p.fmt = FMT_INT;
            else if (maxa >= 1e5 || (mina < 1e-4 && mina > 0)) p.fmt = FMT_SCI;
            else p.fmt = FMT_FIXED;
        }
        measure(&p, 0, idx);
        if (t->ndim == 0) { add_value(&B, &p, idx); luaL_addchar(&B, '\n'); }
        else if (t->ndim == 1) { add_row(&B, &p, idx); luaL_addchar(&B, '\n'); }
        else if (t->ndim == 2) add_matrix(&B, &p, idx);
        else add_slices(&B, &p, 0, idx);
    }
    char footer[240];
    if (t->ndim == 0) snprintf(footer, sizeof footer, "[aviary.%s of size ()%s]", av_dtype_tensor_name(t->dtype), devname);
    else snprintf(footer, sizeof footer, "[aviary.%s of size %s%s]", av_dtype_tensor_name(t->dtype), av_shape_str(t, size, sizeof size), devname);
    av_release(host);
    luaL_addstring(&B, footer);
    luaL_pushresult(&B);
    return 1;
}
