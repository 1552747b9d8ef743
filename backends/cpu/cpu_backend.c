/* The CPU backend: one device (all cores the process may use, all NUMA nodes), host memory, a persistent
 * thread pool. It is the reference every other backend is checked against. */
#include "cpu_backend.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef DSRT_HAVE_NUMA
#include <numa.h>
#endif

typedef struct dsrt_cpu_backend {
    dsrt_device_caps caps;
    int cpus[1024]; /* the CPUs the process may run on, NUMA node by node */
    int ncpus;
    int ndevices;   /* DSRT_CPU_DEVICES: the cores split into this many devices (default 1) */
} dsrt_cpu_backend;

static int dsrt_env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    return (*end || n < 0 || n > 1 << 16) ? dflt : (int)n;
}

static void dsrt_cpu_model_name(char *out, size_t len)
{
    snprintf(out, len, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(out, len, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

static bool dsrt_cpu_flag(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        size_t n = strlen(flag);
        for (char *p = strstr(line, flag); p; p = strstr(p + 1, flag))
            if ((p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0)) found = true;
        break;
    }
    fclose(f);
    return found;
}

static dsrt_status dsrt_cpu_init(void **bctx)
{
    dsrt_cpu_backend *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory starting the CPU backend");
    dsrt_device_caps *c = &b->caps;
    dsrt_cpu_model_name(c->name, sizeof c->name);
    snprintf(c->vendor, sizeof c->vendor, "host");
    snprintf(c->driver, sizeof c->driver, "dsrt cpu");
    c->type = DSRT_DEVICE_CPU;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
    c->memory_bytes = (pages > 0 && psize > 0) ? (uint64_t)pages * (uint64_t)psize : 0;
    c->max_alloc_bytes = c->memory_bytes;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int i = 0; i < CPU_SETSIZE && b->ncpus < 1024; i++)
            if (CPU_ISSET(i, &set)) b->cpus[b->ncpus++] = i;
    }
#endif
    if (b->ncpus == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        b->ncpus = n > 0 ? (int)(n < 1024 ? n : 1024) : 1;
        for (int i = 0; i < b->ncpus; i++) b->cpus[i] = i;
    }
    c->compute_units = b->ncpus;
    c->max_work_group = 1;
    c->subgroup_size = dsrt_cpu_flag("avx512f") ? 16 : dsrt_cpu_flag("avx2") ? 8 : 4;
    c->local_mem_bytes = (uint64_t)(sysconf(_SC_LEVEL2_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL2_CACHE_SIZE) : 0);
    c->numa_node = -1;
    c->numa_nodes = 1;
#ifdef DSRT_HAVE_NUMA
    if (numa_available() >= 0) {
        c->numa_nodes = numa_num_configured_nodes();
        if (c->numa_nodes < 1) c->numa_nodes = 1;
        /* Order the CPUs node by node so pinned workers fill one node before the next. */
        int sorted[1024], n = 0;
        for (int node = 0; node < c->numa_nodes; node++)
            for (int i = 0; i < b->ncpus; i++)
                if (numa_node_of_cpu(b->cpus[i]) == node) sorted[n++] = b->cpus[i];
        if (n == b->ncpus) memcpy(b->cpus, sorted, sizeof(int) * (size_t)n);
    }
#endif
    c->native_fp8 = false;
    c->native_bf16 = dsrt_cpu_flag("avx512_bf16") || dsrt_cpu_flag("amx_bf16");
    c->native_fp16 = dsrt_cpu_flag("avx512_fp16");
    c->unified_memory = true;
    /* Several CPU devices (each with its own share of the cores) let placements split a model across
     * "devices" on one host: NUMA nodes, or tests of multi-device placement. */
    b->ndevices = dsrt_env_int("DSRT_CPU_DEVICES", 1);
    if (b->ndevices < 1) b->ndevices = 1;
    if (b->ndevices > 64) b->ndevices = 64;
    *bctx = b;
    return DSRT_OK;
}

static void dsrt_cpu_deinit(void *bctx) { free(bctx); }

static dsrt_status dsrt_cpu_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    *count = ((dsrt_cpu_backend *)bctx)->ndevices;
    return DSRT_OK;
}

/* Device i owns the i-th share of the CPU list (at least one core). */
static void dsrt_cpu_share(const dsrt_cpu_backend *b, int index, int *first, int *count)
{
    int n = b->ncpus / b->ndevices;
    if (n < 1) n = 1;
    *first = (index * n) % b->ncpus;
    *count = index == b->ndevices - 1 && b->ndevices * n <= b->ncpus ? b->ncpus - *first : n;
}

static dsrt_status dsrt_cpu_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    dsrt_cpu_backend *b = bctx;
    *caps = b->caps;
    int first, count;
    dsrt_cpu_share(b, index, &first, &count);
    caps->compute_units = count;
    return DSRT_OK;
}

static dsrt_status dsrt_cpu_device_open(void *bctx, int index, void **dctx)
{
    dsrt_cpu_backend *b = bctx;
    dsrt_cpu_device *d = calloc(1, sizeof *d);
    if (!d) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory opening the CPU device");
    int first, count;
    dsrt_cpu_share(b, index, &first, &count);
    d->threads = dsrt_env_int("DSRT_CPU_THREADS", count);
    if (d->threads < 1) d->threads = 1;
    d->numa_nodes = b->caps.numa_nodes;
    d->inline_streams = dsrt_env_int("DSRT_CPU_SYNC", 0) != 0;
    /* Pin workers only when there are several NUMA nodes: there placement matters; elsewhere the
     * scheduler does as well and pinning fights other processes. */
    bool pin = d->numa_nodes > 1;
    dsrt_status st = dsrt_pool_create(d->threads, pin ? b->cpus + first : NULL, pin ? count : 0, &d->pool);
    if (st) {
        free(d);
        return st;
    }
    *dctx = d;
    return DSRT_OK;
}

static void dsrt_cpu_device_close(void *dctx)
{
    dsrt_cpu_device *d = dctx;
    dsrt_pool_destroy(d->pool);
    free(d);
}

static dsrt_status dsrt_cpu_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    dsrt_cpu_device *d = dctx;
    dsrt_cpu_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a buffer record");
    b->size = bytes;
    b->owned = true;
    atomic_init(&b->refs, 1);
#ifdef DSRT_HAVE_NUMA
    /* Large buffers (weights, caches) spread over all nodes so every node's threads find part of
     * the data near them. */
    if (d->numa_nodes > 1 && bytes >= (64u << 20)) {
        b->ptr = numa_alloc_interleaved(bytes);
        b->numa_alloc = b->ptr != NULL;
    }
#else
    (void)d;
#endif
    if (!b->ptr) {
        size_t rounded = (bytes + 63) & ~(size_t)63;
        b->ptr = aligned_alloc(64, rounded);
    }
    if (!b->ptr) {
        free(b);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu: cannot allocate %zu bytes of host memory", bytes);
    }
    *handle = b;
    *host_ptr = b->ptr;
    return DSRT_OK;
}

void dsrt_cpu_buffer_ref(dsrt_cpu_buffer *b) { atomic_fetch_add(&b->refs, 1); }

void dsrt_cpu_buffer_unref(dsrt_cpu_buffer *b)
{
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    if (b->owned) {
#ifdef DSRT_HAVE_NUMA
        if (b->numa_alloc) numa_free(b->ptr, b->size);
        else
#endif
            free(b->ptr);
    }
    free(b);
}

static void dsrt_cpu_buffer_free(void *dctx, void *handle) { dsrt_cpu_buffer_unref(handle); }

static dsrt_status dsrt_cpu_buffer_wrap_host(void *dctx, void *ptr, size_t bytes, void **handle)
{
    dsrt_cpu_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a buffer record");
    b->ptr = ptr;
    b->size = bytes;
    atomic_init(&b->refs, 1);
    *handle = b;
    return DSRT_OK;
}

static bool dsrt_cpu_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    return dsrt_cpu_supports_op(op, why, why_len);
}

static const dsrt_backend_vtable dsrt_cpu_vtable = {
    .abi_version = DSRT_BACKEND_ABI_VERSION,
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = "cpu",
    .init = dsrt_cpu_init,
    .deinit = dsrt_cpu_deinit,
    .device_count = dsrt_cpu_device_count,
    .device_caps = dsrt_cpu_device_caps,
    .device_open = dsrt_cpu_device_open,
    .device_close = dsrt_cpu_device_close,
    .buffer_alloc = dsrt_cpu_buffer_alloc,
    .buffer_free = dsrt_cpu_buffer_free,
    .buffer_wrap_host = dsrt_cpu_buffer_wrap_host,
    .stream_create = dsrt_cpu_stream_create,
    .stream_destroy = dsrt_cpu_stream_destroy,
    .stream_sync = dsrt_cpu_stream_sync,
    .write = dsrt_cpu_write,
    .read = dsrt_cpu_read,
    .copy = dsrt_cpu_copy,
    .fill = dsrt_cpu_fill,
    .event_create = dsrt_cpu_event_create,
    .event_destroy = dsrt_cpu_event_destroy,
    .event_record = dsrt_cpu_event_record,
    .stream_wait_event = dsrt_cpu_stream_wait_event,
    .event_sync = dsrt_cpu_event_sync,
    .event_query = dsrt_cpu_event_query,
    .supports_op = dsrt_cpu_supports,
    .enqueue_op = dsrt_cpu_enqueue_op,
    .begin_capture = dsrt_cpu_begin_capture,
    .end_capture = dsrt_cpu_end_capture,
    .graph_launch = dsrt_cpu_graph_launch,
    .graph_destroy = dsrt_cpu_graph_destroy,
};

const dsrt_backend_vtable *dsrt_cpu_backend_vtable(void) { return &dsrt_cpu_vtable; }
