/* dsrt encode / dsrt parse: the DeepSeek-V3.2 chat format from the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dsrt/chat.h"

static dsrt_status slurp(FILE *f, const char *name, char **out, size_t *len)
{
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory", name);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return dsrt_error(DSRT_CODE_IO, "%s: read error", name);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return DSRT_OK;
}

int dsrt_cmd_encode(int argc, char **argv)
{
    const char *request = NULL;
    dsrt_chat_options opt;
    dsrt_chat_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: dsrt encode --request FILE.json [--thinking] [--keep-developer] [--no-bos]\n\n"
                   "Prints the DeepSeek-V3.2 prompt for an OpenAI-style chat request body ({\"messages\", \"tools\",\n"
                   "\"response_format\"}; FILE '-' reads stdin) exactly as the official encoding_dsv32.py encodes it,\n"
                   "with no newline added. Request-level tools and response_format go to the leading system message\n"
                   "(one is inserted when the conversation has none). --thinking selects thinking mode (the prompt\n"
                   "ends with <think>); the default is chat mode (it ends with </think>). --keep-developer encodes\n"
                   "with drop_thinking=False; --no-bos leaves out <｜begin▁of▁sentence｜>.\n");
            return 0;
        }
        if (strcmp(a, "--request") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dsrt encode: error: --request needs a FILE\n");
                return 2;
            }
            request = argv[++i];
        } else if (strcmp(a, "--thinking") == 0) {
            opt.mode = DSRT_CHAT_MODE_THINKING;
        } else if (strcmp(a, "--keep-developer") == 0) {
            opt.drop_thinking = 0;
        } else if (strcmp(a, "--no-bos") == 0) {
            opt.add_bos = 0;
        } else {
            fprintf(stderr, "dsrt encode: error: unknown argument '%s' (see dsrt encode --help)\n", a);
            return 2;
        }
    }
    if (!request) {
        fprintf(stderr, "dsrt encode: error: --request FILE.json is required\n");
        return 2;
    }
    FILE *f = strcmp(request, "-") == 0 ? stdin : fopen(request, "rb");
    if (!f)
        return dsrt_cli_fail("encode", dsrt_error(errno == ENOENT ? DSRT_CODE_NOT_FOUND : DSRT_CODE_IO, "%s: %s",
                                                  request, strerror(errno)));
    char *json = NULL;
    size_t len = 0;
    dsrt_status st = slurp(f, request, &json, &len);
    if (f != stdin) fclose(f);
    if (st) return dsrt_cli_fail("encode", st);
    char *prompt = NULL;
    size_t plen = 0;
    st = dsrt_chat_encode_request(json, len, &opt, &prompt, &plen);
    free(json);
    if (st) return dsrt_cli_fail("encode", dsrt_status_wrap(st, "%s", request));
    fwrite(prompt, 1, plen, stdout);
    free(prompt);
    return 0;
}

int dsrt_cmd_parse(int argc, char **argv)
{
    dsrt_chat_mode mode = DSRT_CHAT_MODE_CHAT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: dsrt parse [--thinking] < completion.txt\n\n"
                   "Reads the text a DeepSeek-V3.2 model generated after its prompt and prints the assistant\n"
                   "message as JSON: {\"role\", \"content\", \"reasoning_content\", \"tool_calls\"}, as the official\n"
                   "parser returns it. --thinking: the text starts with reasoning that ends at </think>.\n");
            return 0;
        }
        if (strcmp(argv[i], "--thinking") == 0) {
            mode = DSRT_CHAT_MODE_THINKING;
        } else {
            fprintf(stderr, "dsrt parse: error: unknown argument '%s' (see dsrt parse --help)\n", argv[i]);
            return 2;
        }
    }
    char *text = NULL;
    size_t len = 0;
    dsrt_status st = slurp(stdin, "stdin", &text, &len);
    if (st) return dsrt_cli_fail("parse", st);
    dsrt_chat_message m;
    st = dsrt_chat_parse(text, len, mode, &m);
    free(text);
    if (st) return dsrt_cli_fail("parse", st);
    char *json = NULL;
    size_t jlen = 0;
    st = dsrt_chat_message_to_json(&m, &json, &jlen);
    dsrt_chat_message_free(&m);
    if (st) return dsrt_cli_fail("parse", st);
    fwrite(json, 1, jlen, stdout);
    fputc('\n', stdout);
    free(json);
    return 0;
}
