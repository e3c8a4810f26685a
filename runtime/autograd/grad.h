/* Recording hooks called by the op implementations, and helpers shared by
 * the backward functions (runtime/autograd/grad_*.c). */
#ifndef AVIARY_GRAD_INTERNAL_H
#define AVIARY_GRAD_INTERNAL_H

#include "aviary/autograd.h"
#include "aviary/ops.h"

/* each returns 0, or -1 (out is then released by the caller) */
int av_ag_binary(av_binop op, av_tensor *out, const av_tensor *a, const av_tensor *b);
int av_ag_binary_scalar(av_binop op, av_tensor *out, const av_tensor *a, double s, bool reverse);
int av_ag_unary(av_unop op, av_tensor *out, const av_tensor *a);
int av_ag_clamp(av_tensor *out, const av_tensor *a, double lo, double hi);
int av_ag_where(av_tensor *out, const av_tensor *cond, const av_tensor *a, const av_tensor *b);
int av_ag_to_dtype(av_tensor *out, const av_tensor *a);
int av_ag_clone(av_tensor *out, const av_tensor *a);
int av_ag_view(av_tensor *out, const av_tensor *in);
int av_ag_permute(av_tensor *out, const av_tensor *in, const int *dims);
int av_ag_narrow(av_tensor *out, const av_tensor *in, int dim, int64_t start, int64_t length);
int av_ag_select(av_tensor *out, const av_tensor *in, int dim, int64_t index);
int av_ag_expand(av_tensor *out, const av_tensor *in);
int av_ag_mm(av_tensor *out, const av_tensor *a, const av_tensor *b, bool batched);
int av_ag_addmm(av_tensor *out, const av_tensor *c, const av_tensor *a, const av_tensor *b, double beta, double alpha);

/* the shortest way to write "record node with these inputs and save these":
 * returns out, or NULL after releasing out when recording failed */
av_tensor *av_ag_finish(av_tensor *out, int rc);

/* small helpers for backward code: all return new refs (NULL on error) */
av_tensor *ag_mul(const av_tensor *a, const av_tensor *b);
av_tensor *ag_muls(const av_tensor *a, double s);
av_tensor *ag_div(const av_tensor *a, const av_tensor *b);
av_tensor *ag_add(const av_tensor *a, const av_tensor *b);
av_tensor *ag_sub(const av_tensor *a, const av_tensor *b);
av_tensor *ag_neg(const av_tensor *a);
/* g * f(x) where f is given as a new tensor; releases f */
av_tensor *ag_mul_take(const av_tensor *g, av_tensor *f);
av_tensor *ag_zeros_like(const av_tensor *t);

#endif
