/* Storages, tensor headers, creation and element access. */
#include <pthread.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "aviary/tensor.h"
#include "aviary/backend.h"
#include "aviary/ops.h"
#ifdef AV_WITH_CUDA
#include "../ops/cuda/cuda_ops.h"
#endif

/* ---- CPU backend --------------------------------------------------------- */
static atomic_size_t live_bytes;

/* Large blocks are kept for reuse: a fresh 64 MB block costs ~16K page faults
 * (tens of ms) on first touch, and training allocates the same sizes every
 * step. Exact-size matches only; bounded; off under AddressSanitizer so that
 * use-after-free is still caught. */
#define CACHE_MIN ((size_t)128 << 10)
#define CACHE_SLOTS 64
#define HUGE_MIN ((size_t)8 << 20)
static struct { void *p; size_t n; } cache[CACHE_SLOTS];
static size_t cache_bytes, cache_limit = (size_t)-1;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ENABLED 0
#else
#define CACHE_ENABLED 1
#endif

static size_t cache_cap(void) {
    if (cache_limit == (size_t)-1) {
        const char *e = getenv("AVIARY_CPU_CACHE_MB");
        cache_limit = (e ? (size_t)atol(e) : 512) << 20;
    }
    return cache_limit;
}

static void *cache_take(size_t n) {
    void *p = NULL;
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].p && cache[i].n == n) {
            p = cache[i].p;
            cache[i].p = NULL;
            cache_bytes -= n;
            break;
        }
    pthread_mutex_unlock(&cache_lock);
    return p;
}

static bool cache_put(void *p, size_t n) {
    bool kept = false;
    pthread_mutex_lock(&cache_lock);
    if (cache_bytes + n <= cache_cap())
        for (int i = 0; i < CACHE_SLOTS; i++)
            if (!cache[i].p) {
                cache[i].p = p;
                cache[i].n = n;
                cache_bytes += n;
                kept = true;
                break;
            }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

void av_cpu_cache_clear(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(cache[i].p);
        cache[i].p = NULL;
    }
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
}

static void *cpu_alloc(size_t nbytes) {
    /* 64-byte alignment: full AVX-512 vectors and no false sharing between threads */
    size_t n = (nbytes + 63) & ~(size_t)63;
    void *p = (CACHE_ENABLED && n >= CACHE_MIN) ? cache_take(n) : NULL;
    if (!p && n >= HUGE_MIN) {
        /* big blocks on 2 MB boundaries, offered to the kernel as transparent
         * huge pages: far fewer TLB misses and page faults when streaming */
        p = aligned_alloc((size_t)2 << 20, (n + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1));
        if (p) madvise(p, n, MADV_HUGEPAGE);
    }
    if (!p) p = aligned_alloc(64, n ? n : 64);
    if (p) atomic_fetch_add(&live_bytes, nbytes);
    return p;
}
static void cpu_free(void *p, size_t nbytes) {
    if (!p) return;
    atomic_fetch_sub(&live_bytes, nbytes);
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (CACHE_ENABLED && n >= CACHE_MIN && cache_put(p, n)) return;
    free(p);
}
static int cpu_copy(void *dst, const void *src, size_t nbytes, int kind) {
    (void)kind;
    memcpy(dst, src, nbytes);
    return 0;
}
static void cpu_sync(void) {}

const av_backend av_cpu_backend = {"cpu", AV_CPU, cpu_alloc, cpu_free, cpu_copy, cpu_sync};

const av_backend *av_backend_get(av_device_type type) {
#ifdef AV_WITH_CUDA
    if (type == AV_CUDA) return &av_cuda_backend;
#endif
    return type == AV_CPU ? &av_cpu_backend : NULL;
}

size_t av_live_bytes(void) { return atomic_load(&live_bytes); }

av_storage *av_storage_new(size_t nbytes, av_device device) {
    const av_backend *be = av_backend_get(device.type);
    if (!be) { av_fail("device type %d is not available in this build", device.type); return NULL; }
    av_storage *s = malloc(sizeof *s);
    if (!s) { av_fail("out of memory"); return NULL; }
#ifdef AV_WITH_CUDA
    if (device.type == AV_CUDA && av_cuda_device_guard(device.index)) { free(s); return NULL; }
#endif
    s->data = be->alloc(nbytes);
    if (!s->data) {
        free(s);
        /* the CUDA allocator explains itself (no device, out of GPU memory) */
        if (device.type == AV_CPU) av_fail("out of memory allocating %zu bytes on %s", nbytes, be->name);
        return NULL;
    }
    s->nbytes = nbytes;
    s->refcount = 1;
    s->device = device;
    s->backend = be;
    s->external = false;
    s->version = 0;
    return s;
}

void av_storage_release(av_storage *s) {
    if (!s) return;
    if (__atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (!s->external) s->backend->free(s->data, s->nbytes);
    free(s);
}

/* ---- tensor headers -------------------------------------------------------- */
void av_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    /* unsigned: views may describe more elements than fit in memory (expand) */
    uint64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = (int64_t)s;
        s *= shape[i] > 0 ? (uint64_t)shape[i] : 1;
    }
}

av_tensor *av_tensor_new(av_storage *s, av_dtype dt, int ndim, const int64_t *shape, int64_t offset) {
    av_tensor *t = calloc(1, sizeof *t);
    if (!t) { av_fail("out of memory"); return NULL; }
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * ndim);
    av_contiguous_strides(ndim, shape, t->stride);
    t->offset = offset;
    t->storage = s;
    __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED);
    t->refcount = 1;
    return t;
}

av_tensor *av_retain(av_tensor *t) {
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

/* step 2 installs the autograd cleanup here */
void (*av_autograd_meta_free)(struct av_autograd_meta *) = NULL;

void av_release(av_tensor *t) {
    if (!t) return;
    if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (t->ag && av_autograd_meta_free) av_autograd_meta_free(t->ag);
    av_storage_release(t->storage);
    free(t);
}

int64_t av_numel(const av_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool av_is_contiguous(const av_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->shape[i] == 0) return true;
        if (t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

const char *av_shape_str_raw(int ndim, const int64_t *shape, char *buf, size_t n) {
    if (ndim == 0) { snprintf(buf, n, "scalar"); return buf; }
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && used < n; i++)
        used += snprintf(buf + used, n - used, i ? "x%lld" : "%lld", (long long)shape[i]);
    return buf;
}
const char *av_shape_str(const av_tensor *t, char *buf, size_t n) {
    return av_shape_str_raw(t->ndim, t->shape, buf, n);
}

int av_wrap_dim(int dim, int ndim, const char *fn) {
    int n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n)
        return av_fail("%s: dimension %d out of range for a %d-d tensor", fn ? fn : "dim", dim, ndim);
    return dim < 0 ? dim + n : dim;
}

/* ---- creation -------------------------------------------------------------- */
static int check_shape(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > AV_MAX_DIMS) return av_fail("at most %d dimensions are supported, got %d", AV_MAX_DIMS, ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return av_fail("negative size %lld in dimension %d", (long long)shape[i], i + 1);
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) return av_fail("shape too large");
        n *= shape[i];
    }
    return 0;
}

av_tensor *av_empty(int ndim, const int64_t *shape, av_dtype dt) {
    if ((unsigned)dt >= AV_NDTYPES) { av_fail("unknown dtype %d", dt); return NULL; }
    if (check_shape(ndim, shape)) return NULL;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    av_storage *s = av_storage_new((size_t)n * av_dtype_size(dt), (av_device){AV_CPU, 0});
    if (!s) return NULL;
    av_tensor *t = av_tensor_new(s, dt, ndim, shape, 0);
    av_storage_release(s);
    return t;
}

av_tensor *av_empty_like(const av_tensor *t) { return av_empty(t->ndim, t->shape, t->dtype); }

av_tensor *av_zeros(int ndim, const int64_t *shape, av_dtype dt) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

av_tensor *av_full(int ndim, const int64_t *shape, av_dtype dt, double value) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (t && av_fill_(t, value)) { av_release(t); return NULL; }
    return t;
}

av_tensor *av_scalar_tensor(double value, av_dtype dt) { return av_full(0, NULL, dt, value); }

av_tensor *av_from_data(int ndim, const int64_t *shape, av_dtype dt, const void *data) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (t && t->storage->nbytes) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

/* ---- element access ---------------------------------------------------------- */
float av_half_to_float(uint16_t h);
uint16_t av_float_to_half(float f);
static inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

double av_load_elem(av_dtype dt, const void *p) {
    switch (dt) {
    case AV_F32: return *(const float *)p;
    case AV_F64: return *(const double *)p;
    case AV_I64: return (double)*(const int64_t *)p;
    case AV_I32: return *(const int32_t *)p;
    case AV_U8: return *(const uint8_t *)p;
    case AV_F16: return av_half_to_float(*(const uint16_t *)p);
    case AV_BF16: return bf16_to_float(*(const uint16_t *)p);
    default: return 0;
    }
}

/* float -> integer conversion saturates instead of invoking undefined behaviour */
static int64_t to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)v;
}
void av_store_elem(av_dtype dt, void *p, double v) {
    switch (dt) {
    case AV_F32: *(float *)p = (float)v; break;
    case AV_F64: *(double *)p = v; break;
    case AV_I64: *(int64_t *)p = to_i64(v); break;
    case AV_I32: *(int32_t *)p = (int32_t)to_i64(v); break;
    case AV_U8: *(uint8_t *)p = (uint8_t)to_i64(v); break;
    case AV_F16: *(uint16_t *)p = av_float_to_half((float)v); break;
    case AV_BF16: *(uint16_t *)p = float_to_bf16((float)v); break;
    default: break;
    }
}

static void *elem_ptr(const av_tensor *t, const int64_t *idx) {
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
    return (char *)t->storage->data + off * (int64_t)av_dtype_size(t->dtype);
}

/* a device element travels through the backend's copy: one round trip each,
 * fine for printing and item(), never for loops over a tensor */
double av_get(const av_tensor *t, const int64_t *idx) {
    if (t->storage->device.type != AV_CPU) {
        uint64_t buf = 0;
        if (t->storage->backend->copy(&buf, elem_ptr(t, idx), av_dtype_size(t->dtype), 1)) return NAN;
        return av_load_elem(t->dtype, &buf);
    }
    return av_load_elem(t->dtype, elem_ptr(t, idx));
}
void av_set(av_tensor *t, const int64_t *idx, double v) {
    if (t->storage->device.type != AV_CPU) {
        uint64_t buf = 0;
        av_store_elem(t->dtype, &buf, v);
        t->storage->backend->copy(elem_ptr(t, idx), &buf, av_dtype_size(t->dtype), 0);
        return;
    }
    av_store_elem(t->dtype, elem_ptr(t, idx), v);
}

int av_item(const av_tensor *t, double *out) {
    if (av_numel(t) != 1) {
        char b[64];
        return av_fail("a tensor with one element is required, got size %s", av_shape_str(t, b, sizeof b));
    }
    int64_t idx[AV_MAX_DIMS] = {0};
    if (t->storage->device.type != AV_CPU) {
        uint64_t buf = 0;
        if (t->storage->backend->copy(&buf, elem_ptr(t, idx), av_dtype_size(t->dtype), 1)) return -1;
        *out = av_load_elem(t->dtype, &buf);
        return 0;
    }
    *out = av_get(t, idx);
    return 0;
}

/* IEEE binary16 conversions (round to nearest even), no hardware dependence */
float av_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000 | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t av_float_to_half(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;
    if (a >= 0x477ff000) return sign | 0x7c00; /* overflow to inf */
    if (a < 0x38800000) { /* subnormal or zero */
        if (a < 0x33000000) return sign;
        uint32_t man = (a & 0x7fffff) | 0x800000;
        /* value = man * 2^(E-150), half subnormal unit is 2^-24 */
        uint32_t full = 126 - (a >> 23);
        uint32_t r = man >> full;
        uint32_t rem = man & ((1u << full) - 1), half = 1u << (full - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = ((a - 0x38000000) >> 13);
    uint32_t rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}
