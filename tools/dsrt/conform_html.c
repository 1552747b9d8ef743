/* dsrt conform: the readable report, one self-contained HTML page (no scripts, no external files) that
 * can be mailed to a customer: verdict, devices, a summary per op with failures first, the failures in
 * full, the skips grouped by reason, then every case. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void bytes(FILE *f, uint64_t b)
{
    if (!b) {
        fputs("unknown", f);
        return;
    }
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    fprintf(f, "%.1f %s", v, u[i]);
}

static const char *CSS =
    "*{box-sizing:border-box}body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;"
    "color:#1d2430;margin:0;background:#f4f6f9}main{max-width:1180px;margin:0 auto;padding:28px 32px 48px}"
    "header{display:flex;align-items:center;gap:22px;background:#fff;border:1px solid #dde3ea;border-radius:10px;"
    "padding:20px 24px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:30px 0 10px}"
    "h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6675;margin:0}.verdict{font-size:26px;font-weight:700;"
    "padding:14px 22px;border-radius:8px;color:#fff;letter-spacing:1px}.v-pass{background:#1f8a4c}"
    ".v-fail{background:#c0392b}.v-skip{background:#7a8594;font-size:20px}.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-top:16px}"
    ".card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:12px 14px}.card b{display:block;"
    "font-size:22px}.card span{color:#5b6675;font-size:12px;text-transform:uppercase;letter-spacing:.5px}"
    "table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde3ea;border-radius:8px;"
    "overflow:hidden}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #edf0f4;vertical-align:top}"
    "th{background:#eef2f6;font-size:12px;text-transform:uppercase;letter-spacing:.4px;color:#4a5564}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr:last-child td{border-bottom:0}"
    ".b{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}"
    ".b-pass{background:#dff3e7;color:#17693a}.b-fail{background:#fbe0dc;color:#a12c1f}"
    ".b-skip{background:#eceff3;color:#55606e}.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"
    "font-size:12.5px}.muted{color:#6b7685}.fail-box{background:#fff;border:1px solid #efc2bb;border-left:5px solid "
    "#c0392b;border-radius:8px;padding:10px 14px;margin:10px 0}.skip-box{background:#fff;border:1px solid #dde3ea;"
    "border-radius:8px;padding:10px 14px;margin:8px 0}.bar{display:inline-block;height:8px;border-radius:4px;"
    "vertical-align:middle;margin-right:6px}.ok{background:#2ea664}.bad{background:#d24a3a}.none{background:#c9d0d8}"
    ".tag{display:inline-block;margin-left:6px;padding:0 6px;border-radius:8px;background:#e8edf5;color:#50627a;"
    "font-size:11px}table.cases{table-layout:fixed}td.n{white-space:nowrap}.note{color:#6b7685;font-size:12px}"
    ".selfcheck{margin:12px 0 0;padding:8px 14px;background:#fff8e1;border:1px solid #f0dfa8;border-radius:8px}"
    "table.fails{table-layout:fixed;border-left:4px solid #c0392b}table.fails td{word-wrap:break-word}"
    "footer{margin-top:34px;color:#5b6675;font-size:12.5px}footer p{margin:4px 0}.kv td:first-child{color:#5b6675;"
    "width:190px}details summary{cursor:pointer;color:#2b5ea7}.ids{columns:2;font-size:12px;margin:6px 0 0}";

static const char *badge(cf_status s) { return s == CF_PASS ? "b-pass" : s == CF_FAIL ? "b-fail" : "b-skip"; }

/* error/limit as a bar: a decade per 7 px, full at the limit, red past it. */
static void ratio_bar(FILE *f, double error, double limit, bool failed)
{
    double r = limit > 0 ? error / limit : (error > 0 ? INFINITY : 0);
    if (!(error == error)) r = INFINITY;
    double w = r <= 0 ? 2 : 56 + 7 * log10(r);
    if (w < 2) w = 2;
    if (w > 70) w = 70;
    fprintf(f, "<span class=\"bar %s\" style=\"width:%.0fpx\"></span>", failed ? "bad" : "ok", w);
}

static void num(FILE *f, double v)
{
    if (v != v) fputs("&ndash;", f);
    else if (isinf(v)) fputs("&infin;", f);
    else if (v == 0) fputs("0", f);
    else fprintf(f, "%.2g", v);
}

static void operands(FILE *f, const cf_result *r)
{
    if (r->ntensors == 0) { /* whole-model cases */
        fputs("the whole forward pass on the target", f);
        return;
    }
    for (int out = 0; out < 2; out++) {
        if (out) fputs(" &rarr; ", f);
        bool first = true;
        for (int i = 0; i < r->ntensors; i++) {
            const cf_tensor_desc *t = &r->t[i];
            if (t->output != (out == 1)) continue;
            fprintf(f, "%s%s&nbsp;%s[", first ? "" : ", ", t->name, dsrt_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            fputs("]", f);
            if (t->scaled) fprintf(f, "+%s", dsrt_dtype_name(t->sdtype));
            if (t->pad) fputs("&nbsp;strided", f);
            if (t->output && t->alias >= 0) fputs("&nbsp;in&nbsp;place", f);
            first = false;
        }
    }
}

static void tags(FILE *f, const char *t)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%s", t);
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        fputs("<span class=\"tag\">", f);
        esc(f, w);
        fputs("</span>", f);
    }
}

static void device_rows(FILE *f, const cf_device_info *a, const cf_device_info *b)
{
    const dsrt_device_caps *x = &a->caps, *y = &b->caps;
    fprintf(f, "<tr><th>capability</th><th>target %s</th><th>reference %s</th></tr>\n", a->label, b->label);
#define ROW_S(label, field)                                                                                            \
    do {                                                                                                               \
        fprintf(f, "<tr><td>%s</td><td>", label);                                                                      \
        esc(f, x->field);                                                                                              \
        fputs("</td><td>", f);                                                                                         \
        esc(f, y->field);                                                                                              \
        fputs("</td></tr>\n", f);                                                                                      \
    } while (0)
    ROW_S("name", name);
    ROW_S("vendor", vendor);
    ROW_S("driver", driver);
    fprintf(f, "<tr><td>type</td><td>%s</td><td>%s</td></tr>\n", dsrt_device_type_name(x->type), dsrt_device_type_name(y->type));
    fputs("<tr><td>memory</td><td>", f);
    bytes(f, x->memory_bytes);
    fputs("</td><td>", f);
    bytes(f, y->memory_bytes);
    fputs("</td></tr>\n<tr><td>largest allocation</td><td>", f);
    bytes(f, x->max_alloc_bytes);
    fputs("</td><td>", f);
    bytes(f, y->max_alloc_bytes);
    fputs("</td></tr>\n", f);
    fprintf(f, "<tr><td>compute units</td><td>%d</td><td>%d</td></tr>\n", x->compute_units, y->compute_units);
    fprintf(f, "<tr><td>subgroup size</td><td>%d</td><td>%d</td></tr>\n", x->subgroup_size, y->subgroup_size);
    fprintf(f, "<tr><td>native fp8 / bf16 / fp16</td><td>%s / %s / %s</td><td>%s / %s / %s</td></tr>\n",
            x->native_fp8 ? "yes" : "no", x->native_bf16 ? "yes" : "no", x->native_fp16 ? "yes" : "no",
            y->native_fp8 ? "yes" : "no", y->native_bf16 ? "yes" : "no", y->native_fp16 ? "yes" : "no");
    fprintf(f, "<tr><td>unified memory</td><td>%s</td><td>%s</td></tr>\n", x->unified_memory ? "yes" : "no",
            y->unified_memory ? "yes" : "no");
#undef ROW_S
}

static int op_rank(const cf_op_summary *s) { return s->failed ? 0 : s->passed ? 1 : 2; }

static void case_rows(FILE *f, const cf_suite *S, const char *op)
{
    fputs("<table class=\"cases\"><colgroup><col style=\"width:33%\"><col style=\"width:35%\"><col style=\"width:8%\">"
          "<col style=\"width:7%\"><col style=\"width:6%\"><col style=\"width:5%\"><col style=\"width:6%\"></colgroup>"
          "<tr><th>case</th><th>operands</th><th class=\"n\">error</th><th class=\"n\">limit</th><th></th>"
          "<th>status</th><th class=\"n\">ms</th></tr>\n", f);
    for (int i = 0; i < S->nresults; i++) {
        const cf_result *r = &S->results[i];
        if (strcmp(r->op, op) != 0) continue;
        fputs("<tr><td>", f);
        esc(f, r->variant);
        tags(f, r->tags);
        if (r->note[0]) {
            fputs("<div class=\"note\">", f);
            esc(f, r->note);
            fputs("</div>", f);
        }
        if (r->status == CF_SKIP) {
            fputs("<div class=\"note\">skipped: ", f);
            esc(f, r->reason);
            fputs("</div>", f);
        }
        fputs("</td><td class=\"mono\">", f);
        operands(f, r);
        fputs("</td><td class=\"n mono\">", f);
        if (r->status != CF_SKIP) num(f, r->error);
        fputs("</td><td class=\"n mono\">", f);
        if (r->status != CF_SKIP) num(f, r->limit);
        fputs("</td><td>", f);
        if (r->status != CF_SKIP && r->limit == r->limit) ratio_bar(f, r->error, r->limit, r->status == CF_FAIL);
        fprintf(f, "</td><td><span class=\"b %s\">%s</span></td><td class=\"n mono\">", badge(r->status),
                cf_status_name(r->status));
        if (r->target_ms >= 0) fprintf(f, "%.2f", r->target_ms);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

dsrt_status cf_write_html(const cf_suite *S, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return dsrt_error(DSRT_CODE_IO, "cannot write the HTML report '%s'", path);
    const cf_options *o = S->opt;
    int pass, fail, skip;
    cf_counts(S, &pass, &fail, &skip);
    bool ok = fail == 0;
    const char *verdict = fail ? "FAIL" : pass ? "PASS" : "ALL SKIPPED", *vclass = fail ? "v-fail" : pass ? "v-pass" : "v-skip";
    fprintf(f, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>dsrt conformance: ");
    esc(f, S->tinfo.caps.name);
    fprintf(f, " (%s) %s</title>\n<style>%s</style></head><body><main>\n", S->tinfo.label, verdict, CSS);

    /* Verdict. */
    fprintf(f, "<header><div class=\"verdict %s\">%s</div><div><h1>DeepSeek-V3.2 op conformance: ", vclass, verdict);
    esc(f, S->tinfo.caps.name);
    fprintf(f, "</h1><p class=\"sub\">backend <b>%s</b> device %s, checked against %s &middot; dsrt %s &middot; suite %s "
            "&middot; report schema %d</p><p class=\"sub\">%s &middot; seed %llu &middot; %s run%s</p></div></header>\n",
            S->tinfo.backend, S->tinfo.label, S->rinfo.label, DSRT_VERSION_STRING, DSRT_CONFORM_SUITE_VERSION,
            DSRT_CONFORM_SCHEMA_VERSION, S->timestamp, (unsigned long long)o->seed, o->quick ? "quick" : "full",
            o->ops ? " (filtered by --ops)" : "");
    if (strcmp(S->tinfo.backend, S->rinfo.backend) == 0)
        fputs("<p class=\"selfcheck\">The target is the reference backend itself: op errors are zero by construction; the "
              "op cases check determinism, memory safety and the suite (whole-model cases still compare with golden "
              "logits).</p>\n", f);
    int covered = cf_ops_covered(S);
    fprintf(f, "<div class=\"cards\"><div class=\"card\"><span>cases</span><b>%d</b></div>"
            "<div class=\"card\"><span>passed</span><b style=\"color:#1f8a4c\">%d</b></div>"
            "<div class=\"card\"><span>failed</span><b style=\"color:%s\">%d</b></div>"
            "<div class=\"card\"><span>skipped</span><b>%d</b></div>"
            "<div class=\"card\"><span>ops verified</span><b>%d / %d</b></div>"
            "<div class=\"card\"><span>time</span><b>%.1f s</b></div></div>\n",
            S->nresults, pass, fail ? "#c0392b" : "#1d2430", fail, skip, covered, DSRT_OP_COUNT, S->elapsed_s);
    if (ok && !pass)
        fprintf(f, "<p class=\"selfcheck\">Nothing failed and nothing was verified: the backend supports none of the "
                "cases (reasons below). This is where a new port starts; docs/porting.md says what to implement first.</p>\n");
    else if (ok && covered < DSRT_OP_COUNT)
        fprintf(f, "<p class=\"muted\">No case failed. %d of %d ops have no passing case (skipped on this device: see "
                "below); the device is conformant for the ops it runs.</p>\n", DSRT_OP_COUNT - covered, DSRT_OP_COUNT);

    /* Summary per op, failures first. */
    cf_op_summary rows[DSRT_OP_COUNT + 1];
    int n = cf_summarize_ops(S, rows, DSRT_OP_COUNT + 1);
    fputs("<h2>Results by op</h2>\n<table><tr><th>op</th><th>status</th><th class=\"n\">cases</th><th class=\"n\">"
          "passed</th><th class=\"n\">failed</th><th class=\"n\">skipped</th><th class=\"n\">worst error &divide; limit</th>"
          "<th>comparison</th></tr>\n", f);
    for (int rank = 0; rank < 3; rank++) /* failing ops first, then passing, then skipped; op order within */
    for (int i = 0; i < n; i++) {
        const cf_op_summary *s = &rows[i];
        if (op_rank(s) != rank) continue;
        cf_status st = s->failed ? CF_FAIL : s->passed ? CF_PASS : CF_SKIP;
        fprintf(f, "<tr><td class=\"mono\"><a href=\"#op-%s\">%s</a></td><td><span class=\"b %s\">%s</span></td>"
                "<td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n mono\">",
                s->op, s->op, badge(st), cf_status_name(st), s->cases, s->passed, s->failed, s->skipped);
        if (s->passed || s->failed) num(f, s->worst_ratio);
        fputs("</td><td class=\"muted\">", f);
        dsrt_op_kind k;
        dsrt_status ps = dsrt_op_parse(s->op, &k);
        fputs(ps ? "golden logits: f32 |&Delta;| &le; 1e-3 and argmax; fp8 cosine &ge; 0.999 and argmax" : cf_op_check_text(k), f);
        dsrt_status_free(ps);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);

    /* Failures: one row each, what failed in words, the failing checks' details under it. */
    if (fail) {
        fprintf(f, "<h2>Failures (%d)</h2>\n<table class=\"fails\"><colgroup><col style=\"width:36%%\"><col></colgroup>"
                "<tr><th>case</th><th>what failed</th></tr>\n", fail);
        for (int i = 0; i < S->nresults; i++) {
            const cf_result *r = &S->results[i];
            if (r->status != CF_FAIL) continue;
            fputs("<tr><td><span class=\"mono\"><b>", f);
            esc(f, r->id);
            fputs("</b></span><div class=\"mono note\">", f);
            operands(f, r);
            fputs("</div></td><td>", f);
            esc(f, r->reason);
            fprintf(f, "<div class=\"note\">deterministic: %s &middot; canaries: %s</div></td></tr>\n",
                    r->deterministic < 0 ? "not checked" : r->deterministic ? "yes" : "<b>no</b>",
                    r->canaries < 0 ? "not checked" : r->canaries ? "intact" : "<b>damaged</b>");
        }
        fputs("</table>\n", f);
    }

    /* Skips grouped by reason: one line per distinct reason. */
    if (skip) {
        fprintf(f, "<h2>Skipped (%d)</h2>\n<p class=\"muted\">Skips come from the device's capabilities and from its "
                "backend's <span class=\"mono\">supports_op</span>; the reason is the backend's own.</p>\n", skip);
        bool *done = calloc((size_t)S->nresults + 1, 1);
        for (int i = 0; done && i < S->nresults; i++) {
            const cf_result *r = &S->results[i];
            if (r->status != CF_SKIP || done[i]) continue;
            int cnt = 0;
            for (int j = i; j < S->nresults; j++)
                if (S->results[j].status == CF_SKIP && strcmp(S->results[j].reason, r->reason) == 0) cnt++;
            fputs("<div class=\"skip-box\"><b>", f);
            esc(f, r->reason);
            fprintf(f, "</b> <span class=\"muted\">(%d case%s)</span><details><summary>cases</summary><div class=\"ids mono\">",
                    cnt, cnt == 1 ? "" : "s");
            for (int j = i; j < S->nresults; j++) {
                const cf_result *q = &S->results[j];
                if (q->status != CF_SKIP || strcmp(q->reason, r->reason) != 0) continue;
                done[j] = true;
                esc(f, q->id);
                fputs("<br>", f);
            }
            fputs("</div></details></div>\n", f);
        }
        free(done);
    }

    /* Devices. */
    fputs("<h2>Devices</h2>\n<table class=\"kv\">", f);
    device_rows(f, &S->tinfo, &S->rinfo);
    fputs("</table>\n", f);

    /* Every case, op by op. */
    fputs("<h2>All cases</h2>\n", f);
    n = cf_summarize_ops(S, rows, DSRT_OP_COUNT + 1);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<h3 id=\"op-%s\" class=\"mono\">%s <span class=\"muted\" style=\"font-weight:400\">%d case%s</span></h3>\n",
                rows[i].op, rows[i].op, rows[i].cases, rows[i].cases == 1 ? "" : "s");
        case_rows(f, S, rows[i].op);
    }

    fputs("<footer><p><b>How to read this.</b> Each case runs one op through the dsrt HAL on the target and on the "
          "reference (the CPU backend) with identical inputs. Float outputs are compared by normalized mean squared "
          "error, NMSE = &Sigma;(target&minus;reference)&sup2; / &Sigma;reference&sup2;; NaN and &plusmn;Inf must "
          "appear in the same places. Limits: 0 for conversions and copies, 1e-7 for element-wise math, 1e-6 for FP8 "
          "quantization and the indexer, 5e-4 for GEMMs and attention. Top-k and MoE routing compare the selected sets "
          "(equal scores may swap); integer outputs must match exactly. Every case also runs twice on the target "
          "(identical bytes required) and every operand sits between guard bytes that must survive.</p><p>"
          "The bar shows error against limit: a decade per step, full at the limit. Details: docs/conformance.md. "
          "Command: <span class=\"mono\">", f);
    esc(f, o->command_line);
    fputs("</span></p></footer>\n</main></body></html>\n", f);
    bool good = !ferror(f);
    good = fclose(f) == 0 && good;
    return good ? DSRT_OK : dsrt_error(DSRT_CODE_IO, "writing the HTML report '%s' failed", path);
}
