// The caching allocator, the per-device stream and workspace, and the CUDA
// backend table.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, while a training step frees and reallocates the same sizes
// every iteration; so freed blocks are kept, per device, in a free list
// ordered by size and handed out again. Every op runs on one stream per
// device, so a block freed by one op and reused by the next is ordered by the
// stream itself, without events. Sizes are rounded (512 B below 1 MiB, 2 MiB
// above) so that nearby requests share blocks; a cached block is reused for a
// request when it wastes at most a quarter of itself (or 2 MiB).
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <string.h>
#include "cuda_common.h"
#include "cuda_ops.h"

#define AV_CUDA_MAX_DEVICES 16
static const size_t SMALL_LIMIT = (size_t)1 << 20, SMALL_ROUND = 512, LARGE_ROUND = (size_t)2 << 20;

namespace {
struct device_pool {
    std::multimap<size_t, void *> free_blocks; // size -> block
    std::unordered_map<void *, size_t> live;   // block -> its rounded size
    size_t allocated = 0, cached = 0, peak = 0;
    cudaStream_t stream = nullptr;
    void *workspace = nullptr;
    size_t workspace_size = 0;
};
std::mutex g_lock;
device_pool g_pools[AV_CUDA_MAX_DEVICES];
} // namespace

static int current_index(void) {
    int d = av_cuda_current_device();
    return d >= 0 && d < AV_CUDA_MAX_DEVICES ? d : 0;
}

static size_t round_size(size_t n) {
    if (n == 0) n = 1;
    if (n < SMALL_LIMIT) return (n + SMALL_ROUND - 1) & ~(SMALL_ROUND - 1);
    return (n + LARGE_ROUND - 1) & ~(LARGE_ROUND - 1);
}

// returns every cached block of the pool to the driver (lock held)
static void release_cached(device_pool &p) {
    for (auto &kv : p.free_blocks)
        if (cudaFree(kv.second) != cudaSuccess) cudaGetLastError();
    p.free_blocks.clear();
    p.cached = 0;
}

extern "C" cudaStream_t av_cuda_stream(void) {
    device_pool &p = g_pools[current_index()];
    if (!p.stream) {
        // a blocking stream: it stays ordered with the legacy default stream
        // that plain cudaMemcpy and libraries without a stream set use
        if (cudaStreamCreateWithFlags(&p.stream, cudaStreamDefault) != cudaSuccess) {
            cudaGetLastError();
            p.stream = nullptr; // 0 is the legacy stream: still correct, only serialised
        }
    }
    return p.stream;
}

static void (*g_oom_hook)(void) = nullptr;
extern "C" void av_cuda_set_oom_hook(void (*fn)(void)) { g_oom_hook = fn; }

extern "C" void *av_cuda_malloc(size_t nbytes) {
    const char *why = av_cuda_unavailable_reason();
    if (why[0]) {
        av_fail("%s", why);
        return NULL;
    }
    int dev = current_index();
    size_t fr = 0, tot = 0, in_use = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        {
            std::lock_guard<std::mutex> guard(g_lock);
            device_pool &p = g_pools[dev];
            size_t n = round_size(nbytes);
            void *ptr = nullptr;
            auto it = p.free_blocks.lower_bound(n);
            if (it != p.free_blocks.end()) {
                size_t waste = it->first - n;
                if (n < SMALL_LIMIT ? it->first == n : (waste <= LARGE_ROUND || waste <= it->first / 4)) {
                    ptr = it->second;
                    n = it->first;
                    p.free_blocks.erase(it);
                    p.cached -= n;
                }
            }
            cudaError_t e = cudaSuccess;
            if (!ptr) {
                e = cudaMalloc(&ptr, n);
                if (e == cudaErrorMemoryAllocation) {
                    cudaGetLastError();
                    release_cached(p);
                    e = cudaMalloc(&ptr, n);
                }
            }
            if (e == cudaSuccess) {
                p.live[ptr] = n;
                p.allocated += n;
                if (p.allocated > p.peak) p.peak = p.allocated;
                return ptr;
            }
            cudaGetLastError();
            if (e != cudaErrorMemoryAllocation) {
                av_fail("cudaMalloc(%zu bytes) on cuda:%d: %s (%s)", n, dev, cudaGetErrorName(e), cudaGetErrorString(e));
                return NULL;
            }
            if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) cudaGetLastError();
            in_use = p.allocated;
        }
        // Still short with the cache emptied: tensors that are garbage but not yet
        // collected by the host language may hold the memory. The hook (a full
        // Lua collection) runs without the lock, since it frees blocks itself.
        if (attempt > 0 || !g_oom_hook) break;
        g_oom_hook();
    }
    av_fail("out of GPU memory: requested %zu bytes, %zu free of %zu on cuda:%d (%zu in use by tensors); "
            "use a smaller batch size or image size, or release tensors you no longer need",
            nbytes, fr, tot, dev, in_use);
    return NULL;
}

extern "C" void av_cuda_free(void *ptr, size_t nbytes) {
    (void)nbytes;
    if (!ptr) return;
    std::lock_guard<std::mutex> guard(g_lock);
    // the block may belong to any device: look it up where it was made
    for (int d = 0; d < AV_CUDA_MAX_DEVICES; d++) {
        device_pool &p = g_pools[d];
        auto it = p.live.find(ptr);
        if (it == p.live.end()) continue;
        size_t n = it->second;
        p.live.erase(it);
        p.allocated -= n;
        p.free_blocks.emplace(n, ptr);
        p.cached += n;
        return;
    }
    if (cudaFree(ptr) != cudaSuccess) cudaGetLastError(); // not ours: give it back directly
}

extern "C" void *av_cuda_workspace(size_t nbytes) {
    device_pool &p = g_pools[current_index()];
    if (nbytes <= p.workspace_size && p.workspace) return p.workspace;
    // the old buffer goes back to the cache: later work on the stream is ordered after its users
    if (p.workspace) av_cuda_free(p.workspace, p.workspace_size);
    p.workspace = av_cuda_malloc(nbytes);
    p.workspace_size = p.workspace ? nbytes : 0;
    return p.workspace;
}

extern "C" int av_cuda_memory_stats_get(av_cuda_memory_stats *out) {
    memset(out, 0, sizeof *out);
    const char *why = av_cuda_unavailable_reason();
    if (why[0]) return av_fail("memory_stats: %s", why);
    {
        std::lock_guard<std::mutex> guard(g_lock);
        device_pool &p = g_pools[current_index()];
        out->allocated = p.allocated;
        out->reserved = p.allocated + p.cached;
        out->peak_allocated = p.peak;
    }
    AV_CUDA_CHECK(cudaMemGetInfo(&out->free_device, &out->total_device));
    return 0;
}

extern "C" void av_cuda_reset_peak(void) {
    std::lock_guard<std::mutex> guard(g_lock);
    device_pool &p = g_pools[current_index()];
    p.peak = p.allocated;
}

static void release_host_cache(void);

extern "C" void av_cuda_empty_cache(void) {
    if (av_cuda_unavailable_reason()[0]) return;
    av_cuda_reap_async(true);
    release_host_cache();
    std::lock_guard<std::mutex> guard(g_lock);
    for (int d = 0; d < AV_CUDA_MAX_DEVICES; d++)
        if (!g_pools[d].free_blocks.empty()) release_cached(g_pools[d]);
}

extern "C" size_t av_cuda_live_bytes(void) {
    std::lock_guard<std::mutex> guard(g_lock);
    size_t n = 0;
    for (int d = 0; d < AV_CUDA_MAX_DEVICES; d++) n += g_pools[d].allocated;
    return n;
}

// ---- pinned host blocks ---------------------------------------------------------
// cudaHostAlloc pins pages one by one (milliseconds for a batch), so freed
// blocks are kept by exact size: a loader asks for the same sizes every batch
static std::multimap<size_t, void *> g_host_free;
static size_t g_host_cached = 0;
static const size_t HOST_CACHE_LIMIT = (size_t)1 << 30;

extern "C" void *av_cuda_host_alloc_cached(size_t nbytes) {
    {
        std::lock_guard<std::mutex> guard(g_lock);
        auto it = g_host_free.find(nbytes);
        if (it != g_host_free.end()) {
            void *p = it->second;
            g_host_free.erase(it);
            g_host_cached -= nbytes;
            return p;
        }
    }
    return av_cuda_host_alloc(nbytes);
}

extern "C" void av_cuda_host_free_cached(void *p, size_t nbytes) {
    if (!p) return;
    {
        std::lock_guard<std::mutex> guard(g_lock);
        if (g_host_cached + nbytes <= HOST_CACHE_LIMIT) {
            g_host_free.emplace(nbytes, p);
            g_host_cached += nbytes;
            return;
        }
    }
    av_cuda_host_free(p);
}

static void release_host_cache(void) {
    std::lock_guard<std::mutex> guard(g_lock);
    for (auto &kv : g_host_free) av_cuda_host_free(kv.second);
    g_host_free.clear();
    g_host_cached = 0;
}

// ---- asynchronous host->device copies -----------------------------------------------
namespace {
struct pending_copy {
    cudaEvent_t done;
    av_tensor *keep;
};
std::mutex g_pending_lock;
std::vector<pending_copy> g_pending;
} // namespace

extern "C" void av_cuda_reap_async(bool wait) {
    std::vector<av_tensor *> finished;
    {
        std::lock_guard<std::mutex> guard(g_pending_lock);
        size_t k = 0;
        for (size_t i = 0; i < g_pending.size(); i++) {
            pending_copy &pc = g_pending[i];
            cudaError_t e = wait ? cudaEventSynchronize(pc.done) : cudaEventQuery(pc.done);
            if (e == cudaErrorNotReady) {
                g_pending[k++] = pc;
                continue;
            }
            if (e != cudaSuccess) cudaGetLastError();
            cudaEventDestroy(pc.done);
            finished.push_back(pc.keep);
        }
        g_pending.resize(k);
    }
    for (av_tensor *t : finished) av_release(t); // outside the lock: it may free a pinned block
}

extern "C" int av_cuda_copy_h2d_async(void *dst, const void *src, size_t nbytes, av_tensor *keep) {
    av_cuda_reap_async(false);
    if (nbytes == 0) return 0;
    cudaStream_t s = av_cuda_stream();
    AV_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
    cudaEvent_t ev;
    AV_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, s);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaEventDestroy(ev);
        AV_CUDA_CHECK(cudaStreamSynchronize(s)); // cannot track it: wait instead
        return 0;
    }
    std::lock_guard<std::mutex> guard(g_pending_lock);
    g_pending.push_back({ev, av_retain(keep)});
    return 0;
}

// ---- the backend table ------------------------------------------------------
static void *be_alloc(size_t nbytes) { return av_cuda_malloc(nbytes); }
static void be_free(void *p, size_t nbytes) { av_cuda_free(p, nbytes); }

static int be_copy(void *dst, const void *src, size_t nbytes, int kind) {
    if (nbytes == 0) return 0;
    static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                            cudaMemcpyDeviceToDevice};
    if (kind < 0 || kind > 2) return av_fail("copy: bad direction %d", kind);
    cudaStream_t s = av_cuda_stream();
    AV_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kinds[kind], s));
    // host memory handed in may be pageable and reused right after: wait for
    // device->host copies (the caller reads the result) and host->device ones
    // (the caller may free the source)
    if (kind != 2) AV_CUDA_CHECK(cudaStreamSynchronize(s));
    return 0;
}

static void be_sync(void) {
    if (cudaStreamSynchronize(av_cuda_stream()) != cudaSuccess) cudaGetLastError();
}

extern "C" const av_backend av_cuda_backend = {"cuda", AV_CUDA, be_alloc, be_free, be_copy, be_sync};
