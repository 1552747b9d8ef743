/* Private structures of the model: weights per block, placement, KV cache, per-device workspaces. */
#ifndef DSRT_MODEL_INTERNAL_H
#define DSRT_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt/dsrt.h"
#include "dsrt/model.h"
#include "dsrt/safetensors.h"

#define DSRT_MAX_MODEL_DEVICES 16

/* Placement is data: which device (index into model->devs) runs each block. */
typedef struct dsrt_placement {
    int n_devices;
    char device_specs[DSRT_MAX_MODEL_DEVICES][64];
    int embed, head;
    int *attention;  /* [layers] */
    int *ffn;        /* [layers]: dense FFN, router and shared expert */
    int *experts;    /* [layers * n_routed_experts] */
} dsrt_placement;

dsrt_status dsrt_placement_default(dsrt_placement *p, const char *device, int64_t layers, int64_t experts);
dsrt_status dsrt_placement_load(dsrt_placement *p, const char *path, int64_t layers, int64_t experts);
void dsrt_placement_free(dsrt_placement *p);

/* A bump allocator over device buffers, reset per forward; grows by adding chunks (older chunks stay
 * valid until the reset, since queued work may still use them). */
typedef struct dsrt_arena {
    dsrt_device *dev;
    dsrt_buffer **chunks;
    size_t *sizes;
    int n, cur;
    size_t off;
    size_t used_total, high_water;
    uint64_t generation; /* changes whenever the chunks change: recorded graphs hold their addresses */
} dsrt_arena;

typedef struct dsrt_arena_mark {
    int cur;
    size_t off, used_total;
} dsrt_arena_mark;

void dsrt_arena_init(dsrt_arena *a, dsrt_device *dev);
void dsrt_arena_destroy(dsrt_arena *a);
void dsrt_arena_reset(dsrt_arena *a); /* after the device's stream synced */
dsrt_status dsrt_arena_tensor(dsrt_arena *a, dsrt_dtype dt, int ndim, const int64_t *shape, dsrt_tensor *out);
/* A tensor with a 1 x 128 block-scale companion (for FP8 activations). */
dsrt_status dsrt_arena_tensor_scaled(dsrt_arena *a, dsrt_dtype dt, int ndim, const int64_t *shape, dsrt_dtype sdt,
                                     dsrt_tensor *out);
dsrt_arena_mark dsrt_arena_save(const dsrt_arena *a);
void dsrt_arena_restore(dsrt_arena *a, dsrt_arena_mark m);

#define DSRT_SIDE_STREAMS 2

/* One device the model uses. */
typedef struct dsrt_model_dev {
    dsrt_device *dev;
    dsrt_stream *stream;
    /* more streams for independent chains, where the device runs streams concurrently
     * (dsrt_device_caps.concurrent_streams; DSRT_SIDE_STREAM=0 or 1 keeps fewer); NULL otherwise */
    dsrt_stream *side[DSRT_SIDE_STREAMS];
    dsrt_event *fork_ev, *join_ev;
    dsrt_arena arena;
    dsrt_tensor rope_cos_sin;     /* [P, rope/2, 2] f32 */
} dsrt_model_dev;

/* A contiguous run of experts on one device, stacked for grouped GEMMs. */
typedef struct dsrt_expert_shard {
    int dev;
    int64_t e0, count;
    dsrt_tensor gate, up, down; /* [count, I, H], [count, I, H], [count, H, I] */
} dsrt_expert_shard;

typedef struct dsrt_layer {
    int64_t index;
    int attn_dev, ffn_dev;
    bool moe;
    dsrt_tensor attn_norm, ffn_norm;
    /* MLA */
    dsrt_tensor q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b, o;
    dsrt_tensor kv_b_deq; /* [nh, nope+v, dc] in the activation dtype, for the absorbed form */
    /* lightning indexer */
    dsrt_tensor idx_wq_b, idx_wk, idx_k_norm_w, idx_k_norm_b, idx_weights_proj;
    /* dense FFN */
    dsrt_tensor gate, up, down;
    /* MoE */
    dsrt_tensor router, router_bias;
    dsrt_tensor sh_gate, sh_up, sh_down;
    dsrt_expert_shard *shards;
    int n_shards;
    /* paged caches on attn_dev */
    dsrt_tensor kv_cache;  /* [slots, C] */
    dsrt_tensor idx_cache; /* [slots, C] */
    dsrt_buffer *kv_buf, *idx_buf;
} dsrt_layer;

/* A recorded decode forward (embedding to logits) for one shape, replayed while the shape and the
 * workspace stay the same: the decode step without per-op launch overhead. */
typedef struct dsrt_graph_entry {
    int64_t T, n_seq, max_pages, kv_width, n_logit_rows;
    bool select;
    uint64_t arena_generation;
    int seen;          /* forwards of this shape so far: capture on the second (the workspace has grown) */
    uint64_t last_use;
    dsrt_graph *graph;
    dsrt_tensor logits;
} dsrt_graph_entry;

#define DSRT_GRAPH_CACHE 8

struct dsrt_model {
    char dir[1024];
    dsrt_model_config cfg;
    dsrt_numerics numerics;
    dsrt_dtype act;          /* activation dtype: f32 or bf16 */
    dsrt_cache_format cache_format;
    dsrt_placement place;
    dsrt_model_dev devs[DSRT_MAX_MODEL_DEVICES];
    int n_devs;
    dsrt_checkpoint *ck;
    dsrt_buffer **owned;     /* every weight/scale buffer, released at free */
    size_t n_owned, cap_owned;
    uint64_t weight_bytes;
    dsrt_tensor embed, final_norm, lm_head;
    dsrt_layer *layers;
    /* KV cache pages */
    int page_size;
    int64_t n_pages;
    int32_t *free_pages;
    int64_t n_free;
    int64_t rope_positions; /* rows of the cos/sin tables */
    float softmax_scale;
    bool always_select;
    bool graphs_off;   /* the device cannot capture, or DSRT_NO_GRAPHS is set */
    dsrt_graph_entry graphs[DSRT_GRAPH_CACHE];
    /* expert census (NULL: off): per layer, 1 per routed expert used in the last counted forward,
     * and how many (-1: not counted) */
    uint8_t *census_used;
    int64_t *census_count;
    uint64_t graph_clock, graph_replays;
    char summary[512];
};

struct dsrt_seq {
    dsrt_model *model;
    int64_t len;
    int32_t *pages;
    int64_t n_pages, cap_pages;
};

/* Gives the sequence the pages for positions [0, end) (model.c); fails without change when the cache
 * cannot hold them. */
dsrt_status dsrt_seq_reserve(dsrt_seq *s, int64_t end);

/* Weight loading (model_load.c) and the forward blocks (forward_*.c). */
dsrt_status dsrt_model_load_weights(dsrt_model *m, const dsrt_model_options *opt);
dsrt_status dsrt_model_alloc_caches(dsrt_model *m);

#endif
