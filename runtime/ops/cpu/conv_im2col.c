/* Convolution as GEMM: im2col + OpenBLAS, for float and double.
 *
 * View the whole batch as one virtual im2col matrix of K = Cig*kh*kw rows and
 * N*P columns (P = Ho*Wo per image). Each thread takes a contiguous range of
 * columns and walks it in tiles small enough for the tile's im2col block to
 * stay in L2; per tile and group:
 *   forward          y[:, tile]  = W_g [Cog x K] * col [K x tile]
 *   backward weight  gW_g       += gy[:, tile] [Cog x tile] * col^T
 *   backward data    dcol        = W_g^T * gy[:, tile];  col2im(dcol) -> gx
 * A tile inside one image reads and writes the NCHW tensors in place (GEMM
 * leading dimension P); a tile spanning several small images (P < tile) goes
 * through a [Cog x tile] buffer. A 1x1 stride-1 unpadded convolution needs no
 * im2col at all: the input rows are the columns.
 *
 * Two variants for ungrouped layers where the weight outweighs a thread's
 * share of columns (the deep, small-image ResNet layers): the weight
 * gradient splits the rows of dW over threads (no private copies to sum) and
 * the data gradient splits the input channels (also race free for a batch
 * smaller than the thread count).
 *
 * Threads run single-threaded GEMMs side by side (OpenBLAS is told to use one
 * thread for the duration): each thread's im2col block is then consumed by
 * the core that wrote it, and no two thread pools (OpenMP's and OpenBLAS's)
 * take turns spinning on two cores. */
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "conv_impl.h"
#include "aviary/ops.h"

void openblas_set_num_threads(int n);

/* ---- typed kernels ------------------------------------------------------------------ */
/* im2col of image columns [p0, p1) of channels [c0, c1) of one group's input
 * xg [Cig][H][W] into col[r * ldc + (p - p0)], r = ((c - c0)*kh + ki)*kw + kj;
 * col2im is its adjoint: it accumulates into gxg, except for a pointwise
 * convolution, where every input pixel has one column and it copies. */
#define DEFINE_KERNELS(T, S)                                                                            \
    static void im2col_##S(const conv_geom *g, const T *xg, T *col, int64_t ldc, int64_t p0, int64_t p1, \
                           int64_t c0, int64_t c1) {                                                    \
        const int64_t H = g->H, W = g->W, Wo = g->Wo, HW = g->HW;                                       \
        if (conv_is_pointwise(g)) {                                                                     \
            for (int64_t c = c0; c < c1; c++)                                                           \
                memcpy(col + (c - c0) * ldc, xg + c * HW + p0, sizeof(T) * (size_t)(p1 - p0));          \
            return;                                                                                     \
        }                                                                                               \
        for (int64_t c = c0; c < c1; c++)                                                               \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                      \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                                \
                    T *row = col + (((c - c0) * g->kh + ki) * g->kw + kj) * ldc;                        \
                    const T *xc = xg + c * HW;                                                          \
                    const int64_t off = kj * g->dw - g->pw; /* iw = ow*sw + off */                      \
                    int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;                             \
                    int64_t hi = W - off <= 0 ? 0 : (W - off + g->sw - 1) / g->sw;                      \
                    if (hi > Wo) hi = Wo;                                                               \
                    if (lo > hi) lo = hi;                                                               \
                    for (int64_t p = p0; p < p1;) {                                                     \
                        const int64_t oh = p / Wo, a = p - oh * Wo;                                     \
                        const int64_t b = (p1 - oh * Wo < Wo) ? p1 - oh * Wo : Wo;                      \
                        const int64_t d = oh * Wo - p0; /* row[d + ow] is output column ow */           \
                        const int64_t ih = oh * g->sh - g->ph + ki * g->dh;                             \
                        if (ih < 0 || ih >= H) {                                                        \
                            for (int64_t o = a; o < b; o++) row[d + o] = 0;                             \
                        } else {                                                                        \
                            const int64_t s = ih * W + off; /* xc[s + ow*sw] is its input */            \
                            const int64_t l = lo > a ? lo : a, h = hi < b ? hi : b;                     \
                            for (int64_t o = a; o < l && o < b; o++) row[d + o] = 0;                    \
                            if (g->sw == 1)                                                             \
                                for (int64_t o = l; o < h; o++) row[d + o] = xc[s + o];                 \
                            else                                                                        \
                                for (int64_t o = l; o < h; o++) row[d + o] = xc[s + o * g->sw];         \
                            for (int64_t o = h > a ? h : a; o < b; o++) row[d + o] = 0;                 \
                        }                                                                               \
                        p = oh * Wo + b;                                                                \
                    }                                                                                   \
                }                                                                                       \
    }                                                                                                   \
    static void col2im_##S(const conv_geom *g, const T *col, int64_t ldc, T *gxg, int64_t p0, int64_t p1, \
                           int64_t c0, int64_t c1) {                                                    \
        const int64_t H = g->H, W = g->W, Wo = g->Wo, HW = g->HW;                                       \
        if (conv_is_pointwise(g)) {                                                                     \
            for (int64_t c = c0; c < c1; c++)                                                           \
                memcpy(gxg + c * HW + p0, col + (c - c0) * ldc, sizeof(T) * (size_t)(p1 - p0));         \
            return;                                                                                     \
        }                                                                                               \
        for (int64_t c = c0; c < c1; c++)                                                               \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                      \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                                \
                    const T *row = col + (((c - c0) * g->kh + ki) * g->kw + kj) * ldc;                  \
                    T *xc = gxg + c * HW;                                                               \
                    const int64_t off = kj * g->dw - g->pw;                                             \
                    int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;                             \
                    int64_t hi = W - off <= 0 ? 0 : (W - off + g->sw - 1) / g->sw;                      \
                    if (hi > Wo) hi = Wo;                                                               \
                    for (int64_t p = p0; p < p1;) {                                                     \
                        const int64_t oh = p / Wo, a = p - oh * Wo;                                     \
                        const int64_t b = (p1 - oh * Wo < Wo) ? p1 - oh * Wo : Wo;                      \
                        const int64_t ih = oh * g->sh - g->ph + ki * g->dh;                             \
                        if (ih >= 0 && ih < H) {                                                        \
                            const int64_t d = oh * Wo - p0, s = ih * W + off;                           \
                            const int64_t l = lo > a ? lo : a, h = hi < b ? hi : b;                     \
                            if (g->sw == 1)                                                             \
                                for (int64_t o = l; o < h; o++) xc[s + o] += row[d + o];                \
                            else                                                                        \
                                for (int64_t o = l; o < h; o++) xc[s + o * g->sw] += row[d + o];        \
                        }                                                                               \
                        p = oh * Wo + b;                                                                \
                    }                                                                                   \
                }                                                                                       \
    }                                                                                                   \
    /* rows [Cog] of buf (leading dim ld, columns from `off`) <-> image n, channels of group gi */   \
    static void scatter_##S(const conv_geom *g, const T *buf, int64_t ld, int64_t off, T *y, int64_t n, \
                            int64_t gi, int64_t p0, int64_t p1, const T *bias) {                        \
        for (int64_t co = 0; co < g->Cog; co++) {                                                       \
            T *d = y + (n * g->Co + gi * g->Cog + co) * g->P;                                           \
            const T *s = buf + co * ld + off;                                                           \
            const T bv = bias ? bias[gi * g->Cog + co] : 0;                                             \
            for (int64_t p = p0; p < p1; p++) d[p] = s[p - p0] + bv;                                    \
        }                                                                                               \
    }                                                                                                   \
    static void gather_##S(const conv_geom *g, T *buf, int64_t ld, int64_t off, const T *y, int64_t n,   \
                           int64_t gi, int64_t p0, int64_t p1) {                                        \
        for (int64_t co = 0; co < g->Cog; co++)                                                         \
            memcpy(buf + co * ld + off, y + (n * g->Co + gi * g->Cog + co) * g->P + p0,                 \
                   sizeof(T) * (size_t)(p1 - p0));                                                      \
    }                                                                                                   \
    static void add_bias_##S(const conv_geom *g, T *y, int64_t ld, int64_t len, const T *bias) {        \
        for (int64_t co = 0; co < g->Cog; co++) {                                                       \
            const T bv = bias[co];                                                                      \
            T *d = y + co * ld;                                                                         \
            for (int64_t p = 0; p < len; p++) d[p] += bv;                                               \
        }                                                                                               \
    }                                                                                                   \
    static void sum_into_##S(T *dst, const T *src, int64_t n) {                                         \
        for (int64_t i = 0; i < n; i++) dst[i] += src[i];                                               \
    }

DEFINE_KERNELS(float, f)
DEFINE_KERNELS(double, d)

/* dtype dispatch of the typed kernels, with pointers offset in elements */
typedef struct {
    size_t es;
    void (*im2col)(const conv_geom *, const void *, void *, int64_t, int64_t, int64_t, int64_t, int64_t);
    void (*col2im)(const conv_geom *, const void *, int64_t, void *, int64_t, int64_t, int64_t, int64_t);
    void (*scatter)(const conv_geom *, const void *, int64_t, int64_t, void *, int64_t, int64_t, int64_t, int64_t,
                    const void *);
    void (*gather)(const conv_geom *, void *, int64_t, int64_t, const void *, int64_t, int64_t, int64_t, int64_t);
    void (*add_bias)(const conv_geom *, void *, int64_t, int64_t, const void *);
    void (*sum_into)(void *, const void *, int64_t);
} kernels;

#define KT(S, T)                                                                                              \
    {sizeof(T), (void (*)(const conv_geom *, const void *, void *, int64_t, int64_t, int64_t, int64_t, int64_t))im2col_##S, \
     (void (*)(const conv_geom *, const void *, int64_t, void *, int64_t, int64_t, int64_t, int64_t))col2im_##S, \
     (void (*)(const conv_geom *, const void *, int64_t, int64_t, void *, int64_t, int64_t, int64_t, int64_t,   \
               const void *))scatter_##S,                                                                     \
     (void (*)(const conv_geom *, void *, int64_t, int64_t, const void *, int64_t, int64_t, int64_t,            \
               int64_t))gather_##S,                                                                           \
     (void (*)(const conv_geom *, void *, int64_t, int64_t, const void *))add_bias_##S,                        \
     (void (*)(void *, const void *, int64_t))sum_into_##S}
static const kernels KF = KT(f, float), KD = KT(d, double);

#define AT(p, i) ((char *)(p) + (size_t)(i) * ks->es)
#define CAT(p, i) ((const char *)(p) + (size_t)(i) * ks->es)

/* ---- tiling --------------------------------------------------------------------------- */
/* Tile widths aim at an im2col block of a few hundred KB (to stay in a 1 MB
 * L2 between im2col and the GEMM that reads it), but no fewer columns than
 * keep the GEMM efficient; both measured on the ResNet layers. */

typedef struct {
    int64_t q0, q1;  /* global columns of the tile */
    int64_t n0, n1;  /* images it touches [n0, n1) */
} tile;

/* next tile of the range [q, end): inside one image when P >= tw (split evenly),
 * else whole images up to tw columns */
static tile next_tile(const conv_geom *g, int64_t q, int64_t end, int64_t tw) {
    tile t;
    int64_t n = q / g->P;
    if (g->P >= tw || q % g->P) {
        int64_t stop = (n + 1) * g->P < end ? (n + 1) * g->P : end;
        int64_t len = stop - q, nt = (len + tw - 1) / tw;
        int64_t w = (len + nt - 1) / nt;
        t.q0 = q;
        t.q1 = q + w < stop ? q + w : stop;
    } else { /* whole images, spread evenly over the tiles the rest of the range needs */
        int64_t left = (end - q + g->P - 1) / g->P, per = tw / g->P;
        int64_t nt = (left + per - 1) / per, imgs = (left + nt - 1) / nt;
        t.q0 = q;
        t.q1 = q + imgs * g->P < end ? q + imgs * g->P : end;
    }
    t.n0 = t.q0 / g->P;
    t.n1 = (t.q1 - 1) / g->P + 1;
    return t;
}

/* the parts of a tile in each image: image n, columns [p0, p1), at tile offset off */
#define FOR_SEGMENTS(g, t, n, p0, p1, off)                                                          \
    for (int64_t n = (t).n0, off = 0, p0, p1; n < (t).n1 && (p0 = (n == (t).n0 ? (t).q0 - n * (g)->P : 0), \
                                                             p1 = (n == (t).n1 - 1 ? (t).q1 - n * (g)->P : (g)->P), 1); \
         off += p1 - p0, n++)

/* threads for a call of `flops` work */
static int pick_threads(double flops) {
    int t = av_get_num_threads();
    if (flops < 4e6) return 1;
    return t;
}

/* runs fn on nt threads, each calling single-threaded BLAS; a lone thread
 * keeps OpenBLAS's own threads for its GEMMs */
typedef void (*worker_fn)(void *ctx, int tid, int nth);
static void run_parallel(int nt, worker_fn fn, void *ctx) {
    int all = nt > 1 ? av_get_num_threads() : 1;
    if (all > 1) openblas_set_num_threads(1);
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        fn(ctx, omp_get_thread_num(), omp_get_num_threads());
    } else {
        fn(ctx, 0, 1);
    }
    if (all > 1) openblas_set_num_threads(all);
}

typedef struct {
    const conv_geom *g;
    const kernels *ks;
    const void *in1, *in2, *bias; /* x or gy; w or x */
    void *out;
    char *ws;
    size_t per, acc;
    int64_t tw;
} job;

/* workspace shared by all threads of a call: a tensor, so the CPU allocator's
 * block cache makes repeated calls of one shape free of page faults */
static void *workspace(av_tensor **hold, size_t bytes) {
    int64_t n = (int64_t)((bytes + 63) / 64) * 16;
    if (n < 16) n = 16;
    *hold = av_empty(1, &n, AV_F32);
    return *hold ? av_data(*hold) : NULL;
}

/* ---- forward ---------------------------------------------------------------------------- */
static void forward_worker(void *ctx, int tid, int nth) {
    const job *j = ctx;
    const conv_geom *g = j->g;
    const kernels *ks = j->ks;
    const void *x = j->in1, *w = j->in2, *b = j->bias;
    void *y = j->out;
    const bool pw = conv_is_pointwise(g);
    const int64_t Q = g->N * g->P;
    char *col = j->ws + j->per * (size_t)tid;
    char *tmp = col + (size_t)(g->K * j->tw) * ks->es;
    const int64_t end = Q * (tid + 1) / nth;
    for (int64_t q = Q * tid / nth; q < end;) {
        tile t = next_tile(g, q, end, j->tw);
        q = t.q1;
        const int64_t width = t.q1 - t.q0;
        const bool single = t.n1 - t.n0 == 1;
        const int64_t n = t.n0, p0 = t.q0 - n * g->P;
        for (int64_t gi = 0; gi < g->G; gi++) {
            const void *B;
            int64_t ldb;
            if (pw && single) {
                B = CAT(x, (n * g->C + gi * g->Cig) * g->HW + p0);
                ldb = g->HW;
            } else {
                FOR_SEGMENTS(g, t, m, s0, s1, off)
                    ks->im2col(g, CAT(x, (m * g->C + gi * g->Cig) * g->HW), AT(col, off), width, s0, s1, 0, g->Cig);
                B = col;
                ldb = width;
            }
            const void *Wg = CAT(w, gi * g->Cog * g->K);
            if (single) {
                void *C = AT(y, (n * g->Co + gi * g->Cog) * g->P + p0);
                av_gemm(g->dt, false, false, g->Cog, width, g->K, 1.0, Wg, g->K, B, ldb, 0.0, C, g->P);
                if (b) ks->add_bias(g, C, g->P, width, CAT(b, gi * g->Cog));
            } else {
                av_gemm(g->dt, false, false, g->Cog, width, g->K, 1.0, Wg, g->K, B, ldb, 0.0, tmp, width);
                FOR_SEGMENTS(g, t, m, s0, s1, off) ks->scatter(g, tmp, width, off, y, m, gi, s0, s1, b);
            }
        }
    }
}

/* the job's tile width and per-thread workspace; returns the thread count or -1 */
static int plan(job *j, const conv_geom *g, int64_t bytes, int64_t min_tw, size_t extra_per_thread,
                av_tensor **hold, bool images_only) {
    j->g = g;
    j->ks = g->dt == AV_F64 ? &KD : &KF;
    const int64_t Q = g->N * g->P;
    int64_t tw = bytes / (g->K * (int64_t)j->ks->es);
    if (tw < min_tw) tw = min_tw;
    if (conv_is_pointwise(g) && g->P >= tw) tw = g->P; /* no im2col: whole images */
    j->tw = tw;
    int nt = pick_threads(2.0 * (double)Q * (double)g->K * (double)g->Co);
    if (images_only && nt > g->N) nt = (int)g->N;
    if (nt > Q) nt = (int)Q;
    if (nt < 1) nt = 1;
    j->per = ((size_t)(g->K + g->Cog) * (size_t)tw * j->ks->es + 63) & ~(size_t)63;
    j->acc = extra_per_thread;
    j->ws = workspace(hold, j->per * (size_t)nt + extra_per_thread * (size_t)(nt - 1));
    return j->ws ? nt : -1;
}

int conv_im2col_forward(const conv_geom *g, const void *x, const void *w, const void *b, void *y) {
    job j = {.in1 = x, .in2 = w, .bias = b, .out = y};
    av_tensor *hold;
    int nt = plan(&j, g, 384 << 10, 512, 0, &hold, false);
    if (nt < 0) return -1;
    run_parallel(nt, forward_worker, &j);
    av_release(hold);
    return 0;
}

/* ---- backward weight ----------------------------------------------------------------- */
static void weight_worker(void *ctx, int tid, int nth) {
    const job *j = ctx;
    const conv_geom *g = j->g;
    const kernels *ks = j->ks;
    const void *gy = j->in1, *x = j->in2;
    void *gw = j->out;
    const bool pw = conv_is_pointwise(g);
    const int64_t Q = g->N * g->P, WN = g->Co * g->K;
    char *col = j->ws + j->per * (size_t)tid;
    char *tmp = col + (size_t)(g->K * j->tw) * ks->es;
    char *privates = j->ws + j->per * (size_t)nth; /* gW of threads 1.. */
    char *mine = tid == 0 ? (char *)gw : privates + j->acc * (size_t)(tid - 1);
    const int64_t end = Q * (tid + 1) / nth;
    bool first = true;
    for (int64_t q = Q * tid / nth; q < end;) {
        tile t = next_tile(g, q, end, j->tw);
        q = t.q1;
        const int64_t width = t.q1 - t.q0;
        const bool single = t.n1 - t.n0 == 1;
        const int64_t n = t.n0, p0 = t.q0 - n * g->P;
        for (int64_t gi = 0; gi < g->G; gi++) {
            const void *B, *A;
            int64_t ldb, lda;
            if (pw && single) {
                B = CAT(x, (n * g->C + gi * g->Cig) * g->HW + p0);
                ldb = g->HW;
            } else {
                FOR_SEGMENTS(g, t, m, s0, s1, off)
                    ks->im2col(g, CAT(x, (m * g->C + gi * g->Cig) * g->HW), AT(col, off), width, s0, s1, 0, g->Cig);
                B = col;
                ldb = width;
            }
            if (single) {
                A = CAT(gy, (n * g->Co + gi * g->Cog) * g->P + p0);
                lda = g->P;
            } else {
                FOR_SEGMENTS(g, t, m, s0, s1, off) ks->gather(g, tmp, width, off, gy, m, gi, s0, s1);
                A = tmp;
                lda = width;
            }
            av_gemm(g->dt, false, true, g->Cog, g->K, width, 1.0, A, lda, B, ldb, first ? 0.0 : 1.0,
                    AT(mine, gi * g->Cog * g->K), g->K);
        }
        first = false;
    }
    if (first) memset(mine, 0, (size_t)WN * ks->es);
    if (nth > 1) {
#pragma omp barrier
        /* sum the private gradients into gw, each thread a slice */
        int64_t s0 = WN * tid / nth, s1 = WN * (tid + 1) / nth;
        for (int k = 1; k < nth; k++) ks->sum_into(AT(gw, s0), CAT(privates + j->acc * (size_t)(k - 1), s0), s1 - s0);
    }
}

/* Ungrouped convolutions with a large weight (dW many times a thread's share
 * of columns) split the rows of dW instead: the threads fill one shared im2col
 * block of the chunk's columns, channel by channel, then each multiplies its
 * rows of gy into its rows of dW. No private copies of dW to sum. */
static void weight_rows_worker(void *ctx, int tid, int nth) {
    const job *j = ctx;
    const conv_geom *g = j->g;
    const kernels *ks = j->ks;
    const void *gy = j->in1, *x = j->in2;
    void *gw = j->out;
    const bool pw = conv_is_pointwise(g);
    const int64_t Q = g->N * g->P, r0 = g->Co * tid / nth, r1 = g->Co * (tid + 1) / nth;
    const int64_t c0 = g->C * tid / nth, c1 = g->C * (tid + 1) / nth, kk = g->kh * g->kw;
    char *col = j->ws, *gyb = j->ws + (size_t)(g->K * j->tw) * ks->es; /* shared: K x tw, Co x tw */
    bool first = true;
    for (int64_t q = 0; q < Q;) {
        tile t = next_tile(g, q, Q, j->tw);
        q = t.q1;
        const int64_t width = t.q1 - t.q0;
        const bool single = t.n1 - t.n0 == 1, direct = pw && single;
        const int64_t n = t.n0, p0 = t.q0 - n * g->P;
        if (!direct)
            FOR_SEGMENTS(g, t, m, s0, s1, off)
                ks->im2col(g, CAT(x, m * g->C * g->HW), AT(col, c0 * kk * width + off), width, s0, s1, c0, c1);
        if (!single) /* this thread's rows of gy only: no one else reads them */
            FOR_SEGMENTS(g, t, m, s0, s1, off)
                for (int64_t r = r0; r < r1; r++)
                    memcpy(AT(gyb, r * width + off), CAT(gy, (m * g->Co + r) * g->P + s0), (size_t)(s1 - s0) * ks->es);
        if (!direct) {
#pragma omp barrier
        }
        const void *A = single ? CAT(gy, (n * g->Co + r0) * g->P + p0) : CAT(gyb, r0 * width);
        const void *B = direct ? CAT(x, n * g->C * g->HW + p0) : col;
        if (r1 > r0)
            av_gemm(g->dt, false, true, r1 - r0, g->K, width, 1.0, A, single ? g->P : width, B,
                    direct ? g->HW : width, first ? 0.0 : 1.0, AT(gw, r0 * g->K), g->K);
        first = false;
        if (!direct) { /* the next chunk's im2col overwrites the shared block */
#pragma omp barrier
        }
    }
    if (first && r1 > r0) memset(AT(gw, r0 * g->K), 0, (size_t)((r1 - r0) * g->K) * ks->es);
}

static bool use_weight_rows(const conv_geom *g, int nt, size_t es) {
    /* dW (Co x K) outweighs a thread's columns of im2col (K x N*P/nt) */
    return g->G == 1 && nt > 1 && g->C >= 2 * nt && g->Co >= 8 * nt &&
           (double)g->Co * (double)nt > 2.0 * (double)(g->N * g->P) && (double)g->Co * g->K * es > (1 << 20);
}

int conv_im2col_backward_weight(const conv_geom *g, const void *gy, const void *x, void *gw) {
    job j = {.in1 = gy, .in2 = x, .out = gw};
    av_tensor *hold;
    size_t es = g->dt == AV_F64 ? sizeof(double) : sizeof(float);
    int nt = pick_threads(2.0 * (double)(g->N * g->P) * (double)g->K * (double)g->Co);
    if (use_weight_rows(g, nt, es)) {
        /* one shared block of columns, a few MB */
        j.g = g;
        j.ks = g->dt == AV_F64 ? &KD : &KF;
        int64_t tw = ((int64_t)4 << 20) / (g->K * (int64_t)es);
        if (tw < 256) tw = 256;
        if (conv_is_pointwise(g) && g->P >= tw) tw = g->P;
        j.tw = tw;
        j.ws = workspace(&hold, (size_t)((g->K + g->Co) * tw) * es);
        if (!j.ws) return -1;
        run_parallel(nt, weight_rows_worker, &j);
        av_release(hold);
        return 0;
    }
    nt = plan(&j, g, 512 << 10, 256, ((size_t)(g->Co * g->K) * es + 63) & ~(size_t)63, &hold,
              false);
    if (nt < 0) return -1;
    run_parallel(nt, weight_worker, &j);
    av_release(hold);
    return 0;
}

/* ---- backward data ---------------------------------------------------------------------- */
/* no two columns' windows overlap (kernel within the stride): any column split is race free */
static bool disjoint_windows(const conv_geom *g) {
    return g->dh * (g->kh - 1) < g->sh && g->dw * (g->kw - 1) < g->sw;
}

static void data_worker(void *ctx, int tid, int nth) {
    const job *j = ctx;
    const conv_geom *g = j->g;
    const kernels *ks = j->ks;
    const void *gy = j->in1, *w = j->in2;
    void *gx = j->out;
    const bool pw = conv_is_pointwise(g), disjoint = disjoint_windows(g);
    const int64_t Q = g->N * g->P;
    char *col = j->ws + j->per * (size_t)tid;
    char *tmp = col + (size_t)(g->K * j->tw) * ks->es;
    int64_t a, e;
    if (disjoint) {
        a = Q * tid / nth;
        e = Q * (tid + 1) / nth;
    } else { /* whole images per thread */
        a = g->N * tid / nth * g->P;
        e = g->N * (tid + 1) / nth * g->P;
    }
    if (!pw) { /* zero the images whose first column is ours, then accumulate */
        int64_t z0 = (a + g->P - 1) / g->P, z1 = (e + g->P - 1) / g->P;
        if (z1 > z0) memset(AT(gx, z0 * g->C * g->HW), 0, (size_t)((z1 - z0) * g->C * g->HW) * ks->es);
        if (disjoint && nth > 1) {
#pragma omp barrier
        }
    }
    for (int64_t q = a; q < e;) {
        tile t = next_tile(g, q, e, j->tw);
        q = t.q1;
        const int64_t width = t.q1 - t.q0;
        const bool single = t.n1 - t.n0 == 1;
        const int64_t n = t.n0, p0 = t.q0 - n * g->P;
        for (int64_t gi = 0; gi < g->G; gi++) {
            const void *A;
            int64_t lda;
            if (single) {
                A = CAT(gy, (n * g->Co + gi * g->Cog) * g->P + p0);
                lda = g->P;
            } else {
                FOR_SEGMENTS(g, t, m, s0, s1, off) ks->gather(g, tmp, width, off, gy, m, gi, s0, s1);
                A = tmp;
                lda = width;
            }
            const void *Wg = CAT(w, gi * g->Cog * g->K);
            if (pw && single) {
                av_gemm(g->dt, true, false, g->K, width, g->Cog, 1.0, Wg, g->K, A, lda, 0.0,
                        AT(gx, (n * g->C + gi * g->Cig) * g->HW + p0), g->HW);
                continue;
            }
            av_gemm(g->dt, true, false, g->K, width, g->Cog, 1.0, Wg, g->K, A, lda, 0.0, col, width);
            /* (a plain copy back into the images for a pointwise convolution) */
            FOR_SEGMENTS(g, t, m, s0, s1, off)
                ks->col2im(g, AT(col, off), width, AT(gx, (m * g->C + gi * g->Cig) * g->HW), s0, s1, 0, g->Cig);
        }
    }
}

/* Ungrouped convolutions whose batch is smaller than the thread count, or
 * whose weight is large, split the input channels instead of the columns:
 * each thread multiplies its slice of W^T by the chunk's gy and col2im's the
 * result into its own channels of gx, so no two threads write one pixel. */
static void data_channels_worker(void *ctx, int tid, int nth) {
    const job *j = ctx;
    const conv_geom *g = j->g;
    const kernels *ks = j->ks;
    const void *gy = j->in1, *w = j->in2;
    void *gx = j->out;
    const bool pw = conv_is_pointwise(g);
    const int64_t Q = g->N * g->P, kk = g->kh * g->kw;
    const int64_t c0 = g->C * tid / nth, c1 = g->C * (tid + 1) / nth, r0 = g->Co * tid / nth, r1 = g->Co * (tid + 1) / nth;
    char *gyb = j->ws; /* shared: Co x tw */
    char *dcol = j->ws + (size_t)(g->Co * j->tw) * ks->es + j->per * (size_t)tid; /* (c1-c0)*kk x tw */
    if (!pw)
        for (int64_t n = 0; n < g->N; n++) memset(AT(gx, (n * g->C + c0) * g->HW), 0, (size_t)((c1 - c0) * g->HW) * ks->es);
    for (int64_t q = 0; q < Q;) {
        tile t = next_tile(g, q, Q, j->tw);
        q = t.q1;
        const int64_t width = t.q1 - t.q0;
        const bool single = t.n1 - t.n0 == 1;
        const int64_t n = t.n0, p0 = t.q0 - n * g->P;
        if (!single) {
            FOR_SEGMENTS(g, t, m, s0, s1, off)
                for (int64_t r = r0; r < r1; r++)
                    memcpy(AT(gyb, r * width + off), CAT(gy, (m * g->Co + r) * g->P + s0), (size_t)(s1 - s0) * ks->es);
#pragma omp barrier
        }
        const void *A = single ? CAT(gy, n * g->Co * g->P + p0) : gyb;
        const int64_t lda = single ? g->P : width;
        if (c1 > c0) {
            if (pw && single) {
                av_gemm(g->dt, true, false, c1 - c0, width, g->Co, 1.0, CAT(w, c0), g->K, A, lda, 0.0,
                        AT(gx, (n * g->C + c0) * g->HW + p0), g->HW);
            } else {
                av_gemm(g->dt, true, false, (c1 - c0) * kk, width, g->Co, 1.0, CAT(w, c0 * kk), g->K, A, lda, 0.0, dcol,
                        width);
                FOR_SEGMENTS(g, t, m, s0, s1, off)
                    ks->col2im(g, AT(dcol, off), width, AT(gx, m * g->C * g->HW), s0, s1, c0, c1);
            }
        }
        if (!single) { /* the next chunk's gather overwrites gyb */
#pragma omp barrier
        }
    }
}

static bool use_data_channels(const conv_geom *g, int nt, size_t es) {
    return g->G == 1 && nt > 1 && g->C >= 4 * nt &&
           (g->N < nt || ((double)g->Co * g->K * es > (1 << 20) && (double)g->Co * (double)nt > 2.0 * (double)(g->N * g->P)));
}

int conv_im2col_backward_data(const conv_geom *g, const void *gy, const void *w, void *gx) {
    job j = {.in1 = gy, .in2 = w, .out = gx};
    av_tensor *hold;
    size_t es = g->dt == AV_F64 ? sizeof(double) : sizeof(float);
    int nt = pick_threads(2.0 * (double)(g->N * g->P) * (double)g->K * (double)g->Co);
    if (nt > g->N * g->P) nt = (int)(g->N * g->P);
    if (use_data_channels(g, nt, es)) {
        j.g = g;
        j.ks = g->dt == AV_F64 ? &KD : &KF;
        int64_t tw = ((int64_t)384 << 10) * nt / (g->K * (int64_t)es);
        if (tw < 128) tw = 128;
        if (conv_is_pointwise(g) && g->P >= tw) tw = g->P;
        j.tw = tw;
        const int64_t cmax = (g->C + nt - 1) / nt + 1; /* channels of the largest share */
        j.per = ((size_t)(cmax * g->kh * g->kw * tw) * es + 63) & ~(size_t)63;
        j.ws = workspace(&hold, (size_t)(g->Co * tw) * es + j.per * (size_t)nt);
        if (!j.ws) return -1;
        run_parallel(nt, data_channels_worker, &j);
        av_release(hold);
        return 0;
    }
    nt = plan(&j, g, 384 << 10, 512, 0, &hold, !disjoint_windows(g));
    if (nt < 0) return -1;
    run_parallel(nt, data_worker, &j);
    av_release(hold);
    return 0;
}

/* ---- bias ------------------------------------------------------------------------------- */
void conv_backward_bias(const conv_geom *g, const void *gy, void *gb) {
    const int64_t Co = g->Co, P = g->P, N = g->N;
    const bool f64 = g->dt == AV_F64;
    int nt = (double)N * Co * P > 65536 ? av_get_num_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t co = 0; co < Co; co++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) {
            if (f64) {
                const double *r = (const double *)gy + (n * Co + co) * P;
                for (int64_t p = 0; p < P; p++) s += r[p];
            } else {
                const float *r = (const float *)gy + (n * Co + co) * P;
                float part = 0;
                for (int64_t p = 0; p < P; p++) part += r[p];
                s += part;
            }
        }
        if (f64) ((double *)gb)[co] = s;
        else ((float *)gb)[co] = (float)s;
    }
}
