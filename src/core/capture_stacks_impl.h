/* capture_stacks_impl.h: what the by-stack reader's files share: the
 * replay's context and accumulators (capture_stacks.c), the numbers of an
 * aggregated capture's checkpoint (capture_stacks_checkpoint.c) and the
 * accumulators turned into the report (capture_stacks_report.c).  Internal
 * to those three files.  No Python.h. */
#ifndef PMT_CAPTURE_STACKS_IMPL_H
#define PMT_CAPTURE_STACKS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"
#include "capture_stacks.h"
#include "hashtab.h"
#include "regionset.h"

/* ---- stacks: accumulators in a vector, found by (id, line, thread) ------- */

typedef struct {
    uint32_t id, thread;
    int32_t line;
    uint32_t index;
} stack_key;

typedef struct {
    uint32_t id, thread;
    int32_t line;
    uint32_t frame;
    uint64_t alloc_bytes, alloc_count, peak_bytes, peak_count, end_bytes, end_count;
} stack_acc;

typedef struct {
    uint64_t addr;          /* the key */
    uint64_t size;
    uint64_t at;            /* position of the allocation in sequence order */
    uint32_t stack;         /* PMT_ST_NONE: not charged (outside the range or thread) */
} live_block;

typedef struct {
    pmt_capture cap;
    const pmt_st_options *o;
    pmt_st_report *r;
    stack_acc *stacks;
    size_t n_stacks, stacks_cap;
    pmt_hashtab stack_ix;   /* stack_key */
    pmt_hashtab live;       /* live_block */
    pmt_regionset maps;     /* py: stack, seq: position of the mmap */
    pmt_hashtab cells;      /* pmt_st_cell by (stack, slice) */
    pmt_st_thread *threads;
    size_t n_threads, threads_cap;
    uint64_t lo, hi, cur;
    uint64_t sel;           /* live bytes of the blocks and mappings charged (or, in
                             * the first replay, marked: made in the range by the
                             * selected thread) */
} st_ctx;

/* The accumulator of stack (id, line) on thread t: its index in s->stacks,
 * PMT_ST_NONE when out of memory. */
uint32_t pmt_st_stack_get(st_ctx *s, uint32_t id, int32_t line, uint32_t thread);

/* Thread t's totals (the vector grows to hold it); NULL when out of memory. */
pmt_st_thread *pmt_st_thread_at(st_ctx *s, uint32_t t);

/* An aggregated capture: the report's numbers from its checkpoint.  0; -1
 * out of memory; -2 no usable checkpoint (r->error says why). */
int pmt_st_from_checkpoint(st_ctx *s);

/* The accumulators turned into the report: stacks sorted with their frames,
 * cells renumbered, functions summed; the strings and threads move into the
 * report.  0, or -1 out of memory. */
int pmt_st_finish(st_ctx *s);

#endif
