/* config.json parsing with cJSON; every field of SPEC §1, with checks that name the field at fault. */
#include "dsrt/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/file_util.h"

typedef struct {
    const cJSON *root;
    const char *origin;
} cfg_src;

static dsrt_status cfg_int(const cfg_src *s, const char *key, bool required, int64_t dflt, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: required field '%s' is missing", s->origin, key);
        *out = dflt;
        return DSRT_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9.0e15)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be an integer", s->origin, key);
    *out = (int64_t)v->valuedouble;
    return DSRT_OK;
}

static dsrt_status cfg_num(const cfg_src *s, const char *key, bool required, double dflt, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: required field '%s' is missing", s->origin, key);
        *out = dflt;
        return DSRT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be a number", s->origin, key);
    *out = v->valuedouble;
    return DSRT_OK;
}

static dsrt_status cfg_bool(const cfg_src *s, const char *key, bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return DSRT_OK;
    }
    if (!cJSON_IsBool(v)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be true or false", s->origin, key);
    *out = cJSON_IsTrue(v);
    return DSRT_OK;
}

static dsrt_status cfg_str(const cfg_src *s, const char *key, const char *dflt, char *out, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        snprintf(out, len, "%s", dflt);
        return DSRT_OK;
    }
    if (!cJSON_IsString(v)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be a string", s->origin, key);
    if (strlen(v->valuestring) >= len)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' is too long", s->origin, key);
    snprintf(out, len, "%s", v->valuestring);
    return DSRT_OK;
}

/* eos_token_id may be a list; the first entry is the model's end of sequence. */
static dsrt_status cfg_token(const cfg_src *s, const char *key, int64_t dflt, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return DSRT_OK;
    }
    if (!cJSON_IsNumber(v)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be a token id", s->origin, key);
    *out = (int64_t)v->valuedouble;
    return DSRT_OK;
}

static dsrt_status positive(const cfg_src *s, const char *key, int64_t v)
{
    if (v <= 0) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: field '%s' must be positive (found %lld)", s->origin, key, (long long)v);
    return DSRT_OK;
}

static dsrt_status parse_rope(const cfg_src *s, dsrt_model_config *c)
{
    DSRT_TRY(cfg_num(s, "rope_theta", false, 10000.0, &c->rope.theta));
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(s->root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) rs = cJSON_GetObjectItemCaseSensitive(s->root, "rope_parameters");
    c->rope.yarn = false;
    if (!rs || cJSON_IsNull(rs)) return DSRT_OK;
    if (!cJSON_IsObject(rs)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: 'rope_scaling' must be an object", s->origin);
    cfg_src r = {rs, s->origin};
    char type[32];
    DSRT_TRY(cfg_str(&r, "type", "", type, sizeof type));
    if (!type[0]) DSRT_TRY(cfg_str(&r, "rope_type", "default", type, sizeof type));
    double theta;
    DSRT_TRY(cfg_num(&r, "rope_theta", false, c->rope.theta, &theta)); /* transformers 5 keeps theta here */
    c->rope.theta = theta;
    if (strcmp(type, "default") == 0) return DSRT_OK;
    if (strcmp(type, "yarn") != 0)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: rope_scaling type '%s' is not supported (expected yarn)", s->origin, type);
    c->rope.yarn = true;
    DSRT_TRY(cfg_num(&r, "factor", true, 1, &c->rope.factor));
    DSRT_TRY(cfg_int(&r, "original_max_position_embeddings", true, 0, &c->rope.original_max_pos));
    DSRT_TRY(cfg_num(&r, "beta_fast", false, 32, &c->rope.beta_fast));
    DSRT_TRY(cfg_num(&r, "beta_slow", false, 1, &c->rope.beta_slow));
    DSRT_TRY(cfg_num(&r, "mscale", false, 1, &c->rope.mscale));
    DSRT_TRY(cfg_num(&r, "mscale_all_dim", false, 0, &c->rope.mscale_all_dim));
    if (!(c->rope.factor >= 1)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rope_scaling.factor %g must be >= 1", s->origin, c->rope.factor);
    DSRT_TRY(positive(s, "rope_scaling.original_max_position_embeddings", c->rope.original_max_pos));
    return DSRT_OK;
}

static dsrt_status parse_quant(const cfg_src *s, dsrt_model_config *c)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(s->root, "quantization_config");
    c->fp8 = false;
    c->scale_ue8m0 = false;
    c->weight_block[0] = c->weight_block[1] = 128;
    if (!q || cJSON_IsNull(q)) return DSRT_OK;
    if (!cJSON_IsObject(q)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: 'quantization_config' must be an object", s->origin);
    cfg_src r = {q, s->origin};
    char method[32], fmt[32], scale_fmt[32];
    DSRT_TRY(cfg_str(&r, "quant_method", "", method, sizeof method));
    if (strcmp(method, "fp8") != 0)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: quantization_config.quant_method '%s' is not supported (expected fp8)",
                          s->origin, method);
    DSRT_TRY(cfg_str(&r, "fmt", "e4m3", fmt, sizeof fmt));
    if (strcmp(fmt, "e4m3") != 0)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: quantization_config.fmt '%s' is not supported (expected e4m3)", s->origin, fmt);
    DSRT_TRY(cfg_str(&r, "scale_fmt", "", scale_fmt, sizeof scale_fmt));
    c->fp8 = true;
    c->scale_ue8m0 = strcmp(scale_fmt, "ue8m0") == 0;
    const cJSON *wb = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (wb) {
        if (!cJSON_IsArray(wb) || cJSON_GetArraySize(wb) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(wb, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(wb, 1)))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: quantization_config.weight_block_size must be [rows, cols]", s->origin);
        c->weight_block[0] = (int64_t)cJSON_GetArrayItem(wb, 0)->valuedouble;
        c->weight_block[1] = (int64_t)cJSON_GetArrayItem(wb, 1)->valuedouble;
        if (c->weight_block[0] != 128 || c->weight_block[1] != 128)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: weight_block_size [%lld, %lld] is not supported (expected [128, 128])",
                              s->origin, (long long)c->weight_block[0], (long long)c->weight_block[1]);
    }
    return DSRT_OK;
}

static dsrt_status check(const cfg_src *s, dsrt_model_config *c)
{
    static const char *names[] = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
                                  "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "q_lora_rank"};
    int64_t vals[] = {c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->kv_lora_rank,
                      c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->q_lora_rank};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) DSRT_TRY(positive(s, names[i], vals[i]));
    if (c->qk_rope_head_dim % 2)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: qk_rope_head_dim %lld must be even", s->origin, (long long)c->qk_rope_head_dim);
    if (c->first_k_dense_replace < 0 || c->first_k_dense_replace > c->num_hidden_layers)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: first_k_dense_replace %lld is outside 0..num_hidden_layers (%lld)",
                          s->origin, (long long)c->first_k_dense_replace, (long long)c->num_hidden_layers);
    if (c->first_k_dense_replace > 0) DSRT_TRY(positive(s, "intermediate_size", c->intermediate_size));
    if (c->first_k_dense_replace < c->num_hidden_layers) {
        DSRT_TRY(positive(s, "n_routed_experts", c->n_routed_experts));
        DSRT_TRY(positive(s, "num_experts_per_tok", c->num_experts_per_tok));
        DSRT_TRY(positive(s, "moe_intermediate_size", c->moe_intermediate_size));
        DSRT_TRY(positive(s, "n_group", c->n_group));
        if (c->n_routed_experts % c->n_group)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: n_group %lld does not divide n_routed_experts %lld", s->origin,
                              (long long)c->n_group, (long long)c->n_routed_experts);
        if (c->topk_group < 1 || c->topk_group > c->n_group)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: topk_group %lld must be in 1..n_group (%lld)", s->origin,
                              (long long)c->topk_group, (long long)c->n_group);
        if (c->num_experts_per_tok > c->topk_group * (c->n_routed_experts / c->n_group))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "%s: num_experts_per_tok %lld exceeds the %lld experts of topk_group (%lld) groups", s->origin,
                              (long long)c->num_experts_per_tok, (long long)(c->topk_group * (c->n_routed_experts / c->n_group)),
                              (long long)c->topk_group);
        if (strcmp(c->scoring_func, "sigmoid") != 0 && strcmp(c->scoring_func, "softmax") != 0)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: scoring_func '%s' is not supported (sigmoid or softmax)", s->origin,
                              c->scoring_func);
    }
    if (c->has_indexer) {
        DSRT_TRY(positive(s, "index_n_heads", c->index_n_heads));
        DSRT_TRY(positive(s, "index_head_dim", c->index_head_dim));
        DSRT_TRY(positive(s, "index_topk", c->index_topk));
        if (c->index_head_dim < c->qk_rope_head_dim)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: index_head_dim %lld is smaller than qk_rope_head_dim %lld", s->origin,
                              (long long)c->index_head_dim, (long long)c->qk_rope_head_dim);
        if (c->index_head_dim & (c->index_head_dim - 1))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: index_head_dim %lld must be a power of two (Hadamard rotation)",
                              s->origin, (long long)c->index_head_dim);
    }
    if (!(c->rms_norm_eps > 0)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rms_norm_eps must be positive", s->origin);
    if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: bos/eos token ids (%lld/%lld) are outside the vocabulary of %lld",
                          s->origin, (long long)c->bos_token_id, (long long)c->eos_token_id, (long long)c->vocab_size);
    return DSRT_OK;
}

dsrt_status dsrt_config_parse(const char *json, const char *origin, dsrt_model_config *c)
{
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json ? (size_t)(at - json) : 0;
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: malformed JSON near byte %zu", origin, off);
    }
    dsrt_status st = DSRT_OK;
    if (!cJSON_IsObject(root)) {
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: the top level must be a JSON object", origin);
        goto done;
    }
    cfg_src s = {root, origin};
    int64_t dflt_dense;
#define T(x)                                                                                                          \
    do {                                                                                                              \
        st = (x);                                                                                                     \
        if (st) goto done;                                                                                            \
    } while (0)
    T(cfg_str(&s, "model_type", "deepseek_v32", c->model_type, sizeof c->model_type));
    T(cfg_int(&s, "vocab_size", true, 0, &c->vocab_size));
    T(cfg_int(&s, "hidden_size", true, 0, &c->hidden_size));
    T(cfg_int(&s, "intermediate_size", false, 0, &c->intermediate_size));
    T(cfg_int(&s, "moe_intermediate_size", false, 0, &c->moe_intermediate_size));
    T(cfg_int(&s, "num_hidden_layers", true, 0, &c->num_hidden_layers));
    T(cfg_int(&s, "num_nextn_predict_layers", false, 0, &c->num_nextn_predict_layers));
    T(cfg_int(&s, "n_routed_experts", false, 0, &c->n_routed_experts));
    dflt_dense = c->n_routed_experts > 0 ? 0 : c->num_hidden_layers;
    T(cfg_int(&s, "first_k_dense_replace", false, dflt_dense, &c->first_k_dense_replace));
    T(cfg_int(&s, "num_attention_heads", true, 0, &c->num_attention_heads));
    T(cfg_int(&s, "q_lora_rank", true, 0, &c->q_lora_rank));
    T(cfg_int(&s, "kv_lora_rank", true, 0, &c->kv_lora_rank));
    T(cfg_int(&s, "qk_nope_head_dim", true, 0, &c->qk_nope_head_dim));
    T(cfg_int(&s, "qk_rope_head_dim", true, 0, &c->qk_rope_head_dim));
    T(cfg_int(&s, "v_head_dim", true, 0, &c->v_head_dim));
    T(cfg_int(&s, "num_experts_per_tok", false, 0, &c->num_experts_per_tok));
    T(cfg_int(&s, "n_shared_experts", false, 0, &c->n_shared_experts));
    T(cfg_int(&s, "n_group", false, 1, &c->n_group));
    T(cfg_int(&s, "topk_group", false, 1, &c->topk_group));
    T(cfg_num(&s, "routed_scaling_factor", false, 1.0, &c->routed_scaling_factor));
    T(cfg_bool(&s, "norm_topk_prob", false, &c->norm_topk_prob));
    T(cfg_str(&s, "scoring_func", "softmax", c->scoring_func, sizeof c->scoring_func));
    T(cfg_str(&s, "topk_method", "greedy", c->topk_method, sizeof c->topk_method));
    c->has_indexer = cJSON_GetObjectItemCaseSensitive(root, "index_topk") != NULL;
    T(cfg_int(&s, "index_n_heads", false, 0, &c->index_n_heads));
    T(cfg_int(&s, "index_head_dim", false, 0, &c->index_head_dim));
    T(cfg_int(&s, "index_topk", false, 0, &c->index_topk));
    T(cfg_num(&s, "rms_norm_eps", false, 1e-6, &c->rms_norm_eps));
    T(cfg_int(&s, "max_position_embeddings", false, 4096, &c->max_position_embeddings));
    T(cfg_token(&s, "bos_token_id", 0, &c->bos_token_id));
    T(cfg_token(&s, "eos_token_id", 1, &c->eos_token_id));
    T(cfg_bool(&s, "tie_word_embeddings", false, &c->tie_word_embeddings));
    T(parse_rope(&s, c));
    T(parse_quant(&s, c));
    T(check(&s, c));
#undef T
done:
    cJSON_Delete(root);
    return st;
}

dsrt_status dsrt_config_load(const char *path, dsrt_model_config *out)
{
    char *text = NULL;
    size_t len = 0;
    DSRT_TRY(dsrt_read_file(path, 64u << 20, &text, &len));
    dsrt_status st = dsrt_config_parse(text, path, out);
    free(text);
    return st;
}

static double yarn_mscale(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0; }

double dsrt_config_softmax_scale(const dsrt_model_config *c)
{
    double s = pow((double)dsrt_config_qk_head_dim(c), -0.5);
    if (c->rope.yarn) {
        double m = c->rope.mscale_all_dim != 0 ? c->rope.mscale_all_dim : c->rope.mscale;
        double ms = yarn_mscale(c->rope.factor, m);
        s *= ms * ms;
    }
    return s;
}

/* YaRN (as the official precompute_freqs_cis and transformers' yarn initializer): frequencies blend
 * from interpolated (divided by factor) to original across the correction range [low, high]. */
static double correction_dim(double rotations, int64_t dim, double base, double max_pos)
{
    return (double)dim * log(max_pos / (rotations * 2 * M_PI)) / (2 * log(base));
}

void dsrt_config_rope_inv_freq(const dsrt_model_config *c, int64_t dim, float *inv)
{
    int64_t half = dim / 2;
    for (int64_t i = 0; i < half; i++) {
        /* computed in f32 like torch: base ** (arange(0, dim, 2) / dim) */
        float e = (float)(2 * i) / (float)dim;
        inv[i] = 1.0f / powf((float)c->rope.theta, e);
    }
    if (!c->rope.yarn) return;
    double lo = floor(correction_dim(c->rope.beta_fast, dim, c->rope.theta, (double)c->rope.original_max_pos));
    double hi = ceil(correction_dim(c->rope.beta_slow, dim, c->rope.theta, (double)c->rope.original_max_pos));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = (double)(dim - 1);
    if (lo == hi) hi += 0.001;
    for (int64_t i = 0; i < half; i++) {
        float ramp = (float)(((double)i - lo) / (hi - lo));
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float smooth = 1.0f - ramp;
        inv[i] = inv[i] / (float)c->rope.factor * (1.0f - smooth) + inv[i] * smooth;
    }
}
