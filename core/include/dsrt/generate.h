/* Text generation: prefill a prompt, sample tokens one at a time, stream the decoded text, stop at the
 * end-of-sequence token, a stop string, or a length limit. */
#ifndef DSRT_GENERATE_H
#define DSRT_GENERATE_H

#include <stdint.h>

#include "dsrt/model.h"
#include "dsrt/sampler.h"
#include "dsrt/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsrt_generate_params {
    dsrt_sampling sampling;
    uint64_t seed;
    int64_t max_new_tokens;
    const char *const *stop_strings; /* generation ends before the first occurrence of any */
    int n_stop_strings;
    /* Receives each piece of text as soon as it is safe to print (complete UTF-8, not a possible start of
     * a stop string); returning non-zero stops generation. May be NULL. */
    int (*on_text)(void *ctx, const char *text, size_t len);
    void *ctx;
} dsrt_generate_params;

typedef enum dsrt_stop_reason { DSRT_STOP_EOS = 0, DSRT_STOP_STRING, DSRT_STOP_LENGTH, DSRT_STOP_CALLER } dsrt_stop_reason;

typedef struct dsrt_generate_result {
    dsrt_token_ids tokens;   /* the generated ids (without the end-of-sequence token) */
    char *text;              /* their text, cut before a stop string (malloc'd) */
    size_t text_len;
    dsrt_stop_reason reason;
    int64_t prompt_tokens;
    double prompt_seconds, generate_seconds;
} dsrt_generate_result;

/* Feeds `prompt` (appended to the sequence's cache) and generates. The last prompt token's logits
 * start generation; an empty prompt is an error. */
dsrt_status dsrt_generate(dsrt_model *m, const dsrt_tokenizer *tok, dsrt_seq *seq, const int32_t *prompt, int64_t n_prompt,
                          const dsrt_generate_params *p, dsrt_generate_result *out);
void dsrt_generate_result_free(dsrt_generate_result *r);

#ifdef __cplusplus
}
#endif
#endif
