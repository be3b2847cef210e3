/* test_capture_aggregate_report.c: capture_aggregate_report.c alone, from
 * accumulators built by hand (no capture replayed): the sites sorted (bytes,
 * then count, descending; then line; ties keep their order) with every
 * total following its site, native sites symbolised (this executable stands
 * for a traced module), the largest allocations sorted and pointing at the
 * sorted sites; edge cases: nothing at all, ties, counts near 2^64. */
#define _GNU_SOURCE 1
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_aggregate_impl.h"
#include "ctest.h"
#include "self_module.h"

/* long enough that a return address 5 bytes in is still inside it */
__attribute__((noinline)) int
report_target(int x)
{
    volatile int v = x;
    for (int i = 0; i < 3; i++) {
        v = v * 5 + i;
    }
    return v;
}

static aggregator ag;
static pmt_mc_report rep;
static site_acc py_v[16], nat_v[16];
static pmt_cap_module mods[2];

static void
begin(void)
{
    memset(&ag, 0, sizeof(ag));
    memset(&rep, 0, sizeof(rep));
    memset(py_v, 0, sizeof(py_v));
    memset(nat_v, 0, sizeof(nat_v));
    memset(mods, 0, sizeof(mods));
    pmt_strpool_init(&ag.cap.strs);
    ag.r = &rep;
    ag.py.v = py_v;
    ag.nat.v = nat_v;
}

static uint32_t
str(const char *s)
{
    int64_t o = pmt_strpool_intern(&ag.cap.strs, s, strlen(s));
    CHECK(o >= 0);
    return (uint32_t)o;
}

/* Site i's totals: bytes and count as given, the other six made from i so
 * that each site's are its own. */
static site_acc
acc(uint64_t i, uint64_t bytes, uint64_t count)
{
    return (site_acc){.bytes = bytes, .count = count,
                      .malloc_bytes = i * 100 + 1, .malloc_count = i * 100 + 2,
                      .mmap_bytes = i * 100 + 3, .mmap_count = i * 100 + 4,
                      .live_bytes = i * 100 + 5, .live_count = i * 100 + 6};
}

static void
add_py(const char *file, const char *name, int32_t line, uint64_t bytes, uint64_t count)
{
    site_acc a = acc(ag.py.len, bytes, count);
    a.file = str(file);
    a.name = str(name);
    a.line = line;
    py_v[ag.py.len++] = a;
}

static void
add_nat(uint64_t addr, uint64_t bytes, uint64_t count)
{
    site_acc a = acc(ag.nat.len, bytes, count);
    a.addr = addr;
    a.line = -1;
    nat_v[ag.nat.len++] = a;
}

/* The output site o carries the totals of input site i (acc(i, ...)). */
static void
check_totals(const pmt_mc_site *o, uint64_t i, uint64_t bytes, uint64_t count)
{
    CHECK(o->bytes == bytes);
    CHECK(o->count == count);
    CHECK_EQ_INT(o->malloc_bytes, i * 100 + 1);
    CHECK_EQ_INT(o->malloc_count, i * 100 + 2);
    CHECK_EQ_INT(o->mmap_bytes, i * 100 + 3);
    CHECK_EQ_INT(o->mmap_count, i * 100 + 4);
    CHECK_EQ_INT(o->live_bytes, i * 100 + 5);
    CHECK_EQ_INT(o->live_count, i * 100 + 6);
}

static void
test_empty(void)
{
    begin();
    CHECK_EQ_INT(pmt_agg_finish(&ag), 0);
    CHECK_EQ_INT(rep.n_py_sites, 0);
    CHECK_EQ_INT(rep.n_native_sites, 0);
    CHECK_EQ_INT(rep.n_big, 0);
    CHECK(rep.py_sites != NULL && rep.native_sites != NULL);
    CHECK_EQ_STR(rep.error, "");
    pmt_mc_report_free(&rep);
}

static void
test_python_sites_sorted(void)
{
    begin();
    const uint64_t G = (1ull << 32) + 100;     /* differs from 100 by exactly 2^32 */
    add_py("a.py", "f", 10, 100, 1);            /* 0 */
    add_py("a.py", "g", 20, G, 1);              /* 1 */
    add_py("b.py", "h", 50, 100, 3);            /* 2: same bytes as 0, more blocks */
    add_py("b.py", "k", 30, 100, 1);            /* 3: ties 0 but for a later line */
    add_py("c.py", "m", 10, 100, 1);            /* 4: ties 0 in everything */
    add_py("d.py", "n", 1, UINT64_MAX, UINT64_MAX);     /* 5 */
    add_py("e.py", "p", 2, 0, 0);               /* 6: nothing */
    add_py("d.py", "q", 3, UINT64_MAX - 1, UINT64_MAX);  /* 7 */
    CHECK_EQ_INT(pmt_agg_finish(&ag), 0);
    CHECK_EQ_INT(rep.n_py_sites, 8);
    static const struct {
        uint64_t i, bytes, count;
        const char *file, *function;
        int32_t line;
    } want[] = {
        {5, UINT64_MAX, UINT64_MAX, "d.py", "n", 1},
        {7, UINT64_MAX - 1, UINT64_MAX, "d.py", "q", 3},
        {1, (1ull << 32) + 100, 1, "a.py", "g", 20},
        {2, 100, 3, "b.py", "h", 50},
        {0, 100, 1, "a.py", "f", 10},
        {4, 100, 1, "c.py", "m", 10},
        {3, 100, 1, "b.py", "k", 30},
        {6, 0, 0, "e.py", "p", 2},
    };
    for (size_t k = 0; k < rep.n_py_sites && k < 8; k++) {
        const pmt_mc_site *o = &rep.py_sites[k];
        CHECK_EQ_STR(o->file, want[k].file);
        CHECK_EQ_STR(o->function, want[k].function);
        CHECK_EQ_INT(o->line, want[k].line);
        check_totals(o, want[k].i, want[k].bytes, want[k].count);
        CHECK_EQ_INT(o->addr, 0);
    }
    pmt_mc_report_free(&rep);
}

static void
test_native_sites_symbolised(void)
{
    uint64_t bias;
    char *exe = self_module(&bias);
    CHECK(exe != NULL);
    if (!exe) {
        return;
    }
    uint64_t ret = (uint64_t)(uintptr_t)&report_target + 5;    /* a return address in it */
    begin();
    mods[0] = (pmt_cap_module){.lo = bias, .hi = UINT64_MAX / 2, .bias = bias, .path = str(exe)};
    mods[1] = (pmt_cap_module){.lo = UINT64_MAX / 2, .hi = UINT64_MAX / 2 + 0x10000,
                               .bias = UINT64_MAX / 2 - 0x1000,
                               .path = str("/nonexistent/libx.so")};
    ag.cap.mods = mods;
    ag.cap.n_mods = 2;
    const uint64_t in_x = UINT64_MAX / 2 + 0x234, nowhere = UINT64_MAX - 7;
    add_nat(in_x, 50, 1);           /* 0: a module that cannot be read: no symbol */
    add_nat(ret, 700, 2);           /* 1: this executable */
    add_nat(nowhere, 900, 1);       /* 2: in no module */
    add_nat(nowhere - 16, 50, 1);   /* 3: ties 0: after it */
    /* a Python site for the sort to leave alone */
    add_py("a.py", "f", 1, 1, 1);
    CHECK_EQ_INT(pmt_agg_finish(&ag), 0);
    CHECK_EQ_INT(rep.n_native_sites, 4);
    CHECK_EQ_INT(rep.n_py_sites, 1);
    if (rep.n_native_sites == 4) {
        const pmt_mc_site *n = rep.native_sites;
        CHECK_EQ_STR(n[0].file, "?");
        CHECK_EQ_STR(n[0].function, "");
        CHECK(n[0].addr == nowhere && n[0].offset == nowhere);
        check_totals(&n[0], 2, 900, 1);

        CHECK_EQ_STR(n[1].file, exe);
        CHECK(strncmp(n[1].function, "report_target+0x", 16) == 0);
        CHECK(n[1].addr == ret && n[1].offset == ret - bias);
        check_totals(&n[1], 1, 700, 2);

        CHECK_EQ_STR(n[2].file, "/nonexistent/libx.so");
        CHECK_EQ_STR(n[2].function, "");
        CHECK(n[2].addr == in_x && n[2].offset == 0x1234);
        check_totals(&n[2], 0, 50, 1);

        CHECK_EQ_STR(n[3].file, "?");
        CHECK(n[3].addr == nowhere - 16);
        check_totals(&n[3], 3, 50, 1);
        for (size_t i = 0; i < 4; i++) {
            CHECK_EQ_INT(n[i].line, -1);
        }
    }
    pmt_mc_report_free(&rep);
    free(exe);
}

static void
test_largest_allocations(void)
{
    begin();
    add_py("a.py", "small", 1, 10, 1);          /* 0: sorts last */
    add_py("a.py", "big", 2, 1000, 1);          /* 1: sorts first */
    add_py("a.py", "mid", 3, 500, 1);           /* 2 */
    add_nat(0x10, 5, 1);                        /* 0: sorts last */
    add_nat(0x20, 900, 1);                      /* 1: sorts first */
    static const struct {
        uint64_t size, seq;
        uint32_t py, nat;
    } in[] = {
        {5, 1, 0, NO_SITE}, {9, 7, 2, 0}, {9, 3, 1, 1}, {1ull << 40, 2, 1, NO_SITE},
        {0, 4, 2, 1}, {UINT64_MAX, 9, 0, 0},
    };
    for (size_t i = 0; i < 6; i++) {
        ag.big[i] = (pmt_mc_big){.size = in[i].size, .seq = in[i].seq, .kind = (uint32_t)i,
                                 .freed = (int)(i & 1), .py_site = in[i].py,
                                 .native_site = in[i].nat};
    }
    ag.n_big = 6;
    CHECK_EQ_INT(pmt_agg_finish(&ag), 0);
    CHECK_EQ_INT(rep.n_big, 6);
    /* by size, descending; equal sizes by sequence */
    static const struct {
        uint64_t size, seq;
        uint32_t kind;
        const char *py;
        uint64_t nat_addr;      /* 0: none */
    } want[] = {
        {UINT64_MAX, 9, 5, "small", 0x10}, {1ull << 40, 2, 3, "big", 0},
        {9, 3, 2, "big", 0x20}, {9, 7, 1, "mid", 0x10}, {5, 1, 0, "small", 0},
        {0, 4, 4, "mid", 0x20},
    };
    for (size_t k = 0; k < rep.n_big && k < 6; k++) {
        const pmt_mc_big *b = &rep.big[k];
        CHECK(b->size == want[k].size);
        CHECK_EQ_INT(b->seq, want[k].seq);
        CHECK_EQ_INT(b->kind, want[k].kind);
        CHECK_EQ_INT(b->freed, (int)(want[k].kind & 1));
        CHECK(b->py_site < rep.n_py_sites);
        if (b->py_site < rep.n_py_sites) {
            CHECK_EQ_STR(rep.py_sites[b->py_site].function, want[k].py);
        }
        if (want[k].nat_addr == 0) {
            CHECK_EQ_INT(b->native_site, UINT32_MAX);
        }
        else {
            CHECK(b->native_site < rep.n_native_sites);
            if (b->native_site < rep.n_native_sites) {
                CHECK_EQ_INT(rep.native_sites[b->native_site].addr, want[k].nat_addr);
            }
        }
    }
    pmt_mc_report_free(&rep);
}

static void
test_full_list_of_equal_sizes(void)
{
    begin();
    add_py("a.py", "f", 1, 1, 1);
    for (size_t i = 0; i < PMT_MC_NBIG; i++) {
        /* sequence numbers given out of order: 10, 9, ..., 1 */
        ag.big[i] = (pmt_mc_big){.size = 4096, .seq = PMT_MC_NBIG - i, .py_site = 0,
                                 .native_site = NO_SITE};
    }
    ag.n_big = PMT_MC_NBIG;
    CHECK_EQ_INT(pmt_agg_finish(&ag), 0);
    CHECK_EQ_INT(rep.n_big, PMT_MC_NBIG);
    for (size_t k = 0; k < rep.n_big; k++) {
        CHECK_EQ_INT(rep.big[k].seq, k + 1);
        CHECK_EQ_INT(rep.big[k].py_site, 0);
    }
    pmt_mc_report_free(&rep);
}

int
main(void)
{
    test_empty();
    test_python_sites_sorted();
    test_native_sites_symbolised();
    test_largest_allocations();
    test_full_list_of_equal_sizes();
    CTEST_MAIN_END();
}
