/* dsrt conform: the machine-readable report (JSON, schema in docs/conformance.md), made with cJSON. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "conform.h"

/* A float parameter as the shortest decimal that names it (0.95, not 0.949999988079071). */
static double fnum(float v)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)v);
    return strtod(b, NULL);
}

/* Errors keep three significant digits: more is noise, and Inf/NaN become null (JSON has neither). */
static cJSON *num_or_null(double v)
{
    if (!isfinite(v)) return cJSON_CreateNull();
    char b[32];
    snprintf(b, sizeof b, "%.3g", v);
    return cJSON_CreateNumber(strtod(b, NULL));
}

static cJSON *shape_json(int ndim, const int64_t *shape)
{
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[d]));
    return a;
}

static cJSON *caps_json(const cf_device_info *d)
{
    const dsrt_device_caps *c = &d->caps;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "backend", d->backend);
    cJSON_AddStringToObject(o, "label", d->label);
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddStringToObject(o, "vendor", c->vendor);
    cJSON_AddStringToObject(o, "driver", c->driver);
    cJSON_AddStringToObject(o, "type", dsrt_device_type_name(c->type));
    cJSON *k = cJSON_AddObjectToObject(o, "capabilities");
    cJSON_AddNumberToObject(k, "memory_bytes", (double)c->memory_bytes);
    cJSON_AddNumberToObject(k, "max_alloc_bytes", (double)c->max_alloc_bytes);
    cJSON_AddNumberToObject(k, "local_mem_bytes", (double)c->local_mem_bytes);
    cJSON_AddNumberToObject(k, "compute_units", c->compute_units);
    cJSON_AddNumberToObject(k, "max_work_group", c->max_work_group);
    cJSON_AddNumberToObject(k, "subgroup_size", c->subgroup_size);
    cJSON_AddNumberToObject(k, "numa_node", c->numa_node);
    cJSON_AddNumberToObject(k, "numa_nodes", c->numa_nodes);
    cJSON_AddBoolToObject(k, "native_fp8", c->native_fp8);
    cJSON_AddBoolToObject(k, "native_bf16", c->native_bf16);
    cJSON_AddBoolToObject(k, "native_fp16", c->native_fp16);
    cJSON_AddBoolToObject(k, "unified_memory", c->unified_memory);
    cJSON_AddBoolToObject(k, "concurrent_streams", c->concurrent_streams);
    cJSON_AddNumberToObject(k, "peak_mem_gbs", c->peak_mem_gbs);
    cJSON_AddNumberToObject(k, "peak_tflops_bf16", c->peak_tflops_bf16);
    cJSON_AddNumberToObject(k, "peak_tflops_fp8", c->peak_tflops_fp8);
    return o;
}

/* Only the parameters the op reads (ops.h). */
static cJSON *params_json(const cf_result *r)
{
    cJSON *o = cJSON_CreateObject();
    const dsrt_op_params *p = &r->p;
    switch (r->kind) {
    case DSRT_OP_RMS_NORM:
    case DSRT_OP_LAYER_NORM: cJSON_AddNumberToObject(o, "eps", fnum(p->eps)); break;
    case DSRT_OP_ROPE: cJSON_AddBoolToObject(o, "interleaved", p->interleaved); break;
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED:
        cJSON_AddNumberToObject(o, "alpha", fnum(p->alpha));
        cJSON_AddBoolToObject(o, "act_quant", p->act_quant);
        cJSON_AddBoolToObject(o, "scale_pow2", p->scale_pow2);
        break;
    case DSRT_OP_HEAD_LINEAR: cJSON_AddBoolToObject(o, "transpose_w", p->transpose_w); break;
    case DSRT_OP_ACT_QUANT: cJSON_AddBoolToObject(o, "scale_pow2", p->scale_pow2); break;
    case DSRT_OP_CACHE_WRITE:
        cJSON_AddStringToObject(o, "format", p->format == DSRT_CACHE_FP8 ? "fp8" : "plain");
        cJSON_AddBoolToObject(o, "scale_pow2", p->scale_pow2);
        break;
    case DSRT_OP_MLA_PREFILL: cJSON_AddNumberToObject(o, "scale", fnum(p->scale)); break;
    case DSRT_OP_MLA_DECODE:
    case DSRT_OP_INDEXER_SCORES:
        cJSON_AddNumberToObject(o, "scale", fnum(p->scale));
        cJSON_AddNumberToObject(o, "page_size", p->page_size);
        cJSON_AddStringToObject(o, "format", p->format == DSRT_CACHE_FP8 ? "fp8" : "plain");
        break;
    case DSRT_OP_TOPK:
        cJSON_AddNumberToObject(o, "k", p->k);
        cJSON_AddBoolToObject(o, "by_position", p->by_position);
        break;
    case DSRT_OP_MOE_GATE:
        cJSON_AddNumberToObject(o, "k", p->k);
        cJSON_AddNumberToObject(o, "n_group", p->n_group);
        cJSON_AddNumberToObject(o, "topk_group", p->topk_group);
        cJSON_AddStringToObject(o, "score_func", p->score_func == DSRT_SCORE_SOFTMAX ? "softmax" : "sigmoid");
        cJSON_AddBoolToObject(o, "norm_topk", p->norm_topk);
        cJSON_AddNumberToObject(o, "route_scale", fnum(p->route_scale));
        break;
    case DSRT_OP_MOE_DISPATCH:
        cJSON_AddNumberToObject(o, "expert_begin", p->expert_begin);
        cJSON_AddNumberToObject(o, "expert_count", p->expert_count);
        break;
    case DSRT_OP_SAMPLE:
        cJSON_AddNumberToObject(o, "temperature", fnum(p->temperature));
        cJSON_AddNumberToObject(o, "top_k", p->top_k);
        cJSON_AddNumberToObject(o, "top_p", fnum(p->top_p));
        cJSON_AddNumberToObject(o, "min_p", fnum(p->min_p));
        break;
    default: break;
    }
    return o;
}

static cJSON *tensor_json(const cf_tensor_desc *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", dsrt_dtype_name(t->dtype));
    cJSON_AddItemToObject(o, "shape", shape_json(t->ndim, t->shape));
    if (t->pad) cJSON_AddNumberToObject(o, "row_pad", (double)t->pad);
    if (t->scaled) {
        cJSON *s = cJSON_AddObjectToObject(o, "scale");
        cJSON_AddStringToObject(s, "dtype", dsrt_dtype_name(t->sdtype));
        cJSON *b = cJSON_AddArrayToObject(s, "block");
        cJSON_AddItemToArray(b, cJSON_CreateNumber(t->block[0]));
        cJSON_AddItemToArray(b, cJSON_CreateNumber(t->block[1]));
    }
    if (t->output && t->alias >= 0) cJSON_AddNumberToObject(o, "aliases_input", t->alias);
    return o;
}

static cJSON *tags_json(const char *tags)
{
    cJSON *a = cJSON_CreateArray();
    char buf[96];
    snprintf(buf, sizeof buf, "%s", tags);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        bool dup = false;
        for (cJSON *e = a->child; e; e = e->next)
            if (strcmp(e->valuestring, t) == 0) dup = true;
        if (!dup) cJSON_AddItemToArray(a, cJSON_CreateString(t));
    }
    return a;
}

static cJSON *case_json(const cf_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "op", r->op);
    cJSON_AddStringToObject(o, "variant", r->variant);
    cJSON_AddItemToObject(o, "tags", tags_json(r->tags));
    cJSON_AddStringToObject(o, "status", cf_status_name(r->status));
    cJSON_AddStringToObject(o, "reason", r->reason);
    if (r->note[0]) cJSON_AddStringToObject(o, "note", r->note);
    cJSON *ins = cJSON_AddArrayToObject(o, "inputs"), *outs = cJSON_AddArrayToObject(o, "outputs");
    for (int i = 0; i < r->ntensors; i++) cJSON_AddItemToArray(r->t[i].output ? outs : ins, tensor_json(&r->t[i]));
    cJSON_AddItemToObject(o, "params", r->kind >= 0 ? params_json(r) : cJSON_CreateObject());
    cJSON_AddStringToObject(o, "method", r->method ? r->method : "");
    cJSON_AddItemToObject(o, "error", r->status == CF_SKIP ? cJSON_CreateNull() : num_or_null(r->error));
    cJSON_AddItemToObject(o, "limit", r->status == CF_SKIP ? cJSON_CreateNull() : num_or_null(r->limit));
    cJSON *checks = cJSON_AddArrayToObject(o, "checks");
    for (int i = 0; i < r->nchecks; i++) {
        const cf_check_result *k = &r->checks[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "output", k->output);
        cJSON_AddStringToObject(c, "method", k->method ? k->method : "");
        cJSON_AddItemToObject(c, "error", num_or_null(k->error));
        cJSON_AddItemToObject(c, "limit", num_or_null(k->limit));
        cJSON_AddStringToObject(c, "status", k->pass ? "pass" : "fail");
        cJSON_AddStringToObject(c, "detail", k->detail);
        cJSON_AddItemToArray(checks, c);
    }
    cJSON_AddItemToObject(o, "deterministic", r->deterministic < 0 ? cJSON_CreateNull() : cJSON_CreateBool(r->deterministic));
    cJSON_AddItemToObject(o, "canaries_intact", r->canaries < 0 ? cJSON_CreateNull() : cJSON_CreateBool(r->canaries));
    cJSON *t = cJSON_AddObjectToObject(o, "time_ms");
    cJSON_AddItemToObject(t, "target", r->target_ms < 0 ? cJSON_CreateNull() : num_or_null(r->target_ms));
    cJSON_AddItemToObject(t, "reference", r->ref_ms < 0 ? cJSON_CreateNull() : num_or_null(r->ref_ms));
    return o;
}

dsrt_status cf_write_json(const cf_suite *S, const char *path)
{
    const cf_options *opt = S->opt;
    cJSON *root = cJSON_CreateObject();
    if (!root) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory building the report");
    cJSON_AddStringToObject(root, "schema", "dsrt-conformance");
    cJSON_AddNumberToObject(root, "schema_version", DSRT_CONFORM_SCHEMA_VERSION);
    cJSON_AddStringToObject(root, "suite_version", DSRT_CONFORM_SUITE_VERSION);
    cJSON_AddStringToObject(root, "dsrt_version", DSRT_VERSION_STRING);
    cJSON_AddNumberToObject(root, "backend_abi_version", DSRT_BACKEND_ABI_VERSION);
    cJSON_AddStringToObject(root, "timestamp", S->timestamp);
    cJSON_AddStringToObject(root, "command", opt->command_line ? opt->command_line : "");
    struct utsname u;
    if (uname(&u) == 0) {
        char host[256];
        snprintf(host, sizeof host, "%s %s %s", u.sysname, u.release, u.machine);
        cJSON_AddStringToObject(root, "host_os", host);
    }
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddNumberToObject(cfg, "seed", (double)opt->seed);
    cJSON_AddBoolToObject(cfg, "quick", opt->quick);
    cJSON_AddStringToObject(cfg, "ops", opt->ops ? opt->ops : "*");
    cJSON_AddNumberToObject(cfg, "budget_mb", opt->budget_mb);
    cJSON_AddStringToObject(cfg, "backend_plugin", opt->plugin ? opt->plugin : "");
    cJSON_AddStringToObject(cfg, "golden_dir", opt->golden_dir ? opt->golden_dir : "");
    cJSON *tg = caps_json(&S->tinfo);
    cJSON_AddNumberToObject(tg, "device_index", opt->device);
    cJSON_AddItemToObject(root, "target", tg);
    cJSON_AddItemToObject(root, "reference", caps_json(&S->rinfo));
    int pass, fail, skip;
    cf_counts(S, &pass, &fail, &skip);
    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    /* "skip": nothing failed and nothing ran (a backend without ops, like the template). */
    cJSON_AddStringToObject(sum, "status", fail ? "fail" : pass ? "pass" : "skip");
    cJSON_AddNumberToObject(sum, "cases", S->nresults);
    cJSON_AddNumberToObject(sum, "passed", pass);
    cJSON_AddNumberToObject(sum, "failed", fail);
    cJSON_AddNumberToObject(sum, "skipped", skip);
    cJSON_AddNumberToObject(sum, "ops_total", DSRT_OP_COUNT);
    cJSON_AddNumberToObject(sum, "ops_covered", cf_ops_covered(S));
    cJSON_AddItemToObject(sum, "elapsed_s", num_or_null(S->elapsed_s));
    cf_op_summary rows[DSRT_OP_COUNT + 1];
    int n = cf_summarize_ops(S, rows, DSRT_OP_COUNT + 1);
    cJSON *ops = cJSON_AddArrayToObject(root, "ops");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", rows[i].op);
        cJSON_AddStringToObject(o, "status", rows[i].failed ? "fail" : rows[i].passed ? "pass" : "skip");
        cJSON_AddNumberToObject(o, "cases", rows[i].cases);
        cJSON_AddNumberToObject(o, "passed", rows[i].passed);
        cJSON_AddNumberToObject(o, "failed", rows[i].failed);
        cJSON_AddNumberToObject(o, "skipped", rows[i].skipped);
        cJSON_AddItemToObject(o, "worst_error_ratio", num_or_null(rows[i].worst_ratio));
        if (rows[i].op[0] && strcmp(rows[i].op, "model") != 0) {
            dsrt_op_kind k;
            dsrt_status ps = dsrt_op_parse(rows[i].op, &k);
            if (!ps) cJSON_AddNumberToObject(o, "nmse_limit", cf_default_limit(k));
            dsrt_status_free(ps);
        }
        cJSON_AddItemToArray(ops, o);
    }
    cJSON *cases = cJSON_AddArrayToObject(root, "cases");
    for (int i = 0; i < S->nresults; i++) cJSON_AddItemToArray(cases, case_json(&S->results[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory printing the report");
    FILE *f = fopen(path, "w");
    if (!f) {
        free(text);
        return dsrt_error(DSRT_CODE_IO, "cannot write the report '%s'", path);
    }
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    ok = fclose(f) == 0 && ok;
    free(text);
    return ok ? DSRT_OK : dsrt_error(DSRT_CODE_IO, "writing the report '%s' failed", path);
}
