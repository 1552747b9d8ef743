/* dsrt conform: whole-model golden logits on the target device.
 *
 * The op cases prove each kernel; these prove the forward pass built from them, on the target, against
 * golden logits made by the project's reference scripts (tests/data/<case>/golden_<numerics>.json with
 * its logits file: transformers' float32 DeepseekV32ForCausalLM for f32, the official FP8 inference
 * code for fp8). The run is exactly `dsrt logits`: the golden prefill as one forward, then one token
 * at a time through the decode path, every row's logits kept.
 *
 * Limits are the core's own model tests' (tests/unit/test_model.c): f32, every logit within 1e-3 of
 * the reference and the same argmax wherever the reference's top-2 margin exceeds 1e-3; fp8, a row
 * cosine of at least 0.999 on average and 0.99 for every row, and the same argmax on 95% of rows.
 * FP8 rounding makes single logits drift, so fp8 is judged by direction and decisions. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conform.h"
#include "dsrt/model.h"

static void model_result(cf_suite *S, const char *id, const char *variant, cf_status st, const char *reason,
                         const char *note)
{
    cf_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "model/%s", id);
    snprintf(r.op, sizeof r.op, "model");
    r.kind = -1;
    snprintf(r.variant, sizeof r.variant, "%s", variant);
    snprintf(r.tags, sizeof r.tags, "model");
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    snprintf(r.note, sizeof r.note, "%s", note ? note : "");
    r.status = st;
    r.error = r.limit = NAN;
    r.deterministic = r.canaries = -1;
    r.target_ms = r.ref_ms = -1;
    cf_record(S, &r);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = 0;
                if (len) *len = (size_t)n;
            }
        }
    }
    fclose(f);
    return buf;
}

typedef struct golden {
    int32_t *tokens;
    int64_t n, prefill, vocab;
    float *logits; /* n x vocab */
    char numerics[16];
    char source[200];
} golden;

static void golden_free(golden *g)
{
    free(g->tokens);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

/* golden_<numerics>.json: tokens, prefill, rows, vocab, logits_file (float32 rows x vocab). */
static dsrt_status golden_load(const char *dir, const char *file, golden *g)
{
    memset(g, 0, sizeof *g);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = read_text(path, NULL);
    if (!text) return dsrt_error(DSRT_CODE_IO, "%s: cannot read: %s", path, strerror(errno));
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: not valid JSON", path);
    dsrt_status st = DSRT_OK;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "prefill");
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(j, "logits_file");
    const cJSON *tool = cJSON_GetObjectItemCaseSensitive(j, "tool");
    if (!cJSON_IsArray(tok) || !cJSON_IsNumber(pre) || !cJSON_IsNumber(voc) || !cJSON_IsString(lf)) {
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: needs tokens, prefill, vocab and logits_file", path);
        goto done;
    }
    g->n = cJSON_GetArraySize(tok);
    g->prefill = (int64_t)pre->valuedouble;
    g->vocab = (int64_t)voc->valuedouble;
    if (g->n < 1 || g->prefill < 1 || g->prefill > g->n || g->vocab < 1) {
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %lld tokens, prefill %lld, vocab %lld do not fit together", path,
                        (long long)g->n, (long long)g->prefill, (long long)g->vocab);
        goto done;
    }
    g->tokens = malloc(sizeof(int32_t) * (size_t)g->n);
    g->logits = malloc(sizeof(float) * (size_t)(g->n * g->vocab));
    if (!g->tokens || !g->logits) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory", path);
        goto done;
    }
    int64_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, tok) g->tokens[i++] = (int32_t)e->valuedouble;
    snprintf(g->source, sizeof g->source, "%s", cJSON_IsString(tool) ? tool->valuestring : "");
    snprintf(path, sizeof path, "%s/%s", dir, lf->valuestring);
    size_t len = 0;
    char *bin = read_text(path, &len);
    if (!bin || len != sizeof(float) * (size_t)(g->n * g->vocab)) {
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: expected %lld x %lld float32 logits", path, (long long)g->n,
                        (long long)g->vocab);
        free(bin);
        goto done;
    }
    memcpy(g->logits, bin, len);
    free(bin);
done:
    cJSON_Delete(j);
    if (st) golden_free(g);
    return st;
}

/* The `dsrt logits` run on the target device: prefill, then one token at a time. */
static dsrt_status golden_run(const char *dir, const char *device, dsrt_numerics numerics, const golden *g, float *out)
{
    dsrt_model_options opt = {.device = device, .numerics = numerics, .max_context = g->n};
    dsrt_model *m = NULL;
    dsrt_seq *seq = NULL;
    dsrt_status st = dsrt_model_load(dir, &opt, &m);
    if (!st && dsrt_model_get_config(m)->vocab_size != g->vocab)
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: the model's vocabulary (%lld) differs from the golden file's (%lld)",
                        dir, (long long)dsrt_model_get_config(m)->vocab_size, (long long)g->vocab);
    if (!st) st = dsrt_seq_create(m, &seq);
    if (!st) {
        dsrt_batch_item it = {seq, g->tokens, g->prefill, true};
        st = dsrt_model_forward(m, &it, 1, out);
    }
    for (int64_t j = g->prefill; !st && j < g->n; j++) {
        dsrt_batch_item d = {seq, g->tokens + j, 1, true};
        st = dsrt_model_forward(m, &d, 1, out + j * g->vocab);
    }
    dsrt_seq_free(seq);
    dsrt_model_free(m);
    return st;
}

static int64_t argmax(const float *v, int64_t n, double *margin)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    double second = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (i != b && v[i] > second) second = v[i];
    if (margin) *margin = (double)v[b] - second;
    return b;
}

/* Judges target logits `t` against golden `g` as the header says; fills the result's checks. */
static void golden_judge(const golden *g, const float *t, bool fp8, cf_result *r)
{
    int64_t V = g->vocab, rows = g->n, argmax_same = 0, decided = 0, decided_same = 0;
    double d2 = 0, r2 = 0, maxabs = 0, cos_sum = 0, cos_min = 1;
    int64_t worst_row = 0, worst_cos_row = 0, bad_argmax_row = -1, special = 0;
    for (int64_t row = 0; row < rows; row++) {
        const float *a = g->logits + row * V, *b = t + row * V;
        double dot = 0, na = 0, nb = 0;
        for (int64_t i = 0; i < V; i++) {
            if (!isfinite(b[i])) special++;
            double e = (double)b[i] - a[i];
            d2 += e * e;
            r2 += (double)a[i] * a[i];
            if (fabs(e) > maxabs) {
                maxabs = fabs(e);
                worst_row = row;
            }
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        double c = (na > 0 && nb > 0) ? dot / sqrt(na * nb) : (na == nb ? 1 : 0);
        cos_sum += c;
        if (c < cos_min) {
            cos_min = c;
            worst_cos_row = row;
        }
        double margin;
        int64_t ia = argmax(a, V, &margin), ib = argmax(b, V, NULL);
        argmax_same += ia == ib;
        if (margin > 1e-3) {
            decided++;
            decided_same += ia == ib;
            if (ia != ib && bad_argmax_row < 0) bad_argmax_row = row;
        }
    }
    double nmse = r2 > 0 ? d2 / r2 : d2, cos_mean = rows ? cos_sum / (double)rows : 1;
    r->nchecks = 0;
    cf_check_result *k = &r->checks[r->nchecks++];
    snprintf(k->output, sizeof k->output, "logits");
    k->method = "nmse";
    k->error = special ? INFINITY : nmse;
    k->limit = 2e-3; /* ggml's whole-model class, reported for comparison with other runtimes */
    k->pass = !special && nmse <= k->limit;
    snprintf(k->detail, sizeof k->detail, "%lld rows x %lld vocab%s", (long long)rows, (long long)V,
             special ? "; the target produced NaN or Inf logits" : "");
    if (!fp8) {
        k = &r->checks[r->nchecks++];
        snprintf(k->output, sizeof k->output, "logits");
        k->method = "max-abs";
        k->error = maxabs;
        k->limit = 1e-3;
        k->pass = maxabs <= 1e-3;
        snprintf(k->detail, sizeof k->detail, "largest |logit - golden| in row %lld", (long long)worst_row);
        k = &r->checks[r->nchecks++];
        snprintf(k->output, sizeof k->output, "argmax");
        k->method = "argmax-decided";
        k->error = decided ? (double)(decided - decided_same) / (double)decided : 0;
        k->limit = 0;
        k->pass = decided_same == decided;
        if (bad_argmax_row >= 0)
            snprintf(k->detail, sizeof k->detail, "row %lld picks another token although the golden margin exceeds 1e-3",
                     (long long)bad_argmax_row);
        else
            snprintf(k->detail, sizeof k->detail, "%lld of %lld rows have a margin above 1e-3; all agree",
                     (long long)decided, (long long)rows);
    } else {
        k = &r->checks[r->nchecks++];
        snprintf(k->output, sizeof k->output, "logits");
        k->method = "1-cosine";
        k->error = 1 - cos_mean;
        k->limit = 1e-3;
        k->pass = cos_mean >= 0.999 && cos_min >= 0.99;
        snprintf(k->detail, sizeof k->detail, "row cosine mean %.6f, min %.6f (row %lld); needs >= 0.999 and >= 0.99",
                 cos_mean, cos_min, (long long)worst_cos_row);
        k = &r->checks[r->nchecks++];
        snprintf(k->output, sizeof k->output, "argmax");
        k->method = "argmax-agree";
        k->error = rows ? 1 - (double)argmax_same / (double)rows : 0;
        k->limit = 0.05;
        k->pass = k->error <= 0.05;
        snprintf(k->detail, sizeof k->detail, "same next token on %lld of %lld rows", (long long)argmax_same,
                 (long long)rows);
    }
    /* The headline: the deciding check (f32: max-abs; fp8: 1-cosine) unless another one fails. */
    int head = 1;
    if (r->checks[head].pass)
        for (int i = 0; i < r->nchecks; i++)
            if (!r->checks[i].pass) {
                head = i;
                break;
            }
    r->method = r->checks[head].method;
    r->error = r->checks[head].error;
    r->limit = r->checks[head].limit;
    r->status = CF_PASS;
    for (int i = 0; i < r->nchecks; i++) {
        if (r->checks[i].pass) continue;
        r->status = CF_FAIL;
        size_t l = strlen(r->reason);
        snprintf(r->reason + l, sizeof r->reason - l, "%s'%s' %s %.3g > limit %.3g: %s", l ? "; " : "",
                 r->checks[i].output, r->checks[i].method, r->checks[i].error, r->checks[i].limit, r->checks[i].detail);
    }
}

static void run_golden_file(cf_suite *S, const char *dir, const char *name, const char *file)
{
    /* golden_<numerics>.json */
    char numerics[16];
    snprintf(numerics, sizeof numerics, "%.*s", (int)(strlen(file) - strlen("golden_") - strlen(".json")),
             file + strlen("golden_"));
    char id[200], variant[160];
    snprintf(id, sizeof id, "%.120s/%s", name, numerics);
    dsrt_numerics nm;
    dsrt_status st = dsrt_numerics_parse(numerics, &nm);
    if (st) {
        snprintf(variant, sizeof variant, "%.100s %s", name, numerics);
        model_result(S, id, variant, CF_SKIP, dsrt_status_message(st), file);
        dsrt_status_free(st);
        return;
    }
    golden g;
    st = golden_load(dir, file, &g);
    if (st) {
        snprintf(variant, sizeof variant, "%.100s %s numerics", name, numerics);
        model_result(S, id, variant, CF_FAIL, dsrt_status_message(st), NULL);
        dsrt_status_free(st);
        return;
    }
    cf_result *r = calloc(1, sizeof *r);
    float *out = malloc(sizeof(float) * (size_t)(g.n * g.vocab));
    if (!r || !out) {
        free(r);
        free(out);
        golden_free(&g);
        model_result(S, id, name, CF_SKIP, "host out of memory for the logits", NULL);
        return;
    }
    snprintf(r->id, sizeof r->id, "model/%.190s", id);
    snprintf(r->op, sizeof r->op, "model");
    r->kind = -1;
    snprintf(r->variant, sizeof r->variant, "%.60s %.15s numerics: %lld tokens (prefill %lld, then %lld decode steps), "
             "vocab %lld", name, numerics, (long long)g.n, (long long)g.prefill, (long long)(g.n - g.prefill),
             (long long)g.vocab);
    snprintf(r->tags, sizeof r->tags, "model");
    snprintf(r->note, sizeof r->note, "golden logits from %.200s", g.source[0] ? g.source : "the reference scripts");
    r->deterministic = r->canaries = -1;
    r->ref_ms = -1;
    r->error = r->limit = NAN;
    double t0 = cf_now();
    st = golden_run(dir, S->tinfo.label, nm, &g, out);
    r->target_ms = 1e3 * (cf_now() - t0);
    if (st) {
        dsrt_code code = dsrt_status_code(st);
        /* A device that lacks ops the forward needs is a skip with its reason; anything else fails. */
        r->status = (code == DSRT_CODE_UNIMPLEMENTED || code == DSRT_CODE_UNAVAILABLE) ? CF_SKIP : CF_FAIL;
        snprintf(r->reason, sizeof r->reason, "%s", dsrt_status_message(st));
        dsrt_status_free(st);
    } else {
        golden_judge(&g, out, nm == DSRT_NUMERICS_FP8, r);
    }
    cf_record(S, r);
    free(r);
    free(out);
    golden_free(&g);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted entries of a folder (so reports list cases in a stable order). */
static int list_dir(const char *dir, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) break;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Every golden_*.json of one case folder; returns how many. */
static int run_case_dir(cf_suite *S, const char *dir, const char *name)
{
    char **files;
    int n = list_dir(dir, &files), found = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(files[i]);
        if (strncmp(files[i], "golden_", 7) != 0 || l < 12 || strcmp(files[i] + l - 5, ".json") != 0) continue;
        char id[200];
        snprintf(id, sizeof id, "model/%.120s/%.*s", name, (int)(l - 12), files[i] + 7);
        bool want = true;
        if (S->opt->ops && S->opt->ops[0]) want = strstr(S->opt->ops, "model") != NULL;
        found++;
        if (!want) continue;
        if (S->opt->list) fprintf(S->log, "%s\n", id);
        else run_golden_file(S, dir, name, files[i]);
    }
    free_list(files, n);
    return found;
}

void cf_run_model_cases(cf_suite *S)
{
    const cf_options *o = S->opt;
    bool selected = !o->ops || !o->ops[0] || strstr(o->ops, "model") != NULL;
    if (!selected) return;
    if (!o->golden_dir) {
        if (o->quick) return; /* quick runs check ops; model cases come with --golden */
        if (o->list) fprintf(S->log, "model/golden-logits\n");
        else
            model_result(S, "golden-logits", "whole-model golden logits", CF_SKIP,
                         "no golden cases given (--golden DIR: a folder of cases like tests/data/tiny-plain, or one case)",
                         NULL);
        return;
    }
    /* DIR is one case (it holds golden_*.json) or a folder of cases. */
    const char *base = strrchr(o->golden_dir, '/');
    base = base && base[1] ? base + 1 : o->golden_dir;
    int found = run_case_dir(S, o->golden_dir, base);
    if (!found) {
        char **entries;
        int n = list_dir(o->golden_dir, &entries);
        if (n < 0) {
            if (!o->list)
                model_result(S, "golden-logits", o->golden_dir, CF_FAIL, "the --golden folder cannot be read", NULL);
            return;
        }
        for (int i = 0; i < n; i++) {
            char path[4096];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", o->golden_dir, entries[i]);
            if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) found += run_case_dir(S, path, entries[i]);
        }
        free_list(entries, n);
    }
    if (!found && !o->list)
        model_result(S, "golden-logits", o->golden_dir, CF_SKIP, "the --golden folder holds no golden_*.json case", NULL);
}
