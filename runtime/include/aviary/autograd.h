/* Reverse-mode automatic differentiation (ARCHITECTURE.md decision 3).
 *
 * A differentiable op that sees an input requiring grad (and grad mode on)
 * records a node: its backward function, the tensors it saved, and one edge
 * per input pointing at the node that produced that input (or at the input's
 * AccumulateGrad node when it is a leaf). av_backward() runs the nodes in
 * reverse topological order and accumulates into the leaves' .grad. */
#ifndef AVIARY_AUTOGRAD_H
#define AVIARY_AUTOGRAD_H

#include "aviary/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct av_node av_node;

typedef struct av_edge {
    av_node *node; /* NULL: this input needs no gradient */
    int input_nr;  /* which output of `node` the gradient belongs to */
} av_edge;

/* a hook sees the gradient of a tensor; it may set *replacement (new ref) */
typedef int (*av_hook_fn)(void *ctx, const av_tensor *grad, av_tensor **replacement);

typedef struct av_hook {
    av_hook_fn fn;
    void (*free_ctx)(void *ctx);
    void *ctx;
    int id;
    struct av_hook *next;
} av_hook;

typedef struct av_autograd_meta {
    bool requires_grad;     /* leaves: set by the user */
    bool retain_grad;       /* non-leaves: keep .grad */
    av_tensor *grad;        /* accumulated gradient (owned) */
    av_node *grad_fn;       /* producer (owned ref); NULL for leaves */
    int output_nr;
    av_node *accumulate;    /* leaves: AccumulateGrad node (owned ref), made lazily */
    av_hook *hooks;
} av_autograd_meta;

/* gradient computation: grad_out has n_outputs entries (NULL = zero),
 * grad_in has n_next entries to fill (NULL = no gradient). Runs with grad
 * mode off. Returns 0 or -1 with av_fail(). */
typedef int (*av_backward_fn)(av_node *n, av_tensor *const *grad_out, av_tensor **grad_in);

struct av_node {
    const char *name;            /* "MulBackward" */
    av_backward_fn backward;
    int refcount;
    int n_next;
    av_edge *next;               /* one per differentiable input */
    int n_saved;
    av_tensor **saved;
    uint32_t *saved_version;     /* storage versions when saved */
    int n_outputs;
    av_autograd_meta **out_meta; /* weak: metas of the outputs while they live */
    /* op parameters */
    int64_t iarg[8];
    double darg[4];
    int ndim;                    /* an input's shape, for ops that need it */
    int64_t shape[AV_MAX_DIMS];
    av_dtype dtype;
    void *extra;                 /* op-specific heap data, freed with free() */
    bool released;               /* saved tensors freed after backward */
    uint64_t seq;
    av_autograd_meta *leaf;      /* AccumulateGrad: the leaf (weak) */
    /* engine scratch */
    int mark;
    int deps;
    av_tensor **gbuf;
};

/* ---- grad mode ------------------------------------------------------- */
bool av_grad_enabled(void);
void av_set_grad_enabled(bool on); /* thread-local */

/* ---- ReLU gradient mode (attribution methods: aviary.interpret) ---------- */
/* 0 normal; 1 guided backpropagation: grad * (out > 0) * (grad > 0);
 * 2 deconvolution: max(grad, 0). Process-wide; returns the previous mode,
 * or -1 (with av_last_error) for a mode outside 0..2. */
int av_set_relu_grad_mode(int mode);
int av_get_relu_grad_mode(void);

/* ---- tensor-level API -------------------------------------------------- */
bool av_requires_grad(const av_tensor *t);
bool av_is_leaf(const av_tensor *t);
int av_requires_grad_(av_tensor *t, bool on);
av_tensor *av_get_grad(const av_tensor *t);         /* borrowed, NULL if none */
int av_set_grad(av_tensor *t, av_tensor *grad);     /* NULL clears */
av_tensor *av_detach(const av_tensor *t);           /* same storage, no history */
int av_retain_grad(av_tensor *t);
const char *av_grad_fn_name(const av_tensor *t);    /* NULL for leaves */
/* returns a hook id > 0, or -1 */
int av_register_hook(av_tensor *t, av_hook_fn fn, void *ctx, void (*free_ctx)(void *));
int av_remove_hook(av_tensor *t, int id);

/* loss.backward(grad): grad may be NULL when root has one element */
int av_backward(av_tensor *root, const av_tensor *grad, bool retain_graph);
/* torch.autograd.grad: results[i] = d(sum outputs*grad_outputs)/d inputs[i]
 * (new refs; NULL when unused and allow_unused). .grad fields are untouched. */
int av_autograd_grad(int n_out, av_tensor *const *outputs, av_tensor *const *grad_outputs, int n_in,
                     av_tensor *const *inputs, bool retain_graph, bool allow_unused, av_tensor **results);

/* ---- for op implementations ------------------------------------------- */
/* true when grad mode is on and any of the n tensors requires grad */
bool av_should_record(int n, const av_tensor *const *ts);
/* new node with one edge per input (edges of inputs not requiring grad are NULL) */
av_node *av_node_new(const char *name, av_backward_fn fn, int n_inputs, const av_tensor *const *inputs,
                     int n_outputs);
void av_node_save(av_node *n, const av_tensor *t); /* retains t; NULL saves nothing */
/* saves a detached alias of t (no history): the usual way to keep an input or output */
void av_node_save_detached(av_node *n, const av_tensor *t);
/* makes node the grad_fn of out (output number k); takes no reference from caller */
int av_node_attach(av_node *n, av_tensor *out, int k);
void av_node_release(av_node *n);
/* attaches n as out's grad_fn (output 0) and drops the creator's reference;
 * a NULL node (allocation failed) is reported as out of memory */
int av_node_finish(av_node *n, av_tensor *out);
/* a saved tensor for use in backward; fails if it was modified in place */
const av_tensor *av_node_saved(av_node *n, int i);
/* marks an in-place write to t's storage */
void av_bump_version(av_tensor *t);
/* errors when t may not be written in place while grad is being tracked */
int av_check_inplace(const av_tensor *t, const char *fn);

/* sums g down to shape (undoing broadcasting); new ref */
av_tensor *av_sum_to(const av_tensor *g, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
