/* cpmtsum.h: the summary of a cPyMemTrace log that `pymemtrace trace report`
 * prints, computed in one pass over the log's bytes, independent of Python.
 *
 * One concern: streaming a log (its lines recognised by cpmtrow.h) into what
 * pymemtrace/readers/cpmt_log.py's CpmtLog gives the report: the number of
 * rows and of NEXT: rows, the first NEXT: row's RSS, the last row's RSS,
 * event and clock, whether the last line was cut short or is the clean-end
 * note, the `top` NEXT: rows with the largest |dRSS| (ties in log order) and
 * the net dRSS by (function, file) (the `top` largest that are not zero, ties
 * in order of first appearance).  Like the Python reader, the first NEXT: row
 * is left out of both when its event is 0 (its dRSS is the RSS at start).
 *
 * Memory grows with the number of distinct names and with `top`, never with
 * the number of rows: a line longer than PMT_CPMTSUM_LINE_MAX bytes (the
 * Python readers' textfile.MAX_LINE) is never a header, row or end line, and
 * only its first PMT_CPMTSUM_LINE_MAX + 1 bytes are held.  Names are kept as the Python
 * reader's text would have them: bytes that are not UTF-8 are replaced by
 * U+FFFD as bytes.decode("utf-8", "replace") does, so equal names in Python
 * are equal here.  A number outside int64 (20 digits are allowed) or a sum
 * outside it sets `overflow`: the caller then uses the Python reader.
 */
#ifndef PMT_CPMTSUM_H
#define PMT_CPMTSUM_H

#include <stddef.h>
#include <stdint.h>

#include "cpmtrow.h"
#include "hashtab.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_CPMTSUM_LINE_MAX (1u << 20)

/* One of the largest changes (a NEXT: row). */
typedef struct pmt_cpmtsum_change {
    uint64_t mag;           /* |d_rss| */
    uint64_t order;         /* its place among the rows considered */
    int64_t d_rss, event, line;
    uint32_t what, func;    /* what: a name id; func: an index into the functions */
} pmt_cpmtsum_change;

/* The net change of one (function, file). */
typedef struct pmt_cpmtsum_func {
    uint32_t function, file;    /* name ids */
    int64_t d_rss;
    uint64_t rows;
} pmt_cpmtsum_func;

typedef struct pmt_cpmtsum {
    /* ---- results (after pmt_cpmtsum_finish) ---- */
    uint64_t bytes;             /* bytes read */
    int seen_header;            /* 0: not a cPyMemTrace log */
    int truncated;              /* the last line had no newline (not a row) */
    int complete;               /* the last line is the clean-end note */
    int overflow;               /* a number or sum outside int64: results are wrong */
    uint64_t records, next_records;
    int64_t first_rss;          /* of the first NEXT: row (if next_records) */
    int64_t last_rss, last_event;   /* of the last row (if records) */
    char last_clock[PMT_CPMT_CLOCK_MAX + 1];
    /* sorted by pmt_cpmtsum_finish: */
    pmt_cpmtsum_change *largest;    /* n_largest, largest |dRSS| first */
    size_t n_largest;
    uint32_t *by_function;      /* n_by_function indexes into funcs: d_rss != 0, largest first */
    size_t n_by_function;
    pmt_cpmtsum_func *funcs;    /* every (function, file), in order of first appearance */
    size_t n_funcs;

    /* ---- private ---- */
    size_t top, largest_cap, funcs_cap, by_function_cap;
    int last_is_end, failed;
    uint64_t considered;
    char *names;                /* name bytes, each NUL-terminated */
    size_t names_len, names_cap;
    uint32_t *name_off;         /* id -> offset in names */
    uint32_t *name_len;
    size_t n_names, names_idx_cap;
    pmt_hashtab name_index;     /* entries: uint32_t id */
    pmt_hashtab func_index;     /* entries: uint64_t key (function << 32 | file), uint32_t index */
    char *carry;                /* a line cut by a chunk boundary */
    size_t carry_len, carry_cap;
    char *scratch;              /* names being made valid UTF-8 */
    size_t scratch_cap;
    struct {                    /* the last names seen, as in the log */
        char raw[128];
        size_t len;             /* SIZE_MAX: none */
        uint32_t id;
    } memo[3];
    uint64_t memo_key;          /* the last (function, file) and its index */
    uint32_t memo_func;
    int have_memo_func;
} pmt_cpmtsum;

/* Start a summary keeping the `top` largest changes and functions. */
void pmt_cpmtsum_init(pmt_cpmtsum *s, size_t top);

/* Feed the next bytes of the log.  Returns 0, or -1 when out of memory. */
int pmt_cpmtsum_feed(pmt_cpmtsum *s, const char *data, size_t len);

/* The end of the log: the last line, sorting.  Returns 0, or -1 when out of
 * memory (also when an earlier feed ran out). */
int pmt_cpmtsum_finish(pmt_cpmtsum *s);

enum {
    PMT_CPMTSUM_OK = 0,
    PMT_CPMTSUM_ERRNO = -1,         /* errno says why (EISDIR for a directory) */
    PMT_CPMTSUM_NOT_REGULAR = -2,   /* a device, a pipe, a socket */
};

/* Open path (never blocking on a FIFO), read all of it and finish.  A
 * directory gives PMT_CPMTSUM_ERRNO with errno EISDIR. */
int pmt_cpmtsum_read_path(pmt_cpmtsum *s, const char *path);

/* A name by id (NUL-terminated; it may hold NUL, hence *len). */
static inline const char *
pmt_cpmtsum_name(const pmt_cpmtsum *s, uint32_t id, size_t *len)
{
    *len = s->name_len[id];
    return s->names + s->name_off[id];
}

void pmt_cpmtsum_free(pmt_cpmtsum *s);

/* bytes.decode("utf-8", "replace") re-encoded: invalid sequences become
 * EF BF BD, one for each maximal invalid part.  out holds 3 * n bytes.
 * Returns the length written. */
size_t pmt_cpmtsum_utf8_replace(const unsigned char *in, size_t n, char *out);

#ifdef __cplusplus
}
#endif
#endif /* PMT_CPMTSUM_H */
