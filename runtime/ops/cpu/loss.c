/* linear, cross_entropy, nll_loss, binary_cross_entropy_with_logits,
 * mse_loss and l1_loss.
 *
 * cross_entropy is one fused kernel: log-sum-exp per position, the target's
 * logit and (for label smoothing) the weighted sum of logits; the backward
 * recomputes the probabilities from the saved log-sum-exp, so no N x C
 * intermediate is ever stored. nll_loss shares the same code without the
 * log-softmax. Inputs are seen as N x C x S (S = product of the extra dims of
 * a K-dimensional input, 1 for the usual N x C). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/loss.h"
#include "aviary/ops.h"
#include "iter.h"
#include "softmax_k.h"
#include "../../autograd/grad_loss.h"
#include "aviary/cuda.h"
#include "aviary/nn_ops.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_lib.h"
#endif

#define COLW 256

static int threads_for(int64_t work) {
    int nt = work >= AV_PARALLEL_GRAIN ? av_get_num_threads() : 1;
    return nt < 1 ? 1 : nt;
}

int av_reduction_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "none")) return AV_REDUCTION_NONE;
    if (!strcmp(name, "mean")) return AV_REDUCTION_MEAN;
    if (!strcmp(name, "sum")) return AV_REDUCTION_SUM;
    return -1;
}

static bool is_f(const av_tensor *t) { return t->dtype == AV_F32 || t->dtype == AV_F64; }

/* ---- linear -------------------------------------------------------------------------- */
/* One node: y = x W^T + b with the bias broadcast into y and GEMMs that read
 * W in place (transposed by BLAS); the backward computes dx = g W and
 * dW = g^T x (contiguous, W's layout) and db as column sums.
 * The GEMMs of one call are cut into column blocks that OpenMP threads run
 * with single-threaded BLAS (forward: one block per thread; backward: the
 * blocks of both products together). These head-sized products scale poorly
 * on BLAS's own threads, and mixing BLAS's thread pool with OpenMP's makes
 * the two fight for cores between calls; one pool avoids both. */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);

/* a 2-d operand as BLAS sees it: row-major with leading dim, maybe transposed */
typedef struct { const char *p; bool trans; int64_t ld; av_tensor *hold; } lin_mat;

static int lin_blas(const av_tensor *t, lin_mat *m) {
    int64_t r = t->shape[0], c = t->shape[1];
    m->hold = NULL;
    if ((t->stride[1] == 1 || c <= 1) && t->stride[0] >= (c > 1 ? c : 1)) {
        m->p = av_data(t); m->trans = false; m->ld = t->stride[0] > 0 ? t->stride[0] : (c ? c : 1);
        if (r <= 1) m->ld = c ? c : 1;
        return 0;
    }
    if ((t->stride[0] == 1 || r <= 1) && t->stride[1] >= (r > 1 ? r : 1)) {
        m->p = av_data(t); m->trans = true; m->ld = t->stride[1] > 0 ? t->stride[1] : (r ? r : 1);
        if (c <= 1) m->ld = r ? r : 1;
        return 0;
    }
    m->hold = av_contiguous(t);
    if (!m->hold) return -1;
    m->p = av_data(m->hold); m->trans = false; m->ld = c ? c : 1;
    return 0;
}

/* one product c[m, n] = op(a)[m, k] op(b)[k, n] (+ beta c), c contiguous */
typedef struct {
    lin_mat a, b;
    bool ta, tb;
    int64_t m, n, k;
    double beta;
    char *c;
    int nblk;        /* column blocks */
} lin_prod;

static int prod_init(lin_prod *q, const av_tensor *a, bool ta, const av_tensor *b, bool tb, double beta, av_tensor *c) {
    memset(q, 0, sizeof *q);
    q->ta = ta; q->tb = tb; q->beta = beta;
    q->m = c->shape[0]; q->n = c->shape[1];
    q->k = ta ? a->shape[0] : a->shape[1];
    q->c = av_data(c);
    if (q->m == 0 || q->n == 0) return 0;
    if (q->k == 0) return beta == 0 ? av_fill_(c, 0) : 0; /* nothing to multiply */
    if (lin_blas(a, &q->a)) return -1;
    if (lin_blas(b, &q->b)) { av_release(q->a.hold); q->a.hold = NULL; return -1; }
    q->nblk = 1;
    return 0;
}
static void prod_free(lin_prod *q) { av_release(q->a.hold); av_release(q->b.hold); }

/* columns [n0, n1) of the product */
static void prod_block(av_dtype dt, const lin_prod *q, int blk) {
    int64_t n0 = q->n * blk / q->nblk, n1 = q->n * (blk + 1) / q->nblk;
    if (n1 <= n0) return;
    size_t es = av_dtype_size(dt);
    const lin_mat *B = &q->b;
    /* op(b)[:, n0:n1]: rows n0.. of b when op transposes it, else columns n0.. */
    int64_t off = q->tb ? (B->trans ? n0 : n0 * B->ld) : (B->trans ? n0 * B->ld : n0);
    av_gemm(dt, q->a.trans != q->ta, B->trans != q->tb, q->m, n1 - n0, q->k, 1.0, q->a.p, q->a.ld, B->p + es * off, B->ld,
            q->beta, q->c + es * n0, q->n);
}

/* runs the products, each cut into column blocks over the OpenMP threads */
static void run_prods(av_dtype dt, lin_prod *q, int np) {
    double flops = 0;
    for (int i = 0; i < np; i++) flops += q[i].nblk ? 2.0 * (double)q[i].m * (double)q[i].n * (double)q[i].k : 0;
    int nt = av_get_num_threads();
    if (nt > 1 && flops < 4e5) nt = 1;
    int total = 0, first[8];
    for (int i = 0; i < np; i++) {
        if (q[i].nblk) {
            int64_t cap = (q[i].n + 15) / 16; /* blocks of at least 16 columns */
            q[i].nblk = (int)(nt < cap ? nt : (cap > 0 ? cap : 1));
        }
        first[i] = total;
        total += q[i].nblk;
    }
    if (total == 0) return;
    if (nt == 1) {
        for (int i = 0; i < np; i++)
            for (int b = 0; b < q[i].nblk; b++) prod_block(dt, &q[i], b);
        return;
    }
    int bt = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < total; t++) {
        int i = 0;
        while (i + 1 < np && t >= first[i + 1]) i++;
        prod_block(dt, &q[i], t - first[i]);
    }
    openblas_set_num_threads(bt);
}

/* y2[rows, out] = x2 W^T (+ b) */
av_tensor *av_linear_raw(const av_tensor *x2, const av_tensor *w, const av_tensor *b) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(x2) || av_is_cuda(w) || av_is_cuda(b)) return av_cuda_linear(x2, w, b);
#endif
    int64_t s[2] = {x2->shape[0], w->shape[0]};
    av_tensor *y = av_empty(2, s, x2->dtype);
    if (!y) return NULL;
    if (b && av_copy_(y, b)) { av_release(y); return NULL; }
    lin_prod q;
    if (prod_init(&q, x2, false, w, true, b ? 1.0 : 0.0, y)) { av_release(y); return NULL; }
    run_prods(x2->dtype, &q, 1);
    prod_free(&q);
    return y;
}

int av_linear_backward_raw(const av_tensor *g2, const av_tensor *x2, const av_tensor *w, bool want_b,
                           av_tensor **dx2, av_tensor **dw, av_tensor **db) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(g2) || av_is_cuda(x2) || av_is_cuda(w)) return av_cuda_linear_backward(g2, x2, w, want_b, dx2, dw, db);
#endif
    av_dtype dt = x2->dtype;
    int64_t rows = x2->shape[0], in = x2->shape[1], out = w->shape[0];
    int64_t sx[2] = {rows, in}, sw[2] = {out, in};
    av_tensor *gc = g2->dtype == dt ? av_contiguous(g2) : av_to_dtype(g2, dt);
    av_tensor *g = gc ? av_contiguous(gc) : NULL;
    av_release(gc);
    if (!g) return -1;
    av_tensor *X = dx2 ? av_empty(2, sx, dt) : NULL, *W = dw ? av_empty(2, sw, dt) : NULL;
    av_tensor *B = want_b ? av_zeros(1, &out, dt) : NULL;
    int rc = 0;
    if ((dx2 && !X) || (dw && !W) || (want_b && !B)) rc = -1;
    if (!rc && B && rows > 0 && out > 0) {
        /* column sums of g, accumulated in double */
        double *acc = calloc((size_t)out, sizeof(double));
        if (!acc) rc = av_fail("linear: out of memory");
        else {
            if (dt == AV_F32) {
                const float *gp = av_data(g);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 0; c < out; c++) acc[c] += gp[r * out + c];
                float *bp = av_data(B);
                for (int64_t c = 0; c < out; c++) bp[c] = (float)acc[c];
            } else {
                const double *gp = av_data(g);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 0; c < out; c++) acc[c] += gp[r * out + c];
                memcpy(av_data(B), acc, sizeof(double) * out);
            }
            free(acc);
        }
    }
    lin_prod q[2];
    int np = 0;
    if (!rc && X) rc = prod_init(&q[np++], g, false, w, false, 0.0, X);      /* dx = g W */
    if (!rc && W) rc = prod_init(&q[np++], g, true, x2, false, 0.0, W);      /* dW = g^T x */
    if (!rc) run_prods(dt, q, np);
    for (int i = 0; i < np; i++) prod_free(&q[i]);
    av_release(g);
    if (rc) { av_release(X); av_release(W); av_release(B); return -1; }
    if (dx2) *dx2 = X;
    if (dw) *dw = W;
    if (db) *db = B;
    return 0;
}

av_tensor *av_linear(const av_tensor *x, const av_tensor *w, const av_tensor *b) {
    char b1[96], b2[96];
    if (!x || !w) { av_fail("linear: input and weight are required"); return NULL; }
    if (av_autocast_applies(x, w)) return av_autocast_linear(x, w, b);
    if (w->ndim != 2) {
        av_fail("linear: weight must be 2-d (out_features x in_features), got size %s", av_shape_str(w, b1, sizeof b1));
        return NULL;
    }
    if (x->ndim < 1) {
        av_fail("linear: input must have at least 1 dimension, got size %s", av_shape_str(x, b1, sizeof b1));
        return NULL;
    }
    if (x->shape[x->ndim - 1] != w->shape[1]) {
        av_fail("linear: input of size %s does not match weight of size %s (the last dim of the input must be %lld)",
                av_shape_str(x, b1, sizeof b1), av_shape_str(w, b2, sizeof b2), (long long)w->shape[1]);
        return NULL;
    }
    /* half types have CUDA kernels only */
    bool float_ok = is_f(x) || (av_is_cuda(x) && av_dtype_is_float(x->dtype));
    if (!float_ok || x->dtype != w->dtype || (b && b->dtype != x->dtype)) {
        av_fail("linear: input, weight and bias must share one float dtype (float32 or float64), got %s, %s%s%s",
                av_dtype_name(x->dtype), av_dtype_name(w->dtype), b ? " and " : "", b ? av_dtype_name(b->dtype) : "");
        return NULL;
    }
    if (b && !(b->ndim == 1 && b->shape[0] == w->shape[0])) {
        av_fail("linear: bias of size %s does not match weight of size %s (expected a 1-d tensor of %lld elements)",
                av_shape_str(b, b1, sizeof b1), av_shape_str(w, b2, sizeof b2), (long long)w->shape[0]);
        return NULL;
    }
    int64_t rows = 1, in = w->shape[1];
    for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
    int64_t s2[2] = {rows, in};
    av_tensor *x2 = NULL, *y2 = NULL, *y = NULL;
    bool was = av_grad_enabled();
    av_set_grad_enabled(false);
    x2 = x->ndim == 2 ? av_retain((av_tensor *)x) : av_reshape(x, 2, s2);
    if (x2) y2 = av_linear_raw(x2, w, b);
    if (y2) {
        int64_t so[AV_MAX_DIMS];
        memcpy(so, x->shape, sizeof(int64_t) * x->ndim);
        so[x->ndim - 1] = w->shape[0];
        y = x->ndim == 2 ? av_retain(y2) : av_view(y2, x->ndim, so);
    }
    av_set_grad_enabled(was);
    if (y && av_ag_linear(y, x, w, b, x2)) { av_release(y); y = NULL; }
    av_release(x2);
    av_release(y2);
    if (!y && strncmp(av_last_error(), "linear", 6)) av_fail("linear: %s", av_last_error());
    return y;
}

/* ---- cross entropy and nll: kernels ---------------------------------------------------- */
/* T: element type; the loss of each position goes to lossv (when not NULL), the
 * sum of losses is returned; lse receives the log-sum-exp per position (fused) */
#define NLL_KERNELS(T, SF, EXPF, LOGF)                                                                 \
    static double fwd_rows_##SF(const av_nll_problem *p, const T *x, const int64_t *tg, const T *w,     \
                               T *lossv, T *lse) {                                                    \
        int64_t N = p->N, C = p->C;                                                                   \
        T eps = (T)p->label_smoothing, Wsum = 0;                                                      \
        if (p->fused && eps > 0) Wsum = w ? smk_sum_##SF(w, C) : (T)C;                                 \
        double total = 0;                                                                             \
        int nt = threads_for(N * C);                                                                  \
        _Pragma("omp parallel for num_threads(nt) schedule(static) reduction(+ : total) if (nt > 1)") \
            for (int64_t i = 0; i < N; i++) {                                                         \
                int64_t t = tg[i];                                                                    \
                const T *xr = x + i * C;                                                              \
                T l = 0;                                                                              \
                if (p->fused) {                                                                       \
                    T z = smk_lse2_##SF(xr, C);                                                       \
                    lse[i] = z;                                                                       \
                    if (t != p->ignore_index) {                                                       \
                        int64_t c = t - p->base;                                                      \
                        T wt = w ? w[c] : (T)1;                                                       \
                        l = ((T)1 - eps) * wt * (z - xr[c]);                                          \
                        if (eps > 0) {                                                                \
                            T sx = w ? smk_dot_##SF(w, xr, C) : smk_sum_##SF(xr, C);                    \
                            l += eps / (T)C * (Wsum * z - sx);                                        \
                        }                                                                             \
                    }                                                                                 \
                } else if (t != p->ignore_index) {                                                    \
                    int64_t c = t - p->base;                                                          \
                    l = -(w ? w[c] : (T)1) * xr[c];                                                   \
                }                                                                                     \
                if (lossv) lossv[i] = l;                                                              \
                total += (double)l;                                                                   \
            }                                                                                         \
        return total;                                                                                 \
    }                                                                                                 \
    static double fwd_cols_##SF(const av_nll_problem *p, const T *x, const int64_t *tg, const T *w,     \
                               T *lossv, T *lse) {                                                    \
        int64_t N = p->N, C = p->C, SS = p->S;                                                        \
        T eps = (T)p->label_smoothing, Wsum = 0;                                                      \
        if (p->fused && eps > 0) Wsum = w ? smk_sum_##SF(w, C) : (T)C;                                 \
        double total = 0;                                                                             \
        int64_t nch = (SS + COLW - 1) / COLW, tasks = N * nch;                                        \
        int nt = threads_for(N * C * SS);                                                             \
        _Pragma("omp parallel for num_threads(nt) schedule(static) reduction(+ : total) if (nt > 1)") \
        for (int64_t k = 0; k < tasks; k++) {                                                         \
            int64_t n = k / nch, s0 = (k % nch) * COLW, wd = SS - s0 < COLW ? SS - s0 : COLW;         \
            const T *xs = x + n * C * SS + s0;                                                        \
            const int64_t *ts = tg + n * SS + s0;                                                     \
            T m[COLW], sum[COLW], sx[COLW];                                                           \
            if (p->fused) {                                                                           \
                for (int64_t s = 0; s < wd; s++) { m[s] = -INFINITY; sum[s] = 0; sx[s] = 0; }         \
                for (int64_t c = 0; c < C; c++)                                                       \
                    for (int64_t s = 0; s < wd; s++) {                                                \
                        T v = xs[c * SS + s];                                                         \
                        m[s] = v > m[s] ? v : m[s];                                                   \
                    }                                                                                 \
                for (int64_t c = 0; c < C; c++)                                                       \
                    for (int64_t s = 0; s < wd; s++) sum[s] += EXPF(xs[c * SS + s] - m[s]);          \
                if (eps > 0)                                                                          \
                    for (int64_t c = 0; c < C; c++) {                                                 \
                        T wc = w ? w[c] : (T)1;                                                       \
                        for (int64_t s = 0; s < wd; s++) sx[s] += wc * xs[c * SS + s];                \
                    }                                                                                 \
                for (int64_t s = 0; s < wd; s++) {                                                    \
                    m[s] += LOGF(sum[s]);                                                             \
                    lse[n * SS + s0 + s] = m[s];                                                      \
                }                                                                                     \
            }                                                                                         \
            for (int64_t s = 0; s < wd; s++) {                                                        \
                int64_t t = ts[s];                                                                    \
                T l = 0;                                                                              \
                if (t != p->ignore_index) {                                                           \
                    int64_t c = t - p->base;                                                          \
                    T wt = w ? w[c] : (T)1;                                                           \
                    if (p->fused) {                                                                   \
                        l = ((T)1 - eps) * wt * (m[s] - xs[c * SS + s]);                              \
                        if (eps > 0) l += eps / (T)C * (Wsum * m[s] - sx[s]);                         \
                    } else {                                                                          \
                        l = -wt * xs[c * SS + s];                                                     \
                    }                                                                                 \
                }                                                                                     \
                if (lossv) lossv[n * SS + s0 + s] = l;                                                \
                total += (double)l;                                                                   \
            }                                                                                         \
        }                                                                                             \
        return total;                                                                                 \
    }                                                                                                 \
    /* gx = p (a + b W) - a [c == t] - b w_c with a = g (1-eps) w_t, b = g eps / C (fused);        \
       gx = -g w_t [c == t] (nll); g already divided by the mean's denominator */                    \
    static void bwd_##SF(const av_nll_problem *p, const T *x, const int64_t *tg, const T *w,           \
                        const T *lse, const T *g, bool per_pos, double scale, T *gx) {                \
        int64_t N = p->N, C = p->C, SS = p->S;                                                        \
        T eps = p->fused ? (T)p->label_smoothing : 0, Wsum = 0;                                       \
        if (eps > 0) Wsum = w ? smk_sum_##SF(w, C) : (T)C;                                             \
        int nt = threads_for(N * C * SS);                                                             \
        if (SS == 1) {                                                                                \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                  \
            for (int64_t i = 0; i < N; i++) {                                                         \
                T *o = gx + i * C;                                                                    \
                int64_t t = tg[i];                                                                    \
                T gi = (T)((double)(per_pos ? g[i] : g[0]) * scale);                                  \
                if (t == p->ignore_index) {                                                           \
                    memset(o, 0, sizeof(T) * C);                                                      \
                    continue;                                                                         \
                }                                                                                     \
                int64_t c = t - p->base;                                                              \
                T wt = w ? w[c] : (T)1;                                                               \
                if (!p->fused) {                                                                      \
                    memset(o, 0, sizeof(T) * C);                                                      \
                    o[c] = -gi * wt;                                                                  \
                    continue;                                                                         \
                }                                                                                     \
                T a = gi * ((T)1 - eps) * wt, b = gi * eps / (T)C, A = a + b * Wsum;                  \
                const T *xr = x + i * C;                                                              \
                smk_exp_shift_##SF(xr, o, C, lse[i]);                                                  \
                if (eps > 0 && w)                                                                     \
                    for (int64_t j = 0; j < C; j++) o[j] = o[j] * A - b * w[j];                       \
                else if (eps > 0)                                                                     \
                    for (int64_t j = 0; j < C; j++) o[j] = o[j] * A - b;                              \
                else                                                                                  \
                    for (int64_t j = 0; j < C; j++) o[j] *= A;                                        \
                o[c] -= a;                                                                            \
            }                                                                                         \
            return;                                                                                   \
        }                                                                                             \
        int64_t nch = (SS + COLW - 1) / COLW, tasks = N * nch;                                        \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                      \
        for (int64_t k = 0; k < tasks; k++) {                                                         \
            int64_t n = k / nch, s0 = (k % nch) * COLW, wd = SS - s0 < COLW ? SS - s0 : COLW;         \
            int64_t pos = n * SS + s0;                                                                \
            const T *xs = x + n * C * SS + s0;                                                        \
            T *os = gx + n * C * SS + s0;                                                             \
            T a[COLW], b[COLW], A[COLW];                                                              \
            for (int64_t s = 0; s < wd; s++) {                                                        \
                int64_t t = tg[pos + s];                                                              \
                T gi = (T)((double)(per_pos ? g[pos + s] : g[0]) * scale);                            \
                if (t == p->ignore_index) { a[s] = b[s] = A[s] = 0; continue; }                       \
                T wt = w ? w[t - p->base] : (T)1;                                                     \
                a[s] = gi * ((T)1 - eps) * wt;                                                        \
                b[s] = gi * eps / (T)C;                                                               \
                A[s] = a[s] + b[s] * Wsum;                                                            \
            }                                                                                         \
            if (p->fused) {                                                                           \
                const T *ls = lse + pos;                                                              \
                for (int64_t c = 0; c < C; c++) {                                                     \
                    T wc = w ? w[c] : (T)1;                                                           \
                    for (int64_t s = 0; s < wd; s++)                                                  \
                        os[c * SS + s] = EXPF(xs[c * SS + s] - ls[s]) * A[s] - b[s] * wc;            \
                }                                                                                     \
            } else {                                                                                  \
                for (int64_t c = 0; c < C; c++) memset(os + c * SS, 0, sizeof(T) * wd);               \
            }                                                                                         \
            for (int64_t s = 0; s < wd; s++) {                                                        \
                int64_t t = tg[pos + s];                                                              \
                if (t != p->ignore_index) os[(t - p->base) * SS + s] -= a[s];                         \
            }                                                                                         \
        }                                                                                             \
    }

NLL_KERNELS(float, f32, smk_expf, logf)
NLL_KERNELS(double, f64, smk_exp, log)

int av_nll_forward_raw(const av_nll_problem *p, av_tensor **out, av_tensor **lse, double *total_weight) {
    *out = NULL;
    *lse = NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(p->input))
        return av_cuda_nll_forward(p->input, p->target, p->weight, p->N, p->C, p->S, p->ignore_index, p->base,
                                   (int)p->reduction, p->label_smoothing, p->fused, p->out_ndim, p->out_shape, out, lse,
                                   total_weight);
#endif
    const av_tensor *in = p->input;
    const int64_t *tg = av_data(p->target);
    int64_t npos = p->N * p->S;
    /* total weight of the non-ignored targets (the mean's denominator) */
    double tw = 0;
    if (p->weight) {
        for (int64_t i = 0; i < npos; i++)
            if (tg[i] != p->ignore_index) tw += av_load_elem(in->dtype, (const char *)av_data(p->weight) +
                                                                            (tg[i] - p->base) * av_dtype_size(in->dtype));
    } else {
        for (int64_t i = 0; i < npos; i++) tw += tg[i] != p->ignore_index;
    }
    *total_weight = tw;
    av_tensor *lossv = NULL, *z = NULL;
    if (p->reduction == AV_REDUCTION_NONE && !(lossv = av_empty(p->out_ndim, p->out_shape, in->dtype))) return -1;
    if (p->fused && !(z = av_empty(1, &npos, in->dtype))) { av_release(lossv); return -1; }
    double total;
    const void *w = p->weight ? av_data(p->weight) : NULL;
    if (in->dtype == AV_F32)
        total = p->S == 1 ? fwd_rows_f32(p, av_data(in), tg, w, lossv ? av_data(lossv) : NULL, z ? av_data(z) : NULL)
                          : fwd_cols_f32(p, av_data(in), tg, w, lossv ? av_data(lossv) : NULL, z ? av_data(z) : NULL);
    else
        total = p->S == 1 ? fwd_rows_f64(p, av_data(in), tg, w, lossv ? av_data(lossv) : NULL, z ? av_data(z) : NULL)
                          : fwd_cols_f64(p, av_data(in), tg, w, lossv ? av_data(lossv) : NULL, z ? av_data(z) : NULL);
    if (!lossv) {
        double v = p->reduction == AV_REDUCTION_MEAN ? total / tw : total; /* all ignored: 0/0 = NaN, as PyTorch */
        lossv = av_scalar_tensor(v, in->dtype);
        if (!lossv) { av_release(z); return -1; }
    }
    *out = lossv;
    *lse = z;
    return 0;
}

av_tensor *av_nll_backward_raw(const av_nll_problem *p, const av_tensor *g, const av_tensor *lse, double total_weight) {
#ifdef AV_WITH_CUDA
    if (av_is_cuda(p->input))
        return av_cuda_nll_backward(p->input, p->target, p->weight, p->N, p->C, p->S, p->ignore_index, p->base,
                                    (int)p->reduction, p->label_smoothing, p->fused, g, lse, total_weight);
#endif
    const av_tensor *in = p->input;
    bool per_pos = p->reduction == AV_REDUCTION_NONE;
    av_tensor *gc = g->dtype == in->dtype ? av_contiguous(g) : av_to_dtype(g, in->dtype);
    av_tensor *gcc = gc ? av_contiguous(gc) : NULL;
    av_release(gc);
    if (!gcc) return NULL;
    av_tensor *gx = av_empty(in->ndim, in->shape, in->dtype);
    if (!gx) { av_release(gcc); return NULL; }
    double scale = p->reduction == AV_REDUCTION_MEAN ? 1.0 / total_weight : 1.0;
    const void *w = p->weight ? av_data(p->weight) : NULL;
    const int64_t *tg = av_data(p->target);
    if (av_numel(gx) > 0) {
        if (in->dtype == AV_F32)
            bwd_f32(p, av_data(in), tg, w, lse ? av_data(lse) : NULL, av_data(gcc), per_pos, scale, av_data(gx));
        else
            bwd_f64(p, av_data(in), tg, w, lse ? av_data(lse) : NULL, av_data(gcc), per_pos, scale, av_data(gx));
    }
    av_release(gcc);
    return gx;
}

/* ---- cross entropy and nll: checks and the public functions --------------------------------- */
static av_tensor *nll_common(const char *fn, bool fused, const av_tensor *input, const av_tensor *target,
                             const av_tensor *weight, int64_t ignore_index, av_reduction reduction,
                             double label_smoothing, int64_t base) {
    char b1[96], b2[96];
    if (!input || !target) { av_fail("%s: input and target are required", fn); return NULL; }
    if (av_is_cuda(input) && (input->dtype == AV_F16 || input->dtype == AV_BF16)) {
        /* autocast's float32 policy for losses (and PyTorch's accuracy argument): a recorded cast */
        av_tensor *up = av_to_dtype(input, AV_F32);
        av_tensor *r = up ? nll_common(fn, fused, up, target, weight, ignore_index, reduction, label_smoothing, base) : NULL;
        av_release(up);
        return r;
    }
    if (!is_f(input)) {
        av_fail("%s: expected a float32 or float64 input, got %s", fn, av_dtype_name(input->dtype));
        return NULL;
    }
    if (target->dtype != AV_I64 && target->dtype != AV_I32) {
        if (av_dtype_is_float(target->dtype))
            av_fail("%s: expected class indices (int64) as target, got %s; targets are %lld-based class numbers", fn,
                    av_dtype_name(target->dtype), (long long)base);
        else
            av_fail("%s: expected class indices (int64) as target, got %s", fn, av_dtype_name(target->dtype));
        return NULL;
    }
    if ((unsigned)reduction > AV_REDUCTION_SUM) { av_fail("%s: unknown reduction %d", fn, (int)reduction); return NULL; }
    if (!(label_smoothing >= 0 && label_smoothing <= 1)) {
        av_fail("%s: label_smoothing must be between 0 and 1, got %g", fn, label_smoothing);
        return NULL;
    }
    if (input->ndim < 1) {
        av_fail("%s: input must have a class dim (size C, N x C or N x C x d1 x ...), got a 0-d tensor", fn);
        return NULL;
    }
    /* N x C x S view and the expected target shape */
    av_nll_problem p = {0};
    p.fused = fused;
    p.ignore_index = ignore_index;
    p.base = base;
    p.reduction = reduction;
    p.label_smoothing = fused ? label_smoothing : 0;
    int cdim = input->ndim == 1 ? 0 : 1;
    p.C = input->shape[cdim];
    p.N = input->ndim == 1 ? 1 : input->shape[0];
    p.S = 1;
    for (int d = 2; d < input->ndim; d++) p.S *= input->shape[d];
    int64_t tshape[AV_MAX_DIMS];
    int tnd = 0;
    if (input->ndim >= 2) {
        tshape[tnd++] = input->shape[0];
        for (int d = 2; d < input->ndim; d++) tshape[tnd++] = input->shape[d];
    }
    bool ok = target->ndim == tnd;
    for (int d = 0; ok && d < tnd; d++) ok = target->shape[d] == tshape[d];
    if (!ok) {
        av_fail("%s: target of size %s does not match input of size %s (expected target size %s)", fn,
                av_shape_str(target, b1, sizeof b1), av_shape_str(input, b2, sizeof b2),
                tnd ? av_shape_str_raw(tnd, tshape, (char[96]){0}, 96) : "scalar");
        return NULL;
    }
    p.out_ndim = tnd;
    memcpy(p.out_shape, tshape, sizeof(int64_t) * tnd);
    if (weight) {
        if (weight->ndim != 1 || weight->shape[0] != p.C) {
            av_fail("%s: weight of size %s does not match the %lld classes of input of size %s (expected a 1-d tensor of "
                    "%lld elements)", fn, av_shape_str(weight, b1, sizeof b1), (long long)p.C,
                    av_shape_str(input, b2, sizeof b2), (long long)p.C);
            return NULL;
        }
        if (!av_dtype_is_float(weight->dtype)) {
            av_fail("%s: weight must be a float tensor, got %s", fn, av_dtype_name(weight->dtype));
            return NULL;
        }
    }
    av_tensor *ti = NULL, *tc = NULL, *wc = NULL, *wcc = NULL, *xc = NULL, *out = NULL, *lse = NULL;
    /* the raw work runs without recording; the node is made below */
    bool was = av_grad_enabled();
    av_set_grad_enabled(false);
    if (!(ti = av_to_dtype(target, AV_I64)) || !(tc = av_contiguous(ti))) goto done;
    if (av_is_cuda(input) || av_is_cuda(target)) {
        /* targets are range-checked by the CUDA kernel */
        if (av_check_same_device(fn, input, "input", target, "target") ||
            (weight && av_check_same_device(fn, input, "input", weight, "weight")))
            goto done;
    } else {
        const int64_t *tg = av_data(tc);
        int64_t npos = p.N * p.S;
        for (int64_t i = 0; i < npos; i++) {
            int64_t t = tg[i];
            if (t == ignore_index) continue;
            if (t < base || t - base >= p.C) {
                if (p.C > 0)
                    av_fail("%s: target %lld is out of range for %lld classes (expected %lld..%lld, or ignore_index %lld)",
                            fn, (long long)t, (long long)p.C, (long long)base, (long long)(base + p.C - 1),
                            (long long)ignore_index);
                else
                    av_fail("%s: target %lld is out of range: the input has 0 classes", fn, (long long)t);
                goto done;
            }
        }
    }
    if (weight && (!(wc = av_to_dtype(weight, input->dtype)) || !(wcc = av_contiguous(wc)))) goto done;
    if (!(xc = av_contiguous(input))) goto done;
    p.input = xc;
    p.target = tc;
    p.weight = wcc;
    double tw = 0;
    if (av_nll_forward_raw(&p, &out, &lse, &tw)) goto done;
    av_set_grad_enabled(was);
    if (av_ag_nll(out, &p, input, lse, tw)) { av_release(out); out = NULL; }
done:
    av_set_grad_enabled(was);
    av_release(ti); av_release(tc); av_release(wc); av_release(wcc); av_release(xc); av_release(lse);
    return out;
}

av_tensor *av_cross_entropy(const av_tensor *input, const av_tensor *target, const av_tensor *weight,
                            int64_t ignore_index, av_reduction reduction, double label_smoothing, int64_t base) {
    return nll_common("cross_entropy", true, input, target, weight, ignore_index, reduction, label_smoothing, base);
}

av_tensor *av_nll_loss(const av_tensor *input, const av_tensor *target, const av_tensor *weight,
                       int64_t ignore_index, av_reduction reduction, int64_t base) {
    return nll_common("nll_loss", false, input, target, weight, ignore_index, reduction, 0, base);
}

/* ---- reductions shared by the elementwise losses --------------------------------------------- */
static av_tensor *reduce_loss(av_tensor *l, av_reduction r) {
    if (!l || r == AV_REDUCTION_NONE) return l;
    av_tensor *o = av_reduce(r == AV_REDUCTION_MEAN ? AV_RED_MEAN : AV_RED_SUM, l, 0, NULL, false);
    av_release(l);
    return o;
}

static int same_shape_check(const char *fn, const av_tensor *a, const av_tensor *b) {
    char b1[96], b2[96];
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim))
        return av_fail("%s: target of size %s must have the same size as input of size %s", fn,
                       av_shape_str(b, b1, sizeof b1), av_shape_str(a, b2, sizeof b2));
    return 0;
}

static int float_pair_check(const char *fn, const av_tensor *a, const av_tensor *b) {
    if (!is_f(a) || a->dtype != b->dtype)
        return av_fail("%s: input and target must share one float dtype (float32 or float64), got %s and %s", fn,
                       av_dtype_name(a->dtype), av_dtype_name(b->dtype));
    return 0;
}

/* ---- binary cross entropy with logits -------------------------------------------------------- */
/* l = (1 - t) x + (1 + (pw - 1) t) (log1p(exp(-|x|)) + max(-x, 0)) */
#define BCE_STRIP(T, S, EXP, LOG1P)                                                             \
    static void bce_##S(char **pp, const int64_t *st, int64_t n, void *ctx) {                   \
        bool has_pw = ctx != NULL;                                                              \
        T *o = (T *)pp[0];                                                                      \
        const T *x = (const T *)pp[1], *t = (const T *)pp[2], *pw = has_pw ? (const T *)pp[3] : NULL; \
        for (int64_t i = 0; i < n; i++) {                                                       \
            T xv = x[i * st[1]], tv = t[i * st[2]];                                             \
            T lw = has_pw ? (T)1 + (pw[i * st[3]] - (T)1) * tv : (T)1;                          \
            T mx = -xv > 0 ? -xv : (T)0;                                                        \
            T ax = xv < 0 ? -xv : xv;                                                           \
            o[i * st[0]] = ((T)1 - tv) * xv + lw * (LOG1P(EXP(-ax)) + mx);                      \
        }                                                                                       \
    }
BCE_STRIP(float, f32, expf, log1pf)
BCE_STRIP(double, f64, exp, log1p)

av_tensor *av_bce_logits_raw(const av_tensor *x, const av_tensor *t, const av_tensor *pw) {
    av_tensor *o = av_empty(x->ndim, x->shape, x->dtype);
    if (!o || av_numel(o) == 0) return o;
    const av_tensor *ops[4] = {o, x, t, pw};
    av_iter it;
    av_iter_init(&it, x->ndim, x->shape, pw ? 4 : 3, ops);
    static int tag;
    av_iter_run(&it, x->dtype == AV_F32 ? bce_f32 : bce_f64, pw ? &tag : NULL);
    return o;
}

static bool broadcasts_to(const av_tensor *a, const av_tensor *to) {
    if (a->ndim > to->ndim) return false;
    for (int i = 0; i < a->ndim; i++) {
        int64_t s = a->shape[a->ndim - 1 - i], d = to->shape[to->ndim - 1 - i];
        if (s != d && s != 1) return false;
    }
    return true;
}

av_tensor *av_binary_cross_entropy_with_logits(const av_tensor *input, const av_tensor *target,
                                               const av_tensor *weight, const av_tensor *pos_weight,
                                               av_reduction reduction) {
    const char *fn = "binary_cross_entropy_with_logits";
    char b1[96], b2[96];
    if (!input || !target) { av_fail("%s: input and target are required", fn); return NULL; }
    if (av_is_cuda(input) || av_is_cuda(target) || av_is_cuda(weight) || av_is_cuda(pos_weight)) {
        av_fail("%s: not supported on CUDA tensors (move it to the CPU with :cpu())", fn);
        return NULL;
    }
    if ((unsigned)reduction > AV_REDUCTION_SUM) { av_fail("%s: unknown reduction %d", fn, (int)reduction); return NULL; }
    if (float_pair_check(fn, input, target) || same_shape_check(fn, input, target)) return NULL;
    const av_tensor *opt[2] = {weight, pos_weight};
    const char *names[2] = {"weight", "pos_weight"};
    for (int k = 0; k < 2; k++) {
        if (!opt[k]) continue;
        if (opt[k]->dtype != input->dtype) {
            av_fail("%s: %s must have the input's dtype %s, got %s", fn, names[k], av_dtype_name(input->dtype),
                    av_dtype_name(opt[k]->dtype));
            return NULL;
        }
        if (!broadcasts_to(opt[k], input)) {
            av_fail("%s: %s of size %s does not broadcast to input of size %s", fn, names[k],
                    av_shape_str(opt[k], b1, sizeof b1), av_shape_str(input, b2, sizeof b2));
            return NULL;
        }
    }
    av_tensor *pwe = NULL, *l = NULL;
    if (pos_weight && !(pwe = av_expand(pos_weight, input->ndim, input->shape))) return NULL;
    NO_GRAD(l = av_bce_logits_raw(input, target, pwe));
    if (l && av_ag_bce_logits(l, input, target, pos_weight)) { av_release(l); l = NULL; }
    av_release(pwe);
    if (l && weight) {
        av_tensor *lw = av_binary(AV_OP_MUL, l, weight);
        av_release(l);
        l = lw;
    }
    return reduce_loss(l, reduction);
}

/* ---- mse and l1: composed of differentiable elementwise ops and a reduction ------------------ */
static av_tensor *pointwise_loss(const char *fn, const av_tensor *input, const av_tensor *target, av_unop op,
                                 av_reduction reduction) {
    if (!input || !target) { av_fail("%s: input and target are required", fn); return NULL; }
    if ((unsigned)reduction > AV_REDUCTION_SUM) { av_fail("%s: unknown reduction %d", fn, (int)reduction); return NULL; }
    if (float_pair_check(fn, input, target) || same_shape_check(fn, input, target)) return NULL;
    av_tensor *d = av_binary(AV_OP_SUB, input, target);
    av_tensor *l = d ? av_unary(op, d) : NULL;
    av_release(d);
    return reduce_loss(l, reduction);
}

av_tensor *av_mse_loss(const av_tensor *input, const av_tensor *target, av_reduction reduction) {
    return pointwise_loss("mse_loss", input, target, AV_OP_SQUARE, reduction);
}

av_tensor *av_l1_loss(const av_tensor *input, const av_tensor *target, av_reduction reduction) {
    return pointwise_loss("l1_loss", input, target, AV_OP_ABS, reduction);
}
