/* Unit tests for src/core/reftracelog.c: the rows ReferenceTracing writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctest.h"
#include "reftracelog.h"

static pmt_logwriter w;

static char *
read_all(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void
test_a_whole_log(void)
{
    char path[] = "/tmp/pmt_test_reftracelog_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    pmt_lw_adopt(&w, fd);
    pmt_rt_write_start(&w, "hello", 5);
    pmt_rt_event ev = {0, 1.5, 0x7f00dead0, 3, "BytesWrapper", "/x/t.py", 12, "make", 4096, -8};
    pmt_rt_write_event(&w, &ev);
    ev.destroy = 1;
    ev.file = NULL;
    ev.function = NULL;
    ev.live = 2;
    pmt_rt_write_event(&w, &ev);
    pmt_rt_write_message(&w, "MSG", 2.25, "a\nb", 3);
    pmt_rt_write_live(&w, 2, "BytesWrapper");
    pmt_rt_write_end(&w);
    CHECK_EQ_INT(pmt_lw_close(&w), 0);
    const char *text = read_all(path);
    unlink(path);
    CHECK(strncmp(text, "hello\nSOF\nHDR: ", 15) == 0);
    CHECK(strstr(text, "\nNEW:     1.500000        0x7f00dead0       3 BytesWrapper ") != NULL);
    CHECK(strstr(text, " /x/t.py ") != NULL && strstr(text, "    12 make ") != NULL);
    CHECK(strstr(text, "       4096        -8\n") != NULL);
    CHECK(strstr(text, "\nDEL: ") != NULL && strstr(text, " <no Python frame> ") != NULL);
    CHECK(strstr(text, "\nMSG:     2.250000 # a\nb\n") != NULL);
    CHECK(strstr(text, "\nLIVE:       2 BytesWrapper\nEOF\n") != NULL);
}

/* Opening at a given path or under the default name, the notes a nested
 * tracer leaves (the "New file:" one is what readers follow), and a close
 * that reports the first failed write. */
static void
test_open_notes_and_close(void)
{
    char dir[] = "/tmp/pmt_test_reftracelog_dir_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[4096];
    CHECK_EQ_INT(pmt_rt_open(&w, NULL, path, sizeof(path), dir, 1700000000, 4242, 1,
                             "3.13.0", "hi"), 0);
    CHECK(strncmp(path, dir, strlen(dir)) == 0 && strstr(path, "_4242_O_") != NULL);
    pmt_rt_write_detach(&w, 0.5, "/x/child.log");
    pmt_rt_write_attach(&w, 0.75);
    CHECK_EQ_INT(pmt_rt_close(&w), 0);
    const char *text = read_all(path);
    CHECK(strncmp(text, "hi\nSOF\nHDR: ", 12) == 0);
    CHECK(strstr(text, "\nMSG:     0.500000 # Detaching this Reference Tracing file wrapper. "
                       "New file: /x/child.log\n") != NULL);
    CHECK(strstr(text, "\nMSG:     0.750000 # Re-attaching this Reference Tracing file "
                       "wrapper.\nEOF\n") != NULL);
    unlink(path);
    char given[4096];
    snprintf(given, sizeof(given), "%s/given.log", dir);
    char out[4096];
    CHECK_EQ_INT(pmt_rt_open(&w, given, out, sizeof(out), NULL, 0, 1, 0, "3.13.0", NULL), 0);
    CHECK_EQ_STR(out, given);
    CHECK_EQ_INT(pmt_rt_close(&w), 0);
    CHECK(strncmp(read_all(given), "SOF\nHDR: ", 9) == 0);
    unlink(given);
    snprintf(given, sizeof(given), "%s/no/such/dir.log", dir);
    CHECK_EQ_INT(pmt_rt_open(&w, given, out, sizeof(out), NULL, 0, 1, 0, "3.13.0", NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    rmdir(dir);
    /* a full disk: the error comes back from close */
    if (pmt_rt_open(&w, "/dev/full", out, sizeof(out), NULL, 0, 1, 0, "3.13.0", NULL) == 0) {
        CHECK_EQ_INT(pmt_rt_close(&w), ENOSPC);
    }
}

int
main(void)
{
    test_a_whole_log();
    test_open_notes_and_close();
    CTEST_MAIN_END();
}
