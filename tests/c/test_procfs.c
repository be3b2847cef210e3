/* test_procfs.c: unit tests for src/core/procfs (parsing /proc text). */
#include "ctest.h"
#include "procfs.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_parse_stat(void)
{
    /* comm with a space and a ')' in it */
    const char *t = "4242 (a b) c) S 17 4242 4242 0 -1 4194560 1000 50 7 2 "
                    "250 130 12 3 20 0 5 0 987654 123456789 3000 "
                    "18446744073709551615 1 2 3 4 5\n";
    pmt_procsample s;
    uint64_t start = 0;
    CHECK_EQ_INT(pmt_parse_stat(t, strlen(t), 100, &s, &start), 0);
    CHECK(s.state == 'S');
    CHECK_EQ_INT(s.ppid, 17);
    CHECK_EQ_INT(s.minflt, 1000);
    CHECK_EQ_INT(s.cminflt, 50);
    CHECK_EQ_INT(s.majflt, 7);
    CHECK_EQ_INT(s.cmajflt, 2);
    CHECK(s.utime == 2.5);
    CHECK(s.stime == 1.3);
    CHECK(s.cutime == 0.12);
    CHECK(s.cstime == 0.03);
    CHECK_EQ_INT(s.num_threads, 5);
    CHECK_EQ_INT(start, 987654);
    /* numbers at and past the ends of int64_t and uint64_t (fuzz_procfs:
     * negating the lowest one was undefined, a longer one wrapped) */
    const char *lo = "1 (x) S 17 1 1 0 -9223372036854775808 0 1000 50 7 2 "
                     "250 130 12 3 20 0 5 0 987654\n";
    CHECK_EQ_INT(pmt_parse_stat(lo, strlen(lo), 100, &s, &start), 0);
    CHECK_EQ_INT(s.minflt, 1000);
    const char *bad[] = {
        "1 (x) S 17 1 1 0 -9223372036854775809 0 1000 50 7 2 250 130 12 3 20 0 5 0 9\n",
        "1 (x) S 17 1 1 0 9223372036854775808 0 1000 50 7 2 250 130 12 3 20 0 5 0 9\n",
        "1 (x) S 17 1 1 0 0 0 99999999999999999999 50 7 2 250 130 12 3 20 0 5 0 9\n",
        "1 (x) S 17 1 1 0 -1 0 1000 50 7 2 250 130 12 3 20 0 5 0 18446744073709551616\n",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        CHECK_EQ_INT(pmt_parse_stat(bad[k], strlen(bad[k]), 100, &s, &start), -1);
    }
    /* truncated and garbage text */
    CHECK_EQ_INT(pmt_parse_stat(t, 30, 100, &s, &start), -1);
    CHECK_EQ_INT(pmt_parse_stat("garbage", 7, 100, &s, &start), -1);
    CHECK_EQ_INT(pmt_parse_stat("", 0, 100, &s, &start), -1);
}

static void
test_parse_statm_and_kb(void)
{
    const char *t = "1000 200 30 4 0 50 0\n";
    pmt_procsample s;
    CHECK_EQ_INT(pmt_parse_statm(t, strlen(t), 4096, &s), 0);
    CHECK_EQ_INT(s.vms, 1000 * 4096);
    CHECK_EQ_INT(s.rss, 200 * 4096);
    CHECK_EQ_INT(s.shared, 30 * 4096);
    CHECK_EQ_INT(s.text, 4 * 4096);
    CHECK_EQ_INT(s.data, 50 * 4096);
    CHECK_EQ_INT(pmt_parse_statm("1 2", 3, 4096, &s), -1);

    const char *st = "Name:\tpython\nVmHWM:\t    2080 kB\nVmSwap:\t      12 kB\n";
    CHECK_EQ_INT(pmt_parse_kb(st, strlen(st), "VmSwap:"), 12 * 1024);
    CHECK_EQ_INT(pmt_parse_kb(st, strlen(st), "VmHWM:"), 2080 * 1024);
    CHECK_EQ_INT(pmt_parse_kb(st, strlen(st), "VmRSS:"), -1);
    /* fuzzing found it: a value too big for bytes was a signed overflow (UB) */
    const char *huge = "VmHWM:   9007199254740993 kB\nVmRSS:\t9007199254740991 kB\n";
    CHECK_EQ_INT(pmt_parse_kb(huge, strlen(huge), "VmHWM:"), -1);
    CHECK_EQ_INT(pmt_parse_kb(huge, strlen(huge), "VmRSS:"), (int64_t)9007199254740991 * 1024);
    /* a key must start a line */
    const char *sm = "XPss: 5 kB\nPss:    268 kB\n";
    CHECK_EQ_INT(pmt_parse_kb(sm, strlen(sm), "Pss:"), 268 * 1024);
    /* plain numbers */
    const char *n = "Threads:\t7\nBig:\t9223372036854775808\nBad:\tx\n";
    CHECK_EQ_INT(pmt_parse_num(n, strlen(n), "Threads:"), 7);
    CHECK_EQ_INT(pmt_parse_num(n, strlen(n), "Big:"), -1);
    CHECK_EQ_INT(pmt_parse_num(n, strlen(n), "Bad:"), -1);
    CHECK_EQ_INT(pmt_parse_num(n, strlen(n), "Gone:"), -1);
}

int
main(void)
{
    test_parse_stat();
    test_parse_statm_and_kb();
    CTEST_MAIN_END();
}
