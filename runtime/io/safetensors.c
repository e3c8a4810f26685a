/* safetensors reading and writing, and the atomic file writer every aviary
 * writer goes through.
 *
 * The loader treats the file as hostile: every length and offset is checked
 * against the real file size before anything is allocated or read, so a
 * corrupt or truncated checkpoint gives a message naming the file and the
 * problem rather than a crash or a huge allocation. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "aviary/io.h"
#include "aviary/cuda.h"

/* The data section is copied byte for byte between the file and tensor
 * storage; both are little-endian only on a little-endian host. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

/* the reference implementation refuses larger headers; so do we, which also
 * bounds what a corrupt length field can make us allocate */
#define ST_MAX_HEADER 100000000ULL
/* shape entries and offsets travel as JSON numbers, which cJSON holds as
 * doubles: beyond 2^53 they are no longer exact */
#define ST_MAX_EXACT 9007199254740992.0

static const struct {
    const char *code;
    av_dtype dt;
} st_codes[] = {
    {"F32", AV_F32}, {"F64", AV_F64}, {"I64", AV_I64},  {"I32", AV_I32},
    {"U8", AV_U8},   {"F16", AV_F16}, {"BF16", AV_BF16}, {"BOOL", AV_U8},
};

/* valid safetensors dtypes aviary has no storage type for */
static const char *const st_unsupported[] = {
    "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

static const char *st_code_of(av_dtype dt) {
    for (size_t i = 0; i < sizeof st_codes / sizeof st_codes[0]; i++)
        if (st_codes[i].dt == dt) return st_codes[i].code;
    return NULL;
}

/* ---- atomic write ------------------------------------------------------- */

/* A rename is only durable once the directory entry is on disk; failure here
 * is not reported because some filesystems cannot fsync a directory. */
static void fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int av_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes, int nchunks) {
    if (!path || !*path) return av_fail("cannot write a file: the path is empty");
    if (nchunks < 0 || (nchunks > 0 && (!chunks || !sizes)))
        return av_fail("cannot write '%s': invalid chunk list", path);
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) return av_fail("cannot write '%s': out of memory", path);
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());

    const char *step = "create temporary file";
    FILE *f = fopen(tmp, "wb");
    if (!f) goto fail;
    step = "write";
    for (int i = 0; i < nchunks; i++) {
        if (sizes[i] == 0) continue;
        errno = 0;
        if (fwrite(chunks[i], 1, sizes[i], f) != sizes[i]) goto fail;
    }
    step = "flush";
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) goto fail;
    int rc = fclose(f);
    f = NULL;
    if (rc != 0) goto fail;
    step = "rename temporary file into place";
    if (rename(tmp, path) != 0) goto fail;
    fsync_parent_dir(path);
    free(tmp);
    return 0;

fail:;
    int err = errno;
    if (f) fclose(f);
    unlink(tmp);
    av_fail("cannot write '%s' (%s '%s'): %s", path, step, tmp, err ? strerror(err) : "short write");
    free(tmp);
    return -1;
}

/* ---- save --------------------------------------------------------------- */

/* JSON strings must be UTF-8; a Latin-1 tensor name would make a header that
 * Python's json module refuses. Overlong forms and surrogates are rejected. */
static bool valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p++;
        if (c < 0x80) continue;
        int extra;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) { extra = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { extra = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { extra = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    }
    return true;
}

static int cmp_cstr_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* sorted copy so duplicates are adjacent: n log n even for huge headers */
static const char *find_duplicate(int n, const char *const *strs, const char ***scratch) {
    const char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    *scratch = sorted;
    if (!sorted) return NULL;
    if (n > 0) memcpy(sorted, strs, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_cstr_ptr);
    for (int i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) return sorted[i];
    return NULL;
}

static int check_strings(const char *path, const char *what, int n, const char *const *strs) {
    for (int i = 0; i < n; i++) {
        if (!strs[i]) return av_fail("cannot save '%s': %s %d is NULL", path, what, i + 1);
        if (!valid_utf8(strs[i])) return av_fail("cannot save '%s': %s %d is not valid UTF-8", path, what, i + 1);
    }
    const char **scratch;
    const char *dup = find_duplicate(n, strs, &scratch);
    if (!scratch) return av_fail("cannot save '%s': out of memory", path);
    int rc = dup ? av_fail("cannot save '%s': %s '%s' is given twice", path, what, dup) : 0;
    free(scratch);
    return rc;
}

/* Integers go in as raw JSON text: cJSON would print a double above 1e15 in
 * exponent form, which strict readers (the Rust safetensors crate) reject. */
static cJSON *json_uint(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

/* adds item to an array (key NULL) or object; false (item freed) on OOM */
static bool json_add(cJSON *parent, const char *key, cJSON *item) {
    if (!item) return false;
    bool ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) cJSON_Delete(item);
    return ok;
}

static cJSON *tensor_entry(const av_tensor *t, const char *code, uint64_t begin, uint64_t end) {
    cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
    bool ok = e && shape && offs;
    for (int d = 0; ok && d < t->ndim; d++) ok = json_add(shape, NULL, json_uint((uint64_t)t->shape[d]));
    ok = ok && json_add(offs, NULL, json_uint(begin)) && json_add(offs, NULL, json_uint(end));
    ok = ok && json_add(e, "dtype", cJSON_CreateString(code));
    if (ok) {
        ok = json_add(e, "shape", shape);
        shape = NULL;
    }
    if (ok) {
        ok = json_add(e, "data_offsets", offs);
        offs = NULL;
    }
    cJSON_Delete(shape);
    cJSON_Delete(offs);
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

int av_safetensors_save(const char *path, int count, const char *const *names, av_tensor *const *tensors,
                        int meta_count, const char *const *meta_keys, const char *const *meta_values) {
    if (!path || !*path) return av_fail("cannot save safetensors: the path is empty");
    if (count < 0 || (count > 0 && (!names || !tensors)))
        return av_fail("cannot save '%s': invalid tensor list", path);
    if (meta_count < 0 || (meta_count > 0 && (!meta_keys || !meta_values)))
        return av_fail("cannot save '%s': invalid metadata list", path);
    if (check_strings(path, "tensor name", count, names)) return -1;
    if (check_strings(path, "metadata key", meta_count, meta_keys)) return -1;
    for (int i = 0; i < meta_count; i++)
        if (!meta_values[i] || !valid_utf8(meta_values[i]))
            return av_fail("cannot save '%s': metadata value for key '%s' is %s", path, meta_keys[i],
                           meta_values[i] ? "not valid UTF-8" : "NULL");
    for (int i = 0; i < count; i++) {
        const av_tensor *t = tensors[i];
        if (!strcmp(names[i], "__metadata__"))
            return av_fail("cannot save '%s': '__metadata__' is reserved and cannot name a tensor", path);
        if (!t) return av_fail("cannot save '%s': tensor '%s' is NULL", path, names[i]);
        if (t->storage->device.type != AV_CPU)
            return av_fail("cannot save '%s': tensor '%s' is not on the CPU; copy it to the CPU first", path,
                           names[i]);
        if (!st_code_of(t->dtype))
            return av_fail("cannot save '%s': tensor '%s' has dtype %s, which safetensors cannot store", path,
                           names[i], av_dtype_name(t->dtype));
    }

    int rc = -1;
    av_tensor **dense = calloc((size_t)count + 1, sizeof *dense);
    const void **chunks = calloc((size_t)count + 1, sizeof *chunks);
    size_t *sizes = calloc((size_t)count + 1, sizeof *sizes);
    uint64_t *begins = calloc((size_t)count + 1, sizeof *begins);
    cJSON *root = cJSON_CreateObject();
    char *json = NULL, *head = NULL;
    if (!dense || !chunks || !sizes || !begins || !root) goto oom;

    if (meta_count > 0) {
        cJSON *meta = cJSON_CreateObject();
        if (!json_add(root, "__metadata__", meta)) goto oom;
        for (int i = 0; i < meta_count; i++)
            if (!json_add(meta, meta_keys[i], cJSON_CreateString(meta_values[i]))) goto oom;
    }
    for (int i = 0; i < count; i++) {
        /* safetensors has no strides: views are written in row-major order; GPU
         * tensors are brought to the host first */
        dense[i] = tensors[i]->storage->device.type == AV_CPU ? av_contiguous(tensors[i])
                                                              : av_to_device(tensors[i], (av_device){AV_CPU, 0});
        if (!dense[i]) {
            av_fail("cannot save '%s': tensor '%s': %s", path, names[i], av_last_error());
            goto out;
        }
    }
    /* The header keeps the caller's order, but the data goes widest dtype
     * first (as the reference writer does): with the data section starting
     * 8-aligned, every tensor then starts at a multiple of its element size,
     * so readers that map the file can use the bytes in place. */
    uint64_t offset = 0;
    int slot = 1;
    for (size_t width = 8; width >= 1; width /= 2)
        for (int i = 0; i < count; i++) {
            if (av_dtype_size(dense[i]->dtype) != width) continue;
            size_t nbytes = (size_t)av_numel(dense[i]) * width;
            begins[i] = offset;
            chunks[slot] = av_data(dense[i]);
            sizes[slot++] = nbytes;
            offset += nbytes;
        }
    for (int i = 0; i < count; i++) {
        uint64_t nbytes = (uint64_t)av_numel(dense[i]) * av_dtype_size(dense[i]->dtype);
        cJSON *entry = tensor_entry(dense[i], st_code_of(dense[i]->dtype), begins[i], begins[i] + nbytes);
        if (!json_add(root, names[i], entry)) goto oom;
    }

    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    /* space padding to a multiple of 8 keeps every tensor's data as aligned
     * as its offset, which readers that mmap the file rely on */
    size_t json_len = strlen(json), header_len = (json_len + 7) & ~(size_t)7;
    head = malloc(8 + header_len);
    if (!head) goto oom;
    for (int b = 0; b < 8; b++) head[b] = (char)(((uint64_t)header_len >> (8 * b)) & 0xFF);
    memcpy(head + 8, json, json_len);
    memset(head + 8 + json_len, ' ', header_len - json_len);
    chunks[0] = head;
    sizes[0] = 8 + header_len;
    rc = av_write_file_atomic(path, chunks, sizes, count + 1);
    goto out;

oom:
    av_fail("cannot save '%s': out of memory building the header", path);
out:
    if (dense)
        for (int i = 0; i < count; i++) av_release(dense[i]);
    free(dense);
    free(chunks);
    free(sizes);
    free(begins);
    cJSON_Delete(root);
    free(json);
    free(head);
    return rc;
}

/* ---- load --------------------------------------------------------------- */

typedef struct {
    const char *name;    /* points into the parsed JSON */
    av_dtype dtype;
    int ndim;
    int64_t shape[AV_MAX_DIMS];
    uint64_t begin, end; /* relative to the start of the data section */
} st_entry;

/* a JSON number that is an exact non-negative integer */
static bool json_to_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_MAX_EXACT || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static const char *json_type_name(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid";
}

static int parse_dtype(const char *path, const char *name, const cJSON *j, av_dtype *out) {
    if (!cJSON_IsString(j))
        return av_fail("'%s': tensor '%s': \"dtype\" must be a string, got %s", path, name, json_type_name(j));
    for (size_t i = 0; i < sizeof st_codes / sizeof st_codes[0]; i++)
        if (!strcmp(j->valuestring, st_codes[i].code)) {
            *out = st_codes[i].dt;
            return 0;
        }
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++)
        if (!strcmp(j->valuestring, st_unsupported[i]))
            return av_fail("'%s': tensor '%s' has unsupported dtype %s (aviary reads F32, F64, I64, I32, U8, BOOL, "
                           "F16, BF16)", path, name, j->valuestring);
    return av_fail("'%s': tensor '%s' has unknown dtype '%s'", path, name, j->valuestring);
}

static int parse_entry(const char *path, const cJSON *item, uint64_t data_size, st_entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return av_fail("'%s': header entry '%s' must be an object, got %s", path, name, json_type_name(item));
    if (parse_dtype(path, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e->dtype)) return -1;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape))
        return av_fail("'%s': tensor '%s': \"shape\" must be an array, got %s", path, name, json_type_name(shape));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > AV_MAX_DIMS)
        return av_fail("'%s': tensor '%s' has %d dimensions; at most %d are supported", path, name, ndim, AV_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t v;
        if (!json_to_uint(dim, &v)) {
            if (cJSON_IsNumber(dim))
                return av_fail("'%s': tensor '%s': shape entry %d is %g; sizes must be non-negative integers", path,
                               name, d + 1, dim->valuedouble);
            return av_fail("'%s': tensor '%s': shape entry %d must be an integer, got %s", path, name, d + 1,
                           json_type_name(dim));
        }
        e->shape[d] = (int64_t)v;
        overflow |= __builtin_mul_overflow(numel, v, &numel);
    }
    size_t itemsize = av_dtype_size(e->dtype);
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)itemsize, &nbytes);

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_to_uint(offs->child, &e->begin) ||
        !json_to_uint(offs->child->next, &e->end))
        return av_fail("'%s': tensor '%s': \"data_offsets\" must be [begin, end] with non-negative integers", path,
                       name);
    if (e->begin > e->end)
        return av_fail("'%s': tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return av_fail("'%s': tensor '%s': data_offsets [%llu, %llu] go beyond the data section (%llu bytes); "
                       "the file may be truncated", path, name, (unsigned long long)e->begin,
                       (unsigned long long)e->end, (unsigned long long)data_size);
    char sbuf[160];
    av_shape_str_raw(e->ndim, e->shape, sbuf, sizeof sbuf);
    if (overflow)
        return av_fail("'%s': tensor '%s' has shape %s, which is too large", path, name, sbuf);
    if (nbytes != e->end - e->begin)
        return av_fail("'%s': tensor '%s' has shape %s %s = %llu bytes but data_offsets span %llu", path, name, sbuf,
                       av_dtype_name(e->dtype), (unsigned long long)nbytes,
                       (unsigned long long)(e->end - e->begin));
    return 0;
}

static int cmp_entry_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* empty tensors may sit anywhere, even inside another tensor's bytes; two
 * tensors sharing bytes would alias in a format that has no views */
static int check_overlaps(const char *path, int n, st_entry *entries) {
    st_entry **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return av_fail("'%s': out of memory", path);
    for (int i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, (size_t)n, sizeof *order, cmp_entry_begin);
    const st_entry *reach = NULL; /* the non-empty tensor that ends furthest so far */
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const st_entry *e = order[i];
        if (e->begin == e->end) continue;
        if (reach && e->begin < reach->end)
            rc = av_fail("'%s': tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) have overlapping data_offsets", path,
                         reach->name, (unsigned long long)reach->begin, (unsigned long long)reach->end, e->name,
                         (unsigned long long)e->begin, (unsigned long long)e->end);
        if (!reach || e->end > reach->end) reach = e;
    }
    free(order);
    return rc;
}

static int check_duplicate_names(const char *path, int n, const st_entry *entries) {
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) return av_fail("'%s': out of memory", path);
    for (int i = 0; i < n; i++) names[i] = entries[i].name;
    const char **scratch;
    const char *dup = find_duplicate(n, names, &scratch);
    int rc = !scratch ? av_fail("'%s': out of memory", path)
                      : dup ? av_fail("'%s': tensor '%s' appears twice in the header", path, dup) : 0;
    free(scratch);
    free(names);
    return rc;
}

static int read_metadata(const char *path, const cJSON *meta, av_tensor_file *tf) {
    if (!cJSON_IsObject(meta))
        return av_fail("'%s': \"__metadata__\" must be an object of strings, got %s", path, json_type_name(meta));
    int n = cJSON_GetArraySize(meta);
    tf->meta_keys = calloc((size_t)n + 1, sizeof *tf->meta_keys);
    tf->meta_values = calloc((size_t)n + 1, sizeof *tf->meta_values);
    if (!tf->meta_keys || !tf->meta_values) return av_fail("'%s': out of memory", path);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return av_fail("'%s': \"__metadata__\" value for key '%s' must be a string, got %s", path, kv->string,
                           json_type_name(kv));
        int i = tf->meta_count;
        tf->meta_keys[i] = strdup(kv->string);
        tf->meta_values[i] = strdup(kv->valuestring);
        if (!tf->meta_keys[i] || !tf->meta_values[i]) {
            free(tf->meta_keys[i]);
            free(tf->meta_values[i]);
            return av_fail("'%s': out of memory", path);
        }
        tf->meta_count++;
    }
    return 0;
}

/* reads and parses the header; leaves f positioned at the data section */
static cJSON *read_header(const char *path, FILE *f, uint64_t file_size, uint64_t *header_len) {
    if (file_size < 8) {
        av_fail("'%s': file is %llu bytes, too short for a safetensors file (it starts with an 8-byte header "
                "length)", path, (unsigned long long)file_size);
        return NULL;
    }
    unsigned char prefix[8];
    if (fread(prefix, 1, 8, f) != 8) {
        av_fail("'%s': cannot read the header length: %s", path, ferror(f) ? strerror(errno) : "unexpected end of file");
        return NULL;
    }
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--) n = (n << 8) | prefix[b];
    if (n > ST_MAX_HEADER) {
        av_fail("'%s': header length %llu exceeds the %llu-byte limit; this is not a safetensors file or it is "
                "corrupt", path, (unsigned long long)n, ST_MAX_HEADER);
        return NULL;
    }
    if (n > file_size - 8) {
        av_fail("'%s': header length %llu is larger than the file (%llu bytes after the 8-byte length); the file "
                "may be truncated", path, (unsigned long long)n, (unsigned long long)(file_size - 8));
        return NULL;
    }
    char *text = malloc((size_t)n + 1);
    if (!text) {
        av_fail("'%s': out of memory reading a %llu-byte header", path, (unsigned long long)n);
        return NULL;
    }
    if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        av_fail("'%s': cannot read the header: %s", path, ferror(f) ? strerror(errno) : "unexpected end of file");
        free(text);
        return NULL;
    }
    text[n] = 0; /* belt and braces: cJSON is given the length, but never reads past a NUL either */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (root) {
        /* the value must fill the header, apart from the space padding */
        for (const char *p = end; p < text + n; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                cJSON_Delete(root);
                root = NULL;
                break;
            }
    }
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        av_fail("'%s': header is not valid JSON (error at byte %zu of %llu)", path, at, (unsigned long long)n);
    } else if (!cJSON_IsObject(root)) {
        av_fail("'%s': header must be a JSON object, got %s", path, json_type_name(root));
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    *header_len = n;
    return root;
}

static int load_into(const char *path, FILE *f, uint64_t file_size, av_tensor_file *tf) {
    uint64_t header_len = 0;
    cJSON *root = read_header(path, f, file_size, &header_len);
    if (!root) return -1;
    uint64_t data_start = 8 + header_len, data_size = file_size - data_start;
    int rc = -1;
    int n_items = cJSON_GetArraySize(root);
    st_entry *entries = calloc((size_t)n_items + 1, sizeof *entries);
    if (!entries) {
        av_fail("'%s': out of memory", path);
        goto out;
    }
    int n = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (!strcmp(item->string, "__metadata__")) {
            if (tf->meta_keys) {
                av_fail("'%s': \"__metadata__\" appears twice in the header", path);
                goto out;
            }
            if (read_metadata(path, item, tf)) goto out;
            continue;
        }
        if (parse_entry(path, item, data_size, &entries[n])) goto out;
        n++;
    }
    if (check_duplicate_names(path, n, entries) || check_overlaps(path, n, entries)) goto out;

    tf->names = calloc((size_t)n + 1, sizeof *tf->names);
    tf->tensors = calloc((size_t)n + 1, sizeof *tf->tensors);
    if (!tf->names || !tf->tensors) {
        av_fail("'%s': out of memory", path);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const st_entry *e = &entries[i];
        av_tensor *t = av_empty(e->ndim, e->shape, e->dtype);
        if (!t) {
            av_fail("'%s': tensor '%s': %s", path, e->name, av_last_error());
            goto out;
        }
        tf->names[i] = strdup(e->name);
        tf->tensors[i] = t;
        tf->count = i + 1;
        if (!tf->names[i]) {
            av_fail("'%s': out of memory", path);
            goto out;
        }
        size_t nbytes = (size_t)(e->end - e->begin);
        if (nbytes == 0) continue;
        if (fseeko(f, (off_t)(data_start + e->begin), SEEK_SET) != 0 || fread(av_data(t), 1, nbytes, f) != nbytes) {
            av_fail("'%s': cannot read tensor '%s': %s", path, e->name,
                    ferror(f) ? strerror(errno) : "unexpected end of file (was the file truncated while loading?)");
            goto out;
        }
    }
    rc = 0;
out:
    free(entries);
    cJSON_Delete(root);
    return rc;
}

FILE *av_open_regular_file(const char *path, const char *verb, uint64_t *size) {
    if (!path || !*path) {
        av_fail("cannot %s: the path is empty", verb);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        av_fail("cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    int stat_rc = fstat(fileno(f), &st);
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        av_fail("cannot %s '%s': %s", verb, path,
                stat_rc ? strerror(errno) : S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
        fclose(f);
        return NULL;
    }
    *size = (uint64_t)st.st_size;
    return f;
}

av_tensor_file *av_safetensors_load(const char *path) {
    uint64_t fsize = 0;
    FILE *f = av_open_regular_file(path, "load safetensors", &fsize);
    if (!f) return NULL;
    av_tensor_file *tf = calloc(1, sizeof *tf);
    if (!tf) {
        av_fail("'%s': out of memory", path);
        fclose(f);
        return NULL;
    }
    int rc = load_into(path, f, fsize, tf);
    fclose(f);
    if (rc) {
        av_tensor_file_free(tf);
        return NULL;
    }
    return tf;
}

void av_tensor_file_free(av_tensor_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->names ? f->names[i] : NULL);
        av_release(f->tensors ? f->tensors[i] : NULL);
    }
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->names);
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f);
}
