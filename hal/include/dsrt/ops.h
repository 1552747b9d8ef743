/* The op table: exactly the operations the DeepSeek-V3.2 graph needs, with their numerics.
 *
 * Every backend implements ops against this text; the CPU backend is the reference. An op is a value
 * (dsrt_op: kind, input tensors, output tensors, parameters) enqueued on a stream with dsrt_enqueue,
 * which validates dtypes, shapes and views first (the message names the op, the operand, expected and
 * found) and asks the device whether it supports the op (UNIMPLEMENTED with the backend's reason if
 * not). Typed helpers below (dsrt_rms_norm, dsrt_linear, ...) build the value.
 *
 * Conventions that hold for every op:
 *  - Arithmetic is fp32 inside the op. Each output is rounded once to its own dtype (round to nearest
 *    even; saturating for fp8). So a bf16 output is "computed in fp32, rounded to bf16", which is what
 *    the official FP8 inference code does between operations.
 *  - "float" below means f32, bf16 or f16. Matrices are row-major; the innermost dimension of every
 *    operand must be contiguous (stride 1); other strides are free, so column slices are views.
 *  - An optional operand is absent when its tensor has buf == NULL.
 *  - An output may alias an input only where the op says so.
 *  - Index operands are i32. A position or slot of -1 means "none" and is skipped.
 *  - FP8 weights are e4m3 with a block-scale companion (tensor.h): W[r][c] = fp8[r][c] * s[r/br][c/bc].
 *  - A KV cache is addressed by slot = block_table[seq][pos / page_size] * page_size + pos % page_size.
 */
#ifndef DSRT_OPS_H
#define DSRT_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt/handles.h"
#include "dsrt/status.h"
#include "dsrt/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_op_kind {
    /* y = x, converted. in: x (any float dtype; a scale companion is applied: fp8 dequantization),
     * out: y (any float dtype, same shape). Integer dtypes copy to the same dtype only. */
    DSRT_OP_CONVERT = 0,
    /* y[t] = table[ids[t]]. in: table [V,H] float, ids [T] i32; out: y [T,H] float. An id outside
     * [0,V) gives a zero row (callers validate ids first and report them). */
    DSRT_OP_EMBED,
    /* RMSNorm. in: x [M,D] float, weight [D] float, residual [M,D] float (optional);
     * out: y [M,D], residual_out [M,D] (present iff residual is; may alias residual).
     * s = x + residual (fp32) or x; residual_out = round(s); y = round(w * s / sqrt(mean(s^2) + eps)).
     * The norm reads the fp32 sum, not its rounded copy. */
    DSRT_OP_RMS_NORM,
    /* LayerNorm with bias. in: x [M,D], weight [D], bias [D]; out: y [M,D].
     * y = (x - mean) / sqrt(var + eps) * w + b, biased variance, fp32. */
    DSRT_OP_LAYER_NORM,
    /* Rotary embedding. in: x [T,R] or [T,H,R] float (R even), positions [T] i32,
     * cos_sin [P, R/2, 2] f32 (cos, sin of position p and frequency i); out: y, same shape as x,
     * may alias x exactly. Pair (a,b) of frequency i is (2i, 2i+1) when interleaved, (i, i+R/2)
     * otherwise: y_a = x_a cos - x_b sin, y_b = x_b cos + x_a sin. A row whose position is outside
     * [0,P) is copied unchanged. */
    DSRT_OP_ROPE,
    /* y = alpha * (x . W^T). in: x [M,K] float, weight [N,K] float (no scales) or e4m3 with scales;
     * out: y [M,N] f32/bf16/f16.
     * act_quant = false: W dequantized exactly (fp8 * scale in fp32), fp32 dot products.
     * act_quant = true (W must be e4m3, K % 128 == 0, weight scale blocks a multiple of 128 columns
     * wide so that one weight scale covers each activation block): the official FP8 GEMM. Each x row is quantized
     * in 1x128 blocks as dsrt_act_quant does (scale_pow2 selects UE8M0 scales), then
     * acc = sum over K blocks of (sum_k qa*qb) * (sa*sb) in fp32, y = round(alpha * acc). */
    DSRT_OP_LINEAR,
    /* Grouped (MoE expert) linear. in: x [R,K], weight [G,N,K] (float or e4m3 with scales
     * [G, ceil(N/br), ceil(K/bc)]), offsets [G+1] i32 (non-decreasing, offsets[G] <= R);
     * out: y [R,N]. Rows offsets[g] .. offsets[g+1]-1 use weight[g], as DSRT_OP_LINEAR; rows outside
     * [offsets[0], offsets[G]) are not written. */
    DSRT_OP_LINEAR_GROUPED,
    /* Per-head matrix product. in: x [T,Hh,K] float, weight [Hh,N,K] (transpose_w = false) or
     * [Hh,K,N] (transpose_w = true) f32/bf16/f16; out: y [T,Hh,N]. y[t,h,n] = sum_k x[t,h,k] W[h,n,k]
     * (or W[h,k,n]). The absorbed MLA uses it for q_nope -> latent and latent -> v. */
    DSRT_OP_HEAD_LINEAR,
    /* in: gate [M,I], up [M,I]; out: y [M,I] = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
    DSRT_OP_SWIGLU,
    /* in: a, b (same shape, any float); out: y = a + b. y may alias a or b. */
    DSRT_OP_ADD,
    /* Activation quantization, the official rule. in: x [M,K] float; out: q [M,K] e4m3 whose scale
     * companion (1 x block, f32 or ue8m0) receives the scales. Per row and block:
     * amax = max(max|x|, 1e-4); s = scale_pow2 ? 2^ceil(log2(amax * fl(1/448))) : amax * fl(1/448);
     * q = e4m3(clamp(x / s, -448, 448)). A ue8m0 companion needs scale_pow2. */
    DSRT_OP_ACT_QUANT,
    /* in: x [M,n] float, n a power of two; out: y [M,n] = x . H_n / sqrt(n), Sylvester order
     * (H[i][j] = (-1)^popcount(i&j)), fp32. */
    DSRT_OP_HADAMARD,
    /* Writes rows into a paged cache. in: src [T,W1] float, slots [T] i32, src2 [T,W2] float
     * (optional); out: cache [S, C] (a buffer of S slots).
     * format PLAIN: cache float [S, W1+W2], row = convert(src | src2).
     * format FP8: cache u8 [S, W1 + 4*ceil(W1/128) + 2*W2]: src quantized as DSRT_OP_ACT_QUANT (e4m3
     * bytes), then its f32 scales, then src2 as bf16 (the FlashMLA layout: 512+16+128 = 656 bytes for
     * the latent, 128+4 = 132 for the indexer key). Slots outside [0, S) are skipped. Two rows with the
     * same slot leave either row there. */
    DSRT_OP_CACHE_WRITE,
    /* MLA, expanded form (prefill). in: q [T,Hh,Dn+Dr], k_nope [L,Hh,Dn], k_pe [L,Dr],
     * v [L,Hh,Dv], kv_start [T] i32, kv_len [T] i32, indices [T,k] i32 (optional);
     * out: o [T,Hh,Dv]. Row t attends key rows kv_start[t]+j for 0 <= j < kv_len[t] (and j in
     * indices[t] when given: DSA. The indices are a set of j: duplicates count once, -1 and entries
     * outside [0, kv_len[t]) are ignored), with score = scale * (q_nope.k_nope + q_pe.k_pe). Key rows
     * outside [0, L) are skipped.
     * With bf16 q it rounds like the official prefill: s = bf16(bf16(q.k) * scale); p = bf16(softmax
     * in fp32); o = sum p v in fp32, rounded once to o's dtype (bf16 in the official code). With f32 q
     * everything is fp32. No visible key gives o = 0. */
    DSRT_OP_MLA_PREFILL,
    /* MLA, absorbed form over the paged latent cache (decode, and prefill chunks after the first).
     * in: q_lat [T,Hh,Dc], q_pe [T,Hh,Dr], cache [S,C], block_table [Sq,P] i32, row_seq [T] i32,
     * kv_len [T] i32, indices [T,k] i32 (optional); out: o [T,Hh,Dc] (latent-space output, before
     * W_UV). Row t attends positions 0 <= j < kv_len[t] (and in indices[t] when given, a set as in
     * DSRT_OP_MLA_PREFILL) of sequence row_seq[t]; each cached row is [c (Dc) | k_pe (Dr)] in the
     * cache format (PLAIN f32/bf16/f16, or FP8 as DSRT_OP_CACHE_WRITE writes it: c = e4m3 * scale in
     * fp32). score = scale * (q_lat.c + q_pe.k_pe). Positions without a cached row (page beyond the
     * block table, page -1, slot >= S, row_seq outside the table) are skipped.
     * With bf16 q_lat: s = bf16(bf16(bf16(q_lat.c) + bf16(q_pe.k_pe)) * scale), p = bf16(softmax),
     * o = sum p c rounded once to o's dtype (bf16 in the official decode). With f32 q_lat: fp32
     * throughout. No visible position gives o = 0. */
    DSRT_OP_MLA_DECODE,
    /* Lightning indexer scores. in: q [T,Hi,D] (float with format PLAIN; e4m3 with 1x128 scales with
     * format FP8), weights [T,Hi] f32, kcache [S,C], block_table [Sq,P] i32, row_seq [T] i32,
     * kv_len [T] i32; out: scores [T,L] f32, L a capacity >= every kv_len.
     * scores[t][j] = sum_h ReLU(q_h . k_j) * weights[t][h] * scale for j < kv_len[t], -inf beyond
     * and for positions without a cached key (as in DSRT_OP_MLA_DECODE).
     * FP8: q_h . k_j = sum over 128-blocks of qs*ks*(q8 . k8), multiplied in the official order
     * ks * sum_h ReLU(q8.k8) * (w * qs * scale) when D == 128. */
    DSRT_OP_INDEXER_SCORES,
    /* Top-k per row. in: scores [T,L] f32, lengths [T] i32 (optional: entries at j >= lengths[t]
     * are ignored; a negative length ignores the whole row); out: indices [T,k] i32, by descending
     * score, ties to the lower position; with by_position the same set in ascending position order
     * (DSA uses the set: no backend need sort by score for it);
     * -inf and NaN are never chosen; missing entries are -1, after the chosen ones. */
    DSRT_OP_TOPK,
    /* MoE routing (noaux_tc). in: logits [T,E] f32, bias [E] f32 (optional); out: ids [T,k] i32,
     * weights [T,k] f32. s = sigmoid(logits) (softmax if score_func = SOFTMAX); b = s + bias.
     * With n_group > 1: group score = sum of the two largest b in the group (max of b without bias);
     * the topk_group best groups stay (ties to the lower group). The k largest b among them are
     * chosen (descending, ties to the lower index); weights = s (unbiased) of those, divided by their
     * sum when norm_topk, times route_scale. */
    DSRT_OP_MOE_GATE,
    /* Groups token rows by expert for grouped GEMMs. in: x [T,H], ids [T,k] i32; out: x_perm [T*k,H],
     * offsets [G+1] i32, row_token [T*k] i32, slot_row [T,k] i32. Experts expert_begin ..
     * expert_begin+G-1 are local: expert e's rows are offsets[e-begin] .. offsets[e-begin+1]-1, in
     * token order; x_perm[r] = x[row_token[r]]; slot_row[t][j] = the row holding (t, j), or -1 when
     * ids[t][j] is not local. Unused rows: row_token = -1, x_perm undefined. */
    DSRT_OP_MOE_DISPATCH,
    /* in: y_perm [R,H], slot_row [T,k] i32, ids [T,k] i32, weights [T,k] f32, shared [T,H]
     * (optional); out: y [T,H]. acc = 0 (fp32); for j in order of ascending ids[t][j] with
     * 0 <= slot_row < R: acc += y_perm[slot_row[t][j]] * weights[t][j]; then acc += shared[t];
     * y[t] = round(acc). This is the official accumulation order. */
    DSRT_OP_MOE_COMBINE,
    /* Token sampling. in: logits [B,V] f32, uniform [B] f32 in [0,1); out: ids [B] i32.
     * temperature <= 0: argmax (ties to the lower id). Otherwise p = softmax(logits / temperature)
     * over all tokens, sorted by descending logit (ties to the lower id); the filters below use
     * these p as they are (nothing is renormalized between them): keep the first top_k (if > 0);
     * keep p >= min_p * p_max (if min_p > 0); keep the shortest prefix whose sum reaches (>=)
     * top_p (if < 1); then the first token whose cumulative kept probability exceeds
     * uniform * (kept sum). */
    DSRT_OP_SAMPLE,
    DSRT_OP_COUNT
} dsrt_op_kind;

typedef enum dsrt_cache_format {
    DSRT_CACHE_PLAIN = 0, /* float rows */
    DSRT_CACHE_FP8 = 1    /* e4m3 + f32 block scales (+ bf16 tail): the deployment layout */
} dsrt_cache_format;

typedef enum dsrt_score_func { DSRT_SCORE_SIGMOID = 0, DSRT_SCORE_SOFTMAX = 1 } dsrt_score_func;

#define DSRT_OP_MAX_IN 8
#define DSRT_OP_MAX_OUT 4

typedef struct dsrt_op_params {
    float eps;              /* RMS_NORM, LAYER_NORM */
    float alpha;            /* LINEAR, LINEAR_GROUPED: output multiplier (1 for none) */
    float scale;            /* MLA_*: softmax scale; INDEXER_SCORES: per-head score scale */
    bool act_quant;         /* LINEAR, LINEAR_GROUPED */
    bool scale_pow2;        /* LINEAR/ACT_QUANT/CACHE_WRITE: UE8M0 (power-of-two) scales */
    bool interleaved;       /* ROPE */
    bool transpose_w;       /* HEAD_LINEAR */
    bool norm_topk;         /* MOE_GATE */
    bool by_position;       /* TOPK: chosen indices in ascending position order, not by score */
    int32_t k;              /* TOPK, MOE_GATE */
    int32_t n_group;        /* MOE_GATE */
    int32_t topk_group;     /* MOE_GATE */
    float route_scale;      /* MOE_GATE */
    dsrt_score_func score_func; /* MOE_GATE */
    int32_t expert_begin;   /* MOE_DISPATCH */
    int32_t expert_count;   /* MOE_DISPATCH: G */
    int32_t page_size;      /* MLA_DECODE, INDEXER_SCORES */
    dsrt_cache_format format; /* CACHE_WRITE, MLA_DECODE, INDEXER_SCORES */
    float temperature;      /* SAMPLE */
    int32_t top_k;          /* SAMPLE */
    float top_p;            /* SAMPLE */
    float min_p;            /* SAMPLE */
} dsrt_op_params;

typedef struct dsrt_op {
    dsrt_op_kind kind;
    dsrt_tensor in[DSRT_OP_MAX_IN];
    dsrt_tensor out[DSRT_OP_MAX_OUT];
    dsrt_op_params p;
} dsrt_op;

/* Static description of an op kind: its name and operand names (NULL-terminated lists), and which
 * operands are optional (bit i of *_optional). */
typedef struct dsrt_op_info {
    const char *name;
    const char *in_names[DSRT_OP_MAX_IN + 1];
    const char *out_names[DSRT_OP_MAX_OUT + 1];
    uint32_t in_optional;
    uint32_t out_optional;
} dsrt_op_info;

const dsrt_op_info *dsrt_op_get_info(dsrt_op_kind kind); /* NULL for an invalid kind */
const char *dsrt_op_name(dsrt_op_kind kind);
dsrt_status dsrt_op_parse(const char *name, dsrt_op_kind *out);
/* An op value with defaults (alpha 1, eps 1e-6, top_p 1, route_scale 1) and no operands. */
dsrt_op dsrt_op_init(dsrt_op_kind kind);

/* Checks dtypes, ranks, shapes, views against buffers and parameters, without touching data. */
dsrt_status dsrt_op_validate(const dsrt_op *op);
/* DSRT_OK if `dev` can run `op` (after validation), else UNIMPLEMENTED with the backend's reason. */
dsrt_status dsrt_device_supports(dsrt_device *dev, const dsrt_op *op);
/* Validates, checks every operand lives on the stream's device, and enqueues. */
dsrt_status dsrt_enqueue(dsrt_stream *s, const dsrt_op *op);

/* Typed helpers: each builds the op described above and enqueues it. Optional operands take NULL. */
dsrt_status dsrt_convert(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *y);
dsrt_status dsrt_embed(dsrt_stream *s, const dsrt_tensor *table, const dsrt_tensor *ids,
                       const dsrt_tensor *y);
dsrt_status dsrt_rms_norm(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w,
                          const dsrt_tensor *residual, float eps, const dsrt_tensor *y,
                          const dsrt_tensor *residual_out);
dsrt_status dsrt_layer_norm(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w,
                            const dsrt_tensor *b, float eps, const dsrt_tensor *y);
dsrt_status dsrt_rope(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *positions,
                      const dsrt_tensor *cos_sin, bool interleaved, const dsrt_tensor *y);
dsrt_status dsrt_linear(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, bool act_quant,
                        bool scale_pow2, float alpha, const dsrt_tensor *y);
dsrt_status dsrt_linear_grouped(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w,
                                const dsrt_tensor *offsets, bool act_quant, bool scale_pow2,
                                const dsrt_tensor *y);
dsrt_status dsrt_head_linear(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w,
                             bool transpose_w, const dsrt_tensor *y);
dsrt_status dsrt_swiglu(dsrt_stream *s, const dsrt_tensor *gate, const dsrt_tensor *up,
                        const dsrt_tensor *y);
dsrt_status dsrt_add(dsrt_stream *s, const dsrt_tensor *a, const dsrt_tensor *b, const dsrt_tensor *y);
dsrt_status dsrt_act_quant(dsrt_stream *s, const dsrt_tensor *x, bool scale_pow2, const dsrt_tensor *q);
dsrt_status dsrt_hadamard(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *y);
dsrt_status dsrt_cache_write(dsrt_stream *s, const dsrt_tensor *src, const dsrt_tensor *slots,
                             const dsrt_tensor *src2, dsrt_cache_format format, bool scale_pow2,
                             const dsrt_tensor *cache);
dsrt_status dsrt_mla_prefill(dsrt_stream *s, const dsrt_tensor *q, const dsrt_tensor *k_nope,
                             const dsrt_tensor *k_pe, const dsrt_tensor *v, const dsrt_tensor *kv_start,
                             const dsrt_tensor *kv_len, const dsrt_tensor *indices, float scale,
                             const dsrt_tensor *o);
dsrt_status dsrt_mla_decode(dsrt_stream *s, const dsrt_tensor *q_lat, const dsrt_tensor *q_pe,
                            const dsrt_tensor *cache, dsrt_cache_format format, int page_size,
                            const dsrt_tensor *block_table, const dsrt_tensor *row_seq,
                            const dsrt_tensor *kv_len, const dsrt_tensor *indices, float scale,
                            const dsrt_tensor *o);
dsrt_status dsrt_indexer_scores(dsrt_stream *s, const dsrt_tensor *q, const dsrt_tensor *weights,
                                const dsrt_tensor *kcache, dsrt_cache_format format, int page_size,
                                const dsrt_tensor *block_table, const dsrt_tensor *row_seq,
                                const dsrt_tensor *kv_len, float scale, const dsrt_tensor *scores);
dsrt_status dsrt_topk(dsrt_stream *s, const dsrt_tensor *scores, const dsrt_tensor *lengths, int k, bool by_position,
                      const dsrt_tensor *indices);
dsrt_status dsrt_moe_gate(dsrt_stream *s, const dsrt_tensor *logits, const dsrt_tensor *bias, int k,
                          int n_group, int topk_group, dsrt_score_func score_func, bool norm_topk,
                          float route_scale, const dsrt_tensor *ids, const dsrt_tensor *weights);
dsrt_status dsrt_moe_dispatch(dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *ids,
                              int expert_begin, int expert_count, const dsrt_tensor *x_perm,
                              const dsrt_tensor *offsets, const dsrt_tensor *row_token,
                              const dsrt_tensor *slot_row);
dsrt_status dsrt_moe_combine(dsrt_stream *s, const dsrt_tensor *y_perm, const dsrt_tensor *slot_row,
                             const dsrt_tensor *ids, const dsrt_tensor *weights,
                             const dsrt_tensor *shared, const dsrt_tensor *y);
dsrt_status dsrt_sample(dsrt_stream *s, const dsrt_tensor *logits, const dsrt_tensor *uniform,
                        float temperature, int top_k, float top_p, float min_p, const dsrt_tensor *ids);

#ifdef __cplusplus
}
#endif
#endif
