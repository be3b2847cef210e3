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

void pmt_rt_write_start(pmt_logwriter *w, const char *message, size_t len);
void pmt_rt_write_event(pmt_logwriter *w, const pmt_rt_event *ev);
/* tag is "MSG" or "ERR". */
void pmt_rt_write_message(pmt_logwriter *w, const char *tag, double clock, const char *text,
                          size_t len);
void pmt_rt_write_live(pmt_logwriter *w, int64_t live, const char *type);
void pmt_rt_write_end(pmt_logwriter *w);

#ifdef __cplusplus
}
#endif
#endif /* PMT_REFTRACELOG_H */
