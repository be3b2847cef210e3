/* capture_frames.h: the frame tree of a capture's stacks, built for a report.
 *
 * A stack in a capture is a node of the writer's tree (--stacks captures:
 * node id -> parent, code, line) or, in a capture without stacks, one code
 * id and line.  pmt_frames turns either into frames of one tree of its own:
 * functions (file, name) interned once, frames (parent, function, line)
 * interned once, so a report holds only the frames its stacks reach.  A
 * --native capture's native nodes are frames too: file = module path, name =
 * symbol (symbolize.c), line -1; the THREAD node at a stack's root is not a
 * frame (pmt_capture_event_thread gives the thread).  No Python.h.
 */
#ifndef PMT_CAPTURE_FRAMES_H
#define PMT_CAPTURE_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"
#include "capture_stacks.h"
#include "hashtab.h"

typedef struct {
    uint32_t file, name;        /* offsets into the capture's string pool */
} pmt_frames_func;

typedef struct {
    pmt_capture *cap;
    pmt_frames_func *funcs;
    size_t n_funcs, funcs_cap;
    pmt_st_frame *frames;
    size_t n_frames, frames_cap;
    pmt_hashtab func_ix;        /* (file, name) -> function index */
    pmt_hashtab frame_ix;       /* (parent, function, line) -> frame index */
    pmt_hashtab node_ix;        /* capture node id -> frame index */
    uint32_t no_frame, unknown; /* the functions "<no Python frame>", "<unknown code>" */
    struct pmt_symbolizer *sym; /* names native frames (made when first needed) */
} pmt_frames;

/* Set up for cap (which must stay open while frames are made).  0 or -1. */
int pmt_frames_init(pmt_frames *f, pmt_capture *cap);

/* The innermost frame of an event's stack: id is the event's code field (a
 * node id in a stacks capture, else a code id; 0: no Python frame) and line
 * its line.  PMT_ST_NONE when out of memory. */
uint32_t pmt_frames_of(pmt_frames *f, uint32_t id, int32_t line);

void pmt_frames_free(pmt_frames *f);

/* Fill r->funcs' inclusive totals (each function once per stack it is on,
 * recursion or not) and self totals (stacks whose innermost frame it is)
 * from r->stacks and r->frames.  0, or -1 when out of memory. */
int pmt_st_sum_functions(pmt_st_report *r);

#endif
