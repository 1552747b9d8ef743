/* dsrt tokenizer: Hugging Face `tokenizer.json` byte-level BPE (the DeepSeek-V3 family's tokenizer).
 *
 * What is read from the file (anything else is refused at load with a message naming it):
 *   normalizer      null or an empty Sequence (DeepSeek ships the latter)
 *   pre_tokenizer   Split (Regex or String pattern; every behaviour; invert), ByteLevel, or a Sequence of them
 *   model           BPE with vocab and merges ("a b" strings or ["a", "b"] pairs), optional unk_token,
 *                   ignore_merges; no dropout, continuing_subword_prefix, end_of_word_suffix, byte_fallback
 *   decoder         ByteLevel (or null)
 *   post_processor  null, ByteLevel, TemplateProcessing or a Sequence of them (only used with
 *                   DSRT_TOKENIZE_ADD_SPECIAL)
 *   added_tokens    matched in the text before pre-tokenization, longest match first, with their
 *                   lstrip / rstrip / single_word / normalized flags; never hard-coded
 *
 * A loaded tokenizer is immutable: encode and decode take it const and may run on many threads at once.
 * Encoding keeps a per-call cache of words already merged, so repeated words cost one hash lookup. */
#ifndef DSRT_TOKENIZER_H
#define DSRT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsrt_tokenizer dsrt_tokenizer;

/* A growable array of token ids; zero-initialize, release with dsrt_token_ids_free. */
typedef struct dsrt_token_ids {
    int32_t *ids;
    size_t n;
    size_t cap;
} dsrt_token_ids;

void dsrt_token_ids_free(dsrt_token_ids *ids);

/* Loads `path` (a tokenizer.json). Errors name the file and, for JSON content, the field at fault. */
dsrt_status dsrt_tokenizer_load(const char *path, dsrt_tokenizer **out) DSRT_MUST_USE;
/* Loads DIR/tokenizer.json (a Hugging Face model directory). */
dsrt_status dsrt_tokenizer_load_dir(const char *dir, dsrt_tokenizer **out) DSRT_MUST_USE;
/* Builds a tokenizer from JSON text already in memory; `name` is used in messages. */
dsrt_status dsrt_tokenizer_from_json(const char *json, size_t len, const char *name,
                                     dsrt_tokenizer **out) DSRT_MUST_USE;
void dsrt_tokenizer_free(dsrt_tokenizer *tok);

/* One past the largest id the tokenizer knows (model vocabulary and added tokens). */
int32_t dsrt_tokenizer_vocab_size(const dsrt_tokenizer *tok);
/* The id of a token given by its text (vocabulary or added token), or -1. */
int32_t dsrt_tokenizer_token_id(const dsrt_tokenizer *tok, const char *token);
/* 1 if `id` is an added token marked "special" in the file, else 0. */
int dsrt_tokenizer_is_special(const dsrt_tokenizer *tok, int32_t id);

enum {
    /* Apply the file's post_processor (e.g. a TemplateProcessing that prepends BOS), as Hugging Face's
     * encode(add_special_tokens=True) does. Off by default: chat prompts carry their own BOS. */
    DSRT_TOKENIZE_ADD_SPECIAL = 1u << 0,
};

/* Appends the ids of `text` (`len` bytes of UTF-8; NUL bytes allowed) to `out`. Invalid UTF-8 fails
 * with DSRT_CODE_INVALID_ARGUMENT naming the byte offset. */
dsrt_status dsrt_tokenizer_encode(const dsrt_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                  dsrt_token_ids *out) DSRT_MUST_USE;

enum {
    /* Leave out added tokens marked special (BOS, EOS, ...), as skip_special_tokens=True does. */
    DSRT_DETOKENIZE_SKIP_SPECIAL = 1u << 0,
};

/* Decodes ids into the exact bytes they stand for (*text is malloc'd, NUL-terminated, *len excludes the
 * NUL; free with free()). The bytes are what the tokens encode: a sequence cut in the middle of a UTF-8
 * character gives the partial bytes, not U+FFFD. An id outside the vocabulary fails with
 * DSRT_CODE_OUT_OF_RANGE naming it and its position. */
dsrt_status dsrt_tokenizer_decode(const dsrt_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                                  char **text, size_t *len) DSRT_MUST_USE;

/* The bytes of one token (its decoded form); NULL for an unknown id. */
const char *dsrt_tokenizer_token_bytes(const dsrt_tokenizer *tok, int32_t id, size_t *len);

/* Streaming decoder for generation: feed ids one at a time, get text that is safe to print. Bytes of a
 * UTF-8 character split across tokens are held back until the character is complete; bytes that can
 * never become valid UTF-8 are passed through as they are. The concatenation of every push and the
 * final flush equals dsrt_tokenizer_decode of the same ids. */
typedef struct dsrt_detok_stream dsrt_detok_stream;

dsrt_status dsrt_detok_stream_create(const dsrt_tokenizer *tok, unsigned flags,
                                     dsrt_detok_stream **out) DSRT_MUST_USE;
/* Adds one id; *text / *len receive the bytes now complete (owned by the stream, valid until the next
 * call on it). */
dsrt_status dsrt_detok_stream_push(dsrt_detok_stream *s, int32_t id, const char **text,
                                   size_t *len) DSRT_MUST_USE;
/* Returns whatever is still held back (an incomplete character at the end of the stream) and resets. */
dsrt_status dsrt_detok_stream_flush(dsrt_detok_stream *s, const char **text, size_t *len) DSRT_MUST_USE;
void dsrt_detok_stream_free(dsrt_detok_stream *s);

/* Checks that `len` bytes are UTF-8; on failure *bad_offset is the offset of the first bad byte. */
int dsrt_utf8_valid(const char *s, size_t len, size_t *bad_offset);

#ifdef __cplusplus
}
#endif
#endif
