/* The model configuration: Hugging Face config.json of DeepSeek-V3.2 (and V3/V3.1) models (SPEC §1). */
#ifndef DSRT_CONFIG_H
#define DSRT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsrt_rope_config {
    double theta;
    bool yarn;                 /* rope_scaling of type yarn present */
    double factor;
    int64_t original_max_pos;  /* original_max_position_embeddings */
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} dsrt_rope_config;

typedef struct dsrt_model_config {
    char model_type[64];
    int64_t vocab_size;
    int64_t hidden_size;            /* H */
    int64_t intermediate_size;      /* dense FFN width */
    int64_t moe_intermediate_size;
    int64_t num_hidden_layers;
    int64_t num_nextn_predict_layers; /* MTP modules after the main layers */
    int64_t first_k_dense_replace;
    int64_t num_attention_heads;    /* nh */
    int64_t q_lora_rank;            /* 0: no q compression (V2-Lite style), unsupported */
    int64_t kv_lora_rank;           /* dc */
    int64_t qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int64_t n_routed_experts, num_experts_per_tok, n_shared_experts;
    int64_t n_group, topk_group;
    double routed_scaling_factor;
    bool norm_topk_prob;
    char scoring_func[16];          /* sigmoid | softmax */
    char topk_method[32];
    bool has_indexer;               /* index_* present: V3.2 DSA; else dense MLA (V3/V3.1) */
    int64_t index_n_heads, index_head_dim, index_topk;
    double rms_norm_eps;
    dsrt_rope_config rope;
    int64_t max_position_embeddings;
    int64_t bos_token_id, eos_token_id;
    /* quantization_config */
    bool fp8;                       /* quant_method fp8: FP8 weights with block scales */
    bool scale_ue8m0;               /* scale_fmt ue8m0: power-of-two scales, activation scales too */
    int64_t weight_block[2];
    bool tie_word_embeddings;
} dsrt_model_config;

/* Parses config.json at `path`. Errors name the file and the field (missing, wrong type, invalid value,
 * inconsistent with another field). */
dsrt_status dsrt_config_load(const char *path, dsrt_model_config *out);
/* The same from JSON text (`origin` names it in messages). */
dsrt_status dsrt_config_parse(const char *json, const char *origin, dsrt_model_config *out);

/* Derived values. */
static inline int64_t dsrt_config_qk_head_dim(const dsrt_model_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
static inline bool dsrt_config_layer_is_moe(const dsrt_model_config *c, int64_t layer)
{
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace;
}
/* The attention softmax scale: (nope+rope)^-0.5, times mscale^2 with YaRN (SPEC §3.5). */
double dsrt_config_softmax_scale(const dsrt_model_config *c);
/* inv_freq[i] for i < rope_dim/2, with the YaRN correction when configured (SPEC §3.3). */
void dsrt_config_rope_inv_freq(const dsrt_model_config *c, int64_t rope_dim, float *inv_freq);

#ifdef __cplusplus
}
#endif
#endif
