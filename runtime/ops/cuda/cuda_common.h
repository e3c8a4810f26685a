// Shared by every .cu file of the CUDA backend (never included by .c files).
// One error check that names the failing call; the current stream; the
// caching allocator; launch helpers.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "aviary/tensor.h"
#include "aviary/cuda.h"

// returns -1 from the enclosing function with "what: cudaErrorX (message) at file:line"
#define AV_CUDA_CHECK(call)                                                                  \
    do {                                                                                     \
        cudaError_t av_err_ = (call);                                                        \
        if (av_err_ != cudaSuccess) {                                                        \
            cudaGetLastError();                                                              \
            return av_fail("%s: %s (%s) at %s:%d", #call, cudaGetErrorName(av_err_),         \
                           cudaGetErrorString(av_err_), __FILE__, __LINE__);                 \
        }                                                                                    \
    } while (0)
// the same for functions that return a pointer (NULL on error)
#define AV_CUDA_CHECK_NULL(call)                                                             \
    do {                                                                                     \
        cudaError_t av_err_ = (call);                                                        \
        if (av_err_ != cudaSuccess) {                                                        \
            cudaGetLastError();                                                              \
            av_fail("%s: %s (%s) at %s:%d", #call, cudaGetErrorName(av_err_),                \
                    cudaGetErrorString(av_err_), __FILE__, __LINE__);                        \
            return NULL;                                                                     \
        }                                                                                    \
    } while (0)
// after a kernel launch: true, with "fn: kernel launch failed: reason" set and the error
// cleared, when the launch was refused (asynchronous faults surface later)
static inline bool av_cuda_launch_failed(const char *fn) {
    cudaError_t e = cudaPeekAtLastError();
    if (e == cudaSuccess) return false;
    cudaGetLastError();
    av_fail("%s: kernel launch failed: %s", fn, cudaGetErrorString(e));
    return true;
}
// after a kernel launch: launch-configuration errors (asynchronous faults surface later)
#define AV_CUDA_LAUNCH_CHECK(name) AV_CUDA_CHECK(cudaPeekAtLastError())

extern "C" {
// the stream every op of the current device is queued on (created lazily)
cudaStream_t av_cuda_stream(void);
// caching allocator over cudaMalloc: blocks are rounded up and kept on free for
// reuse; on out-of-memory the cache is released and the call retried once, then
// fails with "out of GPU memory: requested N bytes, F free of T"
void *av_cuda_malloc(size_t nbytes);
void av_cuda_free(void *p, size_t nbytes);
// a scratch buffer that grows (never shrinks) and is reused by cuDNN/cuBLAS calls on the stream
void *av_cuda_workspace(size_t nbytes);
// makes `index` the current device when it is not already (ops call it with their output's device)
int av_cuda_device_guard(int index);
}

static inline unsigned av_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 32 ? 65535 * 32 : (b < 1 ? 1 : b));
}
