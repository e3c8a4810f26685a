/* Joining and indexing (runtime/ops/cpu/index.c): hand-computed values for
 * every op and dtype, non-contiguous, expanded and empty operands, errors,
 * and large random cases (threaded paths) against a brute-force reference
 * through av_get. */
#include <stdlib.h>
#include "harness.h"

/* tensors made in a test are released together at its end */
static av_tensor *pool[256];
static int npool;
static av_tensor *K(av_tensor *t) {
    if (t && npool < 256) pool[npool++] = t;
    return t;
}
static void drop_all(void) {
    while (npool) av_release(pool[--npool]);
}

static const av_dtype all_dtypes[] = {AV_F32, AV_F64, AV_I64, AV_I32, AV_U8, AV_F16, AV_BF16};
#define NDT 7

static av_tensor *m23(av_dtype dt) { return K(test_tensor(dt, 2, T_SHAPE(2, 3), T_VALS(1, 2, 3, 4, 5, 6))); }
static av_tensor *idx64(int n, const double *v) { return K(test_tensor(AV_I64, 1, (const int64_t[]){n}, v)); }

/* element-by-element equality of two tensors of the same shape, through double */
static bool same_values(const av_tensor *a, const av_tensor *b) {
    if (!a || !b || a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) return false;
    int64_t n = av_numel(a), idx[AV_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = a->ndim - 1; d >= 0; d--) { idx[d] = r % a->shape[d]; r /= a->shape[d]; }
        double x = av_get(a, idx), y = av_get(b, idx);
        if (x != y && !(isnan(x) && isnan(y))) return false;
    }
    return true;
}

/* ---- cat / stack -------------------------------------------------------------- */

TEST(index_cat_values_every_dtype) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *a = m23(dt), *b = K(test_tensor(dt, 2, T_SHAPE(2, 1), T_VALS(7, 8)));
        av_tensor *c = K(test_tensor(dt, 2, T_SHAPE(1, 3), T_VALS(9, 10, 11)));
        av_tensor *ab[] = {a, b}, *ac[] = {a, c, a};
        av_tensor *r1 = K(av_cat(2, ab, 1)), *r0 = K(av_cat(3, ac, 0)), *rn = K(av_cat(2, ab, -1));
        CHECK(r1 && r1->dtype == dt);
        CHECK_SHAPE(r1, 2, 4);
        CHECK_VALUES(r1, 0, 1, 2, 3, 7, 4, 5, 6, 8);
        CHECK_SHAPE(r0, 5, 3);
        CHECK_VALUES(r0, 0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 1, 2, 3, 4, 5, 6);
        CHECK(same_values(r1, rn));
        drop_all();
    }
}

TEST(index_cat_promotes_and_skips_legacy_empty) {
    av_tensor *a = m23(AV_I32), *b = K(test_tensor(AV_F32, 2, T_SHAPE(2, 1), T_VALS(0.5, 1.5)));
    av_tensor *e = K(av_empty(1, T_SHAPE(0), AV_F64));
    av_tensor *list[] = {e, a, e, b};
    av_tensor *r = K(av_cat(4, list, 1));
    CHECK(r && r->dtype == AV_F64); /* the skipped empty still takes part in promotion */
    CHECK_SHAPE(r, 2, 4);
    CHECK_VALUES(r, 0, 1, 2, 3, 0.5, 4, 5, 6, 1.5);
    av_tensor *ee[] = {e, e};
    av_tensor *r2 = K(av_cat(2, ee, 0));
    CHECK_SHAPE(r2, 0);
    /* f16 with f32 goes through the converting copy */
    av_tensor *h = m23(AV_F16), *f = m23(AV_F32), *hf[] = {h, f};
    av_tensor *r3 = K(av_cat(2, hf, 0));
    CHECK(r3 && r3->dtype == AV_F32);
    CHECK_VALUES(r3, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6);
    drop_all();
}

TEST(index_cat_noncontiguous_expanded_empty) {
    av_tensor *a = m23(AV_F32);
    av_tensor *at = K(av_transpose(a, 0, 1)); /* 3x2: 1 4 / 2 5 / 3 6 */
    av_tensor *col = K(test_tensor(AV_F32, 2, T_SHAPE(1, 2), T_VALS(-1, -2)));
    av_tensor *ex = K(av_expand(col, 2, T_SHAPE(2, 2)));
    av_tensor *z = K(av_empty(2, T_SHAPE(0, 2), AV_F32));
    av_tensor *list[] = {at, z, ex};
    av_tensor *r = K(av_cat(3, list, 0));
    CHECK_SHAPE(r, 5, 2);
    CHECK_VALUES(r, 0, 1, 4, 2, 5, 3, 6, -1, -2, -1, -2);
    av_tensor *l2[] = {at, ex};
    CHECK_ERR(av_cat(2, l2, 1), "but tensor 1 has size 3x2 and tensor 2 has size 2x2");
    av_tensor *zz[] = {z, z};
    av_tensor *r2 = K(av_cat(2, zz, 1));
    CHECK_SHAPE(r2, 0, 4);
    /* u8 and i64 through strided moves of 1 and 8 bytes */
    av_tensor *u = m23(AV_U8), *ut = K(av_transpose(u, 0, 1)), *ul[] = {ut, ut};
    av_tensor *r3 = K(av_cat(2, ul, 1));
    CHECK_VALUES(r3, 0, 1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6);
    drop_all();
}

TEST(index_cat_errors) {
    av_tensor *a = m23(AV_F32), *v = K(av_zeros(1, T_SHAPE(3), AV_F32)), *s = K(av_scalar_tensor(1, AV_F32));
    av_tensor *l1[] = {a, v}, *l2[] = {a, s}, *l3[] = {a, a};
    CHECK_ERR(av_cat(2, l1, 0), "tensor 2 of size 3 has 1 dimensions but tensor 1 of size 2x3 has 2");
    CHECK_ERR(av_cat(2, l2, 0), "tensor 2 is 0-d");
    CHECK_ERR(av_cat(2, l3, 2), "cat: dimension 3 out of range for a 2-d tensor");
    CHECK_ERR(av_cat(0, l3, 0), "non-empty list");
    av_tensor *b = K(av_zeros(2, T_SHAPE(3, 3), AV_F32)), *l4[] = {a, b};
    CHECK_ERR(av_cat(2, l4, 1), "sizes must match except in dimension 2, but tensor 1 has size 2x3 and tensor 2 has size 3x3");
    av_tensor *l5[] = {a, NULL};
    CHECK_ERR(av_cat(2, l5, 0), "tensor 2 is NULL");
    drop_all();
}

TEST(index_stack) {
    av_tensor *a = m23(AV_I64), *b = K(av_binary_scalar(AV_OP_MUL, a, 10, false));
    av_tensor *l[] = {a, b};
    av_tensor *s0 = K(av_stack(2, l, 0)), *s1 = K(av_stack(2, l, 1)), *s2 = K(av_stack(2, l, 2));
    av_tensor *sm = K(av_stack(2, l, -1));
    CHECK_SHAPE(s0, 2, 2, 3);
    CHECK_VALUES(s0, 0, 1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60);
    CHECK_SHAPE(s1, 2, 2, 3);
    CHECK_VALUES(s1, 0, 1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60);
    CHECK_SHAPE(s2, 2, 3, 2);
    CHECK_VALUES(s2, 0, 1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60);
    CHECK(same_values(s2, sm));
    /* transposed inputs, 0-d inputs, f16 and promotion */
    av_tensor *t = K(av_transpose(a, 0, 1)), *lt[] = {t, t};
    av_tensor *st = K(av_stack(2, lt, 1));
    CHECK_SHAPE(st, 3, 2, 2);
    CHECK_VALUES(st, 0, 1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6);
    av_tensor *x = K(av_scalar_tensor(3, AV_F16)), *y = K(av_scalar_tensor(4, AV_F32)), *lxy[] = {x, y};
    av_tensor *sxy = K(av_stack(2, lxy, 0));
    CHECK_SHAPE(sxy, 2);
    CHECK(sxy && sxy->dtype == AV_F32);
    CHECK_VALUES(sxy, 0, 3, 4);
    av_tensor *e = K(av_empty(1, T_SHAPE(0), AV_F32)), *le[] = {e, e, e};
    CHECK_SHAPE(K(av_stack(3, le, 0)), 3, 0);
    av_tensor *c = K(av_zeros(2, T_SHAPE(3, 2), AV_I64)), *lbad[] = {a, c};
    CHECK_ERR(av_stack(2, lbad, 0), "tensor 1 has size 2x3 and tensor 2 has size 3x2");
    CHECK_ERR(av_stack(2, l, 3), "stack: dimension 4 out of range for a 3-d tensor");
    drop_all();
}

/* ---- index_select ----------------------------------------------------------------- */

TEST(index_select_values_every_dtype) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = K(test_tensor(dt, 2, T_SHAPE(3, 2), T_VALS(1, 2, 3, 4, 5, 6)));
        av_tensor *i = idx64(4, T_VALS(2, 0, 2, 1));
        av_tensor *r0 = K(av_index_select(x, 0, i));
        CHECK(r0 && r0->dtype == dt);
        CHECK_SHAPE(r0, 4, 2);
        CHECK_VALUES(r0, 0, 5, 6, 1, 2, 5, 6, 3, 4);
        av_tensor *r1 = K(av_index_select(x, 1, i = idx64(3, T_VALS(1, 1, 0))));
        CHECK_SHAPE(r1, 3, 3);
        CHECK_VALUES(r1, 0, 2, 2, 1, 4, 4, 3, 6, 6, 5);
        /* i32 indices, negative dim, transposed input (general path on dim 0) */
        av_tensor *i32 = K(test_tensor(AV_I32, 1, T_SHAPE(2), T_VALS(1, 0)));
        av_tensor *xt = K(av_transpose(x, 0, 1)); /* 2x3: 1 3 5 / 2 4 6 */
        av_tensor *r2 = K(av_index_select(xt, 0, i32)), *r3 = K(av_index_select(xt, -1, i32));
        CHECK_VALUES(r2, 0, 2, 4, 6, 1, 3, 5);
        CHECK_VALUES(r3, 0, 3, 1, 4, 2);
        drop_all();
    }
}

TEST(index_select_strided_index_empty_scalar) {
    av_tensor *x = K(av_arange(0, 24, 1, AV_F32)), *x3 = K(av_view(x, 3, T_SHAPE(2, 3, 4)));
    av_tensor *ibase = idx64(6, T_VALS(3, 9, 0, 9, 2, 9)), *i = K(av_as_strided(ibase, 1, T_SHAPE(3), T_SHAPE(2), 0));
    av_tensor *r = K(av_index_select(x3, 2, i));
    CHECK_SHAPE(r, 2, 3, 3);
    CHECK_VALUES(r, 0, 3, 0, 2, 7, 4, 6, 11, 8, 10, 15, 12, 14, 19, 16, 18, 23, 20, 22);
    av_tensor *ie = K(av_empty(1, T_SHAPE(0), AV_I64));
    CHECK_SHAPE(K(av_index_select(x3, 1, ie)), 2, 0, 4);
    av_tensor *xe = K(av_empty(2, T_SHAPE(0, 3), AV_F32));
    CHECK_SHAPE(K(av_index_select(xe, 1, idx64(2, T_VALS(2, 2)))), 0, 2);
    /* expanded input: every row shares memory */
    av_tensor *row = K(test_tensor(AV_F64, 2, T_SHAPE(1, 3), T_VALS(7, 8, 9))), *ex = K(av_expand(row, 2, T_SHAPE(4, 3)));
    av_tensor *rex = K(av_index_select(ex, 0, idx64(2, T_VALS(3, 1))));
    CHECK_VALUES(rex, 0, 7, 8, 9, 7, 8, 9);
    av_tensor *s = K(av_scalar_tensor(5, AV_F32)), *i0 = K(av_scalar_tensor(0, AV_I64));
    av_tensor *rs = K(av_index_select(s, 0, i0));
    CHECK(rs && rs->ndim == 0);
    CHECK_VALUES(rs, 0, 5);
    drop_all();
}

TEST(index_select_errors) {
    av_tensor *x = K(av_zeros(2, T_SHAPE(4, 5), AV_F32));
    CHECK_ERR(av_index_select(x, 1, idx64(3, T_VALS(0, 6, 1))), "index 7 is out of range for dimension 2 of size 5");
    CHECK_ERR(av_index_select(x, 0, idx64(1, T_VALS(-1))), "index 0 is out of range for dimension 1 of size 4");
    CHECK_ERR(av_index_select(x, 0, K(test_tensor(AV_F32, 1, T_SHAPE(1), T_VALS(0)))), "int64 or int32 tensor, got float32");
    CHECK_ERR(av_index_select(x, 0, K(av_zeros(2, T_SHAPE(1, 1), AV_I64))), "index must be 1-d, got size 1x1");
    CHECK_ERR(av_index_select(x, 2, idx64(1, T_VALS(0))), "dimension 3 out of range for a 2-d tensor");
    CHECK_ERR(av_index_select(K(av_scalar_tensor(1, AV_F32)), 0, idx64(2, T_VALS(0, 0))), "exactly one index");
    drop_all();
}

/* ---- gather ------------------------------------------------------------------------ */

TEST(index_gather_values_every_dtype) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = m23(dt);
        av_tensor *i1 = K(test_tensor(AV_I64, 2, T_SHAPE(2, 2), T_VALS(2, 0, 1, 1)));
        av_tensor *g1 = K(av_gather(x, 1, i1));
        CHECK(g1 && g1->dtype == dt);
        CHECK_SHAPE(g1, 2, 2);
        CHECK_VALUES(g1, 0, 3, 1, 5, 5);
        av_tensor *i0 = K(test_tensor(AV_I32, 2, T_SHAPE(1, 3), T_VALS(1, 0, 1)));
        CHECK_VALUES(K(av_gather(x, 0, i0)), 0, 4, 2, 6);
        /* an index longer than the input along dim is fine */
        av_tensor *il = K(test_tensor(AV_I64, 2, T_SHAPE(1, 5), T_VALS(0, 2, 2, 1, 0)));
        CHECK_VALUES(K(av_gather(x, -1, il)), 0, 1, 3, 3, 2, 1);
        drop_all();
    }
}

TEST(index_gather_noncontiguous_expanded_scalar) {
    av_tensor *x = m23(AV_F32), *xt = K(av_transpose(x, 0, 1)); /* 3x2: 1 4 / 2 5 / 3 6 */
    av_tensor *ib = K(test_tensor(AV_I64, 2, T_SHAPE(1, 2), T_VALS(2, 1))), *ie = K(av_expand(ib, 2, T_SHAPE(3, 2)));
    av_tensor *g = K(av_gather(xt, 0, ie));
    CHECK_SHAPE(g, 3, 2);
    CHECK_VALUES(g, 0, 3, 5, 3, 5, 3, 5);
    av_tensor *it = K(av_transpose(K(test_tensor(AV_I64, 2, T_SHAPE(2, 3), T_VALS(1, 0, 1, 0, 1, 0))), 0, 1));
    CHECK_VALUES(K(av_gather(xt, 1, it)), 0, 4, 1, 2, 5, 6, 3);
    av_tensor *empty = K(av_empty(2, T_SHAPE(0, 2), AV_I64));
    CHECK_SHAPE(K(av_gather(xt, 1, empty)), 0, 2);
    av_tensor *g0 = K(av_gather(K(av_scalar_tensor(9, AV_F64)), 0, K(av_scalar_tensor(0, AV_I64))));
    CHECK(g0 && g0->ndim == 0);
    CHECK_VALUES(g0, 0, 9);
    drop_all();
}

TEST(index_gather_errors) {
    av_tensor *x = m23(AV_F32);
    av_tensor *big = K(av_zeros(2, T_SHAPE(3, 1), AV_I64));
    CHECK_ERR(av_gather(x, 1, big), "index of size 3x1 is larger than the input of size 2x3 in dimension 1 (only dimension 2 may be larger)");
    CHECK_ERR(av_gather(x, 1, idx64(2, T_VALS(0, 1))), "index of size 2 has 1 dimensions but the input of size 2x3 has 2");
    av_tensor *bad = K(test_tensor(AV_I64, 2, T_SHAPE(2, 1), T_VALS(0, 3)));
    CHECK_ERR(av_gather(x, 1, bad), "gather: index 4 is out of range for dimension 2 of size 3");
    CHECK_ERR(av_gather(x, 1, K(av_zeros(2, T_SHAPE(2, 1), AV_U8))), "int64 or int32 tensor, got uint8");
    drop_all();
}

/* ---- scatter ----------------------------------------------------------------------- */

TEST(index_scatter_values_every_dtype) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = K(av_zeros(2, T_SHAPE(2, 4), dt));
        av_tensor *src = K(test_tensor(dt, 2, T_SHAPE(2, 3), T_VALS(1, 2, 3, 4, 5, 6)));
        av_tensor *i = K(test_tensor(AV_I64, 2, T_SHAPE(2, 2), T_VALS(3, 0, 1, 2)));
        av_tensor *r = K(av_scatter(x, 1, i, src, NULL));
        CHECK(r && r->dtype == dt);
        CHECK_SHAPE(r, 2, 4);
        CHECK_VALUES(r, 0, 2, 0, 0, 1, 0, 4, 5, 0);
        CHECK_VALUES(x, 0, 0, 0, 0, 0, 0, 0, 0, 0); /* out of place */
        /* duplicates accumulate with add; multiply starts from the existing values */
        av_tensor *dup = K(test_tensor(AV_I32, 2, T_SHAPE(1, 3), T_VALS(1, 1, 1)));
        av_tensor *ra = K(av_scatter(x, 1, dup, src, "add"));
        CHECK_VALUES(ra, 0, 0, 6, 0, 0, 0, 0, 0, 0);
        av_tensor *ones = K(av_full(2, T_SHAPE(2, 4), dt, 2));
        av_tensor *rm = K(av_scatter(ones, 1, dup, src, "multiply"));
        CHECK_VALUES(rm, 0, 2, 12, 2, 2, 2, 2, 2, 2);
        av_tensor *i0 = K(test_tensor(AV_I64, 2, T_SHAPE(1, 3), T_VALS(1, 0, 1)));
        CHECK(av_scatter_(x, 0, i0, src, NULL) == 0);
        CHECK_VALUES(x, 0, 0, 2, 0, 0, 1, 0, 3, 0);
        drop_all();
    }
}

TEST(index_scatter_noncontiguous_alias_scalar) {
    /* scatter into a transposed view writes through to the base */
    av_tensor *base = K(av_zeros(2, T_SHAPE(3, 2), AV_F32)), *v = K(av_transpose(base, 0, 1)); /* 2x3 view */
    av_tensor *src = K(av_full(2, T_SHAPE(2, 3), AV_F32, 7));
    av_tensor *i = K(test_tensor(AV_I64, 2, T_SHAPE(2, 1), T_VALS(2, 0)));
    CHECK(av_scatter_(v, 1, i, src, NULL) == 0);
    CHECK_VALUES(base, 0, 0, 7, 0, 0, 7, 0);
    /* src sharing memory with self is read before any write lands */
    av_tensor *x = K(test_tensor(AV_F64, 1, T_SHAPE(3), T_VALS(1, 2, 3)));
    CHECK(av_scatter_(x, 0, idx64(3, T_VALS(1, 2, 0)), x, NULL) == 0);
    CHECK_VALUES(x, 0, 3, 1, 2);
    /* an index that is its own target */
    av_tensor *ix = idx64(3, T_VALS(2, 0, 1));
    CHECK(av_scatter_(ix, 0, ix, K(test_tensor(AV_I64, 1, T_SHAPE(3), T_VALS(5, 6, 7))), NULL) == 0);
    CHECK_VALUES(ix, 0, 6, 7, 5);
    /* expanded src, 0-d, empty index */
    av_tensor *s0 = K(av_scalar_tensor(1, AV_I64));
    CHECK(av_scatter_(s0, 0, K(av_scalar_tensor(0, AV_I64)), K(av_scalar_tensor(4, AV_I64)), "add") == 0);
    CHECK_VALUES(s0, 0, 5);
    av_tensor *y = K(av_zeros(1, T_SHAPE(4), AV_U8));
    av_tensor *one = K(av_full(1, T_SHAPE(1), AV_U8, 1)), *ones = K(av_expand(one, 1, T_SHAPE(4)));
    CHECK(av_scatter_(y, 0, idx64(2, T_VALS(3, 3)), ones, "add") == 0);
    CHECK_VALUES(y, 0, 0, 0, 0, 2);
    CHECK(av_scatter_(y, 0, K(av_empty(1, T_SHAPE(0), AV_I64)), ones, NULL) == 0);
    drop_all();
}

TEST(index_scatter_errors) {
    av_tensor *x = K(av_zeros(2, T_SHAPE(2, 3), AV_F32)), *src = K(av_full(2, T_SHAPE(2, 3), AV_F32, 1));
    av_tensor *i = K(av_zeros(2, T_SHAPE(2, 2), AV_I64));
    CHECK_ERR(av_scatter(x, 1, i, src, "max"), "reduce must be \"add\" or \"multiply\", got \"max\"");
    CHECK_ERR(av_scatter(x, 1, i, K(av_zeros(2, T_SHAPE(2, 3), AV_F64)), NULL), "src has dtype float64 but the tensor scattered into has dtype float32");
    CHECK_ERR(av_scatter(x, 1, K(av_zeros(2, T_SHAPE(2, 4), AV_I64)), K(av_zeros(2, T_SHAPE(2, 3), AV_F32)), NULL),
              "index of size 2x4 is larger than src of size 2x3 in dimension 2");
    CHECK_ERR(av_scatter(x, 1, K(av_zeros(2, T_SHAPE(3, 1), AV_I64)), K(av_zeros(2, T_SHAPE(3, 3), AV_F32)), NULL),
              "index of size 3x1 is larger than self of size 2x3 in dimension 1 (only dimension 2 may be larger)");
    CHECK_ERR(av_scatter(x, 1, idx64(1, T_VALS(0)), src, NULL), "index of size 1 has 1 dimensions but self of size 2x3 has 2");
    av_tensor *bad = K(test_tensor(AV_I64, 2, T_SHAPE(1, 2), T_VALS(0, 3)));
    CHECK_ERR(av_scatter_(x, 1, bad, src, NULL), "scatter_: index 4 is out of range for dimension 2 of size 3");
    CHECK_ERR(av_scatter(x, 0, K(av_zeros(2, T_SHAPE(1, 1), AV_F32)), src, NULL), "int64 or int32 tensor, got float32");
    av_tensor *row = K(av_zeros(2, T_SHAPE(1, 3), AV_F32)), *ex = K(av_expand(row, 2, T_SHAPE(2, 3)));
    CHECK_ERR(av_scatter_(ex, 1, i, src, NULL), "expanded");
    CHECK_VALUES(x, 0, 0, 0, 0, 0, 0, 0); /* failed calls leave self alone */
    drop_all();
}

/* ---- masked_fill ------------------------------------------------------------------ */

TEST(index_masked_fill_every_dtype) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = m23(dt);
        av_tensor *m = K(test_tensor(AV_U8, 2, T_SHAPE(2, 3), T_VALS(1, 0, 0, 0, 2, 1)));
        av_tensor *r = K(av_masked_fill(x, m, 9));
        CHECK(r && r->dtype == dt);
        CHECK_VALUES(r, 0, 9, 2, 3, 4, 9, 9);
        CHECK_VALUES(x, 0, 1, 2, 3, 4, 5, 6);
        /* a row mask broadcast over rows, in place */
        av_tensor *row = K(test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(0, 1, 0)));
        CHECK(av_masked_fill_(x, row, 0) == 0);
        CHECK_VALUES(x, 0, 1, 0, 3, 4, 0, 6);
        drop_all();
    }
}

TEST(index_masked_fill_broadcast_noncontiguous) {
    /* the out-of-place form broadcasts t and mask both ways */
    av_tensor *col = K(test_tensor(AV_F32, 2, T_SHAPE(2, 1), T_VALS(1, 2)));
    av_tensor *m = K(test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(1, 0, 1)));
    av_tensor *r = K(av_masked_fill(col, m, -1.5));
    CHECK_SHAPE(r, 2, 3);
    CHECK_VALUES(r, 0, -1.5, 1, -1.5, -1.5, 2, -1.5);
    av_tensor *x = m23(AV_F64), *xt = K(av_transpose(x, 0, 1));
    av_tensor *mt = K(av_transpose(K(test_tensor(AV_U8, 2, T_SHAPE(2, 3), T_VALS(0, 1, 0, 0, 0, 1))), 0, 1));
    CHECK(av_masked_fill_(xt, mt, 0) == 0);
    CHECK_VALUES(x, 0, 1, 0, 3, 4, 5, 0);
    /* values cast like av_fill_: 2.7 into int64 truncates */
    av_tensor *li = K(av_zeros(1, T_SHAPE(2), AV_I64));
    CHECK_VALUES(K(av_masked_fill(li, K(av_full(1, T_SHAPE(1), AV_U8, 1)), 2.7)), 0, 2, 2);
    av_tensor *h = K(av_zeros(1, T_SHAPE(2), AV_BF16));
    CHECK_VALUES(K(av_masked_fill(h, K(av_full(1, T_SHAPE(2), AV_U8, 1)), 0.5)), 0, 0.5, 0.5);
    av_tensor *e = K(av_empty(2, T_SHAPE(0, 3), AV_F32));
    CHECK_SHAPE(K(av_masked_fill(e, m, 1)), 0, 3);
    CHECK(av_masked_fill_(e, m, 1) == 0);
    /* a u8 tensor used as its own mask */
    av_tensor *u = K(test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(0, 3, 1)));
    CHECK(av_masked_fill_(u, u, 7) == 0);
    CHECK_VALUES(u, 0, 0, 7, 7);
    drop_all();
}

TEST(index_masked_fill_errors) {
    av_tensor *x = K(av_zeros(1, T_SHAPE(3), AV_F32));
    av_tensor *m23u = K(av_zeros(2, T_SHAPE(2, 3), AV_U8));
    CHECK_ERR(av_masked_fill_(x, m23u, 1), "masked_fill_: mask of size 2x3 does not broadcast to the tensor's size 3");
    CHECK_ERR(av_masked_fill(x, K(av_zeros(1, T_SHAPE(3), AV_F32)), 1), "mask must be a uint8 tensor (0 or 1), got float32");
    CHECK_ERR(av_masked_fill(x, K(av_zeros(1, T_SHAPE(4), AV_U8)), 1), "cannot be broadcast");
    av_tensor *one = K(av_zeros(1, T_SHAPE(1), AV_F32)), *ex = K(av_expand(one, 1, T_SHAPE(3)));
    CHECK_ERR(av_masked_fill_(ex, K(av_zeros(1, T_SHAPE(3), AV_U8)), 1), "expanded");
    drop_all();
}

/* ---- masked_select and nonzero ---------------------------------------------------- */

TEST(index_masked_select) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = m23(dt);
        av_tensor *m = K(test_tensor(AV_U8, 2, T_SHAPE(2, 3), T_VALS(0, 1, 1, 1, 0, 0)));
        av_tensor *r = K(av_masked_select(x, m));
        CHECK(r && r->dtype == dt);
        CHECK_SHAPE(r, 3);
        CHECK_VALUES(r, 0, 2, 3, 4);
        drop_all();
    }
    av_tensor *x = m23(AV_F32), *xt = K(av_transpose(x, 0, 1)); /* 1 4 / 2 5 / 3 6 */
    av_tensor *col = K(test_tensor(AV_U8, 2, T_SHAPE(3, 1), T_VALS(1, 0, 1)));
    CHECK_VALUES(K(av_masked_select(xt, col)), 0, 1, 4, 3, 6);
    /* broadcasting grows the selection: a column of values against a row mask */
    av_tensor *c = K(test_tensor(AV_I32, 2, T_SHAPE(2, 1), T_VALS(7, 8)));
    av_tensor *row = K(test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(1, 0, 1)));
    av_tensor *rb = K(av_masked_select(c, row));
    CHECK_SHAPE(rb, 4);
    CHECK_VALUES(rb, 0, 7, 7, 8, 8);
    CHECK_SHAPE(K(av_masked_select(x, K(av_zeros(2, T_SHAPE(2, 3), AV_U8)))), 0);
    CHECK_SHAPE(K(av_masked_select(K(av_empty(1, T_SHAPE(0), AV_F32)), K(av_full(1, T_SHAPE(1), AV_U8, 1)))), 0);
    CHECK_ERR(av_masked_select(x, K(av_zeros(1, T_SHAPE(2), AV_U8))), "cannot be broadcast");
    CHECK_ERR(av_masked_select(x, K(av_zeros(1, T_SHAPE(3), AV_I64))), "mask must be a uint8 tensor");
    drop_all();
}

TEST(index_nonzero) {
    for (int k = 0; k < NDT; k++) {
        av_dtype dt = all_dtypes[k];
        av_tensor *x = K(test_tensor(dt, 2, T_SHAPE(2, 3), T_VALS(0, 1, 0, 2, 0, 3)));
        av_tensor *nz = K(av_nonzero(x));
        CHECK(nz && nz->dtype == AV_I64);
        CHECK_SHAPE(nz, 3, 2);
        CHECK_VALUES(nz, 0, 0, 1, 1, 0, 1, 2);
        drop_all();
    }
    /* -0 is zero and NaN is not, in every float type */
    for (int k = 0; k < NDT; k++) {
        if (!av_dtype_is_float(all_dtypes[k]) && all_dtypes[k] != AV_F16 && all_dtypes[k] != AV_BF16) continue;
        av_tensor *f = K(test_tensor(all_dtypes[k], 1, T_SHAPE(4), T_VALS(-0.0, NAN, 0, -2)));
        av_tensor *nz = K(av_nonzero(f));
        CHECK_SHAPE(nz, 2, 1);
        CHECK_VALUES(nz, 0, 1, 3);
        drop_all();
    }
    av_tensor *x3 = K(av_zeros(3, T_SHAPE(2, 2, 3), AV_I32)), *xt = K(av_permute(x3, (const int[]){2, 0, 1}));
    const int64_t at[3] = {1, 0, 2};
    av_set(x3, at, 5); /* xt[2][1][0] */
    av_tensor *nz = K(av_nonzero(xt));
    CHECK_SHAPE(nz, 1, 3);
    CHECK_VALUES(nz, 0, 2, 1, 0);
    av_tensor *s1 = K(av_nonzero(K(av_scalar_tensor(3, AV_F32)))), *s0 = K(av_nonzero(K(av_scalar_tensor(0, AV_F32))));
    CHECK_SHAPE(s1, 1, 0);
    CHECK_SHAPE(s0, 0, 0);
    CHECK_SHAPE(K(av_nonzero(K(av_empty(2, T_SHAPE(4, 0), AV_U8)))), 0, 2);
    av_tensor *one = K(av_full(1, T_SHAPE(1), AV_F64, 1)), *ex = K(av_expand(one, 1, T_SHAPE(3)));
    CHECK_VALUES(K(av_nonzero(ex)), 0, 0, 1, 2);
    drop_all();
}

/* ---- large inputs: the threaded paths against a brute-force reference ------------ */

static int saved_threads;
static void use_threads(int n) { saved_threads = av_get_num_threads(); av_set_num_threads(n); }
static void restore_threads(void) { av_set_num_threads(saved_threads); }

TEST(index_large_cat_and_index_select) {
    use_threads(4);
    av_manual_seed(11);
    av_tensor *a = K(av_randn(2, T_SHAPE(300, 257), AV_F32)), *b = K(av_randn(2, T_SHAPE(300, 3), AV_F32));
    av_tensor *bt = K(av_transpose(K(av_randn(2, T_SHAPE(5, 300), AV_F32)), 0, 1));
    av_tensor *l[] = {a, b, bt};
    av_tensor *r = K(av_cat(3, l, 1));
    CHECK_SHAPE(r, 300, 265);
    int bad = 0;
    for (int64_t i = 0; i < 300; i++)
        for (int64_t j = 0; j < 265; j++) {
            const av_tensor *src = j < 257 ? a : j < 260 ? b : bt;
            int64_t jj = j < 257 ? j : j < 260 ? j - 257 : j - 260;
            bad += av_get(r, (int64_t[]){i, j}) != av_get(src, (int64_t[]){i, jj});
        }
    CHECK(bad == 0);
    /* one huge row per input: the split-row copy */
    av_tensor *v1 = K(av_randn(1, T_SHAPE(100003), AV_F64)), *v2 = K(av_randn(1, T_SHAPE(70001), AV_F64));
    av_tensor *lv[] = {v1, v2}, *rv = K(av_cat(2, lv, 0));
    CHECK(rv && !memcmp(av_data(rv), av_data(v1), 100003 * 8) && !memcmp((double *)av_data(rv) + 100003, av_data(v2), 70001 * 8));
    /* index_select rows (memcpy path) and columns (general path) */
    av_tensor *ir = K(av_randint(0, 300, 1, T_SHAPE(500), AV_I64)), *ic = K(av_randint(0, 257, 1, T_SHAPE(400), AV_I32));
    av_tensor *sr = K(av_index_select(a, 0, ir)), *sc = K(av_index_select(a, 1, ic));
    bad = 0;
    for (int64_t i = 0; i < 500; i++)
        for (int64_t j = 0; j < 257; j++)
            bad += av_get(sr, (int64_t[]){i, j}) != av_get(a, (int64_t[]){(int64_t)av_get(ir, &i), j});
    for (int64_t i = 0; i < 300; i++)
        for (int64_t j = 0; j < 400; j++)
            bad += av_get(sc, (int64_t[]){i, j}) != av_get(a, (int64_t[]){i, (int64_t)av_get(ic, &j)});
    CHECK(bad == 0);
    restore_threads();
    drop_all();
}

TEST(index_large_gather_scatter_masked) {
    use_threads(4);
    av_manual_seed(12);
    av_tensor *x = K(av_randn(3, T_SHAPE(40, 50, 30), AV_F32)), *xp = K(av_permute(x, (const int[]){1, 2, 0}));
    av_tensor *gi = K(av_randint(0, 40, 3, T_SHAPE(50, 30, 60), AV_I64));
    av_tensor *g = K(av_gather(xp, 2, gi));
    int bad = 0;
    for (int64_t i = 0; i < 50; i++)
        for (int64_t j = 0; j < 30; j++)
            for (int64_t k = 0; k < 60; k++) {
                int64_t p[3] = {i, j, k}, q[3] = {i, j, (int64_t)av_get(gi, p)};
                bad += av_get(g, p) != av_get(xp, q);
            }
    CHECK(bad == 0);
    /* scatter add of ones counts how often each index occurs */
    av_tensor *counts = K(av_zeros(1, T_SHAPE(50), AV_I64)), *si = K(av_randint(0, 50, 1, T_SHAPE(100000), AV_I64));
    av_tensor *one = K(av_full(1, T_SHAPE(1), AV_I64, 1)), *ones = K(av_expand(one, 1, T_SHAPE(100000)));
    CHECK(av_scatter_(counts, 0, si, ones, "add") == 0);
    int64_t ref[50] = {0}, total = 0;
    for (int64_t i = 0; i < 100000; i++) ref[(int64_t)av_get(si, &i)]++;
    bad = 0;
    for (int64_t i = 0; i < 50; i++) bad += av_get(counts, &i) != ref[i], total += ref[i];
    CHECK(bad == 0 && total == 100000);
    /* masked_select / nonzero / masked_fill on a non-contiguous view, and on a contiguous one */
    for (int pass = 0; pass < 2; pass++) {
        av_tensor *t = pass ? x : xp;
        av_tensor *m = K(av_binary_scalar(AV_OP_GT, t, 0.3, false));
        av_tensor *sel = K(av_masked_select(t, m)), *nz = K(av_nonzero(m)), *mf = K(av_masked_fill(t, m, 0));
        CHECK(sel && nz && mf && nz->shape[0] == sel->shape[0] && nz->shape[1] == 3);
        int64_t pos = 0, n = av_numel(t), idx[3];
        bad = 0;
        for (int64_t f = 0; f < n && sel && nz; f++) {
            int64_t r = f;
            for (int d = 2; d >= 0; d--) { idx[d] = r % t->shape[d]; r /= t->shape[d]; }
            double v = av_get(t, idx);
            if (v > 0.3) {
                bad += pos >= sel->shape[0] || av_get(sel, &pos) != v;
                for (int d = 0; d < 3 && pos < nz->shape[0]; d++) bad += av_get(nz, (int64_t[]){pos, d}) != idx[d];
                pos++;
            }
            bad += av_get(mf, idx) != (v > 0.3 ? 0 : v);
        }
        CHECK(bad == 0 && sel && pos == sel->shape[0]);
    }
    restore_threads();
    drop_all();
}
