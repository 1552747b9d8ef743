/* The CPU reference kernels: one entry per op, run on the backend's thread pool. */
#ifndef DSRT_CPU_OPS_H
#define DSRT_CPU_OPS_H

#include <stdatomic.h>
#include <stdlib.h>

#include "cpu/thread_pool.h"
#include "cpu_tensor.h"
#include "dsrt/ops.h"

/* State shared by the chunks of one op: the op, and failures seen in worker threads (scratch memory
 * that could not be had, bad data such as non-monotonic offsets). */
typedef struct dsrt_cpu_job {
    const dsrt_op *op;
    atomic_int oom;
    atomic_int bad_data;
    void *extra;
} dsrt_cpu_job;

static inline void dsrt_cpu_job_init(dsrt_cpu_job *j, const dsrt_op *op)
{
    j->op = op;
    atomic_init(&j->oom, 0);
    atomic_init(&j->bad_data, 0);
    j->extra = NULL;
}

/* Scratch floats for one chunk; NULL (and the job marked) when memory is short. Free with free(). */
static inline float *dsrt_job_alloc(dsrt_cpu_job *j, int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) atomic_store(&j->oom, 1);
    return p;
}

static inline dsrt_status dsrt_job_status(dsrt_cpu_job *j)
{
    if (atomic_load(&j->oom))
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu %s: out of host memory for scratch space",
                          dsrt_op_name(j->op->kind));
    return DSRT_OK;
}

#define DSRT_CPU_OP(name) dsrt_status dsrt_cpu_##name(dsrt_pool *pool, const dsrt_op *op)
DSRT_CPU_OP(convert);
DSRT_CPU_OP(embed);
DSRT_CPU_OP(rms_norm);
DSRT_CPU_OP(layer_norm);
DSRT_CPU_OP(rope);
DSRT_CPU_OP(linear);
DSRT_CPU_OP(linear_grouped);
DSRT_CPU_OP(head_linear);
DSRT_CPU_OP(swiglu);
DSRT_CPU_OP(add);
DSRT_CPU_OP(act_quant);
DSRT_CPU_OP(hadamard);
DSRT_CPU_OP(cache_write);
DSRT_CPU_OP(mla_prefill);
DSRT_CPU_OP(mla_decode);
DSRT_CPU_OP(indexer_scores);
DSRT_CPU_OP(topk);
DSRT_CPU_OP(moe_gate);
DSRT_CPU_OP(moe_dispatch);
DSRT_CPU_OP(moe_combine);
DSRT_CPU_OP(sample);

#endif
