/* The CPU backend's op table: every op has a reference kernel. */
#include "cpu/cpu_backend.h"
#include <stdio.h>

#include "cpu_ops.h"

typedef dsrt_status (*dsrt_cpu_kernel)(dsrt_pool *, const dsrt_op *);

static const dsrt_cpu_kernel dsrt_cpu_kernels[DSRT_OP_COUNT] = {
    [DSRT_OP_CONVERT] = dsrt_cpu_convert,
    [DSRT_OP_EMBED] = dsrt_cpu_embed,
    [DSRT_OP_RMS_NORM] = dsrt_cpu_rms_norm,
    [DSRT_OP_LAYER_NORM] = dsrt_cpu_layer_norm,
    [DSRT_OP_ROPE] = dsrt_cpu_rope,
    [DSRT_OP_LINEAR] = dsrt_cpu_linear,
    [DSRT_OP_LINEAR_GROUPED] = dsrt_cpu_linear_grouped,
    [DSRT_OP_HEAD_LINEAR] = dsrt_cpu_head_linear,
    [DSRT_OP_SWIGLU] = dsrt_cpu_swiglu,
    [DSRT_OP_ADD] = dsrt_cpu_add,
    [DSRT_OP_ACT_QUANT] = dsrt_cpu_act_quant,
    [DSRT_OP_HADAMARD] = dsrt_cpu_hadamard,
    [DSRT_OP_CACHE_WRITE] = dsrt_cpu_cache_write,
    [DSRT_OP_MLA_PREFILL] = dsrt_cpu_mla_prefill,
    [DSRT_OP_MLA_DECODE] = dsrt_cpu_mla_decode,
    [DSRT_OP_INDEXER_SCORES] = dsrt_cpu_indexer_scores,
    [DSRT_OP_TOPK] = dsrt_cpu_topk,
    [DSRT_OP_MOE_GATE] = dsrt_cpu_moe_gate,
    [DSRT_OP_MOE_DISPATCH] = dsrt_cpu_moe_dispatch,
    [DSRT_OP_MOE_COMBINE] = dsrt_cpu_moe_combine,
    [DSRT_OP_SAMPLE] = dsrt_cpu_sample,
};

bool dsrt_cpu_supports_op(const dsrt_op *op, char *why, size_t why_len)
{
    if ((unsigned)op->kind >= DSRT_OP_COUNT || !dsrt_cpu_kernels[op->kind]) {
        snprintf(why, why_len, "no CPU kernel for op %d", (int)op->kind);
        return false;
    }
    if (op->kind == DSRT_OP_CONVERT && op->in[0].scale.buf && op->in[0].ndim > 3) {
        snprintf(why, why_len, "scaled tensors of rank > 3");
        return false;
    }
    return true;
}

dsrt_status dsrt_cpu_run_op(dsrt_pool *pool, const dsrt_op *op) { return dsrt_cpu_kernels[op->kind](pool, op); }
