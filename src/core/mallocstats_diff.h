/* mallocstats_diff.h: what changed between two parsed allocator statistics
 * (mallocstats_parse.h), written in sys._debugmallocstats()'s layout with
 * signed deltas, as the seed's DiffSysDebugMallocStats shows it.  Writes
 * into the caller's buffer; never allocates.  No Python.h.
 */
#ifndef PMT_MALLOCSTATS_DIFF_H
#define PMT_MALLOCSTATS_DIFF_H

#include <stddef.h>

#include "mallocstats_parse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write what changed from *before to *after in sys._debugmallocstats()'s
 * layout with signed deltas: the size classes whose pools, blocks in use or
 * available blocks changed, the value lines that changed, and the free lists
 * whose counts changed; blank lines between the groups.  If nothing changed
 * writes "No change.\n".  Like snprintf: writes at most cap bytes including
 * the terminating NUL and returns the length the whole text needs. */
size_t pmt_ms_diff_format(const pmt_mallocstats_t *before, const pmt_mallocstats_t *after,
                          char *buf, size_t cap);

/* Number of size classes whose blocks in use differ between the two. */
int pmt_ms_classes_changed(const pmt_mallocstats_t *before, const pmt_mallocstats_t *after);

#ifdef __cplusplus
}
#endif
#endif
