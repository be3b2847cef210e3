/* cpmtrow.c: recognising one line of a cPyMemTrace log (see cpmtrow.h). */
#include "cpmtrow.h"

#include <string.h>

static inline int
is_ws(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline const char *
skip_ws(const char *p, const char *e)
{
    while (p < e && is_ws((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* ws+: at least one, all of them; NULL if none. */
static inline const char *
ws1(const char *p, const char *e)
{
    if (p >= e || !is_ws((unsigned char)*p)) {
        return NULL;
    }
    return skip_ws(p + 1, e);
}

/* How many digits start at p. */
static inline size_t
digit_run(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && is_digit((unsigned char)*q)) {
        q++;
    }
    return (size_t)(q - p);
}

enum { SIGN_NONE, SIGN_MINUS, SIGN_BOTH };

/* An integer of 1 to 20 digits, with the sign the grammar allows there.
 * Returns the end, or NULL if there is none (or more than 20 digits, which
 * the next element of the grammar can never accept).  A value outside int64
 * sets *overflow. */
static const char *
number(const char *p, const char *e, int sign, int64_t *out, int *overflow)
{
    int neg = 0;
    if (p < e && ((*p == '-' && sign != SIGN_NONE) || (*p == '+' && sign == SIGN_BOTH))) {
        neg = *p == '-';
        p++;
    }
    size_t n = digit_run(p, e);
    if (n == 0 || n > 20) {
        return NULL;
    }
    uint64_t v = 0;
    int big = 0;
    size_t i = 0;
    for (; i < n && i < 19; i++) {      /* 19 digits always fit in 64 bits */
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');
        if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, d, &v)) {
            big = 1;
        }
    }
    if (big || v > (uint64_t)INT64_MAX) {
        *overflow = 1;
        *out = 0;
    }
    else {
        *out = neg ? -(int64_t)v : (int64_t)v;
    }
    return p + n;
}

/* What follows the row's '#': ws* -?D ws+ FUNCTION ws+ -?D ws+ [+-]?D ws* end. */
static int
parse_tail(const char *p, const char *e, pmt_cpmt_parsed *r, int *overflow)
{
    p = skip_ws(p, e);
    if (!(p = number(p, e, SIGN_MINUS, &r->line, overflow)) || !(p = ws1(p, e))) {
        return 0;
    }
    const char *f = p;
    while (p < e && !is_ws((unsigned char)*p)) {
        p++;
    }
    if (p == f) {
        return 0;
    }
    r->function = f;
    r->function_len = (size_t)(p - f);
    if (!(p = ws1(p, e))) {
        return 0;
    }
    if (!(p = number(p, e, SIGN_MINUS, &r->rss, overflow)) || !(p = ws1(p, e)) ||
        !(p = number(p, e, SIGN_BOTH, &r->d_rss, overflow))) {
        return 0;
    }
    return skip_ws(p, e) == e;
}

int
pmt_cpmt_parse_row(const char *s, size_t n, pmt_cpmt_parsed *r)
{
    const char *p = s, *e = s + n;
    if (n < 5) {
        return 0;
    }
    if (memcmp(p, "NEXT:", 5) == 0) {
        r->next = 1;
    }
    else if (memcmp(p, "PREV:", 5) == 0) {
        r->next = 0;
    }
    else {
        return 0;
    }
    int ovf = 0;
    if (!(p = ws1(p + 5, e)) || !(p = number(p, e, SIGN_NONE, &r->event, &ovf)) ||
        !(p = ws1(p, e)) || !(p = number(p, e, SIGN_BOTH, &r->d_event, &ovf)) ||
        !(p = ws1(p, e))) {
        return 0;
    }
    /* Clock: D or D.D */
    const char *c = p;
    size_t nd = digit_run(p, e);
    if (nd == 0 || nd > 20) {
        return 0;
    }
    p += nd;
    if (p < e && *p == '.') {
        nd = digit_run(p + 1, e);
        if (nd == 0 || nd > 20) {
            return 0;
        }
        p += 1 + nd;
    }
    r->clock = c;
    r->clock_len = (size_t)(p - c);
    if (!(p = ws1(p, e))) {
        return 0;
    }
    const char *w = p;
    while (p < e && ((*p >= 'A' && *p <= 'Z') || *p == '_')) {
        p++;
    }
    if (p == w) {
        return 0;
    }
    r->what = w;
    r->what_len = (size_t)(p - w);
    if (!(p = ws1(p, e))) {
        return 0;
    }
    /* FILE: up to the first '#' whose rest is a valid tail. */
    const char *fs = p;
    for (const char *q = memchr(p, '#', (size_t)(e - p)); q;
         q = memchr(q + 1, '#', (size_t)(e - q - 1))) {
        int tail_ovf = 0;
        if (parse_tail(q + 1, e, r, &tail_ovf)) {
            const char *fe = q;
            while (fe > fs && is_ws((unsigned char)fe[-1])) {
                fe--;
            }
            r->file = fs;
            r->file_len = (size_t)(fe - fs);
            r->overflow = ovf | tail_ovf;
            return 1;
        }
    }
    return 0;
}

int
pmt_cpmt_is_header(const char *s, size_t n)
{
    static const char *const names[] = {"Event", "dEvent", "Clock", "What", "File",
                                        "#line", "Function", "RSS", "dRSS"};
    enum { N_NAMES = sizeof(names) / sizeof(names[0]) };
    const char *p = skip_ws(s, s + n), *e = s + n;
    for (size_t i = 0; i < N_NAMES; i++) {
        size_t len = strlen(names[i]);
        if ((size_t)(e - p) < len || memcmp(p, names[i], len) != 0) {
            return 0;
        }
        p += len;
        if (i + 1 < N_NAMES && !(p = ws1(p, e))) {
            return 0;
        }
    }
    return skip_ws(p, e) == e;
}

int
pmt_cpmt_is_end(const char *s, size_t n)
{
    static const char prefix[] = "# END events=";
    size_t len = sizeof(prefix) - 1;
    if (n < len || memcmp(s, prefix, len) != 0) {
        return 0;
    }
    size_t nd = digit_run(s + len, s + n);
    return nd > 0 && len + nd < n && s[len + nd] == ' ';
}
