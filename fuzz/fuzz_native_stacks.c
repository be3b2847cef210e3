/* fuzz_native_stacks.c: libFuzzer harness of the by-stack report of
 * `pymemtrace malloc report --native`: any bytes through capture_read, the
 * replay by stack node, the walk of each stack towards its thread (Python,
 * native and THREAD nodes, MODULE build-ids) and the symboliser.  Whatever
 * the bytes, it returns 0 or -1 with an error, never loops, and never reads
 * or writes out of bounds (ASan, UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native_stacks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pmt_ns_report r;
    int rc = pmt_ns_read(data, size, 8, &r);
    if (rc == 0) {
        size_t n = 0;
        for (size_t i = 0; i < r.n_stacks; i++) {
            const pmt_ns_stack *s = &r.stacks[i];
            if (s->first + s->n > r.n_frames || (i && s->bytes > r.stacks[i - 1].bytes)) {
                abort();    /* frames in range, most bytes first */
            }
            for (size_t j = 0; j < s->n; j++) {
                n += strlen(r.frames[s->first + j].file) + strlen(r.frames[s->first + j].function);
            }
            n += strlen(s->thread_name);
        }
        (void)n;
    }
    else if (r.error[0] == '\0') {
        abort();            /* a refusal must say why */
    }
    pmt_ns_free(&r);
    return 0;
}
