/* Placement: the device of each block, from defaults or a JSON file (docs/placement.md). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/file_util.h"
#include "model_internal.h"

static dsrt_status alloc_maps(dsrt_placement *p, int64_t layers, int64_t experts)
{
    p->attention = calloc((size_t)layers + 1, sizeof(int));
    p->ffn = calloc((size_t)layers + 1, sizeof(int));
    p->experts = calloc((size_t)(layers * (experts > 0 ? experts : 1)) + 1, sizeof(int));
    if (!p->attention || !p->ffn || !p->experts) {
        dsrt_placement_free(p);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the placement");
    }
    return DSRT_OK;
}

dsrt_status dsrt_placement_default(dsrt_placement *p, const char *device, int64_t layers, int64_t experts)
{
    memset(p, 0, sizeof *p);
    p->n_devices = 1;
    snprintf(p->device_specs[0], sizeof p->device_specs[0], "%s", device && *device ? device : "cpu");
    return alloc_maps(p, layers, experts);
}

void dsrt_placement_free(dsrt_placement *p)
{
    free(p->attention);
    free(p->ffn);
    free(p->experts);
    p->attention = p->ffn = p->experts = NULL;
}

static dsrt_status dev_index(const dsrt_placement *p, const cJSON *v, const char *path, const char *what, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < 0 || v->valuedouble >= p->n_devices)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' must be a device index in 0..%d", path, what, p->n_devices - 1);
    *out = (int)v->valuedouble;
    return DSRT_OK;
}

/* A field that is one device index or an array of `n` of them. */
static dsrt_status per_layer(const dsrt_placement *p, const cJSON *root, const char *key, const char *path, int64_t n, int dflt,
                             int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    for (int64_t i = 0; i < n; i++) out[i] = dflt;
    if (!v) return DSRT_OK;
    if (cJSON_IsNumber(v)) {
        int d = 0;
        DSRT_TRY(dev_index(p, v, path, key, &d));
        for (int64_t i = 0; i < n; i++) out[i] = d;
        return DSRT_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' must be a device index or an array of %lld of them", path, key,
                          (long long)n);
    for (int64_t i = 0; i < n; i++) DSRT_TRY(dev_index(p, cJSON_GetArrayItem(v, (int)i), path, key, &out[i]));
    return DSRT_OK;
}

dsrt_status dsrt_placement_load(dsrt_placement *p, const char *path, int64_t layers, int64_t experts)
{
    memset(p, 0, sizeof *p);
    char *text;
    size_t len;
    DSRT_TRY(dsrt_read_file(path, 16u << 20, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: placement is not a JSON object", path);
    }
    dsrt_status st = DSRT_OK;
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(root, "devices");
    if (!cJSON_IsArray(devs) || cJSON_GetArraySize(devs) < 1 || cJSON_GetArraySize(devs) > DSRT_MAX_MODEL_DEVICES) {
        st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: 'devices' must list 1..%d device names such as \"cpu\" or \"cuda:0\"", path,
                        DSRT_MAX_MODEL_DEVICES);
        goto done;
    }
    p->n_devices = cJSON_GetArraySize(devs);
    for (int i = 0; i < p->n_devices; i++) {
        const cJSON *d = cJSON_GetArrayItem(devs, i);
        if (!cJSON_IsString(d) || strlen(d->valuestring) >= sizeof p->device_specs[0]) {
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: devices[%d] must be a device name", path, i);
            goto done;
        }
        snprintf(p->device_specs[i], sizeof p->device_specs[i], "%s", d->valuestring);
    }
    if ((st = alloc_maps(p, layers, experts))) goto done;
    int dflt = 0;
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(root, "default");
    if (dv && (st = dev_index(p, dv, path, "default", &dflt))) goto done;
    p->embed = p->head = dflt;
    if (cJSON_GetObjectItemCaseSensitive(root, "embed") &&
        (st = dev_index(p, cJSON_GetObjectItemCaseSensitive(root, "embed"), path, "embed", &p->embed)))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "head") &&
        (st = dev_index(p, cJSON_GetObjectItemCaseSensitive(root, "head"), path, "head", &p->head)))
        goto done;
    if ((st = per_layer(p, root, "attention", path, layers, dflt, p->attention))) goto done;
    if ((st = per_layer(p, root, "ffn", path, layers, dflt, p->ffn))) goto done;
    /* experts: one index (all), an array over experts (every layer), or an array over layers of arrays */
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "experts");
    for (int64_t l = 0; l < layers; l++)
        for (int64_t e = 0; e < experts; e++) p->experts[l * experts + e] = p->ffn[l];
    if (ex && experts > 0) {
        if (cJSON_IsNumber(ex)) {
            int d = 0;
            if ((st = dev_index(p, ex, path, "experts", &d))) goto done;
            for (int64_t i = 0; i < layers * experts; i++) p->experts[i] = d;
        } else if (cJSON_IsArray(ex) && cJSON_GetArraySize(ex) == experts && cJSON_IsNumber(cJSON_GetArrayItem(ex, 0))) {
            for (int64_t e = 0; e < experts; e++) {
                int d = 0;
                if ((st = dev_index(p, cJSON_GetArrayItem(ex, (int)e), path, "experts", &d))) goto done;
                for (int64_t l = 0; l < layers; l++) p->experts[l * experts + e] = d;
            }
        } else if (cJSON_IsArray(ex) && cJSON_GetArraySize(ex) == layers) {
            for (int64_t l = 0; l < layers; l++) {
                const cJSON *row = cJSON_GetArrayItem(ex, (int)l);
                if (cJSON_IsNumber(row)) {
                    int d = 0;
                    if ((st = dev_index(p, row, path, "experts", &d))) goto done;
                    for (int64_t e = 0; e < experts; e++) p->experts[l * experts + e] = d;
                    continue;
                }
                if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != experts) {
                    st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: experts[%lld] must list %lld device indices", path, (long long)l,
                                    (long long)experts);
                    goto done;
                }
                for (int64_t e = 0; e < experts; e++)
                    if ((st = dev_index(p, cJSON_GetArrayItem(row, (int)e), path, "experts", &p->experts[l * experts + e]))) goto done;
            }
        } else {
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                            "%s: 'experts' must be a device index, an array of %lld (one per expert) or of %lld (one per layer)",
                            path, (long long)experts, (long long)layers);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    if (st) dsrt_placement_free(p);
    return st;
}
