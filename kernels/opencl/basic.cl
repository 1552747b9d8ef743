/* Element-wise and per-row ops: convert, embed, norms, RoPE, SwiGLU, add, activation quantization,
 * Hadamard, cache writes. Tensors arrive as (base buffer, byte offset, dtype, element strides); rows are
 * the innermost dimension, contiguous. Leading dims are normalized by the host to three (d0, d1, d2)
 * with stride 0 for missing ones. */

/* y = x converted (fp8 with a block-scale companion is dequantized). Grid: (columns, rows). */
__kernel void convert(__global const uchar *xb, ulong xo, int xdt, long xs0, long xs1, long xs2,
                      __global uchar *yb, ulong yo, int ydt, long ys0, long ys1, long ys2,
                      long d1, long d2, long rows, long n,
                      __global const uchar *sb, ulong so, int has_scale, int sdt, int sbr, int sbc,
                      long ss_lead, long ss_r, long ss_c, long rows2, int x_is_int, int esize)
{
    long c = get_global_id(0), r = get_global_id(1);
    if (c >= n || r >= rows) return;
    __global const uchar *x = xb + xo;
    __global uchar *y = yb + yo;
    long xi = row_offset(r, d1, d2, xs0, xs1, xs2) + c, yi = row_offset(r, d1, d2, ys0, ys1, ys2) + c;
    if (x_is_int) {
        /* integers copy to their own dtype, byte for byte */
        for (int b = 0; b < esize; b++) y[yi * esize + b] = x[xi * esize + b];
        return;
    }
    float v = ldf(x, xdt, xi);
    if (has_scale) {
        long lead = r / rows2, rr = r % rows2;
        long si = lead * ss_lead + (rr / sbr) * ss_r + (c / sbc) * ss_c;
        v *= ld_scale(sb + so, sdt, si);
    }
    stf(y, ydt, yi, v);
}

/* y[t] = table[ids[t]], zero for an id outside [0, V). Grid: (H, T). */
__kernel void embed(__global const uchar *tb, ulong to, int tdt, long ts0, long V,
                    __global const uchar *ib, ulong io, long is0,
                    __global uchar *yb, ulong yo, int ydt, long ys0, long H, long T)
{
    long c = get_global_id(0), t = get_global_id(1);
    if (c >= H || t >= T) return;
    int id = ((__global const int *)(ib + io))[t * is0];
    float v = (id < 0 || id >= V) ? 0.0f : ldf(tb + to, tdt, (long)id * ts0 + c);
    stf(yb + yo, ydt, t * ys0 + c, v);
}

/* RMSNorm, one work group per row. The fp32 sum s = x + residual goes to `tmp` (scratch, [M][D]) so the
 * norm reads it even when residual_out overwrites residual in place. */
__kernel void rms_norm(__global const uchar *xb, ulong xo, int xdt, long xs0,
                       __global const uchar *wb, ulong wo, int wdt,
                       __global const uchar *rb, ulong ro, int rdt, long rs0, int has_res,
                       __global uchar *yb, ulong yo, int ydt, long ys0,
                       __global uchar *ob, ulong oo, int odt, long os0,
                       long D, float eps, __global float *tmp)
{
    __local float red[DSRT_WG];
    long m = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global float *s = tmp + m * D;
    float acc = 0.0f;
    for (long i0 = lid; i0 < D; i0 += 4 * L) { /* same order as one element at a time, 4 loads in flight */
        float v[4], rv[4];
        ldf4_row(xb + xo, xdt, m * xs0, i0, L, D, v);
        if (has_res) ldf4_row(rb + ro, rdt, m * rs0, i0, L, D, rv);
        for (int u = 0; u < 4; u++) {
            long i = i0 + u * L;
            if (i < D) {
                if (has_res) {
                    v[u] += rv[u];
                    stf(ob + oo, odt, m * os0 + i, v[u]);
                }
                s[i] = v[u];
                acc += v[u] * v[u];
            }
        }
    }
    float ss = wg_sum(acc, red);
    float r = 1.0f / sqrt(ss / (float)D + eps);
    for (long i0 = lid; i0 < D; i0 += 4 * L) {
        float g[4];
        ldf4_row(wb + wo, wdt, 0, i0, L, D, g);
        for (int u = 0; u < 4; u++) {
            long i = i0 + u * L;
            if (i < D) stf(yb + yo, ydt, m * ys0 + i, g[u] * (s[i] * r));
        }
    }
}

/* LayerNorm with bias, one work group per row; biased variance, two passes like the CPU. */
__kernel void layer_norm(__global const uchar *xb, ulong xo, int xdt, long xs0,
                         __global const uchar *wb, ulong wo, int wdt,
                         __global const uchar *bb, ulong bo, int bdt,
                         __global uchar *yb, ulong yo, int ydt, long ys0, long D, float eps)
{
    __local float red[DSRT_WG];
    long m = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global const uchar *x = xb + xo;
    float acc = 0.0f;
    for (long i = lid; i < D; i += L) acc += ldf(x, xdt, m * xs0 + i);
    float mean = wg_sum(acc, red) / (float)D;
    acc = 0.0f;
    for (long i = lid; i < D; i += L) {
        float d = ldf(x, xdt, m * xs0 + i) - mean;
        acc += d * d;
    }
    float var = wg_sum(acc, red) / (float)D;
    float r = 1.0f / sqrt(var + eps);
    for (long i = lid; i < D; i += L) {
        float v = (ldf(x, xdt, m * xs0 + i) - mean) * r * ldf(wb + wo, wdt, i) + ldf(bb + bo, bdt, i);
        stf(yb + yo, ydt, m * ys0 + i, v);
    }
}

/* RoPE on pairs; one work item per pair, so y may alias x. Grid: (R/2, T*H). */
__kernel void rope(__global const uchar *xb, ulong xo, int xdt, long xs0, long xs1,
                   __global uchar *yb, ulong yo, int ydt, long ys0, long ys1,
                   __global const uchar *pb, ulong po, long ps0,
                   __global const uchar *cb, ulong co, long cs0, long cs1, long P,
                   long H, long R, long rows, int interleaved)
{
    long i = get_global_id(0), row = get_global_id(1), hr = R / 2;
    if (i >= hr || row >= rows) return;
    long t = row / H, h = row % H;
    long xr = t * xs0 + h * xs1, yr = t * ys0 + h * ys1;
    long a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + hr;
    __global const uchar *x = xb + xo;
    float va = ldf(x, xdt, xr + a), vb = ldf(x, xdt, xr + b);
    int p = ((__global const int *)(pb + po))[t * ps0];
    float oa = va, ob = vb;
    if (p >= 0 && p < P) {
        __global const float *cs = (__global const float *)(cb + co);
        float c = cs[p * cs0 + i * cs1], s = cs[p * cs0 + i * cs1 + 1];
        oa = va * c - vb * s;
        ob = vb * c + va * s;
    }
    stf(yb + yo, ydt, yr + a, oa);
    stf(yb + yo, ydt, yr + b, ob);
}

/* y = silu(gate) * up. Grid: (I, M). */
__kernel void swiglu(__global const uchar *gb, ulong go, int gdt, long gs0,
                     __global const uchar *ub, ulong uo, int udt, long us0,
                     __global uchar *yb, ulong yo, int ydt, long ys0, long I, long M)
{
    long c = get_global_id(0), m = get_global_id(1);
    if (c >= I || m >= M) return;
    float g = ldf(gb + go, gdt, m * gs0 + c), u = ldf(ub + uo, udt, m * us0 + c);
    stf(yb + yo, ydt, m * ys0 + c, g / (1.0f + exp(-g)) * u);
}

/* y = a + b, ranks 1..4; y may alias a or b (each element is read before it is written by the same
 * work item). Grid: (n, rows). */
__kernel void add(__global const uchar *ab, ulong ao, int adt, long as0, long as1, long as2,
                  __global const uchar *bb, ulong bo, int bdt, long bs0, long bs1, long bs2,
                  __global uchar *yb, ulong yo, int ydt, long ys0, long ys1, long ys2,
                  long d1, long d2, long rows, long n)
{
    long c = get_global_id(0), r = get_global_id(1);
    if (c >= n || r >= rows) return;
    float v = ldf(ab + ao, adt, row_offset(r, d1, d2, as0, as1, as2) + c) +
              ldf(bb + bo, bdt, row_offset(r, d1, d2, bs0, bs1, bs2) + c);
    stf(yb + yo, ydt, row_offset(r, d1, d2, ys0, ys1, ys2) + c, v);
}

/* Quantizes one block of x (n values starting at x[xi]) into q bytes and returns the scale. The whole
 * work group calls it. */
DEV float quant_block(__global const uchar *x, int xdt, long xi, __global uchar *q, long qi, long n, int pow2,
                      __local float *red)
{
    int lid = get_local_id(0), L = get_local_size(0);
    float amax = 0.0f; /* n = 0: no data, only the barriers */
    for (long i = lid; i < n; i += L) {
        float a = fabs(ldf(x, xdt, xi + i));
        if (a > amax) amax = a;
    }
    float s = act_scale(wg_max(amax, red), pow2);
    for (long i = lid; i < n; i += L) q[qi + i] = (uchar)act_quant_code(ldf(x, xdt, xi + i), s);
    return s;
}

/* Activation quantization: one work group per (block, row). Grid: (nb * L, M). */
__kernel void act_quant(__global const uchar *xb, ulong xo, int xdt, long xs0,
                        __global uchar *qb, ulong qo, long qs0,
                        __global uchar *sb, ulong so, int sdt, long ss0, long ss1,
                        long K, int blk, int pow2)
{
    __local float red[DSRT_WG];
    long bi = get_group_id(0), m = get_group_id(1);
    long k0 = bi * blk, n = K - k0 < blk ? K - k0 : blk;
    float s = quant_block(xb + xo, xdt, m * xs0 + k0, qb + qo, m * qs0 + k0, n, pow2, red);
    if (get_local_id(0) == 0) {
        long si = m * ss0 + bi * ss1;
        if (sdt == DT_UE8M0) (sb + so)[si] = (uchar)((as_uint(s) >> 23) & 0xffu); /* s is 2^e, normal */
        else ((__global float *)(sb + so))[si] = s;
    }
}

/* Normalized Walsh-Hadamard transform of each row, one work group per row, butterflies in the CPU's
 * order (so the result is the same bit for bit). The row lives in `tmp` (scratch [M][n]). */
__kernel void hadamard(__global const uchar *xb, ulong xo, int xdt, long xs0,
                       __global uchar *yb, ulong yo, int ydt, long ys0, long n, __global float *tmp)
{
    long m = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global float *v = tmp + m * n;
    for (long i = lid; i < n; i += L) v[i] = ldf(xb + xo, xdt, m * xs0 + i);
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (long h = 1; h < n; h *= 2) {
        for (long p = lid; p < n / 2; p += L) {
            long i = (p / h) * 2 * h + p % h, j = i + h;
            float a = v[i], b = v[j];
            v[i] = a + b;
            v[j] = a - b;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
    float s = 1.0f / sqrt((float)n);
    for (long i = lid; i < n; i += L) stf(yb + yo, ydt, m * ys0 + i, v[i] * s);
}

/* Writes token rows into a paged cache, one work group per token. PLAIN: float row = src | src2.
 * FP8: e4m3 bytes of src (128-blocks), their f32 scales, then src2 as bf16 (FlashMLA layout). */
__kernel void cache_write(__global const uchar *xb, ulong xo, int xdt, long xs0, long W1,
                          __global const uchar *sb, ulong so, long ss0,
                          __global const uchar *x2b, ulong x2o, int x2dt, long x2s0, long W2,
                          __global uchar *cb, ulong co, int cdt, long cs0, long S, int fp8, int pow2)
{
    __local float red[DSRT_WG];
    long t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    int slot = ((__global const int *)(sb + so))[t * ss0];
    /* a skipped slot still runs the loops (with no data) so every barrier is reached unconditionally */
    const bool ok = slot >= 0 && slot < S;
    __global const uchar *x = xb + xo, *x2 = x2b + x2o;
    if (!fp8 && ok) {
        __global uchar *c = cb + co;
        for (long i = lid; i < W1 + W2; i += L) {
            float v = i < W1 ? ldf(x, xdt, t * xs0 + i) : ldf(x2, x2dt, t * x2s0 + (i - W1));
            stf(c, cdt, (long)slot * cs0 + i, v);
        }
    }
    __global uchar *row = cb + co + (ok ? (long)slot * cs0 : 0);
    long nb = (W1 + 127) / 128, nbq = fp8 ? nb : 0;
    for (long bi = 0; bi < nbq; bi++) {
        long k0 = bi * 128, n = W1 - k0 < 128 ? W1 - k0 : 128;
        float s = quant_block(x, xdt, t * xs0 + k0, row, k0, ok ? n : 0, pow2, red);
        if (lid == 0 && ok) st_f32_bytes(row + W1 + 4 * bi, s);
    }
    if (fp8 && ok)
        for (long i = lid; i < W2; i += L) st_bf16_bytes(row + W1 + 4 * nb + 2 * i, ldf(x2, x2dt, t * x2s0 + i));
}
