/* test_proctree.c: unit tests for src/core/proctree (a process and its descendants). */
#include "ctest.h"
#include "procsample.h"
#include "proctree.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pmt_proctree tree;

/* Fork a child that forks a grandchild; both wait until *release is
 * closed.  Returns the child's pid. */
static pid_t
spawn_family(int *release)
{
    int pipefd[2];
    CHECK_EQ_INT(pipe(pipefd), 0);
    pid_t child = fork();
    if (child == 0) {
        close(pipefd[1]);
        pid_t g = fork();
        char c;
        ssize_t r = read(pipefd[0], &c, 1);
        (void)r;
        if (g > 0) {
            waitpid(g, NULL, 0);
        }
        _exit(0);
    }
    close(pipefd[0]);
    *release = pipefd[1];
    return child;
}

static void
test_tree(void)
{
    int release;
    pid_t child = spawn_family(&release);
    CHECK_EQ_INT(pmt_tree_open(&tree, getpid(), 0), 0);
    pmt_procsample s;
    int nprocs = 0;
    for (int tries = 0; tries < 200 && nprocs < 3; tries++) {
        CHECK_EQ_INT(pmt_tree_sample(&tree, &s, 1), 0);
        nprocs = s.nprocs;
        if (nprocs < 3) {
            usleep(10000);
        }
    }
    CHECK_EQ_INT(nprocs, 3);
    pmt_proc self;
    pmt_procsample me;
    CHECK_EQ_INT(pmt_proc_open(&self, getpid(), 0), 0);
    CHECK_EQ_INT(pmt_proc_sample(&self, &me), 0);
    CHECK(s.rss > me.rss);
    CHECK_EQ_INT(s.pid, getpid());
    pmt_proc_close(&self);

    int32_t out[8], out2[8];
    CHECK_EQ_INT(pmt_descendants(getpid(), out, 8, tree.scan_pid, tree.scan_ppid), 2);
    CHECK(out[0] == child);
    /* the /proc scan (kernels without children lists) finds the same */
    CHECK_EQ_INT(pmt_descendants_scan(getpid(), out2, 8, tree.scan_pid, tree.scan_ppid), 2);
    CHECK(out2[0] == child && out2[1] == out[1]);
    CHECK_EQ_INT(pmt_descendants_scan(getpid(), out2, 1, tree.scan_pid, tree.scan_ppid), 2);
    CHECK_EQ_INT(pmt_descendants(2147483600, out2, 8, tree.scan_pid, tree.scan_ppid), -1);
    /* only max are stored, all are counted */
    CHECK_EQ_INT(pmt_descendants(getpid(), out, 1, tree.scan_pid, tree.scan_ppid) >= 1, 1);

    close(release);
    waitpid(child, NULL, 0);
    CHECK_EQ_INT(pmt_tree_sample(&tree, &s, 1), 0);
    CHECK_EQ_INT(s.nprocs, 1);
    pmt_tree_close(&tree);
}

static pmt_procsample each[8];

/* One sample per process: the root first, each descendant with its parent. */
static void
test_tree_each(void)
{
    int release;
    pid_t child = spawn_family(&release);
    CHECK_EQ_INT(pmt_tree_open(&tree, getpid(), 0), 0);
    int n = 0;
    for (int tries = 0; tries < 200 && n < 3; tries++) {
        n = pmt_tree_sample_each(&tree, each, 8, 1);
        if (n < 3) {
            usleep(10000);
        }
    }
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(each[0].pid, getpid());
    CHECK_EQ_INT(each[0].nprocs, 1);
    int saw_child = 0, saw_grandchild = 0;
    for (int k = 1; k < n; k++) {
        CHECK(each[k].rss > 0);
        if (each[k].pid == child) {
            saw_child = each[k].ppid == getpid();
        }
        else {
            saw_grandchild = each[k].ppid == child;
        }
    }
    CHECK(saw_child);
    CHECK(saw_grandchild);
    /* at most max stored */
    CHECK_EQ_INT(pmt_tree_sample_each(&tree, each, 2, 0), 2);
    errno = 0;
    CHECK_EQ_INT(pmt_tree_sample_each(&tree, each, 0, 0), -1);
    CHECK_EQ_INT(errno, EINVAL);

    close(release);
    waitpid(child, NULL, 0);
    CHECK_EQ_INT(pmt_tree_sample_each(&tree, each, 8, 1), 1);
    pmt_tree_close(&tree);
}

int
main(void)
{
    test_tree();
    test_tree_each();
    CTEST_MAIN_END();
}
