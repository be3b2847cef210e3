/* capture_checkpoint.h: the checkpoint of an aggregated capture.
 *
 * An aggregated capture (`pymemtrace malloc --aggregate`, capture_format.h)
 * holds no events: its totals per stack are checkpoints in two slots, the
 * header naming the last whole one.  pmt_ckpt_find locates it (or, if it is
 * damaged, the one before it) and checks every length and its checksum;
 * the readers (capture_stacks_checkpoint.c, capture_aggregate.c) take their numbers
 * from it instead of replaying events.  No Python.h.
 */
#ifndef PMT_CAPTURE_CHECKPOINT_H
#define PMT_CAPTURE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    pmt_mc_ckpt_head head;              /* a copy */
    const pmt_mc_tally *sizes;          /* PMT_MC_SIZE_CLASSES */
    const pmt_mc_tally *kinds;          /* PMT_MC_KINDS */
    const pmt_mc_ckpt_point *points;    /* head.n_points */
    const pmt_mc_ckpt_stack *stacks;    /* head.n_stacks */
    int older;              /* the last committed one was damaged: the one before it */
} pmt_ckpt;

/* The capture's last whole checkpoint.  Returns 0, or -1 with err saying
 * why there is none (killed before its first, or damaged). */
int pmt_ckpt_find(const pmt_capture *c, pmt_ckpt *k, char *err, size_t errlen);

/* The line a stack node stands for in the by-stack reports: a Python node's
 * own line, -1 for any other (0 for node 0: no Python frame). */
int32_t pmt_ckpt_node_line(const pmt_capture *c, uint32_t node);

#ifdef __cplusplus
}
#endif
#endif
