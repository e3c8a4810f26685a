/* Matrix products: OpenBLAS sgemm/dgemm for floats, plain loops for integers. */
#include <string.h>
#include <cblas.h>
#include "aviary/ops.h"
#include "iter.h"
#include "../../autograd/grad.h"
#include "aviary/cuda.h"
#ifdef AV_WITH_CUDA
#include "../cuda/cuda_lib.h"
#endif

int av_gemm(av_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const void *a, int64_t lda,
            const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (m == 0 || n == 0) return 0;
    if (dt == AV_F32)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, (float)alpha, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
    else if (dt == AV_F64)
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    else
        return av_fail("gemm: dtype %s is not supported", av_dtype_name(dt));
    return 0;
}

/* a 2-d operand as BLAS sees it: row-major with leading dim, maybe transposed */
typedef struct { const void *p; bool trans; int64_t ld; av_tensor *hold; } blas_mat;

static int as_blas(const av_tensor *t, blas_mat *m) {
    int64_t r = t->shape[0], c = t->shape[1];
    m->hold = NULL;
    if ((t->stride[1] == 1 || c <= 1) && t->stride[0] >= (c > 1 ? c : 1)) {
        m->p = av_data(t); m->trans = false; m->ld = t->stride[0] > 0 ? t->stride[0] : (c ? c : 1);
        return 0;
    }
    if ((t->stride[0] == 1 || r <= 1) && t->stride[1] >= (r > 1 ? r : 1)) {
        m->p = av_data(t); m->trans = true; m->ld = t->stride[1] > 0 ? t->stride[1] : (r ? r : 1);
        return 0;
    }
    m->hold = av_contiguous(t);
    if (!m->hold) return -1;
    m->p = av_data(m->hold); m->trans = false; m->ld = c ? c : 1;
    return 0;
}

#define INT_MM(T)                                                                          \
    do {                                                                                   \
        for (int64_t i = 0; i < m; i++)                                                    \
            for (int64_t j = 0; j < n; j++) {                                              \
                uint64_t acc = 0;                                                          \
                for (int64_t l = 0; l < k; l++)                                            \
                    acc += (uint64_t)(int64_t)((const T *)pa)[i * sa0 + l * sa1] *         \
                           (uint64_t)(int64_t)((const T *)pb)[l * sb0 + j * sb1];          \
                ((T *)pc)[i * n + j] = (T)(int64_t)acc;                                    \
            }                                                                              \
    } while (0)

/* c[m,n] (contiguous, fresh) = a[m,k] @ b[k,n]; beta applies to existing c */
static int mm_into(av_tensor *c, const av_tensor *a, const av_tensor *b, double alpha, double beta) {
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
#ifdef AV_WITH_CUDA
    if (av_is_cuda(c) || av_is_cuda(a) || av_is_cuda(b)) {
        if (av_check_same_device("matmul", a, "input", b, "other") || av_check_same_device("matmul", a, "input", c, "out"))
            return -1;
        if (!av_dtype_is_float(a->dtype))
            return av_fail("matmul: %s has no CUDA matrix product; convert with :float() first", av_dtype_name(a->dtype));
        if (k == 0) return beta == 0 ? av_fill_(c, 0) : av_binary_scalar_(AV_OP_MUL, c, beta);
        blas_mat A, B;
        if (as_blas(a, &A)) return -1;
        if (as_blas(b, &B)) { av_release(A.hold); return -1; }
        int rc = av_cuda_gemm(a->dtype, c->dtype, A.trans, B.trans, m, n, k, alpha, A.p, A.ld, 0, B.p, B.ld, 0, beta,
                              av_data(c), n, 0, 1);
        av_release(A.hold);
        av_release(B.hold);
        return rc;
    }
#endif
    if (av_dtype_is_float(a->dtype)) {
        if (a->dtype != AV_F32 && a->dtype != AV_F64)
            return av_fail("%s has no CPU matrix product; convert with :float() first", av_dtype_name(a->dtype));
        if (k == 0) return beta == 0 ? av_fill_(c, 0) : av_binary_scalar_(AV_OP_MUL, c, beta);
        blas_mat A, B;
        if (as_blas(a, &A)) return -1;
        if (as_blas(b, &B)) { av_release(A.hold); return -1; }
        int rc = av_gemm(a->dtype, A.trans, B.trans, m, n, k, alpha, A.p, A.ld, B.p, B.ld, beta, av_data(c), n);
        av_release(A.hold);
        av_release(B.hold);
        return rc;
    }
    const char *pa = av_data(a), *pb = av_data(b);
    char *pc = av_data(c);
    int64_t sa0 = a->stride[0], sa1 = a->stride[1], sb0 = b->stride[0], sb1 = b->stride[1];
    switch (a->dtype) {
    case AV_I64: INT_MM(int64_t); break;
    case AV_I32: INT_MM(int32_t); break;
    case AV_U8: INT_MM(uint8_t); break;
    default: return av_fail("matmul: unsupported dtype %s", av_dtype_name(a->dtype));
    }
    return 0;
}

static int same_dtype(const char *fn, const av_tensor *a, const av_tensor *b) {
    if (a->dtype != b->dtype)
        return av_fail("%s: expected both operands to have the same dtype, got %s and %s", fn, av_dtype_name(a->dtype),
                       av_dtype_name(b->dtype));
    return 0;
}

av_tensor *av_mm(const av_tensor *a, const av_tensor *b) {
    char b1[96], b2[96];
    if (a->ndim != 2 || b->ndim != 2) {
        av_fail("mm: expected two 2-d tensors, got sizes %s and %s", av_shape_str(a, b1, sizeof b1), av_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    if (a->shape[1] != b->shape[0]) {
        av_fail("mm: sizes %s and %s cannot be multiplied (%lld != %lld)", av_shape_str(a, b1, sizeof b1),
                av_shape_str(b, b2, sizeof b2), (long long)a->shape[1], (long long)b->shape[0]);
        return NULL;
    }
    if (same_dtype("mm", a, b)) return NULL;
    int64_t s[2] = {a->shape[0], b->shape[1]};
    av_tensor *c = av_empty_on(2, s, a->dtype, av_device_of(a));
    if (c && mm_into(c, a, b, 1, 0)) { av_release(c); return NULL; }
    return c ? av_ag_finish(c, av_ag_mm(c, a, b, false)) : NULL;
}

av_tensor *av_addmm(const av_tensor *c0, const av_tensor *a, const av_tensor *b, double beta, double alpha) {
    char b1[96], b2[96];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0]) {
        av_fail("addmm: sizes %s and %s cannot be multiplied", av_shape_str(a, b1, sizeof b1), av_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    if (same_dtype("addmm", a, b) || same_dtype("addmm", c0, a)) return NULL;
    int64_t s[2] = {a->shape[0], b->shape[1]};
    av_tensor *c = av_empty_on(2, s, a->dtype, av_device_of(a));
    if (!c) return NULL;
    /* the bias broadcasts into the output, then gemm accumulates with beta */
    if (av_copy_(c, c0) || mm_into(c, a, b, alpha, beta)) {
        av_fail("addmm: %s", av_last_error());
        av_release(c);
        return NULL;
    }
    return av_ag_finish(c, av_ag_addmm(c, c0, a, b, beta, alpha));
}

av_tensor *av_bmm(const av_tensor *a, const av_tensor *b) {
    char b1[96], b2[96];
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0] || a->shape[2] != b->shape[1]) {
        av_fail("bmm: sizes %s and %s cannot be batch-multiplied (expected BxNxK and BxKxM)",
                av_shape_str(a, b1, sizeof b1), av_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    if (same_dtype("bmm", a, b)) return NULL;
#ifdef AV_WITH_CUDA
    if (av_is_cuda(a) || av_is_cuda(b)) {
        av_tensor *r = av_cuda_bmm(a, b);
        return r ? av_ag_finish(r, av_ag_mm(r, a, b, true)) : NULL;
    }
#endif
    int64_t s[3] = {a->shape[0], a->shape[1], b->shape[2]};
    av_tensor *c = av_empty(3, s, a->dtype);
    if (!c) return NULL;
    bool grad_was = av_grad_enabled();
    av_set_grad_enabled(false); /* per-slice views must not record; bmm records once below */
    for (int64_t i = 0; i < s[0]; i++) {
        av_tensor *ai = av_select(a, 0, i), *bi = av_select(b, 0, i), *ci = av_select(c, 0, i);
        int rc = (ai && bi && ci) ? mm_into(ci, ai, bi, 1, 0) : -1;
        av_release(ai);
        av_release(bi);
        av_release(ci);
        if (rc) { av_set_grad_enabled(grad_was); av_release(c); return NULL; }
    }
    av_set_grad_enabled(grad_was);
    return av_ag_finish(c, av_ag_mm(c, a, b, true));
}

av_tensor *av_dot(const av_tensor *a, const av_tensor *b) {
    char b1[96], b2[96];
    if (a->ndim != 1 || b->ndim != 1 || a->shape[0] != b->shape[0]) {
        av_fail("dot: expected two 1-d tensors of the same size, got %s and %s", av_shape_str(a, b1, sizeof b1),
                av_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    av_tensor *a2 = av_unsqueeze(a, 0), *b2t = av_unsqueeze(b, 1);
    av_tensor *r = (a2 && b2t) ? av_mm(a2, b2t) : NULL, *out = NULL;
    if (r) out = av_view(r, 0, NULL);
    av_release(a2);
    av_release(b2t);
    av_release(r);
    return out;
}

/* torch.matmul: 1-d operands gain a dim that is dropped again; batch dims broadcast */
av_tensor *av_matmul(const av_tensor *a, const av_tensor *b) {
    char b1[96], b2[96];
    if (a->ndim == 0 || b->ndim == 0) {
        av_fail("matmul: both arguments need at least 1 dimension, got sizes %s and %s", av_shape_str(a, b1, sizeof b1),
                av_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    if (a->ndim == 1 && b->ndim == 1) return av_dot(a, b);
    if (a->ndim <= 2 && b->ndim <= 2) {
        av_tensor *A = a->ndim == 1 ? av_unsqueeze(a, 0) : av_retain((av_tensor *)a);
        av_tensor *B = b->ndim == 1 ? av_unsqueeze(b, 1) : av_retain((av_tensor *)b);
        av_tensor *r = (A && B) ? av_mm(A, B) : NULL, *out = r;
        if (r && (a->ndim == 1 || b->ndim == 1)) {
            out = av_squeeze(r, a->ndim == 1 ? 0 : 1);
            av_release(r);
        }
        av_release(A);
        av_release(B);
        return out;
    }
    /* batched: a [..., n, k] @ b [..., k, m] */
    av_tensor *A = a->ndim == 1 ? av_unsqueeze(a, 0) : av_retain((av_tensor *)a);
    av_tensor *B = b->ndim == 1 ? av_unsqueeze(b, 1) : av_retain((av_tensor *)b);
    av_tensor *out = NULL, *ea = NULL, *eb = NULL, *ra = NULL, *rb = NULL, *r = NULL;
    if (!A || !B) goto done;
    int64_t n = A->shape[A->ndim - 2], k = A->shape[A->ndim - 1], k2 = B->shape[B->ndim - 2], m = B->shape[B->ndim - 1];
    if (k != k2) {
        av_fail("matmul: sizes %s and %s cannot be multiplied (%lld != %lld)", av_shape_str(a, b1, sizeof b1),
                av_shape_str(b, b2, sizeof b2), (long long)k, (long long)k2);
        goto done;
    }
    int nb;
    int64_t batch[AV_MAX_DIMS];
    if (av_broadcast_shape("matmul", A->ndim - 2, A->shape, B->ndim - 2, B->shape, &nb, batch)) goto done;
    if (nb + 2 > AV_MAX_DIMS) { av_fail("matmul: too many dims"); goto done; }
    int64_t sa[AV_MAX_DIMS], sb[AV_MAX_DIMS], nbatch = 1;
    for (int i = 0; i < nb; i++) { sa[i] = sb[i] = batch[i]; nbatch *= batch[i]; }
    sa[nb] = n; sa[nb + 1] = k;
    sb[nb] = k; sb[nb + 1] = m;
    if (!(ea = av_expand(A, nb + 2, sa)) || !(eb = av_expand(B, nb + 2, sb))) goto done;
    int64_t s3a[3] = {nbatch, n, k}, s3b[3] = {nbatch, k, m};
    if (!(ra = av_reshape(ea, 3, s3a)) || !(rb = av_reshape(eb, 3, s3b))) goto done;
    if (!(r = av_bmm(ra, rb))) goto done;
    int64_t so[AV_MAX_DIMS];
    int no = 0;
    for (int i = 0; i < nb; i++) so[no++] = batch[i];
    if (a->ndim > 1) so[no++] = n;
    if (b->ndim > 1) so[no++] = m;
    out = av_view(r, no, so);
done:
    av_release(A); av_release(B); av_release(ea); av_release(eb); av_release(ra); av_release(rb); av_release(r);
    return out;
}
