/* CPU attention kernels against naive loops written from ops.h: MLA prefill (expanded) and decode
 * (absorbed, paged latent cache, PLAIN and FP8), DSA index sets, lightning-indexer scores and top-k. */
#include "test_cpu_ops_common.h"

/* The attended positions of a row, ascending and unique: j < len, and j in idx[0..k) when given. */
static int64_t visible(const int32_t *idx, int64_t k, int32_t len, int32_t *out)
{
    int64_t n = 0;
    for (int32_t j = 0; j < len; j++) {
        bool in = idx == NULL;
        for (int64_t i = 0; idx && i < k; i++)
            if (idx[i] == j) in = true;
        if (in) out[n++] = j;
    }
    return n;
}

/* Softmax-weighted sum of rows, the way ops.h states it for both modes. s: n scores (already scaled,
 * and in bf16 mode already rounded); vals(j) gives row j of width W. Writes ref (double, f32 mode) or
 * want (float, bf16 mode: p rounded to bf16, sums in fp32 in ascending position order). */
typedef const float *(*row_fn)(void *ctx, int64_t j);

static void attend(const float *s, int64_t n, row_fn vals, void *ctx, int64_t W, bool bf16, double *ref, double *mag,
                   float *want)
{
    for (int64_t d = 0; d < W; d++) {
        if (ref) ref[d] = 0, mag[d] = 0;
        if (want) want[d] = 0;
    }
    if (n == 0) return; /* no visible key: o = 0 */
    if (!bf16) {
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, s[j]);
        for (int64_t j = 0; j < n; j++) sum += exp((double)s[j] - m);
        for (int64_t j = 0; j < n; j++) {
            double p = exp((double)s[j] - m) / sum;
            const float *v = vals(ctx, j);
            for (int64_t d = 0; d < W; d++) {
                ref[d] += p * v[d];
                mag[d] += p * fabs(v[d]);
            }
        }
        return;
    }
    float m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) m = fmaxf(m, s[j]);
    float *p = falloc(n);
    for (int64_t j = 0; j < n; j++) {
        p[j] = expf(s[j] - m);
        sum += p[j];
    }
    for (int64_t j = 0; j < n; j++) p[j] = ref_bf16(p[j] / sum);
    for (int64_t j = 0; j < n; j++) {
        const float *v = vals(ctx, j);
        for (int64_t d = 0; d < W; d++) want[d] += p[j] * v[d];
    }
    free(p);
}

/* bf16-mode outputs: the op fixes where values are rounded but not the order of the fp32 sums inside
 * the softmax and P.V, so allow one unit of the output format and require that most elements match
 * exactly (a missing rounding step shifts far more of them). */
static void expect_bf16_mode(const char *what, const dsrt_tensor *t, const float *want, double min_exact)
{
    int64_t n = tnumel(t), exact = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = tget1(t, i), w = ref_round(t->dtype, want[i]);
        if (g == w) exact++;
        double tol = ref_ulp(t->dtype, fmax(fabs(w), fabs(g))) * 1.01 + 1e-30;
        ck_assert_msg(fabs(g - w) <= tol, "%s[%lld]: %.9g, expected %.9g (diff %.3g > %.3g)", what, (long long)i, g, w,
                      fabs(g - w), tol);
    }
    ck_assert_msg(n == 0 || (double)exact >= min_exact * (double)n, "%s: only %lld of %lld elements exact", what,
                  (long long)exact, (long long)n);
}

/* ---- MLA prefill ---- */

typedef struct {
    const float *v;
    int64_t Hh, Dv, h, base;
    const int32_t *pos;
} pv_ctx;

static const float *prefill_v_row(void *c, int64_t j)
{
    pv_ctx *p = c;
    return p->v + ((p->base + p->pos[j]) * p->Hh + p->h) * p->Dv;
}

typedef struct {
    int64_t T, Hh, Dn, Dr, Dv, L, k;
    bool bf16, ints;
} prefill_shape;

typedef struct {
    dsrt_tensor q, kn, kp, v, ks, kl, idx;
    float *qv, *knv, *kpv, *vv;
    int32_t *kss, *kls, *idxs;
} prefill_in;

static prefill_in prefill_inputs(dsrt_rng *r, const prefill_shape *c)
{
    prefill_in in;
    dsrt_dtype dt = c->bf16 ? DSRT_BF16 : DSRT_F32;
    int64_t Dq = c->Dn + c->Dr;
    in.q = T3(dt, c->T, c->Hh, Dq);
    in.kn = tnew_cols(dt, 3, (int64_t[]){c->L, c->Hh, c->Dn}, 0, c->Dv); /* k_nope and v share rows: [k_nope | v] */
    in.kp = T2(dt, c->L, c->Dr);
    in.v = T3(dt, c->L, c->Hh, c->Dv);
    in.qv = falloc(c->T * c->Hh * Dq);
    in.knv = falloc(c->L * c->Hh * c->Dn);
    in.kpv = falloc(c->L * c->Dr);
    in.vv = falloc(c->L * c->Hh * c->Dv);
    float *arrs[4] = {in.qv, in.knv, in.kpv, in.vv};
    const dsrt_tensor *ts[4] = {&in.q, &in.kn, &in.kp, &in.v};
    for (int a = 0; a < 4; a++) {
        int64_t n = tnumel(ts[a]);
        for (int64_t i = 0; i < n; i++)
            /* integers: q.k is exact in fp32 but needs more than bf16's 8 bits, so bf16(q.k) matters */
            arrs[a][i] = c->ints && a < 3 ? (float)rand_int(r, -8, 8) : dsrt_rng_normal(r) * (a == 3 ? 1.0f : 0.6f);
        tput(ts[a], arrs[a]);
        tget(ts[a], arrs[a]);
    }
    in.kss = calloc((size_t)c->T + 1, sizeof(int32_t));
    in.kls = calloc((size_t)c->T + 1, sizeof(int32_t));
    in.idxs = calloc((size_t)(c->T * c->k) + 1, sizeof(int32_t));
    for (int64_t t = 0; t < c->T; t++) {
        in.kss[t] = rand_int(r, 0, (int)c->L / 3);
        in.kls[t] = t % 5 == 4 ? 0 : rand_int(r, 1, (int)c->L - in.kss[t]);
        for (int64_t i = 0; i < c->k; i++) {
            int u = rand_int(r, 0, 9);
            /* -1 entries, entries past kv_len (not visible) and duplicates */
            in.idxs[t * c->k + i] = u == 0 ? -1 : u == 1 ? in.kls[t] + rand_int(r, 0, 3) : u == 2 && i ? in.idxs[t * c->k + i - 1] : rand_int(r, 0, in.kls[t] ? in.kls[t] - 1 : 0);
        }
    }
    in.ks = T1(DSRT_I32, c->T);
    in.kl = T1(DSRT_I32, c->T);
    in.idx = T2(DSRT_I32, c->T, c->k ? c->k : 1);
    tput_i32(&in.ks, in.kss);
    tput_i32(&in.kl, in.kls);
    if (c->k) tput_i32(&in.idx, in.idxs);
    return in;
}

static void prefill_free(prefill_in *in)
{
    free(in->qv);
    free(in->knv);
    free(in->kpv);
    free(in->vv);
    free(in->kss);
    free(in->kls);
    free(in->idxs);
}

/* Reference o for one input set; with_idx selects DSA. */
static void prefill_ref(const prefill_shape *c, const prefill_in *in, bool with_idx, float scale, double *ref, double *mag,
                        float *want)
{
    int64_t Dq = c->Dn + c->Dr;
    int32_t *pos = calloc((size_t)c->L + 1, sizeof(int32_t));
    float *s = falloc(c->L);
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t h = 0; h < c->Hh; h++) {
            int64_t n = visible(with_idx ? in->idxs + t * c->k : NULL, c->k, in->kls[t], pos);
            const float *q = in->qv + (t * c->Hh + h) * Dq;
            for (int64_t j = 0; j < n; j++) {
                int64_t row = in->kss[t] + pos[j];
                double dot = 0;
                for (int64_t d = 0; d < c->Dn; d++) dot += (double)q[d] * in->knv[(row * c->Hh + h) * c->Dn + d];
                for (int64_t d = 0; d < c->Dr; d++) dot += (double)q[c->Dn + d] * in->kpv[row * c->Dr + d];
                /* bf16: s = bf16(bf16(q.k) * scale); f32: s = scale * (q.k) */
                s[j] = c->bf16 ? ref_bf16(ref_bf16((float)dot) * scale) : (float)(scale * dot);
                if (!c->bf16) s[j] = (float)(scale * dot); /* kept in float only to share attend() */
            }
            pv_ctx pc = {in->vv, c->Hh, c->Dv, h, in->kss[t], pos};
            int64_t o = (t * c->Hh + h) * c->Dv;
            if (c->bf16) {
                attend(s, n, prefill_v_row, &pc, c->Dv, true, NULL, NULL, want + o);
            } else {
                /* f32 mode: scores in double for the reference */
                double *sd = dalloc(n);
                for (int64_t j = 0; j < n; j++) {
                    int64_t row = in->kss[t] + pos[j];
                    double dot = 0;
                    for (int64_t d = 0; d < c->Dn; d++) dot += (double)q[d] * in->knv[(row * c->Hh + h) * c->Dn + d];
                    for (int64_t d = 0; d < c->Dr; d++) dot += (double)q[c->Dn + d] * in->kpv[row * c->Dr + d];
                    sd[j] = scale * dot;
                }
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < n; j++) m = fmax(m, sd[j]);
                for (int64_t j = 0; j < n; j++) sum += exp(sd[j] - m);
                for (int64_t d = 0; d < c->Dv; d++) ref[o + d] = mag[o + d] = 0;
                for (int64_t j = 0; j < n; j++) {
                    double p = exp(sd[j] - m) / sum;
                    const float *v = prefill_v_row(&pc, j);
                    for (int64_t d = 0; d < c->Dv; d++) {
                        ref[o + d] += p * v[d];
                        mag[o + d] += p * fabs(v[d]);
                    }
                }
                free(sd);
            }
        }
    free(pos);
    free(s);
}

static void prefill_case(dsrt_rng *r, const prefill_shape *c)
{
    prefill_in in = prefill_inputs(r, c);
    float scale = c->ints ? 0.0137f : 0.1352337788608801f; /* scores of a few units either way */
    dsrt_dtype dt = c->bf16 ? DSRT_BF16 : DSRT_F32;
    int64_t no = c->T * c->Hh * c->Dv;
    double *ref = dalloc(no), *mag = dalloc(no);
    float *want = falloc(no);
    for (int w = 0; w < 2; w++) {
        bool with_idx = w == 1 && c->k > 0;
        if (w == 1 && !c->k) break;
        dsrt_tensor o = T3(dt, c->T, c->Hh, c->Dv);
        ck_ok(dsrt_mla_prefill(E.s, &in.q, &in.kn, &in.kp, &in.v, &in.ks, &in.kl, with_idx ? &in.idx : NULL, scale, &o));
        env_sync();
        prefill_ref(c, &in, with_idx, scale, ref, mag, want);
        char what[128];
        snprintf(what, sizeof what, "mla_prefill T=%lld Hh=%lld Dn=%lld Dr=%lld Dv=%lld %s%s", (long long)c->T,
                 (long long)c->Hh, (long long)c->Dn, (long long)c->Dr, (long long)c->Dv, dsrt_dtype_name(dt),
                 with_idx ? " DSA" : "");
        if (c->bf16) expect_bf16_mode(what, &o, want, 0.9);
        else expect_close(what, &o, ref, mag, 1e-5);
        /* rows without visible keys are exactly zero */
        for (int64_t t = 0; t < c->T; t++)
            if (in.kls[t] == 0)
                for (int64_t i = 0; i < c->Hh * c->Dv; i++) ck_assert(tget1(&o, t * c->Hh * c->Dv + i) == 0.0f);
    }
    free(ref);
    free(mag);
    free(want);
    prefill_free(&in);
}

START_TEST(test_mla_prefill)
{
    dsrt_rng r = {31};
    /* Dv > Dn + Dr on purpose: value rows wider than score rows. */
    const prefill_shape cases[] = {
        {7, 2, 16, 8, 40, 14, 6, false, false}, {7, 3, 16, 8, 8, 12, 9, false, false},
        {10, 2, 32, 16, 24, 16, 8, true, true}, {1, 1, 128, 64, 128, 5, 3, true, true},
        {1, 4, 8, 4, 8, 1, 1, false, false},    {0, 2, 8, 4, 8, 4, 2, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) prefill_case(&r, &cases[i]);
}
END_TEST

START_TEST(test_mla_prefill_dense_equals_dsa)
{
    /* Indices that cover every visible position (shuffled, with -1s, duplicates and positions past
     * kv_len mixed in) select exactly the dense set: the outputs are identical. */
    dsrt_rng r = {32};
    for (int b = 0; b < 2; b++) {
        prefill_shape c = {6, 2, 16, 8, 16, 20, 0, b == 1, b == 1};
        prefill_in in = prefill_inputs(&r, &c);
        const int64_t K = 32;
        int32_t *idx = calloc((size_t)(c.T * K), sizeof(int32_t));
        for (int64_t t = 0; t < c.T; t++) {
            int64_t n = 0;
            for (int32_t j = 0; j < in.kls[t]; j++) idx[t * K + n++] = j;
            for (; n < K; n++) idx[t * K + n] = n % 3 == 0 ? -1 : n % 3 == 1 ? in.kls[t] + (int32_t)n : (in.kls[t] ? (int32_t)(n % in.kls[t]) : -1);
            shuffle_i32(&r, idx + t * K, K);
        }
        dsrt_tensor ti = T2(DSRT_I32, c.T, K);
        tput_i32(&ti, idx);
        dsrt_dtype dt = c.bf16 ? DSRT_BF16 : DSRT_F32;
        dsrt_tensor o1 = T3(dt, c.T, c.Hh, c.Dv), o2 = T3(dt, c.T, c.Hh, c.Dv);
        ck_ok(dsrt_mla_prefill(E.s, &in.q, &in.kn, &in.kp, &in.v, &in.ks, &in.kl, NULL, 0.2f, &o1));
        ck_ok(dsrt_mla_prefill(E.s, &in.q, &in.kn, &in.kp, &in.v, &in.ks, &in.kl, &ti, 0.2f, &o2));
        env_sync();
        ck_assert_mem_eq(tbase(&o1), tbase(&o2), dsrt_tensor_nbytes(&o1));
        free(idx);
        prefill_free(&in);
    }
}
END_TEST

/* ---- MLA decode over a paged cache ---- */

typedef struct {
    int64_t Dc, Dr, S, page, nseq, P;
    dsrt_cache_format fmt;
    dsrt_dtype cdt; /* PLAIN cache dtype */
    dsrt_tensor cache, bt;
    int32_t *table; /* [nseq][P] */
    float *rows;    /* [S][Dc + Dr]: what each slot holds, as values */
} paged;

/* A cache whose sequences own shuffled pages; every slot is filled by hand in the format ops.h gives
 * (FP8: e4m3 codes, f32 scales per 128 latent values, bf16 rope tail). Integer-valued contents when
 * `ints` (dot products are then exact in fp32). */
static paged make_paged(dsrt_rng *r, int64_t Dc, int64_t Dr, int64_t nseq, int64_t P, int64_t page, dsrt_cache_format fmt,
                        dsrt_dtype cdt, bool ints)
{
    paged c = {.Dc = Dc, .Dr = Dr, .page = page, .nseq = nseq, .P = P, .fmt = fmt, .cdt = cdt};
    int64_t npages = nseq * P + 2;
    c.S = npages * page;
    int64_t W = Dc + Dr, nb = (Dc + 127) / 128;
    c.cache = fmt == DSRT_CACHE_PLAIN ? T2(cdt, c.S, W) : T2(DSRT_U8, c.S, Dc + 4 * nb + 2 * Dr);
    c.rows = falloc(c.S * W);
    int32_t *perm = calloc((size_t)npages, sizeof(int32_t));
    for (int64_t i = 0; i < npages; i++) perm[i] = (int32_t)i;
    shuffle_i32(r, perm, npages);
    c.table = calloc((size_t)(nseq * P), sizeof(int32_t));
    for (int64_t i = 0; i < nseq * P; i++) c.table[i] = perm[i];
    free(perm);
    c.bt = T2(DSRT_I32, nseq, P);
    tput_i32(&c.bt, c.table);
    for (int64_t sl = 0; sl < c.S; sl++) {
        float *row = c.rows + sl * W;
        if (fmt == DSRT_CACHE_PLAIN) {
            for (int64_t i = 0; i < W; i++) row[i] = ints ? (float)rand_int(r, -8, 8) : dsrt_rng_normal(r);
            dsrt_tensor one;
            ck_ok(dsrt_tensor_slice(&c.cache, 0, sl, 1, &one));
            tput(&one, row);
            tget(&one, row);
            continue;
        }
        uint8_t *b = (uint8_t *)tbase(&c.cache) + sl * c.cache.stride[0];
        for (int64_t blk = 0; blk < nb; blk++) {
            float s = ints ? (float)ldexp(1.0, rand_int(r, -2, 0)) : 0.002f + 0.01f * dsrt_rng_uniform(r);
            memcpy(b + Dc + 4 * blk, &s, 4);
            for (int64_t i = blk * 128; i < Dc && i < blk * 128 + 128; i++) {
                b[i] = ints ? ref_e4m3_code((float)rand_int(r, -8, 8)) : (uint8_t)rand_int(r, 0, 0x7e) | (uint8_t)(rand_int(r, 0, 1) << 7);
                row[i] = ref_e4m3_decode(b[i]) * s;
            }
        }
        for (int64_t i = 0; i < Dr; i++) {
            uint16_t h = ref_bf16_bits(ints ? (float)rand_int(r, -8, 8) : dsrt_rng_normal(r));
            memcpy(b + Dc + 4 * nb + 2 * i, &h, 2);
            row[Dc + i] = ref_bf16_decode(h);
        }
    }
    return c;
}

static void paged_free(paged *c)
{
    free(c->table);
    free(c->rows);
}

static int64_t paged_slot(const paged *c, int32_t seq, int32_t p) { return (int64_t)c->table[seq * c->P + p / c->page] * c->page + p % c->page; }

typedef struct {
    const paged *c;
    int32_t seq;
    const int32_t *pos;
} lat_ctx;

static const float *latent_row(void *v, int64_t j)
{
    lat_ctx *l = v;
    return l->c->rows + paged_slot(l->c, l->seq, l->pos[j]) * (l->c->Dc + l->c->Dr);
}

static void decode_case(dsrt_rng *r, paged *c, int64_t T, int64_t Hh, bool bf16, bool use_idx, bool ints)
{
    dsrt_dtype dt = bf16 ? DSRT_BF16 : DSRT_F32;
    dsrt_tensor ql = T3(dt, T, Hh, c->Dc), qp = tnew_cols(dt, 3, (int64_t[]){T, Hh, c->Dr}, 7, 0);
    float *qlv = falloc(T * Hh * c->Dc), *qpv = falloc(T * Hh * c->Dr);
    for (int64_t i = 0; i < T * Hh * c->Dc; i++) qlv[i] = ints ? (float)rand_int(r, -8, 8) : dsrt_rng_normal(r) * 0.3f;
    for (int64_t i = 0; i < T * Hh * c->Dr; i++) qpv[i] = ints ? (float)rand_int(r, -8, 8) : dsrt_rng_normal(r) * 0.3f;
    tput(&ql, qlv);
    tput(&qp, qpv);
    tget(&ql, qlv);
    tget(&qp, qpv);
    int32_t *seq = calloc((size_t)T + 1, sizeof(int32_t)), *len = calloc((size_t)T + 1, sizeof(int32_t));
    const int64_t K = 12;
    int32_t *idx = calloc((size_t)(T * K) + 1, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        seq[t] = (int32_t)(t % c->nseq);
        len[t] = t % 4 == 3 ? 0 : rand_int(r, 1, (int)(c->P * c->page));
        for (int64_t i = 0; i < K; i++) {
            int u = rand_int(r, 0, 7);
            idx[t * K + i] = u == 0 ? -1 : u == 1 ? len[t] + rand_int(r, 0, 2) : rand_int(r, 0, len[t] ? len[t] - 1 : 0);
        }
    }
    dsrt_tensor trs = T1(DSRT_I32, T), tkl = T1(DSRT_I32, T), tix = T2(DSRT_I32, T, K);
    tput_i32(&trs, seq);
    tput_i32(&tkl, len);
    tput_i32(&tix, idx);
    float scale = ints ? 0.0113f : 0.0625f * 1.37f; /* scores of a few units either way */
    dsrt_tensor o = T3(dt, T, Hh, c->Dc);
    ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &c->cache, c->fmt, (int)c->page, &c->bt, &trs, &tkl, use_idx ? &tix : NULL, scale, &o));
    env_sync();
    int64_t W = c->Dc + c->Dr, no = T * Hh * c->Dc;
    double *ref = dalloc(no), *mag = dalloc(no);
    float *want = falloc(no), *s = falloc(c->P * c->page + 1);
    int32_t *pos = calloc((size_t)(c->P * c->page) + 1, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hh; h++) {
            int64_t n = visible(use_idx ? idx + t * K : NULL, K, len[t], pos);
            const float *q1 = qlv + (t * Hh + h) * c->Dc, *q2 = qpv + (t * Hh + h) * c->Dr;
            double *sd = dalloc(n);
            for (int64_t j = 0; j < n; j++) {
                const float *row = c->rows + paged_slot(c, seq[t], pos[j]) * W;
                double a = 0, b = 0;
                for (int64_t d = 0; d < c->Dc; d++) a += (double)q1[d] * row[d];
                for (int64_t d = 0; d < c->Dr; d++) b += (double)q2[d] * row[c->Dc + d];
                sd[j] = scale * (a + b);
                /* bf16: s = bf16(bf16(bf16(q_lat.c) + bf16(q_pe.k_pe)) * scale) */
                s[j] = bf16 ? ref_bf16(ref_bf16(ref_bf16((float)a) + ref_bf16((float)b)) * scale) : (float)sd[j];
            }
            lat_ctx lc = {c, seq[t], pos};
            int64_t off = (t * Hh + h) * c->Dc;
            if (bf16) {
                attend(s, n, latent_row, &lc, c->Dc, true, NULL, NULL, want + off);
            } else {
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < n; j++) m = fmax(m, sd[j]);
                for (int64_t j = 0; j < n; j++) sum += exp(sd[j] - m);
                for (int64_t j = 0; j < n; j++) {
                    double p = exp(sd[j] - m) / sum;
                    const float *row = latent_row(&lc, j);
                    for (int64_t d = 0; d < c->Dc; d++) {
                        ref[off + d] += p * row[d];
                        mag[off + d] += p * fabs(row[d]);
                    }
                }
            }
            free(sd);
        }
    char what[128];
    snprintf(what, sizeof what, "mla_decode %s cache Dc=%lld page=%lld %s%s", c->fmt == DSRT_CACHE_FP8 ? "fp8" : dsrt_dtype_name(c->cdt),
             (long long)c->Dc, (long long)c->page, dsrt_dtype_name(dt), use_idx ? " DSA" : "");
    if (bf16) expect_bf16_mode(what, &o, want, ints ? 0.9 : 0.75);
    else expect_close(what, &o, ref, mag, 1e-5);
    for (int64_t t = 0; t < T; t++)
        if (len[t] == 0)
            for (int64_t i = 0; i < Hh * c->Dc; i++) ck_assert(tget1(&o, t * Hh * c->Dc + i) == 0.0f);

    if (!use_idx) { /* dense == DSA when the indices cover every visible position */
        const int64_t K2 = c->P * c->page + 4;
        int32_t *all = calloc((size_t)(T * K2), sizeof(int32_t));
        for (int64_t t = 0; t < T; t++) {
            int64_t n = 0;
            for (int32_t j = 0; j < len[t]; j++) all[t * K2 + n++] = j;
            for (; n < K2; n++) all[t * K2 + n] = n % 2 ? -1 : (len[t] ? len[t] - 1 : -1);
            shuffle_i32(r, all + t * K2, K2);
        }
        dsrt_tensor tall = T2(DSRT_I32, T, K2), o2 = T3(dt, T, Hh, c->Dc);
        tput_i32(&tall, all);
        ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &c->cache, c->fmt, (int)c->page, &c->bt, &trs, &tkl, &tall, scale, &o2));
        env_sync();
        ck_assert_msg(memcmp(tbase(&o), tbase(&o2), dsrt_tensor_nbytes(&o)) == 0, "%s: dense and full-DSA outputs differ", what);
        free(all);
    }
    free(qlv);
    free(qpv);
    free(seq);
    free(len);
    free(idx);
    free(ref);
    free(mag);
    free(want);
    free(s);
    free(pos);
}

START_TEST(test_mla_decode_plain)
{
    dsrt_rng r = {33};
    paged c = make_paged(&r, 96, 16, 3, 5, 4, DSRT_CACHE_PLAIN, DSRT_F32, false);
    decode_case(&r, &c, 7, 3, false, false, false);
    decode_case(&r, &c, 7, 3, false, true, false);
    paged_free(&c);
    paged cb = make_paged(&r, 64, 8, 2, 4, 8, DSRT_CACHE_PLAIN, DSRT_BF16, true);
    decode_case(&r, &cb, 5, 4, true, false, true);
    decode_case(&r, &cb, 5, 4, true, true, true);
    decode_case(&r, &cb, 5, 2, false, false, false);
    paged_free(&cb);
    paged c1 = make_paged(&r, 8, 2, 1, 3, 1, DSRT_CACHE_PLAIN, DSRT_F16, false); /* one slot per page */
    decode_case(&r, &c1, 2, 1, false, false, false);
    decode_case(&r, &c1, 0, 1, false, false, false);
    paged_free(&c1);
}
END_TEST

START_TEST(test_mla_decode_fp8)
{
    dsrt_rng r = {34};
    paged c = make_paged(&r, 200, 16, 3, 4, 4, DSRT_CACHE_FP8, DSRT_F32, false); /* a partial scale block */
    decode_case(&r, &c, 6, 2, false, false, false);
    decode_case(&r, &c, 6, 2, false, true, false);
    decode_case(&r, &c, 6, 2, true, false, false);
    paged_free(&c);
    paged ci = make_paged(&r, 256, 32, 2, 3, 4, DSRT_CACHE_FP8, DSRT_F32, true);
    decode_case(&r, &ci, 5, 3, true, false, true);
    decode_case(&r, &ci, 5, 3, true, true, true);
    paged_free(&ci);
}
END_TEST

START_TEST(test_mla_decode_cache_written_by_op)
{
    /* The decode reads what cache_write writes: PLAIN and FP8 caches filled by the op from the same
     * latent give the PLAIN result on the dequantized values. */
    dsrt_rng r = {35};
    const int64_t Dc = 256, Dr = 32, L = 12, Hh = 2, page = 4, P = 3;
    dsrt_tensor lat = T2(DSRT_BF16, L, Dc), kpe = T2(DSRT_BF16, L, Dr), slots = T1(DSRT_I32, L);
    float *lv = falloc(L * Dc), *kv = falloc(L * Dr);
    frand(&r, lv, L * Dc, 1.0f);
    frand(&r, kv, L * Dr, 1.0f);
    tput(&lat, lv);
    tput(&kpe, kv);
    int32_t table[3] = {2, 0, 1}, sl[12];
    for (int j = 0; j < L; j++) sl[j] = table[j / page] * (int32_t)page + j % (int32_t)page;
    tput_i32(&slots, sl);
    dsrt_tensor c8 = T2(DSRT_U8, P * page, Dc + 8 + 2 * Dr), cp = T2(DSRT_F32, P * page, Dc + Dr);
    ck_ok(dsrt_cache_write(E.s, &lat, &slots, &kpe, DSRT_CACHE_FP8, true, &c8));
    env_sync();
    /* the PLAIN cache holds the FP8 cache's values, decoded here */
    float *row = falloc(Dc + Dr);
    for (int64_t s = 0; s < P * page; s++) {
        const uint8_t *b = (const uint8_t *)tbase(&c8) + s * (Dc + 8 + 2 * Dr);
        for (int64_t i = 0; i < Dc; i++) {
            float sc;
            memcpy(&sc, b + Dc + 4 * (i / 128), 4);
            row[i] = ref_e4m3_decode(b[i]) * sc;
        }
        for (int64_t i = 0; i < Dr; i++) {
            uint16_t h;
            memcpy(&h, b + Dc + 8 + 2 * i, 2);
            row[Dc + i] = ref_bf16_decode(h);
        }
        dsrt_tensor one;
        ck_ok(dsrt_tensor_slice(&cp, 0, s, 1, &one));
        tput(&one, row);
    }
    dsrt_tensor ql = T3(DSRT_F32, 2, Hh, Dc), qp = T3(DSRT_F32, 2, Hh, Dr), bt = T2(DSRT_I32, 1, P);
    float *qv = falloc(2 * Hh * Dc);
    frand(&r, qv, 2 * Hh * Dc, 0.2f);
    tput(&ql, qv);
    frand(&r, qv, 2 * Hh * Dr, 0.2f);
    tput(&qp, qv);
    tput_i32(&bt, table);
    dsrt_tensor rs = T1(DSRT_I32, 2), kl = T1(DSRT_I32, 2);
    tput_i32(&rs, (const int32_t[]){0, 0});
    tput_i32(&kl, (const int32_t[]){12, 7});
    dsrt_tensor o8 = T3(DSRT_F32, 2, Hh, Dc), op = T3(DSRT_F32, 2, Hh, Dc);
    ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &c8, DSRT_CACHE_FP8, (int)page, &bt, &rs, &kl, NULL, 0.1f, &o8));
    ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &cp, DSRT_CACHE_PLAIN, (int)page, &bt, &rs, &kl, NULL, 0.1f, &op));
    env_sync();
    double *ref = dalloc(2 * Hh * Dc), *mag = dalloc(2 * Hh * Dc);
    for (int64_t i = 0; i < 2 * Hh * Dc; i++) {
        ref[i] = tget1(&op, i);
        mag[i] = fabs(ref[i]) + 1e-3;
    }
    expect_close("mla_decode fp8 vs plain", &o8, ref, mag, 1e-5);
    free(lv);
    free(kv);
    free(row);
    free(qv);
    free(ref);
    free(mag);
}
END_TEST

START_TEST(test_paged_positions_without_rows)
{
    /* Positions whose page is -1, lies beyond the block table, or whose sequence is not in the table
     * have no cached row: decode skips them and the indexer scores them -inf. */
    dsrt_rng r = {38};
    const int64_t Dc = 16, Dr = 4, page = 2, S = 8, Hh = 2;
    dsrt_tensor cache = T2(DSRT_F32, S, Dc + Dr), kc = T2(DSRT_F32, S, Dc);
    float *cv = falloc(S * (Dc + Dr));
    frand(&r, cv, S * (Dc + Dr), 1.0f);
    tput(&cache, cv);
    tput(&kc, cv); /* any keys will do */
    dsrt_tensor bt = T2(DSRT_I32, 1, 3), bt_full = T2(DSRT_I32, 1, 3);
    tput_i32(&bt, (const int32_t[]){3, -1, 1});
    tput_i32(&bt_full, (const int32_t[]){3, 0, 1});
    dsrt_tensor ql = T3(DSRT_F32, 3, Hh, Dc), qp = T3(DSRT_F32, 3, Hh, Dr);
    float *qv = falloc(3 * Hh * Dc);
    frand(&r, qv, 3 * Hh * Dc, 0.5f);
    tput(&ql, qv);
    frand(&r, qv, 3 * Hh * Dr, 0.5f);
    tput(&qp, qv);
    dsrt_tensor rs = T1(DSRT_I32, 3), kl = T1(DSRT_I32, 3), kl6 = T1(DSRT_I32, 3), idx = T2(DSRT_I32, 3, 4);
    tput_i32(&rs, (const int32_t[]){0, 0, 5}); /* row 2: a sequence the table does not have */
    tput_i32(&kl, (const int32_t[]){8, 6, 4}); /* row 0 also reaches past the table (positions 6, 7) */
    tput_i32(&kl6, (const int32_t[]){6, 6, 4});
    tput_i32(&idx, (const int32_t[]){0, 1, 4, 5, 0, 1, 4, 5, 0, 1, 2, 3});
    dsrt_tensor o = T3(DSRT_F32, 3, Hh, Dc), o_idx = T3(DSRT_F32, 3, Hh, Dc);
    ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &cache, DSRT_CACHE_PLAIN, (int)page, &bt, &rs, &kl, NULL, 0.3f, &o));
    ck_ok(dsrt_mla_decode(E.s, &ql, &qp, &cache, DSRT_CACHE_PLAIN, (int)page, &bt_full, &rs, &kl6, &idx, 0.3f, &o_idx));
    env_sync();
    ck_assert_mem_eq(tbase(&o), tbase(&o_idx), (size_t)(2 * Hh * Dc) * 4); /* rows 0, 1: positions 0, 1, 4, 5 */
    for (int64_t i = 2 * Hh * Dc; i < 3 * Hh * Dc; i++) ck_assert(tget1(&o, i) == 0.0f);

    dsrt_tensor q = T3(DSRT_F32, 3, 2, Dc), w = T2(DSRT_F32, 3, 2), sc = T2(DSRT_F32, 3, 9), sc_full = T2(DSRT_F32, 3, 9);
    frand(&r, qv, 3 * 2 * Dc, 1.0f);
    tput(&q, qv);
    tput(&w, (const float[]){1, 0.5f, 1, 0.5f, 1, 0.5f});
    ck_ok(dsrt_indexer_scores(E.s, &q, &w, &kc, DSRT_CACHE_PLAIN, (int)page, &bt, &rs, &kl, 1.0f, &sc));
    ck_ok(dsrt_indexer_scores(E.s, &q, &w, &kc, DSRT_CACHE_PLAIN, (int)page, &bt_full, &rs, &kl, 1.0f, &sc_full));
    env_sync();
    for (int64_t t = 0; t < 3; t++)
        for (int64_t j = 0; j < 9; j++) {
            float g = tget1(&sc, t * 9 + j), f = tget1(&sc_full, t * 9 + j);
            bool missing = t == 2 || j == 2 || j == 3 || j >= 6 || j >= (t == 0 ? 8 : 6);
            if (missing) ck_assert_msg(g == -INFINITY, "indexer row %lld pos %lld: %g, expected -inf", (long long)t, (long long)j, (double)g);
            else ck_assert_msg(g == f && isfinite(g), "indexer row %lld pos %lld: %g, expected %g", (long long)t, (long long)j, (double)g, (double)f);
        }
    free(cv);
    free(qv);
}
END_TEST

/* ---- indexer scores ---- */

static void indexer_case(dsrt_rng *r, int64_t T, int64_t Hi, int64_t D, bool fp8, bool ints, dsrt_dtype qdt)
{
    const int64_t page = 4, P = 4, nseq = 2, L = P * page + 3;
    int64_t npages = nseq * P + 1, S = npages * page, nb = (D + 127) / 128;
    int32_t table[8];
    int32_t perm[9];
    for (int i = 0; i < 9; i++) perm[i] = i;
    shuffle_i32(r, perm, 9);
    for (int i = 0; i < 8; i++) table[i] = perm[i];
    dsrt_tensor bt = T2(DSRT_I32, nseq, P);
    tput_i32(&bt, table);
    /* keys: PLAIN bf16 rows, or FP8 rows (e4m3 codes, f32 scales) made by hand */
    dsrt_tensor kc = fp8 ? T2(DSRT_U8, S, D + 4 * nb) : T2(DSRT_BF16, S, D);
    float *kq = falloc(S * D), *ksc = falloc(S * nb); /* FP8: codes' values and scales; PLAIN: values */
    for (int64_t s = 0; s < S; s++) {
        if (!fp8) {
            for (int64_t i = 0; i < D; i++) kq[s * D + i] = dsrt_rng_normal(r);
            dsrt_tensor one;
            ck_ok(dsrt_tensor_slice(&kc, 0, s, 1, &one));
            tput(&one, kq + s * D);
            tget(&one, kq + s * D);
            continue;
        }
        uint8_t *b = (uint8_t *)tbase(&kc) + s * (D + 4 * nb);
        for (int64_t i = 0; i < D; i++) {
            b[i] = ints ? ref_e4m3_code((float)rand_int(r, -16, 16)) : (uint8_t)(rand_int(r, 0, 0x7e) | (rand_int(r, 0, 1) << 7));
            kq[s * D + i] = ref_e4m3_decode(b[i]);
        }
        for (int64_t bl = 0; bl < nb; bl++) {
            ksc[s * nb + bl] = 0.003f + 0.02f * dsrt_rng_uniform(r);
            memcpy(b + D + 4 * bl, &ksc[s * nb + bl], 4);
        }
    }
    /* queries */
    dsrt_tensor q = T3(fp8 ? DSRT_E4M3 : qdt, T, Hi, D);
    float *qv = falloc(T * Hi * D), *qs = falloc(T * Hi * nb);
    if (fp8) {
        tscale(&q, DSRT_F32, 1, 128);
        uint8_t *b = tbase(&q);
        for (int64_t i = 0; i < T * Hi * D; i++) {
            b[i] = ints ? ref_e4m3_code((float)rand_int(r, -16, 16)) : (uint8_t)(rand_int(r, 0, 0x7e) | (rand_int(r, 0, 1) << 7));
            qv[i] = ref_e4m3_decode(b[i]);
        }
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < Hi; h++)
                for (int64_t bl = 0; bl < nb; bl++) {
                    float v = 0.002f + 0.03f * dsrt_rng_uniform(r);
                    qs[(t * Hi + h) * nb + bl] = v;
                    tscale_set(&q, t, h, bl, v, 0);
                }
    } else {
        frand(r, qv, T * Hi * D, 1.0f);
        tput(&q, qv);
        tget(&q, qv);
    }
    dsrt_tensor w = T2(DSRT_F32, T, Hi);
    float *wv = falloc(T * Hi);
    frand(r, wv, T * Hi, 1.0f);
    tput(&w, wv);
    int32_t seq[16] = {0}, len[16] = {0};
    for (int64_t t = 0; t < T; t++) {
        seq[t] = (int32_t)(t % nseq);
        len[t] = t % 5 == 2 ? 0 : rand_int(r, 1, (int)(P * page));
    }
    dsrt_tensor trs = T1(DSRT_I32, T), tkl = T1(DSRT_I32, T), out = tnew_cols(DSRT_F32, 2, (int64_t[]){T, L}, 0, 2);
    tput_i32(&trs, seq);
    tput_i32(&tkl, len);
    float scale = 0.0883883476f * 0.125f * 1.1f;
    ck_ok(dsrt_indexer_scores(E.s, &q, &w, &kc, fp8 ? DSRT_CACHE_FP8 : DSRT_CACHE_PLAIN, (int)page, &bt, &trs, &tkl, scale, &out));
    env_sync();
    double *ref = dalloc(T * L), *mag = dalloc(T * L);
    float *want = falloc(T * L);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < L; j++) {
            if (j >= len[t]) {
                ref[t * L + j] = -INFINITY;
                want[t * L + j] = -INFINITY;
                continue;
            }
            int64_t slot = (int64_t)table[seq[t] * P + j / page] * page + j % page;
            double acc = 0, ma = 0;
            float facc = 0;
            for (int64_t h = 0; h < Hi; h++) {
                double dot = 0, dm = 0;
                for (int64_t bl = 0; bl < nb; bl++) {
                    double part = 0, pm = 0;
                    for (int64_t i = bl * 128; i < D && i < bl * 128 + 128; i++) {
                        part += (double)qv[(t * Hi + h) * D + i] * kq[slot * D + i];
                        pm += fabs((double)qv[(t * Hi + h) * D + i] * kq[slot * D + i]);
                    }
                    double f = fp8 ? (double)qs[(t * Hi + h) * nb + bl] * ksc[slot * nb + bl] : 1.0;
                    dot += f * part;
                    dm += f * pm;
                }
                acc += (dot > 0 ? dot : 0) * wv[t * Hi + h] * scale;
                ma += dm * fabs(wv[t * Hi + h] * scale);
                if (fp8 && D == 128) { /* the official order: ks * sum_h ReLU(q8.k8) * (w * qs * scale) */
                    float d8 = 0;
                    for (int64_t i = 0; i < D; i++) d8 += qv[(t * Hi + h) * D + i] * kq[slot * D + i];
                    float wq = wv[t * Hi + h] * qs[(t * Hi + h) * nb] * scale;
                    facc += (d8 > 0 ? d8 : 0) * wq;
                }
            }
            ref[t * L + j] = acc;
            mag[t * L + j] = ma;
            want[t * L + j] = ksc[slot * nb] * facc;
        }
    char what[96];
    snprintf(what, sizeof what, "indexer_scores %s D=%lld Hi=%lld", fp8 ? "fp8" : dsrt_dtype_name(qdt), (long long)D, (long long)Hi);
    if (fp8 && D == 128 && ints) expect_exact(what, &out, want);
    else expect_close(what, &out, ref, mag, 1e-5);
    free(kq);
    free(ksc);
    free(qv);
    free(qs);
    free(wv);
    free(ref);
    free(mag);
    free(want);
}

START_TEST(test_indexer_scores)
{
    dsrt_rng r = {36};
    indexer_case(&r, 6, 4, 128, false, false, DSRT_BF16);
    indexer_case(&r, 3, 2, 64, false, false, DSRT_F32);
    indexer_case(&r, 6, 4, 128, true, false, DSRT_E4M3);
    indexer_case(&r, 7, 5, 128, true, true, DSRT_E4M3); /* exact: pins the official multiplication order */
    indexer_case(&r, 4, 3, 256, true, false, DSRT_E4M3);
    indexer_case(&r, 3, 2, 200, true, false, DSRT_E4M3);
    indexer_case(&r, 0, 2, 128, false, false, DSRT_BF16);
}
END_TEST

/* ---- top-k ---- */

/* Naive selection: repeatedly the best remaining entry (higher score, then lower position). */
static void ref_topk(const float *row, int64_t n, int64_t k, int32_t *out)
{
    bool *taken = calloc((size_t)n + 1, 1);
    for (int64_t i = 0; i < k; i++) {
        int64_t best = -1;
        for (int64_t j = 0; j < n; j++) {
            if (taken[j] || isnan(row[j]) || row[j] == -INFINITY) continue;
            if (best < 0 || row[j] > row[best]) best = j;
        }
        out[i] = (int32_t)best;
        if (best >= 0) taken[best] = true;
    }
    free(taken);
}

static int cmp_pos(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Checks both orders: by score against ref_topk, and by position against the same set sorted. */
static void topk_check(const char *what, const float *scores, int64_t T, int64_t L, const int32_t *lens, int64_t k)
{
    dsrt_tensor s = tnew_cols(DSRT_F32, 2, (int64_t[]){T, L}, 0, 3), o = tnew_cols(DSRT_I32, 2, (int64_t[]){T, k}, 1, 1),
                op = tnew_cols(DSRT_I32, 2, (int64_t[]){T, k}, 1, 1);
    tput(&s, scores);
    dsrt_tensor tl = T1(DSRT_I32, T);
    if (lens) tput_i32(&tl, lens);
    ck_ok(dsrt_topk(E.s, &s, lens ? &tl : NULL, (int)k, false, &o));
    ck_ok(dsrt_topk(E.s, &s, lens ? &tl : NULL, (int)k, true, &op));
    env_sync();
    int32_t *want = calloc((size_t)k, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        int64_t n = L;
        if (lens) n = lens[t] < 0 ? 0 : lens[t] > L ? L : lens[t];
        ref_topk(scores + t * L, n, k, want);
        for (int64_t i = 0; i < k; i++)
            ck_assert_msg(tget_i32(&o, t * k + i) == want[i], "%s: row %lld rank %lld: %d, expected %d", what, (long long)t,
                          (long long)i, tget_i32(&o, t * k + i), want[i]);
        int64_t nv = 0;
        while (nv < k && want[nv] >= 0) nv++;
        qsort(want, (size_t)nv, sizeof *want, cmp_pos);
        for (int64_t i = 0; i < k; i++)
            ck_assert_msg(tget_i32(&op, t * k + i) == want[i], "%s by position: row %lld slot %lld: %d, expected %d", what,
                          (long long)t, (long long)i, tget_i32(&op, t * k + i), want[i]);
    }
    free(want);
}

START_TEST(test_topk)
{
    dsrt_rng r = {37};
    /* hand-made rows */
    const float row1[10] = {1, 5, NAN, 5, -INFINITY, 7, 5, INFINITY, -2, 7};
    topk_check("topk ties/nan/inf", row1, 1, 10, NULL, 6); /* 7 (inf), 5, 9, 1, 3, 6 */
    int32_t got[6];
    dsrt_tensor s = T2(DSRT_F32, 1, 10), o = T2(DSRT_I32, 1, 6);
    tput(&s, row1);
    ck_ok(dsrt_topk(E.s, &s, NULL, 6, false, &o));
    env_sync();
    for (int i = 0; i < 6; i++) got[i] = tget_i32(&o, i);
    const int32_t expect1[6] = {7, 5, 9, 1, 3, 6};
    ck_assert_mem_eq(got, expect1, sizeof got);
    topk_check("topk k > valid entries", row1, 1, 10, NULL, 12); /* NaN and -inf never chosen: -1s */
    const float allbad[4] = {NAN, -INFINITY, NAN, -INFINITY};
    topk_check("topk nothing valid", allbad, 1, 4, NULL, 3);
    const float eq[6] = {0, 0, 0, 0, 0, 0};
    topk_check("topk all equal", eq, 1, 6, NULL, 4);
    /* lengths: entries at j >= lengths[t] are ignored (0, negative, past L) */
    float *many = falloc(5 * 40);
    for (int i = 0; i < 200; i++) many[i] = (float)rand_int(&r, -5, 5); /* many ties */
    const int32_t lens[5] = {40, 0, 7, -3, 100};
    topk_check("topk lengths", many, 5, 40, lens, 9);
    topk_check("topk no lengths", many, 5, 40, NULL, 40);
    /* larger random rows, some -inf (masked) entries */
    const int64_t T = 9, L = 300;
    float *big = falloc(T * L);
    for (int64_t i = 0; i < T * L; i++) big[i] = rand_int(&r, 0, 9) == 0 ? -INFINITY : dsrt_rng_normal(&r);
    topk_check("topk random", big, T, L, NULL, 17);
    topk_check("topk k = 1", big, T, L, NULL, 1);
    topk_check("topk k > L", big, 2, L, NULL, 301);
    topk_check("topk T = 0", big, 0, L, NULL, 4);
    free(many);
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = ops_suite("cpu_ops_attention");
    TCase *tc = ops_tcase(s, "mla");
    tcase_add_test(tc, test_mla_prefill);
    tcase_add_test(tc, test_mla_prefill_dense_equals_dsa);
    tcase_add_test(tc, test_mla_decode_plain);
    tcase_add_test(tc, test_mla_decode_fp8);
    tcase_add_test(tc, test_mla_decode_cache_written_by_op);
    tcase_add_test(tc, test_paged_positions_without_rows);
    tc = ops_tcase(s, "indexer");
    tcase_add_test(tc, test_indexer_scores);
    tcase_add_test(tc, test_topk);
    return dsrt_run_suite(s);
}
