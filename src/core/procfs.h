/* procfs.h: the files of /proc/PID: open, read whole (pread, no stdio) and
 * parse stat, statm and the "Key: N kB" lines of status and smaps_rollup.
 * The parsers are pure functions over text, unit-tested on fixed input. */
#ifndef PMT_PROCFS_H
#define PMT_PROCFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "procsample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sysconf(_SC_CLK_TCK), read once (the page size is rss.h's pmt_page_size). */
long pmt_clock_hz(void);

/* Open /proc/<pid>/<leaf> read-only (close-on-exec).  Returns the fd, or -1
 * with errno (ESRCH when the process does not exist). */
int pmt_procfs_open(pid_t pid, const char *leaf);

/* Read the whole (small) file at offset 0 into buf and NUL-terminate it.
 * Returns the length, or -1 with errno (ESRCH for a process that has gone). */
ssize_t pmt_procfs_read(int fd, char *buf, size_t cap);

/* Open, read whole and close /proc/<pid>/<leaf> (for a one-off read). */
ssize_t pmt_procfs_read_file(pid_t pid, const char *leaf, char *buf, size_t cap);

/* Call fn(name, arg) for each entry of the directory open as dfd (with
 * getdents64: no allocation), then close dfd.  Returns 0, or -1 with errno
 * (dfd closed all the same). */
int pmt_procfs_each_entry(int dfd, void (*fn)(const char *name, void *arg), void *arg);

/* Close *fd if open and set it to -1 (idempotent). */
void pmt_procfs_close(int *fd);

/* Parse the text of /proc/PID/stat into s (state, ppid, faults, times,
 * threads) and *starttime.  Returns 0, or -1 if malformed. */
int pmt_parse_stat(const char *text, size_t len, long hz,
                   pmt_procsample *s, uint64_t *starttime);
/* Parse /proc/PID/statm into rss, vms, shared, text, data (bytes). */
int pmt_parse_statm(const char *text, size_t len, long page,
                    pmt_procsample *s);
/* The number N of a "Key:   N" line (key given with its colon), or -1 if
 * absent or malformed. */
int64_t pmt_parse_num(const char *text, size_t len, const char *key);
/* The value of a "Key:   N kB" line (key given with its colon) in bytes,
 * or -1 if absent. */
int64_t pmt_parse_kb(const char *text, size_t len, const char *key);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCFS_H */
