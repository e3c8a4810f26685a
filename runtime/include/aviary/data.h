/* The data pipeline: transforms declared as data (an array of av_transform,
 * kind + parameters) executed in C, and a loader whose POSIX worker threads
 * decode and augment samples into a ring of batch buffers.
 *
 * Randomness is per sample: every random draw of a sample comes from a
 * Philox-4x32-10 stream keyed by the seed, with (sample index, epoch, draw
 * number) as the counter, so a batch is the same whatever the worker count.
 * The random parameters follow torchvision's get_params (same distributions,
 * not the same numbers: torchvision draws from torch's global generator).
 *
 * Functions return NULL / -1 after av_fail(...); none aborts. */
#ifndef AVIARY_DATA_H
#define AVIARY_DATA_H

#include <stdint.h>
#include "aviary/tensor.h"
#include "aviary/image.h"

typedef enum {
    AV_TF_RESIZE = 0,           /* size (shorter side) or h, w (exact); interp */
    AV_TF_CENTER_CROP,          /* h, w */
    AV_TF_RANDOM_RESIZED_CROP,  /* h, w, scale[2], ratio[2], interp */
    AV_TF_HFLIP,                /* p */
    AV_TF_VFLIP,                /* p */
    AV_TF_ROTATION,             /* degrees[2] (uniform angle, counter-clockwise), fill[3]; bilinear */
    AV_TF_PERSPECTIVE,          /* distortion, p, fill[3]; bilinear */
    AV_TF_COLOR_JITTER,         /* brightness[2], contrast[2], saturation[2], hue[2] (factor ranges; hi < lo = off) */
    AV_TF_NORMALIZE,            /* ToTensor + Normalize: mean[3], std[3]; must come after the image transforms */
    AV_TF_RANDOM_ERASING,       /* p, scale[2], ratio[2], value (on the normalised tensor) */
    AV_TF_NKINDS
} av_transform_kind;

typedef struct av_transform {
    int kind;
    int size;                 /* Resize: shorter side (0 when h, w are given) */
    int max_size;             /* Resize: longer side bound (0 = none), torchvision's max_size */
    int h, w;                 /* output size */
    int interp;               /* av_interp */
    double p;                 /* probability of applying */
    double scale[2], ratio[2];
    double degrees[2];
    double fill[3];
    double distortion;
    double brightness[2], contrast[2], saturation[2], hue[2];
    float mean[3], std[3];
    double value;
} av_transform;

/* names of the kinds ("Resize", "CenterCrop", "RandomResizedCrop", "RandomHorizontalFlip",
 * "RandomVerticalFlip", "RandomRotation", "RandomPerspective", "ColorJitter", "Normalize",
 * "RandomErasing"); -1 for an unknown name */
const char *av_transform_name(int kind);
int av_transform_kind_from_name(const char *name);
/* fills the defaults of a kind (torchvision's) */
void av_transform_defaults(av_transform *t, int kind);
/* checks the parameters and the order (image transforms, then Normalize, then tensor ones) */
int av_transforms_check(const av_transform *tf, int n);
/* output size when it does not depend on the input (a crop or exact resize after the last
 * shorter-side Resize); 0 with *h = *w = 0 when it does */
int av_transforms_out_size(const av_transform *tf, int n, int *h, int *w);

/* ---- the per-sample random stream ---------------------------------------- */
typedef struct av_sample_rng {
    uint32_t key[2];
    uint32_t ctr[4]; /* ctr[0..1] sample index, ctr[2] epoch, ctr[3] draw number */
    uint32_t buf[4];
    int left;
} av_sample_rng;

void av_sample_rng_init(av_sample_rng *r, uint64_t seed, uint64_t epoch, uint64_t index);
uint32_t av_sample_rng_u32(av_sample_rng *r);
double av_sample_rng_uniform(av_sample_rng *r); /* [0, 1), 53 bits */
/* torch.randint(lo, hi): an integer in [lo, hi) */
int64_t av_sample_rng_randint(av_sample_rng *r, int64_t lo, int64_t hi);

/* torchvision RandomResizedCrop.get_params on a width x height image:
 * top, left, crop height, crop width */
void av_rrc_params(av_sample_rng *r, int width, int height, const double scale[2], const double ratio[2],
                   int *top, int *left, int *ch, int *cw);

/* ---- functional ops (the transforms' kernels, fixed parameters) ------------ */
/* PIL's Image.rotate(angle, BILINEAR, expand=False, center=None, fillcolor=fill):
 * counter-clockwise degrees about the image centre */
av_image *av_image_rotate(const av_image *im, double angle, const double fill[3]);
/* torchvision F.perspective (PIL path, bilinear): startpoints/endpoints are 4 (x, y) corners
 * tl, tr, br, bl */
av_image *av_image_perspective(const av_image *im, const double start[8], const double end[8],
                               const double fill[3]);
/* PIL ImageEnhance / torchvision F_pil: brightness, contrast, saturation blend factors;
 * hue shift in [-0.5, 0.5] through PIL's 8-bit HSV (RGB images). In place. */
int av_image_adjust(av_image *im, int which /* 0 brightness, 1 contrast, 2 saturation, 3 hue */, double f);

/* ---- running a pipeline ------------------------------------------------------ */
typedef struct av_sample_opts {
    int64_t max_pixels; /* passed to the decoder (0 = its default) */
    int dct_scaling;    /* 1: let the decoder shrink a JPEG by 1/2..1/8 when the first transform allows */
} av_sample_opts;

/* decodes path (3 channels) and runs the transforms with the stream of
 * (seed, epoch, index); returns a float32 C x H x W tensor. Without a
 * Normalize transform the result is in [0, 1]. */
av_tensor *av_transforms_run_file(const av_transform *tf, int n, const char *path, const av_sample_opts *o,
                                  uint64_t seed, uint64_t epoch, uint64_t index);
/* runs the transforms on an image (not consumed) */
av_tensor *av_transforms_run_image(const av_transform *tf, int n, const av_image *im, uint64_t seed,
                                   uint64_t epoch, uint64_t index);
/* the same writing into dst (3 x h x w floats); -1 when the result is not h x w */
int av_transforms_run_file_into(const av_transform *tf, int n, const char *path, const av_sample_opts *o,
                                uint64_t seed, uint64_t epoch, uint64_t index, int h, int w, float *dst);

/* ---- the loader ---------------------------------------------------------------- */
enum { AV_ON_ERROR_SKIP = 0, AV_ON_ERROR_RAISE = 1 };

typedef struct av_loader_opts {
    int batch_size;   /* >= 1 */
    int shuffle;      /* permutation from (seed, epoch), new each epoch */
    int drop_last;
    int num_workers;  /* 0: samples are decoded on the calling thread in av_loader_next */
    int prefetch;     /* batches in flight per worker (ring of num_workers * prefetch buffers) */
    uint64_t seed;
    int on_error;     /* AV_ON_ERROR_SKIP or AV_ON_ERROR_RAISE */
    av_sample_opts sample;
} av_loader_opts;

typedef struct av_loader av_loader;

typedef struct av_batch {
    av_tensor *input;   /* float32 N x 3 x H x W (N can be short of batch_size after skips) */
    av_tensor *target;  /* int64 N */
    int64_t *index;     /* N sample indices (0-based), malloc'd: free with av_batch_clear */
    int n;
    int skipped;        /* samples of this batch dropped by the 'skip' policy */
    int64_t *skipped_index;
} av_batch;

/* paths and targets are copied; the transforms must give a fixed output size */
av_loader *av_loader_new(const char *const *paths, const int64_t *targets, int64_t n, const av_transform *tf,
                         int ntf, const av_loader_opts *o);
/* batches per epoch */
int64_t av_loader_len(const av_loader *l);
/* starts epoch `epoch` (0-based): stops the work in flight, reshuffles and restarts the workers */
int av_loader_start_epoch(av_loader *l, int64_t epoch);
/* 1 with a batch, 0 at the end of the epoch, -1 on error (the message names the file) */
int av_loader_next(av_loader *l, av_batch *b);
void av_batch_clear(av_batch *b);
/* the path of sample i (0-based) as given */
const char *av_loader_path(const av_loader *l, int64_t i);
/* joins the workers and frees everything (NULL-safe) */
void av_loader_free(av_loader *l);
/* the sample order of an epoch: 0..n-1, or a permutation drawn from (seed, epoch) when shuffle */
void av_sample_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle, int64_t *out);
/* the loader's sample order of an epoch (its n indices) */
int av_loader_order(const av_loader *l, int64_t epoch, int64_t *out);

#endif
