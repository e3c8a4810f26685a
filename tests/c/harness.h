/* A small C test harness: TEST(name) registers a function at load time;
 * main() in harness.c runs them all (or those matching argv[1]) and prints
 * TAP-like lines plus a final "N passed, N failed" line. */
#ifndef AVIARY_TEST_HARNESS_H
#define AVIARY_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "aviary/tensor.h"
#include "aviary/ops.h"

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
/* records one failed check in the running test */
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define TEST(name)                                                               \
    static void test_##name(void);                                               \
    __attribute__((constructor)) static void register_##name(void) {            \
        test_register(#name, __FILE__, test_##name);                             \
    }                                                                            \
    static void test_##name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);   \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                    \
    do {                                                                         \
        double a_ = (double)(a), b_ = (double)(b);                               \
        if (!(a_ == b_ || fabs(a_ - b_) <= (tol) || (isnan(a_) && isnan(b_))))             \
            test_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g (tol %g)", #a, a_, #b, b_, (double)(tol)); \
    } while (0)

/* expr must fail (return NULL or -1) with a message containing substr */
#define CHECK_ERR(expr, substr)                                                  \
    do {                                                                         \
        av_error_clear();                                                        \
        long long r_ = (long long)(intptr_t)(expr);                              \
        if (r_ != 0 && r_ != -1)                                                 \
            test_fail(__FILE__, __LINE__, "%s succeeded, expected an error containing \"%s\"", #expr, substr); \
        else if (!strstr(av_last_error(), substr))                               \
            test_fail(__FILE__, __LINE__, "%s failed with \"%s\", expected it to contain \"%s\"", #expr, \
                      av_last_error(), substr);                                  \
    } while (0)

/* helpers: a tensor from a literal list of doubles */
av_tensor *test_tensor(av_dtype dt, int ndim, const int64_t *shape, const double *values);
#define T_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define T_VALS(...) ((const double[]){__VA_ARGS__})
/* checks every element of t against values (row-major) */
void test_check_values(const char *file, int line, const av_tensor *t, const double *values, double tol);
#define CHECK_VALUES(t, tol, ...) test_check_values(__FILE__, __LINE__, (t), T_VALS(__VA_ARGS__), (tol))
#define CHECK_SHAPE(t, ...) test_check_shape(__FILE__, __LINE__, (t), sizeof(T_SHAPE(__VA_ARGS__)) / sizeof(int64_t), T_SHAPE(__VA_ARGS__))
void test_check_shape(const char *file, int line, const av_tensor *t, int ndim, const int64_t *shape);

#endif
