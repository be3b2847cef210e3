/* capture_build.h: build `pymemtrace malloc` captures in memory for the C
 * tests of capture_read, capture_aggregate and the fuzz seeds. */
#ifndef PMT_CAPTURE_BUILD_H
#define PMT_CAPTURE_BUILD_H
#include <stdint.h>
#include <string.h>

#include "capture_format.h"

static uint8_t buf[1 << 16];
static size_t len;

static inline void
put(const void *p, size_t n)
{
    memcpy(buf + len, p, n);
    len += n;
}

static inline void
header(uint32_t rs)
{
    pmt_mc_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, PMT_MC_MAGIC, 8);
    h.version = PMT_MC_VERSION;
    h.header_size = PMT_MC_HEADER_SIZE;
    h.record_size = rs;
    h.flags = rs == PMT_MC_RECORD_NATIVE ? PMT_MC_FLAG_NATIVE : 0;
    h.pid = 7;
    h.endian = PMT_MC_ENDIAN;
    len = 0;
    put(&h, sizeof(h));
}

static inline void
ev(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint32_t code, int32_t line)
{
    pmt_mc_record r = {seq << 8 | kind, a, b, code, line, 0};
    put(&r, PMT_MC_RECORD_BASE);
}

static inline void
code(uint32_t id, const char *file, const char *name)
{
    char payload[256];
    size_t n = strlen(file) + 1 + strlen(name) + 1;
    memset(payload, 0, sizeof(payload));
    strcpy(payload, file);
    strcpy(payload + strlen(file) + 1, name);
    pmt_mc_record r = {PMT_MC_CODE, 0x1000, n, id, 1, 0};
    put(&r, PMT_MC_RECORD_BASE);
    put(payload, (n + 31) / 32 * 32);
}

static inline void
end(void)
{
    pmt_mc_record r = {PMT_MC_END, 0, 0, 0, -1, 0};
    put(&r, PMT_MC_RECORD_BASE);
}

/* An event with a native return address (40-byte records). */
static inline void
native_ev(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint64_t ret)
{
    pmt_mc_record r = {seq << 8 | kind, a, b, 0, -1, ret};
    put(&r, PMT_MC_RECORD_NATIVE);
}

/* A MODULE definition (40-byte records): [lo, hi) loaded at bias. */
static inline void
module(uint64_t lo, uint64_t bias, uint64_t hi, const char *path)
{
    char payload[256];
    size_t n = 16 + strlen(path) + 1;
    memset(payload, 0, sizeof(payload));
    memcpy(payload, &bias, 8);
    memcpy(payload + 8, &hi, 8);
    strcpy(payload + 16, path);
    pmt_mc_record m = {PMT_MC_MODULE, lo, n, 0, 0, 0};
    put(&m, PMT_MC_RECORD_NATIVE);
    put(payload, (n + PMT_MC_RECORD_NATIVE - 1) / PMT_MC_RECORD_NATIVE * PMT_MC_RECORD_NATIVE);
}

#endif
