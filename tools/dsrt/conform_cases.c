/* dsrt conform: the case matrix. Every HAL op over shapes and dtypes the V3.2 graph uses, plus edge
 * cases: widths that are not multiples of 128, top-k larger than the row, empty batches, one token,
 * NaN and Inf inputs, in-place and strided views, paged caches with shuffled page tables, and a
 * "large" tier at model sizes bounded by the memory budget and the devices' allocation limits.
 *
 * Each generator declares cases with cf_begin (which applies --ops and --quick), fills operands from
 * the case's own random stream, and hands them to cf_finish. Shapes follow the 671B configuration
 * (SPEC.md section 1) where that keeps the CPU reference fast, and small odd sizes elsewhere. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"
#include "dsrt/act_quant.h"
#include "dsrt/half.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define DN(t) dsrt_dtype_name(t)

/* Softmax scale of the 671B MLA: (128 + 64)^-0.5 * m^2 with YaRN m = 0.1 ln 40 + 1 (SPEC.md 3.5). */
#define MLA_SCALE 0.13523378f

static void human(double b, char *out, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, len, "%.*f %s", i ? 1 : 0, b, u[i]);
}

/* The large tier: how many units (rows, experts, keys) of a model-sized case fit. `per` bytes per unit
 * over all operands, `fixed` bytes that do not grow, `big_per` bytes per unit of the largest single
 * operand (bounded by each device's max allocation). Records what was wanted and what runs. */
static int64_t fit_units(cf_suite *S, cf_case *c, const char *unit, int64_t want, int64_t quantum, double per,
                         double fixed, double big_per)
{
    double budget = S->opt->budget_mb * 1048576.0;
    double limit = budget > 0 ? budget : INFINITY;
    int64_t n = want;
    double cap_units = (limit - fixed) / per;
    uint64_t ma = S->tinfo.caps.max_alloc_bytes;
    if (S->rinfo.caps.max_alloc_bytes && (!ma || S->rinfo.caps.max_alloc_bytes < ma)) ma = S->rinfo.caps.max_alloc_bytes;
    if (ma && big_per > 0) {
        double u = ((double)ma - 2 * CF_GUARD) / big_per;
        if (u < cap_units) cap_units = u;
    }
    if ((double)n > cap_units) n = (int64_t)cap_units / quantum * quantum;
    char a[32], b[32];
    human(fixed + per * (double)want, a, sizeof a);
    if (n >= want) {
        snprintf(c->note, sizeof c->note, "model size %s=%lld (%s of operands) fits the %.0f MiB budget", unit,
                 (long long)want, a, S->opt->budget_mb);
        return want;
    }
    if (n < quantum) {
        snprintf(c->skip, sizeof c->skip, "model size %s=%lld needs %s of operands; not even %s=%lld fits the %.0f MiB "
                 "budget and the devices' largest allocation", unit, (long long)want, a, unit, (long long)quantum,
                 S->opt->budget_mb);
        return quantum;
    }
    human(fixed + per * (double)n, b, sizeof b);
    snprintf(c->note, sizeof c->note, "tried model size %s=%lld (%s of operands); ran %s=%lld (%s), the most that fits "
             "the %.0f MiB budget (--budget-mb) and the devices' largest allocation", unit, (long long)want, a, unit,
             (long long)n, b, S->opt->budget_mb);
    return n;
}

/* Sprinkles special values over a float operand: NaN, +-Inf, huge and tiny values. */
static void specials(cf_case *c, cf_operand *t, int count)
{
    static const float v[] = {NAN, INFINITY, -INFINITY, 3.0e38f, -1.0e-40f, 65520.0f, 1000.0f, -0.0f};
    int64_t n = cf_numel(t);
    for (int i = 0; i < count && n; i++) cf_set(t, cf_rng_int(&c->rng, n), v[i % 8]);
}

/* Rows of distinct ids in [0, E). */
static void distinct_ids(cf_case *c, cf_operand *t, int64_t E)
{
    int64_t T = t->shape[0], k = t->shape[1];
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)(E + 1));
    if (!perm) {
        c->host_oom = true;
        return;
    }
    for (int64_t r = 0; r < T; r++) {
        cf_shuffle_i32(c, perm, E);
        for (int64_t j = 0; j < k; j++) cf_set_i32(t, r * k + j, perm[j]);
    }
    free(perm);
}

/* cos/sin of the RoPE table [P, R/2, 2]: theta 10000, frequency i = theta^(-2i/R). */
static void rope_table(cf_operand *t, int64_t P, int64_t R)
{
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < R / 2; i++) {
            double f = pow(10000.0, -2.0 * (double)i / (double)R), a = (double)p * f;
            cf_set(t, (p * (R / 2) + i) * 2, (float)cos(a));
            cf_set(t, (p * (R / 2) + i) * 2 + 1, (float)sin(a));
        }
}

/* A paged cache: sequences of the given lengths get ceil(len/page) pages each, taken from a shuffled
 * pool, so logically consecutive pages are scattered; unused table entries are -1. Returns the slot
 * count S (pool pages + 2 spare pages no sequence uses). */
static int64_t paged_table(cf_case *c, int nseq, const int32_t *lens, int page, int64_t *P_out, int32_t **table)
{
    int64_t P = 1, total = 2;
    for (int s = 0; s < nseq; s++) {
        int64_t need = (lens[s] + page - 1) / page;
        if (need > P) P = need;
        total += need;
    }
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)total);
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)(nseq * P + 1));
    if (!perm || !bt) {
        free(perm);
        free(bt);
        c->host_oom = true;
        *table = NULL;
        *P_out = P;
        return page;
    }
    cf_shuffle_i32(c, perm, total);
    int64_t next = 0;
    for (int s = 0; s < nseq; s++) {
        int64_t need = (lens[s] + page - 1) / page;
        for (int64_t j = 0; j < P; j++) bt[s * P + j] = j < need ? perm[next++] : -1;
    }
    free(perm);
    *table = bt;
    *P_out = P;
    return total * page;
}

/* FP8 cache rows as DSRT_OP_CACHE_WRITE writes them: W1 e4m3 values quantized per 128 with f32
 * (power-of-two) scales, then W2 bf16 values. */
static void fp8_rows(cf_case *c, cf_operand *t, int64_t W1, int64_t W2)
{
    int64_t S = t->shape[0], C = t->shape[1], nb = (W1 + 127) / 128;
    float *v = malloc(sizeof(float) * (size_t)(W1 + 1)), *sc = malloc(sizeof(float) * (size_t)(nb + 1));
    if (!v || !sc || !t->data) {
        free(v);
        free(sc);
        c->host_oom = c->host_oom || !t->data || !v || !sc;
        return;
    }
    for (int64_t s = 0; s < S; s++) {
        uint8_t *row = t->data + s * C;
        for (int64_t i = 0; i < W1; i++) v[i] = (float)cf_rng_normal(&c->rng);
        dsrt_act_quant_row(v, W1, 128, true, row, sc);
        memcpy(row + W1, sc, sizeof(float) * (size_t)nb);
        for (int64_t i = 0; i < W2; i++) {
            uint16_t h = dsrt_f32_to_bf16((float)cf_rng_normal(&c->rng));
            memcpy(row + W1 + 4 * nb + 2 * i, &h, 2);
        }
    }
    free(v);
    free(sc);
}

static void random_bytes(cf_case *c, cf_operand *t)
{
    int64_t n = cf_numel(t) * (int64_t)dsrt_dtype_size(t->dtype);
    for (int64_t i = 0; t->data && i < n; i++) t->data[i] = (uint8_t)cf_rng_next(&c->rng);
}

/* ---- convert ---- */
static void gen_convert(cf_suite *S)
{
    static const struct {
        dsrt_dtype x, y;
        int64_t r, k;
        bool quick;
        int specials;
    } V[] = {
        {DSRT_F32, DSRT_BF16, 64, 1000, true, 0},  {DSRT_BF16, DSRT_F32, 33, 4097, false, 0},
        {DSRT_F32, DSRT_F16, 17, 300, false, 0},   {DSRT_F16, DSRT_F32, 7, 256, false, 0},
        {DSRT_F32, DSRT_E4M3, 16, 256, false, 0},  {DSRT_E5M2, DSRT_F32, 8, 512, false, 0},
        {DSRT_BF16, DSRT_F16, 5, 129, false, 0},   {DSRT_F32, DSRT_BF16, 16, 64, true, 12},
        {DSRT_F32, DSRT_F16, 16, 64, false, 12},   {DSRT_F32, DSRT_E4M3, 16, 64, false, 12},
        /* No e5m2 output with special values: ops.h says fp8 outputs saturate while the reference keeps
         * e5m2's infinities (IEEE-like); V3.2 never writes e5m2, so the suite leaves it undecided. */
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_CONVERT, V[i].quick, V[i].specials ? "nan edge" : "", "%s->%s %lldx%lld%s",
                              DN(V[i].x), DN(V[i].y), (long long)V[i].r, (long long)V[i].k,
                              V[i].specials ? " nan-inf-saturation" : "");
        if (!c) continue;
        cf_operand *x = cf_in(c, 0, V[i].x, 2, SH(V[i].r, V[i].k));
        cf_fill_normal(c, x, 0, V[i].x == DSRT_E5M2 ? 100 : 3);
        specials(c, x, V[i].specials);
        cf_out(c, 0, V[i].y, 2, SH(V[i].r, V[i].k));
        cf_finish(S, c);
    }
    /* FP8 weights with block scales, partial edge blocks, stacked experts. */
    static const struct {
        int64_t g, r, k;
        dsrt_dtype s, y;
        bool quick;
    } W[] = {{0, 300, 200, DSRT_UE8M0, DSRT_F32, true},
             {0, 129, 257, DSRT_F32, DSRT_BF16, false},
             {4, 256, 384, DSRT_UE8M0, DSRT_BF16, false}};
    for (size_t i = 0; i < sizeof W / sizeof W[0]; i++) {
        bool st = W[i].g > 0;
        cf_case *c = cf_begin(S, DSRT_OP_CONVERT, W[i].quick, "fp8", "e4m3+%s 128x128 blocks->%s %s%lldx%lld", DN(W[i].s),
                              DN(W[i].y), st ? "4x" : "", (long long)W[i].r, (long long)W[i].k);
        if (!c) continue;
        cf_operand *x = st ? cf_in(c, 0, DSRT_E4M3, 3, SH(W[i].g, W[i].r, W[i].k)) : cf_in(c, 0, DSRT_E4M3, 2, SH(W[i].r, W[i].k));
        cf_fill_e4m3(c, x);
        cf_add_scales(c, x, W[i].s, 128, 128, -12, -6);
        if (st) cf_out(c, 0, W[i].y, 3, SH(W[i].g, W[i].r, W[i].k));
        else cf_out(c, 0, W[i].y, 2, SH(W[i].r, W[i].k));
        cf_finish(S, c);
    }
    cf_case *c = cf_begin(S, DSRT_OP_CONVERT, true, "exact", "i32->i32 5x77");
    if (c) {
        cf_operand *x = cf_in(c, 0, DSRT_I32, 2, SH(5, 77));
        for (int64_t i = 0; i < cf_numel(x); i++) cf_set_i32(x, i, (int32_t)cf_rng_next(&c->rng));
        cf_out(c, 0, DSRT_I32, 2, SH(5, 77));
        cf_finish(S, c);
    }
    if ((c = cf_begin(S, DSRT_OP_CONVERT, false, "exact", "u8->u8 3x656"))) {
        random_bytes(c, cf_in(c, 0, DSRT_U8, 2, SH(3, 656)));
        cf_out(c, 0, DSRT_U8, 2, SH(3, 656));
        cf_finish(S, c);
    }
    if ((c = cf_begin(S, DSRT_OP_CONVERT, false, "", "f32->bf16 rank4 2x3x5x7"))) {
        cf_fill_normal(c, cf_in(c, 0, DSRT_F32, 4, SH(2, 3, 5, 7)), 0, 1);
        cf_out(c, 0, DSRT_BF16, 4, SH(2, 3, 5, 7));
        cf_finish(S, c);
    }
    if ((c = cf_begin(S, DSRT_OP_CONVERT, true, "strided", "f32->bf16 10x64 strided views"))) {
        cf_operand *x = cf_in(c, 0, DSRT_F32, 2, SH(10, 64));
        x->pad = 3;
        cf_fill_normal(c, x, 0, 1);
        cf_out(c, 0, DSRT_BF16, 2, SH(10, 64))->pad = 5;
        cf_finish(S, c);
    }
    if ((c = cf_begin(S, DSRT_OP_CONVERT, true, "empty", "f32->bf16 0x64"))) {
        cf_in(c, 0, DSRT_F32, 2, SH(0, 64));
        cf_out(c, 0, DSRT_BF16, 2, SH(0, 64));
        cf_finish(S, c);
    }
    /* The largest single tensor the budget and the devices allow: f32 rows of the hidden size. */
    if ((c = cf_begin(S, DSRT_OP_CONVERT, false, "large", "largest f32->bf16 rows of 7168"))) {
        int64_t want = 1 << 20; /* 28 GiB of f32: beyond any budget, so the limits decide */
        int64_t rows = fit_units(S, c, "rows", want, 64, 7168 * 6.0, 0, 7168 * 4.0);
        if (!c->skip[0]) {
            cf_operand *x = cf_in(c, 0, DSRT_F32, 2, SH(rows, 7168));
            cf_fill_uniform(c, x, -8, 8);
            cf_out(c, 0, DSRT_BF16, 2, SH(rows, 7168));
        }
        cf_finish(S, c);
    }
}

/* ---- embed ---- */
static void gen_embed(cf_suite *S)
{
    static const struct {
        dsrt_dtype tab, y;
        int64_t V, H, T;
        bool quick, bad_ids;
    } E[] = {
        {DSRT_BF16, DSRT_BF16, 1000, 896, 9, true, true},
        {DSRT_F32, DSRT_F32, 129, 7168, 1, false, false},
        {DSRT_BF16, DSRT_F32, 517, 200, 33, false, true},
        {DSRT_F32, DSRT_BF16, 64, 64, 0, true, false},
    };
    for (size_t i = 0; i < sizeof E / sizeof E[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_EMBED, E[i].quick, E[i].T == 0 ? "empty" : E[i].bad_ids ? "edge" : "",
                              "%s->%s V=%lld H=%lld T=%lld%s", DN(E[i].tab), DN(E[i].y), (long long)E[i].V,
                              (long long)E[i].H, (long long)E[i].T, E[i].bad_ids ? " with out-of-range ids" : "");
        if (!c) continue;
        cf_fill_normal(c, cf_in(c, 0, E[i].tab, 2, SH(E[i].V, E[i].H)), 0, 1);
        cf_operand *ids = cf_in(c, 1, DSRT_I32, 1, SH(E[i].T));
        for (int64_t t = 0; t < E[i].T; t++) cf_set_i32(ids, t, (int32_t)cf_rng_int(&c->rng, E[i].V));
        if (E[i].bad_ids && E[i].T >= 4) { /* out of range ids give zero rows */
            cf_set_i32(ids, 0, -1);
            cf_set_i32(ids, 1, (int32_t)E[i].V);
            cf_set_i32(ids, 2, INT32_MAX);
        }
        cf_out(c, 0, E[i].y, 2, SH(E[i].T, E[i].H));
        cf_finish(S, c);
    }
    cf_case *c = cf_begin(S, DSRT_OP_EMBED, false, "large", "bf16 vocabulary table H=7168 T=64");
    if (c) {
        int64_t V = fit_units(S, c, "V", 129280, 64, 7168 * 2.0, 64 * 7168 * 2.0, 7168 * 2.0);
        if (!c->skip[0]) {
            cf_fill_normal(c, cf_in(c, 0, DSRT_BF16, 2, SH(V, 7168)), 0, 1);
            cf_operand *ids = cf_in(c, 1, DSRT_I32, 1, SH(64));
            for (int64_t t = 0; t < 64; t++) cf_set_i32(ids, t, (int32_t)(t == 0 ? V - 1 : cf_rng_int(&c->rng, V)));
            cf_out(c, 0, DSRT_BF16, 2, SH(64, 7168));
        }
        cf_finish(S, c);
    }
}

/* ---- rms_norm, layer_norm ---- */
static void gen_norms(cf_suite *S)
{
    enum { NONE, SEP, ALIAS };
    static const struct {
        dsrt_dtype x, w, y;
        int64_t M, D;
        int res;
        bool quick;
        int nan;
        int64_t pad;
    } R[] = {
        {DSRT_F32, DSRT_F32, DSRT_F32, 4, 7168, NONE, true, 0, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 7, 7168, SEP, true, 0, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 5, 4097, ALIAS, false, 0, 0},
        {DSRT_F32, DSRT_BF16, DSRT_BF16, 33, 512, SEP, false, 0, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 3, 1, NONE, false, 0, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 0, 7168, SEP, true, 0, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 1, 1536, NONE, false, 0, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 4, 256, SEP, true, 1, 0},
        {DSRT_BF16, DSRT_F32, DSRT_F32, 6, 512, NONE, false, 0, 64},
        {DSRT_F16, DSRT_F16, DSRT_F16, 3, 1000, SEP, false, 0, 0},
    };
    static const char *rn[] = {"", " +residual", " +residual in place"};
    for (size_t i = 0; i < sizeof R / sizeof R[0]; i++) {
        char tags[64];
        snprintf(tags, sizeof tags, "%s%s%s%s", R[i].M == 0 ? "empty " : "", R[i].res == ALIAS ? "alias " : "",
                 R[i].nan ? "nan " : "", R[i].pad ? "strided" : "");
        cf_case *c = cf_begin(S, DSRT_OP_RMS_NORM, R[i].quick, tags, "%s x %s w ->%s M=%lld D=%lld%s%s%s", DN(R[i].x),
                              DN(R[i].w), DN(R[i].y), (long long)R[i].M, (long long)R[i].D, rn[R[i].res],
                              R[i].nan ? " nan-inf rows" : "", R[i].pad ? " strided" : "");
        if (!c) continue;
        cf_operand *x = cf_in(c, 0, R[i].x, 2, SH(R[i].M, R[i].D));
        x->pad = R[i].pad;
        cf_fill_normal(c, x, 0, 1);
        if (R[i].nan && R[i].M >= 3) {
            cf_set(x, 1 * R[i].D + 3, NAN);
            cf_set(x, 2 * R[i].D + 5, INFINITY);
        }
        cf_fill_normal(c, cf_in(c, 1, R[i].w, 1, SH(R[i].D)), 1, 0.1);
        if (R[i].res != NONE) cf_fill_normal(c, cf_in(c, 2, R[i].x, 2, SH(R[i].M, R[i].D)), 0, 2);
        cf_operand *y = cf_out(c, 0, R[i].y, 2, SH(R[i].M, R[i].D));
        if (R[i].pad) y->pad = 8;
        if (R[i].res == SEP) cf_out(c, 1, R[i].x == DSRT_F32 ? DSRT_F32 : R[i].y, 2, SH(R[i].M, R[i].D));
        if (R[i].res == ALIAS) cf_alias(c, 1, 2);
        cf_finish(S, c);
    }
    static const struct {
        dsrt_dtype x, y;
        int64_t M, D;
        bool quick;
        bool nan;
    } L[] = {{DSRT_F32, DSRT_F32, 17, 128, true, false}, {DSRT_BF16, DSRT_BF16, 9, 128, false, false},
             {DSRT_F32, DSRT_BF16, 5, 1000, false, false}, {DSRT_F32, DSRT_F32, 0, 128, false, false},
             {DSRT_F32, DSRT_F32, 4, 128, false, true}};
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_LAYER_NORM, L[i].quick, L[i].nan ? "nan" : L[i].M == 0 ? "empty" : "",
                              "%s->%s M=%lld D=%lld%s", DN(L[i].x), DN(L[i].y), (long long)L[i].M, (long long)L[i].D,
                              L[i].nan ? " nan-inf rows" : "");
        if (!c) continue;
        cf_operand *x = cf_in(c, 0, L[i].x, 2, SH(L[i].M, L[i].D));
        cf_fill_normal(c, x, 0.5, 2);
        if (L[i].nan) {
            cf_set(x, 0 * L[i].D + 7, NAN);
            cf_set(x, 2 * L[i].D + 1, -INFINITY);
        }
        cf_fill_normal(c, cf_in(c, 1, L[i].x, 1, SH(L[i].D)), 1, 0.1);
        cf_fill_normal(c, cf_in(c, 2, L[i].x, 1, SH(L[i].D)), 0, 0.1);
        cf_out(c, 0, L[i].y, 2, SH(L[i].M, L[i].D));
        cf_finish(S, c);
    }
}

/* ---- rope ---- */
static void gen_rope(cf_suite *S)
{
    static const struct {
        dsrt_dtype x;
        int64_t T, H, R; /* H == 0: rank 2 */
        bool inter, quick, alias, oob;
    } V[] = {
        {DSRT_BF16, 7, 16, 64, true, true, false, false},   {DSRT_F32, 5, 0, 64, false, true, false, false},
        {DSRT_F32, 6, 4, 64, true, false, false, true},     {DSRT_BF16, 9, 4, 64, true, false, true, false},
        {DSRT_F32, 0, 8, 64, true, false, false, false},    {DSRT_F32, 3, 2, 2, false, false, false, false},
        {DSRT_F16, 4, 3, 128, false, false, false, false},  {DSRT_BF16, 1, 64, 64, false, false, true, false},
    };
    const int64_t P = 512;
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        char tags[48];
        snprintf(tags, sizeof tags, "%s%s%s", V[i].alias ? "alias " : "", V[i].oob ? "edge " : "", V[i].T == 0 ? "empty" : "");
        char heads[32] = "";
        if (V[i].H) snprintf(heads, sizeof heads, " H=%lld", (long long)V[i].H);
        cf_case *c = cf_begin(S, DSRT_OP_ROPE, V[i].quick, tags, "%s %s T=%lld%s R=%lld%s%s", DN(V[i].x),
                              V[i].inter ? "interleaved" : "half-split", (long long)V[i].T, heads, (long long)V[i].R,
                              V[i].alias ? " in place" : "", V[i].oob ? " positions outside the table" : "");
        if (!c) continue;
        cf_operand *x = V[i].H ? cf_in(c, 0, V[i].x, 3, SH(V[i].T, V[i].H, V[i].R)) : cf_in(c, 0, V[i].x, 2, SH(V[i].T, V[i].R));
        cf_fill_normal(c, x, 0, 1);
        cf_operand *pos = cf_in(c, 1, DSRT_I32, 1, SH(V[i].T));
        for (int64_t t = 0; t < V[i].T; t++) cf_set_i32(pos, t, (int32_t)cf_rng_int(&c->rng, P));
        if (V[i].oob && V[i].T >= 4) { /* rows whose position is outside [0, P) are copied unchanged */
            cf_set_i32(pos, 0, -1);
            cf_set_i32(pos, 1, (int32_t)P);
            cf_set_i32(pos, 2, 1 << 30);
            cf_set_i32(pos, 3, 0);
        }
        rope_table(cf_in(c, 2, DSRT_F32, 3, SH(P, V[i].R / 2, 2)), P, V[i].R);
        c->p.interleaved = V[i].inter;
        if (V[i].alias) cf_alias(c, 0, 0);
        else if (V[i].H) cf_out(c, 0, V[i].x, 3, SH(V[i].T, V[i].H, V[i].R));
        else cf_out(c, 0, V[i].x, 2, SH(V[i].T, V[i].R));
        cf_finish(S, c);
    }
}

/* ---- linear ---- */
static void fp8_weight(cf_case *c, cf_operand *w, dsrt_dtype sdt)
{
    cf_fill_e4m3(c, w);
    /* Scales near 2^-10: dequantized weights of typical magnitude (0.1 * N(0,1)). */
    cf_add_scales(c, w, sdt, 128, 128, -12, -9);
}

static void gen_linear(cf_suite *S)
{
    enum { F, FP8 };
    static const struct {
        dsrt_dtype x, w, y;
        int64_t M, K, N;
        bool act_quant, pow2, quick;
        dsrt_dtype wsc;
        float alpha;
        int nan;
        int64_t pad;
    } V[] = {
        {DSRT_F32, DSRT_F32, DSRT_F32, 5, 384, 200, false, false, true, DSRT_F32, 1, 0, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 16, 1000, 129, false, false, false, DSRT_F32, 1, 0, 0},
        {DSRT_BF16, DSRT_E4M3, DSRT_BF16, 3, 640, 300, false, false, true, DSRT_UE8M0, 1, 0, 0},
        {DSRT_BF16, DSRT_E4M3, DSRT_BF16, 7, 1536, 576, true, true, true, DSRT_UE8M0, 1, 0, 0},
        {DSRT_F32, DSRT_E4M3, DSRT_F32, 4, 512, 256, true, false, false, DSRT_F32, 1, 0, 0},
        {DSRT_BF16, DSRT_E4M3, DSRT_BF16, 1, 7168, 1536, true, true, false, DSRT_UE8M0, 1, 0, 0},
        {DSRT_F32, DSRT_E4M3, DSRT_F32, 0, 256, 128, true, true, true, DSRT_UE8M0, 1, 0, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 3, 100, 50, false, false, false, DSRT_F32, 0.5f, 0, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_F32, 6, 256, 96, false, false, false, DSRT_F32, 1, 0, 40},
        {DSRT_F32, DSRT_F32, DSRT_F32, 4, 128, 64, false, false, true, DSRT_F32, 1, 1, 0},
        {DSRT_F16, DSRT_F16, DSRT_F32, 8, 320, 72, false, false, false, DSRT_F32, 1, 0, 0},
        {DSRT_BF16, DSRT_E4M3, DSRT_F32, 2, 7168, 129, true, true, false, DSRT_UE8M0, 2.5f, 0, 0},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        char tags[48];
        snprintf(tags, sizeof tags, "%s%s%s%s", V[i].w == DSRT_E4M3 ? "fp8 " : "", V[i].M == 0 ? "empty " : "",
                 V[i].nan ? "nan " : "", V[i].pad ? "strided" : "");
        char wdesc[48];
        if (V[i].w == DSRT_E4M3) snprintf(wdesc, sizeof wdesc, "e4m3+%s", DN(V[i].wsc));
        else snprintf(wdesc, sizeof wdesc, "%s", DN(V[i].w));
        cf_case *c = cf_begin(S, DSRT_OP_LINEAR, V[i].quick, tags, "%s x %s ->%s M=%lld K=%lld N=%lld%s%s%s%s",
                              DN(V[i].x), wdesc, DN(V[i].y), (long long)V[i].M, (long long)V[i].K, (long long)V[i].N,
                              V[i].act_quant ? (V[i].pow2 ? " act-quant ue8m0" : " act-quant f32-scales") : "",
                              V[i].alpha != 1 ? " alpha" : "", V[i].nan ? " nan-inf" : "", V[i].pad ? " strided" : "");
        if (!c) continue;
        cf_operand *x = cf_in(c, 0, V[i].x, 2, SH(V[i].M, V[i].K));
        x->pad = V[i].pad;
        cf_fill_normal(c, x, 0, 1);
        if (V[i].nan && V[i].M >= 3) {
            cf_set(x, 0 * V[i].K + 5, NAN);
            cf_set(x, 2 * V[i].K + 9, INFINITY);
        }
        cf_operand *w = cf_in(c, 1, V[i].w, 2, SH(V[i].N, V[i].K));
        if (V[i].w == DSRT_E4M3) fp8_weight(c, w, V[i].wsc);
        else cf_fill_normal(c, w, 0, 0.1);
        cf_out(c, 0, V[i].y, 2, SH(V[i].M, V[i].N))->pad = V[i].pad ? 3 : 0;
        c->p.act_quant = V[i].act_quant;
        c->p.scale_pow2 = V[i].pow2;
        c->p.alpha = V[i].alpha;
        cf_finish(S, c);
    }
    /* Model sizes: the dense FFN up projection in decode, and a prefill chunk of q_a_proj. */
    cf_case *c = cf_begin(S, DSRT_OP_LINEAR, false, "large fp8", "bf16 x e4m3+ue8m0 ->bf16 M=4 K=7168 N=18432 act-quant ue8m0");
    if (c) {
        int64_t N = fit_units(S, c, "N", 18432, 128, 7168 + 4 * 2.0 + (56.0 / 128), 4 * 7168 * 2.0, 7168);
        if (!c->skip[0]) {
            cf_fill_normal(c, cf_in(c, 0, DSRT_BF16, 2, SH(4, 7168)), 0, 1);
            fp8_weight(c, cf_in(c, 1, DSRT_E4M3, 2, SH(N, 7168)), DSRT_UE8M0);
            cf_out(c, 0, DSRT_BF16, 2, SH(4, N));
            c->p.act_quant = c->p.scale_pow2 = true;
        }
        cf_finish(S, c);
    }
    if ((c = cf_begin(S, DSRT_OP_LINEAR, false, "large fp8", "bf16 x e4m3+ue8m0 ->bf16 M=64 K=7168 N=1536 act-quant ue8m0"))) {
        cf_fill_normal(c, cf_in(c, 0, DSRT_BF16, 2, SH(64, 7168)), 0, 1);
        fp8_weight(c, cf_in(c, 1, DSRT_E4M3, 2, SH(1536, 7168)), DSRT_UE8M0);
        cf_out(c, 0, DSRT_BF16, 2, SH(64, 1536));
        c->p.act_quant = c->p.scale_pow2 = true;
        cf_finish(S, c);
    }
}

/* ---- linear_grouped ---- */
static void gen_linear_grouped(cf_suite *S)
{
    static const struct {
        dsrt_dtype x, w, y;
        int64_t G, R, K, N;
        bool act_quant, quick;
        int32_t off[9];
    } V[] = {
        {DSRT_F32, DSRT_F32, DSRT_F32, 4, 20, 256, 128, false, true, {2, 5, 5, 12, 18}},
        {DSRT_BF16, DSRT_E4M3, DSRT_BF16, 8, 64, 512, 256, true, true, {0, 9, 9, 20, 33, 40, 41, 60, 64}},
        {DSRT_BF16, DSRT_E4M3, DSRT_F32, 3, 30, 384, 200, false, false, {0, 10, 10, 30}},
        {DSRT_F32, DSRT_F32, DSRT_F32, 2, 0, 64, 32, false, false, {0, 0, 0}},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 2, 7, 100, 129, false, false, {1, 1, 6}},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_LINEAR_GROUPED, V[i].quick, V[i].R == 0 ? "empty" : "edge",
                              "%s x %s%s ->%s G=%lld R=%lld K=%lld N=%lld%s", DN(V[i].x), DN(V[i].w),
                              V[i].w == DSRT_E4M3 ? "+ue8m0" : "", DN(V[i].y), (long long)V[i].G, (long long)V[i].R,
                              (long long)V[i].K, (long long)V[i].N, V[i].act_quant ? " act-quant ue8m0" : "");
        if (!c) continue;
        cf_fill_normal(c, cf_in(c, 0, V[i].x, 2, SH(V[i].R, V[i].K)), 0, 1);
        cf_operand *w = cf_in(c, 1, V[i].w, 3, SH(V[i].G, V[i].N, V[i].K));
        if (V[i].w == DSRT_E4M3) fp8_weight(c, w, DSRT_UE8M0);
        else cf_fill_normal(c, w, 0, 0.1);
        cf_operand *off = cf_in(c, 2, DSRT_I32, 1, SH(V[i].G + 1));
        for (int64_t g = 0; g <= V[i].G; g++) cf_set_i32(off, g, V[i].off[g]);
        cf_out(c, 0, V[i].y, 2, SH(V[i].R, V[i].N));
        c->p.act_quant = V[i].act_quant;
        c->p.scale_pow2 = V[i].act_quant;
        cf_finish(S, c);
    }
    /* Model size: the routed experts' gate projections (2048 x 7168 each) for a prefill chunk. */
    /* Past 2 GiB of experts (a larger --budget-mb) this also catches 32-bit offsets in kernels. */
    cf_case *c = cf_begin(S, DSRT_OP_LINEAR_GROUPED, false, "large fp8", "bf16 x e4m3+ue8m0 ->bf16 experts K=7168 N=2048 R=64 act-quant");
    if (c) {
        int64_t G = fit_units(S, c, "G", 256, 1, 2048.0 * 7168 * 1.0 + 16 * 56, 64 * 7168 * 2.0 + 64 * 2048 * 2.0,
                              2048.0 * 7168);
        if (!c->skip[0]) {
            cf_fill_normal(c, cf_in(c, 0, DSRT_BF16, 2, SH(64, 7168)), 0, 1);
            fp8_weight(c, cf_in(c, 1, DSRT_E4M3, 3, SH(G, 2048, 7168)), DSRT_UE8M0);
            cf_operand *off = cf_in(c, 2, DSRT_I32, 1, SH(G + 1));
            for (int64_t g = 0; g <= G; g++) cf_set_i32(off, g, (int32_t)(g * 64 / G));
            cf_out(c, 0, DSRT_BF16, 2, SH(64, 2048));
            c->p.act_quant = c->p.scale_pow2 = true;
        }
        cf_finish(S, c);
    }
}

/* ---- head_linear ---- */
static void gen_head_linear(cf_suite *S)
{
    static const struct {
        dsrt_dtype x, w, y;
        int64_t T, H, K, N;
        bool tr, quick;
    } V[] = {
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 3, 16, 128, 512, true, true},
        {DSRT_F32, DSRT_F32, DSRT_F32, 2, 8, 512, 128, false, true},
        {DSRT_F32, DSRT_BF16, DSRT_F32, 5, 4, 100, 70, false, false},
        {DSRT_F16, DSRT_F16, DSRT_F16, 4, 2, 64, 33, true, false},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 0, 16, 128, 512, true, false},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 1, 128, 128, 512, true, false},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 2, 128, 512, 128, false, false},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_HEAD_LINEAR, V[i].quick, V[i].T == 0 ? "empty" : "",
                              "%s x %s ->%s T=%lld H=%lld K=%lld N=%lld%s", DN(V[i].x), DN(V[i].w), DN(V[i].y),
                              (long long)V[i].T, (long long)V[i].H, (long long)V[i].K, (long long)V[i].N,
                              V[i].tr ? " W[h] is KxN" : " W[h] is NxK");
        if (!c) continue;
        cf_fill_normal(c, cf_in(c, 0, V[i].x, 3, SH(V[i].T, V[i].H, V[i].K)), 0, 1);
        if (V[i].tr) cf_fill_normal(c, cf_in(c, 1, V[i].w, 3, SH(V[i].H, V[i].K, V[i].N)), 0, 0.1);
        else cf_fill_normal(c, cf_in(c, 1, V[i].w, 3, SH(V[i].H, V[i].N, V[i].K)), 0, 0.1);
        cf_out(c, 0, V[i].y, 3, SH(V[i].T, V[i].H, V[i].N));
        c->p.transpose_w = V[i].tr;
        cf_finish(S, c);
    }
}

/* ---- swiglu, add ---- */
static void gen_elementwise(cf_suite *S)
{
    static const struct {
        dsrt_dtype x, y;
        int64_t M, I;
        bool quick, nan;
    } W[] = {{DSRT_F32, DSRT_F32, 4, 2048, true, false},
             {DSRT_BF16, DSRT_BF16, 9, 1000, false, false},
             {DSRT_F32, DSRT_F32, 4, 64, true, true},
             {DSRT_F32, DSRT_BF16, 0, 2048, false, false},
             {DSRT_BF16, DSRT_F32, 16, 18432, false, false},
             {DSRT_F16, DSRT_F16, 3, 129, false, false}};
    for (size_t i = 0; i < sizeof W / sizeof W[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_SWIGLU, W[i].quick, W[i].nan ? "nan" : W[i].M == 0 ? "empty" : "",
                              "%s->%s M=%lld I=%lld%s", DN(W[i].x), DN(W[i].y), (long long)W[i].M, (long long)W[i].I,
                              W[i].nan ? " nan-inf" : "");
        if (!c) continue;
        cf_operand *g = cf_in(c, 0, W[i].x, 2, SH(W[i].M, W[i].I)), *u = cf_in(c, 1, W[i].x, 2, SH(W[i].M, W[i].I));
        cf_fill_normal(c, g, 0, 3);
        cf_fill_normal(c, u, 0, 1);
        if (W[i].nan) {
            cf_set(g, 1, NAN);
            cf_set(g, 2, INFINITY);
            cf_set(g, 3, -INFINITY);
            cf_set(g, 4, 100.0f);
            cf_set(g, 5, -100.0f);
            cf_set(u, 6, INFINITY);
            cf_set(u, 7, NAN);
        }
        cf_out(c, 0, W[i].y, 2, SH(W[i].M, W[i].I));
        cf_finish(S, c);
    }
    static const struct {
        dsrt_dtype a, b, y;
        int nd;
        int64_t s[4];
        bool quick, alias, nan;
        int64_t pad;
    } A[] = {
        {DSRT_F32, DSRT_F32, DSRT_F32, 1, {1000}, true, false, false, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 2, {7, 7168}, false, false, false, 0},
        {DSRT_BF16, DSRT_BF16, DSRT_BF16, 3, {3, 5, 64}, true, true, false, 0},
        {DSRT_F16, DSRT_F32, DSRT_F32, 4, {2, 3, 4, 33}, false, false, false, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 2, {4, 64}, true, false, true, 0},
        {DSRT_F32, DSRT_F32, DSRT_F32, 2, {0, 16}, false, false, false, 0},
        {DSRT_BF16, DSRT_F32, DSRT_BF16, 2, {6, 100}, false, false, false, 28},
    };
    for (size_t i = 0; i < sizeof A / sizeof A[0]; i++) {
        char shape[64] = "";
        for (int d = 0; d < A[i].nd; d++) {
            size_t l = strlen(shape);
            snprintf(shape + l, sizeof shape - l, "%s%lld", d ? "x" : "", (long long)A[i].s[d]);
        }
        char tags[48];
        snprintf(tags, sizeof tags, "%s%s%s%s", A[i].alias ? "alias " : "", A[i].nan ? "nan " : "",
                 A[i].s[0] == 0 ? "empty " : "", A[i].pad ? "strided" : "");
        cf_case *c = cf_begin(S, DSRT_OP_ADD, A[i].quick, tags, "%s+%s->%s %s%s%s%s", DN(A[i].a), DN(A[i].b), DN(A[i].y),
                              shape, A[i].alias ? " in place" : "", A[i].nan ? " nan-inf" : "", A[i].pad ? " strided" : "");
        if (!c) continue;
        cf_operand *a = cf_in(c, 0, A[i].a, A[i].nd, A[i].s), *b = cf_in(c, 1, A[i].b, A[i].nd, A[i].s);
        a->pad = A[i].pad;
        cf_fill_normal(c, a, 0, 1);
        cf_fill_normal(c, b, 0, 1);
        if (A[i].nan) {
            cf_set(a, 0, INFINITY);
            cf_set(b, 0, -INFINITY); /* inf + -inf = NaN */
            cf_set(a, 1, NAN);
            cf_set(b, 2, INFINITY);
            cf_set(a, 3, 3.0e38f);
            cf_set(b, 3, 3.0e38f); /* overflow to inf */
        }
        if (A[i].alias) cf_alias(c, 0, 0);
        else cf_out(c, 0, A[i].y, A[i].nd, A[i].s);
        cf_finish(S, c);
    }
}

/* ---- act_quant, hadamard ---- */
static void gen_quant(cf_suite *S)
{
    static const struct {
        dsrt_dtype x, s;
        int64_t M, K;
        int blk;
        bool pow2, quick, edge;
    } V[] = {
        {DSRT_BF16, DSRT_UE8M0, 4, 7168, 128, true, true, false},
        {DSRT_F32, DSRT_F32, 3, 1000, 128, false, false, false},
        {DSRT_F32, DSRT_F32, 2, 512, 128, true, false, false},
        {DSRT_F32, DSRT_UE8M0, 4, 256, 32, true, false, false},
        {DSRT_F32, DSRT_UE8M0, 5, 384, 128, true, true, true},
        {DSRT_F32, DSRT_UE8M0, 0, 128, 128, true, false, false},
        {DSRT_BF16, DSRT_F32, 1, 128, 128, false, false, false},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_ACT_QUANT, V[i].quick, V[i].edge ? "edge nan fp8" : V[i].M == 0 ? "empty fp8" : "fp8",
                              "%s->e4m3+%s 1x%d M=%lld K=%lld%s%s", DN(V[i].x), DN(V[i].s), V[i].blk, (long long)V[i].M,
                              (long long)V[i].K, V[i].pow2 ? " pow2" : "",
                              V[i].edge ? " zero-saturating-tiny-nan blocks" : "");
        if (!c) continue;
        cf_operand *x = cf_in(c, 0, V[i].x, 2, SH(V[i].M, V[i].K));
        cf_fill_normal(c, x, 0, 2);
        if (V[i].edge) {
            for (int64_t k = 0; k < 128; k++) cf_set(x, k, 0.0f);              /* amax floor 1e-4 */
            cf_set(x, 1 * V[i].K + 3, 1.0e30f);                                /* one huge value */
            for (int64_t k = 128; k < 256; k++) cf_set(x, k, 1e-6f * (float)(k - 191)); /* e4m3 subnormals */
            cf_set(x, 2 * V[i].K + 200, NAN);
            cf_set(x, 3 * V[i].K + 10, -3.0e38f);
            cf_set(x, 4 * V[i].K + 300, 448.0f);
        }
        cf_operand *q = cf_out(c, 0, DSRT_E4M3, 2, SH(V[i].M, V[i].K));
        cf_out_scales(c, q, V[i].s, 1, V[i].blk);
        c->p.scale_pow2 = V[i].pow2;
        cf_finish(S, c);
    }
    static const struct {
        dsrt_dtype x, y;
        int64_t M, n;
        bool quick;
    } H[] = {{DSRT_F32, DSRT_F32, 5, 128, true}, {DSRT_BF16, DSRT_BF16, 17, 128, false},
             {DSRT_F32, DSRT_F32, 3, 1, false},  {DSRT_F32, DSRT_F32, 3, 2, false},
             {DSRT_F32, DSRT_BF16, 4, 64, false}, {DSRT_F32, DSRT_F32, 3, 4096, false},
             {DSRT_F32, DSRT_F32, 0, 128, false}};
    for (size_t i = 0; i < sizeof H / sizeof H[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_HADAMARD, H[i].quick, H[i].M == 0 ? "empty" : "", "%s->%s M=%lld n=%lld",
                              DN(H[i].x), DN(H[i].y), (long long)H[i].M, (long long)H[i].n);
        if (!c) continue;
        cf_fill_normal(c, cf_in(c, 0, H[i].x, 2, SH(H[i].M, H[i].n)), 0, 1);
        cf_out(c, 0, H[i].y, 2, SH(H[i].M, H[i].n));
        cf_finish(S, c);
    }
}

/* ---- cache_write ---- */
static void gen_cache_write(cf_suite *S)
{
    static const struct {
        dsrt_cache_format f;
        dsrt_dtype src, cache;
        int64_t T, S, W1, W2;
        bool pow2, quick;
    } V[] = {
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_BF16, 9, 64, 512, 64, false, true},
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_F32, 32, 32, 128, 0, false, false},
        {DSRT_CACHE_PLAIN, DSRT_BF16, DSRT_BF16, 0, 8, 512, 64, false, false},
        {DSRT_CACHE_FP8, DSRT_BF16, DSRT_U8, 6, 40, 512, 64, true, true},
        {DSRT_CACHE_FP8, DSRT_BF16, DSRT_U8, 10, 24, 128, 0, true, false},
        {DSRT_CACHE_FP8, DSRT_F32, DSRT_U8, 5, 12, 256, 0, false, false},
        {DSRT_CACHE_FP8, DSRT_F32, DSRT_U8, 4, 9, 300, 3, true, false},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        bool fp8 = V[i].f == DSRT_CACHE_FP8;
        cf_case *c = cf_begin(S, DSRT_OP_CACHE_WRITE, V[i].quick, V[i].T == 0 ? "empty paged" : fp8 ? "paged fp8" : "paged",
                              "%s %s->%s T=%lld slots=%lld W1=%lld W2=%lld%s", fp8 ? "fp8" : "plain", DN(V[i].src),
                              DN(V[i].cache), (long long)V[i].T, (long long)V[i].S, (long long)V[i].W1,
                              (long long)V[i].W2, fp8 ? (V[i].pow2 ? " ue8m0-scales" : " f32-scales") : "");
        if (!c) continue;
        cf_fill_normal(c, cf_in(c, 0, V[i].src, 2, SH(V[i].T, V[i].W1)), 0, 1);
        cf_operand *slots = cf_in(c, 1, DSRT_I32, 1, SH(V[i].T));
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)V[i].S);
        if (perm) {
            cf_shuffle_i32(c, perm, V[i].S);
            for (int64_t t = 0; t < V[i].T; t++) cf_set_i32(slots, t, perm[t]);
            if (V[i].T >= 3) cf_set_i32(slots, 1, -1); /* skipped */
            if (V[i].T >= 5) cf_set_i32(slots, 3, (int32_t)V[i].S); /* outside [0, S): skipped */
            free(perm);
        } else {
            c->host_oom = true;
        }
        if (V[i].W2) cf_fill_normal(c, cf_in(c, 2, V[i].src, 2, SH(V[i].T, V[i].W2)), 0, 1);
        int64_t C = fp8 ? V[i].W1 + 4 * ((V[i].W1 + 127) / 128) + 2 * V[i].W2 : V[i].W1 + V[i].W2;
        cf_operand *cache = cf_out(c, 0, V[i].cache, 2, SH(V[i].S, C));
        /* Slots no token writes keep their old content: give them some. */
        if (fp8) random_bytes(c, cache);
        else cf_fill_normal(c, cache, 0, 1);
        c->p.format = V[i].f;
        c->p.scale_pow2 = V[i].pow2;
        if (fp8) {
            c->check[0].mode = CF_CMP_CACHE_FP8;
            c->check[0].limit = 1e-6;
        }
        cf_finish(S, c);
    }
}

/* ---- attention ---- */
static void gen_mla_prefill(cf_suite *S)
{
    enum { CAUSAL, TWO_SEQ, DSA, EMPTY_ROWS, CHUNK };
    static const struct {
        dsrt_dtype q, o;
        int64_t T, L, H, Dn, Dr, Dv;
        int kind;
        bool quick;
    } V[] = {
        {DSRT_F32, DSRT_F32, 13, 13, 4, 128, 64, 128, CAUSAL, true},
        {DSRT_BF16, DSRT_BF16, 37, 37, 4, 128, 64, 128, CAUSAL, false},
        {DSRT_BF16, DSRT_BF16, 20, 20, 2, 128, 64, 128, TWO_SEQ, false},
        {DSRT_BF16, DSRT_BF16, 24, 24, 4, 128, 64, 128, DSA, true},
        {DSRT_F32, DSRT_F32, 6, 6, 1, 16, 8, 16, EMPTY_ROWS, false},
        {DSRT_BF16, DSRT_F32, 5, 37, 3, 128, 64, 128, CHUNK, false},
        {DSRT_F32, DSRT_F32, 0, 4, 2, 128, 64, 128, CAUSAL, false},
        {DSRT_F32, DSRT_BF16, 1, 1, 16, 128, 64, 128, CAUSAL, false},
    };
    static const char *kn[] = {"causal", "two packed sequences", "DSA indices", "rows without keys or past the keys",
                               "chunk after 32 cached"};
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_MLA_PREFILL, V[i].quick, V[i].T == 0 ? "empty" : V[i].kind == DSA ? "dsa" : "",
                              "%s->%s T=%lld L=%lld H=%lld Dn=%lld Dr=%lld Dv=%lld %s", DN(V[i].q), DN(V[i].o),
                              (long long)V[i].T, (long long)V[i].L, (long long)V[i].H, (long long)V[i].Dn,
                              (long long)V[i].Dr, (long long)V[i].Dv, kn[V[i].kind]);
        if (!c) continue;
        int64_t T = V[i].T, L = V[i].L, H = V[i].H;
        cf_fill_normal(c, cf_in(c, 0, V[i].q, 3, SH(T, H, V[i].Dn + V[i].Dr)), 0, 1);
        cf_fill_normal(c, cf_in(c, 1, V[i].q, 3, SH(L, H, V[i].Dn)), 0, 1);
        cf_fill_normal(c, cf_in(c, 2, V[i].q, 2, SH(L, V[i].Dr)), 0, 1);
        cf_fill_normal(c, cf_in(c, 3, V[i].q, 3, SH(L, H, V[i].Dv)), 0, 1);
        cf_operand *ks = cf_in(c, 4, DSRT_I32, 1, SH(T)), *kl = cf_in(c, 5, DSRT_I32, 1, SH(T));
        for (int64_t t = 0; t < T; t++) {
            int32_t start = 0, len = (int32_t)(t + 1 + (L - T));
            if (V[i].kind == TWO_SEQ && t >= 12) {
                start = 12;
                len = (int32_t)(t - 11);
            }
            if (V[i].kind == EMPTY_ROWS && (t == 0 || t == 3)) len = 0;
            if (V[i].kind == EMPTY_ROWS && t == 5) { /* key rows past L are skipped */
                start = (int32_t)L - 2;
                len = 5;
            }
            cf_set_i32(ks, t, start);
            cf_set_i32(kl, t, len);
        }
        if (V[i].kind == DSA) {
            const int64_t k = 8;
            cf_operand *idx = cf_in(c, 6, DSRT_I32, 2, SH(T, k));
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < k; j++) {
                    int32_t v = (int32_t)cf_rng_int(&c->rng, t + 1);
                    if (j == k - 1) v = -1;                    /* unused entry */
                    if (j == k - 2 && t > 2) v = (int32_t)(t + 5); /* beyond kv_len: ignored */
                    cf_set_i32(idx, t * k + j, v);
                }
        }
        cf_out(c, 0, V[i].o, 3, SH(T, H, V[i].Dv));
        c->p.scale = MLA_SCALE;
        cf_finish(S, c);
    }
}

typedef struct {
    dsrt_cache_format f;
    dsrt_dtype q, cache, o;
    int64_t H, Dc, Dr;
    int page, nseq;
    int32_t lens[4];
    int rows_per_seq; /* > 1: multi-token decode (MTP) on the first sequence */
    int topk;         /* > 0: DSA indices */
    bool quick;
    const char *tags;
} decode_variant;

static void decode_case(cf_suite *S, const decode_variant *v, const char *label)
{
    bool fp8 = v->f == DSRT_CACHE_FP8;
    char lens[64] = "";
    for (int s = 0; s < v->nseq; s++) {
        size_t l = strlen(lens);
        snprintf(lens + l, sizeof lens - l, "%s%d", s ? "," : "", v->lens[s]);
    }
    cf_case *c = cf_begin(S, DSRT_OP_MLA_DECODE, v->quick, v->tags, "%s %s cache q %s->%s H=%lld Dc=%lld Dr=%lld page=%d lens=%s%s",
                          fp8 ? "fp8" : "plain", fp8 ? "u8" : DN(v->cache), DN(v->q), DN(v->o), (long long)v->H,
                          (long long)v->Dc, (long long)v->Dr, v->page, lens, label);
    if (!c) return;
    int64_t P;
    int32_t *bt = NULL;
    int64_t Sl = paged_table(c, v->nseq, v->lens, v->page, &P, &bt);
    int64_t T = v->rows_per_seq > 1 ? v->rows_per_seq : v->nseq;
    cf_fill_normal(c, cf_in(c, 0, v->q, 3, SH(T, v->H, v->Dc)), 0, 1);
    cf_fill_normal(c, cf_in(c, 1, v->q, 3, SH(T, v->H, v->Dr)), 0, 1);
    if (fp8) fp8_rows(c, cf_in(c, 2, DSRT_U8, 2, SH(Sl, v->Dc + 4 * ((v->Dc + 127) / 128) + 2 * v->Dr)), v->Dc, v->Dr);
    else cf_fill_normal(c, cf_in(c, 2, v->cache, 2, SH(Sl, v->Dc + v->Dr)), 0, 1);
    cf_operand *tab = cf_in(c, 3, DSRT_I32, 2, SH(v->nseq, P));
    for (int64_t i = 0; bt && i < v->nseq * P; i++) cf_set_i32(tab, i, bt[i]);
    free(bt);
    if (strstr(v->tags, "edge") && v->nseq > 1 && P > 1) cf_set_i32(tab, 1 * P + 1, -1); /* a page without keys */
    cf_operand *rs = cf_in(c, 4, DSRT_I32, 1, SH(T)), *kl = cf_in(c, 5, DSRT_I32, 1, SH(T));
    for (int64_t t = 0; t < T; t++) {
        bool mtp = v->rows_per_seq > 1;
        cf_set_i32(rs, t, mtp ? 0 : (int32_t)t);
        /* MTP rows see one more key each: the drafted tokens are in the cache already. */
        cf_set_i32(kl, t, mtp ? v->lens[0] - (int32_t)(T - 1 - t) : v->lens[t]);
    }
    if (v->topk > 0) {
        cf_operand *idx = cf_in(c, 6, DSRT_I32, 2, SH(T, v->topk));
        for (int64_t t = 0; t < T; t++) {
            int32_t len = cf_get_i32(kl, t);
            for (int64_t j = 0; j < v->topk; j++)
                cf_set_i32(idx, t * v->topk + j, (j % 7 == 6 || len == 0) ? -1 : (int32_t)cf_rng_int(&c->rng, len));
        }
    }
    cf_out(c, 0, v->o, 3, SH(T, v->H, v->Dc));
    c->p.format = v->f;
    c->p.page_size = v->page;
    c->p.scale = MLA_SCALE;
    cf_finish(S, c);
}

static void gen_mla_decode(cf_suite *S)
{
    static const decode_variant V[] = {
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_F32, DSRT_F32, 4, 512, 64, 16, 2, {37, 50}, 1, 0, true, "paged"},
        {DSRT_CACHE_PLAIN, DSRT_BF16, DSRT_BF16, DSRT_BF16, 16, 512, 64, 64, 3, {100, 1, 129}, 1, 0, false, "paged edge"},
        {DSRT_CACHE_FP8, DSRT_BF16, DSRT_U8, DSRT_BF16, 8, 512, 64, 64, 2, {200, 65}, 1, 0, true, "paged fp8"},
        {DSRT_CACHE_FP8, DSRT_BF16, DSRT_U8, DSRT_BF16, 4, 512, 64, 64, 2, {300, 90}, 1, 64, false, "paged fp8 dsa"},
        {DSRT_CACHE_PLAIN, DSRT_BF16, DSRT_BF16, DSRT_F32, 4, 512, 64, 16, 1, {33}, 4, 0, false, "paged"},
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_F32, DSRT_F32, 2, 64, 16, 1, 3, {0, 5, 1}, 1, 0, false, "paged edge"},
        /* Model size: all 128 heads over a long context in the deployment cache. */
        {DSRT_CACHE_FP8, DSRT_BF16, DSRT_U8, DSRT_BF16, 128, 512, 64, 64, 1, {8192}, 1, 0, false, "large paged fp8"},
    };
    static const char *label[] = {"", "", "", " DSA top-64", " 4 MTP rows", " kv_len 0 and 1, a missing page", " long context"};
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) decode_case(S, &V[i], label[i]);
    cf_case *c = cf_begin(S, DSRT_OP_MLA_DECODE, false, "empty", "plain f32 cache T=0");
    if (c) {
        cf_in(c, 0, DSRT_F32, 3, SH(0, 2, 64));
        cf_in(c, 1, DSRT_F32, 3, SH(0, 2, 16));
        cf_fill_normal(c, cf_in(c, 2, DSRT_F32, 2, SH(16, 80)), 0, 1);
        cf_operand *tab = cf_in(c, 3, DSRT_I32, 2, SH(1, 2));
        cf_set_i32(tab, 0, 1);
        cf_set_i32(tab, 1, 0);
        cf_in(c, 4, DSRT_I32, 1, SH(0));
        cf_in(c, 5, DSRT_I32, 1, SH(0));
        cf_out(c, 0, DSRT_F32, 3, SH(0, 2, 64));
        c->p.page_size = 8;
        c->p.scale = MLA_SCALE;
        cf_finish(S, c);
    }
}

typedef struct {
    dsrt_cache_format f;
    dsrt_dtype q, cache;
    int64_t Hi, D, Lcap;
    int page, nseq;
    int32_t lens[4];
    int rows; /* > nseq: prefill rows of the first sequence with causal lengths */
    bool quick;
    const char *tags, *label;
} idx_variant;

static void indexer_case(cf_suite *S, const idx_variant *v)
{
    bool fp8 = v->f == DSRT_CACHE_FP8;
    char lens[64] = "";
    for (int s = 0; s < v->nseq; s++) {
        size_t l = strlen(lens);
        snprintf(lens + l, sizeof lens - l, "%s%d", s ? "," : "", v->lens[s]);
    }
    cf_case *c = cf_begin(S, DSRT_OP_INDEXER_SCORES, v->quick, v->tags, "%s q=%s cache=%s Hi=%lld D=%lld L=%lld page=%d lens=%s%s",
                          fp8 ? "fp8" : "plain", fp8 ? "e4m3" : DN(v->q), fp8 ? "u8" : DN(v->cache), (long long)v->Hi,
                          (long long)v->D, (long long)v->Lcap, v->page, lens, v->label);
    if (!c) return;
    int64_t P;
    int32_t *bt = NULL;
    int64_t Sl = paged_table(c, v->nseq, v->lens, v->page, &P, &bt);
    int64_t T = v->rows > v->nseq ? v->rows : v->nseq;
    if (fp8) {
        cf_operand *q = cf_in(c, 0, DSRT_E4M3, 3, SH(T, v->Hi, v->D));
        cf_fill_e4m3(c, q);
        cf_add_scales(c, q, DSRT_F32, 1, 128, -10, -6);
        fp8_rows(c, cf_in(c, 2, DSRT_U8, 2, SH(Sl, v->D + 4 * ((v->D + 127) / 128))), v->D, 0);
    } else {
        cf_fill_normal(c, cf_in(c, 0, v->q, 3, SH(T, v->Hi, v->D)), 0, 1);
        cf_fill_normal(c, cf_in(c, 2, v->cache, 2, SH(Sl, v->D)), 0, 1);
    }
    cf_fill_normal(c, cf_in(c, 1, DSRT_F32, 2, SH(T, v->Hi)), 0, 1);
    cf_operand *tab = cf_in(c, 3, DSRT_I32, 2, SH(v->nseq, P));
    for (int64_t i = 0; bt && i < v->nseq * P; i++) cf_set_i32(tab, i, bt[i]);
    free(bt);
    if (strstr(v->tags, "edge") && v->nseq > 1 && P > 1) cf_set_i32(tab, 1 * P + 1, -1); /* a page without keys */
    cf_operand *rs = cf_in(c, 4, DSRT_I32, 1, SH(T)), *kl = cf_in(c, 5, DSRT_I32, 1, SH(T));
    for (int64_t t = 0; t < T; t++) {
        bool pre = v->rows > v->nseq;
        cf_set_i32(rs, t, pre ? 0 : (int32_t)t);
        cf_set_i32(kl, t, pre ? v->lens[0] - (int32_t)(T - 1 - t) : v->lens[t]);
    }
    cf_out(c, 0, DSRT_F32, 2, SH(T, v->Lcap));
    c->p.format = v->f;
    c->p.page_size = v->page;
    c->p.scale = (float)(1.0 / sqrt((double)v->D * (double)v->Hi));
    cf_finish(S, c);
}

static void gen_indexer(cf_suite *S)
{
    static const idx_variant V[] = {
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_F32, 8, 128, 80, 16, 2, {37, 80}, 0, true, "paged", ""},
        {DSRT_CACHE_PLAIN, DSRT_BF16, DSRT_BF16, 64, 128, 300, 64, 2, {129, 1}, 0, false, "paged", " capacity beyond kv_len"},
        {DSRT_CACHE_FP8, DSRT_E4M3, DSRT_U8, 64, 128, 200, 64, 2, {200, 77}, 0, true, "paged fp8", ""},
        {DSRT_CACHE_FP8, DSRT_E4M3, DSRT_U8, 4, 256, 64, 16, 1, {50}, 0, false, "paged fp8", " two blocks per head"},
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_BF16, 16, 128, 40, 8, 1, {40}, 6, false, "paged", " 6 causal prefill rows"},
        {DSRT_CACHE_PLAIN, DSRT_F32, DSRT_F32, 4, 64, 16, 4, 3, {0, 16, 3}, 0, false, "paged edge", " kv_len 0, a missing page"},
        {DSRT_CACHE_FP8, DSRT_E4M3, DSRT_U8, 64, 128, 32768, 64, 2, {32768, 20000}, 0, false, "large paged fp8",
         " long context"},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) indexer_case(S, &V[i]);
    cf_case *c = cf_begin(S, DSRT_OP_INDEXER_SCORES, false, "empty", "plain f32 T=0");
    if (c) {
        cf_in(c, 0, DSRT_F32, 3, SH(0, 4, 128));
        cf_in(c, 1, DSRT_F32, 2, SH(0, 4));
        cf_fill_normal(c, cf_in(c, 2, DSRT_F32, 2, SH(16, 128)), 0, 1);
        cf_operand *tab = cf_in(c, 3, DSRT_I32, 2, SH(1, 1));
        cf_set_i32(tab, 0, 0);
        cf_in(c, 4, DSRT_I32, 1, SH(0));
        cf_in(c, 5, DSRT_I32, 1, SH(0));
        cf_out(c, 0, DSRT_F32, 2, SH(0, 16));
        c->p.page_size = 16;
        c->p.scale = 0.01f;
        cf_finish(S, c);
    }
}

/* ---- top-k ---- */
static void gen_topk(cf_suite *S)
{
    enum { RANDOM, LENGTHS, SPECIAL, TIES };
    static const struct {
        int64_t T, L;
        int k, kind;
        bool quick, by_pos;
        const char *tags, *label;
    } V[] = {
        {4, 1000, 64, RANDOM, true, false, "", ""},
        {3, 50, 64, RANDOM, true, false, "edge", " k larger than the row"},
        {5, 300, 32, LENGTHS, false, false, "edge", " with lengths (0 and negative)"},
        {4, 200, 16, SPECIAL, true, false, "nan", " nan-inf entries"},
        {3, 500, 100, TIES, false, false, "ties", " many equal scores"},
        {0, 128, 8, RANDOM, false, false, "empty", ""},
        {2, 65536, 2048, RANDOM, false, false, "large", " indexer size"},
        {7, 129, 1, RANDOM, false, false, "", " argmax"},
        {2, 3000, 2048, LENGTHS, false, false, "edge", " index_topk over short rows"},
        /* by position: what DSA asks for */
        {4, 1000, 64, RANDOM, true, true, "", " by position"},
        {4, 200, 16, SPECIAL, false, true, "nan", " by position, nan-inf entries"},
        {3, 500, 100, TIES, false, true, "ties", " by position, many equal scores"},
        {3, 4100, 2048, LENGTHS, false, true, "edge", " by position, decode-length rows"},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_TOPK, V[i].quick, V[i].tags, "T=%lld L=%lld k=%d%s", (long long)V[i].T,
                              (long long)V[i].L, V[i].k, V[i].label);
        if (!c) continue;
        int64_t T = V[i].T, L = V[i].L;
        cf_operand *sc = cf_in(c, 0, DSRT_F32, 2, SH(T, L));
        cf_fill_normal(c, sc, 0, 1);
        if (V[i].kind == TIES)
            for (int64_t j = 0; j < T * L; j++) cf_set(sc, j, (float)cf_rng_int(&c->rng, 8));
        if (V[i].kind == SPECIAL) {
            for (int64_t t = 0; t < T; t++) {
                cf_set(sc, t * L + 3, NAN);
                cf_set(sc, t * L + 4, -INFINITY);
                cf_set(sc, t * L + 5, t % 2 ? INFINITY : NAN);
                cf_set(sc, t * L + 6, 1e30f);
            }
            for (int64_t j = 0; j < L; j++) cf_set(sc, 1 * L + j, j % 3 ? NAN : -INFINITY); /* nothing to pick */
        }
        if (V[i].kind == LENGTHS) {
            cf_operand *len = cf_in(c, 1, DSRT_I32, 1, SH(T));
            for (int64_t t = 0; t < T; t++) cf_set_i32(len, t, (int32_t)cf_rng_int(&c->rng, L + 1));
            if (T > 1) cf_set_i32(len, 1, 0);
            if (T > 2) cf_set_i32(len, 2, -5); /* a negative length ignores the row */
            if (T > 0) cf_set_i32(len, 0, (int32_t)L);
        }
        cf_out(c, 0, DSRT_I32, 2, SH(T, V[i].k));
        c->p.k = V[i].k;
        c->p.by_position = V[i].by_pos;
        c->check[0].mode = CF_CMP_TOPK;
        cf_finish(S, c);
    }
}

/* ---- MoE ---- */
static void gen_moe(cf_suite *S)
{
    static const struct {
        int64_t T, E;
        int k, ng, tg;
        dsrt_score_func f;
        bool bias, norm, quick, ties, nan;
        float scale;
        const char *label;
    } G[] = {
        {16, 256, 8, 8, 4, DSRT_SCORE_SIGMOID, true, true, true, false, false, 2.5f, "V3 routing"},
        {1, 256, 8, 8, 4, DSRT_SCORE_SIGMOID, true, true, false, false, false, 2.5f, "V3 routing one token"},
        {9, 64, 6, 1, 1, DSRT_SCORE_SOFTMAX, false, false, false, false, false, 1.0f, "softmax no groups"},
        {8, 64, 8, 1, 1, DSRT_SCORE_SIGMOID, false, true, false, true, false, 1.0f, "ties"},
        {6, 256, 8, 8, 4, DSRT_SCORE_SIGMOID, true, true, true, false, true, 2.5f, "nan logits"},
        {0, 256, 8, 8, 4, DSRT_SCORE_SIGMOID, true, true, false, false, false, 2.5f, "V3 routing"},
        {512, 256, 8, 8, 4, DSRT_SCORE_SIGMOID, true, true, false, false, false, 2.5f, "V3 routing prefill"},
        {5, 32, 16, 4, 2, DSRT_SCORE_SIGMOID, true, true, false, false, false, 1.0f, "k fills the kept groups"},
    };
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_MOE_GATE, G[i].quick, G[i].ties ? "ties" : G[i].nan ? "nan" : G[i].T == 0 ? "empty" : "",
                              "%s T=%lld E=%lld k=%d groups=%d/%d", G[i].label, (long long)G[i].T, (long long)G[i].E,
                              G[i].k, G[i].tg, G[i].ng);
        if (!c) continue;
        cf_operand *lg = cf_in(c, 0, DSRT_F32, 2, SH(G[i].T, G[i].E));
        cf_fill_normal(c, lg, 0, 2);
        if (G[i].ties)
            for (int64_t j = 0; j < cf_numel(lg); j++) cf_set(lg, j, (float)cf_rng_int(&c->rng, 5) - 2);
        if (G[i].nan)
            for (int64_t t = 0; t < G[i].T; t++) cf_set(lg, t * G[i].E + cf_rng_int(&c->rng, G[i].E), NAN);
        if (G[i].bias) cf_fill_normal(c, cf_in(c, 1, DSRT_F32, 1, SH(G[i].E)), 0, 0.05);
        cf_out(c, 0, DSRT_I32, 2, SH(G[i].T, G[i].k));
        cf_out(c, 1, DSRT_F32, 2, SH(G[i].T, G[i].k));
        c->p.k = G[i].k;
        c->p.n_group = G[i].ng;
        c->p.topk_group = G[i].tg;
        c->p.score_func = G[i].f;
        c->p.norm_topk = G[i].norm;
        c->p.route_scale = G[i].scale;
        c->check[0].mode = CF_CMP_MOE;
        c->check[1].mode = CF_CMP_NONE;
        c->check[0].limit = cf_default_limit(DSRT_OP_MOE_GATE);
        cf_finish(S, c);
    }
    static const struct {
        dsrt_dtype x, xp;
        int64_t T, H, E;
        int k, begin, count, extra;
        bool quick, drop;
    } D[] = {
        {DSRT_F32, DSRT_F32, 10, 64, 16, 4, 0, 16, 0, true, false},
        {DSRT_BF16, DSRT_BF16, 32, 256, 256, 8, 64, 64, 0, true, false},
        {DSRT_F32, DSRT_BF16, 7, 100, 32, 8, 8, 16, 5, false, true},
        {DSRT_F32, DSRT_F32, 0, 64, 16, 4, 0, 16, 0, false, false},
        {DSRT_BF16, DSRT_BF16, 1, 7168, 256, 8, 0, 256, 0, false, false},
    };
    for (size_t i = 0; i < sizeof D / sizeof D[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_MOE_DISPATCH, D[i].quick, D[i].T == 0 ? "empty" : D[i].drop ? "edge" : "",
                              "%s->%s T=%lld H=%lld k=%d experts %d..%d of %lld%s", DN(D[i].x), DN(D[i].xp),
                              (long long)D[i].T, (long long)D[i].H, D[i].k, D[i].begin, D[i].begin + D[i].count - 1,
                              (long long)D[i].E, D[i].drop ? " dropped ids, spare rows" : "");
        if (!c) continue;
        int64_t T = D[i].T, k = D[i].k, R = T * k + D[i].extra;
        cf_fill_normal(c, cf_in(c, 0, D[i].x, 2, SH(T, D[i].H)), 0, 1);
        cf_operand *ids = cf_in(c, 1, DSRT_I32, 2, SH(T, k));
        distinct_ids(c, ids, D[i].E);
        if (D[i].drop && T > 2) cf_set_i32(ids, 2 * k + 1, -1);
        cf_out(c, 0, D[i].xp, 2, SH(R, D[i].H));
        cf_out(c, 1, DSRT_I32, 1, SH(D[i].count + 1));
        cf_out(c, 2, DSRT_I32, 1, SH(R));
        cf_out(c, 3, DSRT_I32, 2, SH(T, k));
        c->p.expert_begin = D[i].begin;
        c->p.expert_count = D[i].count;
        c->check[0].rows_from = 1; /* x_perm rows past offsets[G] are undefined */
        cf_finish(S, c);
    }
    static const struct {
        dsrt_dtype yp, y;
        int64_t T, H;
        int k;
        bool shared, quick, remote;
    } C[] = {
        {DSRT_F32, DSRT_F32, 6, 256, 8, true, true, false},
        {DSRT_BF16, DSRT_BF16, 9, 7168, 8, true, false, false},
        {DSRT_F32, DSRT_BF16, 5, 300, 8, false, true, true},
        {DSRT_F32, DSRT_F32, 0, 64, 8, true, false, false},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_MOE_COMBINE, C[i].quick, C[i].T == 0 ? "empty" : C[i].remote ? "edge" : "",
                              "%s->%s T=%lld H=%lld k=%d%s%s", DN(C[i].yp), DN(C[i].y), (long long)C[i].T, (long long)C[i].H,
                              C[i].k, C[i].shared ? " +shared" : "", C[i].remote ? " some experts remote" : "");
        if (!c) continue;
        int64_t T = C[i].T, k = C[i].k, R = T * k;
        cf_fill_normal(c, cf_in(c, 0, C[i].yp, 2, SH(R, C[i].H)), 0, 1);
        cf_operand *sr = cf_in(c, 1, DSRT_I32, 2, SH(T, k));
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)(R + 1));
        if (perm) {
            cf_shuffle_i32(c, perm, R);
            for (int64_t j = 0; j < R; j++) cf_set_i32(sr, j, C[i].remote && j % 3 == 1 ? -1 : perm[j]);
            if (C[i].remote && R > 2) cf_set_i32(sr, 2, (int32_t)R + 3); /* outside [0, R): skipped */
            free(perm);
        } else {
            c->host_oom = true;
        }
        distinct_ids(c, cf_in(c, 2, DSRT_I32, 2, SH(T, k)), 256);
        cf_fill_uniform(c, cf_in(c, 3, DSRT_F32, 2, SH(T, k)), 0, 0.5);
        if (C[i].shared) cf_fill_normal(c, cf_in(c, 4, C[i].yp, 2, SH(T, C[i].H)), 0, 1);
        cf_out(c, 0, C[i].y, 2, SH(T, C[i].H));
        cf_finish(S, c);
    }
}

/* ---- sample ---- */
static void gen_sample(cf_suite *S)
{
    static const struct {
        int64_t B, V;
        float temp, top_p, min_p;
        int top_k;
        bool quick, ties, nan;
        const char *tags;
    } V[] = {
        {4, 1000, 0, 1, 0, 0, true, true, true, "ties nan"},
        {8, 2000, 0.7f, 0.95f, 0, 0, true, false, false, ""},
        {4, 129280, 1.0f, 1, 0, 40, false, false, false, "large"},
        {6, 500, 1.5f, 1, 0.05f, 0, false, false, false, ""},
        {5, 3000, 0.8f, 0.9f, 0.02f, 50, false, false, false, ""},
        {0, 100, 1.0f, 1, 0, 0, false, false, false, "empty"},
        {4, 300, 1.0f, 0.95f, 0, 0, false, false, true, "nan"},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        cf_case *c = cf_begin(S, DSRT_OP_SAMPLE, V[i].quick, V[i].tags, "B=%lld V=%lld %s%.2g top_k=%d top_p=%.2g min_p=%.2g%s%s",
                              (long long)V[i].B, (long long)V[i].V, V[i].temp > 0 ? "temperature=" : "greedy temperature=",
                              (double)V[i].temp, V[i].top_k, (double)V[i].top_p, (double)V[i].min_p,
                              V[i].ties ? " ties" : "", V[i].nan ? " nan" : "");
        if (!c) continue;
        int64_t B = V[i].B, Vv = V[i].V;
        cf_operand *lg = cf_in(c, 0, DSRT_F32, 2, SH(B, Vv));
        cf_fill_normal(c, lg, 0, 3);
        if (V[i].ties && B >= 2) { /* the best logit twice: the lower id wins */
            cf_set(lg, 1 * Vv + 10, 50);
            cf_set(lg, 1 * Vv + 900, 50);
        }
        if (V[i].nan && B >= 3) {
            cf_set(lg, 2 * Vv + 0, NAN);
            cf_set(lg, 2 * Vv + 7, NAN);
            cf_set(lg, 0 * Vv + 1, -INFINITY);
        }
        cf_fill_uniform(c, cf_in(c, 1, DSRT_F32, 1, SH(B)), 0, 1);
        cf_out(c, 0, DSRT_I32, 1, SH(B));
        c->p.temperature = V[i].temp;
        c->p.top_p = V[i].top_p;
        c->p.min_p = V[i].min_p;
        c->p.top_k = V[i].top_k;
        c->check[0].mode = CF_CMP_SAMPLE;
        cf_finish(S, c);
    }
}

/* One progress line per op as its cases finish (failures print as they happen). */
static void progress(cf_suite *S, int from)
{
    if (S->opt->list) return;
    for (int k = 0; k < DSRT_OP_COUNT; k++) {
        int n = 0, pass = 0, fail = 0, skip = 0;
        double ms = 0;
        for (int i = from; i < S->nresults; i++) {
            const cf_result *r = &S->results[i];
            if (r->kind != k) continue;
            n++;
            pass += r->status == CF_PASS;
            fail += r->status == CF_FAIL;
            skip += r->status == CF_SKIP;
            if (r->target_ms > 0) ms += r->target_ms;
        }
        if (!n) continue;
        fprintf(S->log, "%-16s %3d case%s  %3d pass  %3d fail  %3d skip   %8.1f ms on the target\n", dsrt_op_name((dsrt_op_kind)k),
                n, n == 1 ? " " : "s", pass, fail, skip, ms);
        fflush(S->log);
    }
}

void cf_generate_all(cf_suite *S)
{
    /* In the order a porter implements ops (docs/porting.md): what every layer needs first. */
    static void (*const G[])(cf_suite *) = {
        gen_convert, gen_embed,         gen_norms,       gen_elementwise, gen_linear, gen_rope,
        gen_head_linear, gen_cache_write, gen_mla_prefill, gen_mla_decode, gen_quant, gen_indexer,
        gen_topk,    gen_moe,           gen_linear_grouped, gen_sample,
    };
    for (size_t i = 0; i < sizeof G / sizeof G[0] && !S->oom; i++) {
        int from = S->nresults;
        G[i](S);
        progress(S, from);
    }
}
