/* The data loader (runtime/include/aviary/data.h): POSIX worker threads fill a
 * ring of batch buffers (float32 N x 3 x H x W + int64 targets); the calling
 * thread takes ready batches in order. A worker claims a whole batch (batch b
 * goes to slot b % nslots once batch b - nslots has been taken), so the
 * number of batches in flight is bounded by the ring. Each sample's random
 * stream is keyed by (seed, epoch, sample index): the batches do not depend
 * on the number of workers, and num_workers = 0 decodes on the calling
 * thread with the same results. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/data.h"
#include "aviary/cuda.h"

enum { SLOT_FREE = 0, SLOT_READY = 2 };

typedef struct {
    float *x;
    int64_t *tgt, *idx, *skipped;
    int n, nskipped;
    int state;
    int64_t batch;
    char *err;
} slot;

struct av_loader {
    char **paths;
    int64_t *targets, n;
    av_transform *tf;
    int ntf;
    av_loader_opts o;
    int H, W;
    int64_t nbatches;
    int64_t *perm, epoch;
    int nslots;
    slot *slots;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int64_t next_claim, cur;
    int busy, stop, started;
    bool pin; /* batches in page-locked memory, for asynchronous copies to the GPU */
};

void av_loader_set_pin_memory(av_loader *l, bool on) {
    if (l) l->pin = on;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void fill_batch(av_loader *l, slot *s, int64_t b, int64_t epoch) {
    int64_t bs = l->o.batch_size, start = b * bs, end = start + bs;
    if (end > l->n) end = l->n;
    size_t per = (size_t)3 * l->H * l->W;
    s->n = 0;
    s->nskipped = 0;
    free(s->err);
    s->err = NULL;
    for (int64_t k = start; k < end; k++) {
        int64_t sample = l->perm[k];
        const char *path = l->paths[sample];
        int rc = av_transforms_run_file_into(l->tf, l->ntf, path, &l->o.sample, l->o.seed, (uint64_t)epoch,
                                             (uint64_t)sample, l->H, l->W, s->x + per * s->n);
        if (rc < 0) {
            if (l->o.on_error == AV_ON_ERROR_SKIP) {
                s->skipped[s->nskipped++] = sample;
                av_error_clear();
                continue;
            }
            const char *msg = av_last_error();
            size_t len = strlen(msg) + strlen(path) + 64;
            s->err = malloc(len);
            if (s->err) {
                if (strstr(msg, path)) snprintf(s->err, len, "%s", msg);
                else snprintf(s->err, len, "'%s': %s", path, msg);
            }
            av_error_clear();
            return;
        }
        s->tgt[s->n] = l->targets[sample];
        s->idx[s->n] = sample;
        s->n++;
    }
}

static void *worker(void *arg) {
    av_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !(l->started && l->next_claim < l->nbatches && l->next_claim < l->cur + l->nslots))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->stop) break;
        int64_t b = l->next_claim++, epoch = l->epoch;
        slot *s = &l->slots[b % l->nslots];
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        fill_batch(l, s, b, epoch);
        pthread_mutex_lock(&l->mu);
        s->batch = b;
        s->state = SLOT_READY;
        l->busy--;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void av_sample_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    av_sample_rng r;
    av_sample_rng_init(&r, seed ^ 0x9E3779B97F4A7C15ull, (uint64_t)epoch, UINT64_MAX);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = av_sample_rng_randint(&r, 0, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void order(const av_loader *l, int64_t epoch, int64_t *perm) {
    av_sample_order(l->n, l->o.seed, epoch, l->o.shuffle, perm);
}

int av_loader_order(const av_loader *l, int64_t epoch, int64_t *out) {
    order(l, epoch, out);
    return 0;
}

av_loader *av_loader_new(const char *const *paths, const int64_t *targets, int64_t n, const av_transform *tf,
                         int ntf, const av_loader_opts *o) {
    if (n < 0 || !o) return av_fail("loader: bad arguments"), NULL;
    if (o->batch_size < 1) return av_fail("loader: batch_size must be >= 1, got %d", o->batch_size), NULL;
    if (o->num_workers < 0 || o->num_workers > 256)
        return av_fail("loader: num_workers must be in [0, 256], got %d", o->num_workers), NULL;
    if (o->prefetch < 1) return av_fail("loader: prefetch must be >= 1, got %d", o->prefetch), NULL;
    if (av_transforms_check(tf, ntf) < 0) return NULL;
    int H, W;
    av_transforms_out_size(tf, ntf, &H, &W);
    if (H <= 0 || W <= 0)
        return av_fail("loader: the transforms give images of varying size; end the image transforms with a "
                       "crop (CenterCrop, RandomResizedCrop) or a Resize to {h, w}"),
               NULL;
    av_loader *l = calloc(1, sizeof *l);
    if (!l) return av_fail("loader: out of memory"), NULL;
    l->o = *o;
    l->n = n;
    l->H = H;
    l->W = W;
    l->ntf = ntf;
    l->nbatches = o->drop_last ? n / o->batch_size : (n + o->batch_size - 1) / o->batch_size;
    l->paths = calloc((size_t)(n ? n : 1), sizeof(char *));
    l->targets = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    l->perm = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    l->tf = malloc(sizeof(av_transform) * (size_t)(ntf ? ntf : 1));
    l->nslots = o->num_workers ? o->num_workers * o->prefetch : 1;
    l->slots = calloc((size_t)l->nslots, sizeof(slot));
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    if (!l->paths || !l->targets || !l->perm || !l->tf || !l->slots) goto oom;
    memcpy(l->tf, tf, sizeof(av_transform) * (size_t)ntf);
    for (int64_t i = 0; i < n; i++) {
        if (!(l->paths[i] = dupstr(paths[i]))) goto oom;
        l->targets[i] = targets[i];
    }
    size_t per = (size_t)3 * H * W;
    for (int i = 0; i < l->nslots; i++) {
        slot *s = &l->slots[i];
        s->x = malloc(sizeof(float) * per * (size_t)o->batch_size);
        s->tgt = malloc(sizeof(int64_t) * (size_t)o->batch_size);
        s->idx = malloc(sizeof(int64_t) * (size_t)o->batch_size);
        s->skipped = malloc(sizeof(int64_t) * (size_t)o->batch_size);
        if (!s->x || !s->tgt || !s->idx || !s->skipped) goto oom;
    }
    l->threads = calloc((size_t)(o->num_workers ? o->num_workers : 1), sizeof(pthread_t));
    if (!l->threads) goto oom;
    for (int i = 0; i < o->num_workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0) {
            av_loader_free(l);
            return av_fail("loader: cannot start worker thread %d", i + 1), NULL;
        }
        l->nthreads++;
    }
    return l;
oom:
    av_loader_free(l);
    return av_fail("loader: out of memory"), NULL;
}

int64_t av_loader_len(const av_loader *l) { return l ? l->nbatches : 0; }

int av_loader_start_epoch(av_loader *l, int64_t epoch) {
    pthread_mutex_lock(&l->mu);
    l->next_claim = l->nbatches; /* no new claims */
    while (l->busy > 0) pthread_cond_wait(&l->cv_ready, &l->mu);
    order(l, epoch, l->perm);
    l->epoch = epoch;
    for (int i = 0; i < l->nslots; i++) l->slots[i].state = SLOT_FREE;
    l->cur = 0;
    l->next_claim = 0;
    l->started = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

void av_batch_clear(av_batch *b) {
    if (!b) return;
    av_release(b->input);
    av_release(b->target);
    free(b->index);
    free(b->skipped_index);
    memset(b, 0, sizeof *b);
}

int av_loader_next(av_loader *l, av_batch *b) {
    memset(b, 0, sizeof *b);
    if (!l->started) return av_fail("loader: no epoch started");
    if (l->cur >= l->nbatches) return 0;
    int64_t cur = l->cur;
    slot *s = &l->slots[cur % l->nslots];
    if (l->o.num_workers == 0) {
        fill_batch(l, s, cur, l->epoch);
    } else {
        pthread_mutex_lock(&l->mu);
        while (!(s->state == SLOT_READY && s->batch == cur)) pthread_cond_wait(&l->cv_ready, &l->mu);
        pthread_mutex_unlock(&l->mu);
    }
    int rc = 1;
    if (s->err) {
        rc = av_fail("%s", s->err);
    } else {
        int64_t shape[4] = {s->n, 3, l->H, l->W};
        b->input = l->pin ? av_empty_pinned(4, shape, AV_F32) : av_empty(4, shape, AV_F32);
        b->target = l->pin ? av_empty_pinned(1, shape, AV_I64) : av_empty(1, shape, AV_I64);
        b->index = malloc(sizeof(int64_t) * (size_t)(s->n ? s->n : 1));
        b->skipped_index = malloc(sizeof(int64_t) * (size_t)(s->nskipped ? s->nskipped : 1));
        if (!b->input || !b->target || !b->index || !b->skipped_index) {
            av_batch_clear(b);
            rc = av_fail("loader: out of memory");
        } else {
            memcpy(av_data(b->input), s->x, sizeof(float) * (size_t)s->n * 3 * l->H * l->W);
            memcpy(av_data(b->target), s->tgt, sizeof(int64_t) * (size_t)s->n);
            memcpy(b->index, s->idx, sizeof(int64_t) * (size_t)s->n);
            memcpy(b->skipped_index, s->skipped, sizeof(int64_t) * (size_t)s->nskipped);
            b->n = s->n;
            b->skipped = s->nskipped;
        }
    }
    /* the batch is taken (even when it failed: a caller that catches the error goes on) */
    pthread_mutex_lock(&l->mu);
    s->state = SLOT_FREE;
    l->cur = cur + 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

const char *av_loader_path(const av_loader *l, int64_t i) { return i >= 0 && i < l->n ? l->paths[i] : NULL; }

void av_loader_free(av_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    free(l->threads);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    if (l->paths)
        for (int64_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    free(l->targets);
    free(l->perm);
    free(l->tf);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            free(l->slots[i].x);
            free(l->slots[i].tgt);
            free(l->slots[i].idx);
            free(l->slots[i].skipped);
            free(l->slots[i].err);
        }
    free(l->slots);
    free(l);
}
