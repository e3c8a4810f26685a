/* Shared helpers of the Lua binding (the only C that includes lua.h).
 * Lua-facing dims and indices are 1-based; these helpers convert. */
#ifndef AVIARY_LUA_BINDING_H
#define AVIARY_LUA_BINDING_H

#include <lua.h>
#include <lauxlib.h>
#include "aviary/tensor.h"
#include "aviary/ops.h"

#define LAV_TENSOR_MT "aviary.Tensor"

/* userdata layout: a box holding the C tensor (NULL once freed/closed) */
typedef struct { av_tensor *t; } lav_box;

/* argument checks: raise a Lua error naming the function on mismatch */
av_tensor *lav_check_tensor(lua_State *L, int idx);
av_tensor *lav_to_tensor(lua_State *L, int idx); /* NULL if not a tensor */
bool lav_is_tensor(lua_State *L, int idx);
/* pushes t (takes ownership). If t is NULL raises the runtime error message
 * prefixed with the calling Lua function's name. */
int lav_push(lua_State *L, av_tensor *t);
/* raises "<fname>: <av_last_error()>" when rc != 0 */
void lav_check_rc(lua_State *L, int rc);
/* raises an error prefixed with the current function's Lua-visible name */
int lav_error(lua_State *L, const char *fmt, ...);
/* the name of the running C function as the user called it, e.g. "aviary.zeros" or "Tensor:sum" */
const char *lav_fname(lua_State *L);

/* 1-based Lua dim (negative counts from the end) -> 0-based; raises when out of range */
int lav_check_dim(lua_State *L, int arg, int ndim);
/* reads a shape given as varargs of integers from index `first` or one table; returns ndim */
int lav_check_shape(lua_State *L, int first, int64_t *shape);
/* same, allowing -1 entries (view, reshape, expand) */
int lav_check_shape_signed(lua_State *L, int first, int64_t *shape);
/* options table field readers (tbl may be 0 for none) */
av_dtype lav_opt_dtype(lua_State *L, int tbl, av_dtype def);
/* reads a dtype given as a string argument */
av_dtype lav_check_dtype_name(lua_State *L, int idx);

/* each binding file registers its functions: module table at -2? no: funcs go
 * into `mod` (the aviary.core table) and methods into `methods` (Tensor methods). */
void lav_open_tensor(lua_State *L, int mod, int methods);
void lav_open_math(lua_State *L, int mod, int methods);
void lav_open_reduce(lua_State *L, int mod, int methods);
void lav_open_index(lua_State *L, int mod, int methods);
void lav_open_io(lua_State *L, int mod, int methods);

void lav_open_linalg(lua_State *L, int mod, int methods);
void lav_open_autograd(lua_State *L, int mod, int methods);
void lav_open_conv(lua_State *L, int mod, int methods); /* lua/l_conv.c */
void lav_open_nn(lua_State *L, int mod, int methods);   /* lua/l_nn.c */
void lav_open_loss(lua_State *L, int mod, int methods); /* lua/l_loss.c */
/* x.requires_grad, x.grad, x.grad_fn, x.is_leaf: 1 if handled (value pushed) */
int lav_autograd_property(lua_State *L, av_tensor *x, const char *k);
int lav_autograd_setproperty(lua_State *L, av_tensor *x, const char *k, int v);

/* registers regs into the table at absolute index tbl */
void lav_setfuncs(lua_State *L, int tbl, const luaL_Reg *regs);
/* registers regs both as module functions and as Tensor methods */
void lav_setfuncs2(lua_State *L, int mod, int methods, const luaL_Reg *regs);

/* __tostring of a tensor (lua/l_print.c) */
int lav_tostring(lua_State *L);
/* options-table helpers: the table at idx if it is one, else 0 */
int lav_opts(lua_State *L, int idx);
/* the options table at idx, 0 when none/nil; raises on any other value */
int lav_opts_at(lua_State *L, int idx);
/* raises on a key of the options table tbl not in `allowed` (NULL-terminated), listing the valid ones */
void lav_check_keys(lua_State *L, int tbl, const char *const *allowed);
/* raises on a non-nil argument after position `last` */
void lav_no_args_after(lua_State *L, int last);
bool lav_opt_bool(lua_State *L, int tbl, const char *key, bool def);
double lav_opt_number(lua_State *L, int tbl, const char *key, double def);
/* reads an index tensor argument (tensor or Lua table of 1-based integers)
 * and returns a new 0-based i64 tensor */
av_tensor *lav_check_index(lua_State *L, int idx);

#endif
