/* Tensor files: safetensors (https://github.com/huggingface/safetensors format):
 * 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value"}}, then the raw little-endian data.
 * Files are written to "<path>.tmp.<pid>" and renamed into place. */
#ifndef AVIARY_IO_H
#include <stdio.h>
#define AVIARY_IO_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct av_tensor_file {
    int count;
    char **names;          /* count names, in file order */
    av_tensor **tensors;   /* count tensors (contiguous, CPU) */
    int meta_count;
    char **meta_keys;      /* __metadata__ entries (string -> string) */
    char **meta_values;
} av_tensor_file;

/* tensors may be non-contiguous (written contiguous); meta may be NULL/0 */
int av_safetensors_save(const char *path, int count, const char *const *names,
                        av_tensor *const *tensors, int meta_count,
                        const char *const *meta_keys, const char *const *meta_values);
/* returns NULL on error (missing file, bad header length, bad JSON, unknown
 * dtype, offsets out of bounds / overlapping / not matching shape) */
av_tensor_file *av_safetensors_load(const char *path);
void av_tensor_file_free(av_tensor_file *f);

/* opens a regular file for reading; NULL (with the error set: "cannot <verb> '<path>': ...") when the
 * path is empty, missing, a directory or not a regular file; *size gets its length in bytes */
FILE *av_open_regular_file(const char *path, const char *verb, uint64_t *size);

/* atomic write helper shared by every writer: writes to a temp name, fsyncs, renames */
int av_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes, int nchunks);

#ifdef __cplusplus
}
#endif
#endif
