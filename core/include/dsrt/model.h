/* A loaded DeepSeek-V3.2 model: weights on their devices, paged KV cache, the forward pass. */
#ifndef DSRT_MODEL_H
#define DSRT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt/config.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_numerics {
    DSRT_NUMERICS_AUTO = 0, /* fp8 for FP8 checkpoints, f32 otherwise */
    DSRT_NUMERICS_F32,      /* weights dequantized in kernels, fp32 activations: matches transformers' float32 */
    DSRT_NUMERICS_FP8       /* the official FP8 inference numerics (SPEC §6, §9) */
} dsrt_numerics;

const char *dsrt_numerics_name(dsrt_numerics n);
dsrt_status dsrt_numerics_parse(const char *s, dsrt_numerics *out);

typedef struct dsrt_model_options {
    const char *device;        /* every block's device unless a placement says otherwise: "cpu", "cuda:0"; NULL = cpu */
    const char *placement;     /* placement JSON file (docs/placement.md), or NULL */
    dsrt_numerics numerics;
    int64_t max_context;       /* KV capacity in tokens over all sequences; 0 = 4096 */
    int page_size;             /* KV cache page size in tokens; 0 = 64 */
    bool always_select;        /* run the indexer's top-k even when every position fits in index_topk
                                  (tests: DSA over all positions must equal dense attention) */
    /* Benchmarks: with a config.json text here, `dir` is ignored and the weights are generated
     * (dsrt_checkpoint_synthetic) from synthetic_seed. */
    const char *synthetic_config;
    uint64_t synthetic_seed;
    /* A model in memory (the embedded default model): config.json text and one safetensors file's bytes,
     * which must outlive the model; `dir` then only names it in messages. */
    const char *memory_config;
    const void *memory_weights;
    size_t memory_weights_size;
    /* Called while loading with bytes done and total; may be NULL. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} dsrt_model_options;

typedef struct dsrt_model dsrt_model;
typedef struct dsrt_seq dsrt_seq;

dsrt_status dsrt_model_load(const char *dir, const dsrt_model_options *opt, dsrt_model **out);
void dsrt_model_free(dsrt_model *m);
const dsrt_model_config *dsrt_model_get_config(const dsrt_model *m);
dsrt_numerics dsrt_model_numerics(const dsrt_model *m);
/* Bytes of weights the model holds on its devices. */
uint64_t dsrt_model_weight_bytes(const dsrt_model *m);
/* How many forwards ran as a replayed recorded graph (decode steps on one device). */
uint64_t dsrt_model_graph_replays(const dsrt_model *m);
/* A one-line description of where each block runs. */
const char *dsrt_model_placement_summary(const dsrt_model *m);
/* Expert census: while on, each forward records which routed experts every MoE layer used (one
 * synchronization and a download of the choices per layer, and no recorded graph), so that a
 * benchmark can count the expert weights a step really read. Turning it on clears the record. */
dsrt_status dsrt_model_set_expert_census(dsrt_model *m, bool on);
/* How many distinct routed experts layer `layer` used in the last forward with the census on, and
 * in `used` (n_routed_experts bytes, may be NULL) a 1 for each; -1 for a layer without routed
 * experts, one not counted yet, or with the census off. */
int64_t dsrt_model_experts_used(const dsrt_model *m, int64_t layer, uint8_t *used);

/* A sequence owns its KV cache pages; its length is the number of tokens fed so far. */
dsrt_status dsrt_seq_create(dsrt_model *m, dsrt_seq **out);
void dsrt_seq_free(dsrt_seq *s);
int64_t dsrt_seq_length(const dsrt_seq *s);
/* Benchmarks: advances the sequence by n positions without computing them (their cache rows keep
 * whatever the cache held), so decode can be timed at a long context without its prefill. */
dsrt_status dsrt_seq_skip(dsrt_seq *s, int64_t n);
/* Forgets every position from `n` on (n <= length), freeing the pages no longer needed: a conversation
 * keeps the cache of the prompt prefix it shares with the next turn's prompt. */
dsrt_status dsrt_seq_truncate(dsrt_seq *s, int64_t n);

/* One sequence's part of a forward: `n_tokens` new tokens appended at the sequence's end. */
typedef struct dsrt_batch_item {
    dsrt_seq *seq;
    const int32_t *tokens;
    int64_t n_tokens;
    bool all_logits; /* logits for every new token (else only the last) */
} dsrt_batch_item;

/* Runs the model over every item's new tokens (prefill, chunk or decode, batched) and writes float32
 * logits rows to `logits` in item order: n_tokens rows for items with all_logits, else one row. Token
 * ids are checked (an id outside the vocabulary fails naming it and its position); so is the cache
 * capacity. Items whose sequences are all empty run the expanded (prefill) attention; others the
 * absorbed form. */
dsrt_status dsrt_model_forward(dsrt_model *m, const dsrt_batch_item *items, int n_items, float *logits);

/* Number of logits rows dsrt_model_forward writes for these items. */
int64_t dsrt_batch_logit_rows(const dsrt_batch_item *items, int n_items);

#ifdef __cplusplus
}
#endif
#endif
