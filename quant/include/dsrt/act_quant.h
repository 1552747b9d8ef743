/* The official FP8 activation quantization (DeepSeek-V3.2 inference kernel `act_quant`), per row and
 * block of `block` values (128):
 *     amax = max(max|x|, 1e-4)
 *     s    = pow2 ? 2^ceil(log2(amax * fl(1/448))) : amax * fl(1/448)
 *     q    = e4m3(clamp(x / s, -448, 448))
 * fl(1/448) is 1/448 rounded to f32, and the ceil reads the f32 bits of the product exactly as the
 * official kernel does (exponent, plus one when any mantissa bit is set). */
#ifndef DSRT_ACT_QUANT_H
#define DSRT_ACT_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSRT_FP8_E4M3_MAX 448.0f
#define DSRT_ACT_AMAX_FLOOR 1e-4f

/* The scale for a block whose largest magnitude is amax (before the 1e-4 floor; a NaN amax takes
 * the floor). With pow2 an infinite amax gives 2^127, the largest UE8M0 scale (the official kernel's
 * bit trick would give +inf). */
float dsrt_act_scale(float amax, bool pow2);

/* Quantizes one row of n values (n > 0; the last block may be partial): q[n] e4m3 codes and
 * scales[ceil(n/block)]. NaN values are left out of amax and quantize to the e4m3 NaN code.
 * block < 1 is taken as 128 (this function has no status to report it). */
void dsrt_act_quant_row(const float *x, int64_t n, int block, bool pow2, uint8_t *q, float *scales);

#ifdef __cplusplus
}
#endif
#endif
