/* Devices: names, checks, creation on a device and moves between devices.
 * The CUDA runtime calls live in runtime/ops/cuda/; a build without CUDA
 * gets the stubs at the end of this file, so every caller links either way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "aviary/tensor.h"
#include "aviary/backend.h"
#include "aviary/cuda.h"
#include "aviary/ops.h"
#ifdef AV_WITH_CUDA
#include "../ops/cuda/cuda_ops.h"
int av_cuda_device_count_impl(void);
#endif

/* the autograd node of a move between devices (grad_elementwise.c) */
int av_ag_to_device(av_tensor *out, const av_tensor *a);
av_tensor *av_ag_finish(av_tensor *out, int rc);

#define NO_CUDA_BUILD "no CUDA in this build (rebuild with nvcc installed)"

bool av_cuda_compiled(void) {
#ifdef AV_WITH_CUDA
    return true;
#else
    return false;
#endif
}

int av_cuda_device_count(void) {
#ifdef AV_WITH_CUDA
    return av_cuda_device_count_impl();
#else
    return 0;
#endif
}

const char *av_device_str(av_device d, char *buf, size_t n) {
    if (d.type == AV_CPU) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "cuda:%d", d.index);
    return buf;
}

int av_device_parse(const char *s, av_device *out) {
    if (!s) return av_fail("expected a device name ('cpu', 'cuda' or 'cuda:N'), got nothing");
    if (!strcmp(s, "cpu")) {
        *out = (av_device){AV_CPU, 0};
        return 0;
    }
    if (!strncmp(s, "cuda", 4)) {
        const char *p = s + 4;
        if (!*p) {
            *out = (av_device){AV_CUDA, av_cuda_compiled() && av_cuda_device_count() > 0 ? av_cuda_current_device() : 0};
            return 0;
        }
        if (*p == ':' && p[1]) {
            char *end;
            long i = strtol(p + 1, &end, 10);
            if (!*end && i >= 0 && i < 1024 && p[1] >= '0' && p[1] <= '9') {
                *out = (av_device){AV_CUDA, (int)i};
                return 0;
            }
        }
    }
    return av_fail("unknown device '%s' (expected 'cpu', 'cuda' or 'cuda:N')", s);
}

int av_check_same_device(const char *fn, const av_tensor *a, const char *aname, const av_tensor *b,
                         const char *bname) {
    if (!a || !b) return 0;
    av_device da = a->storage->device, db = b->storage->device;
    if (da.type == db.type && (da.type == AV_CPU || da.index == db.index)) return 0;
    char s1[32], s2[32];
    return av_fail("%s: expected all tensors on one device, got %s (%s) and %s (%s)", fn ? fn : "op",
                   av_device_str(da, s1, sizeof s1), aname ? aname : "input", av_device_str(db, s2, sizeof s2),
                   bname ? bname : "other");
}

/* a usable CUDA device index, or -1 with the reason */
static int check_cuda_device(const char *fn, av_device d) {
#ifdef AV_WITH_CUDA
    const char *why = av_cuda_unavailable_reason();
    if (why[0]) return av_fail("%s: %s", fn, why);
    int n = av_cuda_device_count();
    if (d.index < 0 || d.index >= n)
        return av_fail("%s: no device cuda:%d on this machine (%d CUDA device%s: cuda:0%s)", fn, d.index, n,
                       n == 1 ? "" : "s", n > 1 ? " to cuda:N-1" : "");
    return 0;
#else
    (void)d;
    return av_fail("%s: " NO_CUDA_BUILD, fn);
#endif
}

av_tensor *av_empty_on(int ndim, const int64_t *shape, av_dtype dt, av_device d) {
    if (d.type == AV_CPU) return av_empty(ndim, shape, dt);
    if (check_cuda_device("empty", d)) return NULL;
    if ((unsigned)dt >= AV_NDTYPES) { av_fail("unknown dtype %d", dt); return NULL; }
    if (ndim < 0 || ndim > AV_MAX_DIMS) { av_fail("at most %d dimensions are supported, got %d", AV_MAX_DIMS, ndim); return NULL; }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { av_fail("negative size %lld in dimension %d", (long long)shape[i], i + 1); return NULL; }
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) { av_fail("shape too large"); return NULL; }
        n *= shape[i];
    }
    av_storage *s = av_storage_new((size_t)n * av_dtype_size(dt), d);
    if (!s) return NULL;
    av_tensor *t = av_tensor_new(s, dt, ndim, shape, 0);
    av_storage_release(s);
    return t;
}

av_tensor *av_zeros_on(int ndim, const int64_t *shape, av_dtype dt, av_device d) {
    if (d.type == AV_CPU) return av_zeros(ndim, shape, dt);
    return av_full_on(ndim, shape, dt, 0, d);
}

av_tensor *av_full_on(int ndim, const int64_t *shape, av_dtype dt, double value, av_device d) {
    if (d.type == AV_CPU) return av_full(ndim, shape, dt, value);
    av_tensor *t = av_empty_on(ndim, shape, dt, d);
    if (t && av_fill_(t, value)) {
        av_release(t);
        return NULL;
    }
    return t;
}

av_tensor *av_empty_like_on(const av_tensor *t) {
    return av_empty_on(t->ndim, t->shape, t->dtype, t->storage->device);
}

static bool same_device(av_device a, av_device b) {
    return a.type == b.type && (a.type == AV_CPU || a.index == b.index);
}

av_tensor *av_to_device(const av_tensor *t, av_device d) {
    if (!t) { av_fail("to: expected a tensor"); return NULL; }
    if (same_device(t->storage->device, d)) return av_retain((av_tensor *)t);
    if (d.type == AV_CUDA && check_cuda_device("to", d)) return NULL;
    av_tensor *out = av_empty_on(t->ndim, t->shape, t->dtype, d);
    if (!out) return NULL;
    /* the copy is not an in-place write anyone can observe, so it goes around autograd */
    if (av_copy_between(out, t)) {
        av_release(out);
        return NULL;
    }
    return av_ag_finish(out, av_ag_to_device(out, t));
}

/* dst <- src where the two live on different devices: through a contiguous
 * staging copy of src's dtype, so broadcasting and dtype conversion happen on
 * whichever side has the kernels for them */
int av_copy_between(av_tensor *dst, const av_tensor *src) {
#ifdef AV_WITH_CUDA
    bool to_host = dst->storage->device.type == AV_CPU;
    const av_backend *be = &av_cuda_backend;
    if (!to_host && dst->storage->device.type == AV_CUDA && src->storage->device.type == AV_CUDA) {
        /* between two GPUs: peer copy of a contiguous source */
        av_tensor *c = av_contiguous(src);
        av_tensor *st = c ? av_empty_on(src->ndim, src->shape, src->dtype, dst->storage->device) : NULL;
        int rc = -1;
        if (st) rc = be->copy(av_data(st), av_data(c), (size_t)av_numel(c) * av_dtype_size(c->dtype), 2);
        if (!rc) rc = av_copy_(dst, st);
        av_release(c);
        av_release(st);
        return rc;
    }
    size_t nbytes = (size_t)av_numel(src) * av_dtype_size(src->dtype);
    if (to_host) {
        av_tensor *c = av_contiguous(src); /* on the GPU */
        if (!c) return -1;
        bool direct = dst->dtype == src->dtype && av_is_contiguous(dst) && dst->ndim == src->ndim &&
                      !memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)src->ndim);
        av_tensor *h = direct ? av_retain(dst) : av_empty(src->ndim, src->shape, src->dtype);
        int rc = h ? be->copy(av_data(h), av_data(c), nbytes, 1) : -1;
        if (!rc && !direct) rc = av_copy_(dst, h);
        av_release(c);
        av_release(h);
        return rc;
    }
    av_tensor *c = av_contiguous(src); /* on the host */
    if (!c) return -1;
    bool direct = dst->dtype == src->dtype && av_is_contiguous(dst) && dst->ndim == src->ndim &&
                  !memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)src->ndim);
    av_tensor *d = direct ? av_retain(dst) : av_empty_on(src->ndim, src->shape, src->dtype, dst->storage->device);
    int rc = d ? be->copy(av_data(d), av_data(c), nbytes, 0) : -1;
    if (!rc && !direct) rc = av_cuda_copy(dst, d);
    av_release(c);
    av_release(d);
    return rc;
#else
    (void)dst;
    (void)src;
    return av_fail("copy: " NO_CUDA_BUILD);
#endif
}

int av_cuda_unsupported(const char *fn) {
    return av_fail("%s: not supported on CUDA tensors (move it to the CPU with :cpu())", fn ? fn : "op");
}

/* ---- pinned host memory and asynchronous copies ------------------------------- */
#ifdef AV_WITH_CUDA
static void *pinned_alloc(size_t nbytes) { return av_cuda_host_alloc_cached(nbytes ? nbytes : 1); }
static void pinned_free(void *p, size_t nbytes) { av_cuda_host_free_cached(p, nbytes ? nbytes : 1); }
static int pinned_copy(void *dst, const void *src, size_t nbytes, int kind) {
    (void)kind;
    memcpy(dst, src, nbytes);
    return 0;
}
static void pinned_sync(void) {}
/* a CPU backend in every respect but where its bytes come from */
static const av_backend pinned_backend = {"cpu (pinned)", AV_CPU, pinned_alloc, pinned_free, pinned_copy, pinned_sync};
#endif

bool av_is_pinned(const av_tensor *t) {
#ifdef AV_WITH_CUDA
    return t && t->storage->backend == &pinned_backend;
#else
    (void)t;
    return false;
#endif
}

av_tensor *av_empty_pinned(int ndim, const int64_t *shape, av_dtype dt) {
#ifdef AV_WITH_CUDA
    if (av_cuda_is_available() && (unsigned)dt < AV_NDTYPES && ndim >= 0 && ndim <= AV_MAX_DIMS) {
        int64_t n = 1;
        bool ok = true;
        for (int i = 0; i < ndim; i++) {
            if (shape[i] < 0 || (shape[i] && n > INT64_MAX / 16 / shape[i])) ok = false;
            else n *= shape[i];
        }
        av_storage *s = ok ? malloc(sizeof *s) : NULL;
        if (s) {
            s->nbytes = (size_t)n * av_dtype_size(dt);
            s->data = pinned_alloc(s->nbytes);
            if (s->data) {
                s->refcount = 1;
                s->device = (av_device){AV_CPU, 0};
                s->backend = &pinned_backend;
                s->external = false;
                s->version = 0;
                av_tensor *t = av_tensor_new(s, dt, ndim, shape, 0);
                av_storage_release(s);
                return t;
            }
            free(s);
        }
    }
#endif
    return av_empty(ndim, shape, dt); /* pinning is only an optimisation */
}

av_tensor *av_to_device_async(const av_tensor *t, av_device d) {
#ifdef AV_WITH_CUDA
    if (t && d.type == AV_CUDA && av_is_pinned(t) && av_is_contiguous(t) && !check_cuda_device("to", d)) {
        av_tensor *out = av_empty_on(t->ndim, t->shape, t->dtype, d);
        if (!out) return NULL;
        if (av_cuda_copy_h2d_async(av_data(out), av_data(t), (size_t)av_numel(t) * av_dtype_size(t->dtype),
                                   (av_tensor *)t)) {
            av_release(out);
            return NULL;
        }
        return av_ag_finish(out, av_ag_to_device(out, t));
    }
#endif
    return av_to_device(t, d);
}

#ifndef AV_WITH_CUDA
size_t av_cuda_live_bytes(void) { return 0; }
void av_cuda_set_oom_hook(void (*fn)(void)) { (void)fn; }
#endif

/* ---- cuDNN benchmark flag: read by the convolution code -------------------- */
static bool g_cudnn_benchmark = false;
void av_cudnn_set_benchmark(bool on) { g_cudnn_benchmark = on; }
bool av_cudnn_get_benchmark(void) { return g_cudnn_benchmark; }

#ifndef AV_WITH_CUDA
/* ---- a build without CUDA: nothing is available, everything says why ------- */
bool av_cuda_is_available(void) { return false; }
int av_cuda_set_device(int index) { (void)index; return av_fail("set_device: " NO_CUDA_BUILD); }
int av_cuda_current_device(void) { return 0; }
int av_cuda_synchronize(void) { return av_fail("synchronize: " NO_CUDA_BUILD); }
int av_cuda_memory_stats_get(av_cuda_memory_stats *out) {
    memset(out, 0, sizeof *out);
    return av_fail("memory_stats: " NO_CUDA_BUILD);
}
void av_cuda_reset_peak(void) {}
void av_cuda_empty_cache(void) {}
void *av_cuda_host_alloc(size_t nbytes) {
    (void)nbytes;
    av_fail("host_alloc: " NO_CUDA_BUILD);
    return NULL;
}
void av_cuda_host_free(void *p) { (void)p; }
#endif
