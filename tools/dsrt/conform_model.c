/* dsrt conform: whole-model golden logits, through a hook the core implements.
 *
 * The op cases prove each kernel; this proves the forward pass built from them on the target device
 * against logits from transformers' DeepseekV32ForCausalLM (tests/data, made by the project's reference
 * script). The core owns the forward, so the suite calls one function and only reports:
 *
 *     dsrt_status dsrt_conform_model(dsrt_device *dev, const char *case_dir,
 *                                    dsrt_conform_model_result *res);
 *
 * declared below. The core defines it (exported from libdsrt); until it does, the weak reference is
 * NULL and the whole-model case is skipped with that reason. Each folder under --golden DIR is one
 * case. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "conform.h"

/* What one golden case produced. */
typedef struct dsrt_conform_model_result {
    double nmse;        /* logits of every position against the golden ones */
    double limit;       /* the case's own limit (e.g. 2e-3 in f32 numerics, ggml's whole-model limit) */
    long tokens, vocab; /* what was compared */
    char numerics[16];  /* "f32" or "fp8" */
    char detail[256];   /* anything the report should show (worst position, argmax agreement) */
} dsrt_conform_model_result;

/* Implemented by the core: loads the checkpoint of `case_dir`, runs its prompt on `dev` (placement:
 * everything on dev, unsupported ops where the core's placement puts them) and compares the logits
 * with the golden file. Returns an error status when the case cannot run. */
#if defined(__GNUC__)
__attribute__((weak))
#endif
dsrt_status dsrt_conform_model(dsrt_device *dev, const char *case_dir, dsrt_conform_model_result *res);

static void model_result(cf_suite *S, const char *name, cf_status st, const char *reason, const char *note)
{
    cf_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "model/%s", name);
    snprintf(r.op, sizeof r.op, "model");
    r.kind = -1;
    snprintf(r.variant, sizeof r.variant, "%s", name);
    snprintf(r.tags, sizeof r.tags, "model");
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    snprintf(r.note, sizeof r.note, "%s", note ? note : "");
    r.status = st;
    r.error = r.limit = NAN;
    r.deterministic = r.canaries = -1;
    r.target_ms = r.ref_ms = -1;
    cf_record(S, &r);
}

static bool model_selected(const cf_options *o)
{
    if (!o->ops || !o->ops[0]) return true;
    return strstr(o->ops, "model") != NULL;
}

void cf_run_model_cases(cf_suite *S)
{
    const cf_options *o = S->opt;
    if (!model_selected(o) || o->quick) return;
    if (o->list) {
        fprintf(S->log, "model/golden-logits\n");
        return;
    }
    bool hook = dsrt_conform_model != NULL;
    if (!hook) {
        model_result(S, "golden-logits", CF_SKIP,
                     "whole-model golden logits need the core's forward pass: dsrt_conform_model() is not in this "
                     "build of libdsrt yet", NULL);
        return;
    }
    if (!o->golden_dir) {
        model_result(S, "golden-logits", CF_SKIP, "no golden cases given (--golden DIR, e.g. tests/data)", NULL);
        return;
    }
    DIR *d = opendir(o->golden_dir);
    if (!d) {
        model_result(S, "golden-logits", CF_FAIL, "the --golden folder cannot be read", o->golden_dir);
        return;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->golden_dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        n++;
        dsrt_conform_model_result res;
        memset(&res, 0, sizeof res);
        double t0 = cf_now();
        dsrt_status st = dsrt_conform_model(S->target, path, &res);
        double ms = 1e3 * (cf_now() - t0);
        cf_result r;
        memset(&r, 0, sizeof r);
        snprintf(r.id, sizeof r.id, "model/%.180s", e->d_name);
        snprintf(r.op, sizeof r.op, "model");
        r.kind = -1;
        snprintf(r.variant, sizeof r.variant, "%.100s %.15s numerics, %ld tokens x %ld vocab", e->d_name, res.numerics,
                 res.tokens, res.vocab);
        snprintf(r.tags, sizeof r.tags, "model");
        snprintf(r.note, sizeof r.note, "%s", res.detail);
        r.deterministic = r.canaries = -1;
        r.ref_ms = -1;
        r.target_ms = ms;
        r.method = "nmse";
        r.error = res.nmse;
        r.limit = res.limit;
        if (st) {
            dsrt_code code = dsrt_status_code(st);
            r.status = code == DSRT_CODE_UNIMPLEMENTED || code == DSRT_CODE_UNAVAILABLE ? CF_SKIP : CF_FAIL;
            snprintf(r.reason, sizeof r.reason, "%s", dsrt_status_message(st));
            dsrt_status_free(st);
        } else if (!(res.nmse <= res.limit)) {
            r.status = CF_FAIL;
            snprintf(r.reason, sizeof r.reason, "logits nmse %.3g > limit %.3g", res.nmse, res.limit);
        } else {
            r.status = CF_PASS;
        }
        cf_record(S, &r);
    }
    closedir(d);
    if (!n) model_result(S, "golden-logits", CF_SKIP, "the --golden folder holds no case folders", o->golden_dir);
}
