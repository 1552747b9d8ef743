/* GPU kernels: element-wise ops, norms, RoPE, embedding, activation quantization, Hadamard, cache
 * writes. Memory-bound: one pass over the data, fp32 inside, each output rounded once like the CPU
 * reference (kernels/cpu/ops_basic.c). */
#include "gpu_common.cuh"

extern "C" dsrt_gpu_tensor dsrt_gpu_tensor_of(const dsrt_tensor *t)
{
    dsrt_gpu_tensor g;
    memset(&g, 0, sizeof g);
    if (!t || !t->buf) return g;
    g.p = (char *)dsrt_buffer_native(t->buf) + t->offset;
    g.dtype = (int)t->dtype;
    g.ndim = t->ndim;
    for (int d = 0; d < 4; d++) {
        g.shape[d] = d < t->ndim ? t->shape[d] : 1;
        g.stride[d] = d < t->ndim ? t->stride[d] : 0;
    }
    if (t->scale.buf) {
        g.sp = (char *)dsrt_buffer_native(t->scale.buf) + t->scale.offset;
        g.sdtype = (int)t->scale.dtype;
        g.sblock[0] = t->scale.block[0];
        g.sblock[1] = t->scale.block[1];
        for (int d = 0; d < 4; d++) g.sstride[d] = d < t->ndim ? t->scale.stride[d] : 0;
    }
    return g;
}

static int64_t gpu_rows_of(const dsrt_gpu_tensor &t)
{
    int64_t n = 1;
    for (int d = 0; d < t.ndim - 1; d++) n *= t.shape[d];
    return n;
}

#define ROW_GRID_Y(rows) ((unsigned)((rows) < 65535 ? ((rows) < 1 ? 1 : (rows)) : 65535))

/* ---- convert ---- */
static __global__ void k_convert(dsrt_gpu_tensor x, dsrt_gpu_tensor y, int64_t rows, int64_t n, int64_t rows2)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n) return;
    bool ints = !(x.dtype == DSRT_F32 || x.dtype == DSRT_BF16 || x.dtype == DSRT_F16 || x.dtype == DSRT_E4M3 ||
                  x.dtype == DSRT_E5M2);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        int64_t xo = gpu_row_offset(x, r), yo = gpu_row_offset(y, r);
        if (ints) {
            switch (x.dtype) {
            case DSRT_I32: ((int32_t *)y.p)[yo + c] = ((const int32_t *)x.p)[xo + c]; break;
            case DSRT_I64: ((int64_t *)y.p)[yo + c] = ((const int64_t *)x.p)[xo + c]; break;
            default: ((uint8_t *)y.p)[yo + c] = ((const uint8_t *)x.p)[xo + c]; break;
            }
            continue;
        }
        float v = gpu_ld(x.p, x.dtype, xo + c);
        if (x.sp) v *= gpu_block_scale(x, r / rows2, r % rows2, c);
        gpu_st(y.p, y.dtype, yo + c, v);
    }
}

extern "C" dsrt_status dsrt_gpu_convert(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t n = x.shape[x.ndim - 1], rows = gpu_rows_of(x), rows2 = x.ndim >= 2 ? x.shape[x.ndim - 2] : 1;
    if (n == 0 || rows == 0) return DSRT_OK;
    dim3 grid(gpu_blocks(n, 256), ROW_GRID_Y(rows));
    k_convert<<<grid, 256, 0, gpu_stream(c)>>>(x, y, rows, n, rows2 ? rows2 : 1);
    GPU_CHECK_LAUNCH("convert", "k_convert");
    return DSRT_OK;
}

/* ---- embed ---- */
static __global__ void k_embed(dsrt_gpu_tensor tab, dsrt_gpu_tensor ids, dsrt_gpu_tensor y, int64_t T)
{
    int64_t V = tab.shape[0], H = tab.shape[1];
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= H) return;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        int32_t id = gpu_i32(ids, t * ids.stride[0]);
        float v = (id < 0 || id >= V) ? 0.0f : gpu_ld(tab.p, tab.dtype, (int64_t)id * tab.stride[0] + c);
        gpu_st(y.p, y.dtype, t * y.stride[0] + c, v);
    }
}

extern "C" dsrt_status dsrt_gpu_embed(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor tab = dsrt_gpu_tensor_of(&op->in[0]), ids = dsrt_gpu_tensor_of(&op->in[1]),
                    y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = ids.shape[0], H = tab.shape[1];
    if (T == 0 || H == 0) return DSRT_OK;
    dim3 grid(gpu_blocks(H, 256), ROW_GRID_Y(T));
    k_embed<<<grid, 256, 0, gpu_stream(c)>>>(tab, ids, y, T);
    GPU_CHECK_LAUNCH("embed", "k_embed");
    return DSRT_OK;
}

/* ---- RMSNorm: one block per row; the fp32 sum stays in shared memory because residual_out may
 * alias residual and the norm must read the unrounded sum. Each thread loads NORM_ILP elements at a
 * time, and a few rows (decode) get 1024 threads: a row is then one block's work, bound by how many
 * loads are in flight. ---- */
#define NORM_ILP 4

static __global__ void k_rms_norm(dsrt_gpu_tensor x, dsrt_gpu_tensor w, dsrt_gpu_tensor res, dsrt_gpu_tensor y,
                                  dsrt_gpu_tensor ro, float eps, int gpre)
{
    extern __shared__ float s_row[]; /* [D], then the gains [D] when gpre */
    __shared__ float red[64];
    int64_t D = x.shape[1], m = blockIdx.x, bd = blockDim.x;
    float *s_g = s_row + D, ss = 0;
    gpu_grid_wait();
    gpu_grid_release();
    /* with gpre the gains load beside x (one memory round trip fewer on a decode row's critical path) */
    for (int64_t i0 = threadIdx.x; i0 < D; i0 += NORM_ILP * bd) {
        float v[NORM_ILP], r[NORM_ILP], g[NORM_ILP];
        gpu_ld_row<NORM_ILP>(x.p, x.dtype, m * x.stride[0], i0, bd, D, v);
        if (res.p) gpu_ld_row<NORM_ILP>(res.p, res.dtype, m * res.stride[0], i0, bd, D, r);
        if (gpre) gpu_ld_row<NORM_ILP>(w.p, w.dtype, 0, i0, bd, D, g);
#pragma unroll
        for (int e = 0; e < NORM_ILP; e++) {
            if (i0 + e * bd >= D) break;
            if (res.p) v[e] += r[e];
            s_row[i0 + e * bd] = v[e];
            if (gpre) s_g[i0 + e * bd] = g[e];
            ss += v[e] * v[e];
        }
    }
    ss = gpu_block_sum(ss, red);
    if (res.p)
        for (int64_t i = threadIdx.x; i < D; i += bd) gpu_st(ro.p, ro.dtype, m * ro.stride[0] + i, s_row[i]);
    float rn = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t i0 = threadIdx.x; i0 < D; i0 += NORM_ILP * bd) {
        float g[NORM_ILP];
        if (gpre) {
#pragma unroll
            for (int e = 0; e < NORM_ILP; e++) g[e] = i0 + e * bd < D ? s_g[i0 + e * bd] : 0.0f;
        } else {
            gpu_ld_row<NORM_ILP>(w.p, w.dtype, 0, i0, bd, D, g);
        }
#pragma unroll
        for (int e = 0; e < NORM_ILP; e++) {
            int64_t i = i0 + e * bd;
            if (i < D) gpu_st(y.p, y.dtype, m * y.stride[0] + i, g[e] * (s_row[i] * rn));
        }
    }
}

/* The bf16 form: a thread per 8 values, which stay in registers (no shared row), 16-byte loads and
 * stores. The generic kernel above runs ~1200 instructions a warp on a 7168 row through its dtype
 * switches and index arithmetic and took 8-10 us on a decode row; this one takes a few load latencies. */
static __global__ void k_rms_norm8(dsrt_gpu_tensor x, dsrt_gpu_tensor w, dsrt_gpu_tensor res, dsrt_gpu_tensor y,
                                   dsrt_gpu_tensor ro, float eps)
{
    __shared__ float red[32];
    int64_t D = x.shape[1], m = blockIdx.x, i = (int64_t)threadIdx.x * 8;
    bool on = i < D;
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0}, r[8], g[8];
    gpu_grid_wait();
    gpu_grid_release();
    if (on) {
        gpu_ld8_bf16(x.p + 2 * (m * x.stride[0] + i), v);
        if (res.p) gpu_ld8_bf16(res.p + 2 * (m * res.stride[0] + i), r);
        gpu_ld8(w.p + (w.dtype == DSRT_BF16 ? 2 : 4) * i, w.dtype, g);
        if (res.p)
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] += r[e];
    }
    float ss = 0;
#pragma unroll
    for (int e = 0; e < 8; e++) ss += v[e] * v[e];
    ss = gpu_block_sum(ss, red);
    if (!on) return;
    if (res.p) gpu_st8_bf16(ro.p + 2 * (m * ro.stride[0] + i), v);
    float rn = 1.0f / sqrtf(ss / (float)D + eps), o[8];
#pragma unroll
    for (int e = 0; e < 8; e++) o[e] = g[e] * (v[e] * rn);
    gpu_st8_bf16(y.p + 2 * (m * y.stride[0] + i), o);
}

/* Whether k_rms_norm8 takes the op: bf16 rows of 8k values (<= 8192), bf16 or f32 gains, every row
 * 16-byte aligned. */
static bool norm8_fits(const dsrt_gpu_tensor &x, const dsrt_gpu_tensor &w, const dsrt_gpu_tensor &res,
                       const dsrt_gpu_tensor &y, const dsrt_gpu_tensor &ro)
{
    int64_t D = x.shape[1];
    if (D % 8 || D > 8192 || x.dtype != DSRT_BF16 || y.dtype != DSRT_BF16) return false;
    if (w.dtype != DSRT_BF16 && w.dtype != DSRT_F32) return false;
    const dsrt_gpu_tensor *rows[3] = {&x, &y, res.p ? &res : NULL};
    for (int k = 0; k < 3; k++)
        if (rows[k] && ((uintptr_t)rows[k]->p % 16 || rows[k]->stride[0] % 8 || rows[k]->stride[1] != 1)) return false;
    if (res.p && (res.dtype != DSRT_BF16 || ro.dtype != DSRT_BF16 || (uintptr_t)ro.p % 16 || ro.stride[0] % 8 ||
                  ro.stride[1] != 1))
        return false;
    return (uintptr_t)w.p % 32 == 0 && w.stride[0] == 1;
}

/* Threads per row block: 1024 when the rows cannot fill the device. */
static unsigned norm_threads(const dsrt_gpu_ctx *c, int64_t M, int64_t D)
{
    return M < c->sm_count && D >= 4096 ? 1024u : 256u;
}

extern "C" dsrt_status dsrt_gpu_rms_norm(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(&op->in[1]),
                    res = dsrt_gpu_tensor_of(&op->in[2]), y = dsrt_gpu_tensor_of(&op->out[0]),
                    ro = dsrt_gpu_tensor_of(&op->out[1]);
    int64_t M = x.shape[0], D = x.shape[1];
    if (M == 0) return DSRT_OK;
    if (norm8_fits(x, w, res, y, ro) && M <= 0x7fffffff && D > 0) {
        unsigned th = (unsigned)((D / 8 + c->warp_size - 1) / c->warp_size * c->warp_size);
        gpu_launch_early(c, k_rms_norm8, dim3((unsigned)M), dim3(th), 0, x, w, res, y, ro, op->p.eps);
        GPU_CHECK_LAUNCH("rms_norm", "k_rms_norm8");
        return DSRT_OK;
    }
    size_t smem = sizeof(float) * (size_t)(D > 0 ? D : 1);
    int gpre = M < c->sm_count && 2 * smem <= (size_t)c->smem_optin; /* decode rows: latency-bound */
    if (gpre) smem *= 2;
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_rms_norm, smem, "rms_norm"));
    gpu_launch_early(c, k_rms_norm, dim3((unsigned)M), dim3(norm_threads(c, M, D)), smem, x, w, res, y, ro, op->p.eps,
                     gpre);
    GPU_CHECK_LAUNCH("rms_norm", "k_rms_norm");
    return DSRT_OK;
}

static __global__ void k_layer_norm(dsrt_gpu_tensor x, dsrt_gpu_tensor w, dsrt_gpu_tensor b, dsrt_gpu_tensor y,
                                    float eps)
{
    extern __shared__ float s_row[];
    __shared__ float red[64];
    int64_t D = x.shape[1], m = blockIdx.x;
    float sum = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = gpu_ld(x.p, x.dtype, m * x.stride[0] + i);
        s_row[i] = v;
        sum += v;
    }
    float mean = gpu_block_sum(sum, red) / (float)D;
    float var = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) var += (s_row[i] - mean) * (s_row[i] - mean);
    var = gpu_block_sum(var, red) / (float)D;
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        gpu_st(y.p, y.dtype, m * y.stride[0] + i,
               (s_row[i] - mean) * r * gpu_ld(w.p, w.dtype, i) + gpu_ld(b.p, b.dtype, i));
}

extern "C" dsrt_status dsrt_gpu_layer_norm(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(&op->in[1]),
                    b = dsrt_gpu_tensor_of(&op->in[2]), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = x.shape[0], D = x.shape[1];
    if (M == 0) return DSRT_OK;
    size_t smem = sizeof(float) * (size_t)(D > 0 ? D : 1);
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_layer_norm, smem, "layer_norm"));
    k_layer_norm<<<(unsigned)M, 256, smem, gpu_stream(c)>>>(x, w, b, y, op->p.eps);
    GPU_CHECK_LAUNCH("layer_norm", "k_layer_norm");
    return DSRT_OK;
}

/* ---- RoPE: a thread per rotated pair, so y may alias x exactly ---- */
static __global__ void k_rope(dsrt_gpu_tensor x, dsrt_gpu_tensor pos, dsrt_gpu_tensor cs, dsrt_gpu_tensor y,
                              int64_t rows, int interleaved)
{
    int64_t R = x.shape[x.ndim - 1], H = x.ndim == 3 ? x.shape[1] : 1, half = R / 2, P = cs.shape[0];
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    gpu_grid_release();
    if (i >= half) return;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        int64_t t = r / H, h = r % H;
        int64_t xo = t * x.stride[0] + (x.ndim == 3 ? h * x.stride[1] : 0);
        int64_t yo = t * y.stride[0] + (y.ndim == 3 ? h * y.stride[1] : 0);
        int32_t p = gpu_i32(pos, t * pos.stride[0]);
        int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float va = gpu_ld(x.p, x.dtype, xo + a), vb = gpu_ld(x.p, x.dtype, xo + b);
        if (p < 0 || p >= P) {
            gpu_st(y.p, y.dtype, yo + a, va);
            gpu_st(y.p, y.dtype, yo + b, vb);
            continue;
        }
        const float *tab = (const float *)cs.p;
        float cv = tab[p * cs.stride[0] + i * cs.stride[1]], sv = tab[p * cs.stride[0] + i * cs.stride[1] + 1];
        gpu_st(y.p, y.dtype, yo + a, va * cv - vb * sv);
        gpu_st(y.p, y.dtype, yo + b, vb * cv + va * sv);
    }
}

extern "C" dsrt_status dsrt_gpu_rope(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), pos = dsrt_gpu_tensor_of(&op->in[1]),
                    cs = dsrt_gpu_tensor_of(&op->in[2]), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t rows = x.shape[0] * (x.ndim == 3 ? x.shape[1] : 1), half = x.shape[x.ndim - 1] / 2;
    if (rows == 0 || half == 0) return DSRT_OK;
    dim3 grid(gpu_blocks(half, 64), ROW_GRID_Y(rows));
    k_rope<<<grid, 64, 0, gpu_stream(c)>>>(x, pos, cs, y, rows, op->p.interleaved ? 1 : 0);
    GPU_CHECK_LAUNCH("rope", "k_rope");
    return DSRT_OK;
}

/* ---- swiglu, add ---- */
static __global__ void k_swiglu(dsrt_gpu_tensor g, dsrt_gpu_tensor u, dsrt_gpu_tensor y, int64_t M)
{
    int64_t I = g.shape[1];
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    gpu_grid_release();
    if (i >= I) return;
    for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
        float gv = gpu_ld(g.p, g.dtype, m * g.stride[0] + i), uv = gpu_ld(u.p, u.dtype, m * u.stride[0] + i);
        gpu_st(y.p, y.dtype, m * y.stride[0] + i, gv / (1.0f + expf(-gv)) * uv);
    }
}

extern "C" dsrt_status dsrt_gpu_swiglu(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor g = dsrt_gpu_tensor_of(&op->in[0]), u = dsrt_gpu_tensor_of(&op->in[1]),
                    y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = g.shape[0], I = g.shape[1];
    if (M == 0 || I == 0) return DSRT_OK;
    dim3 grid(gpu_blocks(I, 256), ROW_GRID_Y(M));
    k_swiglu<<<grid, 256, 0, gpu_stream(c)>>>(g, u, y, M);
    GPU_CHECK_LAUNCH("swiglu", "k_swiglu");
    return DSRT_OK;
}

static __global__ void k_add(dsrt_gpu_tensor a, dsrt_gpu_tensor b, dsrt_gpu_tensor y, int64_t rows)
{
    int64_t n = a.shape[a.ndim - 1];
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        float v = gpu_ld(a.p, a.dtype, gpu_row_offset(a, r) + i) + gpu_ld(b.p, b.dtype, gpu_row_offset(b, r) + i);
        gpu_st(y.p, y.dtype, gpu_row_offset(y, r) + i, v);
    }
}

extern "C" dsrt_status dsrt_gpu_add(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor a = dsrt_gpu_tensor_of(&op->in[0]), b = dsrt_gpu_tensor_of(&op->in[1]),
                    y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t n = a.shape[a.ndim - 1], rows = gpu_rows_of(a);
    if (n == 0 || rows == 0) return DSRT_OK;
    dim3 grid(gpu_blocks(n, 256), ROW_GRID_Y(rows));
    k_add<<<grid, 256, 0, gpu_stream(c)>>>(a, b, y, rows);
    GPU_CHECK_LAUNCH("add", "k_add");
    return DSRT_OK;
}

/* ---- act_quant: a wave per (row, block) ----
 * Per-wave kernels count their waves on the device: the host sizes the grid with the device's wave
 * width, which need not be the width the code was compiled for (RDNA runs wave32 and wave64 code);
 * waves stride over the items, so any launch covers them all. */
GPU_DEV int64_t gpu_wave_id(void) { return (int64_t)blockIdx.x * gpu_nwarps() + gpu_warp(); }
GPU_DEV int64_t gpu_wave_count(void) { return (int64_t)gridDim.x * gpu_nwarps(); }

/* Blocks of 256 threads for `items` wave-sized work items: one item per wave, capped so that the grid
 * stays far below HIP's 2^32 threads per dimension (the waves then take several items each). */
static unsigned gpu_wave_blocks(const dsrt_gpu_ctx *c, int64_t items)
{
    int per = 256 / (c->warp_size > 0 && c->warp_size <= 256 ? c->warp_size : 32);
    unsigned b = gpu_blocks(items, per);
    return b < 65535u * 16u ? b : 65535u * 16u;
}

/* One wave quantizes a block of n <= 4 x wave-width elements (x elements off .. off+n-1 to codes
 * q[0 .. n-1]); returns the block's scale. The loads are issued together and the values kept in
 * registers for the second pass: these kernels run once per GEMV of a decode step, where a few
 * dependent loads are their whole cost. */
GPU_DEV float gpu_wave_quant_block(const dsrt_gpu_tensor &x, int64_t off, int64_t n, int pow2, uint8_t *q)
{
    int64_t idx[4];
    float v[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
        int64_t k = gpu_lane() + (int64_t)u * GPU_WARP_SIZE;
        idx[u] = k < n ? off + k : -1;
    }
    gpu_ld_n<4>(x.p, x.dtype, idx, v);
    float amax = 0;
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (idx[u] >= 0) amax = fmaxf(amax, fabsf(v[u]));
    amax = gpu_warp_max(amax);
    float s = gpu_act_scale(amax, pow2 != 0);
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (idx[u] >= 0) q[gpu_lane() + u * GPU_WARP_SIZE] = gpu_quant_e4m3(v[u], s);
    return s;
}

static __global__ void k_act_quant(dsrt_gpu_tensor x, dsrt_gpu_tensor q, int blk, int64_t nb, int64_t total,
                                   int pow2)
{
    for (int64_t item = gpu_wave_id(); item < total; item += gpu_wave_count()) { /* uniform per wave */
        int64_t m = item / nb, b = item % nb, K = x.shape[1];
        int64_t k0 = b * blk, k1 = k0 + blk < K ? k0 + blk : K;
        float s;
        if (k1 - k0 <= 4 * GPU_WARP_SIZE) {
            s = gpu_wave_quant_block(x, m * x.stride[0] + k0, k1 - k0, pow2, (uint8_t *)q.p + m * q.stride[0] + k0);
        } else {
            float amax = 0;
            for (int64_t k = k0 + gpu_lane(); k < k1; k += GPU_WARP_SIZE)
                amax = fmaxf(amax, fabsf(gpu_ld(x.p, x.dtype, m * x.stride[0] + k)));
            amax = gpu_warp_max(amax);
            s = gpu_act_scale(amax, pow2 != 0);
            for (int64_t k = k0 + gpu_lane(); k < k1; k += GPU_WARP_SIZE)
                ((uint8_t *)q.p)[m * q.stride[0] + k] = gpu_quant_e4m3(gpu_ld(x.p, x.dtype, m * x.stride[0] + k), s);
        }
        if (gpu_lane() == 0) {
            int64_t si = m * q.sstride[0] + b * q.sstride[1];
            if (q.sdtype == DSRT_UE8M0) ((uint8_t *)q.sp)[si] = gpu_f32_to_ue8m0(s);
            else ((float *)q.sp)[si] = s;
        }
    }
}

extern "C" dsrt_status dsrt_gpu_act_quant(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), q = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = x.shape[0], K = x.shape[1];
    int blk = q.sblock[1];
    int64_t nb = (K + blk - 1) / blk, total = M * nb;
    if (total == 0) return DSRT_OK;
    k_act_quant<<<gpu_wave_blocks(c, total), 256, 0, gpu_stream(c)>>>(x, q, blk, nb, total, op->p.scale_pow2 ? 1 : 0);
    GPU_CHECK_LAUNCH("act_quant", "k_act_quant");
    return DSRT_OK;
}

/* Activation quantization for the FP8 GEMM: 1x128 blocks, f32 scales at any layout. */
static __global__ void k_quantize_act(dsrt_gpu_tensor x, uint8_t *q, float *scales, int64_t s_m, int64_t s_kb,
                                      int64_t nb, int64_t total, int pow2)
{
    gpu_grid_wait();
    gpu_grid_release();
    for (int64_t item = gpu_wave_id(); item < total; item += gpu_wave_count()) {
        int64_t m = item / nb, b = item % nb, K = x.shape[1];
        float s = gpu_wave_quant_block(x, m * x.stride[0] + b * 128, 128, pow2, q + m * K + b * 128);
        if (gpu_lane() == 0) scales[m * s_m + b * s_kb] = s;
    }
}

extern "C" dsrt_status dsrt_gpu_quantize_act(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *x, bool pow2, uint8_t *q,
                                             float *scales, int64_t s_m, int64_t s_kb)
{
    int64_t M = x->shape[0], K = x->shape[1], nb = K / 128, total = M * nb;
    if (total == 0) return DSRT_OK;
    gpu_launch_early(c, k_quantize_act, dim3(gpu_wave_blocks(c, total)), dim3(256), 0, *x, q, scales, s_m, s_kb, nb,
                     total, pow2 ? 1 : 0);
    GPU_CHECK_LAUNCH("linear", "k_quantize_act");
    return DSRT_OK;
}

/* The dequantized route of the FP8 GEMM (cuda_linear.c): x quantized per 1x128 block exactly as above,
 * then written back as bf16 q*s. With a power-of-two s that product is exact in bf16 (4 significant bits),
 * so a bf16 GEMM with fp32 accumulation sees the very values the FP8 GEMM multiplies. */
static __global__ void k_quantize_act_bf16(dsrt_gpu_tensor x, uint16_t *xb, int64_t total8)
{
    gpu_grid_wait();
    gpu_grid_release();
    /* 8 elements a thread, 16 lanes a 128-wide block; the loop runs alike on every lane (shuffles) */
    int64_t K = x.shape[1], per_row = K / 8;
    bool vec = x.dtype == DSRT_BF16 && ((uintptr_t)x.p & 15) == 0 && x.stride[0] % 8 == 0;
    for (int64_t i0 = (int64_t)blockIdx.x * blockDim.x; i0 < total8; i0 += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = i0 + threadIdx.x;
        bool ok = i < total8;
        int64_t m = ok ? i / per_row : 0, k = ok ? (i % per_row) * 8 : 0, at = m * x.stride[0] + k;
        float v[8];
        if (vec) {
            uint4 u = ok ? *(const uint4 *)(x.p + 2 * at) : make_uint4(0, 0, 0, 0);
            uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[2 * j] = gpu_bf16_to_f32((uint16_t)(w[j] & 0xffffu));
                v[2 * j + 1] = gpu_bf16_to_f32((uint16_t)(w[j] >> 16));
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = ok ? gpu_ld(x.p, x.dtype, at + j) : 0.0f;
        }
        float amax = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) amax = fmaxf(amax, fabsf(v[j]));
#pragma unroll
        for (int o = 8; o >= 1; o >>= 1) amax = fmaxf(amax, gpu_shfl_xor(amax, o));
        float s = gpu_act_scale(amax, true), inv = 1.0f / s; /* s = 2^e: x * inv is x / s exactly */
        if (!ok) continue;
        uint32_t o4[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float qa, qb;
            gpu_e4m3_round2(v[2 * j], v[2 * j + 1], inv, qa, qb);
            o4[j] = (gpu_f_bits(qa * s) >> 16) | ((gpu_f_bits(qb * s) >> 16) << 16);
        }
        *(uint4 *)(xb + m * K + k) = make_uint4(o4[0], o4[1], o4[2], o4[3]);
    }
}

extern "C" dsrt_status dsrt_gpu_quantize_act_bf16(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *x, uint16_t *xb)
{
    int64_t total8 = x->shape[0] * (x->shape[1] / 8);
    if (total8 == 0) return DSRT_OK;
    int64_t blocks = (total8 + 255) / 256, cap = (int64_t)c->sm_count * 8;
    gpu_launch_early(c, k_quantize_act_bf16, dim3((unsigned)(blocks < cap ? blocks : cap)), dim3(256), 0, *x, xb,
                     total8);
    GPU_CHECK_LAUNCH("linear", "k_quantize_act_bf16");
    return DSRT_OK;
}

/* Rows [n0, n0 + rows) of an e4m3 weight [N,K] with UE8M0 block scales into bf16 [rows][K]: each thread
 * takes 8 codes of one 128-wide block (one scale). Exact: a code times 2^e has 4 significant bits. */
static __global__ void k_dequant_weight_bf16(dsrt_gpu_tensor w, int64_t n0, int64_t rows, uint16_t *out)
{
    int64_t K = w.shape[1], per_row = K / 8;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * per_row) return;
    int64_t r = i / per_row, k = (i % per_row) * 8, n = n0 + r;
    uint2 codes = *(const uint2 *)(w.p + n * w.stride[0] + k);
    float s = gpu_scale_at(w, gpu_scale_row(w, 0, n) + gpu_scale_kcol(w, k / 128));
    uint32_t o[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint32_t c2 = (j < 2 ? codes.x : codes.y) >> (16 * (j & 1));
        uint32_t lo = gpu_f_bits(gpu_e4m3_to_f32((uint8_t)(c2 & 0xff)) * s) >> 16;
        uint32_t hi = gpu_f_bits(gpu_e4m3_to_f32((uint8_t)((c2 >> 8) & 0xff)) * s) >> 16;
        o[j] = lo | (hi << 16);
    }
    *(uint4 *)(out + r * K + k) = make_uint4(o[0], o[1], o[2], o[3]);
}

extern "C" dsrt_status dsrt_gpu_dequant_weight_bf16(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *w, int64_t n0,
                                                    int64_t rows, uint16_t *out)
{
    int64_t K = w->shape[1];
    if (w->ndim != 2 || K % 8 != 0 || w->stride[0] % 8 != 0 || ((uintptr_t)w->p & 7) != 0 || w->sdtype != DSRT_UE8M0)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "linear: the dequantized FP8 route needs a 2-D e4m3 weight with "
                                                   "8-aligned rows and UE8M0 scales");
    int64_t n = rows * (K / 8);
    if (n == 0) return DSRT_OK;
    k_dequant_weight_bf16<<<gpu_blocks(n, 256), 256, 0, gpu_stream(c)>>>(*w, n0, rows, out);
    GPU_CHECK_LAUNCH("linear", "k_dequant_weight_bf16");
    return DSRT_OK;
}

static __global__ void k_weight_scales(dsrt_gpu_tensor w, float *out, int64_t rows, int64_t valid, int64_t ld, int t)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * ld) return;
    int64_t r = i / ld, col = i % ld;
    int64_t nb = t ? col : r, kb = t ? r : col;
    out[i] = col < valid ? gpu_block_scale(w, 0, nb * 128, kb * 128) : 0.0f;
}

extern "C" dsrt_status dsrt_gpu_weight_scales_f32(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *w, float *out,
                                                  int64_t ld, int transposed)
{
    int64_t N = w->shape[0], K = w->shape[1], nrb = (N + 127) / 128, nkb = (K + 127) / 128;
    int64_t rows = transposed ? nkb : nrb, valid = transposed ? nrb : nkb;
    if (rows * ld == 0) return DSRT_OK;
    k_weight_scales<<<gpu_blocks(rows * ld, 256), 256, 0, gpu_stream(c)>>>(*w, out, rows, valid, ld, transposed);
    GPU_CHECK_LAUNCH("linear", "k_weight_scales");
    return DSRT_OK;
}

/* 32x32 tiles through shared memory so both the reads and the writes are coalesced. */
static __global__ void k_transpose(const char *src, int64_t N, int64_t ld, dsrt_gpu_tensor y, int es)
{
    __shared__ uint32_t tile[32][33];
    int64_t M = y.shape[0];
    int64_t n0 = (int64_t)blockIdx.y * 32, m0 = (int64_t)blockIdx.x * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int64_t n = n0 + r, m = m0 + threadIdx.x;
        uint32_t v = 0;
        if (n < N && m < M) {
            const char *p = src + (n * ld + m) * es;
            v = es == 4 ? *(const uint32_t *)p : *(const uint16_t *)p;
        }
        tile[r][threadIdx.x] = v;
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int64_t m = m0 + r, n = n0 + threadIdx.x;
        if (m < M && n < N) {
            char *p = y.p + (m * y.stride[0] + n) * es;
            if (es == 4) *(uint32_t *)p = tile[threadIdx.x][r];
            else *(uint16_t *)p = (uint16_t)tile[threadIdx.x][r];
        }
    }
}

extern "C" dsrt_status dsrt_gpu_transpose(const dsrt_gpu_ctx *c, const void *src, int64_t N, int64_t ld,
                                          const dsrt_gpu_tensor *y)
{
    int64_t M = y->shape[0];
    int es = (int)dsrt_dtype_size((dsrt_dtype)y->dtype);
    if (M == 0 || N == 0) return DSRT_OK;
    if (es != 2 && es != 4) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "transpose: element size %d", es);
    dim3 grid(gpu_blocks(M, 32), gpu_blocks(N, 32));
    if (grid.y > 65535) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "transpose: %lld rows", (long long)N);
    k_transpose<<<grid, dim3(32, 8), 0, gpu_stream(c)>>>((const char *)src, N, ld, *y, es);
    GPU_CHECK_LAUNCH("linear", "k_transpose");
    return DSRT_OK;
}

/* ---- Hadamard: butterflies in shared memory in the CPU's stage order, so results match bit for bit ---- */
static __global__ void k_hadamard(dsrt_gpu_tensor x, dsrt_gpu_tensor y)
{
    extern __shared__ float v[];
    int64_t n = x.shape[1], m = blockIdx.x;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = gpu_ld(x.p, x.dtype, m * x.stride[0] + i);
    __syncthreads();
    for (int64_t h = 1; h < n; h *= 2) {
        for (int64_t p = threadIdx.x; p < n / 2; p += blockDim.x) {
            int64_t j = (p / h) * 2 * h + p % h;
            float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
        }
        __syncthreads();
    }
    float s = 1.0f / sqrtf((float)n);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) gpu_st(y.p, y.dtype, m * y.stride[0] + i, v[i] * s);
}

extern "C" dsrt_status dsrt_gpu_hadamard(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = x.shape[0], n = x.shape[1];
    if (M == 0) return DSRT_OK;
    size_t smem = sizeof(float) * (size_t)n;
    DSRT_TRY(gpu_smem_limit(c, (const void *)k_hadamard, smem, "hadamard"));
    int threads = n >= 512 ? 256 : 64;
    k_hadamard<<<(unsigned)M, threads, smem, gpu_stream(c)>>>(x, y);
    GPU_CHECK_LAUNCH("hadamard", "k_hadamard");
    return DSRT_OK;
}

/* ---- cache_write: a block per token; warps quantize the 128-blocks ---- */
static __global__ void k_cache_write(dsrt_gpu_tensor src, dsrt_gpu_tensor slots, dsrt_gpu_tensor src2,
                                     dsrt_gpu_tensor cache, int fmt, int pow2)
{
    int64_t t = blockIdx.x;
    int64_t W1 = src.shape[1], W2 = src2.p ? src2.shape[1] : 0, S = cache.shape[0];
    int32_t slot = gpu_i32(slots, t * slots.stride[0]);
    if (slot < 0 || slot >= S) return;
    if (fmt == DSRT_CACHE_PLAIN) {
        int64_t co = (int64_t)slot * cache.stride[0];
        for (int64_t i = threadIdx.x; i < W1 + W2; i += blockDim.x) {
            float v = i < W1 ? gpu_ld(src.p, src.dtype, t * src.stride[0] + i)
                             : gpu_ld(src2.p, src2.dtype, t * src2.stride[0] + i - W1);
            gpu_st(cache.p, cache.dtype, co + i, v);
        }
        return;
    }
    uint8_t *row = (uint8_t *)cache.p + (int64_t)slot * cache.stride[0];
    int64_t nb = (W1 + 127) / 128;
    for (int64_t b = gpu_warp(); b < nb; b += gpu_nwarps()) {
        int64_t k0 = b * 128, k1 = k0 + 128 < W1 ? k0 + 128 : W1;
        float amax = 0;
        for (int64_t k = k0 + gpu_lane(); k < k1; k += GPU_WARP_SIZE)
            amax = fmaxf(amax, fabsf(gpu_ld(src.p, src.dtype, t * src.stride[0] + k)));
        amax = gpu_warp_max(amax);
        float s = gpu_act_scale(amax, pow2 != 0);
        for (int64_t k = k0 + gpu_lane(); k < k1; k += GPU_WARP_SIZE)
            row[k] = gpu_quant_e4m3(gpu_ld(src.p, src.dtype, t * src.stride[0] + k), s);
        if (gpu_lane() < 4) row[W1 + 4 * b + gpu_lane()] = (uint8_t)(gpu_f_bits(s) >> (8 * gpu_lane()));
    }
    uint8_t *tail = row + W1 + 4 * nb;
    for (int64_t i = threadIdx.x; i < W2; i += blockDim.x) {
        uint16_t h = gpu_f32_to_bf16(gpu_ld(src2.p, src2.dtype, t * src2.stride[0] + i));
        tail[2 * i] = (uint8_t)(h & 0xff);
        tail[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

extern "C" dsrt_status dsrt_gpu_cache_write(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor src = dsrt_gpu_tensor_of(&op->in[0]), slots = dsrt_gpu_tensor_of(&op->in[1]),
                    src2 = dsrt_gpu_tensor_of(&op->in[2]), cache = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t T = src.shape[0];
    if (T == 0) return DSRT_OK;
    if (T > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cache_write: more than 2^31 rows");
    k_cache_write<<<(unsigned)T, 128, 0, gpu_stream(c)>>>(src, slots, src2, cache, (int)op->p.format,
                                                          op->p.scale_pow2 ? 1 : 0);
    GPU_CHECK_LAUNCH("cache_write", "k_cache_write");
    return DSRT_OK;
}

/* ---- fills with 2- and 4-byte patterns (1-byte fills use the runtime's memset) ---- */
static __global__ void k_fill16(uint16_t *p, int64_t n, uint16_t v)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) p[i] = v;
}

static __global__ void k_fill32(uint32_t *p, int64_t n, uint32_t v)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) p[i] = v;
}

extern "C" dsrt_status dsrt_gpu_fill(const dsrt_gpu_ctx *c, void *ptr, size_t bytes, uint32_t pattern, int psize)
{
    int64_t n = (int64_t)(bytes / (size_t)psize);
    if (n == 0) return DSRT_OK;
    unsigned blocks = gpu_blocks(n, 256);
    if (blocks > 65535u * 16u) blocks = 65535u * 16u;
    if (psize == 2) k_fill16<<<blocks, 256, 0, gpu_stream(c)>>>((uint16_t *)ptr, n, (uint16_t)pattern);
    else k_fill32<<<blocks, 256, 0, gpu_stream(c)>>>((uint32_t *)ptr, n, pattern);
    GPU_CHECK_LAUNCH("fill", "k_fill");
    return DSRT_OK;
}
