/* Tokenizer checks against Hugging Face `tokenizers` (ids from tools/reference/make_tokenizer_fixture.py),
 * round trips, the streaming decoder, error reports, and a timed 100K-token encode. */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsrt/tokenizer.h"
#include "testutil.h"

#define FIXTURE DSRT_SOURCE_DIR "/tests/data/tokenizer/"

/* ---- reading the JSON fixtures --------------------------------------------------------------------------
 * cJSON is a private dependency of libdsrt, so this executable cannot link it by name; libdsrt has already
 * loaded it into the process, so its two entry points are looked up there. Everything else is plain
 * traversal of cJSON's public struct. */
static cJSON *json_parse(const char *text, size_t len)
{
    cJSON *(*parse)(const char *, size_t) = (cJSON * (*)(const char *, size_t)) dlsym(RTLD_DEFAULT, "cJSON_ParseWithLength");
    ck_assert_msg(parse != NULL, "cJSON_ParseWithLength not found in the process");
    return parse(text, len);
}

static void json_free(cJSON *j)
{
    void (*del)(cJSON *) = (void (*)(cJSON *))dlsym(RTLD_DEFAULT, "cJSON_Delete");
    ck_assert_msg(del != NULL, "cJSON_Delete not found in the process");
    del(j);
}

static const cJSON *jget(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) return c;
    return NULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static cJSON *load_json(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    cJSON *j = json_parse(text, len);
    free(text);
    ck_assert_msg(j != NULL, "%s does not parse", path);
    return j;
}

/* A JSON string holds UTF-8 without NUL; the fixture's "\u0000" case decodes to a C string cut at the NUL.
 * cJSON keeps only the prefix, so the true length is recovered from the expected decode where needed. */
static size_t jstr_len(const cJSON *s) { return strlen(s->valuestring); }

static int ids_equal(const dsrt_token_ids *got, const cJSON *want)
{
    size_t n = 0;
    for (const cJSON *c = want->child; c; c = c->next) {
        if (n >= got->n || got->ids[n] != (int32_t)c->valuedouble) return 0;
        n++;
    }
    return n == got->n;
}

static void print_ids_diff(const char *name, const dsrt_token_ids *got, const cJSON *want)
{
    size_t i = 0;
    for (const cJSON *c = want->child; c; c = c->next, i++) {
        if (i >= got->n || got->ids[i] != (int32_t)c->valuedouble) {
            fprintf(stderr, "%s: first difference at %zu: got %d, want %d\n", name, i,
                    i < got->n ? (int)got->ids[i] : -1, (int)c->valuedouble);
            return;
        }
    }
    fprintf(stderr, "%s: got %zu ids, want %zu\n", name, got->n, i);
}

static dsrt_tokenizer *fixture(void)
{
    dsrt_tokenizer *tok = NULL;
    ck_ok(dsrt_tokenizer_load(FIXTURE "tokenizer.json", &tok));
    return tok;
}

/* The fixture has one case with a NUL byte: JSON can carry it, a C string cannot. Rebuild its text. */
static void case_text(const cJSON *c, const char **text, size_t *len)
{
    const cJSON *name = jget(c, "name");
    if (strcmp(name->valuestring, "control_chars") == 0) {
        static const char s[] = "nul\0bell\aesc\x1b" "del\x7f";
        *text = s;
        *len = sizeof s - 1;
        return;
    }
    *text = jget(c, "text")->valuestring;
    *len = jstr_len(jget(c, "text"));
}

/* ---- ids equal Hugging Face's ------------------------------------------------------------------------- */

START_TEST(test_cases_match_hf)
{
    dsrt_tokenizer *tok = fixture();
    cJSON *root = load_json(FIXTURE "cases.json");
    int n = 0, bad = 0;
    for (const cJSON *c = jget(root, "cases")->child; c; c = c->next, n++) {
        const char *text;
        size_t len;
        case_text(c, &text, &len);
        const char *name = jget(c, "name")->valuestring;
        dsrt_token_ids ids = {0};
        ck_ok(dsrt_tokenizer_encode(tok, text, len, 0, &ids));
        if (!ids_equal(&ids, jget(c, "ids"))) {
            print_ids_diff(name, &ids, jget(c, "ids"));
            bad++;
        }
        dsrt_token_ids sp = {0};
        ck_ok(dsrt_tokenizer_encode(tok, text, len, DSRT_TOKENIZE_ADD_SPECIAL, &sp));
        if (!ids_equal(&sp, jget(c, "ids_special"))) {
            print_ids_diff(name, &sp, jget(c, "ids_special"));
            bad++;
        }
        dsrt_token_ids_free(&ids);
        dsrt_token_ids_free(&sp);
    }
    ck_assert_int_ge(n, 30);
    ck_assert_msg(bad == 0, "%d of %d cases differ from tokenizers' ids", bad, n);
    json_free(root);
    dsrt_tokenizer_free(tok);
}
END_TEST

START_TEST(test_variants_match_hf)
{
    cJSON *root = load_json(FIXTURE "variants.json");
    int nv = 0;
    for (const cJSON *v = jget(root, "variants")->child; v; v = v->next, nv++) {
        const char *name = jget(v, "name")->valuestring;
        const cJSON *tj = jget(v, "tokenizer_json");
        dsrt_tokenizer *tok = NULL;
        dsrt_status st = dsrt_tokenizer_from_json(tj->valuestring, strlen(tj->valuestring), name, &tok);
        ck_assert_msg(st == DSRT_OK, "%s: %s", name, dsrt_status_message(st));
        for (const cJSON *c = jget(v, "cases")->child; c; c = c->next) {
            const cJSON *text = jget(c, "text");
            dsrt_token_ids ids = {0};
            ck_ok(dsrt_tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), 0, &ids));
            if (!ids_equal(&ids, jget(c, "ids"))) print_ids_diff(name, &ids, jget(c, "ids"));
            ck_assert_msg(ids_equal(&ids, jget(c, "ids")), "variant %s, text '%s' differs", name, text->valuestring);
            dsrt_token_ids_free(&ids);
        }
        dsrt_tokenizer_free(tok);
    }
    ck_assert_int_ge(nv, 10);
    json_free(root);
}
END_TEST

/* ---- decoding ----------------------------------------------------------------------------------------- */

START_TEST(test_decode_round_trip)
{
    dsrt_tokenizer *tok = fixture();
    cJSON *root = load_json(FIXTURE "cases.json");
    for (const cJSON *c = jget(root, "cases")->child; c; c = c->next) {
        const char *name = jget(c, "name")->valuestring;
        const char *text;
        size_t len;
        case_text(c, &text, &len);
        dsrt_token_ids ids = {0};
        ck_ok(dsrt_tokenizer_encode(tok, text, len, 0, &ids));
        char *out = NULL;
        size_t olen = 0;
        ck_ok(dsrt_tokenizer_decode(tok, ids.ids, ids.n, 0, &out, &olen));
        if (strstr(name, "strip")) {
            /* lstrip / rstrip tokens absorb the spaces next to them: compare with tokenizers' decode */
            const cJSON *want = jget(c, "decoded");
            ck_assert_uint_eq(olen, jstr_len(want));
            ck_assert_mem_eq(out, want->valuestring, olen);
        } else {
            ck_assert_msg(olen == len && memcmp(out, text, len) == 0, "%s: decode(encode(x)) != x", name);
        }
        free(out);
        /* without special tokens, as skip_special_tokens=True */
        ck_ok(dsrt_tokenizer_decode(tok, ids.ids, ids.n, DSRT_DETOKENIZE_SKIP_SPECIAL, &out, &olen));
        if (strcmp(name, "control_chars") != 0) {
            const cJSON *want = jget(c, "decoded_skip_special");
            ck_assert_msg(olen == jstr_len(want) && memcmp(out, want->valuestring, olen) == 0,
                          "%s: skip-special decode differs from tokenizers'", name);
        }
        free(out);
        dsrt_token_ids_free(&ids);
    }
    json_free(root);
    dsrt_tokenizer_free(tok);
}
END_TEST

static int utf8_ok(const char *s, size_t n) { return dsrt_utf8_valid(s, n, NULL); }

START_TEST(test_stream_decode_every_case)
{
    dsrt_tokenizer *tok = fixture();
    cJSON *root = load_json(FIXTURE "cases.json");
    for (const cJSON *c = jget(root, "cases")->child; c; c = c->next) {
        const char *name = jget(c, "name")->valuestring;
        const char *text;
        size_t len;
        case_text(c, &text, &len);
        dsrt_token_ids ids = {0};
        ck_ok(dsrt_tokenizer_encode(tok, text, len, 0, &ids));
        char *whole = NULL;
        size_t wlen = 0;
        ck_ok(dsrt_tokenizer_decode(tok, ids.ids, ids.n, 0, &whole, &wlen));
        dsrt_detok_stream *s = NULL;
        ck_ok(dsrt_detok_stream_create(tok, 0, &s));
        char *acc = malloc(wlen + 1);
        size_t alen = 0;
        for (size_t i = 0; i < ids.n; i++) {
            const char *piece;
            size_t plen;
            ck_ok(dsrt_detok_stream_push(s, ids.ids[i], &piece, &plen));
            /* the whole text is valid UTF-8, so every piece handed out must be too */
            ck_assert_msg(utf8_ok(piece, plen), "%s: piece %zu is not valid UTF-8", name, i);
            ck_assert_uint_le(alen + plen, wlen);
            memcpy(acc + alen, piece, plen);
            alen += plen;
        }
        const char *rest;
        size_t rlen;
        ck_ok(dsrt_detok_stream_flush(s, &rest, &rlen));
        ck_assert_uint_eq(rlen, 0); /* nothing incomplete at the end of valid text */
        ck_assert_msg(alen == wlen && memcmp(acc, whole, wlen) == 0, "%s: streamed bytes differ", name);
        free(acc);
        free(whole);
        dsrt_detok_stream_free(s);
        dsrt_token_ids_free(&ids);
    }
    json_free(root);
    dsrt_tokenizer_free(tok);
}
END_TEST

/* The id of the token that is exactly the byte b. */
static int32_t byte_token(const dsrt_tokenizer *tok, unsigned char b)
{
    for (int32_t id = 0; id < dsrt_tokenizer_vocab_size(tok); id++) {
        size_t n;
        const char *p = dsrt_tokenizer_token_bytes(tok, id, &n);
        if (p && n == 1 && (unsigned char)p[0] == b) return id;
    }
    ck_abort_msg("no token for byte 0x%02X", b);
    return -1;
}

START_TEST(test_stream_holds_split_characters)
{
    dsrt_tokenizer *tok = fixture();
    dsrt_detok_stream *s = NULL;
    ck_ok(dsrt_detok_stream_create(tok, 0, &s));
    const char *p;
    size_t n;
    /* "€" = E2 82 AC and "😀" = F0 9F 98 80, one byte per token */
    const unsigned char euro[] = {0xE2, 0x82, 0xAC}, grin[] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 2; i++) {
        ck_ok(dsrt_detok_stream_push(s, byte_token(tok, euro[i]), &p, &n));
        ck_assert_uint_eq(n, 0);
    }
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, euro[2]), &p, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(p, "\xE2\x82\xAC", 3);
    for (int i = 0; i < 3; i++) {
        ck_ok(dsrt_detok_stream_push(s, byte_token(tok, grin[i]), &p, &n));
        ck_assert_uint_eq(n, 0);
    }
    /* a whole token after the partial character releases both together */
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, grin[3]), &p, &n));
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(p, "\xF0\x9F\x98\x80", 4);
    /* bytes that can never be valid pass through at once: a stray continuation byte, an invalid lead */
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0x80), &p, &n));
    ck_assert_uint_eq(n, 1);
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0xFF), &p, &n));
    ck_assert_uint_eq(n, 1);
    /* a lead followed by ASCII: both go out with the ASCII */
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0xE2), &p, &n));
    ck_assert_uint_eq(n, 0);
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 'A'), &p, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(p, "\xE2" "A", 2);
    /* E0 80 can never complete (overlong): not held */
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0xE0), &p, &n));
    ck_assert_uint_eq(n, 0);
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0x80), &p, &n));
    ck_assert_uint_eq(n, 2);
    /* an incomplete character at the end comes out of flush */
    ck_ok(dsrt_detok_stream_push(s, byte_token(tok, 0xF0), &p, &n));
    ck_assert_uint_eq(n, 0);
    ck_ok(dsrt_detok_stream_flush(s, &p, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq((unsigned char)p[0], 0xF0);
    /* special tokens are skipped when asked */
    dsrt_detok_stream_free(s);
    ck_ok(dsrt_detok_stream_create(tok, DSRT_DETOKENIZE_SKIP_SPECIAL, &s));
    int32_t bos = dsrt_tokenizer_token_id(tok, "<｜begin▁of▁sentence｜>");
    ck_assert_int_eq(bos, 0);
    ck_assert(dsrt_tokenizer_is_special(tok, bos));
    ck_ok(dsrt_detok_stream_push(s, bos, &p, &n));
    ck_assert_uint_eq(n, 0);
    dsrt_detok_stream_free(s);
    dsrt_tokenizer_free(tok);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------------------- */

static dsrt_status from_text(const char *json, dsrt_tokenizer **tok)
{
    return dsrt_tokenizer_from_json(json, strlen(json), "inline.json", tok);
}

START_TEST(test_load_errors)
{
    dsrt_tokenizer *tok = NULL;
    ck_fails(dsrt_tokenizer_load("/nonexistent/dir/tokenizer.json", &tok), DSRT_CODE_NOT_FOUND,
             "/nonexistent/dir/tokenizer.json");
    ck_assert_ptr_null(tok);
    ck_fails(dsrt_tokenizer_load_dir("/nonexistent/model", &tok), DSRT_CODE_NOT_FOUND, "/nonexistent/model/tokenizer.json");
    ck_fails(dsrt_tokenizer_load(DSRT_SOURCE_DIR "/tests/data/tokenizer", &tok), DSRT_CODE_IO, "cannot read");
    ck_fails(from_text("{\"model\": {\"type\": \"BPE\", ", &tok), DSRT_CODE_DATA_LOSS, "malformed JSON near byte");
    ck_fails(from_text("[1, 2]", &tok), DSRT_CODE_DATA_LOSS, "expected a JSON object");

    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_UNIMPLEMENTED, "unsupported model type 'WordPiece'");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\"}}", &tok),
             DSRT_CODE_UNIMPLEMENTED, "unsupported pre_tokenizer type 'Whitespace'");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                       "\"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Isolated\"}, {\"type\": \"Digits\"}]}}",
                       &tok),
             DSRT_CODE_UNIMPLEMENTED, "pre_tokenizer.pretokenizers[1]: unsupported pre_tokenizer type 'Digits'");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": "
                       "\"Isolated\"}}",
                       &tok),
             DSRT_CODE_UNIMPLEMENTED, "no ByteLevel step");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": "
                       "\"Isolated\"}}",
                       &tok),
             DSRT_CODE_DATA_LOSS, "regex does not compile");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": "
                       "\"Sideways\"}}",
                       &tok),
             DSRT_CODE_UNIMPLEMENTED, "unsupported Split behavior 'Sideways'");
    ck_fails(from_text("{\"normalizer\": {\"type\": \"NFC\"}}", &tok), DSRT_CODE_UNIMPLEMENTED,
             "unsupported normalizer 'NFC'");
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": %s, \"decoder\": {\"type\": \"WordPiece\"}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_UNIMPLEMENTED, "unsupported decoder 'WordPiece'");
    snprintf(buf, sizeof buf,
             "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": "
             "[\"a b\"]}}",
             bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_DATA_LOSS, "model.merges[0]: merged token 'ab' is not in the vocabulary");
    snprintf(buf, sizeof buf,
             "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"ab\": 1}, \"merges\": "
             "[\"a b\"]}}",
             bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_DATA_LOSS, "model.merges[0]: token 'b' is not in the vocabulary");
    snprintf(buf, sizeof buf,
             "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_DATA_LOSS, "expected \"A B\"");
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_DATA_LOSS, "model.vocab[\"a\"]: expected a non-negative integer id");
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"dropout\": 0.1}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_UNIMPLEMENTED, "dropout");
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, "
             "\"post_processor\": {\"type\": \"BertProcessing\"}}", bl);
    ck_fails(from_text(buf, &tok), DSRT_CODE_UNIMPLEMENTED, "unsupported post_processor type 'BertProcessing'");
    ck_fails(from_text("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}}", &tok),
             DSRT_CODE_UNIMPLEMENTED, "add_prefix_space=true");
    ck_assert_ptr_null(tok);
}
END_TEST

START_TEST(test_encode_decode_errors)
{
    dsrt_tokenizer *tok = fixture();
    dsrt_token_ids ids = {0};
    ck_fails(dsrt_tokenizer_encode(tok, "abc\xff" "def", 7, 0, &ids), DSRT_CODE_INVALID_ARGUMENT, "byte offset 3");
    ck_fails(dsrt_tokenizer_encode(tok, "ab\xe2\x82", 4, 0, &ids), DSRT_CODE_INVALID_ARGUMENT, "byte offset 2");
    ck_fails(dsrt_tokenizer_encode(tok, "\xed\xa0\x80", 3, 0, &ids), DSRT_CODE_INVALID_ARGUMENT,
             "byte offset 0"); /* a UTF-16 surrogate */
    ck_fails(dsrt_tokenizer_encode(tok, "\xc0\xaf", 2, 0, &ids), DSRT_CODE_INVALID_ARGUMENT, "byte offset 0");
    ck_assert_uint_eq(ids.n, 0);

    int32_t bad[] = {5, 999999};
    char *text = NULL;
    size_t len;
    ck_fails(dsrt_tokenizer_decode(tok, bad, 2, 0, &text, &len), DSRT_CODE_OUT_OF_RANGE,
             "token id 999999 at position 1 is out of range");
    ck_assert_ptr_null(text);
    int32_t neg[] = {-1};
    ck_fails(dsrt_tokenizer_decode(tok, neg, 1, 0, &text, &len), DSRT_CODE_OUT_OF_RANGE, "token id -1");
    dsrt_detok_stream *s = NULL;
    ck_ok(dsrt_detok_stream_create(tok, 0, &s));
    const char *p;
    size_t n;
    ck_ok(dsrt_detok_stream_push(s, 5, &p, &n));
    ck_fails(dsrt_detok_stream_push(s, dsrt_tokenizer_vocab_size(tok), &p, &n), DSRT_CODE_OUT_OF_RANGE,
             "at position 1");
    dsrt_detok_stream_free(s);
    dsrt_tokenizer_free(tok);
}
END_TEST

/* Added-token ids as the tokenizers library assigns them on load: a content already in the vocabulary keeps
 * its id, the others are numbered after the vocabulary, whatever the file's "id" fields say. Expected values
 * from tokenizers 0.23.3 on this same JSON ("a" is also an added token, so it is cut out of "ab" first). */
START_TEST(test_added_token_ids_as_tokenizers)
{
    const char *json =
        "{\"added_tokens\": [{\"id\": 7, \"content\": \"<x>\", \"special\": true}, {\"id\": 0, \"content\": \"a\"}, "
        "{\"id\": 9, \"content\": \"<y>\"}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
        "\"add_prefix_space\": false, \"use_regex\": false}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
        "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 5}, \"merges\": [\"a b\"]}}";
    dsrt_tokenizer *tok = NULL;
    ck_ok(dsrt_tokenizer_from_json(json, strlen(json), "inline.json", &tok));
    ck_assert_int_eq(dsrt_tokenizer_token_id(tok, "<x>"), 3);
    ck_assert_int_eq(dsrt_tokenizer_token_id(tok, "<y>"), 4);
    ck_assert_int_eq(dsrt_tokenizer_vocab_size(tok), 6);
    dsrt_token_ids ids = {0};
    ck_ok(dsrt_tokenizer_encode(tok, "ab<x>a<y>", 9, 0, &ids));
    int32_t want[] = {0, 1, 3, 0, 4};
    ck_assert_uint_eq(ids.n, 5);
    ck_assert_mem_eq(ids.ids, want, sizeof want);
    dsrt_token_ids_free(&ids);
    dsrt_tokenizer_free(tok);
}
END_TEST

/* ---- speed -------------------------------------------------------------------------------------------- */

/* A varied document of at least `min_tokens` tokens: words from a generated lexicon drawn with a skewed
 * (Zipf-like) distribution, as in real text, with numbers, punctuation, code, CJK, emoji and added tokens. */
static char *make_document(const dsrt_tokenizer *tok, size_t min_tokens, size_t *len_out, size_t *tokens_out)
{
    static const char *const syl[] = {"ka", "ri", "to", "na", "me", "su", "lo", "pe", "ti", "va", "ne", "ro",
                                      "mi", "sa", "de", "ku", "zo", "fa", "bi", "lu", "the", "and", "ing", "er"};
    static const char *const extra[] = {"模型", "天气", "北京", "ひらがな", "カタカナ", "😀", "🚀", "👨‍👩‍👧",
                                        "é", "Straße", "naïve", "<think>", "</think>", "<｜User｜>", "{\"k\": 1}",
                                        "x->y", "a[i] += b;", "\t", "\n", "\n\n", "  "};
    enum { LEX = 20000 };
    static char lex[LEX][16];
    dsrt_rng r = {12345};
    for (int i = 0; i < LEX; i++) {
        lex[i][0] = 0;
        int k = 1 + (int)(dsrt_rng_next(&r) % 4);
        for (int j = 0; j < k; j++) strcat(lex[i], syl[dsrt_rng_next(&r) % 24]);
    }
    size_t cap = 1 << 20, len = 0;
    char *doc = malloc(cap);
    size_t tokens = 0;
    while (tokens < min_tokens) {
        /* one paragraph at a time, then count its tokens */
        size_t start = len;
        for (int w = 0; w < 200; w++) {
            char word[64];
            uint64_t x = dsrt_rng_next(&r);
            if (x % 10 == 0)
                snprintf(word, sizeof word, "%s", extra[(x >> 8) % (sizeof extra / sizeof extra[0])]);
            else if (x % 10 == 1)
                snprintf(word, sizeof word, " %llu", (unsigned long long)((x >> 8) % 100000));
            else {
                double u = dsrt_rng_uniform(&r);
                int idx = (int)(u * u * u * LEX); /* skewed: low indices are common */
                snprintf(word, sizeof word, "%s%s%s", w % 13 == 0 ? ". " : " ", lex[idx], x % 17 == 0 ? "," : "");
            }
            size_t wl = strlen(word);
            if (len + wl + 1 > cap) {
                cap *= 2;
                doc = realloc(doc, cap);
            }
            memcpy(doc + len, word, wl);
            len += wl;
        }
        dsrt_token_ids ids = {0};
        ck_ok(dsrt_tokenizer_encode(tok, doc + start, len - start, 0, &ids));
        tokens += ids.n;
        dsrt_token_ids_free(&ids);
    }
    doc[len] = 0;
    *len_out = len;
    *tokens_out = tokens;
    return doc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

START_TEST(test_speed_100k_tokens)
{
    dsrt_tokenizer *tok = fixture();
    size_t len, approx;
    char *doc = make_document(tok, 100000, &len, &approx);
    /* kept beside the build so the same document can be fed to tokenizers for comparison */
    FILE *f = fopen(DSRT_BINARY_DIR "/tokenizer_bench.txt", "wb");
    if (f) {
        fwrite(doc, 1, len, f);
        fclose(f);
    }
    dsrt_token_ids ids = {0};
    double t0 = now_s();
    ck_ok(dsrt_tokenizer_encode(tok, doc, len, 0, &ids));
    double dt = now_s() - t0;
    ck_assert_uint_ge(ids.n, 100000);
    printf("tokenizer speed: %zu tokens (%zu bytes) in %.3f s = %.0f tokens/s\n", ids.n, len, dt, ids.n / dt);
    char *back = NULL;
    size_t blen;
    ck_ok(dsrt_tokenizer_decode(tok, ids.ids, ids.n, 0, &back, &blen));
    ck_assert_uint_eq(blen, len);
    ck_assert_mem_eq(back, doc, len);
    free(back);
    dsrt_token_ids_free(&ids);
    free(doc);
    dsrt_tokenizer_free(tok);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cases_match_hf);
    tcase_add_test(tc, test_variants_match_hf);
    tcase_add_test(tc, test_decode_round_trip);
    tcase_add_test(tc, test_stream_decode_every_case);
    tcase_add_test(tc, test_stream_holds_split_characters);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_encode_decode_errors);
    tcase_add_test(tc, test_added_token_ids_as_tokenizers);
    tcase_add_test(tc, test_speed_100k_tokens);
    suite_add_tcase(s, tc);
    return dsrt_run_suite(s);
}
