/* capture_aggregate_impl.h: what capture_aggregate.c (the replay into
 * accumulators) and capture_aggregate_report.c (the accumulators turned into
 * the report's sorted arrays) share.  Internal to those two files.  No
 * Python.h. */
#ifndef PMT_CAPTURE_AGGREGATE_IMPL_H
#define PMT_CAPTURE_AGGREGATE_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "capture_aggregate.h"
#include "capture_read.h"
#include "hashtab.h"
#include "regionset.h"

static inline int
fail(pmt_mc_report *r, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s", what);
    return -1;
}

#define NO_SITE UINT32_MAX

/* ---- sites: accumulators in a vector, found by key through the table ---- */

typedef struct {
    uint32_t file, name;    /* string offsets */
    int32_t line;
    uint64_t addr;
    uint64_t bytes, count, malloc_bytes, malloc_count, mmap_bytes, mmap_count;
    uint64_t live_bytes, live_count;
} site_acc;

typedef struct {
    uint64_t ka, kb;        /* python: (file << 32 | name, line); native: (addr, 0) */
    uint32_t index;
} site_key;

typedef struct {
    site_acc *v;
    size_t len, cap;
    pmt_hashtab index;      /* entries: site_key */
} siteset;

/* ---- live blocks: address -> size and sites ------------------------------ */

typedef struct {
    uint64_t addr;          /* the key */
    uint64_t size;
    uint64_t seq;
    uint32_t py, nat;
    uint32_t kind;
} live_block;

/* ---- the replay ------------------------------------------------------------ */

typedef struct {
    pmt_capture cap;
    pmt_mc_report *r;
    siteset py, nat;
    pmt_hashtab live;       /* entries: live_block */
    pmt_regionset maps;
    pmt_mc_big big[PMT_MC_NBIG];
    uint64_t big_addr[PMT_MC_NBIG];
    size_t n_big;
    size_t big_min;         /* the smallest of big[] once it is full */
    uint32_t no_frame_file, no_frame_name, unknown_name;
    uint32_t last_code_id;      /* py_site_of's cache (0: none) */
    const pmt_cap_code *last_code;
} aggregator;

/* Turn the accumulators into the report's site arrays (sorted; big[] refers
 * to sites by their index after sorting).  0, or -1 with r->error set. */
int pmt_agg_finish(aggregator *ag);

#endif
