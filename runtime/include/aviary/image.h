/* Images: decoding (libjpeg-turbo's TurboJPEG, libpng), encoding, and the
 * geometric and photometric operations the data pipeline and the
 * visualisations share. An av_image is 8-bit, interleaved (row-major H x W x
 * C, C = 1, 3 or 4), owned by whoever created it; av_image_free releases it.
 * Every function returns NULL / -1 after av_fail(...) with a message naming
 * the file or the operation; none aborts. Thread-safe: no global state (the
 * data loader calls these from its worker threads). */
#ifndef AVIARY_IMAGE_H
#define AVIARY_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "aviary/tensor.h"

typedef struct av_image {
    int w, h, c;       /* width, height, channels (1 gray, 3 RGB, 4 RGBA) */
    uint8_t *data;     /* h * w * c bytes, row-major, interleaved */
} av_image;

av_image *av_image_new(int w, int h, int c);           /* zero-filled */
/* uninitialised pixels, for results about to be written in full; `who` names the caller in errors */
av_image *av_image_alloc(int w, int h, int c, const char *who);
void av_image_free(av_image *im);

/* ---- decoding --------------------------------------------------------------- */
typedef struct av_decode_opts {
    int64_t max_pixels;  /* refuse images declaring more pixels (before allocating); 0 = default 178956970 (PIL's) */
    int min_w, min_h;    /* DCT-domain scaling: the decoder may shrink a JPEG by 1/2, 1/4 or 1/8 as long as the
                            result stays at least min_w x min_h (0 = full size) */
    int want_channels;   /* 3 = RGB (gray, CMYK, palette converted; alpha dropped), 1 = gray (PIL's convert('L')),
                            4 = RGBA, 0 = as stored (1 or 3). NOTE: a zeroed struct means 0; NULL opts mean 3 */
} av_decode_opts;
/* Decoding matches PIL's Image.open(p).convert('RGB') bit for bit on the test photos (docs/data.md#images);
 * EXIF orientation is ignored (as torchvision.io and PIL without exif_transpose); 16-bit PNG samples keep
 * their high byte; any libjpeg warning (truncated data) is an error "truncated or corrupt JPEG". */

/* decodes a JPEG or PNG from memory, chosen by its signature, not by name; `name` is used in errors */
av_image *av_image_decode(const uint8_t *bytes, size_t n, const av_decode_opts *o, const char *name);
av_image *av_image_load(const char *path, const av_decode_opts *o);
/* reads only the header: width, height, channels as stored (JPEG 1, 3 or 4 = CMYK; PNG 1 gray,
 * 2 gray+alpha, 3 RGB/palette, 4 RGBA); 0 or -1 */
int av_image_probe(const char *path, int *w, int *h, int *c);

/* ---- encoding (written to a temporary name, then renamed) ----------------------- */
int av_image_save_jpeg(const av_image *im, const char *path, int quality);
int av_image_save_png(const av_image *im, const char *path);
int av_image_save(const av_image *im, const char *path, int quality); /* by extension: .jpg/.jpeg or .png */

/* ---- geometry ------------------------------------------------------------------ */
typedef enum { AV_INTERP_NEAREST = 0, AV_INTERP_BILINEAR = 1, AV_INTERP_BICUBIC = 2 } av_interp;
/* resize to w x h; downscaling is antialiased (the filter widens by the scale
 * factor, as PIL and torchvision's antialias=True do). Bit-exact with PIL's
 * Image.resize (same fixed-point arithmetic); bicubic uses a = -0.5 as PIL. */
av_image *av_image_resize(const av_image *im, int w, int h, av_interp interp);
/* crop (x, y, w, h), 0-based; parts outside the image are filled with 0 */
av_image *av_image_crop(const av_image *im, int x, int y, int w, int h);
/* crop (x, y, cw, ch) then resize to w x h in one pass (RandomResizedCrop): the fractional box is
 * resampled as PIL's resize(box=...); a box reaching outside the image samples zero padding */
av_image *av_image_resized_crop(const av_image *im, double x, double y, double cw, double ch, int w, int h,
                                av_interp interp);
av_image *av_image_hflip(const av_image *im);
av_image *av_image_vflip(const av_image *im);

/* ---- tensors ------------------------------------------------------------------- */
/* uint8 H x W x C image -> float32 C x H x W in [0, 1], then (x - mean[c]) / std[c]
 * when mean and std are given (NULL for none) */
av_tensor *av_image_to_tensor(const av_image *im, const float *mean, const float *std);
/* writes into dst (float32 C x H x W, contiguous, the right size), for batch assembly */
int av_image_to_tensor_into(const av_image *im, const float *mean, const float *std, float *dst);
/* uint8 C x H x W tensor (torchvision.io's layout, what the Lua side calls an image) */
av_tensor *av_image_to_u8_tensor(const av_image *im);
/* a uint8 tensor H x W x C or C x H x W (chw = 1), or float in [0, 1] (clamped) -> image */
av_image *av_image_from_tensor(const av_tensor *t, int chw);

#endif
