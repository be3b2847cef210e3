/* cpmtfmt_ref.h: test-only reference for the cPyMemTrace row formatter.
 *
 * The row formatter of src/core/cpmtlog.c as it was before the fast one of
 * src/core/cpmtfmt.c (commit b668a83, without its caches, which the tests of
 * that time showed never change the text): one plain function per field,
 * easy to check against the layout in cpmtlog.h.  test_cpmtfmt.c and
 * fuzz/fuzz_cpmtfmt.c compare the fast formatter with it byte for byte.
 *
 * One difference on purpose: a clock of INT64_MIN ns, undefined behaviour
 * there (-ns), is written here as the fast formatter writes it
 * ("-9223372036.854775").
 */
#ifndef PMT_CPMTFMT_REF_H
#define PMT_CPMTFMT_REF_H

#include <stdint.h>
#include <string.h>

#include "cpmtlog.h"

static char *
ref_spaces(char *p, int n)
{
    while (n-- > 0) {
        *p++ = ' ';
    }
    return p;
}

/* Decimal (with '-' if negative, '+' if plus and not negative), right-aligned
 * in width, left-aligned in -width. */
static char *
ref_int(char *p, int64_t v, int width, int plus)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int len = n + (v < 0 || plus);
    if (width > len) {
        p = ref_spaces(p, width - len);
    }
    if (v < 0) {
        *p++ = '-';
    }
    else if (plus) {
        *p++ = '+';
    }
    while (n) {
        *p++ = tmp[--n];
    }
    return -width > len ? ref_spaces(p, -width - len) : p;
}

static char *
ref_seconds(char *p, int64_t ns)
{
    uint64_t u = (uint64_t)ns;
    if (ns < 0) {
        *p++ = '-';
        u = (uint64_t)0 - u;
    }
    uint64_t us = u / 1000;
    p = ref_int(p, (int64_t)(us / 1000000), 0, 0);
    *p++ = '.';
    uint64_t f = us % 1000000;
    for (int i = 5; i >= 0; i--) {
        p[i] = (char)('0' + f % 10);
        f /= 10;
    }
    return p + 6;
}

/* A name with bytes below min (and DEL) replaced by '_'; "?" if empty. */
static char *
ref_clean(char *p, const char *s, size_t n, unsigned char min)
{
    if (s == NULL || n == 0) {
        *p++ = '?';
        return p;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        *p++ = (c < min || c == 0x7f) ? '_' : (char)c;
    }
    return p;
}

static size_t
ref_format_row(char *out, const pmt_cpmt_row *row)
{
    static const char *const what[] = {"CALL", "EXCEPTION", "LINE", "RETURN", "C_CALL",
                                       "C_EXCEPTION", "C_RETURN", "OPCODE"};
    char *p = out;
    memcpy(p, row->next ? "NEXT: " : "PREV: ", 6);
    p += 6;
    p = ref_int(p, row->event, -5, 0);
    *p++ = ' ';
    p = ref_int(p, row->d_event, -7, 1);
    *p++ = ' ';
    char *start = p;
    p = ref_seconds(p, row->clock_ns);
    p = ref_spaces(p, 8 - (int)(p - start));
    *p++ = ' ';
    const char *w = row->what >= 0 && row->what < 8 ? what[row->what] : "?";
    start = p;
    p = ref_clean(p, w, strlen(w), 0);
    p = ref_spaces(p, 8 - (int)(p - start));
    *p++ = ' ';
    /* File: the basename, its last PMT_CPMT_NAME_MAX bytes, control bytes replaced */
    const char *f = row->file;
    size_t n = f ? row->file_len : 0;
    size_t k = n;
    while (k > 0 && f[k - 1] != '/') {
        k--;
    }
    if (n) {
        f += k;
        n -= k;
    }
    if (n > PMT_CPMT_NAME_MAX) {
        f += n - PMT_CPMT_NAME_MAX;
        n = PMT_CPMT_NAME_MAX;
    }
    p = ref_clean(p, f, n, ' ');
    *p++ = ' ';
    *p++ = '#';
    p = ref_int(p, row->line, 4, 0);
    *p++ = ' ';
    /* Function: its first PMT_CPMT_NAME_MAX bytes, whitespace replaced, padded to 13 */
    n = row->function ? row->function_len : 0;
    start = p;
    p = ref_clean(p, row->function, n > PMT_CPMT_NAME_MAX ? PMT_CPMT_NAME_MAX : n, ' ' + 1);
    p = ref_spaces(p, 13 - (int)(p - start));
    *p++ = ' ';
    p = ref_int(p, row->rss, 8, 0);
    *p++ = ' ';
    p = ref_int(p, row->d_rss, 12, 0);
    *p++ = '\n';
    return (size_t)(p - out);
}

#endif /* PMT_CPMTFMT_REF_H */
