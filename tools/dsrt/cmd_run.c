/* dsrt run (a prompt in, generated text out) and dsrt chat (an interactive conversation that keeps its KV
 * cache between turns). Without -m both use the default model compiled into dsrt. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "default_model.h"
#include "dsrt/chat.h"
#include "dsrt/file_util.h"
#include "dsrt/generate.h"
#include "dsrt/model.h"
#include "dsrt/tokenizer.h"

#define MAX_STOPS 16

typedef struct run_opts {
    const char *cmd;
    const char *model_dir, *prompt, *prompt_file, *backend, *precision, *placement, *system;
    long long n_predict, ctx;
    bool chat, think, seed_given, temp_given, top_p_given;
    uint64_t seed;
    dsrt_sampling sampling;
    const char *stops[MAX_STOPS];
    int n_stops;
} run_opts;

static void usage(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "chat") == 0)
        fprintf(f, "usage: dsrt chat [-m DIR] [--think] [--system TEXT] [sampling and device options]\n\n"
                   "An interactive conversation in DeepSeek-V3.2's chat format. Each line you type is a user\n"
                   "message; the reply streams back. The KV cache is kept between turns (only the new part of the\n"
                   "prompt is computed). /reset starts over, /exit (or end of input) quits.\n\n");
    else
        fprintf(f, "usage: dsrt run [-m DIR] (-p PROMPT | -f FILE) [-n N] [--chat] [--think] [options]\n\n"
                   "Generates text after a prompt and streams it to standard output; load time and prompt and\n"
                   "generation speed go to standard error at the end.\n\n");
    fprintf(f, "  -m, --model DIR     Hugging Face checkpoint folder with tokenizer.json (default: the model built\n"
               "                      into dsrt, a small V3.2-architecture model trained on The Devil's Dictionary)\n"
               "  -p, --prompt TEXT   the prompt (run)\n"
               "  -f, --file PATH     read the prompt from a file (run)\n"
               "  -n, --n-predict N   tokens to generate at most (default 128)\n"
               "  --chat              wrap the prompt as a user message of the chat format (run)\n"
               "  --think             thinking mode of the chat format (implies --chat)\n"
               "  --system TEXT       a system message before the conversation\n"
               "  --temp T            temperature; 0 is greedy (default: the model's generation_config, else 1)\n"
               "  --top-k K           keep the K most likely tokens (default 0: off)\n"
               "  --top-p P           keep the smallest set reaching probability P (default: generation_config, else 1)\n"
               "  --min-p P           drop tokens below P times the most likely one's probability (default 0)\n"
               "  -s, --seed S        random seed; the same seed gives the same text (default: from the clock)\n"
               "  --stop TEXT         stop before TEXT (repeatable)\n"
               "  --ctx N             KV cache capacity in tokens (default: prompt + n-predict; chat: 4096)\n"
               "  --backend NAME      device: cpu, opencl, cuda, cuda:1 ... (default cpu)\n"
               "  --precision P       f32 or fp8 numerics (default: fp8 for FP8 checkpoints)\n"
               "  --placement FILE    per-block device placement (docs/placement.md)\n"
               "  --backend-plugin F  load an out-of-tree backend\n");
}

static int bad_value(const char *cmd, const char *flag, const char *v, const char *want)
{
    fprintf(stderr, "dsrt %s: error: %s expects %s, got '%s'\n", cmd, flag, want, v);
    return 2;
}

static int parse_opts(const char *cmd, int argc, char **argv, run_opts *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->backend = "cpu";
    o->precision = "auto";
    o->n_predict = 128;
    o->sampling = (dsrt_sampling){1.0f, 0, 1.0f, 0.0f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, cmd);
            return -1;
        }
        if (!strcmp(a, "--chat")) {
            o->chat = true;
            continue;
        }
        if (!strcmp(a, "--think")) {
            o->chat = o->think = true;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "dsrt %s: error: unexpected argument '%s' (the prompt goes after -p)\n", cmd, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dsrt %s: error: option '%s' needs a value (see dsrt %s --help)\n", cmd, a, cmd);
            return 2;
        }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_dir = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->prompt_file = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--precision")) o->precision = v;
        else if (!strcmp(a, "--placement")) o->placement = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--stop")) {
            if (o->n_stops == MAX_STOPS) return bad_value(cmd, a, v, "at most 16 stop strings");
            o->stops[o->n_stops++] = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            o->n_predict = strtoll(v, &end, 10);
            if (!*v || *end || errno || o->n_predict < 1) return bad_value(cmd, a, v, "an integer >= 1");
        } else if (!strcmp(a, "--ctx")) {
            o->ctx = strtoll(v, &end, 10);
            if (!*v || *end || errno || o->ctx < 2) return bad_value(cmd, a, v, "an integer >= 2");
        } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
            if (!*v || *end || errno || v[0] == '-') return bad_value(cmd, a, v, "a non-negative integer");
            o->seed_given = true;
        } else if (!strcmp(a, "--temp")) {
            o->sampling.temperature = strtof(v, &end);
            if (!*v || *end || errno || !(o->sampling.temperature >= 0)) return bad_value(cmd, a, v, "a number >= 0");
            o->temp_given = true;
        } else if (!strcmp(a, "--top-k")) {
            long k = strtol(v, &end, 10);
            if (!*v || *end || errno || k < 0 || k > 1 << 30) return bad_value(cmd, a, v, "an integer >= 0");
            o->sampling.top_k = (int)k;
        } else if (!strcmp(a, "--top-p")) {
            o->sampling.top_p = strtof(v, &end);
            if (!*v || *end || errno || !(o->sampling.top_p > 0 && o->sampling.top_p <= 1)) return bad_value(cmd, a, v, "a number in (0, 1]");
            o->top_p_given = true;
        } else if (!strcmp(a, "--min-p")) {
            o->sampling.min_p = strtof(v, &end);
            if (!*v || *end || errno || !(o->sampling.min_p >= 0 && o->sampling.min_p < 1)) return bad_value(cmd, a, v, "a number in [0, 1)");
        } else {
            fprintf(stderr, "dsrt %s: error: unknown option '%s' (see dsrt %s --help)\n", cmd, a, cmd);
            return 2;
        }
    }
    if (!o->seed_given) o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    return 0;
}

/* The model, its tokenizer and its sampling defaults, from -m DIR or the embedded default model. */
typedef struct loaded {
    dsrt_model *model;
    dsrt_tokenizer *tok;
    double load_seconds;
} loaded;

static void apply_generation_config(run_opts *o, const char *json)
{
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    const cJSON *t = cJSON_GetObjectItem(j, "temperature"), *p = cJSON_GetObjectItem(j, "top_p");
    if (!o->temp_given && cJSON_IsNumber(t)) o->sampling.temperature = (float)t->valuedouble;
    if (!o->top_p_given && cJSON_IsNumber(p) && p->valuedouble > 0 && p->valuedouble <= 1) o->sampling.top_p = (float)p->valuedouble;
    cJSON_Delete(j);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void load_progress(void *ctx, uint64_t done, uint64_t total)
{
    double *last = ctx, t = now_s();
    if (total < (256u << 20) || (t - *last < 0.5 && done < total)) return; /* small models load at once */
    *last = t;
    fprintf(stderr, "\rloading model: %.0f / %.0f MB", (double)done / 1e6, (double)total / 1e6);
    if (done >= total) fputc('\n', stderr);
}

static dsrt_status load_model(run_opts *o, int64_t ctx, loaded *L)
{
    memset(L, 0, sizeof *L);
    double last = 0, t0 = now_s();
    dsrt_model_options mo = {.device = o->backend, .placement = o->placement, .max_context = ctx,
                             .progress = load_progress, .progress_ctx = &last};
    DSRT_TRY(dsrt_numerics_parse(o->precision, &mo.numerics));
    if (o->model_dir) {
        char path[2048], *gen = NULL;
        size_t len;
        DSRT_TRY(dsrt_tokenizer_load_dir(o->model_dir, &L->tok));
        DSRT_TRY(dsrt_path_join(path, sizeof path, o->model_dir, "generation_config.json"));
        if (dsrt_file_exists(path) && dsrt_read_file(path, 1 << 20, &gen, &len) == DSRT_OK) {
            apply_generation_config(o, gen);
            free(gen);
        }
        DSRT_TRY(dsrt_model_load(o->model_dir, &mo, &L->model));
    } else {
        dsrt_default_model dm;
        if (!dsrt_default_model_get(&dm))
            return dsrt_error(DSRT_CODE_NOT_FOUND, "this dsrt was built without the default model: give one with -m DIR");
        DSRT_TRY(dsrt_tokenizer_from_json(dm.tokenizer, dm.tokenizer_len, "(default model)/tokenizer.json", &L->tok));
        apply_generation_config(o, dm.generation_config);
        mo.memory_config = dm.config;
        mo.memory_weights = dm.weights;
        mo.memory_weights_size = dm.weights_len;
        DSRT_TRY(dsrt_model_load("(default model)", &mo, &L->model));
    }
    L->load_seconds = now_s() - t0;
    int64_t vocab = dsrt_model_get_config(L->model)->vocab_size;
    if (dsrt_tokenizer_vocab_size(L->tok) > vocab)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the tokenizer has %d ids but the model's vocab_size is %lld: they do not belong together",
                          dsrt_tokenizer_vocab_size(L->tok), (long long)vocab);
    return DSRT_OK;
}

static void unload(loaded *L)
{
    dsrt_model_free(L->model);
    dsrt_tokenizer_free(L->tok);
}

static int print_text(void *ctx, const char *text, size_t len)
{
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static const char *reason_name(dsrt_stop_reason r)
{
    return r == DSRT_STOP_EOS ? "end of sequence" : r == DSRT_STOP_STRING ? "stop string" : r == DSRT_STOP_LENGTH ? "length" : "caller";
}

static void print_stats(const loaded *L, const dsrt_generate_result *r, const run_opts *o)
{
    double gen_rate = r->generate_seconds > 0 ? (double)r->tokens.n / r->generate_seconds : 0;
    fprintf(stderr, "\n\nload %.2f s | prompt %" PRId64 " tokens, %.1f tokens/s | generated %zu tokens, %.1f tokens/s | stop: %s | seed %" PRIu64 "\n",
            L->load_seconds, r->prompt_tokens, r->prompt_seconds > 0 ? (double)r->prompt_tokens / r->prompt_seconds : 0,
            r->tokens.n, gen_rate, reason_name(r->reason), o->seed);
}

/* The messages JSON of a conversation: optional system message, then the turns. */
static dsrt_status encode_chat(const run_opts *o, cJSON *messages, char **prompt, size_t *len)
{
    char *json = cJSON_PrintUnformatted(messages);
    if (!json) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    dsrt_chat_options co;
    dsrt_chat_options_init(&co);
    co.mode = o->think ? DSRT_CHAT_MODE_THINKING : DSRT_CHAT_MODE_CHAT;
    dsrt_status st = dsrt_chat_encode_messages(json, strlen(json), &co, prompt, len);
    free(json);
    return st;
}

static cJSON *new_conversation(const run_opts *o)
{
    cJSON *m = cJSON_CreateArray();
    if (m && o->system) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "role", "system");
        cJSON_AddStringToObject(s, "content", o->system);
        cJSON_AddItemToArray(m, s);
    }
    return m;
}

static void add_message(cJSON *messages, const char *role, const char *content, const char *reasoning)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "role", role);
    cJSON_AddStringToObject(x, "content", content);
    if (reasoning && *reasoning) cJSON_AddStringToObject(x, "reasoning_content", reasoning);
    cJSON_AddItemToArray(messages, x);
}

static dsrt_status tokenize_prompt(const loaded *L, const run_opts *o, const char *text, size_t len, dsrt_token_ids *ids)
{
    if (!o->chat) { /* a raw continuation starts at the beginning of a sequence */
        int64_t bos = dsrt_model_get_config(L->model)->bos_token_id;
        ids->ids = malloc(sizeof(int32_t) * 16);
        if (!ids->ids) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
        ids->cap = 16;
        ids->ids[ids->n++] = (int32_t)bos;
    }
    return dsrt_status_wrap(dsrt_tokenizer_encode(L->tok, text, len, 0, ids), "the prompt");
}

int dsrt_cmd_run(int argc, char **argv)
{
    if (dsrt_cli_load_plugins("run", &argc, argv)) return 1;
    run_opts o;
    int rc = parse_opts("run", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.prompt == !o.prompt_file) {
        fprintf(stderr, "dsrt run: error: give the prompt with -p TEXT or -f FILE (one of them)\n");
        return 2;
    }
    char *text = NULL;
    size_t tlen = 0;
    dsrt_status st = DSRT_OK;
    if (o.prompt_file) st = dsrt_read_file(o.prompt_file, 256u << 20, &text, &tlen);
    else {
        text = strdup(o.prompt);
        tlen = strlen(o.prompt);
        if (!text) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (st) return dsrt_cli_fail("run", st);
    size_t bad;
    if (!dsrt_utf8_valid(text, tlen, &bad)) {
        free(text);
        fprintf(stderr, "dsrt run: error: the prompt is not valid UTF-8 (byte %zu)\n", bad);
        return 1;
    }
    if (o.chat) { /* the prompt becomes a user message */
        cJSON *msgs = new_conversation(&o);
        add_message(msgs, "user", text, NULL);
        free(text);
        text = NULL;
        st = encode_chat(&o, msgs, &text, &tlen);
        cJSON_Delete(msgs);
        if (st) return dsrt_cli_fail("run", st);
    }
    loaded L;
    dsrt_token_ids ids = {0};
    dsrt_generate_result r = {0};
    dsrt_seq *seq = NULL;
    /* The cache is sized once the prompt length is known: load, tokenize, check. */
    st = load_model(&o, o.ctx > 0 ? o.ctx : 4096, &L);
    if (!st) st = tokenize_prompt(&L, &o, text, tlen, &ids);
    int64_t max_pos = st ? 0 : dsrt_model_get_config(L.model)->max_position_embeddings;
    int64_t need = (int64_t)ids.n + o.n_predict;
    if (!st && o.ctx > 0 && (int64_t)ids.n + 1 > o.ctx)
        st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the prompt has %zu tokens but the context holds %lld (--ctx)", ids.n, o.ctx);
    if (!st && (int64_t)ids.n + 1 > max_pos)
        st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the prompt has %zu tokens but the model's context is %lld (max_position_embeddings)",
                        ids.n, (long long)max_pos);
    if (!st && o.ctx <= 0 && need > 4096) { /* reload with a cache that fits prompt + generation */
        unload(&L);
        st = load_model(&o, need < max_pos ? need : max_pos, &L);
    }
    if (!st) st = dsrt_seq_create(L.model, &seq);
    if (!st) {
        int64_t room = (o.ctx > 0 ? o.ctx : (need < max_pos ? need : max_pos)) - (int64_t)ids.n;
        dsrt_generate_params gp = {o.sampling, o.seed, o.n_predict < room ? o.n_predict : room, o.stops, o.n_stops, print_text, NULL};
        st = dsrt_generate(L.model, L.tok, seq, ids.ids, (int64_t)ids.n, &gp, &r);
        if (!st) print_stats(&L, &r, &o);
    }
    dsrt_generate_result_free(&r);
    dsrt_seq_free(seq);
    dsrt_token_ids_free(&ids);
    free(text);
    if (L.model || L.tok) unload(&L);
    return st ? dsrt_cli_fail("run", st) : 0;
}

/* ---- dsrt chat ---- */

/* Reads one line (without its newline); NULL at end of input. */
static char *read_line(FILE *f)
{
    size_t cap = 256, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n') {
        if (n + 2 > cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
        b[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    return b;
}

int dsrt_cmd_chat(int argc, char **argv)
{
    if (dsrt_cli_load_plugins("chat", &argc, argv)) return 1;
    run_opts o;
    int rc = parse_opts("chat", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    o.chat = true;
    if (o.prompt || o.prompt_file) {
        fprintf(stderr, "dsrt chat: error: chat reads its messages from standard input (use dsrt run for -p/-f)\n");
        return 2;
    }
    int64_t ctx = o.ctx > 0 ? o.ctx : 4096;
    loaded L;
    dsrt_status st = load_model(&o, ctx, &L);
    if (st) return dsrt_cli_fail("chat", st);
    dsrt_seq *seq = NULL;
    st = dsrt_seq_create(L.model, &seq);
    cJSON *msgs = new_conversation(&o);
    int32_t *fed = NULL; /* the tokens in the cache, to find the prefix the next prompt shares */
    size_t n_fed = 0, cap_fed = 0;
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "dsrt chat: type a message; /reset starts over, /exit quits.\n");
    while (!st) {
        if (tty) fprintf(stderr, "\n> ");
        char *line = read_line(stdin);
        if (!line || !strcmp(line, "/exit") || !strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            cJSON_Delete(msgs);
            msgs = new_conversation(&o);
            st = dsrt_seq_truncate(seq, 0);
            n_fed = 0;
            free(line);
            continue;
        }
        size_t bad;
        if (!*line || !dsrt_utf8_valid(line, strlen(line), &bad)) {
            if (*line) fprintf(stderr, "dsrt chat: that line is not valid UTF-8 (byte %zu); not sent\n", bad);
            free(line);
            continue;
        }
        add_message(msgs, "user", line, NULL);
        free(line);
        char *prompt = NULL;
        size_t plen;
        dsrt_token_ids ids = {0};
        st = encode_chat(&o, msgs, &prompt, &plen);
        if (!st) st = dsrt_tokenizer_encode(L.tok, prompt, plen, 0, &ids);
        free(prompt);
        if (st) break;
        /* keep the cached prefix this prompt shares with what the cache holds */
        size_t keep = 0;
        while (keep < n_fed && keep < ids.n && fed[keep] == ids.ids[keep]) keep++;
        if (keep == ids.n) keep--; /* at least one token must be fed to get logits */
        if ((int64_t)ids.n + 1 > ctx) {
            fprintf(stderr, "dsrt chat: the conversation (%zu tokens) no longer fits the context (%lld); /reset to start over\n", ids.n,
                    (long long)ctx);
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            dsrt_token_ids_free(&ids);
            continue;
        }
        st = dsrt_seq_truncate(seq, (int64_t)keep);
        dsrt_generate_result r = {0};
        int64_t room = ctx - (int64_t)ids.n;
        dsrt_generate_params gp = {o.sampling, o.seed + n_fed, o.n_predict < room ? o.n_predict : room, o.stops, o.n_stops, print_text, NULL};
        if (!st) st = dsrt_generate(L.model, L.tok, seq, ids.ids + keep, (int64_t)(ids.n - keep), &gp, &r);
        if (!st) {
            print_stats(&L, &r, &o);
            /* remember what the cache now holds: the prompt and the generated tokens fed back */
            size_t total = (size_t)dsrt_seq_length(seq);
            if (total > cap_fed) {
                int32_t *nf = realloc(fed, sizeof *fed * total);
                if (!nf) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
                else {
                    fed = nf;
                    cap_fed = total;
                }
            }
            if (!st) {
                memcpy(fed, ids.ids, sizeof *fed * ids.n);
                if (total > ids.n) memcpy(fed + ids.n, r.tokens.ids, sizeof *fed * (total - ids.n));
                n_fed = total;
            }
            /* the reply joins the conversation as the official parser reads it */
            dsrt_chat_message reply = {0};
            dsrt_status ps = dsrt_chat_parse(r.text, r.text_len, o.think ? DSRT_CHAT_MODE_THINKING : DSRT_CHAT_MODE_CHAT, &reply);
            if (ps) {
                dsrt_status_free(ps);
                add_message(msgs, "assistant", r.text, NULL);
            } else {
                add_message(msgs, "assistant", reply.content ? reply.content : "", reply.reasoning_content);
                dsrt_chat_message_free(&reply);
            }
        }
        dsrt_generate_result_free(&r);
        dsrt_token_ids_free(&ids);
    }
    free(fed);
    cJSON_Delete(msgs);
    dsrt_seq_free(seq);
    unload(&L);
    return st ? dsrt_cli_fail("chat", st) : 0;
}
