/* The DeepSeek-V3.2 forward pass (SPEC.md), one function per block, each a sequence of HAL ops on the
 * block's device. Numerics follow the model's setting: f32 everywhere, or the official FP8 inference
 * (bf16 activations between ops, FP8 GEMMs with 1x128 activation scales, FP8 latent round trip,
 * Hadamard + FP8 indexer, FP8 paged caches). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define DSRT_STATE_SLOTS 3

/* Per-forward state: host metadata of the rows, its copies on every device, and the [T, H] buffers
 * that carry the residual stream between blocks. */
typedef struct fwd {
    dsrt_model *m;
    int64_t T;           /* rows (tokens) in this forward */
    bool prefill;        /* every sequence starts empty: expanded attention over the batch's own rows */
    int64_t max_kv;      /* longest visible prefix of any row */
    int64_t kv_width;    /* width of the indexer's score rows: max_kv, or a rounded capacity under a graph */
    bool select;         /* the indexer selects (some row sees more than index_topk positions) */
    bool graph;          /* this forward runs as a recorded graph */
    int n_seq, max_pages;
    int32_t *tokens, *pos, *slots, *row_seq, *kv_len, *kv_start, *block_table, *logit_rows;
    int64_t n_logit_rows;
    struct {
        dsrt_tensor tokens, pos, slots, row_seq, kv_len, kv_start, block_table, logit_rows;
        dsrt_tensor state[DSRT_STATE_SLOTS];
        bool forked[DSRT_SIDE_STREAMS]; /* side stream k has work the main stream has not waited for */
    } d[DSRT_MAX_MODEL_DEVICES];
} fwd;

/* The residual stream: which device and slot hold the block input and the residual. */
typedef struct stream_pos {
    int dev;
    int h, res; /* slot indices; res == -1 before the first norm (the residual is the embedding) */
} stream_pos;

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S3(a, b, c) ((const int64_t[]){(a), (b), (c)})

static dsrt_stream *ST(fwd *F, int dev) { return F->m->devs[dev].stream; }
static dsrt_arena *AR(fwd *F, int dev) { return &F->m->devs[dev].arena; }

static dsrt_status tmp(fwd *F, int dev, dsrt_dtype dt, int ndim, const int64_t *shape, dsrt_tensor *out)
{
    return dsrt_arena_tensor(AR(F, dev), dt, ndim, shape, out);
}

/* A strided view of `t` (rank-2 or rank-3) starting `off` elements in. */
static dsrt_status view(const dsrt_tensor *t, int64_t off, int ndim, const int64_t *shape, const int64_t *stride, dsrt_tensor *out)
{
    return dsrt_tensor_make_strided(t->buf, t->offset + (size_t)off * dsrt_dtype_size(t->dtype), t->dtype, ndim, shape, stride, out);
}

/* A rank-2 view of a contiguous FP8 tensor keeping its 1x128 scales (rows merge). */
static dsrt_status flat_scaled(const dsrt_tensor *t, int64_t rows, int64_t cols, dsrt_tensor *out)
{
    DSRT_TRY(dsrt_tensor_make(t->buf, t->offset, t->dtype, 2, S2(rows, cols), out));
    return dsrt_tensor_set_scale(out, t->scale.buf, t->scale.offset, t->scale.dtype, 1, 128);
}

static bool fp8(fwd *F) { return F->m->numerics == DSRT_NUMERICS_FP8; }

/* y = x W^T with the numerics' rules: FP8 weights run the official FP8 GEMM in fp8 numerics. */
static dsrt_status linear_on(fwd *F, dsrt_stream *s, const dsrt_tensor *x, const dsrt_tensor *w, float alpha,
                             const dsrt_tensor *y)
{
    bool q = fp8(F) && w->dtype == DSRT_E4M3;
    return dsrt_linear(s, x, w, q, F->m->cfg.scale_ue8m0, alpha, y);
}

static dsrt_status linear(fwd *F, int dev, const dsrt_tensor *x, const dsrt_tensor *w, float alpha, const dsrt_tensor *y)
{
    return linear_on(F, ST(F, dev), x, w, alpha, y);
}

/* ---- side streams ----
 * Chains that do not depend on each other (the indexer's keys and its queries beside the query and
 * latent path; the shared expert beside the router and the routed experts) go on streams of their
 * own where the device runs streams concurrently: at batch 1 each chain is a run of small kernels
 * that leave most of the device idle. Side chain k runs on side stream k, or on the nearest one
 * below it where the device has fewer (then it follows that stream's earlier chain), or on the main
 * stream. side_fork makes chain k wait for everything enqueued on the main stream so far and gives
 * its stream; side_after makes one chain wait for another's work so far; side_join makes the main
 * stream wait for every side chain. An event is waited on right after it is recorded, so one fork
 * and one join event serve every pair. A forward joins every fork before it returns. */
static int side_index(fwd *F, int dev, int k)
{
    while (k >= 0 && !F->m->devs[dev].side[k]) k--;
    return k;
}

static dsrt_stream *side_stream(fwd *F, int dev, int k)
{
    int i = side_index(F, dev, k);
    return i < 0 ? ST(F, dev) : F->m->devs[dev].side[i];
}

static dsrt_status side_fork(fwd *F, int dev, int k, dsrt_stream **s)
{
    dsrt_model_dev *d = &F->m->devs[dev];
    int i = side_index(F, dev, k);
    *s = i < 0 ? d->stream : d->side[i];
    if (i < 0) return DSRT_OK;
    DSRT_TRY(dsrt_event_record(d->fork_ev, d->stream));
    DSRT_TRY(dsrt_stream_wait_event(*s, d->fork_ev));
    F->d[dev].forked[i] = true;
    return DSRT_OK;
}

/* Side chain `k` waits for what side chain `from` has enqueued so far. */
static dsrt_status side_after(fwd *F, int dev, int k, int from)
{
    dsrt_model_dev *d = &F->m->devs[dev];
    dsrt_stream *s = side_stream(F, dev, k), *src = side_stream(F, dev, from);
    if (s == src) return DSRT_OK;
    DSRT_TRY(dsrt_event_record(d->join_ev, src));
    return dsrt_stream_wait_event(s, d->join_ev);
}

static dsrt_status side_join(fwd *F, int dev)
{
    dsrt_model_dev *d = &F->m->devs[dev];
    for (int i = 0; i < DSRT_SIDE_STREAMS; i++) {
        if (!F->d[dev].forked[i]) continue;
        DSRT_TRY(dsrt_event_record(d->join_ev, d->side[i]));
        DSRT_TRY(dsrt_stream_wait_event(d->stream, d->join_ev));
        F->d[dev].forked[i] = false;
    }
    return DSRT_OK;
}

/* Moves a [T, H] tensor to another device's state slot (waiting for the source device first). */
static dsrt_status move_to(fwd *F, int from, const dsrt_tensor *src, int to, int slot)
{
    const dsrt_tensor *dst = &F->d[to].state[slot];
    DSRT_TRY(dsrt_stream_sync(ST(F, from)));
    return dsrt_stream_copy(ST(F, to), src->buf, src->offset, dst->buf, dst->offset, dsrt_tensor_nbytes(src));
}

/* Brings the residual stream to `dev`. */
static dsrt_status stream_to(fwd *F, stream_pos *p, int dev)
{
    if (p->dev == dev) return DSRT_OK;
    DSRT_TRY(move_to(F, p->dev, &F->d[p->dev].state[p->h], dev, 0));
    if (p->res >= 0) DSRT_TRY(move_to(F, p->dev, &F->d[p->dev].state[p->res], dev, 1));
    p->dev = dev;
    p->h = 0;
    p->res = p->res >= 0 ? 1 : -1;
    return DSRT_OK;
}

/* RMSNorm of the block input, adding it to the residual first (SPEC §2); returns the slot that is free
 * for the block's output. */
static dsrt_status norm_block_input(fwd *F, stream_pos *p, const dsrt_tensor *w, const dsrt_tensor *y, int *out_slot)
{
    int dev = p->dev;
    float eps = (float)F->m->cfg.rms_norm_eps;
    const dsrt_tensor *h = &F->d[dev].state[p->h];
    if (p->res < 0) {
        /* first block: the residual is the embedding itself */
        DSRT_TRY(dsrt_rms_norm(ST(F, dev), h, w, NULL, eps, y, NULL));
        p->res = p->h;
        *out_slot = (p->h + 1) % DSRT_STATE_SLOTS;
        return DSRT_OK;
    }
    const dsrt_tensor *r = &F->d[dev].state[p->res];
    DSRT_TRY(dsrt_rms_norm(ST(F, dev), h, w, r, eps, y, r));
    *out_slot = p->h; /* the input is consumed */
    return DSRT_OK;
}

static dsrt_status dump(fwd *F, int dev, const dsrt_tensor *t, const char *what, int64_t layer);

/* ---- §4 the lightning indexer, in three parts: the key (cached) and the per-head weights, which need
 * x only; the queries, from qr; the scores and, when any row sees more than index_topk positions,
 * the top positions of every row. ---- */
static dsrt_status indexer_keys(fwd *F, dsrt_layer *ly, dsrt_stream *s, const dsrt_tensor *x, bool select, dsrt_tensor *w)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int dev = ly->attn_dev;
    int64_t T = F->T, ih = c->index_n_heads, id = c->index_head_dim, dr = c->qk_rope_head_dim;
    dsrt_dtype act = m->act;
    /* 2. the key: LayerNorm(wk x), RoPE half-split on its pe part */
    dsrt_tensor ik, ikn, ik_pe;
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, id), &ik));
    DSRT_TRY(linear_on(F, s, x, &ly->idx_wk, 1.0f, &ik));
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, id), &ikn));
    DSRT_TRY(dsrt_layer_norm(s, &ik, &ly->idx_k_norm_w, &ly->idx_k_norm_b, (float)c->rms_norm_eps, &ikn));
    DSRT_TRY(view(&ikn, 0, 2, S2(T, dr), S2(id, 1), &ik_pe));
    DSRT_TRY(dsrt_rope(s, &ik_pe, &F->d[dev].pos, &m->devs[dev].rope_cos_sin, false, &ik_pe));
    /* 3. FP8 numerics: Hadamard rotation, then FP8 with one scale per 128 values; cache the key */
    if (fp8(F)) {
        dsrt_tensor ikh;
        DSRT_TRY(tmp(F, dev, act, 2, S2(T, id), &ikh));
        DSRT_TRY(dsrt_hadamard(s, &ikn, &ikh));
        DSRT_TRY(dsrt_cache_write(s, &ikh, &F->d[dev].slots, NULL, DSRT_CACHE_FP8, c->scale_ue8m0, &ly->idx_cache));
    } else {
        DSRT_TRY(dsrt_cache_write(s, &ikn, &F->d[dev].slots, NULL, DSRT_CACHE_PLAIN, false, &ly->idx_cache));
    }
    if (!select) return DSRT_OK;
    /* 4. per-head weights from x (fp32) */
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(T, ih), w));
    return dsrt_linear(s, x, &ly->idx_weights_proj, false, false, (float)pow((double)ih, -0.5), w);
}

/* The indexer's queries (steps 1 and 3) into *q: [T, heads, dim], FP8 in FP8 numerics. */
static dsrt_status indexer_query(fwd *F, dsrt_layer *ly, dsrt_stream *s, const dsrt_tensor *qr, dsrt_tensor *q)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int dev = ly->attn_dev;
    int64_t T = F->T, ih = c->index_n_heads, id = c->index_head_dim, dr = c->qk_rope_head_dim;
    /* 1. queries from qr, [pe | rest] per head, RoPE half-split on pe */
    dsrt_tensor iq, iq_pe;
    DSRT_TRY(tmp(F, dev, m->act, 2, S2(T, ih * id), &iq));
    DSRT_TRY(linear_on(F, s, qr, &ly->idx_wq_b, 1.0f, &iq));
    DSRT_TRY(view(&iq, 0, 3, S3(T, ih, id), S3(ih * id, id, 1), q));
    DSRT_TRY(view(&iq, 0, 3, S3(T, ih, dr), S3(ih * id, id, 1), &iq_pe));
    DSRT_TRY(dsrt_rope(s, &iq_pe, &F->d[dev].pos, &m->devs[dev].rope_cos_sin, false, &iq_pe));
    if (!fp8(F)) return DSRT_OK;
    /* 3. FP8 numerics: the queries' Hadamard rotation and FP8 blocks */
    dsrt_tensor iq2, iqh, q8f;
    DSRT_TRY(view(&iq, 0, 2, S2(T * ih, id), S2(id, 1), &iq2));
    DSRT_TRY(tmp(F, dev, m->act, 2, S2(T * ih, id), &iqh));
    DSRT_TRY(dsrt_hadamard(s, &iq2, &iqh));
    DSRT_TRY(dsrt_arena_tensor_scaled(AR(F, dev), DSRT_E4M3, 3, S3(T, ih, id), DSRT_F32, q));
    DSRT_TRY(flat_scaled(q, T * ih, id, &q8f));
    return dsrt_act_quant(s, &iqh, c->scale_ue8m0, &q8f);
}

/* Step 4: scores of the queries q over every visible cached key, weighted by w; the top-k positions. */
static dsrt_status indexer_select(fwd *F, dsrt_layer *ly, dsrt_stream *s, const dsrt_tensor *q, const dsrt_tensor *w,
                                  dsrt_tensor *indices)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int dev = ly->attn_dev;
    int64_t T = F->T, id = c->index_head_dim;
    dsrt_tensor scores;
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(T, F->kv_width), &scores));
    DSRT_TRY(dsrt_indexer_scores(s, q, w, &ly->idx_cache, m->cache_format, m->page_size, &F->d[dev].block_table,
                                 &F->d[dev].row_seq, &F->d[dev].kv_len, (float)pow((double)id, -0.5), &scores));
    int64_t k = c->index_topk < F->kv_width ? c->index_topk : F->kv_width;
    DSRT_TRY(tmp(F, dev, DSRT_I32, 2, S2(T, k), indices));
    return dsrt_topk(s, &scores, &F->d[dev].kv_len, (int)k, true, indices); /* a set: position order is cheapest */
}

/* ---- §3 MLA attention ---- */
static dsrt_status attention(fwd *F, dsrt_layer *ly, const dsrt_tensor *x, const dsrt_tensor *out)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int dev = ly->attn_dev;
    dsrt_stream *s = ST(F, dev);
    int64_t T = F->T, nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int64_t dc = c->kv_lora_rank, ql = c->q_lora_rank, dq = dn + dr;
    dsrt_dtype act = m->act;
    float eps = (float)c->rms_norm_eps;
    const dsrt_tensor *cs = &m->devs[dev].rope_cos_sin;
    /* §4: the indexer runs beside steps 1-4 and joins before attention: its keys (from x) on side
     * chain 0, its queries (from qr) on side chain 1, then the scores and top-k on chain 0 */
    dsrt_stream *ks = s, *qs = s;
    dsrt_tensor iw = {0}, iq = {0}, idx = {0};
    if (c->has_indexer) {
        DSRT_TRY(side_fork(F, dev, 0, &ks));
        DSRT_TRY(indexer_keys(F, ly, ks, x, F->select, &iw));
    }
    /* 1. qr = RMSNorm(q_a x); q = q_b qr; RoPE (interleaved) on each head's pe part (last) */
    dsrt_tensor qa, qr, q, q3, q_nope, q_pe;
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, ql), &qa));
    DSRT_TRY(linear(F, dev, x, &ly->q_a, 1.0f, &qa));
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, ql), &qr));
    DSRT_TRY(dsrt_rms_norm(s, &qa, &ly->q_a_norm, NULL, eps, &qr, NULL));
    if (c->has_indexer && F->select) {
        DSRT_TRY(side_fork(F, dev, 1, &qs)); /* the query chain waits for qr */
        DSRT_TRY(indexer_query(F, ly, qs, &qr, &iq));
        DSRT_TRY(side_after(F, dev, 0, 1));
        DSRT_TRY(indexer_select(F, ly, ks, &iq, &iw, &idx));
    }
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, nh * dq), &q));
    DSRT_TRY(linear(F, dev, &qr, &ly->q_b, 1.0f, &q));
    DSRT_TRY(view(&q, 0, 3, S3(T, nh, dq), S3(nh * dq, dq, 1), &q3));
    DSRT_TRY(view(&q, 0, 3, S3(T, nh, dn), S3(nh * dq, dq, 1), &q_nope));
    DSRT_TRY(view(&q, dn, 3, S3(T, nh, dr), S3(nh * dq, dq, 1), &q_pe));
    DSRT_TRY(dsrt_rope(s, &q_pe, &F->d[dev].pos, cs, true, &q_pe));
    /* 2. kv = kv_a x = [c | k_pe]; c = RMSNorm(c); RoPE on k_pe (shared by all heads) */
    dsrt_tensor kv, kv_c, k_pe, lat;
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, dc + dr), &kv));
    DSRT_TRY(linear(F, dev, x, &ly->kv_a, 1.0f, &kv));
    DSRT_TRY(view(&kv, 0, 2, S2(T, dc), S2(dc + dr, 1), &kv_c));
    DSRT_TRY(view(&kv, dc, 2, S2(T, dr), S2(dc + dr, 1), &k_pe));
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, dc), &lat));
    DSRT_TRY(dsrt_rms_norm(s, &kv_c, &ly->kv_a_norm, NULL, eps, &lat, NULL));
    DSRT_TRY(dsrt_rope(s, &k_pe, &F->d[dev].pos, cs, true, &k_pe));
    /* FP8 numerics: the latent makes an FP8 round trip (1x128 blocks) before it is used or cached */
    if (fp8(F)) {
        dsrt_tensor l8;
        DSRT_TRY(dsrt_arena_tensor_scaled(AR(F, dev), DSRT_E4M3, 2, S2(T, dc), DSRT_F32, &l8));
        DSRT_TRY(dsrt_act_quant(s, &lat, c->scale_ue8m0, &l8));
        DSRT_TRY(dsrt_convert(s, &l8, &lat));
    }
    /* 4. cache the latent and the rope key */
    DSRT_TRY(dsrt_cache_write(s, &lat, &F->d[dev].slots, &k_pe, m->cache_format, c->scale_ue8m0, &ly->kv_cache));
    /* the absorbed query does not need the indexer either */
    dsrt_tensor w_uk, w_uv, q_lat;
    if (!F->prefill) {
        const dsrt_tensor *wb = &ly->kv_b_deq;
        DSRT_TRY(view(wb, 0, 3, S3(nh, dn, dc), S3((dn + dv) * dc, dc, 1), &w_uk));
        DSRT_TRY(view(wb, dn * dc, 3, S3(nh, dv, dc), S3((dn + dv) * dc, dc, 1), &w_uv));
        DSRT_TRY(tmp(F, dev, act, 3, S3(T, nh, dc), &q_lat));
        DSRT_TRY(dsrt_head_linear(s, &q_nope, &w_uk, true, &q_lat));
    }
    DSRT_TRY(side_join(F, dev));
    const dsrt_tensor *sel = idx.buf ? &idx : NULL;
    if (sel) DSRT_TRY(dump(F, dev, sel, "indices", ly->index));
    /* 5-7. attention, expanded (prefill) or absorbed (everything else) */
    dsrt_tensor o;
    DSRT_TRY(tmp(F, dev, act, 3, S3(T, nh, dv), &o));
    if (F->prefill) {
        dsrt_tensor kvx, k_nope, v;
        DSRT_TRY(tmp(F, dev, act, 2, S2(T, nh * (dn + dv)), &kvx));
        DSRT_TRY(linear(F, dev, &lat, &ly->kv_b, 1.0f, &kvx));
        DSRT_TRY(view(&kvx, 0, 3, S3(T, nh, dn), S3(nh * (dn + dv), dn + dv, 1), &k_nope));
        DSRT_TRY(view(&kvx, dn, 3, S3(T, nh, dv), S3(nh * (dn + dv), dn + dv, 1), &v));
        DSRT_TRY(dsrt_mla_prefill(s, &q3, &k_nope, &k_pe, &v, &F->d[dev].kv_start, &F->d[dev].kv_len, sel, m->softmax_scale, &o));
    } else {
        dsrt_tensor o_lat;
        DSRT_TRY(tmp(F, dev, act, 3, S3(T, nh, dc), &o_lat));
        DSRT_TRY(dsrt_mla_decode(s, &q_lat, &q_pe, &ly->kv_cache, m->cache_format, m->page_size, &F->d[dev].block_table,
                                 &F->d[dev].row_seq, &F->d[dev].kv_len, sel, m->softmax_scale, &o_lat));
        DSRT_TRY(dsrt_head_linear(s, &o_lat, &w_uv, false, &o));
    }
    dsrt_tensor o2;
    DSRT_TRY(dsrt_tensor_reshape(&o, 2, S2(T, nh * dv), &o2));
    return linear(F, dev, &o2, &ly->o, 1.0f, out);
}

/* ---- §5 FFN ---- */
static dsrt_status swiglu_mlp(fwd *F, dsrt_stream *s, int dev, const dsrt_tensor *x, const dsrt_tensor *gate,
                              const dsrt_tensor *up, const dsrt_tensor *down, const dsrt_tensor *out)
{
    int64_t T = x->shape[0], I = gate->shape[0];
    dsrt_tensor g, u, a;
    DSRT_TRY(tmp(F, dev, F->m->act, 2, S2(T, I), &g));
    DSRT_TRY(tmp(F, dev, F->m->act, 2, S2(T, I), &u));
    DSRT_TRY(tmp(F, dev, F->m->act, 2, S2(T, I), &a));
    DSRT_TRY(linear_on(F, s, x, gate, 1.0f, &g));
    DSRT_TRY(linear_on(F, s, x, up, 1.0f, &u));
    DSRT_TRY(dsrt_swiglu(s, &g, &u, &a));
    return linear_on(F, s, &a, down, 1.0f, out);
}

/* Routed experts of one shard: dispatch rows by expert, grouped SwiGLU, weighted combine. */
static dsrt_status expert_shard(fwd *F, const dsrt_expert_shard *sh, const dsrt_tensor *x, const dsrt_tensor *ids,
                                const dsrt_tensor *w, const dsrt_tensor *shared, const dsrt_tensor *out)
{
    int dev = sh->dev;
    dsrt_stream *s = ST(F, dev);
    int64_t T = F->T, k = ids->shape[1], R = T * k, H = x->shape[1], I = sh->gate.shape[1];
    dsrt_dtype act = F->m->act;
    bool q = fp8(F) && sh->gate.dtype == DSRT_E4M3;
    bool pow2 = F->m->cfg.scale_ue8m0;
    dsrt_tensor xp, offs, rt, sr, g, u, a, yp;
    DSRT_TRY(tmp(F, dev, act, 2, S2(R, H), &xp));
    DSRT_TRY(tmp(F, dev, DSRT_I32, 1, S1(sh->count + 1), &offs));
    DSRT_TRY(tmp(F, dev, DSRT_I32, 1, S1(R), &rt));
    DSRT_TRY(tmp(F, dev, DSRT_I32, 2, S2(T, k), &sr));
    DSRT_TRY(dsrt_moe_dispatch(s, x, ids, (int)sh->e0, (int)sh->count, &xp, &offs, &rt, &sr));
    DSRT_TRY(tmp(F, dev, act, 2, S2(R, I), &g));
    DSRT_TRY(tmp(F, dev, act, 2, S2(R, I), &u));
    DSRT_TRY(tmp(F, dev, act, 2, S2(R, I), &a));
    DSRT_TRY(tmp(F, dev, act, 2, S2(R, H), &yp));
    DSRT_TRY(dsrt_linear_grouped(s, &xp, &sh->gate, &offs, q, pow2, &g));
    DSRT_TRY(dsrt_linear_grouped(s, &xp, &sh->up, &offs, q, pow2, &u));
    DSRT_TRY(dsrt_swiglu(s, &g, &u, &a));
    DSRT_TRY(dsrt_linear_grouped(s, &a, &sh->down, &offs, q && sh->down.dtype == DSRT_E4M3, pow2, &yp));
    if (shared) DSRT_TRY(side_join(F, dev)); /* the shared expert ran beside */
    return dsrt_moe_combine(s, &yp, &sr, ids, w, shared, out);
}

/* Copies a small tensor to a fresh arena tensor on another device. */
static dsrt_status copy_to(fwd *F, int from, const dsrt_tensor *src, int to, dsrt_tensor *dst)
{
    DSRT_TRY(tmp(F, to, src->dtype, src->ndim, src->shape, dst));
    DSRT_TRY(dsrt_stream_sync(ST(F, from)));
    return dsrt_stream_copy(ST(F, to), src->buf, src->offset, dst->buf, dst->offset, dsrt_tensor_nbytes(src));
}

/* The expert census (dsrt_model_set_expert_census): which routed experts the step's rows chose in
 * layer `l` (ids: T x k on stream s). */
static dsrt_status census(fwd *F, dsrt_stream *s, const dsrt_tensor *ids, int64_t l)
{
    dsrt_model *m = F->m;
    int64_t n = dsrt_tensor_numel(ids), E = m->cfg.n_routed_experts, count = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the expert census");
    dsrt_status st = dsrt_stream_read(s, ids->buf, ids->offset, v, dsrt_tensor_nbytes(ids));
    if (!st) st = dsrt_stream_sync(s);
    uint8_t *used = m->census_used + l * E;
    memset(used, 0, (size_t)E);
    for (int64_t i = 0; !st && i < n; i++) {
        if (v[i] < 0 || v[i] >= E) {
            st = dsrt_error(DSRT_CODE_INTERNAL, "expert census: layer %lld chose expert %d of %lld", (long long)l, (int)v[i],
                            (long long)E);
            break;
        }
        count += !used[v[i]];
        used[v[i]] = 1;
    }
    if (!st) m->census_count[l] = count;
    free(v);
    return st;
}

static dsrt_status moe(fwd *F, dsrt_layer *ly, const dsrt_tensor *x, const dsrt_tensor *out)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int dev = ly->ffn_dev;
    dsrt_stream *s = ST(F, dev);
    int64_t T = F->T, E = c->n_routed_experts, k = c->num_experts_per_tok, H = c->hidden_size;
    /* the shared expert (step 4) runs beside steps 1-3 and the routed experts */
    dsrt_tensor shared = {0};
    if (ly->sh_gate.buf) {
        dsrt_stream *ss;
        DSRT_TRY(side_fork(F, dev, 0, &ss));
        DSRT_TRY(tmp(F, dev, m->act, 2, S2(T, H), &shared));
        DSRT_TRY(swiglu_mlp(F, ss, dev, x, &ly->sh_gate, &ly->sh_up, &ly->sh_down, &shared));
    }
    /* 1-3. router in fp32: sigmoid scores, corrected choice, group limits, normalized weights */
    dsrt_tensor logits, ids, w;
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(T, E), &logits));
    DSRT_TRY(dsrt_linear(s, x, &ly->router, false, false, 1.0f, &logits));
    DSRT_TRY(tmp(F, dev, DSRT_I32, 2, S2(T, k), &ids));
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(T, k), &w));
    DSRT_TRY(dsrt_moe_gate(s, &logits, ly->router_bias.buf ? &ly->router_bias : NULL, (int)k, (int)c->n_group, (int)c->topk_group,
                           strcmp(c->scoring_func, "softmax") == 0 ? DSRT_SCORE_SOFTMAX : DSRT_SCORE_SIGMOID, c->norm_topk_prob,
                           (float)c->routed_scaling_factor, &ids, &w));
    if (m->census_used) DSRT_TRY(census(F, s, &ids, ly - m->layers));
    if (ly->n_shards == 1 && ly->shards[0].dev == dev)
        return expert_shard(F, &ly->shards[0], x, &ids, &w, shared.buf ? &shared : NULL, out); /* the official order */
    /* Experts over several devices: each shard's weighted sum in f32, added on the FFN device. */
    dsrt_tensor acc;
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(T, H), &acc));
    float zero = 0;
    DSRT_TRY(dsrt_stream_fill(s, acc.buf, acc.offset, dsrt_tensor_nbytes(&acc), &zero, sizeof zero));
    for (int i = 0; i < ly->n_shards; i++) {
        const dsrt_expert_shard *sh = &ly->shards[i];
        dsrt_tensor xs = *x, is = ids, ws = w, part;
        if (sh->dev != dev) {
            DSRT_TRY(copy_to(F, dev, x, sh->dev, &xs));
            DSRT_TRY(copy_to(F, dev, &ids, sh->dev, &is));
            DSRT_TRY(copy_to(F, dev, &w, sh->dev, &ws));
        }
        DSRT_TRY(tmp(F, sh->dev, DSRT_F32, 2, S2(T, H), &part));
        DSRT_TRY(expert_shard(F, sh, &xs, &is, &ws, NULL, &part));
        if (sh->dev != dev) {
            dsrt_tensor back;
            DSRT_TRY(copy_to(F, sh->dev, &part, dev, &back));
            part = back;
        }
        DSRT_TRY(dsrt_add(s, &acc, &part, &acc));
    }
    DSRT_TRY(side_join(F, dev));
    if (shared.buf) return dsrt_add(s, &acc, &shared, out);
    return dsrt_convert(s, &acc, out);
}

/* With DSRT_DUMP_DIR set, every block's output is written there as f32 rows (debugging a port:
 * compare a backend's activations with the CPU's, block by block). */
static dsrt_status dump(fwd *F, int dev, const dsrt_tensor *t, const char *what, int64_t layer)
{
    const char *dir = getenv("DSRT_DUMP_DIR");
    if (!dir || !*dir) return DSRT_OK;
    int64_t n = dsrt_tensor_numel(t);
    if (t->dtype == DSRT_U8) n = (n + 3) / 4;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory dumping %s", what);
    dsrt_tensor f = *t;
    dsrt_status st = DSRT_OK;
    if (t->dtype != DSRT_I32 && t->dtype != DSRT_U8) {
        st = tmp(F, dev, DSRT_F32, t->ndim, t->shape, &f);
        if (!st) st = dsrt_convert(ST(F, dev), t, &f);
    }
    if (!st) st = dsrt_stream_read(ST(F, dev), f.buf, f.offset, v, dsrt_tensor_nbytes(&f));
    if (!st) st = dsrt_stream_sync(ST(F, dev));
    if (!st) {
        char path[1100];
        snprintf(path, sizeof path, "%s/pos%d_layer%lld_%s.%s", dir, F->pos[0], (long long)layer, what,
                 t->dtype == DSRT_I32 ? "i32" : t->dtype == DSRT_U8 ? "u8" : "f32");
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(v, 1, dsrt_tensor_nbytes(&f), fp) != dsrt_tensor_nbytes(&f)) st = dsrt_error(DSRT_CODE_IO, "cannot write %s", path);
        if (fp) fclose(fp);
    }
    free(v);
    return st;
}

/* ---- one decoder layer: h = h + Attn(norm(h)); h = h + FFN(norm(h)) ---- */
static dsrt_status layer(fwd *F, dsrt_layer *ly, stream_pos *p)
{
    int64_t T = F->T, H = F->m->cfg.hidden_size;
    dsrt_dtype act = F->m->act;
    DSRT_TRY(stream_to(F, p, ly->attn_dev));
    dsrt_arena_mark mk = dsrt_arena_save(AR(F, p->dev));
    dsrt_tensor xn;
    int out;
    DSRT_TRY(tmp(F, p->dev, act, 2, S2(T, H), &xn));
    DSRT_TRY(norm_block_input(F, p, &ly->attn_norm, &xn, &out));
    DSRT_TRY(attention(F, ly, &xn, &F->d[p->dev].state[out]));
    DSRT_TRY(dump(F, p->dev, &F->d[p->dev].state[out], "attn", ly->index));
    p->h = out;
    dsrt_arena_restore(AR(F, ly->attn_dev), mk);

    DSRT_TRY(stream_to(F, p, ly->ffn_dev));
    int dev = p->dev;
    dsrt_arena_mark marks[DSRT_MAX_MODEL_DEVICES];
    for (int d = 0; d < F->m->n_devs; d++) marks[d] = dsrt_arena_save(AR(F, d));
    DSRT_TRY(tmp(F, dev, act, 2, S2(T, H), &xn));
    DSRT_TRY(norm_block_input(F, p, &ly->ffn_norm, &xn, &out));
    const dsrt_tensor *y = &F->d[dev].state[out];
    if (ly->moe) DSRT_TRY(moe(F, ly, &xn, y));
    else DSRT_TRY(swiglu_mlp(F, ST(F, dev), dev, &xn, &ly->gate, &ly->up, &ly->down, y));
    DSRT_TRY(dump(F, dev, y, "ffn", ly->index));
    p->h = out;
    /* shards on other devices finished when their results were copied back */
    for (int d = 0; d < F->m->n_devs; d++) dsrt_arena_restore(AR(F, d), marks[d]);
    return DSRT_OK;
}

/* ---- metadata of the rows ---- */
/* Pages for every item's new tokens: all or nothing across the batch (sequences that fail keep their
 * earlier pages; none of this forward's tokens counts until it succeeds). */
static dsrt_status reserve_pages(dsrt_model *m, const dsrt_batch_item *items, int n)
{
    int64_t need = 0;
    for (int i = 0; i < n; i++) {
        dsrt_seq *s = items[i].seq;
        int64_t end = s->len + items[i].n_tokens, pages = (end + m->page_size - 1) / m->page_size;
        if (end > m->n_pages * m->page_size)
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED,
                              "sequence %d would reach %lld tokens but the KV cache holds %lld (raise the context size)", i,
                              (long long)end, (long long)(m->n_pages * m->page_size));
        if (pages > s->n_pages) need += pages - s->n_pages;
    }
    if (need > m->n_free)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "the KV cache is full: %lld more pages of %d tokens are needed, %lld are free",
                          (long long)need, m->page_size, (long long)m->n_free);
    for (int i = 0; i < n; i++) DSRT_TRY(dsrt_seq_reserve(items[i].seq, items[i].seq->len + items[i].n_tokens));
    return DSRT_OK;
}

/* Checks the batch before anything changes: sequences, token ids. */
static dsrt_status validate_items(dsrt_model *m, const dsrt_batch_item *items, int n)
{
    for (int i = 0; i < n; i++) {
        if (!items[i].seq || items[i].seq->model != m)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "batch item %d has no sequence of this model", i);
        if (items[i].n_tokens < 0 || (items[i].n_tokens > 0 && !items[i].tokens))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "batch item %d has no tokens", i);
        for (int j = 0; j < i; j++)
            if (items[j].seq == items[i].seq)
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "batch items %d and %d feed the same sequence", j, i);
        for (int64_t j = 0; j < items[i].n_tokens; j++)
            if (items[i].tokens[j] < 0 || items[i].tokens[j] >= m->cfg.vocab_size)
                return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "token id %d at position %lld of batch item %d is outside the vocabulary (0..%lld)",
                                  items[i].tokens[j], (long long)j, i, (long long)(m->cfg.vocab_size - 1));
    }
    return DSRT_OK;
}

/* Rows of the forward, in item order, after the pages are reserved. */
static dsrt_status build_rows(fwd *F, const dsrt_batch_item *items, int n)
{
    dsrt_model *m = F->m;
    int64_t T = 0;
    F->prefill = true;
    F->max_pages = 1;
    F->max_kv = 0;
    for (int i = 0; i < n; i++) {
        T += items[i].n_tokens;
        if (items[i].seq->len > 0) F->prefill = false;
        int64_t end = items[i].seq->len + items[i].n_tokens, pages = (end + m->page_size - 1) / m->page_size;
        if (pages > F->max_pages) F->max_pages = (int)pages;
        if (end > F->max_kv) F->max_kv = end;
    }
    F->select = m->cfg.has_indexer && (F->max_kv > m->cfg.index_topk || m->always_select);
    F->kv_width = F->max_kv;
    /* Decode on one device replays recorded graphs; shapes round up to capacities so that one graph
     * serves many steps (score columns past a row's length are -inf, block table entries past its
     * pages -1: the results do not change). */
    F->graph = !F->prefill && m->n_devs == 1 && !m->graphs_off && !m->census_used && !getenv("DSRT_DUMP_DIR");
    if (F->graph) {
        int64_t cap = m->n_pages * m->page_size, w = (F->max_kv + 255) / 256 * 256;
        F->kv_width = w < cap ? w : cap;
        F->max_pages = (int)((F->kv_width + m->page_size - 1) / m->page_size);
    }
    F->T = T;
    F->n_seq = n;
    size_t t = (size_t)T + 1;
    F->tokens = malloc(t * sizeof(int32_t));
    F->pos = malloc(t * sizeof(int32_t));
    F->slots = malloc(t * sizeof(int32_t));
    F->row_seq = malloc(t * sizeof(int32_t));
    F->kv_len = malloc(t * sizeof(int32_t));
    F->kv_start = malloc(t * sizeof(int32_t));
    F->logit_rows = malloc(t * sizeof(int32_t));
    F->block_table = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1) * (size_t)F->max_pages);
    if (!F->tokens || !F->pos || !F->slots || !F->row_seq || !F->kv_len || !F->kv_start || !F->logit_rows || !F->block_table)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for %lld rows", (long long)T);
    int64_t r = 0;
    F->n_logit_rows = 0;
    for (int i = 0; i < n; i++) {
        dsrt_seq *s = items[i].seq;
        for (int p = 0; p < F->max_pages; p++) F->block_table[i * F->max_pages + p] = p < s->n_pages ? s->pages[p] : -1;
        int64_t base = r;
        for (int64_t j = 0; j < items[i].n_tokens; j++, r++) {
            int64_t pos = s->len + j;
            F->tokens[r] = items[i].tokens[j];
            F->pos[r] = (int32_t)pos;
            F->slots[r] = s->pages[pos / m->page_size] * m->page_size + (int32_t)(pos % m->page_size);
            F->row_seq[r] = i;
            F->kv_len[r] = (int32_t)(pos + 1);
            F->kv_start[r] = (int32_t)base;
            if (items[i].all_logits || j == items[i].n_tokens - 1) F->logit_rows[F->n_logit_rows++] = (int32_t)r;
        }
    }
    return DSRT_OK;
}

static dsrt_status upload_i32(fwd *F, int dev, const int32_t *src, int ndim, const int64_t *shape, dsrt_tensor *out)
{
    DSRT_TRY(tmp(F, dev, DSRT_I32, ndim, shape, out));
    return dsrt_stream_write(ST(F, dev), out->buf, out->offset, src, dsrt_tensor_nbytes(out));
}

static dsrt_status upload_rows(fwd *F)
{
    int64_t T = F->T, H = F->m->cfg.hidden_size;
    for (int d = 0; d < F->m->n_devs; d++) {
        DSRT_TRY(upload_i32(F, d, F->tokens, 1, S1(T), &F->d[d].tokens));
        DSRT_TRY(upload_i32(F, d, F->pos, 1, S1(T), &F->d[d].pos));
        DSRT_TRY(upload_i32(F, d, F->slots, 1, S1(T), &F->d[d].slots));
        DSRT_TRY(upload_i32(F, d, F->row_seq, 1, S1(T), &F->d[d].row_seq));
        DSRT_TRY(upload_i32(F, d, F->kv_len, 1, S1(T), &F->d[d].kv_len));
        DSRT_TRY(upload_i32(F, d, F->kv_start, 1, S1(T), &F->d[d].kv_start));
        DSRT_TRY(upload_i32(F, d, F->logit_rows, 1, S1(F->n_logit_rows), &F->d[d].logit_rows));
        DSRT_TRY(upload_i32(F, d, F->block_table, 2, S2(F->n_seq, F->max_pages), &F->d[d].block_table));
        for (int i = 0; i < DSRT_STATE_SLOTS; i++) DSRT_TRY(tmp(F, d, F->m->act, 2, S2(T, H), &F->d[d].state[i]));
    }
    return DSRT_OK;
}

static void free_rows(fwd *F)
{
    free(F->tokens);
    free(F->pos);
    free(F->slots);
    free(F->row_seq);
    free(F->kv_len);
    free(F->kv_start);
    free(F->logit_rows);
    free(F->block_table);
}

/* ---- §2 the whole model: embedding, layers, final norm and head; ops only (recordable) ---- */
static dsrt_status compute(fwd *F, dsrt_tensor *out)
{
    dsrt_model *m = F->m;
    const dsrt_model_config *c = &m->cfg;
    int64_t T = F->T, H = c->hidden_size, V = c->vocab_size;
    /* h0 = embed[token] */
    stream_pos p = {m->place.embed, 0, -1};
    DSRT_TRY(dsrt_embed(ST(F, p.dev), &m->embed, &F->d[p.dev].tokens, &F->d[p.dev].state[0]));
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        DSRT_TRY(dsrt_status_wrap(layer(F, &m->layers[l], &p), "layer %lld", (long long)l));
    /* logits = lm_head . RMSNorm(h), on the rows asked for, in fp32 */
    DSRT_TRY(stream_to(F, &p, m->place.head));
    int dev = p.dev;
    dsrt_tensor hn, sel;
    DSRT_TRY(tmp(F, dev, m->act, 2, S2(T, H), &hn));
    const dsrt_tensor *res = p.res >= 0 ? &F->d[dev].state[p.res] : NULL;
    DSRT_TRY(dsrt_rms_norm(ST(F, dev), &F->d[dev].state[p.h], &m->final_norm, res, (float)c->rms_norm_eps, &hn, res));
    DSRT_TRY(tmp(F, dev, m->act, 2, S2(F->n_logit_rows, H), &sel));
    DSRT_TRY(dsrt_embed(ST(F, dev), &hn, &F->d[dev].logit_rows, &sel)); /* row gather */
    DSRT_TRY(tmp(F, dev, DSRT_F32, 2, S2(F->n_logit_rows, V), out));
    return dsrt_linear(ST(F, dev), &sel, &m->lm_head, false, false, 1.0f, out);
}

/* The cache entry for this forward's shape (a free or the least recently used one when new). */
static dsrt_graph_entry *graph_entry(fwd *F)
{
    dsrt_model *m = F->m;
    uint64_t gen = m->devs[0].arena.generation;
    dsrt_graph_entry *victim = &m->graphs[0];
    for (int i = 0; i < DSRT_GRAPH_CACHE; i++) {
        dsrt_graph_entry *e = &m->graphs[i];
        if (e->seen && e->T == F->T && e->n_seq == F->n_seq && e->max_pages == F->max_pages && e->kv_width == F->kv_width &&
            e->n_logit_rows == F->n_logit_rows && e->select == F->select && e->arena_generation == gen)
            return e;
        if (e->last_use < victim->last_use) victim = e;
    }
    dsrt_graph_release(victim->graph); /* streams are idle between forwards */
    memset(victim, 0, sizeof *victim);
    *victim = (dsrt_graph_entry){F->T, F->n_seq, F->max_pages, F->kv_width, F->n_logit_rows, F->select, gen, 0, 0, NULL, {0}};
    return victim;
}

/* Runs the forward: uploads the rows' metadata, then the ops directly, or as a recorded graph
 * (recorded on the second forward of a shape, replayed from then on), and reads the logits. */
static dsrt_status run(fwd *F, float *logits)
{
    dsrt_model *m = F->m;
    DSRT_TRY(upload_rows(F));
    dsrt_tensor out;
    int head = m->place.head;
    dsrt_stream *s = ST(F, head);
    if (F->graph) {
        dsrt_graph_entry *e = graph_entry(F);
        e->last_use = ++m->graph_clock;
        if (!e->graph && e->seen) {
            dsrt_status st = dsrt_stream_begin_capture(s);
            if (dsrt_status_code(st) == DSRT_CODE_UNIMPLEMENTED) {
                dsrt_status_free(st);
                m->graphs_off = true;
            } else {
                DSRT_TRY(st);
                st = compute(F, &e->logits);
                dsrt_graph *g = NULL;
                dsrt_status end = dsrt_stream_end_capture(s, &g);
                if (st || end) {
                    dsrt_graph_release(g);
                    dsrt_status_free(end);
                    return st ? st : dsrt_error(DSRT_CODE_INTERNAL, "recording the decode graph failed");
                }
                e->graph = g;
            }
        }
        e->seen++;
        if (e->graph) {
            DSRT_TRY(dsrt_graph_launch(e->graph, s));
            m->graph_replays++;
            DSRT_TRY(dsrt_stream_read(s, e->logits.buf, e->logits.offset, logits, dsrt_tensor_nbytes(&e->logits)));
            return dsrt_stream_sync(s);
        }
    }
    DSRT_TRY(compute(F, &out));
    DSRT_TRY(dsrt_stream_read(s, out.buf, out.offset, logits, dsrt_tensor_nbytes(&out)));
    return dsrt_stream_sync(s);
}

dsrt_status dsrt_model_forward(dsrt_model *m, const dsrt_batch_item *items, int n_items, float *logits)
{
    if (!m || (!items && n_items) || n_items < 0) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "forward: bad arguments");
    fwd F;
    memset(&F, 0, sizeof F);
    F.m = m;
    dsrt_status st = validate_items(m, items, n_items);
    if (!st && dsrt_batch_logit_rows(items, n_items) == 0) return DSRT_OK; /* nothing to run */
    if (!st && !logits) st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "forward: no logits buffer");
    if (!st) st = reserve_pages(m, items, n_items);
    if (!st) st = build_rows(&F, items, n_items);
    if (!st) st = run(&F, logits);
    /* Wait for every device before the workspaces are reused; keep the first failure. */
    for (int d = 0; d < m->n_devs; d++) {
        dsrt_status s2 = dsrt_stream_sync(m->devs[d].stream);
        if (!st) st = s2;
        else dsrt_status_free(s2);
        for (int k = 0; k < DSRT_SIDE_STREAMS; k++) {
            if (!m->devs[d].side[k]) continue; /* joined on success; after a failure it may still run */
            s2 = dsrt_stream_sync(m->devs[d].side[k]);
            if (!st) st = s2;
            else dsrt_status_free(s2);
        }
        dsrt_arena_reset(&m->devs[d].arena);
    }
    if (!st)
        for (int i = 0; i < n_items; i++) items[i].seq->len += items[i].n_tokens;
    free_rows(&F);
    return st;
}
