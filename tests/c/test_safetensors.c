/* safetensors save/load: round trips of every dtype and layout, the atomic
 * writer, and a table of corrupt files that must each fail with a specific
 * message (and, under `make asan`, without reading out of bounds). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "harness.h"
#include "aviary/io.h"

/* ---- scratch directory ------------------------------------------------- */

static char st_dir[64];

static void st_remove_dir(void) {
    DIR *d = opendir(st_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", st_dir, e->d_name);
        if (rmdir(p) != 0) unlink(p);
    }
    closedir(d);
    rmdir(st_dir);
}

/* path of a file in a per-process scratch directory (static buffer rotation) */
static const char *st_path(const char *name) {
    static char bufs[4][512];
    static int next;
    if (!st_dir[0]) {
        snprintf(st_dir, sizeof st_dir, "/tmp/aviary_st_XXXXXX");
        if (!mkdtemp(st_dir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(st_remove_dir);
    }
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", st_dir, name);
    return b;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* a file with the given header length field, header text and data_len bytes */
static int write_st(const char *path, uint64_t len_field, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_len + 1);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)(len_field >> (8 * b));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)(i * 7 + 1);
    int rc = write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
    return rc;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    return buf;
}

static int find_name(const av_tensor_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->names[i], name)) return i;
    return -1;
}

static bool file_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

static bool same_tensor(const av_tensor *a, const av_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    int64_t n = av_numel(a), idx[AV_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = a->ndim - 1; d >= 0; d--) {
            idx[d] = r % a->shape[d];
            r /= a->shape[d];
        }
        double x = av_get(a, idx), y = av_get(b, idx);
        if (!(x == y || (isnan(x) && isnan(y)))) return false;
    }
    return true;
}

/* ---- round trips -------------------------------------------------------- */

TEST(st_roundtrip_every_dtype) {
    static const av_dtype dts[] = {AV_F32, AV_F64, AV_I64, AV_I32, AV_U8, AV_F16, AV_BF16};
    enum { ND = sizeof dts / sizeof dts[0] };
    /* exactly representable in every dtype, bf16's 8-bit mantissa included */
    const double vals[6] = {0, 1, 2.5, 3, 128, 255};
    av_tensor *ts[ND];
    const char *names[ND];
    for (int i = 0; i < ND; i++) {
        ts[i] = test_tensor(dts[i], 2, T_SHAPE(2, 3), vals);
        names[i] = av_dtype_name(dts[i]);
    }
    const char *p = st_path("dtypes.safetensors");
    CHECK(av_safetensors_save(p, ND, names, ts, 0, NULL, NULL) == 0);
    size_t n = 0;
    unsigned char *raw = read_all(p, &n);
    CHECK(raw && n > 8);
    if (raw && n > 8) {
        uint64_t hl = 0;
        for (int b = 7; b >= 0; b--) hl = (hl << 8) | raw[b];
        CHECK((8 + hl) % 8 == 0); /* data section aligned */
        CHECK(raw[8] == '{');
        /* 6 elements of 8+8+8+4+1+2+2 bytes */
        CHECK(n == 8 + hl + 6 * (4 + 8 + 8 + 4 + 1 + 2 + 2));
        /* header order is the caller's, data is laid out so each tensor is
         * aligned to its element size */
        cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, (size_t)hl);
        CHECK(h != NULL);
        int k = 0;
        for (cJSON *e = h ? h->child : NULL; e; e = e->next, k++) {
            CHECK(k < ND && !strcmp(e->string, names[k]));
            cJSON *offs = cJSON_GetObjectItem(e, "data_offsets");
            double begin = cJSON_GetArrayItem(offs, 0)->valuedouble;
            CHECK(k < ND && fmod(begin, (double)av_dtype_size(dts[k])) == 0);
        }
        CHECK(k == ND);
        cJSON_Delete(h);
    }
    free(raw);

    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == ND && f->meta_count == 0);
    for (int i = 0; f && i < ND; i++) {
        CHECK(!strcmp(f->names[i], names[i])); /* file order */
        CHECK(same_tensor(f->tensors[i], ts[i]));
        CHECK(av_is_contiguous(f->tensors[i]));
        if (dts[i] == AV_U8) CHECK_VALUES(f->tensors[i], 0, 0, 1, 2, 3, 128, 255); /* 2.5 truncates */
    }
    av_tensor_file_free(f);
    for (int i = 0; i < ND; i++) av_release(ts[i]);
}

TEST(st_empty_and_scalar) {
    av_tensor *empty = av_empty(2, T_SHAPE(0, 3), AV_F32);
    av_tensor *empty1d = av_empty(1, T_SHAPE(0), AV_I64);
    av_tensor *scalar = av_scalar_tensor(-7.25, AV_F64);
    av_tensor *after = test_tensor(AV_I32, 1, T_SHAPE(2), T_VALS(11, 12));
    const char *names[] = {"empty", "scalar", "empty1d", "after"};
    av_tensor *ts[] = {empty, scalar, empty1d, after};
    const char *p = st_path("empty.safetensors");
    CHECK(av_safetensors_save(p, 4, names, ts, 0, NULL, NULL) == 0);
    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == 4);
    if (f && f->count == 4) {
        CHECK_SHAPE(f->tensors[0], 0, 3);
        CHECK(av_numel(f->tensors[0]) == 0);
        CHECK(f->tensors[1]->ndim == 0 && f->tensors[1]->dtype == AV_F64);
        double v = 0;
        CHECK(av_item(f->tensors[1], &v) == 0);
        CHECK_NEAR(v, -7.25, 0);
        CHECK(f->tensors[2]->ndim == 1 && f->tensors[2]->shape[0] == 0 && f->tensors[2]->dtype == AV_I64);
        CHECK_VALUES(f->tensors[3], 0, 11, 12);
    }
    av_tensor_file_free(f);

    /* no tensors at all is a valid (if useless) file */
    const char *p2 = st_path("nothing.safetensors");
    CHECK(av_safetensors_save(p2, 0, NULL, NULL, 0, NULL, NULL) == 0);
    f = av_safetensors_load(p2);
    CHECK(f && f->count == 0 && f->meta_count == 0);
    av_tensor_file_free(f);
    for (int i = 0; i < 4; i++) av_release(ts[i]);
}

TEST(st_noncontiguous_written_row_major) {
    av_tensor *base = av_arange(0, 12, 1, AV_F32);
    av_tensor *m = av_view(base, 2, T_SHAPE(3, 4));
    av_tensor *mt = av_transpose(m, 0, 1);               /* 4x3, strides (1, 4) */
    av_tensor *col = av_narrow(m, 1, 1, 2);               /* 3x2 with an offset */
    av_tensor *sel_src = av_select(m, 0, 2);
    av_tensor *bcast = av_expand(sel_src, 2, T_SHAPE(2, 4)); /* stride 0 */
    CHECK(mt && !av_is_contiguous(mt) && col && bcast);
    const char *names[] = {"mt", "col", "bcast"};
    av_tensor *ts[] = {mt, col, bcast};
    const char *p = st_path("views.safetensors");
    CHECK(av_safetensors_save(p, 3, names, ts, 0, NULL, NULL) == 0);
    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == 3);
    if (f && f->count == 3) {
        CHECK_SHAPE(f->tensors[0], 4, 3);
        CHECK_VALUES(f->tensors[0], 0, 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11);
        CHECK_SHAPE(f->tensors[1], 3, 2);
        CHECK_VALUES(f->tensors[1], 0, 1, 2, 5, 6, 9, 10);
        CHECK_SHAPE(f->tensors[2], 2, 4);
        CHECK_VALUES(f->tensors[2], 0, 8, 9, 10, 11, 8, 9, 10, 11);
    }
    av_tensor_file_free(f);
    av_release(sel_src);
    av_release(bcast);
    av_release(col);
    av_release(mt);
    av_release(m);
    av_release(base);
}

TEST(st_metadata_roundtrip) {
    av_tensor *w = test_tensor(AV_F32, 1, T_SHAPE(3), T_VALS(1, 2, 3));
    const char *names[] = {"w"};
    av_tensor *ts[] = {w};
    const char *keys[] = {"format", "epoch", "note", "caf\xc3\xa9", "empty"};
    const char *vals[] = {"pt", "12", "quotes \" and \\ and\nnewline\ttab", "\xe2\x9c\x93 unicode", ""};
    const char *p = st_path("meta.safetensors");
    CHECK(av_safetensors_save(p, 1, names, ts, 5, keys, vals) == 0);
    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == 1 && f->meta_count == 5);
    for (int i = 0; f && i < f->meta_count && i < 5; i++) {
        CHECK(!strcmp(f->meta_keys[i], keys[i]));
        CHECK(!strcmp(f->meta_values[i], vals[i]));
    }
    if (f && f->count == 1) CHECK_VALUES(f->tensors[0], 0, 1, 2, 3);
    av_tensor_file_free(f);

    /* save-side validation of names and metadata */
    const char *bad_utf8[] = {"caf\xe9"};
    CHECK_ERR(av_safetensors_save(p, 1, names, ts, 1, bad_utf8, vals), "not valid UTF-8");
    const char *dup_keys[] = {"a", "a"};
    CHECK_ERR(av_safetensors_save(p, 1, names, ts, 2, dup_keys, vals), "metadata key 'a' is given twice");
    av_release(w);
}

TEST(st_save_rejects_bad_input) {
    av_tensor *a = av_zeros(1, T_SHAPE(2), AV_F32);
    const char *p = st_path("bad_save.safetensors");
    const char *dup[] = {"x", "x"};
    av_tensor *two[] = {a, a};
    CHECK_ERR(av_safetensors_save(p, 2, dup, two, 0, NULL, NULL), "tensor name 'x' is given twice");
    const char *reserved[] = {"__metadata__"};
    CHECK_ERR(av_safetensors_save(p, 1, reserved, two, 0, NULL, NULL), "reserved");
    av_tensor *none[] = {NULL};
    const char *one[] = {"n"};
    CHECK_ERR(av_safetensors_save(p, 1, one, none, 0, NULL, NULL), "tensor 'n' is NULL");
    CHECK_ERR(av_safetensors_save("", 1, one, two, 0, NULL, NULL), "path is empty");
    CHECK(!file_exists(p));
    av_release(a);
}

TEST(st_atomic_write) {
    const char *p = st_path("atomic.safetensors");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    av_tensor *a = test_tensor(AV_F32, 1, T_SHAPE(2), T_VALS(1, 2));
    av_tensor *b = test_tensor(AV_F32, 1, T_SHAPE(3), T_VALS(4, 5, 6));
    const char *names[] = {"t"};
    CHECK(av_safetensors_save(p, 1, names, &a, 0, NULL, NULL) == 0);
    CHECK(file_exists(p) && !file_exists(tmp));
    /* overwriting replaces the whole file */
    CHECK(av_safetensors_save(p, 1, names, &b, 0, NULL, NULL) == 0);
    CHECK(!file_exists(tmp));
    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == 1);
    if (f && f->count == 1) CHECK_VALUES(f->tensors[0], 0, 4, 5, 6);
    av_tensor_file_free(f);

    /* a directory that does not exist: error names the path, nothing left behind */
    const char *missing = st_path("no_such_dir/x.safetensors");
    CHECK_ERR(av_safetensors_save(missing, 1, names, &a, 0, NULL, NULL), "No such file or directory");
    CHECK(strstr(av_last_error(), missing) != NULL);

    /* rename onto a directory fails after the temp file was written: it must be removed */
    const char *dirp = st_path("a_directory");
    CHECK(mkdir(dirp, 0700) == 0);
    char dtmp[600];
    snprintf(dtmp, sizeof dtmp, "%s.tmp.%ld", dirp, (long)getpid());
    CHECK_ERR(av_safetensors_save(dirp, 1, names, &a, 0, NULL, NULL), "a_directory");
    CHECK(!file_exists(dtmp));

    /* the raw helper, with an empty chunk in the middle */
    const char *hp = st_path("chunks.bin");
    const void *chunks[] = {"abc", "", "defg"};
    size_t sizes[] = {3, 0, 4};
    CHECK(av_write_file_atomic(hp, chunks, sizes, 3) == 0);
    size_t n = 0;
    unsigned char *raw = read_all(hp, &n);
    CHECK(raw && n == 7 && !memcmp(raw, "abcdefg", 7));
    free(raw);
    av_release(a);
    av_release(b);
}

/* ---- corrupt files ------------------------------------------------------ */

#define AUTO_LEN UINT64_MAX /* length field = strlen(header) */

typedef struct {
    const char *what;
    uint64_t len_field;
    const char *header;
    size_t data_len;
    const char *expect;
} corrupt_case;

static const corrupt_case corrupt_cases[] = {
    {"header length huge", UINT64_MAX - 1, "{}", 0, "exceeds the 100000000-byte limit"},
    {"header length > file", 1000, "{}", 16, "header length 1000 is larger than the file"},
    {"truncated data", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}", 20,
     "go beyond the data section (20 bytes)"},
    {"bad JSON", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON"},
    {"trailing garbage", AUTO_LEN, "{}  x", 0, "not valid JSON"},
    {"header not object", AUTO_LEN, "[1,2,3]", 0, "header must be a JSON object, got an array"},
    {"entry not object", AUTO_LEN, "{\"w\":[1]}", 0, "header entry 'w' must be an object"},
    {"unknown dtype", AUTO_LEN, "{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'w' has unknown dtype 'Q7'"},
    {"unsupported dtype", AUTO_LEN, "{\"w\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
     "tensor 'w' has unsupported dtype I16"},
    {"dtype not string", AUTO_LEN, "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "\"dtype\" must be a string, got a number"},
    {"missing dtype", AUTO_LEN, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" must be a string, got missing"},
    {"missing shape", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\" must be an array"},
    {"shape not array", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4,
     "\"shape\" must be an array, got a number"},
    {"missing data_offsets", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "\"data_offsets\" must be"},
    {"negative shape", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,3],\"data_offsets\":[0,4]}}", 4,
     "shape entry 1 is -1"},
    {"fractional shape", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
     "shape entry 2 is 1.5"},
    {"string shape", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     "shape entry 1 must be an integer, got a string"},
    {"too many dims", AUTO_LEN,
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "at most 8"},
    {"huge shape", AUTO_LEN,
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496,16],\"data_offsets\":[0,0]}}", 0,
     "too large"},
    {"offsets out of range", AUTO_LEN, "{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4000,4008]}}", 48,
     "[4000, 4008] go beyond the data section (48 bytes)"},
    {"offsets reversed", AUTO_LEN, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
     "end before they begin"},
    {"offsets one entry", AUTO_LEN, "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}", 8,
     "\"data_offsets\" must be [begin, end]"},
    {"offsets negative", AUTO_LEN, "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 8,
     "\"data_offsets\" must be [begin, end]"},
    {"offsets not numbers", AUTO_LEN, "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":\"0-4\"}}", 8,
     "\"data_offsets\" must be [begin, end]"},
    {"size mismatch", AUTO_LEN, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48,
     "tensor 'w' has shape 3x4 float32 = 48 bytes but data_offsets span 40"},
    {"overlapping offsets", AUTO_LEN,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     24, "tensors 'a' [0, 16) and 'b' [8, 24) have overlapping data_offsets"},
    {"contained offsets", AUTO_LEN,
     "{\"big\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
     "\"mid\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[20,24]},"
     "\"inner\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}",
     32, "overlapping data_offsets"},
    {"duplicate names", AUTO_LEN,
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     2, "tensor 'a' appears twice"},
    {"metadata not object", AUTO_LEN, "{\"__metadata__\":[\"a\"]}", 0,
     "\"__metadata__\" must be an object of strings, got an array"},
    {"metadata value not string", AUTO_LEN, "{\"__metadata__\":{\"epoch\":3}}", 0,
     "value for key 'epoch' must be a string, got a number"},
    {"metadata twice", AUTO_LEN, "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice"},
    {"deep nesting", AUTO_LEN,
     "{\"w\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
     0, "not valid JSON"},
    {"header length 7 bytes short", 3, "{\"a\":1}", 0, "not valid JSON"},
};

TEST(st_corrupt_files) {
    const char *p = st_path("corrupt.safetensors");
    for (size_t i = 0; i < sizeof corrupt_cases / sizeof corrupt_cases[0]; i++) {
        const corrupt_case *c = &corrupt_cases[i];
        uint64_t len = c->len_field == AUTO_LEN ? strlen(c->header) : c->len_field;
        CHECK(write_st(p, len, c->header, c->data_len) == 0);
        av_error_clear();
        av_tensor_file *f = av_safetensors_load(p);
        if (f) {
            test_fail(__FILE__, __LINE__, "case '%s' loaded, expected \"%s\"", c->what, c->expect);
            av_tensor_file_free(f);
        } else if (!strstr(av_last_error(), c->expect) || !strstr(av_last_error(), p)) {
            test_fail(__FILE__, __LINE__, "case '%s' failed with \"%s\", expected \"%s\" and the path", c->what,
                      av_last_error(), c->expect);
        }
    }
}

TEST(st_short_and_missing_files) {
    const char *p = st_path("short.safetensors");
    CHECK(write_bytes(p, "", 0) == 0);
    CHECK_ERR(av_safetensors_load(p), "file is 0 bytes, too short");
    CHECK(write_bytes(p, "\x02\0\0\0\0", 5) == 0);
    CHECK_ERR(av_safetensors_load(p), "file is 5 bytes, too short");
    /* exactly the length prefix, declaring an empty header */
    CHECK(write_bytes(p, "\0\0\0\0\0\0\0\0", 8) == 0);
    CHECK_ERR(av_safetensors_load(p), "not valid JSON");
    CHECK_ERR(av_safetensors_load(st_path("does_not_exist.safetensors")), "No such file or directory");
    CHECK_ERR(av_safetensors_load(st_dir), "directory");
}

TEST(st_lenient_but_valid_files) {
    /* what other writers produce: padding spaces, a hole between tensors,
     * empty tensors at arbitrary offsets, BOOL, entries in any order */
    const char *p = st_path("lenient.safetensors");
    const char *h = "{\"z\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[6,8]},"
                    "\"e\":{\"dtype\":\"F64\",\"shape\":[0,5],\"data_offsets\":[7,7]},"
                    "\"__metadata__\":{\"k\":\"v\"},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}   ";
    CHECK(write_st(p, strlen(h), h, 8) == 0);
    av_tensor_file *f = av_safetensors_load(p);
    CHECK(f && f->count == 3 && f->meta_count == 1);
    if (f && f->count == 3) {
        CHECK(!strcmp(f->names[0], "z") && !strcmp(f->names[1], "e") && !strcmp(f->names[2], "a"));
        CHECK(f->tensors[0]->dtype == AV_U8);
        /* write_st fills data byte i with i*7+1 */
        CHECK_VALUES(f->tensors[0], 0, (6 * 7 + 1) & 255, (7 * 7 + 1) & 255);
        CHECK_SHAPE(f->tensors[1], 0, 5);
        CHECK(f->tensors[2]->ndim == 0);
        CHECK_VALUES(f->tensors[2], 0, 1);
        CHECK(find_name(f, "e") == 1);
        CHECK(!strcmp(f->meta_keys[0], "k") && !strcmp(f->meta_values[0], "v"));
    }
    av_tensor_file_free(f);
}

/* Every single-byte corruption and every truncation of a valid file must
 * either load or fail cleanly; under ASan this is the out-of-bounds check. */
TEST(st_mutations_never_crash) {
    av_tensor *a = test_tensor(AV_F32, 2, T_SHAPE(2, 2), T_VALS(1, 2, 3, 4));
    av_tensor *b = test_tensor(AV_I64, 1, T_SHAPE(3), T_VALS(5, 6, 7));
    const char *names[] = {"alpha", "b"};
    av_tensor *ts[] = {a, b};
    const char *keys[] = {"m"}, *vals[] = {"1"};
    const char *src = st_path("valid.safetensors"), *p = st_path("mutant.safetensors");
    CHECK(av_safetensors_save(src, 2, names, ts, 1, keys, vals) == 0);
    size_t n = 0;
    unsigned char *orig = read_all(src, &n);
    CHECK(orig != NULL);
    if (!orig) return;
    int loaded = 0, failed = 0;
    for (size_t cut = 0; cut < n; cut++) {
        CHECK(write_bytes(p, orig, cut) == 0);
        av_tensor_file *f = av_safetensors_load(p);
        CHECK(f == NULL); /* every prefix is missing data */
        av_tensor_file_free(f);
    }
    static const unsigned char subst[] = {0x00, 0xFF, '{', '}', '"', '9', '-', ' ', ',', '\\', 0x80};
    unsigned char *m = malloc(n);
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(m, orig, n);
            if (m[pos] == subst[k]) continue;
            m[pos] = subst[k];
            CHECK(write_bytes(p, m, n) == 0);
            av_tensor_file *f = av_safetensors_load(p);
            if (f) loaded++;
            else failed++;
            av_tensor_file_free(f);
        }
    }
    CHECK(loaded > 0 && failed > 0); /* data-byte changes load, header ones mostly fail */
    free(m);
    free(orig);
    av_release(a);
    av_release(b);
}
