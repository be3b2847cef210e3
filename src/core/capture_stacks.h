/* capture_stacks.h: a `pymemtrace malloc` capture aggregated by whole stack.
 *
 * The views a user asks of a capture: for every distinct stack (and thread),
 * the bytes and count allocated, what was live at the high-water mark (the
 * default view: what to shrink to lower the peak), and what was live at the
 * end (leaks) or at the end of a chosen range of events; the same summed
 * inclusively for every function on the stacks; the heap (and, from the
 * capture's TIME records, RSS and seconds) over the events with the peak
 * marked; sizes and allocators.  Two replays of the capture
 * (the first finds the high-water mark, the second takes the live blocks at
 * it and at the end).  Memory grows with distinct stacks and live blocks,
 * never with the number of events.  The reading is capture_read.c's; the
 * frame tree of the report is capture_frames.c's.  No Python.h.
 */
#ifndef PMT_CAPTURE_STACKS_H
#define PMT_CAPTURE_STACKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_ST_NONE UINT32_MAX
#define PMT_ST_ALL_THREADS UINT64_MAX
#define PMT_ST_MAX_POINTS 4096
#define PMT_ST_MAX_SLICES 256
#define PMT_ST_SIZE_CLASSES 65      /* sizes[k]: 2^(k-1) < size <= 2^k (sizes[0]: 0 and 1) */
#define PMT_ST_MAX_SIZE (1ull << 48)  /* larger: a corrupt event, skipped */
#define PMT_ST_KINDS 6              /* kinds[k]: PMT_MC_MALLOC .. PMT_MC_MMAP (0: unused) */

/* What to aggregate. */
typedef struct {
    uint64_t lo, hi;        /* the range of events [lo, hi) by position in
                             * sequence order; hi = UINT64_MAX: to the end */
    uint64_t thread;        /* a thread's id, or PMT_ST_ALL_THREADS */
    uint32_t points;        /* heap samples over all events (<= PMT_ST_MAX_POINTS) */
    uint32_t slices;        /* per-stack slices of the range (0: none; <= PMT_ST_MAX_SLICES) */
    int by_time;            /* the range is [lo_ns, hi_ns) of the capture's clock instead */
    uint64_t lo_ns, hi_ns;  /* ns since the capture opened (hi_ns = UINT64_MAX: to the end) */
} pmt_st_options;

/* A function: file and name (pointers into the report's strings). */
typedef struct {
    const char *file;
    const char *name;
    /* inclusive: every stack it is on (once per stack, recursion or not) */
    uint64_t alloc_bytes, alloc_count, peak_bytes, peak_count, end_bytes, end_count;
    /* self: stacks whose innermost frame it is */
    uint64_t self_alloc_bytes, self_peak_bytes, self_end_bytes;
} pmt_st_func;

/* A frame of the tree: a function at a line, called from parent. */
typedef struct {
    uint32_t parent;        /* frame index, PMT_ST_NONE: outermost */
    uint32_t func;
    int32_t line;
} pmt_st_frame;

/* A distinct stack (innermost frame and thread). */
typedef struct {
    uint32_t frame;         /* innermost frame */
    uint32_t thread;        /* index into threads */
    uint64_t alloc_bytes, alloc_count;  /* made in the range */
    uint64_t peak_bytes, peak_count;    /* live at the high-water mark */
    uint64_t end_bytes, end_count;      /* live at the end of the range */
} pmt_st_stack;

typedef struct {
    uint64_t id;            /* the capture's thread id (0: not recorded) */
    const char *name;       /* "" when the capture has none */
    uint64_t alloc_bytes, alloc_count;
} pmt_st_thread;

/* Heap over the events: the highest live bytes within each stretch. */
typedef struct {
    uint64_t event;         /* position of the stretch's last event + 1 */
    uint64_t heap;          /* highest live bytes within the stretch */
    uint64_t ns;            /* the clock (TIME records; 0 without): by time, where the
                             * stretch starts; by events, at its end */
    uint64_t rss;           /* the highest RSS read within it, else the last read (0: none) */
} pmt_st_point;

/* One stack's share of one slice of the range (sparse: only nonzero). */
typedef struct {
    uint32_t stack, slice;
    uint64_t alloc_bytes, alloc_count;
    uint64_t end_bytes;     /* of those, still live at the end of the range */
} pmt_st_cell;

typedef struct {
    uint64_t count, bytes;
} pmt_st_tally;

typedef struct pmt_st_report {
    /* the events read and the range used */
    uint64_t events, lo, hi;
    int stacks_recorded;        /* a --stacks capture (else one frame per stack) */
    uint64_t impossible;        /* events skipped: a size past PMT_ST_MAX_SIZE (corrupt) */
    /* whole process, over all events */
    uint64_t peak_bytes;        /* the high-water mark within [lo, hi) */
    uint64_t peak_event;        /* ... reached after this many events */
    uint64_t peak_ns;           /* ... at this time (ns since the capture opened) */
    uint64_t end_heap;          /* live bytes at hi */
    /* the clock (TIME records; has_clock 0: a capture without them) */
    int has_clock;
    uint64_t end_ns;            /* the last time recorded */
    uint64_t lo_ns, hi_ns;      /* the times of the range's ends */
    uint64_t rss_peak, rss_peak_ns;     /* the highest RSS read, and when */
    /* the selected thread(s), within the range */
    uint64_t alloc_bytes, alloc_count;
    /* The peak the stacks' peak columns are taken at: the whole process's
     * high-water mark (peak_event), or, with one thread selected, that
     * thread's own: the most that blocks it made in the range held at once,
     * wherever the process's heap was then (live_peak_of_thread 1; an
     * aggregated capture, which holds no events, has only the process's). */
    int live_peak_of_thread;
    uint64_t live_peak_event, live_peak_ns;
    uint64_t peak_live_bytes, peak_live_count;  /* made in the range, live at that peak */
    uint64_t end_bytes, end_count;              /* made in the range, live at its end */
    pmt_st_tally sizes[PMT_ST_SIZE_CLASSES];
    pmt_st_tally kinds[PMT_ST_KINDS];
    pmt_st_func *funcs;
    size_t n_funcs;
    pmt_st_frame *frames;
    size_t n_frames;
    pmt_st_stack *stacks;       /* sorted: peak bytes, then allocated bytes, descending */
    size_t n_stacks;
    pmt_st_thread *threads;
    size_t n_threads;
    pmt_st_point *points;
    size_t n_points;
    pmt_st_cell *cells;
    size_t n_cells;
    uint32_t slices;
    char *strings;
    char error[256];
} pmt_st_report;

/* Aggregate the capture in data[0..len).  Returns 0 and fills *r (release
 * with pmt_st_report_free), or -1 with r->error saying what was wrong.  A
 * capture cut short is not an error (capture_aggregate's report says so). */
int pmt_st_read_buffer(const uint8_t *data, size_t len, const pmt_st_options *o,
                       pmt_st_report *r);

/* The same from a file (regular files only). */
int pmt_st_read(const char *path, const pmt_st_options *o, pmt_st_report *r);

void pmt_st_report_free(pmt_st_report *r);

#ifdef __cplusplus
}
#endif
#endif
