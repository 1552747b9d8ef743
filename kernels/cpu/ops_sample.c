/* CPU reference: token sampling (greedy, temperature, top-k, min-p, top-p) from given uniforms. */
#include <math.h>
#include <stdlib.h>

#include "cpu/cpu_ops.h"

typedef struct {
    float v;
    int32_t id;
} scored;

static int by_logit_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void sample_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_op_params *p = &op->p;
    const dsrt_tensor *lg = &op->in[0], *u = &op->in[1], *out = &op->out[0];
    int64_t V = lg->shape[1];
    scored *c = malloc(sizeof(scored) * (size_t)V);
    if (!c) {
        atomic_store(&job->oom, 1);
        return;
    }
    for (int64_t r = b; r < e; r++) {
        const float *row = (const float *)dsrt_cpu_base(lg) + r * lg->stride[0];
        int32_t *o = (int32_t *)dsrt_cpu_base(out) + r * out->stride[0];
        if (p->temperature <= 0) {
            int64_t best = 0;
            for (int64_t i = 1; i < V; i++)
                if (row[i] > row[best] || (isnan(row[best]) && !isnan(row[i]))) best = i;
            *o = (int32_t)best;
            continue;
        }
        for (int64_t i = 0; i < V; i++) {
            c[i].v = isnan(row[i]) ? -INFINITY : row[i];
            c[i].id = (int32_t)i;
        }
        qsort(c, (size_t)V, sizeof *c, by_logit_desc);
        int64_t n = V;
        if (p->top_k > 0 && p->top_k < n) n = p->top_k;
        /* probabilities of the kept prefix, relative to the best (softmax over all V has the same ratios) */
        double total = 0;
        for (int64_t i = 0; i < V; i++) total += exp(((double)c[i].v - c[0].v) / p->temperature);
        double *pr = malloc(sizeof(double) * (size_t)n);
        if (!pr) {
            atomic_store(&job->oom, 1);
            break;
        }
        for (int64_t i = 0; i < n; i++) pr[i] = exp(((double)c[i].v - c[0].v) / p->temperature) / total;
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
        double target = (double)((const float *)dsrt_cpu_base(u))[r * u->stride[0]] * kept, cum = 0;
        int32_t pick = c[n - 1].id;
        for (int64_t i = 0; i < n; i++) {
            cum += pr[i];
            if (cum > target) {
                pick = c[i].id;
                break;
            }
        }
        *o = pick;
        free(pr);
    }
    free(c);
}

DSRT_CPU_OP(sample)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 1, sample_rows, &job);
    return dsrt_job_status(&job);
}
