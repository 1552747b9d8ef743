/* A deliberately broken backend for testing `dsrt conform` itself: the suite must catch each planted
 * bug, name it, and still pass what is right. It is the CPU backend under another name (its vtable,
 * which libdsrt exports for the registry), with one mutation per op:
 *
 *   rms_norm  a value 1% off (or, with a strided output, a byte written into the row padding)
 *   add       one byte written just past the output view (guard damage)
 *   swiglu    a different result on every run (not deterministic)
 *   convert   the input modified
 *   hadamard  refused by supports_op with a reason (must be a skip with that reason)
 *   topk      equal scores returned in reverse position order (legal: ties may swap; must pass)
 *
 * Everything else passes through and must pass. tests/CMakeLists.txt runs the suite on it and
 * checks the report (tests/conform/run_conform.cmake). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "dsrt/dsrt.h"

const dsrt_backend_vtable *dsrt_cpu_backend_vtable(void);

static dsrt_backend_vtable mutant_vt;
static const dsrt_backend_vtable *cpu;
static atomic_int mutant_runs;

static bool mutant_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    if (op->kind == DSRT_OP_HADAMARD) {
        snprintf(why, why_len, "mutant backend: hadamard is refused on purpose");
        return false;
    }
    return cpu->supports_op(dctx, op, why, why_len);
}

static char *host(const dsrt_tensor *t) { return (char *)dsrt_buffer_host_ptr(t->buf) + t->offset; }

static void reverse_ties(const dsrt_op *op)
{
    const dsrt_tensor *sc = &op->in[0], *ix = &op->out[0];
    int64_t T = ix->shape[0], k = ix->shape[1];
    for (int64_t t = 0; t < T; t++) {
        const float *s = (const float *)host(sc) + t * sc->stride[0];
        int32_t *o = (int32_t *)host(ix) + t * ix->stride[0];
        for (int64_t a = 0; a < k;) {
            int64_t b = a + 1;
            while (b < k && o[a] >= 0 && o[b] >= 0 && s[o[b]] == s[o[a]]) b++;
            for (int64_t i = a, j = b - 1; i < j; i++, j--) {
                int32_t x = o[i];
                o[i] = o[j];
                o[j] = x;
            }
            a = b;
        }
    }
}

static dsrt_status mutant_enqueue(void *sctx, const dsrt_op *op)
{
    DSRT_TRY(cpu->enqueue_op(sctx, op));
    DSRT_TRY(cpu->stream_sync(sctx)); /* mutations edit the finished result in host memory */
    const dsrt_tensor *y = &op->out[0];
    int64_t n = dsrt_tensor_numel(y);
    switch (op->kind) {
    case DSRT_OP_RMS_NORM:
        if (n == 0) break;
        if (y->stride[0] > y->shape[1]) {
            host(y)[dsrt_dtype_size(y->dtype) * (size_t)y->shape[1]] ^= 0x5a; /* first padding byte */
        } else if (y->dtype == DSRT_F32) {
            ((float *)host(y))[0] *= 1.01f;
        } else {
            host(y)[1] ^= 0x01; /* bf16/f16 high byte: an exponent step */
        }
        break;
    case DSRT_OP_ADD: host(y)[dsrt_tensor_nbytes(y)] ^= 0xff; break;
    case DSRT_OP_SWIGLU:
        if (n) host(y)[0] ^= (char)(1 + (atomic_fetch_add(&mutant_runs, 1) & 3));
        break;
    case DSRT_OP_CONVERT:
        if (dsrt_tensor_numel(&op->in[0])) host(&op->in[0])[0] ^= 0x10;
        break;
    case DSRT_OP_TOPK: reverse_ties(op); break;
    default: break;
    }
    return DSRT_OK;
}

__attribute__((visibility("default"))) const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version)
{
    if (host_abi_version != DSRT_BACKEND_ABI_VERSION) return NULL;
    cpu = dsrt_cpu_backend_vtable();
    mutant_vt = *cpu;
    mutant_vt.name = "mutant";
    mutant_vt.supports_op = mutant_supports;
    mutant_vt.enqueue_op = mutant_enqueue;
    return &mutant_vt;
}
