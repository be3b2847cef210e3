/* procsample.h: one sample of any process's memory and CPU use from /proc.
 *
 * A pmt_proc keeps the descriptors of /proc/PID/{stat,statm} (and, when
 * asked, status and smaps_rollup) open between samples, so a sample is two to
 * four pread(2) calls and some integer parsing: no stdio, no allocation.  A
 * kept-open descriptor belongs to the process it was opened for: once that
 * process has been reaped, reads fail with ESRCH even if the PID is reused,
 * so a sampler never silently starts describing a different process.
 *
 * A pmt_proctree samples a process and its living descendants and sums them
 * (for `pymemtrace process --children`).  Descendants are found from
 * /proc/PID/task/TID/children where the kernel provides it, else by scanning
 * /proc for parent links.
 *
 * pmt_ps_json formats a sample as the JSON object of the seed's log format
 * into a caller's buffer (no stdio), for the Python logging path and for the
 * JSON-lines file written through logwriter.
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

/* Close the descriptors (idempotent). */
void pmt_proc_close(pmt_proc *p);

/* --- process trees ---------------------------------------------------- */

#define PMT_TREE_MAX 256        /* descendants followed at once */
#define PMT_SCAN_MAX 8192       /* processes considered in one /proc scan */

typedef struct pmt_proctree {
    pmt_proc root;
    int nkids;
    pmt_proc kids[PMT_TREE_MAX];
    int32_t scan_pid[PMT_SCAN_MAX];
    int32_t scan_ppid[PMT_SCAN_MAX];
    int32_t found[PMT_TREE_MAX];
    int truncated;          /* more descendants than PMT_TREE_MAX were seen */
} pmt_proctree;

/* Open the tree rooted at pid (descendants are found at the first sample). */
int pmt_tree_open(pmt_proctree *t, pid_t pid, int flags);
/* Sample the root and its descendants and store the sums in s (pid, ppid,
 * state, elapsed and wall are the root's; nprocs counts the processes).  If
 * rescan, look for new descendants first.  Fails (ESRCH) only when the root
 * has gone; descendants come and go silently. */
int pmt_tree_sample(pmt_proctree *t, pmt_procsample *s, int rescan);
void pmt_tree_close(pmt_proctree *t);

/* Write up to max PIDs of the living descendants of root into out.  Returns
 * how many were found (possibly more than max: only max are stored), or -1
 * with errno.  scan_pid/scan_ppid are scratch arrays of PMT_SCAN_MAX. */
int pmt_descendants(pid_t root, int32_t *out, int max,
                    int32_t *scan_pid, int32_t *scan_ppid);

/* --- parsing (exposed for tests) -------------------------------------- */

/* Parse the text of /proc/PID/stat into s (state, ppid, faults, times,
 * threads) and *starttime.  Returns 0, or -1 if malformed. */
int pmt_parse_stat(const char *text, size_t len, long hz,
                   pmt_procsample *s, uint64_t *starttime);
/* Parse /proc/PID/statm into rss, vms, shared, text, data (bytes). */
int pmt_parse_statm(const char *text, size_t len, long page,
                    pmt_procsample *s);
/* The value of a "Key:   N kB" line (key given with its colon) in bytes,
 * or -1 if absent. */
int64_t pmt_parse_kb(const char *text, size_t len, const char *key);

/* --- formatting ------------------------------------------------------- */

/* Caches the local-time text of the current second. */
typedef struct pmt_tscache {
    int64_t sec;
    char text[20];          /* "YYYY-MM-DD HH:MM:SS" */
} pmt_tscache;

#define PMT_TS_LEN 26       /* "YYYY-MM-DD HH:MM:SS.ffffff" */

/* Format t (seconds since the epoch) as local time with microseconds into
 * out[PMT_TS_LEN] (no NUL).  localtime_r is called once per second. */
void pmt_fmt_timestamp(pmt_tscache *c, double t, char *out);

/* Seconds as a decimal with up to 6 places, at least one: 0.0, 0.34, 5.4078. */
int pmt_fmt_seconds(char *out, double v);

/* Append the JSON string literal of s[0:n] (UTF-8 passed through, control
 * characters, quote and backslash escaped) to out; returns the length the
 * literal needs, writing only what fits in cap. */
size_t pmt_json_string(char *out, size_t cap, const char *s, size_t n);

/* Which optional keys pmt_ps_json writes. */
#define PMT_JSON_EXTRA 0x1      /* shared, text, data, num_threads */
#define PMT_JSON_NPROCS 0x2     /* nprocs (process trees) */

/* Format s as one JSON object (no newline) into out: the seed's keys
 * (timestamp, memory_info {rss, vms, pfaults, pageins}, cpu_times {user,
 * system, children_user, children_system}, elapsed_time, pid) and the
 * optional ones, then "event" if event is not NULL, then "label" if label is
 * not NULL.  Returns the length the whole object needs; only what fits in cap
 * is written, so a caller retries with a bigger buffer if the result > cap. */
size_t pmt_ps_json(char *out, size_t cap, const pmt_procsample *s,
                   pmt_tscache *tc, int keys, const char *event,
                   const char *label, size_t label_len);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCSAMPLE_H */
