/* _process.c: a sampler of any process's memory that runs on C threads.
 *
 * A Sampler owns two POSIX threads, both with every signal blocked:
 *
 * - the sampler thread never touches the interpreter.  Every `interval`
 *   seconds (an absolute CLOCK_MONOTONIC schedule) it takes one sample with
 *   src/core/procsample, formats it as the seed's JSON object and either
 *   (file mode) appends it as one line through src/core/logwriter, flushing
 *   every `latency` seconds, or (logging mode) puts it into a ring buffer;
 *
 * - in logging mode a delivery thread waits until the ring has records older
 *   than `latency` seconds (or is half full), swaps it for an empty one under
 *   a mutex, and only then takes the GIL to hand the whole batch to a Python
 *   callback as a list of (sample_time, kind, json_text) tuples.  So the
 *   sampler's schedule never waits for the GIL, and the program pays for one
 *   GIL hand-over per batch, not per sample.
 *
 * Labels (add_message) are kept in a process-wide FIFO; the next sample taken
 * by any Sampler carries the oldest one.  stop() wakes and joins both threads
 * with the GIL released, then hands the records still in the ring to the
 * callback from the calling thread.  A Sampler belongs to the process that
 * started it: in a forked child stop() only forgets the threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "logwriter.h"
#include "procsample.h"


#define SLOT_TEXT 560           /* a record without a long label fits */
#define MAX_LABELS 4096         /* labels waiting for a sample */

enum { KIND_SAMPLE = 0, KIND_START = 1, KIND_STOP = 2 };

/* ---- the process-wide label FIFO ----------------------------------------- */

typedef struct label {
    struct label *next;
    size_t len;
    char text[];
} label;

static pthread_mutex_t label_mu = PTHREAD_MUTEX_INITIALIZER;
static label *label_head, *label_tail;
static _Atomic int label_count;
static uint64_t labels_dropped;

static label *
pop_label(void)
{
    if (atomic_load_explicit(&label_count, memory_order_relaxed) == 0) {
        return NULL;
    }
    label *l = NULL;
    if (pthread_mutex_lock(&label_mu) != 0) {
        return NULL;
    }
    if (label_head != NULL) {
        l = label_head;
        label_head = l->next;
        if (label_head == NULL) {
            label_tail = NULL;
        }
        atomic_fetch_sub(&label_count, 1);
    }
    (void)pthread_mutex_unlock(&label_mu);
    return l;
}

/* ---- records ----------------------------------------------------------------- */

typedef struct {
    double created;
    int kind;
    uint32_t len;
    char *heap;                 /* the text, when longer than SLOT_TEXT */
    char text[SLOT_TEXT];
} slot;

static const char *
slot_text(const slot *s)
{
    return s->heap ? s->heap : s->text;
}

static void
slot_clear(slot *s)
{
    if (s->heap) {
        PyMem_RawFree(s->heap);
        s->heap = NULL;
    }
}

/* ---- the Sampler object ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    /* configuration */
    pid_t pid;
    double interval;
    double latency;
    int flags;                  /* PMT_PS_* */
    int keys;                   /* PMT_JSON_* */
    int children;
    PyObject *callback;         /* logging mode */
    pmt_logwriter *lw;          /* file mode */
    /* what is sampled */
    pmt_proc proc;
    pmt_proctree *tree;
    pmt_tscache tc_thread;      /* the sampler thread's */
    pmt_tscache tc_caller;      /* sample() in the caller's thread */
    /* threads */
    pid_t owner;
    int started, stopped;
    int have_sampler, have_deliverer;
    pthread_t sampler_thread, deliverer_thread;
    pthread_mutex_t mu;
    pthread_cond_t wake_sampler, wake_deliverer, ended_cond;
    int stopping;               /* stop() asked */
    int ended;                  /* the sampler thread has finished */
    int due;                    /* records are waiting to be delivered */
    /* ring (logging mode): fill is written by the sampler, spare is the
     * deliverer's; they are swapped under mu */
    slot *fill, *spare;
    size_t cap, nfill;
    /* counters, read under mu */
    uint64_t samples, dropped, missed;
    int err;                    /* errno that ended sampling, 0 if none */
    int write_err;              /* file mode: first write error */
    int cb_err;                 /* the callback raised at least once */
    /* hand-over of a batch (see deliverer_main) */
    int via_main;               /* try the main thread first */
    int batch_state;            /* BATCH_*, under mu */
    size_t nbatch;              /* records in spare */
    int pending_calls;          /* scheduled and not yet run, under mu */
    int ref_owed;               /* the last pending call drops stop()'s ref */
    uint64_t batches_main;      /* batches logged by the main thread */
    uint64_t batches_thread;    /* ... by the delivery thread */
    pthread_cond_t batch_cond;
    int delivering;             /* a batch is in the callback, ... */
    pthread_t delivering_thread;    /* ... called from this thread */
} Sampler;

/* The sampler's schedule runs on CLOCK_MONOTONIC where condition variables
 * can wait on it (Linux), else on CLOCK_REALTIME. */
#ifdef __linux__
#define SCHED_CLOCK CLOCK_MONOTONIC
#else
#define SCHED_CLOCK CLOCK_REALTIME
#endif

static double
mono_now(void)
{
    struct timespec ts;
    (void)clock_gettime(SCHED_CLOCK, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct timespec
to_timespec(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    if (ts.tv_nsec < 0) {
        ts.tv_nsec = 0;
    }
    return ts;
}

static int
take_sample(Sampler *self, pmt_procsample *s, int rescan)
{
    if (self->tree) {
        return pmt_tree_sample(self->tree, s, rescan);
    }
    return pmt_proc_sample(&self->proc, s);
}

/* Format s into buf (or a heap buffer if it needs more); returns the text
 * and its length, or NULL when out of memory. */
static char *
format_record(Sampler *self, pmt_tscache *tc, const pmt_procsample *s,
              const char *event, const label *l, char *buf, size_t cap,
              size_t *len, char **heap)
{
    *heap = NULL;
    size_t n = pmt_ps_json(buf, cap, s, tc, self->keys, event,
                           l ? l->text : NULL, l ? l->len : 0);
    if (n <= cap) {
        *len = n;
        return buf;
    }
    char *h = PyMem_RawMalloc(n);
    if (h == NULL) {
        return NULL;
    }
    *len = pmt_ps_json(h, n, s, tc, self->keys, event,
                       l ? l->text : NULL, l ? l->len : 0);
    *heap = h;
    return h;
}

static void
put_record(Sampler *self, double created, int kind, const char *text,
           size_t len, char *heap, double now)
{
    (void)pthread_mutex_lock(&self->mu);
    if (self->nfill >= self->cap) {
        self->dropped++;
        if (heap) {
            PyMem_RawFree(heap);
        }
    }
    else {
        slot *sl = &self->fill[self->nfill++];
        sl->created = created;
        sl->kind = kind;
        sl->len = (uint32_t)len;
        if (heap) {
            sl->heap = heap;
        }
        else {
            sl->heap = NULL;
            memcpy(sl->text, text, len);
        }
    }
    /* due when the oldest waiting record is latency old, or half full */
    if (self->nfill > 0
        && (self->nfill * 2 >= self->cap
            || now - self->fill[0].created >= self->latency - 1e-4)) {
        if (!self->due) {
            self->due = 1;
            (void)pthread_cond_signal(&self->wake_deliverer);
        }
    }
    (void)pthread_mutex_unlock(&self->mu);
}

static void *
sampler_main(void *arg)
{
    Sampler *self = (Sampler *)arg;
    char buf[SLOT_TEXT];
#ifdef __linux__
    (void)pthread_setname_np(pthread_self(), "pmt-sampler");
#endif
    double next = mono_now();
    double last_flush = next;
    int rescan_every = 1;
    if (self->tree && self->interval < 0.05) {
        rescan_every = (int)ceil(0.05 / self->interval);
    }
    uint64_t n = 0;
    int err = 0;

    for (;;) {
        pmt_procsample s;
        if (take_sample(self, &s, (n % (uint64_t)rescan_every) == 0) != 0) {
            err = errno ? errno : EIO;
            break;
        }
        int kind = n == 0 ? KIND_START : KIND_SAMPLE;
        /* START shows the state on entry; labels go to later samples */
        label *l = kind == KIND_START ? NULL : pop_label();
        const char *event = NULL;
        if (self->lw && kind == KIND_START) {
            event = "start";
        }
        size_t len;
        char *heap;
        const char *text = format_record(self, &self->tc_thread, &s, event, l,
                                         buf, sizeof(buf), &len, &heap);
        if (l) {
            free(l);
        }
        n++;
        double now = mono_now();
        if (text != NULL) {
            if (self->lw) {
                pmt_lw_bytes(self->lw, text, len);
                pmt_lw_char(self->lw, '\n');
                if (heap) {
                    PyMem_RawFree(heap);
                }
                if (now - last_flush >= self->latency - 1e-4) {
                    (void)pmt_lw_flush(self->lw);
                    last_flush = now;
                }
                if (pmt_lw_error(self->lw)) {
                    err = pmt_lw_error(self->lw);
                    break;
                }
            }
            else {
                /* the ring's age test uses sample (wall) times */
                put_record(self, s.wall, kind, text, len, heap, s.wall);
            }
        }
        (void)pthread_mutex_lock(&self->mu);
        self->samples = n;
        if (n == 1) {
            (void)pthread_cond_broadcast(&self->ended_cond);
        }
        /* next tick on the schedule; ticks already missed are skipped */
        next += self->interval;
        if (next <= now) {
            double behind = floor((now - next) / self->interval) + 1;
            self->missed += (uint64_t)behind;
            next += behind * self->interval;
        }
        struct timespec ts = to_timespec(next);
        while (!self->stopping) {
            int rc = pthread_cond_timedwait(&self->wake_sampler, &self->mu, &ts);
            if (rc == ETIMEDOUT) {
                break;
            }
        }
        int stop = self->stopping;
        (void)pthread_mutex_unlock(&self->mu);
        if (stop) {
            break;
        }
    }
    if (self->lw) {
        (void)pmt_lw_flush(self->lw);
    }
    (void)pthread_mutex_lock(&self->mu);
    self->ended = 1;
    if (!self->stopping) {
        self->err = err;
    }
    if (self->nfill > 0) {
        self->due = 1;
    }
    (void)pthread_cond_broadcast(&self->wake_deliverer);
    (void)pthread_cond_broadcast(&self->ended_cond);
    (void)pthread_mutex_unlock(&self->mu);
    return NULL;
}

/* With the GIL: hand n records to the callback as one list. */
static void
call_back(Sampler *self, slot *recs, size_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(dis#)", recs[i].created, recs[i].kind,
                                    slot_text(&recs[i]), (Py_ssize_t)recs[i].len);
        if (t == NULL) {
            Py_DECREF(list);
            goto error;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    PyObject *r = PyObject_CallOneArg(self->callback, list);
    Py_DECREF(list);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    return;
error:
    self->cb_err = 1;
    PyErr_WriteUnraisable(self->callback);
}

/* The batch in `spare` (logging mode) is handed over once, by whichever
 * comes first: the main thread, asked with Py_AddPendingCall (it runs the
 * call at its next check of the eval breaker, so a CPU-bound program pays
 * for the records' Python work and nothing else: no GIL hand-over between
 * threads), or, if the main thread does not get to it within MAIN_GRACE
 * seconds (it sleeps or waits in C, so the GIL is likely free), the
 * delivery thread itself. */
#define MAIN_GRACE 0.02

enum { BATCH_NONE = 0, BATCH_READY = 1, BATCH_BUSY = 2 };

/* With the GIL, mu not held: deliver the ready batch if nobody has. */
static void
deliver_ready_batch(Sampler *self, int by_main)
{
    (void)pthread_mutex_lock(&self->mu);
    if (self->batch_state != BATCH_READY) {
        (void)pthread_mutex_unlock(&self->mu);
        return;
    }
    self->batch_state = BATCH_BUSY;
    if (by_main) {
        self->batches_main++;
    }
    else {
        self->batches_thread++;
    }
    slot *batch = self->spare;
    size_t n = self->nbatch;
    self->delivering = 1;
    self->delivering_thread = pthread_self();
    (void)pthread_mutex_unlock(&self->mu);
    call_back(self, batch, n);
    (void)pthread_mutex_lock(&self->mu);
    self->delivering = 0;
    (void)pthread_mutex_unlock(&self->mu);
    for (size_t i = 0; i < n; i++) {
        slot_clear(&batch[i]);
    }
    (void)pthread_mutex_lock(&self->mu);
    self->batch_state = BATCH_NONE;
    self->nbatch = 0;
    (void)pthread_cond_broadcast(&self->batch_cond);
    (void)pthread_mutex_unlock(&self->mu);
}

/* The pending call, in the main thread with the GIL. */
static int
pending_deliver(void *arg)
{
    Sampler *self = (Sampler *)arg;
    deliver_ready_batch(self, 1);
    (void)pthread_mutex_lock(&self->mu);
    int left = --self->pending_calls;
    (void)pthread_mutex_unlock(&self->mu);
    if (left == 0 && self->ref_owed) {
        /* stop() left its reference for the last pending call to drop */
        self->ref_owed = 0;
        Py_DECREF(self);
    }
    return 0;
}

static void
wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, double seconds)
{
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts = to_timespec((double)now.tv_sec + now.tv_nsec * 1e-9 + seconds);
    (void)pthread_cond_timedwait(cond, mu, &ts);
}

static void *
deliverer_main(void *arg)
{
    Sampler *self = (Sampler *)arg;
#ifdef __linux__
    (void)pthread_setname_np(pthread_self(), "pmt-deliver");
#endif
    (void)pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->stopping && !self->due && !self->ended) {
            (void)pthread_cond_wait(&self->wake_deliverer, &self->mu);
        }
        /* never touch spare while someone delivers it */
        while (self->batch_state == BATCH_BUSY) {
            (void)pthread_cond_wait(&self->batch_cond, &self->mu);
        }
        if (self->batch_state == BATCH_NONE) {
            if (self->stopping || (self->ended && self->nfill == 0)) {
                break;
            }
            if (!self->due) {
                continue;
            }
            slot *batch = self->fill;
            self->fill = self->spare;
            self->spare = batch;
            self->nbatch = self->nfill;
            self->nfill = 0;
            self->due = 0;
            self->batch_state = BATCH_READY;
            if (self->via_main && !self->stopping && self->pending_calls == 0
                && Py_AddPendingCall(pending_deliver, self) == 0) {
                self->pending_calls++;
                double until = mono_now() + MAIN_GRACE;
                while (self->batch_state == BATCH_READY && !self->stopping) {
                    double left = until - mono_now();
                    if (left <= 0) {
                        break;
                    }
                    wait_until(&self->batch_cond, &self->mu, left);
                }
                while (self->batch_state == BATCH_BUSY) {
                    (void)pthread_cond_wait(&self->batch_cond, &self->mu);
                }
            }
        }
        if (self->batch_state == BATCH_READY) {
            (void)pthread_mutex_unlock(&self->mu);
            if (!PMT_IS_FINALIZING()) {
                PyGILState_STATE g = PyGILState_Ensure();
                deliver_ready_batch(self, 0);
                PyGILState_Release(g);
            }
            (void)pthread_mutex_lock(&self->mu);
            if (self->batch_state == BATCH_READY) {     /* finalizing: drop */
                for (size_t i = 0; i < self->nbatch; i++) {
                    slot_clear(&self->spare[i]);
                }
                self->batch_state = BATCH_NONE;
            }
        }
    }
    (void)pthread_mutex_unlock(&self->mu);
    return NULL;
}

/* ---- Python interface -------------------------------------------------------- */

static PyObject *
raise_for_errno(int err, pid_t pid, const char *what)
{
    PyObject *exc = PyExc_OSError;
    if (err == ESRCH) {
        exc = PyExc_ProcessLookupError;
    }
    else if (err == EACCES || err == EPERM) {
        exc = PyExc_PermissionError;
    }
    PyObject *args = Py_BuildValue("(is)", err, what);
    (void)pid;
    if (args != NULL) {
        PyErr_SetObject(exc, args);
        Py_DECREF(args);
    }
    return NULL;
}

static int
Sampler_init(Sampler *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "interval", "callback", "path", "fd",
                             "append", "children", "status", "smaps",
                             "extra", "latency", "via_main", NULL};
    int pid;
    double interval;
    PyObject *callback = Py_None;
    PyObject *path = Py_None;
    int fd = -1, append = 0, children = 0, status = 0, smaps = 0, extra = 1;
    double latency = 0.1;
    int via_main = 1;
    if (self->started || self->lw || self->callback) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "id|$OO&ipppppdp", kwlist,
                                     &pid, &interval, &callback,
                                     PyUnicode_FSConverter, &path, &fd,
                                     &append, &children, &status, &smaps,
                                     &extra, &latency, &via_main)) {
        return -1;
    }
    int rc = -1;
    if (!(interval > 0) || !isfinite(interval)) {
        PyErr_SetString(PyExc_ValueError, "interval must be a number of seconds > 0");
        goto done;
    }
    if (!(latency > 0) || !isfinite(latency)) {
        PyErr_SetString(PyExc_ValueError, "latency must be > 0");
        goto done;
    }
    int file_mode = path != Py_None || fd >= 0;
    if (file_mode == (callback != Py_None)) {
        PyErr_SetString(PyExc_TypeError,
                        "give exactly one of callback or path/fd");
        goto done;
    }
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        goto done;
    }
    self->pid = pid > 0 ? pid : getpid();
    self->interval = interval;
    self->latency = latency;
    self->via_main = via_main;
    self->flags = (status ? PMT_PS_STATUS : 0) | (smaps ? PMT_PS_SMAPS : 0);
    self->keys = (extra ? PMT_JSON_EXTRA : 0) | (children ? PMT_JSON_NPROCS : 0);
    self->children = children;
    self->proc.stat_fd = self->proc.statm_fd = -1;
    self->proc.status_fd = self->proc.smaps_fd = -1;

    int open_rc;
    if (children) {
        self->tree = PyMem_RawCalloc(1, sizeof(pmt_proctree));
        if (self->tree == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        open_rc = pmt_tree_open(self->tree, self->pid, self->flags);
        Py_END_ALLOW_THREADS
        if (open_rc != 0) {
            int e = errno;
            PyMem_RawFree(self->tree);
            self->tree = NULL;
            errno = e;
        }
    }
    else {
        open_rc = pmt_proc_open(&self->proc, self->pid, self->flags);
    }
    if (open_rc != 0) {
        int e = errno;
        if (e == ESRCH) {
            PyErr_Format(PyExc_ProcessLookupError, "no process with pid %d", (int)self->pid);
        }
        else if (e == EACCES || e == EPERM) {
            PyErr_Format(PyExc_PermissionError,
                         "may not read /proc/%d (process of another user?)", (int)self->pid);
        }
        else {
            raise_for_errno(e, self->pid, strerror(e));
        }
        goto done;
    }
    if (file_mode) {
        self->lw = PyMem_RawCalloc(1, sizeof(pmt_logwriter));
        if (self->lw == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        if (path != Py_None) {
            const char *p = PyBytes_AS_STRING(path);
            if (pmt_lw_open(self->lw, p, append ? PMT_LW_APPEND : 0) != 0) {
                PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
                PyMem_RawFree(self->lw);
                self->lw = NULL;
                goto done;
            }
        }
        else {
            int nfd = dup(fd);
            if (nfd < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                PyMem_RawFree(self->lw);
                self->lw = NULL;
                goto done;
            }
            pmt_lw_adopt(self->lw, nfd);
        }
    }
    else {
        /* two seconds of samples, or more than twice a batch */
        double span = latency * 4 > 2.0 ? latency * 4 : 2.0;
        double c = ceil(span / interval);
        self->cap = c < 64 ? 64 : (c > 16384 ? 16384 : (size_t)c);
        self->fill = PyMem_RawCalloc(self->cap, sizeof(slot));
        self->spare = PyMem_RawCalloc(self->cap, sizeof(slot));
        if (self->fill == NULL || self->spare == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        Py_INCREF(callback);
        self->callback = callback;
    }
    rc = 0;
done:
    Py_XDECREF(path == Py_None ? NULL : path);
    return rc;
}

static PyObject *
Sampler_start(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler already started");
        return NULL;
    }
    if (self->lw == NULL && self->callback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler not initialised");
        return NULL;
    }
    self->owner = getpid();
    sigset_t all, old;
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &old) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int rc = pthread_create(&self->sampler_thread, NULL, sampler_main, self);
    if (rc == 0) {
        self->have_sampler = 1;
        if (self->callback) {
            rc = pthread_create(&self->deliverer_thread, NULL, deliverer_main, self);
            if (rc == 0) {
                self->have_deliverer = 1;
            }
        }
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    self->started = 1;
    Py_INCREF(self);            /* the threads use self until stop() */
    if (rc == 0) {
        /* return once the START sample has been taken */
        Py_BEGIN_ALLOW_THREADS
        (void)pthread_mutex_lock(&self->mu);
        while (self->samples == 0 && !self->ended) {
            (void)pthread_cond_wait(&self->ended_cond, &self->mu);
        }
        (void)pthread_mutex_unlock(&self->mu);
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) {
        errno = rc;
        PyObject *r = PyObject_CallMethod((PyObject *)self, "stop", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* Join the threads (GIL released).  Returns the records left in the ring. */
static void
stop_threads(Sampler *self)
{
    (void)pthread_mutex_lock(&self->mu);
    self->stopping = 1;
    (void)pthread_cond_broadcast(&self->wake_sampler);
    (void)pthread_cond_broadcast(&self->wake_deliverer);
    (void)pthread_mutex_unlock(&self->mu);
    if (self->have_sampler) {
        (void)pthread_join(self->sampler_thread, NULL);
        self->have_sampler = 0;
    }
    if (self->have_deliverer) {
        (void)pthread_join(self->deliverer_thread, NULL);
        self->have_deliverer = 0;
    }
}

static PyObject *
Sampler_stop(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->started || self->stopped) {
        Py_RETURN_NONE;
    }
    if (self->owner == getpid()) {
        (void)pthread_mutex_lock(&self->mu);
        int inside = self->delivering && pthread_equal(self->delivering_thread, pthread_self());
        (void)pthread_mutex_unlock(&self->mu);
        if (inside) {
            /* joining would wait for the very batch this thread is logging */
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot stop a process sampler from inside the logging of its own records");
            return NULL;
        }
    }
    self->stopped = 1;
    if (self->owner != getpid()) {
        /* a forked child: the threads are the parent's */
        self->have_sampler = self->have_deliverer = 0;
        Py_DECREF(self);
        Py_RETURN_NONE;
    }
    Py_BEGIN_ALLOW_THREADS
    stop_threads(self);
    Py_END_ALLOW_THREADS
    /* what the deliverer did not hand over, from this thread */
    if (self->callback && self->nfill > 0) {
        size_t n = self->nfill;
        self->nfill = 0;
        call_back(self, self->fill, n);
        for (size_t i = 0; i < n; i++) {
            slot_clear(&self->fill[i]);
        }
    }
    (void)pthread_mutex_lock(&self->mu);
    int pending = self->pending_calls;
    (void)pthread_mutex_unlock(&self->mu);
    if (pending > 0) {
        self->ref_owed = 1;     /* a pending call still holds self */
    }
    else {
        Py_DECREF(self);
    }
    Py_RETURN_NONE;
}

/* sample(event=None) -> (time, json_text): one sample now, in this thread.
 * Only while the threads are not running. */
static PyObject *
Sampler_sample(Sampler *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"event", NULL};
    const char *event = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z", kwlist, &event)) {
        return NULL;
    }
    if (self->started && !self->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "sample() while the sampler runs");
        return NULL;
    }
    if (self->proc.stat_fd < 0 && self->tree == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler not initialised");
        return NULL;
    }
    pmt_procsample s;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = take_sample(self, &s, 1);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        int e = errno;
        if (e == ESRCH) {
            return PyErr_Format(PyExc_ProcessLookupError,
                                "process %d has exited", (int)self->pid);
        }
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    label *l = pop_label();
    char buf[SLOT_TEXT];
    size_t len;
    char *heap;
    const char *text = format_record(self, &self->tc_caller, &s, event, l,
                                     buf, sizeof(buf), &len, &heap);
    free(l);
    if (text == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *r = Py_BuildValue("(ds#)", s.wall, text, (Py_ssize_t)len);
    if (heap) {
        PyMem_RawFree(heap);
    }
    return r;
}

/* write_line(text): file mode only, after stop(): append a line. */
static PyObject *
Sampler_write_line(Sampler *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    if (self->lw == NULL || (self->started && !self->stopped)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write_line() needs a file-mode sampler that is not running");
        return NULL;
    }
    pmt_lw_bytes(self->lw, s, (size_t)n);
    pmt_lw_char(self->lw, '\n');
    Py_RETURN_NONE;
}

/* close(): file mode: flush and close the file; raises the first write error. */
static PyObject *
Sampler_close(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    if (self->started && !self->stopped) {
        PyObject *r = Sampler_stop(self, NULL);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    if (self->lw) {
        int rc = pmt_lw_close(self->lw);
        int e = errno;
        PyMem_RawFree(self->lw);
        self->lw = NULL;
        if (rc != 0) {
            errno = e;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    Py_RETURN_NONE;
}

/* wait(timeout) -> bool: True once the sampler thread has ended (the process
 * exited, or a write failed); waits with the GIL released. */
static PyObject *
Sampler_wait(Sampler *self, PyObject *arg)
{
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!self->started) {
        Py_RETURN_FALSE;
    }
    int ended;
    Py_BEGIN_ALLOW_THREADS
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts = to_timespec((double)now.tv_sec + now.tv_nsec * 1e-9
                                     + (timeout > 0 ? timeout : 0));
    (void)pthread_mutex_lock(&self->mu);
    while (!self->ended && !self->stopping) {
        if (pthread_cond_timedwait(&self->ended_cond, &self->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    ended = self->ended;
    (void)pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ended);
}

static PyObject *
Sampler_get_stats(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    uint64_t samples, dropped, missed, bmain, bthread;
    int err, ended;
    /* in a forked child the parent's thread may have held mu at fork */
    int lock = self->owner == 0 || self->owner == getpid();
    if (lock) {
        (void)pthread_mutex_lock(&self->mu);
    }
    samples = self->samples;
    dropped = self->dropped;
    missed = self->missed;
    bmain = self->batches_main;
    bthread = self->batches_thread;
    err = self->err;
    ended = self->ended;
    if (lock) {
        (void)pthread_mutex_unlock(&self->mu);
    }
    return Py_BuildValue("{sKsKsKsKsKsisisisisi}", "samples", (unsigned long long)samples,
                         "batches_main", (unsigned long long)bmain,
                         "batches_thread", (unsigned long long)bthread,
                         "dropped", (unsigned long long)dropped,
                         "missed", (unsigned long long)missed,
                         "errno", err, "ended", ended, "callback_error", self->cb_err,
                         "pid", (int)self->pid, "capacity", (int)self->cap);
}

static PyObject *
Sampler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    Sampler *self = (Sampler *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->proc.stat_fd = self->proc.statm_fd = -1;
    self->proc.status_fd = self->proc.smaps_fd = -1;
    if (pthread_mutex_init(&self->mu, NULL) != 0) {
        Py_DECREF(self);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_condattr_t ca;
    (void)pthread_condattr_init(&ca);
#ifdef __linux__
    (void)pthread_condattr_setclock(&ca, SCHED_CLOCK);
#endif
    (void)pthread_cond_init(&self->wake_sampler, &ca);
    (void)pthread_condattr_destroy(&ca);
    (void)pthread_cond_init(&self->wake_deliverer, NULL);
    (void)pthread_cond_init(&self->ended_cond, NULL);
    (void)pthread_cond_init(&self->batch_cond, NULL);
    return (PyObject *)self;
}

static void
Sampler_dealloc(Sampler *self)
{
    /* started and not stopped holds a reference, so the threads are gone */
    if (self->fill) {
        for (size_t i = 0; i < self->nfill; i++) {
            slot_clear(&self->fill[i]);
        }
        PyMem_RawFree(self->fill);
    }
    PyMem_RawFree(self->spare);
    if (self->lw) {
        (void)pmt_lw_close(self->lw);
        PyMem_RawFree(self->lw);
    }
    if (self->tree) {
        pmt_tree_close(self->tree);
        PyMem_RawFree(self->tree);
    }
    pmt_proc_close(&self->proc);
    Py_XDECREF(self->callback);
    if (self->owner == 0 || self->owner == getpid()) {
        /* in a forked child these may still record the parent's waiters:
         * destroying them could block forever */
        (void)pthread_mutex_destroy(&self->mu);
        (void)pthread_cond_destroy(&self->wake_sampler);
        (void)pthread_cond_destroy(&self->wake_deliverer);
        (void)pthread_cond_destroy(&self->ended_cond);
        (void)pthread_cond_destroy(&self->batch_cond);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Sampler_methods[] = {
    {"start", (PyCFunction)Sampler_start, METH_NOARGS,
     "start()\n--\n\nStart the sampler (and, in logging mode, delivery) threads."},
    {"stop", (PyCFunction)Sampler_stop, METH_NOARGS,
     "stop()\n--\n\nStop and join the threads, then hand the records still "
     "waiting to the callback from this thread."},
    {"sample", (PyCFunction)(void (*)(void))Sampler_sample, METH_VARARGS | METH_KEYWORDS,
     "sample(event=None)\n--\n\nOne sample now: (time, json_text).  Not while running."},
    {"write_line", (PyCFunction)Sampler_write_line, METH_O,
     "write_line(text)\n--\n\nFile mode, after stop(): append one line."},
    {"close", (PyCFunction)Sampler_close, METH_NOARGS,
     "close()\n--\n\nStop, then flush and close the file (file mode)."},
    {"wait", (PyCFunction)Sampler_wait, METH_O,
     "wait(timeout)\n--\n\nTrue once sampling has ended by itself (process exit, write error)."},
    {"stats", (PyCFunction)Sampler_get_stats, METH_NOARGS,
     "stats()\n--\n\nCounters: samples, dropped, missed, errno, ended, ..."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._process.Sampler",
    .tp_basicsize = sizeof(Sampler),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sampler(pid, interval, *, callback=None, path=None, fd=-1, append=False,\n"
              "        children=False, status=False, smaps=False, extra=True, latency=0.1)\n\n"
              "Samples process pid every interval seconds on a C thread.",
    .tp_new = Sampler_new,
    .tp_init = (initproc)Sampler_init,
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_methods = Sampler_methods,
};

/* ---- module functions ---------------------------------------------------------- */

static PyObject *
add_message(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        return PyErr_Format(PyExc_TypeError, "message must be str, not %.100s",
                            Py_TYPE(arg)->tp_name);
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    label *l = malloc(sizeof(label) + (size_t)n + 1);
    if (l == NULL) {
        return PyErr_NoMemory();
    }
    l->next = NULL;
    l->len = (size_t)n;
    memcpy(l->text, s, (size_t)n + 1);
    label *drop = NULL;
    (void)pthread_mutex_lock(&label_mu);
    if (atomic_load(&label_count) >= MAX_LABELS && label_head) {
        drop = label_head;
        label_head = drop->next;
        if (label_head == NULL) {
            label_tail = NULL;
        }
        atomic_fetch_sub(&label_count, 1);
        labels_dropped++;
    }
    if (label_tail) {
        label_tail->next = l;
    }
    else {
        label_head = l;
    }
    label_tail = l;
    atomic_fetch_add(&label_count, 1);
    (void)pthread_mutex_unlock(&label_mu);
    free(drop);
    Py_RETURN_NONE;
}

static PyObject *
clear_messages(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    (void)pthread_mutex_lock(&label_mu);
    label *l = label_head;
    label_head = label_tail = NULL;
    atomic_store(&label_count, 0);
    (void)pthread_mutex_unlock(&label_mu);
    while (l) {
        label *next = l->next;
        free(l);
        l = next;
    }
    Py_RETURN_NONE;
}

static PyObject *
pending_messages(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(atomic_load(&label_count));
}

static PyMethodDef module_methods[] = {
    {"add_message", add_message, METH_O,
     "add_message(message)\n--\n\nQueue a label for the next sample of any Sampler."},
    {"clear_messages", clear_messages, METH_NOARGS,
     "clear_messages()\n--\n\nForget the labels not yet taken."},
    {"pending_messages", pending_messages, METH_NOARGS,
     "pending_messages()\n--\n\nHow many labels wait for a sample."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pymemtrace._process",
    .m_doc = "C sampler threads for pymemtrace.process (see src/ext/_process.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

static void
labels_prepare(void)
{
    (void)pthread_mutex_lock(&label_mu);
}

static void
labels_release(void)
{
    (void)pthread_mutex_unlock(&label_mu);
}

PyMODINIT_FUNC
PyInit__process(void)
{
    static int atfork_done;
    if (!atfork_done) {
        /* a fork never copies label_mu while a sampler thread holds it */
        if (pthread_atfork(labels_prepare, labels_release, labels_release) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        atfork_done = 1;
    }
    if (PyType_Ready(&SamplerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&SamplerType);
    if (PyModule_AddObject(m, "Sampler", (PyObject *)&SamplerType) < 0) {
        Py_DECREF(&SamplerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "KIND_SAMPLE", KIND_SAMPLE) < 0
        || PyModule_AddIntConstant(m, "KIND_START", KIND_START) < 0
        || PyModule_AddIntConstant(m, "KIND_STOP", KIND_STOP) < 0
        || PyModule_AddIntConstant(m, "SLOT_TEXT", SLOT_TEXT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
