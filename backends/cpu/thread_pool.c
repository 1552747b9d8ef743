#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

struct dsrt_pool {
    int n;                    /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t lock;     /* guards the job fields and generation */
    pthread_cond_t wake, done;
    pthread_mutex_t run_lock; /* one loop at a time */
    uint64_t generation;
    int busy;                 /* workers still inside the current job */
    int stop;
    /* current job */
    dsrt_pool_fn fn;
    void *ctx;
    int64_t n_items, chunk;
    atomic_llong next;
};

typedef struct {
    dsrt_pool *p;
    int index;
    int cpu; /* -1: not pinned */
} dsrt_worker_arg;

static void dsrt_pool_work(dsrt_pool *p, int thread)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n_items) break;
        int64_t e = b + p->chunk < p->n_items ? b + p->chunk : p->n_items;
        p->fn(p->ctx, b, e, thread);
    }
}

static void *dsrt_worker_main(void *argp)
{
    dsrt_worker_arg arg = *(dsrt_worker_arg *)argp;
    free(argp);
    dsrt_pool *p = arg.p;
#ifdef __linux__
    if (arg.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(arg.cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
#endif
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        dsrt_pool_work(p, arg.index);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

dsrt_status dsrt_pool_create(int threads, const int *cpus, int ncpus, dsrt_pool **out)
{
    if (threads < 1) threads = 1;
    dsrt_pool *p = calloc(1, sizeof *p);
    if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the CPU thread pool");
    p->n = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the CPU thread pool");
    }
    for (int i = 1; i < threads; i++) {
        dsrt_worker_arg *a = malloc(sizeof *a);
        if (!a) {
            p->n = i;
            break;
        }
        a->p = p;
        a->index = i;
        a->cpu = (cpus && ncpus > 0) ? cpus[i % ncpus] : -1;
        if (pthread_create(&p->threads[i], NULL, dsrt_worker_main, a) != 0) {
            free(a);
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    *out = p;
    return DSRT_OK;
}

void dsrt_pool_destroy(dsrt_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int dsrt_pool_size(const dsrt_pool *p) { return p->n; }

void dsrt_pool_run(dsrt_pool *p, int64_t n, int64_t grain, dsrt_pool_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* Small loops are not worth waking anyone. */
    if (p->n == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    int64_t chunk = (n + (int64_t)p->n * 4 - 1) / ((int64_t)p->n * 4);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    dsrt_pool_work(p, 0);
    pthread_mutex_lock(&p->lock);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
