/* Internal layout of dsrt_tokenizer, shared by tokenizer_load.c, tokenizer_encode.c, tokenizer_decode.c. */
#ifndef DSRT_TOKENIZER_INTERNAL_H
#define DSRT_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/tokenizer.h"

/* ---- hash maps ----------------------------------------------------------------------------------- */

/* Byte-string -> int32 map with open addressing. Keys live in a caller-owned pool (offset + length), so
 * the map holds only small fixed-size slots and never copies strings. */
typedef struct dsrt_tok_strmap {
    uint32_t *slot_entry; /* entry index + 1; 0 = empty */
    size_t mask;          /* capacity - 1 (power of two) */
    size_t count;
    /* entries */
    uint32_t *key_off;
    uint32_t *key_len;
    int32_t *value;
    uint32_t *hash;
    size_t cap;
} dsrt_tok_strmap;

uint64_t dsrt_tok_hash(const void *p, size_t n);
int dsrt_tok_strmap_init(dsrt_tok_strmap *m, size_t expected);
void dsrt_tok_strmap_free(dsrt_tok_strmap *m);
/* Returns the value for key, or -1. `pool` is where the keys' offsets point. */
int32_t dsrt_tok_strmap_get(const dsrt_tok_strmap *m, const char *pool, const char *key, size_t len);
/* Inserts or overwrites; the key must already be in the pool at key_off. Returns 0, or -1 on no memory. */
int dsrt_tok_strmap_put(dsrt_tok_strmap *m, const char *pool, uint32_t key_off, uint32_t key_len, int32_t value);

/* (left id, right id) -> (rank, merged id) for BPE merges. */
typedef struct dsrt_tok_pairmap {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    int32_t *rank;
    int32_t *merged;
    size_t mask;
    size_t count;
} dsrt_tok_pairmap;

int dsrt_tok_pairmap_init(dsrt_tok_pairmap *m, size_t expected);
void dsrt_tok_pairmap_free(dsrt_tok_pairmap *m);
int dsrt_tok_pairmap_put(dsrt_tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
/* Returns 1 and fills rank / merged when the pair merges, else 0. */
static inline int dsrt_tok_pairmap_get(const dsrt_tok_pairmap *m, int32_t a, int32_t b, int32_t *rank,
                                       int32_t *merged)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 17) & m->mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return 1;
        }
        if (k == 0) return 0;
        i = (i + 1) & m->mask;
    }
}

/* ---- the tokenizer ------------------------------------------------------------------------------- */

typedef enum {
    DSRT_SPLIT_REMOVED,
    DSRT_SPLIT_ISOLATED,
    DSRT_SPLIT_MERGED_WITH_PREVIOUS,
    DSRT_SPLIT_MERGED_WITH_NEXT,
    DSRT_SPLIT_CONTIGUOUS,
} dsrt_split_behavior;

/* One pre-tokenizer step that splits pieces with a regex (a Split, or ByteLevel with use_regex). */
typedef struct dsrt_tok_split {
    pcre2_code *re;
    dsrt_split_behavior behavior;
    int invert;
} dsrt_tok_split;

typedef struct dsrt_tok_added {
    char *content;
    size_t len;
    int32_t id;
    unsigned char single_word, lstrip, rstrip, normalized, special;
} dsrt_tok_added;

/* A byte trie over added-token contents for leftmost-longest matching. */
typedef struct dsrt_tok_trie_node {
    int32_t first_child;
    int32_t next_sibling;
    int32_t added; /* index into added[], or -1 */
    unsigned char byte;
} dsrt_tok_trie_node;

typedef struct dsrt_tok_trie {
    dsrt_tok_trie_node *nodes;
    size_t n, cap;
    uint8_t first_byte[32]; /* bitmap of bytes that start some token: skips most positions cheaply */
} dsrt_tok_trie;

struct dsrt_tokenizer {
    char *name; /* file name for messages */

    /* every token's decoded bytes, by id: pool[off[id] .. off[id] + len[id]) ; len = -1: no such id */
    int32_t vocab_size;
    char *bytes_pool;
    size_t bytes_pool_len;
    uint32_t *bytes_off;
    int32_t *bytes_len;
    unsigned char *is_added;
    unsigned char *is_special;

    /* token text (as written in the file) -> id, for merges, added tokens and dsrt_tokenizer_token_id */
    char *text_pool;
    size_t text_pool_len;
    dsrt_tok_strmap by_text;
    /* decoded bytes -> id for byte-level tokens of the model vocabulary (whole-word lookups) */
    dsrt_tok_strmap by_bytes;

    size_t model_vocab_count; /* entries in model.vocab (the tokenizers library's "vocab size") */
    int32_t byte_id[256]; /* id of the single-byte token for each byte, or -1 */
    dsrt_tok_pairmap merges;
    int ignore_merges;
    int32_t unk_id; /* -1 if none */
    int fuse_unk;

    dsrt_tok_split *splits; /* pre-tokenizer steps, in order; ByteLevel is implicit at the end */
    size_t n_splits;

    dsrt_tok_added *added;
    size_t n_added;
    dsrt_tok_trie trie_raw;  /* added tokens with normalized=false: matched first */
    dsrt_tok_trie trie_norm; /* added tokens with normalized=true: matched in what is left */
    pcre2_code *word_re;     /* "\\w", anchored: the word test of single_word tokens (NULL if none) */

    /* TemplateProcessing "single": ids to put before and after the sequence */
    int32_t *post_prefix;
    size_t n_post_prefix;
    int32_t *post_suffix;
    size_t n_post_suffix;
};

/* Decodes a byte-level token text (GPT-2's printable alphabet) into raw bytes; returns the length, or
 * -1 if some character is outside the alphabet. `out` needs at least strlen(text) bytes. */
long dsrt_tok_bytelevel_decode(const char *text, size_t len, char *out);

#endif
