/* Fused optimizer updates: one pass over a parameter, its gradient and its
 * state, with PyTorch 1.13's arithmetic in PyTorch's order (torch.optim.SGD,
 * foreach=False). The Lua optimizers call these when every tensor is a
 * contiguous float32/float64 CPU tensor, and fall back to tensor ops
 * otherwise. */
#include <stdbool.h>
#include "aviary/optim.h"
#include "aviary/autograd.h"
#include "aviary/backend.h"

static int same_layout(const av_tensor *p, const av_tensor *q, const char *what) {
    if (!q) return av_fail("sgd_step: %s is missing", what);
    if (q->dtype != p->dtype || av_numel(q) != av_numel(p) || !av_is_contiguous(q))
        return av_fail("sgd_step: %s must be a contiguous %s tensor of %lld elements", what,
                       av_dtype_name(p->dtype), (long long)av_numel(p));
    return 0;
}

#define SGD_LOOP(T)                                                                         \
    do {                                                                                    \
        T *w = (T *)av_data(p);                                                             \
        const T *g = (const T *)av_data(grad);                                              \
        T *b = buf ? (T *)av_data(buf) : NULL;                                              \
        const T lr = (T)o->lr, wd = (T)o->weight_decay, mom = (T)o->momentum;                \
        const T damp1 = (T)(1.0 - o->dampening);                                            \
        const bool first = o->first, nesterov = o->nesterov, maximize = o->maximize;        \
        _Pragma("omp parallel for if (n > 65536) schedule(static)")                         \
        for (int64_t i = 0; i < n; i++) {                                                   \
            T d = maximize ? -g[i] : g[i];                                                  \
            if (wd != 0) d = d + w[i] * wd;                                                 \
            if (b) {                                                                        \
                T bi = first ? d : b[i] * mom + d * damp1;                                  \
                b[i] = bi;                                                                  \
                d = nesterov ? d + bi * mom : bi;                                           \
            }                                                                               \
            w[i] = w[i] - d * lr;                                                           \
        }                                                                                   \
    } while (0)

int av_sgd_step_(av_tensor *p, const av_tensor *grad, av_tensor *buf, const av_sgd_opts *o) {
    if (!p || !grad || !o) return av_fail("sgd_step: expected a parameter, a gradient and options");
    if (p->dtype != AV_F32 && p->dtype != AV_F64)
        return av_fail("sgd_step: expected a float32 or float64 parameter, got %s", av_dtype_name(p->dtype));
    if (!av_is_contiguous(p)) return av_fail("sgd_step: the parameter must be contiguous");
    if (same_layout(p, grad, "the gradient") < 0) return -1;
    if (o->momentum != 0 && same_layout(p, buf, "the momentum buffer") < 0) return -1;
    if (o->momentum == 0) buf = NULL;
    int64_t n = av_numel(p);
    if (p->dtype == AV_F32) SGD_LOOP(float);
    else SGD_LOOP(double);
    av_bump_version(p);
    if (buf) av_bump_version(buf);
    return 0;
}
