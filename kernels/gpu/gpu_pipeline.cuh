/* Hopper warp specialization (sm_90a): shared-memory barriers between a producer warpgroup and its
 * consumers, named barriers for a subset of a block's warps, and the register reallocation that
 * lets the consumers hold big accumulators while the producer runs on few registers.
 *
 * Like gpu_wgmma.cuh, everything compiles to nothing outside DSRT_GPU_HAVE_WGMMA. */
#ifndef DSRT_GPU_PIPELINE_CUH
#define DSRT_GPU_PIPELINE_CUH

#include "gpu_mma.cuh"
#include "gpu_wgmma.cuh"

#ifdef DSRT_GPU_HAVE_WGMMA
/* An mbarrier completing a phase once `count` threads arrived; init by one thread, then a block barrier. */
GPU_DEV void gpu_mbar_init(uint64_t *bar, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n"
                 "fence.mbarrier_init.release.cluster;\n" ::"r"(gpu_smem_addr(bar)),
                 "r"(count)
                 : "memory");
}

/* Arrival (release: this thread's earlier shared-memory writes are seen by whoever waits). */
GPU_DEV void gpu_mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(gpu_smem_addr(bar)) : "memory");
}

/* Waits for the phase of parity `parity` to complete (acquire at block scope). A peer block's
 * st.async stores counted on the barrier are in this block's shared memory once the phase completes
 * (the tx count is the handover, as with a multicast TMA); a cluster-scope acquire would add an L1
 * invalidation (CCTL.IVALL) to every wait, which ncu found on the decode kernel's hottest lines. */
GPU_DEV void gpu_mbar_wait(uint64_t *bar, unsigned parity)
{
    uint32_t done;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(gpu_smem_addr(bar)), "r"(parity)
                     : "memory");
    } while (!done);
    __syncwarp(); /* lanes leave the spin at different times; what follows (wgmma, bar.sync) wants the warp whole */
}

/* 16 bytes from global memory through the non-coherent path, asking L2 to fetch the surrounding 256
 * bytes (a cached row is read in 64-byte pieces by four threads; the rest of it follows shortly). */
GPU_DEV uint4 gpu_ld_nc_l2_256(const void *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* ---- clusters: two blocks sharing each other's shared memory ---- */
/* Every thread of the cluster (none may have exited) waits for all others; orders memory cluster-wide. */
GPU_DEV void gpu_cluster_sync(void)
{
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

/* The address in block `rank`'s shared memory of what sits at p in this block's. */
GPU_DEV uint32_t gpu_peer_addr(const void *p, unsigned rank)
{
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(gpu_smem_addr(p)), "r"(rank));
    return r;
}

/* 16 (or 4) bytes into another block's shared memory, counted on its mbarrier (both peer addresses). */
GPU_DEV void gpu_st_async16(uint32_t addr, uint4 v, uint32_t bar)
{
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1,%2,%3,%4}, [%5];\n" ::"r"(addr),
                 "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(bar)
                 : "memory");
}
GPU_DEV void gpu_st_async4(uint32_t addr, uint32_t v, uint32_t bar)
{
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(addr), "r"(v),
                 "r"(bar)
                 : "memory");
}

/* Arrival on another block's mbarrier (a peer address), releasing this thread's earlier accesses at
 * block scope, as CUTLASS's cluster barriers do: the .cluster form costs a GPU-wide memory barrier. */
GPU_DEV void gpu_mbar_arrive_peer(uint32_t bar)
{
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

/* Arrival that also expects `bytes` more of asynchronous stores before the phase completes. */
GPU_DEV void gpu_mbar_arrive_expect(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(gpu_smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}

/* Brings the 128-byte line holding p into L2 (no registers, nothing waits for it). */
GPU_DEV void gpu_prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

/* The calling warpgroup gives back registers down to N, or waits for them up to N, per thread. The
 * counts of all warpgroups must fit what the block was launched with. */
template <int N> GPU_DEV void gpu_regs_dec(void) { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> GPU_DEV void gpu_regs_inc(void) { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }
#endif /* DSRT_GPU_HAVE_WGMMA */

#endif
