/* A backend is one table of functions per device (ARCHITECTURE.md decision 2).
 * Step 1 has the CPU table; the CUDA table joins it with the same shape. */
#ifndef AVIARY_BACKEND_H
#define AVIARY_BACKEND_H

#include "aviary/tensor.h"

typedef struct av_backend {
    const char *name;
    av_device_type type;
    void *(*alloc)(size_t nbytes);             /* NULL on failure */
    void (*free)(void *p, size_t nbytes);
    /* raw byte copies; kind: 0 host->dev, 1 dev->host, 2 dev->dev */
    int (*copy)(void *dst, const void *src, size_t nbytes, int kind);
    void (*synchronize)(void);
} av_backend;

const av_backend *av_backend_get(av_device_type type);
extern const av_backend av_cpu_backend;

/* storage for nbytes on a device; refcount 1 */
av_storage *av_storage_new(size_t nbytes, av_device device);
/* tensor header over a storage (retains it), contiguous strides for shape */
av_tensor *av_tensor_new(av_storage *s, av_dtype dt, int ndim, const int64_t *shape, int64_t offset);
/* contiguous row-major strides for shape */
void av_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);

#endif
