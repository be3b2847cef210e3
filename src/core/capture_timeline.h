/* capture_timeline.h: the clock of a capture report (capture_stacks.c's
 * first replay): passing the TIME records (time and RSS) placed among the
 * events, and cutting the heap over the run into samples, by time when the
 * capture has a clock, else by equal numbers of events.  No Python.h. */
#ifndef PMT_CAPTURE_TIMELINE_H
#define PMT_CAPTURE_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"
#include "capture_stacks.h"

typedef struct {
    size_t t;               /* the next TIME record to pass */
    uint64_t ns, rss;       /* the last time and RSS read */
    uint64_t rss_max;       /* the highest RSS since the last point (0: none) */
} pmt_tl_clock;

/* The heap samples: stretches of equal numbers of events, or with a clock
 * stretches of equal time (a pause is then seen: its stretches keep the heap
 * it left).  r->points holds np of them. */
typedef struct {
    size_t p, np;
    uint64_t n, p_end;      /* by events: where stretch p ends */
    uint64_t end_ns;        /* by time: the last time recorded (0: by events) */
} pmt_tl_sampler;

/* Pass the TIME records at or before event position i (the report's RSS
 * peak follows them). */
void pmt_tl_clock_to(const pmt_capture *c, pmt_st_report *r, pmt_tl_clock *w, uint64_t i);
/* The position of the first event at or after ns (c->n_ev: none). */
uint64_t pmt_tl_event_at_ns(const pmt_capture *c, uint64_t ns);
/* The latest time any TIME record holds (0: no clock). */
uint64_t pmt_tl_max_ns(const pmt_capture *c);
/* Close sample sp->p at position at; cur is the heap then. */
void pmt_tl_close_point(pmt_st_report *r, pmt_tl_sampler *sp, pmt_tl_clock *w, uint64_t at,
                        uint64_t cur);
/* Before / after the event at position i (cur: the heap at that moment). */
void pmt_tl_sample_before(const pmt_capture *c, pmt_st_report *r, pmt_tl_sampler *sp,
                          pmt_tl_clock *w, uint64_t i, uint64_t cur);
void pmt_tl_sample_after(pmt_st_report *r, pmt_tl_sampler *sp, pmt_tl_clock *w, uint64_t i,
                         uint64_t cur);

#endif
