/* GPU kernels for MoE routing (noaux_tc, group-limited), token dispatch by expert and the weighted
 * combine. Selection follows the CPU reference exactly: comparisons with ties to the lower index,
 * NaN treated as -inf, the same accumulation order where it matters (combine by ascending id). */
#include "gpu_common.cuh"

#define NEG_INF (-__int_as_float(0x7f800000))

GPU_DEV float nan_low(float v) { return isnan(v) ? NEG_INF : v; }

/* (v, i) ranks before (w, j): larger value, ties to the lower index. */
GPU_DEV bool ranks_before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

/* Adds v to a running top two (a >= c), counting repeats: a second equal maximum is the second. */
GPU_DEV void top2_add(float v, float *a, float *c)
{
    if (v > *a) {
        *c = *a;
        *a = v;
    } else if (v > *c) {
        *c = v;
    }
}

/* Warp argmax of (v, i) pairs; every lane gets the winner. */
GPU_DEV void warp_argmax(float *v, int *i)
{
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) {
        float ov = gpu_shfl_xor(*v, m);
        int oi = gpu_shfl_xor_i(*i, m);
        if (ranks_before(ov, oi, *v, *i)) {
            *v = ov;
            *i = oi;
        }
    }
}

/* ---- gate: a wave per token ----
 * A block holds wpb tokens and their shared rows; its waves take the tokens in turn. The host sized
 * the block as wpb waves of the device's width: with the width the code was compiled for they are one
 * token per wave, otherwise some waves take two (or none), and every token is still done. Waves never
 * wait for each other (no block barriers). */
static __global__ void k_moe_gate(dsrt_gpu_tensor lg, dsrt_gpu_tensor bias, dsrt_gpu_tensor ids, dsrt_gpu_tensor wt,
                                  int k, int G, int topk_group, int softmax, int norm, float route_scale, int wpb)
{
    extern __shared__ float gsm[];
    int64_t T = lg.shape[0];
    int E = (int)lg.shape[1], per = E / G;
    int warp = gpu_warp(), lane = gpu_lane();
    for (int slot = warp; slot < wpb; slot += gpu_nwarps()) {
        int64_t t = (int64_t)blockIdx.x * wpb + slot;
        if (t >= T) break;
        float *s = gsm + (size_t)slot * (2 * E + 2 * G);
        float *choice = s + E, *gs = s + 2 * E, *gkept = gs + G;
        for (int i = lane; i < E; i += GPU_WARP_SIZE) s[i] = gpu_ld(lg.p, lg.dtype, t * lg.stride[0] + i);
        gpu_syncwarp();
        if (softmax) {
            float m = NEG_INF;
            for (int i = lane; i < E; i += GPU_WARP_SIZE) m = fmaxf(m, s[i]);
            m = gpu_warp_max(m);
            float sum = 0;
            for (int i = lane; i < E; i += GPU_WARP_SIZE) {
                s[i] = expf(s[i] - m);
                sum += s[i];
            }
            sum = gpu_warp_sum(sum);
            for (int i = lane; i < E; i += GPU_WARP_SIZE) s[i] /= sum;
        } else {
            for (int i = lane; i < E; i += GPU_WARP_SIZE) s[i] = 1.0f / (1.0f + expf(-s[i]));
        }
        for (int i = lane; i < E; i += GPU_WARP_SIZE) {
            float b = bias.p ? ((const float *)bias.p)[i * bias.stride[0]] : 0.0f;
            choice[i] = nan_low(s[i] + b);
        }
        for (int g = lane; g < G; g += GPU_WARP_SIZE) gkept[g] = G > 1 ? 0.0f : 1.0f;
        gpu_syncwarp();
        if (G > 1) {
            for (int g = 0; g < G; g++) {
                float a = NEG_INF, c = NEG_INF; /* top two of the group, counting repeats */
                for (int i = g * per + lane; i < (g + 1) * per; i += GPU_WARP_SIZE) top2_add(choice[i], &a, &c);
                for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) {
                    float oa = gpu_shfl_xor(a, m), oc = gpu_shfl_xor(c, m);
                    float na = fmaxf(a, oa), nc = fmaxf(fminf(a, oa), fmaxf(c, oc));
                    a = na;
                    c = nc;
                }
                if (lane == 0) gs[g] = (bias.p && per > 1) ? a + c : a;
            }
            gpu_syncwarp();
            for (int r = 0; r < topk_group; r++) {
                float bv = NEG_INF;
                int bi = 0x7fffffff;
                for (int g = lane; g < G; g += GPU_WARP_SIZE)
                    if (gkept[g] == 0.0f && ranks_before(nan_low(gs[g]), g, bv, bi)) {
                        bv = nan_low(gs[g]);
                        bi = g;
                    }
                warp_argmax(&bv, &bi);
                if (lane == 0 && bi < G) gkept[bi] = 1.0f;
                gpu_syncwarp();
            }
        }
        int32_t *io = (int32_t *)ids.p + t * ids.stride[0];
        float *wo = (float *)wt.p + t * wt.stride[0];
        float sum = 0;
        for (int j = 0; j < k; j++) {
            float bv = NEG_INF;
            int bi = 0x7fffffff;
            for (int i = lane; i < E; i += GPU_WARP_SIZE) {
                float v = choice[i];
                if (!isnan(v) && gkept[i / per] != 0.0f && ranks_before(v, i, bv, bi)) {
                    bv = v;
                    bi = i;
                }
            }
            warp_argmax(&bv, &bi);
            if (bi >= E) bi = 0; /* unreachable: validation guarantees k eligible experts */
            if (lane == 0) {
                choice[bi] = __int_as_float(0x7fc00000); /* taken */
                io[j] = bi;
                wo[j] = s[bi];
            }
            sum += s[bi];
            gpu_syncwarp();
        }
        if (lane == 0)
            for (int j = 0; j < k; j++) {
                float w = wo[j];
                if (norm) w /= sum;
                wo[j] = w * route_scale;
            }
    }
}

/* ---- gate: a block per token (E <= 1024) ----
 * A thread per expert. Where the wave form above runs k + topk_group rounds of wave argmax one after
 * the other (17 us a decode step's layer), every choice here is a rank: an expert (a group) is chosen
 * when fewer than k (topk_group) eligible ones rank before it, which picks the same set as the rounds
 * (the order is total: larger value, ties to the lower index). Weights are summed in rank order, the
 * order in which the rounds pick them. */
static __global__ void k_moe_gate_rank(dsrt_gpu_tensor lg, dsrt_gpu_tensor bias, dsrt_gpu_tensor ids,
                                       dsrt_gpu_tensor wt, int k, int G, int topk_group, int softmax, int norm,
                                       float route_scale)
{
    extern __shared__ float gsm[]; /* s[E], elig[E], sel_w[k], gs[G], then sel_i[k], kept[G] as ints */
    __shared__ float red[32];
    int64_t t = blockIdx.x;
    int E = (int)lg.shape[1], per = E / G, i = threadIdx.x;
    float *s = gsm, *elig = s + E, *sel_w = elig + E, *gs = sel_w + k;
    int *sel_i = (int *)(gs + G), *kept = sel_i + k;
    gpu_grid_wait();
    gpu_grid_release();
    float v = i < E ? gpu_ld(lg.p, lg.dtype, t * lg.stride[0] + i) : NEG_INF;
    if (softmax) {
        float m = gpu_block_max(v, red);
        float e = i < E ? expf(v - m) : 0.0f;
        v = e / gpu_block_sum(e, red);
    } else {
        v = 1.0f / (1.0f + expf(-v));
    }
    float choice = NEG_INF;
    if (i < E) {
        s[i] = v;
        choice = nan_low(v + (bias.p ? ((const float *)bias.p)[i * bias.stride[0]] : 0.0f));
        elig[i] = choice;
    }
    if (i < k) {
        sel_i[i] = 0; /* unreachable fallbacks: validation guarantees k eligible experts */
        sel_w[i] = 0.0f;
    }
    __syncthreads();
    if (G > 1) {
        if (i < G) { /* the group's top two, counting repeats */
            float a = NEG_INF, c2 = NEG_INF;
            for (int j = i * per; j < (i + 1) * per; j++) top2_add(elig[j], &a, &c2);
            gs[i] = nan_low((bias.p && per > 1) ? a + c2 : a);
        }
        __syncthreads();
        if (i < G) {
            int r = 0;
            for (int g = 0; g < G; g++) r += ranks_before(gs[g], g, gs[i], i);
            kept[i] = r < topk_group;
        }
        __syncthreads();
        if (i < E && !kept[i / per]) elig[i] = __int_as_float(0x7fc00000); /* NaN ranks before nothing */
        __syncthreads();
    }
    if (i < E && !isnan(elig[i])) {
        int r = 0;
#pragma unroll 8
        for (int j = 0; j < E; j++) r += ranks_before(elig[j], j, choice, i);
        if (r < k) {
            sel_i[r] = i;
            sel_w[r] = s[i];
        }
    }
    __syncthreads();
    if (i < k) {
        float sum = 0;
        for (int j = 0; j < k; j++) sum += sel_w[j];
        float w = sel_w[i];
        if (norm) w /= sum;
        ((int32_t *)ids.p)[t * ids.stride[0] + i] = sel_i[i];
        ((float *)wt.p)[t * wt.stride[0] + i] = w * route_scale;
    }
}

extern "C" dsrt_status dsrt_gpu_moe_gate(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor lg = dsrt_gpu_tensor_of(&op->in[0]), bias = dsrt_gpu_tensor_of(&op->in[1]),
                    ids = dsrt_gpu_tensor_of(&op->out[0]), wt = dsrt_gpu_tensor_of(&op->out[1]);
    int64_t T = lg.shape[0], E = lg.shape[1];
    int G = op->p.n_group;
    if (T == 0) return DSRT_OK;
    int k = op->p.k;
    if (E <= 1024 && k <= E && T <= 0x7fffffff) {
        unsigned threads = (unsigned)((E + c->warp_size - 1) / c->warp_size * c->warp_size);
        size_t smem = sizeof(float) * (size_t)(2 * E + 2 * k + 2 * G);
        DSRT_TRY(gpu_smem_limit(c, (const void *)k_moe_gate_rank, smem, "moe_gate"));
        gpu_launch_early(c, k_moe_gate_rank, dim3((unsigned)T), dim3(threads), smem, lg, bias, ids, wt, k, G,
                         op->p.topk_group, op->p.score_func == DSRT_SCORE_SOFTMAX ? 1 : 0, op->p.norm_topk ? 1 : 0,
                         op->p.route_scale);
        GPU_CHECK_LAUNCH("moe_gate", "k_moe_gate_rank");
        return DSRT_OK;
    }
    size_t per_warp = sizeof(float) * (size_t)(2 * E + 2 * G);
    int wpb = (int)(48 * 1024 / per_warp);
    if (wpb > 8) wpb = 8;
    if (wpb < 1) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "moe_gate: %lld experts exceed shared memory", (long long)E);
    k_moe_gate<<<gpu_blocks(T, wpb), wpb * c->warp_size, per_warp * (size_t)wpb, gpu_stream(c)>>>(
        lg, bias, ids, wt, op->p.k, G, op->p.topk_group, op->p.score_func == DSRT_SCORE_SOFTMAX ? 1 : 0,
        op->p.norm_topk ? 1 : 0, op->p.route_scale, wpb);
    GPU_CHECK_LAUNCH("moe_gate", "k_moe_gate");
    return DSRT_OK;
}

/* ---- dispatch: stable counting sort of (token, slot) pairs by local expert ---- */
#define MD_TILE 256

static __global__ void k_fill_i32(dsrt_gpu_tensor t, int64_t n, int32_t v)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) ((int32_t *)t.p)[i * t.stride[0]] = v;
}

GPU_DEV int pair_group(const dsrt_gpu_tensor &ids, int64_t p, int64_t total, int e0, int G)
{
    if (p >= total) return -1;
    int64_t k = ids.shape[1], t = p / k, j = p % k;
    int g = gpu_i32(ids, t * ids.stride[0] + j * ids.stride[1]) - e0;
    return (g >= 0 && g < G) ? g : -1;
}

static __global__ void k_tile_hist(dsrt_gpu_tensor ids, int e0, int G, int *tile_counts)
{
    extern __shared__ int th[];
    int64_t total = ids.shape[0] * ids.shape[1];
    for (int g = threadIdx.x; g < G; g += blockDim.x) th[g] = 0;
    __syncthreads();
    int gr = pair_group(ids, (int64_t)blockIdx.x * MD_TILE + threadIdx.x, total, e0, G);
    if (gr >= 0) atomicAdd(&th[gr], 1);
    __syncthreads();
    for (int g = threadIdx.x; g < G; g += blockDim.x) tile_counts[(int64_t)blockIdx.x * G + g] = th[g];
}

/* One block: expert totals, offsets (exclusive scan), and each tile's first row per expert. */
static __global__ void k_dispatch_offsets(const int *tile_counts, int64_t ntiles, int G, dsrt_gpu_tensor offs,
                                          int *tile_base)
{
    __shared__ int scan[1024];
    __shared__ int base;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    for (int g0 = 0; g0 < G; g0 += blockDim.x) {
        int g = g0 + threadIdx.x, tot = 0;
        if (g < G)
            for (int64_t i = 0; i < ntiles; i++) tot += tile_counts[i * G + g];
        scan[threadIdx.x] = tot;
        __syncthreads();
        for (int s = 1; s < (int)blockDim.x; s *= 2) {
            int v = (int)threadIdx.x >= s ? scan[threadIdx.x - s] : 0;
            __syncthreads();
            scan[threadIdx.x] += v;
            __syncthreads();
        }
        if (g < G) {
            int run = base + scan[threadIdx.x] - tot;
            ((int32_t *)offs.p)[g * offs.stride[0]] = run;
            for (int64_t i = 0; i < ntiles; i++) {
                tile_base[i * G + g] = run;
                run += tile_counts[i * G + g];
            }
        }
        __syncthreads();
        if (threadIdx.x == blockDim.x - 1) base += scan[threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.x == 0) ((int32_t *)offs.p)[(int64_t)G * offs.stride[0]] = base;
}

static __global__ void k_dispatch_rows(dsrt_gpu_tensor ids, int e0, int G, const int *tile_base, dsrt_gpu_tensor rt,
                                       dsrt_gpu_tensor sr)
{
    __shared__ int gof[MD_TILE];
    int64_t total = ids.shape[0] * ids.shape[1], k = ids.shape[1];
    int64_t p = (int64_t)blockIdx.x * MD_TILE + threadIdx.x;
    int gr = pair_group(ids, p, total, e0, G);
    gof[threadIdx.x] = gr;
    __syncthreads();
    if (p >= total) return;
    int64_t t = p / k, j = p % k;
    int32_t row = -1;
    if (gr >= 0) {
        int rank = 0; /* earlier pairs of this tile with the same expert: keeps token order */
        for (int i = 0; i < (int)threadIdx.x; i++) rank += gof[i] == gr;
        row = tile_base[(int64_t)blockIdx.x * G + gr] + rank;
        ((int32_t *)rt.p)[(int64_t)row * rt.stride[0]] = (int32_t)t;
    }
    ((int32_t *)sr.p)[t * sr.stride[0] + j * sr.stride[1]] = row;
}

static __global__ void k_gather_rows(dsrt_gpu_tensor x, dsrt_gpu_tensor rt, dsrt_gpu_tensor xp, int64_t R)
{
    int64_t H = x.shape[1];
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    gpu_grid_release();
    if (c >= H) return;
    for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
        int32_t t = gpu_i32(rt, r * rt.stride[0]);
        if (t < 0) continue;
        gpu_st(xp.p, xp.dtype, r * xp.stride[0] + c, gpu_ld(x.p, x.dtype, (int64_t)t * x.stride[0] + c));
    }
}

extern "C" dsrt_status dsrt_gpu_moe_dispatch(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), ids = dsrt_gpu_tensor_of(&op->in[1]),
                    xp = dsrt_gpu_tensor_of(&op->out[0]), offs = dsrt_gpu_tensor_of(&op->out[1]),
                    rt = dsrt_gpu_tensor_of(&op->out[2]), sr = dsrt_gpu_tensor_of(&op->out[3]);
    int G = op->p.expert_count, e0 = op->p.expert_begin;
    int64_t total = ids.shape[0] * ids.shape[1], R = rt.shape[0], ntiles = (total + MD_TILE - 1) / MD_TILE;
    if ((size_t)G * 4 > 48 * 1024)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "moe_dispatch: %d local experts exceed shared memory", G);
    gpuStream_t s = gpu_stream(c);
    if (R > 0) {
        k_fill_i32<<<gpu_blocks(R, 256), 256, 0, s>>>(rt, R, -1);
        GPU_CHECK_LAUNCH("moe_dispatch", "k_fill_i32");
    }
    int *tile_counts = NULL, *tile_base = NULL;
    if (ntiles > 0) {
        DSRT_TRY(gpu_scratch(c, sizeof(int) * (size_t)(ntiles * G), (void **)&tile_counts));
        DSRT_TRY(gpu_scratch(c, sizeof(int) * (size_t)(ntiles * G), (void **)&tile_base));
        k_tile_hist<<<(unsigned)ntiles, MD_TILE, sizeof(int) * (size_t)G, s>>>(ids, e0, G, tile_counts);
        GPU_CHECK_LAUNCH("moe_dispatch", "k_tile_hist");
    }
    k_dispatch_offsets<<<1, 1024, 0, s>>>(tile_counts, ntiles, G, offs, tile_base);
    GPU_CHECK_LAUNCH("moe_dispatch", "k_dispatch_offsets");
    if (ntiles == 0) return DSRT_OK;
    k_dispatch_rows<<<(unsigned)ntiles, MD_TILE, 0, s>>>(ids, e0, G, tile_base, rt, sr);
    GPU_CHECK_LAUNCH("moe_dispatch", "k_dispatch_rows");
    int64_t H = x.shape[1];
    if (R > 0 && H > 0) {
        dim3 grid(gpu_blocks(H, 256), (unsigned)(R < 65535 ? R : 65535));
        k_gather_rows<<<grid, 256, 0, s>>>(x, rt, xp, R);
        GPU_CHECK_LAUNCH("moe_dispatch", "k_gather_rows");
    }
    return DSRT_OK;
}

/* ---- combine: blocks of 256 columns of a token, slots in ascending expert id; the k rows of a column
 * are loaded 8 at a time (gpu_ld_n) and added in slot order ---- */
#define MC_COLS 256

static __global__ void k_moe_combine(dsrt_gpu_tensor yp, dsrt_gpu_tensor sr, dsrt_gpu_tensor ids, dsrt_gpu_tensor wt,
                                     dsrt_gpu_tensor sh, dsrt_gpu_tensor y)
{
    __shared__ int order[64];
    __shared__ int32_t rows[64];
    __shared__ float w[64];
    int64_t t = blockIdx.x, k = sr.shape[1], H = yp.shape[1], R = yp.shape[0];
    gpu_grid_release();
    if (threadIdx.x == 0) {
        for (int j = 0; j < k; j++) { /* insertion sort: stable, as the reference */
            int i = j;
            int32_t idj = gpu_i32(ids, t * ids.stride[0] + j * ids.stride[1]);
            while (i > 0 && gpu_i32(ids, t * ids.stride[0] + order[i - 1] * ids.stride[1]) > idj) {
                order[i] = order[i - 1];
                i--;
            }
            order[i] = j;
        }
        for (int a = 0; a < k; a++) {
            int j = order[a];
            int32_t r = gpu_i32(sr, t * sr.stride[0] + j * sr.stride[1]);
            rows[a] = (r < 0 || r >= R) ? -1 : r;
            w[a] = ((const float *)wt.p)[t * wt.stride[0] + j * wt.stride[1]];
        }
    }
    __syncthreads();
    int64_t d = (int64_t)blockIdx.y * MC_COLS + threadIdx.x;
    if (d >= H) return;
    float acc = 0;
    for (int a0 = 0; a0 < k; a0 += 8) {
        int64_t idx[8];
        float v[8];
#pragma unroll
        for (int n = 0; n < 8; n++) idx[n] = a0 + n < k && rows[a0 + n] >= 0 ? (int64_t)rows[a0 + n] * yp.stride[0] + d : -1;
        gpu_ld_n<8>(yp.p, yp.dtype, idx, v);
#pragma unroll
        for (int n = 0; n < 8; n++)
            if (idx[n] >= 0) acc += v[n] * w[a0 + n];
    }
    if (sh.p) acc += gpu_ld(sh.p, sh.dtype, t * sh.stride[0] + d);
    gpu_st(y.p, y.dtype, t * y.stride[0] + d, acc);
}

extern "C" dsrt_status dsrt_gpu_moe_combine(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor yp = dsrt_gpu_tensor_of(&op->in[0]), sr = dsrt_gpu_tensor_of(&op->in[1]),
                    ids = dsrt_gpu_tensor_of(&op->in[2]), wt = dsrt_gpu_tensor_of(&op->in[3]),
                    sh = dsrt_gpu_tensor_of(&op->in[4]), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = sr.shape[0];
    if (T == 0) return DSRT_OK;
    if (sr.shape[1] > 64) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "moe_combine: more than 64 experts per token");
    if (T > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "moe_combine: too many tokens");
    if (yp.shape[1] > 65535ll * MC_COLS) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "moe_combine: rows too wide");
    dim3 grid((unsigned)T, gpu_blocks(yp.shape[1], MC_COLS));
    k_moe_combine<<<grid, MC_COLS, 0, gpu_stream(c)>>>(yp, sr, ids, wt, sh, y);
    GPU_CHECK_LAUNCH("moe_combine", "k_moe_combine");
    return DSRT_OK;
}
