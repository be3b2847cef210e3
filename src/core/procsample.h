/* procsample.h: one sample of one process's memory and CPU use from /proc.
 *
 * A pmt_proc keeps the descriptors of /proc/PID/{stat,statm} (and, when
 * asked, status and smaps_rollup) open between samples, so a sample is two to
 * four pread(2) calls and some integer parsing: no stdio, no allocation.  A
 * kept-open descriptor belongs to the process it was opened for: once that
 * process has been reaped, reads fail with ESRCH even if the PID is reused,
 * so a sampler never silently starts describing a different process.
 *
 * Process trees are in proctree.h, the /proc readers and parsers in procfs.h,
 * the JSON form of a sample in procjson.h.
 */
#ifndef PMT_PROCSAMPLE_H
#define PMT_PROCSAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Optional fields (flags for pmt_proc_open). */
#define PMT_PS_STATUS 0x1   /* swap and peak RSS from /proc/PID/status */
#define PMT_PS_SMAPS  0x2   /* pss and uss from /proc/PID/smaps_rollup */
#define PMT_PS_HWM    0x4   /* hwm (VmHWM) from /proc/PID/status, not logged */

typedef struct pmt_procsample {
    int32_t pid;
    int32_t ppid;
    char state;             /* R, S, D, ... from /proc/PID/stat */
    int32_t nprocs;         /* processes summed (1 unless a tree) */
    double wall;            /* CLOCK_REALTIME when sampled, seconds */
    double elapsed;         /* seconds since the process started */
    /* bytes, from statm */
    int64_t rss, vms, shared, text, data;
    /* page faults, from stat */
    int64_t minflt, majflt, cminflt, cmajflt;
    /* seconds, from stat (clock ticks / sysconf(_SC_CLK_TCK)) */
    double utime, stime, cutime, cstime;
    int64_t num_threads;
    /* optional, bytes; -1 when not asked for or not available */
    int64_t swap, rss_peak; /* PMT_PS_STATUS */
    int64_t pss, uss;       /* PMT_PS_SMAPS */
    int64_t hwm;            /* VmHWM, the kernel's peak RSS, with either
                               PMT_PS_STATUS or PMT_PS_HWM; -1 otherwise */
} pmt_procsample;

typedef struct pmt_proc {
    int32_t pid;
    int flags;
    int stat_fd, statm_fd, status_fd, smaps_fd;
    uint64_t starttime;     /* clock ticks after boot */
} pmt_proc;

/* Open the /proc files of pid.  Returns 0, or -1 with errno: ESRCH if there
 * is no such process (or it is a zombie), EACCES/EPERM if it may not be
 * read.  On failure p holds no descriptors. */
int pmt_proc_open(pmt_proc *p, pid_t pid, int flags);

/* Take one sample.  Returns 0, or -1 with errno: ESRCH once the process has
 * exited (a zombie counts as exited), EPROTO if /proc text is malformed. */
int pmt_proc_sample(pmt_proc *p, pmt_procsample *s);

/* The kernel's peak RSS of pid (VmHWM of /proc/PID/status) in bytes, read
 * now; -1 with errno if it cannot be read (the process has gone, or it is a
 * zombie, whose memory is already released). */
int64_t pmt_proc_read_hwm(pid_t pid);

/* Close the descriptors (idempotent). */
void pmt_proc_close(pmt_proc *p);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCSAMPLE_H */
