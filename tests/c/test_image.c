/* Images in C: encode/decode round trips, geometry on synthetic images,
 * tensor conversion, corrupt files (truncations and bit flips of valid
 * JPEG/PNG bytes must fail cleanly, never crash: run under `make asan`), and
 * decoding + resizing from several threads at once giving the same bytes.
 * Comparisons with PIL live in tests/lua/test_image.lua. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include "harness.h"
#include "aviary/image.h"

static av_image *pattern(int w, int h, int c) {
    av_image *im = av_image_new(w, h, c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                im->data[((size_t)y * w + x) * c + ch] = (uint8_t)(128 + 100 * sin(x * 0.07 + ch) * cos(y * 0.05));
    return im;
}

static const char *tmp_path(const char *ext) {
    static char buf[4][256];
    static int next;
    char *b = buf[next++ & 3];
    snprintf(b, 256, "/tmp/aviary_img_test_%d_%d%s", (int)getpid(), next, ext);
    return b;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static double mean_abs_diff(const av_image *a, const av_image *b) {
    double s = 0;
    size_t n = (size_t)a->w * a->h * a->c;
    for (size_t i = 0; i < n; i++) s += abs((int)a->data[i] - (int)b->data[i]);
    return s / (double)n;
}

TEST(image_png_roundtrip_exact) {
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        av_image *im = pattern(37, 21, c);
        const char *p = tmp_path(".png");
        CHECK(av_image_save(im, p, 90) == 0);
        av_decode_opts o = {0, 0, 0, c};
        av_image *back = av_image_load(p, &o);
        CHECK(back && back->w == 37 && back->h == 21 && back->c == c);
        if (back) CHECK(memcmp(back->data, im->data, (size_t)37 * 21 * c) == 0);
        int w, h, cc;
        CHECK(av_image_probe(p, &w, &h, &cc) == 0 && w == 37 && h == 21 && cc == c);
        unlink(p);
        av_image_free(back);
        av_image_free(im);
    }
}

TEST(image_jpeg_roundtrip_and_scaling) {
    av_image *im = pattern(320, 200, 3);
    const char *p = tmp_path(".jpg");
    CHECK(av_image_save(im, p, 95) == 0);
    av_image *back = av_image_load(p, NULL);
    CHECK(back && back->w == 320 && back->h == 200 && back->c == 3);
    if (back) CHECK(mean_abs_diff(im, back) < 2.0);
    av_decode_opts o = {0, 100, 60, 3};
    av_image *small = av_image_load(p, &o);
    CHECK(small && small->w >= 100 && small->h >= 60 && small->w < 320);
    if (small) CHECK(small->w == 160 && small->h == 100); /* 1/2: 1/4 would be 80 x 50 */
    av_image_free(small);
    av_image_free(back);
    av_image_free(im);
    unlink(p);
}

TEST(image_corrupt_files_fail_cleanly) {
    av_image *im = pattern(64, 48, 3);
    const char *pj = tmp_path(".jpg"), *pp = tmp_path(".png");
    CHECK(av_image_save(im, pj, 80) == 0);
    CHECK(av_image_save(im, pp, 0) == 0);
    const char *paths[2] = {pj, pp};
    unsigned seed = 12345;
    for (int f = 0; f < 2; f++) {
        size_t n = 0;
        uint8_t *b = slurp(paths[f], &n);
        CHECK(b != NULL);
        if (!b) continue;
        /* every truncation length up to the first 200 bytes, then coarser */
        for (size_t k = 0; k < n; k += k < 200 ? 1 : 37) {
            av_image *r = av_image_decode(b, k, NULL, "cut");
            if (r) av_image_free(r);
            else CHECK(strlen(av_last_error()) > 0);
        }
        /* random byte flips: any result is fine as long as nothing crashes */
        uint8_t *c = malloc(n);
        for (int t = 0; t < 300; t++) {
            memcpy(c, b, n);
            for (int j = 0; j < 3; j++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % n;
                seed = seed * 1103515245u + 12345u;
                c[at] = (uint8_t)(seed >> 16);
            }
            av_image *r = av_image_decode(c, n, NULL, "flipped");
            av_image_free(r);
        }
        free(c);
        free(b);
    }
    CHECK_ERR(av_image_decode((const uint8_t *)"", 0, NULL, "zero"), "empty file");
    CHECK_ERR(av_image_decode((const uint8_t *)"GIF89a....", 10, NULL, "gif"), "not a JPEG or PNG");
    CHECK_ERR(av_image_load("/nonexistent/x.jpg", NULL), "cannot open image");
    av_decode_opts lim = {100, 0, 0, 3};
    CHECK_ERR(av_image_load(pj, &lim), "64x48");
    CHECK_ERR(av_image_load(pp, &lim), "more than the limit of 100");
    unlink(pj);
    unlink(pp);
    av_image_free(im);
}

TEST(image_geometry) {
    av_image *im = pattern(9, 7, 3);
    av_image *cr = av_image_crop(im, -2, 3, 5, 6); /* x, y, w, h: 2 columns left of the image, 2 rows below */
    CHECK(cr && cr->w == 5 && cr->h == 6);
    if (cr) {
        CHECK(cr->data[0] == 0 && cr->data[(size_t)(5 * 5 + 4) * 3] == 0); /* padding */
        CHECK(memcmp(cr->data + 2 * 3, im->data + (size_t)(3 * 9) * 3, 3 * 3) == 0);
    }
    av_image *hf = av_image_hflip(im), *hh = av_image_hflip(hf), *vf = av_image_vflip(im);
    CHECK(hh && memcmp(hh->data, im->data, 9 * 7 * 3) == 0);
    CHECK(hf && memcmp(hf->data, im->data + 8 * 3, 3) == 0);
    CHECK(vf && memcmp(vf->data, im->data + 6 * 9 * 3, 9 * 3) == 0);
    /* a constant image stays constant through every filter and size */
    av_image *k = av_image_new(31, 17, 3);
    memset(k->data, 77, 31 * 17 * 3);
    for (int ip = 0; ip < 3; ip++) {
        int sizes[][2] = {{1, 1}, {5, 3}, {62, 34}, {100, 9}};
        for (int s = 0; s < 4; s++) {
            av_image *r = av_image_resize(k, sizes[s][0], sizes[s][1], (av_interp)ip);
            CHECK(r != NULL);
            int ok = 1;
            for (size_t i = 0; r && i < (size_t)r->w * r->h * 3; i++) ok &= r->data[i] == 77;
            CHECK(ok);
            av_image_free(r);
        }
    }
    CHECK_ERR(av_image_resize(im, 0, 5, AV_INTERP_BILINEAR), "positive");
    CHECK_ERR(av_image_resize(im, 5, 5, (av_interp)7), "unknown interpolation");
    CHECK_ERR(av_image_crop(NULL, 0, 0, 1, 1), "invalid image");
    av_image_free(k);
    av_image_free(cr);
    av_image_free(hf);
    av_image_free(hh);
    av_image_free(vf);
    av_image_free(im);
}

TEST(image_tensor_conversion) {
    av_image *im = pattern(5, 4, 3);
    float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    av_tensor *t = av_image_to_tensor(im, mean, std);
    CHECK_SHAPE(t, 3, 4, 5);
    const float *d = av_data(t);
    /* element (c=1, y=2, x=3) */
    float want = ((float)im->data[(2 * 5 + 3) * 3 + 1] / 255.f - mean[1]) / std[1];
    CHECK(d[1 * 20 + 2 * 5 + 3] == want);
    av_tensor *u = av_image_to_u8_tensor(im);
    CHECK_SHAPE(u, 3, 4, 5);
    av_image *back = av_image_from_tensor(u, 1);
    CHECK(back && memcmp(back->data, im->data, 60) == 0);
    /* H x W x C layout, and float input in [0, 1] */
    int perm[3] = {1, 2, 0};
    av_tensor *hwc = av_permute(u, perm);
    av_image *b2 = av_image_from_tensor(hwc, 0);
    CHECK(b2 && memcmp(b2->data, im->data, 60) == 0);
    av_tensor *plain = av_image_to_tensor(im, NULL, NULL);
    av_image *b3 = av_image_from_tensor(plain, 1);
    CHECK(b3 && memcmp(b3->data, im->data, 60) == 0);
    av_tensor *two = av_zeros(3, T_SHAPE(2, 4, 4), AV_F32);
    CHECK_ERR(av_image_from_tensor(two, 1), "channels");
    av_release(two);
    av_image_free(back);
    av_image_free(b2);
    av_image_free(b3);
    av_release(hwc);
    av_release(plain);
    av_release(u);
    av_release(t);
    av_image_free(im);
}

/* the data loader decodes and resizes from worker threads */
typedef struct {
    const uint8_t *bytes;
    size_t n;
    uint8_t *out;
    int ok;
} job;

static void *worker(void *arg) {
    job *j = arg;
    j->ok = 1;
    for (int it = 0; it < 20; it++) {
        av_image *im = av_image_decode(j->bytes, j->n, NULL, "thread");
        av_image *r = im ? av_image_resized_crop(im, 3.5, 2.25, 100.5, 80.75, 64, 48, AV_INTERP_BICUBIC) : NULL;
        if (!r) {
            j->ok = 0;
        } else if (it == 0) {
            memcpy(j->out, r->data, 64 * 48 * 3);
        } else if (memcmp(j->out, r->data, 64 * 48 * 3) != 0) {
            j->ok = 0;
        }
        av_image_free(r);
        av_image_free(im);
    }
    return NULL;
}

TEST(image_threads) {
    av_image *im = pattern(160, 120, 3);
    const char *p = tmp_path(".jpg");
    CHECK(av_image_save(im, p, 90) == 0);
    size_t n = 0;
    uint8_t *b = slurp(p, &n);
    enum { NT = 4 };
    job jobs[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (job){b, n, malloc(64 * 48 * 3), 0};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) {
        CHECK(jobs[i].ok);
        if (i) CHECK(memcmp(jobs[i].out, jobs[0].out, 64 * 48 * 3) == 0);
    }
    for (int i = 0; i < NT; i++) free(jobs[i].out);
    free(b);
    unlink(p);
    av_image_free(im);
}
