/* The CUDA backend: NVIDIA GPUs through the CUDA runtime; built a second time with DSRT_GPU_HIP as the
 * HIP backend: AMD GPUs through the HIP runtime (docs/hip.md). The code is the same; the runtime calls
 * go through gpu/gpu_runtime.h, and the few places where the vendors differ (capabilities, the reason
 * for having no device, the vendor libraries) are marked.
 *
 * Memory comes from the device's stream-ordered pool (MallocAsync pools, kept cached; plain Malloc
 * where the runtime has no pools, as ROCm 5 unless HIP_MEM_POOL_SUPPORT=1), streams
 * are non-blocking streams, graphs are stream captures instantiated as graph executables. Ops run the
 * kernels of kernels/gpu (and the vendor BLAS for dense GEMMs, cuda_linear.c). Every runtime call is
 * checked and every launch followed by a check of the last error; failures come back as statuses
 * naming the device and the call. A machine without a driver or device initializes fine and reports
 * zero devices with the reason. */

#include "cuda_backend.h"
#include "dsrt/buffer.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef DSRT_GPU_HIP
#include "hip_rocblas.h"
#endif

typedef struct dsrt_cuda_backend {
    int count;
    char why[200];
    dsrt_device_caps caps[DSRT_CUDA_MAX_DEVICES];
} dsrt_cuda_backend;

dsrt_status dsrt_cuda_check(gpuError_t e, const char *what)
{
    if (e == gpuSuccess) return DSRT_OK;
    gpuGetLastError(); /* clear non-sticky errors so later calls see their own */
    dsrt_code code = e == gpuErrorMemoryAllocation ? DSRT_CODE_RESOURCE_EXHAUSTED : DSRT_CODE_DEVICE;
    return dsrt_error(code, DSRT_GPU_RT_NAME ": %s failed: %s (%s)", what, gpuGetErrorString(e), gpuGetErrorName(e));
}

/* ---- capabilities ---- */

#ifndef DSRT_GPU_HIP
/* Dense tensor-core rates of known boards (datasheet figures, TFLOP/s): more faithful than clock
 * arithmetic because boost clocks differ from the sustained tensor clocks. */
static bool dsrt_cuda_known_peaks(const char *name, double *bf16, double *fp8)
{
    static const struct {
        const char *a, *b;
        double bf16, fp8;
    } known[] = {
        {"H100", "PCIe", 756.0, 1513.0}, {"H100", "NVL", 835.0, 1671.0}, {"H100", NULL, 989.4, 1978.9},
        {"H200", NULL, 989.4, 1978.9},   {"H800", NULL, 989.4, 1978.9},  {"H20", NULL, 148.0, 296.0},
        {"A100", NULL, 312.0, 0.0},      {"A800", NULL, 312.0, 0.0},     {"L40S", NULL, 362.0, 733.0},
        {"L4", NULL, 121.0, 242.5},      {"B200", NULL, 2250.0, 4500.0}, {"GB200", NULL, 2500.0, 5000.0},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(name, known[i].a) && (!known[i].b || strstr(name, known[i].b))) {
            *bf16 = known[i].bf16;
            *fp8 = known[i].fp8;
            return true;
        }
    return false;
}

/* Vendor, driver, number formats and peaks of an NVIDIA GPU. */
static void dsrt_cuda_vendor_caps(int i, const gpuDeviceProp *p, dsrt_device_caps *c)
{
    snprintf(c->vendor, sizeof c->vendor, "NVIDIA");
    int drv = 0, rt = 0;
    gpuDriverGetVersion(&drv);
    gpuRuntimeGetVersion(&rt);
    snprintf(c->driver, sizeof c->driver, "CUDA driver %d.%d, runtime %d.%d, sm_%d%d", drv / 1000, (drv % 1000) / 10,
             rt / 1000, (rt % 1000) / 10, p->major, p->minor);
    int cc = p->major * 10 + p->minor;
    c->native_fp8 = cc >= 89;
    c->native_bf16 = cc >= 80;
    c->native_fp16 = cc >= 53;
    int mem_khz = 0, clk_khz = 0;
    gpuDeviceGetAttribute(&mem_khz, gpuDevAttrMemoryClockRate, i);
    gpuDeviceGetAttribute(&clk_khz, gpuDevAttrClockRate, i);
    /* HBM and GDDR move data on both clock edges */
    c->peak_mem_gbs = 2.0 * (double)mem_khz * 1e3 * (double)p->memoryBusWidth / 8.0 / 1e9;
    double bf16 = 0, fp8 = 0;
    if (!dsrt_cuda_known_peaks(p->name, &bf16, &fp8)) {
        /* dense FLOP per clock per SM of the tensor cores, by architecture */
        double per_sm = cc >= 100 ? 8192 : cc >= 90 ? 4096 : cc == 89 ? 1024 : cc == 80 ? 2048 : cc >= 86 ? 512 : 0;
        double f8 = cc >= 100 ? 2 : (cc >= 89 ? 2 : 0);
        bf16 = per_sm * p->multiProcessorCount * clk_khz * 1e3 / 1e12;
        fp8 = bf16 * f8;
    }
    c->peak_tflops_bf16 = bf16;
    c->peak_tflops_fp8 = fp8;
}
#else
/* Datasheet figures of AMD Instinct boards (dense TFLOP/s, GB/s). ROCm reports the HBM3 clock of MI300
 * at a quarter of the data rate, so bandwidth from clocks would be half the real figure there. */
static bool dsrt_hip_known_board(const char *name, double *bf16, double *fp8, double *gbs)
{
    static const struct {
        const char *a;
        double bf16, fp8, gbs;
    } known[] = {
        {"MI325X", 1307.4, 2614.9, 6000.0}, {"MI300X", 1307.4, 2614.9, 5300.0}, {"MI300A", 980.6, 1961.2, 5300.0},
        {"MI250X", 383.0, 0.0, 3276.8},     {"MI250", 362.1, 0.0, 3276.8},      {"MI210", 181.0, 0.0, 1638.4},
        {"MI100", 92.3, 0.0, 1228.8},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(name, known[i].a)) {
            *bf16 = known[i].bf16;
            *fp8 = known[i].fp8;
            *gbs = known[i].gbs;
            return true;
        }
    return false;
}

/* Dense matrix-core FLOP per clock per compute unit (bf16, fp8) of an AMD ISA, from its gfx name. */
static void dsrt_hip_matrix_rates(const char *arch, double *bf16, double *fp8)
{
    *bf16 = *fp8 = 0;
    if (strncmp(arch, "gfx950", 6) == 0) *bf16 = 4096, *fp8 = 8192;                /* MI350 (CDNA4) */
    else if (strncmp(arch, "gfx94", 5) == 0) *bf16 = 2048, *fp8 = 4096;            /* MI300 (CDNA3) */
    else if (strncmp(arch, "gfx90a", 6) == 0) *bf16 = 1024;                        /* MI200 (CDNA2) */
    else if (strncmp(arch, "gfx908", 6) == 0) *bf16 = 512;                         /* MI100 (CDNA1) */
    else if (strncmp(arch, "gfx12", 5) == 0) *bf16 = 1024, *fp8 = 2048;            /* RDNA4 WMMA */
    else if (strncmp(arch, "gfx11", 5) == 0) *bf16 = 512;                          /* RDNA3 WMMA */
}

/* Vendor, driver, number formats and peaks of an AMD GPU. */
static void dsrt_cuda_vendor_caps(int i, const gpuDeviceProp *p, dsrt_device_caps *c)
{
    snprintf(c->vendor, sizeof c->vendor, "AMD");
    int drv = 0, rt = 0;
    gpuDriverGetVersion(&drv);
    gpuRuntimeGetVersion(&rt);
    /* HIP versions are major * 10^7 + minor * 10^5 + patch */
    snprintf(c->driver, sizeof c->driver, "HIP runtime %d.%d, driver %d.%d, %.24s", rt / 10000000, (rt / 100000) % 100,
             drv / 10000000, (drv / 100000) % 100, p->gcnArchName);
    double mbf16, mfp8;
    dsrt_hip_matrix_rates(p->gcnArchName, &mbf16, &mfp8);
    /* Native FP8 means the checkpoints' OCP e4m3: CDNA4 and RDNA4. MI300's matrix cores use the FNUZ
     * variant (other bias, no negative zero), which dsrt does not feed them. */
    c->native_fp8 = strncmp(p->gcnArchName, "gfx950", 6) == 0 || strncmp(p->gcnArchName, "gfx12", 5) == 0;
    c->native_bf16 = mbf16 > 0;
    c->native_fp16 = true;
    int mem_khz = 0, clk_khz = 0;
    gpuDeviceGetAttribute(&mem_khz, gpuDevAttrMemoryClockRate, i);
    gpuDeviceGetAttribute(&clk_khz, gpuDevAttrClockRate, i);
    double bf16 = 0, fp8 = 0, gbs = 0;
    if (!dsrt_hip_known_board(p->name, &bf16, &fp8, &gbs)) {
        gbs = 2.0 * (double)mem_khz * 1e3 * (double)p->memoryBusWidth / 8.0 / 1e9;
        bf16 = mbf16 * p->multiProcessorCount * clk_khz * 1e3 / 1e12;
        fp8 = mfp8 * p->multiProcessorCount * clk_khz * 1e3 / 1e12;
    }
    c->peak_mem_gbs = gbs;
    c->peak_tflops_bf16 = bf16;
    c->peak_tflops_fp8 = fp8;
}
#endif

static void dsrt_cuda_fill_caps(int i, const gpuDeviceProp *p, dsrt_device_caps *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%.127s", p->name);
    c->type = DSRT_DEVICE_GPU;
    c->memory_bytes = p->totalGlobalMem;
    c->max_alloc_bytes = p->totalGlobalMem;
    c->local_mem_bytes = (size_t)gpu_prop_smem_optin(p);
    c->compute_units = p->multiProcessorCount;
    c->max_work_group = p->maxThreadsPerBlock;
    c->subgroup_size = p->warpSize;
    c->numa_node = -1;
    char path[128];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%04x:%02x:%02x.0/numa_node", p->pciDomainID, p->pciBusID,
             p->pciDeviceID);
    FILE *f = fopen(path, "r");
    if (f) {
        int node;
        if (fscanf(f, "%d", &node) == 1 && node >= 0) c->numa_node = node;
        fclose(f);
    }
    c->unified_memory = false;
    c->concurrent_streams = true;
    dsrt_cuda_vendor_caps(i, p, c);
}

/* Why the runtime reports no device, in words a user can act on. */
static void dsrt_cuda_no_device_reason(gpuError_t e, char *why, size_t len)
{
#ifdef DSRT_GPU_HIP
    if (access("/dev/kfd", F_OK) != 0)
        snprintf(why, len, "no HIP device present (no AMD GPU driver: /dev/kfd is missing)");
    else if (access("/dev/kfd", R_OK | W_OK) != 0)
        snprintf(why, len,
                 "no HIP device present (no access to /dev/kfd: add the user to the render and video groups)");
    else if (e == hipErrorNoDevice)
        snprintf(why, len, "no HIP device present");
    else
        snprintf(why, len, "no HIP device present (%s)", gpuGetErrorString(e));
#else
    void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (e == cudaErrorInsufficientDriver && !drv) {
        snprintf(why, len, "no CUDA device present (no NVIDIA driver is installed)");
    } else if (e == cudaErrorInsufficientDriver) {
        int rt = 0;
        gpuRuntimeGetVersion(&rt);
        snprintf(why, len, "no CUDA device present (the NVIDIA driver is older than CUDA %d.%d)", rt / 1000,
                 (rt % 1000) / 10);
    } else {
        snprintf(why, len, "no CUDA device present (%s)", gpuGetErrorString(e));
    }
    if (drv) dlclose(drv);
#endif
}

static dsrt_status dsrt_cuda_init(void **bctx)
{
    dsrt_cuda_backend *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory starting the " DSRT_GPU_RT_TITLE " backend");
    int n = 0;
    gpuError_t e = gpuGetDeviceCount(&n);
    if (e != gpuSuccess) {
        gpuGetLastError();
        dsrt_cuda_no_device_reason(e, b->why, sizeof b->why);
        n = 0;
    } else if (n == 0) {
        snprintf(b->why, sizeof b->why, "no " DSRT_GPU_RT_TITLE " device present");
    }
    if (n > DSRT_CUDA_MAX_DEVICES) n = DSRT_CUDA_MAX_DEVICES;
    for (int i = 0; i < n; i++) {
        gpuDeviceProp p;
        e = gpuGetDeviceProperties(&p, i);
        if (e != gpuSuccess) {
            snprintf(b->why, sizeof b->why, DSRT_GPU_RT_TITLE " device %d cannot be queried (%s)", i,
                     gpuGetErrorString(e));
            n = i;
            break;
        }
        dsrt_cuda_fill_caps(i, &p, &b->caps[i]);
    }
    b->count = n;
    *bctx = b;
    return DSRT_OK;
}

static void dsrt_cuda_deinit(void *bctx) { free(bctx); }

static dsrt_status dsrt_cuda_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    dsrt_cuda_backend *b = bctx;
    *count = b->count;
    if (b->count == 0) snprintf(why, why_len, "%s", b->why);
    return DSRT_OK;
}

static dsrt_status dsrt_cuda_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    dsrt_cuda_backend *b = bctx;
    if (index < 0 || index >= b->count)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, DSRT_GPU_RT_NAME " device %d does not exist (%d found)", index, b->count);
    *caps = b->caps[index];
    return DSRT_OK;
}

/* ---- devices ---- */

/* The FP8 GEMM engine from DSRT_<BACKEND>_FP8_GEMM and _FP8_DEQUANT_M (cuda_linear.c has the engines). */
static dsrt_status dsrt_cuda_fp8_engine(dsrt_cuda_device *d)
{
    const char *m = getenv(DSRT_GPU_ENV("FP8_GEMM"));
    /* Exact by default: our kernel for decode-sized GEMMs, and from fp8_dequant_m rows on, a bf16 GEMM of
     * exactly dequantized operands (same products, fp32 sums). cuBLASLt's block-scaled FP8 accumulates
     * in the tensor cores' reduced precision and moved the golden FP8 model (docs/cuda.md): opt-in. */
    static const struct {
        const char *name;
        dsrt_gpu_fp8_gemm mode;
    } modes[] = {{"exact", DSRT_GPU_FP8_EXACT}, {"own", DSRT_GPU_FP8_OWN},         {"dequant", DSRT_GPU_FP8_DEQUANT},
                 {"auto", DSRT_GPU_FP8_AUTO},   {"library", DSRT_GPU_FP8_LIBRARY}, {"simt", DSRT_GPU_FP8_OWN}};
    d->fp8_mode = DSRT_GPU_FP8_EXACT;
    d->fp8_dequant_m = 256;
    if (m && *m) {
        size_t i = 0, n = sizeof modes / sizeof modes[0];
        while (i < n && strcmp(m, modes[i].name) != 0) i++;
        if (i == n)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s=%s: expected exact, own, dequant, auto, library or simt",
                              DSRT_GPU_ENV("FP8_GEMM"), m);
        d->fp8_mode = modes[i].mode;
        d->fp8_simt = strcmp(m, "simt") == 0; /* plain cores only, for testing the portable path */
    }
    const char *dm = getenv(DSRT_GPU_ENV("FP8_DEQUANT_M"));
    if (dm && *dm) {
        char *end;
        long long v = strtoll(dm, &end, 10);
        if (*end || v < 1)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s=%s: expected a row count >= 1",
                              DSRT_GPU_ENV("FP8_DEQUANT_M"), dm);
        d->fp8_dequant_m = v;
    }
    return DSRT_OK;
}

static dsrt_status dsrt_cuda_device_open(void *bctx, int index, void **dctx)
{
    dsrt_cuda_device *d = calloc(1, sizeof *d);
    if (!d) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory opening " DSRT_GPU_RT_NAME ":%d", index);
    d->index = index;
    dsrt_status st = dsrt_cuda_fp8_engine(d);
    if (st) {
        free(d);
        return dsrt_status_wrap(st, "opening " DSRT_GPU_RT_NAME ":%d: ", index);
    }
    st = dsrt_cuda_check(gpuSetDevice(index), GPU_API("SetDevice"));
    gpuDeviceProp p;
    if (!st) st = dsrt_cuda_check(gpuGetDeviceProperties(&p, index), GPU_API("GetDeviceProperties"));
    if (!st) {
        d->sm_count = p.multiProcessorCount;
        d->cc_major = p.major;
        d->cc_minor = p.minor;
        d->smem_optin = gpu_prop_smem_optin(&p);
        d->warp_size = p.warpSize;
        st = dsrt_cuda_check(gpuStreamCreateWithFlags(&d->alloc_stream, gpuStreamNonBlocking), GPU_API("StreamCreate"));
    }
    int pools = 0;
    if (!st && gpuDeviceGetAttribute(&pools, gpuDevAttrMemoryPoolsSupported, index) != gpuSuccess) {
        gpuGetLastError();
        pools = 0;
    }
    if (!st && pools)
        st = dsrt_cuda_check(gpuDeviceGetDefaultMemPool(&d->pool, index), GPU_API("DeviceGetDefaultMemPool"));
    if (!st && d->pool) {
        /* keep freed memory in the pool: model-sized buffers come and go with reloads */
        uint64_t keep = UINT64_MAX;
        st = dsrt_cuda_check(gpuMemPoolSetAttribute(d->pool, gpuMemPoolAttrReleaseThreshold, &keep),
                             GPU_API("MemPoolSetAttribute"));
    }
    if (!st)
        st = dsrt_cuda_check(gpuHostAllocMapped((void **)&d->err_host, sizeof(unsigned)),
                             "allocating mapped host memory (error word)");
    if (!st) {
        *d->err_host = 0;
        st = dsrt_cuda_check(gpuHostGetDevicePointer((void **)&d->err_dev, d->err_host, 0), GPU_API("HostGetDevicePointer"));
    }
    if (st) {
        if (d->err_host) gpuFreeHost(d->err_host);
        if (d->alloc_stream) gpuStreamDestroy(d->alloc_stream);
        free(d);
        return dsrt_status_wrap(st, "opening " DSRT_GPU_RT_NAME ":%d: ", index);
    }
#ifdef DSRT_GPU_HIP
    /* The tensor-core kernels are mma.sync (NVIDIA only): the HIP build runs the portable paths. */
    d->use_mma = false;
    if (getenv(DSRT_GPU_ENV("NO_BLAS")))
        snprintf(d->blas_note, sizeof d->blas_note, "rocBLAS not used (DSRT_HIP_NO_BLAS is set)");
    else
        d->blas = dsrt_hip_rocblas_load(d->blas_note, sizeof d->blas_note);
    if (getenv(DSRT_GPU_ENV("VERBOSE")))
        fprintf(stderr, "dsrt hip:%d: %s\n", index, d->blas ? "float GEMMs through rocBLAS" : d->blas_note);
#else
    d->use_mma = d->cc_major >= 8 && !getenv("DSRT_CUDA_NO_MMA");
    d->use_wgmma = d->use_mma && d->cc_major == 9 && d->cc_minor == 0 && dsrt_gpu_wgmma_image();
    /* Hopper's programmatic dependent launch: the decode GEMVs start streaming weights while the
     * kernels before them finish (gpu_launch_early). DSRT_CUDA_NO_PDL=1 turns it off. */
    d->early_launch = d->cc_major >= 9 && !getenv("DSRT_CUDA_NO_PDL");
#endif
    (void)bctx;
    *dctx = d;
    return DSRT_OK;
}

static void dsrt_cuda_device_close(void *dctx)
{
    dsrt_cuda_device *d = dctx;
    gpuSetDevice(d->index);
    gpuStreamSynchronize(d->alloc_stream);
    gpuStreamDestroy(d->alloc_stream);
    gpuFreeHost(d->err_host);
#ifdef DSRT_GPU_HIP
    dsrt_hip_rocblas_unload(d->blas);
#endif
    free(d);
}

int dsrt_cuda_device_of(void *dctx) { return ((dsrt_cuda_device *)dctx)->index; }

/* ---- memory ---- */

static dsrt_status dsrt_cuda_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    dsrt_cuda_device *d = dctx;
    *host_ptr = NULL;
    DSRT_CUDA_TRY(gpuSetDevice(d->index), GPU_API("SetDevice"));
    void *p = NULL;
    gpuError_t e;
    if (d->pool) {
        e = gpuMallocFromPoolAsync(&p, bytes, d->pool, d->alloc_stream);
        if (e == gpuSuccess) e = gpuStreamSynchronize(d->alloc_stream);
    } else {
        e = gpuMalloc(&p, bytes);
    }
    if (e != gpuSuccess) {
        gpuGetLastError();
        size_t fr = 0, tot = 0;
        gpuMemGetInfo(&fr, &tot);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED,
                          DSRT_GPU_RT_NAME ":%d: cannot allocate %zu bytes: %s (%zu of %zu bytes free)",
                          d->index, bytes, gpuGetErrorString(e), fr, tot);
    }
    *handle = p; /* a buffer's handle is its device address */
    return DSRT_OK;
}

static void dsrt_cuda_buffer_free(void *dctx, void *handle)
{
    dsrt_cuda_device *d = dctx;
    if (!handle) return;
    gpuSetDevice(d->index);
    /* gpuFree waits for the device first: work still reading the buffer on any stream finishes */
    if (gpuFree(handle) != gpuSuccess) gpuGetLastError();
}

/* ---- streams ---- */

static dsrt_status dsrt_cuda_stream_create(void *dctx, void **sctx)
{
    dsrt_cuda_device *d = dctx;
    DSRT_CUDA_TRY(gpuSetDevice(d->index), GPU_API("SetDevice"));
    dsrt_cuda_stream *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a stream on " DSRT_GPU_RT_NAME ":%d", d->index);
    s->dev = d;
    dsrt_status st = dsrt_cuda_check(gpuStreamCreateWithFlags(&s->s, gpuStreamNonBlocking), GPU_API("StreamCreate"));
    if (st) {
        free(s);
        return st;
    }
    *sctx = s;
    return DSRT_OK;
}

static void dsrt_cuda_free_blocks(dsrt_cuda_block *b)
{
    while (b) {
        dsrt_cuda_block *n = b->next;
        gpuFree(b->ptr);
        free(b);
        b = n;
    }
}

static void dsrt_cuda_capture_done(dsrt_cuda_stream *s);

static void dsrt_cuda_stream_destroy(void *sctx)
{
    dsrt_cuda_stream *s = sctx;
    gpuSetDevice(s->dev->index);
    if (s->capture_origin) { /* a joined stream leaves its origin's list */
        dsrt_cuda_stream *o = s->capture_origin;
        for (int i = 0; i < o->n_joined; i++)
            if (o->joined[i] == s) o->joined[i] = o->joined[--o->n_joined];
    } else if (s->capturing) {
        gpuGraph_t g = NULL;
        if (gpuStreamEndCapture(s->s, &g) == gpuSuccess && g) gpuGraphDestroy(g);
        gpuGetLastError();
        dsrt_cuda_capture_done(s);
    }
    gpuStreamSynchronize(s->s);
    dsrt_cuda_blas_release(s);
    if (s->scratch) gpuFree(s->scratch);
    dsrt_cuda_free_blocks(s->retired);
    dsrt_cuda_free_blocks(s->capture_blocks);
    for (int i = 0; i < 2; i++) {
        if (s->stage[i]) gpuFreeHost(s->stage[i]);
        if (s->stage_ev[i]) gpuEventDestroy(s->stage_ev[i]);
    }
    gpuStreamDestroy(s->s);
    dsrt_status_free(s->scratch_err);
    gpuGetLastError();
    free(s);
}

gpuStream_t dsrt_cuda_stream_of(void *sctx) { return ((dsrt_cuda_stream *)sctx)->s; }

static const char *dsrt_cuda_err_text(unsigned bits)
{
    if (bits & DSRT_GPU_ERR_GROUP_OFFSETS)
        return "linear_grouped: offsets are not non-decreasing within 0..R (the op wrote nothing)";
    if (bits & DSRT_GPU_ERR_NO_WGMMA)
        return "mla_decode: the kernel image for this device has no sm_90a code (the output is not valid); build with "
               "-gencode=arch=compute_90a,code=sm_90a or set DSRT_CUDA_MLA_MMA_SYNC=1";
    return "a kernel reported bad data";
}

static dsrt_status dsrt_cuda_stream_sync(void *sctx)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    gpuError_t e = gpuStreamSynchronize(s->s);
    if (e != gpuSuccess)
        return dsrt_error(DSRT_CODE_DEVICE, DSRT_GPU_RT_NAME ":%d: work on a stream failed: %s (%s)", s->dev->index,
                          gpuGetErrorString(e), gpuGetErrorName(e));
    unsigned bits = __atomic_exchange_n(s->dev->err_host, 0u, __ATOMIC_ACQ_REL);
    if (bits) return dsrt_error(DSRT_CODE_OUT_OF_RANGE, DSRT_GPU_RT_NAME ":%d: %s", s->dev->index, dsrt_cuda_err_text(bits));
    if (s->scratch_err) {
        dsrt_status st = s->scratch_err;
        s->scratch_err = NULL;
        return st;
    }
    return DSRT_OK;
}

/* ---- scratch ---- */

static size_t dsrt_round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

dsrt_status dsrt_cuda_scratch(void *user, size_t bytes, void **ptr)
{
    dsrt_cuda_stream *s = user;
    size_t need = dsrt_round_up(bytes ? bytes : 1, 256);
    if (s->capturing) {
        /* the graph owns what its kernels use; nothing stream-ordered is recorded */
        dsrt_cuda_block *b = calloc(1, sizeof *b);
        if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for graph scratch");
        gpuError_t e = gpuMalloc(&b->ptr, need);
        if (e != gpuSuccess) {
            free(b);
            return dsrt_cuda_check(e, GPU_API("Malloc (graph scratch)"));
        }
        b->size = need;
        dsrt_cuda_stream *owner = s->capture_origin ? s->capture_origin : s;
        b->next = owner->capture_blocks;
        owner->capture_blocks = b;
        *ptr = b->ptr;
        return DSRT_OK;
    }
    size_t at = dsrt_round_up(s->scratch_used, 256);
    if (s->scratch && at + need <= s->scratch_size) {
        *ptr = (char *)s->scratch + at;
        s->scratch_used = at + need;
        return DSRT_OK;
    }
    size_t nsize = s->scratch_size * 2;
    if (nsize < 2 * need) nsize = 2 * need;
    if (nsize < (16u << 20)) nsize = 16u << 20;
    if (s->scratch) { /* earlier pieces of this op stay valid until the next op frees the block */
        dsrt_cuda_block *b = calloc(1, sizeof *b);
        if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a scratch record");
        b->ptr = s->scratch;
        b->size = s->scratch_size;
        b->next = s->retired;
        s->retired = b;
        s->scratch = NULL;
        s->scratch_size = 0;
    }
    void *p = NULL;
    gpuError_t e = s->dev->pool ? gpuMallocFromPoolAsync(&p, nsize, s->dev->pool, s->s) : gpuMalloc(&p, nsize);
    if (e != gpuSuccess) {
        gpuGetLastError();
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, DSRT_GPU_RT_NAME ":%d: cannot allocate %zu bytes of scratch: %s",
                          s->dev->index, nsize, gpuGetErrorString(e));
    }
    s->scratch = p;
    s->scratch_size = nsize;
    s->scratch_used = need;
    *ptr = p;
    return DSRT_OK;
}

/* Called before each op: frees (in stream order) scratch blocks outgrown by earlier ops. */
static void dsrt_cuda_begin_op(dsrt_cuda_stream *s)
{
    if (!s->capturing) {
        while (s->retired) {
            dsrt_cuda_block *b = s->retired;
            s->retired = b->next;
            /* without pools, Free waits for the device: kernels still using the block finish first */
            gpuError_t e = s->dev->pool ? gpuFreeAsync(b->ptr, s->s) : gpuFree(b->ptr);
            if (e != gpuSuccess) gpuGetLastError();
            free(b);
        }
    }
    s->scratch_used = 0;
}

void dsrt_cuda_ctx(dsrt_cuda_stream *s, dsrt_gpu_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->stream = s->s;
    c->device = s->dev->index;
    c->sm_count = s->dev->sm_count;
    c->cc_major = s->dev->cc_major;
    c->cc_minor = s->dev->cc_minor;
    c->smem_optin = s->dev->smem_optin;
    c->warp_size = s->dev->warp_size;
    c->use_mma = s->dev->use_mma;
    c->use_wgmma = s->dev->use_wgmma;
    c->early_launch = s->dev->early_launch;
    c->err = s->dev->err_dev;
    c->scratch = dsrt_cuda_scratch;
    c->scratch_user = s;
}

/* ---- transfers ---- */

static dsrt_status dsrt_cuda_stage_ready(dsrt_cuda_stream *s, int i)
{
    if (!s->stage[i]) {
        DSRT_CUDA_TRY(gpuHostAllocPinned(&s->stage[i], DSRT_CUDA_STAGE_BYTES), "allocating pinned host memory (staging)");
        DSRT_CUDA_TRY(gpuEventCreateWithFlags(&s->stage_ev[i], gpuEventDisableTiming), GPU_API("EventCreate (staging)"));
        s->stage_used[i] = false;
    }
    if (s->stage_used[i]) DSRT_CUDA_TRY(gpuEventSynchronize(s->stage_ev[i]), "waiting for a staging buffer");
    return DSRT_OK;
}

/* Small copies and pinned memory go straight; large pageable copies go through two pinned staging
 * buffers so the copy engine streams at full rate and the call returns once the data is staged. */
static dsrt_status dsrt_cuda_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    char *d = (char *)dst + off;
    if (s->capturing || bytes <= (64u << 10) || gpu_is_pinned_host(src))
        return dsrt_cuda_check(gpuMemcpyAsync(d, src, bytes, gpuMemcpyHostToDevice, s->s), GPU_API("MemcpyAsync (write)"));
    for (size_t done = 0; done < bytes;) {
        int i = s->stage_next;
        s->stage_next ^= 1;
        DSRT_TRY(dsrt_cuda_stage_ready(s, i));
        size_t n = bytes - done < DSRT_CUDA_STAGE_BYTES ? bytes - done : DSRT_CUDA_STAGE_BYTES;
        memcpy(s->stage[i], (const char *)src + done, n);
        DSRT_CUDA_TRY(gpuMemcpyAsync(d + done, s->stage[i], n, gpuMemcpyHostToDevice, s->s), GPU_API("MemcpyAsync (write)"));
        DSRT_CUDA_TRY(gpuEventRecord(s->stage_ev[i], s->s), GPU_API("EventRecord (staging)"));
        s->stage_used[i] = true;
        done += n;
    }
    return DSRT_OK;
}

/* Reads into pageable memory complete before returning (the data must be copied out of staging). */
static dsrt_status dsrt_cuda_read(void *sctx, void *src, size_t off, void *dst, size_t bytes)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    const char *sp = (const char *)src + off;
    if (s->capturing || gpu_is_pinned_host(dst))
        return dsrt_cuda_check(gpuMemcpyAsync(dst, sp, bytes, gpuMemcpyDeviceToHost, s->s), GPU_API("MemcpyAsync (read)"));
    size_t pend_off[2] = {0, 0}, pend_n[2] = {0, 0};
    bool pend[2] = {false, false};
    for (size_t done = 0; done < bytes || pend[0] || pend[1];) {
        int i = s->stage_next;
        if (pend[i]) { /* drain the older chunk of this buffer */
            DSRT_CUDA_TRY(gpuEventSynchronize(s->stage_ev[i]), "waiting for a read");
            memcpy((char *)dst + pend_off[i], s->stage[i], pend_n[i]);
            pend[i] = false;
            s->stage_used[i] = false;
        }
        if (done < bytes) {
            DSRT_TRY(dsrt_cuda_stage_ready(s, i));
            size_t n = bytes - done < DSRT_CUDA_STAGE_BYTES ? bytes - done : DSRT_CUDA_STAGE_BYTES;
            DSRT_CUDA_TRY(gpuMemcpyAsync(s->stage[i], sp + done, n, gpuMemcpyDeviceToHost, s->s), GPU_API("MemcpyAsync (read)"));
            DSRT_CUDA_TRY(gpuEventRecord(s->stage_ev[i], s->s), GPU_API("EventRecord (staging)"));
            s->stage_used[i] = true;
            pend[i] = true;
            pend_off[i] = done;
            pend_n[i] = n;
            done += n;
        }
        s->stage_next ^= 1;
    }
    return DSRT_OK;
}

static dsrt_status dsrt_cuda_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    return dsrt_cuda_check(gpuMemcpyAsync((char *)dst + doff, (const char *)src + soff, bytes, gpuMemcpyDeviceToDevice, s->s),
                           GPU_API("MemcpyAsync (copy)"));
}

static dsrt_status dsrt_cuda_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    uint32_t pat = 0;
    memcpy(&pat, pattern, psize);
    if (psize == 1)
        return dsrt_cuda_check(gpuMemsetAsync((char *)dst + off, (int)(pat & 0xff), bytes, s->s), GPU_API("MemsetAsync"));
    dsrt_gpu_ctx c;
    dsrt_cuda_ctx(s, &c);
    return dsrt_gpu_fill(&c, (char *)dst + off, bytes, pat, (int)psize);
}

/* ---- events ---- */

/* An event, and the capture it was last recorded into (NULL: recorded outside any capture). The origin
 * is only compared with the device's list of capturing streams, never followed once that capture ended. */
typedef struct dsrt_cuda_event {
    gpuEvent_t e;
    dsrt_cuda_stream *origin;
} dsrt_cuda_event;

static dsrt_status dsrt_cuda_event_create(void *dctx, void **ectx)
{
    dsrt_cuda_device *d = dctx;
    DSRT_CUDA_TRY(gpuSetDevice(d->index), GPU_API("SetDevice"));
    dsrt_cuda_event *ev = calloc(1, sizeof *ev);
    if (!ev) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for an event");
    dsrt_status st = dsrt_cuda_check(gpuEventCreateWithFlags(&ev->e, gpuEventDisableTiming), GPU_API("EventCreate"));
    if (st) {
        free(ev);
        return st;
    }
    *ectx = ev;
    return DSRT_OK;
}

static void dsrt_cuda_event_destroy(void *ectx)
{
    dsrt_cuda_event *ev = ectx;
    if (!ev) return;
    gpuEventDestroy(ev->e);
    free(ev);
}

static dsrt_status dsrt_cuda_event_record(void *ectx, void *sctx)
{
    dsrt_cuda_event *ev = ectx;
    dsrt_cuda_stream *s = sctx;
    ev->origin = s->capturing ? (s->capture_origin ? s->capture_origin : s) : NULL;
    return dsrt_cuda_check(gpuEventRecord(ev->e, s->s), GPU_API("EventRecord"));
}

/* Waiting on an event recorded in a capture joins that capture (CUDA and HIP put the stream's later
 * work into the graph): the stream then takes graph-owned scratch, and the origin's end of capture
 * ends it here too. The origin must wait on this stream again before it ends (the runtime refuses an
 * unjoined capture). */
static dsrt_status dsrt_cuda_stream_wait_event(void *sctx, void *ectx)
{
    dsrt_cuda_stream *s = sctx;
    dsrt_cuda_event *ev = ectx;
    bool live = false;
    for (int i = 0; ev->origin && i < DSRT_CUDA_MAX_CAPTURES; i++) live = live || s->dev->capturing[i] == ev->origin;
    if (live && !s->capturing) { /* (the origin itself is capturing) */
        dsrt_cuda_stream *o = ev->origin;
        if (o->n_joined == DSRT_CUDA_MAX_JOINED)
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "more than %d streams joined one graph capture", DSRT_CUDA_MAX_JOINED);
        o->joined[o->n_joined++] = s;
        s->capturing = true;
        s->capture_origin = o;
    }
    return dsrt_cuda_check(gpuStreamWaitEvent(s->s, ev->e, 0), GPU_API("StreamWaitEvent"));
}

static dsrt_status dsrt_cuda_event_sync(void *ectx)
{
    return dsrt_cuda_check(gpuEventSynchronize(((dsrt_cuda_event *)ectx)->e), GPU_API("EventSynchronize"));
}

static dsrt_status dsrt_cuda_event_query(void *ectx, bool *done)
{
    gpuError_t e = gpuEventQuery(((dsrt_cuda_event *)ectx)->e);
    if (e == gpuErrorNotReady) {
        gpuGetLastError();
        *done = false;
        return DSRT_OK;
    }
    *done = e == gpuSuccess;
    return dsrt_cuda_check(e, GPU_API("EventQuery"));
}

/* ---- graphs ---- */

static dsrt_status dsrt_cuda_begin_capture(void *sctx)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    /* relaxed: scratch for captured ops is allocated (not captured) while capturing */
    if (s->capturing) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the stream is already recording a graph");
    int slot = 0;
    while (slot < DSRT_CUDA_MAX_CAPTURES && s->dev->capturing[slot]) slot++;
    if (slot == DSRT_CUDA_MAX_CAPTURES)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "more than %d graph captures at once on " DSRT_GPU_RT_NAME ":%d",
                          DSRT_CUDA_MAX_CAPTURES, s->dev->index);
    DSRT_CUDA_TRY(gpuStreamBeginCapture(s->s, gpuStreamCaptureModeRelaxed), GPU_API("StreamBeginCapture"));
    s->capturing = true;
    s->capture_blocks = NULL;
    s->n_joined = 0;
    s->dev->capturing[slot] = s;
    return DSRT_OK;
}

/* The capture of origin `s` is over: its joined streams record no more, and it leaves the device's list. */
static void dsrt_cuda_capture_done(dsrt_cuda_stream *s)
{
    for (int i = 0; i < s->n_joined; i++) {
        s->joined[i]->capturing = false;
        s->joined[i]->capture_origin = NULL;
    }
    s->n_joined = 0;
    for (int i = 0; i < DSRT_CUDA_MAX_CAPTURES; i++)
        if (s->dev->capturing[i] == s) s->dev->capturing[i] = NULL;
}

static dsrt_status dsrt_cuda_end_capture(void *sctx, void **gctx)
{
    dsrt_cuda_stream *s = sctx;
    if (s->capture_origin)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "this stream joined another stream's graph capture; that stream ends it");
    s->capturing = false;
    gpuGraph_t graph = NULL;
    gpuError_t e = gpuStreamEndCapture(s->s, &graph);
    dsrt_cuda_capture_done(s);
    dsrt_cuda_block *blocks = s->capture_blocks;
    s->capture_blocks = NULL;
    if (e != gpuSuccess) {
        dsrt_cuda_free_blocks(blocks);
        return dsrt_cuda_check(e, GPU_API("StreamEndCapture (an op in the capture failed or was not capturable)"));
    }
    dsrt_cuda_graph *g = calloc(1, sizeof *g);
    if (!g) {
        gpuGraphDestroy(graph);
        dsrt_cuda_free_blocks(blocks);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a graph");
    }
    g->graph = graph;
    g->blocks = blocks;
    g->device = s->dev->index;
    e = gpuGraphInstantiate(&g->exec, graph);
    if (e != gpuSuccess) {
        gpuGraphDestroy(graph);
        dsrt_cuda_free_blocks(blocks);
        free(g);
        return dsrt_cuda_check(e, GPU_API("GraphInstantiate"));
    }
    /* Upload now: otherwise the first launch does it, and the first decode step after a capture
     * (~250 kernels) ran ~4 ms longer than the next ones. */
    e = gpuGraphUpload(g->exec, s->s);
    if (e != gpuSuccess) {
        gpuGraphExecDestroy(g->exec);
        gpuGraphDestroy(graph);
        dsrt_cuda_free_blocks(blocks);
        free(g);
        return dsrt_cuda_check(e, GPU_API("GraphUpload"));
    }
    *gctx = g;
    return DSRT_OK;
}

static dsrt_status dsrt_cuda_graph_launch(void *gctx, void *sctx)
{
    dsrt_cuda_graph *g = gctx;
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    return dsrt_cuda_check(gpuGraphLaunch(g->exec, s->s), GPU_API("GraphLaunch"));
}

static void dsrt_cuda_graph_destroy(void *gctx)
{
    dsrt_cuda_graph *g = gctx;
    if (!g) return;
    gpuSetDevice(g->device);
    gpuGraphExecDestroy(g->exec);
    gpuGraphDestroy(g->graph);
    dsrt_cuda_free_blocks(g->blocks);
    free(g);
}

/* ---- ops ---- */

static bool dsrt_cuda_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    dsrt_cuda_device *d = dctx;
    size_t optin = (size_t)d->smem_optin;
    const dsrt_tensor *x = &op->in[0];
    switch (op->kind) {
    case DSRT_OP_CONVERT:
        if (x->scale.buf && x->ndim > 3) {
            snprintf(why, why_len, "scaled tensors of rank > 3");
            return false;
        }
        return true;
    case DSRT_OP_RMS_NORM:
    case DSRT_OP_LAYER_NORM:
        if ((size_t)x->shape[1] * 4 > optin) {
            snprintf(why, why_len, "rows of %lld values exceed shared memory (%zu bytes)", (long long)x->shape[1], optin);
            return false;
        }
        return true;
    case DSRT_OP_HADAMARD:
        if ((size_t)x->shape[1] * 4 > optin) {
            snprintf(why, why_len, "width %lld exceeds shared memory", (long long)x->shape[1]);
            return false;
        }
        return true;
    case DSRT_OP_MLA_DECODE:
    case DSRT_OP_MLA_PREFILL: {
        const dsrt_tensor *idx = &op->in[6];
        if (idx->buf) {
            size_t p2 = 1;
            while (p2 < (size_t)idx->shape[1]) p2 <<= 1;
            if (p2 * 4 > optin) {
                snprintf(why, why_len, "%lld selected positions per row exceed shared memory", (long long)idx->shape[1]);
                return false;
            }
        }
        size_t w = op->kind == DSRT_OP_MLA_DECODE ? (size_t)(2 * x->shape[2] + op->in[1].shape[2])
                                                  : (size_t)(x->shape[2] + op->in[3].shape[2]);
        if (w * 4 > optin) {
            snprintf(why, why_len, "head widths exceed shared memory");
            return false;
        }
        return true;
    }
    case DSRT_OP_INDEXER_SCORES: {
        size_t hd = (size_t)(x->shape[1] * x->shape[2] + 2 * x->shape[1] * ((x->shape[2] + 127) / 128 + 1));
        if (hd * 4 > optin) {
            snprintf(why, why_len, "%lld heads of %lld values exceed shared memory", (long long)x->shape[1],
                     (long long)x->shape[2]);
            return false;
        }
        if (x->shape[0] > 65535) {
            snprintf(why, why_len, "more than 65535 query rows");
            return false;
        }
        return true;
    }
    case DSRT_OP_TOPK: {
        size_t p2 = 1;
        while (p2 < (size_t)op->p.k) p2 <<= 1;
        /* k_topk also holds 21 KB of static shared memory; AMD counts both against one 64 KB limit */
        if (p2 * 8 + 21 * 1024 > optin) {
            snprintf(why, why_len, "k = %d exceeds shared memory", op->p.k);
            return false;
        }
        return true;
    }
    case DSRT_OP_MOE_GATE:
        if ((size_t)(2 * x->shape[1] + 2 * op->p.n_group) * 4 > 48 * 1024) {
            snprintf(why, why_len, "%lld experts exceed shared memory", (long long)x->shape[1]);
            return false;
        }
        return true;
    case DSRT_OP_MOE_DISPATCH:
        if ((size_t)op->p.expert_count * 4 > 48 * 1024) {
            snprintf(why, why_len, "%d local experts exceed shared memory", op->p.expert_count);
            return false;
        }
        return true;
    case DSRT_OP_MOE_COMBINE:
        if (op->in[1].shape[1] > 64) {
            snprintf(why, why_len, "more than 64 experts per token");
            return false;
        }
        return true;
    case DSRT_OP_SAMPLE:
        if (op->p.temperature > 0 && x->shape[0] * x->shape[1] > 0x7fffffff) {
            snprintf(why, why_len, "more than 2^31 logits in one call");
            return false;
        }
        return true;
    case DSRT_OP_HEAD_LINEAR:
        if (x->shape[1] > 65535) {
            snprintf(why, why_len, "more than 65535 heads");
            return false;
        }
        return true;
    case DSRT_OP_COUNT: break;
    default: return true;
    }
    snprintf(why, why_len, "unknown op %d", (int)op->kind);
    return false;
}

/* Ops whose kernels may all launch early (gpu_launch_early): RMSNorm and the FP8 linear. Any other op
 * starts with a normally launched kernel, which waits for everything before it. */
static bool dsrt_cuda_op_early(const dsrt_op *op)
{
    return op->kind == DSRT_OP_RMS_NORM ||
           ((op->kind == DSRT_OP_LINEAR || op->kind == DSRT_OP_LINEAR_GROUPED) && op->p.act_quant);
}

static bool dsrt_cuda_in_chain(const dsrt_cuda_stream *s, const dsrt_buffer *b)
{
    if (!b) return false;
    if (s->chain_n < 0) return true;
    const void *p = dsrt_buffer_native(b);
    for (int i = 0; i < s->chain_n; i++)
        if (s->chain[i] == p) return true;
    return false;
}

/* Whether op->in[1] (a weight) may be read before an early-launched kernel waits: no op whose kernels
 * may still run then wrote its buffer or its scales' buffer. */
static bool dsrt_cuda_params_settled(const dsrt_cuda_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *w = &op->in[1];
    return w->buf && !dsrt_cuda_in_chain(s, w->buf) && !dsrt_cuda_in_chain(s, w->scale.buf);
}

static void dsrt_cuda_chain_add(dsrt_cuda_stream *s, const dsrt_buffer *b)
{
    if (!b || s->chain_n < 0) return;
    if (s->chain_n == DSRT_CUDA_CHAIN) {
        s->chain_n = -1;
        return;
    }
    s->chain[s->chain_n++] = dsrt_buffer_native(b);
}

static void dsrt_cuda_track_writes(dsrt_cuda_stream *s, const dsrt_op *op)
{
    if (!dsrt_cuda_op_early(op)) s->chain_n = 0;
    for (int i = 0; i < DSRT_OP_MAX_OUT; i++) {
        dsrt_cuda_chain_add(s, op->out[i].buf);
        dsrt_cuda_chain_add(s, op->out[i].scale.buf);
    }
}

static dsrt_status dsrt_cuda_dispatch(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    switch (op->kind) {
    case DSRT_OP_CONVERT: return dsrt_gpu_convert(c, op);
    case DSRT_OP_EMBED: return dsrt_gpu_embed(c, op);
    case DSRT_OP_RMS_NORM: return dsrt_gpu_rms_norm(c, op);
    case DSRT_OP_LAYER_NORM: return dsrt_gpu_layer_norm(c, op);
    case DSRT_OP_ROPE: return dsrt_gpu_rope(c, op);
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED: return dsrt_cuda_linear(s, c, op);
    case DSRT_OP_HEAD_LINEAR: return dsrt_cuda_head_linear(s, c, op);
    case DSRT_OP_SWIGLU: return dsrt_gpu_swiglu(c, op);
    case DSRT_OP_ADD: return dsrt_gpu_add(c, op);
    case DSRT_OP_ACT_QUANT: return dsrt_gpu_act_quant(c, op);
    case DSRT_OP_HADAMARD: return dsrt_gpu_hadamard(c, op);
    case DSRT_OP_CACHE_WRITE: return dsrt_gpu_cache_write(c, op);
    case DSRT_OP_MLA_PREFILL: return dsrt_gpu_mla_prefill(c, op);
    case DSRT_OP_MLA_DECODE: return dsrt_gpu_mla_decode(c, op);
    case DSRT_OP_INDEXER_SCORES: return dsrt_gpu_indexer_scores(c, op);
    case DSRT_OP_TOPK: return dsrt_gpu_topk(c, op);
    case DSRT_OP_MOE_GATE: return dsrt_gpu_moe_gate(c, op);
    case DSRT_OP_MOE_DISPATCH: return dsrt_gpu_moe_dispatch(c, op);
    case DSRT_OP_MOE_COMBINE: return dsrt_gpu_moe_combine(c, op);
    case DSRT_OP_SAMPLE: return dsrt_gpu_sample(c, op);
    case DSRT_OP_COUNT: break;
    }
    return dsrt_error(DSRT_CODE_INTERNAL, DSRT_GPU_RT_NAME ": op kind %d has no kernel", (int)op->kind);
}

static dsrt_status dsrt_cuda_enqueue(void *sctx, const dsrt_op *op)
{
    dsrt_cuda_stream *s = sctx;
    DSRT_CUDA_TRY(gpuSetDevice(s->dev->index), GPU_API("SetDevice"));
    dsrt_cuda_begin_op(s);
    dsrt_gpu_ctx c;
    dsrt_cuda_ctx(s, &c);
    c.params_settled = c.early_launch && dsrt_cuda_params_settled(s, op);
    dsrt_status st = dsrt_cuda_dispatch(s, &c, op);
    dsrt_cuda_track_writes(s, op); /* whatever was enqueued before a failure may still write */
    return st;
}

static const dsrt_backend_vtable dsrt_cuda_vtable = {
    .abi_version = DSRT_BACKEND_ABI_VERSION,
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = DSRT_GPU_RT_NAME,
    .init = dsrt_cuda_init,
    .deinit = dsrt_cuda_deinit,
    .device_count = dsrt_cuda_device_count,
    .device_caps = dsrt_cuda_device_caps,
    .device_open = dsrt_cuda_device_open,
    .device_close = dsrt_cuda_device_close,
    .buffer_alloc = dsrt_cuda_buffer_alloc,
    .buffer_free = dsrt_cuda_buffer_free,
    .buffer_wrap_host = NULL,
    .stream_create = dsrt_cuda_stream_create,
    .stream_destroy = dsrt_cuda_stream_destroy,
    .stream_sync = dsrt_cuda_stream_sync,
    .write = dsrt_cuda_write,
    .read = dsrt_cuda_read,
    .copy = dsrt_cuda_copy,
    .fill = dsrt_cuda_fill,
    .event_create = dsrt_cuda_event_create,
    .event_destroy = dsrt_cuda_event_destroy,
    .event_record = dsrt_cuda_event_record,
    .stream_wait_event = dsrt_cuda_stream_wait_event,
    .event_sync = dsrt_cuda_event_sync,
    .event_query = dsrt_cuda_event_query,
    .supports_op = dsrt_cuda_supports,
    .enqueue_op = dsrt_cuda_enqueue,
    .begin_capture = dsrt_cuda_begin_capture,
    .end_capture = dsrt_cuda_end_capture,
    .graph_launch = dsrt_cuda_graph_launch,
    .graph_destroy = dsrt_cuda_graph_destroy,
};

const dsrt_backend_vtable *dsrt_cuda_backend_vtable(void) { return &dsrt_cuda_vtable; }
