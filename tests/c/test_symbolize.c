/* test_symbolize.c: naming a capture's native frames from the files on disk
 * (this test's own executable stands for a traced module). */
#define _GNU_SOURCE 1
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_build.h"
#include "ctest.h"
#include "elfsym.h"
#include "self_module.h"
#include "symbolize.h"

__attribute__((noinline)) int
symbolize_target(int x)
{
    return x * 7 + 3;
}

/* A native capture whose one module is this executable, loaded where it is,
 * with build-id id[0..idn) (idn 0: none recorded). */
static void
capture_of_self(const char *exe, uint64_t bias, const uint8_t *id, size_t idn)
{
    header(PMT_MC_RECORD_NATIVE);
    uint8_t payload[4096 + 128];
    memset(payload, 0, sizeof(payload));
    size_t n = strlen(exe);
    memcpy(payload, exe, n + 1);
    size_t at = n + 1;
    payload[at++] = (uint8_t)idn;
    memcpy(payload + at, id, idn);
    at += idn + 16;     /* size and mtime 0: unknown */
    cb_room(64 + at);
    buf[len++] = PMT_MC_MODULE;
    uv(bias);
    uv(bias);
    uv(UINT64_MAX / 2);
    uv(at);
    put(payload, at);
    end();
}

static void
test_symbolize(void)
{
    uint64_t bias;
    char *exe = self_module(&bias);     /* the path a capture records */
    CHECK(exe != NULL);
    if (!exe) {
        return;
    }
    pmt_elfsym_cache *ec = pmt_elfsym_cache_new();
    uint8_t id[64];
    int idn = pmt_elfsym_build_id(ec, exe, id, sizeof(id));
    pmt_elfsym_cache_free(ec);
    CHECK(idn > 0);
    uint64_t ret = (uint64_t)(uintptr_t)&symbolize_target + 5;    /* a return address inside it */

    /* the same file: named, with the call site's offsets */
    capture_of_self(exe, bias, id, idn > 0 ? (size_t)idn : 0);
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    pmt_symbolizer *s = pmt_sym_new(&c);
    CHECK(s != NULL);
    pmt_sym_frame f;
    CHECK_EQ_INT(pmt_sym_native(s, ret, &f), 0);
    CHECK(strcmp(f.module, exe) == 0);
    CHECK(f.symbol_len == strlen("symbolize_target") &&
          memcmp(f.symbol, "symbolize_target", f.symbol_len) == 0);
    CHECK(f.offset == ret - 1 - bias && f.delta == 4);
    CHECK_EQ_INT(pmt_sym_changed(s, NULL), 0);
    /* an address no module holds */
    CHECK_EQ_INT(pmt_sym_native(s, 16, &f), -1);
    CHECK(f.module[0] == '\0' && f.offset == 16 && f.symbol == NULL);
    pmt_sym_free(s);
    pmt_capture_close(&c);

    /* another build of it (another build-id): not trusted, counted once */
    uint8_t other[64];
    memcpy(other, id, sizeof(other));
    other[0] ^= 0xff;
    capture_of_self(exe, bias, other, idn > 0 ? (size_t)idn : 0);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    s = pmt_sym_new(&c);
    CHECK_EQ_INT(pmt_sym_native(s, ret, &f), 0);
    CHECK(f.symbol == NULL && strcmp(f.module, exe) == 0);
    CHECK_EQ_INT(pmt_sym_native(s, ret + 1, &f), 0);
    const char *first = NULL;
    CHECK_EQ_INT(pmt_sym_changed(s, &first), 1);
    CHECK(first != NULL && strcmp(first, exe) == 0);
    pmt_sym_free(s);
    pmt_capture_close(&c);
    free(exe);
}

int
main(void)
{
    test_symbolize();
    CTEST_MAIN_END();
}
