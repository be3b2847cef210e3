/* cpmtseq.c: the NEXT/PREV rule of a cPyMemTrace log (see cpmtseq.h). */
#include "cpmtseq.h"

#include <string.h>

void
pmt_cpmt_seq_start(pmt_cpmt_seq *s, int64_t trigger)
{
    memset(s, 0, sizeof *s);
    s->trigger = trigger;
}
