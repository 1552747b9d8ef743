/* Helpers shared by every dsrt OpenCL kernel (OpenCL C 1.2). The host concatenates this file first.
 *
 * Numerics follow hal/include/dsrt/ops.h: arithmetic in fp32, each output rounded once to its dtype
 * (round to nearest even; saturating for e4m3). 16-bit and 8-bit floats are handled as integers with
 * explicit rounding, so nothing here needs cl_khr_fp16. Contraction into fused multiply-adds is off for
 * the whole program so element-wise results equal the CPU reference bit for bit; the dot-product loops
 * that need speed call fma() explicitly. */
#pragma OPENCL FP_CONTRACT OFF
#ifdef DSRT_HAS_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#ifdef DSRT_FORCE_BUILD_ERROR
#error "build error forced by DSRT_FORCE_BUILD_ERROR (a test of the build-log report)"
#endif

#define DEV static inline

/* dsrt_dtype values (hal/include/dsrt/dtype.h) */
#define DT_F32 0
#define DT_BF16 1
#define DT_F16 2
#define DT_E4M3 3
#define DT_E5M2 4
#define DT_UE8M0 5
#define DT_I32 6
#define DT_I64 7
#define DT_U8 8

#define E4M3_MAX 448.0f

DEV int dt_size(int dt)
{
    return dt == DT_F32 || dt == DT_I32 ? 4 : (dt == DT_BF16 || dt == DT_F16) ? 2 : dt == DT_I64 ? 8 : 1;
}

/* ---- 16-bit floats ---- */
DEV float bf16_to_f32(uint h) { return as_float(h << 16); }

DEV uint f32_to_bf16(float x)
{
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu; /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

DEV float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

DEV float f16_to_f32(uint v)
{
    uint sign = (v >> 15) & 1u, e = (v >> 10) & 0x1fu, m = v & 0x3ffu;
    float mag;
    if (e == 0x1fu) mag = m ? NAN : INFINITY;
    else if (e == 0) mag = (float)m * 0x1p-24f;
    else mag = as_float(((e + 112u) << 23) | (m << 13));
    return sign ? -mag : mag;
}

DEV uint f32_to_f16(float x)
{
    uint u = as_uint(x), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | ((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if ((a >> 23) == 0) return sign;
    int e = (int)(a >> 23) - 127;
    uint m = (a & 0x7fffffu) | 0x800000u;
    int shift = e < -14 ? 13 + (-14 - e) : 13;
    if (shift > 25) return sign;
    uint kept = m >> shift, rem = m & ((1u << shift) - 1u), hb = 1u << (shift - 1);
    if (rem > hb || (rem == hb && (kept & 1u))) kept++;
    if (e < -14) return sign | kept;
    uint be = (uint)(e + 15);
    if (kept >> 11) {
        kept >>= 1;
        be++;
    }
    return sign | (be << 10) | (kept & 0x3ffu);
}

/* ---- 8-bit floats ---- */

/* Exact e4m3 decoding without relying on denormal support (subnormal codes are m * 2^-9). */
DEV float e4m3_to_f32(uint b)
{
    uint s = (b & 0x80u) << 24, e = (b >> 3) & 0xfu, m = b & 7u;
    if (e == 15u && m == 7u) return as_float(s | 0x7fc00000u);
    float mag = e == 0 ? (float)m * 0x1p-9f : as_float(((e + 120u) << 23) | (m << 20));
    return as_float(as_uint(mag) | s);
}

/* e5m2 is the top byte of an IEEE half. */
DEV float e5m2_to_f32(uint b) { return f16_to_f32((b & 0xffu) << 8); }

DEV float ue8m0_to_f32(uint e)
{
    e &= 0xffu;
    if (e == 0xffu) return NAN;
    return e == 0 ? as_float(0x00400000u) : as_float(e << 23);
}

/* Rounds |x| (finite, bits a) to a minifloat with mbits mantissa bits and exponent bias `bias`;
 * returns exponent << mbits | mantissa before overflow handling. */
DEV uint round_minifloat(uint a, int mbits, int bias)
{
    if ((a >> 23) == 0) return 0;
    int e = (int)(a >> 23) - 127;
    uint m = (a & 0x7fffffu) | 0x800000u;
    int emin = 1 - bias;
    int shift = e < emin ? 23 - mbits + (emin - e) : 23 - mbits;
    if (shift > 25) return 0;
    uint kept = m >> shift, rem = m & ((1u << shift) - 1u), hb = 1u << (shift - 1);
    if (rem > hb || (rem == hb && (kept & 1u))) kept++;
    if (e < emin) return kept;
    int be = e + bias;
    if (kept >> (mbits + 1)) {
        kept >>= 1;
        be++;
    }
    return ((uint)be << mbits) | (kept & ((1u << mbits) - 1u));
}

/* Round to nearest even, saturating to +-448; NaN gives 0x7f with the sign. */
DEV uint f32_to_e4m3(float x)
{
    uint u = as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7fu;
    if (a >= 0x43e00000u) return sign | 0x7eu;
    uint c = round_minifloat(a, 3, 7);
    if (c > 0x7eu) c = 0x7eu;
    return sign | c;
}

/* Round to nearest even; overflow gives infinity (the CPU's dsrt_f32_to_e5m2). */
DEV uint f32_to_e5m2(float x)
{
    uint u = as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7eu;
    if (a == 0x7f800000u) return sign | 0x7cu;
    uint c = round_minifloat(a, 2, 15);
    if (c >= 0x7cu) c = 0x7cu;
    return sign | c;
}

/* ---- typed element access: base is the tensor's first byte, i an element index ---- */
DEV float ldf(__global const uchar *p, int dt, long i)
{
    switch (dt) {
    case DT_F32: return ((__global const float *)p)[i];
    case DT_BF16: return bf16_to_f32(((__global const ushort *)p)[i]);
    case DT_F16: return f16_to_f32(((__global const ushort *)p)[i]);
    case DT_E4M3: return e4m3_to_f32(p[i]);
    case DT_E5M2: return e5m2_to_f32(p[i]);
    case DT_UE8M0: return ue8m0_to_f32(p[i]);
    case DT_I32: return (float)((__global const int *)p)[i];
    case DT_I64: return (float)((__global const long *)p)[i];
    case DT_U8: return (float)p[i];
    }
    return NAN;
}

/* v[u] = element idx[u] (0 where idx[u] < 0), u < 4. The dtype switch sits outside the loads so the
 * four issue together: a decode row is one work group's work, and loads taken one latency at a time
 * (ldf in a loop) leave such a kernel waiting on memory. */
DEV void ldf4(__global const uchar *p, int dt, const long *idx, float *v)
{
    if (dt == DT_F32) {
        __global const float *q = (__global const float *)p;
        for (int u = 0; u < 4; u++) v[u] = idx[u] >= 0 ? q[idx[u]] : 0.0f;
    } else if (dt == DT_BF16) {
        __global const ushort *q = (__global const ushort *)p;
        for (int u = 0; u < 4; u++) v[u] = idx[u] >= 0 ? bf16_to_f32(q[idx[u]]) : 0.0f;
    } else {
        for (int u = 0; u < 4; u++) v[u] = idx[u] >= 0 ? ldf(p, dt, idx[u]) : 0.0f;
    }
}

/* ldf4 of elements base + i0 + u * step of a row of length n (0 past it). */
DEV void ldf4_row(__global const uchar *p, int dt, long base, long i0, long step, long n, float *v)
{
    long idx[4];
    for (int u = 0; u < 4; u++) idx[u] = i0 + u * step < n ? base + i0 + u * step : -1;
    ldf4(p, dt, idx, v);
}

DEV void stf(__global uchar *p, int dt, long i, float v)
{
    switch (dt) {
    case DT_F32: ((__global float *)p)[i] = v; break;
    case DT_BF16: ((__global ushort *)p)[i] = (ushort)f32_to_bf16(v); break;
    case DT_F16: ((__global ushort *)p)[i] = (ushort)f32_to_f16(v); break;
    case DT_E4M3: p[i] = (uchar)f32_to_e4m3(v); break;
    case DT_E5M2: p[i] = (uchar)f32_to_e5m2(v); break;
    default: break;
    }
}

/* The value an output of dtype dt holds for v. */
DEV float round_to(int dt, float v)
{
    if (dt == DT_BF16) return round_bf16(v);
    if (dt == DT_F16) return f16_to_f32(f32_to_f16(v));
    return v;
}

/* An f32 stored in 4 bytes at any alignment (FP8 cache rows put scales after odd-sized data). */
DEV float ld_f32_bytes(__global const uchar *p)
{
    return as_float((uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24));
}

DEV void st_f32_bytes(__global uchar *p, float v)
{
    uint u = as_uint(v);
    p[0] = (uchar)u;
    p[1] = (uchar)(u >> 8);
    p[2] = (uchar)(u >> 16);
    p[3] = (uchar)(u >> 24);
}

DEV float ld_bf16_bytes(__global const uchar *p) { return bf16_to_f32((uint)p[0] | ((uint)p[1] << 8)); }

DEV void st_bf16_bytes(__global uchar *p, float v)
{
    uint h = f32_to_bf16(v);
    p[0] = (uchar)h;
    p[1] = (uchar)(h >> 8);
}

/* ---- the official activation-quantization scale (quant/include/dsrt/act_quant.h) ---- */
DEV float act_scale(float amax, int pow2)
{
    if (!(amax >= 1e-4f)) amax = 1e-4f;
    const float inv = 1.0f / E4M3_MAX; /* fl(1/448) */
    float r = amax * inv;
    if (!pow2) return r;
    if (isinf(r)) return 0x1p127f;
    uint bits = as_uint(r);
    int e = (int)((bits >> 23) & 0xffu) - 127 + ((bits & 0x7fffffu) != 0 ? 1 : 0);
    return as_float((uint)(e + 127) << 23);
}

DEV uint act_quant_code(float x, float s)
{
    float v = x / s;
    v = v > E4M3_MAX ? E4M3_MAX : (v < -E4M3_MAX ? -E4M3_MAX : v);
    return f32_to_e4m3(v);
}

/* A block scale value of either dtype. */
DEV float ld_scale(__global const uchar *p, int sdt, long i)
{
    return sdt == DT_UE8M0 ? ue8m0_to_f32(p[i]) : ((__global const float *)p)[i];
}

/* ---- work-group reductions (every item calls; red holds get_local_size(0) floats) ---- */
DEV float wg_sum(float v, __local float *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Max that ignores NaN like the CPU's `if (a > m) m = a`. */
DEV float wg_max(float v, __local float *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) {
            float o = red[lid + s];
            if (o > red[lid]) red[lid] = o;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Exclusive prefix sum of v over the work group; *total receives the sum. */
DEV int wg_scan_excl(int v, __local int *tmp, int *total)
{
    int lid = get_local_id(0), n = get_local_size(0);
    tmp[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = 1; off < n; off <<= 1) {
        int add = lid >= off ? tmp[lid - off] : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        tmp[lid] += add;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    int incl = tmp[lid];
    *total = tmp[n - 1];
    barrier(CLK_LOCAL_MEM_FENCE);
    return incl - v;
}

/* Element offset of row r of a tensor whose leading dims are normalized to three (d0, d1, d2). */
DEV long row_offset(long r, long d1, long d2, long s0, long s1, long s2)
{
    long i2 = r % d2, rest = r / d2;
    return (rest / d1) * s0 + (rest % d1) * s1 + i2 * s2;
}
