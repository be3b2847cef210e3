/* fuzz_elfsym.c: libFuzzer harness of the ELF symbol reader (elfsym.c),
 * which maps whatever file a capture names (a library replaced or cut short
 * since the run, or any file at all) and walks its section and symbol
 * tables.  The input becomes a memory file, read through its /proc/self/fd
 * path with a fresh cache each time; lookups at a few fixed offsets (those of
 * the seeds' functions) and at the one the header's padding bytes spell.
 * Whatever the bytes, a lookup returns 0 with a NUL-terminated name or -1,
 * and never reads out of bounds (ASan, UBSan). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elfsym.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
lookup(pmt_elfsym_cache *c, const char *path, uint64_t offset)
{
    static const size_t caps[] = {1, 9, 256};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        char out[256];
        memset(out, 'x', sizeof(out));
        if (pmt_elfsym_lookup(c, path, offset, out, caps[i]) == 0 &&
            memchr(out, '\0', caps[i]) == NULL) {
            abort();        /* a found name is always terminated within cap */
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_elfsym", MFD_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return 0;
        }
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    pmt_elfsym_cache *c = pmt_elfsym_cache_new();
    if (c) {
        uint64_t padded = 0;
        if (size >= 16) {
            memcpy(&padded, data + 8, sizeof(padded));  /* EI_ABIVERSION, EI_PAD */
        }
        static const uint64_t offsets[] = {0, 0x250, 0x251, 0x257, 0x25c, 0x270, UINT64_MAX};
        for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
            lookup(c, path, offsets[i]);
        }
        lookup(c, path, padded);
        pmt_elfsym_cache_free(c);
    }
    close(fd);
    return 0;
}
