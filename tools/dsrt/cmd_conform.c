/* dsrt conform: certify a backend. Every HAL op over shapes, dtypes and edge cases on the target device
 * and on the CPU reference, with NMSE limits per op, set comparisons for selections, determinism and
 * memory-safety canaries; a JSON report (docs/conformance.md) and a readable HTML page. Exit status 0
 * only when no case fails. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "conform.h"

static void conform_usage(FILE *f)
{
    fprintf(f,
            "usage: dsrt conform --backend NAME[:N] [--device N] [--ops PATTERN] [--report FILE.json]\n"
            "                    [--html FILE.html] [--seed S] [--quick] [--budget-mb MB]\n"
            "                    [--reference NAME[:N]] [--golden DIR] [--backend-plugin FILE]... [--list] [--verbose]\n"
            "\n"
            "Runs every HAL op on device N of backend NAME and on the CPU reference with identical inputs, and\n"
            "compares them: NMSE against per-op limits (0 conversions, 1e-7 element-wise, 1e-6 FP8 quantization\n"
            "and indexer, 5e-4 GEMM and attention), top-k and MoE routing as sets up to ties, integers exactly.\n"
            "Each case also runs twice on the target (identical bytes) and between guard bytes (memory safety).\n"
            "Ops the backend does not support are skipped with its reason. Exit status 0 when nothing fails.\n"
            "\n"
            "  --backend NAME[:N]     backend under test (dsrt devices lists them); NAME:N = device N\n"
            "  --device N             its device index (default 0)\n"
            "  --ops PATTERN          comma-separated globs over op names and case ids, e.g. 'linear*,topk'\n"
            "  --report FILE.json     machine-readable report (schema version %d)\n"
            "  --html FILE.html       readable report for people\n"
            "  --seed S               input data seed (default 1); inputs depend on the seed and case id only\n"
            "  --quick                a few cases per op, no model-sized cases (seconds)\n"
            "  --budget-mb MB         operand bytes one case may use (default 256); model-sized cases shrink\n"
            "                         to fit it and the devices' largest allocation, and say what was tried\n"
            "  --reference NAME[:N]   reference device (default cpu:0)\n"
            "  --golden DIR           whole-model golden cases (one folder each, e.g. tests/data)\n"
            "  --backend-plugin FILE  load an out-of-tree backend first (also DSRT_BACKEND_PATH)\n"
            "  --list                 print the case ids that would run, and exit\n"
            "  --verbose              one line per case\n",
            DSRT_CONFORM_SCHEMA_VERSION);
}

static int conform_bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "dsrt conform: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see dsrt conform --help)\n");
    return 2;
}

static bool parse_long(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static char *join_args(int argc, char **argv)
{
    size_t n = 16;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    strcpy(s, "dsrt");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static void device_info(dsrt_device *d, cf_device_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->label, sizeof info->label, "%s", dsrt_device_label(d));
    snprintf(info->backend, sizeof info->backend, "%s", dsrt_backend_name(dsrt_device_backend(d)));
    info->caps = *dsrt_device_get_caps(d);
}

static dsrt_status open_target(const char *name, int index, dsrt_device **out)
{
    dsrt_backend *b;
    DSRT_TRY(dsrt_backend_find(name, &b));
    int n = 0;
    DSRT_TRY(dsrt_backend_device_count(b, &n));
    if (n == 0)
        return dsrt_error(DSRT_CODE_UNAVAILABLE, "backend '%s' has no device: %s", name, dsrt_backend_unavailable_reason(b));
    return dsrt_device_open(b, index, out);
}

int dsrt_cmd_conform(int argc, char **argv)
{
    char *cmdline = join_args(argc, argv);
    cf_options opt = {.device = 0, .ref_backend = "cpu", .seed = 1, .budget_mb = 256, .command_line = cmdline};
    const char *report = NULL, *html = NULL, *reference = "cpu:0";
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--backend-plugin") == 0 && i + 1 < argc) opt.plugin = argv[i + 1];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            conform_usage(stdout);
            free(cmdline);
            return 0;
        }
    }
    int rc = 2;
    if (dsrt_cli_load_plugins("conform", &argc, argv)) {
        free(cmdline);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        bool takes = strcmp(a, "--backend") == 0 || strcmp(a, "--device") == 0 || strcmp(a, "--ops") == 0 ||
                     strcmp(a, "--report") == 0 || strcmp(a, "--html") == 0 || strcmp(a, "--seed") == 0 ||
                     strcmp(a, "--budget-mb") == 0 || strcmp(a, "--reference") == 0 || strcmp(a, "--golden") == 0;
        if (takes && !v) {
            rc = conform_bad("%s needs a value", a);
            goto done;
        }
        if (strcmp(a, "--backend") == 0) opt.backend = v;
        else if (strcmp(a, "--device") == 0) {
            if (!parse_long(v, 0, 1 << 20, &n)) {
                rc = conform_bad("bad --device '%s'", v);
                goto done;
            }
            opt.device = (int)n;
        } else if (strcmp(a, "--ops") == 0) opt.ops = v;
        else if (strcmp(a, "--report") == 0) report = v;
        else if (strcmp(a, "--html") == 0) html = v;
        else if (strcmp(a, "--seed") == 0) {
            if (!parse_long(v, 0, 0x7fffffffffffffffLL, &n)) {
                rc = conform_bad("bad --seed '%s'", v);
                goto done;
            }
            opt.seed = (uint64_t)n;
        } else if (strcmp(a, "--budget-mb") == 0) {
            if (!parse_long(v, 1, 1 << 24, &n)) {
                rc = conform_bad("bad --budget-mb '%s'", v);
                goto done;
            }
            opt.budget_mb = (double)n;
        } else if (strcmp(a, "--reference") == 0) reference = v;
        else if (strcmp(a, "--golden") == 0) opt.golden_dir = v;
        else if (strcmp(a, "--quick") == 0) opt.quick = true;
        else if (strcmp(a, "--list") == 0) opt.list = true;
        else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) opt.verbose = true;
        else {
            rc = conform_bad("unknown option '%s'", a);
            goto done;
        }
        if (takes) i++;
    }
    dsrt_status env = dsrt_registry_load_env_plugins();
    if (env) {
        fprintf(stderr, "dsrt conform: warning: %s\n", dsrt_status_message(env));
        dsrt_status_free(env);
    }
    cf_suite S;
    memset(&S, 0, sizeof S);
    S.opt = &opt;
    S.log = stdout;
    if (opt.list) {
        cf_generate_all(&S);
        cf_run_model_cases(&S);
        rc = 0;
        goto done;
    }
    if (!opt.backend) {
        rc = conform_bad("%s", "--backend NAME is required");
        goto done;
    }
    /* --backend NAME:N (as dsrt bench and dsrt devices spell a device) means --device N */
    char bname[64];
    const char *colon = strchr(opt.backend, ':');
    if (colon) {
        bool dev_given = opt.device != 0;
        long long n;
        if (!parse_long(colon + 1, 0, 1 << 20, &n) || colon == opt.backend ||
            (size_t)(colon - opt.backend) >= sizeof bname) {
            rc = conform_bad("bad --backend '%s' (expected NAME or NAME:DEVICE)", opt.backend);
            goto done;
        }
        if (dev_given && opt.device != (int)n) {
            rc = conform_bad("--backend '%s' and --device name different devices", opt.backend);
            goto done;
        }
        snprintf(bname, sizeof bname, "%.*s", (int)(colon - opt.backend), opt.backend);
        opt.backend = bname;
        opt.device = (int)n;
    }
    /* Report paths are checked before the run, not after it. */
    const char *outs[2] = {report, html};
    for (int i = 0; i < 2; i++) {
        if (!outs[i]) continue;
        FILE *f = fopen(outs[i], "w");
        if (!f) {
            fprintf(stderr, "dsrt conform: error: cannot write '%s': %s\n", outs[i], strerror(errno));
            rc = 1;
            goto done;
        }
        fclose(f);
    }
    rc = 1;
    dsrt_status st = open_target(opt.backend, opt.device, &S.target);
    if (!st) st = dsrt_device_open_by_name(reference, &S.ref);
    if (!st) st = dsrt_stream_create(S.target, &S.ts);
    if (!st) st = dsrt_stream_create(S.ref, &S.rs);
    if (st) {
        dsrt_cli_fail("conform", st);
        goto cleanup;
    }
    device_info(S.target, &S.tinfo);
    device_info(S.ref, &S.rinfo);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(S.timestamp, sizeof S.timestamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("dsrt conform %s: %s (%s, driver %s) against %s (%s)%s\n", DSRT_CONFORM_SUITE_VERSION, S.tinfo.label,
           S.tinfo.caps.name, S.tinfo.caps.driver[0] ? S.tinfo.caps.driver : "unknown", S.rinfo.label, S.rinfo.caps.name,
           opt.quick ? ", quick" : "");
    if (strcmp(S.tinfo.backend, S.rinfo.backend) == 0)
        printf("the target is the reference backend: this checks determinism, canaries and the harness itself\n");
    fflush(stdout);
    S.started = cf_now();
    cf_generate_all(&S);
    cf_run_model_cases(&S);
    S.elapsed_s = cf_now() - S.started;
    if (S.oom) {
        fprintf(stderr, "dsrt conform: error: out of host memory recording results\n");
        goto cleanup;
    }
    int pass, fail, skip;
    cf_counts(&S, &pass, &fail, &skip);
    if (report) {
        st = cf_write_json(&S, report);
        if (st) {
            dsrt_cli_fail("conform", st);
            goto cleanup;
        }
    }
    if (html) {
        st = cf_write_html(&S, html);
        if (st) {
            dsrt_cli_fail("conform", st);
            goto cleanup;
        }
    }
    printf("%s: %d cases: %d passed, %d failed, %d skipped; %d of %d ops verified; %.1f s%s%s%s%s\n",
           fail ? "FAIL" : pass ? "PASS" : "NO FAILURES (all skipped)", S.nresults, pass, fail, skip, cf_ops_covered(&S), DSRT_OP_COUNT, S.elapsed_s,
           report ? "; report " : "", report ? report : "", html ? "; html " : "", html ? html : "");
    rc = fail ? 1 : 0;
    if (S.nresults == 0) { /* a filter that matches nothing must not read as a pass */
        fprintf(stderr, "dsrt conform: error: no case matched --ops '%s' (dsrt conform --list shows the case ids)\n",
                opt.ops ? opt.ops : "");
        rc = 2;
    }
cleanup:
    dsrt_stream_release(S.ts);
    dsrt_stream_release(S.rs);
    dsrt_device_release(S.target);
    dsrt_device_release(S.ref);
    free(S.results);
done:
    free(cmdline);
    return rc;
}
