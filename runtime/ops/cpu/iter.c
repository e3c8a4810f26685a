#include <string.h>
#include <omp.h>
#include "iter.h"
#include "aviary/backend.h"

void av_iter_init(av_iter *it, int ndim, const int64_t *shape, int nargs, const av_tensor *const *ops) {
    memset(it, 0, sizeof *it);
    it->nargs = nargs;
    int64_t st[AV_ITER_MAX_ARGS][AV_MAX_DIMS];
    int64_t sh[AV_MAX_DIMS];
    int n = 0;
    it->numel = 1;
    for (int d = 0; d < ndim; d++) it->numel *= shape[d];
    for (int k = 0; k < nargs; k++) {
        it->base[k] = av_data(ops[k]);
        it->esize[k] = (int)av_dtype_size(ops[k]->dtype);
    }
    /* right-align each operand's dims against the output's; drop size-1 dims */
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        sh[n] = shape[d];
        for (int k = 0; k < nargs; k++) {
            const av_tensor *t = ops[k];
            int j = d - (ndim - t->ndim);
            st[k][n] = (j < 0 || t->shape[j] == 1) ? 0 : t->stride[j];
        }
        n++;
    }
    if (n == 0) { /* every dim is 1 (or 0-d): one element */
        it->ndim = 1;
        it->shape[0] = it->numel; /* 1, or 0 if some dim is 0 */
        for (int k = 0; k < nargs; k++) it->stride[k][0] = 1;
        return;
    }
    /* merge dim i into i+1 when contiguous for all operands */
    int m = 0;
    it->shape[0] = sh[0];
    for (int k = 0; k < nargs; k++) it->stride[k][0] = st[k][0];
    for (int d = 1; d < n; d++) {
        bool merge = true;
        for (int k = 0; k < nargs && merge; k++)
            merge = it->stride[k][m] == st[k][d] * sh[d];
        if (merge) {
            it->shape[m] *= sh[d];
            for (int k = 0; k < nargs; k++) it->stride[k][m] = st[k][d];
        } else {
            m++;
            it->shape[m] = sh[d];
            for (int k = 0; k < nargs; k++) it->stride[k][m] = st[k][d];
        }
    }
    it->ndim = m + 1;
}

/* runs elements [begin, end) of the iteration in strips */
void av_iter_run_range(const av_iter *it, int64_t begin, int64_t end, av_strip_fn fn, void *ctx) {
    int nd = it->ndim, na = it->nargs;
    int64_t inner = it->shape[nd - 1];
    if (inner == 0 || begin >= end) return;
    int64_t idx[AV_MAX_DIMS];
    int64_t rem = begin;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    char *p[AV_ITER_MAX_ARGS];
    int64_t s[AV_ITER_MAX_ARGS];
    for (int k = 0; k < na; k++) s[k] = it->stride[k][nd - 1];
    int64_t pos = begin;
    while (pos < end) {
        for (int k = 0; k < na; k++) {
            int64_t off = 0;
            for (int d = 0; d < nd; d++) off += idx[d] * it->stride[k][d];
            p[k] = it->base[k] + off * it->esize[k];
        }
        int64_t n = inner - idx[nd - 1];
        if (n > end - pos) n = end - pos;
        fn(p, s, n, ctx);
        pos += n;
        idx[nd - 1] = 0;
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < it->shape[d]) break;
            idx[d] = 0;
        }
    }
}

void av_iter_run_serial(const av_iter *it, av_strip_fn fn, void *ctx) { av_iter_run_range(it, 0, it->numel, fn, ctx); }

void av_iter_run(const av_iter *it, av_strip_fn fn, void *ctx) {
    int nt = av_get_num_threads();
    if (it->numel < AV_PARALLEL_GRAIN || nt <= 1) {
        av_iter_run_range(it, 0, it->numel, fn, ctx);
        return;
    }
    int64_t chunks = it->numel / (AV_PARALLEL_GRAIN / 2);
    if (chunks < nt) nt = (int)chunks;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), T = omp_get_num_threads();
        /* split on 16-element boundaries so vector loops stay aligned */
        int64_t per = ((it->numel + T - 1) / T + 15) & ~(int64_t)15;
        int64_t b = per * tid, e = b + per;
        if (e > it->numel) e = it->numel;
        av_iter_run_range(it, b, e, fn, ctx);
    }
}

int av_broadcast_shape(const char *fn, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                       int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
        if (da == db || db == 1) out[i] = da;
        else if (da == 1) out[i] = db;
        else {
            char b1[96], b2[96];
            return av_fail("%s: shapes %s and %s cannot be broadcast together (dimension %d: %lld vs %lld)", fn,
                           av_shape_str_raw(na, sa, b1, sizeof b1), av_shape_str_raw(nb, sb, b2, sizeof b2),
                           i + 1, (long long)da, (long long)db);
        }
    }
    *nout = n;
    return 0;
}

bool av_has_internal_overlap(const av_tensor *t) {
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] == 0 && t->shape[i] > 1) return true;
    return false;
}

av_tensor *av_stack_scalar_init(av_stack_scalar *s, double value, av_dtype dt) {
    memset(s, 0, sizeof *s);
    av_store_elem(dt, &s->v, value);
    s->storage.data = &s->v;
    s->storage.nbytes = sizeof s->v;
    s->storage.refcount = 1 << 30; /* never freed */
    s->storage.backend = &av_cpu_backend;
    s->storage.external = true;
    s->tensor.dtype = dt;
    s->tensor.ndim = 0;
    s->tensor.storage = &s->storage;
    s->tensor.refcount = 1 << 30;
    return &s->tensor;
}
