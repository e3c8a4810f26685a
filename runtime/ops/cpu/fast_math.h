/* Private: elementary functions written so that plain loops over them
 * vectorise (with -fno-trapping-math); shared by the elementwise, softmax and
 * loss kernels. */
#ifndef AVIARY_CPU_FAST_MATH_H
#define AVIARY_CPU_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* expf in a form the compiler vectorises: Cody-Waite range reduction, a
 * degree-6 polynomial (Cephes' coefficients) and scaling by 2^n split in two
 * factors so that subnormal results stay exact. Accurate to about 1 ulp. */
static inline float av_fast_expf(float x) {
    const float hi = 88.72283935546875f, lo = -103.972084045410f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    /* round to nearest by the 1.5*2^23 trick: plain arithmetic, so it vectorises */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t ni = (int32_t)(x == x ? n : 0.0f);
    int32_t n1 = ni >> 1, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float res = p * s1 * s2;
    res = x > hi ? INFINITY : res;
    res = x < lo ? 0.0f : res;
    return x == x ? res : x;
}

#endif
