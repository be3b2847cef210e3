/* procsample.c: one sample of any process from /proc, no stdio (see procsample.h). */
#include "procsample.h"
#include "logwriter.h"      /* pmt_fmt_int */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

/* Elapsed time is measured on the clock the kernel dates process starts by. */
#ifdef CLOCK_BOOTTIME
#define START_CLOCK CLOCK_BOOTTIME
#else
#define START_CLOCK CLOCK_MONOTONIC
#endif

/* ---- small helpers ------------------------------------------------------ */

static long
clock_hz(void)
{
    static long hz;
    if (hz <= 0) {
        long v = sysconf(_SC_CLK_TCK);
        hz = v > 0 ? v : 100;
    }
    return hz;
}

static long
page_bytes(void)
{
    static long page;
    if (page <= 0) {
        long v = sysconf(_SC_PAGESIZE);
        page = v > 0 ? v : 4096;
    }
    return page;
}

/* "/proc/<pid>/<leaf>" into out (which must hold 64 bytes). */
static void
proc_path(char *out, pid_t pid, const char *leaf)
{
    static const char prefix[] = "/proc/";
    size_t n = sizeof(prefix) - 1;
    memcpy(out, prefix, n);
    n += (size_t)pmt_fmt_int(out + n, (int64_t)pid);
    out[n++] = '/';
    size_t k = strlen(leaf);
    if (k > 40) {
        k = 40;
    }
    memcpy(out + n, leaf, k);
    out[n + k] = '\0';
}

static int
open_proc_file(pid_t pid, const char *leaf)
{
    char path[64];
    proc_path(path, pid, leaf);
    int fd;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ENOENT) {
        errno = ESRCH;
    }
    return fd;
}

/* Read the whole (small) file at offset 0 into buf; NUL-terminates.  Returns
 * the length, or -1 with errno (ESRCH for a process that has gone). */
static ssize_t
read_whole(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = pread(fd, buf + len, cap - 1 - len, (off_t)len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ENOENT) {
                errno = ESRCH;
            }
            return -1;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0) {
        (void)close(*fd);
        *fd = -1;
    }
}

/* Unsigned decimal at text[*i]; skips leading spaces.  -1 if none. */
static int
parse_u64(const char *text, size_t len, size_t *i, uint64_t *out)
{
    size_t k = *i;
    while (k < len && text[k] == ' ') {
        k++;
    }
    if (k >= len || text[k] < '0' || text[k] > '9') {
        return -1;
    }
    uint64_t v = 0;
    while (k < len && text[k] >= '0' && text[k] <= '9') {
        v = v * 10 + (uint64_t)(text[k] - '0');
        k++;
    }
    *i = k;
    *out = v;
    return 0;
}

/* Signed decimal (stat has a few signed fields). */
static int
parse_i64(const char *text, size_t len, size_t *i, int64_t *out)
{
    size_t k = *i;
    while (k < len && text[k] == ' ') {
        k++;
    }
    int neg = 0;
    if (k < len && text[k] == '-') {
        neg = 1;
        k++;
    }
    uint64_t u;
    if (parse_u64(text, len, &k, &u) != 0) {
        return -1;
    }
    *i = k;
    *out = neg ? -(int64_t)u : (int64_t)u;
    return 0;
}

/* ---- parsing -------------------------------------------------------------- */

int
pmt_parse_stat(const char *text, size_t len, long hz, pmt_procsample *s,
               uint64_t *starttime)
{
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
     * the fields start after the last ')'. */
    size_t close = len;
    for (size_t k = len; k > 0; k--) {
        if (text[k - 1] == ')') {
            close = k - 1;
            break;
        }
    }
    if (close >= len || close + 3 >= len || text[close + 1] != ' ') {
        return -1;
    }
    if (hz <= 0) {
        hz = 100;
    }
    size_t i = close + 2;
    s->state = text[i++];
    /* fields 4..22 (1-based, as in proc(5)) */
    int64_t f[23];
    for (int field = 4; field <= 22; field++) {
        if (parse_i64(text, len, &i, &f[field]) != 0) {
            return -1;
        }
    }
    s->ppid = (int32_t)f[4];
    s->minflt = f[10];
    s->cminflt = f[11];
    s->majflt = f[12];
    s->cmajflt = f[13];
    s->utime = (double)f[14] / (double)hz;
    s->stime = (double)f[15] / (double)hz;
    s->cutime = (double)f[16] / (double)hz;
    s->cstime = (double)f[17] / (double)hz;
    s->num_threads = f[20];
    *starttime = (uint64_t)f[22];
    return 0;
}

int
pmt_parse_statm(const char *text, size_t len, long page, pmt_procsample *s)
{
    /* size resident shared text lib data dt, in pages */
    uint64_t f[6];
    size_t i = 0;
    for (int k = 0; k < 6; k++) {
        if (parse_u64(text, len, &i, &f[k]) != 0) {
            return -1;
        }
    }
    s->vms = (int64_t)(f[0] * (uint64_t)page);
    s->rss = (int64_t)(f[1] * (uint64_t)page);
    s->shared = (int64_t)(f[2] * (uint64_t)page);
    s->text = (int64_t)(f[3] * (uint64_t)page);
    s->data = (int64_t)(f[5] * (uint64_t)page);
    return 0;
}

int64_t
pmt_parse_kb(const char *text, size_t len, const char *key)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i + klen <= len) {
        /* i is at the start of a line */
        if (memcmp(text + i, key, klen) == 0) {
            size_t k = i + klen;
            while (k < len && (text[k] == ' ' || text[k] == '\t')) {
                k++;
            }
            uint64_t v;
            if (parse_u64(text, len, &k, &v) != 0) {
                return -1;
            }
            return (int64_t)v * 1024;
        }
        const char *nl = memchr(text + i, '\n', len - i);
        if (nl == NULL) {
            break;
        }
        i = (size_t)(nl - text) + 1;
    }
    return -1;
}

/* ---- one process ------------------------------------------------------------ */

static double
now_clock(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
pmt_proc_open(pmt_proc *p, pid_t pid, int flags)
{
    p->pid = (int32_t)pid;
    p->flags = flags;
    p->stat_fd = p->statm_fd = p->status_fd = p->smaps_fd = -1;
    p->starttime = 0;
#ifndef __linux__
    /* /proc/PID/{stat,statm} are Linux's; other systems are not sampled yet */
    (void)flags;
    errno = ENOSYS;
    return -1;
#endif
    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    int err = 0;
    if ((p->stat_fd = open_proc_file(pid, "stat")) < 0
        || (p->statm_fd = open_proc_file(pid, "statm")) < 0
        || ((flags & PMT_PS_STATUS)
            && (p->status_fd = open_proc_file(pid, "status")) < 0)
        || ((flags & PMT_PS_SMAPS)
            && (p->smaps_fd = open_proc_file(pid, "smaps_rollup")) < 0)) {
        err = errno;
    }
    else {
        /* A first sample checks that the files can be read (smaps_rollup
         * checks permission at read time) and that this is no zombie. */
        pmt_procsample s;
        if (pmt_proc_sample(p, &s) != 0) {
            err = errno;
        }
    }
    if (err) {
        pmt_proc_close(p);
        errno = err;
        return -1;
    }
    return 0;
}

int
pmt_proc_sample(pmt_proc *p, pmt_procsample *s)
{
    char buf[4096];
    ssize_t n;
    uint64_t start = 0;

    s->pid = p->pid;
    s->nprocs = 1;
    s->swap = s->rss_peak = s->pss = s->uss = -1;
    s->wall = now_clock(CLOCK_REALTIME);

    if (p->stat_fd < 0) {
        errno = ESRCH;
        return -1;
    }
    if ((n = read_whole(p->stat_fd, buf, sizeof(buf))) < 0) {
        return -1;
    }
    if (n == 0) {
        errno = ESRCH;
        return -1;
    }
    if (pmt_parse_stat(buf, (size_t)n, clock_hz(), s, &start) != 0) {
        errno = EPROTO;
        return -1;
    }
    if (s->state == 'Z' || s->state == 'X' || s->state == 'x') {
        errno = ESRCH;
        return -1;
    }
    p->starttime = start;
    s->elapsed = now_clock(START_CLOCK) - (double)start / (double)clock_hz();
    if (s->elapsed < 0) {
        s->elapsed = 0;
    }
    if ((n = read_whole(p->statm_fd, buf, sizeof(buf))) < 0) {
        return -1;
    }
    if (pmt_parse_statm(buf, (size_t)n, page_bytes(), s) != 0) {
        errno = n == 0 ? ESRCH : EPROTO;
        return -1;
    }
    if (p->status_fd >= 0) {
        if ((n = read_whole(p->status_fd, buf, sizeof(buf))) < 0) {
            return -1;
        }
        s->swap = pmt_parse_kb(buf, (size_t)n, "VmSwap:");
        s->rss_peak = pmt_parse_kb(buf, (size_t)n, "VmHWM:");
    }
    if (p->smaps_fd >= 0) {
        if ((n = read_whole(p->smaps_fd, buf, sizeof(buf))) < 0) {
            return -1;
        }
        s->pss = pmt_parse_kb(buf, (size_t)n, "Pss:");
        int64_t pc = pmt_parse_kb(buf, (size_t)n, "Private_Clean:");
        int64_t pd = pmt_parse_kb(buf, (size_t)n, "Private_Dirty:");
        int64_t ph = pmt_parse_kb(buf, (size_t)n, "Private_Hugetlb:");
        s->uss = (pc < 0 || pd < 0) ? -1 : pc + pd + (ph > 0 ? ph : 0);
    }
    return 0;
}

void
pmt_proc_close(pmt_proc *p)
{
    close_fd(&p->stat_fd);
    close_fd(&p->statm_fd);
    close_fd(&p->status_fd);
    close_fd(&p->smaps_fd);
}

/* ---- process trees ----------------------------------------------------------- */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

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
    int fd = open_proc_file(pid, "stat");
    if (fd < 0) {
        return -1;
    }
    char buf[1024];
    ssize_t n = read_whole(fd, buf, sizeof(buf));
    (void)close(fd);
    if (n <= 0) {
        return -1;
    }
    pmt_procsample s;
    uint64_t start;
    if (pmt_parse_stat(buf, (size_t)n, clock_hz(), &s, &start) != 0) {
        return -1;
    }
    if (s.state == 'Z' || s.state == 'X') {
        return -1;
    }
    return s.ppid;
}

int
pmt_descendants(pid_t root, int32_t *out, int max, int32_t *scan_pid,
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
    int nscan = 0;
    char dbuf[8192] __attribute__((aligned(8)));
    for (;;) {
#ifdef SYS_getdents64
        long n = syscall(SYS_getdents64, dfd, dbuf, sizeof(dbuf));
#else
        long n = -1;
        errno = ENOSYS;
#endif
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            (void)close(dfd);
            errno = e;
            return -1;
        }
        if (n == 0) {
            break;
        }
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(dbuf + off);
            off += d->d_reclen;
            int32_t pid = name_to_pid(d->d_name);
            if (pid <= 0 || pid == (int32_t)root || nscan >= PMT_SCAN_MAX) {
                continue;
            }
            int32_t ppid = parent_of(pid);
            if (ppid <= 0) {
                continue;
            }
            scan_pid[nscan] = pid;
            scan_ppid[nscan] = ppid;
            nscan++;
        }
    }
    (void)close(dfd);
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

void
pmt_tree_close(pmt_proctree *t)
{
    for (int k = 0; k < t->nkids; k++) {
        pmt_proc_close(&t->kids[k]);
    }
    t->nkids = 0;
    pmt_proc_close(&t->root);
}

/* ---- formatting ---------------------------------------------------------------- */

static void
two_digits(char *out, int v)
{
    out[0] = (char)('0' + (v / 10) % 10);
    out[1] = (char)('0' + v % 10);
}

void
pmt_fmt_timestamp(pmt_tscache *c, double t, char *out)
{
    int64_t sec = (int64_t)t;
    if (t < 0) {
        sec = 0;
        t = 0;
    }
    int64_t usec = (int64_t)((t - (double)sec) * 1e6 + 0.5);
    if (usec >= 1000000) {
        usec -= 1000000;
        sec += 1;
    }
    if (c->sec != sec || c->text[0] == '\0') {
        time_t tt = (time_t)sec;
        struct tm tm;
        if (localtime_r(&tt, &tm) == NULL) {
            memset(&tm, 0, sizeof(tm));
        }
        int year = tm.tm_year + 1900;
        c->text[0] = (char)('0' + (year / 1000) % 10);
        c->text[1] = (char)('0' + (year / 100) % 10);
        two_digits(c->text + 2, year % 100);
        c->text[4] = '-';
        two_digits(c->text + 5, tm.tm_mon + 1);
        c->text[7] = '-';
        two_digits(c->text + 8, tm.tm_mday);
        c->text[10] = ' ';
        two_digits(c->text + 11, tm.tm_hour);
        c->text[13] = ':';
        two_digits(c->text + 14, tm.tm_min);
        c->text[16] = ':';
        two_digits(c->text + 17, tm.tm_sec);
        c->text[19] = '\0';
        c->sec = sec;
    }
    memcpy(out, c->text, 19);
    out[19] = '.';
    for (int k = 25; k >= 20; k--) {
        out[k] = (char)('0' + usec % 10);
        usec /= 10;
    }
}

int
pmt_fmt_seconds(char *out, double v)
{
    int n = 0;
    if (v != v) {       /* NaN: JSON has none */
        v = 0;
    }
    if (v < 0) {
        out[n++] = '-';
        v = -v;
    }
    if (v > 9.2e12) {
        v = 9.2e12;
    }
    int64_t micro = (int64_t)(v * 1e6 + 0.5);
    n += pmt_fmt_int(out + n, micro / 1000000);
    out[n++] = '.';
    int64_t frac = micro % 1000000;
    char digits[6];
    for (int k = 5; k >= 0; k--) {
        digits[k] = (char)('0' + frac % 10);
        frac /= 10;
    }
    int keep = 6;
    while (keep > 1 && digits[keep - 1] == '0') {
        keep--;
    }
    memcpy(out + n, digits, (size_t)keep);
    return n + keep;
}

/* A bounded text builder that keeps counting past its capacity. */
typedef struct {
    char *out;
    size_t cap;
    size_t len;
} jbuf;

static void
jb_bytes(jbuf *b, const char *s, size_t n)
{
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->out + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

#define JB_LIT(b, lit) jb_bytes((b), (lit), sizeof(lit) - 1)

static void
jb_int(jbuf *b, int64_t v)
{
    char tmp[24];
    jb_bytes(b, tmp, (size_t)pmt_fmt_int(tmp, v));
}

static void
jb_seconds(jbuf *b, double v)
{
    char tmp[40];
    jb_bytes(b, tmp, (size_t)pmt_fmt_seconds(tmp, v));
}

size_t
pmt_json_string(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jbuf b = {out, cap, 0};
    JB_LIT(&b, "\"");
    size_t run = 0;     /* start of a run of bytes needing no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) {
            continue;
        }
        jb_bytes(&b, s + run, i - run);
        run = i + 1;
        switch (ch) {
        case '"': JB_LIT(&b, "\\\""); break;
        case '\\': JB_LIT(&b, "\\\\"); break;
        case '\n': JB_LIT(&b, "\\n"); break;
        case '\r': JB_LIT(&b, "\\r"); break;
        case '\t': JB_LIT(&b, "\\t"); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            jb_bytes(&b, u, 6);
        }
        }
    }
    jb_bytes(&b, s + run, n - run);
    JB_LIT(&b, "\"");
    return b.len;
}

size_t
pmt_ps_json(char *out, size_t cap, const pmt_procsample *s, pmt_tscache *tc,
            int keys, const char *event, const char *label, size_t label_len)
{
    jbuf b = {out, cap, 0};
    char ts[PMT_TS_LEN];
    pmt_fmt_timestamp(tc, s->wall, ts);
    JB_LIT(&b, "{\"timestamp\": \"");
    jb_bytes(&b, ts, PMT_TS_LEN);
    JB_LIT(&b, "\", \"memory_info\": {\"rss\": ");
    jb_int(&b, s->rss);
    JB_LIT(&b, ", \"vms\": ");
    jb_int(&b, s->vms);
    JB_LIT(&b, ", \"pfaults\": ");
    jb_int(&b, s->minflt + s->majflt);
    JB_LIT(&b, ", \"pageins\": ");
    jb_int(&b, s->majflt);
    if (keys & PMT_JSON_EXTRA) {
        JB_LIT(&b, ", \"shared\": ");
        jb_int(&b, s->shared);
        JB_LIT(&b, ", \"text\": ");
        jb_int(&b, s->text);
        JB_LIT(&b, ", \"data\": ");
        jb_int(&b, s->data);
    }
    if (s->rss_peak >= 0) {
        JB_LIT(&b, ", \"rss_peak\": ");
        jb_int(&b, s->rss_peak);
    }
    if (s->swap >= 0) {
        JB_LIT(&b, ", \"swap\": ");
        jb_int(&b, s->swap);
    }
    if (s->pss >= 0) {
        JB_LIT(&b, ", \"pss\": ");
        jb_int(&b, s->pss);
    }
    if (s->uss >= 0) {
        JB_LIT(&b, ", \"uss\": ");
        jb_int(&b, s->uss);
    }
    JB_LIT(&b, "}, \"cpu_times\": {\"user\": ");
    jb_seconds(&b, s->utime);
    JB_LIT(&b, ", \"system\": ");
    jb_seconds(&b, s->stime);
    JB_LIT(&b, ", \"children_user\": ");
    jb_seconds(&b, s->cutime);
    JB_LIT(&b, ", \"children_system\": ");
    jb_seconds(&b, s->cstime);
    JB_LIT(&b, "}, \"elapsed_time\": ");
    jb_seconds(&b, s->elapsed);
    JB_LIT(&b, ", \"pid\": ");
    jb_int(&b, s->pid);
    if (keys & PMT_JSON_EXTRA) {
        JB_LIT(&b, ", \"num_threads\": ");
        jb_int(&b, s->num_threads);
    }
    if (keys & PMT_JSON_NPROCS) {
        JB_LIT(&b, ", \"nprocs\": ");
        jb_int(&b, s->nprocs);
    }
    if (event != NULL) {
        JB_LIT(&b, ", \"event\": ");
        size_t need = pmt_json_string(b.len < b.cap ? b.out + b.len : NULL,
                                      b.len < b.cap ? b.cap - b.len : 0,
                                      event, strlen(event));
        b.len += need;
    }
    if (label != NULL) {
        JB_LIT(&b, ", \"label\": ");
        size_t need = pmt_json_string(b.len < b.cap ? b.out + b.len : NULL,
                                      b.len < b.cap ? b.cap - b.len : 0,
                                      label, label_len);
        b.len += need;
    }
    JB_LIT(&b, "}");
    return b.len;
}
