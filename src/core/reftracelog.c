/* reftracelog.c: ReferenceTracing's log: open it, write its rows and notes,
 * close it (see reftracelog.h). */
#include "reftracelog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cpmtlog.h"

#define MSG_DETACH "Detaching this Reference Tracing file wrapper. New file: "
#define MSG_ATTACH "Re-attaching this Reference Tracing file wrapper."

static void
write_hex(pmt_logwriter *w, uintptr_t v, int width)
{
    char tmp[2 + 2 * sizeof(uintptr_t) + 1];
    char digits[2 * sizeof(uintptr_t)];
    int n = 0, d = 0;
    do {
        digits[d++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    tmp[n++] = '0';
    tmp[n++] = 'x';
    while (d) {
        tmp[n++] = digits[--d];
    }
    tmp[n] = '\0';
    pmt_lw_pad(w, tmp, width);
}

int
pmt_rt_open(pmt_logwriter *w, const char *path, char *out, size_t cap, const char *dir,
            time_t t, pid_t pid, int depth, const char *version, const char *message)
{
    int rc;
    if (path) {
        snprintf(out, cap, "%s", path);
        rc = pmt_lw_open(w, path, 0);
    }
    else {
        rc = pmt_cpmt_open_default(w, out, cap, dir, t, pid, 'O', depth, version, 0);
    }
    if (rc != 0) {
        return -1;
    }
    pmt_rt_write_start(w, message, message ? strlen(message) : 0);
    return 0;
}

void
pmt_rt_write_start(pmt_logwriter *w, const char *message, size_t len)
{
    if (message && len) {
        pmt_lw_bytes(w, message, len);
        pmt_lw_char(w, '\n');
    }
    pmt_lw_str(w, "SOF\nHDR: ");
    pmt_lw_pad(w, "Clock", 12);
    pmt_lw_pad(w, " Address", 19);
    pmt_lw_pad(w, " LiveCnt", 8);
    pmt_lw_str(w, " Type File Line Function RSS dRSS\n");
}

void
pmt_rt_write_event(pmt_logwriter *w, const pmt_rt_event *ev)
{
    pmt_lw_str(w, ev->destroy ? "DEL: " : "NEW: ");
    pmt_lw_fixed(w, ev->clock, 6, 12);
    pmt_lw_char(w, ' ');
    write_hex(w, ev->address, 18);
    pmt_lw_char(w, ' ');
    pmt_lw_int(w, ev->live, 7);
    pmt_lw_char(w, ' ');
    pmt_lw_pad(w, ev->type, -20);
    pmt_lw_char(w, ' ');
    pmt_lw_pad(w, ev->file ? ev->file : "<no Python frame>", -40);
    pmt_lw_char(w, ' ');
    pmt_lw_int(w, ev->line, 5);
    pmt_lw_char(w, ' ');
    pmt_lw_pad(w, ev->function ? ev->function : "-", -24);
    pmt_lw_char(w, ' ');
    pmt_lw_int(w, ev->rss, 10);
    pmt_lw_char(w, ' ');
    pmt_lw_int(w, ev->drss, 9);
    pmt_lw_char(w, '\n');
}

static void
message_head(pmt_logwriter *w, const char *tag, double clock)
{
    pmt_lw_str(w, tag);
    pmt_lw_str(w, ": ");
    pmt_lw_fixed(w, clock, 6, 12);
    pmt_lw_str(w, " # ");
}

void
pmt_rt_write_message(pmt_logwriter *w, const char *tag, double clock, const char *text,
                     size_t len)
{
    message_head(w, tag, clock);
    pmt_lw_bytes(w, text, len);
    pmt_lw_char(w, '\n');
}

void
pmt_rt_write_detach(pmt_logwriter *w, double clock, const char *child_path)
{
    message_head(w, "MSG", clock);
    pmt_lw_str(w, MSG_DETACH);
    pmt_lw_str(w, child_path);
    pmt_lw_char(w, '\n');
}

void
pmt_rt_write_attach(pmt_logwriter *w, double clock)
{
    message_head(w, "MSG", clock);
    pmt_lw_str(w, MSG_ATTACH "\n");
}

void
pmt_rt_write_live(pmt_logwriter *w, int64_t live, const char *type)
{
    pmt_lw_str(w, "LIVE: ");
    pmt_lw_int(w, live, 7);
    pmt_lw_char(w, ' ');
    pmt_lw_str(w, type);
    pmt_lw_char(w, '\n');
}

void
pmt_rt_write_end(pmt_logwriter *w)
{
    pmt_lw_str(w, "EOF\n");
}

int
pmt_rt_close(pmt_logwriter *w)
{
    pmt_rt_write_end(w);
    if (pmt_lw_close(w) < 0) {
        return errno ? errno : EIO;
    }
    return 0;
}
