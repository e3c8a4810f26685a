/* pad: F.pad's constant (negative entries crop), reflect, replicate and
 * circular modes, forward and backward. Every padded dim gets an index map
 * (output position -> input position, -1 for the fill value); the forward
 * gathers rows through the maps, the backward scatters the gradient back
 * (adding where several outputs read one input). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/loss.h"
#include "aviary/ops.h"
#include "iter.h"
#include "../../autograd/grad_loss.h"
#include "aviary/cuda.h"

static int threads_for(int64_t work) {
    int nt = work >= AV_PARALLEL_GRAIN ? av_get_num_threads() : 1;
    return nt < 1 ? 1 : nt;
}

static const char *mode_names[] = {"constant", "reflect", "replicate", "circular"};

/* the layout shared by forward and backward: input [outer, in_1..in_k],
 * output [outer, out_1..out_k] (k padded dims), maps[d][j] for each */
typedef struct {
    int k;
    int64_t outer, in[AV_MAX_DIMS], out[AV_MAX_DIMS];
    int64_t *map[AV_MAX_DIMS];
    int64_t in_plane, out_plane, rows_per_outer;
    int64_t in_stride[AV_MAX_DIMS];
    void *mem;
} pad_layout;

static int make_layout(const av_pad_params *p, int ndim, const int64_t *in_shape, pad_layout *L) {
    memset(L, 0, sizeof *L);
    L->k = p->npd;
    int lead = ndim - p->npd;
    L->outer = 1;
    for (int d = 0; d < lead; d++) L->outer *= in_shape[d];
    int64_t total = 0;
    L->in_plane = L->out_plane = 1;
    for (int d = 0; d < L->k; d++) {
        L->in[d] = in_shape[lead + d];
        L->out[d] = L->in[d] + p->before[d] + p->after[d];
        total += L->out[d];
        L->in_plane *= L->in[d];
        L->out_plane *= L->out[d];
    }
    L->rows_per_outer = L->k ? L->out_plane / (L->out[L->k - 1] ? L->out[L->k - 1] : 1) : 1;
    if (L->k && L->out[L->k - 1] == 0) L->rows_per_outer = 0;
    int64_t st = 1;
    for (int d = L->k - 1; d >= 0; d--) { L->in_stride[d] = st; st *= L->in[d]; }
    L->mem = malloc(sizeof(int64_t) * (size_t)(total + 1));
    if (!L->mem) return av_fail("pad: out of memory");
    int64_t *m = L->mem;
    for (int d = 0; d < L->k; d++) {
        L->map[d] = m;
        int64_t n = L->in[d], b = p->before[d];
        for (int64_t j = 0; j < L->out[d]; j++) {
            int64_t q = j - b, v;
            switch (p->mode) {
            case AV_PAD_CONSTANT: v = (q >= 0 && q < n) ? q : -1; break;
            case AV_PAD_REFLECT: v = q < 0 ? -q : (q >= n ? 2 * (n - 1) - q : q); break;
            case AV_PAD_REPLICATE: v = q < 0 ? 0 : (q >= n ? n - 1 : q); break;
            default: v = ((q % n) + n) % n; break;
            }
            m[j] = v;
        }
        m += L->out[d];
    }
    return 0;
}

/* source offset of output row r (in the input plane), or -1 when the row is fill */
static inline int64_t row_source(const pad_layout *L, int64_t r, int64_t *outer_idx) {
    int64_t rem = r % L->rows_per_outer;
    *outer_idx = r / L->rows_per_outer;
    int64_t off = 0;
    for (int d = L->k - 2; d >= 0; d--) {
        int64_t j = rem % L->out[d];
        rem /= L->out[d];
        int64_t s = L->map[d][j];
        if (s < 0) return -1;
        off += s * L->in_stride[d];
    }
    return off;
}

#define PAD_FWD(U)                                                                                  \
    static void fwd_##U(const U *x, U *y, const pad_layout *L, U fill) {                           \
        int64_t rows = L->outer * L->rows_per_outer, W = L->out[L->k - 1];                          \
        const int64_t *mw = L->map[L->k - 1];                                                       \
        int nt = threads_for(rows * W);                                                             \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                    \
        for (int64_t r = 0; r < rows; r++) {                                                        \
            int64_t o;                                                                              \
            int64_t src = row_source(L, r, &o);                                                     \
            U *yr = y + r * W;                                                                      \
            if (src < 0) {                                                                          \
                for (int64_t j = 0; j < W; j++) yr[j] = fill;                                       \
                continue;                                                                           \
            }                                                                                       \
            const U *xr = x + o * L->in_plane + src;                                                \
            for (int64_t j = 0; j < W; j++) {                                                       \
                int64_t m = mw[j];                                                                  \
                yr[j] = m < 0 ? fill : xr[m];                                                       \
            }                                                                                       \
        }                                                                                           \
    }
PAD_FWD(uint8_t)
PAD_FWD(uint16_t)
PAD_FWD(uint32_t)
PAD_FWD(uint64_t)

/* constant maps are injective: rows run in parallel; the others may send
 * several outputs to one input, so only whole outer slabs run in parallel */
#define PAD_BWD(T, S)                                                                               \
    static void bwd_##S(const T *g, T *gx, const pad_layout *L, bool injective) {                  \
        int64_t rpo = L->rows_per_outer, W = L->out[L->k - 1];                                      \
        const int64_t *mw = L->map[L->k - 1];                                                       \
        int nt = threads_for(L->outer * rpo * W);                                                   \
        if (injective) {                                                                            \
            int64_t rows = L->outer * rpo;                                                          \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                \
            for (int64_t r = 0; r < rows; r++) {                                                    \
                int64_t o, src = row_source(L, r, &o);                                              \
                if (src < 0) continue;                                                              \
                T *xr = gx + o * L->in_plane + src;                                                 \
                const T *gr = g + r * W;                                                            \
                for (int64_t j = 0; j < W; j++)                                                     \
                    if (mw[j] >= 0) xr[mw[j]] += gr[j];                                             \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1 && L->outer > 1)")    \
        for (int64_t o = 0; o < L->outer; o++)                                                      \
            for (int64_t rr = 0; rr < rpo; rr++) {                                                  \
                int64_t oo, r = o * rpo + rr, src = row_source(L, r, &oo);                          \
                if (src < 0) continue;                                                              \
                T *xr = gx + o * L->in_plane + src;                                                 \
                const T *gr = g + r * W;                                                            \
                for (int64_t j = 0; j < W; j++) xr[mw[j]] += gr[j];                                 \
            }                                                                                       \
    }
PAD_BWD(float, f32)
PAD_BWD(double, f64)

static void out_shape(const av_pad_params *p, int ndim, const int64_t *in_shape, int64_t *os) {
    int lead = ndim - p->npd;
    for (int d = 0; d < ndim; d++) os[d] = in_shape[d];
    for (int d = 0; d < p->npd; d++) os[lead + d] = in_shape[lead + d] + p->before[d] + p->after[d];
}

/* constant padding of a device tensor: a filled output and one strided copy
 * into its interior (cropping pads and the other modes have no GPU path) */
static bool pad_cuda_ok(const av_pad_params *p) {
    if (p->mode != AV_PAD_CONSTANT) return false;
    for (int d = 0; d < p->npd; d++)
        if (p->before[d] < 0 || p->after[d] < 0) return false;
    return true;
}
av_tensor *av_pad_raw(const av_tensor *x, const av_pad_params *p);
av_tensor *av_pad_backward_raw(const av_tensor *g, const av_pad_params *p, int ndim, const int64_t *in_shape);
/* the other modes run on the host for now: one copy each way */
static av_tensor *pad_on_host(const av_tensor *x, const av_pad_params *p, bool backward, int ndim, const int64_t *in_shape) {
    av_tensor *h = av_to_device(x, (av_device){AV_CPU, 0});
    av_tensor *r = h ? (backward ? av_pad_backward_raw(h, p, ndim, in_shape) : av_pad_raw(h, p)) : NULL;
    av_tensor *d = r ? av_to_device(r, av_device_of(x)) : NULL;
    av_release(h);
    av_release(r);
    return d;
}
static av_tensor *pad_cuda(const av_tensor *x, const av_pad_params *p, const int64_t *os) {
    if (!pad_cuda_ok(p)) return pad_on_host(x, p, false, 0, NULL);
    av_tensor *y = av_full_on(x->ndim, os, x->dtype, p->value, av_device_of(x));
    if (!y || av_numel(x) == 0) return y;
    av_tensor inner = *y;
    int lead = x->ndim - p->npd;
    for (int d = 0; d < p->npd; d++) {
        inner.shape[lead + d] = x->shape[lead + d];
        inner.offset += p->before[d] * y->stride[lead + d];
    }
    if (av_copy_(&inner, x)) { av_release(y); return NULL; }
    return y;
}
static av_tensor *pad_backward_cuda(const av_tensor *g, const av_pad_params *p, int ndim, const int64_t *in_shape) {
    if (!pad_cuda_ok(p)) return pad_on_host(g, p, true, ndim, in_shape);
    av_tensor inner = *g;
    int lead = ndim - p->npd;
    for (int d = 0; d < p->npd; d++) {
        inner.shape[lead + d] = in_shape[lead + d];
        inner.offset += p->before[d] * g->stride[lead + d];
    }
    av_tensor *gx = av_empty_on(ndim, in_shape, g->dtype, av_device_of(g));
    if (gx && av_copy_(gx, &inner)) { av_release(gx); return NULL; }
    return gx;
}

av_tensor *av_pad_raw(const av_tensor *x, const av_pad_params *p) {
    int64_t os[AV_MAX_DIMS];
    out_shape(p, x->ndim, x->shape, os);
    if (p->npd == 0) return av_clone(x);
    if (av_is_cuda(x)) return pad_cuda(x, p, os);
    av_tensor *y = av_empty(x->ndim, os, x->dtype);
    if (!y || av_numel(y) == 0) return y;
    av_tensor *xc = av_contiguous(x);
    pad_layout L;
    if (!xc || make_layout(p, x->ndim, x->shape, &L)) { av_release(xc); av_release(y); return NULL; }
    union { uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; char raw[8]; } fill;
    memset(&fill, 0, sizeof fill);
    if (x->dtype != AV_F16 && x->dtype != AV_BF16) av_store_elem(x->dtype, fill.raw, p->value);
    else {
        av_stack_scalar sv;
        av_tensor *v = av_stack_scalar_init(&sv, p->value, AV_F64), *h = av_empty(0, NULL, x->dtype);
        if (h && !av_copy_(h, v)) memcpy(fill.raw, av_data(h), 2);
        av_release(h);
    }
    switch (av_dtype_size(x->dtype)) {
    case 1: fwd_uint8_t(av_data(xc), av_data(y), &L, fill.u8); break;
    case 2: fwd_uint16_t(av_data(xc), av_data(y), &L, fill.u16); break;
    case 4: fwd_uint32_t(av_data(xc), av_data(y), &L, fill.u32); break;
    default: fwd_uint64_t(av_data(xc), av_data(y), &L, fill.u64); break;
    }
    free(L.mem);
    av_release(xc);
    return y;
}

av_tensor *av_pad_backward_raw(const av_tensor *g, const av_pad_params *p, int ndim, const int64_t *in_shape) {
    if (p->npd == 0) return av_clone(g);
    if (av_is_cuda(g)) return pad_backward_cuda(g, p, ndim, in_shape);
    av_tensor *gc = av_contiguous(g);
    av_tensor *gx = gc ? av_zeros(ndim, in_shape, g->dtype) : NULL;
    if (!gx || av_numel(gc) == 0 || av_numel(gx) == 0) { av_release(gc); return gx; }
    pad_layout L;
    if (make_layout(p, ndim, in_shape, &L)) { av_release(gc); av_release(gx); return NULL; }
    if (g->dtype == AV_F32) bwd_f32(av_data(gc), av_data(gx), &L, p->mode == AV_PAD_CONSTANT);
    else bwd_f64(av_data(gc), av_data(gx), &L, p->mode == AV_PAD_CONSTANT);
    free(L.mem);
    av_release(gc);
    return gx;
}

av_tensor *av_pad(const av_tensor *x, int npad, const int64_t *pad, const char *mode, double value) {
    const char *fn = "pad";
    char b1[96];
    if (!x) { av_fail("%s: input is NULL", fn); return NULL; }
    av_pad_params p = {0};
    if (!mode || !strcmp(mode, "constant")) p.mode = AV_PAD_CONSTANT;
    else if (!strcmp(mode, "reflect")) p.mode = AV_PAD_REFLECT;
    else if (!strcmp(mode, "replicate")) p.mode = AV_PAD_REPLICATE;
    else if (!strcmp(mode, "circular")) p.mode = AV_PAD_CIRCULAR;
    else {
        av_fail("%s: unknown mode '%s' (expected 'constant', 'reflect', 'replicate' or 'circular')", fn, mode);
        return NULL;
    }
    const char *mn = mode_names[p.mode];
    if (npad < 0 || npad % 2) { av_fail("%s: the padding list must have an even length, got %d entries", fn, npad); return NULL; }
    if (npad / 2 > x->ndim) {
        av_fail("%s: %d padding entries pad %d dims but the input of size %s has %d", fn, npad, npad / 2,
                av_shape_str(x, b1, sizeof b1), x->ndim);
        return NULL;
    }
    if (p.mode != AV_PAD_CONSTANT) {
        if (value != 0) { av_fail("%s: mode '%s' takes no fill value (got %g)", fn, mn, value); return NULL; }
        int k = npad / 2;
        if (k < 1 || k > 3 || x->ndim < k + 1 || x->ndim > k + 2) {
            if (k < 1 || k > 3)
                av_fail("%s: mode '%s' pads 1 to 3 trailing dims (2, 4 or 6 entries), got %d entries", fn, mn, npad);
            else
                av_fail("%s: mode '%s' with %d entries needs a %d-d or %d-d input, got size %s", fn, mn, npad, k + 1, k + 2,
                        av_shape_str(x, b1, sizeof b1));
            return NULL;
        }
    }
    p.npd = npad / 2;
    p.value = value;
    int lead = x->ndim - p.npd;
    double numel = 1;
    for (int d = 0; d < lead; d++) numel *= (double)x->shape[d];
    for (int d = 0; d < p.npd; d++) {
        /* pad lists the last dim first */
        int64_t b = pad[2 * (p.npd - 1 - d)], a = pad[2 * (p.npd - 1 - d) + 1];
        int64_t in = x->shape[lead + d];
        int udim = lead + d + 1; /* 1-based, as users see it */
        const int64_t lim = (int64_t)1 << 40;
        if (b > lim || b < -lim || a > lim || a < -lim) {
            av_fail("%s: padding (%lld, %lld) of dim %d is too large", fn, (long long)b, (long long)a, udim);
            return NULL;
        }
        if (p.mode == AV_PAD_REFLECT && (b >= in || a >= in)) {
            av_fail("%s: reflect padding (%lld, %lld) must be less than the size %lld of dim %d of input of size %s", fn,
                    (long long)b, (long long)a, (long long)in, udim, av_shape_str(x, b1, sizeof b1));
            return NULL;
        }
        if (p.mode == AV_PAD_CIRCULAR && (b > in || a > in)) {
            av_fail("%s: circular padding (%lld, %lld) must be at most the size %lld of dim %d of input of size %s", fn,
                    (long long)b, (long long)a, (long long)in, udim, av_shape_str(x, b1, sizeof b1));
            return NULL;
        }
        if (p.mode != AV_PAD_CONSTANT && in == 0) {
            av_fail("%s: mode '%s' cannot pad dim %d of size 0 (input of size %s)", fn, mn, udim, av_shape_str(x, b1, sizeof b1));
            return NULL;
        }
        int64_t o = in + b + a;
        if (o < 0 || (p.mode != AV_PAD_CONSTANT && o < 1)) {
            av_fail("%s: dim %d of size %lld with padding (%lld, %lld) would have size %lld", fn, udim, (long long)in,
                    (long long)b, (long long)a, (long long)o);
            return NULL;
        }
        p.before[d] = b;
        p.after[d] = a;
        numel *= (double)o;
    }
    if (numel > (double)((int64_t)1 << 50)) {
        av_fail("%s: the padded tensor would have %.3g elements", fn, numel);
        return NULL;
    }
    av_tensor *out;
    NO_GRAD(out = av_pad_raw(x, &p));
    if (!out) return NULL;
    if (x->dtype != AV_F32 && x->dtype != AV_F64) return out;
    return av_ag_finish(out, av_ag_pad(out, x, &p));
}
