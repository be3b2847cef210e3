/* rssgate.c: the process-wide allocation counters (see rssgate.h). */
#include "rssgate.h"

_Atomic int64_t pmt_gate_bytes;
_Atomic int64_t pmt_gate_bytes_max;
_Atomic int64_t pmt_gate_blocks;
_Atomic int64_t pmt_gate_blocks_max;
_Atomic uint64_t pmt_gate_large;

void
pmt_gate_init(pmt_gate *g, uint64_t limit_bytes, int64_t limit_blocks, uint32_t limit_events,
              uint64_t limit_t, uint64_t now)
{
    g->limit_bytes = limit_bytes;
    g->limit_blocks = limit_blocks;
    g->limit_events = limit_events;
    g->limit_t = limit_t;
    g->rss = -1;
    /* Marks start at the current levels: only what comes after is new. */
    g->hw_bytes = PMT_GATE_LOAD(pmt_gate_bytes);
    g->hw_blocks = PMT_GATE_LOAD(pmt_gate_blocks);
    PMT_GATE_STORE(pmt_gate_bytes_max, g->hw_bytes);
    PMT_GATE_STORE(pmt_gate_blocks_max, g->hw_blocks);
    pmt_gate_mark(g, now);
}
