/* The CUDA side of the runtime, as seen from C code that never includes a
 * CUDA header. Everything here exists in every build: without CUDA (or without
 * a GPU) the functions fail with a clear message and the predicates say false.
 *
 * Device tensors are ordinary av_tensor whose storage->device.type is AV_CUDA;
 * their storage->data is a device pointer (never dereferenced on the host).
 * Op entry points (av_add, av_conv2d_raw, ...) dispatch on the device of their
 * inputs: all CPU -> the CPU kernel, all CUDA -> the CUDA kernel, mixed -> an
 * error that names both devices. */
#ifndef AVIARY_CUDA_H
#define AVIARY_CUDA_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline bool av_is_cuda(const av_tensor *t) { return t && t->storage->device.type == AV_CUDA; }
static inline av_device av_device_of(const av_tensor *t) { return t->storage->device; }
/* "cpu" or "cuda:0" into buf */
const char *av_device_str(av_device d, char *buf, size_t n);
/* parses "cpu", "cuda", "cuda:1"; -1 with av_fail() if malformed */
int av_device_parse(const char *s, av_device *out);

/* 0 when a and b (b may be NULL) live on the same device, else -1 with
 * "fn: expected all tensors on one device, got cpu (input) and cuda:0 (weight)" */
int av_check_same_device(const char *fn, const av_tensor *a, const char *aname, const av_tensor *b,
                         const char *bname);

/* uninitialised / zero-filled tensor on a device */
av_tensor *av_empty_on(int ndim, const int64_t *shape, av_dtype dt, av_device d);
av_tensor *av_zeros_on(int ndim, const int64_t *shape, av_dtype dt, av_device d);
/* a contiguous copy on device d (retains t when it is already there); on a
 * machine without a GPU: "to: no CUDA device is available (...)" */
av_tensor *av_to_device(const av_tensor *t, av_device d);

/* value-filled tensor on a device; an uninitialised one shaped like t on t's device */
av_tensor *av_full_on(int ndim, const int64_t *shape, av_dtype dt, double value, av_device d);
av_tensor *av_empty_like_on(const av_tensor *t);
/* dst <- src (broadcast, any dtypes) when they live on different devices;
 * av_copy_ calls it, so callers normally use av_copy_ */
int av_copy_between(av_tensor *dst, const av_tensor *src);
/* 0-d CPU tensors (scalars) may meet tensors of any device in elementwise
 * ops, as in PyTorch; the device an elementwise op over a and b runs on */
static inline bool av_is_cpu_scalar(const av_tensor *t) { return t && t->storage->device.type == AV_CPU && t->ndim == 0; }

/* -1 with "fn: not supported on CUDA tensors (move it to the CPU with :cpu())" */
int av_cuda_unsupported(const char *fn);

/* ---- runtime control (no-ops / errors without CUDA) ------------------ */
bool av_cuda_is_available(void);            /* compiled, driver present, >= 1 device */
int av_cuda_set_device(int index);
int av_cuda_current_device(void);
int av_cuda_synchronize(void);
/* caching allocator statistics, bytes */
typedef struct av_cuda_memory_stats {
    size_t allocated;      /* live tensor storages */
    size_t reserved;       /* allocated + cached free blocks */
    size_t peak_allocated; /* since start or the last reset */
    size_t free_device;    /* cudaMemGetInfo free */
    size_t total_device;   /* cudaMemGetInfo total */
} av_cuda_memory_stats;
int av_cuda_memory_stats_get(av_cuda_memory_stats *out);
void av_cuda_reset_peak(void);
void av_cuda_empty_cache(void); /* returns cached blocks to the driver */

/* cuDNN: benchmark mode (time every algorithm on the first call of a shape) */
void av_cudnn_set_benchmark(bool on);
bool av_cudnn_get_benchmark(void);

/* pinned host memory for asynchronous host->device copies (data loader) */
void *av_cuda_host_alloc(size_t nbytes); /* NULL + av_fail on error */
void av_cuda_host_free(void *p);

/* bytes held by live device tensors (0 without CUDA): the Lua GC heuristic counts them */
size_t av_cuda_live_bytes(void);
/* called once when a device allocation fails even after the cache was
 * emptied, before the last retry: the binding runs a full garbage collection
 * there, since unreachable tensors may still hold the memory */
void av_cuda_set_oom_hook(void (*fn)(void));
/* a CPU tensor in page-locked memory, so a copy to the GPU can run
 * asynchronously; ordinary memory when no GPU is usable (it is only an
 * optimisation). Its blocks are cached for reuse, like the GPU's. */
av_tensor *av_empty_pinned(int ndim, const int64_t *shape, av_dtype dt);
bool av_is_pinned(const av_tensor *t);
/* av_to_device, except that a contiguous pinned CPU tensor goes to the GPU
 * without waiting: the copy is queued on the device's stream (so every later
 * op on the device sees the data) and t is kept alive until it completes.
 * Writing into t before then races with the copy, as with PyTorch's
 * non_blocking=True. Anything else falls back to av_to_device. */
av_tensor *av_to_device_async(const av_tensor *t, av_device d);
/* data loaders (runtime/data/loader.c) put their batches in pinned memory when on */
struct av_loader;
void av_loader_set_pin_memory(struct av_loader *l, bool on);

#ifdef __cplusplus
}
#endif
#endif
