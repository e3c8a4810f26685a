/* Image files: JPEG through libjpeg-turbo's TurboJPEG API, PNG through libpng.
 * The format is chosen by signature, never by name. Every size is checked
 * against max_pixels from the header, before any pixel buffer exists. EXIF
 * orientation is ignored (as torchvision.io and PIL without exif_transpose). */
#include "aviary/image.h"
#include "aviary/io.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#define DEFAULT_MAX_PIXELS 178956970LL /* PIL's DecompressionBombError threshold */

av_image *av_image_new(int w, int h, int c) {
    if (w <= 0 || h <= 0 || (c != 1 && c != 3 && c != 4)) {
        av_fail("av_image_new: invalid size %dx%dx%d", w, h, c);
        return NULL;
    }
    av_image *im = malloc(sizeof *im);
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    uint8_t *d = n ? calloc(n, 1) : NULL;
    if (!im || !d) {
        free(im);
        free(d);
        av_fail("av_image_new: out of memory for a %dx%dx%d image", w, h, c);
        return NULL;
    }
    im->w = w;
    im->h = h;
    im->c = c;
    im->data = d;
    return im;
}

/* an image whose pixels are about to be overwritten (no zero fill) */
av_image *av_image_alloc(int w, int h, int c, const char *who) {
    av_image *im = malloc(sizeof *im);
    uint8_t *d = malloc((size_t)w * (size_t)h * (size_t)c);
    if (!im || !d) {
        free(im);
        free(d);
        av_fail("%s: out of memory for a %dx%dx%d image", who, w, h, c);
        return NULL;
    }
    im->w = w;
    im->h = h;
    im->c = c;
    im->data = d;
    return im;
}

void av_image_free(av_image *im) {
    if (!im) return;
    free(im->data);
    free(im);
}

/* ---- header parsing (shared by probe and the pre-allocation check) ------------- */

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static int is_png(const uint8_t *b, size_t n) { return n >= 8 && memcmp(b, PNG_SIG, 8) == 0; }
static int is_jpeg(const uint8_t *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* a byte source: either memory or a FILE (probe reads only what it needs) */
typedef struct {
    const uint8_t *mem;
    size_t n, pos;
    FILE *f;
} src_t;

static int src_read(src_t *s, uint8_t *dst, size_t k) {
    if (s->f) return fread(dst, 1, k, s->f) == k ? 0 : -1;
    if (s->pos + k > s->n) return -1;
    memcpy(dst, s->mem + s->pos, k);
    s->pos += k;
    return 0;
}
static int src_skip(src_t *s, size_t k) {
    if (s->f) return fseek(s->f, (long)k, SEEK_CUR);
    if (s->pos + k > s->n) return -1;
    s->pos += k;
    return 0;
}

/* walks JPEG markers after SOI up to the first SOFn; 0 or -1 (message set) */
static int jpeg_header(src_t *s, int *w, int *h, int *c, const char *name) {
    for (;;) {
        uint8_t m[2];
        if (src_read(s, m, 1) != 0) goto truncated;
        if (m[0] != 0xFF) return av_fail("%s: corrupt JPEG header (expected a marker)", name);
        do {
            if (src_read(s, m + 1, 1) != 0) goto truncated;
        } while (m[1] == 0xFF);
        uint8_t mk = m[1];
        if (mk == 0xD8 || mk == 0x01 || (mk >= 0xD0 && mk <= 0xD7)) continue; /* no length */
        if (mk == 0xD9 || mk == 0xDA) return av_fail("%s: corrupt JPEG (no frame header before the image data)", name);
        uint8_t lb[2];
        if (src_read(s, lb, 2) != 0) goto truncated;
        int len = lb[0] << 8 | lb[1];
        if (len < 2) return av_fail("%s: corrupt JPEG header (segment length %d)", name, len);
        if (mk >= 0xC0 && mk <= 0xCF && mk != 0xC4 && mk != 0xC8 && mk != 0xCC) {
            uint8_t sof[6];
            if (len < 8 || src_read(s, sof, 6) != 0) goto truncated;
            *h = sof[1] << 8 | sof[2];
            *w = sof[3] << 8 | sof[4];
            *c = sof[5];
            if (*w == 0 || *h == 0) return av_fail("%s: JPEG declares an empty image (%dx%d)", name, *w, *h);
            return 0;
        }
        if (src_skip(s, (size_t)len - 2) != 0) goto truncated;
    }
truncated:
    return av_fail("%s: truncated or corrupt JPEG (the file ends inside the header)", name);
}

/* PNG: IHDR right after the signature; channels as stored (gray 1, gray+alpha 2, RGB/palette 3, RGBA 4) */
static int png_header(const uint8_t *b, size_t n, int *w, int *h, int *c, const char *name) {
    if (n < 8 + 8 + 13 || memcmp(b + 12, "IHDR", 4) != 0)
        return av_fail("%s: truncated or corrupt PNG (no IHDR chunk)", name);
    uint32_t W = be32(b + 16), H = be32(b + 20);
    if (W == 0 || H == 0 || W > 0x7fffffffu || H > 0x7fffffffu)
        return av_fail("%s: PNG declares an invalid size %ux%u", name, W, H);
    int ct = b[25];
    *w = (int)W;
    *h = (int)H;
    *c = ct == 0 ? 1 : ct == 4 ? 2 : ct == 6 ? 4 : 3;
    return 0;
}

static int check_limit(int w, int h, const av_decode_opts *o, const char *name) {
    int64_t lim = o && o->max_pixels > 0 ? o->max_pixels : DEFAULT_MAX_PIXELS;
    if ((int64_t)w * h > lim)
        return av_fail("%s: image declares %dx%d = %lld pixels, more than the limit of %lld (max_pixels)", name, w, h,
                       (long long)w * h, (long long)lim);
    return 0;
}

/* ---- JPEG ------------------------------------------------------------------------ */

/* Adobe CMYK (as Photoshop writes it) is stored inverted; libjpeg hands it back as
 * stored, so ik = 255 - K and ic = 255 - C. RGB = (255 - C)(255 - K)/255 like PIL's
 * cmyk2rgb (with its rounding MULDIV255). */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_to_rgb(const uint8_t *src, uint8_t *dst, size_t npix) {
    for (size_t i = 0; i < npix; i++) {
        int k = src[4 * i + 3];
        dst[3 * i + 0] = muldiv255(src[4 * i + 0], k);
        dst[3 * i + 1] = muldiv255(src[4 * i + 1], k);
        dst[3 * i + 2] = muldiv255(src[4 * i + 2], k);
    }
}

/* PIL's convert('L'): L = 0.299 R + 0.587 G + 0.114 B in 16-bit fixed point (its L24) */
static inline uint8_t luma(int r, int g, int b) { return (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16); }

static void cmyk_to_gray(const uint8_t *src, uint8_t *dst, size_t npix) {
    for (size_t i = 0; i < npix; i++) {
        int k = src[4 * i + 3];
        dst[i] = luma(muldiv255(src[4 * i + 0], k), muldiv255(src[4 * i + 1], k), muldiv255(src[4 * i + 2], k));
    }
}

/* in place: RGB -> gray (dst may alias src, it never runs ahead) */
static void rgb_to_gray(const uint8_t *src, uint8_t *dst, size_t npix) {
    for (size_t i = 0; i < npix; i++) dst[i] = luma(src[3 * i], src[3 * i + 1], src[3 * i + 2]);
}

/* shrinks an RGB image to gray in place (keeps the buffer) */
static void image_to_gray(av_image *im) {
    rgb_to_gray(im->data, im->data, (size_t)im->w * im->h);
    im->c = 1;
}

/* benign libjpeg warnings that PIL also accepts silently */
static int benign_warning(const char *msg) { return msg && strstr(msg, "extraneous bytes before marker"); }

static av_image *decode_jpeg(const uint8_t *b, size_t n, const av_decode_opts *o, const char *name) {
    int w, h, comps;
    src_t s = {b, n, 2, NULL};
    if (jpeg_header(&s, &w, &h, &comps, name) != 0) return NULL;
    if (check_limit(w, h, o, name) != 0) return NULL;
    if (n > 0xffffffffUL) {
        av_fail("%s: JPEG too large (%zu bytes)", name, n);
        return NULL;
    }
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        av_fail("%s: cannot initialise the JPEG decoder", name);
        return NULL;
    }
    av_image *im = NULL, *tmp = NULL;
    int jw, jh, sub, cs;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, &jw, &jh, &sub, &cs) != 0) {
        av_fail("%s: truncated or corrupt JPEG (%s)", name, tjGetErrorStr2(tj));
        goto done;
    }
    if (check_limit(jw, jh, o, name) != 0) goto done;
    /* DCT-domain scaling: the smallest of 1/2, 1/4, 1/8 that keeps both sides >= the minimum
     * (libjpeg-turbo's other N/8 factors have no SIMD path and decode slower than 1/1) */
    int sw = jw, sh = jh;
    if (o && (o->min_w > 0 || o->min_h > 0)) {
        int nsf = 0;
        tjscalingfactor *sf = tjGetScalingFactors(&nsf);
        for (int i = 0; sf && i < nsf; i++) {
            if (sf[i].num != 1 || (sf[i].denom != 2 && sf[i].denom != 4 && sf[i].denom != 8)) continue;
            int tw = TJSCALED(jw, sf[i]), th = TJSCALED(jh, sf[i]);
            if (tw >= o->min_w && th >= o->min_h && (int64_t)tw * th < (int64_t)sw * sh) {
                sw = tw;
                sh = th;
            }
        }
    }
    int want = o ? o->want_channels : 3;
    if (want != 0 && want != 1 && want != 3 && want != 4) {
        av_fail("%s: want_channels must be 0, 1, 3 or 4, got %d", name, want);
        goto done;
    }
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int outc = want == 0 ? (cs == TJCS_GRAY ? 1 : 3) : want;
    /* colour -> gray through RGB, as PIL's convert('L') (the Y plane alone differs by a few levels) */
    int gray_via_rgb = outc == 1 && !cmyk && cs != TJCS_GRAY;
    if (gray_via_rgb) outc = 3;
    int pf;
    if (cmyk) {
        pf = TJPF_CMYK;
        tmp = av_image_alloc(sw, sh, 4, name);
        if (!tmp) goto done;
    } else {
        pf = outc == 1 ? TJPF_GRAY : outc == 4 ? TJPF_RGBA : TJPF_RGB;
    }
    im = av_image_alloc(sw, sh, outc, name);
    if (!im) goto done;
    uint8_t *dst = cmyk ? tmp->data : im->data;
    int pitch = sw * (cmyk ? 4 : outc);
    if (tjDecompress2(tj, b, (unsigned long)n, dst, sw, pitch, sh, pf, 0) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) != TJERR_WARNING || !benign_warning(msg)) {
            av_fail("%s: truncated or corrupt JPEG (%s)", name, msg);
            av_image_free(im);
            im = NULL;
            goto done;
        }
    }
    if (gray_via_rgb) image_to_gray(im);
    if (cmyk) {
        size_t np = (size_t)sw * sh;
        if (outc == 1) {
            cmyk_to_gray(tmp->data, im->data, np);
        } else if (outc == 3) {
            cmyk_to_rgb(tmp->data, im->data, np);
        } else {
            for (size_t i = np; i-- > 0;) {
                int k = tmp->data[4 * i + 3];
                im->data[4 * i + 0] = muldiv255(tmp->data[4 * i + 0], k);
                im->data[4 * i + 1] = muldiv255(tmp->data[4 * i + 1], k);
                im->data[4 * i + 2] = muldiv255(tmp->data[4 * i + 2], k);
                im->data[4 * i + 3] = 255;
            }
        }
    }
done:
    av_image_free(tmp);
    tjDestroy(tj);
    return im;
}

/* ---- PNG ------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *b;
    size_t n, pos;
    char msg[200];
} png_mem;

static void png_read_mem(png_structp p, png_bytep dst, png_size_t k) {
    png_mem *m = png_get_io_ptr(p);
    if (m->pos + k > m->n) png_error(p, "truncated PNG (the file ends early)");
    memcpy(dst, m->b + m->pos, k);
    m->pos += k;
}

static void png_err(png_structp p, png_const_charp msg) {
    png_mem *m = png_get_error_ptr(p);
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    png_longjmp(p, 1);
}
static void png_warn(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

static av_image *decode_png(const uint8_t *b, size_t n, const av_decode_opts *o, const char *name) {
    int w, h, c;
    if (png_header(b, n, &w, &h, &c, name) != 0) return NULL;
    if (check_limit(w, h, o, name) != 0) return NULL;
    int want = o ? o->want_channels : 3;
    if (want != 0 && want != 1 && want != 3 && want != 4) {
        av_fail("%s: want_channels must be 0, 1, 3 or 4, got %d", name, want);
        return NULL;
    }
    png_mem m = {b, n, 0, {0}};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &m, png_err, png_warn);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_read_struct(&p, NULL, NULL);
        av_fail("%s: cannot initialise the PNG decoder", name);
        return NULL;
    }
    av_image *volatile im = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(p))) {
        av_fail("%s: truncated or corrupt PNG (%s)", name, m.msg[0] ? m.msg : "libpng error");
        av_image_free(im);
        free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        return NULL;
    }
    png_set_read_fn(p, &m, png_read_mem);
    png_set_user_limits(p, 0x7fffffff, 0x7fffffff);
    png_read_info(p, info);
    int ct = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
    int has_alpha = (ct & PNG_COLOR_MASK_ALPHA) || png_get_valid(p, info, PNG_INFO_tRNS);
    int gray = !(ct & PNG_COLOR_MASK_COLOR);
    int outc = want == 0 ? (gray && !has_alpha ? 1 : 3) : want;
    int gray_via_rgb = outc == 1 && !gray; /* converted below with PIL's formula (libpng's differs) */
    if (gray_via_rgb) outc = 3;
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (gray && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(p);
    if (depth == 16) png_set_strip_16(p); /* high byte, as PIL's I;16 -> 8-bit modes */
    if (outc == 1) {
        if (has_alpha) png_set_strip_alpha(p);
    } else {
        if (gray) png_set_gray_to_rgb(p);
        if (outc == 3 && has_alpha) png_set_strip_alpha(p); /* drops alpha like PIL's convert('RGB') */
        if (outc == 4 && !has_alpha) png_set_filler(p, 0xff, PNG_FILLER_AFTER);
    }
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    if ((int)png_get_rowbytes(p, info) != w * outc) png_error(p, "unexpected row size after conversion");
    im = av_image_alloc(w, h, outc, name);
    if (!im) {
        png_destroy_read_struct(&p, &info, NULL);
        return NULL;
    }
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!rows) png_error(p, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = im->data + (size_t)y * w * outc;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    free(rows);
    png_destroy_read_struct(&p, &info, NULL);
    if (gray_via_rgb) image_to_gray(im);
    return im;
}

/* ---- entry points ------------------------------------------------------------------- */

av_image *av_image_decode(const uint8_t *bytes, size_t n, const av_decode_opts *o, const char *name) {
    if (!name) name = "image";
    if (!bytes || n == 0) {
        av_fail("%s: empty file (0 bytes), not an image", name);
        return NULL;
    }
    if (o && (o->min_w < 0 || o->min_h < 0 || o->max_pixels < 0)) {
        av_fail("%s: negative min size or max_pixels", name);
        return NULL;
    }
    if (is_jpeg(bytes, n)) return decode_jpeg(bytes, n, o, name);
    if (is_png(bytes, n)) return decode_png(bytes, n, o, name);
    av_fail("%s: not a JPEG or PNG file (unrecognised signature)", name);
    return NULL;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        av_fail("cannot open image '%s': %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto fail;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
    buf = malloc(sz ? (size_t)sz : 1);
    if (!buf) {
        fclose(f);
        av_fail("cannot read image '%s': out of memory (%ld bytes)", path, sz);
        return NULL;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) goto fail;
    fclose(f);
    *n = (size_t)sz;
    return buf;
fail:
    av_fail("cannot read image '%s': %s", path, errno ? strerror(errno) : "short read");
    free(buf);
    fclose(f);
    return NULL;
}

av_image *av_image_load(const char *path, const av_decode_opts *o) {
    if (!path) {
        av_fail("av_image_load: no path");
        return NULL;
    }
    size_t n = 0;
    uint8_t *b = read_file(path, &n);
    if (!b) return NULL;
    av_image *im = av_image_decode(b, n, o, path);
    free(b);
    return im;
}

int av_image_probe(const char *path, int *w, int *h, int *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return av_fail("cannot open image '%s': %s", path, strerror(errno));
    uint8_t head[33];
    size_t k = fread(head, 1, sizeof head, f);
    int rc = -1, W = 0, H = 0, C = 0;
    if (k == 0) {
        av_fail("%s: empty file (0 bytes), not an image", path);
    } else if (is_jpeg(head, k)) {
        fseek(f, 2, SEEK_SET);
        src_t s = {NULL, 0, 0, f};
        rc = jpeg_header(&s, &W, &H, &C, path);
    } else if (is_png(head, k)) {
        rc = png_header(head, k, &W, &H, &C, path);
    } else {
        av_fail("%s: not a JPEG or PNG file (unrecognised signature)", path);
    }
    fclose(f);
    if (rc == 0) {
        if (w) *w = W;
        if (h) *h = H;
        if (c) *c = C;
    }
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------ */

static int check_image(const av_image *im, const char *fn) {
    if (!im || !im->data || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3 && im->c != 4))
        return av_fail("%s: invalid image (need w, h > 0 and 1, 3 or 4 channels)", fn);
    return 0;
}

int av_image_save_jpeg(const av_image *im, const char *path, int quality) {
    if (check_image(im, "av_image_save_jpeg") != 0) return -1;
    if (quality < 1 || quality > 100) return av_fail("%s: JPEG quality must be 1..100, got %d", path, quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return av_fail("%s: cannot initialise the JPEG encoder", path);
    unsigned char *out = NULL;
    unsigned long size = 0;
    int pf = im->c == 1 ? TJPF_GRAY : im->c == 4 ? TJPF_RGBX : TJPF_RGB;
    int sub = im->c == 1 ? TJSAMP_GRAY : TJSAMP_420;
    int rc = -1;
    if (tjCompress2(tj, im->data, im->w, im->w * im->c, im->h, pf, &out, &size, sub, quality, 0) != 0) {
        av_fail("%s: JPEG encoding failed (%s)", path, tjGetErrorStr2(tj));
    } else {
        const void *chunks[1] = {out};
        size_t sizes[1] = {size};
        rc = av_write_file_atomic(path, chunks, sizes, 1);
    }
    tjFree(out);
    tjDestroy(tj);
    return rc;
}

typedef struct {
    uint8_t *b;
    size_t n, cap;
    int oom;
    char msg[200];
} png_out;

static void png_write_mem(png_structp p, png_bytep src, png_size_t k) {
    png_out *o = png_get_io_ptr(p);
    if (o->n + k > o->cap) {
        size_t cap = o->cap ? o->cap : 65536;
        while (cap < o->n + k) cap *= 2;
        uint8_t *nb = realloc(o->b, cap);
        if (!nb) {
            o->oom = 1;
            png_error(p, "out of memory");
        }
        o->b = nb;
        o->cap = cap;
    }
    memcpy(o->b + o->n, src, k);
    o->n += k;
}
static void png_flush_mem(png_structp p) { (void)p; }
static void png_werr(png_structp p, png_const_charp msg) {
    png_out *o = png_get_error_ptr(p);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(p, 1);
}

int av_image_save_png(const av_image *im, const char *path) {
    if (check_image(im, "av_image_save_png") != 0) return -1;
    png_out o = {NULL, 0, 0, 0, {0}};
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_werr, png_warn);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_write_struct(&p, NULL);
        return av_fail("%s: cannot initialise the PNG encoder", path);
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        free(rows);
        free(o.b);
        return av_fail("%s: PNG encoding failed (%s)", path, o.msg);
    }
    png_set_write_fn(p, &o, png_write_mem, png_flush_mem);
    int ct = im->c == 1 ? PNG_COLOR_TYPE_GRAY : im->c == 4 ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB;
    png_set_IHDR(p, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(p, 6);
    png_write_info(p, info);
    rows = malloc(sizeof(png_bytep) * (size_t)im->h);
    if (!rows) png_error(p, "out of memory");
    for (int y = 0; y < im->h; y++) rows[y] = im->data + (size_t)y * im->w * im->c;
    png_write_image(p, rows);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    free(rows);
    const void *chunks[1] = {o.b};
    size_t sizes[1] = {o.n};
    int rc = av_write_file_atomic(path, chunks, sizes, 1);
    free(o.b);
    return rc;
}

static int ends_with_ci(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    if (a < b) return 0;
    for (size_t i = 0; i < b; i++) {
        char x = s[a - b + i];
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (x != suf[i]) return 0;
    }
    return 1;
}

int av_image_save(const av_image *im, const char *path, int quality) {
    if (!path) return av_fail("av_image_save: no path");
    if (ends_with_ci(path, ".jpg") || ends_with_ci(path, ".jpeg")) return av_image_save_jpeg(im, path, quality);
    if (ends_with_ci(path, ".png")) return av_image_save_png(im, path);
    return av_fail("%s: unknown image extension (use .jpg, .jpeg or .png)", path);
}
