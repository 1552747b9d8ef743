/* dsrt tokenize / dsrt detokenize: text to ids and back with a model's tokenizer.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dsrt/tokenizer.h"

/* Reads a whole file (or stdin for "-") into a malloc'd buffer. */
static dsrt_status read_all(const char *path, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return dsrt_error(errno == ENOENT ? DSRT_CODE_NOT_FOUND : DSRT_CODE_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                if (f != stdin) fclose(f);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (err) {
        free(buf);
        return dsrt_error(DSRT_CODE_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return DSRT_OK;
}

/* Parses the options both commands share; returns 0, or the exit status to return. */
static int load_tokenizer(const char *cmd, const char *file, const char *dir, dsrt_tokenizer **tok)
{
    if ((file != NULL) == (dir != NULL)) {
        fprintf(stderr, "dsrt %s: error: give exactly one of --tokenizer FILE or -m DIR (see dsrt %s --help)\n", cmd,
                cmd);
        return 2;
    }
    dsrt_status st = file ? dsrt_tokenizer_load(file, tok) : dsrt_tokenizer_load_dir(dir, tok);
    return st ? dsrt_cli_fail(cmd, st) : 0;
}

int dsrt_cmd_tokenize(int argc, char **argv)
{
    const char *file = NULL, *dir = NULL, *text_file = NULL, *text = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: dsrt tokenize (--tokenizer FILE | -m DIR) (TEXT | --file PATH) [--add-special]\n\n"
                   "Prints the token ids of TEXT (or of the file's bytes; '-' reads stdin) on one line, separated\n"
                   "by spaces. -m DIR reads DIR/tokenizer.json. Added tokens such as <｜User｜> in the text are\n"
                   "recognised. --add-special also applies the file's post_processor (e.g. a leading BOS).\n");
            return 0;
        }
        if ((strcmp(a, "--tokenizer") == 0 || strcmp(a, "-m") == 0 || strcmp(a, "--file") == 0) && i + 1 >= argc) {
            fprintf(stderr, "dsrt tokenize: error: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--tokenizer") == 0)
            file = argv[++i];
        else if (strcmp(a, "-m") == 0)
            dir = argv[++i];
        else if (strcmp(a, "--file") == 0)
            text_file = argv[++i];
        else if (strcmp(a, "--add-special") == 0)
            flags |= DSRT_TOKENIZE_ADD_SPECIAL;
        else if (a[0] == '-' && a[1] == '-' && a[2] != 0) {
            fprintf(stderr, "dsrt tokenize: error: unknown option '%s' (see dsrt tokenize --help)\n", a);
            return 2;
        } else if (text) {
            fprintf(stderr, "dsrt tokenize: error: more than one TEXT argument (quote the text)\n");
            return 2;
        } else
            text = a;
    }
    if ((text != NULL) == (text_file != NULL)) {
        fprintf(stderr, "dsrt tokenize: error: give exactly one of TEXT or --file PATH\n");
        return 2;
    }
    dsrt_tokenizer *tok = NULL;
    int rc = load_tokenizer("tokenize", file, dir, &tok);
    if (rc) return rc;
    char *buf = NULL;
    size_t len = 0;
    dsrt_status st = DSRT_OK;
    if (text_file)
        st = read_all(text_file, &buf, &len);
    else
        len = strlen(text);
    dsrt_token_ids ids = {0};
    if (!st) {
        st = dsrt_tokenizer_encode(tok, text_file ? buf : text, len, flags, &ids);
        if (st && text_file) st = dsrt_status_wrap(st, "%s", text_file);
    }
    free(buf);
    dsrt_tokenizer_free(tok);
    if (st) return dsrt_cli_fail("tokenize", st);
    for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", (int)ids.ids[i]);
    printf("\n");
    dsrt_token_ids_free(&ids);
    return 0;
}

int dsrt_cmd_detokenize(int argc, char **argv)
{
    const char *file = NULL, *dir = NULL, *ids_text = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: dsrt detokenize (--tokenizer FILE | -m DIR) --ids \"1 2 3\" [--skip-special]\n\n"
                   "Prints the text the ids stand for, byte for byte (no newline is added). Ids may be separated\n"
                   "by spaces or commas. --skip-special leaves out special added tokens (BOS, EOS, ...).\n");
            return 0;
        }
        if ((strcmp(a, "--tokenizer") == 0 || strcmp(a, "-m") == 0 || strcmp(a, "--ids") == 0) && i + 1 >= argc) {
            fprintf(stderr, "dsrt detokenize: error: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--tokenizer") == 0)
            file = argv[++i];
        else if (strcmp(a, "-m") == 0)
            dir = argv[++i];
        else if (strcmp(a, "--ids") == 0)
            ids_text = argv[++i];
        else if (strcmp(a, "--skip-special") == 0)
            flags |= DSRT_DETOKENIZE_SKIP_SPECIAL;
        else {
            fprintf(stderr, "dsrt detokenize: error: unknown argument '%s' (see dsrt detokenize --help)\n", a);
            return 2;
        }
    }
    if (!ids_text) {
        fprintf(stderr, "dsrt detokenize: error: --ids \"1 2 3\" is required\n");
        return 2;
    }
    /* parse the ids before loading anything, so a typo is reported at once */
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return dsrt_cli_fail("detokenize", dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory"));
    const char *p = ids_text;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ' ' && *end != ',' &&
                                                                   *end != '\t' && *end != '\n')) {
            fprintf(stderr, "dsrt detokenize: error: --ids: '%.*s' at character %zu is not an integer id\n",
                    (int)strcspn(p, " ,\t\n"), p, (size_t)(p - ids_text));
            free(ids);
            return 2;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *ni = realloc(ids, cap * sizeof *ni);
            if (!ni) {
                free(ids);
                return dsrt_cli_fail("detokenize", dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory"));
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    dsrt_tokenizer *tok = NULL;
    int rc = load_tokenizer("detokenize", file, dir, &tok);
    if (rc) {
        free(ids);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    dsrt_status st = dsrt_tokenizer_decode(tok, ids, n, flags, &text, &len);
    free(ids);
    dsrt_tokenizer_free(tok);
    if (st) return dsrt_cli_fail("detokenize", st);
    fwrite(text, 1, len, stdout);
    free(text);
    return 0;
}
