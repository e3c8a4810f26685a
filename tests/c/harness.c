#include <stdarg.h>
#include <stdlib.h>
#include "harness.h"

typedef struct { const char *name, *file; test_fn fn; } test_case;
static test_case *cases;
static int ncases, cap;
static int current_failures;

void test_register(const char *name, const char *file, test_fn fn) {
    if (ncases == cap) {
        cap = cap ? cap * 2 : 64;
        cases = realloc(cases, sizeof *cases * cap);
    }
    cases[ncases++] = (test_case){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("#   %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    current_failures++;
}

av_tensor *test_tensor(av_dtype dt, int ndim, const int64_t *shape, const double *values) {
    av_tensor *t = av_empty(ndim, shape, dt);
    if (!t) return NULL;
    int64_t n = av_numel(t), idx[AV_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = ndim - 1; d >= 0; d--) { idx[d] = r % shape[d]; r /= shape[d]; }
        av_set(t, idx, values[i]);
    }
    return t;
}

void test_check_values(const char *file, int line, const av_tensor *t, const double *values, double tol) {
    if (!t) { test_fail(file, line, "tensor is NULL: %s", av_last_error()); return; }
    int64_t n = av_numel(t), idx[AV_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = t->ndim - 1; d >= 0; d--) { idx[d] = r % t->shape[d]; r /= t->shape[d]; }
        double v = av_get(t, idx);
        if (!(fabs(v - values[i]) <= tol || (isnan(v) && isnan(values[i])))) {
            test_fail(file, line, "element %lld is %.9g, expected %.9g", (long long)i, v, values[i]);
            return;
        }
    }
}

void test_check_shape(const char *file, int line, const av_tensor *t, int ndim, const int64_t *shape) {
    if (!t) { test_fail(file, line, "tensor is NULL: %s", av_last_error()); return; }
    char b1[96], b2[96];
    if (t->ndim != ndim || memcmp(t->shape, shape, sizeof(int64_t) * ndim))
        test_fail(file, line, "size %s, expected %s", av_shape_str(t, b1, sizeof b1),
                  av_shape_str_raw(ndim, shape, b2, sizeof b2));
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < ncases; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
        current_failures = 0;
        cases[i].fn();
        if (current_failures) { printf("not ok - c: %s (%s)\n", cases[i].name, cases[i].file); failed++; }
        else { printf("ok - c: %s\n", cases[i].name); passed++; }
        fflush(stdout);
    }
    free(cases);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
