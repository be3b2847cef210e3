/* test_cpmtfmt.c: the row formatter (src/core/cpmtfmt.c) against the plain
 * reference (cpmtfmt_ref.h), byte for byte, on many random rows.
 *
 * Rows come in runs that keep some fields and change others, as a log's rows
 * do, so the formatter's caches are hit, missed and invalidated in every
 * combination: event numbers counting up across 9 -> 10, 99999 -> 100000 and
 * 20-digit values, negative numbers of every field, clocks at the edges of
 * seconds and of int64, every event kind and unknown ones, line 0, -1 and
 * past 9999, names empty, missing, long (cut at PMT_CPMT_NAME_MAX), full of
 * control bytes, DEL, spaces, '#' and non-ASCII bytes, the same buffer passed
 * with another length.  Each row is formatted with a persistent cache, with
 * none, and through a pmt_logwriter into a file (both of its paths: straight
 * into its buffer, and through a stack buffer when the buffer is nearly full),
 * and compared with the reference. */
#include "ctest.h"
#include "cpmtfmt_ref.h"
#include "cpmtlog.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t
rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t
below(uint64_t n)
{
    return rnd() % n;
}

/* A number of any magnitude: a few digits mostly, sometimes up to 20 digits,
 * sometimes an edge, negative when neg allows it. */
static int64_t
any_number(int neg)
{
    static const int64_t edges[] = {0, 1, 9, 10, 99, 100, 9999, 10000, 99999, 100000,
                                    9999999, 10000000, 99999999, 100000000, 999999999999,
                                    4294967295LL, 4294967296LL, INT64_MAX, INT64_MAX - 1,
                                    INT64_MIN, INT64_MIN + 1};
    int64_t v;
    switch (below(6)) {
    case 0:
        v = edges[below(sizeof edges / sizeof edges[0])];
        break;
    case 1:
        v = (int64_t)rnd();     /* up to 19-20 characters */
        break;
    case 2:
        v = (int64_t)(rnd() >> below(64));
        break;
    default:
        v = (int64_t)below(100000);
        break;
    }
    if (neg && below(4) == 0 && v != INT64_MIN) {
        v = -v;
    }
    return v;
}

static int64_t
any_clock(void)
{
    switch (below(8)) {
    case 0:
        return (int64_t)below(3) * 1000000000 - 1 + (int64_t)below(3);   /* second edges */
    case 1:
        return INT64_MAX - (int64_t)below(2000);
    case 2:
        return INT64_MIN + 1 + (int64_t)below(2000);
    case 3:
        return -(int64_t)below(5000000000ULL);
    case 4:
        return (int64_t)(rnd() >> 1);
    default:
        return (int64_t)below(100000000000ULL);
    }
}

static int
any_line(void)
{
    static const int edges[] = {0, -1, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999,
                                INT_MAX, INT_MIN, -99, -999, -1000};
    if (below(3) == 0) {
        return edges[below(sizeof edges / sizeof edges[0])];
    }
    return (int)below(below(2) ? 10000 : 400);
}

/* The name pool: immutable buffers (the formatter's cache may key on their
 * address), each passed with its length or a shorter one. */
enum { NNAMES = 24 };
static char names[NNAMES][700];
static size_t name_len[NNAMES];
/* The same bytes at other addresses: the spare function name is keyed by
 * its bytes, the last one by its address. */
static char copies[NNAMES][700];

static void
make_names(void)
{
    static const char *const fixed[] = {
        "/home/user/project/app/models.py", "json/decoder.py", "test.py", "a/", "/",
        "<frozen importlib._bootstrap>", "a # b.py", "create_string", "__init__", "append",
        "<lambda>", "x\ty z", "caf\xc3\xa9.py", "\xff\xfe\x80", "d\x7f\x01l", "",
        "exactly_13_ch", "twelve_chars", "fourteen_chars", "a/b/c/d/e/f/gh.py"};
    int k = 0;
    for (; k < (int)(sizeof fixed / sizeof fixed[0]); k++) {
        name_len[k] = strlen(fixed[k]);
        memcpy(names[k], fixed[k], name_len[k]);
    }
    for (; k < NNAMES; k++) {   /* long and random, with slashes and any byte */
        name_len[k] = k & 1 ? 200 + below(500) : 250 + below(12);
        for (size_t i = 0; i < name_len[k]; i++) {
            unsigned c = (unsigned)below(256);
            names[k][i] = below(30) == 0 ? '/' : (char)(below(3) ? 'a' + c % 26 : c);
        }
    }
    memcpy(copies, names, sizeof names);
}

static void
pick_name(const char **s, size_t *n)
{
    if (below(40) == 0) {
        *s = NULL;
        *n = below(3);      /* a length with no name: ignored */
        return;
    }
    int k = (int)below(NNAMES);
    *s = below(4) == 0 ? copies[k] : names[k];
    *n = below(8) == 0 && name_len[k] ? below(name_len[k] + 1) : name_len[k];
}

static void
change_some(pmt_cpmt_row *r, unsigned change)
{
    if (change & 1) {
        r->next = (int)below(2);
    }
    if (change & 2) {
        r->event = below(4) ? (int64_t)below(200000) : any_number(1);
    }
    else if (r->event < INT64_MAX) {
        r->event++;     /* the usual: counting up */
    }
    if (change & 4) {
        r->d_event = below(2) ? 1 : any_number(1);
    }
    if (change & 8) {
        r->clock_ns = any_clock();
    }
    else if (r->clock_ns < INT64_MAX - 5000000) {
        r->clock_ns += (int64_t)below(5000000);
    }
    if (change & 16) {
        r->what = (int)below(11) - 1;
    }
    if (change & 32) {
        pick_name(&r->file, &r->file_len);
    }
    if (change & 64) {
        r->line = any_line();
    }
    if (change & 128) {
        /* half the time back to the name before (two names alternating,
         * as a loop's two C calls do) */
        static const char *before;
        static size_t before_len;
        const char *s = r->function;
        size_t n = r->function_len;
        if (below(2) && (before != NULL || below(8) == 0)) {
            r->function = before;
            r->function_len = before_len;
        }
        else {
            pick_name(&r->function, &r->function_len);
        }
        before = s;
        before_len = n;
    }
    if (change & 256) {
        r->rss = any_number(below(8) == 0);
        r->d_rss = any_number(1);
    }
}

static void
show_diff(const char *got, size_t ng, const char *want, size_t nw)
{
    fprintf(stderr, "got  %zu: %.*s", ng, (int)ng, got);
    fprintf(stderr, "want %zu: %.*s", nw, (int)nw, want);
}

enum { ROWS = 400000 };

static void
test_random_rows(const char *dir)
{
    static pmt_cpmt_fmtcache cache, wcache;
    static pmt_logwriter w;
    static char expect[1 << 16];
    char path[512];
    snprintf(path, sizeof path, "%s/rows.log", dir);
    CHECK_EQ_INT(pmt_lw_open(&w, path, 0), 0);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t expect_len = 0;
    long mismatches = 0, file_mismatches = 0;
    pmt_cpmt_row r = {1, 0, 1, 0, 0, names[0], name_len[0], 9, names[7], name_len[7], 0, 0};
    /* the row is formatted into the end of a heap block of exactly
     * PMT_CPMT_ROW_MAX bytes: under ASan a write past the reserve fails */
    char *out = malloc(PMT_CPMT_ROW_MAX);
    char want[PMT_CPMT_ROW_MAX], none[PMT_CPMT_ROW_MAX];
    CHECK(out != NULL);
    for (long i = 0; i < ROWS && out; i++) {
        /* mostly one or two fields change; sometimes all of them */
        unsigned change = below(16) == 0 ? 0x1ff : (unsigned)(1u << below(9)) | (1u << below(9));
        if (below(3) == 0) {
            change &= ~2u;      /* count up */
        }
        change_some(&r, change);
        size_t nw = ref_format_row(want, &r);
        size_t ng = pmt_cpmt_format_row(out, &r, &cache);
        size_t nn = pmt_cpmt_format_row(none, &r, NULL);
        if (ng != nw || memcmp(out, want, nw) != 0 || nn != nw || memcmp(none, want, nw) != 0) {
            if (mismatches++ < 5) {
                show_diff(ng != nw || memcmp(out, want, nw) ? out : none,
                          ng != nw || memcmp(out, want, nw) ? ng : nn, want, nw);
            }
        }
        /* the writer: the same rows, checked against the file every 64 KiB
         * (written by pmt_cpmt_write_row, or appended when they fit) */
        if (expect_len + nw > sizeof expect) {
            CHECK_EQ_INT(pmt_lw_flush(&w), 0);
            char got[sizeof expect];
            ssize_t n = read(fd, got, expect_len);
            file_mismatches += n != (ssize_t)expect_len || memcmp(got, expect, expect_len) != 0;
            expect_len = 0;
        }
        memcpy(expect + expect_len, want, nw);
        expect_len += nw;
        if ((i & 1) && pmt_cpmt_row_fits(&w)) {
            pmt_cpmt_append_row(&w, &r, &wcache);   /* every other row: cPyMemTrace's way */
        }
        else {
            pmt_cpmt_write_row(&w, &r, &wcache);
        }
    }
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    static char got[sizeof expect];
    ssize_t n = read(fd, got, sizeof got);
    file_mismatches += n != (ssize_t)expect_len || memcmp(got, expect, expect_len) != 0;
    close(fd);
    unlink(path);
    free(out);
    CHECK_EQ_INT(mismatches, 0);
    CHECK_EQ_INT(file_mismatches, 0);
}

/* The spare function name is keyed by its bytes: a name whose bytes
 * changed at the same address and length is not served its old text, nor is
 * a name of other bytes that the spare's address now holds. */
static void
test_function_spare(void)
{
    static pmt_cpmt_fmtcache cache;
    char a[16] = "len", b[16] = "append", got[PMT_CPMT_ROW_MAX], want[PMT_CPMT_ROW_MAX];
    pmt_cpmt_row r = {1, 0, 1, 0, PMT_EV_C_CALL, "x.py", 4, 9, a, 3, 0, 0};
    const char *const seq[][2] = {
        {a, "len"}, {b, "append"}, {a, "len"}, {b, "append"},       /* alternating */
        {a, "abc"}, {b, "append"}, {a, "len"},   /* a changed while the spare */
        {b, "lem"}, {a, "len"}, {b, "appen\t"}, {a, "len"}, {b, "appen\t"},
    };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        char *p = (char *)seq[i][0];
        memcpy(p, seq[i][1], strlen(seq[i][1]));
        r.function = p;
        r.function_len = strlen(seq[i][1]);
        r.event++;
        size_t ng = pmt_cpmt_format_row(got, &r, &cache);
        size_t nw = ref_format_row(want, &r);
        if (ng != nw || memcmp(got, want, nw) != 0) {
            fprintf(stderr, "row %zu:\n", i);
            show_diff(got, ng, want, nw);
        }
        CHECK(ng == nw && memcmp(got, want, nw) == 0);
    }
}

/* A few rows spelled out, so the reference itself is checked against the
 * seed's layout (the rows of test_cpmtlog.c and the seed's log). */
static void
test_reference(void)
{
    char buf[PMT_CPMT_ROW_MAX + 1];
    pmt_cpmt_row r = {1, 0, 0, 66718000, PMT_EV_CALL, "/home/u/test.py", 15, 9,
                      "create_string", 13, 9101312, 9101312};
    buf[ref_format_row(buf, &r)] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 0     +0      0.066718 CALL     test.py #   9 create_string  9101312      9101312\n");
    pmt_cpmt_row s = {0, 59, 1, 84531000, PMT_EV_C_RETURN, "test.py", 7, 66, "pop", 3,
                      17526784, -1052672};
    buf[ref_format_row(buf, &s)] = '\0';
    CHECK_EQ_STR(buf, "PREV: 59    +1      0.084531 C_RETURN test.py #  66 pop           17526784     -1052672\n");
    pmt_cpmt_row t = {1, 1234567, -3, -1500, 99, NULL, 0, -1, "a b\n", 4, -5, 0};
    buf[ref_format_row(buf, &t)] = '\0';
    CHECK_EQ_STR(buf, "NEXT: 1234567 -3      -0.000001 ?        ? #  -1 a_b_                -5            0\n");
}

int
main(void)
{
    char dir[] = "/tmp/pmt_cpmtfmt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    make_names();
    test_reference();
    test_function_spare();
    test_random_rows(dir);
    rmdir(dir);
    CTEST_MAIN_END();
}
