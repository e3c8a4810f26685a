// uniform_ and normal_ on the device with the CPU generator's stream
// (runtime/core/random.c): element i of a call comes from Philox-4x32-10 at
// counter base + i/2 under the seed, component i % 2 of the pair, so a
// seeded run draws the same numbers on either device (up to the last bit of
// log/sincos).
#include "cuda_iter.cuh"

__device__ __forceinline__ void cu_philox(uint64_t counter, uint64_t key, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
    for (int i = 0; i < 10; i++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c1 = lo1;
        c3 = lo0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

__device__ __forceinline__ double cu_u01(uint32_t a, uint32_t b) {
    return (double)(((uint64_t)a << 21) ^ (b >> 11)) * 0x1.0p-53;
}

template <typename T>
__global__ void random_pairs_kernel(T *p, int64_t n, int kind, double a, double b, uint64_t seed, uint64_t base,
                                    bool cap, T hi, T below) {
    int64_t npairs = (n + 1) / 2, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < npairs; j += step) {
        uint32_t r[4];
        cu_philox(base + (uint64_t)j, seed, r);
        double u1 = cu_u01(r[0], r[1]), u2 = cu_u01(r[2], r[3]), v0, v1;
        if (kind == 0) {
            v0 = a + (b - a) * u1;
            v1 = a + (b - a) * u2;
        } else {
            double rad = b * sqrt(-2.0 * log(1.0 - u1)), s, c;
            sincos(6.283185307179586 * u2, &s, &c);
            v0 = a + rad * c;
            v1 = a + rad * s;
        }
        T t0 = cu_to<T>(v0), t1 = cu_to<T>(v1);
        if (cap && !(t0 < hi)) t0 = below;
        if (cap && !(t1 < hi)) t1 = below;
        p[2 * j] = t0;
        if (2 * j + 1 < n) p[2 * j + 1] = t1;
    }
}

extern "C" int av_cuda_random_fill(av_tensor *t, int kind, double a, double b, uint64_t seed, uint64_t base) {
    int64_t n = av_numel(t);
    if (n == 0) return 0;
    if (av_cuda_device_guard(t->storage->device.index)) return -1;
    const int threads = 256;
    unsigned blocks = av_cuda_blocks((n + 1) / 2, threads);
    cudaStream_t s = av_cuda_stream();
    // the CPU keeps f32/f64 uniforms below `b` after rounding ([from, to)); it
    // stores half types unclamped
    bool cap = kind == 0 && b > a;
    switch (t->dtype) {
    case AV_F32:
        random_pairs_kernel<float><<<blocks, threads, 0, s>>>((float *)av_data(t), n, kind, a, b, seed, base, cap,
                                                              (float)b, nextafterf((float)b, (float)a));
        break;
    case AV_F64:
        random_pairs_kernel<double><<<blocks, threads, 0, s>>>((double *)av_data(t), n, kind, a, b, seed, base, cap,
                                                               b, nextafter(b, a));
        break;
    case AV_F16:
        random_pairs_kernel<__half><<<blocks, threads, 0, s>>>((__half *)av_data(t), n, kind, a, b, seed, base, false,
                                                               __float2half(0.f), __float2half(0.f));
        break;
    case AV_BF16:
        random_pairs_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>((__nv_bfloat16 *)av_data(t), n, kind, a, b, seed,
                                                                      base, false, __float2bfloat16(0.f),
                                                                      __float2bfloat16(0.f));
        break;
    default: return av_fail("random: expected a floating point tensor, got %s", av_dtype_name(t->dtype));
    }
    AV_CUDA_LAUNCH_CHECK("random");
    return 0;
}
