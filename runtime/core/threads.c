/* One thread count for OpenMP kernels and OpenBLAS, so the two never
 * oversubscribe the cores between them. */
#include <stdlib.h>
#include <omp.h>
#include "aviary/tensor.h"

void openblas_set_num_threads(int n);

static int num_threads = 0;

int av_get_num_threads(void) {
    if (num_threads <= 0) {
        const char *e = getenv("AVIARY_NUM_THREADS");
        int n = e ? atoi(e) : 0;
        num_threads = n > 0 ? n : omp_get_max_threads();
        if (num_threads < 1) num_threads = 1;
    }
    return num_threads;
}

void av_set_num_threads(int n) {
    if (n < 1) n = 1;
    num_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
