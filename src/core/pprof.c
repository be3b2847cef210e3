/* pprof.c: encode a by-stack report as a profile.proto message (see pprof.h).
 * Protocol buffers by hand: varints, and length-delimited fields whose body
 * is encoded into a scratch buffer first. */
#include "pprof.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int failed;
} pbuf;

static void
put_raw(pbuf *b, const void *src, size_t n)
{
    if (n == 0) {
        return;
    }
    if (b->failed || pmt_grow((void **)&b->p, &b->cap, b->len + n, 1) < 0) {
        b->failed = 1;
        return;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void
put_varint(pbuf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put_raw(b, tmp, n);
}

/* field number, wire type 0 (varint) */
static void
put_uint(pbuf *b, unsigned field, uint64_t v)
{
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, v);
}

/* field number, wire type 2 (length-delimited) */
static void
put_bytes(pbuf *b, unsigned field, const void *src, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put_raw(b, src, n);
}

/* A submessage from the scratch buffer, which is emptied. */
static void
put_msg(pbuf *b, unsigned field, pbuf *scratch)
{
    if (scratch->failed) {
        b->failed = 1;
    }
    put_bytes(b, field, scratch->p, scratch->len);
    scratch->len = 0;
}

/* ValueType {type = 1, unit = 2} (string indexes). */
static void
put_value_type(pbuf *b, unsigned field, pbuf *s, uint64_t type, uint64_t unit)
{
    put_uint(s, 1, type);
    put_uint(s, 2, unit);
    put_msg(b, field, s);
}

/* Profile fields. */
enum {
    F_SAMPLE_TYPE = 1, F_SAMPLE = 2, F_LOCATION = 4, F_FUNCTION = 5, F_STRING = 6,
    F_TIME_NANOS = 9, F_PERIOD_TYPE = 11, F_PERIOD = 12, F_COMMENT = 13, F_DEFAULT_TYPE = 14,
};

/* The fixed strings, at the start of the table; each function adds two. */
static const char *const FIXED[] = {
    "", "alloc_objects", "count", "alloc_space", "bytes", "inuse_objects", "inuse_space",
    "space", "pymemtrace malloc: inuse = live at the high-water mark",
    "pymemtrace malloc: inuse = live at the end of the range",
};
enum {
    S_EMPTY, S_ALLOC_OBJECTS, S_COUNT, S_ALLOC_SPACE, S_BYTES, S_INUSE_OBJECTS, S_INUSE_SPACE,
    S_SPACE, S_NOTE_PEAK, S_NOTE_END, S_FIXED
};

static void
put_samples(pbuf *b, pbuf *s, pbuf *packed, const pmt_st_report *r, int inuse)
{
    for (size_t i = 0; i < r->n_stacks; i++) {
        const pmt_st_stack *st = &r->stacks[i];
        /* location ids, innermost first: frame index + 1 */
        for (uint32_t f = st->frame; f != PMT_ST_NONE; f = r->frames[f].parent) {
            put_varint(packed, (uint64_t)f + 1);
        }
        put_msg(s, 1, packed);
        put_varint(packed, st->alloc_count);
        put_varint(packed, st->alloc_bytes);
        put_varint(packed, inuse == PMT_PPROF_INUSE_END ? st->end_count : st->peak_count);
        put_varint(packed, inuse == PMT_PPROF_INUSE_END ? st->end_bytes : st->peak_bytes);
        put_msg(s, 2, packed);
        put_msg(b, F_SAMPLE, s);
    }
}

int
pmt_pprof_encode(const pmt_st_report *r, int inuse, uint64_t time_ns, uint8_t **out,
                 size_t *len)
{
    pbuf b = {0}, s = {0}, t = {0};
    *out = NULL;
    *len = 0;
    put_value_type(&b, F_SAMPLE_TYPE, &s, S_ALLOC_OBJECTS, S_COUNT);
    put_value_type(&b, F_SAMPLE_TYPE, &s, S_ALLOC_SPACE, S_BYTES);
    put_value_type(&b, F_SAMPLE_TYPE, &s, S_INUSE_OBJECTS, S_COUNT);
    put_value_type(&b, F_SAMPLE_TYPE, &s, S_INUSE_SPACE, S_BYTES);
    put_samples(&b, &s, &t, r, inuse);
    /* Location {id = 1, line = 4: Line {function_id = 1, line = 2}} */
    for (size_t i = 0; i < r->n_frames; i++) {
        put_uint(&t, 1, r->frames[i].func + 1ull);
        put_uint(&t, 2, (uint64_t)(int64_t)r->frames[i].line);
        put_uint(&s, 1, i + 1);
        put_msg(&s, 4, &t);
        put_msg(&b, F_LOCATION, &s);
    }
    /* Function {id = 1, name = 2, system_name = 3, filename = 4}: strings
     * S_FIXED + 2i (name) and S_FIXED + 2i + 1 (file) */
    for (size_t i = 0; i < r->n_funcs; i++) {
        put_uint(&s, 1, i + 1);
        put_uint(&s, 2, S_FIXED + 2 * i);
        put_uint(&s, 3, S_FIXED + 2 * i);
        put_uint(&s, 4, S_FIXED + 2 * i + 1);
        put_msg(&b, F_FUNCTION, &s);
    }
    for (size_t i = 0; i < S_FIXED; i++) {
        put_bytes(&b, F_STRING, FIXED[i], strlen(FIXED[i]));
    }
    for (size_t i = 0; i < r->n_funcs; i++) {
        put_bytes(&b, F_STRING, r->funcs[i].name, strlen(r->funcs[i].name));
        put_bytes(&b, F_STRING, r->funcs[i].file, strlen(r->funcs[i].file));
    }
    put_uint(&b, F_TIME_NANOS, time_ns);
    put_value_type(&b, F_PERIOD_TYPE, &s, S_SPACE, S_BYTES);
    put_uint(&b, F_PERIOD, 1);
    put_uint(&b, F_COMMENT, inuse == PMT_PPROF_INUSE_END ? S_NOTE_END : S_NOTE_PEAK);
    put_uint(&b, F_DEFAULT_TYPE, S_INUSE_SPACE);
    int failed = b.failed || s.failed || t.failed;
    free(s.p);
    free(t.p);
    if (failed) {
        free(b.p);
        return -1;
    }
    *out = b.p ? b.p : malloc(1);
    *len = b.len;
    return *out ? 0 : -1;
}
