/* test_procextra.c: unit tests for src/core/procextra (open descriptors and
 * context switches of a process). */
#include "ctest.h"
#include "procextra.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void
test_count_fds(void)
{
    int64_t before = pmt_proc_count_fds(getpid());
    CHECK(before >= 3);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(fds[i] >= 0);
    }
    CHECK_EQ_INT(pmt_proc_count_fds(getpid()), before + 5);
    for (int i = 0; i < 5; i++) {
        close(fds[i]);
    }
    CHECK_EQ_INT(pmt_proc_count_fds(getpid()), before);
    errno = 0;
    CHECK_EQ_INT(pmt_proc_count_fds(2147483600), -1);
    CHECK_EQ_INT(errno, ESRCH);
}

static void
test_ctx_switches(void)
{
    const char *st = "Name:\tx\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t545\n";
    CHECK_EQ_INT(pmt_parse_ctx_switches(st, strlen(st)), 695);
    const char *half = "voluntary_ctxt_switches:\t150\n";
    CHECK_EQ_INT(pmt_parse_ctx_switches(half, strlen(half)), -1);
    int64_t a = pmt_proc_ctx_switches(getpid());
    CHECK(a >= 0);
    for (int i = 0; i < 3; i++) {
        usleep(1000);       /* each sleep is a voluntary switch */
    }
    CHECK(pmt_proc_ctx_switches(getpid()) >= a + 3);
    CHECK_EQ_INT(pmt_proc_ctx_switches(2147483600), -1);
}

int
main(void)
{
    test_count_fds();
    test_ctx_switches();
    CTEST_MAIN_END();
}
