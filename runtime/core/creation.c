/* Ranges and identity matrices. */
#include <math.h>
#include "aviary/tensor.h"
#include "aviary/backend.h"
#include "../ops/cpu/iter.h"

av_tensor *av_arange(double start, double end, double step, av_dtype dt) {
    if (step == 0 || isnan(step)) { av_fail("arange: step must be nonzero"); return NULL; }
    if (!isfinite(start) || !isfinite(end)) { av_fail("arange: start and end must be finite"); return NULL; }
    if ((end - start) / step < 0) {
        av_fail("arange: the step %g goes away from end (start %g, end %g)", step, start, end);
        return NULL;
    }
    int64_t n = (int64_t)ceil((end - start) / step);
    av_tensor *t = av_empty(1, &n, dt);
    if (!t) return NULL;
    char *p = av_data(t);
    size_t es = av_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) av_store_elem(dt, p + i * es, start + (double)i * step);
    return t;
}

av_tensor *av_linspace(double start, double end, int64_t steps, av_dtype dt) {
    if (steps < 0) { av_fail("linspace: number of steps must be non-negative, got %lld", (long long)steps); return NULL; }
    av_tensor *t = av_empty(1, &steps, dt);
    if (!t) return NULL;
    char *p = av_data(t);
    size_t es = av_dtype_size(dt);
    double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
    /* fill from both ends so the last value is exactly `end`, as PyTorch does */
    for (int64_t i = 0; i < steps; i++) {
        double v = steps == 1 ? start : i < steps / 2 ? start + step * (double)i : end - step * (double)(steps - 1 - i);
        av_store_elem(dt, p + i * es, v);
    }
    return t;
}

av_tensor *av_eye(int64_t n, int64_t m, av_dtype dt) {
    if (m < 0) m = n;
    int64_t shape[2] = {n, m};
    av_tensor *t = av_zeros(2, shape, dt);
    if (!t) return NULL;
    char *p = av_data(t);
    size_t es = av_dtype_size(dt);
    for (int64_t i = 0; i < n && i < m; i++) av_store_elem(dt, p + (i * m + i) * es, 1);
    return t;
}
