/* The normalized Walsh-Hadamard transform: y = x . H_n / sqrt(n), H in Sylvester order
 * (H[i][j] = (-1)^popcount(i & j)). It is orthogonal and its own inverse. The indexer rotates
 * queries and keys with it before FP8 quantization (n = 128). */
#ifndef DSRT_HADAMARD_H
#define DSRT_HADAMARD_H

#include <stdint.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* In place, in fp32 (fast transform, O(n log n)). Fails unless n is a power of two >= 1. */
dsrt_status dsrt_hadamard_f32(float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
