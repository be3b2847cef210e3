/* capture_timeline.c: the clock of a capture report (see capture_timeline.h). */
#include "capture_timeline.h"


/* Pass the TIME records that fall before the event at position i. */
void
pmt_tl_clock_to(const pmt_capture *c, pmt_st_report *r, pmt_tl_clock *w, uint64_t i)
{
    for (; w->t < c->n_times && c->times[w->t].pos <= i; w->t++) {
        const pmt_cap_time *t = &c->times[w->t];
        w->ns = t->ns > w->ns ? t->ns : w->ns;
        if (t->rss) {
            w->rss = t->rss;
            w->rss_max = t->rss > w->rss_max ? t->rss : w->rss_max;
            if (t->rss > r->rss_peak) {
                r->rss_peak = t->rss;
                r->rss_peak_ns = t->ns;
            }
        }
    }
}

/* The first event at or after time ns (n: none). */
uint64_t
pmt_tl_event_at_ns(const pmt_capture *c, uint64_t ns)
{
    for (size_t i = 0; i < c->n_times; i++) {
        if (c->times[i].ns >= ns) {
            return c->times[i].pos;
        }
    }
    return c->n_ev;
}

uint64_t
pmt_tl_max_ns(const pmt_capture *c)
{
    uint64_t m = 0;
    for (size_t i = 0; i < c->n_times; i++) {
        m = c->times[i].ns > m ? c->times[i].ns : m;
    }
    return m;
}

/* Close stretch p (its heap, time and RSS) at position at. */
void
pmt_tl_close_point(pmt_st_report *r, pmt_tl_sampler *sp, pmt_tl_clock *w, uint64_t at,
                   uint64_t cur)
{
    pmt_st_point *pt = &r->points[sp->p];
    pt->event = at;
    pt->ns = sp->end_ns ? sp->p * sp->end_ns / sp->np : w->ns;   /* by time: its start */
    pt->rss = w->rss_max ? w->rss_max : w->rss;
    w->rss_max = 0;
    sp->p++;
    if (sp->p < sp->np) {
        r->points[sp->p].heap = cur;  /* a stretch starts at the heap left */
        sp->p_end = (sp->p + 1) * sp->n / sp->np;
    }
}

/* Before the event at position i: by time, close the stretches that end
 * before its time (the TIME records up to it not yet passed: what they read
 * belongs to the stretch they open). */
void
pmt_tl_sample_before(const pmt_capture *c, pmt_st_report *r, pmt_tl_sampler *sp,
                     pmt_tl_clock *w, uint64_t i, uint64_t cur)
{
    if (!sp->end_ns) {
        return;
    }
    uint64_t ns = w->ns;
    for (size_t t = w->t; t < c->n_times && c->times[t].pos <= i; t++) {
        ns = c->times[t].ns > ns ? c->times[t].ns : ns;
    }
    uint64_t bin = ns >= sp->end_ns ? sp->np - 1 : ns * sp->np / sp->end_ns;
    while (sp->p < bin) {
        pmt_tl_close_point(r, sp, w, i, cur);
    }
}

/* After the event at position i. */
void
pmt_tl_sample_after(pmt_st_report *r, pmt_tl_sampler *sp, pmt_tl_clock *w, uint64_t i,
                    uint64_t cur)
{
    pmt_st_point *pt = &r->points[sp->p];
    pt->heap = cur > pt->heap ? cur : pt->heap;
    if (!sp->end_ns && i + 1 == sp->p_end) {
        pmt_tl_close_point(r, sp, w, i + 1, cur);   /* at the time of its last event */
    }
}
