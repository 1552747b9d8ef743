/* Hash maps for the tokenizer: byte strings -> id and id pairs -> merge. Open addressing with linear
 * probing; both are built once at load (and the string map again per encode call, as the word cache),
 * so they favour lookup speed and compact memory over deletion, which they do not support. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

uint64_t dsrt_tok_hash(const void *p, size_t n)
{
    /* A multiply-xorshift hash over 8-byte words: words are short, so speed per call matters more than
     * throughput on long keys. */
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int dsrt_tok_strmap_init(dsrt_tok_strmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    size_t slots = pow2_at_least(expected * 2 + 1);
    m->slot_entry = calloc(slots, sizeof *m->slot_entry);
    m->cap = expected > 8 ? expected : 8;
    m->key_off = malloc(m->cap * sizeof *m->key_off);
    m->key_len = malloc(m->cap * sizeof *m->key_len);
    m->value = malloc(m->cap * sizeof *m->value);
    m->hash = malloc(m->cap * sizeof *m->hash);
    if (!m->slot_entry || !m->key_off || !m->key_len || !m->value || !m->hash) {
        dsrt_tok_strmap_free(m);
        return -1;
    }
    m->mask = slots - 1;
    return 0;
}

void dsrt_tok_strmap_free(dsrt_tok_strmap *m)
{
    free(m->slot_entry);
    free(m->key_off);
    free(m->key_len);
    free(m->value);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

int32_t dsrt_tok_strmap_get(const dsrt_tok_strmap *m, const char *pool, const char *key, size_t len)
{
    if (!m->slot_entry) return -1;
    uint32_t h = (uint32_t)dsrt_tok_hash(key, len);
    size_t i = h & m->mask;
    for (;;) {
        uint32_t e = m->slot_entry[i];
        if (!e) return -1;
        e--;
        if (m->hash[e] == h && m->key_len[e] == len && memcmp(pool + m->key_off[e], key, len) == 0)
            return m->value[e];
        i = (i + 1) & m->mask;
    }
}

static int strmap_grow_slots(dsrt_tok_strmap *m)
{
    size_t slots = (m->mask + 1) * 2;
    uint32_t *ns = calloc(slots, sizeof *ns);
    if (!ns) return -1;
    for (size_t e = 0; e < m->count; e++) {
        size_t i = m->hash[e] & (slots - 1);
        while (ns[i]) i = (i + 1) & (slots - 1);
        ns[i] = (uint32_t)e + 1;
    }
    free(m->slot_entry);
    m->slot_entry = ns;
    m->mask = slots - 1;
    return 0;
}

int dsrt_tok_strmap_put(dsrt_tok_strmap *m, const char *pool, uint32_t key_off, uint32_t key_len, int32_t value)
{
    const char *key = pool + key_off;
    uint32_t h = (uint32_t)dsrt_tok_hash(key, key_len);
    size_t i = h & m->mask;
    for (;;) {
        uint32_t e = m->slot_entry[i];
        if (!e) break;
        e--;
        if (m->hash[e] == h && m->key_len[e] == key_len && memcmp(pool + m->key_off[e], key, key_len) == 0) {
            m->value[e] = value; /* a later definition wins, as in a Python or Rust dict */
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    if (m->count == m->cap) {
        size_t nc = m->cap * 2;
        uint32_t *ko = realloc(m->key_off, nc * sizeof *ko);
        if (!ko) return -1;
        m->key_off = ko;
        uint32_t *kl = realloc(m->key_len, nc * sizeof *kl);
        if (!kl) return -1;
        m->key_len = kl;
        int32_t *v = realloc(m->value, nc * sizeof *v);
        if (!v) return -1;
        m->value = v;
        uint32_t *hh = realloc(m->hash, nc * sizeof *hh);
        if (!hh) return -1;
        m->hash = hh;
        m->cap = nc;
    }
    size_t e = m->count++;
    m->key_off[e] = key_off;
    m->key_len[e] = key_len;
    m->value[e] = value;
    m->hash[e] = h;
    m->slot_entry[i] = (uint32_t)e + 1;
    /* keep the load factor at or under one half so probes stay short */
    if (m->count * 2 > m->mask + 1 && strmap_grow_slots(m)) return -1;
    return 0;
}

int dsrt_tok_pairmap_init(dsrt_tok_pairmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    size_t slots = pow2_at_least(expected * 2 + 1);
    m->keys = calloc(slots, sizeof *m->keys);
    m->rank = malloc(slots * sizeof *m->rank);
    m->merged = malloc(slots * sizeof *m->merged);
    if (!m->keys || !m->rank || !m->merged) {
        dsrt_tok_pairmap_free(m);
        return -1;
    }
    m->mask = slots - 1;
    return 0;
}

void dsrt_tok_pairmap_free(dsrt_tok_pairmap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

int dsrt_tok_pairmap_put(dsrt_tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    if ((m->count + 1) * 2 > m->mask + 1) {
        /* grow: rehash every occupied slot into a table twice the size */
        size_t slots = (m->mask + 1) * 2;
        uint64_t *nk = calloc(slots, sizeof *nk);
        int32_t *nr = malloc(slots * sizeof *nr);
        int32_t *nm = malloc(slots * sizeof *nm);
        if (!nk || !nr || !nm) {
            free(nk);
            free(nr);
            free(nm);
            return -1;
        }
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->keys[i]) continue;
            size_t j = (size_t)((m->keys[i] * 0x9e3779b97f4a7c15ull) >> 17) & (slots - 1);
            while (nk[j]) j = (j + 1) & (slots - 1);
            nk[j] = m->keys[i];
            nr[j] = m->rank[i];
            nm[j] = m->merged[i];
        }
        free(m->keys);
        free(m->rank);
        free(m->merged);
        m->keys = nk;
        m->rank = nr;
        m->merged = nm;
        m->mask = slots - 1;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & m->mask;
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & m->mask;
    if (!m->keys[i]) m->count++;
    m->keys[i] = key;
    m->rank[i] = rank; /* a repeated pair takes the later rank, as a Rust HashMap built from the list does */
    m->merged[i] = merged;
    return 0;
}
