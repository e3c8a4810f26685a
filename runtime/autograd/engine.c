/* The autograd engine: graph nodes, tensor metadata, backward and grad(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aviary/cuda.h"
#include "aviary/autograd.h"
#include "aviary/ops.h"

static _Thread_local bool grad_disabled;
static _Thread_local uint64_t node_seq;
static int hook_ids;

bool av_grad_enabled(void) { return !grad_disabled; }
void av_set_grad_enabled(bool on) { grad_disabled = !on; }

/* ---- metadata ------------------------------------------------------------- */
extern void (*av_autograd_meta_free)(struct av_autograd_meta *);

static void free_hooks(av_hook *h) {
    while (h) {
        av_hook *next = h->next;
        if (h->free_ctx) h->free_ctx(h->ctx);
        free(h);
        h = next;
    }
}

static void meta_free(av_autograd_meta *m) {
    if (m->grad_fn) {
        if (m->output_nr < m->grad_fn->n_outputs && m->grad_fn->out_meta[m->output_nr] == m)
            m->grad_fn->out_meta[m->output_nr] = NULL;
        av_node_release(m->grad_fn);
    }
    if (m->accumulate) {
        m->accumulate->leaf = NULL;
        av_node_release(m->accumulate);
    }
    av_release(m->grad);
    free_hooks(m->hooks);
    free(m);
}

static av_autograd_meta *meta_of(av_tensor *t) {
    if (!t->ag) {
        t->ag = calloc(1, sizeof *t->ag);
        av_autograd_meta_free = meta_free;
    }
    return t->ag;
}

bool av_requires_grad(const av_tensor *t) { return t->ag && (t->ag->requires_grad || t->ag->grad_fn); }
bool av_is_leaf(const av_tensor *t) { return !t->ag || !t->ag->grad_fn; }
const char *av_grad_fn_name(const av_tensor *t) { return t->ag && t->ag->grad_fn ? t->ag->grad_fn->name : NULL; }

int av_requires_grad_(av_tensor *t, bool on) {
    if (!av_is_leaf(t)) {
        if (on) return 0;
        return av_fail("requires_grad_: you can only change requires_grad of leaf tensors; use detach() to "
                       "get a tensor that does not require grad");
    }
    if (on && !av_dtype_is_float(t->dtype))
        return av_fail("requires_grad_: only floating point tensors can require gradients, got %s",
                       av_dtype_name(t->dtype));
    if (!on && !t->ag) return 0;
    av_autograd_meta *m = meta_of(t);
    if (!m) return av_fail("out of memory");
    m->requires_grad = on;
    return 0;
}

av_tensor *av_get_grad(const av_tensor *t) { return t->ag ? t->ag->grad : NULL; }

int av_set_grad(av_tensor *t, av_tensor *g) {
    if (g) {
        char b1[96], b2[96];
        if (g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * t->ndim))
            return av_fail("grad: assigned grad has size %s, but the tensor has size %s", av_shape_str(g, b1, sizeof b1),
                           av_shape_str(t, b2, sizeof b2));
        if (g->dtype != t->dtype)
            return av_fail("grad: assigned grad has dtype %s, but the tensor is %s", av_dtype_name(g->dtype),
                           av_dtype_name(t->dtype));
    }
    if (!g && !t->ag) return 0;
    av_autograd_meta *m = meta_of(t);
    if (!m) return av_fail("out of memory");
    av_release(m->grad);
    m->grad = g ? av_retain(g) : NULL;
    return 0;
}

av_tensor *av_detach(const av_tensor *t) {
    av_tensor *d = av_as_strided(t, t->ndim, t->shape, t->stride, t->offset);
    return d;
}

int av_retain_grad(av_tensor *t) {
    if (!av_requires_grad(t)) return av_fail("retain_grad: the tensor does not require grad");
    if (av_is_leaf(t)) return 0; /* leaves keep .grad anyway */
    meta_of(t)->retain_grad = true;
    return 0;
}

int av_register_hook(av_tensor *t, av_hook_fn fn, void *ctx, void (*free_ctx)(void *)) {
    if (!av_requires_grad(t))
        return av_fail("register_hook: cannot register a hook on a tensor that doesn't require gradient");
    av_hook *h = calloc(1, sizeof *h);
    if (!h) return av_fail("out of memory");
    h->fn = fn;
    h->ctx = ctx;
    h->free_ctx = free_ctx;
    h->id = __atomic_add_fetch(&hook_ids, 1, __ATOMIC_RELAXED);
    /* append: hooks run in registration order */
    av_hook **p = &meta_of(t)->hooks;
    while (*p) p = &(*p)->next;
    *p = h;
    return h->id;
}

int av_remove_hook(av_tensor *t, int id) {
    for (av_hook **p = t->ag ? &t->ag->hooks : NULL; p && *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            av_hook *h = *p;
            *p = h->next;
            h->next = NULL;
            free_hooks(h);
            return 0;
        }
    }
    return av_fail("remove_hook: no hook with id %d on this tensor", id);
}

/* ---- nodes ---------------------------------------------------------------- */
static av_node *accumulate_node(av_tensor *leaf) {
    av_autograd_meta *m = meta_of(leaf);
    if (!m->accumulate) {
        av_node *n = calloc(1, sizeof *n);
        if (!n) return NULL;
        n->name = "AccumulateGrad";
        n->refcount = 1;
        n->n_outputs = 1;
        n->out_meta = calloc(1, sizeof *n->out_meta);
        n->leaf = m;
        n->seq = node_seq++;
        m->accumulate = n;
    }
    return m->accumulate;
}

bool av_should_record(int n, const av_tensor *const *ts) {
    if (grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (ts[i] && av_requires_grad(ts[i])) return true;
    return false;
}

av_node *av_node_new(const char *name, av_backward_fn fn, int n_inputs, const av_tensor *const *inputs,
                     int n_outputs) {
    av_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->name = name;
    n->backward = fn;
    n->refcount = 1;
    n->n_next = n_inputs;
    n->next = calloc(n_inputs ? n_inputs : 1, sizeof *n->next);
    n->n_outputs = n_outputs;
    n->out_meta = calloc(n_outputs, sizeof *n->out_meta);
    n->seq = node_seq++;
    for (int i = 0; i < n_inputs; i++) {
        av_tensor *t = (av_tensor *)inputs[i];
        if (!t || !av_requires_grad(t)) continue;
        av_edge e = t->ag->grad_fn ? (av_edge){t->ag->grad_fn, t->ag->output_nr} : (av_edge){accumulate_node(t), 0};
        if (e.node) __atomic_add_fetch(&e.node->refcount, 1, __ATOMIC_RELAXED);
        n->next[i] = e;
    }
    return n;
}

void av_node_save(av_node *n, const av_tensor *t) {
    av_tensor **s = realloc(n->saved, sizeof *s * (n->n_saved + 1));
    uint32_t *v = realloc(n->saved_version, sizeof *v * (n->n_saved + 1));
    if (s) n->saved = s;
    if (v) n->saved_version = v;
    if (!s || !v) return;
    n->saved[n->n_saved] = t ? av_retain((av_tensor *)t) : NULL;
    n->saved_version[n->n_saved] = t ? t->storage->version : 0;
    n->n_saved++;
}

void av_node_save_detached(av_node *n, const av_tensor *t) {
    av_tensor *d = t ? av_detach(t) : NULL;
    av_node_save(n, d);
    av_release(d);
}

const av_tensor *av_node_saved(av_node *n, int i) {
    if (i >= n->n_saved) { av_fail("%s: internal error: saved tensor %d missing", n->name, i); return NULL; }
    const av_tensor *t = n->saved[i];
    if (t && t->storage->version != n->saved_version[i]) {
        av_fail("%s: a tensor needed for gradient computation has been modified by an in-place operation "
                "(version %u, expected %u); clone it before modifying it", n->name, t->storage->version,
                n->saved_version[i]);
        return NULL;
    }
    return t;
}

int av_node_attach(av_node *n, av_tensor *out, int k) {
    av_autograd_meta *m = meta_of(out);
    if (!m) return av_fail("out of memory");
    if (m->grad_fn) av_node_release(m->grad_fn);
    __atomic_add_fetch(&n->refcount, 1, __ATOMIC_RELAXED);
    m->grad_fn = n;
    m->output_nr = k;
    n->out_meta[k] = m;
    return 0;
}

int av_node_finish(av_node *n, av_tensor *out) {
    if (!n) return av_fail("out of memory");
    int rc = av_node_attach(n, out, 0);
    av_node_release(n);
    return rc;
}

static void release_saved(av_node *n) {
    for (int i = 0; i < n->n_saved; i++) av_release(n->saved[i]);
    free(n->saved);
    free(n->saved_version);
    n->saved = NULL;
    n->saved_version = NULL;
    n->n_saved = 0;
}

void av_node_release(av_node *n) {
    /* iterative: releasing a long chain must not recurse once per node */
    av_node **stack = NULL;
    int sp = 0, cap = 0;
    while (n) {
        if (__atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
            for (int i = 0; i < n->n_next; i++) {
                if (!n->next[i].node) continue;
                if (sp == cap) {
                    cap = cap ? cap * 2 : 16;
                    av_node **ns = realloc(stack, sizeof *stack * cap);
                    if (!ns) break;
                    stack = ns;
                }
                stack[sp++] = n->next[i].node;
            }
            release_saved(n);
            free(n->next);
            free(n->out_meta);
            free(n->gbuf);
            free(n->extra);
            free(n);
        }
        n = sp ? stack[--sp] : NULL;
    }
    free(stack);
}

void av_bump_version(av_tensor *t) { t->storage->version++; }

int av_check_inplace(const av_tensor *t, const char *fn) {
    if (grad_disabled || !t->ag) return 0;
    if (t->ag->requires_grad && !t->ag->grad_fn)
        return av_fail("%s: a leaf tensor that requires grad is being used in an in-place operation; "
                       "wrap the update in av.no_grad()", fn);
    if (t->ag->grad_fn)
        return av_fail("%s: in-place operations on tensors that are part of a graph are not supported; "
                       "use the out-of-place form", fn);
    return 0;
}

/* ---- helpers for backward functions ------------------------------------------ */
av_tensor *av_sum_to(const av_tensor *g, int ndim, const int64_t *shape) {
    if (g->ndim == ndim && !memcmp(g->shape, shape, sizeof(int64_t) * ndim)) return av_retain((av_tensor *)g);
    int dims[AV_MAX_DIMS], nd = 0, lead = g->ndim - ndim;
    for (int i = 0; i < g->ndim; i++) {
        int j = i - lead;
        if (j < 0 || (shape[j] == 1 && g->shape[i] != 1)) dims[nd++] = i;
    }
    av_tensor *s = nd ? av_reduce(AV_RED_SUM, g, nd, dims, true) : av_retain((av_tensor *)g);
    if (!s) return NULL;
    av_tensor *r = av_reshape(s, ndim, shape);
    av_release(s);
    return r;
}

/* ---- the engine ------------------------------------------------------------------ */
typedef struct {
    av_node **v;
    int n, cap;
} node_list;

static int push(node_list *l, av_node *n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        av_node **v = realloc(l->v, sizeof *v * cap);
        if (!v) return av_fail("out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return 0;
}

/* gradient buffer slot += g (takes ownership of g) */
static int accumulate(av_tensor **slot, av_tensor *g) {
    if (!*slot) { *slot = g; return 0; }
    av_tensor *s = av_binary(AV_OP_ADD, *slot, g);
    av_release(g);
    if (!s) return -1;
    av_release(*slot);
    *slot = s;
    return 0;
}

/* runs the tensor's hooks on *g (may replace it) */
static int run_hooks(av_hook *h, av_tensor **g) {
    for (; h; h = h->next) {
        av_tensor *rep = NULL;
        if (h->fn(h->ctx, *g, &rep)) return -1;
        if (rep) {
            char b1[96], b2[96];
            if (rep->ndim != (*g)->ndim || memcmp(rep->shape, (*g)->shape, sizeof(int64_t) * rep->ndim)) {
                av_fail("hook: the replacement gradient has size %s, expected %s", av_shape_str(rep, b1, sizeof b1),
                        av_shape_str(*g, b2, sizeof b2));
                av_release(rep);
                return -1;
            }
            av_release(*g);
            *g = rep;
        }
    }
    return 0;
}

/* stores g as a tensor's .grad: accumulates in place, or keeps a private copy */
static int store_grad(av_autograd_meta *m, const av_tensor *g) {
    if (m->grad) {
        if (m->grad->dtype == g->dtype && !memcmp(m->grad->shape, g->shape, sizeof(int64_t) * g->ndim))
            return av_binary_(AV_OP_ADD, m->grad, g);
        av_tensor *s = av_binary(AV_OP_ADD, m->grad, g);
        if (!s) return -1;
        av_release(m->grad);
        m->grad = s;
        return 0;
    }
    m->grad = av_clone(g);
    return m->grad ? 0 : -1;
}

typedef struct {
    int n;
    av_node **node;   /* where the gradient of input i arrives */
    int *slot;
    av_tensor **result;
} capture_set;

static int run_engine(int n_roots, av_node **roots, int *root_slot, av_tensor **root_grads, bool retain,
                      capture_set *cap) {
    node_list all = {0}, ready = {0};
    int rc = 0;
    /* discover the graph and count each node's pending inputs */
    node_list stack = {0};
    for (int i = 0; i < n_roots; i++)
        if (!roots[i]->mark) {
            roots[i]->mark = 1;
            if (push(&stack, roots[i]) || push(&all, roots[i])) { rc = -1; goto done; }
        }
    while (stack.n) {
        av_node *n = stack.v[--stack.n];
        for (int i = 0; i < n->n_next; i++) {
            av_node *m = n->next[i].node;
            if (!m) continue;
            m->deps++;
            if (!m->mark) {
                m->mark = 1;
                if (push(&stack, m) || push(&all, m)) { rc = -1; goto done; }
            }
        }
    }
    for (int i = 0; i < all.n; i++) {
        av_node *n = all.v[i];
        n->gbuf = calloc(n->n_outputs, sizeof *n->gbuf);
        if (!n->gbuf) { rc = av_fail("out of memory"); goto done; }
    }
    for (int i = 0; i < n_roots; i++) {
        if (accumulate(&roots[i]->gbuf[root_slot[i]], av_retain(root_grads[i]))) { rc = -1; goto done; }
    }
    for (int i = 0; i < all.n; i++)
        if (all.v[i]->deps == 0 && push(&ready, all.v[i])) { rc = -1; goto done; }

    while (ready.n) {
        /* newest node first: keeps memory low on long chains, like PyTorch */
        int best = 0;
        for (int i = 1; i < ready.n; i++)
            if (ready.v[i]->seq > ready.v[best]->seq) best = i;
        av_node *n = ready.v[best];
        ready.v[best] = ready.v[--ready.n];

        bool any = false;
        for (int k = 0; k < n->n_outputs; k++) {
            av_autograd_meta *m = n->leaf ? n->leaf : n->out_meta[k];
            if (n->gbuf[k] && m) {
                if (run_hooks(m->hooks, &n->gbuf[k])) { rc = -1; goto done; }
                if (!cap && !n->leaf && m->retain_grad && store_grad(m, n->gbuf[k])) { rc = -1; goto done; }
            }
            if (cap)
                for (int c = 0; c < cap->n; c++)
                    if (cap->node[c] == n && cap->slot[c] == k && n->gbuf[k]) {
                        av_tensor *g = av_retain(n->gbuf[k]);
                        if (accumulate(&cap->result[c], g)) { rc = -1; goto done; }
                    }
            any = any || n->gbuf[k];
        }
        if (n->leaf || !n->backward) {
            if (!cap && n->leaf && n->gbuf[0] && store_grad(n->leaf, n->gbuf[0])) { rc = -1; goto done; }
        } else if (any) {
            if (n->released) {
                rc = av_fail("backward: trying to backward through the graph a second time (%s's saved tensors were "
                             "freed); pass retain_graph=true to the first backward", n->name);
                goto done;
            }
            av_tensor **gin = calloc(n->n_next ? n->n_next : 1, sizeof *gin);
            if (!gin) { rc = av_fail("out of memory"); goto done; }
            if (n->backward(n, n->gbuf, gin)) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", av_last_error());
                for (int i = 0; i < n->n_next; i++) av_release(gin[i]);
                free(gin);
                rc = strncmp(msg, n->name, strlen(n->name)) ? av_fail("%s: %s", n->name, msg) : av_fail("%s", msg);
                goto done;
            }
            for (int i = 0; i < n->n_next; i++) {
                av_edge e = n->next[i];
                if (gin[i] && e.node) {
                    if (accumulate(&e.node->gbuf[e.input_nr], gin[i])) {
                        for (int j = i + 1; j < n->n_next; j++) av_release(gin[j]);
                        free(gin);
                        rc = -1;
                        goto done;
                    }
                } else av_release(gin[i]);
            }
            free(gin);
            if (!retain) {
                release_saved(n);
                n->released = true;
            }
        }
        for (int k = 0; k < n->n_outputs; k++) { av_release(n->gbuf[k]); n->gbuf[k] = NULL; }
        for (int i = 0; i < n->n_next; i++) {
            av_node *m = n->next[i].node;
            if (m && --m->deps == 0 && push(&ready, m)) { rc = -1; goto done; }
        }
    }
done:
    for (int i = 0; i < all.n; i++) {
        av_node *n = all.v[i];
        if (n->gbuf)
            for (int k = 0; k < n->n_outputs; k++) av_release(n->gbuf[k]);
        free(n->gbuf);
        n->gbuf = NULL;
        n->mark = 0;
        n->deps = 0;
    }
    free(all.v);
    free(ready.v);
    free(stack.v);
    return rc;
}

/* where a tensor's gradient arrives: its grad_fn's output, or its AccumulateGrad */
static int grad_target(av_tensor *t, av_node **node, int *slot) {
    if (!av_requires_grad(t)) return av_fail("element 0 of tensors does not require grad and does not have a grad_fn");
    if (t->ag->grad_fn) { *node = t->ag->grad_fn; *slot = t->ag->output_nr; }
    else { *node = accumulate_node(t); *slot = 0; }
    return *node ? 0 : av_fail("out of memory");
}

static av_tensor *root_grad(av_tensor *root, const av_tensor *grad, const char *fn) {
    char b1[96], b2[96];
    if (!grad) {
        if (av_numel(root) != 1) {
            av_fail("%s: grad can be implicitly created only for one-element outputs; pass a gradient of size %s", fn,
                    av_shape_str(root, b1, sizeof b1));
            return NULL;
        }
        return av_full_on(root->ndim, root->shape, root->dtype, 1, av_device_of(root));
    }
    if (grad->ndim != root->ndim || memcmp(grad->shape, root->shape, sizeof(int64_t) * root->ndim)) {
        av_fail("%s: gradient has size %s but the output has size %s", fn, av_shape_str(grad, b1, sizeof b1),
                av_shape_str(root, b2, sizeof b2));
        return NULL;
    }
    if (av_check_same_device("backward", root, "output", grad, "gradient")) return NULL;
    return av_to_dtype(grad, root->dtype);
}

int av_backward(av_tensor *root, const av_tensor *grad, bool retain_graph) {
    av_node *node;
    int slot;
    if (grad_target(root, &node, &slot)) return -1;
    av_tensor *g = root_grad(root, grad, "backward");
    if (!g) return -1;
    bool was = grad_disabled;
    grad_disabled = true;
    __atomic_add_fetch(&node->refcount, 1, __ATOMIC_RELAXED); /* hooks may free the root */
    int rc = run_engine(1, &node, &slot, &g, retain_graph, NULL);
    av_node_release(node);
    grad_disabled = was;
    av_release(g);
    return rc;
}

int av_autograd_grad(int n_out, av_tensor *const *outputs, av_tensor *const *grad_outputs, int n_in,
                     av_tensor *const *inputs, bool retain_graph, bool allow_unused, av_tensor **results) {
    int rc = -1;
    av_node **roots = calloc(n_out + 1, sizeof *roots);
    int *slots = calloc(n_out + 1, sizeof *slots);
    av_tensor **grads = calloc(n_out + 1, sizeof *grads);
    capture_set cap = {n_in, calloc(n_in + 1, sizeof(av_node *)), calloc(n_in + 1, sizeof(int)), results};
    for (int i = 0; i < n_in; i++) results[i] = NULL;
    if (!roots || !slots || !grads || !cap.node || !cap.slot) { av_fail("out of memory"); goto out; }
    for (int i = 0; i < n_out; i++) {
        if (grad_target(outputs[i], &roots[i], &slots[i])) goto out;
        if (!(grads[i] = root_grad(outputs[i], grad_outputs ? grad_outputs[i] : NULL, "grad"))) goto out;
    }
    for (int i = 0; i < n_in; i++)
        if (grad_target(inputs[i], &cap.node[i], &cap.slot[i])) {
            av_fail("grad: input %d does not require grad", i + 1);
            goto out;
        }
    bool was = grad_disabled;
    grad_disabled = true;
    rc = run_engine(n_out, roots, slots, grads, retain_graph, &cap);
    grad_disabled = was;
    if (rc == 0 && !allow_unused)
        for (int i = 0; i < n_in; i++)
            if (!results[i]) {
                rc = av_fail("grad: input %d was not used in the graph of the outputs; pass allow_unused=true", i + 1);
                break;
            }
    if (rc)
        for (int i = 0; i < n_in; i++) { av_release(results[i]); results[i] = NULL; }
out:
    for (int i = 0; i < n_out; i++) av_release(grads[i]);
    free(roots);
    free(slots);
    free(grads);
    free(cap.node);
    free(cap.slot);
    return rc;
}
