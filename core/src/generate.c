/* The generation loop: one prefill forward, then one decode forward per token; sampling on the host with
 * the shared rule; text streamed through the tokenizer's UTF-8-safe decoder and held back while it could
 * still be the start of a stop string. */
#include "dsrt/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    char *buf; /* text decoded so far */
    size_t len, cap;
    size_t emitted; /* bytes already given to on_text */
    const dsrt_generate_params *p;
    bool stopped_by_caller;
} text_acc;

static dsrt_status append(text_acc *a, const char *s, size_t n)
{
    if (a->len + n + 1 > a->cap) {
        size_t c = a->cap ? a->cap * 2 : 256;
        while (c < a->len + n + 1) c *= 2;
        char *b = realloc(a->buf, c);
        if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for generated text");
        a->buf = b;
        a->cap = c;
    }
    memcpy(a->buf + a->len, s, n);
    a->len += n;
    a->buf[a->len] = 0;
    return DSRT_OK;
}

/* Offset of the first stop string in the text, or -1. */
static long find_stop(const text_acc *a)
{
    long best = -1;
    for (int i = 0; i < a->p->n_stop_strings; i++) {
        const char *s = a->p->stop_strings[i];
        if (!s || !*s) continue;
        const char *hit = memmem(a->buf, a->len, s, strlen(s));
        if (hit && (best < 0 || hit - a->buf < best)) best = hit - a->buf;
    }
    return best;
}

/* Bytes at the end that might begin a stop string (held back from the stream). */
static size_t held_back(const text_acc *a)
{
    size_t hold = 0;
    for (int i = 0; i < a->p->n_stop_strings; i++) {
        const char *s = a->p->stop_strings[i];
        size_t sl = s ? strlen(s) : 0;
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= a->len && memcmp(a->buf + a->len - k, s, k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static void emit(text_acc *a, size_t upto)
{
    if (upto <= a->emitted || a->stopped_by_caller) return;
    if (a->p->on_text && a->p->on_text(a->p->ctx, a->buf + a->emitted, upto - a->emitted)) a->stopped_by_caller = true;
    a->emitted = upto;
}

dsrt_status dsrt_generate(dsrt_model *m, const dsrt_tokenizer *tok, dsrt_seq *seq, const int32_t *prompt, int64_t n_prompt,
                          const dsrt_generate_params *p, dsrt_generate_result *out)
{
    memset(out, 0, sizeof *out);
    if (n_prompt < 1) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the prompt is empty");
    DSRT_TRY(dsrt_sampling_check(&p->sampling));
    const dsrt_model_config *c = dsrt_model_get_config(m);
    int64_t V = c->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    void *scratch = malloc(dsrt_sample_scratch_bytes(V));
    dsrt_detok_stream *ds = NULL;
    text_acc acc = {0};
    acc.p = p;
    dsrt_status st = (!logits || !scratch) ? dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory") : DSRT_OK;
    if (!st) st = dsrt_detok_stream_create(tok, DSRT_DETOKENIZE_SKIP_SPECIAL, &ds);
    dsrt_random rng;
    dsrt_random_seed(&rng, p->seed);
    out->prompt_tokens = n_prompt;
    double t0 = now_s();
    if (!st) {
        dsrt_batch_item it = {seq, prompt, n_prompt, false};
        st = dsrt_model_forward(m, &it, 1, logits);
    }
    out->prompt_seconds = now_s() - t0;
    t0 = now_s();
    out->reason = DSRT_STOP_LENGTH;
    for (int64_t i = 0; !st && i < p->max_new_tokens; i++) {
        int32_t id = dsrt_sample_row(logits, V, &p->sampling, dsrt_random_uniform(&rng), scratch);
        if (id == c->eos_token_id) {
            out->reason = DSRT_STOP_EOS;
            break;
        }
        if (out->tokens.n == out->tokens.cap) {
            size_t nc = out->tokens.cap ? out->tokens.cap * 2 : 64;
            int32_t *ni = realloc(out->tokens.ids, nc * sizeof *ni);
            if (!ni) {
                st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            out->tokens.ids = ni;
            out->tokens.cap = nc;
        }
        out->tokens.ids[out->tokens.n++] = id;
        const char *piece;
        size_t plen;
        if ((st = dsrt_detok_stream_push(ds, id, &piece, &plen))) break;
        if ((st = append(&acc, piece, plen))) break;
        long hit = find_stop(&acc);
        if (hit >= 0) {
            acc.len = (size_t)hit;
            acc.buf[acc.len] = 0;
            emit(&acc, acc.len);
            out->reason = DSRT_STOP_STRING;
            break;
        }
        emit(&acc, acc.len - held_back(&acc));
        if (acc.stopped_by_caller) {
            out->reason = DSRT_STOP_CALLER;
            break;
        }
        if (i + 1 == p->max_new_tokens) break; /* the last token needs no forward */
        dsrt_batch_item it = {seq, &out->tokens.ids[out->tokens.n - 1], 1, false};
        st = dsrt_model_forward(m, &it, 1, logits);
    }
    if (!st && out->reason != DSRT_STOP_STRING) {
        const char *rest;
        size_t rlen;
        st = dsrt_detok_stream_flush(ds, &rest, &rlen);
        if (!st) st = append(&acc, rest, rlen);
        if (!st) emit(&acc, acc.len);
    }
    out->generate_seconds = now_s() - t0;
    out->text = acc.buf ? acc.buf : calloc(1, 1);
    out->text_len = acc.len;
    dsrt_detok_stream_free(ds);
    free(logits);
    free(scratch);
    if (st) {
        dsrt_generate_result_free(out);
        return st;
    }
    return DSRT_OK;
}

void dsrt_generate_result_free(dsrt_generate_result *r)
{
    dsrt_token_ids_free(&r->tokens);
    free(r->text);
    r->text = NULL;
}
