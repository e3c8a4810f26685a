/* Recording hooks called by the op implementations, and helpers shared by
 * the backward functions (runtime/autograd/grad_*.c). How a new op records
 * its node, step by step: docs/adding-ops.md. */
#ifndef AVIARY_GRAD_INTERNAL_H
#define AVIARY_GRAD_INTERNAL_H

#include "aviary/autograd.h"
#include "aviary/ops.h"

/* grad mode off for the duration of a raw computation */
#define NO_GRAD(expr)                  \
    do {                               \
        bool was_ = av_grad_enabled(); \
        av_set_grad_enabled(false);    \
        expr;                          \
        av_set_grad_enabled(was_);     \
    } while (0)

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


/* the CPU reductions without graph recording; the public av_reduce & co in
 * grad_reduce.c call these and record one node */
av_tensor *av_reduce_raw(av_redop op, const av_tensor *t, int ndims, const int *dims, bool keepdim);
int av_max_dim_raw(const av_tensor *t, int dim, bool keepdim, bool is_min, av_tensor **values, av_tensor **indices);
av_tensor *av_var_raw(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
av_tensor *av_std_raw(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
av_tensor *av_norm_raw(const av_tensor *t, double p, int ndims, const int *dims, bool keepdim);
av_tensor *av_cumsum_raw(const av_tensor *t, int dim);
av_tensor *av_cumprod_raw(const av_tensor *t, int dim);
int av_sort_raw(const av_tensor *t, int dim, bool descending, av_tensor **values, av_tensor **indices);
int av_topk_raw(const av_tensor *t, int64_t k, int dim, bool largest, bool sorted, av_tensor **values,
                av_tensor **indices);

/* joining and indexing without recording (runtime/ops/cpu/index.c) */
av_tensor *av_cat_raw(int n, av_tensor *const *ts, int dim);
av_tensor *av_stack_raw(int n, av_tensor *const *ts, int dim);
av_tensor *av_index_select_raw(const av_tensor *t, int dim, const av_tensor *index);
av_tensor *av_gather_raw(const av_tensor *t, int dim, const av_tensor *index);
av_tensor *av_scatter_raw(const av_tensor *t, int dim, const av_tensor *index, const av_tensor *src, const char *reduce);
av_tensor *av_masked_fill_raw(const av_tensor *t, const av_tensor *mask, double value);
av_tensor *av_masked_select_raw(const av_tensor *t, const av_tensor *mask);

#endif
