/* Internals of the DeepSeek-V3.2 chat encoder and parser: a growable byte buffer and JSON helpers that
 * reproduce what the official Python encoder gets from json.loads / json.dumps / str(). */
#ifndef DSRT_CHAT_INTERNAL_H
#define DSRT_CHAT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "dsrt/chat.h"

typedef struct dsrt_chat_buf {
    char *p;
    size_t n, cap;
    int oom; /* set once an append failed; checked once at the end */
} dsrt_chat_buf;

void dsrt_chat_buf_add(dsrt_chat_buf *b, const char *s, size_t n);
void dsrt_chat_buf_puts(dsrt_chat_buf *b, const char *s);
void dsrt_chat_buf_free(dsrt_chat_buf *b);

/* Parses JSON like Python's json.loads as far as dsrt needs it: the whole text must be one value (only
 * whitespace after it), and every number keeps its source lexeme (in valuestring) so that it can be
 * written back as Python would (int vs float, big integers exactly). `what` names the input in errors. */
dsrt_status dsrt_chat_json_parse(const char *text, size_t len, const char *what, cJSON **out);

/* Appends json.dumps(value, ensure_ascii=False) with Python's default separators. Objects with repeated
 * keys are written as the dict json.loads built: first position, last value. */
void dsrt_chat_json_dump(dsrt_chat_buf *b, const cJSON *v);
/* Appends a string as a JSON string literal, Python style. */
void dsrt_chat_json_dump_string(dsrt_chat_buf *b, const char *s, size_t n);

/* dict.get(key): the last member with that key, as in the dict json.loads built; NULL if absent. */
const cJSON *dsrt_chat_get(const cJSON *obj, const char *key);
/* Python truthiness of a JSON value (missing, null, false, 0, "", [], {} are false). */
int dsrt_chat_truthy(const cJSON *v);
/* Appends str(value) for what str.format would print: strings as they are, null as None, booleans as
 * True / False, numbers as Python prints them. Lists and objects (a Python repr) are refused. */
dsrt_status dsrt_chat_append_str(dsrt_chat_buf *b, const cJSON *v, const char *where);

#endif
