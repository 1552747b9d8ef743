#include "testutil.h"

#include <math.h>
#include <stdlib.h>

uint64_t dsrt_rng_next(dsrt_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float dsrt_rng_uniform(dsrt_rng *r) { return (float)(dsrt_rng_next(r) >> 40) / 16777216.0f; }

float dsrt_rng_normal(dsrt_rng *r)
{
    float u1 = dsrt_rng_uniform(r), u2 = dsrt_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

int dsrt_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
