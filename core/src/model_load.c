/* Loading: weights bound by their Hugging Face names (SPEC §7), checked against the config, placed on
 * their devices (zero-copy from the mapping where the device addresses host memory), FP8 weights kept
 * FP8 with their block scales (UE8M0 bytes when every scale is a power of two). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/block_dequant.h"
#include "dsrt/half.h"
#include "dsrt/ue8m0.h"
#include "model_internal.h"

typedef struct {
    dsrt_model *m;
    const dsrt_model_options *opt;
    uint64_t done, total;
    bool warned_scales;
    uint8_t *fp8_block; /* generated checkpoints: one period of an FP8 tensor (DSRT_SYNTHETIC_FP8_PERIOD) */
} loader;

static dsrt_status own(dsrt_model *m, dsrt_buffer *b)
{
    if (m->n_owned == m->cap_owned) {
        size_t c = m->cap_owned ? m->cap_owned * 2 : 256;
        dsrt_buffer **p = realloc(m->owned, c * sizeof *p);
        if (!p) {
            dsrt_buffer_release(b);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory");
        }
        m->owned = p;
        m->cap_owned = c;
    }
    m->owned[m->n_owned++] = b;
    m->weight_bytes += dsrt_buffer_size(b);
    return DSRT_OK;
}

/* A generated FP8 tensor `t` straight into `bytes` of `b` at `off`: its period block written once, then
 * doubled by device copies, so no host buffer of the tensor's size. Returns 0 (and does nothing) when
 * `t` has data. */
static dsrt_status fill_generated_fp8(loader *L, dsrt_stream *s, const dsrt_st_tensor *t, dsrt_buffer *b, size_t off,
                                      size_t bytes, int *done)
{
    *done = 0;
    if (!L->fp8_block && !(L->fp8_block = malloc(DSRT_SYNTHETIC_FP8_PERIOD)))
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    size_t have;
    if (!dsrt_checkpoint_fp8_period(L->m->ck, t, L->fp8_block, &have)) return DSRT_OK;
    if (have > bytes) have = bytes;
    DSRT_TRY(dsrt_stream_write(s, b, off, L->fp8_block, have));
    while (have < bytes) { /* source [0, have) and destination [have, have + c) never overlap */
        size_t c = have < bytes - have ? have : bytes - have;
        DSRT_TRY(dsrt_stream_copy(s, b, off, b, off + have, c));
        have += c;
    }
    *done = 1;
    return dsrt_stream_sync(s); /* the block is rewritten for the next tensor */
}

/* A device buffer holding `bytes` from host memory `src`: the mapping itself when `src` lives as long
 * as the model (the checkpoint mapping), the device can address it and it is aligned; else an upload. */
static dsrt_status place_bytes(loader *L, int dev, const void *src, size_t bytes, bool persistent, dsrt_buffer **out)
{
    dsrt_model_dev *d = &L->m->devs[dev];
    if (persistent && ((uintptr_t)src % 64) == 0) {
        dsrt_status st = dsrt_buffer_wrap_host(d->dev, (void *)src, bytes, 1, out);
        if (!st) return own(L->m, *out);
        if (dsrt_status_code(st) != DSRT_CODE_UNIMPLEMENTED) return st;
        dsrt_status_free(st);
    }
    DSRT_TRY(dsrt_buffer_alloc(d->dev, bytes, out));
    DSRT_TRY(own(L->m, *out));
    DSRT_TRY(dsrt_stream_write(d->stream, *out, 0, src, bytes));
    return dsrt_stream_sync(d->stream); /* the source may be temporary */
}

static void progress(loader *L, uint64_t bytes)
{
    L->done += bytes;
    if (L->opt && L->opt->progress) L->opt->progress(L->opt->progress_ctx, L->done, L->total);
}

static dsrt_status expect_shape(const dsrt_st_tensor *t, int ndim, const int64_t *shape, const char *cfg_hint)
{
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return DSRT_OK;
    char want[96] = "[", got[96] = "[";
    for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
    for (int i = 0; i < t->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    strcat(want, "]");
    strcat(got, "]");
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor '%s' has shape %s but config.json implies %s (%s)", t->name, got, want, cfg_hint);
}

static bool is_float_dtype(dsrt_dtype d) { return d == DSRT_F32 || d == DSRT_BF16 || d == DSRT_F16; }

/* Reads weight_scale_inv of an FP8 weight [rows, cols] into f32 values; checks its shape. */
static dsrt_status read_scales(loader *L, const char *wname, int64_t rows, int64_t cols, float **out, int64_t *n)
{
    char sname[512];
    size_t l = strlen(wname);
    if (l < 7 || strcmp(wname + l - 7, ".weight") != 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "FP8 tensor '%s' is not a '.weight'", wname);
    snprintf(sname, sizeof sname, "%.*s.weight_scale_inv", (int)(l - 7), wname);
    const dsrt_st_tensor *s;
    DSRT_TRY(dsrt_status_wrap(dsrt_checkpoint_get(L->m->ck, sname, &s), "FP8 weight '%s' needs its scales", wname));
    int64_t shape[2] = {(rows + 127) / 128, (cols + 127) / 128};
    DSRT_TRY(expect_shape(s, 2, shape, "one scale per 128x128 block"));
    *n = shape[0] * shape[1];
    const void *data;
    int owned;
    DSRT_TRY(dsrt_checkpoint_data(L->m->ck, s, &data, &owned));
    float *v = malloc(sizeof(float) * (size_t)*n);
    if (!v) {
        if (owned) free((void *)data);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory reading %s", sname);
    }
    for (int64_t i = 0; i < *n; i++) {
        if (s->dtype == DSRT_F32) memcpy(&v[i], (const char *)data + 4 * i, 4);
        else if (s->dtype == DSRT_BF16) {
            uint16_t h;
            memcpy(&h, (const char *)data + 2 * i, 2);
            v[i] = dsrt_bf16_to_f32(h);
        } else if (s->dtype == DSRT_UE8M0) v[i] = dsrt_ue8m0_to_f32(((const uint8_t *)data)[i]);
        else {
            if (owned) free((void *)data);
            free(v);
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor '%s' has dtype %s; scales must be F32, BF16 or F8_E8M0", sname,
                              s->dtype_name);
        }
        if (!(v[i] > 0) || !isfinite(v[i])) {
            float bad = v[i];
            if (owned) free((void *)data);
            free(v);
            return dsrt_error(DSRT_CODE_DATA_LOSS, "tensor '%s' holds scale %g at index %lld; scales must be positive and finite",
                              sname, (double)bad, (long long)i);
        }
    }
    if (owned) free((void *)data);
    progress(L, s->nbytes);
    *out = v;
    return DSRT_OK;
}

/* Scale values as the device will hold them: UE8M0 bytes when all are powers of two, else f32. */
static dsrt_status scales_payload(loader *L, const char *wname, const float *v, int64_t n, void **payload, size_t *bytes,
                                  dsrt_dtype *dt)
{
    uint8_t *e = malloc((size_t)n + 1);
    if (!e) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    size_t bad = 0;
    dsrt_status st = dsrt_scales_to_ue8m0(v, (size_t)n, e, wname, &bad);
    if (!st) {
        *payload = e;
        *bytes = (size_t)n;
        *dt = DSRT_UE8M0;
        return DSRT_OK;
    }
    if (!L->warned_scales) {
        fprintf(stderr, "dsrt: warning: %s; keeping f32 scales for such weights\n", dsrt_status_message(st));
        L->warned_scales = true;
    }
    dsrt_status_free(st);
    free(e);
    float *f = malloc(sizeof(float) * (size_t)n);
    if (!f) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(f, v, sizeof(float) * (size_t)n);
    *payload = f;
    *bytes = sizeof(float) * (size_t)n;
    *dt = DSRT_F32;
    return DSRT_OK;
}

/* Binds a weight: `name` with the expected shape on device `dev`; FP8 weights get their scales. */
static dsrt_status load_weight(loader *L, int dev, const char *name, int ndim, const int64_t *shape, bool allow_fp8,
                               const char *cfg_hint, dsrt_tensor *out)
{
    const dsrt_st_tensor *t;
    DSRT_TRY(dsrt_checkpoint_get(L->m->ck, name, &t));
    if (!(is_float_dtype(t->dtype) || (allow_fp8 && t->dtype == DSRT_E4M3)))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor '%s' has dtype %s, expected %s", name, t->dtype_name,
                          allow_fp8 ? "F8_E4M3, BF16, F16 or F32" : "BF16, F16 or F32");
    DSRT_TRY(expect_shape(t, ndim, shape, cfg_hint));
    dsrt_buffer *b;
    if (t->dtype == DSRT_E4M3 && !t->data) {
        int done;
        DSRT_TRY(dsrt_buffer_alloc(L->m->devs[dev].dev, t->nbytes, &b));
        DSRT_TRY(own(L->m, b));
        DSRT_TRY(fill_generated_fp8(L, L->m->devs[dev].stream, t, b, 0, t->nbytes, &done));
        if (!done) return dsrt_error(DSRT_CODE_DATA_LOSS, "tensor '%s' has no data", name);
    } else {
        const void *data;
        int owned;
        DSRT_TRY(dsrt_checkpoint_data(L->m->ck, t, &data, &owned));
        dsrt_status pst = place_bytes(L, dev, data, t->nbytes, !owned, &b);
        if (owned) free((void *)data);
        DSRT_TRY(dsrt_status_wrap(pst, "loading '%s'", name));
    }
    DSRT_TRY(dsrt_tensor_make(b, 0, t->dtype, ndim, shape, out));
    out->name = t->name;
    progress(L, t->nbytes);
    if (t->dtype != DSRT_E4M3) return DSRT_OK;
    if (ndim != 2) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "FP8 tensor '%s' must be a matrix", name);
    float *v;
    int64_t n;
    DSRT_TRY(read_scales(L, name, shape[0], shape[1], &v, &n));
    void *payload;
    size_t bytes;
    dsrt_dtype sdt;
    dsrt_status st = scales_payload(L, name, v, n, &payload, &bytes, &sdt);
    free(v);
    if (st) return st;
    dsrt_buffer *sb = NULL;
    st = dsrt_buffer_alloc(L->m->devs[dev].dev, bytes, &sb);
    if (!st) st = own(L->m, sb);
    if (!st) st = dsrt_stream_write(L->m->devs[dev].stream, sb, 0, payload, bytes);
    if (!st) st = dsrt_stream_sync(L->m->devs[dev].stream);
    free(payload);
    if (st) return st;
    return dsrt_tensor_set_scale(out, sb, 0, sdt, 128, 128);
}

static dsrt_status load_optional_weight(loader *L, int dev, const char *name, int ndim, const int64_t *shape, const char *hint,
                                        dsrt_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!dsrt_checkpoint_find(L->m->ck, name)) return DSRT_OK;
    return load_weight(L, dev, name, ndim, shape, false, hint, out);
}

#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)
#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})

/* kv_b_proj dequantized once into the activation dtype, [nh, nope+v, dc] (the official decode does the
 * same: fp8 * scale in fp32, rounded to bf16). */
static dsrt_status load_kv_b_deq(loader *L, dsrt_layer *ly, const char *name)
{
    dsrt_model *m = L->m;
    const dsrt_model_config *c = &m->cfg;
    const dsrt_st_tensor *t;
    DSRT_TRY(dsrt_checkpoint_get(m->ck, name, &t));
    int64_t rows = c->num_attention_heads * (c->qk_nope_head_dim + c->v_head_dim), cols = c->kv_lora_rank;
    const void *data;
    int owned;
    DSRT_TRY(dsrt_checkpoint_data(m->ck, t, &data, &owned));
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!w) {
        if (owned) free((void *)data);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory dequantizing %s", name);
    }
    dsrt_status st = DSRT_OK;
    if (t->dtype == DSRT_E4M3) {
        float *v;
        int64_t n;
        st = read_scales(L, name, rows, cols, &v, &n);
        if (!st) {
            st = dsrt_dequant_blocks(data, DSRT_E4M3, rows, cols, v, DSRT_F32, 128, 128, w);
            free(v);
        }
    } else {
        for (int64_t i = 0; i < rows * cols; i++) {
            if (t->dtype == DSRT_F32) memcpy(&w[i], (const char *)data + 4 * i, 4);
            else {
                uint16_t h;
                memcpy(&h, (const char *)data + 2 * i, 2);
                w[i] = t->dtype == DSRT_BF16 ? dsrt_bf16_to_f32(h) : dsrt_f16_to_f32(h);
            }
        }
    }
    if (owned) free((void *)data);
    size_t es = dsrt_dtype_size(m->act), bytes = (size_t)(rows * cols) * es;
    void *payload = w;
    if (!st && m->act == DSRT_BF16) {
        uint16_t *h = malloc(bytes);
        if (!h) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        else {
            for (int64_t i = 0; i < rows * cols; i++) h[i] = dsrt_f32_to_bf16(w[i]);
            payload = h;
        }
    }
    dsrt_buffer *b = NULL;
    dsrt_model_dev *d = &m->devs[ly->attn_dev];
    if (!st) st = dsrt_buffer_alloc(d->dev, bytes, &b);
    if (!st) st = own(m, b);
    if (!st) st = dsrt_stream_write(d->stream, b, 0, payload, bytes);
    if (!st) st = dsrt_stream_sync(d->stream);
    if (payload != w) free(payload);
    free(w);
    if (st) return st;
    int64_t shape[3] = {c->num_attention_heads, c->qk_nope_head_dim + c->v_head_dim, c->kv_lora_rank};
    return dsrt_tensor_make(b, 0, m->act, 3, shape, &ly->kv_b_deq);
}

/* Experts e0..e0+count-1 of a layer stacked into [count, N, K] buffers (one per projection). */
static dsrt_status load_expert_stack(loader *L, int dev, int64_t layer, int64_t e0, int64_t count, const char *proj, int64_t N,
                                     int64_t K, dsrt_tensor *out)
{
    dsrt_model *m = L->m;
    char name[256];
    const dsrt_st_tensor *first;
    NAME(name, "model.layers.%lld.mlp.experts.%lld.%s.weight", (long long)layer, (long long)e0, proj);
    DSRT_TRY(dsrt_checkpoint_get(m->ck, name, &first));
    dsrt_dtype dt = first->dtype;
    if (!(is_float_dtype(dt) || dt == DSRT_E4M3))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor '%s' has dtype %s", name, first->dtype_name);
    size_t per = (size_t)(N * K) * dsrt_dtype_size(dt);
    int64_t nsc = ((N + 127) / 128) * ((K + 127) / 128);
    dsrt_model_dev *d = &m->devs[dev];
    dsrt_buffer *b;
    DSRT_TRY(dsrt_buffer_alloc(d->dev, per * (size_t)count, &b));
    DSRT_TRY(own(m, b));
    float *scales = NULL;
    if (dt == DSRT_E4M3) {
        scales = malloc(sizeof(float) * (size_t)(nsc * count));
        if (!scales) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    }
    dsrt_status st = DSRT_OK;
    for (int64_t e = 0; e < count && !st; e++) {
        const dsrt_st_tensor *t;
        NAME(name, "model.layers.%lld.mlp.experts.%lld.%s.weight", (long long)layer, (long long)(e0 + e), proj);
        st = dsrt_checkpoint_get(m->ck, name, &t);
        if (!st && t->dtype != dt)
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor '%s' has dtype %s but expert %lld's has %s", name, t->dtype_name,
                            (long long)e0, first->dtype_name);
        if (!st) st = expect_shape(t, 2, S2(N, K), "expert width from moe_intermediate_size");
        const void *data = NULL;
        int owned = 0;
        int filled = 0;
        if (!st) st = fill_generated_fp8(L, d->stream, t, b, per * (size_t)e, per, &filled);
        if (!filled) {
            if (!st) st = dsrt_checkpoint_data(m->ck, t, &data, &owned);
            if (!st) st = dsrt_stream_write(d->stream, b, per * (size_t)e, data, per);
            if (!st && owned) st = dsrt_stream_sync(d->stream); /* the generated bytes are freed next */
            if (owned) free((void *)data);
        }
        if (!st) progress(L, t->nbytes);
        if (!st && scales) {
            float *v;
            int64_t n;
            st = read_scales(L, name, N, K, &v, &n);
            if (!st) {
                memcpy(scales + e * nsc, v, sizeof(float) * (size_t)nsc);
                free(v);
            }
        }
    }
    if (!st) st = dsrt_stream_sync(d->stream); /* the mapping stays, but order the writes before use */
    if (!st) st = dsrt_tensor_make(b, 0, dt, 3, (const int64_t[]){count, N, K}, out);
    if (!st && scales) {
        void *payload;
        size_t bytes;
        dsrt_dtype sdt;
        st = scales_payload(L, name, scales, nsc * count, &payload, &bytes, &sdt);
        dsrt_buffer *sb = NULL;
        if (!st) {
            st = dsrt_buffer_alloc(d->dev, bytes, &sb);
            if (!st) st = own(m, sb);
            if (!st) st = dsrt_stream_write(d->stream, sb, 0, payload, bytes);
            if (!st) st = dsrt_stream_sync(d->stream);
            free(payload);
        }
        if (!st) st = dsrt_tensor_set_scale(out, sb, 0, sdt, 128, 128);
    }
    free(scales);
    return st;
}

static dsrt_status load_layer(loader *L, int64_t l)
{
    dsrt_model *m = L->m;
    const dsrt_model_config *c = &m->cfg;
    dsrt_layer *ly = &m->layers[l];
    char n[256];
    const char *p = "model.layers";
    int64_t H = c->hidden_size, nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int64_t dc = c->kv_lora_rank, ql = c->q_lora_rank;
    int a = ly->attn_dev, f = ly->ffn_dev;
    ly->index = l;
    ly->moe = dsrt_config_layer_is_moe(c, l);
    NAME(n, "%s.%lld.input_layernorm.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 1, S1(H), false, "hidden_size", &ly->attn_norm));
    NAME(n, "%s.%lld.post_attention_layernorm.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, f, n, 1, S1(H), false, "hidden_size", &ly->ffn_norm));
    NAME(n, "%s.%lld.self_attn.q_a_proj.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 2, S2(ql, H), true, "q_lora_rank x hidden_size", &ly->q_a));
    NAME(n, "%s.%lld.self_attn.q_a_layernorm.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 1, S1(ql), false, "q_lora_rank", &ly->q_a_norm));
    NAME(n, "%s.%lld.self_attn.q_b_proj.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 2, S2(nh * (dn + dr), ql), true, "heads x (qk_nope + qk_rope) by q_lora_rank", &ly->q_b));
    NAME(n, "%s.%lld.self_attn.kv_a_proj_with_mqa.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 2, S2(dc + dr, H), true, "kv_lora_rank + qk_rope by hidden_size", &ly->kv_a));
    NAME(n, "%s.%lld.self_attn.kv_a_layernorm.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 1, S1(dc), false, "kv_lora_rank", &ly->kv_a_norm));
    NAME(n, "%s.%lld.self_attn.kv_b_proj.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 2, S2(nh * (dn + dv), dc), true, "heads x (qk_nope + v_head) by kv_lora_rank", &ly->kv_b));
    DSRT_TRY(load_kv_b_deq(L, ly, n));
    NAME(n, "%s.%lld.self_attn.o_proj.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, a, n, 2, S2(H, nh * dv), true, "hidden_size by heads x v_head", &ly->o));
    if (c->has_indexer) {
        int64_t ih = c->index_n_heads, id = c->index_head_dim;
        NAME(n, "%s.%lld.self_attn.indexer.wq_b.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, a, n, 2, S2(ih * id, ql), true, "index_n_heads x index_head_dim by q_lora_rank", &ly->idx_wq_b));
        NAME(n, "%s.%lld.self_attn.indexer.wk.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, a, n, 2, S2(id, H), true, "index_head_dim by hidden_size", &ly->idx_wk));
        NAME(n, "%s.%lld.self_attn.indexer.k_norm.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, a, n, 1, S1(id), false, "index_head_dim", &ly->idx_k_norm_w));
        NAME(n, "%s.%lld.self_attn.indexer.k_norm.bias", p, (long long)l);
        DSRT_TRY(load_weight(L, a, n, 1, S1(id), false, "index_head_dim", &ly->idx_k_norm_b));
        NAME(n, "%s.%lld.self_attn.indexer.weights_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, a, n, 2, S2(ih, H), false, "index_n_heads by hidden_size", &ly->idx_weights_proj));
    }
    if (!ly->moe) {
        int64_t I = c->intermediate_size;
        NAME(n, "%s.%lld.mlp.gate_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, f, n, 2, S2(I, H), true, "intermediate_size by hidden_size", &ly->gate));
        NAME(n, "%s.%lld.mlp.up_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, f, n, 2, S2(I, H), true, "intermediate_size by hidden_size", &ly->up));
        NAME(n, "%s.%lld.mlp.down_proj.weight", p, (long long)l);
        return load_weight(L, f, n, 2, S2(H, I), true, "hidden_size by intermediate_size", &ly->down);
    }
    int64_t E = c->n_routed_experts, I = c->moe_intermediate_size;
    NAME(n, "%s.%lld.mlp.gate.weight", p, (long long)l);
    DSRT_TRY(load_weight(L, f, n, 2, S2(E, H), false, "n_routed_experts by hidden_size", &ly->router));
    NAME(n, "%s.%lld.mlp.gate.e_score_correction_bias", p, (long long)l);
    DSRT_TRY(load_optional_weight(L, f, n, 1, S1(E), "n_routed_experts", &ly->router_bias));
    if (ly->router_bias.buf && ly->router_bias.dtype != DSRT_F32) {
        /* ops take an f32 bias: convert once */
        const dsrt_st_tensor *t = dsrt_checkpoint_find(m->ck, n);
        const void *data;
        int owned;
        DSRT_TRY(dsrt_checkpoint_data(m->ck, t, &data, &owned));
        float *v = malloc(sizeof(float) * (size_t)E);
        if (!v) {
            if (owned) free((void *)data);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        }
        for (int64_t e = 0; e < E; e++) {
            uint16_t h;
            memcpy(&h, (const char *)data + 2 * e, 2);
            v[e] = t->dtype == DSRT_BF16 ? dsrt_bf16_to_f32(h) : dsrt_f16_to_f32(h);
        }
        if (owned) free((void *)data);
        dsrt_buffer *b = NULL;
        dsrt_status st = place_bytes(L, f, v, sizeof(float) * (size_t)E, false, &b);
        if (!st) st = dsrt_tensor_make(b, 0, DSRT_F32, 1, S1(E), &ly->router_bias);
        free(v);
        if (st) return st;
    }
    if (c->n_shared_experts > 0) {
        int64_t Is = I * c->n_shared_experts;
        NAME(n, "%s.%lld.mlp.shared_experts.gate_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, f, n, 2, S2(Is, H), true, "shared experts width by hidden_size", &ly->sh_gate));
        NAME(n, "%s.%lld.mlp.shared_experts.up_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, f, n, 2, S2(Is, H), true, "shared experts width by hidden_size", &ly->sh_up));
        NAME(n, "%s.%lld.mlp.shared_experts.down_proj.weight", p, (long long)l);
        DSRT_TRY(load_weight(L, f, n, 2, S2(H, Is), true, "hidden_size by shared experts width", &ly->sh_down));
    }
    /* shards: maximal runs of consecutive experts on one device */
    const int *ex = m->place.experts + l * E;
    for (int64_t e = 0; e < E;) {
        int64_t e1 = e + 1;
        while (e1 < E && ex[e1] == ex[e]) e1++;
        dsrt_expert_shard *s = realloc(ly->shards, sizeof *s * (size_t)(ly->n_shards + 1));
        if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        ly->shards = s;
        dsrt_expert_shard *sh = &ly->shards[ly->n_shards++];
        memset(sh, 0, sizeof *sh);
        sh->dev = ex[e];
        sh->e0 = e;
        sh->count = e1 - e;
        DSRT_TRY(load_expert_stack(L, sh->dev, l, e, sh->count, "gate_proj", I, H, &sh->gate));
        DSRT_TRY(load_expert_stack(L, sh->dev, l, e, sh->count, "up_proj", I, H, &sh->up));
        DSRT_TRY(load_expert_stack(L, sh->dev, l, e, sh->count, "down_proj", H, I, &sh->down));
        e = e1;
    }
    return DSRT_OK;
}

/* cos/sin tables of every position the cache can hold, on each device that runs attention. */
static dsrt_status rope_tables(dsrt_model *m)
{
    const dsrt_model_config *c = &m->cfg;
    int64_t R = c->qk_rope_head_dim, half = R / 2, P = m->rope_positions;
    float *inv = malloc(sizeof(float) * (size_t)half), *tab = malloc(sizeof(float) * (size_t)(P * half * 2));
    if (!inv || !tab) {
        free(inv);
        free(tab);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for RoPE tables");
    }
    dsrt_config_rope_inv_freq(c, R, inv);
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < half; i++) {
            float ang = (float)p * inv[i]; /* fp32 angle, as torch.outer does */
            tab[(p * half + i) * 2] = cosf(ang);
            tab[(p * half + i) * 2 + 1] = sinf(ang);
        }
    dsrt_status st = DSRT_OK;
    for (int d = 0; d < m->n_devs && !st; d++) {
        bool used = false;
        for (int64_t l = 0; l < c->num_hidden_layers; l++) used |= m->layers[l].attn_dev == d;
        if (!used) continue;
        dsrt_buffer *b = NULL;
        size_t bytes = sizeof(float) * (size_t)(P * half * 2);
        st = dsrt_buffer_alloc(m->devs[d].dev, bytes, &b);
        if (!st) st = own(m, b);
        if (!st) st = dsrt_stream_write(m->devs[d].stream, b, 0, tab, bytes);
        if (!st) st = dsrt_stream_sync(m->devs[d].stream);
        if (!st) st = dsrt_tensor_make(b, 0, DSRT_F32, 3, (const int64_t[]){P, half, 2}, &m->devs[d].rope_cos_sin);
    }
    free(inv);
    free(tab);
    return st;
}

static dsrt_status load_all(loader *L)
{
    dsrt_model *m = L->m;
    const dsrt_model_config *c = &m->cfg;
    int64_t H = c->hidden_size, V = c->vocab_size;
    DSRT_TRY(load_weight(L, m->place.embed, "model.embed_tokens.weight", 2, S2(V, H), false, "vocab_size by hidden_size", &m->embed));
    DSRT_TRY(load_weight(L, m->place.head, "model.norm.weight", 1, S1(H), false, "hidden_size", &m->final_norm));
    if (c->tie_word_embeddings && !dsrt_checkpoint_find(m->ck, "lm_head.weight")) {
        if (m->place.head == m->place.embed) m->lm_head = m->embed;
        else DSRT_TRY(load_weight(L, m->place.head, "model.embed_tokens.weight", 2, S2(V, H), false, "tied", &m->lm_head));
    } else {
        DSRT_TRY(load_weight(L, m->place.head, "lm_head.weight", 2, S2(V, H), true, "vocab_size by hidden_size", &m->lm_head));
    }
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        DSRT_TRY(dsrt_status_wrap(load_layer(L, l), "layer %lld", (long long)l));
    /* MTP layers (index num_hidden_layers...) are recognized and left for speculative decoding. */
    return rope_tables(m);
}

dsrt_status dsrt_model_load_weights(dsrt_model *m, const dsrt_model_options *opt)
{
    loader L = {m, opt, 0, dsrt_checkpoint_bytes(m->ck), false, NULL};
    dsrt_status st = load_all(&L);
    free(L.fp8_block);
    return st;
}

dsrt_status dsrt_model_alloc_caches(dsrt_model *m)
{
    const dsrt_model_config *c = &m->cfg;
    int64_t slots = m->n_pages * m->page_size;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        dsrt_layer *ly = &m->layers[l];
        dsrt_device *dev = m->devs[ly->attn_dev].dev;
        int64_t dc = c->kv_lora_rank, dr = c->qk_rope_head_dim, id = c->index_head_dim;
        dsrt_dtype kdt = m->cache_format == DSRT_CACHE_FP8 ? DSRT_U8 : DSRT_F32;
        int64_t kw = m->cache_format == DSRT_CACHE_FP8 ? dc + 4 * ((dc + 127) / 128) + 2 * dr : dc + dr;
        size_t bytes = (size_t)(slots * kw) * dsrt_dtype_size(kdt);
        DSRT_TRY(dsrt_status_wrap(dsrt_buffer_alloc(dev, bytes, &ly->kv_buf), "KV cache of layer %lld (%lld tokens)", (long long)l,
                                  (long long)slots));
        DSRT_TRY(dsrt_tensor_make(ly->kv_buf, 0, kdt, 2, S2(slots, kw), &ly->kv_cache));
        if (c->has_indexer) {
            int64_t iw = m->cache_format == DSRT_CACHE_FP8 ? id + 4 * ((id + 127) / 128) : id;
            bytes = (size_t)(slots * iw) * dsrt_dtype_size(kdt);
            DSRT_TRY(dsrt_status_wrap(dsrt_buffer_alloc(dev, bytes, &ly->idx_buf), "indexer key cache of layer %lld", (long long)l));
            DSRT_TRY(dsrt_tensor_make(ly->idx_buf, 0, kdt, 2, S2(slots, iw), &ly->idx_cache));
        }
    }
    return DSRT_OK;
}
