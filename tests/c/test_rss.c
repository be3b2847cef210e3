/* test_rss.c: unit tests for src/core/rss.c against the kernel's own numbers. */
#include "ctest.h"
#include "rss.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int
main(void)
{
    CHECK_EQ_INT(pmt_statm_parse_resident("1000 250 30 4 0 90 0\n", 22), 250);
    CHECK_EQ_INT(pmt_statm_parse_resident("1000", 4), -1);
    CHECK_EQ_INT(pmt_statm_parse_resident("", 0), -1);
    CHECK_EQ_INT(pmt_statm_parse_resident("x 1", 3), -1);
    CHECK_EQ_INT(pmt_statm_parse_resident("12 x", 4), -1);
    /* more digits than 64 bits hold: refused, not wrapped (found by make fuzz) */
    CHECK_EQ_INT(pmt_statm_parse_resident("1 99999999999999999999 3", 24), -1);
    CHECK_EQ_INT(pmt_statm_parse_resident("1 123456789012345678 3", 22), 123456789012345678LL);

    long ps = pmt_page_size();
    CHECK(ps >= 4096);
    int64_t r0 = pmt_rss_current();
    CHECK(r0 > 0);
    CHECK(r0 % ps == 0);

    /* Touch 64 MiB: RSS rises by about that much, and the peak follows. */
    size_t n = 64u << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 1, n);
    int64_t r1 = pmt_rss_current();
    CHECK(r1 - r0 >= (int64_t)n - (1 << 20));
    CHECK(r1 - r0 <= (int64_t)n + (4 << 20));
    /* The kernel keeps RSS counters per CPU: allow a little skew. */
    CHECK(pmt_rss_peak() >= r1 - (1 << 20));
    /* Given a reading, the peak is the kernel's mark, never below it. */
    CHECK(pmt_rss_peak_given(r1) >= r1);
    CHECK(pmt_rss_peak_given(-1) >= r1 - (1 << 20));
    CHECK_EQ_INT(pmt_rss_peak_given(INT64_MAX / 2), INT64_MAX / 2);
    CHECK(munmap(p, n) == 0);
    int64_t r2 = pmt_rss_current();
    CHECK(r1 - r2 >= (int64_t)n - (1 << 20));

    /* After fork the child reads its own RSS, not the parent's. */
    p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 1, n);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: shares the pages copy-on-write; release them and look. */
        munmap(p, n);
        int64_t rc = pmt_rss_current();
        /* Reading the parent's statm would still show the 64 MiB. */
        _exit(rc > 0 && rc < r1 - (int64_t)n / 2 ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(pmt_rss_current() >= (int64_t)n);
    munmap(p, n);
    CTEST_MAIN_END();
}
