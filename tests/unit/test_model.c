/* The V3.2 forward against golden data and its own invariants (SPEC.md; tests/data/<case>/):
 *  - f32 numerics vs transformers' DeepseekV32ForCausalLM float32 logits;
 *  - fp8 numerics vs DeepSeek's official FP8 inference code;
 *  - decode == prefill, chunked prefill == one prefill, batched == alone, DSA over every position ==
 *    dense attention, a multi-device placement == one device (f32, within 1e-4). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsrt/file_util.h"
#include "dsrt/model.h"
#include "dsrt/safetensors.h"
#include "testutil.h"

typedef struct {
    int32_t *tokens;
    int64_t n, prefill, vocab;
    float *logits; /* [n][vocab] */
} golden;

static char *case_dir(const char *name)
{
    static char buf[4][1024]; /* test-local: one per case in use */
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 1024, "%s/tests/data/%s", DSRT_SOURCE_DIR, name);
    return b;
}

static golden load_golden(const char *cs, const char *prec)
{
    golden g = {0};
    char path[1200], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/golden_%s.json", case_dir(cs), prec);
    ck_ok(dsrt_read_file(path, 1 << 20, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: bad JSON", path);
    cJSON *toks = cJSON_GetObjectItem(j, "tokens");
    g.n = cJSON_GetArraySize(toks);
    g.prefill = (int64_t)cJSON_GetObjectItem(j, "prefill")->valuedouble;
    g.vocab = (int64_t)cJSON_GetObjectItem(j, "vocab")->valuedouble;
    g.tokens = malloc(sizeof(int32_t) * (size_t)g.n);
    for (int64_t i = 0; i < g.n; i++) g.tokens[i] = (int32_t)cJSON_GetArrayItem(toks, (int)i)->valuedouble;
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/logits_%s.bin", case_dir(cs), prec);
    ck_ok(dsrt_read_file(path, 64 << 20, &text, &len));
    ck_assert_int_eq((long)len, (long)(sizeof(float) * (size_t)(g.n * g.vocab)));
    g.logits = malloc(len);
    memcpy(g.logits, text, len);
    free(text);
    return g;
}

static void free_golden(golden *g)
{
    free(g->tokens);
    free(g->logits);
}

/* The device under test: DSRT_TEST_DEVICE (e.g. cuda:0, opencl:1), default the CPU. */
static const char *test_device(void)
{
    const char *d = getenv("DSRT_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

static dsrt_model *load(const char *dir, dsrt_numerics num, const char *placement, bool always_select)
{
    dsrt_model_options opt = {.device = test_device(), .numerics = num, .placement = placement, .max_context = 256,
                              .page_size = 16, .always_select = always_select};
    dsrt_model *m = NULL;
    ck_ok(dsrt_model_load(dir, &opt, &m));
    return m;
}

/* Logits of `n` tokens: `prefill` in the first forward, then one token at a time. */
static float *run_sequence(dsrt_model *m, const int32_t *t, int64_t n, int64_t prefill)
{
    int64_t V = dsrt_model_get_config(m)->vocab_size;
    float *out = malloc(sizeof(float) * (size_t)(n * V));
    dsrt_seq *s;
    ck_ok(dsrt_seq_create(m, &s));
    dsrt_batch_item it = {s, t, prefill, true};
    ck_ok(dsrt_model_forward(m, &it, 1, out));
    for (int64_t j = prefill; j < n; j++) {
        dsrt_batch_item d = {s, t + j, 1, true};
        ck_ok(dsrt_model_forward(m, &d, 1, out + j * V));
    }
    ck_assert_int_eq(dsrt_seq_length(s), n);
    dsrt_seq_free(s);
    return out;
}

static int64_t argmax(const float *r, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (r[i] > r[b]) b = i;
    return b;
}

static double cosine(const float *a, const float *b, int64_t n)
{
    double d = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / sqrt(na * nb);
}

static float max_abs_diff(const float *a, const float *b, int64_t n)
{
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* f32: every logit within 1e-3 of transformers' float32 logits; the same argmax wherever the
 * reference's top-2 margin exceeds 1e-3; prefill and decode rows. */
static void check_f32_golden(const char *cs)
{
    golden g = load_golden(cs, "f32");
    dsrt_model *m = load(case_dir(cs), DSRT_NUMERICS_F32, NULL, false);
    float *out = run_sequence(m, g.tokens, g.n, g.prefill);
    float worst = 0;
    for (int64_t r = 0; r < g.n; r++) {
        const float *a = out + r * g.vocab, *b = g.logits + r * g.vocab;
        float d = max_abs_diff(a, b, g.vocab);
        worst = fmaxf(worst, d);
        ck_assert_msg(d <= 1e-3f, "%s f32 row %lld (%s): max |logit - reference| = %g > 1e-3", cs, (long long)r,
                      r < g.prefill ? "prefill" : "decode", (double)d);
        int64_t top = argmax(b, g.vocab);
        float second = -INFINITY;
        for (int64_t i = 0; i < g.vocab; i++)
            if (i != top) second = fmaxf(second, b[i]);
        if (b[top] - second > 1e-3f)
            ck_assert_msg(argmax(a, g.vocab) == top, "%s f32 row %lld: argmax %lld, reference %lld", cs, (long long)r,
                          (long long)argmax(a, g.vocab), (long long)top);
    }
    printf("%s f32 on %s: %lld rows, max |logit - transformers| = %.3g\n", cs, test_device(), (long long)g.n, (double)worst);
    free(out);
    dsrt_model_free(m);
    free_golden(&g);
}

/* fp8: row cosine >= 0.999 on average and >= 0.99 for every row, argmax equal on >= 95 % of rows. */
static void check_fp8_golden(const char *cs)
{
    golden g = load_golden(cs, "fp8");
    dsrt_model *m = load(case_dir(cs), DSRT_NUMERICS_FP8, NULL, false);
    float *out = run_sequence(m, g.tokens, g.n, g.prefill);
    double sum = 0, worst = 1;
    int64_t same = 0;
    for (int64_t r = 0; r < g.n; r++) {
        double c = cosine(out + r * g.vocab, g.logits + r * g.vocab, g.vocab);
        sum += c;
        worst = fmin(worst, c);
        ck_assert_msg(c >= 0.99, "%s fp8 row %lld (%s): cosine %.6f < 0.99", cs, (long long)r,
                      r < g.prefill ? "prefill" : "decode", c);
        same += argmax(out + r * g.vocab, g.vocab) == argmax(g.logits + r * g.vocab, g.vocab);
    }
    printf("%s fp8 on %s: %lld rows, cosine mean %.6f min %.6f, argmax equal on %lld\n", cs, test_device(), (long long)g.n,
           sum / (double)g.n, worst, (long long)same);
    ck_assert_msg(sum / (double)g.n >= 0.999, "%s fp8: mean cosine %.6f < 0.999", cs, sum / (double)g.n);
    ck_assert_msg(same * 100 >= g.n * 95, "%s fp8: argmax equal on %lld of %lld rows (< 95%%)", cs, (long long)same, (long long)g.n);
    free(out);
    dsrt_model_free(m);
    free_golden(&g);
}

START_TEST(golden_f32_yarn) { check_f32_golden("tiny-yarn"); }
END_TEST
START_TEST(golden_f32_plain) { check_f32_golden("tiny-plain"); }
END_TEST
START_TEST(golden_fp8_yarn) { check_fp8_golden("tiny-yarn"); }
END_TEST
START_TEST(golden_fp8_plain) { check_fp8_golden("tiny-plain"); }
END_TEST

/* Decode path == prefill path over the same tokens (f32, 1e-4). */
START_TEST(decode_equals_prefill)
{
    const char *cs = _i ? "tiny-plain" : "tiny-yarn";
    golden g = load_golden(cs, "f32");
    dsrt_model *m = load(case_dir(cs), DSRT_NUMERICS_F32, NULL, false);
    float *a = run_sequence(m, g.tokens, g.n, g.n), *b = run_sequence(m, g.tokens, g.n, 3);
    float d = max_abs_diff(a, b, g.n * g.vocab);
    ck_assert_msg(d <= 1e-4f, "%s: decode vs prefill max |diff| %g", cs, (double)d);
    free(a);
    free(b);
    dsrt_model_free(m);
    free_golden(&g);
}
END_TEST

/* Chunked prefill == one prefill (chunks of 7, 13 and the rest; later chunks use the absorbed form). */
START_TEST(chunked_equals_one_prefill)
{
    const char *cs = _i ? "tiny-plain" : "tiny-yarn";
    golden g = load_golden(cs, "f32");
    dsrt_model *m = load(case_dir(cs), DSRT_NUMERICS_F32, NULL, false);
    float *a = run_sequence(m, g.tokens, g.n, g.n);
    float *b = malloc(sizeof(float) * (size_t)(g.n * g.vocab));
    dsrt_seq *s;
    ck_ok(dsrt_seq_create(m, &s));
    int64_t cuts[] = {0, 7, 20, g.n};
    for (int c = 0; c < 3; c++) {
        dsrt_batch_item it = {s, g.tokens + cuts[c], cuts[c + 1] - cuts[c], true};
        ck_ok(dsrt_model_forward(m, &it, 1, b + cuts[c] * g.vocab));
    }
    float d = max_abs_diff(a, b, g.n * g.vocab);
    ck_assert_msg(d <= 1e-4f, "%s: chunked vs one prefill max |diff| %g", cs, (double)d);
    dsrt_seq_free(s);
    free(a);
    free(b);
    dsrt_model_free(m);
    free_golden(&g);
}
END_TEST

/* Batched sequences == the same sequences run alone: a batched prefill of two prompts of different
 * lengths, then batched decode steps. */
START_TEST(batched_equals_alone)
{
    golden g = load_golden("tiny-yarn", "f32");
    dsrt_model *m = load(case_dir("tiny-yarn"), DSRT_NUMERICS_F32, NULL, false);
    int64_t V = g.vocab, la = 18, lb = 13, steps = 5; /* tiny-yarn has 28 tokens; prompt a > index_topk (16) */
    const int32_t *ta = g.tokens, *tb = g.tokens + 9;      /* two different token streams */
    float *alone_a = run_sequence(m, ta, la + steps, la), *alone_b = run_sequence(m, tb, lb + steps, lb);
    dsrt_seq *sa, *sb;
    ck_ok(dsrt_seq_create(m, &sa));
    ck_ok(dsrt_seq_create(m, &sb));
    float *out = malloc(sizeof(float) * (size_t)((la + lb) * V));
    dsrt_batch_item pre[2] = {{sa, ta, la, true}, {sb, tb, lb, true}};
    ck_ok(dsrt_model_forward(m, pre, 2, out));
    float d = fmaxf(max_abs_diff(out, alone_a, la * V), max_abs_diff(out + la * V, alone_b, lb * V));
    for (int64_t s = 0; s < steps; s++) {
        dsrt_batch_item dec[2] = {{sa, ta + la + s, 1, true}, {sb, tb + lb + s, 1, true}};
        ck_ok(dsrt_model_forward(m, dec, 2, out));
        d = fmaxf(d, max_abs_diff(out, alone_a + (la + s) * V, V));
        d = fmaxf(d, max_abs_diff(out + V, alone_b + (lb + s) * V, V));
    }
    ck_assert_msg(d <= 1e-4f, "batched vs alone max |diff| %g", (double)d);
    dsrt_seq_free(sa);
    dsrt_seq_free(sb);
    free(out);
    free(alone_a);
    free(alone_b);
    dsrt_model_free(m);
    free_golden(&g);
}
END_TEST

/* The expert census: a batch of two sequences uses exactly the union of the routed experts each uses
 * alone at the same point (tiny-yarn: layer 0 dense, layer 1 2 of 8 experts a row); off, nothing. */
static int64_t census_step(dsrt_model *m, dsrt_seq *const *seqs, const int32_t *const *toks, const int64_t *len, int n,
                           uint8_t *used)
{
    float *out = malloc(sizeof(float) * (size_t)(64 * dsrt_model_get_config(m)->vocab_size));
    dsrt_batch_item it[2];
    for (int i = 0; i < n; i++) it[i] = (dsrt_batch_item){seqs[i], toks[i], len[i], false};
    ck_ok(dsrt_model_forward(m, it, n, out)); /* the prompts */
    ck_ok(dsrt_model_set_expert_census(m, true));
    ck_assert_int_eq(dsrt_model_experts_used(m, 1, NULL), -1); /* nothing counted yet */
    for (int i = 0; i < n; i++) it[i] = (dsrt_batch_item){seqs[i], toks[i] + len[i], 1, false};
    ck_ok(dsrt_model_forward(m, it, n, out)); /* one decode step, counted */
    ck_assert_int_eq(dsrt_model_experts_used(m, 0, NULL), -1); /* a dense layer */
    int64_t k = dsrt_model_experts_used(m, 1, used);
    ck_ok(dsrt_model_set_expert_census(m, false));
    ck_assert_int_eq(dsrt_model_experts_used(m, 1, NULL), -1);
    free(out);
    return k;
}

START_TEST(expert_census_is_the_union)
{
    golden g = load_golden("tiny-yarn", "f32");
    dsrt_model *m = load(case_dir("tiny-yarn"), DSRT_NUMERICS_F32, NULL, false);
    const dsrt_model_config *c = dsrt_model_get_config(m);
    ck_assert_int_eq(c->n_routed_experts, 8);
    const int32_t *toks[2] = {g.tokens, g.tokens + 9};
    int64_t len[2] = {18, 13};
    uint8_t a[8], b[8], ab[8];
    dsrt_seq *s[2];
    ck_ok(dsrt_seq_create(m, &s[0]));
    ck_assert_int_eq(census_step(m, s, toks, len, 1, a), c->num_experts_per_tok); /* one row: its k experts */
    dsrt_seq_free(s[0]);
    ck_ok(dsrt_seq_create(m, &s[0]));
    ck_assert_int_eq(census_step(m, s, toks + 1, len + 1, 1, b), c->num_experts_per_tok);
    dsrt_seq_free(s[0]);
    ck_ok(dsrt_seq_create(m, &s[0]));
    ck_ok(dsrt_seq_create(m, &s[1]));
    int64_t n = census_step(m, s, toks, len, 2, ab), u = 0;
    for (int e = 0; e < 8; e++) {
        ck_assert_msg(ab[e] == (a[e] | b[e]), "expert %d: batch %d, alone %d and %d", e, ab[e], a[e], b[e]);
        u += ab[e];
    }
    ck_assert_int_eq(n, u);
    dsrt_seq_free(s[0]);
    dsrt_seq_free(s[1]);
    dsrt_model_free(m);
    free_golden(&g);
}
END_TEST

/* A small FP8 V3.2 config for generated weights: 1 dense + 1 MoE layer of 32 experts, 4 a token. */
static const char synth_config[] =
    "{\"model_type\":\"deepseek_v32\",\"vocab_size\":512,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"moe_intermediate_size\":128,\"num_hidden_layers\":2,\"first_k_dense_replace\":1,\"num_attention_heads\":4,"
    "\"q_lora_rank\":128,\"kv_lora_rank\":128,\"qk_nope_head_dim\":64,\"qk_rope_head_dim\":64,\"v_head_dim\":64,"
    "\"n_routed_experts\":32,\"num_experts_per_tok\":4,\"n_shared_experts\":1,\"n_group\":4,\"topk_group\":2,"
    "\"routed_scaling_factor\":2.5,\"norm_topk_prob\":true,\"scoring_func\":\"sigmoid\",\"topk_method\":\"noaux_tc\","
    "\"index_n_heads\":4,\"index_head_dim\":128,\"index_topk\":64,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,"
    "\"max_position_embeddings\":4096,\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
    "\"scale_fmt\":\"ue8m0\",\"activation_scheme\":\"dynamic\",\"weight_block_size\":[128,128]},"
    "\"bos_token_id\":0,\"eos_token_id\":1}";

/* One safetensors file holding every tensor of `ck` as dsrt_checkpoint_data gives it (generated on the host). */
static uint8_t *safetensors_of(const dsrt_checkpoint *ck, size_t *size)
{
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    const dsrt_st_tensor *t;
    for (size_t i = 0; (t = dsrt_checkpoint_at(ck, i)) != NULL; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", t->dtype_name);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = (strlen(json) + 7) & ~(size_t)7;
    uint8_t *f = malloc(8 + hl + off);
    ck_assert_ptr_nonnull(f);
    for (int k = 0; k < 8; k++) f[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memset(f + 8, ' ', hl);
    memcpy(f + 8, json, strlen(json));
    free(json);
    off = 0;
    for (size_t i = 0; (t = dsrt_checkpoint_at(ck, i)) != NULL; i++) {
        const void *d;
        int owned;
        ck_ok(dsrt_checkpoint_data(ck, t, &d, &owned));
        memcpy(f + 8 + hl + off, d, t->nbytes);
        if (owned) free((void *)d);
        off += t->nbytes;
    }
    *size = 8 + hl + off;
    return f;
}

/* Generated weights (dsrt bench --synthetic): a model filled on the device from each FP8 tensor's period
 * gives exactly the logits of the same bytes generated on the host and loaded as a file; an FP8 matrix's
 * rows all differ; and 8 different tokens are routed to more than 2 tokens' worth of experts (with one
 * repeated 4-byte pattern every row was the same and whole batches went to the same few experts). */
START_TEST(synthetic_weights_vary_and_load_alike)
{
    dsrt_model_options opt = {.device = test_device(), .max_context = 256, .page_size = 16,
                              .synthetic_config = synth_config, .synthetic_seed = 7};
    dsrt_model *gen = NULL, *file = NULL;
    ck_ok(dsrt_model_load("(synthetic)", &opt, &gen));
    const dsrt_model_config *c = dsrt_model_get_config(gen);
    dsrt_checkpoint *ck;
    ck_ok(dsrt_checkpoint_synthetic(c, 7, &ck));
    const dsrt_st_tensor *w;
    ck_ok(dsrt_checkpoint_get(ck, "model.layers.1.mlp.experts.3.up_proj.weight", &w));
    const uint8_t *wb;
    int owned;
    ck_ok(dsrt_checkpoint_data(ck, w, (const void **)&wb, &owned));
    for (int64_t r = 1; r < w->shape[0]; r++)
        ck_assert_msg(memcmp(wb, wb + r * w->shape[1], (size_t)w->shape[1]) != 0, "row %lld equals row 0", (long long)r);
    if (owned) free((void *)wb);
    size_t size;
    uint8_t *bytes = safetensors_of(ck, &size);
    dsrt_checkpoint_close(ck);
    dsrt_model_options fo = {.device = test_device(), .max_context = 256, .page_size = 16,
                             .memory_config = synth_config, .memory_weights = bytes, .memory_weights_size = size};
    ck_ok(dsrt_model_load("(host-generated)", &fo, &file));
    const int32_t prompt[6] = {5, 77, 300, 12, 511, 2};
    float *a = run_sequence(gen, prompt, 6, 4), *b = run_sequence(file, prompt, 6, 4);
    float d = max_abs_diff(a, b, 6 * c->vocab_size);
    ck_assert_msg(d == 0.0f, "device-filled vs host-generated weights: max |diff| %g", (double)d);
    free(a);
    free(b);
    /* one decode step of 8 single-token sequences, counted */
    dsrt_seq *s[8];
    dsrt_batch_item it[8];
    int32_t tok[8];
    float *out = malloc(sizeof(float) * (size_t)(8 * c->vocab_size));
    for (int i = 0; i < 8; i++) {
        tok[i] = 3 + 61 * i;
        ck_ok(dsrt_seq_create(gen, &s[i]));
        it[i] = (dsrt_batch_item){s[i], &tok[i], 1, true};
    }
    ck_ok(dsrt_model_set_expert_census(gen, true));
    ck_ok(dsrt_model_forward(gen, it, 8, out));
    int64_t used = dsrt_model_experts_used(gen, 1, NULL);
    ck_assert_msg(used > 2 * c->num_experts_per_tok, "8 tokens use %lld of %lld experts", (long long)used,
                  (long long)c->n_routed_experts);
    for (int i = 0; i < 8; i++) dsrt_seq_free(s[i]);
    free(out);
    dsrt_model_free(gen);
    dsrt_model_free(file);
    free(bytes);
}
END_TEST

/* With a prompt no longer than index_topk, DSA (the indexer's top-k forced on: it must select every
 * visible position) equals dense attention; and a V3-style config (no index_* fields) over the same
 * weights runs dense MLA with the same logits. */
START_TEST(dsa_equals_dense_short_prompt)
{
    golden g = load_golden("tiny-yarn", "f32");
    const char *dir = case_dir("tiny-yarn");
    int64_t n = 16; /* index_topk of tiny-yarn */
    dsrt_model *dense = load(dir, DSRT_NUMERICS_F32, NULL, false), *dsa = load(dir, DSRT_NUMERICS_F32, NULL, true);
    float *a = run_sequence(dense, g.tokens, n, 10), *b = run_sequence(dsa, g.tokens, n, 10);
    float d = max_abs_diff(a, b, n * g.vocab);
    ck_assert_msg(d <= 1e-4f, "DSA over all positions vs dense max |diff| %g", (double)d);
    /* the V3-style copy: config without index_*, the same shards */
    char tmpl[] = "/tmp/dsrt-v3-XXXXXX", path[1200], src[1200];
    ck_assert(mkdtemp(tmpl) != NULL);
    char *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_ok(dsrt_read_file(path, 1 << 20, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObject(j, "index_topk");
    cJSON_DeleteItemFromObject(j, "index_n_heads");
    cJSON_DeleteItemFromObject(j, "index_head_dim");
    char *out = cJSON_Print(j);
    snprintf(path, sizeof path, "%s/config.json", tmpl);
    FILE *f = fopen(path, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    cJSON_Delete(j);
    const char *files[] = {"model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", dir, files[i]);
        snprintf(path, sizeof path, "%s/%s", tmpl, files[i]);
        ck_assert(symlink(src, path) == 0);
    }
    dsrt_model *v3 = load(tmpl, DSRT_NUMERICS_F32, NULL, false);
    ck_assert(!dsrt_model_get_config(v3)->has_indexer);
    float *c = run_sequence(v3, g.tokens, n, 10);
    d = max_abs_diff(a, c, n * g.vocab);
    ck_assert_msg(d <= 1e-4f, "V3 dense config vs V3.2 short prompt max |diff| %g", (double)d);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpl, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/config.json", tmpl);
    unlink(path);
    rmdir(tmpl);
    free(a);
    free(b);
    free(c);
    dsrt_model_free(v3);
    dsrt_model_free(dense);
    dsrt_model_free(dsa);
    free_golden(&g);
}
END_TEST

/* A placement over two CPU devices (layer 1's attention, layer 0's FFN, the second half of the experts
 * and the head on cpu:1) gives the one-device logits (f32, 1e-4). */
START_TEST(placement_two_devices)
{
    golden g = load_golden("tiny-yarn", "f32");
    char path[] = "/tmp/dsrt-placement-XXXXXX.json";
    int fd = mkstemps(path, 5);
    ck_assert(fd >= 0);
    const char *json = "{\"devices\": [\"cpu:0\", \"cpu:1\"], \"attention\": [0, 1], \"ffn\": [1, 0],\n"
                       " \"experts\": [0,0,0,0,1,1,1,1], \"head\": 1}\n";
    ck_assert(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
    close(fd);
    dsrt_model *one = load(case_dir("tiny-yarn"), DSRT_NUMERICS_F32, NULL, false);
    dsrt_model *two = load(case_dir("tiny-yarn"), DSRT_NUMERICS_F32, path, false);
    printf("placement: %s\n", dsrt_model_placement_summary(two));
    float *a = run_sequence(one, g.tokens, g.n, g.prefill), *b = run_sequence(two, g.tokens, g.n, g.prefill);
    float d = max_abs_diff(a, b, g.n * g.vocab);
    ck_assert_msg(d <= 1e-4f, "two-device placement vs one device max |diff| %g", (double)d);
    unlink(path);
    free(a);
    free(b);
    dsrt_model_free(one);
    dsrt_model_free(two);
    free_golden(&g);
}
END_TEST

/* Decode steps replayed from a recorded graph give the logits of direct execution (both numerics), and
 * replays do happen. */
START_TEST(graph_decode_equals_direct)
{
    const char *cs = "tiny-yarn";
    dsrt_numerics num = _i ? DSRT_NUMERICS_FP8 : DSRT_NUMERICS_F32;
    golden g = load_golden(cs, _i ? "fp8" : "f32");
    setenv("DSRT_NO_GRAPHS", "1", 1);
    dsrt_model *direct = load(case_dir(cs), num, NULL, false);
    unsetenv("DSRT_NO_GRAPHS");
    dsrt_model *graphs = load(case_dir(cs), num, NULL, false);
    float *a = run_sequence(direct, g.tokens, g.n, 20), *b = run_sequence(graphs, g.tokens, g.n, 20);
    ck_assert_uint_eq(dsrt_model_graph_replays(direct), 0);
    /* backends without graph capture (begin_capture UNIMPLEMENTED) run every step directly */
    dsrt_device *dev;
    dsrt_stream *st;
    ck_ok(dsrt_device_open_by_name(test_device(), &dev));
    ck_ok(dsrt_stream_create(dev, &st));
    dsrt_status cap = dsrt_stream_begin_capture(st);
    bool can_capture = cap == DSRT_OK;
    if (can_capture) {
        dsrt_graph *gr = NULL;
        ck_ok(dsrt_stream_end_capture(st, &gr));
        dsrt_graph_release(gr);
    }
    dsrt_status_free(cap);
    dsrt_stream_release(st);
    dsrt_device_release(dev);
    if (can_capture)
        ck_assert_msg(dsrt_model_graph_replays(graphs) >= (uint64_t)(g.n - 20 - 3), "only %llu decode steps replayed a graph",
                      (unsigned long long)dsrt_model_graph_replays(graphs));
    else
        printf("%s has no graph capture: decode ran directly\n", test_device());
    ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)(g.n * g.vocab)) == 0, "graph replay changed the logits");
    free(a);
    free(b);
    dsrt_model_free(direct);
    dsrt_model_free(graphs);
    free_golden(&g);
}
END_TEST

/* Mixed vendors in one process: attention of every other layer, the head and half of every layer's
 * experts on an OpenCL device, the rest on the CPU: the one-device logits (f32, 1e-4; fp8 cosine). */
START_TEST(placement_cpu_and_opencl)
{
    dsrt_backend *ocl;
    int n = 0;
    if (dsrt_backend_find("opencl", &ocl) != DSRT_OK || dsrt_backend_device_count(ocl, &n) != DSRT_OK || n == 0) {
        printf("placement_cpu_and_opencl: no OpenCL device here, skipped\n");
        return;
    }
    for (int prec = 0; prec < 2; prec++) {
        golden g = load_golden("tiny-yarn", prec ? "fp8" : "f32");
        char path[] = "/tmp/dsrt-mixed-XXXXXX.json";
        int fd = mkstemps(path, 5);
        ck_assert(fd >= 0);
        const char *json = "{\"devices\": [\"cpu\", \"opencl:0\"], \"attention\": [1, 0], \"ffn\": [0, 1],\n"
                           " \"experts\": [1,1,1,1,0,0,0,0], \"head\": 1}\n";
        ck_assert(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
        close(fd);
        dsrt_numerics num = prec ? DSRT_NUMERICS_FP8 : DSRT_NUMERICS_F32;
        dsrt_model_options o1 = {.device = "cpu", .numerics = num, .max_context = 256, .page_size = 16};
        dsrt_model_options o2 = o1;
        o2.placement = path;
        dsrt_model *one = NULL, *mixed = NULL;
        ck_ok(dsrt_model_load(case_dir("tiny-yarn"), &o1, &one));
        ck_ok(dsrt_model_load(case_dir("tiny-yarn"), &o2, &mixed));
        printf("mixed placement: %s\n", dsrt_model_placement_summary(mixed));
        float *a = run_sequence(one, g.tokens, g.n, g.prefill), *b = run_sequence(mixed, g.tokens, g.n, g.prefill);
        if (!prec) {
            float d = max_abs_diff(a, b, g.n * g.vocab);
            ck_assert_msg(d <= 1e-4f, "cpu+opencl placement vs cpu max |diff| %g", (double)d);
        } else {
            double worst = 1;
            for (int64_t r = 0; r < g.n; r++) worst = fmin(worst, cosine(a + r * g.vocab, b + r * g.vocab, g.vocab));
            printf("mixed placement fp8: min row cosine vs cpu %.6f\n", worst);
            ck_assert_msg(worst >= 0.99, "cpu+opencl fp8 row cosine %.6f", worst);
        }
        unlink(path);
        free(a);
        free(b);
        dsrt_model_free(one);
        dsrt_model_free(mixed);
        free_golden(&g);
    }
}
END_TEST

/* Bad inputs through the API: token ids out of range, cache overflow. */
START_TEST(forward_rejects_bad_tokens)
{
    dsrt_model *m = load(case_dir("tiny-plain"), DSRT_NUMERICS_F32, NULL, false);
    int64_t V = dsrt_model_get_config(m)->vocab_size;
    float *out = malloc(sizeof(float) * (size_t)(4 * V));
    dsrt_seq *s;
    ck_ok(dsrt_seq_create(m, &s));
    int32_t bad[] = {1, 2, (int32_t)V, 3};
    dsrt_batch_item it = {s, bad, 4, true};
    ck_fails(dsrt_model_forward(m, &it, 1, out), DSRT_CODE_OUT_OF_RANGE, "outside the vocabulary");
    int32_t neg[] = {-1};
    it.tokens = neg;
    it.n_tokens = 1;
    ck_fails(dsrt_model_forward(m, &it, 1, out), DSRT_CODE_OUT_OF_RANGE, "token id -1");
    ck_assert_int_eq(dsrt_seq_length(s), 0); /* nothing was appended */
    int32_t *many = calloc(300, sizeof(int32_t));
    it.tokens = many;
    it.n_tokens = 300; /* the cache holds 256 */
    ck_fails(dsrt_model_forward(m, &it, 1, out), DSRT_CODE_RESOURCE_EXHAUSTED, "KV cache holds 256");
    free(many);
    dsrt_seq_free(s);
    free(out);
    dsrt_model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model");
    TCase *g = tcase_create("golden");
    tcase_set_timeout(g, 600);
    tcase_add_test(g, golden_f32_yarn);
    tcase_add_test(g, golden_f32_plain);
    tcase_add_test(g, golden_fp8_yarn);
    tcase_add_test(g, golden_fp8_plain);
    suite_add_tcase(s, g);
    TCase *p = tcase_create("properties");
    tcase_set_timeout(p, 600);
    tcase_add_loop_test(p, decode_equals_prefill, 0, 2);
    tcase_add_loop_test(p, chunked_equals_one_prefill, 0, 2);
    tcase_add_test(p, batched_equals_alone);
    tcase_add_test(p, expert_census_is_the_union);
    tcase_add_test(p, synthetic_weights_vary_and_load_alike);
    tcase_add_test(p, dsa_equals_dense_short_prompt);
    if (strcmp(test_device(), "cpu") == 0) tcase_add_test(p, placement_two_devices); /* two CPU devices */
    tcase_add_test(p, forward_rejects_bad_tokens);
    tcase_add_loop_test(p, graph_decode_equals_direct, 0, 2);
    if (strcmp(test_device(), "cpu") == 0) tcase_add_test(p, placement_cpu_and_opencl);
    suite_add_tcase(s, p);
    return s;
}

int main(void)
{
    setenv("DSRT_CPU_DEVICES", "2", 1); /* for the placement test; one-device runs use cpu:0 */
    return dsrt_run_suite(suite());
}
