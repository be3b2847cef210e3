/* test_capture_timeline.c: the clock of a capture report: TIME records
 * passed in order (the RSS peak follows them), an event found by its time,
 * heap samples by equal numbers of events and by equal time (a pause keeps
 * the heap it left). */
#include <stdint.h>
#include <string.h>

#include "capture_timeline.h"
#include "ctest.h"

static pmt_cap_time times[] = {
    /* ns, rss, seq, pos */
    {0, 100, 0, 0},
    {10, 300, 4, 4},
    {20, 200, 8, 8},
    {90, 0, 9, 9},          /* RSS not read */
};

static void
clock_setup(pmt_capture *c)
{
    memset(c, 0, sizeof(*c));
    c->times = times;
    c->n_times = sizeof(times) / sizeof(times[0]);
    c->n_ev = 10;
}

static void
test_clock_passes_records_in_order(void)
{
    pmt_capture c;
    clock_setup(&c);
    pmt_st_report r;
    memset(&r, 0, sizeof(r));
    pmt_tl_clock w = {0, 0, 0, 0};
    pmt_tl_clock_to(&c, &r, &w, 3);             /* only the first record */
    CHECK_EQ_INT(w.t, 1);
    CHECK_EQ_INT(w.ns, 0);
    CHECK_EQ_INT(w.rss, 100);
    pmt_tl_clock_to(&c, &r, &w, 8);             /* records at 4 and 8 */
    CHECK_EQ_INT(w.t, 3);
    CHECK_EQ_INT(w.ns, 20);
    CHECK_EQ_INT(w.rss, 200);
    CHECK_EQ_INT(w.rss_max, 300);
    CHECK_EQ_INT(r.rss_peak, 300);
    CHECK_EQ_INT(r.rss_peak_ns, 10);
    pmt_tl_clock_to(&c, &r, &w, 10);            /* an unread RSS keeps the last */
    CHECK_EQ_INT(w.ns, 90);
    CHECK_EQ_INT(w.rss, 200);
}

static void
test_event_at_time_and_last_time(void)
{
    pmt_capture c;
    clock_setup(&c);
    CHECK_EQ_INT(pmt_tl_event_at_ns(&c, 0), 0);
    CHECK_EQ_INT(pmt_tl_event_at_ns(&c, 5), 4);
    CHECK_EQ_INT(pmt_tl_event_at_ns(&c, 20), 8);
    CHECK_EQ_INT(pmt_tl_event_at_ns(&c, 91), 10);    /* after the last: the end */
    CHECK_EQ_INT(pmt_tl_max_ns(&c), 90);
    c.n_times = 0;
    CHECK_EQ_INT(pmt_tl_max_ns(&c), 0);
}

/* Heap after each of 10 events: 1, 2, ..., 5, then 4, 3, 2, 1, 0. */
static uint64_t
heap_after(uint64_t i)
{
    return i < 5 ? i + 1 : 9 - i;
}

static void
replay(pmt_capture *c, pmt_st_report *r, pmt_tl_sampler *sp)
{
    pmt_tl_clock w = {0, 0, 0, 0};
    uint64_t cur = 0;
    for (uint64_t i = 0; i < c->n_ev; i++) {
        pmt_tl_sample_before(c, r, sp, &w, i, cur);
        pmt_tl_clock_to(c, r, &w, i);
        cur = heap_after(i);
        if (sp->p < sp->np) {
            pmt_tl_sample_after(r, sp, &w, i, cur);
        }
    }
    pmt_tl_clock_to(c, r, &w, c->n_ev);
    while (sp->p < sp->np) {
        pmt_tl_close_point(r, sp, &w, c->n_ev, cur);
    }
}

static void
test_samples_by_events(void)
{
    pmt_capture c;
    clock_setup(&c);
    c.n_times = 0;                              /* no clock */
    pmt_st_point pts[2];
    memset(pts, 0, sizeof(pts));
    pmt_st_report r;
    memset(&r, 0, sizeof(r));
    r.points = pts;
    pmt_tl_sampler sp = {.np = 2, .n = 10, .p_end = 5, .end_ns = 0};
    replay(&c, &r, &sp);
    CHECK_EQ_INT(pts[0].event, 5);
    CHECK_EQ_INT(pts[0].heap, 5);               /* the highest of 1..5 */
    CHECK_EQ_INT(pts[1].event, 10);
    CHECK_EQ_INT(pts[1].heap, 5);               /* starts at the heap left */
}

static void
test_samples_by_time(void)
{
    pmt_capture c;
    clock_setup(&c);                            /* events 0-8 by t=20, event 9 at t=90 */
    pmt_st_point pts[3];
    memset(pts, 0, sizeof(pts));
    pmt_st_report r;
    memset(&r, 0, sizeof(r));
    r.points = pts;
    pmt_tl_sampler sp = {.np = 3, .n = 10, .p_end = 3, .end_ns = 90};
    replay(&c, &r, &sp);
    /* [0, 30): events 0-8, the peak 5; [30, 60): nothing happened, the heap
     * left (1); [60, 90]: event 9 */
    CHECK_EQ_INT(pts[0].heap, 5);
    CHECK_EQ_INT(pts[0].event, 9);
    CHECK_EQ_INT(pts[1].heap, 1);
    CHECK_EQ_INT(pts[1].ns, 30);                /* by time: where the stretch starts */
    CHECK_EQ_INT(pts[2].ns, 60);
    CHECK_EQ_INT(pts[2].event, 10);
    CHECK_EQ_INT(pts[2].heap, 1);
    CHECK_EQ_INT(pts[0].rss, 300);              /* the highest RSS within it */
}

int
main(void)
{
    test_clock_passes_records_in_order();
    test_event_at_time_and_last_time();
    test_samples_by_events();
    test_samples_by_time();
    CTEST_MAIN_END();
}
