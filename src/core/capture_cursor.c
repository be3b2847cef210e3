/* capture_cursor.c: walk one chunk's records (see capture_cursor.h). */
#include "capture_cursor.h"

#include <string.h>

void
pmt_cursor_init(pmt_cap_cursor *k, const uint8_t *p, const uint8_t *end, uint32_t flags)
{
    memset(k, 0, sizeof(*k));
    k->p = p;
    k->end = end;
    k->native_field = !!(flags & PMT_MC_FLAG_NATIVE);
}

/* n varints from [*p, end) into v; 0 if one runs past end. */
static int
get_uvs(const uint8_t **p, const uint8_t *end, uint64_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        if ((*p = pmt_get_uv(*p, end, &v[i])) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* One event record after its kind byte; 0 if malformed. */
static int
decode_event(pmt_cap_cursor *k, unsigned byte, const uint8_t **p, pmt_mc_record *r)
{
    const uint8_t *end = k->end;
    unsigned kind = byte & PMT_MC_KIND_MASK;
    uint64_t v;
    if (byte & PMT_MC_SEQ_NEXT) {
        k->seq++;
    }
    else if (get_uvs(p, end, &v, 1)) {
        k->seq += pmt_unzz(v);
    }
    else {
        return 0;
    }
    if (!get_uvs(p, end, &v, 1)) {
        return 0;
    }
    k->addr += pmt_unzz(v);
    if (k->seq == 0 || k->seq >> 56) {
        return 0;   /* not a number the writer makes */
    }
    *r = (pmt_mc_record){.seq_kind = k->seq << 8 | kind, .a = k->addr, .line = -1};
    if (pmt_mc_is_alloc(kind)) {
        uint64_t w[2];
        if (!get_uvs(p, end, w, 1)) {
            return 0;
        }
        k->size += pmt_unzz(w[0]);
        r->b = k->size;
        if (!(byte & PMT_MC_SAME_SITE)) {
            if (!get_uvs(p, end, w, 2)) {
                return 0;
            }
            k->code += pmt_unzz(w[0]);
            k->line += pmt_unzz(w[1]);
        }
        r->code = k->code > UINT32_MAX ? UINT32_MAX : (uint32_t)k->code;
        r->line = (int64_t)k->line < INT32_MIN || (int64_t)k->line > INT32_MAX
                      ? -1 : (int32_t)(int64_t)k->line;
    }
    else if (byte & PMT_MC_SAME_SITE) {
        return 0;   /* only allocations have a site */
    }
    else if (kind == PMT_MC_MUNMAP && !get_uvs(p, end, &r->b, 1)) {
        return 0;
    }
    if (k->native_field) {
        uint64_t n;
        if (!get_uvs(p, end, &n, 1)) {
            return 0;
        }
        k->native += pmt_unzz(n);
        r->native = k->native;
    }
    return 1;
}

/* A definition record after its kind byte; 0 if malformed. */
static int
decode_def(pmt_cap_cursor *k, unsigned kind, const uint8_t **p, pmt_cap_def *d)
{
    /* CODE: id, line, plen; THREAD: id, tid, plen; NATIVE_FRAME: id, parent, addr;
     * STACK: id, parent, code, line; MODULE: lo, bias, hi, plen;
     * TIME: ns, rss, seq (no payload) */
    const int nv = kind == PMT_MC_CODE || kind == PMT_MC_THREAD || kind == PMT_MC_NATIVE_FRAME ||
                           kind == PMT_MC_TIME
                       ? 3 : 4;
    d->kind = kind;
    d->payload = NULL;
    d->plen = 0;
    if (!get_uvs(p, k->end, d->v, nv)) {
        return 0;
    }
    if (kind == PMT_MC_STACK || kind == PMT_MC_NATIVE_FRAME || kind == PMT_MC_TIME) {
        return 1;
    }
    uint64_t plen = d->v[nv - 1];
    if (plen > (uint64_t)(k->end - *p)) {
        return 0;
    }
    d->payload = *p;
    d->plen = (size_t)plen;
    *p += plen;
    return 1;
}

int
pmt_cursor_next(pmt_cap_cursor *k, pmt_mc_record *r, pmt_cap_def *d)
{
    if (k->p >= k->end || *k->p == 0) {
        return PMT_CUR_END;
    }
    const uint8_t *p = k->p;
    unsigned byte = *p++, kind = byte & PMT_MC_KIND_MASK;
    int what;
    if (pmt_mc_is_alloc(kind) || pmt_mc_is_release(kind)) {
        what = decode_event(k, byte, &p, r) ? PMT_CUR_EVENT : PMT_CUR_BAD;
    }
    else if (byte == PMT_MC_CODE || byte == PMT_MC_STACK || byte == PMT_MC_MODULE ||
             byte == PMT_MC_NATIVE_FRAME || byte == PMT_MC_THREAD || byte == PMT_MC_TIME) {
        what = decode_def(k, byte, &p, d) ? PMT_CUR_DEF : PMT_CUR_BAD;
    }
    else {
        what = PMT_CUR_BAD;     /* unknown kind: corrupt from here */
    }
    if (what != PMT_CUR_BAD) {
        k->p = p;
    }
    return what;
}

int
pmt_cursor_next_event(pmt_cap_cursor *k, pmt_mc_record *r)
{
    pmt_cap_def d;
    for (;;) {
        int what = pmt_cursor_next(k, r, &d);
        if (what == PMT_CUR_EVENT) {
            return 1;
        }
        if (what != PMT_CUR_DEF) {
            return 0;
        }
    }
}
