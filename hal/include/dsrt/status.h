/* dsrt status values: every call that can fail returns one.
 *
 * A dsrt_status is NULL on success (DSRT_OK). On failure it points to a record holding a code and a
 * message that names the object at fault (file, tensor, value, expected vs found). The caller owns a
 * non-NULL status and releases it with dsrt_status_free (or passes it up). Library code never aborts. */
#ifndef DSRT_STATUS_H
#define DSRT_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_code {
    DSRT_CODE_OK = 0,
    DSRT_CODE_INVALID_ARGUMENT, /* a value, dtype or shape the call cannot accept */
    DSRT_CODE_OUT_OF_RANGE,     /* an index, offset or view outside its object */
    DSRT_CODE_NOT_FOUND,        /* a named backend, tensor, file or device that does not exist */
    DSRT_CODE_UNIMPLEMENTED,    /* valid request the backend does not implement */
    DSRT_CODE_UNAVAILABLE,      /* no device, no driver, toolkit missing at run time */
    DSRT_CODE_RESOURCE_EXHAUSTED, /* out of memory, allocation above the device limit */
    DSRT_CODE_DATA_LOSS,        /* a file that is truncated or malformed */
    DSRT_CODE_IO,               /* the operating system refused a read, write or mapping */
    DSRT_CODE_DEVICE,           /* the device or its driver failed while running work */
    DSRT_CODE_INCOMPATIBLE,     /* plugin ABI or file format version mismatch */
    DSRT_CODE_INTERNAL          /* a broken invariant in dsrt itself */
} dsrt_code;

typedef struct dsrt_status_rec *dsrt_status;

#define DSRT_OK ((dsrt_status)0)

#if defined(__GNUC__)
#define DSRT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DSRT_MUST_USE __attribute__((warn_unused_result))
#else
#define DSRT_PRINTF(f, a)
#define DSRT_MUST_USE
#endif

/* A new failure status with a printf-style message. Never returns NULL: if memory for the record
 * cannot be had, a static out-of-memory status is returned (dsrt_status_free ignores it). */
dsrt_status dsrt_error(dsrt_code code, const char *fmt, ...) DSRT_PRINTF(2, 3);
dsrt_status dsrt_errorv(dsrt_code code, const char *fmt, va_list ap);

/* Prefixes context ("loading layer 3: ") to a failure; returns it (or DSRT_OK unchanged). */
dsrt_status dsrt_status_wrap(dsrt_status st, const char *fmt, ...) DSRT_PRINTF(2, 3);

dsrt_code dsrt_status_code(dsrt_status st);
const char *dsrt_status_message(dsrt_status st); /* "" for DSRT_OK */
const char *dsrt_code_name(dsrt_code code);
void dsrt_status_free(dsrt_status st);

/* Returns the code and frees the status: for callers that only branch on the kind of failure. */
dsrt_code dsrt_status_consume(dsrt_status st);

#define DSRT_TRY(expr)                                                                             \
    do {                                                                                           \
        dsrt_status dsrt_try_st_ = (expr);                                                         \
        if (dsrt_try_st_ != DSRT_OK) return dsrt_try_st_;                                          \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
