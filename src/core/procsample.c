/* procsample.c: one sample of one process from /proc, no stdio (see procsample.h). */
#include "procsample.h"
#include "procfs.h"
#include "rss.h"            /* pmt_page_size */

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Elapsed time is measured on the clock the kernel dates process starts by. */
#ifdef CLOCK_BOOTTIME
#define START_CLOCK CLOCK_BOOTTIME
#else
#define START_CLOCK CLOCK_MONOTONIC
#endif

static double
now_clock(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
pmt_proc_open(pmt_proc *p, pid_t pid, int flags)
{
    p->pid = (int32_t)pid;
    p->flags = flags;
    p->stat_fd = p->statm_fd = p->status_fd = p->smaps_fd = -1;
    p->starttime = 0;
#ifndef __linux__
    /* /proc/PID/{stat,statm} are Linux's; other systems are not sampled yet */
    (void)flags;
    errno = ENOSYS;
    return -1;
#endif
    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    int err = 0;
    if ((p->stat_fd = pmt_procfs_open(pid, "stat")) < 0
        || (p->statm_fd = pmt_procfs_open(pid, "statm")) < 0
        || ((flags & (PMT_PS_STATUS | PMT_PS_HWM))
            && (p->status_fd = pmt_procfs_open(pid, "status")) < 0)
        || ((flags & PMT_PS_SMAPS)
            && (p->smaps_fd = pmt_procfs_open(pid, "smaps_rollup")) < 0)) {
        err = errno;
    }
    else {
        /* A first sample checks that the files can be read (smaps_rollup
         * checks permission at read time) and that this is no zombie. */
        pmt_procsample s;
        if (pmt_proc_sample(p, &s) != 0) {
            err = errno;
        }
    }
    if (err) {
        pmt_proc_close(p);
        errno = err;
        return -1;
    }
    return 0;
}

int
pmt_proc_sample(pmt_proc *p, pmt_procsample *s)
{
    char buf[4096];
    ssize_t n;
    uint64_t start = 0;

    s->pid = p->pid;
    s->nprocs = 1;
    s->swap = s->rss_peak = s->pss = s->uss = s->hwm = -1;
    s->wall = now_clock(CLOCK_REALTIME);

    if (p->stat_fd < 0) {
        errno = ESRCH;
        return -1;
    }
    if ((n = pmt_procfs_read(p->stat_fd, buf, sizeof(buf))) < 0) {
        return -1;
    }
    if (n == 0) {
        errno = ESRCH;
        return -1;
    }
    if (pmt_parse_stat(buf, (size_t)n, pmt_clock_hz(), s, &start) != 0) {
        errno = EPROTO;
        return -1;
    }
    if (s->state == 'Z' || s->state == 'X' || s->state == 'x') {
        errno = ESRCH;
        return -1;
    }
    p->starttime = start;
    s->elapsed = now_clock(START_CLOCK) - (double)start / (double)pmt_clock_hz();
    if (s->elapsed < 0) {
        s->elapsed = 0;
    }
    if ((n = pmt_procfs_read(p->statm_fd, buf, sizeof(buf))) < 0) {
        return -1;
    }
    if (pmt_parse_statm(buf, (size_t)n, pmt_page_size(), s) != 0) {
        errno = n == 0 ? ESRCH : EPROTO;
        return -1;
    }
    if (p->status_fd >= 0) {
        if ((n = pmt_procfs_read(p->status_fd, buf, sizeof(buf))) < 0) {
            return -1;
        }
        s->hwm = pmt_parse_kb(buf, (size_t)n, "VmHWM:");
        if (p->flags & PMT_PS_STATUS) {
            s->swap = pmt_parse_kb(buf, (size_t)n, "VmSwap:");
            s->rss_peak = s->hwm;
        }
    }
    if (p->smaps_fd >= 0) {
        if ((n = pmt_procfs_read(p->smaps_fd, buf, sizeof(buf))) < 0) {
            return -1;
        }
        s->pss = pmt_parse_kb(buf, (size_t)n, "Pss:");
        int64_t pc = pmt_parse_kb(buf, (size_t)n, "Private_Clean:");
        int64_t pd = pmt_parse_kb(buf, (size_t)n, "Private_Dirty:");
        int64_t ph = pmt_parse_kb(buf, (size_t)n, "Private_Hugetlb:");
        s->uss = (pc < 0 || pd < 0) ? -1 : pc + pd + (ph > 0 ? ph : 0);
    }
    return 0;
}

int64_t
pmt_proc_read_hwm(pid_t pid)
{
    char buf[4096];
    ssize_t n = pmt_procfs_read_file(pid, "status", buf, sizeof(buf));
    if (n < 0) {
        return -1;
    }
    int64_t v = pmt_parse_kb(buf, (size_t)n, "VmHWM:");
    if (v < 0) {
        errno = ESRCH;
    }
    return v;
}

void
pmt_proc_close(pmt_proc *p)
{
    pmt_procfs_close(&p->stat_fd);
    pmt_procfs_close(&p->statm_fd);
    pmt_procfs_close(&p->status_fd);
    pmt_procfs_close(&p->smaps_fd);
}
