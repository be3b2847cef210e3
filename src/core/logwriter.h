/* logwriter.h: a buffered, append-only log writer with no stdio.
 *
 * Text is formatted into a buffer by small append functions and written with
 * write(2) only when the buffer fills, on flush and on close, so a busy tracer
 * makes few syscalls and no allocation per event.  The buffer's size is chosen
 * at open (PMT_LW_BUFSIZE unless pmt_lw_open_size says otherwise); it is
 * allocated and every page of it touched there, so that it is resident before
 * the first write (a tracer reading RSS never sees its own buffer fault in),
 * and freed by pmt_lw_close.  Errors are sticky:
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

#define PMT_LW_BUFSIZE (64 * 1024)     /* pmt_lw_open's and pmt_lw_adopt's buffer */

typedef struct pmt_logwriter {
    int fd;
    pid_t owner;            /* pid that opened the file */
    int err;                /* first errno seen, 0 if none */
    size_t len;             /* bytes pending in buf */
    size_t cap;             /* bytes in buf */
    char *buf;              /* malloc'ed at open, freed at close */
    uint64_t written;       /* bytes handed to the kernel so far */
} pmt_logwriter;

/* Flags for pmt_lw_open. */
#define PMT_LW_EXCLUSIVE 1  /* fail with EEXIST rather than touch an existing file */
#define PMT_LW_APPEND    2  /* append to an existing file rather than truncate */

/* A closed writer holding nothing: pmt_lw_close on it is a no-op (for a
 * writer that may be closed before it was ever opened). */
void pmt_lw_init(pmt_logwriter *w);

/* Open path for writing (never following a symlink in the last component),
 * with a buffer of PMT_LW_BUFSIZE bytes.  Returns 0, or -1 with errno set
 * (ENOMEM: no buffer); w then holds nothing and needs no close. */
int pmt_lw_open(pmt_logwriter *w, const char *path, int flags);
/* The same with a buffer of bufsize bytes (at least 1; PMT_LW_BUFSIZE if 0). */
int pmt_lw_open_size(pmt_logwriter *w, const char *path, int flags, size_t bufsize);

/* Adopt an already open descriptor (e.g. a pipe); the writer closes it.
 * Without memory for the buffer the writer is in error (ENOMEM, sticky). */
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
/* Flush, close and free the buffer.  Returns 0, or -1 with errno from the
 * first failure.  Closing again is a no-op returning the same. */
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
