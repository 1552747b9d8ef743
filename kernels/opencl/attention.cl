/* MLA attention.
 *
 * attn_slots / attn_positions list, per query row, the key rows it attends in ascending position order
 * (DSA indices sorted, duplicates and positions without a cached row marked -1), so every later kernel
 * works in O(attended positions).
 *
 * Decode (absorbed form over the paged cache) then runs as
 *   mla_decode_scores: one work group per (query row, tile of cached positions) and ALL heads, so each
 *       cached row is read and decoded once per query and shared by every head (the 128 heads are the
 *       "M" of a small GEMM). Dims are staged 32 at a time in local memory; each work item owns 2 heads
 *       x 8 positions.
 *   attn_softmax: exact softmax per (row, head) over the stored scores, with the official bf16 rounding.
 *   mla_decode_pv: work groups split the positions (so a single query still fills the device) and a
 *       64-wide slice of the latent; each item owns 8 heads x 4 dims; partial sums go to scratch.
 *   mla_decode_reduce: adds the partial sums in position order and rounds once.
 * Prefill (expanded form) uses per-(row, head) work groups over the listed key rows. */

/* Sorts n_pad (a power of two) ints ascending in local memory. */
DEV void bitonic_sort_int(__local int *a, int n_pad)
{
    int lid = get_local_id(0), L = get_local_size(0);
    for (int size = 2; size <= n_pad; size <<= 1)
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            for (int i = lid; i < n_pad / 2; i += L) {
                int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                bool asc = (lo & size) == 0;
                int x = a[lo], y = a[hi];
                if ((x > y) == asc) {
                    a[lo] = y;
                    a[hi] = x;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
}

/* The key row of position p for query row t, or -1. mode 0: paged cache slot; mode 1: kv_start + p
 * within [0, L). */
DEV long key_row(int mode, long p, int seq, long base, __global const int *bt, long bt0, long bt1, long P, int page,
                 long S)
{
    if (p < 0) return -1;
    if (mode == 1) {
        long r = base + p;
        return (r >= 0 && r < S) ? r : -1;
    }
    if (seq < 0) return -1;
    long pi = p / page;
    if (pi >= P) return -1;
    int pg = bt[seq * bt0 + pi * bt1];
    if (pg < 0) return -1;
    long slot = (long)pg * page + p % page;
    return slot < S ? slot : -1;
}

/* DSA rows: one work group per query row sorts its indices; list[t][i] = the key row of the i-th
 * smallest distinct valid position, -1 for duplicates, invalid entries and positions without a row
 * (ascending order is kept; -1 entries get score -inf and probability 0). count[t] = kidx. */
__kernel void attn_positions(int mode, __global const uchar *lb, ulong lo_, long ls0,
                             __global const uchar *rsb, ulong rso, long rss0,
                             __global const uchar *kb, ulong ko, long ks0,
                             __global const uchar *ib, ulong io, long is0, long kidx,
                             __global const uchar *btb, ulong bto, long bt0, long bt1, long seq_rows, long P,
                             int page, long S, __global int *list, __global int *count, long cap,
                             __local int *sorted, int n_pad)
{
    long t = get_group_id(0);
    int lid = get_local_id(0), L = get_local_size(0);
    int len = ((__global const int *)(lb + lo_))[t * ls0];
    int seq = mode == 0 ? ((__global const int *)(rsb + rso))[t * rss0] : 0;
    if (mode == 0 && seq >= seq_rows) seq = -1;
    long base = mode == 1 ? ((__global const int *)(kb + ko))[t * ks0] : 0;
    __global const int *bt = (__global const int *)(btb + bto);
    __global const int *idx = (__global const int *)(ib + io);
    for (int i = lid; i < n_pad; i += L) {
        int p = i < kidx ? idx[t * is0 + i] : INT_MAX;
        sorted[i] = (p >= 0 && p < len) ? p : INT_MAX;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    bitonic_sort_int(sorted, n_pad);
    for (long i = lid; i < kidx && i < cap; i += L) {
        int p = sorted[i];
        long r = -1;
        if (p != INT_MAX && (i == 0 || sorted[i - 1] != p)) r = key_row(mode, p, seq, base, bt, bt0, bt1, P, page, S);
        list[t * cap + i] = (int)r;
    }
    if (lid == 0) count[t] = (int)(kidx < cap ? kidx : cap);
}

/* Rows without DSA indices: list[t][j] = the key row of position pbeg + j (-1 where no row exists),
 * filled in parallel. Grid: (ceil(cap / L) * L, T). count[t] = positions listed. */
__kernel void attn_slots(int mode, __global const uchar *lb, ulong lo_, long ls0,
                         __global const uchar *rsb, ulong rso, long rss0,
                         __global const uchar *kb, ulong ko, long ks0,
                         __global const uchar *btb, ulong bto, long bt0, long bt1, long seq_rows, long P, int page,
                         long S, __global int *list, __global int *count, long cap)
{
    long j = get_global_id(0), t = get_global_id(1);
    int len = ((__global const int *)(lb + lo_))[t * ls0];
    int seq = mode == 0 ? ((__global const int *)(rsb + rso))[t * rss0] : 0;
    if (mode == 0 && seq >= seq_rows) seq = -1;
    long base = mode == 1 ? ((__global const int *)(kb + ko))[t * ks0] : 0;
    /* positions that can have a row: [pbeg, pend) */
    long pend = len, pbeg = 0;
    if (mode == 0 && pend > P * page) pend = P * page;
    if (mode == 1) {
        if (pend > S - base) pend = S - base;
        if (pbeg < -base) pbeg = -base;
    }
    long n = pend > pbeg ? pend - pbeg : 0;
    if (n > cap) n = cap;
    if (j == 0) count[t] = (int)n;
    if (j >= n) return;
    list[t * cap + j] = (int)key_row(mode, pbeg + j, seq, base, (__global const int *)(btb + bto), bt0, bt1, P, page, S);
}

#define DC 32
#define JPT 8

/* Stages dims [c0, c0+DC) of part `rope` (0: latent, 1: rope) of the query heads and of the tile's
 * cached rows into local memory, zero-padded. */
DEV void decode_stage(int rope, long c0, long width, long t, long h_begin, long nh,
                      __global const uchar *qb, int qdt, long qs0, long qs1,
                      __global const uchar *cb, int cdt, long cs0, int fp8, long Dc, long Dr,
                      __local const int *rows, int nrows, int TJ,
                      __local float *ql, __local float *kl)
{
    int lid = get_local_id(0), L = get_local_size(0);
    long nb = (Dc + 127) / 128;
    /* The model's case (bf16 queries, FP8 cache, whole chunks) loads 4 dims at a time, 4 loads per
     * thread issued before any is used: loads taken one latency at a time made this staging, not the
     * dot products, the kernel's cost (0.4 ms a call on the H100). */
    if (qdt == DT_BF16 && fp8 && width == DC) {
        __global const ushort *q16 = (__global const ushort *)qb;
        int nq = (int)nh * (DC / 4), nk = TJ * (DC / 4);
        for (int v0 = lid; v0 < nq; v0 += 4 * L) {
            ushort4 r[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int v = v0 + u * L;
                r[u] = v < nq ? vload4(0, q16 + t * qs0 + (h_begin + v / (DC / 4)) * qs1 + c0 + 4 * (v % (DC / 4)))
                              : (ushort4)(0);
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int v = v0 + u * L;
                if (v < nq)
                    vstore4((float4)(bf16_to_f32(r[u].x), bf16_to_f32(r[u].y), bf16_to_f32(r[u].z), bf16_to_f32(r[u].w)), 0,
                            ql + (v / (DC / 4)) * (DC + 4) + 4 * (v % (DC / 4)));
            }
        }
        for (int v0 = lid; v0 < nk; v0 += 4 * L) {
            float4 x[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int v = v0 + u * L, j = v / (DC / 4);
                long e = c0 + 4 * (v % (DC / 4)); /* element within its part */
                x[u] = (float4)(0.0f);
                if (v < nk && j < nrows && rows[j] >= 0) {
                    __global const uchar *row = cb + (long)rows[j] * cs0;
                    if (!rope) {
                        uchar4 b = vload4(0, row + e);
                        float sc = ld_f32_bytes(row + Dc + 4 * (e / 128));
                        x[u] = (float4)(e4m3_to_f32(b.x), e4m3_to_f32(b.y), e4m3_to_f32(b.z), e4m3_to_f32(b.w)) * sc;
                    } else {
                        ushort4 h = vload4(0, (__global const ushort *)(row + Dc + 4 * nb) + e);
                        x[u] = (float4)(bf16_to_f32(h.x), bf16_to_f32(h.y), bf16_to_f32(h.z), bf16_to_f32(h.w));
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int v = v0 + u * L;
                if (v < nk) vstore4(x[u], 0, kl + (v / (DC / 4)) * (DC + 4) + 4 * (v % (DC / 4)));
            }
        }
    } else {
        for (long i = lid; i < nh * DC; i += L) {
            long hl = i / DC, d = i % DC;
            ql[hl * (DC + 4) + d] = d < width ? ldf(qb, qdt, t * qs0 + (h_begin + hl) * qs1 + c0 + d) : 0.0f;
        }
        for (long i = lid; i < (long)TJ * DC; i += L) {
            long j = i / DC, d = i % DC;
            float v = 0.0f;
            if (j < nrows && d < width && rows[j] >= 0) {
                __global const uchar *row = cb + (long)rows[j] * cs0 * (fp8 ? 1 : dt_size(cdt));
                long e = c0 + d; /* element within its part */
                if (!fp8) v = ldf(row, cdt, rope ? Dc + e : e);
                else if (!rope) v = e4m3_to_f32(row[e]) * ld_f32_bytes(row + Dc + 4 * (e / 128));
                else v = ld_bf16_bytes(row + Dc + 4 * nb + 2 * e);
            }
            kl[j * (DC + 4) + d] = v;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

DEV float dot4(float4 a, float4 b) { return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, a.x * b.x))); }

/* Grid: (ntiles * L, T). Scores S[t][h][j] for the tile's positions j. */
__kernel void mla_decode_scores(__global const uchar *qlb, ulong qlo, int qldt, long qls0, long qls1, long Dc,
                                __global const uchar *qpb, ulong qpo, int qpdt, long qps0, long qps1, long Dr,
                                __global const uchar *cb, ulong co, int cdt, long cs0, int fp8,
                                __global const int *list, __global const int *count, long cap,
                                __global float *S, long Hh, long h_begin, long nh, float scale, int bf16, int TJ,
                                __local float *ql, __local float *kl, __local int *rows)
{
    long t = get_group_id(1), j0 = (long)get_group_id(0) * TJ;
    int lid = get_local_id(0), L = get_local_size(0);
    int n = count[t];
    /* tiles past the row's positions stage nothing and write nothing (no early return: barriers follow) */
    int nrows = n - j0 < TJ ? (int)(n - j0) : TJ;
    if (nrows < 0) nrows = 0;
    for (int j = lid; j < nrows; j += L) rows[j] = list[t * cap + j0 + j];
    barrier(CLK_LOCAL_MEM_FENCE);
    const int jsets = TJ / JPT;
    const int items = (int)((nh + 1) / 2) * jsets;
    const int hp = lid / jsets, js = lid % jsets;
    const bool active = lid < items && nrows > 0;
    float lat0[JPT], lat1[JPT], pe0[JPT], pe1[JPT];
#pragma unroll
    for (int j = 0; j < JPT; j++) lat0[j] = lat1[j] = pe0[j] = pe1[j] = 0.0f;
    __global const uchar *qlp = qlb + qlo, *qpp = qpb + qpo, *cp = cb + co;
    for (int part = 0; part < 2; part++) {
        long D = part ? Dr : Dc;
        for (long c0 = 0; c0 < D; c0 += DC) {
            long width = D - c0 < DC ? D - c0 : DC;
            decode_stage(part, c0, width, t, h_begin, nh, part ? qpp : qlp, part ? qpdt : qldt, part ? qps0 : qls0,
                         part ? qps1 : qls1, cp, cdt, cs0, fp8, Dc, Dr, rows, nrows, TJ, ql, kl);
            if (active) {
                __local const float *q0p = ql + (2 * hp) * (DC + 4), *q1p = ql + (2 * hp + 1) * (DC + 4);
                __local const float *kp = kl + (js * JPT) * (DC + 4);
                for (int d = 0; d < DC; d += 4) {
                    float4 q0 = vload4(0, q0p + d), q1 = vload4(0, q1p + d);
#pragma unroll
                    for (int j = 0; j < JPT; j++) {
                        float4 k = vload4(0, kp + j * (DC + 4) + d);
                        if (part) {
                            pe0[j] += dot4(q0, k);
                            pe1[j] += dot4(q1, k);
                        } else {
                            lat0[j] += dot4(q0, k);
                            lat1[j] += dot4(q1, k);
                        }
                    }
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    if (!active) return;
#pragma unroll
    for (int j = 0; j < JPT; j++) {
        long jj = js * JPT + j;
        if (jj >= nrows) continue;
        for (int u = 0; u < 2; u++) {
            long h = 2 * hp + u;
            if (h >= nh) continue;
            float a = u ? lat1[j] : lat0[j], p = u ? pe1[j] : pe0[j];
            float s = bf16 ? round_bf16(round_bf16(round_bf16(a) + round_bf16(p)) * scale) : (a + p) * scale;
            S[(t * Hh + h_begin + h) * cap + j0 + jj] = rows[jj] >= 0 ? s : -INFINITY; /* no cached row */
        }
    }
}

/* Softmax of each (row, head) score row over its count[t] entries, in place. Grid: (L * Hh, T). */
__kernel void attn_softmax(__global float *S, __global const int *count, long cap, long Hh, int bf16)
{
    __local float red[DSRT_WG];
    long h = get_group_id(0), t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    int n = count[t]; /* n <= 0: the loops below do nothing */
    __global float *row = S + (t * Hh + h) * cap;
    float m = -INFINITY;
    for (int j = lid; j < n; j += L) m = row[j] > m ? row[j] : m;
    m = wg_max(m, red);
    float acc = 0.0f;
    for (int j = lid; j < n; j += L) {
        float e = m == -INFINITY ? 0.0f : exp(row[j] - m); /* -inf: a listed position without a row */
        row[j] = e;
        acc += e;
    }
    float sum = wg_sum(acc, red);
    for (int j = lid; j < n; j += L) {
        float p = sum > 0 ? row[j] / sum : 0.0f;
        row[j] = bf16 ? round_bf16(p) : p;
    }
}

#define PV_TJ 32
#define PV_DC 64

/* Partial o for a split of positions and a 64-wide latent slice. Grid: (ndc * L, nsplit, T).
 * part[split][t][h][d] (h relative to h_begin, nh heads). */
__kernel void mla_decode_pv(__global const uchar *cb, ulong co, int cdt, long cs0, int fp8, long Dc,
                            __global const int *list, __global const int *count, long cap,
                            __global const float *P, long Hh, long h_begin, long nh, long split_len, long T,
                            __global float *part, __local float *cl, __local float *pl)
{
    long dc0 = (long)get_group_id(0) * PV_DC, split = get_group_id(1), t = get_group_id(2);
    int lid = get_local_id(0), L = get_local_size(0);
    int n = count[t];
    long j_begin = split * split_len, j_end = j_begin + split_len < n ? j_begin + split_len : n;
    const int octs = (int)((nh + 7) / 8), items = octs * (PV_DC / 4);
    const int ho = lid / (PV_DC / 4), dq = lid % (PV_DC / 4);
    const bool active = lid < items;
    const int nhp = octs * 8 + 4; /* pl row pitch */
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) acc[i][k] = 0.0f;
    __global const uchar *cbase = cb + co;
    long nb = (Dc + 127) / 128;
    for (long j0 = j_begin; j0 < j_end; j0 += PV_TJ) {
        int nj = j_end - j0 < PV_TJ ? (int)(j_end - j0) : PV_TJ;
        for (int i = lid; i < PV_TJ * PV_DC; i += L) {
            int j = i / PV_DC, d = i % PV_DC;
            float v = 0.0f;
            long e = dc0 + d;
            long r = (j < nj && e < Dc) ? list[t * cap + j0 + j] : -1;
            if (r >= 0) {
                __global const uchar *row = cbase + r * cs0 * (fp8 ? 1 : dt_size(cdt));
                v = fp8 ? e4m3_to_f32(row[e]) * ld_f32_bytes(row + Dc + 4 * (e / 128)) : ldf(row, cdt, e);
            }
            cl[j * (PV_DC + 4) + d] = v;
        }
        for (int i = lid; i < PV_TJ * octs * 8; i += L) {
            int j = i / (octs * 8), h = i % (octs * 8);
            pl[j * nhp + h] = (j < nj && h < nh) ? P[(t * Hh + h_begin + h) * cap + j0 + j] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (active) {
            for (int j = 0; j < nj; j++) {
                float4 c = vload4(0, cl + j * (PV_DC + 4) + dq * 4);
                float4 pa = vload4(0, pl + j * nhp + ho * 8), pb = vload4(0, pl + j * nhp + ho * 8 + 4);
                float pv[8] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    acc[i][0] = fma(pv[i], c.x, acc[i][0]);
                    acc[i][1] = fma(pv[i], c.y, acc[i][1]);
                    acc[i][2] = fma(pv[i], c.z, acc[i][2]);
                    acc[i][3] = fma(pv[i], c.w, acc[i][3]);
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (!active) return;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        long h = ho * 8 + i;
        if (h >= nh) continue;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            long d = dc0 + dq * 4 + k;
            if (d < Dc) part[((split * T + t) * nh + h) * Dc + d] = acc[i][k];
        }
    }
}

/* o[t][h][d] = sum over splits of part, rounded once. Grid: (Dc, nh, T). */
__kernel void mla_decode_reduce(__global const float *part, long nsplit, long T, long nh, long Dc, long h_begin,
                                __global uchar *ob, ulong oo, int odt, long os0, long os1)
{
    long d = get_global_id(0), h = get_global_id(1), t = get_global_id(2);
    if (d >= Dc || h >= nh || t >= T) return;
    float acc = 0.0f;
    for (long s = 0; s < nsplit; s++) acc += part[((s * T + t) * nh + h) * Dc + d];
    stf(ob + oo, odt, t * os0 + (h_begin + h) * os1 + d, acc);
}

/* Dense expanded-form prefill (no DSA indices): S[h][t][r] = q_t . k_r was computed by GEMMs over all
 * key rows; this masks row t to its key range [kv_start, kv_start + kv_len) within [0, L), applies the
 * scale (with the official bf16 rounding for bf16 q) and turns the row into probabilities, zeros
 * outside the range, in place. Grid: (L_wg * nh, Tb). */
__kernel void attn_softmax_dense(__global float *S, long L, long Tb, __global const uchar *kb, ulong ko, long ks0,
                                 __global const uchar *lb, ulong lo_, long ls0, float scale, int bf16)
{
    __local float red[DSRT_WG];
    long h = get_group_id(0), t = get_group_id(1);
    int lid = get_local_id(0), Lw = get_local_size(0);
    long base = ((__global const int *)(kb + ko))[t * ks0], len = ((__global const int *)(lb + lo_))[t * ls0];
    long lo = base > 0 ? base : 0, hi = base + len < L ? base + len : L;
    if (len <= 0 || hi < lo) hi = lo;
    __global float *row = S + (h * Tb + t) * L;
    float m = -INFINITY;
    for (long r = lo + lid; r < hi; r += Lw) {
        float v = row[r];
        v = bf16 ? round_bf16(round_bf16(v) * scale) : v * scale;
        row[r] = v;
        m = v > m ? v : m;
    }
    m = wg_max(m, red);
    float acc = 0.0f;
    for (long r = lo + lid; r < hi; r += Lw) {
        float e = exp(row[r] - m);
        row[r] = e;
        acc += e;
    }
    float sum = wg_sum(acc, red);
    for (long r = lid; r < L; r += Lw) {
        float p = 0.0f;
        if (r >= lo && r < hi) {
            p = row[r] / sum;
            if (bf16) p = round_bf16(p);
        }
        row[r] = p;
    }
}

/* Expanded-form scores: one work group per (head, row), one work item per listed key row.
 * Grid: (L * Hh, T). s = scale * (q_nope . k_nope + q_pe . k_pe), bf16-rounded like the official
 * prefill when q is bf16. */
__kernel void mla_prefill_scores(__global const uchar *qb, ulong qo, int qdt, long qs0, long qs1,
                                 __global const uchar *knb, ulong kno, int kndt, long kns0, long kns1, long Dn,
                                 __global const uchar *kpb, ulong kpo, int kpdt, long kps0, long Dr,
                                 __global const int *list, __global const int *count, long cap,
                                 __global float *S, long Hh, float scale, int bf16, __local float *qv)
{
    long h = get_group_id(0), t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    int n = count[t];
    for (long i = lid; i < Dn + Dr; i += L) qv[i] = ldf(qb + qo, qdt, t * qs0 + h * qs1 + i);
    barrier(CLK_LOCAL_MEM_FENCE);
    __global const uchar *kn = knb + kno, *kp = kpb + kpo;
    for (int j = lid; j < n; j += L) {
        long r = list[t * cap + j];
        if (r < 0) {
            S[(t * Hh + h) * cap + j] = -INFINITY;
            continue;
        }
        float s = 0.0f;
        for (long i = 0; i < Dn; i++) s = fma(qv[i], ldf(kn, kndt, r * kns0 + h * kns1 + i), s);
        for (long i = 0; i < Dr; i++) s = fma(qv[Dn + i], ldf(kp, kpdt, r * kps0 + i), s);
        S[(t * Hh + h) * cap + j] = bf16 ? round_bf16(round_bf16(s) * scale) : s * scale;
    }
}

/* o[t,h,:] = sum_j p_j v[r_j,h,:], positions in ascending order like the CPU. Grid: (L * Hh, T). */
__kernel void mla_prefill_pv(__global const uchar *vb, ulong vo, int vdt, long vs0, long vs1, long Dv,
                             __global const int *list, __global const int *count, long cap,
                             __global const float *P, long Hh,
                             __global uchar *ob, ulong oo, int odt, long os0, long os1)
{
    long h = get_group_id(0), t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    int n = count[t];
    __global const float *p = P + (t * Hh + h) * cap;
    __global const uchar *v = vb + vo;
    for (long d = lid; d < Dv; d += L) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++) {
            long r = list[t * cap + j];
            if (r >= 0) acc += p[j] * ldf(v, vdt, r * vs0 + h * vs1 + d);
        }
        stf(ob + oo, odt, t * os0 + h * os1 + d, acc);
    }
}
