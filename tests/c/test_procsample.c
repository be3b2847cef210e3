/* test_procsample.c: unit tests for src/core/procsample (sampling one process). */
#include "ctest.h"
#include "procsample.h"
#include "rss.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_sample_self(void)
{
    pmt_proc p;
    CHECK_EQ_INT(pmt_proc_open(&p, getpid(), PMT_PS_STATUS | PMT_PS_SMAPS), 0);
    pmt_procsample a, b;
    CHECK_EQ_INT(pmt_proc_sample(&p, &a), 0);
    CHECK_EQ_INT(a.pid, getpid());
    CHECK_EQ_INT(a.ppid, getppid());
    CHECK(a.rss > 0 && a.vms >= a.rss);
    CHECK(a.swap >= 0 && a.rss_peak >= a.rss - 4096 * 64);
    CHECK(a.pss > 0 && a.uss > 0 && a.uss <= a.rss);
    CHECK(a.elapsed >= 0 && a.elapsed < 3600);
    CHECK_EQ_INT(a.num_threads, 1);
    /* touch 32 MiB: rss and minor faults follow */
    size_t sz = 32u << 20;
    char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    for (size_t i = 0; i < sz; i += 4096) {
        m[i] = 1;
    }
    CHECK_EQ_INT(pmt_proc_sample(&p, &b), 0);
    CHECK(b.rss - a.rss >= (int64_t)(30u << 20));
    CHECK(b.minflt - a.minflt >= 30 * 256 / 2);   /* THP may batch faults */
    CHECK(b.wall >= a.wall);
    munmap(m, sz);
    pmt_proc_close(&p);
    pmt_proc_close(&p);     /* idempotent */
    CHECK_EQ_INT(pmt_proc_sample(&p, &b), -1);
}

static void
test_missing_and_exited(void)
{
    pmt_proc p;
    errno = 0;
    CHECK_EQ_INT(pmt_proc_open(&p, 0x3ffffff0, 0), -1);
    CHECK_EQ_INT(errno, ESRCH);
    CHECK_EQ_INT(pmt_proc_open(&p, -5, 0), -1);

    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    CHECK_EQ_INT(pmt_proc_open(&p, child, 0), 0);
    pmt_procsample s;
    CHECK_EQ_INT(pmt_proc_sample(&p, &s), 0);
    kill(child, SIGKILL);
    /* a zombie counts as exited */
    siginfo_t si;
    waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT);
    errno = 0;
    CHECK_EQ_INT(pmt_proc_sample(&p, &s), -1);
    CHECK_EQ_INT(errno, ESRCH);
    int st;
    waitpid(child, &st, 0);
    errno = 0;
    CHECK_EQ_INT(pmt_proc_sample(&p, &s), -1);
    CHECK_EQ_INT(errno, ESRCH);
    pmt_proc_close(&p);
}

static void
test_kernel_peak(void)
{
    pmt_proc p;
    CHECK_EQ_INT(pmt_proc_open(&p, getpid(), PMT_PS_HWM), 0);
    pmt_procsample s;
    CHECK_EQ_INT(pmt_proc_sample(&p, &s), 0);
    CHECK(s.hwm >= s.rss);
    CHECK(s.rss_peak == -1 && s.swap == -1);    /* read, not logged */
    pmt_proc_close(&p);
    /* a short peak between two samples is in the kernel's high-water mark: the mark
     * after touching 64 MiB is at least the resident size before it plus 60 MiB (not
     * "the mark before plus 60 MiB": an earlier, higher peak, such as valgrind's own
     * start-up, would hide this one) */
    int64_t before = pmt_rss_current();
    CHECK(before > 0);
    size_t sz = 64u << 20;
    char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < sz; i += 4096) {
        m[i] = 1;
    }
    munmap(m, sz);
    CHECK(pmt_proc_read_hwm(getpid()) >= before + (int64_t)(60u << 20));
    errno = 0;
    CHECK_EQ_INT(pmt_proc_read_hwm(0x3ffffff0), -1);
    CHECK_EQ_INT(errno, ESRCH);
}

int
main(void)
{
    test_kernel_peak();
    test_sample_self();
    test_missing_and_exited();
    CTEST_MAIN_END();
}
