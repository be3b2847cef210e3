/* fuzz_cpmtsum.c: libFuzzer harness of the cPyMemTrace log summariser
 * (cpmtsum.c, cpmtrow.c): `pymemtrace trace report` reads logs it did not
 * write, cut by crashes or of other tools.  The input is summarised in one
 * piece and again in chunks whose sizes come from its own bytes; both must
 * agree (a line cut by a chunk boundary is read as if it were whole). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpmtrow.h"
#include "cpmtsum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same(const pmt_cpmtsum *a, const pmt_cpmtsum *b)
{
    if (a->seen_header != b->seen_header || a->truncated != b->truncated ||
        a->complete != b->complete || a->records != b->records ||
        a->next_records != b->next_records || a->n_largest != b->n_largest ||
        a->n_by_function != b->n_by_function || a->n_funcs != b->n_funcs ||
        strcmp(a->last_clock, b->last_clock) != 0) {
        abort();
    }
    for (size_t i = 0; i < a->n_largest; i++) {
        if (a->largest[i].event != b->largest[i].event ||
            a->largest[i].d_rss != b->largest[i].d_rss) {
            abort();
        }
    }
    for (size_t i = 0; i < a->n_by_function; i++) {
        size_t la, lb;
        const pmt_cpmtsum_func *fa = &a->funcs[a->by_function[i]];
        const pmt_cpmtsum_func *fb = &b->funcs[b->by_function[i]];
        const char *na = pmt_cpmtsum_name(a, fa->function, &la);
        const char *nb = pmt_cpmtsum_name(b, fb->function, &lb);
        if (fa->d_rss != fb->d_rss || fa->rows != fb->rows || la != lb || memcmp(na, nb, la)) {
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t top = size ? data[0] % 12 : 3;
    pmt_cpmtsum whole, parts;
    pmt_cpmtsum_init(&whole, top);
    pmt_cpmtsum_init(&parts, top);
    int ok = pmt_cpmtsum_feed(&whole, (const char *)data, size) == 0 &&
             pmt_cpmtsum_finish(&whole) == 0;
    for (size_t i = 0, k = 0; ok && i < size; k++) {
        size_t n = 1 + data[k % size] % 97;
        n = n < size - i ? n : size - i;
        ok = pmt_cpmtsum_feed(&parts, (const char *)data + i, n) == 0;
        i += n;
    }
    if (ok && pmt_cpmtsum_finish(&parts) == 0) {
        same(&whole, &parts);
    }
    pmt_cpmtsum_free(&whole);
    pmt_cpmtsum_free(&parts);
    /* the line parsers alone, on the whole input as one line */
    pmt_cpmt_parsed r;
    (void)pmt_cpmt_parse_row((const char *)data, size, &r);
    (void)pmt_cpmt_is_header((const char *)data, size);
    (void)pmt_cpmt_is_end((const char *)data, size);
    return 0;
}
