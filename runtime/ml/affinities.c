/* t-SNE's input affinities, after scikit-learn 1.2.1 (_utils._binary_search_perplexity and
 * _t_sne._joint_probabilities_nn): conditional P per point by binary search, then the symmetric P. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "aviary/manifold.h"
#include "ml_internal.h"

/* ---- conditional probabilities (sklearn _utils._binary_search_perplexity) */
/* sq: n x m float32 squared distances; using_neighbors = 0: the full matrix
 * (m == n) with the diagonal skipped. P: n x m double. */
void ml_binary_search_perplexity(const float *sq, int64_t n, int64_t m, float desired_perplexity, int using_nn,
                                     double *P) {
    double desired_entropy = log(desired_perplexity);
    int nt = ml_nthreads();
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

int ml_check_perplexity(double perplexity, int64_t n, const char *fn) {
    if (!(perplexity > 0) || !isfinite(perplexity))
        return av_fail("%s: perplexity must be a positive number, got %g", fn, perplexity);
    if (perplexity >= (double)n)
        return av_fail("%s: perplexity (%g) must be less than the number of samples N (%lld)", fn, perplexity,
                       (long long)n);
    return 0;
}

int ml_default_k(double perplexity, int64_t n) {
    int64_t k = (int64_t)(3.0 * perplexity + 1);
    return (int)(n - 1 < k ? n - 1 : k);
}


int ml_cond_p_nn(const double *x, int64_t n, int64_t d, double perplexity, int k, int single, int64_t *nbr,
                     double *dist, double *P, const char *fn) {
    if (ml_knn(x, n, d, k, single, nbr, dist, fn)) return -1;
    float *sq = malloc(sizeof(float) * (size_t)(n * k));
    if (!sq) return av_fail("%s: out of memory", fn);
    for (int64_t i = 0; i < n * k; i++) sq[i] = (float)dist[i];
    ml_binary_search_perplexity(sq, n, k, (float)perplexity, 1, P);
    free(sq);
    return 0;
}

int av_tsne_conditional_p(const av_tensor *X, double perplexity, int k, av_tensor **neighbors, av_tensor **sqdist,
                          av_tensor **cond_P) {
    const char *fn = "tsne";
    *neighbors = *sqdist = *cond_P = NULL;
    if (ml_check_matrix(X, fn, "X")) return -1;
    int64_t n = X->shape[0], d = X->shape[1];
    if (n < 2) return av_fail("%s: X needs at least 2 samples (rows), got %lld", fn, (long long)n);
    if (ml_check_perplexity(perplexity, n, fn)) return -1;
    if (k <= 0) k = ml_default_k(perplexity, n);
    if (k > n - 1) return av_fail("%s: k (%d) must be at most N - 1 (%lld)", fn, k, (long long)(n - 1));
    double *x = ml_read_f64(X, fn, "X");
    if (!x) return -1;
    ml_centre(x, n, d);
    int64_t sh[2] = {n, k};
    *neighbors = av_empty(2, sh, AV_I64);
    *sqdist = av_empty(2, sh, AV_F64);
    *cond_P = av_empty(2, sh, AV_F64);
    int rc = -1;
    if (*neighbors && *sqdist && *cond_P)
        rc = ml_cond_p_nn(x, n, d, perplexity, k, X->dtype == AV_F32, av_data(*neighbors), av_data(*sqdist),
                       av_data(*cond_P), fn);
    free(x);
    if (rc) {
        av_release(*neighbors), av_release(*sqdist), av_release(*cond_P);
        *neighbors = *sqdist = *cond_P = NULL;
    }
    return rc;
}

/* ---- symmetric sparse P (CSR) -------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* P = (C + C^T) / sum, C the conditional P over the neighbours (n x k) */
int ml_joint_p_nn(const int64_t *nbr, const double *cp, int64_t n, int k, csr *out, const char *fn) {
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

void ml_csr_free(csr *p) {
    free(p->indptr), free(p->indices), free(p->val);
    memset(p, 0, sizeof *p);
}
