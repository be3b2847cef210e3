/* rss.h: the current and peak resident set size (RSS) of this process.
 *
 * Linux: one pread(2) of /proc/self/statm on a descriptor kept open between
 * calls (reopened after fork), no stdio and no allocation.  macOS: task_info.
 * Every function is async-signal-safe apart from the first open and is safe to
 * call from any thread.
 */
#ifndef PMT_RSS_H
#define PMT_RSS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Current RSS of this process in bytes, or -1 with errno set. */
int64_t pmt_rss_current(void);

/* Peak RSS of this process in bytes: the kernel's high-water mark, never less
 * than the current RSS (the two are counted lazily and may disagree by a few
 * pages).  -1 with errno set on error. */
int64_t pmt_rss_peak(void);

/* The same, given a current RSS the caller has just read (now < 0: none): the
 * kernel's mark, never less than now.  Saves reading RSS twice. */
int64_t pmt_rss_peak_given(int64_t now);

/* The system page size in bytes (cached). */
long pmt_page_size(void);

/* Parse the resident field (second number, in pages) out of the text of a
 * statm file.  Returns pages, or -1 if the text is malformed.  Exposed for
 * tests and for samplers of other processes. */
int64_t pmt_statm_parse_resident(const char *text, long len);

/* Read RSS in bytes from an open statm descriptor with pread; -1 on error. */
int64_t pmt_rss_from_statm_fd(int fd);

#ifdef __cplusplus
}
#endif
#endif /* PMT_RSS_H */
