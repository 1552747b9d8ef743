/* Parsing generated text back into an assistant message: a C rendering of the official
 * parse_message_from_completion_text. Like the official parser it accepts only well-formed output (it
 * does not repair), and it rebuilds tool-call arguments the way the official parser does (string
 * parameters JSON-quoted, others inserted as written), so a round trip gives the original arguments text.
 * The two small regexes of the official parser run through PCRE2, with Python's \s spelled out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "chat_internal.h"
#include "dsrt/tokenizer.h" /* dsrt_utf8_valid */

#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"
#define THINK_START "<think>"
#define THINK_END "</think>"
#define DSML "｜DSML｜"

/* Python's \s for str patterns (str.isspace): ASCII whitespace, the separators \x1c-\x1f, and Unicode's. */
#define PY_SPACE "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]"
static const char NAME_RE[] = "^" PY_SPACE "*name=\"(.*?)\">\\n$";
static const char PARAM_RE[] = "^ name=\"(.*?)\" string=\"(true|false)\">(.*?)<$";

typedef struct {
    const char *text;
    size_t len;
} view;

/* _read_until_stop: the earliest of the stop strings from `index` (the first listed wins a tie). Returns
 * the index after the stop (or len), the content before it, and which stop matched (-1: none). */
static size_t read_until(view t, size_t index, const char *const *stops, int nstops, view *content, int *matched)
{
    size_t best = t.len;
    int which = -1;
    for (int i = 0; i < nstops; i++) {
        size_t sl = strlen(stops[i]);
        if (sl > t.len) continue;
        for (size_t p = index; p + sl <= t.len && p < best; p++)
            if (t.text[p] == stops[i][0] && memcmp(t.text + p, stops[i], sl) == 0) {
                best = p;
                which = i;
                break;
            }
    }
    *matched = which;
    if (which < 0) {
        content->text = t.text + index;
        content->len = t.len - index;
        return t.len;
    }
    content->text = t.text + index;
    content->len = best - index;
    return best + strlen(stops[which]);
}

static int view_eq(view v, const char *s) { return v.len == strlen(s) && memcmp(v.text, s, v.len) == 0; }

static int view_contains(view v, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= v.len; i++)
        if (memcmp(v.text + i, s, n) == 0) return 1;
    return 0;
}

static char *dup_view(view v)
{
    char *p = malloc(v.len + 1);
    if (p) {
        memcpy(p, v.text, v.len);
        p[v.len] = 0;
    }
    return p;
}

static dsrt_status fail(const char *rule, size_t at)
{
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "completion does not parse: %s (at byte %zu)", rule, at);
}

typedef struct {
    pcre2_code *name_re, *param_re;
    pcre2_match_data *md;
} regexes;

static dsrt_status compile(const char *pattern, pcre2_code **out)
{
    int err;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_DOTALL, &err, &off,
                         NULL);
    if (!*out) return dsrt_error(DSRT_CODE_INTERNAL, "chat parser regex does not compile at %zu", (size_t)off);
    return DSRT_OK;
}

/* re.findall(pattern, s) has exactly one match: with ^ and no MULTILINE the only candidate is at 0. */
static int match_once(const regexes *r, pcre2_code *re, view v, view *groups, int ngroups)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)v.text, v.len, 0, 0, r->md, NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    for (int g = 0; g < ngroups; g++) {
        groups[g].text = v.text + ov[2 * (g + 1)];
        groups[g].len = ov[2 * (g + 1) + 1] - ov[2 * (g + 1)];
    }
    return 1;
}

typedef struct {
    view name, value;
    int is_string;
} param;

/* decode_dsml_to_arguments: "{" + ", ".join(json(key) + ": " + (json(value) if string else value)) + "}" */
static char *build_arguments(const param *ps, size_t n)
{
    dsrt_chat_buf b = {0};
    dsrt_chat_buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) dsrt_chat_buf_puts(&b, ", ");
        dsrt_chat_json_dump_string(&b, ps[i].name.text, ps[i].name.len);
        dsrt_chat_buf_puts(&b, ": ");
        if (ps[i].is_string)
            dsrt_chat_json_dump_string(&b, ps[i].value.text, ps[i].value.len);
        else
            dsrt_chat_buf_add(&b, ps[i].value.text, ps[i].value.len);
    }
    dsrt_chat_buf_puts(&b, "}");
    if (b.oom) {
        dsrt_chat_buf_free(&b);
        return NULL;
    }
    return b.p;
}

static dsrt_status add_call(dsrt_chat_message *m, view name, const param *ps, size_t n)
{
    dsrt_chat_tool_call *nc = realloc(m->tool_calls, (m->n_tool_calls + 1) * sizeof *nc);
    if (!nc) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory parsing a completion");
    m->tool_calls = nc;
    dsrt_chat_tool_call *c = &m->tool_calls[m->n_tool_calls];
    c->name = dup_view(name);
    c->arguments = build_arguments(ps, n);
    m->n_tool_calls++;
    if (!c->name || !c->arguments) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory parsing a completion");
    return DSRT_OK;
}

/* parse_tool_calls: from just after "\n\n<｜DSML｜function_calls" */
static dsrt_status parse_tool_calls(const regexes *r, view t, size_t *index, int *stop_is_end,
                                    dsrt_chat_message *m)
{
    static const char *const invoke_or_end[] = {"<" DSML "invoke", "</" DSML "function_calls>"};
    static const char *const param_or_end[] = {"<" DSML "parameter", "</" DSML "invoke"};
    static const char *const param_close[] = {"/" DSML "parameter"};
    size_t i = *index;
    int stop = -1;
    *stop_is_end = 0;
    param *ps = NULL;
    size_t nps = 0, cap = 0;
    dsrt_status st = DSRT_OK;
    while (i < t.len) {
        view between;
        size_t at = i;
        i = read_until(t, i, invoke_or_end, 2, &between, &stop);
        if (!view_eq(between, ">\n")) {
            st = fail("Tool call format error: expected '>\\n' before the next invoke or the end of the calls", at);
            break;
        }
        if (stop == 1) {
            *stop_is_end = 1; /* the official loop leaves with the end tag as its stop token */
            break;
        }
        if (stop < 0) {
            st = fail("Missing special token", at);
            break;
        }
        view name_content, name[1];
        at = i;
        i = read_until(t, i, param_or_end, 2, &name_content, &stop);
        if (!match_once(r, r->name_re, name_content, name, 1)) {
            st = fail("Tool name format error: expected ' name=\"...\">\\n'", at);
            break;
        }
        nps = 0;
        while (stop == 0) {
            view pc, g[3];
            at = i;
            int pstop;
            i = read_until(t, i, param_close, 1, &pc, &pstop);
            if (!match_once(r, r->param_re, pc, g, 3)) {
                st = fail("Parameter format error: expected ' name=\"...\" string=\"true|false\">...<'", at);
                break;
            }
            for (size_t k = 0; k < nps; k++)
                if (ps[k].name.len == g[0].len && memcmp(ps[k].name.text, g[0].text, g[0].len) == 0) {
                    st = fail("Duplicate parameter name", at);
                    break;
                }
            if (st) break;
            if (nps == cap) {
                cap = cap ? cap * 2 : 8;
                param *np = realloc(ps, cap * sizeof *np);
                if (!np) {
                    st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory parsing a completion");
                    break;
                }
                ps = np;
            }
            ps[nps].name = g[0];
            ps[nps].is_string = g[1].len == 4; /* "true" */
            ps[nps].value = g[2];
            nps++;
            view after;
            at = i;
            i = read_until(t, i, param_or_end, 2, &after, &stop);
            if (!view_eq(after, ">\n")) {
                st = fail("Parameter format error: expected '>\\n' after a parameter", at);
                break;
            }
        }
        if (st) break;
        st = add_call(m, name[0], ps, nps);
        if (st) break;
        stop = -1;
    }
    free(ps);
    *index = i;
    return st;
}

static dsrt_status parse_text(const regexes *r, view t, dsrt_chat_mode mode, dsrt_chat_message *m)
{
    static const char *const think_stops[] = {THINK_END, "\n\n<" DSML "function_calls"};
    static const char *const summary_stops[] = {EOS, "\n\n<" DSML "function_calls"};
    static const char *const eos_stop[] = {EOS};
    size_t i = 0;
    int stop;
    view reasoning = {t.text, 0}, summary;
    if (mode == DSRT_CHAT_MODE_THINKING) {
        i = read_until(t, i, think_stops, 2, &reasoning, &stop);
        if (stop != 0) return fail("Invalid thinking format: no </think> before the answer or tool calls", i);
    }
    size_t at = i;
    i = read_until(t, i, summary_stops, 2, &summary, &stop);
    int tool_calling = stop == 1;
    if (!tool_calling && stop != 0) return fail("Invalid summary format: no <｜end▁of▁sentence｜>", at);
    int final_is_eos = stop == 0;
    if (tool_calling) {
        int end_tag = 0;
        DSRT_TRY(parse_tool_calls(r, t, &i, &end_tag, m));
        view rest;
        at = i;
        i = read_until(t, i, eos_stop, 1, &rest, &stop);
        if (rest.len) return fail("Unexpected content after tool calls", at);
        final_is_eos = stop == 0;
        /* with no EOS found, the stop token is None, which the final check accepts */
        if (stop < 0) final_is_eos = 1;
    }
    if (i != t.len || !final_is_eos) return fail("Unexpected content at end", i);
    static const char *const specials[] = {BOS, EOS, THINK_START, THINK_END, DSML};
    for (int k = 0; k < 5; k++)
        if (view_contains(summary, specials[k]) || view_contains(reasoning, specials[k]))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "completion does not parse: Unexpected special token in content (%s)", specials[k]);
    m->content = dup_view(summary);
    m->reasoning_content = dup_view(reasoning);
    if (!m->content || !m->reasoning_content)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory parsing a completion");
    return DSRT_OK;
}

dsrt_status dsrt_chat_parse(const char *text, size_t len, dsrt_chat_mode mode, dsrt_chat_message *out)
{
    memset(out, 0, sizeof *out);
    size_t bad;
    if (!dsrt_utf8_valid(text, len, &bad))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "completion is not valid UTF-8 (byte offset %zu)", bad);
    regexes r = {0};
    dsrt_status st = compile(NAME_RE, &r.name_re);
    if (!st) st = compile(PARAM_RE, &r.param_re);
    if (!st) {
        r.md = pcre2_match_data_create(4, NULL);
        if (!r.md) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory parsing a completion");
    }
    if (!st) st = parse_text(&r, (view){text, len}, mode, out);
    pcre2_match_data_free(r.md);
    pcre2_code_free(r.name_re);
    pcre2_code_free(r.param_re);
    if (st) dsrt_chat_message_free(out);
    return st;
}

void dsrt_chat_message_free(dsrt_chat_message *m)
{
    if (!m) return;
    free(m->content);
    free(m->reasoning_content);
    for (size_t i = 0; i < m->n_tool_calls; i++) {
        free(m->tool_calls[i].name);
        free(m->tool_calls[i].arguments);
    }
    free(m->tool_calls);
    memset(m, 0, sizeof *m);
}

dsrt_status dsrt_chat_message_to_json(const dsrt_chat_message *m, char **json, size_t *len)
{
    *json = NULL;
    dsrt_chat_buf b = {0};
    const char *content = m->content ? m->content : "", *reasoning = m->reasoning_content ? m->reasoning_content : "";
    dsrt_chat_buf_puts(&b, "{\"role\": \"assistant\", \"content\": ");
    dsrt_chat_json_dump_string(&b, content, strlen(content));
    dsrt_chat_buf_puts(&b, ", \"reasoning_content\": ");
    dsrt_chat_json_dump_string(&b, reasoning, strlen(reasoning));
    dsrt_chat_buf_puts(&b, ", \"tool_calls\": [");
    for (size_t i = 0; i < m->n_tool_calls; i++) {
        if (i) dsrt_chat_buf_puts(&b, ", ");
        dsrt_chat_buf_puts(&b, "{\"type\": \"function\", \"function\": {\"name\": ");
        dsrt_chat_json_dump_string(&b, m->tool_calls[i].name, strlen(m->tool_calls[i].name));
        dsrt_chat_buf_puts(&b, ", \"arguments\": ");
        dsrt_chat_json_dump_string(&b, m->tool_calls[i].arguments, strlen(m->tool_calls[i].arguments));
        dsrt_chat_buf_puts(&b, "}}");
    }
    dsrt_chat_buf_puts(&b, "]}");
    if (b.oom) {
        dsrt_chat_buf_free(&b);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory writing a message");
    }
    *json = b.p;
    if (len) *len = b.n;
    return DSRT_OK;
}
