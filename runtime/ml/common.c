/* Shared by PCA and t-SNE (see aviary/manifold.h): reading inputs, threads, the k-nearest-neighbour
 * search and trustworthiness, after scikit-learn 1.2.1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <omp.h>
#include "aviary/manifold.h"
#include "ml_internal.h"


double ml_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ml_nthreads(void) {
    int n = av_get_num_threads();
    return n < 1 ? 1 : n;
}

/* ---- reading inputs ------------------------------------------------------ */
int ml_check_matrix(const av_tensor *X, const char *fn, const char *what) {
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
double *ml_read_f64(const av_tensor *X, const char *fn, const char *what) {
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

av_tensor *ml_tensor_from_f64(int ndim, const int64_t *shape, const double *data, av_dtype dt) {
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
int ml_knn(const double *x, int64_t n, int64_t d, int k, int single, int64_t *nbr, double *dist,
               const char *fn) {
    int64_t B = 256;
    if (B > n) B = n;
    double *norms = malloc(sizeof(double) * (size_t)n);
    float *xf = single ? malloc(sizeof(float) * (size_t)(n * d)) : NULL;
    float *gf = single ? malloc(sizeof(float) * (size_t)(B * n)) : NULL;
    double *gd = single ? NULL : malloc(sizeof(double) * (size_t)(B * n));
    int nt = ml_nthreads();
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

/* centred double copy for distances (better conditioned GEMM) */
void ml_centre(double *x, int64_t n, int64_t d) {
    for (int64_t j = 0; j < d; j++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i * d + j];
        s /= (double)n;
        for (int64_t i = 0; i < n; i++) x[i * d + j] -= s;
    }
}

/* ---- trustworthiness -------------------------------------------------------- */
int av_trustworthiness(const av_tensor *X, const av_tensor *Y, int k, double *out) {
    const char *fn = "trustworthiness";
    if (ml_check_matrix(X, fn, "X") || ml_check_matrix(Y, fn, "Y")) return -1;
    int64_t n = X->shape[0], d = X->shape[1], e = Y->shape[1];
    if (Y->shape[0] != n)
        return av_fail("%s: X and Y must have the same number of rows (samples), got %lld and %lld", fn, (long long)n,
                       (long long)Y->shape[0]);
    if (k < 1 || (double)k >= n / 2.0)
        return av_fail("%s: n_neighbors (%d) should be at least 1 and less than n_samples / 2 (%g)", fn, k, n / 2.0);
    double *x = ml_read_f64(X, fn, "X");
    if (!x) return -1;
    double *y = ml_read_f64(Y, fn, "Y");
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
    ml_centre(y, n, e);
    if (ml_knn(y, n, e, k, 0, ny, dy, fn)) goto done;
    ml_centre(x, n, d);
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
        norms[i] = s;
    }
    int nt = ml_nthreads();
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
