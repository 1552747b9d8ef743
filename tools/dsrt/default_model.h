/* The default model compiled into dsrt (tools/default_model/model): used when no -m is given. */
#ifndef DSRT_DEFAULT_MODEL_H
#define DSRT_DEFAULT_MODEL_H

#include <stddef.h>

typedef struct dsrt_default_model {
    const char *config;            /* config.json text (NUL-terminated) */
    const void *weights;           /* model.safetensors bytes */
    size_t weights_len;
    const char *tokenizer;         /* tokenizer.json text (NUL-terminated) */
    size_t tokenizer_len;
    const char *generation_config; /* generation_config.json text, or NULL */
} dsrt_default_model;

/* 1 and the model when this build has one, else 0. */
int dsrt_default_model_get(dsrt_default_model *out);

#endif
