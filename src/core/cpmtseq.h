/* cpmtseq.h: which rows an event of a cPyMemTrace log gets, independent of
 * Python: the NEXT/PREV rule.
 *
 * Events are numbered from 0.  An event gets a NEXT: row when it is the first
 * one, or when its RSS differs from the RSS of the last NEXT: row by at least
 * the trigger.  Just before a NEXT: row, the event before it gets a PREV: row
 * (the state before the change) unless that one already has a row.  dEvent and
 * dRSS of both rows are counted from the last NEXT: row; a row's Clock never
 * goes back in time.  The caller (src/ext/cpymemtrace/callback.c) supplies
 * the RSS, the clock and the names, and formats rows with cpmtlog.h.  All
 * inline: this runs at every event.
 */
#ifndef PMT_CPMTSEQ_H
#define PMT_CPMTSEQ_H

#include <stdint.h>

#include "cpmtlog.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_cpmt_seq {
    int64_t trigger;        /* |dRSS| in bytes that gives a NEXT row (0: every event) */
    int64_t event;          /* number of the next event */
    int64_t last_event;     /* Event of the last NEXT row */
    int64_t last_rss;       /* RSS of the last NEXT row */
    int64_t last_clock;     /* Clock of the last row, ns */
    int have_prev;          /* the previous event: */
    int prev_logged;        /*   it has a NEXT row */
    int prev_what;
    int prev_line;
    int64_t prev_event;
    uint64_t prev_ticks;    /*   its time stamp, in the caller's unit */
    int64_t prev_rss;
} pmt_cpmt_seq;

/* Start a log: no events yet. */
void pmt_cpmt_seq_start(pmt_cpmt_seq *s, int64_t trigger);

/* The Clock of a row at clock_ns: never before the previous row's. */
static inline int64_t
pmt_cpmt_seq_clock(pmt_cpmt_seq *s, int64_t clock_ns)
{
    if (clock_ns < s->last_clock) {
        clock_ns = s->last_clock;
    }
    s->last_clock = clock_ns;
    return clock_ns;
}

/* Count one event whose RSS is rss; its number goes to *ev.  Returns 1 if it
 * gets a NEXT row, and then *prev_due says whether the previous event's PREV
 * row is to be written first. */
static inline int
pmt_cpmt_seq_event(pmt_cpmt_seq *s, int64_t rss, int64_t *ev, int *prev_due)
{
    int64_t e = s->event++;
    int64_t d = rss - s->last_rss;
    *ev = e;
    *prev_due = 0;
    if (e == 0 || d >= s->trigger || -d >= s->trigger) {
        *prev_due = s->have_prev && !s->prev_logged;
        return 1;
    }
    return 0;
}

/* The numbers of the previous event's PREV row (clock_ns: its time stamp
 * converted by the caller).  Names are the caller's. */
static inline void
pmt_cpmt_seq_prev_row(pmt_cpmt_seq *s, int64_t clock_ns, pmt_cpmt_row *row)
{
    row->next = 0;
    row->event = s->prev_event;
    row->d_event = s->prev_event - s->last_event;
    row->clock_ns = pmt_cpmt_seq_clock(s, clock_ns);
    row->what = s->prev_what;
    row->line = s->prev_line;
    row->rss = s->prev_rss;
    row->d_rss = s->prev_rss - s->last_rss;
}

/* The numbers of event ev's NEXT row; it becomes the last NEXT row. */
static inline void
pmt_cpmt_seq_next_row(pmt_cpmt_seq *s, int64_t ev, int64_t clock_ns, int what, int line,
                      int64_t rss, pmt_cpmt_row *row)
{
    row->next = 1;
    row->event = ev;
    row->d_event = ev - s->last_event;
    row->clock_ns = pmt_cpmt_seq_clock(s, clock_ns);
    row->what = what;
    row->line = line;
    row->rss = rss;
    row->d_rss = rss - s->last_rss;
    s->last_event = ev;
    s->last_rss = rss;
}

/* Remember event ev as the previous one (logged: it got a NEXT row). */
static inline void
pmt_cpmt_seq_remember(pmt_cpmt_seq *s, int64_t ev, uint64_t ticks, int what, int line,
                      int64_t rss, int logged)
{
    s->have_prev = 1;
    s->prev_logged = logged;
    s->prev_what = what;
    s->prev_line = line;
    s->prev_event = ev;
    s->prev_ticks = ticks;
    s->prev_rss = rss;
}

/* The same for an event that reads no RSS and gets no row, after one that
 * was remembered above: have_prev is set already, and RSS is the one
 * remembered then (no read since).  Returns the event's number. */
static inline int64_t
pmt_cpmt_seq_remember_quiet(pmt_cpmt_seq *s, uint64_t ticks, int what, int line)
{
    int64_t ev = s->event++;
    s->prev_logged = 0;
    s->prev_what = what;
    s->prev_line = line;
    s->prev_event = ev;
    s->prev_ticks = ticks;
    return ev;
}

/* The number the last event got (0 before any): where a message row goes. */
static inline int64_t
pmt_cpmt_seq_current(const pmt_cpmt_seq *s)
{
    return s->event > 0 ? s->event - 1 : 0;
}

#ifdef __cplusplus
}
#endif
#endif /* PMT_CPMTSEQ_H */
