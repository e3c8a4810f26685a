/* Raw CPU kernels of the nn operators (no graph recording). The public
 * functions of aviary/nn_ops.h live in runtime/autograd/grad_nn*.c: they run
 * these with grad mode off and record one node. */
#ifndef AVIARY_CPU_NN_KERNELS_H
#define AVIARY_CPU_NN_KERNELS_H

#include "aviary/nn_ops.h"

/* vector types for explicit SIMD (unaligned loads allowed) */
typedef float av_v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef double av_v4d __attribute__((vector_size(32), aligned(8), may_alias));

/* below this much work (elements touched) a kernel stays on the calling thread */
#define AV_NN_GRAIN 32768

/* ---- batch norm (norm.c) ----------------------------------------------------- */
/* Checks the arguments, computes y and fills mean[c], invstd[c] (the batch
 * statistics in training, the running ones otherwise) and w[c] (1 without a
 * weight); each array has C = input->shape[1] entries, allocated by the
 * caller after av_bn_channels(). Updates the running stats in training. */
int64_t av_bn_channels(const av_tensor *input, const char *fn); /* -1 on error */
av_tensor *av_batch_norm_raw(const av_tensor *input, av_tensor *running_mean, av_tensor *running_var,
                             const av_tensor *weight, const av_tensor *bias, bool training, double momentum,
                             double eps, double *mean, double *invstd, double *w);
/* gradients: gx when want_gx (NULL otherwise); sum_g[c] = sum of g and
 * sum_gxc[c] = sum of g * (x - mean) when stats != NULL (both C entries). */
int av_batch_norm_backward_raw(const av_tensor *x, const av_tensor *g, const double *mean, const double *invstd,
                               const double *w, bool training, bool want_gx, av_tensor **gx, double *sum_g,
                               double *sum_gxc);

/* ---- activations (activation.c) -------------------------------------------------- */
av_tensor *av_activation_raw(av_act act, const av_tensor *x, double a, double b);
/* g * f'(x), in g's shape (x has the same shape) */
av_tensor *av_activation_backward_raw(av_act act, const av_tensor *g, const av_tensor *x, double a, double b);

/* ---- pooling (pool.c) ---------------------------------------------------------------- */
/* indices: NULL when not needed (the kernel then skips tracking them) */
av_tensor *av_max_pool2d_raw(const av_tensor *x, const av_pool2d_opts *o, av_tensor **indices);
av_tensor *av_avg_pool2d_raw(const av_tensor *x, const av_pool2d_opts *o);
av_tensor *av_adaptive_avg_pool2d_raw(const av_tensor *x, int64_t oh, int64_t ow);
av_tensor *av_adaptive_max_pool2d_raw(const av_tensor *x, int64_t oh, int64_t ow, av_tensor **indices);
/* gradient of a max pool: g scattered (added) at the 0-based plane
 * positions in idx into zeros of the input's shape (ndim, shape) */
av_tensor *av_max_pool2d_backward_raw(const av_tensor *g, const av_tensor *idx, int ndim, const int64_t *shape);
av_tensor *av_avg_pool2d_backward_raw(const av_tensor *g, const av_pool2d_opts *o, int ndim, const int64_t *shape);
av_tensor *av_adaptive_avg_pool2d_backward_raw(const av_tensor *g, int ndim, const int64_t *shape);

/* ---- dropout (activation.c) ----------------------------------------------------- */
/* x * mask with mask = (u < 1-p) / (1-p), u ~ U[0,1) from the global
 * generator; *mask receives the scaled mask (x's dtype, contiguous) */
av_tensor *av_dropout_raw(const av_tensor *x, double p, av_tensor **mask);

#endif
