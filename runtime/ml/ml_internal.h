/* Internal to runtime/ml: helpers shared by common.c, pca.c and tsne.c (hidden from the library's users). */
#ifndef AV_ML_INTERNAL_H
#define AV_ML_INTERNAL_H
#include <stdint.h>
#include "aviary/manifold.h"

#define MACHINE_EPSILON 2.220446049250313e-16
#define FLOAT32_TINY 1.1754943508222875e-38
#define EPSILON_DBL 1e-8
#define PERPLEXITY_TOLERANCE 1e-5
#define QT_EPSILON 1e-6
#define N_ITER_CHECK 50
#define EXPLORATION_N_ITER 250

#define AV_ML_HIDDEN __attribute__((visibility("hidden")))
AV_ML_HIDDEN double ml_now_s(void);
AV_ML_HIDDEN int ml_nthreads(void);
AV_ML_HIDDEN int ml_check_matrix(const av_tensor *X, const char *fn, const char *what);
AV_ML_HIDDEN double *ml_read_f64(const av_tensor *X, const char *fn, const char *what);
AV_ML_HIDDEN av_tensor *ml_tensor_from_f64(int ndim, const int64_t *shape, const double *data, av_dtype dt);
AV_ML_HIDDEN int ml_knn(const double *x, int64_t n, int64_t d, int k, int single, int64_t *nbr, double *dist,
                        const char *fn);
AV_ML_HIDDEN void ml_centre(double *x, int64_t n, int64_t d);
AV_ML_HIDDEN void ml_symmetrize_upper(double *A, int64_t n);
AV_ML_HIDDEN int ml_pca_core(double *Xc, int64_t n, int64_t d, int k, double *mean, double *comps, double *ev,
                    double *sv, double *total, const char *fn);
/* a symmetric sparse matrix (t-SNE's P) */
typedef struct {
    int64_t n, nnz;
    int64_t *indptr, *indices;
    float *val;
} csr;
AV_ML_HIDDEN void ml_binary_search_perplexity(const float *sq, int64_t n, int64_t m, float desired_perplexity, int using_nn,
                                     double *P);
AV_ML_HIDDEN int ml_check_perplexity(double perplexity, int64_t n, const char *fn);
AV_ML_HIDDEN int ml_default_k(double perplexity, int64_t n);
AV_ML_HIDDEN int ml_cond_p_nn(const double *x, int64_t n, int64_t d, double perplexity, int k, int single, int64_t *nbr,
                     double *dist, double *P, const char *fn);
AV_ML_HIDDEN int ml_joint_p_nn(const int64_t *nbr, const double *cp, int64_t n, int k, csr *out, const char *fn);
AV_ML_HIDDEN void ml_csr_free(csr *p);
#endif
