/* Autocast (aviary/nn_ops.h): the cast policy of torch.autocast for the ops
 * that gain from tensor cores. The casts are ordinary recorded av_to_dtype
 * calls, so backward converts the gradients back to float32 on the way to
 * the float32 parameters, as PyTorch's autocast does. The state is global:
 * the Lua side is single-threaded and sets it around a forward pass. */
#include "grad.h"
#include "aviary/conv.h"
#include "aviary/loss.h"
#include "aviary/nn_ops.h"

static int cast_dtype = -1;
static bool cast_keep_low = false;

int av_autocast_set(int dtype, bool keep_low) {
    if (dtype != -1 && dtype != AV_F16 && dtype != AV_BF16)
        return av_fail("autocast: dtype must be float16 or bfloat16, got %s",
                       dtype >= 0 && dtype < AV_NDTYPES ? av_dtype_name((av_dtype)dtype) : "an unknown dtype");
    cast_dtype = dtype;
    cast_keep_low = keep_low;
    return 0;
}

int av_autocast_get(bool *keep_low) {
    if (keep_low) *keep_low = cast_keep_low;
    return cast_dtype;
}

bool av_autocast_applies(const av_tensor *x, const av_tensor *w) {
    return cast_dtype >= 0 && x && w && x->storage->device.type == AV_CUDA && x->dtype == AV_F32 && w->dtype == AV_F32;
}

/* t cast to dt; a channels-last (NHWC memory) 4-d tensor stays channels-last, so
 * that the convolution sees the layout the caller chose */
static av_tensor *cast_keep_layout(const av_tensor *t, av_dtype dt) {
    bool nhwc = t->ndim == 4 && !av_is_contiguous(t) && t->stride[1] == 1 && t->stride[3] == t->shape[1] &&
                t->stride[2] == t->shape[3] * t->shape[1] && t->stride[0] == t->shape[2] * t->shape[3] * t->shape[1];
    if (!nhwc) return av_to_dtype(t, dt);
    static const int to_nhwc[4] = {0, 2, 3, 1}, back[4] = {0, 3, 1, 2};
    av_tensor *p = av_permute(t, to_nhwc);
    av_tensor *c = p ? av_to_dtype(p, dt) : NULL;
    av_tensor *r = c ? av_permute(c, back) : NULL;
    av_release(p);
    av_release(c);
    return r;
}

/* the three operands cast (NULL b stays NULL); -1 after releasing what was made */
static int cast3(const av_tensor *x, const av_tensor *w, const av_tensor *b, av_tensor **xc, av_tensor **wc,
                 av_tensor **bc) {
    *xc = cast_keep_layout(x, (av_dtype)cast_dtype);
    *wc = *xc ? av_to_dtype(w, (av_dtype)cast_dtype) : NULL;
    *bc = (*wc && b) ? av_to_dtype(b, (av_dtype)cast_dtype) : NULL;
    if (!*xc || !*wc || (b && !*bc)) {
        av_release(*xc);
        av_release(*wc);
        av_release(*bc);
        return -1;
    }
    return 0;
}

/* the result back in float32 unless the low dtype is kept */
static av_tensor *finish(av_tensor *y) {
    if (!y || cast_keep_low) return y;
    av_tensor *r = cast_keep_layout(y, AV_F32);
    av_release(y);
    return r;
}

av_tensor *av_autocast_conv2d(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a) {
    av_tensor *xc, *wc, *bc;
    if (cast3(x, w, b, &xc, &wc, &bc)) return NULL;
    av_tensor *y = av_conv2d_ex(xc, wc, bc, a); /* low-precision operands: no further cast */
    av_release(xc);
    av_release(wc);
    av_release(bc);
    return finish(y);
}

av_tensor *av_autocast_linear(const av_tensor *x, const av_tensor *w, const av_tensor *b) {
    av_tensor *xc, *wc, *bc;
    if (cast3(x, w, b, &xc, &wc, &bc)) return NULL;
    av_tensor *y = av_linear(xc, wc, bc);
    av_release(xc);
    av_release(wc);
    av_release(bc);
    return finish(y);
}
