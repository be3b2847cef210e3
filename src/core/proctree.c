/* proctree.c: a process and its living descendants, summed (see proctree.h). */
#include "proctree.h"
#include "logwriter.h"      /* pmt_fmt_int */
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int32_t
name_to_pid(const char *name)
{
    int64_t v = 0;
    if (*name == '\0') {
        return -1;
    }
    for (; *name; name++) {
        if (*name < '0' || *name > '9' || v > 0x7fffffff / 10) {
            return -1;
        }
        v = v * 10 + (*name - '0');
    }
    return (int32_t)v;
}

/* The parent of pid from its stat file, or -1. */
static int32_t
parent_of(int32_t pid)
{
    char buf[1024];
    ssize_t n = pmt_procfs_read_file(pid, "stat", buf, sizeof(buf));
    if (n <= 0) {
        return -1;
    }
    pmt_procsample s;
    uint64_t start;
    if (pmt_parse_stat(buf, (size_t)n, pmt_clock_hz(), &s, &start) != 0) {
        return -1;
    }
    if (s.state == 'Z' || s.state == 'X') {
        return -1;
    }
    return s.ppid;
}

struct scan {
    pid_t root;
    int32_t *pid, *ppid;
    int n;
};

static void
scan_entry(const char *name, void *arg)
{
    struct scan *sc = arg;
    int32_t pid = name_to_pid(name);
    if (pid <= 0 || pid == (int32_t)sc->root || sc->n >= PMT_SCAN_MAX) {
        return;
    }
    int32_t ppid = parent_of(pid);
    if (ppid <= 0) {
        return;
    }
    sc->pid[sc->n] = pid;
    sc->ppid[sc->n] = ppid;
    sc->n++;
}

/* ---- descendants from the kernel's children lists ----------------------------
 * /proc/PID/task/TID/children (Linux 3.5+, CONFIG_PROC_CHILDREN) lists the
 * children of each thread: walking those reads the tree's own files only,
 * not the stat file of every process on the machine. */

struct kids {
    int32_t *out;
    int max;
    int found;
    pid_t parent;
};

/* Append the pids listed in text to k (count beyond max, store up to it). */
static void
add_pids(struct kids *k, const char *text, size_t len)
{
    int64_t v = -1;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? text[i] : ' ';
        if (c >= '0' && c <= '9') {
            v = (v < 0 ? 0 : v) * 10 + (c - '0');
            if (v > 0x7fffffff) {
                return;         /* not a pid: a malformed file */
            }
        }
        else if (v >= 0) {
            if (v > 0) {
                if (k->found < k->max) {
                    k->out[k->found] = (int32_t)v;
                }
                k->found++;
            }
            v = -1;
        }
    }
}

static void
task_children(const char *tid, void *arg)
{
    struct kids *k = arg;
    if (tid[0] < '0' || tid[0] > '9' || strlen(tid) > 12) {
        return;
    }
    char leaf[32] = "task/";
    size_t n = strlen(leaf);
    size_t t = strlen(tid);
    memcpy(leaf + n, tid, t);
    memcpy(leaf + n + t, "/children", sizeof("/children"));
    char buf[8192];
    ssize_t got = pmt_procfs_read_file(k->parent, leaf, buf, sizeof(buf));
    if (got > 0) {
        add_pids(k, buf, (size_t)got);
    }
}

/* 1 if this kernel has the children files (checked once, on this process). */
static int
have_children_files(void)
{
    static int have = -1;
    if (have < 0) {
        char leaf[32] = "task/";
        size_t n = strlen(leaf);
        n += (size_t)pmt_fmt_int(leaf + n, (int64_t)getpid());
        memcpy(leaf + n, "/children", sizeof("/children"));
        char buf[16];
        have = pmt_procfs_read_file(getpid(), leaf, buf, sizeof(buf)) >= 0;
    }
    return have;
}

/* Breadth first through the children lists; -1 (errno) if root has gone. */
static int
descendants_by_children_files(pid_t root, int32_t *out, int max)
{
    struct kids k = {out, max, 0, root};
    int head = -1;          /* -1: expanding root itself */
    for (;;) {
        int dfd = pmt_procfs_open(k.parent, "task");
        if (dfd >= 0) {
            (void)pmt_procfs_each_entry(dfd, task_children, &k);
        }
        else if (head < 0) {
            return -1;
        }
        head++;
        if (head >= k.found || head >= max) {
            break;
        }
        k.parent = out[head];
    }
    return k.found;
}

int
pmt_descendants(pid_t root, int32_t *out, int max, int32_t *scan_pid,
                int32_t *scan_ppid)
{
    if (have_children_files()) {
        return descendants_by_children_files(root, out, max);
    }
    return pmt_descendants_scan(root, out, max, scan_pid, scan_ppid);
}

int
pmt_descendants_scan(pid_t root, int32_t *out, int max, int32_t *scan_pid,
                     int32_t *scan_ppid)
{
    int dfd;
    do {
        dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (dfd < 0 && errno == EINTR);
    if (dfd < 0) {
        return -1;
    }
    /* 1. every process and its parent */
    struct scan sc = {root, scan_pid, scan_ppid, 0};
    if (pmt_procfs_each_entry(dfd, scan_entry, &sc) != 0) {
        return -1;
    }
    int nscan = sc.n;
    /* 2. breadth first from root: out[] is the queue; beyond max, count only
     * (a descendant not stored cannot be expanded, hence "possibly more"). */
    int found = 0;
    int head = -1;          /* -1: expanding root itself */
    int32_t parent = (int32_t)root;
    for (;;) {
        for (int k = 0; k < nscan; k++) {
            if (scan_ppid[k] == parent) {
                if (found < max) {
                    out[found] = scan_pid[k];
                }
                found++;
            }
        }
        head++;
        if (head >= found || head >= max) {
            break;
        }
        parent = out[head];
    }
    return found;
}

int
pmt_tree_open(pmt_proctree *t, pid_t pid, int flags)
{
    t->nkids = 0;
    t->truncated = 0;
    return pmt_proc_open(&t->root, pid, flags);
}

static void
tree_rescan(pmt_proctree *t)
{
    int n = pmt_descendants(t->root.pid, t->found, PMT_TREE_MAX,
                            t->scan_pid, t->scan_ppid);
    if (n < 0) {
        return;     /* keep following the known ones */
    }
    t->truncated = n > PMT_TREE_MAX;
    if (n > PMT_TREE_MAX) {
        n = PMT_TREE_MAX;
    }
    /* drop the ones that are no longer descendants */
    for (int k = 0; k < t->nkids;) {
        int keep = 0;
        for (int j = 0; j < n; j++) {
            if (t->found[j] == t->kids[k].pid) {
                keep = 1;
                break;
            }
        }
        if (keep) {
            k++;
        }
        else {
            pmt_proc_close(&t->kids[k]);
            t->kids[k] = t->kids[--t->nkids];
        }
    }
    /* open the new ones */
    for (int j = 0; j < n && t->nkids < PMT_TREE_MAX; j++) {
        int known = 0;
        for (int k = 0; k < t->nkids; k++) {
            if (t->kids[k].pid == t->found[j]) {
                known = 1;
                break;
            }
        }
        if (!known && pmt_proc_open(&t->kids[t->nkids], t->found[j],
                                    t->root.flags) == 0) {
            t->nkids++;
        }
    }
}

static void
add_opt(int64_t *sum, int64_t v)
{
    if (v >= 0) {
        *sum = *sum < 0 ? v : *sum + v;
    }
}

int
pmt_tree_sample(pmt_proctree *t, pmt_procsample *s, int rescan)
{
    if (pmt_proc_sample(&t->root, s) != 0) {
        return -1;
    }
    if (rescan) {
        tree_rescan(t);
    }
    for (int k = 0; k < t->nkids;) {
        pmt_procsample c;
        if (pmt_proc_sample(&t->kids[k], &c) != 0) {
            pmt_proc_close(&t->kids[k]);
            t->kids[k] = t->kids[--t->nkids];
            continue;
        }
        s->rss += c.rss;
        s->vms += c.vms;
        s->shared += c.shared;
        s->text += c.text;
        s->data += c.data;
        s->minflt += c.minflt;
        s->majflt += c.majflt;
        s->cminflt += c.cminflt;
        s->cmajflt += c.cmajflt;
        s->utime += c.utime;
        s->stime += c.stime;
        s->cutime += c.cutime;
        s->cstime += c.cstime;
        s->num_threads += c.num_threads;
        add_opt(&s->swap, c.swap);
        add_opt(&s->rss_peak, c.rss_peak);
        add_opt(&s->pss, c.pss);
        add_opt(&s->uss, c.uss);
        s->nprocs++;
        k++;
    }
    return 0;
}

int
pmt_tree_sample_each(pmt_proctree *t, pmt_procsample *out, int max, int rescan)
{
    if (max < 1) {
        errno = EINVAL;
        return -1;
    }
    if (pmt_proc_sample(&t->root, &out[0]) != 0) {
        return -1;
    }
    if (rescan) {
        tree_rescan(t);
    }
    int n = 1;
    for (int k = 0; k < t->nkids;) {
        if (n < max && pmt_proc_sample(&t->kids[k], &out[n]) == 0) {
            n++;
            k++;
            continue;
        }
        if (n >= max) {
            break;
        }
        pmt_proc_close(&t->kids[k]);
        t->kids[k] = t->kids[--t->nkids];
    }
    return n;
}

void
pmt_tree_close(pmt_proctree *t)
{
    for (int k = 0; k < t->nkids; k++) {
        pmt_proc_close(&t->kids[k]);
    }
    t->nkids = 0;
    pmt_proc_close(&t->root);
}
