/* test_cpmtsum.c: unit tests for src/core/cpmtsum.c (a cPyMemTrace log summarised). */
#include "ctest.h"
#include "cpmtsum.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The seed's Profile() log (tests/fixtures/cpmt/seed-profile.log), with a note
 * and the clean-end line. */
static const char SEED[] =
    "a message\n"
    "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n"
    "NEXT: 0     +0      0.066718 CALL   test.py #   9 create_string  9101312      9101312\n"
    "NEXT: 1     +1      0.067265 RETURN test.py #  10 create_string 10153984      1052672\n"
    "PREV: 4     +3      0.067285 CALL   test.py #   9 create_string 10153984            0\n"
    "NEXT: 5     +4      0.067777 RETURN test.py #  10 create_string 11206656      1052672\n"
    "NEXT: 6     +1      0.067800 C_CALL test.py #  64 append        11206656        -4096\n"
    "# DETACH event=6 clock=0.067900 depth=2 log=inner.log\n"
    "NEXT: 9     +3      0.068356 RETURN test.py #  10 create_string 12259328      2097152\n"
    "NEXT: 10    +1      0.068400 RETURN other.py #  3 create_string 12259328      -1052672\n"
    "# END events=11 clock=0.0685 rss=9035776 rss_peak=17326080 exit=ok\n";

static int
summarise(pmt_cpmtsum *s, const char *text, size_t len, size_t top, size_t chunk)
{
    pmt_cpmtsum_init(s, top);
    for (size_t i = 0; i < len; i += chunk) {
        if (pmt_cpmtsum_feed(s, text + i, len - i < chunk ? len - i : chunk) != 0) {
            return -1;
        }
    }
    return pmt_cpmtsum_finish(s);
}

static int
name_is(const pmt_cpmtsum *s, uint32_t id, const char *want)
{
    size_t n;
    const char *p = pmt_cpmtsum_name(s, id, &n);
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void
check_seed(const pmt_cpmtsum *s, size_t top)
{
    CHECK(s->seen_header);
    CHECK_EQ_INT(s->records, 7);
    CHECK_EQ_INT(s->next_records, 6);
    CHECK_EQ_INT(s->first_rss, 9101312);
    CHECK_EQ_INT(s->last_rss, 12259328);
    CHECK_EQ_INT(s->last_event, 10);
    CHECK_EQ_STR(s->last_clock, "0.068400");
    CHECK(s->complete && !s->truncated && !s->overflow);
    /* the start row (event 0) is left out; ties keep the log's order */
    static const int64_t d[] = {2097152, 1052672, 1052672, -1052672, -4096};
    static const int64_t ev[] = {9, 1, 5, 10, 6};
    CHECK_EQ_INT(s->n_largest, top < 5 ? top : 5);
    for (size_t i = 0; i < s->n_largest; i++) {
        CHECK_EQ_INT(s->largest[i].d_rss, d[i]);
        CHECK_EQ_INT(s->largest[i].event, ev[i]);
    }
    if (s->n_largest >= 5) {
        CHECK(name_is(s, s->largest[4].what, "C_CALL"));
        CHECK(name_is(s, s->funcs[s->largest[4].func].function, "append"));
        CHECK_EQ_INT(s->largest[4].line, 64);
        CHECK(name_is(s, s->funcs[s->largest[3].func].file, "other.py"));
    }
    /* by (function, file): create_string/test.py +4 MiB in 3 rows, then
     * append -4096, create_string/other.py -1 MiB */
    CHECK_EQ_INT(s->n_funcs, 3);
    CHECK_EQ_INT(s->n_by_function, top < 3 ? top : 3);
    if (s->n_by_function == 3) {
        const pmt_cpmtsum_func *f = &s->funcs[s->by_function[0]];
        CHECK(name_is(s, f->function, "create_string") && name_is(s, f->file, "test.py"));
        CHECK_EQ_INT(f->d_rss, 4202496);
        CHECK_EQ_INT(f->rows, 3);
        CHECK_EQ_INT(s->funcs[s->by_function[1]].d_rss, -4096);
        CHECK_EQ_INT(s->funcs[s->by_function[2]].d_rss, -1052672);
    }
}

static void
test_seed_in_every_chunk_size(void)
{
    size_t len = sizeof(SEED) - 1;
    for (size_t chunk = 1; chunk <= len; chunk += chunk < 40 ? 1 : 37) {
        pmt_cpmtsum s;
        CHECK_EQ_INT(summarise(&s, SEED, len, 10, chunk), 0);
        check_seed(&s, 10);
        pmt_cpmtsum_free(&s);
    }
    for (size_t top = 0; top < 7; top++) {
        pmt_cpmtsum s;
        CHECK_EQ_INT(summarise(&s, SEED, len, top, 4096), 0);
        check_seed(&s, top);
        pmt_cpmtsum_free(&s);
    }
}

static void
test_ends(void)
{
    pmt_cpmtsum s;
    size_t len = sizeof(SEED) - 1;
    /* cut inside the last row: truncated, the row is not counted */
    const char *cut = strstr(SEED, "NEXT: 10") + 20;
    CHECK_EQ_INT(summarise(&s, SEED, (size_t)(cut - SEED), 10, 64), 0);
    CHECK(s.truncated && !s.complete);
    CHECK_EQ_INT(s.records, 6);
    pmt_cpmtsum_free(&s);
    /* a whole last row without its newline is cut short too */
    CHECK_EQ_INT(summarise(&s, SEED, (size_t)(strstr(SEED, "# END") - 1 - SEED), 10, 64), 0);
    CHECK(s.truncated && !s.complete);
    CHECK_EQ_INT(s.records, 6);
    pmt_cpmtsum_free(&s);
    /* without the END line: complete only with it */
    CHECK_EQ_INT(summarise(&s, SEED, (size_t)(strstr(SEED, "# END") - SEED), 10, 64), 0);
    CHECK(!s.truncated && !s.complete);
    CHECK_EQ_INT(s.records, 7);
    pmt_cpmtsum_free(&s);
    /* a blank line after END: not complete */
    char *more = malloc(len + 2);
    memcpy(more, SEED, len);
    more[len] = '\n';
    CHECK_EQ_INT(summarise(&s, more, len + 1, 10, 64), 0);
    CHECK(!s.complete && !s.truncated);
    pmt_cpmtsum_free(&s);
    free(more);
    /* no header: not a log; a header as the last line without newline is one */
    CHECK_EQ_INT(summarise(&s, "hello\nworld\n", 12, 10, 3), 0);
    CHECK(!s.seen_header);
    pmt_cpmtsum_free(&s);
    static const char hdr[] = "x\nEvent dEvent Clock What File #line Function RSS dRSS";
    CHECK_EQ_INT(summarise(&s, hdr, sizeof(hdr) - 1, 10, 5), 0);
    CHECK(s.seen_header && !s.truncated && !s.complete);
    CHECK_EQ_INT(s.records, 0);
    pmt_cpmtsum_free(&s);
    CHECK_EQ_INT(summarise(&s, "", 0, 10, 1), 0);
    CHECK(!s.seen_header);
    CHECK_EQ_INT(s.bytes, 0);
    pmt_cpmtsum_free(&s);
}

static void
test_first_row_not_event_zero_counts(void)
{
    static const char log[] =
        "Event dEvent Clock What File #line Function RSS dRSS\n"
        "NEXT: 3 +3 0.1 RETURN a.py # 2 f 5000 5000\n"
        "NEXT: 4 +1 0.2 RETURN a.py # 2 f 6000 1000\n";
    pmt_cpmtsum s;
    CHECK_EQ_INT(summarise(&s, log, sizeof(log) - 1, 10, 7), 0);
    CHECK_EQ_INT(s.n_largest, 2);
    CHECK_EQ_INT(s.largest[0].d_rss, 5000);
    CHECK_EQ_INT(s.funcs[s.by_function[0]].d_rss, 6000);
    pmt_cpmtsum_free(&s);
}

static void
test_overflow(void)
{
    static const char log[] =
        "Event dEvent Clock What File #line Function RSS dRSS\n"
        "NEXT: 1 +1 0.1 RETURN a.py # 2 f 5000 9000000000000000000\n"
        "NEXT: 2 +1 0.2 RETURN a.py # 2 f 6000 9000000000000000000\n";
    pmt_cpmtsum s;
    CHECK_EQ_INT(summarise(&s, log, sizeof(log) - 1, 10, 4096), 0);
    CHECK(s.overflow);   /* the sum of f's changes is past int64 */
    pmt_cpmtsum_free(&s);
}

static void
test_utf8_as_python_replaces(void)
{
    /* expected: bytes.decode("utf-8", "replace").encode() */
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", "\xef\xbf\xbd"},                     /* cut: one U+FFFD */
        {"\xe2\x82x", "\xef\xbf\xbdx"},
        {"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},   /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},   /* surrogate */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = pmt_cpmtsum_utf8_replace((const unsigned char *)cases[i].in,
                                            strlen(cases[i].in), out);
        out[n] = '\0';
        CHECK_EQ_STR(out, cases[i].out);
    }
    /* names that differ only in their invalid bytes are one function */
    static const char log[] =
        "Event dEvent Clock What File #line Function RSS dRSS\n"
        "NEXT: 1 +1 0.1 RETURN a.py # 2 f\xff 5000 100\n"
        "NEXT: 2 +1 0.2 RETURN a.py # 2 f\xfe 6000 100\n";
    pmt_cpmtsum s;
    CHECK_EQ_INT(summarise(&s, log, sizeof(log) - 1, 10, 4096), 0);
    CHECK_EQ_INT(s.n_funcs, 1);
    CHECK(name_is(&s, s.funcs[0].function, "f\xef\xbf\xbd"));
    CHECK_EQ_INT(s.funcs[0].rows, 2);
    pmt_cpmtsum_free(&s);
}

static void
test_many_functions_and_top(void)
{
    /* 5000 functions, each with one change: the top 7 by |dRSS|, ties in order */
    size_t cap = 5000 * 64 + 128, len = 0;
    char *log = malloc(cap);
    len += (size_t)snprintf(log, cap, "Event dEvent Clock What File #line Function RSS dRSS\n");
    for (int i = 1; i <= 5000; i++) {
        int d = (i % 100) * (i % 2 ? 1 : -1);
        len += (size_t)snprintf(log + len, cap - len, "NEXT: %d +1 0.1 CALL m.py # 1 f%d 1 %d\n",
                                i, i, d);
    }
    pmt_cpmtsum s;
    CHECK_EQ_INT(summarise(&s, log, len, 7, 1000), 0);
    CHECK_EQ_INT(s.n_funcs, 5000);
    CHECK_EQ_INT(s.n_largest, 7);
    /* |d| = 99 at i = 99, 199, ... (odd: +99); then 98 at 98, 198, ... (even: -98) */
    CHECK_EQ_INT(s.largest[0].event, 99);
    CHECK_EQ_INT(s.largest[6].event, 699);
    CHECK_EQ_INT(s.n_by_function, 7);
    CHECK_EQ_INT(s.funcs[s.by_function[0]].d_rss, 99);
    CHECK(name_is(&s, s.funcs[s.by_function[0]].function, "f99"));
    pmt_cpmtsum_free(&s);
    free(log);
}

static void
test_lines_past_the_limit(void)
{
    /* a row padded past LINE_MAX is a note, and so is a long END line; the
     * summary holds at most LINE_MAX + 1 bytes of such a line */
    size_t pad = PMT_CPMTSUM_LINE_MAX + 10, cap = 2 * pad + 4096, len = 0;
    char *log = malloc(cap);
    len += (size_t)snprintf(log, cap, "Event dEvent Clock What File #line Function RSS dRSS\n"
                                      "NEXT: 1 +1 0.1 CALL a.py # 1 f 100 100\nNEXT: 2 +1 0.1 CALL ");
    memset(log + len, ' ', pad);
    len += pad;
    len += (size_t)snprintf(log + len, cap - len, "a.py # 1 f 100 100\n# END events=3 ");
    memset(log + len, 'x', pad);
    len += pad;
    log[len++] = '\n';
    for (size_t chunk = 4096; chunk <= len; chunk *= 16) {
        pmt_cpmtsum s;
        CHECK_EQ_INT(summarise(&s, log, len, 10, chunk), 0);
        CHECK_EQ_INT(s.records, 1);
        CHECK(!s.complete && !s.truncated);
        CHECK(s.carry_cap <= 2 * (PMT_CPMTSUM_LINE_MAX + 1));   /* grown by doubling */
        pmt_cpmtsum_free(&s);
    }
    /* a long last line without its newline is cut short all the same */
    pmt_cpmtsum s;
    CHECK_EQ_INT(summarise(&s, log, len - 1, 10, 65536), 0);
    CHECK(s.truncated);
    pmt_cpmtsum_free(&s);
    free(log);
}

static void
test_read_path(void)
{
    pmt_cpmtsum s;
    char dir[] = "/tmp/pmt_cpmtsum_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, SEED, sizeof(SEED) - 1) == (ssize_t)(sizeof(SEED) - 1));
    CHECK(close(fd) == 0);
    pmt_cpmtsum_init(&s, 10);
    CHECK_EQ_INT(pmt_cpmtsum_read_path(&s, path), PMT_CPMTSUM_OK);
    check_seed(&s, 10);
    CHECK_EQ_INT(s.bytes, sizeof(SEED) - 1);
    pmt_cpmtsum_free(&s);

    pmt_cpmtsum_init(&s, 10);
    errno = 0;
    CHECK_EQ_INT(pmt_cpmtsum_read_path(&s, dir), PMT_CPMTSUM_ERRNO);
    CHECK_EQ_INT(errno, EISDIR);
    pmt_cpmtsum_free(&s);

    snprintf(path, sizeof(path), "%s/missing.log", dir);
    pmt_cpmtsum_init(&s, 10);
    CHECK_EQ_INT(pmt_cpmtsum_read_path(&s, path), PMT_CPMTSUM_ERRNO);
    CHECK_EQ_INT(errno, ENOENT);
    pmt_cpmtsum_free(&s);

    /* a FIFO without a writer: refused at once, never waited on */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    CHECK(mkfifo(path, 0600) == 0);
    pmt_cpmtsum_init(&s, 10);
    CHECK_EQ_INT(pmt_cpmtsum_read_path(&s, path), PMT_CPMTSUM_NOT_REGULAR);
    pmt_cpmtsum_free(&s);
    CHECK(unlink(path) == 0);
    snprintf(path, sizeof(path), "%s/a.log", dir);
    CHECK(unlink(path) == 0);
    CHECK(rmdir(dir) == 0);
}

int
main(void)
{
    test_seed_in_every_chunk_size();
    test_ends();
    test_first_row_not_event_zero_counts();
    test_overflow();
    test_utf8_as_python_replaces();
    test_many_functions_and_top();
    test_lines_past_the_limit();
    test_read_path();
    CTEST_MAIN_END();
}
