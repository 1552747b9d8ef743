/* dsrt: command-line entry. */
#include <stdio.h>
#include <string.h>

#include "bench_ops.h" /* temporary: dsrt bench-ops until dsrt bench calls dsrt_bench_ops */
#include "cli.h"
#include "dsrt/registry.h"
#include "dsrt/version.h"

static const dsrt_cli_command dsrt_commands[] = {
    {"devices", "list backends compiled in and the devices each finds, with capabilities", dsrt_cmd_devices},
    {"bench-ops", "time the hot ops on one device (temporary; see dsrt bench)", dsrt_cmd_bench_ops},
};

static void usage(FILE *f)
{
    fprintf(f, "dsrt %s: a portable runtime for DeepSeek-V3.2-class models\n\nusage: dsrt COMMAND [options]\n\ncommands:\n",
            DSRT_VERSION_STRING);
    for (size_t i = 0; i < sizeof dsrt_commands / sizeof dsrt_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", dsrt_commands[i].name, dsrt_commands[i].summary);
    fprintf(f, "\n'dsrt COMMAND --help' describes a command's options.\n");
}

int dsrt_cli_fail(const char *cmd, dsrt_status st)
{
    fprintf(stderr, "dsrt %s: error: %s\n", cmd, dsrt_status_message(st));
    dsrt_status_free(st);
    return 1;
}

int dsrt_cli_load_plugins(const char *cmd, int *argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--backend-plugin") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "dsrt %s: error: --backend-plugin needs a FILE\n", cmd);
                return 1;
            }
            dsrt_status st = dsrt_registry_load_plugin(argv[i + 1], NULL);
            if (st) return dsrt_cli_fail(cmd, st);
            i++;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("dsrt %s\n", DSRT_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof dsrt_commands / sizeof dsrt_commands[0]; i++)
        if (strcmp(argv[1], dsrt_commands[i].name) == 0) return dsrt_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dsrt: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
