/* GPU kernels for the linear ops: a plain-core GEMM that serves every dtype combination (and is the
 * portable path), the official FP8 block-scaled GEMM on tensor cores (dense and grouped: 128-row tiles,
 * and an 8/16-row form that streams the weights for decode), and the
 * per-head product of the absorbed MLA. The vendor BLAS (cuBLASLt) handles the common dense cases;
 * the backend chooses (backends/cuda/cuda_linear.c). */
#include "gpu_common.cuh"
#include "gpu_mma.cuh"

/* ---- group schedule: which (group, row range) each block of a grouped GEMM takes ---- */

/* sched[0] = number of tiles; then (g, m0, m1) per tile. Offsets that are not non-decreasing within
 * 0..R set DSRT_GPU_ERR_GROUP_OFFSETS and schedule nothing (the CPU reference fails the op). */
static __global__ void k_group_schedule(dsrt_gpu_tensor off, int G, int64_t R, int bm, int *sched, unsigned *err)
{
    __shared__ int scan[64];
    __shared__ int bad;
    int tid = threadIdx.x, base = 0;
    gpu_grid_release();
    if (tid == 0) bad = 0;
    __syncthreads();
    for (int g = tid; g <= G; g += blockDim.x) {
        int64_t o = gpu_i32(off, g * off.stride[0]);
        int64_t prev = g > 0 ? gpu_i32(off, (g - 1) * off.stride[0]) : 0;
        if (o < 0 || o > R || o < prev) bad = 1;
    }
    __syncthreads();
    if (bad) {
        if (tid == 0) {
            sched[0] = 0;
            gpu_error_flag(err, (unsigned)DSRT_GPU_ERR_GROUP_OFFSETS);
        }
        return;
    }
    for (int g0 = 0; g0 < G; g0 += blockDim.x) {
        int g = g0 + tid, tiles = 0;
        int r0 = 0, r1 = 0;
        if (g < G) {
            r0 = gpu_i32(off, g * off.stride[0]);
            r1 = gpu_i32(off, (g + 1) * off.stride[0]);
            tiles = (r1 - r0 + bm - 1) / bm;
        }
        int total, at = base + gpu_block_scan(tiles, scan, &total);
        for (int i = 0; i < tiles; i++) {
            int m0 = r0 + i * bm, m1 = m0 + bm < r1 ? m0 + bm : r1;
            sched[1 + 3 * (at + i)] = g;
            sched[2 + 3 * (at + i)] = m0;
            sched[3 + 3 * (at + i)] = m1;
        }
        base += total;
    }
    if (tid == 0) sched[0] = base;
}

/* Builds the schedule in scratch; *max_tiles is the grid size that covers any offsets. */
static dsrt_status group_schedule(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *off, int G, int64_t R, int bm,
                                  int **sched, unsigned *max_tiles)
{
    int64_t mt = (R + bm - 1) / bm + (G < R ? G : R); /* each non-empty group adds at most one partial tile */
    if (mt > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "linear_grouped: %lld row tiles exceed the grid", (long long)mt);
    DSRT_TRY(gpu_scratch(c, sizeof(int) * (size_t)(1 + 3 * mt), (void **)sched));
    k_group_schedule<<<1, 1024, 0, gpu_stream(c)>>>(*off, G, R, bm, *sched, c->err);
    GPU_CHECK_LAUNCH("linear_grouped", "k_group_schedule");
    *max_tiles = (unsigned)(mt < 1 ? 1 : mt);
    return DSRT_OK;
}

/* The (group, row range) of schedule tile idx; false past the tiles the schedule made. */
GPU_DEV bool sched_tile(const int *sched, int idx, int64_t *grp, int64_t *m0, int64_t *m1)
{
    if (idx >= sched[0]) return false;
    *grp = sched[1 + 3 * idx];
    *m0 = sched[2 + 3 * idx];
    *m1 = sched[3 + 3 * idx];
    return true;
}

/* ---- plain-core GEMM: C[b][m][n] = alpha * sum_k A[b][m][k] B[b][n][k], fp32 products ---- */

typedef struct gemm_args {
    const char *a;
    int a_dt;
    int64_t a_rs, a_bs;    /* element (b, m, k) at b*a_bs + m*a_rs + k */
    const float *a_sc;     /* fp8 mode: scale of (m, kb) at m*a_sc_rs + kb */
    int64_t a_sc_rs;
    const char *b;
    int b_dt;
    int64_t b_ns, b_ks, b_bs; /* element (b, n, k) */
    dsrt_gpu_tensor bt;    /* B's scales */
    int b_scaled;          /* dequantize B elements with their scales */
    char *c;
    int c_dt;
    int64_t c_rs, c_bs;
    int64_t M, N, K;
    float alpha;
    int fp8;               /* A holds e4m3 codes; promote every 128-wide K block with sa*sb */
    const int *sched;      /* grouped rows, or NULL */
} gemm_args;

#define SG_M 64
#define SG_N 64
#define SG_K 16

static __global__ void __launch_bounds__(256) k_gemm_simt(gemm_args g)
{
    __shared__ float As[SG_K][SG_M + 1];
    __shared__ float Bs[SG_K][SG_N + 1];
    int64_t grp, m0, m1;
    if (g.sched) {
        if (!sched_tile(g.sched, (int)blockIdx.y, &grp, &m0, &m1)) return;
    } else {
        grp = blockIdx.z;
        m0 = (int64_t)blockIdx.y * SG_M;
        m1 = m0 + SG_M < g.M ? m0 + SG_M : g.M;
    }
    int64_t n0 = (int64_t)blockIdx.x * SG_N;
    int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4], part[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = part[i][j] = 0;
    int64_t aoff = g.sched ? 0 : grp * g.a_bs; /* head_linear: head grp of x */
    for (int64_t k0 = 0; k0 < g.K; k0 += SG_K) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int idx = tid + 256 * i, r = idx >> 4, kk = idx & 15;
            int64_t m = m0 + r, n = n0 + r, k = k0 + kk;
            float av = 0, bv = 0;
            if (m < m1 && k < g.K) {
                if (g.fp8) av = gpu_e4m3_to_f32(((const uint8_t *)g.a)[m * g.a_rs + k]);
                else av = gpu_ld(g.a, g.a_dt, aoff + m * g.a_rs + k);
            }
            if (n < g.N && k < g.K) {
                bv = gpu_ld(g.b, g.b_dt, grp * g.b_bs + n * g.b_ns + k * g.b_ks);
                if (g.b_scaled) bv *= gpu_block_scale(g.bt, grp, n, k);
            }
            As[kk][r] = av;
            Bs[kk][r] = bv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SG_K; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) part[i][j] += a[i] * b[j];
        }
        __syncthreads();
        int64_t kend = k0 + SG_K;
        if (!g.fp8) continue;
        if (kend % 128 != 0 && kend < g.K) continue;
        int64_t kb = k0 / 128;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int64_t m = m0 + ty + 16 * i;
            float sa = m < m1 ? g.a_sc[m * g.a_sc_rs + kb] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int64_t n = n0 + tx + 16 * j;
                float sb = n < g.N ? gpu_block_scale(g.bt, grp, n, kb * 128) : 0.0f;
                acc[i][j] += part[i][j] * (sa * sb);
                part[i][j] = 0;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int64_t m = m0 + ty + 16 * i;
        if (m >= m1) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t n = n0 + tx + 16 * j;
            if (n >= g.N) continue;
            float v = g.fp8 ? acc[i][j] : part[i][j];
            gpu_st(g.c, g.c_dt, grp * g.c_bs + m * g.c_rs + n, g.alpha * v);
        }
    }
}

static dsrt_status gemm_launch(const dsrt_gpu_ctx *c, gemm_args *g, unsigned tiles_y, unsigned batch, const char *op)
{
    if (g->N == 0 || tiles_y == 0 || batch == 0) return DSRT_OK;
    if (batch > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: batch %u exceeds the grid", op, batch);
    dim3 grid(gpu_blocks(g->N, SG_N), tiles_y, batch);
    k_gemm_simt<<<grid, 256, 0, gpu_stream(c)>>>(*g);
    GPU_CHECK_LAUNCH(op, "k_gemm_simt");
    return DSRT_OK;
}

extern "C" dsrt_status dsrt_gpu_linear_simt(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    bool grouped = op->kind == DSRT_OP_LINEAR_GROUPED;
    const char *name = dsrt_op_name(op->kind);
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(&op->in[1]),
                    y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = x.shape[0], K = x.shape[1], N = w.shape[w.ndim - 2];
    if (M == 0 || N == 0) return DSRT_OK;
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.a = x.p;
    g.a_dt = x.dtype;
    g.a_rs = x.stride[0];
    g.b = w.p;
    g.b_dt = w.dtype;
    g.b_ns = w.stride[w.ndim - 2];
    g.b_ks = 1;
    g.b_bs = grouped ? w.stride[0] : 0;
    g.bt = w;
    g.c = y.p;
    g.c_dt = y.dtype;
    g.c_rs = y.stride[0];
    g.M = M;
    g.N = N;
    g.K = K;
    g.alpha = op->p.alpha;
    g.fp8 = op->p.act_quant ? 1 : 0;
    g.b_scaled = (!op->p.act_quant && w.sp) ? 1 : 0;
    if (g.fp8) {
        int64_t nkb = K / 128;
        uint8_t *q;
        float *qs;
        DSRT_TRY(gpu_scratch(c, (size_t)(M * K), (void **)&q));
        DSRT_TRY(gpu_scratch(c, sizeof(float) * (size_t)(M * nkb), (void **)&qs));
        DSRT_TRY(dsrt_gpu_quantize_act(c, &x, op->p.scale_pow2, q, qs, nkb, 1));
        g.a = (const char *)q;
        g.a_rs = K;
        g.a_sc = qs;
        g.a_sc_rs = nkb;
    }
    if (grouped) {
        dsrt_gpu_tensor off = dsrt_gpu_tensor_of(&op->in[2]);
        int *sched;
        unsigned tiles;
        DSRT_TRY(group_schedule(c, &off, (int)w.shape[0], M, SG_M, &sched, &tiles));
        g.sched = sched;
        return gemm_launch(c, &g, tiles, 1, name);
    }
    return gemm_launch(c, &g, gpu_blocks(M, SG_M), 1, name);
}

extern "C" dsrt_status dsrt_gpu_head_linear(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(&op->in[1]),
                    y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = x.shape[0], Hh = x.shape[1], K = x.shape[2], N = y.shape[2];
    if (T == 0 || Hh == 0) return DSRT_OK;
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.a = x.p;
    g.a_dt = x.dtype;
    g.a_rs = x.stride[0];
    g.a_bs = x.stride[1];
    g.b = w.p;
    g.b_dt = w.dtype;
    g.b_bs = w.stride[0];
    if (op->p.transpose_w) { /* W[h] is [K, N] */
        g.b_ns = 1;
        g.b_ks = w.stride[1];
    } else {
        g.b_ns = w.stride[1];
        g.b_ks = 1;
    }
    g.c = y.p;
    g.c_dt = y.dtype;
    g.c_rs = y.stride[0];
    g.c_bs = y.stride[1];
    g.M = T;
    g.N = N;
    g.K = K;
    g.alpha = 1.0f;
    if (g.N == 0) return DSRT_OK;
    if (Hh > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "head_linear: %lld heads exceed the grid", (long long)Hh);
    dim3 grid(gpu_blocks(N, SG_N), gpu_blocks(T, SG_M), (unsigned)Hh);
    k_gemm_simt<<<grid, 256, 0, gpu_stream(c)>>>(g);
    GPU_CHECK_LAUNCH("head_linear", "k_gemm_simt");
    return DSRT_OK;
}

/* ---- FP8 block-scaled GEMM on tensor cores ----
 * Block tile 128x128, K step 128 (one scale block), 8 warps as 2 (M) x 4 (N), each 64x32. Both
 * operands arrive as e4m3 bytes through cp.async into a 3-stage ring; rows are 128 bytes with their
 * 32-byte segments XOR-swizzled by (row & 3) so that the 8-byte fragment loads of a warp hit 32
 * different banks. Each K block accumulates in `part`, then is promoted into `acc` with
 * sa(m) * sb(n) (DeepSeek's 128-wide promotion; exact products, fp32 sums). Each fragment word is
 * converted to f16 once (the hardware e4m3x2 conversion on sm_89+, bit moves on sm_80) and fed to
 * f16 mma. */

#define FM_BM 128
#define FM_BN 128
#define FM_BK 128
#define FM_STAGES 3
#define FM_SMEM (FM_STAGES * (FM_BM + FM_BN) * FM_BK)

typedef struct fp8_args {
    const uint8_t *q; /* [M][K] */
    const float *qs;  /* [M][nkb] */
    int64_t M, K, N, nkb;
    dsrt_gpu_tensor w;
    int64_t w_rs, w_bs; /* weight row and group strides (bytes) */
    dsrt_gpu_tensor y;
    float alpha;
    const int *sched;
    int64_t kb_per; /* K blocks per split (blockIdx.z) */
    float *part;    /* split-K: f32 partial sums [splits][M][N], summed by k_split_reduce */
    int early_fetch; /* the GEMV may fetch weights before gpu_grid_wait (params_settled) */
    int ws_rows;     /* the GEMV's weight-scale rows per 16-row block: 1 or 16 */
    int tile_first;  /* the GEMV's grid: x the token tiles, y the weight blocks (see fp8_gemv) */
    int row_groups;  /* the GEMV's 16-row groups a block takes one after another */
} fp8_args;

#ifdef DSRT_GPU_HAVE_MMA
/* Four e4m3 (bytes 0..3 of w) as two f16x2: bytes 0,1 -> lo, bytes 2,3 -> hi. NATIVE (sm_89+): the
 * hardware conversion, exact; else bit moves that scale by 2^-8 (DSRT_FP8_F16_UNSCALE undoes two). */
template <bool NATIVE> GPU_DEV void fp8_cvt(uint32_t w, uint32_t &lo, uint32_t &hi)
{
    if (NATIVE) {
#if __CUDA_ARCH__ >= 890
        asm("{\n.reg .b16 l, h;\nmov.b32 {l, h}, %2;\ncvt.rn.f16x2.e4m3x2 %0, l;\ncvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
            : "=r"(lo), "=r"(hi)
            : "r"(w));
#endif
    } else {
        lo = gpu_e4m3x2_lo_f16(w);
        hi = gpu_e4m3x2_hi_f16(w);
    }
}
#endif

#ifdef DSRT_GPU_HAVE_MMA
GPU_DEV int fm_seg(int row, int seg) { return seg ^ (row & 3); }

GPU_DEV void fm_load_stage(const fp8_args &a, uint8_t *As, uint8_t *Bs, int64_t grp, int64_t m0, int64_t m1,
                           int64_t n0, int64_t kb)
{
    int tid = threadIdx.x;
    const uint8_t *wb = (const uint8_t *)a.w.p + grp * a.w_bs;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int id = tid + 256 * i, row = id >> 3, ch = id & 7;
        int pch = fm_seg(row, ch >> 1) * 2 + (ch & 1);
        int64_t m = m0 + row, n = n0 + row;
        const uint8_t *sa = a.q + (m < m1 ? m : m0) * a.K + kb * FM_BK + ch * 16;
        gpu_cp_async16(As + row * FM_BK + pch * 16, sa, m < m1 ? 16 : 0);
        const uint8_t *sb = wb + (n < a.N ? n : n0) * a.w_rs + kb * FM_BK + ch * 16;
        gpu_cp_async16(Bs + row * FM_BK + pch * 16, sb, n < a.N ? 16 : 0);
    }
}
#endif

template <bool NATIVE>
static __global__ void __launch_bounds__(256, 1) k_fp8_gemm(fp8_args a)
{
#ifdef DSRT_GPU_HAVE_MMA
#if __CUDA_ARCH__ < 890
    if (NATIVE) return; /* never launched: the host picks the f16 form below sm_89 */
#endif
    extern __shared__ __align__(128) uint8_t fm_smem[];
    __shared__ int64_t srow[FM_BN]; /* each tile column's row of weight scales (gpu_scale_row) */
    int64_t grp, m0, m1;
    if (a.sched) {
        if (!sched_tile(a.sched, (int)blockIdx.y, &grp, &m0, &m1)) return;
    } else {
        grp = 0;
        m0 = (int64_t)blockIdx.y * FM_BM;
        m1 = m0 + FM_BM < a.M ? m0 + FM_BM : a.M;
    }
    int64_t n0 = (int64_t)blockIdx.x * FM_BN;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, cq = lane % 4;
    int wm = warp / 4, wn = warp % 4;
    for (int i = threadIdx.x; i < FM_BN; i += blockDim.x) srow[i] = gpu_scale_row(a.w, grp, n0 + i);
    float acc[4][4][4], part[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = part[i][j][e] = 0;

    int64_t nkb = a.nkb;
    int64_t kb0 = (int64_t)blockIdx.z * a.kb_per, kb1 = kb0 + a.kb_per < nkb ? kb0 + a.kb_per : nkb;
    for (int s = 0; s < FM_STAGES - 1; s++) {
        if (kb0 + s < kb1)
            fm_load_stage(a, fm_smem + s * (FM_BM + FM_BN) * FM_BK, fm_smem + s * (FM_BM + FM_BN) * FM_BK + FM_BM * FM_BK,
                          grp, m0, m1, n0, kb0 + s);
        gpu_cp_async_commit();
    }
    for (int64_t kb = kb0; kb < kb1; kb++) {
        gpu_cp_async_wait<FM_STAGES - 2>();
        __syncthreads();
        int64_t nk = kb + FM_STAGES - 1;
        if (nk < kb1) {
            int st = (int)((nk - kb0) % FM_STAGES);
            fm_load_stage(a, fm_smem + st * (FM_BM + FM_BN) * FM_BK,
                          fm_smem + st * (FM_BM + FM_BN) * FM_BK + FM_BM * FM_BK, grp, m0, m1, n0, nk);
        }
        gpu_cp_async_commit();
        const uint8_t *As = fm_smem + ((kb - kb0) % FM_STAGES) * (FM_BM + FM_BN) * FM_BK;
        const uint8_t *Bs = As + FM_BM * FM_BK;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint2 ar[4][2], br[4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                int r0 = wm * 64 + mt * 16 + g, r1 = r0 + 8;
                ar[mt][0] = *(const uint2 *)(As + r0 * FM_BK + fm_seg(r0, j) * 32 + cq * 8);
                ar[mt][1] = *(const uint2 *)(As + r1 * FM_BK + fm_seg(r1, j) * 32 + cq * 8);
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                int r = wn * 32 + nt * 8 + g;
                br[nt] = *(const uint2 *)(Bs + r * FM_BK + fm_seg(r, j) * 32 + cq * 8);
            }
            /* each operand word converted once, then f16 mma (Hopper has no e4m3 mma.sync: ptxas
             * expanded one into conversions of both operands for every product, 4x the work) */
#pragma unroll
            for (int h = 0; h < 2; h++) {
                uint32_t af[4][4], bf[4][2];
#pragma unroll
                for (int mt = 0; mt < 4; mt++) {
                    fp8_cvt<NATIVE>(h ? ar[mt][0].y : ar[mt][0].x, af[mt][0], af[mt][2]);
                    fp8_cvt<NATIVE>(h ? ar[mt][1].y : ar[mt][1].x, af[mt][1], af[mt][3]);
                }
#pragma unroll
                for (int nt = 0; nt < 4; nt++) fp8_cvt<NATIVE>(h ? br[nt].y : br[nt].x, bf[nt][0], bf[nt][1]);
#pragma unroll
                for (int mt = 0; mt < 4; mt++)
#pragma unroll
                    for (int nt = 0; nt < 4; nt++) gpu_mma_f16(part[mt][nt], af[mt], bf[nt]);
            }
        }
        /* promote this K block: acc += part * (sa * sb) */
        float unscale = NATIVE ? 1.0f : DSRT_FP8_F16_UNSCALE;
        float sb[4][2];
        int64_t kc = gpu_scale_kcol(a.w, kb);
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int i = wn * 32 + nt * 8 + 2 * cq + e;
                sb[nt][e] = n0 + i < a.N ? gpu_scale_at(a.w, srow[i] + kc) * unscale : 0.0f;
            }
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            int64_t r0 = m0 + wm * 64 + mt * 16 + g, r1 = r0 + 8;
            float sa0 = r0 < m1 ? a.qs[r0 * nkb + kb] : 0.0f, sa1 = r1 < m1 ? a.qs[r1 * nkb + kb] : 0.0f;
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                acc[mt][nt][0] += part[mt][nt][0] * (sa0 * sb[nt][0]);
                acc[mt][nt][1] += part[mt][nt][1] * (sa0 * sb[nt][1]);
                acc[mt][nt][2] += part[mt][nt][2] * (sa1 * sb[nt][0]);
                acc[mt][nt][3] += part[mt][nt][3] * (sa1 * sb[nt][1]);
#pragma unroll
                for (int e = 0; e < 4; e++) part[mt][nt][e] = 0;
            }
        }
    }
    gpu_cp_async_wait<0>();
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
        int64_t r0 = m0 + wm * 64 + mt * 16 + g;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            int64_t n = n0 + wn * 32 + nt * 8 + 2 * cq;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int64_t r = r0 + (e >= 2 ? 8 : 0), col = n + (e & 1);
                if (r >= m1 || col >= a.N) continue;
                if (a.part) a.part[((int64_t)blockIdx.z * a.M + r) * a.N + col] = acc[mt][nt][e];
                else gpu_st(a.y.p, a.y.dtype, r * a.y.stride[0] + col, a.alpha * acc[mt][nt][e]);
            }
        }
    }
#endif
}

/* ---- FP8 block-scaled GEMM for few rows (decode) ----
 * The 128x128 tiles above do 128 rows of tensor work per weight byte, so at M = 1 they are bound by the
 * tensor rate, not by memory. Here the weights are the mma's A operand (16 weight rows) and the
 * activations its B operand (8 tokens; 16 as two B fragments), so each weight byte is converted and
 * multiplied once; a block takes 16 weight rows and its warps split the K blocks (warp w takes
 * kb = w, w + warps, ...). Hopper has no FP8 mma.sync (ptxas would expand one into conversions and f16
 * mma), so operands are converted to f16 explicitly: sm_89+ by the hardware e4m3x2 conversion, exact;
 * sm_80 by bit moves that scale by 2^-8 (undone with DSRT_FP8_F16_UNSCALE).
 * Lane (g, c) takes bytes c*16 .. c*16+15 and 64+c*16 .. 64+c*16+15 of a 128-byte K block, of weight
 * rows g and g+8 and of token g, so loads fill whole 32-byte sectors; mma step s (16 K positions) uses
 * the lane's 4-byte word s of those 32 bytes, the same permutation for both operands, which leaves each
 * block's dot products unchanged. Each block is promoted with sa * sb in K order within a warp, and the
 * warps' sums are added in warp order at the end.
 * Nothing in the K loop waits on global memory but the ring: weights and activations stream through
 * it (cp.async, FS_STAGES K blocks per warp in flight; only the lane that fetched a piece reads it
 * back; lanes without a token get zeros), and the block's weight and activation scales are copied to
 * shared tables first (a scale read from global memory in the loop put an L2 round trip into every
 * iteration). With early launch the first weight blocks and the weight scales are read before
 * waiting for the kernels this one follows, when the backend knows that none of those kernels writes
 * the weight (dsrt_gpu_ctx.params_settled). */

#define FS_ROWS 16   /* weight rows per block */
#define FS_WARPS 8   /* warps of a block */
#define FS_STAGES 3  /* K blocks per warp in flight (2 and 4 measured slower on the decode step) */
#define FS_PIECES(T) (4 + 2 * (T)) /* 16-byte ring pieces per lane and stage: weights, then tokens */

/* Shared memory of a k_fp8_gemv block: the ring, the weight-scale table [group][kb][wrows], the activation-
 * scale table [kb][8T]. */
static size_t fs_smem_bytes(int T, unsigned threads, int64_t kb_per, int wrows, int groups)
{
    return sizeof(uint4) * FS_PIECES(T) * FS_STAGES * threads + sizeof(float) * (size_t)kb_per * (groups * wrows + 8 * T);
}

#ifdef DSRT_GPU_HAVE_MMA

/* part += W(rows g, g+8: words wg, w8) x X(token g: word x) over one mma step of 16 K positions. */
template <bool NATIVE> GPU_DEV void fs_step(float *part, uint32_t wg, uint32_t w8, uint32_t x)
{
    uint32_t a[4], b[2];
    fp8_cvt<NATIVE>(wg, a[0], a[2]);
    fp8_cvt<NATIVE>(w8, a[1], a[3]);
    fp8_cvt<NATIVE>(x, b[0], b[1]);
    gpu_mma_f16(part, a, b);
}

GPU_DEV uint32_t fs_word(const uint4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

/* Lane's four 16-byte weight pieces of a K block (rows g and g+8) into ring slot `slot`. */
template <int T>
GPU_DEV void fs_fetch_w(uint4 *mine, int slot, int nthr, const uint8_t *rg, const uint8_t *r8, bool ok)
{
    if (!ok) return;
    uint4 *d = mine + FS_PIECES(T) * slot * nthr;
    gpu_cp_async16(d, rg, 16);
    gpu_cp_async16(d + nthr, rg + 64, 16);
    gpu_cp_async16(d + 2 * nthr, r8, 16);
    gpu_cp_async16(d + 3 * nthr, r8 + 64, 16);
}

/* Lane's two 16-byte pieces of token g of each token group (zeros for absent tokens), then the
 * commit: one group per slot, empty or not, so the wait counts stay fixed. */
template <int T>
GPU_DEV void fs_fetch_x(uint4 *mine, int slot, int nthr, const uint8_t *const *xr, const bool *hx, int64_t off, bool ok)
{
    if (ok) {
        uint4 *d = mine + (FS_PIECES(T) * slot + 4) * nthr;
#pragma unroll
        for (int t = 0; t < T; t++) {
            gpu_cp_async16(d + 2 * t * nthr, xr[t] + off, hx[t] ? 16 : 0);
            gpu_cp_async16(d + (2 * t + 1) * nthr, xr[t] + off + 64, hx[t] ? 16 : 0);
        }
    }
    gpu_cp_async_commit();
}

/* A lane's two weight rows g and g + 8 of row group r (16 rows from nb + 16 r); a row past N reads
 * row nb (always present), and its outputs are not stored. */
GPU_DEV void fs_rows(const fp8_args &a, const uint8_t *wb, int64_t nb, int r, int g, const uint8_t **rg, const uint8_t **r8)
{
    int64_t ng = nb + 16 * r + g, n8 = ng + 8;
    *rg = wb + (ng < a.N ? ng : nb) * a.w_rs;
    *r8 = wb + (n8 < a.N ? n8 : nb) * a.w_rs;
}
#endif

/* T token groups of 8 (T = 2 for dense M of 9..64). A block takes a.row_groups groups of 16 weight
 * rows one after another (short K: fewer, longer blocks), its warps' rings running on across them. */
template <bool NATIVE, int T>
static __global__ void __launch_bounds__(256, 2) k_fp8_gemv(fp8_args a)
{
#ifdef DSRT_GPU_HAVE_MMA
#if __CUDA_ARCH__ < 890
    if (NATIVE) return;
#endif
    __shared__ float red[FS_WARPS][32][4 * T];
    extern __shared__ uint4 fs_ring[]; /* [FS_STAGES][P][threads], then the scale tables */
    constexpr int P = FS_PIECES(T);
    int64_t grp = 0, m0, m1;
    if (a.sched) {
        gpu_grid_wait(); /* the schedule is an earlier kernel's output */
        if (!sched_tile(a.sched, (int)blockIdx.y, &grp, &m0, &m1)) return;
    } else {
        m0 = (int64_t)(a.tile_first ? blockIdx.x : blockIdx.y) * 8 * T;
        m1 = m0 + 8 * T < a.M ? m0 + 8 * T : a.M;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, cq = lane % 4, warps = blockDim.x / 32;
    int nthr = blockDim.x, tid = threadIdx.x, wrows = a.ws_rows, R = a.row_groups;
    int64_t nb = (int64_t)(a.tile_first ? blockIdx.y : blockIdx.x) * FS_ROWS * R, nkb = a.nkb;
    /* this block's K blocks: [kb0, kb1) of split blockIdx.z; warp w takes kb0 + w, + warps, ... */
    int64_t kb0 = (int64_t)blockIdx.z * a.kb_per, kb1 = kb0 + a.kb_per < nkb ? kb0 + a.kb_per : nkb;
    int kbn = (int)(kb1 - kb0);
    float *wsc = (float *)(fs_ring + P * FS_STAGES * nthr); /* [group][kb][wrows], unscale folded in */
    float *asc = wsc + (size_t)R * a.kb_per * wrows;         /* [kb][8T]: 0 past the tile */
    const uint8_t *wb = (const uint8_t *)a.w.p + grp * a.w_bs + cq * 16;
    uint4 *mine = fs_ring + tid;
    int its = kbn > warp ? (kbn - warp + warps - 1) / warps : 0; /* this warp's K blocks per row group */
    int items = its * R;                                        /* (row group, K block), group-major */
    float unscale = NATIVE ? 1.0f : DSRT_FP8_F16_UNSCALE;
    /* with settled weights (dsrt_gpu_ctx.params_settled) the first weight blocks and the weight
     * scales are read while the kernels before this one finish */
    bool pre = !a.sched && a.early_fetch;
    if (!a.sched && !pre) gpu_grid_wait();
#pragma unroll
    for (int s = 0; s < FS_STAGES; s++) {
        const uint8_t *rg = NULL, *r8 = NULL;
        int64_t off = 0;
        if (s < items) {
            fs_rows(a, wb, nb, s / its, g, &rg, &r8);
            off = (kb0 + warp + (int64_t)(s % its) * warps) * 128;
        }
        fs_fetch_w<T>(mine, s, nthr, rg + off, r8 + off, s < items);
    }
    for (int i = tid; i < R * kbn * wrows; i += nthr) {
        int r = i / (kbn * wrows), j = i / wrows % kbn, rr = i % wrows;
        int64_t n = nb + 16 * r + rr < a.N ? nb + 16 * r + rr : nb;
        wsc[(r * a.kb_per + j) * wrows + rr] = unscale * gpu_scale_at(a.w, gpu_scale_row(a.w, grp, n) + gpu_scale_kcol(a.w, kb0 + j));
    }
    if (pre) gpu_grid_wait();
    /* dependents launch once this kernel's wait is over, not before: released at the start, a chain
     * of small kernels let a large GEMV two or three kernels down sit resident on every SM while it
     * waited, and a second stream's kernels found no room */
    gpu_grid_release();
    for (int i = tid; i < kbn * 8 * T; i += nthr) {
        int j = i / (8 * T), r = i % (8 * T);
        asc[i] = m0 + r < m1 ? a.qs[(m0 + r) * nkb + kb0 + j] : 0.0f;
    }
    /* tokens: lane loads token m0 + 8t + g, and owns outputs for tokens m0 + 8t + 2cq, +1 */
    const uint8_t *xr[T];
    bool hx[T];
#pragma unroll
    for (int t = 0; t < T; t++) {
        int64_t r = m0 + 8 * t + g;
        hx[t] = r < m1;
        xr[t] = a.q + (hx[t] ? r : m0) * a.K + cq * 16;
    }
#pragma unroll
    for (int s = 0; s < FS_STAGES; s++)
        fs_fetch_x<T>(mine, s, nthr, xr, hx, s < items ? (kb0 + warp + (int64_t)(s % its) * warps) * 128 : 0, s < items);
    __syncthreads(); /* the scale tables */
    int rgw = wrows == 1 ? 0 : g, r8w = wrows == 1 ? 0 : g + 8;
    /* the item FS_STAGES ahead, refilled this iteration: its row group and K block, counted, not divided */
    int slot = 0, it = 0, nr = its ? FS_STAGES / its : 0, nj = its ? FS_STAGES % its : 0;
    for (int r = 0; r < R; r++) {
        float acc[T][4];
#pragma unroll
        for (int t = 0; t < T; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[t][e] = 0;
        for (int jj = 0; jj < its; jj++, it++) {
            gpu_cp_async_wait<FS_STAGES - 1>();
            const uint4 *d = mine + P * slot * nthr;
            int j = warp + jj * warps;
            uint4 wg0 = d[0], wg1 = d[nthr], w80 = d[2 * nthr], w81 = d[3 * nthr];
            uint4 xv[2 * T];
#pragma unroll
            for (int i = 0; i < 2 * T; i++) xv[i] = d[(4 + i) * nthr];
            asm volatile("" ::: "memory"); /* the slot is read before it is refilled */
            bool more = it + FS_STAGES < items;
            const uint8_t *rg = NULL, *r8 = NULL;
            int64_t off = 0;
            if (more) {
                fs_rows(a, wb, nb, nr, g, &rg, &r8);
                off = (kb0 + warp + (int64_t)nj * warps) * 128;
            }
            if (++nj == its) {
                nj = 0;
                nr++;
            }
            fs_fetch_w<T>(mine, slot, nthr, rg + off, r8 + off, more);
            fs_fetch_x<T>(mine, slot, nthr, xr, hx, off, more);
            slot = slot + 1 == FS_STAGES ? 0 : slot + 1;
            const float *ws = wsc + (r * a.kb_per + j) * wrows;
            float sbg = ws[rgw], sb8 = ws[r8w];
#pragma unroll
            for (int t = 0; t < T; t++) {
                float sa0 = asc[j * 8 * T + 8 * t + 2 * cq], sa1 = asc[j * 8 * T + 8 * t + 2 * cq + 1];
                float part[4] = {0, 0, 0, 0};
#pragma unroll
                for (int st = 0; st < 4; st++)
                    fs_step<NATIVE>(part, fs_word(wg0, st), fs_word(w80, st), fs_word(xv[2 * t], st));
#pragma unroll
                for (int st = 0; st < 4; st++)
                    fs_step<NATIVE>(part, fs_word(wg1, st), fs_word(w81, st), fs_word(xv[2 * t + 1], st));
                acc[t][0] += part[0] * (sbg * sa0);
                acc[t][1] += part[1] * (sbg * sa1);
                acc[t][2] += part[2] * (sb8 * sa0);
                acc[t][3] += part[3] * (sb8 * sa1);
            }
        }
        /* the warps' sums of row group r, added in warp order by warp 0 */
#pragma unroll
        for (int t = 0; t < T; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[warp][lane][4 * t + e] = acc[t][e];
        __syncthreads();
        if (warp == 0) {
            int64_t ng = nb + 16 * r + g, n8 = ng + 8;
#pragma unroll
            for (int i = 0; i < 4 * T; i++) {
                float v = red[0][lane][i];
                for (int w = 1; w < warps; w++) v += red[w][lane][i];
                int t = i / 4, e = i % 4;
                int64_t row = m0 + 8 * t + 2 * cq + (e & 1), col = e < 2 ? ng : n8;
                if (row >= m1 || col >= a.N) continue;
                if (a.part) a.part[((int64_t)blockIdx.z * a.M + row) * a.N + col] = v;
                else gpu_st(a.y.p, a.y.dtype, row * a.y.stride[0] + col, a.alpha * v);
            }
        }
        if (r + 1 < R) __syncthreads(); /* red is rewritten for the next group */
    }
#endif
}

static __global__ void k_split_reduce(const float *part, int splits, int64_t M, int64_t N, float alpha, dsrt_gpu_tensor y)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    gpu_grid_wait();
    gpu_grid_release();
    if (i >= M * N) return;
    float v = 0;
    for (int z = 0; z < splits; z++) v += part[z * M * N + i];
    int64_t m = i / N, n = i % N;
    gpu_st(y.p, y.dtype, m * y.stride[0] + n, alpha * v);
}

/* Launches k_fp8_gemv: blocks of 16 weight rows x 8 tokens (16 when a dense M needs them; a grouped
 * GEMM's tiles are 8 rows, the schedule splitting larger groups), up to 8 warps a block with at least
 * FS_STAGES K blocks each. */
static dsrt_status fp8_gemv(const dsrt_gpu_ctx *c, fp8_args *a, const dsrt_gpu_tensor *offsets, bool native,
                            const char *name)
{
    int t = !(offsets && offsets->p) && a->M > 8 ? 2 : 1;
    unsigned tiles = gpu_blocks(a->M, 8 * t);
    if (offsets && offsets->p) {
        int *sched;
        DSRT_TRY(group_schedule(c, offsets, (int)a->w.shape[0], a->M, 8 * t, &sched, &tiles));
        a->sched = sched;
    }
    if (tiles > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: %u row tiles exceed the grid", name, tiles);
    /* Narrow weights (the 576 x 7168 latent projection: 36 blocks) cannot fill the device: their K
     * blocks are split over up to 16 blocks (at least FS_WARPS K blocks each), and the splits'
     * f32 partial sums are added in split order by k_split_reduce. (Splitting wide weights too, to
     * shorten the last wave of o_proj's 448 blocks, was measured no faster.) */
    int64_t blocks = (int64_t)gpu_blocks(a->N, FS_ROWS) * tiles, splits = 1;
    a->kb_per = a->nkb;
    if (!a->sched && blocks < 2 * (int64_t)c->sm_count) {
        splits = (2 * (int64_t)c->sm_count + blocks - 1) / blocks;
        if (splits > a->nkb / FS_WARPS) splits = a->nkb / FS_WARPS;
        if (splits > 16) splits = 16;
        if (splits < 1) splits = 1;
        a->kb_per = (a->nkb + splits - 1) / splits;
        splits = (a->nkb + a->kb_per - 1) / a->kb_per;
    }
    if (splits > 1) DSRT_TRY(gpu_scratch(c, sizeof(float) * (size_t)(splits * a->M * a->N), (void **)&a->part));
    /* A grouped GEMM with short K (a MoE down projection: 16 K blocks, ~100k blocks of 32 KB at batch
     * 64) spends its time starting blocks and filling rings: a block then takes four row groups in
     * turn, its rings running on across them (the down projections 1.44 -> ~1.2 ms at batch 64; the
     * step 14.65 -> 13.92 ms). Dense short-K GEMVs: mixed at M = 1 (docs/cuda.md), one group. */
    a->row_groups = a->sched && a->nkb <= 16 && a->N >= 4 * FS_ROWS ? 4 : 1;
    unsigned wblocks = gpu_blocks(a->N, FS_ROWS * a->row_groups);
    dim3 grid(wblocks, tiles, (unsigned)splits);
    /* A dense M of several token tiles reads each weight block once per tile: with the tiles along x,
     * the blocks of one weight block start together and all but the first find it in L2 (M = 64,
     * 7168x16384: 190 -> 151 us). */
    a->tile_first = !a->sched && tiles > 1;
    if (a->tile_first) grid = dim3(tiles, wblocks, (unsigned)splits);
    /* enough K blocks per warp to fill its ring: short K gets fewer warps a block, so more blocks
     * (and their weight blocks in flight) fit on an SM */
    int64_t nw = a->kb_per / FS_STAGES;
    unsigned threads = 32 * (unsigned)(nw < 1 ? 1 : nw > FS_WARPS ? FS_WARPS : nw);
    /* one weight-scale row serves the block's 16 rows when the scale blocks are a multiple of 16 tall */
    a->ws_rows = a->w.sblock[0] % FS_ROWS == 0 ? 1 : FS_ROWS;
    size_t smem = fs_smem_bytes(t, threads, a->kb_per, a->ws_rows, a->row_groups);
    void (*k)(fp8_args) = native ? (t == 2 ? k_fp8_gemv<true, 2> : k_fp8_gemv<true, 1>)
                                 : (t == 2 ? k_fp8_gemv<false, 2> : k_fp8_gemv<false, 1>);
    DSRT_TRY(gpu_smem_limit(c, (const void *)k, smem, name));
    gpu_launch_early(c, k, grid, dim3(threads), smem, *a);
    GPU_CHECK_LAUNCH(name, "k_fp8_gemv");
    if (splits > 1) {
        int64_t total = a->M * a->N;
        gpu_launch_early(c, k_split_reduce, dim3(gpu_blocks(total, 256)), dim3(256), 0, (const float *)a->part,
                         (int)splits, a->M, a->N, a->alpha, a->y);
        GPU_CHECK_LAUNCH(name, "k_split_reduce");
    }
    return DSRT_OK;
}

extern "C" dsrt_status dsrt_gpu_fp8_gemm_mma(const dsrt_gpu_ctx *c, const uint8_t *q, const float *qs, int64_t M,
                                             int64_t K, const dsrt_gpu_tensor *w, const dsrt_gpu_tensor *offsets,
                                             float alpha, const dsrt_gpu_tensor *y)
{
    const char *name = offsets && offsets->p ? "linear_grouped" : "linear";
    if (!gpu_use_mma(c)) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: no tensor-core path on this device", name);
    fp8_args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.qs = qs;
    a.M = M;
    a.K = K;
    a.N = w->shape[w->ndim - 2];
    a.nkb = K / 128;
    a.w = *w;
    a.w_rs = w->stride[w->ndim - 2];
    a.w_bs = w->ndim == 3 ? w->stride[0] : 0;
    a.y = *y;
    a.alpha = alpha;
    a.early_fetch = c->params_settled;
    if (M == 0 || a.N == 0) return DSRT_OK;
    /* The hardware e4m3x2 conversion is in the sm_90a image only (sm_80 code and its PTX lack it). */
    bool native = c->cc_major == 9 && c->cc_minor == 0;
    const char *env = getenv(DSRT_GPU_ENV("FP8_MMA"));
    if (env && strcmp(env, "f16") == 0) native = false;
    /* Few rows (decode; MoE groups of a few rows each): the 16-row kernel, which streams the weights.
     * A dense M up to 64 takes it too, in tiles of 16 tokens (at 64 rows 1.1-1.6x faster than the
     * 128-row tiles on five of V3.2's six shapes; at 128 rows mixed, so those stay on the tiles). */
    int64_t G = offsets && offsets->p ? w->shape[0] : 1;
    const char *sk = getenv(DSRT_GPU_ENV("FP8_SKINNY"));
    bool skinny = offsets && offsets->p ? M <= 4 * G : M <= 64;
    if (sk && *sk) skinny = strcmp(sk, "0") != 0; /* DSRT_CUDA_FP8_SKINNY=0|1: never / always (tests) */
    if (skinny) return fp8_gemv(c, &a, offsets, native, name);
    unsigned tiles = gpu_blocks(M, FM_BM);
    if (offsets && offsets->p) {
        int *sched;
        DSRT_TRY(group_schedule(c, offsets, (int)w->shape[0], M, FM_BM, &sched, &tiles));
        a.sched = sched;
    }
    if (tiles > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: %u row tiles exceed the grid", name, tiles);
    /* Split K when the output tiles cannot fill the device (decode-sized M): partial sums per split,
     * added in split order by k_split_reduce. */
    int64_t splits = 1, ntn = gpu_blocks(a.N, FM_BN);
    a.kb_per = a.nkb;
    if (!a.sched && (int64_t)tiles * ntn < c->sm_count && a.nkb >= 4) {
        splits = (2 * c->sm_count + (int64_t)tiles * ntn - 1) / ((int64_t)tiles * ntn);
        if (splits > a.nkb / 2) splits = a.nkb / 2;
        if (splits > 16) splits = 16;
        if (splits < 1) splits = 1;
        a.kb_per = (a.nkb + splits - 1) / splits;
        splits = (a.nkb + a.kb_per - 1) / a.kb_per;
    }
    if (splits > 1) DSRT_TRY(gpu_scratch(c, sizeof(float) * (size_t)(splits * M * a.N), (void **)&a.part));
    dim3 grid(gpu_blocks(a.N, FM_BN), tiles, (unsigned)splits);
    if (native) {
        DSRT_TRY(gpu_smem_limit(c, (const void *)k_fp8_gemm<true>, FM_SMEM, name));
        k_fp8_gemm<true><<<grid, 256, FM_SMEM, gpu_stream(c)>>>(a);
    } else {
        DSRT_TRY(gpu_smem_limit(c, (const void *)k_fp8_gemm<false>, FM_SMEM, name));
        k_fp8_gemm<false><<<grid, 256, FM_SMEM, gpu_stream(c)>>>(a);
    }
    GPU_CHECK_LAUNCH(name, "k_fp8_gemm");
    if (splits > 1) {
        int64_t total = M * a.N;
        k_split_reduce<<<gpu_blocks(total, 256), 256, 0, gpu_stream(c)>>>(a.part, (int)splits, M, a.N, a.alpha, *y);
        GPU_CHECK_LAUNCH(name, "k_split_reduce");
    }
    return DSRT_OK;
}
