/* Shared by the two halves of av._onnx: lua/l_onnx_read.c (messages -> tables) and lua/l_onnx.c
 * (tables -> messages, and the module's registration). */
#ifndef LAV_ONNX_H
#define LAV_ONNX_H
#include "binding.h"

#define LAV_ONNX_MODEL_MT "aviary.onnx.model_guard"
#define MAX_GRAPH_DEPTH 64

/* AttributeProto.AttributeType names, indexed by the enum's value */
extern const char *const lav_onnx_attr_type_names[];
#define N_ATTR_TYPES 15
#define attr_type_names lav_onnx_attr_type_names

/* registers read and decode into the table at index t (and the metatable guarding a half-read model) */
void lav_onnx_open_read(lua_State *L, int t);
#endif
