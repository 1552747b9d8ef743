/* GPU kernels for the lightning indexer's scores over the paged key cache, and top-k selection.
 *
 * Indexer, FP8 cache with 128-wide keys (the V3.2 layout, 132-byte rows): k_indexer_tc holds one
 * token's 64x128 e4m3 queries as f16 tensor-core fragments (exact: e4m3 values are f16 values) and
 * streams the keys through shared memory in chunks of 256 rows (4-byte asynchronous copies: rows are
 * only 4-byte aligned); per 8 keys a warp issues 32 mma.sync, applies ReLU and the per-head weights,
 * and sums over heads with shuffles. Other layouts use k_indexer_simt.
 *
 * Top-k: one block per row, radix selection of the k-th largest key over the row (4 passes of 8-bit
 * histograms), then the selected entries are gathered in position order (ties to the lower position)
 * and sorted in shared memory (bitonic, by score then position). */
#include "gpu_common.cuh"
#include "gpu_mma.cuh"

#define NEG_INF (-__int_as_float(0x7f800000))

GPU_DEV int64_t idx_slot(const dsrt_gpu_tensor &bt, int32_t seq, int64_t p, int page, int64_t S)
{
    if (seq < 0 || seq >= bt.shape[0]) return -1;
    int64_t pi = p / page;
    if (pi >= bt.shape[1]) return -1;
    int32_t pg = gpu_i32(bt, seq * bt.stride[0] + pi * bt.stride[1]);
    if (pg < 0) return -1;
    int64_t slot = (int64_t)pg * page + p % page;
    return slot < S ? slot : -1;
}

typedef struct ix_args {
    dsrt_gpu_tensor q, w, kc, bt, row_seq, kv_len, out;
    int fmt, page;
    float scale;
    int64_t kpb; /* keys per block */
    int quad;    /* FP8 rows of 132 bytes, pages a multiple of 4 rows: copy 4 rows (528 bytes) at a time */
} ix_args;

/* ---- plain cores: a warp per key ---- */
static __global__ void k_indexer_simt(ix_args a)
{
    extern __shared__ float xs[]; /* q [Hi][D] (FP8: codes), qs [Hi][nb], wq [Hi] */
    int64_t Hi = a.q.shape[1], D = a.q.shape[2], nb = (D + 127) / 128, L = a.out.shape[1], S = a.kc.shape[0];
    int64_t t = blockIdx.y;
    bool fp8 = a.fmt == DSRT_CACHE_FP8;
    float *q = xs, *qs = xs + Hi * D, *wq = qs + Hi * nb;
    for (int64_t i = threadIdx.x; i < Hi * D; i += blockDim.x) {
        int64_t h = i / D, d = i % D;
        q[i] = gpu_ld(a.q.p, a.q.dtype, t * a.q.stride[0] + h * a.q.stride[1] + d);
    }
    for (int64_t h = threadIdx.x; h < Hi; h += blockDim.x) {
        float wh = ((const float *)a.w.p)[t * a.w.stride[0] + h * a.w.stride[1]];
        if (fp8) {
            for (int64_t b = 0; b < nb; b++) qs[h * nb + b] = gpu_block_scale(a.q, t, h, b * 128);
            wq[h] = D == 128 ? wh * qs[h * nb] * a.scale : wh * a.scale;
        } else {
            wq[h] = wh * a.scale;
        }
    }
    __syncthreads();
    int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
    int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
    int64_t n = len < 0 ? 0 : (len > L ? L : len);
    float *orow = (float *)a.out.p + t * a.out.stride[0];
    int64_t j0 = (int64_t)blockIdx.x * a.kpb, j1 = j0 + a.kpb < L ? j0 + a.kpb : L;
    for (int64_t j = j0 + gpu_warp(); j < j1; j += gpu_nwarps()) {
        int64_t slot = j < n ? idx_slot(a.bt, seq, j, a.page, S) : -1;
        if (slot < 0) {
            if (gpu_lane() == 0) orow[j] = NEG_INF;
            continue;
        }
        float score = 0;
        const uint8_t *row = (const uint8_t *)a.kc.p + slot * a.kc.stride[0];
        for (int64_t h = 0; h < Hi; h++) {
            float dsum = 0;
            for (int64_t b = 0; b < nb; b++) {
                float part = 0;
                int64_t k1 = (b + 1) * 128 < D ? (b + 1) * 128 : D;
                for (int64_t d = b * 128 + gpu_lane(); d < k1; d += GPU_WARP_SIZE) {
                    float kv = fp8 ? gpu_e4m3_to_f32(row[d]) : gpu_ld(a.kc.p, a.kc.dtype, slot * a.kc.stride[0] + d);
                    part += q[h * D + d] * kv;
                }
                part = gpu_warp_sum(part);
                if (fp8 && D != 128) {
                    const uint8_t *sp = row + D + 4 * b;
                    float ks = gpu_bits_f((uint32_t)sp[0] | ((uint32_t)sp[1] << 8) | ((uint32_t)sp[2] << 16) |
                                          ((uint32_t)sp[3] << 24));
                    dsum += qs[h * nb + b] * ks * part;
                } else {
                    dsum += part;
                }
            }
            score += (dsum > 0 ? dsum : 0) * wq[h];
        }
        if (fp8 && D == 128) {
            const uint8_t *sp = row + 128;
            score *= gpu_bits_f((uint32_t)sp[0] | ((uint32_t)sp[1] << 8) | ((uint32_t)sp[2] << 16) |
                                ((uint32_t)sp[3] << 24));
        }
        if (gpu_lane() == 0) orow[j] = score;
    }
}

/* ---- tensor cores: FP8 keys of 128 values, 64 heads ---- */
#define IX_HEADS 64
#define IX_CHUNK 256
#define IX_PITCH 144 /* bytes per key row in shared memory (4-byte copies): conflict-free fragment loads */
#define IX_SMEM (2 * IX_CHUNK * (IX_PITCH + 8))

#ifdef DSRT_GPU_HAVE_MMA
/* Copies the key rows of chunk buffer `buf` (slots already in shared memory) into shared memory;
 * rows without a slot are zero-filled. */
GPU_DEV void ix_issue(const ix_args &a, const uint8_t *kb, int64_t kst, int64_t S, uint8_t *kbuf, const int64_t *slots,
                      int kp, int buf)
{
    const int64_t *sl = slots + buf * IX_CHUNK;
    uint8_t *dst0 = kbuf + buf * IX_CHUNK * kp;
    if (a.quad) { /* 4 consecutive positions of a page are 528 contiguous, 16-byte aligned bytes */
        for (int id = threadIdx.x; id < (IX_CHUNK / 4) * 33; id += blockDim.x) {
            int q = id / 33, ch = id % 33;
            int64_t s0 = sl[4 * q];
            bool ok = s0 >= 0 && s0 % 4 == 0 && s0 + 3 < S;
            gpu_cp_async16(dst0 + 4 * q * 132 + ch * 16, kb + (ok ? s0 : 0) * 132 + ch * 16, ok ? 16 : 0);
        }
        return;
    }
    for (int w = threadIdx.x; w < IX_CHUNK * 33; w += blockDim.x) {
        int r = w / 33, col = w % 33;
        int64_t s0 = sl[r];
        gpu_cp_async4(dst0 + r * kp + col * 4, kb + (s0 >= 0 ? s0 : 0) * kst + col * 4, s0 >= 0 ? 4 : 0);
    }
}
#endif

static __global__ void __launch_bounds__(256, 1) k_indexer_tc(ix_args a)
{
#ifdef DSRT_GPU_HAVE_MMA
    extern __shared__ __align__(16) uint8_t ix_smem[];
    uint8_t *kbuf = ix_smem;                                         /* [2][CHUNK][kp] key rows with scales */
    int64_t *slots = (int64_t *)(ix_smem + 2 * IX_CHUNK * IX_PITCH); /* [2][CHUNK] */
    const int kp = a.quad ? 132 : IX_PITCH;
    int64_t L = a.out.shape[1], S = a.kc.shape[0];
    int64_t t = blockIdx.y;
    int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, cq = lane % 4;
    int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
    int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
    int64_t n = len < 0 ? 0 : (len > L ? L : len);
    float *orow = (float *)a.out.p + t * a.out.stride[0];
    int64_t j0 = (int64_t)blockIdx.x * a.kpb, j1 = j0 + a.kpb < L ? j0 + a.kpb : L;
    int64_t jv = j1 < n ? j1 : n; /* keys past jv are beyond kv_len: -inf */
    for (int64_t j = (jv > j0 ? jv : j0) + tid; j < j1; j += blockDim.x) orow[j] = NEG_INF;
    if (jv <= j0) return;

    /* A fragments: this token's 64 query heads as f16 (e4m3 * 2^-8), all 8 k16 steps. */
    uint32_t af[4][8][4];
    float wq0[4], wq8[4]; /* folded weights of heads mt*16+g and +8 */
    const uint8_t *qb = (const uint8_t *)a.q.p + t * a.q.stride[0];
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
        int r0 = mt * 16 + g, r1 = r0 + 8;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint2 x0 = *(const uint2 *)(qb + r0 * a.q.stride[1] + 32 * j + 8 * cq);
            uint2 x1 = *(const uint2 *)(qb + r1 * a.q.stride[1] + 32 * j + 8 * cq);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                uint32_t w0 = h ? x0.y : x0.x, w1 = h ? x1.y : x1.x;
                af[mt][2 * j + h][0] = gpu_e4m3x2_lo_f16(w0);
                af[mt][2 * j + h][1] = gpu_e4m3x2_lo_f16(w1);
                af[mt][2 * j + h][2] = gpu_e4m3x2_hi_f16(w0);
                af[mt][2 * j + h][3] = gpu_e4m3x2_hi_f16(w1);
            }
        }
        /* official fold: w * q_scale * scale, times 2^16 to undo the f16 trick */
        float w0 = ((const float *)a.w.p)[t * a.w.stride[0] + r0 * a.w.stride[1]];
        float w8 = ((const float *)a.w.p)[t * a.w.stride[0] + r1 * a.w.stride[1]];
        wq0[mt] = w0 * gpu_block_scale(a.q, t, r0, 0) * a.scale * DSRT_FP8_F16_UNSCALE;
        wq8[mt] = w8 * gpu_block_scale(a.q, t, r1, 0) * a.scale * DSRT_FP8_F16_UNSCALE;
    }

    int64_t nchunks = (jv - j0 + IX_CHUNK - 1) / IX_CHUNK;
    const uint8_t *kb = (const uint8_t *)a.kc.p;
    int64_t kst = a.kc.stride[0];
    /* slots of chunk 0 */
    {
        int64_t j = j0 + tid;
        slots[tid] = j < jv ? idx_slot(a.bt, seq, j, a.page, S) : -1;
    }
    __syncthreads();
    ix_issue(a, kb, kst, S, kbuf, slots, kp, 0);
    gpu_cp_async_commit();

    for (int64_t ci = 0; ci < nchunks; ci++) {
        int cur = (int)(ci & 1), nxt = cur ^ 1;
        int64_t cb = j0 + ci * IX_CHUNK;
        if (ci + 1 < nchunks) {
            int64_t j = cb + IX_CHUNK + tid;
            slots[nxt * IX_CHUNK + tid] = j < jv ? idx_slot(a.bt, seq, j, a.page, S) : -1;
        }
        __syncthreads();
        if (ci + 1 < nchunks) ix_issue(a, kb, kst, S, kbuf, slots, kp, nxt);
        gpu_cp_async_commit();
        gpu_cp_async_wait<1>();
        __syncthreads();
        const uint8_t *kc = kbuf + cur * IX_CHUNK * kp;
#pragma unroll 1
        for (int nt = 0; nt < 4; nt++) {
            int kr = warp * 32 + nt * 8; /* first key of this n-tile within the chunk */
            const uint8_t *krow = kc + (kr + g) * kp + 8 * cq;
            float c[4][4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++) c[mt][0] = c[mt][1] = c[mt][2] = c[mt][3] = 0;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint2 x; /* two 4-byte loads: 132-byte rows are only 4-byte aligned */
                x.x = *(const uint32_t *)(krow + 32 * j);
                x.y = *(const uint32_t *)(krow + 32 * j + 4);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    uint32_t w = h ? x.y : x.x;
                    uint32_t bf[2] = {gpu_e4m3x2_lo_f16(w), gpu_e4m3x2_hi_f16(w)};
#pragma unroll
                    for (int mt = 0; mt < 4; mt++) gpu_mma_f16(c[mt], af[mt][2 * j + h], bf);
                }
            }
            float s0 = 0, s1 = 0;
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                s0 += fmaxf(c[mt][0], 0.0f) * wq0[mt] + fmaxf(c[mt][2], 0.0f) * wq8[mt];
                s1 += fmaxf(c[mt][1], 0.0f) * wq0[mt] + fmaxf(c[mt][3], 0.0f) * wq8[mt];
            }
            for (int m = 4; m < 32; m <<= 1) {
                s0 += gpu_shfl_xor(s0, m);
                s1 += gpu_shfl_xor(s1, m);
            }
            if (g == 0) {
                int r = kr + 2 * cq;
                int64_t j = cb + r;
                const int64_t *sl = slots + cur * IX_CHUNK;
                if (j < jv) orow[j] = sl[r] >= 0 ? s0 * *(const float *)(kc + r * kp + 128) : NEG_INF;
                if (j + 1 < jv) orow[j + 1] = sl[r + 1] >= 0 ? s1 * *(const float *)(kc + (r + 1) * kp + 128) : NEG_INF;
            }
        }
        __syncthreads(); /* the next iteration rewrites this chunk's slots */
    }
    gpu_cp_async_wait<0>();
#endif
}

extern "C" dsrt_status dsrt_gpu_indexer_scores(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    ix_args a;
    memset(&a, 0, sizeof a);
    a.q = dsrt_gpu_tensor_of(&op->in[0]);
    a.w = dsrt_gpu_tensor_of(&op->in[1]);
    a.kc = dsrt_gpu_tensor_of(&op->in[2]);
    a.bt = dsrt_gpu_tensor_of(&op->in[3]);
    a.row_seq = dsrt_gpu_tensor_of(&op->in[4]);
    a.kv_len = dsrt_gpu_tensor_of(&op->in[5]);
    a.out = dsrt_gpu_tensor_of(&op->out[0]);
    a.fmt = (int)op->p.format;
    a.page = op->p.page_size;
    a.scale = op->p.scale;
    int64_t T = a.q.shape[0], Hi = a.q.shape[1], D = a.q.shape[2], L = a.out.shape[1];
    if (T == 0 || L == 0) return DSRT_OK;
    if (T > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "indexer_scores: %lld query rows exceed the grid", (long long)T);
    bool tc = gpu_use_mma(c) && !getenv(DSRT_GPU_ENV("INDEXER_SIMT")) && a.fmt == DSRT_CACHE_FP8 && D == 128 &&
              Hi == IX_HEADS && a.q.stride[1] % 8 == 0 && a.q.stride[0] % 8 == 0 &&
              ((uintptr_t)a.q.p & 7) == 0 && a.kc.stride[0] % 4 == 0 && ((uintptr_t)a.kc.p & 3) == 0 &&
              c->smem_optin >= IX_SMEM;
    if (tc) {
        /* enough blocks to fill the device twice over, whole chunks of keys each */
        int64_t per = (L * T + 2 * c->sm_count - 1) / (2 * c->sm_count);
        a.kpb = (per + IX_CHUNK - 1) / IX_CHUNK * IX_CHUNK;
        a.quad = a.page % 4 == 0 && a.kc.stride[0] == 132 && ((uintptr_t)a.kc.p & 15) == 0;
        if (a.kpb < IX_CHUNK) a.kpb = IX_CHUNK;
        dim3 grid(gpu_blocks(L, (int)a.kpb), (unsigned)T);
        DSRT_TRY(gpu_smem_limit(c, (const void *)k_indexer_tc, IX_SMEM, "indexer_scores"));
        k_indexer_tc<<<grid, 256, IX_SMEM, gpu_stream(c)>>>(a);
        GPU_CHECK_LAUNCH("indexer_scores", "k_indexer_tc");
        return DSRT_OK;
    }
    a.kpb = 64;
    int64_t nb = (D + 127) / 128;
    size_t smem = sizeof(float) * (size_t)(Hi * D + Hi * nb + Hi);
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_indexer_simt, smem, "indexer_scores"));
    dim3 grid(gpu_blocks(L, 64), (unsigned)T);
    k_indexer_simt<<<grid, 256, smem, gpu_stream(c)>>>(a);
    GPU_CHECK_LAUNCH("indexer_scores", "k_indexer_simt");
    return DSRT_OK;
}

/* ---- top-k ---- */

/* Order-preserving unsigned key of a score; 0 marks entries that are never chosen (NaN, -inf). */
GPU_DEV uint32_t topk_key(float v)
{
    if (isnan(v) || v == NEG_INF) return 0;
    if (v == 0.0f) v = 0.0f; /* -0 ties with +0, as the reference compares floats */
    uint32_t b = gpu_f_bits(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Keys of scores [base, base+TK) of the row (0 past n); vector loads when the row is 16-byte aligned. */
template <int TK> GPU_DEV void topk_load(const float *row, int64_t base, int64_t n, bool vec, uint32_t *key)
{
    if (vec && base + TK <= n) {
        const float4 *p = (const float4 *)(row + base);
#pragma unroll
        for (int q = 0; q < TK / 4; q++) {
            float4 a = p[q];
            key[4 * q] = topk_key(a.x);
            key[4 * q + 1] = topk_key(a.y);
            key[4 * q + 2] = topk_key(a.z);
            key[4 * q + 3] = topk_key(a.w);
        }
        return;
    }
#pragma unroll
    for (int e = 0; e < TK; e++) key[e] = base + e < n ? topk_key(row[base + e]) : 0;
}

/* One block per row; a thread takes TK consecutive scores a step (16 for long rows: four 16-byte
 * loads in flight). With ONE the row fits one step (n <= blockDim * TK) and the keys stay in registers
 * for every pass; otherwise each pass reads the row again (from L2). by_pos: the gather, which runs
 * in position order, writes the output; the sort by score (half the kernel at decode lengths) is
 * left out. */
template <int TK, bool ONE>
static __global__ void __launch_bounds__(1024) k_topk(dsrt_gpu_tensor sc, dsrt_gpu_tensor lens, dsrt_gpu_tensor out,
                                                      int k, int p2, int by_pos)
{
    extern __shared__ unsigned long long sel[]; /* [p2] */
    __shared__ int hist[4096];
    __shared__ int scan[1024];
    __shared__ uint32_t s_lo, s_hi, r_min[32], r_max[32];
    __shared__ int s_need, s_all, r_cnt[32];
    int64_t t = blockIdx.x, L = sc.shape[1];
    const float *row = (const float *)sc.p + t * sc.stride[0];
    int64_t n = L;
    if (lens.p) {
        int32_t l = gpu_i32(lens, t * lens.stride[0]);
        n = l < 0 ? 0 : (l < L ? l : L);
    }
    bool vec = ((uintptr_t)row & 15) == 0;
    int64_t step = (int64_t)blockDim.x * TK;
    int64_t nround = ONE ? step : (n + step - 1) / step * step; /* every thread runs every step */
    uint32_t kreg[TK];
    if (ONE) topk_load<TK>(row, (int64_t)threadIdx.x * TK, n, vec, kreg);
#define TOPK_KEYS(b0, key)                                                                                  \
    uint32_t key[TK];                                                                                       \
    if (ONE) {                                                                                              \
        for (int e_ = 0; e_ < TK; e_++) key[e_] = kreg[e_];                                                 \
    } else {                                                                                                \
        topk_load<TK>(row, (b0) + (int64_t)threadIdx.x * TK, n, vec, key);                                  \
    }
    /* pass 0: range and count of the valid keys */
    uint32_t kmin = 0xffffffffu, kmax = 0;
    int cnt = 0;
    for (int64_t b0 = 0; b0 < nround; b0 += step) {
        TOPK_KEYS(b0, key)
#pragma unroll
        for (int e = 0; e < TK; e++)
            if (key[e]) {
                kmin = key[e] < kmin ? key[e] : kmin;
                kmax = key[e] > kmax ? key[e] : kmax;
                cnt++;
            }
    }
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) {
        uint32_t omin = (uint32_t)gpu_shfl_xor_i((int)kmin, m), omax = (uint32_t)gpu_shfl_xor_i((int)kmax, m);
        kmin = omin < kmin ? omin : kmin;
        kmax = omax > kmax ? omax : kmax;
        cnt += gpu_shfl_xor_i(cnt, m);
    }
    if (gpu_lane() == 0) {
        r_min[gpu_warp()] = kmin;
        r_max[gpu_warp()] = kmax;
        r_cnt[gpu_warp()] = cnt;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t lo = 0xffffffffu, hi = 0;
        int total = 0;
        for (int w = 0; w < gpu_nwarps(); w++) {
            lo = r_min[w] < lo ? r_min[w] : lo;
            hi = r_max[w] > hi ? r_max[w] : hi;
            total += r_cnt[w];
        }
        s_lo = lo;
        s_hi = hi;
        s_need = k;
        s_all = total <= k; /* every valid entry is chosen */
    }
    __syncthreads();
    /* Radix selection over the keys' own range, 4096 bins a pass: the bins spread clustered scores
     * (which share their top bits) instead of piling them on one shared counter. At most three passes
     * reach a single key value. */
    while (!s_all) {
        uint32_t lo = s_lo, hi = s_hi, range = hi - lo;
        int need = s_need; /* read before the barriers below: the finder rewrites it after them */
        int bits = range ? 32 - __clz(range) : 0, shift = bits > 12 ? bits - 12 : 0;
        int nb = (int)(range >> shift) + 1;
        for (int i = threadIdx.x; i < nb; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (int64_t b0 = 0; b0 < nround; b0 += step) {
            TOPK_KEYS(b0, key)
#pragma unroll
            for (int e = 0; e < TK; e++)
                if (key[e] && key[e] >= lo && key[e] <= hi) atomicAdd(&hist[(key[e] - lo) >> shift], 1);
        }
        __syncthreads();
        /* bins from the top: thread i sums bins [nb-per*i-per, nb-per*i); a scan finds the bin holding
         * the need-th largest key */
        int per = (nb + (int)blockDim.x - 1) / (int)blockDim.x, mine = 0;
        int top = nb - 1 - (int)threadIdx.x * per;
        for (int j = 0; j < per; j++)
            if (top - j >= 0) mine += hist[top - j];
        int total;
        int above = gpu_block_scan(mine, scan, &total);
        if (above < need && above + mine >= need) {
            int cum = above, b = top;
            for (int j = 0; j < per && top - j >= 0; j++) {
                b = top - j;
                if (cum + hist[b] >= need) break;
                cum += hist[b];
            }
            uint64_t nlo = (uint64_t)lo + ((uint64_t)b << shift), nhi = nlo + (((uint64_t)1 << shift) - 1);
            s_lo = (uint32_t)nlo;
            s_hi = nhi < hi ? (uint32_t)nhi : hi;
            s_need = need - cum;
        }
        __syncthreads();
        if (shift == 0) break;
    }
    uint32_t thr = s_lo;
    int all = s_all, need = s_need, eq_base = 0, out_base = 0;
    int32_t *o = (int32_t *)out.p + t * out.stride[0];
    /* gather: keys above the threshold, then the first `need` equal to it in position order (a
     * thread's TK scores are consecutive positions, so thread order is position order); a second scan
     * gives every thread its slots (no shared counter). In position order they are the output. */
    for (int64_t b0 = 0; b0 < nround; b0 += step) {
        int64_t base = b0 + (int64_t)threadIdx.x * TK;
        TOPK_KEYS(b0, key)
        int neq = 0;
#pragma unroll
        for (int e = 0; e < TK; e++) neq += (!all && key[e] && key[e] == thr);
        int total;
        int r = gpu_block_scan(neq, scan, &total);
        unsigned take = 0;
        int ntake = 0;
#pragma unroll
        for (int e = 0; e < TK; e++) {
            uint32_t kk = key[e];
            int tk = kk && (all || kk > thr);
            if (!all && kk && kk == thr) tk = eq_base + r++ < need;
            take |= (unsigned)tk << e;
            ntake += tk;
        }
        eq_base += total;
        int at = gpu_block_scan(ntake, scan, &total) + out_base;
#pragma unroll
        for (int e = 0; e < TK; e++)
            if (take >> e & 1) {
                if (by_pos) {
                    if (at < k) o[at] = (int32_t)(base + e);
                } else if (at < p2) {
                    sel[at] = ((unsigned long long)(~key[e]) << 32) | (unsigned long long)(uint32_t)(base + e);
                }
                at++;
            }
        out_base += total;
    }
#undef TOPK_KEYS
    cnt = out_base < k ? out_base : k;
    if (by_pos) {
        for (int i = cnt + threadIdx.x; i < k; i += blockDim.x) o[i] = -1;
        return;
    }
    __syncthreads();
    for (int i = cnt + threadIdx.x; i < p2; i += blockDim.x) sel[i] = ~0ull;
    gpu_bitonic_sort<unsigned long long>(sel, p2);
    for (int i = threadIdx.x; i < k; i += blockDim.x) o[i] = i < cnt ? (int32_t)(uint32_t)(sel[i] & 0xffffffffu) : -1;
}

template <int TK, bool ONE>
static dsrt_status topk_launch(const dsrt_gpu_ctx *c, dsrt_gpu_tensor sc, dsrt_gpu_tensor lens, dsrt_gpu_tensor out,
                               int64_t T, int k, int p2, size_t smem, int by_pos)
{
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_topk<TK, ONE>, smem, "topk"));
    k_topk<TK, ONE><<<(unsigned)T, 1024, smem, gpu_stream(c)>>>(sc, lens, out, k, p2, by_pos);
    GPU_CHECK_LAUNCH("topk", "k_topk");
    return DSRT_OK;
}

extern "C" dsrt_status dsrt_gpu_topk(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor sc = dsrt_gpu_tensor_of(&op->in[0]), lens = dsrt_gpu_tensor_of(&op->in[1]),
                    out = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = sc.shape[0];
    int k = op->p.k, by_pos = op->p.by_position;
    if (T == 0) return DSRT_OK;
    int p2 = 1;
    while (p2 < k) p2 <<= 1;
    size_t smem = sizeof(unsigned long long) * (size_t)p2;
    if (smem > (size_t)c->smem_optin)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "topk: k = %d needs %zu bytes of shared memory, the device has %d", k,
                          smem, c->smem_optin);
    if (sc.shape[1] > 0xffffffffll) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "topk: rows longer than 2^32");
    if (T > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "topk: too many rows");
    /* a decode-length row (the sparse attention's context up to 8192) is held in registers */
    if (sc.shape[1] <= 1024 * 4) return topk_launch<4, true>(c, sc, lens, out, T, k, p2, smem, by_pos);
    if (sc.shape[1] <= 1024 * 8) return topk_launch<8, true>(c, sc, lens, out, T, k, p2, smem, by_pos);
    return topk_launch<16, false>(c, sc, lens, out, T, k, p2, smem, by_pos);
}
