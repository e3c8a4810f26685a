/* Fused optimizer updates (runtime/ops/cpu/optim.c). */
#ifndef AVIARY_OPTIM_H
#define AVIARY_OPTIM_H

#include <stdbool.h>
#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct av_sgd_opts {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
    bool first; /* the momentum buffer is new: it takes the (decayed) gradient as is, as PyTorch seeds it */
} av_sgd_opts;

/* p -= lr * d with torch.optim.SGD's d (weight decay, momentum, dampening,
 * nesterov, maximize), in one pass; buf is the momentum buffer (ignored when
 * momentum is 0). All contiguous, same dtype (float32 or float64) and size. */
int av_sgd_step_(av_tensor *p, const av_tensor *grad, av_tensor *buf, const av_sgd_opts *o);

/* torch.optim.Adam / AdamW (foreach=False arithmetic) for one step; step
 * counts this update (1 on the first). vmax is used with amsgrad only. */
typedef struct av_adam_opts {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad, maximize;
    bool decoupled; /* AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p */
    int64_t step;
} av_adam_opts;

/* One update over a list of parameters that share the options (one
 * parameter group): on CUDA a single launch covers the whole list; on the
 * CPU the same arithmetic runs per tensor. buf[i] / m, v, vmax[i] belong to
 * p[i]; all contiguous, p's dtype and size. */
int av_sgd_step_multi_(int n, av_tensor *const *p, av_tensor *const *grad, av_tensor *const *buf,
                       const av_sgd_opts *o);
int av_adam_step_multi_(int n, av_tensor *const *p, av_tensor *const *grad, av_tensor *const *m,
                        av_tensor *const *v, av_tensor *const *vmax, const av_adam_opts *o);

/* GradScaler's unscale: g *= inv_scale in place for every gradient, and
 * *found_inf = whether any of them holds an inf or NaN (before scaling). */
int av_amp_unscale_(int n, av_tensor *const *grad, double inv_scale, bool *found_inf);

#ifdef __cplusplus
}
#endif
#endif
