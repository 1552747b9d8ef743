/* GPU kernels for MLA attention: the expanded form (prefill) and the absorbed form over the paged
 * latent cache (decode), dense or over DSA's selected positions.
 *
 * Three implementations of decode:
 *  - k_mla_decode_wg (CUDA sm_90a image on a 9.0 device; otherwise as k_mla_decode_tc): the same
 *    blocks and tiles with the products on wgmma, operands in swizzled shared memory (below).
 *  - k_mla_decode_tc (CUDA sm_80+, bf16 q, FP8 or bf16 cache, Dc 512 / Dr 64): one block per (query
 *    row, 64 heads, split of the positions), tiles of 64 cached rows dequantized into shared memory,
 *    Q.K^T and P.V on bf16 tensor cores (mma.sync m16n8k16), online softmax across tiles, splits
 *    merged by k_mla_combine. Scores round exactly as ops.h says (bf16 of the latent and rope parts,
 *    of their sum, of the scaled score); p is rounded to bf16 before the P.V product but is
 *    normalized at the end (online softmax), where the reference normalizes before rounding: a
 *    relative difference of about 2^-9 per probability (see docs/cuda.md).
 *  - k_mla_decode_simt: any dtypes and widths, every rounding point of the reference, three passes
 *    over the positions (max, sum, weighted sum). The portable path.
 * Prefill uses the plain three-pass form (k_mla_prefill_simt).
 * With indices, k_prep_positions first orders each row's selected positions and drops invalid and
 * repeated ones, as the reference does. */
#include "gpu_common.cuh"
#include "gpu_mma.cuh"
#include "gpu_pipeline.cuh"
#include "gpu_wgmma.cuh"

#define NEG_INF (-__int_as_float(0x7f800000))

/* ---- positions: sorted unique valid entries of indices[t] (0 <= p < kv_len[t]) ----
 * When the positions a row can have fit a bitmap in shared memory (nbits, from the cache's or the
 * keys' extent), each valid index sets its bit and one scan over the words writes the set bits in
 * order: sorted and unique in O(nbits / 32 + k), where sorting k entries took 21 barrier rounds (a
 * batch-1 decode step spent ~15 us per layer there). A row with a valid position past nbits (its
 * kv_len exceeds that extent) takes the sort. */
static __global__ void k_prep_positions(dsrt_gpu_tensor idx, dsrt_gpu_tensor kv_len, int p2, int nbits, int32_t *pos,
                                        int32_t *cnt)
{
    extern __shared__ int32_t s_pos[]; /* [p2], then the bitmap [nbits / 32] */
    __shared__ int red[64];
    __shared__ int s_over;
    int64_t t = blockIdx.x, k = idx.shape[1];
    int32_t len = gpu_i32(kv_len, t * kv_len.stride[0]);
    if (nbits > 0) {
        uint32_t *bm = (uint32_t *)(s_pos + p2);
        int nw = nbits / 32;
        for (int i = threadIdx.x; i < nw; i += blockDim.x) bm[i] = 0;
        if (threadIdx.x == 0) s_over = 0;
        __syncthreads();
        for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
            int32_t p = gpu_i32(idx, t * idx.stride[0] + i);
            if (p < 0 || p >= len) continue;
            if (p < nbits) atomicOr(&bm[p >> 5], 1u << (p & 31));
            else s_over = 1;
        }
        __syncthreads();
        if (!s_over) { /* uniform: every thread read the same flag after the barrier */
            int per = (nw + (int)blockDim.x - 1) / (int)blockDim.x, w0 = (int)threadIdx.x * per;
            int w1 = w0 + per < nw ? w0 + per : nw, mine = 0;
            for (int w = w0; w < w1; w++) mine += __popc(bm[w]);
            int total;
            int r = gpu_block_scan(mine, red, &total);
            int32_t *o = pos + t * k;
            for (int w = w0; w < w1; w++)
                for (uint32_t b = bm[w]; b; b &= b - 1) o[r++] = w * 32 + (__ffs((int)b) - 1);
            if (threadIdx.x == 0) cnt[t] = total;
            return;
        }
    }
    for (int i = threadIdx.x; i < p2; i += blockDim.x) {
        int32_t v = 0x7fffffff;
        if (i < k) {
            int32_t p = gpu_i32(idx, t * idx.stride[0] + i);
            if (p >= 0 && p < len) v = p;
        }
        s_pos[i] = v;
    }
    gpu_bitonic_sort<int32_t>(s_pos, p2);
    int base = 0;
    for (int i0 = 0; i0 < p2; i0 += blockDim.x) {
        int i = i0 + threadIdx.x;
        int32_t v = i < p2 ? s_pos[i] : 0x7fffffff;
        int flag = v != 0x7fffffff && (i == 0 || s_pos[i - 1] != v);
        int total;
        int r = gpu_block_scan_flag(flag, red, &total);
        if (flag) pos[t * k + base + r] = v;
        base += total;
    }
    if (threadIdx.x == 0) cnt[t] = base;
}

/* Prepares positions when indices are given; *pos / *cnt stay NULL otherwise. `extent`: the positions
 * a row can reach (cache coverage or key count), which sizes the bitmap. */
static dsrt_status prep_positions(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *idx, const dsrt_gpu_tensor *kv_len,
                                  int64_t T, int64_t extent, const char *op, int32_t **pos, int32_t **cnt)
{
    *pos = NULL;
    *cnt = NULL;
    if (!idx->p) return DSRT_OK;
    int64_t k = idx->shape[1];
    int p2 = 1;
    while (p2 < k) p2 <<= 1;
    if ((size_t)p2 * 4 > (size_t)c->smem_optin || p2 > (1 << 20))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: %lld selected positions per row exceed shared memory", op,
                          (long long)k);
    DSRT_TRY(gpu_scratch(c, sizeof(int32_t) * (size_t)(T * k + 1), (void **)pos));
    DSRT_TRY(gpu_scratch(c, sizeof(int32_t) * (size_t)(T + 1), (void **)cnt));
    /* a bitmap of up to 64 KB (524288 positions) beside the sort's buffer */
    int64_t nbits = (extent + 31) / 32 * 32;
    if (nbits > (1 << 19) || (size_t)p2 * 4 + (size_t)nbits / 8 > (size_t)c->smem_optin) nbits = 0;
    size_t smem = (size_t)p2 * 4 + (size_t)nbits / 8;
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_prep_positions, smem, op));
    k_prep_positions<<<(unsigned)T, 1024, smem, gpu_stream(c)>>>(*idx, *kv_len, p2, (int)nbits, *pos, *cnt);
    GPU_CHECK_LAUNCH(op, "k_prep_positions");
    return DSRT_OK;
}

/* Slot of position p of sequence seq, -1 when the block table or the cache does not cover it. */
GPU_DEV int64_t gpu_slot_of(const dsrt_gpu_tensor &bt, int32_t seq, int32_t p, int page, int64_t S)
{
    if (seq < 0 || seq >= bt.shape[0] || p < 0) return -1;
    int64_t pi = p / page;
    if (pi >= bt.shape[1]) return -1;
    int32_t pg = gpu_i32(bt, seq * bt.stride[0] + pi * bt.stride[1]);
    if (pg < 0) return -1;
    int64_t slot = (int64_t)pg * page + p % page;
    return slot < S ? slot : -1;
}

/* Element i (< Dc + Dr) of cached row `slot` as f32: [c | k_pe] in the PLAIN or FP8 layout. */
GPU_DEV float gpu_cache_elem(const dsrt_gpu_tensor &cache, int fmt, int64_t slot, int64_t Dc, int64_t i)
{
    if (fmt == DSRT_CACHE_PLAIN) return gpu_ld(cache.p, cache.dtype, slot * cache.stride[0] + i);
    const uint8_t *row = (const uint8_t *)cache.p + slot * cache.stride[0];
    int64_t nb = (Dc + 127) / 128;
    if (i < Dc) {
        const uint8_t *sp = row + Dc + 4 * (i / 128);
        uint32_t sb = (uint32_t)sp[0] | ((uint32_t)sp[1] << 8) | ((uint32_t)sp[2] << 16) | ((uint32_t)sp[3] << 24);
        return gpu_e4m3_to_f32(row[i]) * gpu_bits_f(sb);
    }
    const uint8_t *tp = row + Dc + 4 * nb + 2 * (i - Dc);
    return gpu_bf16_to_f32((uint16_t)(tp[0] | (tp[1] << 8)));
}

/* ---- decode, plain cores: block per (head, row), three passes ---- */
typedef struct dec_args {
    dsrt_gpu_tensor ql, qp, cache, bt, row_seq, kv_len, o;
    const int32_t *pos, *cnt;
    int64_t pos_k;
    int fmt, page;
    float scale;
} dec_args;

GPU_DEV float dec_score(const dec_args &a, const float *q, int64_t slot, int64_t Dc, int64_t Dr, bool bf16)
{
    float sa = 0, sp = 0;
    for (int64_t i = gpu_lane(); i < Dc; i += GPU_WARP_SIZE) sa += q[i] * gpu_cache_elem(a.cache, a.fmt, slot, Dc, i);
    for (int64_t i = gpu_lane(); i < Dr; i += GPU_WARP_SIZE)
        sp += q[Dc + i] * gpu_cache_elem(a.cache, a.fmt, slot, Dc, Dc + i);
    sa = gpu_warp_sum(sa);
    sp = gpu_warp_sum(sp);
    if (bf16) return gpu_round_bf16(gpu_round_bf16(gpu_round_bf16(sa) + gpu_round_bf16(sp)) * a.scale);
    return (sa + sp) * a.scale;
}

static __global__ void k_mla_decode_simt(dec_args a)
{
    extern __shared__ float dsm[]; /* q [Dc+Dr], acc [Dc] */
    __shared__ float red[64];
    __shared__ float pv[32];
    __shared__ int64_t ps[32];
    int64_t Dc = a.ql.shape[2], Dr = a.qp.shape[2], T = a.ql.shape[0], S = a.cache.shape[0];
    int64_t h = blockIdx.x;
    bool bf16 = a.ql.dtype == DSRT_BF16;
    float *q = dsm, *acc = dsm + Dc + Dr;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        __syncthreads();
        for (int64_t i = threadIdx.x; i < Dc; i += blockDim.x) {
            q[i] = gpu_ld(a.ql.p, a.ql.dtype, t * a.ql.stride[0] + h * a.ql.stride[1] + i);
            acc[i] = 0;
        }
        for (int64_t i = threadIdx.x; i < Dr; i += blockDim.x)
            q[Dc + i] = gpu_ld(a.qp.p, a.qp.dtype, t * a.qp.stride[0] + h * a.qp.stride[1] + i);
        __syncthreads();
        int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
        int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
        int64_t n = a.pos ? a.cnt[t] : (len > 0 ? len : 0);
        /* pass 1: max */
        float m = NEG_INF;
        for (int64_t j = gpu_warp(); j < n; j += gpu_nwarps()) {
            int32_t p = a.pos ? a.pos[t * a.pos_k + j] : (int32_t)j;
            int64_t slot = gpu_slot_of(a.bt, seq, p, a.page, S);
            if (slot < 0) continue;
            m = fmaxf(m, dec_score(a, q, slot, Dc, Dr, bf16));
        }
        m = gpu_block_max(m, red);
        /* pass 2: sum of exp */
        float sum = 0;
        if (m != NEG_INF)
            for (int64_t j = gpu_warp(); j < n; j += gpu_nwarps()) {
                int32_t p = a.pos ? a.pos[t * a.pos_k + j] : (int32_t)j;
                int64_t slot = gpu_slot_of(a.bt, seq, p, a.page, S);
                if (slot < 0) continue;
                float s = dec_score(a, q, slot, Dc, Dr, bf16);
                if (gpu_lane() == 0) sum += expf(s - m);
            }
        sum = gpu_block_sum(sum, red);
        /* pass 3: o = sum_j p_j c_j in position order, 32 positions at a time */
        if (m != NEG_INF)
            for (int64_t j0 = 0; j0 < n; j0 += 32) {
                for (int64_t i = gpu_warp(); i < 32; i += gpu_nwarps()) {
                    int64_t j = j0 + i;
                    float pj = 0;
                    int64_t slot = -1;
                    if (j < n) {
                        int32_t p = a.pos ? a.pos[t * a.pos_k + j] : (int32_t)j;
                        slot = gpu_slot_of(a.bt, seq, p, a.page, S);
                        if (slot >= 0) {
                            float s = dec_score(a, q, slot, Dc, Dr, bf16);
                            pj = expf(s - m) / sum;
                            if (bf16) pj = gpu_round_bf16(pj);
                        }
                    }
                    if (gpu_lane() == 0) {
                        pv[i] = pj;
                        ps[i] = slot;
                    }
                }
                __syncthreads();
                for (int64_t d = threadIdx.x; d < Dc; d += blockDim.x) {
                    float v = acc[d];
                    for (int i = 0; i < 32; i++)
                        if (ps[i] >= 0) v += pv[i] * gpu_cache_elem(a.cache, a.fmt, ps[i], Dc, d);
                    acc[d] = v;
                }
                __syncthreads();
            }
        for (int64_t i = threadIdx.x; i < Dc; i += blockDim.x)
            gpu_st(a.o.p, a.o.dtype, t * a.o.stride[0] + h * a.o.stride[1] + i, acc[i]);
    }
}

/* ---- decode on tensor cores ---- */
#define MD_HEADS 64
#define MD_KEYS 64
#define MD_DC 512
#define MD_DR 64
#define MD_W 576
#define MD_PITCH 584 /* bf16 per shared row: 1168 bytes, rows land 16 bytes apart in the banks */
#define MD_SPITCH 68 /* floats per score row */
#define MD_FP8_ROW 656
#define MD_SMEM_Q (MD_HEADS * MD_PITCH * 2)
#define MD_SMEM_K (MD_KEYS * MD_PITCH * 2)
#define MD_SMEM_S (MD_HEADS * MD_SPITCH * 4)
#define MD_SMEM_STAGE (MD_KEYS * MD_FP8_ROW)
#define MD_SMEM_FP8 (MD_SMEM_Q + MD_SMEM_K + MD_SMEM_S + MD_SMEM_STAGE + 2 * MD_KEYS * 8)
#define MD_SMEM_BF16 (MD_SMEM_Q + MD_SMEM_K + MD_SMEM_S + 2 * MD_KEYS * 8)
/* the wgmma kernel (k_mla_decode_wg): operand tiles in 64-column swizzled slices */
#define MW_SLICE 8192 /* 64 rows x 64 bf16, swizzled */
#define MW_SMEM_Q (9 * MW_SLICE)
#define MW_SMEM_K (9 * MW_SLICE)
#define MW_SMEM_P MW_SLICE
#define MW_SMEM_RED (2 * 2 * 64 * 4) /* row maxima, then row sums, per warpgroup */
#define MW_SMEM (1024 + MW_SMEM_Q + MW_SMEM_K + MW_SMEM_P + MD_SMEM_STAGE + 2 * MD_KEYS * 8 + MW_SMEM_RED)

typedef struct tc_args {
    dsrt_gpu_tensor ql, qp, cache, bt, row_seq, kv_len, o;
    const int32_t *pos, *cnt;
    int64_t pos_k;
    int fmt, page;
    float scale;
    int64_t chunk; /* positions per split */
    int q_async;   /* q rows are 16-byte aligned: copied into shared memory asynchronously */
    float *part_o; /* [splits][T][Hh][512] when split */
    float2 *part_ml;
    unsigned *err; /* the device error word (k_mla_decode_wg without its image) */
} tc_args;

#ifdef DSRT_GPU_HAVE_MMA
/* Slot of entry j of row t's positions (the split's end je excluded), -1 when there is none. */
GPU_DEV int64_t md_entry_slot(const tc_args &a, int32_t seq, int64_t t, int64_t j, int64_t je, int64_t S)
{
    return j < je ? gpu_slot_of(a.bt, seq, a.pos ? a.pos[t * a.pos_k + j] : (int32_t)j, a.page, S) : -1;
}

/* A thread's share of the output of both tensor-core kernels: rows ha and hb (heads), 32 column pairs
 * dw + 8i + 2cq, values v[4i] v[4i+1] (row ha) and v[4i+2] v[4i+3] (row hb). Split: the unnormalized
 * partial row and, where write_ml, its (max, sum); else the row divided by its sum. */
GPU_DEV void md_store_rows(const tc_args &a, const float *v, int sp, int64_t t, int64_t ha, int64_t hb, int dw, int cq,
                           bool write_ml, float ma, float la, float mb, float lb)
{
    int64_t T = a.ql.shape[0], Hh = a.ql.shape[1];
    if (a.part_o) {
        float *po = a.part_o + (((int64_t)sp * T + t) * Hh) * MD_DC;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            int d = dw + i * 8 + 2 * cq;
            if (ha < Hh) *(float2 *)(po + ha * MD_DC + d) = make_float2(v[4 * i], v[4 * i + 1]);
            if (hb < Hh) *(float2 *)(po + hb * MD_DC + d) = make_float2(v[4 * i + 2], v[4 * i + 3]);
        }
        if (write_ml) {
            if (ha < Hh) a.part_ml[((int64_t)sp * T + t) * Hh + ha] = make_float2(ma, la);
            if (hb < Hh) a.part_ml[((int64_t)sp * T + t) * Hh + hb] = make_float2(mb, lb);
        }
        return;
    }
    float ia = la > 0 ? 1.0f / la : 0.0f, ib = lb > 0 ? 1.0f / lb : 0.0f;
#pragma unroll
    for (int i = 0; i < 32; i++) {
        int d = dw + i * 8 + 2 * cq;
        if (ha < Hh) {
            int64_t off = t * a.o.stride[0] + ha * a.o.stride[1] + d;
            gpu_st(a.o.p, a.o.dtype, off, v[4 * i] * ia);
            gpu_st(a.o.p, a.o.dtype, off + 1, v[4 * i + 1] * ia);
        }
        if (hb < Hh) {
            int64_t off = t * a.o.stride[0] + hb * a.o.stride[1] + d;
            gpu_st(a.o.p, a.o.dtype, off, v[4 * i + 2] * ib);
            gpu_st(a.o.p, a.o.dtype, off + 1, v[4 * i + 3] * ib);
        }
    }
}

/* A thread's output fragment (md_store_rows' layout) with row a times fa, row b times fb. */
GPU_DEV void md_scale_rows(float *v, float fa, float fb)
{
#pragma unroll
    for (int i = 0; i < 32; i++) {
        v[4 * i] *= fa;
        v[4 * i + 1] *= fa;
        v[4 * i + 2] *= fb;
        v[4 * i + 3] *= fb;
    }
}

#define MD_LOG2E 1.4426950408889634f /* scores become powers of two: e^s = 2^(s log2 e) */

/* A thread's share of its rows' tile maxima (xa, xb) made the maxima over the four threads of the
 * quad that holds the rows. */
GPU_DEV void md_quad_max(float &xa, float &xb)
{
    xa = fmaxf(xa, gpu_shfl_xor(xa, 1));
    xa = fmaxf(xa, gpu_shfl_xor(xa, 2));
    xb = fmaxf(xb, gpu_shfl_xor(xb, 1));
    xb = fmaxf(xb, gpu_shfl_xor(xb, 2));
}

/* Start of a tile's online-softmax step for rows a and b (the tensor-core kernels): from the tile's
 * row maxima xa, xb and the running ones ma, mb, the new maxima na, nb and the factors fa, fb =
 * e^(m - n) that rescale what came before (1 while a row has no score yet). */
GPU_DEV void md_softmax_begin(float xa, float xb, float ma, float mb, float &na, float &nb, float &fa, float &fb)
{
    na = fmaxf(ma, xa);
    nb = fmaxf(mb, xb);
    fa = na == NEG_INF ? 1.0f : gpu_exp2_ftz((ma - na) * MD_LOG2E);
    fb = nb == NEG_INF ? 1.0f : gpu_exp2_ftz((mb - nb) * MD_LOG2E);
}

/* End of a tile's online-softmax step for a thread's rows a and b (the tensor-core kernels): the
 * quad's p sums added up, the row sums rescaled and extended, the new maxima kept, and the output
 * fragment (v[4i], v[4i+1] row a; v[4i+2], v[4i+3] row b) rescaled. */
GPU_DEV void md_softmax_advance(float *v, float sa, float sb, float fa, float fb, float na, float nb, float &la,
                                float &lb, float &ma, float &mb, bool scale_v = true)
{
    sa += gpu_shfl_xor(sa, 1);
    sa += gpu_shfl_xor(sa, 2);
    sb += gpu_shfl_xor(sb, 1);
    sb += gpu_shfl_xor(sb, 2);
    la = la * fa + sa;
    lb = lb * fb + sb;
    ma = na;
    mb = nb;
    if (scale_v) md_scale_rows(v, fa, fb);
}

/* Byte offset of 16-byte chunk ch (bf16 columns 8ch..8ch+7, 0..71) of row r of a 64-row operand
 * tile: padded rows for ldmatrix (the mma.sync kernel) or 64-column swizzled slices (SW, wgmma). */
template <bool SW> GPU_DEV uint32_t md_chunk(int r, int ch)
{
    return SW ? (uint32_t)((ch / 8) * MW_SLICE) + gpu_swz128(r, ch % 8) : (uint32_t)(r * MD_PITCH * 2 + ch * 16);
}

/* Q rows (latent then rope) of head group h0 into Qs; missing heads are zero. Copied asynchronously
 * (its own group, waited for with tile 0): loaded through registers, the 18 loads a thread makes
 * ran one after another and were most of a batch-1 block's time. */
template <bool SW> GPU_DEV void md_load_q(const tc_args &a, uint8_t *Qs, int64_t t, int64_t h0)
{
    int64_t Hh = a.ql.shape[1];
    for (int id = threadIdx.x; id < MD_HEADS * 72; id += blockDim.x) {
        int r = id / 72, ch = id % 72;
        int64_t h = h0 + r;
        const uint16_t *src = ch < 64 ? (const uint16_t *)a.ql.p + t * a.ql.stride[0] + (h < Hh ? h : 0) * a.ql.stride[1] + ch * 8
                                      : (const uint16_t *)a.qp.p + t * a.qp.stride[0] + (h < Hh ? h : 0) * a.qp.stride[1] + (ch - 64) * 8;
        uint8_t *dst = Qs + md_chunk<SW>(r, ch);
        if (a.q_async) {
            gpu_cp_async16(dst, src, h < Hh ? 16 : 0);
        } else {
            uint4 v = make_uint4(0, 0, 0, 0);
            if (h < Hh) v = *(const uint4 *)src;
            *(uint4 *)dst = v;
        }
    }
    gpu_cp_async_commit();
}

/* Issues the copies of a tile's rows into shared memory: FP8 rows into the staging area, bf16 rows
 * straight into the key tile; missing rows zero-filled. Four threads a row (256 threads), so the
 * row's slot is read once. */
template <bool SW> GPU_DEV void md_issue_tile(const tc_args &a, const int64_t *slots, uint8_t *stage, uint8_t *Ks)
{
    int tid = threadIdx.x, r = tid / 4;
    int64_t slot = slots[r];
    const uint8_t *base = (const uint8_t *)a.cache.p;
    if (a.fmt == DSRT_CACHE_FP8) {
        const uint8_t *src = base + (slot >= 0 ? slot : 0) * a.cache.stride[0];
        for (int ch = tid % 4; ch < 41; ch += 4)
            gpu_cp_async16(stage + r * MD_FP8_ROW + ch * 16, src + ch * 16, slot >= 0 ? 16 : 0);
    } else {
        const uint8_t *src = base + ((slot >= 0 ? slot : 0) * a.cache.stride[0]) * 2;
        for (int ch = tid % 4; ch < 72; ch += 4) gpu_cp_async16(Ks + md_chunk<SW>(r, ch), src + ch * 16, slot >= 0 ? 16 : 0);
    }
}

/* FP8 staging -> bf16 key tile: latent = e4m3 * scale (exact for power-of-two scales), rope copied.
 * A thread keeps one group of 8 columns (gi) and takes every fourth row: the column math is done
 * once. Rows go four at a time, all four loaded before any is stored: the stage and the tile are
 * both shared memory, so the compiler may not move a load above an earlier store, and row by row
 * each conversion waited for its load (session 10, dense b64 ctx 4096: the wgmma kernel 360-374 ->
 * 346-352 us). */
template <bool SW> GPU_DEV void md_dequant(const uint8_t *stage, uint8_t *Ks)
{
    int tid = threadIdx.x, gi = tid % 64;
    const uint8_t *col = stage + gi * 8, *scl = stage + MD_DC + 4 * (gi / 16);
    for (int rb = tid / 64; rb < MD_KEYS; rb += 16) { /* 256 threads: rows rb, rb + 4, rb + 8, rb + 12 */
        uint2 raw[4];
        float s[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            raw[u] = *(const uint2 *)(col + (rb + 4 * u) * MD_FP8_ROW);
            s[u] = *(const float *)(scl + (rb + 4 * u) * MD_FP8_ROW);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            float f[8];
            gpu_e4m3x4_scaled(raw[u].x, s[u], f);
            gpu_e4m3x4_scaled(raw[u].y, s[u], f + 4);
            uint4 o;
            o.x = gpu_pack_bf16x2(f[0], f[1]);
            o.y = gpu_pack_bf16x2(f[2], f[3]);
            o.z = gpu_pack_bf16x2(f[4], f[5]);
            o.w = gpu_pack_bf16x2(f[6], f[7]);
            *(uint4 *)(Ks + md_chunk<SW>(rb + 4 * u, gi)) = o;
        }
    }
    for (int id = tid; id < MD_KEYS * 8; id += blockDim.x) {
        int r = id / 8, ci = id % 8;
        *(uint4 *)(Ks + md_chunk<SW>(r, 64 + ci)) = *(const uint4 *)(stage + r * MD_FP8_ROW + MD_DC + 16 + ci * 16);
    }
}

/* Slots of tile 0, its FP8 rows staged. */
template <bool SW>
GPU_DEV void md_tiles_start(const tc_args &a, int64_t *slots, uint8_t *stage, uint8_t *Ks, int64_t ntiles, int32_t seq,
                            int64_t t, int64_t jb, int64_t je, int64_t S)
{
    if (threadIdx.x < MD_KEYS) slots[threadIdx.x] = md_entry_slot(a, seq, t, jb + threadIdx.x, je, S);
    __syncthreads();
    if (ntiles > 0 && a.fmt == DSRT_CACHE_FP8) md_issue_tile<SW>(a, slots, stage, Ks);
    gpu_cp_async_commit();
}

/* Start of tile `it` (slots + (it % 2) * MD_KEYS): its rows in the key tile (bf16 copied now, FP8
 * staged by the step before and dequantized here), the next tile's slots, and the next FP8 rows
 * staged behind this tile's products. Ends with the tile visible to every thread, and to the tensor
 * cores' async proxy when SW. */
template <bool SW>
GPU_DEV void md_tile_begin(const tc_args &a, int64_t *slots, uint8_t *stage, uint8_t *Ks, int64_t it, int64_t ntiles,
                           int32_t seq, int64_t t, int64_t jb, int64_t je, int64_t S)
{
    int cur = (int)(it & 1), nxt = cur ^ 1;
    bool fp8 = a.fmt == DSRT_CACHE_FP8, more = it + 1 < ntiles;
    if (!fp8) {
        md_issue_tile<SW>(a, slots + cur * MD_KEYS, stage, Ks);
        gpu_cp_async_commit();
    }
    gpu_cp_async_wait<0>();
    __syncthreads();
    if (fp8) md_dequant<SW>(stage, Ks);
    if (threadIdx.x < MD_KEYS)
        slots[nxt * MD_KEYS + threadIdx.x] = more ? md_entry_slot(a, seq, t, jb + (it + 1) * MD_KEYS + threadIdx.x, je, S) : -1;
#ifdef DSRT_GPU_HAVE_WGMMA
    if (SW) gpu_fence_proxy_async();
#endif
    __syncthreads();
    if (fp8 && more) md_issue_tile<SW>(a, slots + nxt * MD_KEYS, stage, Ks);
    gpu_cp_async_commit();
}
#endif

static __global__ void __launch_bounds__(256, 1) k_mla_decode_tc(tc_args a)
{
#ifdef DSRT_GPU_HAVE_MMA
    extern __shared__ __align__(16) uint8_t md_smem[];
    uint16_t *Qs = (uint16_t *)md_smem;
    uint16_t *Ks = (uint16_t *)(md_smem + MD_SMEM_Q);
    float *Ss = (float *)(md_smem + MD_SMEM_Q + MD_SMEM_K);
    int64_t *slots = (int64_t *)(md_smem + MD_SMEM_Q + MD_SMEM_K + MD_SMEM_S);
    uint8_t *stage = md_smem + MD_SMEM_Q + MD_SMEM_K + MD_SMEM_S + 2 * MD_KEYS * 8;

    int64_t Hh = a.ql.shape[1], S = a.cache.shape[0];
    int64_t t = blockIdx.x, h0 = (int64_t)blockIdx.y * MD_HEADS;
    int sp = blockIdx.z;
    int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, cq = lane % 4;
    int hw = (warp % 4) * 16, kw = (warp / 4) * 32, dw = (warp / 4) * 256;

    int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
    int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
    int64_t n = a.pos ? a.cnt[t] : (len > 0 ? len : 0);
    int64_t jb = (int64_t)sp * a.chunk, je = jb + a.chunk < n ? jb + a.chunk : n;

    md_load_q<false>(a, (uint8_t *)Qs, t, h0);

    float acc[32][4];
#pragma unroll
    for (int i = 0; i < 32; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0;
    /* softmax state of heads hw+g (m0, l0) and hw+g+8 (m8, l8); the four lanes of a quad hold copies */
    float m0 = NEG_INF, l0 = 0, m8 = NEG_INF, l8 = 0;

    int64_t ntiles = je > jb ? (je - jb + MD_KEYS - 1) / MD_KEYS : 0;
    md_tiles_start<false>(a, slots, stage, (uint8_t *)Ks, ntiles, seq, t, jb, je, S);

    for (int64_t it = 0; it < ntiles; it++) {
        const int64_t *sl = slots + (it & 1) * MD_KEYS;
        md_tile_begin<false>(a, slots, stage, (uint8_t *)Ks, it, ntiles, seq, t, jb, je, S);

        /* S = Q K^T for heads hw..+16, keys kw..+32: latent and rope parts apart */
        float sl_lat[4][4], sl_pe[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) sl_lat[i][e] = sl_pe[i][e] = 0;
        {
            int mi = lane / 8, rr = lane % 8;
            const uint16_t *qa = Qs + (hw + (mi % 2) * 8 + rr) * MD_PITCH + (mi / 2) * 8;
            const uint16_t *kb0 = Ks + (kw + (mi / 2) * 8 + rr) * MD_PITCH + (mi % 2) * 8;
            const uint16_t *kb1 = kb0 + 16 * MD_PITCH;
#pragma unroll 4
            for (int ks = 0; ks < 32; ks++) {
                uint32_t af[4], b0[4], b1[4];
                gpu_ldmatrix_x4(af, qa + ks * 16);
                gpu_ldmatrix_x4(b0, kb0 + ks * 16);
                gpu_ldmatrix_x4(b1, kb1 + ks * 16);
                gpu_mma_bf16(sl_lat[0], af, b0);
                gpu_mma_bf16(sl_lat[1], af, b0 + 2);
                gpu_mma_bf16(sl_lat[2], af, b1);
                gpu_mma_bf16(sl_lat[3], af, b1 + 2);
            }
#pragma unroll
            for (int ks = 32; ks < 36; ks++) {
                uint32_t af[4], b0[4], b1[4];
                gpu_ldmatrix_x4(af, qa + ks * 16);
                gpu_ldmatrix_x4(b0, kb0 + ks * 16);
                gpu_ldmatrix_x4(b1, kb1 + ks * 16);
                gpu_mma_bf16(sl_pe[0], af, b0);
                gpu_mma_bf16(sl_pe[1], af, b0 + 2);
                gpu_mma_bf16(sl_pe[2], af, b1);
                gpu_mma_bf16(sl_pe[3], af, b1 + 2);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int hr = hw + g + (e >= 2 ? 8 : 0), key = kw + nt * 8 + 2 * cq + (e & 1);
                bool ok = sl[key] >= 0 && h0 + hr < Hh;
                float s = gpu_round_bf16_fast(
                    gpu_round_bf16_fast(gpu_round_bf16_fast(sl_lat[nt][e]) + gpu_round_bf16_fast(sl_pe[nt][e])) * a.scale);
                Ss[hr * MD_SPITCH + key] = ok ? s : NEG_INF;
            }
        __syncthreads();

        /* Online softmax over the tile, straight from this thread's P fragment elements: rows hw+g and
         * hw+g+8, keys ks*16 + 2cq + {0,1,8,9}; the quad's four lanes together hold a row's 64 keys. */
        {
            const float *s0 = Ss + (hw + g) * MD_SPITCH, *s8 = Ss + (hw + g + 8) * MD_SPITCH;
            float2 v0[4][2], v8[4][2];
            float x0 = NEG_INF, x8 = NEG_INF;
#pragma unroll
            for (int ks = 0; ks < 4; ks++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    v0[ks][h] = *(const float2 *)(s0 + ks * 16 + 2 * cq + 8 * h);
                    v8[ks][h] = *(const float2 *)(s8 + ks * 16 + 2 * cq + 8 * h);
                    x0 = fmaxf(x0, fmaxf(v0[ks][h].x, v0[ks][h].y));
                    x8 = fmaxf(x8, fmaxf(v8[ks][h].x, v8[ks][h].y));
                }
            md_quad_max(x0, x8);
            float n0, n8, a0, a8;
            md_softmax_begin(x0, x8, m0, m8, n0, n8, a0, a8);
            float b0 = n0 == NEG_INF ? 0.0f : n0 * MD_LOG2E, b8 = n8 == NEG_INF ? 0.0f : n8 * MD_LOG2E;
            uint32_t pf[4][4];
            float sum0 = 0, sum8 = 0;
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                float p[2][4];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    p[h][0] = gpu_exp2_ftz(fmaf(v0[ks][h].x, MD_LOG2E, -b0));
                    p[h][1] = gpu_exp2_ftz(fmaf(v0[ks][h].y, MD_LOG2E, -b0));
                    p[h][2] = gpu_exp2_ftz(fmaf(v8[ks][h].x, MD_LOG2E, -b8));
                    p[h][3] = gpu_exp2_ftz(fmaf(v8[ks][h].y, MD_LOG2E, -b8)); /* a row without a max: -inf */
                    sum0 += p[h][0] + p[h][1];
                    sum8 += p[h][2] + p[h][3];
                }
                pf[ks][0] = gpu_pack_bf16x2(p[0][0], p[0][1]); /* row g, keys 2cq.. */
                pf[ks][1] = gpu_pack_bf16x2(p[0][2], p[0][3]); /* row g+8 */
                pf[ks][2] = gpu_pack_bf16x2(p[1][0], p[1][1]); /* row g, keys 2cq+8.. */
                pf[ks][3] = gpu_pack_bf16x2(p[1][2], p[1][3]); /* row g+8, keys 2cq+8.. */
            }
            md_softmax_advance(&acc[0][0], sum0, sum8, a0, a8, n0, n8, l0, l8, m0, m8);
            /* O += P V over the tile: V = the latent part of the key tile */
            int mi = lane / 8, rr = lane % 8;
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                const uint16_t *vb = Ks + (ks * 16 + (mi % 2) * 8 + rr) * MD_PITCH + dw + (mi / 2) * 8;
#pragma unroll
                for (int np = 0; np < 16; np++) {
                    uint32_t bf[4];
                    gpu_ldmatrix_x4_trans(bf, vb + np * 16);
                    gpu_mma_bf16(acc[2 * np], pf[ks], bf);
                    gpu_mma_bf16(acc[2 * np + 1], pf[ks], bf + 2);
                }
            }
        }
        __syncthreads();
    }
    gpu_cp_async_wait<0>();

    md_store_rows(a, &acc[0][0], sp, t, h0 + hw + g, h0 + hw + g + 8, dw, cq, warp < 4 && cq == 0, m0, l0, m8, l8);
#endif
}

#ifdef DSRT_GPU_HAVE_WGMMA
/* S = Q K^T for 64 heads and N keys (32 or 64) on wgmma, Q and the key rows in swizzled slices (dq,
 * dk: the first blocks' descriptors), latent and rope parts accumulated apart and combined as ops.h
 * rounds a score: bf16 of each part, of their sum (one bf16x2 add), of the scaled sum (the scale is
 * a float, as the reference's), two scores a conversion. The
 * scores land in s (N/2 a thread, the accumulator layout). */
template <int N> GPU_DEV void mw_scores(float *s, uint64_t dq, uint64_t dk, float scale)
{
    float pe[N / 2];
    gpu_wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 36; ks++) { /* 32 latent k-steps, then 4 rope ones (slice 8) */
        uint32_t off = ((ks / 4) * MW_SLICE + (ks % 4) * 32) >> 4;
        float *d = ks < 32 ? s : pe;
        if (N == 64) gpu_wgmma_m64n64_bf16(d, dq + off, dk + off, ks % 32 > 0);
        else gpu_wgmma_m64n32_bf16(d, dq + off, dk + off, ks % 32 > 0);
    }
    gpu_wgmma_commit();
    gpu_wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < N / 2; i++) {
        gpu_wgmma_pin(s[i]);
        gpu_wgmma_pin(pe[i]);
    }
#pragma unroll
    for (int i = 0; i < N / 2; i += 2) {
        uint32_t w = gpu_add_bf16x2(gpu_pack_bf16x2(s[i], s[i + 1]), gpu_pack_bf16x2(pe[i], pe[i + 1]));
        float l0 = __int_as_float((int)(w << 16)), l1 = __int_as_float((int)(w & 0xffff0000u));
        gpu_round_bf16_pair(l0 * scale, l1 * scale, s[i], s[i + 1]);
    }
}

/* The tile's probabilities for a thread's rows a and b (new maxima na, nb; -inf: the row has none
 * yet): p = e^(s - n) of its 4J scores (md_store_rows' layout), packed as bf16 pairs into pk (row a
 * then row b per 8-key chunk), and the thread's share of each row's sum. */
template <int J>
GPU_DEV void mw_probs(const float *s, float na, float nb, uint32_t *pk, float &suma, float &sumb)
{
    float ba = na == NEG_INF ? 0.0f : na * MD_LOG2E, bb = nb == NEG_INF ? 0.0f : nb * MD_LOG2E;
    suma = 0;
    sumb = 0;
#pragma unroll
    for (int j = 0; j < J; j++) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            bool up = e >= 2;
            p[e] = gpu_exp2_ftz(fmaf(s[4 * j + e], MD_LOG2E, up ? -bb : -ba)); /* a row without a max: s = -inf */
        }
        suma += p[0] + p[1];
        sumb += p[2] + p[3];
        pk[2 * j] = gpu_pack_bf16x2(p[0], p[1]);
        pk[2 * j + 1] = gpu_pack_bf16x2(p[2], p[3]);
    }
}

/* O(64 x 256) += P V over a 64-key tile (P and V as descriptors dp, dv), then waited for. The
 * accumulators are pinned before the fence: a rescale sunk below it makes ptxas inject a
 * warpgroup.arrive (its note C7519). */
GPU_DEV void mw_pv(float *o, uint64_t dp, uint64_t dv)
{
#pragma unroll
    for (int i = 0; i < 128; i++) gpu_wgmma_pin(o[i]);
    gpu_wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ks++) gpu_wgmma_m64n256_bf16_tb(o, dp + ((ks * 32) >> 4), dv + ((ks * 16 * 128) >> 4), 1);
    gpu_wgmma_commit();
    gpu_wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < 128; i++) gpu_wgmma_pin(o[i]);
}
#endif

/* ---- decode on Hopper's warpgroup MMA (sm_90a) ----
 * The same work as k_mla_decode_tc (64 heads, tiles of 64 cached rows, online softmax, splits) with
 * the products on wgmma: its tensor cores read both operands from shared memory, where mma.sync
 * spends most of its time in ldmatrix and register pressure (session 9: ncu showed the mma.sync
 * kernel issuing every 2.8 cycles, its tensor pipe 22% busy). Two warpgroups: for Q.K^T, warpgroup
 * w takes keys 32w..32w+31 of the tile for all 64 heads; the row maxima meet in shared memory, p
 * goes to shared memory as bf16, and for P.V warpgroup w takes latent columns 256w..256w+255 over
 * all 64 keys, reading V straight from the key tile (the trans flag: the tile is N-major for it).
 * Q, the key tile and P are stored swizzled (gpu_wgmma.cuh). Rounding points are those of the
 * mma.sync kernel. */

static __global__ void __launch_bounds__(256, 1) k_mla_decode_wg(tc_args a)
{
#ifdef DSRT_GPU_HAVE_WGMMA
    extern __shared__ __align__(16) uint8_t mw_raw[];
    /* swizzled slices start on 1 KiB boundaries */
    uint8_t *smem = mw_raw + ((1024 - (gpu_smem_addr(mw_raw) & 1023)) & 1023);
    uint8_t *Qs = smem, *Ks = Qs + MW_SMEM_Q, *Ps = Ks + MW_SMEM_K, *stage = Ps + MW_SMEM_P;
    int64_t *slots = (int64_t *)(stage + MD_SMEM_STAGE);
    float *red = (float *)(slots + 2 * MD_KEYS);

    int64_t Hh = a.ql.shape[1], S = a.cache.shape[0];
    int64_t t = blockIdx.x, h0 = (int64_t)blockIdx.y * MD_HEADS;
    int sp = blockIdx.z;
    int tid = threadIdx.x, wg = tid / 128, warp = tid / 32, lane = tid % 32, g = lane / 4, cq = lane % 4;
    int r0 = (warp % 4) * 16 + g, r1 = r0 + 8; /* this thread's rows (heads h0 + r) in both products */

    int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
    int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
    int64_t n = a.pos ? a.cnt[t] : (len > 0 ? len : 0);
    int64_t jb = (int64_t)sp * a.chunk, je = jb + a.chunk < n ? jb + a.chunk : n;

    md_load_q<true>(a, Qs, t, h0);

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; i++) o[i] = 0;
    float m0 = NEG_INF, l0 = 0, m1 = NEG_INF, l1 = 0; /* rows r0, r1; l over this warpgroup's keys */

    int64_t ntiles = je > jb ? (je - jb + MD_KEYS - 1) / MD_KEYS : 0;
    md_tiles_start<true>(a, slots, stage, Ks, ntiles, seq, t, jb, je, S);

    /* Descriptors of each product's first operand block; the others add their offset (in 16-byte
     * units) to the address field, which cannot carry out of it below 256 KiB. */
    const uint32_t ka = gpu_smem_addr(Ks);
    const uint64_t dq = gpu_wgmma_desc(gpu_smem_addr(Qs), 16, 1024), dk = gpu_wgmma_desc(ka + wg * 32 * 128, 16, 1024),
                   dp = gpu_wgmma_desc(gpu_smem_addr(Ps), 16, 1024),
                   dv = gpu_wgmma_desc(ka + 4 * wg * MW_SLICE, MW_SLICE, 1024);
    for (int64_t it = 0; it < ntiles; it++) {
        const int64_t *sl = slots + (it & 1) * MD_KEYS;
        md_tile_begin<true>(a, slots, stage, Ks, it, ntiles, seq, t, jb, je, S);

        /* scores for all heads, keys 32wg..+32; masked keys and missing heads are -inf */
        float s_lat[16];
        mw_scores<32>(s_lat, dq, dk, a.scale);
        float x0 = NEG_INF, x1 = NEG_INF;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int key = wg * 32 + (i / 4) * 8 + 2 * cq + (i & 1), row = i & 2 ? r1 : r0;
            if (sl[key] < 0 || h0 + row >= Hh) s_lat[i] = NEG_INF;
            if (i & 2) x1 = fmaxf(x1, s_lat[i]);
            else x0 = fmaxf(x0, s_lat[i]);
        }
        md_quad_max(x0, x1);
        if (cq == 0) {
            red[wg * 64 + r0] = x0;
            red[wg * 64 + r1] = x1;
        }
        __syncthreads();
        x0 = fmaxf(red[r0], red[64 + r0]);
        x1 = fmaxf(red[r1], red[64 + r1]);

        /* online softmax: both warpgroups reach the same maxima; each sums its own keys */
        float n0, n1, a0, a1, sum0, sum1;
        md_softmax_begin(x0, x1, m0, m1, n0, n1, a0, a1);
        uint32_t pk[8];
        mw_probs<4>(s_lat, n0, n1, pk, sum0, sum1);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            *(uint32_t *)(Ps + gpu_swz128(r0, wg * 4 + j) + 4 * cq) = pk[2 * j];
            *(uint32_t *)(Ps + gpu_swz128(r1, wg * 4 + j) + 4 * cq) = pk[2 * j + 1];
        }
        md_softmax_advance(o, sum0, sum1, a0, a1, n0, n1, l0, l1, m0, m1);
        gpu_fence_proxy_async();
        __syncthreads();

        /* O += P V: latent columns 256wg..+256 over the tile's 64 keys */
        mw_pv(o, dp, dv);
        __syncthreads();
    }
    gpu_cp_async_wait<0>();

    /* row sums of both warpgroups */
    if (cq == 0) {
        red[128 + wg * 64 + r0] = l0;
        red[128 + wg * 64 + r1] = l1;
    }
    __syncthreads();
    l0 = red[128 + r0] + red[192 + r0];
    l1 = red[128 + r1] + red[192 + r1];
    md_store_rows(a, o, sp, t, h0 + r0, h0 + r1, wg * 256, cq, wg == 0 && cq == 0, m0, l0, m1, l1);
#else
    /* built without an sm_90a image: the host should not have chosen this kernel; say so */
    if (threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
        gpu_error_flag(a.err, (unsigned)DSRT_GPU_ERR_NO_WGMMA);
#endif
}

/* ---- warp-specialized wgmma decode over the FP8 cache (k_mla_decode_ws) ----
 * FlashMLA's division of labour on Hopper, 384 threads a block (one query row, 64 heads, a split):
 *  - warpgroup 2, the producer, reads each cached row straight from global memory into registers
 *    (four threads a row, 64 bytes each per load, two rows a thread), dequantizes, and stores the
 *    bf16 row into one of two swizzled key tiles; an mbarrier pair per tile hands it over. Its loads
 *    for a tile go out before it waits for the tile's buffer to be free.
 *  - warpgroup 0 computes S = Q K^T for the whole tile (64 x 64, latent and rope apart as the
 *    reference rounds them), the online softmax, publishes P and the rows' rescale factors, and
 *    adds P V for latent columns 0..255;
 *  - warpgroup 1 rescales its accumulators and adds P V for columns 256..511, while warpgroup 0
 *    moves on to the next tile's Q K^T.
 * setmaxnreg gives the registers to the warpgroup holding S and half of O. */
#define MS_OFF_K MW_SMEM_Q
#define MS_OFF_P (MS_OFF_K + 2 * MW_SMEM_K)
#define MS_OFF_VALID (MS_OFF_P + MW_SMEM_P)     /* per tile buffer, 8 words of 8 row bits */
#define MS_OFF_FAC (MS_OFF_VALID + 2 * 8 * 4)   /* per head, the tile's rescale factor */
#define MS_OFF_FIN (MS_OFF_FAC + MD_HEADS * 4)  /* per head, the row sum at the end */
#define MS_OFF_BAR (MS_OFF_FIN + MD_HEADS * 4)  /* full[2], empty[2], then P ready, P free, row sums */
#define MS_SMEM (1024 + MS_OFF_BAR + 7 * 8)
/* registers a thread per warpgroup: they must fit the 168 x 384 the block starts with, or the
 * setmaxnreg.inc of warpgroup 0 waits forever */
#ifndef MS_REGS_MATH0
#define MS_REGS_MATH0 224
#define MS_REGS_MATH1 160
#define MS_REGS_PRODUCER 120
#endif
static_assert(MS_REGS_MATH0 + MS_REGS_MATH1 + MS_REGS_PRODUCER <= 3 * 168, "k_mla_decode_ws register split");

#ifdef DSRT_GPU_HAVE_WGMMA
/* One cached row as a producer thread holds it: its 16-byte piece q of each 64-byte latent group,
 * the four scales, its two rope chunks. */
typedef struct ms_row {
    uint4 lat[8], sc, pe[2];
} ms_row;

GPU_DEV void ms_load(ms_row &d, const uint8_t *base, int64_t stride, int64_t slot, int q)
{
    uint4 z = make_uint4(0, 0, 0, 0);
    bool ok = slot >= 0; /* a missing row is zeros, never read */
    const uint8_t *src = base + (ok ? slot : 0) * stride;
#pragma unroll
    for (int g = 0; g < 8; g++) d.lat[g] = ok ? gpu_ld_nc_l2_256(src + g * 64 + q * 16) : z;
    d.sc = ok ? gpu_ld_nc_l2_256(src + MD_DC) : z;
    d.pe[0] = ok ? gpu_ld_nc_l2_256(src + MD_DC + 16 + q * 16) : z;
    d.pe[1] = ok ? gpu_ld_nc_l2_256(src + MD_DC + 16 + (q + 4) * 16) : z;
}

/* Fetches row `slot` into L2 ahead of its loads: two 128-byte lines a thread, eight a row. */
GPU_DEV void ms_prefetch(const uint8_t *base, int64_t stride, int64_t slot, int q)
{
    if (slot < 0) return;
    const uint8_t *nx = base + slot * stride;
    gpu_prefetch_l2(nx + q * 128);
    if (q * 128 + 512 < MD_FP8_ROW) gpu_prefetch_l2(nx + q * 128 + 512);
}

/* Dequantizes a held row into row `row` of key tile Kb, and of the peer block's copy when PEER (its
 * address pk, the stores counted on its mbarrier pbar). The chunk offsets are md_chunk spelled out
 * so that the slice is an immediate and two addresses stay live, not 36. */
template <bool PEER>
GPU_DEV void ms_store(const ms_row &d, uint8_t *Kb, uint32_t pk, uint32_t pbar, int row, int q)
{
    uint32_t oa = gpu_swz128(row, 2 * q), ob = gpu_swz128(row, 2 * q + 1);
    float s4[4] = {__uint_as_float(d.sc.x), __uint_as_float(d.sc.y), __uint_as_float(d.sc.z), __uint_as_float(d.sc.w)};
#pragma unroll
    for (int g = 0; g < 8; g++) {
        uint32_t w[4] = {d.lat[g].x, d.lat[g].y, d.lat[g].z, d.lat[g].w};
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float f[8];
            gpu_e4m3x4_scaled(w[2 * h], s4[g / 2], f);
            gpu_e4m3x4_scaled(w[2 * h + 1], s4[g / 2], f + 4);
            uint4 o = make_uint4(gpu_pack_bf16x2(f[0], f[1]), gpu_pack_bf16x2(f[2], f[3]), gpu_pack_bf16x2(f[4], f[5]),
                                 gpu_pack_bf16x2(f[6], f[7]));
            uint32_t off = g * MW_SLICE + (h ? ob : oa);
            *(uint4 *)(Kb + off) = o;
            if (PEER) gpu_st_async16(pk + off, o, pbar);
        }
    }
    uint32_t pa = 8 * MW_SLICE + gpu_swz128(row, q), pb = 8 * MW_SLICE + gpu_swz128(row, q + 4);
    *(uint4 *)(Kb + pa) = d.pe[0];
    *(uint4 *)(Kb + pb) = d.pe[1];
    if (PEER) {
        gpu_st_async16(pk + pa, d.pe[0], pbar);
        gpu_st_async16(pk + pb, d.pe[1], pbar);
    }
}

/* Bytes a block's producer stores into its peer's tile buffer per tile: 32 rows, and 4 mask words. */
#define MS_PEER_TX (32 * 72 * 16 + 4 * 4)

/* Warpgroup 2 of k_mla_decode_ws<CL>. CL = 1: a thread takes rows tk and tk + 32 of each tile
 * (loads for both in flight at once). CL = 2: the two blocks of a cluster (the same query row and
 * split, two head groups) dequantize half of each tile each, rows rank * 32 + tk, and store them into
 * both blocks' buffers; with one row a thread, the next tile's row is loaded while this one is
 * converted. Rows go with their bits in the tile's mask (8 per word, word 4r + warp). */
template <int CL>
GPU_DEV void ms_produce(const tc_args &a, uint8_t *Ks, uint32_t *valid, uint64_t *full, uint64_t *empty, int64_t ntiles,
                        int32_t seq, int64_t t, int64_t jb, int64_t je, int64_t S, unsigned rank)
{
    constexpr int R = 2 / CL;
    int p = threadIdx.x - 256, lane = p % 32, w = p / 32, q = lane / 8, tk = (int)rank * 32 + w * 8 + lane % 8;
    const uint8_t *base = (const uint8_t *)a.cache.p;
    int64_t stride = a.cache.stride[0], slot[R];
    uint32_t peer_k = 0, peer_valid = 0, peer_full = 0;
    if (CL == 2) {
        peer_k = gpu_peer_addr(Ks, rank ^ 1);
        peer_valid = gpu_peer_addr(valid, rank ^ 1);
        peer_full = gpu_peer_addr(full, rank ^ 1);
    }
    ms_row cur[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        slot[r] = md_entry_slot(a, seq, t, jb + tk + 32 * r, je, S);
        if (CL == 2) ms_load(cur[r], base, stride, slot[r], q);
    }
    for (int64_t it = 0; it < ntiles; it++) {
        int b = (int)(it & 1);
        bool ok[R];
        ms_row nxt;
#pragma unroll
        for (int r = 0; r < R; r++) {
            ok[r] = slot[r] >= 0;
            if (CL == 1) ms_load(cur[r], base, stride, slot[r], q);
        }
        /* the next tile's lookups (and with one row a thread, its loads) wait out their latency
         * behind this tile's conversion */
#pragma unroll
        for (int r = 0; r < R; r++) {
            slot[r] = it + 1 < ntiles ? md_entry_slot(a, seq, t, jb + (it + 1) * MD_KEYS + tk + 32 * r, je, S) : -1;
            if (CL == 1) ms_prefetch(base, stride, slot[r], q);
        }
        if (CL == 2) ms_load(nxt, base, stride, slot[0], q);
        if (it >= 2) gpu_mbar_wait(&empty[b], (unsigned)(((it >> 1) - 1) & 1));
        if (CL == 2 && p == 0) gpu_mbar_arrive_expect(&full[b], MS_PEER_TX);
        uint8_t *Kb = Ks + b * MW_SMEM_K;
        uint32_t pbar = peer_full + 8 * b;
#pragma unroll
        for (int r = 0; r < R; r++) {
            ms_store<CL == 2>(cur[r], Kb, peer_k + b * MW_SMEM_K, pbar, tk + 32 * r, q);
            uint32_t bits = (uint32_t)gpu_ballot(ok[r]) & 0xffu, word = b * 8 + (CL == 2 ? rank : r) * 4 + w;
            if (lane == 0) {
                valid[word] = bits;
                if (CL == 2) gpu_st_async4(peer_valid + 4 * word, bits, pbar);
            }
            __syncwarp();
        }
        gpu_fence_proxy_async();
        gpu_mbar_arrive(&full[b]);
        if (CL == 2) cur[0] = nxt;
    }
}
#endif

#ifdef DSRT_GPU_HAVE_WGMMA
template <int CL>
GPU_DEV void ms_math_body(const tc_args &a, uint8_t *Qs, uint8_t *Ks, uint8_t *Ps, const uint32_t *valid, float *fac,
                          float *fin, uint64_t *full, uint64_t *empty, uint64_t *hand, uint32_t peer_empty,
                          int64_t ntiles, int64_t t,
                          int64_t h0, int sp, int wg, int warp, int lane);
#endif

/* CL = 2: launched in clusters of two blocks along y (head groups 2i, 2i + 1 of one row and split),
 * whose producers share the dequantization (ms_produce). */
template <int CL> static __global__ void __launch_bounds__(384, 1) k_mla_decode_ws(tc_args a)
{
#ifdef DSRT_GPU_HAVE_WGMMA
    extern __shared__ __align__(16) uint8_t ms_raw[];
    /* the same offset in both blocks of a cluster: their layouts match, so peer addresses do too */
    uint8_t *smem = ms_raw + ((1024 - (gpu_smem_addr(ms_raw) & 1023)) & 1023);
    uint8_t *Qs = smem, *Ks = smem + MS_OFF_K, *Ps = smem + MS_OFF_P;
    uint32_t *valid = (uint32_t *)(smem + MS_OFF_VALID);
    float *fac = (float *)(smem + MS_OFF_FAC), *fin = (float *)(smem + MS_OFF_FIN);
    uint64_t *full = (uint64_t *)(smem + MS_OFF_BAR), *empty = full + 2, *hand = full + 4;

    int64_t S = a.cache.shape[0];
    int64_t t = blockIdx.x, h0 = (int64_t)blockIdx.y * MD_HEADS;
    int sp = blockIdx.z;
    int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;

    int32_t seq = gpu_i32(a.row_seq, t * a.row_seq.stride[0]);
    int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
    int64_t n = a.pos ? a.cnt[t] : (len > 0 ? len : 0);
    int64_t jb = (int64_t)sp * a.chunk, je = jb + a.chunk < n ? jb + a.chunk : n;
    int64_t ntiles = je > jb ? (je - jb + MD_KEYS - 1) / MD_KEYS : 0;

    unsigned rank = CL == 2 ? blockIdx.y & 1 : 0;
    if (tid == 0) {
        /* full: the local producer's threads, and with a peer its byte count (one arrival);
         * empty: each math warp of both blocks */
        gpu_mbar_init(&full[0], 128 + (CL == 2));
        gpu_mbar_init(&full[1], 128 + (CL == 2));
        gpu_mbar_init(&empty[0], 8 * CL);
        gpu_mbar_init(&empty[1], 8 * CL);
        /* warpgroup 0 -> 1: P and the factors ready, the row sums final; 1 -> 0: P free (all
         * 128 threads of the sender arrive; mbarriers, not named barriers, which compute-sanitizer's
         * synccheck takes for a block barrier some threads skipped) */
        gpu_mbar_init(&hand[0], 128);
        gpu_mbar_init(&hand[1], 128);
        gpu_mbar_init(&hand[2], 128);
    }
    md_load_q<true>(a, Qs, t, h0);
    gpu_cp_async_wait<0>();
    gpu_fence_proxy_async();
    if (CL == 2) gpu_cluster_sync(); /* the peer's barriers exist before anything reaches them */
    else __syncthreads();
    const uint32_t peer_empty = CL == 2 ? gpu_peer_addr(empty, rank ^ 1) : 0;

    if (wg == 2) {
        gpu_regs_dec<MS_REGS_PRODUCER>();
        ms_produce<CL>(a, Ks, valid, full, empty, ntiles, seq, t, jb, je, S, rank);
    } else {
        ms_math_body<CL>(a, Qs, Ks, Ps, valid, fac, fin, full, empty, hand, peer_empty, ntiles, t, h0, sp, wg, warp, lane);
    }
    /* a block leaves only once its peer is done arriving on its barriers */
    if (CL == 2) gpu_cluster_sync();
#else
    if (threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
        gpu_error_flag(a.err, (unsigned)DSRT_GPU_ERR_NO_WGMMA);
#endif
}

#ifdef DSRT_GPU_HAVE_WGMMA
/* A math warp is done with tile buffer b: one arrival on this block's empty barrier and, in a
 * cluster, on the peer's (its producer writes here too). */
template <int CL> GPU_DEV void ms_release(uint64_t *empty, uint32_t peer_empty, int b, int lane)
{
    if (lane == 0) {
        gpu_mbar_arrive(&empty[b]);
        if (CL == 2) gpu_mbar_arrive_peer(peer_empty + 8 * b);
    }
    __syncwarp();
}

/* Warpgroups 0 and 1 of k_mla_decode_ws (see there). */
template <int CL>
GPU_DEV void ms_math_body(const tc_args &a, uint8_t *Qs, uint8_t *Ks, uint8_t *Ps, const uint32_t *valid, float *fac,
                          float *fin, uint64_t *full, uint64_t *empty, uint64_t *hand, uint32_t peer_empty,
                          int64_t ntiles, int64_t t,
                          int64_t h0, int sp, int wg, int warp, int lane)
{
    int64_t Hh = a.ql.shape[1];
    int g = lane / 4, cq = lane % 4;
    int r0 = warp * 16 + g, r1 = r0 + 8; /* a math thread's rows (heads h0 + r) in both products */
    const uint32_t ka = gpu_smem_addr(Ks);
    const uint64_t dp = gpu_wgmma_desc(gpu_smem_addr(Ps), 16, 1024);
    if (wg == 0) {
        gpu_regs_inc<MS_REGS_MATH0>();
        float o[128];
#pragma unroll
        for (int i = 0; i < 128; i++) o[i] = 0;
        const uint64_t dq = gpu_wgmma_desc(gpu_smem_addr(Qs), 16, 1024);
        float m0 = NEG_INF, l0 = 0, m1 = NEG_INF, l1 = 0;
        for (int64_t it = 0; it < ntiles; it++) {
            int b = (int)(it & 1);
            gpu_mbar_wait(&full[b], (unsigned)((it >> 1) & 1));
            const uint32_t kb = ka + b * MW_SMEM_K;
            const uint64_t dk = gpu_wgmma_desc(kb, 16, 1024), dv = gpu_wgmma_desc(kb, MW_SLICE, 1024);

            /* scores over the whole tile; missing rows and heads are -inf (a tile with all of
             * both is the common case) */
            float s_lat[32];
            mw_scores<64>(s_lat, dq, dk, a.scale);
            const uint4 v0 = *(const uint4 *)(valid + b * 8), v1 = *(const uint4 *)(valid + b * 8 + 4);
            const uint64_t vm = (uint64_t)(v0.x | v0.y << 8 | v0.z << 16 | v0.w << 24) |
                                (uint64_t)(v1.x | v1.y << 8 | v1.z << 16 | v1.w << 24) << 32;
            if (vm != ~0ull || h0 + MD_HEADS > Hh) {
#pragma unroll
                for (int i = 0; i < 32; i++) {
                    int key = (i / 4) * 8 + 2 * cq + (i & 1), row = i & 2 ? r1 : r0;
                    if (!((vm >> key) & 1) || h0 + row >= Hh) s_lat[i] = NEG_INF;
                }
            }
            float x0 = NEG_INF, x1 = NEG_INF;
#pragma unroll
            for (int i = 0; i < 32; i++) {
                if (i & 2) x1 = fmaxf(x1, s_lat[i]);
                else x0 = fmaxf(x0, s_lat[i]);
            }
            md_quad_max(x0, x1);
            float n0, n1, a0, a1, sum0, sum1;
            md_softmax_begin(x0, x1, m0, m1, n0, n1, a0, a1);
            uint32_t pk[16];
            mw_probs<8>(s_lat, n0, n1, pk, sum0, sum1);
            /* P and the factors go out once warpgroup 1 is done with the previous ones */
            if (it > 0) gpu_mbar_wait(&hand[1], (unsigned)((it - 1) & 1));
#pragma unroll
            for (int j = 0; j < 8; j++) {
                *(uint32_t *)(Ps + gpu_swz128(r0, j) + 4 * cq) = pk[2 * j];
                *(uint32_t *)(Ps + gpu_swz128(r1, j) + 4 * cq) = pk[2 * j + 1];
            }
            if (cq == 0) {
                fac[r0] = a0;
                fac[r1] = a1;
            }
            gpu_fence_proxy_async();
            gpu_mbar_arrive(&hand[0]);
            /* once the maxima settle, most tiles leave a warp's rows alone: skip the 128 multiplies */
            bool moved = gpu_ballot(a0 != 1.0f || a1 != 1.0f) != 0;
            md_softmax_advance(o, sum0, sum1, a0, a1, n0, n1, l0, l1, m0, m1, moved);

            mw_pv(o, dp, dv); /* O[:, 0..255] += P V */
            ms_release<CL>(empty, peer_empty, b, lane);
        }
        if (cq == 0) {
            fin[r0] = l0;
            fin[r1] = l1;
        }
        gpu_mbar_arrive(&hand[2]);
        md_store_rows(a, o, sp, t, h0 + r0, h0 + r1, 0, cq, cq == 0, m0, l0, m1, l1);
    } else {
        gpu_regs_dec<MS_REGS_MATH1>();
        float o[128];
#pragma unroll
        for (int i = 0; i < 128; i++) o[i] = 0;
        for (int64_t it = 0; it < ntiles; it++) {
            int b = (int)(it & 1);
            const uint64_t dv = gpu_wgmma_desc(ka + b * MW_SMEM_K + 4 * MW_SLICE, MW_SLICE, 1024);
            gpu_mbar_wait(&hand[0], (unsigned)(it & 1));
            float fa = fac[r0], fb = fac[r1];
            if (gpu_ballot(fa != 1.0f || fb != 1.0f) != 0) md_scale_rows(o, fa, fb);
            mw_pv(o, dp, dv); /* O[:, 256..511] += P V */
            ms_release<CL>(empty, peer_empty, b, lane);
            if (it + 1 < ntiles) gpu_mbar_arrive(&hand[1]);
        }
        gpu_mbar_wait(&hand[2], 0);
        md_store_rows(a, o, sp, t, h0 + r0, h0 + r1, 256, cq, false, 0.0f, fin[r0], 0.0f, fin[r1]);
    }
}
#endif

/* Merges the splits of k_mla_decode_tc: o = sum_s O_s e^(m_s - M) / sum_s l_s e^(m_s - M). The
 * split weights are computed once per (row, head) into shared memory, the (m, l) pairs loaded by the
 * first wave at once (one thread reading them one after another was ~6 us of a decode row's merge);
 * the split sums per column are loaded 8 at a time and added in split order. */
static __global__ void k_mla_combine(const float *part_o, const float2 *part_ml, int splits, int64_t T, int64_t Hh,
                                     dsrt_gpu_tensor o)
{
    __shared__ float ws[64];
    __shared__ int use[64];
    __shared__ float2 s_ml[64];
    __shared__ float s_inv;
    int64_t th = blockIdx.x, t = th / Hh, h = th % Hh;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) s_ml[s] = part_ml[(s * T + t) * Hh + h];
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = NEG_INF;
        for (int s = 0; s < splits; s++) M = fmaxf(M, s_ml[s].x);
        float L = 0;
        for (int s = 0; s < splits; s++) {
            float2 ml = s_ml[s];
            use[s] = M != NEG_INF && ml.x != NEG_INF;
            ws[s] = use[s] ? expf(ml.x - M) : 0.0f;
            if (use[s]) L += ml.y * ws[s];
        }
        s_inv = L > 0 ? 1.0f / L : 0.0f;
    }
    __syncthreads();
    float inv = s_inv;
    /* a thread per 4 columns (16-byte loads, 8 splits in flight): one L2 round trip per 8 splits */
    for (int d = 4 * threadIdx.x; d < MD_DC; d += 4 * blockDim.x) {
        float v[4] = {0, 0, 0, 0};
        for (int s0 = 0; s0 < splits; s0 += 8) {
            float4 p[8];
#pragma unroll
            for (int n = 0; n < 8; n++)
                p[n] = s0 + n < splits ? *(const float4 *)(part_o + (((s0 + n) * T + t) * Hh + h) * MD_DC + d)
                                       : make_float4(0, 0, 0, 0);
#pragma unroll
            for (int n = 0; n < 8; n++)
                if (s0 + n < splits && use[s0 + n]) {
                    float w = ws[s0 + n];
                    v[0] += p[n].x * w;
                    v[1] += p[n].y * w;
                    v[2] += p[n].z * w;
                    v[3] += p[n].w * w;
                }
        }
#pragma unroll
        for (int e = 0; e < 4; e++) gpu_st(o.p, o.dtype, t * o.stride[0] + h * o.stride[1] + d + e, v[e] * inv);
    }
}

/* The operands both decode kernels take (their argument blocks share these fields). */
template <typename A>
static void decode_args(A *a, const dsrt_gpu_tensor &ql, const dsrt_gpu_tensor &qp, const dsrt_gpu_tensor &cache,
                        const dsrt_gpu_tensor &bt, const dsrt_gpu_tensor &rs, const dsrt_gpu_tensor &kl,
                        const dsrt_gpu_tensor &idx, const dsrt_gpu_tensor &o, int32_t *pos, int32_t *cnt,
                        const dsrt_op *op)
{
    memset(a, 0, sizeof *a);
    a->ql = ql;
    a->qp = qp;
    a->cache = cache;
    a->bt = bt;
    a->row_seq = rs;
    a->kv_len = kl;
    a->o = o;
    a->pos = pos;
    a->cnt = cnt;
    a->pos_k = idx.p ? idx.shape[1] : 0;
    a->fmt = (int)op->p.format;
    a->page = op->p.page_size;
    a->scale = op->p.scale;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Whether the tensor-core decode takes this op (else the plain path runs). */
static bool tc_decode_ok(const dsrt_gpu_ctx *c, const dsrt_op *op, const dsrt_gpu_tensor &ql, const dsrt_gpu_tensor &qp,
                         const dsrt_gpu_tensor &cache)
{
    if (!gpu_use_mma(c) || getenv(DSRT_GPU_ENV("MLA_SIMT"))) return false;
    if (ql.dtype != DSRT_BF16 || qp.dtype != DSRT_BF16) return false;
    if (ql.shape[2] != MD_DC || qp.shape[2] != MD_DR) return false;
    if (ql.shape[0] > 0x7fffffff || ql.shape[1] > 64 * 65535) return false;
    if (ql.stride[0] % 8 || ql.stride[1] % 8 || qp.stride[0] % 8 || qp.stride[1] % 8) return false;
    if (!aligned16(ql.p) || !aligned16(qp.p) || !aligned16(cache.p)) return false;
    if (op->p.format == DSRT_CACHE_FP8) {
        if (cache.stride[0] % 16) return false;
        if (c->smem_optin < MD_SMEM_FP8) return false;
    } else {
        if (cache.dtype != DSRT_BF16 || cache.stride[0] % 8) return false;
        if (c->smem_optin < MD_SMEM_BF16) return false;
    }
    return true;
}

/* Whether k_mla_decode_wg takes an op tc_decode_ok accepted. DSRT_CUDA_MLA_MMA_SYNC=1 keeps the
 * mma.sync kernel (the sm_80 path) on Hopper too. */
static bool wg_decode_ok(const dsrt_gpu_ctx *c)
{
    if (getenv(DSRT_GPU_ENV("MLA_MMA_SYNC"))) return false;
    return c->smem_optin >= MW_SMEM && gpu_use_wgmma(c);
}

/* k_mla_decode_ws, in clusters of two head groups when `pair` (the grid's y is even). */
static dsrt_status ws_decode_launch(const dsrt_gpu_ctx *c, dim3 grid, const tc_args &a, bool pair)
{
#ifdef DSRT_GPU_HIP
    (void)c, (void)grid, (void)a, (void)pair;
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "mla_decode: the warp-specialized kernel is CUDA sm_90a only");
#else
    if (!pair) {
        DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_decode_ws<1>, MS_SMEM, "mla_decode"));
        k_mla_decode_ws<1><<<grid, 384, MS_SMEM, gpu_stream(c)>>>(a);
        GPU_CHECK_LAUNCH("mla_decode", "k_mla_decode_ws<1>");
        return DSRT_OK;
    }
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_decode_ws<2>, MS_SMEM, "mla_decode"));
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute at[1];
    memset(&cfg, 0, sizeof cfg);
    memset(at, 0, sizeof at);
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 1;
    at[0].val.clusterDim.y = 2;
    at[0].val.clusterDim.z = 1;
    cfg.gridDim = grid;
    cfg.blockDim = dim3(384);
    cfg.dynamicSmemBytes = MS_SMEM;
    cfg.stream = gpu_stream(c);
    cfg.attrs = at;
    cfg.numAttrs = 1;
    (void)cudaLaunchKernelEx(&cfg, k_mla_decode_ws<2>, a); /* an error is left for GPU_CHECK_LAUNCH */
    GPU_CHECK_LAUNCH("mla_decode", "k_mla_decode_ws<2>");
    return DSRT_OK;
#endif
}

extern "C" bool dsrt_gpu_wgmma_image(void)
{
#ifdef DSRT_GPU_HIP
    return false;
#else
    struct cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, (const void *)k_mla_decode_wg) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return fa.ptxVersion >= 90; /* compute_90a; older PTX JIT-compiled for the device reports its own version */
#endif
}

extern "C" dsrt_status dsrt_gpu_mla_decode(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor ql = dsrt_gpu_tensor_of(&op->in[0]), qp = dsrt_gpu_tensor_of(&op->in[1]),
                    cache = dsrt_gpu_tensor_of(&op->in[2]), bt = dsrt_gpu_tensor_of(&op->in[3]),
                    rs = dsrt_gpu_tensor_of(&op->in[4]), kl = dsrt_gpu_tensor_of(&op->in[5]),
                    idx = dsrt_gpu_tensor_of(&op->in[6]), o = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = ql.shape[0], Hh = ql.shape[1], Dc = ql.shape[2], Dr = qp.shape[2];
    if (T == 0 || Hh == 0) return DSRT_OK;
    int32_t *pos, *cnt;
    DSRT_TRY(prep_positions(c, &idx, &kl, T, bt.shape[1] * (int64_t)op->p.page_size, "mla_decode", &pos, &cnt));
    if (tc_decode_ok(c, op, ql, qp, cache)) {
        tc_args a;
        decode_args(&a, ql, qp, cache, bt, rs, kl, idx, o, pos, cnt, op);
        a.q_async = ((uintptr_t)ql.p % 16 == 0 && (uintptr_t)qp.p % 16 == 0 && ql.stride[0] % 8 == 0 &&
                     ql.stride[1] % 8 == 0 && qp.stride[0] % 8 == 0 && qp.stride[1] % 8 == 0) ? 1 : 0;
        /* Positions a row can have: the indices width, or what its block table covers. */
        int64_t cap = idx.p ? idx.shape[1] : bt.shape[1] * (int64_t)op->p.page_size;
        int64_t groups = (Hh + MD_HEADS - 1) / MD_HEADS, base = T * groups;
        int64_t splits = 1;
        if (base < c->sm_count) splits = c->sm_count / base;
        /* down to one tile per split: a decode row at batch 1 (2048 selected positions) runs on 64
         * blocks, not 32 (session 6: 28.5 -> 22.0 us a layer, the merge of 32 splits 4.7 -> 7.0 us) */
        int64_t max_splits = (cap + MD_KEYS - 1) / MD_KEYS;
        if (splits > max_splits) splits = max_splits;
        if (splits < 1) splits = 1;
        if (splits > 64) splits = 64;
        a.chunk = ((cap + splits - 1) / splits + MD_KEYS - 1) / MD_KEYS * MD_KEYS;
        if (a.chunk < MD_KEYS) a.chunk = MD_KEYS;
        if (splits > 1) {
            DSRT_TRY(gpu_scratch(c, sizeof(float) * (size_t)(splits * T * Hh * MD_DC), (void **)&a.part_o));
            DSRT_TRY(gpu_scratch(c, sizeof(float2) * (size_t)(splits * T * Hh), (void **)&a.part_ml));
        }
        dim3 grid((unsigned)T, (unsigned)groups, (unsigned)splits);
        a.err = c->err;
        /* the warp-specialized kernel pays for its start (384 threads, barriers, a cluster) over a
         * few tiles: a batch-1 step (64 splits of one tile) ran 1.54 -> 1.60 ms on it */
        if (wg_decode_ok(c) && op->p.format == DSRT_CACHE_FP8 && c->smem_optin >= MS_SMEM &&
            (a.chunk >= 4 * MD_KEYS || getenv(DSRT_GPU_ENV("MLA_WS"))) && !getenv(DSRT_GPU_ENV("MLA_WG"))) {
            DSRT_TRY(ws_decode_launch(c, grid, a, groups % 2 == 0 && !getenv(DSRT_GPU_ENV("MLA_NO_CLUSTER"))));
        } else if (wg_decode_ok(c)) {
            DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_decode_wg, MW_SMEM, "mla_decode"));
            k_mla_decode_wg<<<grid, 256, MW_SMEM, gpu_stream(c)>>>(a);
            GPU_CHECK_LAUNCH("mla_decode", "k_mla_decode_wg");
        } else {
            size_t smem = op->p.format == DSRT_CACHE_FP8 ? MD_SMEM_FP8 : MD_SMEM_BF16;
            DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_decode_tc, smem, "mla_decode"));
            k_mla_decode_tc<<<grid, 256, smem, gpu_stream(c)>>>(a);
            GPU_CHECK_LAUNCH("mla_decode", "k_mla_decode_tc");
        }
        if (splits > 1) {
            k_mla_combine<<<(unsigned)(T * Hh), 128, 0, gpu_stream(c)>>>(a.part_o, a.part_ml, (int)splits, T, Hh, o);
            GPU_CHECK_LAUNCH("mla_decode", "k_mla_combine");
        }
        return DSRT_OK;
    }
    dec_args a;
    decode_args(&a, ql, qp, cache, bt, rs, kl, idx, o, pos, cnt, op);
    size_t smem = sizeof(float) * (size_t)(2 * Dc + Dr);
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_decode_simt, smem, "mla_decode"));
    if (Hh > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "mla_decode: too many heads");
    dim3 grid((unsigned)Hh, (unsigned)(T < 65535 ? T : 65535));
    k_mla_decode_simt<<<grid, 128, smem, gpu_stream(c)>>>(a);
    GPU_CHECK_LAUNCH("mla_decode", "k_mla_decode_simt");
    return DSRT_OK;
}

/* ---- prefill (expanded form), plain cores, three passes like the decode fallback ---- */
typedef struct pre_args {
    dsrt_gpu_tensor q, kn, kp, v, kv_start, kv_len, o;
    const int32_t *pos, *cnt;
    int64_t pos_k;
    float scale;
} pre_args;

GPU_DEV float pre_score(const pre_args &a, const float *q, int64_t r, int64_t h, int64_t Dn, int64_t Dr, bool bf16)
{
    float s = 0;
    for (int64_t i = gpu_lane(); i < Dn; i += GPU_WARP_SIZE)
        s += q[i] * gpu_ld(a.kn.p, a.kn.dtype, r * a.kn.stride[0] + h * a.kn.stride[1] + i);
    for (int64_t i = gpu_lane(); i < Dr; i += GPU_WARP_SIZE)
        s += q[Dn + i] * gpu_ld(a.kp.p, a.kp.dtype, r * a.kp.stride[0] + i);
    s = gpu_warp_sum(s);
    return bf16 ? gpu_round_bf16(gpu_round_bf16(s) * a.scale) : s * a.scale;
}

/* Key row of attended entry j of row t, -1 when outside the key tensor. */
GPU_DEV int64_t pre_row(const pre_args &a, int64_t t, int64_t j, int32_t base, int64_t L)
{
    int32_t p = a.pos ? a.pos[t * a.pos_k + j] : (int32_t)j;
    int64_t r = (int64_t)base + p;
    return (r >= 0 && r < L) ? r : -1;
}

static __global__ void k_mla_prefill_simt(pre_args a)
{
    extern __shared__ float psm[]; /* q [Dq], acc [Dv] */
    __shared__ float red[64];
    __shared__ float pv[32];
    __shared__ int64_t pr[32];
    int64_t Dq = a.q.shape[2], Dn = a.kn.shape[2], Dr = a.kp.shape[1], Dv = a.v.shape[2];
    int64_t T = a.q.shape[0], L = a.kn.shape[0];
    int64_t h = blockIdx.x;
    bool bf16 = a.q.dtype == DSRT_BF16;
    float *q = psm, *acc = psm + Dq;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        __syncthreads();
        for (int64_t i = threadIdx.x; i < Dq; i += blockDim.x)
            q[i] = gpu_ld(a.q.p, a.q.dtype, t * a.q.stride[0] + h * a.q.stride[1] + i);
        for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) acc[i] = 0;
        __syncthreads();
        int32_t base = gpu_i32(a.kv_start, t * a.kv_start.stride[0]);
        int32_t len = gpu_i32(a.kv_len, t * a.kv_len.stride[0]);
        int64_t n = a.pos ? a.cnt[t] : (len > 0 ? (len < L ? len : L) : 0);
        float m = NEG_INF;
        for (int64_t j = gpu_warp(); j < n; j += gpu_nwarps()) {
            int64_t r = pre_row(a, t, j, base, L);
            if (r < 0) continue;
            m = fmaxf(m, pre_score(a, q, r, h, Dn, Dr, bf16));
        }
        m = gpu_block_max(m, red);
        float sum = 0;
        if (m != NEG_INF)
            for (int64_t j = gpu_warp(); j < n; j += gpu_nwarps()) {
                int64_t r = pre_row(a, t, j, base, L);
                if (r < 0) continue;
                float s = pre_score(a, q, r, h, Dn, Dr, bf16);
                if (gpu_lane() == 0) sum += expf(s - m);
            }
        sum = gpu_block_sum(sum, red);
        if (m != NEG_INF)
            for (int64_t j0 = 0; j0 < n; j0 += 32) {
                for (int64_t i = gpu_warp(); i < 32; i += gpu_nwarps()) {
                    int64_t j = j0 + i, r = -1;
                    float pj = 0;
                    if (j < n) {
                        r = pre_row(a, t, j, base, L);
                        if (r >= 0) {
                            pj = expf(pre_score(a, q, r, h, Dn, Dr, bf16) - m) / sum;
                            if (bf16) pj = gpu_round_bf16(pj);
                        }
                    }
                    if (gpu_lane() == 0) {
                        pv[i] = pj;
                        pr[i] = r;
                    }
                }
                __syncthreads();
                for (int64_t d = threadIdx.x; d < Dv; d += blockDim.x) {
                    float v = acc[d];
                    for (int i = 0; i < 32; i++)
                        if (pr[i] >= 0) v += pv[i] * gpu_ld(a.v.p, a.v.dtype, pr[i] * a.v.stride[0] + h * a.v.stride[1] + d);
                    acc[d] = v;
                }
                __syncthreads();
            }
        for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x)
            gpu_st(a.o.p, a.o.dtype, t * a.o.stride[0] + h * a.o.stride[1] + i, acc[i]);
    }
}

extern "C" dsrt_status dsrt_gpu_mla_prefill(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    pre_args a;
    memset(&a, 0, sizeof a);
    a.q = dsrt_gpu_tensor_of(&op->in[0]);
    a.kn = dsrt_gpu_tensor_of(&op->in[1]);
    a.kp = dsrt_gpu_tensor_of(&op->in[2]);
    a.v = dsrt_gpu_tensor_of(&op->in[3]);
    a.kv_start = dsrt_gpu_tensor_of(&op->in[4]);
    a.kv_len = dsrt_gpu_tensor_of(&op->in[5]);
    dsrt_gpu_tensor idx = dsrt_gpu_tensor_of(&op->in[6]);
    a.o = dsrt_gpu_tensor_of(&op->out[0]);
    a.scale = op->p.scale;
    int64_t T = a.q.shape[0], Hh = a.q.shape[1];
    if (T == 0 || Hh == 0) return DSRT_OK;
    int32_t *pos, *cnt;
    DSRT_TRY(prep_positions(c, &idx, &a.kv_len, T, a.kn.shape[0], "mla_prefill", &pos, &cnt));
    a.pos = pos;
    a.cnt = cnt;
    a.pos_k = idx.p ? idx.shape[1] : 0;
    size_t smem = sizeof(float) * (size_t)(a.q.shape[2] + a.v.shape[2]);
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_mla_prefill_simt, smem, "mla_prefill"));
    if (Hh > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "mla_prefill: too many heads");
    dim3 grid((unsigned)Hh, (unsigned)(T < 65535 ? T : 65535));
    k_mla_prefill_simt<<<grid, 128, smem, gpu_stream(c)>>>(a);
    GPU_CHECK_LAUNCH("mla_prefill", "k_mla_prefill_simt");
    return DSRT_OK;
}
