// CUDA runtime control: device discovery, the current device, synchronisation
// and pinned host memory. A machine without a GPU or driver reports 0 devices
// and every call that needs one says why.
#include <stdio.h>
#include <string.h>
#include "cuda_common.h"
#include "cuda_ops.h"

static int g_count = -1;          // devices found by the first probe
static char g_reason[256];        // why there is none ("" when there is one)
static int g_current = 0;         // the device ops of this process run on

static void probe(void) {
    if (g_count >= 0) return;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); // clear the sticky error so later calls are unaffected
        snprintf(g_reason, sizeof g_reason, "no CUDA device is available (cudaGetDeviceCount: %s: %s)",
                 cudaGetErrorName(e), cudaGetErrorString(e));
        n = 0;
    } else if (n == 0) {
        snprintf(g_reason, sizeof g_reason, "no CUDA device is available (cudaGetDeviceCount found 0 devices)");
    }
    g_count = n;
}

extern "C" int av_cuda_device_count_impl(void) {
    probe();
    return g_count;
}

extern "C" const char *av_cuda_unavailable_reason(void) {
    probe();
    return g_reason;
}

extern "C" bool av_cuda_is_available(void) { return av_cuda_device_count_impl() > 0; }

extern "C" int av_cuda_device_guard(int index) {
    if (index == g_current) return 0;
    AV_CUDA_CHECK(cudaSetDevice(index));
    g_current = index;
    return 0;
}

extern "C" int av_cuda_set_device(int index) {
    probe();
    if (g_count == 0) return av_fail("set_device: %s", g_reason);
    if (index < 0 || index >= g_count)
        return av_fail("set_device: no device cuda:%d on this machine (%d CUDA device%s)", index, g_count,
                       g_count == 1 ? "" : "s");
    AV_CUDA_CHECK(cudaSetDevice(index));
    g_current = index;
    return 0;
}

extern "C" int av_cuda_current_device(void) { return g_current; }

extern "C" int av_cuda_synchronize(void) {
    probe();
    if (g_count == 0) return av_fail("synchronize: %s", g_reason);
    AV_CUDA_CHECK(cudaStreamSynchronize(av_cuda_stream()));
    AV_CUDA_CHECK(cudaDeviceSynchronize());
    av_cuda_reap_async(false);
    return 0;
}

extern "C" void *av_cuda_host_alloc(size_t nbytes) {
    probe();
    if (g_count == 0) {
        av_fail("host_alloc: %s", g_reason);
        return NULL;
    }
    void *p = NULL;
    // portable: the pinned pages are usable by copies to every device
    AV_CUDA_CHECK_NULL(cudaHostAlloc(&p, nbytes ? nbytes : 1, cudaHostAllocPortable));
    return p;
}

extern "C" void av_cuda_host_free(void *p) {
    if (p && cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
}
