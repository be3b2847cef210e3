/* logwriter.h: a buffered, append-only log writer with no stdio.
 *
 * Text is formatted into a fixed buffer by small append functions and written
 * with write(2) only when the buffer fills, on flush and on close, so a busy
 * tracer makes few syscalls and no allocation per event.  Errors are sticky:
 * the first failing write(2) records errno and later writes are dropped, so a
 * caller checks once (pmt_lw_error) at a boundary of its choosing.  A writer
 * belongs to the process that opened it: in a forked child every call is a
 * no-op and close() only releases the descriptor, so a child never writes
 * into its parent's log.
 */
#ifndef PMT_LOGWRITER_H
#define PMT_LOGWRITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_LW_BUFSIZE (64 * 1024)

typedef struct pmt_logwriter {
    int fd;
    pid_t owner;            /* pid that opened the file */
    int err;                /* first errno seen, 0 if none */
    size_t len;             /* bytes pending in buf */
    uint64_t written;       /* bytes handed to the kernel so far */
    char buf[PMT_LW_BUFSIZE];
} pmt_logwriter;

/* Flags for pmt_lw_open. */
#define PMT_LW_EXCLUSIVE 1  /* fail with EEXIST rather than touch an existing file */
#define PMT_LW_APPEND    2  /* append to an existing file rather than truncate */

/* Open path for writing (never following a symlink in the last component).
 * Returns 0, or -1 with errno set; w is then unusable. */
int pmt_lw_open(pmt_logwriter *w, const char *path, int flags);

/* Adopt an already open descriptor (e.g. a pipe); the writer closes it. */
void pmt_lw_adopt(pmt_logwriter *w, int fd);

void pmt_lw_bytes(pmt_logwriter *w, const char *s, size_t n);
void pmt_lw_str(pmt_logwriter *w, const char *s);
void pmt_lw_char(pmt_logwriter *w, char c);
/* Signed decimal integer, right-aligned in width columns (0: no padding);
 * left-aligned if width < 0. */
void pmt_lw_int(pmt_logwriter *w, int64_t v, int width);
/* Signed integer with an explicit sign (+0, +12, -7), padded like pmt_lw_int. */
void pmt_lw_sint(pmt_logwriter *w, int64_t v, int width);
/* Fixed-point decimal with `decimals` places (0..9), padded like pmt_lw_int. */
void pmt_lw_fixed(pmt_logwriter *w, double v, int decimals, int width);
/* String padded with spaces to |width| columns (left-aligned if width < 0). */
void pmt_lw_pad(pmt_logwriter *w, const char *s, int width);

/* Write out pending bytes.  Returns 0, or -1 with the sticky error in errno. */
int pmt_lw_flush(pmt_logwriter *w);
/* Flush and close.  Returns 0, or -1 with errno from the first failure. */
int pmt_lw_close(pmt_logwriter *w);
/* The first error seen (an errno value) or 0. */
int pmt_lw_error(const pmt_logwriter *w);

/* Format helpers usable without a writer: write v in decimal to out (no NUL),
 * returning the number of characters (at most 21). */
int pmt_fmt_int(char *out, int64_t v);

#ifdef __cplusplus
}
#endif
#endif /* PMT_LOGWRITER_H */
