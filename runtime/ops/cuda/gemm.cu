// Matrix products through cuBLAS: one row-major GEMM (cublasGemmEx, or its
// strided-batched form) behind mm/addmm/matmul (linalg.c), bmm and the linear
// layer (loss.c). float32 computes in float32 (TF32 tensor cores only when
// av_cuda_set_allow_tf32 is on), float64 in float64, float16/bfloat16 on
// tensor cores with float32 accumulation.
//
// cuBLAS is column-major: a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so the operands are passed swapped and each keeps
// its own transpose flag.
#include "cuda_lib.h"

static cudaDataType_t cuda_type(av_dtype dt) {
    switch (dt) {
    case AV_F64: return CUDA_R_64F;
    case AV_F16: return CUDA_R_16F;
    case AV_BF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
    }
}

extern "C" int av_cuda_gemm(av_dtype dt, av_dtype cdt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                            double alpha, const void *a, int64_t lda, int64_t stride_a, const void *b, int64_t ldb,
                            int64_t stride_b, double beta, void *c, int64_t ldc, int64_t stride_c, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return 0;
    if (!av_cuda_float(dt)) return av_fail("matmul: dtype %s is not supported on CUDA", av_dtype_name(dt));
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX ||
        batch > INT32_MAX)
        return av_fail("matmul: sizes %lldx%lldx%lld exceed cuBLAS's 32-bit dimensions", (long long)m, (long long)n,
                       (long long)k);
    cublasHandle_t h = av_cublas_handle();
    if (!h) return -1;
    cublasComputeType_t compute = dt == AV_F64                                ? CUBLAS_COMPUTE_64F
                                  : dt == AV_F32 && av_cuda_get_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                              : CUBLAS_COMPUTE_32F;
    const float fa = (float)alpha, fb = (float)beta;
    const void *pa = dt == AV_F64 ? (const void *)&alpha : (const void *)&fa;
    const void *pb = dt == AV_F64 ? (const void *)&beta : (const void *)&fb;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t at = cuda_type(dt), ct = cuda_type(cdt);
    if (batch == 1) {
        AV_CUBLAS_CHECK(cublasGemmEx(h, opb, opa, (int)n, (int)m, (int)k, pa, b, at, (int)ldb, a, at, (int)lda, pb, c,
                                     ct, (int)ldc, compute, CUBLAS_GEMM_DEFAULT));
    } else {
        AV_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, (int)n, (int)m, (int)k, pa, b, at, (int)ldb,
                                                   (long long)stride_b, a, at, (int)lda, (long long)stride_a, pb, c, ct,
                                                   (int)ldc, (long long)stride_c, (int)batch, compute,
                                                   CUBLAS_GEMM_DEFAULT));
    }
    return 0;
}

// a 2-d operand as cuBLAS can read it: rows with unit stride, or columns with unit stride (transposed)
namespace {
struct mat {
    const void *p;
    bool trans;
    int64_t ld;
    av_tensor *hold;
};
} // namespace

static int as_mat(const av_tensor *t, mat *m) {
    int64_t r = t->shape[0], c = t->shape[1];
    m->hold = NULL;
    if ((t->stride[1] == 1 || c <= 1) && t->stride[0] >= (c > 1 ? c : 1)) {
        m->p = av_data(t);
        m->trans = false;
        m->ld = r <= 1 ? (c ? c : 1) : t->stride[0];
        return 0;
    }
    if ((t->stride[0] == 1 || r <= 1) && t->stride[1] >= (r > 1 ? r : 1)) {
        m->p = av_data(t);
        m->trans = true;
        m->ld = c <= 1 ? (r ? r : 1) : t->stride[1];
        return 0;
    }
    if (!(m->hold = av_contiguous(t))) return -1;
    m->p = av_data(m->hold);
    m->trans = false;
    m->ld = c ? c : 1;
    return 0;
}

// c [m, n] (contiguous) = alpha op(a) op(b) + beta c
static int mm2(const av_tensor *a, bool ta, const av_tensor *b, bool tb, double alpha, double beta, av_tensor *c) {
    mat A, B;
    if (as_mat(a, &A)) return -1;
    if (as_mat(b, &B)) {
        av_release(A.hold);
        return -1;
    }
    int64_t m = c->shape[0], n = c->shape[1], k = ta ? a->shape[0] : a->shape[1];
    int rc = av_cuda_gemm(a->dtype, c->dtype, A.trans != ta, B.trans != tb, m, n, k, alpha, A.p, A.ld, 0, B.p, B.ld, 0,
                          beta, av_data(c), n, 0, 1);
    av_release(A.hold);
    av_release(B.hold);
    return rc;
}

template <typename T> __global__ void bias_rows_kernel(T *y, const T *b, int64_t rows, int64_t cols) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < rows * cols) y[i] = b[i % cols];
}

// out[c] = sum over rows of g[r, c] (float / double accumulation)
template <typename T> __global__ void col_sums_kernel(const T *g, T *out, int64_t rows, int64_t cols) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    typename av_acc<T>::type s = 0;
    for (int64_t r = 0; r < rows; r++) s += av_load(g + r * cols + c);
    av_store(out + c, s);
}

extern "C" av_tensor *av_cuda_linear(const av_tensor *x2, const av_tensor *w, const av_tensor *b) {
    if (av_check_same_device("linear", x2, "input", w, "weight") ||
        (b && av_check_same_device("linear", x2, "input", b, "bias")))
        return NULL;
    int64_t s[2] = {x2->shape[0], w->shape[0]};
    av_tensor *y = av_empty_on(2, s, x2->dtype, av_device_of(x2));
    if (!y) return NULL;
    if (b && av_numel(y) > 0) {
        av_tensor *bc = av_contiguous(b);
        if (!bc) {
            av_release(y);
            return NULL;
        }
        int64_t n = av_numel(y);
        AV_DISPATCH_FLOAT(x2->dtype, T, {
            bias_rows_kernel<T><<<av_cuda_blocks(n, 256), 256, 0, av_cuda_stream()>>>((T *)av_data(y),
                                                                                    (const T *)av_data(bc), s[0], s[1]);
        });
        av_release(bc);
        if (cudaPeekAtLastError() != cudaSuccess) {
            cudaGetLastError();
            av_fail("linear: bias kernel launch failed");
            av_release(y);
            return NULL;
        }
    }
    if (x2->shape[1] == 0) { // nothing to multiply: the bias, or zeros
        if (!b && av_numel(y) > 0 &&
            cudaMemsetAsync(av_data(y), 0, (size_t)av_numel(y) * av_dtype_size(y->dtype), av_cuda_stream()) != cudaSuccess) {
            cudaGetLastError();
            av_release(y);
            av_fail("linear: cudaMemsetAsync failed");
            return NULL;
        }
        return y;
    }
    if (mm2(x2, false, w, true, 1.0, b ? 1.0 : 0.0, y)) {
        av_release(y);
        return NULL;
    }
    return y;
}

extern "C" int av_cuda_linear_backward(const av_tensor *g2, const av_tensor *x2, const av_tensor *w, bool want_b,
                                       av_tensor **dx2, av_tensor **dw, av_tensor **db) {
    av_dtype dt = x2->dtype;
    av_device dev = av_device_of(x2);
    int64_t rows = x2->shape[0], in = x2->shape[1], out = w->shape[0];
    int64_t sx[2] = {rows, in}, sw[2] = {out, in};
    av_tensor *gc = g2->dtype == dt ? av_contiguous(g2) : av_to_dtype(g2, dt);
    av_tensor *g = gc ? av_contiguous(gc) : NULL;
    av_release(gc);
    if (!g) return -1;
    av_tensor *X = NULL, *W = NULL, *B = NULL;
    bool nothing = rows == 0 || out == 0;
    if (dx2 && !(X = nothing ? av_zeros_on(2, sx, dt, dev) : av_empty_on(2, sx, dt, dev))) goto fail;
    if (dw && !(W = nothing ? av_zeros_on(2, sw, dt, dev) : av_empty_on(2, sw, dt, dev))) goto fail;
    if (want_b && !(B = av_zeros_on(1, &out, dt, dev))) goto fail;
    if (!nothing) {
        if (X && in > 0 && mm2(g, false, w, false, 1.0, 0.0, X)) goto fail; // dx = g W
        if (W && in > 0 && mm2(g, true, x2, false, 1.0, 0.0, W)) goto fail; // dW = g^T x
        if (B) {
            AV_DISPATCH_FLOAT(dt, T, {
                col_sums_kernel<T><<<av_cuda_blocks(out, 128), 128, 0, av_cuda_stream()>>>(
                    (const T *)av_data(g), (T *)av_data(B), rows, out);
            });
            if (cudaPeekAtLastError() != cudaSuccess) {
                cudaGetLastError();
                av_fail("linear_backward: bias kernel launch failed");
                goto fail;
            }
        }
    }
    av_release(g);
    if (dx2) *dx2 = X;
    if (dw) *dw = W;
    if (db) *db = B;
    return 0;
fail:
    av_release(g);
    av_release(X);
    av_release(W);
    av_release(B);
    return -1;
}

extern "C" av_tensor *av_cuda_bmm(const av_tensor *a, const av_tensor *b) {
    if (av_check_same_device("bmm", a, "input", b, "mat2")) return NULL;
    if (!av_cuda_float(a->dtype)) {
        av_fail("bmm: dtype %s has no CUDA matrix product", av_dtype_name(a->dtype));
        return NULL;
    }
    int64_t B = a->shape[0], n = a->shape[1], k = a->shape[2], m = b->shape[2];
    int64_t s[3] = {B, n, m};
    av_tensor *ac = av_contiguous(a), *bc = ac ? av_contiguous(b) : NULL;
    av_tensor *c = bc ? av_empty_on(3, s, a->dtype, av_device_of(a)) : NULL;
    int rc = c ? 0 : -1;
    if (!rc && av_numel(c) > 0) {
        if (k == 0)
            rc = cudaMemsetAsync(av_data(c), 0, (size_t)av_numel(c) * av_dtype_size(c->dtype), av_cuda_stream()) ==
                         cudaSuccess
                     ? 0
                     : av_fail("bmm: cudaMemsetAsync failed");
        else
            rc = av_cuda_gemm(a->dtype, a->dtype, false, false, n, m, k, 1.0, av_data(ac), k, n * k, av_data(bc), m,
                              k * m, 0.0, av_data(c), m, n * m, B);
    }
    av_release(ac);
    av_release(bc);
    if (rc) {
        av_release(c);
        return NULL;
    }
    return c;
}
