/* dsrt logits: float32 logits of a token sequence: the first N tokens as one prefill, the rest one at a
 * time through the decode path. Tests and outside checks call this interface: keep it stable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dsrt/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: dsrt logits -m DIR --tokens 1,2,3 [--prefill N] [--backend NAME] [--precision f32|fp8]\n"
               "                   [--placement FILE] [--ctx N] --out FILE [--backend-plugin FILE]\n\n"
               "Writes float32 little-endian logits, one row of vocab_size per token: the first N tokens\n"
               "(default all) as one prefill, then the rest one at a time through the decode path.\n"
               "  -m DIR            Hugging Face checkpoint folder (config.json, *.safetensors)\n"
               "  --tokens LIST     token ids separated by commas\n"
               "  --prefill N       tokens in the first forward (1..count; default all)\n"
               "  --backend NAME    device to run on: cpu, opencl, cuda, cuda:1 ... (default cpu)\n"
               "  --precision P     f32 or fp8 numerics (default: fp8 for FP8 checkpoints, else f32)\n"
               "  --placement FILE  per-block device placement (docs/placement.md)\n"
               "  --ctx N           KV cache capacity in tokens (default: the sequence length)\n"
               "  --out FILE        where the logits go\n");
}

/* Parses "1,2,3" strictly: every entry an integer that fits in int32. */
static dsrt_status parse_tokens(const char *s, int32_t **out, int64_t *n)
{
    int64_t cap = 16, k = 0;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "--tokens: '%.20s' is not an integer token id (expected e.g. 1,2,3)", p);
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) {
                free(v);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            free(v);
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "--tokens: trailing comma");
        }
    }
    if (k == 0) {
        free(v);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "--tokens: no token ids given");
    }
    *out = v;
    *n = k;
    return DSRT_OK;
}

int dsrt_cmd_logits(int argc, char **argv)
{
    if (dsrt_cli_load_plugins("logits", &argc, argv)) return 1;
    const char *dir = NULL, *tokens_s = NULL, *backend = "cpu", *precision = "auto", *out_path = NULL, *placement = NULL;
    long long prefill = -1, ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dsrt logits: error: %s\n", strncmp(a, "-", 1) ? "unexpected argument" : "option needs a value");
            fprintf(stderr, "  (at '%s'; see dsrt logits --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--tokens")) tokens_s = v;
        else if (!strcmp(a, "--prefill")) {
            if (dsrt_cli_parse_int("logits", a, v, 1, &prefill)) return 2;
        } else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--placement")) placement = v;
        else if (!strcmp(a, "--ctx")) {
            if (dsrt_cli_parse_int("logits", a, v, 1, &ctx)) return 2;
        } else {
            fprintf(stderr, "dsrt logits: error: unknown option '%s' (see dsrt logits --help)\n", a);
            return 2;
        }
    }
    if (!dir || !tokens_s || !out_path) {
        fprintf(stderr, "dsrt logits: error: -m DIR, --tokens LIST and --out FILE are required (see dsrt logits --help)\n");
        return 2;
    }
    dsrt_model_options opt = {.device = backend, .placement = placement, .max_context = ctx};
    dsrt_status st = dsrt_numerics_parse(precision, &opt.numerics);
    if (st) return dsrt_cli_fail("logits", st);
    int32_t *tokens = NULL;
    int64_t n = 0;
    if ((st = parse_tokens(tokens_s, &tokens, &n))) return dsrt_cli_fail("logits", st);
    if (prefill < 0) prefill = n;
    if (prefill > n) {
        free(tokens);
        fprintf(stderr, "dsrt logits: error: --prefill %lld exceeds the %lld tokens given\n", prefill, (long long)n);
        return 2;
    }
    if (opt.max_context == 0) opt.max_context = n;
    dsrt_model *m = NULL;
    dsrt_seq *seq = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    if ((st = dsrt_model_load(dir, &opt, &m))) goto done;
    int64_t V = dsrt_model_get_config(m)->vocab_size;
    logits = malloc(sizeof(float) * (size_t)(n * V));
    if (!logits) {
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for %lld logits rows", (long long)n);
        goto done;
    }
    if ((st = dsrt_seq_create(m, &seq))) goto done;
    dsrt_batch_item it = {seq, tokens, prefill, true};
    if ((st = dsrt_model_forward(m, &it, 1, logits))) goto done;
    for (int64_t j = prefill; j < n; j++) {
        dsrt_batch_item d = {seq, tokens + j, 1, true};
        if ((st = dsrt_model_forward(m, &d, 1, logits + j * V))) goto done;
    }
    f = fopen(out_path, "wb");
    if (!f) {
        st = dsrt_error(DSRT_CODE_IO, "%s: cannot open for writing: %s", out_path, strerror(errno));
        goto done;
    }
    if (fwrite(logits, sizeof(float), (size_t)(n * V), f) != (size_t)(n * V) || fclose(f) != 0) {
        f = NULL;
        st = dsrt_error(DSRT_CODE_IO, "%s: write failed", out_path);
        goto done;
    }
    f = NULL;
done:
    if (f) fclose(f);
    free(logits);
    free(tokens);
    dsrt_seq_free(seq);
    dsrt_model_free(m);
    return st ? dsrt_cli_fail("logits", st) : 0;
}
