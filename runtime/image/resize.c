/* Geometry and tensor conversion of av_images.
 *
 * Resizing follows PIL's Image.resize (Resample.c) step by step, so results
 * match it exactly: per output pixel a filter window centred on
 * in0 + (x + 0.5) * scale, the filter widened by the scale when shrinking
 * (antialiasing), weights normalised and converted to 22-bit fixed point,
 * a horizontal pass into a uint8 intermediate (rounded and clipped), then a
 * vertical pass. Bilinear is the triangle filter (support 1), bicubic Keys'
 * cubic with a = -0.5 (support 2). Nearest takes the source pixel
 * floor(in0 + (x + 0.5) * scale), accumulated in double as PIL does. */
#include "aviary/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;
    int *bounds;  /* out x 2: first input index, tap count */
    int32_t *k;   /* out x ksize fixed-point weights */
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->bounds);
    free(c->k);
}

static int precompute(coeffs *c, int in_size, float in0, float in1, int out_size, av_interp interp) {
    double (*filter)(double) = interp == AV_INTERP_BICUBIC ? bicubic_filter : bilinear_filter;
    double fsupport = interp == AV_INTERP_BICUBIC ? 2.0 : 1.0;
    double scale = (double)(in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = fsupport * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int32_t) * (size_t)ksize * out_size);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return av_fail("resize: out of memory for the filter weights");
    }
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize;
        if (xmax < 0) xmax = 0;
        for (int x = 0; x < xmax; x++) {
            w[x] = filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* The horizontal pass works on blocks of ROWS rows transposed into columns
 * (col[x][r * C + ch]), so each output pixel is a multiply-add of contiguous
 * ROWS * C vectors per tap, which the compiler vectorises; the arithmetic is
 * PIL's, so results do not change. */
#define HBLOCK_BYTES 48 /* rows per block x channels: 16 x 3, 48 x 1, 12 x 4 */

static inline __attribute__((always_inline)) void hblock(const uint8_t *col, int RC, int rows, int C, uint8_t *dst,
                                                         size_t dst_stride, int ow, const coeffs *cf) {
    const int ks = cf->ksize;
    for (int xx = 0; xx < ow; xx++) {
        const int xmin = cf->bounds[2 * xx], n = cf->bounds[2 * xx + 1];
        const int32_t *k = cf->k + (size_t)xx * ks;
        int32_t acc[HBLOCK_BYTES];
        for (int j = 0; j < RC; j++) acc[j] = 1 << (PRECISION_BITS - 1);
        for (int x = 0; x < n; x++) {
            const uint8_t *p = col + (size_t)(xmin + x) * RC;
            const int32_t kk = k[x];
            for (int j = 0; j < RC; j++) acc[j] += p[j] * kk;
        }
        for (int r = 0; r < rows; r++)
            for (int ch = 0; ch < C; ch++) dst[r * dst_stride + (size_t)xx * C + ch] = clip8(acc[r * C + ch]);
    }
}

/* rows [y0, y0 + nrows) of src (width sw) -> dst (width ow), C channels */
static int resample_h(const uint8_t *src, int sw, int y0, int nrows, uint8_t *dst, int ow, int C, const coeffs *cf) {
    const int R = HBLOCK_BYTES / C, RC = R * C;
    uint8_t *col = calloc((size_t)sw * RC, 1);
    if (!col) return av_fail("resize: out of memory");
    const size_t src_stride = (size_t)sw * C, dst_stride = (size_t)ow * C;
    for (int yb = 0; yb < nrows; yb += R) {
        int rows = nrows - yb < R ? nrows - yb : R;
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = src + (size_t)(y0 + yb + r) * src_stride;
            if (C == 3)
                for (int x = 0; x < sw; x++) {
                    uint8_t *c = col + (size_t)x * RC + r * 3;
                    c[0] = row[3 * x];
                    c[1] = row[3 * x + 1];
                    c[2] = row[3 * x + 2];
                }
            else
                for (int x = 0; x < sw; x++) memcpy(col + (size_t)x * RC + r * C, row + (size_t)x * C, (size_t)C);
        }
        uint8_t *d = dst + (size_t)yb * dst_stride;
        if (C == 3) hblock(col, 48, rows, 3, d, dst_stride, ow, cf);
        else if (C == 1) hblock(col, 48, rows, 1, d, dst_stride, ow, cf);
        else hblock(col, 48, rows, 4, d, dst_stride, ow, cf);
    }
    free(col);
    return 0;
}

/* src rows (row length rl bytes), bounds relative to src row 0 -> dst oh rows */
static int resample_v(const uint8_t *src, size_t rl, uint8_t *dst, int oh, const coeffs *cf) {
    int32_t *acc = malloc(sizeof(int32_t) * rl);
    if (!acc) return av_fail("resize: out of memory");
    const int ks = cf->ksize;
    for (int yy = 0; yy < oh; yy++) {
        const int ymin = cf->bounds[2 * yy], n = cf->bounds[2 * yy + 1];
        const int32_t *k = cf->k + (size_t)yy * ks;
        for (size_t i = 0; i < rl; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *row = src + (size_t)(ymin + y) * rl;
            const int32_t kk = k[y];
            for (size_t i = 0; i < rl; i++) acc[i] += row[i] * kk;
        }
        uint8_t *out = dst + (size_t)yy * rl;
        for (size_t i = 0; i < rl; i++) out[i] = clip8(acc[i]);
    }
    free(acc);
    return 0;
}

static int check_image(const av_image *im, const char *fn) {
    if (!im || !im->data || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3 && im->c != 4))
        return av_fail("%s: invalid image (need w, h > 0 and 1, 3 or 4 channels)", fn);
    return 0;
}


static av_image *resize_nearest(const av_image *im, float x0, float y0, float x1, float y1, int w, int h) {
    av_image *out = av_image_alloc(w, h, im->c, "av_image_resize");
    int *xin = malloc(sizeof(int) * (size_t)w);
    if (!out || !xin) {
        av_image_free(out);
        free(xin);
        if (out) av_fail("av_image_resize: out of memory");
        return NULL;
    }
    double ax = (double)(x1 - x0) / w, ay = (double)(y1 - y0) / h;
    double xo = x0 + ax * 0.5;
    for (int x = 0; x < w; x++, xo += ax) {
        int v = xo < 0.0 ? 0 : (int)xo;
        xin[x] = v >= im->w ? im->w - 1 : v;
    }
    const int C = im->c;
    double yo = y0 + ay * 0.5;
    for (int y = 0; y < h; y++, yo += ay) {
        int yi = yo < 0.0 ? 0 : (int)yo;
        if (yi >= im->h) yi = im->h - 1;
        const uint8_t *row = im->data + (size_t)yi * im->w * C;
        uint8_t *o = out->data + (size_t)y * w * C;
        if (C == 3)
            for (int x = 0; x < w; x++) {
                const uint8_t *p = row + 3 * (size_t)xin[x];
                o[3 * x] = p[0];
                o[3 * x + 1] = p[1];
                o[3 * x + 2] = p[2];
            }
        else
            for (int x = 0; x < w; x++) memcpy(o + (size_t)x * C, row + (size_t)xin[x] * C, (size_t)C);
    }
    free(xin);
    return out;
}

/* PIL's ImagingResampleInner over the box [x0, x1) x [y0, y1) of im */
static av_image *resample_box(const av_image *im, float x0, float y0, float x1, float y1, int w, int h,
                              av_interp interp) {
    if (interp == AV_INTERP_NEAREST) return resize_nearest(im, x0, y0, x1, y1, w, h);
    if (interp != AV_INTERP_BILINEAR && interp != AV_INTERP_BICUBIC) {
        av_fail("av_image_resize: unknown interpolation %d", (int)interp);
        return NULL;
    }
    const int C = im->c;
    int need_h = w != im->w || x0 != 0 || x1 != (float)w;
    int need_v = h != im->h || y0 != 0 || y1 != (float)h;
    coeffs ch = {0}, cv = {0};
    if (precompute(&ch, im->w, x0, x1, w, interp) != 0) return NULL;
    if (precompute(&cv, im->h, y0, y1, h, interp) != 0) {
        coeffs_free(&ch);
        return NULL;
    }
    av_image *out = NULL;
    uint8_t *tmp = NULL;
    const uint8_t *vsrc = im->data;
    int vw = im->w;
    if (need_h) {
        int yfirst = cv.bounds[0], ylast = cv.bounds[2 * h - 2] + cv.bounds[2 * h - 1];
        if (!need_v) yfirst = 0, ylast = im->h;
        for (int i = 0; i < h; i++) cv.bounds[2 * i] -= yfirst;
        int nrows = ylast - yfirst;
        if (!need_v) {
            out = av_image_alloc(w, h, C, "av_image_resize");
            if (out && resample_h(im->data, im->w, 0, h, out->data, w, C, &ch) != 0) {
                av_image_free(out);
                out = NULL;
            }
            goto done;
        }
        tmp = malloc((size_t)w * (nrows > 0 ? nrows : 1) * C);
        if (!tmp) {
            av_fail("av_image_resize: out of memory");
            goto done;
        }
        if (resample_h(im->data, im->w, yfirst, nrows, tmp, w, C, &ch) != 0) goto done;
        vsrc = tmp;
        vw = w;
    }
    out = av_image_alloc(w, h, C, "av_image_resize");
    if (!out) goto done;
    if (need_v) {
        if (resample_v(vsrc, (size_t)vw * C, out->data, h, &cv) != 0) {
            av_image_free(out);
            out = NULL;
        }
    } else {
        memcpy(out->data, vsrc, (size_t)w * h * C);
    }
done:
    free(tmp);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return out;
}

av_image *av_image_resize(const av_image *im, int w, int h, av_interp interp) {
    if (check_image(im, "av_image_resize") != 0) return NULL;
    if (w <= 0 || h <= 0) {
        av_fail("av_image_resize: output size must be positive, got %dx%d", w, h);
        return NULL;
    }
    return resample_box(im, 0.f, 0.f, (float)im->w, (float)im->h, w, h, interp);
}

av_image *av_image_crop(const av_image *im, int x, int y, int w, int h) {
    if (check_image(im, "av_image_crop") != 0) return NULL;
    if (w <= 0 || h <= 0) {
        av_fail("av_image_crop: crop size must be positive, got %dx%d", w, h);
        return NULL;
    }
    av_image *out = av_image_new(w, h, im->c);
    if (!out) return NULL;
    const int C = im->c;
    int sx0 = x < 0 ? 0 : x, sx1 = x + w > im->w ? im->w : x + w;
    int sy0 = y < 0 ? 0 : y, sy1 = y + h > im->h ? im->h : y + h;
    if (sx1 > sx0)
        for (int sy = sy0; sy < sy1; sy++)
            memcpy(out->data + ((size_t)(sy - y) * w + (sx0 - x)) * C, im->data + ((size_t)sy * im->w + sx0) * C,
                   (size_t)(sx1 - sx0) * C);
    return out;
}

av_image *av_image_resized_crop(const av_image *im, double x, double y, double cw, double ch, int w, int h,
                                av_interp interp) {
    if (check_image(im, "av_image_resized_crop") != 0) return NULL;
    if (w <= 0 || h <= 0 || !(cw > 0) || !(ch > 0)) {
        av_fail("av_image_resized_crop: sizes must be positive, got box %gx%g -> %dx%d", cw, ch, w, h);
        return NULL;
    }
    /* rounding in callers that rescale boxes (a DCT-scaled decode) must not create a black border */
    const double eps = 1e-3;
    if (x < 0 && x > -eps) cw += x, x = 0;
    if (y < 0 && y > -eps) ch += y, y = 0;
    if (x + cw > im->w && x + cw < im->w + eps) cw = im->w - x;
    if (y + ch > im->h && y + ch < im->h + eps) ch = im->h - y;
    if (x >= 0 && y >= 0 && x + cw <= im->w && y + ch <= im->h)
        return resample_box(im, (float)x, (float)y, (float)(x + cw), (float)(y + ch), w, h, interp);
    /* box partly outside: pad with zeros (as a crop would), then resample inside the padded copy */
    int ix = (int)floor(x), iy = (int)floor(y);
    int iw = (int)ceil(x + cw) - ix, ih = (int)ceil(y + ch) - iy;
    av_image *pad = av_image_crop(im, ix, iy, iw, ih);
    if (!pad) return NULL;
    av_image *out = resample_box(pad, (float)(x - ix), (float)(y - iy), (float)(x - ix + cw), (float)(y - iy + ch),
                                 w, h, interp);
    av_image_free(pad);
    return out;
}

av_image *av_image_hflip(const av_image *im) {
    if (check_image(im, "av_image_hflip") != 0) return NULL;
    av_image *out = av_image_alloc(im->w, im->h, im->c, "av_image_hflip");
    if (!out) return NULL;
    const int C = im->c, W = im->w;
    for (int y = 0; y < im->h; y++) {
        const uint8_t *s = im->data + (size_t)y * W * C;
        uint8_t *d = out->data + (size_t)y * W * C;
        if (C == 3)
            for (int x = 0; x < W; x++) {
                d[3 * x] = s[3 * (W - 1 - x)];
                d[3 * x + 1] = s[3 * (W - 1 - x) + 1];
                d[3 * x + 2] = s[3 * (W - 1 - x) + 2];
            }
        else
            for (int x = 0; x < W; x++) memcpy(d + (size_t)x * C, s + (size_t)(W - 1 - x) * C, (size_t)C);
    }
    return out;
}

av_image *av_image_vflip(const av_image *im) {
    if (check_image(im, "av_image_vflip") != 0) return NULL;
    av_image *out = av_image_alloc(im->w, im->h, im->c, "av_image_vflip");
    if (!out) return NULL;
    size_t rl = (size_t)im->w * im->c;
    for (int y = 0; y < im->h; y++) memcpy(out->data + (size_t)y * rl, im->data + (size_t)(im->h - 1 - y) * rl, rl);
    return out;
}

/* ---- tensors ----------------------------------------------------------------------------- */

int av_image_to_tensor_into(const av_image *im, const float *mean, const float *std, float *dst) {
    if (check_image(im, "av_image_to_tensor") != 0) return -1;
    if (!dst) return av_fail("av_image_to_tensor: no destination");
    const int C = im->c;
    float lut[4][256];
    for (int c = 0; c < C; c++) {
        if (std && std[c] == 0.f) return av_fail("av_image_to_tensor: std[%d] is 0", c + 1);
        for (int v = 0; v < 256; v++) {
            float f = (float)v / 255.f; /* torchvision's to_tensor: x.float().div(255), then (x - mean) / std */
            if (mean) f -= mean[c];
            if (std) f /= std[c];
            lut[c][v] = f;
        }
    }
    size_t np = (size_t)im->w * im->h;
    const uint8_t *s = im->data;
    if (C == 3) {
        float *d0 = dst, *d1 = dst + np, *d2 = dst + 2 * np;
        for (size_t i = 0; i < np; i++) {
            d0[i] = lut[0][s[3 * i]];
            d1[i] = lut[1][s[3 * i + 1]];
            d2[i] = lut[2][s[3 * i + 2]];
        }
    } else {
        for (int c = 0; c < C; c++) {
            float *d = dst + (size_t)c * np;
            for (size_t i = 0; i < np; i++) d[i] = lut[c][s[i * C + c]];
        }
    }
    return 0;
}

av_tensor *av_image_to_tensor(const av_image *im, const float *mean, const float *std) {
    if (check_image(im, "av_image_to_tensor") != 0) return NULL;
    int64_t shape[3] = {im->c, im->h, im->w};
    av_tensor *t = av_empty(3, shape, AV_F32);
    if (!t) return NULL;
    if (av_image_to_tensor_into(im, mean, std, (float *)av_data(t)) != 0) {
        av_release(t);
        return NULL;
    }
    return t;
}

av_tensor *av_image_to_u8_tensor(const av_image *im) {
    if (check_image(im, "av_image_to_u8_tensor") != 0) return NULL;
    int64_t shape[3] = {im->c, im->h, im->w};
    av_tensor *t = av_empty(3, shape, AV_U8);
    if (!t) return NULL;
    uint8_t *d = av_data(t);
    size_t np = (size_t)im->w * im->h;
    const uint8_t *s = im->data;
    if (im->c == 1) {
        memcpy(d, s, np);
    } else if (im->c == 3) {
        uint8_t *d0 = d, *d1 = d + np, *d2 = d + 2 * np;
        for (size_t i = 0; i < np; i++) {
            d0[i] = s[3 * i];
            d1[i] = s[3 * i + 1];
            d2[i] = s[3 * i + 2];
        }
    } else {
        for (int c = 0; c < im->c; c++)
            for (size_t i = 0; i < np; i++) d[c * np + i] = s[i * im->c + c];
    }
    return t;
}

av_image *av_image_from_tensor(const av_tensor *t, int chw) {
    if (!t) {
        av_fail("av_image_from_tensor: no tensor");
        return NULL;
    }
    if (t->storage->device.type != AV_CPU) {
        av_fail("av_image_from_tensor: the tensor must be on the CPU");
        return NULL;
    }
    if (t->ndim != 3 && t->ndim != 2) {
        av_fail("av_image_from_tensor: expected a %s tensor (or H x W), got %d dims", chw ? "C x H x W" : "H x W x C",
                t->ndim);
        return NULL;
    }
    if (t->dtype != AV_U8 && t->dtype != AV_F32 && t->dtype != AV_F64) {
        av_fail("av_image_from_tensor: expected uint8 or float, got %s", av_dtype_name(t->dtype));
        return NULL;
    }
    int64_t C, H, W;
    if (t->ndim == 2) C = 1, H = t->shape[0], W = t->shape[1];
    else if (chw) C = t->shape[0], H = t->shape[1], W = t->shape[2];
    else H = t->shape[0], W = t->shape[1], C = t->shape[2];
    if ((C != 1 && C != 3 && C != 4) || H <= 0 || W <= 0 || H > 1 << 30 || W > 1 << 30) {
        char b[64];
        av_fail("av_image_from_tensor: expected 1, 3 or 4 channels and a non-empty image, got %s",
                av_shape_str(t, b, sizeof b));
        return NULL;
    }
    av_tensor *c = av_contiguous(t);
    if (!c) return NULL;
    av_image *im = av_image_alloc((int)W, (int)H, (int)C, "av_image_from_tensor");
    if (!im) {
        av_release(c);
        return NULL;
    }
    size_t np = (size_t)W * H;
    for (int64_t ch = 0; ch < C; ch++) {
        for (size_t i = 0; i < np; i++) {
            size_t si = chw || t->ndim == 2 ? (size_t)ch * np + i : i * C + ch;
            uint8_t v;
            if (c->dtype == AV_U8) {
                v = ((const uint8_t *)av_data(c))[si];
            } else {
                double f = c->dtype == AV_F32 ? ((const float *)av_data(c))[si] : ((const double *)av_data(c))[si];
                f = f * 255.0 + 0.5; /* torchvision's save_image: mul(255).add(0.5).clamp(0, 255) */
                v = f >= 255.0 ? 255 : f > 0.0 ? (uint8_t)f : 0;
            }
            im->data[i * C + ch] = v;
        }
    }
    av_release(c);
    return im;
}
