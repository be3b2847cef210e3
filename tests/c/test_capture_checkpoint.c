/* test_capture_checkpoint.c: aggregated captures (--aggregate): the last
 * committed checkpoint is found and checked, its slot extent is skipped by
 * the chunk walker, the by-stack and by-line reports take their numbers
 * from it, and a damaged, missing or cut-short checkpoint is an error that
 * says so (or the one before it, saying so). */
#include <stdint.h>
#include <string.h>

#include "capture_aggregate.h"
#include "capture_build.h"
#include "capture_checkpoint.h"
#include "capture_stacks.h"
#include "ctest.h"

static const pmt_st_options ALL = {0, UINT64_MAX, PMT_ST_ALL_THREADS, 0, 0, 0, 0, 0};

/* <module>:10 -> f:20 (node 2) and <module>:10 -> g:30 (node 3). */
static void
defs(void)
{
    header(PMT_MC_RECORD_BASE);
    hdr()->flags |= PMT_MC_FLAG_STACKS | PMT_MC_FLAG_AGGREGATE;
    code(1, "m.py", "<module>");
    code(2, "m.py", "f");
    code(3, "m.py", "g");
    node(1, 0, 1, 10);
    node(2, 1, 2, 20);
    node(3, 1, 3, 30);
}

/* A checkpoint numbered seq in its slot, an extent of `chunks` chunks at the
 * current chunk boundary: f made 1000 bytes in 10 blocks (400 live at the
 * peak, 100 now), g 500 in 1 (live at the peak, freed since). */
static size_t
checkpoint(uint64_t seq, uint32_t chunks, uint32_t final)
{
    next_chunk();
    size_t at = len;
    pmt_mc_ckpt_head h = {.kind = PMT_MC_CHECKPOINT, .chunks = chunks, .seq = seq,
                          .final = final, .n_points = 2, .n_stacks = 2, .events = 22,
                          .heap = 100, .peak = 900, .peak_events = 12, .time_ns = 5};
    len += sizeof(h);
    size_t start = len;
    pmt_mc_tally sizes[PMT_MC_SIZE_CLASSES] = {{0, 0}}, kinds[PMT_MC_KINDS] = {{0, 0}};
    sizes[7] = (pmt_mc_tally){10, 1000};
    sizes[9] = (pmt_mc_tally){1, 500};
    kinds[PMT_MC_MALLOC] = (pmt_mc_tally){11, 1500};
    put(sizes, sizeof(sizes));
    put(kinds, sizeof(kinds));
    pmt_mc_ckpt_point pts[2] = {{1, 12, 900, 900}, {2, 22, 300, 900}};
    put(pts, sizeof(pts));
    pmt_mc_ckpt_stack st[2] = {
        {.node = 2, .alloc_bytes = 1000, .alloc_count = 10, .live_bytes = 100,
         .live_count = 1, .peak_bytes = 400, .peak_count = 4},
        {.node = 3, .alloc_bytes = 500, .alloc_count = 1, .peak_bytes = 500, .peak_count = 1},
    };
    put(st, sizeof(st));
    h.len = len - start;
    h.sum = pmt_mc_ckpt_sum(buf + start, (size_t)h.len);
    memcpy(buf + at, &h, sizeof(h));
    len = at + (size_t)chunks * CB_CHUNK;
    hdr()->ckpt_slot[seq & 1] = at - hdr()->data_offset;
    hdr()->ckpt_commit = (uint32_t)seq;
    return at;
}

static void
test_reports_from_the_checkpoint(void)
{
    defs();
    checkpoint(1, 2, 1);
    /* a definition after the slot: the walker skipped the extent, not the rest */
    code(4, "late.py", "h");
    end();
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), 0);
    CHECK_EQ_INT(r.events, 22);
    CHECK_EQ_INT(r.peak_bytes, 900);
    CHECK_EQ_INT(r.peak_event, 12);
    CHECK_EQ_INT(r.end_heap, 100);
    CHECK_EQ_INT(r.alloc_bytes, 1500);
    CHECK_EQ_INT(r.alloc_count, 11);
    CHECK_EQ_INT(r.peak_live_bytes, 900);
    CHECK_EQ_INT(r.end_bytes, 100);
    CHECK_EQ_INT(r.n_stacks, 2);
    CHECK_EQ_INT(r.stacks[0].peak_bytes, 500);      /* g first: most live at the peak */
    CHECK_EQ_STR(r.funcs[r.frames[r.stacks[0].frame].func].name, "g");
    CHECK_EQ_INT(r.frames[r.stacks[0].frame].line, 30);
    CHECK_EQ_INT(r.stacks[1].end_bytes, 100);
    CHECK_EQ_INT(r.sizes[7].bytes, 1000);
    CHECK_EQ_INT(r.kinds[PMT_MC_MALLOC].count, 11);
    CHECK_EQ_INT(r.n_points, 2);
    CHECK_EQ_INT(r.points[1].event, 22);
    CHECK_EQ_INT(r.points[0].heap, 900);
    for (size_t i = 0; i < r.n_funcs; i++) {
        if (strcmp(r.funcs[i].name, "<module>") == 0) {
            CHECK_EQ_INT(r.funcs[i].alloc_bytes, 1500);     /* inclusive */
            CHECK_EQ_INT(r.funcs[i].peak_bytes, 900);
        }
    }
    pmt_st_report_free(&r);

    pmt_mc_report m;
    CHECK_EQ_INT(pmt_mc_read_buffer(buf, len, &m), 0);
    CHECK(m.aggregate && m.ckpt_final && !m.ckpt_older);
    CHECK_EQ_INT(m.ckpt_seq, 1);
    CHECK_EQ_INT(m.total_bytes, 1500);
    CHECK_EQ_INT(m.peak_bytes, 900);
    CHECK_EQ_INT(m.live_bytes, 100);
    CHECK_EQ_INT(m.n_py_sites, 2);
    CHECK_EQ_STR(m.py_sites[0].function, "f");
    CHECK_EQ_INT(m.py_sites[0].line, 20);
    CHECK_EQ_INT(m.py_sites[0].live_bytes, 100);
    CHECK_EQ_INT(m.n_big, 0);
    pmt_mc_report_free(&m);
}

static void
test_damaged_and_missing(void)
{
    char err[256];
    pmt_capture c;
    pmt_ckpt k;

    /* checkpoint 1 in slot 1, checkpoint 2 in slot 0, its payload damaged */
    defs();
    checkpoint(1, 1, 0);
    size_t two = checkpoint(2, 1, 0);
    buf[two + sizeof(pmt_mc_ckpt_head) + 3] ^= 0x55;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), 0);
    CHECK(k.older);
    CHECK_EQ_INT(k.head.seq, 1);
    pmt_capture_close(&c);

    /* both damaged: an error naming the checksum */
    buf[hdr()->ckpt_slot[1] + hdr()->data_offset + sizeof(pmt_mc_ckpt_head) + 9] ^= 0x55;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), -1);
    CHECK(strstr(err, "checksum") != NULL);
    pmt_capture_close(&c);
    pmt_st_report r;
    CHECK_EQ_INT(pmt_st_read_buffer(buf, len, &ALL, &r), -1);
    CHECK(strstr(r.error, "checkpoint") != NULL);
    pmt_st_report_free(&r);

    /* killed before its first checkpoint */
    defs();
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), -1);
    CHECK(strstr(err, "before its first") != NULL);
    pmt_capture_close(&c);

    /* cut short inside the slot */
    defs();
    size_t at = checkpoint(1, 1, 1);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, at + 200), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), -1);
    CHECK(strstr(err, "cut short") != NULL);
    pmt_capture_close(&c);

    /* the header names a slot outside the file, or not at a checkpoint */
    hdr()->ckpt_slot[1] = 1u << 30;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), -1);
    pmt_capture_close(&c);
    hdr()->ckpt_slot[1] = 0;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_find(&c, &k, err, sizeof(err)), -1);
    CHECK(strstr(err, "not where") != NULL);
    pmt_capture_close(&c);
}

static void
test_node_line(void)
{
    defs();
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(pmt_ckpt_node_line(&c, 0), 0);
    CHECK_EQ_INT(pmt_ckpt_node_line(&c, 2), 20);
    CHECK_EQ_INT(pmt_ckpt_node_line(&c, 99), -1);  /* undefined */
    pmt_capture_close(&c);
}

int
main(void)
{
    test_reports_from_the_checkpoint();
    test_damaged_and_missing();
    test_node_line();
    CTEST_MAIN_END();
}
