/* Typed helpers: build an op value and enqueue it (ops.h documents each op). */
#include "dsrt/ops.h"

#define SET(slot, t)                                                                                                  \
    do {                                                                                                              \
        if (t) (slot) = *(t);                                                                                         \
    } while (0)

dsrt_status dsrt_convert(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_CONVERT);
    SET(op.in[0], x);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_embed(dsrt_stream *s, const dsrt_tensor *table, const dsrt_tensor *ids, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_EMBED);
    SET(op.in[0], table);
    SET(op.in[1], ids);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_rms_norm(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, const dsrt_tensor *residual,
                          float eps, const dsrt_tensor *y, const dsrt_tensor *residual_out)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_RMS_NORM);
    SET(op.in[0], x);
    SET(op.in[1], w);
    SET(op.in[2], residual);
    SET(op.out[0], y);
    SET(op.out[1], residual_out);
    op.p.eps = eps;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_layer_norm(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, const dsrt_tensor *b, float eps,
                            const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_LAYER_NORM);
    SET(op.in[0], x);
    SET(op.in[1], w);
    SET(op.in[2], b);
    SET(op.out[0], y);
    op.p.eps = eps;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_rope(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *positions, const dsrt_tensor *cos_sin,
                      bool interleaved, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_ROPE);
    SET(op.in[0], x);
    SET(op.in[1], positions);
    SET(op.in[2], cos_sin);
    SET(op.out[0], y);
    op.p.interleaved = interleaved;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_linear(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, bool act_quant, bool scale_pow2,
                        float alpha, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_LINEAR);
    SET(op.in[0], x);
    SET(op.in[1], w);
    SET(op.out[0], y);
    op.p.act_quant = act_quant;
    op.p.scale_pow2 = scale_pow2;
    op.p.alpha = alpha;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_linear_grouped(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, const dsrt_tensor *offsets,
                                bool act_quant, bool scale_pow2, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_LINEAR_GROUPED);
    SET(op.in[0], x);
    SET(op.in[1], w);
    SET(op.in[2], offsets);
    SET(op.out[0], y);
    op.p.act_quant = act_quant;
    op.p.scale_pow2 = scale_pow2;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_head_linear(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, bool transpose_w,
                             const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_HEAD_LINEAR);
    SET(op.in[0], x);
    SET(op.in[1], w);
    SET(op.out[0], y);
    op.p.transpose_w = transpose_w;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_swiglu(dsrt_stream *s, const dsrt_tensor *gate, const dsrt_tensor *up, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_SWIGLU);
    SET(op.in[0], gate);
    SET(op.in[1], up);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_add(dsrt_stream *s, const dsrt_tensor *a, const dsrt_tensor *b, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_ADD);
    SET(op.in[0], a);
    SET(op.in[1], b);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_act_quant(dsrt_stream *s, const dsrt_tensor *x, bool scale_pow2, const dsrt_tensor *q)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_ACT_QUANT);
    SET(op.in[0], x);
    SET(op.out[0], q);
    op.p.scale_pow2 = scale_pow2;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_hadamard(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_HADAMARD);
    SET(op.in[0], x);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_cache_write(dsrt_stream *s, const dsrt_tensor *src, const dsrt_tensor *slots, const dsrt_tensor *src2,
                             dsrt_cache_format format, bool scale_pow2, const dsrt_tensor *cache)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_CACHE_WRITE);
    SET(op.in[0], src);
    SET(op.in[1], slots);
    SET(op.in[2], src2);
    SET(op.out[0], cache);
    op.p.format = format;
    op.p.scale_pow2 = scale_pow2;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_mla_prefill(dsrt_stream *s, const dsrt_tensor *q, const dsrt_tensor *k_nope, const dsrt_tensor *k_pe,
                             const dsrt_tensor *v, const dsrt_tensor *kv_start, const dsrt_tensor *kv_len,
                             const dsrt_tensor *indices, float scale, const dsrt_tensor *o)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_MLA_PREFILL);
    SET(op.in[0], q);
    SET(op.in[1], k_nope);
    SET(op.in[2], k_pe);
    SET(op.in[3], v);
    SET(op.in[4], kv_start);
    SET(op.in[5], kv_len);
    SET(op.in[6], indices);
    SET(op.out[0], o);
    op.p.scale = scale;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_mla_decode(dsrt_stream *s, const dsrt_tensor *q_lat, const dsrt_tensor *q_pe, const dsrt_tensor *cache,
                            dsrt_cache_format format, int page_size, const dsrt_tensor *block_table,
                            const dsrt_tensor *row_seq, const dsrt_tensor *kv_len, const dsrt_tensor *indices,
                            float scale, const dsrt_tensor *o)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_MLA_DECODE);
    SET(op.in[0], q_lat);
    SET(op.in[1], q_pe);
    SET(op.in[2], cache);
    SET(op.in[3], block_table);
    SET(op.in[4], row_seq);
    SET(op.in[5], kv_len);
    SET(op.in[6], indices);
    SET(op.out[0], o);
    op.p.format = format;
    op.p.page_size = page_size;
    op.p.scale = scale;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_indexer_scores(dsrt_stream *s, const dsrt_tensor *q, const dsrt_tensor *weights,
                                const dsrt_tensor *kcache, dsrt_cache_format format, int page_size,
                                const dsrt_tensor *block_table, const dsrt_tensor *row_seq, const dsrt_tensor *kv_len,
                                float scale, const dsrt_tensor *scores)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_INDEXER_SCORES);
    SET(op.in[0], q);
    SET(op.in[1], weights);
    SET(op.in[2], kcache);
    SET(op.in[3], block_table);
    SET(op.in[4], row_seq);
    SET(op.in[5], kv_len);
    SET(op.out[0], scores);
    op.p.format = format;
    op.p.page_size = page_size;
    op.p.scale = scale;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_topk(dsrt_stream *s, const dsrt_tensor *scores, const dsrt_tensor *lengths, int k, bool by_position,
                      const dsrt_tensor *indices)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_TOPK);
    SET(op.in[0], scores);
    SET(op.in[1], lengths);
    SET(op.out[0], indices);
    op.p.k = k;
    op.p.by_position = by_position;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_moe_gate(dsrt_stream *s, const dsrt_tensor *logits, const dsrt_tensor *bias, int k, int n_group,
                          int topk_group, dsrt_score_func score_func, bool norm_topk, float route_scale,
                          const dsrt_tensor *ids, const dsrt_tensor *weights)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_MOE_GATE);
    SET(op.in[0], logits);
    SET(op.in[1], bias);
    SET(op.out[0], ids);
    SET(op.out[1], weights);
    op.p.k = k;
    op.p.n_group = n_group;
    op.p.topk_group = topk_group;
    op.p.score_func = score_func;
    op.p.norm_topk = norm_topk;
    op.p.route_scale = route_scale;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_moe_dispatch(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *ids, int expert_begin,
                              int expert_count, const dsrt_tensor *x_perm, const dsrt_tensor *offsets,
                              const dsrt_tensor *row_token, const dsrt_tensor *slot_row)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_MOE_DISPATCH);
    SET(op.in[0], x);
    SET(op.in[1], ids);
    SET(op.out[0], x_perm);
    SET(op.out[1], offsets);
    SET(op.out[2], row_token);
    SET(op.out[3], slot_row);
    op.p.expert_begin = expert_begin;
    op.p.expert_count = expert_count;
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_moe_combine(dsrt_stream *s, const dsrt_tensor *y_perm, const dsrt_tensor *slot_row,
                             const dsrt_tensor *ids, const dsrt_tensor *weights, const dsrt_tensor *shared,
                             const dsrt_tensor *y)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_MOE_COMBINE);
    SET(op.in[0], y_perm);
    SET(op.in[1], slot_row);
    SET(op.in[2], ids);
    SET(op.in[3], weights);
    SET(op.in[4], shared);
    SET(op.out[0], y);
    return dsrt_enqueue(s, &op);
}

dsrt_status dsrt_sample(dsrt_stream *s, const dsrt_tensor *logits, const dsrt_tensor *uniform, float temperature,
                        int top_k, float top_p, float min_p, const dsrt_tensor *ids)
{
    dsrt_op op = dsrt_op_init(DSRT_OP_SAMPLE);
    SET(op.in[0], logits);
    SET(op.in[1], uniform);
    SET(op.out[0], ids);
    op.p.temperature = temperature;
    op.p.top_k = top_k;
    op.p.top_p = top_p;
    op.p.min_p = min_p;
    return dsrt_enqueue(s, &op);
}
