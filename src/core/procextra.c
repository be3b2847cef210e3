/* procextra.c: open descriptors and context switches of a process (see
 * procextra.h). */
#include "procextra.h"
#include "procfs.h"

#include <errno.h>

static void
count_entry(const char *name, void *arg)
{
    if (name[0] != '.') {       /* every fd entry is a number */
        ++*(int64_t *)arg;
    }
}

int64_t
pmt_proc_count_fds(pid_t pid)
{
    int dfd = pmt_procfs_open(pid, "fd");
    if (dfd < 0) {
        return -1;
    }
    int64_t count = 0;
    if (pmt_procfs_each_entry(dfd, count_entry, &count) != 0) {
        return -1;
    }
    return count;
}

int64_t
pmt_parse_ctx_switches(const char *text, size_t len)
{
    int64_t v = pmt_parse_num(text, len, "voluntary_ctxt_switches:");
    int64_t nv = pmt_parse_num(text, len, "nonvoluntary_ctxt_switches:");
    if (v < 0 || nv < 0 || v > INT64_MAX - nv) {
        return -1;
    }
    return v + nv;
}

int64_t
pmt_proc_ctx_switches(pid_t pid)
{
    char buf[8192];
    ssize_t n = pmt_procfs_read_file(pid, "status", buf, sizeof(buf));
    if (n <= 0) {
        if (n == 0) {
            errno = EPROTO;
        }
        return -1;
    }
    int64_t c = pmt_parse_ctx_switches(buf, (size_t)n);
    if (c < 0) {
        errno = EPROTO;
    }
    return c;
}
