/* fuzz_capture_stacks.c: libFuzzer harness of the by-stack aggregation
 * (capture_stacks.c, capture_frames.c) and its pprof encoding (pprof.c) over
 * any bytes, with a range of
 * events, heap samples, slices and a thread taken from the input's last bytes.
 * Whatever the bytes, it returns 0 with a report whose indexes all point
 * inside it, or -1 with an error; never out of bounds (ASan, UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_stacks.h"
#include "pprof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const pmt_st_report *r)
{
    for (size_t i = 0; i < r->n_stacks; i++) {
        if (r->stacks[i].frame >= r->n_frames || r->stacks[i].thread >= r->n_threads) {
            abort();
        }
    }
    for (size_t i = 0; i < r->n_frames; i++) {
        const pmt_st_frame *f = &r->frames[i];
        if (f->func >= r->n_funcs || (f->parent != PMT_ST_NONE && f->parent >= i)) {
            abort();
        }
    }
    for (size_t i = 0; i < r->n_cells; i++) {
        if (r->cells[i].stack >= r->n_stacks || r->cells[i].slice >= r->slices) {
            abort();
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < r->n_funcs; i++) {
        n += strlen(r->funcs[i].file) + strlen(r->funcs[i].name);
    }
    if (r->end_bytes > r->alloc_bytes || r->peak_live_bytes > r->peak_bytes || r->hi < r->lo) {
        abort();
    }
    /* the selected thread's own peak is within the range (an aggregated
     * capture has the process's only) */
    if (r->live_peak_of_thread && (r->live_peak_event < r->lo || r->live_peak_event > r->hi)) {
        abort();
    }
    (void)n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pmt_st_options o = {0, UINT64_MAX, PMT_ST_ALL_THREADS, 64, 8, 0, 0, 0};
    if (size > 0 && (data[size - 1] & 1)) {
        o.lo = data[size - 1] >> 4;
        o.hi = o.lo + (data[size - 1] & 0x0f);
        o.points = data[size - 1];
    }
    if (size > 1 && (data[size - 2] & 3) == 3) {
        /* a range by the capture's clock (TIME records) */
        o.by_time = 1;
        o.lo_ns = (uint64_t)data[size - 2] << 20;
        o.hi_ns = data[size - 2] & 4 ? UINT64_MAX : o.lo_ns + ((uint64_t)data[size - 1] << 24);
    }
    if (size > 2 && (data[size - 3] & 7) == 7) {
        o.thread = data[size - 3] >> 3;    /* one thread: its own high-water mark */
    }
    pmt_st_report r;
    if (pmt_st_read_buffer(data, size, &o, &r) == 0) {
        check(&r);
        uint8_t *pb;
        size_t pblen;
        if (pmt_pprof_encode(&r, (int)(size & 1), 0, &pb, &pblen) == 0) {
            free(pb);
        }
    }
    else if (r.error[0] == '\0') {
        abort();
    }
    pmt_st_report_free(&r);
    return 0;
}
