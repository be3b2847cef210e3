/* test_cpmtrow.c: unit tests for src/core/cpmtrow.c (one line of a cPyMemTrace log). */
#include "ctest.h"
#include "cpmtlog.h"
#include "cpmtrow.h"

#include <stdint.h>

static int
parse(const char *s, pmt_cpmt_parsed *r)
{
    memset(r, 0, sizeof(*r));
    return pmt_cpmt_parse_row(s, strlen(s), r);
}

static int
field_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void
test_seed_rows(void)
{
    pmt_cpmt_parsed r;
    CHECK(parse("NEXT: 0     +0      0.066718 CALL   test.py #   9 create_string  9101312      "
                "9101312", &r));
    CHECK_EQ_INT(r.next, 1);
    CHECK_EQ_INT(r.event, 0);
    CHECK_EQ_INT(r.d_event, 0);
    CHECK(field_is(r.clock, r.clock_len, "0.066718"));
    CHECK(field_is(r.what, r.what_len, "CALL"));
    CHECK(field_is(r.file, r.file_len, "test.py"));
    CHECK_EQ_INT(r.line, 9);
    CHECK(field_is(r.function, r.function_len, "create_string"));
    CHECK_EQ_INT(r.rss, 9101312);
    CHECK_EQ_INT(r.d_rss, 9101312);
    CHECK_EQ_INT(r.overflow, 0);
    CHECK(parse("PREV: 4     +3      0.067285 CALL   test.py #   9 create_string 10153984    "
                "        0", &r));
    CHECK_EQ_INT(r.next, 0);
    CHECK_EQ_INT(r.d_event, 3);
    CHECK_EQ_INT(r.d_rss, 0);
    CHECK(parse("NEXT: 7 +7 0.000200 C_EXCEPTION x.py #   3 <lambda>  9000000      -101312\r", &r));
    CHECK(field_is(r.what, r.what_len, "C_EXCEPTION"));
    CHECK_EQ_INT(r.d_rss, -101312);
    CHECK(parse("NEXT: 1 -1 5 LINE a.py #-2 f -3 +4", &r));   /* signs where allowed, no '.' */
    CHECK_EQ_INT(r.d_event, -1);
    CHECK_EQ_INT(r.line, -2);
    CHECK_EQ_INT(r.rss, -3);
    CHECK_EQ_INT(r.d_rss, 4);
    CHECK(field_is(r.clock, r.clock_len, "5"));
}

static void
test_file_names(void)
{
    pmt_cpmt_parsed r;
    /* spaces in the name; the ws before '#' is not part of it */
    CHECK(parse("NEXT: 0 +0 0.1 CALL <frozen importlib._bootstrap> #1002 _find_and_load 1 1", &r));
    CHECK(field_is(r.file, r.file_len, "<frozen importlib._bootstrap>"));
    CHECK_EQ_INT(r.line, 1002);
    /* a '#' in the name: the row's '#' is the first one with a valid rest */
    CHECK(parse("NEXT: 0 +0 0.1 CALL a #1 b.py #  10 fn 1 2", &r));
    CHECK(field_is(r.file, r.file_len, "a #1 b.py"));
    CHECK_EQ_INT(r.line, 10);
    CHECK(field_is(r.function, r.function_len, "fn"));
    /* an empty name */
    CHECK(parse("NEXT: 0 +0 0.1 CALL # 3 fn 1 2", &r));
    CHECK_EQ_INT(r.file_len, 0);
    /* bytes past ASCII, NUL: part of names, never separators */
    static const char odd[] = "NEXT: 0 +0 0.1 CALL \xc3\xa9\x00x.py # 3 f\xff\xa0g 1 2";
    memset(&r, 0, sizeof(r));
    CHECK(pmt_cpmt_parse_row(odd, sizeof(odd) - 1, &r));
    CHECK_EQ_INT(r.file_len, 7);
    CHECK_EQ_INT(r.function_len, 4);
    /* a no-break space (C2 A0) is not ws: the function runs on */
    CHECK(!parse("NEXT: 0 +0 0.1 CALL a.py # 3 f\xc2\xa0" "1 2", &r));
}

static void
test_not_rows(void)
{
    pmt_cpmt_parsed r;
    static const char *const bad[] = {
        "",
        "NEXT:",
        "NEXT:0 +0 0.1 CALL a.py # 3 f 1 2",            /* no ws after the kind */
        " NEXT: 0 +0 0.1 CALL a.py # 3 f 1 2",          /* leading ws */
        "next: 0 +0 0.1 CALL a.py # 3 f 1 2",
        "NEXT: -1 +0 0.1 CALL a.py # 3 f 1 2",          /* Event has no sign */
        "NEXT: 0 +0 .1 CALL a.py # 3 f 1 2",
        "NEXT: 0 +0 0. CALL a.py # 3 f 1 2",
        "NEXT: 0 +0 0.1 call a.py # 3 f 1 2",
        "NEXT: 0 +0 0.1 CALLx a.py # 3 f 1 2",
        "NEXT: 0 +0 0.1 CALL a.py 3 f 1 2",             /* no '#' */
        "NEXT: 0 +0 0.1 CALL a.py # +3 f 1 2",          /* line has no '+' */
        "NEXT: 0 +0 0.1 CALL a.py # 3 f 1",
        "NEXT: 0 +0 0.1 CALL a.py # 3 f 1 2 3",
        "NEXT: 0 +0 0.1 CALL a.py # 3 f +1 2",          /* RSS has no '+' */
        "NEXT: 0 +0 0.1 CALL a.py # 3 f 1 2x",
        "NEXT: 123456789012345678901 +0 0.1 CALL a.py # 3 f 1 2",   /* 21 digits */
        "NEXT: 0 +0 0.123456789012345678901 CALL a.py # 3 f 1 2",
        "MSG:  5 +1 0.1 # a message",
        "# END events=66 clock=0.084600 rss=9035776 rss_peak=17326080 exit=ok",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &r)) {
            fprintf(stderr, "parsed as a row: %s\n", bad[i]);
            CHECK(0);
        }
    }
}

static void
test_numbers(void)
{
    pmt_cpmt_parsed r;
    /* 20 digits are a row; past int64 they set overflow */
    CHECK(parse("NEXT: 99999999999999999999 +0 0.1 CALL a.py # 3 f 1 2", &r));
    CHECK_EQ_INT(r.overflow, 1);
    CHECK(parse("NEXT: 9223372036854775807 +0 0.1 CALL a.py # 3 f -9223372036854775807 2", &r));
    CHECK_EQ_INT(r.overflow, 0);
    CHECK(r.event == INT64_MAX && r.rss == -INT64_MAX);
    CHECK(parse("NEXT: 9223372036854775808 +0 0.1 CALL a.py # 3 f 1 2", &r));
    CHECK_EQ_INT(r.overflow, 1);
    CHECK(parse("NEXT: 00000000000000000007 +0 0.1 CALL a.py # 3 f 1 -0", &r));
    CHECK_EQ_INT(r.event, 7);
    CHECK_EQ_INT(r.d_rss, 0);
    /* an overflowing number after a '#' that is not the row's does not count */
    CHECK(parse("NEXT: 0 +0 0.1 CALL a #99999999999999999999 x y #3 f 1 2", &r));
    CHECK_EQ_INT(r.overflow, 0);
    CHECK(field_is(r.file, r.file_len, "a #99999999999999999999 x y"));
}

static void
test_round_trip_of_the_writer(void)
{
    /* every row cpmtlog.c writes reads back with the same fields */
    static const char *const files[] = {"test.py", "<frozen importlib._bootstrap>", "a # b.py"};
    static const char *const funcs[] = {"create_string", "<lambda>", "append"};
    char buf[PMT_CPMT_ROW_MAX + 1];
    for (int i = 0; i < 300; i++) {
        const char *f = files[i % 3], *fn = funcs[(i / 3) % 3];
        pmt_cpmt_row w = {i & 1, i * 7919LL, i % 5 ? i : -i, 1000LL * i * i, i % 7,
                          f, strlen(f), i * 13 % 2000, fn, strlen(fn),
                          9101312LL + i * 4096LL, (i % 3 - 1) * 4096LL * i};
        size_t n = pmt_cpmt_format_row(buf, &w, NULL);
        CHECK(n > 0 && buf[n - 1] == '\n');
        pmt_cpmt_parsed r;
        memset(&r, 0, sizeof(r));
        CHECK(pmt_cpmt_parse_row(buf, n - 1, &r));
        CHECK_EQ_INT(r.next, w.next);
        CHECK_EQ_INT(r.event, w.event);
        CHECK_EQ_INT(r.line, w.line);
        CHECK_EQ_INT(r.rss, w.rss);
        CHECK_EQ_INT(r.d_rss, w.d_rss);
        CHECK(field_is(r.what, r.what_len, pmt_cpmt_what_name(w.what)));
        CHECK(field_is(r.file, r.file_len, f));
        CHECK(field_is(r.function, r.function_len, fn));
    }
}

static void
test_header_and_end(void)
{
    CHECK(pmt_cpmt_is_header(pmt_cpmt_header, strlen(pmt_cpmt_header)));
    static const char *const yes[] = {
        "Event dEvent Clock What File #line Function RSS dRSS",
        "\t Event\tdEvent  Clock What File #line Function RSS dRSS \r",
    };
    static const char *const no[] = {
        "", "Event dEvent Clock What File #line Function RSS",
        "Event dEvent Clock What File #line Function RSS dRSS x",
        "Event dEvent Clock What File#line Function RSS dRSS",
        "EventdEvent Clock What File #line Function RSS dRSS",
        "Event dEvent Clock What File #line Function RSS dRSSx",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        CHECK(pmt_cpmt_is_header(yes[i], strlen(yes[i])));
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        CHECK(!pmt_cpmt_is_header(no[i], strlen(no[i])));
    }
    static const char end[] = "# END events=66 clock=0.084600 rss=9035776 rss_peak=1 exit=ok";
    CHECK(pmt_cpmt_is_end(end, strlen(end)));
    CHECK(pmt_cpmt_is_end("# END events=0 ", 15));
    CHECK(!pmt_cpmt_is_end("# END events=0", 14));
    CHECK(!pmt_cpmt_is_end("# END events= 5 ", 16));
    CHECK(!pmt_cpmt_is_end("# END of something else", 23));
    CHECK(!pmt_cpmt_is_end(" # END events=5 x", 17));
}

int
main(void)
{
    test_seed_rows();
    test_file_names();
    test_not_rows();
    test_numbers();
    test_round_trip_of_the_writer();
    test_header_and_end();
    CTEST_MAIN_END();
}
