/* registry.c: the active Profile/Trace objects of every thread, so that their
 * logs are flushed at interpreter exit and before a fork. */
#include "cpmt.h"

static CpmtTracer *registry;

void
cpmt_registry_add(CpmtTracer *t)
{
    t->reg_prev = NULL;
    t->reg_next = registry;
    if (registry) {
        registry->reg_prev = t;
    }
    registry = t;
}

void
cpmt_registry_remove(CpmtTracer *t)
{
    if (t->reg_prev) {
        t->reg_prev->reg_next = t->reg_next;
    }
    else if (registry == t) {
        registry = t->reg_next;
    }
    if (t->reg_next) {
        t->reg_next->reg_prev = t->reg_prev;
    }
    t->reg_next = t->reg_prev = NULL;
}


void
cpmt_registry_flush(void)
{
    for (CpmtTracer *t = registry; t != NULL; t = t->reg_next) {
        if (t->w != NULL) {
            (void)pmt_lw_flush(t->w);
        }
    }
}
