/* Shared helpers for the Check suites. */
#ifndef DSRT_TESTUTIL_H
#define DSRT_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "dsrt/dsrt.h"

/* Fails the test with the status message when st is an error. */
#define ck_ok(expr)                                                                                                   \
    do {                                                                                                              \
        dsrt_status ck_st_ = (expr);                                                                                  \
        if (ck_st_) {                                                                                                 \
            ck_abort_msg("%s failed: %s", #expr, dsrt_status_message(ck_st_));                                       \
        }                                                                                                             \
    } while (0)

/* Expects a failure with `code` whose message contains `needle`. */
#define ck_fails(expr, code, needle)                                                                                  \
    do {                                                                                                              \
        dsrt_status ck_st_ = (expr);                                                                                  \
        ck_assert_msg(ck_st_ != DSRT_OK, "%s succeeded but should fail", #expr);                                      \
        ck_assert_msg(dsrt_status_code(ck_st_) == (code), "%s: code %s, expected %s (%s)", #expr,                     \
                      dsrt_code_name(dsrt_status_code(ck_st_)), dsrt_code_name(code), dsrt_status_message(ck_st_));  \
        ck_assert_msg(strstr(dsrt_status_message(ck_st_), (needle)) != NULL, "%s: message '%s' lacks '%s'", #expr,    \
                      dsrt_status_message(ck_st_), (needle));                                                         \
        dsrt_status_free(ck_st_);                                                                                     \
    } while (0)

/* Deterministic pseudo-random numbers for test inputs (splitmix64). */
typedef struct {
    uint64_t s;
} dsrt_rng;
uint64_t dsrt_rng_next(dsrt_rng *r);
float dsrt_rng_uniform(dsrt_rng *r);          /* [0, 1) */
float dsrt_rng_normal(dsrt_rng *r);           /* N(0, 1) */

/* Runs a suite with Check's runner, printing its summary; returns the process exit status. */
int dsrt_run_suite(Suite *s);

#endif
