/* dsrt conform: the op conformance suite (engine shared by cmd_conform.c and the conform_*.c files).
 *
 * A case is one op value with concrete operands. It runs through the HAL only: on the target device
 * (twice, for determinism) and on the reference device (the CPU backend) with identical inputs. Every
 * operand lives in its own buffer between guard bytes; after the op the guards, the padding of strided
 * views and all inputs must be unchanged. Outputs are compared per op with the methods and limits of
 * docs/conformance.md. Nothing here knows a backend by name: skips come from capabilities and
 * dsrt_device_supports, with the backend's own words as the reason. */
#ifndef DSRT_CONFORM_H
#define DSRT_CONFORM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dsrt/dsrt.h"

/* Bumped when cases, limits or checks change meaning (the report says which suite made it). */
#define DSRT_CONFORM_SUITE_VERSION "1.0.0"
/* Bumped when the JSON report changes shape (docs/conformance.md describes version 1). */
#define DSRT_CONFORM_SCHEMA_VERSION 1

/* Guard bytes on each side of every operand. 256 keeps views aligned for vector loads and is wider
 * than any plausible vector overrun; the canary is position dependent so shifted writes show. */
#define CF_GUARD 256

enum { CF_NIN = DSRT_OP_MAX_IN, CF_NOUT = DSRT_OP_MAX_OUT, CF_NOPER = CF_NIN + CF_NOUT };

typedef enum cf_status { CF_PASS = 0, CF_FAIL = 1, CF_SKIP = 2 } cf_status;

/* How an output is compared with the reference. */
typedef enum cf_cmp {
    CF_CMP_DEFAULT = 0, /* NMSE for float outputs, EXACT for integer and byte outputs */
    CF_CMP_NMSE,        /* decoded values (block scales applied); NaN/Inf must match in place and sign */
    CF_CMP_EXACT,       /* identical element bytes */
    CF_CMP_TOPK,        /* per row: same selected scores as a multiset (ties may swap), valid order */
    CF_CMP_MOE,         /* ids (this output) and weights (next output) as sets up to ties of biased score */
    CF_CMP_SAMPLE,      /* identical ids, except where the draw sits on a probability boundary */
    CF_CMP_CACHE_FP8,   /* written slots: dequantized rows by NMSE; other slots: identical bytes */
    CF_CMP_NONE         /* checked together with another output */
} cf_cmp;

typedef struct cf_operand {
    bool present;
    dsrt_dtype dtype;
    int ndim;
    int64_t shape[DSRT_MAX_DIMS];
    int64_t pad;       /* extra elements after each innermost row: a strided (non-contiguous) view */
    uint8_t *data;     /* logical, contiguous elements; an output's data is its content before the op */
    bool scaled;       /* block-scale companion */
    dsrt_dtype sdtype; /* DSRT_UE8M0 or DSRT_F32 */
    int block[2];
    uint8_t *sdata;    /* contiguous scale grid */
    int alias;         /* outputs: the input whose view this output shares (in place), else -1 */
} cf_operand;

typedef struct cf_check {
    cf_cmp mode;
    double limit;   /* < 0: the op's default */
    int rows_from;  /* >= 0: only the first N rows are defined, N = last element of that reference output */
} cf_check;

typedef struct cf_case {
    dsrt_op_kind kind;
    char id[200];      /* "op/variant", unique in the suite */
    char variant[160];
    char tags[96];     /* space separated: edge nan empty alias strided paged ties large */
    char note[256];    /* what was tried (large cases), or other context for the report */
    char skip[384];    /* decided before running: budget, capabilities */
    dsrt_op_params p;
    cf_operand in[CF_NIN], out[CF_NOUT];
    cf_check check[CF_NOUT];
    uint64_t rng;      /* per-case generator state: inputs depend on the seed and the case id only */
    bool host_oom;     /* the host could not hold the case's data */
} cf_case;

typedef struct cf_tensor_desc {
    char name[24];
    bool output;
    dsrt_dtype dtype;
    int ndim;
    int64_t shape[DSRT_MAX_DIMS];
    int64_t pad;
    bool scaled;
    dsrt_dtype sdtype;
    int block[2];
    int alias;
} cf_tensor_desc;

typedef struct cf_check_result {
    char output[24];
    const char *method;
    double error;
    double limit;
    bool pass;
    char detail[320];
} cf_check_result;

typedef struct cf_result {
    char id[200];
    char op[32];
    int kind; /* a dsrt_op_kind, or -1 for whole-model cases */
    char variant[160];
    char tags[96];
    char note[256];
    int ntensors;
    cf_tensor_desc t[CF_NOPER];
    dsrt_op_params p;
    cf_status status;
    char reason[768];
    double error, limit; /* the deciding check: the worst error relative to its limit */
    const char *method;
    int nchecks;
    cf_check_result checks[2 * CF_NOUT];
    int deterministic; /* -1 not checked, 0 differed, 1 identical */
    int canaries;      /* -1 not checked, 0 damaged, 1 intact */
    double target_ms, ref_ms;
} cf_result;

typedef struct cf_options {
    const char *backend;
    int device;
    const char *plugin;       /* --backend-plugin FILE, for the report */
    const char *ref_backend;  /* "cpu" */
    int ref_device;
    const char *ops;          /* comma-separated globs over op names and case ids; NULL: all */
    uint64_t seed;
    bool quick;
    bool list;
    bool verbose;
    double budget_mb;         /* operand bytes one case may use */
    const char *golden_dir;   /* whole-model golden cases (tests/data); NULL: none */
    const char *command_line; /* for the report */
} cf_options;

typedef struct cf_device_info {
    char label[80];
    char backend[64];
    dsrt_device_caps caps;
} cf_device_info;

typedef struct cf_suite {
    const cf_options *opt;
    dsrt_device *target, *ref;
    dsrt_stream *ts, *rs;
    cf_device_info tinfo, rinfo;
    cf_result *results;
    int nresults, capresults;
    double started, elapsed_s;
    char timestamp[32];
    bool oom; /* results could not be recorded */
    FILE *log;
} cf_suite;

/* ---- engine (conform_engine.c) ---- */
/* Starts a case; NULL when the --ops filter (or --quick for a full-only case) leaves it out, or when
 * listing. The variant is printf-formatted. */
cf_case *cf_begin(cf_suite *S, dsrt_op_kind kind, bool in_quick, const char *tags, const char *fmt, ...)
    DSRT_PRINTF(5, 6);
/* Runs the case (unless skipped), records its result and frees it. */
void cf_finish(cf_suite *S, cf_case *c);
/* Appends a result that is not an op case (whole-model cases). */
void cf_record(cf_suite *S, const cf_result *r);
/* Wall-clock seconds. */
double cf_now(void);
/* Default limit of an op for an output compared by NMSE. */
double cf_default_limit(dsrt_op_kind kind);
const char *cf_status_name(cf_status s);
/* The op's comparison in a few words, for summaries ("NMSE 5e-4", "same scores selected, ..."). */
const char *cf_op_check_text(dsrt_op_kind kind);

/* ---- case data (conform_data.c) ---- */
uint64_t cf_rng_next(uint64_t *s);
double cf_rng_uniform(uint64_t *s); /* [0, 1) */
double cf_rng_normal(uint64_t *s);
int64_t cf_rng_int(uint64_t *s, int64_t n); /* [0, n) */
/* Declares operand i (input) or o (output) with its dtype and shape; data zeroed (inputs) or filled
 * with a poison value (outputs: NaN for floats, 0xC3 bytes otherwise) so unwritten elements show. */
cf_operand *cf_in(cf_case *c, int i, dsrt_dtype dt, int ndim, const int64_t *shape);
cf_operand *cf_out(cf_case *c, int o, dsrt_dtype dt, int ndim, const int64_t *shape);
/* Output o shares input i's view (in place). */
void cf_alias(cf_case *c, int o, int i);
int64_t cf_numel(const cf_operand *t);
void cf_set(cf_operand *t, int64_t i, float v);     /* stores v rounded to the operand's dtype */
float cf_get(const cf_operand *t, int64_t i);       /* decoded element (no scales) */
void cf_set_i32(cf_operand *t, int64_t i, int32_t v);
int32_t cf_get_i32(const cf_operand *t, int64_t i);
void cf_fill_normal(cf_case *c, cf_operand *t, double mean, double std);
void cf_fill_uniform(cf_case *c, cf_operand *t, double lo, double hi);
/* Random e4m3 codes (never NaN) whose values look like a quantized N(0,1) block. */
void cf_fill_e4m3(cf_case *c, cf_operand *t);
/* Attaches a block-scale companion with random power-of-two scales 2^[emin, emax]. */
void cf_add_scales(cf_case *c, cf_operand *t, dsrt_dtype sdt, int br, int bc, int emin, int emax);
/* Output scale companion (receives scales): poison-filled. */
void cf_out_scales(cf_case *c, cf_operand *t, dsrt_dtype sdt, int br, int bc);
int64_t cf_scale_numel(const cf_operand *t);
float cf_scale_at(const cf_operand *t, int64_t lead, int64_t r, int64_t col); /* scale of element */
/* A random permutation of 0..n-1. */
void cf_shuffle_i32(cf_case *c, int32_t *v, int64_t n);
/* Bytes of data and scales of all operands. */
size_t cf_case_bytes(const cf_case *c);
void cf_case_free(cf_case *c);

/* ---- comparison (conform_compare.c) ---- */
/* Compares output o of the target against the reference as c->check[o] asks. `ref` and `tgt` are all
 * outputs as read back (logical contiguous data and scales, like the case's operands); the case's
 * inputs are the ones both devices ran on. Fills r[0] and, for NMSE checks, r[1] (the per-element
 * bound); returns how many results it wrote. */
int cf_compare_output(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt,
                       cf_check_result *r);

/* ---- the case matrix (conform_cases.c) ---- */
void cf_generate_all(cf_suite *S);

/* ---- whole-model golden logits (conform_model.c) ---- */
void cf_run_model_cases(cf_suite *S);

/* ---- reports (conform_report.c, conform_html.c) ---- */
dsrt_status cf_write_json(const cf_suite *S, const char *path);
dsrt_status cf_write_html(const cf_suite *S, const char *path);
/* Counts over the results; per-op rows are in op order, `model` last. */
typedef struct cf_op_summary {
    char op[32];
    int cases, passed, failed, skipped;
    double worst_ratio; /* worst error / limit over passed and failed cases */
} cf_op_summary;
int cf_summarize_ops(const cf_suite *S, cf_op_summary *rows, int cap);
void cf_counts(const cf_suite *S, int *passed, int *failed, int *skipped);
int cf_ops_covered(const cf_suite *S); /* op kinds with at least one passing case */

#endif
