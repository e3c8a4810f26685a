/* Fused optimizer updates: one pass over a parameter, its gradient and its
 * state, with PyTorch 1.13's arithmetic in PyTorch's order (torch.optim.SGD,
 * foreach=False). The Lua optimizers call these when every tensor is a
 * contiguous float32/float64 CPU tensor, and fall back to tensor ops
 * otherwise. */
#include <stdbool.h>
#include "aviary/optim.h"
#include "aviary/autograd.h"
#include "aviary/backend.h"
#include "aviary/cuda.h"
#include <math.h>
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_lib.h"
#endif

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
#ifdef AV_WITH_CUDA
    if (av_is_cuda(p) || av_is_cuda(grad) || av_is_cuda(buf)) return av_cuda_sgd_step(1, &p, (av_tensor *const *)&grad, &buf, o);
#endif
    if (av_check_same_device("sgd_step", p, "parameter", grad, "gradient")) return -1;
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

/* ---- lists (one parameter group) ---------------------------------------------------------- */
#ifdef AV_WITH_CUDA
static bool any_cuda(int n, av_tensor *const *p) {
    for (int i = 0; i < n; i++)
        if (av_is_cuda(p[i])) return true;
    return false;
}
#endif

int av_sgd_step_multi_(int n, av_tensor *const *p, av_tensor *const *grad, av_tensor *const *buf,
                       const av_sgd_opts *o) {
    if (n < 0 || (n > 0 && (!p || !grad || (o->momentum != 0 && !buf))))
        return av_fail("sgd_step: expected lists of parameters, gradients and buffers");
#ifdef AV_WITH_CUDA
    if (any_cuda(n, p)) return av_cuda_sgd_step(n, p, grad, buf, o);
#endif
    for (int i = 0; i < n; i++)
        if (av_sgd_step_(p[i], grad[i], buf ? buf[i] : NULL, o)) return -1;
    return 0;
}

/* aviary.optim's Adam arithmetic, in its order */
#define ADAM_LOOP(T)                                                                                    \
    do {                                                                                                \
        T *w = av_data(p), *m = av_data(mt), *v = av_data(vt), *vm = vmt ? av_data(vmt) : NULL;         \
        const T *g = av_data(grad);                                                                     \
        const T beta1 = (T)o->beta1, beta2 = (T)o->beta2, one_b1 = (T)(1 - o->beta1),                   \
                one_b2 = (T)(1 - o->beta2), wd = (T)o->weight_decay, decay = (T)(1 - o->lr * o->weight_decay), \
                eps = (T)o->eps, bc2s = (T)bc2_sqrt, step = (T)(o->lr / bc1);                           \
        _Pragma("omp parallel for if (n > 65536) schedule(static)")                                     \
        for (int64_t i = 0; i < n; i++) {                                                               \
            T gi = o->maximize ? -g[i] : g[i], wi = w[i];                                               \
            if (o->decoupled) wi = wi * decay;                                                          \
            else if (wd != 0) gi = gi + wi * wd;                                                        \
            T mi = m[i] * beta1 + gi * one_b1, vi = v[i] * beta2 + gi * gi * one_b2;                    \
            m[i] = mi;                                                                                  \
            v[i] = vi;                                                                                  \
            T second = vi;                                                                              \
            if (vm) { second = vm[i] > vi ? vm[i] : vi; vm[i] = second; }                               \
            w[i] = wi - mi / ((T)sqrt(second) / bc2s + eps) * step;                                     \
        }                                                                                               \
    } while (0)

static int adam_one(av_tensor *p, const av_tensor *grad, av_tensor *mt, av_tensor *vt, av_tensor *vmt,
                    const av_adam_opts *o) {
    if (p->dtype != AV_F32 && p->dtype != AV_F64)
        return av_fail("adam_step: expected a float32 or float64 parameter, got %s", av_dtype_name(p->dtype));
    if (!av_is_contiguous(p)) return av_fail("adam_step: the parameter must be contiguous");
    if (same_layout(p, grad, "the gradient") || same_layout(p, mt, "exp_avg") || same_layout(p, vt, "exp_avg_sq") ||
        (o->amsgrad && same_layout(p, vmt, "max_exp_avg_sq")))
        return -1;
    if (!o->amsgrad) vmt = NULL;
    int64_t n = av_numel(p);
    double bc1 = 1 - pow(o->beta1, (double)o->step), bc2_sqrt = sqrt(1 - pow(o->beta2, (double)o->step));
    if (p->dtype == AV_F32) ADAM_LOOP(float);
    else ADAM_LOOP(double);
    av_bump_version(p);
    av_bump_version(mt);
    av_bump_version(vt);
    if (vmt) av_bump_version(vmt);
    return 0;
}

int av_adam_step_multi_(int n, av_tensor *const *p, av_tensor *const *grad, av_tensor *const *m,
                        av_tensor *const *v, av_tensor *const *vmax, const av_adam_opts *o) {
    if (n < 0 || (n > 0 && (!p || !grad || !m || !v || (o->amsgrad && !vmax))))
        return av_fail("adam_step: expected lists of parameters, gradients and states");
    if (o->step < 1) return av_fail("adam_step: step must be at least 1, got %lld", (long long)o->step);
#ifdef AV_WITH_CUDA
    if (any_cuda(n, p)) return av_cuda_adam_step(n, p, grad, m, v, vmax, o);
#endif
    for (int i = 0; i < n; i++) {
        if (av_check_same_device("adam_step", p[i], "parameter", grad[i], "gradient")) return -1;
        if (adam_one(p[i], grad[i], m[i], v[i], vmax ? vmax[i] : NULL, o)) return -1;
    }
    return 0;
}

/* ---- GradScaler's unscale --------------------------------------------------------------------- */
#define UNSCALE_LOOP(T)                                                                   \
    do {                                                                                  \
        T *g = av_data(t);                                                                \
        const T inv = (T)inv_scale;                                                       \
        int bad = 0;                                                                      \
        _Pragma("omp parallel for if (n > 65536) schedule(static) reduction(| : bad)")    \
        for (int64_t i = 0; i < n; i++) {                                                 \
            bad |= !isfinite(g[i]);                                                       \
            g[i] = g[i] * inv;                                                            \
        }                                                                                 \
        if (bad) *found_inf = true;                                                       \
    } while (0)

int av_amp_unscale_(int count, av_tensor *const *grad, double inv_scale, bool *found_inf) {
    *found_inf = false;
#ifdef AV_WITH_CUDA
    if (any_cuda(count, grad)) return av_cuda_unscale(count, grad, inv_scale, found_inf);
#endif
    for (int k = 0; k < count; k++) {
        av_tensor *t = grad[k];
        if ((t->dtype != AV_F32 && t->dtype != AV_F64) || !av_is_contiguous(t))
            return av_fail("unscale: gradients must be contiguous float32 or float64 tensors, got a %s one",
                           av_dtype_name(t->dtype));
        int64_t n = av_numel(t);
        if (t->dtype == AV_F32) UNSCALE_LOOP(float);
        else UNSCALE_LOOP(double);
        av_bump_version(t);
    }
    return 0;
}
