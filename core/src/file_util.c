#include "dsrt/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

dsrt_status dsrt_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dsrt_error(errno == ENOENT ? DSRT_CODE_NOT_FOUND : DSRT_CODE_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dsrt_error(DSRT_CODE_IO, "%s: not a regular file", path);
    }
    if ((size_t)sb.st_size > max_bytes) {
        fclose(f);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: %lld bytes is larger than the %zu allowed", path,
                          (long long)sb.st_size, max_bytes);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        fclose(f);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory reading %lld bytes", path, (long long)sb.st_size);
    }
    size_t n = fread(buf, 1, (size_t)sb.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err || n != (size_t)sb.st_size) {
        free(buf);
        return dsrt_error(DSRT_CODE_IO, "%s: read failed", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return DSRT_OK;
}

dsrt_status dsrt_map_file(const char *path, dsrt_mapped_file *out)
{
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dsrt_error(errno == ENOENT ? DSRT_CODE_NOT_FOUND : DSRT_CODE_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsrt_error(DSRT_CODE_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: the file is empty", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return dsrt_error(DSRT_CODE_IO, "%s: mmap failed: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)sb.st_size;
    return DSRT_OK;
}

void dsrt_unmap_file(dsrt_mapped_file *m)
{
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

dsrt_status dsrt_path_join(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "path '%s/%s' is too long", dir, name);
    return DSRT_OK;
}

int dsrt_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}
