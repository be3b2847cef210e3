/* strpool.c: interned strings in one growing buffer (see strpool.h). */
#include "strpool.h"

#include "grow.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n;
} str_key;

static uint64_t
key_hash(const void *key, void *ctx)
{
    (void)ctx;
    const str_key *k = key;
    return pmt_ht_hash_bytes(k->s, k->n);
}

static int
key_eq(const void *key, const void *entry, void *ctx)
{
    const str_key *k = key;
    const pmt_strpool *p = ctx;
    uint32_t off;
    memcpy(&off, entry, sizeof(off));
    const char *t = p->buf + off;
    return strnlen(t, k->n + 1) == k->n && memcmp(t, k->s, k->n) == 0;
}

void
pmt_strpool_init(pmt_strpool *p)
{
    memset(p, 0, sizeof(*p));
    pmt_ht_init(&p->index, sizeof(uint32_t), key_hash, key_eq, p);
}

int64_t
pmt_strpool_intern(pmt_strpool *p, const char *s, size_t n)
{
    /* the buffer must hold the new string before the index may compare it;
     * s may be a string of the pool itself (a reader's name interned again),
     * which growing the buffer would move: it is followed by its offset */
    if (n >= UINT32_MAX - p->len - 1) {
        return -1;
    }
    uintptr_t b = (uintptr_t)p->buf, at = (uintptr_t)s;
    int own = p->buf != NULL && at >= b && at < b + p->len;
    if (pmt_grow((void **)&p->buf, &p->cap, p->len + n + 1, 1) < 0) {
        return -1;
    }
    if (own) {
        s = p->buf + (at - b);
    }
    str_key k = {s, n};
    int created;
    uint32_t *e = pmt_ht_insert(&p->index, &k, &created);
    if (!e) {
        return -1;
    }
    if (created) {
        *e = (uint32_t)p->len;
        memcpy(p->buf + p->len, s, n);
        p->buf[p->len + n] = '\0';
        p->len += n + 1;
    }
    return *e;
}

char *
pmt_strpool_release(pmt_strpool *p, size_t *len)
{
    char *b = p->buf;
    *len = p->len;
    pmt_ht_free(&p->index);
    p->buf = NULL;
    p->len = p->cap = 0;
    return b;
}

void
pmt_strpool_free(pmt_strpool *p)
{
    pmt_ht_free(&p->index);
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}
