/* capture_cursor.h: walk the records of one chunk of a `pymemtrace malloc`
 * capture (capture_format.h), one at a time.
 *
 * A chunk decodes alone: its delta state starts at 0.  The cursor hands out
 * each record in turn: an event (decoded into a pmt_mc_record), a definition
 * (its varints and payload, for capture_defs.c to keep), the end of the
 * chunk (a zero byte or its last byte), or a malformed record (cut short by
 * a kill, or corrupt: the chunk ends there and the cursor says where).  The
 * first reading of a capture (capture_read.c) keeps the definitions; the
 * replays (capture_merge.c) pass over them.  No allocation, no Python.h.
 */
#ifndef PMT_CAPTURE_CURSOR_H
#define PMT_CAPTURE_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "capture_format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const uint8_t *p, *end;     /* the next record; the end of the chunk's bytes */
    uint64_t seq, addr, size, native, code, line;   /* the delta state */
    int native_field;           /* events carry a native address (PMT_MC_FLAG_NATIVE) */
} pmt_cap_cursor;

/* A definition record: its kind, varints and payload (CODE, THREAD, MODULE). */
typedef struct {
    unsigned kind;
    uint64_t v[4];
    const uint8_t *payload;
    size_t plen;
} pmt_cap_def;

enum {
    PMT_CUR_END = 0,        /* no more records */
    PMT_CUR_EVENT = 1,
    PMT_CUR_DEF = 2,
    PMT_CUR_BAD = 3,        /* malformed from p on (p is left at the record's start) */
};

void pmt_cursor_init(pmt_cap_cursor *k, const uint8_t *p, const uint8_t *end, uint32_t flags);

/* The next record: PMT_CUR_EVENT (*r filled), PMT_CUR_DEF (*d filled),
 * PMT_CUR_END or PMT_CUR_BAD (then it stays there). */
int pmt_cursor_next(pmt_cap_cursor *k, pmt_mc_record *r, pmt_cap_def *d);

/* The next event, definitions passed over: 1, or 0 at the end of the chunk
 * or at a malformed record. */
int pmt_cursor_next_event(pmt_cap_cursor *k, pmt_mc_record *r);

#ifdef __cplusplus
}
#endif
#endif
