/* Drawing on an av_image (runtime/image/draw.c): the primitives behind the
 * synthetic dataset generator (lua/aviary/data/synthetic.lua) and the figures
 * (aviary.draw: grids of samples with captions, boxes).
 *
 * Geometry is continuous, with the origin at the top-left corner of the image:
 * pixel (i, j) (0-based column, row) covers [i, i+1) x [j, j+1) and its centre
 * is (i + 0.5, j + 0.5); x grows to the right, y downwards; angles are radians,
 * clockwise on screen (x towards y). Shapes are antialiased: each pixel is
 * blended with the colour by the fraction of it the shape covers, times the
 * alpha (0..1). Colours are 8-bit RGB; on a 1-channel image their luma
 * (0.299 R + 0.587 G + 0.114 B) is drawn; on a 4-channel image the alpha
 * channel is left alone. Nothing is drawn outside the image (shapes are
 * clipped). Functions return 0, or -1 after av_fail(...) on bad arguments;
 * none keeps global state, so threads may draw on different images. */
#ifndef AVIARY_DRAW_H
#define AVIARY_DRAW_H

#include <stdint.h>
#include "aviary/image.h"

typedef struct av_rgb {
    uint8_t r, g, b;
} av_rgb;

typedef enum { AV_FILL_NONZERO = 0, AV_FILL_EVENODD = 1 } av_fill_rule;

/* the whole image */
int av_draw_fill(av_image *im, av_rgb c);
/* axis-aligned filled rectangle [x, x+w) x [y, y+h), antialiased at fractional edges */
int av_draw_rect(av_image *im, double x, double y, double w, double h, av_rgb c, double alpha);
/* outline of the integer rectangle of pixels x..x+w-1, y..y+h-1 (0-based), `width`
 * pixels thick inwards: exactly the pixels of the rectangle within `width` of its border */
int av_draw_box(av_image *im, int x, int y, int w, int h, int width, av_rgb c, double alpha);
/* filled ellipse centred at (cx, cy) with semi-axes rx, ry, rotated by `angle` */
int av_draw_ellipse(av_image *im, double cx, double cy, double rx, double ry, double angle, av_rgb c,
                    double alpha);
/* filled polygon of one or more contours: xy holds x0 y0 x1 y1 ..., contour k has
 * counts[k] points (closed implicitly); coverage by 4 sub-scanlines per row with
 * exact horizontal coverage */
int av_draw_polygon(av_image *im, const double *xy, const int *counts, int ncontours, av_fill_rule rule,
                    av_rgb c, double alpha);
/* polyline through n points, `width` thick, with round joins and caps; drawn as one
 * shape, so overlapping segments do not blend twice */
int av_draw_line(av_image *im, const double *xy, int n, double width, av_rgb c, double alpha);
/* linear gradient over the whole image (or blended by alpha): colour c0 at (x0, y0),
 * c1 at (x1, y1), constant along lines perpendicular to the segment, clamped beyond */
int av_draw_gradient(av_image *im, double x0, double y0, double x1, double y1, av_rgb c0, av_rgb c1,
                     double alpha);
/* multiplies every pixel by a gain that varies linearly from g0 at (x0, y0) to g1 at
 * (x1, y1), clamped beyond (lighting), and channel k by tint[k] (a colour cast; NULL:
 * none); results are clamped to 0..255 */
int av_draw_shade(av_image *im, double x0, double y0, double x1, double y1, double g0, double g1,
                  const double *tint);
/* adds noise uniform in [-amplitude, amplitude] to every sample (mono = 1: the same
 * value to all channels of a pixel); a hash of (seed, pixel, channel), so deterministic */
int av_draw_noise(av_image *im, double amplitude, uint64_t seed, int mono);
/* approximately Gaussian blur (three box passes) of standard deviation sigma over the
 * rectangle x, y, w, h (0-based, clipped; w or h <= 0: the whole image) */
int av_draw_blur(av_image *im, double sigma, int x, int y, int w, int h);
/* in-place conversion of an RGB(A) image's colours to their luma (R = G = B) */
int av_draw_grayscale(av_image *im);
/* copies src into dst with its top-left corner at (x, y), blended by alpha;
 * channels convert (gray -> RGB, RGB -> luma) */
int av_draw_paste(av_image *dst, const av_image *src, int x, int y, double alpha);

/* text in the built-in 5x7 bitmap font (ASCII 32-126; others draw as '?'), each font
 * pixel a scale x scale square; a glyph cell is 6 x 8 font pixels (one column and one
 * row of spacing); '\n' starts a new line. (x, y) is the top-left corner of the first
 * cell. Returns 0 or -1. */
int av_draw_text(av_image *im, int x, int y, const char *s, int scale, av_rgb c, double alpha);
/* the size in pixels of the text's box at this scale (the widest line x number of lines) */
void av_draw_text_size(const char *s, int scale, int *w, int *h);

#endif
