/* Linear layers: y[m][n] = alpha * sum_k x[m][k] * W[n][k].
 *
 * gemv_*   decode shapes (few rows of x): memory-bound on the weights, so each weight byte is read
 *          once with 16-byte vector loads, decoded in registers (e4m3: integer ops or a 256-entry table
 *          in local memory, times the block scale) and used for every x row of the chunk. A work group
 *          owns DSRT_GEMV_ROWS rows per row group; its tk threads stride along K with adjacent 16-byte
 *          chunks (coalesced), then reduce in local memory. Rows of x beyond 8 loop inside the group
 *          and re-read the group's weight rows from cache, not from memory.
 * gemm_tiled  many rows (prefill): 64x64 output tiles, 16-wide K steps staged in local memory, 4x4
 *          outputs per work item; weights dequantized while staging.
 * Both serve LINEAR (batch 1), LINEAR_GROUPED (batch slot -> active expert, rows from offsets) and
 * HEAD_LINEAR (batch = head, strides per head).
 *
 * act (the official FP8 GEMM): x was quantized by prep_rows into e4m3 values (as f32) and scales xs;
 * weights stay raw e4m3 and every 128-wide K block adds part * (xs * ws). Otherwise weights are
 * dequantized exactly (fp8 * scale) and the dot product runs in fp32. */

#define GEMV_RPT DSRT_GEMV_ROWS
#define GEMV_MCH 4

DEV float dot16(float16 a, float16 b)
{
    float4 acc = a.s0123 * b.s0123;
    acc = fma(a.s4567, b.s4567, acc);
    acc = fma(a.s89ab, b.s89ab, acc);
    acc = fma(a.scdef, b.scdef, acc);
    return (acc.x + acc.y) + (acc.z + acc.w);
}

/* Four e4m3 codes (little-endian in w) with integer ops: the code's 7 magnitude bits are moved into an
 * f32 whose exponent is the e4m3 exponent, then the bias difference 2^120 is multiplied in. Subnormal
 * codes become f32 denormals first, so this needs a device with denormal support (the host checks);
 * the NaN code decodes as 480 (FP8 weights and caches never hold it). */
DEV float4 e4m3x4_bits(uint w)
{
    int4 t = (int4)((int)(w << 24), (int)(w << 16), (int)(w << 8), (int)w);
    return as_float4((t >> 4) & as_int4((uint4)0x87F00000u)); /* the values times 2^-120 */
}

DEV float4 e4m3x4_arith(uint w) { return e4m3x4_bits(w) * 0x1p120f; }

DEV float4 e4m3x4_lut(uint w, __local const float *lut)
{
    return (float4)(lut[w & 0xffu], lut[(w >> 8) & 0xffu], lut[(w >> 16) & 0xffu], lut[w >> 24]);
}

/* 16 weights at element c of a row (16-byte aligned, checked by the host). */
DEV float16 load16_w(__global const uchar *row, long c, const int wdt, const int lut_mode, __local const float *lut)
{
    if (wdt == DT_E4M3) {
        uint4 q = *(__global const uint4 *)(row + c);
        if (lut_mode)
            return (float16)(e4m3x4_lut(q.x, lut), e4m3x4_lut(q.y, lut), e4m3x4_lut(q.z, lut), e4m3x4_lut(q.w, lut));
        return (float16)(e4m3x4_arith(q.x), e4m3x4_arith(q.y), e4m3x4_arith(q.z), e4m3x4_arith(q.w));
    }
    if (wdt == DT_BF16) {
        __global const uint4 *p = (__global const uint4 *)(row + 2 * c);
        uint8 u = (uint8)(p[0], p[1]);
        float8 lo = as_float8(u << 16), hi = as_float8(u & (uint8)0xffff0000u);
        return (float16)(lo.s0, hi.s0, lo.s1, hi.s1, lo.s2, hi.s2, lo.s3, hi.s3, lo.s4, hi.s4, lo.s5, hi.s5, lo.s6,
                         hi.s6, lo.s7, hi.s7);
    }
    if (wdt == DT_F16) return vload_half16(0, (__global const half *)(row + 2 * c));
    __global const float4 *p = (__global const float4 *)(row + 4 * c);
    return (float16)(p[0], p[1], p[2], p[3]);
}

/* 16 activations at element c of a row; aligned: f32 rows on 16-byte boundaries (checked by the
 * host), read as four float4. */
DEV float16 load16_x(__global const uchar *row, long c, int xdt, int aligned)
{
    if (aligned) {
        __global const float4 *p = (__global const float4 *)(row + 4 * c);
        return (float16)(p[0], p[1], p[2], p[3]);
    }
    if (xdt == DT_BF16) return as_float16(convert_uint16(vload16(0, (__global const ushort *)row + c)) << 16);
    if (xdt == DT_F16) return vload_half16(0, (__global const half *)row + c);
    return vload16(0, (__global const float *)row + c);
}

#define GEMV_PARAMS                                                                                                   \
    __global const uchar *xb, ulong xo, int xdt, long xs0, long xs_g, __global const uchar *xsb, ulong xso,        \
        long xs_s0, int act, __global const uchar *wb, ulong wo, long ws_g, long ws_n, __global const uchar *sb,     \
        ulong so, int has_ws, int sdt, int sbr, int sbc, long ss_g, long ss_r, long ss_c, __global uchar *yb,       \
        ulong yo, int ydt, long ys0, long ys_g, long K, long N, long M, float alpha, int tk, int vec,               \
        __global const uchar *gb, ulong go, long gs0, __global const int *active, int grouped, int ksplit,           \
        long kchunk, __global float *part, int sbc_shift, int xvec
#define GEMV_ARGS                                                                                                     \
    xb, xo, xdt, xs0, xs_g, xsb, xso, xs_s0, act, wb, wo, ws_g, ws_n, sb, so, has_ws, sdt, sbr, sbc, ss_g, ss_r,     \
        ss_c, yb, yo, ydt, ys0, ys_g, K, N, M, alpha, tk, vec, gb, go, gs0, active, grouped, ksplit, kchunk, part, sbc_shift, xvec

/* Resolves the work group's batch: the head (HEAD_LINEAR), the active expert (grouped) or 0, and its
 * rows of x. A slot without an expert gets an empty row range (and batch 0), so the group still
 * reaches every barrier without work instead of returning early. */
DEV bool batch_rows(int grouped, __global const uchar *gb, ulong go, long gs0, __global const int *active, long M,
                    int *g, long *m_begin, long *m_end)
{
    *g = get_group_id(1);
    *m_begin = 0;
    *m_end = M;
    if (!grouped) return true;
    *g = active[get_group_id(1)];
    if (*g < 0) {
        *g = 0;
        *m_end = 0;
        return false;
    }
    __global const int *off = (__global const int *)(gb + go);
    long a = off[(long)*g * gs0], b = off[(long)(*g + 1) * gs0];
    *m_begin = a < 0 ? 0 : (a > M ? M : a);
    *m_end = b < 0 ? 0 : (b > M ? M : b);
    return *m_end > *m_begin;
}

DEV void gemv_body(GEMV_PARAMS, __local float *red, __local float *lut, const int wdt, const int lut_mode)
{
    const int lid = get_local_id(0), WGS = get_local_size(0);
    const int kt = lid % tk, rg = lid / tk, tr = WGS / tk;
    const long n0 = ((long)get_group_id(0) * tr + rg) * GEMV_RPT;
    int g;
    long m_begin, m_end;
    batch_rows(grouped, gb, go, gs0, active, M, &g, &m_begin, &m_end);
    if (lut_mode) {
        for (int i = lid; i < 256; i += WGS) lut[i] = e4m3_to_f32((uint)i);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const int wes = dt_size(wdt), xes = dt_size(xdt), yes = dt_size(ydt), ses = sdt == DT_UE8M0 ? 1 : 4;
    __global const uchar *wbase = wb + wo + (long)g * ws_g * wes;
    __global const uchar *sbase = sb + so + (long)g * ss_g * ses;
    __global const uchar *xbase = xb + xo + (long)g * xs_g * xes;
    __global uchar *ybase = yb + yo + (long)g * ys_g * yes;
    __global const float *xs = (__global const float *)(xsb + xso);
    /* split-K (few output rows): this group's share of K; partial sums go to `part` */
    const long kz = get_group_id(2), kbeg = kz * kchunk, kend = kbeg + kchunk < K ? kbeg + kchunk : K;
    /* Row pointers and scale-row offsets are fixed for the whole K loop. Rows past N read row N-1
     * (never stored) so the inner loop has no branches. Index math inside the loop is 32-bit. */
    __global const uchar *wrow[GEMV_RPT];
    long srow[GEMV_RPT];
#pragma unroll
    for (int r = 0; r < GEMV_RPT; r++) {
        long n = n0 + r < N ? n0 + r : N - 1;
        wrow[r] = wbase + n * ws_n * wes;
        srow[r] = has_ws ? (n / sbr) * ss_r : 0;
    }
    const int xa_vec = xvec && xdt == DT_F32;

    for (long m0 = m_begin; m0 < m_end; m0 += GEMV_MCH) {
        const int mc = m_end - m0 < GEMV_MCH ? (int)(m_end - m0) : GEMV_MCH;
        float acc[GEMV_RPT][GEMV_MCH];
#pragma unroll
        for (int r = 0; r < GEMV_RPT; r++)
#pragma unroll
            for (int m = 0; m < GEMV_MCH; m++) acc[r][m] = 0.0f;
        if (vec && wdt == DT_E4M3) {
            /* FP8: all rows' 16-byte chunks are loaded first (loads in flight together), kept raw (4
             * registers each) and decoded right before their dot product: few registers per item, so
             * more work groups share a compute unit and more loads are outstanding. */
            for (int c = (int)kbeg + kt * 16; c < (int)kend; c += tk * 16) {
                uint4 q[GEMV_RPT];
                float sw[GEMV_RPT];
                /* act: the CPU takes the weight scale at the 128-block start */
                const int cs = act ? (c & ~127) : c;
                const long soff = (long)(sbc_shift >= 0 ? cs >> sbc_shift : cs / sbc) * ss_c;
#pragma unroll
                for (int r = 0; r < GEMV_RPT; r++) q[r] = *(__global const uint4 *)(wrow[r] + c);
#pragma unroll
                for (int r = 0; r < GEMV_RPT; r++) sw[r] = ld_scale(sbase, sdt, srow[r] + soff);
#pragma unroll
                for (int m = 0; m < GEMV_MCH; m++) {
                    if (m < mc) {
                        float16 xv = load16_x(xbase + (m0 + m) * xs0 * xes, c, xdt, xa_vec);
                        float xa = act ? xs[(m0 + m) * xs_s0 + (c >> 7)] : 1.0f;
#pragma unroll
                        for (int r = 0; r < GEMV_RPT; r++) {
                            if (lut_mode) {
                                float16 w = (float16)(e4m3x4_lut(q[r].x, lut), e4m3x4_lut(q[r].y, lut),
                                                      e4m3x4_lut(q[r].z, lut), e4m3x4_lut(q[r].w, lut));
                                acc[r][m] += dot16(xv, w) * (sw[r] * xa);
                            } else if (act) {
                                /* quantized x holds its block's largest value near 448 (|q| > 224 unless the
                                 * block is below the 1e-4 floor), so the sums of 2^-120-scaled products stay
                                 * in f32's normal range and the bias correction is one multiply per chunk
                                 * instead of one per byte */
                                float16 w = (float16)(e4m3x4_bits(q[r].x), e4m3x4_bits(q[r].y),
                                                      e4m3x4_bits(q[r].z), e4m3x4_bits(q[r].w));
                                acc[r][m] += (dot16(xv, w) * 0x1p120f) * (sw[r] * xa);
                            } else {
                                float16 w = (float16)(e4m3x4_arith(q[r].x), e4m3x4_arith(q[r].y),
                                                      e4m3x4_arith(q[r].z), e4m3x4_arith(q[r].w));
                                acc[r][m] += dot16(xv, w) * (sw[r] * xa);
                            }
                        }
                    }
                }
            }
        } else if (vec) {
            for (int c = (int)kbeg + kt * 16; c < (int)kend; c += tk * 16) {
                float16 w[GEMV_RPT];
                float sw[GEMV_RPT];
                const int cs = act ? (c & ~127) : c;
                const long soff = (long)(sbc_shift >= 0 ? cs >> sbc_shift : cs / sbc) * ss_c;
#pragma unroll
                for (int r = 0; r < GEMV_RPT; r++) {
                    w[r] = load16_w(wrow[r], c, wdt, lut_mode, lut);
                    sw[r] = has_ws ? ld_scale(sbase, sdt, srow[r] + soff) : 1.0f;
                }
#pragma unroll
                for (int m = 0; m < GEMV_MCH; m++) {
                    if (m < mc) {
                        float16 xv = load16_x(xbase + (m0 + m) * xs0 * xes, c, xdt, xa_vec);
                        float xa = act ? xs[(m0 + m) * xs_s0 + (c >> 7)] : 1.0f;
#pragma unroll
                        for (int r = 0; r < GEMV_RPT; r++) acc[r][m] += dot16(xv, w[r]) * (sw[r] * xa);
                    }
                }
            }
        } else {
            for (long c = kbeg + kt; c < kend; c += tk) {
                float w[GEMV_RPT], sw[GEMV_RPT];
                const long cs = act ? (c / 128) * 128 : c;
#pragma unroll
                for (int r = 0; r < GEMV_RPT; r++) {
                    long n = n0 + r;
                    w[r] = n < N ? ldf(wbase, wdt, n * ws_n + c) : 0.0f;
                    sw[r] = (n < N && has_ws) ? ld_scale(sbase, sdt, (n / sbr) * ss_r + (cs / sbc) * ss_c) : 1.0f;
                }
#pragma unroll
                for (int m = 0; m < GEMV_MCH; m++) {
                    if (m < mc) {
                        float xv = ldf(xbase, xdt, (m0 + m) * xs0 + c);
                        float xa = act ? xs[(m0 + m) * xs_s0 + c / 128] : 1.0f;
#pragma unroll
                        for (int r = 0; r < GEMV_RPT; r++) {
                            if (act) acc[r][m] += (xv * w[r]) * (xa * sw[r]);
                            else acc[r][m] += xv * (w[r] * sw[r]);
                        }
                    }
                }
            }
        }
        /* Reduce every (row, x row) sum over the tk threads of the row group at once: one barrier per
         * tree level, none inside unrolled or divergent code (keeps CPU OpenCL compilers fast too). */
#pragma unroll
        for (int r = 0; r < GEMV_RPT; r++)
#pragma unroll
            for (int m = 0; m < GEMV_MCH; m++) red[(r * GEMV_MCH + m) * WGS + lid] = acc[r][m];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = tk / 2; s > 0; s >>= 1) {
            if (kt < s)
                for (int v = 0; v < GEMV_RPT * GEMV_MCH; v++) red[v * WGS + lid] += red[v * WGS + lid + s];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (kt == 0)
            for (int r = 0; r < GEMV_RPT; r++)
                for (int m = 0; m < mc; m++) {
                    long n = n0 + r;
                    if (n >= N) continue;
                    float v = red[(r * GEMV_MCH + m) * WGS + lid];
                    if (ksplit > 1) part[(kz * M + m0 + m) * N + n] = v;
                    else stf(ybase, ydt, (m0 + m) * ys0 + n, alpha * v);
                }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

__kernel void gemv_f32(GEMV_PARAMS)
{
    __local float red[GEMV_RPT * GEMV_MCH * DSRT_WG];
    gemv_body(GEMV_ARGS, red, 0, DT_F32, 0);
}

__kernel void gemv_bf16(GEMV_PARAMS)
{
    __local float red[GEMV_RPT * GEMV_MCH * DSRT_WG];
    gemv_body(GEMV_ARGS, red, 0, DT_BF16, 0);
}

__kernel void gemv_f16(GEMV_PARAMS)
{
    __local float red[GEMV_RPT * GEMV_MCH * DSRT_WG];
    gemv_body(GEMV_ARGS, red, 0, DT_F16, 0);
}

__kernel void gemv_e4m3(GEMV_PARAMS)
{
    __local float red[GEMV_RPT * GEMV_MCH * DSRT_WG];
    gemv_body(GEMV_ARGS, red, 0, DT_E4M3, 0);
}

__kernel void gemv_e4m3_lut(GEMV_PARAMS)
{
    __local float red[GEMV_RPT * GEMV_MCH * DSRT_WG];
    __local float lut[256];
    gemv_body(GEMV_ARGS, red, lut, DT_E4M3, 1);
}

/* y[m][n] = alpha * sum over K splits of part (plain LINEAR only). Grid: (N, M). */
__kernel void splitk_reduce(__global const float *part, int ksplit, long M, long N, __global uchar *yb, ulong yo,
                            int ydt, long ys0, float alpha)
{
    long n = get_global_id(0), m = get_global_id(1);
    if (n >= N || m >= M) return;
    float acc = 0.0f;
    for (int z = 0; z < ksplit; z++) acc += part[(z * M + m) * N + n];
    stf(yb + yo, ydt, m * ys0 + n, alpha * acc);
}

/* ---- tiled GEMM ---- */
#define TM 64
#define TN 64
#define TK 16

/* Local size (16, 16). Grid: (ceil(N/64)*16, ceil(M/64)*16 or 16 when grouped, batch). Grouped work
 * groups loop over their expert's rows. transb: W is [K][N] (HEAD_LINEAR transpose_w). accum: add to y. */
__kernel void gemm_tiled(__global const uchar *xb, ulong xo, int xdt, long xs0, long xs_g,
                         __global const uchar *xsb, ulong xso, long xs_s0, int act,
                         __global const uchar *wb, ulong wo, int wdt, long ws_g, long ws_n, int transb,
                         __global const uchar *sb, ulong so, int has_ws, int sdt, int sbr, int sbc, long ss_g,
                         long ss_r, long ss_c,
                         __global uchar *yb, ulong yo, int ydt, long ys0, long ys_g,
                         long K, long N, long M, float alpha,
                         __global const uchar *gb, ulong go, long gs0, __global const int *active, int grouped,
                         int accum, int sbc_shift)
{
    __local float As[TK][TM + 4];
    __local float Bs[TK][TN + 4];
    const int lx = get_local_id(0), ly = get_local_id(1), t = ly * 16 + lx;
    int g;
    long m_begin, m_end;
    if (!grouped) {
        g = get_group_id(2);
        m_begin = (long)get_group_id(1) * TM;
        m_end = m_begin + TM < M ? m_begin + TM : M;
    } else {
        g = active[get_group_id(2)];
        m_begin = m_end = 0; /* a slot without an expert runs no tiles (its barriers are all in the loop) */
        if (g >= 0) {
            __global const int *off = (__global const int *)(gb + go);
            long a = off[(long)g * gs0], b = off[(long)(g + 1) * gs0];
            m_begin = a < 0 ? 0 : (a > M ? M : a);
            m_end = b < 0 ? 0 : (b > M ? M : b);
        } else {
            g = 0;
        }
    }
    const int wes = dt_size(wdt), xes = dt_size(xdt), yes = dt_size(ydt), ses = sdt == DT_UE8M0 ? 1 : 4;
    __global const uchar *wbase = wb + wo + (long)g * ws_g * wes;
    __global const uchar *sbase = sb + so + (long)g * ss_g * ses;
    __global const uchar *xbase = xb + xo + (long)(grouped ? 0 : g) * xs_g * xes;
    __global uchar *ybase = yb + yo + (long)(grouped ? 0 : g) * ys_g * yes;
    __global const float *xs = (__global const float *)(xsb + xso);
    const long n0 = (long)get_group_id(0) * TN;
    /* the staged weight row of this item and its scale row, fixed for the whole K loop */
    const long n_st = n0 + t / 4;
    const long srow_st = (has_ws && n_st < N) ? (n_st / sbr) * ss_r : 0;

    for (long m0 = m_begin; m0 < m_end; m0 += TM) {
        float acc[4][4], part[4][4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = part[i][j] = 0.0f;
        for (long k0 = 0; k0 < K; k0 += TK) {
            /* stage x: rows m0 + t/4, columns k0 + (t%4)*4 .. +3 */
            {
                int ml = t / 4, kl = (t % 4) * 4;
                long m = m0 + ml;
                for (int i = 0; i < 4; i++) {
                    long k = k0 + kl + i;
                    As[kl + i][ml] = (m < m_end && k < K) ? ldf(xbase, xdt, m * xs0 + k) : 0.0f;
                }
            }
            /* stage W, dequantized unless act (then raw e4m3 values; scales apply per 128 block) */
            if (!transb) {
                int nl = t / 4, kl = (t % 4) * 4;
                long n = n0 + nl;
                for (int i = 0; i < 4; i++) {
                    long k = k0 + kl + i;
                    float v = 0.0f;
                    if (n < N && k < K) {
                        v = ldf(wbase, wdt, n * ws_n + k);
                        if (has_ws && !act) {
                            int kc = (int)k;
                            v *= ld_scale(sbase, sdt, srow_st + (long)(sbc_shift >= 0 ? kc >> sbc_shift : kc / sbc) * ss_c);
                        }
                    }
                    Bs[kl + i][nl] = v;
                }
            } else {
                int kl = t / 16, nl = (t % 16) * 4;
                long k = k0 + kl;
                for (int i = 0; i < 4; i++) {
                    long n = n0 + nl + i;
                    Bs[kl][nl + i] = (n < N && k < K) ? ldf(wbase, wdt, k * ws_n + n) : 0.0f;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int k = 0; k < TK; k++) {
                float4 a = vload4(0, &As[k][ly * 4]), b = vload4(0, &Bs[k][lx * 4]);
                float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) part[i][j] = fma(av[i], bv[j], part[i][j]);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            /* Fold the partial sums in: per 128-wide block for act (scales differ by block), else at once. */
            bool flush = !act || ((k0 + TK) % 128 == 0) || k0 + TK >= K;
            if (flush) {
                long kb = k0 / 128;
                for (int i = 0; i < 4; i++) {
                    long m = m0 + ly * 4 + i;
                    float xa = (act && m < m_end) ? xs[m * xs_s0 + kb] : 1.0f;
                    for (int j = 0; j < 4; j++) {
                        long n = n0 + lx * 4 + j;
                        float f = 1.0f;
                        if (act && has_ws && n < N) f = xa * ld_scale(sbase, sdt, (n / sbr) * ss_r + ((kb * 128) / sbc) * ss_c);
                        else if (act) f = xa;
                        acc[i][j] += act ? part[i][j] * f : part[i][j];
                        part[i][j] = 0.0f;
                    }
                }
            }
        }
        for (int i = 0; i < 4; i++) {
            long m = m0 + ly * 4 + i;
            if (m >= m_end) continue;
            for (int j = 0; j < 4; j++) {
                long n = n0 + lx * 4 + j;
                if (n < N) {
                    float v = alpha * acc[i][j];
                    if (accum) v += ldf(ybase, ydt, m * ys0 + n); /* y += (a second product into scratch) */
                    stf(ybase, ydt, m * ys0 + n, v);
                }
            }
        }
    }
}

/* y[t,h,n] = sum_k x[t,h,k] * W[h][k][n] for few t (HEAD_LINEAR with transpose_w): one work item per
 * output column, so weight rows are read coalesced. Grid: (ceil(N/L)*L, Hh). */
__kernel void gemv_cols(__global const uchar *xb, ulong xo, int xdt, long xs0, long xs1,
                        __global const uchar *wb, ulong wo, int wdt, long ws0, long ws1,
                        __global uchar *yb, ulong yo, int ydt, long ys0, long ys1, long K, long N, long T)
{
    long n = get_global_id(0), h = get_global_id(1);
    if (n >= N) return;
    __global const uchar *x = xb + xo, *w = wb + wo;
    for (long t0 = 0; t0 < T; t0 += GEMV_MCH) {
        int tc = T - t0 < GEMV_MCH ? (int)(T - t0) : GEMV_MCH;
        float acc[GEMV_MCH];
#pragma unroll
        for (int m = 0; m < GEMV_MCH; m++) acc[m] = 0.0f;
        for (long k = 0; k < K; k++) {
            float wv = ldf(w, wdt, h * ws0 + k * ws1 + n);
#pragma unroll
            for (int m = 0; m < GEMV_MCH; m++)
                if (m < tc) acc[m] = fma(ldf(x, xdt, (t0 + m) * xs0 + h * xs1 + k), wv, acc[m]);
        }
#pragma unroll
        for (int m = 0; m < GEMV_MCH; m++)
            if (m < tc) stf(yb + yo, ydt, (t0 + m) * ys0 + h * ys1 + n, acc[m]);
    }
}

/* The experts that have rows, in ascending order, padded with -1 to nslots. One work group. */
__kernel void group_compact(__global const uchar *ob, ulong oo, long os0, long G, long R, __global int *list,
                            int nslots)
{
    __local int tmp[DSRT_WG];
    int lid = get_local_id(0), L = get_local_size(0);
    __global const int *off = (__global const int *)(ob + oo);
    long per = (G + L - 1) / L, g0 = lid * per, g1 = g0 + per < G ? g0 + per : G;
    int cnt = 0;
    for (long g = g0; g < g1; g++) {
        long a = off[g * os0], b = off[(g + 1) * os0];
        a = a < 0 ? 0 : (a > R ? R : a);
        b = b < 0 ? 0 : (b > R ? R : b);
        cnt += b > a;
    }
    int total;
    int pos = wg_scan_excl(cnt, tmp, &total);
    for (long g = g0; g < g1; g++) {
        long a = off[g * os0], b = off[(g + 1) * os0];
        a = a < 0 ? 0 : (a > R ? R : a);
        b = b < 0 ? 0 : (b > R ? R : b);
        if (b > a && pos < nslots) list[pos++] = (int)g;
    }
    for (int i = total + lid; i < nslots; i += L) list[i] = -1;
}

/* The official activation quantization of x rows for the FP8 GEMM: e4m3 values (kept as f32) and one
 * scale per 128 block. One work group per (block, row). Grid: (nkb * L, M). */
__kernel void prep_rows(__global const uchar *xb, ulong xo, int xdt, long xs0, long K, __global float *xq,
                        __global float *xs, long nkb, int pow2)
{
    __local float red[DSRT_WG];
    long kb = get_group_id(0), m = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global const uchar *x = xb + xo;
    float amax = 0.0f;
    for (long i = lid; i < 128; i += L) {
        float a = fabs(ldf(x, xdt, m * xs0 + kb * 128 + i));
        if (a > amax) amax = a;
    }
    float s = act_scale(wg_max(amax, red), pow2);
    for (long i = lid; i < 128; i += L)
        xq[m * K + kb * 128 + i] = e4m3_to_f32(act_quant_code(ldf(x, xdt, m * xs0 + kb * 128 + i), s));
    if (lid == 0) xs[m * nkb + kb] = s;
}
