/* strpool.h: interned strings in one growing buffer, named by offset.
 *
 * A reader that meets the same file and function names millions of times
 * keeps each once: pmt_strpool_intern returns the offset of an equal string
 * already in the pool, or appends it (NUL-terminated).  Offsets stay valid
 * as the buffer grows; pointers into it do not until pmt_strpool_release
 * hands the buffer over.  Indexed by the shared hash table (hashtab.h).
 */
#ifndef PMT_STRPOOL_H
#define PMT_STRPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "hashtab.h"

typedef struct {
    char *buf;
    size_t len, cap;
    pmt_hashtab index;      /* entries: uint32_t offset */
} pmt_strpool;

/* The pool must not move after init (its index refers to it). */
void pmt_strpool_init(pmt_strpool *p);

/* Offset of s[0..n) in the pool (added if new), or -1 when out of memory
 * or past 4 GiB of strings.  s need not be NUL-terminated, must hold no NUL
 * and must not point into the pool itself. */
int64_t pmt_strpool_intern(pmt_strpool *p, const char *s, size_t n);

static inline const char *
pmt_strpool_at(const pmt_strpool *p, uint32_t off)
{
    return p->buf + off;
}

/* Hand the buffer to the caller (to free()), with its length; the pool is
 * left empty and its index freed. */
char *pmt_strpool_release(pmt_strpool *p, size_t *len);

void pmt_strpool_free(pmt_strpool *p);

#endif
