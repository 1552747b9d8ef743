/* CPU reference: MLA attention in expanded (prefill) and absorbed (decode, paged cache) forms, with
 * DSA's selected positions. Work per query row is proportional to the positions it attends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_ops.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The positions row t attends, ascending, unique: [0, kv_len) or the valid entries of indices[t]. */
static int64_t attended_positions(const dsrt_tensor *kv_len, const dsrt_tensor *indices, int64_t t, int32_t *out,
                                  int64_t cap)
{
    int32_t len = dsrt_cpu_i32(kv_len, t * kv_len->stride[0]);
    if (len <= 0) return 0;
    if (!indices->buf) {
        int64_t n = len < cap ? len : cap;
        for (int64_t j = 0; j < n; j++) out[j] = (int32_t)j;
        return n;
    }
    int64_t k = indices->shape[1], n = 0;
    for (int64_t j = 0; j < k && n < cap; j++) {
        int32_t p = dsrt_cpu_i32(indices, dsrt_cpu_at2(indices, t, j));
        if (p >= 0 && p < len) out[n++] = p;
    }
    qsort(out, (size_t)n, sizeof *out, cmp_i32);
    int64_t u = 0;
    for (int64_t j = 0; j < n; j++)
        if (u == 0 || out[j] != out[u - 1]) out[u++] = out[j];
    return u;
}

/* Softmax over n scores in place; bf16 = round the probabilities like the official code. */
static void softmax(float *s, int64_t n, bool bf16)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
    float sum = 0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    for (int64_t j = 0; j < n; j++) {
        s[j] /= sum;
        if (bf16) s[j] = dsrt_round_bf16(s[j]);
    }
}

/* ---- expanded form ---- */
static void prefill_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *q = &op->in[0], *kn = &op->in[1], *kp = &op->in[2], *v = &op->in[3];
    const dsrt_tensor *kv_start = &op->in[4], *kv_len = &op->in[5], *idx = &op->in[6], *o = &op->out[0];
    int64_t Hh = q->shape[1], Dq = q->shape[2], Dn = kn->shape[2], Dr = kp->shape[1], Dv = v->shape[2], L = kn->shape[0];
    int64_t cap = idx->buf ? idx->shape[1] : L;
    bool bf16 = q->dtype == DSRT_BF16;
    /* kv holds a key row (Dq values) and later a value row (Dv values): sized for the wider. */
    int64_t Dkv = Dq > Dv ? Dq : Dv;
    float *buf = dsrt_job_alloc(job, Dq + Dkv + Dv + cap + 1);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    if (!buf || !pos) {
        atomic_store(&job->oom, 1);
        free(buf);
        free(pos);
        return;
    }
    float *qv = buf, *kv = buf + Dq, *acc = buf + Dq + Dkv, *sc = buf + Dq + Dkv + Dv;
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / Hh, h = it % Hh;
        int32_t base = dsrt_cpu_i32(kv_start, t * kv_start->stride[0]);
        int64_t n = attended_positions(kv_len, idx, t, pos, cap);
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) /* keys outside the tensor are skipped */
            if ((int64_t)base + pos[j] >= 0 && (int64_t)base + pos[j] < L) pos[m++] = pos[j];
        n = m;
        dsrt_cpu_load_row(q, dsrt_cpu_at3(q, t, h, 0), Dq, qv);
        for (int64_t j = 0; j < n; j++) {
            int64_t r = base + pos[j];
            dsrt_cpu_load_row(kn, dsrt_cpu_at3(kn, r, h, 0), Dn, kv);
            dsrt_cpu_load_row(kp, dsrt_cpu_at2(kp, r, 0), Dr, kv + Dn);
            float s = dsrt_cpu_dot(qv, kv, Dq);
            sc[j] = bf16 ? dsrt_round_bf16(dsrt_round_bf16(s) * op->p.scale) : s * op->p.scale;
        }
        memset(acc, 0, sizeof(float) * (size_t)Dv);
        if (n > 0) {
            softmax(sc, n, bf16);
            for (int64_t j = 0; j < n; j++) {
                dsrt_cpu_load_row(v, dsrt_cpu_at3(v, base + pos[j], h, 0), Dv, kv);
                dsrt_cpu_axpy(acc, sc[j], kv, Dv);
            }
        }
        dsrt_cpu_store_row(o, dsrt_cpu_at3(o, t, h, 0), Dv, acc);
    }
    free(buf);
    free(pos);
}

DSRT_CPU_OP(mla_prefill)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0] * op->in[0].shape[1], 1, prefill_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- absorbed form over the paged cache ---- */

/* Reads cached row `slot` as f32: [c (Dc) | k_pe (Dr)]. */
static void load_cache_row(const dsrt_tensor *cache, dsrt_cache_format fmt, int64_t slot, int64_t Dc, int64_t Dr,
                           float *out)
{
    if (fmt == DSRT_CACHE_PLAIN) {
        dsrt_cpu_load_row(cache, slot * cache->stride[0], Dc + Dr, out);
        return;
    }
    const uint8_t *row = (const uint8_t *)dsrt_cpu_base(cache) + slot * cache->stride[0];
    int64_t nb = (Dc + 127) / 128;
    for (int64_t i = 0; i < Dc; i++) {
        float s;
        memcpy(&s, row + Dc + 4 * (i / 128), sizeof s);
        out[i] = dsrt_e4m3_values[row[i]] * s;
    }
    const uint8_t *tail = row + Dc + 4 * nb;
    for (int64_t i = 0; i < Dr; i++) {
        uint16_t h;
        memcpy(&h, tail + 2 * i, sizeof h);
        out[Dc + i] = dsrt_bf16_to_f32(h);
    }
}

/* Slot of position p of sequence `seq`, or -1 when the block table or cache does not cover it. */
static int64_t slot_of(const dsrt_tensor *bt, int32_t seq, int32_t p, int page, int64_t S)
{
    if (seq < 0 || seq >= bt->shape[0] || p < 0) return -1;
    int64_t pi = p / page;
    if (pi >= bt->shape[1]) return -1;
    int32_t pg = dsrt_cpu_i32(bt, dsrt_cpu_at2(bt, seq, pi));
    if (pg < 0) return -1;
    int64_t slot = (int64_t)pg * page + p % page;
    return slot < S ? slot : -1;
}

/* Decode works query row by query row: the row's cached positions are gathered once (in parallel),
 * then the heads run in parallel over them. */
typedef struct {
    dsrt_cpu_job job;
    int64_t t, Hh, Dc, Dr, W, n;
    const int32_t *pos;
    float *rows; /* [n][W] */
    int64_t *slots;
} decode_job;

static void gather_rows(void *vctx, int64_t b, int64_t e, int th)
{
    decode_job *dj = vctx;
    const dsrt_op *op = dj->job.op;
    for (int64_t j = b; j < e; j++) {
        if (dj->slots[j] < 0) continue;
        load_cache_row(&op->in[2], op->p.format, dj->slots[j], dj->Dc, dj->Dr, dj->rows + j * dj->W);
    }
}

static void decode_heads(void *vctx, int64_t b, int64_t e, int th)
{
    decode_job *dj = vctx;
    dsrt_cpu_job *job = &dj->job;
    const dsrt_op *op = job->op;
    const dsrt_tensor *ql = &op->in[0], *qp = &op->in[1], *o = &op->out[0];
    bool bf16 = ql->dtype == DSRT_BF16;
    float *buf = dsrt_job_alloc(job, dj->W + dj->Dc + dj->n);
    if (!buf) return;
    float *qv = buf, *acc = buf + dj->W, *sc = buf + dj->W + dj->Dc;
    int64_t t = dj->t;
    for (int64_t h = b; h < e; h++) {
        dsrt_cpu_load_row(ql, dsrt_cpu_at3(ql, t, h, 0), dj->Dc, qv);
        dsrt_cpu_load_row(qp, dsrt_cpu_at3(qp, t, h, 0), dj->Dr, qv + dj->Dc);
        int64_t m = 0;
        for (int64_t j = 0; j < dj->n; j++) {
            if (dj->slots[j] < 0) continue;
            const float *r = dj->rows + j * dj->W;
            float a = dsrt_cpu_dot(qv, r, dj->Dc), p = dsrt_cpu_dot(qv + dj->Dc, r + dj->Dc, dj->Dr);
            sc[m++] = bf16 ? dsrt_round_bf16(dsrt_round_bf16(dsrt_round_bf16(a) + dsrt_round_bf16(p)) * op->p.scale)
                           : (a + p) * op->p.scale;
        }
        memset(acc, 0, sizeof(float) * (size_t)dj->Dc);
        if (m > 0) {
            softmax(sc, m, bf16);
            m = 0;
            for (int64_t j = 0; j < dj->n; j++)
                if (dj->slots[j] >= 0) dsrt_cpu_axpy(acc, sc[m++], dj->rows + j * dj->W, dj->Dc);
        }
        dsrt_cpu_store_row(o, dsrt_cpu_at3(o, t, h, 0), dj->Dc, acc);
    }
    free(buf);
}

DSRT_CPU_OP(mla_decode)
{
    const dsrt_tensor *ql = &op->in[0], *qp = &op->in[1], *cache = &op->in[2], *bt = &op->in[3];
    const dsrt_tensor *row_seq = &op->in[4], *kv_len = &op->in[5], *idx = &op->in[6];
    decode_job dj;
    dsrt_cpu_job_init(&dj.job, op);
    int64_t T = ql->shape[0];
    dj.Hh = ql->shape[1];
    dj.Dc = ql->shape[2];
    dj.Dr = qp->shape[2];
    dj.W = dj.Dc + dj.Dr;
    int64_t cap = 0;
    if (idx->buf) cap = idx->shape[1];
    else
        for (int64_t t = 0; t < T; t++) {
            int32_t l = dsrt_cpu_i32(kv_len, t * kv_len->stride[0]);
            if (l > cap) cap = l;
        }
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)(cap + 1));
    float *rows = malloc(sizeof(float) * (size_t)(cap * dj.W + 1));
    if (!pos || !slots || !rows) {
        free(pos);
        free(slots);
        free(rows);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu mla_decode: out of memory for %lld cached rows", (long long)cap);
    }
    dj.pos = pos;
    dj.slots = slots;
    dj.rows = rows;
    for (int64_t t = 0; t < T; t++) {
        int32_t seq = dsrt_cpu_i32(row_seq, t * row_seq->stride[0]);
        dj.t = t;
        dj.n = attended_positions(kv_len, idx, t, pos, cap);
        for (int64_t j = 0; j < dj.n; j++) slots[j] = slot_of(bt, seq, pos[j], op->p.page_size, cache->shape[0]);
        dsrt_pool_run(pool, dj.n, 64, gather_rows, &dj);
        dsrt_pool_run(pool, dj.Hh, 1, decode_heads, &dj);
    }
    free(pos);
    free(slots);
    free(rows);
    return dsrt_job_status(&dj.job);
}
