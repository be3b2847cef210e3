/* native_stacks.h: a capture's allocations by whole stack, symbolised.
 *
 * The view of `pymemtrace malloc report --native`: every allocation is
 * charged to the whole stack it was made from (the innermost node of the
 * capture's stack tree: native frames with the Python frames interleaved
 * for --native captures, Python frames for --stacks ones), with the bytes
 * and blocks still live at the end (frees replayed in sequence order).  The
 * `top` stacks by bytes allocated are returned with their frames, innermost
 * first, each a Python frame (file, function, line) or a native one (module,
 * symbol, offset; symbolize.c), and the thread at their root.  Memory grows
 * with distinct stacks and live blocks, not with events.  No Python.h.
 */
#ifndef PMT_NATIVE_STACKS_H
#define PMT_NATIVE_STACKS_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t kind;          /* PMT_CAP_NODE_PYTHON or PMT_CAP_NODE_NATIVE */
    const char *file;       /* Python: file; native: module path ("" unknown) */
    const char *function;   /* Python: function; native: symbol ("" none) */
    int32_t line;           /* Python: line; native: -1 */
    uint64_t addr;          /* native: the return address */
    uint64_t offset;        /* native: the call site from the module's load bias */
} pmt_ns_frame;

typedef struct {
    uint64_t bytes, count;              /* allocated */
    uint64_t live_bytes, live_count;    /* still allocated at the end */
    uint32_t thread_id;                 /* OS thread id (0: not recorded) */
    const char *thread_name;
    size_t first, n;                    /* frames[first .. first + n), innermost first */
} pmt_ns_stack;

typedef struct {
    pmt_ns_stack *stacks;   /* the top stacks, by bytes allocated (descending) */
    size_t n_stacks;
    pmt_ns_frame *frames;
    size_t n_frames;
    size_t distinct;        /* distinct stacks in the capture */
    uint64_t total_bytes, total_count;
    int has_stacks;         /* the capture records stacks (--stacks or --native) */
    int native;             /* ... with native frames (--native) */
    size_t changed_modules; /* module files that are not the ones traced */
    const char *first_changed;
    char *strings;          /* owned: what the const char * above point into */
    char error[256];
} pmt_ns_report;

/* Read the capture in data[0..len) and fill r with its top stacks.
 * Returns 0, or -1 with r->error saying what was wrong; either way
 * pmt_ns_free(r). */
int pmt_ns_read(const uint8_t *data, size_t len, size_t top, pmt_ns_report *r);
void pmt_ns_free(pmt_ns_report *r);

#ifdef __cplusplus
}
#endif
#endif
