/* sampler.c: a process sampler's set-up, its sampler thread, start and stop,
 * and the records taken in the caller's thread (see sampler.h; the delivery
 * thread is handover.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* pthread_setname_np */
#endif
#include "sampler.h"
#include "sampler_impl.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double
pmt_sched_next(double next, double now, double interval, uint64_t *missed)
{
    next += interval;
    if (next <= now) {
        double behind = floor((now - next) / interval) + 1;
        *missed += (uint64_t)behind;
        next += behind * interval;
    }
    return next;
}

/* ---- set up and tear down --------------------------------------------------- */

int
pmt_sampler_init(pmt_sampler *s, const pmt_sampler_config *cfg)
{
    memset(s, 0, sizeof(*s));
    s->proc.stat_fd = s->proc.statm_fd = s->proc.status_fd = s->proc.smaps_fd = -1;
    if (!(cfg->interval > 0) || !isfinite(cfg->interval)
        || !(cfg->latency > 0) || !isfinite(cfg->latency)) {
        errno = EINVAL;
        return -1;
    }
    s->cfg = *cfg;
    s->hwm_last = -1;
    if (s->cfg.pid <= 0) {
        s->cfg.pid = getpid();
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        return -1;
    }
    pthread_condattr_t ca;
    (void)pthread_condattr_init(&ca);
#ifdef __linux__
    (void)pthread_condattr_setclock(&ca, SCHED_CLOCK);
#endif
    int rc = pthread_cond_init(&s->wake_sampler, &ca);
    (void)pthread_condattr_destroy(&ca);
    if (rc != 0
        || pthread_cond_init(&s->wake_deliverer, NULL) != 0
        || pthread_cond_init(&s->ended_cond, NULL) != 0
        || pthread_cond_init(&s->batch_cond, NULL) != 0) {
        errno = ENOMEM;
        return -1;      /* destroy would not know which exist: leak them */
    }
    s->sync_ready = 1;
    if (cfg->hooks.sample == NULL) {
        int open_rc;
        if (cfg->children) {
            s->tree = calloc(1, sizeof(pmt_proctree));
            if (s->tree == NULL) {
                errno = ENOMEM;
                return -1;
            }
            open_rc = pmt_tree_open(s->tree, s->cfg.pid, cfg->flags);
            if (open_rc != 0) {
                int e = errno;
                free(s->tree);
                s->tree = NULL;
                errno = e;
            }
        }
        else {
            open_rc = pmt_proc_open(&s->proc, s->cfg.pid, cfg->flags);
        }
        if (open_rc != 0) {
            return -1;
        }
    }
    if (cfg->logging
        && pmt_ring_init(&s->ring, pmt_ring_capacity(cfg->interval, cfg->latency)) != 0) {
        return -1;
    }
    return 0;
}

int
pmt_sampler_open_log(pmt_sampler *s, const char *path, int append)
{
    pmt_logwriter *lw = calloc(1, sizeof(pmt_logwriter));
    if (lw == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (pmt_lw_open(lw, path, append ? PMT_LW_APPEND : 0) != 0) {
        int e = errno;
        free(lw);
        errno = e;
        return -1;
    }
    s->lw = lw;
    return 0;
}

int
pmt_sampler_adopt_log(pmt_sampler *s, int fd)
{
    pmt_logwriter *lw = calloc(1, sizeof(pmt_logwriter));
    if (lw == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int nfd = dup(fd);
    if (nfd < 0) {
        int e = errno;
        free(lw);
        errno = e;
        return -1;
    }
    pmt_lw_adopt(lw, nfd);
    s->lw = lw;
    return 0;
}

void
pmt_sampler_destroy(pmt_sampler *s)
{
    pmt_ring_free(&s->ring);
    if (s->lw) {
        (void)pmt_lw_close(s->lw);
        free(s->lw);
        s->lw = NULL;
    }
    if (s->tree) {
        pmt_tree_close(s->tree);
        free(s->tree);
        s->tree = NULL;
    }
    pmt_proc_close(&s->proc);
    if (s->sync_ready && (s->owner == 0 || s->owner == getpid())) {
        /* in a forked child these may still record the parent's waiters:
         * destroying them could block forever */
        (void)pthread_mutex_destroy(&s->mu);
        (void)pthread_cond_destroy(&s->wake_sampler);
        (void)pthread_cond_destroy(&s->wake_deliverer);
        (void)pthread_cond_destroy(&s->ended_cond);
        (void)pthread_cond_destroy(&s->batch_cond);
    }
    s->sync_ready = 0;
}

/* ---- one record ----------------------------------------------------------------- */

static int
take_sample(pmt_sampler *s, pmt_procsample *ps, int rescan)
{
    if (s->cfg.hooks.sample) {
        return s->cfg.hooks.sample(s->cfg.hooks.ctx, ps, rescan);
    }
    if (s->tree) {
        return pmt_tree_sample(s->tree, ps, rescan);
    }
    return pmt_proc_sample(&s->proc, ps);
}

/* Format ps (a STOP record if stop is not NULL) into buf, or a malloc'd
 * *heap when it needs more than cap.  Returns the text, or NULL when out of
 * memory. */
static const char *
format_record(pmt_sampler *s, pmt_tscache *tc, const pmt_procsample *ps,
              const char *event, const pmt_stopinfo *stop, const pmt_label *l,
              char *buf, size_t cap, size_t *len, char **heap)
{
    const char *lt = l ? l->text : NULL;
    size_t ll = l ? l->len : 0;
    int keys = s->cfg.keys;
    *heap = NULL;
    size_t n = stop ? pmt_stop_json(buf, cap, ps, tc, keys, stop, lt, ll)
                    : pmt_ps_json(buf, cap, ps, tc, keys, event, lt, ll);
    if (n <= cap) {
        *len = n;
        return buf;
    }
    char *h = malloc(n);
    if (h == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    *len = stop ? pmt_stop_json(h, n, ps, tc, keys, stop, lt, ll)
                : pmt_ps_json(h, n, ps, tc, keys, event, lt, ll);
    *heap = h;
    return h;
}

/* What the samples say about the peak; mu held. */
static void
note_peaks(pmt_sampler *s, const pmt_procsample *ps)
{
    if (ps->rss > s->rss_max) {
        s->rss_max = ps->rss;
    }
    if (ps->hwm > s->hwm_last) {
        s->hwm_last = ps->hwm;
    }
}

static pmt_label *
next_label(pmt_sampler *s)
{
    return s->cfg.labels ? pmt_labelq_pop(s->cfg.labels) : NULL;
}

/* Logging mode: store a record; wake the deliverer when a batch is due. */
static void
put_record(pmt_sampler *s, double created, int kind, const char *text,
           size_t len, char *heap)
{
    (void)pthread_mutex_lock(&s->mu);
    (void)pmt_ring_put(&s->ring, created, kind, text, len, heap);
    /* the ring's age test uses sample (wall) times */
    if (!s->due && pmt_ring_due(&s->ring, created, s->cfg.latency)) {
        s->due = 1;
        (void)pthread_cond_signal(&s->wake_deliverer);
    }
    (void)pthread_mutex_unlock(&s->mu);
}

/* File mode: append a record.  Returns the write error, 0 if none. */
static int
write_record(pmt_sampler *s, const char *text, size_t len, double now,
             double *last_flush)
{
    pmt_lw_bytes(s->lw, text, len);
    pmt_lw_char(s->lw, '\n');
    if (now - *last_flush >= s->cfg.latency - 1e-4) {
        (void)pmt_lw_flush(s->lw);
        *last_flush = now;
    }
    return pmt_lw_error(s->lw);
}

/* ---- the sampler thread ------------------------------------------------------------ */

static void *
sampler_main(void *arg)
{
    pmt_sampler *s = (pmt_sampler *)arg;
    char buf[PMT_SLOT_TEXT];
#ifdef __linux__
    (void)pthread_setname_np(pthread_self(), "pmt-sampler");
#endif
    double next = pmt_sched_now();
    double last_flush = next;
    /* a tree is rescanned for new descendants at most every 50 ms */
    uint64_t rescan_every = 1;
    if (s->cfg.children && s->cfg.interval < 0.05) {
        rescan_every = (uint64_t)ceil(0.05 / s->cfg.interval);
    }
    uint64_t n = 0;
    int err = 0;

    for (;;) {
        pmt_procsample ps;
        if (take_sample(s, &ps, (n % rescan_every) == 0) != 0) {
            err = errno ? errno : EIO;
            break;
        }
        int kind = n == 0 ? PMT_KIND_START : PMT_KIND_SAMPLE;
        /* START shows the state on entry; labels go to later samples */
        pmt_label *l = kind == PMT_KIND_START ? NULL : next_label(s);
        const char *event = (s->lw && kind == PMT_KIND_START) ? "start" : NULL;
        size_t len;
        char *heap;
        const char *text = format_record(s, &s->tc_thread, &ps, event, NULL, l,
                                         buf, sizeof(buf), &len, &heap);
        free(l);
        n++;
        double now = pmt_sched_now();
        if (text != NULL) {
            if (s->lw) {
                err = write_record(s, text, len, now, &last_flush);
                free(heap);
                if (err) {
                    break;
                }
            }
            else {
                put_record(s, ps.wall, kind, text, len, heap);
            }
        }
        (void)pthread_mutex_lock(&s->mu);
        s->samples = n;
        note_peaks(s, &ps);
        if (n == 1) {
            (void)pthread_cond_broadcast(&s->ended_cond);
        }
        next = pmt_sched_next(next, now, s->cfg.interval, &s->missed);
        struct timespec ts = pmt_to_timespec(next);
        while (!s->stopping) {
            if (pthread_cond_timedwait(&s->wake_sampler, &s->mu, &ts) == ETIMEDOUT) {
                break;
            }
        }
        int stop = s->stopping;
        (void)pthread_mutex_unlock(&s->mu);
        if (stop) {
            break;
        }
    }
    if (s->lw) {
        (void)pmt_lw_flush(s->lw);
    }
    (void)pthread_mutex_lock(&s->mu);
    s->ended = 1;
    if (!s->stopping) {
        s->err = err;
    }
    if (s->ring.nfill > 0) {
        s->due = 1;
    }
    (void)pthread_cond_broadcast(&s->wake_deliverer);
    (void)pthread_cond_broadcast(&s->ended_cond);
    (void)pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- start, stop, wait ---------------------------------------------------------------- */

static void
join_threads(pmt_sampler *s)
{
    (void)pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    (void)pthread_cond_broadcast(&s->wake_sampler);
    (void)pthread_cond_broadcast(&s->wake_deliverer);
    (void)pthread_mutex_unlock(&s->mu);
    if (s->have_sampler) {
        (void)pthread_join(s->sampler_thread, NULL);
        s->have_sampler = 0;
    }
    if (s->have_deliverer) {
        (void)pthread_join(s->deliverer_thread, NULL);
        s->have_deliverer = 0;
    }
}

int
pmt_sampler_start(pmt_sampler *s)
{
    if (s->started) {
        return EBUSY;
    }
    if (!s->sync_ready || (s->lw == NULL && !s->cfg.logging)) {
        return EINVAL;
    }
    s->owner = getpid();
    sigset_t all, old;
    sigfillset(&all);
    int rc = pthread_sigmask(SIG_BLOCK, &all, &old);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_create(&s->sampler_thread, NULL, sampler_main, s);
    if (rc == 0) {
        s->have_sampler = 1;
        if (s->cfg.logging) {
            rc = pthread_create(&s->deliverer_thread, NULL, pmt_deliverer_main, s);
            if (rc == 0) {
                s->have_deliverer = 1;
            }
        }
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        join_threads(s);
        return rc;
    }
    s->started = 1;
    /* return once the START sample has been taken */
    (void)pthread_mutex_lock(&s->mu);
    while (s->samples == 0 && !s->ended) {
        (void)pthread_cond_wait(&s->ended_cond, &s->mu);
    }
    (void)pthread_mutex_unlock(&s->mu);
    return 0;
}

void
pmt_sampler_stop(pmt_sampler *s)
{
    if (s->started && s->owner == getpid()) {
        join_threads(s);
    }
}

void
pmt_sampler_forget_threads(pmt_sampler *s)
{
    s->have_sampler = s->have_deliverer = 0;
}

void
pmt_sampler_drain(pmt_sampler *s, pmt_deliver_fn fn, void *arg)
{
    if (s->ring.nfill == 0 || s->ring.nbatch != 0) {
        return;
    }
    size_t n = pmt_ring_swap(&s->ring);
    fn(arg, s->ring.spare, n);
    pmt_ring_clear_batch(&s->ring);
}

int
pmt_sampler_wait(pmt_sampler *s, double timeout)
{
    if (!s->started) {
        return 0;
    }
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts = pmt_to_timespec((double)now.tv_sec + now.tv_nsec * 1e-9
                                     + (timeout > 0 ? timeout : 0));
    (void)pthread_mutex_lock(&s->mu);
    while (!s->ended && !s->stopping) {
        if (pthread_cond_timedwait(&s->ended_cond, &s->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    int ended = s->ended;
    (void)pthread_mutex_unlock(&s->mu);
    return ended;
}

void
pmt_sampler_get_stats(pmt_sampler *s, pmt_sampler_stats *out)
{
    /* in a forked child the parent's thread may have held mu at fork */
    int lock = s->sync_ready && (s->owner == 0 || s->owner == getpid());
    if (lock) {
        (void)pthread_mutex_lock(&s->mu);
    }
    out->samples = s->samples;
    out->dropped = s->ring.dropped;
    out->missed = s->missed;
    out->batches_main = s->batches_main;
    out->batches_thread = s->batches_thread;
    out->err = s->err;
    out->ended = s->ended;
    out->capacity = s->ring.cap;
    if (lock) {
        (void)pthread_mutex_unlock(&s->mu);
    }
}

/* ---- the caller's thread ------------------------------------------------------------------ */

const char *
pmt_sampler_sample_now(pmt_sampler *s, const char *event, char *buf,
                       size_t cap, size_t *len, char **heap, double *wall)
{
    pmt_procsample ps;
    if (take_sample(s, &ps, 1) != 0) {
        return NULL;
    }
    pmt_label *l = next_label(s);
    const char *text = format_record(s, &s->tc_caller, &ps, event, NULL, l,
                                     buf, cap, len, heap);
    free(l);
    *wall = ps.wall;
    return text;
}

const char *
pmt_sampler_stop_record(pmt_sampler *s, pmt_stopinfo *info, char *buf,
                        size_t cap, size_t *len, char **heap, double *wall,
                        int *gone)
{
    pmt_procsample ps;
    int have = take_sample(s, &ps, 1) == 0;
    if (!have && errno != ESRCH) {
        return NULL;
    }
    *gone = !have;
    if (have) {
        note_peaks(s, &ps);     /* the threads are stopped: no lock needed */
    }
    info->rss_max = s->samples > 0 || have ? s->rss_max : -1;
    if (info->peak < 0) {
        /* the kernel's own high-water mark: now, or at the last sample
         * that read it (a process that has gone has no /proc status) */
        int64_t now = -1;
        if (have) {
            now = ps.hwm;
            if (now < 0 && s->cfg.hooks.sample == NULL) {
                now = pmt_proc_read_hwm(s->cfg.pid);
            }
        }
        info->peak = now >= 0 ? now : s->hwm_last;
        info->peak_source = now >= 0 ? "VmHWM" : "VmHWM at the last sample";
    }
    if (!have) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        info->pid = (int32_t)s->cfg.pid;
        info->wall = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    pmt_label *l = have ? next_label(s) : NULL;
    const char *text = format_record(s, &s->tc_caller, have ? &ps : NULL, NULL,
                                     info, l, buf, cap, len, heap);
    free(l);
    *wall = have ? ps.wall : info->wall;
    return text;
}

int
pmt_sampler_write_line(pmt_sampler *s, const char *text, size_t n)
{
    if (s->lw == NULL) {
        errno = EBADF;
        return -1;
    }
    pmt_lw_bytes(s->lw, text, n);
    pmt_lw_char(s->lw, '\n');
    return 0;
}

int
pmt_sampler_close_log(pmt_sampler *s)
{
    if (s->lw == NULL) {
        return 0;
    }
    int rc = pmt_lw_close(s->lw);
    int e = errno;
    free(s->lw);
    s->lw = NULL;
    errno = e;
    return rc;
}
