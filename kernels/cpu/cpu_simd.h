/* Hand-vectorized kernels for CPUs that have the instructions (checked at run time). */
#ifndef DSRT_CPU_SIMD_H
#define DSRT_CPU_SIMD_H

#include <stdbool.h>
#include <stdint.h>

bool dsrt_cpu_avx2(void);
float dsrt_cpu_dot_e4m3_avx2(const float *x, const uint8_t *w, int64_t n);
float dsrt_cpu_dot_bf16_avx2(const float *x, const uint16_t *w, int64_t n);

#endif
