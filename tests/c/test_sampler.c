/* test_sampler.c: unit tests for src/core/sampler (threads, schedule,
 * delivery, labels), with a fake sample source and short intervals: they
 * count what happened, never how long it took. */
#include "ctest.h"
#include "sampler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- a fake process ------------------------------------------------------ */

typedef struct {
    int calls;
    int fail_after;             /* > 0: ESRCH from this call on */
    pmt_sampler *s;             /* for the delivery hooks */
    /* what was delivered */
    int delivered, starts, in_order, labelled, batches;
    double last;
    char labels[8][16];
    int by_main_asks;
} fake;

static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
fake_sample(void *ctx, pmt_procsample *ps, int rescan)
{
    (void)rescan;
    fake *f = ctx;
    f->calls++;
    if (f->fail_after > 0 && f->calls >= f->fail_after) {
        errno = ESRCH;
        return -1;
    }
    memset(ps, 0, sizeof(*ps));
    ps->pid = 4242;
    ps->nprocs = 1;
    ps->wall = wall_now();
    ps->rss = 1000 * f->calls;
    ps->swap = ps->rss_peak = ps->pss = ps->uss = -1;
    ps->rss = f->calls == 3 ? 999999 : 1000 * f->calls;   /* a peak */
    ps->hwm = 5000000;
    return 0;
}

static void
collect(void *arg, const pmt_slot *recs, size_t n)
{
    fake *f = arg;
    f->batches++;
    for (size_t i = 0; i < n; i++) {
        char t[PMT_SLOT_TEXT + 1];     /* slot text is not NUL-terminated */
        size_t len = recs[i].len < PMT_SLOT_TEXT ? recs[i].len : PMT_SLOT_TEXT;
        memcpy(t, pmt_slot_text(&recs[i]), len);
        t[len] = '\0';
        if (recs[i].kind == PMT_KIND_START) {
            f->starts++;
            if (f->delivered != 0) {
                f->in_order = 0;
            }
        }
        if (recs[i].created < f->last) {
            f->in_order = 0;
        }
        f->last = recs[i].created;
        const char *lab = strstr(t, "\"label\": \"");
        if (lab && f->labelled < 8) {
            snprintf(f->labels[f->labelled], 16, "%.*s", 2, lab + 10);
            f->labelled++;
        }
        f->delivered++;
    }
}

static void
deliver_here(void *ctx)
{
    fake *f = ctx;
    (void)pmt_sampler_deliver(f->s, 0, collect, f);
}

static pmt_sampler_config
config(fake *f, int logging)
{
    pmt_sampler_config c;
    memset(&c, 0, sizeof(c));
    c.pid = 4242;
    c.interval = 0.002;
    c.latency = 0.01;
    c.logging = logging;
    c.hooks.sample = fake_sample;
    c.hooks.deliver_here = deliver_here;
    c.hooks.ctx = f;
    return c;
}

/* ---- tests ------------------------------------------------------------------ */

static void
test_schedule(void)
{
    uint64_t missed = 0;
    CHECK(pmt_sched_next(10.0, 10.05, 0.1, &missed) == 10.1);
    CHECK_EQ_INT(missed, 0);
    /* 0.35 s late: ticks 10.1, 10.2, 10.3 are skipped, the next is 10.4 */
    double n = pmt_sched_next(10.0, 10.35, 0.1, &missed);
    CHECK(n > 10.39 && n < 10.41);
    CHECK_EQ_INT(missed, 3);
}

static void
test_bad_config(void)
{
    fake f = {0};
    pmt_sampler s;
    pmt_sampler_config c = config(&f, 1);
    c.interval = 0;
    errno = 0;
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), -1);
    CHECK_EQ_INT(errno, EINVAL);
    pmt_sampler_destroy(&s);
    c = config(&f, 0);          /* file mode without a file */
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_start(&s), EINVAL);
    pmt_sampler_destroy(&s);
}

static void
test_logging_mode_delivers_everything_in_order(void)
{
    static pmt_labelq q = PMT_LABELQ_INIT(16);
    fake f = {0};
    f.in_order = 1;
    pmt_sampler s;
    f.s = &s;
    pmt_sampler_config c = config(&f, 1);
    c.labels = &q;
    pmt_labelq_push(&q, "L1", 2);
    pmt_labelq_push(&q, "L2", 2);
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_start(&s), 0);
    pmt_sampler_stats st;
    pmt_sampler_get_stats(&s, &st);
    CHECK(st.samples >= 1);     /* start() returns after the START sample */
    /* at least 30 samples and 2 batches */
    for (int i = 0; i < 2000 && (f.calls < 30 || f.batches < 2); i++) {
        usleep(1000);
    }
    CHECK_EQ_INT(pmt_sampler_start(&s), EBUSY);
    pmt_sampler_stop(&s);
    pmt_sampler_stop(&s);       /* idempotent */
    pmt_sampler_drain(&s, collect, &f);
    pmt_sampler_get_stats(&s, &st);
    CHECK(st.samples >= 30);
    CHECK(f.batches >= 2);
    CHECK_EQ_INT((uint64_t)f.delivered + st.dropped, st.samples);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(f.starts, 1);
    CHECK(f.in_order);
    /* every batch by the delivery thread, but maybe the one drained */
    CHECK(st.batches_thread == (uint64_t)f.batches || st.batches_thread + 1 == (uint64_t)f.batches);
    /* the labels went to the first samples after START, in order */
    CHECK_EQ_INT(f.labelled, 2);
    CHECK_EQ_STR(f.labels[0], "L1");
    CHECK_EQ_STR(f.labels[1], "L2");
    CHECK_EQ_INT(pmt_labelq_count(&q), 0);
    CHECK_EQ_INT(st.err, 0);
    pmt_sampler_destroy(&s);
}

/* A stand-in for the interpreter's main thread: answers ask_main. */
static fake *asked;
static volatile int ask_flag, main_quit;

static int
ask_main(void *ctx)
{
    asked = ctx;
    __atomic_store_n(&ask_flag, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void *
main_thread(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&main_quit, __ATOMIC_SEQ_CST)) {
        if (__atomic_exchange_n(&ask_flag, 0, __ATOMIC_SEQ_CST)) {
            (void)pmt_sampler_deliver(asked->s, 1, collect, asked);
            (void)pmt_sampler_asked_done(asked->s);
        }
        usleep(200);
    }
    return NULL;
}

static void
test_batches_offered_to_the_main_thread(void)
{
    fake f = {0};
    f.in_order = 1;
    pmt_sampler s;
    f.s = &s;
    pmt_sampler_config c = config(&f, 1);
    c.via_main = 1;
    c.hooks.ask_main = ask_main;
    pthread_t mt;
    main_quit = 0;
    CHECK_EQ_INT(pthread_create(&mt, NULL, main_thread, NULL), 0);
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_start(&s), 0);
    for (int i = 0; i < 2000 && f.batches < 5; i++) {
        usleep(1000);
    }
    pmt_sampler_stop(&s);
    __atomic_store_n(&main_quit, 1, __ATOMIC_SEQ_CST);
    pthread_join(mt, NULL);
    while (pmt_sampler_asked_pending(&s) > 0) {     /* an unanswered ask */
        (void)pmt_sampler_asked_done(&s);
    }
    pmt_sampler_drain(&s, collect, &f);
    pmt_sampler_stats st;
    pmt_sampler_get_stats(&s, &st);
    CHECK(st.batches_main >= 1);
    /* each batch went one way or the other, exactly once */
    CHECK_EQ_INT(st.batches_main + st.batches_thread + 1 >= (uint64_t)f.batches, 1);
    CHECK_EQ_INT((uint64_t)f.delivered, st.samples);
    CHECK(f.in_order);
    pmt_sampler_destroy(&s);
}

static void
test_process_exit_ends_sampling(void)
{
    fake f = {0};
    f.fail_after = 5;
    pmt_sampler s;
    f.s = &s;
    pmt_sampler_config c = config(&f, 1);
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_start(&s), 0);
    CHECK_EQ_INT(pmt_sampler_wait(&s, 10.0), 1);
    pmt_sampler_stats st;
    pmt_sampler_get_stats(&s, &st);
    CHECK_EQ_INT(st.ended, 1);
    CHECK_EQ_INT(st.err, ESRCH);
    CHECK_EQ_INT(st.samples, 4);
    pmt_sampler_stop(&s);
    pmt_sampler_drain(&s, collect, &f);
    CHECK_EQ_INT(f.delivered, 4);   /* the records before the exit are kept */
    /* the STOP record of a process that has gone: the sampled and kernel peaks */
    pmt_stopinfo info;
    memset(&info, 0, sizeof(info));
    info.event = "stop";
    info.gone_key = "error";
    info.gone_text = "process exited";
    info.peak = -1;
    char sbuf[PMT_SLOT_TEXT];
    size_t slen;
    char *sheap = NULL;
    double swall;
    int gone = 0;
    const char *st_text = pmt_sampler_stop_record(&s, &info, sbuf, sizeof(sbuf) - 1, &slen,
                                                  &sheap, &swall, &gone);
    CHECK(st_text == sbuf && gone == 1);
    sbuf[slen] = '\0';
    CHECK(strstr(sbuf, "\"pid\": 4242, \"event\": \"stop\", \"error\": \"process exited\", "
                       "\"rss_max_sampled\": 999999, \"rss_peak_kernel\": 5000000, "
                       "\"rss_peak_source\": \"VmHWM at the last sample\"}") != NULL);
    /* sample_now reports the exit */
    char buf[PMT_SLOT_TEXT];
    size_t len;
    char *heap;
    double wall;
    errno = 0;
    CHECK(pmt_sampler_sample_now(&s, "stop", buf, sizeof(buf), &len, &heap, &wall) == NULL);
    CHECK_EQ_INT(errno, ESRCH);
    pmt_sampler_destroy(&s);
}

static void
test_file_mode_writes_json_lines(void)
{
    char path[] = "/tmp/pmt-test-sampler-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fake f = {0};
    pmt_sampler s;
    f.s = &s;
    pmt_sampler_config c = config(&f, 0);
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_adopt_log(&s, fd), 0);
    close(fd);
    CHECK_EQ_INT(pmt_sampler_start(&s), 0);
    while (f.calls < 10) {
        usleep(1000);
    }
    pmt_sampler_stop(&s);
    char buf[PMT_SLOT_TEXT];
    size_t len;
    char *heap = NULL;
    double wall;
    const char *t = pmt_sampler_sample_now(&s, "stop", buf, sizeof(buf), &len, &heap, &wall);
    CHECK(t != NULL && heap == NULL);
    CHECK_EQ_INT(pmt_sampler_write_line(&s, t, len), 0);
    CHECK_EQ_INT(pmt_sampler_close_log(&s), 0);
    CHECK_EQ_INT(pmt_sampler_close_log(&s), 0);     /* idempotent */
    pmt_sampler_stats st;
    pmt_sampler_get_stats(&s, &st);
    FILE *fp = fopen(path, "r");
    char line[2048];
    int lines = 0, starts = 0, stops = 0, bad = 0;
    while (fp && fgets(line, sizeof(line), fp)) {
        lines++;
        starts += strstr(line, "\"event\": \"start\"") != NULL;
        stops += strstr(line, "\"event\": \"stop\"") != NULL;
        bad += line[0] != '{' || strstr(line, "}\n") == NULL;
    }
    if (fp) {
        fclose(fp);
    }
    unlink(path);
    CHECK_EQ_INT((uint64_t)lines, st.samples + 1);
    CHECK_EQ_INT(starts, 1);
    CHECK_EQ_INT(stops, 1);
    CHECK_EQ_INT(bad, 0);
    pmt_sampler_destroy(&s);
}

static void
test_write_error_ends_sampling(void)
{
    fake f = {0};
    pmt_sampler s;
    f.s = &s;
    pmt_sampler_config c = config(&f, 0);
    c.latency = 0.002;          /* flush every sample */
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    CHECK_EQ_INT(pmt_sampler_open_log(&s, "/dev/full", 1), 0);
    CHECK_EQ_INT(pmt_sampler_start(&s), 0);
    CHECK_EQ_INT(pmt_sampler_wait(&s, 10.0), 1);
    pmt_sampler_stats st;
    pmt_sampler_get_stats(&s, &st);
    CHECK_EQ_INT(st.err, ENOSPC);
    pmt_sampler_stop(&s);
    errno = 0;
    CHECK_EQ_INT(pmt_sampler_close_log(&s), -1);
    CHECK_EQ_INT(errno, ENOSPC);
    pmt_sampler_destroy(&s);
}

static void
test_real_process(void)
{
    /* the default source: this process from /proc */
    pmt_sampler s;
    pmt_sampler_config c;
    memset(&c, 0, sizeof(c));
    c.pid = 0;
    c.interval = 0.005;
    c.latency = 0.01;
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), 0);
    char buf[PMT_SLOT_TEXT];
    size_t len;
    char *heap = NULL;
    double wall;
    const char *t = pmt_sampler_sample_now(&s, NULL, buf, sizeof(buf), &len, &heap, &wall);
    CHECK(t != NULL);
    char want[32];
    snprintf(want, sizeof(want), "\"pid\": %d", (int)getpid());
    CHECK(t && len < sizeof(buf) && (buf[len] = '\0', strstr(t, want) != NULL));
    pmt_sampler_destroy(&s);
    c.pid = 0x3ffffff0;
    errno = 0;
    CHECK_EQ_INT(pmt_sampler_init(&s, &c), -1);
    CHECK_EQ_INT(errno, ESRCH);
    pmt_sampler_destroy(&s);
}

int
main(void)
{
    test_schedule();
    test_bad_config();
    test_logging_mode_delivers_everything_in_order();
    test_batches_offered_to_the_main_thread();
    test_process_exit_ends_sampling();
    test_file_mode_writes_json_lines();
    test_write_error_ends_sampling();
    test_real_process();
    CTEST_MAIN_END();
}
