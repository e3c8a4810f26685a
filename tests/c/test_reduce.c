/* Reductions (runtime/ops/cpu/reduce.c): hand-computed values for every op
 * and dtype, then randomized layouts checked against a brute-force double
 * reference, then errors. */
#include <stdlib.h>
#include "harness.h"

static const int D0[] = {0}, D1[] = {1}, DM1[] = {-1}, D01[] = {0, 1}, D02[] = {0, 2};
#define SUM AV_RED_SUM
static av_tensor *red(av_redop op, const av_tensor *t, int nd, const int *dims, bool keep) {
    return av_reduce(op, t, nd, dims, keep);
}
/* checks and releases */
#define EXPECT(t, tol, ...) do { av_tensor *t_ = (t); CHECK_VALUES(t_, tol, __VA_ARGS__); av_release(t_); } while (0)
#define EXPECT_SHAPE_VALUES(t, shp, tol, ...) \
    do { av_tensor *t_ = (t); test_check_shape(__FILE__, __LINE__, t_, sizeof(shp) / sizeof(int64_t), shp); \
         CHECK_VALUES(t_, tol, __VA_ARGS__); av_release(t_); } while (0)

static av_tensor *m23(av_dtype dt) { return test_tensor(dt, 2, T_SHAPE(2, 3), T_VALS(1, 2, 3, 4, 5, 6)); }

TEST(reduce_sum_basic) {
    av_tensor *x = m23(AV_F32);
    const int64_t s3[] = {3}, s2[] = {2}, s13[] = {1, 3}, s21[] = {2, 1}, s11[] = {1, 1};
    EXPECT_SHAPE_VALUES(red(SUM, x, 1, D0, false), s3, 0, 5, 7, 9);
    EXPECT_SHAPE_VALUES(red(SUM, x, 1, D1, false), s2, 0, 6, 15);
    EXPECT_SHAPE_VALUES(red(SUM, x, 1, DM1, false), s2, 0, 6, 15);
    EXPECT_SHAPE_VALUES(red(SUM, x, 1, D0, true), s13, 0, 5, 7, 9);
    EXPECT_SHAPE_VALUES(red(SUM, x, 1, D1, true), s21, 0, 6, 15);
    EXPECT_SHAPE_VALUES(red(SUM, x, 2, D01, true), s11, 0, 21);
    av_tensor *all = red(SUM, x, 0, NULL, false);
    CHECK(all && all->ndim == 0 && all->dtype == AV_F32);
    EXPECT(all, 0, 21);
    const int rev[] = {1, 0};
    EXPECT(red(SUM, x, 2, rev, false), 0, 21);
    av_release(x);
}

TEST(reduce_dtypes) {
    for (int dt = AV_F32; dt <= AV_U8; dt++) {
        av_tensor *x = m23((av_dtype)dt);
        av_tensor *s = red(SUM, x, 1, D1, false), *p = red(AV_RED_PROD, x, 1, D0, false);
        av_tensor *mx = red(AV_RED_MAX, x, 1, D0, false), *mn = red(AV_RED_MIN, x, 0, NULL, false);
        av_dtype acc = av_dtype_is_float((av_dtype)dt) ? (av_dtype)dt : AV_I64;
        CHECK(s && s->dtype == acc);
        CHECK(p && p->dtype == acc);
        CHECK(mx && mx->dtype == (av_dtype)dt);
        CHECK(mn && mn->dtype == (av_dtype)dt);
        CHECK_VALUES(s, 0, 6, 15);
        CHECK_VALUES(p, 0, 4, 10, 18);
        CHECK_VALUES(mx, 0, 4, 5, 6);
        CHECK_VALUES(mn, 0, 1);
        av_tensor *am = red(AV_RED_ARGMAX, x, 1, D1, false), *an = red(AV_RED_ARGMIN, x, 1, D0, false);
        CHECK(am && am->dtype == AV_I64);
        CHECK_VALUES(am, 0, 2, 2);
        CHECK_VALUES(an, 0, 0, 0, 0);
        av_tensor *all = red(AV_RED_ALL, x, 0, NULL, false), *any = red(AV_RED_ANY, x, 1, D1, false);
        CHECK(all && all->dtype == AV_U8 && any && any->dtype == AV_U8);
        CHECK_VALUES(all, 0, 1);
        CHECK_VALUES(any, 0, 1, 1);
        av_release(s), av_release(p), av_release(mx), av_release(mn), av_release(am), av_release(an);
        av_release(all), av_release(any), av_release(x);
    }
    /* u8 sums widen instead of wrapping; i64 sums stay exact past 2^53 */
    av_tensor *u = test_tensor(AV_U8, 1, T_SHAPE(3), T_VALS(200, 200, 255));
    EXPECT(red(SUM, u, 0, NULL, false), 0, 655);
    av_release(u);
    av_tensor *big = av_full(1, T_SHAPE(3), AV_I64, 0);
    int64_t *bp = av_data(big);
    bp[0] = (int64_t)1 << 60, bp[1] = 1, bp[2] = 2;
    av_tensor *bs = red(SUM, big, 0, NULL, false);
    CHECK(bs && *(int64_t *)av_data(bs) == ((int64_t)1 << 60) + 3);
    av_release(bs), av_release(big);
    av_tensor *z = test_tensor(AV_F32, 1, T_SHAPE(4), T_VALS(0, 1, 2, 0));
    EXPECT(red(AV_RED_ALL, z, 0, NULL, false), 0, 0);
    EXPECT(red(AV_RED_ANY, z, 0, NULL, false), 0, 1);
    av_release(z);
}

TEST(reduce_mean) {
    av_tensor *x = m23(AV_F32);
    EXPECT(red(AV_RED_MEAN, x, 1, D0, false), 1e-6, 2.5, 3.5, 4.5);
    EXPECT(red(AV_RED_MEAN, x, 0, NULL, false), 1e-6, 3.5);
    av_tensor *xd = m23(AV_F64);
    av_tensor *md = red(AV_RED_MEAN, xd, 1, D1, true);
    CHECK(md && md->dtype == AV_F64);
    EXPECT(md, 1e-12, 2, 5);
    av_release(xd);
    av_tensor *xi = m23(AV_I64);
    CHECK_ERR(red(AV_RED_MEAN, xi, 0, NULL, false), "could not infer output dtype");
    av_release(xi), av_release(x);
}

TEST(reduce_empty) {
    av_tensor *e = av_zeros(2, T_SHAPE(0, 3), AV_F32);
    const int64_t s3[] = {3}, s0[] = {0};
    EXPECT_SHAPE_VALUES(red(SUM, e, 1, D0, false), s3, 0, 0, 0, 0);
    EXPECT_SHAPE_VALUES(red(AV_RED_PROD, e, 1, D0, false), s3, 0, 1, 1, 1);
    EXPECT(red(AV_RED_MEAN, e, 0, NULL, false), 0, NAN);
    EXPECT(red(AV_RED_ALL, e, 0, NULL, false), 0, 1);
    EXPECT(red(AV_RED_ANY, e, 0, NULL, false), 0, 0);
    av_tensor *s = red(SUM, e, 1, D1, false);
    test_check_shape(__FILE__, __LINE__, s, 1, s0);
    av_release(s);
    av_tensor *mx = red(AV_RED_MAX, e, 1, D1, false); /* reducing the non-empty dim is fine */
    test_check_shape(__FILE__, __LINE__, mx, 1, s0);
    av_release(mx);
    CHECK_ERR(red(AV_RED_MAX, e, 1, D0, false), "zero-size dimension");
    CHECK_ERR(red(AV_RED_MIN, e, 0, NULL, false), "zero-size dimension");
    CHECK_ERR(red(AV_RED_ARGMAX, e, 0, NULL, false), "zero-size dimension");
    av_tensor *v, *i;
    CHECK_ERR(av_max_dim(e, 0, false, false, &v, &i), "zero-size dimension");
    av_tensor *ei = av_zeros(1, T_SHAPE(0), AV_I32);
    av_tensor *si = red(SUM, ei, 0, NULL, false);
    CHECK(si && si->dtype == AV_I64);
    EXPECT(si, 0, 0);
    av_release(ei), av_release(e);
}

TEST(reduce_zero_dim) {
    av_tensor *s = av_scalar_tensor(4, AV_F32);
    const int64_t none[] = {0};
    av_tensor *r = red(SUM, s, 1, D0, false);
    CHECK(r && r->ndim == 0);
    EXPECT(r, 0, 4);
    EXPECT(red(AV_RED_MAX, s, 1, DM1, true), 0, 4);
    EXPECT(red(AV_RED_ARGMAX, s, 0, NULL, false), 0, 0);
    av_tensor *v, *i;
    CHECK(av_max_dim(s, 0, false, false, &v, &i) == 0 && v->ndim == 0 && i->ndim == 0);
    CHECK_VALUES(v, 0, 4);
    CHECK_VALUES(i, 0, 0);
    av_release(v), av_release(i);
    (void)none;
    av_release(s);
}

TEST(reduce_nan) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 3), T_VALS(1, NAN, 3, NAN, 5, 2));
    EXPECT(red(AV_RED_MAX, x, 1, D1, false), 0, NAN, NAN);
    EXPECT(red(AV_RED_MAX, x, 1, D0, false), 0, NAN, NAN, 3);
    EXPECT(red(AV_RED_MIN, x, 1, D0, false), 0, NAN, NAN, 2);
    EXPECT(red(AV_RED_ARGMAX, x, 1, D1, false), 0, 1, 0);
    EXPECT(red(AV_RED_ARGMIN, x, 1, D0, false), 0, 1, 0, 1);
    EXPECT(red(AV_RED_ARGMAX, x, 0, NULL, false), 0, 1);
    EXPECT(red(SUM, x, 1, D0, false), 0, NAN, NAN, 5);
    EXPECT(red(AV_RED_ANY, x, 0, NULL, false), 0, 1);
    av_release(x);
    /* long rows go through the vector path; a NaN late in the row still wins */
    int64_t n = 1000;
    av_tensor *r = av_arange(0, (double)n, 1, AV_F32);
    ((float *)av_data(r))[777] = NAN;
    EXPECT(red(AV_RED_MAX, r, 0, NULL, false), 0, NAN);
    EXPECT(red(AV_RED_MIN, r, 0, NULL, false), 0, NAN);
    EXPECT(red(AV_RED_ARGMAX, r, 0, NULL, false), 0, 777);
    ((float *)av_data(r))[777] = -INFINITY;
    av_tensor *mn = red(AV_RED_MIN, r, 0, NULL, false);
    CHECK(mn && *(float *)av_data(mn) == -INFINITY);
    EXPECT(red(AV_RED_MAX, r, 0, NULL, false), 0, 999);
    av_release(r), av_release(mn);
    av_tensor *ninf = av_full(1, T_SHAPE(100), AV_F32, -INFINITY), *mx = red(AV_RED_MAX, ninf, 0, NULL, false);
    CHECK(mx && *(float *)av_data(mx) == -INFINITY);
    av_release(ninf), av_release(mx);
}

TEST(reduce_arg_ties_and_flat_index) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(3, 2), T_VALS(5, 1, 5, 7, 2, 7));
    EXPECT(red(AV_RED_ARGMAX, x, 1, D0, false), 0, 0, 1);
    EXPECT(red(AV_RED_ARGMAX, x, 1, D1, false), 0, 0, 1, 1);
    EXPECT(red(AV_RED_ARGMIN, x, 1, D0, true), 0, 2, 0);
    EXPECT(red(AV_RED_ARGMAX, x, 0, NULL, false), 0, 3);
    /* the flat index is row-major in the view's own order */
    av_tensor *t = av_transpose(x, 0, 1); /* [[5,5,2],[1,7,7]] */
    EXPECT(red(AV_RED_ARGMAX, t, 0, NULL, false), 0, 4);
    av_tensor *k = red(AV_RED_ARGMAX, t, 0, NULL, true);
    const int64_t s11[] = {1, 1};
    test_check_shape(__FILE__, __LINE__, k, 2, s11);
    av_release(k);
    CHECK_ERR(red(AV_RED_ARGMAX, x, 2, D01, false), "one dim");
    av_tensor *v, *i;
    CHECK(av_max_dim(t, 1, true, false, &v, &i) == 0);
    const int64_t s21[] = {2, 1};
    test_check_shape(__FILE__, __LINE__, v, 2, s21);
    CHECK_VALUES(v, 0, 5, 7);
    CHECK_VALUES(i, 0, 0, 1);
    av_release(v), av_release(i);
    CHECK(av_max_dim(t, -2, false, true, &v, &i) == 0);
    CHECK_VALUES(v, 0, 1, 5, 2);
    CHECK_VALUES(i, 0, 1, 0, 0);
    av_release(v), av_release(i), av_release(t), av_release(x);
}

TEST(reduce_errors) {
    av_tensor *x = m23(AV_F32);
    const int dup[] = {1, -1}, big[] = {2};
    CHECK_ERR(red(SUM, x, 2, dup, false), "appears multiple times");
    CHECK_ERR(red(SUM, x, 1, big, false), "out of range");
    CHECK_ERR(av_var(x, 1, big, 1, false), "out of range");
    av_tensor *h = av_to_dtype(x, AV_F16);
    if (h) {
        CHECK_ERR(red(SUM, h, 0, NULL, false), "convert with :float() first");
        CHECK_ERR(av_var(h, 0, NULL, 1, false), "convert with :float() first");
        av_tensor *v, *i;
        CHECK_ERR(av_max_dim(h, 0, false, false, &v, &i), "convert with :float() first");
        av_release(h);
    }
    av_tensor *xi = m23(AV_I32);
    CHECK_ERR(av_var(xi, 0, NULL, 1, false), "floating point");
    CHECK_ERR(av_norm(xi, 2, 0, NULL, false), "floating point");
    av_release(xi), av_release(x);
}

TEST(reduce_var_std) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 4), T_VALS(1, 2, 3, 4, 2, 4, 6, 8));
    EXPECT(av_var(x, 1, D1, 1, false), 1e-6, 5.0 / 3, 20.0 / 3);
    EXPECT(av_var(x, 1, D1, 0, false), 1e-6, 1.25, 5);
    EXPECT(av_std(x, 1, D1, 1, true), 1e-6, sqrt(5.0 / 3), sqrt(20.0 / 3));
    EXPECT(av_var(x, 1, D0, 1, false), 1e-6, 0.5, 2, 4.5, 8);
    EXPECT(av_var(x, 0, NULL, 1, false), 1e-5, 37.5 / 7);
    EXPECT(av_std(x, 0, NULL, 0, false), 1e-5, sqrt(37.5 / 8));
    /* N <= correction divides by zero, like PyTorch */
    av_tensor *vi = av_var(x, 1, D1, 4, false), *vj = av_var(x, 1, D1, 9, false);
    CHECK(vi && isinf(((float *)av_data(vi))[0]) && isinf(((float *)av_data(vi))[1]));
    CHECK(vj && isinf(((float *)av_data(vj))[1]));
    av_release(vi), av_release(vj);
    av_tensor *one = av_full(1, T_SHAPE(1), AV_F64, 3);
    EXPECT(av_var(one, 0, NULL, 1, false), 0, NAN);
    av_release(one);
    /* dims that don't merge (0 and 2 of a 3-d tensor) take the composed path */
    av_tensor *y = av_arange(0, 24, 1, AV_F64), *y3 = av_view(y, 3, T_SHAPE(2, 3, 4));
    av_tensor *v = av_var(y3, 2, D02, 1, false);
    /* each output covers {a + 12i + j}: i in 0..1, j in 0..3 */
    double vals[8] = {0, 1, 2, 3, 12, 13, 14, 15}, m = 7.5, ss = 0;
    for (int k = 0; k < 8; k++) ss += (vals[k] - m) * (vals[k] - m);
    EXPECT(v, 1e-9, ss / 7, ss / 7, ss / 7);
    av_release(y3), av_release(y), av_release(x);
}

TEST(reduce_norm) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 2), T_VALS(3, -4, 0, 1));
    EXPECT(av_norm(x, 2, 0, NULL, false), 1e-6, sqrt(26.0));
    EXPECT(av_norm(x, 1, 0, NULL, false), 1e-6, 8);
    EXPECT(av_norm(x, INFINITY, 0, NULL, false), 0, 4);
    EXPECT(av_norm(x, -INFINITY, 0, NULL, false), 0, 0);
    EXPECT(av_norm(x, 0, 0, NULL, false), 0, 3);
    EXPECT(av_norm(x, 3, 1, D1, false), 1e-5, cbrt(91.0), 1);
    EXPECT(av_norm(x, 2, 1, D0, true), 1e-6, 3, sqrt(17.0));
    av_tensor *n0 = av_norm(x, 0, 1, D1, false);
    CHECK(n0 && n0->dtype == AV_F32);
    EXPECT(n0, 0, 2, 1);
    av_tensor *e = av_zeros(1, T_SHAPE(0), AV_F32);
    EXPECT(av_norm(e, 2, 0, NULL, false), 0, 0);
    CHECK_ERR(av_norm(e, INFINITY, 0, NULL, false), "empty");
    av_release(e), av_release(x);
}

/* ---- randomized layouts against a brute-force reference --------------------- */
static double ref_acc(av_redop op, double a, double v) {
    switch (op) {
    case AV_RED_SUM: case AV_RED_MEAN: return a + v;
    case AV_RED_PROD: return a * v;
    case AV_RED_MAX: return (v > a || v != v || a != a) ? (a != a ? a : v) : a;
    case AV_RED_MIN: return (v < a || v != v || a != a) ? (a != a ? a : v) : a;
    case AV_RED_ALL: return a && v != 0;
    case AV_RED_ANY: return a || v != 0;
    default: return 0;
    }
}

/* reduces t over mask in double; out has keepdim shape, row-major */
static void reference(av_redop op, const av_tensor *t, unsigned mask, double *out, int64_t *count) {
    int64_t on = 1, oshape[AV_MAX_DIMS], ostride[AV_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        oshape[d] = (mask >> d & 1) ? 1 : t->shape[d];
        ostride[d] = on;
        on *= oshape[d];
    }
    double init = op == AV_RED_PROD || op == AV_RED_ALL ? 1 : op == AV_RED_MAX ? -INFINITY
                  : op == AV_RED_MIN ? INFINITY : 0;
    for (int64_t i = 0; i < on; i++) out[i] = init;
    *count = 1;
    for (int d = 0; d < t->ndim; d++)
        if (mask >> d & 1) *count *= t->shape[d];
    int64_t n = av_numel(t), idx[AV_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i, o = 0;
        for (int d = t->ndim - 1; d >= 0; d--) { idx[d] = r % t->shape[d]; r /= t->shape[d]; }
        for (int d = 0; d < t->ndim; d++)
            if (!(mask >> d & 1)) o += idx[d] * ostride[d];
        out[o] = ref_acc(op, out[o], av_get(t, idx));
    }
    if (op == AV_RED_MEAN)
        for (int64_t i = 0; i < on; i++) out[i] /= (double)*count;
}

/* random values of dtype dt; integer dtypes get small integers, which keep
 * sums and products exact */
static av_tensor *rand_values(int ndim, const int64_t *shape, av_dtype dt) {
    av_tensor *t = av_randn(ndim, shape, AV_F64);
    if (dt == AV_F64 || !t) return t;
    if (dt != AV_F32) {
        av_binary_scalar_(AV_OP_MUL, t, 3);
        av_unary_(AV_OP_ROUND, t);
        if (dt == AV_U8) av_unary_(AV_OP_ABS, t);
    }
    av_tensor *c = av_to_dtype(t, dt);
    av_release(t);
    return c;
}

/* a tensor of the given logical shape in one of several layouts */
static av_tensor *make_layout(int ndim, const int64_t *shape, av_dtype dt, int layout) {
    int64_t big[AV_MAX_DIMS];
    memcpy(big, shape, sizeof(int64_t) * ndim);
    av_tensor *b = NULL, *t = NULL;
    if (layout == 1 && ndim >= 2) { /* permuted storage: reversed dims */
        int perm[AV_MAX_DIMS];
        for (int d = 0; d < ndim; d++) big[d] = shape[ndim - 1 - d], perm[d] = ndim - 1 - d;
        b = rand_values(ndim, big, dt);
        t = av_permute(b, perm);
    } else if (layout == 2) { /* narrowed last dim */
        big[ndim - 1] += 3;
        b = rand_values(ndim, big, dt);
        t = av_narrow(b, ndim - 1, 1, shape[ndim - 1]);
    } else if (layout == 3 && ndim >= 2) { /* expanded: first dim broadcast */
        big[0] = 1;
        b = rand_values(ndim, big, dt);
        t = av_expand(b, ndim, shape);
    } else {
        t = rand_values(ndim, shape, dt);
    }
    av_release(b);
    return t;
}

static void check_random(av_redop op, av_dtype dt, int ndim, const int64_t *shape, unsigned mask, bool keep,
                         int layout) {
    av_tensor *t = make_layout(ndim, shape, dt, layout);
    int dims[AV_MAX_DIMS], nd = 0;
    if (mask == 0) mask = (1u << ndim) - 1; /* an empty dim list means every dim */
    for (int d = 0; d < ndim; d++)
        if (mask >> d & 1) dims[nd++] = (d & 1) ? d - ndim : d; /* mix negative dims in */
    av_tensor *r = av_reduce(op, t, nd, dims, keep);
    int64_t on = 1;
    for (int d = 0; d < ndim; d++) on *= (mask >> d & 1) ? 1 : shape[d];
    double *ref = malloc(sizeof(double) * (on ? on : 1));
    int64_t count;
    reference(op, t, mask, ref, &count);
    char b[96];
    if (!r) {
        test_fail(__FILE__, __LINE__, "op %d on %s failed: %s", op, av_shape_str(t, b, sizeof b), av_last_error());
    } else {
        CHECK(av_numel(r) == on);
        int expect_nd = keep ? ndim : ndim - __builtin_popcount(mask);
        CHECK(r->ndim == expect_nd);
        av_tensor *rc = av_contiguous(r), *flat = av_view(rc, 1, T_SHAPE(on));
        for (int64_t i = 0; i < on; i++) {
            double v = av_get(flat, (int64_t[]){i});
            double tol = (dt == AV_F32 ? 2e-5 : 1e-9) * (1 + fabs(ref[i]) + sqrt((double)count));
            if (!(fabs(v - ref[i]) <= tol || (isnan(v) && isnan(ref[i])))) {
                test_fail(__FILE__, __LINE__, "op %d dt %s shape %s mask %x layout %d: [%lld] = %.9g, want %.9g", op,
                          av_dtype_name(dt), av_shape_str(t, b, sizeof b), mask, layout, (long long)i, v, ref[i]);
                break;
            }
        }
        av_release(flat);
        av_release(rc);
    }
    free(ref);
    av_release(r);
    av_release(t);
}

TEST(reduce_random_layouts) {
    av_manual_seed(7);
    const int64_t shapes[][4] = {{5, 7, 3, 0}, {33, 65, 0, 0}, {2, 3, 4, 5}, {1, 17, 1, 9}, {130, 2, 0, 0},
                                 {3, 1000, 0, 0}, {1000, 3, 0, 0}, {4, 40, 37, 0}};
    const int ndims[] = {3, 2, 4, 4, 2, 2, 2, 3};
    const av_redop ops[] = {AV_RED_SUM, AV_RED_MEAN, AV_RED_MAX, AV_RED_MIN, AV_RED_ALL, AV_RED_ANY, AV_RED_PROD};
    for (size_t s = 0; s < sizeof ndims / sizeof *ndims; s++) {
        int nd = ndims[s];
        for (unsigned mask = 0; mask < (1u << nd); mask++)
            for (int layout = 0; layout < 4; layout++)
                for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
                    av_redop op = ops[o];
                    /* products of many values overflow doubles and floats differently */
                    if (op == AV_RED_PROD && s >= 5) continue;
                    av_dtype dt = (av_dtype)((s + mask + layout + o) % 5);
                    if (op == AV_RED_MEAN && !av_dtype_is_float(dt)) dt = AV_F64;
                    if (op == AV_RED_PROD) dt = AV_F64;
                    check_random(op, dt, nd, shapes[s], mask, (mask + layout) & 1, layout);
                }
    }
}

/* argmax along one dim against a brute-force scan, for every layout */
TEST(reduce_random_arg) {
    av_manual_seed(11);
    const int64_t shape[3] = {6, 50, 7};
    for (int layout = 0; layout < 4; layout++)
        for (int d = 0; d < 3; d++)
            for (int is_min = 0; is_min < 2; is_min++) {
                av_tensor *t = make_layout(3, shape, layout & 1 ? AV_I32 : AV_F32, layout), *v = NULL, *ix = NULL;
                if (av_max_dim(t, d, false, is_min, &v, &ix)) {
                    test_fail(__FILE__, __LINE__, "max_dim failed: %s", av_last_error());
                    av_release(t);
                    continue;
                }
                int64_t idx[3], oidx[2];
                bool ok = true;
                for (idx[0] = 0; idx[0] < (d == 0 ? 1 : 6) && ok; idx[0]++)
                    for (idx[1] = 0; idx[1] < (d == 1 ? 1 : 50) && ok; idx[1]++)
                        for (idx[2] = 0; idx[2] < (d == 2 ? 1 : 7) && ok; idx[2]++) {
                            int64_t j[3] = {idx[0], idx[1], idx[2]}, best = 0;
                            j[d] = 0;
                            double bv = av_get(t, j);
                            for (int64_t k = 1; k < shape[d]; k++) {
                                j[d] = k;
                                double x = av_get(t, j);
                                if (is_min ? x < bv : x > bv) bv = x, best = k;
                            }
                            int o = 0;
                            for (int e = 0; e < 3; e++)
                                if (e != d) oidx[o++] = idx[e];
                            if (av_get(ix, oidx) != best || av_get(v, oidx) != bv) {
                                test_fail(__FILE__, __LINE__, "layout %d dim %d min %d: index %g want %lld", layout, d,
                                          is_min, av_get(ix, oidx), (long long)best);
                                ok = false;
                            }
                        }
                av_release(t), av_release(v), av_release(ix);
            }
}

/* Big reductions use the threaded paths: split outputs, and split the
 * reduced range when there are too few outputs. Run with 4 threads so both
 * happen even on a 2-core machine. */
TEST(reduce_threaded_paths) {
    int saved = av_get_num_threads();
    av_set_num_threads(4);
    av_manual_seed(3);
    check_random(AV_RED_SUM, AV_F32, 2, T_SHAPE(3, 70001), 2, false, 0);
    check_random(AV_RED_SUM, AV_I32, 2, T_SHAPE(70001, 3), 1, true, 2);
    check_random(AV_RED_MAX, AV_F64, 2, T_SHAPE(2, 50000), 2, false, 1);
    check_random(AV_RED_ANY, AV_U8, 2, T_SHAPE(50000, 2), 1, false, 0);
    check_random(AV_RED_MEAN, AV_F32, 2, T_SHAPE(300, 400), 3, false, 1);
    check_random(AV_RED_MIN, AV_I64, 2, T_SHAPE(300, 400), 1, false, 2);
    /* argmax over a long range split across threads: the first of equal maxima wins */
    av_tensor *x = av_zeros(1, T_SHAPE(200000), AV_F32);
    float *p = av_data(x);
    p[150000] = 5, p[60000] = 5, p[199999] = 5;
    EXPECT(red(AV_RED_ARGMAX, x, 0, NULL, false), 0, 60000);
    p[170000] = NAN;
    EXPECT(red(AV_RED_ARGMAX, x, 0, NULL, false), 0, 170000);
    EXPECT(red(AV_RED_MAX, x, 0, NULL, false), 0, NAN);
    EXPECT(red(AV_RED_ARGMIN, x, 0, NULL, false), 0, 170000);
    av_release(x);
    av_set_num_threads(saved);
}

TEST(reduce_f32_sum_accuracy) {
    av_manual_seed(5);
    av_tensor *u = av_rand(2, T_SHAPE(4096, 4096), AV_F32);
    const float *p = av_data(u);
    double full = 0;
    for (int64_t i = 0; i < 4096 * 4096; i++) full += p[i];
    av_tensor *s = red(SUM, u, 0, NULL, false);
    double v;
    CHECK(s && av_item(s, &v) == 0);
    CHECK(fabs(v - full) / full < 1e-6);
    av_tensor *c = red(SUM, u, 1, D0, false), *r = red(SUM, u, 1, D1, false);
    double worst = 0;
    for (int j = 0; j < 4096; j++) {
        double col = 0, row = 0;
        for (int i = 0; i < 4096; i++) col += p[(int64_t)i * 4096 + j], row += p[(int64_t)j * 4096 + i];
        double ec = fabs(((float *)av_data(c))[j] - col) / col, er = fabs(((float *)av_data(r))[j] - row) / row;
        if (ec > worst) worst = ec;
        if (er > worst) worst = er;
    }
    CHECK(worst < 1e-6);
    av_release(s), av_release(c), av_release(r), av_release(u);
}
