/* dsrt bench: prefill and decode throughput of a model (a checkpoint or a generated full-width one), with
 * decode's fraction of the memory-bandwidth roofline: (bytes of weights and cache read per step) divided
 * by the device's measured bandwidth, over the measured step time. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_ops.h"
#include "cli.h"
#include "dsrt/dsrt.h"
#include "dsrt/model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsrt bench (-m DIR | --synthetic layer|slice) [--backend NAME[,NAME...]] [--precision f32|fp8]\n"
            "                  [--prompt N] [--gen N] [--batch B] [--context C] [--placement FILE]\n"
            "       dsrt bench --ops [FILTER] [--backend NAME]\n\n"
            "Times a prefill of N tokens and G decode steps at batch B (B sequences, each at context C),\n"
            "prints tokens/s, the device's measured memory bandwidth, the bytes a decode step reads\n"
            "(weights touched + KV cache; the routed experts counted in one extra step) and decode's\n"
            "fraction of that roofline.\n"
            "  -m DIR              a Hugging Face checkpoint folder\n"
            "  --synthetic layer   a generated DeepSeek-V3.2 full-width layer (hidden 7168, 128 heads,\n"
            "                      256 experts of 2048, FP8, vocab 1024); 'slice': 1 dense + 3 MoE layers\n"
            "  --prompt N          prefill length (default 64)\n"
            "  --gen N             decode steps timed (default 16), after a warm-up of the first step (which\n"
            "                      records the decode graph) and 100 ms more (at most 64 steps in all)\n"
            "  --batch B           sequences decoded together (default 1)\n"
            "  --context C         cached positions before decoding (default: the prompt length)\n"
            "  --backend A,B,...   run the benchmark on each device in turn and compare decode tokens/s\n"
            "                      (e.g. cuda,opencl:1)\n"
            "  --ops [FILTER]      the hot ops at V3.2 shapes instead (MLA decode, sparse MLA, indexer +\n"
            "                      top-k, FP8 GEMMs, ...): time, GB/s, TFLOP/s and fractions of the device's peaks\n"
            "                      (of a measured device copy where the device reports no bandwidth peak);\n"
            "                      FILTER picks cases whose name contains it\n");
}

/* The full-width V3.2 shapes (SPEC §1), with `dense` dense layers then `moe` MoE layers. */
static char *synthetic_config(int dense, int moe)
{
    char *s = malloc(2048);
    if (!s) return NULL;
    snprintf(s, 2048,
             "{\"model_type\":\"deepseek_v32\",\"vocab_size\":1024,\"hidden_size\":7168,\"intermediate_size\":18432,"
             "\"moe_intermediate_size\":2048,\"num_hidden_layers\":%d,\"first_k_dense_replace\":%d,"
             "\"num_attention_heads\":128,\"q_lora_rank\":1536,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,"
             "\"qk_rope_head_dim\":64,\"v_head_dim\":128,\"n_routed_experts\":256,\"num_experts_per_tok\":8,"
             "\"n_shared_experts\":1,\"n_group\":8,\"topk_group\":4,\"routed_scaling_factor\":2.5,\"norm_topk_prob\":true,"
             "\"scoring_func\":\"sigmoid\",\"topk_method\":\"noaux_tc\",\"index_n_heads\":64,\"index_head_dim\":128,"
             "\"index_topk\":2048,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,\"max_position_embeddings\":163840,"
             "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":40,\"original_max_position_embeddings\":4096,\"beta_fast\":32,"
             "\"beta_slow\":1,\"mscale\":1.0,\"mscale_all_dim\":1.0},"
             "\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\",\"scale_fmt\":\"ue8m0\","
             "\"activation_scheme\":\"dynamic\",\"weight_block_size\":[128,128]},\"bos_token_id\":0,\"eos_token_id\":1}",
             dense + moe, dense);
    return s;
}

/* Device memory bandwidth: a large device-to-device buffer copy (read + write), the best of several runs.
 * A copy is what the device does best with memory, so it stands for the reachable limit; the datasheet
 * figure (caps.peak_mem_gbs) is printed beside it. */
static dsrt_status measure_bandwidth(const char *spec, double *gbs, double *peak)
{
    dsrt_device *dev = NULL;
    dsrt_stream *s = NULL;
    dsrt_buffer *a = NULL, *b = NULL;
    DSRT_TRY(dsrt_device_open_by_name(spec, &dev));
    const dsrt_device_caps *caps = dsrt_device_get_caps(dev);
    *peak = caps->peak_mem_gbs;
    size_t bytes = 1024u << 20;
    if (caps->max_alloc_bytes && bytes > caps->max_alloc_bytes / 2) bytes = (size_t)(caps->max_alloc_bytes / 2);
    if (caps->memory_bytes && bytes > caps->memory_bytes / 8) bytes = (size_t)(caps->memory_bytes / 8);
    bytes &= ~(size_t)(16384 - 1);
    dsrt_status st = dsrt_stream_create(dev, &s);
    if (!st) st = dsrt_buffer_alloc(dev, bytes, &a);
    if (!st) st = dsrt_buffer_alloc(dev, bytes, &b);
    float one = 1.0f;
    if (!st) st = dsrt_stream_fill(s, a, 0, bytes, &one, sizeof one);
    if (!st) st = dsrt_stream_copy(s, a, 0, b, 0, bytes); /* warm-up */
    if (!st) st = dsrt_stream_sync(s);
    /* and an f32 -> f32 convert: on some backends (the CPU's threads) a kernel moves more than the copy */
    int64_t shape[2] = {(int64_t)(bytes / 16384), 4096};
    dsrt_tensor x, y;
    if (!st) st = dsrt_tensor_make(a, 0, DSRT_F32, 2, shape, &x);
    if (!st) st = dsrt_tensor_make(b, 0, DSRT_F32, 2, shape, &y);
    if (!st) st = dsrt_convert(s, &x, &y);
    if (!st) st = dsrt_stream_sync(s);
    double best = 1e30;
    for (int i = 0; i < 10 && !st; i++) {
        double t0 = now_s();
        st = i % 2 ? dsrt_convert(s, &x, &y) : dsrt_stream_copy(s, a, 0, b, 0, bytes);
        if (!st) st = dsrt_stream_sync(s);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    if (!st) *gbs = 2.0 * (double)bytes / best / 1e9;
    dsrt_buffer_release(a);
    dsrt_buffer_release(b);
    dsrt_stream_release(s);
    dsrt_device_release(dev);
    return st;
}

/* Bytes a decode step reads for `batch` sequences at context `ctx`: every attention, indexer, dense and
 * shared weight, the routed experts the batch touches (expected distinct ones), the head, and the KV
 * and indexer-key cache rows attention and the indexer read. */
/* Bytes a decode step reads. used[l]: the distinct routed experts MoE layer l used (the expert
 * census), or NULL for the expectation under uniformly random routing. */
static double decode_bytes(const dsrt_model_config *c, bool fp8, int batch, int64_t ctx, const int64_t *used)
{
    double wb = fp8 && c->fp8 ? 1.0 : 2.0; /* bytes per weight */
    double H = (double)c->hidden_size, nh = (double)c->num_attention_heads, dn = (double)c->qk_nope_head_dim;
    double dr = (double)c->qk_rope_head_dim, dv = (double)c->v_head_dim, dc = (double)c->kv_lora_rank, ql = (double)c->q_lora_rank;
    double attn = (ql * H + nh * (dn + dr) * ql + (dc + dr) * H + nh * (dn + dv) * dc + H * nh * dv) * wb;
    double idx = 0;
    if (c->has_indexer) idx = ((double)c->index_n_heads * (double)c->index_head_dim * ql + (double)c->index_head_dim * H) * wb +
                              (double)c->index_n_heads * H * 2;
    double total = 0;
    double E = (double)c->n_routed_experts, k = (double)c->num_experts_per_tok;
    double expert = 3.0 * (double)c->moe_intermediate_size * H * wb;
    double distinct = E > 0 ? E * (1.0 - pow(1.0 - k / E, batch)) : 0;
    double kv_row = fp8 ? dc + 4 * ceil(dc / 128) + 2 * dr : 4 * (dc + dr);
    double ik_row = fp8 ? (double)c->index_head_dim + 4 : 4 * (double)c->index_head_dim;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        total += attn + idx;
        if (dsrt_config_layer_is_moe(c, l))
            total += E * H * 2 + (used && used[l] >= 0 ? (double)used[l] : distinct) * expert +
                     3.0 * (double)(c->moe_intermediate_size * c->n_shared_experts) * H * wb;
        else total += 3.0 * (double)c->intermediate_size * H * wb;
        double visible = (double)ctx + 1;
        double attended = c->has_indexer && visible > (double)c->index_topk ? (double)c->index_topk : visible;
        total += batch * attended * kv_row;
        if (c->has_indexer && visible > (double)c->index_topk) total += batch * visible * ik_row;
    }
    total += (double)c->vocab_size * H * 2 + batch * H * 2; /* head, embedding rows */
    return total;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    double *last = ctx, t = now_s();
    if (t - *last < 1.0 && done < total) return;
    *last = t;
    fprintf(stderr, "\rloading: %.1f / %.1f GB", (double)done / 1e9, (double)total / 1e9);
    if (done >= total) fprintf(stderr, "\n");
}

#define WARM_S 0.1    /* seconds of warm-up decode steps before timing */
#define WARM_MAX 64LL /* at most this many */

/* What one model benchmark needs, parsed from the command line. */
typedef struct bench_opts {
    const char *dir, *synth, *precision, *placement;
    long long prompt, gen, batch, context;
} bench_opts;

/* Loads the model on `backend`, times a prefill and the decode steps, prints the figures; *decode_tps
 * gets decode tokens/s. */
static dsrt_status bench_model(const bench_opts *o, const char *backend, double *decode_tps)
{
    const char *dir = o->dir, *synth = o->synth, *precision = o->precision, *placement = o->placement;
    long long prompt = o->prompt, gen = o->gen, batch = o->batch, context = o->context;
    double last = 0;
    dsrt_model_options opt = {.device = backend, .placement = placement, .progress = progress, .progress_ctx = &last};
    /* KV pages: each decode sequence holds context + warm-up + gen tokens, rounded up to whole pages (the
     * pool is shared, so rounding counts per sequence); the prefill sequence is freed before decode. */
    const int64_t page = 64;
    opt.page_size = page;
    int64_t per_seq = (context + WARM_MAX + gen + page - 1) / page * page, pre = (prompt + 1 + page - 1) / page * page;
    opt.max_context = per_seq * batch > pre ? per_seq * batch : pre;
    char *cfg_text = NULL;
    if (synth) {
        cfg_text = strcmp(synth, "layer") == 0 ? synthetic_config(0, 1) : synthetic_config(1, 3);
        opt.synthetic_config = cfg_text;
        opt.synthetic_seed = 1;
    }
    dsrt_status st = dsrt_numerics_parse(precision, &opt.numerics);
    dsrt_model *m = NULL;
    dsrt_seq **seqs = calloc((size_t)batch, sizeof *seqs);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(prompt > batch ? prompt : batch));
    dsrt_batch_item *items = calloc((size_t)batch, sizeof *items);
    float *logits = NULL;
    double bw = 0, peak_bw = 0;
    int64_t *used = NULL; /* per layer: routed experts the census step used */
    if (!seqs || !toks || !items) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    double t0 = now_s();
    if (!st) st = dsrt_model_load(dir ? dir : "(synthetic)", &opt, &m);
    double t_load = now_s() - t0;
    if (st) goto done;
    const dsrt_model_config *c = dsrt_model_get_config(m);
    bool fp8 = dsrt_model_numerics(m) == DSRT_NUMERICS_FP8;
    logits = malloc(sizeof(float) * (size_t)c->vocab_size * (size_t)batch);
    if (!logits) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        goto done;
    }
    for (long long i = 0; i < (prompt > batch ? prompt : batch); i++) toks[i] = (int32_t)((i * 7919 + 13) % c->vocab_size);
    printf("model: %s (%s), %.2f GB of weights, loaded in %.1f s\nplacement: %s\n", dir ? dir : synth,
           dir ? "checkpoint" : "generated, full width", (double)dsrt_model_weight_bytes(m) / 1e9, t_load,
           dsrt_model_placement_summary(m));
    /* prefill */
    dsrt_seq *ps = NULL;
    if ((st = dsrt_seq_create(m, &ps))) goto done;
    dsrt_batch_item pi = {ps, toks, prompt, false};
    t0 = now_s();
    st = dsrt_model_forward(m, &pi, 1, logits);
    double t_prefill = now_s() - t0;
    dsrt_seq_free(ps);
    if (st) goto done;
    printf("prefill: %lld tokens in %.3f s = %.1f tokens/s\n", prompt, t_prefill, (double)prompt / t_prefill);
    /* decode: batch sequences at `context`, one token each per step */
    for (long long b = 0; b < batch; b++) {
        if ((st = dsrt_seq_create(m, &seqs[b]))) goto done;
        if ((st = dsrt_seq_skip(seqs[b], context))) goto done;
        items[b] = (dsrt_batch_item){seqs[b], &toks[b], 1, false};
    }
    /* Warm-up: the first step records the graph; then steps for WARM_S more (at least one, at most
     * WARM_MAX in all), so that the timed steps run in the steady state: on the H100 the first steps
     * after a capture ran up to ~8% slower than those 100 ms later. */
    long long warm = 1;
    t0 = now_s();
    st = dsrt_model_forward(m, items, (int)batch, logits);
    double t1 = now_s();
    while (!st && warm < WARM_MAX && (warm < 2 || now_s() - t1 < WARM_S)) {
        st = dsrt_model_forward(m, items, (int)batch, logits);
        warm++;
    }
    if (st) goto done;
    double t_warm = now_s() - t0;
    t0 = now_s();
    for (long long g = 0; g < gen && !st; g++) st = dsrt_model_forward(m, items, (int)batch, logits);
    double t_decode = (now_s() - t0) / (double)gen;
    if (st) goto done;
    /* one more step with the expert census on: the experts the batch's rows really chose (the
     * expectation under uniform routing overcounts a router that sends the rows to shared experts) */
    used = malloc(sizeof(int64_t) * (size_t)(c->num_hidden_layers > 0 ? c->num_hidden_layers : 1));
    if (!used) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        goto done;
    }
    if ((st = dsrt_model_set_expert_census(m, true))) goto done;
    st = dsrt_model_forward(m, items, (int)batch, logits);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) used[l] = dsrt_model_experts_used(m, l, NULL);
    dsrt_status_free(dsrt_model_set_expert_census(m, false));
    if (st) goto done;
    if ((st = measure_bandwidth(backend, &bw, &peak_bw))) goto done;
    double bytes = decode_bytes(c, fp8, (int)batch, context + warm + gen / 2, used);
    double roof = bytes / (bw * 1e9);
    *decode_tps = (double)batch / t_decode;
    printf("decode: batch %lld at context %lld: %.2f ms/step = %.2f tokens/s over %lld steps after %lld warm-up steps "
           "(%.0f ms; %llu of %lld steps replayed a recorded graph)\n",
           batch, context, t_decode * 1e3, (double)batch / t_decode, gen, warm, t_warm * 1e3,
           (unsigned long long)dsrt_model_graph_replays(m), gen + warm);
    printf("bandwidth: %.1f GB/s measured on %s (best of copy and convert, read + write)", bw, backend);
    if (peak_bw > 0) printf("; datasheet %.0f GB/s", peak_bw);
    printf("\nroofline: %.3f GB read per step -> %.2f ms at the measured bandwidth; decode reaches %.1f%% of it", bytes / 1e9,
           roof * 1e3, 100.0 * roof / t_decode);
    if (peak_bw > 0) printf(" (%.1f%% of the datasheet roofline)", 100.0 * bytes / (peak_bw * 1e9) / t_decode);
    printf("\nrouted experts read per MoE layer (census of one step):");
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        if (used[l] >= 0) printf(" %lld", (long long)used[l]);
    printf(" of %lld\n", (long long)c->n_routed_experts);
done:
    free(used);
    for (long long b = 0; b < batch && seqs; b++) dsrt_seq_free(seqs[b]);
    free(seqs);
    free(items);
    free(toks);
    free(logits);
    free(cfg_text);
    dsrt_model_free(m);
    return st;
}

int dsrt_cmd_bench(int argc, char **argv)
{
    if (dsrt_cli_load_plugins("bench", &argc, argv)) return 1;
    const char *dir = NULL, *synth = NULL, *backend = "cpu", *precision = "auto", *placement = NULL, *ops = NULL;
    long long prompt = 64, gen = 16, batch = 1, context = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--ops")) { /* optional filter */
            ops = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "";
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dsrt bench: error: '%s' needs a value (see dsrt bench --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--synthetic")) synth = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--placement")) placement = v;
        else if (!strcmp(a, "--prompt")) {
            if (dsrt_cli_parse_int("bench", a, v, 1, &prompt)) return 2;
        } else if (!strcmp(a, "--gen")) {
            if (dsrt_cli_parse_int("bench", a, v, 1, &gen)) return 2;
        } else if (!strcmp(a, "--batch")) {
            if (dsrt_cli_parse_int("bench", a, v, 1, &batch)) return 2;
        } else if (!strcmp(a, "--context")) {
            if (dsrt_cli_parse_int("bench", a, v, 0, &context)) return 2;
        } else {
            fprintf(stderr, "dsrt bench: error: unknown option '%s' (see dsrt bench --help)\n", a);
            return 2;
        }
    }
    if (ops) {
        if (dir || synth) {
            fprintf(stderr, "dsrt bench: error: --ops times single ops; it takes no model\n");
            return 2;
        }
        dsrt_device *dev = NULL;
        dsrt_status ost = dsrt_device_open_by_name(backend, &dev);
        if (ost) return dsrt_cli_fail("bench", ost);
        double measured = 0, peak = 0;
        if (dsrt_device_get_caps(dev)->peak_mem_gbs <= 0) { /* fractions of something real, not "-" */
            ost = measure_bandwidth(backend, &measured, &peak);
            if (ost) {
                fprintf(stderr, "dsrt bench: warning: no bandwidth measured (%s)\n", dsrt_status_message(ost));
                dsrt_status_free(ost);
                measured = 0;
            }
        }
        int orc = dsrt_bench_ops(dev, ops, measured, stdout);
        dsrt_device_release(dev);
        return orc;
    }
    if (!dir == !synth) {
        fprintf(stderr, "dsrt bench: error: give exactly one of -m DIR or --synthetic layer|slice\n");
        return 2;
    }
    if (synth && strcmp(synth, "layer") && strcmp(synth, "slice")) {
        fprintf(stderr, "dsrt bench: error: --synthetic takes 'layer' or 'slice', not '%s'\n", synth);
        return 2;
    }
    if (context < 0) context = prompt;
    bench_opts o = {dir, synth, precision, placement, prompt, gen, batch, context};
    /* --backend A,B,...: the same benchmark on each, one after the other, then decode compared */
    char list[512];
    snprintf(list, sizeof list, "%s", backend);
    const char *names[8];
    double tps[8];
    int n = 0;
    for (char *t = strtok(list, ","); t && n < 8; t = strtok(NULL, ",")) names[n++] = t;
    for (int i = 0; i < n; i++) {
        if (n > 1) printf("%s== %s ==\n", i ? "\n" : "", names[i]);
        dsrt_status st = bench_model(&o, names[i], &tps[i]);
        if (st) return dsrt_cli_fail("bench", dsrt_status_wrap(st, "on %s: ", names[i]));
    }
    if (n > 1) {
        printf("\ndecode tokens/s side by side (batch %lld, context %lld):", batch, context);
        for (int i = 0; i < n; i++) printf(" %s %.2f%s", names[i], tps[i], i + 1 < n ? "," : "\n");
        for (int i = 1; i < n; i++) printf("%s / %s = %.2f\n", names[i], names[0], tps[i] / tps[0]);
    }
    return 0;
}
