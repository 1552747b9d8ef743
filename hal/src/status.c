/* Status records: heap-allocated code + message; a static record stands in when memory is short. */
#include "dsrt/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dsrt_status_rec {
    dsrt_code code;
    int is_static;
    char *message;
};

/* Immutable: returned when a record cannot be allocated; never freed. */
static struct dsrt_status_rec dsrt_oom_status = {DSRT_CODE_RESOURCE_EXHAUSTED, 1,
                                                 (char *)"out of host memory while reporting an error"};

dsrt_status dsrt_errorv(dsrt_code code, const char *fmt, va_list ap)
{
    if (code == DSRT_CODE_OK) code = DSRT_CODE_INTERNAL; /* an error must not look like success */
    struct dsrt_status_rec *st = malloc(sizeof *st);
    if (!st) return &dsrt_oom_status;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    st->message = malloc((size_t)n + 1);
    if (!st->message) {
        free(st);
        return &dsrt_oom_status;
    }
    vsnprintf(st->message, (size_t)n + 1, fmt, ap);
    st->code = code;
    st->is_static = 0;
    return st;
}

dsrt_status dsrt_error(dsrt_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsrt_status st = dsrt_errorv(code, fmt, ap);
    va_end(ap);
    return st;
}

dsrt_status dsrt_status_wrap(dsrt_status st, const char *fmt, ...)
{
    if (st == DSRT_OK || st->is_static) return st;
    va_list ap;
    va_start(ap, fmt);
    char prefix[512];
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t a = strlen(prefix), b = strlen(st->message);
    char *m = malloc(a + 2 + b + 1);
    if (!m) return st; /* keep the original message rather than lose it */
    memcpy(m, prefix, a);
    memcpy(m + a, ": ", 2);
    memcpy(m + a + 2, st->message, b + 1);
    free(st->message);
    st->message = m;
    return st;
}

dsrt_code dsrt_status_code(dsrt_status st) { return st ? st->code : DSRT_CODE_OK; }

const char *dsrt_status_message(dsrt_status st) { return st ? st->message : ""; }

void dsrt_status_free(dsrt_status st)
{
    if (!st || st->is_static) return;
    free(st->message);
    free(st);
}

dsrt_code dsrt_status_consume(dsrt_status st)
{
    dsrt_code c = dsrt_status_code(st);
    dsrt_status_free(st);
    return c;
}

const char *dsrt_code_name(dsrt_code code)
{
    switch (code) {
    case DSRT_CODE_OK: return "ok";
    case DSRT_CODE_INVALID_ARGUMENT: return "invalid argument";
    case DSRT_CODE_OUT_OF_RANGE: return "out of range";
    case DSRT_CODE_NOT_FOUND: return "not found";
    case DSRT_CODE_UNIMPLEMENTED: return "unimplemented";
    case DSRT_CODE_UNAVAILABLE: return "unavailable";
    case DSRT_CODE_RESOURCE_EXHAUSTED: return "resource exhausted";
    case DSRT_CODE_DATA_LOSS: return "data loss";
    case DSRT_CODE_IO: return "i/o error";
    case DSRT_CODE_DEVICE: return "device error";
    case DSRT_CODE_INCOMPATIBLE: return "incompatible";
    case DSRT_CODE_INTERNAL: return "internal error";
    }
    return "unknown";
}
