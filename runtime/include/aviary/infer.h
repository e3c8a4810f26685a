/* Inference plans: a CNN's evaluation-mode forward pass as one list of fused
 * oneDNN primitives whose activations stay in oneDNN's blocked layout from
 * one layer to the next (no NCHW round trip per convolution), with batch norm
 * folded into the convolution weights by the caller and ReLU and the residual
 * add applied as the convolution's post-ops. Built from aviary.inference
 * (lua/aviary/inference.lua), which reads the graph of a model traced or
 * imported through aviary.onnx. Float32, no autograd.
 *
 * Values are numbered from 0 in the order they are created. A plan is built
 * once; the primitives are made on the first run for each input shape and
 * thread count and kept. Without oneDNN in the build av_plan_available() is
 * false and av_plan_new() fails. Same error conventions as ops.h. */
#ifndef AVIARY_INFER_H
#define AVIARY_INFER_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct av_plan av_plan;

bool av_plan_available(void);
av_plan *av_plan_new(void);
void av_plan_free(av_plan *p);

/* an input of the plan: a 4-d float32 N x C x H x W tensor given at run time */
int av_plan_input(av_plan *p);
/* y = conv(x, w) + b [+ residual] [then ReLU]; w Co x C/groups x kh x kw (copied),
 * b Co or NULL; residual a value of y's shape or -1. stride/pad_begin/pad_end/
 * dilation are {h, w}. Returns the new value's number, or -1. */
int av_plan_conv(av_plan *p, int x, const av_tensor *w, const av_tensor *b, const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2], const int64_t dilation[2], int64_t groups,
                 int residual, bool relu);
/* pooling: kind 0 max, 1 average excluding padding, 2 average including padding,
 * plus 4 for ceil_mode (output sizes rounded up, as PyTorch and ONNX). kernel
 * {0, 0} means the whole plane (global pooling). */
int av_plan_pool(av_plan *p, int x, int kind, const int64_t kernel[2], const int64_t stride[2],
                 const int64_t pad_begin[2], const int64_t pad_end[2]);
int av_plan_add(av_plan *p, int a, int b, bool relu);
int av_plan_relu(av_plan *p, int x);
/* y = min(max(x, lo), hi) (ReLU6 is [0, 6]) */
int av_plan_clip(av_plan *p, int x, float lo, float hi);
/* makes the convolution or add that produced value v clamp its result to [lo, hi]
 * (after its ReLU, if any) as a post-op, in place of a separate pass */
int av_plan_fuse_clip(av_plan *p, int v, float lo, float hi);
/* marks a value as a result: av_plan_run returns it as a plain NCHW tensor */
int av_plan_output(av_plan *p, int x);

/* runs the plan: inputs[i] for each av_plan_input in order; outputs[j] receives a
 * new reference for each av_plan_output in order. 0 or -1. */
int av_plan_run(av_plan *p, int nin, av_tensor *const *inputs, int nout, av_tensor **outputs);
int av_plan_num_outputs(const av_plan *p);

#ifdef __cplusplus
}
#endif
#endif
