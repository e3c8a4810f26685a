/* A cairo image surface for plots; see aviary/surface.h. The surface is opaque
 * (cairo's RGB24: what is drawn is composited onto it), so PNGs are RGB. */
#include "aviary/surface.h"
#include "aviary/io.h"
#include "aviary/tensor.h"

#include <cairo/cairo.h> /* by its folder: works with or without pkg-config's -I */
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct av_surface {
    cairo_surface_t *surf;
    cairo_t *cr;
    int w, h;
};

av_surface *av_surface_new(int w, int h) {
    if (w < 1 || h < 1 || w > 32767 || h > 32767) {
        av_fail("surface size must be 1..32767 pixels each way, got %dx%d", w, h);
        return NULL;
    }
    av_surface *s = calloc(1, sizeof *s);
    if (!s) {
        av_fail("out of memory for a %dx%d surface", w, h);
        return NULL;
    }
    s->surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(s->surf) != CAIRO_STATUS_SUCCESS) {
        av_fail("cannot create a %dx%d surface: %s", w, h, cairo_status_to_string(cairo_surface_status(s->surf)));
        cairo_surface_destroy(s->surf);
        free(s);
        return NULL;
    }
    s->cr = cairo_create(s->surf);
    if (cairo_status(s->cr) != CAIRO_STATUS_SUCCESS) {
        av_fail("cannot create a drawing context: %s", cairo_status_to_string(cairo_status(s->cr)));
        cairo_destroy(s->cr);
        cairo_surface_destroy(s->surf);
        free(s);
        return NULL;
    }
    s->w = w, s->h = h;
    return s;
}

void av_surface_free(av_surface *s) {
    if (!s) return;
    cairo_destroy(s->cr);
    cairo_surface_destroy(s->surf);
    free(s);
}

void av_surface_size(const av_surface *s, int *w, int *h) {
    *w = s->w;
    *h = s->h;
}

int av_surface_status(const av_surface *s) {
    cairo_status_t st = cairo_status(s->cr);
    if (st != CAIRO_STATUS_SUCCESS) return av_fail("drawing failed: %s", cairo_status_to_string(st));
    return 0;
}

void av_surface_new_path(av_surface *s) { cairo_new_path(s->cr); }
void av_surface_move_to(av_surface *s, double x, double y) { cairo_move_to(s->cr, x, y); }
void av_surface_line_to(av_surface *s, double x, double y) { cairo_line_to(s->cr, x, y); }
void av_surface_rectangle(av_surface *s, double x, double y, double w, double h) { cairo_rectangle(s->cr, x, y, w, h); }
void av_surface_arc(av_surface *s, double xc, double yc, double r, double a1, double a2) {
    cairo_arc(s->cr, xc, yc, r, a1, a2);
}
void av_surface_close_path(av_surface *s) { cairo_close_path(s->cr); }
void av_surface_stroke(av_surface *s) { cairo_stroke(s->cr); }
void av_surface_stroke_preserve(av_surface *s) { cairo_stroke_preserve(s->cr); }
void av_surface_fill(av_surface *s) { cairo_fill(s->cr); }
void av_surface_fill_preserve(av_surface *s) { cairo_fill_preserve(s->cr); }
void av_surface_paint(av_surface *s) { cairo_paint(s->cr); }
void av_surface_set_rgba(av_surface *s, double r, double g, double b, double a) {
    cairo_set_source_rgba(s->cr, r, g, b, a);
}
void av_surface_set_line_width(av_surface *s, double w) { cairo_set_line_width(s->cr, w); }

int av_surface_set_dash(av_surface *s, const double *dashes, int n, double offset) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (!(dashes[i] >= 0)) return av_fail("dash lengths must be non-negative, got %g", dashes[i]);
        total += dashes[i];
    }
    if (n > 0 && total <= 0) return av_fail("dash lengths must not all be zero");
    cairo_set_dash(s->cr, dashes, n, offset);
    return 0;
}

void av_surface_set_line_cap(av_surface *s, int cap) {
    cairo_set_line_cap(s->cr, cap == 1 ? CAIRO_LINE_CAP_ROUND : cap == 2 ? CAIRO_LINE_CAP_SQUARE : CAIRO_LINE_CAP_BUTT);
}
void av_surface_set_line_join(av_surface *s, int join) {
    cairo_set_line_join(s->cr, join == 1 ? CAIRO_LINE_JOIN_ROUND : join == 2 ? CAIRO_LINE_JOIN_BEVEL : CAIRO_LINE_JOIN_MITER);
}
void av_surface_set_antialias(av_surface *s, int on) {
    cairo_set_antialias(s->cr, on ? CAIRO_ANTIALIAS_DEFAULT : CAIRO_ANTIALIAS_NONE);
}

void av_surface_save(av_surface *s) { cairo_save(s->cr); }
void av_surface_restore(av_surface *s) { cairo_restore(s->cr); }
void av_surface_translate(av_surface *s, double dx, double dy) { cairo_translate(s->cr, dx, dy); }
void av_surface_rotate(av_surface *s, double angle) { cairo_rotate(s->cr, angle); }
void av_surface_clip(av_surface *s) { cairo_clip(s->cr); }
void av_surface_reset_clip(av_surface *s) { cairo_reset_clip(s->cr); }

void av_surface_select_font(av_surface *s, const char *family, int bold, double size) {
    cairo_select_font_face(s->cr, family, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(s->cr, size);
}

void av_surface_set_font_size(av_surface *s, double size) { cairo_set_font_size(s->cr, size); }

void av_surface_text_extents(av_surface *s, const char *text, double out[6]) {
    cairo_text_extents_t e;
    cairo_text_extents(s->cr, text, &e);
    out[0] = e.width, out[1] = e.height, out[2] = e.x_bearing;
    out[3] = e.y_bearing, out[4] = e.x_advance, out[5] = e.y_advance;
}

void av_surface_show_text(av_surface *s, const char *text) { cairo_show_text(s->cr, text); }

int av_surface_paint_image(av_surface *s, const uint8_t *planar, int c, int h, int w, double x, double y,
                           double dw, double dh, int bilinear, double alpha) {
    if (c != 1 && c != 3) return av_fail("an image to paint must have 1 or 3 channels, got %d", c);
    if (w < 1 || h < 1 || w > 32767 || h > 32767) return av_fail("an image to paint must be 1..32767 pixels each way, got %dx%d", w, h);
    if (!(dw > 0) || !(dh > 0)) return 0;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(img);
        return av_fail("out of memory for a %dx%d image", w, h);
    }
    cairo_surface_flush(img);
    uint8_t *d = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    size_t plane = (size_t)w * h;
    for (int yy = 0; yy < h; yy++) {
        uint32_t *row = (uint32_t *)(d + (size_t)yy * stride);
        for (int xx = 0; xx < w; xx++) {
            size_t q = (size_t)yy * w + xx;
            uint32_t r = planar[q], g = c == 3 ? planar[plane + q] : r, b = c == 3 ? planar[2 * plane + q] : r;
            row[xx] = 0xff000000u | r << 16 | g << 8 | b;
        }
    }
    cairo_surface_mark_dirty(img);
    cairo_t *cr = s->cr;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, dw, dh);
    cairo_clip(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, dw / w, dh / h);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_t *pat = cairo_get_source(cr);
    cairo_pattern_set_filter(pat, bilinear ? CAIRO_FILTER_BILINEAR : CAIRO_FILTER_NEAREST);
    cairo_pattern_set_extend(pat, CAIRO_EXTEND_PAD);
    cairo_paint_with_alpha(cr, alpha);
    cairo_restore(cr);
    cairo_surface_destroy(img);
    return av_surface_status(s);
}

typedef struct {
    uint8_t *data;
    size_t n, cap;
} png_buf;

static cairo_status_t png_write(void *closure, const unsigned char *data, unsigned int length) {
    png_buf *b = closure;
    if (b->n + length > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + length) cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) return CAIRO_STATUS_NO_MEMORY;
        b->data = p, b->cap = cap;
    }
    memcpy(b->data + b->n, data, length);
    b->n += length;
    return CAIRO_STATUS_SUCCESS;
}

int av_surface_png(av_surface *s, uint8_t **out, size_t *n) {
    *out = NULL, *n = 0;
    if (av_surface_status(s)) return -1;
    cairo_surface_flush(s->surf);
    png_buf b = {0};
    cairo_status_t st = cairo_surface_write_to_png_stream(s->surf, png_write, &b);
    if (st != CAIRO_STATUS_SUCCESS) {
        free(b.data);
        return av_fail("cannot encode the PNG: %s", cairo_status_to_string(st));
    }
    *out = b.data, *n = b.n;
    return 0;
}

int av_surface_save_png(av_surface *s, const char *path) {
    uint8_t *data;
    size_t n;
    if (av_surface_png(s, &data, &n)) return -1;
    const void *chunks[1] = {data};
    size_t sizes[1] = {n};
    int rc = av_write_file_atomic(path, chunks, sizes, 1);
    free(data);
    return rc;
}

int av_surface_rgb(av_surface *s, uint8_t *out) {
    if (av_surface_status(s)) return -1;
    cairo_surface_flush(s->surf);
    const uint8_t *d = cairo_image_surface_get_data(s->surf);
    int stride = cairo_image_surface_get_stride(s->surf);
    size_t plane = (size_t)s->w * s->h;
    for (int y = 0; y < s->h; y++) {
        const uint32_t *row = (const uint32_t *)(d + (size_t)y * stride);
        for (int x = 0; x < s->w; x++) {
            uint32_t p = row[x];
            uint32_t r = (p >> 16) & 255, g = (p >> 8) & 255, b = p & 255;
            size_t q = (size_t)y * s->w + x;
            out[q] = (uint8_t)r;
            out[plane + q] = (uint8_t)g;
            out[2 * plane + q] = (uint8_t)b;
        }
    }
    return 0;
}

int av_apply_colormap(const void *src, int is_double, int64_t n, int64_t stride, const float *table, int k,
                      double vmin, double vmax, const uint8_t bad[3], uint8_t *out) {
    if (k < 2) return av_fail("a colour table needs at least 2 entries, got %d", k);
    if (!(vmax >= vmin)) return av_fail("vmax (%g) must be at least vmin (%g)", vmax, vmin);
    double span = vmax > vmin ? vmax - vmin : 1.0;
    for (int64_t i = 0; i < n; i++) {
        double v = is_double ? ((const double *)src)[i * stride] : ((const float *)src)[i * stride];
        uint8_t rgb[3];
        if (v != v) {
            memcpy(rgb, bad, 3);
        } else {
            double u = (v - vmin) / span;
            u = u < 0 ? 0 : u > 1 ? 1 : u;
            double f = u * (k - 1);
            int j = (int)f;
            if (j >= k - 1) j = k - 2;
            double t = f - j;
            for (int ch = 0; ch < 3; ch++) {
                double c = table[3 * j + ch] * (1 - t) + table[3 * (j + 1) + ch] * t;
                c = c * 255.0 + 0.5;
                rgb[ch] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
            }
        }
        out[i] = rgb[0];
        out[n + i] = rgb[1];
        out[2 * n + i] = rgb[2];
    }
    return 0;
}
