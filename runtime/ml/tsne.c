/* PCA, t-SNE (exact and Barnes-Hut) and trustworthiness, after scikit-learn
 * 1.2.1 (see aviary/manifold.h). The t-SNE steps follow sklearn/manifold/
 * _t_sne.py, _utils.pyx (_binary_search_perplexity), _barnes_hut_tsne.pyx and
 * neighbors/_quad_tree.pyx:
 *   kNN (k = min(N - 1, int(3 perplexity + 1))) on squared euclidean distances
 *   -> conditional P by binary search on the precision (entropy in nats vs
 *   log(perplexity), tolerance 1e-5, 100 steps) -> P = (P + P^T) / sum
 *   -> gradient descent with momentum and gains: 250 iterations with P
 *   exaggerated and momentum 0.5, then momentum 0.8; the error is evaluated
 *   every 50 iterations for the stopping rules.
 * The Barnes-Hut negative forces walk a quadtree (2^d-tree, d <= 3) built
 * from the embedding each iteration; a cell is a summary when it is a leaf or
 * when its squared width over the squared distance to its barycentre is below
 * angle^2; a leaf at the point itself (within 1e-6 in every dim) is skipped.
 * Per-point partial sums are added in index order, so results do not depend on
 * the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <omp.h>
#include "aviary/manifold.h"
#include "ml_internal.h"
#include "aviary/philox.h"

/* ---- the space-partitioning tree ----------------------------------------- */
typedef struct {
    float min_b[3], max_b[3], center[3];
    float bary[3];
    float sq_max_width;
    int count; /* cumulative size */
    int is_leaf;
    int children[8];
} qt_cell;

typedef struct {
    int dim, nchild;
    qt_cell *cells;
    int ncells, cap;
} qtree;

static int qt_new_cell(qtree *t) {
    if (t->ncells == t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        qt_cell *c = realloc(t->cells, sizeof(qt_cell) * (size_t)cap);
        if (!c) return -1;
        t->cells = c, t->cap = cap;
    }
    qt_cell *c = &t->cells[t->ncells];
    memset(c, 0, sizeof *c);
    c->is_leaf = 1;
    for (int i = 0; i < 8; i++) c->children[i] = -1;
    return t->ncells++;
}

static int qt_select_child(const qtree *t, const float *pt, const qt_cell *c) {
    int sel = 0;
    for (int a = 0; a < t->dim; a++) {
        sel *= 2;
        if (pt[a] >= c->center[a]) sel += 1;
    }
    return sel;
}

static int qt_child(qtree *t, int cell, int sel) {
    int id = t->cells[cell].children[sel];
    if (id >= 0) return id;
    id = qt_new_cell(t);
    if (id < 0) return -1;
    qt_cell *p = &t->cells[cell], *c = &t->cells[id];
    int s = sel;
    float w = 0;
    for (int a = t->dim - 1; a >= 0; a--) {
        if (s & 1) c->min_b[a] = p->center[a], c->max_b[a] = p->max_b[a];
        else c->min_b[a] = p->min_b[a], c->max_b[a] = p->center[a];
        s >>= 1;
        c->center[a] = (c->min_b[a] + c->max_b[a]) / 2.0f;
        float wa = c->max_b[a] - c->min_b[a];
        if (wa * wa > w) w = wa * wa;
    }
    c->sq_max_width = w;
    p->children[sel] = id;
    return id;
}

static int qt_is_dup(const float *a, const float *b, int dim) {
    for (int i = 0; i < dim; i++)
        if (fabsf(a[i] - b[i]) > QT_EPSILON) return 0;
    return 1;
}

static int qt_insert(qtree *t, const float *pt) {
    int cell = 0;
    for (int depth = 0;; depth++) {
        qt_cell *c = &t->cells[cell];
        if (c->count == 0) {
            c->count = 1;
            memcpy(c->bary, pt, sizeof(float) * (size_t)t->dim);
            return 0;
        }
        if (c->is_leaf) {
            if (qt_is_dup(pt, c->bary, t->dim) || depth > 60) { /* duplicate: counted in the leaf */
                for (int a = 0; a < t->dim; a++) c->bary[a] = (c->count * c->bary[a] + pt[a]) / (c->count + 1);
                c->count++;
                return 0;
            }
            /* split: move the leaf's point(s) into a new child */
            float old[3];
            int oc = c->count;
            memcpy(old, c->bary, sizeof old);
            int sel = qt_select_child(t, old, c);
            int id = qt_child(t, cell, sel);
            if (id < 0) return -1;
            c = &t->cells[cell];
            qt_cell *ch = &t->cells[id];
            memcpy(ch->bary, old, sizeof old);
            ch->count = oc;
            c->is_leaf = 0;
        }
        /* internal cell: update and descend */
        for (int a = 0; a < t->dim; a++) c->bary[a] = (c->count * c->bary[a] + pt[a]) / (c->count + 1);
        c->count++;
        int sel = qt_select_child(t, pt, c);
        int id = qt_child(t, cell, sel);
        if (id < 0) return -1;
        cell = id;
    }
}

static int qt_build(qtree *t, const float *Y, int64_t n, int dim) {
    t->dim = dim, t->nchild = 1 << dim, t->ncells = 0;
    if (qt_new_cell(t) < 0) return -1;
    qt_cell *r = &t->cells[0];
    float w = 0;
    for (int a = 0; a < dim; a++) {
        float m = INFINITY, M = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            float v = Y[i * dim + a];
            if (v < m) m = v;
            if (v > M) M = v;
        }
        /* sklearn: M = max(M * (1 + 1e-3 sign(M)), M + 1e-3) */
        float sg = M > 0 ? 1.0f : M < 0 ? -1.0f : 0.0f;
        float M1 = M * (1.0f + 1e-3f * sg), M2 = M + 1e-3f;
        M = M1 > M2 ? M1 : M2;
        r->min_b[a] = m, r->max_b[a] = M, r->center[a] = (m + M) / 2.0f;
        if ((M - m) * (M - m) > w) w = (M - m) * (M - m);
    }
    r->sq_max_width = w;
    for (int64_t i = 0; i < n; i++)
        if (qt_insert(t, Y + i * dim)) return -1;
    return 0;
}

/* the tree for the traversal: breadth-first, the children of a cell contiguous,
 * 32 bytes a cell */
typedef struct {
    float bary[3];
    float sq_max_width;
    float count;
    int is_leaf;
    int first, nchild;
} qt_node;

/* lays t out as nodes (t->ncells of them): depth-first, the children of a
 * cell in one block (allocated when the cell is visited); queue: 2 ints a cell */
static void qt_compact(const qtree *t, qt_node *nodes, int *queue) {
    int sp = 0, next = 1;
    queue[sp++] = 0, queue[sp++] = 0; /* (cell id, node position) */
    while (sp) {
        int pos = queue[--sp], id = queue[--sp];
        const qt_cell *c = &t->cells[id];
        qt_node *nd = &nodes[pos];
        for (int a = 0; a < 3; a++) nd->bary[a] = a < t->dim ? c->bary[a] : 0.0f;
        nd->sq_max_width = c->sq_max_width;
        nd->count = (float)c->count;
        nd->is_leaf = c->is_leaf;
        nd->first = next, nd->nchild = 0;
        if (c->is_leaf) continue;
        int kids[8], nk = 0;
        for (int ch = 0; ch < t->nchild; ch++)
            if (c->children[ch] >= 0) kids[nk++] = c->children[ch];
        nd->nchild = nk;
        next += nk;
        for (int k = nk - 1; k >= 0; k--) queue[sp++] = kids[k], queue[sp++] = nd->first + k;
    }
}

/* the same for 2-d embeddings, with the force kept in registers */
static double qt_negative2(const qt_node *nodes, const float *pt, float theta2, float *neg, int *stack) {
    int sp = 0;
    double sum_Q = 0;
    float fx = 0, fy = 0, px = pt[0], py = pt[1];
    stack[sp++] = 0;
    while (sp) {
        const qt_node *c = &nodes[stack[--sp]];
        float dx = px - c->bary[0], dy = py - c->bary[1], d2 = dx * dx + dy * dy;
        if (c->is_leaf) {
            if (fabsf(dx) <= QT_EPSILON && fabsf(dy) <= QT_EPSILON) continue;
        } else if (!(c->sq_max_width < theta2 * d2)) {
            for (int ch = c->nchild - 1; ch >= 0; ch--) stack[sp++] = c->first + ch;
            continue;
        }
        double q = 1.0f / (1.0f + d2); /* float, as sklearn (float_dof / (float_dof + dist2s)) */
        sum_Q += c->count * q;
        float mult = (float)(c->count * q * q);
        fx += mult * dx, fy += mult * dy;
    }
    neg[0] = fx, neg[1] = fy;
    return sum_Q;
}

/* negative force on point pt: returns sum_Q contribution; neg (dim) filled.
 * sklearn's summarize: a leaf at the point (within 1e-6 in every dim) is
 * skipped; a cell is a summary when it is a leaf or sq_width / d2 < theta^2. */
static double qt_negative(const qt_node *nodes, int dim, const float *pt, float theta2, int dof, float *neg,
                          int *stack) {
    int sp = 0;
    double sum_Q = 0;
    float nf[3] = {0, 0, 0};
    float exponent = (dof + 1.0f) / 2.0f, fdof = (float)dof;
    stack[sp++] = 0;
    while (sp) {
        const qt_node *c = &nodes[stack[--sp]];
        float dx[3] = {0, 0, 0}, d2 = 0;
        int dup = 1;
        for (int a = 0; a < dim; a++) {
            dx[a] = pt[a] - c->bary[a];
            d2 += dx[a] * dx[a];
            dup &= fabsf(dx[a]) <= QT_EPSILON;
        }
        if (c->is_leaf) {
            if (dup) continue;
        } else if (!(c->sq_max_width < theta2 * d2)) { /* sklearn: !(w / d2 < theta^2) */
            for (int ch = c->nchild - 1; ch >= 0; ch--) stack[sp++] = c->first + ch;
            continue;
        }
        double q = fdof / (fdof + d2);
        if (dof != 1) q = pow(q, exponent);
        sum_Q += c->count * q;
        float mult = (float)(c->count * q * q);
        for (int a = 0; a < dim; a++) nf[a] += mult * dx[a];
    }
    for (int a = 0; a < dim; a++) neg[a] = nf[a];
    return sum_Q;
}

/* Z-order (Morton) key: the bits of the coordinates, quantised to 16 bits over the root cell, interleaved */
static uint64_t morton_key(const float *p, int dim, const float *lo, const float *scale) {
    uint64_t key = 0;
    uint32_t q[3] = {0, 0, 0};
    for (int a = 0; a < dim; a++) {
        float v = (p[a] - lo[a]) * scale[a];
        q[a] = v <= 0 ? 0 : v >= 65535.0f ? 65535u : (uint32_t)v;
    }
    for (int b = 15; b >= 0; b--)
        for (int a = 0; a < dim; a++) key = (key << 1) | ((q[a] >> b) & 1u);
    return key;
}

static int cmp_u64_pair(const void *x, const void *y) {
    const uint64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : (a[1] > b[1]) - (a[1] < b[1]);
}

/* ---- objectives ------------------------------------------------------------ */
typedef struct {
    int64_t n;
    int dim, dof, nt;
    /* Barnes-Hut */
    csr P;
    float exaggeration;
    float theta;
    qtree tree;
    float *neg, *pos;
    double *rowq, *rowkl;
    int *stacks;
    int stack_len;
    qt_node *nodes;
    int *queue;
    int node_cap;
    uint64_t *order; /* (morton key, point) pairs: points in space order, for locality */
    /* exact */
    double *Pd; /* n x n, symmetric, diagonal 0 */
    double *num;
} tsne_state;

/* gradient (into grad, n x dim floats) and the KL divergence (when want_err) */
static int bh_gradient(tsne_state *s, const float *Y, float *grad, int want_err, double *err) {
    int64_t n = s->n;
    int dim = s->dim, dof = s->dof, nt = s->nt;
    if (qt_build(&s->tree, Y, n, dim)) return av_fail("tsne: out of memory for the tree");
    /* depth bound for the traversal stack: cells are at most 61 deep, each level pushes < 2^dim */
    int need = 64 * (1 << dim) + 8;
    if (need > s->stack_len) {
        int *st = realloc(s->stacks, sizeof(int) * (size_t)need * nt);
        if (!st) return av_fail("tsne: out of memory");
        s->stacks = st, s->stack_len = need;
    }
    float theta2 = s->theta * s->theta;
    if (s->tree.ncells > s->node_cap) {
        int cap = s->tree.ncells + s->tree.ncells / 2;
        qt_node *nd = realloc(s->nodes, sizeof(qt_node) * (size_t)cap);
        if (nd) s->nodes = nd;
        int *q = nd ? realloc(s->queue, sizeof(int) * 2 * (size_t)cap) : NULL;
        if (q) s->queue = q;
        if (!nd || !q) return av_fail("tsne: out of memory for the tree");
        s->node_cap = cap;
    }
    qt_compact(&s->tree, s->nodes, s->queue);
    if (!s->order && !(s->order = malloc(sizeof(uint64_t) * 2 * (size_t)n))) return av_fail("tsne: out of memory");
    {
        const qt_cell *r = &s->tree.cells[0];
        float lo[3] = {0, 0, 0}, sc[3] = {0, 0, 0};
        for (int a = 0; a < dim; a++) {
            lo[a] = r->min_b[a];
            float w = r->max_b[a] - r->min_b[a];
            sc[a] = w > 0 ? 65535.0f / w : 0.0f;
        }
        for (int64_t i = 0; i < n; i++) s->order[2 * i] = morton_key(Y + i * dim, dim, lo, sc), s->order[2 * i + 1] = (uint64_t)i;
        qsort(s->order, (size_t)n, 2 * sizeof(uint64_t), cmp_u64_pair);
    }
    const qt_node *nodes = s->nodes;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 32) if (nt > 1)
    for (int64_t t = 0; t < n; t++) {
        int64_t i = (int64_t)s->order[2 * t + 1];
        int *stack = s->stacks + (size_t)omp_get_thread_num() * s->stack_len;
        s->rowq[i] = dim == 2 && dof == 1 ? qt_negative2(nodes, Y + i * dim, theta2, s->neg + i * dim, stack)
                                          : qt_negative(nodes, dim, Y + i * dim, theta2, dof, s->neg + i * dim, stack);
    }
    double sum_Q = 0;
    for (int64_t i = 0; i < n; i++) sum_Q += s->rowq[i];
    if (!(sum_Q > 0)) sum_Q = MACHINE_EPSILON; /* all points at one place */
    float exponent = (dof + 1.0f) / 2.0f, fdof = (float)dof, ex = s->exaggeration;
    const csr *P = &s->P;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        float pf[3] = {0, 0, 0}, buf[3];
        double C = 0;
        for (int64_t t = P->indptr[i]; t < P->indptr[i + 1]; t++) {
            int64_t j = P->indices[t];
            float dij = 0, pij = P->val[t] * ex;
            for (int a = 0; a < dim; a++) {
                buf[a] = Y[i * dim + a] - Y[j * dim + a];
                dij += buf[a] * buf[a];
            }
            float qij = fdof / (fdof + dij);
            if (dof != 1) qij = powf(qij, exponent);
            float w = pij * qij;
            if (want_err) {
                double q = qij / sum_Q;
                C += pij * log(fmax(pij, FLOAT32_TINY) / fmax(q, FLOAT32_TINY));
            }
            for (int a = 0; a < dim; a++) pf[a] += w * buf[a];
        }
        s->rowkl[i] = C;
        for (int a = 0; a < dim; a++) s->pos[i * dim + a] = pf[a];
    }
    float c = 2.0f * (dof + 1.0f) / dof;
    for (int64_t i = 0; i < n * dim; i++) grad[i] = (float)(s->pos[i] - s->neg[i] / sum_Q) * c;
    if (want_err) {
        double C = 0;
        for (int64_t i = 0; i < n; i++) C += s->rowkl[i];
        *err = C;
    }
    return 0;
}

static int exact_gradient(tsne_state *s, const float *Y, float *grad, int want_err, double *err) {
    int64_t n = s->n;
    int dim = s->dim, dof = s->dof, nt = s->nt;
    double expo = (dof + 1.0) / -2.0, ex = s->exaggeration;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        double rs = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) {
                s->num[i * n + j] = 0;
                continue;
            }
            double d2 = 0;
            for (int a = 0; a < dim; a++) {
                double df = (double)Y[i * dim + a] - Y[j * dim + a];
                d2 += df * df;
            }
            double v = d2 / dof + 1.0;
            v = dof == 1 ? 1.0 / v : pow(v, expo);
            s->num[i * n + j] = v;
            if (j > i) rs += v;
        }
        s->rowq[i] = rs;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += s->rowq[i];
    sum *= 2.0;
    double c = 2.0 * (dof + 1.0) / dof;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        double g[3] = {0, 0, 0}, C = 0;
        double *gg = dim <= 3 ? g : NULL;
        double gbig[64];
        if (!gg) {
            gg = gbig;
            for (int a = 0; a < dim && a < 64; a++) gg[a] = 0;
        }
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double num = s->num[i * n + j];
            double q = num / sum;
            if (q < MACHINE_EPSILON) q = MACHINE_EPSILON;
            double p = s->Pd[i * n + j] * ex;
            if (want_err && j > i) C += p * log((p > MACHINE_EPSILON ? p : MACHINE_EPSILON) / q);
            double w = (p - q) * num;
            for (int a = 0; a < dim; a++) gg[a] += w * ((double)Y[i * dim + a] - Y[j * dim + a]);
        }
        for (int a = 0; a < dim; a++) grad[i * dim + a] = (float)(gg[a] * c);
        s->rowkl[i] = C;
    }
    if (want_err) {
        double C = 0;
        for (int64_t i = 0; i < n; i++) C += s->rowkl[i];
        *err = 2.0 * C;
    }
    return 0;
}

/* ---- initialisation ------------------------------------------------------- */
static void philox_normal(uint64_t seed, float *out, int64_t count, double scale) {
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int64_t b = 0; b < count; b += 4) {
        uint32_t ctr[4] = {(uint32_t)(b / 4), (uint32_t)((uint64_t)(b / 4) >> 32), 0x7453u, 0}, r[4];
        av_philox4x32(key, ctr, r);
        double z[4];
        for (int h = 0; h < 2; h++) {
            double u1 = ((double)r[2 * h] + 1.0) / 4294967296.0, u2 = (double)r[2 * h + 1] / 4294967296.0;
            double rad = sqrt(-2.0 * log(u1));
            z[2 * h] = rad * cos(2 * M_PI * u2), z[2 * h + 1] = rad * sin(2 * M_PI * u2);
        }
        for (int h = 0; h < 4 && b + h < count; h++) out[b + h] = (float)(scale * z[h]);
    }
}

void av_tsne_opts_default(av_tsne_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_components = 2;
    o->perplexity = 30;
    o->early_exaggeration = 12;
    o->learning_rate = 0; /* auto */
    o->n_iter = 1000;
    o->n_iter_without_progress = 300;
    o->min_grad_norm = 1e-7;
    o->method = AV_TSNE_BARNES_HUT;
    o->angle = 0.5;
    o->init = AV_TSNE_INIT_PCA;
}

/* sklearn's _gradient_descent; returns the last iteration index in *it_out */
static int gradient_descent(tsne_state *s, float *p, int it, int n_iter, double momentum, double lr,
                            int n_iter_without_progress, double min_grad_norm, const av_tsne_opts *o, double *error,
                            int *it_out) {
    int64_t m = s->n * s->dim;
    float *update = calloc((size_t)m, sizeof(float)), *gains = malloc(sizeof(float) * (size_t)m);
    float *grad = malloc(sizeof(float) * (size_t)m);
    if (!update || !gains || !grad) {
        free(update), free(gains), free(grad);
        return av_fail("tsne: out of memory");
    }
    for (int64_t t = 0; t < m; t++) gains[t] = 1.0f;
    double err = 1.79769313486231570e308, best_error = err;
    int best_iter = it, i = it, rc = 0;
    float fm = (float)momentum, flr = (float)lr;
    double tic = ml_now_s();
    for (i = it; i < n_iter; i++) {
        int check = (i + 1) % N_ITER_CHECK == 0;
        int want = check || i == n_iter - 1;
        double e = NAN;
        rc = o->method == AV_TSNE_EXACT ? exact_gradient(s, p, grad, want, &e) : bh_gradient(s, p, grad, want, &e);
        if (rc) break;
        if (want) err = e;
        for (int64_t t = 0; t < m; t++) {
            float g = grad[t];
            if (update[t] * g < 0.0f) gains[t] += 0.2f;
            else gains[t] *= 0.8f;
            if (gains[t] < 0.01f) gains[t] = 0.01f;
            g *= gains[t];
            grad[t] = g;
            update[t] = fm * update[t] - flr * g;
            p[t] += update[t];
        }
        if (check) {
            double gn = 0;
            for (int64_t t = 0; t < m; t++) gn += (double)grad[t] * grad[t];
            gn = sqrt(gn);
            double toc = ml_now_s();
            if (o->verbose >= 2)
                fprintf(stderr, "[t-SNE] Iteration %d: error = %.7f, gradient norm = %.7f (%d iterations in %0.3fs)\n",
                        i + 1, err, gn, N_ITER_CHECK, toc - tic);
            tic = toc;
            if (o->progress && o->progress(o->progress_ud, i + 1, err)) {
                rc = -1;
                break;
            }
            if (err < best_error) best_error = err, best_iter = i;
            else if (i - best_iter > n_iter_without_progress) {
                if (o->verbose >= 2)
                    fprintf(stderr, "[t-SNE] Iteration %d: did not make any progress during the last %d episodes. Finished.\n",
                            i + 1, n_iter_without_progress);
                break;
            }
            if (gn <= min_grad_norm) {
                if (o->verbose >= 2) fprintf(stderr, "[t-SNE] Iteration %d: gradient norm %f. Finished.\n", i + 1, gn);
                break;
            }
        }
    }
    if (i >= n_iter) i = n_iter - 1 < it ? it : n_iter - 1;
    free(update), free(gains), free(grad);
    *error = err;
    *it_out = i;
    return rc;
}

static int exact_p(const double *x, int64_t n, int64_t d, double perplexity, double *P, const char *fn) {
    double *D = P; /* distances first, in place */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)d, 1.0, x, (int)d, 0.0, D, (int)n);
    ml_symmetrize_upper(D, n);
    float *sq = malloc(sizeof(float) * (size_t)(n * n));
    double *cp = malloc(sizeof(double) * (size_t)(n * n));
    if (!sq || !cp) {
        free(sq), free(cp);
        return av_fail("%s: out of memory for the %lldx%lld distance matrix", fn, (long long)n, (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = D[i * n + i] + D[j * n + j] - 2 * D[i * n + j];
            if (i == j || v < 0) v = 0;
            sq[i * n + j] = (float)v;
        }
    ml_binary_search_perplexity(sq, n, n, (float)perplexity, 0, cp);
    free(sq);
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = cp[i * n + j] + cp[j * n + i];
            P[i * n + j] = v;
            sum += v;
        }
    free(cp);
    if (sum < MACHINE_EPSILON) sum = MACHINE_EPSILON;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = i == j ? 0 : P[i * n + j] / sum;
            P[i * n + j] = i == j ? 0 : (v > MACHINE_EPSILON ? v : MACHINE_EPSILON);
        }
    return 0;
}

av_tensor *av_tsne(const av_tensor *X, const av_tsne_opts *o, av_tsne_info *info) {
    const char *fn = "tsne";
    double t0 = ml_now_s();
    if (ml_check_matrix(X, fn, "X")) return NULL;
    int64_t n = X->shape[0], d = X->shape[1];
    if (n < 2) {
        av_fail("%s: X needs at least 2 samples (rows), got %lld", fn, (long long)n);
        return NULL;
    }
    if (n > 2000000000 / 4) {
        av_fail("%s: too many samples (%lld)", fn, (long long)n);
        return NULL;
    }
    int dim = o->n_components;
    if (dim < 1 || (o->method == AV_TSNE_BARNES_HUT && dim > 3) || dim > 64) {
        av_fail("%s: n_components must be in 1..%d for method '%s', got %d", fn, o->method == AV_TSNE_EXACT ? 64 : 3,
                o->method == AV_TSNE_EXACT ? "exact" : "barnes_hut", dim);
        return NULL;
    }
    if (ml_check_perplexity(o->perplexity, n, fn)) return NULL;
    if (!(o->early_exaggeration >= 1) || !isfinite(o->early_exaggeration)) {
        av_fail("%s: early_exaggeration must be >= 1, got %g", fn, o->early_exaggeration);
        return NULL;
    }
    if (!(o->learning_rate <= 0 || isfinite(o->learning_rate)) || isnan(o->learning_rate)) {
        av_fail("%s: learning_rate must be a positive number or 'auto', got %g", fn, o->learning_rate);
        return NULL;
    }
    if (o->n_iter < 1) {
        av_fail("%s: n_iter must be >= 1, got %d", fn, o->n_iter);
        return NULL;
    }
    if (o->n_iter_without_progress < -1) {
        av_fail("%s: n_iter_without_progress must be >= -1, got %d", fn, o->n_iter_without_progress);
        return NULL;
    }
    if (!(o->min_grad_norm >= 0)) {
        av_fail("%s: min_grad_norm must be >= 0, got %g", fn, o->min_grad_norm);
        return NULL;
    }
    if (!(o->angle >= 0 && o->angle <= 1)) {
        av_fail("%s: angle must be in [0, 1], got %g", fn, o->angle);
        return NULL;
    }
    if (o->init_Y) {
        if (ml_check_matrix(o->init_Y, fn, "init")) return NULL;
        if (o->init_Y->shape[0] != n || o->init_Y->shape[1] != dim) {
            char b[64];
            av_fail("%s: init must be a %lldx%d tensor (N x n_components), got %s", fn, (long long)n, dim,
                    av_shape_str(o->init_Y, b, sizeof b));
            return NULL;
        }
    }
    double *x = ml_read_f64(X, fn, "X");
    if (!x) return NULL;
    double *yinit = NULL;
    if (o->init_Y && !(yinit = ml_read_f64(o->init_Y, fn, "init"))) {
        free(x);
        return NULL;
    }

    tsne_state s;
    memset(&s, 0, sizeof s);
    s.n = n, s.dim = dim, s.dof = dim - 1 > 1 ? dim - 1 : 1, s.nt = ml_nthreads(), s.theta = (float)o->angle;
    av_tensor *out = NULL;
    float *Y = malloc(sizeof(float) * (size_t)(n * dim));
    s.rowq = malloc(sizeof(double) * (size_t)n);
    s.rowkl = malloc(sizeof(double) * (size_t)n);
    if (!Y || !s.rowq || !s.rowkl) {
        av_fail("%s: out of memory", fn);
        goto done;
    }
    double lr = o->learning_rate > 0 ? o->learning_rate : fmax(n / o->early_exaggeration / 4.0, 50.0);

    /* initial embedding (before x is centred in place: the PCA centres its own copy) */
    if (yinit) {
        for (int64_t t = 0; t < n * dim; t++) Y[t] = (float)yinit[t];
    } else if (o->init == AV_TSNE_INIT_RANDOM) {
        philox_normal(o->seed, Y, n * dim, 1e-4);
    } else {
        if (dim > (n < d ? n : d)) {
            av_fail("%s: init 'pca' needs n_components (%d) <= min(N, D) (%lld)", fn, dim, (long long)(n < d ? n : d));
            goto done;
        }
        double *xc = malloc(sizeof(double) * (size_t)(n * d)), *mu = malloc(sizeof(double) * (size_t)d);
        double *comps = malloc(sizeof(double) * (size_t)(dim * d)), ev[64], sv[64], tot;
        double *yy = malloc(sizeof(double) * (size_t)(n * dim));
        int rc = -1;
        if (!xc || !mu || !comps || !yy) av_fail("%s: out of memory", fn);
        else {
            memcpy(xc, x, sizeof(double) * (size_t)(n * d));
            rc = ml_pca_core(xc, n, d, dim, mu, comps, ev, sv, &tot, fn);
        }
        if (rc == 0) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, dim, (int)d, 1.0, xc, (int)d, comps, (int)d,
                        0.0, yy, dim);
            /* float32, then / std(column 1) * 1e-4 (numpy std in float32: ddof 0) */
            double mean0 = 0, var0 = 0;
            for (int64_t i = 0; i < n; i++) Y[i * dim] = (float)yy[i * dim], mean0 += Y[i * dim];
            mean0 /= n;
            for (int64_t i = 0; i < n; i++) var0 += (Y[i * dim] - mean0) * (Y[i * dim] - mean0);
            float sd = (float)sqrt(var0 / n);
            if (!(sd > 0)) sd = 1;
            for (int64_t i = 0; i < n; i++)
                for (int a = 0; a < dim; a++) Y[i * dim + a] = (float)yy[i * dim + a] / sd * 1e-4f;
        }
        free(xc), free(mu), free(comps), free(yy);
        if (rc) goto done;
    }

    ml_centre(x, n, d);
    if (o->method == AV_TSNE_EXACT) {
        if (n > 46340) {
            av_fail("%s: method 'exact' is limited to 46340 samples, got %lld (use 'barnes_hut')", fn, (long long)n);
            goto done;
        }
        s.Pd = malloc(sizeof(double) * (size_t)(n * n));
        s.num = malloc(sizeof(double) * (size_t)(n * n));
        if (!s.Pd || !s.num) {
            av_fail("%s: out of memory for the %lldx%lld matrices of method 'exact'", fn, (long long)n, (long long)n);
            goto done;
        }
        if (exact_p(x, n, d, o->perplexity, s.Pd, fn)) goto done;
    } else {
        int k = ml_default_k(o->perplexity, n);
        int64_t *nbr = malloc(sizeof(int64_t) * (size_t)(n * k));
        double *dist = malloc(sizeof(double) * (size_t)(n * k)), *cp = malloc(sizeof(double) * (size_t)(n * k));
        int rc = -1;
        if (!nbr || !dist || !cp) av_fail("%s: out of memory for the neighbours", fn);
        else {
            if (o->verbose) fprintf(stderr, "[t-SNE] Computing %d nearest neighbors...\n", k);
            rc = ml_cond_p_nn(x, n, d, o->perplexity, k, X->dtype == AV_F32, nbr, dist, cp, fn);
            if (!rc) rc = ml_joint_p_nn(nbr, cp, n, k, &s.P, fn);
        }
        free(nbr), free(dist), free(cp);
        if (rc) goto done;
        s.neg = malloc(sizeof(float) * (size_t)(n * dim));
        s.pos = malloc(sizeof(float) * (size_t)(n * dim));
        if (!s.neg || !s.pos) {
            av_fail("%s: out of memory", fn);
            goto done;
        }
    }
    double t_aff = ml_now_s() - t0;
    if (o->verbose) fprintf(stderr, "[t-SNE] Computed conditional probabilities in %.3fs\n", t_aff);

    double err = 0;
    int it = 0;
    int n_explore = o->n_iter < EXPLORATION_N_ITER ? o->n_iter : EXPLORATION_N_ITER;
    s.exaggeration = (float)o->early_exaggeration;
    if (gradient_descent(&s, Y, 0, n_explore, 0.5, lr, EXPLORATION_N_ITER, o->min_grad_norm, o, &err, &it)) goto done;
    if (o->verbose)
        fprintf(stderr, "[t-SNE] KL divergence after %d iterations with early exaggeration: %f\n", it + 1, err);
    s.exaggeration = 1.0f;
    if (o->n_iter > it + 1) {
        int nwp = o->n_iter_without_progress;
        if (gradient_descent(&s, Y, it + 1, o->n_iter, 0.8, lr, nwp, o->min_grad_norm, o, &err, &it)) goto done;
    }
    if (o->verbose) fprintf(stderr, "[t-SNE] KL divergence after %d iterations: %f\n", it + 1, err);
    {
        int64_t sh[2] = {n, dim};
        out = av_empty(2, sh, AV_F32);
        if (out) memcpy(av_data(out), Y, sizeof(float) * (size_t)(n * dim));
    }
    if (info) {
        info->kl_divergence = err;
        info->n_iter = it + 1;
        info->learning_rate = lr;
        info->seconds = ml_now_s() - t0;
        info->seconds_affinities = t_aff;
    }
done:
    free(x), free(yinit), free(Y), free(s.rowq), free(s.rowkl), free(s.neg), free(s.pos), free(s.stacks);
    free(s.tree.cells), free(s.Pd), free(s.num), free(s.nodes), free(s.queue), free(s.order);
    ml_csr_free(&s.P);
    return out;
}
