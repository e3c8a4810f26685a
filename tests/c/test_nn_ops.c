/* nn operators from C (aviary/nn_ops.h): 0-based pooling indices, error
 * returns, running-stat updates, dropout identity cases, the relu gradient
 * kernel, and gradients through one recorded node each. */
#include <stdlib.h>
#include "harness.h"
#include "aviary/autograd.h"
#include "aviary/nn_ops.h"

#define EXPECT(t, tol, ...) do { av_tensor *t_ = (t); CHECK(t_ != NULL); if (t_) CHECK_VALUES(t_, tol, __VA_ARGS__); av_release(t_); } while (0)

TEST(nn_max_pool_indices_are_0_based) {
    av_tensor *x = test_tensor(AV_F32, 4, T_SHAPE(1, 1, 3, 4), T_VALS(1, 9, 2, 3, 4, 5, 6, 8, 0, 7, 11, 10));
    av_pool2d_opts o;
    av_pool2d_opts_init(&o, 2, 2);
    o.stride[0] = o.stride[1] = 1;
    av_tensor *idx = NULL, *y = av_max_pool2d(x, &o, &idx);
    CHECK(y && idx && idx->dtype == AV_I64);
    if (y) CHECK_SHAPE(y, 1, 1, 2, 3);
    if (y) CHECK_VALUES(y, 0, 9, 9, 8, 7, 11, 11);
    if (idx) CHECK_VALUES(idx, 0, 1, 1, 7, 9, 10, 10);
    av_release(y);
    av_release(idx);
    av_tensor *am_i = NULL, *am = av_adaptive_max_pool2d(x, 1, 2, &am_i);
    EXPECT(am, 0, 9, 11);
    EXPECT(am_i, 0, 1, 10);
    EXPECT(av_adaptive_avg_pool2d(x, 1, 1), 1e-6, 5.5);
    o.padding[0] = o.padding[1] = 1;
    o.stride[0] = o.stride[1] = 2;
    EXPECT(av_avg_pool2d(x, &o), 1e-6, 0.25, 2.75, 0.75, 1, 7.25, 4.5);
    o.count_include_pad = false;
    EXPECT(av_avg_pool2d(x, &o), 1e-6, 1, 5.5, 3, 2, 7.25, 9);
    av_release(x);
}

TEST(nn_errors) {
    av_tensor *x = av_zeros(4, T_SHAPE(2, 3, 4, 4), AV_F32), *rm = av_zeros(1, T_SHAPE(2), AV_F32);
    av_pool2d_opts o;
    av_pool2d_opts_init(&o, 3, 3);
    o.padding[0] = o.padding[1] = 2;
    CHECK_ERR(av_max_pool2d(x, &o, NULL), "padding 2x2 must be at most half the kernel size 3x3");
    av_pool2d_opts_init(&o, 5, 5);
    CHECK_ERR(av_avg_pool2d(x, &o), "kernel 5x5 is larger than the padded input 4x4");
    CHECK_ERR(av_adaptive_avg_pool2d(x, 0, 2), "output size must be positive");
    CHECK_ERR(av_batch_norm(x, rm, NULL, NULL, NULL, true, 0.1, 1e-5),
              "batch_norm: running_mean has 2 entries, expected 3 (channels of input 2x3x4x4)");
    CHECK_ERR(av_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), "required in evaluation mode");
    CHECK_ERR(av_dropout(x, 1.5, true), "between 0 and 1");
    CHECK_ERR(av_activation(AV_NACTS, x, 0, 0), "unknown activation");
    av_release(x);
    av_release(rm);
}

TEST(nn_batch_norm_running_stats_and_dropout_identity) {
    /* channel values {1, 3} and {2, 6}: means 2 and 4, unbiased variances 2 and 8 */
    av_tensor *x = test_tensor(AV_F64, 2, T_SHAPE(2, 2), T_VALS(1, 2, 3, 6));
    av_tensor *rm = av_zeros(1, T_SHAPE(2), AV_F32), *rv = av_full(1, T_SHAPE(2), AV_F32, 1);
    uint32_t v0 = rm->storage->version;
    av_tensor *y = av_batch_norm(x, rm, rv, NULL, NULL, true, 0.5, 0);
    EXPECT(y, 1e-12, -1, -1, 1, 1);
    CHECK(rm->storage->version != v0);
    CHECK_VALUES(rm, 1e-6, 1, 2);
    CHECK_VALUES(rv, 1e-6, 1.5, 4.5);
    av_tensor *same = av_dropout(x, 0.3, false);
    CHECK(same == x);
    av_release(same);
    same = av_dropout(x, 0, true);
    CHECK(same == x);
    av_release(same);
    av_release(x);
    av_release(rm);
    av_release(rv);
}

TEST(nn_relu_backward) {
    av_tensor *g = test_tensor(AV_F32, 1, T_SHAPE(4), T_VALS(1, 2, 3, 4));
    av_tensor *out = test_tensor(AV_F32, 1, T_SHAPE(4), T_VALS(0, 0.5, NAN, -0.0));
    EXPECT(av_relu_backward(g, out), 0, 0, 2, 3, 0);
    av_release(g);
    av_release(out);
}

TEST(nn_one_node_gradients) {
    av_tensor *x = test_tensor(AV_F64, 3, T_SHAPE(1, 2, 2), T_VALS(-1, 2, -3, 4));
    av_requires_grad_(x, true);
    av_tensor *y = av_leaky_relu(x, 0.5);
    CHECK(y && !strcmp(av_grad_fn_name(y), "LeakyReluBackward"));
    av_tensor *gy = av_full(3, T_SHAPE(1, 2, 2), AV_F64, 2);
    CHECK(av_backward(y, gy, false) == 0);
    CHECK_VALUES(av_get_grad(x), 0, 1, 2, 1, 2);
    av_set_grad(x, NULL);
    av_tensor *p = av_adaptive_max_pool2d(x, 1, 1, NULL), *g1 = av_full(3, T_SHAPE(1, 1, 1), AV_F64, 5);
    CHECK(p && av_backward(p, g1, false) == 0);
    CHECK_VALUES(av_get_grad(x), 0, 0, 0, 0, 5);
    av_release(p);
    av_release(g1);
    av_release(gy);
    av_release(y);
    av_release(x);
}
