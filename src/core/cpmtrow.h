/* cpmtrow.h: recognising one line of a cPyMemTrace log, independent of Python.
 *
 * One concern: the reader's grammar of a line, the inverse of cpmtlog.h.
 * A line (without its newline) is the header row, an event row, the clean-end
 * note or anything else.  The grammar is the one pymemtrace/readers/cpmt_log.py
 * states as regular expressions (re.ASCII), here without backtracking:
 *
 *   header:  ws* Event ws+ dEvent ws+ Clock ws+ What ws+ File ws+ #line ws+
 *            Function ws+ RSS ws+ dRSS ws*
 *   row:     (NEXT|PREV): ws+ D ws+ [+-]?D ws+ D(.D)? ws+ [A-Z_]+ ws+ FILE ws* #
 *            ws* -?D ws+ FUNCTION ws+ -?D ws+ [+-]?D ws*
 *   end:     "# END events=" digit+ " " ...
 *
 * ws is one of " \t\n\v\f\r", D is 1 to 20 decimal digits, FUNCTION is a run
 * of non-ws bytes, FILE is any bytes: the shortest that lets the rest match
 * (so the row's '#' is the first one followed by a valid rest, and FILE does
 * not end in ws).  Lines are byte strings that may hold NUL; bytes >= 0x80
 * are neither ws, digits nor letters, as non-ASCII characters are not under
 * re.ASCII.  No allocation.
 */
#ifndef PMT_CPMTROW_H
#define PMT_CPMTROW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An event row as read: the text fields point into the line. */
typedef struct pmt_cpmt_parsed {
    int next;               /* 1: "NEXT:", 0: "PREV:" */
    int overflow;           /* a number is outside int64 (its field is then wrong) */
    int64_t event, d_event, line, rss, d_rss;
    const char *clock;      /* the Clock text, e.g. "0.066718" (at most 41 bytes) */
    size_t clock_len;
    const char *what;
    size_t what_len;
    const char *file;
    size_t file_len;
    const char *function;
    size_t function_len;
} pmt_cpmt_parsed;

#define PMT_CPMT_CLOCK_MAX 41

/* 1 if s[0..n) is an event row (filled into *row), else 0. */
int pmt_cpmt_parse_row(const char *s, size_t n, pmt_cpmt_parsed *row);

/* 1 if s[0..n) is the header row. */
int pmt_cpmt_is_header(const char *s, size_t n);

/* 1 if s[0..n) is the clean-end note "# END events=N ...". */
int pmt_cpmt_is_end(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* PMT_CPMTROW_H */
