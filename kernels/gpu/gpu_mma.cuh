/* Tensor-core building blocks for CUDA sm_80+: mma.sync, ldmatrix, cp.async, and the FP8 -> f16 trick.
 * Everything here compiles to nothing outside DSRT_GPU_HAVE_MMA; callers keep a plain path for HIP and
 * older devices.
 *
 * FP8 on f16 tensor cores: an e4m3 byte b becomes the f16 bit pattern ((b & 0x80) << 8) |
 * ((b & 0x7f) << 7), whose value is exactly b * 2^-8 (the exponent field lands in f16's, the three
 * mantissa bits on top of f16's, subnormals map to subnormals). Products of two such values are
 * exact in the fp32 accumulators and carry 2^-16, folded into the block scale afterwards. This runs
 * on sm_80 (no FP8 units) and on Hopper, whose mma.sync FP8 form is no faster than f16. */
#ifndef DSRT_GPU_MMA_CUH
#define DSRT_GPU_MMA_CUH

#include "gpu_compat.h"

#define DSRT_FP8_F16_UNSCALE 65536.0f /* 2^16: undoes the two 2^-8 of the trick above */

/* Bytes 0,1 of w as a half2 (element 0 in the low half), each value b * 2^-8. */
GPU_DEV uint32_t gpu_e4m3x2_lo_f16(uint32_t w)
{
    return ((w & 0x80u) << 8) | ((w & 0x7fu) << 7) | ((w & 0x8000u) << 16) | ((w & 0x7f00u) << 15);
}

/* Bytes 2,3 of w as a half2. */
GPU_DEV uint32_t gpu_e4m3x2_hi_f16(uint32_t w)
{
    return ((w >> 8) & 0x8000u) | ((w >> 9) & 0x3f80u) | (w & 0x80000000u) | ((w >> 1) & 0x3f800000u);
}

#ifdef DSRT_GPU_HAVE_MMA
/* D = A(16x16, row) * B(16x8, col) + C, f16 inputs, f32 accumulators. */
GPU_DEV void gpu_mma_f16(float *d, const uint32_t *a, const uint32_t *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

GPU_DEV void gpu_mma_bf16(float *d, const uint32_t *a, const uint32_t *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

GPU_DEV uint32_t gpu_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte asynchronous copy global -> shared; src_bytes < 16 zero-fills the rest (0: all zero). */
GPU_DEV void gpu_cp_async16(void *smem, const void *gmem, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(gpu_smem_addr(smem)), "l"(gmem),
                 "r"(src_bytes));
}

/* 4-byte asynchronous copy (for rows that are only 4-byte aligned). */
GPU_DEV void gpu_cp_async4(void *smem, const void *gmem, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(gpu_smem_addr(smem)), "l"(gmem),
                 "r"(src_bytes));
}

GPU_DEV void gpu_cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }

/* "memory": shared-memory reads after the wait stay after it. */
template <int N> GPU_DEV void gpu_cp_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* Four 8x8 b16 matrices from shared memory; lane l gives the row address of matrix l/8, row l%8. */
GPU_DEV void gpu_ldmatrix_x4(uint32_t *r, const void *row_addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gpu_smem_addr(row_addr)));
}

GPU_DEV void gpu_ldmatrix_x4_trans(uint32_t *r, const void *row_addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gpu_smem_addr(row_addr)));
}

/* Two floats as a bf16x2 (lo in the low half), round to nearest even. */
GPU_DEV uint32_t gpu_pack_bf16x2(float lo, float hi)
{
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* The two f16 of a half2 as floats. */
GPU_DEV void gpu_f16x2_to_f32(uint32_t h, float *lo, float *hi)
{
    asm("{\n .reg .b16 a, b;\n mov.b32 {a, b}, %2;\n cvt.f32.f16 %0, a;\n cvt.f32.f16 %1, b;\n}\n"
        : "=f"(*lo), "=f"(*hi)
        : "r"(h));
}

/* Four e4m3 bytes of w (byte 0 first) as exact floats times s. sm_89+ converts in hardware (two
 * values per instruction); sm_80 uses the f16 bit trick above (values * 2^-8, undone in the scale). */
GPU_DEV void gpu_e4m3x4_scaled(uint32_t w, float s, float *f)
{
#if __CUDA_ARCH__ >= 890
    uint32_t lo, hi;
    asm("{\n .reg .b16 a, b;\n mov.b32 {a, b}, %2;\n cvt.rn.f16x2.e4m3x2 %0, a;\n cvt.rn.f16x2.e4m3x2 %1, b;\n}\n"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
    float mul = s;
#else
    uint32_t lo = gpu_e4m3x2_lo_f16(w), hi = gpu_e4m3x2_hi_f16(w);
    float mul = s * 256.0f;
#endif
    gpu_f16x2_to_f32(lo, &f[0], &f[1]);
    gpu_f16x2_to_f32(hi, &f[2], &f[3]);
    f[0] *= mul;
    f[1] *= mul;
    f[2] *= mul;
    f[3] *= mul;
}

/* 2^x on the special-function unit, results under 2^-126 flushed to zero, 2^-inf = 0. A softmax
 * weight that small is nothing beside the row's largest (1); exp2f's subnormal fix-up costs about
 * eight instructions an element and spills its predicates (the wgmma decode's softmax was half that). */
GPU_DEV float gpu_exp2_ftz(float x)
{
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}

/* x rounded to bf16 (nearest even) and back, in two instructions. */
GPU_DEV float gpu_round_bf16_fast(float x) { return __int_as_float((int)(gpu_pack_bf16x2(x, 0.0f) << 16)); }

/* a and b rounded to bf16 (nearest even) and back, one conversion for both. */
GPU_DEV void gpu_round_bf16_pair(float a, float b, float &ra, float &rb)
{
    uint32_t w = gpu_pack_bf16x2(a, b);
    ra = __int_as_float((int)(w << 16));
    rb = __int_as_float((int)(w & 0xffff0000u));
}

GPU_DEV void gpu_ldmatrix_x2_trans(uint32_t *r, const void *row_addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(gpu_smem_addr(row_addr)));
}
#endif

#endif
