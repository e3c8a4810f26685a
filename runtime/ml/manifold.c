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
#include "aviary/philox.h"

/* LAPACK (OpenBLAS exports it), Fortran calling convention */
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a, const int *lda,
             const double *vl, const double *vu, const int *il, const int *iu, const double *abstol, int *m,
             double *w, double *z, const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
             const int *liwork, int *info, size_t l1, size_t l2, size_t l3);

#define MACHINE_EPSILON 2.220446049250313e-16
#define FLOAT32_TINY 1.1754943508222875e-38
#define EPSILON_DBL 1e-8
#define PERPLEXITY_TOLERANCE 1e-5
#define QT_EPSILON 1e-6
#define N_ITER_CHECK 50
#define EXPLORATION_N_ITER 250

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int nthreads(void) {
    int n = av_get_num_threads();
    return n < 1 ? 1 : n;
}

/* ---- reading inputs ------------------------------------------------------ */
static int check_matrix(const av_tensor *X, const char *fn, const char *what) {
    if (!X) return av_fail("%s: %s is missing", fn, what);
    if (X->storage->device.type != AV_CPU) return av_fail("%s: %s must be a CPU tensor", fn, what);
    if (X->ndim != 2) {
        char b[64];
        return av_fail("%s: %s must be a 2-D tensor (N x D), got %s", fn, what, av_shape_str(X, b, sizeof b));
    }
    if (X->dtype != AV_F32 && X->dtype != AV_F64)
        return av_fail("%s: %s must be a float32 or float64 tensor, got %s", fn, what, av_dtype_name(X->dtype));
    if (X->shape[0] < 1 || X->shape[1] < 1) {
        char b[64];
        return av_fail("%s: %s must not be empty, got %s", fn, what, av_shape_str(X, b, sizeof b));
    }
    return 0;
}

/* X (2-D float, any strides) -> new contiguous double buffer; checks finiteness */
static double *read_f64(const av_tensor *X, const char *fn, const char *what) {
    int64_t n = X->shape[0], d = X->shape[1], s0 = X->stride[0], s1 = X->stride[1];
    double *out = malloc(sizeof(double) * (size_t)(n * d));
    if (!out) {
        av_fail("%s: out of memory for a %lldx%lld copy of %s", fn, (long long)n, (long long)d, what);
        return NULL;
    }
    int bad = 0;
    if (X->dtype == AV_F32) {
        const float *p = av_data(X);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) out[i * d + j] = p[i * s0 + j * s1];
    } else {
        const double *p = av_data(X);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) out[i * d + j] = p[i * s0 + j * s1];
    }
    for (int64_t i = 0; i < n * d && !bad; i++)
        if (!isfinite(out[i])) {
            av_fail("%s: %s has a non-finite value (%s) at row %lld, column %lld", fn, what,
                    isnan(out[i]) ? "nan" : out[i] > 0 ? "inf" : "-inf",
                    (long long)(i / d + 1), (long long)(i % d + 1));
            bad = 1;
        }
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

static av_tensor *tensor_from_f64(int ndim, const int64_t *shape, const double *data, av_dtype dt) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (!t) return NULL;
    int64_t n = av_numel(t);
    if (dt == AV_F64) memcpy(av_data(t), data, sizeof(double) * (size_t)n);
    else {
        float *p = av_data(t);
        for (int64_t i = 0; i < n; i++) p[i] = (float)data[i];
    }
    return t;
}

/* ---- PCA ----------------------------------------------------------------- */
/* top k eigenpairs (descending) of the symmetric n x n matrix A (destroyed);
 * vecs: n x k column-major (vector j at vecs + j*n) */
static int top_eigen(double *A, int n, int k, double *vals, double *vecs, const char *fn) {
    int il = n - k + 1, iu = n, m = 0, info = 0, lwork = -1, liwork = -1, iwq = 0;
    double vl = 0, vu = 0, abstol = 0, wq = 0;
    int *isuppz = malloc(sizeof(int) * 2 * (size_t)(k > 0 ? k : 1));
    double *w = malloc(sizeof(double) * (size_t)n), *z = malloc(sizeof(double) * (size_t)n * k);
    if (!isuppz || !w || !z) {
        free(isuppz), free(w), free(z);
        return av_fail("%s: out of memory for the eigendecomposition of a %dx%d matrix", fn, n, n);
    }
    const char *range = k == n ? "A" : "I";
    dsyevr_("V", range, "U", &n, A, &n, &vl, &vu, &il, &iu, &abstol, &m, w, z, &n, isuppz, &wq, &lwork, &iwq,
            &liwork, &info, 1, 1, 1);
    lwork = (int)wq + 1, liwork = iwq + 1;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    int *iwork = malloc(sizeof(int) * (size_t)liwork);
    if (!work || !iwork) {
        free(isuppz), free(w), free(z), free(work), free(iwork);
        return av_fail("%s: out of memory for LAPACK workspace", fn);
    }
    dsyevr_("V", range, "U", &n, A, &n, &vl, &vu, &il, &iu, &abstol, &m, w, z, &n, isuppz, work, &lwork, iwork,
            &liwork, &info, 1, 1, 1);
    free(work), free(iwork), free(isuppz);
    if (info != 0 || m != k) {
        free(w), free(z);
        return av_fail("%s: the eigendecomposition failed (LAPACK dsyevr info %d, %d of %d values)", fn, info, m, k);
    }
    for (int j = 0; j < k; j++) { /* ascending -> descending */
        vals[j] = w[k - 1 - j];
        memcpy(vecs + (size_t)j * n, z + (size_t)(k - 1 - j) * n, sizeof(double) * (size_t)n);
    }
    free(w), free(z);
    return 0;
}

static void symmetrize_upper(double *A, int64_t n) { /* row-major upper -> full */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) A[j * n + i] = A[i * n + j];
}

/* PCA on a contiguous double copy Xc (centred in place). comps: k x d, row-major */
static int pca_core(double *Xc, int64_t n, int64_t d, int k, double *mean, double *comps, double *ev,
                    double *sv, double *total, const char *fn) {
    for (int64_t j = 0; j < d; j++) mean[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += Xc[i * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    double tot = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double v = Xc[i * d + j] - mean[j];
            Xc[i * d + j] = v;
            tot += v * v;
        }
    *total = tot / (double)(n - 1);
    double *vals = malloc(sizeof(double) * (size_t)k);
    double *proj = malloc(sizeof(double) * (size_t)n);
    int64_t m = d <= n ? d : n;
    double *A = malloc(sizeof(double) * (size_t)(m * m));
    double *vecs = malloc(sizeof(double) * (size_t)(m * k));
    if (!vals || !proj || !A || !vecs) {
        free(vals), free(proj), free(A), free(vecs);
        return av_fail("%s: out of memory for a %lldx%lld matrix", fn, (long long)m, (long long)m);
    }
    if (d <= n) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0, Xc, (int)d, 0.0, A, (int)d);
    } else {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)d, 1.0, Xc, (int)d, 0.0, A, (int)n);
    }
    symmetrize_upper(A, m);
    int rc = top_eigen(A, (int)m, k, vals, vecs, fn);
    free(A);
    if (rc) {
        free(vals), free(proj), free(vecs);
        return -1;
    }
    for (int j = 0; j < k; j++) {
        double lam = vals[j] > 0 ? vals[j] : 0, s = sqrt(lam);
        sv[j] = s;
        ev[j] = lam / (double)(n - 1);
        double *v = comps + (size_t)j * d;
        if (d <= n) memcpy(v, vecs + (size_t)j * d, sizeof(double) * (size_t)d);
        else { /* v = Xc^T u / s */
            cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, Xc, (int)d, vecs + (size_t)j * n, 1, 0.0,
                        v, 1);
            double nv = cblas_dnrm2((int)d, v, 1);
            if (nv > 0)
                for (int64_t t = 0; t < d; t++) v[t] /= nv;
        }
        /* svd_flip, u-based: the largest |U[:, j]| entry positive; U[:, j] = Xc v / s */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, Xc, (int)d, v, 1, 0.0, proj, 1);
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabs(proj[i]) > fabs(proj[best])) best = i;
        if (proj[best] < 0)
            for (int64_t t = 0; t < d; t++) v[t] = -v[t];
    }
    free(vals), free(proj), free(vecs);
    return 0;
}

int av_pca_fit(const av_tensor *X, int k, av_tensor **components, av_tensor **mean,
               av_tensor **explained_variance, av_tensor **singular_values, double *total_variance) {
    const char *fn = "pca";
    *components = *mean = *explained_variance = *singular_values = NULL;
    if (check_matrix(X, fn, "X")) return -1;
    int64_t n = X->shape[0], d = X->shape[1];
    if (n < 2) return av_fail("%s: X needs at least 2 samples (rows), got %lld", fn, (long long)n);
    int64_t kmax = n < d ? n : d;
    if (k < 1 || k > kmax)
        return av_fail("%s: n_components must be in 1..%lld (min(N, D) for X %lldx%lld), got %d", fn,
                       (long long)kmax, (long long)n, (long long)d, k);
    if (kmax > 46340) return av_fail("%s: min(N, D) = %lld is too large", fn, (long long)kmax);
    double *Xc = read_f64(X, fn, "X");
    if (!Xc) return -1;
    double *mu = malloc(sizeof(double) * (size_t)d), *comps = malloc(sizeof(double) * (size_t)(k * d));
    double *ev = malloc(sizeof(double) * (size_t)k), *sv = malloc(sizeof(double) * (size_t)k);
    int rc = -1;
    if (!mu || !comps || !ev || !sv) av_fail("%s: out of memory", fn);
    else rc = pca_core(Xc, n, d, k, mu, comps, ev, sv, total_variance, fn);
    if (rc == 0) {
        int64_t sc[2] = {k, d}, sm[1] = {d}, sk[1] = {k};
        *components = tensor_from_f64(2, sc, comps, AV_F64);
        *mean = tensor_from_f64(1, sm, mu, AV_F64);
        *explained_variance = tensor_from_f64(1, sk, ev, AV_F64);
        *singular_values = tensor_from_f64(1, sk, sv, AV_F64);
        if (!*components || !*mean || !*explained_variance || !*singular_values) {
            av_release(*components), av_release(*mean), av_release(*explained_variance), av_release(*singular_values);
            *components = *mean = *explained_variance = *singular_values = NULL;
            rc = -1;
        }
    }
    free(Xc), free(mu), free(comps), free(ev), free(sv);
    return rc;
}

static double *read_vec(const av_tensor *t, int64_t n, const char *fn, const char *what) {
    if (!t || t->storage->device.type != AV_CPU || !av_dtype_is_float(t->dtype) || av_numel(t) != n) {
        av_fail("%s: %s must be a float tensor of %lld elements", fn, what, (long long)n);
        return NULL;
    }
    double *out = malloc(sizeof(double) * (size_t)n);
    if (!out) {
        av_fail("%s: out of memory", fn);
        return NULL;
    }
    /* any shape with n elements: walk it in row-major order */
    int64_t idx[AV_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        out[i] = av_get(t, idx);
        for (int dd = t->ndim - 1; dd >= 0; dd--) {
            if (++idx[dd] < t->shape[dd]) break;
            idx[dd] = 0;
        }
    }
    return out;
}

av_tensor *av_pca_transform(const av_tensor *X, const av_tensor *components, const av_tensor *mean,
                            const double *scale) {
    const char *fn = "pca_transform";
    if (check_matrix(X, fn, "X") || check_matrix(components, fn, "components")) return NULL;
    int64_t n = X->shape[0], d = X->shape[1], k = components->shape[0];
    if (components->shape[1] != d) {
        av_fail("%s: X has %lld features (columns) but the PCA was fitted on %lld", fn, (long long)d,
                (long long)components->shape[1]);
        return NULL;
    }
    double *x = read_f64(X, fn, "X");
    if (!x) return NULL;
    double *c = read_f64(components, fn, "components"), *mu = c ? read_vec(mean, d, fn, "mean") : NULL;
    double *y = malloc(sizeof(double) * (size_t)(n * k));
    av_tensor *out = NULL;
    if (c && mu && y) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) x[i * d + j] -= mu[j];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)k, (int)d, 1.0, x, (int)d, c, (int)d, 0.0,
                    y, (int)k);
        if (scale)
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < k; j++) y[i * k + j] /= scale[j];
        int64_t sh[2] = {n, k};
        out = tensor_from_f64(2, sh, y, AV_F32);
    } else if (!y) av_fail("%s: out of memory", fn);
    free(x), free(c), free(mu), free(y);
    return out;
}

/* ---- nearest neighbours ------------------------------------------------ */
/* max-heap of (dist, index) of size k, the largest on top */
static void heap_push(double *hd, int64_t *hi, int *sz, int k, double dv, int64_t iv) {
    if (*sz < k) {
        int c = (*sz)++;
        while (c > 0) {
            int p = (c - 1) / 2;
            if (hd[p] > dv || (hd[p] == dv && hi[p] > iv)) break;
            hd[c] = hd[p], hi[c] = hi[p];
            c = p;
        }
        hd[c] = dv, hi[c] = iv;
        return;
    }
    if (dv > hd[0] || (dv == hd[0] && iv > hi[0])) return;
    int c = 0;
    for (;;) {
        int l = 2 * c + 1, r = l + 1, m = c;
        double md = dv;
        int64_t mi = iv;
        if (l < k && (hd[l] > md || (hd[l] == md && hi[l] > mi))) m = l, md = hd[l], mi = hi[l];
        if (r < k && (hd[r] > md || (hd[r] == md && hi[r] > mi))) m = r;
        if (m == c) break;
        hd[c] = hd[m], hi[c] = hi[m];
        c = m;
    }
    hd[c] = dv, hi[c] = iv;
}

typedef struct {
    double d;
    int64_t i;
} dist_idx;

static int cmp_dist_idx(const void *a, const void *b) {
    const dist_idx *x = a, *y = b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* k nearest neighbours (itself excluded) of every row of x (n x d, double,
 * centred helps precision), by squared euclidean distance, sorted; single:
 * screen with float32 GEMM, else double. Distances are recomputed exactly
 * (sum of squared differences in double) for the selected neighbours. */
static int knn(const double *x, int64_t n, int64_t d, int k, int single, int64_t *nbr, double *dist,
               const char *fn) {
    int64_t B = 256;
    if (B > n) B = n;
    double *norms = malloc(sizeof(double) * (size_t)n);
    float *xf = single ? malloc(sizeof(float) * (size_t)(n * d)) : NULL;
    float *gf = single ? malloc(sizeof(float) * (size_t)(B * n)) : NULL;
    double *gd = single ? NULL : malloc(sizeof(double) * (size_t)(B * n));
    int nt = nthreads();
    double *heapd = malloc(sizeof(double) * (size_t)k * nt);
    int64_t *heapi = malloc(sizeof(int64_t) * (size_t)k * nt);
    dist_idx *tmps = malloc(sizeof(dist_idx) * (size_t)k * nt);
    if (!norms || (single && (!xf || !gf)) || (!single && !gd) || !heapd || !heapi || !tmps) {
        free(norms), free(xf), free(gf), free(gd), free(heapd), free(heapi), free(tmps);
        return av_fail("%s: out of memory for the neighbour search", fn);
    }
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
        norms[i] = s;
    }
    if (single)
        for (int64_t i = 0; i < n * d; i++) xf[i] = (float)x[i];
    for (int64_t r0 = 0; r0 < n; r0 += B) {
        int64_t nb = n - r0 < B ? n - r0 : B;
        if (single)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)n, (int)d, 1.0f, xf + r0 * d, (int)d,
                        xf, (int)d, 0.0f, gf, (int)n);
        else
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)n, (int)d, 1.0, x + r0 * d, (int)d, x,
                        (int)d, 0.0, gd, (int)n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8) if (nt > 1)
        for (int64_t r = 0; r < nb; r++) {
            int tid = omp_get_thread_num();
            double *hd = heapd + (size_t)tid * k;
            int64_t *hi = heapi + (size_t)tid * k;
            int sz = 0;
            int64_t i = r0 + r;
            double ni = norms[i];
            for (int64_t j = 0; j < n; j++) {
                if (j == i) continue;
                double g = single ? (double)gf[r * n + j] : gd[r * n + j];
                double dv = ni + norms[j] - 2 * g;
                heap_push(hd, hi, &sz, k, dv, j);
            }
            dist_idx *tmp = tmps + (size_t)tid * k;
            for (int t = 0; t < sz; t++) {
                int64_t j = hi[t];
                double s = 0;
                for (int64_t c = 0; c < d; c++) {
                    double df = x[i * d + c] - x[j * d + c];
                    s += df * df;
                }
                tmp[t].d = s, tmp[t].i = j;
            }
            qsort(tmp, (size_t)sz, sizeof *tmp, cmp_dist_idx);
            for (int t = 0; t < sz; t++) nbr[i * k + t] = tmp[t].i, dist[i * k + t] = tmp[t].d;
        }
    }
    free(norms), free(xf), free(gf), free(gd), free(heapd), free(heapi), free(tmps);
    return 0;
}

/* ---- conditional probabilities (sklearn _utils._binary_search_perplexity) */
/* sq: n x m float32 squared distances; using_neighbors = 0: the full matrix
 * (m == n) with the diagonal skipped. P: n x m double. */
static void binary_search_perplexity(const float *sq, int64_t n, int64_t m, float desired_perplexity, int using_nn,
                                     double *P) {
    double desired_entropy = log(desired_perplexity);
    int nt = nthreads();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16) if (nt > 1 && n * m > 20000)
    for (int64_t i = 0; i < n; i++) {
        double beta_min = -INFINITY, beta_max = INFINITY, beta = 1.0;
        const float *s = sq + i * m;
        double *p = P + i * m;
        for (int l = 0; l < 100; l++) {
            double sum_Pi = 0.0;
            for (int64_t j = 0; j < m; j++)
                if (j != i || using_nn) {
                    p[j] = exp(-(double)s[j] * beta);
                    sum_Pi += p[j];
                } else p[j] = 0.0;
            if (sum_Pi == 0.0) sum_Pi = EPSILON_DBL;
            double sum_disti_Pi = 0.0;
            for (int64_t j = 0; j < m; j++) {
                p[j] /= sum_Pi;
                sum_disti_Pi += (double)s[j] * p[j];
            }
            double entropy = log(sum_Pi) + beta * sum_disti_Pi;
            double diff = entropy - desired_entropy;
            if (fabs(diff) <= PERPLEXITY_TOLERANCE) break;
            if (diff > 0.0) {
                beta_min = beta;
                beta = beta_max == INFINITY ? beta * 2.0 : (beta + beta_max) / 2.0;
            } else {
                beta_max = beta;
                beta = beta_min == -INFINITY ? beta / 2.0 : (beta + beta_min) / 2.0;
            }
        }
    }
}

static int check_perplexity(double perplexity, int64_t n, const char *fn) {
    if (!(perplexity > 0) || !isfinite(perplexity))
        return av_fail("%s: perplexity must be a positive number, got %g", fn, perplexity);
    if (perplexity >= (double)n)
        return av_fail("%s: perplexity (%g) must be less than the number of samples N (%lld)", fn, perplexity,
                       (long long)n);
    return 0;
}

static int default_k(double perplexity, int64_t n) {
    int64_t k = (int64_t)(3.0 * perplexity + 1);
    return (int)(n - 1 < k ? n - 1 : k);
}

/* centred double copy for distances (better conditioned GEMM) */
static void centre(double *x, int64_t n, int64_t d) {
    for (int64_t j = 0; j < d; j++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i * d + j];
        s /= (double)n;
        for (int64_t i = 0; i < n; i++) x[i * d + j] -= s;
    }
}

static int cond_p_nn(const double *x, int64_t n, int64_t d, double perplexity, int k, int single, int64_t *nbr,
                     double *dist, double *P, const char *fn) {
    if (knn(x, n, d, k, single, nbr, dist, fn)) return -1;
    float *sq = malloc(sizeof(float) * (size_t)(n * k));
    if (!sq) return av_fail("%s: out of memory", fn);
    for (int64_t i = 0; i < n * k; i++) sq[i] = (float)dist[i];
    binary_search_perplexity(sq, n, k, (float)perplexity, 1, P);
    free(sq);
    return 0;
}

int av_tsne_conditional_p(const av_tensor *X, double perplexity, int k, av_tensor **neighbors, av_tensor **sqdist,
                          av_tensor **cond_P) {
    const char *fn = "tsne";
    *neighbors = *sqdist = *cond_P = NULL;
    if (check_matrix(X, fn, "X")) return -1;
    int64_t n = X->shape[0], d = X->shape[1];
    if (n < 2) return av_fail("%s: X needs at least 2 samples (rows), got %lld", fn, (long long)n);
    if (check_perplexity(perplexity, n, fn)) return -1;
    if (k <= 0) k = default_k(perplexity, n);
    if (k > n - 1) return av_fail("%s: k (%d) must be at most N - 1 (%lld)", fn, k, (long long)(n - 1));
    double *x = read_f64(X, fn, "X");
    if (!x) return -1;
    centre(x, n, d);
    int64_t sh[2] = {n, k};
    *neighbors = av_empty(2, sh, AV_I64);
    *sqdist = av_empty(2, sh, AV_F64);
    *cond_P = av_empty(2, sh, AV_F64);
    int rc = -1;
    if (*neighbors && *sqdist && *cond_P)
        rc = cond_p_nn(x, n, d, perplexity, k, X->dtype == AV_F32, av_data(*neighbors), av_data(*sqdist),
                       av_data(*cond_P), fn);
    free(x);
    if (rc) {
        av_release(*neighbors), av_release(*sqdist), av_release(*cond_P);
        *neighbors = *sqdist = *cond_P = NULL;
    }
    return rc;
}

/* ---- symmetric sparse P (CSR) -------------------------------------------- */
typedef struct {
    int64_t n, nnz;
    int64_t *indptr, *indices;
    float *val;
} csr;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* P = (C + C^T) / sum, C the conditional P over the neighbours (n x k) */
static int joint_p_nn(const int64_t *nbr, const double *cp, int64_t n, int k, csr *out, const char *fn) {
    int64_t *cnt = calloc((size_t)n + 1, sizeof(int64_t));
    int64_t m = n * k * 2;
    int64_t *col = malloc(sizeof(int64_t) * (size_t)m);
    double *v = malloc(sizeof(double) * (size_t)m);
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)n);
    if (!cnt || !col || !v || !fill) {
        free(cnt), free(col), free(v), free(fill);
        return av_fail("%s: out of memory for P", fn);
    }
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < k; t++) cnt[i + 1]++, cnt[nbr[i * k + t] + 1]++;
    for (int64_t i = 0; i < n; i++) cnt[i + 1] += cnt[i];
    memcpy(fill, cnt, sizeof(int64_t) * (size_t)n);
    /* encode (col, value) pairs: sort by column within each row via an index sort */
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < k; t++) {
            int64_t j = nbr[i * k + t];
            double p = cp[i * k + t];
            col[fill[i]] = j, v[fill[i]++] = p;
            col[fill[j]] = i, v[fill[j]++] = p;
        }
    /* sort each row by column and merge duplicates */
    int64_t *indptr = malloc(sizeof(int64_t) * (size_t)(n + 1));
    int64_t *indices = malloc(sizeof(int64_t) * (size_t)m);
    double *vals = malloc(sizeof(double) * (size_t)m);
    if (!indptr || !indices || !vals) {
        free(cnt), free(col), free(v), free(fill), free(indptr), free(indices), free(vals);
        return av_fail("%s: out of memory for P", fn);
    }
    int64_t nnz = 0;
    indptr[0] = 0;
    int64_t maxrow = 0;
    for (int64_t i = 0; i < n; i++)
        if (cnt[i + 1] - cnt[i] > maxrow) maxrow = cnt[i + 1] - cnt[i];
    int64_t *key = malloc(sizeof(int64_t) * 2 * (size_t)(maxrow > 0 ? maxrow : 1));
    if (!key) {
        free(cnt), free(col), free(v), free(fill), free(indptr), free(indices), free(vals);
        return av_fail("%s: out of memory for P", fn);
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = cnt[i], b = cnt[i + 1], r = b - a;
        for (int64_t t = 0; t < r; t++) key[2 * t] = col[a + t], key[2 * t + 1] = a + t;
        qsort(key, (size_t)r, 2 * sizeof(int64_t), cmp_i64);
        for (int64_t t = 0; t < r; t++) {
            int64_t j = key[2 * t];
            double p = v[key[2 * t + 1]];
            if (nnz > indptr[i] && indices[nnz - 1] == j) vals[nnz - 1] += p;
            else indices[nnz] = j, vals[nnz++] = p;
        }
        indptr[i + 1] = nnz;
    }
    for (int64_t t = 0; t < nnz; t++) total += vals[t];
    if (total < MACHINE_EPSILON) total = MACHINE_EPSILON;
    out->val = malloc(sizeof(float) * (size_t)(nnz > 0 ? nnz : 1));
    if (!out->val) {
        free(cnt), free(col), free(v), free(fill), free(indptr), free(indices), free(vals), free(key);
        return av_fail("%s: out of memory for P", fn);
    }
    for (int64_t t = 0; t < nnz; t++) out->val[t] = (float)(vals[t] / total);
    out->n = n, out->nnz = nnz, out->indptr = indptr, out->indices = indices;
    free(cnt), free(col), free(v), free(fill), free(vals), free(key);
    return 0;
}

static void csr_free(csr *p) {
    free(p->indptr), free(p->indices), free(p->val);
    memset(p, 0, sizeof *p);
}

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
    double tic = now_s();
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
            double toc = now_s();
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
    symmetrize_upper(D, n);
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
    binary_search_perplexity(sq, n, n, (float)perplexity, 0, cp);
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
    double t0 = now_s();
    if (check_matrix(X, fn, "X")) return NULL;
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
    if (check_perplexity(o->perplexity, n, fn)) return NULL;
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
        if (check_matrix(o->init_Y, fn, "init")) return NULL;
        if (o->init_Y->shape[0] != n || o->init_Y->shape[1] != dim) {
            char b[64];
            av_fail("%s: init must be a %lldx%d tensor (N x n_components), got %s", fn, (long long)n, dim,
                    av_shape_str(o->init_Y, b, sizeof b));
            return NULL;
        }
    }
    double *x = read_f64(X, fn, "X");
    if (!x) return NULL;
    double *yinit = NULL;
    if (o->init_Y && !(yinit = read_f64(o->init_Y, fn, "init"))) {
        free(x);
        return NULL;
    }

    tsne_state s;
    memset(&s, 0, sizeof s);
    s.n = n, s.dim = dim, s.dof = dim - 1 > 1 ? dim - 1 : 1, s.nt = nthreads(), s.theta = (float)o->angle;
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
            rc = pca_core(xc, n, d, dim, mu, comps, ev, sv, &tot, fn);
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

    centre(x, n, d);
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
        int k = default_k(o->perplexity, n);
        int64_t *nbr = malloc(sizeof(int64_t) * (size_t)(n * k));
        double *dist = malloc(sizeof(double) * (size_t)(n * k)), *cp = malloc(sizeof(double) * (size_t)(n * k));
        int rc = -1;
        if (!nbr || !dist || !cp) av_fail("%s: out of memory for the neighbours", fn);
        else {
            if (o->verbose) fprintf(stderr, "[t-SNE] Computing %d nearest neighbors...\n", k);
            rc = cond_p_nn(x, n, d, o->perplexity, k, X->dtype == AV_F32, nbr, dist, cp, fn);
            if (!rc) rc = joint_p_nn(nbr, cp, n, k, &s.P, fn);
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
    double t_aff = now_s() - t0;
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
        info->seconds = now_s() - t0;
        info->seconds_affinities = t_aff;
    }
done:
    free(x), free(yinit), free(Y), free(s.rowq), free(s.rowkl), free(s.neg), free(s.pos), free(s.stacks);
    free(s.tree.cells), free(s.Pd), free(s.num), free(s.nodes), free(s.queue), free(s.order);
    csr_free(&s.P);
    return out;
}

/* ---- trustworthiness -------------------------------------------------------- */
int av_trustworthiness(const av_tensor *X, const av_tensor *Y, int k, double *out) {
    const char *fn = "trustworthiness";
    if (check_matrix(X, fn, "X") || check_matrix(Y, fn, "Y")) return -1;
    int64_t n = X->shape[0], d = X->shape[1], e = Y->shape[1];
    if (Y->shape[0] != n)
        return av_fail("%s: X and Y must have the same number of rows (samples), got %lld and %lld", fn, (long long)n,
                       (long long)Y->shape[0]);
    if (k < 1 || (double)k >= n / 2.0)
        return av_fail("%s: n_neighbors (%d) should be at least 1 and less than n_samples / 2 (%g)", fn, k, n / 2.0);
    double *x = read_f64(X, fn, "X");
    if (!x) return -1;
    double *y = read_f64(Y, fn, "Y");
    if (!y) {
        free(x);
        return -1;
    }
    /* neighbours in the embedding */
    int64_t *ny = malloc(sizeof(int64_t) * (size_t)(n * k));
    double *dy = malloc(sizeof(double) * (size_t)(n * k));
    int64_t B = 256 < n ? 256 : n;
    double *G = malloc(sizeof(double) * (size_t)(B * n)), *norms = malloc(sizeof(double) * (size_t)n);
    int64_t *pen = calloc((size_t)n, sizeof(int64_t));
    int rc = -1;
    if (!ny || !dy || !G || !norms || !pen) {
        av_fail("%s: out of memory", fn);
        goto done;
    }
    centre(y, n, e);
    if (knn(y, n, e, k, 0, ny, dy, fn)) goto done;
    centre(x, n, d);
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
        norms[i] = s;
    }
    int nt = nthreads();
    for (int64_t r0 = 0; r0 < n; r0 += B) {
        int64_t nb = n - r0 < B ? n - r0 : B;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)n, (int)d, 1.0, x + r0 * d, (int)d, x,
                    (int)d, 0.0, G, (int)n);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < nb; r++) {
            int64_t i = r0 + r;
            double *g = G + r * n;
            for (int64_t j = 0; j < n; j++) {
                double v = norms[i] + norms[j] - 2 * g[j];
                g[j] = v < 0 ? 0 : v;
            }
            g[i] = INFINITY;
            int64_t p = 0;
            for (int t = 0; t < k; t++) {
                int64_t j = ny[i * k + t];
                double dj = g[j];
                int64_t rank = 1;
                for (int64_t l = 0; l < n; l++)
                    if (g[l] < dj || (g[l] == dj && l < j)) rank++;
                if (rank > k) p += rank - k;
            }
            pen[i] = p;
        }
    }
    {
        double t = 0;
        for (int64_t i = 0; i < n; i++) t += (double)pen[i];
        *out = 1.0 - t * (2.0 / ((double)n * k * (2.0 * n - 3.0 * k - 1.0)));
    }
    rc = 0;
done:
    free(x), free(y), free(ny), free(dy), free(G), free(norms), free(pen);
    return rc;
}
