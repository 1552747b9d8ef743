/* dsrt: command-line entry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dsrt/registry.h"
#include "dsrt/version.h"

static const dsrt_cli_command dsrt_commands[] = {
    {"run", "generate text after a prompt (default model built in; -m DIR for another)", dsrt_cmd_run},
    {"chat", "an interactive conversation in the V3.2 chat format, keeping its KV cache", dsrt_cmd_chat},
    {"devices", "list backends compiled in and the devices each finds, with capabilities", dsrt_cmd_devices},
    {"logits", "float32 logits of a token sequence (prefill, then decode)", dsrt_cmd_logits},
    {"bench", "prefill and decode throughput, and decode's fraction of the bandwidth roofline", dsrt_cmd_bench},
    {"tokenize", "print the token ids of a text (tokenizer.json)", dsrt_cmd_tokenize},
    {"detokenize", "print the text of token ids (tokenizer.json)", dsrt_cmd_detokenize},
    {"encode", "print the DeepSeek-V3.2 prompt for an OpenAI-style chat request", dsrt_cmd_encode},
    {"parse", "parse a DeepSeek-V3.2 completion into an assistant message (JSON)", dsrt_cmd_parse},
    {"conform", "certify a backend: every op against the CPU reference, JSON and HTML reports", dsrt_cmd_conform},
};

static void usage(FILE *f)
{
    fprintf(f, "dsrt %s: a portable runtime for DeepSeek-V3.2-class models\n\nusage: dsrt COMMAND [options]\n\ncommands:\n",
            DSRT_VERSION_STRING);
    for (size_t i = 0; i < sizeof dsrt_commands / sizeof dsrt_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", dsrt_commands[i].name, dsrt_commands[i].summary);
    fprintf(f, "\n'dsrt COMMAND --help' describes a command's options.\n");
}

int dsrt_cli_parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo) {
        fprintf(stderr, "dsrt %s: error: %s expects an integer >= %lld, got '%s'\n", cmd, flag, lo, v);
        return 1;
    }
    *out = x;
    return 0;
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
