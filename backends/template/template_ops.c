/* The template backend's op table: one entry per HAL op (ops.h), each UNIMPLEMENTED for now.
 *
 * Porting an op (docs/porting.md has the order and the numerics):
 *   1. write its kernel in the function below (the operands are validated: dtypes, shapes and views
 *      are what ops.h says, all on this device);
 *   2. make dsrt_template_supports_op accept exactly the dtypes, shapes and parameters the kernel
 *      handles (decide from the op value, never from data), and say why it refuses the rest;
 *   3. run `dsrt conform --backend template --ops NAME` until the op passes.
 * An op left unsupported is skipped by the suite with the reason given here, and placed on another
 * device by the core. */
#include <stdio.h>

#include "template_backend.h"

#define DSRT_TEMPLATE_UNIMPLEMENTED(op)                                                                               \
    dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend: op %s is not implemented yet — see docs/porting.md",      \
               dsrt_op_name((op)->kind))

typedef dsrt_status (*dsrt_template_kernel)(dsrt_template_stream *s, const dsrt_op *op);

/* Elementwise and row-wise ops: the forward cannot start without these. */
static dsrt_status dsrt_template_convert(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_embed(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_rms_norm(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_layer_norm(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_rope(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_swiglu(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_add(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* GEMMs: where the time goes. */
static dsrt_status dsrt_template_linear(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_linear_grouped(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_head_linear(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* FP8 numerics. */
static dsrt_status dsrt_template_act_quant(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_hadamard(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* Attention and the paged KV cache. */
static dsrt_status dsrt_template_cache_write(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_mla_prefill(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_mla_decode(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* DeepSeek Sparse Attention: the lightning indexer and its top-k. */
static dsrt_status dsrt_template_indexer_scores(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_topk(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* Mixture of experts. */
static dsrt_status dsrt_template_moe_gate(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_moe_dispatch(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
static dsrt_status dsrt_template_moe_combine(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }
/* Sampling. */
static dsrt_status dsrt_template_sample(dsrt_template_stream *s, const dsrt_op *op) { return DSRT_TEMPLATE_UNIMPLEMENTED(op); }

static const dsrt_template_kernel dsrt_template_kernels[DSRT_OP_COUNT] = {
    [DSRT_OP_CONVERT] = dsrt_template_convert,
    [DSRT_OP_EMBED] = dsrt_template_embed,
    [DSRT_OP_RMS_NORM] = dsrt_template_rms_norm,
    [DSRT_OP_LAYER_NORM] = dsrt_template_layer_norm,
    [DSRT_OP_ROPE] = dsrt_template_rope,
    [DSRT_OP_LINEAR] = dsrt_template_linear,
    [DSRT_OP_LINEAR_GROUPED] = dsrt_template_linear_grouped,
    [DSRT_OP_HEAD_LINEAR] = dsrt_template_head_linear,
    [DSRT_OP_SWIGLU] = dsrt_template_swiglu,
    [DSRT_OP_ADD] = dsrt_template_add,
    [DSRT_OP_ACT_QUANT] = dsrt_template_act_quant,
    [DSRT_OP_HADAMARD] = dsrt_template_hadamard,
    [DSRT_OP_CACHE_WRITE] = dsrt_template_cache_write,
    [DSRT_OP_MLA_PREFILL] = dsrt_template_mla_prefill,
    [DSRT_OP_MLA_DECODE] = dsrt_template_mla_decode,
    [DSRT_OP_INDEXER_SCORES] = dsrt_template_indexer_scores,
    [DSRT_OP_TOPK] = dsrt_template_topk,
    [DSRT_OP_MOE_GATE] = dsrt_template_moe_gate,
    [DSRT_OP_MOE_DISPATCH] = dsrt_template_moe_dispatch,
    [DSRT_OP_MOE_COMBINE] = dsrt_template_moe_combine,
    [DSRT_OP_SAMPLE] = dsrt_template_sample,
};

/* Which ops have a kernel. Flip an entry when its kernel is written; narrow it by dtype or shape in
 * dsrt_template_supports_op where the kernel handles only part of what ops.h allows. */
static const bool dsrt_template_implemented[DSRT_OP_COUNT] = {
    [DSRT_OP_CONVERT] = false,
    /* ... every other op: false (the default) until written. */
};

bool dsrt_template_supports_op(dsrt_template_device *dev, const dsrt_op *op, char *why, size_t why_len)
{
    if ((unsigned)op->kind >= DSRT_OP_COUNT || !dsrt_template_kernels[op->kind]) {
        snprintf(why, why_len, "template backend: unknown op %d", (int)op->kind);
        return false;
    }
    if (!dsrt_template_implemented[op->kind]) {
        snprintf(why, why_len, "template backend: op %s is not implemented yet — see docs/porting.md",
                 dsrt_op_name(op->kind));
        return false;
    }
    /* Example of a capability-gated refusal a port might add:
     *   if (op->in[1].dtype == DSRT_E4M3 && !dev->caps.native_fp8 && !have_dequant_kernel) {
     *       snprintf(why, why_len, "template backend: e4m3 weights need native fp8 on this device");
     *       return false;
     *   } */
    return true;
}

dsrt_status dsrt_template_run_op(dsrt_template_stream *s, const dsrt_op *op)
{
    if ((unsigned)op->kind >= DSRT_OP_COUNT || !dsrt_template_kernels[op->kind])
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend: unknown op %d", (int)op->kind);
    return dsrt_template_kernels[op->kind](s, op);
}
