/* Model lifetime: configuration, placement, devices, weights, paged KV cache, sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsrt/file_util.h"
#include "model_internal.h"

const char *dsrt_numerics_name(dsrt_numerics n)
{
    return n == DSRT_NUMERICS_F32 ? "f32" : n == DSRT_NUMERICS_FP8 ? "fp8" : "auto";
}

dsrt_status dsrt_numerics_parse(const char *s, dsrt_numerics *out)
{
    if (s && strcmp(s, "f32") == 0) *out = DSRT_NUMERICS_F32;
    else if (s && strcmp(s, "fp8") == 0) *out = DSRT_NUMERICS_FP8;
    else if (s && strcmp(s, "auto") == 0) *out = DSRT_NUMERICS_AUTO;
    else return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "unknown precision '%s' (expected f32, fp8 or auto)", s ? s : "(null)");
    return DSRT_OK;
}

static dsrt_status open_devices(dsrt_model *m)
{
    for (int i = 0; i < m->place.n_devices; i++) {
        dsrt_model_dev *d = &m->devs[i];
        /* The same spec twice means two placements on one device: share it. */
        for (int j = 0; j < i; j++)
            if (strcmp(m->place.device_specs[i], m->place.device_specs[j]) == 0)
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "placement lists device '%s' twice", m->place.device_specs[i]);
        DSRT_TRY(dsrt_status_wrap(dsrt_device_open_by_name(m->place.device_specs[i], &d->dev), "device '%s'", m->place.device_specs[i]));
        m->n_devs = i + 1;
        DSRT_TRY(dsrt_stream_create(d->dev, &d->stream));
        dsrt_arena_init(&d->arena, d->dev);
        /* DSRT_SIDE_STREAM=n (0 .. DSRT_SIDE_STREAMS) caps the side streams, for measurements */
        const char *side = getenv("DSRT_SIDE_STREAM");
        int n_side = side && *side >= '0' && *side <= '9' ? atoi(side) : DSRT_SIDE_STREAMS;
        if (n_side > DSRT_SIDE_STREAMS) n_side = DSRT_SIDE_STREAMS;
        if (!dsrt_device_get_caps(d->dev)->concurrent_streams) n_side = 0;
        for (int k = 0; k < n_side; k++) DSRT_TRY(dsrt_stream_create(d->dev, &d->side[k]));
        if (n_side > 0) {
            DSRT_TRY(dsrt_event_create(d->dev, &d->fork_ev));
            DSRT_TRY(dsrt_event_create(d->dev, &d->join_ev));
        }
    }
    return DSRT_OK;
}

static void summarize(dsrt_model *m)
{
    int n = snprintf(m->summary, sizeof m->summary, "%s numerics on", dsrt_numerics_name(m->numerics));
    for (int d = 0; d < m->n_devs && n > 0 && (size_t)n < sizeof m->summary; d++) {
        int attn = 0, ffn = 0, experts = 0;
        int64_t L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts;
        for (int64_t l = 0; l < L; l++) {
            attn += m->place.attention[l] == d;
            ffn += m->place.ffn[l] == d;
            for (int64_t e = 0; e < E && dsrt_config_layer_is_moe(&m->cfg, l); e++) experts += m->place.experts[l * E + e] == d;
        }
        n += snprintf(m->summary + n, sizeof m->summary - (size_t)n, "%s %s (%d attention, %d ffn, %d experts%s%s)", d ? ";" : "",
                      dsrt_device_label(m->devs[d].dev), attn, ffn, experts, m->place.embed == d ? ", embedding" : "",
                      m->place.head == d ? ", head" : "");
    }
}

dsrt_status dsrt_model_load(const char *dir, const dsrt_model_options *opt_in, dsrt_model **out)
{
    *out = NULL;
    dsrt_model_options opt = {0};
    if (opt_in) opt = *opt_in;
    dsrt_model *m = calloc(1, sizeof *m);
    if (!m) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[2048];
    dsrt_status st = DSRT_OK;
    if (opt.synthetic_config || opt.memory_config) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        st = dsrt_config_parse(opt.synthetic_config ? opt.synthetic_config : opt.memory_config, path, &m->cfg);
    } else {
        struct stat sb;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = dsrt_error(DSRT_CODE_NOT_FOUND, "model folder '%s' does not exist", dir);
        if (!st) st = dsrt_path_join(path, sizeof path, dir, "config.json");
        if (!st) st = dsrt_config_load(path, &m->cfg);
    }
    if (st) goto fail;
    const dsrt_model_config *c = &m->cfg;
    m->numerics = opt.numerics == DSRT_NUMERICS_AUTO ? (c->fp8 ? DSRT_NUMERICS_FP8 : DSRT_NUMERICS_F32) : opt.numerics;
    m->act = m->numerics == DSRT_NUMERICS_FP8 ? DSRT_BF16 : DSRT_F32;
    m->cache_format = m->numerics == DSRT_NUMERICS_FP8 ? DSRT_CACHE_FP8 : DSRT_CACHE_PLAIN;
    if (m->numerics == DSRT_NUMERICS_FP8 && c->has_indexer && c->index_head_dim % 128)
        st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: fp8 numerics quantize the indexer per 128 values; index_head_dim %lld is not a multiple",
                        path, (long long)c->index_head_dim);
    if (st) goto fail;
    int64_t E = c->n_routed_experts;
    st = opt.placement ? dsrt_placement_load(&m->place, opt.placement, c->num_hidden_layers, E)
                       : dsrt_placement_default(&m->place, opt.device, c->num_hidden_layers, E);
    if (st) goto fail;
    if ((st = open_devices(m))) goto fail;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        goto fail;
    }
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        m->layers[l].attn_dev = m->place.attention[l];
        m->layers[l].ffn_dev = m->place.ffn[l];
    }
    m->page_size = opt.page_size > 0 ? opt.page_size : 64;
    int64_t ctx = opt.max_context > 0 ? opt.max_context : 4096;
    m->n_pages = (ctx + m->page_size - 1) / m->page_size;
    m->rope_positions = m->n_pages * m->page_size;
    m->softmax_scale = (float)dsrt_config_softmax_scale(c);
    m->always_select = opt.always_select;
    m->graphs_off = getenv("DSRT_NO_GRAPHS") != NULL;
    if (opt.synthetic_config) st = dsrt_checkpoint_synthetic(&m->cfg, opt.synthetic_seed, &m->ck);
    else if (opt.memory_config) st = dsrt_checkpoint_open_memory(dir, opt.memory_weights, opt.memory_weights_size, &m->ck);
    else st = dsrt_checkpoint_open(dir, &m->ck);
    if (st) goto fail;
    if ((st = dsrt_model_load_weights(m, &opt))) goto fail;
    if ((st = dsrt_model_alloc_caches(m))) goto fail;
    m->free_pages = malloc(sizeof(int32_t) * (size_t)m->n_pages);
    if (!m->free_pages) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < m->n_pages; i++) m->free_pages[i] = (int32_t)(m->n_pages - 1 - i); /* pop from the end: page 0 first */
    m->n_free = m->n_pages;
    summarize(m);
    *out = m;
    return DSRT_OK;
fail:
    dsrt_model_free(m);
    return dsrt_status_wrap(st, "loading model '%s'", dir);
}

void dsrt_model_free(dsrt_model *m)
{
    if (!m) return;
    for (int d = 0; d < m->n_devs; d++)
        if (m->devs[d].stream) dsrt_status_free(dsrt_stream_sync(m->devs[d].stream));
    for (int i = 0; i < DSRT_GRAPH_CACHE; i++) dsrt_graph_release(m->graphs[i].graph);
    if (m->layers) {
        for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++) {
            dsrt_buffer_release(m->layers[l].kv_buf);
            dsrt_buffer_release(m->layers[l].idx_buf);
            free(m->layers[l].shards);
        }
        free(m->layers);
    }
    for (size_t i = 0; i < m->n_owned; i++) dsrt_buffer_release(m->owned[i]);
    free(m->owned);
    for (int d = 0; d < m->n_devs; d++) {
        dsrt_arena_destroy(&m->devs[d].arena);
        if (m->devs[d].fork_ev) dsrt_event_release(m->devs[d].fork_ev);
        if (m->devs[d].join_ev) dsrt_event_release(m->devs[d].join_ev);
        for (int k = 0; k < DSRT_SIDE_STREAMS; k++)
            if (m->devs[d].side[k]) dsrt_stream_release(m->devs[d].side[k]);
        dsrt_stream_release(m->devs[d].stream);
        dsrt_device_release(m->devs[d].dev);
    }
    dsrt_checkpoint_close(m->ck);
    dsrt_placement_free(&m->place);
    free(m->free_pages);
    free(m->census_used);
    free(m->census_count);
    free(m);
}

const dsrt_model_config *dsrt_model_get_config(const dsrt_model *m) { return &m->cfg; }
dsrt_numerics dsrt_model_numerics(const dsrt_model *m) { return m->numerics; }
uint64_t dsrt_model_weight_bytes(const dsrt_model *m) { return m->weight_bytes; }
const char *dsrt_model_placement_summary(const dsrt_model *m) { return m->summary; }
uint64_t dsrt_model_graph_replays(const dsrt_model *m) { return m->graph_replays; }

dsrt_status dsrt_model_set_expert_census(dsrt_model *m, bool on)
{
    free(m->census_used);
    free(m->census_count);
    m->census_used = NULL;
    m->census_count = NULL;
    if (!on) return DSRT_OK;
    int64_t L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts > 0 ? m->cfg.n_routed_experts : 1;
    m->census_used = calloc((size_t)(L * E), 1);
    m->census_count = malloc(sizeof(int64_t) * (size_t)(L > 0 ? L : 1));
    if (!m->census_used || !m->census_count) {
        free(m->census_used);
        free(m->census_count);
        m->census_used = NULL;
        m->census_count = NULL;
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the expert census");
    }
    for (int64_t l = 0; l < L; l++) m->census_count[l] = -1;
    return DSRT_OK;
}

int64_t dsrt_model_experts_used(const dsrt_model *m, int64_t layer, uint8_t *used)
{
    if (!m->census_count || layer < 0 || layer >= m->cfg.num_hidden_layers || m->census_count[layer] < 0) return -1;
    int64_t E = m->cfg.n_routed_experts;
    if (used) memcpy(used, m->census_used + layer * E, (size_t)E);
    return m->census_count[layer];
}

dsrt_status dsrt_seq_create(dsrt_model *m, dsrt_seq **out)
{
    dsrt_seq *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    s->model = m;
    *out = s;
    return DSRT_OK;
}

void dsrt_seq_free(dsrt_seq *s)
{
    if (!s) return;
    dsrt_model *m = s->model;
    for (int64_t i = 0; i < s->n_pages; i++) m->free_pages[m->n_free++] = s->pages[i];
    free(s->pages);
    free(s);
}

int64_t dsrt_seq_length(const dsrt_seq *s) { return s->len; }

dsrt_status dsrt_seq_truncate(dsrt_seq *s, int64_t n)
{
    if (n < 0 || n > s->len)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "cannot truncate a sequence of %lld positions to %lld", (long long)s->len, (long long)n);
    dsrt_model *m = s->model;
    int64_t keep = (n + m->page_size - 1) / m->page_size;
    while (s->n_pages > keep) m->free_pages[m->n_free++] = s->pages[--s->n_pages];
    s->len = n;
    return DSRT_OK;
}

dsrt_status dsrt_seq_reserve(dsrt_seq *s, int64_t end)
{
    dsrt_model *m = s->model;
    int64_t pages = (end + m->page_size - 1) / m->page_size;
    if (end > m->n_pages * m->page_size)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "a sequence would reach %lld tokens but the KV cache holds %lld (raise the context size)",
                          (long long)end, (long long)(m->n_pages * m->page_size));
    if (pages - s->n_pages > m->n_free)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "the KV cache is full: %lld more pages of %d tokens are needed, %lld are free",
                          (long long)(pages - s->n_pages), m->page_size, (long long)m->n_free);
    if (pages > s->cap_pages) {
        int32_t *p = realloc(s->pages, sizeof *p * (size_t)pages);
        if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        s->pages = p;
        s->cap_pages = pages;
    }
    while (s->n_pages < pages) s->pages[s->n_pages++] = m->free_pages[--m->n_free];
    return DSRT_OK;
}

dsrt_status dsrt_seq_skip(dsrt_seq *s, int64_t n)
{
    if (n < 0) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "cannot skip %lld positions", (long long)n);
    DSRT_TRY(dsrt_seq_reserve(s, s->len + n));
    s->len += n;
    return DSRT_OK;
}

int64_t dsrt_batch_logit_rows(const dsrt_batch_item *items, int n_items)
{
    int64_t n = 0;
    for (int i = 0; i < n_items; i++) n += items[i].all_logits ? items[i].n_tokens : (items[i].n_tokens > 0 ? 1 : 0);
    return n;
}
