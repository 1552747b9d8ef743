/* DeepSeek-V3.2 prompt encoding: a C rendering of the official encode_messages.
 *
 * The rules below follow the official encoder statement by statement, including its quirks, because the
 * model was trained on exactly its output:
 *  - reasoning is printed only for assistant turns after the last user or developer turn (thinking mode);
 *  - drop_thinking (thinking mode) also removes developer turns before the last user turn; the loop then
 *    still renders as many messages as were given, so such a drop makes the official encoder fail, and
 *    dsrt fails the same way;
 *  - a tool turn finds its assistant turn by walking back over tool turns, with Python's negative indexing
 *    at index 0, and closes </function_results> after the last result that assistant asked for;
 *  - values are printed as str.format prints them (None, True, numbers) and JSON as json.dumps writes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_internal.h"

#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"
#define THINK_START "<think>"
#define THINK_END "</think>"
#define DSML "｜DSML｜"
#define USER_TAG "<｜User｜>"
#define ASSISTANT_TAG "<｜Assistant｜>"

/* The tools section of the system prompt, up to the schemas, and after them. Text of the format itself. */
static const char TOOLS_HEAD[] =
    "## Tools\n\n"
    "You have access to a set of tools you can use to answer the user's question.\n"
    "You can invoke functions by writing a \"<" DSML "function_calls>\" block like the following as part of your "
    "reply to the user:\n"
    "<" DSML "function_calls>\n"
    "<" DSML "invoke name=\"$FUNCTION_NAME\">\n"
    "<" DSML "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n"
    "...\n"
    "</" DSML "invoke>\n"
    "<" DSML "invoke name=\"$FUNCTION_NAME2\">\n"
    "...\n"
    "</" DSML "invoke>\n"
    "</" DSML "function_calls>\n\n"
    "String and scalar parameters should be specified as is without any escaping or quotes, while lists and "
    "objects should use JSON format. The \"string\" attribute should be set to \"true\" for string type "
    "parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n\n"
    "If the thinking_mode is enabled, then after function results you should strongly consider outputting a "
    "thinking block. Here is an example:\n\n"
    "<" DSML "function_calls>\n"
    "...\n"
    "</" DSML "function_calls>\n\n"
    "<function_results>\n"
    "...\n"
    "</function_results>\n\n" THINK_START "...thinking about results" THINK_END "\n\n"
    "Here are the functions available in JSONSchema format:\n"
    "<functions>\n";
static const char TOOLS_TAIL[] = "\n</functions>\n";
static const char RESPONSE_FORMAT_HEAD[] =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

void dsrt_chat_options_init(dsrt_chat_options *opt)
{
    opt->mode = DSRT_CHAT_MODE_CHAT;
    opt->drop_thinking = 1;
    opt->add_bos = 1;
    opt->n_context = 0;
}

typedef struct {
    const cJSON **m; /* the messages after drop_thinking */
    size_t n;
} msg_list;

static const char *role_of(const cJSON *msg)
{
    const cJSON *r = dsrt_chat_get(msg, "role");
    return cJSON_IsString(r) ? r->valuestring : NULL;
}

static int role_is(const cJSON *msg, const char *role)
{
    const char *r = role_of(msg);
    return r && strcmp(r, role) == 0;
}

static long last_user_index(const msg_list *l)
{
    for (size_t i = l->n; i-- > 0;)
        if (role_is(l->m[i], "user") || role_is(l->m[i], "developer")) return (long)i;
    return -1;
}

/* messages[i] with Python's meaning for a negative i */
static const cJSON *py_at(const msg_list *l, long i) { return l->m[i < 0 ? (long)l->n + i : i]; }

static dsrt_status render_tools(dsrt_chat_buf *b, const cJSON *tools, size_t index)
{
    if (!cJSON_IsArray(tools))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu].tools: expected an array of tools", index);
    dsrt_chat_buf_puts(b, TOOLS_HEAD);
    size_t k = 0;
    for (const cJSON *t = tools->child; t; t = t->next, k++) {
        const cJSON *fn = dsrt_chat_get(t, "function");
        if (!fn)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "messages[%zu].tools[%zu]: no \"function\" (tools are in OpenAI format: "
                              "{\"type\": \"function\", \"function\": {...}})",
                              index, k);
        if (k) dsrt_chat_buf_puts(b, "\n");
        dsrt_chat_json_dump(b, fn);
    }
    dsrt_chat_buf_puts(b, TOOLS_TAIL);
    return DSRT_OK;
}

static void render_response_format(dsrt_chat_buf *b, const cJSON *rf)
{
    dsrt_chat_buf_puts(b, "\n\n");
    dsrt_chat_buf_puts(b, RESPONSE_FORMAT_HEAD);
    dsrt_chat_json_dump(b, rf);
}

/* One tool call as DSML: the arguments JSON string is parsed (json.loads) and each member becomes a
 * parameter, strings as they are, anything else as JSON. */
static dsrt_status render_tool_call(dsrt_chat_buf *b, const cJSON *call, size_t index, size_t k)
{
    const cJSON *fn = dsrt_chat_get(call, "function");
    const cJSON *name = fn ? dsrt_chat_get(fn, "name") : NULL;
    const cJSON *args = fn ? dsrt_chat_get(fn, "arguments") : NULL;
    if (!fn || !name || !args)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "messages[%zu].tool_calls[%zu]: expected {\"function\": {\"name\": ..., \"arguments\": ...}}",
                          index, k);
    if (!cJSON_IsString(args))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "messages[%zu].tool_calls[%zu].function.arguments: expected a JSON string, as OpenAI "
                          "sends it (the official encoder calls json.loads on it)",
                          index, k);
    char where[96];
    snprintf(where, sizeof where, "messages[%zu].tool_calls[%zu].function.arguments", index, k);
    cJSON *parsed = NULL;
    DSRT_TRY(dsrt_chat_json_parse(args->valuestring, strlen(args->valuestring), where, &parsed));
    if (!cJSON_IsObject(parsed)) {
        cJSON_Delete(parsed);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: expected a JSON object", where);
    }
    dsrt_chat_buf_puts(b, "<" DSML "invoke name=\"");
    snprintf(where, sizeof where, "messages[%zu].tool_calls[%zu].function.name", index, k);
    dsrt_status st = dsrt_chat_append_str(b, name, where);
    if (st) {
        cJSON_Delete(parsed);
        return st;
    }
    dsrt_chat_buf_puts(b, "\">\n");
    int first = 1;
    for (const cJSON *a = parsed->child; a; a = a->next) {
        int repeated = 0; /* a dict keeps one entry per key: first position, last value */
        for (const cJSON *p = parsed->child; p != a; p = p->next)
            if (strcmp(p->string, a->string) == 0) repeated = 1;
        if (repeated) continue;
        const cJSON *v = dsrt_chat_get(parsed, a->string);
        if (!first) dsrt_chat_buf_puts(b, "\n");
        first = 0;
        dsrt_chat_buf_puts(b, "<" DSML "parameter name=\"");
        dsrt_chat_buf_puts(b, a->string);
        dsrt_chat_buf_puts(b, cJSON_IsString(v) ? "\" string=\"true\">" : "\" string=\"false\">");
        if (cJSON_IsString(v))
            dsrt_chat_buf_puts(b, v->valuestring);
        else
            dsrt_chat_json_dump(b, v);
        dsrt_chat_buf_puts(b, "</" DSML "parameter>");
    }
    dsrt_chat_buf_puts(b, "\n</" DSML "invoke>");
    cJSON_Delete(parsed);
    return DSRT_OK;
}

static dsrt_status render_message(dsrt_chat_buf *b, const msg_list *l, size_t index, dsrt_chat_mode mode)
{
    const cJSON *msg = l->m[index];
    long last_user = last_user_index(l);
    const char *role = role_of(msg);
    const cJSON *content = dsrt_chat_get(msg, "content");
    const cJSON *tools = dsrt_chat_get(msg, "tools");
    const cJSON *rf = dsrt_chat_get(msg, "response_format");
    const cJSON *tool_calls = dsrt_chat_get(msg, "tool_calls");
    const cJSON *reasoning = dsrt_chat_get(msg, "reasoning_content");
    int thinking = mode == DSRT_CHAT_MODE_THINKING;
    char where[64];
    snprintf(where, sizeof where, "messages[%zu].content", index);
    if (!cJSON_IsObject(msg))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu]: expected an object", index);
    if (!role)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu]: unknown role (no \"role\" string)", index);
    /* the official encoder converts tools and tool_calls from OpenAI format for every role first */
    if (dsrt_chat_truthy(tools)) {
        size_t k = 0;
        for (const cJSON *t = cJSON_IsArray(tools) ? tools->child : NULL; t; t = t->next, k++)
            if (!dsrt_chat_get(t, "function"))
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                                  "messages[%zu].tools[%zu]: no \"function\" (tools are in OpenAI format: "
                                  "{\"type\": \"function\", \"function\": {...}})",
                                  index, k);
        if (!cJSON_IsArray(tools))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu].tools: expected an array of tools", index);
    }
    if (dsrt_chat_truthy(tool_calls)) {
        if (!cJSON_IsArray(tool_calls))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu].tool_calls: expected an array", index);
        size_t k = 0;
        for (const cJSON *c = tool_calls->child; c; c = c->next, k++) {
            const cJSON *fn = dsrt_chat_get(c, "function");
            if (!fn || !dsrt_chat_get(fn, "name") || !dsrt_chat_get(fn, "arguments"))
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                                  "messages[%zu].tool_calls[%zu]: expected {\"function\": {\"name\": ..., "
                                  "\"arguments\": ...}}",
                                  index, k);
        }
    }

    if (strcmp(role, "system") == 0) {
        if (dsrt_chat_truthy(content)) DSRT_TRY(dsrt_chat_append_str(b, content, where));
        if (dsrt_chat_truthy(tools)) {
            dsrt_chat_buf_puts(b, "\n\n");
            DSRT_TRY(render_tools(b, tools, index));
        }
        if (dsrt_chat_truthy(rf)) render_response_format(b, rf);
    } else if (strcmp(role, "developer") == 0) {
        if (!dsrt_chat_truthy(content))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "messages[%zu]: a developer message needs non-empty content", index);
        dsrt_chat_buf_puts(b, USER_TAG);
        if (dsrt_chat_truthy(tools)) {
            dsrt_chat_buf_puts(b, "\n\n");
            DSRT_TRY(render_tools(b, tools, index));
        }
        if (dsrt_chat_truthy(rf)) render_response_format(b, rf);
        dsrt_chat_buf_puts(b, "\n\n# The user's message is: ");
        DSRT_TRY(dsrt_chat_append_str(b, content, where));
        dsrt_chat_buf_puts(b, ASSISTANT_TAG);
        dsrt_chat_buf_puts(b, (long)index == last_user && thinking ? THINK_START : THINK_END);
    } else if (strcmp(role, "user") == 0) {
        dsrt_chat_buf_puts(b, USER_TAG);
        DSRT_TRY(dsrt_chat_append_str(b, content, where));
        dsrt_chat_buf_puts(b, ASSISTANT_TAG);
        dsrt_chat_buf_puts(b, (long)index == last_user && thinking ? THINK_START : THINK_END);
    } else if (strcmp(role, "tool") == 0) {
        long prev = (long)index - 1;
        const cJSON *am = py_at(l, prev);
        while (prev >= 0 && role_is(am, "tool")) {
            prev--;
            am = py_at(l, prev);
        }
        if (!(index == 0 || (prev >= 0 && role_is(am, "assistant"))))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "messages[%zu]: a tool message must follow an assistant message with tool_calls "
                              "(and other tool messages)",
                              index);
        long order = (long)index - prev;
        const cJSON *calls = dsrt_chat_get(am, "tool_calls");
        long ncalls = cJSON_IsArray(calls) ? cJSON_GetArraySize(calls) : 0;
        if (!dsrt_chat_truthy(calls) || ncalls < order)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "messages[%zu]: tool result %ld but the assistant message made %ld tool call%s", index,
                              order, ncalls, ncalls == 1 ? "" : "s");
        if (order == 1) dsrt_chat_buf_puts(b, "\n\n<function_results>");
        dsrt_chat_buf_puts(b, "\n<result>");
        DSRT_TRY(dsrt_chat_append_str(b, content, where));
        dsrt_chat_buf_puts(b, "</result>");
        if (order == ncalls) {
            dsrt_chat_buf_puts(b, "\n</function_results>");
            dsrt_chat_buf_puts(b, (long)index >= last_user && thinking ? "\n\n" THINK_START : "\n\n" THINK_END);
        }
    } else if (strcmp(role, "assistant") == 0) {
        dsrt_chat_buf calls_text = {0};
        int has_calls = dsrt_chat_truthy(tool_calls);
        if (has_calls) {
            if (!cJSON_IsArray(tool_calls))
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages[%zu].tool_calls: expected an array", index);
            dsrt_chat_buf_puts(&calls_text, "\n\n<" DSML "function_calls>\n");
            size_t k = 0;
            for (const cJSON *c = tool_calls->child; c; c = c->next, k++) {
                if (k) dsrt_chat_buf_puts(&calls_text, "\n");
                dsrt_status st = render_tool_call(&calls_text, c, index, k);
                if (st) {
                    dsrt_chat_buf_free(&calls_text);
                    return st;
                }
            }
            dsrt_chat_buf_puts(&calls_text, "\n</" DSML "function_calls>");
        }
        if (thinking && (long)index > last_user) {
            if (!dsrt_chat_truthy(reasoning) && !has_calls) {
                dsrt_chat_buf_free(&calls_text);
                return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                                  "messages[%zu]: in thinking mode an assistant message after the last user message "
                                  "needs reasoning_content or tool_calls",
                                  index);
            }
            if (dsrt_chat_truthy(reasoning)) {
                char w[64];
                snprintf(w, sizeof w, "messages[%zu].reasoning_content", index);
                dsrt_status st = dsrt_chat_append_str(b, reasoning, w);
                if (st) {
                    dsrt_chat_buf_free(&calls_text);
                    return st;
                }
            }
            dsrt_chat_buf_puts(b, THINK_END);
        }
        dsrt_status st = DSRT_OK;
        if (dsrt_chat_truthy(content)) st = dsrt_chat_append_str(b, content, where);
        if (calls_text.n) dsrt_chat_buf_add(b, calls_text.p, calls_text.n);
        if (calls_text.oom) b->oom = 1;
        dsrt_chat_buf_free(&calls_text);
        if (st) return st;
        dsrt_chat_buf_puts(b, EOS);
    } else {
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "messages[%zu]: unknown role '%s' (expected system, developer, user, assistant or tool)",
                          index, role);
    }
    return DSRT_OK;
}

/* encode_messages over a parsed array; `messages` must be a JSON array. */
static dsrt_status encode_array(const cJSON *messages, const dsrt_chat_options *opt, dsrt_chat_buf *b)
{
    size_t total = (size_t)cJSON_GetArraySize(messages);
    if (opt->n_context > total)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "n_context %zu is more than the %zu messages given",
                          opt->n_context, total);
    const cJSON **all = malloc((total ? total : 1) * sizeof *all);
    if (!all) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory encoding a chat");
    size_t i = 0;
    for (const cJSON *m = messages->child; m; m = m->next) all[i++] = m;
    msg_list l = {all, total};

    /* drop_thinking_messages: keeps user, system and tool turns and everything from the last user turn on;
     * earlier assistant turns lose reasoning_content, which render_message never prints for turns before
     * the last user turn anyway; anything else before the last user turn (developer turns) is removed */
    int thinking = opt->mode == DSRT_CHAT_MODE_THINKING;
    if (thinking && opt->drop_thinking) {
        long lu = last_user_index(&l);
        size_t k = 0;
        for (size_t j = 0; j < total; j++) {
            const cJSON *m = all[j];
            if (role_is(m, "user") || role_is(m, "system") || role_is(m, "tool") || (long)j >= lu || role_is(m, "assistant"))
                all[k++] = m;
        }
        l.n = k;
    }
    if (opt->add_bos && opt->n_context == 0) dsrt_chat_buf_puts(b, BOS);
    dsrt_status st = DSRT_OK;
    for (size_t idx = opt->n_context; idx < total && !st; idx++) {
        if (idx >= l.n) {
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                            "messages: %zu developer message%s before the last user message %s dropped in thinking "
                            "mode, so the official encoder fails here (index %zu of %zu)",
                            total - l.n, total - l.n == 1 ? "" : "s", total - l.n == 1 ? "is" : "are", idx, l.n);
            break;
        }
        st = render_message(b, &l, idx, opt->mode);
    }
    free(all);
    if (!st && b->oom) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory encoding a chat");
    return st;
}

static dsrt_status finish(dsrt_chat_buf *b, dsrt_status st, char **prompt, size_t *prompt_len)
{
    if (st) {
        dsrt_chat_buf_free(b);
        return st;
    }
    if (!b->p) dsrt_chat_buf_add(b, "", 0);
    if (b->oom) {
        dsrt_chat_buf_free(b);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory encoding a chat");
    }
    *prompt = b->p;
    if (prompt_len) *prompt_len = b->n;
    return DSRT_OK;
}

dsrt_status dsrt_chat_encode_messages(const char *json, size_t len, const dsrt_chat_options *opt, char **prompt,
                                      size_t *prompt_len)
{
    *prompt = NULL;
    if (prompt_len) *prompt_len = 0;
    dsrt_chat_options def;
    if (!opt) {
        dsrt_chat_options_init(&def);
        opt = &def;
    }
    cJSON *root = NULL;
    DSRT_TRY(dsrt_chat_json_parse(json, len, "messages", &root));
    dsrt_chat_buf b = {0};
    dsrt_status st = cJSON_IsArray(root)
                         ? encode_array(root, opt, &b)
                         : dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "messages: expected a JSON array of messages");
    cJSON_Delete(root);
    return finish(&b, st, prompt, prompt_len);
}

dsrt_status dsrt_chat_encode_request(const char *json, size_t len, const dsrt_chat_options *opt, char **prompt,
                                     size_t *prompt_len)
{
    *prompt = NULL;
    if (prompt_len) *prompt_len = 0;
    dsrt_chat_options def;
    if (!opt) {
        dsrt_chat_options_init(&def);
        opt = &def;
    }
    cJSON *root = NULL;
    DSRT_TRY(dsrt_chat_json_parse(json, len, "request", &root));
    dsrt_status st = DSRT_OK;
    dsrt_chat_buf b = {0};
    cJSON *messages = cJSON_IsObject(root) ? (cJSON *)dsrt_chat_get(root, "messages") : NULL;
    if (!cJSON_IsArray(messages)) {
        st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "request: expected an object with a \"messages\" array");
    } else {
        cJSON *tools = (cJSON *)dsrt_chat_get(root, "tools");
        cJSON *rf = (cJSON *)dsrt_chat_get(root, "response_format");
        int want_tools = dsrt_chat_truthy(tools), want_rf = dsrt_chat_truthy(rf);
        if (want_tools || want_rf) {
            /* attach to the leading system message, inserting one if the conversation has none */
            cJSON *sys = messages->child;
            if (!sys || !role_is(sys, "system")) {
                sys = cJSON_CreateObject();
                if (!sys || !cJSON_AddStringToObject(sys, "role", "system")) {
                    cJSON_Delete(sys);
                    st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory encoding a chat");
                } else {
                    cJSON_InsertItemInArray(messages, 0, sys);
                }
            }
            if (!st) {
                /* detach from the request and move into the message; a member of the same name there is replaced */
                if (want_tools) {
                    cJSON_DeleteItemFromObjectCaseSensitive(sys, "tools");
                    cJSON_AddItemToObject(sys, "tools", cJSON_DetachItemViaPointer(root, tools));
                }
                if (want_rf) {
                    cJSON_DeleteItemFromObjectCaseSensitive(sys, "response_format");
                    cJSON_AddItemToObject(sys, "response_format", cJSON_DetachItemViaPointer(root, rf));
                }
            }
        }
        if (!st) st = encode_array(messages, opt, &b);
    }
    cJSON_Delete(root);
    return finish(&b, st, prompt, prompt_len);
}
