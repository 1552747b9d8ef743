/* DeepSeek-V3.2 chat format: prompt encoding and completion parsing.
 *
 * The model ships no Jinja template; its format is defined by the official Python encoder
 * (encoding/encoding_dsv32.py: encode_messages and parse_message_from_completion_text). dsrt reproduces it
 * byte for byte, including its corner cases, so a prompt built here is the prompt the model was trained on:
 *   <｜begin▁of▁sentence｜>{system}[tools][response format]
 *   <｜User｜>{user}<｜Assistant｜></think>   (chat mode, or earlier turns in thinking mode)
 *   <｜User｜>{user}<｜Assistant｜><think>    (the last user turn in thinking mode)
 *   {reasoning}</think>{content}\n\n<｜DSML｜function_calls>...</｜DSML｜function_calls><｜end▁of▁sentence｜>
 *   \n\n<function_results>\n<result>...</result>\n</function_results>\n\n<think> or </think>
 * Developer messages render as a user turn ("# The user's message is: ...") that may carry tools and a
 * response format. In thinking mode the reasoning of assistant turns before the last user turn is dropped.
 * See docs/text.md for every rule. */
#ifndef DSRT_CHAT_H
#define DSRT_CHAT_H

#include <stddef.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_chat_mode {
    DSRT_CHAT_MODE_CHAT = 0,     /* thinking_mode="chat" */
    DSRT_CHAT_MODE_THINKING = 1, /* thinking_mode="thinking" */
} dsrt_chat_mode;

typedef struct dsrt_chat_options {
    dsrt_chat_mode mode;
    int drop_thinking; /* drop reasoning of turns before the last user turn (thinking mode); default 1 */
    int add_bos;       /* start with <｜begin▁of▁sentence｜> when there is no context; default 1 */
    size_t n_context;  /* the first n_context messages are already in the prompt: render only the rest
                        * (the official encoder's `context` argument); default 0 */
} dsrt_chat_options;

/* The official encoder's defaults: chat mode, drop_thinking, BOS, no context. */
void dsrt_chat_options_init(dsrt_chat_options *opt);

/* Encodes a JSON array of messages exactly as encode_messages does. Each message is an object with "role"
 * (system, developer, user, assistant, tool), "content", and as the role allows "tools" (OpenAI format,
 * on system or developer), "response_format", "reasoning_content", "tool_calls" (OpenAI format, with
 * "arguments" a JSON string). *prompt is malloc'd and NUL-terminated; free with free(). Errors name the
 * message index and the rule the official encoder enforces there. */
dsrt_status dsrt_chat_encode_messages(const char *messages_json, size_t len, const dsrt_chat_options *opt,
                                      char **prompt, size_t *prompt_len) DSRT_MUST_USE;

/* Encodes an OpenAI-style chat request body {"messages": [...], "tools": [...], "response_format": {...}}:
 * request-level tools and response_format are attached to the first message when it is a system message
 * (as the official test does), otherwise to a system message inserted before it; then as
 * dsrt_chat_encode_messages (opt->n_context counts the messages after that insertion). */
dsrt_status dsrt_chat_encode_request(const char *request_json, size_t len, const dsrt_chat_options *opt,
                                     char **prompt, size_t *prompt_len) DSRT_MUST_USE;

typedef struct dsrt_chat_tool_call {
    char *name;
    char *arguments; /* a JSON object as text, built as the official parser builds it */
} dsrt_chat_tool_call;

/* An assistant message parsed from generated text. */
typedef struct dsrt_chat_message {
    char *content;
    char *reasoning_content; /* "" in chat mode */
    dsrt_chat_tool_call *tool_calls;
    size_t n_tool_calls;
} dsrt_chat_message;

/* Parses the text the model generated after the prompt (up to and including <｜end▁of▁sentence｜>, which
 * may be absent at the very end) like parse_message_from_completion_text: in thinking mode the reasoning
 * up to </think>, then the content, then DSML tool calls. It accepts only well-formed text, as the
 * official parser does; errors say which rule failed and at which byte. */
dsrt_status dsrt_chat_parse(const char *text, size_t len, dsrt_chat_mode mode, dsrt_chat_message *out) DSRT_MUST_USE;
void dsrt_chat_message_free(dsrt_chat_message *m);

/* The message as the official parser returns it, serialized like json.dumps(..., ensure_ascii=False):
 * {"role": "assistant", "content": ..., "reasoning_content": ..., "tool_calls": [{"type": "function",
 * "function": {"name": ..., "arguments": ...}}]}. *json is malloc'd; free with free(). */
dsrt_status dsrt_chat_message_to_json(const dsrt_chat_message *m, char **json, size_t *len) DSRT_MUST_USE;

#ifdef __cplusplus
}
#endif
#endif
