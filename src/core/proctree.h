/* proctree.h: a process and its living descendants, sampled and summed (for
 * `pymemtrace process --children`).  Descendants are found through the
 * kernel's children lists (or by scanning /proc for parent links), at most
 * every rescan; each is sampled through its own
 * pmt_proc, so a PID reused by an unrelated process is never followed. */
#ifndef PMT_PROCTREE_H
#define PMT_PROCTREE_H

#include "procsample.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_TREE_MAX 256        /* descendants followed at once */
#define PMT_SCAN_MAX 8192       /* processes considered in one /proc scan */

typedef struct pmt_proctree {
    pmt_proc root;
    int nkids;
    pmt_proc kids[PMT_TREE_MAX];
    int32_t scan_pid[PMT_SCAN_MAX];
    int32_t scan_ppid[PMT_SCAN_MAX];
    int32_t found[PMT_TREE_MAX];
    int truncated;          /* more descendants than PMT_TREE_MAX were seen */
} pmt_proctree;

/* Open the tree rooted at pid (descendants are found at the first sample). */
int pmt_tree_open(pmt_proctree *t, pid_t pid, int flags);
/* Sample the root and its descendants and store the sums in s (pid, ppid,
 * state, elapsed and wall are the root's; nprocs counts the processes).  If
 * rescan, look for new descendants first.  Fails (ESRCH) only when the root
 * has gone; descendants come and go silently. */
int pmt_tree_sample(pmt_proctree *t, pmt_procsample *s, int rescan);
/* Sample the root and each descendant on its own (no sums): out[0] is the
 * root, then the descendants in the order they were found.  If rescan, look
 * for new descendants first.  Returns how many samples were stored (at most
 * max), or -1 with errno (ESRCH) when the root has gone; a descendant that
 * has gone is dropped silently. */
int pmt_tree_sample_each(pmt_proctree *t, pmt_procsample *out, int max, int rescan);
void pmt_tree_close(pmt_proctree *t);

/* Write up to max PIDs of the living descendants of root into out.  Returns
 * how many were found (possibly more than max: only max are stored), or -1
 * with errno.  scan_pid/scan_ppid are scratch arrays of PMT_SCAN_MAX. */
int pmt_descendants(pid_t root, int32_t *out, int max,
                    int32_t *scan_pid, int32_t *scan_ppid);
/* The same found by reading every process's parent from /proc/PID/stat:
 * what pmt_descendants does on kernels without /proc/PID/task/TID/children
 * (which lists the tree's own processes, a few reads instead of one per
 * process on the machine). */
int pmt_descendants_scan(pid_t root, int32_t *out, int max,
                         int32_t *scan_pid, int32_t *scan_ppid);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCTREE_H */
