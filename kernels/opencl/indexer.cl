/* The lightning indexer's scores, and top-k selection (also used by sampling).
 *
 * indexer_scores: one work group per (query row, 64 cached positions) covering all indexer heads, so
 * every cached key is read once per query. The per-head dot products are a small GEMM (heads x D) x
 * (D x 64) staged 16 dims at a time; each work item owns 4 heads x 4 positions, applies ReLU and the
 * head weights, and the heads are summed in local memory.
 *
 * select_best: the k best entries of a score row (value descending, position ascending) by a radix
 * select on unique order-preserving 64-bit keys (8-bit passes with local histograms) to find the k-th
 * key, one gather of everything at or above it, then a bitonic sort of the k survivors. Work is
 * O(row length) per pass with no global sort. */

/* Order-preserving key of a score; 0 marks values that are never chosen (NaN, -inf). */
DEV uint score_key(float v)
{
    if (isnan(v) || v == -INFINITY) return 0;
    if (v == 0.0f) v = 0.0f; /* -0 ranks equal to +0 */
    uint u = as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* A unique key per entry whose descending order is (score descending, position ascending); 0 for
 * entries never chosen. Unique keys make the k-th entry exact, so ties need no ordered pass. */
DEV ulong rank_key(float v, long j)
{
    uint k = score_key(v);
    return k ? (((ulong)k << 32) | (ulong)(0xffffffffu - (uint)j)) : 0ul;
}

DEV int rank_pos(ulong key) { return (int)(0xffffffffu - (uint)(key & 0xffffffffu)); }

/* Sorts n_pad (a power of two) keys descending: the bitonic network as one flat loop over its stages
 * (one barrier per stage, no nested barrier loops). */
DEV void bitonic_desc(__local ulong *keys, int n_pad)
{
    int lid = get_local_id(0), L = get_local_size(0);
    int lg = 0;
    while ((1 << lg) < n_pad) lg++;
    int stages = lg * (lg + 1) / 2;
    for (int st = 0; st < stages; st++) {
        int a = 0;
        while ((a + 1) * (a + 2) / 2 <= st) a++;
        int bexp = a - (st - a * (a + 1) / 2);
        int size = 2 << a, stride = 1 << bexp;
        for (int i = lid; i < n_pad / 2; i += L) {
            int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
            bool desc = (lo & size) == 0;
            ulong x = keys[lo], y = keys[hi];
            if ((x < y) == desc) {
                keys[lo] = y;
                keys[hi] = x;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* The `want` best entries of row[0..n) with rank key below `limit` (ULONG_MAX: all), sorted descending
 * into keys[0..kpad) (zeros after); returns how many. A radix select over the 64-bit keys (8-bit
 * digits, the position part only as wide as n needs) finds the want-th key; one gather with local
 * atomics collects every key at or above it. hist: 256 uints, sh: 4 ints. */
DEV int select_best(__global const float *row, long n, int want, ulong limit, __local ulong *keys, int kpad,
                    __local uint *hist, __local int *sh)
{
    int lid = get_local_id(0), L = get_local_size(0);
    if (lid == 0) {
        sh[0] = 0;
        sh[1] = 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int cnt = 0;
    for (long j = lid; j < n; j += L) {
        ulong k = rank_key(row[j], j);
        cnt += k != 0 && k < limit;
    }
    atomic_add(&sh[0], cnt);
    barrier(CLK_LOCAL_MEM_FENCE);
    int nvalid = sh[0];
    /* radix passes only when there are more candidates than wanted (a loop of zero trips otherwise:
     * no barrier inside a branch) */
    int pb = 1;
    while (pb < 32 && ((long)1 << pb) < n) pb++;
    int p8 = (pb + 7) / 8 * 8, npass = nvalid > want ? 4 + p8 / 8 : 0;
    ulong prefix = 0;
    int need = want;
    {
        for (int ps = 0; ps < npass; ps++) {
            int shift = ps < 4 ? 56 - 8 * ps : p8 - 8 - 8 * (ps - 4);
            if (ps == 4 && p8 < 32) prefix |= ((ulong)0xffffffffu >> p8) << p8; /* position bits every key shares */
            ulong hmask = shift + 8 >= 64 ? 0ul : ~(ulong)0 << (shift + 8);
            for (int i = lid; i < 256; i += L) hist[i] = 0;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (long j = lid; j < n; j += L) {
                ulong k = rank_key(row[j], j);
                if (k != 0 && k < limit && (k & hmask) == prefix) atomic_inc(&hist[(uint)(k >> shift) & 0xffu]);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (lid == 0) {
                int cum = 0, digit = 0;
                for (int b = 255; b >= 0; b--) {
                    if (cum + (int)hist[b] >= need) {
                        digit = b;
                        break;
                    }
                    cum += (int)hist[b];
                }
                sh[2] = digit;
                sh[3] = need - cum;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            prefix |= (ulong)sh[2] << shift;
            need = sh[3];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    ulong thr = npass ? prefix : 1; /* collect keys >= thr */
    for (long j = lid; j < n; j += L) {
        ulong k = rank_key(row[j], j);
        if (k != 0 && k < limit && k >= thr) {
            int at = atomic_inc(&sh[1]);
            if (at < kpad) keys[at] = k;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int nsel = sh[1] < want ? sh[1] : want;
    for (int i = nsel + lid; i < kpad; i += L) keys[i] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    bitonic_desc(keys, kpad);
    return nsel;
}

/* Top-k per row, by score or (by_pos) by position. Grid: (L, T). */
__kernel void topk(__global const uchar *sb, ulong so, long ss0, long Lr, __global const uchar *lb, ulong lo_,
                   long ls0, int has_len, __global uchar *ob, ulong oo, long os0, int k, __local ulong *keys, int kpad,
                   int by_pos)
{
    __local uint hist[256];
    __local int sh[4];
    long t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    long n = Lr;
    if (has_len) {
        int l = ((__global const int *)(lb + lo_))[t * ls0];
        n = l < 0 ? 0 : (l < Lr ? l : Lr);
    }
    __global const float *row = (__global const float *)(sb + so) + t * ss0;
    int nsel = select_best(row, n, k, ~(ulong)0, keys, kpad, hist, sh);
    if (by_pos) { /* re-key the chosen entries as ~position (rank_pos still reads it), unused ones (0) sort last */
        for (int i = lid; i < nsel; i += L) keys[i] = ~(ulong)(uint)rank_pos(keys[i]);
        barrier(CLK_LOCAL_MEM_FENCE);
        bitonic_desc(keys, kpad);
    }
    __global int *out = (__global int *)(ob + oo) + t * os0;
    for (int i = lid; i < k; i += L) out[i] = i < nsel ? rank_pos(keys[i]) : -1;
}

#define IX_TJ 64
#define IX_DK 16

/* Grid: (ntiles * L, T), L = 16 * head quads. ks: 64 * nb floats of local memory. */
__kernel void indexer_scores(__global const uchar *qb, ulong qo, int qdt, long qs0, long qs1, long Hi, long D,
                             __global const uchar *qsb, ulong qso, int qsdt, long qss0, long qss1, long qss2,
                             __global const uchar *wb, ulong wo, long ws0,
                             __global const uchar *kb, ulong ko, int kdt, long ks0, int fp8,
                             __global const uchar *btb, ulong bto, long bt0, long bt1, long seq_rows, long P,
                             int page, long S, __global const uchar *rsb, ulong rso, long rss0,
                             __global const uchar *lb, ulong lo_, long ls0,
                             __global uchar *ob, ulong oo, long os0, long Lout, float scale,
                             __local float *ksl)
{
    const int L = get_local_size(0), lid = get_local_id(0), HQ = L / 16, HB = 4 * HQ;
    __local float Ql[IX_DK][DSRT_WG / 4 + 4];
    __local float Kl[IX_DK][IX_TJ + 4];
    __local long slots[IX_TJ];
    __local float part_sum[DSRT_WG][4];
    long t = get_group_id(1), j0 = (long)get_group_id(0) * IX_TJ;
    int len = ((__global const int *)(lb + lo_))[t * ls0];
    long n = len < 0 ? 0 : (len > Lout ? Lout : len);
    __global float *out = (__global float *)(ob + oo) + t * os0;
    /* a tile past the row's length only writes -inf: its head loop runs no iterations (no early return,
     * barriers follow) */
    const long Hrun = j0 < n ? Hi : 0;
    int seq = ((__global const int *)(rsb + rso))[t * rss0];
    if (seq >= seq_rows) seq = -1;
    __global const int *bt = (__global const int *)(btb + bto);
    const long nb = (D + 127) / 128;
    const int official = fp8 && D == 128;
    __global const uchar *kbase = kb + ko;
    for (int j = lid; j < IX_TJ; j += L) {
        long p = j0 + j;
        slots[j] = p < n ? key_row(0, p, seq, 0, bt, bt0, bt1, P, page, S) : -1;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (fp8)
        for (long i = lid; i < IX_TJ * nb; i += L) {
            long j = i / nb, bl = i % nb;
            ksl[i] = slots[j] >= 0 ? ld_f32_bytes(kbase + slots[j] * ks0 + D + 4 * bl) : 0.0f;
        }
    const int hq = lid / 16, pq = lid % 16;
    float score[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    __global const float *w = (__global const float *)(wb + wo) + t * ws0;
    for (long hb0 = 0; hb0 < Hrun; hb0 += HB) {
        float dacc[4][4];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) dacc[a][b] = 0.0f;
        for (long bl = 0; bl < nb; bl++) {
            float part[4][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) part[a][b] = 0.0f;
            long dend = (bl + 1) * 128 < D ? (bl + 1) * 128 : D;
            for (long d0 = bl * 128; d0 < dend; d0 += IX_DK) {
                barrier(CLK_LOCAL_MEM_FENCE);
                for (int i = lid; i < IX_DK * HB; i += L) {
                    int dd = i / HB, hl = i % HB;
                    long h = hb0 + hl, d = d0 + dd;
                    Ql[dd][hl] = (h < Hi && d < dend) ? ldf(qb + qo, qdt, t * qs0 + h * qs1 + d) : 0.0f;
                }
                for (int i = lid; i < IX_DK * IX_TJ; i += L) {
                    int dd = i / IX_TJ, j = i % IX_TJ;
                    long d = d0 + dd;
                    float v = 0.0f;
                    if (slots[j] >= 0 && d < dend) {
                        __global const uchar *row = kbase + slots[j] * ks0 * (fp8 ? 1 : dt_size(kdt));
                        v = fp8 ? e4m3_to_f32(row[d]) : ldf(row, kdt, d);
                    }
                    Kl[dd][j] = v;
                }
                barrier(CLK_LOCAL_MEM_FENCE);
                for (int dd = 0; dd < IX_DK; dd++) {
                    float4 q = vload4(0, &Ql[dd][hq * 4]), k = vload4(0, &Kl[dd][pq * 4]);
                    float qa[4] = {q.x, q.y, q.z, q.w}, kv[4] = {k.x, k.y, k.z, k.w};
                    for (int a = 0; a < 4; a++)
                        for (int b = 0; b < 4; b++) part[a][b] = fma(qa[a], kv[b], part[a][b]);
                }
            }
            for (int a = 0; a < 4; a++) {
                long h = hb0 + hq * 4 + a;
                float qs = (fp8 && !official && h < Hi) ? ld_scale(qsb + qso, qsdt, t * qss0 + h * qss1 + bl * qss2) : 1.0f;
                for (int b = 0; b < 4; b++) {
                    float ks = (fp8 && !official) ? ksl[(pq * 4 + b) * nb + bl] : 1.0f;
                    dacc[a][b] += (fp8 && !official) ? qs * ks * part[a][b] : part[a][b];
                }
            }
        }
        for (int a = 0; a < 4; a++) {
            long h = hb0 + hq * 4 + a;
            if (h >= Hi) continue;
            float wf = w[h];
            if (official) wf = wf * ld_scale(qsb + qso, qsdt, t * qss0 + h * qss1) * scale;
            else wf = wf * scale;
            for (int b = 0; b < 4; b++) {
                float d = dacc[a][b];
                score[b] += (d > 0 ? d : 0.0f) * wf;
            }
        }
    }
    for (int b = 0; b < 4; b++) part_sum[lid][b] = score[b];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid < IX_TJ) {
        /* sum over the head quads that share this position */
        int pqi = lid / 4, b = lid % 4;
        float s = 0.0f;
        for (int h = 0; h < HQ; h++) s += part_sum[h * 16 + pqi][b];
        long j = j0 + lid;
        if (j < Lout) {
            if (j >= n || slots[lid] < 0) out[j] = -INFINITY;
            else out[j] = official ? s * ksl[lid * nb] : s;
        }
    }
}
