/* test_capture_cursor.c: walking one chunk's records: events with their
 * deltas and flags, definitions handed out whole, the end of a chunk, a
 * record cut short or of an unknown kind. */
#include <stdint.h>
#include <string.h>

#include "capture_build.h"
#include "capture_cursor.h"
#include "ctest.h"

static void
test_records_in_turn(void)
{
    header(PMT_MC_RECORD_NATIVE);
    code(9, "m.py", "f");
    native_ev(5, PMT_MC_MALLOC, 0x1000, 64, 0x7777);
    native_ev(6, PMT_MC_FREE, 0x1000, 0, 0x7770);
    time_rec(12345, 1 << 20, 7);
    native_ev(9, PMT_MC_MUNMAP, 0x9000, 4096, 0x7780);
    pmt_cap_cursor k;
    pmt_mc_record r;
    pmt_cap_def d;
    pmt_cursor_init(&k, buf + PMT_MC_HEADER_SIZE, buf + len, hdr()->flags);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_DEF);
    CHECK_EQ_INT(d.kind, PMT_MC_CODE);
    CHECK_EQ_INT(d.v[0], 9);
    CHECK(d.plen == 7 && memcmp(d.payload, "m.py\0f", 7) == 0);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_EVENT);
    CHECK_EQ_INT(r.seq_kind, 5 << 8 | PMT_MC_MALLOC);
    CHECK(r.a == 0x1000 && r.b == 64 && r.native == 0x7777 && r.code == 0 && r.line == -1);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_EVENT);
    CHECK_EQ_INT(r.seq_kind, 6 << 8 | PMT_MC_FREE);     /* the next number: no seq field */
    CHECK(r.a == 0x1000 && r.native == 0x7770);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_DEF);
    CHECK(d.kind == PMT_MC_TIME && d.v[0] == 12345 && d.v[1] == 1 << 20 && d.v[2] == 7);
    CHECK_EQ_INT(pmt_cursor_next_event(&k, &r), 1);
    CHECK(r.seq_kind == (9 << 8 | PMT_MC_MUNMAP) && r.a == 0x9000 && r.b == 4096);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_END);
    CHECK_EQ_INT(pmt_cursor_next_event(&k, &r), 0);
}

static void
test_cut_short_and_unknown(void)
{
    header(PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_MALLOC, 0x10, 8, 3, 4);
    ev(2, PMT_MC_MALLOC, 0x20, 8, 3, 4);    /* the same site: no code and line fields */
    size_t whole = len;
    pmt_cap_cursor k;
    pmt_mc_record r;
    pmt_cap_def d;
    /* the second event without its last byte: malformed, and it stays there */
    pmt_cursor_init(&k, buf + PMT_MC_HEADER_SIZE, buf + whole - 1, 0);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_EVENT);
    const uint8_t *at = k.p;
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_BAD);
    CHECK(k.p == at);
    CHECK_EQ_INT(pmt_cursor_next_event(&k, &r), 0);
    /* a kind no writer makes */
    buf[len++] = 0x3e;
    pmt_cursor_init(&k, buf + PMT_MC_HEADER_SIZE, buf + len, 0);
    CHECK_EQ_INT(pmt_cursor_next_event(&k, &r), 1);
    CHECK_EQ_INT(pmt_cursor_next_event(&k, &r), 1);
    CHECK_EQ_INT(r.seq_kind, 2 << 8 | PMT_MC_MALLOC);
    CHECK_EQ_INT(r.code, 3);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_BAD);
    /* a payload longer than the chunk */
    header(PMT_MC_RECORD_BASE);
    code(1, "x.py", "g");
    pmt_cursor_init(&k, buf + PMT_MC_HEADER_SIZE, buf + len - 2, 0);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_BAD);
    /* a release flagged with a site */
    header(PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_FREE, 0x10, 0, 0, -1);
    buf[PMT_MC_HEADER_SIZE] |= PMT_MC_SAME_SITE;
    pmt_cursor_init(&k, buf + PMT_MC_HEADER_SIZE, buf + len, 0);
    CHECK_EQ_INT(pmt_cursor_next(&k, &r, &d), PMT_CUR_BAD);
}

int
main(void)
{
    test_records_in_turn();
    test_cut_short_and_unknown();
    CTEST_MAIN_END();
}
