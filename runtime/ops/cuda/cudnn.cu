// cuDNN and cuBLAS handles: one of each per device, created on first use and
// bound to the device's stream, as cudnn.torch keeps them. The first cuDNN
// handle checks that the library loaded at run time has the major version
// the code was compiled against: cuDNN's API and its sub-libraries change
// between majors, and a mismatch otherwise surfaces as an obscure status
// from the first convolution.
#include <mutex>
#include "cuda_lib.h"

#define MAX_DEVICES 16

static cudnnHandle_t g_cudnn[MAX_DEVICES];
static cublasHandle_t g_cublas[MAX_DEVICES];
static std::mutex g_lock;
static bool g_allow_tf32 = false;

extern "C" void av_cuda_set_allow_tf32(bool on) { g_allow_tf32 = on; }
extern "C" bool av_cuda_get_allow_tf32(void) { return g_allow_tf32; }

extern "C" long av_cudnn_version(void) {
    if (av_cuda_device_count() <= 0) return 0;
    return (long)cudnnGetVersion();
}

static int device_slot(void) {
    int d = av_cuda_current_device();
    if (d < 0 || d >= MAX_DEVICES) {
        av_fail("cuda: device index %d is out of range for the library handles", d);
        return -1;
    }
    return d;
}

static int version_check(void) {
    size_t rt = cudnnGetVersion();
    // cuDNN 9 encodes major*10000 + minor*100 + patch
    size_t major = rt >= 10000 ? rt / 10000 : rt / 1000;
    if ((long)major != CUDNN_MAJOR)
        return av_fail("cudnn: this build was compiled against cuDNN %d.%d but the library loaded at run time is "
                       "version %zu (%zu); install cuDNN %d or rebuild with `make CUDA=1` against the installed one",
                       CUDNN_MAJOR, CUDNN_MINOR, major, rt, CUDNN_MAJOR);
    size_t cudart = cudnnGetCudartVersion();
    int ours = 0;
    cudaRuntimeGetVersion(&ours);
    if (cudart / 1000 != (size_t)ours / 1000)
        return av_fail("cudnn: the loaded cuDNN was built for CUDA %zu.%zu but the CUDA runtime is %d.%d", cudart / 1000,
                       (cudart % 1000) / 10, ours / 1000, (ours % 1000) / 10);
    return 0;
}

extern "C" cudnnHandle_t av_cudnn_handle(void) {
    int d = device_slot();
    if (d < 0) return NULL;
    cudaStream_t s = av_cuda_stream();
    std::lock_guard<std::mutex> guard(g_lock);
    if (!g_cudnn[d]) {
        if (version_check()) return NULL;
        cudnnStatus_t st = cudnnCreate(&g_cudnn[d]);
        if (st != CUDNN_STATUS_SUCCESS) {
            g_cudnn[d] = NULL;
            av_fail("cudnnCreate: %s (device %d)", cudnnGetErrorString(st), d);
            return NULL;
        }
    }
    // the stream is re-bound on every use: cheap, and safe if the stream was recreated
    cudnnStatus_t st = cudnnSetStream(g_cudnn[d], s);
    if (st != CUDNN_STATUS_SUCCESS) {
        av_fail("cudnnSetStream: %s", cudnnGetErrorString(st));
        return NULL;
    }
    return g_cudnn[d];
}

extern "C" cublasHandle_t av_cublas_handle(void) {
    int d = device_slot();
    if (d < 0) return NULL;
    cudaStream_t s = av_cuda_stream();
    std::lock_guard<std::mutex> guard(g_lock);
    if (!g_cublas[d]) {
        cublasStatus_t st = cublasCreate(&g_cublas[d]);
        if (st != CUBLAS_STATUS_SUCCESS) {
            g_cublas[d] = NULL;
            av_fail("cublasCreate: %s (device %d)", cublasGetStatusString(st), d);
            return NULL;
        }
    }
    cublasStatus_t st = cublasSetStream(g_cublas[d], s);
    if (st != CUBLAS_STATUS_SUCCESS) {
        av_fail("cublasSetStream: %s", cublasGetStatusString(st));
        return NULL;
    }
    return g_cublas[d];
}

extern "C" int av_cudnn_dtype(av_dtype dt) {
    switch (dt) {
    case AV_F32: return CUDNN_DATA_FLOAT;
    case AV_F64: return CUDNN_DATA_DOUBLE;
    case AV_F16: return CUDNN_DATA_HALF;
    case AV_BF16: return CUDNN_DATA_BFLOAT16;
    default: return -1;
    }
}
