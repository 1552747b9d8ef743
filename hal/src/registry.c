/* The backend registry: built-in backends, plugins loaded with dlopen, lookup by name. This is the only
 * process-wide mutable state in dsrt; a mutex guards it and entries are never removed. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsrt/registry.h"
#include "hal_internal.h"

#define DSRT_MAX_BACKENDS 32

static pthread_mutex_t dsrt_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t dsrt_registry_once = PTHREAD_ONCE_INIT;
static dsrt_backend dsrt_backends[DSRT_MAX_BACKENDS];
static int dsrt_backend_n;

/* Built-in backends: each compiled-in backend exports one vtable getter. */
const dsrt_backend_vtable *dsrt_cpu_backend_vtable(void);
#ifdef DSRT_HAVE_OPENCL
const dsrt_backend_vtable *dsrt_opencl_backend_vtable(void);
#endif
#ifdef DSRT_HAVE_CUDA
const dsrt_backend_vtable *dsrt_cuda_backend_vtable(void);
#endif
#ifdef DSRT_HAVE_HIP
const dsrt_backend_vtable *dsrt_hip_backend_vtable(void);
#endif
#ifdef DSRT_HAVE_TEMPLATE
const dsrt_backend_vtable *dsrt_template_backend_vtable(void);
#endif

static dsrt_status dsrt_registry_add_locked(const dsrt_backend_vtable *vt, void *dl, const char *origin,
                                            dsrt_backend **out)
{
    if (!vt || !vt->name || !vt->name[0])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: backend vtable or its name is missing", origin);
    if (vt->abi_version != DSRT_BACKEND_ABI_VERSION)
        return dsrt_error(DSRT_CODE_INCOMPATIBLE,
                          "%s: backend '%s' was built for backend ABI version %u, this dsrt has version %u",
                          origin, vt->name, vt->abi_version, DSRT_BACKEND_ABI_VERSION);
    if (vt->struct_size < sizeof(dsrt_backend_vtable))
        return dsrt_error(DSRT_CODE_INCOMPATIBLE,
                          "%s: backend '%s' vtable is %u bytes, expected at least %zu", origin, vt->name,
                          vt->struct_size, sizeof(dsrt_backend_vtable));
    static const char *required[] = {"init", "device_count", "device_caps", "device_open", "device_close",
                                     "buffer_alloc", "buffer_free", "stream_create", "stream_destroy",
                                     "stream_sync", "write", "read", "copy", "fill", "event_create",
                                     "event_destroy", "event_record", "stream_wait_event", "event_sync",
                                     "event_query", "supports_op", "enqueue_op"};
    const void *fns[] = {(const void *)vt->init, (const void *)vt->device_count, (const void *)vt->device_caps,
                         (const void *)vt->device_open, (const void *)vt->device_close,
                         (const void *)vt->buffer_alloc, (const void *)vt->buffer_free,
                         (const void *)vt->stream_create, (const void *)vt->stream_destroy,
                         (const void *)vt->stream_sync, (const void *)vt->write, (const void *)vt->read,
                         (const void *)vt->copy, (const void *)vt->fill, (const void *)vt->event_create,
                         (const void *)vt->event_destroy, (const void *)vt->event_record,
                         (const void *)vt->stream_wait_event, (const void *)vt->event_sync,
                         (const void *)vt->event_query, (const void *)vt->supports_op,
                         (const void *)vt->enqueue_op};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (!fns[i])
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: backend '%s' lacks the required entry '%s'",
                              origin, vt->name, required[i]);
    if (strchr(vt->name, ':'))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: backend name '%s' must not contain ':'", origin,
                          vt->name);
    for (int i = 0; i < dsrt_backend_n; i++)
        if (strcmp(dsrt_backends[i].vt->name, vt->name) == 0)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "%s: a backend named '%s' is already registered (from %s)", origin, vt->name,
                              dsrt_backends[i].origin);
    if (dsrt_backend_n == DSRT_MAX_BACKENDS)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: the registry holds %d backends already", origin,
                          DSRT_MAX_BACKENDS);
    dsrt_backend *b = &dsrt_backends[dsrt_backend_n++];
    memset(b, 0, sizeof *b);
    b->vt = vt;
    b->dl_handle = dl;
    snprintf(b->origin, sizeof b->origin, "%s", origin);
    if (out) *out = b;
    return DSRT_OK;
}

static void dsrt_registry_init_builtins(void)
{
    const dsrt_backend_vtable *builtins[] = {
        dsrt_cpu_backend_vtable(),
#ifdef DSRT_HAVE_CUDA
        dsrt_cuda_backend_vtable(),
#endif
#ifdef DSRT_HAVE_HIP
        dsrt_hip_backend_vtable(),
#endif
#ifdef DSRT_HAVE_OPENCL
        dsrt_opencl_backend_vtable(),
#endif
#ifdef DSRT_HAVE_TEMPLATE
        dsrt_template_backend_vtable(),
#endif
    };
    pthread_mutex_lock(&dsrt_registry_lock);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        dsrt_status_free(dsrt_registry_add_locked(builtins[i], NULL, "built in", NULL));
    pthread_mutex_unlock(&dsrt_registry_lock);
}

static dsrt_status dsrt_load_plugin_impl(const char *path, dsrt_backend **out);
static dsrt_status dsrt_load_env_plugins_impl(void);

static void dsrt_registry_boot(void)
{
    dsrt_registry_init_builtins();
    /* Plugins named in the environment load once; a broken one is reported to callers that ask
     * (dsrt_registry_load_env_plugins) and when it is looked up by name. */
    dsrt_status_free(dsrt_load_env_plugins_impl());
}

static void dsrt_registry_ready(void) { pthread_once(&dsrt_registry_once, dsrt_registry_boot); }

dsrt_status dsrt_registry_add(const dsrt_backend_vtable *vt, dsrt_backend **out)
{
    dsrt_registry_ready();
    pthread_mutex_lock(&dsrt_registry_lock);
    dsrt_status st = dsrt_registry_add_locked(vt, NULL, "registered at run time", out);
    pthread_mutex_unlock(&dsrt_registry_lock);
    return st;
}

dsrt_status dsrt_registry_load_plugin(const char *path, dsrt_backend **out)
{
    dsrt_registry_ready();
    return dsrt_load_plugin_impl(path, out);
}

static dsrt_status dsrt_load_plugin_impl(const char *path, dsrt_backend **out)
{
    if (!path || !path[0]) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "plugin path is empty");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dsrt_error(DSRT_CODE_NOT_FOUND, "backend plugin '%s': no such file", path);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *e = dlerror();
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend plugin '%s' could not be loaded: %s", path,
                          e ? e : "unknown dlopen error");
    }
    dlerror();
    void *sym = dlsym(dl, DSRT_BACKEND_PLUGIN_ENTRY);
    if (!sym) {
        dlclose(dl);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend plugin '%s' does not export '%s'", path,
                          DSRT_BACKEND_PLUGIN_ENTRY);
    }
    dsrt_backend_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const dsrt_backend_vtable *vt = entry(DSRT_BACKEND_ABI_VERSION);
    if (!vt) {
        dlclose(dl);
        return dsrt_error(DSRT_CODE_INCOMPATIBLE,
                          "backend plugin '%s' refused this dsrt (backend ABI version %u)", path,
                          DSRT_BACKEND_ABI_VERSION);
    }
    pthread_mutex_lock(&dsrt_registry_lock);
    dsrt_status st = dsrt_registry_add_locked(vt, dl, path, out);
    pthread_mutex_unlock(&dsrt_registry_lock);
    if (st) dlclose(dl);
    return st;
}

static bool dsrt_plugin_already_loaded(const char *path)
{
    bool found = false;
    pthread_mutex_lock(&dsrt_registry_lock);
    for (int i = 0; i < dsrt_backend_n; i++)
        if (strcmp(dsrt_backends[i].origin, path) == 0) found = true;
    pthread_mutex_unlock(&dsrt_registry_lock);
    return found;
}

static dsrt_status dsrt_load_path_entry(const char *entry)
{
    struct stat sb;
    if (stat(entry, &sb) != 0)
        return dsrt_error(DSRT_CODE_NOT_FOUND, "DSRT_BACKEND_PATH entry '%s' does not exist", entry);
    if (!S_ISDIR(sb.st_mode))
        return dsrt_plugin_already_loaded(entry) ? DSRT_OK : dsrt_load_plugin_impl(entry, NULL);
    DIR *d = opendir(entry);
    if (!d) return dsrt_error(DSRT_CODE_IO, "DSRT_BACKEND_PATH folder '%s' cannot be read", entry);
    dsrt_status first = DSRT_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, "libdsrt-", 8) != 0 || n < 4 || strcmp(de->d_name + n - 3, ".so") != 0) continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", entry, de->d_name);
        if (dsrt_plugin_already_loaded(full)) continue;
        dsrt_status st = dsrt_load_plugin_impl(full, NULL);
        if (st && !first) first = st;
        else dsrt_status_free(st);
    }
    closedir(d);
    return first;
}

dsrt_status dsrt_registry_load_env_plugins(void)
{
    dsrt_registry_ready();
    return dsrt_load_env_plugins_impl();
}

static dsrt_status dsrt_load_env_plugins_impl(void)
{
    const char *env = getenv("DSRT_BACKEND_PATH");
    if (!env || !env[0]) return DSRT_OK;
    char *copy = strdup(env);
    if (!copy) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory reading DSRT_BACKEND_PATH");
    dsrt_status first = DSRT_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        dsrt_status st = dsrt_load_path_entry(tok);
        if (st && !first) first = st;
        else dsrt_status_free(st);
    }
    free(copy);
    return first;
}

int dsrt_backend_count(void)
{
    dsrt_registry_ready();
    pthread_mutex_lock(&dsrt_registry_lock);
    int n = dsrt_backend_n;
    pthread_mutex_unlock(&dsrt_registry_lock);
    return n;
}

dsrt_backend *dsrt_backend_at(int index)
{
    dsrt_registry_ready();
    pthread_mutex_lock(&dsrt_registry_lock);
    dsrt_backend *b = (index >= 0 && index < dsrt_backend_n) ? &dsrt_backends[index] : NULL;
    pthread_mutex_unlock(&dsrt_registry_lock);
    return b;
}

dsrt_status dsrt_backend_find(const char *name, dsrt_backend **out)
{
    dsrt_registry_ready();
    if (!name || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend name is NULL");
    char known[512] = "";
    pthread_mutex_lock(&dsrt_registry_lock);
    for (int i = 0; i < dsrt_backend_n; i++) {
        if (strcmp(dsrt_backends[i].vt->name, name) == 0) {
            *out = &dsrt_backends[i];
            pthread_mutex_unlock(&dsrt_registry_lock);
            return DSRT_OK;
        }
        size_t l = strlen(known);
        snprintf(known + l, sizeof known - l, "%s%s", l ? ", " : "", dsrt_backends[i].vt->name);
    }
    pthread_mutex_unlock(&dsrt_registry_lock);
    return dsrt_error(DSRT_CODE_NOT_FOUND,
                      "unknown backend '%s' (available: %s; out-of-tree backends load with --backend-plugin "
                      "FILE or DSRT_BACKEND_PATH)", name, known);
}

const char *dsrt_backend_name(const dsrt_backend *b) { return b ? b->vt->name : "(null)"; }

dsrt_status dsrt_backend_ensure_init(dsrt_backend *b)
{
    pthread_mutex_lock(&dsrt_registry_lock);
    if (!b->initialized) {
        b->initialized = true;
        b->init_error = b->vt->init(&b->bctx);
        if (!b->init_error) {
            b->why[0] = 0;
            b->init_error = b->vt->device_count(b->bctx, &b->device_count, b->why, sizeof b->why);
            if (b->init_error) b->device_count = 0;
        }
        if (b->init_error) {
            snprintf(b->why, sizeof b->why, "%s", dsrt_status_message(b->init_error));
            b->device_count = 0;
        } else if (b->device_count == 0 && !b->why[0]) {
            snprintf(b->why, sizeof b->why, "no %s device found", b->vt->name);
        }
    }
    dsrt_status err = b->init_error
                          ? dsrt_error(dsrt_status_code(b->init_error), "backend '%s': %s", b->vt->name,
                                       dsrt_status_message(b->init_error))
                          : DSRT_OK;
    pthread_mutex_unlock(&dsrt_registry_lock);
    return err;
}

dsrt_status dsrt_backend_device_count(dsrt_backend *b, int *count)
{
    if (!b || !count) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend or count is NULL");
    *count = 0;
    dsrt_status st = dsrt_backend_ensure_init(b);
    if (st) {
        /* A backend that failed to start has no devices; the reason says why. */
        dsrt_status_free(st);
        return DSRT_OK;
    }
    *count = b->device_count;
    return DSRT_OK;
}

const char *dsrt_backend_unavailable_reason(dsrt_backend *b)
{
    if (!b) return "";
    dsrt_status_free(dsrt_backend_ensure_init(b));
    return b->device_count > 0 ? "" : b->why;
}

dsrt_status dsrt_backend_device_caps(dsrt_backend *b, int index, dsrt_device_caps *caps)
{
    if (!b || !caps) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend or caps is NULL");
    DSRT_TRY(dsrt_backend_ensure_init(b));
    if (index < 0 || index >= b->device_count)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "backend '%s' has %d device(s); index %d is out of range%s%s",
                          b->vt->name, b->device_count, index, b->device_count ? "" : ": ",
                          b->device_count ? "" : b->why);
    memset(caps, 0, sizeof *caps);
    caps->numa_node = -1;
    return b->vt->device_caps(b->bctx, index, caps);
}
