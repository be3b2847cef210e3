/* test_cpmtseq.c: unit tests for src/core/cpmtseq.c (the NEXT/PREV rule). */
#include "ctest.h"
#include "cpmtseq.h"

/* Feed one event; record the rows it gets as "P<ev>" / "N<ev>" into out. */
static void
feed(pmt_cpmt_seq *s, int64_t rss, int64_t clock_ns, char *out, size_t cap)
{
    int64_t ev;
    int prev_due;
    pmt_cpmt_row row;
    int next = pmt_cpmt_seq_event(s, rss, &ev, &prev_due);
    char buf[64];
    if (next) {
        if (prev_due) {
            pmt_cpmt_seq_prev_row(s, (int64_t)s->prev_ticks, &row);
            snprintf(buf, sizeof buf, "P%lld/%+lld/%+lld ", (long long)row.event,
                     (long long)row.d_event, (long long)row.d_rss);
            strncat(out, buf, cap - strlen(out) - 1);
        }
        pmt_cpmt_seq_next_row(s, ev, clock_ns, PMT_EV_CALL, 7, rss, &row);
        snprintf(buf, sizeof buf, "N%lld/%+lld/%+lld ", (long long)row.event,
                 (long long)row.d_event, (long long)row.d_rss);
        strncat(out, buf, cap - strlen(out) - 1);
    }
    pmt_cpmt_seq_remember(s, ev, (uint64_t)clock_ns, PMT_EV_RETURN, 8, rss, next);
}

static void
test_seed_pattern(void)
{
    /* the seed's table: NEXT 0, NEXT 1, PREV 4, NEXT 5, PREV 8, NEXT 9 */
    static const int64_t rss[] = {100, 5000, 5000, 5000, 5000, 9100, 9100, 9100, 9100, 13200};
    pmt_cpmt_seq s;
    char out[512] = "";
    pmt_cpmt_seq_start(&s, 4096);
    for (int i = 0; i < 10; i++) {
        feed(&s, rss[i], 1000 * i, out, sizeof out);
    }
    CHECK_EQ_STR(out, "N0/+0/+100 N1/+1/+4900 P4/+3/+0 N5/+4/+4100 P8/+3/+0 N9/+4/+4100 ");
    CHECK_EQ_INT(s.event, 10);
    CHECK_EQ_INT(pmt_cpmt_seq_current(&s), 9);
}

static void
test_trigger_edges(void)
{
    pmt_cpmt_seq s;
    char out[512] = "";
    pmt_cpmt_seq_start(&s, 4096);
    CHECK_EQ_INT(pmt_cpmt_seq_current(&s), 0);
    feed(&s, 8192, 0, out, sizeof out);
    feed(&s, 8192 + 4095, 1, out, sizeof out);      /* just under: nothing */
    feed(&s, 8192 - 4096, 2, out, sizeof out);      /* a fall by the trigger counts */
    CHECK_EQ_STR(out, "N0/+0/+8192 P1/+1/+4095 N2/+2/-4096 ");
    /* trigger 0: every event is a NEXT row, never a PREV row */
    pmt_cpmt_seq_start(&s, 0);
    out[0] = '\0';
    for (int i = 0; i < 3; i++) {
        feed(&s, 4096, i, out, sizeof out);
    }
    CHECK_EQ_STR(out, "N0/+0/+4096 N1/+1/+0 N2/+1/+0 ");
}

static void
test_clock_never_goes_back(void)
{
    pmt_cpmt_seq s;
    pmt_cpmt_seq_start(&s, 0);
    CHECK_EQ_INT(pmt_cpmt_seq_clock(&s, 500), 500);
    CHECK_EQ_INT(pmt_cpmt_seq_clock(&s, 400), 500);
    CHECK_EQ_INT(pmt_cpmt_seq_clock(&s, 501), 501);
    pmt_cpmt_row row;
    pmt_cpmt_seq_next_row(&s, 0, 100, PMT_EV_LINE, 3, 0, &row);
    CHECK_EQ_INT(row.clock_ns, 501);
}

int
main(void)
{
    test_seed_pattern();
    test_trigger_edges();
    test_clock_never_goes_back();
    CTEST_MAIN_END();
}
