/* test_logwriter.c: unit tests for src/core/logwriter.c. */
#include "ctest.h"
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static pmt_logwriter w;   /* 64 KiB: keep off the stack */

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

int
main(void)
{
    char dir[] = "/tmp/pmt_lw_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/a.log", dir);
    static char buf[1 << 20];

    CHECK_EQ_INT(pmt_lw_open(&w, path, PMT_LW_EXCLUSIVE), 0);
    pmt_lw_str(&w, "x");
    pmt_lw_int(&w, 42, 5);
    pmt_lw_char(&w, '|');
    pmt_lw_int(&w, -7, -4);
    pmt_lw_char(&w, '|');
    pmt_lw_sint(&w, 0, 0);
    pmt_lw_sint(&w, 3, 3);
    pmt_lw_sint(&w, -3, 0);
    pmt_lw_char(&w, '|');
    pmt_lw_fixed(&w, 0.0667184, 6, 0);
    pmt_lw_char(&w, '|');
    pmt_lw_fixed(&w, -1.5, 1, 6);
    pmt_lw_char(&w, '|');
    pmt_lw_fixed(&w, 2.9999999, 3, 0);
    pmt_lw_char(&w, '|');
    pmt_lw_pad(&w, "ab", -4);
    pmt_lw_pad(&w, "cd", 4);
    pmt_lw_int(&w, INT64_MIN, 0);
    /* Nothing reaches the file before a flush. */
    CHECK_EQ_STR(slurp(path, buf, sizeof buf), "");
    CHECK_EQ_INT(pmt_lw_flush(&w), 0);
    CHECK_EQ_STR(slurp(path, buf, sizeof buf),
                 "x   42|-7  |+0 +3-3|0.066718|  -1.5|3.000|ab    cd-9223372036854775808");
    CHECK_EQ_INT(pmt_lw_close(&w), 0);

    /* Exclusive open refuses an existing file; a symlink is never followed. */
    CHECK_EQ_INT(pmt_lw_open(&w, path, PMT_LW_EXCLUSIVE), -1);
    CHECK_EQ_INT(errno, EEXIST);
    char link[300];
    snprintf(link, sizeof link, "%s/link.log", dir);
    CHECK(symlink(path, link) == 0);
    CHECK_EQ_INT(pmt_lw_open(&w, link, 0), -1);
    CHECK_EQ_INT(errno, ELOOP);

    /* Writes larger than the buffer arrive whole and in order. */
    CHECK_EQ_INT(pmt_lw_open(&w, path, 0), 0);
    for (int i = 0; i < 100000; i++) {
        pmt_lw_int(&w, i % 10, 0);
    }
    static char big[200000];
    memset(big, 'z', sizeof big);
    pmt_lw_bytes(&w, big, sizeof big);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    slurp(path, buf, sizeof buf);
    CHECK_EQ_INT(strlen(buf), 300000);
    CHECK(buf[99999] == '9' && buf[100000] == 'z' && buf[299999] == 'z');

    /* A forked child's writes and close never reach the parent's file. */
    CHECK_EQ_INT(pmt_lw_open(&w, path, 0), 0);
    pmt_lw_str(&w, "parent-before;");
    pid_t pid = fork();
    if (pid == 0) {
        pmt_lw_str(&w, "child;");
        pmt_lw_flush(&w);
        pmt_lw_close(&w);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    pmt_lw_str(&w, "parent-after");
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    CHECK_EQ_STR(slurp(path, buf, sizeof buf), "parent-before;parent-after");

    /* Disk full: the error is sticky and reported by flush and close. */
    if (access("/dev/full", W_OK) == 0) {
        CHECK_EQ_INT(pmt_lw_open(&w, "/dev/full", 0), 0);
        pmt_lw_str(&w, "hello");
        CHECK_EQ_INT(pmt_lw_flush(&w), -1);
        CHECK_EQ_INT(errno, ENOSPC);
        pmt_lw_str(&w, "more");
        CHECK_EQ_INT(pmt_lw_close(&w), -1);
        CHECK_EQ_INT(errno, ENOSPC);
    }
    /* A missing directory fails at open with ENOENT. */
    CHECK_EQ_INT(pmt_lw_open(&w, "/nonexistent-dir-pmt/x.log", 0), -1);
    CHECK_EQ_INT(errno, ENOENT);

    unlink(link);
    unlink(path);
    rmdir(dir);
    CTEST_MAIN_END();
}
