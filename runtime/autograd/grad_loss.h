/* Private to the loss family (runtime/ops/cpu/{softmax,loss,interp,pad}.c and
 * runtime/autograd/grad_loss*.c): the raw kernels without graph recording and
 * the recording hooks the public functions call. */
#ifndef AVIARY_GRAD_LOSS_H
#define AVIARY_GRAD_LOSS_H

#include "grad.h"
#include "aviary/loss.h"

/* ---- loss.c: linear ------------------------------------------------------------------- */
/* y2 [rows, out] = x2 [rows, in] W^T (+ b) */
av_tensor *av_linear_raw(const av_tensor *x2, const av_tensor *w, const av_tensor *b);
/* gradients wanted where the out-pointer is not NULL */
int av_linear_backward_raw(const av_tensor *g2, const av_tensor *x2, const av_tensor *w, bool want_b,
                           av_tensor **dx2, av_tensor **dw, av_tensor **db);
/* x2: x seen as [rows, in] */
int av_ag_linear(av_tensor *out, const av_tensor *x, const av_tensor *w, const av_tensor *b, const av_tensor *x2);

/* ---- softmax.c ---------------------------------------------------------------- */
/* x float32/float64, any layout; dim already wrapped. New contiguous result. */
av_tensor *av_softmax_raw(const av_tensor *x, int dim, bool log);
/* gradient of softmax (log: of log_softmax) given the output y (contiguous) */
av_tensor *av_softmax_backward_raw(const av_tensor *g, const av_tensor *y, int dim, bool log);
int av_ag_softmax(av_tensor *out, const av_tensor *x, int dim, bool log);

/* ---- loss.c: cross entropy and nll --------------------------------------------- */
/* the validated problem: input contiguous [N, C, S], target contiguous int64 [N, S] */
typedef struct {
    const av_tensor *input;  /* contiguous */
    const av_tensor *target; /* contiguous int64 */
    const av_tensor *weight; /* contiguous, input's dtype, or NULL */
    int64_t N, C, S;
    int64_t ignore_index, base;
    av_reduction reduction;
    double label_smoothing;
    bool fused;              /* cross entropy (log_softmax inside) vs nll_loss */
    int out_ndim;            /* shape of the reduction='none' result */
    int64_t out_shape[AV_MAX_DIMS];
} av_nll_problem;

/* forward: the loss (reduced or not), the log-sum-exp per position (fused
 * only, [N*S] in the input's dtype) and the total weight of the mean */
int av_nll_forward_raw(const av_nll_problem *p, av_tensor **out, av_tensor **lse, double *total_weight);
/* gradient wrt the input; g is the output gradient (0-d unless reduction none) */
av_tensor *av_nll_backward_raw(const av_nll_problem *p, const av_tensor *g, const av_tensor *lse, double total_weight);
int av_ag_nll(av_tensor *out, const av_nll_problem *p, const av_tensor *input_orig, const av_tensor *lse,
              double total_weight);

/* binary cross entropy with logits, elementwise, unreduced: every operand
 * already expanded to x's shape (pw may be NULL) */
av_tensor *av_bce_logits_raw(const av_tensor *x, const av_tensor *t, const av_tensor *pw);
int av_ag_bce_logits(av_tensor *out, const av_tensor *x, const av_tensor *t, const av_tensor *pw);

/* ---- interp.c --------------------------------------------------------------------- */
typedef struct {
    int nsp;                 /* spatial dims: 1 or 2 */
    bool linear;             /* bilinear / linear, else nearest */
    bool align_corners;
    int64_t in[2], out[2];   /* spatial sizes (H, W) or (W) */
    double scale[2];         /* user scale factors, 0 when not given */
} av_interp_params;
av_tensor *av_interp_raw(const av_tensor *x, const av_interp_params *p);
av_tensor *av_interp_backward_raw(const av_tensor *g, const av_interp_params *p, int ndim, const int64_t *in_shape);
int av_ag_interp(av_tensor *out, const av_tensor *x, const av_interp_params *p);

/* ---- pad.c ------------------------------------------------------------------------------- */
typedef enum { AV_PAD_CONSTANT = 0, AV_PAD_REFLECT, AV_PAD_REPLICATE, AV_PAD_CIRCULAR } av_pad_mode;
typedef struct {
    av_pad_mode mode;
    int npd;                        /* padded trailing dims */
    int64_t before[AV_MAX_DIMS];    /* per padded dim, outermost first */
    int64_t after[AV_MAX_DIMS];
    double value;
} av_pad_params;
av_tensor *av_pad_raw(const av_tensor *x, const av_pad_params *p);
av_tensor *av_pad_backward_raw(const av_tensor *g, const av_pad_params *p, int ndim, const int64_t *in_shape);
int av_ag_pad(av_tensor *out, const av_tensor *x, const av_pad_params *p);

#endif
