/* aviary tensor core: refcounted storages, strided views, dtypes.
 *
 * Conventions (hold for the whole runtime):
 *  - Dimensions and indices are 0-based here; the Lua binding converts.
 *  - Functions returning av_tensor* return a new reference (refcount 1) owned
 *    by the caller, or NULL on error with a message in av_last_error().
 *  - Functions returning int return 0 on success, -1 on error (message set).
 *  - Nothing here exits or aborts on bad input.
 */
#ifndef AVIARY_TENSOR_H
#define AVIARY_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AV_MAX_DIMS 8

typedef enum {
    AV_F32 = 0,
    AV_F64,
    AV_I64,
    AV_I32,
    AV_U8,
    AV_F16,  /* storage only on CPU: conversion and I/O, no CPU math */
    AV_BF16, /* storage only on CPU: conversion and I/O, no CPU math */
    AV_NDTYPES
} av_dtype;

typedef enum { AV_CPU = 0, AV_CUDA = 1 } av_device_type;

typedef struct av_device {
    av_device_type type;
    int index;
} av_device;

struct av_backend;

typedef struct av_storage {
    void *data;
    size_t nbytes;
    int refcount;
    av_device device;
    const struct av_backend *backend; /* who frees it */
    bool external;                     /* data not owned (free not called) */
    uint32_t version;                  /* bumped by in-place writes (autograd checks it) */
} av_storage;

struct av_autograd_meta; /* step 2: grad_fn, grad, requires_grad, hooks */

typedef struct av_tensor {
    av_dtype dtype;
    int ndim;
    int64_t shape[AV_MAX_DIMS];
    int64_t stride[AV_MAX_DIMS]; /* in elements */
    int64_t offset;              /* in elements, into storage */
    av_storage *storage;
    int refcount;
    struct av_autograd_meta *ag; /* NULL unless autograd touches it */
} av_tensor;

/* ---- errors ---------------------------------------------------------- */
const char *av_last_error(void);
/* sets the thread's error message; returns -1 so `return av_fail(...)` works */
int av_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* prefixes the current message with "fn: " unless already prefixed */
void av_error_clear(void);

/* ---- dtypes ---------------------------------------------------------- */
size_t av_dtype_size(av_dtype dt);
const char *av_dtype_name(av_dtype dt);       /* "float32", ... */
const char *av_dtype_tensor_name(av_dtype dt); /* "FloatTensor", ... */
/* parses "float32"/"float"/"f32", ... ; returns -1 if unknown */
int av_dtype_from_name(const char *name);
bool av_dtype_is_float(av_dtype dt);
/* type of a binary op result, PyTorch's promotion within u8<i32<i64<f32<f64 */
av_dtype av_promote(av_dtype a, av_dtype b);

/* ---- lifetime -------------------------------------------------------- */
av_tensor *av_retain(av_tensor *t);
void av_release(av_tensor *t); /* NULL-safe */
void av_storage_release(av_storage *s);

/* total bytes of live CPU storages (for the Lua GC heuristic) */
size_t av_live_bytes(void);
/* returns the blocks kept for reuse by the CPU allocator to the system */
void av_cpu_cache_clear(void);

/* ---- shape helpers --------------------------------------------------- */
int64_t av_numel(const av_tensor *t);
bool av_is_contiguous(const av_tensor *t);
/* formats "2x3x4" ("scalar" for 0-d) into buf */
const char *av_shape_str(const av_tensor *t, char *buf, size_t n);
const char *av_shape_str_raw(int ndim, const int64_t *shape, char *buf, size_t n);
static inline void *av_data(const av_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)av_dtype_size(t->dtype);
}
/* normalises a possibly-negative dim; -1 on error */
int av_wrap_dim(int dim, int ndim, const char *fn);

/* ---- creation -------------------------------------------------------- */
av_tensor *av_empty(int ndim, const int64_t *shape, av_dtype dt);
av_tensor *av_zeros(int ndim, const int64_t *shape, av_dtype dt);
av_tensor *av_full(int ndim, const int64_t *shape, av_dtype dt, double value);
av_tensor *av_scalar_tensor(double value, av_dtype dt); /* 0-d */
av_tensor *av_empty_like(const av_tensor *t);
/* wraps caller memory (copied): data has numel*dtype_size bytes, row-major */
av_tensor *av_from_data(int ndim, const int64_t *shape, av_dtype dt, const void *data);
av_tensor *av_arange(double start, double end, double step, av_dtype dt);
av_tensor *av_linspace(double start, double end, int64_t steps, av_dtype dt);
av_tensor *av_eye(int64_t n, int64_t m, av_dtype dt);

/* ---- random (one global seedable generator, Philox-like counter) ----- */
void av_manual_seed(uint64_t seed);
uint64_t av_initial_seed(void);
/* the generator's state as a new 16-element uint8 tensor: seed, then the count
 * of numbers drawn, each a little-endian u64 (torch.get_rng_state's role) */
av_tensor *av_get_rng_state(void);
/* restores a state from av_get_rng_state; -1 with av_fail() unless t is
 * uint8 with exactly 16 elements */
int av_set_rng_state(const av_tensor *t);
av_tensor *av_rand(int ndim, const int64_t *shape, av_dtype dt);  /* U[0,1) */
av_tensor *av_randn(int ndim, const int64_t *shape, av_dtype dt); /* N(0,1) */
av_tensor *av_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, av_dtype dt);
av_tensor *av_randperm(int64_t n, av_dtype dt);
int av_uniform_(av_tensor *t, double lo, double hi);
int av_normal_(av_tensor *t, double mean, double std);

/* ---- element access -------------------------------------------------- */
/* reads element at a full index (ndim entries) as double */
double av_get(const av_tensor *t, const int64_t *idx);
void av_set(av_tensor *t, const int64_t *idx, double v);
int av_item(const av_tensor *t, double *out); /* numel must be 1 */
/* one element of dtype dt at p, through a double */
double av_load_elem(av_dtype dt, const void *p);
void av_store_elem(av_dtype dt, void *p, double v);

/* ---- views (share storage) ------------------------------------------- */
av_tensor *av_view(const av_tensor *t, int ndim, const int64_t *shape); /* one -1 allowed */
av_tensor *av_reshape(const av_tensor *t, int ndim, const int64_t *shape); /* copies if needed */
av_tensor *av_permute(const av_tensor *t, const int *dims);
av_tensor *av_transpose(const av_tensor *t, int d0, int d1);
av_tensor *av_narrow(const av_tensor *t, int dim, int64_t start, int64_t length);
av_tensor *av_select(const av_tensor *t, int dim, int64_t index);
av_tensor *av_expand(const av_tensor *t, int ndim, const int64_t *shape); /* -1 keeps */
av_tensor *av_squeeze(const av_tensor *t, int dim); /* dim<0 given as AV_ALL_DIMS: all */
av_tensor *av_unsqueeze(const av_tensor *t, int dim);
av_tensor *av_flatten(const av_tensor *t, int start, int end);
av_tensor *av_contiguous(const av_tensor *t); /* retains t if already contiguous */
av_tensor *av_as_strided(const av_tensor *t, int ndim, const int64_t *shape,
                         const int64_t *stride, int64_t offset);
#define AV_ALL_DIMS (-1000)

/* ---- copy / conversion ----------------------------------------------- */
av_tensor *av_clone(const av_tensor *t);
av_tensor *av_to_dtype(const av_tensor *t, av_dtype dt); /* retains if same */
int av_copy_(av_tensor *dst, const av_tensor *src); /* src broadcast to dst, any dtypes */
int av_fill_(av_tensor *t, double value);

/* ---- devices --------------------------------------------------------- */
bool av_cuda_compiled(void);   /* built with nvcc */
int av_cuda_device_count(void); /* 0 without a GPU or driver */

/* ---- threads --------------------------------------------------------- */
void av_set_num_threads(int n);
int av_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
