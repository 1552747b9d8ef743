/* Token sampling: greedy, temperature, top-k, min-p, top-p, from a seeded random stream. One definition
 * serves host-side generation and the CPU backend's DSRT_OP_SAMPLE (ops.h states the rule). */
#ifndef DSRT_SAMPLER_H
#define DSRT_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsrt_sampling {
    float temperature; /* <= 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
} dsrt_sampling;

/* Validates the parameters (names the one at fault). */
dsrt_status dsrt_sampling_check(const dsrt_sampling *p);

/* Scratch bytes dsrt_sample_row needs for a vocabulary of V. */
size_t dsrt_sample_scratch_bytes(int64_t V);

/* The token DSRT_OP_SAMPLE picks from one row of logits with the uniform number u in [0, 1). */
int32_t dsrt_sample_row(const float *logits, int64_t V, const dsrt_sampling *p, float u, void *scratch);

/* A reproducible stream of uniform numbers (splitmix64): the same seed gives the same tokens. */
typedef struct dsrt_random {
    uint64_t state;
} dsrt_random;

void dsrt_random_seed(dsrt_random *r, uint64_t seed);
float dsrt_random_uniform(dsrt_random *r); /* [0, 1), 24 random bits */

#ifdef __cplusplus
}
#endif
#endif
