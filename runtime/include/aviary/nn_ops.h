/* Neural-network operators on CPU: batch normalisation, activations,
 * 2-d pooling and dropout, each recorded as one autograd node (forward and
 * backward are single fused kernels). float32 and float64, NCHW.
 *
 * Same conventions as tensor.h: 0-based dims, new references returned,
 * NULL on error with av_last_error() set. Pooling indices are 0-based here
 * (flat positions within each H*W plane, like PyTorch's); the Lua binding
 * adds 1. */
#ifndef AVIARY_NN_OPS_H
#define AVIARY_NN_OPS_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- batch normalisation ------------------------------------------------- */
/* F.batch_norm: input (N, C, ...) of 2 or more dims. running_mean/var, weight
 * and bias have C entries each and may be NULL (running stats are required
 * when !training). In training the batch statistics normalise (biased
 * variance) and, when given, the running stats are updated in place:
 * r = (1 - momentum) * r + momentum * batch (unbiased variance for
 * running_var); they are never differentiated. */
av_tensor *av_batch_norm(const av_tensor *input, av_tensor *running_mean, av_tensor *running_var,
                         const av_tensor *weight, const av_tensor *bias, bool training, double momentum,
                         double eps);

/* ---- activations (elementwise, floating inputs) ----------------------------- */
typedef enum {
    AV_ACT_LEAKY_RELU = 0, /* a = negative_slope */
    AV_ACT_ELU,            /* a = alpha */
    AV_ACT_GELU,           /* exact: x * Phi(x) */
    AV_ACT_GELU_TANH,      /* tanh approximation */
    AV_ACT_SILU,
    AV_ACT_HARDSWISH,
    AV_ACT_HARDSIGMOID,
    AV_ACT_RELU6,
    AV_ACT_SOFTPLUS,       /* a = beta, b = threshold */
    AV_NACTS
} av_act;

const char *av_act_name(av_act act); /* "leaky_relu", ... */
av_tensor *av_activation(av_act act, const av_tensor *x, double a, double b);
av_tensor *av_leaky_relu(const av_tensor *x, double negative_slope);
av_tensor *av_elu(const av_tensor *x, double alpha);
av_tensor *av_gelu(const av_tensor *x, bool tanh_approx);
av_tensor *av_silu(const av_tensor *x);
av_tensor *av_hardswish(const av_tensor *x);
av_tensor *av_hardsigmoid(const av_tensor *x);
av_tensor *av_relu6(const av_tensor *x);
av_tensor *av_softplus(const av_tensor *x, double beta, double threshold);

/* the gradient of relu from its output in one pass: grad where out > 0,
 * else 0 (a NaN output passes grad, as PyTorch's threshold_backward);
 * no graph recording. For ReluBackward in grad_elementwise.c. */
av_tensor *av_relu_backward(const av_tensor *grad, const av_tensor *out);

/* ---- 2-d pooling over (N, C, H, W) or unbatched (C, H, W) inputs ------------ */
typedef struct av_pool2d_opts {
    int64_t kernel[2], stride[2], padding[2], dilation[2]; /* {h, w} */
    bool ceil_mode;
    bool count_include_pad;   /* avg_pool2d */
    int64_t divisor_override; /* avg_pool2d; 0 = none */
} av_pool2d_opts;

/* PyTorch's defaults for a kh x kw kernel: stride = kernel, padding 0,
 * dilation 1, floor mode, count_include_pad, no divisor override */
void av_pool2d_opts_init(av_pool2d_opts *o, int64_t kh, int64_t kw);

/* indices: when not NULL receives the int64 argmax positions */
av_tensor *av_max_pool2d(const av_tensor *x, const av_pool2d_opts *o, av_tensor **indices);
av_tensor *av_avg_pool2d(const av_tensor *x, const av_pool2d_opts *o); /* dilation must be 1 */
/* windows [floor(i*In/Out), ceil((i+1)*In/Out)) */
av_tensor *av_adaptive_avg_pool2d(const av_tensor *x, int64_t out_h, int64_t out_w);
av_tensor *av_adaptive_max_pool2d(const av_tensor *x, int64_t out_h, int64_t out_w, av_tensor **indices);

/* ---- dropout ------------------------------------------------------------- */
/* zeroes each element with probability p (global generator, av_rand) and
 * scales the rest by 1/(1-p); !training or p == 0 returns x itself (a new
 * reference), p == 1 gives x * 0 */
av_tensor *av_dropout(const av_tensor *x, double p, bool training);

/* ---- mixed precision: autocast (runtime/autograd/autocast.c) ------------------ */
/* While a dtype is set (AV_F16 or AV_BF16; -1 = off), conv2d and linear on
 * CUDA float32 inputs cast input, weight and bias to it (recorded casts, so
 * gradients reach the float32 master weights in float32) and run on tensor
 * cores; the output is cast back to float32 unless keep_low is set, in which
 * case it stays in the low dtype as in PyTorch (later ops then need CUDA
 * kernels for that dtype). cross_entropy/nll_loss on half CUDA inputs
 * compute in float32. CPU tensors are never cast. */
int av_autocast_set(int dtype, bool keep_low); /* -1 with av_fail for other dtypes */
int av_autocast_get(bool *keep_low);           /* the dtype, or -1 when off */
/* whether a conv2d/linear with these operands is cast (autocast on, CUDA, float32) */
bool av_autocast_applies(const struct av_tensor *x, const struct av_tensor *w);
struct av_conv2d_args;
struct av_tensor *av_autocast_conv2d(const struct av_tensor *x, const struct av_tensor *w, const struct av_tensor *b,
                                     const struct av_conv2d_args *a);
struct av_tensor *av_autocast_linear(const struct av_tensor *x, const struct av_tensor *w, const struct av_tensor *b);

#ifdef __cplusplus
}
#endif
#endif
