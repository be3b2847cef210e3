/* Unit tests for src/core/reftracelog.c: the rows ReferenceTracing writes. */
#include <fcntl.h>
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

int
main(void)
{
    test_a_whole_log();
    CTEST_MAIN_END();
}
