/* View operations: new headers over the same storage. */
#include <stdlib.h>
#include <string.h>
#include "aviary/tensor.h"
#include "aviary/backend.h"
#include "aviary/ops.h"
#include "../autograd/grad.h"

static av_tensor *share(const av_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    av_tensor *v = av_tensor_new(t->storage, t->dtype, ndim, shape, offset);
    if (v && ndim) memcpy(v->stride, stride, sizeof(int64_t) * ndim);
    return v;
}

av_tensor *av_as_strided(const av_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    if (ndim < 0 || ndim > AV_MAX_DIMS) { av_fail("as_strided: bad number of dims %d", ndim); return NULL; }
    /* the whole view must lie inside the storage */
    int64_t lo = offset, hi = offset, esz = av_dtype_size(t->dtype);
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { av_fail("as_strided: negative size"); return NULL; }
        if (shape[i] == 0) empty = true;
        else if (stride[i] >= 0) hi += (shape[i] - 1) * stride[i];
        else lo += (shape[i] - 1) * stride[i];
    }
    if (!empty && (lo < 0 || (hi + 1) * esz > (int64_t)t->storage->nbytes)) {
        av_fail("as_strided: view reaches outside the storage of %zu bytes", t->storage->nbytes);
        return NULL;
    }
    return share(t, ndim, shape, stride, offset);
}

/* resolves one -1 and checks the element count matches */
static int infer_shape(const char *fn, const av_tensor *t, int ndim, const int64_t *in, int64_t *out) {
    if (ndim < 0 || ndim > AV_MAX_DIMS) return av_fail("%s: at most %d dims", fn, AV_MAX_DIMS);
    int infer = -1;
    int64_t known = 1, n = av_numel(t);
    for (int i = 0; i < ndim; i++) {
        out[i] = in[i];
        if (in[i] == -1) {
            if (infer >= 0) return av_fail("%s: only one dimension can be -1", fn);
            infer = i;
        } else if (in[i] < 0) {
            return av_fail("%s: invalid size %lld", fn, (long long)in[i]);
        } else {
            if (in[i] && known > INT64_MAX / in[i]) return av_fail("%s: size is too large", fn);
            known *= in[i];
        }
    }
    char b1[96], b2[96];
    if (infer >= 0) {
        if (known == 0 || n % known) {
            av_shape_str_raw(ndim, in, b2, sizeof b2);
            return av_fail("%s: shape %s is invalid for input of size %s (%lld elements)", fn, b2,
                           av_shape_str(t, b1, sizeof b1), (long long)n);
        }
        out[infer] = n / known;
    } else if (known != n) {
        av_shape_str_raw(ndim, in, b2, sizeof b2);
        return av_fail("%s: shape %s is invalid for input of size %s (%lld elements)", fn, b2,
                       av_shape_str(t, b1, sizeof b1), (long long)n);
    }
    return 0;
}

/* strides for viewing t with a new shape without copying, if possible
 * (groups of old dims that are contiguous among themselves can be re-split) */
static bool view_strides(const av_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    int64_t numel = av_numel(t);
    if (numel == 0 || av_is_contiguous(t)) {
        av_contiguous_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->stride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

av_tensor *av_view(const av_tensor *t, int ndim, const int64_t *shape) {
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    if (infer_shape("view", t, ndim, shape, s)) return NULL;
    if (!view_strides(t, ndim, s, st)) {
        char b[96];
        av_fail("view: size %s with these strides is not compatible with the new shape; use reshape (it copies)",
                av_shape_str(t, b, sizeof b));
        return NULL;
    }
    av_tensor *v = share(t, ndim, s, st, t->offset);
    return v ? av_ag_finish(v, av_ag_view(v, t)) : NULL;
}

av_tensor *av_reshape(const av_tensor *t, int ndim, const int64_t *shape) {
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    if (infer_shape("reshape", t, ndim, shape, s)) return NULL;
    if (view_strides(t, ndim, s, st)) {
        av_tensor *v = share(t, ndim, s, st, t->offset);
        return v ? av_ag_finish(v, av_ag_view(v, t)) : NULL;
    }
    av_tensor *c = av_contiguous(t);
    if (!c) return NULL;
    av_tensor *v = av_view(c, ndim, s);
    av_release(c);
    return v;
}

av_tensor *av_permute(const av_tensor *t, const int *dims) {
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    bool seen[AV_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        int d = dims[i];
        if (d < 0) d += t->ndim;
        if (d < 0 || d >= t->ndim || seen[d]) {
            av_fail("permute: dims must be a permutation of 1..%d", t->ndim);
            return NULL;
        }
        seen[d] = true;
        s[i] = t->shape[d];
        st[i] = t->stride[d];
    }
    av_tensor *v = share(t, t->ndim, s, st, t->offset);
    return v ? av_ag_finish(v, av_ag_permute(v, t, dims)) : NULL;
}

av_tensor *av_transpose(const av_tensor *t, int d0, int d1) {
    if (t->ndim == 0) return share(t, 0, NULL, NULL, t->offset);
    if ((d0 = av_wrap_dim(d0, t->ndim, "transpose")) < 0) return NULL;
    if ((d1 = av_wrap_dim(d1, t->ndim, "transpose")) < 0) return NULL;
    int perm[AV_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return av_permute(t, perm);
}

av_tensor *av_narrow(const av_tensor *t, int dim, int64_t start, int64_t length) {
    if ((dim = av_wrap_dim(dim, t->ndim, "narrow")) < 0) return NULL;
    if (t->ndim == 0) { av_fail("narrow: cannot narrow a 0-d tensor"); return NULL; }
    if (start < 0 || length < 0 || start + length > t->shape[dim]) {
        av_fail("narrow: range [%lld, %lld) is outside dimension %d of size %lld", (long long)start,
                (long long)(start + length), dim + 1, (long long)t->shape[dim]);
        return NULL;
    }
    int64_t s[AV_MAX_DIMS];
    memcpy(s, t->shape, sizeof s);
    s[dim] = length;
    av_tensor *v = share(t, t->ndim, s, t->stride, t->offset + start * t->stride[dim]);
    return v ? av_ag_finish(v, av_ag_narrow(v, t, dim, start, length)) : NULL;
}

av_tensor *av_select(const av_tensor *t, int dim, int64_t index) {
    if (t->ndim == 0) { av_fail("select: cannot index a 0-d tensor"); return NULL; }
    if ((dim = av_wrap_dim(dim, t->ndim, "select")) < 0) return NULL;
    if (index < 0 || index >= t->shape[dim]) {
        av_fail("select: index %lld is out of range for dimension %d of size %lld", (long long)index + 1, dim + 1,
                (long long)t->shape[dim]);
        return NULL;
    }
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != dim) { s[n] = t->shape[i]; st[n++] = t->stride[i]; }
    av_tensor *v = share(t, n, s, st, t->offset + index * t->stride[dim]);
    return v ? av_ag_finish(v, av_ag_select(v, t, dim, index)) : NULL;
}

av_tensor *av_expand(const av_tensor *t, int ndim, const int64_t *shape) {
    char b1[96], b2[96];
    if (ndim < t->ndim || ndim > AV_MAX_DIMS) {
        av_fail("expand: cannot expand size %s to %d dims", av_shape_str(t, b1, sizeof b1), ndim);
        return NULL;
    }
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j < 0) {
            if (want < 0) { av_fail("expand: -1 is not allowed for a new leading dimension"); return NULL; }
            s[i] = want;
            st[i] = 0;
        } else if (want == -1 || want == t->shape[j]) {
            s[i] = t->shape[j];
            st[i] = t->stride[j];
        } else if (t->shape[j] == 1 && want >= 0) {
            s[i] = want;
            st[i] = 0;
        } else {
            av_fail("expand: size %s cannot be expanded to %s (dimension %d: %lld vs %lld)",
                    av_shape_str(t, b1, sizeof b1), av_shape_str_raw(ndim, shape, b2, sizeof b2), i + 1,
                    (long long)t->shape[j], (long long)want);
            return NULL;
        }
    }
    av_tensor *v = share(t, ndim, s, st, t->offset);
    return v ? av_ag_finish(v, av_ag_expand(v, t)) : NULL;
}

av_tensor *av_squeeze(const av_tensor *t, int dim) {
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    int n = 0;
    if (dim != AV_ALL_DIMS) {
        if (t->ndim == 0) return share(t, 0, NULL, NULL, t->offset);
        if ((dim = av_wrap_dim(dim, t->ndim, "squeeze")) < 0) return NULL;
    }
    for (int i = 0; i < t->ndim; i++) {
        bool drop = t->shape[i] == 1 && (dim == AV_ALL_DIMS || dim == i);
        if (!drop) { s[n] = t->shape[i]; st[n++] = t->stride[i]; }
    }
    av_tensor *v = share(t, n, s, st, t->offset);
    return v ? av_ag_finish(v, av_ag_view(v, t)) : NULL;
}

av_tensor *av_unsqueeze(const av_tensor *t, int dim) {
    if (t->ndim >= AV_MAX_DIMS) { av_fail("unsqueeze: at most %d dims", AV_MAX_DIMS); return NULL; }
    if ((dim = av_wrap_dim(dim, t->ndim + 1, "unsqueeze")) < 0) return NULL;
    int64_t s[AV_MAX_DIMS], st[AV_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) {
        if (i == dim) {
            s[i] = 1;
            st[i] = j < t->ndim ? t->stride[j] * t->shape[j] : 1;
        } else { s[i] = t->shape[j]; st[i] = t->stride[j]; j++; }
    }
    av_tensor *v = share(t, t->ndim + 1, s, st, t->offset);
    return v ? av_ag_finish(v, av_ag_view(v, t)) : NULL;
}

av_tensor *av_flatten(const av_tensor *t, int start, int end) {
    if (t->ndim == 0) { int64_t one = 1; return av_reshape(t, 1, &one); }
    if ((start = av_wrap_dim(start, t->ndim, "flatten")) < 0) return NULL;
    if ((end = av_wrap_dim(end, t->ndim, "flatten")) < 0) return NULL;
    if (start > end) { av_fail("flatten: start dim %d comes after end dim %d", start + 1, end + 1); return NULL; }
    int64_t s[AV_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < start; i++) s[n++] = t->shape[i];
    int64_t m = 1;
    for (int i = start; i <= end; i++) m *= t->shape[i];
    s[n++] = m;
    for (int i = end + 1; i < t->ndim; i++) s[n++] = t->shape[i];
    return av_reshape(t, n, s);
}

av_tensor *av_contiguous(const av_tensor *t) {
    if (av_is_contiguous(t)) return av_retain((av_tensor *)t);
    return av_clone(t);
}
