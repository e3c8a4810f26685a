/* PCA after scikit-learn 1.2.1 PCA(svd_solver="full") (see aviary/manifold.h): the eigenvectors of the
 * covariance (or of the Gram matrix when D > N) by LAPACK dsyevr, in double, with svd_flip's signs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <omp.h>
#include "aviary/manifold.h"
#include "ml_internal.h"

/* LAPACK (OpenBLAS exports it), Fortran calling convention */
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a, const int *lda,
             const double *vl, const double *vu, const int *il, const int *iu, const double *abstol, int *m,
             double *w, double *z, const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
             const int *liwork, int *info, size_t l1, size_t l2, size_t l3);

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

void ml_symmetrize_upper(double *A, int64_t n) { /* row-major upper -> full */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) A[j * n + i] = A[i * n + j];
}

/* PCA on a contiguous double copy Xc (centred in place). comps: k x d, row-major */
int ml_pca_core(double *Xc, int64_t n, int64_t d, int k, double *mean, double *comps, double *ev,
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
    ml_symmetrize_upper(A, m);
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
    if (ml_check_matrix(X, fn, "X")) return -1;
    int64_t n = X->shape[0], d = X->shape[1];
    if (n < 2) return av_fail("%s: X needs at least 2 samples (rows), got %lld", fn, (long long)n);
    int64_t kmax = n < d ? n : d;
    if (k < 1 || k > kmax)
        return av_fail("%s: n_components must be in 1..%lld (min(N, D) for X %lldx%lld), got %d", fn,
                       (long long)kmax, (long long)n, (long long)d, k);
    if (kmax > 46340) return av_fail("%s: min(N, D) = %lld is too large", fn, (long long)kmax);
    double *Xc = ml_read_f64(X, fn, "X");
    if (!Xc) return -1;
    double *mu = malloc(sizeof(double) * (size_t)d), *comps = malloc(sizeof(double) * (size_t)(k * d));
    double *ev = malloc(sizeof(double) * (size_t)k), *sv = malloc(sizeof(double) * (size_t)k);
    int rc = -1;
    if (!mu || !comps || !ev || !sv) av_fail("%s: out of memory", fn);
    else rc = ml_pca_core(Xc, n, d, k, mu, comps, ev, sv, total_variance, fn);
    if (rc == 0) {
        int64_t sc[2] = {k, d}, sm[1] = {d}, sk[1] = {k};
        *components = ml_tensor_from_f64(2, sc, comps, AV_F64);
        *mean = ml_tensor_from_f64(1, sm, mu, AV_F64);
        *explained_variance = ml_tensor_from_f64(1, sk, ev, AV_F64);
        *singular_values = ml_tensor_from_f64(1, sk, sv, AV_F64);
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
    if (ml_check_matrix(X, fn, "X") || ml_check_matrix(components, fn, "components")) return NULL;
    int64_t n = X->shape[0], d = X->shape[1], k = components->shape[0];
    if (components->shape[1] != d) {
        av_fail("%s: X has %lld features (columns) but the PCA was fitted on %lld", fn, (long long)d,
                (long long)components->shape[1]);
        return NULL;
    }
    double *x = ml_read_f64(X, fn, "X");
    if (!x) return NULL;
    double *c = ml_read_f64(components, fn, "components"), *mu = c ? read_vec(mean, d, fn, "mean") : NULL;
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
        out = ml_tensor_from_f64(2, sh, y, AV_F32);
    } else if (!y) av_fail("%s: out of memory", fn);
    free(x), free(c), free(mu), free(y);
    return out;
}
