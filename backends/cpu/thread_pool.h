/* A persistent pool of worker threads for data-parallel loops. One loop runs at a time (callers from
 * several streams take turns); the calling thread works too. */
#ifndef DSRT_CPU_THREAD_POOL_H
#define DSRT_CPU_THREAD_POOL_H

#include <stdint.h>

#include "dsrt/status.h"

typedef struct dsrt_pool dsrt_pool;

/* fn(ctx, begin, end, thread) handles items [begin, end); `thread` is in [0, dsrt_pool_size). */
typedef void (*dsrt_pool_fn)(void *ctx, int64_t begin, int64_t end, int thread);

/* Starts `threads` workers (>= 1, the caller counts as one). With cpus != NULL, worker i is pinned to
 * cpus[i % ncpus] (NUMA placement). */
dsrt_status dsrt_pool_create(int threads, const int *cpus, int ncpus, dsrt_pool **out);
void dsrt_pool_destroy(dsrt_pool *p);
int dsrt_pool_size(const dsrt_pool *p);
/* Runs fn over [0, n) in chunks of at least `grain` items and returns when all are done. */
void dsrt_pool_run(dsrt_pool *p, int64_t n, int64_t grain, dsrt_pool_fn fn, void *ctx);

#endif
