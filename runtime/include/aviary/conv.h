/* 2-d convolution (NCHW, float32 and float64), as torch.nn.functional.conv2d.
 *
 * Shapes: input N x C x H x W (or C x H x W, unbatched: the result is then
 * 3-d too), weight Co x C/groups x kh x kw, bias Co (or NULL), output
 * N x Co x Ho x Wo with Ho = (H + pad_top + pad_bottom - dh*(kh-1) - 1)/sh + 1.
 * Same conventions as ops.h: new references, NULL / -1 on error with
 * av_last_error() set. av_conv2d records one "ConvolutionBackward" node. */
#ifndef AVIARY_CONV_H
#define AVIARY_CONV_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct av_conv2d_args {
    int64_t stride[2];    /* h, w: >= 1 */
    int64_t pad_begin[2]; /* top, left: >= 0 */
    int64_t pad_end[2];   /* bottom, right: >= 0 (differs from pad_begin only for padding='same') */
    int64_t dilation[2];  /* >= 1 */
    int64_t groups;       /* >= 1, divides C and Co */
} av_conv2d_args;

/* symmetric padding; stride, padding, dilation are {h, w} */
av_tensor *av_conv2d(const av_tensor *x, const av_tensor *w, const av_tensor *b, const int64_t stride[2],
                     const int64_t padding[2], const int64_t dilation[2], int64_t groups);
/* any padding (padding='same' with an even kernel pads more at the end, as PyTorch) */
av_tensor *av_conv2d_ex(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a);
/* fills a for padding='same' (stride must be 1): total dilation*(k-1), the odd one at the end */
int av_conv2d_same_padding(const av_tensor *w, av_conv2d_args *a);

/* The gradients without recording: given the output gradient gy, any of gx, gw, gb that is
 * not NULL receives a new tensor (input, weight and bias gradient). x and w are 4-d. */
int av_conv2d_backward(const av_tensor *gy, const av_tensor *x, const av_tensor *w, const av_conv2d_args *a,
                       av_tensor **gx, av_tensor **gw, av_tensor **gb);
/* torch.nn.grad.conv2d_input / conv2d_weight: one gradient from shapes (not recorded) */
av_tensor *av_conv2d_input_grad(int ndim, const int64_t *input_shape, const av_tensor *w, const av_tensor *gy,
                                const av_conv2d_args *a);
av_tensor *av_conv2d_weight_grad(const av_tensor *x, int ndim, const int64_t *weight_shape, const av_tensor *gy,
                                 const av_conv2d_args *a);

/* The CPU kernel family: "im2col" (im2col + OpenBLAS GEMM), "onednn" (builds with
 * AV_WITH_DNNL; float32) or "auto" (the default: the first call of each shape
 * times both and keeps the faster). The environment variable AVIARY_CONV_ALGO
 * sets the starting value. Depthwise convolutions always use direct loops. */
enum { AV_CONV_AUTO = 0, AV_CONV_IM2COL = 1, AV_CONV_ONEDNN = 2 };
int av_conv2d_set_algorithm(const char *name);
const char *av_conv2d_get_algorithm(void);

#ifdef __cplusplus
}
#endif
#endif
