/* Strided N-d iteration shared by CPU kernels.
 *
 * An iterator walks up to AV_ITER_MAX_ARGS operands over one broadcast shape.
 * Dims of size 1 are dropped and adjacent dims that are contiguous for every
 * operand are merged, so a contiguous tensor becomes one long strip. Kernels
 * are written as strip functions over the innermost dimension; av_iter_run
 * splits the element range across threads (OpenMP) when it is large enough. */
#ifndef AVIARY_CPU_ITER_H
#define AVIARY_CPU_ITER_H

#include "aviary/tensor.h"

#define AV_ITER_MAX_ARGS 4
/* below this many elements a kernel runs on the calling thread */
#define AV_PARALLEL_GRAIN 32768

typedef struct av_iter {
    int ndim;                                   /* after coalescing; >= 1 */
    int nargs;
    int64_t numel;
    int64_t shape[AV_MAX_DIMS];                 /* innermost last */
    int64_t stride[AV_ITER_MAX_ARGS][AV_MAX_DIMS]; /* elements; 0 where broadcast */
    char *base[AV_ITER_MAX_ARGS];
    int esize[AV_ITER_MAX_ARGS];
} av_iter;

/* strip: n elements; p[k] points at operand k's first element; s[k] its stride in elements */
typedef void (*av_strip_fn)(char **p, const int64_t *s, int64_t n, void *ctx);

/* operands[0] is usually the output and defines the shape; every other
 * operand must broadcast to shape (checked by the caller). */
void av_iter_init(av_iter *it, int ndim, const int64_t *shape, int nargs, const av_tensor *const *ops);
void av_iter_run(const av_iter *it, av_strip_fn fn, void *ctx);
/* runs elements [begin, end) of the iteration on the calling thread */
void av_iter_run_range(const av_iter *it, int64_t begin, int64_t end, av_strip_fn fn, void *ctx);
/* run on the calling thread only (kernels that are not thread-safe) */
void av_iter_run_serial(const av_iter *it, av_strip_fn fn, void *ctx);

/* the broadcast shape of two shapes; -1 with a message naming both shapes */
int av_broadcast_shape(const char *fn, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                       int64_t *out);
/* true when a write through t could hit the same element twice (stride 0 on a dim > 1) */
bool av_has_internal_overlap(const av_tensor *t);

/* element load/store through a double, for dtypes without a typed kernel */
double av_load_elem(av_dtype dt, const void *p);
void av_store_elem(av_dtype dt, void *p, double v);

/* a 0-d tensor living on the caller's stack; no allocation (scalar operands) */
typedef struct { av_storage storage; av_tensor tensor; union { double f64; float f32; int64_t i64; int32_t i32; uint8_t u8; } v; } av_stack_scalar;
av_tensor *av_stack_scalar_init(av_stack_scalar *s, double value, av_dtype dt);

#endif
