/* aviary operators. Same conventions as tensor.h: 0-based dims, new
 * references returned, NULL / -1 on error with av_last_error() set.
 * Elementwise binary ops broadcast like NumPy. In-place variants (suffix _)
 * write into their first argument; the other operand must broadcast to it. */
#ifndef AVIARY_OPS_H
#define AVIARY_OPS_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise ------------------------------------------------------ */
typedef enum {
    AV_OP_ADD = 0, AV_OP_SUB, AV_OP_MUL, AV_OP_DIV, AV_OP_POW,
    AV_OP_MINIMUM, AV_OP_MAXIMUM, AV_OP_REM, AV_OP_ATAN2,
    /* comparisons and logical ops produce u8 (0/1) */
    AV_OP_EQ, AV_OP_NE, AV_OP_LT, AV_OP_LE, AV_OP_GT, AV_OP_GE,
    AV_OP_LOGICAL_AND, AV_OP_LOGICAL_OR, AV_OP_LOGICAL_XOR,
    AV_NBINOPS
} av_binop;

typedef enum {
    AV_OP_NEG = 0, AV_OP_EXP, AV_OP_LOG, AV_OP_SQRT, AV_OP_RSQRT, AV_OP_ABS,
    AV_OP_SIGN, AV_OP_FLOOR, AV_OP_CEIL, AV_OP_ROUND, AV_OP_TRUNC,
    AV_OP_RECIPROCAL, AV_OP_SQUARE, AV_OP_SIN, AV_OP_COS, AV_OP_TAN,
    AV_OP_LOG2, AV_OP_LOG10, AV_OP_LOG1P, AV_OP_EXPM1, AV_OP_EXP2,
    AV_OP_SIGMOID, AV_OP_TANH, AV_OP_RELU, AV_OP_ERF,
    AV_OP_LOGICAL_NOT, AV_OP_ISNAN, AV_OP_ISINF, AV_OP_ISFINITE,
    AV_NUNOPS
} av_unop;

const char *av_binop_name(av_binop op);
const char *av_unop_name(av_unop op);

av_tensor *av_binary(av_binop op, const av_tensor *a, const av_tensor *b);
int av_binary_(av_binop op, av_tensor *a, const av_tensor *b);
/* tensor (op) scalar, or scalar (op) tensor when reverse */
av_tensor *av_binary_scalar(av_binop op, const av_tensor *a, double s, bool reverse);
int av_binary_scalar_(av_binop op, av_tensor *a, double s);
av_tensor *av_unary(av_unop op, const av_tensor *a);
int av_unary_(av_unop op, av_tensor *a);
/* NaN bounds mean "no bound" */
av_tensor *av_clamp(const av_tensor *a, double lo, double hi);
int av_clamp_(av_tensor *a, double lo, double hi);
av_tensor *av_where(const av_tensor *cond, const av_tensor *a, const av_tensor *b);
/* out = a + alpha * b * c style helpers used by optimizers come in step 2/3 */

/* ---- reductions ------------------------------------------------------- */
typedef enum {
    AV_RED_SUM = 0, AV_RED_MEAN, AV_RED_PROD, AV_RED_MAX, AV_RED_MIN,
    AV_RED_ARGMAX, AV_RED_ARGMIN, AV_RED_ALL, AV_RED_ANY
} av_redop;

/* reduce over ndims listed dims (ndims==0 means all dims) */
av_tensor *av_reduce(av_redop op, const av_tensor *t, int ndims, const int *dims, bool keepdim);
/* max/min over one dim with indices (like torch.max(x, dim)) */
int av_max_dim(const av_tensor *t, int dim, bool keepdim, bool is_min,
               av_tensor **values, av_tensor **indices);
av_tensor *av_var(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
av_tensor *av_std(const av_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
av_tensor *av_norm(const av_tensor *t, double p, int ndims, const int *dims, bool keepdim);
av_tensor *av_cumsum(const av_tensor *t, int dim);
av_tensor *av_cumprod(const av_tensor *t, int dim);
/* values and i64 indices; stable sort */
int av_sort(const av_tensor *t, int dim, bool descending, av_tensor **values, av_tensor **indices);
int av_topk(const av_tensor *t, int64_t k, int dim, bool largest, bool sorted,
            av_tensor **values, av_tensor **indices);

/* ---- linear algebra (OpenBLAS for f32/f64) ---------------------------- */
av_tensor *av_mm(const av_tensor *a, const av_tensor *b);
av_tensor *av_bmm(const av_tensor *a, const av_tensor *b);
av_tensor *av_matmul(const av_tensor *a, const av_tensor *b); /* torch.matmul semantics */
/* beta*c + alpha*(a@b) */
av_tensor *av_addmm(const av_tensor *c, const av_tensor *a, const av_tensor *b, double beta, double alpha);
av_tensor *av_dot(const av_tensor *a, const av_tensor *b);
/* low level: C[m,n] = alpha*op(A)op(B) + beta*C for f32/f64 row-major buffers */
int av_gemm(av_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
            const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc);

/* ---- joining and indexing --------------------------------------------- */
av_tensor *av_cat(int n, av_tensor *const *ts, int dim);
av_tensor *av_stack(int n, av_tensor *const *ts, int dim);
av_tensor *av_index_select(const av_tensor *t, int dim, const av_tensor *index); /* 0-based i64/i32 */
av_tensor *av_gather(const av_tensor *t, int dim, const av_tensor *index);
/* returns a copy of t with src scattered (reduce: NULL, "add" or "multiply") */
av_tensor *av_scatter(const av_tensor *t, int dim, const av_tensor *index, const av_tensor *src,
                      const char *reduce);
int av_scatter_(av_tensor *t, int dim, const av_tensor *index, const av_tensor *src, const char *reduce);
av_tensor *av_masked_fill(const av_tensor *t, const av_tensor *mask, double value);
int av_masked_fill_(av_tensor *t, const av_tensor *mask, double value);
av_tensor *av_masked_select(const av_tensor *t, const av_tensor *mask); /* 1-d result */
av_tensor *av_nonzero(const av_tensor *t); /* [n, ndim] i64 */

#ifdef __cplusplus
}
#endif
#endif
