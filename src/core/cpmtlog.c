/* cpmtlog.c: the text of a cPyMemTrace log (see cpmtlog.h); the rows
 * themselves are formatted by cpmtfmt.c. */
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

static char *
put_bytes(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
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
    p = pmt_cpmt_put_int(p, event, -5, 0);
    *p++ = ' ';
    p = pmt_cpmt_put_int(p, d_event, -7, 1);
    *p++ = ' ';
    p = pmt_cpmt_put_seconds(p, clock_ns);     /* at least 8 characters */
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
    char *p = pmt_cpmt_put_seconds(buf, clock_ns);
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
                      pid_t pid, char kind, int depth, const char *version, size_t bufsize)
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
        if (pmt_lw_open_size(w, path, PMT_LW_EXCLUSIVE, bufsize) == 0) {
            return 0;
        }
        if (errno != EEXIST) {
            return -1;
        }
    }
    errno = EEXIST;
    return -1;
}
