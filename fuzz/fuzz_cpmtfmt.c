/* fuzz_cpmtfmt.c: libFuzzer harness of the cPyMemTrace row formatter
 * (cpmtfmt.c) against the plain reference of tests/c/cpmtfmt_ref.h.
 *
 * The input is a stream of rows, each a change of the one before: a byte of
 * flags says which fields change, then each changed field's bytes follow
 * (numbers as 8 little-endian bytes, lines as 4, names as a length byte and
 * that many bytes of the input itself, so a name keeps its address while it
 * repeats, as the formatter's cache asks).  An unchanged event number counts
 * up by one, the usual case.  Every row is formatted with one cache kept over
 * the input and without a cache, into a heap block of exactly
 * PMT_CPMT_ROW_MAX bytes (ASan sees a write past the reserve); both must be
 * the reference's bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/c/cpmtfmt_ref.h"
#include "cpmtlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p, *end;
} input;

static uint64_t
take(input *in, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && in->p < in->end; i++) {
        v |= (uint64_t)*in->p++ << (8 * i);
    }
    return v;
}

static void
take_name(input *in, const char **s, size_t *n)
{
    size_t len = (size_t)take(in, 1);
    if (len == 255) {           /* no name */
        *s = NULL;
        *n = 0;
        return;
    }
    if (len == 254) {           /* a long one: the rest of the input, up to 700 bytes */
        len = 700;
    }
    if (len > (size_t)(in->end - in->p)) {
        len = (size_t)(in->end - in->p);
    }
    *s = (const char *)in->p;
    *n = len;
    in->p += len;
}

static void
check(const char *got, size_t ng, const char *want, size_t nw)
{
    if (ng != nw || ng > PMT_CPMT_ROW_MAX || memcmp(got, want, nw) != 0) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pmt_cpmt_fmtcache cache;
    memset(&cache, 0, sizeof cache);
    input in = {data, data + size};
    pmt_cpmt_row r = {1, 0, 1, 0, 0, "t.py", 4, 1, "f", 1, 0, 0};
    char *out = malloc(PMT_CPMT_ROW_MAX);
    char want[PMT_CPMT_ROW_MAX];
    if (out == NULL) {
        return 0;
    }
    for (int rows = 0; in.p < in.end && rows < 4096; rows++) {
        unsigned flags = (unsigned)take(&in, 2);
        r.next = (int)(flags & 1);
        if (flags & 2) {
            r.event = (int64_t)take(&in, 8);
        }
        else if (r.event < INT64_MAX) {
            r.event++;
        }
        if (flags & 4) {
            r.d_event = (int64_t)take(&in, 8);
        }
        if (flags & 8) {
            r.clock_ns = (int64_t)take(&in, 8);
            if (r.clock_ns == INT64_MIN) {     /* undefined in the previous formatter */
                r.clock_ns++;
            }
        }
        else if (flags & 16) {     /* within the second, mostly */
            uint64_t ns = (uint64_t)r.clock_ns + take(&in, 2) * 1000;
            r.clock_ns = ns == (uint64_t)INT64_MIN ? 0 : (int64_t)ns;
        }
        if (flags & 32) {
            r.what = (int)(int8_t)take(&in, 1);
        }
        if (flags & 64) {
            take_name(&in, &r.file, &r.file_len);
        }
        if (flags & 128) {
            r.line = (int)(int32_t)take(&in, flags & 0x800 ? 4 : 2);
        }
        if (flags & 0x100) {
            take_name(&in, &r.function, &r.function_len);
        }
        if (flags & 0x200) {
            r.rss = (int64_t)take(&in, 8);
        }
        if (flags & 0x400) {
            r.d_rss = (int64_t)take(&in, flags & 0x1000 ? 8 : 3);
        }
        size_t nw = ref_format_row(want, &r);
        check(out, pmt_cpmt_format_row(out, &r, &cache), want, nw);
        check(out, pmt_cpmt_format_row(out, &r, NULL), want, nw);
    }
    free(out);
    return 0;
}
