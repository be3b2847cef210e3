/* fuzz_procfs.c: libFuzzer harness of the /proc parsers (procfs.c: stat,
 * statm, "Key: N kB" lines; rss.c: the resident field of statm that
 * cPyMemTrace reads): the bytes a sampler reads from files it does not
 * control. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "procfs.h"
#include "rss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the sampler hands the parsers a NUL-terminated buffer */
    char *text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    pmt_procsample s;
    uint64_t start = 0;
    memset(&s, 0, sizeof(s));
    (void)pmt_parse_stat(text, size, 100, &s, &start);
    memset(&s, 0, sizeof(s));
    (void)pmt_parse_statm(text, size, 4096, &s);
    (void)pmt_parse_kb(text, size, "VmHWM:");
    (void)pmt_parse_kb(text, size, "VmRSS:");
    /* rss.c reads at most 127 bytes, not terminated */
    (void)pmt_statm_parse_resident((const char *)data, (long)(size < 127 ? size : 127));
    free(text);
    return 0;
}
