/* The CUDA kernels behind the op entry points, as plain C functions usable
 * from .c files. Only compiled (and only called) with AV_WITH_CUDA.
 *
 * Division of labour: the public op in runtime/ops/cpu/ checks its
 * arguments, decides the result dtype and shape, allocates the result on the
 * inputs' device (av_empty_on) and records the autograd node, exactly as for
 * the CPU; only the loop over elements is replaced by one of these. So every
 * function here takes its output already allocated, on the same device as its
 * tensor inputs. A CPU operand is accepted only as a 0-d tensor (a scalar, as
 * PyTorch allows): its value is passed to the kernel by value.
 *
 * Each returns 0, or -1 with av_fail() set (launch errors name the kernel). */
#ifndef AVIARY_CUDA_OPS_H
#define AVIARY_CUDA_OPS_H

#include "aviary/tensor.h"
#include "aviary/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* the CUDA backend table (alloc/free/copy/synchronize over the caching allocator) */
extern const av_backend av_cuda_backend;
/* "" when a device is usable, else the reason ("no CUDA device is available (...)") */
const char *av_cuda_unavailable_reason(void);
/* makes `index` the current device when it is not already */
int av_cuda_device_guard(int index);

/* ---- pinned host blocks and asynchronous copies (alloc.cu) ------------------ */
/* cached page-locked blocks (exact sizes); NULL + av_fail without a GPU */
void *av_cuda_host_alloc_cached(size_t nbytes);
void av_cuda_host_free_cached(void *p, size_t nbytes);
/* queues dst <- src (nbytes, host -> device) on the current stream without
 * waiting; keep is retained until the copy has completed */
int av_cuda_copy_h2d_async(void *dst, const void *src, size_t nbytes, av_tensor *keep);
/* releases what completed asynchronous copies kept alive (all of it when wait) */
void av_cuda_reap_async(bool wait);

/* ---- copies (copy.cu) ------------------------------------------------------ */
/* dst <- src with broadcasting and dtype conversion; both on one device */
int av_cuda_copy(av_tensor *dst, const av_tensor *src);
/* every element of t (any layout) <- value */
int av_cuda_fill(av_tensor *t, double value);

/* ---- elementwise (elementwise.cu); inputs in the compute dtype ------------ */
/* out = a (op) b, op an av_binop; a and b have one dtype, out that dtype or u8
 * for comparisons; out may be a itself (in place) */
int av_cuda_binary(int op, av_tensor *out, const av_tensor *a, const av_tensor *b);
/* out = op(a), op an av_unop; out has a's dtype or u8 for predicates */
int av_cuda_unary(int op, av_tensor *out, const av_tensor *a);
/* NaN bound = no bound */
int av_cuda_clamp(av_tensor *out, const av_tensor *a, double lo, double hi);
/* cond is u8; a, b and out share a dtype */
int av_cuda_where(av_tensor *out, const av_tensor *cond, const av_tensor *a, const av_tensor *b);
/* activations (av_act) forward/backward with the CPU kernels' formulas */
int av_cuda_activation(int act, av_tensor *out, const av_tensor *x, double a, double b);
int av_cuda_activation_backward(int act, av_tensor *out, const av_tensor *g, const av_tensor *x, double a, double b);
/* out = y <= 0 ? 0 : g */
int av_cuda_relu_backward(av_tensor *out, const av_tensor *g, const av_tensor *y);
/* m <- m < keep ? scale : 0 (m holds uniforms) */
int av_cuda_dropout_mask(av_tensor *m, double keep, double scale);

/* ---- reductions (reduce.cu) ----------------------------------------------- */
/* op an av_redop other than MEAN; reduces t over the dims in mask into out
 * (t's shape with those dims set to 1, contiguous, dtype as on the CPU) and,
 * for ARGMAX/ARGMIN, the index within the reduced elements (row-major over
 * the reduced dims) into idx (i64, out's shape); the reduced count is > 0 */
int av_cuda_reduce(int op, const av_tensor *t, unsigned mask, av_tensor *out, av_tensor *idx);

/* ---- indexing (index.cu); the callers checked shapes and index ranges --- */
/* out[o] = src[o' + index[o] * sd]: src is restrided to out's shape with
 * stride 0 along the indexed dim, sd that dim's real stride; index is i64 or
 * i32 with out's shape (index_select broadcasts a 1-d index; gather) */
int av_cuda_take(av_tensor *out, const av_tensor *index, const av_tensor *src, int64_t sd);
/* dst[o' + index[o] * sd] (op)= src[o] over index's shape: dst restrided like
 * src above; mode 0 set, 1 add (atomic; not for u8) */
int av_cuda_scatter(av_tensor *dst, const av_tensor *index, const av_tensor *src, int64_t sd, int mode);
/* t[mask] = value (mask u8, broadcast to t) */
int av_cuda_masked_fill(av_tensor *t, const av_tensor *mask, double value);

/* ---- random (random.cu) ------------------------------------------------------ */
/* t contiguous f32/f64/f16/bf16: the CPU generator's pair scheme (element i from
 * counter base + i/2 under seed); kind 0 uniform [a, b), 1 normal(a, b) */
int av_cuda_random_fill(av_tensor *t, int kind, double a, double b, uint64_t seed, uint64_t base);

#ifdef __cplusplus
}
#endif
#endif
