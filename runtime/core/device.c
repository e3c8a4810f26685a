/* Which devices this build and machine have. */
#include "aviary/tensor.h"

#ifdef AV_WITH_CUDA
int av_cuda_device_count_impl(void);
#endif

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
