/* CPU reference: lightning-indexer scores over the paged key cache, and top-k selection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_ops.h"

typedef struct {
    dsrt_cpu_job job;
    int64_t t, Hi, D, nb;
    int32_t len, seq;
    float *q;  /* [Hi][D] f32 (FP8: the e4m3 values, unscaled) */
    float *qs; /* [Hi][nb] FP8 q scales */
    float *w;  /* [Hi] weights (FP8, D == 128: w * qs * scale, the official fold) */
} idx_job;

static int64_t idx_slot(const dsrt_op *op, int32_t seq, int64_t p)
{
    const dsrt_tensor *bt = &op->in[3];
    int page = op->p.page_size;
    if (seq < 0 || seq >= bt->shape[0]) return -1;
    int64_t pi = p / page;
    if (pi >= bt->shape[1]) return -1;
    int32_t pg = dsrt_cpu_i32(bt, dsrt_cpu_at2(bt, seq, pi));
    if (pg < 0) return -1;
    int64_t slot = (int64_t)pg * page + p % page;
    return slot < op->in[2].shape[0] ? slot : -1;
}

static void score_keys(void *vctx, int64_t b, int64_t e, int th)
{
    idx_job *ij = vctx;
    const dsrt_op *op = ij->job.op;
    const dsrt_tensor *kc = &op->in[2], *out = &op->out[0];
    bool fp8 = op->p.format == DSRT_CACHE_FP8;
    float *k = dsrt_job_alloc(&ij->job, ij->D + ij->nb);
    if (!k) return;
    float *ks = k + ij->D;
    float *orow = (float *)dsrt_cpu_base(out) + ij->t * out->stride[0];
    for (int64_t j = b; j < e; j++) {
        int64_t slot = idx_slot(op, ij->seq, j);
        if (slot < 0) {
            orow[j] = -INFINITY; /* a position without a cached key cannot be chosen */
            continue;
        }
        if (fp8) {
            const uint8_t *row = (const uint8_t *)dsrt_cpu_base(kc) + slot * kc->stride[0];
            for (int64_t i = 0; i < ij->D; i++) k[i] = dsrt_e4m3_values[row[i]];
            memcpy(ks, row + ij->D, sizeof(float) * (size_t)ij->nb);
        } else {
            dsrt_cpu_load_row(kc, slot * kc->stride[0], ij->D, k);
        }
        float score = 0;
        if (fp8 && ij->D == 128) {
            /* Official order: sum_h relu(q8.k8) * (w*qs*scale), then times the key scale. */
            for (int64_t h = 0; h < ij->Hi; h++) {
                float d = dsrt_cpu_dot(ij->q + h * ij->D, k, ij->D);
                score += (d > 0 ? d : 0) * ij->w[h];
            }
            score *= ks[0];
        } else if (fp8) {
            for (int64_t h = 0; h < ij->Hi; h++) {
                float d = 0;
                for (int64_t bl = 0; bl < ij->nb; bl++) {
                    int64_t k0 = bl * 128, n = ij->D - k0 < 128 ? ij->D - k0 : 128;
                    d += ij->qs[h * ij->nb + bl] * ks[bl] * dsrt_cpu_dot(ij->q + h * ij->D + k0, k + k0, n);
                }
                score += (d > 0 ? d : 0) * ij->w[h];
            }
        } else {
            for (int64_t h = 0; h < ij->Hi; h++) {
                float d = dsrt_cpu_dot(ij->q + h * ij->D, k, ij->D);
                score += (d > 0 ? d : 0) * ij->w[h];
            }
        }
        orow[j] = score;
    }
    free(k);
}

DSRT_CPU_OP(indexer_scores)
{
    const dsrt_tensor *q = &op->in[0], *w = &op->in[1], *row_seq = &op->in[4], *kv_len = &op->in[5], *out = &op->out[0];
    idx_job ij;
    dsrt_cpu_job_init(&ij.job, op);
    int64_t T = q->shape[0], L = out->shape[1];
    ij.Hi = q->shape[1];
    ij.D = q->shape[2];
    ij.nb = (ij.D + 127) / 128;
    bool fp8 = op->p.format == DSRT_CACHE_FP8;
    ij.q = malloc(sizeof(float) * (size_t)(ij.Hi * ij.D));
    ij.qs = malloc(sizeof(float) * (size_t)(ij.Hi * ij.nb));
    ij.w = malloc(sizeof(float) * (size_t)ij.Hi);
    if (!ij.q || !ij.qs || !ij.w) {
        free(ij.q);
        free(ij.qs);
        free(ij.w);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu indexer_scores: out of memory");
    }
    for (int64_t t = 0; t < T; t++) {
        ij.t = t;
        ij.seq = dsrt_cpu_i32(row_seq, t * row_seq->stride[0]);
        int32_t len = dsrt_cpu_i32(kv_len, t * kv_len->stride[0]);
        ij.len = len < 0 ? 0 : (len > L ? (int32_t)L : len);
        for (int64_t h = 0; h < ij.Hi; h++) {
            dsrt_cpu_load_row(q, dsrt_cpu_at3(q, t, h, 0), ij.D, ij.q + h * ij.D);
            float wh = dsrt_cpu_ld(dsrt_cpu_base(w), DSRT_F32, dsrt_cpu_at2(w, t, h));
            if (fp8) {
                for (int64_t bl = 0; bl < ij.nb; bl++) ij.qs[h * ij.nb + bl] = dsrt_cpu_block_scale(q, t, h, bl * 128);
                ij.w[h] = ij.D == 128 ? wh * ij.qs[h * ij.nb] * op->p.scale : wh * op->p.scale;
            } else {
                ij.w[h] = wh * op->p.scale;
            }
        }
        dsrt_pool_run(pool, ij.len, 256, score_keys, &ij);
        float *orow = (float *)dsrt_cpu_base(out) + t * out->stride[0];
        for (int64_t j = ij.len; j < L; j++) orow[j] = -INFINITY;
    }
    free(ij.q);
    free(ij.qs);
    free(ij.w);
    return dsrt_job_status(&ij.job);
}

/* ---- top-k ---- */

/* a ranks before b: higher score, ties to the lower position. */
static inline bool ranks_before(float sa, int32_t pa, float sb, int32_t pb) { return sa > sb || (sa == sb && pa < pb); }

/* Min-heap by rank (the worst kept entry on top). */
static void heap_sift_down(float *s, int32_t *p, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_before(s[w], p[w], s[l], p[l])) w = l;
        if (r < n && ranks_before(s[w], p[w], s[r], p[r])) w = r;
        if (w == i) return;
        float ts = s[i];
        s[i] = s[w];
        s[w] = ts;
        int32_t tp = p[i];
        p[i] = p[w];
        p[w] = tp;
        i = w;
    }
}

static int cmp_pos(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void topk_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *sc = &op->in[0], *lens = &op->in[1], *out = &op->out[0];
    int64_t L = sc->shape[1], k = op->p.k;
    float *hs = dsrt_job_alloc(job, k);
    int32_t *hp = malloc(sizeof(int32_t) * (size_t)k);
    if (!hs || !hp) {
        atomic_store(&job->oom, 1);
        free(hs);
        free(hp);
        return;
    }
    for (int64_t t = b; t < e; t++) {
        const float *row = (const float *)dsrt_cpu_base(sc) + t * sc->stride[0];
        int64_t n = L;
        if (lens->buf) {
            int32_t l = dsrt_cpu_i32(lens, t * lens->stride[0]);
            n = l < 0 ? 0 : (l < L ? l : L);
        }
        int64_t size = 0;
        for (int64_t j = 0; j < n; j++) {
            float v = row[j];
            if (isnan(v) || v == -INFINITY) continue;
            if (size < k) {
                /* insert and sift up */
                int64_t i = size++;
                hs[i] = v;
                hp[i] = (int32_t)j;
                while (i > 0) {
                    int64_t par = (i - 1) / 2;
                    if (!ranks_before(hs[par], hp[par], hs[i], hp[i])) break;
                    float ts = hs[i];
                    hs[i] = hs[par];
                    hs[par] = ts;
                    int32_t tp = hp[i];
                    hp[i] = hp[par];
                    hp[par] = tp;
                    i = par;
                }
            } else if (ranks_before(v, (int32_t)j, hs[0], hp[0])) {
                hs[0] = v;
                hp[0] = (int32_t)j;
                heap_sift_down(hs, hp, size, 0);
            }
        }
        /* Pop worst-first into the back of the output: best first. */
        int32_t *o = (int32_t *)dsrt_cpu_base(out) + t * out->stride[0];
        for (int64_t j = size; j < k; j++) o[j] = -1;
        for (int64_t j = size - 1; j >= 0; j--) {
            o[j] = hp[0];
            hs[0] = hs[j];
            hp[0] = hp[j];
            heap_sift_down(hs, hp, j, 0);
        }
        if (op->p.by_position) qsort(o, (size_t)size, sizeof *o, cmp_pos);
    }
    free(hs);
    free(hp);
}

DSRT_CPU_OP(topk)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 1, topk_rows, &job);
    return dsrt_job_status(&job);
}
