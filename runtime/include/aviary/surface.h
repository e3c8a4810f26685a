/* A drawing surface for plots (runtime/plot/surface.c): a thin C11 wrapper over
 * a cairo image surface (opaque RGB, cairo's RGB24 in 32-bit pixels) and its context, so that the binding never sees
 * cairo's types. Geometry is cairo's: origin at the top-left corner, x right,
 * y down, in pixels (pixel (i, j) covers [i, i+1) x [j, j+1)); angles are
 * radians, clockwise on screen. Colours are r, g, b, a in 0..1.
 *
 * Functions that can fail return 0, or -1 after av_fail(...) (or NULL for
 * av_surface_new); none aborts. A surface in an error state (cairo's status)
 * reports it from the next call that returns a status. Not thread-safe per
 * surface; different surfaces may be used from different threads. */
#ifndef AVIARY_SURFACE_H
#define AVIARY_SURFACE_H

#include <stddef.h>
#include <stdint.h>

typedef struct av_surface av_surface;

/* a w x h surface (1..32767 each), black; NULL after av_fail */
av_surface *av_surface_new(int w, int h);
void av_surface_free(av_surface *s);
void av_surface_size(const av_surface *s, int *w, int *h);
/* 0, or -1 with av_fail(cairo's message) when the surface is in an error state */
int av_surface_status(const av_surface *s);

/* paths */
void av_surface_new_path(av_surface *s);
void av_surface_move_to(av_surface *s, double x, double y);
void av_surface_line_to(av_surface *s, double x, double y);
void av_surface_rectangle(av_surface *s, double x, double y, double w, double h);
/* arc centred at (xc, yc), from angle a1 to a2 (radians, clockwise on screen) */
void av_surface_arc(av_surface *s, double xc, double yc, double r, double a1, double a2);
void av_surface_close_path(av_surface *s);

/* painting: stroke/fill clear the path, the _preserve forms keep it */
void av_surface_stroke(av_surface *s);
void av_surface_stroke_preserve(av_surface *s);
void av_surface_fill(av_surface *s);
void av_surface_fill_preserve(av_surface *s);
void av_surface_paint(av_surface *s);
void av_surface_set_rgba(av_surface *s, double r, double g, double b, double a);
void av_surface_set_line_width(av_surface *s, double w);
/* dashes: n on/off lengths (n = 0: solid); -1 on a negative length */
int av_surface_set_dash(av_surface *s, const double *dashes, int n, double offset);
/* cap: 0 butt, 1 round, 2 square; join: 0 miter, 1 round, 2 bevel */
void av_surface_set_line_cap(av_surface *s, int cap);
void av_surface_set_line_join(av_surface *s, int join);
/* 0 = none, 1 = default antialiasing (crisp rectangles at integer coordinates need none) */
void av_surface_set_antialias(av_surface *s, int on);

/* state */
void av_surface_save(av_surface *s);
void av_surface_restore(av_surface *s);
void av_surface_translate(av_surface *s, double dx, double dy);
void av_surface_rotate(av_surface *s, double angle);
void av_surface_clip(av_surface *s);       /* intersects the clip with the path, clears it */
void av_surface_reset_clip(av_surface *s);

/* text in a system font by family name ("DejaVu Sans"); bold 0/1; size in pixels */
void av_surface_select_font(av_surface *s, const char *family, int bold, double size);
void av_surface_set_font_size(av_surface *s, double size);
/* out: width, height, x_bearing, y_bearing, x_advance, y_advance of UTF-8 text */
void av_surface_text_extents(av_surface *s, const char *text, double out[6]);
/* draws text with its baseline origin at the current point (see move_to) */
void av_surface_show_text(av_surface *s, const char *text);

/* paints an image (planar uint8, c = 1 or 3 channels of h x w, contiguous) scaled into
 * the rectangle (x, y, dw, dh), nearest (bilinear = 0) or bilinear filtering, with alpha */
int av_surface_paint_image(av_surface *s, const uint8_t *planar, int c, int h, int w, double x, double y,
                           double dw, double dh, int bilinear, double alpha);

/* PNG (8-bit RGB) bytes in a malloc'd buffer (*out, *n; the caller frees) */
int av_surface_png(av_surface *s, uint8_t **out, size_t *n);
/* writes the PNG atomically (temporary name in the same folder, fsync, rename) */
int av_surface_save_png(av_surface *s, const char *path);
/* the pixels as planar RGB uint8 3 x h x w (opaque, so un-premultiplied), into out */
int av_surface_rgb(av_surface *s, uint8_t *out);

/* maps n values (read with stride `stride` elements from a float or double array:
 * is_double 0/1) through a colour table of k >= 2 RGB entries in 0..1 (linearly
 * interpolated, v clamped to [vmin, vmax]); writes planar uint8 3 x n into out
 * (plane stride n). NaN maps to `bad` (RGB 0..255). -1 on vmax < vmin or k < 2. */
int av_apply_colormap(const void *src, int is_double, int64_t n, int64_t stride, const float *table, int k,
                      double vmin, double vmax, const uint8_t bad[3], uint8_t *out);

#endif
