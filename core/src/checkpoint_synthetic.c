/* Generated checkpoints for benchmarks: the tensor list of a configuration, values made on demand from
 * a seed and the tensor's name (so the same name always gets the same values). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/config.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "dsrt/safetensors.h"
#include "checkpoint_internal.h"

static dsrt_status add(dsrt_checkpoint *ck, const char *name, dsrt_dtype dt, int64_t r, int64_t c)
{
    dsrt_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = strdup(name);
    if (!t.name) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    t.dtype = dt;
    t.dtype_known = 1;
    snprintf(t.dtype_name, sizeof t.dtype_name, "%s", dsrt_dtype_name(dt));
    t.ndim = c > 0 ? 2 : 1;
    t.shape[0] = r;
    t.shape[1] = c;
    t.nbytes = (size_t)(r * (c > 0 ? c : 1)) * dsrt_dtype_size(dt);
    t.shard = -1;
    dsrt_status st = dsrt_checkpoint_add_tensor(ck, &t);
    if (st) free(t.name);
    return st;
}

/* A linear weight [r, c]: FP8 with its scale grid when the config is FP8, else bf16. `name` comes from
 * the callers' 256-byte buffers. */
static dsrt_status add_linear(dsrt_checkpoint *ck, const dsrt_model_config *cfg, const char *name, int64_t r, int64_t c)
{
    char w[320];
    snprintf(w, sizeof w, "%s.weight", name);
    if (!cfg->fp8) return add(ck, w, DSRT_BF16, r, c);
    DSRT_TRY(add(ck, w, DSRT_E4M3, r, c));
    snprintf(w, sizeof w, "%s.weight_scale_inv", name);
    return add(ck, w, DSRT_F32, (r + 127) / 128, (c + 127) / 128);
}

dsrt_status dsrt_checkpoint_synthetic(const dsrt_model_config *c, uint64_t seed, dsrt_checkpoint **out)
{
    dsrt_checkpoint *ck;
    DSRT_TRY(dsrt_checkpoint_new("(synthetic)", &ck));
    ck->seed = seed;
    int64_t H = c->hidden_size, nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, dc = c->kv_lora_rank, ql = c->q_lora_rank;
    char n[256];
    dsrt_status st = add(ck, "model.embed_tokens.weight", DSRT_BF16, c->vocab_size, H);
    if (!st) st = add(ck, "model.norm.weight", DSRT_BF16, H, 0);
    if (!st) st = add(ck, "lm_head.weight", DSRT_BF16, c->vocab_size, H);
    for (int64_t l = 0; l < c->num_hidden_layers && !st; l++) {
#define P(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
        st = add(ck, P("model.layers.%lld.input_layernorm.weight", (long long)l), DSRT_BF16, H, 0);
        if (!st) st = add(ck, P("model.layers.%lld.post_attention_layernorm.weight", (long long)l), DSRT_BF16, H, 0);
        if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.q_a_proj", (long long)l), ql, H);
        if (!st) st = add(ck, P("model.layers.%lld.self_attn.q_a_layernorm.weight", (long long)l), DSRT_BF16, ql, 0);
        if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.q_b_proj", (long long)l), nh * (dn + dr), ql);
        if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.kv_a_proj_with_mqa", (long long)l), dc + dr, H);
        if (!st) st = add(ck, P("model.layers.%lld.self_attn.kv_a_layernorm.weight", (long long)l), DSRT_BF16, dc, 0);
        if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.kv_b_proj", (long long)l), nh * (dn + dv), dc);
        if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.o_proj", (long long)l), H, nh * dv);
        if (c->has_indexer) {
            int64_t ih = c->index_n_heads, id = c->index_head_dim;
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.indexer.wq_b", (long long)l), ih * id, ql);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.self_attn.indexer.wk", (long long)l), id, H);
            if (!st) st = add(ck, P("model.layers.%lld.self_attn.indexer.k_norm.weight", (long long)l), DSRT_BF16, id, 0);
            if (!st) st = add(ck, P("model.layers.%lld.self_attn.indexer.k_norm.bias", (long long)l), DSRT_BF16, id, 0);
            if (!st) st = add(ck, P("model.layers.%lld.self_attn.indexer.weights_proj.weight", (long long)l), DSRT_BF16, ih, H);
        }
        if (!dsrt_config_layer_is_moe(c, l)) {
            int64_t I = c->intermediate_size;
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.gate_proj", (long long)l), I, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.up_proj", (long long)l), I, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.down_proj", (long long)l), H, I);
            continue;
        }
        int64_t E = c->n_routed_experts, I = c->moe_intermediate_size, Is = I * c->n_shared_experts;
        if (!st) st = add(ck, P("model.layers.%lld.mlp.gate.weight", (long long)l), DSRT_BF16, E, H);
        if (!st) st = add(ck, P("model.layers.%lld.mlp.gate.e_score_correction_bias", (long long)l), DSRT_F32, E, 0);
        if (Is > 0) {
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.shared_experts.gate_proj", (long long)l), Is, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.shared_experts.up_proj", (long long)l), Is, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.shared_experts.down_proj", (long long)l), H, Is);
        }
        for (int64_t e = 0; e < E && !st; e++) {
            st = add_linear(ck, c, P("model.layers.%lld.mlp.experts.%lld.gate_proj", (long long)l, (long long)e), I, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.experts.%lld.up_proj", (long long)l, (long long)e), I, H);
            if (!st) st = add_linear(ck, c, P("model.layers.%lld.mlp.experts.%lld.down_proj", (long long)l, (long long)e), H, I);
        }
#undef P
    }
    if (!st) st = dsrt_checkpoint_finish(ck);
    if (st) {
        dsrt_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return DSRT_OK;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint8_t fp8_code(uint8_t b) { return (uint8_t)((b & 0x80) | ((4 + (b & 0x3f) % 7) << 3) | (b & 7)); }

/* Codes with exponent fields 4..10 (magnitudes in [1/8, 8), no NaN), from the name's hash. Varied
 * codes matter: with one short pattern every row of a matrix is the same, each linear layer's output is a
 * constant vector, and the router sends a whole batch to the same few experts. */
int dsrt_checkpoint_fp8_period(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, uint8_t *block, size_t *period)
{
    if (t->data || t->dtype != DSRT_E4M3) return 0;
    uint64_t s = ck->seed;
    for (const char *p = t->name; *p; p++) s = mix(s ^ (uint64_t)(unsigned char)*p);
    size_t n = t->nbytes < DSRT_SYNTHETIC_FP8_PERIOD ? t->nbytes : DSRT_SYNTHETIC_FP8_PERIOD;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = mix(s + i);
        for (size_t k = 0; k < 8 && i + k < n; k++) block[i + k] = fp8_code((uint8_t)(r >> (8 * k)));
    }
    *period = n;
    return 1;
}

/* Values: norms 1 (bias 0), bf16 matrices ~ U(-a, a) with a = sqrt(3/cols), FP8 codes spread over
 * +-[1/8, 8) and scales 2^k putting the weights near the same a; correction biases small. */
dsrt_status dsrt_checkpoint_generate(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, void *dst)
{
    uint64_t s = ck->seed;
    for (const char *p = t->name; *p; p++) s = mix(s ^ (uint64_t)(unsigned char)*p);
    int64_t n = (int64_t)(t->nbytes / dsrt_dtype_size(t->dtype));
    int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
    size_t l = strlen(t->name);
    bool is_norm = t->ndim == 1 && !strstr(t->name, "bias");
    if (t->dtype == DSRT_E4M3) {
        uint8_t *d = dst;
        size_t have, total = t->nbytes;
        dsrt_checkpoint_fp8_period(ck, t, d, &have); /* dst holds at least the first period */
        while (have < total) { /* repeat what is there, doubling */
            size_t c = have < total - have ? have : total - have;
            memcpy(d + have, d, c);
            have += c;
        }
        return DSRT_OK;
    }
    if (t->dtype == DSRT_F32 && l > 17 && strcmp(t->name + l - 17, ".weight_scale_inv") == 0) {
        /* fp8 magnitudes average ~2: scale to about sqrt(3/K) / 2 with K the weight's columns */
        float *f = dst;
        int64_t K = t->shape[1] * 128;
        int e = (int)floor(log2(sqrt(3.0 / (double)K) / 2.0));
        for (int64_t i = 0; i < n; i++) f[i] = ldexpf(1.0f, e);
        return DSRT_OK;
    }
    float a = is_norm ? 0.0f : (strstr(t->name, "bias") ? 0.01f : (float)sqrt(3.0 / (double)cols));
    for (int64_t i = 0; i < n; i++) {
        float u = (float)(mix(s + (uint64_t)i) >> 40) / 16777216.0f * 2.0f - 1.0f;
        float v = is_norm ? 1.0f : a * u;
        if (t->dtype == DSRT_F32) ((float *)dst)[i] = v;
        else if (t->dtype == DSRT_BF16) ((uint16_t *)dst)[i] = dsrt_f32_to_bf16(v);
        else ((uint16_t *)dst)[i] = dsrt_f32_to_f16(v);
    }
    return DSRT_OK;
}
