/* rssgate.c: the process-wide allocation counters (see rssgate.h). */
#include "rssgate.h"

_Atomic int64_t pmt_gate_bytes;
_Atomic int64_t pmt_gate_bytes_max;
_Atomic int64_t pmt_gate_blocks;
_Atomic int64_t pmt_gate_blocks_max;
_Atomic uint64_t pmt_gate_large;
_Atomic int64_t pmt_gate_trip_bytes = INT64_MAX;
_Atomic int64_t pmt_gate_trip_drop = INT64_MIN;
_Atomic int64_t pmt_gate_trip_blocks = INT64_MAX;

static pmt_gate *attached;

void
pmt_gate_init(pmt_gate *g, uint64_t limit_bytes, int64_t limit_blocks, uint32_t limit_events,
              uint64_t limit_t, uint64_t now)
{
    g->limit_bytes = limit_bytes;
    g->limit_blocks = limit_blocks;
    g->limit_events = limit_events;
    g->limit_t = limit_t;
    g->rss = -1;
    g->attached = 0;
    g->next = NULL;
    /* Marks start at the current levels: only what comes after is new. */
    g->hw_bytes = PMT_GATE_LOAD(pmt_gate_bytes);
    g->hw_blocks = PMT_GATE_LOAD(pmt_gate_blocks);
    PMT_GATE_STORE(pmt_gate_bytes_max, g->hw_bytes);
    PMT_GATE_STORE(pmt_gate_blocks_max, g->hw_blocks);
    pmt_gate_mark(g, now);
}

static int64_t
sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

void
pmt_gate_retrip(void)
{
    int64_t tb = INT64_MAX, td = INT64_MIN, tk = INT64_MAX;
    for (pmt_gate *g = attached; g != NULL; g = g->next) {
        int64_t lb = g->limit_bytes > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)g->limit_bytes;
        int64_t b = sat_add(g->hw_bytes, lb);
        int64_t k = sat_add(g->hw_blocks, g->limit_blocks);
        int64_t d = g->bytes - PMT_GATE_DROP_BYTES;
        tb = b < tb ? b : tb;
        tk = k < tk ? k : tk;
        td = d > td ? d : td;
    }
    PMT_GATE_STORE(pmt_gate_trip_bytes, tb);
    PMT_GATE_STORE(pmt_gate_trip_drop, td);
    PMT_GATE_STORE(pmt_gate_trip_blocks, tk);
}

void
pmt_gate_attach(pmt_gate *g)
{
    if (g->attached) {
        return;
    }
    g->attached = 1;
    g->next = attached;
    attached = g;
    pmt_gate_retrip();
}

void
pmt_gate_detach(pmt_gate *g)
{
    if (!g->attached) {
        return;
    }
    for (pmt_gate **p = &attached; *p != NULL; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            break;
        }
    }
    g->attached = 0;
    g->next = NULL;
    pmt_gate_retrip();
}
