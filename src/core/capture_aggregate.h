/* capture_aggregate.h: what a `pymemtrace malloc` capture adds up to.
 *
 * capture_read.c walks the records and puts the events in sequence order;
 * capture_aggregate.c replays them: live blocks (a hash table, address ->
 * size and sites), live anonymous mappings (a sorted list: munmap may release
 * part of one), per-site totals, the running and peak live bytes, and the
 * largest single allocations.  What is live at the end is the leak
 * candidates.  The report owns all its memory.  No Python.h: the _malloccap
 * extension is a thin binding over pmt_mc_read.
 */
#ifndef PMT_CAPTURE_AGGREGATE_H
#define PMT_CAPTURE_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "capture_format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One aggregated site.  Python sites are (file, function, line); native
 * sites are a return address (file = module path, function = symbol or "",
 * line = -1, addr/offset set). */
typedef struct {
    const char *file;
    const char *function;
    int32_t line;
    uint64_t addr;          /* native: the return address in the traced process */
    uint64_t offset;        /* native: offset within the module */
    uint64_t bytes;         /* all allocations (malloc family + mmap) */
    uint64_t count;
    uint64_t malloc_bytes;
    uint64_t malloc_count;
    uint64_t mmap_bytes;
    uint64_t mmap_count;
    uint64_t live_bytes;    /* still allocated at the end of the capture */
    uint64_t live_count;
} pmt_mc_site;

/* One of the largest single allocations. */
typedef struct {
    uint64_t size;
    uint64_t seq;
    uint32_t kind;
    int freed;
    uint32_t py_site;       /* index into py_sites */
    uint32_t native_site;   /* index into native_sites (UINT32_MAX: none) */
} pmt_mc_big;

#define PMT_MC_NBIG 10

typedef struct pmt_mc_report {
    /* header */
    uint32_t version, flags, pid, ppid, record_size;
    uint64_t start_ns;
    uint64_t python_hex;
    uint32_t python_status;
    /* integrity */
    int complete;               /* an END record was found */
    int ended_by_exec;          /* ... saying the process called exec */
    uint64_t trailing_bytes;    /* bytes after the last whole record (cut short) */
    uint64_t seq_gaps;          /* sequence numbers never seen (lost buffers) */
    uint64_t dropped;           /* events the writer reported dropping */
    uint64_t stop_events;       /* writing stopped after this many events ... */
    uint32_t stop_errno;        /* ... for this reason (errno; 0: never stopped) */
    uint64_t unknown_frees;     /* releases of memory not allocated in the capture */
    /* aggregated captures (--aggregate): the checkpoint the numbers come from */
    int aggregate;
    int ckpt_final;             /* the one written at exit or exec */
    int ckpt_older;             /* the last one was damaged: the one before it */
    uint64_t ckpt_seq, ckpt_time_ns;
    /* totals */
    uint64_t events;
    uint64_t total_bytes, total_count;
    uint64_t malloc_bytes, malloc_count;
    uint64_t mmap_bytes, mmap_count;
    uint64_t peak_bytes;        /* peak of live malloc-family + mmap bytes */
    uint64_t peak_malloc_bytes, peak_mmap_bytes;
    uint64_t live_bytes, live_count;            /* at the end */
    uint64_t live_malloc_bytes, live_mmap_bytes;
    /* sites, sorted by bytes (descending) */
    pmt_mc_site *py_sites;
    size_t n_py_sites;
    pmt_mc_site *native_sites;
    size_t n_native_sites;
    pmt_mc_big big[PMT_MC_NBIG];
    size_t n_big;
    /* storage */
    char *strings;
    size_t strings_len, strings_cap;
    char error[256];
} pmt_mc_report;

/* Read and aggregate the capture at path.  Returns 0 and fills *r (release
 * with pmt_mc_report_free), or -1 with r->error saying what was wrong (the
 * report is then empty but still to be freed).  A capture cut short is not
 * an error: r->complete is 0 and r->trailing_bytes says how much was cut. */
int pmt_mc_read(const char *path, pmt_mc_report *r);

/* The same from a capture already in memory. */
int pmt_mc_read_buffer(const uint8_t *data, size_t len, pmt_mc_report *r);

void pmt_mc_report_free(pmt_mc_report *r);

#ifdef __cplusplus
}
#endif
#endif
