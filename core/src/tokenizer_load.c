/* Loading a Hugging Face tokenizer.json (cJSON) into the immutable dsrt_tokenizer. Every field dsrt does not
 * implement is refused here with a message naming it, so a tokenizer that loads encodes like the original. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- byte-level alphabet (GPT-2's bytes_to_unicode) ---------------------------------------------------
 * Printable bytes 33..126, 161..172, 174..255 stand for themselves; the other 68 bytes, in increasing order,
 * become code points 256, 257, ... 323. Computed, not tabulated, so there is no table to get wrong. */

static int byte_is_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static int bytelevel_byte_of_cp(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;              /* 0..32 */
    if (n < 33 + 34) return (int)(127 + n - 33); /* 127..160 */
    return 173;
}

/* Reads one UTF-8 character (input known valid); returns its length. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80 || len < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0 || len < 4) {
        if (len < 3) {
            *cp = c;
            return 1;
        }
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
    return 4;
}

long dsrt_tok_bytelevel_decode(const char *text, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        i += utf8_next(s + i, len - i, &cp);
        int b = bytelevel_byte_of_cp(cp);
        if (b < 0) return -1;
        out[o++] = (char)b;
    }
    return (long)o;
}

int dsrt_utf8_valid(const char *str, size_t len, size_t *bad_offset)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            min = 0x10000;
        } else {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        if (len - i <= need) {
            /* truncated: the first missing or bad continuation byte is the one to report, else the lead */
            for (size_t k = 1; i + k < len; k++)
                if ((s[i + k] & 0xC0) != 0x80) {
                    if (bad_offset) *bad_offset = i;
                    return 0;
                }
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        uint32_t cp = c & (need == 1 ? 0x1Fu : need == 2 ? 0x0Fu : 0x07u);
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                if (bad_offset) *bad_offset = i;
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* ---- helpers -------------------------------------------------------------------------------------- */

static dsrt_status oom(const char *what) { return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory (%s)", what); }

static const char *json_type_name(const cJSON *v)
{
    if (!v) return "nothing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an unknown value";
}

/* A boolean field that may be absent (then `dflt`). */
static dsrt_status get_bool(const cJSON *obj, const char *key, int dflt, const char *where, const char *file,
                            int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return DSRT_OK;
    }
    if (!cJSON_IsBool(v))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.%s: expected a boolean, found %s", file, where, key,
                          json_type_name(v));
    *out = cJSON_IsTrue(v);
    return DSRT_OK;
}

static int json_is_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0 &&
           (double)(int32_t)v->valuedouble == v->valuedouble;
}

static int append_pool(char **pool, size_t *len, size_t *cap, const char *s, size_t n, uint32_t *off)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 1 << 16;
        while (nc < *len + n + 1) nc *= 2;
        char *p = realloc(*pool, nc);
        if (!p) return -1;
        *pool = p;
        *cap = nc;
    }
    if (*len + n + 1 > UINT32_MAX) return -1;
    memcpy(*pool + *len, s, n);
    (*pool)[*len + n] = 0;
    *off = (uint32_t)*len;
    *len += n + 1;
    return 0;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------------------- */

/* GPT-2's split, which ByteLevel applies itself when use_regex is true. */
static const char DSRT_BYTELEVEL_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static dsrt_status compile_split(dsrt_tokenizer *t, const char *pattern, size_t plen, int literal,
                                 dsrt_split_behavior behavior, int invert, const char *where)
{
    int err = 0;
    PCRE2_SIZE erroff = 0;
    /* UTF + UCP: \p{..}, \s and character classes work on code points with Unicode properties, as
     * Oniguruma does in the tokenizers library. */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* UCP is meaningless (and refused) for a literal */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, opts, &err, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s: regex does not compile at offset %zu: %s", t->name, where,
                          (size_t)erroff, (const char *)msg);
    }
    /* JIT makes matching several times faster; where it is unavailable the interpreter is used. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    dsrt_tok_split *ns = realloc(t->splits, (t->n_splits + 1) * sizeof *ns);
    if (!ns) {
        pcre2_code_free(re);
        return oom("pre-tokenizer");
    }
    t->splits = ns;
    t->splits[t->n_splits].re = re;
    t->splits[t->n_splits].behavior = behavior;
    t->splits[t->n_splits].invert = invert;
    t->n_splits++;
    return DSRT_OK;
}

static dsrt_status parse_one_pretok(dsrt_tokenizer *t, const cJSON *p, const char *where, int is_last,
                                    int *saw_bytelevel)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s: no \"type\" string", t->name, where);
    if (*saw_bytelevel)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                          "%s: %s: unsupported pre_tokenizer: '%s' after ByteLevel (dsrt needs ByteLevel last)",
                          t->name, where, type->valuestring);
    if (strcmp(type->valuestring, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const cJSON *lit = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        if (!cJSON_IsString(rx) && !cJSON_IsString(lit))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.pattern: expected {\"Regex\": ...} or {\"String\": ...}",
                              t->name, where);
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(beh))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.behavior: expected a string, found %s", t->name, where,
                              json_type_name(beh));
        static const struct {
            const char *name;
            dsrt_split_behavior b;
        } behaviors[] = {{"Removed", DSRT_SPLIT_REMOVED},
                         {"Isolated", DSRT_SPLIT_ISOLATED},
                         {"MergedWithPrevious", DSRT_SPLIT_MERGED_WITH_PREVIOUS},
                         {"MergedWithNext", DSRT_SPLIT_MERGED_WITH_NEXT},
                         {"Contiguous", DSRT_SPLIT_CONTIGUOUS}};
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(beh->valuestring, behaviors[i].name) == 0) found = i;
        if (found < 0)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                              "%s: %s.behavior: unsupported Split behavior '%s' (expected Removed, Isolated, "
                              "MergedWithPrevious, MergedWithNext or Contiguous)",
                              t->name, where, beh->valuestring);
        int invert = 0;
        DSRT_TRY(get_bool(p, "invert", 0, where, t->name, &invert));
        const char *s = cJSON_IsString(rx) ? rx->valuestring : lit->valuestring;
        char w[96];
        snprintf(w, sizeof w, "%s.pattern", where);
        return compile_split(t, s, strlen(s), !cJSON_IsString(rx), behaviors[found].b, invert, w);
    }
    if (strcmp(type->valuestring, "ByteLevel") == 0) {
        if (!is_last)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                              "%s: %s: unsupported pre_tokenizer: ByteLevel must be the last step", t->name, where);
        int aps = 0, use_regex = 1;
        DSRT_TRY(get_bool(p, "add_prefix_space", 1, where, t->name, &aps));
        DSRT_TRY(get_bool(p, "use_regex", 1, where, t->name, &use_regex));
        if (aps)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                              "%s: %s: unsupported pre_tokenizer: ByteLevel with add_prefix_space=true", t->name,
                              where);
        *saw_bytelevel = 1;
        if (use_regex)
            return compile_split(t, DSRT_BYTELEVEL_REGEX, sizeof DSRT_BYTELEVEL_REGEX - 1, 0, DSRT_SPLIT_ISOLATED,
                                 0, "ByteLevel regex");
        return DSRT_OK;
    }
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                      "%s: %s: unsupported pre_tokenizer type '%s' (dsrt implements Split, ByteLevel and Sequence)",
                      t->name, where, type->valuestring);
}

static dsrt_status parse_pre_tokenizer(dsrt_tokenizer *t, const cJSON *pt)
{
    if (!cJSON_IsObject(pt))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                          "%s: pre_tokenizer is %s; byte-level BPE needs a ByteLevel pre_tokenizer", t->name,
                          json_type_name(pt));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    int saw_bl = 0;
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (!cJSON_IsArray(list))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: pre_tokenizer.pretokenizers: expected an array, found %s",
                              t->name, json_type_name(list));
        int n = cJSON_GetArraySize(list), i = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, list)
        {
            char where[64];
            snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%d]", i);
            DSRT_TRY(parse_one_pretok(t, p, where, i == n - 1, &saw_bl));
            i++;
        }
    } else {
        DSRT_TRY(parse_one_pretok(t, pt, "pre_tokenizer", 1, &saw_bl));
    }
    if (!saw_bl)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                          "%s: unsupported pre_tokenizer: no ByteLevel step (dsrt implements byte-level BPE only)",
                          t->name);
    return DSRT_OK;
}

/* ---- added tokens ----------------------------------------------------------------------------------- */

static int trie_new_node(dsrt_tok_trie *tr, unsigned char byte)
{
    if (tr->n == tr->cap) {
        size_t nc = tr->cap ? tr->cap * 2 : 256;
        dsrt_tok_trie_node *nn = realloc(tr->nodes, nc * sizeof *nn);
        if (!nn) return -1;
        tr->nodes = nn;
        tr->cap = nc;
    }
    dsrt_tok_trie_node *nd = &tr->nodes[tr->n];
    nd->first_child = -1;
    nd->next_sibling = -1;
    nd->added = -1;
    nd->byte = byte;
    return (int)tr->n++;
}

static int trie_insert(dsrt_tok_trie *tr, const char *s, size_t len, int32_t added_index)
{
    if (tr->n == 0 && trie_new_node(tr, 0) < 0) return -1; /* root */
    int node = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = tr->nodes[node].first_child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].next_sibling;
        if (c < 0) {
            c = trie_new_node(tr, b);
            if (c < 0) return -1;
            tr->nodes[c].next_sibling = tr->nodes[node].first_child;
            tr->nodes[node].first_child = c;
        }
        node = c;
    }
    /* a repeated content keeps the last entry, as the tokenizers library's map does */
    tr->nodes[node].added = added_index;
    tr->first_byte[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
    return 0;
}

/* The id the tokenizers library gives an added token when it loads the file: the vocabulary's id when the
 * content is already a token (or an earlier added token), otherwise the next id after the vocabulary and the
 * added tokens so far. Files the library wrote agree with their "id" fields; a file edited by hand may not,
 * and then the library's numbering is the one models were trained with. */
static int32_t added_token_id(const dsrt_tokenizer *t, const char *content, size_t model_count)
{
    for (size_t i = t->n_added - 1; i-- > 0;) /* the entry being added is the last one; search the earlier */
        if (strcmp(t->added[i].content, content) == 0) return t->added[i].id;
    int32_t id = dsrt_tok_strmap_get(&t->by_text, t->text_pool, content, strlen(content));
    if (id >= 0) return id;
    int32_t max = -1;
    for (size_t i = 0; i + 1 < t->n_added; i++)
        if (t->added[i].id > max) max = t->added[i].id;
    if (max < 0) return (int32_t)model_count;
    return (max >= (int32_t)model_count || model_count == 0) ? max + 1 : (int32_t)model_count;
}

static dsrt_status parse_added_tokens(dsrt_tokenizer *t, const cJSON *list, size_t model_count, int32_t *max_id)
{
    if (!list || cJSON_IsNull(list)) return DSRT_OK;
    if (!cJSON_IsArray(list))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: added_tokens: expected an array, found %s", t->name,
                          json_type_name(list));
    size_t n = (size_t)cJSON_GetArraySize(list);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return oom("added tokens");
    const cJSON *a;
    size_t i = 0;
    cJSON_ArrayForEach(a, list)
    {
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!json_is_int(id))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.id: expected a non-negative integer, found %s", t->name,
                              where, json_type_name(id));
        if (!cJSON_IsString(content))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.content: expected a string, found %s", t->name, where,
                              json_type_name(content));
        dsrt_tok_added *at = &t->added[t->n_added++];
        at->len = strlen(content->valuestring);
        at->content = malloc(at->len + 1);
        if (!at->content) return oom("added tokens");
        memcpy(at->content, content->valuestring, at->len + 1);
        /* the file's "id" is checked for form only: tokenizers recomputes it, and so does dsrt */
        at->id = added_token_id(t, at->content, model_count);
        int v = 0;
        DSRT_TRY(get_bool(a, "single_word", 0, where, t->name, &v));
        at->single_word = (unsigned char)v;
        DSRT_TRY(get_bool(a, "lstrip", 0, where, t->name, &v));
        at->lstrip = (unsigned char)v;
        DSRT_TRY(get_bool(a, "rstrip", 0, where, t->name, &v));
        at->rstrip = (unsigned char)v;
        DSRT_TRY(get_bool(a, "normalized", 0, where, t->name, &v));
        at->normalized = (unsigned char)v;
        DSRT_TRY(get_bool(a, "special", 0, where, t->name, &v));
        at->special = (unsigned char)v;
        if (at->id > *max_id) *max_id = at->id;
        i++;
    }
    return DSRT_OK;
}

/* ---- model ------------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t text_off; /* into text_pool */
    uint32_t text_len;
} vocab_entry;

static dsrt_status parse_merges(dsrt_tokenizer *t, const cJSON *merges)
{
    if (!cJSON_IsArray(merges))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.merges: expected an array, found %s", t->name,
                          json_type_name(merges));
    size_t n = (size_t)cJSON_GetArraySize(merges);
    if (dsrt_tok_pairmap_init(&t->merges, n)) return oom("merges");
    char *buf = NULL;
    size_t bufcap = 0;
    dsrt_status st = DSRT_OK;
    const cJSON *m;
    size_t rank = 0;
    cJSON_ArrayForEach(m, merges)
    {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(m)) {
            /* "a b": exactly one space, as the tokenizers library requires */
            const char *s = m->valuestring;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.merges[%zu]: expected \"A B\" (one space), found \"%s\"",
                                t->name, rank, s);
                break;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"], found %s",
                            t->name, rank, json_type_name(m));
            break;
        }
        if (alen + blen > bufcap) {
            bufcap = (alen + blen) * 2 + 64;
            char *nb = realloc(buf, bufcap);
            if (!nb) {
                st = oom("merges");
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        int32_t ia = dsrt_tok_strmap_get(&t->by_text, t->text_pool, a, alen);
        int32_t ib = dsrt_tok_strmap_get(&t->by_text, t->text_pool, b, blen);
        int32_t im = dsrt_tok_strmap_get(&t->by_text, t->text_pool, buf, alen + blen);
        if (ia < 0 || ib < 0 || im < 0) {
            const char *missing = ia < 0 ? a : ib < 0 ? b : NULL;
            size_t mlen = ia < 0 ? alen : blen;
            if (missing)
                st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.merges[%zu]: token '%.*s' is not in the vocabulary",
                                t->name, rank, (int)mlen, missing);
            else
                st = dsrt_error(DSRT_CODE_DATA_LOSS,
                                "%s: model.merges[%zu]: merged token '%.*s' is not in the vocabulary", t->name, rank,
                                (int)(alen + blen), buf);
            break;
        }
        if (dsrt_tok_pairmap_put(&t->merges, ia, ib, (int32_t)rank, im)) {
            st = oom("merges");
            break;
        }
        rank++;
    }
    free(buf);
    return st;
}

static dsrt_status parse_model(dsrt_tokenizer *t, const cJSON *model, vocab_entry **entries_out, int32_t *max_id)
{
    if (!cJSON_IsObject(model))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model: expected an object, found %s", t->name,
                          json_type_name(model));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported model type '%s' (dsrt implements BPE)", t->name,
                          type->valuestring);
    if (!cJSON_IsString(type) && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported model: no type and no merges (dsrt implements BPE)",
                          t->name);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported model setting: BPE dropout", t->name);
    static const char *const unsupported_strings[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, unsupported_strings[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == 0))
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported model setting: BPE %s", t->name,
                              unsupported_strings[i]);
    }
    int byte_fallback = 0;
    DSRT_TRY(get_bool(model, "byte_fallback", 0, "model", t->name, &byte_fallback));
    if (byte_fallback)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported model setting: BPE byte_fallback=true", t->name);
    DSRT_TRY(get_bool(model, "ignore_merges", 0, "model", t->name, &t->ignore_merges));
    DSRT_TRY(get_bool(model, "fuse_unk", 0, "model", t->name, &t->fuse_unk));

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.vocab: expected an object, found %s", t->name,
                          json_type_name(vocab));
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    t->model_vocab_count = n;
    vocab_entry *entries = calloc(n ? n : 1, sizeof *entries);
    int32_t *ids = calloc(n ? n : 1, sizeof *ids);
    if (!entries || !ids) {
        free(entries);
        free(ids);
        return oom("vocabulary");
    }
    size_t pool_cap = 0;
    if (dsrt_tok_strmap_init(&t->by_text, n + 1024)) {
        free(entries);
        free(ids);
        return oom("vocabulary");
    }
    const cJSON *v;
    size_t i = 0;
    cJSON_ArrayForEach(v, vocab)
    {
        if (!json_is_int(v)) {
            dsrt_status st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.vocab[\"%s\"]: expected a non-negative integer id, found %s",
                                        t->name, v->string, json_type_name(v));
            free(entries);
            free(ids);
            return st;
        }
        uint32_t off;
        size_t len = strlen(v->string);
        if (append_pool(&t->text_pool, &t->text_pool_len, &pool_cap, v->string, len, &off) ||
            dsrt_tok_strmap_put(&t->by_text, t->text_pool, off, (uint32_t)len, (int32_t)v->valuedouble)) {
            free(entries);
            free(ids);
            return oom("vocabulary");
        }
        ids[i] = (int32_t)v->valuedouble;
        entries[i].text_off = off;
        entries[i].text_len = (uint32_t)len;
        if (ids[i] > *max_id) *max_id = ids[i];
        i++;
    }
    /* entries are re-indexed by id below; keep (id, text) pairs by sorting into an id-indexed array */
    vocab_entry *by_id = calloc((size_t)*max_id + 2, sizeof *by_id);
    if (!by_id) {
        free(entries);
        free(ids);
        return oom("vocabulary");
    }
    for (size_t k = 0; k < (size_t)*max_id + 2; k++) by_id[k].text_len = UINT32_MAX; /* "no token" */
    for (size_t k = 0; k < n; k++) by_id[ids[k]] = entries[k];
    free(entries);
    free(ids);
    *entries_out = by_id;

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk_id = -1;
    if (cJSON_IsString(unk)) {
        t->unk_id = dsrt_tok_strmap_get(&t->by_text, t->text_pool, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0)
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: model.unk_token '%s' is not in the vocabulary", t->name,
                              unk->valuestring);
    }
    return parse_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"));
}

/* ---- post-processor --------------------------------------------------------------------------------- */

static dsrt_status parse_template(dsrt_tokenizer *t, const cJSON *pp, const char *where)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    if (!cJSON_IsArray(single))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.single: expected an array, found %s", t->name, where,
                          json_type_name(single));
    int seen_seq = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, single)
    {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *name = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        if (!cJSON_IsString(name))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.single: expected SpecialToken or Sequence items", t->name,
                              where);
        const cJSON *def = specials ? cJSON_GetObjectItemCaseSensitive(specials, name->valuestring) : NULL;
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.special_tokens[\"%s\"].ids: missing", t->name, where,
                              name->valuestring);
        const cJSON *idv;
        cJSON_ArrayForEach(idv, ids)
        {
            if (!json_is_int(idv))
                return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s.special_tokens[\"%s\"].ids: expected integers", t->name,
                                  where, name->valuestring);
            int32_t **arr = seen_seq ? &t->post_suffix : &t->post_prefix;
            size_t *cnt = seen_seq ? &t->n_post_suffix : &t->n_post_prefix;
            int32_t *na = realloc(*arr, (*cnt + 1) * sizeof *na);
            if (!na) return oom("post_processor");
            *arr = na;
            na[(*cnt)++] = (int32_t)idv->valuedouble;
        }
    }
    return DSRT_OK;
}

static dsrt_status parse_post_processor(dsrt_tokenizer *t, const cJSON *pp, const char *where)
{
    if (!pp || cJSON_IsNull(pp)) return DSRT_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pp, "type");
    if (!cJSON_IsString(type))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %s: no \"type\" string", t->name, where);
    if (strcmp(type->valuestring, "ByteLevel") == 0) return DSRT_OK; /* only moves offsets; ids unchanged */
    if (strcmp(type->valuestring, "TemplateProcessing") == 0) return parse_template(t, pp, where);
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        const cJSON *p;
        int i = 0;
        cJSON_ArrayForEach(p, list)
        {
            char w[64];
            snprintf(w, sizeof w, "%s.processors[%d]", where, i++);
            DSRT_TRY(parse_post_processor(t, p, w));
        }
        return DSRT_OK;
    }
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: %s: unsupported post_processor type '%s'", t->name, where,
                      type->valuestring);
}

/* ---- the whole file --------------------------------------------------------------------------------- */

static dsrt_status build_id_tables(dsrt_tokenizer *t, const vocab_entry *by_id, int32_t model_max)
{
    size_t n = (size_t)t->vocab_size;
    t->bytes_off = calloc(n ? n : 1, sizeof *t->bytes_off);
    t->bytes_len = malloc((n ? n : 1) * sizeof *t->bytes_len);
    t->is_added = calloc(n ? n : 1, 1);
    t->is_special = calloc(n ? n : 1, 1);
    t->bytes_pool = malloc(t->text_pool_len + 1);
    if (!t->bytes_off || !t->bytes_len || !t->is_added || !t->is_special || !t->bytes_pool) return oom("vocabulary");
    for (size_t i = 0; i < n; i++) t->bytes_len[i] = -1;
    size_t pool = 0;
    if (dsrt_tok_strmap_init(&t->by_bytes, (size_t)model_max + 1)) return oom("vocabulary");
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    /* Decoded form of each token: its byte-level characters turned back into bytes, or, when some character
     * is outside that alphabet, its UTF-8 text as is (the tokenizers ByteLevel decoder's rule). */
    for (int32_t id = 0; id <= model_max; id++) {
        if (by_id[id].text_len == UINT32_MAX) continue;
        const char *text = t->text_pool + by_id[id].text_off;
        long bl = dsrt_tok_bytelevel_decode(text, by_id[id].text_len, t->bytes_pool + pool);
        t->bytes_off[id] = (uint32_t)pool;
        if (bl >= 0) {
            t->bytes_len[id] = (int32_t)bl;
            if (dsrt_tok_strmap_put(&t->by_bytes, t->bytes_pool, (uint32_t)pool, (uint32_t)bl, id))
                return oom("vocabulary");
            pool += (size_t)bl;
        } else {
            memcpy(t->bytes_pool + pool, text, by_id[id].text_len);
            t->bytes_len[id] = (int32_t)by_id[id].text_len;
            pool += by_id[id].text_len;
        }
    }
    /* the single-character vocabulary entry is the byte's initial symbol in BPE; look it up by its text so
     * that a vocabulary holding the same byte twice resolves as the tokenizers library does */
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = byte_is_printable(b) ? b
                      : b <= 32            ? 256 + b
                      : b <= 160           ? 256 + 33 + (b - 127)
                                           : 256 + 67;
        char u[4];
        size_t ul = cp < 0x80 ? 1 : 2;
        if (ul == 1)
            u[0] = (char)cp;
        else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
        }
        int32_t id = dsrt_tok_strmap_get(&t->by_text, t->text_pool, u, ul);
        if (id >= 0) t->byte_id[b] = id;
    }
    t->bytes_pool_len = pool;
    return DSRT_OK;
}

static dsrt_status add_added_tokens(dsrt_tokenizer *t, size_t *pool_cap)
{
    /* added tokens: decoded bytes (same rule as the vocabulary), text lookup, flags, tries */
    size_t extra = 0;
    for (size_t i = 0; i < t->n_added; i++) extra += t->added[i].len;
    char *np = realloc(t->bytes_pool, t->bytes_pool_len + extra + 1);
    if (!np) return oom("added tokens");
    t->bytes_pool = np;
    for (size_t i = 0; i < t->n_added; i++) {
        dsrt_tok_added *a = &t->added[i];
        if (a->len == 0) continue; /* an empty token can never match */
        size_t off = t->bytes_pool_len;
        long bl = dsrt_tok_bytelevel_decode(a->content, a->len, t->bytes_pool + off);
        if (bl < 0) {
            memcpy(t->bytes_pool + off, a->content, a->len);
            bl = (long)a->len;
        }
        t->bytes_off[a->id] = (uint32_t)off;
        t->bytes_len[a->id] = (int32_t)bl;
        t->bytes_pool_len += (size_t)bl;
        t->is_added[a->id] = 1;
        t->is_special[a->id] = a->special;
        uint32_t toff;
        if (append_pool(&t->text_pool, &t->text_pool_len, pool_cap, a->content, a->len, &toff) ||
            dsrt_tok_strmap_put(&t->by_text, t->text_pool, toff, (uint32_t)a->len, a->id))
            return oom("added tokens");
        if (trie_insert(a->normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i))
            return oom("added tokens");
        if (a->single_word && !t->word_re) {
            int err;
            PCRE2_SIZE eo;
            t->word_re = pcre2_compile((PCRE2_SPTR) "\\w", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED,
                                       &err, &eo, NULL);
            if (!t->word_re) return oom("added tokens");
        }
    }
    return DSRT_OK;
}

static dsrt_status load_from_json(dsrt_tokenizer *t, const cJSON *root)
{
    if (!cJSON_IsObject(root))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: expected a JSON object at the top, found %s", t->name,
                          json_type_name(root));
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(norm, "type");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        int empty_seq = cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0 && cJSON_IsArray(list) &&
                        cJSON_GetArraySize(list) == 0;
        if (!empty_seq)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                              "%s: unsupported normalizer '%s' (dsrt implements none: null or an empty Sequence)",
                              t->name, cJSON_IsString(type) ? type->valuestring : "?");
    }
    DSRT_TRY(parse_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")));

    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(dec, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel") != 0)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: unsupported decoder '%s' (dsrt implements ByteLevel)",
                              t->name, cJSON_IsString(type) ? type->valuestring : "?");
    }

    int32_t model_max = -1, added_max = -1;
    vocab_entry *by_id = NULL;
    dsrt_status st = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), &by_id, &model_max);
    if (!st)
        st = parse_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), t->model_vocab_count,
                                &added_max);
    if (!st) {
        t->vocab_size = (model_max > added_max ? model_max : added_max) + 1;
        st = build_id_tables(t, by_id, model_max);
    }
    free(by_id);
    size_t pool_cap = t->text_pool_len; /* append_pool grows from here */
    if (!st) st = add_added_tokens(t, &pool_cap);
    if (!st) st = parse_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor");
    if (!st) {
        for (size_t i = 0; i < t->n_post_prefix + t->n_post_suffix; i++) {
            int32_t id = i < t->n_post_prefix ? t->post_prefix[i] : t->post_suffix[i - t->n_post_prefix];
            if (id >= t->vocab_size || t->bytes_len[id] < 0)
                return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: post_processor names id %d, which has no token", t->name,
                                  (int)id);
        }
    }
    return st;
}

dsrt_status dsrt_tokenizer_from_json(const char *json, size_t len, const char *name, dsrt_tokenizer **out)
{
    *out = NULL;
    if (!name) name = "tokenizer.json";
    dsrt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return oom("tokenizer");
    t->unk_id = -1;
    t->name = strdup(name);
    if (!t->name) {
        free(t);
        return oom("tokenizer");
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (json[i] == '\n') {
                line++;
                col = 1;
            } else
                col++;
        }
        dsrt_status st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: malformed JSON near byte %zu (line %zu, column %zu)",
                                    name, off, line, col);
        dsrt_tokenizer_free(t);
        return st;
    }
    dsrt_status st = load_from_json(t, root);
    cJSON_Delete(root);
    if (st) {
        dsrt_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DSRT_OK;
}

dsrt_status dsrt_tokenizer_load(const char *path, dsrt_tokenizer **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dsrt_error(errno == ENOENT ? DSRT_CODE_NOT_FOUND : DSRT_CODE_IO, "%s: cannot open tokenizer: %s",
                              path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return oom("reading tokenizer.json");
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return dsrt_error(DSRT_CODE_IO, "%s: cannot read tokenizer (a directory, or an I/O error)", path);
    }
    dsrt_status st = dsrt_tokenizer_from_json(buf, len, path, out);
    free(buf);
    return st;
}

dsrt_status dsrt_tokenizer_load_dir(const char *dir, dsrt_tokenizer **out)
{
    size_t n = strlen(dir);
    char *p = malloc(n + sizeof "/tokenizer.json");
    if (!p) return oom("path");
    memcpy(p, dir, n);
    strcpy(p + n, (n && dir[n - 1] == '/') ? "tokenizer.json" : "/tokenizer.json");
    dsrt_status st = dsrt_tokenizer_load(p, out);
    free(p);
    return st;
}

void dsrt_tokenizer_free(dsrt_tokenizer *t)
{
    if (!t) return;
    free(t->name);
    free(t->bytes_pool);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->is_added);
    free(t->is_special);
    free(t->text_pool);
    dsrt_tok_strmap_free(&t->by_text);
    dsrt_tok_strmap_free(&t->by_bytes);
    dsrt_tok_pairmap_free(&t->merges);
    for (size_t i = 0; i < t->n_splits; i++) pcre2_code_free(t->splits[i].re);
    free(t->splits);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    pcre2_code_free(t->word_re);
    free(t->post_prefix);
    free(t->post_suffix);
    free(t);
}

int32_t dsrt_tokenizer_vocab_size(const dsrt_tokenizer *t) { return t->vocab_size; }

int32_t dsrt_tokenizer_token_id(const dsrt_tokenizer *t, const char *token)
{
    return dsrt_tok_strmap_get(&t->by_text, t->text_pool, token, strlen(token));
}

int dsrt_tokenizer_is_special(const dsrt_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->vocab_size && t->is_special[id];
}

const char *dsrt_tokenizer_token_bytes(const dsrt_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->vocab_size || t->bytes_len[id] < 0) return NULL;
    if (len) *len = (size_t)t->bytes_len[id];
    return t->bytes_pool + t->bytes_off[id];
}

void dsrt_token_ids_free(dsrt_token_ids *ids)
{
    if (!ids) return;
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}
