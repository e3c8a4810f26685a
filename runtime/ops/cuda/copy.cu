// copy_ between strided layouts with broadcasting and dtype conversion, and
// fill_. CPU reference: runtime/ops/cpu/copy.c.
#include "cuda_iter.cuh"

template <typename D, typename S> struct copy_op {
    __device__ void operator()(const cu_iter &it, const int64_t *off) const {
        cu_st<D>(it, 0, off[0], cu_to<D>(cu_ld<S>(it, 1, off[1])));
    }
};

template <typename D> static int copy_from(av_tensor *dst, const av_tensor *src, const cu_iter &it) {
    int rc = -1;
    CU_DISPATCH_ALL(src->dtype, return av_fail("copy_: unknown dtype %d", (int)src->dtype),
                    rc = cu_launch<2>(it, copy_op<D, T>(), "copy_"));
    return rc;
}

extern "C" int av_cuda_copy(av_tensor *dst, const av_tensor *src) {
    cu_iter it;
    const av_tensor *ops[2] = {dst, src};
    if (cu_iter_init(&it, "copy_", dst->ndim, dst->shape, 2, ops)) return -1;
    // same dtype, both contiguous and the same size: one memcpy on the stream
    if (dst->dtype == src->dtype && av_is_contiguous(dst) && av_is_contiguous(src) && it.base[1] &&
        av_numel(dst) == av_numel(src)) {
        size_t n = (size_t)av_numel(dst) * av_dtype_size(dst->dtype);
        if (n) AV_CUDA_CHECK(cudaMemcpyAsync(av_data(dst), av_data(src), n, cudaMemcpyDeviceToDevice, av_cuda_stream()));
        return 0;
    }
    int rc = -1;
    switch (dst->dtype) {
    case AV_F32: rc = copy_from<float>(dst, src, it); break;
    case AV_F64: rc = copy_from<double>(dst, src, it); break;
    case AV_I64: rc = copy_from<int64_t>(dst, src, it); break;
    case AV_I32: rc = copy_from<int32_t>(dst, src, it); break;
    case AV_U8: rc = copy_from<uint8_t>(dst, src, it); break;
    case AV_F16: rc = copy_from<__half>(dst, src, it); break;
    case AV_BF16: rc = copy_from<__nv_bfloat16>(dst, src, it); break;
    default: return av_fail("copy_: unknown dtype %d", (int)dst->dtype);
    }
    return rc;
}

template <typename T> struct fill_op {
    T v;
    __device__ void operator()(const cu_iter &it, const int64_t *off) const { cu_st<T>(it, 0, off[0], v); }
};

extern "C" int av_cuda_fill(av_tensor *t, double value) {
    cu_iter it;
    const av_tensor *ops[1] = {t};
    if (cu_iter_init(&it, "fill_", t->ndim, t->shape, 1, ops)) return -1;
    if (value == 0 && av_is_contiguous(t)) {
        size_t n = (size_t)av_numel(t) * av_dtype_size(t->dtype);
        if (n) AV_CUDA_CHECK(cudaMemsetAsync(av_data(t), 0, n, av_cuda_stream()));
        return 0;
    }
    // the value is converted on the host exactly as the CPU's fill does
    uint64_t raw = 0;
    av_store_elem(t->dtype, &raw, value);
    int rc = -1;
    CU_DISPATCH_ALL(t->dtype, return av_fail("fill_: unknown dtype %d", (int)t->dtype), {
        fill_op<T> f;
        memcpy(&f.v, &raw, sizeof(T));
        rc = cu_launch<1>(it, f, "fill_");
    });
    return rc;
}
