/* Small file helpers with errors that name the file. */
#ifndef DSRT_FILE_UTIL_H
#define DSRT_FILE_UTIL_H

#include <stddef.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole file (at most max_bytes) into a NUL-terminated heap string. */
dsrt_status dsrt_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* A read-only memory mapping of a whole file. */
typedef struct dsrt_mapped_file {
    void *data;
    size_t size;
} dsrt_mapped_file;

dsrt_status dsrt_map_file(const char *path, dsrt_mapped_file *out);
void dsrt_unmap_file(dsrt_mapped_file *m);

/* path = dir + "/" + name into buf; fails when it does not fit. */
dsrt_status dsrt_path_join(char *buf, size_t len, const char *dir, const char *name);
int dsrt_file_exists(const char *path);

#ifdef __cplusplus
}
#endif
#endif
