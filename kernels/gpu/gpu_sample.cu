/* GPU token sampling. Greedy rows take a block-wide argmax. Temperature sampling follows the CPU
 * reference: tokens sorted by descending logit (ties to the lower id) with the vendor's segmented
 * radix sort on (logit, id) keys (cub on CUDA, rocPRIM on HIP, through gpu_segmented_sort_u64: a
 * host-side library call, kernels stay plain), then one block per row computes the probabilities in
 * double and applies top-k, min-p and top-p as prefixes of that order before drawing with the given
 * uniform. */
#define DSRT_GPU_NEED_SORT 1
#include "gpu_common.cuh"

#define NEG_INF (-__int_as_float(0x7f800000))

GPU_DEV float nan_to_low(float v) { return isnan(v) ? NEG_INF : v; }

/* Greedy: first index of the largest non-NaN value (index 0 when all are NaN), as the reference. */
static __global__ void k_argmax(dsrt_gpu_tensor lg, dsrt_gpu_tensor ids)
{
    __shared__ float sv[64];
    __shared__ int si[64];
    int64_t b = blockIdx.x, V = lg.shape[1];
    const float *row = (const float *)lg.p + b * lg.stride[0];
    float bv = 0;
    int bi = 0x7fffffff, have = 0; /* have: bv is a non-NaN value */
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = row[i];
        if (isnan(v)) continue;
        if (!have || v > bv) {
            bv = v;
            bi = (int)i;
            have = 1;
        }
    }
    if (!have) bv = __int_as_float(0x7fc00000);
    /* reduce (bv, bi): non-NaN beats NaN, then larger, then lower index */
    for (int m = GPU_WARP_SIZE / 2; m > 0; m >>= 1) {
        float ov = gpu_shfl_xor(bv, m);
        int oi = gpu_shfl_xor_i(bi, m);
        bool better = (!isnan(ov) && (isnan(bv) || ov > bv || (ov == bv && oi < bi))) || (isnan(ov) && isnan(bv) && oi < bi);
        if (better) {
            bv = ov;
            bi = oi;
        }
    }
    if (gpu_lane() == 0) {
        sv[gpu_warp()] = bv;
        si[gpu_warp()] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = sv[0];
        int i = si[0];
        for (int w = 1; w < gpu_nwarps(); w++) {
            float ov = sv[w];
            int oi = si[w];
            bool better = (!isnan(ov) && (isnan(v) || ov > v || (ov == v && oi < i))) || (isnan(ov) && isnan(v) && oi < i);
            if (better) {
                v = ov;
                i = oi;
            }
        }
        ((int32_t *)ids.p)[b * ids.stride[0]] = isnan(v) ? 0 : i;
    }
}

/* Sort keys: ascending order = descending logit (NaN as -inf, -0 as +0), then ascending id. */
static __global__ void k_sample_keys(dsrt_gpu_tensor lg, unsigned long long *keys, int64_t B)
{
    int64_t V = lg.shape[1];
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= V) return;
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
        float v = nan_to_low(((const float *)lg.p)[b * lg.stride[0] + i]);
        if (v == 0.0f) v = 0.0f;
        uint32_t u = gpu_f_bits(v);
        uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        keys[b * V + i] = ((unsigned long long)(~ord) << 32) | (unsigned long long)(uint32_t)i;
    }
}

static __global__ void k_seg_offsets(int *off, int64_t B, int64_t V)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= B) off[i] = (int)(i * V);
}

GPU_DEV double blk_sum_d(double v, double *sh)
{
    return gpu_block_sum_d(v, sh);
}

/* Inclusive scan of one value per thread (blockDim <= 1024); sh holds blockDim doubles. */
GPU_DEV double blk_scan_d(double v, double *sh)
{
    __syncthreads();
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = 1; s < (int)blockDim.x; s *= 2) {
        double o = (int)threadIdx.x >= s ? sh[threadIdx.x - s] : 0.0;
        __syncthreads();
        sh[threadIdx.x] += o;
        __syncthreads();
    }
    return sh[threadIdx.x];
}

static __global__ void __launch_bounds__(1024) k_sample_pick(dsrt_gpu_tensor lg, dsrt_gpu_tensor u, dsrt_gpu_tensor ids,
                                                             const unsigned long long *keys, float temperature,
                                                             int top_k, float top_p, float min_p)
{
    __shared__ double sh[1024];
    __shared__ double red[64];
    __shared__ int first;
    int64_t b = blockIdx.x, V = lg.shape[1];
    const unsigned long long *kr = keys + b * V;
    const float *row = (const float *)lg.p + b * lg.stride[0];
    double temp = (double)temperature;
    double v0 = (double)nan_to_low(row[(uint32_t)(kr[0] & 0xffffffffu)]);
#define PR_NUM(i) exp(((double)nan_to_low(row[(uint32_t)(kr[(i)] & 0xffffffffu)]) - v0) / temp)
    double part = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) part += PR_NUM(i);
    double total = blk_sum_d(part, red);
    int64_t n = V;
    if (top_k > 0 && top_k < n) n = top_k;
    if (min_p > 0) {
        double thr = (double)min_p * (PR_NUM(0) / total);
        if (threadIdx.x == 0) first = 0x7fffffff;
        __syncthreads();
        for (int64_t i0 = 1; i0 < n; i0 += blockDim.x) {
            int64_t i = i0 + threadIdx.x;
            if (i < n && PR_NUM(i) / total < thr) atomicMin(&first, (int)i);
            __syncthreads();
            if (first != 0x7fffffff) break;
        }
        if (first != 0x7fffffff) n = first;
        __syncthreads();
    }
    double base = 0;
    if (top_p < 1) {
        int64_t m = n;
        for (int64_t i0 = 0; i0 < n; i0 += blockDim.x) {
            int64_t i = i0 + threadIdx.x;
            double c = base + blk_scan_d(i < n ? PR_NUM(i) / total : 0.0, sh);
            if (threadIdx.x == 0) first = 0x7fffffff;
            __syncthreads();
            if (i < n && c >= (double)top_p) atomicMin(&first, (int)i);
            __syncthreads();
            if (first != 0x7fffffff) {
                m = first + 1;
                break;
            }
            base = base + sh[blockDim.x - 1];
        }
        n = m;
        __syncthreads();
    }
    double kept_part = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) kept_part += PR_NUM(i) / total;
    double kept = blk_sum_d(kept_part, red);
    double target = (double)((const float *)u.p)[b * u.stride[0]] * kept;
    int pick = -1;
    base = 0;
    for (int64_t i0 = 0; i0 < n; i0 += blockDim.x) {
        int64_t i = i0 + threadIdx.x;
        double c = base + blk_scan_d(i < n ? PR_NUM(i) / total : 0.0, sh);
        if (threadIdx.x == 0) first = 0x7fffffff;
        __syncthreads();
        if (i < n && c > target) atomicMin(&first, (int)i);
        __syncthreads();
        if (first != 0x7fffffff) {
            pick = first;
            break;
        }
        base = base + sh[blockDim.x - 1];
    }
    if (pick < 0) pick = (int)(n - 1);
#undef PR_NUM
    if (threadIdx.x == 0) ((int32_t *)ids.p)[b * ids.stride[0]] = (int32_t)(uint32_t)(kr[pick] & 0xffffffffu);
}

extern "C" dsrt_status dsrt_gpu_sample(const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor lg = dsrt_gpu_tensor_of(&op->in[0]), u = dsrt_gpu_tensor_of(&op->in[1]),
                    ids = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t B = lg.shape[0], V = lg.shape[1];
    if (B == 0) return DSRT_OK;
    gpuStream_t s = gpu_stream(c);
    if (B > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "sample: too many rows");
    if (op->p.temperature <= 0) {
        k_argmax<<<(unsigned)B, 1024, 0, s>>>(lg, ids);
        GPU_CHECK_LAUNCH("sample", "k_argmax");
        return DSRT_OK;
    }
    if (B * V > 0x7fffffff) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "sample: %lld logits exceed the sort", (long long)(B * V));
    unsigned long long *k_in, *k_out;
    int *off;
    DSRT_TRY(gpu_scratch(c, sizeof(unsigned long long) * (size_t)(B * V), (void **)&k_in));
    DSRT_TRY(gpu_scratch(c, sizeof(unsigned long long) * (size_t)(B * V), (void **)&k_out));
    DSRT_TRY(gpu_scratch(c, sizeof(int) * (size_t)(B + 1), (void **)&off));
    dim3 grid(gpu_blocks(V, 256), (unsigned)(B < 65535 ? B : 65535));
    k_sample_keys<<<grid, 256, 0, s>>>(lg, k_in, B);
    GPU_CHECK_LAUNCH("sample", "k_sample_keys");
    k_seg_offsets<<<gpu_blocks(B + 1, 256), 256, 0, s>>>(off, B, V);
    GPU_CHECK_LAUNCH("sample", "k_seg_offsets");
    size_t temp_bytes = 0;
    gpuError_t e = gpu_segmented_sort_u64(NULL, &temp_bytes, k_in, k_out, (int)(B * V), (int)B, off, off + 1, s);
    if (e != gpuSuccess) return dsrt_error(DSRT_CODE_DEVICE, "sample: sort setup failed: %s", gpuGetErrorString(e));
    void *temp;
    DSRT_TRY(gpu_scratch(c, temp_bytes, &temp));
    e = gpu_segmented_sort_u64(temp, &temp_bytes, k_in, k_out, (int)(B * V), (int)B, off, off + 1, s);
    if (e != gpuSuccess) return dsrt_error(DSRT_CODE_DEVICE, "sample: sort failed: %s", gpuGetErrorString(e));
    k_sample_pick<<<(unsigned)B, 1024, 0, s>>>(lg, u, ids, k_out, op->p.temperature, op->p.top_k, op->p.top_p,
                                               op->p.min_p);
    GPU_CHECK_LAUNCH("sample", "k_sample_pick");
    return DSRT_OK;
}
