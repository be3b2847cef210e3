/* cpmtlog.h: the text of a cPyMemTrace log, independent of Python.
 *
 * One concern: turning events and notes into the seed's log layout through a
 * pmt_logwriter, and naming default log files.  The layout (also in the
 * README) is: an optional message, the header row, then NEXT:/PREV: rows and
 * "# " notes, ending with a "# END ..." line:
 *
 *       Event dEvent  Clock    What     File    #line Function      RSS           dRSS
 * NEXT: 0     +0      0.066718 CALL     test.py #   9 create_string  9101312      9101312
 *
 * A row is formatted (src/core/cpmtfmt.c) straight into the writer's buffer
 * when it has room for the longest row, else into a stack buffer handed to
 * the writer in one piece: no allocation, no stdio.
 */
#ifndef PMT_CPMTLOG_H
#define PMT_CPMTLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "logwriter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Event kinds, numbered as the interpreter numbers them (PyTrace_CALL ...). */
enum {
    PMT_EV_CALL = 0,
    PMT_EV_EXCEPTION = 1,
    PMT_EV_LINE = 2,
    PMT_EV_RETURN = 3,
    PMT_EV_C_CALL = 4,
    PMT_EV_C_EXCEPTION = 5,
    PMT_EV_C_RETURN = 6,
    PMT_EV_OPCODE = 7,
};

/* The seed's header row (without the newline). */
extern const char pmt_cpmt_header[];

/* The name of an event kind ("CALL", "C_RETURN", ...); "?" if unknown. */
const char *pmt_cpmt_what_name(int what);

/* One row as written.  file/function need not be NUL-terminated; file may be
 * a full path (only its basename is written). */
typedef struct pmt_cpmt_row {
    int next;               /* 1: "NEXT:", 0: "PREV:" */
    int64_t event;
    int64_t d_event;
    int64_t clock_ns;       /* written as seconds with 6 decimals */
    int what;
    const char *file;
    size_t file_len;
    int line;
    const char *function;
    size_t function_len;
    int64_t rss;
    int64_t d_rss;
} pmt_cpmt_row;

#define PMT_CPMT_NAME_MAX 256

/* The formatter's memory of the last row, so a row costs little more than
 * copying its bytes: consecutive rows repeat most fields (RSS and dRSS, dEvent,
 * the whole seconds, the names) and count the event number up by one.
 * Zero-initialise it; one per log. */
typedef struct pmt_cpmt_memo {
    int64_t v, v2;          /* the value(s) txt is the text of */
    int len;                /* bytes of txt that count */
    int digits;             /* event: the digits at the start of txt */
    char txt[48];           /* the field with its padding and separator */
} pmt_cpmt_memo;

/* The last file and function names as written, keyed by their address and
 * length: the caller keeps the memory of the last names it passed alive and
 * unchanged while it uses the cache (cPyMemTrace holds a reference to the
 * code object and C function of its last row).  A function name of 1 to 16
 * bytes is also keyed by its bytes (w, the words put_short loads, and
 * w_len; w_len 0: not so keyed), for the spare below. */
typedef struct pmt_cpmt_namememo {
    const char *key;
    size_t key_len;
    size_t len;
    size_t w_len;
    uint64_t w[2];
    char txt[PMT_CPMT_NAME_MAX + 32];
} pmt_cpmt_namememo;

/* The function name before the last one, when it had 1 to 16 bytes: keyed
 * by its bytes only (its memory may be gone), so two alternating names (a
 * loop's two C calls) are both cached.  Swapped with the function memo. */
typedef struct pmt_cpmt_namespare {
    size_t len;
    size_t w_len;           /* 0: empty */
    uint64_t w[2];
    char txt[32];
} pmt_cpmt_namespare;

typedef struct pmt_cpmt_fmtcache {
    int ready;              /* 0: zero-initialised, not filled yet */
    pmt_cpmt_memo event, d_event, secs, rss;
    pmt_cpmt_namememo file, function;
    pmt_cpmt_namespare spare;
} pmt_cpmt_fmtcache;

/* Format a row (with its newline) into out, which must hold at least
 * PMT_CPMT_ROW_MAX bytes (some of them past the row may be written over).
 * Names longer than PMT_CPMT_NAME_MAX are cut (the end of a file name is
 * kept, the start of a function name).  cache may be NULL.  Returns the
 * length written.  (src/core/cpmtfmt.c) */
#define PMT_CPMT_ROW_MAX (224 + 2 * PMT_CPMT_NAME_MAX)
size_t pmt_cpmt_format_row(char *out, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache);

/* The plain text helpers of the other lines (no NUL; they return the end):
 * a decimal integer with '-' if negative and '+' if plus and not negative,
 * right-aligned in width columns (left-aligned in -width), and nanoseconds as
 * seconds with 6 decimals (truncated to the microsecond). */
char *pmt_cpmt_put_int(char *p, int64_t v, int width, int plus);
char *pmt_cpmt_put_seconds(char *p, int64_t ns);

/* Write the optional message (verbatim, a newline added if missing) and the
 * header row. */
void pmt_cpmt_write_start(pmt_logwriter *w, const char *message, size_t len);
void pmt_cpmt_write_row(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache);
/* Whether the writer can take a row straight into its buffer: not in error,
 * room for the longest row.  Then pmt_cpmt_append_row (cache not NULL) is
 * pmt_cpmt_write_row without the test, and cannot fail. */
static inline int
pmt_cpmt_row_fits(const pmt_logwriter *w)
{
    return w->err == 0 && w->len + PMT_CPMT_ROW_MAX <= w->cap;
}
void pmt_cpmt_append_row(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache);
/* A user message in the middle of a log: verbatim, newline added if missing. */
void pmt_cpmt_write_message(pmt_logwriter *w, const char *message, size_t len);
/* A message row at an event, in the original pymemtrace's form:
 * "MSG:  <Event> +<dEvent> <Clock> # <message>" (newline added if missing). */
void pmt_cpmt_write_msg_row(pmt_logwriter *w, int64_t event, int64_t d_event, int64_t clock_ns,
                            const char *message, size_t len);
/* "# DETACH event=N clock=S depth=D log=PATH" */
void pmt_cpmt_write_detach(pmt_logwriter *w, int64_t event, int64_t clock_ns,
                           int depth, const char *path);
/* "# RESUME event=N clock=S" */
void pmt_cpmt_write_resume(pmt_logwriter *w, int64_t event, int64_t clock_ns);
/* "# END events=N clock=S rss=B rss_peak=B exit=WHY" */
void pmt_cpmt_write_end(pmt_logwriter *w, int64_t events, int64_t clock_ns,
                        int64_t rss, int64_t rss_peak, const char *why);

/* The default log name YYYYMMDD_HHMMSS_PID_K_n_PY<version>[-suffix].log
 * (local time t, K = 'P' or 'T', suffix 0 = none) into out (NUL-terminated).
 * Returns the length, or -1 if it does not fit. */
int pmt_cpmt_default_name(char *out, size_t cap, time_t t, pid_t pid, char kind,
                          int depth, const char *version, int suffix);

/* Create a new default-named log in directory dir ("" or NULL: the current
 * directory) without ever touching an existing file: O_EXCL, and on EEXIST
 * the next suffix (-1, -2, ... up to -9999).  The chosen path goes to path
 * (NUL-terminated); the writer's buffer is bufsize bytes (0: PMT_LW_BUFSIZE).
 * Returns 0, or -1 with errno set. */
int pmt_cpmt_open_default(pmt_logwriter *w, char *path, size_t cap, const char *dir,
                          time_t t, pid_t pid, char kind, int depth, const char *version,
                          size_t bufsize);

/* The writer's buffer for a log of this d_rss_trigger.  Every event a row
 * (trigger 0, ~91 bytes a row): 256 KiB, fewer write(2)s (a C microbench of
 * 95-byte rows to an ext4 file: 27.4 ns a row with 64 KiB, 22.4 with 256 KiB,
 * 21.5 with 1 MiB).  Otherwise rows are rare and memory matters: 64 KiB. */
#define PMT_CPMT_BUFSIZE_EVERY (256 * 1024)
static inline size_t
pmt_cpmt_bufsize(int64_t trigger)
{
    return trigger == 0 ? (size_t)PMT_CPMT_BUFSIZE_EVERY : (size_t)PMT_LW_BUFSIZE;
}

#ifdef __cplusplus
}
#endif
#endif /* PMT_CPMTLOG_H */
