/* test_capture_frames.c: the frame tree made from a capture's stacks (shared
 * frames, lines of their own, nodes never defined) and the inclusive and self
 * totals of each function. */
#include <stdint.h>
#include <string.h>

#include "capture_build.h"
#include "capture_frames.h"
#include "ctest.h"

static const char *
fname(const pmt_frames *f, uint32_t frame)
{
    return pmt_strpool_at(&f->cap->strs, f->funcs[f->frames[frame].func].name);
}

static void
test_tree(void)
{
    header(PMT_MC_RECORD_BASE);
    ((pmt_mc_header *)buf)->flags |= PMT_MC_FLAG_STACKS;
    code(1, "m.py", "<module>");
    code(2, "m.py", "f");
    node(1, 0, 1, 10);
    node(2, 1, 2, 20);
    node(3, 1, 2, 21);
    node(4, 2, 9, 30);      /* code 9 never defined */
    node(6, 5, 2, 40);      /* parent 5 never defined */
    end();
    pmt_capture cap;
    CHECK_EQ_INT(pmt_capture_open(&cap, buf, len), 0);
    pmt_frames f;
    CHECK_EQ_INT(pmt_frames_init(&f, &cap), 0);
    uint32_t a = pmt_frames_of(&f, 2, 20), b = pmt_frames_of(&f, 3, 21);
    CHECK(a != PMT_ST_NONE && b != PMT_ST_NONE && a != b);
    CHECK_EQ_INT(f.frames[a].parent, f.frames[b].parent);      /* one <module>:10 */
    CHECK_EQ_STR(fname(&f, f.frames[a].parent), "<module>");
    CHECK_EQ_INT(pmt_frames_of(&f, 2, 20), a);                  /* the same again */
    uint32_t c = pmt_frames_of(&f, 2, 25);                      /* the event's own line */
    CHECK_EQ_INT(f.frames[c].line, 25);
    CHECK_EQ_INT(f.frames[c].parent, f.frames[a].parent);
    uint32_t d = pmt_frames_of(&f, 4, 30);
    CHECK_EQ_STR(fname(&f, d), "<unknown code>");
    CHECK_EQ_INT(f.frames[d].parent, a);
    uint32_t e = pmt_frames_of(&f, 6, 40);
    CHECK_EQ_STR(fname(&f, e), "f");
    CHECK_EQ_STR(fname(&f, f.frames[e].parent), "<unknown code>");
    uint32_t g = pmt_frames_of(&f, 0, -1);
    CHECK_EQ_STR(fname(&f, g), "<no Python frame>");
    CHECK_EQ_INT(f.frames[g].parent, PMT_ST_NONE);
    for (size_t i = 0; i < f.n_frames; i++) {
        CHECK(f.frames[i].parent == PMT_ST_NONE || f.frames[i].parent < i);
    }
    pmt_frames_free(&f);
    pmt_capture_close(&cap);
}

static void
test_sum_functions(void)
{
    /* frames: 0 = a (root), 1 = b <- a, 2 = a <- b <- a (recursion) */
    pmt_st_func funcs[2] = {{.name = "a"}, {.name = "b"}};
    pmt_st_frame frames[3] = {{PMT_ST_NONE, 0, 1}, {0, 1, 2}, {1, 0, 3}};
    pmt_st_stack stacks[2] = {
        {.frame = 2, .alloc_bytes = 100, .alloc_count = 1, .peak_bytes = 100, .peak_count = 1},
        {.frame = 1, .alloc_bytes = 10, .alloc_count = 2, .end_bytes = 10, .end_count = 2},
    };
    pmt_st_report r;
    memset(&r, 0, sizeof(r));
    r.funcs = funcs;
    r.n_funcs = 2;
    r.frames = frames;
    r.n_frames = 3;
    r.stacks = stacks;
    r.n_stacks = 2;
    CHECK_EQ_INT(pmt_st_sum_functions(&r), 0);
    CHECK_EQ_INT(funcs[0].alloc_bytes, 110);    /* a: once per stack */
    CHECK_EQ_INT(funcs[0].alloc_count, 3);
    CHECK_EQ_INT(funcs[0].self_alloc_bytes, 100);
    CHECK_EQ_INT(funcs[0].peak_bytes, 100);
    CHECK_EQ_INT(funcs[1].alloc_bytes, 110);
    CHECK_EQ_INT(funcs[1].self_alloc_bytes, 10);
    CHECK_EQ_INT(funcs[1].end_count, 2);
    CHECK_EQ_INT(funcs[1].self_end_bytes, 10);
}

int
main(void)
{
    test_tree();
    test_sum_functions();
    CTEST_MAIN_END();
}
