/* Fused optimizer updates (runtime/ops/cpu/optim.c). */
#ifndef AVIARY_OPTIM_H
#define AVIARY_OPTIM_H

#include <stdbool.h>
#include "aviary/tensor.h"

typedef struct av_sgd_opts {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
    bool first; /* the momentum buffer is new: it takes the (decayed) gradient as is, as PyTorch seeds it */
} av_sgd_opts;

/* p -= lr * d with torch.optim.SGD's d (weight decay, momentum, dampening,
 * nesterov, maximize), in one pass; buf is the momentum buffer (ignored when
 * momentum is 0). All contiguous, same dtype (float32 or float64) and size. */
int av_sgd_step_(av_tensor *p, const av_tensor *grad, av_tensor *buf, const av_sgd_opts *o);

#endif
