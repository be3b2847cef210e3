/* test_cpmtlog.c: unit tests for src/core/cpmtlog.c and src/core/rssgate.c. */
#include "ctest.h"
#include "cpmtlog.h"
#include "rssgate.h"
#include "tickclock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static pmt_logwriter w;

static char *
slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static pmt_cpmt_row
row_of(int next, int64_t ev, int64_t dev, int64_t ns, int what, const char *file, int line,
       const char *fn, int64_t rss, int64_t drss)
{
    pmt_cpmt_row r = {next, ev, dev, ns, what, file, file ? strlen(file) : 0, line,
                      fn, fn ? strlen(fn) : 0, rss, drss};
    return r;
}

static void
test_rows(void)
{
    char buf[PMT_CPMT_ROW_MAX + 1];
    pmt_cpmt_row r = row_of(1, 0, 0, 66718000, PMT_EV_CALL, "/home/u/test.py", 9,
                            "create_string", 9101312, 9101312);
    size_t n = pmt_cpmt_format_row(buf, &r, NULL);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 0     +0      0.066718 CALL     test.py #   9 create_string  9101312      9101312\n");
    r = row_of(0, 4, 3, 67285999, PMT_EV_CALL, "test.py", 9, "create_string", 10153984, 0);
    n = pmt_cpmt_format_row(buf, &r, NULL);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "PREV: 4     +3      0.067285 CALL     test.py #   9 create_string 10153984            0\n");
    r = row_of(1, 59, 1, 84531000, PMT_EV_C_RETURN, "test.py", 66, "pop", 17526784, -1052672);
    n = pmt_cpmt_format_row(buf, &r, NULL);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 59    +1      0.084531 C_RETURN test.py #  66 pop           17526784     -1052672\n");
    /* spaces in a file name stay (the reader splits on " #"); in a function name they do
     * not; missing names are "?"; long clocks and event numbers just widen their field */
    r = row_of(1, 1234567, 1234567, 12345678901234, PMT_EV_C_EXCEPTION,
               "<frozen importlib._bootstrap>", 1, "a b\n", 1, 2);
    n = pmt_cpmt_format_row(buf, &r, NULL);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 1234567 +1234567 12345.678901 C_EXCEPTION <frozen importlib._bootstrap> #   1 a_b_                 1            2\n");
    r = row_of(1, 0, 0, 0, 99, NULL, -1, "", 0, 0);
    n = pmt_cpmt_format_row(buf, &r, NULL);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 0     +0      0.000000 ?        ? #  -1 ?                    0            0\n");
    /* a very long name is cut to PMT_CPMT_NAME_MAX and the row still fits */
    static char longname[2000];
    memset(longname, 'x', sizeof longname - 1);
    r = row_of(1, 0, 0, 0, PMT_EV_LINE, longname, 1, longname, 0, 0);
    n = pmt_cpmt_format_row(buf, &r, NULL);
    CHECK(n <= PMT_CPMT_ROW_MAX);
    CHECK_EQ_STR(pmt_cpmt_what_name(PMT_EV_LINE), "LINE");
    /* the cache never changes the text */
    {
        static pmt_cpmt_fmtcache cache;
        char a[PMT_CPMT_ROW_MAX + 1], b[PMT_CPMT_ROW_MAX + 1];
        int64_t vals[] = {0, 1, -1, 9, 10, 99, 100, 4096, -1052672, 17526784, 4294967295LL,
                          4294967296LL, INT64_MAX, INT64_MIN + 1};
        int same = 0, total = 0;
        for (int i = 0; i < 14; i++) {
            for (int j = 0; j < 3; j++) {
                int64_t v = vals[(i + j) % 14];
                r = row_of(j & 1, v < 0 ? -v : v, v, v < 0 ? -v : v, PMT_EV_RETURN, "t.py",
                           (int)(v & 0xffff), "f", v, v);
                size_t na = pmt_cpmt_format_row(a, &r, &cache);
                size_t nb = pmt_cpmt_format_row(b, &r, NULL);
                a[na] = b[nb] = '\0';
                same += na == nb && strcmp(a, b) == 0;
                total++;
            }
        }
        CHECK_EQ_INT(same, total);
        /* names: a new address or length is a new name; event numbers count on */
        char f1[] = "/a/b/one.py", f2[] = "/a/b/two words.py";
        const char *names[] = {f1, f2, f1, "g", "x\ty"};
        size_t lens[] = {sizeof f1 - 1, sizeof f2 - 1, 4, 1, 3};
        same = total = 0;
        for (int i = 0; i < 40; i++) {
            int k = (i * 7) % 5;
            r = row_of(1, 95 + i, 1, 1000 * i, PMT_EV_CALL, names[k], 1, names[(k + 1) % 5], 1, 0);
            r.file_len = lens[k];
            r.function_len = lens[(k + 1) % 5];
            size_t na = pmt_cpmt_format_row(a, &r, &cache);
            size_t nb = pmt_cpmt_format_row(b, &r, NULL);
            a[na] = b[nb] = '\0';
            same += na == nb && strcmp(a, b) == 0;
            total++;
        }
        CHECK_EQ_INT(same, total);
        r = row_of(1, 999, 1, 0, PMT_EV_CALL, f2, 1, "x\ty", 1, 0);
        r.event = 999;
        pmt_cpmt_format_row(a, &r, &cache);
        r.event = 1000;
        a[pmt_cpmt_format_row(a, &r, &cache)] = '\0';
        CHECK(strncmp(a, "NEXT: 1000  +1      0.000000 CALL     two words.py #   1 x_y", 59) == 0);
    }
    CHECK_EQ_STR(pmt_cpmt_what_name(PMT_EV_EXCEPTION), "EXCEPTION");
}

static void
test_log_and_names(const char *dir)
{
    static char buf[1 << 16];
    char path[512];
    /* a fixed local time so the name is known */
    setenv("TZ", "UTC", 1);
    tzset();
    time_t t = 1731009527;  /* 2024-11-07 19:58:47 UTC */
    CHECK(pmt_cpmt_default_name(path, sizeof path, t, 62264, 'P', 2, "3.13.0b3", 0) > 0);
    CHECK_EQ_STR(path, "20241107_195847_62264_P_2_PY3.13.0b3.log");
    CHECK(pmt_cpmt_default_name(path, sizeof path, t, 1, 'T', 1, "3.11.7", 12) > 0);
    CHECK_EQ_STR(path, "20241107_195847_1_T_1_PY3.11.7-12.log");
    CHECK_EQ_INT(pmt_cpmt_default_name(path, 20, t, 1, 'T', 1, "3.11.7", 0), -1);

    /* never overwrite: the second and third opens get suffixes */
    char p1[512], p2[512], p3[512];
    CHECK_EQ_INT(pmt_cpmt_open_default(&w, p1, sizeof p1, dir, t, 7, 'P', 1, "3.11.7", 0), 0);
    pmt_cpmt_write_start(&w, "hello", 5);
    pmt_cpmt_row r = row_of(1, 0, 0, 1000, PMT_EV_CALL, "x.py", 1, "f", 4096, 4096);
    pmt_cpmt_write_row(&w, &r, NULL);
    pmt_cpmt_write_message(&w, "note\n", 5);
    pmt_cpmt_write_msg_row(&w, 1, 1, 1500000, "half way", 8);
    pmt_cpmt_write_msg_row(&w, 123456, 12, 2000000, "done\n", 5);
    pmt_cpmt_write_detach(&w, 1, 2000000, 2, "/tmp/inner.log");
    pmt_cpmt_write_resume(&w, 1, 3500000);
    pmt_cpmt_write_end(&w, 2, 4000000, 8192, 12288, NULL);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    CHECK_EQ_INT(pmt_cpmt_open_default(&w, p2, sizeof p2, dir, t, 7, 'P', 1, "3.11.7", 0), 0);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    CHECK_EQ_INT(pmt_cpmt_open_default(&w, p3, sizeof p3, dir, t, 7, 'P', 1, "3.11.7", 0), 0);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    CHECK(strstr(p1, "/20241107_195847_7_P_1_PY3.11.7.log") != NULL);
    CHECK(strstr(p2, "/20241107_195847_7_P_1_PY3.11.7-1.log") != NULL);
    CHECK(strstr(p3, "/20241107_195847_7_P_1_PY3.11.7-2.log") != NULL);
    CHECK_EQ_STR(slurp(p1, buf, sizeof buf),
                 "hello\n"
                 "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n"
                 "NEXT: 0     +0      0.000001 CALL     x.py #   1 f                 4096         4096\n"
                 "note\n"
                 "MSG:  1     +1      0.001500 # half way\n"
                 "MSG:  123456 +12     0.002000 # done\n"
                 "# DETACH event=1 clock=0.002000 depth=2 log=/tmp/inner.log\n"
                 "# RESUME event=1 clock=0.003500\n"
                 "# END events=2 clock=0.004000 rss=8192 rss_peak=12288 exit=ok\n");
    CHECK_EQ_STR(slurp(p2, buf, sizeof buf), "");
    unlink(p1);
    unlink(p2);
    unlink(p3);
    /* a missing directory fails with ENOENT, not a loop of suffixes */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no/such", dir);
    errno = 0;
    CHECK_EQ_INT(pmt_cpmt_open_default(&w, p1, sizeof p1, missing, t, 7, 'P', 1, "3", 0), -1);
    CHECK_EQ_INT(errno, ENOENT);
}

static void
test_gate(void)
{
    pmt_gate g;
    uint64_t now = (uint64_t)pmt_monotonic_ns();
    pmt_gate_init(&g, 4096, 64, 3, 0, now);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    pmt_gate_add_bytes(4095);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);   /* third event: the event bound */
    pmt_gate_mark(&g, now);
    pmt_gate_add_bytes(4095);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    pmt_gate_add_bytes(1);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);   /* live bytes rose 4096 over the mark */
    pmt_gate_mark_rss(&g, now, 1 << 20);

    /* reuse: freeing and allocating again under the high-water mark reads nothing */
    pmt_gate_init(&g, 4096, 64, 0, 0, now);
    pmt_gate_add_bytes(100000);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    for (int i = 0; i < 1000; i++) {
        pmt_gate_add_bytes(-2000);
        pmt_gate_add_bytes(2000);
        CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    }
    /* a spike above the mark between two events still counts */
    pmt_gate_add_bytes(5000);
    pmt_gate_add_bytes(-5000);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    /* a fall by PMT_GATE_DROP_BYTES may give memory back */
    pmt_gate_add_bytes(-(PMT_GATE_DROP_BYTES - 1));
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    pmt_gate_add_bytes(-1);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    /* RSS stayed: the mark stays, growing back is reuse */
    pmt_gate_mark_rss(&g, now, 1 << 20);
    pmt_gate_add_bytes(PMT_GATE_DROP_BYTES);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    pmt_gate_add_bytes(-2 * PMT_GATE_DROP_BYTES);     /* a fall from the last read */
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    /* RSS fell: the mark restarts, growing back is new memory */
    pmt_gate_mark_rss(&g, now, (1 << 20) - (64 << 10));
    pmt_gate_add_bytes(4096);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    /* large blocks and arenas: any one */
    pmt_gate_add_large();
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);
    pmt_gate_mark(&g, now);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);

    pmt_gate_init(&g, 4096, 64, 0, 0, now);
    pmt_gate_add_blocks(-10);
    pmt_gate_add_blocks(10 + 63);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);
    pmt_gate_add_blocks(1);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 1);   /* live small blocks rose by 64 */
    pmt_gate_mark(&g, now);
    pmt_gate_add_blocks(-64);
    pmt_gate_add_blocks(64);
    CHECK_EQ_INT(pmt_gate_due(&g, now), 0);   /* and again under the mark: reuse */
    pmt_gate_init(&g, 4096, 64, 0, 1000000, now);
    CHECK_EQ_INT(pmt_gate_due(&g, now + 999999), 0);
    CHECK_EQ_INT(pmt_gate_due(&g, now + 1000000), 1);   /* time */
    pmt_gate_init(&g, 4096, 64, 0, 0, now);
    int reads = 0;
    for (int i = 0; i < 100000; i++) {
        reads += pmt_gate_due(&g, now + (uint64_t)i * 1000000000ULL);   /* both bounds off */
    }
    CHECK_EQ_INT(reads, 0);
    CHECK((uint64_t)pmt_monotonic_ns() >= now);
}

static void
test_tickclock(void)
{
    for (int force = 0; force <= 1; force++) {
        pmt_tickclock c;
        pmt_tickclock_init(&c, 200000, force);
        if (force) {
            CHECK_EQ_INT(c.use_tsc, 0);
        }
        int64_t a = pmt_tick_monotonic_ns();
        uint64_t t = pmt_ticks(&c);
        int64_t b = pmt_tick_monotonic_ns();
        /* a stamp converts to a time between the clock reads around it, within 2 us
         * plus the rate's uncertainty (a 200 us calibration: 0.5%) times the time since
         * the anchor (large only if this thread was preempted in between) */
        int64_t ns = pmt_tickclock_ns(&c, t);
        int64_t slack = 2000 + (b - c.na) / 200;
        CHECK(ns >= a - slack && ns <= b + slack);
        /* 20 ms later, after an anchor, still true; stamps never go backwards */
        uint64_t prev = t;
        long backwards = 0;
        while (pmt_tick_monotonic_ns() - b < 20000000) {
            uint64_t u = pmt_ticks(&c);
            backwards += u < prev;
            prev = u;
        }
        CHECK_EQ_INT(backwards, 0);
        pmt_tickclock_anchor(&c);
        a = pmt_tick_monotonic_ns();
        t = pmt_ticks(&c);
        b = pmt_tick_monotonic_ns();
        ns = pmt_tickclock_ns(&c, t);
        slack = 2000 + (b - c.na) / 5000;   /* the rate now rests on a 20 ms baseline */
        CHECK(ns >= a - slack && ns <= b + slack);
        CHECK(pmt_tickclock_ticks_in(&c, 1000000) > 0);
        if (ctest_failures) {
            fprintf(stderr, "tickclock use_tsc=%d ns_per_tick=%g\n", c.use_tsc, c.ns_per_tick);
        }
    }
}

int
main(void)
{
    char dir[] = "/tmp/pmt_cpmt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_rows();
    test_log_and_names(dir);
    test_gate();
    test_tickclock();
    rmdir(dir);
    CTEST_MAIN_END();
}
