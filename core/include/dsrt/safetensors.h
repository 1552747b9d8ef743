/* Hugging Face safetensors checkpoints: one file or shards with model.safetensors.index.json, memory
 * mapped; dtype and shape from each header; every offset checked against the file. */
#ifndef DSRT_SAFETENSORS_H
#define DSRT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt/dtype.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsrt_st_tensor {
    char *name;
    char dtype_name[16];  /* as written in the header */
    int dtype_known;      /* dtype_name parsed into dtype */
    dsrt_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;     /* inside the mapping */
    size_t nbytes;
    int shard;            /* index into the checkpoint's shard list */
} dsrt_st_tensor;

typedef struct dsrt_checkpoint dsrt_checkpoint;

/* Opens `dir`/model.safetensors.index.json and its shards, or `dir`/model.safetensors. */
dsrt_status dsrt_checkpoint_open(const char *dir, dsrt_checkpoint **out);
/* A checkpoint of one safetensors file already in memory (e.g. compiled into the program), which must
 * outlive the checkpoint; `name` appears in messages. */
dsrt_status dsrt_checkpoint_open_memory(const char *name, const void *data, size_t size, dsrt_checkpoint **out);
void dsrt_checkpoint_close(dsrt_checkpoint *ck);

size_t dsrt_checkpoint_count(const dsrt_checkpoint *ck);
const dsrt_st_tensor *dsrt_checkpoint_at(const dsrt_checkpoint *ck, size_t i);
const char *dsrt_checkpoint_shard_path(const dsrt_checkpoint *ck, int shard);
/* NULL when absent. */
const dsrt_st_tensor *dsrt_checkpoint_find(const dsrt_checkpoint *ck, const char *name);
/* Fails (NOT_FOUND) naming the tensor and the checkpoint folder when absent, (INVALID_ARGUMENT) when
 * its dtype is unknown to dsrt. */
dsrt_status dsrt_checkpoint_get(const dsrt_checkpoint *ck, const char *name, const dsrt_st_tensor **out);
/* Total bytes of tensor data. */
size_t dsrt_checkpoint_bytes(const dsrt_checkpoint *ck);

/* A generated checkpoint with every tensor a model of this configuration needs, filled on demand with
 * deterministic random values of realistic scale (FP8 e4m3 with power-of-two 128x128 scales when the
 * config is FP8). Benchmarks use it for full-width models that do not fit a test machine's disk. */
struct dsrt_model_config;
dsrt_status dsrt_checkpoint_synthetic(const struct dsrt_model_config *cfg, uint64_t seed, dsrt_checkpoint **out);
/* The tensor's bytes: a pointer into the mapping (*owned = 0), or for generated tensors a heap buffer
 * the caller frees (*owned = 1). */
dsrt_status dsrt_checkpoint_data(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, const void **data, int *owned);
/* Generated FP8 tensors repeat one block of DSRT_SYNTHETIC_FP8_PERIOD valid codes (a prime count, so
 * the rows of a matrix whose width is a power-of-two multiple all differ), and loaders fill device memory
 * from the block instead of generating and copying gigabytes. For such a tensor: writes the block's
 * first min(period, tensor bytes) codes to `block` (DSRT_SYNTHETIC_FP8_PERIOD bytes), sets *period to
 * that count and returns 1; byte i of the tensor is block[i % *period]. Returns 0 for other tensors. */
#define DSRT_SYNTHETIC_FP8_PERIOD 65521
int dsrt_checkpoint_fp8_period(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, uint8_t *block, size_t *period);

#ifdef __cplusplus
}
#endif
#endif
