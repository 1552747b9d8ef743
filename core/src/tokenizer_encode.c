/* Encoding: added tokens, then the pre-tokenizer's regex splits (PCRE2), then byte-level BPE per word.
 *
 * The order of work follows the tokenizers library exactly, since any difference shifts every later id:
 *   1. added tokens with normalized=false are cut out of the text (leftmost, then longest match);
 *   2. added tokens with normalized=true are cut out of what is left (there is no normalizer to run);
 *   3. each remaining segment goes through the Split steps in order, each step splitting every piece the
 *      previous one produced, with the regex seeing only that piece (so lookarounds stop at its ends);
 *   4. ByteLevel maps bytes to its printable alphabet; dsrt keeps raw bytes instead and converted the
 *      vocabulary at load, which is the same mapping applied on the other side;
 *   5. BPE merges each piece by rank with the library's priority-queue algorithm (lowest rank first, then
 *      leftmost), including its way of discarding stale queue entries, so even exotic merge tables agree.
 * Words already merged during this call are served from a per-call cache. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

typedef struct {
    size_t start, end;
} span;

typedef struct {
    size_t start, end;
    int match;
} span_m;

typedef struct {
    int32_t rank, pos, new_id;
} merge_item;

/* Scratch for one encode call: reused across words so the hot path does not allocate. */
typedef struct {
    const dsrt_tokenizer *t;
    dsrt_token_ids *out;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;

    span *pieces, *next;
    size_t n_pieces, n_next, cap_pieces, cap_next;
    span_m *marks;
    size_t n_marks, cap_marks;

    /* BPE symbols */
    struct bpe_sym {
        int32_t id, prev, next, len;
    } *sym;
    size_t cap_sym;
    merge_item *heap;
    size_t n_heap, cap_heap;

    /* word cache: word bytes -> index of (first, count) into cache_ids */
    dsrt_tok_strmap cache;
    char *cache_pool;
    size_t cache_pool_len, cache_pool_cap;
    int32_t *cache_ids;
    size_t n_cache_ids, cap_cache_ids;
    struct cache_entry {
        uint32_t first, count;
    } *cache_ent;
    size_t n_cache, cap_cache;
} enc_ctx;

static dsrt_status oom(void) { return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory while tokenizing"); }

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static int push_ids(dsrt_token_ids *out, const int32_t *ids, size_t n)
{
    if (!n) return 0;
    if (grow((void **)&out->ids, &out->cap, out->n + n, sizeof *out->ids)) return -1;
    memcpy(out->ids + out->n, ids, n * sizeof *ids);
    out->n += n;
    return 0;
}

/* ---- BPE ------------------------------------------------------------------------------------------------ */

static int heap_less(const merge_item *a, const merge_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(enc_ctx *c, merge_item it)
{
    if (grow((void **)&c->heap, &c->cap_heap, c->n_heap + 1, sizeof *c->heap)) return -1;
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = it;
    return 0;
}

static merge_item heap_pop(enc_ctx *c)
{
    merge_item top = c->heap[0];
    merge_item last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const merge_item *best = &last;
        if (l < n && heap_less(&c->heap[l], best)) {
            m = l;
            best = &c->heap[l];
        }
        if (r < n && heap_less(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

/* Merges one word (raw bytes) and appends its ids to `dst`. */
static dsrt_status bpe_word(enc_ctx *c, const unsigned char *w, size_t n, dsrt_token_ids *dst)
{
    const dsrt_tokenizer *t = c->t;
    if (t->ignore_merges) {
        int32_t id = dsrt_tok_strmap_get(&t->by_bytes, t->bytes_pool, (const char *)w, n);
        if (id >= 0) return push_ids(dst, &id, 1) ? oom() : DSRT_OK;
    }
    if (grow((void **)&c->sym, &c->cap_sym, n, sizeof *c->sym)) return oom();
    struct bpe_sym *sy = c->sym;

    /* initial symbols: one per byte; a byte missing from the vocabulary becomes unk (fused when asked) or,
     * with no unk token, is dropped, as the tokenizers library does */
    size_t ns = 0;
    int32_t unk_len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id >= 0) {
            if (unk_len) {
                sy[ns].id = t->unk_id;
                sy[ns++].len = unk_len;
                unk_len = 0;
            }
            sy[ns].id = id;
            sy[ns++].len = 1;
        } else if (t->unk_id >= 0) {
            if (unk_len && !t->fuse_unk) {
                sy[ns].id = t->unk_id;
                sy[ns++].len = unk_len;
                unk_len = 0;
            }
            unk_len += 1;
        }
    }
    if (unk_len) {
        sy[ns].id = t->unk_id;
        sy[ns++].len = unk_len;
    }
    for (size_t i = 0; i < ns; i++) {
        sy[i].prev = (int32_t)i - 1;
        sy[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    c->n_heap = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        int32_t rank, merged;
        if (dsrt_tok_pairmap_get(&t->merges, sy[i].id, sy[i + 1].id, &rank, &merged))
            if (heap_push(c, (merge_item){rank, (int32_t)i, merged})) return oom();
    }
    while (c->n_heap) {
        merge_item top = heap_pop(c);
        int32_t p = top.pos;
        if (sy[p].len == 0 || sy[p].next == -1) continue;
        int32_t q = sy[p].next;
        int32_t rank, merged;
        /* a queue entry is stale when the pair at its position no longer merges into the same token */
        if (!dsrt_tok_pairmap_get(&t->merges, sy[p].id, sy[q].id, &rank, &merged) || merged != top.new_id)
            continue;
        sy[p].id = top.new_id;
        sy[p].len += sy[q].len;
        sy[q].len = 0;
        sy[p].next = sy[q].next;
        if (sy[q].next >= 0) sy[sy[q].next].prev = p;
        if (sy[p].prev >= 0) {
            int32_t pp = sy[p].prev;
            if (dsrt_tok_pairmap_get(&t->merges, sy[pp].id, sy[p].id, &rank, &merged))
                if (heap_push(c, (merge_item){rank, pp, merged})) return oom();
        }
        if (sy[p].next >= 0) {
            int32_t nx = sy[p].next;
            if (dsrt_tok_pairmap_get(&t->merges, sy[p].id, sy[nx].id, &rank, &merged))
                if (heap_push(c, (merge_item){rank, p, merged})) return oom();
        }
    }
    if (grow((void **)&dst->ids, &dst->cap, dst->n + ns, sizeof *dst->ids)) return oom();
    for (size_t i = 0; i < ns; i++)
        if (sy[i].len) dst->ids[dst->n++] = sy[i].id;
    return DSRT_OK;
}

/* BPE through the per-call cache. */
static dsrt_status encode_word(enc_ctx *c, const unsigned char *w, size_t n)
{
    int32_t e = dsrt_tok_strmap_get(&c->cache, c->cache_pool, (const char *)w, n);
    if (e >= 0) return push_ids(c->out, c->cache_ids + c->cache_ent[e].first, c->cache_ent[e].count) ? oom() : DSRT_OK;

    /* merge into the cache's id array, then copy to the output */
    dsrt_token_ids tmp = {c->cache_ids, c->n_cache_ids, c->cap_cache_ids};
    size_t first = tmp.n;
    dsrt_status st = bpe_word(c, w, n, &tmp);
    c->cache_ids = tmp.ids;
    c->cap_cache_ids = tmp.cap;
    if (st) return st;
    c->n_cache_ids = tmp.n;
    size_t count = tmp.n - first;

    if (grow((void **)&c->cache_pool, &c->cache_pool_cap, c->cache_pool_len + n + 1, 1) ||
        grow((void **)&c->cache_ent, &c->cap_cache, c->n_cache + 1, sizeof *c->cache_ent))
        return oom();
    memcpy(c->cache_pool + c->cache_pool_len, w, n);
    c->cache_ent[c->n_cache].first = (uint32_t)first;
    c->cache_ent[c->n_cache].count = (uint32_t)count;
    if (dsrt_tok_strmap_put(&c->cache, c->cache_pool, (uint32_t)c->cache_pool_len, (uint32_t)n, (int32_t)c->n_cache))
        return oom();
    c->cache_pool_len += n;
    c->n_cache++;
    return push_ids(c->out, c->cache_ids + first, count) ? oom() : DSRT_OK;
}

/* ---- pre-tokenizer -------------------------------------------------------------------------------------- */

static size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

static int add_mark(enc_ctx *c, size_t s, size_t e, int m)
{
    if (grow((void **)&c->marks, &c->cap_marks, c->n_marks + 1, sizeof *c->marks)) return -1;
    c->marks[c->n_marks++] = (span_m){s, e, m};
    return 0;
}

static int add_next(enc_ctx *c, size_t s, size_t e)
{
    if (grow((void **)&c->next, &c->cap_next, c->n_next + 1, sizeof *c->next)) return -1;
    c->next[c->n_next++] = (span){s, e};
    return 0;
}

static dsrt_status run_regex(enc_ctx *c, const dsrt_tok_split *sp, const unsigned char *text, span piece)
{
    const unsigned char *subj = text + piece.start;
    size_t len = piece.end - piece.start, pos = 0, prev = 0;
    c->n_marks = 0;
    while (pos <= len) {
        int rc = pcre2_match(sp->re, subj, len, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jit_stack) {
            /* a pathological run (e.g. megabytes of one character class): give the JIT a bigger stack */
            c->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!c->jit_stack) return oom();
            pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return dsrt_error(DSRT_CODE_INTERNAL, "%s: pre-tokenizer regex failed at byte %zu: %s", c->t->name,
                              piece.start + pos, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            /* an empty match splits nothing (its empty piece would be dropped); step over one character */
            if (ms >= len) break;
            pos = ms + utf8_len(subj[ms]);
            continue;
        }
        if (ms > prev && add_mark(c, piece.start + prev, piece.start + ms, 0)) return oom();
        if (add_mark(c, piece.start + ms, piece.start + me, 1)) return oom();
        prev = pos = me;
    }
    if (prev < len && add_mark(c, piece.start + prev, piece.end, 0)) return oom();
    return DSRT_OK;
}

/* Applies the Split behaviour to this piece's marks (the tokenizers library's SplitDelimiterBehavior). */
static int apply_behavior(enc_ctx *c, const dsrt_tok_split *sp)
{
    size_t first = c->n_next; /* "acc" of the library's fold: only this piece's outputs */
    int prev_match = 0;
    switch (sp->behavior) {
    case DSRT_SPLIT_ISOLATED:
        for (size_t i = 0; i < c->n_marks; i++)
            if (add_next(c, c->marks[i].start, c->marks[i].end)) return -1;
        break;
    case DSRT_SPLIT_REMOVED:
        for (size_t i = 0; i < c->n_marks; i++)
            if (!(c->marks[i].match ^ sp->invert) && add_next(c, c->marks[i].start, c->marks[i].end)) return -1;
        break;
    case DSRT_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < c->n_marks; i++) {
            int m = c->marks[i].match ^ sp->invert;
            if (m && !prev_match && c->n_next > first)
                c->next[c->n_next - 1].end = c->marks[i].end;
            else if (add_next(c, c->marks[i].start, c->marks[i].end))
                return -1;
            prev_match = m;
        }
        break;
    case DSRT_SPLIT_MERGED_WITH_NEXT:
        /* the library folds from the right; walk the marks backwards and reverse this piece's outputs */
        for (size_t k = c->n_marks; k-- > 0;) {
            int m = c->marks[k].match ^ sp->invert;
            if (m && !prev_match && c->n_next > first)
                c->next[c->n_next - 1].start = c->marks[k].start;
            else if (add_next(c, c->marks[k].start, c->marks[k].end))
                return -1;
            prev_match = m;
        }
        for (size_t a = first, b = c->n_next; a + 1 < b; a++, b--) {
            span tmp = c->next[a];
            c->next[a] = c->next[b - 1];
            c->next[b - 1] = tmp;
        }
        break;
    case DSRT_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < c->n_marks; i++) {
            int m = c->marks[i].match ^ sp->invert;
            if (m == prev_match && c->n_next > first)
                c->next[c->n_next - 1].end = c->marks[i].end;
            else if (add_next(c, c->marks[i].start, c->marks[i].end))
                return -1;
            prev_match = m;
        }
        break;
    }
    return 0;
}

/* Pre-tokenizes one segment with no added tokens in it and BPE-encodes its words. */
static dsrt_status encode_segment(enc_ctx *c, const unsigned char *text, size_t start, size_t end)
{
    c->n_pieces = 0;
    if (grow((void **)&c->pieces, &c->cap_pieces, 1, sizeof *c->pieces)) return oom();
    c->pieces[c->n_pieces++] = (span){start, end};
    for (size_t s = 0; s < c->t->n_splits; s++) {
        const dsrt_tok_split *sp = &c->t->splits[s];
        c->n_next = 0;
        for (size_t i = 0; i < c->n_pieces; i++) {
            DSRT_TRY(run_regex(c, sp, text, c->pieces[i]));
            if (apply_behavior(c, sp)) return oom();
        }
        /* drop empty pieces, as the library does, and swap buffers */
        size_t k = 0;
        for (size_t i = 0; i < c->n_next; i++)
            if (c->next[i].end > c->next[i].start) c->next[k++] = c->next[i];
        span *tp = c->pieces;
        size_t tc = c->cap_pieces;
        c->pieces = c->next;
        c->cap_pieces = c->cap_next;
        c->n_pieces = k;
        c->next = tp;
        c->cap_next = tc;
    }
    for (size_t i = 0; i < c->n_pieces; i++)
        DSRT_TRY(encode_word(c, text + c->pieces[i].start, c->pieces[i].end - c->pieces[i].start));
    return DSRT_OK;
}

/* ---- added tokens --------------------------------------------------------------------------------------- */

/* Rust's char::is_whitespace (the Unicode White_Space property), which lstrip / rstrip use. */
static int is_white_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static uint32_t decode_at(const unsigned char *s, size_t *len)
{
    unsigned b = s[0];
    size_t n = utf8_len((unsigned char)b);
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1Fu) : n == 3 ? (b & 0x0Fu) : (b & 0x07u);
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (s[i] & 0x3Fu);
    *len = n;
    return cp;
}

static size_t prev_char_start(const unsigned char *s, size_t pos)
{
    size_t p = pos - 1;
    while (p > 0 && (s[p] & 0xC0) == 0x80) p--;
    return p;
}

static int is_word_char_at(const dsrt_tokenizer *t, pcre2_match_data *md, const unsigned char *s, size_t len,
                           size_t pos)
{
    return pcre2_match(t->word_re, s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL) >= 0;
}

typedef dsrt_status (*segment_fn)(enc_ctx *c, const unsigned char *text, size_t start, size_t end, int32_t added_id);

/* Finds added tokens of `trie` in text[start, end): leftmost match, longest at that position, as the
 * tokenizers library's Aho-Corasick LeftmostLongest search; calls fn for every gap and every match. */
static dsrt_status split_added(enc_ctx *c, const dsrt_tok_trie *tr, const unsigned char *text, size_t start,
                               size_t end, segment_fn fn)
{
    const dsrt_tokenizer *t = c->t;
    size_t done = start; /* end of the last emitted piece */
    size_t i = start;
    while (tr->n && i < end) {
        unsigned char b = text[i];
        if (!(tr->first_byte[b >> 3] & (1u << (b & 7)))) {
            i++;
            continue;
        }
        int node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < end; j++) {
            int ch = tr->nodes[node].first_child;
            while (ch >= 0 && tr->nodes[ch].byte != text[j]) ch = tr->nodes[ch].next_sibling;
            if (ch < 0) break;
            node = ch;
            if (tr->nodes[node].added >= 0) {
                best = tr->nodes[node].added;
                best_end = j + 1;
            }
        }
        if (best < 0) {
            i++;
            continue;
        }
        const dsrt_tok_added *a = &t->added[best];
        size_t ms = i, me = best_end;
        if (a->single_word) {
            /* only as a whole word: no word character right before or right after */
            int before = ms > 0 && is_word_char_at(t, c->md, text, end, prev_char_start(text, ms));
            int after = me < end && is_word_char_at(t, c->md, text, end, me);
            if (before || after) {
                i = me; /* the search resumes after the rejected match, as a non-overlapping iterator does */
                continue;
            }
        }
        if (a->lstrip) {
            while (ms > done) {
                size_t p = prev_char_start(text, ms), l;
                if (!is_white_space(decode_at(text + p, &l))) break;
                ms = p;
            }
        }
        if (a->rstrip) {
            while (me < end) {
                size_t l;
                if (!is_white_space(decode_at(text + me, &l))) break;
                me += l;
            }
        }
        if (ms > done) DSRT_TRY(fn(c, text, done, ms, -1));
        DSRT_TRY(fn(c, text, ms, me, a->id));
        done = i = me;
    }
    if (end > done) DSRT_TRY(fn(c, text, done, end, -1));
    return DSRT_OK;
}

static dsrt_status on_normalized_pass(enc_ctx *c, const unsigned char *text, size_t start, size_t end, int32_t id)
{
    if (id >= 0) return push_ids(c->out, &id, 1) ? oom() : DSRT_OK;
    return encode_segment(c, text, start, end);
}

static dsrt_status on_raw_pass(enc_ctx *c, const unsigned char *text, size_t start, size_t end, int32_t id)
{
    if (id >= 0) return push_ids(c->out, &id, 1) ? oom() : DSRT_OK;
    return split_added(c, &c->t->trie_norm, text, start, end, on_normalized_pass);
}

/* ---- entry ---------------------------------------------------------------------------------------------- */

static void ctx_free(enc_ctx *c)
{
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    if (c->jit_stack) pcre2_jit_stack_free(c->jit_stack);
    free(c->pieces);
    free(c->next);
    free(c->marks);
    free(c->sym);
    free(c->heap);
    dsrt_tok_strmap_free(&c->cache);
    free(c->cache_pool);
    free(c->cache_ids);
    free(c->cache_ent);
}

dsrt_status dsrt_tokenizer_encode(const dsrt_tokenizer *t, const char *text, size_t len, unsigned flags,
                                  dsrt_token_ids *out)
{
    if (!t || !out || (!text && len))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "dsrt_tokenizer_encode: NULL tokenizer, text or output");
    size_t bad = 0;
    if (!dsrt_utf8_valid(text, len, &bad))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "input is not valid UTF-8: bad byte 0x%02X at byte offset %zu (of %zu)",
                          (unsigned)(unsigned char)text[bad], bad, len);
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.out = out;
    c.md = pcre2_match_data_create(1, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    if (!c.md || !c.mctx || dsrt_tok_strmap_init(&c.cache, 4096)) {
        ctx_free(&c);
        return oom();
    }
    size_t n0 = out->n;
    dsrt_status st = DSRT_OK;
    if ((flags & DSRT_TOKENIZE_ADD_SPECIAL) && t->n_post_prefix && push_ids(out, t->post_prefix, t->n_post_prefix))
        st = oom();
    if (!st && len) st = split_added(&c, &t->trie_raw, (const unsigned char *)text, 0, len, on_raw_pass);
    if (!st && (flags & DSRT_TOKENIZE_ADD_SPECIAL) && t->n_post_suffix &&
        push_ids(out, t->post_suffix, t->n_post_suffix))
        st = oom();
    ctx_free(&c);
    if (st) out->n = n0; /* leave the caller's array as it was */
    return st;
}
