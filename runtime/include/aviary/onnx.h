/* ONNX model files (https://onnx.ai, onnx.proto as installed by Debian's
 * libonnx-dev), parsed and written with protobuf-c. The message structs
 * (Onnx__ModelProto, ...) come from onnx.pb-c.h, which the build generates
 * under $(BUILD)/gen with protoc-c.
 *
 * The runtime reads and writes whole files and converts tensors (validating
 * sizes, dims, data types and external data); the Lua binding walks the
 * messages to build Lua tables (lua/l_onnx.c). Error messages name the file
 * (or the name given to av_onnx_decode) and the item. */
#ifndef AVIARY_ONNX_H
#define AVIARY_ONNX_H

#include "aviary/tensor.h"
#include "onnx.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- reading ------------------------------------------------------------ */
/* unpacks and checks a serialized ModelProto (it must have a graph); `name`
 * names the source in messages. Free the result with av_onnx_model_free. */
Onnx__ModelProto *av_onnx_decode(const void *data, size_t len, const char *name);
/* reads the whole file and decodes it */
Onnx__ModelProto *av_onnx_read(const char *path);
void av_onnx_model_free(Onnx__ModelProto *m); /* NULL-safe */

/* A TensorProto as a new contiguous CPU tensor. FLOAT, FLOAT16 and BFLOAT16
 * become float32; DOUBLE float64; INT64 and UINT32 int64; INT32, INT16,
 * UINT16 and INT8 int32; UINT8 and BOOL uint8; dims {} give a 0-d tensor.
 * Data comes from raw_data (little-endian), the typed fields, or external data
 * (location resolved against base_dir; NULL refuses external data). `file` and
 * `what` ("initializer 'w'") name the tensor in messages. */
av_tensor *av_onnx_tensor_to_av(const Onnx__TensorProto *tp, const char *file, const char *base_dir,
                                const char *what);
/* "FLOAT", "INT64", ... for a TensorProto data type; NULL when unknown */
const char *av_onnx_elem_name(int code);

/* ---- writing ------------------------------------------------------------ */
/* An arena owns everything a message built for writing points to, so one
 * free releases it all, including tensors kept alive for their data. */
typedef struct av_onnx_arena av_onnx_arena;
av_onnx_arena *av_onnx_arena_new(void);
void av_onnx_arena_free(av_onnx_arena *a); /* NULL-safe */
/* zeroed memory; NULL with av_fail on OOM */
void *av_onnx_arena_alloc(av_onnx_arena *a, size_t n);
/* a NUL-terminated copy of len bytes */
char *av_onnx_arena_strndup(av_onnx_arena *a, const char *s, size_t len);

/* fills tp's dims, data_type and raw_data from t (any layout, CPU). elem_type
 * 0 stores t's own type (float32 FLOAT, float64 DOUBLE, int64 INT64, int32
 * INT32, uint8 UINT8, float16 FLOAT16, bfloat16 BFLOAT16); otherwise the values
 * are converted to that ONNX type (also BOOL, INT8, INT16, UINT16, UINT32,
 * failing on values out of its range). `what` names the tensor in messages. */
int av_onnx_tensor_from_av(Onnx__TensorProto *tp, const av_tensor *t, int elem_type, av_onnx_arena *a,
                           const char *what);

/* serialized size of m; fails (returns -1) above protobuf's 2 GiB limit */
int av_onnx_packed_size(const Onnx__ModelProto *m, size_t *size);
/* serializes m into out (av_onnx_packed_size bytes) */
void av_onnx_pack(const Onnx__ModelProto *m, void *out);
/* serializes m and writes it with av_write_file_atomic */
int av_onnx_write(const char *path, const Onnx__ModelProto *m);

#ifdef __cplusplus
}
#endif
#endif
