/* C-level tests of the tensor core: lifetime, views, iteration, errors. */
#include <stdlib.h>
#include "harness.h"
#include "aviary/backend.h"

TEST(core_create_and_release) {
    size_t before = av_live_bytes();
    av_tensor *t = av_zeros(2, T_SHAPE(3, 4), AV_F32);
    CHECK(t && av_numel(t) == 12 && av_is_contiguous(t));
    CHECK(av_live_bytes() >= before + 48);
    av_tensor *v = av_transpose(t, 0, 1);
    CHECK(v->storage == t->storage && t->storage->refcount == 2);
    av_release(t);
    CHECK(v->storage->refcount == 1);
    av_release(v);
    CHECK(av_live_bytes() == before);
    av_release(NULL);
}

TEST(core_bad_shapes) {
    CHECK_ERR(av_empty(1, T_SHAPE(-2), AV_F32), "negative size -2");
    CHECK_ERR(av_empty(9, T_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1), AV_F32), "at most 8 dimensions");
    CHECK_ERR(av_empty(2, T_SHAPE(INT64_MAX / 2, 4), AV_F32), "too large");
    CHECK_ERR(av_empty(1, T_SHAPE(2), (av_dtype)99), "unknown dtype");
    CHECK_ERR(av_empty(1, T_SHAPE((int64_t)1 << 50), AV_F32), "out of memory");
}

TEST(core_views) {
    av_tensor *t = av_arange(0, 24, 1, AV_F32);
    av_tensor *v = av_view(t, 3, T_SHAPE(2, 3, 4));
    CHECK_SHAPE(v, 2, 3, 4);
    av_tensor *p = av_permute(v, (const int[]){2, 0, 1});
    CHECK_SHAPE(p, 4, 2, 3);
    CHECK(!av_is_contiguous(p));
    CHECK_NEAR(av_get(p, T_SHAPE(1, 1, 2)), 21, 0); /* p[i,j,k] = v[j,k,i] */
    av_tensor *s = av_select(v, 1, 2);
    CHECK_SHAPE(s, 2, 4);
    CHECK_VALUES(s, 0, 8, 9, 10, 11, 20, 21, 22, 23);
    av_tensor *n = av_narrow(v, 2, 1, 2);
    CHECK_VALUES(n, 0, 1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22);
    av_tensor *c = av_contiguous(p);
    CHECK(av_is_contiguous(c));
    CHECK_NEAR(av_get(c, T_SHAPE(1, 1, 2)), 21, 0);
    CHECK_ERR(av_view(p, 1, T_SHAPE(24)), "use reshape");
    av_tensor *r = av_reshape(p, 1, T_SHAPE(-1));
    CHECK_SHAPE(r, 24);
    CHECK_NEAR(av_get(r, T_SHAPE(1)), 4, 0);
    av_tensor *one = av_narrow(t, 0, 5, 1);
    av_tensor *ex = av_expand(one, 2, T_SHAPE(3, 2));
    CHECK_VALUES(ex, 0, 5, 5, 5, 5, 5, 5);
    CHECK(ex->stride[0] == 0);
    CHECK_ERR(av_fill_(ex, 1), "expanded");
    CHECK_ERR(av_expand(v, 3, T_SHAPE(2, 5, 4)), "cannot be expanded");
    CHECK_ERR(av_narrow(v, 0, 1, 2), "outside dimension 1");
    CHECK_ERR(av_select(v, 3, 0), "out of range");
    CHECK_ERR(av_as_strided(t, 1, T_SHAPE(30), T_SHAPE(1), 0), "outside the storage");
    av_tensor *sq = av_squeeze(one, AV_ALL_DIMS);
    CHECK(sq->ndim == 0);
    av_tensor *uq = av_unsqueeze(v, 3);
    CHECK_SHAPE(uq, 2, 3, 4, 1);
    av_tensor *fl = av_flatten(v, 1, 2);
    CHECK_SHAPE(fl, 2, 12);
    av_release(t); av_release(v); av_release(p); av_release(s); av_release(n); av_release(c); av_release(r);
    av_release(one); av_release(ex); av_release(sq); av_release(uq); av_release(fl);
}

TEST(core_broadcast_iteration) {
    /* a column plus a row: every (i, j) pair is visited once */
    av_tensor *col = test_tensor(AV_F64, 2, T_SHAPE(3, 1), T_VALS(0, 10, 20));
    av_tensor *row = test_tensor(AV_F64, 1, T_SHAPE(4), T_VALS(1, 2, 3, 4));
    av_tensor *s = av_binary(AV_OP_ADD, col, row);
    CHECK_SHAPE(s, 3, 4);
    CHECK_VALUES(s, 0, 1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24);
    av_tensor *bad = av_zeros(1, T_SHAPE(5), AV_F64);
    CHECK_ERR(av_binary(AV_OP_MUL, s, bad), "shapes 3x4 and 5 cannot be broadcast together");
    av_release(col); av_release(row); av_release(s); av_release(bad);
}

TEST(core_large_threaded_matches_serial) {
    /* the threaded split must cover every element exactly once, also across
     * partial rows of a non-contiguous operand */
    int64_t shape[2] = {1001, 257};
    av_tensor *a = av_randn(2, shape, AV_F32);
    av_tensor *at = av_transpose(a, 0, 1); /* 257 x 1001 view */
    av_tensor *b = av_binary_scalar(AV_OP_MUL, at, 2, false);
    int64_t idx[2];
    int bad = 0;
    for (idx[0] = 0; idx[0] < 257; idx[0]++)
        for (idx[1] = 0; idx[1] < 1001; idx[1]++)
            bad += av_get(b, idx) != 2 * av_get(at, idx);
    CHECK(bad == 0);
    av_release(a); av_release(b); av_release(at);
}

TEST(core_dtype_names_and_promotion) {
    CHECK(av_dtype_from_name("float") == AV_F32);
    CHECK(av_dtype_from_name("torch.int64") == AV_I64);
    CHECK(av_dtype_from_name("LongTensor") == AV_I64);
    CHECK(av_dtype_from_name("nope") == -1);
    CHECK(av_promote(AV_U8, AV_I32) == AV_I32);
    CHECK(av_promote(AV_I64, AV_F32) == AV_F32);
    CHECK(av_promote(AV_F32, AV_F64) == AV_F64);
}

TEST(core_half_conversions) {
    float f16_in[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1e-5f, 5.96e-8f, 1e-9f, 70000.0f};
    float f16_out[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.0975552e-05f, 5.9604645e-08f, 0.0f, INFINITY};
    av_tensor *t = av_from_data(1, T_SHAPE(8), AV_F32, f16_in);
    av_tensor *h = av_to_dtype(t, AV_F16), *back = av_to_dtype(h, AV_F32);
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)av_data(back))[i], f16_out[i], 1e-10);
    av_tensor *bh = av_to_dtype(t, AV_BF16), *bback = av_to_dtype(bh, AV_F32);
    CHECK_NEAR(((float *)av_data(bback))[2], -2.5, 0);
    CHECK_NEAR(((float *)av_data(bback))[3], 65536, 0);
    CHECK_ERR(av_binary(AV_OP_ADD, h, h), "convert with :float()");
    av_release(t); av_release(h); av_release(back); av_release(bh); av_release(bback);
}

TEST(core_random_reproducible) {
    av_manual_seed(5);
    av_tensor *a = av_rand(1, T_SHAPE(100000), AV_F32);
    av_manual_seed(5);
    av_tensor *b = av_rand(1, T_SHAPE(100000), AV_F32);
    CHECK(memcmp(av_data(a), av_data(b), 400000) == 0);
    av_tensor *c = av_rand(1, T_SHAPE(100000), AV_F32);
    CHECK(memcmp(av_data(a), av_data(c), 400000) != 0);
    av_tensor *p = av_randperm(1000, AV_I64);
    int seen[1000] = {0}, dup = 0;
    for (int i = 0; i < 1000; i++) dup += seen[((int64_t *)av_data(p))[i]]++;
    CHECK(dup == 0);
    av_release(a); av_release(b); av_release(c); av_release(p);
}

TEST(core_matmul_shapes_and_errors) {
    av_tensor *a = av_arange(0, 6, 1, AV_F32), *b = av_arange(0, 12, 1, AV_F32);
    av_tensor *A = av_view(a, 2, T_SHAPE(2, 3)), *B = av_view(b, 2, T_SHAPE(3, 4));
    av_tensor *C = av_mm(A, B);
    CHECK_VALUES(C, 0, 20, 23, 26, 29, 56, 68, 80, 92);
    av_tensor *Bt = av_transpose(B, 0, 1);
    CHECK_ERR(av_mm(A, Bt), "cannot be multiplied (3 != 4)");
    av_tensor *s0 = av_scalar_tensor(1, AV_F32);
    CHECK_ERR(av_matmul(s0, A), "at least 1 dimension");
    av_release(s0);
    av_tensor *ai = av_to_dtype(A, AV_I64), *bi = av_to_dtype(B, AV_I64), *ci = av_mm(ai, bi);
    CHECK_VALUES(ci, 0, 20, 23, 26, 29, 56, 68, 80, 92);
    CHECK_ERR(av_mm(A, bi), "same dtype");
    av_release(a); av_release(b); av_release(A); av_release(B); av_release(C); av_release(Bt);
    av_release(ai); av_release(bi); av_release(ci);
}
