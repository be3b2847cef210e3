/* rssgate.c: the process-wide allocation counters (see rssgate.h). */
#include "rssgate.h"

_Atomic uint64_t pmt_gate_bytes;
_Atomic int64_t pmt_gate_blocks;

void
pmt_gate_init(pmt_gate *g, uint64_t limit_bytes, int64_t limit_blocks, uint32_t limit_events,
              uint64_t limit_t, uint64_t now)
{
    g->limit_bytes = limit_bytes;
    g->limit_blocks = limit_blocks;
    g->limit_events = limit_events;
    g->limit_t = limit_t;
    pmt_gate_mark(g, now);
}
