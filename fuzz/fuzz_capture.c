/* fuzz_capture.c: libFuzzer harness of the `pymemtrace malloc` capture
 * reader: any bytes through capture_read (header, records, payloads,
 * sequence order) and capture_aggregate (the replay, native symbols, the
 * report).  Whatever the bytes, the reader returns 0 or -1 with an error
 * and never reads or writes out of bounds (ASan, UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_aggregate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pmt_mc_report r;
    int rc = pmt_mc_read_buffer(data, size, &r);
    if (rc == 0) {
        /* what the binding reads: every site's strings and totals */
        size_t n = 0;
        for (size_t i = 0; i < r.n_py_sites; i++) {
            n += strlen(r.py_sites[i].file) + strlen(r.py_sites[i].function);
        }
        for (size_t i = 0; i < r.n_native_sites; i++) {
            n += strlen(r.native_sites[i].file) + strlen(r.native_sites[i].function);
        }
        for (size_t i = 0; i < r.n_big; i++) {
            if (r.big[i].py_site >= r.n_py_sites ||
                (r.big[i].native_site != UINT32_MAX && r.big[i].native_site >= r.n_native_sites)) {
                abort();    /* a largest allocation must name a real site */
            }
        }
        (void)n;
    }
    else if (r.error[0] == '\0') {
        abort();            /* a refusal must say why */
    }
    pmt_mc_report_free(&r);
    return 0;
}
