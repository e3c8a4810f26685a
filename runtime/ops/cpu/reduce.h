/* Private to the CPU reduction files (reduce.c, reduce_kernels.c, sort.c).
 *
 * A reduction step is described to a kernel as an av_iter over the output
 * (keepdim shape) whose operands are {values, input, [indices | mean]}: the
 * input operand is a header copy of the input with the reduced dims set to
 * size 1, so each output element's input pointer lands on its first reduced
 * element, and the kernel walks R elements spaced rs apart from there. */
#ifndef AVIARY_CPU_REDUCE_H
#define AVIARY_CPU_REDUCE_H

#include "aviary/ops.h"
#include "iter.h"

#define AV_HIDDEN __attribute__((visibility("hidden")))

typedef struct {
    int64_t R;  /* reduced elements per output */
    int64_t rs; /* their spacing in the input, in elements */
} av_red_ctx;

/* [op][input dtype]; NULL where the pair is not supported. MEAN has no
 * kernel: it is SUM followed by a division. Arg kernels take operand 2 as the
 * i64 index output and also write the winning values to operand 0. */
AV_HIDDEN extern const av_strip_fn av_red_kernels[AV_RED_ANY + 1][AV_NDTYPES];
/* sum of squared deviations from a per-output mean (operand 2, same dtype);
 * f32 and f64 only */
AV_HIDDEN extern const av_strip_fn av_red_sqdev_kernels[AV_NDTYPES];

/* runs fn over all output elements, split across threads when numel * cost
 * (cost: inner steps per output element) is large enough to pay for it */
AV_HIDDEN void av_red_run(const av_iter *it, av_strip_fn fn, void *ctx, int64_t cost);

/* f16/bf16 have no CPU math: -1 with a message telling how to convert */
AV_HIDDEN int av_red_check_dtype(const char *fn, av_dtype dt);

#endif
