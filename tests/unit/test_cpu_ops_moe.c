/* CPU MoE routing, dispatch, combine and sampling against hand-worked cases and naive loops written
 * from ops.h. */
#include "test_cpu_ops_common.h"

/* ---- moe_gate ---- */

typedef struct {
    int k, n_group, topk_group;
    dsrt_score_func f;
    bool norm;
    float route_scale;
} gate_p;

/* Runs the gate on one token row and returns ids and weights. */
static void gate_run(const float *logits, const float *bias, int64_t T, int64_t nexp, const gate_p *p, int32_t *ids, float *w)
{
    dsrt_tensor lg = tnew_cols(DSRT_F32, 2, (int64_t[]){T, nexp}, 1, 0), b = T1(DSRT_F32, nexp);
    dsrt_tensor ti = tnew_cols(DSRT_I32, 2, (int64_t[]){T, p->k}, 0, 1), tw = T2(DSRT_F32, T, p->k);
    tput(&lg, logits);
    if (bias) tput(&b, bias);
    ck_ok(dsrt_moe_gate(E.s, &lg, bias ? &b : NULL, p->k, p->n_group, p->topk_group, p->f, p->norm, p->route_scale, &ti, &tw));
    env_sync();
    for (int64_t i = 0; i < T * p->k; i++) {
        ids[i] = tget_i32(&ti, i);
        w[i] = tget1(&tw, i);
    }
}

/* The reference, from the text of ops.h (selection on fp32 scores, weights in double). */
static void gate_ref(const float *x, const float *bias, int64_t nexp, const gate_p *p, int32_t *ids, double *w)
{
    float *s = falloc(nexp), *b = falloc(nexp);
    if (p->f == DSRT_SCORE_SIGMOID) {
        for (int64_t i = 0; i < nexp; i++) s[i] = 1.0f / (1.0f + expf(-x[i]));
    } else {
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < nexp; i++) m = fmax(m, x[i]);
        for (int64_t i = 0; i < nexp; i++) sum += exp(x[i] - m);
        for (int64_t i = 0; i < nexp; i++) s[i] = (float)(exp(x[i] - m) / sum);
    }
    for (int64_t i = 0; i < nexp; i++) b[i] = bias ? s[i] + bias[i] : s[i];
    int64_t per = nexp / p->n_group;
    bool *kept = calloc((size_t)p->n_group, 1), *taken = calloc((size_t)nexp, 1);
    if (p->n_group == 1) kept[0] = true;
    else {
        double *gs = dalloc(p->n_group);
        for (int64_t g = 0; g < p->n_group; g++) {
            float top1 = -INFINITY, top2 = -INFINITY;
            for (int64_t i = g * per; i < (g + 1) * per; i++) {
                if (b[i] > top1) {
                    top2 = top1;
                    top1 = b[i];
                } else if (b[i] > top2) top2 = b[i];
            }
            gs[g] = bias ? top1 + top2 : top1; /* two largest biased scores; the max without a bias */
        }
        for (int n = 0; n < p->topk_group; n++) {
            int64_t best = -1;
            for (int64_t g = 0; g < p->n_group; g++)
                if (!kept[g] && (best < 0 || gs[g] > gs[best])) best = g;
            kept[best] = true;
        }
        free(gs);
    }
    double sum = 0;
    for (int j = 0; j < p->k; j++) {
        int64_t best = -1;
        for (int64_t i = 0; i < nexp; i++)
            if (kept[i / per] && !taken[i] && (best < 0 || b[i] > b[best])) best = i;
        taken[best] = true;
        ids[j] = (int32_t)best;
        w[j] = s[best]; /* unbiased */
        sum += s[best];
    }
    for (int j = 0; j < p->k; j++) w[j] = (p->norm ? w[j] / sum : w[j]) * p->route_scale;
    free(s);
    free(b);
    free(kept);
    free(taken);
}

static void expect_gate(const char *what, const int32_t *ids, const float *w, const int32_t *want_ids, const double *want_w, int k)
{
    for (int j = 0; j < k; j++) {
        ck_assert_msg(ids[j] == want_ids[j], "%s: choice %d is expert %d, expected %d", what, j, ids[j], want_ids[j]);
        ck_assert_msg(fabs(w[j] - want_w[j]) <= 1e-5 * fabs(want_w[j]) + 1e-12, "%s: weight %d = %.9g, expected %.9g", what, j,
                      (double)w[j], want_w[j]);
    }
}

START_TEST(test_moe_gate_hand_worked)
{
    int32_t ids[8];
    float w[8];
    /* A: 8 experts in 4 groups of 2, 2 groups kept, 2 experts. All logits 0 (s = 0.5) and exact biases:
     * b = 1.375 0 | .75 .75 | .5 .5 | .6875 .6875. Group scores (top-2 sums) 1.375, 1.5, 1, 1.375: group
     * 1, then the tie of groups 0 and 3 goes to group 0. Experts: 0 (1.375), then the tie of 2 and 3 goes
     * to 2. Weights 0.5 each, normalized, times 2.5. */
    {
        const float lg[8] = {0};
        const float bias[8] = {0.875f, -0.5f, 0.25f, 0.25f, 0.0f, 0.0f, 0.1875f, 0.1875f};
        gate_p p = {2, 4, 2, DSRT_SCORE_SIGMOID, true, 2.5f};
        gate_run(lg, bias, 1, 8, &p, ids, w);
        expect_gate("gate A", ids, w, (const int32_t[]){0, 2}, (const double[]){1.25, 1.25}, 2);
    }
    /* B: the single best expert (0, b = 2) sits in a group whose second expert is poor (top-2 sum 2.0);
     * groups 1 (2.5) and 2 (about 2.25) are kept, so expert 0 is never chosen. Weights are the unbiased
     * sigmoids: expert 3 has the larger b but the smaller s. */
    {
        const float lg[8] = {0, 0, 1.0f, -1.0f, 0, 0, 0, 0};
        const float bias[8] = {1.5f, -0.5f, 0.5f, 1.0f, 0.625f, 0.625f, 0.0f, 0.0f};
        gate_p p = {2, 4, 2, DSRT_SCORE_SIGMOID, true, 2.5f};
        gate_run(lg, bias, 1, 8, &p, ids, w);
        double s2 = 1 / (1 + exp(-1.0)), s3 = 1 / (1 + exp(1.0));
        expect_gate("gate B", ids, w, (const int32_t[]){3, 2}, (const double[]){2.5 * s3 / (s2 + s3), 2.5 * s2 / (s2 + s3)}, 2);
        /* without normalization the weights are s times route_scale */
        p.norm = false;
        p.route_scale = 1.0f;
        gate_run(lg, bias, 1, 8, &p, ids, w);
        expect_gate("gate B (no norm)", ids, w, (const int32_t[]){3, 2}, (const double[]){s3, s2}, 2);
    }
    /* C: without a bias the group score is the max: group 0 (max s(3)) wins over group 1, whose top-2
     * sum (2 s(1)) would be larger. */
    {
        const float lg[8] = {3.0f, -5.0f, 1.0f, 1.0f, -3.0f, -3.0f, -3.0f, -3.0f};
        gate_p p = {2, 4, 1, DSRT_SCORE_SIGMOID, true, 1.0f};
        gate_run(lg, NULL, 1, 8, &p, ids, w);
        double s0 = 1 / (1 + exp(-3.0)), s1 = 1 / (1 + exp(5.0));
        expect_gate("gate C", ids, w, (const int32_t[]){0, 1}, (const double[]){s0 / (s0 + s1), s1 / (s0 + s1)}, 2);
        /* the same scores as a bias of zero: now the top-2 sums decide, and group 1 wins */
        const float zero[8] = {0};
        gate_run(lg, zero, 1, 8, &p, ids, w);
        expect_gate("gate C (zero bias)", ids, w, (const int32_t[]){2, 3}, (const double[]){0.5, 0.5}, 2);
    }
    /* D: softmax, one group, no normalization, route_scale 2.5; nexp: equal scores tie to the lower id. */
    {
        const float lg[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
        gate_p p = {3, 1, 1, DSRT_SCORE_SOFTMAX, false, 2.5f};
        gate_run(lg, NULL, 1, 6, &p, ids, w);
        double z = 0, e[6];
        for (int i = 0; i < 6; i++) z += (e[i] = exp(lg[i]));
        expect_gate("gate D", ids, w, (const int32_t[]){1, 3, 4}, (const double[]){2.5 * e[1] / z, 2.5 * e[3] / z, 2.5 * e[4] / z}, 3);
        const float flat[6] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
        p.norm = true;
        p.route_scale = 1.0f;
        gate_run(flat, NULL, 1, 6, &p, ids, w);
        expect_gate("gate nexp", ids, w, (const int32_t[]){0, 1, 2}, (const double[]){1.0 / 3, 1.0 / 3, 1.0 / 3}, 3);
        p.f = DSRT_SCORE_SIGMOID;
        p.n_group = 3;
        p.topk_group = 2;
        gate_run(flat, flat, 1, 6, &p, ids, w); /* ties between groups too */
        expect_gate("gate nexp (groups)", ids, w, (const int32_t[]){0, 1, 2}, (const double[]){1.0 / 3, 1.0 / 3, 1.0 / 3}, 3);
    }
}
END_TEST

START_TEST(test_moe_gate_random)
{
    dsrt_rng r = {41};
    const gate_p ps[] = {
        {8, 8, 4, DSRT_SCORE_SIGMOID, true, 2.5f}, {6, 4, 2, DSRT_SCORE_SIGMOID, false, 1.0f},
        {4, 1, 1, DSRT_SCORE_SOFTMAX, true, 1.0f}, {1, 2, 1, DSRT_SCORE_SIGMOID, true, 2.5f},
    };
    const int64_t T = 9, nexp = 64;
    float *lg = falloc(T * nexp), *bias = falloc(nexp), *w = falloc(T * 8);
    int32_t *ids = calloc((size_t)(T * 8), sizeof(int32_t)), want_ids[8];
    double want_w[8];
    for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++)
        for (int wb = 0; wb < 2; wb++) {
            frand(&r, lg, T * nexp, 2.0f);
            frand(&r, bias, nexp, 0.3f);
            gate_run(lg, wb ? bias : NULL, T, nexp, &ps[c], ids, w);
            for (int64_t t = 0; t < T; t++) {
                gate_ref(lg + t * nexp, wb ? bias : NULL, nexp, &ps[c], want_ids, want_w);
                char what[64];
                snprintf(what, sizeof what, "gate random case %zu bias %d row %lld", c, wb, (long long)t);
                expect_gate(what, ids + t * ps[c].k, w + t * ps[c].k, want_ids, want_w, ps[c].k);
            }
        }
    /* T = 0 */
    gate_run(lg, bias, 0, nexp, &ps[0], ids, w);
    free(lg);
    free(bias);
    free(w);
    free(ids);
}
END_TEST

/* ---- dispatch / combine ---- */

START_TEST(test_moe_dispatch)
{
    dsrt_rng r = {42};
    const int64_t T = 7, k = 3, H = 20, NE = 10;
    const int begins[] = {0, 3, 8}, counts[] = {10, 4, 2};
    for (int c = 0; c < 3; c++) {
        int32_t ids[21];
        for (int64_t t = 0; t < T; t++) /* distinct experts per token, as the gate gives */
            for (int64_t j = 0; j < k; j++) {
                int32_t e;
                bool dup;
                do {
                    e = rand_int(&r, 0, (int)NE - 1);
                    dup = false;
                    for (int64_t i = 0; i < j; i++) dup |= ids[t * k + i] == e;
                } while (dup);
                ids[t * k + j] = e;
            }
        dsrt_tensor x = tnew_cols(DSRT_BF16, 2, (int64_t[]){T, H}, 2, 0), ti = T2(DSRT_I32, T, k);
        dsrt_tensor xp = T2(DSRT_F32, T * k + 2, H), off = T1(DSRT_I32, counts[c] + 1), rt = T1(DSRT_I32, T * k + 2);
        dsrt_tensor sr = T2(DSRT_I32, T, k);
        float *xv = falloc(T * H);
        frand(&r, xv, T * H, 1.0f);
        tput(&x, xv);
        tget(&x, xv);
        tput_i32(&ti, ids);
        ck_ok(dsrt_moe_dispatch(E.s, &x, &ti, begins[c], counts[c], &xp, &off, &rt, &sr));
        env_sync();
        /* expected: per local expert, its (t, j) pairs in token order */
        int32_t row = 0;
        for (int g = 0; g < counts[c]; g++) {
            ck_assert_msg(tget_i32(&off, g) == row, "dispatch case %d: offsets[%d] = %d, expected %d", c, g, tget_i32(&off, g), row);
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < k; j++)
                    if (ids[t * k + j] == begins[c] + g) {
                        ck_assert_msg(tget_i32(&sr, t * k + j) == row, "dispatch case %d: slot_row[%lld][%lld] = %d, expected %d", c,
                                      (long long)t, (long long)j, tget_i32(&sr, t * k + j), row);
                        ck_assert_int_eq(tget_i32(&rt, row), (int32_t)t);
                        for (int64_t h = 0; h < H; h++) ck_assert(tget1(&xp, row * H + h) == xv[t * H + h]);
                        row++;
                    }
        }
        ck_assert_int_eq(tget_i32(&off, counts[c]), row);
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < k; j++) {
                bool local = ids[t * k + j] >= begins[c] && ids[t * k + j] < begins[c] + counts[c];
                if (!local) ck_assert_int_eq(tget_i32(&sr, t * k + j), -1);
            }
        for (int64_t i = row; i < T * k + 2; i++) ck_assert_msg(tget_i32(&rt, i) == -1, "dispatch: unused row_token[%lld]", (long long)i);
        free(xv);
    }
}
END_TEST

static void combine_case(dsrt_rng *r, int64_t T, int64_t k, int64_t H, int64_t R, bool shared, dsrt_dtype dy)
{
    dsrt_tensor yp = T2(DSRT_BF16, R, H), sr = T2(DSRT_I32, T, k), ti = T2(DSRT_I32, T, k), tw = T2(DSRT_F32, T, k);
    dsrt_tensor sh = tnew_cols(DSRT_BF16, 2, (int64_t[]){T, H}, 0, 1), y = T2(dy, T, H);
    float *ypv = falloc(R * H), *shv = falloc(T * H), *wv = falloc(T * k), *want = falloc(T * H);
    frand(r, ypv, R * H, 1.0f);
    frand(r, shv, T * H, 1.0f);
    frand(r, wv, T * k, 0.5f);
    tput(&yp, ypv);
    tput(&sh, shv);
    tput(&tw, wv);
    tget(&yp, ypv);
    tget(&sh, shv);
    int32_t *srv = calloc((size_t)(T * k) + 1, sizeof(int32_t)), *idv = calloc((size_t)(T * k) + 1, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < k; j++) idv[t * k + j] = (int32_t)(t * 7 + j * 13) % 64; /* distinct, unordered */
        shuffle_i32(r, idv + t * k, k);
        for (int64_t j = 0; j < k; j++) srv[t * k + j] = rand_int(r, 0, 4) == 0 ? -1 : rand_int(r, 0, (int)R - 1);
    }
    tput_i32(&sr, srv);
    tput_i32(&ti, idv);
    ck_ok(dsrt_moe_combine(E.s, &yp, &sr, &ti, &tw, shared ? &sh : NULL, &y));
    env_sync();
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            float acc = 0;
            /* ascending expert id, slots with a row only; then the shared expert; one rounding */
            for (int32_t e = 0; e < 64; e++)
                for (int64_t j = 0; j < k; j++)
                    if (idv[t * k + j] == e && srv[t * k + j] >= 0) acc += ypv[srv[t * k + j] * H + h] * wv[t * k + j];
            if (shared) acc += shv[t * H + h];
            want[t * H + h] = acc;
        }
    expect_exact("moe_combine", &y, want);
    free(ypv);
    free(shv);
    free(wv);
    free(want);
    free(srv);
    free(idv);
}

START_TEST(test_moe_combine)
{
    dsrt_rng r = {43};
    combine_case(&r, 6, 8, 33, 40, true, DSRT_BF16);
    combine_case(&r, 5, 3, 16, 9, false, DSRT_F32);
    combine_case(&r, 1, 1, 7, 1, true, DSRT_F16);
    combine_case(&r, 0, 2, 4, 1, true, DSRT_F32);
    /* The order is observable: 1e8 + 1 - 1e8 in fp32 is 0 in slot order but 1 in expert order. */
    dsrt_tensor yp = T2(DSRT_F32, 3, 1), sr = T2(DSRT_I32, 1, 3), ti = T2(DSRT_I32, 1, 3), tw = T2(DSRT_F32, 1, 3);
    dsrt_tensor y = T2(DSRT_F32, 1, 1);
    tput(&yp, (const float[]){1.0f, 1e8f, -1e8f});
    tput_i32(&sr, (const int32_t[]){0, 1, 2});
    tput_i32(&ti, (const int32_t[]){7, 2, 5}); /* ascending ids: slot 1, slot 2, slot 0 */
    tput(&tw, (const float[]){1.0f, 1.0f, 1.0f});
    ck_ok(dsrt_moe_combine(E.s, &yp, &sr, &ti, &tw, NULL, &y));
    env_sync();
    ck_assert_msg(tget1(&y, 0) == 1.0f, "moe_combine order: %g, expected 1 (ascending expert ids)", (double)tget1(&y, 0));
    /* and the reverse arrangement */
    tput_i32(&ti, (const int32_t[]){2, 7, 5}); /* slot 0 (1), slot 2 (-1e8), slot 1 (1e8): (1 - 1e8) + 1e8 = 0 */
    ck_ok(dsrt_moe_combine(E.s, &yp, &sr, &ti, &tw, NULL, &y));
    env_sync();
    ck_assert_msg(tget1(&y, 0) == 0.0f, "moe_combine order: %g, expected 0", (double)tget1(&y, 0));
}
END_TEST

/* ---- sample ---- */

static void sample_run(const float *logits, int64_t B, int64_t V, const float *u, float temp, int top_k, float top_p,
                       float min_p, int32_t *out)
{
    dsrt_tensor lg = tnew_cols(DSRT_F32, 2, (int64_t[]){B, V}, 0, 5), tu = T1(DSRT_F32, B), o = T1(DSRT_I32, B);
    tput(&lg, logits);
    tput(&tu, u);
    ck_ok(dsrt_sample(E.s, &lg, &tu, temp, top_k, top_p, min_p, &o));
    env_sync();
    for (int64_t b = 0; b < B; b++) out[b] = tget_i32(&o, b);
}

/* The reference, from the text of ops.h. */
static int32_t sample_ref(const float *x, int64_t V, float u, float temp, int top_k, float top_p, float min_p)
{
    int32_t *ord = calloc((size_t)V, sizeof(int32_t));
    int32_t best = 0;
    for (int64_t i = 0; i < V; i++) {
        ord[i] = (int32_t)i;
        if (x[i] > x[best]) best = (int32_t)i;
    }
    if (temp <= 0) {
        free(ord);
        return best;
    }
    for (int64_t i = 1; i < V; i++) /* insertion sort: descending logit, ties to the lower id */
        for (int64_t j = i; j > 0 && (x[ord[j]] > x[ord[j - 1]] || (x[ord[j]] == x[ord[j - 1]] && ord[j] < ord[j - 1])); j--) {
            int32_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    double z = 0, *p = dalloc(V);
    for (int64_t i = 0; i < V; i++) z += exp((x[ord[i]] - x[ord[0]]) / (double)temp);
    for (int64_t i = 0; i < V; i++) p[i] = exp((x[ord[i]] - x[ord[0]]) / (double)temp) / z;
    int64_t n = V;
    if (top_k > 0 && top_k < n) n = top_k;
    if (min_p > 0) {
        int64_t m = 0;
        while (m < n && p[m] >= min_p * p[0]) m++;
        n = m;
    }
    if (top_p < 1) {
        double c = 0;
        int64_t m = 0;
        while (m < n && c < top_p) c += p[m++];
        n = m;
    }
    double kept = 0, c = 0;
    for (int64_t i = 0; i < n; i++) kept += p[i];
    int32_t pick = ord[n - 1];
    for (int64_t i = 0; i < n; i++) {
        c += p[i];
        if (c > u * kept) {
            pick = ord[i];
            break;
        }
    }
    free(ord);
    free(p);
    return pick;
}

START_TEST(test_sample_hand_worked)
{
    int32_t out[8];
    /* greedy: ties to the lower id; any temperature <= 0 */
    const float g[6] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 3.0f};
    const float u0[1] = {0.99f};
    sample_run(g, 1, 6, u0, 0.0f, 0, 1.0f, 0.0f, out);
    ck_assert_int_eq(out[0], 1);
    sample_run(g, 1, 6, u0, -1.0f, 3, 0.5f, 0.2f, out);
    ck_assert_int_eq(out[0], 1);
    /* p = 1/2, 1/4, 1/8, 1/8 over tokens sorted by logit; the vocabulary order is shuffled, and the
     * two 1/8 tokens tie (the lower id first). Sorted: id 3 (.5), id 0 (.25), id 1 (.125), id 4 (.125). */
    const float lg[5] = {logf(0.25f), logf(0.125f), -INFINITY, logf(0.5f), logf(0.125f)};
    struct {
        float u, temp, top_p, min_p;
        int top_k;
        int32_t want;
    } cases[] = {
        {0.10f, 1, 1, 0, 0, 3},      {0.60f, 1, 1, 0, 0, 0},      {0.80f, 1, 1, 0, 0, 1},
        {0.95f, 1, 1, 0, 0, 4},      {0.0f, 1, 1, 0, 0, 3},       {0.49f, 1, 1, 0, 0, 3},
        {0.90f, 1, 0.7f, 0, 0, 0},   /* top_p: kept {.5, .25}, target .9 * .75 */
        {0.90f, 1, 0.45f, 0, 0, 3},  /* top_p reached by the first token alone */
        {0.90f, 1, 1, 0.3f, 0, 0},   /* min_p: keep p >= .15 */
        {0.90f, 1, 1, 0.2f, 0, 4},   /* min_p: keep p >= .1 (all) */
        {0.99f, 1, 1, 0, 3, 1},      /* top_k 3: kept sum .875 */
        {0.99f, 1, 1, 0, 1, 3},      /* top_k 1 */
        {0.45f, 2, 1, 0, 0, 0},      /* temperature 2 flattens: p ~ .369, .261, ... */
        {0.45f, 1, 1, 0, 0, 3},
        {0.999f, 1, 0.9f, 0.3f, 4, 0}, /* all three filters together: min_p leaves {.5, .25} */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sample_run(lg, 1, 5, &cases[i].u, cases[i].temp, cases[i].top_k, cases[i].top_p, cases[i].min_p, out);
        ck_assert_msg(out[0] == cases[i].want, "sample case %zu: token %d, expected %d", i, out[0], cases[i].want);
        ck_assert_int_eq(sample_ref(lg, 5, cases[i].u, cases[i].temp, cases[i].top_k, cases[i].top_p, cases[i].min_p), cases[i].want);
    }
    /* several rows at once, each with its own uniform */
    float lg4[4 * 5], u4[4] = {0.1f, 0.6f, 0.8f, 0.95f};
    for (int b = 0; b < 4; b++) memcpy(lg4 + 5 * b, lg, sizeof lg);
    sample_run(lg4, 4, 5, u4, 1.0f, 0, 1.0f, 0.0f, out);
    ck_assert(out[0] == 3 && out[1] == 0 && out[2] == 1 && out[3] == 4);
}
END_TEST

START_TEST(test_sample_random)
{
    dsrt_rng r = {44};
    const int64_t B = 16, V = 1000;
    float *lg = falloc(B * V), u[16];
    frand(&r, lg, B * V, 3.0f);
    for (int b = 0; b < B; b++) u[b] = dsrt_rng_uniform(&r);
    int32_t out[16], again[16];
    const struct {
        float temp, top_p, min_p;
        int top_k;
    } ps[] = {{0.8f, 0.9f, 0.01f, 50}, {1.0f, 1.0f, 0.0f, 0}, {0.6f, 0.95f, 0.0f, 0}, {1.3f, 1.0f, 0.05f, 0}, {0.0f, 1.0f, 0.0f, 0}};
    for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++) {
        sample_run(lg, B, V, u, ps[c].temp, ps[c].top_k, ps[c].top_p, ps[c].min_p, out);
        sample_run(lg, B, V, u, ps[c].temp, ps[c].top_k, ps[c].top_p, ps[c].min_p, again);
        ck_assert_mem_eq(out, again, sizeof out); /* deterministic: the uniforms are the only randomness */
        for (int64_t b = 0; b < B; b++) {
            int32_t want = sample_ref(lg + b * V, V, u[b], ps[c].temp, ps[c].top_k, ps[c].top_p, ps[c].min_p);
            ck_assert_msg(out[b] == want, "sample params %zu row %lld: token %d, expected %d", c, (long long)b, out[b], want);
        }
    }
    free(lg);
}
END_TEST

int main(void)
{
    Suite *s = ops_suite("cpu_ops_moe");
    TCase *tc = ops_tcase(s, "moe");
    tcase_add_test(tc, test_moe_gate_hand_worked);
    tcase_add_test(tc, test_moe_gate_random);
    tcase_add_test(tc, test_moe_dispatch);
    tcase_add_test(tc, test_moe_combine);
    tc = ops_tcase(s, "sample");
    tcase_add_test(tc, test_sample_hand_worked);
    tcase_add_test(tc, test_sample_random);
    return dsrt_run_suite(s);
}
