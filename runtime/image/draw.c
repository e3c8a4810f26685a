/* Drawing primitives on av_image (see aviary/draw.h). Every shape computes a
 * per-pixel coverage in [0, 1] and blends through blend_px. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/draw.h"

static int check_image(const av_image *im, const char *fn) {
    if (!im || !im->data || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3 && im->c != 4))
        return av_fail("%s: expected an image with 1, 3 or 4 channels", fn);
    return 0;
}

static int check_alpha(double a, const char *fn) {
    if (!(a >= 0 && a <= 1)) return av_fail("%s: alpha must be in [0, 1], got %g", fn, a);
    return 0;
}

/* the colour as the image's channels (luma for gray) */
typedef struct {
    float v[3];
    int n;
} pix_col;

static pix_col make_col(const av_image *im, av_rgb c) {
    pix_col p;
    if (im->c == 1) {
        p.n = 1;
        p.v[0] = 0.299f * c.r + 0.587f * c.g + 0.114f * c.b;
    } else {
        p.n = 3;
        p.v[0] = c.r, p.v[1] = c.g, p.v[2] = c.b;
    }
    return p;
}

static inline uint8_t clamp_u8(float v) {
    if (v <= 0) return 0;
    if (v >= 255) return 255;
    return (uint8_t)(v + 0.5f);
}

static inline void blend_px(av_image *im, int x, int y, const pix_col *p, float a) {
    uint8_t *d = im->data + ((size_t)y * im->w + x) * im->c;
    if (a >= 1.0f) {
        for (int k = 0; k < p->n; k++) d[k] = clamp_u8(p->v[k]);
    } else if (a > 0) {
        for (int k = 0; k < p->n; k++) d[k] = clamp_u8(d[k] + (p->v[k] - d[k]) * a);
    }
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

int av_draw_fill(av_image *im, av_rgb c) {
    if (check_image(im, "draw_fill")) return -1;
    pix_col p = make_col(im, c);
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) blend_px(im, x, y, &p, 1.0f);
    return 0;
}

int av_draw_rect(av_image *im, double x, double y, double w, double h, av_rgb c, double alpha) {
    if (check_image(im, "draw_rect") || check_alpha(alpha, "draw_rect")) return -1;
    if (!(w > 0 && h > 0)) return 0;
    pix_col p = make_col(im, c);
    double x1 = x + w, y1 = y + h;
    int ix0 = (int)floor(fmax(x, 0)), iy0 = (int)floor(fmax(y, 0));
    int ix1 = (int)ceil(fmin(x1, im->w)), iy1 = (int)ceil(fmin(y1, im->h));
    if (ix0 >= ix1 || iy0 >= iy1) return 0;
    float *cx = malloc(sizeof(float) * (size_t)(ix1 - ix0));
    if (!cx) return av_fail("draw_rect: out of memory");
    for (int i = ix0; i < ix1; i++) cx[i - ix0] = (float)fmax(0, fmin(x1, i + 1) - fmax(x, i));
    for (int j = iy0; j < iy1; j++) {
        float cy = (float)((fmin(y1, j + 1) - fmax(y, j)) * alpha);
        if (cy <= 0) continue;
        for (int i = ix0; i < ix1; i++) blend_px(im, i, j, &p, cx[i - ix0] * cy);
    }
    free(cx);
    return 0;
}

int av_draw_box(av_image *im, int x, int y, int w, int h, int width, av_rgb c, double alpha) {
    if (check_image(im, "draw_box") || check_alpha(alpha, "draw_box")) return -1;
    if (width < 1) return av_fail("draw_box: width must be at least 1, got %d", width);
    if (w <= 0 || h <= 0) return 0;
    pix_col p = make_col(im, c);
    for (int j = y > 0 ? y : 0; j < y + h && j < im->h; j++) {
        int edge_row = (j - y < width) || (y + h - 1 - j < width);
        for (int i = x > 0 ? x : 0; i < x + w && i < im->w; i++) {
            if (edge_row || i - x < width || x + w - 1 - i < width) blend_px(im, i, j, &p, (float)alpha);
        }
    }
    return 0;
}

int av_draw_ellipse(av_image *im, double cx, double cy, double rx, double ry, double angle, av_rgb c,
                    double alpha) {
    if (check_image(im, "draw_ellipse") || check_alpha(alpha, "draw_ellipse")) return -1;
    if (!(rx > 0 && ry > 0)) return 0;
    if (!isfinite(cx) || !isfinite(cy) || !isfinite(rx) || !isfinite(ry) || !isfinite(angle))
        return av_fail("draw_ellipse: coordinates must be finite");
    pix_col p = make_col(im, c);
    double cs = cos(angle), sn = sin(angle);
    double ex = sqrt(rx * rx * cs * cs + ry * ry * sn * sn), ey = sqrt(rx * rx * sn * sn + ry * ry * cs * cs);
    int x0 = (int)floor(fmax(cx - ex - 1, 0)), x1 = (int)ceil(fmin(cx + ex + 1, im->w));
    int y0 = (int)floor(fmax(cy - ey - 1, 0)), y1 = (int)ceil(fmin(cy + ey + 1, im->h));
    double irx = 1.0 / rx, iry = 1.0 / ry, irx2 = irx * irx, iry2 = iry * iry;
    /* tiny ellipses: the distance estimate breaks down; supersample instead */
    int small = rx < 1.5 || ry < 1.5;
    for (int j = y0; j < y1; j++) {
        for (int i = x0; i < x1; i++) {
            float cov;
            if (small) {
                int in = 0;
                for (int s = 0; s < 16; s++) {
                    double px = i + (s % 4 + 0.5) / 4 - cx, py = j + (s / 4 + 0.5) / 4 - cy;
                    double u = px * cs + py * sn, v = -px * sn + py * cs;
                    in += u * u * irx2 + v * v * iry2 <= 1.0;
                }
                cov = in / 16.0f;
            } else {
                double px = i + 0.5 - cx, py = j + 0.5 - cy;
                double u = px * cs + py * sn, v = -px * sn + py * cs;
                double f = u * u * irx2 + v * v * iry2 - 1.0;
                double g = 2.0 * sqrt(u * u * irx2 * irx2 + v * v * iry2 * iry2);
                double sd = g > 1e-12 ? f / g : -1e9; /* approximate signed distance in pixels */
                cov = clampf((float)(0.5 - sd), 0.0f, 1.0f);
            }
            if (cov > 0) blend_px(im, i, j, &p, cov * (float)alpha);
        }
    }
    return 0;
}

/* ---- polygons -------------------------------------------------------------------- */
typedef struct {
    double x, dir;
} crossing;

static int cmp_crossing(const void *a, const void *b) {
    double d = ((const crossing *)a)->x - ((const crossing *)b)->x;
    return d < 0 ? -1 : d > 0;
}

#define SUB 4

static int raster_polygon(av_image *im, const double *xy, const int *counts, int ncontours, av_fill_rule rule,
                          av_rgb c, double alpha, const char *fn) {
    if (check_image(im, fn) || check_alpha(alpha, fn)) return -1;
    if (ncontours < 0) return av_fail("%s: negative number of contours", fn);
    int npts = 0;
    for (int k = 0; k < ncontours; k++) {
        if (counts[k] < 0) return av_fail("%s: contour %d has a negative point count", fn, k + 1);
        npts += counts[k];
    }
    if (npts == 0) return 0;
    double ymin = INFINITY, ymax = -INFINITY, xmin = INFINITY, xmax = -INFINITY;
    for (int i = 0; i < npts; i++) {
        if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) return av_fail("%s: coordinates must be finite", fn);
        xmin = fmin(xmin, xy[2 * i]), xmax = fmax(xmax, xy[2 * i]);
        ymin = fmin(ymin, xy[2 * i + 1]), ymax = fmax(ymax, xy[2 * i + 1]);
    }
    int y0 = (int)floor(fmax(ymin, 0)), y1 = (int)ceil(fmin(ymax, im->h));
    int x0 = (int)floor(fmax(xmin, 0)), x1 = (int)ceil(fmin(xmax, im->w));
    if (y0 >= y1 || x0 >= x1) return 0;
    pix_col p = make_col(im, c);
    int span = x1 - x0;
    float *cov = calloc((size_t)span, sizeof *cov);
    crossing *cr = malloc((size_t)npts * sizeof *cr);
    if (!cov || !cr) {
        free(cov), free(cr);
        return av_fail("%s: out of memory", fn);
    }
    for (int j = y0; j < y1; j++) {
        memset(cov, 0, (size_t)span * sizeof *cov);
        int any = 0;
        for (int s = 0; s < SUB; s++) {
            double sy = j + (s + 0.5) / SUB;
            int nc = 0, base = 0;
            for (int k = 0; k < ncontours; k++) {
                int n = counts[k];
                for (int e = 0; e < n; e++) {
                    const double *a = xy + 2 * (base + e), *b = xy + 2 * (base + (e + 1) % n);
                    if ((a[1] <= sy && b[1] > sy) || (b[1] <= sy && a[1] > sy)) {
                        double t = (sy - a[1]) / (b[1] - a[1]);
                        cr[nc].x = a[0] + t * (b[0] - a[0]);
                        cr[nc].dir = b[1] > a[1] ? 1 : -1;
                        nc++;
                    }
                }
                base += n;
            }
            if (nc < 2) continue;
            qsort(cr, (size_t)nc, sizeof *cr, cmp_crossing);
            int wind = 0;
            for (int q = 0; q + 1 < nc; q++) {
                if (rule == AV_FILL_EVENODD) wind ^= 1;
                else wind += (int)cr[q].dir;
                if (!wind) continue;
                double xa = fmax(cr[q].x, x0), xb = fmin(cr[q + 1].x, x1);
                if (xb <= xa) continue;
                any = 1;
                int ia = (int)floor(xa), ib = (int)ceil(xb);
                for (int i = ia; i < ib; i++) {
                    double o = fmin(xb, i + 1) - fmax(xa, i);
                    if (o > 0) cov[i - x0] += (float)(o / SUB);
                }
            }
        }
        if (!any) continue;
        for (int i = 0; i < span; i++)
            if (cov[i] > 0) blend_px(im, x0 + i, j, &p, fminf(cov[i], 1.0f) * (float)alpha);
    }
    free(cov), free(cr);
    return 0;
}

int av_draw_polygon(av_image *im, const double *xy, const int *counts, int ncontours, av_fill_rule rule,
                    av_rgb c, double alpha) {
    return raster_polygon(im, xy, counts, ncontours, rule, c, alpha, "draw_polygon");
}

/* a thick polyline: one contour per segment (a rectangle) and one per point (a
 * round disc as a 16-gon), all counter-clockwise, filled with the nonzero rule */
#define CAP_N 16
int av_draw_line(av_image *im, const double *xy, int n, double width, av_rgb c, double alpha) {
    if (check_image(im, "draw_line")) return -1;
    if (n < 1 || !(width > 0)) return 0;
    int nseg = n - 1, ncont = nseg + n;
    double *pts = malloc(sizeof(double) * 2 * (size_t)(4 * nseg + CAP_N * n));
    int *counts = malloc(sizeof(int) * (size_t)ncont);
    if (!pts || !counts) {
        free(pts), free(counts);
        return av_fail("draw_line: out of memory");
    }
    double r = width / 2;
    int np = 0, k = 0;
    for (int s = 0; s < nseg; s++) {
        double ax = xy[2 * s], ay = xy[2 * s + 1], bx = xy[2 * s + 2], by = xy[2 * s + 3];
        double dx = bx - ax, dy = by - ay, len = sqrt(dx * dx + dy * dy);
        if (len < 1e-12) continue;
        double nx = -dy / len * r, ny = dx / len * r;
        double q[8] = {ax + nx, ay + ny, bx + nx, by + ny, bx - nx, by - ny, ax - nx, ay - ny};
        /* orient consistently: signed area positive */
        double area = 0;
        for (int v = 0; v < 4; v++) area += q[2 * v] * q[2 * ((v + 1) % 4) + 1] - q[2 * ((v + 1) % 4)] * q[2 * v + 1];
        for (int v = 0; v < 4; v++) {
            int src = area >= 0 ? v : 3 - v;
            pts[2 * np] = q[2 * src], pts[2 * np + 1] = q[2 * src + 1], np++;
        }
        counts[k++] = 4;
    }
    for (int v = 0; v < n; v++) {
        for (int a = 0; a < CAP_N; a++) {
            double t = 2 * M_PI * a / CAP_N;
            pts[2 * np] = xy[2 * v] + r * cos(t), pts[2 * np + 1] = xy[2 * v + 1] + r * sin(t), np++;
        }
        counts[k++] = CAP_N;
    }
    int rc = raster_polygon(im, pts, counts, k, AV_FILL_NONZERO, c, alpha, "draw_line");
    free(pts), free(counts);
    return rc;
}

int av_draw_gradient(av_image *im, double x0, double y0, double x1, double y1, av_rgb c0, av_rgb c1,
                     double alpha) {
    if (check_image(im, "draw_gradient") || check_alpha(alpha, "draw_gradient")) return -1;
    pix_col p0 = make_col(im, c0), p1 = make_col(im, c1);
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    if (l2 < 1e-12) dx = 0, dy = 0, l2 = 1;
    const float tx = (float)(dx / l2), a = (float)alpha;
    for (int j = 0; j < im->h; j++) {
        float traw = (float)(((0.5 - x0) * dx + (j + 0.5 - y0) * dy) / l2);
        for (int i = 0; i < im->w; i++, traw += tx) {
            float t = clampf(traw, 0, 1);
            pix_col q = p0;
            for (int k = 0; k < q.n; k++) q.v[k] = p0.v[k] + (p1.v[k] - p0.v[k]) * t;
            blend_px(im, i, j, &q, a);
        }
    }
    return 0;
}

int av_draw_shade(av_image *im, double x0, double y0, double x1, double y1, double g0, double g1,
                  const double *tint) {
    if (check_image(im, "draw_shade")) return -1;
    if (!(g0 >= 0 && g1 >= 0)) return av_fail("draw_shade: gains must be non-negative, got %g and %g", g0, g1);
    double tn[3] = {1, 1, 1};
    if (tint) {
        for (int k = 0; k < 3; k++) {
            if (!(tint[k] >= 0)) return av_fail("draw_shade: tint factors must be non-negative, got %g", tint[k]);
            tn[k] = tint[k];
        }
    }
    if (im->c == 1) tn[0] = 0.299 * tn[0] + 0.587 * tn[1] + 0.114 * tn[2];
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    if (l2 < 1e-12) dx = 0, dy = 0, l2 = 1;
    int nc = im->c == 4 ? 3 : im->c;
    /* the gain is affine in (i, j): step it along each row */
    const float gx = (float)((g1 - g0) * dx / l2);
    for (int j = 0; j < im->h; j++) {
        uint8_t *row = im->data + (size_t)j * im->w * im->c;
        double t0 = ((0.5 - x0) * dx + (j + 0.5 - y0) * dy) / l2;
        float graw = (float)(g0 + (g1 - g0) * t0);
        float glo = (float)fmin(g0, g1), ghi = (float)fmax(g0, g1);
        for (int i = 0; i < im->w; i++, graw += gx) {
            float g = clampf(graw, glo, ghi);
            for (int k = 0; k < nc; k++) row[i * im->c + k] = clamp_u8(row[i * im->c + k] * g * (float)tn[k]);
        }
    }
    return 0;
}

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int av_draw_noise(av_image *im, double amplitude, uint64_t seed, int mono) {
    if (check_image(im, "draw_noise")) return -1;
    if (!(amplitude >= 0)) return av_fail("draw_noise: amplitude must be non-negative, got %g", amplitude);
    int nc = im->c == 4 ? 3 : im->c;
    uint64_t key = mix64(seed + 0x9e3779b97f4a7c15ULL);
    size_t npx = (size_t)im->w * im->h;
    if (amplitude > 255) amplitude = 255;
    const int64_t amp256 = (int64_t)(amplitude * 256 + 0.5), span = 2 * amp256 + 1;
    for (size_t q = 0; q < npx; q++) {
        uint8_t *d = im->data + q * im->c;
        uint64_t h = mix64(key ^ (q * 0x9e3779b97f4a7c15ULL));
        for (int k = 0; k < nc; k++) {
            int64_t bits = (int64_t)((h >> (mono ? 43 : 43 - 21 * k)) & 0x1FFFFF); /* 21 bits per channel */
            /* uniform in [-amp, amp] in 1/256 steps, rounded */
            int v = d[k] * 256 + (int)(((bits * span) >> 21) - amp256) + 128;
            v >>= 8;
            d[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return 0;
}

/* one horizontal box pass of radius r over the rows y..y+h-1, columns x..x+w-1,
 * clamping at the region's edges; tmp holds one row of the region */
static void box_rows(av_image *im, int x, int y, int w, int h, int nc, int r, uint8_t *tmp) {
    const int C = im->c;
    const float inv = 1.0f / (2 * r + 1);
    for (int j = y; j < y + h; j++) {
        uint8_t *row = im->data + ((size_t)j * im->w + x) * C;
        memcpy(tmp, row, (size_t)w * C);
        for (int k = 0; k < nc; k++) {
            int acc = 0;
            for (int i = -r; i <= r; i++) acc += tmp[(i < 0 ? 0 : i >= w ? w - 1 : i) * C + k];
            for (int i = 0; i < w; i++) {
                row[i * C + k] = (uint8_t)(acc * inv + 0.5f);
                int in = i + r + 1, out = i - r;
                acc += tmp[(in >= w ? w - 1 : in) * C + k] - tmp[(out < 0 ? 0 : out) * C + k];
            }
        }
    }
}

/* one vertical pass: running sums of whole rows (cache-friendly); tmp holds the region */
static void box_cols(av_image *im, int x, int y, int w, int h, int nc, int r, uint8_t *tmp, int *acc) {
    const int C = im->c;
    const size_t rowb = (size_t)w * C;
    const float inv = 1.0f / (2 * r + 1);
    for (int j = 0; j < h; j++) memcpy(tmp + j * rowb, im->data + ((size_t)(y + j) * im->w + x) * C, rowb);
    memset(acc, 0, rowb * sizeof *acc);
    for (int j = -r; j <= r; j++) {
        const uint8_t *src = tmp + (size_t)(j < 0 ? 0 : j >= h ? h - 1 : j) * rowb;
        for (size_t q = 0; q < rowb; q++) acc[q] += src[q];
    }
    for (int j = 0; j < h; j++) {
        uint8_t *dst = im->data + ((size_t)(y + j) * im->w + x) * C;
        const uint8_t *in = tmp + (size_t)(j + r + 1 >= h ? h - 1 : j + r + 1) * rowb;
        const uint8_t *out = tmp + (size_t)(j - r < 0 ? 0 : j - r) * rowb;
        for (size_t q = 0; q < rowb; q++) {
            if (nc == C || (int)(q % C) < nc) dst[q] = (uint8_t)(acc[q] * inv + 0.5f);
            acc[q] += in[q] - out[q];
        }
    }
}

int av_draw_blur(av_image *im, double sigma, int x, int y, int w, int h) {
    if (check_image(im, "draw_blur")) return -1;
    if (!(sigma >= 0)) return av_fail("draw_blur: sigma must be non-negative, got %g", sigma);
    if (w <= 0 || h <= 0) x = 0, y = 0, w = im->w, h = im->h;
    if (x < 0) w += x, x = 0;
    if (y < 0) h += y, y = 0;
    if (x + w > im->w) w = im->w - x;
    if (y + h > im->h) h = im->h - y;
    if (w <= 0 || h <= 0) return 0;
    /* three boxes of width 2r+1 have variance 3 * ((2r+1)^2 - 1) / 12 = r (r + 1) */
    int r = (int)floor(0.5 * (sqrt(1.0 + 4.0 * sigma * sigma) - 1.0) + 0.5);
    if (r < 1) return 0;
    int nc = im->c == 4 ? 3 : im->c;
    size_t region = (size_t)w * h * im->c;
    uint8_t *tmp = malloc(region);
    int *acc = malloc(sizeof(int) * (size_t)w * im->c);
    if (!tmp || !acc) {
        free(tmp), free(acc);
        return av_fail("draw_blur: out of memory");
    }
    for (int pass = 0; pass < 3; pass++) {
        box_rows(im, x, y, w, h, nc, r, tmp);
        box_cols(im, x, y, w, h, nc, r, tmp, acc);
    }
    free(tmp), free(acc);
    return 0;
}

int av_draw_grayscale(av_image *im) {
    if (check_image(im, "draw_grayscale")) return -1;
    if (im->c == 1) return 0;
    size_t npx = (size_t)im->w * im->h;
    for (size_t q = 0; q < npx; q++) {
        uint8_t *d = im->data + q * im->c;
        uint8_t l = clamp_u8(0.299f * d[0] + 0.587f * d[1] + 0.114f * d[2]);
        d[0] = d[1] = d[2] = l;
    }
    return 0;
}

int av_draw_paste(av_image *dst, const av_image *src, int x, int y, double alpha) {
    if (check_image(dst, "draw_paste") || check_image(src, "draw_paste") || check_alpha(alpha, "draw_paste"))
        return -1;
    for (int j = 0; j < src->h; j++) {
        int dy = y + j;
        if (dy < 0 || dy >= dst->h) continue;
        for (int i = 0; i < src->w; i++) {
            int dx = x + i;
            if (dx < 0 || dx >= dst->w) continue;
            const uint8_t *s = src->data + ((size_t)j * src->w + i) * src->c;
            av_rgb c = src->c == 1 ? (av_rgb){s[0], s[0], s[0]} : (av_rgb){s[0], s[1], s[2]};
            pix_col p = make_col(dst, c);
            float a = (float)alpha;
            if (src->c == 4) a *= s[3] / 255.0f;
            blend_px(dst, dx, dy, &p, a);
        }
    }
    return 0;
}

/* ---- text ------------------------------------------------------------------------- */
/* 5x7 glyphs for ASCII 32..126: five column bytes each, bit 0 the top row */
static const uint8_t FONT5X7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x0C, 0x52, 0x52, 0x52, 0x3E},
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x44, 0x3D, 0x00},
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0x7C, 0x14, 0x14, 0x14, 0x08},
    {0x08, 0x14, 0x14, 0x18, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C},
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08},
};

void av_draw_text_size(const char *s, int scale, int *w, int *h) {
    int cols = 0, maxc = 0, lines = 1;
    if (scale < 1) scale = 1;
    for (; s && *s; s++) {
        if (*s == '\n') {
            lines++;
            cols = 0;
        } else if (++cols > maxc) maxc = cols;
    }
    if (w) *w = maxc * 6 * scale;
    if (h) *h = lines * 8 * scale;
}

int av_draw_text(av_image *im, int x, int y, const char *s, int scale, av_rgb c, double alpha) {
    if (check_image(im, "draw_text") || check_alpha(alpha, "draw_text")) return -1;
    if (scale < 1 || scale > 64) return av_fail("draw_text: scale must be in 1..64, got %d", scale);
    pix_col p = make_col(im, c);
    int cx = x, cy = y;
    for (; *s; s++) {
        unsigned ch = (unsigned char)*s;
        if (ch == '\n') {
            cx = x, cy += 8 * scale;
            continue;
        }
        if (ch < 32 || ch > 126) ch = '?';
        const uint8_t *g = FONT5X7[ch - 32];
        for (int col = 0; col < 5; col++)
            for (int row = 0; row < 7; row++) {
                if (!(g[col] >> row & 1)) continue;
                for (int dy = 0; dy < scale; dy++) {
                    int py = cy + row * scale + dy;
                    if (py < 0 || py >= im->h) continue;
                    for (int dx = 0; dx < scale; dx++) {
                        int px = cx + col * scale + dx;
                        if (px >= 0 && px < im->w) blend_px(im, px, py, &p, (float)alpha);
                    }
                }
            }
        cx += 6 * scale;
    }
    return 0;
}
