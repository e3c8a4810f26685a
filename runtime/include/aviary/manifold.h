/* Manifold learning (runtime/ml/manifold.c): PCA, t-SNE (exact and
 * Barnes-Hut) and the trustworthiness score, following scikit-learn 1.2.1
 * (sklearn.decomposition.PCA(svd_solver='full'), sklearn.manifold.TSNE,
 * sklearn.manifold.trustworthiness) step for step.
 *
 * Inputs are N x D CPU tensors of float32 or float64 with any strides; they
 * are read into contiguous double (or float) buffers internally. Functions
 * return 0 (or a new tensor) on success and -1 (or NULL) after av_fail(...)
 * on bad input; nothing aborts. The Lua user module is lua/aviary/manifold.lua
 * (through the binding's private table av._manifold, lua/l_manifold.c). */
#ifndef AVIARY_MANIFOLD_H
#define AVIARY_MANIFOLD_H

#include <stdint.h>
#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- PCA --------------------------------------------------------------- */
/* The first k principal axes of X (N x D, N >= 2, 1 <= k <= min(N, D)), from
 * the eigendecomposition in double (LAPACK dsyevr) of the covariance Xc^T Xc
 * (D <= N) or of the Gram matrix Xc Xc^T (D > N), Xc = X - mean.
 * Sign convention: sklearn 1.2's svd_flip(U, Vt) with u_based_decision=True:
 * in each column of U = Xc V / s the entry of largest absolute value (the
 * first such) is positive.
 * Outputs (new f64 tensors, owned by the caller): components k x D (rows =
 * axes), mean D, explained_variance k (s^2 / (N - 1)), singular_values k;
 * *total_variance = the sum of the variances of all D columns (N - 1
 * denominator), so explained_variance_ratio = explained_variance / total. */
int av_pca_fit(const av_tensor *X, int k, av_tensor **components, av_tensor **mean,
               av_tensor **explained_variance, av_tensor **singular_values, double *total_variance);
/* (X - mean) components^T as a new N x k float32 tensor; with scale (k
 * doubles, may be NULL) column j is divided by scale[j] (whitening passes
 * sqrt(explained_variance)). components k x D and mean D are any float tensors. */
av_tensor *av_pca_transform(const av_tensor *X, const av_tensor *components, const av_tensor *mean,
                            const double *scale);

/* ---- t-SNE ------------------------------------------------------------- */
typedef enum { AV_TSNE_BARNES_HUT = 0, AV_TSNE_EXACT = 1 } av_tsne_method;
typedef enum { AV_TSNE_INIT_PCA = 0, AV_TSNE_INIT_RANDOM = 1 } av_tsne_init;

/* progress callback, called every 50 iterations (when the KL divergence is
 * evaluated) with the 1-based iteration and the KL divergence (of the
 * exaggerated P during the first 250 iterations); a nonzero return stops the
 * optimisation with an error (av_fail is left to the callback). */
typedef int (*av_tsne_progress_fn)(void *ud, int iter, double kl);

typedef struct av_tsne_opts {
    int n_components;            /* 2; Barnes-Hut: 1..3 */
    double perplexity;           /* 30; 0 < perplexity < N */
    double early_exaggeration;   /* 12; >= 1 */
    double learning_rate;        /* <= 0: 'auto' = max(N / early_exaggeration / 4, 50) */
    int n_iter;                  /* 1000 (the first min(250, n_iter) are exploration) */
    int n_iter_without_progress; /* 300 */
    double min_grad_norm;        /* 1e-7 */
    av_tsne_method method;       /* Barnes-Hut */
    double angle;                /* 0.5; 0..1 */
    av_tsne_init init;           /* PCA (ignored when init_Y is given) */
    const av_tensor *init_Y;     /* N x n_components initial embedding, or NULL */
    uint64_t seed;               /* random init: 1e-4 * N(0, 1) from Philox keyed by the seed */
    int verbose;                 /* prints sklearn-like progress lines to stderr */
    av_tsne_progress_fn progress;
    void *progress_ud;
} av_tsne_opts;

typedef struct av_tsne_info {
    double kl_divergence; /* the last evaluated KL divergence (sklearn's kl_divergence_) */
    int n_iter;           /* iterations run (sklearn's n_iter_ + 1) */
    double learning_rate; /* the learning rate used */
    double seconds;       /* wall time of the whole call */
    double seconds_affinities; /* of which: neighbours and P */
} av_tsne_info;

void av_tsne_opts_default(av_tsne_opts *o);
/* the N x n_components float32 embedding; info may be NULL */
av_tensor *av_tsne(const av_tensor *X, const av_tsne_opts *o, av_tsne_info *info);

/* The affinities behind Barnes-Hut t-SNE, for checks: the k nearest neighbours
 * of each row of X (squared euclidean, itself excluded; k <= 0: sklearn's
 * min(N - 1, int(3 * perplexity + 1))), sorted by distance, and the conditional
 * probabilities of sklearn's _binary_search_perplexity over them. New tensors:
 * neighbors N x k int64 (0-based), sqdist N x k f64, cond_P N x k f64. */
int av_tsne_conditional_p(const av_tensor *X, double perplexity, int k, av_tensor **neighbors,
                          av_tensor **sqdist, av_tensor **cond_P);

/* sklearn.manifold.trustworthiness(X, Y, n_neighbors=k) with the euclidean
 * metric: X N x D, Y N x d, 1 <= k < N / 2. */
int av_trustworthiness(const av_tensor *X, const av_tensor *Y, int k, double *out);

#ifdef __cplusplus
}
#endif
#endif
