/* Building the kernels: the embedded OpenCL C source is compiled at device open with options derived
 * from the device's capabilities. Compiling takes seconds on some drivers, so the program binary is
 * kept on disk, keyed by device name, driver version, source and options:
 *     $DSRT_OPENCL_CACHE, else $XDG_CACHE_HOME/dsrt/opencl, else ~/.cache/dsrt/opencl
 * (DSRT_OPENCL_CACHE=off disables it). A cache file that is unreadable, stale or rejected by the driver
 * is ignored and rewritten; failing to write one is never an error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ocl_internal.h"

extern const char dsrt_opencl_source[];
extern const size_t dsrt_opencl_source_len;

#define DSRT_CACHE_MAGIC "DSRTCLB1"

uint64_t dsrt_ocl_hash(const void *data, size_t n, uint64_t h)
{
    /* FNV-1a, 64 bit: a cache key, not a security boundary. */
    const unsigned char *p = data;
    if (!h) h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static double dsrt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dsrt_status dsrt_ocl_build_error(dsrt_ocl_device *d, cl_program prog, cl_int err, const char *what)
{
    size_t n = 0;
    clGetProgramBuildInfo(prog, d->info->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = malloc(n + 1);
    if (log) {
        log[0] = 0;
        if (n) clGetProgramBuildInfo(prog, d->info->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
        log[n] = 0;
    }
    /* Keep the message readable: the first lines of the log name the first errors. */
    const size_t keep = 4000;
    if (log && strlen(log) > keep) strcpy(log + keep - 4, "...");
    dsrt_status st = dsrt_error(DSRT_CODE_DEVICE, "opencl: %s for '%s' failed (%s, %d); build log:\n%s", what,
                                d->info->caps.name, dsrt_ocl_error_name(err), (int)err,
                                log && log[0] ? log : "(the driver gave no log)");
    free(log);
    return st;
}

dsrt_status dsrt_ocl_build_source(dsrt_ocl_device *d, const char *source, const char *options, cl_program *out)
{
    cl_int err;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(d->ctx, 1, &source, &len, &err);
    if (!prog) return dsrt_ocl_fail(err, "creating a program for '%s'", d->info->caps.name);
    err = clBuildProgram(prog, 1, &d->info->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        dsrt_status st = dsrt_ocl_build_error(d, prog, err, "building the dsrt OpenCL kernels");
        clReleaseProgram(prog);
        return st;
    }
    *out = prog;
    return DSRT_OK;
}

static int dsrt_mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static bool dsrt_cache_dir(char *out, size_t len)
{
    const char *env = getenv("DSRT_OPENCL_CACHE");
    if (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)) return false;
    if (env && *env) snprintf(out, len, "%s", env);
    else if (getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME"))
        snprintf(out, len, "%s/dsrt/opencl", getenv("XDG_CACHE_HOME"));
    else if (getenv("HOME") && *getenv("HOME"))
        snprintf(out, len, "%s/.cache/dsrt/opencl", getenv("HOME"));
    else
        return false;
    return true;
}

/* The identity of a build: what must match for a cached binary to be reused. */
static void dsrt_cache_identity(const dsrt_ocl_device *d, const char *options, char *out, size_t len)
{
    snprintf(out, len, "%s|%s|%s|%s|%s", d->info->caps.name, d->info->caps.driver, d->info->device_version,
             d->info->platform_version, options);
}

static cl_program dsrt_cache_load(dsrt_ocl_device *d, const char *path, const char *identity, uint64_t key,
                                  const char *options)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cl_program prog = NULL;
    char magic[8];
    uint64_t fkey = 0, size = 0;
    uint32_t idlen = 0;
    char *id = NULL;
    unsigned char *bin = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, DSRT_CACHE_MAGIC, 8) != 0) goto done;
    if (fread(&fkey, sizeof fkey, 1, f) != 1 || fkey != key) goto done;
    if (fread(&idlen, sizeof idlen, 1, f) != 1 || idlen != strlen(identity)) goto done;
    id = malloc(idlen + 1);
    if (!id || fread(id, 1, idlen, f) != idlen) goto done;
    id[idlen] = 0;
    if (strcmp(id, identity) != 0) goto done; /* a hash collision: treat as a miss */
    if (fread(&size, sizeof size, 1, f) != 1 || size == 0 || size > (1ull << 31)) goto done;
    bin = malloc((size_t)size);
    if (!bin || fread(bin, 1, (size_t)size, f) != size) goto done;
    cl_int err, bst = CL_SUCCESS;
    size_t sz = (size_t)size;
    const unsigned char *bins[1] = {bin};
    prog = clCreateProgramWithBinary(d->ctx, 1, &d->info->device, &sz, bins, &bst, &err);
    if (!prog || bst != CL_SUCCESS) {
        if (prog) clReleaseProgram(prog);
        prog = NULL;
        goto done;
    }
    /* the source build's options again: a driver may finish compiling a binary at this point */
    if (clBuildProgram(prog, 1, &d->info->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        prog = NULL;
    }
done:
    free(id);
    free(bin);
    fclose(f);
    return prog;
}

static void dsrt_cache_store(dsrt_ocl_device *d, cl_program prog, const char *dir, const char *path,
                             const char *identity, uint64_t key)
{
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0) return;
    unsigned char *bin = malloc(size);
    if (!bin) return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS || dsrt_mkdirs(dir) != 0) {
        free(bin);
        return;
    }
    /* Write to a private name, then rename: concurrent processes never see a partial file. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f) {
        uint32_t idlen = (uint32_t)strlen(identity);
        uint64_t sz = size;
        bool ok = fwrite(DSRT_CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&key, sizeof key, 1, f) == 1 &&
                  fwrite(&idlen, sizeof idlen, 1, f) == 1 && fwrite(identity, 1, idlen, f) == idlen &&
                  fwrite(&sz, sizeof sz, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
        ok = (fclose(f) == 0) && ok;
        if (ok) ok = rename(tmp, path) == 0;
        if (!ok) remove(tmp);
    }
    free(bin);
}

static void dsrt_ocl_options(const dsrt_ocl_device *d, char *out, size_t len)
{
    const dsrt_ocl_config *c = &d->cfg;
    const char *extra = getenv("DSRT_OPENCL_BUILD_OPTIONS");
    snprintf(out, len, "-cl-std=CL1.2 -DDSRT_WG=%d -DDSRT_GEMV_ROWS=%d%s%s %s", c->wg, c->gemv_rows,
             d->info->fp64 ? " -DDSRT_HAS_FP64=1" : "",
             /* act_quant divides by non-power-of-two scales: match the CPU's correctly rounded division */
             d->info->exact_div ? " -cl-fp32-correctly-rounded-divide-sqrt" : "", extra ? extra : "");
}

dsrt_status dsrt_ocl_build_program(dsrt_ocl_device *d)
{
    char options[1024], identity[2048], dir[900];
    dsrt_ocl_options(d, options, sizeof options);
    dsrt_cache_identity(d, options, identity, sizeof identity);
    uint64_t key = dsrt_ocl_hash(dsrt_opencl_source, dsrt_opencl_source_len, 0);
    key = dsrt_ocl_hash(identity, strlen(identity), key);
    double t0 = dsrt_now();
    d->cache_path[0] = 0;
    bool cache = dsrt_cache_dir(dir, sizeof dir);
    if (cache) {
        snprintf(d->cache_path, sizeof d->cache_path, "%s/%016llx.clbin", dir, (unsigned long long)key);
        d->program = dsrt_cache_load(d, d->cache_path, identity, key, options);
    }
    d->from_cache = d->program != NULL;
    if (!d->program) {
        DSRT_TRY(dsrt_ocl_build_source(d, dsrt_opencl_source, options, &d->program));
        if (cache) dsrt_cache_store(d, d->program, dir, d->cache_path, identity, key);
    }
    /* Every kernel the host calls must exist. Launch sizes shrink to what every kernel accepts (a
     * register-heavy kernel may allow fewer work items than the device maximum); the tiled GEMM needs
     * 16x16 and is skipped (GEMV instead) where it cannot have it. */
    size_t least = (size_t)d->cfg.wg;
    d->cfg.tiled = true;
    for (int i = 0; i < DSRT_OCL_K_COUNT; i++) {
        cl_int err;
        cl_kernel k = clCreateKernel(d->program, dsrt_ocl_kernel_names[i], &err);
        if (!k) {
            dsrt_status st = dsrt_ocl_fail(err, "kernel '%s' is missing from the built program for '%s'",
                                           dsrt_ocl_kernel_names[i], d->info->caps.name);
            clReleaseProgram(d->program);
            d->program = NULL;
            return st;
        }
        size_t wg = 0;
        clGetKernelWorkGroupInfo(k, d->info->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
        clReleaseKernel(k);
        if (!wg) continue;
        if (i == DSRT_OCL_K_gemm_tiled) d->cfg.tiled = wg >= 256;
        else if (wg < least) least = wg;
    }
    while ((size_t)d->cfg.wg > least && d->cfg.wg > 1) d->cfg.wg /= 2; /* stays a power of two */
    d->build_seconds = dsrt_now() - t0;
    if (getenv("DSRT_OPENCL_VERBOSE"))
        fprintf(stderr, "dsrt opencl: program for '%s' ready in %.3f s (%s)\n", d->info->caps.name, d->build_seconds,
                d->from_cache ? "from the binary cache" : "compiled from source");
    return DSRT_OK;
}
