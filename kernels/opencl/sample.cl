/* Token sampling, one work group per row.
 *
 * Greedy: an argmax reduction (ties to the lower id, NaN never wins unless every logit is NaN).
 * Otherwise the CPU's rule over tokens sorted by descending logit (ties to the lower id): top_k, then
 * min_p, then top_p cut the sorted list; the kept probabilities (relative to the softmax over all V)
 * are walked until their running sum exceeds uniform * kept sum. The sorted order is produced window by
 * window with the top-k selection (select_best), so only the prefix that the cuts and the draw reach is
 * ever sorted; a peaked distribution needs one window. Probabilities use double where the device has it
 * (the CPU computes them in double). Two kernels: sample_prep (reductions) and sample (the walk), so
 * each stays small for CPU OpenCL compilers. */

#ifdef DSRT_HAS_FP64
typedef double pacc;
#else
typedef float pacc;
#endif

DEV float clean_logit(float v) { return isnan(v) ? -INFINITY : v; }

/* Per row: the greedy pick (written when temperature <= 0), the max logit, the softmax denominator and,
 * when neither top_p nor top_k cuts, the kept count and sum (phase 1 may start at once). st: 4 pacc
 * per row (m, total, kept, target); ist: 2 ints per row (n, first phase). Grid: (L, B). */
__kernel void sample_prep(__global const uchar *lb, ulong lo_, long ls0, long V, __global const uchar *ub, ulong uo,
                          long us0, __global uchar *ob, ulong oo, long os0, float temp, int top_k, float top_p,
                          float min_p, __global pacc *stats, __global long *istats)
{
    __local float red[DSRT_WG];
    __local pacc pred[DSRT_WG];
    __local int bi[DSRT_WG];
    long b = get_group_id(1);
    int lid = get_local_id(0), L = get_local_size(0);
    __global const float *row = (__global const float *)(lb + lo_) + b * ls0;
    __global int *out = (__global int *)(ob + oo) + b * os0;

    /* The greedy pick runs for every row (one cheap pass) so that no barrier sits inside a branch; with
     * temperature <= 0 the walk below runs zero times. */
    const bool greedy = temp <= 0.0f;
    {
        float v = NAN;
        int best = -1;
        for (long i = lid; i < V; i += L) {
            float x = row[i];
            if (!isnan(x) && (best < 0 || x > v)) {
                v = x;
                best = (int)i;
            }
        }
        red[lid] = v;
        bi[lid] = best;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int st = L / 2; st > 0; st >>= 1) {
            if (lid < st) {
                int b2 = bi[lid + st];
                float v2 = red[lid + st];
                if (b2 >= 0 && (bi[lid] < 0 || v2 > red[lid] || (v2 == red[lid] && b2 < bi[lid]))) {
                    red[lid] = v2;
                    bi[lid] = b2;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (lid == 0 && greedy) out[0] = bi[0] < 0 ? 0 : bi[0];
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    /* max logit and the softmax denominator over all V */
    float m = -INFINITY;
    for (long i = lid; i < V; i += L) {
        float x = clean_logit(row[i]);
        m = x > m ? x : m;
    }
    m = wg_max(m, red);
    pacc part = 0;
    for (long i = lid; i < V; i += L) part += exp(((pacc)clean_logit(row[i]) - (pacc)m) / (pacc)temp);
    pred[lid] = part;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int st = L / 2; st > 0; st >>= 1) {
        if (lid < st) pred[lid] += pred[lid + st];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    pacc total = pred[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    const long n_k = (top_k > 0 && top_k < V) ? top_k : V;
    long n = n_k;
    pacc kept = 0, target = 0;
    int phase = 0;
    /* Without top_p and top_k the kept set is {pr >= min_p * pr0} (or everything): its size and sum are
     * reductions, so phase 0 (a walk over the whole sorted vocabulary when nothing cuts it) is skipped.
     * pr0 = 1 / total: the best token's exp term is exp(0). */
    const bool quick = !greedy && top_p >= 1.0f && n_k == V;
    {
        pacc psum = 0;
        int pcnt = 0;
        const pacc thr = min_p > 0 ? (pacc)min_p * ((pacc)1 / total) : (pacc)0;
        for (long i = lid; i < V && quick; i += L) {
            float x = clean_logit(row[i]);
            if (x == -INFINITY) continue;
            pacc pr = exp(((pacc)x - (pacc)m) / (pacc)temp) / total;
            if (min_p > 0 && !(pr >= thr)) continue;
            psum += pr;
            pcnt++;
        }
        pred[lid] = psum;
        bi[lid] = pcnt;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int st = L / 2; st > 0; st >>= 1) {
            if (lid < st) {
                pred[lid] += pred[lid + st];
                bi[lid] += bi[lid + st];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (quick) {
            kept = pred[0];
            n = bi[0] > 0 ? bi[0] : 1;
            target = (pacc)((__global const float *)(ub + uo))[b * us0] * kept;
            phase = 1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        stats[4 * b] = (pacc)m;
        stats[4 * b + 1] = total;
        stats[4 * b + 2] = kept;
        stats[4 * b + 3] = target;
        istats[2 * b] = n;
        istats[2 * b + 1] = greedy ? 2 : phase;
    }
}

/* The walk over windows of the sorted order (see the top of this file), after sample_prep. */
__kernel void sample(__global const uchar *lb, ulong lo_, long ls0, long V, __global const uchar *ub, ulong uo,
                     long us0, __global uchar *ob, ulong oo, long os0, float temp, int top_k, float top_p,
                     float min_p, __global const pacc *stats, __global const long *istats, __local ulong *keys,
                     int cpad)
{
    __local uint hist[256];
    __local int sh[4];
    __local int flag[4];
    long b = get_group_id(1);
    int lid = get_local_id(0);
    __global const float *row = (__global const float *)(lb + lo_) + b * ls0;
    __global int *out = (__global int *)(ob + oo) + b * os0;
    const float m = (float)stats[4 * b];
    const pacc total = stats[4 * b + 1];
    pacc kept = stats[4 * b + 2], target = stats[4 * b + 3], cum = 0, pr0 = 0;
    long n = istats[2 * b], gi = 0, last_id = -1, pick = -1;
    int phase = (int)istats[2 * b + 1];
    const bool greedy = phase == 2;
    const int C = cpad;
    ulong limit = ~(ulong)0;
    /* Walk the sorted order window by window. Phase 0 finds the kept count n and the kept sum; phase 1
     * walks again to the drawn token. Only work item 0 walks; all help select and sort each window.
     * One flat loop (no nested barrier loops) keeps CPU OpenCL compilers fast. */
    for (int it = 0; !greedy; it++) {
        int cnt = select_best(row, V, C, limit, keys, C, hist, sh);
        if (lid == 0) {
            int done = cnt == 0;
            if (done && phase == 0) n = gi;
            for (int w = 0; w < cnt && !done; w++) {
                long i = gi + w;
                if (i >= n) {
                    done = 1;
                    break;
                }
                pacc pr = exp(((pacc)clean_logit(row[rank_pos(keys[w])]) - (pacc)m) / (pacc)temp) / total;
                if (phase == 0) {
                    if (i == 0) pr0 = pr;
                    if (min_p > 0 && i >= 1 && !(pr >= (pacc)min_p * pr0)) {
                        n = i;
                        done = 1;
                        break;
                    }
                    cum += pr;
                    if (top_p < 1 && cum >= (pacc)top_p) {
                        n = i + 1;
                        done = 1;
                        break;
                    }
                } else {
                    cum += pr;
                    last_id = rank_pos(keys[w]);
                    if (cum > target) {
                        pick = rank_pos(keys[w]);
                        done = 1;
                        break;
                    }
                }
            }
            if (done && phase == 0) {
                /* restart from the top of the sorted order for the draw */
                kept = cum;
                target = (pacc)((__global const float *)(ub + uo))[b * us0] * kept;
                cum = 0;
                phase = 1;
                flag[0] = 1; /* restart */
            } else {
                flag[0] = done ? 2 : 0; /* 2: finished */
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        int state = flag[0];
        if (state == 2) break;
        if (state == 1) {
            limit = ~(ulong)0;
            gi = 0;
        } else {
            limit = keys[cnt - 1];
            gi += cnt;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0 && !greedy) out[0] = (int)(pick >= 0 ? pick : (last_id >= 0 ? last_id : 0));
}
