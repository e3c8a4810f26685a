/* Linear layers, the softmax family, losses, interpolation and padding.
 * Same conventions as tensor.h (0-based dims, new references, NULL on error
 * with av_last_error() set). Every function records one autograd node (or is
 * composed of differentiable ops) when an input requires grad; float32 and
 * float64 are supported.
 *
 * Class-index targets are given with an explicit index base: the Lua binding
 * passes base 1 (targets 1..C), C callers usually 0. ignore_index is compared
 * with the target value as given, before the base is subtracted. */
#ifndef AVIARY_LOSS_H
#define AVIARY_LOSS_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { AV_REDUCTION_NONE = 0, AV_REDUCTION_MEAN, AV_REDUCTION_SUM } av_reduction;
/* "none" | "mean" | "sum" -> reduction, -1 if unknown */
int av_reduction_from_name(const char *name);

/* y = x W^T + b: x [..., in], w [out, in], b [out] or NULL -> [..., out] */
av_tensor *av_linear(const av_tensor *x, const av_tensor *w, const av_tensor *b);

/* softmax / log_softmax over dim (negative counts from the end). dtype < 0
 * keeps x's dtype; otherwise x is converted first (like PyTorch's dtype=). */
av_tensor *av_softmax(const av_tensor *x, int dim, int dtype);
av_tensor *av_log_softmax(const av_tensor *x, int dim, int dtype);

/* input [N, C] (or [N, C, d1, ...] or [C]) of logits; target [N] (or
 * [N, d1, ...] or 0-d) of int64/int32 class indices; weight [C] or NULL. */
av_tensor *av_cross_entropy(const av_tensor *input, const av_tensor *target, const av_tensor *weight,
                            int64_t ignore_index, av_reduction reduction, double label_smoothing, int64_t base);
/* same shapes, input holds log-probabilities */
av_tensor *av_nll_loss(const av_tensor *input, const av_tensor *target, const av_tensor *weight,
                       int64_t ignore_index, av_reduction reduction, int64_t base);
/* weight broadcasts to input, pos_weight to input along the last dims; both may be NULL */
av_tensor *av_binary_cross_entropy_with_logits(const av_tensor *input, const av_tensor *target,
                                               const av_tensor *weight, const av_tensor *pos_weight,
                                               av_reduction reduction);
av_tensor *av_mse_loss(const av_tensor *input, const av_tensor *target, av_reduction reduction);
av_tensor *av_l1_loss(const av_tensor *input, const av_tensor *target, av_reduction reduction);

/* F.interpolate for 3-d (N, C, W) and 4-d (N, C, H, W) inputs.
 * size: nsize entries (0 = not given); scale: nscale entries (0 = not given),
 * exactly one of them; a single entry applies to every spatial dim.
 * mode: "nearest", "linear" (3-d), "bilinear" (4-d). align_corners: -1 when
 * not given (false for the linear modes, an error to give with nearest).
 * recompute_scale_factor: -1 (None), 0 or 1, as in torch 1.13. */
av_tensor *av_interpolate(const av_tensor *x, int nsize, const int64_t *size, int nscale, const double *scale,
                          const char *mode, int align_corners, int recompute_scale_factor);

/* F.pad: pad lists (before, after) pairs starting from the last dim.
 * mode: "constant" (negative entries crop), "reflect", "replicate", "circular". */
av_tensor *av_pad(const av_tensor *x, int npad, const int64_t *pad, const char *mode, double value);

#ifdef __cplusplus
}
#endif
#endif
