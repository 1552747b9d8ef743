/* Decoding ids back to bytes, whole or as a stream. Each token's bytes were computed at load (ByteLevel
 * alphabet turned back into bytes), so decoding is concatenation; the stream only has to decide how much of
 * what it has is safe to hand out as text. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static dsrt_status bad_id(const dsrt_tokenizer *t, int32_t id, size_t pos)
{
    if (id < 0 || id >= t->vocab_size)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "token id %d at position %zu is out of range (vocabulary: 0..%d)",
                          (int)id, pos, (int)t->vocab_size - 1);
    return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "token id %d at position %zu has no token in %s", (int)id, pos,
                      t->name);
}

dsrt_status dsrt_tokenizer_decode(const dsrt_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                  char **text, size_t *len)
{
    *text = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || t->bytes_len[id] < 0) return bad_id(t, id, i);
        if ((flags & DSRT_DETOKENIZE_SKIP_SPECIAL) && t->is_special[id]) continue;
        total += (size_t)t->bytes_len[id];
    }
    char *out = malloc(total + 1);
    if (!out) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory decoding %zu tokens", n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((flags & DSRT_DETOKENIZE_SKIP_SPECIAL) && t->is_special[id]) continue;
        memcpy(out + o, t->bytes_pool + t->bytes_off[id], (size_t)t->bytes_len[id]);
        o += (size_t)t->bytes_len[id];
    }
    out[o] = 0;
    *text = out;
    if (len) *len = o;
    return DSRT_OK;
}

struct dsrt_detok_stream {
    const dsrt_tokenizer *t;
    unsigned flags;
    size_t count; /* ids pushed so far, for messages */
    char *buf;    /* held-back bytes first, then the newly added token; handed out from the front */
    size_t held, cap;
    char *out; /* what the last call handed out */
    size_t out_cap;
};

dsrt_status dsrt_detok_stream_create(const dsrt_tokenizer *t, unsigned flags, dsrt_detok_stream **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory creating a decode stream");
    (*out)->t = t;
    (*out)->flags = flags;
    return DSRT_OK;
}

void dsrt_detok_stream_free(dsrt_detok_stream *s)
{
    if (!s) return;
    free(s->buf);
    free(s->out);
    free(s);
}

/* How many bytes at the end of b[0..n) are the start of a UTF-8 character still missing bytes. Bytes that
 * cannot begin or continue a valid sequence are not held: waiting would never make them valid. */
static size_t incomplete_tail(const unsigned char *b, size_t n)
{
    /* look back over at most 3 continuation bytes for the lead byte */
    size_t k = 0;
    while (k < n && k < 3 && (b[n - 1 - k] & 0xC0) == 0x80) k++;
    if (k == n) return 0; /* only continuation bytes: no lead to wait for */
    unsigned lead = b[n - 1 - k];
    size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
    if (need == 0 || k + 1 >= need) return 0; /* ASCII, invalid lead, or already complete */
    /* the second byte of E0/ED/F0/F4 sequences has a narrower range; one outside it can never complete */
    if (k >= 1) {
        unsigned b1 = b[n - k];
        if ((lead == 0xE0 && b1 < 0xA0) || (lead == 0xED && b1 > 0x9F) || (lead == 0xF0 && b1 < 0x90) ||
            (lead == 0xF4 && b1 > 0x8F))
            return 0;
    }
    return k + 1;
}

static dsrt_status emit(dsrt_detok_stream *s, size_t n, const char **text, size_t *len)
{
    if (n + 1 > s->out_cap) {
        size_t nc = s->out_cap ? s->out_cap : 64;
        while (nc < n + 1) nc *= 2;
        char *o = realloc(s->out, nc);
        if (!o) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory in a decode stream");
        s->out = o;
        s->out_cap = nc;
    }
    if (n) memcpy(s->out, s->buf, n); /* buf is NULL until the first non-empty token */
    s->out[n] = 0;
    if (n && s->held > n) memmove(s->buf, s->buf + n, s->held - n);
    s->held -= n;
    *text = s->out;
    *len = n;
    return DSRT_OK;
}

dsrt_status dsrt_detok_stream_push(dsrt_detok_stream *s, int32_t id, const char **text, size_t *len)
{
    const dsrt_tokenizer *t = s->t;
    *text = "";
    *len = 0;
    size_t pos = s->count++;
    if (id < 0 || id >= t->vocab_size || t->bytes_len[id] < 0) return bad_id(t, id, pos);
    if ((s->flags & DSRT_DETOKENIZE_SKIP_SPECIAL) && t->is_special[id]) return DSRT_OK;
    size_t add = (size_t)t->bytes_len[id];
    if (s->held + add > s->cap) {
        size_t nc = s->cap ? s->cap : 64;
        while (nc < s->held + add) nc *= 2;
        char *b = realloc(s->buf, nc);
        if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory in a decode stream");
        s->buf = b;
        s->cap = nc;
    }
    if (add) memcpy(s->buf + s->held, t->bytes_pool + t->bytes_off[id], add);
    s->held += add;
    size_t keep = incomplete_tail((const unsigned char *)s->buf, s->held);
    return emit(s, s->held - keep, text, len);
}

dsrt_status dsrt_detok_stream_flush(dsrt_detok_stream *s, const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    dsrt_status st = emit(s, s->held, text, len);
    s->count = 0;
    return st;
}
