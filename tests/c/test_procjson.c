/* test_procjson.c: unit tests for src/core/procjson (a sample as JSON). */
#include "ctest.h"
#include "procjson.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_format(void)
{
    char ts[PMT_TS_LEN + 1];
    pmt_tscache tc = {0, {0}};
    pmt_fmt_timestamp(&tc, 1739369818.676195, ts);
    ts[PMT_TS_LEN] = '\0';
    CHECK(ts[4] == '-' && ts[7] == '-' && ts[10] == ' ' && ts[19] == '.');
    CHECK_EQ_STR(ts + 20, "676195");

    char out[64];
    int n = pmt_fmt_seconds(out, 0.0);
    out[n] = '\0';
    CHECK_EQ_STR(out, "0.0");
    n = pmt_fmt_seconds(out, 0.34);
    out[n] = '\0';
    CHECK_EQ_STR(out, "0.34");
    n = pmt_fmt_seconds(out, 5.4078002);
    out[n] = '\0';
    CHECK_EQ_STR(out, "5.4078");
    n = pmt_fmt_seconds(out, 12.0000004);
    out[n] = '\0';
    CHECK_EQ_STR(out, "12.0");

    size_t k = pmt_json_string(out, sizeof(out), "a\"b\\c\nd\x01", 8);
    out[k] = '\0';
    CHECK_EQ_STR(out, "\"a\\\"b\\\\c\\nd\\u0001\"");
    /* reports the length it needs when out is too small */
    CHECK_EQ_INT(pmt_json_string(out, 3, "abcdef", 6), 8);

    pmt_procsample s;
    memset(&s, 0, sizeof(s));
    s.pid = 10193;
    s.wall = 1739369818.676195;
    s.rss = 18067456;
    s.vms = 34990526464;
    s.minflt = 5594;
    s.majflt = 1369;
    s.utime = 0.34;
    s.stime = 0.99;
    s.elapsed = 5.4078;
    s.swap = s.rss_peak = s.pss = s.uss = -1;
    char j[1024];
    size_t len = pmt_ps_json(j, sizeof(j), &s, &tc, 0, NULL, "String of 1,024 bytes", 21);
    CHECK(len < sizeof(j));
    j[len] = '\0';
    const char *want_tail = "\", \"memory_info\": {\"rss\": 18067456, \"vms\": 34990526464, "
        "\"pfaults\": 6963, \"pageins\": 1369}, \"cpu_times\": {\"user\": 0.34, "
        "\"system\": 0.99, \"children_user\": 0.0, \"children_system\": 0.0}, "
        "\"elapsed_time\": 5.4078, \"pid\": 10193, \"label\": \"String of 1,024 bytes\"}";
    CHECK(strncmp(j, "{\"timestamp\": \"", 15) == 0);
    CHECK_EQ_STR(j + 15 + PMT_TS_LEN, want_tail);
    /* a small buffer: the length needed is still reported */
    char small[16];
    CHECK_EQ_INT(pmt_ps_json(small, sizeof(small), &s, &tc, 0, NULL, "String of 1,024 bytes", 21), len);
    /* extras */
    s.swap = 0;
    s.num_threads = 3;
    len = pmt_ps_json(j, sizeof(j), &s, &tc, PMT_JSON_EXTRA | PMT_JSON_NPROCS, "stop", NULL, 0);
    j[len] = '\0';
    CHECK(strstr(j, "\"swap\": 0") != NULL);
    CHECK(strstr(j, "\"num_threads\": 3") != NULL);
    CHECK(strstr(j, "\"nprocs\": 0") != NULL);
    CHECK(strstr(j, "\"event\": \"stop\"}") != NULL);
}

static void
test_stop_record(void)
{
    pmt_tscache tc = {0, {0}};
    pmt_procsample s;
    memset(&s, 0, sizeof(s));
    s.pid = 7;
    s.wall = 1739369818.5;
    s.rss = 4096;
    s.swap = s.rss_peak = s.pss = s.uss = s.hwm = -1;
    pmt_stopinfo info;
    memset(&info, 0, sizeof(info));
    info.event = "stop";
    info.rss_max = 8192;
    info.peak = 1 << 20;
    info.peak_source = "VmHWM";
    char j[1024];
    size_t len = pmt_stop_json(j, sizeof(j), &s, &tc, 0, &info, "done", 4);
    j[len] = '\0';
    CHECK(strstr(j, "\"memory_info\": {\"rss\": 4096") != NULL);
    CHECK(strstr(j, "\"pid\": 7, \"event\": \"stop\", \"label\": \"done\", "
                    "\"rss_max_sampled\": 8192, \"rss_peak_kernel\": 1048576, "
                    "\"rss_peak_source\": \"VmHWM\"}") != NULL);
    /* the process has gone: no sample, the reason and the exit code */
    info.pid = 9;
    info.wall = s.wall;
    info.gone_key = "reason";
    info.gone_text = "process exited";
    info.has_exit_code = 1;
    info.exit_code = 3;
    info.peak = -1;
    len = pmt_stop_json(j, sizeof(j), NULL, &tc, 0, &info, NULL, 0);
    j[len] = '\0';
    CHECK(strstr(j, "memory_info") == NULL);
    CHECK(strstr(j, "\", \"pid\": 9, \"event\": \"stop\", \"reason\": \"process exited\", "
                    "\"exit_code\": 3, \"rss_max_sampled\": 8192}") != NULL);
    /* the length needed is reported when the buffer is small */
    char small[8];
    CHECK_EQ_INT(pmt_stop_json(small, sizeof(small), NULL, &tc, 0, &info, NULL, 0), len);
}

int
main(void)
{
    test_format();
    test_stop_record();
    CTEST_MAIN_END();
}
