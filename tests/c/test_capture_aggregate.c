/* test_capture_aggregate.c: replaying a capture into a report (sites, live
 * blocks, mappings, peaks, the largest allocations, native sites). */
#include <stdint.h>
#include <string.h>

#include "capture_aggregate.h"
#include "capture_build.h"
#include "ctest.h"

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
test_native_sites(void)
{
    header(PMT_MC_RECORD_NATIVE);
    native_ev(1, PMT_MC_MALLOC, 0x10, 64, 0x7000123);
    native_ev(2, PMT_MC_MALLOC, 0x20, 32, 0x7000123);
    module(0x7000000, 0x7000000, 0x7100000, "/nonexistent/libfoo.so");
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

static void
test_errors_pass_through(void)
{
    pmt_mc_report r;
    header(PMT_MC_RECORD_BASE);
    memcpy(buf, "NOTACAPT", 8);
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), -1);
    CHECK(strstr(r.error, "bad magic") != NULL);
    CHECK(r.py_sites == NULL && r.strings == NULL);
    pmt_mc_report_free(&r);
    CHECK_EQ_INT(pmt_mc_read("/nonexistent/capture", &r), -1);
    CHECK(strstr(r.error, "cannot open /nonexistent/capture") != NULL);
    pmt_mc_report_free(&r);
    /* a valid capture with no events: an empty report, not an error */
    header(PMT_MC_RECORD_BASE);
    end();
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &r), 0);
    CHECK(r.complete);
    CHECK_EQ_INT(r.events, 0);
    CHECK_EQ_INT(r.n_py_sites, 0);
    pmt_mc_report_free(&r);
}

int
main(void)
{
    test_errors_pass_through();
    test_order_and_reuse();
    test_mmap_regions();
    test_native_sites();
    test_fuzz();
    CTEST_MAIN_END();
}
