/* reftracelog.h: the log format of ReferenceTracing (object creations and
 * destructions, CPython 3.13+'s reference tracer hook).
 *
 *   <message>                  the user's opening message, if any
 *   SOF
 *   HDR:  Clock Address LiveCnt Type File Line Function RSS dRSS
 *   NEW:  <clock> <address> <live> <type> <file> <line> <function> <rss> <drss>
 *   DEL:  ...                  same columns; live is the count after the event
 *   MSG:  <clock> # <text>     a message (newlines in it kept)
 *   LIVE: <live> <type>        at the end: types with objects still alive
 *   EOF
 *
 * Clock is seconds since the trace started; Address is hexadecimal; LiveCnt
 * is the number of objects of that type created during the trace and still
 * alive.  Columns are separated by spaces; a type or function name never
 * contains one, a file name may (it is the last but three column).  No Python.h.
 */
#ifndef PMT_REFTRACELOG_H
#define PMT_REFTRACELOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "logwriter.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int destroy;            /* 0: NEW, 1: DEL */
    double clock;
    uintptr_t address;
    int64_t live;
    const char *type;
    const char *file;       /* NULL: no Python frame */
    int line;
    const char *function;
    int64_t rss;
    int64_t drss;
} pmt_rt_event;

/* Open a log and write its start (the message, SOF, HDR): at `path` when it
 * is not NULL, else under the default name of cpmtlog.h (kind 'O') in `dir`.
 * The name used is copied into out (cap bytes).  Returns 0, or -1 with errno
 * set (nothing is left open). */
int pmt_rt_open(pmt_logwriter *w, const char *path, char *out, size_t cap, const char *dir,
                time_t t, pid_t pid, int depth, const char *version, const char *message);
void pmt_rt_write_start(pmt_logwriter *w, const char *message, size_t len);
void pmt_rt_write_event(pmt_logwriter *w, const pmt_rt_event *ev);
/* tag is "MSG" or "ERR". */
void pmt_rt_write_message(pmt_logwriter *w, const char *tag, double clock, const char *text,
                          size_t len);
/* The notes a nested ReferenceTracing leaves in the log of the one it
 * suspends ("... New file: <its log>", which readers follow) and resumes. */
void pmt_rt_write_detach(pmt_logwriter *w, double clock, const char *child_path);
void pmt_rt_write_attach(pmt_logwriter *w, double clock);
void pmt_rt_write_live(pmt_logwriter *w, int64_t live, const char *type);
void pmt_rt_write_end(pmt_logwriter *w);
/* Write EOF and close: 0, or the errno of the first write or close that
 * failed (the log keeps what was written before it). */
int pmt_rt_close(pmt_logwriter *w);

#ifdef __cplusplus
}
#endif
#endif /* PMT_REFTRACELOG_H */
