/* test_procsample.c: unit tests for src/core/procsample. */
#include "ctest.h"
#include "procsample.h"

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
    /* a key must start a line */
    const char *sm = "XPss: 5 kB\nPss:    268 kB\n";
    CHECK_EQ_INT(pmt_parse_kb(sm, strlen(sm), "Pss:"), 268 * 1024);
}

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

static pmt_proctree tree;

static void
test_tree(void)
{
    int pipefd[2];
    CHECK_EQ_INT(pipe(pipefd), 0);
    pid_t child = fork();
    if (child == 0) {
        /* child forks a grandchild; both wait on the pipe */
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

    int32_t out[8];
    CHECK_EQ_INT(pmt_descendants(getpid(), out, 8, tree.scan_pid, tree.scan_ppid), 2);
    CHECK(out[0] == child);
    /* only max are stored, all are counted */
    CHECK_EQ_INT(pmt_descendants(getpid(), out, 1, tree.scan_pid, tree.scan_ppid) >= 1, 1);

    close(pipefd[1]);
    waitpid(child, NULL, 0);
    CHECK_EQ_INT(pmt_tree_sample(&tree, &s, 1), 0);
    CHECK_EQ_INT(s.nprocs, 1);
    pmt_tree_close(&tree);
}

static void
test_format(void)
{
    char ts[PMT_TS_LEN + 1];
    pmt_tscache tc = {0, {0}};
    pmt_fmt_timestamp(&tc, 1739369818.676195, ts);
    ts[PMT_TS_LEN] = '\0';
    CHECK(ts[4] == '-' && ts[7] == '-' && ts[10] == ' ' && ts[19] == '.');
    CHECK_EQ_STR(ts + 20, "676195");

    char out[64];
    int n = pmt_fmt_seconds(out, 0.0);
    out[n] = '\0';
    CHECK_EQ_STR(out, "0.0");
    n = pmt_fmt_seconds(out, 0.34);
    out[n] = '\0';
    CHECK_EQ_STR(out, "0.34");
    n = pmt_fmt_seconds(out, 5.4078002);
    out[n] = '\0';
    CHECK_EQ_STR(out, "5.4078");
    n = pmt_fmt_seconds(out, 12.0000004);
    out[n] = '\0';
    CHECK_EQ_STR(out, "12.0");

    size_t k = pmt_json_string(out, sizeof(out), "a\"b\\c\nd\x01", 8);
    out[k] = '\0';
    CHECK_EQ_STR(out, "\"a\\\"b\\\\c\\nd\\u0001\"");
    /* reports the length it needs when out is too small */
    CHECK_EQ_INT(pmt_json_string(out, 3, "abcdef", 6), 8);

    pmt_procsample s;
    memset(&s, 0, sizeof(s));
    s.pid = 10193;
    s.wall = 1739369818.676195;
    s.rss = 18067456;
    s.vms = 34990526464;
    s.minflt = 5594;
    s.majflt = 1369;
    s.utime = 0.34;
    s.stime = 0.99;
    s.elapsed = 5.4078;
    s.swap = s.rss_peak = s.pss = s.uss = -1;
    char j[1024];
    size_t len = pmt_ps_json(j, sizeof(j), &s, &tc, 0, NULL, "String of 1,024 bytes", 21);
    CHECK(len < sizeof(j));
    j[len] = '\0';
    const char *want_tail = "\", \"memory_info\": {\"rss\": 18067456, \"vms\": 34990526464, "
        "\"pfaults\": 6963, \"pageins\": 1369}, \"cpu_times\": {\"user\": 0.34, "
        "\"system\": 0.99, \"children_user\": 0.0, \"children_system\": 0.0}, "
        "\"elapsed_time\": 5.4078, \"pid\": 10193, \"label\": \"String of 1,024 bytes\"}";
    CHECK(strncmp(j, "{\"timestamp\": \"", 15) == 0);
    CHECK_EQ_STR(j + 15 + PMT_TS_LEN, want_tail);
    /* a small buffer: the length needed is still reported */
    char small[16];
    CHECK_EQ_INT(pmt_ps_json(small, sizeof(small), &s, &tc, 0, NULL, "String of 1,024 bytes", 21), len);
    /* extras */
    s.swap = 0;
    s.num_threads = 3;
    len = pmt_ps_json(j, sizeof(j), &s, &tc, PMT_JSON_EXTRA | PMT_JSON_NPROCS, "stop", NULL, 0);
    j[len] = '\0';
    CHECK(strstr(j, "\"swap\": 0") != NULL);
    CHECK(strstr(j, "\"num_threads\": 3") != NULL);
    CHECK(strstr(j, "\"nprocs\": 0") != NULL);
    CHECK(strstr(j, "\"event\": \"stop\"}") != NULL);
}

int
main(void)
{
    test_parse_stat();
    test_parse_statm_and_kb();
    test_sample_self();
    test_missing_and_exited();
    test_tree();
    test_format();
    CTEST_MAIN_END();
}
