/* The `dsrt` command: one function per subcommand, each in its own cmd_*.c file. */
#ifndef DSRT_CLI_H
#define DSRT_CLI_H

#include "dsrt/status.h"

typedef struct dsrt_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name; returns the exit status */
} dsrt_cli_command;

int dsrt_cmd_devices(int argc, char **argv);
int dsrt_cmd_run(int argc, char **argv);
int dsrt_cmd_chat(int argc, char **argv);
int dsrt_cmd_logits(int argc, char **argv);
int dsrt_cmd_bench(int argc, char **argv);
int dsrt_cmd_tokenize(int argc, char **argv);
int dsrt_cmd_detokenize(int argc, char **argv);
int dsrt_cmd_encode(int argc, char **argv);
int dsrt_cmd_parse(int argc, char **argv);
int dsrt_cmd_conform(int argc, char **argv);

/* Parses an integer flag value >= lo; prints "dsrt <cmd>: error: ..." and returns 1 when it is not one. */
int dsrt_cli_parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long *out);

/* Prints "dsrt <cmd>: <message>" to stderr, frees st, returns 1. */
int dsrt_cli_fail(const char *cmd, dsrt_status st);
/* Loads plugins named by --backend-plugin FILE options (removing them from argv); returns 0 or prints
 * the error and returns 1. */
int dsrt_cli_load_plugins(const char *cmd, int *argc, char **argv);

#endif
