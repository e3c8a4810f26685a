/* ONNX files: protobuf-c unpacking and packing of ModelProto, tensor
 * conversion with validation, external data.
 *
 * Input is treated as hostile. protobuf-c checks the wire format (a truncated
 * or corrupt file fails to unpack); everything after that, the sizes of
 * tensor data against their dims, the dims themselves, the data types and
 * external data offsets, is checked here before a byte is copied. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aviary/io.h"
#include "aviary/onnx.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ONNX raw_data I/O assumes a little-endian host");

/* protobuf's own limit on one message */
#define ONNX_MAX_BYTES ((size_t)INT32_MAX)

enum {
    E_UNDEFINED = 0, E_FLOAT = 1, E_UINT8 = 2, E_INT8 = 3, E_UINT16 = 4, E_INT16 = 5, E_INT32 = 6, E_INT64 = 7,
    E_STRING = 8, E_BOOL = 9, E_FLOAT16 = 10, E_DOUBLE = 11, E_UINT32 = 12, E_UINT64 = 13, E_COMPLEX64 = 14,
    E_COMPLEX128 = 15, E_BFLOAT16 = 16, E_FLOAT8E4M3FN = 17, E_FLOAT8E4M3FNUZ = 18, E_FLOAT8E5M2 = 19,
    E_FLOAT8E5M2FNUZ = 20, E_UINT4 = 21, E_INT4 = 22, E_FLOAT4E2M1 = 23,
};

static const char *const elem_names[] = {
    "UNDEFINED", "FLOAT",  "UINT8",   "INT8",     "UINT16",    "INT16",      "INT32",
    "INT64",     "STRING", "BOOL",    "FLOAT16",  "DOUBLE",    "UINT32",     "UINT64",
    "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
    "UINT4",     "INT4",   "FLOAT4E2M1",
};

const char *av_onnx_elem_name(int code) {
    if (code < 0 || code >= (int)(sizeof elem_names / sizeof elem_names[0])) return NULL;
    return elem_names[code];
}

/* bytes per element in raw_data, and the aviary dtype it reads into; 0 when unsupported */
static size_t elem_size(int code, av_dtype *dt) {
    switch (code) {
    case E_FLOAT: *dt = AV_F32; return 4;
    case E_DOUBLE: *dt = AV_F64; return 8;
    case E_INT64: *dt = AV_I64; return 8;
    case E_UINT32: *dt = AV_I64; return 4;
    case E_INT32: *dt = AV_I32; return 4;
    case E_INT16: case E_UINT16: *dt = AV_I32; return 2;
    case E_INT8: *dt = AV_I32; return 1;
    case E_UINT8: case E_BOOL: *dt = AV_U8; return 1;
    case E_FLOAT16: case E_BFLOAT16: *dt = AV_F32; return 2;
    default: return 0;
    }
}

static int unsupported_type(const char *file, const char *what, int code) {
    const char *n = av_onnx_elem_name(code);
    char buf[32];
    if (!n) {
        snprintf(buf, sizeof buf, "%d", code);
        n = buf;
    }
    return av_fail("'%s': %s has data type %s, which aviary cannot read (it reads FLOAT, DOUBLE, FLOAT16, BFLOAT16, "
                   "INT64, INT32, INT16, INT8, UINT32, UINT16, UINT8, BOOL)", file, what, n);
}

/* ---- reading ------------------------------------------------------------ */

/* protobuf-c unpacks nested messages recursively with no depth limit, so a
 * file of deeply nested subgraphs (a few bytes per level) could overflow the
 * stack. This pass walks the wire format with the message descriptors and
 * refuses nesting deeper than ONNX_MAX_DEPTH before unpacking. It only follows
 * well-formed length-delimited message fields; anything malformed is left for
 * protobuf-c to reject. */
#define ONNX_MAX_DEPTH 100

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* false when nesting exceeds the limit */
static bool depth_ok(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *desc, int depth) {
    if (depth > ONNX_MAX_DEPTH) return false;
    while (p < end) {
        uint64_t key, v;
        if (!read_varint(&p, end, &key)) return true;
        unsigned wire = (unsigned)(key & 7);
        uint64_t id = key >> 3;
        switch (wire) {
        case 0:
            if (!read_varint(&p, end, &v)) return true;
            break;
        case 1:
            if ((size_t)(end - p) < 8) return true;
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4) return true;
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return true;
            const ProtobufCFieldDescriptor *f =
                id <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)id) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor &&
                !depth_ok(p, p + v, f->descriptor, depth + 1))
                return false;
            p += v;
            break;
        }
        default:
            return true; /* groups or junk: protobuf-c decides */
        }
    }
    return true;
}

Onnx__ModelProto *av_onnx_decode(const void *data, size_t len, const char *name) {
    if (!name) name = "(bytes)";
    if (!data && len) {
        av_fail("'%s': no data", name);
        return NULL;
    }
    if (len > ONNX_MAX_BYTES) {
        av_fail("'%s': %zu bytes is more than protobuf's 2 GiB limit for one message", name, len);
        return NULL;
    }
    if (!depth_ok(data, (const uint8_t *)data + len, &onnx__model_proto__descriptor, 0)) {
        av_fail("'%s': not a valid ONNX model: messages nest deeper than %d levels", name, ONNX_MAX_DEPTH);
        return NULL;
    }
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    if (!m) {
        av_fail("'%s': not a valid ONNX model (truncated or corrupt protobuf)", name);
        return NULL;
    }
    if (!m->graph) {
        av_fail("'%s': not a valid ONNX model: it has no graph%s", name,
                m->has_ir_version ? "" : " (and no ir_version; is it an ONNX file?)");
        onnx__model_proto__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Onnx__ModelProto *av_onnx_read(const char *path) {
    uint64_t fsize = 0;
    FILE *f = av_open_regular_file(path, "read the ONNX model", &fsize);
    if (!f) return NULL;
    size_t size = (size_t)fsize;
    if (size > ONNX_MAX_BYTES) {
        av_fail("'%s': %zu bytes is more than protobuf's 2 GiB limit; large models keep their weights as "
                "external data", path, size);
        fclose(f);
        return NULL;
    }
    void *buf = malloc(size ? size : 1);
    if (!buf) {
        av_fail("'%s': out of memory reading %zu bytes", path, size);
        fclose(f);
        return NULL;
    }
    if (fread(buf, 1, size, f) != size) {
        av_fail("'%s': cannot read: %s", path, ferror(f) ? strerror(errno) : "unexpected end of file");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    Onnx__ModelProto *m = av_onnx_decode(buf, size, path);
    free(buf);
    return m;
}

void av_onnx_model_free(Onnx__ModelProto *m) {
    if (m) onnx__model_proto__free_unpacked(m, NULL);
}

/* a decimal integer >= 0 from an external_data value */
static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v)) return false;
    }
    *out = v;
    return true;
}

/* reads the external bytes of tp into a malloc'ed buffer of *nbytes */
static void *read_external(const Onnx__TensorProto *tp, const char *file, const char *base_dir, const char *what,
                           uint64_t want, uint64_t *nbytes) {
    const char *location = NULL;
    uint64_t offset = 0, length = 0;
    bool has_length = false;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        const char *k = kv && kv->key ? kv->key : "", *v = kv && kv->value ? kv->value : "";
        if (!strcmp(k, "location")) {
            location = v;
        } else if (!strcmp(k, "offset")) {
            if (!parse_u64(v, &offset)) {
                av_fail("'%s': %s: external data offset '%s' is not a non-negative integer", file, what, v);
                return NULL;
            }
        } else if (!strcmp(k, "length")) {
            if (!parse_u64(v, &length)) {
                av_fail("'%s': %s: external data length '%s' is not a non-negative integer", file, what, v);
                return NULL;
            }
            has_length = true;
        }
    }
    if (!location || !*location) {
        av_fail("'%s': %s has external data without a location", file, what);
        return NULL;
    }
    if (!base_dir) {
        av_fail("'%s': %s keeps its data in external file '%s', but no base_dir was given to find it", file, what,
                location);
        return NULL;
    }
    /* the data must live beside the model, as the ONNX checker requires */
    if (location[0] == '/' || !strcmp(location, "..") || !strncmp(location, "../", 3) || strstr(location, "/../") ||
        (strlen(location) >= 3 && !strcmp(location + strlen(location) - 3, "/.."))) {
        av_fail("'%s': %s: external data location '%s' must be a relative path inside the model's folder", file,
                what, location);
        return NULL;
    }
    size_t plen = strlen(base_dir) + strlen(location) + 2;
    char *path = malloc(plen);
    if (!path) {
        av_fail("'%s': out of memory", file);
        return NULL;
    }
    snprintf(path, plen, "%s/%s", *base_dir ? base_dir : ".", location);
    void *buf = NULL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) {
        av_fail("'%s': %s: cannot open external data file '%s': %s", file, what, path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        av_fail("'%s': %s: external data '%s' is not a regular file", file, what, path);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || (has_length && length > size - offset)) {
        av_fail("'%s': %s: external data offset %llu and length %llu go beyond the end of '%s' (%llu bytes)", file,
                what, (unsigned long long)offset, (unsigned long long)(has_length ? length : want), path,
                (unsigned long long)size);
        goto out;
    }
    if (!has_length) length = size - offset;
    if (length != want) {
        av_fail("'%s': %s: external data in '%s' has %llu bytes at offset %llu, but its dims and data type need "
                "%llu bytes", file, what, path, (unsigned long long)length, (unsigned long long)offset,
                (unsigned long long)want);
        goto out;
    }
    buf = malloc(length ? (size_t)length : 1);
    if (!buf) {
        av_fail("'%s': %s: out of memory reading %llu bytes of external data", file, what, (unsigned long long)length);
        goto out;
    }
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, (size_t)length, f) != (size_t)length) {
        av_fail("'%s': %s: cannot read external data '%s': %s", file, what, path,
                ferror(f) ? strerror(errno) : "unexpected end of file");
        free(buf);
        buf = NULL;
        goto out;
    }
    *nbytes = length;
out:
    if (f) fclose(f);
    free(path);
    return buf;
}

/* little-endian element bytes of ONNX type `code` into t (dtype chosen by elem_size) */
static void convert_raw(av_tensor *t, int code, const uint8_t *src, int64_t n) {
    void *dst = av_data(t);
    switch (code) {
    case E_FLOAT: case E_DOUBLE: case E_INT64: case E_INT32: case E_UINT8: case E_BOOL:
        memcpy(dst, src, (size_t)n * av_dtype_size(t->dtype));
        break;
    case E_UINT32:
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            ((int64_t *)dst)[i] = v;
        }
        break;
    case E_INT16:
        for (int64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, src + 2 * i, 2);
            ((int32_t *)dst)[i] = v;
        }
        break;
    case E_UINT16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            ((int32_t *)dst)[i] = v;
        }
        break;
    case E_INT8:
        for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int8_t)src[i];
        break;
    case E_FLOAT16: case E_BFLOAT16:
        for (int64_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)av_load_elem(code == E_FLOAT16 ? AV_F16 : AV_BF16, src + 2 * i);
        break;
    }
}

/* the typed repeated field that holds `code`, per onnx.proto */
static size_t typed_count(const Onnx__TensorProto *tp, int code, const char **field) {
    switch (code) {
    case E_FLOAT: *field = "float_data"; return tp->n_float_data;
    case E_DOUBLE: *field = "double_data"; return tp->n_double_data;
    case E_INT64: *field = "int64_data"; return tp->n_int64_data;
    case E_UINT32: *field = "uint64_data"; return tp->n_uint64_data;
    default: *field = "int32_data"; return tp->n_int32_data;
    }
}

static void convert_typed(av_tensor *t, const Onnx__TensorProto *tp, int code, int64_t n) {
    void *dst = av_data(t);
    switch (code) {
    case E_FLOAT: memcpy(dst, tp->float_data, (size_t)n * 4); break;
    case E_DOUBLE: memcpy(dst, tp->double_data, (size_t)n * 8); break;
    case E_INT64: memcpy(dst, tp->int64_data, (size_t)n * 8); break;
    case E_UINT32:
        for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = (uint32_t)tp->uint64_data[i];
        break;
    case E_INT32: memcpy(dst, tp->int32_data, (size_t)n * 4); break;
    case E_INT16:
        for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int16_t)tp->int32_data[i];
        break;
    case E_UINT16:
        for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (uint16_t)tp->int32_data[i];
        break;
    case E_INT8:
        for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int8_t)tp->int32_data[i];
        break;
    case E_UINT8: case E_BOOL:
        for (int64_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)tp->int32_data[i];
        break;
    case E_FLOAT16: case E_BFLOAT16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t bits = (uint16_t)tp->int32_data[i];
            ((float *)dst)[i] = (float)av_load_elem(code == E_FLOAT16 ? AV_F16 : AV_BF16, &bits);
        }
        break;
    }
}

av_tensor *av_onnx_tensor_to_av(const Onnx__TensorProto *tp, const char *file, const char *base_dir,
                                const char *what) {
    if (!file) file = "(bytes)";
    if (!what) what = "tensor";
    if (!tp) {
        av_fail("'%s': %s is missing", file, what);
        return NULL;
    }
    int code = tp->has_data_type ? tp->data_type : E_UNDEFINED;
    av_dtype dt = AV_F32;
    size_t esize = elem_size(code, &dt);
    if (!esize) {
        unsupported_type(file, what, code);
        return NULL;
    }
    if (tp->segment) {
        av_fail("'%s': %s is a segment of a larger tensor, which aviary does not read", file, what);
        return NULL;
    }
    if (tp->n_dims > AV_MAX_DIMS) {
        av_fail("'%s': %s has %zu dims; aviary supports at most %d", file, what, tp->n_dims, AV_MAX_DIMS);
        return NULL;
    }
    int ndim = (int)tp->n_dims;
    int64_t shape[AV_MAX_DIMS] = {0};
    uint64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        if (tp->dims[d] < 0) {
            av_fail("'%s': %s has a negative dim (%lld at position %d of %d)", file, what, (long long)tp->dims[d],
                    d + 1, ndim);
            return NULL;
        }
        shape[d] = tp->dims[d];
        overflow |= __builtin_mul_overflow(numel, (uint64_t)shape[d], &numel);
    }
    uint64_t want = 0;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)esize, &want);
    char sbuf[160];
    av_shape_str_raw(ndim, shape, sbuf, sizeof sbuf);
    if (overflow || numel > (uint64_t)INT64_MAX / 8) {
        av_fail("'%s': %s has dims %s, which is too large", file, what, sbuf);
        return NULL;
    }
    const char *tname = av_onnx_elem_name(code);

    bool external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    void *ext = NULL;
    const uint8_t *raw = NULL;
    const char *field = NULL;
    size_t ntyped = typed_count(tp, code, &field);
    if (external) {
        uint64_t got = 0;
        ext = read_external(tp, file, base_dir, what, want, &got);
        if (!ext) return NULL;
        raw = ext;
    } else if (tp->has_raw_data) {
        if (tp->raw_data.len != want) {
            av_fail("'%s': %s has %zu bytes of raw_data, but its dims %s of %s need %llu bytes", file, what,
                    tp->raw_data.len, sbuf, tname, (unsigned long long)want);
            return NULL;
        }
        raw = tp->raw_data.data;
    } else if (ntyped != numel) {
        av_fail("'%s': %s holds %zu values in %s, but its dims %s need %llu", file, what, ntyped, field, sbuf,
                (unsigned long long)numel);
        return NULL;
    }

    av_tensor *t = av_empty(ndim, shape, dt);
    if (!t) {
        av_fail("'%s': %s: %s", file, what, av_last_error());
        free(ext);
        return NULL;
    }
    if (numel) {
        if (raw) convert_raw(t, code, raw, (int64_t)numel);
        else convert_typed(t, tp, code, (int64_t)numel);
    }
    free(ext);
    return t;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    max_align_t data[];
} arena_block;

struct av_onnx_arena {
    arena_block *blocks;
    av_tensor **kept;
    size_t nkept, capkept;
};

av_onnx_arena *av_onnx_arena_new(void) {
    av_onnx_arena *a = calloc(1, sizeof *a);
    if (!a) av_fail("out of memory");
    return a;
}

void av_onnx_arena_free(av_onnx_arena *a) {
    if (!a) return;
    for (arena_block *b = a->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    for (size_t i = 0; i < a->nkept; i++) av_release(a->kept[i]);
    free(a->kept);
    free(a);
}

void *av_onnx_arena_alloc(av_onnx_arena *a, size_t n) {
    if (n > SIZE_MAX - sizeof(arena_block)) {
        av_fail("out of memory");
        return NULL;
    }
    arena_block *b = calloc(1, sizeof *b + (n ? n : 1));
    if (!b) {
        av_fail("out of memory allocating %zu bytes", n);
        return NULL;
    }
    b->next = a->blocks;
    a->blocks = b;
    return b->data;
}

char *av_onnx_arena_strndup(av_onnx_arena *a, const char *s, size_t len) {
    if (len == SIZE_MAX) {
        av_fail("out of memory");
        return NULL;
    }
    char *p = av_onnx_arena_alloc(a, len + 1);
    if (p && len) memcpy(p, s, len);
    return p;
}

static int arena_keep(av_onnx_arena *a, av_tensor *t) {
    if (a->nkept == a->capkept) {
        size_t cap = a->capkept ? 2 * a->capkept : 16;
        av_tensor **k = realloc(a->kept, cap * sizeof *k);
        if (!k) {
            av_release(t);
            return av_fail("out of memory");
        }
        a->kept = k;
        a->capkept = cap;
    }
    a->kept[a->nkept++] = t;
    return 0;
}

static int code_of_dtype(av_dtype dt) {
    switch (dt) {
    case AV_F32: return E_FLOAT;
    case AV_F64: return E_DOUBLE;
    case AV_I64: return E_INT64;
    case AV_I32: return E_INT32;
    case AV_U8: return E_UINT8;
    case AV_F16: return E_FLOAT16;
    case AV_BF16: return E_BFLOAT16;
    default: return E_UNDEFINED;
    }
}

int av_onnx_tensor_from_av(Onnx__TensorProto *tp, const av_tensor *t, int elem_type, av_onnx_arena *a,
                           const char *what) {
    if (!what) what = "tensor";
    if (!t) return av_fail("%s is NULL", what);
    if (t->storage->device.type != AV_CPU) return av_fail("%s is not on the CPU; copy it to the CPU first", what);
    int code = elem_type ? elem_type : code_of_dtype(t->dtype);
    /* the aviary dtype holding the values before any narrowing */
    av_dtype via;
    size_t esize;
    switch (code) {
    case E_FLOAT: via = AV_F32; esize = 4; break;
    case E_DOUBLE: via = AV_F64; esize = 8; break;
    case E_INT64: via = AV_I64; esize = 8; break;
    case E_INT32: via = AV_I32; esize = 4; break;
    case E_UINT8: via = AV_U8; esize = 1; break;
    case E_FLOAT16: via = AV_F16; esize = 2; break;
    case E_BFLOAT16: via = AV_BF16; esize = 2; break;
    case E_BOOL: case E_INT8: case E_INT16: case E_UINT16: case E_UINT32: via = AV_I64; esize = code == E_UINT32 ? 4 : code == E_INT16 || code == E_UINT16 ? 2 : 1; break;
    default: {
        const char *n = av_onnx_elem_name(code);
        return av_fail("%s: cannot write data type %s%s%d", what, n ? n : "", n ? " " : "", code);
    }
    }
    av_tensor *c = av_to_dtype(t, via);
    if (!c) return av_fail("%s: %s", what, av_last_error());
    av_tensor *d = av_contiguous(c);
    av_release(c);
    if (!d) return av_fail("%s: %s", what, av_last_error());
    if (arena_keep(a, d)) return -1;
    int64_t n = av_numel(d);

    tp->has_data_type = 1;
    tp->data_type = code;
    tp->n_dims = (size_t)d->ndim;
    tp->dims = av_onnx_arena_alloc(a, sizeof(int64_t) * (size_t)(d->ndim ? d->ndim : 1));
    if (!tp->dims) return -1;
    for (int i = 0; i < d->ndim; i++) tp->dims[i] = d->shape[i];
    tp->has_raw_data = 1;
    tp->raw_data.len = (size_t)n * esize;
    if (via != AV_I64 || code == E_INT64) {
        tp->raw_data.data = n ? av_data(d) : NULL;
        return 0;
    }
    uint8_t *out = av_onnx_arena_alloc(a, (size_t)n * esize);
    if (!out) return -1;
    const int64_t *v = av_data(d);
    int64_t lo = code == E_BOOL ? 0 : code == E_INT8 ? INT8_MIN : code == E_INT16 ? INT16_MIN : 0;
    int64_t hi = code == E_BOOL ? 1 : code == E_INT8 ? INT8_MAX : code == E_INT16 ? INT16_MAX
                                   : code == E_UINT16 ? UINT16_MAX : (int64_t)UINT32_MAX;
    for (int64_t i = 0; i < n; i++) {
        int64_t x = v[i];
        if (code == E_BOOL) x = x != 0;
        if (x < lo || x > hi)
            return av_fail("%s: value %lld at element %lld does not fit data type %s", what, (long long)x,
                           (long long)(i + 1), av_onnx_elem_name(code));
        uint32_t u = (uint32_t)x;
        memcpy(out + (size_t)i * esize, &u, esize); /* little-endian: the low bytes */
    }
    tp->raw_data.data = out;
    return 0;
}

int av_onnx_packed_size(const Onnx__ModelProto *m, size_t *size) {
    size_t n = onnx__model_proto__get_packed_size(m);
    if (n > ONNX_MAX_BYTES)
        return av_fail("the model serializes to %zu bytes, more than protobuf's 2 GiB limit", n);
    *size = n;
    return 0;
}

void av_onnx_pack(const Onnx__ModelProto *m, void *out) { onnx__model_proto__pack(m, out); }

int av_onnx_write(const char *path, const Onnx__ModelProto *m) {
    if (!path || !*path) return av_fail("cannot write an ONNX model: the path is empty");
    size_t n = 0;
    if (av_onnx_packed_size(m, &n)) return av_fail("cannot write '%s': %s", path, av_last_error());
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return av_fail("cannot write '%s': out of memory (%zu bytes)", path, n);
    size_t packed = onnx__model_proto__pack(m, buf);
    int rc = packed == n ? 0 : av_fail("cannot write '%s': protobuf packed %zu bytes of %zu", path, packed, n);
    if (!rc) {
        const void *chunks[1] = {buf};
        size_t sizes[1] = {n};
        rc = av_write_file_atomic(path, chunks, sizes, 1);
    }
    free(buf);
    return rc;
}
