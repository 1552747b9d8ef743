/* rocBLAS, loaded at run time for the HIP backend's float GEMMs (see hip_rocblas.h). No rocBLAS header
 * is needed to build: the handful of types used are declared here from rocBLAS's C ABI, whose enum
 * values are fixed across releases (rocblas-types.h: operations 111/112, datatypes f16 150, f32 151,
 * bf16 168, status 0 = success) and whose gemm_ex / gemm_strided_batched_ex signatures have been stable
 * since rocBLAS 2 (ROCm 3). Built into the HIP backend only. */
#include "hip_rocblas.h"

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int rb_status; /* rocblas_status */
typedef void *rb_handle;
enum { RB_SUCCESS = 0, RB_NOT_IMPLEMENTED = 2, RB_INVALID_SIZE = 4, RB_MEMORY_ERROR = 5, RB_INVALID_VALUE = 11 };
enum { RB_OP_N = 111, RB_OP_T = 112 };
enum { RB_F16 = 150, RB_F32 = 151, RB_BF16 = 168 };
enum { RB_ALGO_STANDARD = 0, RB_FLAGS_NONE = 0 };

struct dsrt_hip_rocblas {
    void *lib;
    rb_status (*create_handle)(rb_handle *);
    rb_status (*destroy_handle)(rb_handle);
    rb_status (*set_stream)(rb_handle, hipStream_t);
    rb_status (*gemm_ex)(rb_handle, int, int, int32_t, int32_t, int32_t, const void *, const void *, int, int32_t,
                         const void *, int, int32_t, const void *, const void *, int, int32_t, void *, int, int32_t,
                         int, int, int32_t, uint32_t);
    rb_status (*gemm_sb_ex)(rb_handle, int, int, int32_t, int32_t, int32_t, const void *, const void *, int, int32_t,
                            int64_t, const void *, int, int32_t, int64_t, const void *, const void *, int, int32_t,
                            int64_t, void *, int, int32_t, int64_t, int32_t, int, int, int32_t, uint32_t);
    const char *(*status_string)(rb_status); /* optional (rocBLAS 2.38+) */
};

/* ---- one HIP runtime per process ---- */

typedef struct hip_rt_scan {
    int n;
    char names[2][96];
} hip_rt_scan;

static int hip_rt_visit(struct dl_phdr_info *info, size_t size, void *user)
{
    (void)size;
    hip_rt_scan *sc = user;
    const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    base = base ? base + 1 : info->dlpi_name;
    if (base && strncmp(base, "libamdhip64.so", 14) == 0) {
        if (sc->n < 2) snprintf(sc->names[sc->n], sizeof sc->names[0], "%s", info->dlpi_name);
        sc->n++;
    }
    return 0;
}

bool dsrt_hip_runtimes_differ(char *why, size_t why_len)
{
    hip_rt_scan sc;
    memset(&sc, 0, sizeof sc);
    dl_iterate_phdr(hip_rt_visit, &sc);
    if (sc.n < 2) return false;
    snprintf(why, why_len, "two HIP runtimes would share the process (%s and %s)", sc.names[0], sc.names[1]);
    return true;
}

/* ---- loading ---- */

dsrt_hip_rocblas *dsrt_hip_rocblas_load(char *why, size_t why_len)
{
    /* The unversioned name first (a development install), then the sonames of ROCm 7, 6 and 5. */
    static const char *const names[] = {"librocblas.so", "librocblas.so.5", "librocblas.so.4", "librocblas.so.3",
                                        "librocblas.so.0"};
    const char *env = getenv("DSRT_ROCBLAS_LIBRARY");
    void *lib = NULL;
    char first_err[120] = "";
    if (env && *env) {
        lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!lib) snprintf(first_err, sizeof first_err, "%.118s", dlerror());
    } else {
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !lib; i++) {
            lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
            if (!lib && i == 0) snprintf(first_err, sizeof first_err, "%.118s", dlerror());
        }
    }
    if (!lib) {
        snprintf(why, why_len, "rocBLAS not found (%s); float GEMMs run on dsrt's own kernels", first_err);
        return NULL;
    }
    char rt[160];
    if (dsrt_hip_runtimes_differ(rt, sizeof rt)) {
        /* rocBLAS of another ROCm release pulled in its own libamdhip64: memory and streams of one
         * runtime are not valid in the other */
        dlclose(lib);
        snprintf(why, why_len, "rocBLAS not used: %.150s", rt);
        return NULL;
    }
    dsrt_hip_rocblas *r = calloc(1, sizeof *r);
    if (!r) {
        dlclose(lib);
        snprintf(why, why_len, "rocBLAS not used: out of memory");
        return NULL;
    }
    r->lib = lib;
    struct {
        void **slot;
        const char *sym;
    } syms[] = {
        {(void **)&r->create_handle, "rocblas_create_handle"},
        {(void **)&r->destroy_handle, "rocblas_destroy_handle"},
        {(void **)&r->set_stream, "rocblas_set_stream"},
        {(void **)&r->gemm_ex, "rocblas_gemm_ex"},
        {(void **)&r->gemm_sb_ex, "rocblas_gemm_strided_batched_ex"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].sym);
        if (!*syms[i].slot) {
            snprintf(why, why_len, "rocBLAS not used: the library lacks %s (too old?)", syms[i].sym);
            dlclose(lib);
            free(r);
            return NULL;
        }
    }
    *(void **)&r->status_string = dlsym(lib, "rocblas_status_to_string");
    return r;
}

void dsrt_hip_rocblas_unload(dsrt_hip_rocblas *lib)
{
    if (!lib) return;
    dlclose(lib->lib);
    free(lib);
}

/* ---- calls ---- */

static dsrt_status rb_check(const dsrt_hip_rocblas *lib, rb_status st, const char *what)
{
    if (st == RB_SUCCESS) return DSRT_OK;
    const char *text = lib->status_string ? lib->status_string(st) : NULL;
    /* refusals of types or sizes let the caller fall back to its own kernel */
    dsrt_code code = (st == RB_NOT_IMPLEMENTED || st == RB_INVALID_SIZE || st == RB_INVALID_VALUE)
                         ? DSRT_CODE_UNIMPLEMENTED
                     : st == RB_MEMORY_ERROR ? DSRT_CODE_RESOURCE_EXHAUSTED
                                             : DSRT_CODE_DEVICE;
    return dsrt_error(code, "rocBLAS: %s failed: status %d%s%s", what, st, text ? ", " : "", text ? text : "");
}

static bool rb_type(dsrt_dtype t, int *out)
{
    switch (t) {
    case DSRT_F32: *out = RB_F32; return true;
    case DSRT_BF16: *out = RB_BF16; return true;
    case DSRT_F16: *out = RB_F16; return true;
    default: return false;
    }
}

static bool fits_i32(int64_t v) { return v >= 0 && v <= INT32_MAX; }

dsrt_status dsrt_hip_rocblas_gemm(const dsrt_hip_rocblas *lib, void **handle, gpuStream_t stream,
                                  const dsrt_gpu_blas_gemm *g, float alpha, const void *A, const void *B, void *D)
{
    int ta, td;
    if (!rb_type(g->in, &ta) || !rb_type(g->out, &td))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "rocBLAS: dtypes %s -> %s", dsrt_dtype_name(g->in),
                          dsrt_dtype_name(g->out));
    /* rocBLAS's LP64 interface takes 32-bit sizes and leading dimensions */
    if (!fits_i32(g->m) || !fits_i32(g->n) || !fits_i32(g->k) || !fits_i32(g->lda) || !fits_i32(g->ldb) ||
        !fits_i32(g->ldd) || !fits_i32(g->batch))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "rocBLAS: sizes beyond 32 bits");
    if (!*handle) DSRT_TRY(rb_check(lib, lib->create_handle((rb_handle *)handle), "rocblas_create_handle"));
    DSRT_TRY(rb_check(lib, lib->set_stream((rb_handle)*handle, stream), "rocblas_set_stream"));
    float beta = 0; /* C is D and is not read */
    int opa = g->transa ? RB_OP_T : RB_OP_N;
    int32_t m = (int32_t)g->m, n = (int32_t)g->n, k = (int32_t)g->k;
    int32_t lda = (int32_t)g->lda, ldb = (int32_t)g->ldb, ldd = (int32_t)g->ldd;
    if (g->batch <= 1)
        return rb_check(lib,
                        lib->gemm_ex((rb_handle)*handle, opa, RB_OP_N, m, n, k, &alpha, A, ta, lda, B, ta, ldb, &beta, D,
                                     td, ldd, D, td, ldd, RB_F32, RB_ALGO_STANDARD, 0, RB_FLAGS_NONE),
                        "rocblas_gemm_ex");
    return rb_check(lib,
                    lib->gemm_sb_ex((rb_handle)*handle, opa, RB_OP_N, m, n, k, &alpha, A, ta, lda, g->sa, B, ta, ldb,
                                    g->sb, &beta, D, td, ldd, g->sd, D, td, ldd, g->sd, (int32_t)g->batch, RB_F32,
                                    RB_ALGO_STANDARD, 0, RB_FLAGS_NONE),
                    "rocblas_gemm_strided_batched_ex");
}

void dsrt_hip_rocblas_destroy_handle(const dsrt_hip_rocblas *lib, void *handle)
{
    if (lib && handle) lib->destroy_handle((rb_handle)handle);
}
