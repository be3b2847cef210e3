/* fuzz_mallocstats.c: libFuzzer harness of the allocator statistics parser
 * and diff: the input (split at its first NUL, or in half) is parsed as a
 * "before" and an "after" text, checked, and their diff formatted into a
 * small buffer, an exact one and none.  The parser never writes past its
 * fixed tables and the diff's length never depends on the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mallocstats_diff.h"
#include "mallocstats_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pmt_mallocstats_t before, after;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t cut = nul ? (size_t)(nul - text) : size / 2;
    size_t rest = nul ? size - cut - 1 : size - cut;
    pmt_ms_parse(text, cut, &before);
    pmt_ms_parse(text + size - rest, rest, &after);
    if (before.nclasses > PMT_MS_MAX_CLASSES || before.nvalues > PMT_MS_MAX_VALUES ||
        before.nfreelists > PMT_MS_MAX_FREELISTS) {
        abort();
    }
    char err[256];
    if (pmt_ms_check(text, cut, &before, err, sizeof(err)) < 0 && err[0] == '\0') {
        abort();    /* a refusal must say why */
    }
    size_t need = pmt_ms_diff_format(&before, &after, NULL, 0);
    char small[64];
    if (pmt_ms_diff_format(&before, &after, small, sizeof(small)) != need) {
        abort();
    }
    char *buf = malloc(need + 1);
    if (buf) {
        if (pmt_ms_diff_format(&before, &after, buf, need + 1) != need || strlen(buf) != need) {
            abort();
        }
        free(buf);
    }
    (void)pmt_ms_classes_changed(&before, &after);
    return 0;
}
