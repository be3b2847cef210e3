/* procextra.h: counts that process_tree shows beside a sample of a process:
 * its open file descriptors (the entries of /proc/PID/fd) and its context
 * switches (voluntary + involuntary, from /proc/PID/status).  One-off reads,
 * no stdio, no allocation. */
#ifndef PMT_PROCEXTRA_H
#define PMT_PROCEXTRA_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How many descriptors pid has open, or -1 with errno (ESRCH: no such
 * process; EACCES: another user's process). */
int64_t pmt_proc_count_fds(pid_t pid);

/* The context switches of pid's threads so far (the status file counts the
 * main thread's), or -1 with errno. */
int64_t pmt_proc_ctx_switches(pid_t pid);

/* The sum of the voluntary_ctxt_switches and nonvoluntary_ctxt_switches
 * lines of a status file's text, or -1 if either is missing. */
int64_t pmt_parse_ctx_switches(const char *text, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCEXTRA_H */
