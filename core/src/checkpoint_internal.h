/* The checkpoint object, shared by the safetensors reader and the synthetic generator. */
#ifndef DSRT_CHECKPOINT_INTERNAL_H
#define DSRT_CHECKPOINT_INTERNAL_H

#include "dsrt/file_util.h"
#include "dsrt/safetensors.h"

typedef struct {
    char *path;
    dsrt_mapped_file map;
    int borrowed; /* memory the caller owns (an embedded checkpoint): not unmapped */
} dsrt_shard;

struct dsrt_checkpoint {
    char dir[1024];
    dsrt_shard *shards;
    int nshards;
    dsrt_st_tensor *tensors; /* sorted by name once finished */
    size_t n, cap;
    uint64_t seed;           /* synthetic checkpoints: tensors without data are generated from it */
};

dsrt_status dsrt_checkpoint_new(const char *dir, dsrt_checkpoint **out);
dsrt_status dsrt_checkpoint_add_tensor(dsrt_checkpoint *ck, dsrt_st_tensor *t);
/* Sorts the tensor table and rejects duplicate names. */
dsrt_status dsrt_checkpoint_finish(dsrt_checkpoint *ck);
dsrt_status dsrt_checkpoint_generate(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, void *dst);

#endif
