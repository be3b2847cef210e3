/* cpmtlog.c: the text of a cPyMemTrace log (see cpmtlog.h). */
#include "cpmtlog.h"

#include <errno.h>
#include <string.h>

const char pmt_cpmt_header[] =
    "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS";

static const char *const what_names[] = {
    "CALL", "EXCEPTION", "LINE", "RETURN", "C_CALL", "C_EXCEPTION", "C_RETURN", "OPCODE",
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

static char *
put_spaces(char *p, int n)
{
    while (n-- > 0) {
        *p++ = ' ';
    }
    return p;
}

/* Decimal integer, right-aligned in width (left-aligned if width < 0). */
static char *
put_int(char *p, int64_t v, int width)
{
    char tmp[24];
    int n = pmt_fmt_int(tmp, v);
    if (n < 0 || n > 21) {
        n = 0;
    }
    if (width > n) {
        p = put_spaces(p, width - n);
    }
    p = put_bytes(p, tmp, (size_t)n);
    if (-width > n) {
        p = put_spaces(p, -width - n);
    }
    return p;
}

/* Nanoseconds as seconds with 6 decimals (truncated to the microsecond). */
static char *
put_seconds(char *p, int64_t ns)
{
    if (ns < 0) {
        *p++ = '-';
        ns = -ns;
    }
    int64_t us = ns / 1000;
    p = put_int(p, us / 1000000, 0);
    *p++ = '.';
    int64_t frac = us % 1000000;
    for (int d = 5; d >= 0; d--) {
        p[d] = (char)('0' + frac % 10);
        frac /= 10;
    }
    return p + 6;
}

/* A name with whitespace and control characters replaced by '_', never empty. */
static char *
put_name(char *p, const char *s, size_t n)
{
    if (s == NULL || n == 0) {
        *p++ = '?';
        return p;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        *p++ = (c <= ' ' || c == 0x7f) ? '_' : (char)c;
    }
    return p;
}

size_t
pmt_cpmt_format_row(char *out, const pmt_cpmt_row *row)
{
    char *p = out;
    p = put_bytes(p, row->next ? "NEXT: " : "PREV: ", 6);
    p = put_int(p, row->event, -5);
    *p++ = ' ';
    /* dEvent: "+N" left-aligned in 7 */
    {
        char tmp[24];
        int n = 0;
        if (row->d_event >= 0) {
            tmp[n++] = '+';
        }
        int k = pmt_fmt_int(tmp + n, row->d_event);
        n += (k > 0 && k <= 21) ? k : 0;
        p = put_bytes(p, tmp, (size_t)n);
        p = put_spaces(p, 7 - n);
    }
    *p++ = ' ';
    {
        char *start = p;
        p = put_seconds(p, row->clock_ns);
        p = put_spaces(p, 8 - (int)(p - start));
    }
    *p++ = ' ';
    {
        const char *w = pmt_cpmt_what_name(row->what);
        size_t n = strlen(w);
        p = put_bytes(p, w, n);
        p = put_spaces(p, 8 - (int)n);
    }
    *p++ = ' ';
    /* File: the basename; the File field may hold spaces, the reader splits on " #". */
    {
        const char *f = row->file;
        size_t n = f ? row->file_len : 0;
        if (f != NULL) {
            size_t k = n;
            while (k > 0 && f[k - 1] != '/') {
                k--;
            }
            f += k;
            n -= k;
        }
        if (n > PMT_CPMT_NAME_MAX) {
            f += n - PMT_CPMT_NAME_MAX;
            n = PMT_CPMT_NAME_MAX;
        }
        if (f == NULL || n == 0) {
            *p++ = '?';
        }
        else {
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)f[i];
                *p++ = (c < ' ' || c == 0x7f) ? '_' : (char)c;
            }
        }
    }
    *p++ = ' ';
    *p++ = '#';
    p = put_int(p, row->line, 4);
    *p++ = ' ';
    {
        size_t n = row->function_len;
        if (n > PMT_CPMT_NAME_MAX) {
            n = PMT_CPMT_NAME_MAX;
        }
        char *start = p;
        p = put_name(p, row->function, n);
        p = put_spaces(p, 13 - (int)(p - start));
    }
    *p++ = ' ';
    p = put_int(p, row->rss, 8);
    *p++ = ' ';
    p = put_int(p, row->d_rss, 12);
    *p++ = '\n';
    return (size_t)(p - out);
}

void
pmt_cpmt_write_row(pmt_logwriter *w, const pmt_cpmt_row *row)
{
    char buf[PMT_CPMT_ROW_MAX];
    pmt_lw_bytes(w, buf, pmt_cpmt_format_row(buf, row));
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
    char *p = put_seconds(buf, clock_ns);
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
