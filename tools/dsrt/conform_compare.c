/* dsrt conform: comparing a target's outputs with the reference's.
 *
 * NMSE = sum (t - r)^2 / sum r^2 over elements finite in both (sum (t - r)^2 alone when the reference is
 * all zeros), in the spirit of ggml's test-backend-ops. NaN and +-Inf are not averaged away: each must
 * appear in the same place (and with the same sign) in both, so the reference defines how special
 * values propagate. Selections (top-k, MoE routing, sampling) are compared as what they select. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"

typedef struct cf_acc {
    double d, r, maxabs;
    int64_t n, special, first_special, maxi;
    double fa, fb; /* first special mismatch: reference, target */
} cf_acc;

static void acc_init(cf_acc *a)
{
    memset(a, 0, sizeof *a);
    a->first_special = -1;
    a->maxi = -1;
}

static void acc_add(cf_acc *a, int64_t i, double r, double t)
{
    bool rs = !isfinite(r), ts = !isfinite(t);
    if (rs || ts) {
        bool same = (isnan(r) && isnan(t)) || (isinf(r) && isinf(t) && (r > 0) == (t > 0));
        if (!same) {
            if (a->special == 0) {
                a->first_special = i;
                a->fa = r;
                a->fb = t;
            }
            a->special++;
        }
        return;
    }
    double e = t - r;
    a->d += e * e;
    a->r += r * r;
    a->n++;
    if (fabs(e) > a->maxabs) {
        a->maxabs = fabs(e);
        a->maxi = i;
    }
}

static double acc_err(const cf_acc *a) { return a->r > 0 ? a->d / a->r : a->d; }

/* "[3,17]" for flat index i of a tensor of the given shape. */
static void cf_index_str(const cf_operand *t, int64_t i, char *out, size_t len)
{
    int64_t idx[DSRT_MAX_DIMS] = {0};
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t n = t->shape[d] ? t->shape[d] : 1;
        idx[d] = i % n;
        i /= n;
    }
    int l = snprintf(out, len, "[");
    for (int d = 0; d < t->ndim && l > 0 && (size_t)l < len; d++)
        l += snprintf(out + l, len - (size_t)l, "%s%lld", d ? "," : "", (long long)idx[d]);
    if (l > 0 && (size_t)l < len) snprintf(out + l, len - (size_t)l, "]");
}

/* Element i decoded, with its block scale applied. */
static double cf_value(const cf_operand *t, int64_t i)
{
    double v = cf_get(t, i);
    if (!t->scaled) return v;
    int nd = t->ndim;
    int64_t col = i % t->shape[nd - 1], rest = i / t->shape[nd - 1], row = 0, lead = 0;
    if (nd >= 2) {
        row = rest % t->shape[nd - 2];
        lead = rest / t->shape[nd - 2];
    }
    return v * cf_scale_at(t, lead, row, col);
}

static void acc_detail(const cf_acc *a, const cf_operand *t, char *out, size_t len)
{
    char at[64];
    if (a->special) {
        cf_index_str(t, a->first_special, at, sizeof at);
        snprintf(out, len, "%lld special value(s) differ, first at %s: reference %g, target %g", (long long)a->special, at,
                 a->fa, a->fb);
    } else if (a->maxi >= 0) {
        cf_index_str(t, a->maxi, at, sizeof at);
        snprintf(out, len, "largest difference %.3g at %s", a->maxabs, at);
    } else {
        out[0] = 0;
    }
}

static int64_t cf_rows_defined(const cf_case *c, int o, const cf_operand *ref)
{
    const cf_operand *t = &ref[o];
    int64_t rows = t->shape[0];
    int src = c->check[o].rows_from;
    if (src >= 0 && ref[src].present && cf_numel(&ref[src]) > 0) {
        int32_t n = cf_get_i32(&ref[src], cf_numel(&ref[src]) - 1);
        if (n >= 0 && n < rows) rows = n;
    }
    return rows;
}

/* One unit in the last place of a value of dtype dt near v (subnormal spacing below the normal range). */
static double ulp_of(dsrt_dtype dt, double v)
{
    int mant, emin;
    switch (dt) {
    case DSRT_BF16: mant = 7, emin = -126; break;
    case DSRT_F16: mant = 10, emin = -14; break;
    case DSRT_E4M3: mant = 3, emin = -6; break;
    case DSRT_E5M2: mant = 2, emin = -14; break;
    default: mant = 23, emin = -126; break;
    }
    int e;
    frexp(fabs(v), &e); /* |v| = f * 2^e, f in [0.5, 1) */
    e -= 1;
    if (v == 0 || e < emin) e = emin;
    return ldexp(1.0, e - mant);
}

/* NMSE over the tensor, and (a second result) each element against a bound, because a mean forgives a
 * single wrong element in a large output: |t - r| <= ulp(r) + 1e-5 |r| + 5 sqrt(limit) rms(reference).
 * One ulp of the output dtype is the rounding two correct implementations may disagree by; 5 sqrt(limit)
 * rms allows an element five times the error the NMSE limit allows on average. Returns the results
 * written (1 or 2). */
static int cmp_nmse(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *a = &ref[o], *b = &tgt[o];
    int64_t n = cf_numel(a), rows = a->shape[0];
    if (rows > 0) n = n / rows * cf_rows_defined(c, o, ref);
    cf_acc acc;
    acc_init(&acc);
    for (int64_t i = 0; i < n; i++) acc_add(&acc, i, cf_value(a, i), cf_value(b, i));
    r->method = "nmse";
    r->error = acc_err(&acc);
    r->pass = acc.special == 0 && r->error <= r->limit;
    if (acc.special) r->error = INFINITY;
    acc_detail(&acc, a, r->detail, sizeof r->detail);
    if (!(r->limit > 0) || acc.special || acc.n == 0) return 1; /* exact checks already see every element */
    cf_check_result *m = r + 1;
    memset(m, 0, sizeof *m);
    memcpy(m->output, r->output, sizeof m->output);
    m->method = "max-error";
    m->limit = 1;
    double rms = sqrt(acc.r / (double)acc.n), slack = 5 * sqrt(r->limit) * rms;
    int64_t worst = -1;
    double wr = 0, wa = 0, wb = 0, wbound = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = cf_value(a, i), y = cf_value(b, i);
        if (!isfinite(x) || !isfinite(y)) continue;
        /* The ulp of the larger of the two, so a rounding across a power of two is one ulp too. */
        double bound = ulp_of(a->dtype, fmax(fabs(x), fabs(y))) + 1e-5 * fabs(x) + slack, ratio = fabs(y - x) / bound;
        if (ratio > wr) {
            wr = ratio;
            worst = i;
            wa = x;
            wb = y;
            wbound = bound;
        }
    }
    m->error = wr;
    m->pass = wr <= 1;
    if (worst >= 0) {
        char at[64];
        cf_index_str(a, worst, at, sizeof at);
        snprintf(m->detail, sizeof m->detail, "worst element %s: reference %.7g, target %.7g, off by %.3g where %.3g is "
                 "allowed", at, wa, wb, fabs(wb - wa), wbound);
    }
    return 2;
}

static void cmp_exact(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *a = &ref[o], *b = &tgt[o];
    size_t es = dsrt_dtype_size(a->dtype);
    int64_t n = cf_numel(a), rows = a->shape[0];
    if (rows > 0) n = n / rows * cf_rows_defined(c, o, ref);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a->data + (size_t)i * es, b->data + (size_t)i * es, es) != 0) {
            if (first < 0) first = i;
            bad++;
        }
    r->method = "exact";
    r->error = n ? (double)bad / (double)n : 0;
    r->pass = bad == 0;
    if (bad) {
        char at[64];
        cf_index_str(a, first, at, sizeof at);
        if (a->dtype == DSRT_I32)
            snprintf(r->detail, sizeof r->detail, "%lld of %lld elements differ, first at %s: reference %d, target %d",
                     (long long)bad, (long long)n, at, cf_get_i32(a, first), cf_get_i32(b, first));
        else
            snprintf(r->detail, sizeof r->detail, "%lld of %lld elements differ, first at %s: reference %g, target %g",
                     (long long)bad, (long long)n, at, (double)cf_get(a, first), (double)cf_get(b, first));
    }
}

static int cmp_desc_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Top-k: the target's picks must be valid positions of the row, distinct, never NaN or -inf, in
 * descending score (ascending position with by_position), as many as the reference's, and select the
 * same multiset of scores: a tie may pick either of two equal scores. */
static void cmp_topk(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *sc = &c->in[0], *lens = &c->in[1], *a = &ref[o], *b = &tgt[o];
    int64_t T = a->shape[0], k = a->shape[1], L = sc->shape[1];
    float *sa = malloc(sizeof(float) * (size_t)(k + 1)), *sb = malloc(sizeof(float) * (size_t)(k + 1));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(k + 1));
    r->method = "topk-set";
    if (!sa || !sb || !ids) {
        free(sa);
        free(sb);
        free(ids);
        r->error = INFINITY;
        snprintf(r->detail, sizeof r->detail, "host out of memory comparing");
        return;
    }
    int64_t bad = 0, ties = 0;
    for (int64_t t = 0; t < T; t++) {
        int64_t len = L;
        if (lens->present) {
            int32_t l = cf_get_i32(lens, t);
            len = l < 0 ? 0 : (l < L ? l : L);
        }
        int64_t na = 0, nb = 0;
        char why[200] = "";
        bool ended = false;
        float prev = INFINITY;
        int32_t prev_pos = -1;
        for (int64_t j = 0; j < k; j++) {
            int32_t ia = cf_get_i32(a, t * k + j), ib = cf_get_i32(b, t * k + j);
            if (ia >= 0) sa[na++] = cf_get(sc, t * L + ia);
            if (ib == -1) {
                ended = true;
                continue;
            }
            if (ended && !why[0]) snprintf(why, sizeof why, "index %d after a -1 at slot %lld", ib, (long long)j);
            if ((ib < 0 || ib >= len) && !why[0]) {
                snprintf(why, sizeof why, "index %d outside the row's %lld valid positions", ib, (long long)len);
                continue;
            }
            if (ib < 0 || ib >= len) continue;
            float v = cf_get(sc, t * L + ib);
            if ((isnan(v) || v == -INFINITY) && !why[0]) snprintf(why, sizeof why, "picked position %d whose score is %g", ib, (double)v);
            if (!c->p.by_position && v > prev && !why[0])
                snprintf(why, sizeof why, "scores not in descending order at slot %lld", (long long)j);
            if (c->p.by_position && ib <= prev_pos && !why[0])
                snprintf(why, sizeof why, "positions not in ascending order at slot %lld (%d after %d)", (long long)j, ib, prev_pos);
            prev = v;
            prev_pos = ib;
            ids[nb] = ib;
            sb[nb++] = v;
        }
        if (!why[0] && na != nb)
            snprintf(why, sizeof why, "%lld valid indices, the reference has %lld", (long long)nb, (long long)na);
        if (!why[0]) {
            qsort(ids, (size_t)nb, sizeof *ids, cmp_i32);
            for (int64_t j = 1; j < nb && !why[0]; j++)
                if (ids[j] == ids[j - 1]) snprintf(why, sizeof why, "position %d picked twice", ids[j]);
        }
        if (!why[0]) {
            qsort(sa, (size_t)na, sizeof *sa, cmp_desc_float);
            qsort(sb, (size_t)nb, sizeof *sb, cmp_desc_float);
            for (int64_t j = 0; j < na && !why[0]; j++)
                if (sa[j] != sb[j]) snprintf(why, sizeof why, "selected scores differ: reference %g, target %g", (double)sa[j], (double)sb[j]);
            for (int64_t j = 0; j < k; j++)
                if (cf_get_i32(a, t * k + j) != cf_get_i32(b, t * k + j)) {
                    ties++;
                    break;
                }
        }
        if (why[0]) {
            if (!bad) snprintf(r->detail, sizeof r->detail, "row %lld: %s", (long long)t, why);
            bad++;
        }
    }
    free(sa);
    free(sb);
    free(ids);
    r->error = T ? (double)bad / (double)T : 0;
    r->pass = bad == 0;
    if (!bad && ties)
        snprintf(r->detail, sizeof r->detail, "%lld row(s) picked equal scores in another order or position (ties)",
                 (long long)ties);
}

/* The biased routing score of every expert of row t, computed in double on the host. */
static void moe_scores(const cf_case *c, int64_t t, double *b, double *s)
{
    const cf_operand *lg = &c->in[0], *bias = &c->in[1];
    int64_t E = lg->shape[1];
    if (c->p.score_func == DSRT_SCORE_SOFTMAX) {
        double m = -INFINITY, sum = 0;
        for (int64_t e = 0; e < E; e++) m = fmax(m, cf_get(lg, t * E + e));
        for (int64_t e = 0; e < E; e++) sum += (s[e] = exp(cf_get(lg, t * E + e) - m));
        for (int64_t e = 0; e < E; e++) s[e] /= sum;
    } else {
        for (int64_t e = 0; e < E; e++) s[e] = 1.0 / (1.0 + exp(-(double)cf_get(lg, t * E + e)));
    }
    for (int64_t e = 0; e < E; e++) b[e] = s[e] + (bias->present ? cf_get(bias, e) : 0.0);
}

typedef struct {
    double b;
    int32_t id;
    float w;
} moe_pick;

static int moe_pick_cmp(const void *x, const void *y)
{
    const moe_pick *a = x, *b = y;
    if (a->b != b->b) return a->b > b->b ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* MoE routing: ids (output o) and weights (output o+1) per row, ranked by the biased score. At each
 * rank the expert must match, or tie with the reference's (equal biased score within 1e-6); the weights
 * at equal ranks are compared by NMSE. */
static void cmp_moe(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *ia = &ref[o], *ib = &tgt[o], *wa = &ref[o + 1], *wb = &tgt[o + 1];
    int64_t T = ia->shape[0], k = ia->shape[1], E = c->in[0].shape[1];
    double *b = malloc(sizeof(double) * (size_t)(2 * E + 1));
    moe_pick *pa = malloc(sizeof(moe_pick) * (size_t)(k + 1)), *pb = malloc(sizeof(moe_pick) * (size_t)(k + 1));
    r->method = "set+nmse";
    if (!b || !pa || !pb) {
        free(b);
        free(pa);
        free(pb);
        r->error = INFINITY;
        snprintf(r->detail, sizeof r->detail, "host out of memory comparing");
        return;
    }
    double *s = b + E;
    cf_acc acc;
    acc_init(&acc);
    int64_t bad = 0, ties = 0;
    char first[200] = "";
    for (int64_t t = 0; t < T; t++) {
        moe_scores(c, t, b, s);
        char why[160] = "";
        for (int64_t j = 0; j < k; j++) {
            int32_t x = cf_get_i32(ia, t * k + j), y = cf_get_i32(ib, t * k + j);
            pa[j] = (moe_pick){x >= 0 && x < E ? b[x] : NAN, x, cf_get(wa, t * k + j)};
            if (y < 0 || y >= E) {
                if (!why[0]) snprintf(why, sizeof why, "expert id %d outside 0..%lld", y, (long long)E - 1);
                pb[j] = (moe_pick){NAN, y, NAN};
                continue;
            }
            pb[j] = (moe_pick){b[y], y, cf_get(wb, t * k + j)};
            for (int64_t i = 0; i < j; i++)
                if (pb[i].id == y && !why[0]) snprintf(why, sizeof why, "expert %d chosen twice", y);
        }
        if (!why[0]) {
            qsort(pa, (size_t)k, sizeof *pa, moe_pick_cmp);
            qsort(pb, (size_t)k, sizeof *pb, moe_pick_cmp);
            bool tied = false;
            for (int64_t j = 0; j < k && !why[0]; j++) {
                if (pa[j].id == pb[j].id) continue;
                double tol = 1e-6 * fmax(1.0, fabs(pa[j].b));
                if (fabs(pa[j].b - pb[j].b) <= tol) tied = true;
                else
                    snprintf(why, sizeof why, "rank %lld: expert %d (score %.7g), the reference chose %d (score %.7g)",
                             (long long)j, pb[j].id, pb[j].b, pa[j].id, pa[j].b);
            }
            ties += tied;
            for (int64_t j = 0; j < k && !why[0]; j++) acc_add(&acc, t * k + j, pa[j].w, pb[j].w);
        }
        if (why[0]) {
            if (!bad) snprintf(first, sizeof first, "row %lld: %s", (long long)t, why);
            bad++;
        }
    }
    free(b);
    free(pa);
    free(pb);
    r->error = bad ? INFINITY : acc_err(&acc);
    r->pass = bad == 0 && acc.special == 0 && r->error <= r->limit;
    if (bad) snprintf(r->detail, sizeof r->detail, "%lld of %lld rows route differently; %s", (long long)bad, (long long)T, first);
    else if (acc.special) acc_detail(&acc, wa, r->detail, sizeof r->detail);
    else if (ties) snprintf(r->detail, sizeof r->detail, "%lld row(s) chose between experts of equal score (ties)", (long long)ties);
}

typedef struct {
    double v;
    int32_t id;
} samp;

static int samp_cmp(const void *x, const void *y)
{
    const samp *a = x, *b = y;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Whether two different picks of row `row` are both right: the uniform draw lies on the boundary
 * between them (within 1e-5 of the kept mass), where float rounding decides. Recomputed in double. */
static bool sample_boundary(const cf_case *c, int64_t row, int32_t x, int32_t y)
{
    const cf_operand *lg = &c->in[0], *u = &c->in[1];
    const dsrt_op_params *p = &c->p;
    int64_t V = lg->shape[1];
    if (p->temperature <= 0) return false;
    samp *v = malloc(sizeof(samp) * (size_t)V);
    double *pr = malloc(sizeof(double) * (size_t)V);
    if (!v || !pr) {
        free(v);
        free(pr);
        return false;
    }
    for (int64_t i = 0; i < V; i++) {
        double l = cf_get(lg, row * V + i);
        v[i] = (samp){isnan(l) ? -INFINITY : l, (int32_t)i};
    }
    qsort(v, (size_t)V, sizeof *v, samp_cmp);
    int64_t n = V;
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    double total = 0;
    for (int64_t i = 0; i < V; i++) total += exp((v[i].v - v[0].v) / p->temperature);
    for (int64_t i = 0; i < n; i++) pr[i] = exp((v[i].v - v[0].v) / p->temperature) / total;
    if (p->min_p > 0) {
        int64_t m = 1;
        while (m < n && pr[m] >= p->min_p * pr[0]) m++;
        n = m;
    }
    if (p->top_p < 1) {
        double cum = 0;
        int64_t m = 0;
        while (m < n) {
            cum += pr[m++];
            if (cum >= p->top_p) break;
        }
        n = m;
    }
    double kept = 0;
    for (int64_t i = 0; i < n; i++) kept += pr[i];
    double target = cf_get(u, row) * kept, cum = 0;
    int64_t rx = -1, ry = -1;
    for (int64_t i = 0; i < n; i++) {
        if (v[i].id == x) rx = i;
        if (v[i].id == y) ry = i;
    }
    bool ok = rx >= 0 && ry >= 0;
    int64_t lo = rx < ry ? rx : ry, hi = rx < ry ? ry : rx;
    for (int64_t i = 0; ok && i < hi; i++) {
        cum += pr[i];
        if (i >= lo && fabs(cum - target) > 1e-5 * kept) ok = false;
    }
    free(v);
    free(pr);
    return ok;
}

static void cmp_sample(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *a = &ref[o], *b = &tgt[o];
    int64_t B = cf_numel(a), bad = 0, boundary = 0;
    r->method = "exact-ids";
    for (int64_t i = 0; i < B; i++) {
        int32_t x = cf_get_i32(a, i), y = cf_get_i32(b, i);
        if (x == y) continue;
        if (sample_boundary(c, i, x, y)) {
            boundary++;
            continue;
        }
        if (!bad)
            snprintf(r->detail, sizeof r->detail, "row %lld: token %d, the reference drew %d", (long long)i, y, x);
        bad++;
    }
    r->error = B ? (double)bad / (double)B : 0;
    r->pass = bad == 0;
    if (!bad && boundary)
        snprintf(r->detail, sizeof r->detail, "%lld draw(s) on a probability boundary accepted", (long long)boundary);
}

/* An FP8 cache row decoded: e4m3 values times their f32 block scales, then the bf16 tail. */
static void cache_row(const uint8_t *row, int64_t W1, int64_t W2, double *out)
{
    int64_t nb = (W1 + 127) / 128;
    for (int64_t i = 0; i < W1; i++) {
        float s;
        memcpy(&s, row + W1 + 4 * (i / 128), 4);
        out[i] = (double)dsrt_e4m3_values[row[i]] * s;
    }
    for (int64_t i = 0; i < W2; i++) {
        uint16_t h;
        memcpy(&h, row + W1 + 4 * nb + 2 * i, 2);
        out[W1 + i] = dsrt_bf16_to_f32(h);
    }
}

static void cmp_cache_fp8(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    const cf_operand *src = &c->in[0], *slots = &c->in[1], *src2 = &c->in[2], *a = &ref[o], *b = &tgt[o];
    int64_t T = src->shape[0], W1 = src->shape[1], W2 = src2->present ? src2->shape[1] : 0;
    int64_t S = a->shape[0], C = a->shape[1];
    bool *written = calloc((size_t)S + 1, 1);
    double *ra = malloc(sizeof(double) * (size_t)(W1 + W2 + 1)), *rb = malloc(sizeof(double) * (size_t)(W1 + W2 + 1));
    r->method = "nmse-dequant";
    if (!written || !ra || !rb) {
        free(written);
        free(ra);
        free(rb);
        r->error = INFINITY;
        snprintf(r->detail, sizeof r->detail, "host out of memory comparing");
        return;
    }
    for (int64_t t = 0; t < T; t++) {
        int32_t s = cf_get_i32(slots, t);
        if (s >= 0 && s < S) written[s] = true;
    }
    cf_acc acc;
    acc_init(&acc);
    int64_t kept_bad = 0, first_kept = -1;
    for (int64_t s = 0; s < S; s++) {
        const uint8_t *x = a->data + s * C, *y = b->data + s * C;
        if (!written[s]) {
            if (memcmp(x, y, (size_t)C) != 0) {
                if (first_kept < 0) first_kept = s;
                kept_bad++;
            }
            continue;
        }
        cache_row(x, W1, W2, ra);
        cache_row(y, W1, W2, rb);
        for (int64_t i = 0; i < W1 + W2; i++) acc_add(&acc, s * (W1 + W2) + i, ra[i], rb[i]);
    }
    free(written);
    free(ra);
    free(rb);
    r->error = (kept_bad || acc.special) ? INFINITY : acc_err(&acc);
    r->pass = !kept_bad && !acc.special && r->error <= r->limit;
    if (kept_bad)
        snprintf(r->detail, sizeof r->detail, "%lld slot(s) no token writes were changed, first slot %lld", (long long)kept_bad,
                 (long long)first_kept);
    else if (acc.special)
        snprintf(r->detail, sizeof r->detail, "%lld special value(s) differ in written rows", (long long)acc.special);
}

int cf_compare_output(const cf_case *c, int o, const cf_operand *ref, const cf_operand *tgt, cf_check_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->output, sizeof r->output, "%s", dsrt_op_get_info(c->kind)->out_names[o]);
    r->limit = c->check[o].limit;
    switch (c->check[o].mode) {
    case CF_CMP_EXACT: cmp_exact(c, o, ref, tgt, r); return 1;
    case CF_CMP_TOPK: cmp_topk(c, o, ref, tgt, r); return 1;
    case CF_CMP_MOE: cmp_moe(c, o, ref, tgt, r); return 1;
    case CF_CMP_SAMPLE: cmp_sample(c, o, ref, tgt, r); return 1;
    case CF_CMP_CACHE_FP8: cmp_cache_fp8(c, o, ref, tgt, r); return 1;
    default: return cmp_nmse(c, o, ref, tgt, r);
    }
}
