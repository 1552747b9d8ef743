/* JSON the way the official encoder sees it. It parses with Python's json.loads and writes with
 * json.dumps(ensure_ascii=False) and str.format, so three details decide whether a prompt matches byte for
 * byte: numbers keep their int / float nature (1 vs 1.0, big integers exact), strings are escaped as Python
 * escapes them, and a repeated key behaves like a dict assignment. cJSON does the parsing; these helpers
 * supply the rest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_internal.h"

void dsrt_chat_buf_add(dsrt_chat_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *p = realloc(b->p, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void dsrt_chat_buf_puts(dsrt_chat_buf *b, const char *s) { dsrt_chat_buf_add(b, s, strlen(s)); }

void dsrt_chat_buf_free(dsrt_chat_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- parsing: cJSON plus the source text of every number ------------------------------------------------ */

/* Collects number lexemes in document order. JSON is simple enough that strings are the only place where a
 * digit is not a number, so skipping string literals (with their escapes) is all the lexing needed. */
typedef struct {
    const char *text;
    size_t len, pos;
} lexeme_scan;

static int next_number(lexeme_scan *s, const char **start, size_t *n)
{
    while (s->pos < s->len) {
        char c = s->text[s->pos];
        if (c == '"') {
            s->pos++;
            while (s->pos < s->len && s->text[s->pos] != '"') s->pos += s->text[s->pos] == '\\' ? 2 : 1;
            s->pos++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t b = s->pos;
            while (s->pos < s->len && strchr("+-0123456789.eE", s->text[s->pos]) && s->text[s->pos]) s->pos++;
            *start = s->text + b;
            *n = s->pos - b;
            return 1;
        }
        s->pos++;
    }
    return 0;
}

static int attach_lexemes(cJSON *v, lexeme_scan *s)
{
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) {
            const char *p;
            size_t n;
            if (!next_number(s, &p, &n)) return -1;
            v->valuestring = cJSON_malloc(n + 1); /* freed by cJSON_Delete with the node */
            if (!v->valuestring) return -1;
            memcpy(v->valuestring, p, n);
            v->valuestring[n] = 0;
        }
        if (v->child && attach_lexemes(v->child, s)) return -1;
    }
    return 0;
}

dsrt_status dsrt_chat_json_parse(const char *text, size_t len, const char *what, cJSON **out)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: malformed JSON near byte %zu", what, off);
    }
    /* json.loads refuses anything after the value but whitespace */
    size_t off = (size_t)(end - text);
    while (off < len && (text[off] == ' ' || text[off] == '\t' || text[off] == '\n' || text[off] == '\r')) off++;
    if (off < len) {
        cJSON_Delete(root);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: extra data after the JSON value at byte %zu", what, off);
    }
    lexeme_scan s = {text, len, 0};
    if (attach_lexemes(root, &s)) {
        cJSON_Delete(root);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of memory reading JSON numbers", what);
    }
    *out = root;
    return DSRT_OK;
}

/* ---- Python's number printing ---------------------------------------------------------------------------- */

static int lexeme_is_int(const char *lex) { return !strpbrk(lex, ".eE"); }

/* repr(float): the shortest digits that read back as the same double, in fixed notation when the decimal
 * exponent is in [-4, 16), else as d.ddde+XX. */
static void python_float_repr(dsrt_chat_buf *b, double x)
{
    if (isinf(x)) {
        dsrt_chat_buf_puts(b, x < 0 ? "-Infinity" : "Infinity"); /* json.dumps spelling */
        return;
    }
    if (isnan(x)) {
        dsrt_chat_buf_puts(b, "NaN");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX: pull out sign, digits and exponent */
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* %.*e may pad; repr never shows trailing zeros */
    digits[nd] = 0;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    dsrt_chat_buf_puts(b, out);
}

static void python_number(dsrt_chat_buf *b, const cJSON *v)
{
    const char *lex = v->valuestring;
    if (!lex) { /* a number dsrt made itself: integers print as ints */
        char tmp[40];
        if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15)
            snprintf(tmp, sizeof tmp, "%.0f", v->valuedouble);
        else
            snprintf(tmp, sizeof tmp, "%.17g", v->valuedouble);
        dsrt_chat_buf_puts(b, tmp);
        return;
    }
    if (lexeme_is_int(lex)) {
        /* int(lexeme): exact digits; "-0" is 0 */
        if (strcmp(lex, "-0") == 0)
            dsrt_chat_buf_puts(b, "0");
        else
            dsrt_chat_buf_puts(b, lex);
        return;
    }
    python_float_repr(b, strtod(lex, NULL));
}

/* ---- writing -------------------------------------------------------------------------------------------- */

void dsrt_chat_json_dump_string(dsrt_chat_buf *b, const char *s, size_t n)
{
    dsrt_chat_buf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (esc) {
            dsrt_chat_buf_add(b, s + i - run, run);
            run = 0;
            dsrt_chat_buf_puts(b, esc);
        } else {
            run++;
        }
    }
    dsrt_chat_buf_add(b, s + n - run, run);
    dsrt_chat_buf_add(b, "\"", 1);
}

const cJSON *dsrt_chat_get(const cJSON *obj, const char *key)
{
    const cJSON *found = NULL;
    if (!cJSON_IsObject(obj)) return NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) found = c;
    return found;
}

void dsrt_chat_json_dump(dsrt_chat_buf *b, const cJSON *v)
{
    if (cJSON_IsNull(v)) {
        dsrt_chat_buf_puts(b, "null");
    } else if (cJSON_IsTrue(v)) {
        dsrt_chat_buf_puts(b, "true");
    } else if (cJSON_IsFalse(v)) {
        dsrt_chat_buf_puts(b, "false");
    } else if (cJSON_IsNumber(v)) {
        python_number(b, v);
    } else if (cJSON_IsString(v)) {
        dsrt_chat_json_dump_string(b, v->valuestring, strlen(v->valuestring));
    } else if (cJSON_IsArray(v)) {
        dsrt_chat_buf_puts(b, "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) dsrt_chat_buf_puts(b, ", ");
            dsrt_chat_json_dump(b, c);
        }
        dsrt_chat_buf_puts(b, "]");
    } else if (cJSON_IsObject(v)) {
        dsrt_chat_buf_puts(b, "{");
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            /* a key seen before was written at its first position, with its last value */
            int repeated = 0;
            for (const cJSON *p = v->child; p != c; p = p->next)
                if (strcmp(p->string, c->string) == 0) repeated = 1;
            if (repeated) continue;
            if (!first) dsrt_chat_buf_puts(b, ", ");
            first = 0;
            dsrt_chat_json_dump_string(b, c->string, strlen(c->string));
            dsrt_chat_buf_puts(b, ": ");
            dsrt_chat_json_dump(b, dsrt_chat_get(v, c->string));
        }
        dsrt_chat_buf_puts(b, "}");
    }
}

int dsrt_chat_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
    if (cJSON_IsTrue(v)) return 1;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0.0;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return 1;
}

dsrt_status dsrt_chat_append_str(dsrt_chat_buf *b, const cJSON *v, const char *where)
{
    if (!v || cJSON_IsNull(v)) {
        dsrt_chat_buf_puts(b, "None");
    } else if (cJSON_IsString(v)) {
        dsrt_chat_buf_puts(b, v->valuestring);
    } else if (cJSON_IsTrue(v)) {
        dsrt_chat_buf_puts(b, "True");
    } else if (cJSON_IsFalse(v)) {
        dsrt_chat_buf_puts(b, "False");
    } else if (cJSON_IsNumber(v)) {
        python_number(b, v);
    } else {
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "%s: expected a string, found %s (the official encoder would print a Python repr of it)",
                          where, cJSON_IsArray(v) ? "an array" : "an object");
    }
    return DSRT_OK;
}
