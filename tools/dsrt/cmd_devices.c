/* dsrt devices: every backend compiled in or loaded, and the devices it finds. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dsrt/device.h"
#include "dsrt/registry.h"

static void print_bytes(const char *label, uint64_t b)
{
    if (!b) {
        printf("    %-16s unknown\n", label);
        return;
    }
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    printf("    %-16s %.1f %s\n", label, v, unit[u]);
}

int dsrt_cmd_devices(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: dsrt devices [--backend-plugin FILE]...\n\n"
                   "Lists every backend compiled in (and plugins from --backend-plugin or DSRT_BACKEND_PATH)\n"
                   "with the devices each finds and their capabilities. A backend without devices says why.\n");
            return 0;
        }
    }
    if (dsrt_cli_load_plugins("devices", &argc, argv)) return 1;
    for (int i = 1; i < argc; i++) {
        fprintf(stderr, "dsrt devices: error: unknown option '%s' (see dsrt devices --help)\n", argv[i]);
        return 2;
    }
    dsrt_status env = dsrt_registry_load_env_plugins();
    if (env) {
        fprintf(stderr, "dsrt devices: warning: %s\n", dsrt_status_message(env));
        dsrt_status_free(env);
    }
    int nb = dsrt_backend_count();
    for (int b = 0; b < nb; b++) {
        dsrt_backend *be = dsrt_backend_at(b);
        int n = 0;
        dsrt_status st = dsrt_backend_device_count(be, &n);
        if (st) return dsrt_cli_fail("devices", st);
        if (n == 0) {
            printf("%s: no device (%s)\n", dsrt_backend_name(be), dsrt_backend_unavailable_reason(be));
            continue;
        }
        printf("%s: %d device%s\n", dsrt_backend_name(be), n, n == 1 ? "" : "s");
        for (int d = 0; d < n; d++) {
            dsrt_device_caps c;
            st = dsrt_backend_device_caps(be, d, &c);
            if (st) return dsrt_cli_fail("devices", st);
            printf("  %s:%d  %s (%s, %s)\n", dsrt_backend_name(be), d, c.name, dsrt_device_type_name(c.type), c.vendor);
            printf("    %-16s %s\n", "driver", c.driver[0] ? c.driver : "unknown");
            printf("    %-16s %d\n", c.type == DSRT_DEVICE_CPU ? "cores" : "compute units", c.compute_units);
            print_bytes("memory", c.memory_bytes);
            print_bytes("max allocation", c.max_alloc_bytes);
            print_bytes("local memory", c.local_mem_bytes);
            if (c.type == DSRT_DEVICE_CPU) printf("    %-16s %d\n", "NUMA nodes", c.numa_nodes);
            else printf("    %-16s %d\n", "NUMA node", c.numa_node);
            printf("    %-16s %d\n", "subgroup size", c.subgroup_size);
            if (c.max_work_group > 1) printf("    %-16s %d\n", "max work group", c.max_work_group);
            printf("    %-16s fp8 %s, bf16 %s, fp16 %s\n", "native math", c.native_fp8 ? "yes" : "no",
                   c.native_bf16 ? "yes" : "no", c.native_fp16 ? "yes" : "no");
            printf("    %-16s %s\n", "unified memory", c.unified_memory ? "yes" : "no");
            printf("    %-16s %s\n", "streams", c.concurrent_streams ? "run concurrently" : "one at a time");
            if (c.peak_mem_gbs > 0) printf("    %-16s %.0f GB/s\n", "peak bandwidth", c.peak_mem_gbs);
            if (c.peak_tflops_bf16 > 0) printf("    %-16s %.0f TFLOP/s bf16, %.0f fp8\n", "peak compute", c.peak_tflops_bf16, c.peak_tflops_fp8);
        }
    }
    return 0;
}
