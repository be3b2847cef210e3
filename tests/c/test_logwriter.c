/* test_logwriter.c: unit tests for src/core/logwriter.c. */
#include "ctest.h"
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static pmt_logwriter w;

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

static long long
file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Every page of [p, p + n) is resident (mincore). */
static int
resident(const char *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t len = (uintptr_t)p + n - lo;
    static unsigned char vec[1 << 12];
    size_t pages = (len + page - 1) / page;
    if (pages > sizeof vec || mincore((void *)lo, len, vec) != 0) {
        return 0;
    }
    for (size_t i = 0; i < pages; i++) {
        if (!(vec[i] & 1)) {
            return 0;
        }
    }
    return 1;
}

/* The buffer's size is chosen at open.  A 256 KiB writer holds 256 KiB
 * without a write(2), the next byte sends exactly the full buffer, and
 * 95-byte rows across its boundaries (and a write bigger than the buffer)
 * arrive byte-exact.  The buffer is resident from open. */
static void
test_buffer_size(const char *dir)
{
    enum { CAP = 256 * 1024, ROW = 95 };
    static char expect[4 * CAP], got[4 * CAP + 1];
    char path[256];
    snprintf(path, sizeof path, "%s/size.log", dir);

    CHECK_EQ_INT(pmt_lw_open(&w, path, 0), 0);
    CHECK_EQ_INT(w.cap, PMT_LW_BUFSIZE);
    CHECK(resident(w.buf, w.cap));
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    CHECK(w.buf == NULL && w.cap == 0);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);      /* again: a no-op */
    pmt_lw_str(&w, "after close");          /* dropped, no crash */
    pmt_lw_char(&w, 'x');
    CHECK_EQ_INT(file_size(path), 0);

    CHECK_EQ_INT(pmt_lw_open_size(&w, path, 0, CAP), 0);
    CHECK_EQ_INT(w.cap, CAP);
    CHECK(resident(w.buf, w.cap));
    size_t n = 0;
    int i = 0;
    char row[ROW];
    for (; n + ROW <= CAP; i++, n += ROW) {
        snprintf(row, sizeof row, "row %07d %.*s", i, ROW - 13, "abcdefghijklmnopqrstuvwxyz"
                 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN");
        row[ROW - 1] = '\n';
        memcpy(expect + n, row, ROW);
        pmt_lw_bytes(&w, row, ROW);
    }
    for (; n < CAP; n++) {
        expect[n] = (char)('a' + n % 26);
        pmt_lw_char(&w, expect[n]);
    }
    CHECK_EQ_INT(w.len, CAP);
    CHECK_EQ_INT(file_size(path), 0);       /* 64 KiB would have gone out 4 times */
    for (; n + ROW <= 2 * CAP; i++, n += ROW) {
        snprintf(row, sizeof row, "row %07d ", i);
        memset(row + 12, (int)('A' + i % 26), ROW - 13);
        row[ROW - 1] = '\n';
        memcpy(expect + n, row, ROW);
        pmt_lw_bytes(&w, row, ROW);
        if (n == CAP) {
            CHECK_EQ_INT(file_size(path), CAP); /* the full buffer, no more */
            CHECK_EQ_INT(w.len, ROW);
        }
    }
    CHECK_EQ_INT(file_size(path), CAP);     /* the rest is pending */
    /* bigger than the buffer: what is pending, then it, straight */
    size_t pending = n - CAP;
    for (size_t k = 0; k < CAP + 1000; k++) {
        expect[n + k] = (char)('0' + k % 10);
    }
    pmt_lw_bytes(&w, expect + n, CAP + 1000);
    n += CAP + 1000;
    CHECK_EQ_INT(w.len, 0);
    CHECK_EQ_INT(file_size(path), (long long)n);
    CHECK(pending > CAP / 2);
    pmt_lw_str(&w, "end\n");
    memcpy(expect + n, "end\n", 4);
    n += 4;
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    int fd = open(path, O_RDONLY);
    ssize_t k = fd >= 0 ? read(fd, got, sizeof got) : -1;
    if (fd >= 0) {
        close(fd);
    }
    CHECK_EQ_INT(k, (long long)n);
    CHECK(k == (ssize_t)n && memcmp(got, expect, n) == 0);
    unlink(path);
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
    /* A missing directory fails at open with ENOENT, holding nothing. */
    CHECK_EQ_INT(pmt_lw_open(&w, "/nonexistent-dir-pmt/x.log", 0), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK(w.buf == NULL && w.fd == -1);

    test_buffer_size(dir);

    unlink(link);
    unlink(path);
    rmdir(dir);
    CTEST_MAIN_END();
}
