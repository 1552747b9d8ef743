/* CPU reference: MoE routing (noaux_tc, group-limited), token dispatch by expert, weighted combine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_ops.h"

/* ---- gate ---- */
static inline float nan_low(float v) { return isnan(v) ? -INFINITY : v; }

static void gate_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_op_params *p = &op->p;
    const dsrt_tensor *lg = &op->in[0], *bias = &op->in[1], *ids = &op->out[0], *wt = &op->out[1];
    int64_t E = lg->shape[1], G = p->n_group, per = E / G, k = p->k;
    float *buf = dsrt_job_alloc(job, 3 * E + 2 * G);
    if (!buf) return;
    float *s = buf, *choice = buf + E, *taken = buf + 2 * E, *gs = buf + 3 * E, *gkept = buf + 3 * E + G;
    for (int64_t t = b; t < e; t++) {
        dsrt_cpu_load_row(lg, t * lg->stride[0], E, s);
        if (p->score_func == DSRT_SCORE_SOFTMAX) {
            float m = -INFINITY, sum = 0;
            for (int64_t i = 0; i < E; i++) m = s[i] > m ? s[i] : m;
            for (int64_t i = 0; i < E; i++) sum += (s[i] = expf(s[i] - m));
            for (int64_t i = 0; i < E; i++) s[i] /= sum;
        } else {
            for (int64_t i = 0; i < E; i++) s[i] = 1.0f / (1.0f + expf(-s[i]));
        }
        for (int64_t i = 0; i < E; i++) {
            float bi = bias->buf ? ((const float *)dsrt_cpu_base(bias))[i * bias->stride[0]] : 0.0f;
            choice[i] = nan_low(s[i] + bi);
            taken[i] = 0;
        }
        for (int64_t g = 0; g < G; g++) gkept[g] = 1;
        if (G > 1) {
            /* group score: the two largest biased scores (the largest without a bias) */
            for (int64_t g = 0; g < G; g++) {
                float a = -INFINITY, c = -INFINITY;
                for (int64_t i = g * per; i < (g + 1) * per; i++) {
                    if (choice[i] > a) {
                        c = a;
                        a = choice[i];
                    } else if (choice[i] > c) {
                        c = choice[i];
                    }
                }
                gs[g] = (bias->buf && per > 1) ? a + c : a;
                gkept[g] = 0;
            }
            for (int64_t n = 0; n < p->topk_group; n++) { /* best groups, ties to the lower group */
                int64_t best = -1;
                for (int64_t g = 0; g < G; g++)
                    if (!gkept[g] && (best < 0 || nan_low(gs[g]) > nan_low(gs[best]))) best = g;
                gkept[best] = 1;
            }
        }
        int32_t *io = (int32_t *)dsrt_cpu_base(ids) + t * ids->stride[0];
        float *wo = (float *)dsrt_cpu_base(wt) + t * wt->stride[0];
        float sum = 0;
        for (int64_t j = 0; j < k; j++) { /* best experts of kept groups, ties to the lower id */
            int64_t best = -1;
            for (int64_t i = 0; i < E; i++)
                if (!taken[i] && gkept[i / per] && (best < 0 || choice[i] > choice[best])) best = i;
            taken[best] = 1;
            io[j] = (int32_t)best;
            wo[j] = s[best];
            sum += s[best];
        }
        for (int64_t j = 0; j < k; j++) {
            if (p->norm_topk) wo[j] /= sum;
            wo[j] *= p->route_scale;
        }
    }
    free(buf);
}

DSRT_CPU_OP(moe_gate)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, gate_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- dispatch ---- */
typedef struct {
    const dsrt_op *op;
    const int32_t *row_token;
    int64_t rows;
} copy_ctx;

static void copy_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    copy_ctx *c = job->extra;
    const dsrt_tensor *x = &c->op->in[0], *xp = &c->op->out[0];
    int64_t H = x->shape[1];
    float *row = dsrt_job_alloc(job, H);
    if (!row) return;
    for (int64_t r = b; r < e; r++) {
        dsrt_cpu_load_row(x, c->row_token[r] * x->stride[0], H, row);
        dsrt_cpu_store_row(xp, r * xp->stride[0], H, row);
    }
    free(row);
}

DSRT_CPU_OP(moe_dispatch)
{
    const dsrt_tensor *ids = &op->in[1], *offs = &op->out[1], *rt = &op->out[2], *sr = &op->out[3];
    int64_t T = ids->shape[0], k = ids->shape[1], G = op->p.expert_count, e0 = op->p.expert_begin;
    int32_t *off = dsrt_cpu_base(offs), *row_token = dsrt_cpu_base(rt), *slot_row = dsrt_cpu_base(sr);
    int64_t *count = calloc((size_t)G + 1, sizeof *count);
    if (!count) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu moe_dispatch: out of memory");
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int64_t g = (int64_t)dsrt_cpu_i32(ids, dsrt_cpu_at2(ids, t, j)) - e0;
            if (g >= 0 && g < G) count[g]++;
        }
    int64_t acc = 0;
    for (int64_t g = 0; g < G; g++) {
        off[g * offs->stride[0]] = (int32_t)acc;
        int64_t c = count[g];
        count[g] = acc; /* becomes the fill cursor */
        acc += c;
    }
    off[G * offs->stride[0]] = (int32_t)acc;
    int64_t R = rt->shape[0];
    for (int64_t r = 0; r < R; r++) row_token[r * rt->stride[0]] = -1;
    for (int64_t t = 0; t < T; t++) /* token order within each expert */
        for (int64_t j = 0; j < k; j++) {
            int64_t g = (int64_t)dsrt_cpu_i32(ids, dsrt_cpu_at2(ids, t, j)) - e0;
            int32_t *slot = &slot_row[dsrt_cpu_at2(sr, t, j)];
            if (g < 0 || g >= G) {
                *slot = -1;
                continue;
            }
            int64_t r = count[g]++;
            *slot = (int32_t)r;
            row_token[r * rt->stride[0]] = (int32_t)t;
        }
    free(count);
    /* gather rows (row_token is contiguous by construction when its stride is 1) */
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(acc + 1));
    if (!tok) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu moe_dispatch: out of memory");
    for (int64_t r = 0; r < acc; r++) tok[r] = row_token[r * rt->stride[0]];
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    copy_ctx c = {op, tok, acc};
    job.extra = &c;
    dsrt_pool_run(pool, acc, 8, copy_rows, &job);
    free(tok);
    return dsrt_job_status(&job);
}

/* ---- combine ---- */
static void combine_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *yp = &op->in[0], *sr = &op->in[1], *ids = &op->in[2], *wt = &op->in[3], *sh = &op->in[4];
    const dsrt_tensor *y = &op->out[0];
    int64_t k = sr->shape[1], H = yp->shape[1], R = yp->shape[0];
    float *buf = dsrt_job_alloc(job, 2 * H);
    int64_t *order = malloc(sizeof(int64_t) * (size_t)k);
    if (!buf || !order) {
        atomic_store(&job->oom, 1);
        free(buf);
        free(order);
        return;
    }
    float *acc = buf, *row = buf + H;
    for (int64_t t = b; t < e; t++) {
        /* slots in ascending expert id (insertion sort: k is small) */
        for (int64_t j = 0; j < k; j++) {
            int64_t i = j;
            int32_t idj = dsrt_cpu_i32(ids, dsrt_cpu_at2(ids, t, j));
            while (i > 0 && dsrt_cpu_i32(ids, dsrt_cpu_at2(ids, t, order[i - 1])) > idj) {
                order[i] = order[i - 1];
                i--;
            }
            order[i] = j;
        }
        memset(acc, 0, sizeof(float) * (size_t)H);
        for (int64_t a = 0; a < k; a++) {
            int64_t j = order[a];
            int32_t r = dsrt_cpu_i32(sr, dsrt_cpu_at2(sr, t, j));
            if (r < 0 || r >= R) continue;
            float w = ((const float *)dsrt_cpu_base(wt))[dsrt_cpu_at2(wt, t, j)];
            dsrt_cpu_load_row(yp, r * yp->stride[0], H, row);
            for (int64_t i = 0; i < H; i++) acc[i] += row[i] * w;
        }
        if (sh->buf) {
            dsrt_cpu_load_row(sh, t * sh->stride[0], H, row);
            for (int64_t i = 0; i < H; i++) acc[i] += row[i];
        }
        dsrt_cpu_store_row(y, t * y->stride[0], H, acc);
    }
    free(buf);
    free(order);
}

DSRT_CPU_OP(moe_combine)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[1].shape[0], 2, combine_rows, &job);
    return dsrt_job_status(&job);
}
