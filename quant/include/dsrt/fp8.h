/* FP8 codecs, bit-exact: e4m3 ("float8_e4m3fn": bias 7, max 448, no infinities, NaN = S.1111.111)
 * and e5m2 (bias 15, IEEE-like: infinities, NaNs). */
#ifndef DSRT_FP8_H
#define DSRT_FP8_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

float dsrt_e4m3_to_f32(uint8_t v);
/* Round to nearest even; magnitudes above 448 saturate to +-448 (the quantization rule: SPEC §6),
 * infinities too; NaN gives 0x7F with the input's sign (0xFF for negative NaN). */
uint8_t dsrt_f32_to_e4m3(float x);

float dsrt_e5m2_to_f32(uint8_t v);
/* Round to nearest even; values that round past 57344 become +-inf; NaN stays NaN (0x7E / 0xFE). */
uint8_t dsrt_f32_to_e5m2(float x);
/* As dsrt_f32_to_e5m2 but overflow saturates to +-57344, infinities included (like PTX
 * cvt.satfinite); NaN stays NaN. */
uint8_t dsrt_f32_to_e5m2_sat(float x);

/* Every code's value, for table-driven dequantization inside kernels (bit-identical to the
 * decoders above, NaN entries included: they carry the code's sign). */
extern const float dsrt_e4m3_values[256];
extern const float dsrt_e5m2_values[256];

#ifdef __cplusplus
}
#endif
#endif
