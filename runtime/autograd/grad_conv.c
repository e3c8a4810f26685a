/* Convolution with graph recording: one "ConvolutionBackward" node for input,
 * weight and bias, computing only the gradients whose edges are live. */
#include <stdlib.h>
#include <string.h>
#include "grad.h"
#include "../ops/cpu/conv_impl.h"
#include "aviary/nn_ops.h"

#define NO_GRAD(expr)                        \
    do {                                     \
        bool was_ = av_grad_enabled();       \
        av_set_grad_enabled(false);          \
        expr;                                \
        av_set_grad_enabled(was_);           \
    } while (0)

/* saved: 0 = input (detached), 1 = weight (detached); extra = av_conv2d_args */
static int conv_backward(av_node *n, av_tensor *const *gout, av_tensor **gin) {
    const av_tensor *x = av_node_saved(n, 0), *w = av_node_saved(n, 1);
    if (!x || !w) return -1;
    const av_conv2d_args *a = n->extra;
    bool want_x = n->next[0].node != NULL, want_w = n->next[1].node != NULL, want_b = n->next[2].node != NULL;
    av_tensor *gy = gout[0] ? av_retain(gout[0]) : NULL;
    if (!gy) { /* no gradient reached the output: it counts as zeros */
        av_tensor *y = av_conv2d_raw(x, w, NULL, a);
        gy = y ? ag_zeros_like(y) : NULL;
        av_release(y);
        if (!gy) return -1;
    }
    int rc = av_conv2d_backward(gy, x, w, a, want_x ? &gin[0] : NULL, want_w ? &gin[1] : NULL,
                                want_b ? &gin[2] : NULL);
    av_release(gy);
    return rc;
}

av_tensor *av_conv2d_ex(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a) {
    if (x->ndim == 3) { /* unbatched C x H x W: a batch of one, and a 3-d result */
        av_tensor *x4 = av_unsqueeze(x, 0);
        av_tensor *y4 = x4 ? av_conv2d_ex(x4, w, b, a) : NULL;
        av_release(x4);
        av_tensor *y = y4 ? av_squeeze(y4, 0) : NULL;
        av_release(y4);
        return y;
    }
    if (av_autocast_applies(x, w)) return av_autocast_conv2d(x, w, b, a);
    av_tensor *out;
    NO_GRAD(out = av_conv2d_raw(x, w, b, a));
    const av_tensor *ins[3] = {x, w, b};
    if (!out || !av_should_record(b ? 3 : 2, ins)) return out;
    av_node *n = av_node_new("ConvolutionBackward", conv_backward, 3, ins, 1);
    av_conv2d_args *args = n ? malloc(sizeof *args) : NULL;
    if (!args) {
        if (n) av_node_release(n);
        av_release(out);
        av_fail("conv2d: out of memory");
        return NULL;
    }
    *args = *a;
    n->extra = args;
    av_node_save_detached(n, x);
    av_node_save_detached(n, w);
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return av_ag_finish(out, rc);
}

av_tensor *av_conv2d(const av_tensor *x, const av_tensor *w, const av_tensor *b, const int64_t stride[2],
                     const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
    av_conv2d_args a = {{stride[0], stride[1]}, {padding[0], padding[1]}, {padding[0], padding[1]},
                        {dilation[0], dilation[1]}, groups};
    return av_conv2d_ex(x, w, b, &a);
}
