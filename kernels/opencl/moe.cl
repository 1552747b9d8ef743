/* MoE routing (noaux_tc, group-limited), dispatch of token rows by expert, and the weighted combine.
 * Selections reproduce the CPU reference exactly: the same comparisons, ties to the lower index. */

DEV float nan_low(float v) { return isnan(v) ? -INFINITY : v; }

/* One work group per token row. s, choice: E floats; gs: G floats; gkept: G ints. */
__kernel void moe_gate(__global const uchar *lb, ulong lo_, long ls0, long E,
                       __global const uchar *bb, ulong bo, long bs0, int has_bias,
                       __global uchar *ib, ulong io, long is0, __global uchar *wb, ulong wo, long ws0,
                       int k, int G, int topk_group, int softmax, int norm, float rscale,
                       __local float *s, __local float *choice, __local float *gs, __local int *gkept)
{
    __local float red[DSRT_WG];
    long t = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global const float *lg = (__global const float *)(lb + lo_) + t * ls0;
    for (long i = lid; i < E; i += L) s[i] = lg[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    /* The softmax reductions run for either score function (barriers outside branches). */
    float m = -INFINITY;
    for (long i = lid; i < E; i += L) m = s[i] > m ? s[i] : m;
    m = wg_max(m, red);
    float acc = 0.0f;
    for (long i = lid; i < E; i += L) {
        float e = exp(s[i] - m);
        acc += e;
    }
    float sum = wg_sum(acc, red);
    for (long i = lid; i < E; i += L) s[i] = softmax ? exp(s[i] - m) / sum : 1.0f / (1.0f + exp(-s[i]));
    __global const float *bias = (__global const float *)(bb + bo);
    for (long i = lid; i < E; i += L) {
        choice[i] = nan_low(s[i] + (has_bias ? bias[i * bs0] : 0.0f));
    }
    long per = E / G;
    for (int g = lid; g < G; g += L) gkept[g] = 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    {
        /* group score: the two largest biased scores (the largest when there is no bias) */
        for (int g = lid; g < G && G > 1; g += L) {
            float a = -INFINITY, c = -INFINITY;
            for (long i = g * per; i < (g + 1) * per; i++) {
                if (choice[i] > a) {
                    c = a;
                    a = choice[i];
                } else if (choice[i] > c) {
                    c = choice[i];
                }
            }
            gs[g] = (has_bias && per > 1) ? a + c : a;
            gkept[g] = 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0 && G > 1)
            for (int n = 0; n < topk_group; n++) {
                int best = -1;
                for (int g = 0; g < G; g++)
                    if (!gkept[g] && (best < 0 || nan_low(gs[g]) > nan_low(gs[best]))) best = g;
                gkept[best] = 1;
            }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global int *ids = (__global int *)(ib + io) + t * is0;
    __global float *wt = (__global float *)(wb + wo) + t * ws0;
    /* The k best experts of the kept groups by (choice descending, index ascending), as the CPU's
     * repeated first-maximum picks them: an expert's place is the number of kept experts ranking
     * before it. (All -inf choices rank by index, like the CPU's first eligible pick.) */
    for (long i = lid; i < E; i += L) {
        if (!gkept[i / per]) continue;
        float ci = choice[i];
        int rank = 0;
        for (long e = 0; e < E && rank < k; e++)
            if (gkept[e / per] && (choice[e] > ci || (choice[e] == ci && e < i))) rank++;
        if (rank < k) {
            ids[rank] = (int)i;
            wt[rank] = s[i];
        }
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (lid == 0) {
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += wt[j];
        for (int j = 0; j < k; j++) {
            float x = wt[j];
            if (norm) x /= sum;
            wt[j] = x * rscale;
        }
    }
}

/* Counting sort of (token, slot) pairs by local expert, stable in token order. One work group.
 * cnt: G+1 ints, cur: G ints. */
__kernel void moe_dispatch_index(__global const uchar *ib, ulong io, long is0, long is1, long T, int k, int e0, int G,
                                 __global uchar *ob, ulong oo, long os0, __global uchar *rtb, ulong rto, long rts0,
                                 long R, __global uchar *srb, ulong sro, long srs0, long srs1,
                                 __local int *cnt, __local int *cur)
{
    __local int gl[DSRT_WG];
    int lid = get_local_id(0), L = get_local_size(0);
    __global const int *ids = (__global const int *)(ib + io);
    __global int *off = (__global int *)(ob + oo), *row_token = (__global int *)(rtb + rto);
    __global int *slot_row = (__global int *)(srb + sro);
    for (int g = lid; g <= G; g += L) cnt[g] = 0;
    for (long r = lid; r < R; r += L) row_token[r * rts0] = -1;
    barrier(CLK_LOCAL_MEM_FENCE);
    long nent = T * k;
    for (long e = lid; e < nent; e += L) {
        long g = (long)ids[(e / k) * is0 + (e % k) * is1] - e0;
        if (g >= 0 && g < G) atomic_inc(&cnt[g]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        int acc = 0;
        for (int g = 0; g < G; g++) {
            off[(long)g * os0] = acc;
            cur[g] = acc;
            acc += cnt[g];
        }
        off[(long)G * os0] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (long c0 = 0; c0 < nent; c0 += L) {
        long e = c0 + lid;
        int g = -1;
        if (e < nent) {
            long gg = (long)ids[(e / k) * is0 + (e % k) * is1] - e0;
            g = (gg >= 0 && gg < G) ? (int)gg : -1;
        }
        gl[lid] = g;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (e < nent) {
            long t = e / k, j = e % k;
            if (g < 0) {
                slot_row[t * srs0 + j * srs1] = -1;
            } else {
                int rank = 0;
                for (int i = 0; i < lid; i++) rank += gl[i] == g;
                int r = cur[g] + rank;
                slot_row[t * srs0 + j * srs1] = r;
                row_token[(long)r * rts0] = (int)t;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (g >= 0) atomic_inc(&cur[g]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* x_perm[r] = x[row_token[r]] for r < offsets[G]. Grid: (H, rows). */
__kernel void moe_dispatch_copy(__global const uchar *xb, ulong xo, int xdt, long xs0,
                                __global uchar *pb, ulong po, int pdt, long ps0,
                                __global const uchar *rtb, ulong rto, long rts0,
                                __global const uchar *ob, ulong oo, long os0, int G, long H, long rows)
{
    long c = get_global_id(0), r = get_global_id(1);
    if (c >= H || r >= rows) return;
    int used = ((__global const int *)(ob + oo))[(long)G * os0];
    if (r >= used) return;
    int tok = ((__global const int *)(rtb + rto))[r * rts0];
    if (tok < 0) return;
    stf(pb + po, pdt, r * ps0 + c, ldf(xb + xo, xdt, (long)tok * xs0 + c));
}

/* y[t] = sum over slots in ascending expert id of y_perm[slot_row] * weight, plus shared[t].
 * One work group per token; order: k ints. */
__kernel void moe_combine(__global const uchar *yb_, ulong ypo, int ypdt, long yps0, long R,
                          __global const uchar *srb, ulong sro, long srs0, long srs1,
                          __global const uchar *idb, ulong ido, long ids0, long ids1,
                          __global const uchar *wb, ulong wo, long ws0, long ws1,
                          __global const uchar *shb, ulong sho, int shdt, long shs0, int has_sh,
                          __global uchar *yb, ulong yo, int ydt, long ys0, long H, int k, __local int *order,
                          __local int *rows, __local float *wk)
{
    /* Grid: (ceil(H / L) * L, T): a work group per (column block, token), a column per item. */
    long t = get_group_id(1), c = get_global_id(0);
    int lid = get_local_id(0);
    __global const int *ids = (__global const int *)(idb + ido), *sr = (__global const int *)(srb + sro);
    __global const float *w = (__global const float *)(wb + wo);
    if (lid == 0) { /* slots in ascending expert id, stable (insertion sort: k is small) */
        for (int j = 0; j < k; j++) {
            int i = j, idj = ids[t * ids0 + j * ids1];
            while (i > 0 && ids[t * ids0 + order[i - 1] * ids1] > idj) {
                order[i] = order[i - 1];
                i--;
            }
            order[i] = j;
        }
        for (int a = 0; a < k; a++) {
            int j = order[a], r = sr[t * srs0 + j * srs1];
            rows[a] = (r < 0 || r >= R) ? -1 : r;
            wk[a] = w[t * ws0 + j * ws1];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (c < H) { /* no early return: PoCL 5's work-group compiler asserts on one after a barrier */
        float acc = 0.0f;
        for (int a0 = 0; a0 < k; a0 += 4) { /* the slots' rows 4 at a time, added in slot order */
            long idx[4];
            float v[4];
            for (int u = 0; u < 4; u++) idx[u] = a0 + u < k && rows[a0 + u] >= 0 ? (long)rows[a0 + u] * yps0 + c : -1;
            ldf4(yb_ + ypo, ypdt, idx, v);
            for (int u = 0; u < 4; u++)
                if (idx[u] >= 0) acc += v[u] * wk[a0 + u];
        }
        if (has_sh) acc += ldf(shb + sho, shdt, t * shs0 + c);
        stf(yb + yo, ydt, t * ys0 + c, acc);
    }
}
