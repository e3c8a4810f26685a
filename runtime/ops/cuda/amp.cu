// GradScaler's unscale on CUDA: every gradient of a list multiplied by
// 1/scale in one launch per LIST tensors, with a device flag raised by any
// inf or NaN seen before scaling. The flag comes back with one small copy
// (a synchronisation), since the optimizer step that follows is skipped or
// not on its value, as torch.cuda.amp.GradScaler decides on the host too.
#include <math.h>
#include <string.h>
#include "cuda_lib.h"
#include "aviary/autograd.h"

#define LIST 64

namespace {
template <typename T> struct grad_list {
    T *g[LIST];
    int64_t n[LIST];
};
} // namespace

template <typename T> __global__ void unscale_kernel(grad_list<T> L, float inv, double inv_d, int *found) {
    typedef typename av_acc<T>::type A;
    const int t = blockIdx.y;
    T *g = L.g[t];
    bool bad = false;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < L.n[t]; i += (int64_t)gridDim.x * blockDim.x) {
        A v = av_load(g + i);
        if (!isfinite(v)) bad = true;
        av_store(g + i, sizeof(A) == sizeof(double) ? (A)(v * inv_d) : (A)(v * inv));
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) *found = 1;
}

template <typename T> static int unscale_run(int n, av_tensor *const *g, double inv, int *flag) {
    for (int base = 0; base < n; base += LIST) {
        grad_list<T> L;
        memset(&L, 0, sizeof L);
        int cnt = n - base < LIST ? n - base : LIST;
        int64_t maxn = 0;
        for (int i = 0; i < cnt; i++) {
            L.g[i] = (T *)av_data(g[base + i]);
            L.n[i] = av_numel(g[base + i]);
            if (L.n[i] > maxn) maxn = L.n[i];
        }
        if (maxn == 0) continue;
        int64_t nb = (maxn + 1023) / 1024;
        unscale_kernel<T><<<dim3((unsigned)(nb > 1024 ? 1024 : nb), (unsigned)cnt), 256, 0, av_cuda_stream()>>>(
            L, (float)inv, inv, flag);
        AV_CUDA_LAUNCH_CHECK("amp_unscale");
    }
    return 0;
}

extern "C" int av_cuda_unscale(int n, av_tensor *const *g, double inv_scale, bool *found_inf) {
    *found_inf = false;
    if (n == 0) return 0;
    for (int i = 0; i < n; i++) {
        if (!av_is_cuda(g[i]) || av_check_same_device("unscale", g[0], "gradient", g[i], "gradient")) return -1;
        if (!av_cuda_float(g[i]->dtype) || !av_is_contiguous(g[i]))
            return av_fail("unscale: gradients must be contiguous floating point tensors, got a %s one",
                           av_dtype_name(g[i]->dtype));
    }
    int64_t one = 1;
    av_tensor *flag = av_zeros_on(1, &one, AV_I32, av_device_of(g[0]));
    if (!flag) return -1;
    int *fp = (int *)av_data(flag);
    int rc = 0;
    // one launch per dtype present (gradients are normally all float32)
    const av_dtype dts[4] = {AV_F32, AV_F64, AV_F16, AV_BF16};
    av_tensor **sub = (av_tensor **)malloc(sizeof(av_tensor *) * (size_t)n);
    if (!sub) rc = av_fail("unscale: out of memory");
    for (int k = 0; !rc && k < 4; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (g[i]->dtype == dts[k]) sub[m++] = g[i];
        if (!m) continue;
        AV_DISPATCH_FLOAT(dts[k], T, { rc = unscale_run<T>(m, sub, inv_scale, fp); });
    }
    free(sub);
    int host = 0;
    if (!rc) {
        cudaStream_t s = av_cuda_stream();
        cudaError_t e = cudaMemcpyAsync(&host, fp, sizeof host, cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e != cudaSuccess) {
            cudaGetLastError();
            rc = av_fail("unscale: %s", cudaGetErrorString(e));
        }
    }
    av_release(flag);
    if (rc) return rc;
    for (int i = 0; i < n; i++) av_bump_version(g[i]);
    *found_inf = host != 0;
    return 0;
}
