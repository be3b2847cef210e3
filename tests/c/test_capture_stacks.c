/* test_capture_stacks.c: a capture aggregated by whole stack: live at the
 * high-water mark, at the end, in a range of events, mappings cut by munmap,
 * the heap over the events, sizes and allocators, threads, bad input. */
#include <stdint.h>
#include <string.h>

#include "capture_build.h"
#include "capture_stacks.h"
#include "ctest.h"

static void
stacks_header(void)
{
    header(PMT_MC_RECORD_BASE);
    pmt_mc_header *h = (pmt_mc_header *)buf;
    h->flags |= PMT_MC_FLAG_STACKS;
}

static const pmt_st_options ALL = {0, UINT64_MAX, PMT_ST_ALL_THREADS, 0, 0, 0, 0, 0};

/* module:10 -> f:20 -> g:30 (node 3); module:10 -> g:31 (node 4); module:10 -> f:20 (node 2) */
static void
three_stacks(void)
{
    stacks_header();
    code(1, "m.py", "<module>");
    code(2, "m.py", "f");
    code(3, "m.py", "g");
    node(1, 0, 1, 10);
    node(2, 1, 2, 20);
    node(3, 2, 3, 30);
    node(4, 1, 3, 31);
    ev(1, PMT_MC_MALLOC, 0xA0, 100, 3, 30);
    ev(2, PMT_MC_CALLOC, 0xB0, 200, 4, 31);
    ev(3, PMT_MC_MALLOC, 0xC0, 50, 2, 20);     /* the peak: 350 */
    ev(4, PMT_MC_FREE, 0xA0, 0, 0, -1);
    ev(5, PMT_MC_MALLOC, 0xD0, 10, 3, 30);
    ev(6, PMT_MC_FREE, 0xC0, 0, 0, -1);
    end();
}

static const pmt_st_func *
func(const pmt_st_report *r, const char *name)
{
    for (size_t i = 0; i < r->n_funcs; i++) {
        if (strcmp(r->funcs[i].name, name) == 0) {
            return &r->funcs[i];
        }
    }
    return NULL;
}

/* "g:31 <- <module>:10" style: the stack's frames, innermost first */
static void
describe(const pmt_st_report *r, const pmt_st_stack *st, char *out, size_t n)
{
    out[0] = '\0';
    size_t at = 0;
    for (uint32_t f = st->frame; f != PMT_ST_NONE && at < n; f = r->frames[f].parent) {
        at += (size_t)snprintf(out + at, n - at, "%s%s:%d", at ? " <- " : "",
                               r->funcs[r->frames[f].func].name, r->frames[f].line);
    }
}

static void
test_peak_end_and_inclusive(void)
{
    three_stacks();
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK(r.stacks_recorded);
    CHECK_EQ_INT(r.events, 6);
    CHECK_EQ_INT(r.peak_bytes, 350);
    CHECK_EQ_INT(r.peak_event, 3);
    CHECK_EQ_INT(r.end_heap, 210);
    CHECK_EQ_INT(r.alloc_bytes, 360);
    CHECK_EQ_INT(r.alloc_count, 4);
    CHECK_EQ_INT(r.peak_live_bytes, 350);
    CHECK_EQ_INT(r.end_bytes, 210);
    CHECK_EQ_INT(r.end_count, 2);
    CHECK_EQ_INT(r.n_stacks, 3);
    char d[256];
    /* sorted by live at the peak */
    describe(&r, &r.stacks[0], d, sizeof(d));
    CHECK_EQ_STR(d, "g:31 <- <module>:10");
    CHECK_EQ_INT(r.stacks[0].peak_bytes, 200);
    CHECK_EQ_INT(r.stacks[0].end_bytes, 200);
    describe(&r, &r.stacks[1], d, sizeof(d));
    CHECK_EQ_STR(d, "g:30 <- f:20 <- <module>:10");
    CHECK_EQ_INT(r.stacks[1].alloc_bytes, 110);
    CHECK_EQ_INT(r.stacks[1].alloc_count, 2);
    CHECK_EQ_INT(r.stacks[1].peak_bytes, 100);
    CHECK_EQ_INT(r.stacks[1].end_bytes, 10);
    CHECK_EQ_INT(r.stacks[1].end_count, 1);
    describe(&r, &r.stacks[2], d, sizeof(d));
    CHECK_EQ_STR(d, "f:20 <- <module>:10");
    CHECK_EQ_INT(r.stacks[2].end_bytes, 0);
    /* the module:10 frame is shared by all three stacks: one frame */
    CHECK_EQ_INT(r.n_frames, 4);
    const pmt_st_func *m = func(&r, "<module>"), *f = func(&r, "f"), *g = func(&r, "g");
    CHECK(m && f && g);
    if (m && f && g) {
        CHECK_EQ_STR(m->file, "m.py");
        CHECK_EQ_INT(m->alloc_bytes, 360);
        CHECK_EQ_INT(m->peak_bytes, 350);
        CHECK_EQ_INT(m->end_bytes, 210);
        CHECK_EQ_INT(m->self_alloc_bytes, 0);
        CHECK_EQ_INT(f->alloc_bytes, 160);
        CHECK_EQ_INT(f->peak_bytes, 150);
        CHECK_EQ_INT(f->end_bytes, 10);
        CHECK_EQ_INT(f->self_alloc_bytes, 50);
        CHECK_EQ_INT(g->alloc_bytes, 310);
        CHECK_EQ_INT(g->alloc_count, 3);
        CHECK_EQ_INT(g->self_peak_bytes, 300);
    }
    /* allocators and sizes: 100 and 50 and 10 by malloc, 200 by calloc */
    CHECK_EQ_INT(r.kinds[PMT_MC_MALLOC].count, 3);
    CHECK_EQ_INT(r.kinds[PMT_MC_MALLOC].bytes, 160);
    CHECK_EQ_INT(r.kinds[PMT_MC_CALLOC].bytes, 200);
    CHECK_EQ_INT(r.sizes[7].count, 1);     /* 64 < 100 <= 128 */
    CHECK_EQ_INT(r.sizes[8].count, 1);     /* 200 */
    CHECK_EQ_INT(r.sizes[6].count, 1);     /* 50 */
    CHECK_EQ_INT(r.sizes[4].count, 1);     /* 10 */
    /* one thread, not recorded by this format */
    CHECK_EQ_INT(r.n_threads, 1);
    CHECK_EQ_INT(r.threads[0].id, 0);
    CHECK_EQ_INT(r.threads[0].alloc_bytes, 360);
    CHECK_EQ_INT(r.stacks[0].thread, 0);
    pmt_st_report_free(&r);
}

static void
test_range(void)
{
    three_stacks();
    /* events 3..5: free A, malloc D, free C: the heap starts at its peak */
    pmt_st_options o = {3, 6, PMT_ST_ALL_THREADS, 0, 0, 0, 0, 0};
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.lo, 3);
    CHECK_EQ_INT(r.hi, 6);
    CHECK_EQ_INT(r.peak_bytes, 350);
    CHECK_EQ_INT(r.peak_event, 3);
    CHECK_EQ_INT(r.alloc_bytes, 10);
    CHECK_EQ_INT(r.peak_live_bytes, 0);    /* nothing made in the range was live then */
    CHECK_EQ_INT(r.end_bytes, 10);
    CHECK_EQ_INT(r.n_stacks, 1);
    CHECK_EQ_INT(r.stacks[0].end_bytes, 10);
    pmt_st_report_free(&r);
    /* the first three events: live at their end, not at the capture's */
    o = (pmt_st_options){0, 2, PMT_ST_ALL_THREADS, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.peak_bytes, 300);
    CHECK_EQ_INT(r.peak_event, 2);
    CHECK_EQ_INT(r.end_heap, 300);
    CHECK_EQ_INT(r.end_bytes, 300);
    CHECK_EQ_INT(r.n_stacks, 2);
    pmt_st_report_free(&r);
    /* past the end and empty ranges are clamped */
    o = (pmt_st_options){9, 99, PMT_ST_ALL_THREADS, 0, 4, 0, 0, 0};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.lo, 6);
    CHECK_EQ_INT(r.hi, 6);
    CHECK_EQ_INT(r.n_stacks, 0);
    CHECK_EQ_INT(r.peak_bytes, 210);
    CHECK_EQ_INT(r.slices, 0);
    pmt_st_report_free(&r);
}

static void
test_points_and_slices(void)
{
    three_stacks();
    pmt_st_options o = {0, UINT64_MAX, PMT_ST_ALL_THREADS, 3, 2, 0, 0, 0};
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.n_points, 3);
    CHECK_EQ_INT(r.points[0].event, 2);
    CHECK_EQ_INT(r.points[0].heap, 300);
    CHECK_EQ_INT(r.points[1].event, 4);
    CHECK_EQ_INT(r.points[1].heap, 350);   /* the peak falls in the second stretch */
    CHECK_EQ_INT(r.points[2].event, 6);
    CHECK_EQ_INT(r.points[2].heap, 260);
    /* slices: events 0-2 and 3-5; every allocation and what lives at the end */
    CHECK_EQ_INT(r.slices, 2);
    uint64_t alloc = 0, end = 0;
    for (size_t i = 0; i < r.n_cells; i++) {
        CHECK(r.cells[i].stack < r.n_stacks && r.cells[i].slice < 2);
        alloc += r.cells[i].alloc_bytes;
        end += r.cells[i].end_bytes;
        if (r.cells[i].slice == 1) {
            CHECK_EQ_INT(r.cells[i].alloc_bytes, 10);  /* only D */
            CHECK_EQ_INT(r.cells[i].end_bytes, 10);
        }
    }
    CHECK_EQ_INT(alloc, 360);
    CHECK_EQ_INT(end, 210);
    pmt_st_report_free(&r);
}

static void
test_mappings_recursion_unknown(void)
{
    stacks_header();
    code(1, "r.py", "rec");
    node(1, 0, 1, 5);
    node(2, 1, 1, 6);       /* rec -> rec -> rec */
    node(3, 2, 1, 6);
    ev(1, PMT_MC_MMAP, 0x100000, 4 * 4096, 3, 6);
    ev(2, PMT_MC_MUNMAP, 0x101000, 4096, 0, -1);   /* a hole in the middle */
    ev(3, PMT_MC_MALLOC, 0x50, 7, 77, 1);           /* node 77 never defined */
    ev(4, PMT_MC_MALLOC, 0x60, 9, 0, -1);           /* no Python frame */
    end();
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK_EQ_INT(r.peak_bytes, 4 * 4096);
    CHECK_EQ_INT(r.end_bytes, 3 * 4096 + 16);
    CHECK_EQ_INT(r.n_stacks, 3);
    CHECK_EQ_INT(r.stacks[0].end_bytes, 3 * 4096);
    CHECK_EQ_INT(r.stacks[0].end_count, 2);         /* two pieces of one mapping */
    CHECK_EQ_INT(r.kinds[PMT_MC_MMAP].bytes, 4 * 4096);
    char d[256];
    describe(&r, &r.stacks[0], d, sizeof(d));
    CHECK_EQ_STR(d, "rec:6 <- rec:6 <- rec:5");
    const pmt_st_func *f = func(&r, "rec");
    CHECK(f);
    if (f) {
        CHECK_EQ_INT(f->alloc_bytes, 4 * 4096);    /* once, though three times on the stack */
        CHECK_EQ_INT(f->alloc_count, 1);
    }
    CHECK(func(&r, "<unknown code>") && func(&r, "<unknown code>")->alloc_bytes == 7);
    CHECK(func(&r, "<no Python frame>") && func(&r, "<no Python frame>")->end_bytes == 9);
    pmt_st_report_free(&r);
}

static void
test_without_stacks_and_threads(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "a.py", "f");
    ev(1, PMT_MC_MALLOC, 0x10, 64, 1, 3);
    ev(2, PMT_MC_MALLOC, 0x20, 64, 1, 4);
    ev(3, PMT_MC_MALLOC, 0x30, 64, 1, 3);
    end();
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK(!r.stacks_recorded);
    CHECK_EQ_INT(r.n_stacks, 2);                    /* one frame each: f:3 and f:4 */
    CHECK_EQ_INT(r.stacks[0].alloc_count, 2);
    CHECK_EQ_INT(r.frames[r.stacks[0].frame].line, 3);
    CHECK_EQ_INT(r.frames[r.stacks[0].frame].parent, PMT_ST_NONE);
    CHECK_EQ_INT(func(&r, "f")->alloc_bytes, 192);
    pmt_st_report_free(&r);
    /* a thread that made nothing: nothing charged, the heap still followed */
    pmt_st_options o = {0, UINT64_MAX, 12345, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.n_stacks, 0);
    CHECK_EQ_INT(r.alloc_bytes, 0);
    CHECK_EQ_INT(r.peak_bytes, 192);
    CHECK_EQ_INT(r.threads[0].alloc_bytes, 192);
    pmt_st_report_free(&r);
}

/* One thread selected: the peak view is that thread's own high-water mark,
 * not what it held at the process's (where it held nothing here). */
static void
test_thread_own_peak(void)
{
    stacks_header();
    code(1, "t.py", "other");
    code(2, "t.py", "mine");
    thread_node(1, 100, "a");
    thread_node(2, 200, "b");
    node(3, 1, 1, 10);
    node(4, 2, 2, 20);
    ev(1, PMT_MC_MALLOC, 0x10, 5000, 3, 10);       /* a: the process's peak, 5000 */
    ev(2, PMT_MC_FREE, 0x10, 0, 0, -1);
    ev(3, PMT_MC_MALLOC, 0x20, 300, 4, 20);        /* b: 300 */
    ev(4, PMT_MC_MMAP, 0x100000, 400, 4, 20);      /* b: 700, its peak */
    ev(5, PMT_MC_MUNMAP, 0x100000, 200, 0, -1);    /* b: 500 */
    ev(6, PMT_MC_MALLOC, 0x30, 100, 4, 20);        /* b: 600 */
    ev(7, PMT_MC_FREE, 0x20, 0, 0, -1);            /* b: 300 */
    end();
    pmt_st_report r;
    pmt_st_options o = {0, UINT64_MAX, 200, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.peak_bytes, 5000);               /* the process's, unchanged */
    CHECK_EQ_INT(r.peak_event, 1);
    CHECK_EQ_INT(r.live_peak_of_thread, 1);
    CHECK_EQ_INT(r.live_peak_event, 4);
    CHECK_EQ_INT(r.peak_live_bytes, 700);           /* at the process's peak: 0 */
    CHECK_EQ_INT(r.peak_live_count, 2);
    CHECK_EQ_INT(r.n_stacks, 1);
    CHECK_EQ_INT(r.stacks[0].peak_bytes, 700);
    CHECK_EQ_INT(r.end_bytes, 300);
    CHECK_EQ_INT(r.alloc_bytes, 800);
    pmt_st_report_free(&r);
    /* thread a: its peak is the process's */
    o.thread = 100;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK(r.live_peak_of_thread && r.live_peak_event == 1 && r.peak_live_bytes == 5000);
    pmt_st_report_free(&r);
    /* a range after a's block: a made nothing there */
    o.lo = 2;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK(r.live_peak_event == 2 && r.peak_live_bytes == 0 && r.peak_live_count == 0);
    pmt_st_report_free(&r);
    /* b from event 5 on: the 100 of event 6 only (the mapping is from before) */
    o.thread = 200;
    o.lo = 4;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK(r.live_peak_event == 6 && r.peak_live_bytes == 100 && r.peak_live_count == 1);
    pmt_st_report_free(&r);
    /* all threads: the process's peak, as before */
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK(!r.live_peak_of_thread && r.live_peak_event == 1 && r.peak_live_bytes == 5000);
    pmt_st_report_free(&r);
}

static void
test_bad_input(void)
{
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer((const uint8_t *)"nonsense", 8, &ALL, &r), -1);
    CHECK(strstr(r.error, "magic") != NULL);
    pmt_st_report_free(&r);
    /* cut anywhere: a report of what is whole, or a clear refusal */
    three_stacks();
    size_t whole = len;
    for (size_t n = 0; n <= whole; n++) {
        int rc = pmt_st_read_buffer(buf, n, &ALL, &r);
        CHECK(rc == 0 || r.error[0] != '\0');
        if (rc == 0) {
            CHECK(r.end_bytes <= 210 + 350);
        }
        pmt_st_report_free(&r);
    }
    /* a byte flipped anywhere: never a crash */
    static uint8_t copy[1 << 16];
    memcpy(copy, buf, whole);
    for (size_t i = 0; i < whole; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            memcpy(buf, copy, whole);
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = pmt_st_read_buffer(buf, whole, &ALL, &r);
            CHECK(rc == 0 || r.error[0] != '\0');
            pmt_st_report_free(&r);
        }
    }
    /* a size no process can allocate: that event is skipped and counted */
    header(PMT_MC_RECORD_BASE);
    code(1, "a.py", "f");
    ev(1, PMT_MC_MALLOC, 0x10, 64, 1, 3);
    ev(2, PMT_MC_MALLOC, 0x20, UINT64_MAX - 10, 1, 3);
    ev(3, PMT_MC_MALLOC, 0x30, 64, 1, 3);
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK_EQ_INT(r.impossible, 1);
    CHECK_EQ_INT(r.alloc_bytes, 128);
    CHECK_EQ_INT(r.peak_bytes, 128);
    pmt_st_report_free(&r);
    CHECK_EQ_INT(pmt_st_read("/nonexistent/cap", &ALL, &r), -1);
    CHECK(strstr(r.error, "cannot open") != NULL);
    pmt_st_report_free(&r);
}

/* TIME records: seconds and RSS on the heap samples, the peak's time, a
 * range given in seconds. */
static void
test_clock(void)
{
    stacks_header();
    code(1, "m.py", "f");
    node(1, 0, 1, 10);
    time_rec(0, 10 << 20, 1);
    ev(1, PMT_MC_MALLOC, 0xA0, 100, 1, 10);
    ev(2, PMT_MC_MALLOC, 0xB0, 100, 1, 10);
    ev(3, PMT_MC_MALLOC, 0xC0, 100, 1, 10);
    time_rec(2000000000, 20 << 20, 4);          /* 2 s later: a sleep between phases */
    ev(4, PMT_MC_MALLOC, 0xD0, 1000, 1, 10);
    ev(5, PMT_MC_MALLOC, 0xE0, 1000, 1, 10);   /* the peak: 2300 after event 5, at 2 s */
    ev(6, PMT_MC_FREE, 0xD0, 0, 0, -1);
    time_rec(3000000000u, 15 << 20, 7);
    ev(7, PMT_MC_FREE, 0xE0, 0, 0, -1);
    end();
    pmt_st_report r;
    pmt_st_options o = {0, UINT64_MAX, PMT_ST_ALL_THREADS, 7, 0, 0, 0, 0};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK(r.has_clock);
    CHECK_EQ_INT(r.n_points, 7);
    CHECK_EQ_INT(r.peak_event, 5);
    CHECK_EQ_INT(r.peak_ns, 2000000000);
    CHECK_EQ_INT(r.end_ns, 3000000000u);
    CHECK_EQ_INT(r.rss_peak, 20 << 20);
    CHECK_EQ_INT(r.rss_peak_ns, 2000000000);
    /* 7 stretches of 3/7 s: the first phase in the first, the pause keeps
     * its heap, the second phase from 2 s (the fifth stretch) */
    if (r.n_points == 7) {
        CHECK(r.points[0].ns == 0 && r.points[0].heap == 300 && r.points[0].event == 3);
        CHECK_EQ_INT(r.points[0].rss, 10 << 20);
        for (int k = 1; k < 4; k++) {
            CHECK(r.points[k].heap == 300 && r.points[k].event == 3 &&
                  r.points[k].rss == 10 << 20);
            CHECK_EQ_INT(r.points[k].ns, k * 3000000000ull / 7);
        }
        CHECK(r.points[4].heap == 2300 && r.points[4].event == 6);
        CHECK_EQ_INT(r.points[4].rss, 20 << 20);
        CHECK(r.points[6].heap == 1300 && r.points[6].event == 7);
        CHECK_EQ_INT(r.points[6].rss, 15 << 20);
    }
    pmt_st_report_free(&r);
    /* [1.5 s, 2.5 s): the events of the second phase before the 3 s record */
    o = (pmt_st_options){0, 0, PMT_ST_ALL_THREADS, 0, 0, 1, 1500000000, 2500000000u};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK_EQ_INT(r.lo, 3);
    CHECK_EQ_INT(r.hi, 6);
    CHECK_EQ_INT(r.alloc_bytes, 2000);
    CHECK_EQ_INT(r.lo_ns, 2000000000);
    pmt_st_report_free(&r);
    /* from 2.5 s to the end */
    o = (pmt_st_options){0, 0, PMT_ST_ALL_THREADS, 0, 0, 1, 2500000000u, UINT64_MAX};
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &o, &r), 0);
    CHECK(r.lo == 6 && r.hi == 7 && r.alloc_bytes == 0);
    pmt_st_report_free(&r);
    /* a capture without TIME records has no clock */
    three_stacks();
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK(!r.has_clock && r.end_ns == 0 && r.peak_ns == 0);
    pmt_st_report_free(&r);
}

int
main(void)
{
    test_clock();
    test_peak_end_and_inclusive();
    test_range();
    test_points_and_slices();
    test_mappings_recursion_unknown();
    test_without_stacks_and_threads();
    test_thread_own_peak();
    test_bad_input();
    CTEST_MAIN_END();
}
