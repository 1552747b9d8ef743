/* DeepSeek-V3.2 chat format: prompts byte for byte against the official encoder's output for the project's
 * own conversations (tools/reference/make_chat_golden.py), every assistant turn parsed back, the official
 * encoder's refusals, and the parser's and encoder's error reports. */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/chat.h"
#include "testutil.h"

#define CHAT_DIR DSRT_SOURCE_DIR "/tests/data/chat/"

/* cJSON is a private dependency of libdsrt, so this executable cannot link it by name; libdsrt has already
 * loaded it into the process, so its two entry points are looked up there. */
static cJSON *json_parse(const char *text, size_t len)
{
    cJSON *(*parse)(const char *, size_t) = (cJSON * (*)(const char *, size_t)) dlsym(RTLD_DEFAULT, "cJSON_ParseWithLength");
    ck_assert_msg(parse != NULL, "cJSON_ParseWithLength not found in the process");
    return parse(text, len);
}

static void json_free(cJSON *j)
{
    void (*del)(cJSON *) = (void (*)(cJSON *))dlsym(RTLD_DEFAULT, "cJSON_Delete");
    ck_assert_msg(del != NULL, "cJSON_Delete not found in the process");
    del(j);
}

static int jtrue(const cJSON *v) { return v && (v->type & 0xFF) == cJSON_True; }
static int jfalse(const cJSON *v) { return v && (v->type & 0xFF) == cJSON_False; }

static const cJSON *jget(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) return c;
    return NULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static cJSON *load_json(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    cJSON *j = json_parse(text, len);
    free(text);
    ck_assert_msg(j != NULL, "%s does not parse", path);
    return j;
}

static void path_of(char *buf, size_t n, const char *name, const char *suffix)
{
    snprintf(buf, n, CHAT_DIR "expected/%s%s", name, suffix);
}

/* Where two byte strings first differ, for a readable failure. */
static void report_diff(const char *name, const char *got, size_t gl, const char *want, size_t wl)
{
    size_t i = 0;
    while (i < gl && i < wl && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "%s: first difference at byte %zu (got %zu bytes, want %zu)\n  got:  %.*s\n  want: %.*s\n", name, i,
            gl, wl, (int)((gl - from) < 100 ? gl - from : 100), got + from, (int)((wl - from) < 100 ? wl - from : 100),
            want + from);
}

static void options_for(const cJSON *c, dsrt_chat_options *opt)
{
    dsrt_chat_options_init(opt);
    opt->mode = jtrue(jget(c, "thinking")) ? DSRT_CHAT_MODE_THINKING : DSRT_CHAT_MODE_CHAT;
    if (jfalse(jget(c, "drop_thinking"))) opt->drop_thinking = 0;
}

/* ---- prompts ------------------------------------------------------------------------------------------ */

START_TEST(test_prompts_match_official_encoder)
{
    cJSON *conv = load_json(CHAT_DIR "conversations.json");
    int n = 0, bad = 0;
    for (const cJSON *c = jget(conv, "cases")->child; c; c = c->next, n++) {
        const char *name = jget(c, "name")->valuestring;
        char p[512];
        size_t rlen, wlen;
        path_of(p, sizeof p, name, ".request.json");
        char *req = read_file(p, &rlen);
        ck_assert_msg(req != NULL, "missing %s (run tools/reference/make_chat_golden.py)", p);
        path_of(p, sizeof p, name, ".txt");
        char *want = read_file(p, &wlen);
        ck_assert_msg(want != NULL, "missing %s", p);
        dsrt_chat_options opt;
        options_for(c, &opt);
        char *got = NULL;
        size_t glen = 0;
        dsrt_status st = dsrt_chat_encode_request(req, rlen, &opt, &got, &glen);
        ck_assert_msg(st == DSRT_OK, "%s: %s", name, dsrt_status_message(st));
        if (glen != wlen || memcmp(got, want, wlen) != 0) {
            report_diff(name, got, glen, want, wlen);
            bad++;
        }
        free(got);
        free(want);
        free(req);
    }
    ck_assert_int_ge(n, 15);
    ck_assert_msg(bad == 0, "%d of %d prompts differ from the official encoder's", bad, n);
    json_free(conv);
}
END_TEST

START_TEST(test_official_refusals_fail_too)
{
    cJSON *conv = load_json(CHAT_DIR "conversations.json");
    int n = 0;
    for (const cJSON *c = jget(conv, "errors")->child; c; c = c->next, n++) {
        const char *name = jget(c, "name")->valuestring;
        char p[512];
        size_t rlen;
        path_of(p, sizeof p, name, ".error");
        char *why = read_file(p, NULL);
        ck_assert_msg(why != NULL, "missing %s", p);
        path_of(p, sizeof p, name, ".request.json");
        char *req = read_file(p, &rlen);
        ck_assert_ptr_nonnull(req);
        dsrt_chat_options opt;
        options_for(c, &opt);
        char *got = NULL;
        dsrt_status st = dsrt_chat_encode_request(req, rlen, &opt, &got, NULL);
        ck_assert_msg(st != DSRT_OK, "%s: dsrt encoded what the official encoder refuses (%s)", name, why);
        ck_assert_int_eq(dsrt_status_code(st), DSRT_CODE_INVALID_ARGUMENT);
        ck_assert_ptr_null(got);
        dsrt_status_free(st);
        free(req);
        free(why);
    }
    ck_assert_int_ge(n, 5);
    json_free(conv);
}
END_TEST

/* ---- assistant turns: encoding with context, parsing back ---------------------------------------------- */

START_TEST(test_turns_encode_and_parse_back)
{
    cJSON *conv = load_json(CHAT_DIR "conversations.json");
    int turns = 0;
    for (const cJSON *c = jget(conv, "cases")->child; c; c = c->next) {
        const char *name = jget(c, "name")->valuestring;
        char p[512];
        path_of(p, sizeof p, name, ".turns.json");
        cJSON *tj = load_json(p);
        dsrt_chat_options opt;
        options_for(c, &opt);
        for (const cJSON *t = jget(tj, "turns")->child; t; t = t->next) {
            int index = (int)jget(t, "index")->valuedouble;
            const char *msgs = jget(t, "messages_json")->valuestring;
            const cJSON *completion = jget(t, "completion");
            opt.n_context = (size_t)index;
            char *got = NULL;
            size_t glen = 0;
            dsrt_status st = dsrt_chat_encode_messages(msgs, strlen(msgs), &opt, &got, &glen);
            if (!completion) { /* the official encoder refused this turn */
                ck_assert_msg(st != DSRT_OK, "%s turn %d: should fail as the official encoder does", name, index);
                dsrt_status_free(st);
                continue;
            }
            ck_assert_msg(st == DSRT_OK, "%s turn %d: %s", name, index, dsrt_status_message(st));
            size_t clen = strlen(completion->valuestring);
            if (glen != clen || memcmp(got, completion->valuestring, clen) != 0)
                report_diff(name, got, glen, completion->valuestring, clen);
            ck_assert_msg(glen == clen && memcmp(got, completion->valuestring, clen) == 0,
                          "%s turn %d: encoding with context differs", name, index);
            free(got);

            dsrt_chat_message m;
            st = dsrt_chat_parse(completion->valuestring, clen, opt.mode, &m);
            const cJSON *pj = jget(t, "parsed_json");
            if (!pj) {
                ck_assert_msg(st != DSRT_OK, "%s turn %d: parses but the official parser fails", name, index);
                dsrt_status_free(st);
                continue;
            }
            ck_assert_msg(st == DSRT_OK, "%s turn %d: %s", name, index, dsrt_status_message(st));
            /* the same message as the official parser gives, serialized the same way */
            char *js = NULL;
            size_t jl = 0;
            ck_ok(dsrt_chat_message_to_json(&m, &js, &jl));
            ck_assert_msg(jl == strlen(pj->valuestring) && memcmp(js, pj->valuestring, jl) == 0,
                          "%s turn %d: parsed\n  %s\nofficial\n  %s", name, index, js, pj->valuestring);
            free(js);
            /* and the original message back */
            const cJSON *want = jget(t, "expected");
            ck_assert_str_eq(m.content, jget(want, "content")->valuestring);
            ck_assert_str_eq(m.reasoning_content, jget(want, "reasoning_content")->valuestring);
            size_t k = 0;
            for (const cJSON *tc = jget(want, "tool_calls")->child; tc; tc = tc->next, k++) {
                ck_assert_uint_lt(k, m.n_tool_calls);
                ck_assert_str_eq(m.tool_calls[k].name, jget(tc, "name")->valuestring);
                ck_assert_str_eq(m.tool_calls[k].arguments, jget(tc, "arguments")->valuestring);
            }
            ck_assert_uint_eq(k, m.n_tool_calls);
            dsrt_chat_message_free(&m);
            turns++;
        }
        json_free(tj);
    }
    ck_assert_int_ge(turns, 20);
    json_free(conv);
}
END_TEST

/* ---- parser rules --------------------------------------------------------------------------------------- */

#define EOS "<｜end▁of▁sentence｜>"
#define CALLS "\n\n<｜DSML｜function_calls>\n"
#define CALLS_END "</｜DSML｜function_calls>"

static void parse_fails(const char *text, dsrt_chat_mode mode, const char *needle)
{
    dsrt_chat_message m;
    ck_fails(dsrt_chat_parse(text, strlen(text), mode, &m), DSRT_CODE_INVALID_ARGUMENT, needle);
    ck_assert_ptr_null(m.content);
}

START_TEST(test_parse_rules)
{
    dsrt_chat_message m;
    /* content only, with and without the final EOS (the official parser accepts a stream cut at EOS) */
    ck_ok(dsrt_chat_parse("Hello" EOS, strlen("Hello" EOS), DSRT_CHAT_MODE_CHAT, &m));
    ck_assert_str_eq(m.content, "Hello");
    ck_assert_str_eq(m.reasoning_content, "");
    ck_assert_uint_eq(m.n_tool_calls, 0);
    dsrt_chat_message_free(&m);
    const char *think = "plan</think>answer" EOS;
    ck_ok(dsrt_chat_parse(think, strlen(think), DSRT_CHAT_MODE_THINKING, &m));
    ck_assert_str_eq(m.reasoning_content, "plan");
    ck_assert_str_eq(m.content, "answer");
    dsrt_chat_message_free(&m);
    /* tool calls with string and JSON parameters; the stream may end without EOS after the calls */
    const char *calls = "r</think>" CALLS "<｜DSML｜invoke name=\"f\">\n"
                        "<｜DSML｜parameter name=\"q\" string=\"true\">a \"quoted\"\nline</｜DSML｜parameter>\n"
                        "<｜DSML｜parameter name=\"n\" string=\"false\">[1, {\"x\": 2}]</｜DSML｜parameter>\n"
                        "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"g\">\n\n</｜DSML｜invoke>\n" CALLS_END;
    ck_ok(dsrt_chat_parse(calls, strlen(calls), DSRT_CHAT_MODE_THINKING, &m));
    ck_assert_uint_eq(m.n_tool_calls, 2);
    ck_assert_str_eq(m.tool_calls[0].name, "f");
    ck_assert_str_eq(m.tool_calls[0].arguments, "{\"q\": \"a \\\"quoted\\\"\\nline\", \"n\": [1, {\"x\": 2}]}");
    ck_assert_str_eq(m.tool_calls[1].name, "g");
    ck_assert_str_eq(m.tool_calls[1].arguments, "{}");
    char *js;
    ck_ok(dsrt_chat_message_to_json(&m, &js, NULL));
    ck_assert_str_eq(js, "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"r\", \"tool_calls\": "
                         "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"q\\\": "
                         "\\\"a \\\\\\\"quoted\\\\\\\"\\\\nline\\\", \\\"n\\\": [1, {\\\"x\\\": 2}]}\"}}, {\"type\": "
                         "\"function\", \"function\": {\"name\": \"g\", \"arguments\": \"{}\"}}]}");
    free(js);
    dsrt_chat_message_free(&m);

    parse_fails("no end of thinking" EOS, DSRT_CHAT_MODE_THINKING, "Invalid thinking format");
    parse_fails("r" CALLS CALLS_END EOS, DSRT_CHAT_MODE_THINKING, "Invalid thinking format");
    parse_fails("no eos", DSRT_CHAT_MODE_CHAT, "Invalid summary format");
    parse_fails("a" EOS "b", DSRT_CHAT_MODE_CHAT, "Unexpected content at end");
    parse_fails("a<think>b" EOS, DSRT_CHAT_MODE_CHAT, "Unexpected special token in content");
    parse_fails("x" CALLS CALLS_END "tail" EOS, DSRT_CHAT_MODE_CHAT, "Unexpected content after tool calls");
    parse_fails("x" CALLS "junk<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n" CALLS_END EOS, DSRT_CHAT_MODE_CHAT,
                "Tool call format error");
    parse_fails("x" CALLS "<｜DSML｜invoke nam=\"f\">\n</｜DSML｜invoke>\n" CALLS_END EOS, DSRT_CHAT_MODE_CHAT,
                "Tool name format error");
    parse_fails("x" CALLS "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"yes\">1</｜DSML｜parameter>\n"
                "</｜DSML｜invoke>\n" CALLS_END EOS,
                DSRT_CHAT_MODE_CHAT, "Parameter format error");
    parse_fails("x" CALLS "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>\n"
                "<｜DSML｜parameter name=\"a\" string=\"true\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n" CALLS_END EOS,
                DSRT_CHAT_MODE_CHAT, "Duplicate parameter name");
    parse_fails("x" CALLS, DSRT_CHAT_MODE_CHAT, "Missing special token");
    /* like the official parser, a stream cut inside an invoke still yields the call seen so far */
    const char *cut = "x" CALLS "<｜DSML｜invoke name=\"f\">\n";
    ck_ok(dsrt_chat_parse(cut, strlen(cut), DSRT_CHAT_MODE_CHAT, &m));
    ck_assert_uint_eq(m.n_tool_calls, 1);
    ck_assert_str_eq(m.tool_calls[0].arguments, "{}");
    dsrt_chat_message_free(&m);
    ck_fails(dsrt_chat_parse("\xff" EOS, strlen("\xff" EOS), DSRT_CHAT_MODE_CHAT, &m), DSRT_CODE_INVALID_ARGUMENT,
             "byte offset 0");
}
END_TEST

/* ---- encoder options and input errors -------------------------------------------------------------------- */

static char *encode_req(const char *req, const dsrt_chat_options *opt)
{
    char *out = NULL;
    ck_ok(dsrt_chat_encode_request(req, strlen(req), opt, &out, NULL));
    return out;
}

START_TEST(test_encoder_options_and_errors)
{
    dsrt_chat_options opt;
    dsrt_chat_options_init(&opt);
    ck_assert_int_eq(opt.mode, DSRT_CHAT_MODE_CHAT);
    ck_assert_int_eq(opt.drop_thinking, 1);
    ck_assert_int_eq(opt.add_bos, 1);
    const char *req = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}";
    char *p = encode_req(req, &opt);
    ck_assert_str_eq(p, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>");
    free(p);
    opt.mode = DSRT_CHAT_MODE_THINKING;
    opt.add_bos = 0;
    p = encode_req(req, &opt);
    ck_assert_str_eq(p, "<｜User｜>Hi<｜Assistant｜><think>");
    free(p);
    /* request-level tools without a system message: a system message is inserted for them */
    dsrt_chat_options_init(&opt);
    p = encode_req("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}], \"messages\": [{\"role\": "
                   "\"user\", \"content\": \"Hi\"}]}",
                   &opt);
    ck_assert_msg(strncmp(p, "<｜begin▁of▁sentence｜>\n\n## Tools\n\n", strlen("<｜begin▁of▁sentence｜>\n\n## Tools\n\n")) == 0,
                  "got %s", p);
    ck_assert_ptr_nonnull(strstr(p, "<functions>\n{\"name\": \"f\"}\n</functions>\n<｜User｜>Hi"));
    free(p);
    /* n_context: only the messages after the context are rendered, without BOS */
    const char *msgs = "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]";
    opt.n_context = 1;
    ck_ok(dsrt_chat_encode_messages(msgs, strlen(msgs), &opt, &p, NULL));
    ck_assert_str_eq(p, "Yo<｜end▁of▁sentence｜>");
    free(p);
    opt.n_context = 3;
    ck_fails(dsrt_chat_encode_messages(msgs, strlen(msgs), &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "n_context 3 is more than the 2 messages");
    dsrt_chat_options_init(&opt);

    ck_fails(dsrt_chat_encode_request("{\"messages\": [", 14, &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "request: malformed JSON");
    ck_fails(dsrt_chat_encode_request("{\"messages\": []} x", 19, &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "extra data");
    ck_fails(dsrt_chat_encode_request("{\"messages\": {}}", 16, &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "\"messages\" array");
    const char *bad_tools = "{\"messages\": [{\"role\": \"system\", \"tools\": [{\"name\": \"f\"}]}]}";
    ck_fails(dsrt_chat_encode_request(bad_tools, strlen(bad_tools), &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "messages[0].tools[0]: no \"function\"");
    const char *obj_args = "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                           "\"arguments\": {\"a\": 1}}}]}]}";
    ck_fails(dsrt_chat_encode_request(obj_args, strlen(obj_args), &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "arguments: expected a JSON string");
    const char *list_content = "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"x\"}]}]}";
    ck_fails(dsrt_chat_encode_request(list_content, strlen(list_content), &opt, &p, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "messages[0].content: expected a string, found an array");
    ck_assert_ptr_null(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("chat");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_prompts_match_official_encoder);
    tcase_add_test(tc, test_official_refusals_fail_too);
    tcase_add_test(tc, test_turns_encode_and_parse_back);
    tcase_add_test(tc, test_parse_rules);
    tcase_add_test(tc, test_encoder_options_and_errors);
    suite_add_tcase(s, tc);
    return dsrt_run_suite(s);
}
