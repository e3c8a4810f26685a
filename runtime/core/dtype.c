#include <string.h>
#include <strings.h>
#include "aviary/tensor.h"

static const struct {
    const char *name, *tensor_name;
    size_t size;
    const char *aliases[4];
} dtype_info[AV_NDTYPES] = {
    [AV_F32] = {"float32", "FloatTensor", 4, {"float", "f32", "torch.float32", NULL}},
    [AV_F64] = {"float64", "DoubleTensor", 8, {"double", "f64", "torch.float64", NULL}},
    [AV_I64] = {"int64", "LongTensor", 8, {"long", "i64", "torch.int64", NULL}},
    [AV_I32] = {"int32", "IntTensor", 4, {"int", "i32", "torch.int32", NULL}},
    [AV_U8] = {"uint8", "ByteTensor", 1, {"byte", "u8", "bool", NULL}},
    [AV_F16] = {"float16", "HalfTensor", 2, {"half", "f16", NULL, NULL}},
    [AV_BF16] = {"bfloat16", "BFloat16Tensor", 2, {"bf16", NULL, NULL, NULL}},
};

size_t av_dtype_size(av_dtype dt) { return (unsigned)dt < AV_NDTYPES ? dtype_info[dt].size : 0; }
const char *av_dtype_name(av_dtype dt) { return (unsigned)dt < AV_NDTYPES ? dtype_info[dt].name : "?"; }
const char *av_dtype_tensor_name(av_dtype dt) {
    return (unsigned)dt < AV_NDTYPES ? dtype_info[dt].tensor_name : "Tensor";
}

int av_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int d = 0; d < AV_NDTYPES; d++) {
        if (!strcasecmp(name, dtype_info[d].name) || !strcasecmp(name, dtype_info[d].tensor_name)) return d;
        for (int a = 0; a < 4 && dtype_info[d].aliases[a]; a++)
            if (!strcasecmp(name, dtype_info[d].aliases[a])) return d;
    }
    return -1;
}

bool av_dtype_is_float(av_dtype dt) { return dt == AV_F32 || dt == AV_F64 || dt == AV_F16 || dt == AV_BF16; }

/* u8 < i32 < i64 < f32 < f64: within a category the wider wins, and any float
 * beats any integer, which is PyTorch's rule for tensor-tensor operands. */
static int rank(av_dtype d) {
    switch (d) {
    case AV_U8: return 0;
    case AV_I32: return 1;
    case AV_I64: return 2;
    case AV_F16: case AV_BF16: return 3;
    case AV_F32: return 4;
    case AV_F64: return 5;
    default: return 0;
    }
}
av_dtype av_promote(av_dtype a, av_dtype b) {
    if (a == b) return a;
    if ((a == AV_F16 && b == AV_BF16) || (a == AV_BF16 && b == AV_F16)) return AV_F32;
    return rank(a) >= rank(b) ? a : b;
}
