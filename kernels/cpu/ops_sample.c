/* CPU reference: token sampling. The rule lives in core/src/sampler.c (one definition for the op and for
 * host-side generation). */
#include <stdlib.h>

#include "cpu/cpu_ops.h"
#include "dsrt/sampler.h"

static void sample_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *lg = &op->in[0], *u = &op->in[1], *out = &op->out[0];
    int64_t V = lg->shape[1];
    dsrt_sampling p = {op->p.temperature, op->p.top_k, op->p.top_p, op->p.min_p};
    void *scratch = malloc(dsrt_sample_scratch_bytes(V));
    if (!scratch) {
        atomic_store(&job->oom, 1);
        return;
    }
    for (int64_t r = b; r < e; r++) {
        const float *row = (const float *)dsrt_cpu_base(lg) + r * lg->stride[0];
        float ur = ((const float *)dsrt_cpu_base(u))[r * u->stride[0]];
        ((int32_t *)dsrt_cpu_base(out))[r * out->stride[0]] = dsrt_sample_row(row, V, &p, ur, scratch);
    }
    free(scratch);
}

DSRT_CPU_OP(sample)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 1, sample_rows, &job);
    return dsrt_job_status(&job);
}
