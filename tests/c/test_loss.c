/* The loss family from C (runtime/include/aviary/loss.h): 0-based targets
 * (index base 0), values by hand, the recorded gradients, and errors. */
#include <math.h>
#include "harness.h"
#include "aviary/autograd.h"
#include "aviary/loss.h"

#define EXPECT(t, tol, ...) do { av_tensor *t_ = (t); CHECK(t_ != NULL); if (t_) CHECK_VALUES(t_, tol, __VA_ARGS__); av_release(t_); } while (0)

TEST(loss_softmax_values) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(2, 2), T_VALS(0, 0, 0, 1000));
    EXPECT(av_softmax(x, 1, -1), 1e-6, 0.5, 0.5, 0, 1);
    EXPECT(av_softmax(x, -2, -1), 1e-6, 0.5, 0, 0.5, 1);
    EXPECT(av_log_softmax(x, 1, AV_F64), 1e-6, -log(2.0), -log(2.0), -1000, 0);
    CHECK_ERR(av_softmax(x, 2, -1), "softmax: dimension 3 out of range");
    av_release(x);
}

TEST(loss_cross_entropy_base0) {
    av_tensor *x = test_tensor(AV_F64, 2, T_SHAPE(2, 3), T_VALS(1, 2, 3, 0, 0, 0));
    av_tensor *t = test_tensor(AV_I64, 1, T_SHAPE(2), T_VALS(2, 0));
    double l1 = log(exp(1) + exp(2) + exp(3)) - 3, l2 = log(3);
    EXPECT(av_cross_entropy(x, t, NULL, -100, AV_REDUCTION_MEAN, 0, 0), 1e-12, (l1 + l2) / 2);
    EXPECT(av_cross_entropy(x, t, NULL, 0, AV_REDUCTION_NONE, 0, 0), 1e-12, l1, 0);
    EXPECT(av_nll_loss(x, t, NULL, -100, AV_REDUCTION_SUM, 0), 1e-12, -3);
    av_tensor *bad = test_tensor(AV_I64, 1, T_SHAPE(2), T_VALS(3, 0));
    CHECK_ERR(av_cross_entropy(x, bad, NULL, -100, AV_REDUCTION_MEAN, 0, 0),
              "cross_entropy: target 3 is out of range for 3 classes (expected 0..2");
    av_tensor *f = test_tensor(AV_F32, 1, T_SHAPE(2), T_VALS(2, 0));
    CHECK_ERR(av_cross_entropy(x, f, NULL, -100, AV_REDUCTION_MEAN, 0, 0), "expected class indices (int64) as target, got float32");
    CHECK_ERR(av_cross_entropy(x, t, NULL, -100, (av_reduction)7, 0, 0), "unknown reduction");
    /* gradient: softmax - one_hot, over N */
    av_requires_grad_(x, true);
    av_tensor *l = av_cross_entropy(x, t, NULL, -100, AV_REDUCTION_MEAN, 0, 0);
    CHECK(l && !strcmp(av_grad_fn_name(l), "CrossEntropyLossBackward"));
    CHECK(av_backward(l, NULL, false) == 0);
    av_tensor *g = av_get_grad(x);
    CHECK(g != NULL);
    if (g) {
        double s = exp(1) + exp(2) + exp(3);
        CHECK_VALUES(g, 1e-12, exp(1) / s / 2, exp(2) / s / 2, (exp(3) / s - 1) / 2, (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6);
    }
    av_release(l); av_release(bad); av_release(f); av_release(t); av_release(x);
}

TEST(loss_linear_pad_interp) {
    av_tensor *x = test_tensor(AV_F32, 2, T_SHAPE(1, 2), T_VALS(1, 2));
    av_tensor *w = test_tensor(AV_F32, 2, T_SHAPE(2, 2), T_VALS(1, 1, 0, 1));
    av_tensor *b = test_tensor(AV_F32, 1, T_SHAPE(2), T_VALS(10, 20));
    EXPECT(av_linear(x, w, b), 0, 13, 22);
    EXPECT(av_linear(x, w, NULL), 0, 3, 2);
    av_tensor *w3 = test_tensor(AV_F32, 2, T_SHAPE(2, 3), T_VALS(1, 1, 0, 1, 0, 0));
    CHECK_ERR(av_linear(x, w3, NULL), "linear: input of size 1x2 does not match weight of size 2x3");
    av_release(w3);
    const int64_t p[] = {1, 2};
    EXPECT(av_pad(x, 2, p, "constant", -1), 0, -1, 1, 2, -1, -1);
    EXPECT(av_pad(x, 2, p, "replicate", 0), 0, 1, 1, 2, 2, 2);
    const int64_t p3[] = {2, 0};
    CHECK_ERR(av_pad(x, 2, p3, "reflect", 0), "reflect padding (2, 0) must be less than the size 2 of dim 2");
    av_tensor *img = test_tensor(AV_F32, 4, T_SHAPE(1, 1, 1, 2), T_VALS(0, 1));
    const int64_t sz[] = {1, 4};
    const double sc[] = {2};
    EXPECT(av_interpolate(img, 2, sz, 0, NULL, "bilinear", 0, -1), 1e-6, 0, 0.25, 0.75, 1);
    EXPECT(av_interpolate(img, 2, sz, 0, NULL, "bilinear", 1, -1), 1e-6, 0, 1.0 / 3, 2.0 / 3, 1);
    EXPECT(av_interpolate(img, 0, NULL, 1, sc, "nearest", -1, -1), 0, 0, 0, 1, 1, 0, 0, 1, 1);
    av_tensor *v3 = av_view(img, 3, T_SHAPE(1, 1, 2));
    EXPECT(av_interpolate(v3, 0, NULL, 1, sc, "nearest", -1, -1), 0, 0, 0, 1, 1);
    av_release(v3);
    CHECK_ERR(av_interpolate(img, 2, sz, 1, sc, "nearest", -1, -1), "only one of size and scale_factor");
    CHECK_ERR(av_interpolate(img, 2, sz, 0, NULL, "nearest", 1, -1), "align_corners can only be set");
    av_release(img); av_release(x); av_release(w); av_release(b);
}
