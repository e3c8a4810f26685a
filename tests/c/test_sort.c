/* cumsum, cumprod, sort, topk (runtime/ops/cpu/sort.c). */
#include <stdlib.h>
#include "harness.h"

#define EXPECT(t, tol, ...) do { av_tensor *t_ = (t); CHECK_VALUES(t_, tol, __VA_ARGS__); av_release(t_); } while (0)

TEST(sort_cumsum_cumprod) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 3), T_VALS(1, 2, 3, 4, 5, 6));
    EXPECT(av_cumsum(x, 1), 0, 1, 3, 6, 4, 9, 15);
    EXPECT(av_cumsum(x, -1), 0, 1, 3, 6, 4, 9, 15);
    EXPECT(av_cumsum(x, 0), 0, 1, 2, 3, 5, 7, 9);
    EXPECT(av_cumprod(x, 1), 0, 1, 2, 6, 4, 20, 120);
    EXPECT(av_cumprod(x, 0), 0, 1, 2, 3, 4, 10, 18);
    av_tensor *t = av_transpose(x, 0, 1); /* [[1,4],[2,5],[3,6]] */
    EXPECT(av_cumsum(t, 0), 0, 1, 4, 3, 9, 6, 15);
    EXPECT(av_cumsum(t, 1), 0, 1, 5, 2, 7, 3, 9);
    av_release(t);
    av_tensor *u = test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(200, 200, 100));
    av_tensor *cu = av_cumsum(u, 0);
    CHECK(cu && cu->dtype == AV_I64);
    EXPECT(cu, 0, 200, 400, 500);
    av_tensor *ci = av_cumprod(u, 0);
    CHECK(ci && ci->dtype == AV_I64);
    EXPECT(ci, 0, 200, 40000, 4000000);
    av_release(u);
    av_tensor *s = av_scalar_tensor(3, AV_F64), *cs = av_cumsum(s, 0);
    CHECK(cs && cs->ndim == 0 && cs->dtype == AV_F64);
    EXPECT(cs, 0, 3);
    av_release(s);
    av_tensor *e = av_zeros(2, T_SHAPE(0, 4), AV_F32), *ce = av_cumsum(e, 0);
    CHECK(ce && ce->shape[0] == 0 && ce->shape[1] == 4);
    av_release(ce), av_release(e);
    av_tensor *h = av_to_dtype(x, AV_BF16);
    if (h) CHECK_ERR(av_cumsum(h, 0), "convert with :float() first");
    av_release(h);
    CHECK_ERR(av_cumsum(x, 2), "out of range");
    av_release(x);
}

/* long lines against a double reference, with every dim and both layouts */
TEST(sort_cumsum_long) {
    av_manual_seed(2);
    av_tensor *x = av_rand(3, T_SHAPE(7, 300, 5), AV_F32);
    for (int d = 0; d < 3; d++) {
        av_tensor *c = av_cumsum(x, d);
        int64_t idx[3], L = x->shape[d];
        bool ok = c != NULL;
        for (idx[0] = 0; idx[0] < 7 && ok; idx[0]++)
            for (idx[1] = 0; idx[1] < 300 && ok; idx[1]++)
                for (idx[2] = 0; idx[2] < 5 && ok; idx[2]++) {
                    int64_t j[3] = {idx[0], idx[1], idx[2]};
                    double ref = 0;
                    for (int64_t r = 0; r <= idx[d] && r < L; r++) {
                        j[d] = r;
                        ref += av_get(x, j);
                    }
                    if (fabs(av_get(c, idx) - ref) > 1e-4) {
                        test_fail(__FILE__, __LINE__, "cumsum dim %d at %lld,%lld,%lld: %g want %g", d,
                                  (long long)idx[0], (long long)idx[1], (long long)idx[2], av_get(c, idx), ref);
                        ok = false;
                    }
                }
        av_release(c);
    }
    av_release(x);
}

TEST(sort_basic_stable_nan) {
    av_tensor *x = test_tensor(AV_F32, 1, T_SHAPE(6), T_VALS(3, NAN, 1, 3, -2, 1));
    av_tensor *v, *i;
    CHECK(av_sort(x, 0, false, &v, &i) == 0);
    CHECK(i && i->dtype == AV_I64);
    CHECK_VALUES(v, 0, -2, 1, 1, 3, 3, NAN);
    CHECK_VALUES(i, 0, 4, 2, 5, 0, 3, 1);
    av_release(v), av_release(i);
    CHECK(av_sort(x, -1, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, NAN, 3, 3, 1, 1, -2);
    CHECK_VALUES(i, 0, 1, 0, 3, 2, 5, 4);
    av_release(v), av_release(i);
    av_release(x);
    /* along dim 0 of a 2-d tensor: strided lines */
    av_tensor *m = test_tensor(AV_I32, 2, T_SHAPE(3, 2), T_VALS(5, 1, 2, 9, 2, 0));
    CHECK(av_sort(m, 0, false, &v, &i) == 0);
    CHECK(v->dtype == AV_I32);
    CHECK_VALUES(v, 0, 2, 0, 2, 1, 5, 9);
    CHECK_VALUES(i, 0, 1, 2, 2, 0, 0, 1);
    av_release(v), av_release(i);
    CHECK(av_sort(m, 1, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, 5, 1, 9, 2, 2, 0);
    CHECK_VALUES(i, 0, 0, 1, 1, 0, 0, 1);
    av_release(v), av_release(i), av_release(m);
    av_tensor *s = av_scalar_tensor(7, AV_F32);
    CHECK(av_sort(s, 0, false, &v, &i) == 0 && v->ndim == 0 && i->ndim == 0);
    CHECK_VALUES(v, 0, 7);
    CHECK_VALUES(i, 0, 0);
    av_release(v), av_release(i), av_release(s);
    av_tensor *e = av_zeros(2, T_SHAPE(3, 0), AV_F32);
    CHECK(av_sort(e, 1, false, &v, &i) == 0 && av_numel(v) == 0);
    av_release(v), av_release(i), av_release(e);
}

static int cmp_key(const void *a, const void *b) {
    const double *x = a, *y = b; /* {value, index}: ties by index keep it stable */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : 1;
}

/* long lines (merge path) with many ties, in every dtype, against qsort */
TEST(sort_long_lines) {
    av_manual_seed(4);
    for (int dt = AV_F32; dt <= AV_U8; dt++) {
        av_tensor *r = av_randint(0, 50, 2, T_SHAPE(3, 1001), AV_F64), *x = av_to_dtype(r, (av_dtype)dt);
        av_tensor *xt = av_transpose(x, 0, 1); /* sort along dim 0 of the transposed view */
        for (int desc = 0; desc < 2; desc++) {
            av_tensor *v, *i;
            CHECK(av_sort(xt, 0, desc, &v, &i) == 0);
            double (*pairs)[2] = malloc(sizeof *pairs * 1001);
            for (int64_t row = 0; row < 3; row++) {
                for (int64_t k = 0; k < 1001; k++) {
                    double val = av_get(x, (int64_t[]){row, k});
                    pairs[k][0] = desc ? -val : val;
                    pairs[k][1] = (double)k;
                }
                qsort(pairs, 1001, sizeof *pairs, cmp_key);
                for (int64_t k = 0; k < 1001; k++) {
                    double gv = av_get(v, (int64_t[]){k, row}), gi = av_get(i, (int64_t[]){k, row});
                    if (gi != pairs[k][1] || gv != (desc ? -pairs[k][0] : pairs[k][0])) {
                        test_fail(__FILE__, __LINE__, "%s desc %d row %lld pos %lld: (%g, %g) want (%g, %g)",
                                  av_dtype_name((av_dtype)dt), desc, (long long)row, (long long)k, gv, gi,
                                  desc ? -pairs[k][0] : pairs[k][0], pairs[k][1]);
                        break;
                    }
                }
            }
            free(pairs);
            av_release(v), av_release(i);
        }
        av_release(xt), av_release(x), av_release(r);
    }
}

TEST(sort_topk) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 5), T_VALS(1, 5, 3, 5, 2, 0, -1, NAN, 4, 4));
    av_tensor *v, *i;
    CHECK(av_topk(x, 2, 1, true, true, &v, &i) == 0);
    CHECK(v->shape[0] == 2 && v->shape[1] == 2);
    CHECK_VALUES(v, 0, 5, 5, NAN, 4);
    CHECK_VALUES(i, 0, 1, 3, 2, 3);
    av_release(v), av_release(i);
    CHECK(av_topk(x, 3, -1, false, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, 1, 2, 3, -1, 0, 4);
    CHECK_VALUES(i, 0, 0, 4, 2, 1, 0, 3);
    av_release(v), av_release(i);
    CHECK(av_topk(x, 1, 0, true, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, 1, 5, NAN, 5, 4);
    CHECK_VALUES(i, 0, 0, 0, 1, 0, 1);
    av_release(v), av_release(i);
    CHECK(av_topk(x, 0, 1, true, true, &v, &i) == 0 && av_numel(v) == 0);
    av_release(v), av_release(i);
    CHECK(av_topk(x, 5, 1, true, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, 5, 5, 3, 2, 1, NAN, 4, 4, 0, -1);
    av_release(v), av_release(i);
    CHECK_ERR(av_topk(x, 6, 1, true, true, &v, &i), "out of range");
    CHECK_ERR(av_topk(x, -1, 1, true, true, &v, &i), "non-negative");
    CHECK_ERR(av_topk(x, 1, 2, true, true, &v, &i), "out of range");
    av_release(x);
    /* small-k selection and full sort agree on long lines, ties included */
    av_manual_seed(9);
    av_tensor *r = av_randint(0, 30, 2, T_SHAPE(4, 500), AV_I64);
    for (int largest = 0; largest < 2; largest++) {
        av_tensor *sv, *si, *tv, *ti;
        CHECK(av_sort(r, 1, largest, &sv, &si) == 0);
        for (int64_t k = 1; k <= 40; k += 13) {
            CHECK(av_topk(r, k, 1, largest, true, &tv, &ti) == 0);
            av_tensor *nv = av_narrow(sv, 1, 0, k), *ni = av_narrow(si, 1, 0, k);
            av_tensor *ev = av_binary(AV_OP_EQ, nv, tv), *ei = av_binary(AV_OP_EQ, ni, ti);
            av_tensor *av_ = av_reduce(AV_RED_ALL, ev, 0, NULL, false), *ai = av_reduce(AV_RED_ALL, ei, 0, NULL, false);
            CHECK(av_ && *(uint8_t *)av_data(av_) == 1);
            CHECK(ai && *(uint8_t *)av_data(ai) == 1);
            av_release(nv), av_release(ni), av_release(ev), av_release(ei), av_release(av_), av_release(ai);
            av_release(tv), av_release(ti);
        }
        av_release(sv), av_release(si);
    }
    av_release(r);
}
