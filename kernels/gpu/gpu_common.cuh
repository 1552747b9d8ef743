/* Device helpers shared by the GPU kernels: element codecs that round exactly like the CPU backend
 * (quant/), typed loads and stores, block reductions, launch checks. Included by every kernels/gpu
 * source; C-like CUDA (static functions, no classes). */
#ifndef DSRT_GPU_COMMON_CUH
#define DSRT_GPU_COMMON_CUH

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dsrt/buffer.h"
#include "dsrt/dtype.h"
#include "gpu_compat.h"
#include "gpu_ops.h"

/* ---- host side ---- */

/* Status for the last launch of `what` (every launch is followed by this check). */
static inline dsrt_status dsrt_gpu_launch_status(const char *op, const char *what)
{
    gpuError_t e = gpuGetLastError();
    if (e == gpuSuccess) return DSRT_OK;
    return dsrt_error(DSRT_CODE_DEVICE, "%s: launching %s failed: %s", op, what, gpuGetErrorString(e));
}

#define GPU_CHECK_LAUNCH(op, what) DSRT_TRY(dsrt_gpu_launch_status(op, what))

static inline gpuStream_t gpu_stream(const dsrt_gpu_ctx *c) { return (gpuStream_t)c->stream; }

/* ---- early launch (programmatic dependent launch, CUDA sm_90+) ----
 * A kernel launched by gpu_launch_early may start while the kernel before it in the stream is still
 * running (once every block of that kernel has started and called gpu_grid_release), so its launch and
 * whatever it does before gpu_grid_wait() (fetching weights that the backend knows no running kernel
 * writes: dsrt_gpu_ctx.params_settled) overlap the previous kernel. Such a kernel must call gpu_grid_wait() before it reads anything an earlier kernel
 * wrote and before it writes anything; the wait returns when every earlier kernel has finished and its
 * writes are visible. Elsewhere (HIP, sm_80, DSRT_CUDA_NO_PDL=1) it is an ordinary launch and both calls
 * do nothing. Inside stream capture the overlap becomes a programmatic edge of the graph. */
GPU_DEV void gpu_grid_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(DSRT_GPU_HIP)
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

GPU_DEV void gpu_grid_release(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(DSRT_GPU_HIP)
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

template <typename... P, typename... A>
static inline void gpu_launch_early(const dsrt_gpu_ctx *c, void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                                    A... args)
{
#ifndef DSRT_GPU_HIP
    if (c->early_launch) {
        cudaLaunchConfig_t cfg;
        cudaLaunchAttribute at[1];
        memset(&cfg, 0, sizeof cfg);
        memset(at, 0, sizeof at);
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = gpu_stream(c);
        cfg.attrs = at;
        cfg.numAttrs = 1;
        (void)cudaLaunchKernelEx(&cfg, k, args...); /* an error is left for GPU_CHECK_LAUNCH */
        return;
    }
#endif
    k<<<grid, block, smem, gpu_stream(c)>>>(args...);
}

static inline unsigned gpu_blocks(int64_t n, int per)
{
    int64_t b = (n + per - 1) / per;
    return (unsigned)(b < 1 ? 1 : b);
}

/* Checks that a kernel's dynamic shared memory fits the device and, on CUDA, raises the kernel's limit
 * when it needs more than the default 48 KB. */
static inline dsrt_status gpu_smem_limit(const dsrt_gpu_ctx *c, const void *fn, size_t bytes, const char *op)
{
#ifdef DSRT_GPU_HIP
    /* AMD has no opt-in: a block may use the whole LDS (smem_optin), static and dynamic together, and
     * a launch past it fails with a bare "invalid argument". Static shared arrays of these kernels stay
     * under 32 KiB, so only larger dynamic sizes need the kernel's own figure. */
    size_t stat = 0;
    if (bytes > 32 * 1024) {
        struct hipFuncAttributes fa;
        if (hipFuncGetAttributes(&fa, fn) == hipSuccess) stat = fa.sharedSizeBytes;
        else (void)hipGetLastError();
    }
    if (bytes + stat > (size_t)c->smem_optin)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: needs %zu bytes of shared memory (%zu static), the device has %d",
                          op, bytes + stat, stat, c->smem_optin);
    return DSRT_OK;
#else
    /* Without the opt-in a block's dynamic memory may use what its static arrays leave of 48 KB. These
     * kernels' static arrays stay under 32 KiB, so only larger sizes need the kernel's own figure. */
    if (bytes <= 16 * 1024) return DSRT_OK;
    struct cudaFuncAttributes fa;
    size_t stat = 0;
    if (cudaFuncGetAttributes(&fa, fn) == cudaSuccess) stat = fa.sharedSizeBytes;
    else (void)cudaGetLastError();
    if (bytes + stat <= 48 * 1024) return DSRT_OK;
    if (bytes + stat > (size_t)c->smem_optin)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: needs %zu bytes of shared memory (%zu static), the device allows %d",
                          op, bytes + stat, stat, c->smem_optin);
    gpuError_t e = gpuFuncSetAttribute(fn, gpuFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != gpuSuccess)
        return dsrt_error(DSRT_CODE_DEVICE, "%s: cannot raise shared memory to %zu bytes: %s", op, bytes,
                          gpuGetErrorString(e));
    return DSRT_OK;
#endif
}

/* Whether a tensor-core (mma.sync) path may be chosen: the device allows it and this build has one.
 * HIP builds compile those kernels empty, so they must never be launched there. */
static inline bool gpu_use_mma(const dsrt_gpu_ctx *c)
{
#ifdef DSRT_GPU_HIP
    (void)c;
    return false;
#else
    return c->use_mma;
#endif
}

/* Whether a wgmma (sm_90a) kernel may be chosen: decided when the device opened (use_wgmma). A build
 * whose 9.0 image lacks the sm_90a features compiles such kernels to an error report instead. */
static inline bool gpu_use_wgmma(const dsrt_gpu_ctx *c)
{
#ifdef DSRT_GPU_HIP
    (void)c;
    return false;
#else
    return c->use_wgmma;
#endif
}

static inline dsrt_status gpu_scratch(const dsrt_gpu_ctx *c, size_t bytes, void **p)
{
    return c->scratch(c->scratch_user, bytes ? bytes : 1, p);
}

/* ---- element codecs (bit-exact with quant/src) ---- */

GPU_DEV float gpu_bits_f(uint32_t u) { return __int_as_float((int)u); }
GPU_DEV uint32_t gpu_f_bits(float f) { return (uint32_t)__float_as_int(f); }

GPU_DEV float gpu_bf16_to_f32(uint16_t v) { return gpu_bits_f((uint32_t)v << 16); }

GPU_DEV uint16_t gpu_f32_to_bf16(float x)
{
    uint32_t u = gpu_f_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

GPU_DEV float gpu_round_bf16(float x) { return gpu_bf16_to_f32(gpu_f32_to_bf16(x)); }

GPU_DEV float gpu_f16_to_f32(uint16_t v)
{
    uint32_t sign = (uint32_t)(v >> 15) << 31, exp = (v >> 10) & 0x1f, man = v & 0x3ff;
    if (exp == 0x1f) return gpu_bits_f(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        float m = (float)man * 5.9604644775390625e-08f; /* 2^-24 */
        return sign ? -m : m;
    }
    return gpu_bits_f(sign | ((exp + 112) << 23) | (man << 13));
}

GPU_DEV uint16_t gpu_f32_to_f16(float x)
{
    uint32_t u = gpu_f_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if ((a >> 23) == 0) return (uint16_t)sign;
    int e = (int)(a >> 23) - 127;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    int shift = e < -14 ? 13 + (-14 - e) : 13;
    if (shift > 25) return (uint16_t)sign;
    uint32_t kept = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (kept & 1))) kept++;
    if (e < -14) return (uint16_t)(sign | kept);
    uint32_t be = (uint32_t)(e + 15);
    if (kept >> 11) {
        kept >>= 1;
        be++;
    }
    return (uint16_t)(sign | (be << 10) | (kept & 0x3ffu));
}

GPU_DEV float gpu_e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80) << 24, exp = (v >> 3) & 0xf, man = v & 7;
    if (exp == 0xf && man == 7) return gpu_bits_f(sign | 0x7fc00000u);
    if (exp == 0) {
        float m = (float)man * 0.001953125f; /* 2^-9 */
        return sign ? -m : m;
    }
    return gpu_bits_f(sign | ((exp + 120) << 23) | (man << 20));
}

GPU_DEV float gpu_e5m2_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80) << 24, exp = (v >> 2) & 0x1f, man = v & 3;
    if (exp == 0x1f) return gpu_bits_f(sign | 0x7f800000u | (man << 21));
    if (exp == 0) {
        float m = (float)man * 1.52587890625e-05f; /* 2^-16 */
        return sign ? -m : m;
    }
    return gpu_bits_f(sign | ((exp + 112) << 23) | (man << 21));
}

/* Rounds |x| (bits a, finite) to `mbits` mantissa bits and bias `bias`: code magnitude. */
GPU_DEV uint32_t gpu_round_minifloat(uint32_t a, int mbits, int bias)
{
    if ((a >> 23) == 0) return 0;
    int e = (int)(a >> 23) - 127;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    int emin = 1 - bias;
    int shift = e < emin ? 23 - mbits + (emin - e) : 23 - mbits;
    if (shift > 25) return 0;
    uint32_t kept = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (kept & 1))) kept++;
    if (e < emin) return kept;
    int be = e + bias;
    if (kept >> (mbits + 1)) {
        kept >>= 1;
        be++;
    }
    return ((uint32_t)be << mbits) | (kept & ((1u << mbits) - 1));
}

GPU_DEV uint8_t gpu_f32_to_e4m3(float x)
{
    uint32_t u = gpu_f_bits(x), sign = (u >> 24) & 0x80, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7f);
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7e);
    uint32_t c = gpu_round_minifloat(a, 3, 7);
    if (c > 0x7e) c = 0x7e;
    return (uint8_t)(sign | c);
}

GPU_DEV uint8_t gpu_f32_to_e5m2(float x)
{
    uint32_t u = gpu_f_bits(x), sign = (u >> 24) & 0x80, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7e);
    if (a == 0x7f800000u) return (uint8_t)(sign | 0x7c);
    uint32_t c = gpu_round_minifloat(a, 2, 15);
    if (c >= 0x7c) c = 0x7c;
    return (uint8_t)(sign | c);
}

GPU_DEV float gpu_ue8m0_to_f32(uint8_t e)
{
    /* selects, not branches: the FP8 GEMV reads one per weight block in its inner loop */
    uint32_t u = (uint32_t)e << 23;
    u = e == 0 ? 0x00400000u : u; /* 2^-127: an f32 subnormal */
    u = e == 0xff ? 0x7fc00000u : u;
    return gpu_bits_f(u);
}

/* UE8M0 byte of a power-of-two scale (validation guarantees pow2 where this is used). */
GPU_DEV uint8_t gpu_f32_to_ue8m0(float s)
{
    uint32_t u = gpu_f_bits(s);
    uint32_t e = (u >> 23) & 0xff;
    if (e == 0) return 0; /* 2^-127 (subnormal f32) */
    return (uint8_t)e;
}

/* The activation-quantization scale of a block (dsrt_act_scale). */
GPU_DEV float gpu_act_scale(float amax, bool pow2)
{
    if (!(amax >= 1e-4f)) amax = 1e-4f;
    const float inv = 1.0f / 448.0f;
    float r = amax * inv;
    if (!pow2) return r;
    uint32_t bits = gpu_f_bits(r);
    if ((bits & 0x7fffffffu) == 0x7f800000u) return 1.7014118346046923e+38f; /* 2^127 */
    int exp = (int)((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffffu) != 0 ? 1 : 0);
    return ldexpf(1.0f, exp);
}

GPU_DEV uint8_t gpu_quant_e4m3(float x, float s)
{
    float v = x / s;
    v = v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v;
    return gpu_f32_to_e4m3(v);
}

/* Two values quantized to e4m3 with a power-of-two scale (inv_s = 1/s, exact) and read back as f32:
 * the values gpu_quant_e4m3 encodes. sm_89+ converts in hardware (saturating, round to nearest
 * even: the same as clamping to +-448 first). */
GPU_DEV void gpu_e4m3_round2(float a, float b, float inv_s, float &qa, float &qb)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && !defined(DSRT_GPU_HIP)
    uint16_t q;
    uint32_t h;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(q) : "f"(b * inv_s), "f"(a * inv_s));
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(h) : "h"(q));
    asm("{\n.reg .f16 l, u;\nmov.b32 {l, u}, %2;\ncvt.f32.f16 %0, l;\ncvt.f32.f16 %1, u;\n}\n"
        : "=f"(qa), "=f"(qb)
        : "r"(h));
#else
    float va = a * inv_s, vb = b * inv_s;
    va = va > 448.0f ? 448.0f : va < -448.0f ? -448.0f : va;
    vb = vb > 448.0f ? 448.0f : vb < -448.0f ? -448.0f : vb;
    qa = gpu_e4m3_to_f32(gpu_f32_to_e4m3(va));
    qb = gpu_e4m3_to_f32(gpu_f32_to_e4m3(vb));
#endif
}

/* ---- typed element access ---- */

GPU_DEV float gpu_ld(const void *base, int dt, int64_t i)
{
    switch (dt) {
    case DSRT_F32: return ((const float *)base)[i];
    case DSRT_BF16: return gpu_bf16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_F16: return gpu_f16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_E4M3: return gpu_e4m3_to_f32(((const uint8_t *)base)[i]);
    case DSRT_E5M2: return gpu_e5m2_to_f32(((const uint8_t *)base)[i]);
    case DSRT_UE8M0: return gpu_ue8m0_to_f32(((const uint8_t *)base)[i]);
    case DSRT_I32: return (float)((const int32_t *)base)[i];
    case DSRT_I64: return (float)((const int64_t *)base)[i];
    case DSRT_U8: return (float)((const uint8_t *)base)[i];
    default: return gpu_bits_f(0x7fc00000u);
    }
}

GPU_DEV void gpu_st(void *base, int dt, int64_t i, float v)
{
    switch (dt) {
    case DSRT_F32: ((float *)base)[i] = v; break;
    case DSRT_BF16: ((uint16_t *)base)[i] = gpu_f32_to_bf16(v); break;
    case DSRT_F16: ((uint16_t *)base)[i] = gpu_f32_to_f16(v); break;
    case DSRT_E4M3: ((uint8_t *)base)[i] = gpu_f32_to_e4m3(v); break;
    case DSRT_E5M2: ((uint8_t *)base)[i] = gpu_f32_to_e5m2(v); break;
    default: break;
    }
}

/* v[n] = element idx[n] of a tensor of dtype dt, 0 where idx[n] < 0. The dtype switch sits outside
 * the loop so the N loads issue together: a row of a decode step is one block's work, and loads made
 * one latency at a time (gpu_ld in a loop) leave such a kernel waiting on memory. */
template <int N> GPU_DEV void gpu_ld_n(const void *base, int dt, const int64_t *idx, float *v)
{
    if (dt == DSRT_F32) {
#pragma unroll
        for (int n = 0; n < N; n++) v[n] = idx[n] >= 0 ? ((const float *)base)[idx[n]] : 0.0f;
    } else if (dt == DSRT_BF16) {
#pragma unroll
        for (int n = 0; n < N; n++) v[n] = idx[n] >= 0 ? gpu_bf16_to_f32(((const uint16_t *)base)[idx[n]]) : 0.0f;
    } else {
#pragma unroll
        for (int n = 0; n < N; n++) v[n] = idx[n] >= 0 ? gpu_ld(base, dt, idx[n]) : 0.0f;
    }
}

/* Eight bf16 values at a 16-byte aligned address, as floats (one 16-byte load). */
GPU_DEV void gpu_ld8_bf16(const void *p, float *v)
{
    uint4 u = *(const uint4 *)p;
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        v[2 * j] = gpu_bits_f(w[j] << 16);
        v[2 * j + 1] = gpu_bits_f(w[j] & 0xffff0000u);
    }
}

/* Eight floats rounded to bf16 and stored at a 16-byte aligned address (one 16-byte store). */
GPU_DEV void gpu_st8_bf16(void *p, const float *v)
{
    uint32_t w[4];
#pragma unroll
    for (int j = 0; j < 4; j++) w[j] = (uint32_t)gpu_f32_to_bf16(v[2 * j]) | ((uint32_t)gpu_f32_to_bf16(v[2 * j + 1]) << 16);
    *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
}

/* Eight values of a bf16 or f32 vector (16- or 32-byte aligned), as floats. */
GPU_DEV void gpu_ld8(const void *p, int dt, float *v)
{
    if (dt == DSRT_BF16) {
        gpu_ld8_bf16(p, v);
        return;
    }
    float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/* v[n] = element off + i0 + n*step of a row (0 where i0 + n*step >= len). */
template <int N>
GPU_DEV void gpu_ld_row(const void *base, int dt, int64_t off, int64_t i0, int64_t step, int64_t len, float *v)
{
    int64_t idx[N];
#pragma unroll
    for (int n = 0; n < N; n++) idx[n] = i0 + n * step < len ? off + i0 + n * step : -1;
    gpu_ld_n<N>(base, dt, idx, v);
}

/* The value an output of dtype dt holds for v. */
GPU_DEV float gpu_round(int dt, float v)
{
    switch (dt) {
    case DSRT_BF16: return gpu_round_bf16(v);
    case DSRT_F16: return gpu_f16_to_f32(gpu_f32_to_f16(v));
    default: return v;
    }
}

GPU_DEV int32_t gpu_i32(const dsrt_gpu_tensor &t, int64_t i) { return ((const int32_t *)t.p)[i]; }

/* Element offset of row r (every index of the leading dims, row-major). */
GPU_DEV int64_t gpu_row_offset(const dsrt_gpu_tensor &t, int64_t r)
{
    int64_t off = 0;
    for (int d = t.ndim - 2; d >= 0; d--) {
        off += (r % t.shape[d]) * t.stride[d];
        r /= t.shape[d];
    }
    return off;
}

/* Scale of element (lead, r, c) of a block-scaled tensor of rank 2 or 3 (dsrt_cpu_block_scale). */
/* The FP8 GEMM kernels' form of the above, split so that no 64-bit division runs per K block (they
 * cost more instructions than the block's tensor work): gpu_scale_row once per weight row, then
 * gpu_scale_kcol once per 128-wide K block, then gpu_scale_at(t, row + kcol). Scale blocks are a
 * multiple of 128 wide (the HAL checks it). */
GPU_DEV int64_t gpu_scale_row(const dsrt_gpu_tensor &t, int64_t lead, int64_t r)
{
    int nd = t.ndim;
    return (r / t.sblock[0]) * (nd >= 2 ? t.sstride[nd - 2] : 0) + (nd == 3 ? lead * t.sstride[0] : 0);
}

GPU_DEV int64_t gpu_scale_kcol(const dsrt_gpu_tensor &t, int64_t kb)
{
    int per = t.sblock[1] / 128;
    return (per == 1 ? kb : (int64_t)((uint32_t)kb / (uint32_t)per)) * t.sstride[t.ndim - 1];
}

GPU_DEV float gpu_scale_at(const dsrt_gpu_tensor &t, int64_t idx)
{
    return t.sdtype == DSRT_UE8M0 ? gpu_ue8m0_to_f32(((const uint8_t *)t.sp)[idx]) : ((const float *)t.sp)[idx];
}

GPU_DEV float gpu_block_scale(const dsrt_gpu_tensor &t, int64_t lead, int64_t r, int64_t c)
{
    int nd = t.ndim;
    int64_t idx = (r / t.sblock[0]) * (nd >= 2 ? t.sstride[nd - 2] : 0) + (c / t.sblock[1]) * t.sstride[nd - 1];
    if (nd == 3) idx += lead * t.sstride[0];
    return t.sdtype == DSRT_UE8M0 ? gpu_ue8m0_to_f32(((const uint8_t *)t.sp)[idx]) : ((const float *)t.sp)[idx];
}

/* ---- reductions ---- */

GPU_DEV float gpu_warp_sum(float v)
{
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) v += gpu_shfl_xor(v, m);
    return v;
}

GPU_DEV float gpu_warp_max(float v)
{
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) v = fmaxf(v, gpu_shfl_xor(v, m));
    return v;
}

/* Block-wide sum; `sh` holds at least 64 floats; every thread gets the total. */
GPU_DEV float gpu_block_sum(float v, float *sh)
{
    v = gpu_warp_sum(v);
    int nw = gpu_nwarps();
    __syncthreads(); /* sh may still be read from an earlier call */
    if (gpu_lane() == 0) sh[gpu_warp()] = v;
    __syncthreads();
    float t = 0;
    for (int w = 0; w < nw; w++) t += sh[w];
    return t;
}

GPU_DEV float gpu_block_max(float v, float *sh)
{
    v = gpu_warp_max(v);
    int nw = gpu_nwarps();
    __syncthreads();
    if (gpu_lane() == 0) sh[gpu_warp()] = v;
    __syncthreads();
    return gpu_warp_max(gpu_lane() < nw ? sh[gpu_lane()] : sh[0]); /* max: any order gives the same */
}

GPU_DEV double gpu_block_sum_d(double v, double *sh)
{
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) v += gpu_shfl_xor_d(v, m);
    int nw = gpu_nwarps();
    __syncthreads();
    if (gpu_lane() == 0) sh[gpu_warp()] = v;
    __syncthreads();
    double t = 0;
    for (int w = 0; w < nw; w++) t += sh[w];
    return t;
}

/* Given each wave's total in sh[0 .. nw) (nw <= the wave width), the sum over waves before wave w;
 * *total gets the sum of all. Every wave scans the totals with shuffles: where each thread summed them
 * one by one, a 32-wave block spent ~160 instructions a thread per scan (the top-k's passes). */
GPU_DEV int gpu_waves_before(const int *sh, int nw, int w, int *total)
{
    int lane = gpu_lane(), x = lane < nw ? sh[lane] : 0;
    for (int o = 1; o < GPU_WARP_SIZE; o <<= 1) {
        int y = gpu_shfl_i(x, lane >= o ? lane - o : lane);
        if (lane >= o) x += y;
    }
    int below = gpu_shfl_i(x, w > 0 ? w - 1 : 0);
    *total = gpu_shfl_i(x, nw - 1);
    return w > 0 ? below : 0;
}

/* Exclusive prefix count of `flag` over the block in thread order; *total receives the block total.
 * `sh` holds at least 64 ints. */
GPU_DEV int gpu_block_scan_flag(int flag, int *sh, int *total)
{
    uint64_t b = gpu_ballot(flag);
    int below = gpu_popc64(b & gpu_lanes_below());
    int nw = gpu_nwarps(), w = gpu_warp();
    __syncthreads();
    if (gpu_lane() == 0) sh[w] = gpu_popc64(b);
    __syncthreads();
    return gpu_waves_before(sh, nw, w, total) + below;
}

/* Exclusive prefix sum of one int per thread in thread order; *total gets the sum (every thread). Shuffles
 * inside each wave, then the waves' totals: two barriers instead of two per doubling step. sh holds one
 * int per wave; the block's threads must all call it. */
GPU_DEV int gpu_block_scan(int v, int *sh, int *total)
{
    int lane = gpu_lane(), w = gpu_warp(), nw = gpu_nwarps(), x = v;
    for (int o = 1; o < GPU_WARP_SIZE; o <<= 1) {
        int y = gpu_shfl_i(x, lane >= o ? lane - o : lane);
        if (lane >= o) x += y;
    }
    __syncthreads(); /* the previous scan's readers are done with sh */
    if (lane == GPU_WARP_SIZE - 1) sh[w] = x;
    __syncthreads();
    return gpu_waves_before(sh, nw, w, total) + x - v;
}

/* ---- block-wide bitonic sort ---- */

GPU_DEV int32_t gpu_shfl_xor_any(int32_t v, int m) { return gpu_shfl_xor_i(v, m); }
GPU_DEV unsigned long long gpu_shfl_xor_any(unsigned long long v, int m) { return gpu_shfl_xor_u64(v, m); }

/* Compare-exchanges of one sort size for strides top .. 1 (top <= the wave width), on registers: each
 * lane holds two neighbouring elements of its wave's chunk of 2 * GPU_WARP_SIZE. */
template <typename T> GPU_DEV void gpu_bitonic_wave(T *s, int p2, int size_lo, int size_hi, int top)
{
    int W = GPU_WARP_SIZE, lane = gpu_lane();
    for (int c0 = gpu_warp() * 2 * W; c0 < p2; c0 += gpu_nwarps() * 2 * W) {
        int e = c0 + 2 * lane;
        bool in = e < p2;
        T x0 = in ? s[e] : T(0), x1 = in ? s[e + 1] : T(0); /* lanes past p2 hold fillers (never paired with real ones) */
        for (int size = size_lo; size <= size_hi; size <<= 1) {
            bool up = (e & size) == 0;
            for (int stride = size == size_lo ? top : size / 2; stride > 0; stride >>= 1) {
                if (stride == 1) {
                    if ((x0 > x1) == up) {
                        T t = x0;
                        x0 = x1;
                        x1 = t;
                    }
                } else {
                    T y0 = gpu_shfl_xor_any(x0, stride / 2), y1 = gpu_shfl_xor_any(x1, stride / 2);
                    bool keep_min = ((e & stride) == 0) == up;
                    x0 = keep_min ? (y0 < x0 ? y0 : x0) : (y0 > x0 ? y0 : x0);
                    x1 = keep_min ? (y1 < x1 ? y1 : x1) : (y1 > x1 ? y1 : x1);
                }
            }
        }
        if (in) {
            s[e] = x0;
            s[e + 1] = x1;
        }
    }
}

/* Sorts s[0 .. p2) ascending (p2 a power of two) with the whole block. The network is the usual bitonic
 * one; strides of two waves and more go through shared memory with a barrier each, the shorter ones
 * run on registers inside each wave (no barriers), which cuts the barriers of a 2048-entry sort from
 * 66 to 21. */
template <typename T> GPU_DEV void gpu_bitonic_sort(T *s, int p2)
{
    int W = GPU_WARP_SIZE;
    __syncthreads();
    if (p2 < 2) return;
    int first = p2 < 2 * W ? p2 : 2 * W;
    gpu_bitonic_wave<T>(s, p2, 2, first, 1);
    __syncthreads();
    for (int size = 4 * W; size <= p2; size <<= 1) {
        for (int stride = size / 2; stride >= 2 * W; stride >>= 1) {
            for (int i = threadIdx.x; i < p2 / 2; i += blockDim.x) {
                int lo = ((i & ~(stride - 1)) << 1) | (i & (stride - 1)), hi = lo + stride; /* stride: 2^n */
                bool up = (lo & size) == 0;
                T x = s[lo], y = s[hi];
                if ((x > y) == up) {
                    s[lo] = y;
                    s[hi] = x;
                }
            }
            __syncthreads();
        }
        gpu_bitonic_wave<T>(s, p2, size, size, W);
        __syncthreads();
    }
}

#endif
