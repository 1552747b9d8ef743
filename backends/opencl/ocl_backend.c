/* The OpenCL backend: devices of every platform the ICD loader finds (opencl:0..N-1, optionally narrowed
 * by DSRT_OPENCL_PLATFORM / DSRT_OPENCL_DEVICE), capabilities read from the device, one context and one
 * program per opened device, buffers as cl_mem. Kernel choices are made from the capabilities read here,
 * never from vendor names. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

#define DSRT_OCL_KERNEL_NAME(name) #name,
const char *const dsrt_ocl_kernel_names[DSRT_OCL_K_COUNT] = {DSRT_OCL_KERNEL_LIST(DSRT_OCL_KERNEL_NAME)};
#undef DSRT_OCL_KERNEL_NAME

/* Vendor attribute queries, used only when the device lists the extension that defines them. */
#define DSRT_CL_DEVICE_WARP_SIZE_NV 0x4003
#define DSRT_CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043
#define DSRT_CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108

const char *dsrt_ocl_error_name(cl_int err)
{
    switch (err) {
#define E(x)                                                                                                          \
    case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

dsrt_status dsrt_ocl_fail(cl_int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dsrt_code code = DSRT_CODE_DEVICE;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE)
        code = DSRT_CODE_RESOURCE_EXHAUSTED;
    return dsrt_error(code, "opencl: %s: %s (%d)", msg, dsrt_ocl_error_name(err), (int)err);
}

/* ---- discovery ---- */

static void dsrt_ocl_str(cl_device_id d, cl_device_info what, char *out, size_t len)
{
    out[0] = 0;
    size_t got = 0;
    if (clGetDeviceInfo(d, what, len - 1, out, &got) != CL_SUCCESS) {
        /* Too long for the buffer (e.g. extension lists): read it whole and keep the start. */
        char *tmp = got ? malloc(got + 1) : NULL;
        if (tmp && clGetDeviceInfo(d, what, got, tmp, NULL) == CL_SUCCESS) {
            tmp[got] = 0;
            snprintf(out, len, "%s", tmp);
        }
        free(tmp);
        return;
    }
    out[len - 1] = 0;
}

static bool dsrt_ocl_has_ext(const char *exts, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(exts, name); p; p = strstr(p + 1, name))
        if ((p == exts || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return true;
    return false;
}

static bool dsrt_ocl_icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return true;
    }
    return n == 0;
}

/* A selector is an index ("1") or a case-insensitive name substring ("nvidia"). */
static bool dsrt_ocl_selects(const char *sel, int index, const char *name)
{
    if (!sel || !*sel) return true;
    char *end;
    long v = strtol(sel, &end, 10);
    if (*end == 0) return v == index;
    return dsrt_ocl_icontains(name, sel);
}

static int dsrt_ocl_version(const char *s, const char *prefix)
{
    /* "OpenCL 1.2 ..." or "OpenCL C 1.2 ..." -> 12 */
    const char *p = strstr(s, prefix);
    if (!p) return 0;
    p += strlen(prefix);
    int maj = 0, min = 0;
    if (sscanf(p, "%d.%d", &maj, &min) != 2) return 0;
    return maj * 10 + min;
}

static void dsrt_ocl_fill_caps(dsrt_ocl_devinfo *di)
{
    cl_device_id d = di->device;
    dsrt_device_caps *c = &di->caps;
    memset(c, 0, sizeof *c);
    c->numa_node = -1;
    dsrt_ocl_str(d, CL_DEVICE_NAME, c->name, sizeof c->name);
    dsrt_ocl_str(d, CL_DEVICE_VENDOR, c->vendor, sizeof c->vendor);
    dsrt_ocl_str(d, CL_DRIVER_VERSION, c->driver, sizeof c->driver);
    dsrt_ocl_str(d, CL_DEVICE_VERSION, di->device_version, sizeof di->device_version);
    dsrt_ocl_str(d, CL_DEVICE_EXTENSIONS, di->extensions, sizeof di->extensions);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    c->type = (type & CL_DEVICE_TYPE_GPU)           ? DSRT_DEVICE_GPU
              : (type & CL_DEVICE_TYPE_CPU)         ? DSRT_DEVICE_CPU
              : (type & CL_DEVICE_TYPE_ACCELERATOR) ? DSRT_DEVICE_ACCELERATOR
                                                    : DSRT_DEVICE_OTHER;
    cl_ulong u64 = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u64, &u64, NULL) == CL_SUCCESS) c->memory_bytes = u64;
    u64 = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u64, &u64, NULL) == CL_SUCCESS) c->max_alloc_bytes = u64;
    u64 = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof u64, &u64, NULL) == CL_SUCCESS) c->local_mem_bytes = u64;
    cl_uint u32 = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u32, &u32, NULL) == CL_SUCCESS) c->compute_units = (int)u32;
    size_t wg = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) == CL_SUCCESS)
        c->max_work_group = wg > 1 << 20 ? 1 << 20 : (int)wg;
    /* Subgroup (warp / wavefront / SIMD) width: OpenCL 1.2 has no core query, so read it where the
     * device offers an extension that defines one. */
    if (dsrt_ocl_has_ext(di->extensions, "cl_nv_device_attribute_query")) {
        u32 = 0;
        if (clGetDeviceInfo(d, DSRT_CL_DEVICE_WARP_SIZE_NV, sizeof u32, &u32, NULL) == CL_SUCCESS) c->subgroup_size = (int)u32;
    } else if (dsrt_ocl_has_ext(di->extensions, "cl_amd_device_attribute_query")) {
        u32 = 0;
        if (clGetDeviceInfo(d, DSRT_CL_DEVICE_WAVEFRONT_WIDTH_AMD, sizeof u32, &u32, NULL) == CL_SUCCESS)
            c->subgroup_size = (int)u32;
    } else if (dsrt_ocl_has_ext(di->extensions, "cl_intel_required_subgroup_size")) {
        size_t sizes[16] = {0}, got = 0;
        if (clGetDeviceInfo(d, DSRT_CL_DEVICE_SUB_GROUP_SIZES_INTEL, sizeof sizes, sizes, &got) == CL_SUCCESS)
            for (size_t i = 0; i < got / sizeof(size_t) && i < 16; i++)
                if ((int)sizes[i] > c->subgroup_size) c->subgroup_size = (int)sizes[i];
    }
    c->native_fp16 = dsrt_ocl_has_ext(di->extensions, "cl_khr_fp16");
    c->native_bf16 = false;
    c->native_fp8 = false;
    cl_bool unified = CL_FALSE;
    if (clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL) == CL_SUCCESS)
        c->unified_memory = unified == CL_TRUE;
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    di->denorms = (fp & CL_FP_DENORM) != 0;
    di->exact_div = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    di->fp64 = dsrt_ocl_has_ext(di->extensions, "cl_khr_fp64");
    di->subgroups = dsrt_ocl_has_ext(di->extensions, "cl_khr_subgroups");
    u32 = 0;
    clGetDeviceInfo(d, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof u32, &u32, NULL);
    di->addr_align_bits = u32;
}

static dsrt_status dsrt_ocl_init(void **bctx)
{
    dsrt_ocl_backend *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory starting the OpenCL backend");
    *bctx = b;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) {
        snprintf(b->why, sizeof b->why,
                 "no OpenCL platform found (%s): the ICD loader lists no driver; install one (e.g. "
                 "pocl-opencl-icd) or check /etc/OpenCL/vendors and OCL_ICD_VENDORS",
                 err == CL_SUCCESS ? "0 platforms" : dsrt_ocl_error_name(err));
        return DSRT_OK;
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory listing OpenCL platforms");
    clGetPlatformIDs(np, plats, NULL);
    const char *psel = getenv("DSRT_OPENCL_PLATFORM"), *dsel = getenv("DSRT_OPENCL_DEVICE");
    char seen_plats[160] = "", seen_devs[160] = "";
    int dev_index = 0, nplat_sel = 0, too_old = 0;
    for (cl_uint p = 0; p < np; p++) {
        char pname[128] = "", pvendor[128] = "", pver[128] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VENDOR, sizeof pvendor - 1, pvendor, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pver - 1, pver, NULL);
        size_t l = strlen(seen_plats);
        snprintf(seen_plats + l, sizeof seen_plats - l, "%s%u '%s'", l ? ", " : "", p, pname);
        char both[260];
        snprintf(both, sizeof both, "%s %s", pname, pvendor);
        if (!dsrt_ocl_selects(psel, (int)p, both)) continue;
        nplat_sel++;
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        cl_device_id *ids = calloc(nd, sizeof *ids);
        if (!ids) break;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL);
        for (cl_uint i = 0; i < nd; i++, dev_index++) {
            dsrt_ocl_devinfo di;
            memset(&di, 0, sizeof di);
            di.platform = plats[p];
            di.device = ids[i];
            snprintf(di.platform_name, sizeof di.platform_name, "%s", pname);
            snprintf(di.platform_version, sizeof di.platform_version, "%s", pver);
            dsrt_ocl_fill_caps(&di);
            l = strlen(seen_devs);
            snprintf(seen_devs + l, sizeof seen_devs - l, "%s%d '%s'", l ? ", " : "", dev_index, di.caps.name);
            if (!dsrt_ocl_selects(dsel, dev_index, di.caps.name)) continue;
            /* Host entry points and kernels are OpenCL 1.2. */
            if (dsrt_ocl_version(di.device_version, "OpenCL ") < 12) {
                too_old++;
                continue;
            }
            dsrt_ocl_devinfo *grown = realloc(b->devs, sizeof *grown * (size_t)(b->ndevs + 1));
            if (!grown) break;
            b->devs = grown;
            b->devs[b->ndevs++] = di;
        }
        free(ids);
    }
    free(plats);
    if (b->ndevs == 0) {
        if (psel && *psel && nplat_sel == 0)
            snprintf(b->why, sizeof b->why, "DSRT_OPENCL_PLATFORM='%s' matches none of the platforms: %s", psel, seen_plats);
        else if (dsel && *dsel && dev_index > 0)
            snprintf(b->why, sizeof b->why, "DSRT_OPENCL_DEVICE='%s' matches none of the devices: %s", dsel, seen_devs);
        else if (too_old)
            snprintf(b->why, sizeof b->why, "%d OpenCL device(s) found but none supports OpenCL 1.2", too_old);
        else
            snprintf(b->why, sizeof b->why, "the OpenCL platform(s) %s have no devices", seen_plats);
    }
    return DSRT_OK;
}

static void dsrt_ocl_deinit(void *bctx)
{
    dsrt_ocl_backend *b = bctx;
    if (!b) return;
    free(b->devs);
    free(b);
}

static dsrt_status dsrt_ocl_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    dsrt_ocl_backend *b = bctx;
    *count = b->ndevs;
    if (b->ndevs == 0) snprintf(why, why_len, "%s", b->why);
    return DSRT_OK;
}

static dsrt_status dsrt_ocl_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    dsrt_ocl_backend *b = bctx;
    if (index < 0 || index >= b->ndevs)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "opencl device index %d is out of range (0..%d)", index, b->ndevs - 1);
    *caps = b->devs[index].caps;
    return DSRT_OK;
}

static int dsrt_pow2_floor(size_t v)
{
    int p = 1;
    while ((size_t)p * 2 <= v && p < (1 << 20)) p *= 2;
    return p;
}

/* Kernel parameters from the device's capabilities. */
static void dsrt_ocl_configure(dsrt_ocl_device *d)
{
    const dsrt_ocl_devinfo *di = d->info;
    dsrt_ocl_config *c = &d->cfg;
    size_t maxwg = di->caps.max_work_group > 0 ? (size_t)di->caps.max_work_group : 1;
    c->wg = dsrt_pow2_floor(maxwg < 256 ? maxwg : 256);
    c->local_mem = di->caps.local_mem_bytes;
    c->gemv_rows = 4;
    c->fp8_arith = di->denorms;
#ifdef DSRT_HAVE_CLBLAST
    c->clblast = !(getenv("DSRT_OPENCL_CLBLAST") && strcmp(getenv("DSRT_OPENCL_CLBLAST"), "0") == 0);
#else
    c->clblast = false;
#endif
    c->hgemm = c->clblast && di->caps.native_fp16 && getenv("DSRT_OPENCL_HGEMM") &&
               strcmp(getenv("DSRT_OPENCL_HGEMM"), "1") == 0;
    c->prefill_lists = getenv("DSRT_OPENCL_PREFILL") && strcmp(getenv("DSRT_OPENCL_PREFILL"), "lists") == 0;
    const char *mode = getenv("DSRT_OPENCL_FP8_DECODE");
    if (mode && strcmp(mode, "table") == 0) c->fp8_arith = false;
    if (mode && strcmp(mode, "arith") == 0) c->fp8_arith = true;
}

static dsrt_status dsrt_ocl_device_open(void *bctx, int index, void **dctx)
{
    dsrt_ocl_backend *b = bctx;
    if (index < 0 || index >= b->ndevs)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "opencl device index %d is out of range (0..%d)", index, b->ndevs - 1);
    dsrt_ocl_device *d = calloc(1, sizeof *d);
    if (!d) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory opening an OpenCL device");
    d->info = &b->devs[index];
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->info->platform, 0};
    cl_int err;
    d->ctx = clCreateContext(props, 1, &d->info->device, NULL, NULL, &err);
    if (!d->ctx) {
        free(d);
        return dsrt_ocl_fail(err, "creating a context on '%s'", b->devs[index].caps.name);
    }
    dsrt_ocl_configure(d);
    dsrt_status st = dsrt_ocl_build_program(d);
    if (st) {
        clReleaseContext(d->ctx);
        free(d);
        return st;
    }
    *dctx = d;
    return DSRT_OK;
}

static void dsrt_ocl_device_close(void *dctx)
{
    dsrt_ocl_device *d = dctx;
    if (!d) return;
    if (d->program) clReleaseProgram(d->program);
    if (d->ctx) clReleaseContext(d->ctx);
    free(d);
}

/* ---- memory ---- */

static dsrt_status dsrt_ocl_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    dsrt_ocl_device *d = dctx;
    *host_ptr = NULL;
    if (d->info->caps.max_alloc_bytes && bytes > d->info->caps.max_alloc_bytes)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED,
                          "opencl: allocation of %zu bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu bytes) of '%s'",
                          bytes, (unsigned long long)d->info->caps.max_alloc_bytes, d->info->caps.name);
    dsrt_ocl_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a buffer record");
    cl_int err;
    b->mem = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!b->mem) {
        free(b);
        return dsrt_ocl_fail(err, "allocating %zu bytes on '%s'", bytes, d->info->caps.name);
    }
    b->size = bytes;
    *handle = b;
    return DSRT_OK;
}

static void dsrt_ocl_buffer_free(void *dctx, void *handle)
{
    dsrt_ocl_buffer *b = handle;
    if (!b) return;
    clReleaseMemObject(b->mem); /* the driver keeps it until enqueued work that uses it has finished */
    free(b);
}

/* Zero-copy wrapping only where the device shares the host's memory; elsewhere the caller uploads. */
static dsrt_status dsrt_ocl_buffer_wrap_host(void *dctx, void *ptr, size_t bytes, void **handle)
{
    dsrt_ocl_device *d = dctx;
    if (!d->info->caps.unified_memory)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "opencl: '%s' does not share host memory; allocate and upload instead",
                          d->info->caps.name);
    dsrt_ocl_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a buffer record");
    cl_int err;
    b->mem = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, ptr, &err);
    if (!b->mem) {
        free(b);
        return dsrt_ocl_fail(err, "wrapping %zu bytes of host memory on '%s'", bytes, d->info->caps.name);
    }
    b->size = bytes;
    *handle = b;
    return DSRT_OK;
}

static const dsrt_backend_vtable dsrt_ocl_vtable = {
    .abi_version = DSRT_BACKEND_ABI_VERSION,
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = "opencl",
    .init = dsrt_ocl_init,
    .deinit = dsrt_ocl_deinit,
    .device_count = dsrt_ocl_device_count,
    .device_caps = dsrt_ocl_device_caps,
    .device_open = dsrt_ocl_device_open,
    .device_close = dsrt_ocl_device_close,
    .buffer_alloc = dsrt_ocl_buffer_alloc,
    .buffer_free = dsrt_ocl_buffer_free,
    .buffer_wrap_host = dsrt_ocl_buffer_wrap_host,
    .stream_create = dsrt_ocl_stream_create,
    .stream_destroy = dsrt_ocl_stream_destroy,
    .stream_sync = dsrt_ocl_stream_sync,
    .write = dsrt_ocl_write,
    .read = dsrt_ocl_read,
    .copy = dsrt_ocl_copy,
    .fill = dsrt_ocl_fill,
    .event_create = dsrt_ocl_event_create,
    .event_destroy = dsrt_ocl_event_destroy,
    .event_record = dsrt_ocl_event_record,
    .stream_wait_event = dsrt_ocl_stream_wait_event,
    .event_sync = dsrt_ocl_event_sync,
    .event_query = dsrt_ocl_event_query,
    .supports_op = dsrt_ocl_supports_op,
    .enqueue_op = dsrt_ocl_enqueue_op,
};

const dsrt_backend_vtable *dsrt_opencl_backend_vtable(void) { return &dsrt_ocl_vtable; }
