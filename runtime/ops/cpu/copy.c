/* copy_ (any dtype to any dtype, with broadcasting), fill_, clone, to_dtype. */
#include <string.h>
#include "aviary/ops.h"
#include "aviary/backend.h"
#include "iter.h"
#include "../../autograd/grad.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_ops.h"
#endif

#define DEF_COPY(name, S, D)                                                      \
    static void name(char **p, const int64_t *s, int64_t n, void *ctx) {          \
        (void)ctx;                                                                \
        D *o = (D *)p[0];                                                         \
        const S *a = (const S *)p[1];                                             \
        if (s[0] == 1 && s[1] == 1)                                               \
            for (int64_t i = 0; i < n; i++) o[i] = (D)a[i];                       \
        else                                                                      \
            for (int64_t i = 0; i < n; i++) o[i * s[0]] = (D)a[i * s[1]];         \
    }
#define DEF_COPY_FROM(SN, S)                                                                       \
    DEF_COPY(copy_##SN##_f32, S, float) DEF_COPY(copy_##SN##_f64, S, double)                      \
    DEF_COPY(copy_##SN##_i64, S, int64_t) DEF_COPY(copy_##SN##_i32, S, int32_t)                   \
    DEF_COPY(copy_##SN##_u8, S, uint8_t)
DEF_COPY_FROM(f32, float)
DEF_COPY_FROM(f64, double)
DEF_COPY_FROM(i64, int64_t)
DEF_COPY_FROM(i32, int32_t)
DEF_COPY_FROM(u8, uint8_t)
#define CROW(SN) {copy_##SN##_f32, copy_##SN##_f64, copy_##SN##_i64, copy_##SN##_i32, copy_##SN##_u8}
/* [src][dst] */
static const av_strip_fn copy_kernels[5][5] = {CROW(f32), CROW(f64), CROW(i64), CROW(i32), CROW(u8)};

typedef struct { av_dtype src, dst; } generic_ctx;
/* half types go through double; they are storage formats on the CPU */
static void copy_generic(char **p, const int64_t *s, int64_t n, void *vctx) {
    const generic_ctx *c = vctx;
    int es = (int)av_dtype_size(c->src), ed = (int)av_dtype_size(c->dst);
    for (int64_t i = 0; i < n; i++)
        av_store_elem(c->dst, p[0] + i * s[0] * ed, av_load_elem(c->src, p[1] + i * s[1] * es));
}

int av_copy_(av_tensor *dst, const av_tensor *src) {
    int nd;
    int64_t shape[AV_MAX_DIMS];
    char b1[96], b2[96];
    if (av_broadcast_shape("copy_", dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape)) return -1;
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * nd))
        return av_fail("copy_: source of size %s does not broadcast to destination size %s",
                       av_shape_str(src, b1, sizeof b1), av_shape_str(dst, b2, sizeof b2));
    if (av_has_internal_overlap(dst))
        return av_fail("copy_: the destination is expanded (several elements share memory); clone it first");
    if (av_check_inplace(dst, "copy_")) return -1;
    av_bump_version(dst);
    if (av_is_cuda(dst) || av_is_cuda(src)) {
        if (av_device_of(dst).type != av_device_of(src).type || av_device_of(dst).index != av_device_of(src).index)
            return av_copy_between(dst, src);
#ifdef AV_WITH_CUDA
        return av_cuda_copy(dst, src);
#endif
    }
    av_iter it;
    const av_tensor *ops[2] = {dst, src};
    av_iter_init(&it, dst->ndim, dst->shape, 2, ops);
    if (src->dtype < 5 && dst->dtype < 5) {
        av_iter_run(&it, copy_kernels[src->dtype][dst->dtype], NULL);
    } else {
        generic_ctx c = {src->dtype, dst->dtype};
        av_iter_run(&it, copy_generic, &c);
    }
    return 0;
}

int av_fill_(av_tensor *t, double value) {
    av_stack_scalar s;
    av_tensor *v = av_stack_scalar_init(&s, value, t->dtype);
#ifdef AV_WITH_CUDA
    if (av_is_cuda(t)) {
        if (av_has_internal_overlap(t))
            return av_fail("fill_: the tensor is expanded (several elements share memory); clone it first");
        if (av_check_inplace(t, "fill_")) return -1;
        av_bump_version(t);
        return av_cuda_fill(t, value);
    }
#endif
    if (av_is_contiguous(t) && value == 0) {
        if (av_check_inplace(t, "fill_")) return -1;
        av_bump_version(t);
        memset(av_data(t), 0, (size_t)av_numel(t) * av_dtype_size(t->dtype));
        return 0;
    }
    return av_copy_(t, v);
}

av_tensor *av_clone(const av_tensor *t) {
    av_tensor *c = av_empty_like_on(t);
    if (c && av_copy_(c, t)) { av_release(c); return NULL; }
    return c ? av_ag_finish(c, av_ag_clone(c, t)) : NULL;
}

av_tensor *av_to_dtype(const av_tensor *t, av_dtype dt) {
    if ((unsigned)dt >= AV_NDTYPES) { av_fail("unknown dtype %d", dt); return NULL; }
    if (t->dtype == dt) return av_retain((av_tensor *)t);
    av_tensor *c = av_empty_on(t->ndim, t->shape, dt, av_device_of(t));
    if (c && av_copy_(c, t)) { av_release(c); return NULL; }
    return c ? av_ag_finish(c, av_ag_to_dtype(c, t)) : NULL;
}
