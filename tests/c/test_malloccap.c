/* test_malloccap.c: the capture reader/aggregator and ELF symbol lookup. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "elfsym.h"
#include "malloccap.h"

static uint8_t buf[1 << 16];
static size_t len;

static void
put(const void *p, size_t n)
{
    memcpy(buf + len, p, n);
    len += n;
}

static void
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

static void
ev(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint32_t code, int32_t line)
{
    pmt_mc_record r = {seq << 8 | kind, a, b, code, line, 0};
    put(&r, PMT_MC_RECORD_BASE);
}

static void
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

static void
end(void)
{
    pmt_mc_record r = {PMT_MC_END, 0, 0, 0, -1, 0};
    put(&r, PMT_MC_RECORD_BASE);
}

static const pmt_mc_site *
find(const pmt_mc_report *r, const char *fn, int line)
{
    for (size_t i = 0; i < r->n_py_sites; i++) {
        if (strcmp(r->py_sites[i].function, fn) == 0 && r->py_sites[i].line == line) {
            return &r->py_sites[i];
        }
    }
    return NULL;
}

static void
test_order_and_reuse(void)
{
    header(PMT_MC_RECORD_BASE);
    /* thread B's buffer first, then thread A's: the reader must sort by seq */
    code(2, "b.py", "g");
    ev(2, PMT_MC_MALLOC, 0x5000, 30, 2, 5);
    ev(4, PMT_MC_CALLOC, 0x4000, 40, 2, 6);        /* reuses A's freed address */
    ev(5, PMT_MC_REALLOC_FREE, 0x5000, 0, 0, -1);
    ev(6, PMT_MC_REALLOC, 0x6000, 300, 2, 7);
    code(1, "a.py", "f");
    ev(1, PMT_MC_MALLOC, 0x4000, 1000, 1, 3);
    ev(3, PMT_MC_FREE, 0x4000, 0, 0, -1);
    ev(7, PMT_MC_FREE, 0x9999, 0, 0, -1);           /* never allocated here */
    end();
    pmt_mc_report r;
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), 0);
    CHECK(r.complete);
    CHECK_EQ_INT(r.events, 7);
    CHECK_EQ_INT(r.seq_gaps, 0);
    CHECK_EQ_INT(r.unknown_frees, 1);
    CHECK_EQ_INT(r.total_bytes, 1000 + 30 + 40 + 300);
    CHECK_EQ_INT(r.peak_bytes, 1030);
    CHECK_EQ_INT(r.live_bytes, 340);
    CHECK_EQ_INT(r.live_count, 2);
    const pmt_mc_site *f = find(&r, "f", 3), *g6 = find(&r, "g", 6), *g5 = find(&r, "g", 5);
    CHECK(f && g6 && g5);
    if (f && g6 && g5) {
        CHECK_EQ_STR(f->file, "a.py");
        CHECK_EQ_INT(f->live_count, 0);
        CHECK_EQ_INT(g6->live_bytes, 40);
        CHECK_EQ_INT(g5->live_count, 0);
    }
    CHECK_EQ_STR(r.py_sites[0].function, "f");     /* sorted by bytes */
    CHECK_EQ_INT(r.n_big, 4);
    CHECK_EQ_INT(r.big[0].size, 1000);
    CHECK_EQ_INT(r.big[0].freed, 1);
    CHECK_EQ_INT(r.big[1].size, 300);
    CHECK_EQ_INT(r.big[1].freed, 0);
    pmt_mc_report_free(&r);
}

static void
test_mmap_regions(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "m.py", "arena");
    ev(1, PMT_MC_MMAP, 0x100000, 0x40000, 1, 9);
    ev(2, PMT_MC_MUNMAP, 0x110000, 0x10000, 0, -1);  /* a hole in the middle */
    ev(3, PMT_MC_MUNMAP, 0x100000, 0x8000, 0, -1);   /* trim the front */
    ev(4, PMT_MC_MUNMAP, 0x500000, 0x1000, 0, -1);   /* not ours */
    ev(5, PMT_MC_MMAP, 0x200000, 0x1000, 0, -1);
    ev(6, PMT_MC_MUNMAP, 0x200000, 0x1000, 0, -1);
    end();
    pmt_mc_report r;
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), 0);
    CHECK_EQ_INT(r.mmap_bytes, 0x41000);
    CHECK_EQ_INT(r.peak_bytes, 0x40000);
    CHECK_EQ_INT(r.live_mmap_bytes, 0x40000 - 0x18000);
    CHECK_EQ_INT(r.live_count, 2);          /* the arena is in two pieces now */
    const pmt_mc_site *a = find(&r, "arena", 9);
    CHECK(a != NULL);
    if (a) {
        CHECK_EQ_INT(a->live_bytes, 0x28000);
        CHECK_EQ_INT(a->mmap_count, 1);
    }
    pmt_mc_report_free(&r);
}

static void
test_truncated_and_bad(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "t.py", "h");
    ev(1, PMT_MC_MALLOC, 0x10, 5, 1, 1);
    ev(2, PMT_MC_MALLOC, 0x20, 6, 1, 1);
    pmt_mc_report r;
    /* cut inside the second event */
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len - 10, &r), 0);
    CHECK_EQ_INT(r.complete, 0);
    CHECK_EQ_INT(r.trailing_bytes, 22);
    CHECK_EQ_INT(r.total_bytes, 5);
    pmt_mc_report_free(&r);
    /* cut inside a code definition's payload: stop before it */
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, PMT_MC_HEADER_SIZE + 40, &r), 0);
    CHECK_EQ_INT(r.events, 0);
    CHECK_EQ_INT(r.trailing_bytes, 40);
    pmt_mc_report_free(&r);
    /* an unknown kind stops the reader there */
    ev(3, 99, 0, 0, 0, 0);
    ev(4, PMT_MC_MALLOC, 0x30, 7, 1, 1);
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), 0);
    CHECK_EQ_INT(r.total_bytes, 11);
    CHECK_EQ_INT(r.trailing_bytes, 64);
    pmt_mc_report_free(&r);
    /* bad headers */
    memcpy(buf, "NOTACAPT", 8);
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), -1);
    CHECK(strstr(r.error, "bad magic") != NULL);
    pmt_mc_report_free(&r);
    header(48);
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), -1);
    CHECK(strstr(r.error, "record size") != NULL);
    pmt_mc_report_free(&r);
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, 20, &r), -1);
    CHECK(strstr(r.error, "cut short inside its header") != NULL);
    pmt_mc_report_free(&r);
    CHECK_EQ_INT(pmt_mc_read("/nonexistent/capture", &r), -1);
    CHECK(strstr(r.error, "cannot open /nonexistent/capture") != NULL);
    pmt_mc_report_free(&r);
}

static void
test_native_sites(void)
{
    header(PMT_MC_RECORD_NATIVE);
    pmt_mc_record e = {1 << 8 | PMT_MC_MALLOC, 0x10, 64, 0, -1, 0x7000123};
    put(&e, PMT_MC_RECORD_NATIVE);
    pmt_mc_record e2 = {2 << 8 | PMT_MC_MALLOC, 0x20, 32, 0, -1, 0x7000123};
    put(&e2, PMT_MC_RECORD_NATIVE);
    /* a module covering it: payload bias, end, path */
    char payload[80];
    memset(payload, 0, sizeof(payload));
    uint64_t bias = 0x7000000, hi = 0x7100000;
    memcpy(payload, &bias, 8);
    memcpy(payload + 8, &hi, 8);
    strcpy(payload + 16, "/nonexistent/libfoo.so");
    pmt_mc_record m = {PMT_MC_MODULE, 0x7000000, 16 + 23, 0, 0, 0};
    put(&m, PMT_MC_RECORD_NATIVE);
    put(payload, 40);
    pmt_mc_report r;
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), 0);
    CHECK_EQ_INT(r.n_native_sites, 1);
    if (r.n_native_sites == 1) {
        CHECK_EQ_STR(r.native_sites[0].file, "/nonexistent/libfoo.so");
        CHECK_EQ_INT(r.native_sites[0].offset, 0x123);
        CHECK_EQ_INT(r.native_sites[0].bytes, 96);
        CHECK_EQ_INT(r.native_sites[0].count, 2);
    }
    pmt_mc_report_free(&r);
}

int
elfsym_target(int x)
{
    return x * 3 + 1;
}

static void
test_elfsym(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    CHECK(n > 0);
    if (n <= 0) {
        return;
    }
    exe[n] = '\0';
    pmt_elfsym_cache *c = pmt_elfsym_cache_new();
    char name[128];
    /* this test is built as a PIE or not; either way the symbol's value is
     * the offset from the load bias, which is what a capture records */
    extern char __executable_start;
    uint64_t off = (uint64_t)(uintptr_t)&elfsym_target - (uint64_t)(uintptr_t)&__executable_start;
    CHECK_EQ_INT(pmt_elfsym_lookup(c, exe, off + 2, name, sizeof(name)), 0);
    CHECK(strncmp(name, "elfsym_target+0x", 16) == 0);
    CHECK_EQ_INT(pmt_elfsym_lookup(c, "/nonexistent", 10, name, sizeof(name)), -1);
    pmt_elfsym_cache_free(c);
}

/* Random records after a valid header: the reader must never crash or
 * read out of bounds (run under ASan by make sanitize). */
static void
test_fuzz(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int ok = 0;
    for (int round = 0; round < 3000; round++) {
        header(round % 2 ? PMT_MC_RECORD_NATIVE : PMT_MC_RECORD_BASE);
        size_t n = 64 + (size_t)(x % 1500);
        for (size_t i = 0; i < n && len < sizeof(buf); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint8_t b = (uint8_t)x;
            /* mostly plausible kinds and small numbers, some garbage */
            if (i % 32 == 0) {
                static const uint8_t kinds[] = {1, 2, 3, 4, 5, 16, 17, 18, 32, 33, 34, 35, 99};
                b = kinds[(x >> 8) % sizeof(kinds)];
            }
            else if (i % 32 < 8 && (x >> 20) % 4) {
                b = (uint8_t)((x >> 24) % 8);
            }
            buf[len++] = b;
        }
        pmt_mc_report r;
        if (pmt_mc_read_buffer(buf, len, &r) == 0) {
            ok++;
            CHECK(r.n_py_sites < 100000);
        }
        pmt_mc_report_free(&r);
    }
    CHECK(ok > 0);
}

int
main(void)
{
    test_order_and_reuse();
    test_mmap_regions();
    test_truncated_and_bad();
    test_native_sites();
    test_elfsym();
    test_fuzz();
    CTEST_MAIN_END();
}
