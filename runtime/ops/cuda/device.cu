// CUDA device discovery. The CUDA backend proper (cuDNN, cuBLAS, kernels)
// builds on this; a machine without a GPU or driver reports 0 devices.
#include <cuda_runtime.h>

extern "C" int av_cuda_device_count_impl(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky error so later calls are unaffected
        return 0;
    }
    return n;
}
