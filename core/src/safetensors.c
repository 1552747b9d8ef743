/* safetensors reading: an 8-byte little-endian header length, a JSON header, then raw data. */
#include "dsrt/safetensors.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_internal.h"

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const dsrt_st_tensor *)a)->name, ((const dsrt_st_tensor *)b)->name);
}

dsrt_status dsrt_checkpoint_add_tensor(dsrt_checkpoint *ck, dsrt_st_tensor *t)
{
    if (ck->n == ck->cap) {
        size_t c = ck->cap ? ck->cap * 2 : 256;
        dsrt_st_tensor *p = realloc(ck->tensors, c * sizeof *p);
        if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory indexing the checkpoint");
        ck->tensors = p;
        ck->cap = c;
    }
    ck->tensors[ck->n++] = *t;
    return DSRT_OK;
}

/* Parses one shard's header and registers its tensors. */
static dsrt_status parse_shard(dsrt_checkpoint *ck, int si)
{
    dsrt_shard *sh = &ck->shards[si];
    const unsigned char *p = sh->map.data;
    size_t size = sh->map.size;
    if (size < 8) return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: %zu bytes is too short for a safetensors header", sh->path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > size - 8)
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: header length %llu goes beyond the file (%zu bytes)", sh->path,
                          (unsigned long long)hlen, size);
    if (hlen > (100u << 20))
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: header length %llu is implausibly large", sh->path, (unsigned long long)hlen);
    char *json = malloc(hlen + 1);
    if (!json) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory reading the header", sh->path);
    memcpy(json, p + 8, hlen);
    json[hlen] = 0;
    cJSON *root = cJSON_Parse(json);
    free(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: the safetensors header is not valid JSON", sh->path);
    }
    size_t data_start = 8 + (size_t)hlen, data_size = size - data_start;
    dsrt_status st = DSRT_OK;
    for (cJSON *e = root->child; e && !st; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(e, "shape"),
                    *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' lacks dtype, shape or data_offsets", sh->path, e->string);
            break;
        }
        dsrt_st_tensor t;
        memset(&t, 0, sizeof t);
        t.shard = si;
        snprintf(t.dtype_name, sizeof t.dtype_name, "%s", dt->valuestring);
        dsrt_status ds = dsrt_dtype_parse(dt->valuestring, &t.dtype);
        t.dtype_known = ds == DSRT_OK;
        dsrt_status_free(ds);
        t.ndim = cJSON_GetArraySize(shape);
        if (t.ndim > 8) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' has rank %d", sh->path, e->string, t.ndim);
            break;
        }
        uint64_t numel = 1;
        for (int i = 0; i < t.ndim; i++) {
            const cJSON *d = cJSON_GetArrayItem(shape, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e15) {
                st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' has a bad shape entry", sh->path, e->string);
                break;
            }
            t.shape[i] = (int64_t)d->valuedouble;
            if (t.shape[i] && numel > UINT64_MAX / (uint64_t)t.shape[i]) numel = UINT64_MAX;
            else numel *= (uint64_t)t.shape[i];
        }
        if (st) break;
        const cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 || en->valuedouble < b->valuedouble) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' has bad data_offsets", sh->path, e->string);
            break;
        }
        uint64_t begin = (uint64_t)b->valuedouble, end = (uint64_t)en->valuedouble;
        if (end > data_size) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS,
                            "%s: tensor '%s' data [%llu, %llu) lies beyond the end of the file (%zu data bytes): the shard "
                            "is truncated or corrupt",
                            sh->path, e->string, (unsigned long long)begin, (unsigned long long)end, data_size);
            break;
        }
        if (t.dtype_known && numel != UINT64_MAX && (end - begin) != numel * dsrt_dtype_size(t.dtype)) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' holds %llu bytes but %s of its shape needs %llu", sh->path,
                            e->string, (unsigned long long)(end - begin), t.dtype_name,
                            (unsigned long long)(numel * dsrt_dtype_size(t.dtype)));
            break;
        }
        t.data = p + data_start + begin;
        t.nbytes = (size_t)(end - begin);
        t.name = strdup(e->string);
        if (!t.name) {
            st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        st = dsrt_checkpoint_add_tensor(ck, &t);
        if (st) free(t.name);
    }
    cJSON_Delete(root);
    return st;
}

static dsrt_status open_shard(dsrt_checkpoint *ck, const char *file, int *index)
{
    for (int i = 0; i < ck->nshards; i++) {
        const char *base = strrchr(ck->shards[i].path, '/');
        if (strcmp(base ? base + 1 : ck->shards[i].path, file) == 0) {
            *index = i;
            return DSRT_OK;
        }
    }
    if (strchr(file, '/') || strcmp(file, "..") == 0)
        return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: shard name '%s' must be a plain file name", ck->dir, file);
    char path[2048];
    DSRT_TRY(dsrt_path_join(path, sizeof path, ck->dir, file));
    dsrt_shard *s = realloc(ck->shards, sizeof *s * (size_t)(ck->nshards + 1));
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    ck->shards = s;
    dsrt_shard *sh = &ck->shards[ck->nshards];
    memset(sh, 0, sizeof *sh);
    if (!dsrt_file_exists(path))
        return dsrt_error(DSRT_CODE_NOT_FOUND, "%s: shard '%s' listed in model.safetensors.index.json is missing", ck->dir, file);
    sh->path = strdup(path);
    if (!sh->path) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    dsrt_status st = dsrt_map_file(path, &sh->map);
    if (st) {
        free(sh->path);
        return st;
    }
    *index = ck->nshards++;
    return parse_shard(ck, *index);
}

static dsrt_status open_index(dsrt_checkpoint *ck, const char *index_path)
{
    char *text;
    size_t len;
    DSRT_TRY(dsrt_read_file(index_path, 256u << 20, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: malformed JSON", index_path);
    dsrt_status st = DSRT_OK;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: 'weight_map' is missing or not an object", index_path);
    }
    for (const cJSON *e = wm ? wm->child : NULL; e && !st; e = e->next) {
        if (!cJSON_IsString(e)) {
            st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: weight_map entry '%s' is not a file name", index_path, e->string);
            break;
        }
        int idx;
        st = open_shard(ck, e->valuestring, &idx);
    }
    if (!st) {
        qsort(ck->tensors, ck->n, sizeof *ck->tensors, cmp_tensor);
        /* every tensor the index lists must be in the shard it names */
        for (const cJSON *e = wm->child; e && !st; e = e->next) {
            const dsrt_st_tensor *t = dsrt_checkpoint_find(ck, e->string);
            const char *base = t ? strrchr(ck->shards[t->shard].path, '/') : NULL;
            if (!t)
                st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' is listed in the index but absent from shard '%s'", index_path,
                                e->string, e->valuestring);
            else if (strcmp(base ? base + 1 : "", e->valuestring) != 0)
                st = dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' is listed in shard '%s' but found in '%s'", index_path,
                                e->string, e->valuestring, base ? base + 1 : "?");
        }
    }
    cJSON_Delete(root);
    return st;
}

dsrt_status dsrt_checkpoint_new(const char *dir, dsrt_checkpoint **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    snprintf((*out)->dir, sizeof (*out)->dir, "%s", dir);
    return DSRT_OK;
}

dsrt_status dsrt_checkpoint_finish(dsrt_checkpoint *ck)
{
    qsort(ck->tensors, ck->n, sizeof *ck->tensors, cmp_tensor);
    for (size_t i = 1; i < ck->n; i++)
        if (strcmp(ck->tensors[i - 1].name, ck->tensors[i].name) == 0)
            return dsrt_error(DSRT_CODE_DATA_LOSS, "%s: tensor '%s' appears twice", ck->dir, ck->tensors[i].name);
    return DSRT_OK;
}

dsrt_status dsrt_checkpoint_data(const dsrt_checkpoint *ck, const dsrt_st_tensor *t, const void **data, int *owned)
{
    if (t->data) {
        *data = t->data;
        *owned = 0;
        return DSRT_OK;
    }
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory generating '%s' (%zu bytes)", t->name, t->nbytes);
    dsrt_status st = dsrt_checkpoint_generate(ck, t, p);
    if (st) {
        free(p);
        return st;
    }
    *data = p;
    *owned = 1;
    return DSRT_OK;
}

dsrt_status dsrt_checkpoint_open(const char *dir, dsrt_checkpoint **out)
{
    *out = NULL;
    dsrt_checkpoint *ck;
    DSRT_TRY(dsrt_checkpoint_new(dir, &ck));
    char path[2048];
    dsrt_status st = dsrt_path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (!st) {
        if (dsrt_file_exists(path)) {
            st = open_index(ck, path);
        } else {
            int idx;
            char single[2048];
            st = dsrt_path_join(single, sizeof single, dir, "model.safetensors");
            if (!st && !dsrt_file_exists(single))
                st = dsrt_error(DSRT_CODE_NOT_FOUND, "%s: no model.safetensors.index.json and no model.safetensors", dir);
            if (!st) st = open_shard(ck, "model.safetensors", &idx);

        }
    }
    if (!st) st = dsrt_checkpoint_finish(ck);
    if (st) {
        dsrt_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return DSRT_OK;
}

dsrt_status dsrt_checkpoint_open_memory(const char *name, const void *data, size_t size, dsrt_checkpoint **out)
{
    *out = NULL;
    if (!data || !size) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: empty checkpoint", name);
    dsrt_checkpoint *ck;
    DSRT_TRY(dsrt_checkpoint_new(name, &ck));
    dsrt_status st = DSRT_OK;
    ck->shards = calloc(1, sizeof *ck->shards);
    if (!ck->shards || !(ck->shards[0].path = strdup(name))) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory");
    if (!st) {
        ck->shards[0].map.data = (void *)data;
        ck->shards[0].map.size = size;
        ck->shards[0].borrowed = 1;
        ck->nshards = 1;
        st = parse_shard(ck, 0);
    }
    if (!st) st = dsrt_checkpoint_finish(ck);
    if (st) {
        dsrt_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return DSRT_OK;
}

void dsrt_checkpoint_close(dsrt_checkpoint *ck)
{
    if (!ck) return;
    for (size_t i = 0; i < ck->n; i++) free(ck->tensors[i].name);
    free(ck->tensors);
    for (int i = 0; i < ck->nshards; i++) {
        if (!ck->shards[i].borrowed) dsrt_unmap_file(&ck->shards[i].map);
        free(ck->shards[i].path);
    }
    free(ck->shards);
    free(ck);
}

size_t dsrt_checkpoint_count(const dsrt_checkpoint *ck) { return ck->n; }
const dsrt_st_tensor *dsrt_checkpoint_at(const dsrt_checkpoint *ck, size_t i) { return i < ck->n ? &ck->tensors[i] : NULL; }
const char *dsrt_checkpoint_shard_path(const dsrt_checkpoint *ck, int shard)
{
    return shard >= 0 && shard < ck->nshards ? ck->shards[shard].path : ck->dir;
}

const dsrt_st_tensor *dsrt_checkpoint_find(const dsrt_checkpoint *ck, const char *name)
{
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ck->tensors[mid].name, name);
        if (c == 0) return &ck->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

dsrt_status dsrt_checkpoint_get(const dsrt_checkpoint *ck, const char *name, const dsrt_st_tensor **out)
{
    const dsrt_st_tensor *t = dsrt_checkpoint_find(ck, name);
    if (!t) return dsrt_error(DSRT_CODE_NOT_FOUND, "%s: tensor '%s' is missing from the checkpoint", ck->dir, name);
    if (!t->dtype_known)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: tensor '%s' has dtype %s, which dsrt does not read",
                          dsrt_checkpoint_shard_path(ck, t->shard), name, t->dtype_name);
    *out = t;
    return DSRT_OK;
}

size_t dsrt_checkpoint_bytes(const dsrt_checkpoint *ck)
{
    size_t n = 0;
    for (size_t i = 0; i < ck->n; i++) n += ck->tensors[i].nbytes;
    return n;
}
