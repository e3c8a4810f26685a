/* Transforms declared as data (runtime/include/aviary/data.h), executed in C
 * on av_image, with a per-sample counter-based random stream (Philox-4x32-10
 * keyed by the seed; counter = sample index, epoch, draw number), so that
 * results do not depend on which worker thread runs a sample.
 *
 * The random parameters follow torchvision's get_params; the geometric
 * kernels follow PIL (what torchvision runs on PIL images): pixel centres at
 * +0.5, bilinear sampling with the edge rows handled as PIL's
 * bilinear_filter does, the fill colour outside the source. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/data.h"
#include "aviary/philox.h"

/* ---- per-sample streams: Philox-4x32-10 (aviary/philox.h) ------------------------ */

void av_sample_rng_init(av_sample_rng *r, uint64_t seed, uint64_t epoch, uint64_t index) {
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32) ^ 0x5bd1e995u;
    r->ctr[0] = (uint32_t)index;
    r->ctr[1] = (uint32_t)(index >> 32);
    r->ctr[2] = (uint32_t)epoch;
    r->ctr[3] = 0;
    r->left = 0;
}

uint32_t av_sample_rng_u32(av_sample_rng *r) {
    if (r->left == 0) {
        av_philox4x32(r->key, r->ctr, r->buf);
        r->ctr[3]++;
        r->left = 4;
    }
    return r->buf[4 - r->left--];
}

double av_sample_rng_uniform(av_sample_rng *r) {
    uint64_t a = av_sample_rng_u32(r) >> 5, b = av_sample_rng_u32(r) >> 6;
    return (double)(a * 67108864u + b) * (1.0 / 9007199254740992.0);
}

static double uniform(av_sample_rng *r, double lo, double hi) { return lo + (hi - lo) * av_sample_rng_uniform(r); }

int64_t av_sample_rng_randint(av_sample_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo + 1) return lo;
    uint64_t span = (uint64_t)(hi - lo);
    uint64_t x = ((uint64_t)av_sample_rng_u32(r) << 32) | av_sample_rng_u32(r);
    return lo + (int64_t)(x % span); /* bias below 2^-32 for spans this small */
}

/* ---- names and defaults -------------------------------------------------------------- */
static const char *const kind_names[AV_TF_NKINDS] = {
    "Resize", "CenterCrop", "RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
    "RandomRotation", "RandomPerspective", "ColorJitter", "Normalize", "RandomErasing"};

const char *av_transform_name(int kind) { return kind >= 0 && kind < AV_TF_NKINDS ? kind_names[kind] : "?"; }

int av_transform_kind_from_name(const char *name) {
    for (int k = 0; k < AV_TF_NKINDS; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

void av_transform_defaults(av_transform *t, int kind) {
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->interp = AV_INTERP_BILINEAR;
    t->p = 0.5;
    t->scale[0] = 0.08; t->scale[1] = 1.0;
    t->ratio[0] = 3.0 / 4.0; t->ratio[1] = 4.0 / 3.0;
    t->brightness[0] = t->contrast[0] = t->saturation[0] = 1; /* off: hi < lo */
    t->hue[0] = 1; t->hue[1] = 0;
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(t->mean, mean, sizeof mean);
    memcpy(t->std, std, sizeof std);
    if (kind == AV_TF_RANDOM_ERASING) {
        t->scale[0] = 0.02; t->scale[1] = 0.33;
        t->ratio[0] = 0.3; t->ratio[1] = 3.3;
    }
    if (kind == AV_TF_PERSPECTIVE) t->distortion = 0.5;
}

static bool is_image_kind(int k) { return k != AV_TF_NORMALIZE && k != AV_TF_RANDOM_ERASING; }

int av_transforms_check(const av_transform *tf, int n) {
    int stage = 0; /* 0 image, 1 tensor */
    for (int i = 0; i < n; i++) {
        const av_transform *t = &tf[i];
        const char *nm = av_transform_name(t->kind);
        if (t->kind < 0 || t->kind >= AV_TF_NKINDS) return av_fail("transform %d: unknown kind %d", i + 1, t->kind);
        if (is_image_kind(t->kind) && stage == 1)
            return av_fail("transform %d (%s) works on images and must come before Normalize", i + 1, nm);
        if (t->kind == AV_TF_NORMALIZE) {
            if (stage == 1) return av_fail("transform %d: Normalize given twice", i + 1);
            stage = 1;
            for (int c = 0; c < 3; c++)
                if (!(t->std[c] > 0)) return av_fail("transform %d (Normalize): std must be > 0", i + 1);
        }
        if (t->kind == AV_TF_RANDOM_ERASING && stage == 0)
            return av_fail("transform %d (RandomErasing) works on the tensor and must come after Normalize", i + 1);
        if (t->p < 0 || t->p > 1) return av_fail("transform %d (%s): p must be in [0, 1], got %g", i + 1, nm, t->p);
        switch (t->kind) {
        case AV_TF_RESIZE:
            if (t->size <= 0 && (t->h <= 0 || t->w <= 0))
                return av_fail("transform %d (Resize): size must be positive", i + 1);
            break;
        case AV_TF_CENTER_CROP:
        case AV_TF_RANDOM_RESIZED_CROP:
            if (t->h <= 0 || t->w <= 0) return av_fail("transform %d (%s): size must be positive", i + 1, nm);
            if (t->kind == AV_TF_RANDOM_RESIZED_CROP &&
                (t->scale[0] > t->scale[1] || t->ratio[0] > t->ratio[1] || t->scale[0] < 0 || t->ratio[0] <= 0))
                return av_fail("transform %d (%s): scale and ratio must be increasing (lo, hi) pairs", i + 1, nm);
            break;
        case AV_TF_PERSPECTIVE:
            if (t->distortion < 0 || t->distortion > 1)
                return av_fail("transform %d (RandomPerspective): distortion_scale must be in [0, 1]", i + 1);
            break;
        case AV_TF_COLOR_JITTER:
            if (t->hue[1] >= t->hue[0] && (t->hue[0] < -0.5 || t->hue[1] > 0.5))
                return av_fail("transform %d (ColorJitter): hue must be in [-0.5, 0.5]", i + 1);
            break;
        case AV_TF_RANDOM_ERASING:
            if (t->scale[0] > t->scale[1] || t->ratio[0] > t->ratio[1] || t->ratio[0] <= 0)
                return av_fail("transform %d (RandomErasing): scale and ratio must be increasing pairs", i + 1);
            break;
        default: break;
        }
    }
    return 0;
}

int av_transforms_out_size(const av_transform *tf, int n, int *h, int *w) {
    *h = *w = 0;
    for (int i = 0; i < n; i++) {
        const av_transform *t = &tf[i];
        if (t->kind == AV_TF_RESIZE && t->size > 0) *h = *w = 0;
        else if (t->kind == AV_TF_RESIZE || t->kind == AV_TF_CENTER_CROP || t->kind == AV_TF_RANDOM_RESIZED_CROP) {
            *h = t->h;
            *w = t->w;
        }
    }
    return 0;
}

/* ---- parameters as torchvision draws them ----------------------------------------------- */
void av_rrc_params(av_sample_rng *r, int width, int height, const double scale[2], const double ratio[2],
                   int *top, int *left, int *ch, int *cw) {
    double area = (double)width * height;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(r, scale[0], scale[1]);
        double ar = exp(uniform(r, lr0, lr1));
        int w = (int)nearbyint(sqrt(target * ar)), h = (int)nearbyint(sqrt(target / ar));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            *top = (int)av_sample_rng_randint(r, 0, height - h + 1);
            *left = (int)av_sample_rng_randint(r, 0, width - w + 1);
            *ch = h;
            *cw = w;
            return;
        }
    }
    double in_ratio = (double)width / height;
    int w, h;
    if (in_ratio < ratio[0]) {
        w = width;
        h = (int)nearbyint(w / ratio[0]);
    } else if (in_ratio > ratio[1]) {
        h = height;
        w = (int)nearbyint(h * ratio[1]);
    } else {
        w = width;
        h = height;
    }
    *top = (height - h) / 2;
    *left = (width - w) / 2;
    *ch = h;
    *cw = w;
}

/* torchvision's Resize size rule: shorter side -> size, the other int(size * long / short) */
static void resize_dims(const av_transform *t, int w, int h, int *ow, int *oh) {
    if (t->size <= 0) {
        *ow = t->w;
        *oh = t->h;
        return;
    }
    int s = t->size;
    bool wshort = w <= h;
    int sh = wshort ? w : h, lg = wshort ? h : w;
    int nl = (int)((int64_t)s * lg / sh), ns = s;
    if (t->max_size > 0 && nl > t->max_size) {
        ns = (int)((int64_t)t->max_size * ns / nl);
        nl = t->max_size;
    }
    *ow = wshort ? ns : nl;
    *oh = wshort ? nl : ns;
}

/* ---- PIL-style geometric warps ------------------------------------------------------------- */
typedef void (*map_fn)(const double *a, double x, double y, double *xin, double *yin);

static void map_affine(const double *a, double x, double y, double *xi, double *yi) {
    *xi = a[0] * x + a[1] * y + a[2];
    *yi = a[3] * x + a[4] * y + a[5];
}

static void map_persp(const double *a, double x, double y, double *xi, double *yi) {
    double d = a[6] * x + a[7] * y + 1;
    *xi = (a[0] * x + a[1] * y + a[2]) / d;
    *yi = (a[3] * x + a[4] * y + a[5]) / d;
}

static av_image *warp(const av_image *im, map_fn f, const double *a, const double fill[3]) {
    av_image *o = av_image_new(im->w, im->h, im->c);
    if (!o) return NULL;
    int W = im->w, H = im->h, C = im->c;
    uint8_t fc[4];
    for (int c = 0; c < 4; c++) {
        double v = fill ? fill[c < 3 ? c : 2] : 0;
        fc[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    for (int y = 0; y < H; y++) {
        uint8_t *orow = o->data + (size_t)y * W * C;
        for (int x = 0; x < W; x++) {
            double xin, yin;
            f(a, x + 0.5, y + 0.5, &xin, &yin);
            uint8_t *op = orow + (size_t)x * C;
            if (!(xin >= 0 && xin < W && yin >= 0 && yin < H)) {
                for (int c = 0; c < C; c++) op[c] = fc[c];
                continue;
            }
            xin -= 0.5;
            yin -= 0.5;
            int xf = (int)floor(xin), yf = (int)floor(yin);
            double dx = xin - xf, dy = yin - yf;
            int x0 = xf < 0 ? 0 : xf >= W ? W - 1 : xf, x1 = xf + 1 < 0 ? 0 : xf + 1 >= W ? W - 1 : xf + 1;
            int y0 = yf < 0 ? 0 : yf >= H ? H - 1 : yf;
            bool has_y1 = yf + 1 >= 0 && yf + 1 < H;
            const uint8_t *r0 = im->data + (size_t)y0 * W * C, *r1 = has_y1 ? im->data + (size_t)(yf + 1) * W * C : NULL;
            for (int c = 0; c < C; c++) {
                double v1 = r0[x0 * C + c] + dx * (r0[x1 * C + c] - r0[x0 * C + c]);
                double v2 = r1 ? r1[x0 * C + c] + dx * (r1[x1 * C + c] - r1[x0 * C + c]) : v1;
                double v = v1 + dy * (v2 - v1);
                int iv = (int)v; /* PIL truncates */
                op[c] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
            }
        }
    }
    return o;
}

av_image *av_image_rotate(const av_image *im, double angle, const double fill[3]) {
    if (!im) return av_fail("rotate: no image"), NULL;
    double ang = -fmod(angle, 360.0) * M_PI / 180.0;
    /* PIL rounds the matrix entries to 15 digits */
    double cs = round(cos(ang) * 1e15) / 1e15, sn = round(sin(ang) * 1e15) / 1e15;
    double a[6] = {cs, sn, 0, -sn, cs, 0};
    double cx = im->w / 2.0, cy = im->h / 2.0;
    a[2] = a[0] * -cx + a[1] * -cy + cx;
    a[5] = a[3] * -cx + a[4] * -cy + cy;
    return warp(im, map_affine, a, fill);
}

/* solves the 8x8 system of torchvision's _get_perspective_coeffs (maps endpoints to startpoints) */
static int perspective_coeffs(const double *start, const double *end, double *out) {
    double A[8][9];
    for (int i = 0; i < 4; i++) {
        double px = end[2 * i], py = end[2 * i + 1], qx = start[2 * i], qy = start[2 * i + 1];
        double r0[9] = {px, py, 1, 0, 0, 0, -qx * px, -qx * py, qx};
        double r1[9] = {0, 0, 0, px, py, 1, -qy * px, -qy * py, qy};
        memcpy(A[2 * i], r0, sizeof r0);
        memcpy(A[2 * i + 1], r1, sizeof r1);
    }
    for (int c = 0; c < 8; c++) {
        int piv = c;
        for (int r = c + 1; r < 8; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        if (fabs(A[piv][c]) < 1e-12) return av_fail("perspective: degenerate corner points");
        if (piv != c)
            for (int k = 0; k < 9; k++) {
                double tmp = A[c][k];
                A[c][k] = A[piv][k];
                A[piv][k] = tmp;
            }
        for (int r = 0; r < 8; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k < 9; k++) A[r][k] -= f * A[c][k];
        }
    }
    for (int c = 0; c < 8; c++) out[c] = (double)(float)(A[c][8] / A[c][c]); /* torchvision casts to float32 */
    return 0;
}

av_image *av_image_perspective(const av_image *im, const double start[8], const double end[8],
                               const double fill[3]) {
    if (!im) return av_fail("perspective: no image"), NULL;
    double a[8];
    if (perspective_coeffs(start, end, a) < 0) return NULL;
    return warp(im, map_persp, a, fill);
}

/* ---- colour (PIL's ImageEnhance and torchvision's F_pil.adjust_hue) ----------------------- */
static inline uint8_t blend8(double deg, double v, double f) {
    float t = (float)deg + (float)f * ((float)v - (float)deg); /* PIL's ImagingBlend: float, truncated */
    return t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)t;
}

static inline int gray_l(const uint8_t *p) { /* PIL's L24: ITU-R 601-2 */
    return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
}

static void rgb2hsv(const uint8_t *in, uint8_t *out) {
    int r = in[0], g = in[1], b = in[2];
    int mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    out[2] = (uint8_t)mx;
    if (mx == mn) {
        out[0] = out[1] = 0;
        return;
    }
    float cr = (float)(mx - mn), s = cr / (float)mx;
    float rc = (float)(mx - r) / cr, gc = (float)(mx - g) / cr, bc = (float)(mx - b) / cr, h;
    if (r == mx) h = bc - gc;
    else if (g == mx) h = 2.0f + rc - bc;
    else h = 4.0f + gc - rc;
    h = (float)fmod(h / 6.0 + 1.0, 1.0);
    int uh = (int)(h * 255.0), us = (int)(s * 255.0);
    out[0] = (uint8_t)(uh < 0 ? 0 : uh > 255 ? 255 : uh);
    out[1] = (uint8_t)(us < 0 ? 0 : us > 255 ? 255 : us);
}

static void hsv2rgb(const uint8_t *in, uint8_t *out) {
    int h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = (uint8_t)v;
        return;
    }
    int i = (int)floor((float)h * 6.0 / 255.0);
    float f = (float)((float)h * 6.0 / 255.0 - (float)i), fs = (float)(s / 255.0);
    int p = (int)round((float)v * (1.0 - fs)), q = (int)round((float)v * (1.0 - fs * f)),
        t = (int)round((float)v * (1.0 - fs * (1.0 - f)));
    uint8_t up = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p), uq = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q),
            ut = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t), uv = (uint8_t)v;
    switch (i % 6) {
    case 0: out[0] = uv; out[1] = ut; out[2] = up; break;
    case 1: out[0] = uq; out[1] = uv; out[2] = up; break;
    case 2: out[0] = up; out[1] = uv; out[2] = ut; break;
    case 3: out[0] = up; out[1] = uq; out[2] = uv; break;
    case 4: out[0] = ut; out[1] = up; out[2] = uv; break;
    default: out[0] = uv; out[1] = up; out[2] = uq; break;
    }
}

int av_image_adjust(av_image *im, int which, double f) {
    if (!im || im->c != 3) return av_fail("adjust colour: expected an RGB image");
    size_t n = (size_t)im->w * im->h;
    uint8_t *d = im->data;
    switch (which) {
    case 0:
        for (size_t i = 0; i < 3 * n; i++) d[i] = blend8(0, d[i], f);
        break;
    case 1: {
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += gray_l(d + 3 * i);
        int mean = (int)(sum / (double)n + 0.5);
        for (size_t i = 0; i < 3 * n; i++) d[i] = blend8(mean, d[i], f);
        break;
    }
    case 2:
        for (size_t i = 0; i < n; i++) {
            int g = gray_l(d + 3 * i);
            for (int c = 0; c < 3; c++) d[3 * i + c] = blend8(g, d[3 * i + c], f);
        }
        break;
    case 3: {
        if (f < -0.5 || f > 0.5) return av_fail("adjust_hue: factor %g is not in [-0.5, 0.5]", f);
        uint8_t shift = (uint8_t)(int64_t)(f * 255); /* np.uint8(hue_factor * 255), wrapping */
        for (size_t i = 0; i < n; i++) {
            uint8_t hsv[3];
            rgb2hsv(d + 3 * i, hsv);
            hsv[0] = (uint8_t)(hsv[0] + shift);
            hsv2rgb(hsv, d + 3 * i);
        }
        break;
    }
    default: return av_fail("adjust colour: unknown adjustment %d", which);
    }
    return 0;
}

/* ---- the pipeline ---------------------------------------------------------------------------- */
static av_image *center_crop(const av_image *im, int ch, int cw) {
    int top = ch > im->h ? -((ch - im->h) / 2) : (int)nearbyint((im->h - ch) / 2.0);
    int left = cw > im->w ? -((cw - im->w) / 2) : (int)nearbyint((im->w - cw) / 2.0);
    return av_image_crop(im, left, top, cw, ch);
}

/* box of a first RandomResizedCrop drawn on the original size (for DCT-scaled decodes) */
typedef struct {
    bool have;
    int ow, oh;          /* original size */
    int top, left, ch, cw;
} pre_crop;

static av_image *apply_one(const av_transform *t, const av_image *im, av_sample_rng *r, const pre_crop *pc,
                           bool *same) {
    *same = false;
    switch (t->kind) {
    case AV_TF_RESIZE: {
        int ow, oh;
        if (pc && pc->have) resize_dims(t, pc->ow, pc->oh, &ow, &oh);
        else resize_dims(t, im->w, im->h, &ow, &oh);
        if (ow == im->w && oh == im->h) {
            *same = true;
            return (av_image *)im;
        }
        return av_image_resize(im, ow, oh, (av_interp)t->interp);
    }
    case AV_TF_CENTER_CROP: return center_crop(im, t->h, t->w);
    case AV_TF_RANDOM_RESIZED_CROP: {
        if (pc && pc->have) {
            double sx = (double)im->w / pc->ow, sy = (double)im->h / pc->oh;
            return av_image_resized_crop(im, pc->left * sx, pc->top * sy, pc->cw * sx, pc->ch * sy, t->w, t->h,
                                         (av_interp)t->interp);
        }
        int top, left, ch, cw;
        av_rrc_params(r, im->w, im->h, t->scale, t->ratio, &top, &left, &ch, &cw);
        return av_image_resized_crop(im, left, top, cw, ch, t->w, t->h, (av_interp)t->interp);
    }
    case AV_TF_HFLIP:
    case AV_TF_VFLIP:
        if (av_sample_rng_uniform(r) < t->p) return t->kind == AV_TF_HFLIP ? av_image_hflip(im) : av_image_vflip(im);
        *same = true;
        return (av_image *)im;
    case AV_TF_ROTATION: {
        double angle = uniform(r, t->degrees[0], t->degrees[1]);
        return av_image_rotate(im, angle, t->fill);
    }
    case AV_TF_PERSPECTIVE: {
        if (!(av_sample_rng_uniform(r) < t->p)) {
            *same = true;
            return (av_image *)im;
        }
        int W = im->w, H = im->h, hw = W / 2, hh = H / 2;
        int dw = (int)(t->distortion * hw), dh = (int)(t->distortion * hh);
        double end[8];
        end[0] = (double)av_sample_rng_randint(r, 0, dw + 1);
        end[1] = (double)av_sample_rng_randint(r, 0, dh + 1);
        end[2] = (double)av_sample_rng_randint(r, W - dw - 1, W);
        end[3] = (double)av_sample_rng_randint(r, 0, dh + 1);
        end[4] = (double)av_sample_rng_randint(r, W - dw - 1, W);
        end[5] = (double)av_sample_rng_randint(r, H - dh - 1, H);
        end[6] = (double)av_sample_rng_randint(r, 0, dw + 1);
        end[7] = (double)av_sample_rng_randint(r, H - dh - 1, H);
        double start[8] = {0, 0, W - 1, 0, W - 1, H - 1, 0, H - 1};
        return av_image_perspective(im, start, end, t->fill);
    }
    case AV_TF_COLOR_JITTER: {
        int order[4] = {0, 1, 2, 3};
        for (int i = 3; i > 0; i--) { /* randperm(4) */
            int j = (int)av_sample_rng_randint(r, 0, i + 1), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        const double *rng4[4] = {t->brightness, t->contrast, t->saturation, t->hue};
        double f[4];
        bool on[4];
        for (int k = 0; k < 4; k++) {
            on[k] = rng4[k][1] >= rng4[k][0];
            f[k] = on[k] ? uniform(r, rng4[k][0], rng4[k][1]) : 0;
        }
        av_image *o = av_image_new(im->w, im->h, im->c);
        if (!o) return NULL;
        memcpy(o->data, im->data, (size_t)im->w * im->h * im->c);
        for (int k = 0; k < 4; k++) {
            int which = order[k];
            if (on[which] && av_image_adjust(o, which, f[which]) < 0) {
                av_image_free(o);
                return NULL;
            }
        }
        return o;
    }
    default: av_fail("transform %s is not an image transform", av_transform_name(t->kind)); return NULL;
    }
}

static void random_erasing(const av_transform *t, av_sample_rng *r, float *x, int C, int H, int W) {
    if (!(av_sample_rng_uniform(r) < t->p)) return;
    double area = (double)H * W, lr0 = log(t->ratio[0]), lr1 = log(t->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double ea = area * uniform(r, t->scale[0], t->scale[1]);
        double ar = exp(uniform(r, lr0, lr1));
        int h = (int)nearbyint(sqrt(ea * ar)), w = (int)nearbyint(sqrt(ea / ar));
        if (!(h < H && w < W)) continue;
        int i = (int)av_sample_rng_randint(r, 0, H - h + 1), j = (int)av_sample_rng_randint(r, 0, W - w + 1);
        for (int c = 0; c < C; c++)
            for (int y = i; y < i + h; y++)
                for (int xx = j; xx < j + w; xx++) x[((size_t)c * H + y) * W + xx] = (float)t->value;
        return;
    }
}

/* runs the image transforms from `first`, consuming im; returns the final image */
static av_image *run_images(const av_transform *tf, int n, int first, av_image *im, av_sample_rng *r,
                            const pre_crop *pc) {
    for (int i = first; i < n && im; i++) {
        if (!is_image_kind(tf[i].kind)) break;
        bool same;
        av_image *o = apply_one(&tf[i], im, r, i == first ? pc : NULL, &same);
        if (same) continue;
        av_image_free(im);
        im = o;
    }
    return im;
}

static int finish_tensor(const av_transform *tf, int n, const av_image *im, av_sample_rng *r, float *dst) {
    const av_transform *norm = NULL;
    for (int i = 0; i < n; i++)
        if (tf[i].kind == AV_TF_NORMALIZE) norm = &tf[i];
    if (av_image_to_tensor_into(im, norm ? norm->mean : NULL, norm ? norm->std : NULL, dst) < 0) return -1;
    for (int i = 0; i < n; i++)
        if (tf[i].kind == AV_TF_RANDOM_ERASING) random_erasing(&tf[i], r, dst, im->c, im->h, im->w);
    return 0;
}

static av_image *copy_image(const av_image *im) {
    av_image *o = av_image_new(im->w, im->h, im->c);
    if (o) memcpy(o->data, im->data, (size_t)im->w * im->h * im->c);
    return o;
}

/* keeps DCT scaling to 1/2, 1/4 and 1/8, which libjpeg-turbo decodes with SIMD (its other
 * N/16 factors run slower than a full decode); no hint when none of them is large enough */
static void pow2_hint(int ow, int oh, av_decode_opts *d) {
    int mw = d->min_w, mh = d->min_h;
    d->min_w = d->min_h = 0;
    for (int k = 8; k >= 2; k /= 2) {
        int sw = (ow + k - 1) / k, sh = (oh + k - 1) / k;
        if (sw >= mw && sh >= mh) {
            d->min_w = sw;
            d->min_h = sh;
            return;
        }
    }
}

/* decodes with DCT-scaling hints from the first transform and runs the image transforms */
static av_image *load_and_transform(const av_transform *tf, int n, const char *path, const av_sample_opts *o,
                                    av_sample_rng *r) {
    av_decode_opts d = {0};
    d.max_pixels = o ? o->max_pixels : 0;
    d.want_channels = 3;
    pre_crop pc = {0};
    if (o && o->dct_scaling && n > 0) {
        const av_transform *t = &tf[0];
        int ow, oh, oc;
        if ((t->kind == AV_TF_RESIZE || t->kind == AV_TF_RANDOM_RESIZED_CROP) && av_image_probe(path, &ow, &oh, &oc) == 0 &&
            ow > 0 && oh > 0) {
            pc.ow = ow;
            pc.oh = oh;
            if (t->kind == AV_TF_RESIZE) {
                int rw, rh;
                resize_dims(t, ow, oh, &rw, &rh);
                d.min_w = rw;
                d.min_h = rh;
                pc.have = true;
            } else {
                av_rrc_params(r, ow, oh, t->scale, t->ratio, &pc.top, &pc.left, &pc.ch, &pc.cw);
                d.min_w = (int)ceil((double)ow * t->w / pc.cw);
                d.min_h = (int)ceil((double)oh * t->h / pc.ch);
                pc.have = true;
            }
            pow2_hint(ow, oh, &d);
        } else {
            av_error_clear();
        }
    }
    av_image *im = av_image_load(path, &d);
    if (!im) return NULL;
    if (pc.have && (im->w > pc.ow || im->h > pc.oh)) pc.have = false; /* not the header's size (orientation) */
    return run_images(tf, n, 0, im, r, pc.have ? &pc : NULL);
}

static av_tensor *image_to_result(const av_transform *tf, int n, av_image *im, av_sample_rng *r) {
    int64_t shape[3] = {im->c, im->h, im->w};
    av_tensor *t = av_empty(3, shape, AV_F32);
    if (!t || finish_tensor(tf, n, im, r, (float *)av_data(t)) < 0) {
        av_release(t);
        av_image_free(im);
        return NULL;
    }
    av_image_free(im);
    return t;
}

av_tensor *av_transforms_run_file(const av_transform *tf, int n, const char *path, const av_sample_opts *o,
                                  uint64_t seed, uint64_t epoch, uint64_t index) {
    if (av_transforms_check(tf, n) < 0) return NULL;
    av_sample_rng r;
    av_sample_rng_init(&r, seed, epoch, index);
    av_image *im = load_and_transform(tf, n, path, o, &r);
    if (!im) return NULL;
    return image_to_result(tf, n, im, &r);
}

av_tensor *av_transforms_run_image(const av_transform *tf, int n, const av_image *src, uint64_t seed,
                                   uint64_t epoch, uint64_t index) {
    if (av_transforms_check(tf, n) < 0) return NULL;
    av_sample_rng r;
    av_sample_rng_init(&r, seed, epoch, index);
    av_image *im = copy_image(src);
    if (!im) return NULL;
    im = run_images(tf, n, 0, im, &r, NULL);
    if (!im) return NULL;
    return image_to_result(tf, n, im, &r);
}

int av_transforms_run_file_into(const av_transform *tf, int n, const char *path, const av_sample_opts *o,
                                uint64_t seed, uint64_t epoch, uint64_t index, int h, int w, float *dst) {
    av_sample_rng r;
    av_sample_rng_init(&r, seed, epoch, index);
    av_image *im = load_and_transform(tf, n, path, o, &r);
    if (!im) return -1;
    if (im->h != h || im->w != w || im->c != 3) {
        av_fail("'%s': the transforms gave %dx%d, the batch is %dx%d", path, im->h, im->w, h, w);
        av_image_free(im);
        return -1;
    }
    int rc = finish_tensor(tf, n, im, &r, dst);
    av_image_free(im);
    return rc;
}
