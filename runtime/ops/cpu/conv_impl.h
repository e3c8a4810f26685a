/* Shared by the CPU convolution files: the geometry of one call and the
 * kernel entry points. Every pointer is to contiguous NCHW / OIHW data of the
 * geometry's dtype (float or double). */
#ifndef AVIARY_CONV_IMPL_H
#define AVIARY_CONV_IMPL_H

#include "aviary/conv.h"

typedef struct conv_geom {
    av_dtype dt;
    int64_t N, C, H, W;      /* input */
    int64_t Co, kh, kw;      /* weight: Co x Cig x kh x kw */
    int64_t Ho, Wo;          /* output */
    int64_t sh, sw, ph, pw;  /* stride, top/left padding */
    int64_t pbh, pbw;        /* bottom/right padding */
    int64_t dh, dw;          /* dilation */
    int64_t G, Cig, Cog;     /* groups, channels per group in and out */
    int64_t K;               /* Cig*kh*kw: rows of an im2col matrix */
    int64_t P;               /* Ho*Wo: columns per image */
    int64_t HW;              /* H*W */
} conv_geom;

/* the forward pass without graph recording (conv.c); x is 4-d */
av_tensor *av_conv2d_raw(const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_conv2d_args *a);

/* a 1x1 convolution with unit stride and no padding: the input is the im2col matrix */
static inline bool conv_is_pointwise(const conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->pbh == 0 &&
           g->pbw == 0;
}

/* im2col + OpenBLAS GEMM (conv_im2col.c); bias may be NULL; each returns 0 or -1 */
int conv_im2col_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y);
int conv_im2col_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx);
int conv_im2col_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw);
/* bias gradient: sum of gy over images and pixels */
void conv_backward_bias(const conv_geom *g, const void *gy, void *gb);

/* direct kernels for one input channel per group (depthwise, conv_direct.c) */
int conv_depthwise_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y);
int conv_depthwise_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx);
int conv_depthwise_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw);

#ifdef AV_WITH_DNNL
/* oneDNN primitives, cached per shape (conv_dnnl.c); return 1 when the shape is not handled */
int conv_dnnl_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y);
int conv_dnnl_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx);
int conv_dnnl_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw, void *gb);
#endif

#endif
