/* sampler.h: sample a process every `interval` seconds on a POSIX thread and
 * write each sample as one JSON record, to a file or to a delivery thread.
 *
 * The sampler thread keeps an absolute schedule (ticks it could not keep are
 * skipped and counted as missed, never bunched).  Each sample is formatted
 * with procjson; the first is the START record; a label waiting in the
 * label queue goes to the next sample (not the START one).
 *
 * - File mode: records are appended as lines through logwriter, flushed
 *   every `latency` seconds; a write error ends sampling.
 * - Logging mode: records go into a ring (ring.h).  A delivery thread waits
 *   until the oldest is `latency` old (or the ring is half full), makes it a
 *   batch and hands it over exactly once: first by asking another thread
 *   (hooks.ask_main; the Python binding asks the interpreter's main thread)
 *   and, if that thread has not taken it within PMT_MAIN_GRACE seconds, by
 *   calling hooks.deliver_here on the delivery thread itself.  Whoever takes
 *   it calls pmt_sampler_deliver.  The sampler never waits for delivery.
 *
 * Both threads run with every signal blocked.  Nothing here knows Python: the
 * binding supplies the hooks.  A sampler belongs to the process that started
 * it; in a forked child only pmt_sampler_forget_threads and destroy apply. */
#ifndef PMT_SAMPLER_H
#define PMT_SAMPLER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "labelq.h"
#include "logwriter.h"
#include "procjson.h"
#include "procsample.h"
#include "proctree.h"
#include "ring.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { PMT_KIND_SAMPLE = 0, PMT_KIND_START = 1, PMT_KIND_STOP = 2 };

/* Seconds the delivery thread leaves a batch to the thread it asked. */
#define PMT_MAIN_GRACE 0.02

typedef struct pmt_sampler_hooks {
    /* Logging mode, on the delivery thread (no lock held): deliver the
     * ready batch now, by calling pmt_sampler_deliver.  A batch this leaves
     * undelivered is dropped. */
    void (*deliver_here)(void *ctx);
    /* Logging mode: ask another thread to call pmt_sampler_deliver soon.
     * Returns 0 if asked.  NULL: never ask. */
    int (*ask_main)(void *ctx);
    /* Take one sample into *s (0, or -1 with errno).  NULL: sample the /proc
     * target the sampler opened.  Tests give their own. */
    int (*sample)(void *ctx, pmt_procsample *s, int rescan);
    void *ctx;
} pmt_sampler_hooks;

typedef struct pmt_sampler_config {
    pid_t pid;                  /* <= 0: this process */
    double interval;            /* seconds between samples, > 0 */
    double latency;             /* seconds a record may wait, > 0 */
    int flags;                  /* PMT_PS_* */
    int keys;                   /* PMT_JSON_* */
    int children;               /* sample the process and its descendants */
    int logging;                /* 1: ring + delivery thread; 0: file mode */
    int via_main;               /* logging mode: ask hooks.ask_main first */
    pmt_labelq *labels;         /* labels for the samples, or NULL */
    pmt_sampler_hooks hooks;
} pmt_sampler_config;

typedef struct pmt_sampler_stats {
    uint64_t samples, dropped, missed, batches_main, batches_thread;
    int err;                    /* errno that ended sampling, 0 if none */
    int ended;                  /* the sampler thread ended by itself */
    size_t capacity;            /* ring slots (logging mode) */
} pmt_sampler_stats;

typedef struct pmt_sampler {
    pmt_sampler_config cfg;
    pmt_proc proc;
    pmt_proctree *tree;         /* when cfg.children */
    pmt_tscache tc_thread;      /* the sampler thread's */
    pmt_tscache tc_caller;      /* pmt_sampler_sample_now's */
    pmt_logwriter *lw;          /* file mode */
    pmt_ring ring;              /* logging mode */
    /* threads */
    pid_t owner;
    int started;
    int have_sampler, have_deliverer;
    pthread_t sampler_thread, deliverer_thread;
    pthread_mutex_t mu;
    pthread_cond_t wake_sampler, wake_deliverer, ended_cond, batch_cond;
    int sync_ready;             /* mu and the conditions exist */
    int stopping, ended, due;
    /* counters, under mu */
    uint64_t samples, missed, batches_main, batches_thread;
    int err;
    int64_t rss_max;            /* the highest RSS sampled, 0 if none */
    int64_t hwm_last;           /* the highest VmHWM read (PMT_PS_HWM), -1 */
    /* the batch (ring.spare): handed over once */
    int batch_state;            /* PMT_BATCH_*, under mu */
    int pending_calls;          /* asked (ask_main) and not yet answered */
    int delivering;             /* a batch is being delivered ... */
    pthread_t delivering_thread;    /* ... by this thread */
} pmt_sampler;

/* Set up s for cfg: check it and open the target.  Returns 0, or -1 with
 * errno: EINVAL (bad interval/latency), ESRCH (no such process), EACCES or
 * EPERM (may not read it), ENOMEM.  On failure s holds nothing to destroy
 * but pmt_sampler_destroy may still be called. */
int pmt_sampler_init(pmt_sampler *s, const pmt_sampler_config *cfg);

/* File mode: write to a file created (or appended to) at path, or to a
 * duplicate of fd.  0, or -1 with errno. */
int pmt_sampler_open_log(pmt_sampler *s, const char *path, int append);
int pmt_sampler_adopt_log(pmt_sampler *s, int fd);

/* Start the threads and return once the START sample is taken.  Returns 0,
 * or an errno value (nothing is left running). */
int pmt_sampler_start(pmt_sampler *s);

/* Wake and join the threads (idempotent).  Records still in the ring stay
 * there for pmt_sampler_drain. */
void pmt_sampler_stop(pmt_sampler *s);

/* In a forked child: the threads were the parent's; forget them. */
void pmt_sampler_forget_threads(pmt_sampler *s);

/* Hand the ready batch to fn(arg, records, n) if it has not been taken yet
 * (by_main: the caller is the thread asked through hooks.ask_main).
 * Returns 1 if this call delivered it. */
typedef void (*pmt_deliver_fn)(void *arg, const pmt_slot *recs, size_t n);
int pmt_sampler_deliver(pmt_sampler *s, int by_main, pmt_deliver_fn fn, void *arg);

/* A thread asked through hooks.ask_main has answered (delivered or not).
 * Returns the requests still unanswered. */
int pmt_sampler_asked_done(pmt_sampler *s);
int pmt_sampler_asked_pending(pmt_sampler *s);

/* True if the calling thread is inside fn of pmt_sampler_deliver. */
int pmt_sampler_delivering_here(pmt_sampler *s);

/* After stop: hand the records left in the ring to fn (one batch). */
void pmt_sampler_drain(pmt_sampler *s, pmt_deliver_fn fn, void *arg);

/* One sample now, in the calling thread, formatted (with a waiting label and
 * event, if not NULL) into buf, or into *heap (malloc'd, the caller frees)
 * when it needs more than cap.  Returns the text (length in *len, sample
 * time in *wall), or NULL with errno (ESRCH once the process has exited).
 * Only while the threads are not running. */
const char *pmt_sampler_sample_now(pmt_sampler *s, const char *event,
                                   char *buf, size_t cap, size_t *len,
                                   char **heap, double *wall);

/* The STOP record, in the calling thread, threads not running: a last
 * sample with its label, or (the process has gone: *gone = 1) a record of
 * timestamp, pid and info->gone_key; then info's exit code and peaks.
 * info->rss_max is filled in (the highest RSS sampled); info->peak, if the
 * caller has none (-1; a parent has wait4's ru_maxrss), is the kernel's
 * VmHWM read now or, once the process has gone, at the last sample that
 * read it (PMT_PS_HWM).  Returns as pmt_sampler_sample_now. */
const char *pmt_sampler_stop_record(pmt_sampler *s, pmt_stopinfo *info,
                                    char *buf, size_t cap, size_t *len,
                                    char **heap, double *wall, int *gone);

/* File mode, threads not running: append text[0:n] and a newline. */
int pmt_sampler_write_line(pmt_sampler *s, const char *text, size_t n);
/* File mode: flush and close the file.  0, or -1 with errno of the first
 * write error.  Idempotent. */
int pmt_sampler_close_log(pmt_sampler *s);

/* Wait up to timeout seconds for the sampler thread to end by itself
 * (process exit, write error).  Returns 1 if it has. */
int pmt_sampler_wait(pmt_sampler *s, double timeout);

void pmt_sampler_get_stats(pmt_sampler *s, pmt_sampler_stats *out);

/* Release everything (threads must be stopped or forgotten). */
void pmt_sampler_destroy(pmt_sampler *s);

/* The schedule: the first tick after `next` that is later than `now`
 * (next + interval, or later if ticks were missed; *missed counts them). */
double pmt_sched_next(double next, double now, double interval, uint64_t *missed);

#ifdef __cplusplus
}
#endif
#endif /* PMT_SAMPLER_H */
