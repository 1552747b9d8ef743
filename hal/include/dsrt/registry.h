/* The backend registry: the only process-wide mutable state in dsrt.
 *
 * Built-in backends (those compiled in: cpu, and cuda/hip/opencl when enabled) register themselves
 * the first time the registry is used. Out-of-tree backends are shared libraries that export
 * `dsrt_backend_plugin_entry` (see backend_impl.h); they load with dsrt_registry_load_plugin, or from
 * every file and folder listed in the DSRT_BACKEND_PATH environment variable (':'-separated). */
#ifndef DSRT_REGISTRY_H
#define DSRT_REGISTRY_H

#include "dsrt/handles.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsrt_backend_vtable;

/* Registers a backend implementation under vt->name; fails if the name is taken or the vtable's
 * ABI version does not match this library's. */
dsrt_status dsrt_registry_add(const struct dsrt_backend_vtable *vt, dsrt_backend **out);

/* dlopen()s a plugin and registers the backend it exports. Errors name the file and what failed
 * (not found, not a shared library, missing entry symbol, ABI version mismatch, duplicate name). */
dsrt_status dsrt_registry_load_plugin(const char *path, dsrt_backend **out);

/* Loads every plugin named by DSRT_BACKEND_PATH (files, or folders scanned for libdsrt-*.so).
 * Called once automatically; calling it again loads nothing twice. */
dsrt_status dsrt_registry_load_env_plugins(void);

#ifdef __cplusplus
}
#endif
#endif
