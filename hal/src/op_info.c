/* Names and operand lists of the ops (ops.h documents their meaning). */
#include <string.h>

#include "dsrt/ops.h"

#define OPT(i) (1u << (i))

static const dsrt_op_info dsrt_op_infos[DSRT_OP_COUNT] = {
    [DSRT_OP_CONVERT] = {"convert", {"x", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_EMBED] = {"embed", {"table", "ids", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_RMS_NORM] = {"rms_norm", {"x", "weight", "residual", NULL}, {"y", "residual_out", NULL}, OPT(2), OPT(1)},
    [DSRT_OP_LAYER_NORM] = {"layer_norm", {"x", "weight", "bias", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_ROPE] = {"rope", {"x", "positions", "cos_sin", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_LINEAR] = {"linear", {"x", "weight", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_LINEAR_GROUPED] = {"linear_grouped", {"x", "weight", "offsets", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_HEAD_LINEAR] = {"head_linear", {"x", "weight", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_SWIGLU] = {"swiglu", {"gate", "up", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_ADD] = {"add", {"a", "b", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_ACT_QUANT] = {"act_quant", {"x", NULL}, {"q", NULL}, 0, 0},
    [DSRT_OP_HADAMARD] = {"hadamard", {"x", NULL}, {"y", NULL}, 0, 0},
    [DSRT_OP_CACHE_WRITE] = {"cache_write", {"src", "slots", "src2", NULL}, {"cache", NULL}, OPT(2), 0},
    [DSRT_OP_MLA_PREFILL] = {"mla_prefill", {"q", "k_nope", "k_pe", "v", "kv_start", "kv_len", "indices", NULL},
                             {"o", NULL}, OPT(6), 0},
    [DSRT_OP_MLA_DECODE] = {"mla_decode",
                            {"q_lat", "q_pe", "cache", "block_table", "row_seq", "kv_len", "indices", NULL},
                            {"o", NULL}, OPT(6), 0},
    [DSRT_OP_INDEXER_SCORES] = {"indexer_scores",
                                {"q", "weights", "kcache", "block_table", "row_seq", "kv_len", NULL},
                                {"scores", NULL}, 0, 0},
    [DSRT_OP_TOPK] = {"topk", {"scores", "lengths", NULL}, {"indices", NULL}, OPT(1), 0},
    [DSRT_OP_MOE_GATE] = {"moe_gate", {"logits", "bias", NULL}, {"ids", "weights", NULL}, OPT(1), 0},
    [DSRT_OP_MOE_DISPATCH] = {"moe_dispatch", {"x", "ids", NULL}, {"x_perm", "offsets", "row_token", "slot_row", NULL},
                              0, 0},
    [DSRT_OP_MOE_COMBINE] = {"moe_combine", {"y_perm", "slot_row", "ids", "weights", "shared", NULL}, {"y", NULL},
                             OPT(4), 0},
    [DSRT_OP_SAMPLE] = {"sample", {"logits", "uniform", NULL}, {"ids", NULL}, 0, 0},
};

const dsrt_op_info *dsrt_op_get_info(dsrt_op_kind kind)
{
    return (unsigned)kind < DSRT_OP_COUNT ? &dsrt_op_infos[kind] : NULL;
}

const char *dsrt_op_name(dsrt_op_kind kind)
{
    const dsrt_op_info *i = dsrt_op_get_info(kind);
    return i ? i->name : "invalid-op";
}

dsrt_status dsrt_op_parse(const char *name, dsrt_op_kind *out)
{
    for (int k = 0; k < DSRT_OP_COUNT; k++)
        if (name && strcmp(name, dsrt_op_infos[k].name) == 0) {
            *out = (dsrt_op_kind)k;
            return DSRT_OK;
        }
    return dsrt_error(DSRT_CODE_NOT_FOUND, "unknown op '%s'", name ? name : "(null)");
}

dsrt_op dsrt_op_init(dsrt_op_kind kind)
{
    dsrt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.p.alpha = 1.0f;
    op.p.eps = 1e-6f;
    op.p.top_p = 1.0f;
    op.p.route_scale = 1.0f;
    op.p.scale = 1.0f;
    op.p.page_size = 1;
    return op;
}
