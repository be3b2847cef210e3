/* cpmtlog.c: the text of a cPyMemTrace log (see cpmtlog.h). */
#define _GNU_SOURCE     /* memrchr */
#include "cpmtlog.h"

#include <errno.h>
#include <string.h>

const char pmt_cpmt_header[] =
    "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS";

static const char *const what_names[] = {
    "CALL", "EXCEPTION", "LINE", "RETURN", "C_CALL", "C_EXCEPTION", "C_RETURN", "OPCODE",
};

/* The What field: the name padded to 8, and its length. */
static const struct {
    char txt[16];
    int len;
} what_padded[] = {
    {"CALL            ", 8},  {"EXCEPTION       ", 9}, {"LINE            ", 8},
    {"RETURN          ", 8},  {"C_CALL          ", 8}, {"C_EXCEPTION     ", 11},
    {"C_RETURN        ", 8},  {"OPCODE          ", 8},
};

const char *
pmt_cpmt_what_name(int what)
{
    if (what < 0 || what >= (int)(sizeof(what_names) / sizeof(what_names[0]))) {
        return "?";
    }
    return what_names[what];
}

/* ---- a tiny formatter over a caller's buffer ---------------------------- */

static char *
put_bytes(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static const char spaces16[16] = "                ";

/* n spaces.  Padding in a row is short: up to 16 are one fixed-size move
 * (inlined, no call), written whole and counted by n. */
static char *
put_spaces(char *p, int n)
{
    if (n <= 0) {
        return p;
    }
    if (n <= 16) {
        memcpy(p, spaces16, 16);
    }
    else {
        memset(p, ' ', (size_t)n);
    }
    return p + n;
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int
count_digits(uint64_t u)
{
    int n = 1;
    while (u >= 10000) {
        u /= 10000;
        n += 4;
    }
    if (u >= 1000) {
        return n + 3;
    }
    if (u >= 100) {
        return n + 2;
    }
    return u >= 10 ? n + 1 : n;
}

/* Write the n decimal digits of u ending just before end. */
static void
write_digits(char *end, uint64_t u, int n)
{
    if (u <= UINT32_MAX) {     /* 32-bit arithmetic: shorter dependency chain */
        uint32_t v = (uint32_t)u;
        while (n >= 2) {
            unsigned k = (v % 100) * 2;
            v /= 100;
            *--end = digit_pairs[k + 1];
            *--end = digit_pairs[k];
            n -= 2;
        }
        if (n) {
            *--end = (char)('0' + v);
        }
        return;
    }
    while (n >= 2) {
        unsigned k = (unsigned)(u % 100) * 2;
        u /= 100;
        *--end = digit_pairs[k + 1];
        *--end = digit_pairs[k];
        n -= 2;
    }
    if (n) {
        *--end = (char)('0' + u);
    }
}

/* Decimal integer (with '-' if negative, '+' if plus and not negative),
 * right-aligned in width (left-aligned if width < 0). */
static char *
put_int_signed(char *p, int64_t v, int width, int plus)
{
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int nd = count_digits(u);
    int len = nd + (v < 0 || plus);
    if (width > len) {
        p = put_spaces(p, width - len);
    }
    if (v < 0) {
        *p++ = '-';
    }
    else if (plus) {
        *p++ = '+';
    }
    write_digits(p + nd, u, nd);
    p += nd;
    if (-width > len) {
        p = put_spaces(p, -width - len);
    }
    return p;
}

static char *
put_int(char *p, int64_t v, int width)
{
    return put_int_signed(p, v, width, 0);
}

/* put_int_signed through a one-entry cache of the text. */
static char *
put_int_memo(char *p, pmt_cpmt_memo *m, int64_t v, int width, int plus)
{
    if (m == NULL) {
        return put_int_signed(p, v, width, plus);
    }
    if (m->len == 0 || m->v != v) {
        char *e = put_int_signed(m->txt, v, width, plus);
        m->len = (int)(e - m->txt);
        m->v = v;
    }
    memcpy(p, m->txt, sizeof m->txt);   /* fixed size: one wide move; only len counts */
    return p + m->len;
}

/* An event number left-aligned in 5: consecutive numbers are counted up in
 * the cached text instead of being converted again. */
static char *
put_event(char *p, pmt_cpmt_memo *m, int64_t v)
{
    if (m == NULL || v < 0) {
        return put_int(p, v, -5);
    }
    if (m->len > 0 && m->v < INT64_MAX && v == m->v + 1) {
        int i = m->len - 1;
        while (i >= 0 && m->txt[i] == '9') {
            m->txt[i--] = '0';
        }
        if (i >= 0) {
            m->txt[i]++;
        }
        else {
            m->len = 0;     /* 999 -> 1000: one more digit */
        }
    }
    else if (m->len > 0 && v != m->v) {
        m->len = 0;
    }
    if (m->len == 0) {
        m->len = (int)(put_int(m->txt, v, 0) - m->txt);
    }
    m->v = v;
    memcpy(p, m->txt, sizeof m->txt);
    p += m->len;
    return put_spaces(p, 5 - m->len);
}

/* Nanoseconds as seconds with 6 decimals (truncated to the microsecond). */
static char *
put_seconds(char *p, int64_t ns, pmt_cpmt_memo *secs)
{
    if (ns < 0) {
        *p++ = '-';
        ns = -ns;
    }
    int64_t us = ns / 1000;
    p = put_int_memo(p, secs, us / 1000000, 0, 0);
    *p++ = '.';
    write_digits(p + 6, (uint64_t)(us % 1000000), 6);
    return p + 6;
}

/* Does s hold a byte below min (or DEL)?  Written as a reduction so the
 * compiler can vectorise it. */
static int
has_byte_below(const char *s, size_t n, unsigned char min)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bad |= (unsigned)(c < min) | (unsigned)(c == 0x7f);
    }
    return bad != 0;
}

/* A name copied with bytes below min (and DEL) replaced by '_'; "?" if empty. */
static char *
put_clean(char *p, const char *s, size_t n, unsigned char min)
{
    if (s == NULL || n == 0) {
        *p++ = '?';
        return p;
    }
    memcpy(p, s, n);
    if (has_byte_below(s, n, min)) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < min || c == 0x7f) {
                p[i] = '_';
            }
        }
    }
    return p + n;
}

/* The start of the last path component of f[0:n]. */
static size_t
basename_offset(const char *f, size_t n)
{
#ifdef __GLIBC__
    const char *slash = memrchr(f, '/', n);
    return slash ? (size_t)(slash + 1 - f) : 0;
#else
    size_t k = n;
    while (k > 0 && f[k - 1] != '/') {
        k--;
    }
    return k;
#endif
}

/* The File field: the basename, control characters replaced. */
static char *
put_file(char *p, const char *f, size_t n)
{
    if (n) {
        size_t k = basename_offset(f, n);
        f += k;
        n -= k;
    }
    if (n > PMT_CPMT_NAME_MAX) {
        f += n - PMT_CPMT_NAME_MAX;
        n = PMT_CPMT_NAME_MAX;
    }
    return put_clean(p, f, n, ' ');
}

/* The Function field: whitespace replaced, padded to 13. */
static char *
put_function(char *p, const char *s, size_t n)
{
    if (n > PMT_CPMT_NAME_MAX) {
        n = PMT_CPMT_NAME_MAX;
    }
    char *start = p;
    p = put_clean(p, s, n, ' ' + 1);
    return put_spaces(p, 13 - (int)(p - start));
}

static char *
put_name_memo(char *p, pmt_cpmt_namememo *m, const char *s, size_t n,
              char *(*put)(char *, const char *, size_t))
{
    if (m == NULL || s == NULL) {
        return put(p, s, s ? n : 0);
    }
    if (m->key != s || m->key_len != n) {
        m->len = (size_t)(put(m->txt, s, n) - m->txt);
        m->key = s;
        m->key_len = n;
    }
    if (m->len <= 32) {
        memcpy(p, m->txt, 32);      /* fixed size: inlined; only len counts */
    }
    else {
        memcpy(p, m->txt, m->len);
    }
    return p + m->len;
}

size_t
pmt_cpmt_format_row(char *out, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *c)
{
    char *p = out;
    p = put_bytes(p, row->next ? "NEXT: " : "PREV: ", 6);
    p = put_event(p, c ? &c->event : NULL, row->event);
    *p++ = ' ';
    /* dEvent: "+N" left-aligned in 7 */
    p = put_int_memo(p, c ? &c->d_event : NULL, row->d_event, -7, 1);
    *p++ = ' ';
    {
        char *start = p;
        p = put_seconds(p, row->clock_ns, c ? &c->secs : NULL);
        p = put_spaces(p, 8 - (int)(p - start));
    }
    *p++ = ' ';
    if (row->what >= 0 && row->what < (int)(sizeof what_padded / sizeof what_padded[0])) {
        memcpy(p, what_padded[row->what].txt, 16);  /* fixed size: one wide move */
        p += what_padded[row->what].len;
    }
    else {
        p = put_bytes(p, "?       ", 8);
    }
    *p++ = ' ';
    /* File: the basename; the File field may hold spaces, the reader splits on " #". */
    p = put_name_memo(p, c ? &c->file : NULL, row->file, row->file_len, put_file);
    *p++ = ' ';
    *p++ = '#';
    p = put_int_memo(p, c ? &c->line : NULL, row->line, 4, 0);
    *p++ = ' ';
    p = put_name_memo(p, c ? &c->function : NULL, row->function, row->function_len,
                      put_function);
    *p++ = ' ';
    p = put_int_memo(p, c ? &c->rss : NULL, row->rss, 8, 0);
    *p++ = ' ';
    p = put_int_memo(p, c ? &c->d_rss : NULL, row->d_rss, 12, 0);
    *p++ = '\n';
    return (size_t)(p - out);
}

void
pmt_cpmt_write_row(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache)
{
    /* Straight into the writer's buffer when it has room (the common case). */
    if (w->err == 0 && w->len + PMT_CPMT_ROW_MAX <= sizeof w->buf) {
        w->len += pmt_cpmt_format_row(w->buf + w->len, row, cache);
        return;
    }
    char buf[PMT_CPMT_ROW_MAX];
    pmt_lw_bytes(w, buf, pmt_cpmt_format_row(buf, row, cache));
}

void
pmt_cpmt_write_message(pmt_logwriter *w, const char *message, size_t len)
{
    if (message == NULL) {
        return;
    }
    pmt_lw_bytes(w, message, len);
    if (len == 0 || message[len - 1] != '\n') {
        pmt_lw_char(w, '\n');
    }
}

void
pmt_cpmt_write_msg_row(pmt_logwriter *w, int64_t event, int64_t d_event, int64_t clock_ns,
                       const char *message, size_t len)
{
    char buf[80];
    char *p = put_bytes(buf, "MSG:  ", 6);
    p = put_int(p, event, -5);
    *p++ = ' ';
    p = put_int_signed(p, d_event, -7, 1);
    *p++ = ' ';
    char *start = p;
    p = put_seconds(p, clock_ns, NULL);
    p = put_spaces(p, 8 - (int)(p - start));
    p = put_bytes(p, " # ", 3);
    pmt_lw_bytes(w, buf, (size_t)(p - buf));
    pmt_cpmt_write_message(w, message ? message : "", message ? len : 0);
}

void
pmt_cpmt_write_start(pmt_logwriter *w, const char *message, size_t len)
{
    pmt_cpmt_write_message(w, message, len);
    pmt_lw_str(w, pmt_cpmt_header);
    pmt_lw_char(w, '\n');
}

static void
write_clock(pmt_logwriter *w, int64_t clock_ns)
{
    char buf[40];
    char *p = put_seconds(buf, clock_ns, NULL);
    pmt_lw_bytes(w, buf, (size_t)(p - buf));
}

void
pmt_cpmt_write_detach(pmt_logwriter *w, int64_t event, int64_t clock_ns, int depth,
                      const char *path)
{
    pmt_lw_str(w, "# DETACH event=");
    pmt_lw_int(w, event, 0);
    pmt_lw_str(w, " clock=");
    write_clock(w, clock_ns);
    pmt_lw_str(w, " depth=");
    pmt_lw_int(w, depth, 0);
    pmt_lw_str(w, " log=");
    pmt_lw_str(w, path ? path : "?");
    pmt_lw_char(w, '\n');
}

void
pmt_cpmt_write_resume(pmt_logwriter *w, int64_t event, int64_t clock_ns)
{
    pmt_lw_str(w, "# RESUME event=");
    pmt_lw_int(w, event, 0);
    pmt_lw_str(w, " clock=");
    write_clock(w, clock_ns);
    pmt_lw_char(w, '\n');
}

void
pmt_cpmt_write_end(pmt_logwriter *w, int64_t events, int64_t clock_ns, int64_t rss,
                   int64_t rss_peak, const char *why)
{
    pmt_lw_str(w, "# END events=");
    pmt_lw_int(w, events, 0);
    pmt_lw_str(w, " clock=");
    write_clock(w, clock_ns);
    pmt_lw_str(w, " rss=");
    pmt_lw_int(w, rss, 0);
    pmt_lw_str(w, " rss_peak=");
    pmt_lw_int(w, rss_peak, 0);
    pmt_lw_str(w, " exit=");
    pmt_lw_str(w, why && *why ? why : "ok");
    pmt_lw_char(w, '\n');
}

/* ---- file names ---------------------------------------------------------- */

static char *
put_zpad(char *p, int v, int digits)
{
    for (int d = digits - 1; d >= 0; d--) {
        p[d] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + digits;
}

int
pmt_cpmt_default_name(char *out, size_t cap, time_t t, pid_t pid, char kind, int depth,
                      const char *version, int suffix)
{
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL) {
        return -1;
    }
    size_t vlen = version ? strlen(version) : 0;
    /* 8+1+6+1+20+1+1+1+11+3+vlen+1+11+4+1 */
    if (cap < 80 + vlen) {
        return -1;
    }
    char *p = out;
    p = put_zpad(p, tm.tm_year + 1900, 4);
    p = put_zpad(p, tm.tm_mon + 1, 2);
    p = put_zpad(p, tm.tm_mday, 2);
    *p++ = '_';
    p = put_zpad(p, tm.tm_hour, 2);
    p = put_zpad(p, tm.tm_min, 2);
    p = put_zpad(p, tm.tm_sec, 2);
    *p++ = '_';
    p += pmt_fmt_int(p, (int64_t)pid);
    *p++ = '_';
    *p++ = kind;
    *p++ = '_';
    p += pmt_fmt_int(p, depth);
    p = put_bytes(p, "_PY", 3);
    for (size_t i = 0; i < vlen; i++) {
        char c = version[i];
        *p++ = (c == '/' || c <= ' ') ? '_' : c;
    }
    if (suffix > 0) {
        *p++ = '-';
        p += pmt_fmt_int(p, suffix);
    }
    p = put_bytes(p, ".log", 4);
    *p = '\0';
    return (int)(p - out);
}

int
pmt_cpmt_open_default(pmt_logwriter *w, char *path, size_t cap, const char *dir, time_t t,
                      pid_t pid, char kind, int depth, const char *version)
{
    size_t dlen = dir ? strlen(dir) : 0;
    if (dlen + 2 >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (dlen) {
        memcpy(path, dir, dlen);
        if (path[dlen - 1] != '/') {
            path[dlen++] = '/';
        }
    }
    for (int suffix = 0; suffix < 10000; suffix++) {
        if (pmt_cpmt_default_name(path + dlen, cap - dlen, t, pid, kind, depth, version,
                                  suffix) < 0) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (pmt_lw_open(w, path, PMT_LW_EXCLUSIVE) == 0) {
            return 0;
        }
        if (errno != EEXIST) {
            return -1;
        }
    }
    errno = EEXIST;
    return -1;
}
