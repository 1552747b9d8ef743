/* AVX2 versions of the FP8 and bf16 dot products. They keep the portable code's 16 lanes and order of
 * additions (and use no FMA), so results are bit-identical to it; they only run where the CPU has AVX2. */
#include <stdint.h>
#include <string.h>

#include "cpu_simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define DSRT_AVX2 __attribute__((target("avx2")))

/* e4m3 bytes -> f32: sign to bit 31, exponent and mantissa to bits 26..20, times 2^120. */
DSRT_AVX2 static inline __m256 e4m3x8(__m128i bytes)
{
    __m256i v = _mm256_cvtepu8_epi32(bytes);
    __m256i s = _mm256_and_si256(_mm256_slli_epi32(v, 24), _mm256_set1_epi32((int)0x80000000u));
    __m256i m = _mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32(0x07f00000));
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(s, m)), _mm256_set1_ps(0x1p120f));
}

DSRT_AVX2 static float finish(__m256 a0, __m256 a1, float s)
{
    float acc[16];
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

DSRT_AVX2 static float dot_e4m3_avx2(const float *x, const uint8_t *w, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(w + i));
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(x + i), e4m3x8(b)));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), e4m3x8(_mm_srli_si128(b, 8))));
    }
    float s = 0;
    for (; i < n; i++) {
        uint32_t u = ((uint32_t)(w[i] & 0x80) << 24) | ((uint32_t)(w[i] & 0x7f) << 20);
        float f;
        memcpy(&f, &u, sizeof f);
        s += x[i] * (f * 0x1p120f);
    }
    return finish(a0, a1, s);
}

DSRT_AVX2 static float dot_bf16_avx2(const float *x, const uint16_t *w, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(w + i));
        __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
        __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(x + i), lo));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), hi));
    }
    float s = 0;
    for (; i < n; i++) {
        uint32_t u = (uint32_t)w[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        s += x[i] * f;
    }
    return finish(a0, a1, s);
}

bool dsrt_cpu_avx2(void) { return __builtin_cpu_supports("avx2"); }
float dsrt_cpu_dot_e4m3_avx2(const float *x, const uint8_t *w, int64_t n) { return dot_e4m3_avx2(x, w, n); }
float dsrt_cpu_dot_bf16_avx2(const float *x, const uint16_t *w, int64_t n) { return dot_bf16_avx2(x, w, n); }
#else
bool dsrt_cpu_avx2(void) { return false; }
float dsrt_cpu_dot_e4m3_avx2(const float *x, const uint8_t *w, int64_t n) { return 0; }
float dsrt_cpu_dot_bf16_avx2(const float *x, const uint16_t *w, int64_t n) { return 0; }
#endif
